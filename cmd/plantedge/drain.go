package main

import (
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/plantedge/plantedge/agent"
)

// drainLine is status's line on a backlog that drains (status --json's
// drain): its pace, the time left, and what the round under way does —
// buffer.pending does not move until a round's end.
func drainLine(d *agent.DrainStatus) string {
	var b strings.Builder
	if d.RoundsFailed > 0 {
		// Not its pace: none (Odoo's line may show online between the
		// failing round's calls, its last error cleared).
		b.WriteString("backlog NOT going to Odoo: " + etaWords(d))
	} else {
		b.WriteString("backlog going to Odoo")
		if d.RecordsPerSecond != nil {
			fmt.Fprintf(&b, " at %s records/s (the last %s)", count(math.Round(*d.RecordsPerSecond)), secs(d.WindowSeconds))
		}
		b.WriteString(", " + etaWords(d))
	}
	if r := d.Round; r != nil {
		fmt.Fprintf(&b, "; round %d under way for %s: %s", r.Number, secs(r.Seconds), roundWords(r))
	}
	return b.String()
}

// etaWords says the time left of a drain, or why it is not known yet: its
// rounds failing, or not measured yet.
func etaWords(d *agent.DrainStatus) string {
	switch {
	case d.RoundsFailed == 1:
		return "its last round failed, with " + oneLine(d.LastFailure)
	case d.RoundsFailed > 1:
		return fmt.Sprintf("its last %d rounds failed, the last with %s", d.RoundsFailed, oneLine(d.LastFailure))
	}
	if d.ETASeconds == nil || d.RoundSeconds == nil {
		switch r := d.Round; {
		case d.SizeChanged:
			return "time left known once a round at the load size in force ends (those measured so far sent another number of downtime lines a load)"
		case r != nil && r.Phase == "downtime" && r.CountRecords == 0:
			// Nothing to pace it but its loads: a backlog of stops and
			// runs only (the operator review: it said "count writes").
			return "time left known once the first round ends (it sends downtime lines only: no count writes to pace it)"
		case r != nil && r.Phase == "reading":
			// Not known yet whether it has counts to write.
			return "time left known once the first round's count writes show their pace, or once it ends if it has none"
		}
		return "time left known once the first round's count writes show their pace"
	}
	rounds := d.RoundsLeft
	this := ""
	if d.Round != nil {
		this = "this round and "
	}
	what := this + plural(rounds, "more round")
	if rounds == 0 {
		what = "this round"
	}
	return fmt.Sprintf("about %s left (%s, %s a round)", secs(*d.ETASeconds), what, secs(*d.RoundSeconds))
}

// roundWords says what a drain's round under way does.
func roundWords(r *agent.DrainRound) string {
	counts := ""
	if r.CountRecords > 0 {
		counts = fmt.Sprintf(", the counts of %s in flight (acknowledged at the round's end)", plural(r.CountRecords, "record"))
	}
	switch r.Phase {
	case "downtime":
		return fmt.Sprintf("downtime lines, %s (%s taken)%s", progress(r.LoadsSent, r.Loads, "load", "to send", "sent"), plural(r.DowntimeClaimed, "stop/run record"), counts)
	case "counts":
		return fmt.Sprintf("writing counts, %s%s", progress(r.WritesSent, r.Writes, "machine", "to write", "done"), counts)
	case "acknowledging":
		return "acknowledging what Odoo took" + counts
	}
	return "reading the buffer and the work orders in Odoo" + counts
}

// progress says how far a round is through its n things in words, not
// "0 of 1 loads sent": "3 loads to send", "2 loads sent and 8 to go", "both
// loads sent", "all 10 loads sent".
func progress(done, n int, thing, toDo, did string) string {
	switch {
	case done <= 0:
		return plural(n, thing) + " " + toDo
	case done >= n && n == 1:
		return "its 1 " + thing + " " + did
	case done >= n && n == 2:
		return "both " + thing + "s " + did
	case done >= n:
		return fmt.Sprintf("all %d %ss %s", n, thing, did)
	}
	return fmt.Sprintf("%s %s and %d to go", plural(done, thing), did, n-done)
}

// secs prints seconds as a duration to the second (1m30s).
func secs(s float64) string {
	return (time.Duration(math.Round(s)) * time.Second).String()
}
