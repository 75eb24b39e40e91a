package agent

// What Odoo confirmed is kept for a week after its records are
// acknowledged: each downtime line and scrap booking as it was last sent,
// under its external id. Should Odoo's database be restored from a backup
// (an upgrade rolled back, a server lost), what was booked since the backup
// is gone from Odoo while the buffer has forgotten it; `plantedge rebook
// --since TIME` books again what Odoo lacks of it — and only that: a line
// Odoo has (a person may have corrected its loss reason) is left as it is.
// Quantities need none of this: they are written as absolute values, so
// the next write puts a work order's count back; the rebook asks for that
// write at once (forwarder.rewrite).

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/plantedge/plantedge/buffer"
	"github.com/plantedge/plantedge/odoo"
)

const (
	// bookedPrefix starts the meta keys of what Odoo confirmed:
	// "booked/<ms, 13 digits>/<xmlid>", in the order it was confirmed.
	bookedPrefix = "booked/"
	// bookedKeep is how long a booking is kept.
	bookedKeep = 7 * 24 * time.Hour
	// bookedPruneEvery is how often the forwarder forgets the old ones.
	bookedPruneEvery = 10 * time.Minute
)

// bookedMax bounds how many bookings are kept (the oldest go first): about
// 300 bytes each in the file. Looking for a restore reads their keys every
// 10 minutes (measured: 9.0 MB allocated for 20,000; 42 MB for 100,000),
// and a rebook decodes those since its time (21 MB for 20,000; 99 MB for
// 100,000): 20,000 keeps the agent well inside its memory budget. (A
// variable for tests.)
var bookedMax = 20_000

// bookedEntry is one booking Odoo confirmed: a downtime line or a scrap.
type bookedEntry struct {
	Machine string         `json:"machine"`
	Line    *odoo.Downtime `json:"line,omitempty"`
	Scrap   *odoo.Scrap    `json:"scrap,omitempty"`
	// Workorder names a scrap's work order ("<manufacturing order>
	// <operation>"): after a restore its id may be another's.
	Workorder string `json:"wo,omitempty"`
	// Sum is the CRC-32C of the rest as stored (bookedKV): a flipped bit
	// that leaves the JSON readable would book a wrong quantity again (the
	// second bitrot probe: a rebook after a restore booked 9 scrapped for
	// 5). 0 in entries of older versions, which go unchecked.
	Sum uint32 `json:"sum,omitempty"`
}

// workorderLabel is what bookedEntry.Workorder holds of wo.
func workorderLabel(wo *odoo.Workorder) string {
	if wo == nil {
		return ""
	}
	return wo.ProductionName + " " + wo.Name
}

func (e bookedEntry) workorderID() int64 {
	if e.Line != nil {
		return e.Line.WorkorderID
	}
	return e.Scrap.WorkorderID
}

func (e bookedEntry) xmlid() string {
	if e.Line != nil {
		return e.Line.XMLID
	}
	return e.Scrap.XMLID
}

func (e *bookedEntry) sum() *uint32 { return &e.Sum }

// bookedKV keeps e, confirmed at at.
func bookedKV(at time.Time, e bookedEntry) buffer.KV {
	return buffer.KV{Key: fmt.Sprintf("%s%013d/%s", bookedPrefix, at.UnixMilli(), e.xmlid()), Value: sealJSON(e)}
}

// parseBookedKey reads a booked key: when Odoo confirmed the booking,
// and its external id.
func parseBookedKey(key string) (at time.Time, xmlid string, ok bool) {
	ms, xmlid, ok := strings.Cut(strings.TrimPrefix(key, bookedPrefix), "/")
	n, err := strconv.ParseInt(ms, 10, 64)
	return time.UnixMilli(n), xmlid, ok && err == nil
}

// keepBooked is bookedKV, counted towards the next pruneBooked — or, while
// a full disk holds the buffer to its file, no booking but the note of the
// period whose bookings were not kept (unkeptKey): the records not yet in
// Odoo come first (the disk probe: the bookings kept took the room of
// events not yet sent, which were dropped with Odoo back), and a rebook
// names that period (the review: after a restore it said "Odoo lacks 0"
// for 4,582 lines confirmed with the disk full). So too while the buffer's
// reserve file is given up for acknowledgements (a small buffer on a disk
// something else filled): its room is for the records' deletes, and
// bookings kept would take it.
func (f *forwarder) keepBooked(at time.Time, e bookedEntry) buffer.KV {
	since := f.a.buf.DiskFullSince()
	if since.IsZero() {
		since = f.a.buf.ReserveLentSince()
	}
	if !since.IsZero() {
		if !f.bookedFullSaid.Equal(since) {
			f.bookedFullSaid = since
			f.a.log.Warn("DISK FULL: bookings Odoo confirms are not kept for plantedge rebook until the disk has room (plantedge rebook names the period)", "since", since)
		}
		return f.noteUnkept(at)
	}
	kv := bookedKV(at, e)
	f.bookedAdded += int64(len(kv.Key) + len(kv.Value))
	return kv
}

// keptFromKey holds when the bookings kept begin: every booking Odoo
// confirmed since then is kept (but in the periods of unkeptKey), in ms
// since the epoch, "0" for since the buffer file began. Moved on when a
// prune forgets bookings, when plantedge is pointed at another Odoo, and
// at a fresh file that replaced a corrupt one. A rebook since before it
// says what it cannot book (the val54 probe: the note "if Odoo confirmed
// any between … it is not kept" was said whenever the oldest booking kept
// was younger than --since, a day after the install too, when nothing had
// been forgotten).
const keptFromKey = "rebook/kept_from"

// keptFromKV is keptFromKey at at (zero: since the file began).
func keptFromKV(at time.Time) buffer.KV {
	ms := int64(0)
	if !at.IsZero() {
		ms = at.UnixMilli()
	}
	return buffer.KV{Key: keptFromKey, Value: []byte(strconv.FormatInt(ms, 10))}
}

// keptFrom reads keptFromKey; ok false when the file has none (a file of
// an older version, not yet pruned by this one).
func (f *forwarder) keptFrom() (at time.Time, ok bool) {
	b, err := f.a.buf.Meta(keptFromKey)
	if err != nil || b == nil {
		return time.Time{}, false
	}
	ms, err := strconv.ParseInt(string(b), 10, 64)
	if err != nil {
		return time.Time{}, false
	}
	if ms == 0 {
		return time.Time{}, true
	}
	return time.UnixMilli(ms), true
}

// unkeptKey holds the periods whose bookings were not kept (keepBooked):
// JSON []UnkeptPeriod, the newest last, maxUnkept at most.
const unkeptKey = "rebook/unkept"

const maxUnkept = 20

// UnkeptPeriod is a time whose confirmed bookings were not kept (a full disk).
type UnkeptPeriod struct {
	From time.Time `json:"from"`
	To   time.Time `json:"to"`
}

// unkeptPeriods reads unkeptKey (none when it does not read).
func (f *forwarder) unkeptPeriods() []UnkeptPeriod {
	var ps []UnkeptPeriod
	if b, err := f.a.buf.Meta(unkeptKey); err == nil && b != nil {
		_ = json.Unmarshal(b, &ps)
	}
	return ps
}

// noteUnkept is unkeptKey with at taken in: the last period stretched to
// it when it is that disk-full spell's, else a new one.
func (f *forwarder) noteUnkept(at time.Time) buffer.KV {
	ps := f.unkeptPeriods()
	if n := len(ps); n > 0 && !ps[n-1].To.Before(f.bookedFullSaid) {
		ps[n-1].To = at
	} else {
		ps = append(ps, UnkeptPeriod{From: at, To: at})
	}
	if len(ps) > maxUnkept {
		ps = ps[len(ps)-maxUnkept:]
	}
	return buffer.KV{Key: unkeptKey, Value: mustJSON(ps)}
}

// bookedBudget is the most the bookings kept may weigh: a twentieth of
// buffer.max_bytes (they count against it: a small quota is for records),
// and of the buffer's budget while a full disk holds it lower.
func (f *forwarder) bookedBudget() int64 {
	b := int64(math.MaxInt64)
	if cfg := f.a.cfg.Load(); cfg != nil && cfg.Buffer.MaxBytes > 0 {
		b = int64(cfg.Buffer.MaxBytes) / 20
	}
	if st := f.a.buf.Stats(); !st.DiskFullSince.IsZero() && st.LimitBytes > 0 {
		b = min(b, st.LimitBytes/20)
	}
	return b
}

// pruneBooked forgets, every bookedPruneEvery — or sooner, once the
// bookings kept since weigh half their budget —, the bookings older than
// bookedKeep, and the oldest beyond bookedMax or bookedBudget. Every 10
// minutes only, a burst of stops after an outage kept 1,200 lines, 410 kB,
// where a 1 MiB max_bytes gives the records 550 kB: the buffer's budget
// was cut below them and every append failed (the spec audit).
func (f *forwarder) pruneBooked(ctx context.Context) error {
	budget := f.bookedBudget()
	full := f.a.buf.DiskFullSince()
	if time.Since(f.bookedPruned) < bookedPruneEvery && f.bookedAdded <= budget/2 && full.Equal(f.bookedPrunedFull) {
		return nil
	}
	// At once when a full disk lowered the budget.
	f.bookedPruned, f.bookedAdded, f.bookedPrunedFull = time.Now(), 0, full
	var keys []string
	var sizes []int64
	var total int64
	if err := f.a.buf.MetaPrefix(bookedPrefix, func(k string, v []byte) error {
		keys = append(keys, k)
		sizes = append(sizes, int64(len(k)+len(v)))
		total += int64(len(k) + len(v))
		return nil
	}); err != nil {
		return err
	}
	cutoff := time.Now().Add(-bookedKeep)
	drop := 0
	for drop < len(keys) {
		at, _, ok := parseBookedKey(keys[drop])
		if ok && !at.Before(cutoff) && len(keys)-drop <= bookedMax && total <= budget {
			break
		}
		total -= sizes[drop]
		drop++
	}
	from, known := f.keptFrom()
	var mark []buffer.KV
	switch {
	case drop > 0:
		// Those confirmed in the last one's millisecond may be kept in
		// part: from the next.
		if at, _, ok := parseBookedKey(keys[drop-1]); ok && !at.Before(from) {
			mark = append(mark, keptFromKV(at.Add(time.Millisecond)))
		} else if !ok && !known {
			mark = append(mark, keptFromKV(time.Now()))
		}
	case known:
	case f.a.recoveredFile:
		// A fresh file for a corrupt one: what that one kept is lost.
		mark = append(mark, keptFromKV(time.Now()))
	case len(keys) > 0:
		// A file of an older version: what it forgot is not known; its
		// oldest kept is as far as can be told.
		at, _, _ := parseBookedKey(keys[0])
		mark = append(mark, keptFromKV(at))
	case f.a.newFile:
		mark = append(mark, keptFromKV(time.Time{}))
	default:
		// A file of an older version keeping none: a prune keeps the
		// newest, so any forgotten were older than bookedKeep.
		mark = append(mark, keptFromKV(time.Now().Add(-bookedKeep)))
	}
	for len(keys[:drop]) > 0 {
		chunk := keys[:min(drop, 10_000)]
		kvs := make([]buffer.KV, len(chunk))
		for i, k := range chunk {
			kvs[i] = buffer.KV{Key: k}
		}
		if len(chunk) == drop {
			kvs = append(kvs, mark...) // with the last of them
			mark = nil
		}
		if err := f.a.buf.PutMeta(ctx, kvs...); err != nil {
			return err
		}
		keys, drop = keys[len(chunk):], drop-len(chunk)
	}
	if len(mark) > 0 && f.a.buf.DiskFullSince().IsZero() && f.a.buf.ReserveLentSince().IsZero() {
		// The first mark of a file, nothing forgotten with it: not worth
		// a failed round (tried again at the next prune), nor the room a
		// full disk keeps for the records (as keepBooked).
		_ = f.a.buf.PutMeta(ctx, mark...)
	}
	return nil
}

// RebookResult is what a rebook found and did.
type RebookResult struct {
	Since  time.Time `json:"since"`
	DryRun bool      `json:"dry_run,omitempty"`
	// Pending: no result within the API's wait; the rebook goes on (or
	// waits for Odoo) and logs its result ("rebooked what Odoo had
	// confirmed").
	Pending bool `json:"pending,omitempty"`
	// OldestKept is when the oldest booking kept was confirmed: a rebook
	// since before it cannot book what was confirmed before it.
	OldestKept time.Time `json:"oldest_kept,omitzero"`
	// KeptFrom is when the bookings kept begin (keptFromKey): every one
	// Odoo confirmed since is kept, but in the Unkept periods; zero for
	// since the buffer file began. Nil from an agent of an older version
	// (OldestKept is all it says).
	KeptFrom *time.Time `json:"kept_from,omitempty"`
	// Unkept are the periods since Since whose bookings were not kept (a
	// full disk): a rebook cannot know what Odoo confirmed in them.
	Unkept []UnkeptPeriod `json:"unkept,omitempty"`
	// Lines and Scraps are the bookings Odoo confirmed since Since, each
	// once; the Missing ones Odoo lacks now; the Rebooked ones it has again.
	Lines         int `json:"lines"`
	Scraps        int `json:"scraps"`
	LinesMissing  int `json:"lines_missing"`
	ScrapsMissing int `json:"scraps_missing"`
	LinesRebooked int `json:"lines_rebooked"`
	// LinesOpen of the LinesMissing Odoo has, but open where plantedge
	// closed them (open at the backup, closed after it): a rebook closes
	// them.
	LinesOpen      int `json:"lines_open,omitempty"`
	ScrapsRebooked int `json:"scraps_rebooked"`
	// ScrapDrafts of the rebooked scrap bookings Odoo left drafts (too
	// little stock, or it refused to validate them): watched as drafts,
	// shown on their machines.
	ScrapDrafts int `json:"scrap_drafts,omitempty"`
	// LinesWithoutWorkorder were booked without the work order they had:
	// Odoo lacks it (made after the backup), or has another one under its
	// id.
	LinesWithoutWorkorder int `json:"lines_without_workorder,omitempty"`
	// NotRebooked says, for each booking Odoo lacks and refused (or that
	// cannot be booked without its work order), why.
	NotRebooked []string `json:"not_rebooked,omitempty"`
}

// rebookReq is a rebook asked of the forwarder's loop (Rebook).
type rebookReq struct {
	since time.Time
	dry   bool
	done  chan rebookAnswer // buffered: the loop never waits on it
}

type rebookAnswer struct {
	res RebookResult
	err error
}

// errRebookBusy: another rebook waits to be done.
var errRebookBusy = errors.New("another rebook is in progress")

// Rebook asks the forwarder to book again what Odoo confirmed since since
// and lacks now (dry: only count it), and waits for its next round to do
// it; an error of that round is the answer.
func (f *forwarder) Rebook(ctx context.Context, since time.Time, dry bool) (RebookResult, error) {
	req := &rebookReq{since: since, dry: dry, done: make(chan rebookAnswer, 1)}
	f.mu.Lock()
	if f.stopping {
		f.mu.Unlock()
		return RebookResult{}, errAgentStopping
	}
	if f.rebook != nil {
		f.mu.Unlock()
		return RebookResult{}, errRebookBusy
	}
	f.rebook = req
	f.mu.Unlock()
	f.Flush()
	select {
	case a := <-req.done:
		return a.res, a.err
	case <-ctx.Done():
		f.mu.Lock()
		withdrawn := f.rebook == req
		if withdrawn {
			f.rebook = nil
		}
		f.mu.Unlock()
		if withdrawn {
			// No round took it: it is not going on (it was reported as
			// going on, and then never done).
			return RebookResult{}, errRebookNotTaken
		}
		return RebookResult{}, ctx.Err() // taken: it goes on, and is logged when done
	}
}

// errRebookNotTaken: no forwarding round took the rebook before its caller
// stopped waiting; it was withdrawn.
var errRebookNotTaken = errors.New("no forwarding round took the rebook in time (Odoo offline or slow? plantedge status says why): nothing was rebooked")

// takeRebook returns the rebook asked for, if any, and forgets it.
func (f *forwarder) takeRebook() *rebookReq {
	f.mu.Lock()
	defer f.mu.Unlock()
	req := f.rebook
	f.rebook = nil
	return req
}

// serveRebook does the rebook asked for, if any (round: Odoo answers, the
// file is its, and nothing else is being sent). What Odoo did not answer
// fails the round too.
func (f *forwarder) serveRebook(ctx context.Context) error {
	req := f.takeRebook()
	if req == nil {
		return nil
	}
	res, err := f.rebookSince(ctx, req.since, req.dry)
	req.done <- rebookAnswer{res, err}
	if err != nil && (odoo.IsAuth(err) || !odoo.IsPermanent(err)) {
		return rebookAnswered{err}
	}
	return nil
}

// rebookAnswered is the error of a rebook the round did and answered: it
// fails the round, but no rebook asked after it (failRebook) — one asked
// as soon as the first's answer came was answered with the first's error,
// never tried (CI, under load: TestRebookCutShortKeepsTheOpenLinesID).
type rebookAnswered struct{ err error }

func (e rebookAnswered) Error() string { return e.err.Error() }
func (e rebookAnswered) Unwrap() error { return e.err }

// failRebook answers the rebook asked for, if any, with the error of a
// round that did not get to it.
func (f *forwarder) failRebook(err error) {
	if req := f.takeRebook(); req != nil {
		req.done <- rebookAnswer{err: fmt.Errorf("odoo: %w", err)}
	}
}

// keptBookings are the bookings kept since a time, each once.
type keptBookings struct {
	order  []string               // external ids, in the order first confirmed
	latest map[string]bookedEntry // as last sent
	first  map[string]time.Time   // when first confirmed
	oldest time.Time              // when the oldest kept at all was
}

// keptSince reads the bookings kept that Odoo confirmed since since, in
// the order first confirmed; with decode also how each was last sent
// (latest; one this version cannot read is left out). checkBooked reads
// the keys alone: it looks every 10 minutes, and decoding every booking
// kept each time allocates 2.3 times as much (measured for 20,000: 21 MB,
// against 9); it decodes those it looks up (withLatest).
func (f *forwarder) keptSince(since time.Time, decode bool) (keptBookings, error) {
	kb := keptBookings{latest: map[string]bookedEntry{}, first: map[string]time.Time{}}
	err := f.a.buf.MetaPrefix(bookedPrefix, func(k string, v []byte) error {
		at, x, ok := parseBookedKey(k)
		if !ok {
			return nil
		}
		if kb.oldest.IsZero() {
			kb.oldest = at
		}
		if at.Before(since) {
			return nil
		}
		if decode {
			e, ok := decodeBooked(v)
			if !ok {
				f.a.eventLog.log("damaged booked", f.a.log, slog.LevelWarn,
					"a booking kept for rebook cannot be read (damaged on the disk?, or kept by a newer version): it is left out of rebooking",
					"key", k)
				return nil
			}
			kb.latest[x] = e
		}
		if _, seen := kb.first[x]; !seen {
			kb.order = append(kb.order, x)
			kb.first[x] = at
		}
		return nil
	})
	return kb, err
}

// decodeBooked reads a booked value; false if this version cannot, or its
// checksum does not hold.
func decodeBooked(v []byte) (bookedEntry, bool) {
	e, err := openJSON[bookedEntry](v)
	return e, err == nil && (e.Line == nil) != (e.Scrap == nil)
}

// withLatest reads into kb.latest how the bookings xmlids were last sent.
func (f *forwarder) withLatest(kb *keptBookings, xmlids []string) error {
	want := make(map[string]bool, len(xmlids))
	for _, x := range xmlids {
		want[x] = true
	}
	return f.a.buf.MetaPrefix(bookedPrefix, func(k string, v []byte) error {
		if _, x, ok := parseBookedKey(k); ok && want[x] {
			if e, ok := decodeBooked(v); ok {
				kb.latest[x] = e
			}
		}
		return nil
	})
}

// lacking says which of xmlids Odoo lacks as kb keeps them: not there at
// all, or a line it has open that was closed (the self-probe: a line open
// at the backup and closed after it came back open with the restore,
// blocking its work center for good).
func (f *forwarder) lacking(ctx context.Context, kb keptBookings, xmlids []string) (map[string]lackKind, error) {
	var refs map[string]odoo.ExternalRef
	var open map[int64]bool
	if len(xmlids) > 0 {
		if err := f.call(ctx, "external_ids", func(ctx context.Context) (err error) {
			refs, err = f.client.ExternalIDs(ctx, xmlids)
			return err
		}); err != nil {
			return nil, err
		}
	}
	var closed []int64 // kept closed: the ids Odoo has them under
	for _, x := range xmlids {
		if r, ok := refs[x]; ok && r.Model == "mrp.workcenter.productivity" {
			if l := kb.latest[x].Line; l != nil && !l.End.IsZero() {
				closed = append(closed, r.ResID)
			}
		}
	}
	if len(closed) > 0 {
		if err := f.call(ctx, "open_downtime_lines", func(ctx context.Context) (err error) {
			open, err = f.client.OpenDowntimeLines(ctx, closed)
			return err
		}); err != nil {
			return nil, err
		}
	}
	out := map[string]lackKind{}
	for _, x := range xmlids {
		switch r, ok := refs[x]; {
		case !ok:
			out[x] = lackMissing
		case open[r.ResID]:
			out[x] = lackOpen
		}
	}
	return out, nil
}

// lackKind is what Odoo lacks of a booking kept.
type lackKind int

const (
	lackMissing lackKind = iota + 1 // the booking
	lackOpen                        // the end of a line: Odoo has it open
)

// bookedCheck is how many of the last bookings checkBooked looks up (a
// variable for tests).
var bookedCheck = 200

// bookedCheckEvery is how often checkBooked looks, besides after Odoo was
// away: a restore made while the plant was quiet (Odoo down for it, and
// back, with nothing sent meanwhile) shows no outage (the self-probe: never
// reported). One or two requests. (A variable for tests.)
var bookedCheckEvery = 10 * time.Minute

// checkBooked looks up, after Odoo was away (and at the start), the last
// bookings it confirmed: one it lacks now was deleted there, or its
// database was restored from a backup (an upgrade rolled back) — nobody
// doing that thinks of the edge boxes, so the log says it, with the
// rebook to run: since the newest of them Odoo still has, confirmed before
// the oldest it lacks (the backup was taken between the two).
func (f *forwarder) checkBooked(ctx context.Context) error {
	kb, err := f.keptSince(time.Time{}, false)
	if err != nil {
		return err
	}
	last := kb.order[max(0, len(kb.order)-bookedCheck):]
	if err := f.withLatest(&kb, last); err != nil {
		return err
	}
	lack, err := f.lacking(ctx, kb, last)
	switch {
	case odoo.IsPermanent(err) && !odoo.IsAuth(err):
		f.a.log.Debug("cannot look up the bookings kept (external ids)", "err", err)
		return nil
	case err != nil || len(lack) == 0:
		return err
	}
	// Where the backup falls: after the newest booking Odoo has that comes
	// before the oldest it lacks — looked for among all kept, not only the
	// last (the self-probe: 300 bookings since the backup, and the time
	// said from the last 200 alone left 57 out).
	hi := len(kb.order) - 1
	for lack[kb.order[hi]] == 0 {
		hi--
	}
	lo, hi, err := f.backupBetween(ctx, kb, hi)
	if err != nil {
		return err
	}
	oldest, since := kb.first[kb.order[hi]], kb.oldest
	if lo >= 0 {
		since = kb.first[kb.order[lo]]
	}
	said := fmt.Sprint(len(lack), oldest.UnixMilli())
	if said == f.bookedLacked {
		return nil // said after the last outage
	}
	f.bookedLacked = said
	attrs := []any{"lacking", len(lack), "of_last", len(last), "oldest_lacking_confirmed", oldest.UTC().Format(time.RFC3339),
		"rebook_since", since.UTC().Format(time.RFC3339)}
	if lo < 0 {
		// Odoo has none of those kept: the backup is older than all.
		attrs = append(attrs, "backup_before_oldest_kept", true)
	}
	f.a.log.Error("odoo lacks downtime lines or scrap bookings it confirmed: its database was restored from a backup (an upgrade rolled back?), or they were deleted there — plantedge rebook --since <the backup's time> books them again (--dry-run first)",
		attrs...)
	return nil
}

// backupBetween finds where a backup falls among the bookings kept
// (kb.order, oldest first), given hi, one Odoo lacks: lo is the newest
// booking before hi that Odoo has (-1: none of those kept), and hi the
// oldest after lo that it lacks. Up to bookedCheck of those between are
// looked up at a time, so a week kept takes a few lookups.
func (f *forwarder) backupBetween(ctx context.Context, kb keptBookings, hi int) (lo, _ int, err error) {
	lo = -1
	for hi-lo > 1 {
		n := min(bookedCheck, hi-lo-1)
		idx := make([]int, n)
		xs := make([]string, n)
		for j := range n {
			idx[j] = lo + (j+1)*(hi-lo)/(n+1)
			xs[j] = kb.order[idx[j]]
		}
		if err := f.withLatest(&kb, xs); err != nil {
			return 0, 0, err
		}
		lack, err := f.lacking(ctx, kb, xs)
		if err != nil {
			return 0, 0, err
		}
		newLo := lo
		for j, k := range idx {
			if lack[xs[j]] == 0 {
				newLo = k
			}
		}
		for j, k := range idx {
			if k > newLo && lack[xs[j]] != 0 {
				hi = k
				break
			}
		}
		lo = newLo
	}
	return lo, hi, nil
}

// rebookSince books again what Odoo confirmed since since and lacks now.
func (f *forwarder) rebookSince(ctx context.Context, since time.Time, dry bool) (RebookResult, error) {
	res := RebookResult{Since: since, DryRun: dry}
	kb, err := f.keptSince(since, true)
	res.OldestKept = kb.oldest
	if from, ok := f.keptFrom(); ok {
		res.KeptFrom = &from
	} else {
		res.KeptFrom = &kb.oldest // not pruned yet by this version (the round prunes after it serves a rebook)
	}
	for _, p := range f.unkeptPeriods() {
		if !p.To.Before(since) {
			res.Unkept = append(res.Unkept, p)
		}
	}
	if err != nil {
		return res, err
	}
	lack, err := f.lacking(ctx, kb, kb.order)
	if err != nil {
		return res, err
	}
	order, latest := kb.order, kb.latest
	var lines []bookedEntry
	var scraps []bookedEntry
	for _, x := range order {
		e := latest[x]
		has := lack[x] == 0
		switch {
		case e.Line != nil:
			res.Lines++
			if !has {
				res.LinesMissing++
				lines = append(lines, e)
			}
			if lack[x] == lackOpen {
				res.LinesOpen++
			}
		default:
			res.Scraps++
			if !has {
				res.ScrapsMissing++
				scraps = append(scraps, e)
			}
		}
	}
	if dry {
		return res, nil
	}
	// Each machine's count is written again where its work order (the
	// same) shows another quantity: Odoo restored shows the backup's until
	// the machine makes a piece (the self-probe: 5 where 32 were made).
	if err := f.a.buf.MetaPrefix("wo/", func(k string, _ []byte) error {
		if f.rewrite == nil {
			f.rewrite = map[string]bool{}
		}
		f.rewrite[strings.TrimPrefix(k, "wo/")] = true
		return nil
	}); err != nil {
		return res, err
	}
	f.Flush() // the next round at once
	if len(lines)+len(scraps) == 0 {
		return res, nil
	}
	// The work orders they name: one made after the backup is gone, and
	// its id may have been given again to another.
	wos := map[int64]*odoo.Workorder{}
	for _, e := range slices.Concat(lines, scraps) {
		id := e.workorderID()
		if _, ok := wos[id]; ok || id == 0 {
			continue
		}
		wo, found, err := f.workorderIfAny(ctx, id)
		if err != nil {
			return res, err
		}
		if found {
			wos[id] = &wo
		} else {
			wos[id] = nil
		}
	}
	if err := f.rebookLines(ctx, lines, wos, &res); err != nil {
		return res, err
	}
	if err := f.rebookScraps(ctx, scraps, wos, &res); err != nil {
		return res, err
	}
	f.a.log.Warn("rebooked what Odoo had confirmed and lacks now (its database restored from a backup?)",
		"since", since.UTC().Format(time.RFC3339), "lines_rebooked", res.LinesRebooked, "lines_missing", res.LinesMissing,
		"scraps_rebooked", res.ScrapsRebooked, "scraps_missing", res.ScrapsMissing, "scrap_drafts", res.ScrapDrafts,
		"lines_without_workorder", res.LinesWithoutWorkorder, "not_rebooked", len(res.NotRebooked))
	return res, nil
}

// rebookLines books the lines Odoo lacks, loadLines a call (one by
// one where Odoo refuses a batch), and keeps the id of a line still open.
func (f *forwarder) rebookLines(ctx context.Context, lines []bookedEntry, wos map[int64]*odoo.Workorder, res *RebookResult) error {
	for i := range lines {
		d := lines[i].Line
		if wo := wos[d.WorkorderID]; d.WorkorderID != 0 && (wo == nil || wo.WorkcenterID != d.WorkcenterID) {
			d.WorkorderID = 0
			res.LinesWithoutWorkorder++
		}
	}
	for len(lines) > 0 {
		batch := lines[:min(len(lines), f.loadLines())] // shrunk after slow loads (loadsize.go)
		ds := make([]odoo.Downtime, len(batch))
		for i, e := range batch {
			ds[i] = *e.Line
		}
		// keep counts the lines of ids Odoo took and keeps the new id of
		// each still open — at each load, not at the rebook's end: a later
		// load that fails ends the rebook, and a rebook again finds these
		// lines in Odoo (the stop's end then took the new id for a line
		// deleted in Odoo while it was open, and said so).
		keep := func(ids []int64) error {
			var sent []sentLine
			for i, id := range ids {
				if id != 0 {
					res.LinesRebooked++
					sent = append(sent, sentLine{machine: batch[i].Machine, start: ds[i].Start, end: ds[i].End, id: id})
				}
			}
			return f.keepRebookedOpen(ctx, sent)
		}
		var ids []int64
		err := f.callLoad(ctx, len(batch), func(ctx context.Context) (err error) {
			ids, err = f.client.UpsertDowntimes(ctx, ds)
			return err
		})
		if odoo.TooLarge(err) && len(batch) > 1 {
			// A proxy in front of Odoo refused the load as too large: the
			// size in force halved (noteLoad); the same lines again, in
			// smaller loads.
			continue
		}
		lines = lines[len(batch):]
		switch {
		case err == nil:
		case odoo.TooLarge(err):
			// One line alone is more than the proxy takes.
			ids = make([]int64, len(ds))
			res.NotRebooked = append(res.NotRebooked, fmt.Sprintf("downtime line %s of %s: a load of this line alone is more than the proxy in front of Odoo takes: raise its limit on a request's body (nginx's client_max_body_size), then run plantedge rebook again: %v",
				ds[0].XMLID, batch[0].Machine, err))
		case odoo.IsPermanent(err) && !odoo.IsAuth(err):
			ids = make([]int64, len(ds))
			for i, d := range ds {
				err := f.call(ctx, "upsert_downtime", func(ctx context.Context) (err error) {
					ids[i], err = f.client.UpsertDowntime(ctx, d)
					return err
				})
				switch {
				case err == nil:
				case odoo.IsPermanent(err) && !odoo.IsAuth(err):
					res.NotRebooked = append(res.NotRebooked, fmt.Sprintf("downtime line %s of %s: %v", d.XMLID, batch[i].Machine, err))
				default:
					if kerr := keep(ids); kerr != nil { // (the lines before it are in Odoo)
						return kerr
					}
					return err
				}
			}
		default:
			return err
		}
		if err := keep(ids); err != nil {
			return err
		}
	}
	return nil
}

// keepRebookedOpen keeps the new id of each line of sent still open: the
// stop's end closes that one.
func (f *forwarder) keepRebookedOpen(ctx context.Context, sent []sentLine) error {
	var meta []buffer.KV
	for _, l := range sent {
		if !l.end.IsZero() {
			continue
		}
		b, err := f.a.buf.Meta(openMetaKey(l.machine))
		if err != nil {
			return err
		}
		if open, ok := parseOpenLine(string(b)); ok && open.start == l.start.UnixMilli() {
			meta = append(meta, buffer.KV{Key: openMetaKey(l.machine), Value: []byte(openLine{start: open.start, id: l.id}.String())})
		}
	}
	if len(meta) > 0 {
		return f.a.buf.PutMeta(ctx, meta...)
	}
	return nil
}

// rebookScraps books the scrap bookings Odoo lacks on their work orders; one
// whose work order Odoo lacks is left to a person (said in the result).
func (f *forwarder) rebookScraps(ctx context.Context, scraps []bookedEntry, wos map[int64]*odoo.Workorder, res *RebookResult) error {
	confirm := f.a.cfg.Load().Odoo.ScrapWhenShort == "confirm"
	for _, e := range scraps {
		s := *e.Scrap
		s.ConfirmShort = confirm
		wo := wos[s.WorkorderID]
		if wo == nil || wo.ProductionID != s.ProductionID || wo.ProductID != s.ProductID || (e.Workorder != "" && e.Workorder != workorderLabel(wo)) {
			res.NotRebooked = append(res.NotRebooked, fmt.Sprintf("scrap %s (%s of %s): Odoo lacks its work order (id %d; made after the backup?): book it by hand",
				s.XMLID, Qty(s.Qty), e.Machine, s.WorkorderID))
			continue
		}
		var done bool
		err := f.call(ctx, "book_scrap", func(ctx context.Context) (err error) {
			done, err = f.client.BookScrap(ctx, s)
			return err
		})
		var dl *odoo.DraftLeftError
		switch {
		case err == nil && done:
			res.ScrapsRebooked++
			continue
		case err == nil, errors.As(err, &dl):
			d := scrapDraft{XMLID: s.XMLID, Qty: s.Qty, Workorder: wo.Name, At: time.Now().UTC().Truncate(time.Second)}
			if dl != nil {
				d.Refused, _, _ = strings.Cut(err.Error(), "\n")
			}
			if err := f.a.buf.PutMeta(ctx, buffer.KV{Key: scrapDraftKey(e.Machine, s.XMLID), Value: mustJSON(d)}); err != nil {
				return err
			}
			f.draftsAt = time.Time{} // shown at once
			res.ScrapsRebooked++
			res.ScrapDrafts++
		case odoo.IsPermanent(err) && !odoo.IsAuth(err):
			res.NotRebooked = append(res.NotRebooked, fmt.Sprintf("scrap %s (%s of %s): %v", s.XMLID, Qty(s.Qty), e.Machine, err))
		default:
			return err
		}
	}
	return nil
}
