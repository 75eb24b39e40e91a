package odoo_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/plantedge/plantedge/odoo"
	"github.com/plantedge/plantedge/odoo/odootest"
)

// TestCompanyOfLinesAndScrap: a bot user whose main company is not the
// work center's writes downtime lines and scrap in the work center's
// company (Odoo's _check_company refuses them otherwise), reading no
// res.company; a work center moved to another company since it was read is
// read again once.
func TestCompanyOfLinesAndScrap(t *testing.T) {
	for _, m := range modes {
		t.Run(m.String(), func(t *testing.T) {
			ctx := context.Background()
			f, c, uid, b := companyBot(t, m)
			f.srv.SetWorkcenterCompany(f.wc, b)
			f.srv.DenyAccess("bot", "res.company", "read")
			wcs, _, err := c.WorkcentersByCodes(ctx, []string{"M1"})
			if err != nil || wcs["M1"].CompanyID != b {
				t.Fatalf("WorkcentersByCodes = %+v, %v; want company %d", wcs, err, b)
			}
			loss, err := c.LossID(ctx, "mrp.block_reason1")
			if err != nil {
				t.Fatal(err)
			}
			start := time.Date(2026, 3, 1, 8, 0, 0, 0, time.UTC)
			if _, err := c.UpsertDowntime(ctx, odoo.Downtime{XMLID: "plantedge.s_m1_down_1", WorkcenterID: f.wc, WorkorderID: f.wo,
				LossID: loss, Start: start, End: start.Add(time.Minute)}); err != nil {
				t.Fatalf("UpsertDowntime: %v", err)
			}
			// Moved to another company since: read again, loaded again.
			other := f.srv.AddCompany("Plant C")
			f.srv.SetUserCompanies(uid, 1, b, other)
			f.srv.SetWorkcenterCompany(f.wc, other)
			if _, err := c.UpsertDowntime(ctx, odoo.Downtime{XMLID: "plantedge.s_m1_down_2", WorkcenterID: f.wc,
				LossID: loss, Start: start.Add(time.Hour), End: start.Add(time.Hour + time.Minute)}); err != nil {
				t.Fatalf("UpsertDowntime after the move: %v", err)
			}
			lines := f.srv.Productivity()
			if len(lines) != 2 || lines[0].CompanyID != b || lines[1].CompanyID != other {
				t.Errorf("lines %+v, want companies %d and %d", lines, b, other)
			}
			f.srv.SetWorkcenterCompany(f.wc, b)
			wo, err := c.ReadWorkorder(ctx, f.wo)
			if err != nil || wo.CompanyID != b {
				t.Fatalf("ReadWorkorder = %+v, %v", wo, err)
			}
			done, err := c.BookScrap(ctx, odoo.Scrap{XMLID: "plantedge.s_m1_scrap_1", ProductID: f.product, ProductionID: f.mo, WorkorderID: f.wo, Qty: 2})
			if err != nil || !done {
				t.Fatalf("BookScrap = %v, %v", done, err)
			}
			if sc := f.srv.Scraps(); len(sc) != 1 || sc[0].State != "done" || sc[0].CompanyID != b {
				t.Errorf("scraps %+v", sc)
			}
			// A scrap whose order the client has not read: read once.
			mo2 := f.srv.AddProduction("WH/MO/00079", f.product, 10)
			wo2 := f.srv.AddWorkorder(mo2, f.wc, "Pressing", "ready")
			done, err = c.BookScrap(ctx, odoo.Scrap{XMLID: "plantedge.s_m1_scrap_2", ProductID: f.product, ProductionID: mo2, WorkorderID: wo2, Qty: 1})
			if err != nil || !done {
				t.Fatalf("BookScrap of an unread order = %v, %v", done, err)
			}
		})
	}
}

// A work center shared by the companies (none of its own) running another
// company's work order: its lines are the work order's company's (the
// review: refused, dead-lettered).
func TestCompanyOfLinesOfASharedWorkcenter(t *testing.T) {
	for _, m := range modes {
		t.Run(m.String(), func(t *testing.T) {
			ctx := context.Background()
			f, c, _, b := companyBot(t, m)
			f.srv.SetWorkcenterCompany(f.wc, 0)
			f.srv.SetProductionCompany(f.mo, b)
			loss, err := c.LossID(ctx, "mrp.block_reason1")
			if err != nil {
				t.Fatal(err)
			}
			start := time.Date(2026, 3, 1, 8, 0, 0, 0, time.UTC)
			ids, err := c.UpsertDowntimes(ctx, []odoo.Downtime{
				{XMLID: "plantedge.s_m1_down_1", WorkcenterID: f.wc, WorkorderID: f.wo, LossID: loss, Start: start, End: start.Add(time.Minute)},
			})
			if err != nil || len(ids) != 1 {
				t.Fatalf("UpsertDowntimes = %v, %v", ids, err)
			}
			if lines := f.srv.Productivity(); len(lines) != 1 || lines[0].CompanyID != b {
				t.Errorf("lines %+v, want the work order's company %d", lines, b)
			}
		})
	}
}

// companyBot is a fixture with a second company, b, and a connected client
// of a bot user (uid) whose main company is the first, b among its allowed.
func companyBot(t *testing.T, m mode) (f *fixture, c *odoo.Client, uid, b int64) {
	t.Helper()
	f = newFixture(t, odootest.Options{Version: m.version})
	b = f.srv.AddCompany("Plant B")
	uid, key := f.srv.AddUser("bot")
	f.srv.SetUserCompanies(uid, 1, b)
	c = f.client(t, m.protocol, func(cfg *odoo.Config) { cfg.Username, cfg.APIKey = "bot", key })
	if err := c.Connect(context.Background()); err != nil {
		t.Fatal(err)
	}
	return f, c, uid, b
}

// A work center of a company that is not among the bot user's companies is
// not found, and its work order cannot be read or written: Odoo's global
// multi-company record rules hide them (mrp_security.xml "company_id in
// company_ids"). The emulator used to show them, so the agent booked
// downtime and counts there in tests while real Odoo reports the work
// center as not found (the odoo-audit probe).
func TestCompanyNotTheBotsHidesItsRecords(t *testing.T) {
	for _, m := range modes {
		t.Run(m.String(), func(t *testing.T) {
			ctx := context.Background()
			f, c, _, _ := companyBot(t, m)
			elsewhere := f.srv.AddCompany("Plant Z") // not among the bot's companies
			f.srv.SetWorkcenterCompany(f.wc, elsewhere)
			if wc, err := c.WorkcenterByCode(ctx, "M1"); !errors.Is(err, odoo.ErrNotFound) {
				t.Errorf("WorkcenterByCode = %+v, %v; want not found", wc, err)
			}
			if wos, err := c.WorkordersInProgressOn(ctx, []int64{f.wc}); err != nil || len(wos) != 0 {
				t.Errorf("WorkordersInProgressOn = %v, %v; want none", wos, err)
			}
			err := c.SetProducedQty(ctx, f.wo, 3)
			var oe *odoo.Error
			if !errors.As(err, &oe) || oe.Name != "odoo.exceptions.AccessError" || !odoo.IsPermanent(err) {
				t.Errorf("SetProducedQty = %v; want a permanent AccessError", err)
			}
			if got := f.srv.ProductionQtyProducing(f.mo); got == 3 {
				t.Errorf("the hidden order's quantity was written")
			}
		})
	}
}
