package odootest

import (
	"fmt"
	"slices"
	"strings"
)

// methodSpec describes a public method: model methods (@api.model) take no
// ids; record methods take the ids first (JSON-RPC) or in "ids" (JSON-2).
type methodSpec struct {
	model    bool
	params   []string
	models   []string // nil: every model
	mutating bool
	minV     int    // first Odoo version that has it (0: all)
	maxV     int    // last Odoo version that has it (0: all)
	acl      string // access operation the call needs on the model ("" : none)
	// required: how many of params, from the first, have no default
	// (models.py: search(domain, ...), write(vals), ...).
	required int
}

var methodSpecs = map[string]methodSpec{
	"search_read":     {model: true, params: []string{"domain", "fields", "offset", "limit", "order", "load"}, acl: "read"},
	"search":          {model: true, params: []string{"domain", "offset", "limit", "order"}, acl: "read", required: 1},
	"search_count":    {model: true, params: []string{"domain", "limit"}, acl: "read", required: 1},
	"read":            {params: []string{"fields", "load"}, acl: "read"},
	"write":           {params: []string{"vals"}, mutating: true, acl: "write", required: 1},
	"create":          {model: true, params: []string{"vals_list"}, mutating: true, acl: "create", required: 1},
	"load":            {model: true, params: []string{"fields", "data"}, mutating: true, required: 2}, // create or write per row
	"unlink":          {mutating: true, acl: "unlink"},
	"button_start":    {models: []string{"mrp.workorder"}, mutating: true, acl: "write"},
	"button_pending":  {models: []string{"mrp.workorder"}, mutating: true, acl: "write"},
	"button_finish":   {models: []string{"mrp.workorder"}, mutating: true, acl: "write"},
	"action_cancel":   {models: []string{"mrp.workorder"}, mutating: true, acl: "write"},
	"unblock":         {models: []string{"mrp.workcenter"}, mutating: true},           // writes productivity lines: checked there
	"action_validate": {models: []string{"stock.scrap"}, mutating: true, acl: "read"}, // the wizard, or do_scrap: write checked there
	// stock_scrap.py do_scrap: what the insufficient-quantity wizard's
	// Confirm runs (stock.warn.insufficient.qty.scrap action_done).
	"do_scrap":    {models: []string{"stock.scrap"}, mutating: true, acl: "write"},
	"context_get": {model: true, models: []string{"res.users"}},
	// models.py @api.model fields_get(allfields=None, attributes=None): no
	// access check on the model (what each field's groups hide aside).
	"fields_get": {model: true, params: []string{"allfields", "attributes"}},
	// models.py 17.0: @api.model check_access_rights(operation, raise_exception=True);
	// deprecated in 18.0 and gone afterwards.
	"check_access_rights": {model: true, params: []string{"operation", "raise_exception"}, maxV: 18, required: 1},
	// models.py 18.0+: has_access(operation), a record method (empty recordset: the model's rights).
	"has_access": {params: []string{"operation"}, minV: 18, required: 1},
}

// dispatch runs one call under s.mu as one transaction. A bug in the
// emulator surfaces like an Odoo traceback (500 / error envelope) instead of
// killing the handler with the database lock held.
func (s *Server) dispatch(modelName, method string, pos []any, kw map[string]any, ids []int64, hasIDs, json2 bool) (res any, oerr *odooError) {
	var snap map[string]*model
	if methodSpecs[method].mutating {
		snap = s.snapshot()
	}
	defer func() {
		if r := recover(); r != nil {
			s.log.Error("emulator bug", "model", modelName, "method", method, "panic", r)
			res, oerr = nil, &odooError{"builtins.RuntimeError", fmt.Sprint(r)}
		}
		if oerr != nil && snap != nil {
			s.restore(snap) // one call is one transaction: an error rolls it back
		}
	}()
	return s.dispatchCall(modelName, method, pos, kw, ids, hasIDs, json2)
}

// bindError is an argument that does not fit the method's signature: a
// TypeError over JSON-RPC; JSON-2 checks the signature before the call
// (json2.py: signature.bind ... raise UnprocessableEntity), 422.
func bindError(json2 bool, msg string) *odooError {
	if json2 {
		return &odooError{"werkzeug.exceptions.UnprocessableEntity", msg}
	}
	return &odooError{excType, msg}
}

func (s *Server) dispatchCall(modelName, method string, pos []any, kw map[string]any, ids []int64, hasIDs, json2 bool) (any, *odooError) {
	if e := s.takeRefusal(modelName, method); e != nil {
		return nil, e
	}
	if !json2 && s.v() < 18 && (strings.HasPrefix(method, "_") || method == "init") {
		// 17.0 service/model.py execute: check_method_name (models.py,
		// regex_private ^(_.*|init)$) before the model is looked up, in
		// its own words; 18.0 on: get_public_method's, below.
		return nil, &odooError{excAccess, fmt.Sprintf("Private methods (such as %s) cannot be called remotely.", method)}
	}
	m, ok := s.models[modelName]
	if !ok {
		if json2 {
			return nil, &odooError{"werkzeug.exceptions.NotFound", fmt.Sprintf("the model %q does not exist", modelName)}
		}
		// service/model.py execute_cr: env.get(obj) is None.
		return nil, &odooError{excUser, fmt.Sprintf("Object %s doesn't exist", modelName)}
	}
	if strings.HasPrefix(method, "_") {
		return nil, &odooError{excAccess, fmt.Sprintf("Private methods (such as '%s.%s') cannot be called remotely.", modelName, method)}
	}
	spec, ok := methodSpecs[method]
	if ok && spec.models != nil && !slices.Contains(spec.models, modelName) {
		ok = false
	}
	if ok && (spec.minV != 0 && s.v() < spec.minV || spec.maxV != 0 && s.v() > spec.maxV) {
		ok = false
	}
	if !ok {
		if json2 {
			return nil, &odooError{"werkzeug.exceptions.NotFound", fmt.Sprintf("The method '%s.%s' does not exist", modelName, method)}
		}
		if s.v() < 18 {
			// 17.0 api.py call_kw: getattr(type(model), name) is None.
			return nil, &odooError{excAttr, fmt.Sprintf("The method '%s' does not exist on the model '%s'", method, modelName)}
		}
		return nil, &odooError{excAttr, fmt.Sprintf("The method '%s.%s' does not exist", modelName, method)}
	}
	if json2 {
		if spec.model && hasIDs && len(ids) > 0 { // json2.py: `if hasattr(func, '_api_model') and ids`
			return nil, &odooError{"werkzeug.exceptions.UnprocessableEntity", fmt.Sprintf("cannot call %s.%s with ids", modelName, method)}
		}
	} else if !spec.model {
		if len(pos) == 0 {
			return nil, bindError(json2, fmt.Sprintf("%s() missing 1 required positional argument: 'ids'", method))
		}
		var idsOK bool
		if ids, idsOK = toIDs(pos[0]); !idsOK {
			return nil, bindError(json2, fmt.Sprintf("%s(): ids must be an id or a list of ids", method))
		}
		pos = pos[1:]
	}
	args := map[string]any{}
	if len(pos) > len(spec.params) {
		return nil, bindError(json2, fmt.Sprintf("%s() takes %d positional arguments but %d were given", method, len(spec.params)+1, len(pos)+1))
	}
	for i, v := range pos {
		args[spec.params[i]] = v
	}
	for k, v := range kw {
		if k == "context" {
			continue
		}
		if !slices.Contains(spec.params, k) {
			return nil, bindError(json2, fmt.Sprintf("%s() got an unexpected keyword argument '%s'", method, k))
		}
		if _, dup := args[k]; dup {
			return nil, bindError(json2, fmt.Sprintf("%s() got multiple values for argument '%s'", method, k))
		}
		args[k] = v
	}
	for _, p := range spec.params[:spec.required] {
		if _, ok := args[p]; !ok {
			// JSON-2: json2.py signature.bind's TypeError, 422; JSON-RPC:
			// the method's own TypeError.
			if json2 {
				return nil, &odooError{"werkzeug.exceptions.UnprocessableEntity", fmt.Sprintf("missing a required argument: '%s'", p)}
			}
			return nil, &odooError{excType, fmt.Sprintf("%s() missing 1 required positional argument: '%s'", method, p)}
		}
	}
	if spec.acl != "" { // the ORM checks the model's rights before anything else
		if err := s.checkAccess(m, spec.acl); err != nil {
			return nil, err
		}
	}
	// read leaves out records that do not exist (models.py _read_format
	// drops the rows of missing records); the other record methods raise.
	if !spec.model && method != "unlink" && method != "read" {
		if err := s.checkExist(m, ids); err != nil {
			return nil, err
		}
	}
	if !spec.model { // records a multi-company rule hides are refused (rules.go)
		op := spec.acl
		if op == "" {
			op = "write"
		}
		if err := s.checkRules(m, op, ids); err != nil {
			return nil, err
		}
	}
	return s.run(m, method, ids, args, json2)
}

func strList(v any) ([]string, bool) {
	if v == nil || v == false {
		return nil, true
	}
	l, ok := v.([]any)
	if !ok {
		return nil, false
	}
	out := make([]string, 0, len(l))
	for _, e := range l {
		str, ok := e.(string)
		if !ok {
			return nil, false
		}
		out = append(out, str)
	}
	return out, true
}

func intArg(v any, def int64) (int64, *odooError) {
	if v == nil || v == false {
		return def, nil
	}
	n, ok := toInt(v)
	if !ok || n < 0 {
		return 0, &odooError{excValue, fmt.Sprintf("invalid integer %v", v)}
	}
	return n, nil
}

func (s *Server) run(m *model, method string, ids []int64, a map[string]any, json2 bool) (any, *odooError) {
	fields, ok := strList(a["fields"])
	if !ok {
		return nil, &odooError{excType, "fields must be a list of field names"}
	}
	switch method {
	case "search", "search_read", "search_count":
		offset, err := intArg(a["offset"], 0)
		if err != nil {
			return nil, err
		}
		limit, err := intArg(a["limit"], -1)
		if err != nil {
			return nil, err
		}
		if limit == 0 {
			// models.py _search sets query.limit, and the query puts a
			// LIMIT only when it is truthy: 0 is no limit, as None is.
			limit = -1
		}
		order, _ := a["order"].(string)
		found, err := s.search(m, a["domain"], offset, limit, order)
		if err != nil {
			return nil, err
		}
		switch method {
		case "search":
			return found, nil
		case "search_count":
			return len(found), nil
		}
		return s.read(m, found, fields)
	case "read":
		return s.read(m, ids, fields)
	case "write":
		vals, ok := a["vals"].(map[string]any)
		if !ok {
			return nil, &odooError{excType, "write() missing 1 required positional argument: 'vals'"}
		}
		if err := s.write(m, ids, vals); err != nil {
			return nil, err
		}
		return true, nil
	case "create":
		switch v := a["vals_list"].(type) {
		case map[string]any:
			id, err := s.create(m, v)
			if err != nil {
				return nil, err
			}
			if json2 {
				return []int64{id}, nil
			}
			return id, nil
		case []any:
			out := []int64{}
			for _, e := range v {
				vals, ok := e.(map[string]any)
				if !ok {
					return nil, &odooError{excType, "create() expects a dict or a list of dicts"}
				}
				id, err := s.create(m, vals)
				if err != nil {
					return nil, err
				}
				out = append(out, id)
			}
			return out, nil
		}
		return nil, &odooError{excType, "create() missing 1 required positional argument: 'vals_list'"}
	case "unlink": // unlink.go
		if err := s.unlink(m, ids); err != nil {
			return nil, err
		}
		return true, nil
	case "load":
		rows, ok := a["data"].([]any)
		if !ok || fields == nil {
			return nil, &odooError{excType, "load() needs fields and data"}
		}
		data := make([][]any, len(rows))
		for i, r := range rows {
			if data[i], ok = r.([]any); !ok {
				return nil, &odooError{excType, "load(): each row must be a list"}
			}
		}
		return s.load(m, fields, data)
	case "button_start", "button_pending", "button_finish", "action_cancel":
		return buttons[method](s, ids)
	case "unblock":
		return s.unblock(ids)
	case "action_validate":
		return s.actionValidate(ids)
	case "do_scrap":
		// stock_scrap.py do_scrap: self._check_company() first
		for _, id := range ids {
			if r, ok := m.recs[id]; ok {
				if err := s.checkCompany(m, r); err != nil {
					return nil, err
				}
			}
		}
		if len(ids) > 0 {
			if err := s.checkMoveRights(); err != nil {
				return nil, err
			}
		}
		for _, id := range ids {
			if err := s.checkScrapRounding(id); err != nil {
				return nil, err
			}
		}
		for _, id := range ids {
			s.doScrap(id)
		}
		return true, nil
	case "fields_get":
		return s.fieldsGet(m, a["allfields"], a["attributes"])
	case "context_get":
		return map[string]any{"lang": s.userLang(s.curUID), "tz": s.userTZ(), "uid": s.curUID}, nil
	case "has_access":
		op, _ := a["operation"].(string)
		if !validAccessOp(op) {
			return nil, &odooError{excAssert, "Invalid access mode"}
		}
		return s.hasAccess(m.name, op), nil
	case "check_access_rights":
		op, _ := a["operation"].(string)
		if !validAccessOp(op) {
			return nil, &odooError{excAssert, "Invalid access mode"}
		}
		raise, given := a["raise_exception"]
		if !given || raise == true {
			if err := s.checkAccess(m, op); err != nil {
				return nil, err
			}
			return true, nil
		}
		return s.hasAccess(m.name, op), nil
	}
	return nil, &odooError{excAttr, "unreachable method " + method}
}
