package odoo_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/plantedge/plantedge/odoo"
	"github.com/plantedge/plantedge/odoo/odootest"
)

// langSetup is an Odoo whose messages would come in another language than
// English without the client asking for English: the bot user's own
// (JSON-RPC to a server of several databases, 18 and 19), or the company's
// (English deactivated: JSON-RPC and JSON-2). The JSON-2 case of the bot's
// language alone is a guard: Odoo does not use it there.
type langSetup struct {
	name       string
	opts       odootest.Options
	protocol   string
	englishOff bool
}

var langSetups = []langSetup{
	{"v18-many-databases-bot-fr", odootest.Options{Version: 18, ManyDatabases: true}, "jsonrpc", false},
	{"v19-jsonrpc-many-databases-bot-fr", odootest.Options{Version: 19, ManyDatabases: true}, "jsonrpc", false},
	{"v19-json2-bot-fr", odootest.Options{Version: 19}, "auto", false},
	{"v17-english-off-company-de", odootest.Options{Version: 17}, "jsonrpc", true},
	{"v19-json2-english-off-company-de", odootest.Options{Version: 19}, "auto", true},
}

// langBot is companyBot in a langSetup: the bot user prefers French.
func langBot(t *testing.T, ls langSetup) (f *fixture, c *odoo.Client, uid, b int64) {
	t.Helper()
	f = newFixture(t, ls.opts)
	b = f.srv.AddCompany("Plant B")
	uid, key := f.srv.AddUser("bot")
	f.srv.SetUserCompanies(uid, 1, b)
	f.srv.SetUserLang(uid, "fr_FR")
	if ls.englishOff {
		f.srv.SetCompanyLang(1, "de_DE")
		f.srv.DeactivateEnglish()
	}
	c = f.client(t, ls.protocol, func(cfg *odoo.Config) { cfg.Username, cfg.APIKey = "bot", key })
	if err := c.Connect(context.Background()); err != nil {
		t.Fatal(err)
	}
	return f, c, uid, b
}

// TestIncompatibleCompaniesInAnyLanguage: the client loads a downtime line
// again once when Odoo refuses it for incompatible companies and the work
// center moved to another company, whatever the languages of the bot user
// and of the database; and a line refused for good says why in English.
func TestIncompatibleCompaniesInAnyLanguage(t *testing.T) {
	for _, ls := range langSetups {
		t.Run(ls.name, func(t *testing.T) {
			ctx := context.Background()
			f, c, uid, b := langBot(t, ls)
			f.srv.SetWorkcenterCompany(f.wc, b)
			loss, err := c.LossID(ctx, "mrp.block_reason1")
			if err != nil {
				t.Fatal(err)
			}
			start := time.Date(2026, 3, 1, 8, 0, 0, 0, time.UTC)
			if _, err := c.UpsertDowntime(ctx, odoo.Downtime{XMLID: "plantedge.s_m1_down_1", WorkcenterID: f.wc,
				LossID: loss, Start: start, End: start.Add(time.Minute)}); err != nil {
				t.Fatalf("UpsertDowntime: %v", err)
			}
			other := f.srv.AddCompany("Plant C")
			f.srv.SetUserCompanies(uid, 1, b, other)
			f.srv.SetWorkcenterCompany(f.wc, other)
			if _, err := c.UpsertDowntime(ctx, odoo.Downtime{XMLID: "plantedge.s_m1_down_2", WorkcenterID: f.wc,
				LossID: loss, Start: start.Add(time.Hour), End: start.Add(time.Hour + time.Minute)}); err != nil {
				t.Fatalf("UpsertDowntime after the move: %v", err)
			}
			if lines := f.srv.Productivity(); len(lines) != 2 || lines[1].CompanyID != other {
				t.Errorf("lines %+v, want the second in company %d", lines, other)
			}
			// The work order's order in another company than its work
			// center: refused for good, in English.
			f.srv.SetProductionCompany(f.mo, b)
			_, err = c.UpsertDowntime(ctx, odoo.Downtime{XMLID: "plantedge.s_m1_down_3", WorkcenterID: f.wc, WorkorderID: f.wo,
				LossID: loss, Start: start.Add(2 * time.Hour), End: start.Add(2*time.Hour + time.Minute)})
			if oe := asError(t, err); !oe.Permanent() || !strings.Contains(oe.Message, "Incompatible companies on records:") {
				t.Errorf("refused for good: %v", err)
			}
		})
	}
}

// TestLoginCooldownInAnyLanguage: Odoo's lockout is told from a refused key
// by its exception and message, not its English words, which come in the
// bot user's language over JSON-RPC to a server of several databases
// (checked before the call's context is read).
func TestLoginCooldownInAnyLanguage(t *testing.T) {
	for _, ls := range langSetups {
		if ls.protocol != "jsonrpc" { // JSON-2 has no login cooldown
			continue
		}
		t.Run(ls.name, func(t *testing.T) {
			f, good, _, _ := langBot(t, ls)
			f.srv.SetLoginCooldown(3, time.Hour)
			bad := f.client(t, ls.protocol, func(cfg *odoo.Config) { cfg.Username, cfg.APIKey = "bot", strings.Repeat("a", 40) })
			for range 3 {
				if err := bad.Connect(context.Background()); !odoo.IsAuth(err) {
					t.Fatalf("bad login: %v", err)
				}
			}
			err := good.SetProducedQty(context.Background(), f.wo, 1)
			if oe := asError(t, err); !oe.Auth() || !oe.LoginCooldown() || oe.Expired() {
				t.Errorf("object call on cooldown: %v (cooldown %v, expired %v)", err, oe.LoginCooldown(), oe.Expired())
			}
		})
	}
}
