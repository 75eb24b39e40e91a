package agent_test

import (
	"fmt"
	"testing"
	"time"
)

// TestEndToEndWorkcentersOfAnotherCompany: one Odoo, several plants. The
// site's work centers belong to a second company while the bot user's main
// company is the first (it may work in both): Odoo would give a line or
// scrap that names no company the bot's main one and refuse it
// ("Incompatible companies on records"). Each stop becomes exactly one
// closed downtime line, and scrap is validated, in the work centers'
// company; nothing is dead-lettered.
func TestEndToEndWorkcentersOfAnotherCompany(t *testing.T) {
	t.Parallel()
	for _, v := range []int{17, 19} {
		t.Run(fmt.Sprintf("odoo%d", v), func(t *testing.T) {
			p := newPlant(t, plantOptions{version: v, machines: []string{"press-1", "press-2"}, otherCompany: true})
			ra := p.startAgent()
			for round := 0; round < 3; round++ {
				for i, m := range p.machines {
					p.produce(m, int64(5+i), 1)
				}
				time.Sleep(120 * time.Millisecond)
			}
			for _, m := range p.machines {
				p.stop(m, "JAM")
			}
			time.Sleep(200 * time.Millisecond)
			for _, m := range p.machines {
				p.run(m)
			}
			p.waitExact(ra, 20*time.Second)
			waitFor(t, 10*time.Second, "scrap validated", func() (bool, string) {
				a, b := p.scrapped("press-1"), p.scrapped("press-2")
				return a == 3 && b == 3, fmt.Sprintf("scrapped %v and %v, want 3 each", a, b)
			})
			company := p.odoo.Productivity()[0].CompanyID
			if company == 1 {
				t.Fatalf("lines in the bot's main company")
			}
			perWC := map[int64]int{}
			for _, l := range p.odoo.Productivity() {
				perWC[l.WorkcenterID]++
				if l.End.IsZero() || l.CompanyID != company {
					t.Errorf("line %+v: want closed, in company %d", l, company)
				}
			}
			for _, id := range []string{"press-1", "press-2"} {
				if n := perWC[p.wcIDs[id]]; n != 1 {
					t.Errorf("%s has %d downtime lines, want 1", id, n)
				}
			}
			for _, s := range p.odoo.Scraps() {
				if s.State != "done" || s.Moves != 1 || s.CompanyID != company {
					t.Errorf("scrap %+v: want done once, in company %d", s, company)
				}
			}
			if st := ra.a.Status(); st.Buffer.DeadLetters != 0 {
				t.Errorf("%d dead letters: %s", st.Buffer.DeadLetters, st.Buffer.LatestDeadLetter)
			}
		})
	}
}
