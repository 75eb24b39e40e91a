package mapping

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
)

// The press runs live from 0. Stored while the edge node was away: stop
// 29, run 32.5, stop 34 (before the BIRTH at 35), stop 48.5 (before the
// BIRTH at 51.5). The BIRTH at 35 finds it stopped (a stop begun there),
// the BIRTH at 42 finds that stop on (OnAtBirth), it runs live at 45.5
// (line 35..45.5); the BIRTH at 51.5 finds it stopped again. The history
// then comes slowly: stop 29, a live run at 53.5 (storedStart books
// 29..35 to the stop begun at 35, and no stored run ends that line, as
// before this change), run 32.5 with stop 34, then stop 48.5. Reaching the
// later outage's stop, storedPart booked the stored stop 34 to the BIRTH
// at 35 once more (34..35 inside 29..35: a minute booked twice); 7fab18d
// booked no overlap.
func TestSparkplugHistoricalStoredStopBookedByStoredStartIsNotBookedAgainByStoredPart(t *testing.T) {
	run, stored := spRun, spStored
	spSteps(t, false, func(h *spHist, step func(func())) {
		step(func() { h.send(0, run(true, 0)) })
		step(func() { h.birth(35, run(false, 35)) })
		step(func() { h.birth(42, run(false, 42)) })
		step(func() { h.send(45.5, run(true, 45.5)) })
		step(func() { h.birth(51.5, run(false, 51.5)) })
		step(func() { h.send(53.5, stored(run(false, 29))) })
		step(func() { h.send(53.5, run(true, 53.5)) })
		step(func() { h.send(64.5, stored(run(true, 32.5)), stored(run(false, 34))) })
		step(func() { h.send(64.5, stored(run(false, 48.5))) })
	}, func(t *testing.T, got []string, _ []Event) {
		noOverlap(t, got)
	})
}

// noOverlap fails t when two of the odooLines lines overlap.
func noOverlap(t *testing.T, got []string) {
	t.Helper()
	for i := range got {
		for j := i + 1; j < len(got); j++ {
			s1, e1 := spanOf(got[i])
			s2, e2 := spanOf(got[j])
			if s1 < e2 && s2 < e1 {
				t.Errorf("lines %v and %v overlap (all %v)", got[i], got[j], got)
			}
		}
	}
}

// wantLines is an spSteps check: the odooLines lines do not overlap
// (noOverlap) and, as fmt prints them, are want.
func wantLines(want string) func(*testing.T, []string, []Event) {
	return func(t *testing.T, got []string, _ []Event) {
		t.Helper()
		noOverlap(t, got)
		if fmt.Sprint(got) != want {
			t.Errorf("lines %v, want %v", got, want)
		}
	}
}

// One history tells of two outages. The press runs live from 0; the BIRTH
// at 32 finds it stopped (a stop begun there), it runs live at 34.5 (line
// 32..34.5); the BIRTH at 45 finds it stopped again. The history's first
// value (a run at 23.5) comes before the live run at 48.5 ends the stop
// begun at 45 (HistRun.Tail); the stored stop at 30 comes after. It is the
// one the stop begun at 32 went on from: the machine was known running at
// 34.5, before the BIRTH at 45. It runs to 32, where that stop's line
// begins. Before, histTail booked it to 45, over the line 32..34.5 (2.5
// minutes twice); 7fab18d booked no overlap (and missed 30..32).
func TestSparkplugHistoricalTailOfAnEarlierOutageRunsToTheLineBookedAfterIt(t *testing.T) {
	run, stored := spRun, spStored
	spSteps(t, false, func(h *spHist, step func(func())) {
		step(func() { h.send(0, run(true, 0)) })
		step(func() { h.birth(32, run(false, 32)) })
		step(func() { h.send(34.5, run(true, 34.5)) })
		step(func() { h.birth(45, run(false, 45)) })
		step(func() { h.send(48.5, stored(run(true, 23.5))) })
		step(func() { h.send(48.5, run(true, 48.5)) })
		step(func() { h.send(59, stored(run(false, 30))) })
	}, wantLines("[30..32 32..34.5 45..48.5]"))
}

// spanOf parses an odooLines "start..end".
func spanOf(l string) (float64, float64) {
	a, b, _ := strings.Cut(l, "..")
	s, _ := strconv.ParseFloat(a, 64)
	e, _ := strconv.ParseFloat(b, 64)
	return s, e
}

// block_workcenter. The BIRTH at 39.5 finds the press stopped (a stop begun
// there, its line open), the BIRTH at 46.5 finds that stop on; the history
// (stop 34) comes, and the BIRTH at 67 finds it running: storedStart books
// 34..39.5 apart, the open line ends at 67. Then the stored run 37 and stop
// 38.5, and a later outage's run at 61. The run 37 ends the part booked
// apart, and the stop 38.5 runs to 39.5. Before, nothing ended that part,
// and storedPart booked 38.5..39.5 inside it (a minute twice); 7fab18d
// booked no overlap (34..39.5, 37..38.5 too long).
func TestSparkplugHistoricalPartBookedApartOfAStopFoundOnEndsAtItsStoredRun(t *testing.T) {
	run, stored := spRun, spStored
	spSteps(t, true, func(h *spHist, step func(func())) {
		step(func() { h.send(0, run(true, 0)) })
		step(func() { h.birth(39.5, run(false, 39.5)) })
		step(func() { h.birth(46.5, run(false, 46.5)) })
		step(func() { h.send(56, stored(run(false, 34))) })
		step(func() { h.birth(67, run(true, 67)) })
		step(func() { h.send(70.5, stored(run(true, 37)), stored(run(false, 38.5))) })
		step(func() { h.send(70.5, stored(run(true, 61))) })
	}, wantLines("[34..37 38.5..39.5 39.5..61]"))
}
