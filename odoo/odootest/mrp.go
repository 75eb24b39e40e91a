package odootest

import (
	"fmt"
	"math"
	"slices"
	"time"
)

const timeLayout = "2006-01-02 15:04:05"

// Default loss reasons of community mrp, in data file order (there is no block_reason3).
var defaultLosses = []struct{ xmlid, name, lossType string }{
	{"block_reason0", "Material Availability", "availability"},
	{"block_reason1", "Equipment Failure", "availability"},
	{"block_reason2", "Setup and Adjustments", "availability"},
	{"block_reason4", "Reduced Speed", "performance"},
	{"block_reason5", "Process Defect", "quality"},
	{"block_reason6", "Reduced Yield", "quality"},
	{"block_reason7", "Fully Productive Time", "productive"},
}

// workorderStates returns the state selection of a version.
func workorderStates(version int) []string {
	if version >= 19 {
		return []string{"blocked", "ready", "progress", "done", "cancel"}
	}
	return []string{"pending", "waiting", "ready", "progress", "done", "cancel"}
}

func m2o(comodel, label string, required bool) field {
	return field{typ: fM2O, comodel: comodel, required: required, label: label}
}

func (s *Server) buildModels() {
	s.models = modelDefs(s.v(), s.opts.Saas)
	// base data
	s.insert("res.company", rec{"name": "YourCompany"}, "base.main_company")
	s.insert("res.users", rec{"name": "OdooBot", "login": "__system__", "company_id": int64(1)}, "base.user_root")
	s.insert("res.users", rec{"name": "Administrator", "login": "admin", "company_id": int64(1)}, "base.user_admin")
	units := rec{"name": "Units"}
	if s.v() < 19 {
		units["rounding"] = 0.01 // uom_uom.py's default; uom_data.xml sets none
	}
	s.insert("uom.uom", units, "uom.product_uom_unit")
	for i, l := range defaultLosses {
		s.insert("mrp.workcenter.productivity.loss", rec{"name": l.name, "loss_type": l.lossType,
			"manual": l.lossType != "productive" && l.lossType != "performance", "sequence": int64(i + 1)}, "mrp."+l.xmlid)
	}
}

// modelDefs returns the models of Odoo version v (a saas~v.saas build when
// saas > 0, Options.Saas), without records.
func modelDefs(v, saas int) map[string]*model {
	defs := map[string]*model{
		"res.company": {order: "sequence, name", fields: map[string]field{
			"name": {typ: fChar, required: true, label: "Company Name"}, "sequence": {typ: fInt}}},
		"res.users": {order: "name, login", fields: map[string]field{
			"name": {typ: fChar, required: true, label: "Name"}, "login": {typ: fChar, required: true, label: "Login"},
			"company_id": m2o("res.company", "Company", false), "tz": {typ: fChar, label: "Timezone"},
			// a many2many in Odoo: the allowed companies (company_id among them)
			"company_ids": {typ: fO2M, computed: true, comodel: "res.company", label: "Companies"}}},
		// API keys as base's res_users.py APIKeys has them (the secret and
		// its index not among the fields); expiration_date from 18.0, when
		// keys of non-admin users must expire. user_id: ondelete cascade,
		// deleting a user deletes its keys.
		"res.users.apikeys": {order: "id", fields: map[string]field{
			"name":    {typ: fChar, required: true, label: "Description"},
			"user_id": {typ: fM2O, comodel: "res.users", required: true, ondelete: "cascade", label: "User"},
			"scope":   {typ: fChar, label: "Scope"}, "create_date": {typ: fDatetime, label: "Creation Date"}}},
		// rounding: uom_uom.py 17.0/18.0 a stored float (default 0.01,
		// "Use 1.0 for a Unit of Measure that cannot be further split"; the
		// data sets none); 19.0 computed, 10**-digits of "Product Unit"
		// for every unit (_compute_rounding).
		"uom.uom": {order: "name", fields: map[string]field{"name": {typ: fChar, required: true, label: "Unit"},
			"rounding": {typ: fFloat, computed: v >= 19, label: "Rounding Precision"}}},
		// active: product_product.py's own (default True; archiving the
		// template archives its variants): an archived product is left out
		// of searches, and so of load's field/.id look-up, and still read.
		"product.product": {order: "name, id", fields: map[string]field{
			"name": {typ: fChar, required: true, label: "Name"}, "uom_id": m2o("uom.uom", "Unit", true),
			"tracking": {typ: fSelection, sel: []string{"none", "lot", "serial"}, label: "Tracking"},
			"active":   {typ: fBool, label: "Active"}}},
		"mrp.workcenter": {order: "sequence, id", fields: map[string]field{
			"name": {typ: fChar, required: true, label: "Work Center"}, "code": {typ: fChar, label: "Code"},
			"sequence": {typ: fInt}, "company_id": m2o("res.company", "Company", false),
			"active":        {typ: fBool, label: "Active"}, // related resource_id.active; unset: true
			"working_state": {typ: fSelection, computed: true, sel: []string{"normal", "blocked", "done"}, label: "Workcenter Status"},
			"time_ids":      {typ: fO2M, computed: true, comodel: "mrp.workcenter.productivity"}}},
		"mrp.production": {order: "priority desc, date_start asc, id", fields: map[string]field{
			"name": {typ: fChar, required: true, label: "Reference"}, "product_id": m2o("product.product", "Product", true),
			"product_qty": {typ: fFloat, qty: true, label: "Quantity To Produce"}, "product_uom_id": m2o("uom.uom", "Unit", true),
			"qty_producing": {typ: fFloat, qty: true, label: "Quantity Producing"}, "priority": {typ: fSelection, sel: []string{"0", "1"}},
			"date_start": {typ: fDatetime}, "company_id": m2o("res.company", "Company", false),
			"state":         {typ: fSelection, sel: []string{"draft", "confirmed", "progress", "to_close", "done", "cancel"}, label: "State"},
			"workorder_ids": {typ: fO2M, computed: true, comodel: "mrp.workorder"}}},
		"mrp.workorder": {order: "leave_id, date_start, id", fields: map[string]field{
			"name": {typ: fChar, required: true, label: "Work Order"}, "state": {typ: fSelection, sel: workorderStates(v), label: "Status"},
			"workcenter_id":     m2o("mrp.workcenter", "Work Center", true),
			"production_id":     m2o("mrp.production", "Manufacturing Order", true),
			"product_id":        {typ: fM2O, comodel: "product.product", computed: true},
			"product_tracking":  {typ: fSelection, computed: true, sel: []string{"none", "lot", "serial"}}, // related product_id.tracking
			"product_uom_id":    {typ: fM2O, comodel: "uom.uom", computed: v >= 19, label: "Unit"},
			"qty_production":    {typ: fFloat, qty: true, computed: true},
			"qty_producing":     {typ: fFloat, qty: true, computed: true, inverse: true, label: "Currently Produced Quantity"},
			"qty_produced":      {typ: fFloat, qty: true, label: "Quantity", inverse: v >= 19},
			"qty_remaining":     {typ: fFloat, qty: true, computed: true},
			"duration":          {typ: fFloat, computed: true},
			"duration_expected": {typ: fFloat, label: "Expected Duration"},
			"date_start":        {typ: fDatetime}, "date_finished": {typ: fDatetime},
			"leave_id": {typ: fInt}, "sequence": {typ: fInt},
			"company_id": {typ: fM2O, comodel: "res.company", computed: true, label: "Company"}, // related production_id.company_id
			"time_ids":   {typ: fO2M, computed: true, comodel: "mrp.workcenter.productivity"}}},
		"mrp.workcenter.productivity.loss": {order: "sequence, id", fields: map[string]field{
			"name": {typ: fChar, required: true, label: "Blocking Reason"}, "sequence": {typ: fInt}, "manual": {typ: fBool},
			"loss_type": {typ: fSelection, sel: []string{"availability", "performance", "quality", "productive"}, required: true, label: "Category"}}},
		"mrp.workcenter.productivity": {order: "id desc", fields: map[string]field{
			"workcenter_id": m2o("mrp.workcenter", "Work Center", true),
			"workorder_id":  m2o("mrp.workorder", "Work Order", false),
			"loss_id":       m2o("mrp.workcenter.productivity.loss", "Loss Reason", true),
			"loss_type":     {typ: fSelection, computed: true, sel: []string{"availability", "performance", "quality", "productive"}},
			"date_start":    {typ: fDatetime, required: true, label: "Start Date"}, "date_end": {typ: fDatetime, label: "End Date"},
			"duration": {typ: fFloat, computed: true}, "description": {typ: fChar, label: "Description"},
			"user_id": m2o("res.users", "User", false), "company_id": m2o("res.company", "Company", true)}},
		"stock.scrap": {order: "id desc", fields: map[string]field{
			"name": {typ: fChar, label: "Reference"}, "product_id": m2o("product.product", "Product", true),
			"scrap_qty": {typ: fFloat, qty: true, required: true, label: "Quantity"}, "product_uom_id": m2o("uom.uom", "Unit of Measure", true),
			"production_id": m2o("mrp.production", "Manufacturing Order", false), "workorder_id": m2o("mrp.workorder", "Work Order", false),
			"state": {typ: fSelection, sel: []string{"draft", "done"}}, "date_done": {typ: fDatetime},
			"company_id": m2o("res.company", "Company", true)}},
		// Records of neither: there for the rights do_scrap needs (it
		// creates a move with its line as the caller), those
		// action_validate reads a product's stock on hand with (stock
		// moves and quants), and for what validate asks of groups
		// (changing them is Access Rights').
		"stock.move": {order: "sequence, id", fields: map[string]field{
			"name": {typ: fChar, required: true, label: "Description"}, "product_id": m2o("product.product", "Product", true),
			"product_uom_qty": {typ: fFloat, qty: true, label: "Demand"}}},
		"stock.move.line": {order: "result_package_id desc, id", fields: map[string]field{
			"move_id": m2o("stock.move", "Stock Operation", false), "quantity": {typ: fFloat, qty: true, label: "Quantity"}}},
		"stock.quant": {order: "id", fields: map[string]field{
			"product_id": m2o("product.product", "Product", true), "quantity": {typ: fFloat, qty: true, label: "Quantity"}}},
		"res.groups": {order: "name", fields: map[string]field{
			"name": {typ: fChar, required: true, label: "Name"}}},
		// Settings group only (base/security/ir.model.access.csv): what
		// tells an administrator from a least-privilege user.
		"ir.config_parameter": {order: "key", fields: map[string]field{
			"key": {typ: fChar, required: true, label: "Key"}, "value": {typ: fChar, required: true, label: "Value"}}},
		"ir.model.data": {order: "module, model, name", fields: map[string]field{
			"module": {typ: fChar, required: true, label: "Module"}, "name": {typ: fChar, required: true, label: "External Identifier"},
			"model": {typ: fChar, required: true, label: "Model Name"}, "res_id": {typ: fInt, label: "Record ID"}}},
	}
	if v >= 19 {
		defs["mrp.workorder"].order = "sequence, leave_id, date_start, id"
	}
	if v >= 18 {
		defs["res.users.apikeys"].fields["expiration_date"] = field{typ: fDatetime, label: "Expiration Date"}
	}
	if saas > 0 {
		wo := defs["mrp.workorder"]
		wo.fields["uom_id"] = wo.fields["product_uom_id"] // related production_id.uom_id
		delete(wo.fields, "product_uom_id")
	}
	for name, m := range defs {
		m.name = name
		m.recs = map[int64]rec{}
	}
	return defs
}

// insert adds a seed record directly (no hooks).
func (s *Server) insert(modelName string, r rec, xmlid string) int64 {
	m := s.models[modelName]
	m.next++
	r["id"] = m.next
	m.recs[m.next] = r
	if xmlid != "" {
		s.setXMLID(xmlid, modelName, m.next)
	}
	return m.next
}

func (s *Server) nowStr() string { return s.now().UTC().Format(timeLayout) }

// openLines returns the open productivity lines matching keep, newest first.
func (s *Server) openLines(keep func(rec) bool) []int64 {
	pm := s.models["mrp.workcenter.productivity"]
	var ids []int64
	for _, id := range pm.ids() {
		r := pm.recs[id]
		if isEmpty(r["date_end"]) && keep(r) {
			ids = append(ids, id)
		}
	}
	slices.Reverse(ids)
	return ids
}

func (s *Server) lossType(lossID int64) string {
	if r, ok := s.models["mrp.workcenter.productivity.loss"].recs[lossID]; ok {
		return r["loss_type"].(string)
	}
	return ""
}

func (s *Server) compute(m *model, r rec, name string) any {
	id := r["id"].(int64)
	switch m.name + "." + name {
	case "mrp.workcenter.working_state":
		// mrp_workcenter.py _compute_working_state: the latest open line decides.
		open := s.openLines(func(l rec) bool { return l["workcenter_id"] == id })
		if len(open) == 0 {
			return "normal"
		}
		switch s.lossType(s.models["mrp.workcenter.productivity"].recs[open[0]]["loss_id"].(int64)) {
		case "productive", "performance":
			return "done"
		}
		return "blocked"
	case "mrp.workcenter.time_ids", "mrp.workorder.time_ids":
		key := "workcenter_id"
		if m.name == "mrp.workorder" {
			key = "workorder_id"
		}
		pm := s.models["mrp.workcenter.productivity"]
		ids := []int64{}
		for _, lid := range pm.ids() {
			if pm.recs[lid][key] == id {
				ids = append(ids, lid)
			}
		}
		return ids
	case "mrp.production.workorder_ids":
		wm := s.models["mrp.workorder"]
		ids := []int64{}
		for _, wid := range wm.ids() {
			if wm.recs[wid]["production_id"] == id {
				ids = append(ids, wid)
			}
		}
		return ids
	case "mrp.workorder.product_tracking":
		return s.tracking(asInt(s.compute(m, r, "product_id")))
	case "mrp.workorder.product_id", "mrp.workorder.qty_production", "mrp.workorder.qty_producing", "mrp.workorder.product_uom_id", "mrp.workorder.uom_id":
		mo, ok := s.models["mrp.production"].recs[r["production_id"].(int64)]
		if !ok {
			return s.zero(m.fields[name])
		}
		switch name {
		case "product_id":
			return mo["product_id"]
		case "qty_production":
			return mo["product_qty"]
		case "product_uom_id", "uom_id":
			return mo["product_uom_id"]
		}
		return s.value(s.models["mrp.production"], mo, "qty_producing")
	case "mrp.workorder.qty_remaining":
		prod := s.compute(m, r, "qty_production").(float64)
		return max(0, s.roundQty(prod-s.value(m, r, "qty_produced").(float64)))
	case "mrp.workorder.duration":
		var total float64
		for _, lid := range s.compute(m, r, "time_ids").([]int64) {
			total += s.lineMinutes(s.models["mrp.workcenter.productivity"].recs[lid])
		}
		return round2(total)
	case "mrp.workorder.company_id":
		// related production_id.company_id
		if mo, ok := s.models["mrp.production"].recs[asInt(r["production_id"])]; ok {
			return asInt(mo["company_id"])
		}
		return int64(0)
	case "res.users.company_ids":
		return s.userCompanies(id)
	case "mrp.workcenter.productivity.loss_type":
		return s.lossType(r["loss_id"].(int64))
	case "mrp.workcenter.productivity.duration":
		return round2(s.lineMinutes(r))
	case "uom.uom.rounding": // 19.0 uom_uom.py _compute_rounding
		return math.Pow10(-s.qtyDigits)
	}
	return s.zero(m.fields[name])
}

func (s *Server) zero(f field) any {
	switch f.typ {
	case fFloat:
		return 0.0
	case fInt, fM2O:
		return int64(0)
	case fBool:
		return false
	case fO2M:
		return []int64{}
	}
	return ""
}

func (s *Server) lineMinutes(r rec) float64 {
	start, err := time.Parse(timeLayout, r["date_start"].(string))
	if err != nil {
		return 0
	}
	end := s.now()
	if e, _ := r["date_end"].(string); e != "" {
		if t, err := time.Parse(timeLayout, e); err == nil {
			end = t
		}
	}
	return end.Sub(start).Minutes()
}

// defaults fills create() defaults per model.
func (s *Server) defaults(m *model, r rec) *odooError {
	setIfEmpty := func(k string, v any) {
		if isEmpty(r[k]) {
			r[k] = v
		}
	}
	switch m.name {
	case "mrp.workcenter.productivity":
		setIfEmpty("user_id", s.curUID)
		if isEmpty(r["company_id"]) {
			c, err := s.productivityDefaultCompany()
			if err != nil {
				return err
			}
			r["company_id"] = c
		}
	case "stock.scrap":
		if isEmpty(r["company_id"]) {
			c, err := s.defaultCompany()
			if err != nil {
				return err
			}
			r["company_id"] = c
		}
		setIfEmpty("state", "draft")
		setIfEmpty("name", "New")
		if p, ok := s.models["product.product"].recs[asInt(r["product_id"])]; ok {
			// product_uom_id is computed from the product and stored (precompute)
			setIfEmpty("product_uom_id", p["uom_id"])
		}
	case "mrp.workorder":
		setIfEmpty("state", workorderStates(s.v())[2]) // ready
		setIfEmpty("sequence", int64(100))
		if mo, ok := s.models["mrp.production"].recs[asInt(r["production_id"])]; ok && s.v() < 19 {
			setIfEmpty("product_uom_id", mo["product_uom_id"])
		}
	case "mrp.production":
		setIfEmpty("company_id", int64(1))
		setIfEmpty("state", "confirmed")
		setIfEmpty("priority", "0")
		if p, ok := s.models["product.product"].recs[asInt(r["product_id"])]; ok {
			setIfEmpty("product_uom_id", p["uom_id"])
		}
	case "product.product":
		setIfEmpty("uom_id", int64(1))
		setIfEmpty("tracking", "none")
	case "res.users", "mrp.workcenter":
		setIfEmpty("company_id", int64(1))
	}
	return nil
}

func asInt(v any) int64 {
	n, _ := v.(int64)
	return n
}

// writeHook validates and applies side effects of writing vals to one record.
func (s *Server) writeHook(m *model, id int64, vals map[string]any) *odooError {
	r := m.recs[id]
	switch m.name {
	case "mrp.workorder":
		mo := s.models["mrp.production"].recs[asInt(r["production_id"])]
		if wc, ok := vals["workcenter_id"]; ok && asInt(wc) != asInt(r["workcenter_id"]) {
			// mrp_workorder.py write (17.0 on): an order in progress may
			// move, a done or cancelled one not (the operators probe).
			if st := r["state"]; st == "done" || st == "cancel" {
				return userError("You cannot change the workcenter of a work order that is done.")
			}
		}
		if q, ok := vals["qty_producing"]; ok {
			// mrp_workorder.py _set_qty_producing: MO-wide; 0 is ignored.
			qty := s.roundQty(q.(float64))
			if qty != 0 && mo != nil {
				if mo["qty_producing"] != qty {
					if err := s.checkProductionWrite(mo); err != nil {
						return err
					}
					if err := s.checkComponentMovesWrite(); err != nil {
						return err
					}
				}
				mo["qty_producing"] = qty
				s.serialProducing(mo)
			}
		}
		if q, ok := vals["qty_produced"]; ok {
			qty := s.roundQty(q.(float64))
			vals["qty_produced"] = qty
			if s.v() >= 19 {
				if qty < 0 {
					return userError("The quantity produced must be positive.")
				}
				if st := r["state"]; st == "done" || st == "cancel" {
					return userError("You cannot change the quantity produced of a work order that is in done or cancel state.")
				}
				r["qty_produced"] = qty
				// 19.0 mrp_workorder.py write: for a quantity above 0, the
				// least of the order's work orders (cancelled ones too), when
				// above 0, is written on the order's work orders not done
				// (qty_producing), whose inverse _set_qty_producing sets the
				// manufacturing order's producing quantity and then runs
				// its _set_qty_producing (component moves), with the
				// caller's rights as on 17/18.
				if mo != nil && qty > 0 {
					minQty := -1.0
					for _, wid := range s.compute(s.models["mrp.production"], mo, "workorder_ids").([]int64) {
						if q := s.value(m, m.recs[wid], "qty_produced").(float64); minQty < 0 || q < minQty {
							minQty = q
						}
					}
					if minQty > 0 {
						if mo["qty_producing"] != minQty {
							if err := s.checkProductionWrite(mo); err != nil {
								return err
							}
							if err := s.checkComponentMovesWrite(); err != nil {
								return err
							}
						}
						mo["qty_producing"] = minQty
						s.serialProducing(mo) // the work orders' qty_produced stay
					}
				}
			}
		}
	case "mrp.workcenter.productivity":
		// nothing beyond required checks
	}
	return nil
}

// checkProductionWrite is the access check of writing a work order's
// manufacturing order on the caller's behalf: Odoo writes it with the
// caller's rights (17.0/18.0 _set_qty_producing:
// "workorder.production_id.qty_producing = workorder.qty_producing"; 19.0
// write gets to the same _set_qty_producing through the work orders'
// qty_producing), so a user who may write work orders but not
// manufacturing orders is refused (under mu).
func (s *Server) checkProductionWrite(mo rec) *odooError {
	pm := s.models["mrp.production"]
	if err := s.checkAccess(pm, "write"); err != nil {
		return err
	}
	return s.checkRules(pm, "write", []int64{asInt(mo["id"])})
}

// checkComponentMovesWrite is the access check of what Odoo does next on
// the caller's behalf once the order's producing quantity changes
// (mrp_workorder.py _set_qty_producing calls the order's
// _set_qty_producing; on 19.0 the write of qty_produced gets there through
// the work orders' qty_producing): for each component move (and by-product
// move; the finished product's only when serial-tracked) of the order,
// move._set_quantity_done(qty) and move.picked = True (mrp_production.py
// _set_qty_producing; only _should_bypass_set_qty_producing runs under
// sudo), writes on stock.move with the caller's rights, 17.0 to 19.0. The
// emulator's orders stand for orders of a bill of materials with
// components, which those writes reach. The move lines they create, update
// and delete are every internal user's (access_stock_move_line_all). Under
// mu.
func (s *Server) checkComponentMovesWrite() *odooError {
	return s.checkAccess(s.models["stock.move"], "write")
}

// ---- action methods ----

func (s *Server) buttonStart(ids []int64) (any, *odooError) {
	wm := s.models["mrp.workorder"]
	for _, id := range ids {
		r := wm.recs[id]
		if st := r["state"]; st == "done" || st == "cancel" {
			return nil, userError("You cannot start a work order that is already done or cancelled")
		}
		wc := s.models["mrp.workcenter"].recs[r["workcenter_id"].(int64)]
		if s.compute(s.models["mrp.workcenter"], wc, "working_state") == "blocked" {
			return nil, userError("Please unblock the work center to start the work order.")
		}
	}
	for _, id := range ids {
		r := wm.recs[id]
		uid := s.curUID
		if len(s.openLines(func(l rec) bool { return l["workorder_id"] == id && l["user_id"] == uid })) > 0 {
			continue // already running for this user
		}
		// mrp_workorder.py _prepare_timeline_vals(wo.duration, ...): a
		// productive loss, or a performance one once the order's time so far
		// is past its expected duration (a timer resumed on an overrun order).
		var dur float64
		for _, lid := range s.compute(wm, r, "time_ids").([]int64) {
			dur += s.lineMinutes(s.models["mrp.workcenter.productivity"].recs[lid])
		}
		loss, _ := s.xmlidRes("mrp.block_reason7")
		if exp := s.value(wm, r, "duration_expected").(float64); exp != 0 && dur > exp {
			loss, _ = s.xmlidRes("mrp.block_reason4")
		}
		if _, err := s.create(s.models["mrp.workcenter.productivity"], map[string]any{
			"workcenter_id": float64(r["workcenter_id"].(int64)), "workorder_id": float64(id),
			"loss_id": float64(loss), "date_start": s.nowStr(), "description": "Time Tracking: " + s.displayName("res.users", uid),
			// _prepare_timeline_vals: 'company_id': self.company_id.id
			"company_id": float64(s.compute(wm, r, "company_id").(int64)),
		}); err != nil {
			return nil, err
		}
		if r["state"] != "progress" {
			// Odoo 17-19: the start overwrites date_start, from 17 on
			// also the planned start (a resumed order keeps its own).
			r["date_start"] = s.nowStr()
		}
		s.startQty(r)
		r["state"] = "progress"
		if mo, ok := s.models["mrp.production"].recs[r["production_id"].(int64)]; ok && mo["state"] == "confirmed" {
			mo["state"] = "progress"
		}
	}
	return true, nil
}

// startQty does to the quantity what starting a work order does
// (mrp_workorder.py button_start, 17.0 to 19: "elif wo.qty_producing == 0:
// wo.qty_producing = wo.qty_remaining"): an order nothing was recorded on
// yet shows its whole remaining quantity as producing. Fixtures that put a
// work order in progress call it too: in Odoo only a start gets it there.
func (s *Server) startQty(wo rec) {
	mo, ok := s.models["mrp.production"].recs[asInt(wo["production_id"])]
	if !ok || mo["qty_producing"].(float64) != 0 {
		return
	}
	mo["qty_producing"] = s.compute(s.models["mrp.workorder"], wo, "qty_remaining").(float64)
	s.serialProducing(mo)
}

// tracking is a product's tracking: "none", "lot" or "serial".
func (s *Server) tracking(productID int64) string {
	if t, _ := s.models["product.product"].recs[productID]["tracking"].(string); t != "" {
		return t
	}
	return "none"
}

// serialProducing is the start of mrp_production.py _set_qty_producing
// (17.0 to 19), which a work order's qty_producing (and, in 19, its
// qty_produced) reaches: a manufacturing order of a serial-tracked product
// produces one unit at a time, so any other quantity producing is put back
// to 1. The write itself succeeds: what was written is silently not kept.
func (s *Server) serialProducing(mo rec) {
	if q, _ := mo["qty_producing"].(float64); q != 0 && q != 1 && s.tracking(asInt(mo["product_id"])) == "serial" {
		mo["qty_producing"] = 1.0
	}
}

func (s *Server) xmlidRes(full string) (int64, bool) {
	_, id, ok := s.xmlidLookup(full)
	return id, ok
}

// As Odoo's _close (mrp_workcenter.py, 17.0 to 19) does, a line of a work
// order that has run past its expected duration is cut where the overrun
// began: the part before stays as it was, the overrun becomes a copy of
// the line, starting there, with the first performance loss (Reduced
// Speed) — the whole line, when all of it is overrun. That copy's start is
// not when work began (odoo.Client.workBegan).
func (s *Server) closeLines(keep func(rec) bool) {
	pm := s.models["mrp.workcenter.productivity"]
	wm := s.models["mrp.workorder"]
	var under []int64
	for _, lid := range s.openLines(keep) {
		l := pm.recs[lid]
		l["date_end"] = s.nowStr()
		wo, ok := wm.recs[asInt(l["workorder_id"])]
		if !ok {
			continue
		}
		var dur float64 // the order's duration, not rounded as read
		for _, id := range s.compute(wm, wo, "time_ids").([]int64) {
			dur += s.lineMinutes(pm.recs[id])
		}
		over := dur - s.value(wm, wo, "duration_expected").(float64)
		if over <= 0 {
			continue
		}
		start, err1 := time.Parse(timeLayout, l["date_start"].(string))
		end, err2 := time.Parse(timeLayout, l["date_end"].(string))
		if err1 != nil || err2 != nil {
			continue
		}
		cut := end.Add(-time.Duration(over * float64(time.Minute))).Truncate(time.Second)
		if !cut.After(start) {
			under = append(under, lid)
			continue
		}
		cp := rec{}
		for k, v := range l {
			cp[k] = v
		}
		delete(cp, "id")
		cp["date_start"] = cut.Format(timeLayout)
		l["date_end"] = cut.Format(timeLayout)
		under = append(under, s.insert("mrp.workcenter.productivity", cp, ""))
	}
	if perf, ok := s.xmlidRes("mrp.block_reason4"); ok {
		for _, lid := range under {
			pm.recs[lid]["loss_id"] = perf
		}
	}
}

// buttonPending stops the caller's timers; it returns None.
func (s *Server) buttonPending(ids []int64) (any, *odooError) {
	uid := s.curUID
	for _, id := range ids {
		s.closeLines(func(l rec) bool { return l["workorder_id"] == id && l["user_id"] == uid })
	}
	return none{}, nil
}

func (s *Server) buttonFinish(ids []int64) (any, *odooError) {
	wm := s.models["mrp.workorder"]
	for _, id := range ids {
		r := wm.recs[id]
		if r["state"] == "done" || r["state"] == "cancel" {
			continue
		}
		s.closeLines(func(l rec) bool { return l["workorder_id"] == id })
		// mrp_workorder.py button_finish: qty_produced or qty_producing or qty_production
		qty := s.value(wm, r, "qty_produced").(float64)
		if qty == 0 {
			qty = s.compute(wm, r, "qty_producing").(float64)
		}
		if qty == 0 {
			qty = s.compute(wm, r, "qty_production").(float64)
		}
		r["qty_produced"] = qty
		r["state"] = "done"
		r["date_finished"] = s.nowStr()
		// button_finish: "if not workorder.date_start or date_finished <
		// workorder.date_start" (a planned start ahead, from 17 on).
		if ds, _ := r["date_start"].(string); ds == "" || ds > s.nowStr() {
			r["date_start"] = s.nowStr()
		}
	}
	return true, nil
}

// actionCancel is mrp_workorder.py action_cancel: its leave unlinked (none
// here), end_all() — the timers closed as a pause closes them — then
// state cancel. Its time lines stay.
func (s *Server) actionCancel(ids []int64) (any, *odooError) {
	wm := s.models["mrp.workorder"]
	for _, id := range ids {
		if _, ok := wm.recs[id]; !ok {
			continue
		}
		s.closeLines(func(l rec) bool { return l["workorder_id"] == id })
		wm.recs[id]["state"] = "cancel"
	}
	return true, nil
}

func (s *Server) unblock(ids []int64) (any, *odooError) {
	if len(ids) != 1 {
		return nil, valueError("Expected singleton: mrp.workcenter%v", ids)
	}
	wcm := s.models["mrp.workcenter"]
	id := ids[0]
	if s.compute(wcm, wcm.recs[id], "working_state") != "blocked" {
		return nil, userError("It has already been unblocked.")
	}
	// mrp_workcenter.py unblock: times.write({'date_end': ...}); return True.
	// Closing the lines needs write on them, not on the work center. A
	// plain write: not _close, so no overrun cut and no loss changed (the
	// emulator probe: an Equipment Failure line became Reduced Speed).
	pm := s.models["mrp.workcenter.productivity"]
	if err := s.checkAccess(pm, "write"); err != nil {
		return nil, err
	}
	for _, lid := range s.openLines(func(l rec) bool { return l["workcenter_id"] == id }) {
		pm.recs[lid]["date_end"] = s.nowStr()
	}
	return true, nil
}

func (s *Server) actionValidate(ids []int64) (any, *odooError) {
	if len(ids) != 1 {
		return nil, valueError("Expected singleton: stock.scrap%v", ids)
	}
	sm := s.models["stock.scrap"]
	r := sm.recs[ids[0]]
	// stock_scrap.py action_validate: float_is_zero(scrap_qty,
	// precision_rounding=product_uom_id.rounding) (19.0:
	// product_uom_id.is_zero): 0.4 of a unit of rounding 1.0 is zero.
	if q := s.value(sm, r, "scrap_qty").(float64); q <= 0 || FloatRoundStep(q, s.uomRounding(asInt(r["product_uom_id"])), s.v()) == 0 {
		return nil, userError("You can only enter positive quantities.")
	}
	// check_available_qty (stock_scrap.py as read in 18.0; 17.0 and 19.0
	// taken to do alike), for a storable product (the emulator's
	// products are): the product's qty_available, computed with the
	// caller's rights (stock product.py: compute_sudo=False), from
	// stock.move and then stock.quant _read_group
	// (_compute_quantities_dict), each checking read access (models.py
	// _read_group) — also when it then answers the wizard.
	if err := s.checkStockReads(); err != nil {
		return nil, err
	}
	if s.shortStock[asInt(r["product_id"])] {
		return map[string]any{
			"name": "Insufficient Quantity", "view_mode": "form", "res_model": "stock.warn.insufficient.qty.scrap",
			"type": "ir.actions.act_window", "target": "new",
			"context": map[string]any{"default_product_id": r["product_id"], "default_scrap_id": ids[0], "default_quantity": r["scrap_qty"]},
		}, nil
	}
	if err := s.checkCompany(sm, r); err != nil { // do_scrap's _check_company
		return nil, err
	}
	// do_scrap's first write (scrap.name = ...) checks write on the scrap.
	if err := s.checkAccess(sm, "write"); err != nil {
		return nil, err
	}
	if err := s.checkRules(sm, "write", ids); err != nil {
		return nil, err
	}
	if err := s.checkMoveRights(); err != nil {
		return nil, err
	}
	if err := s.checkScrapRounding(ids[0]); err != nil {
		return nil, err
	}
	s.doScrap(ids[0])
	return true, nil
}

// uomRounding is the rounding of unit id (uom.uom's rounding): 17.0/18.0
// as stored, 0.01 (its default) when the record has none; 19.0 computed,
// 10**-digits of "Product Unit".
func (s *Server) uomRounding(id int64) float64 {
	um := s.models["uom.uom"]
	r, ok := um.recs[id]
	if s.v() >= 19 {
		return math.Pow10(-s.qtyDigits)
	}
	if v, set := r["rounding"].(float64); ok && set && v > 0 {
		return v
	}
	return 0.01
}

// checkScrapRounding is what the scrap's move line meets when do_scrap
// marks its move done (stock_move_line.py _action_done, 17.0-19.0): its
// quantity rounded HALF-UP to its unit's rounding and to the decimals of
// "Product Unit of Measure" must be equal at those decimals, or the whole
// validation is refused (a UserError: the transaction rolled back, the
// scrap a draft). 0.125 of a unit of rounding 0.01 at 3 decimals is
// refused (0.13 against 0.125), and 0.6 of one of rounding 1.0; in 19.0
// the rounding is the decimals' own, and nothing is.
func (s *Server) checkScrapRounding(id int64) *odooError {
	sm := s.models["stock.scrap"]
	r := sm.recs[id]
	if r == nil {
		return nil
	}
	q := s.value(sm, r, "scrap_qty").(float64)
	uom := asInt(r["product_uom_id"])
	byUnit := FloatRoundStep(q, s.uomRounding(uom), s.v())
	if FloatRound(byUnit, s.qtyDigits) != FloatRound(q, s.qtyDigits) {
		return userError("The quantity done for the product \"%s\" doesn't respect the rounding precision defined on the unit of measure \"%s\". "+
			"Please change the quantity done or the rounding precision of your unit of measure.",
			s.displayName("product.product", asInt(r["product_id"])), s.displayName("uom.uom", uom))
	}
	return nil
}

// SetUomRounding sets the rounding of unit id (uom.uom's Rounding
// Precision, Inventory → Configuration → Units of Measure), as an
// administrator of 17.0 or 18.0 does: 1.0 for a unit that cannot be split.
// 19.0 has no such setting (every unit rounds to "Product Unit"'s
// decimals, SetQtyDigits): it panics there.
func (s *Server) SetUomRounding(id int64, rounding float64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.v() >= 19 || rounding <= 0 {
		panic(fmt.Sprintf("odootest: SetUomRounding(%d, %v): 17 and 18 only, rounding > 0", id, rounding))
	}
	r, ok := s.models["uom.uom"].recs[id]
	if !ok {
		panic(fmt.Sprintf("odootest: SetUomRounding: no uom.uom %d", id))
	}
	r["rounding"] = rounding
}

// checkMoveRights checks the rights do_scrap uses after writing the scrap:
// it creates a stock move with its move line (stock_scrap.py
// _prepare_move_values) and marks it done, writing it (_action_done), all
// with the caller's rights.
func (s *Server) checkMoveRights() *odooError {
	for _, c := range []struct{ model, op string }{{"stock.move", "create"}, {"stock.move.line", "create"}, {"stock.move", "write"}} {
		if err := s.checkAccess(s.models[c.model], c.op); err != nil {
			return err
		}
	}
	return nil
}

// checkStockReads checks the rights action_validate reads a product's
// stock on hand with (actionValidate): read on stock moves, then quants.
func (s *Server) checkStockReads() *odooError {
	for _, m := range []string{"stock.move", "stock.quant"} {
		if err := s.checkAccess(s.models[m], "read"); err != nil {
			return err
		}
	}
	return nil
}

// doScrap is stock_scrap.py do_scrap: it books a stock move every time it
// runs, even on a done scrap, and does not look at the stock.
func (s *Server) doScrap(id int64) {
	r := s.models["stock.scrap"].recs[id]
	if r == nil {
		return // checked before (checkExist)
	}
	s.scrapMoves[id]++
	if r["name"] == "New" {
		r["name"] = fmt.Sprintf("SP/%05d", id)
	}
	r["state"] = "done"
	r["date_done"] = s.nowStr()
}
