package odootest_test

import (
	"net/http"
	"testing"
)

// A scripted refusal fails exactly the next n calls of that method, with the
// exception's real wire shape, and writes nothing.
func TestRefuseNext(t *testing.T) {
	e := newEnv(t, 17)
	e.s.RefuseNext("mrp.workorder", "write", 1, "odoo.exceptions.UserError", "refused by a server action")
	// other methods are unaffected
	e.ok(e.exec("mrp.workorder", "read", []any{[]any{e.wo}}, map[string]any{"fields": []string{"state"}}))
	r := e.exec("mrp.workorder", "write", []any{[]any{e.wo}, map[string]any{"qty_producing": 5}}, nil)
	e.wantErr(r, "odoo.exceptions.UserError")
	if q := num(e.readWO("qty_producing")["qty_producing"]); q != 0 {
		t.Fatalf("refused write changed qty_producing to %v", q)
	}
	e.ok(e.exec("mrp.workorder", "write", []any{[]any{e.wo}, map[string]any{"qty_producing": 5}}, nil))
	if q := num(e.readWO("qty_producing")["qty_producing"]); q != 5 {
		t.Fatalf("qty_producing %v after the refusal was used up, want 5", q)
	}

	e19 := newEnv(t, 19)
	e19.s.RefuseNext("mrp.workorder", "write", 1, "odoo.exceptions.UserError", "refused")
	status, _, _ := e19.j2("mrp.workorder", "write", map[string]any{"ids": []int64{e19.wo}, "vals": map[string]any{"qty_produced": 1}})
	if status != http.StatusUnprocessableEntity {
		t.Fatalf("JSON-2 status %d for a UserError, want 422", status)
	}
}
