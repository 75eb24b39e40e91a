package mapping

import (
	"testing"

	"github.com/plantedge/plantedge/internal/sptest"
)

// A stored run state when the machine's run state has no time (the BIRTH
// gave the metric no value, and none came before) is no live value: it
// goes to the history like the others (a stored stop and its run are a
// line of their own), and the machine's run state stays unknown — it did
// not open a stop at a stored time. The stored code is the stored stop's.
func TestSparkplugHistoricalRunWithNoLiveRunTime(t *testing.T) {
	run, code, at, stored := spRun, spCode, spAt, spStored
	for _, birth := range []string{"none", "no run state", "a null run state"} {
		t.Run(birth, func(t *testing.T) {
			h := newSPHist(t)
			switch birth {
			case "no run state":
				h.birth(10, code("", 10))
			case "a null run state":
				h.birth(10, sptest.Metric{Name: "State/Running", Datatype: sptest.Boolean, IsNull: true, Timestamp: ms(spAt(10))}, code("", 10))
			}
			h.send(10, stored(code("J", 2)), stored(run(false, 2)), stored(run(true, 3)), stored(code("", 3)), stored(run(false, 5)))
			h.want(birth+": the stored stop", Event{Kind: EventRunning, Start: at(2), End: at(3), Reason: "J", Loss: "Jam", Historical: true})
			p1 := h.st.Machines["p1"]
			if p1.Running != nil || birth == "none" && p1.ReasonSet {
				t.Fatalf("%s: the current state taken from the history: running %v, reason %q (set %v)", birth, p1.Running, p1.Reason, p1.ReasonSet)
			}
			h.send(12, run(true, 12))
			h.want(birth + ": the first live run")
		})
	}
}
