package mapping

import (
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
)

// flatTokens are the pieces TestDecodeFlat makes payloads of: what a flat
// object is made of, and what makes one something else.
var flatTokens = []string{`{`, `}`, `{`, `}`, `"good"`, `"state"`, `"a b"`, `""`, `"a\"b"`, `"\u0041"`, `"é"`, "\"\x01\"", "\"\x7f\"", `"<&>"`,
	`:`, `:`, `,`, `,`, ` `, "\t", "\n", "\r", "\v", "\x00",
	`0`, `-0`, `12`, `01`, `-`, `1.5`, `1.`, `.5`, `1e5`, `1E+5`, `1e-05`, `1e`, `-1.25e3`, `123456789012345678901234567890`, `+1`, `0x10`,
	`true`, `false`, `null`, `tru`, `nul`, `True`, `NaN`, `Infinity`, `[1]`, `[]`, `{"x":1}`, `"x"`, `'a'`}

// A payload decodeFlat reads it reads as encoding/json does (decodeAny):
// flat objects, well-formed or not, and what is near them.
func TestDecodeFlat(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	fast := 0
	check := func(p string) {
		t.Helper()
		got, ok := decodeFlat([]byte(p))
		if !ok {
			return
		}
		fast++
		want, err := decodeAny([]byte(p))
		if err != nil || !reflect.DeepEqual(any(got), want) {
			t.Fatalf("decodeFlat(%q) = %#v, encoding/json %#v (%v)", p, got, want, err)
		}
	}
	for _, p := range []string{`{}`, ` { } `, `{"good": 1234}`, `{"good":1,"scrap":2,"state":"RUN","ok":true,"x":null,"f":false}`,
		`{"v": -0.5e-3}`, `{"a":1,"a":2}`, `{"a":1}x`, `{"a":1,}`, `{,}`, `{"a"}`, `{"a":}`, `{"a":1 "b":2}`} {
		check(p)
	}
	for range 200000 {
		var sb strings.Builder
		if r.IntN(4) > 0 { // most often an object's shape, its pieces varied
			sb.WriteString("{")
			for i := range r.IntN(4) {
				if i > 0 {
					sb.WriteString([]string{",", ", ", " ,", ""}[r.IntN(4)])
				}
				sb.WriteString(flatTokens[4+r.IntN(10)])
				sb.WriteString([]string{":", " : ", ""}[r.IntN(3)])
				sb.WriteString(flatTokens[24+r.IntN(len(flatTokens)-24)])
			}
			sb.WriteString([]string{"}", " }", "} ", "}}", ""}[r.IntN(5)])
		} else {
			for range 1 + r.IntN(12) {
				sb.WriteString(flatTokens[r.IntN(len(flatTokens))])
			}
		}
		check(sb.String())
	}
	if fast < 20000 {
		t.Fatalf("decodeFlat read %d of 200,000 payloads", fast)
	}
}

// FuzzDecodeFlat: decodeFlat reads only what encoding/json reads, and the
// same.
func FuzzDecodeFlat(f *testing.F) {
	for _, p := range []string{`{"good": 1234}`, `{"a":"b","c":-1.5e3,"d":true,"e":null}`, `{"a":01}`, `{"a":1}{}`} {
		f.Add([]byte(p))
	}
	f.Fuzz(func(t *testing.T, p []byte) {
		got, ok := decodeFlat(p)
		if !ok {
			return
		}
		want, err := decodeAny(p)
		if err != nil || !reflect.DeepEqual(any(got), want) {
			t.Fatalf("decodeFlat(%q) = %#v, encoding/json %#v (%v)", p, got, want, err)
		}
	})
}
