package odootest_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/plantedge/plantedge/odoo/odootest"
)

// TestLanguageFacts: the language Odoo renders a message in
// (tools/translate.py _get_lang): the call's context lang first, else the
// request's (English without an Accept-Language header; the company's where
// English is deactivated, ir_http._pre_dispatch get_lang), else — a
// JSON-RPC request to a server of several databases with no dbfilter,
// served with no request environment — the user's own in 18 and 19 and
// none in 17. JSON-2 is always served with a database.
func TestLanguageFacts(t *testing.T) {
	const fr = "Sociétés incompatibles sur les enregistrements :\n"
	const en = "Incompatible companies on records:\n"
	// refused is a line of another company's work center, refused by
	// _check_company, over JSON-RPC (proto "jsonrpc") or JSON-2, with ctx
	// as the call's context (nil: none); it returns the message.
	refused := func(t *testing.T, e *env, proto string, ctx map[string]any) string {
		t.Helper()
		b := e.s.AddCompany("Plant B")
		e.s.SetUserCompanies(2, 1, b)
		e.s.SetWorkcenterCompany(e.wc, b)
		vals := map[string]any{"workcenter_id": e.wc, "loss_id": 2, "date_start": "2026-01-01 08:00:00"}
		if proto == "json2" {
			body := map[string]any{"vals_list": []any{vals}}
			if ctx != nil {
				body["context"] = ctx
			}
			status, _, v := e.j2("mrp.workcenter.productivity", "create", body)
			m, _ := v.(map[string]any)
			if status != 422 || m["name"] != "odoo.exceptions.UserError" {
				t.Fatalf("JSON-2: %d %v", status, v)
			}
			return fmt.Sprint(m["message"])
		}
		kw := map[string]any{}
		if ctx != nil {
			kw["context"] = ctx
		}
		r := e.exec("mrp.workcenter.productivity", "create", []any{vals}, kw)
		e.wantErr(r, "odoo.exceptions.UserError")
		return r.ErrMsg
	}
	cases := []struct {
		name    string
		opts    odootest.Options
		proto   string
		ctx     map[string]any
		english bool // English deactivated, the company's language German
		want    string
	}{
		{"v18-many-databases-jsonrpc-the-users-language", odootest.Options{Version: 18, ManyDatabases: true}, "jsonrpc", nil, false, fr},
		{"v19-many-databases-jsonrpc-the-users-language", odootest.Options{Version: 19, ManyDatabases: true}, "jsonrpc", nil, false, fr},
		{"v18-many-databases-context-en-us-english", odootest.Options{Version: 18, ManyDatabases: true}, "jsonrpc", map[string]any{"lang": "en_US"}, false, en},
		{"v17-many-databases-jsonrpc-untranslated", odootest.Options{Version: 17, ManyDatabases: true}, "jsonrpc", nil, false, en},
		{"v18-one-database-jsonrpc-the-requests-english", odootest.Options{Version: 18}, "jsonrpc", nil, false, en},
		{"v18-one-database-context-lang-honoured", odootest.Options{Version: 18}, "jsonrpc", map[string]any{"lang": "fr_FR"}, false, fr},
		{"v19-json2-the-requests-english", odootest.Options{Version: 19, ManyDatabases: true}, "json2", nil, false, en},
		{"v19-json2-context-lang-honoured", odootest.Options{Version: 19}, "json2", map[string]any{"lang": "fr_FR"}, false, fr},
		{"v19-json2-english-off-the-companys-language", odootest.Options{Version: 19}, "json2", nil, true, "Inkompatible Unternehmen bei Datensätzen:\n"},
		{"v17-jsonrpc-english-off-the-companys-language", odootest.Options{Version: 17}, "jsonrpc", nil, true, "Inkompatible Unternehmen bei Datensätzen:\n"},
		{"v19-json2-english-off-context-en-us-english", odootest.Options{Version: 19}, "json2", map[string]any{"lang": "en_US"}, true, en},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := newEnvWith(t, c.opts)
			e.s.SetUserLang(2, "fr_FR")
			if c.english {
				e.s.SetCompanyLang(1, "de_DE")
				e.s.DeactivateEnglish()
			}
			if got := refused(t, e, c.proto, c.ctx); !strings.HasPrefix(got, c.want) {
				t.Errorf("message %q, want it to begin %q", got, c.want)
			}
		})
	}
	t.Run("context-get-says-the-users-language", func(t *testing.T) {
		e := newEnv(t, 17)
		e.s.SetUserLang(2, "de_DE")
		got := e.ok(e.exec("res.users", "context_get", nil, nil)).(map[string]any)
		if got["lang"] != "de_DE" {
			t.Errorf("context_get %v", got)
		}
	})
	// res_users.py _assert_can_auth: the lockout's _() runs before the
	// call's context is read; a wrong key's AccessDenied() is never
	// translated.
	t.Run("login-cooldown-in-the-users-language-over-many-databases", func(t *testing.T) {
		for _, v := range []int{17, 18} {
			e := newEnvWith(t, odootest.Options{Version: v, ManyDatabases: true})
			e.s.SetUserLang(2, "fr_FR")
			e.s.SetLoginCooldown(1, time.Hour)
			r := e.rpc("object", "execute_kw", "odoo", 2, strings.Repeat("0", 40), "mrp.workorder", "read", []any{[]any{e.wo}}, map[string]any{})
			if r.ErrName != "odoo.exceptions.AccessDenied" || r.ErrMsg != "Access Denied" {
				t.Errorf("v%d wrong key: %s %q", v, r.ErrName, r.ErrMsg)
			}
			r = e.exec("mrp.workorder", "read", []any{[]any{e.wo}}, map[string]any{"context": map[string]any{"lang": "en_US"}})
			want := map[int]string{17: "Too many login failures", 18: "Trop d'échecs de connexion"}[v]
			if r.ErrName != "odoo.exceptions.AccessDenied" || !strings.HasPrefix(r.ErrMsg, want) {
				t.Errorf("v%d locked out: %s %q, want %q…", v, r.ErrName, r.ErrMsg, want)
			}
		}
	})
}
