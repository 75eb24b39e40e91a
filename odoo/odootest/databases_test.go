package odootest_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/plantedge/plantedge/odoo/odootest"
)

// TestDatabaseChoiceFacts pins how Odoo 19 picks a JSON-2 request's
// database (odoo/http.py Request._get_session_and_dbname, _open_registry,
// Application.__call__'s RegistryError fallback to _serve_nodb) and what it
// answers when it has none: 404 with the HTML page NOT_FOUND_NODB — not
// JSON, not a redirect — for a database that does not exist, one the
// dbfilter excludes, and no header on a server of several databases. A
// key of another database is a key this one does not know: 401.
func TestDatabaseChoiceFacts(t *testing.T) {
	const page = "No database is selected and the requested URL was not found in the server-wide controllers."
	cases := []struct {
		name   string
		opts   odootest.Options
		header string // X-Odoo-Database; "" sends none
		status int
	}{
		{"named-database-served", odootest.Options{Version: 19}, "odoo", 200},
		{"one-database-no-header-served", odootest.Options{Version: 19}, "", 200},
		{"database-that-does-not-exist", odootest.Options{Version: 19}, "odoo_prod", 404},
		{"database-that-does-not-exist-of-many", odootest.Options{Version: 19, ManyDatabases: true}, "odoo_prod", 404},
		{"many-databases-no-header", odootest.Options{Version: 19, ManyDatabases: true}, "", 404},
		{"many-databases-dbfilter-keeps-one-no-header", odootest.Options{Version: 19, ManyDatabases: true, DBFilter: "odoo$"}, "", 200},
		{"many-databases-dbfilter-keeps-one-named", odootest.Options{Version: 19, ManyDatabases: true, DBFilter: "odoo$"}, "odoo", 200},
		{"dbfilter-excludes-the-named-database", odootest.Options{Version: 19, DBFilter: "erp_.*"}, "odoo", 404},
		{"dbfilter-excludes-every-database-no-header", odootest.Options{Version: 19, DBFilter: "erp_.*"}, "", 404},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnvWith(t, tc.opts)
			hdr := map[string]string{"Authorization": "bearer " + e.s.AdminKey()}
			if tc.header != "" {
				hdr["X-Odoo-Database"] = tc.header
			}
			status, h, b := e.post("/json/2/res.users/context_get", []byte(`{}`), hdr)
			if status != tc.status {
				t.Fatalf("status %d, want %d: %s", status, tc.status, b)
			}
			if status != 404 {
				return
			}
			if ct := h.Get("Content-Type"); !strings.HasPrefix(ct, "text/html") || !strings.Contains(string(b), page) ||
				!strings.Contains(string(b), "X-Odoo-Database") {
				t.Errorf("Content-Type %q body %q: want Odoo's NOT_FOUND_NODB page", ct, b)
			}
		})
	}
	t.Run("key-of-another-database", func(t *testing.T) {
		// API keys live in each database's res_users_apikeys: the key of
		// a user of another database is unknown here.
		other := odootest.New(odootest.Options{Version: 19, Database: "odoo_staging"})
		e := newEnv(t, 19)
		status, h, b := e.post("/json/2/res.users/context_get", []byte(`{}`),
			map[string]string{"Authorization": "bearer " + other.AdminKey(), "X-Odoo-Database": "odoo"})
		if status != http.StatusUnauthorized || h.Get("WWW-Authenticate") == "" || !strings.Contains(string(b), "Invalid apikey") {
			t.Errorf("%d %v %s, want 401 Invalid apikey", status, h, b)
		}
	})
	t.Run("jsonrpc-database-that-does-not-exist", func(t *testing.T) {
		// service/common.py exp_authenticate: odoo.registry(db) connects
		// to it; psycopg2's error, HTTP 200; object calls alike.
		for _, v := range []int{17, 18, 19} {
			e := newEnv(t, v)
			r := e.rpc("common", "authenticate", "odoo_prod", "admin", e.s.AdminKey(), map[string]any{})
			if r.ErrName != "psycopg2.OperationalError" || !strings.Contains(r.ErrMsg, `database "odoo_prod" does not exist`) {
				t.Errorf("v%d authenticate: %s %q", v, r.ErrName, r.ErrMsg)
			}
			r = e.rpc("object", "execute_kw", "odoo_prod", 2, e.s.AdminKey(), "res.users", "context_get", []any{}, map[string]any{})
			if r.ErrName != "psycopg2.OperationalError" || !strings.Contains(r.ErrMsg, `database "odoo_prod" does not exist`) {
				t.Errorf("v%d execute_kw: %s %q", v, r.ErrName, r.ErrMsg)
			}
		}
	})
}

// TestPostgresDownFacts pins what Odoo answers while its PostgreSQL is
// unreachable (down, restarting, out of connections). Odoo 19 over JSON-2
// (odoo/http.py): the request names a database, _open_registry's cursor
// fails with psycopg2's OperationalError, raised as RegistryError,
// Application.__call__ serves the request without a database, where no
// /json/2 route exists: 404 with the page NOT_FOUND_NODB, the key never
// looked at — the same answer as for a database that does not exist.
// /web/version is auth='none' and served without one. JSON-RPC (17, 18,
// and /jsonrpc on 19, auth='none', served either way): common.authenticate
// and execute_kw open the registry's cursor and fail with
// psycopg2.OperationalError in a JSON-RPC error, HTTP 200; common.version
// needs no database. FaultDatabaseDown, one call meeting PostgreSQL away,
// answers alike.
func TestPostgresDownFacts(t *testing.T) {
	const page = "No database is selected and the requested URL was not found in the server-wide controllers."
	isPage := func(status int, h http.Header, b []byte) bool {
		return status == http.StatusNotFound && strings.HasPrefix(h.Get("Content-Type"), "text/html") && strings.Contains(string(b), page)
	}
	t.Run("json2", func(t *testing.T) {
		e := newEnv(t, 19)
		key := map[string]string{"Authorization": "bearer " + e.s.AdminKey(), "X-Odoo-Database": "odoo"}
		e.s.SetPostgresDown(true)
		if status, h, b := e.post("/json/2/res.users/context_get", []byte(`{}`), key); !isPage(status, h, b) {
			t.Errorf("PostgreSQL down: %d %q %s, want 404 and Odoo's NOT_FOUND_NODB page", status, h.Get("Content-Type"), b)
		}
		bad := map[string]string{"Authorization": "bearer nope", "X-Odoo-Database": "odoo"}
		if status, h, b := e.post("/json/2/res.users/context_get", []byte(`{}`), bad); !isPage(status, h, b) {
			t.Errorf("PostgreSQL down, a wrong key: %d %s, want the 404 page (the key is never looked at)", status, b)
		}
		resp, err := http.Get(e.url + "/web/version")
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("PostgreSQL down: /web/version %d, want 200 (auth='none', served without a database)", resp.StatusCode)
		}
		e.s.SetPostgresDown(false)
		if status, _, b := e.post("/json/2/res.users/context_get", []byte(`{}`), key); status != http.StatusOK {
			t.Errorf("PostgreSQL back: %d %s, want 200", status, b)
		}
		e.s.FailNext(1, odootest.FaultDatabaseDown)
		if status, h, b := e.post("/json/2/res.users/context_get", []byte(`{}`), key); !isPage(status, h, b) {
			t.Errorf("FaultDatabaseDown: %d %q %s, want 404 and Odoo's NOT_FOUND_NODB page", status, h.Get("Content-Type"), b)
		}
		if status, _, b := e.post("/json/2/res.users/context_get", []byte(`{}`), key); status != http.StatusOK {
			t.Errorf("after the fault: %d %s, want 200", status, b)
		}
	})
	for _, v := range []int{17, 18, 19} {
		t.Run(fmt.Sprintf("jsonrpc-%d", v), func(t *testing.T) {
			e := newEnv(t, v)
			e.s.SetPostgresDown(true)
			refused := func(what string, r rpcEnv) {
				t.Helper()
				if r.ErrName != "psycopg2.OperationalError" || !strings.Contains(r.ErrMsg, "Connection refused") {
					t.Errorf("%s: %s %q, want psycopg2.OperationalError, connection refused", what, r.ErrName, r.ErrMsg)
				}
			}
			refused("authenticate", e.rpc("common", "authenticate", "odoo", "admin", e.s.AdminKey(), map[string]any{}))
			refused("authenticate, a database that does not exist", e.rpc("common", "authenticate", "odoo_prod", "admin", e.s.AdminKey(), map[string]any{}))
			refused("execute_kw", e.rpc("object", "execute_kw", "odoo", 2, e.s.AdminKey(), "res.users", "context_get", []any{}, map[string]any{}))
			if r := e.rpc("common", "version"); r.ErrName != "" {
				t.Errorf("version: %s %q, want it served", r.ErrName, r.ErrMsg)
			}
			e.s.SetPostgresDown(false)
			if r := e.rpc("object", "execute_kw", "odoo", 2, e.s.AdminKey(), "res.users", "context_get", []any{}, map[string]any{}); r.ErrName != "" {
				t.Errorf("PostgreSQL back: %s %q", r.ErrName, r.ErrMsg)
			}
			e.s.FailNext(1, odootest.FaultDatabaseDown)
			refused("FaultDatabaseDown", e.rpc("object", "execute_kw", "odoo", 2, e.s.AdminKey(), "res.users", "context_get", []any{}, map[string]any{}))
		})
	}
}

// TestNoDatabaseQuestionsFacts pins what Odoo answers, without a database
// and without a user, the questions a client may ask when JSON-2 answers
// 404 without one, and the 404 of a 19-series build without the
// NOT_FOUND_NODB page:
//   - GET /web/health?db_server_status=1 (web/controllers/home.py
//     Home.health, auth='none'): 200 {"status":"pass","db_server_status":true},
//     or 500 {"status":"fail","db_server_status":false} when Odoo cannot
//     connect to PostgreSQL (sql_db.db_connect('postgres')).
//   - JSON-RPC db.db_exist (service/db.py exp_db_exist, no master
//     password): whether a connection to that database can be made — the
//     dbfilter plays no part; false for any name while PostgreSQL is down.
//   - POST /web/database/list (web/controllers/database.py, auth='none',
//     JSON-RPC): http.py db_list(), the databases the dbfilter keeps;
//     AccessDenied (JSON-RPC error, HTTP 200) with list_db off; [] while
//     PostgreSQL is down (db_list catches OperationalError).
//   - A build whose http.py _serve_nodb has no NOT_FOUND_NODB answers the
//     JSON-2 request werkzeug's own 404 page (HttpDispatcher.handle_error
//     returns the NotFound as is).
func TestNoDatabaseQuestionsFacts(t *testing.T) {
	health := func(t *testing.T, e *env) (int, string, map[string]any) {
		t.Helper()
		resp, err := http.Get(e.url + "/web/health?db_server_status=1")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var m map[string]any
		if err := json.NewDecoder(resp.Body).Decode(&m); err != nil {
			t.Fatalf("/web/health: %v", err)
		}
		return resp.StatusCode, resp.Header.Get("Content-Type"), m
	}
	list := func(t *testing.T, e *env) rpcEnv {
		t.Helper()
		status, _, b := e.post("/web/database/list", []byte(`{"jsonrpc":"2.0","method":"call","id":3,"params":{}}`), nil)
		if status != http.StatusOK {
			t.Fatalf("/web/database/list: %d %s", status, b)
		}
		var out rpcEnv
		if err := json.Unmarshal(b, &out.raw); err != nil {
			t.Fatalf("decode %s: %v", b, err)
		}
		if r, ok := out.raw["result"]; ok {
			out.HasResult = true
			_ = json.Unmarshal(r, &out.Result)
		}
		if r, ok := out.raw["error"]; ok {
			var er struct {
				Data struct{ Name, Message string } `json:"data"`
			}
			_ = json.Unmarshal(r, &er)
			out.ErrName, out.ErrMsg = er.Data.Name, er.Data.Message
		}
		return out
	}
	for _, v := range []int{17, 18, 19} {
		t.Run(fmt.Sprintf("health-%d", v), func(t *testing.T) {
			e := newEnv(t, v)
			if status, ct, m := health(t, e); status != 200 || !strings.HasPrefix(ct, "application/json") || m["status"] != "pass" || m["db_server_status"] != true {
				t.Errorf("PostgreSQL up: %d %q %v", status, ct, m)
			}
			e.s.SetPostgresDown(true)
			if status, _, m := health(t, e); status != 500 || m["status"] != "fail" || m["db_server_status"] != false {
				t.Errorf("PostgreSQL down: %d %v", status, m)
			}
		})
	}
	t.Run("db_exist", func(t *testing.T) {
		e := newEnvWith(t, odootest.Options{Version: 19, DBFilter: "erp_.*"})
		for db, want := range map[string]bool{"odoo": true, "odoo_prod": false} {
			if r := e.rpc("db", "db_exist", db); r.ErrName != "" || r.Result != want {
				t.Errorf("db_exist(%q) = %v %s %q, want %v (the dbfilter plays no part)", db, r.Result, r.ErrName, r.ErrMsg, want)
			}
		}
		e.s.SetPostgresDown(true)
		if r := e.rpc("db", "db_exist", "odoo"); r.ErrName != "" || r.Result != false {
			t.Errorf("PostgreSQL down: db_exist = %v %s, want false", r.Result, r.ErrName)
		}
	})
	t.Run("database-list", func(t *testing.T) {
		e := newEnvWith(t, odootest.Options{Version: 19, ManyDatabases: true, DBFilter: "odoo$"})
		if r := list(t, e); r.ErrName != "" || fmt.Sprint(r.Result) != "[odoo]" {
			t.Errorf("list: %v %s, want [odoo] (the dbfilter's)", r.Result, r.ErrName)
		}
		e.s.SetPostgresDown(true)
		if r := list(t, e); r.ErrName != "" || !r.HasResult || fmt.Sprint(r.Result) != "[]" {
			t.Errorf("PostgreSQL down: %v %s, want []", r.Result, r.ErrName)
		}
		off := newEnvWith(t, odootest.Options{Version: 19, NoListDB: true})
		if r := list(t, off); r.ErrName != "odoo.exceptions.AccessDenied" || r.HasResult {
			t.Errorf("list_db off: %v %s %q, want AccessDenied", r.Result, r.ErrName, r.ErrMsg)
		}
	})
	t.Run("build-without-the-page", func(t *testing.T) {
		e := newEnvWith(t, odootest.Options{Version: 19, NoNotFoundNoDB: true})
		status, h, b := e.post("/json/2/res.users/context_get", []byte(`{}`),
			map[string]string{"Authorization": "bearer " + e.s.AdminKey(), "X-Odoo-Database": "odoo_prod"})
		if status != 404 || !strings.HasPrefix(h.Get("Content-Type"), "text/html") || !strings.Contains(string(b), "<title>404 Not Found</title>") ||
			strings.Contains(string(b), "No database is selected") {
			t.Errorf("%d %q %s, want werkzeug's 404 page", status, h.Get("Content-Type"), b)
		}
	})
}
