package odoo

import (
	"context"
	"encoding/json"
	"fmt"
	"html"
	"net/http"
	"slices"
	"strings"
)

// pageText says an HTML page (something in front of Odoo: nginx's 502, a
// CDN's timeout page, a maintenance page) by its title, or failing one by
// its text, with " (an HTML page)"; ok is false for anything else (JSON,
// plain text), which is said as it is. Status's last_error and drain line
// quoted the markup ("<html>\r\n<head><title>502 Bad Gateway…").
func pageText(body string) (text string, ok bool) {
	s := strings.TrimSpace(body)
	// Lowered byte for byte, so that an index in low is one in s:
	// strings.ToLower changes the length of invalid UTF-8 (a page in
	// Latin-1, each such byte becoming U+FFFD's three) and of some
	// letters ('İ'), and cutting s at low's indices panicked (the fuzz
	// target FuzzConnectAnswer: a proxy's page crashed the agent).
	low := asciiLower(s)
	if !strings.HasPrefix(low, "<!doctype html") && !strings.HasPrefix(low, "<html") {
		return "", false
	}
	if i := strings.Index(low, "<title"); i >= 0 {
		if j := strings.Index(low[i:], ">"); j >= 0 {
			rest := s[i+j+1:]
			if k := strings.Index(asciiLower(rest), "</title>"); k >= 0 {
				if t := words(rest[:k]); t != "" {
					return t + " (an HTML page)", true
				}
			}
		}
	}
	var b strings.Builder
	inTag := false
	for _, r := range s {
		switch {
		case r == '<':
			inTag = true
			b.WriteByte(' ')
		case r == '>':
			inTag = false
		case !inTag:
			b.WriteRune(r)
		}
	}
	if t := words(b.String()); t != "" {
		return t + " (an HTML page)", true
	}
	return "an HTML page", true
}

// asciiLower is s with its ASCII letters lowered, every byte in place.
func asciiLower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

// words is s's text, entities decoded, its white space one space each.
func words(s string) string {
	return strings.Join(strings.Fields(html.UnescapeString(s)), " ")
}

// bodyText is an answer's body that is not Odoo's JSON as an error says
// it: a page by its title (pageText), anything else trimmed.
func bodyText(body []byte) string {
	if t, ok := pageText(string(body)); ok {
		return t
	}
	return strings.TrimSpace(string(body))
}

// noDatabaseText is Odoo's page for a request it serves without a
// database (odoo/http.py NOT_FOUND_NODB, 19): its routes that need one,
// JSON-2's among them, are not found then.
const noDatabaseText = "No database is selected and the requested URL was not found in the server-wide controllers."

// noDatabasePage reports Odoo's NOT_FOUND_NODB page.
func noDatabasePage(body []byte) bool {
	return strings.Contains(string(body), "No database is selected")
}

// werkzeugNotFoundPage reports werkzeug's own 404 page (NotFound's
// description), which a 19-series build without NOT_FOUND_NODB answers a
// request it serves without a database with — not a proxy's 404 (nginx's,
// Apache's "on this server", a CDN's), whose Odoo behind may answer
// /web/version all the same.
func werkzeugNotFoundPage(body []byte) bool {
	return strings.Contains(string(body), "The requested URL was not found on the server.")
}

// noDatabase makes e, a 404 page for a JSON-2 call that Odoo 19 gave
// (said: how), say what it means for this configuration. http.py serves a
// request without a database when X-Odoo-Database names one the dbfilter
// excludes, or one it cannot open (Request._open_registry: absent, or
// PostgreSQL not reachable — RegistryError), and, without the header, when
// the dbfilter leaves it several databases (or none); served without one,
// JSON-2's routes (auth='bearer') are not found. Transient either way: the
// records wait in the buffer; a name that worked before is the database
// away. Which of the causes it is, only Odoo's answers to other questions
// can tell (diagnose).
func (c *Client) noDatabase(e *Error, said string) {
	e.Class = Transient
	e.said = said
	c.mu.RLock()
	worked := c.authOK
	c.mu.RUnlock()
	switch {
	case c.cfg.Database == "":
		e.db = dbMissing
		e.Message = "no database named (odoo.database is empty) and this Odoo serves several, none picked by its dbfilter: set odoo.database (sent as the X-Odoo-Database header) — " + said
	case worked:
		// It served this name before: its PostgreSQL away (restarting,
		// out of connections), the database renamed or dropped.
		e.db = dbAway
		e.Message = fmt.Sprintf("odoo cannot open the database %q now, which it served before (its PostgreSQL away? the database renamed or dropped?) — %s",
			c.cfg.Database, said)
	default:
		e.db = dbMissingOrPGDown
		e.Message = fmt.Sprintf("odoo.database %q: this Odoo serves no database by that name (misspelt? or excluded by the server's dbfilter; or its PostgreSQL not reachable) — %s",
			c.cfg.Database, said)
	}
}

// diagnose asks Odoo, after a JSON-2 call answered 404 with a page, what
// the page means: only then (not on every call), with requests that need
// no user and no database — what a bot user of the least rights, or no
// user, may ask:
//
//   - GET /web/version (auth='none'), when the page is werkzeug's own
//     404, not Odoo's NOT_FOUND_NODB: some 19-series builds have no such
//     page; Odoo 19 answering here makes the page its answer for a
//     request without a database, not a wrong path's. Another page (a
//     proxy's own 404: nginx's, Apache's) is not asked about.
//   - GET /web/health?db_server_status=1 (web/controllers/home.py,
//     auth='none'): whether Odoo can connect to its PostgreSQL — 500 and
//     "db_server_status": false when it cannot.
//   - JSON-RPC db.db_exist (service/db.py, no master password): with
//     PostgreSQL up, whether the database exists at all (the dbfilter
//     plays no part).
//   - POST /web/database/list (auth='none'): the databases the dbfilter
//     keeps, when list_db is on (hosted Odoo has it off: AccessDenied).
//
// What cannot be asked (a question refused, or not answered) leaves the
// causes named together, as noDatabase says them.
func (c *Client) diagnose(ctx context.Context, e *Error) {
	if !e.noDBPage {
		if !e.werkzeugPage {
			// A proxy's own page (a location left out, /json/ blocked):
			// as statusError says it, whatever answers /web/version.
			return
		}
		v, err := c.webVersion(ctx)
		if err != nil || parseMajor(v) < 19 {
			// Not Odoo 19 at odoo.url: a proxy's page or a wrong path (as
			// statusError says), or an Odoo without JSON-2 put back.
			return
		}
		// Its build has no page of its own for a request it serves
		// without a database: werkzeug's "404 Not Found".
		c.noDatabase(e, fmt.Sprintf("Odoo %s answered 404: %s", v, e.page))
	}
	db := c.cfg.Database
	if db == "" {
		return
	}
	worked := e.db == dbAway
	switch c.postgresUp(ctx) {
	case pgDown:
		e.db = dbPGDown
		before := ""
		if worked {
			before = " now, which it served before"
		}
		e.Message = fmt.Sprintf("odoo cannot open the database %q%s: its PostgreSQL is not reachable (Odoo's /web/health says db_server_status false): retried until it is back — %s",
			db, before, e.said)
		return
	case pgUnknown:
		return
	}
	exists, ok := c.dbExists(ctx, db)
	switch {
	case !ok && worked:
	case !ok:
		e.db = dbMissing
		e.Message = fmt.Sprintf("odoo.database %q: this Odoo serves no database by that name (misspelt? or excluded by the server's dbfilter; its PostgreSQL answers) — %s",
			db, e.said)
	case !exists:
		e.db = dbMissing
		if worked {
			e.Message = fmt.Sprintf("odoo.database %q: the database Odoo served before is no longer on its PostgreSQL (dropped, or renamed?; Odoo's db_exist says false, its PostgreSQL answers) — %s",
				db, e.said)
		} else {
			e.Message = fmt.Sprintf("odoo.database %q: Odoo's PostgreSQL has no database by that name (misspelt? renamed?; Odoo's db_exist says false, its PostgreSQL answers) — %s",
				db, e.said)
		}
	case worked:
		// It exists and answered before: being restored, upgraded, or
		// the dbfilter changed; an outage until a person says otherwise.
	default:
		listed, ok := c.dbListed(ctx, db)
		switch {
		case ok && listed:
			// The dbfilter keeps it and Odoo could not open it: not a
			// database of this Odoo (another version's, not initialised),
			// or one being restored or upgraded. Odoo's log says
			// "Database or registry unusable, trying without".
			e.db = dbAway
			e.Message = fmt.Sprintf("odoo cannot open the database %q, which exists and which its dbfilter serves (another Odoo version's database, not initialised, or being restored or upgraded? Odoo's log says \"Database or registry unusable\") — %s",
				db, e.said)
		case ok:
			e.db = dbMissing
			e.Message = fmt.Sprintf("odoo.database %q: the database exists on Odoo's PostgreSQL but the server's dbfilter (or its db_name) excludes it: name a database it serves, or have the dbfilter changed — %s",
				db, e.said)
		default:
			e.db = dbMissing
			e.Message = fmt.Sprintf("odoo.database %q: the database exists on Odoo's PostgreSQL but this Odoo does not serve it: the server's dbfilter (or its db_name) excludes it, or Odoo cannot open it (then Odoo's log says \"Database or registry unusable\") — %s",
				db, e.said)
		}
	}
}

// PostgreSQL as Odoo's /web/health says it.
const (
	pgUnknown = iota
	pgUp
	pgDown
)

// postgresUp asks Odoo whether it can connect to its PostgreSQL
// (/web/health?db_server_status=1: 200 true, 500 false); pgUnknown when
// the answer does not say (an Odoo 17.0 without the parameter, a proxy).
func (c *Client) postgresUp(ctx context.Context) int {
	resp, body, err := c.send(ctx, "web.health", http.MethodGet, "/web/health?db_server_status=1", nil, nil)
	if err != nil || resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusInternalServerError {
		return pgUnknown
	}
	var h struct {
		DBServerStatus *bool `json:"db_server_status"`
	}
	if json.Unmarshal(body, &h) != nil || h.DBServerStatus == nil {
		return pgUnknown
	}
	if *h.DBServerStatus {
		return pgUp
	}
	return pgDown
}

// dbExists asks Odoo's JSON-RPC db service whether a connection to db can
// be made (db_exist); ok is false when it did not answer so.
func (c *Client) dbExists(ctx context.Context, db string) (exists, ok bool) {
	if err := c.askRPC(ctx, "db.db_exist", "/jsonrpc", map[string]any{"service": "db", "method": "db_exist", "args": []any{db}}, &exists); err != nil {
		return false, false
	}
	return exists, true
}

// dbListed asks /web/database/list whether db is among the databases the
// dbfilter keeps; ok is false when Odoo does not list them (list_db off).
func (c *Client) dbListed(ctx context.Context, db string) (listed, ok bool) {
	var names []string
	if err := c.askRPC(ctx, "web.database.list", "/web/database/list", map[string]any{}, &names); err != nil {
		return false, false
	}
	return slices.Contains(names, db), true
}

// askRPC is one JSON-RPC request to path that needs no database nor user,
// its result decoded into out; an error for anything else (Odoo's error
// member, another status, not JSON-RPC, an answer to another request —
// Odoo echoes the request's id —, no result or null).
func (c *Client) askRPC(ctx context.Context, op, path string, params map[string]any, out any) error {
	id := c.id.Add(1)
	req := map[string]any{"jsonrpc": "2.0", "method": "call", "id": id, "params": params}
	resp, body, err := c.send(ctx, op, http.MethodPost, path, req, nil)
	if err != nil {
		return err
	}
	status := resp.StatusCode
	var env struct {
		JSONRPC string          `json:"jsonrpc"`
		ID      json.RawMessage `json:"id"`
		Result  json.RawMessage `json:"result"`
		Error   json.RawMessage `json:"error"`
	}
	if status != http.StatusOK || json.Unmarshal(body, &env) != nil || env.JSONRPC != "2.0" || env.Error != nil ||
		!answersID(env.ID, id) || noResult(op, env.Result, out) != nil {
		return &Error{Op: op, Status: status, Message: "not answered", Class: Transient}
	}
	return json.Unmarshal(env.Result, out)
}
