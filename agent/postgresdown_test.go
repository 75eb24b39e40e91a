package agent_test

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// Odoo's PostgreSQL away for a while (down, restarting, out of
// connections) after the agent has booked with it. Odoo 19 answers JSON-2
// then with its 404 page "No database is selected" (odoo/http.py: the
// request cannot open its database, RegistryError, served without one) —
// the page it gives a database name it does not have; 17 answers JSON-RPC
// with psycopg2.OperationalError. The database answered this agent
// before, so it is an outage: status offline saying the database cannot
// be opened (not that odoo.database is wrong), a warning, no ERROR about
// the name, nothing dead-lettered, and once PostgreSQL is back Odoo has
// every piece made meanwhile, once.
func TestPostgresDownAfterBookingIsAnOutage(t *testing.T) {
	t.Parallel()
	for _, v := range []int{17, 19} {
		t.Run(fmt.Sprint(v), func(t *testing.T) {
			t.Parallel()
			p := newPlant(t, plantOptions{version: v, machines: []string{"press-1"}})
			ra := p.startAgent()
			m := p.machines[0]
			p.produce(m, 5, 0)
			p.waitExactQty(ra, "press-1", 5)
			p.odoo.SetPostgresDown(true)
			p.produce(m, 3, 0)
			said := map[int]string{17: "Connection refused", 19: `odoo cannot open the database "odoo" now, which it served before: its PostgreSQL is not reachable`}[v]
			waitFor(t, 15*time.Second, "the outage in status", func() (bool, string) {
				st := ra.a.Status()
				return st.Odoo.State == "offline" && strings.Contains(st.Odoo.LastError, said) && st.Buffer.Pending > 0,
					fmt.Sprintf("%+v pending %d", st.Odoo, st.Buffer.Pending)
			})
			if st := ra.a.Status(); strings.Contains(st.Odoo.LastError, "odoo.database") {
				t.Errorf("status blames odoo.database: %q", st.Odoo.LastError)
			}
			// 19: Odoo's /web/health, asked after the 404, says so.
			logged := map[int]string{17: `level=WARN msg="odoo is up but its database is not`, 19: `level=WARN msg="odoo is up but its PostgreSQL is not reachable`}[v]
			waitFor(t, 15*time.Second, "the outage logged", func() (bool, string) {
				return strings.Contains(p.logs.String(), logged), ""
			})
			p.produce(m, 2, 0)
			p.waitPending(ra, 2)
			if q := p.qty("press-1"); q != 5 {
				t.Fatalf("quantity %g in Odoo while its PostgreSQL was down, want 5", q)
			}
			p.odoo.SetPostgresDown(false)
			p.waitExactQty(ra, "press-1", 10)
			waitFor(t, 15*time.Second, "the buffer drained", func() (bool, string) {
				st := ra.a.Status()
				return st.Buffer.Pending == 0 && st.Odoo.State == "online", fmt.Sprintf("%+v pending %d", st.Odoo, st.Buffer.Pending)
			})
			if st := ra.a.Status(); st.Buffer.DeadLetters != 0 {
				t.Errorf("%d dead letters (%s), want none", st.Buffer.DeadLetters, st.Buffer.LatestDeadLetter)
			}
			l := p.logs.String()
			for _, bad := range []string{"no database by the name odoo.database gives", "proxy", "level=ERROR"} {
				if strings.Contains(l, bad) {
					t.Errorf("the log says %q:\n%s", bad, l)
				}
			}
			if v == 19 {
				nodb := 0
				for _, c := range p.odoo.Calls() {
					if c.Protocol == "json2" && c.Status == 404 && c.Outcome == "nodb" {
						nodb++
					}
				}
				if nodb == 0 {
					t.Error("no JSON-2 call met the 404 page: the outage did not reach the agent")
				}
			}
			if q := p.qty("press-1"); q != 10 {
				t.Errorf("quantity %g, want 10", q)
			}
		})
	}
}

// PostgreSQL already down when the agent connects to Odoo for the first
// time. Odoo 19's 404 page cannot tell it from a database name it does not
// have (a build without that page answers werkzeug's 404), and this agent
// never had an answer from that database: the client asks Odoo's
// /web/health, which says its PostgreSQL is not reachable — an outage, a
// warning, not an ERROR about odoo.database, and the agent books by itself
// when PostgreSQL is back. 17 says PostgreSQL's words (connection
// refused). The records wait, and are booked once, without a restart,
// when it is back.
func TestPostgresDownAtFirstStart(t *testing.T) {
	t.Parallel()
	for _, tc := range databaseCases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			v := tc.v
			p := newPlant(t, plantOptions{version: v, machines: []string{"press-1"}, noNotFoundNoDB: tc.noPage})
			q0 := p.qty("press-1") // 17's qty_producing starts at the order's quantity
			p.odoo.SetPostgresDown(true)
			ra := p.startAgent()
			m := p.machines[0]
			p.produce(m, 4, 0)
			said := map[int][]string{
				17: {"psycopg2.OperationalError", "Connection refused"},
				19: {`odoo cannot open the database "odoo": its PostgreSQL is not reachable`, "db_server_status false", "answered 404"},
			}[v]
			waitFor(t, 15*time.Second, "the failure in status", func() (bool, string) {
				st := ra.a.Status()
				ok := st.Odoo.State == "offline" && st.Buffer.Pending > 0
				for _, s := range said {
					ok = ok && strings.Contains(st.Odoo.LastError, s)
				}
				return ok, fmt.Sprintf("%+v pending %d", st.Odoo, st.Buffer.Pending)
			})
			logged := map[int]string{
				17: `level=WARN msg="odoo is up but its database is not`,
				19: `level=WARN msg="odoo is up but its PostgreSQL is not reachable`,
			}[v]
			waitFor(t, 15*time.Second, "the failure logged", func() (bool, string) {
				return strings.Contains(p.logs.String(), logged), ""
			})
			if l := p.logs.String(); v == 19 && (!strings.Contains(l, "the agent books by itself once it is back") ||
				strings.Contains(l, "level=ERROR") || strings.Contains(l, "no database by the name odoo.database gives")) {
				t.Errorf("the log blames odoo.database, or does not say a PostgreSQL outage needs nothing done:\n%s", l)
			}
			if q := p.qty("press-1"); q != q0 {
				t.Fatalf("quantity %g in Odoo while its PostgreSQL was down, want %g as before", q, q0)
			}
			p.odoo.SetPostgresDown(false)
			p.waitExactQty(ra, "press-1", 4)
			waitFor(t, 15*time.Second, "the buffer drained", func() (bool, string) {
				st := ra.a.Status()
				return st.Buffer.Pending == 0 && st.Odoo.State == "online", fmt.Sprintf("%+v pending %d", st.Odoo, st.Buffer.Pending)
			})
			if st := ra.a.Status(); st.Buffer.DeadLetters != 0 {
				t.Errorf("%d dead letters (%s), want none", st.Buffer.DeadLetters, st.Buffer.LatestDeadLetter)
			}
			p.produce(m, 1, 0)
			p.waitExactQty(ra, "press-1", 5)
		})
	}
}
