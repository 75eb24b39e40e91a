package config

import (
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
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

func indent(s, by string) string {
	lines := strings.SplitAfter(s, "\n")
	for i, l := range lines {
		if strings.TrimSpace(l) != "" {
			lines[i] = by + l
		}
	}
	return strings.Join(lines, "")
}
