package agent

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/plantedge/plantedge/buffer"
	"github.com/plantedge/plantedge/odoo"
)

// The number of downtime lines a load carries adapts to how Odoo takes
// them (the PEERS audit, the slow drain): Odoo's load runs every row
// through the ORM, so a load of 200 lines on a small VM behind a WAN may
// outlast odoo.timeout. Such a load is in doubt and holds every write back
// for odoo.request_limit; sent again at the same size it timed out again,
// and the drain never finished. After a load that took too long the next
// sends half as many lines (down to 1); after a full load answered in
// under a quarter of odoo.timeout, twice as many (up to linesPerLoad): a
// batch size's additive-increase, multiplicative-decrease, in halvings
// and doublings. The lines carry their external ids: a smaller load that
// repeats lines of a load Odoo committed late updates them, it does not
// add any. A round takes at most loadsPerRound loads' worth of records,
// so a round at a shrunken size is no longer than one at full size.
//
// A load a proxy in front of Odoo refuses as too large (its 413 page:
// nginx's client_max_body_size, 1m by default; a web firewall's body
// limit) halves the size too, and the loads never grow back to the size
// refused for the rest of the run (tooLargeAt): a load of a part of the
// lines passes where the whole was refused — unless a line is then refused
// alone, which the loads refused on the way down carried: the mark is
// forgotten. Taken as a refusal of the
// lines, the load was sent again line by line, one request a line (a long
// outage's backlog of 3,000 stops behind a 16 KiB limit: 3,017 requests
// and 49 s, against 17 and 2 s).
//
// The size in force is kept in the buffer file (loadSizeKey) and a start
// begins at it: at full size again after each start, a slow drain's first
// load timed out and held every write (all machines' quantities too) for
// odoo.request_limit, once for each halving back down — about 7.5 to 9
// minutes of nothing written at the defaults, after every restart
// (review45).

// loadsPerRound is how many full loads a round's downtime records make.
const loadsPerRound = maxEventsPerRound / linesPerLoad

// loadLines is how many downtime lines a load carries now: rows Odoo
// writes, a drain's and a rebook's alike (a drain's record acknowledged
// without a row rides along: loadEnd).
func (f *forwarder) loadLines() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.loadLinesLocked()
}

func (f *forwarder) loadLinesLocked() int {
	if f.link.LinesPerLoad == 0 {
		return linesPerLoad
	}
	return f.link.LinesPerLoad
}

// roundEvents is how many downtime records a round takes at the load size
// in force: loadsPerRound loads at most (a record is at most a row).
func (f *forwarder) roundEvents() int {
	return loadsPerRound * f.loadLines()
}

// callLoad is f.call of an upsert_downtimes load of n lines, whose time
// (the waits for forward.rate left out, as f.call measures it) adapts the
// load size (learnLoad). A load the agent's own stop cut (its stop
// timeout) says nothing of the size: it is not noted, else a stop during a
// drain would leave the next start smaller.
func (f *forwarder) callLoad(ctx context.Context, n int, fn func(context.Context) error) error {
	start, waited := time.Now(), f.rateWaited.Load()
	err := f.call(ctx, "upsert_downtimes", fn)
	if ctx.Err() == nil {
		f.learnLoad(ctx, n, time.Since(start)-time.Duration(f.rateWaited.Load()-waited), err)
	}
	return err
}

// loadSizeKey is the buffer meta key of the load size in force while it is
// shrunk (absent at full size): a start begins at it (restoreLoadSize).
const loadSizeKey = "odoo/lines_per_load"

// learnLoad adapts the load size (noteLoad) and stores a change in the
// buffer file for the next start. Not stored (a failing disk), the next
// start begins at full size, as before the size was kept.
func (f *forwarder) learnLoad(ctx context.Context, n int, took time.Duration, err error) {
	next, changed := f.noteLoad(n, took, err)
	if !changed {
		return
	}
	kv := buffer.KV{Key: loadSizeKey}
	if next < linesPerLoad {
		kv.Value = []byte(strconv.Itoa(next))
	}
	if err := f.a.buf.PutMeta(ctx, kv); err != nil {
		f.a.log.Debug("load size not stored", "component", "forwarder", "lines_per_load", next, "err", err)
	}
}

// restoreLoadSize takes the load size the last run left (loadSizeKey),
// within 1 to linesPerLoad: one stored above the largest load this
// plantedge sends is full size. One that cannot be read is full size too.
func (f *forwarder) restoreLoadSize() {
	b, err := f.a.buf.Meta(loadSizeKey)
	if err != nil || b == nil {
		return
	}
	n, err := strconv.Atoi(string(b))
	if err != nil || n <= 0 || n >= linesPerLoad {
		return
	}
	f.mu.Lock()
	f.link.LinesPerLoad = n
	f.mu.Unlock()
	f.a.log.Info("loads of downtime lines start at the size the last run left: Odoo took too long for larger ones, or a proxy in front of it refused them as too large (they grow back after quick answers)",
		"component", "forwarder", "lines_per_load", n, "max", linesPerLoad)
}

// noteLoad adapts the load size to a load of n lines that took took
// (rate waits left out) and ended with err; it logs a change, once, and
// returns the size now and whether it changed.
func (f *forwarder) noteLoad(n int, took time.Duration, err error) (int, bool) {
	timeout := f.a.cfg.Load().Odoo.Timeout.D()
	f.mu.Lock()
	cur := f.loadLinesLocked()
	next := cur
	tooLarge := odoo.TooLarge(err)
	switch {
	case err == nil && n >= cur && cur < linesPerLoad && timeout > 0 && took < timeout/4:
		next = min(linesPerLoad, 2*cur)
		if f.tooLargeAt > 0 && next >= f.tooLargeAt {
			// A proxy refused a load of that many: the size that passed
			// stays.
			next = cur
		}
	case tooLarge && n > 1:
		// Half the load refused (a round's last load may carry fewer than
		// the size in force), never grown back to it this run.
		next = max(1, min(cur, n)/2)
		if f.tooLargeAt == 0 || n < f.tooLargeAt {
			f.tooLargeAt = n
		}
	case tooLarge:
		// One line refused alone says nothing of loads of other lines —
		// and the loads refused on the way down to it carried it: they
		// were refused for that line, not for their size. Forgotten, the
		// size grows back after quick loads (a proxy's real limit is
		// found again, one refusal); kept, every load this run carried
		// one line (a drain of 3,000 stops, 3,000 requests).
		f.tooLargeAt = 0
	case err != nil && loadTooSlow(err, took, timeout):
		// Half the size in force, whatever the load carried: a round's
		// last load of a few lines timing out is Odoo (or the link)
		// stalling as much as the size (a 2-line load that took 20 s
		// under a loaded test machine had shrunk 200 to 1).
		next = max(1, cur/2)
	}
	f.link.LinesPerLoad = next
	if next == linesPerLoad {
		f.link.LinesPerLoad = 0
	}
	f.mu.Unlock()
	switch {
	case next < cur && tooLarge:
		f.a.log.Warn("a proxy in front of Odoo refused a load of downtime lines as too large (its limit on a request's body: nginx's client_max_body_size): the next loads carry fewer",
			"component", "forwarder", "lines", n, "lines_per_load", next, "was", cur, "err", err)
	case next < cur:
		f.a.log.Info("odoo took too long for a load of downtime lines: the next loads carry fewer",
			"component", "forwarder", "lines", n, "took", took.Round(time.Millisecond), "timeout", timeout,
			"lines_per_load", next, "was", cur, "err", err)
	case next > cur:
		f.a.log.Info("odoo answered a load of downtime lines well within its timeout: the next loads carry more",
			"component", "forwarder", "lines", n, "took", took.Round(time.Millisecond), "timeout", timeout,
			"lines_per_load", next, "was", cur)
	}
	return next, next != cur
}

// loadTooSlow tells whether a load's error says it took too long for its
// size: no answer within odoo.timeout, a proxy in front of Odoo giving up
// waiting (504, Cloudflare's 524), or an answer lost (a connection reset
// or closed: Odoo's worker killed at its own limit, limit_time_real)
// after half the timeout or more — behind nginx or HAProxy, as Odoo's
// deployment guide sets it up, that kill reaches the agent as the proxy's
// 502 ("upstream prematurely closed connection"), not as a reset: with
// odoo.timeout longer than Odoo's limit it is the only sign (the same
// full load was killed again and again, the drain stuck). A refusal, or a
// connection refused or a 502 at once, says nothing of the size.
func loadTooSlow(err error, took, timeout time.Duration) bool {
	var oe *odoo.Error
	if !errors.As(err, &oe) {
		return false
	}
	switch {
	case oe.Timeout() && oe.TimedOut():
		return true
	case odoo.ProxyGaveUp(err):
		return true
	}
	lost := odoo.InDoubt(err) || oe.Status == http.StatusBadGateway
	return lost && timeout > 0 && took >= timeout/2
}
