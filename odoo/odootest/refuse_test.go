package odootest_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"testing"

	"github.com/plantedge/plantedge/odoo/odootest"
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
	if q := num(e.readWO("qty_producing")["qty_producing"]); q != 500 { // the start default
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

// A method fault hits only that method: here the write is committed and its
// answer dropped, while reads before and after answer normally.
func TestFailNextCallCommitThenDrop(t *testing.T) {
	e := newEnv(t, 17)
	e.s.FailNextCall("mrp.workorder", "write", 1, odootest.FaultCommitThenDrop)
	e.ok(e.exec("mrp.workorder", "read", []any{[]any{e.wo}}, map[string]any{"fields": []string{"state"}}))
	body, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "method": "call", "id": 1, "params": map[string]any{
		"service": "object", "method": "execute_kw",
		"args": []any{"odoo", 2, e.s.AdminKey(), "mrp.workorder", "write", []any{[]any{e.wo}, map[string]any{"qty_producing": 7}}, map[string]any{}}}})
	if resp, err := http.Post(e.url+"/jsonrpc", "application/json", bytes.NewReader(body)); err == nil {
		resp.Body.Close()
		t.Fatalf("write answered %s, want a dropped connection", resp.Status)
	}
	if q := num(e.readWO("qty_producing")["qty_producing"]); q != 7 {
		t.Fatalf("qty_producing %v after commit-then-drop, want 7 (the write is applied)", q)
	}
}
