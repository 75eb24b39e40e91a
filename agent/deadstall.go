package agent

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/plantedge/plantedge/buffer"
)

// The dead-letter endpoints while a buffer write stalls (a frozen or
// failing disk, a hung network file system: the write neither fails nor
// returns). A technician who sees the stall in status looks at the dead
// letters next. Reads of the buffer do not wait for the stalled write,
// except one that begins while its commit writes the meta page (bbolt
// holds a read transaction's start meanwhile); a retry or drop is a write
// and waits for the disk. The CLI gave up after its 10 s with "agent not
// answering: running but hung or paused?".

// NoteHeader carries a note on the agent's answer: what the answer does
// not show, and why (the dead letters read during a write stall).
const NoteHeader = "X-Plantedge-Note"

// waitedReadLimit is how long a read that status, /metrics or the dead
// letters make waits behind a buffer write before it is given up on: the
// CLI gives up at 10 s (Prometheus's scrape timeout is 10 s too), and a
// write is said stalled only at WriteStallAfter, 30 s by default.
const waitedReadLimit = 5 * time.Second

// stalledReadGrace is how long a read begun while a buffer write is
// stalled is waited for before it is given up on (readWaitedWithin). One
// that does not wait behind the stalled write ends in milliseconds on a
// quiet box, but it was given up on at the first look, 20 ms: on a busy
// one (CI, the race detector, nine packages' tests at once) the dead
// letters listed during a stall were said unreadable, their read not yet
// done. A read that does wait (a commit stalled in its meta page) still
// answers within the CLI's 10 s.
const stalledReadGrace = time.Second

// deadAsked is the dead-letter retry or drop under way.
type deadAsked struct {
	action, id string
	at         time.Time
}

func (d *deadAsked) String() string {
	what := "dead letter " + d.id
	if d.id == "all" {
		what = "all dead letters"
	}
	return fmt.Sprintf("a %s of %s asked at %s", d.action, what, d.at.Local().Format(time.TimeOnly))
}

// writeRunning is for how long the buffer write in progress has run (0:
// none runs, or the buffer is not open).
func (a *Agent) writeRunning() time.Duration {
	if !a.opened.Load() {
		return 0
	}
	if since := a.buf.WriteRunningSince(); !since.IsZero() {
		return time.Since(since)
	}
	return 0
}

// stalledWords says a stalled write of d in words.
func stalledWords(d time.Duration) string {
	return fmt.Sprintf("the buffer's disk has not completed a write for %s (a frozen or failing disk, a hung network file system; plantedge status says it too)",
		d.Round(time.Second))
}

// serveDeadLetters answers a page of the dead letters (?after=ID&limit=N:
// a plant can pile up a great many while Odoo refuses something for days).
// A read waiting behind a buffer write for waitedReadLimit is given up on:
// the answer says so, with what is known without reading (how many there
// are, the newest). Read while a write is stalled, NoteHeader says what
// the list does not show yet.
func (a *Agent) serveDeadLetters(w http.ResponseWriter, r *http.Request) {
	if !a.bufferOpen(w) {
		return
	}
	after, _ := strconv.ParseUint(r.URL.Query().Get("after"), 10, 64)
	limit, err := strconv.Atoi(r.URL.Query().Get("limit"))
	if err != nil || limit <= 0 || limit > deadLetterPage {
		limit = deadLetterPage
	}
	var views []DeadLetterView
	read := func() {
		dls, rerr := a.buf.DeadLetterPage(after, limit)
		var by deadOdoo
		if rerr == nil {
			by, rerr = loadDeadOdoo(a.buf)
		}
		views, err = deadLetterViews(dls, by), rerr
	}
	if !a.readWaitedWithin(read, waitedReadLimit) {
		http.Error(w, a.deadLettersUnread(), http.StatusServiceUnavailable)
		return
	}
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	if d := a.writeStalled(); d > 0 {
		note := stalledWords(d) + ": a dead letter Odoo refuses meanwhile is listed once the disk completes its writes"
		if asked := a.deadAsked.Load(); asked != nil {
			does := map[string]string{"retry": "retries", "drop": "drops"}[asked.action] // ("retrys")
			note += "; " + asked.String() + " waits for it: what it " + does + " is listed until then"
		}
		w.Header().Set(NoteHeader, note)
	}
	writeJSON(w, views)
}

// deadLettersUnread says why the dead letters were not read, and what is
// known without a read: how many there are and the newest (the queue keeps
// both).
func (a *Agent) deadLettersUnread() string {
	d := max(a.writeStalled(), a.writeRunning(), waitedReadLimit)
	out := fmt.Sprintf("%s, and the dead letters cannot be read until it does (a read waits behind it)", stalledWords(d))
	n := a.buf.Stats().DeadLetters
	latest, ok, err := a.buf.LatestDeadLetter()
	if err != nil || !ok {
		return out + fmt.Sprintf(": %s", Plural(n, "dead letter"))
	}
	v := deadLetterViews([]buffer.DeadLetter{latest}, deadOdoo{})[0]
	what := v.What
	if what == "" {
		what = "-"
	}
	reason := strings.Join(strings.Fields(v.Reason), " ")
	if r := []rune(reason); len(r) > 300 {
		reason = string(r[:300]) + "…"
	}
	return out + fmt.Sprintf(": %s; the newest: %d, %s, %s, dead-lettered %s: %s", Plural(n, "dead letter"), v.ID, v.Key, what,
		v.At.Local().Format(LocalStamp), reason)
}

// readWaitedWithin runs read, a read of the buffer, and waits for it until
// it ends, a buffer write has stalled and read has had stalledReadGrace,
// or one has run for within. It
// reports whether read ended (only then may the caller use what it read);
// one given up on ends on its own after the write, counted in bg for the
// stop. Stopped, it reads in the caller.
func (a *Agent) readWaitedWithin(read func(), within time.Duration) bool {
	a.pendingMu.Lock()
	if a.pendingDone.Load() {
		a.pendingMu.Unlock()
		read()
		return true
	}
	a.bg.Add(1) // under pendingMu: stopPendingScans waits for it
	a.pendingMu.Unlock()
	done := make(chan struct{})
	go func() {
		defer a.bg.Done()
		defer close(done)
		if hook := waitedReadStarts.Load(); hook != nil {
			(*hook)()
		}
		read()
	}()
	return a.awaitRead(done, within, stalledReadGrace)
}

// waitedReadStarts, when set (tests), is called before a read of the
// buffer that a caller waits for (readWaitedWithin) begins.
var waitedReadStarts atomic.Pointer[func()]

// serveDeadLetterAction retries or drops dead letters (?id=ID or all;
// here=1: also those another Odoo refused). One runs at a time. A retry or
// drop is a write, and waits for the disk: asked while a buffer write is
// stalled, it is refused, and nothing is changed; stalled while it runs,
// it goes on without the caller, who is told that it takes effect when
// the disk completes its writes (it is one transaction: all or none). It
// is not cancelled when the caller goes away: a retry of all stopped
// between two was left half done.
func (a *Agent) serveDeadLetterAction(w http.ResponseWriter, r *http.Request) {
	who := peerOf(r)
	action, id := r.PathValue("action"), r.URL.Query().Get("id")
	if action == "drop" {
		if why := who.dropRefused(); why != "" {
			a.log.Warn("dead letter drop refused", "id", id, "by", who.String())
			http.Error(w, why, http.StatusForbidden)
			return
		}
	}
	if !a.bufferOpen(w) {
		return
	}
	to := a.cfg.Load()
	if r.URL.Query().Get("here") == "1" {
		to = nil // retried in the Odoo the agent sends to, whichever refused them
	}
	tick := time.NewTicker(awaitScanLook)
	defer tick.Stop()
	nothing := func(d time.Duration) string {
		return fmt.Sprintf("%s: the %s would wait for it; nothing was changed. Try again once plantedge status no longer says the buffer write is stalled",
			stalledWords(d), action)
	}
wait:
	for {
		select {
		case a.deadAct <- struct{}{}:
			break wait
		case <-r.Context().Done():
			return
		case <-tick.C:
			if d := a.writeStalled(); d > 0 {
				msg := nothing(d)
				if asked := a.deadAsked.Load(); asked != nil {
					msg = fmt.Sprintf("%s: %s waits for it, and takes effect when the disk completes its writes; this %s changed nothing. "+
						"plantedge deadletter list shows once the disk is back what is left", stalledWords(d), asked, action)
				}
				http.Error(w, msg, http.StatusServiceUnavailable)
				return
			}
		}
	}
	if d := a.writeStalled(); d > 0 {
		<-a.deadAct
		http.Error(w, nothing(d), http.StatusServiceUnavailable)
		return
	}
	asked := &deadAsked{action: action, id: id, at: time.Now()}
	a.deadAsked.Store(asked)
	var res DeadLetterResult
	var err error
	var gaveUp atomic.Bool
	done := make(chan struct{})
	// Not the request's context: a caller gone does not stop it halfway.
	ctx := context.WithoutCancel(r.Context())
	go func() {
		defer func() {
			a.deadAsked.Store(nil)
			<-a.deadAct
		}()
		defer close(done)
		res, err = DeadLetterAction(ctx, a.buf, action, id, to)
		if err != nil {
			if gaveUp.Load() {
				a.log.Warn("the dead letter "+action+" that waited for the buffer's disk failed: nothing was changed", "id", id, "by", who.String(), "err", err)
			}
			return
		}
		a.deadLettersChanged(ctx, action, id, who, res, gaveUp.Load())
	}()
	for {
		select {
		case <-done:
		case <-tick.C:
			d := a.writeStalled()
			if d == 0 {
				continue
			}
			select {
			case <-done:
			default:
				gaveUp.Store(true)
				http.Error(w, fmt.Sprintf("%s: the %s waits for it, and takes effect when the disk completes its writes — all of it, or nothing if the disk fails the write; "+
					"plantedge deadletter list shows whether it has", stalledWords(d), action), http.StatusServiceUnavailable)
				return
			}
		}
		break
	}
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	writeJSON(w, res)
}

// deadLettersChanged does what follows a retry or drop that changed the
// dead letters: status counts them again, the audit trail says who did it,
// and a retry is forwarded at once. late: the caller was answered before
// it completed (a stalled write).
func (a *Agent) deadLettersChanged(ctx context.Context, action, id string, who peer, res DeadLetterResult, late bool) {
	n := res.Affected
	a.forgetPendingCounts() // status names the dead letters' pieces: at once, not after a second
	// Who did it, for the audit trail (the buffer logs each dead letter).
	msg := map[string]string{"drop": "dead letters dropped", "retry": "dead letters put back for another try"}[action]
	level := slog.LevelWarn // what an operator changed
	if n == 0 {
		level = slog.LevelInfo // nothing was there
	}
	attrs := []any{"id", id, "affected", n, "by", who.String()}
	if res.KeptElsewhere > 0 {
		attrs = append(attrs, "kept_refused_elsewhere", res.KeptElsewhere, "refused_by", strings.Join(res.Elsewhere, ", "))
	}
	if res.KeptFinished > 0 {
		attrs = append(attrs, "kept_finished_order", res.KeptFinished)
	}
	if late {
		attrs = append(attrs, "after_the_disk_stall", true)
	}
	a.log.Log(ctx, level, msg, attrs...)
	if action == "retry" {
		a.Flush()
	}
}
