package odoo_test

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"

	"go.uber.org/goleak"

	"github.com/plantedge/plantedge/internal/certtest"
	"github.com/plantedge/plantedge/odoo"
	"github.com/plantedge/plantedge/odoo/odootest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// mode is one emulator version with one client protocol.
type mode struct {
	version  int
	protocol string // client Config.Protocol
	want     string // protocol Connect should pick
}

var modes = []mode{
	{17, "auto", "jsonrpc"},
	{18, "auto", "jsonrpc"},
	{19, "auto", "json2"},
	{19, "jsonrpc", "jsonrpc"}, // JSON-RPC is still served (deprecated) in 19
}

func (m mode) String() string { return fmt.Sprintf("v%d-%s", m.version, m.protocol) }

// fixture is a running emulator with one machine and a work order in progress.
type fixture struct {
	srv                 *odootest.Server
	url                 string
	wc, product, mo, wo int64
}

func newFixture(t *testing.T, opts odootest.Options) *fixture {
	t.Helper()
	s := odootest.New(opts)
	url := s.Start()
	t.Cleanup(s.Close)
	f := &fixture{srv: s, url: url}
	f.wc = s.AddWorkcenter("M1", "Press 1")
	f.product = s.AddProduct("Bracket")
	f.mo = s.AddProduction("WH/MO/00078", f.product, 500)
	f.wo = s.AddWorkorder(f.mo, f.wc, "Pressing", "progress")
	return f
}

func (f *fixture) client(t *testing.T, protocol string, mut ...func(*odoo.Config)) *odoo.Client {
	t.Helper()
	cfg := odoo.Config{URL: f.url, Database: "odoo", Username: "admin", APIKey: f.srv.AdminKey(),
		Protocol: protocol, Timeout: 5 * time.Second}
	for _, m := range mut {
		m(&cfg)
	}
	c, err := odoo.New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(c.Close)
	return c
}

// eachMode runs test in a subtest per mode, named after it, each given a
// fixture of the mode's Odoo and a client connected to it in the mode's
// protocol.
func eachMode(t *testing.T, test func(t *testing.T, m mode, f *fixture, c *odoo.Client)) {
	for _, m := range modes {
		t.Run(m.String(), func(t *testing.T) {
			f := newFixture(t, odootest.Options{Version: m.version})
			test(t, m, f, connected(t, f, m.protocol))
		})
	}
}

func connected(t *testing.T, f *fixture, protocol string) *odoo.Client {
	t.Helper()
	c := f.client(t, protocol)
	if err := c.Connect(context.Background()); err != nil {
		t.Fatalf("Connect: %v", err)
	}
	return c
}

func asError(t *testing.T, err error) *odoo.Error {
	t.Helper()
	var oe *odoo.Error
	if !errors.As(err, &oe) {
		t.Fatalf("want *odoo.Error, got %T %v", err, err)
	}
	return oe
}

func TestConnectPicksProtocolAndVersion(t *testing.T) {
	eachMode(t, func(t *testing.T, m mode, f *fixture, c *odoo.Client) {
		if got := c.Protocol(); got != m.want {
			t.Errorf("Protocol() = %q, want %q", got, m.want)
		}
		if got, want := c.ServerVersion(), fmt.Sprintf("%d.0", m.version); got != want {
			t.Errorf("ServerVersion() = %q, want %q", got, want)
		}
		if c.Major() != m.version || c.UID() != 2 {
			t.Errorf("Major() = %d UID() = %d, want %d and 2", c.Major(), c.UID(), m.version)
		}
	})
	t.Run("enterprise-19", func(t *testing.T) {
		f := newFixture(t, odootest.Options{Version: 19, Enterprise: true})
		c := connected(t, f, "auto")
		if c.ServerVersion() != "19.0+e" || c.Major() != 19 {
			t.Errorf("version %q major %d", c.ServerVersion(), c.Major())
		}
	})
	t.Run("json2-forced-before-19-is-refused-before-any-call", func(t *testing.T) {
		// JSON-2 is Odoo 19's (ODOO.md). Odoo Online's saas~18.x builds
		// served an earlier /json/2 whose controller takes its parameters
		// as "args" and "kwargs" (json2.py in odoo/odoo history); http.py's
		// route_wrapper drops any other body member with a warning, so a
		// search_read's domain and fields were ignored (every record
		// answered) and a write's vals too. Pinned to json2, such a server
		// is refused at Connect, before a model is called.
		var calls atomic.Int32
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			switch {
			case r.URL.Path == "/web/version":
				io.WriteString(w, `{"version":"saas~18.3","version_info":["saas~18",3,0,"final",0,""]}`)
			case strings.HasSuffix(r.URL.Path, "/context_get"):
				io.WriteString(w, `{"uid":2,"lang":"en_US","tz":false}`)
			default:
				calls.Add(1)
				io.WriteString(w, `[]`)
			}
		}))
		defer srv.Close()
		c, err := odoo.New(odoo.Config{URL: srv.URL, APIKey: strings.Repeat("a", 40), Protocol: odoo.ProtocolJSON2, Timeout: 2 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		err = c.Connect(context.Background())
		if oe := asError(t, err); !oe.Permanent() || !strings.Contains(oe.Error(), "saas~18.3") || !strings.Contains(oe.Error(), "odoo.protocol") {
			t.Errorf("Connect = %v, want a permanent refusal naming the version and odoo.protocol", err)
		}
		if _, err := c.WorkordersInProgressOn(context.Background(), []int64{1}); err == nil || calls.Load() != 0 {
			t.Errorf("a work order lookup after the refusal: %v, %d model calls made", err, calls.Load())
		}
	})
	t.Run("json2-forced-on-17-is-permanent", func(t *testing.T) {
		f := newFixture(t, odootest.Options{Version: 17})
		err := f.client(t, "json2").Connect(context.Background())
		if oe := asError(t, err); !oe.Permanent() {
			t.Errorf("want permanent, got %v", err)
		}
	})
}

func TestWorkOrderOperations(t *testing.T) {
	eachMode(t, func(t *testing.T, m mode, f *fixture, c *odoo.Client) {
		ctx := context.Background()

		wc, err := c.WorkcenterByCode(ctx, "M1")
		if err != nil || wc.ID != f.wc || wc.Name != "Press 1" || wc.WorkingState != "normal" {
			t.Fatalf("WorkcenterByCode = %+v, %v", wc, err)
		}
		_, err = c.WorkcenterByCode(ctx, "nope")
		if !errors.Is(err, odoo.ErrNotFound) || !asError(t, err).Missing() || !odoo.IsPermanent(err) {
			t.Errorf("unknown code: %v", err)
		}
		f.srv.AddWorkcenter("DUP", "A")
		f.srv.AddWorkcenter("DUP", "B")
		if _, err = c.WorkcenterByCode(ctx, "DUP"); !errors.Is(err, odoo.ErrAmbiguous) {
			t.Errorf("duplicate code: %v", err)
		}

		byCode, ambiguous, err := c.WorkcentersByCodes(ctx, []string{"M1", "DUP", "nope"})
		if err != nil || len(byCode) != 1 || byCode["M1"].ID != f.wc || len(ambiguous) != 1 || ambiguous[0] != "DUP" {
			t.Errorf("WorkcentersByCodes = %+v, %v, %v", byCode, ambiguous, err)
		}

		// a second work order in progress, started an hour earlier,
		// comes after the one work last began on
		wo2 := f.srv.AddWorkorder(f.mo, f.wc, "Deburring", "progress")
		f.srv.SetWorkorderDateStart(wo2, time.Now().Add(-time.Hour))
		f.srv.AddWorkorder(f.mo, f.wc, "Packing", "ready")
		wos, err := c.WorkordersInProgress(ctx, f.wc)
		if err != nil || len(wos) != 2 || wos[0].ID != f.wo || wos[1].ID != wo2 {
			t.Fatalf("WorkordersInProgress = %+v, %v", wos, err)
		}
		// its operator's timer started now: it comes first (the one
		// time-line lookup is made only for a work center with several)
		lines := f.srv.CallCount("mrp.workcenter.productivity", "search_read")
		if err := c.Call(ctx, "mrp.workorder", "button_start", []any{[]int64{wo2}}, nil, nil); err != nil {
			t.Fatal(err)
		}
		wos, err = c.WorkordersInProgress(ctx, f.wc)
		if err != nil || len(wos) != 2 || wos[0].ID != wo2 || wos[1].ID != f.wo ||
			f.srv.CallCount("mrp.workcenter.productivity", "search_read") != lines+1 {
			t.Fatalf("WorkordersInProgress after a timer = %+v, %v", wos, err)
		}
		// the batched lookup gives the same answer in one call
		otherWC := f.srv.AddWorkcenter("M2", "Press 2")
		otherWO := f.srv.AddWorkorder(f.mo, otherWC, "Press 2 op", "progress")
		idleWC := f.srv.AddWorkcenter("M3", "Press 3")
		before := f.srv.CallCount("mrp.workorder", "search_read")
		byWC, err := c.WorkordersInProgressOn(ctx, []int64{f.wc, otherWC, idleWC})
		if err != nil || f.srv.CallCount("mrp.workorder", "search_read") != before+1 {
			t.Fatalf("WorkordersInProgressOn: %v (calls %d)", err, f.srv.CallCount("mrp.workorder", "search_read")-before)
		}
		if got := byWC[f.wc]; len(got) != 2 || got[0].ID != wo2 || got[1].ID != f.wo {
			t.Errorf("batched lookup for the first work center = %+v", got)
		}
		if got := byWC[otherWC]; len(got) != 1 || got[0].ID != otherWO {
			t.Errorf("batched lookup for the second work center = %+v", got)
		}
		if _, ok := byWC[idleWC]; ok {
			t.Errorf("idle work center has work orders: %+v", byWC[idleWC])
		}
		if w := wos[1]; w.ProductionID != f.mo || w.ProductionName != "WH/MO/00078" || w.ProductID != f.product ||
			w.UomID != 1 || w.QtyProduction != 500 || w.State != "progress" || w.DateStart.IsZero() || w.WorkcenterID != f.wc {
			t.Errorf("work order fields: %+v", w)
		}

		cur, found, err := c.CurrentWorkorder(ctx, f.wc)
		if err != nil || !found || cur.ID != wo2 {
			t.Errorf("CurrentWorkorder = %d %v %v, want %d", cur.ID, found, err, wo2)
		}
		if _, found, err := c.CurrentWorkorder(ctx, 424242); found || err != nil {
			t.Errorf("CurrentWorkorder of idle work center = %v %v", found, err)
		}
		if err := c.SetProducedQty(ctx, f.wo, 132.456); err != nil {
			t.Fatalf("SetProducedQty: %v", err)
		}
		if err := c.SetProducedQty(ctx, f.wo, 132.456); err != nil { // absolute: repeat is harmless
			t.Fatalf("SetProducedQty again: %v", err)
		}
		wo, err := c.ReadWorkorder(ctx, f.wo)
		if err != nil {
			t.Fatalf("ReadWorkorder: %v", err)
		}
		if got := c.ProducedQty(wo); got != 132.46 {
			t.Errorf("ProducedQty = %v, want 132.46 (rounded to 2 decimals)", got)
		}
		field := f.srv.Workorder(f.wo)
		if m.version >= 19 && field.QtyProduced != 132.46 || m.version < 19 && field.QtyProducing != 132.46 {
			t.Errorf("emulator work order after write: %+v", field)
		}

		_, err = c.ReadWorkorder(ctx, 9999)
		if oe := asError(t, err); !oe.Missing() || !oe.Permanent() {
			t.Errorf("missing work order: %v", err)
		}
	})
}

// Starting a work order on 17/18 puts the remaining quantity into
// qty_producing before anything is made: that is no baseline to count on.
// A quantity someone entered is.
func TestStartingQty(t *testing.T) {
	eachMode(t, func(t *testing.T, m mode, f *fixture, c *odoo.Client) {
		ctx := context.Background()
		wo, err := c.ReadWorkorder(ctx, f.wo)
		if err != nil {
			t.Fatal(err)
		}
		if wo.QtyRemaining != 500 {
			t.Fatalf("qty_remaining %v, want 500", wo.QtyRemaining)
		}
		qty, startDefault := c.StartingQty(wo)
		if m.version < 19 && (wo.QtyProducing != 500 || qty != 0 || !startDefault) {
			t.Errorf("just started: qty_producing %v, StartingQty = %v, %v; want 0 (the start default)", wo.QtyProducing, qty, startDefault)
		}
		if m.version >= 19 && (qty != 0 || startDefault) {
			t.Errorf("just started: StartingQty = %v, %v; want qty_produced 0", qty, startDefault)
		}
		// An operator entered 120 before plantedge took over.
		if err := c.SetProducedQty(ctx, f.wo, 120); err != nil {
			t.Fatal(err)
		}
		if wo, err = c.ReadWorkorder(ctx, f.wo); err != nil {
			t.Fatal(err)
		}
		if qty, startDefault := c.StartingQty(wo); qty != 120 || startDefault {
			t.Errorf("after 120 was entered: StartingQty = %v, %v; want 120", qty, startDefault)
		}
	})
}

func TestDowntimeUpsert(t *testing.T) {
	eachMode(t, func(t *testing.T, _ mode, f *fixture, c *odoo.Client) {
		ctx := context.Background()
		byName, err := c.LossID(ctx, "Equipment Failure")
		if err != nil {
			t.Fatalf("LossID by name: %v", err)
		}
		byXMLID, err := c.LossID(ctx, "mrp.block_reason1")
		if err != nil || byXMLID != byName {
			t.Fatalf("LossID by xmlid = %d, %v; by name %d", byXMLID, err, byName)
		}
		if _, err := c.LossID(ctx, "Coffee Break"); !errors.Is(err, odoo.ErrNotFound) {
			t.Errorf("unknown loss: %v", err)
		}

		// load reads date-times in the user's time zone (ir_fields.py
		// _input_tz); the bot's preferences must not shift the lines.
		f.srv.SetUserTZ(2, "America/Chicago")
		start := time.Date(2026, 3, 1, 8, 0, 0, 0, time.UTC)
		d := odoo.Downtime{XMLID: "plantedge.site_m1_down_1", WorkcenterID: f.wc, WorkorderID: f.wo, LossID: byName,
			Start: start, Description: "spindle fault"}
		id, err := c.UpsertDowntime(ctx, d)
		if err != nil {
			t.Fatalf("UpsertDowntime open: %v", err)
		}
		if st := f.srv.WorkingState(f.wc); st != "blocked" {
			t.Errorf("open line: working_state %q, want blocked", st)
		}
		d.End = start.Add(7 * time.Minute)
		id2, err := c.UpsertDowntime(ctx, d)
		if err != nil || id2 != id {
			t.Fatalf("UpsertDowntime close = %d, %v; want same id %d", id2, err, id)
		}
		lines := f.srv.Productivity()
		if len(lines) != 1 || !lines[0].End.Equal(d.End) || lines[0].XMLID != d.XMLID || lines[0].LossName != "Equipment Failure" ||
			lines[0].Description != "spindle fault" || !lines[0].Start.Equal(start) {
			t.Fatalf("lines = %+v", lines)
		}
		if st := f.srv.WorkingState(f.wc); st != "normal" {
			t.Errorf("closed line: working_state %q, want normal", st)
		}
		model, resID, found, err := c.ExternalID(ctx, "plantedge", "site_m1_down_1")
		if err != nil || !found || resID != id || model != "mrp.workcenter.productivity" {
			t.Errorf("ExternalID = %q %d %v %v", model, resID, found, err)
		}
		if _, _, found, err := c.ExternalID(ctx, "plantedge", "nope"); found || err != nil {
			t.Errorf("ExternalID of unknown = %v %v", found, err)
		}

		before := f.srv.CallCount("mrp.workcenter.productivity", "load")
		batch := []odoo.Downtime{
			{XMLID: "plantedge.site_m1_down_2", WorkcenterID: f.wc, LossID: byName, Start: start.Add(time.Hour), End: start.Add(2 * time.Hour)},
			{XMLID: "plantedge.site_m1_down_1", WorkcenterID: f.wc, WorkorderID: f.wo, LossID: byName, Start: start, End: d.End, Description: "spindle fault, fixed"},
		}
		ids, err := c.UpsertDowntimes(ctx, batch)
		if err != nil || len(ids) != 2 || ids[1] != id || ids[0] == id {
			t.Fatalf("UpsertDowntimes = %v, %v", ids, err)
		}
		if n := f.srv.CallCount("mrp.workcenter.productivity", "load") - before; n != 1 {
			t.Errorf("batch used %d load calls, want 1", n)
		}
		// a row Odoo refuses fails the whole batch: nothing of it is written
		bad := []odoo.Downtime{
			{XMLID: "plantedge.site_m1_down_3", WorkcenterID: f.wc, LossID: byName, Start: start},
			{XMLID: "plantedge.site_m1_down_4", WorkcenterID: 424242, LossID: byName, Start: start},
		}
		_, err = c.UpsertDowntimes(ctx, bad)
		if !odoo.IsPermanent(err) {
			t.Errorf("bad batch: want permanent error, got %v", err)
		}
		if n := len(f.srv.Productivity()); n != 2 {
			t.Errorf("after refused batch: %d lines, want 2", n)
		}
	})
}

// A scrap of a product archived in Odoo since the agent read it is refused
// for the product's database id (Odoo's import looks it up with a search):
// a permanent MissingReference of product_id, whose message says what that
// means, not only Odoo's "No matching record found for database id".
func TestBookScrapOfAnArchivedProductSaysWhy(t *testing.T) {
	eachMode(t, func(t *testing.T, _ mode, f *fixture, c *odoo.Client) {
		ctx := context.Background()
		if err := c.Call(ctx, "product.product", "write", []any{[]any{f.product}, map[string]any{"active": false}}, nil, nil); err != nil {
			t.Fatalf("archiving the product: %v", err)
		}
		_, err := c.BookScrap(ctx, odoo.Scrap{XMLID: "plantedge.site_m1_scrap_8", ProductID: f.product, ProductionID: f.mo, WorkorderID: f.wo, Qty: 3})
		if !odoo.IsPermanent(err) || !odoo.MissingReference(err, "product_id") {
			t.Fatalf("scrap of an archived product: %v; want a permanent MissingReference of product_id", err)
		}
		msg := err.Error()
		for _, want := range []string{"No matching record found for database id", "no longer finds: archived, deleted, or in a company the bot user may not use"} {
			if !strings.Contains(msg, want) {
				t.Errorf("error %q lacks %q", msg, want)
			}
		}
	})
}

func TestBookScrap(t *testing.T) {
	eachMode(t, func(t *testing.T, m mode, f *fixture, c *odoo.Client) {
		ctx := context.Background()
		s := odoo.Scrap{XMLID: "plantedge.site_m1_scrap_7", ProductID: f.product, ProductionID: f.mo, WorkorderID: f.wo, Qty: 3}
		done, err := c.BookScrap(ctx, s)
		if err != nil || !done {
			t.Fatalf("BookScrap = %v, %v", done, err)
		}
		done, err = c.BookScrap(ctx, s)
		if err != nil || !done {
			t.Fatalf("BookScrap again = %v, %v", done, err)
		}
		scraps := f.srv.Scraps()
		if len(scraps) != 1 || scraps[0].Moves != 1 || scraps[0].State != "done" || scraps[0].UomID != 1 || scraps[0].Qty != 3 {
			t.Fatalf("scraps = %+v (want one scrap booked once)", scraps)
		}

		short := f.srv.AddProduct("Rare part")
		f.srv.SetShortStock(short, true)
		s2 := odoo.Scrap{XMLID: "plantedge.site_m1_scrap_8", ProductID: short, Qty: 1}
		done, err = c.BookScrap(ctx, s2)
		if err != nil || done {
			t.Fatalf("short stock BookScrap = %v, %v; want not done", done, err)
		}
		// Many at once: two calls, whatever their number.
		imd, sc := f.srv.CallCount("ir.model.data", "search_read"), f.srv.CallCount("stock.scrap", "search_read")
		states, err := c.ScrapStates(ctx, []string{s.XMLID, s2.XMLID, "plantedge.site_m1_scrap_none"})
		if err != nil || len(states) != 2 || states[s.XMLID] != "done" || states[s2.XMLID] != "draft" {
			t.Errorf("ScrapStates = %v, %v", states, err)
		}
		if n, m := f.srv.CallCount("ir.model.data", "search_read")-imd, f.srv.CallCount("stock.scrap", "search_read")-sc; n != 1 || m != 1 {
			t.Errorf("ScrapStates made %d + %d calls, want 1 + 1", n, m)
		}
		f.srv.SetShortStock(short, false)
		done, err = c.BookScrap(ctx, s2)
		if err != nil || !done {
			t.Fatalf("retry after stock arrived = %v, %v", done, err)
		}
		if n := len(f.srv.Scraps()); n != 2 {
			t.Errorf("%d scraps, want 2 (retry updated the draft)", n)
		}

		// Confirmed as the dialog's Confirm does: done, one move, and
		// not again when booked a second time.
		f.srv.SetShortStock(short, true)
		s3 := odoo.Scrap{XMLID: "plantedge.site_m1_scrap_9", ProductID: short, Qty: 2, ConfirmShort: true}
		for range 2 {
			if done, err := c.BookScrap(ctx, s3); err != nil || !done {
				t.Fatalf("confirmed BookScrap = %v, %v", done, err)
			}
		}
		if sc := f.srv.Scraps(); len(sc) != 3 || sc[2].State != "done" || sc[2].Moves != 1 {
			t.Errorf("scraps = %+v, want the third done with one move", sc)
		}
	})
}

// Real Odoo's load catches a concurrency failure per row and answers it as
// a message with HTTP 200, rolled back: the client says busy (retry), not
// refused for good, and the retry books the one line.
func TestLoadConcurrencyFailureIsRetried(t *testing.T) {
	for _, m := range modes {
		for _, fault := range []odootest.Fault{odootest.FaultSerialization, odootest.FaultLockConflict} {
			t.Run(m.String()+"/"+fault.String(), func(t *testing.T) {
				ctx := context.Background()
				f, c, loss := withLoss(t, m)
				d := odoo.Downtime{XMLID: "plantedge.site_m1_down_1", WorkcenterID: f.wc, WorkorderID: f.wo, LossID: loss,
					Start: time.Date(2026, 3, 1, 8, 0, 0, 0, time.UTC)}
				f.srv.FailNextCall("mrp.workcenter.productivity", "load", 1, fault)
				_, err := c.UpsertDowntime(ctx, d)
				oe := asError(t, err)
				if !oe.Temporary() || !oe.Busy() || oe.TimedOut() {
					t.Errorf("load refused by a %s: class %v busy %v timed out %v (%v)", fault, oe.Class, oe.Busy(), oe.TimedOut(), err)
				}
				if l := f.srv.Productivity(); len(l) != 0 {
					t.Fatalf("lines after the failed load: %+v", l)
				}
				if _, err := c.UpsertDowntime(ctx, d); err != nil {
					t.Fatalf("retry: %v", err)
				}
				if l := f.srv.Productivity(); len(l) != 1 {
					t.Errorf("lines after the retry: %+v, want one", l)
				}
			})
		}
	}
}

// withLoss is a fixture of mode m, a client connected to it and the id of
// its loss reason "Equipment Failure".
func withLoss(t *testing.T, m mode) (*fixture, *odoo.Client, int64) {
	t.Helper()
	f := newFixture(t, odootest.Options{Version: m.version})
	c := connected(t, f, m.protocol)
	loss, err := c.LossID(context.Background(), "Equipment Failure")
	if err != nil {
		t.Fatal(err)
	}
	return f, c, loss
}

// TestFaults runs a write under every fault in every mode.
func TestFaults(t *testing.T) {
	faults := []struct {
		fault     odootest.Fault
		applied   bool // the write reached the database
		timedOut  bool
		retryWait time.Duration
	}{
		{odootest.FaultHTTP502, false, false, 0},
		{odootest.FaultHTTP503, false, false, time.Second},
		{odootest.FaultSerialization, false, false, 0},
		{odootest.FaultLockConflict, false, false, 0},
		{odootest.FaultCommitThenDrop, true, true, 0},
		{odootest.FaultDatabaseDown, false, false, 0},
	}
	for _, m := range modes {
		for _, ft := range faults {
			t.Run(m.String()+"/"+ft.fault.String(), func(t *testing.T) {
				ctx := context.Background()
				f := newFixture(t, odootest.Options{Version: m.version})
				c := connected(t, f, m.protocol)
				f.srv.FailNext(1, ft.fault)
				err := c.SetProducedQty(ctx, f.wo, 42)
				oe := asError(t, err)
				if !oe.Temporary() || !odoo.IsTemporary(err) || oe.Permanent() {
					t.Errorf("want temporary, got class %v: %v", oe.Class, err)
				}
				if oe.TimedOut() != ft.timedOut {
					t.Errorf("TimedOut() = %v, want %v (%v)", oe.TimedOut(), ft.timedOut, err)
				}
				if oe.RetryAfter != ft.retryWait {
					t.Errorf("RetryAfter = %v, want %v", oe.RetryAfter, ft.retryWait)
				}
				if ft.fault == odootest.FaultDatabaseDown && !oe.Unavailable() {
					t.Errorf("database down: Unavailable() false (%v)", err)
				}
				if ft.fault == odootest.FaultLockConflict && m.protocol == "auto" && m.version == 19 && (oe.Status != http.StatusConflict || oe.Name != "odoo.exceptions.LockError") {
					t.Errorf("JSON-2 lock conflict %d %s, want 409 odoo.exceptions.LockError", oe.Status, oe.Name)
				}
				wo, rerr := c.ReadWorkorder(ctx, f.wo) // the re-read a caller does after TimedOut
				if rerr != nil {
					t.Fatalf("re-read: %v", rerr)
				}
				if got := c.ProducedQty(wo) == 42; got != ft.applied {
					t.Errorf("write applied = %v, want %v", got, ft.applied)
				}
			})
		}
		t.Run(m.String()+"/down", func(t *testing.T) {
			f := newFixture(t, odootest.Options{Version: m.version})
			c := connected(t, f, m.protocol)
			f.srv.SetDown(true)
			err := c.SetProducedQty(context.Background(), f.wo, 5)
			if !odoo.IsTemporary(err) {
				t.Errorf("down: want temporary, got %v", err)
			}
			f.srv.SetDown(false)
			if err := c.SetProducedQty(context.Background(), f.wo, 5); err != nil {
				t.Errorf("after recovery: %v", err)
			}
		})
		t.Run(m.String()+"/worker-killed-at-wall-limit", func(t *testing.T) {
			f := newFixture(t, odootest.Options{Version: m.version})
			c := connected(t, f, m.protocol)
			f.srv.SetRequestLimit(50 * time.Millisecond)
			f.srv.SetLatency(time.Second)
			err := c.SetProducedQty(context.Background(), f.wo, 9)
			if oe := asError(t, err); !oe.Temporary() || !oe.TimedOut() {
				t.Errorf("killed worker: want temporary+timedout, got %v", err)
			}
			f.srv.SetLatency(0)
			if wo, err := c.ReadWorkorder(context.Background(), f.wo); err != nil || c.ProducedQty(wo) == 9 {
				t.Errorf("killed worker committed: %+v %v", wo, err)
			}
		})
		t.Run(m.String()+"/latency-timeout", func(t *testing.T) {
			f := newFixture(t, odootest.Options{Version: m.version})
			// The connect before the latency has the same timeout: at
			// 100 ms it timed out on a busy machine.
			c := f.client(t, m.protocol, func(cfg *odoo.Config) { cfg.Timeout = time.Second })
			if err := c.Connect(context.Background()); err != nil {
				t.Fatalf("Connect: %v", err)
			}
			f.srv.SetLatency(3 * time.Second)
			err := c.SetProducedQty(context.Background(), f.wo, 5)
			oe := asError(t, err)
			if !oe.Temporary() || !oe.TimedOut() {
				t.Errorf("timeout: want temporary+timedout, got %v", err)
			}
			if !odoo.InDoubt(err) {
				t.Errorf("a timeout not in doubt: %v", err)
			}
			f.srv.SetLatency(0)
			// Odoo runs the request its client gave up on, and commits late.
			for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
				wo, err := c.ReadWorkorder(context.Background(), f.wo)
				if err == nil && c.ProducedQty(wo) == 5 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("the abandoned write never committed: %+v %v", wo, err)
				}
			}
		})
	}
}

func TestChaosConverges(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, odootest.Options{Version: 19})
	c := connected(t, f, "auto")
	f.srv.SetFaultRate(odootest.FaultCommitThenDrop, 0.3, 7)
	var fails int
	for i := 1; i <= 40; i++ {
		for attempt := 0; ; attempt++ {
			err := c.SetProducedQty(ctx, f.wo, float64(i))
			if err == nil {
				break
			}
			if !odoo.IsTemporary(err) || attempt > 20 {
				t.Fatalf("write %d: %v", i, err)
			}
			fails++
		}
	}
	f.srv.SetFaultRate(odootest.FaultNone, 0, 0)
	if got := f.srv.Workorder(f.wo).QtyProduced; got != 40 {
		t.Errorf("after chaos: qty_produced %v, want 40", got)
	}
	if fails == 0 {
		t.Errorf("fault rate 0.3 injected no faults")
	}
}

func TestAuthFailures(t *testing.T) {
	for _, m := range modes {
		t.Run(m.String()+"/bad-key", func(t *testing.T) {
			f := newFixture(t, odootest.Options{Version: m.version})
			c := f.client(t, m.protocol, func(cfg *odoo.Config) { cfg.APIKey = strings.Repeat("0", 40) })
			err := c.Connect(context.Background())
			if oe := asError(t, err); !oe.Auth() || !odoo.IsAuth(err) || oe.Expired() || oe.Temporary() {
				t.Errorf("bad key: %v (class %v expired %v)", err, oe.Class, oe.Expired())
			}
		})
		t.Run(m.String()+"/expired-key", func(t *testing.T) {
			f := newFixture(t, odootest.Options{Version: m.version})
			_, key := f.srv.AddUser("plc")
			c := f.client(t, m.protocol, func(cfg *odoo.Config) { cfg.Username, cfg.APIKey = "plc", key })
			if err := c.Connect(context.Background()); err != nil {
				t.Fatalf("Connect: %v", err)
			}
			f.srv.ExpireKey(key)
			err := c.SetProducedQty(context.Background(), f.wo, 1)
			if oe := asError(t, err); !oe.Auth() || !oe.Expired() {
				t.Errorf("expired key: %v (expired %v)", err, oe.Expired())
			}
			err = c.Connect(context.Background())
			if oe := asError(t, err); !oe.Auth() || !oe.Expired() {
				t.Errorf("reconnect with expired key: %v", err)
			}
		})
	}
	t.Run("login-cooldown", func(t *testing.T) {
		f := newFixture(t, odootest.Options{Version: 17})
		f.srv.SetLoginCooldown(3, time.Hour)
		good := connected(t, f, "jsonrpc")
		bad := f.client(t, "jsonrpc", func(cfg *odoo.Config) { cfg.APIKey = strings.Repeat("a", 40) })
		for range 3 {
			if err := bad.Connect(context.Background()); !odoo.IsAuth(err) {
				t.Fatalf("bad login: %v", err)
			}
		}
		// Even the right key is locked out now. authenticate says only false
		// (a wrong key), an object call says why.
		err := f.client(t, "jsonrpc").Connect(context.Background())
		if oe := asError(t, err); !oe.Auth() || oe.LoginCooldown() {
			t.Errorf("login on cooldown: %v", err)
		}
		err = good.SetProducedQty(context.Background(), f.wo, 1)
		if oe := asError(t, err); !oe.Auth() || !oe.LoginCooldown() || oe.Expired() {
			t.Errorf("object call on cooldown: %v (expired %v)", err, oe.Expired())
		}
	})
}

// Odoo upgraded (here 17 to 18 and 18 to 19) and the key revoked meanwhile:
// the login is refused, and the version the server answered with before
// it is what Seen says (status shows it), while ServerVersion keeps the
// one the key last worked with.
func TestSeenIsTheVersionOfARefusedLogin(t *testing.T) {
	for _, up := range []struct {
		from, to  int
		wantProto string
	}{{17, 18, "jsonrpc"}, {18, 19, "json2"}} {
		t.Run(fmt.Sprintf("%d-%d", up.from, up.to), func(t *testing.T) {
			f := newFixture(t, odootest.Options{Version: up.from})
			_, key := f.srv.AddUser("plc")
			c := f.client(t, "auto", func(cfg *odoo.Config) { cfg.Username, cfg.APIKey = "plc", key })
			if err := c.Connect(context.Background()); err != nil {
				t.Fatalf("Connect: %v", err)
			}
			was := c.ServerVersion()
			if p, v := c.Seen(); p != c.Protocol() || v != was {
				t.Errorf("Seen %s %s after a login, want %s %s", p, v, c.Protocol(), was)
			}
			f.srv.ExpireKey(key)
			f.srv.Upgrade(up.to)
			if err := c.Connect(context.Background()); !odoo.IsAuth(err) {
				t.Fatalf("Connect with the key revoked: %v", err)
			}
			want := fmt.Sprintf("%d.0", up.to)
			if p, v := c.Seen(); p != up.wantProto || v != want {
				t.Errorf("Seen %s %s, want %s %s", p, v, up.wantProto, want)
			}
			if c.ServerVersion() != was {
				t.Errorf("ServerVersion %s, want %s (the key last worked with it)", c.ServerVersion(), was)
			}
		})
	}
}

func TestJSON2StringErrorBodies(t *testing.T) {
	f := newFixture(t, odootest.Options{Version: 19, StringErrors: true})
	c := connected(t, f, "auto")
	f.srv.SetWorkorderState(f.wo, "done")
	err := c.SetProducedQty(context.Background(), f.wo, 3)
	oe := asError(t, err)
	if oe.Status != http.StatusUnprocessableEntity || !oe.Permanent() || !strings.Contains(oe.Message, "in done or cancel state") {
		t.Errorf("bare-string 422: %+v", oe)
	}
}

func TestSecretNeverPrinted(t *testing.T) {
	for _, m := range modes {
		t.Run(m.String(), func(t *testing.T) {
			f := newFixture(t, odootest.Options{Version: m.version})
			var logs bytes.Buffer
			var mu sync.Mutex
			log := slog.New(slog.NewTextHandler(&lockedWriter{w: &logs, mu: &mu}, &slog.HandlerOptions{Level: slog.LevelDebug}))
			key := f.srv.AdminKey()
			cfg := odoo.Config{URL: f.url, Database: "odoo", Username: "admin", APIKey: key, Protocol: m.protocol, Logger: log, Timeout: 2 * time.Second}
			c, err := odoo.New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			var out []string
			out = append(out, cfg.String(), fmt.Sprintf("%v %+v %#v %s", cfg, cfg, cfg, c))
			if err := c.Connect(context.Background()); err != nil {
				t.Fatal(err)
			}
			for _, fault := range []odootest.Fault{odootest.FaultHTTP503, odootest.FaultSerialization, odootest.FaultCommitThenDrop} {
				f.srv.FailNext(1, fault)
				err := c.SetProducedQty(context.Background(), f.wo, 1)
				out = append(out, fmt.Sprintf("%v %+v %#v", err, err, err))
			}
			f.srv.ExpireKey(key)
			err = c.SetProducedQty(context.Background(), f.wo, 1)
			out = append(out, fmt.Sprintf("%v %+v", err, err))
			mu.Lock()
			out = append(out, logs.String())
			mu.Unlock()
			for _, s := range out {
				if strings.Contains(s, key) {
					t.Fatalf("API key leaked in: %s", s)
				}
			}
		})
	}
}

type lockedWriter struct {
	w  *bytes.Buffer
	mu *sync.Mutex
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func TestTLSWithCustomCA(t *testing.T) {
	s := odootest.New(odootest.Options{Version: 19})
	ts := s.StartTLS()
	t.Cleanup(s.Close)
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ts.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := odoo.New(odoo.Config{URL: ts.URL, Database: "odoo", Username: "admin", APIKey: s.AdminKey(), CAFile: ca})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Connect(context.Background()); err != nil || c.Protocol() != "json2" {
		t.Fatalf("TLS with CA: %v (protocol %q)", err, c.Protocol())
	}
	plain, err := odoo.New(odoo.Config{URL: ts.URL, Database: "odoo", Username: "admin", APIKey: s.AdminKey()})
	if err != nil {
		t.Fatal(err)
	}
	if err := plain.Connect(context.Background()); err == nil {
		t.Fatal("TLS without the CA: want a certificate error")
	}
	// SPEC: verification is on unless explicitly turned off
	// (odoo.insecure_skip_verify).
	insecure, err := odoo.New(odoo.Config{URL: ts.URL, Database: "odoo", Username: "admin", APIKey: s.AdminKey(), InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := insecure.Connect(context.Background()); err != nil {
		t.Errorf("TLS with verification turned off: %v", err)
	}
	if _, err := odoo.New(odoo.Config{URL: ts.URL, Database: "odoo", Username: "admin", APIKey: "k", CAFile: filepath.Join(t.TempDir(), "none.pem")}); err == nil {
		t.Error("missing CA file: want config error")
	}
}

func TestConnectionReuse(t *testing.T) {
	for _, m := range modes {
		t.Run(m.String(), func(t *testing.T) {
			s := odootest.New(odootest.Options{Version: m.version})
			var conns atomic.Int32
			ts := httptest.NewUnstartedServer(s.Handler())
			ts.Config.ConnState = func(_ net.Conn, st http.ConnState) {
				if st == http.StateNew {
					conns.Add(1)
				}
			}
			ts.Start()
			t.Cleanup(ts.Close)
			wc := s.AddWorkcenter("M1", "Press")
			mo := s.AddProduction("MO1", s.AddProduct("P"), 10)
			wo := s.AddWorkorder(mo, wc, "Op", "progress")
			c, err := odoo.New(odoo.Config{URL: ts.URL, Database: "odoo", Username: "admin", APIKey: s.AdminKey(), Protocol: m.protocol})
			if err != nil {
				t.Fatal(err)
			}
			for i := range 20 {
				if err := c.SetProducedQty(context.Background(), wo, float64(i+1)); err != nil {
					t.Fatal(err)
				}
			}
			if n := conns.Load(); n != 1 {
				t.Errorf("%d TCP connections for 20+ sequential calls, want 1", n)
			}
		})
	}
}

func TestConfigValidation(t *testing.T) {
	cases := []struct {
		name string
		cfg  odoo.Config
		want string
	}{
		{"no-url", odoo.Config{Database: "d", Username: "u", APIKey: "k"}, "url is required"},
		{"bad-scheme", odoo.Config{URL: "ftp://x", Database: "d", Username: "u", APIKey: "k"}, "want http(s)"},
		{"no-key", odoo.Config{URL: "http://x", Database: "d", Username: "u"}, "api key is required"},
		{"no-db-jsonrpc", odoo.Config{URL: "http://x", Username: "u", APIKey: "k", Protocol: "jsonrpc"}, "database is required"},
		{"bad-protocol", odoo.Config{URL: "http://x", Database: "d", Username: "u", APIKey: "k", Protocol: "xmlrpc"}, "protocol"},
		{"negative-timeout", odoo.Config{URL: "http://x", Database: "d", Username: "u", APIKey: "k", Timeout: -1}, "timeout"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := odoo.New(tc.cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("New: %v, want %q", err, tc.want)
			}
		})
	}
	if _, err := odoo.New(odoo.Config{URL: "https://x", APIKey: "k", Protocol: "json2"}); err != nil {
		t.Errorf("json2 needs no database or username: %v", err)
	}
}

// SPEC: "JSON-2 needs only the key". With protocol auto and no username an
// Odoo 19 is reached over JSON-2; a 17/18 is refused with what is missing.
func TestAutoWithoutUsername(t *testing.T) {
	for _, v := range []int{17, 18, 19} {
		t.Run(fmt.Sprint(v), func(t *testing.T) {
			f := newFixture(t, odootest.Options{Version: v})
			c := f.client(t, "auto", func(c *odoo.Config) { c.Username, c.Database = "", "" })
			err := c.Connect(context.Background())
			if v >= 19 {
				if err != nil || c.Protocol() != odoo.ProtocolJSON2 {
					t.Fatalf("Connect = %v over %q, want JSON-2", err, c.Protocol())
				}
				if err := c.SetProducedQty(context.Background(), f.wo, 3); err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), "odoo.username") || !odoo.IsPermanent(err) {
				t.Fatalf("Connect to %d without a username: %v, want a permanent error naming odoo.username", v, err)
			}
		})
	}
}

func TestCallGeneric(t *testing.T) {
	for _, m := range modes {
		t.Run(m.String(), func(t *testing.T) {
			ctx := context.Background()
			f := newFixture(t, odootest.Options{Version: m.version})
			c := f.client(t, m.protocol) // Call connects lazily
			var n int
			if err := c.Call(ctx, "mrp.workorder", "search_count", []any{[]any{[]any{"workcenter_id.code", "=", "M1"}}}, nil, &n); err != nil || n != 1 {
				t.Fatalf("search_count = %d, %v", n, err)
			}
			if err := c.Call(ctx, "mrp.workorder", "button_pending", []any{[]int64{f.wo}}, nil, nil); err != nil {
				t.Errorf("button_pending (returns None): %v", err)
			}
			err := c.Call(ctx, "mrp.workorder", "_action_confirm", []any{[]int64{f.wo}}, nil, nil)
			if !odoo.IsPermanent(err) {
				t.Errorf("private method: %v", err)
			}
			err = c.Call(ctx, "mrp.workorder", "record_production", []any{[]int64{f.wo}}, nil, nil)
			if !odoo.IsPermanent(err) {
				t.Errorf("record_production: %v", err)
			}
		})
	}
}

func TestConcurrentUse(t *testing.T) {
	for _, m := range modes {
		t.Run(m.String(), func(t *testing.T) {
			f := newFixture(t, odootest.Options{Version: m.version})
			c := f.client(t, m.protocol) // not connected: every goroutine races to connect lazily
			var wg sync.WaitGroup
			errs := make(chan error, 8)
			for g := range 8 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := range 10 {
						if err := c.SetProducedQty(context.Background(), f.wo, float64(g*10+i+1)); err != nil {
							errs <- err
							return
						}
						if _, err := c.WorkordersInProgress(context.Background(), f.wc); err != nil {
							errs <- err
							return
						}
					}
				}()
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Error(err)
			}
			if n := f.srv.CallCount("common", "authenticate") + f.srv.CallCount("res.users", "context_get"); n != 1 {
				t.Errorf("%d authentications for concurrent lazy connects, want 1", n)
			}
		})
	}
}

// KeyID tells keys apart without revealing them.
func TestKeyID(t *testing.T) {
	key1, key2 := strings.Repeat("a1", 20), strings.Repeat("b2", 20)
	c1, err := odoo.New(odoo.Config{URL: "http://127.0.0.1:1", Database: "db", Username: "u", APIKey: key1})
	if err != nil {
		t.Fatal(err)
	}
	c1b, _ := odoo.New(odoo.Config{URL: "http://127.0.0.1:1", Database: "db", Username: "u", APIKey: key1})
	c2, _ := odoo.New(odoo.Config{URL: "http://127.0.0.1:1", Database: "db", Username: "u", APIKey: key2})
	if c1.KeyID() != c1b.KeyID() || c1.KeyID() == c2.KeyID() || len(c1.KeyID()) != 8 {
		t.Fatalf("key ids %q %q %q", c1.KeyID(), c1b.KeyID(), c2.KeyID())
	}
	if strings.Contains(key1, c1.KeyID()) {
		t.Fatalf("key id %q is part of the key", c1.KeyID())
	}
}

// A front end that answers in plain text echoing the request (which holds
// the key with JSON-RPC): cutting the message must not leave part of the
// key, and a server message is capped however long.
func TestServerTextNeverCarriesPartOfTheKey(t *testing.T) {
	const key = "0123456789abcdef0123456789abcdef01234567"
	for pad := 0; pad < 200; pad += 7 {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			body, _ := io.ReadAll(r.Body)
			if !bytes.Contains(body, []byte(key)) { // common.version
				fmt.Fprint(w, `{"jsonrpc":"2.0","id":1,"result":{"server_version":"17.0","server_version_info":[17,0,0,"final",0,""],"server_serie":"17.0","protocol_version":1}}`)
				return
			}
			w.Header().Set("Content-Type", "text/plain")
			w.WriteHeader(http.StatusInternalServerError)
			fmt.Fprintf(w, "%s%s", strings.Repeat("x", pad), body)
		}))
		c, err := odoo.New(odoo.Config{URL: srv.URL, Database: "odoo", Username: "bot", APIKey: key, Protocol: odoo.ProtocolJSONRPC, Timeout: 2 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		err = c.Connect(context.Background())
		srv.Close()
		if err == nil || !strings.Contains(err.Error(), "http 500") || strings.Contains(err.Error(), key[:6]) {
			t.Fatalf("pad %d: %v", pad, err)
		}
	}
	long := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, `{"jsonrpc":"2.0","id":1,"error":{"code":200,"message":"Odoo Server Error","data":{"name":"odoo.exceptions.ValidationError","message":%q}}}`,
			strings.Repeat("é", 1<<20))
	}))
	defer long.Close()
	c, err := odoo.New(odoo.Config{URL: long.URL, Database: "odoo", Username: "bot", APIKey: key, Protocol: odoo.ProtocolJSONRPC, Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	err = c.Connect(context.Background())
	if err == nil || len(err.Error()) > 2200 || !utf8.ValidString(err.Error()) {
		t.Fatalf("a 2 MB server message gave an error of %d bytes (valid UTF-8: %v)", len(err.Error()), utf8.ValidString(err.Error()))
	}
}

// A redirect is not followed (it could take the key elsewhere, even to
// plain http): a transient error that names where it pointed.
func TestRedirectNotFollowed(t *testing.T) {
	var reached atomic.Int32
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { reached.Add(1) }))
	defer other.Close()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, other.URL+r.URL.Path, http.StatusTemporaryRedirect)
	}))
	defer srv.Close()
	for _, p := range []string{odoo.ProtocolJSONRPC, odoo.ProtocolJSON2, odoo.ProtocolAuto} {
		c, err := odoo.New(odoo.Config{URL: srv.URL, Database: "odoo", Username: "bot", APIKey: "0123456789abcdef", Protocol: p, Timeout: 2 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		err = c.Connect(context.Background())
		if err == nil || odoo.IsPermanent(err) || !strings.Contains(err.Error(), "redirected to "+other.URL) {
			t.Errorf("%s: %v (permanent %v)", p, err, odoo.IsPermanent(err))
		}
	}
	if n := reached.Load(); n != 0 {
		t.Fatalf("the redirect target got %d requests", n)
	}
}

// What something in front of Odoo answers during maintenance (a 200 HTML
// page, an empty JSON object, its own 401 login page) is not a refusal by
// Odoo: transient, so nothing is dead-lettered.
func TestProxyAnswersAreTransient(t *testing.T) {
	const key = "0123456789abcdef0123456789abcdef01234567"
	for _, c := range []struct {
		name, proto string
		status      int
		ctype, body string
	}{
		{"json2 200 html", odoo.ProtocolJSON2, 200, "text/html", "<html><body>Down for maintenance</body></html>"},
		{"json2 200 empty", odoo.ProtocolJSON2, 200, "application/json", ""},
		{"json2 401 html", odoo.ProtocolJSON2, 401, "text/html", "<html>Sign in to the proxy</html>"},
		{"jsonrpc 200 html", odoo.ProtocolJSONRPC, 200, "text/html", "<html>maintenance</html>"},
		{"jsonrpc 200 {}", odoo.ProtocolJSONRPC, 200, "application/json", "{}"},
	} {
		t.Run(c.name, func(t *testing.T) {
			var broken atomic.Bool
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				body, _ := io.ReadAll(r.Body)
				if broken.Load() {
					w.Header().Set("Content-Type", c.ctype)
					w.WriteHeader(c.status)
					io.WriteString(w, c.body)
					return
				}
				w.Header().Set("Content-Type", "application/json")
				switch {
				case r.URL.Path == "/web/version":
					io.WriteString(w, `{"version":"19.0","version_info":[19,0,0,"final",0,""]}`)
				case strings.HasSuffix(r.URL.Path, "/context_get"):
					io.WriteString(w, `{"uid":3}`)
				case bytes.Contains(body, []byte(`"authenticate"`)):
					io.WriteString(w, rpcResult(body, `3`))
				default:
					io.WriteString(w, rpcResult(body, `{"server_version":"17.0","server_version_info":[17,0,0,"final",0,""]}`))
				}
			}))
			defer srv.Close()
			cl, err := odoo.New(odoo.Config{URL: srv.URL, Database: "odoo", Username: "bot", APIKey: key, Protocol: c.proto, Timeout: 2 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			if err := cl.Connect(context.Background()); err != nil {
				t.Fatal(err)
			}
			broken.Store(true)
			err = cl.SetProducedQty(context.Background(), 7, 5)
			if err == nil || odoo.IsPermanent(err) || odoo.IsAuth(err) || !odoo.IsTemporary(err) {
				t.Fatalf("err = %v (permanent %v, auth %v)", err, odoo.IsPermanent(err), odoo.IsAuth(err))
			}
		})
	}
}

// Odoo goes down for an upgrade and comes back as 19: the client reads the
// version again after it could not reach Odoo, so it switches to JSON-2
// and to 19's quantity field instead of writing 17/18's qty_producing,
// which on 19 would leave the work order's own quantity at 0.
func TestReconnectAfterAnUpgrade(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, odootest.Options{Version: 18})
	c := connected(t, f, "auto")
	if err := c.SetProducedQty(ctx, f.wo, 10); err != nil {
		t.Fatal(err)
	}
	if c.Protocol() != "jsonrpc" || c.Major() != 18 {
		t.Fatalf("before: %s %d", c.Protocol(), c.Major())
	}

	f.srv.SetDown(true)
	if err := c.SetProducedQty(ctx, f.wo, 11); err == nil {
		t.Fatal("a write while Odoo is down succeeded")
	}
	f.srv.Upgrade(19)
	f.srv.SetDown(false)

	if err := c.SetProducedQty(ctx, f.wo, 12); err != nil {
		t.Fatal(err)
	}
	if c.Protocol() != "json2" || c.Major() != 19 || c.ServerVersion() != "19.0" {
		t.Errorf("after the upgrade: %s %d %s, want json2 19 19.0", c.Protocol(), c.Major(), c.ServerVersion())
	}
	if wo := f.srv.Workorder(f.wo); wo.QtyProduced != 12 {
		t.Errorf("work order after the upgrade: qty_produced %v, want 12 (written as 19's field)", wo.QtyProduced)
	}

	// Reachable all along: no extra version reads between calls.
	n := len(f.srv.Calls())
	for range 3 {
		if _, err := c.WorkordersInProgress(ctx, f.wc); err != nil {
			t.Fatal(err)
		}
	}
	if got := len(f.srv.Calls()) - n; got != 3 {
		t.Errorf("3 reads while Odoo is up made %d calls", got)
	}
}

// Odoo upgraded while the agent had nothing to send: no call failed, yet
// after a quiet spell the next call reads the version first.
func TestReconnectAfterAQuietSpell(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, odootest.Options{Version: 17})
	const idle = 200 * time.Millisecond
	c := f.client(t, "auto", func(c *odoo.Config) { c.IdleRecheck = idle })
	// "Right after a call" holds only while less than idle has passed since
	// the call began (a loaded machine may pause the test longer): beyond
	// that, a pending connect is right and says nothing.
	callAt := time.Now()
	if err := c.SetProducedQty(ctx, f.wo, 10); err != nil {
		t.Fatal(err)
	}
	if c.NeedsConnect() && time.Since(callAt) < idle {
		t.Error("a connect is pending right after a call")
	}
	// A quiet spell with the same Odoo: the version is read, no new login.
	logins := f.srv.CallCount("common", "authenticate")
	time.Sleep(idle + 100*time.Millisecond)
	if !c.NeedsConnect() {
		t.Fatal("no connect pending after a quiet spell longer than IdleRecheck")
	}
	callAt = time.Now()
	if err := c.SetProducedQty(ctx, f.wo, 11); err != nil {
		t.Fatal(err)
	}
	if n := f.srv.CallCount("common", "authenticate"); n != logins || (c.NeedsConnect() && time.Since(callAt) < idle) {
		t.Errorf("after a quiet spell with the same version: %d logins (was %d), connect pending %v", n, logins, c.NeedsConnect())
	}
	f.srv.Upgrade(19)
	time.Sleep(idle + 100*time.Millisecond)
	if !c.NeedsConnect() {
		t.Fatal("no connect pending after a quiet spell longer than IdleRecheck")
	}
	if err := c.SetProducedQty(ctx, f.wo, 12); err != nil {
		t.Fatal(err)
	}
	if c.Protocol() != "json2" || c.ServerVersion() != "19.0" {
		t.Errorf("after the upgrade: %s %s, want json2 19.0", c.Protocol(), c.ServerVersion())
	}
	if wo := f.srv.Workorder(f.wo); wo.QtyProduced != 12 {
		t.Errorf("work order after the upgrade: qty_produced %v, want 12", wo.QtyProduced)
	}
}

// Odoo upgraded behind a proxy that switched to the upgraded copy: no call
// failed and Odoo never fell quiet, yet the version is read again within
// VersionRecheck and the quantity goes to 19's field (the odooupgrade
// probe: a busy plant wrote 18's qty_producing for good).
func TestVersionReadAgainWhileBusy(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, odootest.Options{Version: 18})
	c := f.client(t, "auto", func(c *odoo.Config) { c.VersionRecheck = 300 * time.Millisecond })
	if err := c.SetProducedQty(ctx, f.wo, 10); err != nil {
		t.Fatal(err)
	}
	logins := f.srv.CallCount("common", "authenticate")
	// Busy with the same Odoo: the version is read, the session stands.
	for range 8 {
		time.Sleep(50 * time.Millisecond)
		if err := c.SetProducedQty(ctx, f.wo, 11); err != nil {
			t.Fatal(err)
		}
	}
	if n := f.srv.CallCount("common", "authenticate"); n != logins {
		t.Errorf("%d logins while the version stayed (was %d)", n, logins)
	}
	f.srv.Upgrade(19)
	for i := 0; c.Protocol() != "json2" && i < 20; i++ {
		time.Sleep(50 * time.Millisecond)
		if err := c.SetProducedQty(ctx, f.wo, 12); err != nil {
			t.Fatal(err)
		}
	}
	if c.Protocol() != "json2" || c.ServerVersion() != "19.0" {
		t.Fatalf("busy through the upgrade: %s %s, want json2 19.0", c.Protocol(), c.ServerVersion())
	}
	if err := c.SetProducedQty(ctx, f.wo, 12); err != nil {
		t.Fatal(err)
	}
	if wo := f.srv.Workorder(f.wo); wo.QtyProduced != 12 {
		t.Errorf("work order after the upgrade: qty_produced %v, want 12", wo.QtyProduced)
	}
}

// A failed upgrade rolled back behind a proxy, with no call failing: Odoo
// 17 answers JSON-2 with a 404 page, which used to be retried for good
// (forwarding stopped until a restart: the odooupgrade probe), 18 with a
// redirect to its login page. Either makes the next call read the version
// again, and JSON-RPC goes on.
func TestRollbackBehindAProxyIsFollowed(t *testing.T) {
	// 17 answers JSON-2's path with a 404 page, 18 sends the caller to
	// its login page (its web client's /json route).
	for _, v := range []int{17, 18} {
		ctx := context.Background()
		f := newFixture(t, odootest.Options{Version: v})
		backup := f.srv.Backup()
		f.srv.Upgrade(19)
		c := f.client(t, "auto")
		if err := c.SetProducedQty(ctx, f.wo, 10); err != nil || c.Protocol() != "json2" {
			t.Fatalf("on 19: %v, %s", err, c.Protocol())
		}
		f.srv.RestoreBackup(backup)
		var err error
		for range 3 {
			if err = c.SetProducedQty(ctx, f.wo, 11); err == nil {
				break
			}
		}
		if want := fmt.Sprintf("%d.0", v); err != nil || c.Protocol() != "jsonrpc" || c.ServerVersion() != want {
			t.Fatalf("after the rollback to %d: %v, %s %s, want jsonrpc %s", v, err, c.Protocol(), c.ServerVersion(), want)
		}
		if wo := f.srv.Workorder(f.wo); wo.QtyProducing != 11 {
			t.Errorf("work order after the rollback to %d: qty_producing %v, want 11", v, wo.QtyProducing)
		}
	}
}

// A line left open in an Odoo the agent was pointed away from is closed by
// its database id when it comes back: only while it is open and began at
// the stop's start.
func TestCloseDowntimeLine(t *testing.T) {
	for _, m := range modes {
		t.Run(m.String(), func(t *testing.T) {
			ctx := context.Background()
			f, c, loss := withLoss(t, m)
			start := time.Date(2026, 3, 1, 8, 0, 0, 0, time.UTC)
			id, err := c.UpsertDowntime(ctx, odoo.Downtime{XMLID: "plantedge.site_m1_downtime_1", WorkcenterID: f.wc, LossID: loss, Start: start})
			if err != nil {
				t.Fatal(err)
			}
			if ok, err := c.CloseDowntimeLine(ctx, id, start.Add(time.Second), start.Add(time.Hour)); ok || err != nil {
				t.Errorf("a line that began at another time: %v, %v; want false", ok, err)
			}
			end := start.Add(7 * time.Minute)
			if ok, err := c.CloseDowntimeLine(ctx, id, start.Add(300*time.Millisecond), end); !ok || err != nil {
				t.Fatalf("close: %v, %v", ok, err)
			}
			if lines := f.srv.Productivity(); len(lines) != 1 || !lines[0].End.Equal(end) || !lines[0].Start.Equal(start) {
				t.Fatalf("lines %+v", lines)
			}
			if st := f.srv.WorkingState(f.wc); st != "normal" {
				t.Errorf("working_state %q after the close, want normal", st)
			}
			if ok, err := c.CloseDowntimeLine(ctx, id, start, end.Add(time.Hour)); ok || err != nil {
				t.Errorf("closed already: %v, %v; want false", ok, err)
			}
			if lines := f.srv.Productivity(); !lines[0].End.Equal(end) {
				t.Errorf("a closed line's end moved: %+v", lines[0])
			}
			if ok, err := c.CloseDowntimeLine(ctx, id+100, start, end); ok || err != nil {
				t.Errorf("no such line: %v, %v; want false", ok, err)
			}
		})
	}
}

// TestWorkedFirstPerWorkcenter: of several work orders in progress, the
// one work last began on — judged on each work center's own time lines
// (600 lines of another's once pushed a resumed order out of a window they
// shared), and not by a start ahead of now (a paused order the planner
// rescheduled: from 17 on date_start is also the planned start).
func TestWorkedFirstPerWorkcenter(t *testing.T) {
	ctx := context.Background()
	f, c, loss := timerFixture(t)
	line := func(wc, wo int64, start time.Time, open bool) {
		t.Helper()
		vals := map[string]any{"workcenter_id": wc, "workorder_id": wo, "loss_id": loss,
			"date_start": start.UTC().Format(time.DateTime)}
		if !open {
			vals["date_end"] = start.Add(time.Second).UTC().Format(time.DateTime)
		}
		if err := c.Call(ctx, "mrp.workcenter.productivity", "create", []any{vals}, nil, nil); err != nil {
			t.Fatal(err)
		}
	}
	now := time.Now()
	// Work center 1: the fixture's order worked two hours ago, paused and
	// rescheduled to tomorrow; the rush order paused and resumed 600
	// times in the last ten minutes.
	rush := f.srv.AddWorkorder(f.mo, f.wc, "Rush", "progress")
	f.srv.SetWorkorderDateStart(rush, now.Add(-10*time.Minute))
	line(f.wc, f.wo, now.Add(-2*time.Hour), false)
	f.srv.SetWorkorderDateStart(f.wo, now.Add(24*time.Hour))
	for i := range 600 {
		line(f.wc, rush, now.Add(-10*time.Minute+time.Duration(i)*time.Second), i == 599)
	}
	// Work center 2: the order resumed an hour ago, the other started
	// after it and paused since.
	wc2 := f.srv.AddWorkcenter("M2", "Press 2")
	resumed := f.srv.AddWorkorder(f.mo, wc2, "Resumed", "progress")
	paused := f.srv.AddWorkorder(f.mo, wc2, "Paused", "progress")
	f.srv.SetWorkorderDateStart(resumed, now.Add(-3*time.Hour))
	f.srv.SetWorkorderDateStart(paused, now.Add(-2*time.Hour))
	line(wc2, paused, now.Add(-2*time.Hour), false)
	line(wc2, resumed, now.Add(-time.Hour), true)

	byWC, err := c.WorkordersInProgressOn(ctx, []int64{f.wc, wc2})
	if err != nil {
		t.Fatal(err)
	}
	if got := byWC[f.wc]; len(got) != 2 || got[0].ID != rush {
		t.Errorf("work center 1: %+v, want the rush order first (the other is rescheduled, not started ahead)", got)
	}
	if got := byWC[wc2]; len(got) != 2 || got[0].ID != resumed {
		t.Errorf("work center 2: %+v, want the resumed order first", got)
	}
}

// clockedFixture is an Odoo fixture of version v whose clock stands at t0
// (an hour ago, in whole seconds) until the test sets *clock; its work
// order in progress started at t0.
func clockedFixture(t *testing.T, v int) (f *fixture, t0 time.Time, clock *time.Time) {
	t.Helper()
	f = newFixture(t, odootest.Options{Version: v})
	t0 = time.Now().Add(-time.Hour).Truncate(time.Second)
	now := t0
	clock = &now
	f.srv.SetNow(func() time.Time { return *clock })
	f.srv.SetWorkorderDateStart(f.wo, t0)
	return f, t0, clock
}

// press presses work order id's button method as user uid (Server.Press:
// 2 is the administrator), failing t if Odoo refuses it.
func (f *fixture) press(t *testing.T, uid int64, method string, id int64) {
	t.Helper()
	if err := f.srv.Press(uid, method, id); err != nil {
		t.Fatal(err)
	}
}

// Odoo cuts the timer of an order that has run past its expected duration
// when it closes it: the overrun becomes a Reduced Speed line of its own,
// starting where the overrun began (_close). That start is not when work
// on the order began: A, started first and paused after B was started
// (its operator forgot to pause it), had its overrun line start after B's
// start and was taken for the order worked on (the Odoo fidelity probe).
func TestWorkedFirstAfterOdooCutsAnOverrunTimer(t *testing.T) {
	ctx := context.Background()
	f, t0, clock := clockedFixture(t, 17)
	c := connected(t, f, "auto")
	f.srv.SetWorkorderDurationExpected(f.wo, 3.0/60) // 3 s
	start := func(wo int64, method string) {
		t.Helper()
		if err := c.Call(ctx, "mrp.workorder", method, []any{[]int64{wo}}, nil, nil); err != nil {
			t.Fatal(err)
		}
	}
	start(f.wo, "button_start")
	*clock = t0.Add(2 * time.Second)
	rush := f.srv.AddWorkorder(f.mo, f.wc, "Rush", "ready")
	start(rush, "button_start")
	*clock = t0.Add(4 * time.Second)
	start(f.wo, "button_pending") // 4 s against 3 expected: the last second is overrun
	var lines []struct {
		Start string `json:"date_start"`
		End   string `json:"date_end"`
		Loss  []any  `json:"loss_id"`
	}
	if err := c.Call(ctx, "mrp.workcenter.productivity", "search_read", []any{[]any{[]any{"workorder_id", "=", f.wo}}},
		map[string]any{"fields": []string{"date_start", "date_end", "loss_id"}, "order": "date_start asc"}, &lines); err != nil {
		t.Fatal(err)
	}
	ts := func(d time.Duration) string { return t0.Add(d).UTC().Format(time.DateTime) }
	if len(lines) != 2 || lines[0].Start != ts(0) || lines[0].End != ts(3*time.Second) || fmt.Sprint(lines[0].Loss[1]) != "Fully Productive Time" ||
		lines[1].Start != ts(3*time.Second) || lines[1].End != ts(4*time.Second) || fmt.Sprint(lines[1].Loss[1]) != "Reduced Speed" {
		t.Fatalf("the paused order's time lines: %+v, want its timer cut at 3 s, the overrun Reduced Speed", lines)
	}
	byWC, err := c.WorkordersInProgressOn(ctx, []int64{f.wc})
	if err != nil {
		t.Fatal(err)
	}
	if got := byWC[f.wc]; len(got) != 2 || got[0].ID != rush {
		t.Errorf("%+v, want the rush order first: work on the other began before it", got)
	}
	// Resumed past its expected duration, the order's timer is Reduced
	// Speed from its start (_prepare_timeline_vals: duration >
	// duration_expected): a start of work all the same, not a cut.
	*clock = t0.Add(10 * time.Second)
	start(f.wo, "button_start")
	if err := c.Call(ctx, "mrp.workcenter.productivity", "search_read", []any{[]any{[]any{"workorder_id", "=", f.wo}, []any{"date_end", "=", false}}},
		map[string]any{"fields": []string{"date_start", "loss_id"}}, &lines); err != nil {
		t.Fatal(err)
	}
	if len(lines) != 1 || lines[0].Start != ts(10*time.Second) || fmt.Sprint(lines[0].Loss[1]) != "Reduced Speed" {
		t.Fatalf("the resumed timer: %+v, want Reduced Speed from 10 s", lines)
	}
	if byWC, err = c.WorkordersInProgressOn(ctx, []int64{f.wc}); err != nil {
		t.Fatal(err)
	}
	if got := byWC[f.wc]; len(got) != 2 || got[0].ID != f.wo {
		t.Errorf("%+v, want the resumed order first: work on it began last", got)
	}
}

// Two operators: Y's timer on A runs all along; X starts rush order B,
// then pauses it and joins Y on A. Work last began on A, when X joined it:
// a second operator's timer is not Odoo's cut of an overrun timer (the
// review: B, with no timer running, was taken).
func TestWorkedFirstWithTwoOperators(t *testing.T) {
	ctx := context.Background()
	f, c, loss := timerFixture(t)
	y, _ := f.srv.AddUser("operator-y")
	x, _ := f.srv.AddUser("operator-x")
	t0 := time.Now().Add(-time.Hour).Truncate(time.Second)
	f.srv.SetWorkorderDateStart(f.wo, t0)
	rush := f.srv.AddWorkorder(f.mo, f.wc, "Rush", "progress")
	f.srv.SetWorkorderDateStart(rush, t0.Add(10*time.Second))
	line := func(wo, user int64, from, to time.Duration) {
		t.Helper()
		vals := map[string]any{"workcenter_id": f.wc, "workorder_id": wo, "loss_id": loss, "user_id": user,
			"date_start": t0.Add(from).UTC().Format(time.DateTime)}
		if to != 0 {
			vals["date_end"] = t0.Add(to).UTC().Format(time.DateTime)
		}
		if err := c.Call(ctx, "mrp.workcenter.productivity", "create", []any{vals}, nil, nil); err != nil {
			t.Fatal(err)
		}
	}
	line(f.wo, y, 0, 0)                           // Y on A, running
	line(rush, x, 10*time.Second, 20*time.Second) // X on B, paused
	line(f.wo, x, 20*time.Second, 0)              // X joins A
	byWC, err := c.WorkordersInProgressOn(ctx, []int64{f.wc})
	if err != nil {
		t.Fatal(err)
	}
	if got := byWC[f.wc]; len(got) != 2 || got[0].ID != f.wo {
		t.Errorf("%+v, want A first: X began work on it after pausing B", got)
	}
}

// The timeline of a work center: A worked, paused for rush order B, B
// paused (still in progress), A resumed. By the time lines each stretch
// has its order; a bot that may not read them gets the orders' first
// starts, which a resume does not move.
func TestWorkTimeline(t *testing.T) {
	ctx := context.Background()
	f, t0, clock := clockedFixture(t, 17)
	f.press(t, 2, "button_start", f.wo)
	*clock = t0.Add(10 * time.Second)
	rush := f.srv.AddWorkorder(f.mo, f.wc, "Rush", "ready")
	f.press(t, 2, "button_pending", f.wo)
	f.press(t, 2, "button_start", rush)
	*clock = t0.Add(20 * time.Second)
	f.press(t, 2, "button_pending", rush)
	f.press(t, 2, "button_start", f.wo)
	*clock = t0.Add(30 * time.Second)
	_, key := f.srv.AddUser("bot")
	bot := f.client(t, "auto", func(c *odoo.Config) { c.Username, c.APIKey = "bot", key })
	id := func(wo *odoo.Workorder) int64 {
		if wo == nil {
			return 0
		}
		return wo.ID
	}
	check := func(tl odoo.Timeline, want [][3]int64) {
		t.Helper()
		for i, sec := range []int{5, 15, 25} {
			at, next, nextAt := tl.At(t0.Add(time.Duration(sec) * time.Second))
			got := [3]int64{id(at), id(next), 0}
			if next != nil {
				got[2] = int64(nextAt.Sub(t0) / time.Second)
			}
			if got != want[i] {
				t.Errorf("at %d s: %v (order, next, next's start in s), want %v", sec, got, want[i])
			}
		}
	}
	tl, err := bot.WorkTimeline(ctx, f.wc, t0)
	if err != nil {
		t.Fatal(err)
	}
	check(tl, [][3]int64{{f.wo, rush, 10}, {rush, f.wo, 20}, {f.wo, 0, 0}})
	f.srv.DenyAccess("bot", "mrp.workcenter.productivity", "read")
	if tl, err = bot.WorkTimeline(ctx, f.wc, t0); err != nil {
		t.Fatal(err)
	}
	check(tl, [][3]int64{{f.wo, rush, 10}, {rush, 0, 0}, {rush, 0, 0}})
}

// What the re-review found in the timeline: Odoo's cut of an overrun timer
// taken for a start of work, an order in progress with no timer left out,
// and time lines past the first 2,000 not read.
func TestWorkTimelineCutsOrdersWithoutTimersAndPages(t *testing.T) {
	ctx := context.Background()
	setup := func(t *testing.T) (*fixture, *odoo.Client, time.Time, *time.Time) {
		f, t0, clock := clockedFixture(t, 17)
		return f, connected(t, f, "auto"), t0, clock
	}
	worked := func(t *testing.T, c *odoo.Client, f *fixture, t0 time.Time, at time.Duration) int64 {
		t.Helper()
		tl, err := c.WorkTimeline(ctx, f.wc, t0)
		if err != nil {
			t.Fatal(err)
		}
		wo, _, _ := tl.At(t0.Add(at))
		if wo == nil {
			return 0
		}
		return wo.ID
	}
	t.Run("overrun cut", func(t *testing.T) {
		f, c, t0, clock := setup(t)
		y, _ := f.srv.AddUser("operator-y")
		x, _ := f.srv.AddUser("operator-x")
		f.srv.SetWorkorderDurationExpected(f.wo, 2) // minutes
		f.press(t, y, "button_start", f.wo)
		*clock = t0.Add(time.Minute)
		rush := f.srv.AddWorkorder(f.mo, f.wc, "Rush", "ready")
		f.press(t, x, "button_start", rush)
		*clock = t0.Add(5 * time.Minute)
		f.press(t, y, "button_pending", f.wo) // cut at 2 min: the rest Reduced Speed
		if got := worked(t, c, f, t0, 200*time.Second); got != rush {
			t.Errorf("at 200 s: order %d, want the rush order %d (work on A began before it)", got, rush)
		}
	})
	t.Run("order without a timer", func(t *testing.T) {
		f, c, t0, clock := setup(t)
		f.press(t, 2, "button_start", f.wo)
		*clock = t0.Add(10 * time.Second)
		f.press(t, 2, "button_pending", f.wo)
		rush := f.srv.AddWorkorder(f.mo, f.wc, "Rush", "progress") // no timer
		f.srv.SetWorkorderDateStart(rush, t0.Add(10*time.Second))
		if got := worked(t, c, f, t0, 20*time.Second); got != rush {
			t.Errorf("at 20 s: order %d, want the rush order %d, started without a timer", got, rush)
		}
	})
	t.Run("cancelled orders", func(t *testing.T) {
		// A worked 10 s and cancelled (its timer closed by action_cancel);
		// B cancelled without a timer ever run, its planned start at 20 s:
		// A's stretch is its own up to its cancel, B is no order worked on
		// (the operators probe: both were left out).
		f, c, t0, clock := setup(t)
		f.press(t, 2, "button_start", f.wo)
		*clock = t0.Add(10 * time.Second)
		f.press(t, 2, "action_cancel", f.wo)
		b := f.srv.AddWorkorder(f.mo, f.wc, "B", "ready")
		f.srv.SetWorkorderDateStart(b, t0.Add(20*time.Second))
		*clock = t0.Add(30 * time.Second)
		f.press(t, 2, "action_cancel", b)
		tl, err := c.WorkTimeline(ctx, f.wc, t0)
		if err != nil {
			t.Fatal(err)
		}
		at, _, _ := tl.At(t0.Add(5 * time.Second))
		if at == nil || at.ID != f.wo || at.State != "cancel" || !at.DateFinished.Equal(t0.Add(10*time.Second)) {
			t.Errorf("at 5 s: %+v, want A, cancelled, ended at 10 s", at)
		}
		for _, sec := range []int{15, 25} {
			if at, _, _ := tl.At(t0.Add(time.Duration(sec) * time.Second)); at != nil {
				t.Errorf("at %d s: %+v, want none (A cancelled at 10 s, B never worked on)", sec, at)
			}
		}
		// C worked from 40 s and cancelled at 50 s, D from 60 s: what was
		// made at 35 s, while none was in progress, goes to D — the next
		// order not cancelled (the review) — and its stretch ends at C's
		// start, where C's own begins.
		*clock = t0.Add(40 * time.Second)
		cID := f.srv.AddWorkorder(f.mo, f.wc, "C", "ready")
		f.press(t, 2, "button_start", cID)
		*clock = t0.Add(50 * time.Second)
		f.press(t, 2, "action_cancel", cID)
		*clock = t0.Add(60 * time.Second)
		d := f.srv.AddWorkorder(f.mo, f.wc, "D", "ready")
		f.press(t, 2, "button_start", d)
		*clock = t0.Add(70 * time.Second)
		if tl, err = c.WorkTimeline(ctx, f.wc, t0); err != nil {
			t.Fatal(err)
		}
		at, next, nextAt := tl.At(t0.Add(35 * time.Second))
		if at != nil || next == nil || next.ID != d || !nextAt.Equal(t0.Add(60*time.Second)) {
			t.Errorf("at 35 s: %+v, next %+v at %v; want none, then D at 60 s", at, next, nextAt)
		}
		if ns := tl.NextStart(t0.Add(35 * time.Second)); !ns.Equal(t0.Add(40 * time.Second)) {
			t.Errorf("NextStart(35 s) = %v, want C's start, 40 s", ns)
		}
		if at, _, _ := tl.At(t0.Add(45 * time.Second)); at == nil || at.ID != cID {
			t.Errorf("at 45 s: %+v, want C", at)
		}
	})
	t.Run("more than a page of time lines", func(t *testing.T) {
		f, c, t0, clock := setup(t)
		for i := range 2005 { // an operator pausing and resuming A all week
			*clock = t0.Add(time.Duration(i) * time.Second)
			f.press(t, 2, "button_start", f.wo)
			f.press(t, 2, "button_pending", f.wo)
		}
		*clock = t0.Add(3000 * time.Second)
		rush := f.srv.AddWorkorder(f.mo, f.wc, "Rush", "ready")
		f.press(t, 2, "button_start", rush)
		if got := worked(t, c, f, t0, 3100*time.Second); got != rush {
			t.Errorf("after 2,005 time lines: order %d, want the rush order %d", got, rush)
		}
	})
}

// timerFixture is an Odoo 17 fixture, a client connected to it, and the id
// of its productive loss (operators' timers).
func timerFixture(t *testing.T) (*fixture, *odoo.Client, int64) {
	t.Helper()
	f := newFixture(t, odootest.Options{Version: 17})
	c := connected(t, f, "auto")
	loss, err := c.LossID(context.Background(), "Fully Productive Time")
	if err != nil {
		t.Fatal(err)
	}
	return f, c, loss
}

// OthersWorked, which spares a backlog's drain a timeline per work center,
// says "another order was in play" exactly when WorkTimeline would show one
// from the time asked (or errs towards "another", which only costs the
// timeline): a rush order finished after it, or whose time line was open
// then; not one finished before it; for every work center of one
// call with its own time, and from the orders alone when time lines may
// not be read. Odoo 17 (JSON-RPC) and 19 (JSON-2).
func TestOthersWorked(t *testing.T) {
	ctx := context.Background()
	for _, v := range []int{17, 19} {
		t.Run(fmt.Sprint(v), func(t *testing.T) {
			f, t0, clock := clockedFixture(t, v)
			// Work center 1: wo, paused at 10 s for a rush order finished
			// at 20 s, then resumed. Work center 2: its order alone.
			f.press(t, 2, "button_start", f.wo)
			*clock = t0.Add(10 * time.Second)
			rush := f.srv.AddWorkorder(f.mo, f.wc, "Rush", "ready")
			f.press(t, 2, "button_pending", f.wo)
			f.press(t, 2, "button_start", rush)
			*clock = t0.Add(20 * time.Second)
			f.press(t, 2, "button_finish", rush)
			f.press(t, 2, "button_start", f.wo)
			wc2 := f.srv.AddWorkcenter("M2", "Press 2")
			wo2 := f.srv.AddWorkorder(f.mo, wc2, "Pressing 2", "ready")
			*clock = t0.Add(5 * time.Second)
			f.press(t, 2, "button_start", wo2)
			*clock = t0.Add(30 * time.Second)
			_, key := f.srv.AddUser("bot")
			bot := f.client(t, "auto", func(c *odoo.Config) { c.Username, c.APIKey = "bot", key })
			sole := map[int64]int64{f.wc: f.wo, wc2: wo2}
			ask := func(at1, at2 time.Duration) map[int64]bool {
				t.Helper()
				got, err := bot.OthersWorked(ctx, sole, map[int64]time.Time{f.wc: t0.Add(at1), wc2: t0.Add(at2)})
				if err != nil {
					t.Fatal(err)
				}
				return got
			}
			for _, c := range []struct {
				at   time.Duration
				want bool
			}{
				{0, true}, {15 * time.Second, true},
				// Within the second the rush order was finished in:
				// "another", as a finished order's second is its own
				// (the timeline has the resumed order from 20 s on; the
				// drain reads it then, as before).
				{20 * time.Second, true}, {20500 * time.Millisecond, true},
				{21 * time.Second, false}, {25 * time.Second, false},
			} {
				got := ask(c.at, 0)
				if got[f.wc] != c.want || got[wc2] {
					t.Errorf("from %v: %v, want work center 1 %v, 2 false", c.at, got, c.want)
				}
				tl, err := bot.WorkTimeline(ctx, f.wc, t0.Add(c.at))
				if err != nil {
					t.Fatal(err)
				}
				var seen bool
				for s := c.at; s <= 30*time.Second; s += 500 * time.Millisecond {
					at, next, _ := tl.At(t0.Add(s))
					seen = seen || at != nil && at.ID != f.wo || next != nil && next.ID != f.wo
				}
				if seen && !got[f.wc] {
					t.Errorf("from %v: WorkTimeline shows another order, OthersWorked said none", c.at)
				}
			}
			f.srv.DenyAccess("bot", "mrp.workcenter.productivity", "read")
			if got := ask(15*time.Second, 0); !got[f.wc] {
				t.Errorf("time lines refused, from 15 s: %v, want the rush order (finished at 20 s) seen", got)
			}
			if got := ask(25*time.Second, 0); got[f.wc] || got[wc2] {
				t.Errorf("time lines refused, from 25 s: %v, want none", got)
			}
		})
	}
}

// A programming-level error inside a method (here an invalid field) is
// permanent on every protocol: JSON-2 answers it with 500 and its name,
// which was retried for good where JSON-RPC dead-lettered it or said so at
// ERROR (the fidelity probe). A bare 500 stays transient.
func TestServerErrorNamedIsClassifiedAsOverJSONRPC(t *testing.T) {
	eachMode(t, func(t *testing.T, _ mode, f *fixture, c *odoo.Client) {
		var rows []map[string]any
		err := c.Call(context.Background(), "mrp.workorder", "search_read", []any{[]any{[]any{"state", "=", "progress"}}},
			map[string]any{"fields": []string{"id", "no_such_field"}}, &rows)
		if oe := asError(t, err); !oe.Permanent() || oe.Temporary() || !strings.Contains(oe.Message, "no_such_field") {
			t.Errorf("invalid field: %+v, permanent %v", oe, oe.Permanent())
		}
	})
	f := newFixture(t, odootest.Options{Version: 19, StringErrors: true})
	c := connected(t, f, "auto")
	var rows []map[string]any
	err := c.Call(context.Background(), "mrp.workorder", "search_read", []any{[]any{[]any{"state", "=", "progress"}}},
		map[string]any{"fields": []string{"id", "no_such_field"}}, &rows)
	if oe := asError(t, err); oe.Permanent() || !oe.Temporary() {
		t.Errorf("a bare 500 (\"internal server error\"): %+v, want transient", oe)
	}
}

// A server after 19.0 is said at connect (the fidelity probe: Odoo after
// 19.0 dropped a field the agent reads), and worked with as 19; the known
// versions are not.
func TestNewerThanKnownVersionIsSaid(t *testing.T) {
	for v, want := range map[int]bool{17: false, 19: false, 20: true} {
		var buf bytes.Buffer
		logs := &lockedWriter{w: &buf, mu: &sync.Mutex{}}
		f := newFixture(t, odootest.Options{Version: v})
		c := f.client(t, "auto", func(cfg *odoo.Config) { cfg.Logger = slog.New(slog.NewTextHandler(logs, nil)) })
		if err := c.Connect(context.Background()); err != nil {
			t.Fatalf("%d: %v", v, err)
		}
		logs.mu.Lock()
		out := buf.String()
		logs.mu.Unlock()
		if got := strings.Contains(out, "newer than the versions plantedge was made for"); got != want {
			t.Errorf("Odoo %d: said %v, want %v:\n%s", v, got, want, out)
		}
	}
}

// odoo.protocol pinned to jsonrpc (set for 17/18) on an Odoo 19: it works,
// and the log says to set auto, JSON-RPC being deprecated there (the
// odooupgrade probe: nothing said so after an upgrade).
func TestPinnedJSONRPCOn19IsSaid(t *testing.T) {
	for _, m := range modes {
		var buf bytes.Buffer
		logs := &lockedWriter{w: &buf, mu: &sync.Mutex{}}
		f := newFixture(t, odootest.Options{Version: m.version})
		c := f.client(t, m.protocol, func(cfg *odoo.Config) { cfg.Logger = slog.New(slog.NewTextHandler(logs, nil)) })
		if err := c.Connect(context.Background()); err != nil {
			t.Fatalf("%s: %v", m, err)
		}
		logs.mu.Lock()
		out := buf.String()
		logs.mu.Unlock()
		want := m.version == 19 && m.protocol == "jsonrpc"
		if got := strings.Contains(out, "set odoo.protocol to auto"); got != want {
			t.Errorf("%s: said %v, want %v:\n%s", m, got, want, out)
		}
	}
}

// The emulator's load takes SetLoadRowLatency per row: a load of many rows
// outlasts the client's timeout (in doubt, and Odoo commits it late), one
// of a few rows does not (JSON-RPC passes the rows by position, JSON-2 by
// name). Killed at the request limit, a load commits nothing. The few rows
// take a tenth of the timeout: at 200 ms of a 300 ms timeout, the 2 rows'
// load timed out on a busy machine (the race detector, every package's
// tests at once), and so could the connect before it.
func TestLoadTakesItsTimePerRow(t *testing.T) {
	for _, m := range []mode{modes[0], modes[len(modes)-2]} {
		t.Run(m.String(), func(t *testing.T) {
			ctx := context.Background()
			f := newFixture(t, odootest.Options{Version: m.version})
			c := f.client(t, m.protocol, func(cfg *odoo.Config) { cfg.Timeout = 2 * time.Second })
			if err := c.Connect(ctx); err != nil {
				t.Fatalf("Connect: %v", err)
			}
			loss, err := c.LossID(ctx, "Equipment Failure")
			if err != nil {
				t.Fatal(err)
			}
			start := time.Date(2026, 3, 2, 8, 0, 0, 0, time.UTC)
			lines := func(from, n int) []odoo.Downtime {
				var ds []odoo.Downtime
				for i := from; i < from+n; i++ {
					at := start.Add(time.Duration(i) * time.Minute)
					ds = append(ds, odoo.Downtime{XMLID: fmt.Sprintf("plantedge.site_m1_down_%d", i), WorkcenterID: f.wc,
						LossID: loss, Start: at, End: at.Add(30 * time.Second)})
				}
				return ds
			}
			f.srv.SetLoadRowLatency(100 * time.Millisecond)
			if _, err := c.UpsertDowntimes(ctx, lines(0, 2)); err != nil {
				t.Fatalf("2 rows: %v", err)
			}
			_, err = c.UpsertDowntimes(ctx, lines(2, 30))
			if !odoo.InDoubt(err) {
				t.Fatalf("30 rows at 100 ms a row, 2 s timeout: want in doubt, got %v", err)
			}
			for deadline := time.Now().Add(30 * time.Second); len(f.srv.Productivity()) != 32; time.Sleep(50 * time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatalf("the abandoned load never committed: %d lines, want 32", len(f.srv.Productivity()))
				}
			}
			// Killed at the request limit: nothing of it commits.
			f.srv.SetRequestLimit(200 * time.Millisecond)
			before := f.srv.CallCount("mrp.workcenter.productivity", "load")
			if _, err := c.UpsertDowntimes(ctx, lines(32, 10)); !odoo.IsTemporary(err) {
				t.Fatalf("killed load: want temporary, got %v", err)
			}
			// Every request the emulator took has ended: one that ran its
			// rows to the end (1 s) and committed has done so by then.
			for deadline := time.Now().Add(10 * time.Second); f.srv.InFlight() != 0; time.Sleep(10 * time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatalf("the killed load still in the emulator after 10 s: %d requests in flight", f.srv.InFlight())
				}
			}
			if n := len(f.srv.Productivity()); n != 32 {
				t.Errorf("a load killed at the request limit committed: %d lines, want 32", n)
			}
			if n := f.srv.CallCount("mrp.workcenter.productivity", "load") - before; n != 0 {
				t.Errorf("a killed load was served: %d calls logged", n)
			}
		})
	}
}

// DowntimesByXMLID reads lines back by their external ids, each as a load
// of it would send it (Same: to the second, as Odoo keeps times); one Odoo
// lacks is missing. On every version and protocol.
func TestDowntimesByXMLIDReadsLinesAsSent(t *testing.T) {
	eachMode(t, func(t *testing.T, _ mode, f *fixture, c *odoo.Client) {
		ctx := context.Background()
		loss, err := c.LossID(ctx, "Equipment Failure")
		if err != nil {
			t.Fatal(err)
		}
		start := time.Date(2026, 3, 1, 8, 0, 0, 123e6, time.UTC) // ms: Odoo keeps the second
		open := odoo.Downtime{XMLID: "plantedge.site_m1_downtime_1", WorkcenterID: f.wc, LossID: loss, Start: start, Description: "plantedge: reason JAM"}
		closed := odoo.Downtime{XMLID: "plantedge.site_m1_downtime_2", WorkcenterID: f.wc, WorkorderID: f.wo, LossID: loss,
			Start: start.Add(time.Hour), End: start.Add(time.Hour + 90*time.Second), Description: "plantedge"}
		ids, err := c.UpsertDowntimes(ctx, []odoo.Downtime{open, closed})
		if err != nil {
			t.Fatal(err)
		}
		got, err := c.DowntimesByXMLID(ctx, []string{open.XMLID, closed.XMLID, "plantedge.site_m1_downtime_3"})
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 2 || got[open.XMLID].ID != ids[0] || got[closed.XMLID].ID != ids[1] {
			t.Fatalf("read back %+v, want ids %v and none for the third", got, ids)
		}
		if !got[open.XMLID].Same(open) || !got[closed.XMLID].Same(closed) {
			t.Errorf("read back %+v, want them the same as sent", got)
		}
		ended := open
		ended.End = start.Add(time.Minute)
		if got[open.XMLID].Same(ended) {
			t.Errorf("the open line read back is the same as its end")
		}
		other := closed
		other.WorkorderID = 0
		if got[closed.XMLID].Same(other) {
			t.Errorf("a line of a work order read back is the same as one without")
		}
	})
}

// review45c: a bot user with a time zone set (load reads date-times in it
// unless told UTC) reads back its lines as it sent them — no shift that
// would make a line committed late look different and be sent again, nor
// one at another second look the same — and a line whose start differs
// by a second is not the same.
func TestDowntimesByXMLIDWithTheBotsTimeZone(t *testing.T) {
	for _, m := range modes {
		t.Run(m.String(), func(t *testing.T) {
			f := newFixture(t, odootest.Options{Version: m.version})
			f.srv.SetUserTZ(2, "America/Chicago")
			c := connected(t, f, m.protocol)
			ctx := context.Background()
			loss, err := c.LossID(ctx, "Equipment Failure")
			if err != nil {
				t.Fatal(err)
			}
			start := time.Date(2026, 3, 8, 7, 59, 59, 999e6, time.UTC) // the day US clocks change, ms to be cut
			d := odoo.Downtime{XMLID: "plantedge.site_m1_downtime_9", WorkcenterID: f.wc, WorkorderID: f.wo, LossID: loss,
				Start: start, End: start.Add(2 * time.Hour), Description: "plantedge"}
			if _, err := c.UpsertDowntimes(ctx, []odoo.Downtime{d}); err != nil {
				t.Fatal(err)
			}
			got, err := c.DowntimesByXMLID(ctx, []string{d.XMLID})
			if err != nil {
				t.Fatal(err)
			}
			b, ok := got[d.XMLID]
			if !ok || !b.Same(d) {
				t.Fatalf("read back %+v, want the same as sent %+v", got, d)
			}
			if !b.Start.Equal(start.Truncate(time.Second)) {
				t.Errorf("start read back %v, want %v", b.Start, start.Truncate(time.Second))
			}
			later := d
			later.Start = start.Add(time.Millisecond) // the next second
			if b.Same(later) {
				t.Errorf("a line starting a second later is the same")
			}
		})
	}
}

// A downtime line on a work center archived in Odoo is refused for its
// work center's database id (Odoo's import finds it with a search, which
// leaves archived records out): MissingReference names the column.
func TestUpsertDowntimeOnAnArchivedWorkcenterIsAMissingReference(t *testing.T) {
	for _, m := range modes {
		t.Run(m.String(), func(t *testing.T) {
			ctx := context.Background()
			f, c, loss := withLoss(t, m)
			f.srv.SetWorkcenterActive(f.wc, false)
			_, err := c.UpsertDowntime(ctx, odoo.Downtime{XMLID: "plantedge.site_m1_downtime_1", WorkcenterID: f.wc, LossID: loss,
				Start: time.Date(2026, 3, 1, 8, 0, 0, 0, time.UTC)})
			if !odoo.IsPermanent(err) || !odoo.MissingReference(err, "workcenter_id") || odoo.MissingReference(err, "loss_id") {
				t.Fatalf("load on an archived work center: %v; want a permanent MissingReference of workcenter_id only", err)
			}
			if odoo.MissingReference(errors.New("workcenter_id: No matching record found for database id '1'"), "workcenter_id") {
				t.Error("MissingReference of an error that is no load's")
			}
		})
	}
}

// The chain a connection to Odoo relies on goes to PeerCertificates at
// each new connection (the agent shows when it expires): verified, from
// Odoo's certificate to CAFile's root (Odoo sends no root); a
// certificate that expired is
// refused with its date (Go's words: "expired or is not yet valid", and
// two times).
func TestTLSCertificateDates(t *testing.T) {
	ca := certtest.NewCA(t, "Plant CA", certtest.Days(400))
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	certtest.WriteCerts(t, caFile, ca.Cert)
	leaf := ca.Issue(t, "odoo.plant", certtest.Days(20))
	s := odootest.New(odootest.Options{Version: 19})
	ts := s.StartTLS(leaf)
	t.Cleanup(s.Close)
	var mu sync.Mutex
	var seen []*x509.Certificate
	c, err := odoo.New(odoo.Config{URL: ts.URL, Database: "odoo", Username: "admin", APIKey: s.AdminKey(), CAFile: caFile,
		PeerCertificates: func(chain []*x509.Certificate) { mu.Lock(); seen = chain; mu.Unlock() }})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Connect(context.Background()); err != nil {
		t.Fatal(err)
	}
	c.Close()
	mu.Lock()
	if len(seen) != 2 || !seen[0].Equal(leaf.Leaf) || !seen[1].Equal(ca.Cert) {
		t.Errorf("PeerCertificates got %d certificates, want the leaf (not after %s) and CAFile's root", len(seen), leaf.Leaf.NotAfter)
	}
	mu.Unlock()

	expired := ca.Issue(t, "odoo.plant", certtest.Days(-2))
	s2 := odootest.New(odootest.Options{Version: 19})
	ts2 := s2.StartTLS(expired)
	t.Cleanup(s2.Close)
	c2, err := odoo.New(odoo.Config{URL: ts2.URL, Database: "odoo", Username: "admin", APIKey: s2.AdminKey(), CAFile: caFile})
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	err = c2.Connect(context.Background())
	want := "the certificate CN=odoo.plant expired on " + expired.Leaf.NotAfter.UTC().Format("2006-01-02 15:04 UTC")
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("connect to Odoo with an expired certificate: %v, want %q in it", err, want)
	}
}
