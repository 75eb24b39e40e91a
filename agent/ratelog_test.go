package agent

import (
	"bytes"
	"log/slog"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/plantedge/plantedge/agent/mapping"
)

// TestRateLogsPerKey: within a minute, a key logs its first line only, the
// next line after that says how many were suppressed, and other keys log on
// their own.
func TestRateLogsPerKey(t *testing.T) {
	var out bytes.Buffer
	l := slog.New(slog.NewTextHandler(&out, nil))
	var r rateLogs
	for range 5 {
		r.log("reset m1", l, slog.LevelWarn, "counter reset", "machine", "m1")
	}
	r.log("reset m2", l, slog.LevelWarn, "counter reset", "machine", "m2")
	r.log("rollover m1", l, slog.LevelInfo, "counter rollover", "machine", "m1")
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 3 || !strings.Contains(lines[0], "machine=m1") || !strings.Contains(lines[1], "machine=m2") ||
		!strings.Contains(lines[2], "level=INFO") {
		t.Fatalf("logged:\n%s", out.String())
	}
	r.m["reset m1"].last = r.m["reset m1"].last.Add(-2 * 60e9) // a minute later
	r.log("reset m1", l, slog.LevelWarn, "counter reset", "machine", "m1")
	if !strings.Contains(out.String(), "suppressed_since_last=4") {
		t.Errorf("no count of the suppressed lines:\n%s", out.String())
	}
}

// skip says a line of a key that logged within its interval would be left
// out, and counts it as left out, so that a line costly to make (the clock
// warning, at every value of its machine) is made only when due.
func TestRateLogsSkip(t *testing.T) {
	var out bytes.Buffer
	l := slog.New(slog.NewTextHandler(&out, nil))
	r := rateLogs{every: time.Hour}
	if r.skip("m1") {
		t.Fatal("a key never logged skipped")
	}
	r.log("m1", l, slog.LevelWarn, "clock off", "machine", "m1")
	for range 2 { // two lines left out
		if !r.skip("m1") {
			t.Fatal("not skipped within the interval")
		}
	}
	if r.skip("m2") {
		t.Fatal("another key skipped")
	}
	r.m["m1"].last = r.m["m1"].last.Add(-2 * time.Hour)
	if r.skip("m1") {
		t.Fatal("skipped when due")
	}
	r.log("m1", l, slog.LevelWarn, "clock off", "machine", "m1")
	if lines := strings.Split(strings.TrimSpace(out.String()), "\n"); len(lines) != 2 || !strings.Contains(lines[1], "suppressed_since_last=2") {
		t.Errorf("logged:\n%s", out.String())
	}
}

// Keys come and go (one per work order): past rateLogsKept, those quiet for
// a minute are forgotten, while one that logged within the minute keeps
// suppressing.
func TestRateLogsForgetQuietKeys(t *testing.T) {
	var out bytes.Buffer
	l := slog.New(slog.NewTextHandler(&out, nil))
	var r rateLogs
	r.log("busy", l, slog.LevelWarn, "busy")
	for i := range rateLogsKept - 1 { // with busy: full
		k := "late m1 WO/" + strconv.Itoa(i)
		r.log(k, l, slog.LevelWarn, "late")
		r.m[k].last = r.m[k].last.Add(-2 * time.Minute)
	}
	r.log("late m1 WO/new", l, slog.LevelWarn, "late")
	if len(r.m) != 2 || r.m["busy"] == nil {
		t.Fatalf("%d keys kept, busy kept: %v", len(r.m), r.m["busy"] != nil)
	}
	before := strings.Count(out.String(), "msg=busy")
	r.log("busy", l, slog.LevelWarn, "busy")
	if strings.Count(out.String(), "msg=busy") != before {
		t.Error("a key that logged within the minute logged again")
	}
}

// What a key left out is told once its minute has passed, even when no
// later line of the key comes to carry the count (the self-probe: 5
// refusals, 1 line, the other 4 never mentioned); a key that left nothing
// out, or whose minute has not passed, is not.
func TestRateLogsTellWhatWasLeftOut(t *testing.T) {
	var out bytes.Buffer
	l := slog.New(slog.NewTextHandler(&out, nil))
	var r rateLogs
	for range 5 {
		r.log("m1 refused", l, slog.LevelWarn, "refused")
	}
	r.log("m2 refused", l, slog.LevelWarn, "refused")
	r.tell(l, slog.LevelWarn, "more refused", false)
	if strings.Contains(out.String(), "more refused") {
		t.Fatalf("told within the minute:\n%s", out.String())
	}
	r.m["m1 refused"].last = r.m["m1 refused"].last.Add(-2 * time.Minute)
	r.m["m2 refused"].last = r.m["m2 refused"].last.Add(-2 * time.Minute)
	r.tell(l, slog.LevelWarn, "more refused", false)
	if !strings.Contains(out.String(), `msg="more refused" key="m1 refused" left_out=4`) || strings.Contains(out.String(), `key="m2 refused"`) {
		t.Fatalf("told:\n%s", out.String())
	}
	r.tell(l, slog.LevelWarn, "more refused", false)
	if n := strings.Count(out.String(), "more refused"); n != 1 {
		t.Errorf("told %d times, want once", n)
	}
	// At the stop, all of it, minute or not; a key with a kind as both.
	r.log("m3\x00refused #", l, slog.LevelWarn, "refused")
	r.log("m3\x00refused #", l, slog.LevelWarn, "refused")
	r.tell(l, slog.LevelWarn, "more refused", true)
	if !strings.Contains(out.String(), `msg="more refused" key=m3 left_out=1 kind="refused #"`) {
		t.Errorf("not told at the stop:\n%s", out.String())
	}
}

// The unmapped downtime reasons' log keeps a bounded number of codes: a
// source that sends a text with a count in it makes a new code at every
// stop, and each stop's run event leaves one line out (its stop logged the
// code), so no logged code was ever forgotten (the review: 10 codes a
// machine an hour kept for good, 87,600 a machine a year).
func TestUnmappedReasonCodesAreForgotten(t *testing.T) {
	cfg := testConfig(t, `opcua: [{ name: line1, endpoint: "opc.tcp://127.0.0.1:1" }]
machines: [{ id: m1, workcenter: W, running: { opcua: { server: line1, node: "ns=2;s=Run" } } }]
`)
	a, err := New(cfg, Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	for hour := range 3 * rateLogsKept / unmappedCodesLogged {
		for i := range unmappedCodesLogged {
			reason := "ALARM " + strconv.Itoa(hour*unmappedCodesLogged+i) + ": jam"
			for _, kind := range []mapping.EventKind{mapping.EventStopped, mapping.EventRunning} {
				a.noteEvent(mapping.Event{Kind: kind, Machine: "m1", Time: time.Now(), Reason: reason, Loss: "Equipment Failure", LossDefaulted: true})
			}
		}
		// An hour passes.
		a.reasonLog.mu.Lock()
		for _, rl := range a.reasonLog.m {
			rl.last = rl.last.Add(-time.Hour - time.Minute)
		}
		a.reasonLog.mu.Unlock()
		a.reasonBudget.mu.Lock()
		for _, w := range a.reasonBudget.m {
			w.from = w.from.Add(-time.Hour - time.Minute)
		}
		a.reasonBudget.mu.Unlock()
	}
	if n := len(a.reasonLog.m); n > rateLogsKept {
		t.Errorf("%d codes kept by the unmapped reasons' log, want at most %d", n, rateLogsKept)
	}
}
