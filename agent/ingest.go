package agent

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"log/slog"
	"maps"
	"net"
	"net/url"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/plantedge/plantedge/agent/config"
	"github.com/plantedge/plantedge/agent/mapping"
	"github.com/plantedge/plantedge/buffer"
	"github.com/plantedge/plantedge/connectors"
	"github.com/plantedge/plantedge/internal/decimal"
)

// maxIngestBatch bounds how many samples one buffer commit carries.
const maxIngestBatch = 4096

// ingestQueue is how many samples the sources may hand over (Deliver)
// while the ingest loop commits; Deliver blocks beyond it (sampleQueue).
const ingestQueue = 8192

// machineMeta is what the agent keeps durably per machine, in the same
// transaction as the records the samples produced: the mapping's state (last
// raw counter values, run state) and running totals for status.
type machineMeta struct {
	Mapping []byte  `json:"mapping"`
	Good    float64 `json:"good"`
	Scrap   float64 `json:"scrap"`
	// Sum is the valueSum of Mapping: bbolt checks its pages, not the
	// values in them, and a flipped bit that leaves the JSON readable would
	// change a counter's last value unseen (the bitrot probe: 1,097 pieces
	// never made). 0 in states of older versions, which go unchecked.
	Sum uint32 `json:"sum,omitempty"`
	// Off is the least receipt-less-source-time difference (ms) of its
	// values lately (see offsets), so that values replayed at the next
	// start are measured against it. Absent in states of older versions.
	Off *int64 `json:"off,omitempty"`
	// Src is the source time (Unix ms) of the last value Off noted: the
	// first value after the next start, stamped before it, shows the
	// source's clock set back meanwhile (offsets.restore).
	Src int64 `json:"src,omitempty"`
}

func machineMetaKey(id string) string { return "machine/" + id }

// Deliver implements connectors.Sink: it queues a sample for the ingest
// loop, blocking while the queue is full (backpressure to the source).
func (a *Agent) Deliver(ctx context.Context, s connectors.Sample) error {
	return a.samples.put(ctx, a.stopIngest, s)
}

var errIngestStopping = errors.New("agent stopping")

// ingest runs until stop is closed: it takes queued samples in batches, maps
// them to records and makes them durable, then acknowledges them to their
// sources. It is the only writer of the mapping state.
func (a *Agent) ingest(ctx context.Context) {
	// Grown as the load needs (a sample is 272 bytes: 4,096 of them were
	// 1.1 MB held for good, where 1,000 tags changing 10 times a second
	// make batches of a few hundred), and let go some seconds after a
	// burst.
	var batch []connectors.Sample
	var shrink shrinker
	for {
		batch = batch[:0]
		// State changes outside a sample (a reload's) first: in this
		// goroutine, so that their commit is ordered with the samples'
		// commits of the same machines, and before samples that came
		// after them (a reload queues its job, then reconnects: a sample
		// taken first, on a topic the reload dropped, was told as another
		// client's — the reload probe).
		select {
		case job := <-a.jobs:
			job(ctx)
			continue
		default:
		}
		select {
		case job := <-a.jobs:
			job(ctx)
			continue
		case <-a.samples.ready:
			if batch = a.samples.take(batch, maxIngestBatch); len(batch) == 0 {
				continue
			}
		case <-a.stopIngest:
			// Finish what the sources already handed over; unacked samples
			// would be redelivered anyway, but acking them now avoids that.
			for {
				if batch = a.samples.take(batch[:0], maxIngestBatch); len(batch) == 0 {
					return
				}
				a.commitSamples(ctx, batch)
			}
		}
		a.commitSamples(ctx, batch)
		if shrink.note(len(batch), cap(batch), time.Now()) {
			batch = nil // grown by a burst that is over
		}
	}
}

// maxStampLead bounds how far uniqueStamp moves receive times ahead of the
// clock (a backlog of one topic faster than 1,000 messages a second).
const maxStampLead = time.Minute

// uniqueStamp returns t, or the millisecond after the last one given to
// address k when t is not later: the receive time is the time of a value
// whose source gave none (an MQTT topic without timestamp_field), and a
// stop is keyed by its start's millisecond, so a backlog the broker
// delivers in one burst (stops queued while the agent was down) would
// otherwise fold several stops into one line. Only an address that feeds
// a signal (keep: Mapper.Feeds) has its stamp kept. Caller holds stateMu.
func (a *Agent) uniqueStamp(k sampleAddr, t time.Time, keep bool) time.Time {
	if !keep {
		return t
	}
	if last, ok := a.lastStamp[k]; ok && t.UnixMilli() <= last.UnixMilli() {
		if next := time.UnixMilli(last.UnixMilli() + 1); next.Sub(t) <= maxStampLead {
			t = next
		}
	}
	a.lastStamp[k] = t
	return t
}

// commitSamples maps one batch and appends its records and the changed
// machine state in one durable transaction, retrying until it succeeds or
// ctx ends; only then are the samples acknowledged.
func (a *Agent) commitSamples(ctx context.Context, batch []connectors.Sample) {
	m := a.mapper.Load()
	type acc struct {
		recs []countRecord // more than one when the batch's values span more than recordSpan
	}
	// Sized for the batch's machines at first, not grown by doubling
	// through a batch of 1,000.
	perMachine := min(len(batch), len(a.cfg.Load().Machines))
	counts := make(map[string]*acc, min(len(batch), 2*perMachine))
	var order []string // count keys in first-seen order
	var events []buffer.Record
	changed := make(map[string]bool, perMachine)
	// added is the batch's counts per machine: stored with its records,
	// and shown (a.totals) only once they are in the buffer — status must
	// not count pieces a round (a flush) cannot see yet.
	added := make(map[string]totals, perMachine)
	a.stateMu.Lock()
	for _, s := range batch {
		// A message on a topic no machine maps is skipped before anything is
		// kept of its topic: stray topics come from outside (another
		// client's subscriptions in the broker's session), and each kept a
		// stamp for good (the lifecycle review: 200,000 stray topics, 25 MB
		// of heap).
		switch {
		case s.Kind != connectors.KindMQTT || m.Maps(s.Kind, s.Source, s.Address):
		case a.dropped[s.Source+"\x00"+s.Address]:
			a.strayLog.log(s.Source+"\x00"+s.Address, a.log, slog.LevelInfo,
				"message on a topic an earlier configuration mapped, skipped (the broker's session keeps its subscription until it is dropped)",
				"source", s.Source, "topic", s.Address)
			continue
		default:
			// The agent subscribes to exactly the topics its machines use:
			// the broker's session for this client_id has subscriptions of
			// another client (a second agent with the same client_id, the
			// old box after a move) or of an earlier configuration.
			sc := a.strays[s.Source]
			sc.n++
			sc.last, sc.at = s.Address, time.Now()
			a.strays[s.Source] = sc
			a.strayLog.log(s.Source, a.log, slog.LevelWarn, "message on a topic no machine maps, skipped: the broker session of this client_id has subscriptions this agent did not make (another agent or the old box using the same client_id? Then each takes messages meant for the other)",
				"source", s.Source, "topic", s.Address)
			continue
		}
		k := sampleAddr{s.Kind, s.Source, s.Address}
		// Nothing is kept per address for one that feeds no signal: a
		// Sparkplug B edge node's filter brings every topic under it (its
		// devices no signal reads, a device id per serial number).
		keep := m.Feeds(s.Kind, s.Source, s.Address)
		if a.clockShift != nil {
			s.ReceiveTime = s.ReceiveTime.Add(a.clockShift())
		}
		received := s.ReceiveTime // before uniqueStamp moves it ahead in a burst
		s.ReceiveTime = a.uniqueStamp(k, s.ReceiveTime, keep)
		if s.Seen.Up > 0 {
			// Moved with it: the two clocks' distance stays what it was
			// at the receipt (a burst's stamps moved ahead are no step of
			// the wall clock; mapping.BoxStep).
			s.Seen.Up += s.ReceiveTime.Round(0).Sub(received.Round(0))
		}
		if !s.Good {
			// Logged when it turns bad (or bad another way), and when it is
			// good again, at most once a minute each per tag (then with how
			// many were left out): a quality that stays bad shows in status.
			hint := qualityHint(s.Quality)
			if q, ok := a.badQuality[k]; !ok || q != s.Quality {
				attrs := []any{"source", s.Source, "address", s.Address, "quality", s.Quality}
				if hint != "" {
					attrs = append(attrs, "hint", hint)
				}
				a.badLog.log(s.Source+" "+s.Address, a.log, slog.LevelWarn, "source value has bad or uncertain quality: ignored until it is good again", attrs...)
			}
			if keep {
				a.badQuality[k] = s.Quality
			}
			if hint != "" {
				// An element the array does not have is the mapping's
				// fault, not the machine's: counted as a value that could
				// not be used, like a field missing from a payload.
				a.countMalformed(s, s.Quality)
			}
		} else {
			if q, ok := a.badQuality[k]; ok {
				delete(a.badQuality, k)
				a.goodLog.log(s.Source+" "+s.Address, a.log, slog.LevelInfo, "source value good again", "source", s.Source, "address", s.Address, "was", q)
			}
			if s.Quality != "" {
				// Good with a sub-code (GoodClamped: held at a limit;
				// GoodLocalOverride: set by hand at the PLC): taken, and
				// said, once a minute at most per tag (the uatypes probe:
				// nothing said so).
				a.goodLog.log("flagged "+s.Source+" "+s.Address, a.log, slog.LevelWarn,
					"source value is good but flagged by the server: taken as it is (a clamped value stands at a limit; a local override was set by hand at the PLC)",
					"source", s.Source, "address", s.Address, "quality", s.Quality)
			}
			if s.Kind == connectors.KindOPCUA && s.Value != nil {
				// A type compare per sample, no allocation: named only when
				// it changed.
				typ := s.DataType
				if typ == "" {
					typ = reflect.TypeOf(s.Value).String()
				}
				if was, ok := a.valueType[k]; ok && was != typ {
					a.typeLog.log(s.Source+" "+s.Address, a.log, slog.LevelWarn,
						"a source value's data type changed (a PLC program or gateway change?): check that the tag is still what its signal reads (a counter's rollover, too)",
						"source", s.Source, "address", s.Address, "was", was, "now", typ)
				}
				if keep {
					a.valueType[k] = typ
				}
			}
		}
		evs, ch, err := m.Apply(a.state, s)
		if err != nil && keep {
			a.unusable[k] = err
		} else if s.Good {
			delete(a.unusable, k)
		}
		// A good sample whose values could not be used (a payload not
		// read, the field missing) does not count as one: last_sample_age
		// would show a machine fed while its counters stand still.
		news, asked := false, false // (countNews, asked once a sample)
		for _, fed := range a.state.FedSignals() {
			a.lastSample[fed.Machine] = received
			switch fed.Signal {
			case mapping.GoodCount:
				if !asked {
					news, asked = a.countNews(k, s), true
				}
				if news {
					a.countFed[fed.Machine] = received
					a.countWatchAnew(fed.Machine)
				} else {
					a.countSame[fed.Machine]++
				}
			case mapping.Running:
				if _, ok := a.runFed[fed.Machine]; !ok {
					a.runFed[fed.Machine] = received
				}
			}
		}
		if (len(a.state.Absent) > 0 || len(a.state.TimeAbsent) > 0) && s.Kind == connectors.KindMQTT {
			m.EachUse(s.Kind, s.Source, s.Address, func(id string, sig mapping.Signal) {
				k := mapping.SignalKey{Machine: id, Signal: sig}
				if ab := a.state.Absent[k]; ab != nil && ab.N == mapping.AbsentWarn {
					a.log.Warn("a counter's field is missing from every message of its topic: the counter stands still (a typo in field, or the gateway renamed it? plantedge validate --mqtt)",
						"machine", id, "signal", sig, "topic", ab.Topic, "field", ab.Field, "messages", ab.N)
				}
				if ab := a.state.TimeAbsent[k]; ab != nil && ab.N == mapping.AbsentWarn {
					a.log.Warn("a signal's timestamp_field is missing from every message of its topic: its values are taken at their receive time, so a value resent from a gateway's cache counts as new and a backlog is dated when it arrives (a typo in timestamp_field? plantedge validate --mqtt)",
						"machine", id, "signal", sig, "topic", ab.Topic, "timestamp_field", ab.Field, "messages", ab.N)
				}
			})
		}
		for _, n := range a.state.TakeSparkplugNotes() {
			level := slog.LevelWarn
			switch n.Kind {
			case "seq":
				a.metrics.sparkplugSeqGaps.WithLabelValues(n.Source).Inc()
			case "alias":
				a.metrics.sparkplugUnknownAliases.WithLabelValues(n.Source).Inc()
			case "certificate":
				a.metrics.sparkplugCertificates.WithLabelValues(n.Source).Inc()
				level = slog.LevelInfo
			case "historical":
				a.metrics.sparkplugHistorical.WithLabelValues(n.Source).Inc()
				level = slog.LevelInfo
			}
			key := "sparkplug " + n.Kind + " " + n.Source + " " + n.Topic
			if t, ok := config.ParseSparkplugTopic(n.Topic); ok && n.Kind == "seq" {
				// A seq gap is the edge node's, whichever of its topics
				// (a device per serial number) showed it.
				key = "sparkplug seq " + n.Source + " " + t.NodeFilter()
			}
			a.malformedLog.log(key, a.log, level, n.Msg, "source", n.Source, "topic", n.Topic)
		}
		if s.Kind == connectors.KindMQTT && s.Good {
			a.noteSparkplugBirth(s.Source, s.Address)
		}
		if rs := a.state.TakeSparkplugRebirths(); len(rs) > 0 {
			a.requestRebirths(rs)
		}
		if err != nil {
			// Only the unusable signals are skipped; the sample's others
			// (evs, ch) still count.
			a.countMalformed(s, err.Error())
			msg := "malformed sample (or field) skipped"
			if errors.Is(err, mapping.ErrBadTime) {
				msg = "a sample's source time cannot be used (a clock that was never set, or a timestamp in a format not understood): its values are taken at their receive time"
			}
			a.malformedLog.log(s.Source+" "+s.Address, a.log, slog.LevelWarn, msg, "source", s.Source, "address", s.Address, "err", err)
		}
		for _, id := range ch {
			changed[id] = true
		}
		for _, ev := range evs {
			a.noteEvent(ev)
			if ev.Kind == mapping.EventStopped && s.Kind == connectors.KindMQTT && s.Initial {
				// In a new session the retained state is the one to start
				// from (also a copy resent in a kept session that the
				// machine had no record of: a fresh buffer file, a new state
				// topic — one it had is dropped before, as stale); if the
				// publisher retains its stops but not its runs, it is an old
				// one: say where the stop came from.
				a.eventLog.log("retained "+ev.Machine, a.log, slog.LevelInfo,
					"a stop taken from the broker's retained message at the subscription (the machine's state to start from; a publisher that retains its stops but not its runs gives an old one)",
					"machine", ev.Machine, "topic", s.Address)
			}
			switch ev.Kind {
			case mapping.EventCount:
				if ev.Pieces == 0 { // a step back or a reset to zero: reported, nothing to forward
					continue
				}
				sig := sigGood
				if ev.Signal == mapping.Signal("scrap_count") {
					sig = sigScrap
				}
				k := countKey(ev.Machine, sig)
				c := counts[k]
				if c == nil {
					c = &acc{}
					counts[k] = c
					order = append(order, k)
				}
				t := ms(ev.Time)
				off := a.offsetOf(s, ev, ev.Time, changed)
				if n := len(c.recs); n == 0 || t-c.recs[n-1].First > recordSpan || c.recs[n-1].First-t > recordSpan {
					// A burst the broker kept (or a gateway held) spans
					// its source's minutes: one record a second of them,
					// so that it can be cut where the work order changed.
					c.recs = append(c.recs, countRecord{First: t, Off: off})
				}
				r := &c.recs[len(c.recs)-1]
				r.Delta = decimal.Add(r.Delta, ev.Pieces)
				r.Last = max(r.Last, t) // (a broker may deliver out of order within a second)
				r.Off = max(r.Off, off)
				added[ev.Machine] = added[ev.Machine].plus(sig, ev.Pieces)
			case mapping.EventStale: // reported (noteEvent), nothing to forward
			default:
				var off int64
				switch ev.Kind {
				case mapping.EventRunning:
					off = a.offsetOf(s, ev, ev.End, changed)
				case mapping.EventStopped:
					if !ev.Stored { // (a stop begun at a BIRTH, taken as the stored run came: an old time)
						a.noteOffset(s, ev.Machine, ev.Start, changed)
					}
				}
				if rec, ok := a.downtimeRecord(ev, off, changed); ok {
					events = append(events, rec)
				}
			}
		}
	}
	meta := a.machineKVs(changed, added)
	a.stateMu.Unlock()
	recs := events
	if n := len(events) + len(order); n > cap(recs) {
		// One count record a key, most often: the slice grown once, not
		// by doubling through a batch of 1,000 keys.
		recs = append(make([]buffer.Record, 0, n), events...)
	}
	for _, k := range order {
		for _, c := range counts[k].recs {
			if c.Delta == 0 {
				continue
			}
			// Records carry no Time: the buffer stamps them with the
			// append time, so their age is how long they have waited here
			// whatever the source's clock says (a PLC whose clock fell back
			// to 2000 made the oldest record 27 years old).
			recs = append(recs, buffer.Record{Lane: buffer.LaneCounts, Key: k, Data: mustJSON(c)})
		}
	}
	if len(recs) > 0 || len(meta) > 0 {
		start := time.Now()
		if !a.appendDurable(ctx, recs, meta) {
			return // not acknowledged: the sources redeliver or re-read after restart
		}
		a.metrics.ingestLatency.Observe(time.Since(start).Seconds())
	}
	a.addTotals(added)
	a.showRunState(changed)
	now := time.Now()
	for _, s := range batch {
		s.Done()
		if a.latencyHook != nil && !s.ReceiveTime.IsZero() {
			a.latencyHook(now.Sub(s.ReceiveTime))
		}
	}
	a.metrics.samples.Add(float64(len(batch)))
}

// appendDurable appends recs and meta, retrying until it succeeds (true)
// or ctx ends (false); a failing disk shows in status and the log meanwhile.
func (a *Agent) appendDurable(ctx context.Context, recs []buffer.Record, meta []buffer.KV) bool {
	start := time.Now()
	lastLog := time.Time{}
	for attempt := 1; ; attempt++ {
		_, err := a.buf.Append(ctx, recs, meta...)
		if err == nil {
			if attempt > 1 {
				a.writeFail.Store(nil)
				a.log.Info("buffer append recovered", "attempts", attempt, "after", time.Since(start).Round(time.Millisecond))
			}
			return true
		}
		if ctx.Err() != nil {
			return false
		}
		cause := writeCause(err)
		if wf := a.writeFail.Load(); wf == nil || wf.Cause != cause {
			since := time.Now()
			if wf != nil {
				since = wf.Since // failing since then, for another reason now
			}
			a.writeFail.Store(&writeFailure{Err: err.Error(), Cause: cause, Since: since})
		}
		if time.Since(lastLog) >= time.Minute {
			lastLog = time.Now()
			hint := "disk failing? file system read-only?"
			switch cause {
			case causeQuota:
				hint = "max_bytes reached; what it may drop or merge is, the rest waits for Odoo"
			case causeDiskFull:
				hint = "the disk is full and the buffer could not keep to its file; free space"
			}
			a.log.Error("buffer append failed; holding acknowledgements and retrying ("+hint+")",
				"err", err, "records", len(recs), "failing_for", time.Since(start).Round(time.Second))
		}
		a.metrics.appendErrors.Inc()
		select {
		case <-time.After(min(time.Duration(attempt)*100*time.Millisecond, 5*time.Second)):
		case <-ctx.Done():
			return false
		}
	}
}

// writeFailure is why buffer appends fail, and since when.
type writeFailure struct {
	Err   string
	Cause string // causeQuota, causeDiskFull or causeWrite
	Since time.Time
}

// What status says of a failing append (buffer.write_error_cause).
const (
	causeQuota    = "max_bytes"
	causeDiskFull = "disk_full"
	causeWrite    = "write_error" // an I/O error, a read-only file system
)

func writeCause(err error) string {
	switch {
	case errors.Is(err, buffer.ErrQuota):
		return causeQuota
	case errors.Is(err, buffer.ErrDiskFull):
		return causeDiskFull
	}
	return causeWrite
}

// downtimeRecord is the record of a stop, run or reason event, if it makes
// one, off its Off (non-zero for a stop's end only, see noteOffset); it
// notes in changed a machine whose open line it opens or closes.
// The caller holds stateMu.
func (a *Agent) downtimeRecord(ev mapping.Event, off int64, changed map[string]bool) (buffer.Record, bool) {
	er, ok := a.downtimeEvent(ev, changed)
	if !ok {
		return buffer.Record{}, false
	}
	er.Off = off
	if st := a.state.Machines[ev.Machine]; st != nil && er.Start > st.LineKey {
		st.LineKey = er.Start
		changed[ev.Machine] = true
	}
	return buffer.Record{Lane: buffer.LaneEvents, Key: ev.Machine, Data: mustJSON(er)}, true
}

// downtimeEvent is what the record of ev holds (see downtimeRecord).
func (a *Agent) downtimeEvent(ev mapping.Event, changed map[string]bool) (eventRecord, bool) {
	cfg := a.cfg.Load()
	var wc string
	if mc := findMachine(cfg, ev.Machine); mc != nil {
		wc = mc.Workcenter
	}
	st := a.state.Machines[ev.Machine]
	switch ev.Kind {
	case mapping.EventRunning:
		site := cfg.Site
		if ev.Historical {
			// A stop an edge node stored, and its end: a line of its own on
			// the machine's work center, which neither opens nor closes the
			// machine's current one.
			if a.shortStop(ev) {
				return eventRecord{}, false
			}
			return eventRecord{Start: ms(ev.Start), End: ms(ev.End), Reason: ev.Reason, Loss: ev.Loss, Defaulted: ev.LossDefaulted, Site: site, Workcenter: wc}, true
		}
		opened := st != nil && st.LineOpened
		if opened {
			site = cmp.Or(st.LineSite, site)
			st.LineOpened, st.LineSite = false, ""
			changed[ev.Machine] = true
		}
		if st != nil && st.StopWorkcenter != "" {
			// The work center it stopped on: its line is there, also when
			// an edit has moved the machine since, or removed it (its stop
			// ended by the reload).
			wc = st.StopWorkcenter
			st.StopWorkcenter = ""
			changed[ev.Machine] = true
		}
		if !opened && a.shortStop(ev) {
			return eventRecord{}, false
		}
		er := eventRecord{Start: ms(ev.Start), End: ms(ev.End), Reason: ev.Reason, Loss: ev.Loss, Defaulted: ev.LossDefaulted, Site: site, Workcenter: wc}
		if !opened && ev.Seen.Boot != "" {
			seen := ev.Seen
			er.Rx = &seen
		}
		return er, true
	case mapping.EventReasonLate:
		// The last stop's line again, under its external id (its start),
		// with the reason that came late: Odoo's load updates it. A stop
		// that booked no line (min_stop) gets none now.
		if a.belowMinStop(ev) {
			return eventRecord{}, false
		}
		return eventRecord{Start: ms(ev.Start), End: ms(ev.End), Reason: ev.Reason, Loss: ev.Loss, Site: cfg.Site, Workcenter: wc, Late: true}, true
	case mapping.EventEndStored:
		// The line of a stop a Sparkplug BIRTH's run state ended, again
		// under its external id (its start), with the end the edge node
		// stored: Odoo's load updates it, as for a late reason (the line
		// keeps its work order; one Odoo does not have is not made anew).
		// A stop whose line min_stop left out at the BIRTH gets none now;
		// one booked keeps its line, shortened, also below min_stop (Odoo
		// has it already, and plantedge never deletes a line).
		if a.belowMinStop(mapping.Event{Machine: ev.Machine, Start: ev.Start, End: ev.BookedEnd}) {
			return eventRecord{}, false
		}
		return eventRecord{Start: ms(ev.Start), End: ms(ev.End), Reason: ev.Reason, Loss: ev.Loss, Defaulted: ev.LossDefaulted, Site: cfg.Site, Workcenter: wc, Late: true}, true
	case mapping.EventStopped, mapping.EventReason:
		switch {
		case st != nil && wc != "" && st.StopWorkcenter != wc && ev.Kind == mapping.EventStopped:
			st.StopWorkcenter = wc
			changed[ev.Machine] = true
		case st != nil && st.StopWorkcenter != "":
			wc = st.StopWorkcenter // a reason for the stop's line, where it is
		}
		if !a.blocks(ev.Machine) {
			return eventRecord{}, false
		}
		site := cfg.Site
		if st != nil {
			if !st.LineOpened {
				st.LineOpened, st.LineSite = true, site
				changed[ev.Machine] = true
			}
			site = cmp.Or(st.LineSite, site)
		}
		start := ev.Start
		if start.IsZero() {
			start = a.stopStart(ev.Machine, ev.Time)
		}
		return eventRecord{Start: ms(start), Reason: ev.Reason, Loss: ev.Loss, Defaulted: ev.LossDefaulted, Site: site, Workcenter: wc}, true
	}
	return eventRecord{}, false
}

// topicsPrefix starts the buffer meta keys holding, per MQTT source, the
// topics the configuration last subscribed to (a JSON array): a machine
// removed while the agent was stopped leaves its topic's subscription in
// the broker's session too.
const topicsPrefix = "mqtt/topics/"

// noteUnsubscribe adds to a.unsubscribe the filters of an earlier
// configuration (each passes them to fn, with their broker) that next does
// not subscribe to, and takes from it those next does. names gives the
// broker entry of next holding an earlier entry's session (brokerNames):
// the filters are kept under it.
func (a *Agent) noteUnsubscribe(each func(fn func(broker, topic string)), next *mapping.Mapper, names func(string) string) {
	a.stateMu.Lock()
	defer a.stateMu.Unlock()
	// Into a new map: names may swap two names, which moved in place
	// would move twice.
	moved := map[string][]string{}
	for broker, fs := range a.unsubscribe {
		to := names(broker)
		for _, f := range fs {
			if !slices.Contains(moved[to], f) {
				moved[to] = append(moved[to], f)
			}
		}
	}
	a.unsubscribe = moved
	each(func(broker, topic string) {
		broker = names(broker)
		if !slices.Contains(next.MQTTTopics(broker), topic) && !slices.Contains(a.unsubscribe[broker], topic) {
			a.unsubscribe[broker] = append(a.unsubscribe[broker], topic)
		}
	})
	for broker, fs := range a.unsubscribe {
		now := next.MQTTTopics(broker)
		a.unsubscribe[broker] = slices.DeleteFunc(fs, func(f string) bool { return slices.Contains(now, f) })
	}
}

// unsubscribed takes from a.unsubscribe the filters the source of broker
// has had removed from its session (see mqtt.Config.Unsubscribed), and
// stores the list of its filters again without them.
func (a *Agent) unsubscribed(ctx context.Context, broker string, filters []string) {
	a.stateMu.Lock()
	fs := a.unsubscribe[broker]
	n := len(fs)
	fs = slices.DeleteFunc(fs, func(f string) bool { return slices.Contains(filters, f) })
	if len(fs) == 0 {
		delete(a.unsubscribe, broker)
	} else {
		a.unsubscribe[broker] = fs
	}
	a.stateMu.Unlock()
	if len(fs) != n {
		a.storeTopics(ctx)
	}
}

// forgetUnmapped deletes from m the source addresses next maps to no
// machine.
func forgetUnmapped[V any](m map[sampleAddr]V, next *mapping.Mapper) {
	maps.DeleteFunc(m, func(k sampleAddr, _ V) bool { return !next.Feeds(k.kind, k.source, k.address) })
}

// noteDroppedTopics notes the MQTT topics an earlier configuration
// subscribed to — prev's (a reload), and those the buffer file keeps from
// the last run (a start) — that the mapping in force does not, forgets
// those it maps again (see dropped), and keeps the topics in force in the
// file. names: see noteUnsubscribe. It runs in the ingest goroutine, or
// at the start before it.
func (a *Agent) noteDroppedTopics(ctx context.Context, prev *mapping.Mapper, names func(string) string) {
	next := a.mapper.Load()
	before := map[string]bool{} // "broker\x00topic", under the names of next
	_ = a.buf.MetaPrefix(topicsPrefix, func(k string, v []byte) error {
		broker := names(strings.TrimPrefix(k, topicsPrefix))
		var ts []string
		_ = json.Unmarshal(v, &ts)
		for _, t := range ts {
			before[broker+"\x00"+t] = true
		}
		return nil
	})
	if prev != nil {
		prev.EachMQTTTopic(func(broker, topic string) { before[names(broker)+"\x00"+topic] = true })
	}
	a.noteUnsubscribe(func(fn func(broker, topic string)) {
		for k := range before {
			broker, topic, _ := strings.Cut(k, "\x00")
			fn(broker, topic)
		}
	}, next, func(s string) string { return s })
	a.stateMu.Lock()
	for k := range before {
		broker, topic, _ := strings.Cut(k, "\x00")
		if !next.Maps(connectors.KindMQTT, broker, topic) {
			a.dropped[k] = true
		}
	}
	for k := range a.dropped {
		broker, topic, _ := strings.Cut(k, "\x00")
		if next.Maps(connectors.KindMQTT, broker, topic) {
			delete(a.dropped, k)
		}
	}
	// What is kept per source address is forgotten for the addresses no
	// machine reads now: a reload must not keep them for the process's life.
	forgetUnmapped(a.lastStamp, next)
	forgetUnmapped(a.badQuality, next)
	forgetUnmapped(a.unusable, next)
	forgetUnmapped(a.valueType, next)
	forgetUnmapped(a.countHeard, next)
	a.stateMu.Unlock()
	a.storeTopics(ctx)
}

// storeTopics keeps in the buffer file, per MQTT broker, the filters its
// session may hold: those of the mapping in force, and those an earlier
// configuration subscribed that its source has not had removed yet
// (a.unsubscribe) — a run that never reached the broker must pass them on
// to the next (the review: written as the configuration's alone, they were
// forgotten, and came as strays for good).
func (a *Agent) storeTopics(ctx context.Context) {
	a.topicsMu.Lock()
	defer a.topicsMu.Unlock()
	stored := map[string]string{} // broker -> its stored list, as stored
	_ = a.buf.MetaPrefix(topicsPrefix, func(k string, v []byte) error {
		stored[strings.TrimPrefix(k, topicsPrefix)] = string(v)
		return nil
	})
	now := map[string][]string{}
	a.mapper.Load().EachMQTTTopic(func(broker, topic string) { now[broker] = append(now[broker], topic) })
	a.stateMu.Lock()
	for broker, fs := range a.unsubscribe {
		for _, f := range fs {
			if !slices.Contains(now[broker], f) {
				now[broker] = append(now[broker], f)
			}
		}
	}
	a.stateMu.Unlock()
	var kvs []buffer.KV
	for broker, ts := range now {
		slices.Sort(ts)
		if v := string(mustJSON(ts)); stored[broker] != v {
			kvs = append(kvs, buffer.KV{Key: topicsPrefix + broker, Value: []byte(v)})
		}
	}
	for broker := range stored {
		if _, ok := now[broker]; !ok {
			kvs = append(kvs, buffer.KV{Key: topicsPrefix + broker})
		}
	}
	if len(kvs) > 0 {
		if err := a.buf.PutMeta(ctx, kvs...); err != nil {
			a.log.Debug("subscribed topics not kept", "err", err)
		}
	}
}

// endOrphanedStops ends the stops of machines the mapping in force no
// longer gives a running signal (or that it no longer has at all): nothing
// would end them, and with block_workcenter their line would stay open in
// Odoo. Their run state becomes unknown; a machine brought back starts
// from its next value. prev is the mapping they were stopped under (for
// the loss; nil: the one in force). It runs at start-up, before the
// sources, and after a reload in the ingest goroutine (see Reload), so its
// commit is ordered with those of the samples; it also forgets the
// missing-field counts of the mapping before, and notes the work center of
// configured machines stopped under an older version (StopWorkcenter).
func (a *Agent) endOrphanedStops(ctx context.Context, prev *mapping.Mapper) {
	next := a.mapper.Load()
	if prev == nil {
		prev = next
	}
	rx := connectors.Receive()
	now := rx.Time
	changed := map[string]bool{}
	var recs []buffer.Record
	a.stateMu.Lock()
	a.state.Absent, a.state.TimeAbsent = nil, nil
	a.srcOff.unshow() // (a timestamp_field removed: no offset shown of values not stamped)
	cfg := a.cfg.Load()
	// A counter read within the last day: a machine renamed now, or while
	// the agent was stopped for a weekend — not one removed months ago.
	var aliases []buffer.KV
	for _, ad := range next.AdoptCounters(a.state, now.Add(-adoptWithin)) {
		// Renamed: counting goes on from the value last read, and what the
		// old id buffered and did not forward yet goes to the new one (the
		// forwarder moves it, see takeOverRenamed) — the upgrade probe lost
		// it otherwise: held under the old id, then dead letters.
		changed[ad.From], changed[ad.To] = true, true
		a.log.Warn("a machine reads the counter a machine gone from the configuration read (renamed?): it counts on from that counter's last value, and takes over what the old id buffered",
			"machine", ad.To, "was", ad.From, "signal", ad.Signal, "last", num(ad.Last))
		if sig := countSignal(ad.Signal); sig != "" {
			aliases = append(aliases, buffer.KV{Key: aliasMetaKey(countKey(ad.From, sig)), Value: []byte(countKey(ad.To, sig))})
		}
	}
	for id, ms := range a.state.Machines {
		if mc := findMachine(cfg, id); mc != nil && ms.Running != nil && !*ms.Running && ms.StopWorkcenter == "" {
			// Stopped under an older version, which did not note it.
			ms.StopWorkcenter = mc.Workcenter
			changed[id] = true
		}
		if ms.Running == nil || next.HasRunning(id) {
			continue
		}
		evs, ch := prev.EndStop(a.state, id, now, rx.Seen)
		if ch {
			changed[id] = true
		}
		for _, ev := range evs {
			a.noteEvent(ev)
			a.log.Info("stop ended: its machine's running signal is gone from the configuration", "machine", id,
				"stopped", ev.End.Sub(ev.Start).Round(time.Second))
			if rec, ok := a.downtimeRecord(ev, 0, changed); ok {
				recs = append(recs, rec)
			}
		}
	}
	for id, ms := range a.state.Machines {
		if ms.LineKey != 0 && findMachine(cfg, id) == nil {
			// Gone from here: it may book elsewhere (moved to another box
			// of the site), and brought back, its lines there are not this
			// file's to be older than (checkRestored).
			ms.LineKey = 0
			changed[id] = true
		}
	}
	meta := append(a.machineKVs(changed, nil), aliases...)
	a.stateMu.Unlock()
	if len(recs) > 0 || len(meta) > 0 {
		// Not written (the agent stops): the stored state still has the
		// stop, and the next start ends it.
		if !a.appendDurable(ctx, recs, meta) {
			return
		}
	}
	a.showRunState(changed)
}

// adoptWithin is how recently a machine gone from the configuration must
// have read a counter for a new machine reading it to count on from its
// value (mapping.AdoptCounters).
const adoptWithin = 24 * time.Hour

// showRunState shows the run state of the changed machines, once what
// changed it is in the buffer.
func (a *Agent) showRunState(changed map[string]bool) {
	if len(changed) == 0 {
		return
	}
	a.stateMu.Lock()
	defer a.stateMu.Unlock()
	now := time.Now()
	for id := range changed {
		running := false
		if ms := a.state.Machines[id]; ms != nil && ms.Running != nil {
			running = *ms.Running
		}
		switch was := a.shownRunning[id]; {
		case running && !was:
			a.runSince[id] = now
		case !running && was:
			// The run's time counts on towards quietCounters' limit.
			a.countFold(id, now)
		}
		if ms := a.state.Machines[id]; ms != nil && ms.Running != nil {
			a.shownRunning[id] = *ms.Running
		} else {
			delete(a.shownRunning, id)
		}
	}
}

// machineKVs encodes the durable state of the changed machines, with added
// (counts not in a.totals yet) in their totals (the caller holds stateMu).
func (a *Agent) machineKVs(changed map[string]bool, added map[string]totals) []buffer.KV {
	var meta []buffer.KV
	for id := range changed {
		kv, err := a.machineKV(id, added[id])
		if err != nil {
			a.log.Error("encode machine state", "machine", id, "err", err)
			continue
		}
		meta = append(meta, kv)
	}
	return meta
}

// machineKV encodes a machine's durable state for the meta bucket, its
// totals with added.
func (a *Agent) machineKV(id string, added totals) (buffer.KV, error) {
	b, err := a.state.AppendMarshal(a.stateJSON[:0], id)
	if err != nil {
		return buffer.KV{}, err
	}
	a.stateJSON = b // (only read below: the meta value holds its base64)
	a.totalsMu.Lock()
	t := a.totals[id]
	a.totalsMu.Unlock()
	t = t.add(added)
	off, src := a.srcOff.saved(id)
	return buffer.KV{Key: machineMetaKey(id), Value: mustJSON(machineMeta{Mapping: b, Good: t.Good, Scrap: t.Scrap, Sum: valueSum(b), Off: off, Src: src})}, nil
}

// damagedStateMsg is what the log and status say of a machine's stored
// state that cannot be read.
const damagedStateMsg = "the buffer file's state of this machine cannot be read (damaged on the disk?): set aside; " +
	"its counters count from their next value (pieces made between their last value read and it are not booked), " +
	"its run state is unknown until its next value, and what status shows it made restarts from 0"

// loadMachineState restores the mapping state and totals saved by a
// previous run. One machine's state that cannot be read (bit rot: bbolt
// checks its pages, not the values in them) is set aside, said, and noted
// in damagedState — it must not keep the whole plant from starting.
// sparkplugPrefix keyed the alias maps of Sparkplug B BIRTHs in the
// buffer's meta (earlier versions kept them across a restart). They are no
// longer kept: the edge node may have re-aliased while the agent was down
// (a map from before a missed BIRTH credits good pieces to scrap), so a
// map is trusted only from a BIRTH received in the agent's current
// connection. Those kept are deleted at start.
const sparkplugPrefix = "sparkplug/"

func dropSparkplugMaps(ctx context.Context, buf *buffer.Queue) error {
	var stale []buffer.KV
	err := buf.MetaPrefix(sparkplugPrefix, func(key string, _ []byte) error {
		stale = append(stale, buffer.KV{Key: key}) // nil Value: deleted
		return nil
	})
	if err == nil && len(stale) > 0 {
		err = buf.PutMeta(ctx, stale...)
	}
	return err
}

func (a *Agent) loadMachineState() error {
	return a.buf.MetaPrefix("machine/", func(key string, value []byte) error {
		id := key[len("machine/"):]
		var mm machineMeta
		err := json.Unmarshal(value, &mm)
		if err == nil && mm.Sum != 0 && valueSum(mm.Mapping) != mm.Sum {
			err = errors.New("checksum mismatch")
		}
		if err == nil && len(mm.Mapping) > 0 {
			err = a.state.Unmarshal(id, mm.Mapping)
		}
		if err != nil {
			delete(a.state.Machines, id)
			a.damagedState = append(a.damagedState, id)
			a.log.Error(damagedStateMsg, "machine", id, "err", err)
			return nil
		}
		if len(mm.Mapping) > 0 {
			if ms := a.state.Machines[id]; ms != nil && ms.Running != nil {
				a.shownRunning[id] = *ms.Running
			}
		}
		a.srcOff.restore(id, mm.Off, mm.Src)
		a.totalsMu.Lock()
		a.totals[id] = totals{Good: mm.Good, Scrap: mm.Scrap}
		a.totalsMu.Unlock()
		return nil
	})
}

// loadBufferID reads the buffer file's id, making one for a new file.
func (a *Agent) loadBufferID(ctx context.Context) error {
	const key = "buffer-id"
	b, err := a.buf.Meta(key)
	if err != nil {
		return err
	}
	if len(b) == 0 {
		r := make([]byte, 4)
		if _, err := rand.Read(r); err != nil {
			return err
		}
		b = []byte(hex.EncodeToString(r))
		if err := a.buf.PutMeta(ctx, buffer.KV{Key: key, Value: b}); err != nil {
			return err
		}
	}
	a.bufID = string(b)
	return nil
}

// checkSite notes the site the buffer file was written for, and logs a
// change. Downtime records carry the site they are booked under, a line
// opened under one site is closed under it, and scrap bookings in flight
// keep their external id: a changed site books nothing twice. A file from
// a version that kept none of this (no site noted yet) had its records
// and open lines made under the site configured now: they are marked so
// (legacy-site; LineSite), so that a later change leaves them be.
func (a *Agent) checkSite(ctx context.Context, cfg *config.Config) error {
	const key, legacyKey = "site", "legacy-site"
	b, err := a.buf.Meta(key)
	if err != nil {
		return err
	}
	legacy, err := a.buf.Meta(legacyKey)
	if err != nil {
		return err
	}
	a.legacySite = string(legacy)
	if string(b) == cfg.Site {
		return nil
	}
	meta := []buffer.KV{{Key: key, Value: []byte(cfg.Site)}}
	if len(b) > 0 {
		a.log.Warn("site changed: new downtime lines and scrap are booked under the new name; what was under way finishes under the old one",
			"site", cfg.Site, "was", string(b))
	} else {
		a.legacySite = cfg.Site
		meta = append(meta, buffer.KV{Key: legacyKey, Value: []byte(cfg.Site)})
		changed := map[string]bool{}
		a.stateMu.Lock()
		for id, ms := range a.state.Machines {
			if ms.LineOpened && ms.LineSite == "" {
				ms.LineSite = cfg.Site
				changed[id] = true
			}
		}
		meta = append(meta, a.machineKVs(changed, nil)...)
		a.stateMu.Unlock()
	}
	return a.buf.PutMeta(ctx, meta...)
}

// OdooIdentity names the Odoo database cfg sends to: host:port/path and
// database (how dead letters name the Odoo that refused them).
func OdooIdentity(cfg *config.Config) string { return odooIdentity(cfg) }

// odooIdentity is the Odoo database the configuration names: the server
// (host, port and path of odoo.url: not its scheme, so putting TLS in front
// of the same server changes nothing) and odoo.database.
func odooIdentity(cfg *config.Config) string {
	u, err := url.Parse(cfg.Odoo.URL)
	if err != nil {
		return cfg.Odoo.URL + " " + cfg.Odoo.Database
	}
	host, port := strings.ToLower(u.Hostname()), u.Port()
	if port == "" {
		port = map[string]string{"http": "80", "https": "443"}[strings.ToLower(u.Scheme)]
	}
	return net.JoinHostPort(host, port) + strings.TrimRight(u.EscapedPath(), "/") + " " + cfg.Odoo.Database
}

// odooMetaKey holds the Odoo database (odooIdentity) the buffer file's Odoo
// state belongs to.
const odooMetaKey = "odoo"

// unrecordedOdoo stands for the Odoo of a buffer file that does not record
// it (odooMetaKey; an older plantedge's), in odooWas and switch_from.
const unrecordedOdoo = UnrecordedOdoo

// UnrecordedOdoo is status's odoo.switch_from for a buffer file an older
// plantedge wrote, which does not record the Odoo its state belongs to: it
// is checked against the Odoo the agent sends to before anything is sent.
const UnrecordedOdoo = "an Odoo the buffer file does not record (an older plantedge wrote it)"

// checkOdoo compares the Odoo database the configuration names with the
// one the buffer file's Odoo state belongs to. Another one (odoo.url or
// odoo.database changed while the agent was stopped: a test database,
// then production; a new server) is noted in odooWas, and the forwarder
// switches to it once it answers (forwarder.switchOdoo) — not before: a
// mistyped URL started once must not cost the state of the real one.
func (a *Agent) checkOdoo(ctx context.Context, cfg *config.Config) error {
	id := odooIdentity(cfg)
	b, err := a.buf.Meta(odooMetaKey)
	switch {
	case err != nil || string(b) == id:
		return err
	case len(b) == 0: // a new file, or one from a version that noted none
		has := false
		if err := a.buf.MetaPrefix("wo/", func(string, []byte) error { has = true; return nil }); err != nil {
			return err
		}
		if has {
			// An older plantedge's file with work-order state: which Odoo
			// it belongs to is not recorded, and may not be the one named
			// now (the upgrade probe: an upgrade and a move of Odoo in one
			// stop wrote the old database's count into the new one's work
			// orders). The forwarder checks the state against this Odoo
			// first (unrecordedHere).
			a.odooWas = unrecordedOdoo
			a.log.Info("the buffer file does not record which Odoo its work-order state belongs to (an older plantedge wrote it): it is checked against this one before anything is sent",
				"odoo", id)
			return nil
		}
		kvs := []buffer.KV{{Key: odooMetaKey, Value: []byte(id)}}
		// Dead letters there are (an older plantedge's file) were refused
		// by an Odoo it did not record: not taken for this one's (the
		// self-probe: retried, they were booked in another).
		if tie, err := (deadOdoo{}).leaving(a.buf, unrecordedOdoo); err != nil {
			return err
		} else if tie != nil {
			kvs = append(kvs, *tie)
		}
		return a.buf.PutMeta(ctx, kvs...)
	}
	a.odooWas = string(b)
	a.log.Info("odoo.url or odoo.database names another Odoo than the buffer file's state belongs to: switching to it once it answers",
		"odoo", id, "was", a.odooWas)
	return nil
}

// lineOpen reports whether machine has a downtime line open in Odoo.
func (a *Agent) lineOpen(machine string) bool {
	a.stateMu.Lock()
	defer a.stateMu.Unlock()
	ms := a.state.Machines[machine]
	return ms != nil && ms.LineOpened
}

// loadInFlight notes the quantity writes and scrap bookings a previous run
// left in flight, before anything can append (and so merge) records.
func (a *Agent) loadInFlight() error {
	err := a.buf.MetaPrefix("scrap/", func(key string, value []byte) error {
		ob, err := decodeScrapOutbox(value)
		if err != nil {
			machine := key[len("scrap/"):]
			a.eventLog.log("damaged scrap "+machine, a.log, slog.LevelError, damagedScrapMsg, "machine", machine, "err", err)
			return nil
		}
		a.holdInFlight(countKey(key[len("scrap/"):], sigScrap), ob.MaxSeq)
		return nil
	})
	if err != nil {
		return err
	}
	return a.buf.MetaPrefix("wo/", func(key string, value []byte) error {
		// As loadWOState reads it (set aside: nothing held), under its key
		// of the log: said once, not again by the first round.
		st, err := decodeWOState(value)
		if err != nil {
			machine := key[len("wo/"):]
			a.eventLog.log("damaged wo "+machine, a.log, slog.LevelError, damagedWOMsg, "machine", machine, "err", err)
			return nil
		}
		if st.InFlight != nil {
			a.holdInFlight(countKey(key[len("wo/"):], sigGood), st.InFlight.MaxSeq)
		}
		return nil
	})
}

type totals struct{ Good, Scrap float64 }

// plus is t with d more of signal sig (sigGood or sigScrap).
func (t totals) plus(sig string, d float64) totals {
	if sig == sigGood {
		t.Good = decimal.Add(t.Good, d)
	} else {
		t.Scrap = decimal.Add(t.Scrap, d)
	}
	return t
}

// add is t and o together.
func (t totals) add(o totals) totals {
	return totals{decimal.Add(t.Good, o.Good), decimal.Add(t.Scrap, o.Scrap)}
}

// addTotals adds a committed batch's counts to the totals status shows.
// After start-up (loadMachineState) only the ingest goroutine writes them.
func (a *Agent) addTotals(added map[string]totals) {
	if len(added) == 0 {
		return
	}
	a.totalsMu.Lock()
	for id, d := range added {
		a.totals[id] = a.totals[id].add(d)
	}
	a.totalsMu.Unlock()
}

// malformedCount is a source's malformed samples since start.
type malformedCount struct {
	n    uint64
	last string
	at   time.Time
}

// countMalformed counts a value of s that could not be used, and why, in
// the metric and for status (under stateMu).
func (a *Agent) countMalformed(s connectors.Sample, why string) {
	a.metrics.malformed.WithLabelValues(s.Source).Inc()
	mc := a.malformed[s.Source]
	mc.n++
	mc.last, mc.at = s.Address+": "+why, time.Now()
	a.malformed[s.Source] = mc
}

// qualityHint says what to do about a bad quality that is the
// configuration's, not the machine's: an array element (index) the node
// does not have. "" for the others.
func qualityHint(q string) string {
	switch q {
	case "BadIndexRangeNoData":
		return "the array holds no element at the signal's index: it is shorter; index counts from 0"
	case "BadIndexRangeInvalid":
		return "the node holds no array the signal's index can read: remove index, or check node"
	}
	return ""
}
