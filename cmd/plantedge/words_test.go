package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/plantedge/plantedge/agent"
)

// Counts shown to an operator agree with their number (ux45).
func TestCountsInWords(t *testing.T) {
	var accept bytes.Buffer
	_ = printAccept(&accept, agent.AcceptResult{Accepted: true, Machine: "m1", WorkOrder: "WO/1", Now: 5, Was: 4, Pending: 1})
	var rebook bytes.Buffer
	_ = printRebook(&rebook, agent.RebookResult{Lines: 1, Scraps: 1, LinesMissing: 1, ScrapsMissing: 1, LinesRebooked: 1, ScrapsRebooked: 1,
		LinesWithoutWorkorder: 1, ScrapDrafts: 1, NotRebooked: []string{"scrap x"}})
	for _, tc := range []struct{ name, got, want string }{
		{"accept-qty", accept.String(), "; the 1 piece still in the buffer is written by the next rounds\n"},
		{"rebook", rebook.String(), ": 1 downtime line, 1 scrap booking\n"},
		{"rebook lacks", rebook.String(), "Odoo lacks 1 line and 1 scrap booking: rebooked 1 line and 1 scrap booking\n" +
			"1 line booked without its work order: Odoo lacks it (made after the backup?)\n" +
			"1 scrap booking left a draft in Odoo"},
		{"flush held", heldPieces(1), "the counts of 1 piece"},
		{"flush held", heldPieces(2), "the counts of 2 pieces"},
	} {
		if !strings.Contains(tc.got, tc.want) {
			t.Errorf("%s:\n got %q\nwant %q in it", tc.name, tc.got, tc.want)
		}
	}
}

// What a retry of all kept agrees with its number, pronouns included
// ("kept 1 dead letter …: retried, they would be booked" — review45b).
func TestKeptLinesAgreeWithTheirNumber(t *testing.T) {
	one := strings.Join(keptLines(agent.DeadLetterResult{KeptDamaged: 1, KeptElsewhere: 1, Elsewhere: []string{"old"}, To: "new"}), "\n")
	for _, w := range []string{"kept 1 damaged dead letter: its bytes cannot be read as records, so it cannot be retried; inspect it with", "and drop it",
		"kept 1 dead letter refused by another Odoo (old) than the one the agent sends to (new): retried, it would be booked"} {
		if !strings.Contains(one, w) {
			t.Errorf("one of each: no %q in\n%s", w, one)
		}
	}
	two := strings.Join(keptLines(agent.DeadLetterResult{KeptDamaged: 2, KeptElsewhere: 2, Elsewhere: []string{"old"}, To: "new"}), "\n")
	for _, w := range []string{"kept 2 damaged dead letters: their bytes cannot be read as records, so they cannot be retried; inspect them with", "and drop them",
		"kept 2 dead letters refused by another Odoo (old) than the one the agent sends to (new): retried, they would be booked"} {
		if !strings.Contains(two, w) {
			t.Errorf("two of each: no %q in\n%s", w, two)
		}
	}
}
