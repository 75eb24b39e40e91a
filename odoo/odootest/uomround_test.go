package odootest_test

import (
	"strings"
	"testing"
)

// Fact (uom_uom.py, stock_scrap.py action_validate, stock_move_line.py
// _action_done; 17.0-19.0): a scrap is validated in its unit's rounding
// (uom.uom.rounding: 17.0/18.0 a field of each unit, 0.01 unless an
// administrator set it — 1.0 for a unit that cannot be split; 19.0 the
// decimals of "Product Unit" for every unit). A quantity that rounds to 0
// by it is "You can only enter positive quantities."; one that is not a
// multiple of it at the decimals Odoo keeps is refused when the scrap's
// move line is done ("doesn't respect the rounding precision defined on
// the unit of measure"): a UserError, the scrap left a draft as loaded.
// Neither is rounded and booked. Every user reads uom.uom (base.group_user).
func TestScrapUnitRounding(t *testing.T) {
	scrap := func(e *env, qty float64) int64 {
		return int64(num(e.ok(e.exec("stock.scrap", "create", []any{map[string]any{"product_id": e.product, "scrap_qty": qty}}, nil))))
	}
	rounding := func(e *env) float64 {
		rows := e.ok(e.exec("uom.uom", "read", []any{[]any{1}, []any{"rounding"}}, nil)).([]any)
		return num(rows[0].(map[string]any)["rounding"])
	}
	state := func(e *env, id int64) (string, int) {
		for _, s := range e.s.Scraps() {
			if s.ID == id {
				return s.State, s.Moves
			}
		}
		return "", 0
	}
	refused := func(e *env, id int64, msg string) {
		t.Helper()
		r := e.exec("stock.scrap", "action_validate", []any{[]any{id}}, nil)
		if r.ErrName != "odoo.exceptions.UserError" || !strings.Contains(r.ErrMsg, msg) {
			t.Errorf("validate: %s %q, want a UserError with %q", r.ErrName, r.ErrMsg, msg)
		}
		if st, moves := state(e, id); st != "draft" || moves != 0 {
			t.Errorf("after the refusal: %s with %d moves, want a draft with none", st, moves)
		}
	}
	done := func(e *env, id int64) {
		t.Helper()
		if r := e.ok(e.exec("stock.scrap", "action_validate", []any{[]any{id}}, nil)); r != true {
			t.Errorf("validate: %v", r)
		}
		if st, moves := state(e, id); st != "done" || moves != 1 {
			t.Errorf("validated: %s with %d moves", st, moves)
		}
	}
	const notMultiple = "doesn't respect the rounding precision defined on the unit of measure \"Units\""
	for _, v := range []int{17, 18} {
		e := newEnv(t, v)
		if r := rounding(e); r != 0.01 {
			t.Errorf("%d: Units rounding %v, want 0.01", v, r)
		}
		// 3 decimals set, the unit's rounding left at 0.01.
		e.s.SetQtyDigits(3)
		refused(e, scrap(e, 0.125), notMultiple)
		done(e, scrap(e, 0.13))
		// The unit set to whole pieces.
		e.s.SetUomRounding(1, 1.0)
		if r := rounding(e); r != 1.0 {
			t.Errorf("%d: Units rounding %v, want 1", v, r)
		}
		refused(e, scrap(e, 0.4), "You can only enter positive quantities.")
		refused(e, scrap(e, 0.6), notMultiple)
		refused(e, scrap(e, 1.6), notMultiple)
		id := scrap(e, 1.6)
		// The dialog's Confirm (do_scrap) meets the move line's check too.
		e.wantErr(e.exec("stock.scrap", "do_scrap", []any{[]any{id}}, nil), "odoo.exceptions.UserError")
		done(e, scrap(e, 2))
	}
	e := newEnv(t, 19)
	e.s.SetQtyDigits(3)
	if r := rounding(e); r != 0.001 {
		t.Errorf("19: Units rounding %v, want 0.001 (Product Unit's decimals)", r)
	}
	done(e, scrap(e, 0.125))
	e.s.SetQtyDigits(0)
	refused(e, scrap(e, 0.4), "You can only enter positive quantities.")
}
