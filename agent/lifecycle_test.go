package agent_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/plantedge/plantedge/agent"
	"github.com/plantedge/plantedge/connectors/mqtt/mqtttest"
	"github.com/plantedge/plantedge/internal/nettest"
	"github.com/plantedge/plantedge/odoo/odootest"
)

// A machine renamed in the configuration (press-1 to press-1b, the same
// counter): the renamed machine counts on from the counter's last value.
// It took that value as a new baseline, and the pieces made since the
// last reading under the old id were lost (5 of 20 in the probe).
func TestRenamedMachineCountsOn(t *testing.T) {
	p := newPlant(t, plantOptions{machines: []string{"press-1"}})
	ra := p.startAgent()
	m := p.machines[0]
	p.produce(m, 10, 0)
	p.waitExactQty(ra, "press-1", 10)
	full, err := os.ReadFile(p.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	renamed := strings.Replace(string(full), "  - id: press-1\n", "  - id: press-1b\n", 1)
	// And one of its settings: the reload's log names it.
	renamed = strings.Replace(renamed, "field: good, timestamp_field: ts } }\n", "field: good, timestamp_field: ts }, rollover: 1000000 }\n", 1)
	if renamed == string(full) {
		t.Fatalf("config not as expected:\n%s", full)
	}
	p.writeConfig(renamed)
	if err := ra.a.Reload(context.Background(), p.cfgPath); err != nil {
		t.Fatal(err)
	}
	p.produce(m, 5, 0)
	p.waitExactQty(ra, "press-1", 15) // the work order on the machine's work center
	if !strings.Contains(p.logs.String(), "renamed?") {
		t.Errorf("the rename is not logged:\n%s", p.logs.String())
	}
	full, _ = os.ReadFile(p.cfgPath)
	full = []byte(strings.Replace(string(full), "rollover: 1000000", "rollover: 2000000", 1))
	p.writeConfig(string(full))
	if err := ra.a.Reload(context.Background(), p.cfgPath); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(p.logs.String(), `settings_changed="press-1b good_count"`) {
		t.Errorf("the rollover change is not named by the reload's log:\n%s", p.logs.String())
	}
}

// A machine renamed while Odoo is away (the upgrade probe: 53 of 126
// pieces and half the scrap stayed held under the old id, then went to the
// dead letters): what the old id buffered goes to the new one, and Odoo
// ends exact — pieces and scrap from before and after the rename.
func TestRenameWithABacklogKeepsItsPieces(t *testing.T) {
	t.Parallel()
	p := newPlant(t, plantOptions{machines: []string{"press-1"}})
	ra := p.startAgent()
	m := p.machines[0]
	p.produce(m, 4, 0)
	p.waitExactQty(ra, "press-1", 4)
	p.odoo.SetDown(true)
	p.produce(m, 10, 2)
	waitFor(t, 10*time.Second, "the backlog buffered", func() (bool, string) {
		n := ra.a.Status().Buffer.Pending
		return n >= 2, fmt.Sprint(n)
	})
	p.editConfig("  - id: press-1\n", "  - id: press-1b\n")
	if err := ra.a.Reload(context.Background(), p.cfgPath); err != nil {
		t.Fatal(err)
	}
	p.produce(m, 5, 1)
	waitFor(t, 10*time.Second, "the old id's records taken over", func() (bool, string) {
		return strings.Contains(p.logs.String(), "a renamed machine takes over what its old id had of a counter"), ""
	})
	p.odoo.SetDown(false)
	p.waitExactQty(ra, "press-1", 19) // press-1's work center: press-1b's too
	waitFor(t, 15*time.Second, "the scrap booked", func() (bool, string) {
		q := p.scrapped("press-1")
		return q == 3, fmt.Sprint(q)
	})
	// (Odoo has a quantity a moment before its records' acknowledgement.)
	waitFor(t, 10*time.Second, "the buffer drained, nothing dead-lettered or held", func() (bool, string) {
		b := ra.a.Status().Buffer
		return b.Pending == 0 && b.DeadLetters == 0 && b.Unmapped == 0, fmt.Sprintf("%+v", b)
	})
}

// A rename undone (press-1 → press-1b → press-1) with Odoo reachable: the
// id back does not write its stale quantity over what the other id wrote
// (the self-probe: 9 instead of 19, and 69 instead of 120 over a chain).
func TestRenameBackKeepsWhatTheOtherIdWrote(t *testing.T) {
	p := newPlant(t, plantOptions{machines: []string{"press-1"}})
	ra := p.startAgent()
	m := p.machines[0]
	rename := func(from, to string) {
		t.Helper()
		p.editConfig("  - id: "+from+"\n", "  - id: "+to+"\n")
		if err := ra.a.Reload(context.Background(), p.cfgPath); err != nil {
			t.Fatal(err)
		}
	}
	p.produce(m, 4, 1)
	p.waitExactQty(ra, "press-1", 4)
	rename("press-1", "press-1b")
	p.produce(m, 10, 1)
	p.waitExactQty(ra, "press-1", 14)
	rename("press-1b", "press-1c")
	p.produce(m, 3, 0)
	p.waitExactQty(ra, "press-1", 17)
	rename("press-1c", "press-1")
	p.produce(m, 5, 1)
	p.waitExactQty(ra, "press-1", 22)
	waitFor(t, 15*time.Second, "the scrap booked", func() (bool, string) {
		q := p.scrapped("press-1")
		return q == 3, fmt.Sprint(q)
	})
}

// A rename while a quantity write and a scrap booking are in doubt (Odoo
// committed them and the answers were lost): the new id settles them under
// their external ids and counts nothing twice; nothing stays held under the
// old id (the self-probe: held for good, 14 of 20 pieces, a draft scrap).
func TestRenameWhileWritesAreInDoubt(t *testing.T) {
	t.Parallel()
	p := newPlant(t, plantOptions{machines: []string{"press-1"}})
	ra := p.startAgent()
	m := p.machines[0]
	p.produce(m, 5, 0)
	p.waitExactQty(ra, "press-1", 5)
	dropped := make(chan string, 4)
	p.odoo.OnDrop(func(model, method string) { dropped <- model + "." + method })
	p.odoo.FailNextCall("mrp.workorder", "write", 1, odootest.FaultCommitThenDrop)
	p.odoo.FailNextCall("stock.scrap", "load", 1, odootest.FaultCommitThenDrop)
	p.produce(m, 3, 2) // 8 written and 2 scrap loaded; both answers lost
	for range 2 {
		select {
		case <-dropped:
		case <-time.After(15 * time.Second):
			t.Fatal("the calls were not dropped")
		}
	}
	p.editConfig("  - id: press-1\n", "  - id: press-1b\n")
	if err := ra.a.Reload(context.Background(), p.cfgPath); err != nil {
		t.Fatal(err)
	}
	p.produce(m, 2, 1)
	p.waitExactQty(ra, "press-1", 10)
	waitFor(t, 20*time.Second, "the scrap booked once", func() (bool, string) {
		st := ra.a.Status()
		q := p.scrapped("press-1")
		return q == 3 && st.Buffer.Pending == 0, fmt.Sprintf("scrap %v, pending %d", q, st.Buffer.Pending)
	})
	if sc := p.odoo.Scraps(); len(sc) != 2 {
		t.Errorf("scraps %+v: want the booking in doubt and the one after", sc)
	}
	if st := ra.a.Status(); st.Buffer.Unmapped != 0 || st.Buffer.DeadLetters != 0 {
		t.Errorf("buffer %+v", st.Buffer)
	}
}

// A PLC replaced at the same address comes with counts of its own, above
// the old one's last value: with the machine's replaced mark set (a
// reload while the old one is gone) its first value is the baseline, not
// pieces; the reload names the setting, and the log the new baseline.
func TestReplacedMarkTakesTheNewPLCsValueAsBaseline(t *testing.T) {
	p := newPlant(t, plantOptions{machines: []string{"press-1"}})
	ra := p.startAgent()
	m := p.machines[0]
	p.produce(m, 10, 0)
	p.waitExactQty(ra, "press-1", 10)
	p.editConfig("  - id: press-1\n", "  - id: press-1\n    replaced: \"2026-12-02\"\n")
	if err := ra.a.Reload(context.Background(), p.cfgPath); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(p.logs.String(), `settings_changed="press-1 replaced"`) {
		t.Errorf("the reload's log does not name the mark")
	}
	m.mu.Lock()
	m.good += 40000 // the new PLC's own count: not made here
	m.start += 40000
	m.mu.Unlock()
	p.publish(m)
	p.produce(m, 7, 0)
	p.waitExactQty(ra, "press-1", 17)
	if !strings.Contains(p.logs.String(), "replaced mark changed") {
		t.Errorf("the new baseline is not logged")
	}
}

// A machine removed by a reload, or while the agent was stopped: the
// broker's persistent session keeps its topic's subscription, so its
// messages still come. They are this agent's own, not another agent's with
// the same client_id (the upgrade probe: status said so for good):
// skipped, logged at INFO, not counted as strays.
func TestRemovedTopicIsNotAnotherAgent(t *testing.T) {
	p := newPlant(t, plantOptions{machines: []string{"press-1", "press-2", "press-3"}})
	ra := p.startAgent()
	p.produce(p.machines[1], 2, 0)
	p.produce(p.machines[2], 2, 0)
	p.waitExactQty(ra, "press-3", 2)
	const skipped = "a topic an earlier configuration mapped"
	check := func(ra *runningAgent, m *simMachine, before int, what string, gone string) {
		t.Helper()
		var goneAt time.Time
		waitFor(t, 10*time.Second, what, func() (bool, string) {
			p.produce(m, 1, 0)
			if gone != "" && goneAt.IsZero() && strings.Contains(p.logs.String(), gone) {
				goneAt = time.Now()
			}
			// After a reload the source may unsubscribe the topic before
			// any message of it came (the reconnect came first: CI saw it):
			// none to misjudge then — a second of messages after it says so.
			return strings.Count(p.logs.String(), skipped) > before || (!goneAt.IsZero() && time.Since(goneAt) > time.Second), ""
		})
		if strings.Contains(p.logs.String(), "another agent or the old box") {
			t.Errorf("%s: a topic this agent subscribed to is taken for another agent's", what)
		}
		for _, s := range ra.a.Status().Sources {
			if s.StrayMessages != 0 {
				t.Errorf("%s: source %s counts %d strays", what, s.Name, s.StrayMessages)
			}
		}
	}
	p.dropLastMachine("press-3")
	if err := ra.a.Reload(context.Background(), p.cfgPath); err != nil {
		t.Fatal(err)
	}
	check(ra, p.machines[2], 0, "removed by a reload", "filters=[plant/press-3]")
	ra.stopNow(t)
	p.dropLastMachine("press-2")
	p.produce(p.machines[1], 1, 0) // queued in the session while the agent is away
	before := strings.Count(p.logs.String(), skipped)
	ra = p.startAgentWith(false)
	check(ra, p.machines[1], before, "removed while the agent was stopped", "")
}

// The broker and the edge box restart together (a site power cut) and the
// broker, without persistence, has lost the agent's session: what was
// published meanwhile at QoS 1 is gone, and the agent says so at its start
// (it remembers the broker had given it a session), not only when it
// happens while it runs — also when the broker's URL was written another
// way meanwhile (localhost for 127.0.0.1: the same session; compared as
// written, the loss went unsaid).
func TestBrokerSessionLostWhileTheAgentWasDownIsReported(t *testing.T) {
	for _, rewrite := range []bool{false, true} {
		t.Run(fmt.Sprintf("url_rewritten=%v", rewrite), func(t *testing.T) { brokerSessionLostWhileDown(t, rewrite) })
	}
}

func brokerSessionLostWhileDown(t *testing.T, rewrite bool) {
	p := newPlant(t, plantOptions{machines: []string{"press-1"}})
	ra := p.startAgent()
	p.produce(p.machines[0], 3, 0)
	p.waitExactQty(ra, "press-1", 3)
	ra.stop()
	if rewrite {
		p.editConfig("tcp://127.0.0.1:", "tcp://localhost:")
	}
	addr := p.broker.Addr()
	p.broker.Close()
	b, err := mqtttest.Start(addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	p.broker = b
	ra = p.startAgent()
	waitFor(t, 15*time.Second, "the lost session reported", func() (bool, string) {
		for _, s := range ra.a.Status().Sources {
			if s.Kind == "mqtt" {
				return strings.Contains(s.LastError, "the broker did not keep this client's session"), s.LastError
			}
		}
		return false, "no mqtt source"
	})
}

// A stop code missing from the map is logged once an hour per machine and
// code, not at every stop (the soak saw 58 of its 77 warnings from one
// code); the metric counts every stop.
func TestUnmappedReasonLoggedOncePerCode(t *testing.T) {
	p := newPlant(t, plantOptions{machines: []string{"press-1"}})
	ra := p.startAgent()
	m := p.machines[0]
	for range 3 {
		p.stop(m, "NOT-IN-MAP")
		time.Sleep(50 * time.Millisecond)
		p.run(m)
		time.Sleep(50 * time.Millisecond)
	}
	waitFor(t, 15*time.Second, "three lines", func() (bool, string) {
		return p.closedLines("press-1") == 3 && ra.a.Status().Buffer.Pending == 0, fmt.Sprint(p.closedLines("press-1"))
	})
	if n := strings.Count(p.logs.String(), "downtime reason not in the map"); n != 1 {
		t.Errorf("%d log lines for one unmapped code, want 1", n)
	}
	if v, _ := metric(p.metrics(), "plantedge_unmapped_downtime_reasons_total", `machine="press-1"`); v != 3 {
		t.Errorf("unmapped_downtime_reasons_total %v, want 3", v)
	}
}

// A source that sends a text as the reason (an alarm with a count in it)
// makes a new code at every stop: at most UnmappedCodesLogged of them are
// logged one by one an hour per machine, the rest in one line that says
// so (the spec audit: 13,232 lines for 20,000 texts); the metric counts
// every stop.
func TestUnmappedReasonsOfAMachineAreCapped(t *testing.T) {
	p := newPlant(t, plantOptions{machines: []string{"press-1"}})
	ra := p.startAgent()
	m := p.machines[0]
	const stops = agent.UnmappedCodesLogged + 5
	for i := range stops {
		p.stop(m, fmt.Sprintf("ALARM %d: jam at station 4", i))
		time.Sleep(50 * time.Millisecond)
		p.run(m)
		time.Sleep(50 * time.Millisecond)
	}
	waitFor(t, 30*time.Second, "the lines", func() (bool, string) {
		return p.closedLines("press-1") == stops && ra.a.Status().Buffer.Pending == 0, fmt.Sprint(p.closedLines("press-1"))
	})
	l := p.logs.String()
	if n := strings.Count(l, "downtime reason not in the map"); n != agent.UnmappedCodesLogged {
		t.Errorf("%d log lines of single unmapped codes, want %d", n, agent.UnmappedCodesLogged)
	}
	if n := strings.Count(l, "more downtime reasons not in the map than are said one by one"); n != 1 {
		t.Errorf("%d lines saying the rest are not logged one by one, want 1:\n%s", n, l)
	}
	if v, _ := metric(p.metrics(), "plantedge_unmapped_downtime_reasons_total", `machine="press-1"`); v != stops {
		t.Errorf("unmapped_downtime_reasons_total %v, want %d", v, stops)
	}
}

// Hours into an Odoo outage the log says again what is waiting (the soak
// found one line at its start and one at its end, nothing between).
func TestLongOutageIsRemindedInTheLog(t *testing.T) {
	t.Parallel()
	p := newPlant(t, plantOptions{machines: []string{"press-1"}})
	p.outageReminder = 300 * time.Millisecond
	p.odoo.SetDown(true)
	ra := p.startAgent()
	p.produce(p.machines[0], 4, 0)
	waitFor(t, 15*time.Second, "a reminder", func() (bool, string) {
		return strings.Contains(p.logs.String(), "odoo still not taking the buffer") && strings.Contains(p.logs.String(), "oldest_age="),
			fmt.Sprint(ra.a.Status().Buffer.Pending)
	})
	// The start of an outage is a warning (the agent rides through it:
	// nothing to do), its reminders errors (it lasts: someone should look).
	l := p.logs.String()
	if !strings.Contains(l, `level=WARN msg="odoo unreachable`) || strings.Contains(l, `level=ERROR msg="odoo unreachable`) ||
		!strings.Contains(l, `level=ERROR msg="odoo still not taking the buffer`) {
		t.Errorf("levels of the outage's lines:\n%s", l)
	}
}

// Clients that open connections to the local API and keep them (the
// security probe held 20,000: the agent ran out of file descriptors and
// status said "agent not answering") are bounded: an idle keep-alive
// connection is closed, and at most 256 are accepted at once.
func TestLocalAPIBoundsItsConnections(t *testing.T) {
	p := newPlant(t, plantOptions{machines: []string{"press-1"}})
	p.apiIdle = 300 * time.Millisecond
	ra := p.startAgent()
	addr := ra.a.Addr()

	// An idle keep-alive connection is closed by the agent.
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: "+addr+"\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	_ = c.SetReadDeadline(time.Now().Add(20 * time.Second))
	if _, err := br.ReadByte(); !errors.Is(err, io.EOF) {
		t.Fatalf("idle keep-alive connection: read %v, want EOF (closed by the agent)", err)
	}

	// Connections that send nothing: the agent takes a bounded number.
	fds := func() int {
		ents, err := os.ReadDir("/proc/self/fd")
		if err != nil {
			t.Fatal(err)
		}
		return len(ents)
	}
	base := fds()
	const clients = 300
	for range clients {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
	}
	accepted := func() int { return fds() - base - clients }
	waitFor(t, 10*time.Second, "the agent accepting connections", func() (bool, string) {
		return accepted() >= 250, fmt.Sprint(accepted())
	})
	time.Sleep(300 * time.Millisecond) // would the accept loop go on?
	if n := accepted(); n > 264 {
		t.Errorf("the agent holds %d of %d idle connections, want a bounded number (256)", n, clients)
	}
}

// Odoo answering with a lock conflict or a serialization failure is up,
// not unreachable: the log says what it is, as a warning (the Odoo probe
// read "odoo unreachable" at ERROR).
func TestOdooBusyIsNotUnreachable(t *testing.T) {
	t.Parallel()
	p := newPlant(t, plantOptions{machines: []string{"press-1"}})
	ra := p.startAgent()
	p.odoo.FailNextCall("mrp.workorder", "write", 1, odootest.FaultSerialization)
	p.produce(p.machines[0], 4, 0)
	p.waitExactQty(ra, "press-1", 4)
	// The end of the spell is logged at the end of the round that wrote
	// the quantity: after Odoo has it (read at once, the log did not have
	// it yet: failed once in CI).
	waitFor(t, 15*time.Second, "the end of the busy spell logged", func() (bool, string) {
		return strings.Contains(p.logs.String(), "odoo does the calls again"), ""
	})
	l := p.logs.String()
	if !strings.Contains(l, "level=WARN msg=\"odoo is up but could not do the call now") {
		t.Errorf("no warning that Odoo was busy:\n%s", l)
	}
	if strings.Contains(l, "odoo unreachable") {
		t.Errorf("a busy Odoo logged as unreachable:\n%s", l)
	}
	if !strings.Contains(l, "odoo does the calls again") || strings.Contains(l, "odoo reachable again") {
		t.Errorf("the end of a busy spell logged as Odoo reachable again:\n%s", l)
	}
	// Busy, then away: the outage is logged as such (the self-probe: the
	// journal kept the busy warning through it).
	p.odoo.SetFaultRate(odootest.FaultSerialization, 1, 1)
	p.produce(p.machines[0], 1, 0)
	waitFor(t, 15*time.Second, "Odoo busy again", func() (bool, string) {
		return strings.Count(p.logs.String(), "odoo is up but could not do the call now") == 2, ""
	})
	p.odoo.SetDown(true)
	waitFor(t, 15*time.Second, "the outage logged", func() (bool, string) {
		return strings.Contains(p.logs.String(), "level=WARN msg=\"odoo unreachable"), ""
	})
	p.odoo.SetFaultRate(odootest.FaultSerialization, 0, 1)
	p.odoo.SetDown(false)
	p.waitExactQty(ra, "press-1", 5)
}

// Two work orders in progress on one work center: counts go to the
// earliest started, and status names the other (the Odoo probe found it
// only in the log, which said it at every round).
func TestTwoWorkOrdersInProgressShowInStatus(t *testing.T) {
	t.Parallel()
	p := newPlant(t, plantOptions{machines: []string{"press-1"}})
	mo := p.odoo.AddProduction("WH/MO/second", p.product, 100)
	// Started within the second of the first: the one created last.
	p.woIDs["press-1"] = p.odoo.AddWorkorder(mo, p.wcIDs["press-1"], "WO press-1 second", "progress")
	ra := p.startAgent()
	for range 3 {
		p.produce(p.machines[0], 2, 0)
		time.Sleep(300 * time.Millisecond) // a round each
	}
	p.waitExactQty(ra, "press-1", 6)
	for _, m := range ra.a.Status().Machines {
		if m.ID == "press-1" && !slices.Equal(m.OtherWorkOrders, []string{"WO press-1"}) {
			t.Errorf("status of press-1: other work orders %q, want the first one", m.OtherWorkOrders)
		}
	}
	if n := strings.Count(p.logs.String(), "several work orders in progress"); n != 1 {
		t.Errorf("%d log lines of the two work orders, want 1 (once a minute)", n)
	}
}

// A rush order: the operator pauses the running work order (Odoo's Pause:
// its timer stops, it stays in progress) and starts the rush order on the
// same press, finishes it, and resumes the first. The pieces and scrap of
// the rush run go to the rush order — the one an operator's timer runs on,
// not the earliest started (the gaps probe: A showed 100 for 50 made, and
// the rush order's scrap was booked as A's product).
func TestPausedWorkOrderForARushOrder(t *testing.T) {
	for _, v := range []int{17, 19} {
		t.Run(fmt.Sprint(v), func(t *testing.T) {
			p := newPlant(t, plantOptions{version: v, machines: []string{"press-1"}})
			ra := p.startAgent()
			m := p.machines[0]
			a := p.woIDs["press-1"]
			p.produce(m, 30, 0)
			p.waitExactQty(ra, "press-1", 30)

			p.adminCall("mrp.workorder", "button_pending", []any{[]any{a}}, nil)
			rush := p.odoo.AddProduct("Rush part")
			mo := p.odoo.AddProduction("WH/MO/rush", rush, 50)
			b := p.odoo.AddWorkorder(mo, p.wcIDs["press-1"], "WO rush", "ready")
			p.adminCall("mrp.workorder", "button_start", []any{[]any{b}}, nil)
			p.produce(m, 40, 4)
			waitFor(t, 20*time.Second, "the rush run on the rush order", func() (bool, string) {
				var scrapped float64
				for _, s := range p.odoo.Scraps() {
					if s.WorkorderID == b && s.ProductID == rush && s.State == "done" {
						scrapped += s.Qty
					}
				}
				return p.woQty(b) == 40 && scrapped == 4 && ra.a.Status().Buffer.Pending == 0,
					fmt.Sprintf("rush order %v of 40, scrap %v of 4, paused order %v", p.woQty(b), scrapped, p.woQty(a))
			})
			p.adminCall("mrp.workorder", "button_finish", []any{[]any{b}}, nil)
			p.adminCall("mrp.workorder", "button_start", []any{[]any{a}}, nil) // resumed
			p.produce(m, 20, 0)
			p.waitExactQty(ra, "press-1", 50)
			for _, s := range p.odoo.Scraps() {
				if s.ProductID != rush || s.WorkorderID != b {
					t.Errorf("scrap booked on product %d, work order %d; the rush run's is %d's, on %d", s.ProductID, s.WorkorderID, rush, b)
				}
			}
			if got := p.odoo.Workorder(b).QtyProduced; got != 40 {
				t.Errorf("the rush order finished with %v, want its 40", got)
			}
		})
	}
}

// The operator starts a rush order without pausing the running one (both
// timers run), then takes a break on the rush order while the press runs
// on (its timer stops, the first one's still runs): the rush order keeps
// the pieces — work last began on it. Finished, the first one takes them
// again. (The attribution probe: the earliest started took them, 70 for
// 30, and took them back whenever no timer ran on the rush order.)
func TestRushOrderStartedWithoutAPause(t *testing.T) {
	t.Parallel()
	for _, v := range []int{17, 19} {
		t.Run(fmt.Sprint(v), func(t *testing.T) {
			p := newPlant(t, plantOptions{version: v, machines: []string{"press-1"}})
			a := p.woIDs["press-1"]
			p.adminCall("mrp.workorder", "button_start", []any{[]any{a}}, nil) // A's timer
			ra := p.startAgent()
			m := p.machines[0]
			p.produce(m, 30, 0)
			p.waitExactQty(ra, "press-1", 30)
			time.Sleep(1100 * time.Millisecond) // Odoo's times are to the second
			mo := p.odoo.AddProduction("WH/MO/rush", p.product, 100)
			b := p.odoo.AddWorkorder(mo, p.wcIDs["press-1"], "WO rush", "ready")
			p.adminCall("mrp.workorder", "button_start", []any{[]any{b}}, nil)
			p.woIDs["press-1"] = b
			p.produce(m, 40, 0)
			p.waitExactQty(ra, "press-1", 40)
			p.adminCall("mrp.workorder", "button_pending", []any{[]any{b}}, nil) // a break; the press runs on
			p.produce(m, 5, 0)
			p.waitExactQty(ra, "press-1", 45)
			p.adminCall("mrp.workorder", "button_finish", []any{[]any{b}}, nil)
			p.woIDs["press-1"] = a
			p.produce(m, 20, 0)
			p.waitExactQty(ra, "press-1", 50)
			if got := p.odoo.Workorder(b).QtyProduced; got != 45 {
				t.Errorf("the rush order finished with %v, want its 45", got)
			}
		})
	}
}

// Odoo away while the operator pauses A, runs a rush order B, finishes it
// and resumes A: once Odoo is back, the scrap made during B is booked on
// B, with B's product; A's before and after B, on A. (The second
// attribution probe: all of it on A, the rush part scrapped as A's
// product. The pieces go to A, the order in progress: Odoo takes no
// quantity on a finished one — the README's limit.)
func TestScrapOfARushOrderRunDuringAnOutage(t *testing.T) {
	t.Parallel()
	p, ra, m, a := outageOnA(t, 19)
	p.produce(m, 0, 1)                  // on A
	time.Sleep(1100 * time.Millisecond) // Odoo's times are to the second
	rush := p.odoo.AddProduct("Rush")
	b := p.odoo.AddWorkorder(p.odoo.AddProduction("WH/MO/rush", rush, 50), p.wcIDs["press-1"], "WO rush", "progress")
	time.Sleep(1100 * time.Millisecond)
	p.produce(m, 0, 2) // on B
	time.Sleep(1100 * time.Millisecond)
	p.odoo.SetWorkorderState(b, "done")
	time.Sleep(1100 * time.Millisecond)
	p.produce(m, 0, 3) // on A, resumed
	p.odoo.SetDown(false)
	waitFor(t, 30*time.Second, "the scrap booked", func() (bool, string) {
		on := map[[2]int64]float64{}
		for _, s := range p.odoo.Scraps() {
			on[[2]int64{s.WorkorderID, s.ProductID}] += s.Qty
		}
		ok := on[[2]int64{a, p.product}] == 4 && on[[2]int64{b, rush}] == 2 && len(on) == 2
		return ok && ra.a.Status().Buffer.Pending == 0, fmt.Sprintf("%v (A %d, B %d)", on, a, b)
	})
}

// outageOnA starts a plant whose press-1 works on order A (started 10
// minutes ago), makes 10 pieces that reach Odoo, then takes Odoo away: a
// backlog after half a second, and work orders that change within seconds.
func outageOnA(t *testing.T, version int) (p *plant, ra *runningAgent, m *simMachine, a int64) {
	t.Helper()
	p = newPlant(t, plantOptions{version: version, machines: []string{"press-1"}})
	p.scrapBacklog = 500 * time.Millisecond
	p.scrapSlack = time.Millisecond
	a = p.woIDs["press-1"]
	p.odoo.SetWorkorderDateStart(a, time.Now().Add(-10*time.Minute))
	ra = p.startAgent()
	m = p.machines[0]
	p.produce(m, 10, 0)
	p.waitExactQty(ra, "press-1", 10)
	p.odoo.SetDown(true)
	return p, ra, m, a
}

// An outage's backlog on machines that each worked one order throughout
// reaches Odoo without a timeline per machine: before, every machine's
// pieces and stops read its work center's time lines (three calls and
// more each), and the drain of 100 machines took 405 calls, 110-120 s at
// the default rate, for SPEC's 30 s (the SPEC probe). One machine's
// work center also ran a rush order during the outage: its backlog is
// still cut by the timeline. Odoo 17 and 19.
func TestOutageBacklogOfOneOrderPerMachineReadsNoTimelines(t *testing.T) {
	t.Parallel()
	for _, version := range []int{17, 19} {
		t.Run(fmt.Sprint(version), func(t *testing.T) {
			ids := []string{"press-1", "press-2", "press-3", "press-4", "press-5"}
			p := newPlant(t, plantOptions{version: version, machines: ids})
			p.scrapBacklog = 500 * time.Millisecond
			p.scrapSlack = time.Millisecond
			for _, id := range ids {
				p.odoo.SetWorkorderDateStart(p.woIDs[id], time.Now().Add(-10*time.Minute))
			}
			press := func(method string, id int64) { t.Helper(); p.press(t, 0, method, id) }
			a := p.woIDs["press-5"]
			press("button_start", a) // its operator's timer
			ra := p.startAgent()
			for _, m := range p.machines {
				p.produce(m, 2, 0)
			}
			for _, id := range ids {
				p.waitExactQty(ra, id, 2)
			}
			p.odoo.SetDown(true)
			for i, m := range p.machines {
				p.produce(m, int64(3+i), 1)
				p.stop(m, "JAM")
				time.Sleep(20 * time.Millisecond)
				p.run(m)
			}
			// press-5: its order paused for a rush order, which made 4 and
			// was finished, then resumed; all while Odoo was away.
			time.Sleep(1100 * time.Millisecond) // Odoo's times are to the second
			rush := p.odoo.AddWorkorder(p.odoo.AddProduction("WH/MO/rush", p.odoo.AddProduct("Rush"), 50), p.wcIDs["press-5"], "WO rush", "ready")
			press("button_pending", a)
			press("button_start", rush)
			time.Sleep(1100 * time.Millisecond)
			p.produce(p.machines[4], 4, 0)
			time.Sleep(1100 * time.Millisecond)
			press("button_finish", rush)
			press("button_start", a)
			time.Sleep(1100 * time.Millisecond)
			before := p.odoo.CallCount("mrp.workcenter.productivity", "search_read")
			p.odoo.SetDown(false)
			waitFor(t, 30*time.Second, "the backlog written", func() (bool, string) {
				var got []float64
				ok := ra.a.Status().Buffer.Pending == 0
				for i, id := range ids {
					got = append(got, p.woQty(p.woIDs[id]))
					ok = ok && p.woQty(p.woIDs[id]) == float64(2+3+i)
				}
				return ok, fmt.Sprintf("quantities %v, want 5 6 7 8 9; pending %d", got, ra.a.Status().Buffer.Pending)
			})
			// The rush order's 4 pieces: a finished order takes no quantity,
			// so they wait in the dead letters, saying so (its stretch was
			// cut by the timeline, not given to the resumed order).
			if dl := ra.a.Status().Buffer.DeadLetters; dl != 1 {
				t.Errorf("%d dead letters, want the rush order's pieces", dl)
			}
			lines := map[int64]int{}
			for _, l := range p.odoo.Productivity() {
				if l.XMLID != "" {
					lines[l.WorkorderID]++
				}
			}
			for _, id := range ids {
				if lines[p.woIDs[id]] != 1 {
					t.Errorf("%s: %d stop lines on its order, want 1 (%v)", id, lines[p.woIDs[id]], lines)
				}
			}
			// press-5's timelines (two calls a read: the lines begun by the
			// time asked, and those since; for its pieces, scrap and stops,
			// a stretch a round), and one call a round for every work
			// center together: 10 here. A timeline per machine made 32.
			if n := p.odoo.CallCount("mrp.workcenter.productivity", "search_read") - before; n > 14 {
				t.Errorf("%d reads of time lines for the backlog of %d machines, want at most 14 (not a timeline per machine)", n, len(ids))
			}
		})
	}
}

// The pieces and stops of the same outage go to the order they were made
// on (pieces a stretch a round), instead of all to the order in progress when Odoo is
// back (the second attribution probe, findings 1–2: the rush order's pieces
// raised the resumed order, or the paused order's raised the rush order).
// A finished order takes no quantity in Odoo: its pieces wait in the dead
// letters, saying so, rather than count towards another order's quantity.
func TestPiecesOfARushOrderRunDuringAnOutage(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		version  int
		finished bool // the rush order finished and A resumed before Odoo is back
	}{
		{"rush order finished, 19", 19, true},
		{"rush order finished, 17", 17, true},
		{"rush order still running, 17", 17, false},
		{"rush order still running, 19", 19, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, ra, m, a := outageOnA(t, tc.version)
			stop := func() { // a stop and its end, on the order worked on
				p.stop(m, "JAM")
				time.Sleep(50 * time.Millisecond)
				p.run(m)
			}
			p.produce(m, 3, 0) // on A
			stop()
			time.Sleep(1100 * time.Millisecond) // Odoo's times are to the second
			rush := p.odoo.AddProduct("Rush")
			b := p.odoo.AddWorkorder(p.odoo.AddProduction("WH/MO/rush", rush, 50), p.wcIDs["press-1"], "WO rush", "progress")
			time.Sleep(1100 * time.Millisecond)
			p.produce(m, 5, 0) // on B
			stop()
			stopsOn := []int64{a, b}
			wantA, wantB := 13.0, 5.0
			if tc.finished {
				time.Sleep(1100 * time.Millisecond)
				p.odoo.SetWorkorderState(b, "done")
				time.Sleep(1100 * time.Millisecond)
				p.produce(m, 4, 0) // on A, resumed
				stop()
				stopsOn = append(stopsOn, a)
				wantA, wantB = 17, p.woQty(b) // what finishing it left (17: its whole quantity)
			}
			p.odoo.SetDown(false)
			waitFor(t, 30*time.Second, "the pieces written", func() (bool, string) {
				st := ra.a.Status()
				return p.woQty(a) == wantA && p.woQty(b) == wantB && st.Buffer.Pending == 0,
					fmt.Sprintf("A %v of %v, B %v of %v, pending %d", p.woQty(a), wantA, p.woQty(b), wantB, st.Buffer.Pending)
			})
			// Each stop on the order it happened on (before: all on the
			// order in progress when Odoo was back).
			lines := p.odoo.Productivity()
			slices.SortFunc(lines, func(x, y odootest.ProductivityLine) int { return x.Start.Compare(y.Start) })
			var on []int64
			for _, l := range lines {
				on = append(on, l.WorkorderID)
			}
			if !slices.Equal(on, stopsOn) {
				t.Errorf("the stops' work orders %v, want %v (A %d, B %d)", on, stopsOn, a, b)
			}
			dls, err := agent.NewAPIClient(p.listen).DeadLetters(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if !tc.finished {
				if len(dls) != 0 {
					t.Errorf("dead letters %+v, want none", dls)
				}
				return
			}
			if len(dls) != 1 || dls[0].Key != "press-1/good" || !strings.Contains(dls[0].Reason, "5 pieces made from") ||
				!strings.Contains(dls[0].Reason, "go to work order WO rush of WH/MO/rush (") || !strings.Contains(dls[0].Reason, "which is done") {
				t.Errorf("dead letters %+v, want one of the rush order's 5 pieces, saying so", dls)
			}
		})
	}
}

// Odoo 17: an order that had made its whole quantity is paused (waiting
// for quality control), a rush order runs, and the first is resumed for
// two replacement pieces. It counts on from its quantity: its
// qty_producing equal to qty_remaining read as a fresh start's default,
// counted from 0 (the second attribution probe: 2 for 32).
func TestResumedOrderThatMadeItsQuantity(t *testing.T) {
	t.Parallel()
	p := newPlant(t, plantOptions{version: 17, machines: []string{"press-1"}})
	p.odoo.SetWorkorderState(p.woIDs["press-1"], "done")
	mo := p.odoo.AddProduction("WH/MO/small", p.product, 30)
	a := p.odoo.AddWorkorder(mo, p.wcIDs["press-1"], "WO small", "ready")
	p.adminCall("mrp.workorder", "button_start", []any{[]any{a}}, nil)
	p.woIDs["press-1"] = a
	ra := p.startAgent()
	m := p.machines[0]
	p.produce(m, 30, 0)
	p.waitExactQty(ra, "press-1", 30)
	time.Sleep(1100 * time.Millisecond) // Odoo's times are to the second
	p.adminCall("mrp.workorder", "button_pending", []any{[]any{a}}, nil)
	rush := p.odoo.AddProduct("Rush")
	b := p.odoo.AddWorkorder(p.odoo.AddProduction("WH/MO/rush", rush, 50), p.wcIDs["press-1"], "WO rush", "ready")
	p.adminCall("mrp.workorder", "button_start", []any{[]any{b}}, nil)
	p.woIDs["press-1"] = b
	p.produce(m, 20, 0)
	p.waitExactQty(ra, "press-1", 20)
	time.Sleep(1100 * time.Millisecond)
	p.adminCall("mrp.workorder", "button_pending", []any{[]any{b}}, nil)
	p.adminCall("mrp.workorder", "button_start", []any{[]any{a}}, nil)
	p.woIDs["press-1"] = a
	p.produce(m, 2, 0)
	waitFor(t, 15*time.Second, "the resumed order's pieces", func() (bool, string) {
		return p.qty("press-1") == 32 && ra.a.Status().Buffer.Pending == 0, fmt.Sprintf("%v of 32", p.qty("press-1"))
	})
	if q := p.odoo.Workorder(b).QtyProducing; q != 20 {
		t.Errorf("the rush order shows %v, want its 20", q)
	}
}

// Press-1 breaks mid-job; the planner moves its work order to the
// alternative press-2, which makes part of it; press-1 is repaired and the
// order moved back. Odoo ends with every piece: press-1 counts on from the
// order's quantity (the gaps probe: 40 for 60, press-2's pieces written
// over by press-1's stored count).
func TestWorkOrderMovedToAnotherPressAndBack(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		version int
		inDoubt bool // press-2's write lands, its answer is lost, and the order is moved back meanwhile
	}{{17, false}, {19, false}, {17, true}, {19, true}} {
		t.Run(fmt.Sprintf("%d in doubt %v", tc.version, tc.inDoubt), func(t *testing.T) {
			p := newPlant(t, plantOptions{version: tc.version, machines: []string{"press-1", "press-2"}, noWO: []string{"press-2"}})
			ra := p.startAgent()
			m1, m2 := p.machines[0], p.machines[1]
			a := p.woIDs["press-1"]
			p.produce(m1, 30, 0)
			p.waitExactQty(ra, "press-1", 30)
			p.stop(m1, "JAM")
			move := func(to string) {
				p.adminCall("mrp.workorder", "write", []any{[]any{a}, map[string]any{"workcenter_id": p.wcIDs[to]}}, nil)
				ra.a.Flush() // the work centers' orders read again
			}
			move("press-2")
			if tc.inDoubt {
				var once sync.Once
				p.odoo.OnDrop(func(model, method string) {
					if model == "mrp.workorder" && method == "write" {
						once.Do(func() { go move("press-1") })
					}
				})
				p.odoo.FailNextCall("mrp.workorder", "write", 1, odootest.FaultCommitThenDrop)
			}
			p.produce(m2, 20, 0)
			waitFor(t, 15*time.Second, "press-2's pieces", func() (bool, string) {
				return p.qty("press-1") == 50 && (tc.inDoubt || ra.a.Status().Buffer.Pending == 0), fmt.Sprint(p.qty("press-1"))
			})
			if !tc.inDoubt {
				move("press-1")
			}
			p.run(m1)
			p.produce(m1, 10, 0)
			waitFor(t, 20*time.Second, "every piece", func() (bool, string) {
				return p.qty("press-1") == 60 && ra.a.Status().Buffer.Pending == 0, fmt.Sprintf("%v of 60", p.qty("press-1"))
			})
			if !strings.Contains(p.logs.String(), "the work order came back to this machine from another") {
				t.Error("the return of the work order not logged")
			}
			if strings.Contains(p.logs.String(), "quantity was changed in Odoo since plantedge wrote it") {
				t.Error("the other press's pieces taken for an edit in Odoo")
			}
			// Back on press-1 for good, an edit in Odoo is one as always:
			// the next write replaces it with the count (it was taken for
			// another return, and the pieces added on top: the
			// attribution probe).
			p.adminCall("mrp.workorder", "write", []any{[]any{a}, map[string]any{map[bool]string{false: "qty_producing", true: "qty_produced"}[tc.version >= 19]: 90.0}}, nil)
			p.produce(m1, 5, 0)
			waitFor(t, 15*time.Second, "the count after an edit", func() (bool, string) {
				return p.qty("press-1") == 65 && ra.a.Status().Buffer.Pending == 0, fmt.Sprintf("%v of 65", p.qty("press-1"))
			})
		})
	}
}

// A counter's factor: a 4-cavity tool whose PLC counts strokes gives the
// work order four pieces a stroke; scrap weighed in half units books half.
func TestCounterFactor(t *testing.T) {
	p := newPlant(t, plantOptions{machines: []string{"press-1"}})
	p.setFactor("good", "4")
	p.setFactor("scrap", "0.5")
	ra := p.startAgent()
	m := p.machines[0]
	p.produce(m, 10, 4)
	p.produce(m, 3, 0)
	waitFor(t, 15*time.Second, "pieces and scrap in Odoo", func() (bool, string) {
		var scrapped float64
		for _, s := range p.odoo.Scraps() {
			scrapped += s.Qty
		}
		return p.qty("press-1") == 52 && scrapped == 2 && ra.a.Status().Buffer.Pending == 0,
			fmt.Sprintf("%v of 52 pieces, %v of 2 scrapped", p.qty("press-1"), scrapped)
	})
	for _, ms := range ra.a.Status().Machines {
		if ms.ID == "press-1" && ms.GoodCount != 52 {
			t.Errorf("status: good_count %v, want the 52 pieces", ms.GoodCount)
		}
	}
}

// Odoo answering in seconds: status and the log say so (the Odoo probe saw
// a backlog 38 s behind while status said online and the log nothing),
// and say when it is fast again.
func TestSlowOdooIsShown(t *testing.T) {
	t.Parallel()
	p := newPlant(t, plantOptions{machines: []string{"press-1"}})
	p.editConfig("  timeout: 2s\n  request_limit: 3s\n", "  timeout: 5s\n  request_limit: 6s\n")
	ra := p.startAgent()
	p.odoo.SetLatency(2500 * time.Millisecond)
	made := 0
	waitFor(t, 90*time.Second, "status saying Odoo is slow", func() (bool, string) {
		p.produce(p.machines[0], 1, 0) // a write to make each round
		made++
		o := ra.a.Status().Odoo
		return o.Slow && o.CallSeconds >= 2, fmt.Sprintf("%+v", o)
	})
	if v, _ := metric(p.metrics(), "plantedge_odoo_request_seconds_average"); v < 1.5 { // (a request answered since may lower it)
		t.Errorf("plantedge_odoo_request_seconds_average %v with Odoo slow", v)
	}
	p.odoo.SetLatency(0)
	p.waitExactQty(ra, "press-1", float64(made))
	if !strings.Contains(p.logs.String(), "odoo answers slowly") {
		t.Error("no log line that Odoo answers slowly")
	}
	for i := range 20 {
		p.produce(p.machines[0], 1, 0)
		p.waitExactQty(ra, "press-1", float64(made+1+i))
		if !ra.a.Status().Odoo.Slow {
			break
		}
	}
	if o := ra.a.Status().Odoo; o.Slow || o.CallSeconds >= 1 {
		t.Errorf("Odoo fast again, status says %+v", o)
	}
	if !strings.Contains(p.logs.String(), "odoo answers quickly again") {
		t.Error("no log line that Odoo is fast again")
	}
}

// A failure that lasts until a person acts (here a wrong path: 404), after
// one that comes and goes (nothing listening), is logged at once at ERROR
// — not at the 15-minute reminder (the second self-probe).
func TestLastingOdooFailureAfterAnOutageIsAnError(t *testing.T) {
	p := newPlant(t, plantOptions{machines: []string{"press-1"}})
	// Odoo's address: nothing listens there until the server comes up
	// below, and nothing takes it meanwhile — not the agent's API, whose
	// port newPlant picked but the agent binds only at its start (a port
	// merely free a moment ago was that one at times, with a narrow
	// PLANTEDGE_TEST_PORTS: the agent's API answered as Odoo).
	odooPort := nettest.ReservePort(t, p.listen)
	p.editConfig(p.odoo.URL(), "http://"+odooPort.Addr())
	p.startAgent()
	p.produce(p.machines[0], 2, 0)
	waitFor(t, 15*time.Second, "the outage logged", func() (bool, string) {
		return strings.Contains(p.logs.String(), `level=WARN msg="odoo unreachable`), ""
	})
	l, err := odooPort.Listen()
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.NotFoundHandler(), ReadHeaderTimeout: time.Second}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close() })
	waitFor(t, 30*time.Second, "the 404 logged at ERROR", func() (bool, string) {
		return strings.Contains(p.logs.String(), `level=ERROR msg="odoo cannot be reached as configured`), ""
	})
}

// The operator's own buttons during an outage: Pause A, Start rush order
// B, Pause B (it stays in progress, waiting for material), Resume A. Each
// stretch of pieces and each stop goes to the order worked on then, told
// by the time lines: by the orders' first starts, A's resumed pieces went
// to B (the review: A 19 and B 9 for 23 and 5).
func TestRushOrderPausedAndFirstResumedDuringAnOutage(t *testing.T) {
	t.Parallel()
	for _, version := range []int{17, 19} {
		t.Run(fmt.Sprint(version), func(t *testing.T) {
			p, ra, m, a := outageOnA(t, version)
			press := func(method string, id int64) { t.Helper(); p.press(t, 0, method, id) }
			stop := func() {
				p.stop(m, "JAM")
				time.Sleep(50 * time.Millisecond)
				p.run(m)
			}
			press("button_start", a) // the operator's timer on A
			p.produce(m, 3, 0)
			stop()
			time.Sleep(1100 * time.Millisecond) // Odoo's times are to the second
			b := p.odoo.AddWorkorder(p.odoo.AddProduction("WH/MO/rush", p.odoo.AddProduct("Rush"), 50), p.wcIDs["press-1"], "WO rush", "ready")
			press("button_pending", a)
			press("button_start", b)
			time.Sleep(1100 * time.Millisecond)
			p.produce(m, 5, 0)
			stop()
			time.Sleep(1100 * time.Millisecond)
			press("button_pending", b)
			press("button_start", a)
			time.Sleep(1100 * time.Millisecond)
			p.produce(m, 4, 0)
			stop()
			p.odoo.SetDown(false)
			waitFor(t, 30*time.Second, "the pieces written", func() (bool, string) {
				return p.woQty(a) == 17 && p.woQty(b) == 5 && ra.a.Status().Buffer.Pending == 0,
					fmt.Sprintf("A %v of 17, B %v of 5, pending %d", p.woQty(a), p.woQty(b), ra.a.Status().Buffer.Pending)
			})
			p.produce(m, 6, 0) // live, on A
			waitFor(t, 15*time.Second, "the live pieces", func() (bool, string) {
				return p.woQty(a) == 23 && p.woQty(b) == 5, fmt.Sprintf("A %v of 23, B %v of 5", p.woQty(a), p.woQty(b))
			})
			var on []int64
			for _, l := range p.odoo.Productivity() {
				if l.XMLID != "" { // the agent's, not the operator's timers
					on = append(on, l.WorkorderID)
				}
			}
			slices.Sort(on)
			if want := []int64{a, a, b}; !slices.Equal(on, want) || a > b {
				t.Errorf("the stops' work orders %v, want %v", on, want)
			}
			if n := ra.a.Status().Buffer.DeadLetters; n != 0 {
				t.Errorf("%d dead letters", n)
			}
		})
	}
}

// A machine clock minutes behind Odoo's makes each new order's first
// pieces look made before it started. With the link up they go to the
// order in progress, as they reach Odoo: only a backlog is cut by when it
// was made (the review: the new order showed 0 of 5, its pieces
// dead-lettered one a round, or written to the paused order).
func TestClockMinutesBehindMovesNoLivePieces(t *testing.T) {
	t.Parallel()
	for _, finished := range []bool{true, false} {
		t.Run(map[bool]string{true: "previous order finished", false: "previous order paused"}[finished], func(t *testing.T) {
			p := newPlant(t, plantOptions{version: 19, machines: []string{"press-1"}})
			p.tsSkew = 3 * time.Minute
			a := p.woIDs["press-1"]
			p.odoo.SetWorkorderDateStart(a, time.Now().Add(-10*time.Minute))
			ra := p.startAgent()
			m := p.machines[0]
			p.produce(m, 10, 0)
			p.waitExactQty(ra, "press-1", 10)
			p.secondOrder("press-1", map[bool]string{true: "button_finish", false: "button_pending"}[finished])
			for range 5 {
				p.produce(m, 1, 0)
				time.Sleep(300 * time.Millisecond)
			}
			p.waitExactQty(ra, "press-1", 5)
			if q := p.odoo.Workorder(a).QtyProduced; q != 10 {
				t.Errorf("the previous order shows %v, want its 10", q)
			}
			if n := ra.a.Status().Buffer.DeadLetters; n != 0 {
				t.Errorf("%d dead letters, want none", n)
			}
		})
	}
}

// Another machine's counts held for want of a work order keep the counts
// lane's oldest record old; that is no backlog of the machines that have
// one: their rounds look up no earlier orders (the review: 70 work-order
// lookups in 10 rounds of 3 machines, against 10).
func TestHeldCountsCostTheOthersNoLookups(t *testing.T) {
	t.Parallel()
	p := newPlant(t, plantOptions{version: 19, machines: []string{"press-1", "press-2", "press-3"}, noWO: []string{"press-3"}})
	// Long enough that the others' counts never wait that long between
	// two rounds on a loaded machine (at 500 ms one did under load 20 in
	// CI: "1 time-line look-ups", a backlog of its own).
	p.scrapBacklog = 3 * time.Second
	p.scrapSlack = time.Millisecond
	ra := p.startAgent()
	p.produce(p.machines[2], 7, 1)                    // held
	time.Sleep(p.scrapBacklog + 500*time.Millisecond) // older than the backlog age
	var wos, lines int                                // look-ups before the rounds counted
	var rounds0 uint64
	for i := range 10 {
		if i == 1 { // the first round may have counted the start's look
			wos, lines = p.odoo.CallCount("mrp.workorder", "search_read"), p.odoo.CallCount("mrp.workcenter.productivity", "search_read")
			rounds0 = ra.a.Status().Odoo.RoundsDone
		}
		for _, m := range p.machines[:2] {
			p.produce(m, 1, 1)
		}
		for _, m := range p.machines[:2] {
			p.waitExactQty(ra, m.id, float64(i+1))
		}
	}
	rounds, calls := ra.a.Status().Odoo.RoundsDone-rounds0, p.odoo.CallCount("mrp.workorder", "search_read")-wos
	if n := p.odoo.CallCount("mrp.workcenter.productivity", "search_read") - lines; n != 0 {
		t.Errorf("%d time-line look-ups", n)
	}
	if calls > int(rounds)+2 { // one a round at most (the orders in progress)
		t.Errorf("%d work-order look-ups in %d rounds", calls, rounds)
	}
}

// Odoo up, its PostgreSQL away (restarting, failing over): 17/18 answer
// every call over JSON-RPC with HTTP 200 and psycopg2.OperationalError, 19
// over JSON-2 with its 404 page "No database is selected" (odoo/http.py:
// the call cannot open its database; this test said 500 and Odoo's JSON
// error, which 19 answers only when PostgreSQL goes away during the call).
// Counts and stops are held, status says offline, the log says
// what it is, and once the database is back Odoo has them all — nothing in
// the dead letters (the probe: 3 pieces and a stop were dead-lettered on
// 17, with status online).
func TestDatabaseAwayHoldsRecords(t *testing.T) {
	t.Parallel()
	for _, v := range []int{17, 19} {
		t.Run(fmt.Sprint(v), func(t *testing.T) {
			p := newPlant(t, plantOptions{version: v, machines: []string{"press-1"}, block: true})
			ra := p.startAgent()
			m := p.machines[0]
			p.produce(m, 5, 0)
			p.waitExactQty(ra, "press-1", 5)
			p.odoo.SetFaultRate(odootest.FaultDatabaseDown, 1, 1)
			p.produce(m, 3, 0)
			p.stop(m, "JAM")
			p.run(m)
			said := map[int]string{17: "psycopg2.OperationalError", 19: `odoo cannot open the database "odoo" now, which it served before`}[v]
			waitFor(t, 15*time.Second, "the outage in status", func() (bool, string) {
				st := ra.a.Status()
				return st.Odoo.State == "offline" && strings.Contains(st.Odoo.LastError, said) && st.Buffer.Pending > 0,
					fmt.Sprintf("%+v pending %d", st.Odoo, st.Buffer.Pending)
			})
			p.odoo.SetFaultRate(odootest.FaultDatabaseDown, 0, 1)
			p.waitExactQty(ra, "press-1", 8)
			waitFor(t, 15*time.Second, "the stop booked", func() (bool, string) {
				l := p.odoo.Productivity()
				return len(l) == 1 && !l[0].End.IsZero() && ra.a.Status().Buffer.Pending == 0, fmt.Sprintf("%+v", l)
			})
			if st := ra.a.Status(); st.Buffer.DeadLetters != 0 {
				t.Errorf("%d dead letters, want none", st.Buffer.DeadLetters)
			}
			if l := p.logs.String(); !strings.Contains(l, "level=WARN msg=\"odoo is up but its database is not") {
				t.Errorf("no warning that Odoo's database was away:\n%s", l)
			}
		})
	}
}

// Real Odoo's load answers a serialization failure or a lock conflict as a
// row message with HTTP 200 (its retries never see it): the downtime line
// is sent again, not dead-lettered (the probe: it was).
func TestConcurrencyFailureInALoadIsRetried(t *testing.T) {
	t.Parallel()
	p := newPlant(t, plantOptions{machines: []string{"press-1"}, block: true})
	ra := p.startAgent()
	m := p.machines[0]
	p.odoo.FailNextCall("mrp.workcenter.productivity", "load", 1, odootest.FaultSerialization)
	p.odoo.FailNextCall("mrp.workcenter.productivity", "load", 1, odootest.FaultLockConflict)
	p.stop(m, "JAM")
	p.run(m)
	waitFor(t, 20*time.Second, "the stop booked", func() (bool, string) {
		l := p.odoo.Productivity()
		return len(l) == 1 && !l[0].End.IsZero() && ra.a.Status().Buffer.Pending == 0, fmt.Sprintf("%+v", l)
	})
	if st := ra.a.Status(); st.Buffer.DeadLetters != 0 {
		t.Errorf("%d dead letters, want none", st.Buffer.DeadLetters)
	}
	var faults int
	for _, c := range p.odoo.Calls() {
		if c.Model == "mrp.workcenter.productivity" && c.Method == "load" && strings.HasPrefix(c.Outcome, "fault:") {
			faults++
		}
	}
	if faults != 2 {
		t.Errorf("%d loads failed, want the 2 injected", faults)
	}
}

// A reload applies forward.rate, forward.backoff_max and log.level; a new
// log.format waits for a restart and status says so (the reload probe:
// all four were kept from the start while the log said "configuration
// reloaded" — Odoo, throttled to 1 call/s, went on getting 20).
func TestReloadAppliesRateAndLogLevel(t *testing.T) {
	t.Parallel()
	p := newPlant(t, plantOptions{machines: []string{"press-1", "press-2", "press-3"}})
	ra := p.startAgent()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
			for _, m := range p.machines {
				p.produce(m, 1, 0)
			}
		}
	})
	defer func() { close(stop); wg.Wait() }()
	callsIn := func(d time.Duration) int {
		from := len(p.odoo.Calls())
		time.Sleep(d)
		return len(p.odoo.Calls()) - from
	}
	// Forwarding under way at the fast rate first: at least 10 calls
	// (waited for, not counted in a fixed time: a loaded machine only
	// slows them).
	from := len(p.odoo.Calls())
	waitFor(t, 60*time.Second, "10 calls to Odoo at forward.rate 200 with three machines producing", func() (bool, string) {
		n := len(p.odoo.Calls()) - from
		return n >= 10, fmt.Sprint(n)
	})
	p.editConfig("  rate: 200\n", "  rate: 1\n")
	p.editConfig("forward:\n", "log:\n  level: warn\n  format: json\nforward:\n")
	if err := ra.a.Reload(context.Background(), p.cfgPath); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1500 * time.Millisecond) // a round under way when the reload came ends at the old rate
	if n := callsIn(4 * time.Second); n > 6 {
		t.Errorf("%d calls to Odoo in 4 s after forward.rate was reloaded to 1/s", n)
	}
	if l := p.logs.String(); strings.Contains(l, "configuration reloaded") {
		t.Errorf("an INFO line after log.level was reloaded to warn:\n%s", l)
	}
	if got := ra.a.Status().Config.RestartNeededFor; !slices.Equal(got, []string{"log.format"}) {
		t.Errorf("restart_needed_for %v, want [log.format]", got)
	}
}

// A source that gave up (a CA file missing, then one that holds no
// certificate) starts again at a reload once the file is changed, its
// settings the same (the mosquitto probe: only a restart brought it back).
func TestReloadRestartsASourceThatGaveUp(t *testing.T) {
	p := newPlant(t, plantOptions{machines: []string{"press-1"}})
	ca := filepath.Join(p.dir, "broker-ca.pem")
	url := strings.TrimPrefix(p.broker.URL(), "tcp://")
	p.editConfig(fmt.Sprintf("url: %q\n", p.broker.URL()), fmt.Sprintf("url: %q\n    ca_file: %q\n", "ssl://"+url, ca))
	p.downSources = map[string]bool{"broker": true}
	ra := p.startAgentWith(false)
	stopped := func(n int, why string) {
		t.Helper()
		waitFor(t, 15*time.Second, fmt.Sprintf("the source stopped %d times", n), func() (bool, string) {
			l := p.logs.String()
			return strings.Count(l, "source stopped") == n && strings.Contains(l, why), ""
		})
	}
	stopped(1, "no such file")
	waitFor(t, 5*time.Second, "status saying what brings the source back", func() (bool, string) {
		st := ra.a.Status()
		return len(st.Sources) == 1 && st.Sources[0].State == "down" && strings.HasPrefix(st.Sources[0].LastError, "stopped, not retried: ") &&
			strings.HasSuffix(st.Sources[0].LastError, "then reload (systemctl reload plantedge)"), fmt.Sprintf("%+v", st.Sources)
	})
	if err := os.WriteFile(ca, []byte("not a certificate\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := ra.a.Reload(context.Background(), p.cfgPath); err != nil {
		t.Fatal(err)
	}
	stopped(2, "no PEM")
}

// A topic the broker refuses (an ACL) is shown on its source and on the
// machine it feeds, the broker's other topics flow, and once the broker
// takes it the machine counts (the mosquitto probe: every topic of the
// broker stood still; the review: nothing on the machine, and the refusal
// stayed in the source's last error after the broker took the topic).
func TestRefusedTopicShowsOnTheMachine(t *testing.T) {
	p := newPlant(t, plantOptions{machines: []string{"press-1", "press-2"}})
	p.broker.DenyRead("plant/press-2", true)
	ra := p.startAgentWith(false)
	m1, m2 := p.machines[0], p.machines[1]
	p.publish(m1)
	p.publish(m2)
	waitFor(t, 15*time.Second, "the refusal in status", func() (bool, string) {
		st := ra.a.Status()
		ok := len(st.Sources) == 1 && len(st.Sources[0].RefusedNodes) == 1 && st.Sources[0].RefusedNodes[0].Node == "plant/press-2"
		for _, m := range st.Machines {
			if m.ID == "press-2" {
				ok = ok && strings.Contains(m.Error, "refuses topic plant/press-2 (subscription refused by the broker (code 0x80): its ACL must let client plantedge-test read it")
			}
		}
		return ok, fmt.Sprintf("%+v %+v", st.Sources, st.Machines)
	})
	p.produce(m1, 4, 0)
	p.waitExactQty(ra, "press-1", 4)
	p.broker.DenyRead("plant/press-2", false)
	waitFor(t, 15*time.Second, "the topic taken", func() (bool, string) {
		st := ra.a.Status()
		return len(st.Sources[0].RefusedNodes) == 0 && st.Sources[0].LastError == "", fmt.Sprintf("%+v", st.Sources)
	})
	p.publish(m2) // its baseline
	waitFor(t, 15*time.Second, "press-2 read", func() (bool, string) {
		for _, m := range ra.a.Status().Machines {
			if m.ID == "press-2" {
				return m.State != "unknown", fmt.Sprintf("%+v", m)
			}
		}
		return false, ""
	})
	p.produce(m2, 3, 0)
	p.waitExactQty(ra, "press-2", 3)
}

// Counts held because the work order was cancelled: the machine says so,
// and names the order it last counted on (the work-order probe: WORK ORDER
// -, UNATTRIBUTED 2, an empty error column).
func TestHeldCountsSayWhy(t *testing.T) {
	p := newPlant(t, plantOptions{machines: []string{"press-1"}})
	ra := p.startAgent()
	m := p.machines[0]
	p.produce(m, 3, 0)
	p.waitExactQty(ra, "press-1", 3)
	p.odoo.SetWorkorderState(p.woIDs["press-1"], "cancel")
	p.produce(m, 2, 0)
	waitFor(t, 15*time.Second, "the held pieces said", func() (bool, string) {
		for _, ms := range ra.a.Status().Machines {
			if ms.ID == "press-1" {
				return ms.Unattributed == 2 && strings.HasPrefix(ms.Error, "no work order in progress on WC-PRESS-1 in Odoo: 2 pieces held") &&
					strings.HasSuffix(ms.Error, "; the last one counted on was WO press-1"), fmt.Sprintf("%+v", ms)
			}
		}
		return false, ""
	})
}
