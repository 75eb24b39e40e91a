package agent

// The two checks of the Odoo a buffer file is sent to, made once a run
// before anything is sent: that the file is not older than what Odoo holds
// (a restored file, or a copy that went on elsewhere), and what to do with
// the state of another Odoo the file last sent to (odoo.url or odoo.db
// changed): writes in doubt, lines left open, scrap drafts left there.

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/plantedge/plantedge/buffer"
	"github.com/plantedge/plantedge/internal/decimal"
	"github.com/plantedge/plantedge/odoo"
)

// restoredError: Odoo holds a booking that cannot come from this buffer
// file as it was at the start (checkRestored).
type restoredError struct {
	path string
	// what Odoo holds, and why it is newer than the file.
	what string
	// file: the booking came from this very file (its id), so the file is
	// a stale copy; otherwise from another agent's file, or a stale copy.
	file bool
}

func (e *restoredError) Error() string {
	why := "it was restored from a backup (or a disk image), or another box went on with a copy of it"
	if !e.file {
		why = "it was restored from a backup (or a disk image), or another box sends for these machines under this site"
	}
	return fmt.Sprintf("%s is older than what was booked in Odoo (%s): %s, and sending from it would book again what was booked since. "+
		"Nothing is sent. Stop the agent, move the file aside and start again: counting starts anew from each counter's next value, "+
		"and what this run took in goes with the file (docs/runbook.md: Backups, and a box that failed)", e.path, e.what, why)
}

// splitXMLName splits an external id's name (site_<machine><mark><number>)
// into the machine and the number.
func splitXMLName(site, name, mark string) (string, int64, bool) {
	rest, ok := strings.CutPrefix(name, site+"_")
	i := strings.LastIndex(rest, mark)
	if !ok || i <= 0 {
		return "", 0, false
	}
	n, err := strconv.ParseInt(rest[i+len(mark):], 10, 64)
	return rest[:i], n, err == nil && n > 0
}

// closeOrphanLines closes, once a run, the downtime lines this site left
// open in Odoo for configured machines when the buffer file is new (the
// old one corrupt and moved aside, or lost with a failed box): nothing in
// this file will ever close them, and a block_workcenter line kept its
// work center blocked for good (the PEERS probe; the same stop, still
// going on at the start, also got a second line). Each is closed at this
// run's start: the stop went on at least until the old file was lost,
// and from the start this agent sees the machine itself — a stop still
// going on gets a line of its own from its first value on. Logged. Only
// for a new file: an older one may still hold the record that closes a
// line (a file of a version that did not note stops, a machine removed
// while stopped and added back: the review). The open lines are read
// first, then their external ids, so a site's week of booked lines does
// not hide one (the review: the newest 500 ids did).
func (f *forwarder) closeOrphanLines(ctx context.Context) error {
	cfg := f.a.cfg.Load()
	if !f.a.newFile {
		f.orphansChecked = true
		return nil
	}
	open, err := callFor(ctx, f, "orphan_lines", func(ctx context.Context) ([]odoo.OpenLine, error) {
		return f.client.OpenLinesOf(ctx, "plantedge")
	})
	if err != nil {
		if !odoo.IsPermanent(err) || odoo.IsAuth(err) {
			return err
		}
		f.orphansChecked = true
		f.a.log.Warn("cannot look for downtime lines a lost buffer file left open in Odoo (the bot user may not read downtime lines or external ids): close any such line there", "err", err)
		return nil
	}
	end := f.a.started
	for _, l := range open {
		m, _, ok := splitXMLName(cfg.Site, l.Name, "_downtime_")
		if !ok || findMachine(cfg, m) == nil {
			continue // another site's, or a machine not configured here
		}
		at := end
		if !at.After(l.Start) {
			at = l.Start // (a line stamped ahead of this clock: closed as it began)
		}
		closed, err := callFor(ctx, f, "close_downtime_line", func(ctx context.Context) (bool, error) {
			return f.client.CloseDowntimeLine(ctx, l.ID, l.Start, at)
		})
		switch {
		case err == nil && closed:
			f.a.log.Warn("closed a downtime line left open in Odoo that this buffer file has no record of (a new file: the old one corrupt, or lost with its box): "+
				"it ends at this start; a stop still going on gets a line of its own from the machine's first value",
				"machine", m, "start", l.Start, "end", at, "id", l.ID)
		case err == nil, odoo.IsPermanent(err) && !odoo.IsAuth(err):
			if err != nil {
				f.a.log.Warn("cannot close a downtime line left open in Odoo that this buffer file has no record of: close it there",
					"machine", m, "start", l.Start, "id", l.ID, "err", err)
			}
		default:
			return err
		}
	}
	f.orphansChecked = true
	return nil
}

// checkRestored looks, once a run and before anything is sent, at what
// Odoo holds that this buffer file could not have sent as it was at the
// start: a scrap booking made from this file (its id is in the external
// id) of a record newer than any the file held, or a downtime line of one
// of its machines that started after the newest stop it recorded. Only a
// copy of the file that went on after this one was taken (this one was
// restored from a backup or a disk image, or another box went on with a copy of it) or
// another agent sending for the same machines under the same site makes
// one. Sending from this file would book again what was booked since (the
// ops probe: every scrap booking since the copy, and where a work order
// changed, its pieces), so nothing is: the round fails with restoredError
// until a restart with another file. A bot user that may not read external
// ids leaves the file unchecked (logged).
func (f *forwarder) checkRestored(ctx context.Context) error {
	site := f.a.cfg.Load().Site
	scrapMark := "_scrap_" + f.a.bufID + "_"
	var scraps, lines []string
	err := f.call(ctx, "restore_check", func(ctx context.Context) error {
		var err error
		// The names' _ escaped: LIKE's _ is any character, and this
		// site's "plant-1_" would take in plant-10's ids, whose newest
		// crowd this site's out of the limit (the spec audit).
		if scraps, err = f.client.ExternalIDNames(ctx, "plantedge", likeEscape(site+"_")+"%"+likeEscape(scrapMark)+"%", 100); err != nil {
			return err
		}
		if len(f.a.startLineKeys) > 0 {
			lines, err = f.client.ExternalIDNames(ctx, "plantedge", likeEscape(site+"_")+"%"+likeEscape("_downtime_")+"%", 500)
		}
		return err
	})
	if err != nil {
		if !odoo.IsPermanent(err) || odoo.IsAuth(err) {
			return err
		}
		f.restoreChecked = true
		f.a.log.Warn("cannot check whether the buffer file is older than what was booked in Odoo: the bot user may not read external ids (ir.model.data): give it a group of its own whose one access right is read on Model Data (README, Odoo side)", "err", err)
		return nil
	}
	f.restoreChecked = true
	key := func(name, mark string) (string, int64, bool) { return splitXMLName(site, name, mark) }
	for _, n := range scraps {
		if _, seq, ok := key(n, scrapMark); ok && uint64(seq) > f.a.startSeq {
			f.restored = &restoredError{path: f.a.cfg.Load().BufferPath(), file: true,
				what: fmt.Sprintf("a scrap booking of its record %d; the file's newest is %d", seq, f.a.startSeq)}
			return f.restored
		}
	}
	now := time.Now().UnixMilli()
	for _, n := range lines {
		// A line stamped ahead of this clock is left out: a source clock
		// ahead when another file booked it says nothing of this one's age.
		m, start, ok := key(n, "_downtime_")
		if newest := f.a.startLineKeys[m]; ok && newest > 0 && start > newest && start <= now {
			f.restored = &restoredError{path: f.a.cfg.Load().BufferPath(),
				what: fmt.Sprintf("a downtime line of %s from %s; the newest stop the file recorded began %s",
					m, fromMS(start).UTC().Format(time.RFC3339), fromMS(newest).UTC().Format(time.RFC3339))}
			return f.restored
		}
	}
	return nil
}

// likeEscape makes s match itself in an SQL LIKE pattern (Odoo's =like,
// whose escape character is PostgreSQL's default, the backslash).
func likeEscape(s string) string {
	return strings.NewReplacer(`\`, `\\`, "%", `\%`, "_", `\_`).Replace(s)
}

// odooStashPrefix starts the meta keys that keep, per Odoo plantedge was
// pointed at and away from, what it had written there (switchOdoo).
const odooStashPrefix = "odoostash/"

// switchOdoo forgets, once the Odoo the configuration now names has
// answered (checkOdoo), what plantedge wrote to the one the buffer file's
// state belongs to, in one transaction: the work-order attributions (each
// machine's work order in progress in this one counts from its own
// quantity — the old database's baseline and count written over it would be
// pieces nobody made there: the ops probe saw 2,394 for 121), a write left in
// doubt there (its records go here), the open downtime lines' ids. A write
// left in doubt is put away under the old Odoo's name and taken back if
// plantedge is pointed at it again while its work order still shows what
// it did, so it is settled against it, not sent again (the second
// self-probe: 99 for 88 after a switch and back). Scrap
// drafts are kept and looked for here: one this Odoo lacks was left in the
// other. A scrap booking not confirmed is checked before it is made: its
// work order's ids hold if this is the same database under another address.
func (f *forwarder) switchOdoo(ctx context.Context) error {
	was, now := f.a.odooWas, odooIdentity(f.a.cfg.Load())
	meta := []buffer.KV{{Key: odooMetaKey, Value: []byte(now)}}
	stash := map[string]string{} // the writes in doubt put away under was
	var inDoubt, released, drafts, outboxes, kept, leftOpen []string
	doubts := map[string]woState{}
	// States written to the other quantity field than this Odoo's (the
	// old one before 19, this one 19+): looked for here as left there.
	fieldMoved := map[string]woState{}
	field := f.client.ProducedField()
	// there counts what the old Odoo's state holds (work orders, bookings):
	// none when it never took anything — a name or an address corrected
	// before plantedge got through (a misspelt odoo.database, started once).
	there := 0
	err := f.a.buf.MetaPrefix("wo/", func(k string, v []byte) error {
		there++
		var st woState
		if json.Unmarshal(v, &st) == nil && st.InFlight != nil {
			doubts[k] = st
			return nil
		}
		if st.ID != 0 && st.moved(field) {
			fieldMoved[k] = st
			return nil
		}
		meta = append(meta, buffer.KV{Key: k})
		return nil
	})
	// The same database upgraded across 19 (a copy at another address or
	// under another name): its work order shows what plantedge wrote in
	// the field it wrote it to, and the field this Odoo keeps the count
	// in has none of it (17/18's qty_producing, 19's qty_produced: the
	// upgrade probe, 206 for 313). Counted "from its own quantity", the
	// order lost every piece written before the upgrade; the state is
	// kept, and the count goes on in this Odoo's field as after an
	// upgrade at the same address.
	var upgraded []string
	for k, st := range fieldMoved {
		if err != nil {
			break
		}
		var same bool
		if same, err = f.upgradedHere(ctx, st); same {
			upgraded = append(upgraded, fmt.Sprintf("%s (%s, %s)", k[len("wo/"):], st.Name, Qty(st.Written)))
			continue
		}
		meta = append(meta, buffer.KV{Key: k})
	}
	for k, st := range doubts {
		if err != nil {
			break
		}
		m := k[len("wo/"):]
		var same bool
		if same, err = f.sameWorkorderHere(ctx, st); same {
			kept = append(kept, fmt.Sprintf("%s (%s, %s)", m, st.Name, Qty(st.InFlight.Target)))
			continue
		}
		meta = append(meta, buffer.KV{Key: k})
		stash[k] = string(mustJSON(st))
		inDoubt = append(inDoubt, fmt.Sprintf("%s (%s, %s)", m, st.Name, Qty(st.InFlight.Target)))
		released = append(released, m)
	}
	if err == nil {
		err = f.a.buf.MetaPrefix("open/", func(k string, v []byte) error {
			meta = append(meta, buffer.KV{Key: k})
			if l, ok := parseOpenLine(string(v)); ok && l.id != 0 {
				stash[k] = openLine{start: l.start, id: l.id}.String()
				leftOpen = append(leftOpen, fmt.Sprintf("%s (since %s)", k[len("open/"):], fromMS(l.start).UTC().Format(time.RFC3339)))
			}
			return nil
		})
	}
	if err == nil {
		// What the old Odoo confirmed is not for a rebook in this one;
		// and, pointed back there, what it confirmed before now is gone.
		booked := 0
		err = f.a.buf.MetaPrefix(bookedPrefix, func(k string, _ []byte) error {
			there++
			booked++
			meta = append(meta, buffer.KV{Key: k})
			return nil
		})
		if booked > 0 {
			meta = append(meta, keptFromKV(time.Now()))
		}
	}
	if err == nil {
		err = f.a.buf.MetaPrefix("scrap/", func(k string, v []byte) error {
			ob, err := decodeScrapOutbox(v)
			if err != nil {
				// Left as it is, not sealed with a new checksum: the
				// forwarder sets it aside and says what that means.
				return nil
			}
			ob.Recheck = true
			meta = append(meta, buffer.KV{Key: k, Value: mustJSON(ob)})
			outboxes = append(outboxes, fmt.Sprintf("%s %s", ob.XMLID, Qty(ob.Qty)))
			return nil
		})
	}
	if err != nil {
		return err
	}
	ds, err := storedScrapDrafts(f.a.buf)
	if err != nil {
		return err
	}
	for _, e := range ds {
		switch e.d.Elsewhere {
		case now:
			e.d.Elsewhere = "" // left here, and back here
		case "":
			e.d.Elsewhere = was
		}
		e.d.NotHere = false // looked for here
		meta = append(meta, buffer.KV{Key: e.key, Value: mustJSON(e.d)})
		drafts = append(drafts, fmt.Sprintf("%s %s", e.d.XMLID, Qty(e.d.Qty)))
	}
	back, reopen, err := f.takeBack(ctx, now)
	if err != nil {
		return err
	}
	meta = append(meta, reopen...)
	meta = append(meta, buffer.KV{Key: odooStashPrefix + now}) // taken back, or no longer settled by it
	for _, b := range back {
		meta = append(meta, woStateKV(b.machine, b.st))
	}
	if len(stash) > 0 {
		meta = append(meta, buffer.KV{Key: odooStashPrefix + was, Value: mustJSON(stash)})
	}
	// The dead letters there are now are tied to the old Odoo: a retry
	// here would book them here (the fifth self-probe: +14 where they held
	// a write in doubt that had landed there).
	by, err := loadDeadOdoo(f.a.buf)
	if err != nil {
		return err
	}
	tie, err := by.leaving(f.a.buf, was)
	if err != nil {
		return err
	}
	if tie != nil {
		meta = append(meta, *tie)
	}
	if err := f.a.buf.PutMeta(ctx, meta...); err != nil {
		return err
	}
	if n := f.a.buf.Stats().DeadLetters; n > 0 {
		f.a.log.Warn("dead letters stay tied to the Odoo that refused them: `plantedge deadletter retry` keeps those of another Odoo (retry them once pointed back there, or drop them; --here books them here)",
			"dead_letters", n)
	}
	for _, m := range released { // before the holds of what comes back: a machine may have both
		f.a.holdInFlight(countKey(m, sigGood), 0)
	}
	var held []string
	for _, b := range back {
		f.a.holdInFlight(countKey(b.machine, sigGood), b.st.InFlight.MaxSeq)
		held = append(held, fmt.Sprintf("%s (%s, %s)", b.machine, b.st.Name, Qty(b.st.InFlight.Target)))
	}
	f.a.odooWas = ""
	f.mu.Lock()
	f.link.SwitchFrom = ""
	f.mu.Unlock()
	counted := "each machine's work order in progress here is counted from its own quantity"
	if len(upgraded) > 0 || len(kept) > 0 {
		// Not every one (the upgrade probe: the warning said so of
		// work orders the next line said kept their counts).
		counted += ", but for those found here as plantedge left them there (listed next: the same database)"
	}
	if there+len(leftOpen)+len(drafts)+len(outboxes)+len(back)+len(stash) == 0 && tie == nil {
		// Nothing was written to the old one: no warning of what is not
		// carried over (the odoo1949 probe: a misspelt odoo.database,
		// fixed, read as a move of Odoo).
		f.a.log.Info("odoo.url or odoo.database changed, and the new one answers; the one named before never took anything from plantedge (it never answered as configured): records not yet sent go here",
			"odoo", now, "was", was)
	} else {
		f.a.log.Warn("odoo changed (odoo.url or odoo.database), and the new one answers: what plantedge wrote to the old one is not carried over (a write left in doubt there is put away, and settled if it is configured again) — "+counted+"; records not yet sent go here",
			"odoo", now, "was", was)
	}
	for _, n := range []struct {
		level slog.Level
		msg   string
		key   string
		list  []string
	}{
		{slog.LevelInfo, "back to an Odoo plantedge wrote to before: its writes left in doubt are taken back and settled against it", "machines", held},
		{slog.LevelWarn, "downtime lines open in the old Odoo (block_workcenter) stay open there, their work centers blocked, until plantedge is pointed there again and closes them at their stops' ends — or close them there", "machines", leftOpen},
		{slog.LevelInfo, "work orders here are as plantedge left them in the old Odoo, their quantity in the field of the version before (" + otherQtyField(field) + "): the same database, upgraded across 19 — their counts go on in " + field, "machines", upgraded},
		{slog.LevelInfo, "quantity writes to the old Odoo were in doubt (no answer came), and their work orders here are as they were there (the same database under another address, or a copy of it): the writes are settled here", "machines", kept},
		{slog.LevelWarn, "quantity writes to the old Odoo were in doubt (no answer came), and their work orders are not here as they were: their pieces are sent here; if the write landed in the old one, they are in both", "machines", inDoubt},
		{slog.LevelWarn, "scrap bookings the old Odoo had not confirmed are booked here, under the same external id: on their work order if this is the same database, else on the work order in progress; if the old Odoo is another database, it may hold a draft of one (if it took it without answering): delete it there (in the same database it is this booking)", "bookings", outboxes},
		{slog.LevelWarn, "scrap drafts are looked for here: one this Odoo lacks is in the Odoo it was left a draft in (validate or delete it there)", "drafts", drafts},
	} {
		if len(n.list) > 0 {
			f.a.log.Log(ctx, n.level, n.msg, n.key, strings.Join(n.list, ", "))
		}
	}
	return nil
}

// sameWorkorderHere tells whether the Odoo now configured holds a write
// left in doubt in the one the buffer file's state belongs to as that one
// did: its work order, by id, with the same name and manufacturing order,
// at the quantity written before or at the write's target. That is the
// same database under another address (Odoo moved, or behind a proxy), and
// the write is settled here as after a restart; its pieces sent again
// would be booked twice (22 for 17). Another database's work order of that
// id in a copy of the database shows the write if the copy was taken after
// it landed, else the quantity before it: either way the state holds there.
// A state written to the other quantity field (the database upgraded
// across 19 since) is compared in the field it was written to.
func (f *forwarder) sameWorkorderHere(ctx context.Context, st woState) (bool, error) {
	cur, same, err := f.stateWorkorderHere(ctx, st)
	if err != nil || !same {
		return false, err
	}
	q := f.stateQty(cur, st)
	return f.sameQty(q, st.InFlight.Target) || f.sameQty(q, st.Written), nil
}

// upgradedHere tells whether the Odoo now configured holds st's work order
// (written to the other quantity field than this Odoo's) as plantedge left
// it in the one the buffer file's state belongs to: by id, with its name
// and manufacturing order, at the quantity written in the field it was
// written to. That is the same database upgraded across 19 (17/18 and 19
// keep the count in other fields), reached under another address or name.
func (f *forwarder) upgradedHere(ctx context.Context, st woState) (bool, error) {
	cur, same, err := f.stateWorkorderHere(ctx, st)
	if err != nil || !same {
		return false, err
	}
	// A quantity of 0 tells nothing: any work order of any database shows it.
	return st.Written != 0 && f.client.RoundQty(f.stateQty(cur, st)) == f.client.RoundQty(st.Written), nil
}

// stateQty is wo's quantity in the field st was written to (this Odoo's
// field when st does not say).
func (f *forwarder) stateQty(wo odoo.Workorder, st woState) float64 {
	switch st.Field {
	case "qty_producing":
		return wo.QtyProducing
	case "qty_produced":
		return wo.QtyProduced
	}
	return f.client.ProducedQty(wo)
}

// otherQtyField is the quantity field of the versions on the other side of 19
// from the one that keeps the count in field.
func otherQtyField(field string) string {
	if field == "qty_produced" {
		return "qty_producing"
	}
	return "qty_produced"
}

// stateWorkorderHere reads the work order of st here: same when Odoo has
// one by its id, with its name and manufacturing order.
func (f *forwarder) stateWorkorderHere(ctx context.Context, st woState) (cur odoo.Workorder, same bool, err error) {
	cur, found, err := f.workorderIfAny(ctx, st.ID)
	return cur, err == nil && found && cur.Name == st.Name && (st.MO == 0 || cur.ProductionID == st.MO), err
}

// recordOdoo decides which Odoo the work-order state of a buffer file that
// does not record it belongs to (an older plantedge's; checkOdoo): this one
// if every work order it names is here, by id with the same name and
// manufacturing order, at the quantity plantedge last wrote (or at the
// target of a write in doubt) — then the file records it — else another,
// and the forwarder switches from it (switchOdoo), forgetting the state.
// Taking another Odoo's state for this one's writes its counts into this
// one's work orders (the upgrade probe: 26 for 10); the other way round
// only recounts from what this Odoo shows.
func (f *forwarder) recordOdoo(ctx context.Context) error {
	var states []woState
	if err := f.a.buf.MetaPrefix("wo/", func(k string, v []byte) error {
		var st woState
		if err := json.Unmarshal(v, &st); err != nil {
			return fmt.Errorf("decode %s: %w", k, err)
		}
		if st.ID != 0 {
			states = append(states, st)
		}
		return nil
	}); err != nil {
		return err
	}
	for _, st := range states {
		cur, same, err := f.stateWorkorderHere(ctx, st)
		if err != nil {
			return err
		}
		if !same {
			f.a.log.Warn("the buffer file's work-order state is not this Odoo's: the work order it names is not here; taken for another Odoo's, and forgotten",
				"workorder", st.Name, "id", st.ID)
			return nil
		}
		if st.moved(f.client.ProducedField()) {
			continue // upgraded across 19 since: the ids say it
		}
		q := f.client.RoundQty(f.client.ProducedQty(cur))
		if q != f.client.RoundQty(st.Written) && (st.InFlight == nil || q != f.client.RoundQty(st.InFlight.Target)) {
			f.a.log.Warn("the buffer file's work-order state is not this Odoo's: a work order it names shows another quantity than plantedge wrote; taken for another Odoo's, and forgotten",
				"workorder", st.Name, "id", st.ID, "odoo_qty", num(q), "written", num(st.Written))
			return nil
		}
	}
	now := odooIdentity(f.a.cfg.Load())
	if err := f.a.buf.PutMeta(ctx, buffer.KV{Key: odooMetaKey, Value: []byte(now)}); err != nil {
		return err
	}
	f.a.odooWas = ""
	f.mu.Lock()
	f.link.SwitchFrom = ""
	f.mu.Unlock()
	f.a.log.Info("the buffer file's work-order state is this Odoo's: recorded", "odoo", now, "workorders", len(states))
	return nil
}

// inDoubtBack is a machine's write left in doubt in an Odoo plantedge is
// pointed at again (takeBackInDoubt).
type inDoubtBack struct {
	machine string
	st      woState
}

// takeBack deals with what was put away when plantedge left the Odoo now
// (switchOdoo). It returns the writes left in doubt whose work order still
// shows what it did then (the write landed, or nothing else was written):
// else, written since through another address of the same database, its
// own quantity counts (the third self-probe: the whole state taken back
// wrote over what was booked meanwhile, -68 of 186). A downtime line left
// open there (block_workcenter) whose stop ended meanwhile is closed at
// the stop's end (the third self-probe: its work center stayed blocked);
// one whose stop goes on is open again (reopen: its meta entries). The
// stash is gone with the transaction that takes them back.
func (f *forwarder) takeBack(ctx context.Context, now string) ([]inDoubtBack, []buffer.KV, error) {
	b, err := f.a.buf.Meta(odooStashPrefix + now)
	if err != nil || b == nil {
		return nil, nil, err
	}
	var stash map[string]string
	if err := json.Unmarshal(b, &stash); err != nil {
		return nil, nil, fmt.Errorf("decode %s: %w", odooStashPrefix+now, err)
	}
	var back []inDoubtBack
	var reopen []buffer.KV
	for k, v := range stash {
		if m, ok := strings.CutPrefix(k, "open/"); ok {
			l, ok := parseOpenLine(v)
			switch {
			case !ok || l.id == 0:
			case l.end == 0:
				reopen = append(reopen, buffer.KV{Key: k, Value: []byte(l.String())})
			default:
				closed, err := callFor(ctx, f, "close_downtime_line", func(ctx context.Context) (bool, error) {
					return f.client.CloseDowntimeLine(ctx, l.id, fromMS(l.start), fromMS(l.end))
				})
				switch {
				case err == nil && closed:
					f.a.log.Info("closed the downtime line left open in this Odoo when plantedge was pointed at another, at its stop's end",
						"machine", m, "start", fromMS(l.start), "end", fromMS(l.end), "id", l.id)
				case err == nil, odoo.IsPermanent(err) && !odoo.IsAuth(err):
					if err != nil {
						f.a.log.Warn("cannot close the downtime line left open in this Odoo when plantedge was pointed at another: close it here",
							"machine", m, "start", fromMS(l.start), "end", fromMS(l.end), "id", l.id, "err", err)
					}
				default:
					return nil, nil, err
				}
			}
			continue
		}
		m, ok := strings.CutPrefix(k, "wo/")
		var st woState
		if !ok || json.Unmarshal([]byte(v), &st) != nil || st.InFlight == nil {
			continue
		}
		cur, found, err := f.workorderIfAny(ctx, st.ID)
		if err != nil {
			return nil, nil, err
		}
		if !found {
			continue
		}
		switch q := f.client.ProducedQty(cur); {
		case f.sameQty(q, st.InFlight.Target):
			// Landed: its records count here. Those another Odoo took
			// meanwhile are acknowledged already, so the settle cannot add
			// them (the fourth self-probe: the next write took them off
			// again, 19 short): they are counted now, the rest by the
			// settle's acknowledgement.
			left, err := f.countPrefix(countKey(m, sigGood), time.Unix(1<<40, 0), st.InFlight.MaxSeq)
			if err != nil {
				return nil, nil, err
			}
			st.Counted = decimal.Sub(decimal.Sub(st.InFlight.Target, st.Baseline), left.sum)
			back = append(back, inDoubtBack{m, st})
		case f.sameQty(q, st.Written):
			back = append(back, inDoubtBack{m, st})
		}
	}
	return back, reopen, nil
}

// stashedLinesClosed notes, in the Odoos plantedge was pointed away from
// (switchOdoo), the end of a stop whose line was left open there: takeBack
// closes it there at that end. closed holds the lines just closed here.
func (f *forwarder) stashedLinesClosed(closed []sentLine) ([]buffer.KV, error) {
	if len(closed) == 0 {
		return nil, nil
	}
	var meta []buffer.KV
	err := f.a.buf.MetaPrefix(odooStashPrefix, func(k string, v []byte) error {
		var stash map[string]string
		if json.Unmarshal(v, &stash) != nil {
			return nil
		}
		changed := false
		for _, l := range closed {
			if o, ok := parseOpenLine(stash["open/"+l.machine]); ok && o.end == 0 && o.start == l.start.UnixMilli() {
				o.end = l.end.UnixMilli()
				stash["open/"+l.machine] = o.String()
				changed = true
			}
		}
		if changed {
			meta = append(meta, buffer.KV{Key: k, Value: mustJSON(stash)})
		}
		return nil
	})
	return meta, err
}
