package demo

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"
)

// The demo is the product in miniature: a short run with its Odoo outage
// must end with Odoo matching the simulated machines exactly.
func TestDemoEndsExact(t *testing.T) {
	if testing.Short() {
		t.Skip("demo run skipped in -short mode")
	}
	for _, v := range []int{17, 19} {
		t.Run(map[int]string{17: "odoo17", 19: "odoo19"}[v], func(t *testing.T) {
			var out bytes.Buffer
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			res, err := Run(ctx, Options{Duration: 9 * time.Second, OdooVersion: v, Out: &out, Tick: time.Second})
			if err != nil {
				t.Fatalf("demo: %v\n%s", err, out.String())
			}
			if !res.Drained {
				t.Errorf("buffer not drained:\n%s", out.String())
			}
			var made float64
			for _, m := range res.Machines {
				made += m.Made
				if m.Made != m.OdooQty || m.Made != m.Counted || m.Stops != m.DowntimeLines {
					t.Errorf("%s: made %v, counted %v, in Odoo %v, stops %d, downtime lines %d", m.ID, m.Made, m.Counted, m.OdooQty, m.Stops, m.DowntimeLines)
				}
			}
			if made == 0 {
				t.Error("the simulated machines made nothing")
			}
			for _, want := range []string{"cutting Odoo off", "Odoo is back", "Summary"} {
				if !strings.Contains(out.String(), want) {
					t.Errorf("output lacks %q", want)
				}
			}
		})
	}
}

// Values the demo cannot honour are refused before anything starts.
func TestDemoRefusesBadOptions(t *testing.T) {
	for _, o := range []Options{{OdooVersion: 16, Duration: time.Minute}, {OdooVersion: 17, Duration: time.Second}} {
		if _, err := Run(context.Background(), o); err == nil {
			t.Errorf("Run(%+v) = nil error", o)
		}
	}
}
