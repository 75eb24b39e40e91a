package odoo_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/plantedge/plantedge/odoo"
	"github.com/plantedge/plantedge/odoo/odootest"
)

// CanAccess answers per user and operation in every mode, with the method
// each version has (17: check_access_rights, 18+: has_access), and denials
// match what the ORM then refuses.
func TestCanAccess(t *testing.T) {
	for _, m := range modes {
		t.Run(m.String(), func(t *testing.T) {
			f := newFixture(t, odootest.Options{Version: m.version})
			_, key := f.srv.AddUser("bot")
			f.srv.DenyAccess("bot", "mrp.workorder", "write")
			f.srv.DenyAccess("bot", "stock.scrap", "create")
			bot := f.client(t, m.protocol, func(c *odoo.Config) { c.Username, c.APIKey = "bot", key })
			admin := f.client(t, m.protocol)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			for _, c := range []struct {
				client    *odoo.Client
				model, op string
				want      bool
			}{
				{bot, "mrp.workorder", odoo.OpRead, true},
				{bot, "mrp.workorder", odoo.OpWrite, false},
				{bot, "stock.scrap", odoo.OpCreate, false},
				{bot, "stock.scrap", odoo.OpWrite, true},
				{bot, "mrp.workcenter.productivity", odoo.OpCreate, true},
				{admin, "mrp.workorder", odoo.OpWrite, true},
				{admin, "stock.scrap", odoo.OpCreate, true},
			} {
				got, err := c.client.CanAccess(ctx, c.model, c.op)
				if err != nil || got != c.want {
					t.Errorf("CanAccess(%s, %s) = %v, %v; want %v", c.model, c.op, got, err, c.want)
				}
			}
			method := "has_access"
			if m.version < 18 {
				method = "check_access_rights"
			}
			if n := f.srv.CallCount("mrp.workorder", method); n != 3 {
				t.Errorf("%d calls of %s, want 3", n, method)
			}
			// the ORM agrees: the denied write is refused as a permanent AccessError
			err := bot.SetProducedQty(ctx, f.wo, 5)
			var oe *odoo.Error
			if !errors.As(err, &oe) || oe.Name != "odoo.exceptions.AccessError" || !oe.Permanent() {
				t.Fatalf("denied write: %v", err)
			}
			if m.protocol == "auto" && m.version == 19 && oe.Status != 403 {
				t.Fatalf("JSON-2 status %d, want 403", oe.Status)
			}
		})
	}
}

func TestCanAccessRejectsUnknownOperation(t *testing.T) {
	f := newFixture(t, odootest.Options{Version: 17})
	c := f.client(t, "auto")
	_, err := c.CanAccess(context.Background(), "mrp.workorder", "delete")
	if !odoo.IsPermanent(err) {
		t.Fatalf("err = %v, want a permanent error", err)
	}
	if n := len(f.srv.Calls()); n != 0 {
		t.Fatalf("%d calls for an invalid operation, want 0", n)
	}
}

// Every call the client makes succeeds for a bot user holding only what
// the README names, Manufacturing / User (with what it implies: Inventory
// / User, Internal User) and a group of its own that reads external ids,
// in every mode: no call needs a right beyond these, and the rights
// validate --odoo asks for are all there. Any refusal by the emulator
// shows as an exception outcome in its call log.
func TestEveryCallAsTheBotUser(t *testing.T) {
	for _, m := range modes {
		t.Run(m.String(), func(t *testing.T) {
			f := newFixture(t, odootest.Options{Version: m.version})
			uid, key := f.srv.AddUser("bot")
			f.srv.GiveOnlyBotRights("bot")
			bot := f.client(t, m.protocol, func(c *odoo.Config) { c.Username, c.APIKey = "bot", key })
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			mustOK := func(what string, err error) {
				t.Helper()
				if err != nil {
					t.Fatalf("%s: %v", what, err)
				}
			}
			// a second order in progress on the work center: the time lines are read
			mo2 := f.srv.AddProduction("WH/MO/00079", f.product, 10)
			f.srv.AddWorkorder(mo2, f.wc, "Pressing", "progress")
			short := f.srv.AddProduct("Rare")
			f.srv.SetShortStock(short, true)

			found, _, err := bot.WorkcentersByCodes(ctx, []string{"M1"})
			mustOK("work centers", err)
			if found["M1"].ID != f.wc {
				t.Fatalf("work center M1 not found: %v", found)
			}
			loss, err := bot.LossID(ctx, "mrp.block_reason1")
			mustOK("loss by external id", err)
			_, err = bot.LossID(ctx, "Equipment Failure")
			mustOK("loss by name", err)
			byWC, err := bot.WorkordersInProgressOn(ctx, []int64{f.wc})
			mustOK("work orders in progress", err)
			if len(byWC[f.wc]) != 2 {
				t.Fatalf("work orders in progress: %v", byWC)
			}
			since := time.Now().Add(-time.Hour)
			_, err = bot.WorkTimeline(ctx, f.wc, since)
			mustOK("work timeline", err)
			_, err = bot.OthersWorked(ctx, map[int64]int64{f.wc: f.wo}, map[int64]time.Time{f.wc: since})
			mustOK("others worked", err)
			_, err = bot.ReadWorkorder(ctx, f.wo)
			mustOK("read work order", err)
			mustOK("produced quantity", bot.SetProducedQty(ctx, f.wo, 5))

			start := time.Now().Add(-10 * time.Minute).UTC().Truncate(time.Second)
			ids, err := bot.UpsertDowntimes(ctx, []odoo.Downtime{{XMLID: "plantedge.t_m1_stop_1", WorkcenterID: f.wc,
				WorkorderID: f.wo, LossID: loss, Start: start}})
			mustOK("downtime", err)
			_, err = bot.DowntimeLine(ctx, "plantedge.t_m1_stop_1")
			mustOK("downtime line", err)
			_, err = bot.OpenDowntimeLines(ctx, ids)
			mustOK("open downtime lines", err)
			_, err = bot.OpenLinesOf(ctx, "plantedge")
			mustOK("open lines of plantedge", err)
			closed, err := bot.CloseDowntimeLine(ctx, ids[0], start, start.Add(5*time.Minute))
			mustOK("close downtime", err)
			if !closed {
				t.Fatal("downtime line not closed")
			}
			_, err = bot.ExternalIDNames(ctx, "plantedge", "t\\_%", 10)
			mustOK("external id names", err)

			done, err := bot.BookScrap(ctx, odoo.Scrap{XMLID: "plantedge.t_m1_scrap_1", ProductID: f.product,
				ProductionID: f.mo, WorkorderID: f.wo, Qty: 2})
			mustOK("scrap", err)
			if !done {
				t.Fatal("scrap not done")
			}
			done, err = bot.BookScrap(ctx, odoo.Scrap{XMLID: "plantedge.t_m1_scrap_2", ProductID: short,
				ProductionID: f.mo, WorkorderID: f.wo, Qty: 1})
			mustOK("scrap short of stock", err)
			if done {
				t.Fatal("scrap short of stock done, want a draft")
			}
			states, err := bot.ScrapStates(ctx, []string{"plantedge.t_m1_scrap_1", "plantedge.t_m1_scrap_2"})
			mustOK("scrap states", err)
			if states["plantedge.t_m1_scrap_2"] != "draft" {
				t.Fatalf("scrap states %v", states)
			}
			done, err = bot.ValidateScrap(ctx, "plantedge.t_m1_scrap_2", true)
			mustOK("confirm short scrap", err)
			if !done {
				t.Fatal("confirmed scrap not done")
			}

			// A draft rounded to nothing written 0 (the write right on
			// scraps, which the load needs too).
			_, err = bot.BookScrap(ctx, odoo.Scrap{XMLID: "plantedge.t_m1_scrap_3", ProductID: short,
				ProductionID: f.mo, WorkorderID: f.wo, Qty: 1})
			mustOK("another scrap short of stock", err)
			zeroed, err := bot.ZeroScrapDraft(ctx, "plantedge.t_m1_scrap_3")
			mustOK("zero scrap draft", err)
			if zeroed != (odoo.ScrapBooking{State: "draft"}) {
				t.Fatalf("ZeroScrapDraft = %+v, want a draft of 0", zeroed)
			}

			for _, c := range []struct {
				model, op string
				want      bool
			}{
				{"mrp.workorder", odoo.OpRead, true}, {"mrp.workorder", odoo.OpWrite, true},
				{"mrp.production", odoo.OpWrite, true},
				{"mrp.workcenter.productivity", odoo.OpRead, true}, {"mrp.workcenter.productivity", odoo.OpCreate, true},
				{"mrp.workcenter.productivity", odoo.OpWrite, true},
				{"stock.scrap", odoo.OpRead, true}, {"stock.scrap", odoo.OpCreate, true}, {"stock.scrap", odoo.OpWrite, true},
				{"ir.model.data", odoo.OpRead, true},
				// what the group does not give
				{"ir.config_parameter", odoo.OpWrite, false}, {"mrp.workcenter", odoo.OpWrite, false},
				{"stock.scrap", odoo.OpUnlink, false},
			} {
				got, err := bot.CanAccess(ctx, c.model, c.op)
				if err != nil || got != c.want {
					t.Errorf("CanAccess(%s, %s) = %v, %v; want %v", c.model, c.op, got, err, c.want)
				}
			}
			for _, c := range f.srv.Calls() {
				if c.UID == uid && c.Outcome != "ok" {
					t.Errorf("%s.%s as the bot: %s", c.Model, c.Method, c.Outcome)
				}
			}
		})
	}
}

// Odoo's AccessError for reading external ids names Administration /
// Access Rights, the one standard group that has the right — and one that
// may give itself any right. The error the agent shows (dead letters,
// status, log) says which right to give instead, in its first line (the
// one status shows), in every mode.
func TestExternalIDsRefusedSayWhichRightToGive(t *testing.T) {
	for _, m := range modes {
		t.Run(m.String(), func(t *testing.T) {
			f := newFixture(t, odootest.Options{Version: m.version})
			_, key := f.srv.AddUser("bot")
			f.srv.GiveOnlyManufacturingUser("bot")
			bot := f.client(t, m.protocol, func(c *odoo.Config) { c.Username, c.APIKey = "bot", key })
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_, _, _, err := bot.ExternalID(ctx, "plantedge", "x")
			if !odoo.IsPermanent(err) {
				t.Fatalf("err = %v, want a permanent refusal", err)
			}
			first, _, _ := strings.Cut(err.Error(), "\n")
			if !strings.Contains(first, "You are not allowed to access 'Model Data' (ir.model.data) records.") ||
				!strings.Contains(first, "read on Model Data (ir.model.data) through a group of its own") ||
				!strings.Contains(first, "not Administration / Access Rights") {
				t.Errorf("first line of the error: %q", first)
			}
		})
	}
}

// Odoo's refusal of a right names, after its first line, every group that
// holds it (administrators' too); status shows the first line only. The
// error the agent shows says there which group gives the bot user the
// right the agent needs (mrp and stock security/ir.model.access.csv),
// also when a call on one model is refused a right on another (validating
// a scrap books a stock move, a produced quantity writes the order's stock
// moves); Odoo's lines stay after it. A refusal of
// another shape (a record rule's) is left as Odoo said it.
func TestAccessRefusalsSayWhichGroupToGive(t *testing.T) {
	const (
		mrpUser  = " (plantedge: give the bot user the group Manufacturing / User, as the README says)"
		invUser  = " (plantedge: give the bot user the group Manufacturing / User, which includes Inventory / User, as the README says)"
		internal = " (plantedge: Odoo gives this right to every internal user: make the bot user's user type Internal User)"
	)
	for _, m := range modes {
		t.Run(m.String(), func(t *testing.T) {
			f := newFixture(t, odootest.Options{Version: m.version})
			_, key := f.srv.AddUser("bot")
			f.srv.GiveOnlyBotRights("bot")
			bot := f.client(t, m.protocol, func(c *odoo.Config) { c.Username, c.APIKey = "bot", key })
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			n := 0
			for _, c := range []struct {
				model, op, first string
				call             func() error
			}{
				{"mrp.workorder", odoo.OpWrite, "You are not allowed to modify 'Work Order' (mrp.workorder) records." + mrpUser,
					func() error { return bot.SetProducedQty(ctx, f.wo, 5) }},
				// Odoo 17-19 write the order's component moves with the
				// caller's rights when its producing quantity changes.
				{"stock.move", odoo.OpWrite, "You are not allowed to modify 'Stock Move' (stock.move) records." + invUser,
					func() error { return bot.SetProducedQty(ctx, f.wo, 7) }},
				{"stock.move", odoo.OpCreate, "You are not allowed to create 'Stock Move' (stock.move) records." + invUser,
					func() error { return book(ctx, bot, f, &n) }},
				{"stock.quant", odoo.OpRead, "You are not allowed to access 'Quants' (stock.quant) records." + internal,
					func() error { return book(ctx, bot, f, &n) }},
				{"stock.move.line", odoo.OpCreate, "You are not allowed to create 'Product Moves (Stock Move Line)' (stock.move.line) records." + internal,
					func() error { return book(ctx, bot, f, &n) }},
			} {
				f.srv.DenyAccess("bot", c.model, c.op)
				err := c.call()
				f.srv.GrantAccess("bot", c.model, c.op)
				var oe *odoo.Error
				if !errors.As(err, &oe) || !strings.HasSuffix(oe.Name, ".AccessError") {
					t.Fatalf("without %s on %s: %v, want an AccessError", c.op, c.model, err)
				}
				first, rest, _ := strings.Cut(oe.Message, "\n")
				if first != c.first || !strings.Contains(rest, "This operation is allowed for the following groups:") {
					t.Errorf("without %s on %s, the message:\n%s\nwant first line %q, then Odoo's", c.op, c.model, oe.Message, c.first)
				}
			}
			const rule = "Due to security restrictions, you are not allowed to access 'Work Order' (mrp.workorder) records."
			f.srv.RefuseNext("mrp.workorder", "write", 1, "odoo.exceptions.AccessError", rule)
			var oe *odoo.Error
			if err := bot.SetProducedQty(ctx, f.wo, 6); !errors.As(err, &oe) || oe.Message != rule {
				t.Errorf("a record rule's refusal: %v, want Odoo's words alone", err)
			}
		})
	}
}

// book books a scrap of 2 under a new external id (n counts them) and
// returns why it is not done.
func book(ctx context.Context, bot *odoo.Client, f *fixture, n *int) error {
	*n++
	done, err := bot.BookScrap(ctx, odoo.Scrap{XMLID: fmt.Sprintf("plantedge.t_m1_scrap_%d", *n), ProductID: f.product,
		ProductionID: f.mo, WorkorderID: f.wo, Qty: 2})
	if err == nil && done {
		return errors.New("booked")
	}
	return err
}
