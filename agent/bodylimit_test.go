package agent_test

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// nginx413Page is nginx's answer to a request body above its
// client_max_body_size (1m by default), as it sends it.
const nginx413Page = "<html>\r\n<head><title>413 Request Entity Too Large</title></head>\r\n<body>\r\n<center><h1>413 Request Entity Too Large</h1></center>\r\n<hr><center>nginx/1.24.0</center>\r\n</body>\r\n</html>\r\n"

// bodyFront is a reverse proxy to target in front of Odoo, as nginx with
// client_max_body_size limit: a request whose body is larger is answered
// 413 with nginx's page and not passed on (a limit of 0: none, until
// setLimit). It counts what it saw.
type bodyFront struct {
	URL     string
	mu      sync.Mutex
	limit   int
	sizes   map[string][]int // by what the request calls, every request's body size
	refused int
}

// setLimit sets the proxy's limit for the requests that come after (0:
// none), as an nginx reloaded with another client_max_body_size.
func (f *bodyFront) setLimit(n int) {
	f.mu.Lock()
	f.limit = n
	f.mu.Unlock()
}

func newBodyFront(t testing.TB, target string, limit int) *bodyFront {
	t.Helper()
	to, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	rp := httputil.NewSingleHostReverseProxy(to)
	f := &bodyFront{sizes: map[string][]int{}, limit: limit}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		f.mu.Lock()
		op := callOf(r.URL.Path, body)
		f.sizes[op] = append(f.sizes[op], len(body))
		tooLarge := f.limit > 0 && len(body) > f.limit
		if tooLarge {
			f.refused++
		}
		f.mu.Unlock()
		if tooLarge {
			w.Header().Set("Content-Type", "text/html")
			w.WriteHeader(http.StatusRequestEntityTooLarge)
			io.WriteString(w, nginx413Page)
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	f.URL = srv.URL
	return f
}

// callOf names a request by its path, or for JSON-RPC by the model and
// method its body names.
func callOf(path string, body []byte) string {
	if path != "/jsonrpc" {
		return path
	}
	for _, m := range []string{"mrp.workcenter.productivity\",\"load", "ir.model.data", "mrp.workcenter.productivity", "mrp.workorder", "stock.scrap", "mrp.workcenter"} {
		if bytes.Contains(body, []byte(`"`+m+`"`)) {
			return m
		}
	}
	return "jsonrpc other"
}

func (f *bodyFront) report(t testing.TB) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var ops []string
	for op := range f.sizes {
		ops = append(ops, op)
	}
	sort.Strings(ops)
	total := 0
	for _, op := range ops {
		s := f.sizes[op]
		mx := 0
		for _, n := range s {
			mx = max(mx, n)
		}
		total += len(s)
		t.Logf("  %-45s %5d requests, largest body %7d bytes", op, len(s), mx)
	}
	t.Logf("  %d requests, %d refused as too large", total, f.refused)
}

// A proxy in front of Odoo with a limit on a request's body (nginx's
// client_max_body_size, here 20 KiB: a full load of 200 lines is about 28
// KiB) answers a larger load with its 413 page. Taken as Odoo refusing the
// lines, each load was sent again line by line: a load a line (measured:
// 3,000 stops in 3,017 loads, 49 s, against 17 loads and 2 s within the
// limit). Now the load splits in halves, the loads stay at the size that
// passed for the run (one load refused, not one a round), and no line is
// dead-lettered.
func TestEndToEndLoadsSplitWhenAProxyRefusesThemAsTooLarge(t *testing.T) {
	t.Parallel()
	p := newPlant(t, plantOptions{machines: []string{"press-1", "press-2", "press-3"}, block: true})
	p.editConfig("forward:\n  interval: 100ms\n", "forward:\n  interval: 1h\n")
	front := newBodyFront(t, p.odoo.URL(), 20<<10)
	p.editConfig(p.odoo.URL(), front.URL)
	ra := p.startAgent()
	const stops = 300
	from := p.stopsWhileOdooDown(ra, stops)
	p.odoo.SetDown(false)
	ra.a.Flush()
	p.waitDrained(ra, "the backlog")
	front.report(t)
	st := ra.a.Status()
	if st.Buffer.DeadLetters != 0 {
		t.Fatalf("%d dead letters (latest %q), want none: the proxy refused loads, not lines", st.Buffer.DeadLetters, st.Buffer.LatestDeadLetter)
	}
	p.eachLineOnceClosed(stops * len(p.machines))
	// 900 lines at 100 a load, and the one load of 200 refused (a
	// round's last load of fewer, above the limit, may be refused too).
	if n, refused := front.count(loadCall), front.refusals(); n > 14 || refused > 2 {
		t.Errorf("%d loads, %d refused as too large; want about 10, one refused", n, refused)
	}
	if n := st.Odoo.LinesPerLoad; n != 100 {
		t.Errorf("status odoo.lines_per_load %d, want 100: the size that passed", n)
	}
	if !strings.Contains(p.logs.String(), "refused a load of downtime lines as too large") {
		t.Error("the shrink is not logged")
	}
	p.produceAfterBacklog(ra, from)
	if n := front.refusals(); n > 2 {
		t.Errorf("%d loads refused as too large by the end: the loads grew back to a size refused", n)
	}
}

// A stop whose line alone is more than the proxy takes (a limit of 1,200
// bytes here, the stop's reason 256 characters that JSON writes as 6
// bytes each: the largest line the agent makes, about 2 KB) is
// dead-lettered with a reason that names the proxy's limit; the other
// lines go through. It was dead-lettered too, but as if Odoo had refused
// it ("413 Request Entity Too Large").
func TestEndToEndALineAloneTooLargeForTheProxyIsDeadLettered(t *testing.T) {
	t.Parallel()
	p := newPlant(t, plantOptions{machines: []string{"press-1"}, block: true})
	p.editConfig("forward:\n  interval: 100ms\n", "forward:\n  interval: 1h\n")
	front := newBodyFront(t, p.odoo.URL(), 1200)
	p.editConfig(p.odoo.URL(), front.URL)
	ra := p.startAgent()
	p.odoo.SetDown(true)
	from := time.Now().Add(100 * time.Millisecond)
	m := p.machines[0]
	long := strings.Repeat("<", 256)
	for i, reason := range []string{"JAM", long, "JAM", "SETUP"} {
		at := from.Add(time.Duration(i) * 4 * time.Millisecond)
		p.publishStamped("plant/"+m.id, map[string]any{"good": m.goodNow(), "running": false, "reason": reason}, at)
		p.publishStamped("plant/"+m.id, map[string]any{"good": m.goodNow(), "running": true}, at.Add(2*time.Millisecond))
	}
	from = from.Add(16 * time.Millisecond)
	m.mu.Lock()
	m.stops += 4
	m.mu.Unlock()
	p.waitEventRecords(ra, 8)
	p.odoo.SetDown(false)
	ra.a.Flush()
	waitFor(t, 60*time.Second, "the backlog", func() (bool, string) {
		st := ra.a.Status()
		return st.Buffer.Lanes["events"].Pending == 0, fmt.Sprintf("%d pending, %d dead letters, last error %q", st.Buffer.Lanes["events"].Pending, st.Buffer.DeadLetters, st.Odoo.LastError)
	})
	front.report(t)
	st := ra.a.Status()
	if st.Buffer.DeadLetters != 1 || !strings.Contains(st.Buffer.LatestDeadLetter, "client_max_body_size") ||
		!strings.Contains(st.Buffer.LatestDeadLetter, "more than the proxy in front of Odoo takes") {
		t.Fatalf("%d dead letters, latest %q; want the long line's, naming the proxy's limit", st.Buffer.DeadLetters, st.Buffer.LatestDeadLetter)
	}
	if lines := p.odoo.Productivity(); len(lines) != 3 {
		t.Fatalf("%d lines in Odoo, want the 3 short ones", len(lines))
	}
	m.mu.Lock()
	m.stops-- // the dead-lettered one is not in Odoo
	m.mu.Unlock()
	p.produceAfterBacklog(ra, from)
}

// loadCall is what callOf names a load of downtime lines.
const loadCall = `mrp.workcenter.productivity","load`

func (f *bodyFront) count(op string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.sizes[op])
}

func (f *bodyFront) refusals() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.refused
}

// A proxy in front of Odoo that refuses the form of every request — nginx's
// 400 "Request Header Or Cookie Too Large", a 431 — refuses no record:
// the records wait (status says the proxy), none goes to the dead letters,
// and all reach Odoo once the proxy is fixed. A 400 page was a permanent
// refusal: each quantity and line was dead-lettered one by one.
func TestEndToEndAProxyRefusingEveryRequestsFormDeadLettersNothing(t *testing.T) {
	for _, c := range []struct {
		status int
		title  string
	}{
		{http.StatusBadRequest, "Request Header Or Cookie Too Large"},
		{http.StatusRequestHeaderFieldsTooLarge, "Request Header Fields Too Large"},
	} {
		t.Run(fmt.Sprint(c.status), func(t *testing.T) {
			t.Parallel()
			p := newPlant(t, plantOptions{machines: []string{"press-1"}, block: true})
			var broken atomic.Bool
			var refused atomic.Int64
			to, err := url.Parse(p.odoo.URL())
			if err != nil {
				t.Fatal(err)
			}
			rp := httputil.NewSingleHostReverseProxy(to)
			front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if broken.Load() {
					refused.Add(1)
					w.Header().Set("Content-Type", "text/html")
					w.WriteHeader(c.status)
					fmt.Fprintf(w, "<html>\r\n<head><title>%d %s</title></head>\r\n<body>\r\n<center><h1>%d %s</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n",
						c.status, c.title, c.status, c.title)
					return
				}
				rp.ServeHTTP(w, r)
			}))
			t.Cleanup(front.Close)
			p.editConfig(p.odoo.URL(), front.URL)
			ra := p.startAgent()
			m := p.machines[0]
			p.produce(m, 5, 0)
			p.waitExactQty(ra, "press-1", 5)
			broken.Store(true)
			p.produce(m, 3, 0)
			p.stop(m, "JAM")
			p.run(m)
			waitFor(t, 30*time.Second, "the proxy's refusal in status", func() (bool, string) {
				st := ra.a.Status()
				return strings.Contains(st.Odoo.LastError, "in front of Odoo") && st.Buffer.Pending > 0,
					fmt.Sprintf("last error %q, %d pending, %d dead letters", st.Odoo.LastError, st.Buffer.Pending, st.Buffer.DeadLetters)
			})
			// Rounds against the proxy (a flush skips the backoff): a
			// record refused for good would be dead-lettered in the first.
			from := refused.Load()
			waitFor(t, 30*time.Second, "more requests refused by the proxy", func() (bool, string) {
				ra.a.Flush()
				return refused.Load() >= from+6, fmt.Sprintf("%d refused", refused.Load())
			})
			if st := ra.a.Status(); st.Buffer.DeadLetters != 0 {
				t.Fatalf("%d dead letters (latest %q) while a proxy refused every request", st.Buffer.DeadLetters, st.Buffer.LatestDeadLetter)
			}
			broken.Store(false)
			ra.a.Flush()
			p.waitExact(ra, 60*time.Second)
		})
	}
}
