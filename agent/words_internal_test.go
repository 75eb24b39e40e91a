package agent

import (
	"strings"
	"testing"

	"github.com/plantedge/plantedge/agent/config"
)

// Counts shown to an operator agree with their number (ux45: status said
// "1 good pieces Odoo refused are in the dead letters").
func TestCountsInWords(t *testing.T) {
	tenth := 0.1
	eleven := &config.Error{}
	for range maxReloadProblems + 1 {
		eleven.Problems = append(eleven.Problems, config.Problem{File: "p.yaml", Line: 1, Column: 1, Msg: "bad"})
	}
	for _, tc := range []struct{ name, got, want string }{
		{"one refused", deadLetterNote(pendingCount{deadGood: 1}),
			"1 good piece Odoo refused is in the dead letters, not in Odoo (plantedge deadletter list)"},
		{"a part refused", deadLetterNote(pendingCount{deadGood: 0.5}),
			"0.5 good pieces Odoo refused are in the dead letters, not in Odoo (plantedge deadletter list)"},
		{"one set aside", deadLetterNote(pendingCount{deadGood: 1, deadUnmapped: 1}),
			"1 good piece set aside while the machine was not in the configuration is in the dead letters, not in Odoo"},
		{"set aside, both", deadLetterNote(pendingCount{deadGood: 1, deadUnmapped: 1, deadEvents: 1, deadEventsUnmapped: 1}),
			"1 good piece and 1 downtime record set aside while the machine was not in the configuration are in the dead letters"},
		{"one of a finished order", deadLetterNote(pendingCount{deadGood: 1, deadFinished: 1}),
			"1 good piece made on a work order finished before it reached Odoo is in the dead letters, not in Odoo (its quantity is what it was finished with: correct it in Odoo if need be, then drop it;"},
		{"one of a cancelled order", deadLetterNote(pendingCount{deadGood: 1, deadCancelled: 1}),
			"1 good piece made on a work order cancelled before it reached Odoo is in the dead letters, not in Odoo (a cancelled order takes no quantity: book it by hand if need be, then drop it;"},
		{"scrap refused", deadLetterNote(pendingCount{deadScrap: 2}),
			"2 scrapped pieces Odoo refused are in the dead letters, not in Odoo (plantedge deadletter list)"},
		{"scrap set aside", deadLetterNote(pendingCount{deadScrap: 1, deadScrapUnmapped: 1, deadEvents: 2, deadEventsUnmapped: 2}),
			"1 scrapped piece and 2 downtime records set aside while the machine was not in the configuration are in the dead letters"},
		{"scrap of an ended order", deadLetterNote(pendingCount{deadScrap: 3, deadScrapEnded: 3}),
			"3 scrapped pieces made on a work order finished or cancelled before they reached Odoo are in the dead letters, not in Odoo (plantedge deadletter list says what to do)"},
		{"one more problem", reloadErrorText(eleven), "… and 1 more problem (plantedge validate shows every problem)"},
		{"one draft", scrapDraftsMessage(&config.Config{}, []scrapDraft{{XMLID: "x", Qty: 2}}, "wait"),
			"1 scrap booking of 2 waits as a draft in Odoo (first: x)"},
		{"two drafts", scrapDraftsMessage(&config.Config{}, []scrapDraft{{XMLID: "x", Qty: 2}, {XMLID: "y", Qty: 1}}, "waited"),
			"2 scrap bookings of 3 in all waited as drafts in Odoo (first: x)"},
		// Quantities derived from a factor show without float noise and
		// without an exponent (mapping46).
		{"a big draft", scrapDraftsMessage(&config.Config{}, []scrapDraft{{XMLID: "x", Qty: 1500000}}, "wait"),
			"1 scrap booking of 1500000 waits as a draft in Odoo (first: x)"},
		{"a noisy part", Pieces(3*tenth, "good"), "0.3 good pieces"},
		{"a noisy sum", Pieces(sumOf(1000, tenth), ""), "100 pieces"},
		{"ten billion and a part", Pieces(12345678901.23, ""), "12345678901.23 pieces"},
		{"pieces", Pieces(1, "") + ", " + Pieces(2, "good") + ", " + Pieces(1, "scrapped"), "1 piece, 2 good pieces, 1 scrapped piece"},
	} {
		if !strings.Contains(tc.got, tc.want) {
			t.Errorf("%s:\n got %q\nwant %q in it", tc.name, tc.got, tc.want)
		}
	}
}

// sumOf adds step n times, as the agent adds a counter's steps.
func sumOf(n int, step float64) float64 {
	var s float64
	for range n {
		s += step
	}
	return s
}
