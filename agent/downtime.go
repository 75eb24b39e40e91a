package agent

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/plantedge/plantedge/agent/config"
	"github.com/plantedge/plantedge/buffer"
	"github.com/plantedge/plantedge/odoo"
)

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

// readEvents returns up to limit (maxEventsPerRound at full load size) pending events of machines
// that are configured and whose work center is resolved; the others wait
// (status shows why) without holding up the rest. One that cannot be
// decoded goes to the dead letters. A machine gone from the configuration
// has its events booked on the work center they name (its stop ended by the
// reload that removed it closes the line that would otherwise block that
// work center); events naming none wait for it, like its counts.
//
// The events of eventScanWindow records are taken from each machine in
// turn, each machine's oldest first (fairOrder): one machine's backlog of
// stops after an outage does not hold back another's live stop behind it
// (PEERS complaint 8). What is returned is in sequence order, and each
// machine's events in it are the oldest of its pending ones that can go.
func (f *forwarder) readEvents(ctx context.Context, cfg *config.Config, limit int) (_ []pendingEvent, err error) {
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
	add := func(e pendingEvent) {
		if len(out) < limit {
			out = append(out, e)
		}
	}
	deadLetter := func(r buffer.Record, reason string) error {
		err := f.moveToDeadLetters(ctx, r, "downtime record moved to dead letters", reason)
		if errors.Is(err, buffer.ErrNotFound) {
			return nil // peeked, then dropped by the quota: gone already, counted there
		}
		return err
	}
	// take classifies one record: into out (while it has room), the dead
	// letters, or waiting.
	take := func(r buffer.Record) error {
		ev, err := decodeEvent(r)
		if err != nil {
			// Whatever its key: it would wait for its machine forever.
			return deadLetter(r, err.Error())
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
					return err
				}
				if ok {
					add(pendingEvent{r, ev, id, true})
					return nil
				}
				if _, ok := f.wcs[mc.Workcenter]; ok {
					f.a.eventLog.log("stop elsewhere "+r.Key, f.a.log, slog.LevelWarn,
						"a stop recorded on a work center Odoo does not know (any more) is booked on the machine's work center now",
						"machine", r.Key, "recorded_on", ev.Workcenter, "booked_on", mc.Workcenter)
				}
			}
			if wc, ok := f.wcs[mc.Workcenter]; ok {
				add(pendingEvent{r, ev, wc.ID, false})
			}
			return nil
		}
		if id, ok, err := named(); err != nil {
			return err
		} else if ok {
			add(pendingEvent{r, ev, id, true})
			return nil
		}
		if !f.a.lineOpen(r.Key) {
			// Downtime records of a machine gone from the configuration
			// wait for it while it has a line open in Odoo (one may
			// close it); otherwise they go like its counts.
			if reason := f.unmappedExpired(cfg, r.Key); reason != "" {
				return deadLetter(r, reason)
			}
		}
		if ev.Workcenter != "" {
			waiting++
		}
		return nil
	}
	configured := make(map[string]bool, len(cfg.Machines))
	for _, m := range cfg.Machines {
		configured[m.ID] = true
	}
	for len(out) < limit {
		// Peeked, not read: only what goes is claimed (marked in flight)
		// below, so the quota may drop the rest meanwhile, oldest first.
		recs, err := f.a.buf.Peek(buffer.LaneEvents, after, eventScanWindow)
		if err != nil {
			return nil, fmt.Errorf("read events: %w", err)
		}
		for _, r := range fairOrder(recs) {
			// Once the round has its events, only records of machines no
			// longer configured are looked at: status counts those that
			// wait, flush leaves them out, and those held too long go to
			// the dead letters.
			if len(out) == limit && configured[r.Key] {
				continue
			}
			if err := take(r); err != nil {
				return nil, err
			}
		}
		if len(recs) < eventScanWindow {
			break
		}
		after = recs[len(recs)-1].Seq
	}
	recs := make([]buffer.Record, len(out))
	for i, e := range out {
		recs[i] = e.rec
	}
	gone, err := f.a.buf.Claim(recs)
	if err != nil {
		return nil, fmt.Errorf("read events: %w", err)
	}
	if len(gone) > 0 {
		// Dropped by the quota since they were peeked (counted and logged
		// as dropped there): not booked.
		out = slices.DeleteFunc(out, func(e pendingEvent) bool {
			return slices.ContainsFunc(gone, func(r buffer.Record) bool { return r.Seq == e.rec.Seq })
		})
	}
	slices.SortFunc(out, func(a, b pendingEvent) int { return cmp.Compare(a.rec.Seq, b.rec.Seq) })
	return out, nil
}

// eventScanWindow is how many event records readEvents looks at a time
// and shares out among their machines.
const eventScanWindow = 10000

// fairOrder returns recs (in sequence order) a key at a time in turn:
// the oldest record of each key, then the second of each, and so on, each
// turn in sequence order. Each key's records keep their order.
func fairOrder(recs []buffer.Record) []buffer.Record {
	return inTurn(recs, func(r buffer.Record) string { return r.Key })
}

// inTurn returns xs a key at a time in turn (see fairOrder).
func inTurn[T any](xs []T, key func(T) string) []T {
	turn := make([]int32, len(xs)) // the element's place among its key's
	seen := map[string]int32{}
	for i, x := range xs {
		k := key(x)
		turn[i] = seen[k]
		seen[k]++
	}
	idx := make([]int32, len(xs))
	for i := range idx {
		idx[i] = int32(i)
	}
	slices.SortStableFunc(idx, func(a, b int32) int { return cmp.Compare(turn[a], turn[b]) })
	out := make([]T, len(xs))
	for i, j := range idx {
		out[i] = xs[j]
	}
	return out
}

// line is a downtime record of the round made ready for Odoo.
type line struct {
	rec  buffer.Record
	d    odoo.Downtime
	loss string // its name, to look it up again
	skip bool   // acknowledged without a call
	end  int64  // closes the machine's line that started at d.Start (ms)
	key  int64  // the record's start (ms), its line's external id: d.Start moves with a step of this box's clock
	late bool   // a late reason or stored end (eventRecord.Late)
	// asLine: a late record that stands in for its line's record of this
	// round (acknowledged without a call, as later records of one line
	// win): refused for good, it is dead-lettered as a line of its own,
	// not as late, else its retry finds no line in Odoo and the stop has
	// none.
	asLine bool
}

// forwardEvents writes downtime lines with external ids (idempotent) and
// acknowledges them; a line Odoo refuses for good is dead-lettered. The
// round's lines go in loads of linesPerLoad rows (loadEnd), each acknowledged when Odoo
// has it: a backlog of stops after an outage is not held to one load a
// round (the drain probe: 2,129 lines of 100 machines took ten minutes
// when a round sent one load, each round also booking every machine's
// counts and scrap).
func (f *forwarder) forwardEvents(ctx context.Context, cfg *config.Config, events []pendingEvent, wos map[string]*odoo.Workorder) error {
	var lines []line
	onWC := map[int64]int64{}             // workorderOn's answers this round
	history := map[int64]*odoo.Timeline{} // stopWorkorder's, by work center
	oldest := map[int64]time.Time{}       // the round's oldest stop start, by work center
	for _, e := range events {
		if t := fromMS(e.ev.Start); oldest[e.wc].IsZero() || t.Before(oldest[e.wc]) {
			oldest[e.wc] = t
		}
	}
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
				l, err := f.downtimeLine(ctx, xmlid)
				if err != nil {
					return err
				}
				if l.Closed {
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
				if err := f.deadLetter(ctx, r, lossRefused(loss, err)); err != nil {
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
		if ev.Rx != nil && ev.End != 0 {
			// Received before a step of this box's clock: dated in the new
			// clock. The external id stays the record's own, so a retry
			// after a step seen meanwhile updates the same line.
			if by := f.a.clockSince(d.End, *ev.Rx); by != 0 {
				d.Start, d.End = d.Start.Add(by), d.End.Add(by)
				f.a.eventLog.log("redated "+r.Key, f.a.log, slog.LevelInfo,
					"a stop received before a step of this box's clock is booked in the new clock",
					"machine", r.Key, "by", by.Round(time.Second), "start", d.Start, "end", d.End)
			}
		}
		// An open line (block_workcenter) names no work order: Odoo allows a
		// user one open line per work order (_check_open_time_ids), and two
		// machines of one work center may be stopped at once. Closing the
		// line sets it. A late reason (or stored end) keeps the work center
		// and work order the line has (the machine may have been moved since).
		asLine := false
		switch wo := wos[r.Key]; {
		case ev.Late:
			inRound := false // its stop is in this round: where that goes
			for i := len(lines) - 1; i >= 0 && !inRound; i-- {
				if !lines[i].skip && lines[i].d.XMLID == d.XMLID {
					d.WorkcenterID, d.WorkorderID, inRound = lines[i].d.WorkcenterID, lines[i].d.WorkorderID, true
					asLine = !lines[i].late || lines[i].asLine
				}
			}
			if inRound {
				break
			}
			l, err := f.downtimeLine(ctx, d.XMLID)
			if err != nil {
				return err
			}
			if !l.Found {
				f.a.log.Info("a late downtime reason (or a stop's end its edge node stored) is not booked: Odoo has no line for its stop (deleted there, or its record is in the dead letters)",
					"machine", r.Key, "start", d.Start, "end", d.End, "reason", ev.Reason, "external_id", d.XMLID)
				lines = append(lines, line{rec: r, skip: true})
				continue
			}
			d.WorkcenterID, d.WorkorderID = cmp.Or(l.WorkcenterID, d.WorkcenterID), l.WorkorderID
		case d.End.IsZero():
		case !e.elsewhere && wo != nil:
			d.WorkorderID = wo.ID
			lag := f.a.srcOff.lag(r.Key, ev.Off)
			if id, ok, err := f.stopWorkorder(ctx, r.Key, wo, d.Start, r.Time, lag, oldest, history); err != nil {
				return err
			} else if ok {
				d.WorkorderID = id
			}
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
		l := line{rec: r, d: d, loss: loss, key: ev.Start, late: ev.Late, asLine: asLine}
		if ev.End != 0 {
			l.end = ev.Start
		}
		lines = append(lines, l)
	}
	if len(lines) == 0 {
		return nil
	}
	// The loads take each machine's lines in turn, as readEvents took the
	// records (its first to the first load): another machine's stop
	// queued behind one machine's backlog is in the first load, not the
	// round's last. Each machine's lines keep their order.
	size := f.loadLines() // shrunk after loads Odoo took too long for (loadsize.go)
	if len(lines) > size {
		lines = inTurn(lines, func(l line) string { return l.rec.Key })
	}
	// Later records of one line (open, then closed) win: an earlier one is
	// acknowledged without a call, in whichever load it falls.
	later := map[string]bool{}
	for i := len(lines) - 1; i >= 0; i-- {
		if l := &lines[i]; !l.skip {
			l.skip = later[l.d.XMLID]
			later[l.d.XMLID] = true
		}
	}
	// Lines left in doubt that this round does not send (acknowledged
	// otherwise meanwhile: dead-lettered, dropped by the quota) are not
	// read back: forgotten.
	for x := range f.doubtLines {
		if !later[x] {
			delete(f.doubtLines, x)
		}
	}
	f.roundProgress(func(p *roundProgress) {
		p.phase, p.loads = phaseDowntime, loadsOf(lines, size)
	})
	for len(lines) > 0 {
		n := loadEnd(lines, size)
		if err := f.sendLines(ctx, lines[:n]); err != nil {
			return err
		}
		lines = lines[n:]
		size = f.loadLines() // grown after a load answered quickly
		f.roundProgress(func(p *roundProgress) {
			p.loadsSent++
			p.eventsAcked += n
			p.loads = p.loadsSent + loadsOf(lines, size)
		})
	}
	return nil
}

// loadEnd is how many of lines the next load takes: up to size rows — the
// lines it sends — and the records acknowledged without a call among
// them (line.skip), which cost Odoo nothing. The load size counts rows, as
// Odoo's time does and as a rebook's loads do (review45: counted in
// records, where a closed stop is two and one row, a drain's loads carried
// half the rows a rebook's did at the same size).
func loadEnd(lines []line, size int) int {
	rows := 0
	for i, l := range lines {
		if !l.skip {
			if rows++; rows == size {
				return i + 1
			}
		}
	}
	return len(lines)
}

// loadsOf is how many loads of size rows lines make (loadEnd).
func loadsOf(lines []line, size int) int {
	n := 0
	for len(lines) > 0 {
		lines = lines[loadEnd(lines, size):]
		n++
	}
	return n
}

// deadLetterLine dead-letters l's record with reason: one standing in for
// its line's record of the round (line.asLine) as a line of its own.
func (f *forwarder) deadLetterLine(ctx context.Context, l line, reason string) error {
	if !l.asLine {
		return f.deadLetter(ctx, l.rec, reason)
	}
	var ev eventRecord
	if err := json.Unmarshal(l.rec.Data, &ev); err != nil {
		return f.deadLetter(ctx, l.rec, reason)
	}
	ev.Late = false
	return f.moveToDeadLettersAs(ctx, l.rec, mustJSON(ev), refusedForGood, reason)
}

// workcenterGone tells whether err, Odoo's refusal of a line on work
// center wcID, is that work center no longer found by Odoo's searches since
// the agent looked it up (archived, or moved to a company the bot user may
// not use): load finds a database id with a search (odoo.MissingReference).
// Then its code is asked of Odoo again; when Odoo no longer finds it under
// that id, the line is no refusal for good: it is left unacknowledged, and
// the next round looks every work center up again (as a flush does), so
// the machine's error says why its records, this line among them, wait.
func (f *forwarder) workcenterGone(ctx context.Context, wcID int64, err error) (bool, error) {
	if !odoo.MissingReference(err, "workcenter_id") {
		return false, nil
	}
	code := ""
	for c, wc := range f.wcs {
		if wc.ID == wcID {
			code = c
			break
		}
	}
	if code == "" {
		return false, nil
	}
	var found map[string]odoo.Workcenter
	if err := f.call(ctx, "workcenters_by_code", func(ctx context.Context) error {
		var err error
		found, _, err = f.client.WorkcentersByCodes(ctx, []string{code})
		return err
	}); err != nil {
		return false, err
	}
	if wc, ok := found[code]; ok && wc.ID == wcID {
		return false, nil
	}
	f.forget.Store(true)
	f.a.log.Warn("Odoo no longer finds the work center of a downtime line (archived, or in a company the bot user may not use): the line waits",
		"workcenter", code, "err", err)
	return true, nil
}

// sendLines books lines but those to skip in one load call (where Odoo
// refuses it for good, one by one, dead-lettering the refused) and
// acknowledges their records with what the buffer keeps of them.
func (f *forwarder) sendLines(ctx context.Context, lines []line) error {
	ids := make([]int64, len(lines)) // the line's database id, as Odoo answered the upsert
	found, err := f.readBack(ctx, lines, ids)
	if err != nil {
		return err
	}
	var batch []odoo.Downtime
	var batchLine []int // lines' index of each of batch
	for i, l := range lines {
		if !l.skip && !found[i] {
			batch = append(batch, l.d)
			batchLine = append(batchLine, i)
		}
	}
	acked := make([]buffer.Record, 0, len(lines))
	loaded := map[int]bool{}   // lines a load of a part of batch booked
	tooLarge := map[int]bool{} // lines a proxy refused alone as too large: dead-lettered
	if len(batch) > 0 {
		err = f.loadParts(ctx, batch, batchLine, ids, loaded)
		for odoo.TooLarge(err) {
			// One line alone is more than the proxy in front of Odoo
			// takes: no load carries it through that proxy. The rest
			// goes on. (The lines loadParts booked come first.)
			for loaded[batchLine[0]] {
				batch, batchLine = batch[1:], batchLine[1:]
			}
			i := batchLine[0]
			if err := f.deadLetterLine(ctx, lines[i], fmt.Sprintf("downtime line %s: a load of this line alone (what the line is: its external id, work center, work order, loss, times and the stop's reason) is more than the proxy in front of Odoo takes: raise its limit on a request's body (nginx's client_max_body_size), then plantedge deadletter retry: %v",
				lines[i].d.XMLID, err)); err != nil {
				return err
			}
			tooLarge[i] = true
			batch, batchLine = batch[1:], batchLine[1:]
			err = nil
			if len(batch) > 0 {
				err = f.loadParts(ctx, batch, batchLine, ids, loaded)
			}
		}
	}
	switch {
	case err == nil:
		for i, l := range lines {
			if !tooLarge[i] {
				acked = append(acked, l.rec)
			}
		}
	case odoo.IsPermanent(err) && !odoo.IsAuth(err):
		// Find the refused line(s) one by one; the rest go through. The
		// loss reasons are looked up again first: one deleted and created
		// anew in Odoo has a new id.
		f.losses = map[string]int64{}
		gone := map[int64]bool{} // work centers Odoo's searches lost since looked up
		for i, l := range lines {
			if tooLarge[i] {
				continue // dead-lettered
			}
			if l.skip || found[i] || loaded[i] {
				acked = append(acked, l.rec)
				continue
			}
			if gone[l.d.WorkcenterID] {
				continue // waits (workcenterGone)
			}
			id, err := f.loss(ctx, l.loss)
			switch {
			case err == nil:
				l.d.LossID = id
			case odoo.IsPermanent(err) && !odoo.IsAuth(err):
				if err := f.deadLetterLine(ctx, l, lossRefused(l.loss, err)); err != nil {
					return err
				}
				continue
			default:
				return err
			}
			err = f.call(ctx, "upsert_downtime", func(ctx context.Context) error {
				var err error
				ids[i], err = f.client.UpsertDowntime(ctx, l.d)
				return err
			})
			switch {
			case err == nil:
				acked = append(acked, l.rec)
			case odoo.IsPermanent(err) && !odoo.IsAuth(err):
				g, gerr := f.workcenterGone(ctx, l.d.WorkcenterID, err)
				if gerr != nil {
					return gerr
				}
				if g {
					gone[l.d.WorkcenterID] = true
					continue
				}
				if err := f.deadLetterLine(ctx, l, "downtime line "+l.d.XMLID+": "+err.Error()); err != nil {
					return err
				}
			default:
				if odoo.InDoubt(err) {
					f.noteDoubt(l.d)
				}
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
	var sent []sentLine
	var booked []buffer.KV // what Odoo has, kept a while (see rebook.go)
	now := time.Now()
	for i, l := range lines {
		if ids[i] != 0 {
			sent = append(sent, sentLine{machine: l.rec.Key, start: fromMS(l.key), end: l.d.End, id: ids[i]})
			d := l.d
			booked = append(booked, f.keepBooked(now, bookedEntry{Machine: l.rec.Key, Line: &d}))
		}
	}
	meta, err := f.checkOpenLines(sent)
	if err != nil {
		return err
	}
	meta = append(meta, booked...)
	var ended []sentLine
	for _, l := range lines {
		if l.end != 0 && ackedSeq[l.rec.Seq] {
			ended = append(ended, sentLine{machine: l.rec.Key, start: fromMS(l.key), end: l.d.End})
		}
	}
	stashed, err := f.stashedLinesClosed(ended)
	if err != nil {
		return err
	}
	meta = append(meta, stashed...)
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
	for i := range found { // booked: read back again only if not acknowledged
		delete(f.doubtLines, lines[i].d.XMLID)
	}
	f.left.Add(uint64(len(acked)))
	f.a.metrics.forwarded.WithLabelValues("downtime").Add(float64(len(acked)))
	return nil
}

// loadParts books batch (the lines idx of sendLines' lines, ids their ids
// as Odoo answers) in loads of the size in force, booked noting each line
// a load booked: when a proxy in front of Odoo refuses a load as too
// large, the size halves (noteLoad) and the same lines go in smaller
// loads, down to one line. It returns the first other error, or the
// TooLarge of a load of one line, the first of what is left (batch[k] of
// the first line not booked: the lines booked are the first of idx).
func (f *forwarder) loadParts(ctx context.Context, batch []odoo.Downtime, idx []int, ids []int64, booked map[int]bool) error {
	for len(batch) > 0 {
		n := min(len(batch), f.loadLines())
		part, partIdx := batch[:n], idx[:n]
		err := f.callLoad(ctx, n, func(ctx context.Context) error {
			got, err := f.client.UpsertDowntimes(ctx, part)
			if err == nil {
				for j, id := range got {
					ids[partIdx[j]] = id
				}
			}
			return err
		})
		if odoo.InDoubt(err) {
			f.noteDoubt(part...)
		}
		switch {
		case err == nil:
			for _, i := range partIdx {
				booked[i] = true
			}
			batch, idx = batch[n:], idx[n:]
		case odoo.TooLarge(err) && n > 1:
			// noteLoad halved the size in force: the same lines again,
			// in smaller loads.
		default:
			return err
		}
	}
	return nil
}

// noteDoubt notes the lines of a load Odoo did not answer (doubtLines).
func (f *forwarder) noteDoubt(ds ...odoo.Downtime) {
	if f.doubtLines == nil {
		f.doubtLines = map[string]bool{}
	}
	for _, d := range ds {
		f.doubtLines[d.XMLID] = true
	}
}

// readBack reads back, by their external ids, the lines of a load to be
// sent that went in a load left in doubt (doubtLines) — the settle passed:
// the round waits for it, so Odoo commits none of it any more — and
// reports which Odoo has as they would be sent (odoo.BookedDowntime.Same),
// with their ids put in ids: booked, as a load's answer would have them,
// and not sent again (read back again until their records are
// acknowledged). Guarantee 2 (SPEC): after a timeout the agent
// re-reads state before it acts again. A line Odoo always committed too
// late to answer (a slow compute on create) was sent again at each settle
// for good, every machine's quantities waiting behind it (review45). A
// line found otherwise (open where the load closed it: that load did not
// commit) or not found goes in the load, as one never in doubt: by its
// external id, it updates whatever Odoo has by then, never adds a second.
// A lookup Odoo refuses for good is not made: the lines are sent again,
// as before.
func (f *forwarder) readBack(ctx context.Context, lines []line, ids []int64) (map[int]bool, error) {
	if len(f.doubtLines) == 0 || time.Now().Before(f.settleUntil) {
		return nil, nil
	}
	var xmlids []string
	for _, l := range lines {
		if !l.skip && f.doubtLines[l.d.XMLID] {
			xmlids = append(xmlids, l.d.XMLID)
		}
	}
	if len(xmlids) == 0 {
		return nil, nil
	}
	booked, err := callFor(ctx, f, "downtime_lines", func(ctx context.Context) (map[string]odoo.BookedDowntime, error) {
		return f.client.DowntimesByXMLID(ctx, xmlids)
	})
	switch {
	case err == nil:
	case odoo.IsPermanent(err) && !odoo.IsAuth(err):
		f.a.log.Warn("downtime lines left in doubt could not be read back: they are sent again (by their external ids: none twice)",
			"component", "forwarder", "lines", len(xmlids), "err", err)
		booked = nil
	default:
		return nil, err
	}
	found := map[int]bool{}
	for i, l := range lines {
		if b, ok := booked[l.d.XMLID]; ok && !l.skip && f.doubtLines[l.d.XMLID] && b.Same(l.d) {
			found[i], ids[i] = true, b.ID
		} else if !l.skip {
			// Sent now: in doubt again only if this load is.
			delete(f.doubtLines, l.d.XMLID)
		}
	}
	f.a.log.Info("downtime lines of a load left in doubt read back after the settle: those Odoo has as sent are booked, the others sent again",
		"component", "forwarder", "read_back", len(xmlids), "booked", len(found), "sent_again", len(xmlids)-len(found))
	return found, nil
}

// stopWorkorder returns the work order a stop of machine that began at
// start goes to, when that is not wo, the one in progress now (ok false):
// the one in progress on the work center when the stop began — finished
// since, or paused for a rush order, while the link was down — or none (0)
// when none was (between two orders). Before, a backlog's stops all went to
// the order in progress when they reached Odoo (the second attribution
// probe). As for counts (madeEarlier), only a backlog is looked up — its
// record, buffered when the stop ended, waited backlogAge, or came late
// (see offsets; lag) — and a stop that
// began up to backlogClockSlack before wo started is wo's.
// oldest holds the round's oldest stop start per work center, history the
// round's answers: one timeline per work center a round.
func (f *forwarder) stopWorkorder(ctx context.Context, machine string, wo *odoo.Workorder, start, buffered time.Time, lag time.Duration, oldest map[int64]time.Time, history map[int64]*odoo.Timeline) (int64, bool, error) {
	began := wo.DateStart.Truncate(time.Second)
	if began.IsZero() {
		return 0, false, nil
	}
	before := start.Before(began.Add(-f.clockSlack()))
	if !f.backlog(buffered, lag) || !before && start.Before(began) {
		// Not a backlog: wo's, as before (a stop over a changeover goes
		// to the new order; a machine clock behind Odoo's moves nothing).
		return 0, false, nil
	}
	if !before && f.soloFrom(wo, start) {
		// After wo began, and the only order in play since: wo's. (One
		// that began before wo's start may fall between two orders: the
		// timeline tells.)
		return 0, false, nil
	}
	tl, ok := history[wo.WorkcenterID]
	if !ok {
		// Since the round's oldest stop on the work center: one timeline
		// serves every stop of the round.
		since := start
		if t, ok := oldest[wo.WorkcenterID]; ok && t.Before(since) {
			since = t
		}
		var err error
		if tl, err = f.workTimeline(ctx, machine, "stops", wo, since); err != nil {
			return 0, false, err
		}
		history[wo.WorkcenterID] = tl
	}
	if tl == nil {
		return 0, false, nil
	}
	at, _, _ := tl.At(start)
	switch {
	case at != nil && at.ID == wo.ID, at == nil && !before:
		// wo's; or after wo started while none other was (resumed after
		// a rush order that was finished).
		return 0, false, nil
	case at == nil:
		// Once a minute a machine: a backlog may hold a thousand stops.
		f.a.eventLog.log("stop between "+machine, f.a.log, slog.LevelInfo, "a stop that began while no work order was in progress is booked without one",
			"machine", machine, "start", start, "in_progress_now", wo.Name)
		return 0, true, nil
	case at.State == "cancel":
		// Its time on the work center stays, with no order: a cancelled
		// order is closed to bookings.
		f.a.eventLog.log("stop cancelled "+machine, f.a.log, slog.LevelInfo, "a stop that began on a work order cancelled since is booked without one",
			"machine", machine, "workorder", orderName(at), "start", start, "in_progress_now", wo.Name)
		return 0, true, nil
	}
	f.a.eventLog.log("stop earlier "+machine, f.a.log, slog.LevelInfo,
		"a stop that began on an earlier work order (finished, or paused for another, before it reached Odoo) is booked on that one",
		"machine", machine, "workorder", at.Name, "state", at.State, "start", start, "in_progress_now", wo.Name)
	return at.ID, true, nil
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

// downtimeLine reads what Odoo has of the line with external id xmlid.
func (f *forwarder) downtimeLine(ctx context.Context, xmlid string) (odoo.DowntimeLine, error) {
	l, err := callFor(ctx, f, "downtime_line", func(ctx context.Context) (odoo.DowntimeLine, error) {
		return f.client.DowntimeLine(ctx, xmlid)
	})
	return l, err
}

func closedMetaKey(machine string) string { return "closed/" + machine }

// openMetaKey holds the start (ms) and database id of the machine's
// downtime line Odoo has open: an openLine.
func openMetaKey(machine string) string { return "open/" + machine }

// openLine is a downtime line Odoo has open: its start (ms) and database
// id, as openMetaKey holds them ("<start> <id>"); put away for an Odoo
// plantedge was pointed away from (switchOdoo), also the stop's end (ms)
// once it ended there ("<start> <id> <end>"; 0: not yet).
type openLine struct{ start, id, end int64 }

// parseOpenLine reads an openLine; ok when it holds at least start and id.
func parseOpenLine(v string) (l openLine, ok bool) {
	n, _ := fmt.Sscan(v, &l.start, &l.id, &l.end)
	return l, n >= 2
}

func (l openLine) String() string {
	if l.end == 0 {
		return fmt.Sprintf("%d %d", l.start, l.id)
	}
	return fmt.Sprintf("%d %d %d", l.start, l.id, l.end)
}

// sentLine is a downtime line Odoo took, with the id it answered; start is
// the one its external id names.
type sentLine struct {
	machine    string
	start, end time.Time
	id         int64
}

// checkOpenLines compares the ids Odoo answered for lines it had open with
// the ids it gave them when they were opened. The upsert goes by external
// id, and deleting a line in Odoo deletes its external id too: a line
// someone deleted while it was open comes back as a new line, with a new
// id, when the stop ends. The agent cannot tell a mistake from a stop
// that was none, so it writes the line (the stop happened) and says so.
// It returns the meta entries that keep the open lines' ids.
func (f *forwarder) checkOpenLines(sent []sentLine) ([]buffer.KV, error) {
	var meta []buffer.KV
	for _, l := range sent {
		key := openMetaKey(l.machine)
		b, err := f.a.buf.Meta(key)
		if err != nil {
			return nil, err
		}
		var open openLine
		if b != nil {
			if o, ok := parseOpenLine(string(b)); ok {
				open = o
			}
		}
		start, id := open.start, open.id
		if start == l.start.UnixMilli() && id != 0 && id != l.id {
			what := "it is written again, closed"
			if l.end.IsZero() {
				what = "it is written again, open"
			}
			f.a.log.Warn("the downtime line of a stop was deleted in Odoo while it was open; "+what+
				": delete it again if the machine did not stop", "machine", l.machine, "start", l.start,
				"deleted_id", id, "new_id", l.id)
		}
		switch {
		case l.end.IsZero():
			meta = append(meta, buffer.KV{Key: key, Value: []byte(openLine{start: l.start.UnixMilli(), id: l.id}.String())})
		case b != nil && start <= l.start.UnixMilli():
			meta = append(meta, buffer.KV{Key: key}) // closed: forgotten
		}
	}
	return meta, nil
}

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
	n, err := strconv.ParseInt(string(b), 10, 64)
	if err != nil {
		// Damaged on the disk: as if none (the next closed line writes it
		// anew) — not an error that stops every machine's forwarding.
		f.a.eventLog.log("damaged closed "+machine, f.a.log, slog.LevelWarn,
			"the buffer file's note of this machine's last closed downtime line cannot be read (damaged on the disk?): taken as none",
			"machine", machine, "err", err)
		return 0, nil
	}
	return n, nil
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

// lossRefused is the dead-letter reason of a downtime line whose loss
// reason Odoo does not have: renamed there, most likely (the Odoo probe
// renamed Equipment Failure), which an external id would have survived.
func lossRefused(loss string, err error) string {
	msg := fmt.Sprintf("loss reason %q: %v", loss, err)
	if errors.Is(err, odoo.ErrNotFound) && !strings.Contains(loss, ".") {
		msg += " (renamed in Odoo? Map the reason code to the new name, or to the loss reason's external id such as mrp.block_reason1, " +
			"which a rename does not change; reload, then plantedge deadletter retry all)"
	}
	return msg
}

func (f *forwarder) loss(ctx context.Context, name string) (int64, error) {
	if id, ok := f.losses[name]; ok {
		return id, nil
	}
	id, err := callFor(ctx, f, "loss_id", func(ctx context.Context) (int64, error) {
		return f.client.LossID(ctx, name)
	})
	if err != nil {
		return 0, err
	}
	f.losses[name] = id
	return id, nil
}
