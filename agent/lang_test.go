package agent_test

import (
	"fmt"
	"testing"
	"time"
)

// TestEndToEndWorkcenterMovedToAnotherCompanyInAnyLanguage: a work center
// moved to another company while the agent runs makes Odoo refuse its next
// line for incompatible companies; the agent reads the company again and
// books the line there — also when Odoo's words would be the bot user's
// French (JSON-RPC to a server of several databases) or the company's
// German (English deactivated, JSON-2): nothing is dead-lettered.
func TestEndToEndWorkcenterMovedToAnotherCompanyInAnyLanguage(t *testing.T) {
	t.Parallel()
	for _, o := range []plantOptions{
		{version: 18, manyDatabases: true, botLang: "fr_FR"},
		{version: 19, botLang: "fr_FR", englishOff: true},
	} {
		t.Run(fmt.Sprintf("odoo%d-english-off-%v", o.version, o.englishOff), func(t *testing.T) {
			o.machines, o.otherCompany = []string{"press-1"}, true
			p := newPlant(t, o)
			ra := p.startAgent()
			m := p.machines[0]
			p.stop(m, "JAM")
			time.Sleep(100 * time.Millisecond)
			p.run(m)
			p.waitLines(1)
			first := p.odoo.Productivity()[0].CompanyID
			c := p.odoo.AddCompany("Plant C")
			p.odoo.SetUserCompanies(p.bot, 1, first, c)
			p.odoo.SetWorkcenterCompany(p.wcIDs["press-1"], c)
			p.stop(m, "JAM")
			time.Sleep(100 * time.Millisecond)
			p.run(m)
			p.waitLines(2)
			if l := p.odoo.Productivity()[1]; l.CompanyID != c {
				t.Errorf("line after the move %+v, want company %d", l, c)
			}
			ra.a.Flush()
			if st := ra.a.Status(); st.Buffer.DeadLetters != 0 {
				t.Errorf("%d dead letters: %s", st.Buffer.DeadLetters, st.Buffer.LatestDeadLetter)
			}
		})
	}
}
