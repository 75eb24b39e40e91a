package odootest

import (
	"fmt"
	"slices"
	"sort"
	"strings"
)

// Deleting records as Odoo 17.0 to 19.0 do. models.py unlink runs the
// model's @api.ondelete methods (and the model's unlink override around
// them), then DELETEs the rows; Postgres applies each many2one's foreign
// key: ON DELETE RESTRICT refuses while a row still points at a deleted
// one, CASCADE deletes the pointing rows (no Python unlink of theirs),
// SET NULL empties the column. A field without ondelete gets one from
// fields.py Many2one setup: 'restrict' when required, else 'set null'.
//
// The refusal is a psycopg2 ForeignKeyViolation, which retrying
// (service/model.py, around JSON-RPC and JSON-2 calls alike) rolls back
// and raises again as a ValidationError naming the model of the table the
// constraint is on (Postgres reports the referencing table): 17.0/18.0
// _as_validation_error, 19.0 the model's _sql_error_to_message_generic.

// onDelete is the ondelete policy of many2one field f.
func (f field) onDelete() string {
	if f.ondelete != "" {
		return f.ondelete
	}
	if f.required {
		return "restrict"
	}
	return "set null"
}

// unlink deletes ids of m as models.py unlink does, hooks first.
func (s *Server) unlink(m *model, ids []int64) *odooError {
	if err := s.checkExist(m, ids); err != nil {
		return err
	}
	if err := s.unlinkHook(m, ids); err != nil {
		return err
	}
	return s.deleteRows(m, ids)
}

// unlinkHook is what a model's unlink override and @api.ondelete methods
// do before its rows are deleted.
func (s *Server) unlinkHook(m *model, ids []int64) *odooError {
	switch m.name {
	case "mrp.production":
		// mrp_production.py: _unlink_except_done (@api.ondelete) refuses a
		// done order; unlink cancels the orders, then unlinks their work
		// orders that are not done. A done one stays and its
		// production_id (required, so restrict) refuses the delete.
		pm := m
		for _, id := range ids {
			if pm.recs[id]["state"] == "done" {
				return userError("Cannot delete a manufacturing order in done state.")
			}
		}
		wm := s.models["mrp.workorder"]
		var wos []int64
		for _, wid := range wm.ids() {
			w := wm.recs[wid]
			if slices.Contains(ids, asInt(w["production_id"])) && w["state"] != "done" {
				wos = append(wos, wid)
			}
		}
		if _, err := s.actionCancel(wos); err != nil {
			return err
		}
		for _, id := range ids {
			pm.recs[id]["state"] = "cancel"
		}
		if len(wos) > 0 {
			return s.unlink(wm, wos)
		}
	case "mrp.workorder":
		// mrp_workorder.py unlink: 19.0 ends the timers first (end_all);
		// 17.0/18.0 do not, and an open line stays open, its work order
		// gone (workorder_id: set null).
		if s.v() >= 19 {
			for _, id := range ids {
				s.closeLines(func(l rec) bool { return l["workorder_id"] == id })
			}
		}
	case "res.users":
		// res_users.py _unlink_except_master_data: never the superuser
		// (OdooBot, id 1).
		if slices.Contains(ids, 1) {
			return userError("You can not remove the admin user as it is used internally for resources created by Odoo (updates, module installation, ...)")
		}
	case "stock.scrap":
		// stock_scrap.py _unlink_except_done
		for _, id := range ids {
			if m.recs[id]["state"] == "done" {
				return userError("You cannot delete a scrap which is done.")
			}
		}
	}
	return nil
}

// deleteRows deletes the rows of ids and applies the foreign keys that
// point at them, in model and field name order (Postgres fires them in
// the order the constraints were made; which refusal comes first when
// several would is not modelled).
func (s *Server) deleteRows(m *model, ids []int64) *odooError {
	gone := map[int64]bool{}
	for _, id := range ids {
		if _, ok := m.recs[id]; ok {
			gone[id] = true
			delete(m.recs, id)
		}
	}
	if len(gone) == 0 {
		return nil
	}
	names := make([]string, 0, len(s.models))
	for name := range s.models {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		rm := s.models[name]
		fields := make([]string, 0, len(rm.fields))
		for fname, f := range rm.fields {
			if f.typ == fM2O && f.comodel == m.name && !f.computed {
				fields = append(fields, fname)
			}
		}
		sort.Strings(fields)
		for _, fname := range fields {
			var refs []int64
			for _, rid := range rm.ids() {
				if gone[asInt(rm.recs[rid][fname])] {
					refs = append(refs, rid)
				}
			}
			if len(refs) == 0 {
				continue
			}
			switch rm.fields[fname].onDelete() {
			case "restrict":
				return s.fkViolation(rm, fname)
			case "set null":
				for _, rid := range refs {
					rm.recs[rid][fname] = int64(0)
				}
			case "cascade":
				if err := s.deleteRows(rm, refs); err != nil {
					return err
				}
			}
		}
	}
	// models.py unlink deletes the records' external ids too: loading one
	// by its external id afterwards creates a new record.
	if imd := s.models["ir.model.data"]; m != imd {
		for id, r := range imd.recs {
			if r["model"] == m.name && gone[asInt(r["res_id"])] {
				delete(imd.recs, id)
			}
		}
	}
	return nil
}

// fkViolation is the ValidationError a foreign key of field fname of rm
// refusing a delete becomes. The constraint is named as Odoo names it
// (sql.py add_foreign_key: table_column_fkey).
func (s *Server) fkViolation(rm *model, fname string) *odooError {
	desc := modelDescriptions[rm.name]
	if desc == "" {
		desc = rm.name
	}
	if s.v() >= 19 {
		return &odooError{excValidation, fmt.Sprintf("The operation cannot be completed: Another model is using the record you are trying to delete.\n\n"+
			"The troublemaker is: '%s' (%s)\nThanks to the following constraint: '%s' (%s)\nHow about archiving the record instead?",
			desc, rm.name, rm.fields[fname].label, fname)}
	}
	return &odooError{excValidation, fmt.Sprintf("The operation cannot be completed: another model requires the record being deleted. If possible, archive it instead.\n\n"+
		"Model: %s (%s)\nConstraint: %s_%s_fkey\n", desc, rm.name, strings.ReplaceAll(rm.name, ".", "_"), fname)}
}
