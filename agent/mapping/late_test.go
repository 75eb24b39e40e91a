package mapping

import (
	"fmt"
	"testing"
	"time"

	"github.com/plantedge/plantedge/connectors"
)

// A broker that does not keep order (docs/runbook.md, MQTT brokers and order: give such topics a
// timestamp_field): 1000 and 1010 are published before the PLC resets (or
// wraps) its counter, and 1010 arrives after the reset. Its source time
// places it before the reset: after a reset its 10 pieces are new; a wrap
// counted the way from 1000 to the top of the range already. (It used to
// count as 1005 pieces, or 64,910 with rollover.)
func TestLateValueFromBeforeAResetCountsOnlyItsOwnPieces(t *testing.T) {
	for _, tc := range []struct {
		name              string
		rollover          string
		before, late, new float64
		want              float64 // pieces made after the first value
	}{
		{"reset", "", 1000, 1010, 5, 15},
		{"rollover", ", rollover: 65536", 65000, 65010, 100, 636},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := newTestMapper(t, mqttHead+fmt.Sprintf(`  - id: m1
    workcenter: WC1
    good_count: { mqtt: { broker: b, topic: p1/good, field: v, timestamp_field: ts }%s }
`, tc.rollover))
			st := NewState()
			t0 := time.Date(2026, 1, 1, 8, 0, 0, 0, time.UTC)
			var sum float64
			send := func(v float64, at time.Time) {
				s := connectors.Sample{Source: "b", Kind: connectors.KindMQTT, Address: "p1/good", Good: true, ReceiveTime: time.Now(),
					Payload: []byte(fmt.Sprintf(`{"v":%v,"ts":%q}`, v, at.Format(time.RFC3339)))}
				evs, _, err := m.Apply(st, s)
				if err != nil {
					t.Fatal(err)
				}
				for _, e := range evs {
					sum += e.Delta
				}
			}
			send(tc.before, t0)                  // published 08:00:00
			send(tc.new, t0.Add(2*time.Minute))  // published 08:02:00 (after the reset/wrap)
			send(tc.late, t0.Add(1*time.Minute)) // published 08:01:00, delivered last
			if sum != tc.want {
				t.Fatalf("counted %v pieces, made %v", sum, tc.want)
			}
		})
	}
}
