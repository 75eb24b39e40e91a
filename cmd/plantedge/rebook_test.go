package main

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"
	_ "time/tzdata" // Europe/Berlin on a machine without the zone files

	"github.com/plantedge/plantedge/agent"
)

func TestParseSince(t *testing.T) {
	now := time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)
	for in, want := range map[string]time.Time{
		"36h":                  now.Add(-36 * time.Hour),
		"2026-12-01T14:00:00Z": time.Date(2026, 12, 1, 14, 0, 0, 0, time.UTC),
		"2026-12-01 14:00":     time.Date(2026, 12, 1, 14, 0, 0, 0, time.Local),
		"2026-12-01":           time.Date(2026, 12, 1, 0, 0, 0, 0, time.Local),
	} {
		if got, err := parseSince(in, now, time.Local); err != nil || !got.Equal(want) {
			t.Errorf("parseSince(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "yesterday", "-3h", "2026-13-01"} {
		if _, err := parseSince(in, now, time.Local); err == nil {
			t.Errorf("parseSince(%q): no error", in)
		}
	}
	// The autumn change repeats 02:00-03:00 in Berlin: a backup at the
	// first 02:30 (00:30 UTC) must not lose the hour after it (the tz
	// probe: the second was taken). Outside it, the one reading.
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Fatal(err)
	}
	for in, want := range map[string]time.Time{
		"2026-10-25 02:30": time.Date(2026, 10, 25, 0, 30, 0, 0, time.UTC),
		"2026-10-25 03:30": time.Date(2026, 10, 25, 2, 30, 0, 0, time.UTC),
		"2026-10-25 01:30": time.Date(2026, 10, 24, 23, 30, 0, 0, time.UTC),
		"2026-07-01 12:00": time.Date(2026, 7, 1, 10, 0, 0, 0, time.UTC),
		"2026-03-29 02:30": time.Date(2026, 3, 29, 0, 30, 0, 0, time.UTC), // the spring change skips it: the earlier reading (the review)
		"2026-03-29 03:30": time.Date(2026, 3, 29, 1, 30, 0, 0, time.UTC),
		"2026-03-29 01:30": time.Date(2026, 3, 29, 0, 30, 0, 0, time.UTC),
	} {
		if got, err := parseSince(in, now, berlin); err != nil || !got.Equal(want) {
			t.Errorf("parseSince(%q) in Berlin = %v, %v; want %v", in, got.UTC(), err, want)
		}
	}
}

// What Odoo refused is listed, and makes the exit code 1.
func TestPrintRebook(t *testing.T) {
	var out bytes.Buffer
	since := time.Date(2026, 12, 1, 14, 0, 0, 0, time.UTC)
	err := printRebook(&out, agent.RebookResult{Since: since, OldestKept: since.Add(time.Hour), Lines: 3, Scraps: 1,
		LinesMissing: 2, LinesOpen: 1, ScrapsMissing: 1, LinesRebooked: 2, LinesWithoutWorkorder: 1,
		NotRebooked: []string{"scrap plantedge.x (2 of press-1): Odoo lacks its work order"}})
	var ee *exitError
	if !errors.As(err, &ee) || ee.code != 1 {
		t.Errorf("exit: %v, want code 1", err)
	}
	for _, want := range []string{"3 downtime lines, 1 scrap booking", "note: the bookings kept begin at", "lacks 2 lines (1 of them it has open, closed since: closed again) and 1 scrap", "rebooked 2 lines and 0 scrap",
		"1 line booked without its work order", "not rebooked (1):\n  scrap plantedge.x"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
}

// The note that bookings since --since may not be kept is said only when
// some were forgotten after --since (the val54 probe: said the day after
// the install, when none had been: the oldest kept was simply the first).
func TestPrintRebookNotesForgottenOnlyWhenSo(t *testing.T) {
	since := time.Date(2026, 12, 1, 14, 0, 0, 0, time.UTC)
	at := func(t time.Time) *time.Time { return &t }
	for _, tc := range []struct {
		name string
		res  agent.RebookResult
		note bool
	}{
		{"nothing forgotten, first booking after since", agent.RebookResult{OldestKept: since.Add(time.Hour), KeptFrom: at(time.Time{})}, false},
		{"forgotten before since", agent.RebookResult{OldestKept: since.Add(time.Hour), KeptFrom: at(since.Add(-time.Hour))}, false},
		{"forgotten after since", agent.RebookResult{OldestKept: since.Add(2 * time.Hour), KeptFrom: at(since.Add(time.Hour))}, true},
		{"an older agent: its oldest kept", agent.RebookResult{OldestKept: since.Add(time.Hour)}, true},
		{"an older agent: kept from before", agent.RebookResult{OldestKept: since.Add(-time.Hour)}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			tc.res.Since = since
			if err := printRebook(&out, tc.res); err != nil {
				t.Fatal(err)
			}
			if got := strings.Contains(out.String(), "note: the bookings kept begin at"); got != tc.note {
				t.Errorf("note said: %v, want %v:\n%s", got, tc.note, out.String())
			}
		})
	}
}
