package agent_test

import (
	"strings"
	"testing"
	"time"
)

// A buffer file older than what was booked in Odoo sends nothing, not only
// in the round that found it: every later round is refused too (the check
// is made once a run), until the file is moved aside.
func TestRestoredBufferFileSendsNothingInLaterRounds(t *testing.T) {
	t.Parallel()
	p := newPlant(t, plantOptions{machines: []string{"press-1"}})
	ra := p.startAgent()
	m := p.machines[0]
	p.produce(m, 5, 2)
	p.waitExact(ra, 15*time.Second)
	ra.stopNow(t)
	restore := p.backupBuffer()
	ra = p.startAgentWith(false)
	p.produce(m, 3, 2) // booked from the file the backup does not know
	p.waitExact(ra, 15*time.Second)
	ra.stopNow(t)
	restore()
	scrap := func() (n float64) {
		for _, s := range p.odoo.Scraps() {
			n += s.Qty
		}
		return n
	}

	ra = p.startAgentWith(false)
	defer ra.stopNow(t)
	p.produce(m, 1, 1)
	waitFor(t, 15*time.Second, "the restored file refused", func() (bool, string) {
		st := ra.a.Status()
		return strings.Contains(st.Odoo.LastError, "is older than what was booked in Odoo"), st.Odoo.LastError
	})
	refusedAt := ra.a.Status().Odoo.RoundsDone
	waitFor(t, 30*time.Second, "three more rounds", func() (bool, string) {
		ra.a.Flush()
		st := ra.a.Status()
		return st.Odoo.RoundsDone >= refusedAt+3, st.Odoo.LastError
	})
	if got, q := scrap(), p.qty("press-1"); got != 4 || q != 8 {
		t.Errorf("later rounds sent from the restored file: scrap %g (want 4), quantity %g (want 8)", got, q)
	}
	if st := ra.a.Status(); !strings.Contains(st.Odoo.LastError, "is older than what was booked in Odoo") {
		t.Errorf("later rounds no longer say the file is restored: %q", st.Odoo.LastError)
	}
}
