package odootest_test

// An archived product as Odoo 17.0 to 19.0 keep it (product_product.py:
// active, default True): searches leave it out (models.py _search's
// active_test), read by id still answers it, and load's field/.id look-up
// (ir_fields.py db_id_for: a search) does not find it. load answers
// {ids, messages, nextrow} (models.py load), nextrow 0 without an
// _import_limit.

import (
	"fmt"
	"testing"
)

func TestArchivedProduct(t *testing.T) {
	for _, v := range []int{17, 19} {
		t.Run(itoa(int64(v)), func(t *testing.T) {
			e := newEnv(t, v)
			other := e.s.AddProduct("Nut")
			rows := e.ok(e.exec("product.product", "read", []any{[]any{e.product}}, map[string]any{"fields": []string{"active"}})).([]any)
			if a := rows[0].(map[string]any)["active"]; a != true {
				t.Errorf("a product never archived reads active %v", a)
			}
			if wc := e.ok(e.exec("mrp.workcenter", "read", []any{[]any{e.wc}}, map[string]any{"fields": []string{"active"}})).([]any); wc[0].(map[string]any)["active"] != true {
				t.Errorf("a work center never archived reads %v", wc[0])
			}
			e.ok(e.exec("product.product", "write", []any{[]any{e.product}, map[string]any{"active": false}}, nil))
			found := e.ok(e.exec("product.product", "search", []any{[]any{}}, nil)).([]any)
			if len(found) != 1 || num(found[0]) != float64(other) {
				t.Errorf("search finds %v, want only the active product %d", found, other)
			}
			if n := e.count("product.product", []any{[]any{"active", "=", false}}); n != 1 {
				t.Errorf("%d archived products found by a leaf on active, want 1", n)
			}
			rows = e.ok(e.exec("product.product", "read", []any{[]any{e.product}}, map[string]any{"fields": []string{"name", "active"}})).([]any)
			if len(rows) != 1 || rows[0].(map[string]any)["active"] != false {
				t.Errorf("read of the archived product: %v", rows)
			}
			load := func(product int64) map[string]any {
				return e.ok(e.exec("stock.scrap", "load", []any{[]any{"product_id/.id", "scrap_qty", "production_id/.id"},
					[]any{[]any{itoa(product), "2", itoa(e.mo)}}}, nil)).(map[string]any)
			}
			r := load(e.product)
			msgs, _ := r["messages"].([]any)
			want := fmt.Sprintf("No matching record found for database id '%d' in field 'Product'", e.product)
			if r["ids"] != false || len(msgs) != 1 || msgs[0].(map[string]any)["message"] != want || r["nextrow"] != float64(0) {
				t.Errorf("scrap of the archived product: %v, want the message %q", r, want)
			}
			if r := load(other); r["nextrow"] != float64(0) || len(r["ids"].([]any)) != 1 {
				t.Errorf("scrap of an active product: %v", r)
			}
		})
	}
}
