package mqtt

import (
	"go/parser"
	"go/token"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestImports keeps the layering: the connector imports paho and the shared
// sample type, never the buffer, odoo or agent packages.
func TestImports(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		af, err := parser.ParseFile(token.NewFileSet(), f, nil, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		for _, imp := range af.Imports {
			p, _ := strconv.Unquote(imp.Path.Value)
			if strings.HasPrefix(p, "github.com/plantedge/plantedge/") && p != "github.com/plantedge/plantedge/connectors" {
				t.Errorf("%s imports %s: a connector may import only the connectors package", f, p)
			}
			if strings.Contains(p, "mochi-mqtt") || strings.Contains(p, "bbolt") || strings.Contains(p, "gopcua") {
				t.Errorf("%s imports %s", f, p)
			}
		}
	}
}

// FuzzValidFilter: any string is judged without panicking, and accepted
// filters obey the wildcard rules.
func FuzzValidFilter(f *testing.F) {
	for _, s := range []string{"a/b", "#", "+/+", "a/#", "a/#/b", "a+", "", "/", "a//b", "\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if ValidFilter(s) != nil {
			return
		}
		levels := strings.Split(s, "/")
		for i, l := range levels {
			if strings.Contains(l, "#") && (l != "#" || i != len(levels)-1) {
				t.Fatalf("accepted %q with a misplaced #", s)
			}
			if strings.Contains(l, "+") && l != "+" {
				t.Fatalf("accepted %q with a partial-level +", s)
			}
		}
		if s == "" || strings.ContainsRune(s, 0) {
			t.Fatalf("accepted %q", s)
		}
	})
}
