package odoo_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
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
	c, err := odoo.New(odoo.Config{URL: srv.URL, Database: "odoo", APIKey: strings.Repeat("a", 40), Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	if err := c.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	away.Store(true)
	err = c.Call(ctx, "res.users", "context_get", nil, nil, nil)
	oe := asError(t, err)
	if oe.NoDatabase() || !oe.Unavailable() || !oe.Temporary() || !strings.Contains(err.Error(), `database "odoo"`) ||
		strings.Contains(err.Error(), "does not exist") {
		t.Errorf("NoDatabase %v Unavailable %v Temporary %v: %v", oe.NoDatabase(), oe.Unavailable(), oe.Temporary(), err)
	}
}
