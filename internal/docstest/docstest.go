// Package docstest reads the user documentation (README.md, docs/*.md)
// for the tests that keep it in step with the binary: every config key,
// command, flag, status field and metric named where users look for it.
package docstest

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// Read reads a file of the repository, its path relative to the root (the
// directory of go.mod, found up from the test's directory).
func Read(t testing.TB, path string) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			break
		}
		up := filepath.Dir(dir)
		if up == dir {
			t.Fatalf("no go.mod above the test's directory to read %s from", path)
		}
		dir = up
	}
	data, err := os.ReadFile(filepath.Join(dir, path))
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

// Section is the part of doc from the line that starts with start up to
// the next line that starts with end (or the end of doc); "" when no line
// starts with start.
func Section(doc, start, end string) string {
	lines := strings.SplitAfter(doc, "\n")
	for i, l := range lines {
		if !strings.HasPrefix(l, start) {
			continue
		}
		j := i + 1
		for j < len(lines) && !strings.HasPrefix(lines[j], end) {
			j++
		}
		return strings.Join(lines[i:j], "")
	}
	return ""
}

var (
	fenced = regexp.MustCompile("(?ms)^```.*?^```")
	span   = regexp.MustCompile("`([^`]+)`")
)

// CodeSpans are the contents of text's code spans (`…`, which may run over
// a line break as in a paragraph), fenced blocks left out.
func CodeSpans(text string) []string {
	text = fenced.ReplaceAllString(text, "")
	var spans []string
	for _, m := range span.FindAllStringSubmatch(text, -1) {
		spans = append(spans, m[1])
	}
	return spans
}
