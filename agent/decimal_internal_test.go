package agent

import (
	"fmt"
	"strconv"
	"testing"

	"github.com/plantedge/plantedge/buffer"
	"github.com/plantedge/plantedge/odoo"
)

// A counter's records add up to what it counted, however many: a factor
// of 0.015 stepping once a second (a record each) summed in float64 was
// 682.7849999995 after 45,519 records, not 682.785, booked 682.78 (from
// then on 0.01 low about half the time); 0.005 after 125,903, 0.025 after
// 34,037 (the rounding review). The forwarder's pending sum (pendingKey) and the
// buffer's merge of records short of quota hold the decimal sum.
func TestCountRecordsAddUpExactly(t *testing.T) {
	for _, tc := range []struct {
		step   float64
		milli  int // the step in thousandths
		n      int
		merges int // records merged one into the next (the buffer's quota merge)
	}{
		{0.015, 15, 130000, 46000},
		{0.005, 5, 130000, 0},
		{0.025, 25, 130000, 0},
	} {
		t.Run(fmt.Sprint(tc.step), func(t *testing.T) {
			var p pendingKey
			data := mustJSON(countRecord{Delta: tc.step, First: 1, Last: 1})
			wrong, first := 0, 0
			for i := 1; i <= tc.n; i++ {
				r := buffer.Record{Lane: buffer.LaneCounts, Key: "m/good", Seq: uint64(i), Data: data}
				c, err := decodeCount(r)
				if err != nil {
					t.Fatal(err)
				}
				p.add(r, c)
				// i steps of milli thousandths, rounded half up to 2 decimals.
				want := float64((i*tc.milli+5)/10) / 100
				if got := odoo.Round2(p.sum); got != want {
					if wrong++; first == 0 {
						first = i
						t.Errorf("%d records of %v: sum %v, booked %v, want %v", i, tc.step, p.sum, got, want)
					}
				}
			}
			if wrong > 0 {
				t.Errorf("%d of %d sums booked off what was counted (the first after %d records)", wrong, tc.n, first)
			}
			if want := float64(tc.n*tc.milli) / 1000; p.sum != want {
				t.Errorf("%d records of %v add up to %v, want %v", tc.n, tc.step, p.sum, want)
			}
			if tc.merges == 0 {
				return
			}
			a := buffer.Record{Lane: buffer.LaneCounts, Key: "m/good", Seq: 1, Data: data}
			for i := 2; i <= tc.merges; i++ {
				var err error
				if a, err = mergeCountRecords(a, buffer.Record{Lane: buffer.LaneCounts, Key: "m/good", Seq: uint64(i), Data: data}); err != nil {
					t.Fatal(err)
				}
			}
			c, err := decodeCount(a)
			if err != nil {
				t.Fatal(err)
			}
			if want := float64(tc.merges*tc.milli) / 1000; c.Delta != want {
				t.Errorf("%d records of %v merged hold %v, want %v", tc.merges, tc.step, c.Delta, want)
			}
		})
	}
}

// BenchmarkPendingAdd is the forwarder's cost per pending count record
// (decode and add), for a step of 1 and one of 0.015.
func BenchmarkPendingAdd(b *testing.B) {
	for _, step := range []float64{1, 0.015} {
		b.Run(fmt.Sprint(step), func(b *testing.B) {
			var p pendingKey
			r := buffer.Record{Lane: buffer.LaneCounts, Key: "m/good", Seq: 1, Data: mustJSON(countRecord{Delta: step, First: 1, Last: 1})}
			b.ReportAllocs()
			for b.Loop() {
				c, err := decodeCount(r)
				if err != nil {
					b.Fatal(err)
				}
				p.add(r, c)
			}
		})
	}
}

// A count record an older version stored holds its float64 sum (steps
// added with +=, and merged so by the buffer's quota), whose noise can fall
// within an ulp of a decimal of 15 digits other than the one counted: 297
// steps of 0.005 added up to 1.4849999999999903, which decimal.Of takes for
// 1.48499999999999 (booked 1.48, and from then on 0.01 low at every tie
// of the work order's count). It is read as that version read it (to 12
// significant digits: 1.485, booked 1.49), as upgradeDecimals reads its
// work orders' counts; a record of this version keeps its 15 digits.
func TestOlderVersionsCountRecordsReadAsTheyRead(t *testing.T) {
	old := 0.0
	for range 297 {
		old += 0.005 // as an older version summed
	}
	if old != 1.4849999999999903 {
		t.Fatalf("297 steps of 0.005 add up to %v in float64", old)
	}
	data := []byte(`{"d":` + strconv.FormatFloat(old, 'g', -1, 64) + `,"f":1,"l":2}`) // as encoding/json stored it
	r := buffer.Record{Lane: buffer.LaneCounts, Key: "m/good", Seq: 1, Data: data}
	c, err := decodeCount(r)
	if err != nil {
		t.Fatal(err)
	}
	if c.Delta != 1.485 {
		t.Errorf("an older version's record of %v read as %v, want 1.485", old, c.Delta)
	}
	var p pendingKey
	p.add(r, c)
	if got := odoo.Round2(p.sum); got != 1.49 {
		t.Errorf("an older version's record of %v books %v, want 1.49", old, got)
	}
	// Merged (the buffer's quota) with a record of this version: the sum
	// of the decimals, stored so that it reads as that.
	step := buffer.Record{Lane: buffer.LaneCounts, Key: "m/good", Seq: 2, Data: mustJSON(countRecord{Delta: 0.005, First: 3, Last: 3})}
	m, err := mergeCountRecords(r, step)
	if err != nil {
		t.Fatal(err)
	}
	if c, err := decodeCount(m); err != nil || c.Delta != 1.49 {
		t.Errorf("merged with a step of 0.005: %+v (%s), %v; want 1.49", c, m.Data, err)
	}
	// A record of this version holds its decimal of up to 15 digits.
	const d = 47095.13499999 // 103,827 steps of 0.45359237
	nr := buffer.Record{Lane: buffer.LaneCounts, Key: "m/good", Seq: 3, Data: mustJSON(countRecord{Delta: d, First: 4, Last: 4})}
	if c, err := decodeCount(nr); err != nil || c.Delta != d {
		t.Errorf("a record of %v stored as %s read back as %v, %v", d, nr.Data, c.Delta, err)
	}
}
