package odootest

import (
	"fmt"
	"strings"
)

// excAssert is what ir.model.access.check raises for an unknown mode.
const excAssert = "builtins.AssertionError"

// modelDescriptions are the models' _description, which access errors name.
var modelDescriptions = map[string]string{
	"res.company":                      "Companies",
	"res.users":                        "User",
	"res.users.apikeys":                "Users API Keys",
	"uom.uom":                          "Product Unit of Measure",
	"product.product":                  "Product Variant",
	"mrp.workcenter":                   "Work Center",
	"mrp.production":                   "Manufacturing Order",
	"mrp.workorder":                    "Work Order",
	"mrp.workcenter.productivity.loss": "Workcenter Productivity Losses",
	"mrp.workcenter.productivity":      "Workcenter Productivity Log",
	"stock.scrap":                      "Scrap",
	"ir.model.data":                    "Model Data",
	"ir.config_parameter":              "System Parameter",
	"res.groups":                       "Access Groups",
	"stock.move":                       "Stock Move",
	"stock.move.line":                  "Product Moves (Stock Move Line)",
	"stock.quant":                      "Quants",
}

// modelGroups lists the groups that hold the right in a database with mrp
// and stock, as the access error lists them: ir_model.py
// group_names_with_access gives "Category/Group" (no spaces; 19 takes the
// category from the group's privilege), ordered by category then group
// name, one per ir.model.access line (mrp and stock
// security/ir.model.access.csv: users read work centers and loss reasons,
// managers change them; Inventory users read manufacturing orders; stock
// users and managers read, write and create scraps, only managers delete).
func modelGroups(model, op string) []string {
	const (
		invAdmin = "Inventory/Administrator"
		invUser  = "Inventory/User"
		mrpAdmin = "Manufacturing/Administrator"
		mrpUser  = "Manufacturing/User"
	)
	switch model {
	case "mrp.workcenter", "mrp.workcenter.productivity.loss":
		if op != "read" {
			return []string{mrpAdmin}
		}
		return []string{mrpAdmin, mrpUser}
	case "mrp.production":
		if op == "read" {
			return []string{invUser, mrpUser}
		}
		return []string{mrpUser}
	case "mrp.workorder", "mrp.workcenter.productivity":
		return []string{mrpUser}
	case "stock.scrap", "stock.move":
		if op == "unlink" {
			return []string{invAdmin}
		}
		return []string{invAdmin, invUser}
	case "stock.move.line":
		// Every internal user's (access_stock_move_line_all).
		return []string{invAdmin, invUser, "User types/Internal User"}
	case "stock.quant":
		// Inventory users read, write and create quants
		// (access_stock_quant_user); every internal user reads them
		// (access_stock_quant_all). No line deletes them; the agent
		// never asks to.
		if op == "read" {
			return []string{invUser, "User types/Internal User"}
		}
		return []string{invUser}
	case "res.groups":
		if op == "read" {
			return []string{"Administration/Access Rights", "User types/Internal User"}
		}
		return []string{"Administration/Access Rights"}
	case "ir.config_parameter":
		return []string{"Administration/Settings"}
	case "ir.model.data":
		// base's access_ir_model_data_user gives internal users nothing
		// (0,0,0,0 in 17.0-19.0): Access Rights' alone.
		return []string{"Administration/Access Rights"}
	}
	return []string{"User types/Internal User"}
}

// accessErrorHeaders are ir_model.py's ACCESS_ERROR_HEADER.
var accessErrorHeaders = map[string]string{
	"read":   "You are not allowed to access '%s' (%s) records.",
	"write":  "You are not allowed to modify '%s' (%s) records.",
	"create": "You are not allowed to create '%s' (%s) records.",
	"unlink": "You are not allowed to delete '%s' (%s) records.",
}

func validAccessOp(op string) bool {
	_, ok := accessErrorHeaders[op]
	return ok
}

// DenyAccess takes the right to perform operation (read, write, create or
// unlink) on model away from the user with this login, as removing the
// ir.model.access line from its groups would. The ORM then refuses the
// calls that need it with odoo.exceptions.AccessError (JSON-2: 403), and
// has_access / check_access_rights answer false. It panics on an unknown
// operation (a broken test fixture, not an I/O failure).
func (s *Server) DenyAccess(login, model, operation string) {
	if !validAccessOp(operation) {
		panic(fmt.Sprintf("odootest: DenyAccess: operation %q: want read, write, create or unlink", operation))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.denied == nil {
		s.denied = map[aclKey]bool{}
	}
	s.denied[aclKey{login, model, operation}] = true
}

// GrantAccess gives back a right DenyAccess took.
func (s *Server) GrantAccess(login, model, operation string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.denied, aclKey{login, model, operation})
}

type aclKey struct{ login, model, op string }

// MakeAdmin gives the user with this uid the Settings group (as making a
// bot user an administrator would): it may then change system parameters,
// and groups (Settings implies Administration / Access Rights).
func (s *Server) MakeAdmin(uid int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.admins = withUID(s.admins, uid)
}

// GiveAccessRights gives the user with this uid the group Administration /
// Access Rights (base.group_erp_manager) without Settings: it may then
// change groups (res.groups), and so give itself any right.
func (s *Server) GiveAccessRights(uid int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rightsAdmins = withUID(s.rightsAdmins, uid)
}

// withUID is set m (made when nil) with uid in it.
func withUID(m map[int64]bool, uid int64) map[int64]bool {
	if m == nil {
		m = map[int64]bool{}
	}
	m[uid] = true
	return m
}

// mrpUserRights are the rights of a user whose only group is
// Manufacturing / User, with the groups it implies (Inventory / User,
// Internal User), on the emulator's models, as the ir.model.access.csv of
// base, uom, product, stock and mrp grant them: r(ead), w(rite), c(reate),
// u(nlink). Every user reads companies and users; internal users read
// units, and nothing of external ids (ir.model.data: base's
// access_ir_model_data_user grants 0,0,0,0 in 17.0-19.0; load writes them
// as the superuser); Inventory users read
// products and manufacturing orders and read, write and create scraps;
// Manufacturing users read work centers and loss reasons and have every
// right on manufacturing orders, work orders and time lines; Inventory
// users read, write and create stock moves (do_scrap creates one with the
// caller's rights) and quants; internal users have every right on move
// lines, read quants and groups. Nothing else (system parameters: Settings only; groups:
// Access Rights).
var mrpUserRights = map[string]string{
	"res.company":                      "r",
	"res.users":                        "r",
	"res.users.apikeys":                "r", // base: access_res_users_apikeys_access_employee; a rule shows a user its own
	"res.groups":                       "r",
	"uom.uom":                          "r",
	"product.product":                  "r",
	"mrp.workcenter":                   "r",
	"mrp.workcenter.productivity.loss": "r",
	"mrp.production":                   "rwcu",
	"mrp.workorder":                    "rwcu",
	"mrp.workcenter.productivity":      "rwcu",
	"stock.scrap":                      "rwc",
	"stock.move":                       "rwc",
	"stock.move.line":                  "rwcu",
	"stock.quant":                      "rwc",
}

// botRights are the README's bot user's: Manufacturing / User, and a group
// of its own whose one access right is reading external ids (no standard
// group but Access Rights has it, and that one may give itself any right).
var botRights = withRights(mrpUserRights, map[string]string{"ir.model.data": "r"})

// mrpManagerRights are those of a bot user made a Manufacturing /
// Administrator (which implies Manufacturing / User): it may also change
// work centers and loss reasons (mrp security/ir.model.access.csv,
// group_mrp_manager), and bills of materials, which the emulator does not
// have.
var mrpManagerRights = withRights(botRights, map[string]string{
	"mrp.workcenter": "rwcu", "mrp.workcenter.productivity.loss": "rwcu"})

// withRights is base with the rights of some models replaced.
func withRights(base, models map[string]string) map[string]string {
	r := make(map[string]string, len(base)+len(models))
	for m, ops := range base {
		r[m] = ops
	}
	for m, ops := range models {
		r[m] = ops
	}
	return r
}

// GiveOnlyManufacturingUser makes the user with this login hold exactly the
// rights of the group Manufacturing / User (and the groups it implies),
// instead of the emulator's default of every right: a call outside them is
// refused as Odoo refuses it. DenyAccess still takes rights away on top.
func (s *Server) GiveOnlyManufacturingUser(login string) {
	s.giveOnly(login, mrpUserRights)
}

// GiveOnlyBotRights makes the user with this login hold exactly what the
// README asks the admin to give the bot user: Manufacturing / User (and
// the groups it implies), and read access to external ids (ir.model.data)
// through a group of its own, which the agent finds its records by.
func (s *Server) GiveOnlyBotRights(login string) {
	s.giveOnly(login, botRights)
}

// GiveOnlyManufacturingAdministrator makes the user with this login hold
// exactly the README bot's rights (GiveOnlyBotRights) and those of the
// group Manufacturing / Administrator: changing work centers and loss
// reasons.
func (s *Server) GiveOnlyManufacturingAdministrator(login string) {
	s.giveOnly(login, mrpManagerRights)
}

func (s *Server) giveOnly(login string, rights map[string]string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.onlyRights == nil {
		s.onlyRights = map[string]map[string]string{}
	}
	s.onlyRights[login] = rights
}

// hasAccess tells whether the calling user may perform op on the model (under mu).
func (s *Server) hasAccess(model, op string) bool {
	admin := s.curUID <= 2 || s.admins[s.curUID] // __system__, admin, or made one
	switch {
	case model == "ir.config_parameter":
		return admin
	case model == "res.groups" && op != "read":
		return admin || s.rightsAdmins[s.curUID]
	case model == "ir.model.data" && (admin || s.rightsAdmins[s.curUID]):
		return true // Access Rights' (implied by Settings), whatever else the user holds
	}
	r := s.models["res.users"].recs[s.curUID]
	if r == nil {
		return true
	}
	login, _ := r["login"].(string)
	if rights, only := s.onlyRights[login]; only && (op == "" || !strings.Contains(rights[model], op[:1])) {
		return false
	}
	return !s.denied[aclKey{login, model, op}]
}

// checkAccess raises the AccessError of ir.model.access._make_access_error
// when the calling user may not perform op on m (under mu).
func (s *Server) checkAccess(m *model, op string) *odooError {
	if s.hasAccess(m.name, op) {
		return nil
	}
	desc := modelDescriptions[m.name]
	if desc == "" {
		desc = m.name
	}
	msg := fmt.Sprintf(accessErrorHeaders[op], desc, m.name) +
		"\n\nThis operation is allowed for the following groups:\n\t- " + strings.Join(modelGroups(m.name, op), "\n\t- ") +
		"\n\nContact your administrator to request access if necessary."
	s.log.Info("access denied by ACLs", "operation", op, "uid", s.curUID, "model", m.name)
	return &odooError{excAccess, msg}
}
