package config

import (
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"unicode"
)

// readmeBase holds the README's sources (line1, plant-broker) for the
// README's YAML blocks that show a machine's signals alone: such a block
// is put in the place of SIGNALS.
const readmeBase = `site: plant-2
data_dir: /var/lib/plantedge
odoo:
  url: https://erp.example.com
  database: prod
  username: plantedge-bot
  api_key_file: /etc/plantedge/odoo-api-key
opcua:
  - { name: line1, endpoint: "opc.tcp://10.1.2.3:4840" }
mqtt:
  - { name: plant-broker, url: "tcp://10.1.2.10:1883", client_id: plantedge-plant2 }
machines:
  - id: press-07
    workcenter: WC-PRESS-07
SIGNALS`

// docFiles are the documentation files a technician reads: the README and
// what it points to in docs/, paths relative to the repository root.
func docFiles(t *testing.T) []string {
	t.Helper()
	docs, err := filepath.Glob("../../docs/*.md")
	if err != nil {
		t.Fatal(err)
	}
	if len(docs) == 0 {
		t.Fatal("no docs/*.md found")
	}
	files := []string{"README.md"}
	for _, d := range docs {
		files = append(files, "docs/"+filepath.Base(d))
	}
	return files
}

// TestREADMEYAMLBlocks keeps the README's YAML examples, and those of
// docs/*.md, from rotting: a technician copies them as they are. A block
// that is a whole file (it names site:) must load without a problem or a
// warning; a block of a machine's signals must load in a machine of the
// README's sources. (The documentation shows its errors inline, not as
// blocks: TestBadConfigs holds the messages.)
func TestREADMEYAMLBlocks(t *testing.T) {
	total := 0
	for _, f := range docFiles(t) {
		data, err := os.ReadFile("../../" + f)
		if err != nil {
			t.Fatal(err)
		}
		blocks := regexp.MustCompile("(?ms)^```yaml\n(.*?)^```").FindAllSubmatchIndex(data, -1)
		total += len(blocks)
		for _, b := range blocks {
			text := string(data[b[2]:b[3]])
			line := 1 + strings.Count(string(data[:b[2]]), "\n")
			name := f + ":" + strconv.Itoa(line)
			t.Run(name, func(t *testing.T) {
				whole := regexp.MustCompile(`(?m)^site:`).MatchString(text)
				file := text
				if !whole {
					file = strings.Replace(readmeBase, "SIGNALS", indent(text, "    "), 1)
				}
				c, err := Parse(name, []byte(file))
				if err != nil {
					t.Fatalf("the example does not load:\n%s\n%v", file, err)
				}
				if !whole {
					return // the base's other source is unused: warned of
				}
				for _, w := range c.Warnings {
					t.Errorf("the example is warned of: %s", w)
				}
			})
		}
	}
	if total < 3 {
		t.Fatalf("found %d yaml blocks in README.md and docs/*.md, want at least the 3 they had (the minimal file, a Sparkplug B signal, an array element)", total)
	}
}

// TestDocsLinksResolve checks every relative link of README.md and
// docs/*.md: the file it names exists and, for a Markdown file, so does
// the heading its #anchor names (anchors made as GitHub makes them), so
// that a section moved from one file to another leaves no dead link.
func TestDocsLinksResolve(t *testing.T) {
	link := regexp.MustCompile(`\[[^\]]*\]\(([^)\s]+)\)`)
	anchors := map[string]map[string]bool{} // file -> anchors
	anchorsOf := func(path string) map[string]bool {
		if a, ok := anchors[path]; ok {
			return a
		}
		data, err := os.ReadFile("../../" + path)
		if err != nil {
			t.Fatal(err)
		}
		a := headingAnchors(string(data))
		anchors[path] = a
		return a
	}
	checked := 0
	for _, f := range docFiles(t) {
		data, err := os.ReadFile("../../" + f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range link.FindAllStringSubmatchIndex(outsideCode(string(data)), -1) {
			target := string(data[m[2]:m[3]])
			line := 1 + strings.Count(string(data[:m[0]]), "\n")
			if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
				continue
			}
			path, anchor, _ := strings.Cut(target, "#")
			if path == "" {
				path = f
			} else {
				path = filepath.ToSlash(filepath.Join(filepath.Dir(f), path))
				if _, err := os.Stat("../../" + path); err != nil {
					t.Errorf("%s:%d: link %s: %s does not exist", f, line, target, path)
					continue
				}
			}
			checked++
			if anchor == "" {
				continue
			}
			if !strings.HasSuffix(path, ".md") {
				t.Errorf("%s:%d: link %s: an anchor into a file that is not Markdown", f, line, target)
				continue
			}
			if !anchorsOf(path)[anchor] {
				t.Errorf("%s:%d: link %s: %s has no heading with anchor #%s", f, line, target, path, anchor)
			}
		}
	}
	if checked < 50 {
		t.Errorf("checked %d relative links, want the README's index and section links (at least 50)", checked)
	}
}

// outsideCode blanks fenced code blocks and inline code spans (keeping
// every byte's offset), where a [x](y) is not a link.
func outsideCode(s string) string {
	b := []byte(s)
	fence := false
	for i := 0; i < len(b); {
		end := strings.IndexByte(s[i:], '\n')
		if end < 0 {
			end = len(b)
		} else {
			end += i
		}
		line := s[i:end]
		if strings.HasPrefix(line, "```") {
			fence = !fence
			blank(b[i:end])
		} else if fence {
			blank(b[i:end])
		} else {
			for j := i; j < end; j++ {
				if b[j] == '`' {
					k := strings.IndexByte(s[j+1:end], '`')
					if k < 0 {
						break
					}
					blank(b[j : j+k+2])
					j += k + 1
				}
			}
		}
		i = end + 1
	}
	return string(b)
}

func blank(b []byte) {
	for i := range b {
		b[i] = ' '
	}
}

// headingAnchors returns the anchors GitHub gives a Markdown file's
// headings: lower case, characters other than letters, digits, '_', '-'
// and spaces dropped, spaces made '-'; a repeated one gets -1, -2, ….
func headingAnchors(s string) map[string]bool {
	a := map[string]bool{}
	seen := map[string]int{}
	fence := false
	for _, line := range strings.Split(s, "\n") {
		if strings.HasPrefix(line, "```") {
			fence = !fence
			continue
		}
		h := strings.TrimLeft(line, "#")
		if fence || len(h) == len(line) || len(line)-len(h) > 6 || !strings.HasPrefix(h, " ") {
			continue
		}
		var slug strings.Builder
		for _, r := range strings.ToLower(strings.TrimSpace(h)) {
			switch {
			case unicode.IsLetter(r) || unicode.IsDigit(r) || r == '_' || r == '-':
				slug.WriteRune(r)
			case r == ' ':
				slug.WriteByte('-')
			}
		}
		id := slug.String()
		if n := seen[id]; n > 0 {
			a[id+"-"+strconv.Itoa(n)] = true
		} else {
			a[id] = true
		}
		seen[id]++
	}
	return a
}

func indent(s, by string) string {
	lines := strings.SplitAfter(s, "\n")
	for i, l := range lines {
		if strings.TrimSpace(l) != "" {
			lines[i] = by + l
		}
	}
	return strings.Join(lines, "")
}
