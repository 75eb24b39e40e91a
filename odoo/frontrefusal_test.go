package odoo_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/plantedge/plantedge/odoo"
	"github.com/plantedge/plantedge/odoo/odootest"
)

// frontTransport serves the requests with the emulator's handler, as a
// proxy in front of Odoo passes them on, unless answer answers one itself.
type frontTransport struct {
	h      http.Handler
	mu     sync.Mutex
	answer func(req *http.Request, body []byte) *http.Response // nil: passed on
}

func (t *frontTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	body, err := readBody(req)
	if err != nil {
		return nil, err
	}
	t.mu.Lock()
	answer := t.answer
	t.mu.Unlock()
	if answer != nil {
		if resp := answer(req, body); resp != nil {
			return resp, nil
		}
	}
	return serveIn(t.h, req, body), nil
}

func (t *frontTransport) set(answer func(req *http.Request, body []byte) *http.Response) {
	t.mu.Lock()
	t.answer = answer
	t.mu.Unlock()
}

// behindFront is a client of the fixture's emulator through a
// frontTransport, connected.
func behindFront(t *testing.T, f *fixture, protocol string) (*odoo.Client, *frontTransport) {
	t.Helper()
	tr := &frontTransport{h: f.srv.Handler()}
	c := f.client(t, protocol, func(cfg *odoo.Config) { cfg.HTTPClient = &http.Client{Transport: tr} })
	if err := c.Connect(context.Background()); err != nil {
		t.Fatal(err)
	}
	return c, tr
}

// eachModeBehindFront is eachMode with the client behind a frontTransport
// (behindFront).
func eachModeBehindFront(t *testing.T, test func(t *testing.T, m mode, f *fixture, c *odoo.Client, tr *frontTransport)) {
	for _, m := range modes {
		t.Run(m.String(), func(t *testing.T) {
			f := newFixture(t, odootest.Options{Version: m.version})
			c, tr := behindFront(t, f, m.protocol)
			test(t, m, f, c, tr)
		})
	}
}

// nginxPage is nginx's page for status, as it sends it.
func nginxPage(status int, title string) []byte {
	return []byte(fmt.Sprintf("<html>\r\n<head><title>%d %s</title></head>\r\n<body>\r\n<center><h1>%d %s</h1></center>\r\n<hr><center>nginx/1.24.0</center>\r\n</body>\r\n</html>\r\n",
		status, title, status, title))
}

// A proxy in front of Odoo that refuses the request's form — nginx's 400
// "Request Header Or Cookie Too Large", a 405 of a location that takes no
// POST, a 414, a 431 — refuses every call the agent makes alike: not a
// record's refusal, so transient (held and retried, said as the proxy's),
// where it was permanent and dead-lettered each record one by one. Odoo's
// own JSON answers with those statuses keep their class: JSON-2's 400
// naming its exception, an early 19 build's bare JSON string; an API
// gateway's JSON 400, naming none, is the gateway's.
func TestFrontRefusalsOfTheRequestsFormAreTransient(t *testing.T) {
	pages := []struct {
		status int
		title  string
		says   string
	}{
		{400, "Request Header Or Cookie Too Large", "bad request by something in front of Odoo"},
		{400, "Bad Request", "bad request by something in front of Odoo"},
		{405, "Not Allowed", "method not allowed by something in front of Odoo"},
		{414, "Request-URI Too Large", "URL too long for something in front of Odoo"},
		{431, "Request Header Fields Too Large", "request headers too large for something in front of Odoo"},
	}
	eachModeBehindFront(t, func(t *testing.T, m mode, f *fixture, c *odoo.Client, tr *frontTransport) {
		ctx := context.Background()
		for _, p := range pages {
			tr.set(func(req *http.Request, _ []byte) *http.Response {
				return answerWith(req, p.status, http.Header{"Content-Type": {"text/html"}}, nginxPage(p.status, p.title))
			})
			err := c.SetProducedQty(ctx, f.wo, 5)
			var oe *odoo.Error
			if !errors.As(err, &oe) || oe.Class != odoo.Transient || odoo.TooLarge(err) ||
				!strings.Contains(err.Error(), p.says) || !strings.Contains(err.Error(), p.title+" (an HTML page)") {
				t.Errorf("%d %s page: %v; want transient, saying %q and the page's title", p.status, p.title, err, p.says)
			}
		}
		// An API gateway's own JSON 400 (AWS's, Kong's, an OAuth
		// proxy's) names no Odoo exception: the same, said as the
		// gateway's. It was permanent: every record dead-lettered.
		for _, body := range []string{`{"message":"Bad Request"}`, `{"error":"invalid_request","error_description":"header too large"}`} {
			tr.set(func(req *http.Request, _ []byte) *http.Response {
				return answerWith(req, 400, http.Header{"Content-Type": {"application/json"}}, []byte(body))
			})
			err := c.SetProducedQty(ctx, f.wo, 5)
			var oe *odoo.Error
			if !errors.As(err, &oe) || oe.Class != odoo.Transient || !strings.Contains(err.Error(), "bad request by something in front of Odoo") {
				t.Errorf("a gateway's JSON 400 %s: %v; want transient, said as something in front of Odoo", body, err)
			}
		}
		if m.want != odoo.ProtocolJSON2 {
			return
		}
		// JSON-2's own 400s name their exception, or are a bare JSON
		// string in early 19 builds: Odoo's refusal of the call.
		for _, body := range []string{`{"name":"werkzeug.exceptions.BadRequest","message":"bad vals"}`, `"bad vals"`} {
			tr.set(func(req *http.Request, _ []byte) *http.Response {
				return answerWith(req, 400, http.Header{"Content-Type": {"application/json"}}, []byte(body))
			})
			if err := c.SetProducedQty(ctx, f.wo, 5); !odoo.IsPermanent(err) || strings.Contains(err.Error(), "in front of Odoo") {
				t.Errorf("JSON-2's 400 %s: %v; want permanent, Odoo's", body, err)
			}
		}
	})
}

// A look-up of external ids larger than the proxy in front of Odoo takes
// (500 ids, about 22 KB, behind 8 KiB) goes again in halves, and the pages
// after it at the size that passed: every id Odoo has is found. It failed
// with the proxy's 413 every time (a rebook behind such a proxy never got
// past its look-up).
func TestFrontRefusingALookUpAsTooLargeHalvesIt(t *testing.T) {
	eachModeBehindFront(t, func(t *testing.T, m mode, f *fixture, c *odoo.Client, tr *frontTransport) {
		ctx := context.Background()
		loss, err := c.LossID(ctx, "Equipment Failure")
		if err != nil {
			t.Fatal(err)
		}
		var lines []odoo.Downtime
		var xmlids []string
		at := time.Date(2026, 3, 1, 8, 0, 0, 0, time.UTC)
		for i := range 700 {
			x := fmt.Sprintf("plantedge.site_m1_downtime_%d", i)
			xmlids = append(xmlids, x)
			if i%7 == 0 {
				lines = append(lines, odoo.Downtime{XMLID: x, WorkcenterID: f.wc, LossID: loss,
					Start: at.Add(time.Duration(i) * time.Minute), End: at.Add(time.Duration(i)*time.Minute + 30*time.Second)})
			}
		}
		ids, err := c.UpsertDowntimes(ctx, lines)
		if err != nil {
			t.Fatal(err)
		}
		const limit = 8 << 10
		var mu sync.Mutex
		var refused, passed int
		tr.set(func(req *http.Request, body []byte) *http.Response {
			mu.Lock()
			defer mu.Unlock()
			if len(body) <= limit {
				passed++
				return nil
			}
			refused++
			return answerWith(req, http.StatusRequestEntityTooLarge, http.Header{"Content-Type": {"text/html"}},
				nginxPage(http.StatusRequestEntityTooLarge, "Request Entity Too Large"))
		})
		refs, err := c.ExternalIDs(ctx, xmlids)
		mu.Lock()
		t.Logf("%d requests refused as too large, %d passed", refused, passed)
		if err != nil || refused == 0 || refused > 2 || passed > 7 {
			t.Errorf("a look-up of 700 external ids behind 8 KiB: %v; %d requests refused, %d passed; want halves of the first page, then pages of the size that passed", err, refused, passed)
		}
		mu.Unlock()
		if len(refs) != len(lines) {
			t.Errorf("%d external ids found, want %d", len(refs), len(lines))
		}
		for i, l := range lines {
			if r := refs[l.XMLID]; r.Model != "mrp.workcenter.productivity" || r.ResID != ids[i] {
				t.Errorf("%s: %+v, want line %d", l.XMLID, r, ids[i])
			}
		}
	})
}

// A load larger than the proxy in front of Odoo takes (nginx's
// client_max_body_size) is answered with its 413 page: TooLarge and
// transient, saying the request's size and the proxy's limit — where it
// was permanent, a refusal of the records — and a smaller load of the
// same lines passes.
func TestFrontRefusesALoadAsTooLarge(t *testing.T) {
	eachModeBehindFront(t, func(t *testing.T, m mode, f *fixture, c *odoo.Client, tr *frontTransport) {
		ctx := context.Background()
		loss, err := c.LossID(ctx, "Equipment Failure")
		if err != nil {
			t.Fatal(err)
		}
		const limit = 8 << 10
		tr.set(func(req *http.Request, body []byte) *http.Response {
			if len(body) <= limit {
				return nil
			}
			return answerWith(req, http.StatusRequestEntityTooLarge, http.Header{"Content-Type": {"text/html"}},
				nginxPage(http.StatusRequestEntityTooLarge, "Request Entity Too Large"))
		})
		var lines []odoo.Downtime
		at := time.Date(2026, 3, 1, 8, 0, 0, 0, time.UTC)
		for i := range 100 {
			lines = append(lines, odoo.Downtime{XMLID: fmt.Sprintf("plantedge.site_m1_downtime_%d", i), WorkcenterID: f.wc, LossID: loss,
				Start: at.Add(time.Duration(i) * time.Minute), End: at.Add(time.Duration(i)*time.Minute + 30*time.Second), Description: "plantedge: reason JAM"})
		}
		_, err = c.UpsertDowntimes(ctx, lines)
		if !odoo.TooLarge(err) || !odoo.IsTemporary(err) || odoo.IsPermanent(err) ||
			!strings.Contains(err.Error(), "client_max_body_size") || !strings.Contains(err.Error(), "bytes refused as too large by something in front of Odoo") {
			t.Fatalf("a load of 100 lines above the proxy's limit: %v; want TooLarge, transient, saying the size and the proxy's limit", err)
		}
		if n := len(f.srv.Productivity()); n != 0 {
			t.Fatalf("%d lines in Odoo after the proxy refused the load", n)
		}
		for i := 0; i < len(lines); i += 10 {
			if _, err := c.UpsertDowntimes(ctx, lines[i:i+10]); err != nil {
				t.Fatalf("a load of 10 lines: %v", err)
			}
		}
		if n := len(f.srv.Productivity()); n != len(lines) {
			t.Fatalf("%d lines in Odoo, want %d", n, len(lines))
		}
		// Odoo's own refusals are not TooLarge.
		tr.set(nil)
		if _, err := c.UpsertDowntimes(ctx, []odoo.Downtime{{XMLID: "plantedge.site_m1_downtime_x", WorkcenterID: f.wc, LossID: loss + 1000, Start: at}}); err == nil || odoo.TooLarge(err) {
			t.Errorf("a load Odoo refuses: %v, TooLarge %v", err, odoo.TooLarge(err))
		}
	})
}
