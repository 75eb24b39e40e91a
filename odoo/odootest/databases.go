package odootest

import (
	"encoding/json"
	"io"
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

// werkzeugNotFoundPage is werkzeug's own 404 (NotFound.get_response,
// werkzeug 2.1 and later), which Odoo sends for a path it has no route for
// where it does not put a page of its own.
const werkzeugNotFoundPage = `<!doctype html>
<html lang=en>
<title>404 Not Found</title>
<h1>Not Found</h1>
<p>The requested URL was not found on the server. If you entered the URL manually please check your spelling and try again.</p>
`

// notFoundNoDB answers as _serve_nodb does a path it has no route for: the
// page NOT_FOUND_NODB, or in a 19-series build without it
// (Options.NoNotFoundNoDB: its _serve_nodb lets router.match's NotFound
// go to the request's dispatcher, HttpDispatcher "until we match", whose
// handle_error returns it as is) werkzeug's own 404 page.
func (s *Server) notFoundNoDB(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(http.StatusNotFound)
	if s.opts.NoNotFoundNoDB {
		_, _ = w.Write([]byte(werkzeugNotFoundPage))
		return
	}
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

// What Odoo answers without a database and without a user: the routes
// below are auth='none' (served by _serve_nodb too) and the JSON-RPC db
// service's methods that take no master password. A client can ask them
// what a JSON-2 404 without a database means.

// serveHealth is web/controllers/home.py Home.health (17.x and later; in
// a health.py of its own after 19): {"status": "pass"}; with the
// db_server_status parameter (any non-empty value: `if db_server_status:`)
// it connects to PostgreSQL's "postgres" database
// (sql_db.db_connect('postgres').cursor()) and says whether it could, 500
// {"status": "fail", "db_server_status": false} when it could not.
func (s *Server) serveHealth(w http.ResponseWriter, r *http.Request) {
	info := map[string]any{"status": "pass"}
	status := http.StatusOK
	if r.URL.Query().Get("db_server_status") != "" {
		up := !s.pgDown.Load()
		info["db_server_status"] = up
		if !up {
			info["status"] = "fail"
			status = http.StatusInternalServerError
		}
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, status, info)
}

// dbExist is the JSON-RPC db service's db_exist (service/db.py
// exp_db_exist, no master password): whether a connection to the database
// can be made — false for a name PostgreSQL does not have and for any name
// while PostgreSQL is unreachable. The dbfilter plays no part.
func (s *Server) dbExist(db string) bool {
	if s.pgDown.Load() {
		return false
	}
	for _, d := range s.databases() {
		if d == db {
			return true
		}
	}
	return false
}

// dbList is http.py db_list() as /web/database/list answers it
// (web/controllers/database.py, auth='none', a JSON-RPC route): the
// databases (service/db.py list_dbs) the dbfilter keeps; refused with
// AccessDenied when list_db is off (Options.NoListDB), the setting of
// hosted Odoo; [] while PostgreSQL is unreachable (db_list catches
// psycopg2's OperationalError).
func (s *Server) dbList() ([]string, *odooError) {
	if s.opts.NoListDB {
		return nil, &odooError{excDenied, "Access Denied"}
	}
	kept := []string{}
	if s.pgDown.Load() {
		return kept, nil
	}
	for _, db := range s.databases() {
		if s.dbFilterKeeps(db) {
			kept = append(kept, db)
		}
	}
	return kept, nil
}

// serveDatabaseList answers POST /web/database/list, a JSON-RPC route
// (type='json', 'jsonrpc' in 19): its result, or its AccessDenied in a
// JSON-RPC error with HTTP 200.
func (s *Server) serveDatabaseList(w http.ResponseWriter, r *http.Request) {
	var req struct {
		ID any `json:"id"`
	}
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&req); err != nil {
		http.Error(w, "Invalid JSON data", http.StatusBadRequest)
		return
	}
	list, oerr := s.dbList()
	if oerr != nil {
		writeJSON(w, http.StatusOK, map[string]any{"jsonrpc": "2.0", "id": req.ID, "error": s.rpcError(oerr)})
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"jsonrpc": "2.0", "id": req.ID, "result": list})
}
