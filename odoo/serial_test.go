package odoo_test

import (
	"context"
	"testing"

	"github.com/plantedge/plantedge/odoo/odootest"
)

// On Odoo 17/18 the agent's count is qty_producing, which the
// manufacturing order keeps at 1 for a serial-tracked product
// (mrp_production.py _set_qty_producing): the write succeeds and what was
// written is not kept (the ODOO.md audit). The work order read says so
// (product_tracking, read with it: no extra call), for the agent to tell;
// on 19 qty_produced is the work order's own and keeps what is written.
func TestSerialTrackedWorkorderIsTold(t *testing.T) {
	for _, m := range modes {
		t.Run(m.String(), func(t *testing.T) {
			ctx := context.Background()
			f := newFixture(t, odootest.Options{Version: m.version})
			serial := f.srv.AddProduct("Controller")
			f.srv.SetProductTracking(serial, "serial")
			mo := f.srv.AddProduction("WH/MO/00090", serial, 50)
			wo := f.srv.AddWorkorder(mo, f.wc, "Assembly", "progress")
			c := f.client(t, m.protocol)
			if err := c.SetProducedQty(ctx, wo, 37); err != nil {
				t.Fatal(err)
			}
			got, err := c.ReadWorkorder(ctx, wo)
			if err != nil {
				t.Fatal(err)
			}
			if got.Tracking != "serial" {
				t.Errorf("tracking %q, want serial", got.Tracking)
			}
			kept := c.ProducedQty(got) == 37
			if serial := got.SerialProducing(c.Major()); serial == kept {
				t.Errorf("Odoo %d: SerialProducing %v, and the quantity written kept: %v (%v)", c.Major(), serial, kept, c.ProducedQty(got))
			}
			plain := f.srv.AddWorkorder(f.srv.AddProduction("WH/MO/00091", f.srv.AddProduct("Bracket"), 50), f.wc, "Assembly", "ready")
			if got, err := c.ReadWorkorder(ctx, plain); err != nil || got.Tracking != "none" || got.SerialProducing(c.Major()) {
				t.Errorf("an untracked product's work order: tracking %q, %v", got.Tracking, err)
			}
		})
	}
}
