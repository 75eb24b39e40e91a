package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/plantedge/plantedge/agent"
	"github.com/plantedge/plantedge/agent/config"
	"github.com/plantedge/plantedge/agent/mapping"
	"github.com/plantedge/plantedge/connectors/mqtt"
)

func init() { validateMQTT = checkMQTT }

// mqttWait is how long validate --mqtt listens for a first message per topic.
const mqttWait = 5 * time.Second

// checkMQTT connects to every broker the machines use (under a client id of
// its own, leaving the agent's session alone), subscribes to their topics,
// and checks the first message each brings within mqttWait: the field must
// be there and hold a value its signal can use. A topic without a message
// meanwhile is reported as not checked, not as a problem: machines publish
// when they have something to say.
func checkMQTT(ctx context.Context, cfg *config.Config, file string, w io.Writer) error {
	c := &sourceCheck{w: w, cfg: cfg, file: file, kind: "mqtt"}
	for bi, b := range cfg.MQTT {
		uses, _ := usesOf(cfg, "mqtt", b.Name)
		if len(uses) == 0 {
			fmt.Fprintf(w, "mqtt %s: no machine uses it\n", b.Name)
			continue
		}
		var sp []sourceUse
		var topics []string
		uses = slices.DeleteFunc(uses, func(u sourceUse) bool {
			if u.ref.MQTT.Sparkplug() {
				sp = append(sp, u)
				return true
			}
			if !slices.Contains(topics, u.ref.MQTT.Topic) {
				topics = append(topics, u.ref.MQTT.Topic)
			}
			return false
		})
		if len(sp) > 0 {
			c.checkSparkplug(ctx, bi, b, sp)
		}
		if len(topics) == 0 {
			continue
		}
		mc, err := agent.MQTTConfig(b, topics, nil)
		var infos []mqtt.TopicInfo
		t0 := time.Now()
		if err == nil {
			infos, err = mqtt.Inspect(ctx, mc, mqttWait)
		}
		if err != nil {
			c.connectProblem(bi, b, err)
			continue
		}
		// Inspect returns as soon as every topic brought a message.
		fmt.Fprintf(w, "mqtt %s: connected, listened %s on %s\n", b.Name, time.Since(t0).Round(10*time.Millisecond), plural(len(topics), "topic"))
		byTopic := map[string]mqtt.TopicInfo{}
		for _, in := range infos {
			byTopic[in.Topic] = in
		}
		for _, u := range uses {
			ref := u.ref.MQTT
			in := byTopic[ref.Topic]
			what, at := ref.Topic, u.path+".topic"
			if ref.Field != "" {
				what, at = ref.Topic+" field "+ref.Field, u.path+".field"
			}
			switch {
			case in.Refused != "":
				c.problem(u.path+".topic", fmt.Sprintf("the broker refused the subscription to %s (code %s)", ref.Topic, in.Refused),
					"the broker's ACL must let "+b.ACLSubject()+" read it")
			case !in.Got:
				fmt.Fprintf(w, "mqtt %s: %s %s: %s: no message within %s, not checked\n", b.Name, u.machine, u.signal, what, mqttWait)
			case len(bytes.TrimSpace(in.Payload)) == 0:
				// How a retained message is cleared: the agent skips it.
				fmt.Fprintf(w, "mqtt %s: %s %s: %s: an empty message (a retained one cleared?), not checked\n", b.Name, u.machine, u.signal, what)
			default:
				ts, err := mapping.CheckPayload(u.signal, ref.Field, ref.TimestampField, in.Payload, u.rollover, u.running...)
				if err != nil {
					var pe *mapping.PayloadError
					if errors.As(err, &pe) {
						if pe.Field != "" && pe.Field == ref.TimestampField {
							at = u.path + ".timestamp_field"
						}
						err = pe.Err
					}
					if errors.Is(err, mapping.ErrNoTime) {
						// The agent takes it at its receive time: a typo, or a
						// gateway that leaves the time out now and then.
						c.warning(u.path+".timestamp_field", fmt.Sprintf("%s: %v; the payload was %s", what, err, snippet(in.Payload)),
							"check timestamp_field (a dot path into the JSON)")
						continue
					}
					c.problem(at, fmt.Sprintf("%s: %v; the payload was %s", what, err, snippet(in.Payload)),
						"check field (a dot path into the JSON) and timestamp_field")
					continue
				}
				if off := ts.Sub(in.Received); !ts.IsZero() && !in.Retained && (off >= agent.SourceClockOff || off <= -agent.SourceClockOff) {
					// A live message: its time is its source clock's now
					// (a retained one may be old news).
					how := "ahead of"
					if off < 0 {
						how, off = "behind", -off
					}
					c.warning(u.path+".timestamp_field", fmt.Sprintf("%s: the time the message carries (%s) is %s %s this machine's clock: "+
						"the agent dates the machine's stops by it", what, ts.Format(time.RFC3339), off.Round(time.Minute), how),
						"set the source's clock; local time sent as UTC (with a Z) is off by whole hours")
				}
				fmt.Fprintf(w, "mqtt %s: %s %s: %s: OK (%s)\n", b.Name, u.machine, u.signal, what, snippet(in.Payload))
			}
		}
	}
	return c.result()
}

// connectProblem reports broker bi's connection that failed: at its
// username when the broker refused the login (it answered: the url, the
// network and TLS are fine), else at its url.
func (c *sourceCheck) connectProblem(bi int, b config.MQTTBroker, err error) {
	switch {
	case mqtt.LoginRefused(err) && b.Username != "":
		c.problem(fmt.Sprintf("mqtt[%d].username", bi), fmt.Sprintf("%s: the broker refused user %s: %v", b.Name, b.Username, err),
			"check the user name, and the password in password_file or password_env (the password changed on the broker? the account removed?)")
	case mqtt.LoginRefused(err):
		c.problem(fmt.Sprintf("mqtt[%d].url", bi), fmt.Sprintf("%s: the broker wants a login (it refused a connection without one): %v", b.Name, err),
			"set username and password_file (or password_env) for a user the broker takes")
	default:
		c.problem(fmt.Sprintf("mqtt[%d].url", bi), fmt.Sprintf("%s: %v", b.Name, err),
			"check the url, the network, the credentials and the TLS settings")
	}
}

// snippet is a payload for a message line: quoted, at most 80 bytes.
func snippet(p []byte) string {
	if len(p) > 80 {
		return fmt.Sprintf("%q...", p[:77])
	}
	return fmt.Sprintf("%q", p)
}

// spMissing is a metric a BIRTH heard does not carry: a typo in field.
type spMissing struct {
	metric string
	names  []string // what the BIRTH carries
}

func (e *spMissing) Error() string {
	if len(e.names) == 0 {
		return "it carries no named metric"
	}
	// The names close to it (the same but for case and spaces, or the
	// same last part), else the others: a few.
	squash := func(s string) string { return strings.ToLower(strings.ReplaceAll(s, " ", "")) }
	last := func(s string) string { return squash(s[strings.LastIndex(s, "/")+1:]) }
	var near, other []string
	for _, n := range e.names {
		if squash(n) == squash(e.metric) || last(n) == last(e.metric) {
			near = append(near, n)
		} else {
			other = append(other, n)
		}
	}
	list, what := other, "it carries "
	if len(near) > 0 {
		list, what = near, "did you mean "
	}
	const few = 5
	more := ""
	if len(list) > few {
		more = fmt.Sprintf(" and %d more", len(list)-few)
		list = list[:few]
	}
	q := make([]string, len(list))
	for i := range list {
		q[i] = strconv.Quote(list[i])
	}
	return what + strings.Join(q, ", ") + more
}

// spResult is what validate heard of one Sparkplug B metric.
type spResult struct {
	got   bool
	topic string // the BIRTH or DATA topic it came on
	v     any
	err   error
}

// checkSparkplug listens on the DATA and BIRTH topics of the Sparkplug B
// signals of broker b until each metric came by name (a DATA that names
// it by alias only cannot be read without the BIRTH) or mqttWait passed,
// and checks its value.
func (c *sourceCheck) checkSparkplug(ctx context.Context, bi int, b config.MQTTBroker, uses []sourceUse) {
	w := c.w
	// The filters the agent subscribes (one per edge node), so that the
	// broker's ACL is checked as the agent will need it: an ACL that
	// grants the DDATA and DBIRTH topics only refuses the agent's filter.
	var topics []string
	sp := make([]config.SparkplugTopic, len(uses)) // each use's DATA topic, parsed
	for i, u := range uses {
		sp[i], _ = config.ParseSparkplugTopic(u.ref.MQTT.Topic)
		for _, f := range sp[i].Filters(b.SparkplugCertificates) {
			if !slices.Contains(topics, f) {
				topics = append(topics, f)
			}
		}
	}
	res := make([]spResult, len(uses))
	left := len(uses)
	mc, err := agent.MQTTConfig(b, topics, nil)
	var refused map[string]string
	certs := map[string]bool{} // the BIRTH certificates heard
	t0 := time.Now()
	if err == nil {
		refused, err = mqtt.Listen(ctx, mc, mqttWait, func(topic string, payload []byte, _ bool) bool {
			if strings.HasPrefix(topic, config.SparkplugCertificates) && len(payload) > 0 {
				certs[topic] = true
			}
			for i, u := range uses {
				ref := u.ref.MQTT
				// A certificate is the BIRTH as the broker kept it.
				isBirth := topic == sp[i].Birth() || topic == config.SparkplugCertificates+sp[i].Birth()
				if res[i].got || (topic != ref.Topic && !isBirth) || len(payload) == 0 {
					continue
				}
				found, v, _, err := mapping.CheckSparkplug(u.signal, ref.Field, payload, u.rollover, u.running...)
				if !found && err == nil && topic != ref.Topic {
					// A BIRTH names every metric of its edge node or
					// device: one it lacks is a typo in field.
					names, _ := mapping.SparkplugNames(payload)
					err = &spMissing{metric: ref.Field, names: names}
				}
				if found || err != nil {
					res[i] = spResult{got: true, topic: topic, v: v, err: err}
					left--
				}
			}
			return left == 0
		})
	}
	if err != nil {
		c.connectProblem(bi, b, err)
		return
	}
	fmt.Fprintf(w, "mqtt %s: connected, listened %s on %s (Sparkplug B)\n", b.Name, time.Since(t0).Round(10*time.Millisecond), plural(len(topics), "topic"))
	if b.SparkplugRebirth {
		// validate itself publishes nothing: a QoS 0 publish the ACL
		// refuses has no answer in MQTT 3.1.1, so it could not tell anyway.
		fmt.Fprintf(w, "mqtt %s: sparkplug_rebirth on: the agent asks an edge node for its BIRTH (NCMD Node Control/Rebirth to spBv1.0/<group>/NCMD/<edge node>) when it cannot read its DATA by alias; the broker's ACL must let %s publish there (not checked here)\n", b.Name, b.ACLSubject())
	} else if b.SparkplugCertificates {
		fmt.Fprintf(w, "mqtt %s: sparkplug_rebirth off: the agent never asks an edge node for its BIRTH; DATA by alias that no BIRTH certificate names waits for the edge node's next BIRTH\n", b.Name)
	} else {
		fmt.Fprintf(w, "mqtt %s: sparkplug_rebirth off: after the agent's start or reconnect, DATA by alias waits for the edge node's next BIRTH (sparkplug_rebirth: true lets the agent ask for one)\n", b.Name)
	}
	if b.SparkplugCertificates {
		// The filters refused, each once: signals of one edge node share
		// theirs.
		var cf []string
		for i := range sp {
			for _, f := range sp[i].CertificateFilters() {
				if refused[f] != "" && !slices.Contains(cf, f) {
					cf = append(cf, f)
				}
			}
		}
		switch {
		case len(cf) > 0:
			c.problem(fmt.Sprintf("mqtt[%d].sparkplug_certificates", bi), fmt.Sprintf("%s: the broker refused the subscription to the BIRTH certificates (%s)", b.Name, strings.Join(cf, ", ")),
				"the broker's ACL must let "+b.ACLSubject()+" read them, or set sparkplug_certificates: false")
		case len(certs) == 0:
			c.warning(fmt.Sprintf("mqtt[%d].sparkplug_certificates", bi), fmt.Sprintf("%s: no BIRTH certificate of the edge nodes read came within %s: the broker is not Sparkplug aware, or has seen no BIRTH of them since it started", b.Name, time.Since(t0).Round(10*time.Millisecond)),
				"a Sparkplug-aware broker keeps them (Mosquitto 2.1 with its sparkplug-aware plugin, HiveMQ with its Sparkplug Aware extension); on another, set sparkplug_certificates: false")
		default:
			fmt.Fprintf(w, "mqtt %s: sparkplug_certificates on: %s heard (the agent reads DATA by alias by their aliases from its start)\n", b.Name, plural(len(certs), "BIRTH certificate"))
		}
	}
	for i, u := range uses {
		ref := u.ref.MQTT
		what := ref.Topic + " metric " + ref.Field
		t := sp[i]
		birth := t.Birth()
		r := res[i]
		switch {
		case refused[t.NodeFilter()] != "":
			c.problem(u.path+".topic", fmt.Sprintf("the broker refused the subscription to %s, which the agent makes to read %s and %s", t.NodeFilter(), ref.Topic, birth),
				"the broker's ACL must let "+b.ACLSubject()+" read "+t.NodeFilter())
		case !r.got:
			fmt.Fprintf(w, "mqtt %s: %s %s: %s: no BIRTH or DATA naming it within %s, not checked (an edge node names its metrics in its BIRTH, at its (re)start; a DATA may send only an alias)\n",
				b.Name, u.machine, u.signal, what, mqttWait)
		case r.err != nil && errors.As(r.err, new(*spMissing)):
			c.problem(u.path+".field", fmt.Sprintf("%s: the BIRTH heard on %s does not carry it: %v", what, r.topic, r.err),
				"check field: the metric's name exactly as the edge node publishes it (case, spaces and folders count)")
		case r.err != nil:
			var pe *mapping.PayloadError
			if errors.As(r.err, &pe) {
				r.err = pe.Err
			}
			c.problem(u.path+".field", fmt.Sprintf("%s: %v (on %s)", what, r.err, r.topic),
				"check field (the metric's name as the edge node publishes it) and format")
		default:
			fmt.Fprintf(w, "mqtt %s: %s %s: %s: OK (%v, from %s)\n", b.Name, u.machine, u.signal, what, r.v, r.topic)
		}
	}
}
