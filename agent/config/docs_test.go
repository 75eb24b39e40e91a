package config

import (
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/plantedge/plantedge/internal/docstest"
)

// configKey is one key the parser accepts: its name, the struct that
// declares it (SourceRef's opcua and mqtt are one key under each signal),
// and every path it has from the top of the file, segments without list
// brackets ("machines", "good_count", "opcua", "node").
type configKey struct {
	owner, name string
	paths       [][]string
	shown       string // its first path as validate writes it, lists as [] (mqtt[].url)
}

// configKeys walks the config structs by reflection as the decoder does
// (structFields: the yaml tags, inline structs flattened): every key, in
// the order met.
func configKeys() []*configKey {
	var out []*configKey
	byID := map[string]*configKey{}
	var walk func(t reflect.Type, path []string, shown string)
	walk = func(t reflect.Type, path []string, shown string) {
		for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice || t.Kind() == reflect.Map {
			if t.Kind() == reflect.Slice {
				shown += "[]"
			}
			t = t.Elem()
		}
		if t.Kind() != reflect.Struct || t == durationType || t == offDurationType || t == byteSizeType {
			return
		}
		fields, names := structFields(t)
		for _, name := range names {
			idx := fields[name]
			owner := t
			for _, i := range idx[:len(idx)-1] { // through inline structs
				owner = owner.Field(i).Type
			}
			id := owner.Name() + "." + name
			k := byID[id]
			if k == nil {
				k = &configKey{owner: owner.Name(), name: name, shown: joinPath(shown, name)}
				byID[id] = k
				out = append(out, k)
			}
			p := append(slices.Clip(path), name)
			k.paths = append(k.paths, p)
			walk(t.FieldByIndex(idx).Type, p, joinPath(shown, name))
		}
	}
	walk(reflect.TypeFor[Config](), nil, "")
	return out
}

// keyWord is a key path as docs write one in a code span: `site`,
// `odoo.timeout`, `mqtt[].cert_file`, `machines[3].good_count.rolover:` —
// not a part of a file name, a flag, a topic or an Odoo model
// (`odoo-api-key`, `--opcua`, `./name`, `$sparkplug/…`, `mrp.workcenter`
// is a whole word, and no key's path).
var keyWord = regexp.MustCompile(`(?:^|[^A-Za-z0-9_.\-/$])([A-Za-z_][A-Za-z0-9_]*(?:\[[0-9]*\])?(?:\.[A-Za-z_][A-Za-z0-9_]*(?:\[[0-9]*\])?)*)`)

// keyWords are the key paths of span, each as its segments (list
// brackets and indices dropped).
func keyWords(span string) [][]string {
	var out [][]string
	for _, m := range keyWord.FindAllStringSubmatchIndex(span, -1) {
		if end := m[3]; end < len(span) && strings.ContainsRune("-/", rune(span[end])) {
			continue // odoo-api-key, a topic's level
		}
		w := regexp.MustCompile(`\[[0-9]*\]`).ReplaceAllString(span[m[2]:m[3]], "")
		out = append(out, strings.Split(w, "."))
	}
	return out
}

// yamlKey is a span written as YAML (`quiet_after: 45m`, `map:`,
// `{ server: line1, node: … }`): each key before its colon.
var yamlKey = regexp.MustCompile(`(?:^|[{,]\s*)([A-Za-z_][A-Za-z0-9_]*):(?:\s|$)`)

// notKeys are words that docs/config.md writes as keys to show that the
// parser refuses them (each must stay refused: not a key of any section).
// The inline secrets (api_key:, password:) are secretKeys.
var notKeys = map[string]string{
	"feild":       "a misspelt field: told its one problem",
	"rolover":     "a misspelt rollover, in a message shown",
	"db":          "another Odoo client's name for database: told did you mean",
	"user":        "another Odoo client's name for username",
	"login":       "another Odoo client's name for username",
	"host":        "another Odoo client's name for url",
	"api_key_env": "told that the agent reads PLANTEDGE_ODOO_API_KEY",
	"empty":       "a warning's text: `empty: read as 1, …`",
}

// TestConfigDocNamesEveryKey keeps docs/config.md, the OT engineer's
// reference of the file, whole: every key the parser accepts (the config
// structs' yaml tags, found as the decoder finds them) is named there in a
// code span, fenced blocks left out, as a whole word of a key path. A key
// whose name one key has is named by that name (`quiet_after`); one whose
// name several sections share (url, username, ca_file, backoff_max, name,
// format, a signal's opcua and mqtt …) by its path from its section on at
// least (`odoo.url`, `mqtt[].backoff_max`, `good_count.mqtt`,
// `machines[0].running.opcua.node`), so that the one section's does not
// stand for the others'; a top-level key's path is its name. And a span
// that writes a key the parser does not accept is stale: a path from a
// section (`odoo.x`, `machines[].y`) that is no key and no status field
// (docs/commands.md's status section names it), or a YAML key (`x:`) that
// no section has, unless notKeys says why the docs write it.
func TestConfigDocNamesEveryKey(t *testing.T) {
	doc := docstest.Read(t, "docs/config.md")
	keys := configKeys()
	if len(keys) < 70 {
		t.Fatalf("found %d config keys, want at least the 86 there were when this test was written", len(keys))
	}
	owners := map[string]int{} // name -> how many keys have it
	isKey := map[string]bool{}
	for _, k := range keys {
		owners[k.name]++
		isKey[k.name] = true
	}
	// index: a key path as docs may write it -> the keys it names.
	index := map[string][]*configKey{}
	paths := map[string]bool{} // every whole path
	for _, k := range keys {
		for _, p := range k.paths {
			paths[strings.Join(p, ".")] = true
			for j := range p {
				if s := p[j:]; len(s) >= 2 || owners[k.name] == 1 || len(p) == 1 {
					index[strings.Join(s, ".")] = append(index[strings.Join(s, ".")], k)
				}
			}
		}
	}
	for w := range notKeys {
		if isKey[w] {
			t.Errorf("notKeys holds %q, which is a key now: drop it from the list", w)
		}
	}
	status := map[string]bool{}
	for _, s := range docstest.CodeSpans(docstest.Section(docstest.Read(t, "docs/commands.md"), "### status\n", "### ")) {
		status[s] = true
	}
	if len(status) == 0 {
		t.Fatal("docs/commands.md: no code spans in a ### status section")
	}
	sections := map[string]bool{}
	for _, k := range keys {
		if k.owner == "Config" {
			sections[k.name] = true
		}
	}
	named := map[*configKey]bool{}
	for _, s := range docstest.CodeSpans(doc) {
		for _, w := range keyWords(s) {
			for i := 1; i <= len(w); i++ {
				for _, k := range index[strings.Join(w[:i], ".")] {
					named[k] = true
				}
			}
			if len(w) < 2 || !sections[w[0]] || paths[strings.Join(w, ".")] {
				continue
			}
			if status[s] {
				continue // a status --json field
			}
			i := len(w)
			for i > 1 && !paths[strings.Join(w[:i], ".")] {
				i--
			}
			if notKeys[w[i]] == "" {
				t.Errorf("docs/config.md names `%s`: %s has no key %s (a stale name?)", s, strings.Join(w[:i], "."), w[i])
			}
		}
		for _, m := range yamlKey.FindAllStringSubmatch(s, -1) {
			if k := m[1]; !isKey[k] && notKeys[k] == "" && !secretKeys[strings.ToLower(k)] {
				t.Errorf("docs/config.md names `%s`: no section of the file has a key %s (a stale name?)", s, k)
			}
		}
	}
	for _, k := range keys {
		if named[k] {
			continue
		}
		as := "`" + k.name + "`"
		if p := strings.Split(k.shown, "."); owners[k.name] > 1 && len(p) > 1 {
			as = "`" + strings.Join(p[len(p)-2:], ".") + "` or a longer path"
		}
		t.Errorf("docs/config.md: the key %s is not named (as %s)", k.shown, as)
	}
}
