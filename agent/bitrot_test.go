package agent_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/plantedge/plantedge/agent"
	"github.com/plantedge/plantedge/buffer"
)

// Bit rot on the box's SD card: bbolt checks its pages, not the values in
// them. While the agent is stopped, with pieces and a stop waiting for
// Odoo, press-1's work-order state, its note of the last closed line, its
// scrap booking in flight and its scrap carry, and press-2's mapping state
// turn to garbage; press-3's work-order state and press-4's mapping state
// still read, one bit off. The bitrot probe saw them stop the plant (a
// start that failed again and again, a status that panicked, a forwarder
// that retried for good while saying Odoo could not be reached) or book
// pieces never made. Now status names them, the agent starts and says so,
// and forwards: press-1's and press-3's quantities are exact (their work
// orders taken anew from Odoo, its quantity the baseline), press-2's and
// press-4's counters count from their next value (the piece made before it
// is not booked: said).
func TestDamagedValuesInTheBufferFile(t *testing.T) {
	p := newPlant(t, plantOptions{machines: []string{"press-1", "press-2", "press-3", "press-4"}})
	ra := p.startAgent()
	m1, m2, m3, m4 := p.machines[0], p.machines[1], p.machines[2], p.machines[3]
	p.produce(m1, 10, 0)
	p.produce(m2, 20, 0)
	p.produce(m3, 50, 0)
	p.waitExactQty(ra, "press-1", 10)
	p.waitExactQty(ra, "press-2", 20)
	p.waitExactQty(ra, "press-3", 50)
	p.odoo.SetDown(true)
	p.produce(m1, 5, 0)
	p.stop(m1, "JAM")
	p.run(m1)
	p.produce(m2, 7, 0)
	p.produce(m3, 3, 0)
	p.produce(m4, 4, 0)
	p.waitPending(ra, 5)
	ra.stop()

	q, _ := p.openBuffer()
	// press-3's work-order state still reads, one bit off: counted 50 is 70
	// (the probe: Odoo got 20 pieces never made); its checksum tells.
	wo3, err := q.Meta("wo/press-3")
	if err != nil || !strings.Contains(string(wo3), `"counted":50`) {
		t.Fatalf("wo/press-3 = %s, %v", wo3, err)
	}
	wo3 = []byte(strings.Replace(string(wo3), `"counted":50`, `"counted":70`, 1))
	// press-4's mapping state still reads, its counter's last value one
	// digit off (the probe: 1,097 pieces booked that were never made).
	var mm4 map[string]any
	if b, err := q.Meta("machine/press-4"); err != nil || json.Unmarshal(b, &mm4) != nil {
		t.Fatalf("machine/press-4: %s", b)
	}
	raw4, _ := base64.StdEncoding.DecodeString(mm4["mapping"].(string))
	last := fmt.Sprintf(`"last":%d`, m4.goodNow())
	if !strings.Contains(string(raw4), last) {
		t.Fatalf("no %s in %s", last, raw4)
	}
	mm4["mapping"] = base64.StdEncoding.EncodeToString([]byte(strings.Replace(string(raw4), last, fmt.Sprintf(`"last":%d`, m4.goodNow()-1000), 1)))
	st4, _ := json.Marshal(mm4)
	notJSON := base64.StdEncoding.EncodeToString([]byte(`{"counters":{"good_count":{"last":10`))
	if err := q.PutMeta(context.Background(),
		buffer.KV{Key: "wo/press-1", Value: []byte(`{"id":1,"counted":u0}`)},
		buffer.KV{Key: "closed/press-1", Value: []byte("\x00\x9b7")},
		buffer.KV{Key: "scrap/press-1", Value: []byte(`{"xmlid":`)},
		buffer.KV{Key: "scrapcarry/press-1", Value: []byte("7e\x0012")},
		buffer.KV{Key: "machine/press-2", Value: []byte(fmt.Sprintf(`{"mapping":%q,"good":27}`, notJSON))},
		buffer.KV{Key: "wo/press-3", Value: wo3},
		buffer.KV{Key: "machine/press-4", Value: st4},
	); err != nil {
		t.Fatal(err)
	}
	q.Close()

	off := p.offlineStatus()
	if e := off.Machines[0].Error; !strings.Contains(e, "work-order state of this machine cannot be read") {
		t.Errorf("stopped status of press-1: %q", e)
	}
	if e := off.Machines[1].Error; !strings.Contains(e, "state of this machine cannot be read") {
		t.Errorf("stopped status of press-2: %q", e)
	}

	ra = p.startAgentWith(false)
	p.odoo.SetDown(false)
	p.produce(m1, 1, 0)
	p.produce(m2, 1, 0)
	p.produce(m3, 1, 0)
	waitFor(t, 20*time.Second, "the buffer drained", func() (bool, string) {
		st := ra.a.Status()
		return st.Buffer.Pending == 0 && p.qty("press-1") == m1.made() && p.qty("press-3") == m3.made(),
			fmt.Sprintf("%d pending, press-1 %v of %v, press-3 %v of %v", st.Buffer.Pending, p.qty("press-1"), m1.made(), p.qty("press-3"), m3.made())
	})
	p.produce(m1, 0, 2)
	waitFor(t, 15*time.Second, "press-1's scrap booked", func() (bool, string) {
		got := p.scrapped("press-1")
		return got == 2, fmt.Sprint(got)
	})
	if n := p.closedLines("press-1"); n != 1 {
		t.Errorf("%d downtime lines of press-1, want its 1 stop", n)
	}
	p.produce(m4, 1, 0)
	p.produce(m2, 2, 0) // counted from the value before: its 2 pieces
	p.produce(m4, 2, 0)
	// Counted from the first value the new run sees: the one made after
	// the start (its piece not booked), or the first run's last value
	// again, when the broker resends it to the session because it had no
	// acknowledgement yet at the stop (paho sends the PUBACK after the
	// handler, on a goroutine of its own) — then every piece is booked.
	// A loaded machine once ended with press-2 at 30 of 30. Never more.
	for _, m := range []*simMachine{m2, m4} {
		waitFor(t, 15*time.Second, m.id+" quantity", func() (bool, string) {
			got := p.qty(m.id)
			return got == m.made()-1 || got == m.made(), fmt.Sprintf("qty %v, want %v or %v", got, m.made()-1, m.made())
		})
	}
	for _, want := range []string{
		"the buffer file's work-order state of this machine cannot be read",
		"the buffer file's state of this machine cannot be read",
		"the buffer file's scrap booking in flight of this machine cannot be read",
		"the buffer file's note of this machine's last closed downtime line cannot be read",
		"the buffer file's scrap carry of this machine",
	} {
		if !strings.Contains(p.logs.String(), want) {
			t.Errorf("not logged: %q", want)
		}
	}
}

// TestStatusSaysPendingCountsArePartial: a stopped agent's status reads the
// buffer file read-only, so a damaged record (set aside only by a start)
// ends its scan. It said press-1 had nothing pending while its 5 pieces
// waited in the file (lifecycle probe F8): now it says the pending counts
// are partial, and why.
func TestStatusSaysPendingCountsArePartial(t *testing.T) {
	p := newPlant(t, plantOptions{machines: []string{"press-1"}})
	ra := p.startAgent()
	p.odoo.SetDown(true)
	for i := range 5 {
		p.produce(p.machines[0], 1, 0)
		p.waitPending(ra, i+1) // a record each
	}
	ra.stop()
	if off := p.offlineStatus(); off.Machines[0].Pending != 5 || off.Buffer.PendingPartial != "" {
		t.Fatalf("before the damage: %v pending, partial %q", off.Machines[0].Pending, off.Buffer.PendingPartial)
	}

	q, _ := p.openBuffer()
	marker := []byte("rotten-record-" + strings.Repeat("x", 40))
	if _, err := q.Append(context.Background(), []buffer.Record{{Lane: buffer.LaneCounts, Key: "press-1/good", Data: marker}}); err != nil {
		t.Fatal(err)
	}
	q.Close()
	agent.SpoilRecord(t, q.Path(), marker)

	off := p.offlineStatus()
	if !strings.Contains(off.Buffer.PendingPartial, "damaged") {
		t.Errorf("stopped status with a damaged record: partial %q, press-1 pending %v", off.Buffer.PendingPartial, off.Machines[0].Pending)
	}
	// A start sets the damaged record aside: the scan is whole again.
	ra = p.startAgentWith(false)
	if st := ra.a.Status(); st.Buffer.PendingPartial != "" || st.Machines[0].Pending != 5 {
		t.Errorf("running status: partial %q, press-1 pending %v", st.Buffer.PendingPartial, st.Machines[0].Pending)
	}
}
