package agent

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
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
