package agent

import (
	"context"
	"strconv"
	"strings"
	"testing"

	"github.com/plantedge/plantedge/buffer"
)

// status sums a machine's pending and dead-letter pieces exactly, as the
// forwarder sums what it books (internal/decimal): summed in float64, ten
// records of 0.1 were 0.9999999999999999, 95 records of 0.01 on top of
// 100,000,000 showed as pending_good 100000000.950001 in status --json,
// and a dead letter of 0.1 of a finished order next to one of 0.2 of a
// cancelled one left 5.6e-17 "refused by Odoo": the machine's error said
// that 0 good pieces Odoo refused are in the dead letters.
func TestStatusSumsPendingAndDeadLettersExactly(t *testing.T) {
	cfg := testConfig(t, `mqtt: [{ name: b, url: "tcp://127.0.0.1:1", client_id: c }]
machines:
  - { id: m1, workcenter: W1, good_count: { mqtt: { broker: b, topic: t1, field: good } }, scrap_count: { mqtt: { broker: b, topic: t1, field: scrap } } }
  - { id: m2, workcenter: W2, good_count: { mqtt: { broker: b, topic: t2, field: good } } }
`)
	q, err := buffer.Open(cfg.BufferPath(), buffer.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	count := func(machine, sig string, deltas ...float64) []buffer.Record {
		var recs []buffer.Record
		for _, d := range deltas {
			recs = append(recs, buffer.Record{Lane: buffer.LaneCounts, Key: countKey(machine, sig), Data: mustJSON(countRecord{Delta: d, First: 1, Last: 1})})
		}
		return recs
	}
	// steps is n deltas of step after a first one of first (a backlog of a
	// machine counting in grams or millilitres).
	steps := func(first, step float64, n int) []float64 {
		out := []float64{first}
		for range n {
			out = append(out, step)
		}
		return out
	}
	var recs []buffer.Record
	recs = append(recs, count("m1", sigGood, steps(1e8, 0.01, 95)...)...)
	recs = append(recs, count("m1", sigScrap, steps(1e8, 0.1, 86)...)...)
	recs = append(recs, count("m2", sigGood, steps(0.1, 0.1, 9)...)...)
	dead := count("m1", sigGood, 0.1, 0.2)
	deadScrap := count("m1", sigScrap, steps(1e8, 0.07, 71)...)
	seqs, err := q.Append(ctx, append(append(recs, dead...), deadScrap...))
	if err != nil {
		t.Fatal(err)
	}
	for i := range dead {
		dead[i].Seq = seqs[len(recs)+i]
	}
	if err := q.DeadLetter(ctx, dead[0], finishedOrderReason+"WO-1 was finished"); err != nil {
		t.Fatal(err)
	}
	if err := q.DeadLetter(ctx, dead[1], cancelledOrderReason+"WO-2 was cancelled"); err != nil {
		t.Fatal(err)
	}
	for i := range deadScrap {
		deadScrap[i].Seq = seqs[len(recs)+len(dead)+i]
		if err := q.DeadLetter(ctx, deadScrap[i], "Odoo refused it: no such product"); err != nil {
			t.Fatal(err)
		}
	}

	a := &Agent{buf: q}
	pending, err := a.scanPending(false)
	if err != nil {
		t.Fatal(err)
	}
	if pc := pending["m2"]; pc.good != 1 {
		t.Errorf("m2: 10 records of 0.1 pending sum to %v, want 1", pc.good)
	}
	if pc := pending["m1"]; pc.deadGood != 0.3 {
		t.Errorf("m1: dead letters of 0.1 and 0.2 sum to %v, want 0.3", pc.deadGood)
	}
	q.Close()

	st, err := OfflineStatus(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Machines) != 2 {
		t.Fatalf("machines %+v", st.Machines)
	}
	m1, m2 := st.Machines[0], st.Machines[1]
	for _, c := range []struct {
		what      string
		got, want float64
	}{
		{"m1 pending_good (100,000,000 and 95 of 0.01)", m1.Pending, 100000000.95},
		{"m1 pending_scrap (100,000,000 and 86 of 0.1)", m1.PendingScrap, 100000008.6},
		{"m1 dead_letter_good (0.1 and 0.2)", m1.DeadLetterGood, 0.3},
		{"m1 dead_letter_scrap (100,000,000 and 71 of 0.07)", m1.DeadLetterScrap, 100000004.97},
		{"m2 pending_good (10 of 0.1)", m2.Pending, 1},
	} {
		if c.got != c.want {
			t.Errorf("%s: %s, want %s", c.what, strconv.FormatFloat(c.got, 'f', -1, 64), strconv.FormatFloat(c.want, 'f', -1, 64))
		}
	}
	// Both of m1's good dead letters are of ended orders: none is Odoo's
	// refusal (its scrap is).
	if strings.Contains(m1.Error, "good pieces Odoo refused") || strings.Contains(m1.Error, "good piece Odoo refused") {
		t.Errorf("m1's error says Odoo refused good pieces:\n%s", m1.Error)
	}
	for _, want := range []string{"100000004.97 scrapped pieces Odoo refused", "made on a work order finished", "made on a work order cancelled"} {
		if !strings.Contains(m1.Error, want) {
			t.Errorf("m1's error lacks %q:\n%s", want, m1.Error)
		}
	}
}
