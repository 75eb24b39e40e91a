package odootest

import (
	"net/http"
	"regexp"
)

// Databases. Odoo 19 picks a request's database in http.py
// Request._get_session_and_dbname (no session cookie: the agent sends
// none): the X-Odoo-Database header's, when the dbfilter (db_filter)
// keeps it; without the header, the only database db_list(force=True)
// keeps, if there is exactly one; else none. A database that does not
// exist passes that choice (db_filter matches names, it does not look
// them up): opening it (Request._open_registry) fails with psycopg2's
// OperationalError, which Application.__call__ catches as RegistryError
// ("Database or registry unusable, trying without", a warning in Odoo's
// log) and serves the request without a database (_serve_nodb), as it
// does with no database at all. Served without one, only auth='none'
// routes exist (nodb_routing_map): /json/2/<model>/<method> is
// auth='bearer', so the answer is a 404 whose body is the HTML page
// NOT_FOUND_NODB (not JSON: the JSON-2 dispatcher never ran). PostgreSQL
// unreachable gives the same page (the registry's cursor fails alike:
// SetPostgresDown, FaultDatabaseDown).
// JSON-RPC (/jsonrpc, auth='none') is served either way: the database is
// its arguments' (server.go common, handleObject).

// notFoundNoDBPage is http.py's NOT_FOUND_NODB (Odoo 19).
const notFoundNoDBPage = `<!DOCTYPE html>
<title>404 Not Found</title>
<h1>Not Found</h1>
<p>No database is selected and the requested URL was not found in the server-wide controllers.</p>
<p>Please verify the hostname, <a href=/web/login>login</a> and try again.</p>

<!-- Alternatively, use the X-Odoo-Database header. -->
`

// notFoundNoDB answers as _serve_nodb does a path it has no route for.
func notFoundNoDB(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(http.StatusNotFound)
	_, _ = w.Write([]byte(notFoundNoDBPage))
}

// databases are the server's databases: Options.Database, and with
// ManyDatabases another one (its name unused elsewhere).
func (s *Server) databases() []string {
	if s.opts.ManyDatabases {
		return []string{s.opts.Database, s.opts.Database + "_staging"}
	}
	return []string{s.opts.Database}
}

// dbFilterKeeps is http.py db_filter for one name: re.match of the
// dbfilter (anchored at the start only), everything without one.
func (s *Server) dbFilterKeeps(db string) bool {
	if s.opts.DBFilter == "" {
		return true
	}
	re, err := regexp.Compile(`^(?:` + s.opts.DBFilter + `)`)
	return err == nil && re.MatchString(db)
}

// monoDB is the database a request without X-Odoo-Database is served
// with: the only one the dbfilter keeps, "" when it keeps none or several.
func (s *Server) monoDB() string {
	var kept []string
	for _, db := range s.databases() {
		if s.dbFilterKeeps(db) {
			kept = append(kept, db)
		}
	}
	if len(kept) != 1 {
		return ""
	}
	return kept[0]
}

// servesDB reports whether a JSON-2 request with X-Odoo-Database header
// (empty: none) is served with the emulated database.
func (s *Server) servesDB(header string) bool {
	if header != "" {
		return s.dbFilterKeeps(header) && header == s.opts.Database
	}
	return s.monoDB() == s.opts.Database
}

// noSuchDatabase is what JSON-RPC answers a call naming a database the
// server does not have (service/common.py exp_authenticate's
// odoo.registry(db), service/model.py's security.check: Registry(db)
// connects to it): psycopg2's OperationalError, in libpq's words (14 and
// later, over TCP; over a Unix socket "connection to server on socket
// …"), with HTTP 200 as every JSON-RPC error. The dbfilter plays no part:
// /jsonrpc is auth='none' and takes the database from its arguments.
func noSuchDatabase(db string) *odooError {
	return &odooError{excOperational, `connection to server at "localhost" (127.0.0.1), port 5432 failed: FATAL:  database "` + db + `" does not exist` + "\n"}
}

// postgresRefused is psycopg2's OperationalError when PostgreSQL does not
// take connections (down, restarting; sql_db's pool connects anew), in
// libpq's words over TCP: what JSON-RPC answers any call that needs the
// database then, with HTTP 200.
func postgresRefused() *odooError {
	return &odooError{excOperational, "connection to server at \"localhost\" (127.0.0.1), port 5432 failed: Connection refused\n" +
		"\tIs the server running on that host and accepting TCP/IP connections?\n"}
}
