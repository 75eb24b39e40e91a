package odoo_test

import (
	"context"
	"os"
	"testing"

	"github.com/plantedge/plantedge/odoo/odootest"
)

// Known gaps: real Odoo behaviour the client does not handle yet. Each test
// fails; it is skipped unless PLANTEDGE_KNOWN_GAPS is set, so that the
// suite stays green until the fix lands with the skip removed.
func knownGap(t *testing.T) {
	t.Helper()
	if os.Getenv("PLANTEDGE_KNOWN_GAPS") == "" {
		t.Skip("known gap (odoo-audit report): set PLANTEDGE_KNOWN_GAPS=1 to see it fail")
	}
}

// On Odoo 17/18 the agent's count is qty_producing, which the
// manufacturing order keeps at 1 for a serial-tracked product
// (mrp_production.py _set_qty_producing): the write succeeds and what was
// written is dropped, so every piece counted is lost without an error.
// The client should tell (the work order's product_tracking reads with it,
// no extra call) instead of reporting the write as done.
func TestKnownGapSerialTrackedProducingIsDropped(t *testing.T) {
	knownGap(t)
	for _, m := range modes[:2] { // 17, 18
		t.Run(m.String(), func(t *testing.T) {
			ctx := context.Background()
			f := newFixture(t, odootest.Options{Version: m.version})
			serial := f.srv.AddProduct("Controller")
			f.srv.SetProductTracking(serial, "serial")
			mo := f.srv.AddProduction("WH/MO/00090", serial, 50)
			wo := f.srv.AddWorkorder(mo, f.wc, "Assembly", "progress")
			c := f.client(t, m.protocol)
			err := c.SetProducedQty(ctx, wo, 37)
			got, rerr := c.ReadWorkorder(ctx, wo)
			if rerr != nil {
				t.Fatal(rerr)
			}
			if err == nil && c.ProducedQty(got) != 37 {
				t.Errorf("SetProducedQty(37) reported success, but Odoo keeps %v", c.ProducedQty(got))
			}
		})
	}
}
