package mapping

import (
	"encoding/json"
	"fmt"
	"slices"
	"testing"
)

// oldAgent rewrites the machine state as the version before HistRun.RanBefore,
// HistRun.Left and LastStop.After would: an agent upgraded from it starts
// from a state without them, and one downgraded to it drops the two
// HistRun fields it does not know (encoding/json) when it stores the state
// again. (It keeps LastStop's "after": its EndedStop had the field.)
func (h *spHist) oldAgent(upgrade bool) {
	h.t.Helper()
	st := NewState()
	for id := range h.st.Machines {
		b, err := h.st.Marshal(id)
		if err != nil {
			h.t.Fatal(err)
		}
		var m map[string]any
		if err := json.Unmarshal(b, &m); err != nil {
			h.t.Fatal(err)
		}
		if hist, ok := m["hist"].(map[string]any); ok {
			delete(hist, "ran_before")
			delete(hist, "left")
		}
		if ls, ok := m["last_stop"].(map[string]any); ok && upgrade {
			delete(ls, "after")
		}
		if b, err = json.Marshal(m); err != nil {
			h.t.Fatal(err)
		}
		if err := st.Unmarshal(id, b); err != nil {
			h.t.Fatal(err)
		}
	}
	h.st = st
}

// The timelines of the Sparkplug history tests that brought
// HistRun.RanBefore, HistRun.Left and LastStop.After, with the state
// rewritten as the version before them would after any one step (an
// upgrade from it, or a downgrade to it, then): nothing fails, no line
// overlaps another, and the lines are those of this version or of the
// one before (which lost a stored stop, or kept a line to a BIRTH's end).
func TestSparkplugHistoryStateOfTheVersionBefore(t *testing.T) {
	run, stored := spRun, spStored
	for _, tc := range []struct {
		name   string
		steps  []func(h *spHist)
		accept []string
	}{
		{"ran line left, stored again", []func(h *spHist){
			func(h *spHist) { h.send(0, run(true, 0)) },
			func(h *spHist) { h.send(1, run(false, 1)) },
			func(h *spHist) { h.birth(10, run(false, 10)) },
			func(h *spHist) { h.send(10, stored(run(true, 4))) },
			func(h *spHist) { h.send(10, stored(run(false, 6))) },
			func(h *spHist) { h.birth(20, run(true, 20)) },
			func(h *spHist) { h.send(20, stored(run(true, 7))) },
			func(h *spHist) { h.birth(30, run(false, 30)) },
			func(h *spHist) { h.birth(40, run(true, 40)) },
			func(h *spHist) { h.send(40, stored(run(false, 8))) },
			func(h *spHist) { h.send(45, stored(run(false, 12))) },
			func(h *spHist) { h.send(45, stored(run(true, 15))) },
		}, []string{
			"[1..4 30..40 6..7 8..15]",  // this version
			"[1..4 12..15 30..40 6..7]", // the one before: 8..12 lost
			"[1..4 30..40 6..7 8..20]",  // Left dropped after it was booked: not ended at 15
		}},
		{"stored stop before a stop found on", []func(h *spHist){
			func(h *spHist) { h.send(0, run(true, 0)) },
			func(h *spHist) { h.birth(49, run(false, 49)) },
			func(h *spHist) { h.send(52.5, run(true, 52.5)) },
			func(h *spHist) { h.send(60.5, run(false, 60.5)) },
			func(h *spHist) { h.birth(70, run(false, 70)) },
			func(h *spHist) { h.send(70, stored(run(false, 44))) },
			func(h *spHist) { h.send(70, stored(run(true, 65)), stored(run(false, 67.5))) },
			func(h *spHist) { h.send(73, run(true, 73)) },
		}, []string{
			"[44..49 49..52.5 60.5..65 67.5..73]", // this version
			"[49..52.5 60.5..65 67.5..73]",        // the one before: 44..49 lost
		}},
	} {
		for _, upgrade := range []bool{true, false} {
			for k := range tc.steps {
				t.Run(fmt.Sprintf("%s/upgrade=%v/after-step-%d", tc.name, upgrade, k), func(t *testing.T) {
					h := newSPHist(t)
					var all []Event
					for i, f := range tc.steps {
						f(h)
						all = append(all, h.got()...)
						if i == k {
							h.oldAgent(upgrade)
						}
					}
					got := odooLines(t, all)
					noOverlap(t, got)
					if !slices.Contains(tc.accept, fmt.Sprint(got)) {
						t.Errorf("lines %v, want one of %v", got, tc.accept)
					}
				})
			}
		}
	}
}
