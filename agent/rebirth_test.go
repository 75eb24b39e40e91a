package agent_test

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/plantedge/plantedge/internal/sptest"
)

// edgeSim is the edge node edge1 (group plant) as far as it listens for
// commands: every message on its NCMD topic, and on any other command
// topic of the broker (none is to come).
type edgeSim struct {
	t      *testing.T
	mu     sync.Mutex
	ncmd   [][]byte
	others []string
	got    chan struct{} // a request came
}

func newEdgeSim(p *plant) *edgeSim {
	e := &edgeSim{t: p.t.(*testing.T), got: make(chan struct{}, 100)}
	err := p.broker.Subscribe("spBv1.0/+/+/#", func(topic string, payload []byte, retained bool, qos byte) {
		if !strings.Contains(topic, "CMD/") {
			return
		}
		e.mu.Lock()
		defer e.mu.Unlock()
		if topic != "spBv1.0/plant/NCMD/edge1" || retained || qos != 0 {
			e.others = append(e.others, fmt.Sprintf("%s qos %d retained %v", topic, qos, retained))
			return
		}
		e.ncmd = append(e.ncmd, payload)
		select { // never block the broker's delivery: requests() counts
		case e.got <- struct{}{}:
		default:
		}
	})
	if err != nil {
		p.t.Fatal(err)
	}
	return e
}

// requests returns the rebirth requests received so far, each checked.
func (e *edgeSim) requests() int {
	e.t.Helper()
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.others) > 0 {
		e.t.Fatalf("commands other than a QoS 0 NCMD to edge1: %v", e.others)
	}
	for _, b := range e.ncmd {
		if err := sptest.CheckRebirth(b); err != nil {
			e.t.Fatalf("NCMD is no rebirth request: %v", err)
		}
	}
	return len(e.ncmd)
}

func (e *edgeSim) waitRequest() {
	e.t.Helper()
	select {
	case <-e.got:
	case <-time.After(20 * time.Second):
		e.t.Fatal("no rebirth request came")
	}
}

// sparkplugRebirthPlant is sparkplugPlant with sparkplug_rebirth on the
// broker (on: true).
func sparkplugRebirthPlant(t *testing.T, on bool) *plant {
	p := sparkplugPlant(t)
	if on {
		p.editConfig("    client_id: plantedge-test\n", "    client_id: plantedge-test\n    sparkplug_rebirth: true\n")
	}
	return p
}

// metricValue is the value of a /metrics line starting with name.
func (p *plant) metricLine(name string) string {
	p.t.Helper()
	for line := range strings.SplitSeq(p.metrics(), "\n") {
		if strings.HasPrefix(line, name+" ") {
			return strings.TrimPrefix(line, name+" ")
		}
	}
	return ""
}

func spBirths(p *plant, seq int, good int64, goodAlias, runAlias uint64) {
	p.spPublish("NBIRTH", sptest.Payload{Seq: seq, Metrics: []sptest.Metric{{Name: "bdSeq", Datatype: sptest.Int64, Value: int64(0)}}})
	p.spPublish("DBIRTH", sptest.Payload{Seq: seq + 1, Metrics: []sptest.Metric{
		{Name: "Counters/Good", Alias: goodAlias, HasAlias: true, Datatype: sptest.UInt32, Value: good},
		{Name: "State/Running", Alias: runAlias, HasAlias: true, Datatype: sptest.Boolean, Value: true},
	}})
}

const rebirthMetric = `plantedge_sparkplug_rebirth_requests_total{source="broker"}`

// After its own restart the agent has no alias map; with sparkplug_rebirth
// on, the first DATA by alias makes it ask the edge node for a rebirth,
// status says when; the edge node answers with a BIRTH that gives its
// metrics new aliases (good and running swapped), and the agent counts on
// from it: nothing booked wrong (the old map would read the run bit's
// alias as the counter), nothing lost, nothing twice.
func TestSparkplugRebirthAfterRestart(t *testing.T) {
	t.Parallel()
	p := sparkplugRebirthPlant(t, true)
	edge := newEdgeSim(p)
	ra := p.startAgentWith(false)
	spBirths(p, 0, 1000, 1, 2)
	p.spPublish("DDATA", sptest.Payload{Seq: 2, Metrics: []sptest.Metric{{Alias: 1, HasAlias: true, Value: int64(1010)}}})
	p.waitQty("sp1", 10)
	if n := edge.requests(); n != 0 {
		t.Fatalf("%d rebirth requests with a current alias map", n)
	}

	ra.stop()
	ra = p.startAgentWith(false)
	p.spPublish("DDATA", sptest.Payload{Seq: 3, Metrics: []sptest.Metric{{Alias: 1, HasAlias: true, Value: int64(1015)}}})
	edge.waitRequest()
	m := ra.a.Status().Machines[0]
	if !strings.Contains(m.Error, "waiting for a BIRTH of spBv1.0/plant/DBIRTH/edge1/sp1") || !strings.Contains(m.Error, "plantedge asked it for a rebirth at ") {
		t.Errorf("status error %q, want the BIRTH waited for and the rebirth asked for", m.Error)
	}
	if got := p.qty("sp1"); got != 10 {
		t.Fatalf("qty %v before the BIRTH", got)
	}

	// The answer: the edge node re-aliases (as Ignition does when a tag
	// changed); good is now alias 2, the run bit alias 1.
	spBirths(p, 0, 1020, 2, 1)
	p.spPublish("DDATA", sptest.Payload{Seq: 2, Metrics: []sptest.Metric{{Alias: 2, HasAlias: true, Value: int64(1030)}, {Alias: 1, HasAlias: true, Value: true}}})
	p.waitQty("sp1", 30)
	// A last message by name: everything before it is through.
	p.spPublish("DDATA", sptest.Payload{Seq: 3, Metrics: []sptest.Metric{{Name: "Counters/Good", Value: int64(1031)}}})
	p.waitQty("sp1", 31)
	m = ra.a.Status().Machines[0]
	if strings.Contains(m.Error, "waiting for a BIRTH") || m.State != "running" {
		t.Errorf("after the BIRTH: state %s, error %q", m.State, m.Error)
	}
	if n := edge.requests(); n != 1 {
		t.Errorf("%d rebirth requests, want 1", n)
	}
	// Counted once its publish returned, on a goroutine of its own that
	// nothing above waits for (the edge node had the request before).
	waitFor(t, 10*time.Second, "the request counted", func() (bool, string) {
		v := p.metricLine(rebirthMetric)
		return v == "1", v
	})
	if v := p.metricLine(rebirthMetric); v != "1" {
		t.Errorf("%s = %q, want 1", rebirthMetric, v)
	}
}

// Many DATA messages by alias the agent cannot read, in a burst: one
// rebirth request (the next may go only after 30 s, which no test waits
// for; TestRebirthDebounce steps a clock through the intervals).
func TestSparkplugRebirthDebounced(t *testing.T) {
	t.Parallel()
	p := sparkplugRebirthPlant(t, true)
	edge := newEdgeSim(p)
	p.startAgentWith(false)
	const burst = 25
	for i := range burst {
		p.spPublish("DDATA", sptest.Payload{Seq: i, Metrics: []sptest.Metric{{Alias: 1, HasAlias: true, Value: int64(1000 + i)}}})
	}
	waitFor(t, 20*time.Second, "the burst read", func() (bool, string) {
		v := p.metricLine(`plantedge_sparkplug_unknown_aliases_total{source="broker"}`)
		return v == fmt.Sprint(burst), v
	})
	edge.waitRequest()
	// Counted once its publish returned, which may be just after the
	// broker delivered it.
	waitFor(t, 10*time.Second, "the request counted", func() (bool, string) {
		v := p.metricLine(rebirthMetric)
		return v == "1", v
	})
	if n := edge.requests(); n != 1 {
		t.Errorf("%d rebirth requests, want 1", n)
	}
}

// sparkplug_rebirth off (the default): the agent publishes nothing, and
// status keeps its advice, naming the option.
func TestSparkplugRebirthOff(t *testing.T) {
	t.Parallel()
	p := sparkplugRebirthPlant(t, false)
	edge := newEdgeSim(p)
	ra := p.startAgentWith(false)
	p.spPublish("DDATA", sptest.Payload{Seq: 0, Metrics: []sptest.Metric{{Alias: 1, HasAlias: true, Value: int64(1000)}}})
	p.spPublish("DDATA", sptest.Payload{Seq: 5, Metrics: []sptest.Metric{{Alias: 1, HasAlias: true, Value: int64(1001)}}})
	waitFor(t, 20*time.Second, "waiting for a BIRTH", func() (bool, string) {
		m := ra.a.Status().Machines[0]
		return strings.Contains(m.Error, "waiting for a BIRTH") && strings.Contains(m.Error, "send a rebirth from Ignition") &&
			strings.Contains(m.Error, "sparkplug_rebirth: true"), m.Error
	})
	// A message by name after them: the DATA by alias were all read.
	p.spPublish("DDATA", sptest.Payload{Seq: 6, Metrics: []sptest.Metric{{Name: "Counters/Good", Datatype: sptest.UInt32, Value: int64(1002)}}})
	waitFor(t, 20*time.Second, "unknown aliases counted", func() (bool, string) {
		v := p.metricLine(`plantedge_sparkplug_unknown_aliases_total{source="broker"}`)
		return v == "2", v
	})
	if n := edge.requests(); n != 0 {
		t.Errorf("%d rebirth requests with sparkplug_rebirth off", n)
	}
	if v := p.metricLine(rebirthMetric); v != "0" {
		t.Errorf("%s = %q, want 0", rebirthMetric, v)
	}
}

// A broker ACL that refuses the agent's publish to the NCMD topic: the
// request is dropped unseen (MQTT 3.1.1 QoS 0), and the agent reads on in
// the same session; status says it asked. (connectors/mqtt has the same
// against a real Mosquitto.)
func TestSparkplugRebirthRefusedByACL(t *testing.T) {
	t.Parallel()
	p := sparkplugRebirthPlant(t, true)
	p.broker.DenyWrite("spBv1.0/plant/NCMD/edge1", true)
	edge := newEdgeSim(p)
	ra := p.startAgentWith(false)
	p.spPublish("DDATA", sptest.Payload{Seq: 0, Metrics: []sptest.Metric{{Alias: 1, HasAlias: true, Value: int64(1000)}}})
	waitFor(t, 20*time.Second, "rebirth asked for", func() (bool, string) {
		m := ra.a.Status().Machines[0]
		return strings.Contains(m.Error, "plantedge asked it for a rebirth at "), m.Error
	})
	// The edge node rebirths by itself (restarted): counting goes on.
	spBirths(p, 0, 1000, 1, 2)
	p.spPublish("DDATA", sptest.Payload{Seq: 2, Metrics: []sptest.Metric{{Alias: 1, HasAlias: true, Value: int64(1007)}}})
	p.waitQty("sp1", 7)
	st := ra.a.Status()
	if n := edge.requests(); n != 0 {
		t.Errorf("the ACL let %d requests through", n)
	}
	if s := st.Sources[0]; s.State != "connected" || s.Sessions != 1 {
		t.Errorf("source %+v after a refused publish, want still its first session", s)
	}
	// Status says it asked before the request is published (on a goroutine
	// of its own, nothing the counting waits for); it is counted once its
	// publish returned.
	waitFor(t, 10*time.Second, "the request counted", func() (bool, string) {
		v := p.metricLine(rebirthMetric)
		return v == "1", v
	})
	if v := p.metricLine(rebirthMetric); v != "1" {
		t.Errorf("%s = %q, want 1", rebirthMetric, v)
	}
}

// An edge node that answers every rebirth request with its BIRTHs but
// whose seq breaks at every DATA (two gateways publishing as one edge
// node): each gap needs a BIRTH, and each BIRTH answers — still one
// request, not one per DATA (the review: a BIRTH started the wait over,
// 6 requests in 149 ms). An alias its current BIRTH does not name, while
// that BIRTH names the alias of every metric the agent reads there, is
// none of the agent's: no request, the machine does not wait, the alias
// counted (the review: a request at every DATA).
func TestSparkplugRebirthNotRepeatedWhenABirthDoesNotCure(t *testing.T) {
	t.Parallel()
	p := sparkplugRebirthPlant(t, true)
	edge := newEdgeSim(p)
	ra := p.startAgentWith(false)
	spBirths(p, 0, 1000, 1, 2)
	p.spPublish("DDATA", sptest.Payload{Seq: 2, Metrics: []sptest.Metric{
		{Alias: 1, HasAlias: true, Value: int64(1001)}, {Alias: 3, HasAlias: true, Value: int64(7)}}})
	waitFor(t, 20*time.Second, "the unknown alias counted", func() (bool, string) {
		v := p.metricLine(`plantedge_sparkplug_unknown_aliases_total{source="broker"}`)
		return v == "1", v
	})
	p.waitQty("sp1", 1)
	if n := edge.requests(); n != 0 {
		t.Fatalf("%d rebirth requests for an alias of no metric read", n)
	}
	if m := machineStatus(ra, "sp1"); strings.Contains(m.Error, "waiting for a BIRTH") {
		t.Fatalf("the machine waits for a BIRTH of an alias it does not read: %q", m.Error)
	}
	for i := range 6 {
		// By name (read), but seq jumps: a gap each time.
		p.spPublish("DDATA", sptest.Payload{Seq: 9, Metrics: []sptest.Metric{{Name: "Counters/Good", Value: int64(1002 + i)}}})
		if i == 0 {
			edge.waitRequest()
		}
		spBirths(p, 0, int64(1002+i), 1, 2) // the answer
	}
	p.waitQty("sp1", 7)
	if n := edge.requests(); n != 1 {
		t.Errorf("%d rebirth requests, want 1 (at most one per 30 s)", n)
	}
}

// sparkplug_rebirth switched on by a reload takes effect, and the MQTT
// source is kept (one session).
func TestSparkplugRebirthSwitchedOnByAReload(t *testing.T) {
	t.Parallel()
	p := sparkplugRebirthPlant(t, false)
	edge := newEdgeSim(p)
	ra := p.startAgentWith(false)
	p.spPublish("DDATA", sptest.Payload{Seq: 0, Metrics: []sptest.Metric{{Alias: 1, HasAlias: true, Value: int64(1000)}}})
	waitFor(t, 20*time.Second, "unknown alias", func() (bool, string) {
		v := p.metricLine(`plantedge_sparkplug_unknown_aliases_total{source="broker"}`)
		return v == "1", v
	})
	if n := edge.requests(); n != 0 {
		t.Fatalf("%d requests while off", n)
	}
	p.editConfig("    client_id: plantedge-test\n", "    client_id: plantedge-test\n    sparkplug_rebirth: true\n")
	if err := ra.a.Reload(t.Context(), p.cfgPath); err != nil {
		t.Fatal(err)
	}
	p.spPublish("DDATA", sptest.Payload{Seq: 1, Metrics: []sptest.Metric{{Alias: 1, HasAlias: true, Value: int64(1001)}}})
	edge.waitRequest()
	st := ra.a.Status()
	if s := st.Sources[0]; s.Sessions != 1 {
		t.Errorf("source %+v: restarted by a reload that changed only sparkplug_rebirth", s)
	}
	waitFor(t, 10*time.Second, "status naming the request", func() (bool, string) {
		m := machineStatus(ra, "sp1")
		return strings.Contains(m.Error, "plantedge asked it for a rebirth at"), m.Error
	})
}
