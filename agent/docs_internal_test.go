package agent

import (
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/plantedge/plantedge/internal/docstest"
)

// exportedMetrics are the name and variable labels of every metric the
// agent's own collectors (metrics.go) describe, as registered on a
// registry: the metrics struct's collectors, found by reflection so that
// a field added is seen, and the scrape-time stateCollector.
func exportedMetrics(t *testing.T) map[string][]string {
	t.Helper()
	a := &Agent{}
	a.opts.Registry = prometheus.NewRegistry()
	m := newMetrics(a)
	var cs []prometheus.Collector
	v := reflect.ValueOf(m).Elem()
	for i := range v.NumField() {
		f := v.Field(i)
		if f.Kind() != reflect.Pointer && f.Kind() != reflect.Interface || f.IsNil() {
			continue
		}
		// The fields are unexported: read through their address.
		if c, ok := reflect.NewAt(f.Type(), f.Addr().UnsafePointer()).Elem().Interface().(prometheus.Collector); ok {
			cs = append(cs, c)
		}
	}
	cs = append(cs, &stateCollector{a: a})
	desc := regexp.MustCompile(`^Desc\{fqName: "([^"]+)", .*variableLabels: \{([^}]*)\}\}$`)
	out := map[string][]string{}
	for _, c := range cs {
		if !a.opts.Registry.Unregister(c) {
			t.Fatalf("%T: a collector of the metrics struct that newMetrics did not register", c)
		}
		ch := make(chan *prometheus.Desc, 64)
		go func() { c.Describe(ch); close(ch) }()
		for d := range ch {
			sm := desc.FindStringSubmatch(d.String())
			if sm == nil {
				t.Fatalf("cannot read the name of %s", d)
			}
			var labels []string
			if sm[2] != "" {
				labels = strings.Split(sm[2], ",")
			}
			out[sm[1]] = labels
		}
	}
	if len(out) < 50 {
		t.Fatalf("found %d metrics, want at least the 56 the agent exported when this test was written", len(out))
	}
	return out
}

// TestMetricsNamedInMonitoringDoc keeps docs/monitoring.md's list of
// metrics (the paragraph "**Metrics** (all prefixed `plantedge_`)") whole:
// every metric metrics.go exports is named there as a code span of its own,
// the prefix left out (`buffer_records{lane}`, `odoo_up`), and a span that
// gives labels gives the metric's own. A label spelt `{a,b}` there that no
// metric exports is a name gone from the code: a stale line.
func TestMetricsNamedInMonitoringDoc(t *testing.T) {
	metrics := exportedMetrics(t)
	para := docstest.Section(docstest.Read(t, "docs/monitoring.md"), "**Metrics** (all prefixed `plantedge_`)", "\n")
	if para == "" {
		t.Fatal("docs/monitoring.md: no paragraph starting **Metrics** (all prefixed `plantedge_`)")
	}
	span := regexp.MustCompile(`^(?:plantedge_)?([a-z][a-z0-9_]*)(?:\{([a-z_,]*)\})?$`)
	named := map[string]bool{}
	for _, s := range docstest.CodeSpans(para) {
		m := span.FindStringSubmatch(s)
		if m == nil {
			continue
		}
		name := "plantedge_" + m[1]
		labels, ok := metrics[name]
		if ok {
			named[name] = true
		}
		if m[2] == "" {
			continue
		}
		if !ok {
			t.Errorf("docs/monitoring.md names `%s`, which the agent does not export (a stale name?)", s)
		} else if got := strings.Split(m[2], ","); !slices.Equal(got, labels) {
			t.Errorf("docs/monitoring.md names `%s`; the agent exports %s with labels {%s}", s, name, strings.Join(labels, ","))
		}
	}
	var missing []string
	for name, labels := range metrics {
		if !named[name] {
			l := ""
			if len(labels) > 0 {
				l = "{" + strings.Join(labels, ",") + "}"
			}
			missing = append(missing, strings.TrimPrefix(name, "plantedge_")+l)
		}
	}
	slices.Sort(missing)
	for _, n := range missing {
		t.Errorf("docs/monitoring.md, Metrics: plantedge_%s is exported (metrics.go) but not named (as `%s`)", n, n)
	}
}

// statusField is a JSON key of status --json, with its path for messages
// (sources[].refused_nodes[].node).
type statusField struct{ path, name string }

// statusFields walks typ's exported fields by reflection: their JSON keys,
// and those of the structs they hold (pointers, slices and maps of them).
func statusFields(typ reflect.Type, prefix string, seen map[reflect.Type]bool) []statusField {
	for typ.Kind() == reflect.Pointer || typ.Kind() == reflect.Slice || typ.Kind() == reflect.Map {
		if typ.Kind() != reflect.Pointer {
			prefix += "[]"
		}
		typ = typ.Elem()
	}
	if typ.Kind() != reflect.Struct || typ == reflect.TypeFor[time.Time]() || seen[typ] {
		return nil
	}
	seen[typ] = true
	defer delete(seen, typ)
	var out []statusField
	for i := range typ.NumField() {
		f := typ.Field(i)
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" {
			continue
		}
		if f.Anonymous && name == "" {
			out = append(out, statusFields(f.Type, prefix, seen)...)
			continue
		}
		if name == "" {
			name = f.Name
		}
		path := name
		if prefix != "" {
			path = prefix + "." + name
		}
		out = append(out, statusField{path, name})
		out = append(out, statusFields(f.Type, path, seen)...)
	}
	return out
}

// TestStatusFieldsNamedInCommandsDoc keeps docs/commands.md's status
// section (### status up to ### flush) whole: every key of status --json
// (Status and the structs it holds, by reflection) is named there, as a
// whole word of a code span written as field names are
// (`buffer.{pending,bytes}`, `sources[].last_error`, `held`).
func TestStatusFieldsNamedInCommandsDoc(t *testing.T) {
	section := docstest.Section(docstest.Read(t, "docs/commands.md"), "### status\n", "### ")
	if section == "" {
		t.Fatal("docs/commands.md: no ### status section")
	}
	fieldSpan := regexp.MustCompile(`^[a-z0-9_.\[\]{},]+$`)
	words := map[string]bool{}
	for _, s := range docstest.CodeSpans(section) {
		if !fieldSpan.MatchString(s) {
			continue
		}
		for w := range strings.FieldsFuncSeq(s, func(r rune) bool { return !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '_') }) {
			words[w] = true
		}
	}
	fields := statusFields(reflect.TypeFor[Status](), "", map[reflect.Type]bool{})
	if len(fields) < 100 {
		t.Fatalf("found %d status fields, want at least the 140 there were when this test was written", len(fields))
	}
	for _, f := range fields {
		if !words[f.name] {
			t.Errorf("docs/commands.md, status: the field %s (`%s`) of status --json is not named", f.path, f.name)
		}
	}
}
