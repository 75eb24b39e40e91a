package agent

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/plantedge/plantedge/agent/config"
	"github.com/plantedge/plantedge/agent/mapping"
	"github.com/plantedge/plantedge/connectors/mqtt"
)

// Sparkplug B rebirth requests (a broker's sparkplug_rebirth): when the
// agent cannot read an edge node's DATA by alias (no BIRTH since its start
// or its reconnect to the broker, a seq gap, an NDEATH, an alias no BIRTH
// named), it asks the edge node for its BIRTH as every Sparkplug host
// application does, with an NCMD carrying Node Control/Rebirth = true,
// instead of waiting — possibly for hours — for the next BIRTH the edge
// node sends by itself.
//
// How often: the spec sets no interval (a host SHOULD ask at a seq gap,
// after its reorder timeout). A rebirth makes the edge node send its
// NBIRTH and every DBIRTH again, to every host on the broker, so a flood
// of them loads all of them (Cirrus Link warns of rebirth "firestorms").
// The agent asks each edge node at most once per rebirthMin (30 s: an
// Ignition gateway's BIRTHs of a big UDT tree take seconds to come, and a
// request must not overtake its own answer), and each request after the
// first waits twice as long as the one before, up to rebirthMax (10 min):
// an edge node that does not answer (it does not take NCMDs, or the
// broker's ACL drops the request unseen: MQTT 3.1.1 has no refusal of a
// QoS 0 publish) is not asked every 30 s for good — nor one that answers
// with a BIRTH that does not cure what the agent asked for (two gateways
// publishing as one edge node, a seq broken at every message): a BIRTH
// does not shorten the wait (the review: it did, and such a node was
// asked at every DATA, 6 requests in 125 ms). Only rebirthQuiet without a
// request starts over at rebirthMin. (Eclipse Tahu's host waits a fixed
// 5 s per edge node, which a BIRTH does not shorten either.)
const (
	rebirthMin   = 30 * time.Second
	rebirthMax   = 10 * time.Minute
	rebirthQuiet = 10 * time.Minute
)

// rebirths keeps, per edge node (source "\x00" group/node), when the agent
// last asked it for a rebirth.
type rebirths struct {
	mu    sync.Mutex
	now   func() time.Time // time.Now; tests step it
	nodes map[string]*rebirthNode
	// sending are the publishes under way (one per node at most: the
	// wait between requests is far longer than a publish may take); Run
	// waits for them before it returns.
	sending sync.WaitGroup
}

type rebirthNode struct {
	last     time.Time     // the last request
	interval time.Duration // before the next may go
	asked    int           // requests since the node's last BIRTH
	err      string        // the last request's publish failed: why

	// before is the node as it was before the last request, put back when
	// that request could not be sent at all (unsent).
	before *rebirthNode
}

// ncmdTopic is the edge node's command topic, where a rebirth request goes.
func ncmdTopic(group, node string) string {
	return config.SparkplugTopic{Group: group, Node: node}.With("NCMD")
}

// rebirthKey keys an edge node's requests as the mapping keys its state.
func rebirthKey(source, group, node string) string {
	return mapping.SparkplugNodeKey(source, config.SparkplugTopic{Group: group, Node: node})
}

// allow reports whether a request to the node may go now, and if so notes
// it as sent.
func (r *rebirths) allow(key string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := time.Now()
	if r.now != nil {
		now = r.now()
	}
	if r.nodes == nil {
		r.nodes = map[string]*rebirthNode{}
	}
	n := r.nodes[key]
	if n == nil {
		n = &rebirthNode{}
		r.nodes[key] = n
	}
	if !n.last.IsZero() && now.Sub(n.last) < n.interval {
		return false
	}
	was := *n
	was.before = nil
	n.before = &was
	if n.last.IsZero() || now.Sub(n.last) >= n.interval+rebirthQuiet {
		n.interval = rebirthMin
	} else {
		// Asked again soon after the last request, answered or not: ask
		// less often.
		n.interval = min(2*n.interval, rebirthMax)
	}
	n.last = now
	n.asked++
	n.err = ""
	return true
}

// unsent puts the node back as it was before its last request, which
// could not be sent at all (not connected to the broker: a message
// delivered as the connection was being made or lost): the request is no
// request, and the next may go at once.
func (r *rebirths) unsent(key string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if n := r.nodes[key]; n != nil && n.before != nil {
		*n = *n.before
	}
}

// failed notes that the request to the node could not be published.
func (r *rebirths) failed(key string, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if n := r.nodes[key]; n != nil {
		n.err = err.Error()
	}
}

// birth notes a BIRTH of the node: it answered (or rebirthed by itself).
// The count of requests unanswered starts over; the wait before the next
// request does not (see rebirthMin).
func (r *rebirths) birth(key string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if n := r.nodes[key]; n != nil {
		n.asked, n.err, n.before = 0, "", nil
	}
}

// last returns the node's last request and how many were made since its
// last BIRTH (0: none).
func (r *rebirths) last(key string) (at time.Time, asked int, err string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if n := r.nodes[key]; n != nil {
		return n.last, n.asked, n.err
	}
	return time.Time{}, 0, ""
}

// rebirthOn reports whether broker source has sparkplug_rebirth on in the
// configuration in force.
func (a *Agent) rebirthOn(source string) bool {
	for _, b := range a.cfg.Load().MQTT {
		if b.Name == source {
			return b.SparkplugRebirth
		}
	}
	return false
}

// noteSparkplugBirth tells the rebirth requests of a BIRTH on topic.
func (a *Agent) noteSparkplugBirth(source, topic string) {
	if !strings.HasPrefix(topic, "spBv1.0/") || !strings.Contains(topic, "BIRTH/") {
		return
	}
	if t, ok := config.ParseSparkplugTopic(topic); ok && (t.Type == "NBIRTH" || t.Type == "DBIRTH") {
		a.rebirth.birth(rebirthKey(source, t.Group, t.Node))
	}
}

// requestRebirths asks the edge nodes the last sample showed a BIRTH is
// needed of for one, where their broker's sparkplug_rebirth is on and the
// node was not asked too recently. The publish runs on its own goroutine:
// the ingest loop never waits for the broker, and a publish that fails is
// logged, nothing more.
func (a *Agent) requestRebirths(rs []mapping.SparkplugRebirth) {
	for _, r := range rs {
		if !a.rebirthOn(r.Source) {
			continue
		}
		key := rebirthKey(r.Source, r.Group, r.Node)
		if !a.rebirth.allow(key) {
			continue
		}
		topic := ncmdTopic(r.Group, r.Node)
		var publish func(string, []byte) error
		for _, h := range a.sourceList() {
			if h.name == r.Source && h.publish != nil {
				publish = h.publish
			}
		}
		if publish == nil {
			// The source is being replaced by a reload: no request made.
			a.rebirth.unsent(key)
			continue
		}
		payload := mapping.RebirthRequest(time.Now())
		a.rebirth.sending.Add(1)
		go func() {
			defer a.rebirth.sending.Done()
			err := publish(topic, payload)
			switch {
			case errors.Is(err, mqtt.ErrNotConnected):
				// A message taken in as the connection was lost: the
				// request is made at the next need, on the next connection
				// (the review: it cost a wait of 30 s, doubled, and was
				// counted as published).
				a.rebirth.unsent(key)
			case err != nil:
				a.rebirth.failed(key, err)
				a.malformedLog.log("sparkplug rebirth failed "+r.Source+" "+r.Group+"/"+r.Node, a.log, slog.LevelWarn,
					"a Sparkplug B rebirth request could not be published; the agent asks again later", "source", r.Source, "topic", topic, "err", err)
			default:
				a.metrics.sparkplugRebirths.WithLabelValues(r.Source).Inc()
				a.malformedLog.log("sparkplug rebirth "+r.Source+" "+r.Group+"/"+r.Node, a.log, slog.LevelInfo,
					"asked a Sparkplug B edge node for its BIRTH (rebirth request, NCMD Node Control/Rebirth): its values by alias cannot be read until it sends one",
					"source", r.Source, "topic", topic, "why", r.Why)
			}
		}()
	}
}

// rebirthStatus is what status adds to a machine waiting for a BIRTH of
// the edge node of DATA topic topic: the rebirth asked for, or how to ask.
func (a *Agent) rebirthStatus(source, topic string) string {
	if !a.rebirthOn(source) {
		return " (restart it, or send a rebirth from Ignition/the edge node; or let plantedge ask for one: sparkplug_rebirth: true on the broker; " +
			"on a Sparkplug-aware broker, sparkplug_certificates: true reads the BIRTHs it keeps)"
	}
	t, ok := config.ParseSparkplugTopic(topic)
	if !ok {
		return ""
	}
	at, asked, err := a.rebirth.last(rebirthKey(source, t.Group, t.Node))
	switch {
	case asked == 0:
		return " (plantedge asks it for a rebirth at its next DATA by alias; its requests to an edge node are at least 30 s apart)"
	case err != "":
		return fmt.Sprintf(" (plantedge's rebirth request at %s could not be published: %s; it asks again later)", at.UTC().Format(time.RFC3339), err)
	case asked == 1:
		return fmt.Sprintf(" (plantedge asked it for a rebirth at %s)", at.UTC().Format(time.RFC3339))
	}
	var clientID string
	for _, b := range a.cfg.Load().MQTT {
		if b.Name == source {
			clientID = b.ClientID
		}
	}
	return fmt.Sprintf(" (plantedge asked it for a rebirth %d times, last at %s, with no BIRTH in answer: does the edge node take rebirth requests, and does the broker's ACL let client_id %s publish to %s?)",
		asked, at.UTC().Format(time.RFC3339), clientID, ncmdTopic(t.Group, t.Node))
}
