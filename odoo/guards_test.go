package odoo_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

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

// A load answered without an id for every row, and without a message
// saying why, booked nothing the client can name: it is an error, never a
// success (the agent acknowledges the records of a load that succeeded) —
// nor a panic on the missing id (a scrap's validation needs it).
func TestLoadWithoutAnIDPerRowIsAnError(t *testing.T) {
	for _, m := range modes {
		for _, ids := range []string{"false", "[]"} {
			t.Run(m.String()+"-ids-"+ids, func(t *testing.T) {
				ctx := context.Background()
				f := newFixture(t, odootest.Options{Version: m.version})
				h := f.srv.Handler()
				front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					body, _ := io.ReadAll(r.Body)
					r.Body = io.NopCloser(bytes.NewReader(body))
					switch {
					case strings.HasSuffix(r.URL.Path, "/load"): // JSON-2
						w.Header().Set("Content-Type", "application/json")
						fmt.Fprintf(w, `{"ids": %s, "messages": []}`, ids)
					case r.URL.Path == "/jsonrpc" && bytes.Contains(body, []byte(`"load"`)):
						w.Header().Set("Content-Type", "application/json")
						io.WriteString(w, rpcResult(body, `{"ids": `+ids+`, "messages": []}`))
					default:
						h.ServeHTTP(w, r)
					}
				}))
				t.Cleanup(front.Close)
				f.url = front.URL
				c := connected(t, f, m.protocol)
				got, err := c.UpsertDowntimes(ctx, []odoo.Downtime{{XMLID: "plantedge.site_m1_downtime_1", WorkcenterID: f.wc,
					Start: time.Now().Add(-time.Minute), End: time.Now()}})
				if err == nil {
					t.Errorf("UpsertDowntimes = %v, nil; want an error", got)
				}
				func() {
					defer func() {
						if p := recover(); p != nil {
							t.Errorf("BookScrap panicked: %v", p)
						}
					}()
					done, err := c.BookScrap(ctx, odoo.Scrap{XMLID: "plantedge.site_m1_scrap_13", ProductID: f.product,
						ProductionID: f.mo, WorkorderID: f.wo, Qty: 1})
					if err == nil {
						t.Errorf("BookScrap = %v, nil; want an error", done)
					}
				}()
				if n := len(f.srv.Productivity()) + len(f.srv.Scraps()); n != 0 {
					t.Errorf("%d records in Odoo; want none (the loads never reached it)", n)
				}
			})
		}
	}
}

// A scrap booking of no quantity is refused before anything reaches Odoo:
// validated, it would be refused there and left a draft of 0 under its id.
func TestBookScrapOfNothingIsRefusedForGood(t *testing.T) {
	f := newFixture(t, odootest.Options{Version: 17})
	c := connected(t, f, "auto")
	for _, qty := range []float64{0, -1} {
		done, err := c.BookScrap(context.Background(), odoo.Scrap{XMLID: "plantedge.site_m1_scrap_14", ProductID: f.product,
			ProductionID: f.mo, WorkorderID: f.wo, Qty: qty})
		if done || !odoo.IsPermanent(err) {
			t.Errorf("BookScrap of %g = %v, %v; want a permanent error", qty, done, err)
		}
	}
	if sc := f.srv.Scraps(); len(sc) != 0 {
		t.Errorf("scraps in Odoo: %+v; want none", sc)
	}
}
