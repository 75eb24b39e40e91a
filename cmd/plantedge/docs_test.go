package main

import (
	"maps"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/spf13/cobra"

	"github.com/plantedge/plantedge/internal/docstest"
)

// commandsDoc is docs/commands.md cut at its "### " headings: the intro
// before the first, and each command's section by its name.
func commandsDoc(t *testing.T) (intro string, sections map[string]string) {
	t.Helper()
	data := docstest.Read(t, "docs/commands.md")
	sections = map[string]string{}
	parts := regexp.MustCompile(`(?m)^### `).Split(data, -1)
	for _, p := range parts[1:] {
		name, _, _ := strings.Cut(p, "\n")
		sections[strings.TrimSpace(name)] = p
	}
	return parts[0], sections
}

// spansName says whether a code span of text names word as a whole word
// (--timeout, not --timeout-x nor a-timeout).
func spansName(text, word string) bool {
	re := regexp.MustCompile(`(^|[^A-Za-z0-9_-])` + regexp.QuoteMeta(word) + `($|[^A-Za-z0-9_-])`)
	for _, s := range docstest.CodeSpans(text) {
		if re.MatchString(s) {
			return true
		}
	}
	return false
}

// eachFlag calls fn with the name and shorthand of each flag visitAll
// visits (a FlagSet's VisitAll: the flag type is pflag's, which the module
// does not require directly).
func eachFlag[F any](visitAll func(func(*F)), fn func(name, shorthand string)) {
	visitAll(func(f *F) {
		v := reflect.ValueOf(f).Elem()
		fn(v.FieldByName("Name").String(), v.FieldByName("Shorthand").String())
	})
}

// TestCommandsDocNamesEveryCommandAndFlag keeps docs/commands.md, the
// full reference of the commands, whole: every command of the CLI (the
// cobra tree, cobra's own help and completion left out) has its section,
// "### NAME", a subcommand is named in its parent's section by a code span
// that begins with it (`retry --here`), and every flag is named in a code
// span of its command's section, or of the intro before the first section
// for one several commands share (-c/--config) and the root's (--version),
// by its long form and its shorthand as whole words.
func TestCommandsDocNamesEveryCommandAndFlag(t *testing.T) {
	intro, sections := commandsDoc(t)
	root := newRootCmd()
	root.InitDefaultVersionFlag() // --version, as Execute adds it
	checkFlags := func(c *cobra.Command, where, text string) {
		eachFlag(c.LocalFlags().VisitAll, func(name, shorthand string) {
			if name == "help" {
				return // cobra's own
			}
			for _, w := range []string{"--" + name, "-" + shorthand} {
				if w == "-" || spansName(text, w) || spansName(intro, w) {
					continue
				}
				if where != "the intro" {
					where += ", nor in the intro"
				}
				t.Errorf("docs/commands.md: %s (%s) is not named in %s", w, c.CommandPath(), where)
			}
		})
	}
	checkFlags(root, "the intro", intro)
	commands := 0
	var walk func(c *cobra.Command, top string)
	walk = func(c *cobra.Command, top string) {
		for _, sub := range c.Commands() {
			if sub.Hidden || sub.Name() == "help" || sub.Name() == "completion" {
				continue
			}
			commands++
			name, where := top, "### "+top
			if top == "" {
				name, where = sub.Name(), "### "+sub.Name()
			}
			text, ok := sections[name]
			if !ok {
				t.Errorf("docs/commands.md: no section for %s (### %s)", sub.CommandPath(), name)
				walk(sub, name)
				continue
			}
			if top != "" {
				begins := false
				for _, s := range docstest.CodeSpans(text) {
					if f := strings.Fields(s); len(f) > 0 && f[0] == sub.Name() {
						begins = true
					}
				}
				if !begins {
					t.Errorf("docs/commands.md: %s is not named in %s (a code span beginning `%s`)", sub.CommandPath(), where, sub.Name())
				}
			}
			checkFlags(sub, where, text)
			walk(sub, name)
		}
	}
	walk(root, "")
	if commands < 14 {
		t.Fatalf("walked %d commands, want at least the 14 there were when this test was written", commands)
	}
	// A flag the docs name that no command has is a stale name.
	flags := map[string]bool{"--help": true}
	var collect func(c *cobra.Command)
	collect = func(c *cobra.Command) {
		eachFlag(c.LocalFlags().VisitAll, func(name, _ string) { flags["--"+name] = true })
		for _, sub := range c.Commands() {
			collect(sub)
		}
	}
	collect(root)
	named := regexp.MustCompile(`(?:^|[^A-Za-z0-9_-])(--[a-z][a-z0-9-]*)`)
	for _, text := range append([]string{intro}, slices.Collect(maps.Values(sections))...) {
		for _, s := range docstest.CodeSpans(text) {
			for _, m := range named.FindAllStringSubmatch(s, -1) {
				if !flags[m[1]] {
					t.Errorf("docs/commands.md names %s (`%s`), which no command has", m[1], s)
				}
			}
		}
	}
}
