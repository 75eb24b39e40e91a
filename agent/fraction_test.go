package agent_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/plantedge/plantedge/buffer"
)

// Counters in a fractional unit (metres extruded, kilograms of scrap) land
// exactly: Odoo keeps 2 decimals, and rounding each round's total (good
// count) or each booking (scrap) used to add up — 1.0 made became 1.04 in
// Odoo, 0.5 kg of scrap 0.52 — and steps below 0.005 were never booked.
func TestFractionalCountersDoNotDrift(t *testing.T) {
	t.Parallel()
	for _, v := range []int{17, 19} {
		t.Run(fmt.Sprintf("odoo%d", v), func(t *testing.T) {
			p := newPlant(t, plantOptions{version: v, machines: []string{"extruder-1"}})
			ra := p.startAgent() // baselines: good 1000, scrap 0
			good, scrap := 1000.0, 0.0
			send := func() {
				t.Helper()
				b := fmt.Sprintf(`{"good":%v,"scrap":%v,"running":true,"ts":%q}`, good, scrap, time.Now().UTC().Format(time.RFC3339Nano))
				if err := p.broker.Publish("plant/extruder-1", []byte(b), false, 1); err != nil {
					t.Fatal(err)
				}
				// Each value its own record and its own forwarding round.
				waitFor(t, 20*time.Second, "value forwarded", func() (bool, string) {
					st := ra.a.Status()
					m := st.Machines[0]
					// (status rounds the sums to 1e-6: 1.004, not 1.0039999999999054)
					return st.Buffer.Pending == 0 && math.Abs(m.GoodCount-(good-1000)) < 1e-6 && math.Abs(m.ScrapCount-scrap) < 1e-6,
						fmt.Sprintf("pending %d, good %v, scrap %v", st.Buffer.Pending, m.GoodCount, m.ScrapCount)
				})
			}
			for range 8 { // 0.125 at a time: each rounds up to 0.13 on its own
				good += 0.125
				scrap += 0.125
				send()
			}
			// 0.004 at a time: each rounds to 0 on its own. The first is
			// carried (0.004 of scrap, nothing booked), across a restart:
			// kept in the buffer file, not only in memory, so that the
			// second makes 0.008, booked as 0.01.
			good += 0.004
			scrap += 0.004
			send()
			ra.stopNow(t)
			ra = p.startAgentWith(false)
			for range 5 {
				good += 0.004
				scrap += 0.004
				send()
			}
			wantGood := math.Round((good-1000)*100) / 100 // 1.024 made -> 1.02
			wantScrap := math.Round(scrap*100) / 100
			if q := p.qty("extruder-1"); q != wantGood {
				t.Errorf("Odoo has %v produced, the machine made %v (%v rounded)", q, good-1000, wantGood)
			}
			// A step that rounds to 0 books nothing (Odoo refuses a scrap
			// of 0: it would be a dead letter).
			if n := ra.a.Status().Buffer.DeadLetters; n != 0 {
				t.Errorf("%d dead letters", n)
			}
			for _, sc := range p.odoo.Scraps() {
				if sc.Qty <= 0 {
					t.Errorf("a scrap of %v was booked", sc.Qty)
				}
			}
			if s := p.scrapped("extruder-1"); s != wantScrap {
				t.Errorf("Odoo has %v scrapped, the machine scrapped %v (%v rounded)", s, scrap, wantScrap)
			}
		})
	}
}

// setFactor gives the plant's good or scrap signal (field) the mapping's
// factor (the counter's unit in the work order's: 0.125 kg a piece).
func (p *plant) setFactor(field, factor string) {
	p.t.Helper()
	p.editConfig("field: "+field+", timestamp_field: ts } }", "field: "+field+", timestamp_field: ts }, factor: "+factor+" }")
}

// A counter's fractional factor books what was counted, rounded as Odoo
// rounds it (HALF-UP to 2 decimals), not as the float64 sum of its steps
// happens to fall (mapping46): a step of 29 of a counter in 5 g for an
// order in kg is 0.145 kg, booked 0.15 (29*0.005 is 0.145 in float64, just
// below 0.145, and rounded to 0.14); 1000 steps of 0.1 are 100.
func TestFractionalFactorBooksWhatWasCounted(t *testing.T) {
	p := newPlant(t, plantOptions{machines: []string{"press-1"}})
	p.setFactor("good", "0.005")
	p.setFactor("scrap", "0.1")
	ra := p.startAgent()
	m := p.machines[0]
	p.produce(m, 29, 0)
	settledCounts(t, ra, 0.145, 0)
	if q := p.qty("press-1"); q != 0.15 {
		t.Errorf("a step of 29 at 0.005: Odoo has %v produced, want 0.15", q)
	}
	for range 1000 {
		p.produce(m, 0, 1)
	}
	settledCounts(t, ra, 0.145, 100)
	var scrapped float64
	for _, s := range p.odoo.Scraps() {
		scrapped += s.Qty
	}
	if math.Abs(scrapped-100) > 1e-9 {
		t.Errorf("1000 steps of 0.1 scrapped: Odoo has %v, want 100", scrapped)
	}
}

// A 16-bit counter on MQTT (whose type validate cannot see) without
// rollover wraps 65533 -> 4: read as a reset, and its log line says which
// rollover to set (mapping46).
func TestWrapWithoutRolloverLogsTheRolloverToSet(t *testing.T) {
	p := newPlant(t, plantOptions{machines: []string{"press-1"}})
	ra := p.startAgent()
	m := p.machines[0]
	p.produce(m, 65533-m.goodNow(), 0)
	p.waitExactQty(ra, "press-1", float64(65533-1000))
	m.mu.Lock()
	m.good = 4
	m.mu.Unlock()
	p.publish(m)
	want := "hint=\"from 65533 to 4 looks like a 16-bit counter wrapping: set rollover: 65536 under this counter"
	waitFor(t, 15*time.Second, "the reset's log line", func() (bool, string) {
		return strings.Contains(p.logs.String(), want), "no line with " + want
	})
}

// A counter in pounds for an order in kg books its count times the factor
// rounded as Odoo rounds that decimal (the rounding review): 103,827 lb are
// 47095.13499999 kg, booked 47095.13 — the 12-digit cut of the float64
// product (47095.134999990005) made it 47095.135, booked 47095.14.
func TestEightDecimalFactorBooksTheDecimal(t *testing.T) {
	t.Parallel()
	p := newPlant(t, plantOptions{machines: []string{"press-1"}})
	p.setFactor("good", "0.45359237")
	ra := p.startAgent()
	p.produce(p.machines[0], 103827, 0)
	p.waitExactQty(ra, "press-1", 47095.13)
}

// A backlog of many small steps books their decimal sum (the rounding review): the
// forwarder's float64 sum of 45,519 records of 0.015 (a counter in 15 g
// for an order in kg, a record a second: 12.6 hours of an outage) was
// 682.7849999995, booked 682.78 for 682.785; and the work order's count,
// added up record by record as they were acknowledged, kept that error
// into the next write (2 more steps: 682.81 for 682.815).
func TestBacklogOfSmallStepsBooksTheirDecimalSum(t *testing.T) {
	t.Parallel()
	p := newPlant(t, plantOptions{machines: []string{"press-1"}})
	p.setFactor("good", "0.015")
	cfg := p.configWithDataDir()
	const n = 45519
	start := time.Now().Add(-13 * time.Hour).UnixMilli()
	var recs []buffer.Record
	for i := range n {
		ts := start + int64(i)*1000
		recs = append(recs, buffer.Record{Lane: buffer.LaneCounts, Key: "press-1/good", Time: time.UnixMilli(ts),
			Data: fmt.Appendf(nil, `{"d":0.015,"f":%d,"l":%d}`, ts, ts)})
	}
	appendBeforeStart(t, cfg.BufferPath(), recs...)
	ra := p.startAgent()
	p.waitExactQty(ra, "press-1", 682.79)
	waitFor(t, 30*time.Second, "the backlog acknowledged", func() (bool, string) {
		n := ra.a.Status().Buffer.Pending
		return n == 0, fmt.Sprintf("%d records pending", n)
	})
	p.produce(p.machines[0], 2, 0)
	p.waitExactQty(ra, "press-1", 682.82)
}

// A work order's count stored by an older version, a float64 sum with its
// noise, books as that version booked it (the rounding review): 297 steps of 0.005
// were stored as 1.4849999999999903 and booked 1.49. That float64 is an
// ulp from 1.48499999999999, a decimal of its own: read as one, the next
// 2 pieces would book 1.49 again (1.49499999999999), not 1.50.
func TestCountStoredByAnOlderVersionBooksAsItDid(t *testing.T) {
	t.Parallel()
	p := newPlant(t, plantOptions{machines: []string{"press-1"}})
	p.setFactor("good", "0.005")
	ra := p.startAgent()
	m := p.machines[0]
	p.produce(m, 297, 0)
	p.waitExactQty(ra, "press-1", 1.49)
	ra.stop()

	cfg := p.configWithDataDir()
	q, err := buffer.Open(cfg.BufferPath(), buffer.Options{})
	if err != nil {
		t.Fatal(err)
	}
	b, err := q.Meta("wo/press-1")
	if err != nil {
		t.Fatal(err)
	}
	var st map[string]any
	if err := json.Unmarshal(b, &st); err != nil || st["counted"] != 1.485 {
		t.Fatalf("stored state: %s (%v)", b, err)
	}
	st["counted"] = 1.4849999999999903 // the older version's float64 sum
	delete(st, "sum")                  // and no checksum, as it stored it
	b, _ = json.Marshal(st)
	if err := q.PutMeta(context.Background(), buffer.KV{Key: "wo/press-1", Value: b}, buffer.KV{Key: "decimals"}); err != nil {
		t.Fatal(err)
	}
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}

	ra = p.startAgentWith(false)
	p.produce(m, 2, 0)
	p.waitExactQty(ra, "press-1", 1.5)
}
