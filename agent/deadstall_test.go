package agent_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/plantedge/plantedge/agent"
)

// deadLetterBeforeAStall starts a stall plant (a stall said after a
// second) whose second booking Odoo refuses for good: 3 pieces in a dead
// letter, 1 booked.
func deadLetterBeforeAStall(t *testing.T) (p *plant, ra *runningAgent, freeze, thaw func()) {
	t.Helper()
	p, ra, _, freeze, thaw = stallPlant(t, time.Second)
	p.odoo.RefuseNext("mrp.workorder", "write", 1, "odoo.exceptions.UserError", "You cannot change the quantity of a done work order.")
	p.produce(p.machines[0], 3, 0)
	waitFor(t, 15*time.Second, "a dead letter", func() (bool, string) {
		st := ra.a.Status()
		return st.Buffer.DeadLetters == 1, fmt.Sprintf("%d dead letters", st.Buffer.DeadLetters)
	})
	p.waitRoundsPass(ra, 1, "after the dead letter") // no write of its round left to stall (stallPlant)
	return p, ra, freeze, thaw
}

// A technician who sees "buffer write stalled" in status looks at the dead
// letters next. The list answers (a read does not wait for the stalled
// write) and says what it does not show yet. A retry or drop asked then
// waited for the disk, past the CLI's 10 s: "agent not answering: running
// but hung or paused?". It is refused now, saying why, and nothing is
// changed; once the disk is back it is done.
func TestDeadLettersAskedDuringAWriteStall(t *testing.T) {
	p, ra, freeze, thaw := deadLetterBeforeAStall(t)
	freeze()
	p.produce(p.machines[0], 2, 0)
	waitFor(t, 30*time.Second, "the stall shown", func() (bool, string) {
		st := ra.a.Status()
		return st.Buffer.WriteStalledSeconds > 0, fmt.Sprintf("%+v", st.Buffer)
	})
	api := agent.NewAPIClient(p.listen)
	dls, note, err := api.DeadLettersNoted(context.Background())
	if err != nil || len(dls) != 1 || !strings.Contains(dls[0].Reason, "done work order") {
		t.Fatalf("dead letters during the stall: %+v, %v", dls, err)
	}
	if !strings.Contains(note, "has not completed a write") || !strings.Contains(note, "listed once the disk completes its writes") {
		t.Errorf("the list's note during the stall %q: want the stall, and what is not listed yet", note)
	}
	for _, action := range []string{"retry", "drop"} {
		_, err := api.DeadLetterAction(context.Background(), action, "1", false)
		var ae *agent.AnswerError
		if !errors.As(err, &ae) || !strings.Contains(ae.Body, "has not completed a write") || !strings.Contains(ae.Body, "nothing was changed") {
			t.Errorf("%s during the stall: %v; want the agent to say the stall, and that nothing was changed", action, err)
		}
	}
	thaw()
	p.waitExactQty(ra, "press-1", 3) // 1, and the 2 made during the stall
	if dls, err := api.DeadLetters(context.Background()); err != nil || len(dls) != 1 {
		t.Fatalf("dead letters after the thaw: %+v, %v; want the one there was (nothing changed)", dls, err)
	}
	if _, note, err := api.DeadLettersNoted(context.Background()); err != nil || note != "" {
		t.Errorf("the list's note after the thaw %q (%v), want none", note, err)
	}
	if res, err := api.DeadLetterAction(context.Background(), "retry", "1", false); err != nil || res.Affected != 1 {
		t.Fatalf("retry after the thaw: %+v, %v", res, err)
	}
	p.waitExactQty(ra, "press-1", 6)
}

// The dead letters listed during a stall on a busy machine: their read,
// which does not wait behind the stalled write, takes a while to begin
// (300 ms here). It was given up on at the agent's first look, 20 ms,
// and the list said the dead letters could not be read (CI, with nine
// packages' tests at once). It lists them.
func TestDeadLettersListedDuringAStallOnABusyMachine(t *testing.T) {
	p, ra, freeze, thaw := deadLetterBeforeAStall(t)
	t.Cleanup(thaw) // before the agent's stop
	freeze()
	p.produce(p.machines[0], 2, 0)
	waitFor(t, 30*time.Second, "the stall shown", func() (bool, string) {
		st := ra.a.Status()
		return st.Buffer.WriteStalledSeconds > 0, fmt.Sprintf("%+v", st.Buffer)
	})
	restore := agent.SlowWaitedReads(300 * time.Millisecond)
	defer restore()
	dls, note, err := agent.NewAPIClient(p.listen).DeadLettersNoted(context.Background())
	if err != nil || len(dls) != 1 || !strings.Contains(note, "listed once the disk completes its writes") {
		t.Errorf("dead letters listed during the stall, their read slow: %d, %v, note %q; want the one there is", len(dls), err, note)
	}
	restore()
	thaw()
	p.waitExactQty(ra, "press-1", 3)
}

// A retry of all asked just before the disk stops completing writes: its
// transaction stalls. The CLI is told, once the stall is said, that the
// retry waits for the disk and takes effect when it completes its writes
// (it did not hear before its 10 s were up, and the retry, stopped when
// the CLI went, could stop between two dead letters). Another retry or a
// drop meanwhile changes nothing and says what waits; the list says it
// too. Thawed, the retry takes effect, once: the pieces are booked once.
func TestDeadLetterRetryStalledTakesEffectOnce(t *testing.T) {
	p, ra, freeze, thaw := deadLetterBeforeAStall(t)
	api := agent.NewAPIClient(p.listen)
	freeze()
	_, err := api.DeadLetterAction(context.Background(), "retry", "all", false)
	var ae *agent.AnswerError
	if !errors.As(err, &ae) || !strings.Contains(ae.Body, "has not completed a write") || !strings.Contains(ae.Body, "the retry waits for it, and takes effect") {
		t.Fatalf("retry stalled: %v; want the agent to say that it waits for the disk and takes effect then", err)
	}
	for _, action := range []string{"retry", "drop"} {
		_, err := api.DeadLetterAction(context.Background(), action, "all", false)
		if !errors.As(err, &ae) || !strings.Contains(ae.Body, "a retry of all dead letters asked at") || !strings.Contains(ae.Body, "changed nothing") {
			t.Errorf("a %s while the retry waits: %v; want it refused, saying what waits", action, err)
		}
	}
	dls, note, err := api.DeadLettersNoted(context.Background())
	if err != nil || len(dls) != 1 || !strings.Contains(note, "a retry of all dead letters asked at") ||
		!strings.Contains(note, "waits for it: what it retries is listed until then") {
		t.Errorf("the list while the retry waits: %d dead letters, %v, note %q; want the one there is, noted as waiting for its retry", len(dls), err, note)
	}
	thaw()
	p.waitExactQty(ra, "press-1", 4)
	waitFor(t, 10*time.Second, "the retry logged", func() (bool, string) {
		return strings.Contains(p.logs.String(), "after_the_disk_stall=true"), "not logged"
	})
	if dls, err := api.DeadLetters(context.Background()); err != nil || len(dls) != 0 {
		t.Errorf("dead letters after the thaw: %+v, %v; want none (retried)", dls, err)
	}
	p.produce(p.machines[0], 1, 0)
	p.waitExactQty(ra, "press-1", 5) // not 8: the retry took effect once
}

// A read of the dead letters that begins while a stalled commit writes its
// meta page waits behind it (bbolt holds a read transaction's start;
// held here by HoldWaitedReads). The list waited past the CLI's 10 s
// ("agent not answering"); it answers now within seconds, saying that the
// dead letters cannot be read until the disk completes the write, with how
// many there are and the newest.
func TestDeadLetterListWhileAReadWaitsOnTheStall(t *testing.T) {
	p, ra, freeze, thaw := deadLetterBeforeAStall(t)
	held, release, restore := agent.HoldWaitedReads()
	t.Cleanup(restore) // before the agent's stop
	safety := time.AfterFunc(40*time.Second, release)
	defer safety.Stop()
	freeze()
	p.produce(p.machines[0], 2, 0)
	waitFor(t, 30*time.Second, "the stall shown", func() (bool, string) {
		st := ra.a.Status()
		return st.Buffer.WriteStalledSeconds > 0, fmt.Sprintf("%+v", st.Buffer)
	})
	_, err := agent.NewAPIClient(p.listen).DeadLetters(context.Background())
	var ae *agent.AnswerError
	if !errors.As(err, &ae) || !strings.Contains(ae.Body, "the dead letters cannot be read until it does") ||
		!strings.Contains(ae.Body, "1 dead letter; the newest: 1, press-1/good, 3 good pieces") || !strings.Contains(ae.Body, "done work order") {
		t.Errorf("the list while its read waits on the stall: %v; want the stall said, with the count and the newest", err)
	}
	if held() == 0 {
		t.Errorf("the list's read was not held: it did not wait as a read behind the stall")
	}
	thaw()
	release()
	p.waitExactQty(ra, "press-1", 3)
	if dls, err := agent.NewAPIClient(p.listen).DeadLetters(context.Background()); err != nil || len(dls) != 1 {
		t.Errorf("dead letters after the thaw: %+v, %v", dls, err)
	}
}

// A read that status waits for behind a buffer write (a commit stalled in
// its meta page holds a read transaction's start) was waited for until the
// write was said stalled (WriteStallAfter, 30 s by default): past the
// CLI's 10 s and Prometheus's scrape timeout, "agent not answering: running
// but hung or paused?". It is given up on once the write has run for 5 s,
// and status answers with what it has.
func TestStatusAnswersWhileAWriteRunsLong(t *testing.T) {
	p, ra, _, freeze, thaw := stallPlant(t, 10*time.Minute)
	freeze()
	p.produce(p.machines[0], 2, 0)
	waitFor(t, 30*time.Second, "a buffer write running", func() (bool, string) {
		d := ra.a.WriteRunning()
		return d > 0, d.String()
	})
	heldReads, releaseReads, restoreReads := agent.HoldWaitedReads()
	t.Cleanup(restoreReads) // before the agent's stop
	heldScans, releaseScans, restoreScans := agent.HoldWaitedPendingScans()
	t.Cleanup(restoreScans)
	// Status again until one waited on a held read (the pending counts
	// are read again a second after the last read): each must answer.
	waitFor(t, 30*time.Second, "a status that waited on a read behind the write", func() (bool, string) {
		got := make(chan agent.Status, 1)
		go func() { got <- ra.a.Status() }()
		select {
		case st := <-got:
			if st.Buffer.WriteStalledSeconds != 0 || st.Site == "" {
				t.Errorf("status while a write runs, not stalled yet: %+v", st.Buffer)
			}
		case <-time.After(60 * time.Second):
			t.Fatal("status did not answer within 60 s of a buffer write running: it waits for the write to be said stalled (10 minutes here)")
		}
		return heldReads()+heldScans() > 0, fmt.Sprintf("held reads %d, scans %d", heldReads(), heldScans())
	})
	thaw()
	releaseReads()
	releaseScans()
	p.waitExactQty(ra, "press-1", 3)
}
