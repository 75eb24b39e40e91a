package agent

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"github.com/plantedge/plantedge/agent/config"
	"github.com/plantedge/plantedge/buffer"
	"github.com/plantedge/plantedge/odoo"
)

// fakeOdoo answers the forwarder's connection attempts from memory (no
// network, so the test runs on synctest's fake clock) and records when each
// attempt came.
type fakeOdoo struct {
	mu       sync.Mutex
	attempts []time.Time
	answer   func(r *http.Request) (*http.Response, error)
}

func (f *fakeOdoo) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.URL.Path == "/web/version" { // an attempt starts with the version probe
		f.mu.Lock()
		f.attempts = append(f.attempts, time.Now())
		f.mu.Unlock()
	}
	var id json.RawMessage
	if r.Body != nil {
		body, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(body))
		var req struct {
			ID json.RawMessage `json:"id"`
		}
		if json.Unmarshal(body, &req) == nil {
			id = req.ID
		}
	}
	resp, err := f.answer(r)
	if err != nil || len(id) == 0 || resp.Body == nil {
		return resp, err
	}
	// The answers are written with "id":1; Odoo echoes the request's id,
	// and the client checks it.
	out, _ := io.ReadAll(resp.Body)
	resp.Body = io.NopCloser(bytes.NewReader(bytes.Replace(out, []byte(`"id":1,`), append(append([]byte(`"id":`), id...), ','), 1)))
	return resp, nil
}

func (f *fakeOdoo) gaps() []time.Duration {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []time.Duration
	for i := 1; i < len(f.attempts); i++ {
		out = append(out, f.attempts[i].Sub(f.attempts[i-1]))
	}
	return out
}

func respond(status int, body string, hdr ...string) (*http.Response, error) {
	h := http.Header{"Content-Type": {"application/json"}}
	for i := 0; i+1 < len(hdr); i += 2 {
		h.Set(hdr[i], hdr[i+1])
	}
	return &http.Response{StatusCode: status, Header: h, Body: io.NopCloser(strings.NewReader(body))}, nil
}

// runForwarder runs only the forwarder of an agent whose Odoo is fake, for
// d of fake time, and returns the gaps between its connection attempts.
// With kickEvery > 0 a flush is asked for that often (a script looping
// `plantedge flush`, or flush's own polling).
func runForwarder(t *testing.T, backoffMax string, answer func(*http.Request) (*http.Response, error), d, kickEvery time.Duration) []time.Duration {
	gaps, _ := runForwarderLink(t, backoffMax, answer, d, kickEvery)
	return gaps
}

// oneMQTTMachine is the sources and machines of a test config: one
// machine on a broker nobody runs.
const oneMQTTMachine = `mqtt: [{ name: b, url: "tcp://127.0.0.1:1", client_id: c }]
machines: [{ id: m1, workcenter: W, good_count: { mqtt: { broker: b, topic: t, field: good } } }]
`

// testConfig loads a config of site t, data in a fresh directory, an Odoo
// that is not there (its key in the environment), and rest appended.
func testConfig(t *testing.T, rest string) *config.Config {
	t.Helper()
	dir := t.TempDir()
	yaml := fmt.Sprintf("site: t\ndata_dir: %q\nodoo: { url: \"http://odoo.invalid\", database: odoo, username: bot }\n", dir) + rest
	path := filepath.Join(dir, "plantedge.yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv(config.EnvAPIKey, strings.Repeat("a", 40))
	return cfg
}

// runForwarderLink is runForwarder that also returns what status would show
// of the Odoo link at the end.
func runForwarderLink(t *testing.T, backoffMax string, answer func(*http.Request) (*http.Response, error), d, kickEvery time.Duration) (gaps []time.Duration, link linkState) {
	t.Helper()
	cfg := testConfig(t, fmt.Sprintf("forward: { backoff_max: %s }\n", backoffMax)+oneMQTTMachine)
	fake := &fakeOdoo{answer: answer}
	a, err := New(cfg, Options{OdooHTTPClient: &http.Client{Transport: fake}})
	if err != nil {
		t.Fatal(err)
	}
	inBubble(t, a, func(ctx context.Context) {
		go func() {
			for kickEvery > 0 {
				select {
				case <-ctx.Done():
					return
				case <-time.After(kickEvery):
					a.Flush()
				}
			}
		}()
		time.Sleep(d)
		link = a.fwd.linkSnapshot()
	})
	return fake.gaps(), link
}

// inBubble runs a's forwarder, with its buffer open, on synctest's fake
// clock while during runs, then stops it (and waits for every goroutine
// during started to end with ctx).
func inBubble(t *testing.T, a *Agent, during func(ctx context.Context)) {
	synctest.Test(t, func(t *testing.T) {
		buf, err := buffer.Open(a.cfg.Load().BufferPath(), buffer.Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer buf.Close()
		a.buf = buf
		a.fwd = newForwarder(a)
		a.opened.Store(true)
		a.beat()
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); a.fwd.run(ctx) }()
		during(ctx)
		cancel()
		<-done
	})
}

// Odoo unreachable: attempts back off exponentially with full jitter, each
// wait at most the ceiling (1 s, 2 s, 4 s, ... capped at backoff_max), and
// never faster than that on average — no reconnect storm.
func TestForwarderBacksOffWithFullJitter(t *testing.T) {
	down := func(*http.Request) (*http.Response, error) { return nil, errors.New("connect: connection refused") }
	gaps := runForwarder(t, "8s", down, 10*time.Minute, 0)
	if len(gaps) < 20 {
		t.Fatalf("only %d attempts in 10 minutes with an 8 s cap", len(gaps)+1)
	}
	var sum time.Duration
	ceil := time.Second
	for i, g := range gaps {
		if g > ceil+time.Millisecond {
			t.Errorf("wait %d was %s, above its ceiling %s", i, g, ceil)
		}
		ceil = min(8*time.Second, 2*ceil)
		sum += g
	}
	// Full jitter waits average half the ceiling: 10 minutes at an 8 s cap
	// is about 150 attempts; a loop without backoff would make millions.
	if n := len(gaps) + 1; n > 400 {
		t.Errorf("%d attempts in 10 minutes: backoff not applied", n)
	}
	t.Logf("%d attempts in 10 minutes, mean wait %s", len(gaps)+1, sum/time.Duration(len(gaps)))
}

// refused is an Odoo 17 that answers every login with false (a refused key).
func refused(r *http.Request) (*http.Response, error) {
	if r.URL.Path == "/web/version" {
		return respond(404, "not found")
	}
	body, _ := io.ReadAll(r.Body)
	if strings.Contains(string(body), `"authenticate"`) {
		return respond(200, `{"jsonrpc":"2.0","id":1,"result":false}`)
	}
	return respond(200, `{"jsonrpc":"2.0","id":1,"result":{"server_version":"17.0","server_version_info":[17,0,0,"final",0,""]}}`)
}

// A refused key (authenticate returns false): never retried sooner than
// forward.auth_backoff (60 s), so the agent cannot trip Odoo's lockout of
// 5 failed logins from one address.
func TestForwarderAuthFailureWaitsAMinute(t *testing.T) {
	gaps := runForwarder(t, "5s", refused, 40*time.Minute, 0)
	if len(gaps) == 0 || len(gaps) > 6 {
		t.Fatalf("%d logins in 40 minutes after the key was refused", len(gaps)+1)
	}
	// After 5 failed logins Odoo refuses every login from the address (its
	// users' too) for a minute after each further failure: the waits double
	// from a minute up to 16.
	want := time.Minute
	for i, g := range gaps {
		if g < want {
			t.Errorf("login %d came %s after a refused one (want >= %s)", i+2, g, want)
		}
		want = min(2*want, 16*time.Minute)
	}
	t.Logf("waits between refused logins: %v", gaps)
}

// Flush asked for every half second (a script looping plantedge flush)
// while the key is refused: a flush is a technician's "try now" (the bot
// user unarchived), so it cuts the doubled waits — but never below
// forward.auth_backoff after a refused login: after 10 failed logins Odoo
// refuses every login from the address (its users' too) for a minute
// after each further failure, and one a minute never meets that.
func TestForwarderFlushCannotHammerARefusedLogin(t *testing.T) {
	gaps := runForwarder(t, "5s", refused, 8*time.Minute, 500*time.Millisecond)
	for i, g := range gaps {
		if g < time.Minute || g > time.Minute+2*time.Second {
			t.Errorf("login %d came %s after a refused one with flush asking (want a minute after it)", i+2, g)
		}
	}
	if len(gaps) < 6 {
		t.Errorf("%d logins in 8 minutes", len(gaps)+1)
	}
	t.Logf("waits between refused logins with flush looping: %v", gaps)
}

// Flush looping while Odoo is down: about one attempt a second, no more.
func TestForwarderFlushLoopIsNoStorm(t *testing.T) {
	down := func(*http.Request) (*http.Response, error) { return nil, errors.New("connect: connection refused") }
	gaps := runForwarder(t, "5m", down, 2*time.Minute, 100*time.Millisecond)
	// Without the floor that would be 1,200 attempts; the backoff alone
	// (up to 5 minutes) would give about 10.
	if n := len(gaps) + 1; n < 60 || n > 130 {
		t.Errorf("%d attempts in 2 minutes with flush asking every 0.1 s, want about one a second", n)
	}
}

// A 503 with Retry-After waits that long even when the backoff is shorter.
func TestForwarderHonoursRetryAfter(t *testing.T) {
	busy := func(*http.Request) (*http.Response, error) {
		return respond(503, "<html>busy</html>", "Retry-After", "45")
	}
	gaps := runForwarder(t, "2m", busy, 10*time.Minute, 0)
	if len(gaps) < 5 {
		t.Fatalf("%d retries in 10 minutes", len(gaps))
	}
	// At least 45 s, and spread over the next 11.25 s: a fleet told the
	// same delay must not come back as one. (From the 7th retry on, the
	// backoff's own ceiling, 64 s and up, may be longer.)
	for i, g := range gaps {
		if g < 45*time.Second || i < 6 && g >= 45*time.Second+11250*time.Millisecond {
			t.Errorf("retry %d after %s, Retry-After said 45s", i+1, g)
		}
	}
	if slices.Min(gaps) == slices.Max(gaps) {
		t.Errorf("every retry after the same %s: no jitter on Retry-After", gaps[0])
	}
	// A flush cannot cut it short (only the random part), and status says
	// so: Odoo asked for the wait.
	gaps, link := runForwarderLink(t, "2m", busy, 5*time.Minute, 700*time.Millisecond)
	for i, g := range gaps {
		if g < 45*time.Second {
			t.Errorf("retry %d after %s with flush looping, Retry-After said 45s", i+1, g)
		}
	}
	if link.State != "offline" || link.RetryAfter.IsZero() {
		t.Errorf("link %+v: the Retry-After wait not shown", link)
	}
	// A Retry-After longer than backoff_max is still honoured (5 minutes
	// with backoff_max 1m), and one of a day (a maintenance page) is asked
	// again within half an hour, not exactly then either.
	for _, c := range []struct {
		retryAfter, backoffMax string
		run, lo, hi            time.Duration
		minRetries             int
	}{
		{"300", "1m", 30 * time.Minute, 5 * time.Minute, 5*time.Minute + 31*time.Second, 3},
		{"86400", "2m", 3 * time.Hour, 22 * time.Minute, 30*time.Minute + time.Second, 4},
	} {
		answer := func(*http.Request) (*http.Response, error) {
			return respond(503, "<html>maintenance</html>", "Retry-After", c.retryAfter)
		}
		gaps = runForwarder(t, c.backoffMax, answer, c.run, 0)
		if len(gaps) < c.minRetries {
			t.Fatalf("Retry-After %s: %d retries in %s: %v", c.retryAfter, len(gaps), c.run, gaps)
		}
		for i, g := range gaps {
			if g < c.lo || g > c.hi {
				t.Errorf("Retry-After %s, backoff_max %s: retry %d after %s, want %s to %s", c.retryAfter, c.backoffMax, i+1, g, c.lo, c.hi)
			}
		}
	}
	if slices.Min(gaps) == slices.Max(gaps) {
		t.Errorf("every retry after the same %s", gaps[0])
	}
}

// A call Odoo does not answer within odoo.timeout may still hold one of its
// workers: the next attempt waits at least as long again (not the short
// first backoff step), spread over half of it. (A write that may still
// commit holds the next call back until odoo.request_limit has passed:
// TestUnansweredWriteCommittingLateIsNotOvertaken and its neighbours.)
func TestForwarderWaitsAfterATimeout(t *testing.T) {
	hung := func(r *http.Request) (*http.Response, error) {
		<-r.Context().Done()
		return nil, r.Context().Err()
	}
	gaps := runForwarder(t, "5m", hung, 10*time.Minute, 0)
	if len(gaps) < 3 {
		t.Fatalf("%d attempts in 10 minutes", len(gaps)+1)
	}
	for i, g := range gaps {
		// 30 s unanswered, then at least 30 s more.
		if g < time.Minute {
			t.Errorf("attempt %d came %s after one that timed out (want >= 1m)", i+2, g)
		}
	}
}

// An odoo.url with a wrong path (every request answers a 404 page), or
// an Odoo 17 asked for JSON-2 (404 in JSON, from Odoo), is no refused API
// key: status shows Odoo offline with the 404, not auth_failed (it said
// "once a new API key is in place").
func TestWrongOdooURLIsNotAnAuthFailure(t *testing.T) {
	page := func(r *http.Request) (*http.Response, error) { return respond(404, "<html>404 page not found</html>") }
	odoo404 := func(r *http.Request) (*http.Response, error) {
		return respond(404, `{"name":"werkzeug.exceptions.NotFound","message":"404 Not Found"}`)
	}
	for name, answer := range map[string]func(*http.Request) (*http.Response, error){"page": page, "odoo": odoo404} {
		_, link := runForwarderLink(t, "5m", answer, 5*time.Minute, 0)
		if link.State != "offline" || !strings.Contains(link.LastError, "404") || link.KeyExpired {
			t.Errorf("%s: link %+v, want offline with the 404", name, link)
		}
	}
}

// forward.rate counts HTTP requests: an operation of several requests (a
// login is two) does not get them all at once.
func TestForwarderRateCountsRequests(t *testing.T) {
	var mu sync.Mutex
	var at []time.Time
	answer := func(r *http.Request) (*http.Response, error) {
		mu.Lock()
		at = append(at, time.Now())
		mu.Unlock()
		return refused(r)
	}
	runForwarder(t, "5s", answer, 5*time.Minute, 0)
	if len(at) < 4 {
		t.Fatalf("%d requests", len(at))
	}
	for i := 1; i < len(at); i++ {
		if g := at[i].Sub(at[i-1]); g < 200*time.Millisecond { // the default rate, 5/s
			t.Errorf("request %d came %s after the one before (rate 5/s)", i+1, g)
		}
	}
}

func TestSpread(t *testing.T) {
	const d = 2 * time.Second
	var sum time.Duration
	seen := map[time.Duration]bool{}
	for range 1000 {
		w := spread(d)
		if w < d/2 || w >= 3*d/2 {
			t.Fatalf("spread(%s) = %s", d, w)
		}
		sum += w
		seen[w] = true
	}
	if mean := sum / 1000; mean < 1900*time.Millisecond || mean > 2100*time.Millisecond || len(seen) < 900 {
		t.Errorf("mean %s over %d distinct waits, want about %s and spread", mean, len(seen), d)
	}
}

// Odoo locks the agent's address out after the key worked (someone else's
// failed logins): object calls say "Too many login failures", authenticate
// answers a plain false. The agent keeps its session, so later attempts
// ask with an object call again and never read the lockout as an expired
// key.
func TestForwarderLockoutIsNoExpiredKey(t *testing.T) {
	var logins int
	gaps, link := runForwarderLink(t, "5s", lockoutOdoo(&logins, nil), 10*time.Minute, 0)
	if link.State != "auth_failed" || link.KeyExpired || !strings.Contains(link.LastError, "Too many login failures") {
		t.Errorf("after %d attempts (%v): link %+v, want auth_failed by the lockout, not an expired key", len(gaps)+1, gaps, link)
	}
	if logins != 1 {
		t.Errorf("%d logins: the session should be kept through a lockout", logins)
	}
}

// lockoutOdoo answers as an Odoo 17 that took the agent's first login
// (counted in logins) and then locked its address out: object calls say
// "Too many login failures" (each told to call, if not nil), authenticate
// answers a plain false.
func lockoutOdoo(logins *int, call func()) func(r *http.Request) (*http.Response, error) {
	return func(r *http.Request) (*http.Response, error) {
		if r.URL.Path == "/web/version" {
			return respond(404, "not found")
		}
		body, _ := io.ReadAll(r.Body)
		switch {
		case strings.Contains(string(body), `"authenticate"`):
			*logins++
			if *logins == 1 {
				return respond(200, `{"jsonrpc":"2.0","id":1,"result":2}`)
			}
			return respond(200, `{"jsonrpc":"2.0","id":1,"result":false}`)
		case strings.Contains(string(body), `"execute_kw"`):
			if call != nil {
				call()
			}
			return respond(200, `{"jsonrpc":"2.0","id":1,"error":{"code":200,"message":"Odoo Server Error","data":{"name":"odoo.exceptions.AccessDenied","message":"Too many login failures, please wait a bit before trying again.","arguments":[],"context":{},"debug":""}}}`)
		}
		return respond(200, `{"jsonrpc":"2.0","id":1,"result":{"server_version":"17.0","server_version_info":[17,0,0,"final",0,""]}}`)
	}
}

// forward.rate is taken before every HTTP request, and a login on Odoo
// 17/18 is three requests, a scrap booking three or four. At a low rate (a
// fleet sharing Odoo Online's ~1 call/s: 0.02/s each) the waits between
// them must still feed the watchdog (WatchdogSec 30 s + odoo.timeout 30 s),
// or systemd restarts the agent in the middle of every login.
func TestForwarderLowRateKeepsTheWatchdogFed(t *testing.T) {
	cfg := testConfig(t, "forward: { rate: 0.02 }\n"+oneMQTTMachine)
	answer := func(r *http.Request) (*http.Response, error) {
		if r.URL.Path == "/web/version" {
			return respond(404, "not found")
		}
		body, _ := io.ReadAll(r.Body)
		switch {
		case strings.Contains(string(body), `"authenticate"`):
			return respond(200, `{"jsonrpc":"2.0","id":1,"result":7}`)
		case strings.Contains(string(body), `"version"`):
			return respond(200, `{"jsonrpc":"2.0","id":1,"result":{"server_version":"17.0"}}`)
		}
		return respond(200, `{"jsonrpc":"2.0","id":1,"result":[]}`)
	}
	a, err := New(cfg, Options{OdooHTTPClient: &http.Client{Transport: &fakeOdoo{answer: answer}}})
	if err != nil {
		t.Fatal(err)
	}
	const watchdog = 30 * time.Second // WatchdogSec in packaging/plantedge.service
	silent := watchdog + cfg.Odoo.Timeout.D()
	var longest time.Duration
	inBubble(t, a, func(context.Context) {
		for range 600 { // 10 minutes, sampled every second
			time.Sleep(time.Second)
			longest = max(longest, a.sinceBeat())
		}
	})
	t.Logf("longest silence of the forwarding loop: %s (watchdog stops pinging at %s)", longest, silent)
	if longest >= silent {
		t.Errorf("the loop was silent %s at forward.rate 0.02: the watchdog stops pinging after %s and systemd restarts the agent", longest, silent)
	}
}

// Failures that come and go by themselves are logged as a warning; those
// that last until a person acts, at once as an error (the self-probe: a
// certificate that does not verify, https to plain http, a wrong path and
// a proxy's 401 were logged at WARN, as if the WAN were down).
func TestOutageLike(t *testing.T) {
	refused := func() error {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := l.Addr().String()
		l.Close()
		_, err = net.Dial("tcp", addr)
		return err
	}()
	for _, tc := range []struct {
		name string
		err  error
		want bool
	}{
		{"connection refused", &odoo.Error{Op: "web.version", Err: refused}, true},
		{"reset", &odoo.Error{Op: "x", Err: fmt.Errorf("read: %w", syscall.ECONNRESET)}, true},
		{"EOF", &odoo.Error{Op: "x", Err: io.EOF}, true},
		// The transport's read side closed the connection as Odoo went
		// away while its write side still sent the request (CI: the full
		// disk test blamed a full disk on Odoo's configuration).
		{"closed under a write", &odoo.Error{Op: "web.version", Err: &url.Error{Op: "Post", URL: "http://erp/web/version",
			Err: &net.OpError{Op: "write", Net: "tcp", Err: net.ErrClosed}}}, true},
		{"gateway 502", &odoo.Error{Op: "x", Status: 502}, true},
		{"maintenance 503", &odoo.Error{Op: "x", Status: 503}, true},
		{"too many requests", &odoo.Error{Op: "x", Status: 429}, true},
		{"dns not answering", &net.DNSError{Err: "i/o timeout", Name: "erp", IsTimeout: true}, true},
		{"wrong path", &odoo.Error{Op: "x", Status: 404}, false},
		{"proxy login", &odoo.Error{Op: "x", Status: 401}, false},
		{"certificate", &odoo.Error{Op: "x", Err: &url.Error{Op: "Post", URL: "https://erp", Err: x509.UnknownAuthorityError{}}}, false},
		{"https to http", &odoo.Error{Op: "x", Err: errors.New("http: server gave HTTP response to HTTPS client")}, false},
		{"no such host", &net.DNSError{Err: "no such host", Name: "erpp", IsNotFound: true}, false},
	} {
		if got := outageLike(tc.err); got != tc.want {
			t.Errorf("%s (%v): outageLike %v, want %v", tc.name, tc.err, got, tc.want)
		}
	}
}

// Status and /metrics reuse the last scan of the pending counts; once a
// scan is slow (a backlog of millions), a stale result is answered at once
// and the next scan runs in the background — a forget meanwhile (dead
// letters moved) leaves its result due for another — and none starts once
// the buffer is closing.
func TestPendingCountsRescanInTheBackgroundWhenSlow(t *testing.T) {
	buf, err := buffer.Open(filepath.Join(t.TempDir(), "buffer.db"), buffer.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer buf.Close()
	a := &Agent{buf: buf}
	add := func(n int) {
		t.Helper()
		recs := make([]buffer.Record, n)
		for i := range recs {
			recs[i] = buffer.Record{Lane: buffer.LaneCounts, Key: countKey("m1", sigGood), Data: mustJSON(countRecord{Delta: 1})}
		}
		if _, err := buf.Append(context.Background(), recs); err != nil {
			t.Fatal(err)
		}
	}
	good := func() float64 {
		p, _, _, err := a.pendingCounts()
		if err != nil {
			t.Fatal(err)
		}
		return p["m1"].good
	}
	add(10)
	if g := good(); g != 10 {
		t.Fatalf("first scan: %g", g)
	}
	add(5)
	if g := good(); g != 10 {
		t.Fatalf("within the second: %g, want the last scan's 10", g)
	}
	a.forgetPendingCounts()
	if g := good(); g != 15 {
		t.Fatalf("a quick scan after a forget is done at once: %g", g)
	}
	// Slow scans: the last result at once, the next scan in the background.
	a.pendingMu.Lock()
	a.pendingTook, a.pendingAt = time.Second, time.Now().Add(-time.Minute)
	a.pendingMu.Unlock()
	add(5)
	if g := good(); g != 15 {
		t.Errorf("slow scans: %g, want the last result 15 at once", g)
	}
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(time.Millisecond) {
		if g := good(); g == 20 {
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("the background scan did not come: %g", g)
		}
	}
	// A scan that began before a forget (dead letters moved meanwhile)
	// leaves its result due for another.
	add(2)
	a.pendingMu.Lock()
	gen := a.pendingGen
	a.pendingMu.Unlock()
	a.forgetPendingCounts()
	a.bg.Add(1)
	a.rescanPending(gen)
	a.pendingMu.Lock()
	val, at := a.pendingVal["m1"].good, a.pendingAt
	a.pendingMu.Unlock()
	if val != 22 || !at.IsZero() {
		t.Errorf("a scan from before a forget: %g at %v, want 22 and due again", val, at)
	}
	a.stopPendingScans()
	add(1)
	a.pendingMu.Lock()
	a.pendingTook, a.pendingAt = time.Second, time.Time{}
	a.pendingMu.Unlock()
	if g := good(); g != 23 || a.pendingBusy {
		t.Errorf("after the stop: %g (busy %v), want a scan of its own, 23", g, a.pendingBusy)
	}
	// Drained (a flush just ended): the kept counts name records the buffer
	// no longer holds, slow scans or not — status said "0 records" and 23
	// pieces pending on the machine (the technician probe).
	recs, err := buf.Next(100)
	if err != nil || len(recs) != 23 {
		t.Fatalf("read %d records: %v", len(recs), err)
	}
	if err := buf.Ack(context.Background(), recs); err != nil {
		t.Fatal(err)
	}
	a.pendingMu.Lock()
	a.pendingTook, a.pendingAt = time.Second, time.Now()
	a.pendingMu.Unlock()
	if g := good(); g != 0 {
		t.Errorf("the buffer drained: %g pieces pending, want 0", g)
	}
}
