package odoo_test

import (
	"context"
	"testing"

	"github.com/plantedge/plantedge/odoo"
	"github.com/plantedge/plantedge/odoo/odootest"
)

// ValidateScrap is the retry of a validation whose answer was lost (or
// refused) after BookScrap created the draft: when the scrap is done by
// then (the lost answer had done it, or a person validated it in Odoo), it
// is reported done and not validated again — do_scrap books a stock move
// every time it runs, even on a done scrap, so a second validation takes
// the pieces out of stock twice.
func TestValidateScrapOfADoneScrapBooksNoSecondMove(t *testing.T) {
	for _, m := range modes {
		t.Run(m.String(), func(t *testing.T) {
			ctx := context.Background()
			f := newFixture(t, odootest.Options{Version: m.version})
			c := connected(t, f, m.protocol)
			s := odoo.Scrap{XMLID: "plantedge.site_m1_scrap_11", ProductID: f.product, ProductionID: f.mo, WorkorderID: f.wo, Qty: 2}
			if done, err := c.BookScrap(ctx, s); err != nil || !done {
				t.Fatalf("BookScrap = %v, %v", done, err)
			}
			for _, confirmShort := range []bool{false, true} {
				done, err := c.ValidateScrap(ctx, s.XMLID, confirmShort)
				if err != nil || !done {
					t.Fatalf("ValidateScrap of a done scrap (confirm short %v) = %v, %v; want done", confirmShort, done, err)
				}
			}
			if sc := f.srv.Scraps(); len(sc) != 1 || sc[0].State != "done" || sc[0].Moves != 1 {
				t.Fatalf("scraps = %+v; want one done with one stock move", sc)
			}
			// A draft (too little stock) is validated by it once the stock
			// is there, and then not again.
			short := f.srv.AddProduct("Rare part")
			f.srv.SetShortStock(short, true)
			s2 := odoo.Scrap{XMLID: "plantedge.site_m1_scrap_12", ProductID: short, Qty: 1}
			if done, err := c.BookScrap(ctx, s2); err != nil || done {
				t.Fatalf("short BookScrap = %v, %v; want a draft", done, err)
			}
			if done, err := c.ValidateScrap(ctx, s2.XMLID, false); err != nil || done {
				t.Fatalf("ValidateScrap of the draft while short = %v, %v; want not done", done, err)
			}
			f.srv.SetShortStock(short, false)
			for range 2 {
				if done, err := c.ValidateScrap(ctx, s2.XMLID, false); err != nil || !done {
					t.Fatalf("ValidateScrap with stock = %v, %v; want done", done, err)
				}
			}
			if sc := f.srv.Scraps(); len(sc) != 2 || sc[1].State != "done" || sc[1].Moves != 1 {
				t.Fatalf("scraps = %+v; want the second done with one stock move", sc)
			}
			// Deleted in Odoo: refused for good, nothing booked.
			if _, err := c.ValidateScrap(ctx, "plantedge.site_m1_scrap_none", false); !odoo.IsPermanent(err) {
				t.Fatalf("ValidateScrap of no scrap: %v; want a permanent error", err)
			}
		})
	}
}
