package mapping

import (
	"testing"
	"time"

	"github.com/plantedge/plantedge/connectors"
)

func adoptMapper(t *testing.T, ids ...string) *Mapper {
	t.Helper()
	y := `site: test
odoo: { url: https://erp.example.com, database: prod, username: bot, api_key_file: /etc/plantedge/odoo-api-key }
mqtt:
  - { name: b, url: "tcp://127.0.0.1:1883", client_id: pe-test }
machines:
  - id: other
    workcenter: WCO
    good_count: { mqtt: { broker: b, topic: line/o, field: good } }
`
	for _, id := range ids {
		y += "  - id: " + id + "\n    workcenter: WC-" + id + "\n    good_count: { mqtt: { broker: b, topic: line/x, field: good } }\n"
	}
	return newTestMapper(t, y)
}

// A machine renamed in the configuration counts on from the counter's last
// value; one that reads a counter a machine removed long ago read, or that
// two removed machines read, starts a new baseline (the probe saw 129,990
// pieces booked for a counter last read in January and again in June).
func TestAdoptCounters(t *testing.T) {
	sample := func(v string, at time.Time) connectors.Sample {
		return connectors.Sample{Source: "b", Kind: connectors.KindMQTT, Address: "line/x", Payload: []byte(`{"good":` + v + `}`), Good: true, ReceiveTime: at}
	}
	t0 := time.Date(2026, 1, 10, 8, 0, 0, 0, time.UTC)
	read := func(m *Mapper, st *State, vs ...string) {
		for i, v := range vs {
			if _, _, err := m.Apply(st, sample(v, t0.Add(time.Duration(i)*time.Minute))); err != nil {
				t.Fatal(err)
			}
		}
	}

	// Renamed: counts on.
	st := NewState()
	read(adoptMapper(t, "press-1"), st, "50000", "50010")
	m := adoptMapper(t, "press-1b")
	if ad := m.AdoptCounters(st, t0.Add(-time.Hour)); len(ad) != 1 || ad[0] != (Adopted{From: "press-1", To: "press-1b", Signal: GoodCount, Last: 50010}) {
		t.Fatalf("rename: adopted %+v", ad)
	}
	evs, _, _ := m.Apply(st, sample("50015", t0.Add(time.Hour)))
	if len(evs) != 1 || evs[0].Delta != 5 {
		t.Fatalf("rename: %+v, want 5 pieces", evs)
	}

	// Removed long ago: a new baseline.
	st = NewState()
	read(adoptMapper(t, "press-1"), st, "50000", "50010")
	m = adoptMapper(t, "press-9")
	if ad := m.AdoptCounters(st, t0.AddDate(0, 5, 0)); len(ad) != 0 {
		t.Fatalf("a counter read five months before adopted: %+v", ad)
	}
	if evs, _, _ := m.Apply(st, sample("180000", t0.AddDate(0, 5, 0))); len(evs) != 0 {
		t.Fatalf("a new baseline counted: %+v", evs)
	}

	// Two removed machines read it: neither is guessed.
	st = NewState()
	read(adoptMapper(t, "press-1", "press-2"), st, "50000", "50010")
	if ad := adoptMapper(t, "press-3").AdoptCounters(st, t0.Add(-time.Hour)); len(ad) != 0 {
		t.Fatalf("one of two adopted: %+v", ad)
	}
}
