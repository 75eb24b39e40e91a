package agent

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"github.com/plantedge/plantedge/agent/config"
	"github.com/plantedge/plantedge/buffer"
	"github.com/plantedge/plantedge/connectors"
	"github.com/plantedge/plantedge/odoo"
)

const (
	// scanChunk is how many records one buffer read returns while a round
	// aggregates the backlog, and so how many one acknowledgement holds.
	scanChunk = 10000
	// maxEventsPerRound bounds the downtime lines sent in one load call.
	maxEventsPerRound = 200
)

// woState is the durable attribution of a machine's good counts to one work
// order: Odoo's quantity when plantedge first attributed counts to it
// (Baseline), what plantedge has acknowledged since (Counted), and the
// absolute value Odoo last confirmed (Written). The value written is always
// Baseline+Counted+pending, so a repeated write is harmless; when Written
// falls behind Baseline+Counted (a quota merge folded a newer record into
// an acknowledged one) the next round writes again.
type woState struct {
	ID       int64   `json:"id"`
	Name     string  `json:"name"`
	MO       int64   `json:"mo,omitempty"` // its manufacturing order
	Baseline float64 `json:"baseline"`
	Counted  float64 `json:"counted"`
	Written  float64 `json:"written"`
	// Field is the work-order field Written went to (qty_producing on
	// 17/18, qty_produced on 19+; empty before the first write, and in
	// files from versions that did not store it): after Odoo is upgraded
	// across 19, the count is written again to the new field.
	Field string `json:"field,omitempty"`
	// InFlight is a quantity write sent but not yet settled by the
	// acknowledgement of its records. Should the work order change before
	// that (a timeout, a crash), the old one is read back to learn whether
	// the write landed, so its records are never counted for both.
	InFlight *inflightWrite `json:"inflight,omitempty"`
}

// inflightWrite is an absolute write and the last good-count record it holds.
type inflightWrite struct {
	Target float64 `json:"target"`
	MaxSeq uint64  `json:"max_seq"`
}

func woMetaKey(machine string) string { return "wo/" + machine }

// moved reports whether the count was written to another field than field
// (Odoo upgraded, or restored, across 19).
func (st *woState) moved(field string) bool { return st.Field != "" && st.Field != field }

// fieldUnknown reports whether a count was written to a field not kept (by
// a version that did not store it) while Odoo now keeps the quantity in
// 19's qty_produced: it may be in 17/18's qty_producing. If Odoo does not
// hold it in field, it is written there.
func (st *woState) fieldUnknown(field string) bool {
	return st.Field == "" && st.Written != st.Baseline && field == "qty_produced"
}

// loadWOState reads a machine's stored work-order state; nil if it has none.
func (a *Agent) loadWOState(machine string) (*woState, error) {
	b, err := a.buf.Meta(woMetaKey(machine))
	if err != nil || b == nil {
		return nil, err
	}
	var st woState
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("decode work-order state of %s: %w", machine, err)
	}
	return &st, nil
}

// scrapOutbox is a scrap booking decided but not yet confirmed by Odoo. It
// is stored before the call, so a retry after a crash or a timeout books
// the same quantity under the same external id: never twice.
type scrapOutbox struct {
	XMLID        string  `json:"xmlid"`
	Qty          float64 `json:"qty"`
	MaxSeq       uint64  `json:"max_seq"`
	WorkorderID  int64   `json:"wo"`
	ProductionID int64   `json:"mo"`
	ProductID    int64   `json:"product"`
	UomID        int64   `json:"uom"`
	// Carry is what is left of the scrap counted once Qty (rounded to
	// Odoo's 2 decimals) is booked: it goes into the next booking, so
	// fractional scrap (0.125 kg at a time) adds up exactly instead of
	// drifting by a rounding per booking. (This version stores no outbox
	// with a Qty of 0; one from an earlier version books nothing.)
	Carry float64 `json:"carry,omitempty"`
}

func scrapMetaKey(machine string) string { return "scrap/" + machine }

// scrapCarryKey holds a machine's scrap carry (scrapOutbox.Carry) between
// bookings.
func scrapCarryKey(machine string) string { return "scrapcarry/" + machine }

// pendingKey is the aggregate of one count key's pending records: the
// forwarder keeps per key only this, not the records, so a backlog of
// millions of values costs a few bytes per machine.
type pendingKey struct {
	sum    float64
	n      int
	maxSeq uint64
	first  int64 // source time (ms) of the oldest pending piece
}

// linkState is what status shows about Odoo.
type linkState struct {
	State       string // online | offline | auth_failed
	Protocol    string
	Version     string
	LastError   string
	NextAttempt time.Time
	Failures    int
	Since       time.Time
	KeyExpired  bool // the key worked before and is refused now
	// Answered is when Odoo last answered a call (a refusal is an answer
	// too): with nothing to send the agent asks only after a quiet spell
	// (odoo.Config.IdleRecheck), so online is as of then.
	Answered time.Time
	// RetryAfter is until when Odoo asked the agent to wait (a
	// Retry-After header): a flush does not cut that wait short.
	RetryAfter time.Time
}

// machineLink is what the forwarder knows of a machine in Odoo.
type machineLink struct {
	WorkOrder    string
	WorkorderID  int64
	Production   string // its manufacturing order
	ProductionID int64
	Unattributed float64
	Error        string
	// NoWorkcenter says Odoo lacks the machine's work center (or has the
	// code twice): all its records wait.
	NoWorkcenter bool
}

type forwarder struct {
	a      *Agent
	client *odoo.Client
	// unmapped is when each machine with records was first found gone
	// from the configuration (see unmappedExpired).
	unmapped map[string]time.Time
	limiter  *rate.Limiter
	bo       *connectors.Backoff
	kick     chan struct{}

	connected bool
	// field is the work-order quantity field (qty_producing, qty_produced)
	// every machine's count was checked against at the end of a round;
	// when Odoo comes back as a version with another one, every machine's
	// count is written again, also of machines with no new records.
	field string
	wcs   map[string]odoo.Workcenter // by workcenter code
	wcsAt time.Time                  // when wcs was last emptied to be looked up again
	// missing are the work-center codes Odoo did not know (or knew
	// twice) when last asked: asked again at most once a minute, or on
	// flush, so a typo in the mapping does not cost a call every round.
	missing map[string]missingCode
	// woRefused says Odoo refused this round's read of the work orders in
	// progress for good (see round).
	woRefused bool
	// noWorkorder is what noteAttribution last stored per machine.
	noWorkorder map[string]bool
	// orphansWaiting counts, as the last round found them, the downtime
	// records of machines gone from the configuration that name a work
	// center Odoo lacks: they wait (status counts them held; under mu).
	orphansWaiting int
	// scrapShortAt is when Odoo last left a machine's scrap booking a
	// draft (see scrapGather).
	scrapShortAt map[string]scrapGathering
	// draftsAt is when the scrap drafts were last looked at, and drafts
	// what was found then: by machine, what to show (under mu).
	draftsAt time.Time
	drafts   map[string]string
	flushed  bool // the current round was asked for by flush
	// keyID identifies the API key in use (not the key); keyWorked says
	// Odoo accepted it once, so a later refusal means expired or revoked.
	keyID     string
	keyWorked bool
	authFails int // consecutive authentication failures
	// forget is set by a configuration reload: the work centers and loss
	// reasons looked up in Odoo are looked up again (an admin may have
	// fixed them there; the reload is how a technician says "try again").
	forget atomic.Bool
	losses map[string]int64

	mu       sync.Mutex
	link     linkState
	machines map[string]machineLink
	rounds   uint64
	// roundsDone counts the rounds completed (rounds run one at a time:
	// roundsDone > n means round n+1 has completed).
	roundsDone uint64
}

// setupError is a failure to build the Odoo client (no API key, bad CA
// file): shown like an authentication failure and retried slowly.
type setupError struct{ err error }

func (e *setupError) Error() string { return "odoo client: " + e.err.Error() }
func (e *setupError) Unwrap() error { return e.err }

func newForwarder(a *Agent) *forwarder {
	fw := a.cfg.Load().Forward
	ratePerSec := fw.Rate
	if ratePerSec <= 0 {
		ratePerSec = 10
	}
	return &forwarder{
		a:            a,
		limiter:      rate.NewLimiter(rate.Limit(ratePerSec), 1),
		bo:           connectors.NewBackoff(time.Second, fw.BackoffMax.D()),
		kick:         make(chan struct{}, 1),
		unmapped:     map[string]time.Time{},
		wcs:          map[string]odoo.Workcenter{},
		missing:      map[string]missingCode{},
		noWorkorder:  map[string]bool{},
		scrapShortAt: map[string]scrapGathering{},
		losses:       map[string]int64{},
		machines:     map[string]machineLink{},
		link:         linkState{State: "offline", Since: time.Now()},
	}
}

// Flush asks the forwarder to start a round now, skipping any backoff wait.
// Flush asks for a round now and returns how many rounds had started
// before: the first round to complete past that number began after the
// request (see roundsDone).
func (f *forwarder) Flush() uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	select {
	case f.kick <- struct{}{}:
	default:
	}
	return f.rounds
}

func (f *forwarder) doneRounds() uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.roundsDone
}

func (f *forwarder) linkSnapshot() linkState {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.link
}

func (f *forwarder) machineSnapshot() map[string]machineLink {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make(map[string]machineLink, len(f.machines))
	for k, v := range f.machines {
		out[k] = v
	}
	return out
}

func (f *forwarder) setMachine(id string, fn func(*machineLink)) {
	f.mu.Lock()
	ml := f.machines[id]
	fn(&ml)
	f.machines[id] = ml
	f.mu.Unlock()
}

// run forwards until ctx ends: a round, then a wait that depends on how
// the round went.
func (f *forwarder) run(ctx context.Context) {
	log := f.a.log.With("component", "forwarder")
	for {
		before := f.linkSnapshot() // call() may show the link online mid-round
		more, err := f.round(ctx)
		if err == nil && !more {
			// A flush asks until a round has gone through to the end: one
			// that failed (a timeout, Odoo away) or left a backlog did not
			// do what it asked (book gathered scrap, look again at codes
			// and drafts).
			f.flushed = false
		}
		if ctx.Err() != nil {
			return
		}
		f.a.beat()
		// wait is the pause before the next round; a flush may cut it short,
		// but not below floor (an authentication backoff, a Retry-After).
		var wait, floor time.Duration
		f.mu.Lock()
		prev := before
		switch {
		case err == nil:
			if prev.State != "online" {
				if prev.Failures > 0 {
					log.Info("odoo reachable again", "failures", prev.Failures, "after", time.Since(prev.Since).Round(time.Second))
				} else {
					log.Info("odoo online", "protocol", f.client.Protocol(), "server_version", f.client.ServerVersion())
				}
				f.link.Since = time.Now()
			}
			f.link.State, f.link.Failures, f.link.LastError, f.link.KeyExpired = "online", 0, "", false
			f.link.RetryAfter = time.Time{}
			f.keyWorked, f.authFails = true, 0
			f.link.Protocol, f.link.Version = f.client.Protocol(), f.client.ServerVersion()
			f.bo.Reset()
			if !more {
				// Spread: agents that something put in step (started
				// together, answered together after Odoo hung) must not
				// stay in step.
				wait = spread(f.a.cfg.Load().Forward.Interval.D())
			}
		default:
			var oe *odoo.Error
			isOE := errors.As(err, &oe)
			wait = f.bo.NextBackOff()
			floor = time.Second // a flush in a loop must not make a storm either
			state := "offline"
			var se *setupError
			if odoo.IsAuth(err) || errors.As(err, &se) {
				state = "auth_failed"
				if isOE && oe.LoginCooldown() {
					// The address is locked out, the key may be fine: keep the
					// session, so the next attempt is an object call that says
					// which (authenticate answers a lockout like a wrong key).
				} else {
					f.connected = false
					f.client = nil // read the key again before the next attempt
				}
				// Odoo counts every failed login from this address; after 5
				// it refuses all logins from the address (its own users'
				// too) for a minute after each further failure. So: at
				// least auth_backoff between attempts, doubling up to 16×
				// while the key keeps being refused; a flush does not cut
				// that short (only a new key does).
				f.authFails++
				wait = max(wait, f.a.cfg.Load().Forward.AuthBackoff.D()<<min(f.authFails-1, 4))
				floor = wait
			}
			if isOE && oe.Timeout() && oe.TimedOut() {
				// Odoo may still be working on the call it did not answer
				// (a worker busy until it is done): give it as long again
				// before the next one, spread over the fleet. (Not when the
				// connection was never made: a WAN that drops packets.) A
				// flush skips this wait, as it does the backoff.
				t := f.a.cfg.Load().Odoo.Timeout.D()
				wait = max(wait, t+rand.N(t/2+1))
			}
			f.link.RetryAfter = time.Time{}
			if isOE && oe.RetryAfter > 0 {
				w, fl := retryAfterWait(oe.RetryAfter, max(f.a.cfg.Load().Forward.BackoffMax.D(), retryAfterMax))
				wait, floor = max(wait, w), max(floor, fl)
				f.link.RetryAfter = time.Now().Add(fl)
			}
			if prev.State != state || prev.Failures == 0 {
				msg := "odoo unreachable; buffering and retrying with backoff"
				switch {
				case errors.As(err, &se):
					msg = "cannot build the odoo client; buffering until the configuration is fixed"
				case isOE && oe.LoginCooldown():
					msg = "odoo refuses every login from this address for now: too many failed logins (from this agent or anyone behind the same address) — retrying slowly"
				case state == "auth_failed" && f.keyWorked:
					msg = "odoo now refuses the API key that worked before: it has most likely expired (Odoo 18+ expires keys of non-admin users); create a new key — retrying slowly to avoid Odoo's login lockout"
				case state == "auth_failed":
					msg = "odoo refused the API key; check the key (expired? revoked?) — retrying slowly to avoid Odoo's login lockout"
				case isOE && oe.Permanent():
					msg = "odoo refuses a call the agent needs (access rights? `plantedge validate --odoo` checks them); buffering and retrying with backoff"
				}
				attrs := []any{"err", err, "next_attempt_in", wait.Round(time.Millisecond)}
				if state == "auth_failed" && se == nil {
					if _, source, err := f.a.cfg.Load().OdooAPIKeySource(); err == nil {
						attrs = append(attrs, "key_from", source) // where to put a new one
					}
				}
				log.Error(msg, attrs...)
				f.link.Since = time.Now()
			}
			f.link.State = state
			f.link.Failures++
			f.link.LastError = err.Error()
			f.link.KeyExpired = state == "auth_failed" && f.keyWorked && !errors.As(err, &se) && !(isOE && oe.LoginCooldown())
			if f.link.KeyExpired {
				f.link.LastError = "API key expired or revoked (it worked before): " + f.link.LastError
			}
		}
		f.link.NextAttempt = time.Now().Add(wait)
		f.mu.Unlock()
		f.a.metrics.odooUp.Set(boolGauge(err == nil))
		f.a.metrics.authFailed.Set(boolGauge(f.link.State == "auth_failed"))
		if wait > 0 && !f.sleep(ctx, wait, floor) {
			return
		}
	}
}

// waitRate waits for the rate limit's next request slot (forward.rate),
// feeding the watchdog meanwhile: at a low rate one login (two or three
// requests) may wait minutes, and that is not a hung loop.
func (f *forwarder) waitRate(ctx context.Context) error {
	f.a.beat()
	r := f.limiter.Reserve()
	if !r.OK() {
		return errors.New("forward.rate allows no request")
	}
	for d := r.Delay(); d > 0; {
		step := min(d, 5*time.Second)
		t := time.NewTimer(step)
		select {
		case <-ctx.Done():
			t.Stop()
			r.Cancel()
			return ctx.Err()
		case <-t.C:
		}
		f.a.beat()
		d -= step
	}
	return nil
}

// spread returns d scattered uniformly over [d/2, 3d/2): the same mean, and
// agents doing the same thing fall out of step within a few rounds.
func spread(d time.Duration) time.Duration {
	if d <= 0 {
		return d
	}
	return d/2 + rand.N(d)
}

// retryAfterMax bounds how long a Retry-After is honoured (or
// forward.backoff_max, if longer): the server's word over the backoff's,
// but a maintenance page asking for a day is asked again twice an hour.
const retryAfterMax = 30 * time.Minute

// retryAfterWait is the wait for a Retry-After of ra: at least ra, plus a
// random part of up to a quarter of it (at least 1 s, at most 30 s: a
// fleet told the same instant, or the same delay, must not come back as
// one, and an HTTP date is whole seconds, so "now" may still be a moment
// early; measured with 20 agents, half of ra delayed the last one 41 s
// after a 90 s maintenance page), all up to maxWait — a maintenance page
// asking for a day must not stop forwarding for a day. floor is what a
// flush cannot cut.
func retryAfterWait(ra, maxWait time.Duration) (wait, floor time.Duration) {
	if ra >= maxWait {
		wait = maxWait - rand.N(maxWait/4+1)
		return wait, wait
	}
	return min(ra+rand.N(min(max(ra/4, time.Second), 30*time.Second)), maxWait), ra
}

// sleep waits d, a flush request or the end of ctx; it keeps the watchdog
// fed meanwhile. A flush ends the wait, but not before floor has passed
// (the round then starts at floor). It reports false when ctx ended.
func (f *forwarder) sleep(ctx context.Context, d, floor time.Duration) bool {
	start := time.Now()
	t := time.NewTimer(d)
	defer t.Stop()
	tick := time.NewTicker(5 * time.Second)
	defer tick.Stop()
	for {
		select {
		case <-t.C:
			return true
		case <-f.kick:
			f.flushed = true
			left := floor - time.Since(start)
			if left <= 0 || f.authFails > 0 && f.keyReplaced() {
				return true
			}
			if floor < d { // start at floor instead of d
				t.Reset(left)
				f.mu.Lock()
				f.link.NextAttempt = start.Add(floor)
				f.mu.Unlock()
			}
		case <-tick.C:
			f.a.beat()
		case <-ctx.Done():
			return false
		}
	}
}

// keyReplaced reports whether the API key found now (environment,
// credential, api_key_file) is not the one Odoo refused: a new key is no
// retry of a refused login, so a flush may try it at once.
func (f *forwarder) keyReplaced() bool {
	key, err := f.a.cfg.Load().OdooAPIKey()
	return err == nil && odoo.KeyIDOf(key) != f.keyID
}

// call runs one Odoo operation under the rate limit and records it.
func (f *forwarder) call(ctx context.Context, op string, fn func(context.Context) error) error {
	// The rate limit (forward.rate) is taken by the client before each HTTP
	// request: one operation may be several requests (a scrap booking is
	// three or four).
	f.a.beat()
	start := time.Now()
	err := fn(ctx)
	outcome := "ok"
	switch {
	case err == nil:
	case odoo.IsAuth(err):
		outcome = "auth"
	case odoo.IsPermanent(err):
		outcome = "permanent"
	default:
		outcome = "transient"
	}
	f.a.metrics.odooCalls.WithLabelValues(op, outcome).Inc()
	f.a.metrics.odooLatency.WithLabelValues(op).Observe(time.Since(start).Seconds())
	f.a.beat()
	if outcome != "transient" { // Odoo answered (a refusal too)
		f.mu.Lock()
		f.link.Answered = time.Now()
		// Status during a long round (a backlog draining after an outage)
		// must not keep saying offline with the old error; the round's end
		// logs the recovery (run keeps the state the round began with).
		if err == nil && f.link.State != "online" {
			f.link.State, f.link.LastError, f.link.NextAttempt = "online", "", time.Time{}
			if f.client != nil { // connected: online says with what
				f.link.Protocol, f.link.Version = f.client.Protocol(), f.client.ServerVersion()
			}
		}
		f.mu.Unlock()
	}
	return err
}

// round forwards what is pending: downtime lines first, then counts,
// coalesced per work order. It reports whether records were left for
// another round.
func (f *forwarder) round(ctx context.Context) (more bool, err error) {
	f.mu.Lock() // with Flush's: a request is either this round's or counted before it
	select {
	case <-f.kick: // asked for while the last round went on (a backlog: no wait between)
		f.flushed = true
	default:
	}
	f.rounds++
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		f.roundsDone++
		f.mu.Unlock()
	}()
	if f.client == nil {
		// (Re)built after start-up and after every refused key, so a key
		// written to api_key_file (or the environment) is picked up by the
		// next attempt — `plantedge flush` makes that attempt now.
		c, err := f.a.newOdooClient()
		if err != nil {
			return false, &setupError{err}
		}
		if id := c.KeyID(); id != f.keyID {
			f.keyID, f.keyWorked = id, false
		}
		f.client = c
	}
	// Connected once, and again after Odoo could not be reached: it may come
	// back upgraded (or restored), so the version this round works with is
	// known before any machine's quantity is looked at.
	// lookAll: after a (re)connect — the start, Odoo back, a quiet spell
	// (odoo.Config.IdleRecheck) — every machine's work order is read
	// again, not only those with data: an idle plant's status follows the
	// work orders started and finished in Odoo, and the read that tells
	// whether Odoo is still there is the one status needs anyway.
	lookAll := false
	if !f.connected || f.client.NeedsConnect() {
		lookAll = true
		if err := f.call(ctx, "connect", f.client.Connect); err != nil {
			if odoo.IsPermanent(err) && !odoo.IsAuth(err) {
				// Not Odoo being away: this configuration cannot work with
				// this server (e.g. no username for a JSON-RPC-only Odoo).
				return false, &setupError{err}
			}
			return false, err
		}
		f.connected = true
	}
	if f.forget.Swap(false) {
		f.wcs, f.losses = map[string]odoo.Workcenter{}, map[string]int64{}
		f.missing = map[string]missingCode{}
	}
	if time.Since(f.wcsAt) >= cmp.Or(f.a.opts.WorkcenterRefresh, workcenterRefresh) {
		// Work-center codes are looked up again (one call for all): an
		// admin may have given a code to another work center (a
		// replacement, the old one archived) — without this, counts would
		// wait for a work order on the old one until a reload. With them,
		// every machine's work order is read again.
		f.wcs, f.wcsAt, lookAll = map[string]odoo.Workcenter{}, time.Now(), true
	}
	cfg := f.a.cfg.Load()
	// What this round reads is marked in flight, so the quota merge cannot
	// fold newer records into what its calls will acknowledge. Nothing read
	// is acked in a later round without being read again: between rounds
	// (a backoff during an outage) the merge may fold them.
	defer f.a.buf.Release()
	// Work centers first (cached; one call for those not resolved yet), so
	// that events of a machine whose work center Odoo lacks are skipped
	// instead of blocking the events of every other machine behind them.
	all := make([]string, 0, len(cfg.Machines))
	for _, m := range cfg.Machines {
		all = append(all, m.ID)
	}
	if err := f.resolveWorkcenters(ctx, cfg, all); err != nil {
		return false, err
	}
	events, err := f.readEvents(ctx, cfg)
	if err != nil {
		return false, err
	}
	pending, err := f.aggregateCounts(ctx, cfg)
	if err != nil {
		return false, err
	}
	need := map[string]bool{}
	for _, e := range events {
		need[e.rec.Key] = true
	}
	for k := range pending {
		m, _ := splitKey(k)
		need[m] = true
	}
	field := f.client.ProducedField()
	if field != f.field {
		// Counts written to another field (before an upgrade across 19, or
		// a restore) go again to this one.
		if err := f.a.buf.MetaPrefix("wo/", func(key string, b []byte) error {
			var st woState
			if json.Unmarshal(b, &st) == nil && (st.moved(field) || st.fieldUnknown(field)) {
				need[key[len("wo/"):]] = true
			}
			return nil
		}); err != nil {
			return false, err
		}
	}
	// Scrap bookings left in flight by a previous run must finish first.
	if err := f.a.buf.MetaPrefix("scrap/", func(key string, _ []byte) error {
		need[key[len("scrap/"):]] = true
		return nil
	}); err != nil {
		return false, err
	}
	ids := make([]string, 0, len(need))
	for id := range need {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	look := ids // the machines whose work order is read
	if lookAll {
		look = all
	}

	// The work orders in progress: one call, however many machines have data.
	wcIDs := map[string]int64{}
	var wcList []int64
	for _, id := range look {
		mc := findMachine(cfg, id)
		if mc == nil {
			continue // removed from the mapping: its records wait (see status)
		}
		if wc, ok := f.wcs[mc.Workcenter]; ok {
			wcIDs[id] = wc.ID
			wcList = append(wcList, wc.ID)
		}
	}
	var byWC map[int64][]odoo.Workorder
	woRefused := ""
	f.woRefused = false
	if err := f.call(ctx, "workorders_in_progress", func(ctx context.Context) error {
		var err error
		byWC, err = f.client.WorkordersInProgressOn(ctx, wcList)
		return err
	}); err != nil {
		if !odoo.IsPermanent(err) || odoo.IsAuth(err) {
			return false, err
		}
		// Refused for good (the bot lost read access to work orders): no
		// machine has a work order, so counts are held, not lost, while
		// downtime, which needs none, is still booked.
		msg, _, _ := strings.Cut(err.Error(), "\n")
		woRefused = WorkordersRefusedPrefix + " (" + msg + "): counts are held; " +
			"give the bot user read access to work orders (plantedge validate --odoo checks it)"
		f.a.eventLog.log("workorders refused", f.a.log, slog.LevelError, "odoo refuses to show the work orders in progress; counts held, downtime still booked",
			"err", err)
		byWC = nil
		f.woRefused = true
	} else if len(wcList) > 0 {
		// Reads allowed again: machines with nothing to send this round
		// drop the refusal too (the others are set below).
		f.mu.Lock()
		for id, ml := range f.machines {
			if strings.HasPrefix(ml.Error, WorkordersRefusedPrefix) {
				ml.Error = ""
				f.machines[id] = ml
			}
		}
		f.mu.Unlock()
	}
	wos := map[string]*odoo.Workorder{}
	for _, id := range look {
		wcID, ok := wcIDs[id]
		if !ok {
			continue
		}
		list := byWC[wcID]
		if len(list) > 1 {
			f.a.log.Warn("several work orders in progress on one work center; attributing to the earliest started",
				"machine", id, "workorder", list[0].Name, "others", len(list)-1)
		}
		if len(list) > 0 {
			wo := list[0]
			wos[id] = &wo
		}
		f.setMachine(id, func(ml *machineLink) {
			if need[id] || woRefused != "" {
				// A machine only looked at keeps what its last round
				// with data said (an edit in Odoo shows until a write).
				ml.Error, ml.NoWorkcenter = woRefused, false
			}
			ml.WorkOrder, ml.WorkorderID, ml.Production, ml.ProductionID = "", 0, "", 0
			if wo := wos[id]; wo != nil {
				ml.WorkOrder, ml.WorkorderID, ml.Production, ml.ProductionID = wo.Name, wo.ID, wo.ProductionName, wo.ProductionID
			}
		})
	}
	f.warnSharedProducing(cfg)

	if err := f.forwardEvents(ctx, cfg, events, wos); err != nil {
		return false, err
	}
	acks := newAckPlan()
	for _, id := range ids {
		if _, ok := wcIDs[id]; !ok {
			continue
		}
		if err := f.forwardCounts(ctx, id, wos[id], pending, &acks); err != nil {
			// Acknowledge what Odoo already confirmed before giving up the round.
			if aerr := f.ackPlanned(ctx, &acks); aerr != nil {
				return false, aerr
			}
			return false, err
		}
	}
	if err := f.ackPlanned(ctx, &acks); err != nil {
		return false, err
	}
	if err := f.checkScrapDrafts(ctx); err != nil {
		return false, err
	}
	f.field = field
	more = len(events) == maxEventsPerRound
	return more, nil
}

// workcenterRefresh is how often the work-center codes are looked up
// again (Options.WorkcenterRefresh).
const workcenterRefresh = 5 * time.Minute

// WorkordersRefusedPrefix starts a machine's error (MachineStatus.Error)
// while Odoo refuses to show the
// work orders in progress.
const WorkordersRefusedPrefix = "Odoo refuses to show the work orders in progress"

// pendingEvent is an event record read for this round, decoded, with the
// id of the work center it is booked on.
type pendingEvent struct {
	rec buffer.Record
	ev  eventRecord
	wc  int64
	// elsewhere: booked on the work center the record names, not the
	// machine's now (moved by an edit since): no work order of the
	// machine's goes with it.
	elsewhere bool
}

// readEvents returns up to maxEventsPerRound pending events, in sequence
// order, of machines that are configured and whose work center is resolved;
// the others wait (status shows why) without holding up the rest. One that
// cannot be decoded goes to the dead letters. A machine gone from the
// configuration has its events booked on the work center they name (its
// stop ended by the reload that removed it closes the line that would
// otherwise block that work center); events naming none wait for it, like
// its counts.
func (f *forwarder) readEvents(ctx context.Context, cfg *config.Config) (_ []pendingEvent, err error) {
	var out []pendingEvent
	var after uint64
	unknown := map[string]bool{} // work-center codes Odoo did not know this round
	waiting := 0                 // events of removed machines whose work center Odoo lacks
	defer func() {
		if err == nil {
			f.mu.Lock()
			f.orphansWaiting = waiting
			f.mu.Unlock()
		}
	}()
	for len(out) < maxEventsPerRound {
		recs, err := f.a.buf.Read(buffer.LaneEvents, after, 4*maxEventsPerRound)
		if err != nil {
			return nil, fmt.Errorf("read events: %w", err)
		}
		for _, r := range recs {
			ev, err := decodeEvent(r)
			if err != nil {
				// Whatever its key: it would wait for its machine forever.
				if err := f.a.buf.DeadLetter(ctx, r, err.Error()); err != nil {
					return nil, err
				}
				continue
			}
			named := func() (int64, bool, error) { // the work center the record names
				if ev.Workcenter == "" || unknown[ev.Workcenter] {
					return 0, false, nil
				}
				wc, ok, err := f.orphanWorkcenter(ctx, ev.Workcenter)
				unknown[ev.Workcenter] = err == nil && !ok // asked once a round, flush or not
				return wc.ID, ok, err
			}
			if mc := findMachine(cfg, r.Key); mc != nil {
				delete(f.unmapped, r.Key)
				if ev.Workcenter != "" && ev.Workcenter != mc.Workcenter {
					// Stopped on another work center (an edit moved the
					// machine since): the line is booked there — where
					// block_workcenter opened it — if Odoo knows it (a
					// code fixed for a typo does not name one).
					id, ok, err := named()
					if err != nil {
						return nil, err
					}
					if ok {
						if len(out) < maxEventsPerRound {
							out = append(out, pendingEvent{r, ev, id, true})
						}
						continue
					}
					if _, ok := f.wcs[mc.Workcenter]; ok {
						f.a.eventLog.log("stop elsewhere "+r.Key, f.a.log, slog.LevelWarn,
							"a stop recorded on a work center Odoo does not know (any more) is booked on the machine's work center now",
							"machine", r.Key, "recorded_on", ev.Workcenter, "booked_on", mc.Workcenter)
					}
				}
				if wc, ok := f.wcs[mc.Workcenter]; ok && len(out) < maxEventsPerRound {
					out = append(out, pendingEvent{r, ev, wc.ID, false})
				}
				continue
			}
			if id, ok, err := named(); err != nil {
				return nil, err
			} else if ok {
				if len(out) < maxEventsPerRound {
					out = append(out, pendingEvent{r, ev, id, true})
				}
				continue
			}
			if !f.a.lineOpen(r.Key) {
				// Downtime records of a machine gone from the configuration
				// wait for it while it has a line open in Odoo (one may
				// close it); otherwise they go like its counts.
				if reason := f.unmappedExpired(cfg, r.Key); reason != "" {
					if err := f.a.buf.DeadLetter(ctx, r, reason); err != nil {
						return nil, err
					}
					continue
				}
			}
			if ev.Workcenter != "" {
				waiting++
			}
		}
		if len(recs) < 4*maxEventsPerRound {
			break
		}
		after = recs[len(recs)-1].Seq
	}
	return out, nil
}

// missingCode is a work-center code Odoo did not know when last asked.
type missingCode struct {
	at        time.Time
	ambiguous bool // Odoo knew it twice
}

// lookupWorkcenters asks Odoo, in one call, for those of codes neither
// cached nor found missing in the last minute (before a flush), and caches
// the answers either way.
func (f *forwarder) lookupWorkcenters(ctx context.Context, codes []string) error {
	var ask []string
	for _, c := range codes {
		if _, ok := f.wcs[c]; ok || slices.Contains(ask, c) {
			continue
		}
		if m, ok := f.missing[c]; ok && time.Since(m.at) < time.Minute && !f.flushed {
			continue
		}
		ask = append(ask, c)
	}
	if len(ask) == 0 {
		return nil
	}
	var found map[string]odoo.Workcenter
	var ambiguous []string
	if err := f.call(ctx, "workcenters_by_code", func(ctx context.Context) error {
		var err error
		found, ambiguous, err = f.client.WorkcentersByCodes(ctx, ask)
		return err
	}); err != nil {
		return err
	}
	now := time.Now()
	for _, c := range ask {
		if wc, ok := found[c]; ok {
			f.wcs[c] = wc
			delete(f.missing, c)
		} else {
			f.missing[c] = missingCode{at: now, ambiguous: slices.Contains(ambiguous, c)}
		}
	}
	return nil
}

// orphanWorkcenter returns the work center of code, named by an event
// record of a machine gone from the configuration (see lookupWorkcenters).
func (f *forwarder) orphanWorkcenter(ctx context.Context, code string) (odoo.Workcenter, bool, error) {
	if err := f.lookupWorkcenters(ctx, []string{code}); err != nil {
		return odoo.Workcenter{}, false, err
	}
	wc, ok := f.wcs[code]
	return wc, ok, nil
}

// resolveWorkcenters looks up, in one call, the work centers of the given
// machines that are not cached yet. A code Odoo does not know (or knows
// twice) is shown on the machine, whose records wait until it is fixed.
func (f *forwarder) resolveWorkcenters(ctx context.Context, cfg *config.Config, ids []string) error {
	var codes []string
	for _, id := range ids {
		if mc := findMachine(cfg, id); mc != nil {
			codes = append(codes, mc.Workcenter)
		}
	}
	if err := f.lookupWorkcenters(ctx, codes); err != nil {
		return err
	}
	for _, id := range ids {
		mc := findMachine(cfg, id)
		if mc == nil {
			continue
		}
		if _, ok := f.wcs[mc.Workcenter]; ok {
			continue
		}
		msg := fmt.Sprintf("work center %q not found in Odoo (no such code, or in a company other than the bot user's default company); records held", mc.Workcenter)
		if f.missing[mc.Workcenter].ambiguous {
			msg = fmt.Sprintf("work center code %q matches several work centers in Odoo; records held", mc.Workcenter)
		}
		changed := false
		f.setMachine(id, func(ml *machineLink) {
			changed = ml.Error != msg
			ml.Error, ml.WorkOrder, ml.WorkorderID, ml.NoWorkcenter = msg, "", 0, true
		})
		if changed {
			f.a.log.Error(msg, "machine", id)
		}
	}
	return nil
}

// aggregateCounts sums the whole counts lane per key. It marks the records
// in flight: the sums are what this round's calls send, so the quota merge
// must not fold a newer record into one of them before the acknowledgement
// pass deletes them (the pieces of the newer one would go with it). A
// record it cannot decode goes to the dead letters (once, with the reason)
// rather than stay in the lane for every round to trip over.
func (f *forwarder) aggregateCounts(ctx context.Context, cfg *config.Config) (map[string]*pendingKey, error) {
	out := map[string]*pendingKey{}
	type undecodable struct {
		rec    buffer.Record
		reason string
	}
	var bad []undecodable
	expired := map[string]string{} // machine -> unmappedExpired, once per round
	err := f.scanCounts(true, 0, func(recs []buffer.Record) error {
		for _, r := range recs {
			c, err := decodeCount(r)
			if err != nil {
				bad = append(bad, undecodable{r, "undecodable count record: " + err.Error()})
				continue
			}
			m, _ := splitKey(r.Key)
			reason, ok := expired[m]
			if !ok {
				reason = f.unmappedExpired(cfg, m)
				expired[m] = reason
			}
			// (A record an Odoo call in flight covers waits for the
			// machine: moved, a retry would book it twice.)
			if reason != "" && len(bad) < maxUnmappedPerRound && !f.a.coveredInFlight(r) {
				bad = append(bad, undecodable{r, reason})
				continue
			}
			p := out[r.Key]
			if p == nil {
				p = &pendingKey{}
				out[r.Key] = p
			}
			p.sum += c.Delta
			p.n++
			p.maxSeq = r.Seq
			if p.first == 0 || c.First < p.first {
				p.first = c.First
			}
		}
		return nil
	})
	for _, b := range bad {
		if err != nil {
			break
		}
		err = f.a.buf.DeadLetter(ctx, b.rec, b.reason)
	}
	return out, err
}

// unmappedHold is how long the count records of a machine gone from the
// configuration wait for it to come back (a rename undone, a machine
// taken out by mistake) before they go to the dead letters — where they
// can be retried once it is back, or dropped — instead of holding the
// oldest-record age up for good. maxUnmappedPerRound bounds the records
// moved in one round (each move is a commit).
const (
	unmappedHold        = time.Hour
	maxUnmappedPerRound = 1000
)

// unmappedExpired returns the dead-letter reason for a record of machine
// id when id has been gone from cfg for the hold, "" otherwise.
func (f *forwarder) unmappedExpired(cfg *config.Config, id string) string {
	if findMachine(cfg, id) != nil {
		delete(f.unmapped, id)
		return ""
	}
	since, ok := f.unmapped[id]
	if !ok {
		f.unmapped[id] = time.Now()
		return ""
	}
	hold := cmp.Or(f.a.opts.UnmappedHold, unmappedHold)
	if time.Since(since) < hold {
		return ""
	}
	return fmt.Sprintf("machine %s is not in the configuration (for %s now): add it back and retry this, or drop it",
		id, time.Since(since).Round(time.Second))
}

// scanCounts walks the counts lane in chunks, up to seq upTo (0: all);
// with mark it reads (marking records in flight, for acknowledging them),
// otherwise it peeks.
func (f *forwarder) scanCounts(mark bool, upTo uint64, fn func([]buffer.Record) error) error {
	var after uint64
	for {
		var recs []buffer.Record
		var err error
		if mark {
			recs, err = f.a.buf.Read(buffer.LaneCounts, after, scanChunk)
		} else {
			recs, err = f.a.buf.Peek(buffer.LaneCounts, after, scanChunk)
		}
		if err != nil {
			return fmt.Errorf("read counts: %w", err)
		}
		if upTo > 0 {
			for i, r := range recs {
				if r.Seq > upTo {
					recs = recs[:i]
					break
				}
			}
		}
		if len(recs) == 0 {
			return nil
		}
		if err := fn(recs); err != nil {
			return err
		}
		// Don't let a scan of a large backlog show the whole buffer file as
		// resident memory: give the pages read back to the page cache.
		_ = f.a.buf.DropMappedPages()
		if len(recs) < scanChunk {
			return nil
		}
		after = recs[len(recs)-1].Seq
	}
}

// ackPlan collects what Odoo confirmed in a round: per count key, the
// records up to which it is settled, and the work-order state to store with
// the good counts.
type ackPlan struct {
	upTo   map[string]uint64
	wo     map[string]*woState // by machine
	clears []scrapClear        // scrap outboxes settled once their records are acked
	// carries are scrap carries to store in the same transaction as the
	// ack of their key's last record (a step below Odoo's precision: no
	// booking, no outbox), by count key.
	carries map[string]float64
	max     uint64
}

func newAckPlan() ackPlan {
	return ackPlan{upTo: map[string]uint64{}, wo: map[string]*woState{}, carries: map[string]float64{}}
}

// carryKV stores a machine's scrap carry (0 deletes the key).
func carryKV(machine string, carry float64) buffer.KV {
	kv := buffer.KV{Key: scrapCarryKey(machine)}
	if carry != 0 {
		kv.Value = []byte(strconv.FormatFloat(carry, 'g', -1, 64))
	}
	return kv
}

func (p *ackPlan) add(key string, upTo uint64) {
	p.upTo[key] = upTo
	p.max = max(p.max, upTo)
}

// ackPlanned acknowledges the planned records in one pass over the lane.
// Each chunk's transaction also adds the chunk's good counts to the work
// orders' Counted, so acknowledged records and totals never disagree.
func (f *forwarder) ackPlanned(ctx context.Context, p *ackPlan) error {
	if len(p.upTo) > 0 {
		err := f.scanCounts(true, p.max, func(recs []buffer.Record) error {
			var acked []buffer.Record
			var carried []buffer.KV
			touched := map[string]bool{}
			for _, r := range recs {
				upTo, ok := p.upTo[r.Key]
				if !ok || r.Seq > upTo {
					continue
				}
				acked = append(acked, buffer.Record{Lane: r.Lane, Key: r.Key, Seq: r.Seq})
				machine, sig := splitKey(r.Key)
				if c, ok := p.carries[r.Key]; ok && r.Seq == upTo {
					carried = append(carried, carryKV(machine, c))
				}
				if st := p.wo[machine]; st != nil && sig == sigGood {
					if c, err := decodeCount(r); err == nil {
						// Not rounded: the quantity written is (Round2 of the
						// total), so fractional counters (0.125 kg) do not
						// drift by a rounding per round.
						st.Counted += c.Delta
						touched[machine] = true
					}
				}
			}
			if len(acked) == 0 {
				return nil
			}
			meta := carried
			for m := range touched {
				meta = append(meta, buffer.KV{Key: woMetaKey(m), Value: mustJSON(*p.wo[m])})
			}
			if err := f.a.buf.Ack(ctx, acked, meta...); err != nil {
				return fmt.Errorf("ack counts: %w", err)
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	// Work orders whose state changed without records (a repair write).
	var meta []buffer.KV
	for m, st := range p.wo {
		st.InFlight = nil // its records are acknowledged: settled
		meta = append(meta, buffer.KV{Key: woMetaKey(m), Value: mustJSON(*st)})
	}
	for _, c := range p.clears {
		meta = append(meta, buffer.KV{Key: scrapMetaKey(c.machine)}, carryKV(c.machine, c.carry))
		if c.draft != nil {
			meta = append(meta, buffer.KV{Key: scrapDraftKey(c.machine, c.draft.XMLID), Value: mustJSON(*c.draft)})
			f.draftsAt = time.Time{} // shown at once
		}
	}
	if len(meta) > 0 {
		if err := f.a.buf.PutMeta(ctx, meta...); err != nil {
			return err
		}
	}
	for m := range p.wo {
		f.a.holdInFlight(countKey(m, sigGood), 0)
	}
	for _, c := range p.clears {
		f.a.holdInFlight(countKey(c.machine, sigScrap), 0)
	}
	*p = newAckPlan()
	return nil
}

// forwardEvents writes downtime lines with external ids (idempotent) and
// acknowledges them; a line Odoo refuses for good is dead-lettered.
func (f *forwarder) forwardEvents(ctx context.Context, cfg *config.Config, events []pendingEvent, wos map[string]*odoo.Workorder) error {
	type line struct {
		rec  buffer.Record
		d    odoo.Downtime
		loss string // its name, to look it up again
		skip bool   // acknowledged without a call
		end  int64  // closes the machine's line that started at d.Start (ms)
	}
	var lines []line
	onWC := map[int64]int64{} // workorderOn's answers this round
	for _, e := range events {
		r, ev := e.rec, e.ev
		if ev.End == 0 {
			// An open record whose line was closed already (it was refused,
			// and retried from the dead letters after the close went
			// through) would reopen the line and block the work center
			// while the machine runs. One not later than the machine's
			// last closed line is that, or a stop after the PLC's clock
			// went back: Odoo tells which.
			closed, err := f.closedUpTo(r.Key)
			if err != nil {
				return err
			}
			if ev.Start <= closed {
				xmlid := downtimeXMLID(cmp.Or(ev.Site, f.a.legacySite, cfg.Site), r.Key, ev.Start)
				var done bool
				err := f.call(ctx, "downtime_closed", func(ctx context.Context) error {
					var err error
					done, err = f.client.DowntimeClosed(ctx, xmlid)
					return err
				})
				if err != nil {
					return err
				}
				if done {
					f.a.log.Info("downtime line closed already; its earlier open record is not sent", "machine", r.Key, "start", fromMS(ev.Start))
					lines = append(lines, line{rec: r, skip: true})
					continue
				}
			}
		}
		loss := ev.Loss
		// A code the mapping in force now names goes there: a map fixed
		// after Odoo refused a loss reason applies to the records still
		// waiting and to dead letters retried after the fix.
		if l, defaulted := f.a.mapper.Load().Loss(r.Key, ev.Reason); ev.Reason != "" && l != "" && !defaulted {
			loss, ev.Defaulted = l, false
		}
		if loss == "" {
			loss = cfg.Odoo.DefaultLoss
		}
		lossID, err := f.loss(ctx, loss)
		if err != nil {
			if odoo.IsPermanent(err) && !odoo.IsAuth(err) {
				if err := f.deadLetter(ctx, r, fmt.Sprintf("loss reason %q: %v", loss, err)); err != nil {
					return err
				}
				continue
			}
			return err
		}
		d := odoo.Downtime{
			XMLID:        downtimeXMLID(cmp.Or(ev.Site, f.a.legacySite, cfg.Site), r.Key, ev.Start),
			WorkcenterID: e.wc,
			LossID:       lossID,
			Start:        fromMS(ev.Start),
			End:          fromMS(ev.End),
			Description:  downtimeDescription(ev),
		}
		// An open line (block_workcenter) names no work order: Odoo allows a
		// user one open line per work order (_check_open_time_ids), and two
		// machines of one work center may be stopped at once. Closing the
		// line sets it.
		switch wo := wos[r.Key]; {
		case d.End.IsZero():
		case !e.elsewhere && wo != nil:
			d.WorkorderID = wo.ID
		case e.elsewhere || findMachine(cfg, r.Key) == nil:
			// A stop on the work center the machine has left (moved in the
			// configuration while stopped), or of a machine no longer
			// configured: the work order in progress there. (A configured
			// machine's own work center was looked up this round.)
			id, err := f.workorderOn(ctx, e.wc, onWC)
			if err != nil {
				return err
			}
			d.WorkorderID = id
		}
		l := line{rec: r, d: d, loss: loss}
		if ev.End != 0 {
			l.end = ev.Start
		}
		lines = append(lines, l)
	}
	if len(lines) == 0 {
		return nil
	}
	// Later records of one line (open, then closed) win.
	latest := map[string]int{}
	for i, l := range lines {
		if !l.skip {
			latest[l.d.XMLID] = i
		}
	}
	var batch []odoo.Downtime
	for i, l := range lines {
		if !l.skip && latest[l.d.XMLID] == i {
			batch = append(batch, l.d)
		}
	}
	acked := make([]buffer.Record, 0, len(lines))
	var err error
	if len(batch) > 0 {
		err = f.call(ctx, "upsert_downtimes", func(ctx context.Context) error {
			_, err := f.client.UpsertDowntimes(ctx, batch)
			return err
		})
	}
	switch {
	case err == nil:
		for _, l := range lines {
			acked = append(acked, l.rec)
		}
	case odoo.IsPermanent(err) && !odoo.IsAuth(err):
		// Find the refused line(s) one by one; the rest go through. The
		// loss reasons are looked up again first: one deleted and created
		// anew in Odoo has a new id.
		f.losses = map[string]int64{}
		for i, l := range lines {
			if l.skip || latest[l.d.XMLID] != i {
				acked = append(acked, l.rec)
				continue
			}
			id, err := f.loss(ctx, l.loss)
			switch {
			case err == nil:
				l.d.LossID = id
			case odoo.IsPermanent(err) && !odoo.IsAuth(err):
				if err := f.deadLetter(ctx, l.rec, fmt.Sprintf("loss reason %q: %v", l.loss, err)); err != nil {
					return err
				}
				continue
			default:
				return err
			}
			err = f.call(ctx, "upsert_downtime", func(ctx context.Context) error {
				_, err := f.client.UpsertDowntime(ctx, l.d)
				return err
			})
			switch {
			case err == nil:
				acked = append(acked, l.rec)
			case odoo.IsPermanent(err) && !odoo.IsAuth(err):
				if err := f.deadLetter(ctx, l.rec, "downtime line "+l.d.XMLID+": "+err.Error()); err != nil {
					return err
				}
			default:
				return err
			}
		}
	default:
		return err
	}
	// Remember, with the acknowledgement, the latest line closed per
	// machine (see closedUpTo).
	closed := map[string]int64{}
	ackedSeq := map[uint64]bool{}
	for _, r := range acked {
		ackedSeq[r.Seq] = true
	}
	for _, l := range lines {
		if l.end != 0 && ackedSeq[l.rec.Seq] && l.end > closed[l.rec.Key] {
			closed[l.rec.Key] = l.end
		}
	}
	var meta []buffer.KV
	for m, start := range closed {
		if prev, err := f.closedUpTo(m); err != nil {
			return err
		} else if start > prev {
			meta = append(meta, buffer.KV{Key: closedMetaKey(m), Value: []byte(strconv.FormatInt(start, 10))})
		}
	}
	if err := f.a.buf.Ack(ctx, acked, meta...); err != nil {
		return fmt.Errorf("ack downtime records: %w", err)
	}
	f.a.metrics.forwarded.WithLabelValues("downtime").Add(float64(len(acked)))
	return nil
}

// workorderOn returns the id of the work order in progress on work center
// wc (0: none, or work orders cannot be read), asking Odoo once a round
// (seen keeps the answers).
func (f *forwarder) workorderOn(ctx context.Context, wc int64, seen map[int64]int64) (int64, error) {
	if id, ok := seen[wc]; ok || wc == 0 || f.woRefused {
		return id, nil
	}
	var wo odoo.Workorder
	var found bool
	err := f.call(ctx, "current_workorder", func(ctx context.Context) error {
		var err error
		wo, found, err = f.client.CurrentWorkorder(ctx, wc)
		return err
	})
	if err != nil && (!odoo.IsPermanent(err) || odoo.IsAuth(err)) {
		return 0, err
	}
	if err == nil && found {
		seen[wc] = wo.ID
	} else {
		seen[wc] = 0 // refused for good: the line goes without one
	}
	return seen[wc], nil
}

func closedMetaKey(machine string) string { return "closed/" + machine }

// downtimeXMLID is the external id of a machine's downtime line, keyed by
// the stop's start (ms).
func downtimeXMLID(site, machine string, start int64) string {
	return fmt.Sprintf("plantedge.%s_%s_downtime_%d", site, machine, start)
}

// closedUpTo returns the start (ms) of the latest downtime line of the
// machine that Odoo has as closed; 0 if none.
func (f *forwarder) closedUpTo(machine string) (int64, error) {
	b, err := f.a.buf.Meta(closedMetaKey(machine))
	if err != nil || b == nil {
		return 0, err
	}
	return strconv.ParseInt(string(b), 10, 64)
}

func downtimeDescription(ev eventRecord) string {
	s := "plantedge"
	if ev.Reason != "" {
		s += ": reason " + ev.Reason
		if ev.Defaulted {
			s += " (unmapped, default loss)"
		}
	}
	return s
}

func (f *forwarder) loss(ctx context.Context, name string) (int64, error) {
	if id, ok := f.losses[name]; ok {
		return id, nil
	}
	var id int64
	err := f.call(ctx, "loss_id", func(ctx context.Context) error {
		var err error
		id, err = f.client.LossID(ctx, name)
		return err
	})
	if err != nil {
		return 0, err
	}
	f.losses[name] = id
	return id, nil
}

// noteAttribution keeps in the buffer file whether the machine's counts
// wait for a work order (unattributedMetaKey), so that status shows them as
// unattributed while the agent is stopped too; written on a change only.
func (f *forwarder) noteAttribution(ctx context.Context, machine string, none bool) error {
	if was, ok := f.noWorkorder[machine]; ok && was == none {
		return nil
	}
	kv := buffer.KV{Key: unattributedMetaKey(machine)}
	if none {
		kv.Value = []byte("1")
	}
	if err := f.a.buf.PutMeta(ctx, kv); err != nil {
		return err
	}
	f.noWorkorder[machine] = none
	return nil
}

func unattributedMetaKey(machine string) string { return "unattributed/" + machine }

// forwardCounts coalesces a machine's pending good counts into one absolute
// quantity write on the work order in progress, then books pending scrap;
// what Odoo confirmed goes into acks.
func (f *forwarder) forwardCounts(ctx context.Context, machine string, wo *odoo.Workorder, pending map[string]*pendingKey, acks *ackPlan) error {
	good := pending[countKey(machine, sigGood)]
	scrap := pending[countKey(machine, sigScrap)]
	if err := f.noteAttribution(ctx, machine, wo == nil); err != nil {
		return err
	}
	if wo == nil {
		var unattributed float64
		if good != nil {
			unattributed = good.sum
		}
		f.setMachine(machine, func(ml *machineLink) { ml.Unattributed = unattributed })
		stored, err := f.a.loadWOState(machine)
		if err != nil {
			return err
		}
		if _, err := f.settleInFlight(ctx, machine, nil, stored, acks); err != nil {
			return err
		}
		// Counts are held, not dropped, until a work order is in progress.
		// A scrap booking already decided still completes (it names its order).
		return f.forwardScrap(ctx, machine, nil, scrap, acks)
	}
	f.setMachine(machine, func(ml *machineLink) { ml.Unattributed = 0 })
	stored, err := f.a.loadWOState(machine)
	if err != nil {
		return err
	}
	if settled, err := f.settleInFlight(ctx, machine, wo, stored, acks); err != nil || settled {
		// A landed write to the previous work order was acknowledged for it:
		// the remaining records go to wo next round.
		return err
	}
	st, err := f.woState(ctx, machine, wo, stored)
	if err != nil {
		return err
	}
	var sum float64
	if good != nil {
		sum = good.sum
	}
	field := f.client.ProducedField()
	moved := st.moved(field) || // Odoo upgraded (or restored) across 19
		st.fieldUnknown(field) && odoo.Round2(f.client.ProducedQty(*wo)) != st.Written
	f.noteLateOrEdited(machine, wo, stored, &st, good, moved)
	target := odoo.Round2(st.Baseline + st.Counted + sum)
	if sum == 0 && target == st.Written && !moved {
		return f.forwardScrap(ctx, machine, wo, scrap, acks)
	}
	prev := st.InFlight // an earlier attempt Odoo did not show at the lookup
	st.InFlight = &inflightWrite{Target: target}
	if good != nil {
		st.InFlight.MaxSeq = good.maxSeq
	}
	f.a.holdInFlight(countKey(machine, sigGood), st.InFlight.MaxSeq)
	if err := f.a.buf.PutMeta(ctx, buffer.KV{Key: woMetaKey(machine), Value: mustJSON(st)}); err != nil {
		return err
	}
	err = f.call(ctx, "set_produced_qty", func(ctx context.Context) error {
		return f.client.SetProducedQty(ctx, wo.ID, target)
	})
	switch {
	case err == nil:
		st.Written, st.Field = target, f.client.ProducedField()
		acks.wo[machine] = &st
		if good != nil {
			acks.add(countKey(machine, sigGood), good.maxSeq)
			f.a.metrics.forwarded.WithLabelValues("good_count").Add(good.sum)
		}
	case odoo.IsAuth(err):
		return err
	case odoo.IsPermanent(err):
		var oe *odoo.Error
		if errors.As(err, &oe) && oe.Missing() {
			// The work order vanished: look it up again next round.
			f.a.log.Warn("work order missing; re-resolving", "machine", machine, "workorder", wo.Name)
			return nil
		}
		// Finished or cancelled between the lookup and the write (Odoo 19
		// refuses qty_produced then): not the records' fault. They stay
		// for the work order in progress next round.
		now, rerr := f.readWorkorder(ctx, wo.ID)
		if rerr == nil && now.State != wo.State && (now.State == "done" || now.State == "cancel") {
			// An earlier attempt whose answer was lost may have landed
			// after the lookup and before the order was finished: its
			// records are that order's, the rest go to the next one.
			switch got := odoo.Round2(f.client.ProducedQty(now)); {
			case got == target:
				f.landed(machine, &st, st.InFlight, acks)
				return nil
			case prev != nil && got == prev.Target:
				st.InFlight = prev
				f.landed(machine, &st, prev, acks)
				return nil
			}
			f.a.log.Info("work order finished while its quantity was written; its counts go to the next one",
				"machine", machine, "workorder", wo.Name, "state", now.State)
			return f.clearInFlight(ctx, machine, &st) // refused: nothing landed
		}
		if good != nil {
			reason := fmt.Sprintf("set produced quantity %v on %s: %v", target, wo.Name, err)
			if err := f.deadLetterKey(ctx, countKey(machine, sigGood), good.maxSeq, reason); err != nil {
				return err
			}
		}
		if err := f.clearInFlight(ctx, machine, &st); err != nil { // refused: nothing landed
			return err
		}
	default:
		return err
	}
	return f.forwardScrap(ctx, machine, wo, scrap, acks)
}

// warnSharedProducing says when, on Odoo 17/18, machines count into work
// orders of one manufacturing order: qty_producing is the order's, so the
// last write wins (only the machine of the order's last operation should
// count good pieces there; Odoo 19's qty_produced is per work order).
func (f *forwarder) warnSharedProducing(cfg *config.Config) {
	if f.client.Major() >= 19 {
		return
	}
	links := f.machineSnapshot()
	byMO := map[int64][]string{}
	for _, m := range cfg.Machines { // configuration order
		if l := links[m.ID]; m.GoodCount != nil && l.ProductionID != 0 {
			byMO[l.ProductionID] = append(byMO[l.ProductionID], m.ID)
		}
	}
	for _, ms := range byMO {
		if len(ms) < 2 {
			continue
		}
		mo := links[ms[0]].Production
		msg := fmt.Sprintf("shares %s's qty_producing with %s: on Odoo 17/18 it is one quantity per manufacturing order, so their counts overwrite each other; count good pieces only on the machine of the order's last operation",
			mo, strings.Join(ms, ", "))
		for _, id := range ms {
			f.setMachine(id, func(ml *machineLink) { ml.Error = msg })
		}
		// Keyed by the machines, not the order: one key per order would grow.
		f.a.eventLog.log("mo/"+strings.Join(ms, ","), f.a.log, slog.LevelWarn,
			"machines count into one manufacturing order's qty_producing (Odoo 17/18)", "production", mo, "machines", ms)
	}
}

// readWorkorder reads a work order back (a call like any other: paced,
// counted).
func (f *forwarder) readWorkorder(ctx context.Context, id int64) (wo odoo.Workorder, err error) {
	err = f.call(ctx, "read_workorder", func(ctx context.Context) error {
		wo, err = f.client.ReadWorkorder(ctx, id)
		return err
	})
	return wo, err
}

// settleInFlight handles a quantity write that was sent but never settled:
// a timeout or a crash came between the write and the acknowledgement. If
// it landed, the records it held are acknowledged for its work order
// (settled = true); what came after them goes out next round. For the work
// order in progress (wo, nil if none) the round's lookup tells; if Odoo
// does not hold the write's quantity, the next write (absolute, holding
// every record) repeats it. Another work order (it changed since) is read
// back; if the write did not land there, the in-flight mark is cleared and
// the records go to wo.
// st is the machine's stored state (nil if none); clearing the mark
// updates it in place.
func (f *forwarder) settleInFlight(ctx context.Context, machine string, wo *odoo.Workorder, st *woState, acks *ackPlan) (settled bool, err error) {
	if st == nil || st.InFlight == nil {
		return false, nil
	}
	if wo != nil && st.ID == wo.ID {
		if odoo.Round2(f.client.ProducedQty(*wo)) != st.InFlight.Target {
			return false, nil
		}
		f.landed(machine, st, st.InFlight, acks)
		return true, nil
	}
	old, err := f.readWorkorder(ctx, st.ID)
	var oe *odoo.Error
	switch {
	case err == nil && odoo.Round2(f.client.ProducedQty(old)) == st.InFlight.Target:
		f.landed(machine, st, st.InFlight, acks)
		return true, nil
	case err == nil, errors.As(err, &oe) && oe.Missing():
		// It did not land (or the order is gone): the records are still to
		// be counted, for the work order in progress now.
	default:
		if f.woRefused && odoo.IsPermanent(err) && !odoo.IsAuth(err) {
			return false, nil // work orders may not be read now: it stays in flight
		}
		return false, err
	}
	return false, f.clearInFlight(ctx, machine, st)
}

// landed settles write w, whose answer never came but which Odoo holds: its
// records are acknowledged for st's work order.
func (f *forwarder) landed(machine string, st *woState, w *inflightWrite, acks *ackPlan) {
	f.a.log.Info("an unconfirmed quantity write had landed; its counts stay with that work order",
		"machine", machine, "workorder", st.Name, "qty", w.Target)
	st.Written, st.Field = w.Target, f.client.ProducedField() // the field it was read back from
	acks.wo[machine] = st
	acks.add(countKey(machine, sigGood), w.MaxSeq)
}

// clearInFlight stores st without its in-flight write: its records were
// not counted for that work order, and may be merged again.
func (f *forwarder) clearInFlight(ctx context.Context, machine string, st *woState) error {
	st.InFlight = nil
	if err := f.a.buf.PutMeta(ctx, buffer.KV{Key: woMetaKey(machine), Value: mustJSON(*st)}); err != nil {
		return err
	}
	f.a.holdInFlight(countKey(machine, sigGood), 0)
	return nil
}

// woState returns the machine's attribution to wo, taking Odoo's current
// quantity as the baseline the first time counts go to this work order
// (except the quantity starting it set, see odoo.Client.StartingQty).
// stored is the machine's stored state (nil if none).
func (f *forwarder) woState(ctx context.Context, machine string, wo *odoo.Workorder, stored *woState) (woState, error) {
	if stored != nil && stored.ID == wo.ID {
		return *stored, nil
	}
	baseline, startDefault := f.client.StartingQty(*wo)
	// On 17/18 qty_producing is the manufacturing order's: moving on to the
	// order's next operation, it still holds the last one's count, which
	// is not this operation's.
	nextOp := f.client.Major() < 19 && stored != nil && stored.MO != 0 && stored.MO == wo.ProductionID
	if nextOp {
		baseline = 0
	}
	// Written is what the next write compares with: until counts come, the
	// start default is left in place (on 17/18 Odoo ignores a write of 0).
	st := woState{ID: wo.ID, Name: wo.Name, MO: wo.ProductionID, Baseline: baseline, Written: baseline}
	if err := f.a.buf.PutMeta(ctx, buffer.KV{Key: woMetaKey(machine), Value: mustJSON(st)}); err != nil {
		return st, err
	}
	if nextOp {
		f.a.log.Info("attributing counts to the next operation of the same manufacturing order; its quantity is the last operation's, counting from 0",
			"machine", machine, "workorder", wo.Name, "odoo_qty", f.client.ProducedQty(*wo))
	} else if startDefault {
		f.a.log.Info("attributing counts to work order; its quantity is what starting it set (the remaining quantity), counting from 0",
			"machine", machine, "workorder", wo.Name, "odoo_qty", f.client.ProducedQty(*wo))
	} else {
		f.a.log.Info("attributing counts to work order", "machine", machine, "workorder", wo.Name, "baseline", st.Baseline)
	}
	return st, nil
}

// noteLateOrEdited logs two things a planner should know about a write the
// agent is about to make (it changes nothing):
//   - pieces made before this work order started, while the machine's last
//     one was in progress: they reached Odoo after that one was finished
//     (Odoo refuses quantities on a finished order) and are booked here;
//   - a quantity someone changed in Odoo since plantedge wrote it: the
//     next absolute write replaces it;
//   - Odoo upgraded across 19 (moved): the quantity is now another field,
//     which plantedge writes its count to (not an edit).
func (f *forwarder) noteLateOrEdited(machine string, wo *odoo.Workorder, stored, st *woState, good *pendingKey, moved bool) {
	if good != nil && stored != nil && stored.ID != wo.ID && !wo.DateStart.IsZero() && good.first > 0 &&
		fromMS(good.first).Before(wo.DateStart) {
		f.a.eventLog.log("late "+machine, f.a.log, slog.LevelWarn,
			"pieces made before this work order started are booked on it: the previous one was finished (or cancelled) before they reached Odoo",
			"machine", machine, "workorder", wo.Name, "previous", stored.Name, "pieces", good.sum, "oldest", fromMS(good.first))
	}
	odooQty := odoo.Round2(f.client.ProducedQty(*wo))
	if moved {
		f.a.eventLog.log("moved "+machine, f.a.log, slog.LevelInfo,
			"Odoo keeps the work order's quantity in another field since it was upgraded (or restored): plantedge writes its count there",
			"machine", machine, "workorder", wo.Name, "field", f.client.ProducedField(), "was", st.Field, "odoo_qty", odooQty, "written", st.Written)
		return
	}
	if st.Written != st.Baseline && odooQty != st.Written && (st.InFlight == nil || odooQty != st.InFlight.Target) {
		f.a.eventLog.log("edited "+machine, f.a.log, slog.LevelWarn,
			"the work order's quantity was changed in Odoo since plantedge wrote it; plantedge's next write replaces it with its count",
			"machine", machine, "workorder", wo.Name, "odoo_qty", odooQty, "written", st.Written)
		// Shown until a write sticks: a person's edit is replaced once,
		// while Odoo itself holding the quantity (a serial-tracked product
		// is produced one unit at a time) shows here for good.
		msg := fmt.Sprintf("work order %s shows %g in Odoo where plantedge wrote %g: edited in Odoo, or Odoo keeps it there "+
			"(a product tracked by serial number is produced one unit at a time)", wo.Name, odooQty, st.Written)
		f.setMachine(machine, func(ml *machineLink) {
			if ml.Error == "" {
				ml.Error = msg
			}
		})
	}
}

// forwardScrap books pending scrap through an outbox entry, so the same
// booking is never made twice: the entry (external id, quantity, the last
// record it covers) is stored before the call and cleared in the
// transaction after the last of its records is acknowledged.
func (f *forwarder) forwardScrap(ctx context.Context, machine string, wo *odoo.Workorder, p *pendingKey, acks *ackPlan) error {
	cur := wo // the work order in progress (gatherScrap may book on an earlier one)
	var ob scrapOutbox
	b, err := f.a.buf.Meta(scrapMetaKey(machine))
	if err != nil {
		return err
	}
	switch {
	case b != nil:
		if err := json.Unmarshal(b, &ob); err != nil {
			return fmt.Errorf("decode scrap outbox of %s: %w", machine, err)
		}
	case p == nil || p.sum == 0:
		return nil
	case f.gatherScrap(machine, &wo):
		return nil // gathered after a draft (scrapGather)
	case wo == nil:
		return nil
	default:
		carry, err := f.scrapCarry(machine)
		if err != nil {
			return err
		}
		total := carry + p.sum
		qty := odoo.Round2(total)
		if qty == 0 {
			// Below Odoo's precision so far: nothing to book, so no
			// outbox (an older version rolled back to would take one for
			// a booking of 0 and dead-letter it). The records' ack stores
			// the carry in its own transaction.
			key := countKey(machine, sigScrap)
			acks.add(key, p.maxSeq)
			acks.carries[key] = total
			return nil
		}
		ob = scrapOutbox{
			XMLID:        fmt.Sprintf("plantedge.%s_%s_scrap_%s_%d", f.a.cfg.Load().Site, machine, f.a.bufID, p.maxSeq),
			Qty:          qty,
			MaxSeq:       p.maxSeq,
			WorkorderID:  wo.ID,
			ProductionID: wo.ProductionID,
			ProductID:    wo.ProductID,
			UomID:        wo.UomID,
			Carry:        total - qty,
		}
		f.a.holdInFlight(countKey(machine, sigScrap), ob.MaxSeq)
		if err := f.a.buf.PutMeta(ctx, buffer.KV{Key: scrapMetaKey(machine), Value: mustJSON(ob)}); err != nil {
			return err
		}
	}
	done := ob.Qty == 0 // an outbox of 0 from a version that stored one: nothing to book
	if !done {
		err = f.call(ctx, "book_scrap", func(ctx context.Context) error {
			var err error
			done, err = f.client.BookScrap(ctx, odoo.Scrap{XMLID: ob.XMLID, ProductID: ob.ProductID, UomID: ob.UomID,
				ProductionID: ob.ProductionID, WorkorderID: ob.WorkorderID, Qty: ob.Qty,
				ConfirmShort: f.a.cfg.Load().Odoo.ScrapWhenShort == "confirm"})
			return err
		})
	}
	switch {
	case err == nil && done:
		delete(f.scrapShortAt, machine)
		acks.add(countKey(machine, sigScrap), ob.MaxSeq)
		acks.clears = append(acks.clears, scrapClear{machine: machine, carry: ob.Carry})
		f.a.metrics.forwarded.WithLabelValues("scrap_count").Add(ob.Qty)
		return nil
	case err == nil && !done:
		// Not a refusal: Odoo has the booking, as a draft under its
		// external id, on its work order, for a person to validate (its
		// Insufficient Quantity dialog). The records are acknowledged —
		// later scrap is booked on the work order it is made on — and the
		// draft is watched (checkScrapDrafts), never booked a second time.
		acks.add(countKey(machine, sigScrap), ob.MaxSeq)
		d := scrapDraft{XMLID: ob.XMLID, Qty: ob.Qty, Workorder: woName(wo), At: time.Now().UTC().Truncate(time.Second)}
		if cur != nil && ob.WorkorderID == cur.ID {
			// The next booking gathers a while (scrapGather) — only on the
			// order in progress: a draft of an earlier order's pieces must
			// not make later scrap wait for (and go to) that order.
			f.scrapShortAt[machine] = scrapGathering{at: time.Now(), wo: *cur}
		}
		acks.clears = append(acks.clears, scrapClear{machine: machine, carry: ob.Carry, draft: &d})
		f.a.eventLog.log("scrap short "+machine, f.a.log, slog.LevelWarn,
			"odoo has too little stock to scrap: the booking is a draft in Odoo until a person validates it there (odoo.scrap_when_short: hold)",
			"machine", machine, "xmlid", ob.XMLID, "qty", ob.Qty)
		return nil
	case odoo.IsAuth(err) || !odoo.IsPermanent(err):
		return err
	}
	if dl := (*odoo.DraftLeftError)(nil); errors.As(err, &dl) {
		// Odoo has the booking, a draft under its external id, and refused
		// for good to validate it (a lot or serial number it needs, a rule,
		// the bot lacking the right): it is watched as a draft, with why,
		// not dead-lettered — a retry under another id would book the
		// pieces twice once someone validates this draft. A flush
		// validates it again (checkScrapDrafts).
		acks.add(countKey(machine, sigScrap), ob.MaxSeq)
		msg, _, _ := strings.Cut(err.Error(), "\n")
		d := scrapDraft{XMLID: ob.XMLID, Qty: ob.Qty, Workorder: woName(wo), At: time.Now().UTC().Truncate(time.Second), Refused: msg}
		acks.clears = append(acks.clears, scrapClear{machine: machine, carry: ob.Carry, draft: &d})
		f.a.eventLog.log("scrap refused "+machine, f.a.log, slog.LevelError,
			"odoo refused to validate a scrap booking: it is a draft in Odoo until the cause is fixed and it is validated (there, or by plantedge flush)",
			"machine", machine, "xmlid", ob.XMLID, "qty", ob.Qty, "err", err)
		return nil
	}
	if err := f.deadLetterKey(ctx, countKey(machine, sigScrap), ob.MaxSeq, "book scrap "+ob.XMLID+": "+err.Error()); err != nil {
		return err
	}
	if err := f.a.buf.PutMeta(ctx, buffer.KV{Key: scrapMetaKey(machine)}); err != nil {
		return err
	}
	f.a.holdInFlight(countKey(machine, sigScrap), 0)
	return nil
}

func woName(wo *odoo.Workorder) string {
	if wo == nil {
		return ""
	}
	return wo.Name
}

// scrapDraft is a scrap booking Odoo left a draft for too little stock
// (scrap_when_short: hold), watched until a person validates or deletes it.
type scrapDraft struct {
	XMLID     string    `json:"xmlid"`
	Qty       float64   `json:"qty"`
	Workorder string    `json:"wo,omitempty"`
	At        time.Time `json:"at,omitzero"` // when Odoo left it a draft
	// Refused is Odoo's answer when it refused for good to validate the
	// booking (not a matter of stock): a flush tries again.
	Refused string `json:"refused,omitempty"`
}

func scrapDraftKey(machine, xmlid string) string { return "scrapdraft/" + machine + "/" + xmlid }

// scrapDraftRecheck is how often the drafts are looked at (a flush looks
// at once); scrapDraftWatch how long one is watched: a person may leave
// one a draft for good (the dialog's Discard from the scrap's own form
// keeps it).
const (
	scrapDraftRecheck = time.Minute
	scrapDraftWatch   = 7 * 24 * time.Hour
)

// scrapGathering is a machine's scrap being gathered after a draft: since
// when, and on which work order.
type scrapGathering struct {
	at time.Time
	wo odoo.Workorder
}

// gatherScrap reports whether a machine's scrap is to wait (gathered after
// a draft, see scrapGather). Once the work order it was gathered on is no
// longer in progress, *wo becomes that order: the pieces were made there,
// and are booked there now.
func (f *forwarder) gatherScrap(machine string, wo **odoo.Workorder) bool {
	g, ok := f.scrapShortAt[machine]
	if !ok {
		return false
	}
	if *wo == nil || (*wo).ID != g.wo.ID {
		delete(f.scrapShortAt, machine)
		*wo = &g.wo
		return false
	}
	if time.Since(g.at) < scrapGather && !f.flushed && f.a.cfg.Load().Odoo.ScrapWhenShort != "confirm" {
		return true
	}
	delete(f.scrapShortAt, machine)
	return false
}

// scrapGather is how long a machine's scrap is gathered after Odoo left a
// booking of it a draft, before the next booking: with too little stock at
// the location (always, with 2- or 3-step manufacturing) every booking
// would otherwise make a draft for a person to handle — one every round.
// A flush books at once.
const scrapGather = 15 * time.Minute

// checkScrapDrafts looks at the scrap drafts being watched, two calls for
// up to 500: one validated in Odoo is done with; one deleted there was a
// person's decision not to book it, and is logged; one left a draft for
// scrapDraftWatch is no longer watched (logged); the others are shown on
// their machine. It only reads: validating is left to the person, so the
// two can never both book it. A failure is logged and shown, and waits for
// the next check: it never fails the round.
func (f *forwarder) checkScrapDrafts(ctx context.Context) error {
	if time.Since(f.draftsAt) < scrapDraftRecheck && !f.flushed {
		return nil
	}
	drafts, err := storedScrapDrafts(f.a.buf)
	if err != nil {
		return err
	}
	var xmlids []string
	for _, e := range drafts {
		xmlids = append(xmlids, e.d.XMLID)
	}
	f.draftsAt = time.Now()
	if len(drafts) == 0 {
		f.mu.Lock()
		f.drafts = nil
		f.mu.Unlock()
		return nil
	}
	var states map[string]string
	err = f.call(ctx, "scrap_states", func(ctx context.Context) error {
		var err error
		states, err = f.client.ScrapStates(ctx, xmlids)
		return err
	})
	if err != nil {
		f.a.eventLog.log("scrap drafts", f.a.log, slog.LevelWarn, "cannot read the scrap drafts in Odoo; trying again in a minute", "err", err)
		msgs := map[string]string{} // a new map: status holds the old one
		for _, e := range drafts {
			msgs[e.machine] = "cannot read its scrap drafts in Odoo: " + err.Error()
		}
		f.mu.Lock()
		f.drafts = msgs
		f.mu.Unlock()
		return nil
	}
	var gone []buffer.KV
	waiting := map[string][]scrapDraft{}
	for _, e := range drafts {
		switch state, found := states[e.d.XMLID]; {
		case found && state == "draft" && !e.d.At.IsZero() && time.Since(e.d.At) > scrapDraftWatch:
			f.a.log.Warn("scrap draft no longer watched: still a draft in Odoo after a week (validate or delete it there)",
				"machine", e.machine, "xmlid", e.d.XMLID, "qty", e.d.Qty)
		case found && state == "draft" && e.d.Refused != "" && f.flushed:
			// Refused for good when booked: the cause may be fixed now.
			d, done, err := f.revalidateScrap(ctx, e)
			if err != nil {
				return err
			}
			if !done {
				waiting[e.machine] = append(waiting[e.machine], d)
				continue
			}
			f.a.log.Info("scrap draft validated by the flush", "machine", e.machine, "xmlid", e.d.XMLID, "qty", e.d.Qty)
		case found && state == "draft":
			waiting[e.machine] = append(waiting[e.machine], e.d)
			continue
		case found:
			f.a.log.Info("scrap draft validated in Odoo", "machine", e.machine, "xmlid", e.d.XMLID, "qty", e.d.Qty, "state", state)
		default:
			f.a.log.Warn("scrap draft deleted in Odoo: its pieces are not booked as scrap", "machine", e.machine, "xmlid", e.d.XMLID, "qty", e.d.Qty)
		}
		gone = append(gone, buffer.KV{Key: e.key})
	}
	if len(gone) > 0 {
		if err := f.a.buf.PutMeta(ctx, gone...); err != nil {
			return err
		}
	}
	msgs := map[string]string{}
	for m, ds := range waiting {
		msgs[m] = scrapDraftsMessage(f.a.cfg.Load(), ds, "wait")
	}
	f.mu.Lock()
	f.drafts = msgs
	f.mu.Unlock()
	return nil
}

// revalidateScrap validates again a scrap draft Odoo refused to validate
// when it was booked: done, or the draft as it now stands (Odoo's new
// answer, or a draft for too little stock now) — stored when it changed.
// Only Odoo being away is an error.
func (f *forwarder) revalidateScrap(ctx context.Context, e storedScrapDraft) (scrapDraft, bool, error) {
	var done bool
	err := f.call(ctx, "validate_scrap", func(ctx context.Context) error {
		var err error
		done, err = f.client.ValidateScrap(ctx, e.d.XMLID, f.a.cfg.Load().Odoo.ScrapWhenShort == "confirm")
		return err
	})
	if err != nil && (odoo.IsAuth(err) || !odoo.IsPermanent(err)) {
		return e.d, false, err
	}
	if err == nil && done {
		f.a.metrics.forwarded.WithLabelValues("scrap_count").Add(e.d.Qty)
		return e.d, true, nil
	}
	d := e.d
	d.Refused = ""
	if err != nil {
		d.Refused, _, _ = strings.Cut(err.Error(), "\n")
		f.a.log.Warn("odoo still refuses to validate a scrap draft", "machine", e.machine, "xmlid", d.XMLID, "err", err)
	}
	if d != e.d {
		if err := f.a.buf.PutMeta(ctx, buffer.KV{Key: e.key, Value: mustJSON(d)}); err != nil {
			return e.d, false, err
		}
	}
	return d, false, nil
}

// storedScrapDraft is a watched scrap draft as stored: its meta key and
// machine.
type storedScrapDraft struct {
	key, machine string
	d            scrapDraft
}

// storedScrapDrafts are the scrap drafts being watched, in key order.
func storedScrapDrafts(buf *buffer.Queue) ([]storedScrapDraft, error) {
	var drafts []storedScrapDraft
	err := buf.MetaPrefix("scrapdraft/", func(key string, v []byte) error {
		var d scrapDraft
		if json.Unmarshal(v, &d) != nil {
			return nil // not this version's: left alone
		}
		machine, _, _ := strings.Cut(key[len("scrapdraft/"):], "/")
		drafts = append(drafts, storedScrapDraft{key, machine, d})
		return nil
	})
	return drafts, err
}

// scrapDraftsMessage is a machine's error for its scrap drafts in Odoo;
// verb is "wait" (just read) or "waited" (as the stopped agent last saw).
func scrapDraftsMessage(cfg *config.Config, ds []scrapDraft, verb string) string {
	hint := "validate them in Odoo (Inventory > Scrap Orders) or delete them there, or set odoo.scrap_when_short: confirm for later bookings"
	if cfg.Odoo.ScrapWhenShort == "confirm" {
		hint = "they predate odoo.scrap_when_short: confirm: validate them in Odoo (Inventory > Scrap Orders) or delete them there"
	}
	var short, refused []scrapDraft
	for _, d := range ds {
		if d.Refused != "" {
			refused = append(refused, d)
		} else {
			short = append(short, d)
		}
	}
	sum := func(ds []scrapDraft) (qty float64) {
		for _, d := range ds {
			qty += d.Qty
		}
		return qty
	}
	var msgs []string
	if len(refused) > 0 {
		msgs = append(msgs, fmt.Sprintf("%d scrap booking(s) of %g in all %s as drafts in Odoo, which refused to validate them (first: %s: %s); "+
			"fix that in Odoo, then validate them there or run plantedge flush",
			len(refused), sum(refused), verb, refused[0].XMLID, refused[0].Refused))
	}
	if len(short) > 0 {
		msgs = append(msgs, fmt.Sprintf("%d scrap booking(s) of %g in all %s as drafts in Odoo (first: %s): too little stock at their source location; %s",
			len(short), sum(short), verb, short[0].XMLID, hint))
	}
	return strings.Join(msgs, "; and ")
}

func (f *forwarder) orphansWaitingNow() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.orphansWaiting
}

// draftsSnapshot is what checkScrapDrafts last found, by machine.
func (f *forwarder) draftsSnapshot() map[string]string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.drafts
}

// scrapClear is a settled scrap booking: its outbox goes, its carry stays,
// and a draft it left in Odoo is watched from then on.
type scrapClear struct {
	machine string
	carry   float64
	draft   *scrapDraft
}

// scrapCarry reads what is left over from a machine's last scrap booking.
func (f *forwarder) scrapCarry(machine string) (float64, error) {
	b, err := f.a.buf.Meta(scrapCarryKey(machine))
	if err != nil || b == nil {
		return 0, err
	}
	v, err := strconv.ParseFloat(string(b), 64)
	if err != nil {
		return 0, fmt.Errorf("decode scrap carry of %s: %w", machine, err)
	}
	return v, nil
}

// deadLetterKey moves the records of one count key up to seq upTo to the
// dead letters with reason.
func (f *forwarder) deadLetterKey(ctx context.Context, key string, upTo uint64, reason string) error {
	return f.scanCounts(true, upTo, func(recs []buffer.Record) error {
		for _, r := range recs {
			if r.Key == key {
				if err := f.deadLetter(ctx, r, reason); err != nil {
					return err
				}
			}
		}
		return nil
	})
}

func (f *forwarder) deadLetter(ctx context.Context, r buffer.Record, reason string) error {
	if err := f.a.buf.DeadLetter(ctx, r, reason); err != nil {
		return fmt.Errorf("dead-letter record %d: %w", r.Seq, err)
	}
	f.a.metrics.deadLettered.Inc()
	f.a.deadLog.log(f.a.log, slog.LevelWarn, "odoo refused a record for good; moved to dead letters", "key", r.Key, "seq", r.Seq, "reason", reason)
	return nil
}

func boolGauge(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
