package agent_test

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// databaseCases are the Odoos a database test meets: 17 (JSON-RPC), 19
// with its NOT_FOUND_NODB page, and a 19-series build without it.
var databaseCases = []struct {
	name   string
	v      int
	noPage bool
}{{"17", 17, false}, {"19", 19, false}, {"19-without-the-page", 19, true}}

// odoo.database naming a database the Odoo does not have (misspelt): Odoo
// 19 answers JSON-2 with its 404 page "No database is selected", 17 with
// psycopg2's "database … does not exist" over JSON-RPC. The agent says so
// at once at ERROR, naming odoo.database, status shows Odoo's words, the
// records wait in the buffer (none dead-lettered), and once the name is
// fixed and the agent restarted Odoo has them all. On 19 the page used to
// be taken for a proxy's ("a wrong path in odoo.url?").
func TestWrongDatabaseNameIsSaidAndRecordsWait(t *testing.T) {
	t.Parallel()
	for _, tc := range databaseCases {
		t.Run(tc.name, func(t *testing.T) {
			v := tc.v
			p := newPlant(t, plantOptions{version: v, machines: []string{"press-1"}, noNotFoundNoDB: tc.noPage})
			p.editConfig("  database: odoo\n", "  database: odoo_prod\n")
			ra := p.startAgent()
			m := p.machines[0]
			p.produce(m, 4, 0)
			waitFor(t, 15*time.Second, "the wrong database in status", func() (bool, string) {
				st := ra.a.Status()
				return st.Odoo.State == "offline" && strings.Contains(st.Odoo.LastError, `odoo.database "odoo_prod"`) && st.Buffer.Pending > 0,
					fmt.Sprintf("%+v pending %d", st.Odoo, st.Buffer.Pending)
			})
			waitFor(t, 15*time.Second, "the wrong database logged", func() (bool, string) {
				return strings.Contains(p.logs.String(), `level=ERROR msg="odoo has no database by the name odoo.database gives`), ""
			})
			if l := p.logs.String(); strings.Contains(l, "proxy") {
				t.Errorf("the log blames a proxy:\n%s", l)
			}
			// Odoo 19 said its PostgreSQL answers, and that it has no
			// such database (/web/health, db.db_exist): the name alone.
			if l, st := p.logs.String(), ra.a.Status(); v == 19 && (strings.Contains(l, "PostgreSQL is not reachable") ||
				!strings.Contains(st.Odoo.LastError, "Odoo's PostgreSQL has no database by that name")) {
				t.Errorf("status %q, log names PostgreSQL or not the missing name:\n%s", st.Odoo.LastError, l)
			}
			if st := ra.a.Status(); st.Buffer.DeadLetters != 0 {
				t.Errorf("%d dead letters, want none", st.Buffer.DeadLetters)
			}
			ra.stop()
			p.editConfig("  database: odoo_prod\n", "  database: odoo\n")
			ra = p.startAgentWith(false)
			p.waitExactQty(ra, "press-1", 4)
			if st := ra.a.Status(); st.Buffer.DeadLetters != 0 {
				t.Errorf("%d dead letters after the fix, want none", st.Buffer.DeadLetters)
			}
			// The misspelt name never took anything: no warning that what
			// was written there is not carried over.
			if l := p.logs.String(); strings.Contains(l, "odoo changed (odoo.url or odoo.database)") ||
				!strings.Contains(l, "the one named before never took anything from plantedge") {
				t.Errorf("the fixed name is logged as a move of Odoo:\n%s", l)
			}
		})
	}
}
