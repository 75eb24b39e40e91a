package main

import (
	"fmt"
	"io"
	"strings"
	"unicode"
)

// termSafe is the writer of the commands' output: it writes control bytes
// (ESC, CR, BEL, backspace, DEL, ...; not newline and tab) as \xNN text.
// What the commands print comes partly from outside — Odoo's error
// messages, MQTT payloads, an OPC UA server's node ids and values — and an
// escape sequence there must not clear the technician's screen, move the
// cursor or print over a line. JSON output has no raw control bytes.
type termSafe struct{ w io.Writer }

func (t termSafe) Write(p []byte) (int, error) {
	i := 0
	for i < len(p) && !controlByte(p[i]) {
		i++
	}
	if i == len(p) {
		return t.w.Write(p)
	}
	var b strings.Builder
	b.Grow(len(p) + 8)
	for _, c := range p {
		if controlByte(c) {
			fmt.Fprintf(&b, `\x%02x`, c)
		} else {
			b.WriteByte(c)
		}
	}
	if _, err := io.WriteString(t.w, b.String()); err != nil {
		return 0, err
	}
	return len(p), nil
}

func controlByte(c byte) bool { return (c < 0x20 && c != '\n' && c != '\t') || c == 0x7f }

// rawWriter returns the writer under termSafe, for a command's own control
// sequences (flush's progress line).
func rawWriter(w io.Writer) io.Writer {
	if t, ok := w.(termSafe); ok {
		return t.w
	}
	return w
}

// oneLine returns text from outside for one line or one table cell: line
// breaks, tabs and other control characters (C0, C1), the Unicode line
// separators and the bidirectional controls (which can make a line read
// as something else) are written as \xNN or \uNNNN.
func oneLine(s string) string {
	if strings.IndexFunc(s, unsafeRune) < 0 {
		return s
	}
	var b strings.Builder
	for _, r := range s {
		switch {
		case !unsafeRune(r):
			b.WriteRune(r)
		case r < 0x100:
			fmt.Fprintf(&b, `\x%02x`, r)
		default:
			fmt.Fprintf(&b, `\u%04x`, r)
		}
	}
	return b.String()
}

func unsafeRune(r rune) bool {
	return unicode.IsControl(r) || r == '\u2028' || r == '\u2029' || unicode.Is(unicode.Bidi_Control, r)
}
