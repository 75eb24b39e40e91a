package odootest_test

// Each test case pins one fact of the shared ODOO.md (Odoo facts) (named in the case),
// speaking raw HTTP to the emulator so the client cannot hide a deviation.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/plantedge/plantedge/odoo/odootest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// env is a started emulator with one work center, product, MO and work order.
type env struct {
	t                   *testing.T
	s                   *odootest.Server
	url                 string
	wc, product, mo, wo int64
}

func newEnv(t *testing.T, version int) *env {
	t.Helper()
	return newEnvWith(t, odootest.Options{Version: version})
}

func newEnvWith(t *testing.T, opts odootest.Options) *env {
	t.Helper()
	s := odootest.New(opts)
	url := s.Start()
	t.Cleanup(s.Close)
	e := &env{t: t, s: s, url: url}
	e.wc = s.AddWorkcenter("M1", "Press 1")
	e.product = s.AddProduct("Bracket")
	e.mo = s.AddProduction("WH/MO/00078", e.product, 500)
	e.wo = s.AddWorkorder(e.mo, e.wc, "Pressing", "progress")
	return e
}

// post sends a raw body and returns status, headers and body.
func (e *env) post(path string, body []byte, hdr map[string]string) (int, http.Header, []byte) {
	e.t.Helper()
	req, err := http.NewRequest(http.MethodPost, e.url+path, bytes.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatalf("POST %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, b
}

// rpcEnv is a decoded JSON-RPC answer.
type rpcEnv struct {
	raw       map[string]json.RawMessage
	Result    any
	HasResult bool
	Code      int
	ErrName   string
	ErrMsg    string
}

func (e *env) rpc(service, method string, args ...any) rpcEnv {
	e.t.Helper()
	body, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "method": "call", "id": 7,
		"params": map[string]any{"service": service, "method": method, "args": args}})
	status, _, b := e.post("/jsonrpc", body, nil)
	if status != http.StatusOK {
		e.t.Fatalf("JSON-RPC answered HTTP %d: %s", status, b)
	}
	var out rpcEnv
	if err := json.Unmarshal(b, &out.raw); err != nil {
		e.t.Fatalf("decode %s: %v", b, err)
	}
	if r, ok := out.raw["result"]; ok {
		out.HasResult = true
		_ = json.Unmarshal(r, &out.Result)
	}
	if r, ok := out.raw["error"]; ok {
		var er struct {
			Code int `json:"code"`
			Data struct {
				Name    string `json:"name"`
				Message string `json:"message"`
			} `json:"data"`
		}
		_ = json.Unmarshal(r, &er)
		out.Code, out.ErrName, out.ErrMsg = er.Code, er.Data.Name, er.Data.Message
	}
	return out
}

// exec calls object.execute_kw as admin.
func (e *env) exec(model, method string, args []any, kw map[string]any) rpcEnv {
	e.t.Helper()
	if kw == nil {
		kw = map[string]any{}
	}
	return e.rpc("object", "execute_kw", "odoo", 2, e.s.AdminKey(), model, method, args, kw)
}

// ok fails the test on an error answer and returns the result.
func (e *env) ok(r rpcEnv) any {
	e.t.Helper()
	if r.ErrName != "" {
		e.t.Fatalf("unexpected error %s: %s", r.ErrName, r.ErrMsg)
	}
	return r.Result
}

func (e *env) wantErr(r rpcEnv, name string) {
	e.t.Helper()
	if r.ErrName != name {
		e.t.Fatalf("error name %q (%s), want %q", r.ErrName, r.ErrMsg, name)
	}
}

// j2 calls JSON-2 with the admin key.
func (e *env) j2(model, method string, body map[string]any) (int, http.Header, any) {
	e.t.Helper()
	b, _ := json.Marshal(body)
	status, hdr, rb := e.post("/json/2/"+model+"/"+method, b,
		map[string]string{"Authorization": "bearer " + e.s.AdminKey(), "X-Odoo-Database": "odoo"})
	var v any
	if err := json.Unmarshal(rb, &v); err != nil {
		e.t.Fatalf("JSON-2 %s/%s: body %q is not JSON", model, method, rb)
	}
	return status, hdr, v
}

func (e *env) readWO(fields ...string) map[string]any {
	e.t.Helper()
	rows := e.ok(e.exec("mrp.workorder", "read", []any{[]any{e.wo}}, map[string]any{"fields": fields})).([]any)
	return rows[0].(map[string]any)
}

func (e *env) readWOf(id int64, fields ...string) map[string]any {
	e.t.Helper()
	rows := e.ok(e.exec("mrp.workorder", "read", []any{[]any{id}}, map[string]any{"fields": fields})).([]any)
	return rows[0].(map[string]any)
}

func num(v any) float64 { f, _ := v.(float64); return f }

func TestTransportFacts(t *testing.T) {
	t.Run("jsonrpc-success-envelope-is-http-200-with-result", func(t *testing.T) {
		e := newEnv(t, 17)
		r := e.exec("mrp.workorder", "search_count", []any{[]any{}}, nil)
		if !r.HasResult || num(r.Result) != 1 || string(r.raw["jsonrpc"]) != `"2.0"` || string(r.raw["id"]) != "7" {
			t.Errorf("envelope %v", r.raw)
		}
	})
	t.Run("v17-none-result-envelope-has-no-result-key", func(t *testing.T) {
		e := newEnv(t, 17)
		r := e.exec("mrp.workorder", "button_pending", []any{[]any{e.wo}}, nil)
		if r.HasResult || r.ErrName != "" {
			t.Errorf("17 button_pending envelope %v, want no result and no error", r.raw)
		}
		e18 := newEnv(t, 18)
		r = e18.exec("mrp.workorder", "button_pending", []any{[]any{e18.wo}}, nil)
		if !r.HasResult || r.Result != nil {
			t.Errorf("18 button_pending envelope %v, want result null", r.raw)
		}
	})
	t.Run("authenticate-bad-key-returns-false-not-error", func(t *testing.T) {
		e := newEnv(t, 17)
		r := e.rpc("common", "authenticate", "odoo", "admin", strings.Repeat("0", 40), map[string]any{})
		if r.ErrName != "" || r.Result != false {
			t.Errorf("got %v", r.raw)
		}
		if r := e.rpc("common", "authenticate", "odoo", "admin", e.s.AdminKey(), map[string]any{}); num(r.Result) != 2 {
			t.Errorf("good key: %v", r.raw)
		}
		if r := e.rpc("common", "login", "odoo", "admin", e.s.AdminKey()); num(r.Result) != 2 {
			t.Errorf("common.login: %v", r.raw)
		}
	})
	t.Run("common-version-shape", func(t *testing.T) {
		for _, v := range []int{17, 18, 19} {
			e := newEnv(t, v)
			got := e.ok(e.rpc("common", "version")).(map[string]any)
			b, _ := json.Marshal(got)
			want := map[int]string{
				17: `{"protocol_version":1,"server_serie":"17.0","server_version":"17.0","server_version_info":[17,0,0,"final",0,""]}`,
				18: `{"protocol_version":1,"server_serie":"18.0","server_version":"18.0","server_version_info":[18,0,0,"final",0,""]}`,
				19: `{"protocol_version":1,"server_serie":"19.0","server_version":"19.0","server_version_info":[19,0,0,"final",0,""]}`,
			}[v]
			if string(b) != want {
				t.Errorf("v%d: %s", v, b)
			}
		}
		ent := odootest.New(odootest.Options{Version: 17, Enterprise: true})
		if ent.ServerVersion() != "17.0+e" {
			t.Errorf("enterprise version %q", ent.ServerVersion())
		}
	})
	t.Run("every-object-call-rechecks-login-and-key", func(t *testing.T) {
		e := newEnv(t, 18)
		uid, key := e.s.AddUser("plc")
		call := func(k string, u int64) rpcEnv {
			return e.rpc("object", "execute_kw", "odoo", u, k, "mrp.workorder", "search_count", []any{[]any{}}, map[string]any{})
		}
		e.ok(call(key, uid))
		e.wantErr(call(key, 2), "odoo.exceptions.AccessDenied") // key of another user
		e.s.ExpireKey(key)
		e.wantErr(call(key, uid), "odoo.exceptions.AccessDenied")
	})
	t.Run("error-code-200-before-19-and-0-in-19-classify-on-data-name", func(t *testing.T) {
		for v, code := range map[int]int{17: 200, 18: 200, 19: 0} {
			e := newEnv(t, v)
			r := e.exec("mrp.workorder", "write", []any{[]any{99999}, map[string]any{"name": "x"}}, nil)
			if r.Code != code || r.ErrName != "odoo.exceptions.MissingError" {
				t.Errorf("v%d: code %d name %q", v, r.Code, r.ErrName)
			}
			var er struct {
				Message string         `json:"message"`
				Data    map[string]any `json:"data"`
			}
			_ = json.Unmarshal(r.raw["error"], &er)
			for _, k := range []string{"name", "message", "arguments", "context", "debug"} {
				if _, ok := er.Data[k]; !ok || er.Message != "Odoo Server Error" {
					t.Errorf("v%d: error.data lacks %q or message %q", v, k, er.Message)
				}
			}
		}
	})
	t.Run("invalid-json-is-http-400-plain-text", func(t *testing.T) {
		e := newEnv(t, 17)
		status, hdr, body := e.post("/jsonrpc", []byte("{not json"), nil)
		if status != http.StatusBadRequest || !strings.HasPrefix(hdr.Get("Content-Type"), "text/plain") || json.Valid(body) {
			t.Errorf("status %d type %q body %q", status, hdr.Get("Content-Type"), body)
		}
	})
	t.Run("web-version-and-json2-only-in-19", func(t *testing.T) {
		for _, v := range []int{17, 18} {
			e := newEnv(t, v)
			resp, err := http.Get(e.url + "/web/version")
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			status, _, _ := e.post("/json/2/mrp.workorder/search_count", []byte(`{"domain":[]}`),
				map[string]string{"Authorization": "bearer " + e.s.AdminKey()})
			if resp.StatusCode != http.StatusNotFound || status != http.StatusNotFound {
				t.Errorf("v%d: /web/version %d, /json/2 %d; want 404", v, resp.StatusCode, status)
			}
		}
		e := newEnv(t, 19)
		resp, err := http.Get(e.url + "/web/version")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(b) != `{"version":"19.0","version_info":[19,0,0,"final",0,""]}` {
			t.Errorf("/web/version = %s", b)
		}
	})
	t.Run("json2-named-params-ids-and-bare-result", func(t *testing.T) {
		e := newEnv(t, 19)
		status, _, v := e.j2("mrp.workorder", "write", map[string]any{"ids": []int64{e.wo}, "vals": map[string]any{"qty_produced": 132.0}})
		if status != 200 || v != true {
			t.Errorf("write: %d %v", status, v)
		}
		status, _, v = e.j2("mrp.workorder", "search_read", map[string]any{"domain": []any{[]any{"id", "=", e.wo}},
			"fields": []string{"qty_produced"}, "order": "id asc", "limit": 5})
		rows, _ := v.([]any)
		if status != 200 || len(rows) != 1 || num(rows[0].(map[string]any)["qty_produced"]) != 132 {
			t.Errorf("search_read: %d %v", status, v)
		}
		status, _, v = e.j2("mrp.workorder", "search", map[string]any{"domain": []any{}})
		if ids, _ := v.([]any); status != 200 || len(ids) != 1 || num(ids[0]) != float64(e.wo) {
			t.Errorf("search returns an id list: %d %v", status, v)
		}
		status, _, v = e.j2("mrp.workcenter", "create", map[string]any{"vals_list": []any{map[string]any{"name": "New", "code": "N1"}}})
		if ids, _ := v.([]any); status != 200 || len(ids) != 1 {
			t.Errorf("create returns ids: %d %v", status, v)
		}
	})
	t.Run("json2-context-get-tells-who-you-are", func(t *testing.T) {
		e := newEnv(t, 19)
		status, _, v := e.j2("res.users", "context_get", map[string]any{})
		if m, _ := v.(map[string]any); status != 200 || num(m["uid"]) != 2 {
			t.Errorf("context_get: %d %v", status, v)
		}
	})
	t.Run("json2-error-statuses", func(t *testing.T) {
		e := newEnv(t, 19)
		cases := []struct {
			name, model, method string
			body                map[string]any
			status              int
			errName             string
		}{
			{"404-missing-record", "mrp.workorder", "write", map[string]any{"ids": []int64{99999}, "vals": map[string]any{"name": "x"}}, 404, "odoo.exceptions.MissingError"},
			{"404-unknown-model", "no.such.model", "search", map[string]any{}, 404, "werkzeug.exceptions.NotFound"},
			{"404-unknown-method", "mrp.workorder", "record_production", map[string]any{"ids": []int64{e.wo}}, 404, "werkzeug.exceptions.NotFound"},
			{"403-private-method", "mrp.workorder", "_action_confirm", map[string]any{"ids": []int64{e.wo}}, 403, "odoo.exceptions.AccessError"},
			{"422-user-error", "mrp.workorder", "write", map[string]any{"ids": []int64{e.wo}, "vals": map[string]any{"qty_produced": -1.0}}, 422, "odoo.exceptions.UserError"},
			{"422-ids-to-model-method", "mrp.workorder", "search_read", map[string]any{"ids": []int64{e.wo}, "domain": []any{}}, 422, "werkzeug.exceptions.UnprocessableEntity"},
			{"422-bad-parameter", "mrp.workorder", "search_read", map[string]any{"domian": []any{}}, 422, "werkzeug.exceptions.UnprocessableEntity"},
			{"500-error-inside-the-method", "mrp.workorder", "search_read", map[string]any{"domain": []any{[]any{"id", "=", "x"}}, "limit": "ten"}, 500, "builtins.ValueError"},
		}
		for _, tc := range cases {
			status, _, v := e.j2(tc.model, tc.method, tc.body)
			m, _ := v.(map[string]any)
			if status != tc.status || m["name"] != tc.errName || m["message"] == nil || m["debug"] == nil {
				t.Errorf("%s: %d %v", tc.name, status, v)
			}
		}
		status, hdr, _ := e.post("/json/2/mrp.workorder/search", []byte(`{}`), map[string]string{"Authorization": "bearer " + strings.Repeat("f", 40)})
		if status != 401 || !strings.EqualFold(hdr.Get("WWW-Authenticate"), "bearer") {
			t.Errorf("401: %d %q", status, hdr.Get("WWW-Authenticate"))
		}
		status, _, _ = e.post("/json/2/mrp.workorder/search", []byte(`[1,`), map[string]string{"Authorization": "bearer " + e.s.AdminKey()})
		if status != 400 {
			t.Errorf("bad body: %d, want 400", status)
		}
	})
	t.Run("json2-early-19-bare-string-error-body", func(t *testing.T) {
		s := odootest.New(odootest.Options{Version: 19, StringErrors: true})
		e := &env{t: t, s: s, url: s.Start()}
		t.Cleanup(s.Close)
		status, _, v := e.j2("mrp.workorder", "write", map[string]any{"ids": []int64{5}, "vals": map[string]any{"name": "x"}})
		if _, isString := v.(string); status != 404 || !isString {
			t.Errorf("%d %#v", status, v)
		}
	})
}

// models.py _read_format drops the rows of records that do not exist: read
// of a deleted id answers an empty list, not MissingError (write does raise).
func TestReadOfADeletedRecordIsEmpty(t *testing.T) {
	for _, v := range []int{17, 19} {
		e := newEnv(t, v)
		r := e.exec("mrp.workorder", "read", []any{[]any{99999, e.wo}}, map[string]any{"fields": []string{"state"}})
		rows, ok := r.Result.([]any)
		if r.ErrName != "" || !ok || len(rows) != 1 {
			t.Errorf("v%d read of a deleted and an existing id: %v", v, r.raw)
		}
		if v == 19 {
			status, _, body := e.j2("mrp.workorder", "read", map[string]any{"ids": []int64{99999}, "fields": []string{"state"}})
			if rows, ok := body.([]any); status != 200 || !ok || len(rows) != 0 {
				t.Errorf("JSON-2 read of a deleted id: %d %#v", status, body)
			}
		}
	}
}

// An unknown model over JSON-RPC: service/model.py execute_cr raises
// UserError("Object x doesn't exist") (JSON-2 answers 404 NotFound).
func TestUnknownModelOverJSONRPC(t *testing.T) {
	e := newEnv(t, 17)
	r := e.exec("no.such.model", "search", []any{[]any{}}, nil)
	e.wantErr(r, "odoo.exceptions.UserError")
	if r.ErrMsg != "Object no.such.model doesn't exist" {
		t.Errorf("message %q", r.ErrMsg)
	}
}

func TestAuthFacts(t *testing.T) {
	t.Run("default-cooldown-after-10-failures", func(t *testing.T) {
		// ir_config_parameter._default_parameters: a new database sets
		// base.login_cooldown_after to 10 (res_users._on_login_cooldown
		// falls back to 5 only without the parameter).
		e := newEnv(t, 17)
		for i := range 9 {
			if r := e.rpc("common", "authenticate", "odoo", "admin", "wrong", map[string]any{}); r.Result != false {
				t.Fatalf("failure %d: %v", i, r.raw)
			}
		}
		if r := e.rpc("common", "authenticate", "odoo", "admin", e.s.AdminKey(), map[string]any{}); num(r.Result) != 2 {
			t.Fatalf("after 9 failures the right key: %v", r.raw)
		}
		for i := range 10 { // the success cleared the count
			if r := e.rpc("common", "authenticate", "odoo", "admin", "wrong", map[string]any{}); r.Result != false {
				t.Fatalf("failure %d: %v", i, r.raw)
			}
		}
		if r := e.rpc("common", "authenticate", "odoo", "admin", e.s.AdminKey(), map[string]any{}); r.Result != false {
			t.Errorf("after 10 failures the right key was accepted: %v", r.raw)
		}
	})
	t.Run("login-cooldown-after-n-failures-then-too-many-login-failures", func(t *testing.T) {
		e := newEnv(t, 17)
		const cooldown = time.Second
		e.s.SetLoginCooldown(10, cooldown)
		var lastFail time.Time // before the last failure was sent: the cooldown began after it
		for i := range 10 {
			lastFail = time.Now()
			if r := e.rpc("common", "authenticate", "odoo", "admin", "wrong", map[string]any{}); r.Result != false {
				t.Fatalf("failure %d: %v", i, r.raw)
			}
		}
		// An answer back before lastFail+cooldown was surely given on
		// cooldown; a later one (a loaded machine paused the test) may not
		// have been, and says nothing (no timer to fake across HTTP).
		onCooldown := func() bool { return time.Since(lastFail) < cooldown }
		// exp_authenticate answers False for the cooldown's AccessDenied too:
		// the right key looks wrong.
		if r := e.rpc("common", "authenticate", "odoo", "admin", e.s.AdminKey(), map[string]any{}); (r.Result != false || r.ErrName != "") && onCooldown() {
			t.Errorf("authenticate on cooldown: %v", r.raw)
		}
		// Object calls check credentials through _assert_can_auth as well.
		r := e.exec("mrp.workorder", "read", []any{[]any{e.wo}}, map[string]any{"fields": []string{"state"}})
		if onCooldown() {
			e.wantErr(r, "odoo.exceptions.AccessDenied")
			if !strings.Contains(r.ErrMsg, "Too many login failures") {
				t.Errorf("message %q", r.ErrMsg)
			}
		} else {
			t.Logf("the object call answered %s after the last failure, past the cooldown: not checked", time.Since(lastFail))
		}
		// The right key works again once the cooldown is over, not before
		// (attempts on cooldown do not lengthen it).
		for deadline := time.Now().Add(cooldown + 10*time.Second); ; time.Sleep(50 * time.Millisecond) {
			r := e.rpc("common", "authenticate", "odoo", "admin", e.s.AdminKey(), map[string]any{})
			if num(r.Result) == 2 {
				if onCooldown() {
					t.Errorf("the right key worked %s after the last failure, within the cooldown", time.Since(lastFail))
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("after cooldown: %v", r.raw)
			}
		}
	})
	t.Run("failed-object-calls-count-toward-the-cooldown", func(t *testing.T) {
		e := newEnv(t, 17)
		e.s.SetLoginCooldown(3, time.Hour)
		for range 3 {
			r := e.rpc("object", "execute_kw", "odoo", 2, strings.Repeat("0", 40), "mrp.workorder", "read", []any{[]any{e.wo}}, map[string]any{})
			e.wantErr(r, "odoo.exceptions.AccessDenied")
		}
		r := e.exec("mrp.workorder", "read", []any{[]any{e.wo}}, map[string]any{"fields": []string{"state"}})
		if !strings.Contains(r.ErrMsg, "Too many login failures") {
			t.Errorf("right key after 3 failed calls: %v", r.raw)
		}
	})
	t.Run("api-keys-are-40-hex", func(t *testing.T) {
		e := newEnv(t, 18)
		_, key := e.s.AddUser("plc")
		re := regexp.MustCompile(`^[0-9a-f]{40}$`)
		if !re.MatchString(key) || !re.MatchString(e.s.AdminKey()) {
			t.Errorf("keys %q %q", key, e.s.AdminKey())
		}
	})
	t.Run("expired-key-is-refused-like-a-wrong-one", func(t *testing.T) {
		e := newEnv(t, 18)
		_, key := e.s.AddUser("plc")
		e.s.ExpireKey(key)
		if r := e.rpc("common", "authenticate", "odoo", "plc", key, map[string]any{}); r.Result != false {
			t.Errorf("jsonrpc: %v", r.raw)
		}
		e19 := newEnv(t, 19)
		_, key = e19.s.AddUser("plc")
		e19.s.ExpireKey(key)
		status, _, _ := e19.post("/json/2/res.users/context_get", []byte(`{}`), map[string]string{"Authorization": "bearer " + key})
		if status != 401 {
			t.Errorf("json2: %d", status)
		}
	})
}

func TestManufacturingFacts(t *testing.T) {
	t.Run("workcenter-code-is-not-unique", func(t *testing.T) {
		e := newEnv(t, 17)
		e.s.AddWorkcenter("M1", "Press 1 (copy)")
		r := e.ok(e.exec("mrp.workcenter", "search_read", []any{[]any{[]any{"code", "=", "M1"}}}, map[string]any{"fields": []string{"name"}}))
		if len(r.([]any)) != 2 {
			t.Errorf("got %v", r)
		}
	})
	t.Run("workorder-state-sets-per-version", func(t *testing.T) {
		e17 := newEnv(t, 17)
		e17.ok(e17.exec("mrp.workorder", "write", []any{[]any{e17.wo}, map[string]any{"state": "pending"}}, nil))
		e17.wantErr(e17.exec("mrp.workorder", "write", []any{[]any{e17.wo}, map[string]any{"state": "blocked"}}, nil), "builtins.ValueError")
		e19 := newEnv(t, 19)
		e19.ok(e19.exec("mrp.workorder", "write", []any{[]any{e19.wo}, map[string]any{"state": "blocked"}}, nil))
		for _, st := range []string{"pending", "waiting"} {
			e19.wantErr(e19.exec("mrp.workorder", "write", []any{[]any{e19.wo}, map[string]any{"state": st}}, nil), "builtins.ValueError")
		}
	})
	t.Run("many2one-reads-as-id-name-and-empty-as-false", func(t *testing.T) {
		e := newEnv(t, 17)
		row := e.readWO("production_id", "workcenter_id", "date_finished", "product_uom_id", "qty_remaining", "duration", "time_ids")
		if b, _ := json.Marshal(row["production_id"]); string(b) != `[`+itoa(e.mo)+`,"WH/MO/00078"]` {
			t.Errorf("production_id %s", b)
		}
		if row["date_finished"] != false {
			t.Errorf("empty datetime reads %v, want false", row["date_finished"])
		}
		if num(row["qty_remaining"]) != 500 {
			t.Errorf("qty_remaining %v", row["qty_remaining"])
		}
	})
	t.Run("starting-sets-qty_producing-to-the-remaining-quantity", func(t *testing.T) {
		// mrp_workorder.py button_start (17.0 to 19): "elif wo.qty_producing == 0:
		// wo.qty_producing = wo.qty_remaining" -- before a single piece is made.
		for _, v := range []int{17, 18, 19} {
			e := newEnv(t, v)
			mo := e.s.AddProduction("WH/MO/00079", e.s.AddProduct("Bracket"), 120)
			wo := e.s.AddWorkorder(mo, e.wc, "Cutting", "ready")
			want := 120.0
			if v < 19 { // qty_produced is stored without side effects there
				e.ok(e.exec("mrp.workorder", "write", []any{[]any{wo}, map[string]any{"qty_produced": 20.0}}, nil))
				want = 100
			}
			if q := e.s.ProductionQtyProducing(mo); q != 0 {
				t.Fatalf("v%d: MO qty_producing %v before the start", v, q)
			}
			e.ok(e.exec("mrp.workorder", "button_start", []any{[]any{wo}}, nil))
			if got := e.s.Workorder(wo); got.State != "progress" || got.QtyProducing != want {
				t.Errorf("v%d: after button_start %+v, want progress with qty_producing %v (the remaining quantity)", v, got, want)
			}
			// Once something is recorded, a start leaves it alone.
			e.ok(e.exec("mrp.workorder", "write", []any{[]any{wo}, map[string]any{"qty_producing": 7.0}}, nil))
			e.ok(e.exec("mrp.workorder", "button_pending", []any{[]any{wo}}, nil))
			e.ok(e.exec("mrp.workorder", "button_start", []any{[]any{wo}}, nil))
			if got := e.s.Workorder(wo).QtyProducing; got != 7 {
				t.Errorf("v%d: a second start changed qty_producing 7 to %v", v, got)
			}
		}
	})
	t.Run("qty_producing-is-mo-wide-and-writing-0-is-ignored", func(t *testing.T) {
		for _, v := range []int{17, 18, 19} {
			e := newEnv(t, v)
			wo2 := e.s.AddWorkorder(e.mo, e.wc, "Deburring", "ready")
			e.ok(e.exec("mrp.workorder", "write", []any{[]any{e.wo}, map[string]any{"qty_producing": 40.0}}, nil))
			e.ok(e.exec("mrp.workorder", "write", []any{[]any{e.wo}, map[string]any{"qty_producing": 0.0}}, nil))
			if got := e.s.Workorder(wo2).QtyProducing; got != 40 || e.s.ProductionQtyProducing(e.mo) != 40 {
				t.Errorf("v%d: sibling work order qty_producing %v, MO %v; want 40", v, got, e.s.ProductionQtyProducing(e.mo))
			}
		}
	})
	t.Run("serial-tracked-product-producing-held-at-1", func(t *testing.T) {
		// Not in ODOO.md. mrp_production.py _set_qty_producing (17.0 to
		// 19), which a work order's qty_producing reaches: a serial-tracked
		// product is produced one unit at a time; any other quantity is put
		// back to 1, and the write succeeds. 19's qty_produced is the work
		// order's own and stays.
		for _, v := range []int{17, 18, 19} {
			e := newEnv(t, v)
			serial := e.s.AddProduct("Controller")
			e.s.SetProductTracking(serial, "serial")
			mo := e.s.AddProduction("WH/MO/00090", serial, 50)
			wo := e.s.AddWorkorder(mo, e.wc, "Assembly", "progress")
			if got := e.s.ProductionQtyProducing(mo); got != 1 {
				t.Errorf("v%d: started with qty_producing %v, want 1", v, got)
			}
			e.ok(e.exec("mrp.workorder", "write", []any{[]any{wo}, map[string]any{"qty_producing": 37.0}}, nil))
			if got := e.readWOf(wo, "qty_producing", "product_tracking"); num(got["qty_producing"]) != 1 || got["product_tracking"] != "serial" {
				t.Errorf("v%d: after writing 37: %v, want qty_producing 1 of a serial-tracked product", v, got)
			}
			if v >= 19 {
				e.ok(e.exec("mrp.workorder", "write", []any{[]any{wo}, map[string]any{"qty_produced": 37.0}}, nil))
				if got := e.s.Workorder(wo); got.QtyProduced != 37 || got.QtyProducing != 1 {
					t.Errorf("v19: after writing qty_produced 37: %+v", got)
				}
			}
		}
	})
	t.Run("qty_produced-stored-without-side-effects-in-17-18", func(t *testing.T) {
		for _, v := range []int{17, 18} {
			e := newEnv(t, v)
			e.ok(e.exec("mrp.workorder", "write", []any{[]any{e.wo}, map[string]any{"qty_produced": 25.0}}, nil))
			if wo := e.s.Workorder(e.wo); wo.QtyProduced != 25 || e.s.ProductionQtyProducing(e.mo) != 500 { // start default, untouched
				t.Errorf("v%d: %+v MO %v", v, wo, e.s.ProductionQtyProducing(e.mo))
			}
			e.s.SetWorkorderState(e.wo, "done")
			e.ok(e.exec("mrp.workorder", "write", []any{[]any{e.wo}, map[string]any{"qty_produced": -3.0}}, nil)) // no validation
		}
	})
	t.Run("v19-qty_produced-validated-and-min-drives-mo", func(t *testing.T) {
		e := newEnv(t, 19)
		wo2 := e.s.AddWorkorder(e.mo, e.wc, "Deburring", "ready")
		e.wantErr(e.exec("mrp.workorder", "write", []any{[]any{e.wo}, map[string]any{"qty_produced": -1.0}}, nil), "odoo.exceptions.UserError")
		// 19.0 write: the least over the order's work orders is taken only
		// when above 0 (the Odoo fidelity probe: the emulator set 0).
		before := e.s.ProductionQtyProducing(e.mo)
		e.ok(e.exec("mrp.workorder", "write", []any{[]any{e.wo}, map[string]any{"qty_produced": 30.0}}, nil))
		if got := e.s.ProductionQtyProducing(e.mo); got != before {
			t.Errorf("MO qty_producing %v after a write with another work order at 0, want it left at %v", got, before)
		}
		e.ok(e.exec("mrp.workorder", "write", []any{[]any{wo2}, map[string]any{"qty_produced": 20.0}}, nil))
		if got := e.s.ProductionQtyProducing(e.mo); got != 20 {
			t.Errorf("MO qty_producing %v, want min 20", got)
		}
		for _, st := range []string{"done", "cancel"} {
			e.s.SetWorkorderState(e.wo, st)
			e.wantErr(e.exec("mrp.workorder", "write", []any{[]any{e.wo}, map[string]any{"qty_produced": 31.0}}, nil), "odoo.exceptions.UserError")
		}
		if got := e.s.Workorder(e.wo).QtyProduced; got != 30 {
			t.Errorf("refused write changed qty_produced to %v", got)
		}
	})
	t.Run("quantities-rounded-to-2-decimals", func(t *testing.T) {
		e := newEnv(t, 19)
		e.ok(e.exec("mrp.workorder", "write", []any{[]any{e.wo}, map[string]any{"qty_produced": 10.005001, "qty_producing": 3.14159}}, nil))
		if wo := e.s.Workorder(e.wo); wo.QtyProduced != 10.01 {
			t.Errorf("qty_produced %v", wo.QtyProduced)
		}
	})
	t.Run("button_start-opens-timer-and-refuses-blocked-or-done", func(t *testing.T) {
		e := newEnv(t, 17)
		wo2 := e.s.AddWorkorder(e.mo, e.wc, "Deburring", "ready")
		if r := e.ok(e.exec("mrp.workorder", "button_start", []any{[]any{wo2}}, nil)); r != true {
			t.Errorf("button_start returned %v", r)
		}
		lines := e.s.Productivity()
		if len(lines) != 1 || lines[0].WorkorderID != wo2 || lines[0].UserID != 2 || !lines[0].End.IsZero() || lines[0].LossType != "productive" {
			t.Fatalf("timer line %+v", lines)
		}
		if e.s.Workorder(wo2).State != "progress" || e.s.WorkingState(e.wc) != "done" {
			t.Errorf("state %q working_state %q", e.s.Workorder(wo2).State, e.s.WorkingState(e.wc))
		}
		e.s.SetWorkorderState(wo2, "done")
		e.wantErr(e.exec("mrp.workorder", "button_start", []any{[]any{wo2}}, nil), "odoo.exceptions.UserError")
		e.ok(e.exec("mrp.workcenter.productivity", "create", []any{map[string]any{"workcenter_id": e.wc, "loss_id": 2, "date_start": "2026-01-01 08:00:00"}}, nil))
		e.wantErr(e.exec("mrp.workorder", "button_start", []any{[]any{e.wo}}, nil), "odoo.exceptions.UserError")
	})
	t.Run("button_pending-returns-none-and-stops-timer", func(t *testing.T) {
		e := newEnv(t, 18)
		e.ok(e.exec("mrp.workorder", "button_start", []any{[]any{e.wo}}, nil))
		r := e.exec("mrp.workorder", "button_pending", []any{[]any{e.wo}}, nil)
		if r.Result != nil || r.ErrName != "" {
			t.Errorf("button_pending: %v", r.raw)
		}
		if l := e.s.Productivity(); len(l) != 1 || l[0].End.IsZero() {
			t.Errorf("lines %+v", l)
		}
	})
	t.Run("workcenter-of-an-order-in-progress-moves-not-of-a-done-or-cancelled-one", func(t *testing.T) {
		// mrp_workorder.py write, 17.0 on (the operators probe).
		for _, v := range []int{17, 19} {
			e := newEnv(t, v)
			wc2 := e.s.AddWorkcenter("M2", "Press 2")
			e.ok(e.exec("mrp.workorder", "write", []any{[]any{e.wo}, map[string]any{"workcenter_id": wc2}}, nil))
			if wo := e.s.Workorder(e.wo); wo.WorkcenterID != wc2 {
				t.Errorf("%d: the order in progress stayed on %d", v, wo.WorkcenterID)
			}
			e.ok(e.exec("mrp.workorder", "button_finish", []any{[]any{e.wo}}, nil))
			e.wantErr(e.exec("mrp.workorder", "write", []any{[]any{e.wo}, map[string]any{"workcenter_id": e.wc}}, nil), "odoo.exceptions.UserError")
			e.ok(e.exec("mrp.workorder", "write", []any{[]any{e.wo}, map[string]any{"workcenter_id": wc2}}, nil)) // the same: no move
			c := e.s.AddWorkorder(e.mo, e.wc, "Cut", "ready")
			e.ok(e.exec("mrp.workorder", "action_cancel", []any{[]any{c}}, nil))
			e.wantErr(e.exec("mrp.workorder", "write", []any{[]any{c}, map[string]any{"workcenter_id": wc2}}, nil), "odoo.exceptions.UserError")
		}
	})
	t.Run("button_finish-marks-done", func(t *testing.T) {
		e := newEnv(t, 17)
		e.ok(e.exec("mrp.workorder", "write", []any{[]any{e.wo}, map[string]any{"qty_producing": 12.0}}, nil))
		e.s.SetWorkorderDateStart(e.wo, time.Now().Add(24*time.Hour)) // a planned start ahead (17+)
		e.ok(e.exec("mrp.workorder", "button_finish", []any{[]any{e.wo}}, nil))
		if wo := e.s.Workorder(e.wo); wo.State != "done" || wo.QtyProduced != 12 {
			t.Errorf("%+v", wo)
		}
		// "if not workorder.date_start or date_finished < workorder.date_start"
		row := e.readWO("date_start", "date_finished")
		if row["date_start"] != row["date_finished"] {
			t.Errorf("finished before its planned start: date_start %v, date_finished %v, want both the finish", row["date_start"], row["date_finished"])
		}
	})
	t.Run("record_production-does-not-exist", func(t *testing.T) {
		e := newEnv(t, 17)
		e.wantErr(e.exec("mrp.workorder", "record_production", []any{[]any{e.wo}}, nil), "builtins.AttributeError")
	})
	t.Run("private-methods-refused-with-AccessError", func(t *testing.T) {
		e := newEnv(t, 18)
		e.wantErr(e.exec("mrp.workorder", "_compute_state", []any{[]any{e.wo}}, nil), "odoo.exceptions.AccessError")
	})
	t.Run("explicit-order-date_start-asc-id-asc", func(t *testing.T) {
		e := newEnv(t, 19)
		early := e.s.AddWorkorder(e.mo, e.wc, "Early", "progress")
		e.s.SetWorkorderDateStart(early, time.Now().Add(-time.Hour))
		late := e.s.AddWorkorder(e.mo, e.wc, "NoStart", "ready")
		e.ok(e.exec("mrp.workorder", "write", []any{[]any{late}, map[string]any{"state": "progress", "date_start": false}}, nil))
		r := e.ok(e.exec("mrp.workorder", "search_read", []any{[]any{[]any{"workcenter_id", "=", e.wc}, []any{"state", "=", "progress"}}},
			map[string]any{"fields": []string{"id"}, "order": "date_start asc, id asc"})).([]any)
		var ids []int64
		for _, row := range r {
			ids = append(ids, int64(num(row.(map[string]any)["id"])))
		}
		if len(ids) != 3 || ids[0] != early || ids[1] != e.wo || ids[2] != late {
			t.Errorf("order %v, want [%d %d %d] (NULL date_start last)", ids, early, e.wo, late)
		}
		e.wantErr(e.exec("mrp.workorder", "search", []any{[]any{}}, map[string]any{"order": "date_start; drop"}), "builtins.ValueError")
	})
	t.Run("productivity-required-fields", func(t *testing.T) {
		e := newEnv(t, 17)
		for _, missing := range []string{"workcenter_id", "loss_id", "date_start"} {
			vals := map[string]any{"workcenter_id": e.wc, "loss_id": 2, "date_start": "2026-01-01 08:00:00"}
			delete(vals, missing)
			e.wantErr(e.exec("mrp.workcenter.productivity", "create", []any{vals}, nil), "odoo.exceptions.ValidationError")
		}
	})
	t.Run("open-nonproductive-line-blocks-workcenter-unblock-closes", func(t *testing.T) {
		e := newEnv(t, 18)
		e.ok(e.exec("mrp.workcenter.productivity", "create", []any{map[string]any{"workcenter_id": e.wc, "loss_id": 2, "date_start": "2026-01-01 08:00:00"}}, nil))
		row := e.ok(e.exec("mrp.workcenter", "read", []any{[]any{e.wc}, []any{"working_state"}}, nil)).([]any)[0].(map[string]any)
		if row["working_state"] != "blocked" {
			t.Errorf("working_state %v", row["working_state"])
		}
		r := e.ok(e.exec("mrp.workcenter", "unblock", []any{[]any{e.wc}}, nil))
		if e.s.WorkingState(e.wc) != "normal" || r == nil {
			t.Errorf("after unblock: %q (%v)", e.s.WorkingState(e.wc), r)
		}
		e.wantErr(e.exec("mrp.workcenter", "unblock", []any{[]any{e.wc}}, nil), "odoo.exceptions.UserError")
		// A plain write of date_end (not _close): a line of an order past
		// its expected duration keeps its loss and is not cut in two.
		open := e.ok(e.exec("mrp.workcenter.productivity", "create", []any{map[string]any{"workcenter_id": e.wc, "workorder_id": e.wo,
			"loss_id": 2, "date_start": time.Now().Add(-48 * time.Hour).UTC().Format(time.DateTime)}}, nil))
		e.ok(e.exec("mrp.workcenter", "unblock", []any{[]any{e.wc}}, nil))
		lines := e.s.Productivity()
		if len(lines) != 2 || lines[1].ID != int64(num(open)) || lines[1].LossID != 2 || lines[1].End.IsZero() {
			t.Errorf("after unblock of an overrun order's line: %+v, want it closed, its loss kept, no split", lines)
		}
	})
	t.Run("default-loss-records-and-external-ids-no-block_reason3", func(t *testing.T) {
		e := newEnv(t, 17)
		want := map[string][2]string{
			"block_reason0": {"Material Availability", "availability"}, "block_reason1": {"Equipment Failure", "availability"},
			"block_reason2": {"Setup and Adjustments", "availability"}, "block_reason4": {"Reduced Speed", "performance"},
			"block_reason5": {"Process Defect", "quality"}, "block_reason6": {"Reduced Yield", "quality"},
			"block_reason7": {"Fully Productive Time", "productive"},
		}
		rows := e.ok(e.exec("ir.model.data", "search_read", []any{[]any{[]any{"module", "=", "mrp"}, []any{"name", "like", "block_reason"}}},
			map[string]any{"fields": []string{"name", "res_id", "model"}})).([]any)
		if len(rows) != 7 {
			t.Fatalf("%d loss external ids, want 7: %v", len(rows), rows)
		}
		for _, r := range rows {
			m := r.(map[string]any)
			w, ok := want[m["name"].(string)]
			if !ok || m["model"] != "mrp.workcenter.productivity.loss" {
				t.Errorf("unexpected %v", m)
				continue
			}
			loss := e.ok(e.exec("mrp.workcenter.productivity.loss", "read", []any{[]any{m["res_id"]}, []any{"name", "loss_type"}}, nil)).([]any)[0].(map[string]any)
			if loss["name"] != w[0] || loss["loss_type"] != w[1] {
				t.Errorf("%s = %v, want %v", m["name"], loss, w)
			}
		}
	})
	t.Run("scrap-action_validate-wizard-when-short-else-done", func(t *testing.T) {
		e := newEnv(t, 17)
		short := e.s.AddProduct("Rare")
		e.s.SetShortStock(short, true)
		id := e.ok(e.exec("stock.scrap", "create", []any{map[string]any{"product_id": short, "scrap_qty": 2.0}}, nil))
		r := e.ok(e.exec("stock.scrap", "action_validate", []any{[]any{id}}, nil))
		if m, ok := r.(map[string]any); !ok || m["res_model"] != "stock.warn.insufficient.qty.scrap" {
			t.Errorf("short: %v", r)
		}
		id2 := e.ok(e.exec("stock.scrap", "create", []any{map[string]any{"product_id": e.product, "scrap_qty": 2.0}}, nil))
		if r := e.ok(e.exec("stock.scrap", "action_validate", []any{[]any{id2}}, nil)); r != true {
			t.Errorf("validate: %v", r)
		}
		sc := e.s.Scraps()
		if sc[0].State != "draft" || sc[1].State != "done" || sc[1].UomID != 1 {
			t.Errorf("scraps %+v", sc)
		}
		// The dialog's Confirm (stock.warn.insufficient.qty.scrap
		// action_done) runs do_scrap, which does not look at the stock.
		if r := e.ok(e.exec("stock.scrap", "do_scrap", []any{[]any{id}}, nil)); r != true {
			t.Errorf("do_scrap: %v", r)
		}
		if sc := e.s.Scraps(); sc[0].State != "done" || sc[0].Moves != 1 {
			t.Errorf("after do_scrap: %+v", sc[0])
		}
	})
	t.Run("load-creates-or-updates-by-external-id", func(t *testing.T) {
		e := newEnv(t, 18)
		fields := []any{"id", "workcenter_id/.id", "loss_id/id", "date_start", "date_end", "description"}
		row := []any{"plantedge.s_m1_down_1", itoa(e.wc), "mrp.block_reason1", "2026-01-01 08:00:00", "", "jam"}
		r := e.ok(e.exec("mrp.workcenter.productivity", "load", []any{fields, []any{row}}, nil)).(map[string]any)
		ids := r["ids"].([]any)
		if len(ids) != 1 || len(r["messages"].([]any)) != 0 {
			t.Fatalf("load: %v", r)
		}
		row[4] = "2026-01-01 08:05:00"
		r = e.ok(e.exec("mrp.workcenter.productivity", "load", []any{fields, []any{row}}, nil)).(map[string]any)
		if again := r["ids"].([]any); num(again[0]) != num(ids[0]) {
			t.Errorf("second load ids %v, want the same %v", again, ids)
		}
		lines := e.s.Productivity()
		if len(lines) != 1 || lines[0].End.IsZero() || lines[0].LossName != "Equipment Failure" || lines[0].XMLID != "plantedge.s_m1_down_1" {
			t.Errorf("lines %+v", lines)
		}
		found := e.ok(e.exec("ir.model.data", "search_read", []any{[]any{[]any{"module", "=", "plantedge"}, []any{"name", "=", "s_m1_down_1"}}},
			map[string]any{"fields": []string{"res_id"}})).([]any)
		if len(found) != 1 || num(found[0].(map[string]any)["res_id"]) != num(ids[0]) {
			t.Errorf("ir.model.data: %v", found)
		}
	})
	t.Run("load-error-returns-ids-false-and-writes-nothing", func(t *testing.T) {
		e := newEnv(t, 18)
		fields := []any{"id", "workcenter_id/.id", "loss_id/id", "date_start"}
		rows := []any{
			[]any{"plantedge.ok", itoa(e.wc), "mrp.block_reason1", "2026-01-01 08:00:00"},
			[]any{"plantedge.bad", itoa(e.wc), "mrp.block_reason3", "2026-01-01 08:00:00"},
		}
		r := e.ok(e.exec("mrp.workcenter.productivity", "load", []any{fields, rows}, nil)).(map[string]any)
		msgs, _ := r["messages"].([]any)
		if r["ids"] != false || len(msgs) != 1 || msgs[0].(map[string]any)["type"] != "error" {
			t.Errorf("load: %v", r)
		}
		if n := len(e.s.Productivity()); n != 0 {
			t.Errorf("%d lines written by a failed load", n)
		}
		// An external id of a record of another model (a loss reason's):
		// the row is refused (models.py _load_records), the id stays.
		r = e.ok(e.exec("mrp.workcenter.productivity", "load", []any{fields, []any{
			[]any{"mrp.block_reason1", itoa(e.wc), "mrp.block_reason1", "2026-01-01 08:00:00"}}}, nil)).(map[string]any)
		msgs, _ = r["messages"].([]any)
		if r["ids"] != false || len(msgs) != 1 || !strings.Contains(fmt.Sprint(msgs[0]), "found record of different model mrp.workcenter.productivity.loss") {
			t.Errorf("load under another model's external id: %v", r)
		}
		still := e.ok(e.exec("ir.model.data", "search_read", []any{[]any{[]any{"module", "=", "mrp"}, []any{"name", "=", "block_reason1"}}},
			map[string]any{"fields": []string{"model"}})).([]any)
		if len(still) != 1 || still[0].(map[string]any)["model"] != "mrp.workcenter.productivity.loss" || len(e.s.Productivity()) != 0 {
			t.Errorf("the loss reason's external id: %v; %d lines", still, len(e.s.Productivity()))
		}
	})
	t.Run("one-open-line-per-user-and-work-order", func(t *testing.T) {
		// mrp_workcenter_productivity.py _check_open_time_ids
		e := newEnv(t, 17)
		line := func(uid int64, key string, end string) rpcEnv {
			vals := map[string]any{"workcenter_id": e.wc, "workorder_id": e.wo, "loss_id": 2, "date_start": "2026-07-01 08:00:00"}
			if end != "" {
				vals["date_end"] = end
			}
			return e.execAs(uid, key, "mrp.workcenter.productivity", "create", []any{vals}, nil)
		}
		e.ok(line(2, e.s.AdminKey(), ""))
		e.ok(line(2, e.s.AdminKey(), "2026-07-01 08:05:00")) // closed lines do not count
		r := line(2, e.s.AdminKey(), "")
		e.wantErr(r, "odoo.exceptions.ValidationError")
		if !strings.Contains(r.ErrMsg, "cannot be started twice") {
			t.Errorf("message %q", r.ErrMsg)
		}
		uid, key := e.bot()
		e.ok(line(uid, key, "")) // another user may have one
		if n := len(e.s.Productivity()); n != 3 {
			t.Errorf("%d lines, want 3 (the refused one rolled back)", n)
		}
	})
	t.Run("load-reads-datetimes-in-the-context-or-user-time-zone", func(t *testing.T) {
		// base/models/ir_fields.py _str_to_datetime / _input_tz: context tz,
		// else the user's tz, else UTC; create and write take UTC.
		e := newEnv(t, 17)
		e.s.SetUserTZ(2, "Europe/Berlin")
		fields := []any{"id", "workcenter_id/.id", "loss_id/id", "date_start"}
		rows := []any{[]any{"plantedge.user_tz", itoa(e.wc), "mrp.block_reason1", "2026-07-01 08:00:00"}}
		e.ok(e.exec("mrp.workcenter.productivity", "load", []any{fields, rows}, nil))
		rows = []any{[]any{"plantedge.ctx_utc", itoa(e.wc), "mrp.block_reason1", "2026-07-01 08:00:00"}}
		e.ok(e.exec("mrp.workcenter.productivity", "load", []any{fields, rows}, map[string]any{"context": map[string]any{"tz": "UTC"}}))
		created := e.ok(e.exec("mrp.workcenter.productivity", "create", []any{map[string]any{
			"workcenter_id": e.wc, "loss_id": 2, "date_start": "2026-07-01 08:00:00"}}, nil))
		want := map[string]string{"plantedge.user_tz": "2026-07-01 06:00:00", "plantedge.ctx_utc": "2026-07-01 08:00:00"}
		for _, l := range e.s.Productivity() {
			got := l.Start.UTC().Format("2006-01-02 15:04:05")
			if w, ok := want[l.XMLID]; ok && got != w || l.XMLID == "" && (l.ID != int64(num(created)) || got != "2026-07-01 08:00:00") {
				t.Errorf("line %d (%q) starts %s (UTC)", l.ID, l.XMLID, got)
			}
		}
		ctx := e.ok(e.exec("res.users", "context_get", nil, nil)).(map[string]any)
		if ctx["tz"] != "Europe/Berlin" {
			t.Errorf("context_get tz = %v", ctx["tz"])
		}
	})
	t.Run("datetimes-are-utc-strings", func(t *testing.T) {
		e := newEnv(t, 17)
		row := e.readWO("date_start")
		if s, _ := row["date_start"].(string); !regexp.MustCompile(`^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$`).MatchString(s) {
			t.Errorf("date_start %v", row["date_start"])
		}
	})
}

func TestDomainFacts(t *testing.T) {
	e := newEnv(t, 17)
	wc2 := e.s.AddWorkcenter("M2", "Lathe")
	wo2 := e.s.AddWorkorder(e.mo, wc2, "Turning", "ready")
	wo3 := e.s.AddWorkorder(e.mo, wc2, "Polishing", "done")
	cases := []struct {
		name   string
		domain []any
		want   []int64
	}{
		{"dotted-path", []any{[]any{"workcenter_id.code", "=", "M2"}}, []int64{wo2, wo3}},
		{"implicit-and", []any{[]any{"workcenter_id", "=", wc2}, []any{"state", "=", "done"}}, []int64{wo3}},
		{"or", []any{"|", []any{"state", "=", "done"}, []any{"state", "=", "progress"}}, []int64{e.wo, wo3}},
		{"not", []any{"!", []any{"state", "=", "done"}}, []int64{e.wo, wo2}},
		{"in", []any{[]any{"state", "in", []any{"ready", "done"}}}, []int64{wo2, wo3}},
		{"not-in", []any{[]any{"state", "not in", []any{"ready", "done"}}}, []int64{e.wo}},
		{"ilike", []any{[]any{"name", "ilike", "ING"}}, []int64{e.wo, wo2, wo3}},
		{"like-case-sensitive", []any{[]any{"name", "like", "ING"}}, nil},
		// SQL's LIKE: % and _ are wildcards, =like matches the whole value.
		{"=like-wildcards", []any{[]any{"name", "=like", "P_lish%"}}, []int64{wo3}},
		{"=like-whole-value", []any{[]any{"name", "=like", "Polish"}}, nil},
		{"=ilike", []any{[]any{"name", "=ilike", "turning"}}, []int64{wo2}},
		{"like-underscore-is-any-character", []any{[]any{"name", "like", "T_rn"}}, []int64{wo2}},
		{"=like-escaped-underscore", []any{[]any{"name", "=like", `Turn\_ng`}}, nil},
		{"not-equal", []any{[]any{"workcenter_id", "!=", wc2}}, []int64{e.wo}},
		{"numbers", []any{"&", []any{"qty_produced", ">=", 0}, []any{"id", "<", wo3}}, []int64{e.wo, wo2}},
		{"false-means-empty", []any{[]any{"date_start", "=", false}}, []int64{wo2}},
		{"m2o-by-name", []any{[]any{"workcenter_id", "ilike", "lathe"}}, []int64{wo2, wo3}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := e.ok(e.exec("mrp.workorder", "search", []any{tc.domain}, map[string]any{"order": "id asc"})).([]any)
			var got []int64
			for _, v := range r {
				got = append(got, int64(num(v)))
			}
			if len(got) != len(tc.want) {
				t.Fatalf("got %v want %v", got, tc.want)
			}
			for i := range got {
				if got[i] != tc.want[i] {
					t.Fatalf("got %v want %v", got, tc.want)
				}
			}
		})
	}
	t.Run("limit-offset", func(t *testing.T) {
		r := e.ok(e.exec("mrp.workorder", "search", []any{[]any{}}, map[string]any{"order": "id desc", "limit": 1, "offset": 1})).([]any)
		if len(r) != 1 || int64(num(r[0])) != wo2 {
			t.Errorf("got %v", r)
		}
	})
}

func itoa(n int64) string { b, _ := json.Marshal(n); return string(b) }

// Upgrade keeps the database (records, external ids, API keys) and
// switches the server to the new version's behaviour: /web/version and
// JSON-2 appear, qty_produced gets 19's rules, 17/18's waiting states
// become blocked.
func TestUpgradeKeepsTheDatabase(t *testing.T) {
	e := newEnv(t, 18)
	waiting := e.s.AddWorkorder(e.mo, e.wc, "Painting", "waiting")
	e.ok(e.exec("mrp.workorder", "write", []any{[]any{e.wo}, map[string]any{"qty_producing": 12.0}}, nil))
	resp, err := http.Get(e.url + "/web/version")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("18 answers /web/version: %d", resp.StatusCode)
	}

	e.s.SetDown(true)
	e.s.Upgrade(19)
	e.s.SetDown(false)

	v := e.ok(e.rpc("common", "version")).(map[string]any)
	if v["server_version"] != "19.0" || e.s.Version() != 19 {
		t.Errorf("after the upgrade: %v (Version %d)", v, e.s.Version())
	}
	status, _, body := e.j2("mrp.workorder", "read", map[string]any{"ids": []int64{e.wo, waiting},
		"fields": []string{"state", "qty_producing", "qty_produced"}})
	rows, _ := body.([]any)
	if status != http.StatusOK || len(rows) != 2 {
		t.Fatalf("JSON-2 read with the old key: %d %v", status, body)
	}
	if r := rows[0].(map[string]any); r["state"] != "progress" || num(r["qty_producing"]) != 12 {
		t.Errorf("work order in progress after the upgrade: %v", r)
	}
	if r := rows[1].(map[string]any); r["state"] != "blocked" {
		t.Errorf("a waiting work order after the upgrade: %v, want blocked", r)
	}
	// 19's rules: a negative qty_produced is refused.
	status, _, body = e.j2("mrp.workorder", "write", map[string]any{"ids": []int64{e.wo}, "vals": map[string]any{"qty_produced": -1.0}})
	if status != http.StatusUnprocessableEntity {
		t.Errorf("negative qty_produced on 19: %d %v", status, body)
	}
	// New records continue the ids.
	if id := e.s.AddWorkorder(e.mo, e.wc, "Packing", "ready"); id <= waiting {
		t.Errorf("new work order id %d after %d", id, waiting)
	}
}

// TestCompanyFacts: in a multi-company database a downtime line and a scrap
// take the caller's main company when the call names none (models.py
// default, MrpWorkcenterProductivity._get_default_company_id, api.py
// env.company), and _check_company refuses them for a work center of
// another company; naming the company (a company_id/.id column, the
// company_id value, or the context's allowed_company_ids /
// default_company_id) makes them pass. Reads are not filtered.
func TestCompanyFacts(t *testing.T) {
	// multi builds an env whose work center belongs to company B while the
	// admin's main company is the first.
	multi := func(t *testing.T, version int) (*env, int64) {
		e := newEnv(t, version)
		b := e.s.AddCompany("Plant B")
		e.s.SetUserCompanies(2, 1, b)
		e.s.SetWorkcenterCompany(e.wc, b)
		return e, b
	}
	incompatible := regexp.MustCompile(`^Incompatible companies on records:\n- 'mrp\.workcenter\.productivity,\d+' belongs to company 'YourCompany' and 'Work Center' \(workcenter_id: 'Press 1'\) belongs to another company\.\n- 'mrp\.workcenter\.productivity,\d+' belongs to company 'YourCompany' and 'Work Order' \(workorder_id: 'WH/MO/00078 - Pressing'\) belongs to another company\.$`)
	t.Run("reads-see-all-the-users-companies", func(t *testing.T) {
		e, b := multi(t, 17)
		rows := e.ok(e.exec("mrp.workcenter", "search_read", []any{[]any{[]any{"code", "=", "M1"}}},
			map[string]any{"fields": []string{"company_id"}})).([]any)
		if len(rows) != 1 || num(rows[0].(map[string]any)["company_id"].([]any)[0]) != float64(b) {
			t.Errorf("work center read %v, want company %d", rows, b)
		}
		if c := e.readWO("company_id")["company_id"].([]any); num(c[0]) != float64(b) {
			t.Errorf("work order company %v, want %d (its order's, its work center's)", c, b)
		}
	})
	t.Run("records-of-a-company-not-the-users-are-hidden-by-record-rules", func(t *testing.T) {
		// mrp_security.xml / stock_security.xml: global rules "company_id in
		// company_ids" (work centers: "or no company"); company_ids is
		// env.companies, the user's companies without allowed_company_ids.
		e := newEnv(t, 19)
		z := e.s.AddCompany("Plant Z")
		e.s.SetWorkcenterCompany(e.wc, z) // the admin (uid 2) is of company 1 alone
		if rows := e.ok(e.exec("mrp.workcenter", "search_read", []any{[]any{[]any{"code", "=", "M1"}}}, nil)).([]any); len(rows) != 0 {
			t.Errorf("work centers found %v, want none", rows)
		}
		if n := e.ok(e.exec("mrp.workorder", "search_count", []any{[]any{}}, nil)); num(n) != 0 {
			t.Errorf("work orders counted %v, want 0", n)
		}
		r := e.exec("mrp.workorder", "read", []any{[]any{e.wo}}, map[string]any{"fields": []string{"state"}})
		e.wantErr(r, "odoo.exceptions.AccessError")
		if !strings.Contains(r.ErrMsg, "multi-company issue") {
			t.Errorf("message %q", r.ErrMsg)
		}
		status, _, _ := e.j2("mrp.workorder", "write", map[string]any{"ids": []any{e.wo}, "vals": map[string]any{"qty_produced": 1.0}})
		if status != 403 {
			t.Errorf("JSON-2 write of a hidden work order: %d, want 403", status)
		}
		fields := []any{"id", "workcenter_id/.id", "loss_id/id", "date_start", "company_id/.id"}
		row := []any{"plantedge.s_m1_down_1", itoa(e.wc), "mrp.block_reason1", "2026-01-01 08:00:00", itoa(z)}
		res := e.ok(e.exec("mrp.workcenter.productivity", "load", []any{fields, []any{row}}, nil)).(map[string]any)
		if res["ids"] != false || len(e.s.Productivity()) != 0 {
			t.Errorf("load of a line in a company not the user's: %v", res)
		}
		e.s.SetUserCompanies(2, 1, z) // a member of it: seen again
		if rows := e.ok(e.exec("mrp.workcenter", "search_read", []any{[]any{[]any{"code", "=", "M1"}}}, nil)).([]any); len(rows) != 1 {
			t.Errorf("work centers found %v, want one", rows)
		}
	})
	t.Run("create-without-company-refused-user-error", func(t *testing.T) {
		e, _ := multi(t, 17)
		vals := map[string]any{"workcenter_id": e.wc, "workorder_id": e.wo, "loss_id": 2, "date_start": "2026-01-01 08:00:00"}
		r := e.exec("mrp.workcenter.productivity", "create", []any{vals}, nil)
		e.wantErr(r, "odoo.exceptions.UserError")
		if !incompatible.MatchString(r.ErrMsg) {
			t.Errorf("message %q", r.ErrMsg)
		}
		if n := len(e.s.Productivity()); n != 0 {
			t.Errorf("%d lines after the refusal, want 0 (rolled back)", n)
		}
	})
	t.Run("json2-create-without-company-422", func(t *testing.T) {
		e, b := multi(t, 19)
		vals := map[string]any{"workcenter_id": e.wc, "loss_id": 2, "date_start": "2026-01-01 08:00:00"}
		status, _, v := e.j2("mrp.workcenter.productivity", "create", map[string]any{"vals_list": []any{vals}})
		if m, _ := v.(map[string]any); status != 422 || m["name"] != "odoo.exceptions.UserError" ||
			!strings.HasPrefix(fmt.Sprint(m["message"]), "Incompatible companies on records:\n") {
			t.Errorf("%d %v", status, v)
		}
		status, _, v = e.j2("mrp.workcenter.productivity", "create", map[string]any{"vals_list": []any{vals},
			"context": map[string]any{"allowed_company_ids": []int64{b}}})
		if status != 200 {
			t.Errorf("with allowed_company_ids: %d %v", status, v)
		}
	})
	t.Run("load-without-company-row-message-with-company-column-created", func(t *testing.T) {
		e, b := multi(t, 18)
		fields := []any{"id", "workcenter_id/.id", "workorder_id/.id", "loss_id/id", "date_start"}
		row := []any{"plantedge.s_m1_down_1", itoa(e.wc), itoa(e.wo), "mrp.block_reason1", "2026-01-01 08:00:00"}
		r := e.ok(e.exec("mrp.workcenter.productivity", "load", []any{fields, []any{row}}, nil)).(map[string]any)
		msgs := r["messages"].([]any)
		if r["ids"] != false || len(msgs) != 1 || !incompatible.MatchString(fmt.Sprint(msgs[0].(map[string]any)["message"])) {
			t.Fatalf("load without company: %v", r)
		}
		r = e.ok(e.exec("mrp.workcenter.productivity", "load", []any{append(fields, "company_id/.id"), []any{append(row, itoa(b))}}, nil)).(map[string]any)
		if ids, _ := r["ids"].([]any); len(ids) != 1 {
			t.Fatalf("load with company_id/.id: %v", r)
		}
		if l := e.s.Productivity(); len(l) != 1 || l[0].CompanyID != b {
			t.Errorf("lines %+v, want one of company %d", l, b)
		}
	})
	t.Run("context-names-the-company", func(t *testing.T) {
		e, b := multi(t, 17)
		vals := map[string]any{"workcenter_id": e.wc, "loss_id": 2, "date_start": "2026-01-01 08:00:00", "date_end": "2026-01-01 08:01:00"}
		for _, ctx := range []map[string]any{{"allowed_company_ids": []int64{b}}, {"default_company_id": b}, {"default_workcenter_id": e.wc}} {
			e.ok(e.exec("mrp.workcenter.productivity", "create", []any{vals}, map[string]any{"context": ctx}))
		}
		e.ok(e.exec("mrp.workcenter.productivity", "create", []any{map[string]any{"workcenter_id": e.wc, "loss_id": 2,
			"date_start": "2026-01-01 08:00:00", "date_end": "2026-01-01 08:01:00", "company_id": b}}, nil))
		for _, l := range e.s.Productivity() {
			if l.CompanyID != b {
				t.Errorf("line %+v, want company %d", l, b)
			}
		}
		// api.py: a company the user may not use is refused.
		other := e.s.AddCompany("Elsewhere")
		e.wantErr(e.exec("mrp.workcenter.productivity", "create", []any{vals},
			map[string]any{"context": map[string]any{"allowed_company_ids": []int64{other}}}), "odoo.exceptions.AccessError")
	})
	t.Run("button-start-takes-the-work-orders-company", func(t *testing.T) {
		e, b := multi(t, 17)
		wo := e.s.AddWorkorder(e.mo, e.wc, "Second", "ready")
		e.ok(e.exec("mrp.workorder", "button_start", []any{[]any{wo}}, nil))
		if l := e.s.Productivity(); len(l) != 1 || l[0].CompanyID != b {
			t.Errorf("timer %+v, want company %d", l, b)
		}
	})
	t.Run("scrap-without-company-stays-draft-refused-at-validate", func(t *testing.T) {
		e, b := multi(t, 18)
		fields := []any{"id", "product_id/.id", "scrap_qty", "production_id/.id", "workorder_id/.id"}
		row := []any{"plantedge.s_m1_scrap_1", itoa(e.product), "2", itoa(e.mo), itoa(e.wo)}
		r := e.ok(e.exec("stock.scrap", "load", []any{fields, []any{row}}, nil)).(map[string]any)
		id := r["ids"].([]any)[0]
		v := e.exec("stock.scrap", "action_validate", []any{[]any{id}}, nil)
		e.wantErr(v, "odoo.exceptions.UserError")
		if !strings.HasPrefix(v.ErrMsg, "Incompatible companies on records:\n- 'New' belongs to company 'YourCompany' and 'Manufacturing Order' (production_id: 'WH/MO/00078')") {
			t.Errorf("message %q", v.ErrMsg)
		}
		if sc := e.s.Scraps(); sc[0].State != "draft" || sc[0].Moves != 0 {
			t.Errorf("after the refusal: %+v", sc[0])
		}
		e.wantErr(e.exec("stock.scrap", "do_scrap", []any{[]any{id}}, nil), "odoo.exceptions.UserError")
		// the company named: validated
		r = e.ok(e.exec("stock.scrap", "load", []any{append(fields, "company_id/.id"), []any{append(row, itoa(b))}}, nil)).(map[string]any)
		e.ok(e.exec("stock.scrap", "action_validate", []any{[]any{r["ids"].([]any)[0]}}, nil))
		if sc := e.s.Scraps(); sc[0].State != "done" || sc[0].Moves != 1 || sc[0].CompanyID != b {
			t.Errorf("with the company: %+v", sc[0])
		}
	})
	t.Run("single-company-unchanged", func(t *testing.T) {
		e := newEnv(t, 17)
		e.ok(e.exec("mrp.workcenter.productivity", "create", []any{map[string]any{"workcenter_id": e.wc, "workorder_id": e.wo,
			"loss_id": 2, "date_start": "2026-01-01 08:00:00"}}, nil))
		if l := e.s.Productivity(); len(l) != 1 || l[0].CompanyID != 1 {
			t.Errorf("lines %+v", l)
		}
	})
}
