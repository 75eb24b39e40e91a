package main

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/plantedge/plantedge/agent"
)

// Text from outside (an Odoo message, a downtime reason published on MQTT)
// reached the terminal raw: the security probe cleared the screen and
// printed a fake dead-letter row. The output's writer and the cells that
// hold such text escape control characters.
func TestOutsideTextCannotDriveTheTerminal(t *testing.T) {
	var raw bytes.Buffer
	w := termSafe{&raw}
	views := []agent.DeadLetterView{{
		ID: 7, Lane: "events", Key: "press-1/event", At: time.Now(),
		Reason: "ValidationError: \x1b[2J\x1b[31mPWNED\r\nnext line\a",
		What:   "stop from 10:00 to 10:05, reason \u001b[2J\r\nID 999 fake row\u0007\u202e",
	}}
	if err := printDeadLetters(w, views, "", false); err != nil {
		t.Fatal(err)
	}
	fmt.Fprintln(w, "plain text\twith a tab stays as it is")
	out := raw.String()
	for _, c := range []string{"\x1b", "\r", "\a", "\u202e"} {
		if strings.Contains(out, c) {
			t.Errorf("output holds %q:\n%s", c, out)
		}
	}
	if n := strings.Count(out, "\n"); n != 3 {
		t.Errorf("%d lines, want 3 (header, one dead letter, the plain line):\n%s", n, out)
	}
	for _, want := range []string{`\x1b[2J`, `\x0d\x0aID 999 fake row\x07\u202e`, "plain text\twith a tab"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

func TestOneLine(t *testing.T) {
	for in, want := range map[string]string{
		"plain – ünïcode":   "plain – ünïcode",
		"a\nb\tc":           `a\x0ab\x09c`,
		"csi \u009b2J":      `csi \x9b2J`,
		"sep\u2028x\u2066y": `sep\u2028x\u2066y`,
	} {
		if got := oneLine(in); got != want {
			t.Errorf("oneLine(%q) = %q, want %q", in, got, want)
		}
	}
}

// A dead letter another Odoo refused (odoo.url or odoo.database changed
// since) names it: `deadletter retry` keeps it.
func TestDeadLetterListNamesAnotherOdoo(t *testing.T) {
	var out bytes.Buffer
	views := []agent.DeadLetterView{
		{ID: 1, Lane: "counts", Key: "press-1/good", Reason: "UserError: done", Odoo: "old:8069 prod"},
		{ID: 2, Lane: "counts", Key: "press-1/good", Reason: "UserError: done", Odoo: "new:8069 prod"},
	}
	if err := printDeadLetters(&out, views, "new:8069 prod", false); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 3 || !strings.Contains(lines[1], "(refused by old:8069 prod, not the Odoo the agent sends to) UserError: done") ||
		strings.Contains(lines[2], "refused by") {
		t.Errorf("list:\n%s", out.String())
	}
}
