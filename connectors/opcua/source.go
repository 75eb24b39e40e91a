// Package opcua reads machine values from one OPC UA server (subscription or
// polling) and emits them as connectors.Sample; it alone imports gopcua and
// is the single owner of the connection, its reconnects and its backoff.
package opcua

import (
	"cmp"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math"
	"math/rand/v2"
	"net"
	"net/url"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gopcua/opcua"
	"github.com/gopcua/opcua/id"
	"github.com/gopcua/opcua/ua"

	"github.com/plantedge/plantedge/connectors"
)

// ErrHeartbeat ends a session whose subscription stopped delivering: neither
// a data change nor a server-time update arrived within HeartbeatTimeout.
var ErrHeartbeat = errors.New("heartbeat lost")

// ErrDisconnected ends a session whose secure channel the client reported lost.
var ErrDisconnected = errors.New("connection lost")

// errNewSession ends a session on purpose: the server took a subscription,
// but gopcua (v0.8.0) had stopped the session's publishing for good when
// the server refused one before — it takes every service fault for a lost
// connection and, with its own reconnecting off, ends its publish loop.
// The next session subscribes at once; nothing failed.
var errNewSession = errors.New("a new session for the subscription")

const (
	// stableAfter is how long a session must last before the backoff resets,
	// so a server that accepts sessions and drops them at once is not hammered.
	stableAfter = 10 * time.Second
	// heartbeatStable is that for a session the heartbeat ended (see Run).
	heartbeatStable = 5 * time.Minute
	// maxNodesPerRequest splits large Read and CreateMonitoredItems calls;
	// a server advertising a lower limit (readLimits) gets that instead.
	maxNodesPerRequest = 500
	// stateCheckInterval is how often the session loop looks at the client's
	// connection state (gopcua reports a lost channel only there).
	stateCheckInterval = 200 * time.Millisecond
	// pollRetryEvery is how often nodes a server had no room to monitor
	// (they are polled meanwhile) are offered to it again.
	pollRetryEvery = time.Minute
	// slotRetryMin is the least wait after the server refused a session for
	// want of a free slot (BadTooManySessions): a slot frees when another
	// client leaves (any moment) or when a session left behind expires
	// (the agent's own after its lifetime, 2 minutes by default), and
	// each refused attempt costs the PLC a connection, a secure channel
	// (with security, its asymmetric crypto) and a CreateSession; the
	// backoff's first waits (0.5 s, 1 s, ...) made three refused
	// attempts in 2 s. Nothing locks out as a refused login does, so not
	// a minute: at most eight attempts across a left-behind session's
	// 2 minutes, and a slot freed is taken within 15 s.
	slotRetryMin = 15 * time.Second
	// heartbeatHandle is the client handle of the server-time monitored
	// item; node i has handle i+1. Neither is 0 or 0xFFFFFFFF: node-opcua
	// takes those as "no handle" and sends 0 back instead.
	heartbeatHandle = uint32(1) << 31
)

// serverTimeNode is Server_ServerStatus_CurrentTime (ns=0;i=2258).
var serverTimeNode = ua.NewNumericNodeID(0, id.Server_ServerStatus_CurrentTime)

// Stats are the source's counters since New.
type Stats struct {
	SessionsCreated   uint64 // sessions created and activated
	ConnectAttempts   uint64 // connect attempts, successful or not
	Reconnects        uint64 // sessions started after the first one
	Samples           uint64 // samples delivered to the sink
	BadValues         uint64 // delivered samples with a bad or uncertain status
	HeartbeatRebuilds uint64 // sessions torn down because the heartbeat stopped
	// LeftSessionsClosed counts sessions a lost connection left on the
	// server (their CloseSession could not be sent), closed from the next
	// connection: activated again on its own channel, then closed.
	LeftSessionsClosed uint64
	// LoginChecks counts the sessions made only to check the login (the
	// first connection's, those after a refusal, and those after a
	// session ended, unless closing the session a lost connection left
	// took the login), closed at once, whatever the server's answer.
	LoginChecks uint64
	// Overflows counts the data changes the server flagged as following
	// values it discarded: the monitored item's queue (queue_size) was full.
	Overflows uint64
	// CatchUpReads counts the reads of every monitored node after the
	// subscription was silent as long as gopcua waits for a Publish answer
	// or longer: an answer that comes later is dropped, and the data
	// changes it carried with it.
	CatchUpReads uint64
	// RecoveredChanges counts the data changes a lost connection hid, or
	// that came while a killed run was down, taken from the subscription
	// of the session left on the server and delivered at the next
	// connection (see drain.go).
	RecoveredChanges uint64
	Polled           int // nodes read by polling: all of them in poll mode, else those the server cannot monitor
	// Refused are the nodes of this session the server will not serve
	// (unknown node, no access, a namespace it lacks), with its answer;
	// they are tried again while the session lasts.
	Refused       []RefusedNode
	LastError     string    // last session or connect error, "" if none yet
	LastErrorTime time.Time // when LastError happened
	Connected     time.Time // when the current session started; zero when not connected
	// NextAttempt is when the source connects again, while it waits to
	// (the backoff after a failure, a minute after a refused user); zero
	// while it connects or is connected.
	NextAttempt time.Time
}

// RefusedNode is a node the server refused, and how.
type RefusedNode struct {
	Node   string `json:"node"`
	Status string `json:"status"`
}

// Source watches the configured nodes of one OPC UA server.
type Source struct {
	cfg   Config
	sec   security
	nodes []nodeRef
	sink  connectors.Sink
	log   *slog.Logger

	state atomic.Value // connectors.State

	unavailable []RefusedNode // nodes the session could not resolve (run goroutine only)
	// lateTried is when askLate last asked for the namespace array (run
	// goroutine only).
	lateTried time.Time
	// lateAsked, when set, is called as askLate asks the server for its
	// namespace array (tests).
	lateAsked   func()
	readRefused []RefusedNode // nodes the last poll's reads refused (run goroutine only)
	// onRead, when set, sees each value readIdx reads (run goroutine only).
	// asking, when set, is called as the subscription's loop asks the
	// server for something besides publishing: "read polled", "read (no
	// clock)", "monitor", "unmonitor"; and with "close" as a session
	// closes its client (tests).
	asking func(what string)
	onRead func(idx int, dv *ua.DataValue)
	// drainAsking, when set, sees each request drainOrphan sends, from
	// dial's goroutine (tests).
	drainAsking func(what string)

	mu    sync.Mutex
	stats Stats

	// failure bookkeeping, only touched by Run's goroutine
	failures  int
	failSince time.Time
	warned    map[string]bool // the failures of this run logged at WARN, numbers left out
	warnedAt  time.Time
	// nodes per Read and per CreateMonitoredItems call in this session (Run's goroutine)
	perRead, perMonitor int
	// watch holds each node's connectors.Sample.Watch: new at every
	// session, and after each bad value of the node or a queue overflow
	// (Run's goroutine).
	watch []uint64
	// overflowSaid is when a queue overflow was last logged (Run's
	// goroutine): once a minute at most, with how many since.
	overflowSaid time.Time
	overflowsNot uint64 // overflows not logged since
	// movesSaid are the namespace moves logged (Run's goroutine): once each.
	movesSaid map[string]bool
	// limitsSaid is the per-request limits last logged (Run's goroutine):
	// logged again only when the server changes them, not at every
	// reconnect (the soak probe: 51 times the same line).
	limitsSaid [2]int
	// subRefused: the server refused the last subscription asked (Run's
	// goroutine): said once, not again by the session that follows.
	subRefused bool
	// orphan is a session a lost connection left on the server (its
	// CloseSession could not be sent), since orphanAt: the next
	// connection closes it first (see closeSession). Run's goroutine.
	orphan   *opcua.Session
	orphanAt time.Time
	// orphanSub is the subscription of s.orphan, if it had one: the
	// next connection takes what it holds before it closes the session
	// (drainOrphan). sub is that of the session running (Run's
	// goroutine).
	orphanSub, sub *orphanSub
	// lastTime is the source time of the last value delivered of each
	// node (Run's goroutine): a change taken from the left session's
	// subscription that is not later was delivered already.
	lastTime []time.Time
	// orphanMu is held while a session a lost connection left is being
	// closed: by the next connection (dial's goroutine) or at the stop
	// (closeLeft); one at a time.
	orphanMu sync.Mutex
	// left is the session the previous process kept (cfg.Sessions) and
	// left on the server when it was killed: a connection closes it
	// first, as an orphan — tried at each connection, and once more when
	// the one whose start could not close it is made, until its lifetime
	// since leftSince has passed. Run's goroutine.
	left *keptSession
	// leftSince is when this run read left: the previous run used it
	// before, so its server drops it within its lifetime from then.
	leftSince time.Time
	// leftKept: what cfg.Sessions keeps is left (no session of this run
	// kept yet).
	leftKept bool
	// revised is the session lifetime the server gave the source's last
	// session (the one the previous run kept, until this run has one),
	// after which it drops one left behind; 0: not known (none yet, or a
	// server answering 0, as gopcua's does). Run's goroutine.
	revised time.Duration
	// opts are the client options of the last connect (closeLeft).
	opts atomic.Pointer[[]opcua.Option]
	// revisedSaid is the revised publishing interval last logged (Run's
	// goroutine): said again only when the server changes it.
	revisedSaid time.Duration
	// serverThumb is the server certificate last logged (Run's goroutine)
	serverThumb string
	server      string // connectors.ServerID of the endpoint, on every sample
}

// New validates cfg and parses the node ids; it does no I/O.
func New(cfg Config, sink connectors.Sink) (*Source, error) {
	if sink == nil {
		return nil, errors.New("opcua: nil sink")
	}
	cfg = cfg.withDefaults()
	sec, nodes, err := cfg.validate()
	if err != nil {
		return nil, err
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Source{
		cfg:      cfg,
		sec:      sec,
		nodes:    nodes,
		sink:     sink,
		log:      log.With("component", "opcua", "source", cfg.Name),
		server:   connectors.ServerID(cfg.Endpoint),
		lastTime: make([]time.Time, len(nodes)),
	}
	s.state.Store(connectors.StateDown)
	return s, nil
}

// Name returns the configured source name.
func (s *Source) Name() string { return s.cfg.Name }

// State returns the connection state.
func (s *Source) State() connectors.State { return s.state.Load().(connectors.State) }

// Stats returns a snapshot of the counters.
func (s *Source) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.stats
	st.Refused = slices.Clone(st.Refused)
	return st
}

// setRefused records the nodes of the session the server refuses.
func (s *Source) setRefused(r []RefusedNode) { s.update(func(st *Stats) { st.Refused = r }) }

// setPolled records how many nodes the session polls instead of monitoring.
func (s *Source) setPolled(n int) { s.update(func(st *Stats) { st.Polled = n }) }

func (s *Source) update(f func(*Stats)) {
	s.mu.Lock()
	f(&s.stats)
	s.mu.Unlock()
}

// Run owns the connection until ctx is done, reconnecting with exponential
// backoff and full jitter; it returns nil when ctx ends, or an error only
// for a problem no retry can fix (an unreadable client certificate).
func (s *Source) Run(ctx context.Context) error {
	defer s.state.Store(connectors.StateDown)
	defer s.closeLeft()
	var cert *clientCert
	if !s.sec.none() {
		cc, generated, err := loadOrCreateCert(s.cfg.CertFile, s.cfg.KeyFile, s.cfg.DataDir, s.cfg.Name)
		if err != nil {
			return fmt.Errorf("opcua %s: %w", s.cfg.Name, err)
		}
		if generated {
			crt, _ := CertPaths(s.cfg.DataDir, s.cfg.Name)
			s.log.Info("generated client certificate; add it to the server's trust list",
				"file", crt, "thumbprint", Thumbprint(cc.der))
		} else {
			s.log.Info("client certificate", "thumbprint", Thumbprint(cc.der))
		}
		cert = &cc
	}
	s.left, s.leftSince = s.leftByLast(), time.Now()
	s.leftKept = s.left != nil
	if s.left != nil && s.left.LifetimeMS > 0 {
		s.revised = s.left.lifetime(0)
	}
	bo := connectors.NewBackoff(s.cfg.BackoffMin, s.cfg.BackoffMax)
	for {
		s.state.Store(connectors.StateConnecting)
		lived, err := s.session(ctx, cert)
		// down until the next attempt (connecting) after the backoff
		s.state.Store(connectors.StateDown)
		s.update(func(st *Stats) { st.Connected = time.Time{} })
		if ctx.Err() != nil {
			return nil
		}
		if lived > 0 && !errors.Is(err, errNewSession) && s.cfg.OnDisconnect != nil {
			s.cfg.OnDisconnect()
		}
		if errors.Is(err, errNewSession) {
			s.log.Info("server takes subscriptions again: a new session for them (the one that polled cannot publish after the refusal)")
			bo.Reset()
			continue
		}
		if resetsBackoff(lived, err) {
			bo.Reset()
		}
		if authRefused(err) {
			err = loginHint(s.cfg.Username, err)
		}
		s.noteFailure(err)
		wait := bo.NextBackOff()
		if authRefused(err) {
			// A refused user or password is not retried at the pace of a
			// network error: servers (and PLCs) lock accounts after a few
			// failed logins.
			wait = max(wait, connectors.LoginRetry)
		}
		if NoSessionSlot(err) {
			wait = max(wait, s.slotRetry())
		}
		// Stats says when the next attempt is while the source waits
		// for it (status shows it; the wait may end sooner, when the
		// server's port opens again).
		s.update(func(st *Stats) { st.NextAttempt = time.Now().Add(wait) })
		waited := s.wait(ctx, wait, unreachable(err))
		s.update(func(st *Stats) { st.NextAttempt = time.Time{} })
		if !waited {
			return nil
		}
	}
}

// noteFailure logs the first failure of a run of failures loudly, and the
// rest at debug level — unless the failure is another one than the last
// logged (a connection lost, then a server certificate that no longer
// matches the pin: the actionable one came second), at most once a minute.
func (s *Source) noteFailure(err error) {
	if err == nil {
		err = errors.New("session ended")
	}
	s.update(func(st *Stats) { st.LastError, st.LastErrorTime = err.Error(), time.Now() })
	s.failures++
	kind := digits.ReplaceAllString(err.Error(), "#") // the same failure, another port or count
	// A refused user or a server certificate that does not match the pin
	// needs a person: an error, not a warning.
	level := slog.LevelWarn
	if authRefused(err) || errors.Is(err, ErrThumbprintMismatch) {
		level = slog.LevelError
	}
	if s.failures == 1 {
		s.failSince, s.warned, s.warnedAt = time.Now(), map[string]bool{kind: true}, time.Now()
		s.log.Log(context.Background(), level, "opc ua session failed; reconnecting with backoff", "err", err)
		return
	}
	// Each kind once a run of failures (two that alternate are not said
	// every minute for good), a minute apart at least.
	if !s.warned[kind] && len(s.warned) < 8 && time.Since(s.warnedAt) >= time.Minute {
		s.warned[kind], s.warnedAt = true, time.Now()
		s.log.Log(context.Background(), level, "opc ua reconnect fails another way now", "err", err, "attempt", s.failures,
			"since", time.Since(s.failSince).Round(time.Second))
		return
	}
	s.log.Debug("opc ua reconnect failed", "err", err, "attempt", s.failures)
}

// resetsBackoff: a session that lasted resets the backoff — but not one
// the heartbeat ended within minutes: a server whose clock and values froze
// is connected to again and again, and that must slow down like any other
// failure (the OPC UA probe: 150-400 sessions an hour for good).
func resetsBackoff(lived time.Duration, err error) bool {
	return lived >= stableAfter && (!errors.Is(err, ErrHeartbeat) || lived >= heartbeatStable)
}

// digits are the numbers of an error message, left out when telling
// whether two failures are the same.
var digits = regexp.MustCompile(`[0-9]+`)

// LoginRefused reports whether err is the server refusing the session's
// user identity: a wrong user name or password, an account locked, or an
// anonymous session where the server takes none.
func LoginRefused(err error) bool { return authRefused(err) }

// loginHint says whose login the server refused, and what to check: the
// source's last error was the status code's text alone ("User does not
// have permission to perform the requested operation.
// StatusBadUserAccessDenied"). (validate --opcua places the same refusal
// at the server's username.)
func loginHint(user string, err error) error {
	if user == "" {
		return fmt.Errorf("%w (the server refused an anonymous session: set username and password_file or password_env for a user it takes)", err)
	}
	return fmt.Errorf("%w (the server refused user %s: check the password in password_file or password_env — changed on the server? the account locked?)", err, user)
}

// NoSessionSlot reports whether err is the server refusing a session for
// want of a free slot: BadTooManySessions, at CreateSession or
// ActivateSession.
func NoSessionSlot(err error) bool { return errors.Is(err, ua.StatusBadTooManySessions) }

// slotHint says what a BadTooManySessions means and what to check: the
// source's last error was the status code's text alone ("The server has
// reached its maximum number of sessions. StatusBadTooManySessions").
// asked is the session lifetime plantedge asks for; revised the one the
// server gave the source's earlier sessions (its CreateSession answer,
// kept across runs with cfg.Sessions), 0 when not known. The server
// drops a session left behind after the revised one: it said the asked
// one as that lifetime, while a server that revised it to 10 s dropped
// them after 10 s.
func slotHint(err error, asked, revised time.Duration) error {
	lifetime := fmt.Sprintf("plantedge asks for %s, which the server may revise", fmtDuration(asked))
	if revised > 0 {
		lifetime = fmt.Sprintf("%s for plantedge's, as this server revised it", fmtDuration(revised))
	}
	return fmt.Errorf("%w (every session slot of the server is taken: other clients hold them — HMI, SCADA, an engineering tool, another plantedge — or sessions a client left when it was killed or lost its link, which the server drops after their lifetime: %s; check the server's session diagnostics or its session limit)",
		err, lifetime)
}

// chainHint says why a secure connection to a server that sends its
// certificate as a chain (its own, then its issuers') failed, when it
// failed the way gopcua (v0.8.0) fails with one: the server's
// OpenSecureChannel answer carries the chain too, gopcua reads it as one
// certificate ("x509: trailing data") and drops the answer, so the
// request times out. err itself otherwise.
func chainHint(err error) error {
	if !errors.Is(err, ua.StatusBadTimeout) && !errors.Is(err, context.DeadlineExceeded) &&
		!strings.Contains(err.Error(), "x509: trailing data") {
		return err
	}
	return fmt.Errorf("%w (the server sends its certificate with its issuers', as a chain, which plantedge's OPC UA library cannot yet open a secure channel with: have the server send its own certificate alone)", err)
}

// fmtDuration is d as "2 minutes", "90 s".
func fmtDuration(d time.Duration) string {
	if d >= time.Minute && d%time.Minute == 0 {
		if d == time.Minute {
			return "1 minute"
		}
		return fmt.Sprintf("%d minutes", d/time.Minute)
	}
	return d.Round(time.Second).String()
}

// authRefused reports a refused user identity: a wrong user name or
// password, or a token the server does not take.
func authRefused(err error) bool {
	for _, c := range []ua.StatusCode{ua.StatusBadUserAccessDenied, ua.StatusBadIdentityTokenInvalid,
		ua.StatusBadIdentityTokenRejected, ua.StatusBadUserSignatureInvalid} {
		if errors.Is(err, c) {
			return true
		}
	}
	return false
}

func (s *Source) noteConnected() {
	if s.failures > 0 {
		s.log.Info("opc ua connection recovered", "failures", s.failures,
			"after", time.Since(s.failSince).Round(time.Millisecond))
	} else {
		s.log.Info("opc ua connected", "endpoint", s.cfg.Endpoint)
	}
	s.failures = 0
}

// unreachable reports whether err says nothing was listening, so a cheap TCP
// probe can tell when the server is back without creating sessions.
func unreachable(err error) bool {
	return errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.EHOSTUNREACH) ||
		errors.Is(err, syscall.ENETUNREACH)
}

// wait sleeps for d or until ctx ends (false). When probe is set, it also
// dials the server's TCP port once a second and ends the wait early as soon
// as something listens again: a restarted server is back in well under the
// backoff ceiling, and a TCP connect creates no session.
func (s *Source) wait(ctx context.Context, d time.Duration, probe bool) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	var tick <-chan time.Time
	addr := ""
	if probe {
		if u, err := url.Parse(s.cfg.Endpoint); err == nil && u.Host != "" {
			addr = u.Host
			if u.Port() == "" {
				addr = net.JoinHostPort(u.Hostname(), "4840")
			}
			tk := time.NewTicker(time.Second)
			defer tk.Stop()
			tick = tk.C
		}
	}
	for {
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
			return true
		case <-tick:
			dl := net.Dialer{Timeout: 500 * time.Millisecond}
			conn, err := dl.DialContext(ctx, "tcp", addr)
			if err == nil {
				conn.Close()
				s.log.Debug("server port open again; reconnecting now")
				return true
			}
		}
	}
}

// session runs one connection from connect to failure. It returns how long
// the session was up (zero if it never was) and why it ended.
func (s *Source) session(ctx context.Context, cert *clientCert) (time.Duration, error) {
	s.update(func(st *Stats) { st.ConnectAttempts++ })
	if s.orphan != nil && time.Since(s.orphanAt) >= s.orphanLifetime() {
		s.orphan = nil // the server has dropped it by now
	}
	if s.left != nil && time.Since(s.leftSince) >= s.left.lifetime(s.sessionTimeout()) {
		// The previous run used it before this one started: its server
		// has dropped it by now.
		s.log.Info("forgot the session the previous run left on the server: not closed within its lifetime since this start (the server unreachable or not answering); the server has dropped it",
			"lifetime", s.left.lifetime(s.sessionTimeout()))
		s.dropLeft()
	}
	var orphanGone atomic.Int32
	var kept atomic.Bool // the connection's session is kept (onActivated)
	var left *keptSession
	var drainSub *orphanSub
	if s.orphan == nil {
		left = s.left
		if s.watch == nil {
			// No session of this run yet, nor its changes delivered:
			// those of the subscription the previous run left come
			// first. (Later, they would come after this run's values.)
			_, republish := s.cfg.Sessions.(DeliveredTimes)
			drainSub = left.drainSub(s.nodesSum(), republish)
		}
	} else {
		drainSub = s.orphanSub
	}
	var recovered atomic.Pointer[drained]
	cctx, cancel := context.WithTimeout(ctx, 2*s.cfg.RequestTimeout)
	c, err := dial(cctx, clientParams{
		orphan:         s.orphan,
		orphanSub:      drainSub,
		recovered:      &recovered,
		asking:         s.drainAsking,
		left:           left,
		orphanGone:     &orphanGone,
		endpoint:       s.cfg.Endpoint,
		sec:            s.sec,
		cert:           cert,
		username:       s.cfg.Username,
		password:       s.cfg.Password,
		requestTimeout: s.cfg.RequestTimeout,
		lifetime:       s.cfg.channelLifetime,
		sessionTimeout: s.sessionTimeout(),
		revisedTimeout: s.revised,
		serverCert:     s.noteServerCert,
		orphanMu:       &s.orphanMu,
		// Every connection checks the login first, on a session of its
		// own (unless activating the session a lost connection left took
		// it): the password may have changed on the server since the
		// last, and gopcua's connect leaves the session whose login the
		// server refuses.
		checkLogin: true,
		onChecked:  func() { s.update(func(st *Stats) { st.LoginChecks++ }) },
		onOptions:  func(o []opcua.Option) { s.opts.Store(&o) },
		// Kept as soon as the server has activated it: a kill during the
		// rest of the connect leaves it kept, closed by the next start.
		onActivated: func(sess *opcua.Session) {
			s.keepSession(sess, nil)
			kept.Store(true)
		},
	})
	cancel()
	if d := recovered.Load(); d != nil {
		// Before the new session's first values, whether or not the
		// server took it: the left session's subscription acknowledged
		// them. (A sink that fails fails the first read too.)
		_ = s.deliverRecovered(ctx, *d)
	}
	if kept.Load() {
		// the key is this session's now — one Connect may have closed
		// since (it failed after the activation), or not (the link was
		// gone): tried at the next start, forgotten if gone
		s.leftKept = false
	}
	switch gone := orphanGone.Load(); {
	case left != nil && (gone == orphanClosed || gone == orphanUnknown):
		s.leftGone(gone)
	case left != nil && err == nil:
		// Not closed at this connection's start (the server did not
		// answer in time, or refused), yet the server took the
		// connection: tried once more now.
		s.retryLeft(ctx)
	case left != nil:
		s.log.Debug("the session the previous run left is not closed yet: tried again at the next connection, until its lifetime since this start has passed",
			"lifetime", s.left.lifetime(s.sessionTimeout()))
	case gone == orphanClosed:
		s.log.Info("closed the session a lost connection had left on the server", "left", time.Since(s.orphanAt).Round(time.Second))
		s.orphan = nil
		s.update(func(st *Stats) { st.LeftSessionsClosed++ })
	case gone == orphanUnknown:
		s.log.Debug("the session a lost connection had left is gone from the server (restarted?)")
		s.orphan = nil
	}
	if err != nil {
		return 0, err
	}
	if !kept.Load() {
		s.keepSession(c.Session(), nil)
	}
	if sess := c.Session(); sess != nil && sess.RevisedTimeout() > 0 {
		s.revised = sess.RevisedTimeout()
	}
	s.leftKept = false // the key is this session's now
	s.sub = nil
	start := time.Now()
	defer func() {
		s.ask("close")
		s.closeSession(c)
	}()
	s.update(func(st *Stats) {
		if st.SessionsCreated > 0 {
			st.Reconnects++
		}
		st.SessionsCreated++
		st.Connected = start
	})
	if s.cfg.OnConnect != nil {
		s.cfg.OnConnect()
	}
	s.state.Store(connectors.StateConnected)
	s.noteConnected()

	ids := make([]*ua.NodeID, len(s.nodes))
	var unavailable []RefusedNode
	moves := map[string][]string{} // "ns=1 (uri) is now ns=2" -> nodes
	meant := meantIndexes(s.nodes, s.cfg.Pins)
	pins := deferPins(s.cfg.Pins)
	for i, n := range s.nodes {
		nid, moved, err := n.pinned(c.Namespaces(), pinsOrNil(pins), meant)
		if err != nil {
			s.log.Warn("node not available on this server", "err", err, "node", n.addr)
			unavailable = append(unavailable, RefusedNode{Node: n.addr, Status: err.Error()})
			continue
		}
		if moved != "" {
			moves[moved] = append(moves[moved], n.addr)
		}
		ids[i] = nid
	}
	if err := pins.keep(); err != nil {
		s.log.Debug("namespace pins not kept; pinned at the next session", "err", err)
	}
	s.sayMoves(moves)
	s.setPolled(0)
	s.watch = make([]uint64, len(s.nodes))
	for i := range s.watch {
		s.watch[i] = newWatch()
	}
	s.unavailable = unavailable
	s.setRefused(unavailable)
	lim := readLimits(ctx, c, s.cfg.RequestTimeout)
	s.perRead = capped(maxNodesPerRequest, lim.read)
	s.perMonitor = capped(maxNodesPerRequest, lim.monitoredItems)
	s.noteLimits()
	// Read everything at once first: progress a counter made while we were
	// away is captured even if no change notification follows.
	if err := s.readAll(ctx, c, ids, true); err != nil {
		return time.Since(start), err
	}
	if s.cfg.Mode == ModePoll {
		s.setPolled(len(s.nodes))
		err = s.poll(ctx, c, ids, 0)
	} else {
		err = s.subscribe(ctx, c, ids)
	}
	return time.Since(start), err
}

// noteServerCert logs the server certificate of a secure connection when it
// is new: its thumbprint is what server_thumbprint pins, and without a pin
// any certificate the server presents is accepted.
func (s *Source) noteServerCert(der []byte) {
	if s.cfg.ServerCertificates != nil {
		if chain, err := x509.ParseCertificates(der); err == nil && len(chain) > 0 {
			s.cfg.ServerCertificates(chain)
		}
	}
	tp := Thumbprint(der)
	if tp == s.serverThumb {
		return
	}
	s.serverThumb = tp
	if s.sec.thumbprint != nil {
		s.log.Info("opc ua server certificate matches the pin", "thumbprint", tp)
		return
	}
	s.log.Warn("opc ua server certificate not pinned: any certificate the server presents is accepted; set server_thumbprint to pin this one",
		"thumbprint", tp)
}

// closeSession closes the session of c and c. A session whose
// CloseSession failed (the link was gone) is kept as s.orphan: the server
// holds it, and one of its few session slots, for the session's lifetime
// (2 minutes by default), so the next connection closes it first — a PLC
// with one free slot refused the agent's new session meanwhile
// (BadTooManySessions until the old one expired).
func (s *Source) closeSession(c *opcua.Client) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if sess := c.Session(); sess != nil {
		if c.CloseSession(ctx) != nil {
			_, _ = c.DetachSession(ctx)
			s.orphan, s.orphanAt, s.orphanSub = sess, time.Now(), s.sub
		} else {
			s.forgetSession()
		}
	}
	closeClient(c)
}

// sessionTimeout is the session lifetime the source asks for: short
// (defaultSessionTimeout), but well beyond the gaps between its requests
// (polls, heartbeats); Config.sessionTimeout in tests.
func (s *Source) sessionTimeout() time.Duration {
	if s.cfg.sessionTimeout > 0 {
		return s.cfg.sessionTimeout
	}
	return max(defaultSessionTimeout, 4*s.cfg.HeartbeatTimeout, 4*s.cfg.PollInterval)
}

// orphanLifetime is how long after orphanAt the server keeps s.orphan:
// the lifetime it gave that session (its CreateSession answer), else the
// one asked (gopcua's server answers 0). A server revising it up (node-
// opcua's with MIN_SESSION_TIMEOUT_MS: 1 s asked, 60 s given) kept the
// session, and its slot, after the source had forgotten it at the
// lifetime asked: its next sessions were refused (BadTooManySessions)
// until the server dropped the one left.
func (s *Source) orphanLifetime() time.Duration { return s.lifetimeOf(s.orphan) }

// lifetimeOf is how long the server keeps sess without a request: the
// lifetime it gave it (its CreateSession answer), else the one asked.
func (s *Source) lifetimeOf(sess *opcua.Session) time.Duration {
	if sess != nil && sess.RevisedTimeout() > 0 {
		return sess.RevisedTimeout()
	}
	return s.sessionTimeout()
}

// dial builds and connects a client; on failure nothing is left open.
func dial(ctx context.Context, p clientParams) (*opcua.Client, error) {
	// gopcua's handshakes (GetEndpoints, Connect) end at the dial and
	// request timeouts, not when ctx is cancelled: a server that opens its
	// port and never answers held a stop up to 10 s (the lifecycle review).
	// Cancelled before the attempt asked the server for a session, dial
	// returns at once. Once it has, ending the attempt with ctx cut the
	// CreateSession or ActivateSession under way, the session the server
	// made was never closed (gopcua closes only the channel): those steps
	// run on with the attempt's own deadline (sctx), and a stop waits up
	// to stopWait for them, then closes what they made; an answer later
	// still is closed when it comes.
	sctx, cancel := context.WithoutCancel(ctx), context.CancelFunc(func() {})
	if dl, ok := ctx.Deadline(); ok {
		sctx, cancel = context.WithDeadline(sctx, dl)
	}
	var mu sync.Mutex
	asked := false
	ask := func() bool {
		mu.Lock()
		defer mu.Unlock()
		if ctx.Err() != nil {
			return false
		}
		asked = true
		return true
	}
	type dialed struct {
		c   *opcua.Client
		err error
	}
	ch := make(chan dialed, 1)
	go func() {
		defer cancel()
		c, err := dialWait(ctx, sctx, ask, p)
		ch <- dialed{c, err}
	}()
	later := func() {
		go func() {
			if d := <-ch; d.c != nil {
				closeClient(d.c)
			}
		}()
	}
	select {
	case d := <-ch:
		return d.c, d.err
	case <-ctx.Done():
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			// The attempt's own deadline: it ends now, with what it met
			// (an i/o timeout naming the address says more than ctx's).
			d := <-ch
			return d.c, d.err
		}
		mu.Lock()
		waits := asked
		mu.Unlock()
		if !waits {
			later()
			return nil, ctx.Err()
		}
		t := time.NewTimer(stopWait)
		defer t.Stop()
		select {
		case d := <-ch:
			if d.c != nil {
				closeClient(d.c)
			}
		case <-t.C:
			later()
		}
		return nil, ctx.Err()
	}
}

// stopWait is how long a stop waits for a connect that has asked the
// server for a session to end (dial), and for a stopped source to close
// the session a lost connection left (closeLeft).
const stopWait = 2 * time.Second

// dialWait is dial, to its end: ctx ends the steps that ask the server
// for nothing it keeps (the limits, the endpoints); ask, called before
// the session steps, reports false when ctx ended, and those run with
// sctx.
func dialWait(ctx, sctx context.Context, ask func() bool, p clientParams) (*opcua.Client, error) {
	opts, chained, err := clientOptions(ctx, p)
	if err != nil {
		return nil, err
	}
	if p.onOptions != nil {
		p.onOptions(opts)
	}
	if !ask() {
		return nil, ctx.Err()
	}
	wrap := func(err error) error {
		if NoSessionSlot(err) {
			err = slotHint(err, cmp.Or(p.sessionTimeout, defaultSessionTimeout), p.revisedTimeout)
		}
		if chained {
			err = chainHint(err)
		}
		return fmt.Errorf("connect: %w", err)
	}
	if p.orphan != nil || p.left != nil {
		p.orphanMu.Lock()
		p.stop = ctx // ends the drain, not the close (sctx)
		r, err := closeOrphan(sctx, p, opts)
		p.orphanGone.Store(r)
		p.orphanMu.Unlock()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if authRefused(err) {
			// The server refused the login activating the left session
			// again (the password changed on the server): it refuses the
			// new session's too. One refused login an attempt, not two
			// (accounts lock after a few).
			return nil, wrap(err)
		}
		if r == orphanClosed {
			p.checkLogin = false // activating the left session took the login
		}
	}
	if p.checkLogin {
		if err := checkLogin(sctx, p.endpoint, opts); err != nil {
			return nil, wrap(err)
		}
		if p.onChecked != nil {
			p.onChecked()
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
	}
	var states chan opcua.ConnState
	if p.onActivated != nil {
		// gopcua blocks on a full channel: room for every state a client
		// without its own reconnection goes through (connecting,
		// connected, disconnected, closed by its watch and by Close).
		states = make(chan opcua.ConnState, 16)
		opts = append(slices.Clip(opts), opcua.StateChangedCh(states))
	}
	c, err := opcua.NewClient(p.endpoint, opts...)
	if err != nil {
		return nil, fmt.Errorf("new client: %w", err)
	}
	connected, activated := make(chan struct{}), make(chan struct{})
	if p.onActivated != nil {
		go activatedBy(ctx, c, states, connected, activated, p.onActivated)
	} else {
		close(activated)
	}
	err = connectGuarded(sctx, c)
	close(connected)
	<-activated
	if err != nil {
		closeClient(c)
		return nil, wrap(err)
	}
	unpin(c) // the session held the chunks of its answers
	return c, nil
}

// activatedBy hands c's session to f once Connect reports it activated
// (gopcua says "connected" then, before it reads the namespace array), or
// not at all when Connect ended before it (connected closed) or ctx was
// cancelled first (a stop: dial closes what the attempt made); it closes
// done after. ctx past its deadline still hands it: Connect, failing
// then, closes the session with that deadline, which leaves it.
func activatedBy(ctx context.Context, c *opcua.Client, states <-chan opcua.ConnState, connected <-chan struct{}, done chan<- struct{}, f func(*opcua.Session)) {
	defer close(done)
	on := func(st opcua.ConnState) bool {
		if st != opcua.Connected {
			return false
		}
		if sess := c.Session(); sess != nil && !errors.Is(ctx.Err(), context.Canceled) {
			f(sess)
		}
		return true
	}
	for {
		select {
		case st := <-states:
			if on(st) {
				return
			}
		case <-connected:
			for {
				select {
				case st := <-states:
					if on(st) {
						return
					}
				default:
					return
				}
			}
		}
	}
}

// closeOrphan closes p.orphan, a session a lost connection left on the
// server: on a secure channel of its own it activates the session again —
// OPC UA moves a session to the channel that activates it (Part 4, 5.6.3)
// — and closes it with its subscriptions. It reports orphanClosed,
// orphanUnknown (the server restarted, or dropped the session already),
// or 0: not gone, it is tried again at the next connection.
//
// Without p.orphan it closes p.left, the session the previous process
// left (kept with cfg.Sessions), made again with the new client's session
// settings — the user's credentials — for stopWait at most; with its
// subscription to drain (p.orphanSub), for the request timeout, as an
// orphan.
//
// A stop (p.stop cancelled) ends the drain, or skips it, and the close
// has stopWait from then.
//
// The error is the one that kept it from closing it: a refused login
// (authRefused) says the server refuses this client's credentials now.
func closeOrphan(ctx context.Context, p clientParams, opts []opcua.Option) (int32, error) {
	bound := p.requestTimeout
	if p.orphan == nil && p.orphanSub == nil {
		bound = stopWait
	}
	ctx, cancel := context.WithTimeout(ctx, bound)
	defer cancel()
	c, err := opcua.NewClient(p.endpoint, opts...)
	if err != nil {
		return orphanUnknown, err // never will it connect with these options
	}
	defer closeClient(c)
	sess := p.orphan
	if sess == nil {
		if sess = p.left.session(c); sess == nil {
			return orphanUnknown, nil
		}
	}
	if err := c.Dial(ctx); err != nil {
		return 0, err
	}
	if err := c.ActivateSession(ctx, sess); err != nil {
		if errors.Is(err, ua.StatusBadSessionIDInvalid) || errors.Is(err, ua.StatusBadSessionClosed) ||
			errors.Is(err, ua.StatusBadSessionNotActivated) {
			return orphanUnknown, err
		}
		return 0, err
	}
	stopped := func() bool { return p.stop != nil && p.stop.Err() != nil }
	if p.orphanSub != nil && p.recovered != nil && !stopped() {
		// Half the bound at most: the close has the rest. A stop ends it
		// at once: before, the close waited behind an answer the server
		// held, half of request_timeout, long after Run had returned
		// (dial waits stopWait for it) — the agent's process gone by
		// then, the session stayed on the server for its lifetime.
		dctx, dcancel := context.WithTimeout(ctx, bound/2)
		if p.stop != nil {
			defer context.AfterFunc(p.stop, dcancel)()
		}
		d := drainOrphan(dctx, c, *p.orphanSub, p.asking)
		dcancel()
		p.recovered.Store(&d)
	}
	if stopped() {
		// The stop's close: stopWait at most, as closeLeft's.
		var ccancel context.CancelFunc
		ctx, ccancel = context.WithTimeout(ctx, stopWait)
		defer ccancel()
	}
	if err := c.CloseSession(ctx); err != nil {
		return 0, err
	}
	return orphanClosed, nil
}

// closeLeft closes, as the source stops, the session a lost connection
// left on the server (s.orphan), which the next connection would have
// closed: with the options of the last connect, on a secure channel of
// its own, as closeOrphan does, for stopWait at most — a link still cut
// costs the stop that much (its connect fails at once when refused).
// Not when the next connection is closing it (orphanMu).
//
// It does not take what the session's subscription holds (drainOrphan):
// node-opcua answered the drain's first Publish a publishing interval
// after it, changes queued or not (1.0 s at 1 s, the default; 3.0 s at
// 3 s) — half the stopWait the close has, or all of it, at every such
// stop, the close left no time by a longer interval.
func (s *Source) closeLeft() {
	opts := s.opts.Load()
	if s.orphan == nil || time.Since(s.orphanAt) >= s.orphanLifetime() || opts == nil || !s.orphanMu.TryLock() {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), stopWait)
	defer cancel()
	p := clientParams{endpoint: s.cfg.Endpoint, requestTimeout: s.cfg.RequestTimeout, orphan: s.orphan}
	done := make(chan int32, 1)
	go func() {
		defer s.orphanMu.Unlock()
		r, _ := closeOrphan(ctx, p, *opts)
		done <- r
	}()
	select {
	case r := <-done:
		if r == orphanClosed || r == orphanUnknown {
			s.forgetSession()
		}
		if r == orphanClosed {
			s.log.Info("closed the session a lost connection had left on the server", "left", time.Since(s.orphanAt).Round(time.Second))
			s.update(func(st *Stats) { st.LeftSessionsClosed++ })
		} else if r == 0 {
			s.log.Info("the session a lost connection left stays on the server until its lifetime ends: not closed at the stop", "left", time.Since(s.orphanAt).Round(time.Second))
		}
	case <-ctx.Done():
		s.log.Info("the session a lost connection left stays on the server until its lifetime ends: the server did not answer the stop's close", "waited", stopWait)
	}
	s.orphan = nil
}

// What closeOrphan did with the session a lost connection left (0: not
// closed, the server did not answer or refused).
const (
	orphanClosed  = 1 // closed
	orphanUnknown = 2 // the server no longer has it
)

// closeClient closes the session and channel; a dead server must not hold us.
func closeClient(c *opcua.Client) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = c.Close(ctx)
}

// readAll reads the value of every resolved node in as few requests as the
// server allows and delivers one sample per node.
func (s *Source) readAll(ctx context.Context, c *opcua.Client, ids []*ua.NodeID, initial bool) error {
	all := make([]uint32, len(ids))
	for i := range all {
		all[i] = uint32(i)
	}
	return s.readIdx(ctx, c, ids, all, initial, s.cfg.PollInterval)
}

// readIdx is readAll for the nodes with the given indexes.
func (s *Source) readIdx(ctx context.Context, c *opcua.Client, ids []*ua.NodeID, idxs []uint32, initial bool, gap time.Duration) error {
	return s.readEach(ctx, c, ids, idxs, func(vals []readValue) error {
		return s.deliverRead(ctx, vals, initial, gap)
	})
}

// readValue is the value read of node idx.
type readValue struct {
	idx  int
	dv   *ua.DataValue
	recv connectors.Receipt
	// noID: the node has no id in this session (its namespace is not on
	// the server), not read: BadNodeIdUnknown
	noID bool
}

// readEach reads the nodes with the given indexes in as few requests as
// the server allows and hands the values of each request to got, in
// order (a node without an id on its own). It changes nothing and reads
// only what the session does not change once it runs (s.perRead, the
// configuration), so it can read off the loop (readAsync).
func (s *Source) readEach(ctx context.Context, c *opcua.Client, ids []*ua.NodeID, idxs []uint32, got func([]readValue) error) error {
	type item struct {
		idx int
		id  *ua.NodeID
	}
	var batch []item
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		req := &ua.ReadRequest{TimestampsToReturn: ua.TimestampsToReturnBoth}
		for _, it := range batch {
			req.NodesToRead = append(req.NodesToRead, s.nodes[it.idx].valueID(it.id))
		}
		rctx, cancel := context.WithTimeout(ctx, s.cfg.RequestTimeout)
		res, err := c.Read(rctx, req)
		cancel()
		if err != nil {
			return fmt.Errorf("read: %w", err)
		}
		if res.ResponseHeader != nil && !statusGood(res.ResponseHeader.ServiceResult) {
			return fmt.Errorf("read: %w", res.ResponseHeader.ServiceResult)
		}
		if len(res.Results) != len(batch) {
			return fmt.Errorf("read: %d results for %d nodes", len(res.Results), len(batch))
		}
		now := connectors.Receive()
		vals := make([]readValue, len(batch))
		for i, dv := range res.Results {
			vals[i] = readValue{idx: batch[i].idx, dv: dv, recv: now}
		}
		batch = batch[:0]
		return got(vals)
	}
	for _, i := range idxs {
		nid := ids[i]
		if nid == nil {
			dv := &ua.DataValue{EncodingMask: ua.DataValueStatusCode, Status: ua.StatusBadNodeIDUnknown}
			if err := got([]readValue{{idx: int(i), dv: dv, recv: connectors.Receive(), noID: true}}); err != nil {
				return err
			}
			continue
		}
		batch = append(batch, item{int(i), nid})
		if len(batch) == s.perRead {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	return flush()
}

// deliverRead delivers the values read (readEach), noting those the server
// refused (s.readRefused) and showing each to s.onRead.
func (s *Source) deliverRead(ctx context.Context, vals []readValue, initial bool, gap time.Duration) error {
	for _, v := range vals {
		if !v.noID {
			if v.dv != nil && nodeRefused(v.dv.Status) {
				s.readRefused = append(s.readRefused, RefusedNode{Node: s.nodes[v.idx].addr, Status: statusName(v.dv.Status)})
			}
			if s.onRead != nil {
				s.onRead(v.idx, v.dv)
			}
		}
		if err := s.deliver(ctx, v.idx, v.dv, v.recv, initial, gap); err != nil {
			return err
		}
	}
	return nil
}

// slotRetry is slotRetryMin, or Config.slotRetry (tests).
func (s *Source) slotRetry() time.Duration { return cmp.Or(s.cfg.slotRetry, slotRetryMin) }

// pollRetry is pollRetryEvery, or Config.pollRetry (tests).
func (s *Source) pollRetry() time.Duration { return cmp.Or(s.cfg.pollRetry, pollRetryEvery) }

// deliver hands one sample of node idx to the sink; it fails only when the
// sink does. gap is how long a change of the node may go unseen
// (connectors.Sample.WatchGap).
func (s *Source) deliver(ctx context.Context, idx int, dv *ua.DataValue, recv connectors.Receipt, initial bool, gap time.Duration) error {
	dv = s.nodes[idx].read(dv)
	v, good, quality, ts := sampleFields(dv)
	var watch uint64
	if good {
		watch = s.watch[idx]
	} else {
		// Its value unknown meanwhile: whatever comes next was not watched
		// since the last good one.
		s.watch[idx] = newWatch()
	}
	smp := connectors.Sample{
		Source:      s.cfg.Name,
		Kind:        connectors.KindOPCUA,
		Address:     s.nodes[idx].addr,
		Server:      s.server,
		Value:       v,
		DataType:    dataType(dv),
		Good:        good,
		Quality:     quality,
		SourceTime:  ts,
		ReceiveTime: recv.Time,
		Seen:        recv.Seen,
		Initial:     initial,
		Watch:       watch,
		WatchGap:    gap,
	}
	// (sampleFields: the server timestamp when there is no source one)
	smp.ServerStamped = dv != nil && dv.SourceTimestamp.IsZero() && !ts.IsZero()
	smp.Element = s.nodes[idx].index != nil
	if err := s.sink.Deliver(ctx, smp); err != nil {
		return fmt.Errorf("deliver: %w", err)
	}
	if idx < len(s.lastTime) && ts.After(s.lastTime[idx]) {
		s.lastTime[idx] = ts
	}
	s.update(func(st *Stats) {
		st.Samples++
		if !good {
			st.BadValues++
		}
	})
	return nil
}

// overflowed reports a data change the server flagged with the Overflow
// info bit (OPC UA Part 4, 7.39: InfoType DataValue, bit 7): the monitored
// item's queue was full and values before this one were discarded.
func overflowed(c ua.StatusCode) bool { return uint32(c)&0xC00 == 0x400 && uint32(c)&0x80 != 0 }

// overflow notes values of node idx the server discarded: its next value
// starts another watch (a counter reset and climb back could have gone
// unseen), the count goes up, and a WARN says so at most once a minute.
func (s *Source) overflow(idx uint32) {
	s.watch[idx] = newWatch()
	s.update(func(st *Stats) { st.Overflows++ })
	if time.Since(s.overflowSaid) < time.Minute {
		s.overflowsNot++
		return
	}
	s.log.Warn("the server discarded values of a monitored node: its queue (queue_size) filled within a publishing interval; of a run state, stops among them were missed (a counter loses nothing): raise queue_size, or lower publishing_interval",
		"node", s.nodes[idx].addr, "queue_size", s.cfg.QueueSize, "overflows_not_logged", s.overflowsNot)
	s.overflowSaid, s.overflowsNot = time.Now(), 0
}

// newWatch returns a connectors.Sample.Watch no other session or node is
// likely to hold (one in 2^64 per pair), across restarts too.
func newWatch() uint64 { return rand.Uint64() | 1 }

// poll reads all nodes every PollInterval until a read fails, or, with
// d > 0, d has passed (nil).
func (s *Source) poll(ctx context.Context, c *opcua.Client, ids []*ua.NodeID, d time.Duration) error {
	t := time.NewTicker(s.cfg.PollInterval)
	defer t.Stop()
	var until <-chan time.Time
	if d > 0 {
		u := time.NewTimer(d)
		defer u.Stop()
		until = u.C
	}
	lctx, cancel := context.WithCancel(ctx) // ends a late read still waiting
	defer cancel()
	var lateC <-chan lateArray
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-until:
			return nil
		case a := <-lateC:
			lateC = nil
			s.resolveLate(a, ids) // read from the next poll on
		case <-t.C:
			if lateC == nil {
				lateC = s.askLate(lctx, c)
			}
			s.readRefused = s.readRefused[:0]
			if err := s.readAll(ctx, c, ids, false); err != nil {
				return err
			}
			// Polled, a node the server does not serve shows as refused as
			// a monitored one would.
			s.setRefused(append(slices.Clone(s.unavailable), s.readRefused...))
		}
	}
}

// lateEvery is how often, at most, a session with nodes it could not
// resolve reads the server's namespace array again.
const lateEvery = 5 * time.Second

// lateArray is the answer to askLate's read of the namespace array.
type lateArray struct {
	ns  []string
	err error
}

// askLate starts a read of the server's namespace array for the nodes the
// session could not resolve when it began (see resolveLate), at most every
// lateEvery; nil when it did not. The read runs on its own and its answer
// comes on the channel: a server that stops answering holds up nothing
// while the read waits out request_timeout — the heartbeat's check above
// all, which waited behind it: a link gone silent as the read was asked
// was found after request_timeout (10.0 s at its default, heartbeat_timeout
// 2s), not at heartbeat_timeout (2.0 s); polled, after both the read's and
// the poll's request timeouts (22 s with the close, 12 s now).
func (s *Source) askLate(ctx context.Context, c *opcua.Client) <-chan lateArray {
	if len(s.unavailable) == 0 || time.Since(s.lateTried) < lateEvery*9/10 { // (a ticker at lateEvery)
		return nil
	}
	s.lateTried = time.Now()
	if s.lateAsked != nil {
		s.lateAsked()
	}
	ch := make(chan lateArray, 1)
	timeout := s.cfg.RequestTimeout
	go func() {
		rctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		ns, err := c.NamespaceArray(rctx)
		ch <- lateArray{ns, err}
	}()
	return ch
}

// resolveLate tries again the nodes the session could not resolve when it
// began, with the server's namespace array as askLate read it anew: a
// server restarted takes sessions before its project has registered the
// plant's namespace (still loading its address space), and its clock keeps
// the session alive, so those nodes were not read until the next session —
// connected, no data (PEERS complaint 5). It sets their ids and returns
// their indexes; the rest stay in s.unavailable. A pinned node whose
// namespace came at another index is warned of as at the session's start.
func (s *Source) resolveLate(a lateArray, ids []*ua.NodeID) []uint32 {
	if a.err != nil {
		s.log.Debug("namespace array not read again", "err", a.err)
		return nil
	}
	meant := meantIndexes(s.nodes, s.cfg.Pins)
	pins := deferPins(s.cfg.Pins)
	var now []uint32
	var still []RefusedNode
	moves := map[string][]string{}
	for i, n := range s.nodes {
		if ids[i] != nil {
			continue
		}
		nid, moved, err := n.pinned(a.ns, pinsOrNil(pins), meant)
		if err != nil {
			still = append(still, RefusedNode{Node: n.addr, Status: err.Error()})
			continue
		}
		ids[i] = nid
		now = append(now, uint32(i))
		if moved != "" {
			moves[moved] = append(moves[moved], n.addr)
		}
		s.log.Info("node available now: the server has its namespace", "node", n.addr)
	}
	if err := pins.keep(); err != nil {
		s.log.Debug("namespace pins not kept; pinned at the next session", "err", err)
	}
	s.sayMoves(moves)
	s.unavailable = still
	return now
}

// sayMoves warns of the namespaces the server renumbered (pinned.moved ->
// the nodes read where their namespace went), each once: a move said at an
// earlier session or resolve is how this server is now.
func (s *Source) sayMoves(moves map[string][]string) {
	for _, moved := range slices.Sorted(maps.Keys(moves)) {
		if s.movesSaid[moved] {
			continue
		}
		if s.movesSaid == nil {
			s.movesSaid = map[string]bool{}
		}
		s.movesSaid[moved] = true
		nodes := moves[moved]
		s.log.Warn("the server renumbered its namespaces: reading the nodes where their namespace went (write them as nsu=<uri>;... to be independent of the numbers)",
			"namespace", moved, "nodes", len(nodes), "example", nodes[0])
	}
}

// publishWait is how long gopcua (v0.8.0, Subscription.publishTimeout)
// waits for the answer to a Publish request before it asks again: the
// keep-alive period the server revised, request_timeout at least. An
// answer that comes later is dropped.
func publishWait(sub *opcua.Subscription, requestTimeout time.Duration) time.Duration {
	return max(time.Duration(sub.RevisedMaxKeepAliveCount)*sub.RevisedPublishingInterval, requestTimeout)
}

// heartbeatFor is the heartbeat timeout of sub: heartbeat_timeout, or
// twice the publishing interval the server revised the subscription to,
// when that is longer — a server that publishes no faster than every
// 1.5 s (its fastest, above the 100 ms asked) was declared silent at every
// 1 s heartbeat_timeout: 5 sessions in 8 s, for good. Said once for each
// interval the server revises to.
func (s *Source) heartbeatFor(sub *opcua.Subscription) time.Duration {
	got := sub.RevisedPublishingInterval
	if got <= s.cfg.PublishingInterval {
		return s.cfg.HeartbeatTimeout
	}
	hb := max(s.cfg.HeartbeatTimeout, 2*got)
	if got != s.revisedSaid {
		s.revisedSaid = got
		if hb > s.cfg.HeartbeatTimeout {
			s.log.Warn("the server publishes no faster than every publishing_interval_revised: the heartbeat waits twice that, not heartbeat_timeout (set publishing_interval and heartbeat_timeout to what the server takes)",
				"publishing_interval", s.cfg.PublishingInterval, "publishing_interval_revised", got, "heartbeat_timeout", s.cfg.HeartbeatTimeout, "heartbeat", hb)
		} else {
			s.log.Info("the server publishes slower than asked", "publishing_interval", s.cfg.PublishingInterval, "publishing_interval_revised", got,
				"keepalive_count", sub.RevisedMaxKeepAliveCount, "lifetime_count", sub.RevisedLifetimeCount)
		}
	}
	return hb
}

// subLifetime is the lifetime count asked of a subscription publishing
// every interval in a session of the lifetime given (the one the server
// gave it, else the one asked): the publishing intervals the server keeps
// it without a Publish, so that it lives as long as the session, rounded
// up; three keep-alive periods at least, as OPC UA requires.
//
// It was three keep-alive periods, heartbeat_timeout: a link lost so that
// only the heartbeat could tell (a cable pulled, no RST) was found as the
// subscription ended, and the server had deleted it, with the changes its
// monitored items queued, before the next connection could take them from
// the session left (drainOrphan), which outlived it: a stop and its run
// within such a loss were lost.
func subLifetime(session, interval time.Duration, keepAlive uint32) uint32 {
	n := max((session+interval-1)/interval, 3*time.Duration(keepAlive))
	return uint32(min(n, math.MaxUint32))
}

// subscribe monitors all nodes plus the server time in one subscription and
// delivers data changes until the connection, the subscription or the
// heartbeat fails.
func (s *Source) subscribe(ctx context.Context, c *opcua.Client, ids []*ua.NodeID) error {
	// A server that refuses a subscription, or monitors nothing, is polled
	// and asked again every pollRetryEvery: a refusal is often for a while
	// (right after a reconnect the old session may still hold the server's
	// subscription slots), and polling misses short stops.
	for refused := 0; ; refused++ {
		again, err := s.subscribeOnce(ctx, c, ids, refused)
		if !again || ctx.Err() != nil {
			return err
		}
	}
}

// subscribeOnce is one try of subscribe; again says the server refused the
// subscription (or monitors nothing) and its nodes were polled for
// pollRetryEvery: try again.
func (s *Source) subscribeOnce(ctx context.Context, c *opcua.Client, ids []*ua.NodeID, refused int) (again bool, err error) {
	notes := make(chan *opcua.PublishNotificationData, 64)
	// Keep-alives at a third of the heartbeat; the subscription lives as
	// long as the session without a Publish (subLifetime).
	keepAlive := uint32(max(1, s.cfg.HeartbeatTimeout/3/s.cfg.PublishingInterval))
	sctx, cancel := context.WithTimeout(ctx, s.cfg.RequestTimeout)
	sub, err := c.Subscribe(sctx, &opcua.SubscriptionParameters{
		Interval:          s.cfg.PublishingInterval,
		MaxKeepAliveCount: keepAlive,
		LifetimeCount:     subLifetime(s.lifetimeOf(c.Session()), s.cfg.PublishingInterval, keepAlive),
	}, notes)
	cancel()
	if refusesMonitoring(err) {
		if refused == 0 && !s.subRefused {
			s.log.Warn("server refuses subscriptions; polling instead, asking again every minute", "err", err, "poll_interval", s.cfg.PollInterval)
		}
		s.subRefused = true
		s.setPolled(len(s.nodes))
		return true, s.poll(ctx, c, ids, s.pollRetry())
	}
	if err != nil {
		return false, fmt.Errorf("create subscription: %w", err)
	}
	if st := c.State(); st == opcua.Disconnected || st == opcua.Closed {
		if s.subRefused {
			// Taken, but this client publishes no more (see
			// errNewSession): its channel works, its publish loop is
			// gone. (Closing the session deletes the subscription on the
			// server.) Once: a session ended so that had a refusal first,
			// after a minute of polling.
			s.subRefused = false
			return false, errNewSession
		}
		return false, fmt.Errorf("%w (client state %s)", ErrDisconnected, st)
	}
	s.sub = &orphanSub{id: sub.SubscriptionID, interval: sub.RevisedPublishingInterval, lifetime: sub.RevisedLifetimeCount}
	// Kept with the session: a run killed from here leaves the changes
	// its items see queued in it, which the next run takes.
	s.keepSession(c.Session(), s.sub)
	wasPolled := refused > 0 || s.subRefused // polled before this subscription
	s.subRefused = false
	// No Cancel on the way out: closing the session deletes the
	// subscription on the server, and a dead server would only stall us.

	pending := make([]uint32, 0, len(ids)) // node indexes not yet monitored
	for i, nid := range ids {
		if nid != nil {
			pending = append(pending, uint32(i))
		}
	}
	all := len(pending)
	live := slices.Clone(pending) // the nodes the server has ids for
	ref, err := s.monitor(ctx, sub, ids, pending, true)
	if err != nil {
		return false, err
	}
	if ref.noBeat && len(ref.poll) == all {
		// Nothing can be monitored, not even the server's clock: the
		// empty subscription goes, the nodes are polled a while.
		if refused == 0 {
			s.log.Warn("server monitors none of the nodes; polling instead, asking again every minute", "err", ref.pollErr, "poll_interval", s.cfg.PollInterval)
		}
		cctx, cancel := context.WithTimeout(ctx, s.cfg.RequestTimeout)
		_ = sub.Cancel(cctx)
		cancel()
		s.sub = nil
		s.setPolled(len(s.nodes))
		return true, s.poll(ctx, c, ids, s.pollRetry())
	}
	if wasPolled {
		// Said once something is monitored: a server that takes the
		// subscription but still monitors nothing is polled on (it was
		// said at each such subscription, polling going on).
		s.log.Info("server takes a subscription again; no longer polling", "after_refusals", max(refused, 1))
	}
	noBeat := ref.noBeat
	if noBeat {
		// Without a server-time item a quiet line sends nothing: at each
		// heartbeat timeout the nodes are read instead (below).
		s.log.Warn("server time (ns=0;i=2258) not monitorable; a quiet line is read at each heartbeat_timeout instead")
	}
	pending, polled := ref.retry, ref.poll  // to monitor later; polled meanwhile
	items, listed := ref.items, ref.refused // monitored items by client handle; nodes refused at creation
	// gone are the nodes lost while monitored, with the server's answer,
	// until a good value comes: listed as refused meanwhile (a server may
	// take the item again and answer the same).
	gone := map[uint32]ua.StatusCode{}
	var readRefused []RefusedNode // nodes the last read of polled or quiet nodes refused
	notified := map[uint32]any{}  // the last good value of each node, notified or read
	// readNoted is the reads' Source.onRead: it notes a good value read
	// as node idx's last one, and reports whether it differs from the one
	// before (none before: it does not).
	readNoted := func(idx int, dv *ua.DataValue) (differs bool) {
		if dv == nil || !statusGood(dv.Status) || dv.Value == nil {
			return false
		}
		v := dv.Value.Value()
		old, ok := notified[uint32(idx)]
		notified[uint32(idx)] = v
		return ok && !reflect.DeepEqual(old, v)
	}
	showRefused := func() {
		r := append(slices.Clone(s.unavailable), listed...)
		for _, idx := range slices.Sorted(maps.Keys(gone)) {
			r = append(r, RefusedNode{Node: s.nodes[idx].addr, Status: statusName(gone[idx])})
		}
		r = append(r, readRefused...)
		// Each node once.
		seen := map[string]bool{}
		r = slices.DeleteFunc(r, func(n RefusedNode) bool {
			dup := seen[n.Node]
			seen[n.Node] = true
			return dup
		})
		s.setRefused(r)
	}
	s.setPolled(len(polled))
	showRefused()
	if len(polled) > 0 {
		s.log.Warn("server cannot monitor some nodes; polling them", "nodes", len(polled), "err", ref.pollErr, "poll_interval", s.cfg.PollInterval)
	}
	pollT := time.NewTicker(s.cfg.PollInterval)
	defer pollT.Stop()
	polledTried := time.Now()

	hb := s.heartbeatFor(sub)
	beat := newBeatWatch(time.Now(), hb)
	// A silence this long may be a Publish answer lost (see catchUp
	// below); twice the publishing interval at least, which a healthy
	// subscription's clock can take (a request_timeout set below it).
	lost := max(publishWait(sub, s.cfg.RequestTimeout), 2*sub.RevisedPublishingInterval)
	check := time.NewTicker(stateCheckInterval)
	defer check.Stop()
	retry := time.NewTicker(max(hb/3, time.Second))
	defer retry.Stop()
	// Nodes the session could not resolve are tried every lateEvery, as
	// docs/config.md (OPC UA node ids) says, not at the retry above (a third of the heartbeat
	// timeout: every 10 s by default).
	lateT := time.NewTicker(lateEvery)
	defer lateT.Stop()
	// What the loop asks the server besides publishing (a read of polled
	// nodes or of a quiet line without a clock, monitored items created
	// or deleted, the namespace array) runs on a goroutine of its own,
	// and the loop waits for its answer in the select below: a link gone
	// silent meanwhile is found by the check at heartbeat_timeout, not
	// after request_timeout (the heartbeat's check waited behind the
	// request: 12.1 s with a 2 s heartbeat). One at a time, the rest wait
	// their turn (due, below); notifications that come meanwhile count
	// for the heartbeat at once but are handled after the answer, in the
	// order the loop handled them when it waited in the request. A
	// request still waiting when the loop ends is cancelled and its
	// answer dropped: the next session reads every node first.
	rctx, rcancel := context.WithCancel(ctx)
	defer rcancel()
	var lateC <-chan lateArray // the late read's answer, while one is asked
	var (
		answer <-chan func() error // the answer of the request asked (applied by the loop); nil when none
		held   []heldNote          // notifications that came while it waits
		// due: asked when the request before has its answer
		pollDue, retryDue, beatDue bool
		catchUp                    time.Duration // not 0: the silence after which the monitored nodes are to be read
		beatAsked                  bool          // the read of a quiet line without a clock is asked
		lateNew                    []uint32      // nodes resolved late, to monitor
		dead                       []uint32      // monitored items of nodes gone, deleted in one call
	)
	// handle handles one notification, received at rx.
	handle := func(n *opcua.PublishNotificationData, rx connectors.Receipt) error {
		if n.Error != nil {
			return fmt.Errorf("subscription: %w", n.Error)
		}
		switch v := n.Value.(type) {
		case *ua.DataChangeNotification:
			for _, item := range v.MonitoredItems {
				if item == nil || item.ClientHandle == heartbeatHandle {
					continue
				}
				if item.ClientHandle == 0 || int64(item.ClientHandle) > int64(len(s.nodes)) {
					continue
				}
				idx := item.ClientHandle - 1
				if item.Value != nil && overflowed(item.Value.Status) {
					s.overflow(idx)
				}
				if err := s.deliver(ctx, int(idx), item.Value, rx, false, hb); err != nil {
					return err
				}
				if item.Value != nil && statusGood(item.Value.Status) && item.Value.Value != nil {
					notified[idx] = item.Value.Value.Value()
				}
				if item.Value == nil || !nodeRefused(item.Value.Status) {
					if _, ok := gone[idx]; ok {
						delete(gone, idx)
						showRefused()
					}
					continue
				}
				// The node went away under its monitored item (a program
				// download, a gateway's project reloaded): the server
				// notifies no more on that item, even once the node is
				// back (the OPC UA probe: no value for 45 s, the session
				// alive on the server's clock). The item goes; the node
				// is monitored anew, as one refused at the start.
				id, ok := items[item.ClientHandle]
				if !ok {
					continue
				}
				delete(items, item.ClientHandle)
				// Deleted in one call for all (a program download takes
				// every node at once; see next).
				dead = append(dead, id)
				if _, ok := gone[idx]; !ok {
					msg := "node gone from the server while monitored (a program download?); monitoring it anew until the server has it again"
					if _, had := notified[idx]; !had {
						// Refused in the item's first value: a server
						// that takes an item for any node id (gopcua's)
						// answers a typo so — nothing went away.
						msg = "the server does not have this node id (refused in its first value: a typo in the mapping? plantedge browse lists the server's nodes; or gone before it was read in this session); monitoring it anew until the server has it"
					}
					s.log.Warn(msg, "node", s.nodes[idx].addr, "status", statusName(item.Value.Status))
				}
				gone[idx] = item.Value.Status
				pending = append(pending, idx)
				showRefused()
			}
		case *ua.StatusChangeNotification:
			if !statusGood(v.Status) {
				return fmt.Errorf("subscription status: %w", v.Status)
			}
		}
		return nil
	}
	// ended ends the session with err, handling first the notifications
	// come while a request waited (its answer will not be).
	ended := func(err error) (bool, error) {
		for _, h := range held {
			if handle(h.n, h.rx) != nil {
				break
			}
		}
		held = nil
		return false, err
	}
	// next asks the server for what is due, if no answer is awaited: the
	// quiet line's read first (the heartbeat waits for it), the polled
	// nodes' read last.
	next := func() {
		for answer == nil {
			switch {
			case beatDue:
				// No clock to keep the subscription talking: an idle
				// machine sent nothing, and its session was torn down at
				// every timeout (the OPC UA probe: 7 sessions a minute).
				// The session answering a read of the nodes shows it
				// alive, and brings any value the subscription missed (a
				// value seen again counts once).
				beatDue, beatAsked = false, true
				s.ask("read (no clock)")
				answer = s.readAsync(rctx, c, ids, live, func(vals []readValue) error {
					beatAsked = false
					// A value read that differs from the last one
					// notified is a change the subscription did not send:
					// it is dead (the server dropped it; gopcua does not
					// say), and is rebuilt — the session alone answering
					// does not show it alive (the review).
					missed := false
					s.onRead = func(idx int, dv *ua.DataValue) {
						if readNoted(idx, dv) {
							missed = true
						}
					}
					err := s.deliverRead(ctx, vals, false, hb)
					s.onRead = nil
					if err != nil {
						return err
					}
					readRefused = slices.Clone(s.readRefused)
					s.readRefused = s.readRefused[:0]
					showRefused()
					if missed {
						s.update(func(st *Stats) { st.HeartbeatRebuilds++ })
						return fmt.Errorf("%w: a read found a change the subscription did not send", ErrHeartbeat)
					}
					beat.heard(time.Now())
					return nil
				})
			case catchUp > 0:
				// After the notification that ended the silence (handled
				// first): a value read that the lost answer carried is
				// delivered now, in the session's watch; one it carried
				// and that changed again since is gone (a stop and the
				// run after it both in the lost answer: the agent sees
				// neither).
				quiet := catchUp
				catchUp = 0
				idxs := make([]uint32, 0, len(items))
				for h := range items {
					if h != heartbeatHandle {
						idxs = append(idxs, h-1)
					}
				}
				if len(idxs) == 0 {
					continue
				}
				slices.Sort(idxs)
				s.update(func(st *Stats) { st.CatchUpReads++ })
				s.log.Info("the subscription was silent as long as a Publish answer is waited for: reading its nodes, in case the answer came too late and was dropped",
					"silent", quiet.Round(time.Millisecond), "publish_wait", lost, "nodes", len(idxs))
				s.ask("read (catch up)")
				answer = s.readAsync(rctx, c, ids, idxs, func(vals []readValue) error {
					s.onRead = func(idx int, dv *ua.DataValue) { readNoted(idx, dv) }
					err := s.deliverRead(ctx, vals, false, hb)
					s.onRead = nil
					return err
				})
			case len(dead) > 0:
				// One call for all: a server that hangs then costs one
				// request, not one per node.
				d := dead
				dead = nil
				s.ask("unmonitor")
				answer = s.async(rctx, func(ctx context.Context) func() error {
					uctx, cancel := context.WithTimeout(ctx, s.cfg.RequestTimeout)
					_, err := sub.Unmonitor(uctx, d...)
					cancel()
					return func() error {
						if err != nil {
							s.log.Debug("monitored items of nodes gone not deleted", "items", len(d), "err", err)
						}
						return nil
					}
				})
			case len(lateNew) > 0:
				late := lateNew
				lateNew = nil
				s.ask("monitor")
				answer = s.monitorAsync(rctx, sub, ids, late, func(ref refusal) {
					pending = append(pending, ref.retry...)
					polled = append(polled, ref.poll...)
					listed = append(listed, ref.refused...)
					maps.Copy(items, ref.items)
					s.setPolled(len(polled))
					showRefused()
				})
			case retryDue:
				// Nodes the server did not know yet (e.g. still loading
				// its address space after a restart) are retried, not
				// given up on; so are those it had no room for, but only
				// once a minute: they are polled meanwhile, and a PLC at
				// its limit need not be asked again every few seconds.
				retryDue = false
				try := pending
				again := len(polled) > 0 && time.Since(polledTried) >= s.pollRetry()
				if again {
					try, polledTried = append(slices.Clone(pending), polled...), time.Now()
				}
				if len(try) == 0 {
					continue
				}
				s.ask("monitor")
				answer = s.monitorAsync(rctx, sub, ids, try, func(ref refusal) {
					if !again {
						ref.poll = append(polled, ref.poll...)
					} else if len(ref.poll) < len(polled) {
						s.log.Info("server now monitors nodes it polled", "nodes", len(polled)-len(ref.poll), "still_polled", len(ref.poll))
					}
					pending, polled, listed = ref.retry, ref.poll, ref.refused
					maps.Copy(items, ref.items)
					s.setPolled(len(polled))
					showRefused()
				})
			case pollDue:
				pollDue = false
				if len(polled) == 0 {
					continue
				}
				s.ask("read polled")
				answer = s.readAsync(rctx, c, ids, polled, func(vals []readValue) error {
					if err := s.deliverRead(ctx, vals, false, s.cfg.PollInterval); err != nil {
						return err
					}
					readRefused = slices.Clone(s.readRefused) // shown (they grew at every read)
					s.readRefused = s.readRefused[:0]
					showRefused()
					return nil
				})
			default:
				return
			}
		}
	}
	for {
		select {
		case <-ctx.Done():
			return false, nil
		case <-check.C:
			if st := c.State(); st == opcua.Disconnected || st == opcua.Closed {
				return ended(fmt.Errorf("%w (client state %s)", ErrDisconnected, st))
			}
			quiet := beat.silence(time.Now())
			if noBeat {
				// Without a server-time item a quiet line sends nothing:
				// its nodes are read (next) at heartbeat_timeout, and that
				// read has a heartbeat_timeout to answer.
				if quiet > hb && !beatAsked {
					beatDue = true
				}
				if quiet > 2*hb {
					s.update(func(st *Stats) { st.HeartbeatRebuilds++ })
					return ended(fmt.Errorf("%w: nothing for %s, nor an answer to the read of the nodes after it", ErrHeartbeat, hb))
				}
			} else if quiet > hb {
				s.update(func(st *Stats) { st.HeartbeatRebuilds++ })
				return ended(fmt.Errorf("%w: nothing for %s", ErrHeartbeat, hb))
			}
		case <-lateT.C:
			if lateC == nil {
				lateC = s.askLate(rctx, c)
			}
		case a := <-lateC:
			lateC = nil
			late := s.resolveLate(a, ids)
			live = append(live, late...)
			lateNew = append(lateNew, late...)
		case <-retry.C:
			retryDue = true
		case <-pollT.C:
			pollDue = true
		case apply := <-answer:
			answer = nil
			if err := apply(); err != nil {
				return ended(err)
			}
			for len(held) > 0 {
				h := held[0]
				held = held[1:]
				if err := handle(h.n, h.rx); err != nil {
					return false, err
				}
			}
		case n := <-notes:
			rx := connectors.Receive()
			if _, ok := n.Value.(*ua.DataChangeNotification); ok && n.Error == nil {
				// The server's clock changes at every publishing
				// interval: a silence as long as gopcua waits for a
				// Publish answer may have been one that came too late
				// and was dropped, its data changes with it (gopcua
				// neither says so nor asks the server to publish it
				// again). The monitored nodes are read once this comes.
				if quiet := rx.Time.Sub(beat.last); !noBeat && quiet >= lost {
					catchUp = quiet
				}
				beat.heard(rx.Time)
			}
			if answer != nil {
				held = append(held, heldNote{n, rx})
				break
			}
			if err := handle(n, rx); err != nil {
				return false, err
			}
		}
		next()
	}
}

// beatWatch measures the silence of a subscription: the time since its
// last beat (a data change, or the answer to the read of a line without
// a clock) during which the session's loop listened. A check that comes
// late — the loop held up in a delivery (the agent's queue full behind a
// stalled disk) or the process stopped (CPU starved, SIGSTOP, a VM
// paused) — was not listening: the notifications the server sent
// meanwhile wait in the channel or the socket, behind the check (the
// loop's select takes the check and a waiting notification in random
// order). So of the time between two looks (checks or beats) a quarter
// of heartbeat_timeout counts at most: a loop held up for 1.2 s with a
// 1 s heartbeat_timeout, the server sending every 100 ms, gave up a
// healthy session 9 times in 20 under -race
// (TestStalledLoopIsNotASilentServer holds it 2.5 s, the timeout 2 s).
// A server silent while the loop is held up is found once it listens
// again (its silence then counts from the last beat, the stall itself
// at most the quarter); while the loop looks every stateCheckInterval,
// silence is the time since the last beat.
type beatWatch struct {
	last   time.Time     // the last beat
	looked time.Time     // the last check or beat
	deaf   time.Duration // since the last beat, the time not listened
	most   time.Duration // a gap between two looks counts this much at most
}

func newBeatWatch(now time.Time, timeout time.Duration) *beatWatch {
	return &beatWatch{last: now, looked: now, most: max(timeout/4, 2*stateCheckInterval)}
}

// heard notes a beat at t.
func (b *beatWatch) heard(t time.Time) {
	if t.After(b.last) {
		b.last = t
	}
	if b.last.After(b.looked) {
		b.looked = b.last
	}
	b.deaf = 0
}

// silence is how long, at the check at now, the subscription has been
// silent while the loop listened.
func (b *beatWatch) silence(now time.Time) time.Duration {
	if gap := now.Sub(b.looked); gap > b.most {
		b.deaf += gap - b.most
	}
	if now.After(b.looked) {
		b.looked = now
	}
	return now.Sub(b.last) - b.deaf
}

// heldNote is a notification the subscription's loop received while it
// waited for the answer to a request, and when.
type heldNote struct {
	n  *opcua.PublishNotificationData
	rx connectors.Receipt
}

// async runs do on a goroutine of its own: do asks the server (with ctx,
// which ends when the session's loop does) and returns what the loop is
// to do with the answer, which comes on the channel. do must not touch
// what the loop owns; what it returns runs on the loop.
func (s *Source) async(ctx context.Context, do func(ctx context.Context) func() error) <-chan func() error {
	ch := make(chan func() error, 1)
	go func() { ch <- do(ctx) }()
	return ch
}

// readAsync reads the nodes idxs off the loop (async); apply gets their
// values on it.
func (s *Source) readAsync(ctx context.Context, c *opcua.Client, ids []*ua.NodeID, idxs []uint32, apply func([]readValue) error) <-chan func() error {
	ids, idxs = slices.Clone(ids), slices.Clone(idxs) // the loop resolves late nodes meanwhile
	return s.async(ctx, func(ctx context.Context) func() error {
		var vals []readValue
		err := s.readEach(ctx, c, ids, idxs, func(b []readValue) error {
			vals = append(vals, b...)
			return nil
		})
		return func() error {
			if err != nil {
				return err
			}
			return apply(vals)
		}
	})
}

// monitorAsync is monitor (not the first) off the loop (async); apply gets
// what it set up, on the loop.
func (s *Source) monitorAsync(ctx context.Context, sub *opcua.Subscription, ids []*ua.NodeID, pending []uint32, apply func(refusal)) <-chan func() error {
	ids, pending = slices.Clone(ids), slices.Clone(pending)
	return s.async(ctx, func(ctx context.Context) func() error {
		ref, err := s.monitor(ctx, sub, ids, pending, false)
		return func() error {
			if err != nil {
				return err
			}
			apply(ref)
			return nil
		}
	})
}

// ask calls the asking hook (tests).
func (s *Source) ask(what string) {
	if s.asking != nil {
		s.asking(what)
	}
}

// refusal is what a monitor call could not set up.
type refusal struct {
	retry []uint32 // node indexes to try again later (unknown to the server yet, ...)
	// poll: nodes the server cannot monitor (a limit, or not supported):
	// their values are polled, and they are offered again now and then.
	poll    []uint32
	noBeat  bool          // the server-time item was refused
	pollErr ua.StatusCode // the first refusal of a polled node
	refused []RefusedNode // the retry nodes and the server's answers
	// items are the monitored items created, by client handle (the node's
	// index + 1): their server ids.
	items map[uint32]uint32
}

// refusesMonitoring reports a refusal that polling works around: the server
// has no room for (more) subscriptions or monitored items, or does not
// support them.
func refusesMonitoring(err error) bool {
	for _, c := range []ua.StatusCode{
		ua.StatusBadTooManySubscriptions, ua.StatusBadTooManyMonitoredItems, ua.StatusBadServiceUnsupported,
		ua.StatusBadNotSupported, ua.StatusBadNotImplemented, ua.StatusBadMonitoredItemFilterUnsupported,
		ua.StatusBadFilterNotAllowed,
	} {
		if errors.Is(err, c) {
			return true
		}
	}
	return false
}

// monitor creates monitored items for the pending node indexes (and, on the
// first call, the server-time heartbeat). Nodes the server refuses are
// retried later; on the first call those it does not know yet get one bad
// sample each, and those it cannot monitor are polled.
func (s *Source) monitor(ctx context.Context, sub *opcua.Subscription, ids []*ua.NodeID, pending []uint32, first bool) (refusal, error) {
	out := refusal{items: map[uint32]uint32{}}
	mk := s.itemRequest
	var reqs []*ua.MonitoredItemCreateRequest
	if first {
		reqs = append(reqs, mk(serverTimeNode, heartbeatHandle))
	}
	for start := 0; start < len(pending) || len(reqs) > 0; {
		end := min(start+s.perMonitor-len(reqs), len(pending))
		for _, idx := range pending[start:end] {
			reqs = append(reqs, mk(ids[idx], idx+1))
		}
		mctx, cancel := context.WithTimeout(ctx, s.cfg.RequestTimeout)
		res, err := sub.Monitor(mctx, ua.TimestampsToReturnBoth, reqs...)
		cancel()
		if err != nil {
			return out, fmt.Errorf("create monitored items: %w", err)
		}
		if len(res.Results) != len(reqs) {
			return out, fmt.Errorf("create monitored items: %d results for %d items", len(res.Results), len(reqs))
		}
		for i, r := range res.Results {
			h := reqs[i].RequestedParameters.ClientHandle
			if statusGood(r.StatusCode) {
				out.items[h] = r.MonitoredItemID
				continue
			}
			if h == heartbeatHandle {
				out.noBeat = true
				continue
			}
			idx := h - 1
			if refusesMonitoring(r.StatusCode) {
				if out.pollErr == 0 {
					out.pollErr = r.StatusCode
				}
				out.poll = append(out.poll, idx)
				continue
			}
			out.retry = append(out.retry, idx)
			out.refused = append(out.refused, RefusedNode{Node: s.nodes[idx].addr, Status: statusName(r.StatusCode)})
			if first {
				s.log.Warn("monitored item refused; will retry", "node", s.nodes[idx].addr, "err", r.StatusCode)
				dv := &ua.DataValue{EncodingMask: ua.DataValueStatusCode, Status: r.StatusCode}
				if err := s.deliver(ctx, int(idx), dv, connectors.Receive(), false, s.cfg.HeartbeatTimeout); err != nil {
					return out, err
				}
			}
		}
		reqs = reqs[:0]
		start = end
	}
	return out, nil
}

// itemRequest is the monitored item of a node (of an array element, its
// whole value: the element is taken from it, see nodeRef.read).
func (s *Source) itemRequest(nid *ua.NodeID, handle uint32) *ua.MonitoredItemCreateRequest {
	r := opcua.NewMonitoredItemCreateRequestWithDefaults(nid, ua.AttributeIDValue, handle)
	r.RequestedParameters.QueueSize = s.cfg.QueueSize
	r.RequestedParameters.SamplingInterval = float64(s.cfg.SamplingInterval) / float64(time.Millisecond)
	return r
}

// nodeRefused: the server will not serve the node at all (not a value's
// bad quality, such as a sensor failure).
func nodeRefused(c ua.StatusCode) bool {
	switch c {
	case ua.StatusBadNodeIDUnknown, ua.StatusBadNodeIDInvalid, ua.StatusBadUserAccessDenied, ua.StatusBadNotReadable, ua.StatusBadAttributeIDInvalid:
		return true
	}
	return false
}
