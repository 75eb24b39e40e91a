package mqtt

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/plantedge/plantedge/connectors"
)

// strayUnsubscribesKept bounds the topics not ours a session unsubscribes
// from one by one (see unsubscribeStray).
const strayUnsubscribesKept = 100

// session is one network connection to the broker: a fresh paho client per
// connection, so no paho state (stores, routes, pending acks) outlives it.
type session struct {
	src     *Source
	gen     uint64
	client  paho.Client
	present atomic.Bool // broker resumed our session (CONNACK session present)
	// epoch numbers the connection (Sample.Epoch): set before the connect,
	// as the messages a resumed session resends may come before the
	// CONNACK's token is seen done.
	epoch uint64

	lost chan error // cap 1: connection lost after being established

	// refused are the topics the broker refused to subscribe to (SUBACK
	// 0x80) at connect, with their codes: the session goes on with the
	// others and Run asks for these again now and then.
	refused map[string]byte

	mu      sync.Mutex
	pending []*entry        // received, PUBACK not yet sent, in receive order
	strays  map[string]bool // topics not ours this session unsubscribed from
	// straysFull: strayUnsubscribesKept was reached (said once).
	straysFull bool
	// strayQueue holds the stray topics not yet unsubscribed from, in the
	// order they came; strayBusy: a goroutine is unsubscribing them, one
	// at a time (see unsubscribeStray).
	strayQueue []string
	strayBusy  bool
	ackReady   chan struct{} // cap 1: signals the acker
	done       chan struct{} // closed by close: the acker exits
	ackerWG    sync.WaitGroup
	closed     atomic.Bool
}

// entry is one received message on its way to the sink and back.
type entry struct {
	sess     *session
	msg      paho.Message
	sample   connectors.Sample
	acked    atomic.Bool // the agent called Ack
	released atomic.Bool // the inflight slot was given back
}

var sessionGen atomic.Uint64

// connect dials, waits for CONNACK, subscribes all filters with QoS 1 and
// starts the session's acker. ctx bounds this attempt only.
func (s *Source) connect(ctx context.Context, tlsCfg *tls.Config) (*session, error) {
	sess := &session{
		src:      s,
		gen:      sessionGen.Add(1),
		epoch:    s.cfg.EpochBase + s.answered.Load() + 1,
		lost:     make(chan error, 1),
		ackReady: make(chan struct{}, 1),
		done:     make(chan struct{}),
	}
	opts := s.clientOptions(s.cfg.ClientID, tlsCfg).
		SetCleanSession(false).
		SetResumeSubs(false).
		SetAutoAckDisabled(true).
		SetOrderMatters(true).
		SetDefaultPublishHandler(sess.handle).
		SetConnectionLostHandler(func(_ paho.Client, err error) {
			select {
			case sess.lost <- err:
			default:
			}
		})
	sess.client = paho.NewClient(opts)

	tok := sess.client.Connect()
	if err := waitToken(ctx, tok, s.cfg.ConnectTimeout); err != nil {
		sess.client.Disconnect(0)
		return nil, fmt.Errorf("connect %s: %w", redactURL(s.cfg.URL), connectors.WrapCertDate(err))
	}
	// Answered: the next connect is another connection, even if this one
	// ends before its subscribe does (the broker may have resent, and will
	// number its messages anew).
	s.answered.Add(1)
	if ct, ok := tok.(*paho.ConnectToken); ok {
		sess.present.Store(ct.SessionPresent())
	}
	if sess.present.Load() {
		// The broker resends what it sent us unacked, so older undelivered
		// messages would only be duplicates (copies are handed over: see
		// supersede).
		s.supersede(sess.gen)
	}
	// Publish writes to this connection from now on: a resumed session's
	// messages come in before the SUBSCRIBE is answered, and one of them
	// may need a rebirth request (the review: "not connected").
	s.cur.Store(sess)

	// Subscribing on every connect is what restores the subscriptions when
	// the broker lost the session (paho does not, with ResumeSubs off or on).
	refused, err := sess.subscribe(ctx, s.cfg.Topics)
	if err != nil {
		s.cur.CompareAndSwap(sess, nil)
		sess.client.Disconnect(0)
		return nil, fmt.Errorf("subscribe: %w", err)
	}
	// A topic refused (an ACL: mosquitto's dynamic security, EMQX, HiveMQ
	// answer 0x80) does not end the session: the others are read, and
	// messages already taken in are acknowledged (the mosquitto probe: a
	// disconnect here, before the acker ran, left the broker resending the
	// same unacknowledged window at every reconnect, and every topic of
	// the broker stood still).
	sess.ackerWG.Add(1)
	go sess.acker()
	// mochi's "packet identifier in use" (see subscribe) goes once the
	// messages it resends are acknowledged: asked again within the
	// connect, so that the source is connected with its topics (a message
	// published meanwhile to a topic the session did not hold is lost).
	for wait := 50 * time.Millisecond; wait <= 800*time.Millisecond; wait *= 2 {
		var again []string
		for t, code := range refused {
			if code == codeIDInUse {
				again = append(again, t)
			}
		}
		if len(again) == 0 {
			break
		}
		select {
		case <-ctx.Done():
		case <-time.After(wait):
		}
		more, err := sess.subscribe(ctx, again)
		if err != nil {
			break // the serve loop asks again
		}
		for _, t := range again {
			delete(refused, t)
			if code, ok := more[t]; ok {
				refused[t] = code
			}
		}
	}
	sess.refused = refused
	gone := !sess.present.Load() // a new session holds none of them
	if drop := slices.DeleteFunc(slices.Clone(s.cfg.Unsubscribe), func(f string) bool { return slices.Contains(s.cfg.Topics, f) }); len(drop) > 0 && !gone {
		if err := waitToken(ctx, sess.client.Unsubscribe(drop...), s.cfg.ConnectTimeout); err != nil {
			s.log.Warn("mqtt unsubscribe from filters of an earlier configuration not answered: what they bring comes as strays", "filters", drop, "err", err)
		} else {
			s.log.Info("mqtt unsubscribed the broker's session from filters of an earlier configuration", "filters", drop)
			gone = true
		}
	}
	if gone && len(s.cfg.Unsubscribe) > 0 && s.cfg.Unsubscribed != nil {
		s.cfg.Unsubscribed(slices.Clone(s.cfg.Unsubscribe))
	}
	return sess, nil
}

// subscribe subscribes to topics with QoS 1 and returns those the broker
// refused, with their codes. err is the SUBSCRIBE not answered.
func (ss *session) subscribe(ctx context.Context, topics []string) (refused map[string]byte, err error) {
	s := ss.src
	filters := make(map[string]byte, len(topics))
	for _, t := range topics {
		filters[t] = 1
	}
	stok := ss.client.SubscribeMultiple(filters, nil)
	if err := waitToken(ctx, stok, s.cfg.ConnectTimeout); err != nil {
		return nil, err
	}
	st, ok := stok.(*paho.SubscribeToken)
	if !ok {
		return nil, nil
	}
	for topic, code := range st.Result() {
		// mochi answers "packet identifier in use" (0x91, an MQTT 5
		// code) when our SUBSCRIBE's id collides with a message it is
		// resending in the resumed session, although the two flows' ids
		// are independent. The session may not hold the subscription (an
		// earlier configuration's source unsubscribed it: the review, a
		// machine put back went silently dead when this was taken for
		// "held"): asked again with the refused topics' backoff, once the
		// resent messages are acknowledged — quietly (noteRefused), and
		// not shown as refused (Stats).
		if code >= 0x80 {
			if refused == nil {
				refused = map[string]byte{}
			}
			refused[topic] = code
		}
	}
	return refused, nil
}

// clientOptions are the paho options every connection to the broker shares:
// address, MQTT 3.1.1, timeouts, credentials and TLS (tlsCfg nil: none),
// and no reconnecting of paho's own (one loop owns that).
func (s *Source) clientOptions(clientID string, tlsCfg *tls.Config) *paho.ClientOptions {
	opts := paho.NewClientOptions().
		AddBroker(s.cfg.URL).
		SetClientID(clientID).
		SetProtocolVersion(4).
		SetAutoReconnect(false).
		SetConnectRetry(false).
		SetKeepAlive(s.cfg.KeepAlive).
		SetPingTimeout(min(s.cfg.KeepAlive, 10*time.Second)).
		SetConnectTimeout(s.cfg.ConnectTimeout).
		SetWriteTimeout(s.cfg.ConnectTimeout)
	if s.cfg.Username != "" {
		opts.SetUsername(s.cfg.Username).SetPassword(s.cfg.Password)
	}
	if tlsCfg != nil {
		opts.SetTLSConfig(tlsCfg.Clone())
	}
	if u, err := url.Parse(s.cfg.URL); err == nil && (u.Scheme == "tcp" || u.Scheme == "mqtt") {
		opts.SetCustomOpenConnectionFn(dialBuffered)
	}
	return opts
}

// waitToken waits for tok, ctx or the timeout, whichever comes first.
func waitToken(ctx context.Context, tok paho.Token, timeout time.Duration) error {
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-tok.Done():
		return tok.Error()
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return errors.New("timed out")
	}
}

// close disconnects (sending DISCONNECT within quiesce ms when the link is
// up) and stops the acker. PUBACKs not sent by then are left to the broker's
// redelivery.
func (ss *session) close(quiesce uint) {
	if !ss.closed.CompareAndSwap(false, true) {
		return
	}
	ss.client.Disconnect(quiesce)
	close(ss.done)
	ss.ackerWG.Wait()
}

// ours reports whether topic matches one of the source's filters: a map
// lookup for the exact topics the agent subscribes to, at every message.
func (s *Source) ours(topic string) bool {
	return s.exact[topic] || slices.ContainsFunc(s.wild, func(f string) bool { return topicMatches(f, topic) })
}

// topicMatches reports whether topic matches the subscription filter (MQTT
// 3.1.1 4.7: "+" one level, "#" the rest; a filter starting with a
// wildcard does not match a topic starting with "$").
func topicMatches(filter, topic string) bool {
	if strings.HasPrefix(topic, "$") && (strings.HasPrefix(filter, "+") || strings.HasPrefix(filter, "#")) {
		return false
	}
	fs, ts := strings.Split(filter, "/"), strings.Split(topic, "/")
	for i, f := range fs {
		if f == "#" {
			return true // also the parent level: "a/#" matches "a"
		}
		if i >= len(ts) || (f != "+" && f != ts[i]) {
			return false
		}
	}
	return len(fs) == len(ts)
}

// unsubscribeStray unsubscribes, once per session, from a topic a message
// came on that is not one of ours: a persistent session keeps the
// subscriptions of an earlier configuration (a topic since removed), or
// of another client using the same client_id. The message itself still
// goes to the sink, which reports it. It must not block (see handle).
//
// A wildcard subscription ("old/#") brings a topic per message, and
// unsubscribing a topic name takes nothing off: past strayUnsubscribesKept
// topics in a session it asks no more (said once), so that what it keeps
// and the unsubscribes it sends do not grow with the session's life.
func (ss *session) unsubscribeStray(topic string) {
	ss.mu.Lock()
	done := ss.strays[topic]
	if ss.strays == nil {
		ss.strays = map[string]bool{}
	}
	full := !done && len(ss.strays) >= strayUnsubscribesKept
	if !done && !full {
		ss.strays[topic] = true
	}
	said := ss.straysFull
	ss.straysFull = ss.straysFull || full
	ss.mu.Unlock()
	if full && !said {
		ss.src.log.Warn(fmt.Sprintf("more than %d topics no machine uses came in this connection: the broker session of this client_id holds a wildcard subscription this agent did not make (another client using this client_id?); their topics are no longer unsubscribed one by one (give each client its own client_id; a broker's tool can remove the session)", strayUnsubscribesKept),
			"topic", topic)
	}
	if done || full || ss.closed.Load() {
		return
	}
	ss.mu.Lock()
	ss.strayQueue = append(ss.strayQueue, topic)
	start := !ss.strayBusy
	ss.strayBusy = true
	ss.mu.Unlock()
	if start {
		go ss.unsubscribeStrays()
	}
}

// unsubscribeStrays unsubscribes from the queued stray topics one at a
// time, until none is left or the session is closed. One goroutine, not
// one per topic: paho's Unsubscribe blocks until its writer takes the
// packet, up to the write timeout once the connection is gone — a hundred
// strays at once left a hundred goroutines waiting out that timeout after
// the session closed.
func (ss *session) unsubscribeStrays() {
	log := ss.src.log
	for {
		ss.mu.Lock()
		if len(ss.strayQueue) == 0 || ss.closed.Load() {
			ss.strayQueue, ss.strayBusy = nil, false
			ss.mu.Unlock()
			return
		}
		topic := ss.strayQueue[0]
		ss.strayQueue = ss.strayQueue[1:]
		ss.mu.Unlock()
		tok := ss.client.Unsubscribe(topic)
		if !tok.WaitTimeout(ss.src.cfg.ConnectTimeout) || tok.Error() != nil {
			log.Warn("mqtt unsubscribe from a topic no machine uses failed", "topic", topic, "err", tok.Error())
			continue
		}
		log.Info("mqtt unsubscribed from a topic no machine uses: the broker session held its subscription (from an earlier configuration, or from another client using this client_id)",
			"topic", topic)
	}
}

// straysPending reports whether stray topics wait to be unsubscribed from,
// or one is being (tests).
func (ss *session) straysPending() bool {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	return ss.strayBusy
}

// handle is paho's publish handler. OrderMatters is on, so it runs on paho's
// router goroutine in receive order; it must never block (paho's shutdown
// waits for it), so it only queues the message.
func (ss *session) handle(_ paho.Client, m paho.Message) {
	s := ss.src
	s.received.Add(1)
	if m.Duplicate() {
		s.dups.Add(1)
	}
	if !s.ours(m.Topic()) {
		ss.unsubscribeStray(m.Topic())
	}
	e := &entry{sess: ss, msg: m}
	rx := connectors.Receive()
	e.sample = connectors.Sample{
		Source:      s.cfg.Name,
		Kind:        connectors.KindMQTT,
		Address:     m.Topic(),
		Server:      s.server,
		Payload:     append([]byte{}, m.Payload()...),
		Good:        true,
		ReceiveTime: rx.Time,
		Seen:        rx.Seen,
		Duplicate:   m.Duplicate(),
		PacketID:    packetID(m),
		// A retained message is the broker's stored last value, sent on
		// every (re)subscribe: it may repeat one already processed.
		Initial: m.Retained(),
		// A retained copy in a session the broker kept comes from our
		// re-subscribe (MQTT 3.1.1 3.3.1.3: the flag is set only for
		// messages sent because a subscription was made); the session's
		// own flow carries every message since.
		Resent: m.Retained() && ss.present.Load(),
		Conn:   ss.gen,
		Epoch:  ss.epoch,
		Ack:    e.ack,
	}
	ss.mu.Lock()
	ss.pending = append(ss.pending, e)
	ss.mu.Unlock()
	s.enqueue(e)
}

// packetID is m's packet identifier, 0 for QoS 0 (which has none).
func packetID(m paho.Message) uint16 {
	if m.Qos() == 0 {
		return 0
	}
	return m.MessageID()
}

// ack is Sample.Ack: safe from any goroutine, effective once.
func (e *entry) ack() {
	if !e.acked.CompareAndSwap(false, true) {
		return
	}
	s := e.sess.src
	s.acked.Add(1)
	e.release()
	select {
	case e.sess.ackReady <- struct{}{}:
	default:
	}
}

func (e *entry) release() {
	if e.released.CompareAndSwap(false, true) {
		s := e.sess.src
		s.inflight.Add(-1)
		<-s.slots
	}
}

// acker sends PUBACKs in receive order, as MQTT 3.1.1 §4.6 requires, however
// the agent orders its Ack calls: a PUBACK waits for all earlier messages of
// the connection to be acked. Acking late is always safe; acking early never
// happens.
func (ss *session) acker() {
	defer ss.ackerWG.Done()
	for {
		select {
		case <-ss.ackReady:
		case <-ss.done:
			return
		}
		ss.mu.Lock()
		n := 0
		for n < len(ss.pending) && ss.pending[n].acked.Load() {
			n++
		}
		batch := make([]*entry, n)
		copy(batch, ss.pending[:n])
		clear(ss.pending[:n])
		ss.pending = ss.pending[n:]
		ss.mu.Unlock()
		for _, e := range batch {
			select {
			case <-ss.done:
				return
			default:
			}
			e.msg.Ack()
		}
	}
}

// enqueue appends e to the delivery queue.
func (s *Source) enqueue(e *entry) {
	s.qMu.Lock()
	s.queue = append(s.queue, e)
	s.qMu.Unlock()
	select {
	case s.qReady <- struct{}{}:
	default:
	}
}

// supersede drops queued, undelivered entries received before session gen,
// but for copies (DUP): a copy handed over with its connection's number
// (Sample.Epoch) is what lets the mapping know the next connection's copy
// of the same message for one — it knows a copy only of a record of its
// connection or the one before, and the original may be two connections
// back (TestCopyWaitingWhenItsConnectionDropsIsHandedOver: a stop booked
// twice).
func (s *Source) supersede(gen uint64) {
	s.qMu.Lock()
	defer s.qMu.Unlock()
	kept := s.queue[:0]
	for _, e := range s.queue {
		if e.sess.gen < gen && !e.sample.Duplicate {
			s.superseded.Add(1)
			continue
		}
		kept = append(kept, e)
	}
	clear(s.queue[len(kept):])
	s.queue = kept
}

func (s *Source) dequeue(ctx context.Context) (*entry, error) {
	for {
		s.qMu.Lock()
		if len(s.queue) > 0 {
			e := s.queue[0]
			s.queue[0] = nil
			s.queue = s.queue[1:]
			s.qMu.Unlock()
			return e, nil
		}
		s.qMu.Unlock()
		select {
		case <-s.qReady:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// deliverLoop hands queued samples to the sink in receive order, holding at
// most MaxInflight unacked ones. It returns when ctx is done or the sink fails.
func (s *Source) deliverLoop(ctx context.Context) error {
	for {
		e, err := s.dequeue(ctx)
		if err != nil {
			return err
		}
		select {
		case s.slots <- struct{}{}:
			s.inflight.Add(1)
		case <-ctx.Done():
			return ctx.Err()
		}
		if err := s.sink.Deliver(ctx, e.sample); err != nil {
			e.release() // not handed over: the broker redelivers it
			return fmt.Errorf("deliver: %w", err)
		}
	}
}

// redactURL hides a password in a broker URL for logs and errors.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable url)"
	}
	return u.Redacted()
}
