package agent_test

import (
	"context"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/plantedge/plantedge/agent"
	"github.com/plantedge/plantedge/internal/nettest"
	"github.com/plantedge/plantedge/odoo/odootest"
)

// Pieces, scrap and stops the broker kept in the agent's session while the
// agent was stopped go to the work orders they were made on, as a backlog
// does, though they did not wait in the buffer: before, all of them went to
// the order in progress at the restart (the work-order probe: three orders
// run during an agent stop had all their pieces on the third, and the
// first's scrap was taken out of the third's product).
//
// "idle until the restart": the last order makes its pieces only after the
// replay was forwarded, so every value the broker replays is old, and only
// the difference measured before the stop (kept with the machine's state)
// shows how late the newest of them came.
func TestValuesTheBrokerKeptGoToTheirOrders(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		version int
		idle    bool
	}{{19, false}, {17, true}} {
		name := fmt.Sprintf("odoo%d/%s", c.version, map[bool]string{false: "counting until the restart", true: "idle until the restart"}[c.idle])
		t.Run(name, func(t *testing.T) {
			p := newPlant(t, plantOptions{version: c.version, machines: []string{"press-1"}})
			p.scrapSlack = time.Millisecond // the test's orders change within seconds
			p.replayLag = time.Second       // the agent is stopped for seconds
			ra := p.startAgent()
			m := p.machines[0]
			p.produce(m, 5, 0)
			p.waitExactQty(ra, "press-1", 5)
			time.Sleep(500 * time.Millisecond)
			ra.stop()
			o := p.threeOrders(m, c.idle)
			time.Sleep(1500 * time.Millisecond) // the newest kept values came late too
			if c.idle {
				// And Odoo away as the agent starts: the whole replay is in
				// the buffer when it is back, in records that must not
				// straddle the orders (before, one intake batch was one
				// record a counter: 4 or 6 of the first order's 7 pieces).
				p.odoo.SetDown(true)
			}
			ra = p.startAgentWith(false)
			if c.idle {
				waitFor(t, 15*time.Second, "the replay counted", func() (bool, string) {
					ms := machineStatus(ra, "press-1")
					return ms.GoodCount == 23 && ms.ScrapCount == 5, fmt.Sprintf("%v good, %v scrap", ms.GoodCount, ms.ScrapCount)
				})
				time.Sleep(300 * time.Millisecond)
				p.odoo.SetDown(false)
				// The replay forwarded before the last order makes any.
				p.waitPending(ra, 0)
				time.Sleep(500 * time.Millisecond)
				p.produce(m, o.made[2].good, o.made[2].scrap)
			}
			p.checkThreeOrders(ra, o)
		})
	}
}

// The same with the agent running and its link to the broker cut while
// the three orders run (the work-order probe: the third had 31 of its 13,
// the first 5 of its 12, on Odoo 17 and 19).
func TestValuesKeptWhileTheBrokerLinkWasDownGoToTheirOrders(t *testing.T) {
	t.Parallel()
	p := newPlant(t, plantOptions{version: 19, machines: []string{"press-1"}})
	p.scrapSlack = time.Millisecond
	p.replayLag = time.Second
	x := nettest.NewCrashProxy(t, p.broker.Addr())
	p.editConfig(p.broker.URL(), "tcp://"+x.Addr())
	ra := p.startAgent()
	m := p.machines[0]
	p.produce(m, 5, 0)
	p.waitExactQty(ra, "press-1", 5)
	time.Sleep(500 * time.Millisecond)
	x.Crash()
	o := p.threeOrders(m, false)
	time.Sleep(1500 * time.Millisecond)
	x.Restart()
	p.checkThreeOrders(ra, o)
}

// orders is what threeOrders made: the work orders, their products, and
// the good pieces and scrap made on each.
type orders struct {
	wos, products []int64
	made          []struct{ good, scrap int64 }
}

// threeOrders runs three work orders of three products on machine m, the
// first the plant's: 7 pieces, 2 scrap and a stop on it, 11 and 3 on the
// second, 13 and 1 on the third (none when idle: the caller makes them).
func (p *plant) threeOrders(m *simMachine, idle bool) orders {
	o := orders{wos: []int64{p.woIDs[m.id]}, products: []int64{p.product}, made: []struct{ good, scrap int64 }{{7, 2}, {11, 3}, {13, 1}}}
	for i, n := range o.made {
		if i > 0 {
			time.Sleep(1100 * time.Millisecond) // Odoo's dates are to the second
			o.products = append(o.products, p.odoo.AddProduct(fmt.Sprintf("Product %d", i+1)))
			mo := p.odoo.AddProduction(fmt.Sprintf("WH/MO/r%d", i), o.products[i], 1000)
			o.wos = append(o.wos, p.odoo.AddWorkorder(mo, p.wcIDs[m.id], fmt.Sprintf("WO %s #%d", m.id, i+1), "progress"))
			time.Sleep(1100 * time.Millisecond)
		}
		if i == 2 && idle {
			break
		}
		for range n.good {
			p.produce(m, 1, 0)
			time.Sleep(20 * time.Millisecond)
		}
		p.produce(m, 0, n.scrap)
		if i == 0 {
			// mochi replays a session's messages in the order of the
			// second they came in, not within it: a stop and its end in
			// seconds of their own.
			time.Sleep(1100 * time.Millisecond)
			p.stop(m, "JAM")
			time.Sleep(1100 * time.Millisecond)
			p.run(m)
		}
		if i < 2 {
			time.Sleep(1100 * time.Millisecond)
			p.odoo.SetWorkorderState(o.wos[i], "done")
		}
	}
	return o
}

// checkThreeOrders waits for Odoo to show threeOrders' orders each with
// its own: the third its pieces, each its scrap of its product, the first
// the stop, and the finished orders' pieces in the dead letters with the
// reason (a finished order takes no quantity).
func (p *plant) checkThreeOrders(ra *runningAgent, o orders) {
	t := p.t
	t.Helper()
	waitFor(t, 30*time.Second, "the orders' quantities and scrap", func() (bool, string) {
		got := p.scrapByWorkorder()
		q := p.woQty(o.wos[2])
		return q == 13 && got[o.wos[0]].Qty+got[o.wos[1]].Qty+got[o.wos[2]].Qty == 6 && ra.a.Status().Buffer.Pending == 0,
			fmt.Sprintf("WO3 %v, scrap %+v, pending %d", q, got, ra.a.Status().Buffer.Pending)
	})
	got := p.scrapByWorkorder()
	for i, n := range o.made {
		if s := got[o.wos[i]]; s.Qty != float64(n.scrap) || s.ProductID != o.products[i] {
			t.Errorf("scrap on work order %d: %v of product %d, want %d of product %d", i+1, s.Qty, s.ProductID, n.scrap, o.products[i])
		}
	}
	if q := p.woQty(o.wos[0]); q != 5 {
		t.Errorf("the first order shows %v, want the 5 written before the gap", q)
	}
	if q := p.odoo.Workorder(o.wos[1]).QtyProduced; p.version >= 19 && q != 0 {
		t.Errorf("the second order shows %v, want none (finished before its pieces reached Odoo)", q)
	}
	// The finished orders' pieces wait in the dead letters, with the
	// reason, for a person to correct those orders: 7 and 11 (in one dead
	// letter or several: a stretch a round, as the replay came in).
	dls, err := agent.NewAPIClient(p.listen).DeadLetters(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	byOrder := map[string]float64{}
	// ("1 piece … goes" when a stretch held one: the words agree with
	// their number since ux45.)
	re := regexp.MustCompile(`^made on a finished work order: ([0-9.]+) pieces? made from .* go(?:es)? to work order (.+?) \(`)
	for _, d := range dls {
		m := re.FindStringSubmatch(d.Reason)
		if m == nil {
			t.Errorf("dead letter %s: %q", d.Key, d.Reason)
			continue
		}
		n, _ := strconv.ParseFloat(m[1], 64)
		byOrder[m[2]] += n
	}
	if want := map[string]float64{"WO press-1 of WH/MO/00001": 7, "WO press-1 #2 of WH/MO/r1": 11}; !maps.Equal(byOrder, want) {
		t.Errorf("pieces in the dead letters by order: %v, want %v", byOrder, want)
	}
	if e := machineStatus(ra, "press-1").Error; !strings.Contains(e, "18 good pieces made on a work order finished before they reached Odoo are in the dead letters") ||
		strings.Contains(e, "Odoo refused") {
		t.Errorf("status: %q; want the 18 pieces of finished orders said so (not refused by Odoo)", e)
	}
	p.waitLines(1)
	lines := p.odoo.Productivity()
	slices.SortFunc(lines, func(x, y odootest.ProductivityLine) int { return x.Start.Compare(y.Start) })
	if len(lines) != 1 || lines[0].WorkorderID != o.wos[0] {
		t.Errorf("%d lines, the first booked on %d; want one, on the first order's %d", len(lines), lines[0].WorkorderID, o.wos[0])
	}
}

// woQty is the quantity work order id shows: qty_produced from Odoo 19
// on, the manufacturing order's qty_producing before.
func (p *plant) woQty(id int64) float64 {
	if wo := p.odoo.Workorder(id); p.version >= 19 {
		return wo.QtyProduced
	} else {
		return wo.QtyProducing
	}
}

func machineStatus(ra *runningAgent, id string) agent.MachineStatus {
	for _, m := range ra.a.Status().Machines {
		if m.ID == id {
			return m
		}
	}
	return agent.MachineStatus{}
}

// Live values are not late, whatever else the machine's values do: the
// review of the change above found that one value dated by its receipt (a
// stamp out of range — a gateway before its NTP sync — or a signal
// configured without timestamp_field) pulled the machine's least
// difference to 0, so that with a source clock 3 minutes behind every live
// value looked 3 minutes late and the new order's pieces went to the
// finished one (dead-lettered); and that a clock set back 3 minutes made
// the values after it look late the same way. Odoo 19.
func TestLiveValuesAreNotLate(t *testing.T) {
	t.Parallel()
	for _, c := range []string{"a value stamped 1970", "scrap without timestamp_field", "clock set back 3 minutes"} {
		t.Run(c, func(t *testing.T) {
			p := newPlant(t, plantOptions{version: 19, machines: []string{"press-1"}})
			switch c {
			case "scrap without timestamp_field":
				p.editConfig("field: scrap, timestamp_field: ts", "field: scrap")
				fallthrough
			case "a value stamped 1970":
				p.tsSkew = 3 * time.Minute
			}
			a := p.woIDs["press-1"]
			p.odoo.SetWorkorderDateStart(a, time.Now().Add(-10*time.Minute))
			ra := p.startAgent()
			m := p.machines[0]
			p.produce(m, 10, 1)
			p.waitExactQty(ra, "press-1", 10)
			if c == "a value stamped 1970" {
				m.mu.Lock()
				m.good++
				b := fmt.Appendf(nil, `{"good":%d,"scrap":%d,"running":true,"reason":"","ts":"1970-01-01T00:00:00Z"}`, m.good, m.scrap)
				m.mu.Unlock()
				if err := p.broker.Publish("plant/"+m.id, b, false, 1); err != nil {
					t.Fatal(err)
				}
				p.waitExactQty(ra, "press-1", 11)
			}
			b := p.secondOrder("press-1", "button_finish")
			want := 5.0
			if c == "clock set back 3 minutes" {
				p.produce(m, 5, 0)
				p.waitExactQty(ra, "press-1", 5)
				p.tsSkew, want = 3*time.Minute, 10
			}
			for range 5 {
				p.produce(m, 1, 0)
				time.Sleep(300 * time.Millisecond)
			}
			waitFor(t, 10*time.Second, "the new order's pieces on it", func() (bool, string) {
				q := p.woQty(b)
				return q == want, fmt.Sprintf("WO 2 shows %v, want its %v (dead letters %d)", q, want, ra.a.Status().Buffer.DeadLetters)
			})
			if n := ra.a.Status().Buffer.DeadLetters; n != 0 {
				t.Errorf("%d dead letters", n)
			}
		})
	}
}

// A source clock set back 3 minutes while the agent was stopped (a PLC
// restarted with its clock behind): the first value after the start,
// stamped before the last one the agent had saved, shows the step, and
// live values stay live — before, measured against the difference saved
// before the stop, they looked 3 minutes late and the new order's pieces
// were dead-lettered as the finished one's (the re-review). Odoo 19.
func TestAClockSetBackWhileStoppedMakesNoLiveValueLate(t *testing.T) {
	t.Parallel()
	p := newPlant(t, plantOptions{version: 19, machines: []string{"press-1"}})
	a := p.woIDs["press-1"]
	p.odoo.SetWorkorderDateStart(a, time.Now().Add(-10*time.Minute))
	ra := p.startAgent()
	m := p.machines[0]
	p.produce(m, 10, 0)
	p.waitExactQty(ra, "press-1", 10)
	ra.stop()
	p.tsSkew = 3 * time.Minute
	b := p.secondOrder("press-1", "button_finish")
	ra = p.startAgentWith(false)
	for range 5 {
		p.produce(m, 1, 0)
		time.Sleep(300 * time.Millisecond)
	}
	waitFor(t, 10*time.Second, "the new order's pieces on it", func() (bool, string) {
		q := p.woQty(b)
		return q == 5, fmt.Sprintf("WO 2 shows %v, want its 5 (dead letters %d)", q, ra.a.Status().Buffer.DeadLetters)
	})
	if n := ra.a.Status().Buffer.DeadLetters; n != 0 {
		t.Errorf("%d dead letters", n)
	}
}

// secondOrder presses method ("button_finish", "button_pending") on
// machine's work order, waits a second (Odoo's times are to the second)
// and starts "WO 2" of a new manufacturing order on its work center,
// which woIDs then names; it returns its id.
func (p *plant) secondOrder(machine, method string) int64 {
	p.t.Helper()
	p.adminCall("mrp.workorder", method, []any{[]any{p.woIDs[machine]}}, nil)
	time.Sleep(1100 * time.Millisecond)
	b := p.odoo.AddWorkorder(p.odoo.AddProduction("WH/MO/2", p.product, 50), p.wcIDs[machine], "WO 2", "progress")
	p.woIDs[machine] = b
	return b
}

// A publisher whose clock is hours off this box's — a PLC on New York
// time stamped as UTC, one on Berlin time — is shown on its machine, in
// /metrics and in the log; one on time is measured and not shown (the tz
// probe: a line dated 5 hours early in Odoo, and nothing said so). Odoo 17.
func TestASourceClockFarOffIsShown(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name string
		skew time.Duration // how far behind the source's clock runs
		want string        // in the machine's error; "" none
	}{
		{"5 hours behind", 5 * time.Hour, "source clock 5h0m0s behind this box's"},
		{"an hour ahead", -time.Hour, "source clock 1h0m0s ahead of this box's"},
		{"on time", 0, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := newPlant(t, plantOptions{version: 17, machines: []string{"press-1"}})
			p.offsetWindow = 300 * time.Millisecond
			p.tsSkew = c.skew
			ra := p.startAgent()
			m := p.machines[0]
			var ms agent.MachineStatus
			waitFor(t, 10*time.Second, "the source clock measured", func() (bool, string) {
				p.produce(m, 1, 0)
				time.Sleep(50 * time.Millisecond)
				ms = ra.a.Status().Machines[0]
				return ms.SourceClockOffset != nil && (c.want == "" || strings.Contains(ms.Error, c.want)), fmt.Sprintf("%+v", ms)
			})
			if off, want := *ms.SourceClockOffset, -c.skew.Seconds(); off < want-5 || off > want+5 {
				t.Errorf("source_clock_offset_seconds %v, want about %v", off, want)
			}
			if c.want == "" {
				if strings.Contains(ms.Error, "source clock") {
					t.Errorf("a source on time shown as off: %q", ms.Error)
				}
				if strings.Contains(p.logs.String(), "source clock") {
					t.Errorf("a source on time logged as off:\n%s", p.logs.String())
				}
				return
			}
			if !strings.Contains(p.logs.String(), c.want) {
				t.Errorf("not logged:\n%s", p.logs.String())
			}
			if v, ok := metric(p.metrics(), "plantedge_machine_source_clock_offset_seconds", `machine="press-1"`); !ok || v < -c.skew.Seconds()-5 || v > -c.skew.Seconds()+5 {
				t.Errorf("plantedge_machine_source_clock_offset_seconds %v (%v), want about %v", v, ok, -c.skew.Seconds())
			}
		})
	}
}

// Pieces, scrap and a stop made on a work order that is cancelled before
// they reach Odoo (an outage) are not booked on the next order started
// there — another product's: its quantity would rise and its scrap take
// the wrong product out of stock (the operators probe: the next order got
// 15 of the 11 made on it, and the scrap as its product). The pieces and
// the scrap go to the dead letters with the reason, the stop is booked
// on the work center without an order; what was made after the cancel,
// while no order was in progress, goes to the next one started, as
// before. Odoo 17 and 19.
func TestPiecesAndScrapOfACancelledWorkOrder(t *testing.T) {
	t.Parallel()
	for _, v := range []int{17, 19} {
		t.Run(fmt.Sprint(v), func(t *testing.T) {
			p, ra, m, a := timedOrderThenOdooDown(t, v)
			p.produce(m, 4, 1) // made on the order about to be cancelled
			p.stop(m, "JAM")
			time.Sleep(1500 * time.Millisecond)
			p.run(m)
			time.Sleep(1200 * time.Millisecond)
			if err := p.odoo.Press(2, "action_cancel", a); err != nil { // while the agent cannot reach Odoo
				t.Fatal(err)
			}
			p.odoo.SetDown(false)
			time.Sleep(1100 * time.Millisecond)
			p.produce(m, 6, 0) // after the cancel: no order in progress
			time.Sleep(4 * time.Second)
			other := p.odoo.AddProduct("Other product")
			nx := p.odoo.AddWorkorder(p.odoo.AddProduction("WH/MO/other", other, 100), p.wcIDs["press-1"], "WO other", "ready")
			p.adminCall("mrp.workorder", "button_start", []any{[]any{nx}}, nil)
			time.Sleep(1100 * time.Millisecond)
			p.produce(m, 5, 0)
			waitFor(t, 30*time.Second, "the buffer drained", func() (bool, string) {
				st := ra.a.Status()
				return st.Buffer.Pending == 0 && p.woQty(nx) == 11, fmt.Sprintf("pending %d, next order %v", st.Buffer.Pending, p.woQty(nx))
			})
			if q := p.woQty(a); q != 10 {
				t.Errorf("the cancelled order shows %v, want its 10", q)
			}
			for _, s := range p.odoo.Scraps() {
				t.Errorf("scrap booked: %+v (want it in the dead letters)", s)
			}
			dls, err := agent.NewAPIClient(p.listen).DeadLetters(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			var pieces, scrap bool
			for _, d := range dls {
				switch {
				case strings.HasPrefix(d.Reason, "made on a cancelled work order: 4 pieces made from") && strings.Contains(d.Reason, "which was cancelled") &&
					strings.Contains(d.Reason, "not WO other of WH/MO/other's"):
					pieces = true
				case strings.HasPrefix(d.Reason, "made on a cancelled work order: 1 scrap made from") && strings.Contains(d.Reason, "which was cancelled"):
					scrap = true
				default:
					t.Errorf("dead letter %s: %q", d.Key, d.Reason)
				}
			}
			if !pieces || !scrap {
				t.Errorf("dead letters %+v: want the 4 pieces and the scrap", dls)
			}
			// A retry keeps both: retried, they would be booked on the
			// order in progress (the review: the scrap was).
			if res, err := agent.NewAPIClient(p.listen).DeadLetterAction(context.Background(), "retry", "all", false); err != nil || res.Affected != 0 || res.KeptFinished != 2 {
				t.Errorf("retry all: %+v, %v; want both kept", res, err)
			}
			if e := machineStatus(ra, "press-1").Error; !strings.Contains(e, "4 good pieces made on a work order cancelled before they reached Odoo are in the dead letters") {
				t.Errorf("status error %q", e)
			}
			var lines []odootest.ProductivityLine
			for _, l := range p.odoo.Productivity() {
				if l.XMLID != "" {
					lines = append(lines, l)
				}
			}
			if len(lines) != 1 || lines[0].WorkorderID != 0 {
				t.Errorf("downtime lines %+v: want the stop, on no order", lines)
			}
		})
	}
}

// A paused for rush order C, C cancelled, A resumed, all while Odoo was
// away: C's pieces and scrap go to the dead letters, not to A, which gets
// its own only (the second review: A 19 for 15, C's scrap out of A's
// product's stock, once cancelled orders were no next order). Odoo 17.
func TestCancelledRushOrderThenTheFirstResumed(t *testing.T) {
	t.Parallel()
	p, ra, m, a := timedOrderThenOdooDown(t, 17)
	press := func(method string, id int64) { t.Helper(); p.press(t, 1100*time.Millisecond, method, id) }
	p.produce(m, 3, 1) // on A
	press("button_pending", a)
	rush := p.odoo.AddWorkorder(p.odoo.AddProduction("WH/MO/rush", p.odoo.AddProduct("Rush part"), 10), p.wcIDs["press-1"], "WO rush", "ready")
	press("button_start", rush)
	time.Sleep(1100 * time.Millisecond)
	p.produce(m, 4, 1) // on the rush order
	press("action_cancel", rush)
	press("button_start", a) // A resumed
	time.Sleep(1100 * time.Millisecond)
	p.produce(m, 2, 0)
	time.Sleep(3500 * time.Millisecond)
	p.odoo.SetDown(false)
	waitFor(t, 30*time.Second, "the buffer drained", func() (bool, string) {
		st := ra.a.Status()
		return st.Buffer.Pending == 0 && st.Buffer.DeadLetters == 2, fmt.Sprintf("pending %d, dead letters %d, A %v", st.Buffer.Pending, st.Buffer.DeadLetters, p.woQty(a))
	})
	if q := p.woQty(a); q != 15 {
		t.Errorf("A shows %v, want its 15 (10 + 3 + 2)", q)
	}
	for _, s := range p.odoo.Scraps() {
		if s.WorkorderID != a || s.Qty != 1 {
			t.Errorf("scrap booked %+v, want only A's 1", s)
		}
	}
}

// timedOrderThenOdooDown starts a plant of one press (Odoo version v,
// backlogs cut after 3 s with a 2 s clock slack) whose work order a, its
// operator's timer started, has the press's first 10 pieces in Odoo, and
// then takes Odoo away.
func timedOrderThenOdooDown(t *testing.T, v int) (p *plant, ra *runningAgent, m *simMachine, a int64) {
	t.Helper()
	p = newPlant(t, plantOptions{version: v, machines: []string{"press-1"}})
	p.scrapBacklog = 3 * time.Second
	p.scrapSlack = 2 * time.Second
	a = p.woIDs["press-1"]
	p.adminCall("mrp.workorder", "button_start", []any{[]any{a}}, nil)
	ra = p.startAgent()
	m = p.machines[0]
	p.produce(m, 10, 0)
	p.waitExactQty(ra, "press-1", 10)
	p.odoo.SetDown(true)
	return p, ra, m, a
}

// A backlog of A's found A's alone (a finding that stands a minute), then
// Odoo away again at once: A paused for rush order R, R's pieces made, R
// finished, A resumed — all within that minute, no round seeing R. R's
// pieces are R's (finished: the dead letters), not A's: the finding was of
// A's stretch up to when Odoo was asked, not of what was made after.
func TestRushOrderWithinABacklogFindingsMinuteIsNotTheFirsts(t *testing.T) {
	t.Parallel()
	p, ra, m, a := timedOrderThenOdooDown(t, 17)
	press := func(method string, id int64) { t.Helper(); p.press(t, 1100*time.Millisecond, method, id) }
	time.Sleep(1100 * time.Millisecond)
	p.produce(m, 2, 0) // on A, a backlog once Odoo is back
	time.Sleep(3500 * time.Millisecond)
	p.odoo.SetDown(false)
	p.waitExactQty(ra, "press-1", 12)
	p.odoo.SetDown(true)
	press("button_pending", a)
	rush := p.odoo.AddWorkorder(p.odoo.AddProduction("WH/MO/rush", p.odoo.AddProduct("Rush part"), 10), p.wcIDs["press-1"], "WO rush", "ready")
	press("button_start", rush)
	time.Sleep(1100 * time.Millisecond)
	p.produce(m, 4, 0) // on the rush order
	press("button_finish", rush)
	press("button_start", a) // A resumed
	time.Sleep(3500 * time.Millisecond)
	p.odoo.SetDown(false)
	waitFor(t, 30*time.Second, "the buffer drained", func() (bool, string) {
		st := ra.a.Status()
		return st.Buffer.Pending == 0, fmt.Sprintf("pending %d, dead letters %d, A %v", st.Buffer.Pending, st.Buffer.DeadLetters, p.woQty(a))
	})
	if q := p.woQty(a); q != 12 {
		t.Errorf("A shows %v, want its 12 (the rush order's 4 are not A's)", q)
	}
}

// press presses an Odoo work order's button (method) as user 2 after wait:
// Odoo's times are to the second, so a wait of a second and more puts the
// press in a second of its own.
func (p *plant) press(t *testing.T, wait time.Duration, method string, id int64) {
	t.Helper()
	time.Sleep(wait)
	if err := p.odoo.Press(2, method, id); err != nil {
		t.Fatal(err)
	}
}
