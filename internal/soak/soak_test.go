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
	"github.com/plantedge/plantedge/odoo/odootest"
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

// The check of the stops the Sparkplug edge node stored: at their stored
// times to the second, the known gap (a stored start still stopped at a
// BIRTH, booked from later) reported but not a difference; a stop begun
// live booked to the BIRTH after its stored end (the late end the agent
// had) is one.
func TestCompareStored(t *testing.T) {
	s := &soak{wcIDs: map[string]int64{"sp-01": 7}}
	t0 := time.Date(2026, 12, 4, 20, 0, 0, 0, time.UTC)
	at := func(sec float64) time.Time { return t0.Add(time.Duration(sec * float64(time.Second))) }
	m := &machine{id: "sp-01", sp: true, spStops: []spStop{
		{start: at(1.2), end: at(9.7), startStored: true, endStored: true, startFlushed: true, endFlushed: true},
		{start: at(20.5), end: at(30.1), startStored: true, endStored: true, startFlushed: true, endFlushed: true},
		{start: at(40.3), end: at(70.9), startStored: true, startFlushed: true, births: []time.Time{at(50.1), at(55.2)}},
		{start: at(200.1), end: at(207), startStored: true, startFlushed: true, births: []time.Time{at(202.5)}},
		{start: at(80), end: at(95.4), endStored: true, endFlushed: true},
		{start: at(100), end: at(110)}, // live: not checked here
	}}
	line := func(a, b float64) odootest.ProductivityLine {
		return odootest.ProductivityLine{WorkcenterID: 7, Start: at(a).Truncate(time.Second), End: at(b).Truncate(time.Second)}
	}
	lines := []odootest.ProductivityLine{
		line(1.2, 9.7),
		line(20.5, 25), // ends early: a difference
		line(55, 70.9), // from the BIRTH at 55: the known gap
		line(80, 99),   // ends at the BIRTH, not at the stored end: a difference
		line(100, 110),
		line(205, 207), // from after the BIRTH: a difference
		{WorkcenterID: 8, Start: at(20), End: at(30)},
	}
	diffs, report, extra := s.compareStored(m, lines)
	if extra != 0 {
		t.Errorf("extra %d, want 0", extra)
	}
	d := strings.Join(diffs, "\n")
	if len(diffs) != 3 || !strings.Contains(d, "from start to end 20:00:20.500-20:00:30.100: line 20:00:20-20:00:25") ||
		!strings.Contains(d, "sp-01 stop begun live, its end stored, 20:01:20.000-20:01:35.400: line 20:01:20-20:01:39") ||
		!strings.Contains(d, "stored at its start 20:03:20.100-20:03:27.000 (stopped at 1 BIRTHs; end stored false): line 20:03:25-20:03:27") {
		t.Errorf("diffs %q", diffs)
	}
	all := strings.Join(report, "\n")
	if !strings.Contains(all, "KNOWN GAP sp-01 stop stored at 20:00:40.300, still stopped at the BIRTH of 20:00:55.200") || !strings.Contains(all, "15s not booked") ||
		!strings.Contains(all, "2 stored start to end (1 booked at their times") ||
		!strings.Contains(all, "1 stored end only (0 booked to it)") || strings.Contains(all, "LATE END") {
		t.Errorf("report:\n%s", all)
	}
}

// Soak 441 (seed 441, Odoo 18): sp-14's stop stored at 07:34:28.361 was
// still on at the BIRTH of 07:34:35.997 and ended (its run stored) at
// 07:34:38.113 just as the next BIRTH, which found it running, came before
// the history: the agent booked the BIRTH's line 35.997..38.113 and then
// the stored part 28.361..35.997 as a line of its own (its buffer's booked
// records), as docs/config.md (Sparkplug B) says. Before, the check took
// the stop for one line, reported the second part as a known gap ("7s not
// booked") and the count as a difference (63 lines, want 62). Now: SPLIT,
// one line more expected; a line no stop made and a stop with no line are
// still shown side by side.
func TestCompareStoredSplitAtABirth(t *testing.T) {
	s := &soak{wcIDs: map[string]int64{"sp-14": 14}}
	t0 := time.Date(2026, 12, 5, 7, 34, 0, 0, time.UTC)
	at := func(sec float64) time.Time { return t0.Add(time.Duration(sec * float64(time.Second))) }
	m := &machine{id: "sp-14", sp: true, spStops: []spStop{
		{start: at(28.361), end: at(38.113), reason: "JAM", startStored: true, endStored: true, startFlushed: true, endFlushed: true, births: []time.Time{at(35.997)}},
		{start: at(50), end: at(55), reason: "SETUP"},
	}, dbirths: []time.Time{at(35.997), at(38.114), at(90)}}
	line := func(a, b float64) odootest.ProductivityLine {
		return odootest.ProductivityLine{WorkcenterID: 14, LossName: "Jam", Start: at(a).Truncate(time.Second), End: at(b).Truncate(time.Second)}
	}
	lines := []odootest.ProductivityLine{line(35.997, 38.113), line(28.361, 35.997), line(50, 55)}
	diffs, report, extra := s.compareStored(m, lines)
	all := strings.Join(report, "\n")
	if len(diffs) != 0 || extra != 1 || strings.Contains(all, "KNOWN GAP") ||
		!strings.Contains(all, "SPLIT sp-14 stop stored at 07:34:28.361, still stopped at the BIRTH of 07:34:35.997, ended at 07:34:38.113 (stored true): booked as 2 lines cut at its BIRTHs (line 07:34:28-07:34:35, line 07:34:35-07:34:38)") ||
		!strings.Contains(all, "1 stored start only (0 booked from it, 0 known gap, 1 split at a BIRTH)") {
		t.Errorf("diffs %q extra %d report:\n%s", diffs, extra, all)
	}
	// The BIRTH within a second of the end, the stored part listed first
	// (it holds the second before the end too): a split all the same.
	late := &machine{id: "sp-14", sp: true, spStops: []spStop{{start: at(28.361), end: at(38.113), startStored: true, startFlushed: true, births: []time.Time{at(37.6)}}}}
	if _, _, x := s.compareStored(late, []odootest.ProductivityLine{line(28.361, 37.6), line(37.6, 38.113)}); x != 1 {
		t.Errorf("a BIRTH a moment before the end: extra %d, want 1", x)
	}
	// Not cut at a BIRTH: not a split (the known gap or a difference).
	_, _, extra = s.compareStored(m, []odootest.ProductivityLine{line(28.361, 33), line(33, 38.113)})
	if extra != 0 {
		t.Errorf("lines cut where no BIRTH was taken for a split")
	}

	side := strings.Join(s.sideBySide(m, append(lines, line(70, 72))), "\n")
	for _, want := range []string{
		"STOP sp-14 #1 07:34:28.361-07:34:38.113 JAM (start stored, sent; end stored, sent; BIRTHs within 10s: 07:34:35.997 07:34:38.114) | line 07:34:28-07:34:35 Jam, line 07:34:35-07:34:38 Jam",
		"STOP sp-14 #2 07:34:50.000-07:34:55.000 SETUP (start live; end live; BIRTHs within 10s: none) | line 07:34:50-07:34:55 Jam",
		"LINE sp-14 07:35:10-07:35:12 Jam | no stop",
	} {
		if !strings.Contains(side, want) {
			t.Errorf("side by side lacks %q:\n%s", want, side)
		}
	}
}
