package odootest_test

// External ids (ir.model.data) as Odoo keeps them, read in Odoo's source:
// base/models/ir_model.py (IrModelData: a unique index on (module, name),
// ir_model_data_module_name_uniq_index, made by _auto_init in 17.0/18.0
// and declared as models.UniqueIndex('(module, name)') in 19.0, the same
// name), odoo/service/model.py (retrying: an IntegrityError rolls the call
// back and is raised again as a ValidationError, "The operation cannot be
// completed: ..."; its text for a unique index no model declares a message
// for: psycopg2's message in 17.0/18.0, _sql_error_to_message_generic's in
// 19.0) and models.py _load_records (an external id whose record is gone is
// unlinked, and a new one made for the new record).

import (
	"net/http"
	"strings"
	"testing"
)

func TestExternalIDIsUniquePerModuleAndName(t *testing.T) {
	imd := func(name string, resID int64) map[string]any {
		return map[string]any{"module": "plantedge", "name": name, "model": "mrp.workcenter", "res_id": resID}
	}
	want := map[int]string{
		17: "The operation cannot be completed: duplicate key value violates unique constraint \"ir_model_data_module_name_uniq_index\"\n" +
			"DETAIL:  Key (module, name)=(plantedge, s_m1) already exists.\n",
		19: "The operation cannot be completed: The value for 'module, name' (Module and External Identifier) already exists.\n\n" +
			"Detail: Key (module, name)=(plantedge, s_m1) already exists.\n",
	}
	want[18] = want[17]
	count := func(e *env, name string) int {
		rows := e.ok(e.exec("ir.model.data", "search_read", []any{[]any{[]any{"module", "=", "plantedge"}, []any{"name", "=", name}}},
			map[string]any{"fields": []string{"res_id"}})).([]any)
		return len(rows)
	}
	for _, v := range []int{17, 18, 19} {
		t.Run("json-rpc-create-"+itoa(int64(v)), func(t *testing.T) {
			e := newEnv(t, v)
			e.ok(e.exec("ir.model.data", "create", []any{imd("s_m1", e.wc)}, nil))
			r := e.exec("ir.model.data", "create", []any{imd("s_m1", e.wc)}, nil)
			e.wantErr(r, "odoo.exceptions.ValidationError")
			if r.ErrMsg != want[v] {
				t.Errorf("message %q, want %q", r.ErrMsg, want[v])
			}
			// the whole call is rolled back: the first of a batch too
			r = e.exec("ir.model.data", "create", []any{[]any{imd("other", e.wc), imd("s_m1", e.wc)}}, nil)
			e.wantErr(r, "odoo.exceptions.ValidationError")
			if n := count(e, "s_m1"); n != 1 || count(e, "other") != 0 {
				t.Errorf("s_m1 %d times, other %d times, want 1 and 0", n, count(e, "other"))
			}
			// a rename onto an existing (module, name) violates it as well
			id := e.ok(e.exec("ir.model.data", "create", []any{imd("s_m2", e.wc)}, nil))
			r = e.exec("ir.model.data", "write", []any{[]any{id}, map[string]any{"name": "s_m1"}}, nil)
			e.wantErr(r, "odoo.exceptions.ValidationError")
			if r.ErrMsg != want[v] || count(e, "s_m2") != 1 {
				t.Errorf("rename: %q; s_m2 %d times", r.ErrMsg, count(e, "s_m2"))
			}
			// another module may have the name
			other := imd("s_m1", e.wc)
			other["module"] = "__import__"
			e.ok(e.exec("ir.model.data", "create", []any{other}, nil))
		})
	}
	t.Run("json-2-create-is-422", func(t *testing.T) {
		e := newEnv(t, 19)
		status, _, v := e.j2("ir.model.data", "create", map[string]any{"vals_list": []any{imd("s_m1", e.wc)}})
		if status != http.StatusOK {
			t.Fatalf("first create: %d %v", status, v)
		}
		status, _, v = e.j2("ir.model.data", "create", map[string]any{"vals_list": []any{imd("s_m1", e.wc)}})
		m, _ := v.(map[string]any)
		args, _ := m["arguments"].([]any)
		if status != http.StatusUnprocessableEntity || m["name"] != "odoo.exceptions.ValidationError" ||
			m["message"] != want[19] || len(args) != 1 || args[0] != want[19] {
			t.Errorf("duplicate over JSON-2: %d %v", status, v)
		}
		if n := count(e, "s_m1"); n != 1 {
			t.Errorf("s_m1 %d times, want 1", n)
		}
	})
}

// TestLoadReplacesAnExternalIDOfADeletedRecord: _load_records finds the
// external id with its record gone (the LEFT JOIN's r.id is null), unlinks
// it and creates the record, which _update_xmlids gives a new external id:
// a new ir.model.data row, the newest by id.
func TestLoadReplacesAnExternalIDOfADeletedRecord(t *testing.T) {
	e := newEnv(t, 17)
	orphan := e.ok(e.exec("ir.model.data", "create", []any{map[string]any{"module": "plantedge", "name": "s_m1_down_1",
		"model": "mrp.workcenter.productivity", "res_id": 999}}, nil))
	newer := e.ok(e.exec("ir.model.data", "create", []any{map[string]any{"module": "plantedge", "name": "s_m1_down_2",
		"model": "mrp.workcenter.productivity", "res_id": 998}}, nil))
	fields := []any{"id", "workcenter_id/.id", "loss_id/id", "date_start"}
	r := e.ok(e.exec("mrp.workcenter.productivity", "load", []any{fields, []any{
		[]any{"plantedge.s_m1_down_1", itoa(e.wc), "mrp.block_reason1", "2026-01-01 08:00:00"}}}, nil)).(map[string]any)
	ids, _ := r["ids"].([]any)
	if len(ids) != 1 {
		t.Fatalf("load: %v", r)
	}
	rows := e.ok(e.exec("ir.model.data", "search_read", []any{[]any{[]any{"module", "=", "plantedge"}}},
		map[string]any{"fields": []string{"name", "res_id"}, "order": "id desc"})).([]any)
	first, _ := rows[0].(map[string]any)
	if len(rows) != 2 || first["name"] != "s_m1_down_1" || num(first["res_id"]) != num(ids[0]) ||
		num(first["id"]) == num(orphan) || num(first["id"]) < num(newer) {
		t.Errorf("external ids, newest first: %v (orphan was %v)", rows, orphan)
	}
	if !strings.HasPrefix(e.s.Productivity()[0].XMLID, "plantedge.s_m1_down_1") {
		t.Errorf("line %+v", e.s.Productivity()[0])
	}
}
