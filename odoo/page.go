package odoo

import (
	"fmt"
	"html"
	"strings"
)

// pageText says an HTML page (something in front of Odoo: nginx's 502, a
// CDN's timeout page, a maintenance page) by its title, or failing one by
// its text, with " (an HTML page)"; ok is false for anything else (JSON,
// plain text), which is said as it is. Status's last_error and drain line
// quoted the markup ("<html>\r\n<head><title>502 Bad Gateway…").
func pageText(body string) (text string, ok bool) {
	s := strings.TrimSpace(body)
	low := strings.ToLower(s)
	if !strings.HasPrefix(low, "<!doctype html") && !strings.HasPrefix(low, "<html") {
		return "", false
	}
	if i := strings.Index(low, "<title"); i >= 0 {
		if j := strings.Index(low[i:], ">"); j >= 0 {
			rest := s[i+j+1:]
			if k := strings.Index(strings.ToLower(rest), "</title>"); k >= 0 {
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

// noDatabase makes e, Odoo's NOT_FOUND_NODB page for a JSON-2 call, say
// what it means for this configuration. http.py serves a request without
// a database when X-Odoo-Database names one the dbfilter excludes, or one
// it cannot open (Request._open_registry: absent, or PostgreSQL not
// reachable — RegistryError), and, without the header, when the dbfilter
// leaves it several databases (or none). Transient either way: the records
// wait in the buffer; a name that worked before is the database away.
func (c *Client) noDatabase(e *Error) {
	said := "Odoo answered 404: " + noDatabaseText
	e.Class = Transient
	c.mu.RLock()
	worked := c.authOK
	c.mu.RUnlock()
	switch {
	case c.cfg.Database == "":
		e.noDB = true
		e.Message = "no database named (odoo.database is empty) and this Odoo serves several, none picked by its dbfilter: set odoo.database (sent as the X-Odoo-Database header) — " + said
	case worked:
		// It served this name before: its PostgreSQL away (restarting,
		// out of connections), the database renamed or dropped.
		e.away = true
		e.Message = fmt.Sprintf("odoo cannot open the database %q now, which it served before (its PostgreSQL away? the database renamed or dropped?) — %s",
			c.cfg.Database, said)
	default:
		e.noDB = true
		e.Message = fmt.Sprintf("odoo.database %q: this Odoo serves no database by that name (misspelt? or excluded by the server's dbfilter; or its PostgreSQL not reachable) — %s",
			c.cfg.Database, said)
	}
}
