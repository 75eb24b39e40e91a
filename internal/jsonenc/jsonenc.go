// Package jsonenc appends JSON values byte for byte as encoding/json
// writes them, for the few values the agent encodes for every commit (a
// machine's mapping state, a count record): encoding/json's reflection
// took more CPU there than the mapping itself (the IngestOPCUA benchmark).
// Each function says whether it could: where encoding/json escapes a
// string or refuses a value, the caller leaves the whole value to it.
package jsonenc

import (
	"math"
	"strconv"
	"time"
)

// Float appends f as encoding/json writes a float64 (the shortest
// representation, an exponent below 1e-6 and from 1e21 on); false for NaN
// and the infinities, which it refuses.
func Float(b []byte, f float64) ([]byte, bool) {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return b, false
	}
	if i := int64(f); float64(i) == f && i > -1<<53 && i < 1<<53 && (i != 0 || !math.Signbit(f)) {
		return strconv.AppendInt(b, i, 10), true // a count: the same digits, sooner
	}
	abs := math.Abs(f)
	format := byte('f')
	if abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	b = strconv.AppendFloat(b, f, format, -1, 64)
	if format == 'e' {
		// e-09 to e-9, as encoding/json does
		if n := len(b); n >= 4 && b[n-4] == 'e' && b[n-3] == '-' && b[n-2] == '0' {
			b[n-2] = b[n-1]
			b = b[:n-1]
		}
	}
	return b, true
}

// Time appends t quoted, as time.Time's MarshalJSON writes it (RFC 3339
// with nanoseconds); false for a year outside 0–9999 or a zone offset
// that RFC 3339 cannot write, which it refuses.
func Time(b []byte, t time.Time) ([]byte, bool) {
	if y := t.Year(); y < 0 || y > 9999 {
		return b, false
	}
	if _, off := t.Zone(); off%60 != 0 || off <= -24*3600 || off >= 24*3600 {
		return b, false
	}
	b = append(b, '"')
	b = t.AppendFormat(b, time.RFC3339Nano)
	return append(b, '"'), true
}

// String appends s quoted; false when encoding/json would escape any of
// its bytes (a control character, a quote or backslash, <, > or &, any
// byte beyond ASCII).
func String(b []byte, s string) ([]byte, bool) {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c < 0x20 || c > 0x7e, c == '"', c == '\\', c == '<', c == '>', c == '&':
			return b, false
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"'), true
}

// Object appends a JSON object member by member; what to omit (omitempty,
// omitzero) is the caller's. Keys are plain ASCII, written as they are.
type Object struct {
	b    []byte
	ok   bool
	more bool // a member written: the next one follows a comma
}

// Begin starts an object appended to b.
func Begin(b []byte) Object { return Object{b: append(b, '{'), ok: true} }

// Key appends the key of the next member.
func (o *Object) Key(k string) {
	if o.more {
		o.b = append(o.b, ',')
	}
	o.more = true
	o.b = append(o.b, '"')
	o.b = append(o.b, k...)
	o.b = append(o.b, '"', ':')
}

// Members appends members already encoded (`"k":v`, comma-separated,
// at least one), as another Object wrote them; ok as that Object's End
// said.
func (o *Object) Members(m []byte, ok bool) {
	if o.more {
		o.b = append(o.b, ',')
	}
	o.more = true
	o.b = append(o.b, m...)
	o.ok = o.ok && ok
}

// String appends member k, a string.
func (o *Object) String(k, v string) {
	o.Key(k)
	var ok bool
	o.b, ok = String(o.b, v)
	o.ok = o.ok && ok
}

// Float appends member k, a float64.
func (o *Object) Float(k string, v float64) {
	o.Key(k)
	var ok bool
	o.b, ok = Float(o.b, v)
	o.ok = o.ok && ok
}

// Time appends member k, a time.Time.
func (o *Object) Time(k string, v time.Time) {
	o.Key(k)
	var ok bool
	o.b, ok = Time(o.b, v)
	o.ok = o.ok && ok
}

// Int appends member k, an integer.
func (o *Object) Int(k string, v int64) {
	o.Key(k)
	o.b = strconv.AppendInt(o.b, v, 10)
}

// Uint appends member k, an unsigned integer.
func (o *Object) Uint(k string, v uint64) {
	o.Key(k)
	o.b = strconv.AppendUint(o.b, v, 10)
}

// Bool appends member k, a boolean.
func (o *Object) Bool(k string, v bool) {
	o.Key(k)
	o.b = strconv.AppendBool(o.b, v)
}

// Bytes is what the object has so far, to append a member's value to
// after its Key; Set hands them back, with whether that could be done.
func (o *Object) Bytes() []byte { return o.b }

// Set: see Bytes.
func (o *Object) Set(b []byte, ok bool) {
	o.b = b
	o.ok = o.ok && ok
}

// End closes the object: its bytes, and whether every value was appended
// as encoding/json writes it.
func (o *Object) End() ([]byte, bool) { return append(o.b, '}'), o.ok }
