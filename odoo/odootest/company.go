package odootest

import (
	"fmt"
	"slices"
	"strings"
)

// Companies. A single-company database (the default: every record in
// company 1, every user allowed only it) behaves as without them.
//
// What the emulator models of Odoo's multi-company rules (odoo/api.py
// Environment.company/companies, models.py _check_company, mrp_workcenter.py
// MrpWorkcenterProductivity, stock_scrap.py):
//   - env.company is the first of the context's allowed_company_ids (each
//     must be one of the user's companies, else AccessError), else the
//     user's main company (res.users.company_id);
//   - the global multi-company record rules (rules.go): records of a
//     company not among env.companies — without allowed_company_ids, all
//     of the user's companies — are not found by searches, and reading,
//     writing or creating them is refused with AccessError;
//   - a downtime line (mrp.workcenter.productivity) created without a
//     company takes the context's default_company_id, else the company of
//     its default_workorder_id / default_workcenter_id, else env.company;
//     a scrap (stock.scrap) default_company_id, else env.company;
//   - _check_company_auto: a line whose work center or work order belongs
//     to another company than its own is refused on create and write with
//     Odoo's UserError "Incompatible companies on records: ..."; so is a
//     scrap of another company's manufacturing order or work order when it
//     is validated (do_scrap starts with _check_company).

// AddCompany creates a res.company and returns its id.
func (s *Server) AddCompany(name string) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.insert("res.company", rec{"name": name, "sequence": int64(10)}, "")
}

// SetUserCompanies sets a user's main company (res.users.company_id: what
// creates take when the call names none) and the companies it may work in
// (company_ids; main is always among them).
func (s *Server) SetUserCompanies(uid, main int64, allowed ...int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.models["res.users"].recs[uid]
	if !ok {
		return
	}
	ids := []int64{main}
	for _, c := range allowed {
		if !slices.Contains(ids, c) {
			ids = append(ids, c)
		}
	}
	slices.Sort(ids)
	r["company_id"], r["company_ids"] = main, ids
}

// SetWorkcenterActive archives (false) or unarchives (true) a work center,
// as Manufacturing → Configuration → Work Centers → Archive does
// (mrp_workcenter.py action_archive, as read, only warns of bills of
// materials still using it, not of work orders in progress): a search then
// finds it only with active_test false, or when its domain names active;
// its work orders stay, and are found by its id.
func (s *Server) SetWorkcenterActive(wcID int64, active bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if r, ok := s.models["mrp.workcenter"].recs[wcID]; ok {
		r["active"] = active
	}
}

// SetWorkcenterCompany moves a work center to a company, with the
// manufacturing orders of its work orders (a work order's company is its
// order's).
func (s *Server) SetWorkcenterCompany(wcID, companyID int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if r, ok := s.models["mrp.workcenter"].recs[wcID]; ok {
		r["company_id"] = companyID
	}
	for _, wo := range s.models["mrp.workorder"].recs {
		if asInt(wo["workcenter_id"]) == wcID {
			if mo, ok := s.models["mrp.production"].recs[asInt(wo["production_id"])]; ok {
				mo["company_id"] = companyID
			}
		}
	}
}

// SetProductionCompany sets a manufacturing order's company alone (its
// work orders', not their work center's: a work center shared by the
// companies has none, SetWorkcenterCompany 0).
func (s *Server) SetProductionCompany(moID, companyID int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if mo, ok := s.models["mrp.production"].recs[moID]; ok {
		mo["company_id"] = companyID
	}
}

// userCompanies is res.users.company_ids: the main company alone unless
// SetUserCompanies said more.
func (s *Server) userCompanies(uid int64) []int64 {
	r := s.models["res.users"].recs[uid]
	if ids, ok := r["company_ids"].([]int64); ok {
		return slices.Clone(ids)
	}
	if c := asInt(r["company_id"]); c != 0 {
		return []int64{c}
	}
	return []int64{}
}

// envCompany is env.company for the call being served (api.py).
func (s *Server) envCompany() (int64, *odooError) {
	if raw, ok := s.curCtx["allowed_company_ids"]; ok && raw != nil && raw != false {
		ids, ok := toIDs(raw)
		if !ok {
			return 0, valueError("allowed_company_ids: invalid value %v", raw)
		}
		if len(ids) > 0 {
			mine := s.userCompanies(s.curUID)
			for _, id := range ids {
				if !slices.Contains(mine, id) && s.curUID != 1 {
					return 0, &odooError{excAccess, "Access to unauthorized or invalid companies."}
				}
			}
			return ids[0], nil
		}
	}
	if c := asInt(s.models["res.users"].recs[s.curUID]["company_id"]); c != 0 {
		return c, nil
	}
	return 1, nil
}

// ctxID reads an id from the context ("default_company_id"), 0 if none.
func (s *Server) ctxID(key string) int64 {
	n, _ := toInt(s.curCtx[key])
	return n
}

// defaultCompany is a company_id field's default: the context's
// default_company_id, else env.company.
func (s *Server) defaultCompany() (int64, *odooError) {
	if c := s.ctxID("default_company_id"); c != 0 {
		return c, nil
	}
	return s.envCompany()
}

// productivityDefaultCompany is MrpWorkcenterProductivity._get_default_company_id.
func (s *Server) productivityDefaultCompany() (int64, *odooError) {
	if c := s.ctxID("default_company_id"); c != 0 {
		return c, nil
	}
	if wo, ok := s.models["mrp.workorder"].recs[s.ctxID("default_workorder_id")]; ok {
		if c := s.compute(s.models["mrp.workorder"], wo, "company_id").(int64); c != 0 {
			return c, nil
		}
	}
	if wc, ok := s.models["mrp.workcenter"].recs[s.ctxID("default_workcenter_id")]; ok {
		if c := asInt(wc["company_id"]); c != 0 {
			return c, nil
		}
	}
	return s.envCompany()
}

// checkCompanyFields are each model's check_company fields the emulator has.
var checkCompanyFields = map[string][]string{
	"mrp.workcenter.productivity": {"workcenter_id", "workorder_id"},
	"stock.scrap":                 {"production_id", "workorder_id"},
}

// checkCompany is models.py _check_company on record r of m: each
// check_company field's record must have no company or r's.
func (s *Server) checkCompany(m *model, r rec) *odooError {
	company := asInt(r["company_id"])
	lines := []string{s.tr(msgIncompatible)}
	for _, name := range checkCompanyFields[m.name] {
		f := m.fields[name]
		id := asInt(s.value(m, r, name))
		co, ok := s.models[f.comodel].recs[id]
		if !ok {
			continue
		}
		if c := asInt(s.value(s.models[f.comodel], co, "company_id")); c != 0 && c != company {
			// "- %(record)r belongs to company %(company)r and %(field)r
			// (%(fname)s: %(values)s) belongs to another company."
			lines = append(lines, s.trf(msgIncompatibleLine,
				pyRepr(s.recordName(m.name, asInt(r["id"]))), pyRepr(s.displayName("res.company", company)),
				pyRepr(f.label), name, pyRepr(s.displayName(f.comodel, id))))
		}
	}
	if len(lines) == 1 {
		return nil
	}
	return userError("%s", strings.Join(lines, "\n"))
}

// recordName is a record's display_name as _check_company shows it: a
// downtime line has no name field ("model,id").
func (s *Server) recordName(modelName string, id int64) string {
	if modelName == "mrp.workcenter.productivity" {
		return fmt.Sprintf("%s,%d", modelName, id)
	}
	return s.displayName(modelName, id)
}

// pyRepr is Python's repr of a str (the common case: single quotes).
func pyRepr(v string) string {
	if strings.Contains(v, "'") && !strings.Contains(v, `"`) {
		return `"` + v + `"`
	}
	return "'" + strings.ReplaceAll(v, "'", `\'`) + "'"
}
