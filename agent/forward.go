package agent

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/time/rate"

	"github.com/plantedge/plantedge/agent/config"
	"github.com/plantedge/plantedge/buffer"
	"github.com/plantedge/plantedge/connectors"
	"github.com/plantedge/plantedge/internal/decimal"
	"github.com/plantedge/plantedge/odoo"
)

const (
	// scanChunk is how many records one buffer read returns while a round
	// aggregates the backlog, and so how many one acknowledgement holds.
	scanChunk = 10000
	// linesPerLoad bounds the downtime lines sent in one load call.
	linesPerLoad = 200
	// maxEventsPerRound bounds the downtime records a round sends, in
	// loads of linesPerLoad, before its counts and scrap.
	maxEventsPerRound = 10 * linesPerLoad
)

// EventsPerRound is how many downtime records a round sends at most (in
// loads of LinesPerLoad): a backlog of stops after an outage beyond it
// takes several rounds, each also booking every machine's counts and scrap.
const EventsPerRound = maxEventsPerRound

// LinesPerLoad is how many downtime lines one call to Odoo books at most.
const LinesPerLoad = linesPerLoad

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
	// KeyExpires is when the bot user's keys expire, as last read while
	// the key in use worked (Odoo 18+; none on 17): status and the gauge
	// show the soonest still to come (soonestExpiry).
	KeyExpires []time.Time
	// Answered is when Odoo last answered a call (a refusal is an answer
	// too): with nothing to send the agent asks only after a quiet spell
	// (odoo.Config.IdleRecheck), so online is as of then.
	Answered time.Time
	// RetryAfter is until when Odoo asked the agent to wait (a
	// Retry-After header): a flush does not cut that wait short.
	RetryAfter time.Time
	// Settle is until when a write Odoo may still commit holds the next
	// call back (forwarder.settleUntil): a flush does not cut that short.
	Settle time.Time
	// CallSeconds is how long Odoo takes to answer a call, as a moving
	// average of the calls it answered (the wait for forward.rate left
	// out); Slow is set from slowCall up, until it is back below fastCall.
	CallSeconds float64
	Slow        bool
	// LinesPerLoad is how many downtime lines a load carries while fewer
	// than linesPerLoad (0: linesPerLoad), shrunk after loads Odoo took
	// too long for, or a proxy in front of it refused as too large
	// (loadsize.go).
	LinesPerLoad int
	// Round is how long the last round that went through took, RateWait
	// how much of it was the wait for forward.rate: a plant whose rounds
	// need more requests than the rate lets through in a few seconds runs
	// that far behind its machines.
	Round, RateWait time.Duration
	// SwitchFrom is the Odoo the buffer file's state belongs to while the
	// one configured now has not answered yet (Agent.odooWas): the agent
	// switches once it does (switchOdoo).
	SwitchFrom string
	// QtyDigits is the decimals Odoo keeps of a quantity, as the client
	// read them at its last connect (QtyRead false: assumed, 2); set
	// (QtySet) once a connect went through.
	QtyDigits       int
	QtyRead, QtySet bool
}

// slowCall and fastCall bound the average answer time at which Odoo is
// said to be slow, and fast again: a backlog drains at a call or two per
// machine and round, so seconds per call show as minutes behind.
const (
	slowCall = 2 * time.Second
	fastCall = time.Second
)

// machineLink is what the forwarder knows of a machine in Odoo.
type machineLink struct {
	WorkOrder    string
	WorkorderID  int64
	Production   string // its manufacturing order
	ProductionID int64
	Others       []string // other work orders in progress on the work center
	// SerialProducing: on Odoo 17/18 its work order's product is tracked
	// by serial number, so Odoo keeps its quantity producing at 1
	// (odoo.Workorder.SerialProducing).
	SerialProducing bool
	Unattributed    float64
	Error           string
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
	// loggedLocal: a round that failed in the buffer was logged; again
	// only after a round went through.
	loggedLocal bool
	boMax       config.Duration // forward.backoff_max bo was given (applyForward)
	reloadCh    chan struct{}   // cap 1: a reload (reloaded)
	kick        chan struct{}

	connected bool
	// restoreChecked: checkRestored has looked (once a run); restored is
	// what it found: a file older than what it booked, which sends nothing.
	restoreChecked bool
	// orphansChecked: closeOrphanLines has looked (once a run).
	orphansChecked bool
	restored       *restoredError
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
	// remindedAt is when the log last said that Odoo is not taking the
	// buffer (see outageReminder).
	remindedAt time.Time
	// scrapShortAt is when Odoo last left a machine's scrap booking a
	// draft (see scrapGather).
	scrapShortAt map[string]scrapGathering
	// settleUntil is when the last request Odoo did not answer can no
	// longer commit (its start plus odoo.request_limit): until then
	// nothing more is sent, so a late commit cannot overtake a newer write
	// or be repeated (run's goroutine).
	settleUntil time.Time
	// tooLargeAt is the fewest downtime lines of a load a proxy in front
	// of Odoo refused as too large this run (its 413: nginx's
	// client_max_body_size), 0 for none: the loads never grow back to it
	// (noteLoad; guarded by mu).
	tooLargeAt int
	// doubtLines are the external ids of the downtime lines sent in loads
	// Odoo did not answer (in doubt): before one is sent again, after the
	// settle, Odoo's line is read back (readBack; run's goroutine).
	doubtLines map[string]bool
	// rateWaited sums the time waitRate waited (nanoseconds), so that a
	// call's answer time leaves out its wait for forward.rate; rateTaken
	// counts its calls: one per HTTP request the client sends.
	rateWaited, rateTaken atomic.Int64
	// loggedBusy: the last failure logged was Odoo busy (a lock, a
	// serialization failure), not Odoo away.
	loggedBusy bool
	// loggedLasting: the last failure logged was one that lasts until a
	// person acts (see outageLike).
	loggedLasting bool
	// calls counts the Odoo operations made since start (status: a flush
	// shows a long first round moving before it acknowledges anything).
	calls atomic.Uint64
	// writing is set while call runs a write operation (forwarder
	// goroutine only): waitRate then keeps the stored mark ahead of each
	// of its requests.
	writing bool
	// markedUntil is the settleUntil last stored (settleKey) ahead of the
	// calls: a crash leaves it for the next start (run's goroutine).
	markedUntil time.Time
	// draftsAt is when the scrap drafts were last looked at, and drafts
	// what was found then: by machine, what to show (under mu).
	draftsAt time.Time
	drafts   map[string]string
	flushed  bool // the current round was asked for by flush
	// flushTry: a flush asked for the next attempt while a refused key
	// was waited on; the attempt's outcome is logged (run's goroutine).
	flushTry bool
	// rebook is a rebook asked for (Rebook; under mu), done by the next
	// round; bookedPruned is when the old bookings kept were last
	// forgotten (pruneBooked).
	rebook       *rebookReq
	bookedPruned time.Time
	// accept are the machines whose quantity in Odoo a person asked to
	// keep (AcceptQty; under mu), done by the next round; roundAccepts
	// those the current round took (run's goroutine).
	accept       map[string]*acceptReq
	roundAccepts map[string]*acceptReq
	// bookedPrunedFull is the buffer's DiskFullSince at that pruning: a
	// full disk prunes at once. bookedFullSaid: the DiskFullSince whose
	// bookings not kept were logged.
	bookedPrunedFull, bookedFullSaid time.Time
	// bookedAdded is the bytes of bookings kept since then (keepBooked).
	bookedAdded int64
	// backlogClear is, by machine and signal, what madeEarlier last found:
	// nothing but the order in progress since the time it looked up
	// (run's goroutine; nil until the first).
	backlogClear map[string]backlogMark
	// solo is, by work center, from when on this round the order in
	// progress there is the only one Odoo shows in play (soloSince): a
	// backlog made since then is its own, without a timeline.
	solo map[int64]soloMark
	// rewrite are the machines whose count a rebook asked to be written
	// again where Odoo shows another (run's goroutine): an Odoo restored
	// from a backup shows the backup's until a machine makes a piece.
	rewrite map[string]bool
	// precisionAsked is, by machine, the work order and quantity for
	// which precisionLowered last read Odoo's precision again (run's
	// goroutine): once for a quantity that stays.
	precisionAsked map[string]string
	// digitsFresh: Odoo's quantity precision was read again this round
	// before a scrap booking with a fraction (scrapQty; run's goroutine).
	digitsFresh bool
	// unitRoundings: the rounding of the units scrap was booked in this
	// round, read with the precision (scrapUnitRounding; run's goroutine);
	// unitRoundingRefused: its read was refused, said once at WARN.
	unitRoundings       map[int64]float64
	unitRoundingRefused bool
	// bookedCheckDue: Odoo was away; checkBooked looks at what it has,
	// and logs what it lacks unless it said the same last (bookedLacked);
	// also every bookedCheckEvery (bookedChecked: when it last looked).
	bookedCheckDue bool
	bookedChecked  time.Time
	bookedLacked   string
	// keyID identifies the API key in use (not the key); keyWorked says
	// Odoo accepted it once, so a later refusal means expired or revoked.
	keyID     string
	keyWorked bool
	// workedKey is the keyID Odoo last accepted, in this run or an earlier
	// one (keyWorkedKey in the buffer file): a key that expires while the
	// agent restarts is still told from a wrong one.
	workedKey string
	// keyDates is what Odoo last showed of the bot user's keys'
	// expiration dates (keydates.go); keyDatesRead the keyID it was read
	// for in this run.
	keyDates     keyDates
	keyDatesRead string
	// keyWarned is when the log last warned that the key expires soon
	// (warnKeyExpiry).
	keyWarned time.Time
	authFails int // consecutive authentication failures
	// forget is set by a configuration reload and by a flush: the work
	// centers and loss reasons looked up in Odoo are looked up again (an
	// admin may have fixed them there, or archived one; a reload or a
	// flush is how a technician says "try again").
	forget atomic.Bool
	losses map[string]int64

	// stopping is set by beginStop (under mu): no new call is made, and a
	// wait ends (stopCh is closed); cutCall cuts the read in progress, if
	// any. A write in progress runs to its answer: cut off, it would be
	// left in doubt (the fourth self-probe: every SIGTERM during a write
	// did that, and a switch of Odoo then booked its pieces in both).
	stopping bool
	stopCh   chan struct{}
	cutCall  context.CancelFunc

	mu       sync.Mutex
	link     linkState
	machines map[string]machineLink
	rounds   uint64
	// roundsDone counts the rounds completed (rounds run one at a time:
	// roundsDone > n means round n+1 has completed).
	roundsDone uint64
	// drain follows a backlog's rounds for status (drain.go).
	drain drainMeter

	// left counts the records that left the buffer since start: acknowledged
	// (Odoo has them) or moved to the dead letters (a drain's rate).
	left atomic.Uint64
	// prevStart and prevSeq are when the round before the one under way
	// began and the buffer's last sequence number then (run's goroutine):
	// a record from before it is a backlog's.
	prevStart time.Time
	prevSeq   uint64
	prevOK    bool // the round before went through
}

// setupError is a failure to build the Odoo client (no API key, bad CA
// file), or an Odoo that cannot work with this configuration (a wrong url
// path, database or protocol): retried slowly, and shown as an
// authentication failure only when the API key is what is missing (key).
type setupError struct {
	err error
	key bool
}

func (e *setupError) Error() string { return "odoo client: " + e.err.Error() }
func (e *setupError) Unwrap() error { return e.err }

// callRate is forward.rate as a limit: 10/s for a Config built without
// the loader's defaults (tests); a loaded file has the default 5 or what it says
// (validate refuses 0 and less).
func callRate(fw config.Forward) rate.Limit {
	if fw.Rate <= 0 {
		return 10
	}
	return rate.Limit(fw.Rate)
}

// applyForward takes forward.rate and forward.backoff_max as the
// configuration has them now: a reload changes them for the next round
// (they were kept from the start while the log said "configuration
// reloaded": the reload probe throttled Odoo to 1 call/s and it went on
// getting 20).
func (f *forwarder) applyForward() {
	fw := f.a.cfg.Load().Forward
	if r := callRate(fw); r != f.limiter.Limit() {
		f.limiter.SetLimit(r)
	}
	if fw.BackoffMax != f.boMax {
		f.bo.SetMax(fw.BackoffMax.D())
		f.boMax = fw.BackoffMax
	}
}

// reloaded takes a reload's forward.rate at once (rate.Limiter is safe to
// share) and wakes a backoff wait, which then keeps to the new
// forward.backoff_max (the review: lowered from an hour during an outage,
// the old wait went on).
func (f *forwarder) reloaded() {
	f.limiter.SetLimit(callRate(f.a.cfg.Load().Forward))
	select {
	case f.reloadCh <- struct{}{}:
	default:
	}
}

func newForwarder(a *Agent) *forwarder {
	fw := a.cfg.Load().Forward
	f := &forwarder{
		a:            a,
		reloadCh:     make(chan struct{}, 1),
		limiter:      rate.NewLimiter(callRate(fw), 1),
		bo:           connectors.NewBackoff(time.Second, fw.BackoffMax.D()),
		boMax:        fw.BackoffMax,
		kick:         make(chan struct{}, 1),
		unmapped:     map[string]time.Time{},
		wcs:          map[string]odoo.Workcenter{},
		missing:      map[string]missingCode{},
		noWorkorder:  map[string]bool{},
		scrapShortAt: map[string]scrapGathering{},
		losses:       map[string]int64{},
		machines:     map[string]machineLink{},
		link:         linkState{State: "offline", Since: time.Now(), SwitchFrom: a.odooWas},
		stopCh:       make(chan struct{}),
	}
	f.restoreLoadSize()
	return f
}

// SettleNote is odoo.last_error while a start holds writes back (after
// the error of asking Odoo, when that failed).
const SettleNote = "waiting for requests sent to Odoo before the agent stopped: Odoo may still run them until its request limit (odoo.request_limit)"

// probeOdoo asks Odoo, while a start holds writes back, whether it answers:
// its version and the login, on a client of its own (a read; the first
// round connects as it always does). Status then says what Odoo is, not
// what a fresh process assumed (the soak probe: offline for 2 minutes after
// every crash, Odoo up all along); a refused key shows at once.
func (f *forwarder) probeOdoo(ctx context.Context) {
	c, err := f.a.newOdooClient()
	if err != nil {
		return // said by the first round
	}
	defer c.Close()
	err = f.call(ctx, "connect", c.Connect)
	f.linkGauges(err == nil, odoo.IsAuth(err))
	f.mu.Lock()
	defer f.mu.Unlock()
	switch {
	case err == nil: // online (call), and still holding back
		f.link.connected(c)
		f.link.LastError, f.link.NextAttempt, f.link.Since = SettleNote, f.settleUntil, time.Now()
		f.a.log.Info("odoo online; writes wait for the last run's requests", "component", "forwarder",
			"protocol", f.link.Protocol, "server_version", f.link.Version, "until", f.settleUntil.Format("2006-01-02T15:04:05.000Z07:00"))
	case odoo.IsAuth(err):
		if p, v := c.Seen(); v != "" { // what refused it (see run)
			f.link.Protocol, f.link.Version = p, v
		}
		// Expired, as the round says it: the key that worked before with
		// this Odoo, most likely past its date (keyLikelyExpired).
		expired, _ := f.keyLikelyExpired(c.KeyID(), time.Now())
		f.link.KeyExpired = c.KeyID() == f.workedKey && f.a.odooWas == "" && expired
		f.link.State, f.link.LastError = "auth_failed", err.Error()+"; and "+SettleNote
		f.a.log.Error("odoo refused the API key (asked while writes wait for the last run's requests); check the key (wrong? expired? revoked? the bot user archived?) — it is tried again when the wait ends",
			"component", "forwarder", "err", err, "expired", f.link.KeyExpired, "until", f.settleUntil.Format("2006-01-02T15:04:05.000Z07:00"))
	default:
		f.link.LastError = err.Error() + "; and " + SettleNote
	}
}

// errStopping is what a call returns once the agent is stopping: the round
// ends there, acknowledging what Odoo confirmed.
var errStopping = fmt.Errorf("plantedge is stopping: %w", context.Canceled)

// errAgentStopping answers an accept-qty or rebook asked of a stopping
// agent, or waiting for a round when the stop began: no round will do it.
var errAgentStopping = errors.New("plantedge is stopping: nothing was changed")

// beginStop asks the forwarder to stop at the next call: a read in
// progress is cut, a write in progress runs to its answer, and what Odoo
// confirmed is acknowledged before run returns. The agent's stop timeout
// cancels run's context if that takes too long. The accept-qty and
// rebook requests waiting for a round are answered now: none will come
// (they waited out their time, and made the stop 2 s longer — the
// lifecycle review).
func (f *forwarder) beginStop() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.stopping {
		return
	}
	f.stopping = true
	close(f.stopCh)
	if f.cutCall != nil {
		f.cutCall()
	}
	for machine, req := range f.accept {
		req.done <- acceptAnswer{res: AcceptResult{Machine: machine}, err: errAgentStopping}
	}
	f.accept = nil
	if f.rebook != nil {
		f.rebook.done <- rebookAnswer{err: errAgentStopping}
		f.rebook = nil
	}
}

func (f *forwarder) isStopping() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.stopping
}

// Flush asks the forwarder to start a round now, skipping any backoff
// wait, and returns how many rounds had started before: the first round
// to complete past that number began after the request (see roundsDone).
func (f *forwarder) Flush() uint64 {
	// As a reload does: the work centers and loss reasons are looked up
	// again (one call for all the codes; a work center archived in Odoo is
	// noticed now, not at the 5-minute refresh).
	f.forget.Store(true)
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

// connected notes what status shows of a client whose connect went
// through: its protocol, Odoo's version and quantity precision (under
// f.mu).
func (l *linkState) connected(c *odoo.Client) {
	l.Protocol, l.Version = c.Protocol(), c.ServerVersion()
	l.QtyDigits, l.QtyRead = c.QtyPrecision()
	l.QtySet = true
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
	f.loadSettle(log)
	if b, err := f.a.buf.Meta(keyWorkedKey); err == nil {
		f.workedKey = string(b)
	}
	f.loadKeyDates()
	defer f.saveSettle(log)
	// At the stop, what the dead-letter log left out is said (no later
	// round would).
	defer f.a.deadLog.tell(f.a.log, slog.LevelWarn, deadLogMore, true)
	if left := time.Until(f.settleUntil); left > 0 {
		// What a machine renamed before the crash had goes to its new id
		// now, not after the wait (status would show it held meanwhile);
		// nothing is sent.
		if err := f.takeOverRenamed(ctx, f.a.cfg.Load()); err != nil {
			log.Warn("renamed machines' records not taken over yet", "err", err)
		}
		f.mu.Lock()
		f.link.LastError = SettleNote
		f.link.NextAttempt, f.link.Settle = f.settleUntil, f.settleUntil
		f.mu.Unlock()
		f.probeOdoo(ctx)
		if !f.sleep(ctx, time.Until(f.settleUntil), time.Until(f.settleUntil)) {
			return
		}
	}
	for {
		f.applyForward()
		before := f.linkSnapshot() // call() may show the link online mid-round
		roundStart, waited := time.Now(), f.rateWaited.Load()
		more, err := f.round(ctx)
		if err != nil && !errors.As(err, new(rebookAnswered)) {
			f.failRebook(err) // the round did not get to it
		}
		if err == nil {
			f.mu.Lock()
			f.link.Round, f.link.RateWait = time.Since(roundStart), time.Duration(f.rateWaited.Load()-waited)
			f.mu.Unlock()
		}
		if err == nil && !more && ctx.Err() == nil {
			f.unmarkSettle(ctx)
		}
		if err == nil && !more {
			// A flush asks until a round has gone through to the end: one
			// that failed (a timeout, Odoo away) or left a backlog did not
			// do what it asked (book gathered scrap, look again at codes
			// and drafts).
			f.flushed = false
		}
		if ctx.Err() != nil || f.isStopping() {
			return
		}
		f.a.beat()
		// wait is the pause before the next round; a flush may cut it short,
		// but not below floor (an authentication backoff, a Retry-After).
		var wait, floor time.Duration
		// The hold after a write Odoo did not answer (settleUntil, below),
		// spread over the fleet: known here, so the outage's log line
		// says the wait it makes.
		var settleWait time.Duration
		if left := time.Until(f.settleUntil); left > 0 {
			settleWait = left + rand.N(min(left/4, 30*time.Second)+1)
		}
		f.mu.Lock()
		prev := before
		switch {
		case err == nil:
			if prev.State != "online" {
				if prev.Failures > 0 && f.loggedBusy {
					log.Info("odoo does the calls again", "failures", prev.Failures, "after", time.Since(prev.Since).Round(time.Second))
				} else if prev.Failures > 0 && prev.State == "auth_failed" && f.workedKey != "" && f.workedKey != f.keyID {
					// Not "again": a key that never worked before, the one
					// that replaced the refused key (the upgrade probe).
					log.Info("odoo takes the new API key", "failures", prev.Failures, "after", time.Since(prev.Since).Round(time.Second), "flush", f.flushTry)
				} else if prev.Failures > 0 && prev.State == "auth_failed" {
					log.Info("odoo takes the API key again", "failures", prev.Failures, "after", time.Since(prev.Since).Round(time.Second), "flush", f.flushTry)
				} else if prev.Failures > 0 {
					log.Info("odoo reachable again", "failures", prev.Failures, "after", time.Since(prev.Since).Round(time.Second))
				} else {
					log.Info("odoo online", "protocol", f.client.Protocol(), "server_version", f.client.ServerVersion())
				}
				f.link.Since = time.Now()
			}
			f.link.State, f.link.Failures, f.link.LastError, f.link.KeyExpired = "online", 0, "", false
			f.link.RetryAfter, f.loggedBusy, f.loggedLasting = time.Time{}, false, false
			f.keyWorked, f.authFails = true, 0
			if f.workedKey != f.keyID {
				if err := f.a.buf.PutMeta(ctx, buffer.KV{Key: keyWorkedKey, Value: []byte(f.keyID)}); err == nil {
					f.workedKey = f.keyID
				}
			}
			f.link.connected(f.client)
			f.bo.Reset()
			if !more {
				// Spread: agents that something put in step (started
				// together, answered together after Odoo hung) must not
				// stay in step.
				wait = spread(f.a.cfg.Load().Forward.Interval.D())
			}
		case localFailure(err):
			// The buffer could not record what the round did (the disk
			// full, a failing device): Odoo is not at fault, and its link
			// keeps its state (the disk probe: a full disk's ENOSPC on an
			// acknowledgement showed Odoo offline and was logged as "odoo
			// cannot be reached as configured"). What Odoo took is sent
			// again next round; it takes it again as the same.
			wait, floor = f.bo.NextBackOff(), time.Second
			if !f.loggedLocal {
				f.loggedLocal = true
				what := "the disk full? a failing device? free space on the disk"
				if errors.Is(err, buffer.ErrQuota) {
					what = "buffer.max_bytes reached: raise it"
				}
				log.Error("the buffer could not record what odoo took ("+what+"); the round is done again once it can, odoo takes it again as the same",
					"err", err, "next_attempt_in", wait.Round(time.Millisecond))
			}
		default:
			var oe *odoo.Error
			isOE := errors.As(err, &oe)
			if f.client != nil {
				// What Odoo answered it is, even when it then refused the
				// login (the client is dropped below): upgraded with the
				// key revoked, status said the version before and the
				// refusal reasoned from it (the upgrade probe:
				// "Odoo 17.0", "Odoo 17's keys do not expire" against 18.0).
				if p, v := f.client.Seen(); v != "" {
					f.link.Protocol, f.link.Version = p, v
				}
			}
			wait = f.bo.NextBackOff()
			floor = time.Second // a flush in a loop must not make a storm either
			state := "offline"
			var se *setupError
			keyNew := false // the refused key is no longer the one the agent would send
			if odoo.IsAuth(err) || errors.As(err, &se) {
				if se == nil || se.key {
					state = "auth_failed"
				}
				if isOE && oe.LoginCooldown() {
					// The address is locked out, the key may be fine: keep the
					// session, so the next attempt is an object call that says
					// which (authenticate answers a lockout like a wrong key).
				} else {
					f.connected = false
					f.client = nil // read the key again before the next attempt
				}
				// Odoo counts every failed login from this address; after 10
				// (a new database's base.login_cooldown_after) it refuses all
				// logins from the address (its own users' too) for a minute
				// (base.login_cooldown_duration) after each further failure.
				// So: at least auth_backoff between attempts, doubling up to
				// 16× while the key keeps being refused. A flush — a
				// technician's "try now", after the bot user was unarchived,
				// say — cuts the doubled wait to auth_backoff after the
				// refusal: one login a minute (by default) never meets the
				// cooldown, however often flush asks. A lockout Odoo
				// reported is waited out in full (a new key alone is tried
				// at once, see sleep).
				if state == "auth_failed" {
					ab := f.a.cfg.Load().Forward.AuthBackoff.D()
					f.authFails++
					wait = max(wait, ab<<min(f.authFails-1, 4))
					floor = wait
					if se == nil && !(isOE && oe.LoginCooldown()) {
						floor = min(wait, max(ab, time.Second))
						if f.keyReplaced() {
							// Where the agent takes its key there is
							// another one than the key refused: rotated
							// while Odoo was away or refusing (an
							// upgrade's maintenance, the upgrade probe:
							// the new key waited a minute in the file,
							// the log said to create one). No retry of
							// the refused key: tried at the next round,
							// as a flush would.
							keyNew = true
							wait, floor = time.Second, time.Second
							f.authFails = 0
						}
					}
				} else {
					// No login was refused: slowly, but a flush (after the
					// configuration was fixed) tries at once.
					wait = max(wait, f.a.cfg.Load().Forward.AuthBackoff.D())
				}
			}
			if isOE && oe.Timeout() && oe.TimedOut() {
				// Odoo may still be working on the call it did not answer
				// (a worker busy until it is done): give it as long again
				// before the next one, spread over the fleet. (Not when the
				// connection was never made: a WAN that drops packets.) A
				// flush skips this wait, as it does the backoff; a write
				// that may still commit holds the next one back longer
				// (settleUntil, below), flush or not.
				t := f.a.cfg.Load().Odoo.Timeout.D()
				wait = max(wait, t+rand.N(t/2+1))
			}
			f.link.RetryAfter = time.Time{}
			if isOE && oe.RetryAfter > 0 {
				w, fl := retryAfterWait(oe.RetryAfter, max(f.a.cfg.Load().Forward.BackoffMax.D(), retryAfterMax))
				wait, floor = max(wait, w), max(floor, fl)
				f.link.RetryAfter = time.Now().Add(fl)
			}
			busy := isOE && oe.Busy()
			// A busy Odoo that then goes away is logged again, as an outage
			// (the self-probe: the journal kept the busy warning through the
			// outage that followed).
			// A lasting failure after one that comes and goes (the WAN back,
			// and now a certificate that does not verify) is said at once
			// too, at ERROR (the second self-probe: it waited for the
			// 15-minute reminder).
			lasting := !outageLike(err)
			if prev.State != state || prev.Failures == 0 || (f.loggedBusy && !busy) || (lasting && !f.loggedLasting) {
				f.loggedBusy, f.loggedLasting = busy, lasting
				msg := "odoo unreachable; buffering and retrying with backoff"
				if lasting {
					msg = "odoo cannot be reached as configured (a certificate, the URL's scheme or path, a proxy's login, the host name: the error says); buffering and retrying with backoff"
				}
				switch {
				case errors.As(err, new(*restoredError)):
					msg = "BUFFER FILE OLDER THAN ODOO: restored from a backup, or another box went on with a copy of it; nothing is sent (the error says what to do)"
				case se != nil && se.key && errors.Is(err, fs.ErrPermission):
					// Not the configuration's: the key file's (status's
					// and validate --odoo's words).
					msg = "Odoo was not asked: the agent cannot read its API key (the file's owner, mode or path: the error says; " +
						config.PackagedAPIKey + "); buffering and retrying with backoff"
				case se != nil && !errors.As(err, new(*odoo.Error)):
					msg = "cannot build the odoo client; buffering until the configuration is fixed"
				case se != nil:
					msg = "odoo at odoo.url does not work with this configuration (a wrong url path, database or protocol? plantedge validate --odoo says more); buffering until it is fixed"
				case isOE && (oe.Status == http.StatusTooManyRequests || oe.RetryAfter > 0):
					msg = "odoo (or a proxy in front of it) asks the agent to wait: buffering and retrying when it said (Retry-After), or with backoff"
				case isOE && oe.LoginCooldown():
					msg = oe.LockoutNote() + " — retrying slowly"
				case keyNew:
					msg = "odoo refuses the API key the agent used, and where the agent takes its key there is another key now (replaced while odoo was away or refusing): trying that one at once"
				case state == "auth_failed" && f.a.odooWas != "":
					msg = "the Odoo the configuration now names (odoo.url or odoo.database changed since the last run) refuses the API key: is it the key of that Odoo's bot user? — retrying slowly to avoid Odoo's login lockout"
				case state == "auth_failed" && f.keyWorked:
					// Odoo answers all three alike. An archived bot user
					// (a seat clean-up) cannot make a new key: it wants
					// unarchiving. The likeliest first: expiry only where
					// keys expire and one was to by now (keyLikelyExpired).
					if expired, why := f.keyLikelyExpired(f.keyID, time.Now()); expired {
						msg = "odoo now refuses the API key that worked before: most likely expired (Odoo 18+ expires keys of non-admin users) — create a new key — or revoked, or the bot user archived (all its keys are refused then: unarchive it and run plantedge flush, no new key needed)" +
							loginNote(oe, true) + " — retrying slowly to avoid Odoo's login lockout"
					} else {
						msg = "odoo now refuses the API key that worked before, and not for its expiry (" + why + "): the bot user archived (all its keys are refused then: unarchive it and run plantedge flush, no new key needed) or the key revoked or replaced (create a new key, or put the one that replaced it where the agent takes its key)" +
							loginNote(oe, true) + " — retrying slowly to avoid Odoo's login lockout"
					}
				case state == "auth_failed":
					msg = "odoo refused the API key; check the key (wrong? expired? revoked? the bot user archived? a key of another database than odoo.database names: keys belong to one database)" + loginNote(oe, false) + " — retrying slowly to avoid Odoo's login lockout"
				case isOE && oe.MaybePostgresDown():
					// Odoo 19's 404, which its PostgreSQL down gives
					// too, and Odoo did not say which (its /web/health
					// not answering: a build before it, a proxy).
					msg = "odoo has no database by the name odoo.database gives, or its PostgreSQL is not reachable (Odoo 19 answers a wrong name, one the server's dbfilter excludes and its database server down alike: the error says what Odoo answered); if the name is wrong, fix odoo.database, then restart the agent (a reload does not change odoo settings); once PostgreSQL is back the agent books by itself — buffering and retrying with backoff, nothing is lost"
				case isOE && oe.NoDatabase():
					msg = "odoo has no database by the name odoo.database gives (a wrong name, or one the server's dbfilter excludes: the error says what Odoo answered); fix odoo.database, then restart the agent (a reload does not change odoo settings) — buffering and retrying with backoff, nothing is lost"
				case isOE && oe.Permanent():
					msg = "odoo refuses a call the agent needs (access rights? `plantedge validate --odoo` checks them); buffering and retrying with backoff"
				case isOE && oe.Busy():
					msg = "odoo is up but could not do the call now (a lock or a concurrent update in its database, which its own retries did not get past); buffering and retrying with backoff"
				case isOE && oe.PostgresDown():
					msg = "odoo is up but its PostgreSQL is not reachable (Odoo's health check says so; nothing to change in plantedge's configuration); buffering and retrying with backoff — the agent books by itself once it is back"
				case isOE && oe.Unavailable():
					msg = "odoo is up but its database is not (PostgreSQL restarting, failing over, out of connections or space, or the database named in odoo.database missing?); buffering and retrying with backoff"
				}
				// Not before a write Odoo did not answer could still commit
				// (the settle hold below; the technician probe: 441ms said,
				// 2 minutes waited).
				next := max(wait, settleWait)
				attrs := []any{"err", err, "next_attempt_in", next.Round(time.Millisecond)}
				if state == "auth_failed" && se == nil {
					if _, source, err := f.a.cfg.Load().OdooAPIKeySource(); err == nil {
						attrs = append(attrs, "key_from", source) // where to put a new one
					}
				}
				// What the agent rides through by design — the link down, Odoo
				// busy or asking to wait — is a warning: nothing for a person
				// to do unless it lasts, and the reminders below are errors
				// (an alert on `journalctl -p err` fires on an outage of a
				// quarter of an hour, not on every blip of the WAN). What
				// needs a person at once — a refused key, a configuration
				// Odoo does not take, a refused call — is an error now.
				level := slog.LevelError
				if se == nil && (state != "auth_failed" && !lasting || keyNew) {
					level = slog.LevelWarn // a new key: nothing to do yet
				}
				log.Log(ctx, level, msg, attrs...)
				f.link.Since = time.Now()
				f.remindedAt = time.Now()
			} else if f.flushTry && state == "auth_failed" {
				// The technician's flush made an attempt: its outcome is said
				// (the log was silent, status alone counted a failure more).
				f.remindedAt = time.Now()
				log.Error("a flush tried the API key again: odoo still refuses it", "err", err,
					"next_attempt_in", max(wait, settleWait).Round(time.Millisecond), "failures", prev.Failures+1)
			} else if time.Since(f.remindedAt) >= cmp.Or(f.a.opts.OutageReminder, outageReminder) {
				// Hours into an outage a technician reading the journal
				// finds a line with what is waiting, not only its start.
				f.remindedAt = time.Now()
				bs := f.a.buf.Stats()
				var oldestAge time.Duration
				if !bs.Oldest.IsZero() {
					oldestAge = time.Since(bs.Oldest).Round(time.Second)
				}
				log.Error("odoo still not taking the buffer; buffering and retrying", "state", state,
					"since", time.Since(f.link.Since).Round(time.Second), "pending", bs.Pending,
					"oldest_age", oldestAge, "err", err)
			}
			f.link.State = state
			f.link.Failures++
			f.link.LastError = err.Error()
			// An accept-qty waiting for a round is told now that Odoo
			// was not reached, not after its 30 s (the technician probe).
			f.failAcceptsLocked(err)
			// A key refused by a newly named Odoo worked with the old one:
			// not expired, most likely the other Odoo's key is needed (the
			// fourth self-probe: status said expired, the log did not).
			refused := state == "auth_failed" && !errors.As(err, &se) && !(isOE && oe.LoginCooldown())
			// Worked before and refused now: most likely expired only on
			// Odoo 18+, and when one of the bot user's keys was to expire
			// by now; else it was revoked, the bot user archived or its
			// login renamed (the messages name those).
			expired, why := f.keyLikelyExpired(f.keyID, time.Now())
			f.link.KeyExpired = refused && f.keyWorked && f.a.odooWas == "" && expired
			switch {
			case f.link.KeyExpired:
				f.link.LastError = "API key most likely expired, or revoked, or the bot user archived" + loginNote(oe, true) + " (it worked before): " + f.link.LastError
			case refused && f.keyWorked && f.a.odooWas == "":
				f.link.LastError = "the bot user archived, or the API key revoked or replaced" + loginNote(oe, true) + " (it worked before; not expired: " + why + "): " + f.link.LastError
			case refused && f.a.odooWas != "":
				f.link.LastError = "the Odoo the configuration now names refuses the API key (is it the key of that Odoo's bot user?): " + f.link.LastError
			}
		}
		if left := time.Until(f.settleUntil); left > 0 {
			// A request Odoo did not answer may still commit (see
			// settleUntil): no flush cuts this wait short; spread over the
			// fleet after it.
			if wait < left {
				log.Warn("a write got no answer from odoo (none in time, or the connection was reset or closed after it was sent) and odoo may still commit it until its request limit: no write is sent before then, so that it cannot overtake a newer one or be repeated",
					"until", f.settleUntil.Format("2006-01-02T15:04:05.000Z07:00"), "request_limit", f.a.cfg.Load().Odoo.RequestLimit.D())
			}
			wait, floor = max(wait, settleWait), max(floor, left)
			f.link.Settle = f.settleUntil
		}
		if err == nil {
			f.loggedLocal = false
		}
		f.link.NextAttempt = time.Now().Add(wait)
		f.flushTry = false
		state := f.link.State
		f.mu.Unlock()
		f.linkGauges(state == "online", state == "auth_failed")
		if wait > 0 && !f.sleep(ctx, wait, floor) {
			return
		}
	}
}

// outageReminder is how often, while Odoo keeps failing, the log says so
// again with what is waiting.
const outageReminder = 15 * time.Minute

// waitRate waits for the rate limit's next request slot (forward.rate),
// feeding the watchdog meanwhile: at a low rate one login (two or three
// requests) may wait minutes, and that is not a hung loop.
func (f *forwarder) waitRate(ctx context.Context) error {
	f.a.beat()
	f.rateTaken.Add(1)
	r := f.limiter.Reserve()
	if !r.OK() {
		return errors.New("forward.rate allows no request")
	}
	if d := r.Delay(); d > 0 {
		start := time.Now()
		defer func() { f.rateWaited.Add(int64(time.Since(start))) }()
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
	if f.writing {
		// Each request of a write is covered by the stored mark as it is
		// sent, not only the operation's first: a later one may go long
		// after it (and after a wait for the rate).
		f.markSettle(ctx, time.Now())
	}
	return nil
}

// noteCallTime adds the time an answered request took to the link's
// average (or restarts it from a stale one), and
// logs when Odoo turns slow and fast again (under f.mu). Slow answers
// were invisible: a backlog fell minutes behind while status said online
// and the log said nothing (the Odoo probe, 6 s per call).
func (f *forwarder) noteCallTime(took time.Duration, stale bool) {
	l := &f.link
	if l.CallSeconds == 0 || stale {
		// The first answer, or the first after a quiet spell (idle, the
		// agent asks once a minute): what came before says little of now,
		// and status must not say slow for minutes after Odoo is fast
		// again (the self-probe).
		l.CallSeconds = took.Seconds()
	} else {
		l.CallSeconds += 0.2 * (took.Seconds() - l.CallSeconds)
	}
	switch avg := time.Duration(l.CallSeconds * float64(time.Second)); {
	case !l.Slow && avg >= slowCall:
		l.Slow = true
		f.a.log.Warn("odoo answers slowly: a backlog drains that much slower (odoo busy, or a slow link to it)",
			"average_call", avg.Round(10*time.Millisecond))
	case l.Slow && avg < fastCall:
		l.Slow = false
		f.a.log.Info("odoo answers quickly again", "average_call", avg.Round(10*time.Millisecond))
	}
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
			f.flushTry = f.flushTry || f.authFails > 0
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
		case <-f.reloadCh:
			f.applyForward()
			// A wait longer than the new cap is drawn again under it (a
			// Retry-After's floor still holds).
			if m, gone := f.boMax.D(), time.Since(start); m > 0 && d-gone > m {
				d = max(floor, gone+rand.N(m+1))
				t.Reset(d - gone)
				f.mu.Lock()
				f.link.NextAttempt = start.Add(d)
				f.mu.Unlock()
			}
		case <-tick.C:
			f.a.beat()
		case <-ctx.Done():
			return false
		case <-f.stopCh:
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

// callFor is call for an operation that reads one value: fn's, or the
// zero value where call did not run fn (the forwarder stopping).
func callFor[T any](ctx context.Context, f *forwarder, op string, fn func(context.Context) (T, error)) (T, error) {
	var v T
	err := f.call(ctx, op, func(ctx context.Context) error {
		var err error
		v, err = fn(ctx)
		return err
	})
	return v, err
}

// call runs one Odoo operation under the rate limit and records it.
func (f *forwarder) call(ctx context.Context, op string, fn func(context.Context) error) error {
	// The rate limit (forward.rate) is taken by the client before each HTTP
	// request: one operation may be several requests (a scrap booking is
	// three or four).
	f.a.beat()
	write := writeOps[op]
	f.mu.Lock()
	if f.stopping {
		f.mu.Unlock()
		return errStopping
	}
	callCtx, cut := context.WithCancel(ctx)
	defer cut()
	if !write {
		f.cutCall = cut
		defer func() {
			f.mu.Lock()
			f.cutCall = nil
			f.mu.Unlock()
		}()
	}
	f.mu.Unlock()
	start, waited, taken := time.Now(), f.rateWaited.Load(), f.rateTaken.Load()
	f.calls.Add(1)
	if write {
		f.writing = true // waitRate marks the settle time before each request of it
		defer func() { f.writing = false }()
	}
	err := fn(callCtx)
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
	// A write the agent's stop cut off once sent is in doubt as much as one
	// Odoo did not answer in time: saveSettle keeps it for the next start.
	// (A read running late changes nothing.)
	var oe *odoo.Error
	cutOff := err != nil && callCtx.Err() != nil && errors.As(err, &oe) && oe.TimedOut()
	inDoubt := write && (odoo.InDoubt(err) || cutOff)
	// From now, not from the operation's start: an operation is several
	// requests (a scrap booking three or four), and the one left in doubt
	// may have been sent long after the first (the self-probe: a scrap
	// validated twice).
	if until := time.Now().Add(f.a.cfg.Load().Odoo.RequestLimit.D()); inDoubt && until.After(f.settleUntil) {
		f.settleUntil = until
	}
	// How long Odoo took, without the waits for forward.rate between the
	// operation's requests (the soak probe: every quantity write 0.16-0.32 s
	// by the histogram, where Odoo answered in 2.5 ms).
	took := time.Since(start) - time.Duration(f.rateWaited.Load()-waited)
	f.a.metrics.odooCalls.WithLabelValues(op, outcome).Inc()
	f.a.metrics.odooLatency.WithLabelValues(op).Observe(took.Seconds())
	f.a.beat()
	if outcome != "transient" { // Odoo answered (a refusal too)
		f.mu.Lock()
		if n := f.rateTaken.Load() - taken; n > 0 { // (an answer from the client's cache sent nothing)
			f.noteCallTime(took/time.Duration(n), time.Since(f.link.Answered) > time.Minute)
			// Odoo's answer, not the cache's: an idle plant's rounds
			// ask Odoo nothing, and status said "last answer 1s ago"
			// for the minute Odoo was gone before the quiet spell's
			// check found it (ux45).
			f.link.Answered = time.Now()
		}
		// Status during a long round (a backlog draining after an outage)
		// must not keep saying offline with the old error; the round's end
		// logs the recovery (run keeps the state the round began with).
		// /metrics says the same, and the outage's failures are over (the
		// drain probe: odoo_up 0 and 28 failures for the 90 s of a first
		// round while status said online).
		online := false
		if err == nil && f.link.State != "online" {
			// A call answered: the key in use is not refused (status said
			// online with key_expired true until the round's end, the
			// flake audit).
			f.link.State, f.link.LastError, f.link.NextAttempt, f.link.Failures, f.link.KeyExpired = "online", "", time.Time{}, 0, false
			if f.client != nil { // connected: online says with what
				f.link.connected(f.client)
			}
			online = true
		}
		f.mu.Unlock()
		if online {
			f.linkGauges(true, false)
		}
	}
	return err
}

// linkGauges sets the metrics of the Odoo link: plantedge_odoo_up and
// plantedge_odoo_auth_failed.
func (f *forwarder) linkGauges(up, authFailed bool) {
	f.a.metrics.odooUp.Set(boolGauge(up))
	f.a.metrics.authFailed.Set(boolGauge(authFailed))
}

// writeOps are the operations (f.call's op) that change Odoo: one that may
// still commit after the agent gave up on it holds back what comes next
// (settleUntil).
var writeOps = map[string]bool{"set_produced_qty": true, "upsert_downtimes": true, "upsert_downtime": true, "book_scrap": true, "validate_scrap": true, "zero_scrap": true}

// keyWorkedKey is the buffer meta key of the keyID Odoo last accepted (a
// short hash of the API key, not the key).
const keyWorkedKey = "odoo/key_worked"

// settleKey is the buffer meta key holding the forwarder's settleUntil for
// the next start: Odoo runs a request to its end even when the agent that
// sent it stopped or crashed, so a new start sends nothing before the
// requests of the last one can no longer commit.
const settleKey = "odoo/settle_until"

// markEvery: before each request of a write, settleKey is moved ahead to
// cover the requests of the next markEvery (at most one buffer write that
// often): a crash then leaves a time no request before it can commit after. A quarter of the
// request limit, at most 10 s: a start after a crash waits at most that
// much longer than needed.
func (f *forwarder) markEvery() time.Duration {
	return min(10*time.Second, f.a.cfg.Load().Odoo.RequestLimit.D()/4)
}

// markSettle moves settleKey past what a request sent at start can
// commit, once per markEvery.
func (f *forwarder) markSettle(ctx context.Context, start time.Time) {
	kv, until := f.settleMark(start)
	if kv.Key == "" {
		return
	}
	if err := f.a.buf.PutMeta(ctx, kv); err != nil {
		// Not marked: a crash in the next moments would not wait for
		// this call; the call is not worth holding up for that.
		f.a.log.Debug("settle mark not stored", "err", err)
		return
	}
	f.markedUntil = until
}

// settleMark is markSettle's entry for requests sent from start on (no
// Key when the stored one covers them), and the time it holds: a commit
// made anyway before them may carry it (the round's in-flight marks).
func (f *forwarder) settleMark(start time.Time) (buffer.KV, time.Time) {
	if start.Add(f.a.cfg.Load().Odoo.RequestLimit.D()).Before(f.markedUntil) {
		return buffer.KV{}, f.markedUntil
	}
	until := start.Add(f.markEvery() + f.a.cfg.Load().Odoo.RequestLimit.D())
	return buffer.KV{Key: settleKey, Value: []byte(until.UTC().Format(time.RFC3339Nano))}, until
}

// unmarkSettle forgets the stored settleKey once a round has ended with
// every write answered (none in doubt, see call) and no backlog left: no
// request sent so far can commit later, so a crash from here until the
// next write does not make the next start wait (the soak probe: every
// crash cost two minutes). A backlog's rounds keep it (one commit fewer
// per round); so does a write in doubt (settleUntil).
func (f *forwarder) unmarkSettle(ctx context.Context) {
	if !f.settleForgettable(time.Now()) {
		return
	}
	if err := f.a.buf.PutMeta(ctx, buffer.KV{Key: settleKey}); err != nil {
		return // kept: the next start waits, as before
	}
	f.markedUntil = time.Time{}
}

// settleForgettable: a settle mark is stored and no write is in doubt
// (settleUntil passed), so the mark may go (unmarkSettle's rule).
func (f *forwarder) settleForgettable(now time.Time) bool {
	return f.markedUntil.After(now) && !now.Before(f.settleUntil)
}

// loadSettle takes the settleUntil the last run left (settleKey).
func (f *forwarder) loadSettle(log *slog.Logger) {
	b, err := f.a.buf.Meta(settleKey)
	if err != nil || b == nil {
		return
	}
	until, err := time.Parse(time.RFC3339Nano, string(b))
	if err != nil || !time.Now().Before(until) {
		return
	}
	// Never longer than the request limit now (it may have been lowered).
	if most := time.Now().Add(f.markEvery() + f.a.cfg.Load().Odoo.RequestLimit.D()); until.After(most) {
		until = most
	}
	f.settleUntil, f.markedUntil = until, until
	log.Warn("requests sent to Odoo before the agent stopped may still commit: nothing is sent before then, so that none is repeated or overtaken",
		"until", until.Format("2006-01-02T15:04:05.000Z07:00"), "request_limit", f.a.cfg.Load().Odoo.RequestLimit.D())
}

// saveSettle stores, as the forwarder stops, when the requests it sent can
// no longer commit (or forgets the key when that has passed).
func (f *forwarder) saveSettle(log *slog.Logger) {
	kv := buffer.KV{Key: settleKey}
	if time.Now().Before(f.settleUntil) {
		kv.Value = []byte(f.settleUntil.UTC().Format(time.RFC3339Nano))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := f.a.buf.PutMeta(ctx, kv); err != nil {
		log.Warn("could not store when the requests sent to Odoo settle; the next start does not wait for them", "err", err)
	}
}

// round forwards what is pending: downtime lines first, then counts,
// coalesced per work order. It reports whether records were left for
// another round.
func (f *forwarder) round(ctx context.Context) (more bool, err error) {
	defer f.a.deadLog.tell(f.a.log, slog.LevelWarn, deadLogMore, false)
	f.mu.Lock() // with Flush's: a request is either this round's or counted before it
	select {
	case <-f.kick: // asked for while the last round went on (a backlog: no wait between)
		f.flushed = true
	default:
	}
	f.rounds++
	f.mu.Unlock()
	prevSeq := f.beginRound()
	f.digitsFresh = false
	f.unitRoundings = nil
	observed := false // the work orders in progress read (dropBacklogMarks)
	defer func() {
		f.mu.Lock()
		f.roundsDone++
		f.drain.end(time.Now(), f.left.Load(), err, more)
		f.mu.Unlock()
		f.prevOK = err == nil
		if err != nil && !observed {
			// No round saw the orders meanwhile (Odoo away): another may
			// have been started and ended since a backlogMark was found,
			// which would take what was made on it (madeEarlier).
			f.backlogClear = nil
		}
	}()
	// Before anything is read (and also while Odoo is away): what renamed
	// machines buffered under their old id becomes the new id's.
	if err := f.takeOverRenamed(ctx, f.a.cfg.Load()); err != nil {
		return false, err
	}
	if f.restored != nil {
		return false, f.restored
	}
	if f.client == nil {
		// (Re)built after start-up and after every refused key, so a key
		// written to api_key_file (or the environment) is picked up by the
		// next attempt — `plantedge flush` makes that attempt now.
		c, err := f.a.newOdooClient()
		if err != nil {
			_, kerr := f.a.cfg.Load().OdooAPIKey()
			return false, &setupError{err: err, key: kerr != nil}
		}
		if id := c.KeyID(); id != f.keyID {
			f.keyID, f.keyWorked = id, id == f.workedKey
			f.keyWarned = time.Time{}
			f.mu.Lock()
			f.link.KeyExpires = nil // another key's: read again once it works
			f.mu.Unlock()
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
		// The start, or Odoo back after it was away: restored from a
		// backup? (Not after a quiet spell; the link as it was before this
		// call, which shows it online.)
		f.bookedCheckDue = f.bookedCheckDue || f.linkSnapshot().State != "online"
		if err := f.call(ctx, "connect", f.client.Connect); err != nil {
			if odoo.IsPermanent(err) && !odoo.IsAuth(err) {
				// Not Odoo being away: this configuration cannot work with
				// this server (e.g. no username for a JSON-RPC-only Odoo).
				return false, &setupError{err: err}
			}
			return false, err
		}
		f.connected = true
	}
	if f.a.odooWas == unrecordedOdoo {
		if err := f.recordOdoo(ctx); err != nil {
			return false, err
		}
	}
	if f.a.odooWas != "" {
		if err := f.switchOdoo(ctx); err != nil {
			return false, err
		}
	}
	// When the bot user's keys expire, once a run while the key works: a
	// later refusal is then told from an archived user's (key_expired).
	if err := f.readKeyDates(ctx); err != nil {
		return false, err
	}
	f.warnKeyExpiry(time.Now())
	if !f.restoreChecked {
		if err := f.checkRestored(ctx); err != nil {
			return false, err
		}
	}
	if !f.orphansChecked && f.restored == nil {
		if err := f.closeOrphanLines(ctx); err != nil {
			return false, err
		}
	}
	if err := f.serveRebook(ctx); err != nil {
		return false, err
	}
	if err := f.pruneBooked(ctx); err != nil {
		return false, err
	}
	if f.bookedCheckDue || time.Since(f.bookedChecked) >= bookedCheckEvery {
		if err := f.checkBooked(ctx); err != nil {
			return false, err
		}
		f.bookedCheckDue, f.bookedChecked = false, time.Now()
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
	roundMax := f.roundEvents() // at the load size in force (loadsize.go)
	events, err := f.readEvents(ctx, cfg, roundMax)
	if err != nil {
		return false, err
	}
	f.roundProgress(func(p *roundProgress) { p.events, p.read, p.perRound = len(events), true, roundMax })
	pending, err := f.aggregateCounts(ctx, cfg)
	if err != nil {
		return false, err
	}
	f.roundProgress(func(p *roundProgress) {
		for _, k := range pending {
			p.counts += k.n
		}
	})
	need := map[string]bool{}
	for _, e := range events {
		need[e.rec.Key] = true
	}
	for k := range pending {
		m, _ := splitKey(k)
		need[m] = true
	}
	for m := range f.rewrite { // asked by a rebook
		need[m] = true
	}
	f.roundAccepts = f.takeAccepts()
	for m := range f.roundAccepts {
		need[m] = true
	}
	unknownWC := map[string]bool{} // the round's accept requests for machines Odoo lacks the work center of
	defer func() { f.answerAccepts(unknownWC, errAcceptNotReached) }()
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
	woRefused := ""
	f.woRefused = false
	byWC, err := callFor(ctx, f, "workorders_in_progress", func(ctx context.Context) (map[int64][]odoo.Workorder, error) {
		return f.client.WorkordersInProgressOn(ctx, wcList)
	})
	if err != nil {
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
		var others []string
		for _, wo := range list[min(1, len(list)):] {
			others = append(others, wo.Name)
		}
		if len(others) > 0 {
			// Once a minute per machine, not every round; status shows them.
			f.a.eventLog.log("several "+id, f.a.log, slog.LevelWarn, "several work orders in progress on one work center; attributing to the one work last began on (its operator's timer, else its start)",
				"machine", id, "workorder", list[0].Name, "others", strings.Join(others, ", "))
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
			ml.WorkOrder, ml.WorkorderID, ml.Production, ml.ProductionID, ml.Others, ml.SerialProducing = "", 0, "", 0, others, false
			if wo := wos[id]; wo != nil {
				ml.WorkOrder, ml.WorkorderID, ml.Production, ml.ProductionID = wo.Name, wo.ID, wo.ProductionName, wo.ProductionID
				ml.SerialProducing = wo.SerialProducing(f.client.Major())
			}
		})
	}
	f.dropBacklogMarks(look, wos)
	observed = true
	f.warnProducing(cfg)
	f.decideDrain(prevSeq, events, pending, wos)

	if err := f.soloSince(ctx, events, pending, wos, byWC); err != nil {
		return false, err
	}
	if err := f.forwardEvents(ctx, cfg, events, wos); err != nil {
		return false, err
	}
	acks := newAckPlan()
	giveUp := func(err error) (bool, error) {
		// Acknowledge what Odoo already confirmed before giving up the round.
		if aerr := f.ackPlanned(ctx, &acks); aerr != nil {
			return false, aerr
		}
		return false, err
	}
	var writes []*countWrite
	for _, id := range ids {
		if _, ok := wcIDs[id]; !ok {
			continue
		}
		w, err := f.planCounts(ctx, id, wos[id], pending, &acks)
		if err != nil {
			_ = f.unplan(writes) // their marks are not stored
			return giveUp(err)
		}
		if w != nil {
			writes = append(writes, w)
		}
	}
	for id := range f.roundAccepts {
		if _, ok := wcIDs[id]; !ok {
			unknownWC[id] = true // (answered as the round ends)
		} else {
			// Not served: its in-flight write settled this round (the
			// order changed). The next round serves it.
			f.requeueAccept(id)
		}
	}
	if len(writes) > 0 {
		// The round's in-flight marks, and the settle mark their requests
		// need, in one commit before the first write (see countWrite).
		marks := make([]buffer.KV, 0, len(writes)+1)
		for _, w := range writes {
			marks = append(marks, w.mark())
		}
		settle, until := f.settleMark(time.Now())
		if settle.Key != "" {
			marks = append(marks, settle)
		}
		if err := f.a.buf.PutMeta(ctx, marks...); err != nil {
			_ = f.unplan(writes) // their marks are not stored
			return giveUp(err)
		}
		if until.After(f.markedUntil) {
			f.markedUntil = until
		}
	}
	f.roundProgress(func(p *roundProgress) { p.phase, p.writes, p.countsAt = phaseCounts, len(writes), time.Now() })
	for i, w := range writes {
		if err := f.sendCounts(ctx, w, &acks); err != nil {
			// The writes after it were not sent: their marks go back.
			acks.extra = append(acks.extra, f.unplan(writes[i+1:])...)
			return giveUp(err)
		}
		f.roundProgress(func(p *roundProgress) { p.writesSent++ })
	}
	f.roundProgress(func(p *roundProgress) { p.phase = phaseAcking })
	// Every write answered, none in doubt, no backlog: the settle mark is
	// forgotten with the acknowledgement (unmarkSettle's rule), not in a
	// commit of its own each round (the wear probe).
	unmark := len(events) < roundMax && f.settleForgettable(time.Now())
	if unmark {
		acks.extra = append(acks.extra, buffer.KV{Key: settleKey})
	}
	if err := f.ackPlanned(ctx, &acks); err != nil {
		return false, err
	}
	if unmark {
		f.markedUntil = time.Time{}
	}
	if err := f.checkScrapDrafts(ctx); err != nil {
		return false, err
	}
	f.field = field
	more = len(events) == roundMax
	return more, nil
}

// workcenterRefresh is how often the work-center codes are looked up
// again (Options.WorkcenterRefresh).
const workcenterRefresh = 5 * time.Minute

// WorkordersRefusedPrefix starts a machine's error (MachineStatus.Error)
// while Odoo refuses to show the
// work orders in progress.
const WorkordersRefusedPrefix = "Odoo refuses to show the work orders in progress"

// missingCode is a work-center code Odoo did not know when last asked.
type missingCode struct {
	at        time.Time
	ambiguous bool // Odoo knew it twice
	archived  bool // only an archived work center has it
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
	// A code not found may be an archived work center's, which Odoo's
	// searches leave out: said so, not "no such code" (one more call, only
	// for codes not found; its failure leaves them unexplained).
	var notFound, archived []string
	for _, c := range ask {
		if _, ok := found[c]; !ok && !slices.Contains(ambiguous, c) {
			notFound = append(notFound, c)
		}
	}
	if len(notFound) > 0 {
		var err error
		archived, err = callFor(ctx, f, "archived_workcenters", func(ctx context.Context) ([]string, error) {
			return f.client.ArchivedWorkcenterCodes(ctx, notFound)
		})
		if err != nil && (odoo.IsAuth(err) || !odoo.IsPermanent(err)) {
			return err
		}
	}
	now := time.Now()
	for _, c := range ask {
		if wc, ok := found[c]; ok {
			f.wcs[c] = wc
			delete(f.missing, c)
		} else {
			f.missing[c] = missingCode{at: now, ambiguous: slices.Contains(ambiguous, c), archived: slices.Contains(archived, c)}
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
		// Reads see every company the bot user is allowed (the calls name
		// none), so the company to check is among those, not the default.
		msg := fmt.Sprintf("work center %q not found in Odoo (no such code, or of a company not among the bot user's allowed companies); records held", mc.Workcenter)
		switch m := f.missing[mc.Workcenter]; {
		case m.ambiguous:
			msg = fmt.Sprintf("work center code %q matches several work centers in Odoo; records held", mc.Workcenter)
		case m.archived:
			msg = fmt.Sprintf("work center %q is archived in Odoo: unarchive it (Manufacturing > Configuration > Work Centers, filter Archived), or give the machine another work center; records held", mc.Workcenter)
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
	// extra goes with the last commit (the settle mark forgotten).
	extra []buffer.KV
}

func newAckPlan() ackPlan {
	return ackPlan{upTo: map[string]uint64{}, wo: map[string]*woState{}, carries: map[string]float64{}}
}

func (p *ackPlan) add(key string, upTo uint64) {
	p.upTo[key] = upTo
	p.max = max(p.max, upTo)
}

// ackChunk bounds the records an acknowledgement holds in memory before it
// commits them (a backlog's).
const ackChunk = 4096

// ackPlanned acknowledges the planned records in one pass over the lane.
// Each chunk's transaction also adds the chunk's good counts to the work
// orders' Counted, so acknowledged records and totals never disagree.
//
// The records go in one commit with the work orders' states (a chunk of
// ackChunk at a time for a large backlog, the states then written with
// their in-flight marks until the last): one commit a round, not two (the
// wear probe).
func (f *forwarder) ackPlanned(ctx context.Context, p *ackPlan) error {
	var acked []buffer.Record
	var carried []buffer.KV
	touched := map[string]bool{}
	if len(p.upTo) > 0 {
		err := f.scanCounts(true, p.max, func(recs []buffer.Record) error {
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
						// Not rounded: the quantity written is (RoundQty of the
						// total), so fractional counters (0.125 kg) do not
						// drift by a rounding per round; added as decimals,
						// so that they do not drift by float64's either
						// (45,519 steps of 0.015 added up to 682.7849999995).
						st.Counted = decimal.Add(st.Counted, c.Delta)
						touched[machine] = true
					}
				}
			}
			if len(acked) < ackChunk {
				return nil
			}
			meta := carried
			for m := range touched {
				meta = append(meta, woStateKV(m, *p.wo[m]))
			}
			if err := f.a.buf.Ack(ctx, acked, meta...); err != nil {
				return fmt.Errorf("ack counts: %w", err)
			}
			f.left.Add(uint64(len(acked)))
			acked, carried, touched = nil, nil, map[string]bool{}
			return nil
		})
		if err != nil {
			return err
		}
	}
	// With the last records: the work orders' states, settled (also those
	// changed without records: a repair write), and the scrap bookings'.
	meta := append(carried, p.extra...)
	for m, st := range p.wo {
		st.InFlight = nil // its records are acknowledged: settled
		meta = append(meta, woStateKV(m, *st))
	}
	for _, c := range p.clears {
		meta = append(meta, buffer.KV{Key: scrapMetaKey(c.machine)}, carryKV(c.machine, c.carry))
		if c.booked != nil {
			meta = append(meta, f.keepBooked(time.Now(), bookedEntry{Machine: c.machine, Scrap: c.booked, Workorder: c.bookedOn}))
		}
		if c.draft != nil {
			meta = append(meta, buffer.KV{Key: scrapDraftKey(c.machine, c.draft.XMLID), Value: mustJSON(*c.draft)})
			f.draftsAt = time.Time{} // shown at once
		}
	}
	switch {
	case len(acked) > 0:
		if err := f.a.buf.Ack(ctx, acked, meta...); err != nil {
			return fmt.Errorf("ack counts: %w", err)
		}
		f.left.Add(uint64(len(acked)))
	case len(meta) > 0:
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

func (f *forwarder) orphansWaitingNow() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.orphansWaiting
}

// deadLetterKey moves the records of one count key up to seq upTo to the
// dead letters with reason: folded (counts are additive) into one dead
// letter per chunk of the scan, so that one refused write is one dead
// letter to retry or drop — not one per record it covered (the Odoo probe:
// 3 refused writes, 1,798 dead letters and as many log lines).
func (f *forwarder) deadLetterKey(ctx context.Context, key string, upTo uint64, reason string) error {
	return f.deadLetterKeyAs(ctx, key, upTo, reason, refusedForGood)
}

// deadLetterKeyAs is deadLetterKey, logged with msg (the agent's own
// decision is no refusal of Odoo's).
func (f *forwarder) deadLetterKeyAs(ctx context.Context, key string, upTo uint64, reason, msg string) error {
	return f.scanCounts(true, upTo, func(recs []buffer.Record) error {
		var mine []buffer.Record
		for _, r := range recs {
			if r.Key == key {
				mine = append(mine, r)
			}
		}
		if len(mine) == 0 {
			return nil
		}
		as := mine[0]
		for _, r := range mine[1:] {
			m, err := mergeCountRecords(as, r)
			if err != nil {
				as = buffer.Record{} // one does not decode: each goes as it is
				break
			}
			as = m
		}
		if len(mine) == 1 || as.Data == nil {
			for _, r := range mine {
				if err := f.moveToDeadLetters(ctx, r, msg, reason); err != nil {
					return err
				}
			}
			return nil
		}
		if err := f.a.buf.DeadLetterAs(ctx, mine, as, reason); err != nil {
			return fmt.Errorf("dead-letter records %d to %d: %w", mine[0].Seq, mine[len(mine)-1].Seq, err)
		}
		f.left.Add(uint64(len(mine)))
		f.a.metrics.deadLettered.Inc()
		f.a.forgetPendingCounts() // status: the pieces in the dead letters now, with the count of them
		f.a.deadLog.log(deadLogKey(key, reason), f.a.log, slog.LevelWarn, msg, "key", key,
			"records", len(mine), "first_seq", mine[0].Seq, "last_seq", mine[len(mine)-1].Seq, "reason", reason)
		return nil
	})
}

// localFailure reports a round that failed in the buffer, not at Odoo:
// the disk full (or the quota, for what a round writes), a failing device,
// a read-only file system.
func localFailure(err error) bool {
	var oe *odoo.Error
	if errors.As(err, &oe) {
		return false
	}
	return errors.Is(err, buffer.ErrFull) || errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EIO) || errors.Is(err, syscall.EROFS)
}

// outageLike reports a failure that comes and goes by itself — the link or
// Odoo away (refused, reset or unanswered connections, a gateway's 502 to
// 504, a name server not answering), Odoo busy or asking to wait — as
// opposed to one that lasts until a person acts: a certificate that does
// not verify, https to a plain-http server, a wrong path (404), a proxy's
// login (401), a host name that does not exist (the self-probe: those
// were logged at WARN as if the WAN were down).
func outageLike(err error) bool {
	var oe *odoo.Error
	if errors.As(err, &oe) {
		switch {
		case oe.NoDatabase():
			return false // a name to fix: it does not come back by itself
		case oe.Busy(), oe.Timeout(), oe.RetryAfter > 0:
			return true
		case oe.Unavailable():
			// PostgreSQL away comes back by itself; a database that does
			// not exist (odoo.database misspelt, or renamed) waits for a
			// person.
			return !strings.Contains(oe.Message, "does not exist")
		case oe.Status != 0:
			// 500: Odoo's workers restarting in a deploy, as often as a bug.
			return oe.Status == http.StatusTooManyRequests || oe.Status >= 500
		}
	}
	var dns *net.DNSError
	if errors.As(err, &dns) {
		return !dns.IsNotFound
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return true
	}
	// net.ErrClosed: the HTTP transport's read side closed the connection
	// (Odoo gone: a reset) while its write side still sent the request
	// ("write tcp …: use of closed network connection").
	for _, e := range []error{syscall.ECONNREFUSED, syscall.ECONNRESET, syscall.ECONNABORTED, syscall.EHOSTUNREACH,
		syscall.ENETUNREACH, syscall.ENETDOWN, syscall.ETIMEDOUT, syscall.EPIPE, io.EOF, io.ErrUnexpectedEOF, net.ErrClosed} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// refusedForGood is the log line of a record Odoo refused for good.
const refusedForGood = "odoo refused a record for good; moved to dead letters"

// deadLetter moves r to the dead letters with reason, what Odoo refused
// for good about it.
func (f *forwarder) deadLetter(ctx context.Context, r buffer.Record, reason string) error {
	return f.moveToDeadLetters(ctx, r, refusedForGood, reason)
}

// moveToDeadLetters moves r to the dead letters with reason, counts it and
// logs msg — once a minute per key, with how many it left out: one line
// for each of thousands of refused records would bury the rest of the
// journal, and one line in all would hide a second machine's.
func (f *forwarder) moveToDeadLetters(ctx context.Context, r buffer.Record, msg, reason string) error {
	return f.moveToDeadLettersAs(ctx, r, nil, msg, reason)
}

// moveToDeadLettersAs dead-letters r with data in place of its own (nil:
// as it is), counted and logged.
func (f *forwarder) moveToDeadLettersAs(ctx context.Context, r buffer.Record, data []byte, msg, reason string) error {
	var err error
	if data == nil {
		err = f.a.buf.DeadLetter(ctx, r, reason)
	} else {
		as := r
		as.Data = data
		err = f.a.buf.DeadLetterAs(ctx, []buffer.Record{r}, as, reason)
	}
	if err != nil {
		return fmt.Errorf("dead-letter record %d: %w", r.Seq, err)
	}
	f.left.Add(1)
	f.a.metrics.deadLettered.Inc()
	f.a.forgetPendingCounts()
	f.a.deadLog.log(deadLogKey(r.Key, reason), f.a.log, slog.LevelWarn, msg, "key", r.Key, "seq", r.Seq, "lane", r.Lane.String(), "reason", reason)
	return nil
}

// deadLogKey is what the dead-letter log is limited by: the record's key
// and the kind of its reason (its numbers left out — a quantity, a line's
// id), so that another reason of the same machine is said at once, and
// thousands of the same are one line a minute (f.a.deadLog.tell says how
// many were left out).
func deadLogKey(key, reason string) string {
	return key + "\x00" + logDigits.ReplaceAllString(reason, "#")
}

// deadLogMore is the line of dead letters the log left out.
const deadLogMore = "more records moved to dead letters, like the one logged before for this key (plantedge deadletter list)"

// logDigits are the numbers of a message, left out to tell its kind.
var logDigits = regexp.MustCompile(`[0-9]+`)

func boolGauge(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// loginNote names the login as a cause of a refused login: over JSON-RPC
// (Odoo 17/18) the agent logs in with odoo.username, and Odoo refuses a
// login renamed in Odoo (to an e-mail address, say) as it refuses a wrong
// key. JSON-2 sends the key alone: "" then, as for any other call. Only a
// login that worked before (worked) can have been renamed; one that never
// did may be mistyped.
func loginNote(oe *odoo.Error, worked bool) string {
	if oe == nil || oe.Op != "authenticate" {
		return ""
	}
	if !worked {
		return ", or odoo.username not the bot user's login"
	}
	return ", or odoo.username no longer the bot user's login (renamed in Odoo?)"
}
