package odoo_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"maps"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/plantedge/plantedge/odoo"
	"github.com/plantedge/plantedge/odoo/odootest"
)

// loggedClient is f's admin client logging to the returned buffer.
func loggedClient(t *testing.T, f *fixture, protocol string) (*odoo.Client, func() string) {
	t.Helper()
	var logs bytes.Buffer
	var mu sync.Mutex
	log := slog.New(slog.NewTextHandler(&lockedWriter{w: &logs, mu: &mu}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	c := f.client(t, protocol, func(cfg *odoo.Config) { cfg.Logger = log })
	return c, func() string {
		mu.Lock()
		defer mu.Unlock()
		return logs.String()
	}
}

// The client reads the precision Odoo keeps quantities to at connect
// (fields_get of the quantity field: its digits) and rounds what it writes
// to it: at 3 decimals 12.3456 is written 12.346, not 12.35; at 0, 12.5 is
// written 13, which Odoo stores as written.
func TestQtyDigitsReadAtConnect(t *testing.T) {
	for _, m := range modes {
		t.Run(m.String(), func(t *testing.T) {
			for _, tc := range []struct {
				digits   int
				in, want float64
			}{
				{2, 12.3456, 12.35},
				{3, 12.3456, 12.346},
				{4, 12.34565, 12.3457},
				{0, 12.5, 13},
			} {
				f := newFixture(t, odootest.Options{Version: m.version})
				f.srv.SetQtyDigits(tc.digits)
				c, logs := loggedClient(t, f, m.protocol)
				if d, read := c.QtyPrecision(); d != 2 || read {
					t.Errorf("before connect: %d digits (read %v), want 2 assumed", d, read)
				}
				if err := c.Connect(context.Background()); err != nil {
					t.Fatal(err)
				}
				if d, read := c.QtyPrecision(); d != tc.digits || !read {
					t.Errorf("%d digits in Odoo: client has %d (read %v)", tc.digits, d, read)
				}
				if got := c.RoundQty(tc.in); got != tc.want {
					t.Errorf("%d digits: RoundQty(%v) = %v, want %v", tc.digits, tc.in, got, tc.want)
				}
				if err := c.SetProducedQty(context.Background(), f.wo, tc.in); err != nil {
					t.Fatal(err)
				}
				wo := f.srv.Workorder(f.wo)
				if got := c.ProducedQty(wo); got != tc.want {
					t.Errorf("%d digits: %v written, Odoo has %v, want %v", tc.digits, tc.in, got, tc.want)
				}
				if strings.Contains(logs(), "cannot be read") {
					t.Errorf("%d digits: a warning:\n%s", tc.digits, logs())
				}
			}
		})
	}
}

// A scrap's quantity is rounded to the precision read, as Odoo stores it.
// (In 17 and 18 its unit is set to the same rounding, as an administrator
// does with the decimals: Odoo validates a scrap in its unit's rounding,
// 0.01 as installed — TestUnitRoundingRead.)
func TestScrapQtyRoundedToTheDigitsRead(t *testing.T) {
	for _, m := range modes {
		t.Run(m.String(), func(t *testing.T) {
			f := newFixture(t, odootest.Options{Version: m.version})
			f.srv.SetQtyDigits(3)
			if m.version < 19 {
				f.srv.SetUomRounding(1, 0.001)
			}
			c := connected(t, f, m.protocol)
			done, err := c.BookScrap(context.Background(), odoo.Scrap{XMLID: "plantedge.t_press_scrap_1", ProductID: f.product,
				ProductionID: f.mo, WorkorderID: f.wo, Qty: 0.1254})
			if err != nil || !done {
				t.Fatalf("BookScrap: done %v, %v", done, err)
			}
			if s := f.srv.Scraps(); len(s) != 1 || s[0].Qty != 0.125 {
				t.Errorf("scraps %+v, want one of 0.125", s)
			}
		})
	}
}

// A scrap draft loaded at 2 decimals (0.4, short of stock) reads 0.4 after
// Odoo is set to keep none (a Float is read as stored, not rounded anew);
// ZeroScrapDraft writes it 0, once (a second call finds it 0 and writes
// nothing), and Odoo then refuses to validate it. A done scrap is left as
// it is and reported with what it holds; one Odoo has none of, State "".
// ScrapBookings reads states and quantities in the calls ScrapStates makes.
func TestZeroScrapDraft(t *testing.T) {
	for _, m := range modes {
		t.Run(m.String(), func(t *testing.T) {
			ctx := context.Background()
			f := newFixture(t, odootest.Options{Version: m.version})
			c := connected(t, f, m.protocol)
			short := f.srv.AddProduct("Rare part")
			f.srv.SetShortStock(short, true)
			draft := odoo.Scrap{XMLID: "plantedge.t_press_scrap_1", ProductID: short, Qty: 0.4}
			if done, err := c.BookScrap(ctx, draft); err != nil || done {
				t.Fatalf("short BookScrap = %v, %v; want a draft", done, err)
			}
			booked := odoo.Scrap{XMLID: "plantedge.t_press_scrap_2", ProductID: f.product, ProductionID: f.mo, WorkorderID: f.wo, Qty: 1.6}
			if done, err := c.BookScrap(ctx, booked); err != nil || !done {
				t.Fatalf("BookScrap = %v, %v", done, err)
			}
			f.srv.SetQtyDigits(0)
			imd, sc := f.srv.CallCount("ir.model.data", "search_read"), f.srv.CallCount("stock.scrap", "search_read")
			bs, err := c.ScrapBookings(ctx, []string{draft.XMLID, booked.XMLID, "plantedge.t_press_scrap_none"})
			want := map[string]odoo.ScrapBooking{draft.XMLID: {State: "draft", Qty: 0.4}, booked.XMLID: {State: "done", Qty: 1.6}}
			if err != nil || !maps.Equal(bs, want) {
				t.Errorf("ScrapBookings = %v, %v; want %v", bs, err, want)
			}
			if n, m := f.srv.CallCount("ir.model.data", "search_read")-imd, f.srv.CallCount("stock.scrap", "search_read")-sc; n != 1 || m != 1 {
				t.Errorf("ScrapBookings made %d + %d calls, want 1 + 1", n, m)
			}
			for i := range 2 {
				b, err := c.ZeroScrapDraft(ctx, draft.XMLID)
				if err != nil || b != (odoo.ScrapBooking{State: "draft"}) {
					t.Fatalf("ZeroScrapDraft #%d = %+v, %v; want a draft of 0", i+1, b, err)
				}
			}
			if n := f.srv.CallCount("stock.scrap", "write"); n != 1 {
				t.Errorf("%d writes of the draft, want 1", n)
			}
			f.srv.SetShortStock(short, false)
			var dl *odoo.DraftLeftError
			if done, err := c.ValidateScrap(ctx, draft.XMLID, true); done || err == nil || errors.As(err, &dl) || !strings.Contains(err.Error(), "positive quantities") {
				t.Errorf("ValidateScrap of the draft of 0 = %v, %v; want Odoo's refusal", done, err)
			}
			if b, err := c.ZeroScrapDraft(ctx, booked.XMLID); err != nil || b != (odoo.ScrapBooking{State: "done", Qty: 1.6}) {
				t.Errorf("ZeroScrapDraft of a done scrap = %+v, %v; want it untouched", b, err)
			}
			if b, err := c.ZeroScrapDraft(ctx, "plantedge.t_press_scrap_none"); err != nil || b != (odoo.ScrapBooking{}) {
				t.Errorf("ZeroScrapDraft of none = %+v, %v", b, err)
			}
			sc2 := f.srv.Scraps()
			if len(sc2) != 2 || sc2[0].Qty != 0 || sc2[0].State != "draft" || sc2[0].Moves != 0 || sc2[1].Qty != 1.6 || sc2[1].State != "done" || sc2[1].Moves != 1 {
				t.Errorf("scraps %+v, want a draft of 0 and 1.6 done once", sc2)
			}
			if n := f.srv.CallCount("stock.scrap", "write"); n != 1 {
				t.Errorf("%d writes of scraps in all, want 1", n)
			}
		})
	}
}

// A precision that cannot be read (fields_get refused) is assumed to be
// Odoo's default 2, said once at WARN however often the client connects
// again; the connect goes through. Read again at the next connect, it is
// used and no longer assumed.
func TestQtyDigitsUnreadableFallsBackToTwo(t *testing.T) {
	for _, m := range modes {
		t.Run(m.String(), func(t *testing.T) {
			f := newFixture(t, odootest.Options{Version: m.version})
			f.srv.SetQtyDigits(3)
			f.srv.RefuseNext("mrp.workorder", "fields_get", 2, "odoo.exceptions.AccessError", "You are not allowed to access 'Work Order' (mrp.workorder) records.")
			c, logs := loggedClient(t, f, m.protocol)
			ctx := context.Background()
			for range 2 {
				if err := c.Connect(ctx); err != nil {
					t.Fatal(err)
				}
				if d, read := c.QtyPrecision(); d != 2 || read {
					t.Errorf("refused: %d digits (read %v), want 2 assumed", d, read)
				}
			}
			const warn = "the decimals Odoo keeps of a quantity cannot be read"
			if n := strings.Count(logs(), warn); n != 1 {
				t.Errorf("%d lines say %q, want 1:\n%s", n, warn, logs())
			}
			if !strings.Contains(logs(), "level=WARN msg=\""+warn) || !strings.Contains(logs(), "AccessError") {
				t.Errorf("not said at WARN with Odoo's reason:\n%s", logs())
			}
			if got := c.RoundQty(0.125); got != 0.13 {
				t.Errorf("RoundQty(0.125) = %v assumed 2 digits, want 0.13", got)
			}
			if err := c.Connect(ctx); err != nil {
				t.Fatal(err)
			}
			if d, read := c.QtyPrecision(); d != 3 || !read {
				t.Errorf("readable again: %d digits (read %v), want 3", d, read)
			}
		})
	}
}

// The precision is read again whenever the client connects anew (Odoo
// could not be reached: it may come back restored, or set to other
// digits), and a change is said at WARN.
func TestQtyDigitsReadAgainOnReconnect(t *testing.T) {
	for _, m := range modes {
		t.Run(m.String(), func(t *testing.T) {
			f := newFixture(t, odootest.Options{Version: m.version})
			f.srv.SetQtyDigits(3)
			c, logs := loggedClient(t, f, m.protocol)
			ctx := context.Background()
			if err := c.SetProducedQty(ctx, f.wo, 1.2345); err != nil {
				t.Fatal(err)
			}
			if got := c.ProducedQty(f.srv.Workorder(f.wo)); got != 1.235 {
				t.Errorf("3 digits: Odoo has %v, want 1.235", got)
			}
			f.srv.SetQtyDigits(4)
			f.srv.FailNext(1, odootest.FaultHTTP502) // unreachable: the next call connects again
			if err := c.SetProducedQty(ctx, f.wo, 1.2345); err == nil || !odoo.IsTemporary(err) {
				t.Fatalf("502: %v", err)
			}
			if !c.NeedsConnect() {
				t.Fatal("no connect due after a 502")
			}
			if err := c.SetProducedQty(ctx, f.wo, 1.23456); err != nil {
				t.Fatal(err)
			}
			if d, _ := c.QtyPrecision(); d != 4 {
				t.Errorf("after the reconnect: %d digits, want 4", d)
			}
			if got := c.ProducedQty(f.srv.Workorder(f.wo)); got != 1.2346 {
				t.Errorf("4 digits: Odoo has %v, want 1.2346", got)
			}
			if !strings.Contains(logs(), `level=WARN msg="Odoo's quantity precision changed`) {
				t.Errorf("the change was not said:\n%s", logs())
			}
		})
	}
}

// Odoo not reached while the precision is read fails the connect (tried
// again), rather than assuming 2 decimals for as long as the session
// lasts.
func TestQtyDigitsReadFailingOnTheWayFailsTheConnect(t *testing.T) {
	f := newFixture(t, odootest.Options{Version: 19})
	f.srv.SetQtyDigits(0)
	f.srv.FailNextCall("mrp.workorder", "fields_get", 1, odootest.FaultHTTP502)
	c, logs := loggedClient(t, f, "auto")
	err := c.Connect(context.Background())
	if err == nil || !odoo.IsTemporary(err) {
		t.Fatalf("Connect: %v, want the 502", err)
	}
	if !c.NeedsConnect() {
		t.Error("no connect due after the failed one")
	}
	if err := c.SetProducedQty(context.Background(), f.wo, 12.35); err != nil {
		t.Fatal(err)
	}
	if d, read := c.QtyPrecision(); d != 0 || !read {
		t.Errorf("%d digits (read %v), want 0", d, read)
	}
	if got := f.srv.Workorder(f.wo).QtyProduced; got != 12 {
		t.Errorf("Odoo has %v, want 12", got)
	}
	if strings.Contains(logs(), "cannot be read") {
		t.Errorf("a failure to reach Odoo was said as an unreadable precision:\n%s", logs())
	}
}

// An administrator sets other decimals while Odoo answers every call (no
// reconnect, no quiet spell): the client reads them again when it reads
// the version again (Config.VersionRecheck), the session standing — not
// only once Odoo could not be reached, which a busy plant on a steady link
// may never see.
func TestQtyDigitsReadAgainWhileBusy(t *testing.T) {
	for _, m := range modes {
		t.Run(m.String(), func(t *testing.T) {
			ctx := context.Background()
			f := newFixture(t, odootest.Options{Version: m.version})
			c := f.client(t, m.protocol, func(c *odoo.Config) { c.VersionRecheck = 300 * time.Millisecond })
			if err := c.SetProducedQty(ctx, f.wo, 1.25); err != nil {
				t.Fatal(err)
			}
			logins := f.srv.CallCount("common", "authenticate") + f.srv.CallCount("res.users", "context_get")
			f.srv.SetQtyDigits(3)
			for i := 0; c.QtyDigits() != 3 && i < 40; i++ {
				time.Sleep(50 * time.Millisecond)
				if err := c.SetProducedQty(ctx, f.wo, 1.25); err != nil {
					t.Fatal(err)
				}
			}
			if d, read := c.QtyPrecision(); d != 3 || !read {
				t.Fatalf("busy while the precision became 3: client has %d (read %v)", d, read)
			}
			if n := f.srv.CallCount("common", "authenticate") + f.srv.CallCount("res.users", "context_get"); n != logins {
				t.Errorf("%d logins while the version stayed (was %d)", n, logins)
			}
			if err := c.SetProducedQty(ctx, f.wo, 1.2345); err != nil {
				t.Fatal(err)
			}
			if got := c.ProducedQty(f.srv.Workorder(f.wo)); got != 1.235 {
				t.Errorf("Odoo has %v, want 1.235", got)
			}
		})
	}
}

// An idle plant's quiet spells (Config.IdleRecheck, a minute) read the
// version again, the session standing, and the precision only as often as
// the version is due (Config.VersionRecheck): not a third request every
// quiet minute (docs/commands.md, status: an idle plant costs Odoo two small requests a
// minute, the version and the work orders in progress).
func TestQuietSpellsReadThePrecisionOnlyWhenTheVersionIsDue(t *testing.T) {
	for _, m := range modes {
		t.Run(m.String(), func(t *testing.T) {
			ctx := context.Background()
			f := newFixture(t, odootest.Options{Version: m.version})
			c := f.client(t, m.protocol, func(c *odoo.Config) {
				c.IdleRecheck = 100 * time.Millisecond
				c.VersionRecheck = time.Hour
			})
			if err := c.SetProducedQty(ctx, f.wo, 1); err != nil {
				t.Fatal(err)
			}
			reads := f.srv.CallCount("mrp.workorder", "fields_get")
			for i := range 3 {
				time.Sleep(150 * time.Millisecond)
				if !c.NeedsConnect() {
					t.Fatal("no connect pending after a quiet spell longer than IdleRecheck")
				}
				if err := c.SetProducedQty(ctx, f.wo, float64(2+i)); err != nil {
					t.Fatal(err)
				}
			}
			if n := f.srv.CallCount("mrp.workorder", "fields_get"); n != reads {
				t.Errorf("%d reads of the precision in 3 quiet spells with the version not due, want 0", n-reads)
			}
		})
	}
}

// The rounding of a unit of measure is read with the bot's rights (every
// user reads uom.uom), and a scrap is rounded to the coarser of it and the
// decimals: 17 and 18 keep it for each unit (0.01 as installed: at 3
// decimals 0.125 is 0.13; 1.0 set: 0.4 is 0, 1.6 is 2); 19 rounds every
// unit to the decimals (0.125 stays).
func TestUnitRoundingRead(t *testing.T) {
	for _, m := range modes {
		t.Run(m.String(), func(t *testing.T) {
			f := newFixture(t, odootest.Options{Version: m.version})
			f.srv.SetQtyDigits(3)
			c := connected(t, f, m.protocol)
			ctx := context.Background()
			r, err := c.UnitRounding(ctx, 1)
			want := 0.01
			if m.version >= 19 {
				want = 0.001
			}
			if err != nil || r != want {
				t.Fatalf("UnitRounding = %v, %v; want %v", r, err, want)
			}
			wantQty := 0.13
			if m.version >= 19 {
				wantQty = 0.125
			}
			if q := c.RoundScrapQty(0.125, r); q != wantQty {
				t.Errorf("RoundScrapQty(0.125, %v) = %v, want %v", r, q, wantQty)
			}
			if m.version >= 19 {
				return
			}
			f.srv.SetUomRounding(1, 1)
			if r, err = c.UnitRounding(ctx, 1); err != nil || r != 1 {
				t.Fatalf("UnitRounding after 1.0 set = %v, %v", r, err)
			}
			for in, want := range map[float64]float64{0.4: 0, 1.6: 2, 0.5: 1, 3: 3} {
				if q := c.RoundScrapQty(in, r); q != want {
					t.Errorf("RoundScrapQty(%v, 1) = %v, want %v", in, q, want)
				}
			}
			if q := c.RoundScrapQty(0.125, 0); q != 0.125 {
				t.Errorf("RoundScrapQty(0.125, unknown unit) = %v, want 0.125 (the decimals alone)", q)
			}
		})
	}
}
