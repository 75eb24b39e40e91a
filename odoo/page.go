package odoo

import (
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
