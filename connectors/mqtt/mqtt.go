// Package mqtt is plantedge's MQTT source: it subscribes to topic filters
// with QoS 1 in a persistent session (paho v3) and hands every message to a
// connectors.Sink with an ack function, so a message is acknowledged to the
// broker only after the agent has made it durable.
//
// Broker limits matter for the at-least-once promise. A broker only holds so
// many unacknowledged QoS 1 messages per session and silently drops the rest:
// mochi-mqtt keeps 8,192 (Capabilities.MaximumInflight) and Mosquitto keeps
// 1,000 queued messages for an offline session (max_queued_messages) and sends
// at most 20 unacknowledged ones at a time (max_inflight_messages). Raise those
// on the broker when machines publish faster than the agent can be down for,
// and prefer cumulative counters in payloads so a lost message loses nothing.
package mqtt

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/plantedge/plantedge/connectors"
)

// Defaults applied by New to zero Config fields.
const (
	DefaultKeepAlive      = 30 * time.Second
	DefaultBackoffMin     = 500 * time.Millisecond
	DefaultBackoffMax     = 30 * time.Second
	DefaultMaxInflight    = 1000
	DefaultConnectTimeout = 10 * time.Second
)

// ErrConfig is wrapped by every validation error New returns.
var ErrConfig = errors.New("invalid mqtt config")

// Config describes one MQTT broker connection.
type Config struct {
	Name     string // configured broker name, copied into Sample.Source
	URL      string // tcp://, mqtt://, ssl://, tls://, mqtts://, ws:// or wss://
	ClientID string // stable client id: the broker keys the persistent session on it
	Username string
	Password string

	CAFile             string // PEM CA bundle to verify the broker; system roots when empty
	CertFile, KeyFile  string // client certificate and key (PEM), both or neither
	ServerName         string // TLS server name when it differs from the URL host
	InsecureSkipVerify bool   // disables broker certificate verification (never by default)

	Topics []string // topic filters (wildcards allowed), subscribed with QoS 1
	// Unsubscribe are filters an earlier configuration subscribed in the
	// broker's session for this client id and this one does not: a
	// resumed session keeps them, and what they bring would come as
	// strays (whose unsubscribe, of a message's topic, leaves a wildcard
	// filter in place). Unsubscribed after each connect that resumed a
	// session, before OnConnect.
	Unsubscribe []string
	// Unsubscribed, when set, is told the filters of Unsubscribe once they
	// are gone from the broker's session: the unsubscribe was answered, or
	// the connect began a new session. Called in the connect, after each
	// such connect; it must not block.
	Unsubscribed func(filters []string)

	KeepAlive      time.Duration // default 30s
	ConnectTimeout time.Duration // bounds one connect+subscribe attempt; default 10s
	BackoffMin     time.Duration // first reconnect delay cap; default 500ms
	BackoffMax     time.Duration // reconnect delay cap; default 30s

	// MaxInflight bounds the samples handed to the sink and not yet acked
	// (default 1000). It does not bound what the broker has sent and not
	// had acknowledged: paho reads on and the connector queues what it
	// reads until the sink takes it, so that is bounded by the broker's own
	// limit per subscriber (mochi 8192 unacked; Mosquitto
	// max_inflight_messages, with max_queued_messages behind them). A burst
	// faster than the sink commits that goes past it is dropped by the
	// broker, newest first, unseen here (the traps probe: 3,780 of a
	// 20,000-message burst on mochi's defaults; docs/runbook.md, MQTT broker limits).
	MaxInflight int

	// HadSession says the broker had a session for this client id before
	// this process started (the agent remembers it in its buffer): a first
	// connect without one is reported like a session lost while connected
	// (a site power cut restarting the broker without persistence and the
	// edge box together).
	HadSession bool
	// EpochBase is the number of the last connection to this broker the
	// agent knows of (kept in its buffer): the source numbers its
	// connections on from it (Sample.Epoch; OnConnect's epoch).
	EpochBase uint64
	// OnConnect, if set, is called after each connect and subscribe, with
	// whether the broker resumed the session and the connection's number
	// (Sample.Epoch), for the agent to keep. It must not block.
	OnConnect func(sessionPresent bool, epoch uint64)
	// OnDisconnect, if set, is called when a connection OnConnect announced
	// is lost (not when Run ends), before the backoff. It must not block.
	OnDisconnect func()
	// PeerCertificates, if set, is called at each TLS connection with the
	// chain it relies on (connectors.ChainInUse: the verified chain up to
	// ca_file's or the system's root; what the broker presented when
	// InsecureSkipVerify): the agent shows when it expires. It must not
	// block.
	PeerCertificates func([]*x509.Certificate)

	Logger *slog.Logger
}

// Stats are the source's counters since New.
type Stats struct {
	Received   uint64 // messages received from the broker
	Acked      uint64 // samples the agent acknowledged
	Duplicates uint64 // messages received with the DUP flag (redeliveries)
	Reconnects uint64 // connections lost after having been established
	Connects   uint64 // successful connect+subscribe rounds
	Failures   uint64 // failed connect or subscribe attempts
	Superseded uint64 // undelivered messages dropped because a resumed session redelivers them
	Inflight   int64  // samples handed to the sink and not yet acked
	LastError  string
	// LastErrorTime is when LastError happened.
	LastErrorTime time.Time
	// Refused are the topics the broker refuses to subscribe to now (SUBACK
	// 0x80 and the like), by topic: asked for again with backoff.
	Refused []RefusedTopic
	// NextAttempt is when the source connects again, while it waits to
	// (after a failed connect, a refused login, a lost connection); zero
	// while it connects or is connected.
	NextAttempt time.Time
}

// RefusedTopic is a subscription the broker refused, with its SUBACK code.
type RefusedTopic struct {
	Topic string
	Code  byte
}

// Source is an MQTT connector. It is created by New and runs in Run.
type Source struct {
	cfg  Config
	sink connectors.Sink
	log  *slog.Logger
	tls  bool // URL scheme needs TLS
	// server is connectors.ServerID of the broker URL, on every sample
	server string
	// exact and wild are cfg.Topics without and with wildcards: what a
	// message's topic must match to be one of ours (see ours).
	exact map[string]bool
	wild  []string

	state   atomic.Value // connectors.State
	running atomic.Bool

	received, acked, dups, reconnects, connects, failures, superseded atomic.Uint64
	// answered counts the connects the broker answered (CONNACK), whether
	// or not the subscribe then failed: Sample.Epoch is EpochBase plus the
	// connection's count.
	answered atomic.Uint64
	inflight atomic.Int64

	errMu     sync.Mutex
	lastErr   string
	lastErrAt time.Time
	// nextAttempt is when the source connects again while it waits to
	// (waitToConnect); zero otherwise.
	nextAttempt time.Time
	// refused are the topics the broker refuses to subscribe to, as the
	// last connection or retry found them (noteRefused).
	refused map[string]byte

	// queue of received messages not yet handed to the sink, in receive order.
	qMu    sync.Mutex
	queue  []*entry
	qReady chan struct{} // cap 1: signals the delivery loop

	slots chan struct{} // MaxInflight tokens

	// cur is the connected session (nil between connections): what
	// Publish writes to.
	cur atomic.Pointer[session]

	sleep func(ctx context.Context, d time.Duration) error
}

// New validates cfg and returns a Source; it does no I/O.
func New(cfg Config, sink connectors.Sink) (*Source, error) {
	if sink == nil {
		return nil, fmt.Errorf("%w: nil sink", ErrConfig)
	}
	if cfg.KeepAlive == 0 {
		cfg.KeepAlive = DefaultKeepAlive
	}
	if cfg.ConnectTimeout == 0 {
		cfg.ConnectTimeout = DefaultConnectTimeout
	}
	if cfg.BackoffMin == 0 {
		cfg.BackoffMin = DefaultBackoffMin
	}
	if cfg.BackoffMax == 0 {
		cfg.BackoffMax = DefaultBackoffMax
	}
	if cfg.MaxInflight == 0 {
		cfg.MaxInflight = DefaultMaxInflight
	}
	isTLS, err := cfg.validate()
	if err != nil {
		return nil, err
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Source{
		cfg:    cfg,
		sink:   sink,
		log:    log.With("component", "mqtt", "source", cfg.Name),
		tls:    isTLS,
		server: connectors.ServerID(cfg.URL),
		exact:  map[string]bool{},
		qReady: make(chan struct{}, 1),
		slots:  make(chan struct{}, cfg.MaxInflight),
		sleep:  sleepCtx,
	}
	for _, t := range cfg.Topics {
		if strings.ContainsAny(t, "+#") {
			s.wild = append(s.wild, t)
		} else {
			s.exact[t] = true
		}
	}
	s.state.Store(connectors.StateDown)
	return s, nil
}

func (c Config) validate() (isTLS bool, err error) {
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	if c.Name == "" {
		bad("name is empty")
	}
	u, perr := url.Parse(c.URL)
	switch {
	case c.URL == "":
		bad("url is empty")
	case perr != nil:
		bad("url: %w", perr)
	default:
		switch strings.ToLower(u.Scheme) {
		case "tcp", "mqtt", "ws":
		case "ssl", "tls", "mqtts", "wss":
			isTLS = true
		default:
			bad("url %q: scheme must be tcp, mqtt, ssl, tls, mqtts, ws or wss", c.URL)
		}
		if u.Host == "" {
			bad("url %q: no host", c.URL)
		}
	}
	if c.ClientID == "" {
		bad("client_id is empty (a persistent session needs a stable client id)")
	} else if len(c.ClientID) > 65535 {
		bad("client_id is too long")
	}
	if c.Password != "" && c.Username == "" {
		bad("password without username")
	}
	if (c.CertFile == "") != (c.KeyFile == "") {
		bad("cert_file and key_file must be set together")
	}
	if !isTLS && (c.CAFile != "" || c.CertFile != "" || c.ServerName != "" || c.InsecureSkipVerify) {
		bad("tls settings given but url %q is not ssl://, tls://, mqtts:// or wss://", c.URL)
	}
	if len(c.Topics) == 0 {
		bad("no topics")
	}
	seen := map[string]bool{}
	for _, t := range c.Topics {
		if err := ValidFilter(t); err != nil {
			bad("topic %q: %w", t, err)
		} else if seen[t] {
			bad("topic %q listed twice", t)
		}
		seen[t] = true
	}
	if c.KeepAlive < time.Second {
		bad("keep_alive %s is below 1s", c.KeepAlive)
	}
	if c.KeepAlive > 65535*time.Second {
		bad("keep_alive %s is above 65535s", c.KeepAlive)
	}
	if c.ConnectTimeout < 0 {
		bad("connect_timeout is negative")
	}
	if c.BackoffMin < 0 || c.BackoffMax < c.BackoffMin {
		bad("backoff: need 0 <= min (%s) <= max (%s)", c.BackoffMin, c.BackoffMax)
	}
	if c.MaxInflight < 1 {
		bad("max_inflight %d must be positive", c.MaxInflight)
	}
	if len(errs) > 0 {
		return false, fmt.Errorf("%w %q: %w", ErrConfig, c.Name, errors.Join(errs...))
	}
	return isTLS, nil
}

// ValidFilter reports whether f is a valid MQTT topic filter.
func ValidFilter(f string) error {
	if f == "" {
		return errors.New("empty filter")
	}
	if len(f) > 65535 {
		return errors.New("filter too long")
	}
	if strings.ContainsRune(f, 0) {
		return errors.New("filter contains NUL")
	}
	levels := strings.Split(f, "/")
	for i, l := range levels {
		if strings.Contains(l, "#") && (l != "#" || i != len(levels)-1) {
			return errors.New("'#' must be the whole last level")
		}
		if strings.Contains(l, "+") && l != "+" {
			return errors.New("'+' must be a whole level")
		}
	}
	return nil
}

// Name returns the configured broker name.
func (s *Source) Name() string { return s.cfg.Name }

// State returns the connection state: connected once subscribed, connecting
// during an attempt, down while not running or waiting to retry.
func (s *Source) State() connectors.State { return s.state.Load().(connectors.State) }

// Stats returns a snapshot of the counters.
func (s *Source) Stats() Stats {
	s.errMu.Lock()
	last, lastAt, next := s.lastErr, s.lastErrAt, s.nextAttempt
	var refused []RefusedTopic
	for _, t := range slices.Sorted(maps.Keys(s.refused)) {
		if s.refused[t] != codeIDInUse { // asked again soon: no refusal (see subscribe)
			refused = append(refused, RefusedTopic{Topic: t, Code: s.refused[t]})
		}
	}
	s.errMu.Unlock()
	return Stats{
		Received:      s.received.Load(),
		Acked:         s.acked.Load(),
		Duplicates:    s.dups.Load(),
		Reconnects:    s.reconnects.Load(),
		Connects:      s.connects.Load(),
		Failures:      s.failures.Load(),
		Superseded:    s.superseded.Load(),
		Inflight:      s.inflight.Load(),
		LastError:     last,
		LastErrorTime: lastAt,
		Refused:       refused,
		NextAttempt:   next,
	}
}

// ErrNotConnected is Publish's error while the source has no connection.
var ErrNotConnected = errors.New("not connected to the broker")

// Publish publishes payload to topic with QoS 0, not retained, on the
// source's current connection, and waits at most the connect timeout for
// it to be written. It is the agent's only write to the broker (a
// Sparkplug B rebirth request, which the spec sends with QoS 0 and no
// retain): nothing of the session's reading depends on it. A publish the
// broker's ACL refuses is not reported — MQTT 3.1.1 has no answer to a
// QoS 0 publish (mosquitto and mochi drop it silently) — so err covers
// only a connection down or a write that failed or timed out.
func (s *Source) Publish(topic string, payload []byte) error {
	sess := s.cur.Load()
	if sess == nil || sess.closed.Load() {
		return ErrNotConnected
	}
	if err := waitToken(context.Background(), sess.client.Publish(topic, 0, false, payload), s.cfg.ConnectTimeout); err != nil {
		return fmt.Errorf("publish: %w", err)
	}
	return nil
}

// codeIDInUse is the SUBACK code mochi answers a subscription of a resumed
// session with while it resends a message whose packet id our SUBSCRIBE
// took ("packet identifier in use", an MQTT 5 code): no refusal, asked
// again with the refused topics' backoff.
const codeIDInUse = 0x91

// noteRefused takes the topics the broker refuses now: each newly refused
// one is logged (its signals get no values), each it takes again too;
// Stats.Refused lists them while they are refused (not the last error: it
// stayed there after the broker took the topic, and hid the lost-session
// warning — review).
func (s *Source) noteRefused(refused map[string]byte) {
	s.errMu.Lock()
	prev := s.refused
	s.refused = refused
	s.errMu.Unlock()
	for _, t := range slices.Sorted(maps.Keys(refused)) {
		if refused[t] == codeIDInUse {
			s.log.Info("mqtt broker answered a subscription of a resumed session 'packet identifier in use' (it was resending a message with our SUBSCRIBE's id): asked again shortly",
				"topic", t, "code", fmt.Sprintf("0x%02x", refused[t]))
			continue
		}
		if _, ok := prev[t]; !ok {
			s.log.Warn("mqtt broker refuses the subscription to a topic: its signals get no values; the broker's other topics are read, and this one is asked for again with backoff (the broker's ACL must let this client read it)",
				"topic", t, "code", fmt.Sprintf("0x%02x", refused[t]), "client_id", s.cfg.ClientID)
		}
	}
	for _, t := range slices.Sorted(maps.Keys(prev)) {
		if _, ok := refused[t]; !ok && prev[t] != codeIDInUse {
			s.log.Info("mqtt broker now takes the subscription to a topic it refused", "topic", t)
		}
	}
}

func (s *Source) setErr(err error) {
	s.errMu.Lock()
	s.lastErr, s.lastErrAt = err.Error(), time.Now()
	s.errMu.Unlock()
}

// tlsMismatch adds a hint to a connect error that comes from speaking plain
// MQTT to a TLS listener (the broker resets the connection) or TLS to a
// plain one (its answer is no TLS handshake).
func tlsMismatch(rawURL string, err error) error {
	u, perr := url.Parse(rawURL)
	if perr != nil {
		return err
	}
	msg := err.Error()
	switch {
	case (u.Scheme == "tcp" || u.Scheme == "mqtt") && (strings.Contains(msg, "connection reset by peer") || strings.Contains(msg, "EOF")):
		return fmt.Errorf("%w (a TLS port? use ssl:// for a listener that takes TLS, usually port 8883)", err)
	case (u.Scheme == "ssl" || u.Scheme == "tls" || u.Scheme == "mqtts") && (strings.Contains(msg, "first record does not look like a TLS handshake") ||
		strings.Contains(msg, "EOF") || strings.Contains(msg, "connection reset by peer")):
		// Mosquitto resets a plain listener's connection at a ClientHello.
		return fmt.Errorf("%w (a plain MQTT port? use tcp:// for it, or the broker's TLS port, usually 8883)", err)
	}
	return err
}

// loginHint says whose login a broker refused, and what to check: status
// showed the source's last error as "connect tcp://…: not Authorized",
// naming neither. (validate --mqtt places the same refusal at the
// broker's username.)
func loginHint(user string, err error) error {
	switch {
	case !LoginRefused(err):
		return err
	case user == "":
		return fmt.Errorf("%w (the broker wants a login: set username and password_file or password_env for a user it takes)", err)
	}
	return fmt.Errorf("%w (the broker refused user %s: check the password in password_file or password_env — changed on the broker? the account removed?)", err, user)
}

// stableConnection is how long a connection must hold before a loss of it
// starts the reconnect backoff over.
const stableConnection = 10 * time.Second

// kickedAfter is how many connections in a row lost before stableConnection
// make the source say another client probably uses its client id.
const kickedAfter = 3

// Run connects, subscribes and delivers messages until ctx is done, then
// disconnects and returns nil. It owns reconnection: paho's AutoReconnect and
// ConnectRetry are off, because paho's own loop has no jitter and does not
// resubscribe when the broker lost the session; this loop does both, with
// exponential backoff and full jitter capped at BackoffMax. Run returns an
// error without retrying only for a TLS setup that cannot work (unreadable
// CA, certificate or key), or if it is already running.
func (s *Source) Run(ctx context.Context) error {
	if !s.running.CompareAndSwap(false, true) {
		return fmt.Errorf("mqtt %s: already running", s.cfg.Name)
	}
	defer s.running.Store(false)
	defer s.state.Store(connectors.StateDown)

	var tlsCfg *tls.Config
	if s.tls {
		var err error
		if tlsCfg, err = s.tlsConfig(); err != nil {
			s.setErr(err)
			return err
		}
	}

	parent := ctx
	ctx, cancel := context.WithCancelCause(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := s.deliverLoop(ctx); err != nil && ctx.Err() == nil {
			cancel(err) // the sink is closed: stop, unacked messages stay with the broker
		}
	}()
	defer wg.Wait()
	defer cancel(nil)

	var attempt int
	var failingSince time.Time
	shortLived := 0      // connections in a row lost before stableConnection
	loginLogged := false // a refused login logged in this run of failures
	bo := connectors.NewBackoff(s.cfg.BackoffMin, s.cfg.BackoffMax)
	for ctx.Err() == nil {
		s.state.Store(connectors.StateConnecting)
		sess, err := s.connect(ctx, tlsCfg)
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			err = loginHint(s.cfg.Username, tlsMismatch(s.cfg.URL, err))
			s.failures.Add(1)
			s.setErr(err)
			s.state.Store(connectors.StateDown)
			switch login := LoginRefused(err); {
			case login && !loginLogged:
				// A refused login needs a person: an error, once a run
				// of failures, also when it came after another failure
				// (the broker back from its restart with the account
				// changed).
				if attempt == 0 {
					failingSince = time.Now()
				}
				loginLogged = true
				s.log.Error("mqtt broker refused the login; trying again in a minute (brokers lock accounts after failed logins), at once after a reload with another password", "err", err)
			case attempt == 0:
				failingSince = time.Now()
				s.log.Warn("mqtt connect failed, retrying with backoff", "err", err)
			default:
				s.log.Debug("mqtt connect failed", "err", err, "attempt", attempt+1)
			}
			d := bo.NextBackOff()
			if LoginRefused(err) {
				// Not at the pace of a network error: a minute at least,
				// as the OPC UA source waits after a refused user.
				d = max(d, connectors.LoginRetry)
			}
			attempt++
			if s.waitToConnect(ctx, d) != nil {
				break
			}
			continue
		}
		if attempt > 0 {
			s.log.Info("mqtt connected, recovered", "failures", attempt, "after", time.Since(failingSince).Round(time.Millisecond))
		} else {
			s.log.Info("mqtt connected", "session_present", sess.present.Load())
		}
		if !sess.present.Load() && (s.connects.Load() > 0 || s.cfg.HadSession) {
			// This process, or the agent before it, had a session with the
			// broker, and the broker no longer has it (restarted without
			// persistence, or it expired): what was published meanwhile
			// was not queued.
			err := errors.New("the broker did not keep this client's session: messages published while the agent was disconnected are lost (counters catch up at their next value; stops and runs in between are missed); the broker restarted without persistence (mosquitto: persistence true), let the session expire (persistent_client_expiration), or another client connected with this client_id and a clean session (a technician's mosquitto_sub -i …?), which ends the session")
			s.log.Warn("mqtt session lost: "+err.Error(), "client_id", s.cfg.ClientID)
			s.setErr(err)
		}
		if s.cfg.OnConnect != nil {
			s.cfg.OnConnect(sess.present.Load(), sess.epoch)
		}
		attempt, loginLogged = 0, false
		connectedAt := time.Now()
		// The refused topics are known before the source says connected:
		// a status read at the connect saw it connected with none refused.
		s.noteRefused(sess.refused)
		s.connects.Add(1)
		s.state.Store(connectors.StateConnected)
		s.serve(ctx, sess, bo, connectedAt, &shortLived)
		s.cur.CompareAndSwap(sess, nil)
	}
	if parent.Err() == nil {
		if cause := context.Cause(ctx); cause != nil && !errors.Is(cause, context.Canceled) {
			s.setErr(cause)
			return fmt.Errorf("mqtt %s: %w", s.cfg.Name, cause)
		}
	}
	return nil
}

// serve waits on a connected session until ctx ends or the connection is
// lost (then it sleeps the backoff before Run connects again), asking the
// broker again, with a backoff of its own, for the topics it refused.
func (s *Source) serve(ctx context.Context, sess *session, bo *connectors.Backoff, connectedAt time.Time, shortLived *int) {
	var retry <-chan time.Time
	retryBo := connectors.NewBackoff(s.cfg.BackoffMin, s.cfg.BackoffMax)
	arm := func() {
		t := time.NewTimer(max(retryBo.NextBackOff(), s.cfg.BackoffMin))
		retry = t.C
	}
	if len(sess.refused) > 0 {
		arm()
	}
	for {
		select {
		case <-retry:
			still, err := sess.subscribe(ctx, slices.Sorted(maps.Keys(sess.refused)))
			if err != nil {
				s.log.Debug("mqtt subscribe retry not answered", "err", err)
				still = sess.refused
			}
			sess.refused = still
			s.noteRefused(still)
			retry = nil
			if len(still) > 0 {
				arm()
			}
			continue
		case <-ctx.Done():
			sess.close(250)
		case err := <-sess.lost:
			s.reconnects.Add(1)
			s.setErr(err)
			sess.close(0)
			// Down until the next attempt (connecting) after the backoff,
			// as the OPC UA source is: it said connected through the
			// backoff (up to backoff_max behind a broker that drops the
			// agent again and again).
			s.state.Store(connectors.StateDown)
			if s.cfg.OnDisconnect != nil {
				s.cfg.OnDisconnect()
			}
			// The backoff starts over only after a connection that held:
			// one that drops right after connecting (another client took
			// the session over with the same client id, the broker refuses
			// something after CONNACK) must not become a reconnect a second.
			if up := time.Since(connectedAt); up >= stableConnection {
				bo.Reset()
				*shortLived = 0
				s.log.Warn("mqtt connection lost", "err", err)
			} else {
				// Once is a broker going down (killed, restarted) soon after
				// we connected; again and again is another client taking
				// the session over with the same client id (a broker keeps
				// one session per client id and drops the other).
				*shortLived++
				if *shortLived < kickedAfter {
					s.log.Warn("mqtt connection lost soon after connecting", "err", err, "up", up.Round(time.Millisecond))
					s.setErr(fmt.Errorf("%w (lost %s after connecting)", err, up.Round(time.Millisecond)))
				} else {
					// A broker restarting again and again (crash-looping)
					// looks the same from here: MQTT 3.1.1 says neither.
					s.log.Warn("mqtt connection lost right after connecting, again and again: another client is probably using this client_id (a broker keeps one session per client id and drops the other), or the broker restarts again and again (its log says which)",
						"err", err, "client_id", s.cfg.ClientID, "up", up.Round(time.Millisecond), "times", *shortLived)
					// status shows it too: it is connected again between the drops.
					s.setErr(fmt.Errorf("%w (lost %s after connecting, %d times in a row: another client using client_id %q? or the broker restarting again and again?)", err, up.Round(time.Millisecond), *shortLived, s.cfg.ClientID))
				}
			}
			// A lost connection is retried after a jittered delay so a
			// broker restart does not get every agent back at once.
			_ = s.waitToConnect(ctx, bo.NextBackOff()) // an error is ctx's, which ends Run's loop
		}
		return
	}
}

// waitToConnect sleeps d before the next connect attempt; meanwhile Stats
// says when it is (NextAttempt: status shows it, a technician who fixed
// the password on the broker waits for it).
func (s *Source) waitToConnect(ctx context.Context, d time.Duration) error {
	s.errMu.Lock()
	s.nextAttempt = time.Now().Add(d)
	s.errMu.Unlock()
	defer func() {
		s.errMu.Lock()
		s.nextAttempt = time.Time{}
		s.errMu.Unlock()
	}()
	return s.sleep(ctx, d)
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (s *Source) tlsConfig() (*tls.Config, error) {
	c := &tls.Config{
		MinVersion:         tls.VersionTLS12,
		ServerName:         s.cfg.ServerName,
		InsecureSkipVerify: s.cfg.InsecureSkipVerify, //nolint:gosec // explicit opt-in, off by default
	}
	if s.cfg.CAFile != "" {
		pem, err := os.ReadFile(s.cfg.CAFile)
		if err != nil {
			return nil, fmt.Errorf("mqtt %s: read ca file: %w", s.cfg.Name, err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("mqtt %s: ca file %s: no PEM certificates", s.cfg.Name, s.cfg.CAFile)
		}
		c.RootCAs = pool
	}
	if s.cfg.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(s.cfg.CertFile, s.cfg.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("mqtt %s: load client certificate: %w", s.cfg.Name, err)
		}
		c.Certificates = []tls.Certificate{cert}
	}
	if hook := s.cfg.PeerCertificates; hook != nil {
		c.VerifyConnection = connectors.NoteChainInUse(hook)
	}
	return c, nil
}
