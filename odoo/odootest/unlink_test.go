package odootest_test

// Deleting records as Odoo 17.0 to 19.0 do, read in Odoo's source:
// fields.py Many2one (ondelete 'restrict' when required, else 'set null',
// unless declared), the mrp, stock and base models' declarations
// (mrp_workcenter.py: loss_id ondelete='restrict'; res_users.py APIKeys:
// user_id ondelete='cascade') and service/model.py retrying (Postgres's
// ForeignKeyViolation raised again as a ValidationError: 17.0/18.0
// _as_validation_error, 19.0 _sql_error_to_message_generic).

import (
	"net/http"
	"testing"
)

// fkMessage is the ValidationError's text for a delete the foreign key of
// field (label) of model (description) refuses, in Odoo version v.
func fkMessage(v int, desc, model, label, field string) string {
	if v >= 19 {
		return "The operation cannot be completed: Another model is using the record you are trying to delete.\n\n" +
			"The troublemaker is: '" + desc + "' (" + model + ")\nThanks to the following constraint: '" + label + "' (" + field + ")\n" +
			"How about archiving the record instead?"
	}
	table := map[string]string{"mrp.workcenter.productivity": "mrp_workcenter_productivity", "mrp.workorder": "mrp_workorder",
		"mrp.production": "mrp_production", "stock.scrap": "stock_scrap"}[model]
	return "The operation cannot be completed: another model requires the record being deleted. If possible, archive it instead.\n\n" +
		"Model: " + desc + " (" + model + ")\nConstraint: " + table + "_" + field + "_fkey\n"
}

// timeLog creates a productivity line of the env's work center with loss
// reason lossXMLID (open when end is ""), on work order wo (0: none).
func (e *env) timeLog(lossXMLID string, wo int64, start, end string) int64 {
	e.t.Helper()
	loss := e.lossID(lossXMLID)
	vals := map[string]any{"workcenter_id": e.wc, "loss_id": loss, "date_start": start}
	if wo != 0 {
		vals["workorder_id"] = wo
	}
	if end != "" {
		vals["date_end"] = end
	}
	return int64(num(e.ok(e.exec("mrp.workcenter.productivity", "create", []any{vals}, nil))))
}

func (e *env) lossID(xmlid string) int64 {
	e.t.Helper()
	rows := e.ok(e.exec("ir.model.data", "search_read", []any{[]any{[]any{"module", "=", "mrp"}, []any{"name", "=", xmlid}}},
		map[string]any{"fields": []string{"res_id"}})).([]any)
	if len(rows) != 1 {
		e.t.Fatalf("no mrp.%s", xmlid)
	}
	return int64(num(rows[0].(map[string]any)["res_id"]))
}

func (e *env) count(model string, domain []any) int {
	e.t.Helper()
	return int(num(e.ok(e.exec(model, "search_count", []any{domain}, nil))))
}

// A loss reason a time log points at cannot be deleted (ondelete
// 'restrict'); the call is rolled back; once its lines are gone it can.
// So with a work center its work orders point at (required, so
// 'restrict'), and a product a manufacturing order or scrap points at.
func TestUnlinkRestrictedByAForeignKey(t *testing.T) {
	for _, v := range []int{17, 18, 19} {
		t.Run(itoa(int64(v)), func(t *testing.T) {
			e := newEnv(t, v)
			loss := e.lossID("block_reason1")
			line := e.timeLog("block_reason1", 0, "2026-01-01 08:00:00", "2026-01-01 08:10:00")
			r := e.exec("mrp.workcenter.productivity.loss", "unlink", []any{[]any{loss}}, nil)
			e.wantErr(r, "odoo.exceptions.ValidationError")
			if want := fkMessage(v, "Workcenter Productivity Log", "mrp.workcenter.productivity", "Loss Reason", "loss_id"); r.ErrMsg != want {
				t.Errorf("loss in use: %q, want %q", r.ErrMsg, want)
			}
			if n := e.count("mrp.workcenter.productivity.loss", []any{[]any{"id", "=", loss}}); n != 1 {
				t.Errorf("the refused delete removed the loss reason")
			}
			if e.lossID("block_reason1") != loss { // its external id stays with it
				t.Errorf("external id moved")
			}

			// the work center: its time log is the first foreign key met
			r = e.exec("mrp.workcenter", "unlink", []any{[]any{e.wc}}, nil)
			e.wantErr(r, "odoo.exceptions.ValidationError")
			if want := fkMessage(v, "Workcenter Productivity Log", "mrp.workcenter.productivity", "Work Center", "workcenter_id"); r.ErrMsg != want {
				t.Errorf("work center in use: %q, want %q", r.ErrMsg, want)
			}

			e.ok(e.exec("mrp.workcenter.productivity", "unlink", []any{[]any{line}}, nil))
			r = e.exec("mrp.workcenter", "unlink", []any{[]any{e.wc}}, nil)
			e.wantErr(r, "odoo.exceptions.ValidationError")
			if want := fkMessage(v, "Work Order", "mrp.workorder", "Work Center", "workcenter_id"); r.ErrMsg != want {
				t.Errorf("work center of a work order: %q, want %q", r.ErrMsg, want)
			}
			r = e.exec("product.product", "unlink", []any{[]any{e.product}}, nil)
			e.wantErr(r, "odoo.exceptions.ValidationError")
			if want := fkMessage(v, "Manufacturing Order", "mrp.production", "Product", "product_id"); r.ErrMsg != want {
				t.Errorf("product of an order: %q, want %q", r.ErrMsg, want)
			}

			e.ok(e.exec("mrp.workcenter.productivity.loss", "unlink", []any{[]any{loss}}, nil))
			if n := e.count("ir.model.data", []any{[]any{"module", "=", "mrp"}, []any{"name", "=", "block_reason1"}}); n != 0 {
				t.Errorf("external id of the deleted loss reason kept")
			}
		})
	}
	t.Run("json-2-is-422", func(t *testing.T) {
		e := newEnv(t, 19)
		loss := e.lossID("block_reason0")
		e.timeLog("block_reason0", 0, "2026-01-01 08:00:00", "")
		status, _, v := e.j2("mrp.workcenter.productivity.loss", "unlink", map[string]any{"ids": []int64{loss}})
		want := fkMessage(19, "Workcenter Productivity Log", "mrp.workcenter.productivity", "Loss Reason", "loss_id")
		m, _ := v.(map[string]any)
		args, _ := m["arguments"].([]any)
		if status != http.StatusUnprocessableEntity || m["name"] != "odoo.exceptions.ValidationError" ||
			m["message"] != want || len(args) != 1 || args[0] != want {
			t.Errorf("loss in use over JSON-2: %d %v", status, v)
		}
	})
}

// Deleting a work order empties the work order of its time logs (not
// required: 'set null'); they stay. 19.0 closes its open timers first
// (end_all); 17.0/18.0 leave them open. A scrap of the order keeps its
// record too, without the work order.
func TestUnlinkSetsNull(t *testing.T) {
	for _, v := range []int{17, 19} {
		t.Run(itoa(int64(v)), func(t *testing.T) {
			e := newEnv(t, v)
			closed := e.timeLog("block_reason7", e.wo, "2026-01-01 08:00:00", "2026-01-01 08:10:00")
			open := e.timeLog("block_reason7", e.wo, "2026-01-01 08:10:00", "")
			scrap := e.ok(e.exec("stock.scrap", "create", []any{map[string]any{"product_id": e.product, "scrap_qty": 1,
				"product_uom_id": 1, "production_id": e.mo, "workorder_id": e.wo}}, nil))
			e.ok(e.exec("mrp.workorder", "unlink", []any{[]any{e.wo}}, nil))
			rows := e.ok(e.exec("mrp.workcenter.productivity", "read", []any{[]any{closed, open}},
				map[string]any{"fields": []string{"workorder_id", "date_end"}})).([]any)
			if len(rows) != 2 {
				t.Fatalf("time logs after the delete: %v", rows)
			}
			for _, row := range rows {
				if wo := row.(map[string]any)["workorder_id"]; wo != false {
					t.Errorf("time log still on the deleted work order: %v", row)
				}
			}
			if end := rows[1].(map[string]any)["date_end"]; (v >= 19) != (end != false) {
				t.Errorf("v%d: open timer's end after the delete: %v", v, end)
			}
			sc := e.ok(e.exec("stock.scrap", "read", []any{[]any{scrap}}, map[string]any{"fields": []string{"workorder_id", "production_id"}})).([]any)
			if row := sc[0].(map[string]any); row["workorder_id"] != false || row["production_id"] == false {
				t.Errorf("scrap after the delete: %v", row)
			}
		})
	}
}

// Deleting a user deletes its API keys (ondelete 'cascade'): the key no
// longer opens a session. The superuser cannot be deleted.
func TestUnlinkCascades(t *testing.T) {
	e := newEnv(t, 18)
	uid, key := e.s.AddUser("bot")
	if r := e.rpc("common", "authenticate", "odoo", "bot", key, map[string]any{}); r.Result != float64(uid) {
		t.Fatalf("key before: %v", r.raw)
	}
	keys := []any{[]any{"user_id", "=", uid}}
	if n := e.count("res.users.apikeys", keys); n != 1 {
		t.Fatalf("%d keys of the user, want 1", n)
	}
	e.ok(e.exec("res.users", "unlink", []any{[]any{uid}}, nil))
	if n := e.count("res.users.apikeys", keys); n != 0 {
		t.Errorf("%d keys of the deleted user", n)
	}
	if r := e.rpc("common", "authenticate", "odoo", "bot", key, map[string]any{}); r.Result != false {
		t.Errorf("key of the deleted user: %v", r.raw)
	}
	e.wantErr(e.exec("res.users", "unlink", []any{[]any{1}}, nil), "odoo.exceptions.UserError")
}

// Deleting a manufacturing order cancels it and deletes its work orders
// that are not done (mrp_production.py unlink); a done one refuses the
// delete by its production_id (required: 'restrict'), and a done order
// is refused by _unlink_except_done. A done scrap cannot be deleted.
func TestUnlinkManufacturingOrder(t *testing.T) {
	e := newEnv(t, 17)
	line := e.timeLog("block_reason7", e.wo, "2026-01-01 08:00:00", "")
	e.ok(e.exec("mrp.production", "unlink", []any{[]any{e.mo}}, nil))
	if n := e.count("mrp.workorder", []any{[]any{"id", "=", e.wo}}); n != 0 {
		t.Errorf("work order of the deleted order kept")
	}
	rows := e.ok(e.exec("mrp.workcenter.productivity", "read", []any{[]any{line}}, map[string]any{"fields": []string{"workorder_id", "date_end"}})).([]any)
	if row := rows[0].(map[string]any); row["workorder_id"] != false || row["date_end"] == false {
		t.Errorf("time log of the deleted order (cancelled: its timer ended): %v", row)
	}

	mo := e.s.AddProduction("WH/MO/00079", e.product, 10)
	done := e.s.AddWorkorder(mo, e.wc, "Pressing", "done")
	todo := e.s.AddWorkorder(mo, e.wc, "Packing", "ready")
	r := e.exec("mrp.production", "unlink", []any{[]any{mo}}, nil)
	e.wantErr(r, "odoo.exceptions.ValidationError")
	if want := fkMessage(17, "Work Order", "mrp.workorder", "Manufacturing Order", "production_id"); r.ErrMsg != want {
		t.Errorf("order with a done work order: %q, want %q", r.ErrMsg, want)
	}
	if n := e.count("mrp.workorder", []any{[]any{"id", "in", []any{done, todo}}}); n != 2 {
		t.Errorf("%d of the refused order's work orders left, want both (rolled back)", n)
	}
	if st := e.readWOf(todo, "state")["state"]; st != "ready" {
		t.Errorf("refused delete left the work order %v", st)
	}

	e.ok(e.exec("mrp.production", "write", []any{[]any{mo}, map[string]any{"state": "done"}}, nil))
	r = e.exec("mrp.production", "unlink", []any{[]any{mo}}, nil)
	e.wantErr(r, "odoo.exceptions.UserError")
	if r.ErrMsg != "Cannot delete a manufacturing order in done state." {
		t.Errorf("done order: %q", r.ErrMsg)
	}

	scrap := e.ok(e.exec("stock.scrap", "create", []any{map[string]any{"product_id": e.product, "scrap_qty": 1, "product_uom_id": 1}}, nil))
	e.ok(e.exec("stock.scrap", "action_validate", []any{[]any{scrap}}, nil))
	r = e.exec("stock.scrap", "unlink", []any{[]any{scrap}}, nil)
	e.wantErr(r, "odoo.exceptions.UserError")
	if r.ErrMsg != "You cannot delete a scrap which is done." {
		t.Errorf("done scrap: %q", r.ErrMsg)
	}

	// a product only a scrap points at
	nut := e.s.AddProduct("Nut")
	e.ok(e.exec("stock.scrap", "create", []any{map[string]any{"product_id": nut, "scrap_qty": 1}}, nil))
	r = e.exec("product.product", "unlink", []any{[]any{nut}}, nil)
	e.wantErr(r, "odoo.exceptions.ValidationError")
	if want := fkMessage(17, "Scrap", "stock.scrap", "Product", "product_id"); r.ErrMsg != want {
		t.Errorf("product of a scrap: %q, want %q", r.ErrMsg, want)
	}
}
