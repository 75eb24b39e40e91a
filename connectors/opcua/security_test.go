package opcua

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/plantedge/plantedge/connectors"
	"github.com/plantedge/plantedge/internal/nodeopcua"
)

// nodeServer is a running node-opcua server.
type nodeServer struct {
	Endpoint   string `json:"endpoint"`
	Thumbprint string `json:"thumbprint"`
	pki        string
	cmd        *exec.Cmd
	// sessions is the server's session count, as it last printed it
	sessions *atomic.Int64
	// counts is every session count it printed, in order
	counts *countLog
	// held gets the service of each request held (HOLD)
	held chan string
}

// countLog is the session counts a node-opcua server printed.
type countLog struct {
	mu  sync.Mutex
	all []int64
}

func (c *countLog) add(n int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.all = append(c.all, n)
}

// since returns the counts printed from the i-th on, and how many were
// printed in all.
func (c *countLog) since(i int) ([]int64, int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.all[min(i, len(c.all)):]), len(c.all)
}

// startNodeServer starts testdata/nodeopcua/server.js on a free loopback
// port, with env (NAME=value, see server.js) added to its environment. It
// skips the test when node-opcua is not installed, unless CI is set.
func startNodeServer(t testing.TB, env ...string) *nodeServer {
	t.Helper()
	sessions, counts, held := new(atomic.Int64), new(countLog), make(chan string, 8)
	var ns *nodeServer
	cmd, pki := nodeopcua.Start(t, func(line string) bool {
		if n, ok := strings.CutPrefix(line, "sessions "); ok {
			if v, err := strconv.ParseInt(n, 10, 64); err == nil {
				sessions.Store(v)
				counts.add(v)
			}
			return false
		}
		if svc, ok := strings.CutPrefix(line, "held "); ok {
			held <- svc
			return false
		}
		if ns == nil && strings.HasPrefix(line, "{") {
			v := &nodeServer{sessions: sessions, counts: counts, held: held}
			if json.Unmarshal([]byte(line), v) == nil {
				ns = v
				return true
			}
		}
		return false
	}, env...)
	ns.pki, ns.cmd = pki, cmd
	return ns
}

const secureCounter = "nsu=urn:plantedge:test;s=Counter"

// runUntilSample runs a source until its first initial sample or timeout.
func runUntilSample(t *testing.T, cfg Config, timeout time.Duration) (connectors.Sample, Stats, bool) {
	t.Helper()
	var got connectors.Sample
	st, found := runUntil(t, cfg, timeout, func(samples []connectors.Sample, _ Stats) bool {
		for _, s := range samples {
			if s.Initial && s.Address == secureCounter {
				got = s
				return true
			}
		}
		return false
	})
	return got, st, found
}

// loginRefused matches the status codes of a refused user identity
// (authRefused) in a LastError.
var loginRefused = regexp.MustCompile(`BadUserAccessDenied|BadIdentityToken(Invalid|Rejected)|BadUserSignatureInvalid`)

// runUntil runs a source of cfg until done says so of its samples and
// stats, or timeout (false).
func runUntil(t *testing.T, cfg Config, timeout time.Duration, done func([]connectors.Sample, Stats) bool) (Stats, bool) {
	t.Helper()
	col := newCollector()
	cfg.Name = "secure"
	src, err := New(cfg, col)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	ran := make(chan error, 1)
	go func() { ran <- src.Run(ctx) }()
	ok := false
	for !ok && ctx.Err() == nil {
		if ok = done(col.all(), src.Stats()); !ok {
			time.Sleep(20 * time.Millisecond)
		}
	}
	cancel()
	if err := <-ran; err != nil {
		t.Fatalf("Run: %v", err)
	}
	return src.Stats(), ok
}

func TestSecurityPoliciesAgainstNodeOPCUA(t *testing.T) {
	srv := startNodeServer(t)
	for _, tc := range []struct{ policy, mode string }{
		{"Basic256Sha256", "SignAndEncrypt"},
		{"Basic256Sha256", "Sign"},
		{"Aes128_Sha256_RsaOaep", "SignAndEncrypt"},
		{"Aes256_Sha256_RsaPss", "SignAndEncrypt"},
	} {
		t.Run(tc.policy+"/"+tc.mode, func(t *testing.T) {
			s, st, ok := runUntilSample(t, Config{
				Endpoint: srv.Endpoint, SecurityPolicy: tc.policy, SecurityMode: tc.mode,
				DataDir: t.TempDir(), Nodes: []string{secureCounter},
			}, 30*time.Second)
			if !ok {
				t.Fatalf("no sample over %s/%s; stats %+v", tc.policy, tc.mode, st)
			}
			if v, isInt := s.Value.(int64); !isInt || v < 41 || !s.Good {
				t.Errorf("sample = %+v, want a good counter >= 41", s)
			}
		})
	}
}

// TestGeneratedCertificateReused checks that the self-signed client
// certificate is made once into DataDir and reused across restarts, so the
// server's trust list sees one certificate.
func TestGeneratedCertificateReused(t *testing.T) {
	srv := startNodeServer(t)
	dir := t.TempDir()
	cfg := Config{
		Endpoint: srv.Endpoint, SecurityPolicy: "Basic256Sha256", SecurityMode: "SignAndEncrypt",
		DataDir: dir, Nodes: []string{secureCounter},
	}
	if _, st, ok := runUntilSample(t, cfg, 30*time.Second); !ok {
		t.Fatalf("first run: no sample; stats %+v", st)
	}
	crt, key := CertPaths(dir, "secure")
	first, err := os.ReadFile(crt)
	if err != nil {
		t.Fatalf("generated certificate: %v", err)
	}
	if fi, err := os.Stat(key); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("generated key: %v, mode %v", err, fi.Mode())
	}
	if _, st, ok := runUntilSample(t, cfg, 30*time.Second); !ok {
		t.Fatalf("second run: no sample; stats %+v", st)
	}
	second, _ := os.ReadFile(crt)
	if string(first) != string(second) {
		t.Error("certificate regenerated on restart")
	}
	trusted, _ := filepath.Glob(filepath.Join(srv.pki, "server", "trusted", "certs", "*"))
	if len(trusted) != 1 {
		t.Errorf("server trusts %d client certificates, want 1: %v", len(trusted), trusted)
	}
	// One half missing is refused rather than silently regenerated.
	if err := os.Remove(key); err != nil {
		t.Fatal(err)
	}
	src, err := New(Config{Name: "secure", Endpoint: srv.Endpoint, SecurityPolicy: "Basic256Sha256", DataDir: dir, Nodes: []string{secureCounter}}, newCollector())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := src.Run(ctx); err == nil || !strings.Contains(err.Error(), "only one of") {
		t.Errorf("Run with a lost key = %v, want a refusal", err)
	}
}

func TestServerThumbprintPinning(t *testing.T) {
	srv := startNodeServer(t)
	base := Config{
		Endpoint: srv.Endpoint, SecurityPolicy: "Basic256Sha256", SecurityMode: "SignAndEncrypt",
		DataDir: t.TempDir(), Nodes: []string{secureCounter},
	}
	// Without a pin any certificate is accepted: the log says so, with the
	// thumbprint to pin.
	var logs lockedLog
	unpinned := base
	unpinned.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	// The server's certificate goes to ServerCertificates too (the agent
	// shows when it expires).
	var certMu sync.Mutex
	var chain []*x509.Certificate
	unpinned.ServerCertificates = func(c []*x509.Certificate) { certMu.Lock(); chain = c; certMu.Unlock() }
	if _, st, ok := runUntilSample(t, unpinned, 30*time.Second); !ok {
		t.Fatalf("no pin: no sample; stats %+v", st)
	}
	if l := logs.String(); !strings.Contains(l, "not pinned") || !strings.Contains(l, "thumbprint="+srv.Thumbprint) {
		t.Errorf("log without a pin:\n%s", l)
	}
	certMu.Lock()
	if len(chain) == 0 || Thumbprint(chain[0].Raw) != srv.Thumbprint {
		t.Errorf("ServerCertificates got %d certificates, want the server's (thumbprint %s) first", len(chain), srv.Thumbprint)
	}
	certMu.Unlock()
	good := base
	good.ServerThumbprint = strings.ToUpper(srv.Thumbprint)
	if _, st, ok := runUntilSample(t, good, 30*time.Second); !ok {
		t.Fatalf("matching pin: no sample; stats %+v", st)
	}
	// A mismatching pin: refused before any session, whenever the server
	// answers (a loaded machine's first GetEndpoints may time out: the CI
	// saw that within a fixed 3 s).
	bad := base
	bad.ServerThumbprint = strings.Repeat("ab", 20)
	st, refused := runUntil(t, bad, 30*time.Second, func(samples []connectors.Sample, st Stats) bool {
		return len(samples) > 0 || st.SessionsCreated != 0 || strings.Contains(st.LastError, ErrThumbprintMismatch.Error())
	})
	if !refused || st.SessionsCreated != 0 {
		t.Fatalf("mismatching pin: stats %+v", st)
	}
	if !strings.Contains(st.LastError, ErrThumbprintMismatch.Error()) || !strings.Contains(st.LastError, srv.Thumbprint) {
		t.Errorf("LastError = %q, want a thumbprint mismatch naming %s", st.LastError, srv.Thumbprint)
	}
}

func TestUsernamePassword(t *testing.T) {
	srv := startNodeServer(t)
	base := Config{
		Endpoint: srv.Endpoint, SecurityPolicy: "Basic256Sha256", SecurityMode: "SignAndEncrypt",
		DataDir: t.TempDir(), Nodes: []string{secureCounter}, Username: "operator",
	}
	good := base
	good.Password = "s3cret"
	if _, st, ok := runUntilSample(t, good, 30*time.Second); !ok {
		t.Fatalf("valid user: no sample; stats %+v", st)
	}
	// A wrong password: refused, whenever the server answers (a loaded
	// machine's first attempt may time out, as TestServerThumbprintPinning
	// saw), and then not tried again at a network error's pace (the OPC UA
	// probe: 16 failed logins in 90 s; servers and PLCs lock accounts): a
	// minute, so none in the 3 s after the refusal.
	bad := base
	bad.Password = "wr0ng-pass-77"
	var refusedAt time.Time
	var attempts uint64
	var waiting Stats // as the source waits to try again
	st, refused := runUntil(t, bad, 30*time.Second, func(samples []connectors.Sample, st Stats) bool {
		if len(samples) > 0 || st.SessionsCreated != 0 {
			return true
		}
		if !loginRefused.MatchString(st.LastError) {
			return false
		}
		if refusedAt.IsZero() {
			refusedAt, attempts = time.Now(), st.ConnectAttempts
		}
		waiting = st
		return time.Since(refusedAt) >= 3*time.Second
	})
	if !refused || st.SessionsCreated != 0 || refusedAt.IsZero() {
		t.Fatalf("wrong password: stats %+v", st)
	}
	t.Logf("wrong password refused: %s", st.LastError)
	// Whose login, and what to check (status shows this last error); never
	// the password.
	if !strings.Contains(st.LastError, "the server refused user operator") || !strings.Contains(st.LastError, "password_file") ||
		strings.Contains(st.LastError, bad.Password) {
		t.Errorf("LastError %q: want whose login was refused and what to check, without the password", st.LastError)
	}
	if st.ConnectAttempts != attempts {
		t.Errorf("%d logins in the 3 s after a wrong password was refused, want none (the next after a minute)", st.ConnectAttempts-attempts)
	}
	// Stats says when that next login is (status shows it to the
	// technician who fixed the password on the server): a minute after
	// the refusal (the backoff's cap, 30 s by default, is less).
	if w := waiting; w.NextAttempt.Before(w.LastErrorTime.Add(connectors.LoginRetry)) || w.NextAttempt.After(w.LastErrorTime.Add(connectors.LoginRetry+5*time.Second)) {
		t.Errorf("next attempt %v after the refusal at %v, want a minute later", w.NextAttempt, w.LastErrorTime)
	}
}

// A failure that changes kind during a run of failures is logged again, at
// most once a minute: the actionable one may come second (a connection
// lost, then a server certificate that no longer matches the pin).
func TestNoteFailureLogsAnotherKind(t *testing.T) {
	var logs lockedLog
	s := &Source{log: slog.New(slog.NewTextHandler(&logs, nil))}
	s.noteFailure(fmt.Errorf("%w (client state Closed)", ErrDisconnected))
	s.noteFailure(errors.New("read tcp 127.0.0.1:50312->127.0.0.1:4840: connection reset by peer"))
	s.warnedAt = time.Now().Add(-2 * time.Minute)
	s.noteFailure(errors.New("read tcp 127.0.0.1:50318->127.0.0.1:4840: connection reset by peer"))
	s.noteFailure(fmt.Errorf("%w: server presents 5f7d, pinned cf98", ErrThumbprintMismatch))
	l := logs.String()
	if n := strings.Count(l, "level=WARN"); n != 2 || !strings.Contains(l, "connection reset") || strings.Contains(l, "5f7d") {
		t.Errorf("%d warnings, want the first and the reset (once, whatever its port):\n%s", n, l)
	}
	s.warnedAt = time.Now().Add(-2 * time.Minute)
	s.noteFailure(fmt.Errorf("%w: server presents 5f7d, pinned cf98", ErrThumbprintMismatch))
	if l := logs.String(); !strings.Contains(l, `level=ERROR msg="opc ua reconnect fails another way now" err="server certificate thumbprint mismatch`) {
		t.Errorf("the mismatch (a person's to mend) not at ERROR:\n%s", l)
	}
	// Kinds said once: two that alternate are not said every minute.
	n := strings.Count(logs.String(), "fails another way")
	for range 3 {
		s.warnedAt = time.Now().Add(-2 * time.Minute)
		s.noteFailure(errors.New("read tcp 127.0.0.1:50399->127.0.0.1:4840: connection reset by peer"))
		s.warnedAt = time.Now().Add(-2 * time.Minute)
		s.noteFailure(fmt.Errorf("%w: server presents 5f7d, pinned cf98", ErrThumbprintMismatch))
	}
	if m := strings.Count(logs.String(), "fails another way"); m != n {
		t.Errorf("alternating failures said %d more times", m-n)
	}
}

// TestServerOperationLimits: a server that allows 10 nodes per Read and 10
// monitored items per call (and refuses more with BadTooManyOperations) still
// delivers every one of 25 nodes, first read and then subscribed, in both
// modes, each node only its own values.
func TestServerOperationLimits(t *testing.T) {
	srv := startNodeServer(t, "NO_SECURITY=1", "PLANT=1,1,25", "MAX_NODES_PER_READ=10", "MAX_MONITORED_ITEMS_PER_CALL=10")
	nodes := plantNodes(25)
	for _, mode := range []string{ModeSubscribe, ModePoll} {
		t.Run(mode, func(t *testing.T) {
			col := newCollector()
			src := runSource(t, Config{
				Name: "limits", Endpoint: srv.Endpoint, Nodes: nodes, Mode: mode,
				PollInterval: 100 * time.Millisecond, PublishingInterval: 100 * time.Millisecond,
			}, col)
			// Every node once from the first read, and once more from its
			// monitored item's first notification or the next poll.
			for _, initial := range []bool{true, false} {
				for i, n := range nodes {
					s, _ := col.waitFor(t, 0, 30*time.Second, n, func(s connectors.Sample) bool {
						return s.Address == n && s.Initial == initial
					})
					if !s.Good || s.Value != float64(i) {
						t.Fatalf("%s (initial %v): value %v good %v quality %q, want %d", n, initial, s.Value, s.Good, s.Quality, i)
					}
				}
			}
			// Nothing else reached a node: node-opcua sends client handle 0
			// back for an item created with 0 or 0xFFFFFFFF, which once
			// delivered the server-time heartbeat as the first node's value.
			for _, s := range col.all() {
				if i := slices.Index(nodes, s.Address); i < 0 || s.Value != float64(i) {
					t.Errorf("sample %s = %v (%T)", s.Address, s.Value, s.Value)
				}
			}
			if src.perRead != 10 || src.perMonitor != 10 {
				t.Errorf("per request: read %d, monitor %d; want the server's 10 and 10", src.perRead, src.perMonitor)
			}
		})
	}
}

// TestSecureChannelRenewal: the secure channel's token expires (here after
// 4 s; in the field after an hour) and gopcua renews it at 75 % of its
// lifetime. Over three renewals, encrypted and not, the counter keeps
// arriving on the one session, without a reconnect. (node-opcua grants the
// 4 s asked for: with OPC_DEBUG=debug gopcua logs tokens 1 to 4.)
//
// gopcua v0.8.0 races with itself during a renewal (its send path adds to
// the pending-request WaitGroup outside the lock the renewal waits under;
// upstream issue gopcua/opcua#882, also in v0.9.0): the race detector
// reports it in about one run of ten. So this test is skipped under -race,
// and `make test` runs it once more without.
func TestSecureChannelRenewal(t *testing.T) {
	if raceEnabled {
		t.Skip("gopcua's own renewal race (gopcua/opcua#882); `make test` runs this test without -race")
	}
	srv := startNodeServer(t, "NO_SECURITY=1")
	for _, tc := range []struct{ policy, mode string }{
		{"None", "None"},
		{"Basic256Sha256", "SignAndEncrypt"},
	} {
		t.Run(tc.policy, func(t *testing.T) {
			t.Parallel()
			col := newCollector()
			src := runSource(t, Config{
				Name: "renew", Endpoint: srv.Endpoint, SecurityPolicy: tc.policy, SecurityMode: tc.mode,
				DataDir: t.TempDir(), Nodes: []string{secureCounter},
				PublishingInterval: 100 * time.Millisecond, HeartbeatTimeout: 2 * time.Second,
				channelLifetime: 4 * time.Second,
			}, col)
			time.Sleep(11 * time.Second) // three renewals
			last, _ := col.waitFor(t, max(0, col.len()-1), time.Second, "the counter", func(s connectors.Sample) bool {
				return s.Address == secureCounter
			})
			if age := time.Since(last.ReceiveTime); age > 2*time.Second {
				t.Errorf("last value %s ago", age)
			}
			if st := src.Stats(); st.SessionsCreated != 1 || st.Reconnects != 0 {
				t.Errorf("sessions %d, reconnects %d (last error %q): renewal broke the channel", st.SessionsCreated, st.Reconnects, st.LastError)
			}
		})
	}
}

// TestNodeOPCUARestart: node-opcua killed (-9) and started again on the
// same port, with its counter back at 41 — a PLC power-cycled. The source
// sees the loss, reconnects with one new session, reads the value again
// (marked initial) and gets notifications from the new subscription.
func TestNodeOPCUARestart(t *testing.T) {
	port := strconv.Itoa(freePort(t))
	srv := startNodeServer(t, "NO_SECURITY=1", "PORT="+port)
	col := newCollector()
	src := runSource(t, Config{
		Endpoint: srv.Endpoint, Nodes: []string{secureCounter},
		PublishingInterval: 100 * time.Millisecond, HeartbeatTimeout: 3 * time.Second,
	}, col)
	_, _ = col.waitFor(t, 0, 15*time.Second, "a notification", func(s connectors.Sample) bool {
		return s.Address == secureCounter && !s.Initial
	})
	if err := srv.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for src.State() == connectors.StateConnected && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if src.State() == connectors.StateConnected {
		t.Fatal("source still connected 10 s after node-opcua was killed")
	}
	from := col.len()
	restarted := time.Now()
	back := startNodeServer(t, "NO_SECURITY=1", "PORT="+port)
	if back.Endpoint != srv.Endpoint {
		t.Fatalf("restarted on %s, want %s", back.Endpoint, srv.Endpoint)
	}
	s, i := col.waitFor(t, from, 20*time.Second, "the counter read again", func(s connectors.Sample) bool {
		return s.Address == secureCounter
	})
	// The new server counts from 41, one more every 200 ms.
	if v, ok := s.Value.(int64); !s.Initial || !ok || v < 41 || v > 41+int64(time.Since(restarted)/(200*time.Millisecond))+2 {
		t.Errorf("first value after the restart %+v, want the new counter (from 41) marked initial", s)
	}
	_, _ = col.waitFor(t, i+1, 10*time.Second, "a notification after the restart", func(s connectors.Sample) bool {
		return s.Address == secureCounter && !s.Initial
	})
	t.Logf("values again %s after node-opcua was started", time.Since(restarted).Round(time.Millisecond))
	if st := src.Stats(); st.SessionsCreated != 2 || st.Reconnects != 1 {
		t.Errorf("stats %+v, want exactly 2 sessions", st)
	}
}

// TestPollingFallback: a server that refuses subscriptions altogether, or has
// room for only two monitored items, still delivers every node: what it
// cannot monitor is polled, and the source says how many (Stats.Polled).
func TestPollingFallback(t *testing.T) {
	for _, tc := range []struct {
		name   string
		env    string
		polled int
	}{
		{"no subscriptions", "NO_SUBSCRIPTIONS=1", 5},
		{"three monitored items", "MAX_MONITORED_ITEMS_PER_SUBSCRIPTION=3", 3}, // the server clock and two nodes
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := startNodeServer(t, "NO_SECURITY=1", "PLANT=1,1,5", tc.env)
			nodes := plantNodes(5)
			col := newCollector()
			src := runSource(t, Config{
				Endpoint: srv.Endpoint, Nodes: nodes,
				PublishingInterval: 100 * time.Millisecond, PollInterval: 100 * time.Millisecond,
			}, col)
			// Every node keeps coming after the first read: by notification
			// or by polling.
			for i, n := range nodes {
				from := 0
				for range 3 {
					s, at := col.waitFor(t, from, 15*time.Second, n, func(s connectors.Sample) bool {
						return s.Address == n && !s.Initial
					})
					if !s.Good || s.Value != float64(i) {
						t.Fatalf("%s: %v good %v quality %q", n, s.Value, s.Good, s.Quality)
					}
					from = at + 1
					if tc.polled < len(nodes) && i < 2 {
						break // monitored: one notification, values do not change
					}
				}
			}
			if st := src.Stats(); st.Polled != tc.polled || st.Reconnects != 0 {
				t.Errorf("stats %+v: want %d nodes polled, no reconnect", st, tc.polled)
			}
		})
	}
}

// plantNodes are the first n tags of the node-opcua fixture's first
// machine (PLANT=1,1,n).
func plantNodes(n int) []string {
	var nodes []string
	for i := range n {
		nodes = append(nodes, fmt.Sprintf("nsu=urn:plantedge:test;s=L0.M0.T%d", i))
	}
	return nodes
}

// TestSubscriptionAskedAgainAfterARefusal: a server that refuses
// subscriptions for a while (its slots held by an old session after a
// reconnect) is polled meanwhile and asked again: once it takes one, the
// nodes are monitored again — in a new session, as gopcua stops a
// session's publishing after a refused request, but without a failure
// (the OPC UA probe: the session was dropped 0.1-0.4 s after the switch
// and logged as lost).
func TestSubscriptionAskedAgainAfterARefusal(t *testing.T) {
	srv := startNodeServer(t, "NO_SECURITY=1", "PLANT=1,1,3", "NO_SUBSCRIPTIONS_MS=1500")
	nodes := plantNodes(3)
	col := newCollector()
	var logs lockedLog
	src := runSource(t, Config{
		Endpoint: srv.Endpoint, Nodes: nodes,
		PublishingInterval: 100 * time.Millisecond, PollInterval: 100 * time.Millisecond,
		pollRetry: 500 * time.Millisecond, Logger: slog.New(slog.NewTextHandler(&logs, nil)),
	}, col)
	deadline := time.Now().Add(20 * time.Second)
	for src.Stats().Polled != 3 {
		if time.Now().After(deadline) {
			t.Fatalf("never polled while subscriptions are refused: %+v", src.Stats())
		}
		time.Sleep(20 * time.Millisecond)
	}
	for src.Stats().Polled != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("still polling once the server takes subscriptions: %+v", src.Stats())
		}
		time.Sleep(20 * time.Millisecond)
	}
	// The subscription lasts (the fixture's values do not change).
	time.Sleep(2 * time.Second)
	if st := src.Stats(); st.SessionsCreated > 2 || st.LastError != "" || st.Polled != 0 || src.State() != connectors.StateConnected {
		t.Errorf("stats %+v, state %s: want at most a second session, no error, connected", st, src.State())
	}
	if logs := logs.String(); strings.Contains(logs, "session failed") || strings.Count(logs, "server refuses subscriptions") != 1 {
		t.Errorf("log:\n%s", logs)
	}
}

// TestSmallReceiveBufferServer: a server that takes chunks of 8,192 bytes
// but sends chunks as large as the client allows (OPC UA negotiates the two
// directions apart). gopcua takes the server's receive size as its own, so
// without asking for small chunks every message over 8 KiB ended the
// connection (browse: "read values: EOF"). Browse and a source with 400
// nodes (reads of ~10 KiB) must work.
func TestSmallReceiveBufferServer(t *testing.T) {
	srv := startNodeServer(t, "NO_SECURITY=1", "PLANT=1,2,200", "SMALL_RECEIVE_BUFFER=1")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var out bytes.Buffer
	if err := Browse(ctx, srv.Endpoint, BrowseOptions{Node: "nsu=urn:plantedge:test;s=L0", Depth: 2}, &out); err != nil {
		t.Fatalf("browse: %v", err)
	}
	if n := strings.Count(out.String(), "\n"); n != 1+2+400 {
		t.Errorf("browse printed %d lines, want 403", n)
	}
	var nodes []string
	for m := range 2 {
		for i := range 200 {
			nodes = append(nodes, fmt.Sprintf("nsu=urn:plantedge:test;s=L0.M%d.T%d", m, i))
		}
	}
	col := newCollector()
	runSource(t, Config{Endpoint: srv.Endpoint, Nodes: nodes, PublishingInterval: 100 * time.Millisecond}, col)
	last := nodes[len(nodes)-1]
	s, _ := col.waitFor(t, 0, 20*time.Second, last, func(s connectors.Sample) bool { return s.Address == last && s.Initial })
	if !s.Good || s.Value != float64(199) {
		t.Errorf("%s = %v (good %v)", last, s.Value, s.Good)
	}
}

// A node the server does not know is refused as a monitored item by
// node-opcua: it is listed in Stats.Refused (for status) and tried again,
// while the others flow.
func TestRefusedNodeListed(t *testing.T) {
	srv := startNodeServer(t, "NO_SECURITY=1", "PLANT=1,1,2")
	col := newCollector()
	src := runSource(t, Config{
		Name: "refusing", Endpoint: srv.Endpoint, PublishingInterval: 100 * time.Millisecond,
		Nodes: []string{"nsu=urn:plantedge:test;s=L0.M0.T0", "nsu=urn:plantedge:test;s=L0.M0.Nope"},
	}, col)
	_, _ = col.waitFor(t, 0, 15*time.Second, "the known node", func(s connectors.Sample) bool {
		return s.Address == "nsu=urn:plantedge:test;s=L0.M0.T0" && s.Good
	})
	waitUntil(t, 10*time.Second, func() bool { return len(src.Stats().Refused) == 1 })
	if r := src.Stats().Refused[0]; r.Node != "nsu=urn:plantedge:test;s=L0.M0.Nope" || !strings.Contains(r.Status, "BadNodeIdUnknown") {
		t.Errorf("Refused = %+v", src.Stats().Refused)
	}
}

func waitUntil(t *testing.T, d time.Duration, ok func() bool) {
	t.Helper()
	for end := time.Now().Add(d); !ok(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatal("timed out")
		}
	}
}

// lockedLog is a log destination safe for the source's goroutines.
type lockedLog struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// A server that takes a subscription but monitors nothing, not even its
// clock (no room for monitored items, for a while): the empty subscription
// is cancelled, the nodes are polled, and offered again after the poll
// retry — a new subscription in the same session, after the cancel
// (FIELD-NOTES: gopcua's own server reuses a cancelled subscription's id;
// node-opcua does not) — which then delivers: polling ends, the session
// lasts, nothing is logged as failed.
func TestNothingMonitoredIsPolledThenSubscribedAgain(t *testing.T) {
	srv := startNodeServer(t, "NO_SECURITY=1", "PLANT=1,1,3", "TICK_MS=100", "NO_MONITORING_MS=2500")
	nodes := plantNodes(3)
	col := newCollector()
	var logs lockedLog
	src := runSource(t, Config{
		Endpoint: srv.Endpoint, Nodes: nodes,
		PublishingInterval: 100 * time.Millisecond, PollInterval: 100 * time.Millisecond,
		pollRetry: 500 * time.Millisecond, Logger: slog.New(slog.NewTextHandler(io.MultiWriter(&logs, testWriter{t}), nil)),
	}, col)
	waitUntil(t, 20*time.Second, func() bool { return src.Stats().Polled == 3 })
	waitUntil(t, 20*time.Second, func() bool { return src.Stats().Polled == 0 })
	// Monitored now: the ticking tag's values keep coming by notification.
	from := col.len()
	s, at := col.waitFor(t, from, 10*time.Second, "a ticking value", func(s connectors.Sample) bool { return s.Address == nodes[0] && s.Good })
	v, _ := s.Value.(float64)
	col.waitFor(t, at+1, 10*time.Second, "three ticks later", func(s connectors.Sample) bool {
		w, ok := s.Value.(float64)
		return s.Address == nodes[0] && s.Good && ok && w >= v+3
	})
	if st := src.Stats(); st.SessionsCreated != 1 || st.LastError != "" || st.Polled != 0 {
		t.Errorf("stats %+v: want the one session, no error, nothing polled", st)
	}
	// Said once each: the refusal when it began, the end when nodes are
	// monitored — not at each subscription the server took while it still
	// monitored nothing (2.5 s of refusals, asked every 0.5 s: the end was
	// said at each, "no longer polling", and polling went on).
	if out := logs.String(); strings.Count(out, "server monitors none of the nodes") != 1 ||
		strings.Count(out, "no longer polling") != 1 || strings.Contains(out, "session failed") {
		t.Errorf("log:\n%s", out)
	}
}
