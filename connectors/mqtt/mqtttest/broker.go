// Package mqtttest runs an embedded MQTT broker (mochi-mqtt, in memory) for
// tests and `plantedge demo`. It is not for production: it keeps nothing on
// disk and allows every client (unless a test requires a login) to read and write every
// topic (unless a test denies one).
package mqtttest

import (
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"sync"
	"sync/atomic"
	"time"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"
)

// Broker is an embedded MQTT broker listening on loopback.
type Broker struct {
	srv *mochi.Server
	tcp *listeners.TCP
	acl *aclHook

	closeOnce sync.Once
	closeErr  error
	closed    chan struct{} // closed by Close

	certs atomic.Int64 // certificates published (SparkplugAware)

	takeover *takeoverHook
	lose     *loseAcksHook
	tls      bool // StartTLS: URL is ssl://
}

// Certificates is how many BIRTH certificates the broker has published
// retained since SparkplugAware: a test waits for them before a client
// that reads them subscribes (they are published off the publisher's
// connection, a little later).
func (b *Broker) Certificates() int64 { return b.certs.Load() }

// Start starts a broker on addr ("127.0.0.1:0" picks a free port).
func Start(addr string) (*Broker, error) { return start(addr, publishGuard, takeoverGuard, nil) }

// StartTLS is Start with a TLS listener of cfg (its certificates: the
// broker's chain); URL is then ssl://.
func StartTLS(addr string, cfg *tls.Config) (*Broker, error) {
	return start(addr, publishGuard, takeoverGuard, cfg)
}

// start is Start with the takeover hook's guards given (a test shortens
// them).
func start(addr string, publishWait, takeoverWait time.Duration, tlsCfg *tls.Config) (*Broker, error) {
	srv := mochi.New(&mochi.Options{
		InlineClient: true,
		Logger:       slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	acl := &aclHook{deny: map[string]bool{}}
	if err := srv.AddHook(acl, nil); err != nil {
		return nil, fmt.Errorf("mqtt broker auth hook: %w", err)
	}
	takeover := &takeoverHook{srv: srv, at: map[*mochi.Client]time.Time{}, pubs: map[*mochi.Client]time.Time{},
		publishGuard: publishWait, takeoverGuard: takeoverWait}
	if err := srv.AddHook(takeover, nil); err != nil {
		return nil, fmt.Errorf("mqtt broker takeover hook: %w", err)
	}
	lose := &loseAcksHook{}
	if err := srv.AddHook(lose, nil); err != nil {
		return nil, fmt.Errorf("mqtt broker lose-acks hook: %w", err)
	}
	tcp := listeners.NewTCP(listeners.Config{ID: "tcp", Address: addr, TLSConfig: tlsCfg})
	if err := srv.AddListener(tcp); err != nil {
		return nil, fmt.Errorf("mqtt broker listen %s: %w", addr, err)
	}
	if err := srv.Serve(); err != nil {
		return nil, fmt.Errorf("mqtt broker serve: %w", err)
	}
	return &Broker{srv: srv, tcp: tcp, acl: acl, takeover: takeover, lose: lose, closed: make(chan struct{}), tls: tlsCfg != nil}, nil
}

// LoseAcks makes the broker ignore the PUBACKs clients send while lose is
// set, as if each client were killed right after it sent them: the
// messages stay unacknowledged in their sessions, and a client that
// reconnects gets them again, with DUP and their packet identifiers.
func (b *Broker) LoseAcks(lose bool) { b.lose.on.Store(lose) }

// AcksLost is how many PUBACKs LoseAcks made the broker ignore.
func (b *Broker) AcksLost() int64 { return b.lose.lost.Load() }

// Acked is how many QoS 1 and 2 messages clients have acknowledged to the
// broker (mochi's own inflight count goes below 0 across takeovers).
func (b *Broker) Acked() int64 { return b.lose.acked.Load() }

// loseAcksHook is LoseAcks: a PUBACK read while on is given packet
// identifier 0, which no message has, so mochi omits it.
type loseAcksHook struct {
	mochi.HookBase
	on    atomic.Bool
	lost  atomic.Int64
	acked atomic.Int64
}

func (h *loseAcksHook) ID() string { return "lose-acks" }

func (h *loseAcksHook) Provides(b byte) bool {
	return b == mochi.OnPacketRead || b == mochi.OnQosComplete
}

func (h *loseAcksHook) OnPacketRead(_ *mochi.Client, pk packets.Packet) (packets.Packet, error) {
	if h.on.Load() && pk.FixedHeader.Type == packets.Puback {
		pk.PacketID = 0
		h.lost.Add(1)
	}
	return pk, nil
}

func (h *loseAcksHook) OnQosComplete(*mochi.Client, packets.Packet) { h.acked.Add(1) }

// Addr is the broker's host:port.
func (b *Broker) Addr() string { return b.tcp.Address() }

// URL is the broker's tcp:// URL for the connector config (ssl:// when
// started with StartTLS).
func (b *Broker) URL() string {
	if b.tls {
		return "ssl://" + b.Addr()
	}
	return "tcp://" + b.Addr()
}

// Publish publishes a message from the broker's inline client. It waits
// while a connection takes over a kept session, and a takeover waits for
// it (see takeoverHook).
func (b *Broker) Publish(topic string, payload []byte, retain bool, qos byte) error {
	b.takeover.begin()
	defer b.takeover.end()
	return b.srv.Publish(topic, payload, retain, qos)
}

// publishGuard bounds how long a takeover waits for the publishes under
// way when it begins: an inline publish may be held up by an inline
// subscriber that does not return. A publish is not known to have ended
// otherwise, so it is the one bound a takeover can run into under load.
const publishGuard = time.Second

// takeoverGuard bounds how long a takeover holds publishes, should a mark
// outlive its connection's CONNACK, OnSessionEstablished, OnDisconnect and
// close (no such case is known). It was a second, and on a loaded machine
// (-race, CPU hogs) marks ran out before their takeovers were over and
// publishes went ahead into the window where mochi loses them.
const takeoverGuard = 30 * time.Second

// takeoverHook marks the connections taking over a kept session (a client
// id the broker holds, connected or not) from before mochi takes the old
// client's inflight messages to the new client's CONNACK written, and
// publishes wait while one is marked; a takeover waits for the publishes
// under way when it began. mochi v2.7.9 routes a message to the client
// the id maps to: published after the old client's inflight messages were
// copied and before the new client replaced it, it went to the old client
// and was lost (TestPublishDuringTakeoverIsKept: 295 of 1,240 in 300
// takeovers); published after that and before the CONNACK, it went out
// first and paho refused the connect ("non-CONNACK first packet"). The
// inline client's publishes are held in Publish, a client's in OnPublish.
// A will (sendLWT) and SparkplugAware's certificates are not held.
//
// A mark ends as the CONNACK is written (OnPacketSent), not at
// OnSessionEstablished: that comes after mochi has resent the session's
// inflight messages, by when the client may have taken its CONNACK, gone
// and come back, and with marks overlapping back to back a publish found
// no gap (9 published in 300 takeovers). A connect whose CONNACK could not
// be written calls no later hook; its mark ends with its connection closed.
type takeoverHook struct {
	mochi.HookBase
	srv    *mochi.Server
	mu     sync.Mutex
	at     map[*mochi.Client]time.Time // takeovers under way
	inline int                         // Publish calls under way
	pubs   map[*mochi.Client]time.Time // clients' publishes under way

	publishGuard, takeoverGuard time.Duration // the constants but in a test
}

// A client's publish is under way from OnPublish to OnPublished. mochi
// handles a client's packets one after the other, so a client has at most
// one under way: one that never reached OnPublished (its PUBACK not
// written, the connection closed; a later hook rejected it) ends at the
// client's next publish or at its disconnect.

func (h *takeoverHook) ID() string { return "takeover" }

func (h *takeoverHook) Provides(b byte) bool {
	switch b {
	case mochi.OnSessionEstablish, mochi.OnPacketSent, mochi.OnSessionEstablished, mochi.OnDisconnect,
		mochi.OnPublish, mochi.OnPublished:
		return true
	}
	return false
}

func (h *takeoverHook) OnSessionEstablish(cl *mochi.Client, pk packets.Packet) {
	if _, ok := h.srv.Clients.Get(cl.ID); !ok || pk.Connect.Clean {
		return // nothing to take over
	}
	h.mu.Lock()
	h.at[cl] = time.Now()
	h.mu.Unlock()
	h.until(h.publishGuard, func() bool {
		maps.DeleteFunc(h.pubs, func(_ *mochi.Client, at time.Time) bool { return time.Since(at) >= h.publishGuard })
		return h.inline == 0 && len(h.pubs) == 0
	})
	// The guard counts from here: after a wait of a whole publishGuard (an
	// inline publish held up), the mark must still hold the takeover.
	h.mu.Lock()
	h.at[cl] = time.Now()
	h.mu.Unlock()
}

func (h *takeoverHook) OnPacketSent(cl *mochi.Client, pk packets.Packet, _ []byte) {
	if pk.FixedHeader.Type != packets.Connack {
		return
	}
	// Written: a message routed to cl from now on goes out after it.
	h.mu.Lock()
	delete(h.at, cl)
	h.mu.Unlock()
}

func (h *takeoverHook) OnSessionEstablished(cl *mochi.Client, _ packets.Packet) {
	h.mu.Lock()
	delete(h.at, cl)
	h.mu.Unlock()
}

func (h *takeoverHook) OnDisconnect(cl *mochi.Client, _ error, _ bool) {
	h.mu.Lock()
	delete(h.at, cl)
	delete(h.pubs, cl)
	h.mu.Unlock()
}

func (h *takeoverHook) OnPublish(cl *mochi.Client, pk packets.Packet) (packets.Packet, error) {
	if cl.Net.Inline {
		return pk, nil // held in Publish
	}
	h.mu.Lock()
	delete(h.pubs, cl) // its last publish is over, OnPublished or not
	h.mu.Unlock()
	mark := func() bool {
		if h.free() {
			h.pubs[cl] = time.Now()
			return true
		}
		return false
	}
	if !h.until(h.takeoverGuard, mark) {
		h.mu.Lock()
		h.pubs[cl] = time.Now()
		h.mu.Unlock()
	}
	return pk, nil
}

func (h *takeoverHook) OnPublished(cl *mochi.Client, _ packets.Packet) {
	if cl.Net.Inline {
		return
	}
	h.mu.Lock()
	delete(h.pubs, cl)
	h.mu.Unlock()
}

// begin returns once no connection is taking over a session, with an
// inline publish counted under way until end. It counts the publish even
// when its wait ran out, as end uncounts it: before, a wait that ran out
// under load left the count at -1, every later takeover waited its whole
// guard for a publish that was not there and then went ahead while one
// was (a run of 300 takeovers took minutes and lost messages).
func (h *takeoverHook) begin() {
	if !h.until(h.takeoverGuard, func() bool {
		if h.free() {
			h.inline++
			return true
		}
		return false
	}) {
		h.mu.Lock()
		h.inline++
		h.mu.Unlock()
	}
}

func (h *takeoverHook) end() {
	h.mu.Lock()
	h.inline--
	h.mu.Unlock()
}

// free reports whether no takeover is under way: a mark whose connection
// has closed is over, one older than takeoverGuard is let go. Caller holds
// mu.
func (h *takeoverHook) free() bool {
	maps.DeleteFunc(h.at, func(cl *mochi.Client, at time.Time) bool {
		return cl.Closed() || time.Since(at) >= h.takeoverGuard
	})
	return len(h.at) == 0
}

// until calls cond under mu until it reports true, for at most d and once
// more, and returns its last answer.
func (h *takeoverHook) until(d time.Duration, cond func() bool) bool {
	for deadline := time.Now().Add(d); ; {
		h.mu.Lock()
		ok := cond()
		h.mu.Unlock()
		if ok || time.Now().After(deadline) {
			return ok
		}
		time.Sleep(50 * time.Microsecond)
	}
}

// Close stops the broker; closing it again does nothing (a test may stop
// the broker that its cleanup closes).
func (b *Broker) Close() error {
	b.closeOnce.Do(func() {
		close(b.closed)
		b.closeErr = CloseMochi(b.srv)
	})
	return b.closeErr
}

// CloseMochi closes a mochi server once the clients that are going have
// gone (at most a second). mochi v2.7.9's Close takes its clients' read
// lock twice (Clients.GetByListener calls Len): a clean-session client
// disconnecting between the two waits for the write lock, and the second
// read lock waits behind it for good (a test hung 10 minutes in
// Server.Close). Clients still connected are no risk: they are closed after
// that lookup.
func CloseMochi(srv *mochi.Server) error {
	for deadline := time.Now().Add(time.Second); atomic.LoadInt64(&srv.Info.ClientsConnected) > 0 && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond)
	}
	return srv.Close()
}

// Dropped is how many messages the broker dropped (per-client inflight quota
// or pending-writes limit reached): mochi drops these silently, with the
// publisher still getting its PUBACK.
func (b *Broker) Dropped() int64 {
	return atomic.LoadInt64(&b.srv.Info.InflightDropped) + atomic.LoadInt64(&b.srv.Info.MessagesDropped)
}

// Inflight is how many QoS 1/2 messages the broker has sent and not yet had
// acknowledged, over all clients. A publisher that must not overrun mochi's
// per-client quota (8,192) paces itself on it.
func (b *Broker) Inflight() int64 { return atomic.LoadInt64(&b.srv.Info.Inflight) }

// DenyRead makes the broker refuse (deny true) or take again subscriptions
// to topic, as an ACL does: SUBACK 0x80.
func (b *Broker) DenyRead(topic string, deny bool) {
	b.acl.mu.Lock()
	defer b.acl.mu.Unlock()
	b.acl.deny[topic] = deny
}

// aclHook lets every client connect (or, after RequireLogin, those that
// give the user name and password), read every topic but those denied
// (DenyRead) and publish to every topic but those denied (DenyWrite).
type aclHook struct {
	mochi.HookBase
	mu        sync.Mutex
	deny      map[string]bool
	denyWrite map[string]bool

	login          bool // RequireLogin
	user, password string
	refused        int
}

func (h *aclHook) ID() string { return "acl" }

func (h *aclHook) Provides(b byte) bool {
	return b == mochi.OnConnectAuthenticate || b == mochi.OnACLCheck
}

func (h *aclHook) OnConnectAuthenticate(_ *mochi.Client, pk packets.Packet) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.login {
		return true
	}
	ok := pk.Connect.UsernameFlag && pk.Connect.PasswordFlag &&
		string(pk.Connect.Username) == h.user && string(pk.Connect.Password) == h.password
	if !ok {
		h.refused++
	}
	return ok
}

// RequireLogin makes the broker take only clients that give user and
// password from their next connect on, as a broker with a password file
// does: any other is refused with CONNACK "bad user name or password"
// (0x04; 0x86 in MQTT 5). The broker's inline client is not asked.
func (b *Broker) RequireLogin(user, password string) {
	b.acl.mu.Lock()
	defer b.acl.mu.Unlock()
	b.acl.login, b.acl.user, b.acl.password = true, user, password
}

// LoginsRefused is how many connects RequireLogin refused.
func (b *Broker) LoginsRefused() int {
	b.acl.mu.Lock()
	defer b.acl.mu.Unlock()
	return b.acl.refused
}

func (h *aclHook) OnACLCheck(_ *mochi.Client, topic string, write bool) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if write {
		return !h.denyWrite[topic]
	}
	return !h.deny[topic]
}

// Subscribe calls fn with each message published on filter, from the
// broker's inline client (a test's edge node listening for its commands).
// fn runs on the publisher's connection: it must not block.
func (b *Broker) Subscribe(filter string, fn func(topic string, payload []byte, retained bool, qos byte)) error {
	return b.srv.Subscribe(filter, int(subIDs.Add(1)), func(_ *mochi.Client, _ packets.Subscription, pk packets.Packet) {
		fn(pk.TopicName, append([]byte(nil), pk.Payload...), pk.FixedHeader.Retain, pk.FixedHeader.Qos)
	})
}

var subIDs atomic.Int32

// DenyWrite makes the broker refuse (deny true) or take every client's
// publishes to topic, as a broker ACL does: a QoS 0 one is dropped with no
// answer (MQTT 3.1.1 has none).
func (b *Broker) DenyWrite(topic string, deny bool) {
	b.acl.mu.Lock()
	defer b.acl.mu.Unlock()
	if b.acl.denyWrite == nil {
		b.acl.denyWrite = map[string]bool{}
	}
	b.acl.denyWrite[topic] = deny
}

// SparkplugAware makes the broker a Sparkplug-aware one (Sparkplug 3.0, as
// Mosquitto 2.1's sparkplug-aware plugin does): every NBIRTH and DBIRTH it
// passes on is published again, retained, on its $sparkplug/certificates/
// topic. Call it once, before the edge nodes connect. (mochi sends a
// retained message on subscribe only to a filter that matches it without a
// "#" standing for no level: not the NBIRTH certificate for a node's
// "$sparkplug/certificates/spBv1.0/<group>/+/<node>/#".)
func (b *Broker) SparkplugAware() error {
	type birth struct {
		topic   string
		payload []byte
	}
	births := make(chan birth, 256)
	go func() {
		for {
			select {
			case m := <-births:
				// In order, off the publisher's connection (mochi runs
				// the inline subscription there).
				_ = b.srv.Publish("$sparkplug/certificates/"+m.topic, m.payload, true, 1)
				b.certs.Add(1)
			case <-b.closed:
				return
			}
		}
	}()
	for _, filter := range []string{"spBv1.0/+/NBIRTH/+", "spBv1.0/+/DBIRTH/+/+"} {
		err := b.srv.Subscribe(filter, int(subIDs.Add(1)), func(_ *mochi.Client, _ packets.Subscription, pk packets.Packet) {
			select {
			case births <- birth{pk.TopicName, append([]byte(nil), pk.Payload...)}:
			case <-b.closed:
			}
		})
		if err != nil {
			return err
		}
	}
	return nil
}
