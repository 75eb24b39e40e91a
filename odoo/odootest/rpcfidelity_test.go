package odootest_test

// JSON-2 error answers as Odoo 19 gives them, read in Odoo's own source:
// addons/web/controllers/json2.py (Json2RpcDispatcher.handle_error: a
// UserError answers its http_status, an HTTP exception its code with
// arguments [description, code]), odoo/exceptions.py (AccessDenied is a
// UserError whose http_status is 403), ir_http.py _auth_method_bearer (401
// only from werkzeug's Unauthorized: no usable Authorization header, or a
// key it does not take), and Odoo's test of JSON-2
// (odoo/addons/test_http/tests/test_webjson2.py), whose expectations
// these cases repeat.

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
)

// j2err decodes a JSON-2 error body (an object, in current 19 builds).
func j2err(t *testing.T, body []byte) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(body, &m); err != nil {
		t.Fatalf("error body %q is not a JSON object: %v", body, err)
	}
	return m
}

func TestJSON2ErrorFidelity(t *testing.T) {
	t.Run("access-denied-inside-a-call-is-403-not-401", func(t *testing.T) {
		// exceptions.py 18.0 on: class AccessDenied(UserError), http_status
		// 403. Odoo raises it inside a JSON-2 call for a session cookie of
		// another user than the key's (_auth_method_bearer), and add-ons
		// raise it; 401 is only the bearer check's Unauthorized.
		e := newEnv(t, 19)
		e.s.RefuseNext("mrp.workorder", "search_read", 1, "odoo.exceptions.AccessDenied", "Session user does not match the used apikey")
		status, hdr, v := e.j2("mrp.workorder", "search_read", map[string]any{"domain": []any{}})
		m, _ := v.(map[string]any)
		if status != http.StatusForbidden || m["name"] != "odoo.exceptions.AccessDenied" || hdr.Get("WWW-Authenticate") != "" {
			t.Errorf("AccessDenied inside a call: %d %v (WWW-Authenticate %q), want 403 without WWW-Authenticate", status, v, hdr.Get("WWW-Authenticate"))
		}
	})
	t.Run("no-authorization-header-is-401-user-not-authenticated", func(t *testing.T) {
		// test_webjson2_missing_auth
		e := newEnv(t, 19)
		const want = `User not authenticated, use the "Authorization" header`
		for name, hdr := range map[string]map[string]string{
			"none":  {"X-Odoo-Database": "odoo"},
			"basic": {"X-Odoo-Database": "odoo", "Authorization": "Basic " + e.s.AdminKey()}, // not ^bearer\s+(.+)$
		} {
			status, h, body := e.post("/json/2/mrp.workorder/search", []byte(`{"domain": []}`), hdr)
			m := j2err(t, body)
			args, _ := m["arguments"].([]any)
			if status != http.StatusUnauthorized || !strings.EqualFold(h.Get("WWW-Authenticate"), "bearer") ||
				m["name"] != "werkzeug.exceptions.Unauthorized" || m["message"] != want ||
				len(args) != 2 || args[0] != want || args[1] != 401.0 {
				t.Errorf("%s: %d %s (WWW-Authenticate %q)", name, status, body, h.Get("WWW-Authenticate"))
			}
		}
		status, _, body := e.post("/json/2/mrp.workorder/search", []byte(`{"domain": []}`),
			map[string]string{"X-Odoo-Database": "odoo", "Authorization": "Bearer " + strings.Repeat("f", 40)})
		if m := j2err(t, body); status != http.StatusUnauthorized || m["message"] != "Invalid apikey" {
			t.Errorf("a key Odoo does not take: %d %s", status, body)
		}
	})
	t.Run("http-exception-arguments-are-description-and-code", func(t *testing.T) {
		// handle_error: serialize_exception(exc, message=exc.description,
		// arguments=(exc.description, exc.code)); a UserError's are its args.
		e := newEnv(t, 19)
		for _, tc := range []struct {
			model, method string
			body          map[string]any
			code          float64
		}{
			{"no.such.model", "search", map[string]any{"domain": []any{}}, 404},
			{"mrp.workorder", "search_read", map[string]any{"ids": []int64{e.wo}, "domain": []any{}}, 422},
		} {
			status, _, v := e.j2(tc.model, tc.method, tc.body)
			m, _ := v.(map[string]any)
			args, _ := m["arguments"].([]any)
			if float64(status) != tc.code || len(args) != 2 || args[0] != m["message"] || args[1] != tc.code {
				t.Errorf("%s.%s: %d %v, want arguments [message, %v]", tc.model, tc.method, status, v, tc.code)
			}
		}
		status, _, v := e.j2("mrp.workorder", "write", map[string]any{"ids": []int64{e.wo}, "vals": map[string]any{"qty_produced": -1.0}})
		m, _ := v.(map[string]any)
		if args, _ := m["arguments"].([]any); status != 422 || len(args) != 1 || args[0] != m["message"] {
			t.Errorf("UserError: %d %v, want arguments [message]", status, v)
		}
	})
	t.Run("bad-body-messages", func(t *testing.T) {
		// test_webjson2_bad_data, test_webjson2_not_json_object
		e := newEnv(t, 19)
		auth := map[string]string{"X-Odoo-Database": "odoo", "Authorization": "bearer " + e.s.AdminKey()}
		status, _, body := e.post("/json/2/mrp.workorder/search", []byte(`not json`), auth)
		m := j2err(t, body)
		if msg, _ := m["message"].(string); status != 400 || m["name"] != "werkzeug.exceptions.BadRequest" ||
			!strings.HasPrefix(msg, "could not parse the body as json: ") {
			t.Errorf("not json: %d %s", status, body)
		}
		status, _, body = e.post("/json/2/mrp.workorder/search", []byte(`null`), auth)
		if m := j2err(t, body); status != 400 || m["message"] != "could not parse the body, expecting a json object" {
			t.Errorf("null: %d %s", status, body)
		}
	})
	t.Run("missing-required-argument", func(t *testing.T) {
		// test_webjson2_missing_argument: signature.bind → 422; over
		// JSON-RPC the method's own TypeError. search and search_count
		// take a domain that has no default (models.py), write its vals.
		e := newEnv(t, 19)
		for _, tc := range []struct {
			method, param string
			body          map[string]any
		}{
			{"search", "domain", map[string]any{}},
			{"search_count", "domain", map[string]any{}},
			{"write", "vals", map[string]any{"ids": []int64{e.wo}}},
		} {
			status, _, v := e.j2("mrp.workorder", tc.method, tc.body)
			m, _ := v.(map[string]any)
			if want := "missing a required argument: '" + tc.param + "'"; status != 422 ||
				m["name"] != "werkzeug.exceptions.UnprocessableEntity" || m["message"] != want {
				t.Errorf("JSON-2 %s without %s: %d %v, want 422 %q", tc.method, tc.param, status, v, want)
			}
		}
		e17 := newEnv(t, 17)
		for _, method := range []string{"search", "search_count"} {
			r := e17.exec("mrp.workorder", method, []any{}, nil)
			if r.ErrName != "builtins.TypeError" || !strings.Contains(r.ErrMsg, "missing 1 required positional argument: 'domain'") {
				t.Errorf("JSON-RPC %s without a domain: %v", method, r.raw)
			}
		}
	})
}

// models.py _search hands limit to the query, which writes a LIMIT only
// when it is truthy: a limit of 0 is no limit, as None is.
func TestSearchLimitZeroIsNoLimit(t *testing.T) {
	e := newEnv(t, 17)
	e.s.AddWorkorder(e.mo, e.wc, "Deburring", "ready")
	for _, method := range []string{"search", "search_read", "search_count"} {
		r := e.ok(e.exec("mrp.workorder", method, []any{[]any{}}, map[string]any{"limit": 0}))
		n := num(r)
		if rows, ok := r.([]any); ok {
			n = float64(len(rows))
		}
		if n != 2 {
			t.Errorf("%s with limit 0: %v, want both work orders", method, r)
		}
	}
}

// Over JSON-RPC, Odoo 17 refuses a private method with service/model.py's
// check_method_name (models.py: regex_private ^(_.*|init)$, the bare
// method name in the message, before the model is looked up) and an
// unknown one with api.py call_kw's AttributeError; 18.0 on, both come
// from service/model.py get_public_method, naming model.method.
func TestPrivateAndUnknownMethodWordsByVersion(t *testing.T) {
	for _, tc := range []struct {
		v                       int
		model, method, exc, msg string
	}{
		{17, "mrp.workorder", "_action_confirm", "odoo.exceptions.AccessError", "Private methods (such as _action_confirm) cannot be called remotely."},
		{17, "no.such.model", "_action_confirm", "odoo.exceptions.AccessError", "Private methods (such as _action_confirm) cannot be called remotely."},
		{17, "mrp.workorder", "init", "odoo.exceptions.AccessError", "Private methods (such as init) cannot be called remotely."},
		{17, "mrp.workorder", "record_production", "builtins.AttributeError", "The method 'record_production' does not exist on the model 'mrp.workorder'"},
		{18, "mrp.workorder", "_action_confirm", "odoo.exceptions.AccessError", "Private methods (such as 'mrp.workorder._action_confirm') cannot be called remotely."},
		{18, "mrp.workorder", "record_production", "builtins.AttributeError", "The method 'mrp.workorder.record_production' does not exist"},
	} {
		e := newEnv(t, tc.v)
		r := e.exec(tc.model, tc.method, []any{[]any{e.wo}}, nil)
		if r.ErrName != tc.exc || r.ErrMsg != tc.msg {
			t.Errorf("v%d %s.%s: %s %q, want %s %q", tc.v, tc.model, tc.method, r.ErrName, r.ErrMsg, tc.exc, tc.msg)
		}
	}
}
