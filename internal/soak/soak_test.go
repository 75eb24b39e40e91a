//go:build linux

package main

// Quick checks of the harness itself (milliseconds): the configs it gives
// the agent are valid, and the summary computes what it says. The soak
// proper runs only by hand (see the package comment).

import (
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/plantedge/plantedge/agent/config"
)

func TestConfigsValid(t *testing.T) {
	dir := t.TempDir()
	s, err := newSoak(options{bin: "plantedge", version: 19, out: dir, nUA: 2, nMQ: 2, nArr: 2, nSP: 2, seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer s.close()
	s.odoo.Start()
	s.ua.ns = 2
	for _, v := range []string{"A", "B"} {
		if _, err := config.Parse("plantedge.yaml", []byte(s.config(v))); err != nil {
			t.Errorf("config %s: %v\n%s", v, err, s.config(v))
		}
		for _, want := range []string{`node: "ns=2;s=Lanes", index: 3`, "format: sparkplug_b, topic: spBv1.0/Soak/DDATA/soak-edge/sp-08, field: Counters/Scrap Parts"} {
			if !strings.Contains(s.config(v), want) {
				t.Errorf("config %s lacks %q:\n%s", v, want, s.config(v))
			}
		}
	}
}

func TestSummarize(t *testing.T) {
	var b strings.Builder
	b.WriteString(sampleHeader + "\n")
	// Agent run 1: RSS grows 10 kB per sample, FDs 1 per 2 restarts; run 2
	// flat. Restarts (ua+broker) go up by one per sample.
	for i := range 40 {
		inc, rss, fds := 1, 20000+10*i, 16+i/2
		if i >= 20 {
			inc, rss, fds = 2, 30000, 20
		}
		row := map[string]string{"t_s": fmt.Sprint(10 * i), "incarnation": fmt.Sprint(inc), "pid": "7",
			"vmrss_kb": fmt.Sprint(rss), "fds": fmt.Sprint(fds), "ua_restarts": fmt.Sprint(i), "broker_restarts": "0"}
		var cells []string
		for _, c := range strings.Split(sampleHeader, ",") {
			cells = append(cells, row[c])
		}
		b.WriteString(strings.Join(cells, ",") + "\n")
	}
	b.WriteString("400,2,7,300") // cut short: ignored
	var out strings.Builder
	if err := summarize(strings.NewReader(b.String()), &out, 100*time.Second, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	got := out.String()
	for _, want := range []string{
		"agent run 1 (pid 7): 17 samples",
		"vmrss_kb 20030 20190 20030 20190  3600.0 10.00",
		"agent run 2 (pid 7): 17 samples",
		"vmrss_kb 30000 30000 30000 30000     0.0  0.00",
	} {
		if !strings.Contains(strings.Join(strings.Fields(got), " "), strings.Join(strings.Fields(want), " ")) {
			t.Errorf("summary lacks %q:\n%s", want, got)
		}
	}
	if rows := strings.Count(got, "\n"); rows < 10 {
		t.Errorf("summary too short:\n%s", got)
	}
	if s := slope([]float64{1, 1}, []float64{1, 2}); !math.IsNaN(s) {
		t.Errorf("slope over constant x = %v, want NaN", s)
	}
}
