package odootest_test

import (
	"encoding/json"
	"net/http"
	"testing"
)

// fields_get describes a quantity field with the database's precision,
// [16, digits] (fields.py Float.get_digits), over JSON-RPC and JSON-2; a
// float without digits has none; only the attributes asked for are given.
func TestFieldsGetGivesTheQtyPrecision(t *testing.T) {
	e := newEnv(t, 19)
	e.s.SetQtyDigits(3)
	args := map[string]any{"allfields": []string{"qty_produced", "qty_producing", "duration"}, "attributes": []string{"digits"}}
	want := `{"duration":{},"qty_produced":{"digits":[16,3]},"qty_producing":{"digits":[16,3]}}`
	got, _ := json.Marshal(e.ok(e.exec("mrp.workorder", "fields_get", []any{}, args)))
	if string(got) != want {
		t.Errorf("JSON-RPC fields_get: %s, want %s", got, want)
	}
	status, _, v := e.j2("mrp.workorder", "fields_get", args)
	got, _ = json.Marshal(v)
	if status != http.StatusOK || string(got) != want {
		t.Errorf("JSON-2 fields_get: %d %s, want %s", status, got, want)
	}
	r := e.ok(e.exec("stock.scrap", "fields_get", []any{[]string{"scrap_qty"}}, map[string]any{"attributes": []string{"digits", "type"}}))
	got, _ = json.Marshal(r)
	if want := `{"scrap_qty":{"digits":[16,3],"type":"float"}}`; string(got) != want {
		t.Errorf("stock.scrap fields_get: %s, want %s", got, want)
	}
	// fields_get is a model method: JSON-2 refuses ids.
	if status, _, _ := e.j2("mrp.workorder", "fields_get", map[string]any{"ids": []int64{e.wo}}); status != http.StatusUnprocessableEntity {
		t.Errorf("JSON-2 fields_get with ids: %d, want 422", status)
	}
}

// Quantities written are stored rounded to the database's precision, half
// up, whichever way they come: a write (qty_producing / qty_produced),
// a load's text cell (scrap_qty); those stored before a change keep their
// digits.
func TestQtyStoredAtTheDatabasePrecision(t *testing.T) {
	for _, v := range []int{17, 19} {
		e := newEnv(t, v)
		field := "qty_producing"
		if v >= 19 {
			field = "qty_produced"
		}
		e.s.SetQtyDigits(3)
		e.ok(e.exec("mrp.workorder", "write", []any{[]any{e.wo}, map[string]any{field: 1.2345}}, nil))
		if q := num(e.readWO(field)[field]); q != 1.235 {
			t.Errorf("v%d 3 digits: %s %v, want 1.235", v, field, q)
		}
		e.s.SetQtyDigits(0)
		if q := num(e.readWO(field)[field]); q != 1.235 {
			t.Errorf("v%d: stored %v changed to %v by a new precision", v, 1.235, q)
		}
		e.ok(e.exec("mrp.workorder", "write", []any{[]any{e.wo}, map[string]any{field: 12.5}}, nil))
		if q := num(e.readWO(field)[field]); q != 13 {
			t.Errorf("v%d 0 digits: %s %v, want 13", v, field, q)
		}
		e.ok(e.exec("stock.scrap", "load", []any{[]string{"id", "product_id/.id", "scrap_qty"},
			[][]string{{"plantedge.s1", itoa(e.product), "2.4"}}}, nil))
		if s := e.s.Scraps(); len(s) != 1 || s[0].Qty != 2 {
			t.Errorf("v%d 0 digits: scraps %+v, want one of 2", v, s)
		}
	}
}

// A quantity written is stored as Odoo's float_round stores it (HALF-UP,
// with the epsilon that tips a float a few ulps short of a tie over it):
// 1.005 (the float64 1.00499999999999989…) is 1.01, not 1 as
// math.Round(v*100)/100 made it; so for 1.015 and 0.285 (negative values:
// TestFloatRoundTies).
func TestQtyStoredAsFloatRoundStoresIt(t *testing.T) {
	for _, v := range []int{17, 19} {
		e := newEnv(t, v)
		field := "qty_producing"
		if v >= 19 {
			field = "qty_produced"
		}
		for _, tc := range []struct {
			digits   int
			in, want float64
		}{
			{2, 2.675, 2.68}, {2, 1.005, 1.01}, {2, 1.015, 1.02}, {2, 0.285, 0.29}, {2, 2.5, 2.5},
			// 17's float_round gives 1.0010000000000001; the numeric
			// column keeps 1.001.
			{3, 1.0005, 1.001},
		} {
			e.s.SetQtyDigits(tc.digits)
			e.ok(e.exec("mrp.workorder", "write", []any{[]any{e.wo}, map[string]any{field: tc.in}}, nil))
			if q := num(e.readWO(field)[field]); q != tc.want {
				t.Errorf("v%d: %s written %v stored %v, want %v", v, field, tc.in, q, tc.want)
			}
		}
	}
}

// A scrap loaded with a quantity that rounds to nothing at the database's
// precision (0.4 at 0 decimals) is created all the same, a draft of 0 (a
// Float's 0 is set: required is the column's NOT NULL), and validating it
// is refused (stock_scrap.py action_validate, 17.0-19.0: the quantity
// float_is_zero raises UserError "You can only enter positive
// quantities.", before the stock is looked at): it stays a draft of 0.
// 1.6 is stored 2 and validates.
func TestScrapRoundedToNothingIsADraftOdooWillNotValidate(t *testing.T) {
	for _, v := range []int{17, 19} {
		e := newEnv(t, v)
		e.s.SetQtyDigits(0)
		short := e.s.AddProduct("Rare")
		e.s.SetShortStock(short, true)
		for _, product := range []int64{e.product, short} {
			r := e.ok(e.exec("stock.scrap", "load", []any{[]string{"id", "product_id/.id", "scrap_qty"},
				[][]string{{"plantedge.s" + itoa(product), itoa(product), "0.4"}}}, nil)).(map[string]any)
			id := r["ids"].([]any)[0]
			res := e.exec("stock.scrap", "action_validate", []any{[]any{id}}, nil)
			e.wantErr(res, "odoo.exceptions.UserError")
			if res.ErrMsg != "You can only enter positive quantities." {
				t.Errorf("v%d: action_validate of a scrap of 0: %q", v, res.ErrMsg)
			}
		}
		id := e.ok(e.exec("stock.scrap", "create", []any{map[string]any{"product_id": e.product, "scrap_qty": 1.6}}, nil))
		if r := e.ok(e.exec("stock.scrap", "action_validate", []any{[]any{id}}, nil)); r != true {
			t.Errorf("v%d: validate 1.6: %v", v, r)
		}
		sc := e.s.Scraps()
		if len(sc) != 3 || sc[0].Qty != 0 || sc[0].State != "draft" || sc[1].Qty != 0 || sc[1].State != "draft" || sc[2].Qty != 2 || sc[2].State != "done" {
			t.Errorf("v%d: scraps %+v, want two drafts of 0 and one done of 2", v, sc)
		}
	}
}

// A scrap draft stored at 2 decimals (0.4) reads 0.4 once the database
// keeps none: a Float is read as its column holds it (fields_numeric.py
// Float converts to the column and the cache on a write, not on a read;
// _fetch_query puts the column's values in the cache as they are). Written
// 0 (write {"scrap_qty": 0}, over JSON-RPC and JSON-2), it holds 0 and is
// refused validation: a draft Odoo never books.
func TestScrapDraftReadAsStoredAndWrittenZero(t *testing.T) {
	for _, v := range []int{17, 18, 19} {
		e := newEnv(t, v)
		short := e.s.AddProduct("Rare")
		e.s.SetShortStock(short, true)
		var ids []any
		for i := range 2 {
			id := e.ok(e.exec("stock.scrap", "create", []any{map[string]any{"product_id": short, "scrap_qty": 0.4}}, nil))
			if r := e.ok(e.exec("stock.scrap", "action_validate", []any{[]any{id}}, nil)); r == true {
				t.Fatalf("v%d: scrap %d short of stock validated", v, i)
			}
			ids = append(ids, id)
		}
		e.s.SetQtyDigits(0)
		rows := e.ok(e.exec("stock.scrap", "search_read", []any{[]any{[]any{"id", "in", ids}}}, map[string]any{"fields": []string{"state", "scrap_qty"}})).([]any)
		for _, r := range rows {
			if m := r.(map[string]any); m["scrap_qty"] != 0.4 || m["state"] != "draft" {
				t.Errorf("v%d: read at 0 decimals: %v, want a draft of 0.4", v, m)
			}
		}
		e.ok(e.exec("stock.scrap", "write", []any{[]any{ids[0]}, map[string]any{"scrap_qty": 0}}, nil))
		if v >= 19 {
			if status, _, r := e.j2("stock.scrap", "write", map[string]any{"ids": []any{ids[1]}, "vals": map[string]any{"scrap_qty": 0}}); status != http.StatusOK || r != true {
				t.Errorf("v%d: JSON-2 write: %d %v", v, status, r)
			}
		} else {
			e.ok(e.exec("stock.scrap", "write", []any{[]any{ids[1]}, map[string]any{"scrap_qty": 0}}, nil))
		}
		e.s.SetShortStock(short, false)
		for _, id := range ids {
			res := e.exec("stock.scrap", "action_validate", []any{[]any{id}}, nil)
			e.wantErr(res, "odoo.exceptions.UserError")
		}
		for _, s := range e.s.Scraps() {
			if s.Qty != 0 || s.State != "draft" || s.Moves != 0 {
				t.Errorf("v%d: scrap %+v, want a draft of 0", v, s)
			}
		}
	}
}
