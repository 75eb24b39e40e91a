package odootest_test

import (
	"net/http"
	"strings"
	"testing"
)

// bot adds a user "bot" to the environment and returns its uid and key.
func (e *env) bot() (int64, string) {
	e.t.Helper()
	return e.s.AddUser("bot")
}

// execAs calls object.execute_kw as the given user.
func (e *env) execAs(uid int64, key, model, method string, args []any, kw map[string]any) rpcEnv {
	e.t.Helper()
	if kw == nil {
		kw = map[string]any{}
	}
	return e.rpc("object", "execute_kw", "odoo", uid, key, model, method, args, kw)
}

// j2As calls JSON-2 with the given key and returns status and decoded body.
func (e *env) j2As(key, model, method string, body string) (int, string) {
	e.t.Helper()
	status, _, b := e.post("/json/2/"+model+"/"+method, []byte(body),
		map[string]string{"Authorization": "bearer " + key, "X-Odoo-Database": "odoo"})
	return status, strings.TrimSpace(string(b))
}

// readDenied is Odoo's AccessError for reading model (its description
// desc), listing the groups that may.
func readDenied(desc, model string, groups ...string) string {
	return "You are not allowed to access '" + desc + "' (" + model + ") records.\n\n" +
		"This operation is allowed for the following groups:\n\t- " + strings.Join(groups, "\n\t- ") + "\n\n" +
		"Contact your administrator to request access if necessary."
}

const workorderWriteDenied = "You are not allowed to modify 'Work Order' (mrp.workorder) records.\n\n" +
	"This operation is allowed for the following groups:\n\t- Manufacturing/User\n\n" +
	"Contact your administrator to request access if necessary."

// Fact (models.py 17.0): check_access_rights is an @api.model method;
// has_access does not exist yet.
func TestAccessMethods17(t *testing.T) {
	e := newEnv(t, 17)
	if got := e.ok(e.exec("mrp.workorder", "check_access_rights", []any{"write"}, map[string]any{"raise_exception": false})); got != true {
		t.Fatalf("check_access_rights = %v, want true", got)
	}
	e.wantErr(e.exec("mrp.workorder", "has_access", []any{[]any{}, "write"}, nil), "builtins.AttributeError")
}

// Fact (models.py 18.0): has_access(operation) is a record method (an empty
// recordset checks the model); check_access_rights is still there, deprecated.
func TestAccessMethods18(t *testing.T) {
	e := newEnv(t, 18)
	if got := e.ok(e.exec("mrp.workorder", "has_access", []any{[]any{}, "write"}, nil)); got != true {
		t.Fatalf("has_access = %v, want true", got)
	}
	if got := e.ok(e.exec("mrp.workorder", "check_access_rights", []any{"read"}, map[string]any{"raise_exception": false})); got != true {
		t.Fatalf("check_access_rights = %v, want true", got)
	}
}

// Fact (19): has_access over JSON-2 with empty ids; check_access_rights is gone.
func TestAccessMethods19(t *testing.T) {
	e := newEnv(t, 19)
	if status, body := e.j2As(e.s.AdminKey(), "mrp.workorder", "has_access", `{"ids":[],"operation":"write"}`); status != http.StatusOK || body != "true" {
		t.Fatalf("has_access: %d %s, want 200 true", status, body)
	}
	if status, body := e.j2As(e.s.AdminKey(), "mrp.workorder", "check_access_rights", `{"operation":"write"}`); status != http.StatusNotFound {
		t.Fatalf("check_access_rights: %d %s, want 404", status, body)
	}
	e.ok(e.exec("mrp.workorder", "has_access", []any{[]any{}, "read"}, nil))
}

// DenyAccess applies to one user: has_access and check_access_rights answer
// per user; check_access_rights with raise_exception (the default) raises.
func TestAccessAnswersPerUser(t *testing.T) {
	for _, v := range []int{17, 18} {
		e := newEnv(t, v)
		uid, key := e.bot()
		e.s.DenyAccess("bot", "mrp.workorder", "write")
		check := func(u int64, k, op string) any {
			return e.ok(e.execAs(u, k, "mrp.workorder", "check_access_rights", []any{op}, map[string]any{"raise_exception": false}))
		}
		if check(uid, key, "write") != false || check(uid, key, "read") != true || check(2, e.s.AdminKey(), "write") != true {
			t.Fatalf("%d: check_access_rights does not answer per user", v)
		}
		r := e.execAs(uid, key, "mrp.workorder", "check_access_rights", []any{"write"}, nil)
		e.wantErr(r, "odoo.exceptions.AccessError")
		if r.ErrMsg != workorderWriteDenied {
			t.Fatalf("%d: message %q", v, r.ErrMsg)
		}
	}
	e := newEnv(t, 19)
	_, key := e.bot()
	e.s.DenyAccess("bot", "mrp.workcenter.productivity", "create")
	for _, c := range []struct {
		key, model, op, want string
	}{
		{key, "mrp.workcenter.productivity", "create", "false"},
		{key, "mrp.workcenter.productivity", "write", "true"},
		{key, "mrp.workorder", "create", "true"},
		{e.s.AdminKey(), "mrp.workcenter.productivity", "create", "true"},
	} {
		if status, body := e.j2As(c.key, c.model, "has_access", `{"ids":[],"operation":"`+c.op+`"}`); status != http.StatusOK || body != c.want {
			t.Errorf("has_access %s %s: %d %s, want %s", c.model, c.op, status, body, c.want)
		}
	}
}

// Fact (ir_model.py): an unknown operation fails the assertion of ir.model.access.check.
func TestAccessInvalidOperation(t *testing.T) {
	e := newEnv(t, 18)
	e.wantErr(e.exec("mrp.workorder", "has_access", []any{[]any{}, "delete"}, nil), "builtins.AssertionError")
}

// Denied read: search_read, search and read raise AccessError.
func TestAccessDeniedReadRefusesReads(t *testing.T) {
	e := newEnv(t, 17)
	uid, key := e.bot()
	e.s.DenyAccess("bot", "mrp.workorder", "read")
	for _, c := range []struct {
		method string
		args   []any
	}{
		{"search_read", []any{[]any{}}}, {"search", []any{[]any{}}}, {"read", []any{[]any{e.wo}}},
	} {
		r := e.execAs(uid, key, "mrp.workorder", c.method, c.args, nil)
		e.wantErr(r, "odoo.exceptions.AccessError")
		if !strings.HasPrefix(r.ErrMsg, "You are not allowed to access 'Work Order' (mrp.workorder) records.\n\n") {
			t.Fatalf("%s: message %q", c.method, r.ErrMsg)
		}
	}
	e.ok(e.execAs(uid, key, "mrp.workcenter", "search_read", []any{[]any{}}, nil)) // other models unaffected
}

// Denied write: write and the buttons raise AccessError, change nothing, and
// JSON-2 answers 403 with the exception object.
func TestAccessDeniedWriteRefusesWrites(t *testing.T) {
	e := newEnv(t, 17)
	uid, key := e.bot()
	e.s.DenyAccess("bot", "mrp.workorder", "write")
	r := e.execAs(uid, key, "mrp.workorder", "write", []any{[]any{e.wo}, map[string]any{"qty_producing": 5}}, nil)
	e.wantErr(r, "odoo.exceptions.AccessError")
	if r.ErrMsg != workorderWriteDenied {
		t.Fatalf("message %q", r.ErrMsg)
	}
	e.wantErr(e.execAs(uid, key, "mrp.workorder", "button_pending", []any{[]any{e.wo}}, nil), "odoo.exceptions.AccessError")
	if q := num(e.readWO("qty_producing")["qty_producing"]); q != 500 { // the start default
		t.Fatalf("denied write changed qty_producing to %v", q)
	}
	e.ok(e.execAs(uid, key, "mrp.workorder", "read", []any{[]any{e.wo}}, map[string]any{"fields": []string{"state"}}))

	e19 := newEnv(t, 19)
	_, key19 := e19.bot()
	e19.s.DenyAccess("bot", "mrp.workorder", "write")
	status, body := e19.j2As(key19, "mrp.workorder", "write", `{"ids":[`+itoa(e19.wo)+`],"vals":{"qty_produced":3}}`)
	if status != http.StatusForbidden || !strings.Contains(body, `"name":"odoo.exceptions.AccessError"`) ||
		!strings.Contains(body, `You are not allowed to modify 'Work Order' (mrp.workorder) records.`) {
		t.Fatalf("JSON-2 denied write: %d %s", status, body)
	}
}

// Denied create: create raises AccessError, load of a new external id answers
// it as a row message; load of an existing external id is a write and still
// works.
func TestAccessDeniedCreateRefusesCreateAndLoad(t *testing.T) {
	e := newEnv(t, 17)
	uid, key := e.bot()
	fields := []string{"id", "workcenter_id/.id", "loss_id/id", "date_start"}
	row := func(x string) []any {
		return []any{[]any{"plantedge." + x, e.wc, "mrp.block_reason1", "2026-01-05 08:00:00"}}
	}
	res := e.ok(e.execAs(uid, key, "mrp.workcenter.productivity", "load", []any{fields, row("a")}, nil)).(map[string]any)
	if res["ids"] == false {
		t.Fatalf("load before the denial: %v", res)
	}
	e.s.DenyAccess("bot", "mrp.workcenter.productivity", "create")
	r := e.execAs(uid, key, "mrp.workcenter.productivity", "create",
		[]any{map[string]any{"workcenter_id": e.wc, "loss_id": 2, "date_start": "2026-01-05 08:00:00"}}, nil)
	e.wantErr(r, "odoo.exceptions.AccessError")
	if !strings.HasPrefix(r.ErrMsg, "You are not allowed to create 'Workcenter Productivity Log' (mrp.workcenter.productivity) records.") {
		t.Fatalf("message %q", r.ErrMsg)
	}
	// load answers the row's AccessError as its message (ids false).
	res = e.ok(e.execAs(uid, key, "mrp.workcenter.productivity", "load", []any{fields, row("b")}, nil)).(map[string]any)
	if msgs, _ := res["messages"].([]any); res["ids"] != false || len(msgs) != 1 ||
		!strings.HasPrefix(msgs[0].(map[string]any)["message"].(string), "You are not allowed to create 'Workcenter Productivity Log'") {
		t.Fatalf("load with create denied: %v", res)
	}
	res = e.ok(e.execAs(uid, key, "mrp.workcenter.productivity", "load", []any{fields, row("a")}, nil)).(map[string]any)
	if res["ids"] == false {
		t.Fatalf("load update with create denied: %v", res)
	}
	if n := len(e.s.Productivity()); n != 1 {
		t.Fatalf("%d productivity lines, want 1", n)
	}
}

// Denied write: load of an existing external id fails with an AccessError
// message (it is a write), a new one is still created, and a batch with both
// writes nothing.
func TestAccessDeniedWriteRefusesLoadUpdate(t *testing.T) {
	e := newEnv(t, 17)
	uid, key := e.bot()
	fields := []string{"id", "workcenter_id/.id", "loss_id/id", "date_start"}
	row := func(x string) []any { return []any{"plantedge." + x, e.wc, "mrp.block_reason1", "2026-01-05 08:00:00"} }
	e.ok(e.execAs(uid, key, "mrp.workcenter.productivity", "load", []any{fields, []any{row("a")}}, nil))
	e.s.DenyAccess("bot", "mrp.workcenter.productivity", "write")
	res := e.ok(e.execAs(uid, key, "mrp.workcenter.productivity", "load", []any{fields, []any{row("b"), row("a")}}, nil)).(map[string]any)
	msgs, _ := res["messages"].([]any)
	if res["ids"] != false || len(msgs) != 1 ||
		!strings.HasPrefix(msgs[0].(map[string]any)["message"].(string), "You are not allowed to modify 'Workcenter Productivity Log' (mrp.workcenter.productivity) records.") {
		t.Fatalf("load update with write denied: %v", res)
	}
	if n := len(e.s.Productivity()); n != 1 {
		t.Fatalf("%d productivity lines after a refused batch, want 1 (all or nothing)", n)
	}
	e.ok(e.execAs(uid, key, "mrp.workcenter.productivity", "load", []any{fields, []any{row("c")}}, nil))
	if n := len(e.s.Productivity()); n != 2 {
		t.Fatalf("%d productivity lines, want 2", n)
	}
}

// Fact (mrp_workorder.py 17.0/18.0 _set_qty_producing; 19.0 write): a
// work order's produced quantity reaches its manufacturing order, written
// with the caller's rights (production_id.qty_producing = ...), so Odoo
// refuses the write of a user who may write work orders but not
// manufacturing orders, naming mrp.production, and nothing is written.
func TestAccessDeniedProductionWriteRefusesQuantityWrite(t *testing.T) {
	for _, v := range []int{17, 18, 19} {
		e := newEnv(t, v)
		uid, key := e.bot()
		e.s.DenyAccess("bot", "mrp.production", "write")
		field := "qty_producing"
		if v >= 19 {
			field = "qty_produced"
		}
		before := e.s.ProductionQtyProducing(e.mo)
		r := e.execAs(uid, key, "mrp.workorder", "write", []any{[]any{e.wo}, map[string]any{field: 7}}, nil)
		e.wantErr(r, "odoo.exceptions.AccessError")
		if !strings.HasPrefix(r.ErrMsg, "You are not allowed to modify 'Manufacturing Order' (mrp.production) records.") {
			t.Fatalf("%d: message %q", v, r.ErrMsg)
		}
		if q := e.s.ProductionQtyProducing(e.mo); q != before {
			t.Fatalf("%d: refused write changed the order's qty_producing from %v to %v", v, before, q)
		}
		if q := num(e.readWO(field)[field]); q == 7 {
			t.Fatalf("%d: refused write changed the work order's %s", v, field)
		}
		e.s.GrantAccess("bot", "mrp.production", "write")
		e.ok(e.execAs(uid, key, "mrp.workorder", "write", []any{[]any{e.wo}, map[string]any{field: 7}}, nil))
	}
}

// Fact (mrp_workorder.py 17.0/18.0 _set_qty_producing, then
// mrp_production.py _set_qty_producing; 19.0 mrp_workorder.py write sets
// the least produced quantity of the order's work orders on their
// qty_producing, whose inverse is that same _set_qty_producing): the
// order's new producing quantity sets each component move's quantity
// (_set_quantity_done) and marks it picked, writes on stock.move with the
// caller's rights: a user who may write work orders and manufacturing
// orders but not stock moves is refused the quantity write, naming
// stock.move and the Inventory groups, and nothing is written.
// Manufacturing / User holds it (through Inventory / User).
func TestAccessDeniedStockMoveWriteRefusesQuantityWrite(t *testing.T) {
	for _, v := range []int{17, 18, 19} {
		e := newEnv(t, v)
		uid, key := e.bot()
		e.s.GiveOnlyManufacturingUser("bot")
		e.s.DenyAccess("bot", "stock.move", "write")
		field := "qty_producing"
		if v >= 19 {
			field = "qty_produced"
		}
		before := e.s.ProductionQtyProducing(e.mo)
		r := e.execAs(uid, key, "mrp.workorder", "write", []any{[]any{e.wo}, map[string]any{field: 7}}, nil)
		e.wantErr(r, "odoo.exceptions.AccessError")
		const want = "You are not allowed to modify 'Stock Move' (stock.move) records.\n\n" +
			"This operation is allowed for the following groups:\n\t- Inventory/Administrator\n\t- Inventory/User\n\n" +
			"Contact your administrator to request access if necessary."
		if r.ErrMsg != want {
			t.Fatalf("%d: message %q", v, r.ErrMsg)
		}
		if q := e.s.ProductionQtyProducing(e.mo); q != before {
			t.Fatalf("%d: refused write changed the order's qty_producing from %v to %v", v, before, q)
		}
		if q := num(e.readWO(field)[field]); q == 7 {
			t.Fatalf("%d: refused write changed the work order's %s", v, field)
		}
		e.s.GrantAccess("bot", "stock.move", "write")
		e.ok(e.execAs(uid, key, "mrp.workorder", "write", []any{[]any{e.wo}, map[string]any{field: 7}}, nil))
		if q := e.s.ProductionQtyProducing(e.mo); q != 7 {
			t.Fatalf("%d: the order's qty_producing %v, want 7", v, q)
		}
	}
}

// Fact (19.0 mrp_workorder.py write): while another work order of the
// order has produced nothing, the least produced quantity is 0, nothing is
// written on the order or its moves, and a user who may not write stock
// moves (or manufacturing orders) has its work order's qty_produced
// written.
func TestQtyProducedWithoutOrderChangeNeedsNoStockMoveWrite(t *testing.T) {
	e := newEnv(t, 19)
	uid, key := e.bot()
	e.s.AddWorkorder(e.mo, e.wc, "Packing", "ready")
	e.s.GiveOnlyManufacturingUser("bot")
	e.s.DenyAccess("bot", "stock.move", "write")
	e.s.DenyAccess("bot", "mrp.production", "write")
	before := e.s.ProductionQtyProducing(e.mo)
	e.ok(e.execAs(uid, key, "mrp.workorder", "write", []any{[]any{e.wo}, map[string]any{"qty_produced": 7}}, nil))
	if q := num(e.readWO("qty_produced")["qty_produced"]); q != 7 {
		t.Fatalf("qty_produced %v, want 7", q)
	}
	if q := e.s.ProductionQtyProducing(e.mo); q != before {
		t.Fatalf("the order's qty_producing changed from %v to %v", before, q)
	}
}

// Fact (stock_scrap.py 17.0-19.0): action_validate writes nothing itself:
// it reads the scrap and either returns the Insufficient Quantity wizard
// (no write) or runs do_scrap, whose first write (scrap.name = ...) needs
// write on stock.scrap. So a user without it gets the wizard when stock is
// short, and AccessError only when the scrap would be booked.
func TestAccessDeniedScrapWriteRefusesOnlyTheBooking(t *testing.T) {
	e := newEnv(t, 17)
	uid, key := e.bot()
	short := e.s.AddProduct("Rare")
	e.s.SetShortStock(short, true)
	idShort := e.ok(e.exec("stock.scrap", "create", []any{map[string]any{"product_id": short, "scrap_qty": 2.0}}, nil))
	idOK := e.ok(e.exec("stock.scrap", "create", []any{map[string]any{"product_id": e.product, "scrap_qty": 2.0}}, nil))
	e.s.DenyAccess("bot", "stock.scrap", "write")
	r := e.ok(e.execAs(uid, key, "stock.scrap", "action_validate", []any{[]any{idShort}}, nil))
	if m, ok := r.(map[string]any); !ok || m["res_model"] != "stock.warn.insufficient.qty.scrap" {
		t.Fatalf("short stock, write denied: %v, want the wizard", r)
	}
	res := e.execAs(uid, key, "stock.scrap", "action_validate", []any{[]any{idOK}}, nil)
	e.wantErr(res, "odoo.exceptions.AccessError")
	if !strings.HasPrefix(res.ErrMsg, "You are not allowed to modify 'Scrap' (stock.scrap) records.") {
		t.Fatalf("message %q", res.ErrMsg)
	}
	e.wantErr(e.execAs(uid, key, "stock.scrap", "do_scrap", []any{[]any{idShort}}, nil), "odoo.exceptions.AccessError")
	if sc := e.s.Scraps(); sc[0].State != "draft" || sc[1].State != "draft" {
		t.Fatalf("scraps %+v, want both drafts", sc)
	}
	e.s.DenyAccess("bot", "stock.scrap", "read")
	e.wantErr(e.execAs(uid, key, "stock.scrap", "action_validate", []any{[]any{idShort}}, nil), "odoo.exceptions.AccessError")
}

// Fact (stock_scrap.py 17.0-19.0 do_scrap): booking a scrap creates a stock
// move with its move line (_prepare_move_values) and marks it done
// (_action_done), with the caller's rights: a user who may write scraps
// but not create stock moves has the booking refused, the scrap left a
// draft. Manufacturing / User (through Inventory / User) holds them.
func TestAccessDeniedStockMoveRefusesTheBooking(t *testing.T) {
	e := newEnv(t, 19)
	uid, key := e.bot()
	e.s.GiveOnlyManufacturingUser("bot")
	id := e.ok(e.exec("stock.scrap", "create", []any{map[string]any{"product_id": e.product, "scrap_qty": 2.0}}, nil))
	// Move lines: every internal user holds them (stock
	// security/ir.model.access.csv access_stock_move_line_all,
	// base.group_user 1,1,1,1), and Odoo's refusal names that group.
	for _, right := range []struct{ model, op, msg, group string }{
		{"stock.move", "create", "You are not allowed to create 'Stock Move' (stock.move) records.", "\t- Inventory/User\n"},
		{"stock.move.line", "create", "You are not allowed to create 'Product Moves (Stock Move Line)' (stock.move.line) records.", "\t- User types/Internal User\n"},
		{"stock.move", "write", "You are not allowed to modify 'Stock Move' (stock.move) records.", "\t- Inventory/User\n"},
	} {
		e.s.DenyAccess("bot", right.model, right.op)
		for _, method := range []string{"action_validate", "do_scrap"} {
			res := e.execAs(uid, key, "stock.scrap", method, []any{[]any{id}}, nil)
			e.wantErr(res, "odoo.exceptions.AccessError")
			if !strings.HasPrefix(res.ErrMsg, right.msg) || !strings.Contains(res.ErrMsg, right.group) {
				t.Fatalf("%s without %s on %s: %q", method, right.op, right.model, res.ErrMsg)
			}
		}
		if sc := e.s.Scraps(); sc[0].State != "draft" {
			t.Fatalf("scrap %+v, want a draft", sc[0])
		}
		e.s.GrantAccess("bot", right.model, right.op)
	}
	if r := e.ok(e.execAs(uid, key, "stock.scrap", "action_validate", []any{[]any{id}}, nil)); r != true {
		t.Fatalf("action_validate as Manufacturing / User: %v", r)
	}
	if sc := e.s.Scraps(); sc[0].State != "done" {
		t.Fatalf("scrap %+v, want done", sc[0])
	}
}

// Fact (stock_scrap.py 18.0 action_validate, check_available_qty; stock
// product.py qty_available, compute_sudo=False, _compute_quantities_dict;
// models.py _read_group): before it books a storable product's scrap, or
// answers the Insufficient Quantity wizard, action_validate reads the
// product's stock on hand with the caller's rights: read on stock moves,
// then on quants. A user without them is refused whether stock is short or
// not, the scrap left a draft. Manufacturing / User holds both (through
// Inventory / User; every internal user reads quants).
func TestAccessDeniedStockReadRefusesTheValidation(t *testing.T) {
	e := newEnv(t, 18)
	uid, key := e.bot()
	e.s.GiveOnlyManufacturingUser("bot")
	short := e.s.AddProduct("Rare")
	e.s.SetShortStock(short, true)
	idShort := e.ok(e.exec("stock.scrap", "create", []any{map[string]any{"product_id": short, "scrap_qty": 2.0}}, nil))
	idOK := e.ok(e.exec("stock.scrap", "create", []any{map[string]any{"product_id": e.product, "scrap_qty": 2.0}}, nil))
	for _, right := range []struct{ model, msg string }{
		{"stock.move", readDenied("Stock Move", "stock.move", "Inventory/Administrator", "Inventory/User")},
		{"stock.quant", readDenied("Quants", "stock.quant", "Inventory/User", "User types/Internal User")},
	} {
		e.s.DenyAccess("bot", right.model, "read")
		for _, id := range []any{idShort, idOK} {
			res := e.execAs(uid, key, "stock.scrap", "action_validate", []any{[]any{id}}, nil)
			e.wantErr(res, "odoo.exceptions.AccessError")
			if res.ErrMsg != right.msg {
				t.Fatalf("action_validate without read on %s: %q, want %q", right.model, res.ErrMsg, right.msg)
			}
		}
		if sc := e.s.Scraps(); sc[0].State != "draft" || sc[1].State != "draft" {
			t.Fatalf("scraps %+v, want drafts", sc)
		}
		e.s.GrantAccess("bot", right.model, "read")
	}
	if r := e.ok(e.execAs(uid, key, "stock.scrap", "action_validate", []any{[]any{idShort}}, nil)); r == true {
		t.Fatal("short stock as Manufacturing / User: booked, want the wizard")
	}
	if r := e.ok(e.execAs(uid, key, "stock.scrap", "action_validate", []any{[]any{idOK}}, nil)); r != true {
		t.Fatalf("action_validate as Manufacturing / User: %v", r)
	}
}

// Fact (base security/ir.model.access.csv, 17.0-19.0): internal users hold
// nothing of external ids (access_ir_model_data_user 0,0,0,0), only
// Administration / Access Rights reads them: a Manufacturing / User bot is
// refused the lookups the agent finds its records by, unless a group of
// its own gives it read access to ir.model.data (the README's bot).
func TestAccessExternalIDsNeedAGroupOfTheirOwn(t *testing.T) {
	e := newEnv(t, 19)
	uid, key := e.bot()
	e.s.GiveOnlyManufacturingUser("bot")
	args := []any{[]any{[]any{"module", "=", "mrp"}}}
	r := e.execAs(uid, key, "ir.model.data", "search_read", args, map[string]any{"fields": []any{"name"}})
	e.wantErr(r, "odoo.exceptions.AccessError")
	if want := readDenied("Model Data", "ir.model.data", "Administration/Access Rights"); r.ErrMsg != want {
		t.Fatalf("message %q, want %q", r.ErrMsg, want)
	}
	e.s.GiveOnlyBotRights("bot")
	e.ok(e.execAs(uid, key, "ir.model.data", "search_read", args, map[string]any{"fields": []any{"name"}}))
	e.wantErr(e.execAs(uid, key, "ir.model.data", "create", []any{map[string]any{"module": "x", "name": "y", "model": "res.users", "res_id": uid}}, nil),
		"odoo.exceptions.AccessError")
}

// Fact (base security/ir.model.access.csv): internal users read groups,
// only Administration / Access Rights (implied by Settings) changes them;
// Manufacturing / Administrator changes work centers and loss reasons,
// Manufacturing / User only reads them.
func TestAccessGroupsAndManufacturingAdministrator(t *testing.T) {
	e := newEnv(t, 18)
	uid, key := e.bot()
	e.s.GiveOnlyManufacturingUser("bot")
	has := func(model, op string) bool {
		t.Helper()
		return e.ok(e.execAs(uid, key, model, "has_access", []any{[]any{}, op}, nil)) == true
	}
	if !has("res.groups", "read") || has("res.groups", "write") || has("mrp.workcenter", "write") || has("mrp.workcenter.productivity.loss", "create") {
		t.Fatal("Manufacturing / User: want read on groups only, and no change to work centers or loss reasons")
	}
	e.s.GiveAccessRights(uid)
	if !has("res.groups", "write") || has("ir.config_parameter", "write") {
		t.Fatal("Access Rights: want write on groups, not on system parameters")
	}
	e.s.GiveOnlyManufacturingAdministrator("bot")
	if !has("mrp.workcenter", "write") || !has("mrp.workcenter.productivity.loss", "write") || !has("mrp.workorder", "write") {
		t.Fatal("Manufacturing / Administrator: want write on work centers, loss reasons and work orders")
	}
	uid2, key2 := e.s.AddUser("admin-bot")
	e.s.MakeAdmin(uid2)
	if r := e.ok(e.execAs(uid2, key2, "res.groups", "has_access", []any{[]any{}, "write"}, nil)); r != true {
		t.Fatal("Settings: want write on groups (it implies Access Rights)")
	}
}

// Fact (ir_model.py group_names_with_access, 17.0 to 19.0): the access
// error lists every group holding the right, "Category/Group" without
// spaces, by category then name (stock/security/ir.model.access.csv:
// stock.scrap read for Inventory users and managers).
func TestAccessErrorListsEveryGroup(t *testing.T) {
	e := newEnv(t, 18)
	uid, key := e.bot()
	e.s.DenyAccess("bot", "stock.scrap", "read")
	r := e.execAs(uid, key, "stock.scrap", "search_read", []any{[]any{}}, nil)
	e.wantErr(r, "odoo.exceptions.AccessError")
	if want := readDenied("Scrap", "stock.scrap", "Inventory/Administrator", "Inventory/User"); r.ErrMsg != want {
		t.Fatalf("message %q, want %q", r.ErrMsg, want)
	}
}

// Fact (mrp_workorder.py 19.0 write): the quantity produced of a done or
// cancelled work order is refused with Odoo's own words.
func TestQtyProducedOfDoneWorkorderMessage19(t *testing.T) {
	e := newEnv(t, 19)
	e.ok(e.exec("mrp.workorder", "button_finish", []any{[]any{e.wo}}, nil))
	r := e.exec("mrp.workorder", "write", []any{[]any{e.wo}, map[string]any{"qty_produced": 3}}, nil)
	e.wantErr(r, "odoo.exceptions.UserError")
	if want := "You cannot change the quantity produced of a work order that is in done or cancel state."; r.ErrMsg != want {
		t.Fatalf("message %q, want %q", r.ErrMsg, want)
	}
}

// SetWorkorderQty writes as someone no rule refuses: also the work order
// of a manufacturing order in a company the administrator (uid 2) is not
// in, which the multi-company rule hides from it (the review of the bot's
// rights: a panic "top-secret records").
func TestSetWorkorderQtyOnAnotherCompanysOrder(t *testing.T) {
	for _, v := range []int{17, 19} {
		e := newEnv(t, v)
		c2 := e.s.AddCompany("Second Plant")
		e.s.SetProductionCompany(e.mo, c2)
		e.s.SetWorkorderQty(e.wo, 7)
		if q := e.s.ProductionQtyProducing(e.mo); q != 7 {
			t.Fatalf("%d: the order's qty_producing %v, want 7", v, q)
		}
	}
}
