package odoo_test

import (
	"context"
	"errors"
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
