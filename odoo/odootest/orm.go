package odootest

import (
	"fmt"
	"math"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
)

// odooError is an exception raised inside the emulated ORM.
type odooError struct {
	name string // e.g. "odoo.exceptions.UserError"
	msg  string
}

func (e *odooError) Error() string { return e.name + ": " + e.msg }

const (
	excUser        = "odoo.exceptions.UserError"
	excValidation  = "odoo.exceptions.ValidationError"
	excAccess      = "odoo.exceptions.AccessError"
	excDenied      = "odoo.exceptions.AccessDenied"
	excMissing     = "odoo.exceptions.MissingError"
	excValue       = "builtins.ValueError"
	excType        = "builtins.TypeError"
	excAttr        = "builtins.AttributeError"
	excKey         = "builtins.KeyError"
	excSerialize   = "psycopg2.errors.SerializationFailure"
	excLock        = "psycopg2.errors.LockNotAvailable"
	excOperational = "psycopg2.OperationalError"
	excLockError   = "odoo.exceptions.LockError"
)

func userError(format string, a ...any) *odooError {
	return &odooError{excUser, fmt.Sprintf(format, a...)}
}

func valueError(format string, a ...any) *odooError {
	return &odooError{excValue, fmt.Sprintf(format, a...)}
}

type fieldType int

const (
	fChar fieldType = iota
	fFloat
	fInt
	fBool
	fDatetime
	fSelection
	fM2O
	fO2M
)

type field struct {
	typ      fieldType
	comodel  string
	required bool
	computed bool     // not stored: value comes from compute()
	inverse  bool     // computed but writable (handled by the model's write hook)
	sel      []string // selection values
	label    string
	// qty: a quantity, digits="Product Unit of Measure" ("Product Unit"
	// in 19): rounded to Server.qtyDigits when stored, as the ORM does
	// (fields.py Float.convert_to_cache / convert_to_column), and
	// described with that precision by fields_get.
	qty bool
	// ondelete: a many2one's declared ondelete ("restrict", "cascade",
	// "set null"); "" takes fields.py's default (field.onDelete).
	ondelete string
}

type rec map[string]any

type model struct {
	name   string
	fields map[string]field
	order  string
	recs   map[int64]rec
	next   int64
}

func (m *model) clone() *model {
	c := *m
	c.recs = make(map[int64]rec, len(m.recs))
	for id, r := range m.recs {
		c.recs[id] = maps(r)
	}
	return &c
}

func maps(r rec) rec {
	c := make(rec, len(r))
	for k, v := range r {
		c[k] = v
	}
	return c
}

func (m *model) ids() []int64 {
	ids := make([]int64, 0, len(m.recs))
	for id := range m.recs {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

func isEmpty(v any) bool {
	switch x := v.(type) {
	case nil:
		return true
	case string:
		return x == ""
	case int64:
		return x == 0
	case bool:
		return !x
	case []int64:
		return len(x) == 0
	}
	return false
}

func round2(v float64) float64 { return math.Round(v*100) / 100 }

func toInt(v any) (int64, bool) {
	switch x := v.(type) {
	case float64:
		if x != math.Trunc(x) {
			return 0, false
		}
		return int64(x), true
	case int64:
		return x, true
	case int:
		return int64(x), true
	case string:
		n, err := strconv.ParseInt(strings.TrimSpace(x), 10, 64)
		return n, err == nil
	}
	return 0, false
}

// toIDs accepts an id or a list of ids (Odoo accepts both for record methods).
func toIDs(v any) ([]int64, bool) {
	if n, ok := toInt(v); ok {
		return []int64{n}, true
	}
	list, ok := v.([]any)
	if !ok {
		return nil, false
	}
	ids := make([]int64, 0, len(list))
	for _, e := range list {
		n, ok := toInt(e)
		if !ok {
			return nil, false
		}
		ids = append(ids, n)
	}
	return ids, true
}

// convert turns a JSON value into the stored representation of f.
func (s *Server) convert(m *model, name string, f field, v any) (any, *odooError) {
	if v == nil || v == false {
		switch f.typ {
		case fFloat:
			return 0.0, nil
		case fInt, fM2O:
			return int64(0), nil
		case fBool:
			return false, nil
		}
		return "", nil
	}
	switch f.typ {
	case fChar:
		if str, ok := v.(string); ok {
			return str, nil
		}
	case fSelection:
		if str, ok := v.(string); ok {
			if !slices.Contains(f.sel, str) {
				return nil, valueError("Wrong value for %s.%s: '%s'", m.name, name, str)
			}
			return str, nil
		}
	case fFloat:
		switch x := v.(type) {
		case float64:
			if f.qty {
				return s.roundQty(x), nil
			}
			return x, nil
		case string:
			if n, err := strconv.ParseFloat(strings.TrimSpace(x), 64); err == nil {
				if f.qty {
					return s.roundQty(n), nil
				}
				return n, nil
			}
		}
	case fInt:
		if n, ok := toInt(v); ok {
			return n, nil
		}
	case fBool:
		if b, ok := v.(bool); ok {
			return b, nil
		}
	case fDatetime:
		if str, ok := v.(string); ok {
			t, err := time.Parse("2006-01-02 15:04:05", str)
			if err != nil {
				if t2, err2 := time.Parse("2006-01-02", str); err2 == nil {
					t = t2
				} else {
					return nil, valueError("time data '%s' does not match format '%%Y-%%m-%%d %%H:%%M:%%S'", str)
				}
			}
			return t.UTC().Format(timeLayout), nil
		}
	case fM2O:
		n, ok := toInt(v)
		if !ok {
			if l, isList := v.([]any); isList && len(l) > 0 {
				n, ok = toInt(l[0])
			}
		}
		if ok {
			if n != 0 {
				if _, exists := s.models[f.comodel].recs[n]; !exists {
					return nil, &odooError{excValidation, fmt.Sprintf("The operation cannot be completed: %s(%d,) does not exist (field %s)", f.comodel, n, name)}
				}
			}
			return n, nil
		}
	case fO2M:
		return nil, valueError("field %s.%s: one2many commands are not supported by the emulator", m.name, name)
	}
	return nil, valueError("Invalid value %v for field %s.%s", v, m.name, name)
}

// value returns the stored or computed raw value of a field.
func (s *Server) value(m *model, r rec, name string) any {
	f := m.fields[name]
	if name == "id" {
		return r["id"]
	}
	if f.computed {
		return s.compute(m, r, name)
	}
	v, ok := r[name]
	if !ok {
		switch f.typ {
		case fFloat:
			return 0.0
		case fInt, fM2O:
			return int64(0)
		case fBool:
			// every active field here defaults to True (an unset one is
			// a record never archived)
			return name == "active"
		}
		return ""
	}
	return v
}

func (s *Server) displayName(modelName string, id int64) string {
	m := s.models[modelName]
	r, ok := m.recs[id]
	if !ok {
		return ""
	}
	switch modelName {
	case "mrp.workorder":
		return fmt.Sprintf("%s - %s", s.displayName("mrp.production", s.value(m, r, "production_id").(int64)), r["name"])
	case "mrp.workcenter.productivity":
		return s.displayName("mrp.workcenter.productivity.loss", r["loss_id"].(int64))
	case "res.users":
		return r["name"].(string)
	}
	if n, ok := r["name"].(string); ok {
		return n
	}
	return fmt.Sprintf("%s,%d", modelName, id)
}

// wire formats a raw value for read(): many2one as [id, name], empty as false.
func (s *Server) wire(f field, v any) any {
	switch f.typ {
	case fM2O:
		id := v.(int64)
		if id == 0 {
			return false
		}
		return []any{id, s.displayName(f.comodel, id)}
	case fO2M:
		if v == nil {
			return []int64{}
		}
		return v
	case fChar, fSelection, fDatetime:
		if v == "" {
			return false
		}
	case fFloat:
		return v
	}
	return v
}

func (s *Server) read(m *model, ids []int64, fields []string) ([]map[string]any, *odooError) {
	if len(fields) == 0 {
		for name := range m.fields {
			fields = append(fields, name)
		}
		sort.Strings(fields)
	}
	for _, f := range fields {
		if _, ok := m.fields[f]; !ok && f != "id" && f != "display_name" {
			return nil, valueError("Invalid field '%s' on model '%s'", f, m.name)
		}
	}
	out := make([]map[string]any, 0, len(ids))
	for _, id := range ids {
		r, ok := m.recs[id]
		if !ok {
			continue // deleted (or never was): no row, no error
		}
		row := map[string]any{"id": id}
		for _, f := range fields {
			switch f {
			case "id":
			case "display_name":
				row[f] = s.displayName(m.name, id)
			default:
				row[f] = s.wire(m.fields[f], s.value(m, r, f))
			}
		}
		out = append(out, row)
	}
	return out, nil
}

func (s *Server) missing(m *model, ids []int64) *odooError {
	var gone []string
	for _, id := range ids {
		if _, ok := m.recs[id]; !ok {
			gone = append(gone, strconv.FormatInt(id, 10))
		}
	}
	return &odooError{excMissing, fmt.Sprintf("Record does not exist or has been deleted.\n(Record: %s(%s,), User: %d)",
		m.name, strings.Join(gone, ", "), s.curUID)}
}

func (s *Server) checkExist(m *model, ids []int64) *odooError {
	for _, id := range ids {
		if _, ok := m.recs[id]; !ok {
			return s.missing(m, ids)
		}
	}
	return nil
}

// ---- domains ----

type pred func(r rec) bool

func (s *Server) compileDomain(m *model, domain any) (pred, *odooError) {
	if domain == nil || domain == false {
		return func(rec) bool { return true }, nil
	}
	items, ok := domain.([]any)
	if !ok {
		return nil, valueError("Invalid domain: %v", domain)
	}
	var preds []pred
	i := 0
	for i < len(items) {
		p, next, err := s.parseTerm(m, items, i)
		if err != nil {
			return nil, err
		}
		preds = append(preds, p)
		i = next
	}
	return func(r rec) bool {
		for _, p := range preds {
			if !p(r) {
				return false
			}
		}
		return true
	}, nil
}

// parseTerm parses one prefix-notation expression starting at items[i].
func (s *Server) parseTerm(m *model, items []any, i int) (pred, int, *odooError) {
	switch op := items[i].(type) {
	case string:
		switch op {
		case "&", "|":
			if i+1 >= len(items) {
				return nil, 0, valueError("Invalid domain: operator %s lacks operands", op)
			}
			a, n, err := s.parseTerm(m, items, i+1)
			if err != nil {
				return nil, 0, err
			}
			if n >= len(items) {
				return nil, 0, valueError("Invalid domain: operator %s lacks operands", op)
			}
			b, n2, err := s.parseTerm(m, items, n)
			if err != nil {
				return nil, 0, err
			}
			if op == "&" {
				return func(r rec) bool { return a(r) && b(r) }, n2, nil
			}
			return func(r rec) bool { return a(r) || b(r) }, n2, nil
		case "!":
			if i+1 >= len(items) {
				return nil, 0, valueError("Invalid domain: ! lacks an operand")
			}
			a, n, err := s.parseTerm(m, items, i+1)
			if err != nil {
				return nil, 0, err
			}
			return func(r rec) bool { return !a(r) }, n, nil
		}
		return nil, 0, valueError("Invalid domain term %q", op)
	case []any:
		if len(op) != 3 {
			return nil, 0, valueError("Invalid domain term %v", op)
		}
		path, ok1 := op[0].(string)
		oper, ok2 := op[1].(string)
		if !ok1 || !ok2 {
			return nil, 0, valueError("Invalid domain term %v", op)
		}
		p, err := s.leaf(m, path, strings.ToLower(oper), op[2])
		return p, i + 1, err
	}
	return nil, 0, valueError("Invalid domain term %v", items[i])
}

func (s *Server) leaf(m *model, path, op string, want any) (pred, *odooError) {
	parts := strings.Split(path, ".")
	cur := m
	var chain []field
	for i, p := range parts {
		f, ok := cur.fields[p]
		if p == "id" {
			f, ok = field{typ: fInt}, true
		}
		if !ok {
			return nil, valueError("Invalid field %s.%s in leaf %v", cur.name, p, path)
		}
		chain = append(chain, f)
		if i < len(parts)-1 {
			if f.typ != fM2O {
				return nil, valueError("Invalid path %s: %s is not a many2one", path, p)
			}
			cur = s.models[f.comodel]
		}
	}
	switch op {
	case "=", "!=", "in", "not in", "<", ">", "<=", ">=", "like", "ilike", "not like", "not ilike", "=like", "=ilike":
	default:
		return nil, valueError("Invalid leaf operator %q", op)
	}
	if (op == "in" || op == "not in") && !isList(want) {
		return nil, valueError("The domain term '%v' should use a list for operator %s", path, op)
	}
	last := chain[len(chain)-1]
	return func(r rec) bool {
		mm := m
		for i, p := range parts[:len(parts)-1] {
			id := s.value(mm, r, p).(int64)
			mm = s.models[chain[i].comodel]
			nr, ok := mm.recs[id]
			if !ok {
				return op == "!=" || op == "not in" || op == "not like" || op == "not ilike" || (op == "=" && want == false)
			}
			r = nr
		}
		name := parts[len(parts)-1]
		var v any
		if name == "id" {
			v = r["id"]
		} else {
			v = s.value(mm, r, name)
		}
		return s.test(last, v, op, want)
	}, nil
}

func isList(v any) bool { _, ok := v.([]any); return ok }

func (s *Server) test(f field, v any, op string, want any) bool {
	switch op {
	case "=":
		return s.eq(f, v, want)
	case "!=":
		return !s.eq(f, v, want)
	case "in":
		for _, w := range want.([]any) {
			if s.eq(f, v, w) {
				return true
			}
		}
		return false
	case "not in":
		for _, w := range want.([]any) {
			if s.eq(f, v, w) {
				return false
			}
		}
		return true
	case "like", "ilike", "not like", "not ilike", "=like", "=ilike":
		str := s.text(f, v)
		pat, _ := want.(string)
		var hit bool
		// Odoo hands the pattern to SQL's LIKE: % and _ are wildcards
		// (a backslash escapes them); like and ilike wrap it in %…%.
		if !strings.HasPrefix(strings.TrimPrefix(op, "not "), "=") {
			pat = "%" + pat + "%"
		}
		if strings.Contains(op, "ilike") {
			str, pat = strings.ToLower(str), strings.ToLower(pat)
		}
		hit = sqlLike(str, pat)
		if strings.HasPrefix(op, "not") {
			return !hit
		}
		return hit && !isEmpty(v)
	}
	if isEmpty(v) && f.typ != fFloat && f.typ != fInt {
		return false // SQL NULL compares false
	}
	c, ok := compare(v, want)
	if !ok {
		return false
	}
	switch op {
	case "<":
		return c < 0
	case ">":
		return c > 0
	case "<=":
		return c <= 0
	}
	return c >= 0
}

func (s *Server) text(f field, v any) string {
	if f.typ == fM2O {
		return s.displayName(f.comodel, v.(int64))
	}
	if str, ok := v.(string); ok {
		return str
	}
	return fmt.Sprint(v)
}

func (s *Server) eq(f field, v, want any) bool {
	if want == nil || want == false {
		if f.typ == fBool {
			return v == false
		}
		if f.typ == fFloat || (f.typ == fInt && want == false) {
			return isEmpty(v) || v == 0.0
		}
		return isEmpty(v)
	}
	if f.typ == fM2O {
		if str, ok := want.(string); ok {
			return s.displayName(f.comodel, v.(int64)) == str
		}
	}
	c, ok := compare(v, want)
	return ok && c == 0
}

// compare orders a stored value against a JSON value.
func compare(v, want any) (int, bool) {
	switch x := v.(type) {
	case int64:
		n, ok := toInt(want)
		if !ok {
			if f, isF := want.(float64); isF {
				return cmpF(float64(x), f), true
			}
			return 0, false
		}
		return cmpI(x, n), true
	case float64:
		w, ok := want.(float64)
		if !ok {
			if n, isInt := want.(int64); isInt {
				w, ok = float64(n), true
			}
		}
		if !ok {
			return 0, false
		}
		return cmpF(x, w), true
	case string:
		w, ok := want.(string)
		return strings.Compare(x, w), ok
	case bool:
		w, ok := want.(bool)
		if !ok || x == w {
			return 0, ok && x == w
		}
		if !x {
			return -1, true
		}
		return 1, true
	}
	return 0, false
}

func cmpI(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func cmpF(a, b float64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

type orderKey struct {
	field string
	desc  bool
}

func parseOrder(m *model, order string) ([]orderKey, *odooError) {
	var keys []orderKey
	for _, part := range strings.Split(order, ",") {
		words := strings.Fields(part)
		if len(words) == 0 {
			continue
		}
		if len(words) > 2 {
			return nil, valueError("Invalid \"order\" specified (%s)", order)
		}
		k := orderKey{field: words[0]}
		if _, ok := m.fields[k.field]; !ok && k.field != "id" {
			return nil, valueError("Invalid \"order\" specified (%s). A valid \"order\" specification is a comma-separated list of valid field names (optionally followed by asc/desc for the direction)", order)
		}
		if len(words) == 2 {
			switch strings.ToLower(words[1]) {
			case "asc":
			case "desc":
				k.desc = true
			default:
				return nil, valueError("Invalid \"order\" specified (%s)", order)
			}
		}
		keys = append(keys, k)
	}
	return keys, nil
}

// search returns matching ids in order; limit < 0 means none.
func (s *Server) search(m *model, domain any, offset, limit int64, order string) ([]int64, *odooError) {
	p, err := s.compileDomain(m, domain)
	if err != nil {
		return nil, err
	}
	if order == "" {
		order = m.order
	}
	keys, err := parseOrder(m, order)
	if err != nil {
		return nil, err
	}
	// An archived record (active false) is not found unless the context
	// says active_test false or a leaf of the domain is on active itself
	// (models.py _search: any(item[0] == self._active_name for item in
	// domain); not a value or a path that merely spells "active").
	_, hasActive := m.fields["active"]
	activeTest := hasActive && s.curCtx["active_test"] != false
	if items, ok := domain.([]any); ok {
		for _, it := range items {
			if leaf, ok := it.([]any); ok && len(leaf) > 0 && leaf[0] == "active" {
				activeTest = false
			}
		}
	}
	var ids []int64
	for _, id := range m.ids() {
		// a record a multi-company rule hides is not found (rules.go)
		if r := m.recs[id]; p(r) && s.visible(m, r) && !(activeTest && r["active"] == false) {
			ids = append(ids, id)
		}
	}
	sort.SliceStable(ids, func(i, j int) bool {
		ri, rj := m.recs[ids[i]], m.recs[ids[j]]
		for _, k := range keys {
			var vi, vj any
			if k.field == "id" {
				vi, vj = ri["id"], rj["id"]
			} else {
				vi, vj = s.value(m, ri, k.field), s.value(m, rj, k.field)
			}
			ei, ej := isEmpty(vi) && m.fields[k.field].typ != fFloat, isEmpty(vj) && m.fields[k.field].typ != fFloat
			if ei != ej { // PostgreSQL: NULLS LAST ascending, FIRST descending
				return ej != k.desc
			}
			c, _ := compare(vi, vj)
			if c != 0 {
				return (c < 0) != k.desc
			}
		}
		return false
	})
	if offset > 0 {
		if offset >= int64(len(ids)) {
			return []int64{}, nil
		}
		ids = ids[offset:]
	}
	if limit >= 0 && limit < int64(len(ids)) {
		ids = ids[:limit]
	}
	if ids == nil {
		ids = []int64{}
	}
	return ids, nil
}

// create inserts one record after defaults and required checks.
func (s *Server) create(m *model, vals map[string]any) (int64, *odooError) {
	r := rec{}
	for k, v := range vals {
		f, ok := m.fields[k]
		if !ok {
			return 0, valueError("Invalid field '%s' on model '%s'", k, m.name)
		}
		if f.computed && !f.inverse {
			continue // Odoo ignores values for non-inverse computed fields
		}
		cv, err := s.convert(m, k, f, v)
		if err != nil {
			return 0, err
		}
		r[k] = cv
	}
	if err := s.defaults(m, r); err != nil {
		return 0, err
	}
	for name, f := range m.fields {
		if f.required && isEmpty(r[name]) {
			return 0, &odooError{excValidation, fmt.Sprintf("The operation cannot be completed:\n- Create/update: a mandatory field is not set.\n- Delete: another model requires the record being deleted. If possible, archive it instead.\n\nModel: %s (%s)\nField: %s (%s)", m.name, m.name, f.label, name)}
		}
	}
	if !s.visible(m, r) { // the record rules hold for a new record too (rules.go)
		return 0, s.checkRulesNew(m, r)
	}
	m.next++
	id := m.next
	r["id"] = id
	inverse := map[string]any{}
	for k, v := range r {
		if m.fields[k].inverse {
			inverse[k] = v
			delete(r, k)
		}
	}
	m.recs[id] = r
	if len(inverse) > 0 {
		if err := s.write(m, []int64{id}, inverse); err != nil {
			return 0, err
		}
	}
	if m.name == "mrp.workcenter.productivity" { // _check_company_auto
		if err := s.checkCompany(m, r); err != nil {
			return 0, err
		}
	}
	if err := s.constraints(m, r); err != nil {
		return 0, err
	}
	if err := s.uniqueXMLID(m, id); err != nil {
		return 0, err
	}
	return id, nil
}

// write applies vals to ids, running the model's write hooks.
func (s *Server) write(m *model, ids []int64, vals map[string]any) *odooError {
	if err := s.checkExist(m, ids); err != nil {
		return err
	}
	conv := map[string]any{}
	for k, v := range vals {
		f, ok := m.fields[k]
		if !ok {
			return valueError("Invalid field '%s' on model '%s'", k, m.name)
		}
		if f.computed && !f.inverse {
			continue
		}
		cv, err := s.convert(m, k, f, v)
		if err != nil {
			return err
		}
		if f.required && isEmpty(cv) {
			return &odooError{excValidation, fmt.Sprintf("The operation cannot be completed:\n- Create/update: a mandatory field is not set.\n\nModel: %s\nField: %s (%s)", m.name, f.label, k)}
		}
		conv[k] = cv
	}
	for _, id := range ids {
		if err := s.writeHook(m, id, conv); err != nil {
			return err
		}
	}
	for _, id := range ids {
		r := m.recs[id]
		for k, v := range conv {
			if !m.fields[k].inverse {
				r[k] = v
			}
		}
		if _, ok := conv["workorder_id"]; ok {
			if err := s.constraints(m, r); err != nil {
				return err
			}
		}
		_, a := conv["module"]
		_, b := conv["name"]
		if a || b {
			if err := s.uniqueXMLID(m, id); err != nil {
				return err
			}
		}
		if m.name == "mrp.workcenter.productivity" { // _check_company_auto
			_, a := conv["company_id"]
			_, b := conv["workcenter_id"]
			_, c := conv["workorder_id"]
			if a || b || c {
				if err := s.checkCompany(m, r); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// constraints runs the model's @api.constrains checks on r (the caller's
// transaction is rolled back on an error).
func (s *Server) constraints(m *model, r rec) *odooError {
	if m.name != "mrp.workcenter.productivity" {
		return nil
	}
	// mrp_workcenter_productivity.py _check_open_time_ids
	// (@api.constrains('workorder_id')): a user has at most one open line
	// on a work order.
	wo := asInt(r["workorder_id"])
	if wo == 0 {
		return nil
	}
	perUser := map[int64]int{}
	for _, lid := range s.openLines(func(l rec) bool { return asInt(l["workorder_id"]) == wo }) {
		u := asInt(m.recs[lid]["user_id"])
		if perUser[u]++; perUser[u] > 1 {
			return &odooError{excValidation, fmt.Sprintf("The Workorder (%s) cannot be started twice!", s.displayName("mrp.workorder", wo))}
		}
	}
	return nil
}

// uniqueXMLID is ir.model.data's unique index on (module, name)
// (ir_model.py: ir_model_data_module_name_uniq_index, made by _auto_init in
// 17.0/18.0, models.UniqueIndex('(module, name)') in 19.0), checked for its
// record id of m after a create or write by any path but load (whose
// _update_xmlids upserts: setXMLID). Postgres refuses the row; retrying
// (service/model.py, also around a JSON-2 call) rolls the call back and
// raises the IntegrityError again as a ValidationError. No model declares a
// message for that index, so its text is psycopg2's in 17.0/18.0
// (_as_validation_error: exc.args[0]) and _sql_error_to_message_generic's
// for a unique violation in 19.0.
func (s *Server) uniqueXMLID(m *model, id int64) *odooError {
	if m.name != "ir.model.data" {
		return nil
	}
	r := m.recs[id]
	for other, o := range m.recs {
		if other == id || o["module"] != r["module"] || o["name"] != r["name"] {
			continue
		}
		key := fmt.Sprintf("Key (module, name)=(%v, %v) already exists.", r["module"], r["name"])
		if s.v() >= 19 {
			return &odooError{excValidation, "The operation cannot be completed: The value for 'module, name' (Module and External Identifier) already exists.\n\nDetail: " + key + "\n"}
		}
		return &odooError{excValidation, "The operation cannot be completed: duplicate key value violates unique constraint \"ir_model_data_module_name_uniq_index\"\nDETAIL:  " + key + "\n"}
	}
	return nil
}

// ---- load ----

type loadMsg map[string]any

// load implements Model.load(fields, data): rows are created, or updated
// when their "id" column names an existing external id. All or nothing.
// Its answer is models.py's {ids, messages, nextrow}; nextrow is 0 unless
// the context's _import_limit stopped the rows short (base_import's
// batches; the emulator takes no limit).
func (s *Server) load(m *model, fields []string, data [][]any) (map[string]any, *odooError) {
	fail := func(row int, fieldName, format string, a ...any) (map[string]any, *odooError) {
		return map[string]any{"ids": false, "messages": []loadMsg{{
			"type": "error", "record": row, "field": fieldName, "message": fmt.Sprintf(format, a...),
			"rows": map[string]int{"from": row, "to": row},
		}}, "nextrow": 0}, nil
	}
	snapshot := s.snapshot()
	xmlids := s.indexXMLIDs(m)
	ids := make([]int64, 0, len(data))
	for ri, row := range data {
		if len(row) != len(fields) {
			s.restore(snapshot)
			return fail(ri, "", "row has %d values for %d fields", len(row), len(fields))
		}
		vals := map[string]any{}
		var xmlid string
		var dbID int64
		for ci, col := range fields {
			cell := row[ci]
			str, isStr := cell.(string)
			if isStr {
				str = strings.TrimSpace(str)
			}
			switch {
			case col == "id":
				if isStr {
					xmlid = str
				}
				continue
			case col == ".id":
				if n, ok := toInt(cell); ok {
					dbID = n
				}
				continue
			}
			name, suffix, _ := strings.Cut(col, "/")
			f, ok := m.fields[name]
			if !ok {
				s.restore(snapshot)
				return fail(ri, name, "Unknown field '%s'", name)
			}
			if isStr && str == "" || cell == nil || cell == false {
				vals[name] = false
				continue
			}
			switch suffix {
			case "":
				if f.typ == fM2O {
					id, err := s.nameLookup(f.comodel, fmt.Sprint(cell))
					if err != "" {
						s.restore(snapshot)
						return fail(ri, name, "%s", err)
					}
					vals[name] = id
				} else if f.typ == fDatetime && isStr {
					// ir_fields.py _str_to_datetime: the cell is in the input
					// time zone (context, else the user's), stored as UTC.
					t, err := time.ParseInLocation(timeLayout, str, s.inputTZ())
					if err != nil {
						s.restore(snapshot)
						return fail(ri, name, "'%s' does not seem to be a valid datetime for field '%s'", str, f.label)
					}
					vals[name] = t.UTC().Format(timeLayout)
				} else {
					vals[name] = cell
				}
			case "id":
				_, res, found := xmlids.lookup(fmt.Sprint(cell))
				if !found {
					s.restore(snapshot)
					return fail(ri, name, "No matching record found for external id '%s' in field '%s'", cell, f.label)
				}
				vals[name] = res
			case ".id":
				n, ok := toInt(cell)
				if !ok {
					s.restore(snapshot)
					return fail(ri, name, "Invalid database id '%v' for the field '%s'", cell, f.label)
				}
				// ir_fields.py db_id_for: RelatedModel.search([('id', '=',
				// tentative_id)]), with its active_test and record rules:
				// an archived record, or one of a company the caller may
				// not use, is not found.
				found, _ := s.search(s.models[f.comodel], []any{[]any{"id", "=", n}}, 0, -1, "id")
				if len(found) == 0 {
					s.restore(snapshot)
					return fail(ri, name, "No matching record found for database id '%d' in field '%s'", n, f.label)
				}
				vals[name] = n
			default:
				s.restore(snapshot)
				return fail(ri, col, "Unknown sub-field '%s'", suffix)
			}
		}
		if xmlid != "" && !strings.Contains(xmlid, ".") {
			xmlid = "__import__." + xmlid
		}
		target := dbID
		if xmlid != "" && target == 0 {
			mdl, res, found := xmlids.lookup(xmlid)
			if found && mdl != m.name {
				// models.py _load_records: the id names a record of
				// another model; refused, not moved to the new record.
				s.restore(snapshot)
				return fail(ri, "", "For external id %s when trying to create/update a record of model %s found record of different model %s (%d)",
					xmlid, m.name, mdl, res)
			}
			if _, exists := m.recs[res]; found && exists {
				target = res
			} else if found {
				// its record is gone (_lookup_xmlids' LEFT JOIN finds no
				// row): _load_records unlinks the external id and creates
				// the record, which _update_xmlids gives a new one, the
				// newest by id.
				xmlids.drop(xmlid)
			}
		}
		// _load_records writes existing records and creates new ones with
		// the caller's rights. load catches what a row raises (AccessError
		// is a UserError) and answers it as that row's error message, with
		// ids false: the call itself succeeds (models.py load, flush).
		op := "create"
		if target != 0 {
			op = "write"
		}
		if err := s.checkAccess(m, op); err != nil {
			s.restore(snapshot)
			return fail(ri, "", "%s", err.msg)
		}
		var err *odooError
		if target != 0 {
			// a record a multi-company rule hides is not written (rules.go)
			if err = s.checkRules(m, "write", []int64{target}); err == nil {
				err = s.write(m, []int64{target}, vals)
			}
		} else {
			target, err = s.create(m, vals)
			if err == nil && xmlid != "" {
				xmlids.set(xmlid, m.name, target)
			}
		}
		if err != nil {
			s.restore(snapshot)
			return fail(ri, "", "%s", err.msg)
		}
		ids = append(ids, target)
	}
	return map[string]any{"ids": ids, "messages": []loadMsg{}, "nextrow": 0}, nil
}

func (s *Server) nameLookup(modelName, name string) (int64, string) {
	m := s.models[modelName]
	var hits []int64
	for _, id := range m.ids() {
		if s.displayName(modelName, id) == name {
			hits = append(hits, id)
		}
	}
	if len(hits) == 0 {
		return 0, fmt.Sprintf("No matching record found for name '%s' in field of model %s", name, modelName)
	}
	return hits[0], ""
}

func (s *Server) xmlidLookup(full string) (string, int64, bool) {
	mod, name, ok := strings.Cut(full, ".")
	if !ok {
		mod, name = "__import__", full
	}
	// (module, name) is unique (ir_model_data's constraint; setXMLID
	// keeps it): any order finds the one. Not sorted: with a backlog's
	// thousands of external ids, a sort per lookup made a load of 200
	// lines take seconds under -race, other calls waiting on it.
	for _, r := range s.models["ir.model.data"].recs {
		if r["module"] == mod && r["name"] == name {
			return r["model"].(string), r["res_id"].(int64), true
		}
	}
	return "", 0, false
}

// xmlidIndex is ir.model.data by (module, name), for the rows of one load
// call: Odoo finds a row's external id through ir_model_data's unique index
// on (module, name), and load scanned every external id for each row (to
// look it up, then to set it), so a load's time grew with its rows times
// the external ids Odoo had: under -race on a busy machine a load of 100
// lines in a backlog of a few hundred took 1 to 2.5 s of the emulator's own
// work on top of SetLoadRowLatency's, and ran out the timeouts the tests
// set against that latency. Made once a call (one scan) and kept by the
// call's own set and drop: nothing a row's create or write runs adds an
// external id (insert's seeds do, outside load). A load into
// ir.model.data itself, whose rows are external ids, scans as before
// (nil index).
type xmlidIndex struct {
	s   *Server
	imd *model
	ids map[[2]string]int64 // (module, name) -> ir.model.data id
}

func (s *Server) indexXMLIDs(m *model) *xmlidIndex {
	x := &xmlidIndex{s: s}
	if m.name == "ir.model.data" {
		return x
	}
	x.imd = s.models["ir.model.data"]
	x.ids = make(map[[2]string]int64, len(x.imd.recs))
	for id, r := range x.imd.recs {
		mod, _ := r["module"].(string)
		name, _ := r["name"].(string)
		x.ids[[2]string{mod, name}] = id
	}
	return x
}

// lookup is xmlidLookup.
func (x *xmlidIndex) lookup(full string) (string, int64, bool) {
	if x.ids == nil {
		return x.s.xmlidLookup(full)
	}
	mod, name, ok := strings.Cut(full, ".")
	if !ok {
		mod, name = "__import__", full
	}
	r, ok := x.imd.recs[x.ids[[2]string{mod, name}]] // ids start at 1: none at 0
	if !ok {
		return "", 0, false
	}
	return r["model"].(string), r["res_id"].(int64), true
}

// set is setXMLID.
func (x *xmlidIndex) set(full, modelName string, resID int64) {
	if x.ids == nil {
		x.s.setXMLID(full, modelName, resID)
		return
	}
	mod, name, _ := strings.Cut(full, ".")
	key := [2]string{mod, name}
	if r, ok := x.imd.recs[x.ids[key]]; ok {
		r["model"], r["res_id"] = modelName, resID
		return
	}
	x.imd.next++
	x.imd.recs[x.imd.next] = rec{"id": x.imd.next, "module": mod, "name": name, "model": modelName, "res_id": resID}
	x.ids[key] = x.imd.next
}

// drop is dropXMLID.
func (x *xmlidIndex) drop(full string) {
	if x.ids == nil {
		x.s.dropXMLID(full)
		return
	}
	mod, name, _ := strings.Cut(full, ".")
	key := [2]string{mod, name}
	if id, ok := x.ids[key]; ok {
		delete(x.imd.recs, id)
		delete(x.ids, key)
	}
}

func (s *Server) setXMLID(full, modelName string, resID int64) {
	mod, name, _ := strings.Cut(full, ".")
	imd := s.models["ir.model.data"]
	for _, r := range imd.recs { // unique (module, name): see xmlidLookup
		if r["module"] == mod && r["name"] == name {
			r["model"], r["res_id"] = modelName, resID
			return
		}
	}
	imd.next++
	imd.recs[imd.next] = rec{"id": imd.next, "module": mod, "name": name, "model": modelName, "res_id": resID}
}

func (s *Server) dropXMLID(full string) {
	mod, name, _ := strings.Cut(full, ".")
	imd := s.models["ir.model.data"]
	for id, r := range imd.recs {
		if r["module"] == mod && r["name"] == name {
			delete(imd.recs, id)
		}
	}
}

// xmlidsOf maps each record of modelName that has an external id to its
// first (the lowest ir.model.data id), in one pass: the test accessors
// listing thousands of lines held the lock for seconds with a sorted scan
// per line, and the agent's calls timed out behind them.
func (s *Server) xmlidsOf(modelName string) map[int64]string {
	out := map[int64]string{}
	first := map[int64]int64{}
	for id, r := range s.models["ir.model.data"].recs {
		if r["model"] != modelName {
			continue
		}
		res := r["res_id"].(int64)
		if f, ok := first[res]; ok && f < id {
			continue
		}
		first[res] = id
		out[res] = r["module"].(string) + "." + r["name"].(string)
	}
	return out
}

// snapshot copies the database so a failed call can roll back: one call is
// one transaction in Odoo.
func (s *Server) snapshot() map[string]*model {
	c := make(map[string]*model, len(s.models))
	for k, m := range s.models {
		c[k] = m.clone()
	}
	return c
}

func (s *Server) restore(snap map[string]*model) { s.models = snap }

func copyCounts(m map[int64]int) map[int64]int {
	c := make(map[int64]int, len(m))
	for k, v := range m {
		c[k] = v
	}
	return c
}

// Backup is a copy of the emulated database, for RestoreBackup.
type Backup struct {
	models     map[string]*model
	scrapMoves map[int64]int // the stock moves of each scrap
	version    int           // the Odoo major version it was taken of
}

// Backup copies the database, as a backup (pg_dump) of an Odoo database.
func (s *Server) Backup() Backup {
	s.mu.Lock()
	defer s.mu.Unlock()
	return Backup{s.snapshot(), copyCounts(s.scrapMoves), s.v()}
}

// RestoreBackup puts the database back as b holds it, as restoring an Odoo
// database from a backup does: every record made since is gone (with its
// external id), and the id sequences are back where they were, so the ids
// of the records made since are given again to new ones. A backup taken
// before an Upgrade puts back the version it was taken of, as a rollback
// of a failed upgrade does (the old database needs the old Odoo).
func (s *Server) RestoreBackup(b Backup) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := make(map[string]*model, len(b.models))
	for k, m := range b.models {
		c[k] = m.clone()
	}
	s.models = c
	s.scrapMoves = copyCounts(b.scrapMoves)
	if b.version != s.v() {
		s.log.Info("odoo emulator rolled back", "from", s.v(), "to", b.version)
		s.version.Store(int64(b.version))
	}
}

// sqlLike reports whether s matches the SQL LIKE pattern pat: % any run of
// characters, _ any one, a backslash makes the next character literal.
func sqlLike(s, pat string) bool {
	var re strings.Builder
	re.WriteString("(?s)^")
	for i := 0; i < len(pat); i++ {
		switch c := pat[i]; {
		case c == '\\' && i+1 < len(pat):
			i++
			re.WriteString(regexp.QuoteMeta(pat[i : i+1]))
		case c == '%':
			re.WriteString(".*")
		case c == '_':
			re.WriteString(".")
		default:
			re.WriteString(regexp.QuoteMeta(pat[i : i+1]))
		}
	}
	re.WriteString("$")
	ok, err := regexp.MatchString(re.String(), s)
	return ok && err == nil
}

var fieldTypeNames = map[fieldType]string{fChar: "char", fFloat: "float", fInt: "integer", fBool: "boolean",
	fDatetime: "datetime", fSelection: "selection", fM2O: "many2one", fO2M: "one2many"}

// fieldsGet is models.py fields_get(allfields, attributes): each field's
// description (of allfields only, when given), with only the attributes
// asked for (all when none are). A quantity's digits are [16, the
// database's precision] (fields.py Float.get_digits: 16 and
// decimal.precision's precision_get of its digits name); other floats
// have none (the ORM leaves an attribute of None out).
func (s *Server) fieldsGet(m *model, allfields, attributes any) (any, *odooError) {
	names, ok := strList(allfields)
	if !ok {
		return nil, &odooError{excType, "allfields must be a list of field names"}
	}
	attrs, ok := strList(attributes)
	if !ok {
		return nil, &odooError{excType, "attributes must be a list of attribute names"}
	}
	want := func(a string) bool { return attrs == nil || slices.Contains(attrs, a) }
	out := map[string]any{}
	for name, f := range m.fields {
		if names != nil && !slices.Contains(names, name) {
			continue
		}
		d := map[string]any{}
		if want("type") {
			d["type"] = fieldTypeNames[f.typ]
		}
		if want("string") && f.label != "" {
			d["string"] = f.label
		}
		if want("required") {
			d["required"] = f.required
		}
		if want("relation") && f.comodel != "" {
			d["relation"] = f.comodel
		}
		if want("digits") && f.qty {
			d["digits"] = []int{16, s.qtyDigits}
		}
		out[name] = d
	}
	return out, nil
}
