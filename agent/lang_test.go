package agent_test

import (
	"fmt"
	"net/http"
	"strings"
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

// TestEndToEndLoginLockoutInFrenchIsNotAnExpiredKey: Odoo's lockout comes
// in the bot user's language over JSON-RPC to a server of several
// databases; it is still no expired key.
func TestEndToEndLoginLockoutInFrenchIsNotAnExpiredKey(t *testing.T) {
	p := newPlant(t, plantOptions{version: 18, machines: []string{"press-1"}, manyDatabases: true, botLang: "fr_FR"})
	ra := p.startAgent()
	p.produce(p.machines[0], 2, 0)
	p.waitExactQty(ra, "press-1", 2)
	p.odoo.SetLoginCooldown(1, 3*time.Second)
	body := `{"jsonrpc":"2.0","method":"call","id":1,"params":{"service":"common","method":"authenticate","args":["odoo","plantedge-bot","` + strings.Repeat("0", 40) + `",{}]}}`
	resp, err := http.Post(p.odoo.URL()+"/jsonrpc", "application/json", strings.NewReader(body)) // a neighbour's typo
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	p.produce(p.machines[0], 3, 0)
	waitFor(t, 15*time.Second, "the lockout seen", func() (bool, string) {
		o := ra.a.Status().Odoo
		return o.State == "auth_failed" && strings.Contains(o.LastError, "Trop d'échecs de connexion"), fmt.Sprintf("%+v", o)
	})
	if o := ra.a.Status().Odoo; o.KeyExpired {
		t.Errorf("a lockout shown as an expired key: %+v", o)
	}
	if strings.Contains(p.logs.String(), "most likely expired") {
		t.Error("the log calls a lockout an expired key")
	}
	ra.a.Flush()
}
