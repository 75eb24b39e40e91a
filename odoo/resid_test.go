package odoo_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/plantedge/plantedge/odoo"
)

// An ir.model.data row whose res_id is 0, negative or missing is not
// Odoo's answer (its res_id is the record's positive database id): held
// and retried as the other answers that are not Odoo's, never taken as a
// record of that id (a false one does not decode: not Odoo's either).
func TestExternalIDWithoutAPositiveResIDIsNotOdoos(t *testing.T) {
	eachModeBehindFront(t, func(t *testing.T, m mode, f *fixture, c *odoo.Client, tr *frontTransport) {
		ctx := context.Background()
		loss, err := c.LossID(ctx, "Equipment Failure")
		if err != nil {
			t.Fatal(err)
		}
		d := odoo.Downtime{XMLID: "plantedge.site_m1_downtime_1", WorkcenterID: f.wc, LossID: loss, Start: time.Date(2026, 3, 1, 8, 0, 0, 0, time.UTC)}
		if _, err := c.UpsertDowntime(ctx, d); err != nil {
			t.Fatal(err)
		}
		for _, row := range []string{`"res_id":0`, `"res_id":-3`, `"res_id":false`, ``} {
			tr.set(func(req *http.Request, body []byte) *http.Response {
				if !strings.Contains(string(body), `"ir.model.data"`) && !strings.Contains(req.URL.Path, "/ir.model.data/") {
					return nil
				}
				rows := `[{"id":9,"name":"site_m1_downtime_1","model":"mrp.workcenter.productivity"` + map[bool]string{true: "", false: ","}[row == ""] + row + `}]`
				if req.URL.Path == "/jsonrpc" {
					rows = rpcResult(body, rows)
				}
				return answerWith(req, http.StatusOK, http.Header{"Content-Type": {"application/json"}}, []byte(rows))
			})
			check := func(what string, err error) {
				t.Helper()
				if err == nil || odoo.IsPermanent(err) || !odoo.IsTemporary(err) || !strings.Contains(err.Error(), "decode: ") ||
					row != `"res_id":false` && !strings.Contains(err.Error(), "not a record's positive id") {
					t.Errorf("%s with {%s}: %v; want transient, not Odoo's answer", what, row, err)
				}
			}
			_, _, _, err := c.ExternalID(ctx, "plantedge", "site_m1_downtime_1")
			check("ExternalID", err)
			_, err = c.ExternalIDs(ctx, []string{d.XMLID})
			check("ExternalIDs", err)
			_, err = c.DowntimesByXMLID(ctx, []string{d.XMLID})
			check("DowntimesByXMLID", err)
			_, err = c.DowntimeLine(ctx, d.XMLID)
			check("DowntimeLine", err)
		}
		tr.set(nil)
		if got, err := c.DowntimesByXMLID(ctx, []string{d.XMLID}); err != nil || got[d.XMLID].ID <= 0 {
			t.Fatalf("Odoo's own answer: %+v, %v", got, err)
		}
	})
}
