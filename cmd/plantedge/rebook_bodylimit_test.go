package main

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/plantedge/plantedge/odoo/odootest"
)

// bodyLimitFront is a reverse proxy in front of Odoo, as nginx with a
// client_max_body_size (0: none): a request whose body is larger is
// answered 413 with nginx's page and not passed on. It counts the look-ups
// of external ids (ir.model.data) it refused and passed. (The agent's tests
// have a fuller one, bodyFront, in a test file of theirs.)
type bodyLimitFront struct {
	URL                           string
	limit                         atomic.Int64
	lookupsRefused, lookupsPassed atomic.Int64
}

func newBodyLimitFront(t *testing.T, target string) *bodyLimitFront {
	t.Helper()
	to, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	rp := httputil.NewSingleHostReverseProxy(to)
	f := &bodyLimitFront{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		lookup := bytes.Contains(body, []byte(`"ir.model.data"`))
		if limit := f.limit.Load(); limit > 0 && int64(len(body)) > limit {
			if lookup {
				f.lookupsRefused.Add(1)
			}
			w.Header().Set("Content-Type", "text/html")
			w.WriteHeader(http.StatusRequestEntityTooLarge)
			io.WriteString(w, "<html>\r\n<head><title>413 Request Entity Too Large</title></head>\r\n<body>\r\n<center><h1>413 Request Entity Too Large</h1></center>\r\n<hr><center>nginx/1.24.0</center>\r\n</body>\r\n</html>\r\n")
			return
		}
		if lookup {
			f.lookupsPassed.Add(1)
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	f.URL = srv.URL
	return f
}

// stops makes n stops of the bench's machine, each a stop and a run.
func (b *bench) stops(n int) {
	b.t.Helper()
	for range n {
		b.stopped()
		b.publish()
	}
}

// linesByXMLID are Odoo's downtime lines by external id; a line there twice
// fails the test.
func (b *bench) linesByXMLID() map[string]odootest.ProductivityLine {
	b.t.Helper()
	out := map[string]odootest.ProductivityLine{}
	for _, l := range b.odoo.Productivity() {
		if _, twice := out[l.XMLID]; twice {
			b.t.Errorf("line %s twice in Odoo", l.XMLID)
		}
		out[l.XMLID] = l
	}
	return out
}

// wantLinesAsBooked checks Odoo has each line of want once, as it was
// booked (its id aside), and no other.
func (b *bench) wantLinesAsBooked(want map[string]odootest.ProductivityLine) {
	b.t.Helper()
	got := b.linesByXMLID()
	for x, w := range want {
		g, ok := got[x]
		if !ok {
			b.t.Errorf("line %s (from %v) not in Odoo", x, w.Start)
			continue
		}
		g.ID, w.ID = 0, 0
		if g != w {
			b.t.Errorf("line %s in Odoo\n  %+v\nwant as booked\n  %+v", x, g, w)
		}
	}
	if len(got) != len(want) {
		b.t.Errorf("%d lines in Odoo, want %d", len(got), len(want))
	}
}

// restoredBehind books n stops through front and pieces before and after
// Odoo's backup, then restores Odoo from it and sets front's limit. It
// returns the lines booked and the --since of a rebook.
func (b *bench) restoredBehind(front *bodyLimitFront, n int, limit int64) (map[string]odootest.ProductivityLine, string) {
	b.t.Helper()
	b.produce(5)
	b.waitQty()
	backup := b.odoo.Backup()
	since := time.Now().Add(-time.Second).UTC().Format(time.RFC3339)
	b.stops(n)
	b.produce(7)
	waitUntil(b.t, 60*time.Second, fmt.Sprintf("%d lines booked", n), func() (bool, string) {
		st, lines := b.a.Status(), len(b.odoo.Productivity())
		return lines == n && st.Buffer.Pending == 0, fmt.Sprintf("%d lines, %d pending, odoo %s %s", lines, st.Buffer.Pending, st.Odoo.State, st.Odoo.LastError)
	})
	b.waitQty()
	booked := b.linesByXMLID()
	b.odoo.RestoreBackup(backup)
	if n := len(b.odoo.Productivity()); n != 0 {
		b.t.Fatalf("%d lines in the restored database, want none", n)
	}
	front.limit.Store(limit)
	return booked, since
}

// plantedge rebook, as a technician runs it, behind a proxy that refuses a
// request's body above 3 KiB (nginx's client_max_body_size): the look-up
// of the 80 lines' external ids, one request of about 3.6 KB (500 ids a
// page), is refused (413) and goes in halves; the loads of lines (80, about
// 10 KB) split alike. The command says it rebooked the 80 and exits 0; Odoo
// has each once, as booked, and the pieces made since the backup. A rebook
// again finds nothing lacking and books nothing twice. (The split had
// tests of the agent's API only.)
func TestRebookCommandBehindAProxyBodyLimit(t *testing.T) {
	b := newBench(t, 17)
	front := newBodyLimitFront(t, b.odoo.URL())
	b.editConfig(b.odoo.URL(), front.URL)
	b.startAgent()
	booked, since := b.restoredBehind(front, 80, 3<<10)

	out, err := cli(t, "rebook", "--since", since, "-c", b.cfgPath)
	t.Logf("rebook: exit %d, %v\n%s(look-ups of external ids refused %d, passed %d)", exitCode(err), err, out, front.lookupsRefused.Load(), front.lookupsPassed.Load())
	if exitCode(err) != 0 || !strings.Contains(out, ": 80 downtime lines, 0 scrap bookings\n") ||
		!strings.Contains(out, "Odoo lacks 80 lines and 0 scrap bookings: rebooked 80 lines and 0 scrap bookings\n") {
		t.Fatalf("rebook behind the limit: exit %d, %v\n%s; want the 80 lines rebooked, exit 0", exitCode(err), err, out)
	}
	if front.lookupsRefused.Load() == 0 {
		t.Error("no look-up of external ids refused: the test does not show their split")
	}
	b.wantLinesAsBooked(booked)
	b.waitQty() // the count written again: the pieces made since the backup

	out, err = cli(t, "rebook", "--since", since, "-c", b.cfgPath)
	if exitCode(err) != 0 || !strings.Contains(out, "Odoo lacks 0 lines and 0 scrap bookings: rebooked 0 lines and 0 scrap bookings\n") {
		t.Errorf("rebook again: exit %d, %v\n%s; want nothing lacking, exit 0", exitCode(err), err, out)
	}
	b.wantLinesAsBooked(booked)
}

// Behind a proxy whose limit (200 bytes) is below a look-up of one external
// id (337 bytes), plantedge rebook fails: it exits 4 (not rebooked) with
// what refused the request — the proxy in front of Odoo, its limit on a
// request's body — and what to do: run it again once that is mended. It
// books nothing; with the limit raised, the command books each line once.
func TestRebookCommandBehindAProxyRefusingOneLookUp(t *testing.T) {
	b := newBench(t, 17)
	front := newBodyLimitFront(t, b.odoo.URL())
	b.editConfig(b.odoo.URL(), front.URL)
	b.startAgent()
	booked, since := b.restoredBehind(front, 20, 200)

	out, err := cli(t, "rebook", "--since", since, "-c", b.cfgPath)
	t.Logf("rebook: exit %d, %v\n%s(look-ups of external ids refused %d)", exitCode(err), err, out, front.lookupsRefused.Load())
	// Refused at 20 ids, then 10, 5, 2 and 1.
	if exitCode(err) != 4 || front.lookupsRefused.Load() < 5 {
		t.Errorf("rebook behind a limit below one look-up: exit %d (%d look-ups refused), %v\n%s; want 4, the look-up refused down to one id", exitCode(err), front.lookupsRefused.Load(), err, out)
	}
	for _, want := range []string{"not rebooked: ", "refused as too large by something in front of Odoo, not by Odoo (a proxy's limit on a request's body: nginx's client_max_body_size",
		"(run it again once that is mended: it books only what Odoo still lacks)"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("rebook said %v; want %q in it", err, want)
		}
	}
	if strings.Contains(out, "rebooked") {
		t.Errorf("rebook printed %q, want nothing said rebooked", out)
	}
	if n := len(b.odoo.Productivity()); n != 0 {
		t.Errorf("%d lines in Odoo, want none", n)
	}

	front.limit.Store(0)
	out, err = cli(t, "rebook", "--since", since, "-c", b.cfgPath)
	if exitCode(err) != 0 || !strings.Contains(out, "Odoo lacks 20 lines and 0 scrap bookings: rebooked 20 lines and 0 scrap bookings\n") {
		t.Errorf("rebook with the limit raised: exit %d, %v\n%s; want the 20 lines rebooked, exit 0", exitCode(err), err, out)
	}
	b.wantLinesAsBooked(booked)
	b.waitQty()
}
