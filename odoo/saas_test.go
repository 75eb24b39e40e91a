package odoo_test

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"

	"github.com/plantedge/plantedge/odoo"
	"github.com/plantedge/plantedge/odoo/odootest"
)

// Odoo after 19.0 (its master branch, and so the saas~19.x builds Odoo
// Online runs) has the work order's unit as uom_id; product_uom_id is gone,
// and a read naming it is refused as a whole: every work order read failed
// there (the Odoo audit). The client reads the other field once Odoo names
// the one asked for invalid — one refused call, said once — and the work
// order reads as on 19.0.
func TestWorkorderUnitFieldOfALaterOdoo(t *testing.T) {
	for _, protocol := range []string{"json2", "jsonrpc"} {
		t.Run(protocol, func(t *testing.T) {
			ctx := context.Background()
			f := newFixture(t, odootest.Options{Version: 19, Saas: 2})
			mo := f.srv.AddProduction("WH/MO/00100", f.srv.AddProduct("Bracket"), 50)
			wo := f.srv.AddWorkorder(mo, f.wc, "Pressing", "progress")
			var logs bytes.Buffer
			c := f.client(t, protocol, func(cfg *odoo.Config) { cfg.Logger = slog.New(slog.NewTextHandler(&logs, nil)) })
			for range 3 {
				got, err := c.ReadWorkorder(ctx, wo)
				if err != nil {
					t.Fatal(err)
				}
				if got.UomID == 0 || got.ProductionID != mo {
					t.Fatalf("work order read: %+v", got)
				}
			}
			wos, err := c.WorkordersInProgress(ctx, f.wc) // the fixture's and this one
			if err != nil || len(wos) != 2 || wos[0].UomID == 0 || wos[1].UomID == 0 {
				t.Fatalf("in progress: %+v, %v", wos, err)
			}
			if n := f.srv.CallCount("mrp.workorder", "read"); n != 4 {
				t.Errorf("%d work order reads for 3, want one refused and 3", n)
			}
			if n := strings.Count(logs.String(), "have no field product_uom_id"); n != 1 {
				t.Errorf("said %d times, want once:\n%s", n, logs.String())
			}
		})
	}
}
