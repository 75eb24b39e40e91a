package odootest

import (
	"fmt"
	"slices"
	"strings"
)

// companyRules are the global multi-company record rules of the models the
// emulator has (Odoo 17-19 mrp/security/mrp_security.xml and
// stock/security/stock_security.xml): a record is visible to a user only
// when its company is one of env.companies — "company_id in company_ids",
// plus "or no company" where the value is true (a work center may be
// shared by the companies). Without them a bot user that is not a member
// of a plant's company saw that plant's work centers and orders here and
// wrote to them, while Odoo hides them: the work center is not found.
var companyRules = map[string]bool{
	"mrp.workcenter":              true,
	"mrp.production":              false,
	"mrp.workorder":               false,
	"mrp.workcenter.productivity": false,
	"stock.scrap":                 false,
}

// envCompanies is env.companies for the call being served (api.py): the
// context's allowed_company_ids, else all the user's companies.
func (s *Server) envCompanies() []int64 {
	if raw, ok := s.curCtx["allowed_company_ids"]; ok && raw != nil && raw != false {
		if ids, ok := toIDs(raw); ok && len(ids) > 0 {
			return ids
		}
	}
	return s.userCompanies(s.curUID)
}

// visible reports whether record r of m passes m's multi-company rule for
// the calling user (under mu). The superuser (uid 1) bypasses rules; a
// record without a company (none of these models has one in Odoo but a
// shared work center) is visible, so fixtures that leave it out keep
// working.
func (s *Server) visible(m *model, r rec) bool {
	if m.name == "res.users.apikeys" {
		// base_security.xml: a user sees its own keys (api_key_user), a
		// Settings user all of them.
		return s.curUID <= 2 || s.admins[s.curUID] || asInt(r["user_id"]) == s.curUID
	}
	if _, ruled := companyRules[m.name]; !ruled || s.curUID == 1 {
		return true
	}
	c := asInt(s.value(m, r, "company_id"))
	return c == 0 || slices.Contains(s.envCompanies(), c)
}

// checkRules is ir_rule.py _make_access_error for records of m a rule hides
// from the calling user (operation "read", "write", "create", "unlink").
func (s *Server) checkRules(m *model, op string, ids []int64) *odooError {
	var hidden []string
	for _, id := range ids {
		if r, ok := m.recs[id]; ok && !s.visible(m, r) {
			hidden = append(hidden, fmt.Sprintf("- %s, %s (%s: %d)", modelDescriptions[m.name], s.displayName(m.name, id), m.name, id))
		}
	}
	if len(hidden) == 0 {
		return nil
	}
	return &odooError{excAccess, fmt.Sprintf("Uh-oh! Looks like you have stumbled upon some top-secret records.\n\n"+
		"Sorry, %s (id=%d) doesn't have '%s' access to:\n%s\n\n"+
		"If you really, really need access, perhaps you can win over your friendly administrator with a batch of freshly baked cookies.\n\n"+
		"Note: this might be a multi-company issue. Switching company may help - in Odoo, not in real life!",
		s.displayName("res.users", s.curUID), s.curUID, op, strings.Join(hidden, "\n"))}
}

// checkRulesNew is checkRules for a record about to be created.
func (s *Server) checkRulesNew(m *model, r rec) *odooError {
	return &odooError{excAccess, fmt.Sprintf("Uh-oh! Looks like you have stumbled upon some top-secret records.\n\n"+
		"Sorry, %s (id=%d) doesn't have 'create' access to:\n- %s (%s)\n\n"+
		"Note: this might be a multi-company issue. Switching company may help - in Odoo, not in real life!",
		s.displayName("res.users", s.curUID), s.curUID, modelDescriptions[m.name], m.name)}
}
