package odoo_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/plantedge/plantedge/odoo"
	"github.com/plantedge/plantedge/odoo/odootest"
)

// A database Odoo does not serve by the configured name — misspelt,
// excluded by the dbfilter, or none named to a server of several — is
// Odoo's answer, not a proxy's page nor a missing record: NoDatabase,
// retried (the records wait in the buffer), and the error names
// odoo.database and quotes Odoo. Odoo 19 JSON-2 answers it 404 with its
// HTML page NOT_FOUND_NODB (http.py _serve_nodb); JSON-RPC with
// psycopg2's OperationalError "database … does not exist".
func TestNoSuchDatabaseIsSaid(t *testing.T) {
	cases := []struct {
		name     string
		opts     odootest.Options
		protocol string
		database string
		words    []string
	}{
		{"json2-misspelt", odootest.Options{Version: 19}, "auto", "odoo_prod",
			[]string{`odoo.database "odoo_prod"`, "No database is selected"}},
		{"json2-excluded-by-dbfilter", odootest.Options{Version: 19, DBFilter: "erp_.*"}, "json2", "odoo",
			[]string{`odoo.database "odoo"`, "dbfilter", "No database is selected"}},
		{"json2-none-named-many-databases", odootest.Options{Version: 19, ManyDatabases: true}, "json2", "",
			[]string{"odoo.database is empty", "No database is selected"}},
		{"jsonrpc-17-misspelt", odootest.Options{Version: 17}, "auto", "odoo_prod",
			[]string{`odoo.database "odoo_prod"`, `database "odoo_prod" does not exist`}},
		{"jsonrpc-18-misspelt", odootest.Options{Version: 18}, "auto", "odoo_prod",
			[]string{`odoo.database "odoo_prod"`, `database "odoo_prod" does not exist`}},
		{"jsonrpc-19-misspelt", odootest.Options{Version: 19}, "jsonrpc", "odoo_prod",
			[]string{`odoo.database "odoo_prod"`, `database "odoo_prod" does not exist`}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, tc.opts)
			c := f.client(t, tc.protocol, func(c *odoo.Config) { c.Database = tc.database })
			err := c.Connect(context.Background())
			if err == nil {
				t.Fatal("Connect succeeded")
			}
			oe := asError(t, err)
			if !oe.NoDatabase() || !oe.Temporary() || oe.Permanent() || oe.Missing() || oe.Auth() || odoo.IsPermanent(err) {
				t.Errorf("NoDatabase %v Temporary %v Permanent %v Missing %v Auth %v: %v",
					oe.NoDatabase(), oe.Temporary(), oe.Permanent(), oe.Missing(), oe.Auth(), err)
			}
			for _, w := range tc.words {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
			if strings.Contains(err.Error(), "proxy") || strings.Contains(err.Error(), "<") {
				t.Errorf("error %q: says a proxy, or quotes markup", err)
			}
		})
	}
}

// The same page for a database that answered before is the database away
// (Odoo 19 serves JSON-2 without a database when it cannot open it:
// PostgreSQL restarting or out of connections gives the page too):
// Unavailable, not a name to fix.
func TestDatabaseThatServedBeforeIsAway(t *testing.T) {
	var away atomic.Bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		switch {
		case r.URL.Path == "/web/version":
			w.Header().Set("Content-Type", "application/json")
			_, _ = io.WriteString(w, `{"version_info":[19,0,0,"final",0,""],"version":"19.0"}`)
		case away.Load():
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			w.WriteHeader(http.StatusNotFound)
			_, _ = io.WriteString(w, "<!DOCTYPE html>\n<title>404 Not Found</title>\n<h1>Not Found</h1>\n"+
				"<p>No database is selected and the requested URL was not found in the server-wide controllers.</p>\n"+
				"<p>Please verify the hostname, <a href=/web/login>login</a> and try again.</p>\n\n"+
				"<!-- Alternatively, use the X-Odoo-Database header. -->\n")
		default:
			w.Header().Set("Content-Type", "application/json")
			_, _ = io.WriteString(w, `{"uid":2,"lang":"en_US","tz":false}`)
		}
	}))
	defer srv.Close()
	err := callAfter(t, srv.URL, &away)
	oe := asError(t, err)
	if oe.NoDatabase() || !oe.Unavailable() || !oe.Temporary() || !strings.Contains(err.Error(), `database "odoo"`) ||
		strings.Contains(err.Error(), "does not exist") {
		t.Errorf("NoDatabase %v Unavailable %v Temporary %v: %v", oe.NoDatabase(), oe.Unavailable(), oe.Temporary(), err)
	}
}

// After JSON-2's 404 without a database, the client asks Odoo what it
// means — /web/version (a build without the NOT_FOUND_NODB page answers
// werkzeug's own 404), /web/health?db_server_status=1, db.db_exist,
// /web/database/list, all without a user — and says the cause Odoo's
// answers point to: PostgreSQL not reachable (an outage: Unavailable,
// PostgresDown, not NoDatabase), no database by that name, or one the
// dbfilter excludes. Never a proxy, never "or its PostgreSQL" once Odoo
// said it answers.
func TestNoDatabaseDiagnosed(t *testing.T) {
	type want struct {
		noDB, pgDown bool
		words        []string
	}
	cases := []struct {
		name     string
		opts     odootest.Options
		database string
		pgDown   bool
		want     want
	}{
		{"misspelt", odootest.Options{}, "odoo_prod", false,
			want{noDB: true, words: []string{`odoo.database "odoo_prod"`, "Odoo's PostgreSQL has no database by that name"}}},
		{"excluded-by-dbfilter", odootest.Options{DBFilter: "erp_.*"}, "odoo", false,
			want{noDB: true, words: []string{`odoo.database "odoo"`, "the server's dbfilter (or its db_name) excludes it"}}},
		{"excluded-by-dbfilter-list_db-off", odootest.Options{DBFilter: "erp_.*", NoListDB: true}, "odoo", false,
			want{noDB: true, words: []string{`odoo.database "odoo"`, "excludes it, or Odoo cannot open it"}}},
		{"postgres-down-at-first-start", odootest.Options{}, "odoo", true,
			want{pgDown: true, words: []string{`database "odoo"`, "its PostgreSQL is not reachable"}}},
		{"postgres-down-misspelt", odootest.Options{}, "odoo_prod", true,
			want{pgDown: true, words: []string{`database "odoo_prod"`, "its PostgreSQL is not reachable"}}},
	}
	for _, build := range []struct {
		name   string
		noPage bool
		said   string
	}{{"page", false, "No database is selected"}, {"werkzeug-404", true, "Odoo 19.0 answered 404: 404 Not Found"}} {
		for _, tc := range cases {
			t.Run(build.name+"/"+tc.name, func(t *testing.T) {
				opts := tc.opts
				opts.Version, opts.NoNotFoundNoDB = 19, build.noPage
				f := newFixture(t, opts)
				f.srv.SetPostgresDown(tc.pgDown)
				c := f.client(t, "auto", func(c *odoo.Config) { c.Database = tc.database })
				err := c.Connect(context.Background())
				if err == nil {
					t.Fatal("Connect succeeded")
				}
				oe := asError(t, err)
				if oe.NoDatabase() != tc.want.noDB || oe.PostgresDown() != tc.want.pgDown || oe.Unavailable() != tc.want.pgDown ||
					oe.MaybePostgresDown() || !oe.Temporary() || odoo.IsPermanent(err) {
					t.Errorf("NoDatabase %v PostgresDown %v Unavailable %v MaybePostgresDown %v Temporary %v: %v",
						oe.NoDatabase(), oe.PostgresDown(), oe.Unavailable(), oe.MaybePostgresDown(), oe.Temporary(), err)
				}
				for _, w := range append(tc.want.words, build.said) {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q does not say %q", err, w)
					}
				}
				for _, bad := range []string{"proxy", "wrong path", "<"} {
					if strings.Contains(err.Error(), bad) {
						t.Errorf("error %q says %q", err, bad)
					}
				}
				if !tc.want.pgDown && strings.Contains(err.Error(), "PostgreSQL not reachable") {
					t.Errorf("error %q names PostgreSQL, which Odoo said answers", err)
				}
			})
		}
	}
}

// A werkzeug 404 page where no Odoo 19 answers /web/version is still a
// proxy's page or a wrong path; and an Odoo 19 page whose /web/health does
// not say (a build before db_server_status, a proxy that does not pass it)
// names every cause, PostgreSQL with them (MaybePostgresDown).
func TestNoDatabaseUndiagnosed(t *testing.T) {
	const werkzeug404 = "<!doctype html>\n<html lang=en>\n<title>404 Not Found</title>\n<h1>Not Found</h1>\n" +
		"<p>The requested URL was not found on the server. If you entered the URL manually please check your spelling and try again.</p>\n"
	page := func(w http.ResponseWriter, body string) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.WriteHeader(http.StatusNotFound)
		_, _ = io.WriteString(w, body)
	}
	t.Run("no-odoo-behind-the-page", func(t *testing.T) {
		// Odoo 19 answered; then a proxy in front of it routes elsewhere
		// (a maintenance), where nothing answers as Odoo.
		var gone atomic.Bool
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.Copy(io.Discard, r.Body)
			switch {
			case gone.Load():
				page(w, werkzeug404)
			case r.URL.Path == "/web/version":
				w.Header().Set("Content-Type", "application/json")
				_, _ = io.WriteString(w, `{"version_info":[19,0,0,"final",0,""],"version":"19.0"}`)
			default:
				w.Header().Set("Content-Type", "application/json")
				_, _ = io.WriteString(w, `{"uid":2,"lang":"en_US","tz":false}`)
			}
		}))
		defer srv.Close()
		err := callAfter(t, srv.URL, &gone)
		oe := asError(t, err)
		if oe.NoDatabase() || oe.Unavailable() || !oe.Temporary() || !strings.Contains(err.Error(), "a proxy in front of Odoo, or a wrong path in odoo.url?") {
			t.Errorf("NoDatabase %v Unavailable %v Temporary %v: %v", oe.NoDatabase(), oe.Unavailable(), oe.Temporary(), err)
		}
	})
	t.Run("health-does-not-say", func(t *testing.T) {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.Copy(io.Discard, r.Body)
			switch r.URL.Path {
			case "/web/version":
				w.Header().Set("Content-Type", "application/json")
				_, _ = io.WriteString(w, `{"version_info":[19,0,0,"final",0,""],"version":"19.0"}`)
			case "/web/health":
				w.Header().Set("Content-Type", "application/json")
				_, _ = io.WriteString(w, `{"status":"pass"}`)
			default:
				page(w, werkzeug404)
			}
		}))
		defer srv.Close()
		c, err := odoo.New(odoo.Config{URL: srv.URL, Database: "odoo", APIKey: strings.Repeat("a", 40), Timeout: 2 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		err = c.Connect(context.Background())
		oe := asError(t, err)
		if !oe.NoDatabase() || !oe.MaybePostgresDown() || oe.PostgresDown() || !strings.Contains(err.Error(), "or its PostgreSQL not reachable") ||
			strings.Contains(err.Error(), "proxy") {
			t.Errorf("NoDatabase %v MaybePostgresDown %v PostgresDown %v: %v", oe.NoDatabase(), oe.MaybePostgresDown(), oe.PostgresDown(), err)
		}
	})
}

// A database that answered before and now gets the 404 page, while Odoo
// says its PostgreSQL answers and has no such database (db.db_exist
// false): dropped or renamed — a name to fix (NoDatabase), not an outage;
// while it still exists (being restored, upgraded) it stays the outage
// kind (Unavailable).
func TestDatabaseGoneAfterServing(t *testing.T) {
	for _, exists := range []bool{false, true} {
		t.Run(fmt.Sprint("exists-", exists), func(t *testing.T) {
			var away atomic.Bool
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				_, _ = io.Copy(io.Discard, r.Body)
				w.Header().Set("Content-Type", "application/json")
				switch {
				case r.URL.Path == "/web/version":
					_, _ = io.WriteString(w, `{"version_info":[19,0,0,"final",0,""],"version":"19.0"}`)
				case r.URL.Path == "/web/health":
					_, _ = io.WriteString(w, `{"status":"pass","db_server_status":true}`)
				case r.URL.Path == "/jsonrpc":
					_, _ = fmt.Fprintf(w, `{"jsonrpc":"2.0","id":1,"result":%t}`, exists)
				case away.Load():
					w.Header().Set("Content-Type", "text/html; charset=utf-8")
					w.WriteHeader(http.StatusNotFound)
					_, _ = io.WriteString(w, "<!DOCTYPE html>\n<title>404 Not Found</title>\n<h1>Not Found</h1>\n"+
						"<p>No database is selected and the requested URL was not found in the server-wide controllers.</p>\n")
				default:
					_, _ = io.WriteString(w, `{"uid":2,"lang":"en_US","tz":false}`)
				}
			}))
			defer srv.Close()
			err := callAfter(t, srv.URL, &away)
			oe := asError(t, err)
			switch {
			case !exists && (!oe.NoDatabase() || oe.Unavailable() || !strings.Contains(err.Error(), "no longer on its PostgreSQL")):
				t.Errorf("dropped: NoDatabase %v Unavailable %v: %v", oe.NoDatabase(), oe.Unavailable(), err)
			case exists && (oe.NoDatabase() || !oe.Unavailable() || !strings.Contains(err.Error(), "which it served before")):
				t.Errorf("still there: NoDatabase %v Unavailable %v: %v", oe.NoDatabase(), oe.Unavailable(), err)
			}
		})
	}
}

// A proxy in front of Odoo 19 that answers JSON-2's paths with its own 404
// page (nginx's: a location left out, or /json/ blocked), Odoo answering
// the rest (/web/version among them): a proxy's page, as statusError says
// it, not Odoo's answer for a request without a database — only werkzeug's
// own page is that, in a 19-series build without NOT_FOUND_NODB. Read as
// Odoo's, the database was said to be one Odoo cannot open ("another Odoo
// version's database … Database or registry unusable"): the person sent
// to Odoo's database and log, not to the proxy.
func TestProxysOwn404IsNotADatabaseAnswer(t *testing.T) {
	const nginx404 = "<html>\r\n<head><title>404 Not Found</title></head>\r\n<body>\r\n<center><h1>404 Not Found</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
	f := newFixture(t, odootest.Options{Version: 19})
	odooURL, err := url.Parse(f.url)
	if err != nil {
		t.Fatal(err)
	}
	rp := httputil.NewSingleHostReverseProxy(odooURL)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/json/2/") {
			_, _ = io.Copy(io.Discard, r.Body)
			w.Header().Set("Content-Type", "text/html")
			w.WriteHeader(http.StatusNotFound)
			_, _ = io.WriteString(w, nginx404)
			return
		}
		rp.ServeHTTP(w, r)
	}))
	defer srv.Close()
	c, err := odoo.New(odoo.Config{URL: srv.URL, Database: "odoo", APIKey: f.srv.AdminKey(), Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	err = c.Connect(context.Background())
	oe := asError(t, err)
	if oe.NoDatabase() || oe.Unavailable() || !oe.Temporary() || !strings.Contains(err.Error(), "a proxy in front of Odoo, or a wrong path in odoo.url?") ||
		strings.Contains(err.Error(), "database") {
		t.Errorf("NoDatabase %v Unavailable %v Temporary %v: %v", oe.NoDatabase(), oe.Unavailable(), oe.Temporary(), err)
	}
}

// callAfter connects a client to the fake Odoo at url, sets flip (the
// database goes) and returns what the next call meets.
func callAfter(t *testing.T, url string, flip *atomic.Bool) error {
	t.Helper()
	c, err := odoo.New(odoo.Config{URL: url, Database: "odoo", APIKey: strings.Repeat("a", 40), Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	ctx := context.Background()
	if err := c.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	flip.Store(true)
	return c.Call(ctx, "res.users", "context_get", nil, nil, nil)
}

// dbAnswerTransport serves requests with the emulator's handler, but
// answers the JSON-RPC db service and /web/database/list with what answer
// makes of the request (its id).
type dbAnswerTransport struct {
	h      http.Handler
	answer func(path string, id json.RawMessage) (string, bool)
}

func (t *dbAnswerTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	body, err := readBody(req)
	if err != nil {
		return nil, err
	}
	var rpc struct {
		ID     json.RawMessage `json:"id"`
		Params struct {
			Service string `json:"service"`
		} `json:"params"`
	}
	_ = json.Unmarshal(body, &rpc)
	if req.URL.Path == "/web/database/list" || req.URL.Path == "/jsonrpc" && rpc.Params.Service == "db" {
		if ans, ok := t.answer(req.URL.Path, rpc.ID); ok {
			return answerWith(req, http.StatusOK, http.Header{"Content-Type": {"application/json"}}, []byte(ans)), nil
		}
	}
	return serveIn(t.h, req, body), nil
}

// The questions asked after JSON-2's 404 without a database (db.db_exist,
// /web/database/list) take only Odoo's answer to them: one to another
// request (another id: a proxy's cache, a gateway), or a null result, is
// not answered — the causes said together — never "Odoo's db_exist says
// false" nor "its dbfilter serves it". The database exists here, and the
// dbfilter excludes it.
func TestNoDatabaseDiagnosisTakesOnlyOdoosAnswers(t *testing.T) {
	cases := []struct {
		name   string
		answer func(path string, id json.RawMessage) (string, bool)
		bad    string
	}{
		{"db_exist-another-id", func(path string, _ json.RawMessage) (string, bool) {
			return `{"jsonrpc":"2.0","id":99999,"result":false}`, path == "/jsonrpc"
		}, "db_exist says false"},
		{"db_exist-null", func(path string, id json.RawMessage) (string, bool) {
			return `{"jsonrpc":"2.0","id":` + string(id) + `,"result":null}`, path == "/jsonrpc"
		}, "db_exist says false"},
		{"database-list-another-id", func(path string, _ json.RawMessage) (string, bool) {
			return `{"jsonrpc":"2.0","id":99999,"result":["odoo"]}`, path == "/web/database/list"
		}, "which its dbfilter serves"},
		{"database-list-null", func(path string, id json.RawMessage) (string, bool) {
			return `{"jsonrpc":"2.0","id":` + string(id) + `,"result":null}`, path == "/web/database/list"
		}, "the database exists on Odoo's PostgreSQL but the server's dbfilter (or its db_name) excludes it: name"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := odootest.New(odootest.Options{Version: 19, DBFilter: "erp_.*"})
			hc := &http.Client{Transport: &dbAnswerTransport{h: s.Handler(), answer: tc.answer}}
			c, err := odoo.New(odoo.Config{URL: "http://odoo.example:8069", Database: "odoo", Username: "admin", APIKey: s.AdminKey(),
				Protocol: "auto", Timeout: 5 * time.Second, HTTPClient: hc})
			if err != nil {
				t.Fatal(err)
			}
			err = c.Connect(context.Background())
			if err == nil {
				t.Fatal("Connect succeeded")
			}
			oe := asError(t, err)
			if !oe.NoDatabase() || !oe.Temporary() || strings.Contains(err.Error(), tc.bad) {
				t.Errorf("NoDatabase %v Temporary %v: %v; want NoDatabase, not saying %q", oe.NoDatabase(), oe.Temporary(), err, tc.bad)
			}
		})
	}
}
