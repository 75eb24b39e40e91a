package mapping

import "encoding/json"

// decodeFlat decodes the payload most machines send, a JSON object of
// plain members ({"good": 1234, "state": "RUN"}), as decodeJSON does
// (numbers as json.Number), without encoding/json's reflection and
// decoder (a fifth of the agent's CPU on the IngestMQTT benchmark's path).
// false for anything else — a nested value, an escape or any byte but
// printable ASCII in a string, a name given twice, bytes after the object
// — which decodeJSON then reads (and says what is wrong with it).
// TestDecodeFlat holds it to decodeJSON.
func decodeFlat(p []byte) (map[string]any, bool) {
	i := skipSpace(p, 0)
	if i >= len(p) || p[i] != '{' {
		return nil, false
	}
	doc := make(map[string]any, 4)
	i = skipSpace(p, i+1)
	if i < len(p) && p[i] == '}' {
		return doc, skipSpace(p, i+1) == len(p)
	}
	for {
		name, n, ok := plainString(p, i)
		if !ok {
			return nil, false
		}
		if _, dup := doc[name]; dup {
			return nil, false
		}
		i = skipSpace(p, n)
		if i >= len(p) || p[i] != ':' {
			return nil, false
		}
		i = skipSpace(p, i+1)
		if i >= len(p) {
			return nil, false
		}
		var v any
		switch c := p[i]; {
		case c == '"':
			v, i, ok = plainString(p, i)
		case c == '-' || c >= '0' && c <= '9':
			v, i, ok = number(p, i)
		case c == 't':
			v, i, ok = true, i+4, hasAt(p, i, "true")
		case c == 'f':
			v, i, ok = false, i+5, hasAt(p, i, "false")
		case c == 'n':
			v, i, ok = nil, i+4, hasAt(p, i, "null")
		default:
			return nil, false
		}
		if !ok {
			return nil, false
		}
		doc[name] = v
		i = skipSpace(p, i)
		if i >= len(p) {
			return nil, false
		}
		switch p[i] {
		case ',':
			i = skipSpace(p, i+1)
		case '}':
			return doc, skipSpace(p, i+1) == len(p)
		default:
			return nil, false
		}
	}
}

// skipSpace returns the index of the first byte at or after i that is not
// JSON white space.
func skipSpace(p []byte, i int) int {
	for i < len(p) && (p[i] == ' ' || p[i] == '\t' || p[i] == '\n' || p[i] == '\r') {
		i++
	}
	return i
}

// hasAt reports whether p holds lit at i.
func hasAt(p []byte, i int, lit string) bool {
	return len(p)-i >= len(lit) && string(p[i:i+len(lit)]) == lit
}

// plainString reads the JSON string at p[i] (a quote) when it holds
// printable ASCII only and no escape: its value and the index after it.
func plainString(p []byte, i int) (string, int, bool) {
	if i >= len(p) || p[i] != '"' {
		return "", 0, false
	}
	for j := i + 1; j < len(p); j++ {
		switch c := p[j]; {
		case c == '"':
			return string(p[i+1 : j]), j + 1, true
		case c < 0x20 || c > 0x7e || c == '\\':
			return "", 0, false
		}
	}
	return "", 0, false
}

// number reads the JSON number at p[i] (RFC 8259's grammar): its text as
// a json.Number and the index after it.
func number(p []byte, i int) (json.Number, int, bool) {
	start := i
	digits := func() int {
		n := 0
		for i < len(p) && p[i] >= '0' && p[i] <= '9' {
			i++
			n++
		}
		return n
	}
	if p[i] == '-' {
		i++
	}
	switch {
	case i < len(p) && p[i] == '0':
		i++
	case digits() == 0:
		return "", 0, false
	}
	if i < len(p) && p[i] == '.' {
		i++
		if digits() == 0 {
			return "", 0, false
		}
	}
	if i < len(p) && (p[i] == 'e' || p[i] == 'E') {
		i++
		if i < len(p) && (p[i] == '+' || p[i] == '-') {
			i++
		}
		if digits() == 0 {
			return "", 0, false
		}
	}
	return json.Number(p[start:i]), i, true
}
