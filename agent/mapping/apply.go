package mapping

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/plantedge/plantedge/agent/config"
	"github.com/plantedge/plantedge/connectors"
	"github.com/plantedge/plantedge/internal/decimal"
)

// maxPayload bounds the MQTT payloads the mapping will parse.
const maxPayload = 1 << 20

// extracted is one binding's value from a sample, before it touches state.
type extracted struct {
	b       *binding
	counter float64
	running bool
	reason  string
	t       time.Time
	srcTime bool            // t came from the source, so it may be compared for order
	resent  bool            // connectors.Sample.Resent
	recv    time.Time       // when this machine received it (connectors.Sample.ReceiveTime)
	seen    connectors.Seen // connectors.Sample.Seen
	server  string          // connectors.Sample.Server
	watch   uint64          // connectors.Sample.Watch
	gap     time.Duration   // connectors.Sample.WatchGap
	noTime  bool            // its timestamp_field is not in the message: taken at its receive time
	// historical: a Sparkplug metric flagged is_historical (an edge
	// node's store and forward, sent after its BIRTH's current values).
	historical bool
	// birth: from a Sparkplug BIRTH (NBIRTH, DBIRTH), the state as it is
	// when the edge node (re)connects.
	birth bool
}

// Apply maps one sample to events and updates st. A malformed payload or an
// unusable value returns a *PayloadError and leaves st unchanged; when only
// some of the signals the sample feeds get an unusable value, the others are
// applied and the error names the first unusable one. A sample
// marked bad (Good=false) or for an address no signal uses gives nothing.
// changed lists the machines whose state changed, so the caller persists
// only those.
//
// Rules, per signal:
//   - counters: the first value ever is the baseline. An increase counts the
//     difference. With rollover set, a negative value (a signed counter past
//     its maximum) is read as its unsigned value, v + rollover, and a value
//     at or beyond rollover is malformed. A decrease is a rollover when
//     rollover is set, the previous value was in the upper half of the range
//     and the new one is in the lower half (delta = rollover - prev + new),
//     and the wrap books at most what the counter's usual rate makes in the
//     time it may have counted unseen (while that is not known, within a
//     minute a quarter of the range; see plausibleWrap);
//     a step back when the new value is at least 90% of the previous one
//     and a reset could not have climbed back to it unseen (see
//     resetWouldShow: an out-of-order or corrected reading; a counter
//     restarts near zero): reported, nothing counted, the previous value
//     stays the baseline; otherwise a reset (delta = new). The time it may
//     have counted unseen is the time since the previous value — or, when
//     the source watched it without a break since (Sample.Watch), at most
//     Sample.WatchGap, however long it stood.
//     The first value after a reset that is back within a tenth of the
//     value it went down from, faster than its usual rate climbs, makes the
//     reset a glitch (see glitchReturn): only pieces above that value
//     count, less what the reset counted. A
//     rollover also needs the decrease to exceed half the range. A value that may be a repeat — Duplicate or Initial set — never
//     counts as a decrease, nor does a sample older by source time than the
//     last accepted one; an equal value counts nothing. An increase counts,
//     even when older by source time (the source clock went back), unless
//     it may be a repeat from before the last reset or rollover: a possible
//     repeat no higher than the value the counter went down from.
//   - running and downtime_reason: a sample older by source time than the
//     last accepted one of that signal is stale and ignored (no error; an
//     EventStale when it would have changed the state) — unless a counter
//     from the same clock has shown that clock went back, or that one was
//     stamped ahead of this machine's clock (see staleState). A stale
//     running value of an OPC UA watch (Sample.Watch) is held instead,
//     until the next value of that watch tells a clock that went back
//     from a stale answer (see applyRunning). A stop whose end is stamped
//     before its start lasts as long as the agent saw it (see endStop).
func (m *Mapper) Apply(st *State, s connectors.Sample) (events []Event, changed []string, err error) {
	st.fedSignals = st.fedSignals[:0]
	if s.Kind == connectors.KindMQTT {
		if t, cert, ok := m.sparkplugTopic(s.Source, s.Address); ok {
			if cert {
				return nil, nil, m.applyCertificate(st, s, t)
			}
			return m.applySparkplug(st, s, t)
		}
	}
	bs := m.index[addrKey{s.Kind, s.Source, s.Address}]
	if len(bs) == 0 || !s.Good {
		return nil, nil, nil
	}
	if s.Kind == connectors.KindMQTT && len(bytes.TrimSpace(s.Payload)) == 0 {
		// An empty message is how MQTT clears a retained one (mosquitto_pub
		// -r -n), and a broker passes it on: no value, and no fault of the
		// machine's (the payloads probe: shown as its error).
		return nil, nil, nil
	}
	xs, missing, err := extract(bs, s)
	if len(xs) == 0 {
		return nil, nil, err
	}
	noteAbsent(st, bs, missing, s.Address)
	noteTimeAbsent(st, xs, s.Address)
	return m.applyExtracted(st, s, xs, err)
}

// applyExtracted applies the values extracted from sample s to the state
// of their machines; err (returned as it is) names the unusable ones.
func (m *Mapper) applyExtracted(st *State, s connectors.Sample, xs []extracted, err error) (events []Event, changed []string, _ error) {
	// err may still be set: some of the signals the sample feeds were
	// unusable. The others are applied (a gateway's "n/a" for one sensor
	// must not lose the machine's stop), and err names the unusable ones.
	// Group by machine in configuration order; within a machine, counters
	// first, then the reason before a stop and after a start, so that the
	// downtime event carries the reason sent in the same message.
	for len(xs) > 0 {
		machine := xs[0].b.machine
		mine, rest := xs, []extracted(nil)
		for i := range xs {
			if xs[i].b.machine != machine {
				mine, rest = nil, nil
				for _, x := range xs {
					if x.b.machine == machine {
						mine = append(mine, x)
					} else {
						rest = append(rest, x)
					}
				}
				break
			}
		}
		xs = rest
		for _, x := range mine {
			if !x.historical {
				st.fedSignals = append(st.fedSignals, SignalKey{Machine: machine, Signal: x.b.signal})
			}
		}
		ordered := orderForMachine(mine)
		ms := st.machine(machine)
		didChange, stale, again := false, false, false
		if s.Kind == connectors.KindMQTT && feedsState(mine) {
			var seen bool
			seen, didChange = ms.noteRecent(s)
			stale = s.Resent && seen
			if untimedState(mine) {
				// (A value with a source time resent is older than, or as
				// old as, the one taken: the time tells.) A record alone
				// is stored with the machine's next write, not one of its
				// own (see noteDelivered).
				var store bool
				again, store = ms.noteDelivered(s)
				didChange = didChange || store
			}
		}
		for _, x := range ordered {
			var evs []Event
			var ch bool
			if again && (x.b.signal == Running || x.b.signal == DowntimeReason) {
				// A copy of a message taken before (its effect stored),
				// resent because its PUBACK never reached the broker:
				// taken again, a stop without a source time would start
				// anew at its receipt and book a second line.
				continue
			}
			if x.resent && stale && (x.b.signal == Running || x.b.signal == DowntimeReason) {
				// The broker's stored copy, sent again for our re-subscribe
				// in the session it kept, and a message the topic carried
				// before: no news. Without a source time a stale one (a
				// publisher that retained an old stop but not the run after
				// it) would start a stop that never was at every reconnect.
				continue
			}
			switch x.b.signal {
			case GoodCount, ScrapCount:
				evs, ch = applyCounter(ms, x)
				for i := range evs {
					// The decimal product (decimal.Mul): 103,827 steps of
					// 0.45359237 are 47095.13499999, where the float64
					// product is 47095.134999990005.
					evs[i].Pieces = evs[i].Delta
					if x.b.per != 0 {
						evs[i].Pieces = decimal.Mul(evs[i].Delta, x.b.per)
					}
				}
				for _, ev := range evs {
					if ev.ClockBack > 0 {
						evs = append(evs, m.clockBack(ms, x)...)
						break
					}
				}
			case Running:
				noted := liveAfterHist(ms, x)
				evs, ch = m.applyRunning(ms, x)
				ch = ch || noted
			case DowntimeReason:
				noted := liveAfterHist(ms, x)
				evs, ch = m.applyReason(ms, x)
				ch = ch || noted
			}
			if events == nil {
				// Most often the sample's only events: taken as they are,
				// not copied (an Event is some 300 bytes, allocated twice
				// for every counter value). Clipped, so that an append
				// below never writes into the slice handed back.
				events = slices.Clip(evs)
			} else {
				events = append(events, evs...)
			}
			didChange = didChange || ch
		}
		if evs := m.histTail(ms, machine); len(evs) > 0 {
			events, didChange = append(events, evs...), true
		}
		if didChange {
			changed = append(changed, machine)
		}
	}
	return events, changed, err
}

// noteAbsent counts, for each counter bound to a field of the topic, the
// messages in a row that gave the others a value but not its field at
// all (missing: those bindings). A field that is there with a value the
// counter cannot use (beyond its rollover, not a number) is no absence:
// it is reported as malformed.
func noteAbsent(st *State, bs []*binding, missing []*binding, topic string) {
	for _, b := range bs {
		if b.field == "" || (b.signal != GoodCount && b.signal != ScrapCount) {
			continue
		}
		countAbsence(&st.Absent, SignalKey{b.machine, b.signal}, slices.Contains(missing, b), topic, b.field)
	}
}

// countAbsence counts one more message in a row without field of topic
// for k in *m, or forgets k's count when it came (absent false).
func countAbsence(m *map[SignalKey]*Absence, k SignalKey, absent bool, topic, field string) {
	if !absent {
		delete(*m, k)
		return
	}
	if *m == nil {
		*m = map[SignalKey]*Absence{}
	}
	a := (*m)[k]
	if a == nil {
		a = &Absence{Topic: topic, Field: field}
		(*m)[k] = a
	}
	a.N++
}

// noteTimeAbsent counts, for each signal with a timestamp_field that the
// message gave a value, the messages in a row without that field: taken at
// their receive time, as a gateway may leave it out now and then — but a
// timestamp_field misspelt never comes, and then nothing that needs the
// source's time works (redeliveries, a backlog's dates, the clock rules).
func noteTimeAbsent(st *State, xs []extracted, topic string) {
	for _, x := range xs {
		if x.b.tsField == "" || x.b.field == "" {
			continue // a bare value carries no time: nothing to look for
		}
		countAbsence(&st.TimeAbsent, SignalKey{x.b.machine, x.b.signal}, x.noTime, topic, x.b.tsField)
	}
}

// orderForMachine orders a machine's values of one message: counters
// first, then the reason before a stop and after a start. An edge node's
// stored (historical) values are a stretch of time told at once: in the
// order of their times, each time's by that rule.
func orderForMachine(xs []extracted) []extracted {
	if len(xs) < 2 {
		return xs
	}
	if !slices.ContainsFunc(xs, func(x extracted) bool { return x.historical }) {
		return byRank(xs)
	}
	out := slices.Clone(xs)
	slices.SortStableFunc(out, func(a, b extracted) int { return a.t.Compare(b.t) })
	for i := 0; i < len(out); {
		j := i + 1
		for j < len(out) && out[j].t.Equal(out[i].t) {
			j++
		}
		copy(out[i:j], byRank(out[i:j]))
		i = j
	}
	return out
}

// byRank orders xs by orderForMachine's rule.
func byRank(xs []extracted) []extracted {
	if len(xs) < 2 {
		return xs
	}
	startNow := false
	for _, x := range xs {
		if x.b.signal == Running && x.running {
			startNow = true
		}
	}
	rank := func(x extracted) int {
		switch x.b.signal {
		case Running:
			if startNow {
				return 1
			}
			return 2
		case DowntimeReason:
			if startNow {
				return 2
			}
			return 1
		}
		return 0
	}
	out := make([]extracted, 0, len(xs))
	for r := 0; r <= 2; r++ {
		for _, x := range xs {
			if rank(x) == r {
				out = append(out, x)
			}
		}
	}
	return out
}

// feedsState reports whether xs holds the run state or the downtime reason.
func feedsState(xs []extracted) bool {
	for _, x := range xs {
		if x.b.signal == Running || x.b.signal == DowntimeReason {
			return true
		}
	}
	return false
}

// untimedState reports whether xs feed a run state or downtime reason
// without a source time (an MQTT topic without timestamp_field, or a
// message missing it): taken at its receipt.
func untimedState(xs []extracted) bool {
	for _, x := range xs {
		if (x.b.signal == Running || x.b.signal == DowntimeReason) && !x.srcTime {
			return true
		}
	}
	return false
}

// deliveredKept is how many packet identifiers of its last QoS 1 or 2
// messages without a source time a topic feeding a machine's run state or
// downtime reason keeps
// (MachineState.Delivered): a resent copy of an older one is taken again.
const deliveredKept = 64

// noteDelivered records MQTT message s's packet identifier and payload
// digest, with the number of the connection it came in (Sample.Epoch),
// among the last deliveredKept of its topic, and reports whether s is a
// resent copy (DUP) of one recorded: the broker
// resends an unacknowledged message with its identifier, at the connect
// after the connection it was sent in, and gives that identifier to no
// other message before the acknowledgement. Only a record of this
// connection or the one before counts: an identifier seen earlier may
// have been given again in a connection between (mochi numbers every
// connection's messages from 1, and sends those queued while the agent
// was away with DUP the first time; a broker that lost the session starts
// again from 1), and a stop or a run taken for a copy is lost. A copy
// recognised is recorded at this connection, for the next one (its
// PUBACK may be lost again). A DUP whose identifier or payload differs,
// or recorded longer ago, is a message not taken yet (one the broker had
// sent when the agent stopped before storing it, or queued while it was
// away), and is taken.
//
// store says that the record must be stored before s is acknowledged: a
// copy recognised and recorded at this connection (the agent killed again
// before its PUBACK, the next connection must know it). A new record need
// not: a message that changed the machine's state is stored anyway, with
// its record; one that changed nothing (a gateway repeating the state)
// has its record stored with the machine's next write — every message
// taken since the last one changed nothing, so the state stored is the
// one they met, and a copy of one resent after a crash, taken again,
// changes nothing either (a commit, with its fsync, per repeat was this
// dedupe's cost).
func (ms *MachineState) noteDelivered(s connectors.Sample) (again, store bool) {
	if s.PacketID == 0 {
		return false, false
	}
	key := s.Source + " " + s.Address
	h := fnv.New64a()
	h.Write(s.Payload)
	id := strconv.FormatUint(uint64(s.PacketID), 10) + ":"
	d := id + strconv.FormatUint(h.Sum64(), 16)
	rec := strconv.FormatUint(s.Epoch, 10) + ":" + d // epoch:id:digest
	list := ms.Delivered[key]
	if s.Duplicate {
		for i, e := range list {
			ep, rest, _ := strings.Cut(e, ":")
			n, err := strconv.ParseUint(ep, 10, 64)
			if err != nil || rest != d || n > s.Epoch || n+1 < s.Epoch {
				continue
			}
			if n == s.Epoch {
				return true, false
			}
			list = slices.Clone(list)
			list[i] = rec
			ms.Delivered[key] = list
			return true, true
		}
	}
	if ms.Delivered == nil {
		ms.Delivered = make(map[string][]string, 1)
	}
	// An earlier message with this identifier was acknowledged, or the
	// broker would not have given it again; and a record of a connection
	// before the last one (or of a version that kept no numbers) is no
	// original of anything any more.
	list = slices.DeleteFunc(slices.Clone(list), func(e string) bool {
		ep, rest, _ := strings.Cut(e, ":")
		n, err := strconv.ParseUint(ep, 10, 64)
		return err != nil || strings.Count(e, ":") != 2 || n+1 < s.Epoch || strings.HasPrefix(rest, id)
	})
	list = append(list, rec)
	if len(list) > deliveredKept {
		list = append(list[:0], list[len(list)-deliveredKept:]...)
	}
	ms.Delivered[key] = list
	return false, false
}

// recentKept is how many digests of its last messages a topic feeding a
// machine's run state or downtime reason keeps (MachineState.Recent).
const recentKept = 8

// noteRecent records a digest of MQTT message s, which feeds the machine's
// run state or downtime reason, among the last recentKept of its topic, and
// reports whether it was there already; noted says the record changed. A
// resent copy with no record at all counts as seen when the machine has a
// run state (kept by a version that kept no records): a re-subscribe in a
// kept session means the agent subscribed, and got the copy, before. With
// no run state either (a fresh buffer file: a replaced box, a corrupt file
// set aside, under the same client_id) the agent has taken nothing from
// the topic, and the copy is the state to start from, as in a new session.
// Nor is it seen when the machine has records of other topics but not of
// this one: its state topic was changed in the configuration, and the
// broker sends the new topic's retained copy at its first subscribe (the
// session's flag says only that the session was kept, not that this topic
// was subscribed in it before). The records of the same topic under
// another source name are this topic's (a source renamed, its session
// kept under the same client_id: the copy it carried is still old news).
func (ms *MachineState) noteRecent(s connectors.Sample) (seen, noted bool) {
	key := s.Source + " " + s.Address
	h := fnv.New64a()
	h.Write(s.Payload)
	d := strconv.FormatUint(h.Sum64(), 16)
	list, known := ms.Recent[key]
	if slices.Contains(list, d) {
		return true, false
	}
	renamed := false // carried by the topic under another source name
	if !known {
		for k, l := range ms.Recent {
			if _, topic, _ := strings.Cut(k, " "); topic == s.Address {
				known = true
				renamed = renamed || slices.Contains(l, d)
			}
		}
	}
	none := len(ms.Recent) == 0 // no record of any topic
	if ms.Recent == nil {
		ms.Recent = make(map[string][]string, 1)
	}
	list = append(list, d)
	if len(list) > recentKept {
		list = append(list[:0], list[len(list)-recentKept:]...)
	}
	ms.Recent[key] = list
	return renamed || !known && none && s.Resent && ms.Running != nil, true
}

func isStale(x extracted, last time.Time) bool {
	return x.srcTime && !last.IsZero() && x.t.Before(last)
}

// beforeReset reports whether x may be a value from before the counter's
// last reset or rollover: no higher than the value it went down from, and
// not later than the reset by source time (when both times are known).
func (cs *CounterState) beforeReset(x extracted) bool {
	if cs.ResetFrom <= 0 || x.counter > cs.ResetFrom {
		return false
	}
	return !x.srcTime || cs.ResetTime.IsZero() || !x.t.After(cs.ResetTime)
}

// lateFromBeforeReset reports whether x, higher than the value the counter
// went down from, is stamped between that value and the reset: a value
// from before the reset that arrived after it (a broker that does not keep
// order). Its pieces above ResetFrom were made before the reset.
func (cs *CounterState) lateFromBeforeReset(x extracted) bool {
	return x.srcTime && !cs.ResetFromTime.IsZero() && !cs.ResetTime.IsZero() &&
		x.counter > cs.ResetFrom && !x.t.Before(cs.ResetFromTime) && x.t.Before(cs.ResetTime)
}

// behindWarn is how many lower values stamped before the last accepted one
// a counter holds in a row before that is reported (a repeat after a
// reconnect or a redelivery is a handful).
const behindWarn = 20

// HeldBehind is how many values in a row the counter holds for coming
// lower than Last and stamped before it, once that many are worth reporting
// (0 otherwise).
func (cs *CounterState) HeldBehind() int {
	if cs.BehindCount < behindWarn {
		return 0
	}
	return cs.BehindCount
}

// holdBehind holds a value lower than Last and stamped before it: a
// possible repeat, not counted. The first of a row is stored (the state
// changes), and the row's length is reported once when it reaches
// behindWarn: a counter whose values keep coming lower and in the past was
// probably restarted with its clock behind, and counts again when it passes
// Last or its clock is right.
func (cs *CounterState) holdBehind(ev Event, x extracted) ([]Event, bool) {
	first := cs.BehindTime.IsZero()
	if first || x.t.After(cs.BehindTime) {
		cs.BehindTime = x.t
	}
	if x.historical {
		// An edge node's store and forward after its BIRTH: older than
		// the current value, as such values are, not a sign of a clock
		// gone back (a row of them was reported as one).
		return nil, first
	}
	cs.BehindCount++
	if cs.BehindCount == behindWarn {
		ev.Behind, ev.From = cs.BehindCount, cs.Last
		return []Event{ev}, true
	}
	return nil, first
}

// wrapWindow: a counter read again within it cannot have made more than a
// quarter of its range unseen — unless its usual rate says it can — so a
// wrap that would book more is a reset (after a longer gap, the agent or
// the link was down, a wrap may hold up to half the range).
const (
	wrapWindow    = time.Minute
	wrapRateSlack = 4
	// wrapStepSlack bounds a wrap read without a source time by the
	// counter's usual step between readings: a backlog's readings arrive
	// together, so the time between them says nothing.
	wrapStepSlack = 2
	// Steps: the counter's last stepsKept plain increases at least
	// rateMinGap apart (shorter ones are a backlog delivered in a burst)
	// and below half its range (a larger one is a preset, and could not be
	// told from a wrap anyway); its usual rate and step are their medians,
	// once there are stepsMin of them, so one odd step sets neither.
	rateMinGap = time.Second
	stepsKept  = 5
	stepsMin   = 3
)

// plausibleWrap reports whether counter cs, with range ro, going down to v
// (read gap after its last value) wrapped rather than being reset: it fell
// from the upper half to the lower half by more than half the range, and
// the wrap's pieces ro - last + v fit what the counter makes in gap at
// wrapRateSlack times its usual rate, or (no source time) wrapStepSlack
// times its usual step; while its rate is not known, a quarter of the range
// within wrapWindow, half after it. Without that bound every reset of a
// 16-bit counter above 32767 (of a signed INT below 0) would book up to
// 65,535 pieces that were never made, a signed 32-bit one two billion; the
// rate and step keep the wraps of a small counter read seldom (rollover
// 1000, read every 55 s at 5 pieces/s), or whose backlog comes in a burst,
// from being taken for resets. A wrap taken for a reset loses what the
// counter made beyond its usual rate times the slack: little, as readings
// come often.
//
// slack is wrapRateSlack; resetRateSlack when gap is only a bound on the
// time the counter may have counted unseen (watched, it stood at Last:
// a 1000-counter stopped at 714 for 3 minutes that read 0 for a moment
// was taken for a 286-piece wrap, which the glitch rule does not undo).
func plausibleWrap(cs *CounterState, ro, v float64, gap time.Duration, srcTime bool, slack float64) bool {
	last := cs.Last
	if last >= ro || last < ro/2 || v >= ro/2 || last-v <= ro/2 {
		return false
	}
	if cs.Seen.IsZero() || gap < 0 {
		return true
	}
	rate, step, ok := cs.usual()
	if !ok {
		// Nothing known of its rate: within wrapWindow a quarter of the
		// range, after a longer gap (the agent or the link was down) up
		// to half.
		return gap >= wrapWindow || ro-last+v <= ro/4
	}
	// Its usual rate bounds what it can have made, whatever the gap: a
	// 16-bit counter at 0.5 pieces/s reset from 60,536 to 0, read 12 s or
	// 70 s later, is no wrap of 5,000 pieces (the probe saw 3,994 and
	// 4,995 phantom pieces booked). A wrap misread so loses at most what
	// the counter made above wrapRateSlack times its usual rate.
	allowed := slack*rate*gap.Seconds() + 1
	if !srcTime {
		allowed = max(allowed, wrapStepSlack*step)
	}
	return ro-last+v <= allowed
}

// stepBack reports ev as a step back, once per value: read again (a
// polled counter standing still below its last value) it is not another.
func (cs *CounterState) stepBack(ev Event) ([]Event, bool) {
	ev.StepBack = true
	return cs.ignored(ev)
}

// ignored reports ev, a value not counted (a step back, a marker; its
// flag set), once per value, Last kept; back remembers it.
func (cs *CounterState) ignored(ev Event) ([]Event, bool) {
	if cs.back == ev.Raw {
		return nil, false
	}
	cs.back = ev.Raw
	ev.From = cs.Last
	return []Event{ev}, false
}

// backAcrossWrap reports whether x, above Last by more than half the
// range of a counter that wraps, is rather a step back across the wrap:
// within a tenth below Last+rollover, less than wrapBackWindow after Last
// and more than the counter makes in that time (resetWouldShow: the rules
// for a step back below Last) — and not above such a step back read
// before it: a step back is one late reading, not a rising series.
// Otherwise it counts: after a gap (the link or the agent down) a line
// running faster than its learned rate makes more than half the range, and
// a step back keeps Last, so each later reading would be one too (the
// review: 66 of 64,542 pieces counted after 30 minutes at 16 times the
// learned rate).
func (cs *CounterState) backAcrossWrap(x extracted) bool {
	ro := float64(x.b.rollover)
	d := x.counter - cs.Last
	if ro == 0 || d <= ro/2 || cs.Seen.IsZero() || x.counter < (cs.Last+ro)*stepBackShare {
		return false // (and within a tenth below Last taken past the wrap, as a step back below Last)
	}
	if cs.back > cs.Last && x.counter > cs.back {
		return false // rising from a step back across the wrap: counting
	}
	since := cs.sinceSeen(x)
	if since < 0 {
		return false
	}
	unseen := cs.unseen(x, since)
	return unseen <= wrapBackWindow && cs.resetWouldShow(d, unseen)
}

// wrapBackWindow is how soon after Last an increase past half the range can
// be a step back across the wrap: a reading seconds late, a "no value" -1
// between two readings. Tighter than stepBackWindow: a line that makes half
// its counter's range in a window cannot be told from one reading late,
// and a step back keeps Last — should the counter wrap next, its pieces
// would be taken for a reset's (a 10,000-counter at 180 pieces/s, learned
// at 2, read again after 50 s at 9,900 and then at 80: 9,180 lost).
const wrapBackWindow = 10 * time.Second

// unseen is how long the counter may have been counting since Last without
// a reading showing it: since, the time since Last — or, watched without
// a break since (an OPC UA session that delivers every change, or a poll
// that kept reading Last), at most x.gap, however long Last stood. watched
// says which.
//
// Or, short of that, the time since Last was last read again unchanged
// (stillSince: an MQTT publisher repeating the value of a stopped line —
// the countersim probe: a reset after an hour's stop read every 10 s was
// booked as a wrap of 25,536 pieces), weighed as the time since a change
// is (wrapRateSlack): the line may have run all of it.
func (cs *CounterState) unseen(x extracted, since time.Duration) time.Duration {
	if cs.watched(x, since) {
		return x.gap
	}
	if still := cs.stillSince(x); still > 0 && still < since {
		return still
	}
	return since
}

// watched reports whether an OPC UA source watched the counter without a
// break since Last (x.gap bounds the time it may have counted unseen).
func (cs *CounterState) watched(x extracted, since time.Duration) bool {
	return x.watch != 0 && x.watch == cs.Watch && x.gap > 0 && x.gap < since
}

// staleRepeats reports whether v is more than a reset could have climbed
// to in still, the time since Last was last read again: beyond
// wrapRateSlack times the counter's usual rate (not resetRateSlack: a line
// restarting faster than it was learned, 7/s after 2/s, is no stale cache
// — the second re-review: 27,166 for 1,630). It needs the usual rate.
func (cs *CounterState) staleRepeats(v float64, still time.Duration) bool {
	rate, step, ok := cs.usual()
	return ok && v > wrapRateSlack*rate*still.Seconds()+step+1
}

// stillSince is the time from the last reading of Last unchanged to x (0
// when none since Last changed, or x is not after it).
func (cs *CounterState) stillSince(x extracted) time.Duration {
	if cs.stillAt.IsZero() || !x.t.After(cs.stillAt) {
		return 0
	}
	return x.t.Sub(cs.stillAt)
}

// resetRateSlack: a reset climbing back to near the last value counts at
// most this many times the counter's usual rate. Tighter than
// wrapRateSlack: a slow publisher's correction (995 after 1,000, published
// 55 s later at 5 pieces/s) stays a step back, not a reset worth 995.
const resetRateSlack = 2

// resetWouldShow reports whether a counter reset and climbing back to v
// within gap (the time it may have counted unseen) would have shown: v is
// beyond what it counts in gap at resetRateSlack times its usual rate;
// while that is not known, gap is under stepBackWindow (a counter
// restarts near zero, and making 90 % of its last count again takes
// longer). So a decrease to within a tenth is a step back — a reading
// out of order, a count corrected by hand, a PLC restoring its retained
// memory from a slightly older state after an outage (the probe saw 2,040
// phantom pieces for a counter set back by 50) — unless a reset fits: a
// small counter (39, then 38 after a 20 s poll at 2 pieces/s) is counted.
func (cs *CounterState) resetWouldShow(v float64, gap time.Duration) bool {
	if rate, step, ok := cs.usual(); ok {
		return v > resetRateSlack*rate*gap.Seconds()+step+1
	}
	return gap < stepBackWindow
}

// sinceSeen is the time from Last to x by source time — but when x is
// stamped more than ClockAhead ahead of its receipt and Last was not, the
// source's clock jumped forward between them, and their source times say
// nothing of the time between them. A PLC whose clock is set a day forward
// as its counter is reset would otherwise show a day in which a wrap is
// plausible (4,026 phantom pieces in the probe): the time between the two
// receipts, plus ClockAhead, bounds it then. (A clock ahead all along
// keeps the time between its readings right, also in a backlog delivered
// in one burst.)
func (cs *CounterState) sinceSeen(x extracted) time.Duration {
	since := x.t.Sub(cs.Seen)
	if x.recv.IsZero() || cs.SeenRecv.IsZero() {
		return since
	}
	if x.t.Sub(x.recv) > ClockAhead && cs.Seen.Sub(cs.SeenRecv) <= ClockAhead {
		since = min(since, x.recv.Sub(cs.SeenRecv)+ClockAhead)
	}
	return since
}

// glitchReturn reports whether x, the first value after a reset, brings
// the counter back near the value it went down from (ResetFrom, within a
// tenth) faster than wrapRateSlack times its usual rate: a glitch, not a
// restart that made all these pieces again (the probe saw a counter read
// 0 for 1.5 s and 600 again book 600 phantom pieces). It needs source
// times and the usual rate; otherwise the climb counts.
func (cs *CounterState) glitchReturn(x extracted) bool {
	rate, step, ok := cs.usual()
	gap := cs.sinceSeen(x)
	if !ok || !x.srcTime || gap <= 0 || cs.ResetFrom <= 0 || x.counter < cs.ResetFrom*stepBackShare {
		return false
	}
	return x.counter-cs.Last > wrapRateSlack*rate*gap.Seconds()+2*step+1
}

// implausible reports whether an increase of d to x is far above what the
// counter makes in the time since its last value: more than spikeSlack
// times its usual rate over that time and its usual step, plus spikeMin.
// It is counted (holding it until the next value told more lost real
// jumps followed by a reset), and reported: one message of another machine
// on a counter's topic (9,870 after 110) books its pieces, and the next
// value a reset. It needs the usual rate.
func (cs *CounterState) implausible(x extracted, d float64) bool {
	if d <= spikeMin {
		return false // never above the bound: spare the hot path usual's sort
	}
	rate, step, ok := cs.usual()
	if !ok {
		return false
	}
	gap := max(0, cs.sinceSeen(x).Seconds())
	return d > spikeSlack*(rate*gap+step)+spikeMin
}

// spikeSlack and spikeMin bound a plausible increase (see implausible).
const (
	spikeSlack = 10
	spikeMin   = 500
)

// RateStep is one plain increase of a counter and the seconds it took.
type RateStep struct {
	D float64 `json:"d"`
	S float64 `json:"s"`
}

// noteIncrease takes a plain increase of d read at t for the counter's
// rate. With source times, increases less than rateMinGap apart are added
// up until they span it, so a counter read every 200 ms learns its rate
// too (it never did: no glitch of it was seen). Without, such a step may
// be a backlog delivered in a burst (an MQTT session's queue) and is not
// kept — unless the value is live: read in the OPC UA watch (one session,
// every value good) its last value was read in (live), where no backlog
// forms, so the increases are added up by their receive times. (The soak:
// an OPC UA counter without source times, read every 0.3 s while it ran,
// learned its rate only from the steps across its stops — 0.3 pieces/s
// for 5 — and a wrap of 14 pieces across a 3 s outage was booked as a
// reset of 8.)
func (cs *CounterState) noteIncrease(d float64, t time.Time, srcTime, live bool, ro uint64) {
	if !srcTime && !live {
		cs.StepAt, cs.StepD = time.Time{}, 0 // what a live watch added up ends with it
		cs.noteStep(d, t.Sub(cs.Seen), ro)
		return
	}
	if cs.StepAt.IsZero() {
		cs.StepAt, cs.StepD = cs.Seen, 0
	}
	if t.Before(cs.StepAt) {
		// The last value was stamped by another clock (it came without a
		// source time): steps start from this one.
		cs.StepAt, cs.StepD = t, 0
		return
	}
	cs.StepD += d
	if gap := t.Sub(cs.StepAt); gap >= rateMinGap {
		cs.noteStep(cs.StepD, gap, ro)
		cs.StepAt, cs.StepD = t, 0
	}
}

// noteStep keeps an increase of d over gap among the counter's last steps.
func (cs *CounterState) noteStep(d float64, gap time.Duration, ro uint64) {
	if gap < rateMinGap || ro > 0 && d >= float64(ro)/2 {
		return
	}
	cs.Steps = append(cs.Steps, RateStep{D: d, S: gap.Seconds()})
	if len(cs.Steps) > stepsKept {
		cs.Steps = append(cs.Steps[:0], cs.Steps[len(cs.Steps)-stepsKept:]...)
	}
}

// usual returns the median rate (pieces/s) and step of the counter's last
// steps; ok is false while there are fewer than stepsMin.
func (cs *CounterState) usual() (rate, step float64, ok bool) {
	n := len(cs.Steps)
	if n < stepsMin {
		return 0, 0, false
	}
	rates, steps := make([]float64, n), make([]float64, n)
	for i, st := range cs.Steps {
		rates[i], steps[i] = st.D/st.S, st.D
	}
	slices.Sort(rates)
	slices.Sort(steps)
	return rates[n/2], steps[n/2], true
}

// stepBackShare is how far below its last value a counter may read, and
// stepBackWindow how soon after it, and still be a step back rather than a
// reset.
const (
	stepBackShare  = 0.9
	stepBackWindow = time.Minute
)

// renamedSource reports whether counter state cs, kept for another source
// value than x's, is x's value under an old source name: the same server,
// kind, address and field (srcID is kind:source:address:field, and a
// source name holds no colon).
func renamedSource(cs *CounterState, x extracted) bool {
	if cs.Server == "" || cs.Server != x.server {
		return false
	}
	kind, rest, ok := strings.Cut(x.b.srcID, ":")
	if !ok {
		return false
	}
	_, tail, ok := strings.Cut(rest, ":") // address:field
	if !ok {
		return false
	}
	old, ok := strings.CutPrefix(cs.Src, kind+":")
	if !ok {
		return false
	}
	name, ok := strings.CutSuffix(old, ":"+tail)
	return ok && name != "" && !strings.Contains(name, ":")
}

func applyCounter(ms *MachineState, x extracted) ([]Event, bool) {
	if ms.Counters == nil {
		ms.Counters = map[Signal]*CounterState{}
	}
	cs := ms.Counters[x.b.signal]
	var srcT time.Time
	if x.srcTime {
		srcT = x.t
	}
	adopted := false
	if cs != nil && cs.Src != x.b.srcID && renamedSource(cs, x) {
		// The same value of the same server under another source name
		// (only the opcua/mqtt entry's name was changed): the same
		// counter, counted on from its last value.
		cs.Src, adopted = x.b.srcID, true
	}
	fresh := func() { // counting starts from x
		ms.Counters[x.b.signal] = &CounterState{Src: x.b.srcID, Server: x.server, Replaced: x.b.replaced, Last: x.counter, Time: srcT, Seen: x.t, SeenRecv: x.recv, Watch: x.watch}
	}
	if cs == nil {
		fresh()
		return nil, true
	}
	if cs.Src != x.b.srcID {
		fresh()
		return []Event{{Machine: x.b.machine, Kind: EventCount, Signal: x.b.signal, Time: x.t, Raw: x.counter,
			From: cs.Last, NewSource: cs.Src}}, true
	}
	if x.server != cs.Server {
		if cs.Server == "" {
			// Kept by a version that did not note the server: taken as
			// the one read now.
			cs.Server, adopted = x.server, true
		} else if x.server != "" {
			// The same node on another server (the source's endpoint was
			// changed: a replacement PLC, or the same one at a new
			// address): another counter, whose value says nothing of the
			// old one's. Counting starts from it.
			fresh()
			return []Event{{Machine: x.b.machine, Kind: EventCount, Signal: x.b.signal, Time: x.t, Raw: x.counter,
				From: cs.Last, NewServer: cs.Server}}, true
		}
	}
	if cs.Replaced != x.b.replaced {
		// The machine's device was replaced (config): its value says
		// nothing of the old one's. The old one's last value again is no
		// news from the new one — a broker's retained copy of the old
		// gateway's message, resent at a reconnect — and is no baseline.
		if x.counter == cs.Last {
			return nil, false
		}
		fresh()
		return []Event{{Machine: x.b.machine, Kind: EventCount, Signal: x.b.signal, Time: x.t, Raw: x.counter,
			From: cs.Last, Replaced: true}}, true
	}
	if x.counter == cs.Last {
		if !x.b.dupOrInitial && x.t.After(cs.Seen) && x.t.After(cs.stillAt) {
			cs.stillAt = x.t
		}
		if x.watch != cs.Watch {
			// The same value read under a new watch (a new session, or
			// good again after a bad value): watched from here.
			cs.Watch = x.watch
			return nil, true
		}
		return nil, adopted
	}
	ev := Event{Machine: x.b.machine, Kind: EventCount, Signal: x.b.signal, Time: x.t, Raw: x.counter, Range: x.b.rollover, Historical: x.historical}
	older := isStale(x, cs.Time)
	last := x.counter // Last from here
	if cs.lateFromBeforeReset(x) {
		// Counted from ResetFrom, not from Last: after a reset its pieces
		// above ResetFrom are new; a rollover counted the way from
		// ResetFrom to the top of the range already.
		if !cs.ResetWrap {
			ev.Delta = decimal.Sub(x.counter, cs.ResetFrom)
		}
		cs.ResetFrom, cs.ResetFromTime = x.counter, x.t
		if ev.Delta == 0 {
			return nil, true
		}
		return []Event{ev}, true
	}
	if x.counter > cs.Last {
		// A possible repeat (redelivered, re-read, or older by source time)
		// can rise above Last only if the counter went down after it: a
		// value from before the last reset or rollover, seen already. It
		// never counts twice; ignoring a value that was new after all loses
		// nothing, the next fresh value brings its pieces.
		switch {
		case (x.b.dupOrInitial || older) && cs.beforeReset(x):
			// A possible repeat from before the last reset or rollover
			// (a redelivered window spanning it): never counted again.
			return nil, false
		case cs.JustReset && !older && cs.glitchReturn(x):
			// Back near the value it went down from, faster than it
			// counts: the reset was a glitch (a gateway restarting shows
			// 0 first, a wrong reading), not a restart that made all
			// these pieces again. Only those above that value count, less
			// what the reset counted; back a little below it, counting
			// resumes above it (as after a step back).
			ev.Glitch, ev.From, ev.Dip = true, cs.ResetFrom, cs.Last
			ev.Delta = max(0, decimal.Sub(decimal.Sub(x.counter, cs.ResetFrom), cs.Last))
			last = max(x.counter, cs.ResetFrom)
			cs.ResetFrom, cs.ResetTime, cs.ResetFromTime = 0, time.Time{}, time.Time{}
		case older && !cs.BehindTime.IsZero() && !x.t.Before(cs.BehindTime):
			// Lower values stamped before Last were held as possible
			// repeats, and now the counter passes Last in that same past:
			// no repeat from after the last reset does that (those from
			// before it are taken out above). The counter was reset while its clock
			// went back (a PLC restarted with its clock behind): a reset,
			// counted from zero, measured in the new time from here.
			ev.Delta, ev.Reset, ev.From = x.counter, true, cs.Last
			ev.ClockBack = cs.Time.Sub(x.t)
			cs.ResetFrom, cs.ResetTime = cs.Last, x.t
			cs.ResetFromTime, cs.ResetWrap = cs.Time, false
			cs.Time = x.t
		case cs.backAcrossWrap(x):
			// Up by more than half the range of a counter that wraps, and
			// sooner than it makes that: a step back across the wrap (a
			// late reading from before it: 65530 → 10 → 65531), or a
			// signed counter's -1 read as 65535, not some 65,000 pieces
			// (the values probe: 65,554 booked for 18). Ignored as a step
			// back below Last is.
			return cs.stepBack(ev)
		case x.b.rollover > 0 && x.counter == float64(x.b.rollover)-1 && !x.b.dupOrInitial && !older && !cs.Seen.IsZero() &&
			cs.implausible(x, x.counter-cs.Last):
			// The top of the counter's range (a -1 read as 65535, or
			// 65535 itself), far above what it makes in the time: a "no
			// value" marker, as intMaxMarker's for counters without
			// rollover — not counted, Last kept (the countersim probe:
			// 30000, -1, 30014 booked 65,545 pieces for 14). A counter
			// that really got there counts from Last at its next value.
			ev.Marker = true
			return cs.ignored(ev)
		default:
			// Otherwise counted even when older by source time: a cumulative
			// counter cannot go up in the past, so the source clock was set
			// back; waiting for it to catch up would only delay the pieces.
			// From now on the counter is measured against the new time.
			// The decimals' difference (decimal.Sub): a float counter's
			// steps add up to its last value less its first, 1230.001 to
			// 1234.567 is 4.566, not 4.566000000000031.
			ev.Delta = decimal.Sub(x.counter, cs.Last)
			if !x.b.dupOrInitial && older {
				ev.ClockBack = cs.Time.Sub(x.t)
				cs.Time = x.t
			} else if !cs.Seen.IsZero() {
				ev.Implausible = !x.b.dupOrInitial && cs.implausible(x, ev.Delta)
				cs.noteIncrease(ev.Delta, x.t, x.srcTime, x.watch != 0 && x.watch == cs.Watch, x.b.rollover)
			}
		}
	} else {
		// A decrease. A possible repeat of an older value (redelivered,
		// re-read after a reconnect, or older by source time) is never a
		// reset: ignore it. The next fresh value is compared with cs.Last
		// again, so nothing is lost if the counter really was reset.
		if older {
			// Stamped before Last, too: a repeat — or a counter restarted
			// with its clock behind. Held; the values after it tell (see
			// above; and a value stamped after Last comes as a decrease).
			return cs.holdBehind(ev, x)
		}
		if x.b.dupOrInitial {
			return nil, false
		}
		ro := float64(x.b.rollover)
		since := cs.sinceSeen(x)
		unseen, slack := cs.unseen(x, since), float64(wrapRateSlack)
		wrapUnseen := unseen // the time a wrap may have taken
		if cs.watched(x, since) {
			slack = resetRateSlack
		} else if still := cs.stillSince(x); still > 0 && unseen == still && cs.staleRepeats(x.counter, still) {
			// Nor could a reset have climbed to x since the repeat: the
			// repeats were stale (a gateway that lost its PLC publishing
			// its cached value; the re-review: a wrap taken for a reset,
			// 4,964 of 8,500) — the time since the change bounds a wrap.
			// Not the step back below: a value a little lower after a
			// long stop stays one (the second re-review: 41,310 for
			// 1,360 when a power cycle restored a value 50 lower).
			wrapUnseen = since
		}
		switch {
		case x.counter >= cs.Last*stepBackShare && x.counter > 0 && !cs.Seen.IsZero() && since >= 0 && cs.resetWouldShow(x.counter, unseen):
			// A step back, not a restart: within a tenth below the last
			// value and soon after it, an out-of-order or corrected
			// reading (a counter restarts near zero, and making 90 % of
			// the last count again takes longer). Counting it as a reset
			// would book the whole value again; it is reported and
			// ignored, and counting goes on once the counter passes Last.
			// After a longer gap (the agent or the link was down) a
			// decrease stays a reset: pieces made since then count —
			// unless the counter was watched all that time (an operator
			// correcting it during a break): a reset would have shown.
			// A small counter, though, may be reset and climb back to near
			// its last value unseen: see resetWouldShow.
			return cs.stepBack(ev)
		case ro > 0 && plausibleWrap(cs, ro, x.counter, wrapUnseen, x.srcTime, slack):
			ev.Delta = decimal.Add(decimal.Sub(ro, cs.Last), x.counter)
			ev.Rollover = true
		default:
			ev.Delta = x.counter
			ev.Reset = true
		}
		ev.From = cs.Last
		cs.ResetFrom, cs.ResetTime = cs.Last, srcT
		cs.ResetFromTime, cs.ResetWrap = cs.Time, ev.Rollover
	}
	cs.Last, cs.Seen, cs.SeenRecv, cs.back, cs.Watch, cs.stillAt = last, x.t, x.recv, 0, x.watch, time.Time{}
	cs.JustReset = ev.Reset
	if ev.Reset || ev.Rollover || ev.Glitch || ev.ClockBack > 0 {
		cs.StepAt, cs.StepD = time.Time{}, 0 // not a plain increase: no step across it
	}
	if x.srcTime && x.t.After(cs.Time) {
		cs.Time = x.t
	}
	cs.BehindTime, cs.BehindCount = time.Time{}, 0
	// A reset to zero counts nothing but is reported like any reset.
	return []Event{ev}, true
}

// clockBack moves the time the machine's running and downtime_reason
// samples are compared with back to x's, when they come from the same clock
// as x (the same OPC UA server, or the same MQTT topic): that clock went
// back, so their next samples are stamped earlier too and are not stale.
// (A PLC on local time goes back an hour at the autumn clock change; its
// stops would otherwise be ignored for that hour.)
//
// A running value held because it came stamped before the last one taken
// (RunPending) and not after x is taken now: the clock it came from went
// back, as x shows. It returns that value's events.
func (m *Mapper) clockBack(ms *MachineState, x extracted) []Event {
	var evs []Event
	if rb := m.running[x.b.machine]; rb != nil && rb.clock == x.b.clock {
		if p := ms.RunPending; p != nil && !p.Time.After(x.t) {
			ms.RunPending = nil
			px := extracted{b: rb, t: p.Time, srcTime: true, recv: p.Recv, running: p.Running, watch: p.Watch}
			back := ms.RunningTime.Sub(p.Time)
			ms.RunningTime = p.Time
			evs, _ = m.setRunning(ms, px, back)
		}
		if ms.RunningTime.After(x.t) {
			ms.RunningTime = x.t
		}
	}
	if rb := m.reason[x.b.machine]; rb != nil && rb.clock == x.b.clock && ms.ReasonTime.After(x.t) {
		ms.ReasonTime = x.t
	}
	return evs
}

// HasRunning reports whether machine has a running signal.
func (m *Mapper) HasRunning(machine string) bool { return m.running[machine] != nil }

// EndStop is for a machine whose running signal is gone from the mapping
// (or the machine itself): nothing would end its stop any more. Its run
// state becomes unknown; if it was stopped, the stop ends at t, now, seen
// by the boot clock (an EventRunning, its loss from m, the mapping it was
// stopped under).
// changed says the state changed.
func (m *Mapper) EndStop(st *State, machine string, t time.Time, seen connectors.Seen) (events []Event, changed bool) {
	ms := st.Machines[machine]
	if ms == nil || ms.Running == nil {
		return nil, false
	}
	stopped := !*ms.Running
	ms.Running, ms.RunningTime = nil, time.Time{}
	if !stopped {
		return nil, true
	}
	return []Event{m.endStop(ms, machine, extracted{t: t, recv: t, seen: seen})}, true
}

// ClockAhead is how far ahead of this machine's clock a source time may be
// before a later, earlier-stamped sample is taken as its clock corrected.
const ClockAhead = 2 * time.Minute

// staleState reports whether a running or downtime_reason sample is stale:
// older by source time than last, the time of the last one accepted —
// unless last was stamped ahead of this machine's clock by more than
// ClockAhead and x is not: then the source's clock was ahead (a wrong time
// zone, a bad clock, a year-2100 value) and has been set right, and every
// later stop would otherwise be ignored until the clock caught up with it.
// back is then how far it went back.
func staleState(x extracted, last time.Time) (stale bool, back time.Duration) {
	if !isStale(x, last) {
		return false, 0
	}
	if !x.recv.IsZero() && last.Sub(x.recv) > ClockAhead && x.t.Sub(x.recv) <= ClockAhead {
		return false, last.Sub(x.t)
	}
	return true, 0
}

// staleEvent reports a stale sample that would have changed the state —
// not a Sparkplug historical one (an edge node's store and forward after
// its BIRTH): older than the BIRTH's state, as such values are, it is no
// sign of a source out of order or a clock gone back (the warning told the
// plant to set a clock that was right), and it is not booked (docs/config.md, Sparkplug B).
func staleEvent(x extracted, last time.Time) []Event {
	if x.historical {
		return nil
	}
	return []Event{{Machine: x.b.machine, Kind: EventStale, Signal: x.b.signal, Time: x.t, Start: last}}
}

// applyRunning takes a running value. One stamped before the last one
// taken is stale (staleState) — but an OPC UA source delivers a node's
// values in order within one watch (connectors.Sample.Watch): a stale value
// that would change the state is held (RunPending), and the next value of
// that watch tells why. Stamped before the last one taken too, and not
// before the held one, it shows the source's clock went back (NTP stepping
// it, a PLC on local time at the autumn clock change): the held value and
// it are taken, in the new time, and every stop would otherwise have been
// ignored until the clock caught up. Stamped after, the held one was a
// stale answer (a cached value, a replay): dropped, reported.
func (m *Mapper) applyRunning(ms *MachineState, x extracted) ([]Event, bool) {
	if x.historical && ms.RunningTime.IsZero() {
		// No live run state with a time (the BIRTH gave the metric no
		// value, and none came before): a stored value is no current one
		// all the same (taken as live, it opened a stop at a stored time).
		return m.applyHistorical(ms, x)
	}
	if x.historical && x.srcTime && x.t.Equal(ms.RunningTime) {
		// Stamped at the current run state's time: a BIRTH stamps a value
		// with the time it last changed, so the stored run that ended a
		// stored stop has the BIRTH's time when it was the last change
		// (the edge node stores the run and sends the BIRTH the same
		// millisecond). It is the history's, not a current value: taken
		// as live it changed nothing, and the stored stop before it was
		// left without its run (no line).
		return m.applyHistorical(ms, x)
	}
	stale, back := staleState(x, ms.RunningTime)
	if stale && x.watch != 0 {
		if p := ms.RunPending; p != nil && p.Watch == x.watch && !x.t.Before(p.Time) {
			ms.RunPending = nil
			px := x
			px.running, px.t, px.recv = p.Running, p.Time, p.Recv
			back := ms.RunningTime.Sub(p.Time)
			m.clockBack(ms, px) // the reason's time too, on the same clock
			evs, _ := m.setRunning(ms, px, back)
			more, _ := m.setRunning(ms, x, 0)
			return append(evs, more...), true
		}
		if ms.Running == nil || *ms.Running != x.running {
			ms.RunPending = &PendingRun{Running: x.running, Time: x.t, Recv: x.recv, Watch: x.watch}
			return nil, true
		}
		return nil, false
	}
	if stale {
		if x.historical {
			return m.applyHistorical(ms, x)
		}
		if !x.b.dupOrInitial && ms.Running != nil && *ms.Running != x.running {
			return staleEvent(x, ms.RunningTime), false
		}
		return nil, false
	}
	var evs []Event
	ch := false
	if x.birth && !x.historical {
		// The stop open when the edge node lost the broker covers what it
		// stored meanwhile, also once a later stop has ended (notBooked).
		// (To its receipt when later: a BIRTH may stamp a value with the
		// time it last changed.)
		end := x.t
		if x.recv.After(end) {
			end = x.recv
		}
		var open *EndedStop
		if ms.Running != nil && !*ms.Running && !ms.StopStart.IsZero() && ms.StopStart.Before(end) {
			open = &EndedStop{Start: ms.StopStart, End: end}
		}
		if open != nil || ms.BirthStop != nil {
			ms.BirthStop, ch = open, true
		}
		// Still stopped at the BIRTH: the stop may have ended while the
		// edge node was away, and another begun, as its stored values tell
		// (splitAtStoredRun).
		var on *EndedStop
		if open != nil && !x.running && x.srcTime && ms.StopStart.Before(x.t) {
			on = &EndedStop{Start: ms.StopStart, End: x.t}
		}
		if o := ms.OnAtBirth; on != nil || o != nil && o.Booked.IsZero() {
			// (One that ended since, its history still to come, waits for
			// it: a BIRTH that finds no stop on tells nothing of it.)
			ms.OnAtBirth, ch = on, true
		}
	}
	if p := ms.RunPending; p != nil {
		ms.RunPending, ch = nil, true
		evs = append(evs, Event{Machine: x.b.machine, Kind: EventStale, Signal: Running, Time: p.Time, Start: ms.RunningTime})
	}
	more, ch2 := m.setRunning(ms, x, back)
	return append(evs, more...), ch || ch2
}

// applyHistorical takes a historical run state older than the current one
// (an edge node's store and forward after its BIRTH, in the order stored),
// or any while the run state has no time: a stop and the run that ended it
// become a line of their own (Ignition sends what it stored while the
// broker was away this way, and each such stop was lost). The machine's
// current state stays as it is. A stored stop whose run is not among the
// stored values books nothing now: when the BIRTH's run state began the
// current stop, that stop began at the stored one (storedStart, when it
// ends: more stored values may come meanwhile); when the machine ran at
// the BIRTH, the run was not stored, and nothing tells when the stop ended.
// A history of the outage a stop was open at, which the BIRTH's run state
// ended, is stopped from that stop's start: its first stored run after it
// is that stop's end (lateEnd).
func (m *Mapper) applyHistorical(ms *MachineState, x extracted) ([]Event, bool) {
	tail := m.tailLeft(ms, x)
	evs, ch := m.applyStored(ms, x)
	return append(tail, evs...), ch || len(tail) > 0
}

// tailLeft books the stored stop the history is left in (histTail) when
// stored value x is past it: a later outage's, or stamped from the end
// booked on.
func (m *Mapper) tailLeft(ms *MachineState, x extracted) []Event {
	if evs := m.ranLeft(ms, x); len(evs) > 0 {
		return evs
	}
	if h := ms.Hist; h != nil && h.Tail != nil && (!h.From.IsZero() && x.t.After(h.From) || !x.t.Before(h.Tail.End)) {
		return m.histTail(ms, x.b.machine)
	}
	return nil
}

// ranLeft, as stored value x begins a later outage's history, takes the
// stop a BIRTH ended (EndAtBirth) whose stored run came already, in the
// history it ended (Ran: through HistRun.On, a stop that BIRTH or an
// earlier one found on): the line was ended there, and it is no more the
// stop the machine was in when the edge node lost the broker again. That
// is the stored stop the history is left in, if any, begun after that run:
// it runs to the BIRTH (a line of its own, as the BIRTH's line ran), and the
// later outage's first stored run ends it there (EndAtBirth, lateEnd).
// Before, the later outage's run ended the line the stored run had ended
// once more (its end moved back past the stored stops between).
func (m *Mapper) ranLeft(ms *MachineState, x extracted) []Event {
	e, h := ms.EndAtBirth, ms.Hist
	if h == nil || h.From.IsZero() || !x.t.After(h.From) {
		return nil
	}
	var evs []Event
	if rb := h.RanBefore; rb != nil {
		h.RanBefore = nil
		if e == nil || !e.Ran {
			// A later BIRTH ended another stop since (EndAtBirth): the
			// stored stop left after rb's run still runs to rb's end, and
			// the later outage's first stored run before that end ends it
			// there (HistRun.Left). Before, it was lost.
			if ev, ok := m.leftAfterRun(ms, h, rb, x.b.machine); ok {
				h.Left = &EndedStop{Start: ev.Start, End: ev.End, Reason: ev.Reason}
				evs = append(evs, ev)
			}
		}
	}
	if e == nil {
		return evs
	}
	if !e.Ran {
		// The history is left in the stored stop a stop a BIRTH began goes
		// on from: that part is a line of its own (storedPart), as the
		// later outage's history is stopped from the BIRTH's stop.
		if x.t.Before(e.End) {
			return append(evs, m.storedPart(ms, h, e, x.b.machine)...)
		}
		return evs
	}
	ms.EndAtBirth = nil
	ev, ok := m.leftAfterRun(ms, h, e, x.b.machine)
	if !ok {
		return evs
	}
	ms.EndAtBirth = &EndedStop{Start: ev.Start, End: ev.End, Reason: ev.Reason}
	return append(evs, ev)
}

// leftAfterRun books the stored stop history h is left in, begun after the
// stored run that ended e's line (Ran), to e's end (ranLeft).
func (m *Mapper) leftAfterRun(ms *MachineState, h *HistRun, e *EndedStop, machine string) (Event, bool) {
	if h.Running || h.StopStart.IsZero() || !h.StopStart.After(e.Start) || !h.StopStart.Before(e.End) {
		return Event{}, false
	}
	return m.stoppedTo(ms, h, machine, e.End, e.Reason)
}

// applyStored is applyHistorical without the booking of the stored stop
// x leaves (tailLeft).
func (m *Mapper) applyStored(ms *MachineState, x extracted) ([]Event, bool) {
	h, ch := histFor(ms, x)
	if x.t.Before(h.Time) {
		return nil, ch // older than what the history told already
	}
	if l := h.Left; l != nil {
		switch {
		case !x.t.Before(l.End):
			h.Left = nil
		case !x.t.After(l.Start):
		case !x.running:
			// Within the stored stop an earlier history was left in,
			// booked to l.End (ranLeft): still stopped, nothing new (a
			// stop stored again is not a line of its own inside it).
			h.Time = x.t
			return nil, true
		default:
			// This history's first stored run ends that line there.
			h.Left = nil
			h.Running, h.Time, h.StopStart = true, x.t, time.Time{}
			ev := Event{Machine: x.b.machine, Kind: EventEndStored, Signal: Running, Time: x.t, Start: l.Start, End: x.t, BookedEnd: l.End, Reason: l.Reason}
			if rb := m.reason[x.b.machine]; rb != nil {
				ev.Loss, ev.LossDefaulted = rb.loss(l.Reason)
			}
			return []Event{ev}, true
		}
	}
	if o := h.On; o != nil && !o.Booked.IsZero() && !x.t.Before(o.Start) {
		// The stop a BIRTH found on has ended since (setRunning), booked to
		// o.Booked: its stored run, from here, ends its line (lateEnd).
		if e := h.Ended; e == nil || !x.t.Before(e.End) {
			h.Ended = &EndedStop{Start: o.Start, End: o.Booked, Reason: o.Reason, Tail: o.Tail, AtBirth: o.AtBirth, After: o.After}
		}
		h.On = nil
	}
	var part []Event
	if e := h.Ended; e != nil && !x.t.Before(e.Start) {
		// From the start of the stop the BIRTH ended, seen live, the
		// machine was stopped, whatever the history told before it (an
		// earlier outage's, flushed late): its first stored run ends it.
		// From the BIRTH on it ran (its run was not stored), and what
		// comes is a later outage's.
		part = m.storedPart(ms, h, e, x.b.machine)
		h.Running, h.StopStart = false, time.Time{}
		if !x.t.Before(e.End) {
			h.Running, h.Ended = true, nil
		}
	}
	if t := h.Tail; t != nil && !t.Prev.IsZero() && !h.Running && !h.StopStart.IsZero() && h.StopStart.Before(t.After) && !x.t.Before(t.After) {
		// The history is in a stored stop from before the machine was known
		// running (the tail's After, a live run it does not hold): that stop
		// ended by then (earlierOutage), and x goes on from a run. Before, a
		// stored stop x was taken for the same stop, and the stop the tail
		// runs into was booked from the earlier one.
		if evs := m.earlierOutage(ms, h, x.b.machine); len(evs) > 0 {
			part = append(part, evs...)
			h.Ended = nil // (its run was the live one)
		}
		h.Running, h.StopStart = true, time.Time{}
	}
	evs, _ := m.applyStoredOn(ms, h, x)
	return append(part, evs...), true
}

// storedPart books, as the history reaches the start of e, a stop a BIRTH
// began (AtBirth) whose line was booked before its stored start came, the
// stored stop the history is in, begun before that BIRTH: the machine was
// stopped from it to the BIRTH (a line of its own, as storedStart books it
// with an open line). Before, the history was stopped from e's start on,
// and that stored stop was not booked.
func (m *Mapper) storedPart(ms *MachineState, h *HistRun, e *EndedStop, machine string) []Event {
	if !e.AtBirth || h.Running || h.StopStart.IsZero() || !h.StopStart.Before(e.Start) || h.StopStart.Before(e.After) {
		return nil
	}
	start, end := notBooked(ms, h.StopStart, e.Start)
	if !start.Before(end) {
		return nil
	}
	reason := h.reasonOr(e.Reason) // (none stored: the stop's)
	ev := m.storedLine(machine, end, start, end, reason)
	return []Event{ev}
}

// applyStoredOn is the rest of applyStored, from the stored tail and the
// stop the BIRTH found on.
func (m *Mapper) applyStoredOn(ms *MachineState, h *HistRun, x extracted) ([]Event, bool) {
	if t := h.Tail; t != nil && !x.t.Before(t.End) {
		h.Tail = nil // a later outage's
	}
	var pre []Event
	if o := h.On; o != nil && !x.t.Before(o.Start) {
		// From the start of the stop the BIRTH found on, the machine was
		// stopped, whatever the history told before it, or from the stored
		// stop that stop goes on from (storedStart): its first stored run
		// before the BIRTH ends it. From the BIRTH on, what comes is a later
		// outage's.
		switch {
		case !x.t.Before(o.End) || !o.Booked.IsZero() || ms.Running == nil || *ms.Running || !ms.StopStart.Equal(o.Start):
			h.On = nil
		case !intoBirthStop(ms, h):
			pre = m.beforeLastStop(ms, h, x.b.machine)
			h.Running, h.StopStart = false, time.Time{}
		}
		if h.On != nil && x.running {
			evs := append(pre, m.splitAtStoredRun(ms, h, x)...)
			h.On = nil
			h.Running, h.Time, h.StopStart = true, x.t, time.Time{}
			return evs, true
		}
	}
	was := h.Running
	h.Running, h.Time = x.running, x.t
	switch {
	case !x.running && was:
		h.StopStart = x.t
	case x.running && !was:
		if h.StopStart.IsZero() {
			// The end of the stop the BIRTH's run state ended (lateEnd),
			// or of one booked with the stop a BIRTH began (storedStart).
			return append(pre, m.lateEnd(ms, h, x)...), true
		}
		start, end := notBooked(ms, h.StopStart, x.t)
		h.StopStart = time.Time{}
		if !start.Before(end) {
			return pre, true
		}
		ev := m.storedLine(x.b.machine, x.t, start, end, h.Reason)
		return append(pre, ev), true
	}
	return pre, true
}

// beforeLastStop books, as the history reaches the stop a BIRTH found on
// (h.On) from a stored stop begun before it whose run was not stored (an
// earlier outage's, told in the same history), that stored stop when it
// began before the machine's last ended stop, a stop a BIRTH began, and
// not before the machine was last known running before that BIRTH
// (LastStop.After): the machine was stopped from it to that stop's line.
// Before, the stored stop was dropped there. One that began earlier is
// not booked: a line booked between it and the last stop is not known
// (notBooked knows the last stop only).
func (m *Mapper) beforeLastStop(ms *MachineState, h *HistRun, machine string) []Event {
	ls := ms.LastStop
	if ls == nil || ls.After.IsZero() || h.Running || h.StopStart.IsZero() ||
		h.StopStart.Before(ls.After) || !h.StopStart.Before(ls.Start) {
		return nil
	}
	start, end := notBooked(ms, h.StopStart, ls.Start)
	if !start.Equal(h.StopStart) || !start.Before(end) {
		return nil // (within a booked stop)
	}
	return []Event{m.storedLine(machine, end, start, end, h.reasonOr(ls.Reason))}
}

// histFor returns ms.Hist for the historical value x, begun afresh when
// there is none or when x is later than the live state the history began
// after (HistRun.From): the next outage's. Live values that come while an
// edge node flushes its history do not end it (a stored stop and the
// stored run that ended it may come on either side of one). A stored stop
// of the last history that runs into the stop a BIRTH began, still open
// (storedStart), is where the next one goes on from: the machine was
// stopped since when the edge node lost the broker again.
func histFor(ms *MachineState, x extracted) (h *HistRun, changed bool) {
	live := ms.RunningTime
	if ms.ReasonTime.After(live) {
		live = ms.ReasonTime
	}
	h = ms.Hist
	switch {
	case h == nil || !h.From.IsZero() && x.t.After(h.From):
		next := &HistRun{Running: true, From: live}
		if h != nil && intoBirthStop(ms, h) {
			next.Running, next.Time, next.StopStart, next.Reason, next.ReasonTime = false, h.Time, h.StopStart, h.Reason, h.ReasonTime
		} else if e := ms.EndAtBirth; e != nil && !e.Ran && x.t.Before(e.End) {
			// The history of the outage the stop the BIRTH ended was open
			// at (lateEnd).
			next.Ended = e
		}
		if o := ms.OnAtBirth; o != nil && x.t.Before(o.End) {
			// The history of the outage the stop the BIRTH found on was
			// open at (splitAtStoredRun).
			next.On = o
		}
		if h != nil && h.Left != nil && x.t.Before(h.Left.End) {
			next.Left = h.Left // (booked by ranLeft, as x came)
		}
		// (Stored values come oldest first: a first one later than that
		// BIRTH is a later outage's, and that one will tell nothing more.)
		ms.EndAtBirth, ms.OnAtBirth = nil, nil
		ms.Hist = next
		return next, true
	case h.From.IsZero():
		h.From = live // kept by an agent that did not note it
		return h, true
	}
	return h, false
}

// liveAfterHist notes, for a live run state or reason x stamped by the
// source, where the history begun while the machine's state had no time
// (the BIRTH gave the metrics no value, none came before: HistRun.From
// zero) ends: a stored value later than x is the next outage's. Left
// zero, From became the live time when the next outage's first stored
// value came (histFor), and that outage's values went on from the
// earlier one's (a stored stop whose run was not stored ended by the
// next outage's run: a line over time the machine was seen running). It
// reports whether it noted it.
func liveAfterHist(ms *MachineState, x extracted) bool {
	h := ms.Hist
	if h == nil || !h.From.IsZero() || x.historical || !x.srcTime || !ms.RunningTime.IsZero() || !ms.ReasonTime.IsZero() {
		return false
	}
	h.From = x.t
	return true
}

// notBooked cuts a stored stop from start to end so that it does not
// overlap the machine's last ended stop nor its current one: a stop that
// was open when the edge node lost the broker is ended by the BIRTH's run
// state, and covers the stored stops within it (downtime is not booked
// twice), also once a later live stop has ended (MachineState.BirthStop);
// to its stored run, when one came (lateEnd). The part before the stop it
// overlaps is kept.
func notBooked(ms *MachineState, start, end time.Time) (time.Time, time.Time) {
	cut := func(s, e time.Time) {
		switch {
		case s.IsZero() || !start.Before(e) || !end.After(s):
		case start.Before(s):
			end = s
		default:
			start = e
		}
	}
	if ls := ms.LastStop; ls != nil {
		cut(ls.Start, ls.End)
	}
	if bs := ms.BirthStop; bs != nil {
		cut(bs.Start, bs.End)
	}
	if ms.Running != nil && !*ms.Running {
		cut(ms.StopStart, maxTime)
	}
	return start, end
}

// lateEnd takes x, a stored run, as the end of the stop the BIRTH's run
// state ended (h.Ended), when x is the history's first stored run from the
// stop's start on: the edge node lost the broker during that stop, stored the
// run, and sent it after its BIRTH, whose run state had ended the stop (to
// the BIRTH, the line too long by up to the outage). When x is after the
// stop's start and before the end it was booked with, the line ends at x
// (EventEndStored, booked once: h.Ended is cleared whatever x is), and the
// stop, as the machine's last one or the one it was in at the BIRTH, ends
// there: stored stops after x are not within it (notBooked).
func (m *Mapper) lateEnd(ms *MachineState, h *HistRun, x extracted) []Event {
	e := h.Ended
	h.Ended = nil
	if e == nil || !x.t.After(e.Start) || !x.t.Before(e.End) {
		return nil
	}
	if t := h.Tail; e.Tail && t != nil && !t.Prev.IsZero() && t.Prev.Equal(e.Start) && t.End.After(e.End) {
		// The line from the tail's Prev ended at x: a stored stop from x
		// on ran to that line's end (earlierOutage), one after it to the
		// tail's end (histTail).
		t.Prev = e.End
	} else if e.Tail {
		t := *e
		h.Tail = &t // (histTail)
	}
	if eb := ms.EndAtBirth; eb != nil && eb.Start.Equal(e.Start) && eb.End.Equal(e.End) {
		eb.Ran = true // (ranLeft)
	}
	reason := e.Reason
	if ls := ms.LastStop; ls != nil && ls.Start.Equal(e.Start) {
		reason = ls.Reason // a late reason may have come since
		ls.End = x.t
	}
	if bs := ms.BirthStop; bs != nil && !bs.Start.Before(e.Start) && bs.Start.Before(e.End) {
		// The stop the machine was in at the BIRTH is within the line (its
		// start moved back to a stored stop, storedStart): it ends at x too.
		if !x.t.After(bs.Start) {
			ms.BirthStop = nil
		} else if bs.End.After(x.t) {
			bs.End = x.t
		}
	} else if bs != nil && bs.Start.Before(x.t) && bs.End.After(x.t) {
		bs.End = x.t
	}
	ev := Event{Machine: x.b.machine, Kind: EventEndStored, Signal: Running, Time: x.t, Start: e.Start, End: x.t, BookedEnd: e.End, Reason: reason}
	if rb := m.reason[x.b.machine]; rb != nil {
		ev.Loss, ev.LossDefaulted = rb.loss(reason)
	}
	return []Event{ev}
}

// intoBirthStop reports whether history h ends in a stored stop whose run
// was not stored, before the machine's current stop, which a BIRTH's run
// state began after that history's outage (HistRun.From not before it):
// the machine was stopped from the stored stop on (storedStart).
func intoBirthStop(ms *MachineState, h *HistRun) bool {
	return ms.StopAtBirth && !h.Running && !h.StopStart.IsZero() &&
		h.StopStart.Before(ms.StopStart) && !h.From.Before(ms.StopStart)
}

// maxTime is later than any time a value carries.
var maxTime = time.Unix(1<<62, 0)

// setRunning takes a running value that is not stale (back: how far the
// source's clock went back, if it did).
func (m *Mapper) setRunning(ms *MachineState, x extracted, back time.Duration) ([]Event, bool) {
	if back > 0 {
		ms.RunningTime = x.t // compared with the corrected clock from here
	}
	if ms.Running != nil && *ms.Running == x.running {
		if x.srcTime && x.t.After(ms.RunningTime) {
			ms.RunningTime = x.t // not worth a state write on its own
		}
		return nil, back > 0
	}
	wasKnown := ms.Running != nil
	r := x.running
	ms.Running = &r
	ranAt := ms.RunningTime
	if x.srcTime {
		ms.RunningTime = x.t
	}
	if !r {
		ms.StopStart, ms.StopRecv, ms.StopSeen = x.t, x.recv, x.seen
		ms.StopAtBirth, ms.StopAfter = x.birth, time.Time{}
		if x.birth && wasKnown {
			ms.StopAfter = ranAt
		}
		ev := m.runningEvent(ms, x.b.machine, EventStopped, x.t)
		ev.Start, ev.ClockBack = x.t, back
		return []Event{ev}, true
	}
	if !wasKnown {
		ms.StopStart, ms.StopRecv, ms.StopSeen, ms.StopAtBirth = time.Time{}, time.Time{}, connectors.Seen{}, false
		return nil, true
	}
	on, h := ms.stopOn(), ms.Hist
	atBirth, from := ms.StopAtBirth, ms.StopStart
	into := h != nil && intoBirthStop(ms, h) && h.On == nil
	after, prev := ms.StopAfter, ms.LastStop
	evs := m.endAt(ms, x, back)
	ev := evs[len(evs)-1]
	if ls := ms.LastStop; ls != nil && atBirth && !after.IsZero() && ev.Start.Equal(from) && ls.Start.Equal(from) {
		// A stop a BIRTH began, from that BIRTH: a stored stop of the
		// outage before it, after the machine last ran, ran to it
		// (beforeLastStop).
		ls.After = after
	}
	if x.birth {
		// The stop may have ended while the edge node was away: its stored
		// run, if any, comes after the BIRTH (lateEnd).
		if e := ms.EndAtBirth; e != nil && e.Ran && h != nil && !h.From.IsZero() {
			h.RanBefore = e // (ranLeft)
		}
		ms.EndAtBirth = nil
		if ls := ms.LastStop; ls != nil {
			e := *ls
			e.AtBirth, e.After = atBirth && ls.Start.Equal(from), after // (storedPart)
			ms.EndAtBirth = &e
		}
	}
	if on != nil && x.srcTime && ev.ClockBack == 0 {
		// It went on through a BIRTH, before which the edge node may have
		// stored its run (in a history to come, or one that has not told
		// it yet): that run ends its line, and, when the machine was
		// stopped until this run, the stored stop after it runs to it
		// (applyHistorical, lateEnd, histTail).
		b := *on
		b.Start, b.Booked, b.Reason, b.Tail = ev.Start, ev.End, ev.Reason, !x.birth
		// (A stop a BIRTH began, its stored start not come yet: the
		// stored stop it goes on from, before that BIRTH, is still to be
		// booked, storedPart.)
		b.AtBirth, b.After = atBirth && ev.Start.Equal(from), after
		fromHist := on != ms.OnAtBirth && on != h.On // (h is not nil: on came from it)
		if len(evs) > 1 && evs[0].Historical && fromHist {
			// (A stop a BIRTH began: the part the stored values told,
			// booked apart from the open line, is the one its outage is
			// within.)
			b.Start, b.Booked, b.Reason = evs[0].Start, evs[0].End, evs[0].Reason
		}
		if on == ms.OnAtBirth {
			ms.OnAtBirth = &b
			if into && len(evs) > 1 && evs[0].Historical {
				// The stop, found on by a later BIRTH, went on from a stored
				// stop of the history still coming, booked apart (an open
				// line, storedStart): that history's stored run ends that
				// part (lateEnd; before, nothing ended it, and stored stops
				// after its run were booked inside it).
				p := b
				p.Start, p.End, p.Booked, p.Reason = evs[0].Start, from, evs[0].End, evs[0].Reason
				p.AtBirth, p.After = false, time.Time{}
				h.On = &p
			}
		} else {
			if !fromHist && h.Ended == nil && len(evs) > 1 && evs[0].Historical {
				// The stop, found on by an earlier BIRTH (the history's
				// On), went on from a stored stop of that history, booked
				// apart (an open line, storedStart): the history's stored
				// run ends that part (lateEnd), as above, and a stored stop
				// after that run runs to the part's end (Tail: the machine was
				// stopped there, at the BIRTH that began the stop, or in a
				// booked stop; histTail). Before, nothing ended it, and a
				// stored stop after its run was booked inside it (storedPart).
				h.Ended = &EndedStop{Start: evs[0].Start, End: evs[0].End, Reason: evs[0].Reason, Tail: true}
			}
			h.On = &b
		}
	}
	if atBirth && !x.birth && x.srcTime && ev.ClockBack == 0 && ev.Start.Equal(from) &&
		h != nil && h.Running && h.Tail == nil && !h.From.Before(from) && h.Time.Before(from) {
		// A stop a BIRTH began (found on by a later one or not), ended live
		// while the history of the outage before that BIRTH is still
		// coming (a slow flush), none of it stored stopped yet: a stored stop still to come in it, its run
		// not stored, is where the stop began, and runs to the BIRTH (a
		// line of its own, histTail; a stored run after it ends it there).
		h.Tail = &EndedStop{Start: from, End: from, Reason: ev.Reason, Tail: true}
		if prev != nil && !after.IsZero() && !prev.Start.After(after) && !prev.End.After(after) {
			// The machine ran at after, from the stop before (its line
			// booked): the history may tell of that stop's outage too, and a
			// stored stop before after ran up to that line only.
			h.Tail.After, h.Tail.Prev = after, prev.Start
		}
	}
	return evs, true
}

// stopOn is the stop that went on through a BIRTH, as a history of that
// outage may still tell of (see setRunning), when the current stop is
// one: OnAtBirth, the history's On, or a stop a BIRTH began that goes on
// from a stored stop (storedStart) — nil otherwise.
func (ms *MachineState) stopOn() *EndedStop {
	if o := ms.OnAtBirth; o != nil && o.Booked.IsZero() && o.Start.Equal(ms.StopStart) {
		return o
	}
	h := ms.Hist
	if h == nil {
		return nil
	}
	if o := h.On; o != nil && o.Booked.IsZero() && o.Start.Equal(ms.StopStart) {
		return o
	}
	if intoBirthStop(ms, h) && h.On == nil {
		return &EndedStop{Start: h.StopStart, End: ms.StopStart}
	}
	return nil
}

// endAt ends ms's current stop with run x (back: how far the source's
// clock went back), as setRunning does: its line from where it began
// (storedStart), the last event, after the stored part booked apart, if
// any.
func (m *Mapper) endAt(ms *MachineState, x extracted, back time.Duration) []Event {
	evs, from := m.storedStart(ms, x)
	if !from.IsZero() {
		ms.StopStart = from
	}
	ev := m.endStop(ms, x.b.machine, x)
	ev.ClockBack = back
	if h := ms.Hist; !from.IsZero() && h.ReasonTime.After(ms.ReasonTime) {
		// The stored reason is the last one known (the BIRTH gave the
		// reason no value, and none came live since).
		ev.Reason = h.Reason
		if rb := m.reason[x.b.machine]; rb != nil {
			ev.Loss, ev.LossDefaulted = rb.loss(ev.Reason)
		}
	} else if x.srcTime && !ms.ReasonChanged.IsZero() && !ms.ReasonChanged.Before(x.t) && ms.ReasonChanged.After(ev.Start) {
		// The reason changed at or after the run (a stop code cleared with
		// it, its notification first): the stop had the reason before.
		ev.Reason = ms.PrevReason
		if rb := m.reason[x.b.machine]; rb != nil {
			ev.Loss, ev.LossDefaulted = rb.loss(ev.Reason)
		}
	}
	ms.LastStop = nil
	if x.srcTime && ev.Start.Before(ev.End) && ev.ClockBack == 0 {
		ms.LastStop = &EndedStop{Start: ev.Start, End: ev.End, Reason: ev.Reason}
	}
	return append(evs, ev)
}

// splitAtStoredRun takes x, a stored run, as the end of the stop the BIRTH's
// run state found on (h.On), when x is the history's first stored run from
// the stop's start on, before that BIRTH: the edge node lost the broker
// during that stop, stored the run, and the stop the BIRTH found is a later
// one. The stop ends at x, its line with it (from where it began, as a
// live run would end it: endAt), and the machine's stop from then on is one
// begun at the BIRTH (StopAtBirth): it goes on from the last stored stop
// before the BIRTH, if one comes (storedStart, when it ends), and stored
// stops between are lines of their own (notBooked: the stop, as the one the
// machine was in at the BIRTH, ends at x). The events are Stored: their
// times are no live ones (the caller does not take them for the source's
// clock), and the stop begun at the BIRTH opens its line (block_workcenter)
// at the BIRTH.
func (m *Mapper) splitAtStoredRun(ms *MachineState, h *HistRun, x extracted) []Event {
	o := h.On
	evs := m.endAt(ms, x, 0)
	for i := range evs {
		if evs[i].Kind == EventRunning && !evs[i].Historical {
			evs[i].Stored = true
		}
	}
	if bs := ms.BirthStop; bs != nil && bs.Start.Before(x.t) && bs.End.After(x.t) {
		bs.End = x.t
	}
	if n := ms.OnAtBirth; n != nil && n.Start.Equal(o.Start) && n.End.After(o.End) {
		// A later BIRTH found it on too (its outage's history still to
		// come): that is the stop begun at this BIRTH.
		n.Start = o.End
	}
	ms.StopStart, ms.StopRecv, ms.StopSeen, ms.StopAtBirth = o.End, time.Time{}, connectors.Seen{}, true
	ms.StopAfter = x.t
	ev := m.runningEvent(ms, x.b.machine, EventStopped, o.End)
	ev.Start, ev.Stored = o.End, true
	return append(evs, ev)
}

// histTail books, at the end of a message of stored values, the stored stop
// the history is left in when it runs into the end booked for a stop that
// went on through a BIRTH that found it stopped (HistRun.Tail): the
// machine was stopped from it until then, unless a stored run in a later
// message tells otherwise (then its line ends there: Ended, lateEnd).
func (m *Mapper) histTail(ms *MachineState, machine string) []Event {
	h := ms.Hist
	if h == nil || h.Tail == nil || h.Running || h.StopStart.IsZero() || !h.StopStart.Before(h.Tail.End) {
		return nil
	}
	if e := h.Ended; e != nil && h.StopStart.Before(e.End) {
		// A stop a BIRTH ended, its stored run still to come, is after
		// the stored stop (or the stored stop is within it): the stored
		// stop is an earlier outage's, and that run ends the line
		// (storedPart, lateEnd). Before, the tail took Ended's place and
		// was booked over that line (time booked twice).
		return nil
	}
	if t := h.Tail; !t.Prev.IsZero() && h.StopStart.Before(t.After) {
		return m.earlierOutage(ms, h, machine)
	}
	// (No reason stored: the one the stop it ran into was booked with.)
	ev, ok := m.stoppedTo(ms, h, machine, h.Tail.End, h.Tail.Reason)
	if !ok {
		return nil
	}
	h.Ended = &EndedStop{Start: ev.Start, End: ev.End, Reason: ev.Reason, Tail: true}
	return []Event{ev}
}

// earlierOutage books the stored stop the history is in when it is before
// the machine was last known running before the BIRTH the tail's stop began
// at (HistRun.Tail's After): the history tells of two outages, and the
// stored stop is the earlier one's, the one the stop whose line begins at
// the tail's Prev (booked live, ended by that run) went on from. It runs to
// Prev (a stored run, if one comes, ends it there: lateEnd); a stored stop
// from Prev on is within that line, or the run. Before, histTail booked it
// to the tail's end, over that line (time booked twice). The tail stays,
// for the later outage's stored stops.
func (m *Mapper) earlierOutage(ms *MachineState, h *HistRun, machine string) []Event {
	t := h.Tail
	if !h.StopStart.Before(t.Prev) {
		return nil
	}
	ev, ok := m.stoppedTo(ms, h, machine, t.Prev, t.Reason)
	if !ok {
		h.Running = true // (nothing left to book: the history goes on from a run)
		return nil
	}
	h.Ended = &EndedStop{Start: ev.Start, End: ev.End, Reason: ev.Reason}
	return []Event{ev}
}

// stoppedTo books the stored stop the history is in as a line to to (less
// what is booked already: notBooked), with the stored reason or fallback,
// and takes the history out of it; false when nothing is left to book.
func (m *Mapper) stoppedTo(ms *MachineState, h *HistRun, machine string, to time.Time, fallback string) (Event, bool) {
	start, end := notBooked(ms, h.StopStart, to)
	h.StopStart = time.Time{}
	if !start.Before(end) {
		return Event{}, false
	}
	return m.storedLine(machine, end, start, end, h.reasonOr(fallback)), true
}

// storedStart looks, as run x ends a stop a Sparkplug BIRTH's run state
// began (StopAtBirth), at what the edge node stored meanwhile: when the
// history of that outage (HistRun.From not before the stop) ends in a
// stored stop before the BIRTH whose run was not stored, the machine was
// stopped from it on, and the stop began then (the downtime from it to
// the BIRTH was booked nowhere). That part, cut to what no booked stop
// covers, is booked once: the stop's line begins at it (from) — but a
// stop whose line is open already (block_workcenter: its start keys it in
// Odoo) is not moved, and the part is a line of its own (hist, with the
// stored reason, else the stop's), as it is when a booked stop cut it
// short. It is looked at only now, as the stop ends: until then more
// stored values may come (in several messages), a stored run among them.
func (m *Mapper) storedStart(ms *MachineState, x extracted) (hist []Event, from time.Time) {
	h := ms.Hist
	if h == nil || !intoBirthStop(ms, h) {
		return nil, time.Time{}
	}
	start, end := notBooked(ms, h.StopStart, ms.StopStart)
	h.StopStart = time.Time{} // booked now: a stored run later ends nothing (applyHistorical)
	if start.Before(end) {
		// Up to end, the stored values are booked: a stored stop after
		// a stored run in them, before a stop a BIRTH began, is not
		// booked again to that BIRTH (storedPart, bounded by After).
		for _, e := range []*EndedStop{h.On, h.Ended, ms.OnAtBirth, ms.EndAtBirth} {
			if e != nil && e.AtBirth && e.After.Before(end) {
				e.After = end
			}
		}
	}
	switch {
	case !start.Before(end):
		return nil, time.Time{}
	case end.Equal(ms.StopStart) && !ms.LineOpened:
		return nil, start
	}
	// (No reason stored: it did not change while the edge node was away,
	// and is the one the stop has now.)
	reason := h.reasonOr(ms.Reason)
	ev := m.storedLine(x.b.machine, x.t, start, end, reason)
	return []Event{ev}, time.Time{}
}

// runningEvent is a run-state event of machine at t, with its current
// downtime reason and that reason's loss.
func (m *Mapper) runningEvent(ms *MachineState, machine string, kind EventKind, t time.Time) Event {
	loss, defaulted := "", false
	if rb := m.reason[machine]; rb != nil {
		loss, defaulted = rb.loss(ms.Reason)
	}
	return Event{Machine: machine, Kind: kind, Signal: Running, Time: t, Reason: ms.Reason, Loss: loss, LossDefaulted: defaulted}
}

// BoxStep is how far apart the wall clock and the boot clock may put two
// receipts before the box's clock is taken as stepped between them
// (endStop; the agent's look at its clocks). The two are read together at
// each receipt, and a stamp the agent moves ahead in a burst moves both;
// NTP's small steps stay below it.
const BoxStep = 2 * time.Second

// endStop ends ms's stop with x, the run (x.t; x.recv and x.seen when it
// was received, zero when not): the EventRunning from the stop's start to
// x.t.
func (m *Mapper) endStop(ms *MachineState, machine string, x extracted) Event {
	t := x.t
	ev := m.runningEvent(ms, machine, EventRunning, t)
	ev.Start, ev.End = ms.StopStart, t
	// saw is how long the agent saw the stop, by the box's boot clock,
	// when it received both ends in one boot.
	saw, sawOK := x.seen.Since(ms.StopSeen)
	if !sawOK && !ms.StopRecv.IsZero() && x.recv.After(ms.StopRecv) {
		saw, sawOK = x.recv.Sub(ms.StopRecv), true
	}
	// By the wall clock alone: receive times taken in this process also
	// carry Go's monotonic reading, which Sub would use, and which no step
	// moves.
	byClock := ev.End.Round(0).Sub(ev.Start.Round(0))
	// boxDated: both ends are dated by this box's clock at their receipt,
	// the run's with its boot-clock reading.
	boxDated := !x.srcTime && x.seen.Boot != "" && ms.StopStart.Equal(ms.StopRecv)
	switch {
	case ev.Start.IsZero():
		ev.Start = ev.End
	case boxDated && sawOK && (byClock-saw > BoxStep || saw-byClock > BoxStep):
		// Both ends are dated by this box's clock at their receipt, and it
		// was stepped between them (NTP setting a box that booted with its
		// clock behind, someone setting it by hand): days of downtime that
		// never was, or a line that ends before it starts. The stop lasted
		// as long as the agent saw it, dated in the clock as it is now (set
		// right, most likely) — but a line opened at the stop
		// (block_workcenter) is keyed by its start, which stays.
		ev.BoxStep = byClock - saw
		if ms.LineOpened {
			ev.End = ev.Start.Add(saw)
		} else {
			ev.Start = t.Add(-saw)
		}
	case byClock < 0:
		// The restart's time is earlier than the stop's: the source's clock
		// went back during the stop (or one of them had no source time, or
		// the clocks differ). The stop lasted as long as the agent saw it,
		// if it saw both ends, dated in the clock as it is now (set right,
		// most likely) — but a line opened at the stop (block_workcenter)
		// is keyed by its start and must be closed: its start stays. If
		// the agent did not see both, an empty interval, never a negative
		// one.
		ev.End = ev.Start
		if sawOK && saw > 0 {
			if ms.LineOpened {
				ev.End = ev.Start.Add(saw)
			} else {
				ev.Start, ev.End = t.Add(-saw), t
			}
		}
	}
	if boxDated && x.seen.Boot == ms.StopSeen.Boot && ev.End.Equal(t) {
		// Both ends received in this boot, and the end is the time its
		// receipt was dated: the pair tells in which clock (a stop begun
		// in an earlier boot, or ended at its start, would show a step
		// that never was).
		ev.Seen = x.seen
	}
	ms.StopStart, ms.StopRecv, ms.StopSeen, ms.StopAtBirth = time.Time{}, time.Time{}, connectors.Seen{}, false
	return ev
}

// lateReasonLead is how long before the last stop's start a code may be
// stamped and still be that stop's when it comes late: a PLC sets its code a
// scan or two before the run bit drops. One stamped earlier may belong to
// an earlier stop (cleared since, in a message still on its way).
const lateReasonLead = 2 * time.Second

func (m *Mapper) applyReason(ms *MachineState, x extracted) ([]Event, bool) {
	stale, back := staleState(x, ms.ReasonTime)
	if x.historical && (stale || ms.RunningTime.IsZero() || x.srcTime && x.t.Before(ms.RunningTime)) {
		// The reason of the stops the history tells of (applyHistorical);
		// also one older than the current run state when no live reason
		// came before it (none yet, or the BIRTH gave it no value), or
		// any while the run state has no time (as a stored run state,
		// applyRunning): not the machine's reason now.
		tail := m.tailLeft(ms, x)
		h, ch := histFor(ms, x)
		if !x.t.Before(h.ReasonTime) {
			h.Reason, h.ReasonTime = x.reason, x.t
			return tail, true
		}
		return tail, ch || len(tail) > 0
	}
	if stale {
		if !x.b.dupOrInitial && ms.ReasonSet && ms.Reason != x.reason {
			return staleEvent(x, ms.ReasonTime), false
		}
		return nil, false
	}
	if back > 0 {
		ms.ReasonTime = x.t
	}
	// The current stop, begun by a BIRTH, goes on from a stored one whose
	// reason is later than the live one (the BIRTH gave the reason no
	// value): x follows the stored reason, not the live one from before
	// the outage (storedStart; a code cleared with the run, the same as
	// before the outage or its notification first, took the stored code
	// from the stop).
	prev := ms.Reason
	if h := ms.Hist; h != nil && x.srcTime && h.ReasonTime.After(ms.ReasonTime) && !x.t.Before(h.ReasonTime) && intoBirthStop(ms, h) {
		prev = h.Reason
	}
	if ms.ReasonSet && ms.Reason == x.reason && prev == x.reason {
		if x.srcTime && x.t.After(ms.ReasonTime) {
			ms.ReasonTime = x.t
		}
		return nil, false
	}
	ms.PrevReason, ms.ReasonChanged = prev, time.Time{}
	ms.Reason, ms.ReasonSet = x.reason, true
	if x.srcTime {
		ms.ReasonTime, ms.ReasonChanged = x.t, x.t
	}
	loss, defaulted := x.b.loss(x.reason)
	var evs []Event
	if ls := ms.LastStop; ls != nil && x.srcTime && x.t.Before(ls.End) && !x.t.Before(ls.Start.Add(-lateReasonLead)) && x.reason != "" && !defaulted {
		// Stamped before the last stop ended (and after the reason it was
		// booked with: not stale), it came after the restart. A cleared or
		// unmapped code does not change a booked stop: a PLC clearing its
		// code a scan before the run bit, the two on connections that
		// arrive in either order, would otherwise take the stop's reason.
		if was, _ := x.b.loss(ls.Reason); was != loss {
			ls.Reason = x.reason
			evs = append(evs, Event{Machine: x.b.machine, Kind: EventReasonLate, Signal: DowntimeReason, Time: x.t,
				Start: ls.Start, End: ls.End, Reason: x.reason, Loss: loss})
		}
	}
	if ms.Running == nil || *ms.Running {
		return evs, true
	}
	return append(evs, Event{
		Machine: x.b.machine, Kind: EventReason, Signal: DowntimeReason, Time: x.t,
		Start: ms.StopStart, Reason: x.reason, Loss: loss, LossDefaulted: defaulted,
	}), true
}

// extract reads every binding's value from the sample. A payload that is
// unusable for all of them (not the JSON they need, too large) fails as a
// whole; a value one binding cannot use skips that binding, and the first
// such error comes back with the others' values. missing lists the
// bindings whose field the (JSON) payload does not have.
func extract(bs []*binding, s connectors.Sample) (_ []extracted, missing []*binding, _ error) {
	perr := func(field string, err error) error {
		return &PayloadError{Source: s.Source, Address: s.Address, Field: field, Err: err}
	}
	whole := func(field string, err error) error { // no signal of the sample gets a value
		return &PayloadError{Source: s.Source, Address: s.Address, Field: field, Whole: true, Err: err}
	}
	dup := s.Duplicate || s.Initial
	out := make([]extracted, 0, len(bs))
	// A value one binding cannot use skips that binding only; the first
	// such error is returned with what the others extracted. (A source
	// time that cannot be used skips nothing: the receive time stands in.)
	var bad error
	skip := func(field string, err error) {
		if bad == nil {
			bad = perr(field, err)
		}
	}
	t, srcTime := s.ReceiveTime, false
	if !s.SourceTime.IsZero() {
		if err := checkSourceTime(s.SourceTime); err != nil {
			skip("", fmt.Errorf("source time %w", err))
		} else {
			t, srcTime = s.SourceTime, true
		}
	}
	if s.Kind == connectors.KindOPCUA {
		if s.Value == nil {
			return nil, nil, whole("", fmt.Errorf("no value: %w", ErrBadValue))
		}
		for _, b := range bs {
			x := fromSample(b, s, dup, t, srcTime)
			if err := convert(&x, s.Value); err != nil {
				skip("", err)
				continue
			}
			out = append(out, x)
		}
		return out, nil, bad
	}
	// A byte-order mark in front (some Windows gateways write one) is not
	// part of the value, nor are NUL bytes after it: a PLC's MQTT block
	// that publishes its whole fixed-length string buffer, a C client that
	// sends the string's terminator (the signals51 probe: every such
	// message was malformed).
	payload := bytes.TrimPrefix(s.Payload, []byte("\xef\xbb\xbf"))
	payload = bytes.TrimRightFunc(payload, func(r rune) bool { return r == 0 || unicode.IsSpace(r) })
	doc, jsonErr := parsePayload(payload)
	var missingFields []string
	for _, b := range bs {
		x := fromSample(b, s, dup, t, srcTime)
		var v any
		if b.field == "" {
			if jsonErr != nil {
				if errors.Is(jsonErr, errNotJSON) {
					v = strings.TrimSpace(string(payload))
				} else {
					return nil, nil, whole("", jsonErr)
				}
			} else {
				v = doc
			}
			if _, isObj := v.(map[string]any); isObj {
				return nil, nil, whole("", fmt.Errorf("JSON object but no field configured: %w", ErrBadValue))
			}
		} else {
			if jsonErr != nil {
				return nil, nil, whole(b.field, jsonErr)
			}
			fv, ok := lookup(doc, b.field)
			if !ok {
				missingFields = append(missingFields, b.field)
				missing = append(missing, b)
				continue
			}
			v = fv
		}
		if b.tsField != "" && jsonErr == nil {
			tv, ok := lookup(doc, b.tsField)
			switch {
			case !ok:
				x.noTime = true // taken at its receive time; counted (noteTimeAbsent)
			case tv == nil:
				// As "": a gateway that resends a cached value with no time
				// would book it as new (the payloads probe: a cached stop
				// with "ts": null booked a downtime line).
				skip(b.tsField, fmt.Errorf("timestamp is null (a cached value resent without its time?): %w", ErrBadValue))
				continue
			}
			if ok && tv != nil {
				ts, err := parseTime(tv)
				if err == nil {
					err = checkSourceTime(ts)
					if err != nil {
						err = fmt.Errorf("timestamp %w", err)
					}
				}
				switch {
				case errors.Is(err, ErrBadTime):
					skip(b.tsField, err) // a time out of range: taken at its receive time
				case err != nil:
					skip(b.tsField, err) // not a time: not taken
					continue
				default:
					x.t, x.srcTime = ts, true
				}
			}
		}
		if err := convert(&x, v); err != nil {
			skip(b.field, err)
			continue
		}
		out = append(out, x)
	}
	if len(out) == 0 && bad == nil && len(missingFields) > 0 {
		return nil, missing, perr(strings.Join(missingFields, ","), ErrMissingField)
	}
	return out, missing, bad
}

// fromSample is what binding b takes from sample s, at t (srcTime: the
// source's time, else its receipt); dup: the value may repeat one taken.
func fromSample(b *binding, s connectors.Sample, dup bool, t time.Time, srcTime bool) extracted {
	return extracted{b: withDup(b, dup), t: t, srcTime: srcTime, resent: s.Resent, recv: s.ReceiveTime, seen: s.Seen, server: s.Server, watch: s.Watch, gap: s.WatchGap}
}

// withDup marks a binding copy so counter logic knows the value may repeat.
func withDup(b *binding, dup bool) *binding {
	if !dup {
		return b
	}
	c := *b
	c.dupOrInitial = true
	return &c
}

var errNotJSON = errors.New("not JSON")

// parsePayload decodes an MQTT payload: JSON (object, number, bool, string,
// null), or errNotJSON for plain text that a bare binding may still use.
func parsePayload(p []byte) (any, error) {
	if len(p) > maxPayload {
		return nil, fmt.Errorf("payload of %d bytes exceeds %d: %w", len(p), maxPayload, ErrBadValue)
	}
	tp := bytes.TrimSpace(p)
	if len(tp) == 0 {
		return nil, fmt.Errorf("empty payload: %w", ErrBadValue)
	}
	doc, err := decodeJSON(tp)
	if err != nil && (tp[0] == '{' || tp[0] == '[') && (bytes.Contains(tp, []byte("NaN")) || bytes.Contains(tp, []byte("Infinity"))) {
		// Python's json.dumps writes NaN and Infinity, which JSON has
		// not: a sensor with no value must not cost the message its other
		// fields (the payloads probe: a "temp": NaN lost a stop). Read as
		// a value no signal takes (nonFinite): a signal bound to one of
		// them is skipped, as for any unusable value.
		if fixed, n := nonFiniteToNull(tp); n > 0 {
			if d, err2 := decodeJSON(fixed); err2 == nil {
				doc, err = d, nil
			}
		}
	}
	if err != nil {
		if tp[0] == '{' || tp[0] == '[' || tp[0] == '"' {
			return nil, fmt.Errorf("%w: %v", ErrBadJSON, err)
		}
		return nil, plainText(tp)
	}
	return doc, nil
}

// decodeJSON decodes one JSON value (numbers as json.Number) and nothing
// after it.
func decodeJSON(tp []byte) (any, error) {
	if doc, ok := decodeFlat(tp); ok {
		return doc, nil
	}
	return decodeAny(tp)
}

// decodeAny is decodeJSON by encoding/json, for any JSON value.
func decodeAny(tp []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(tp))
	dec.UseNumber()
	var doc any
	if err := dec.Decode(&doc); err != nil {
		return nil, err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, errTrailing
	}
	return doc, nil
}

var errTrailing = errors.New("trailing data")

// nonFinite is what a bare NaN, Infinity or -Infinity of a JSON payload
// reads as: a string no source sends, which convert refuses for every
// signal (null would read as a reason code cleared).
const nonFinite = "\x00NaN or Infinity"

// nonFiniteJSON is nonFinite as a JSON string.
const nonFiniteJSON = `"\u0000NaN or Infinity"`

// nonFiniteToNull returns p with the bare tokens NaN, Infinity and
// -Infinity outside strings written as the JSON string nonFinite, and how
// many there were.
func nonFiniteToNull(p []byte) ([]byte, int) {
	var out []byte
	n, inString, escaped := 0, false, false
	for i := 0; i < len(p); i++ {
		c := p[i]
		if inString {
			switch {
			case escaped:
				escaped = false
			case c == '\\':
				escaped = true
			case c == '"':
				inString = false
			}
			out = append(out, c)
			continue
		}
		if c == '"' {
			inString = true
			out = append(out, c)
			continue
		}
		matched := false
		for _, tok := range []string{"-Infinity", "Infinity", "NaN"} {
			if bytes.HasPrefix(p[i:], []byte(tok)) && (i == 0 || !isWordByte(p[i-1])) && (i+len(tok) == len(p) || !isWordByte(p[i+len(tok)])) {
				out = append(out, nonFiniteJSON...)
				i += len(tok) - 1
				n++
				matched = true
				break
			}
		}
		if !matched {
			out = append(out, c)
		}
	}
	return out, n
}

func isWordByte(c byte) bool {
	return c == '_' || c == '-' || c == '.' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
}

func plainText(tp []byte) error {
	if !utf8.Valid(tp) || len(tp) > 256 {
		return fmt.Errorf("%w: neither JSON nor a short text value", ErrBadJSON)
	}
	for _, r := range string(tp) {
		if r < 0x20 {
			return fmt.Errorf("%w: control characters in text value", ErrBadJSON)
		}
	}
	return errNotJSON
}

// lookup follows a dot path through JSON objects; in an array, a part that
// is a number picks that element (values.0.v). A key with dots in its name
// (a gateway's "Line1.Press07.Good") is reached too: where the parts do not
// lead through nested objects, parts joined with their dots name one key,
// the fewest first (the ot-audit probe: such a counter was never found).
func lookup(doc any, path string) (any, bool) {
	switch c := doc.(type) {
	case map[string]any:
		// path[:end] is one key, the parts up to a dot joined, the fewest
		// first; the rest of the path goes on from its value.
		for end := 0; end <= len(path); end++ {
			if i := strings.IndexByte(path[end:], '.'); i >= 0 {
				end += i
			} else {
				end = len(path)
			}
			v, ok := c[path[:end]]
			if !ok {
				continue
			}
			if end == len(path) {
				return v, true
			}
			if r, ok := lookup(v, path[end+1:]); ok {
				return r, true
			}
		}
	case []any:
		part, rest, more := strings.Cut(path, ".")
		i, err := strconv.Atoi(part)
		if err != nil || i < 0 || i >= len(c) || part != strconv.Itoa(i) {
			return nil, false
		}
		if !more {
			return c[i], true
		}
		return lookup(c[i], rest)
	}
	return nil, false
}

// timeLayouts are the forms of a time with its zone parseTime reads (the
// text upper-cased, a space for the T made a T): RFC 3339, and ISO 8601's
// other forms gateways send — an offset without its colon (+0100) or of
// hours only (+01), a blank before the offset, no seconds, the basic form
// (20260329T015000Z). (The tz probe: all but the first two were refused,
// and the values they stamped skipped.)
var timeLayouts = []string{
	time.RFC3339Nano,
	"2006-01-02T15:04:05.999999999Z0700",
	"2006-01-02T15:04:05.999999999Z07",
	"2006-01-02T15:04:05.999999999 Z07:00",
	"2006-01-02T15:04:05.999999999 Z0700",
	"2006-01-02T15:04:05.999999999 Z07",
	"2006-01-02T15:04Z07:00",
	"2006-01-02T15:04Z0700",
	"2006-01-02T15:04Z07",
	"20060102T150405.999999999Z0700",
	"20060102T150405.999999999Z07",
}

// zoneAbbrev is a time whose offset is followed by a zone's abbreviation
// (and Go's monotonic clock reading), upper-cased: the offset is kept.
var zoneAbbrev = regexp.MustCompile(`^(.*\d ?(?:Z|[+-]\d\d(?::?\d\d)?)) [A-Z]{1,5}(?: M=[+-]\d+(?:\.\d+)?)?$`)

// utcSuffix is a time named UTC or GMT by name rather than by a Z.
var utcSuffix = regexp.MustCompile(`^(.*\d) ?(?:UTC|GMT)$`)

// zonelessLayouts are times without a zone, which parseTime refuses with
// that reason.
var zonelessLayouts = []string{"2006-01-02T15:04:05.999999999", "2006-01-02T15:04", "20060102T150405.999999999"}

// parseTime reads an RFC 3339 (or another ISO 8601 form with its zone:
// timeLayouts) string or epoch milliseconds.
func parseTime(v any) (time.Time, error) {
	if v == nonFinite {
		return time.Time{}, fmt.Errorf("timestamp NaN or Infinity: %w", ErrBadValue)
	}
	switch x := v.(type) {
	case string:
		// RFC 3339 allows a lower-case "t" and "z" (section 5.6), and
		// (its note) a space for the "T"; Go's parser takes neither. An
		// offset without its colon (+0100) is ISO 8601's basic form.
		// Blanks around it are no part of it (as for values).
		t := strings.ToUpper(strings.TrimSpace(x))
		if len(t) > 10 && t[10] == ' ' {
			t = t[:10] + "T" + t[11:]
		}
		// A zone name after the offset (RFC 9557; Java's
		// ZonedDateTime: "…+01:00[Europe/Berlin]") adds nothing to the
		// instant the offset gives.
		if i := strings.IndexByte(t, '['); i > 0 && strings.HasSuffix(t, "]") {
			t = t[:i]
		}
		// So does a zone abbreviation after it (Go's time.String:
		// "2026-12-01 08:00:08 +0000 UTC", with its monotonic reading
		// " m=+0.01" when not stripped); UTC or GMT alone is the zone
		// (the OT probe: both were refused, the values they stamped
		// skipped).
		if g := zoneAbbrev.FindStringSubmatch(t); g != nil {
			t = g[1]
		} else if g := utcSuffix.FindStringSubmatch(t); g != nil {
			t = g[1] + "Z"
		}
		for _, layout := range timeLayouts {
			if ts, err := time.Parse(layout, t); err == nil {
				return ts, nil
			}
		}
		if f := strings.TrimSpace(x); strings.Trim(f, "0123456789.eE+-") == "" {
			// Decimal only: ParseFloat also reads hexadecimal ("0x1p40"),
			// which no gateway means as a time (the tz probe).
			if ms, err := strconv.ParseFloat(f, 64); err == nil && !math.IsInf(ms, 0) {
				return epochMS(ms)
			}
		}
		for _, layout := range zonelessLayouts {
			if _, err := time.Parse(layout, t); err == nil {
				// Local time of some zone, or UTC: which instant it names
				// is not known (the tz probe: the message did not say).
				return time.Time{}, fmt.Errorf("timestamp %q has no time zone (a Z, or an offset such as +01:00): the instant it names is not known: %w", truncate(x), ErrBadValue)
			}
		}
		// Not a time at all (an empty string a gateway sends with a
		// cached value): the value it stamps is not taken either, rather
		// than taken as new at its receipt.
		return time.Time{}, fmt.Errorf("timestamp %q is neither RFC 3339 nor epoch ms: %w", truncate(x), ErrBadValue)
	case json.Number:
		f, err := x.Float64()
		if err != nil {
			return time.Time{}, fmt.Errorf("timestamp %s: %w", truncate(x.String()), ErrBadValue)
		}
		return epochMS(f)
	}
	return time.Time{}, fmt.Errorf("timestamp is %s, want RFC 3339 string or epoch ms: %w", typeName(v), ErrBadValue)
}

func epochMS(ms float64) (time.Time, error) {
	// Year 2000 to 2200: anything else is a unit mistake (seconds, µs).
	if math.IsNaN(ms) || ms < 946684800000 || ms > 7258118400000 {
		unit := ""
		switch {
		case ms >= 946684800 && ms <= 7258118400:
			unit = " (seconds instead of ms?)"
		case ms >= 946684800000e3 && ms <= 7258118400000e3:
			unit = " (microseconds instead of ms?)"
		case ms >= 946684800000e6 && ms <= 7258118400000e6:
			unit = " (nanoseconds instead of ms?)"
		}
		return time.Time{}, fmt.Errorf("epoch ms %.0f out of range%s: %w", ms, unit, ErrBadTime)
	}
	return time.UnixMilli(int64(ms)).UTC(), nil
}

// CheckPayload reports whether an MQTT payload gives signal a value it can
// use, reading field (a dot path; "" for the bare payload) and, when set,
// the source time from tsField; rollover is the counter's (0 for others).
// It returns the source time the payload carries (zero: none it can use).
func CheckPayload(signal Signal, field, tsField string, payload []byte, rollover uint64, runningValues ...string) (time.Time, error) {
	b := &binding{signal: signal, field: field, tsField: tsField, rollover: rollover, runVals: runValues(runningValues)}
	xs, _, err := extract([]*binding{b}, connectors.Sample{Kind: connectors.KindMQTT, Payload: payload, Good: true})
	if err == nil && len(xs) == 1 && xs[0].noTime {
		// Taken at its receive time by the agent, and counted there; a
		// misspelt timestamp_field never comes (the payloads probe: OK).
		return time.Time{}, fmt.Errorf("timestamp_field %q is not in the message: its values would be taken at their receive time: %w", tsField, ErrNoTime)
	}
	if err == nil && len(xs) == 1 && xs[0].srcTime {
		return xs[0].t, nil
	}
	return time.Time{}, err
}

// CheckValue reports whether v (as a source sample carries it) is a value
// signal can use, and why not; rollover is the counter's (0 for others),
// runningValues the running signal's running_values (none: a run bit).
func CheckValue(signal Signal, v any, rollover uint64, runningValues ...string) error {
	return convert(&extracted{b: &binding{signal: signal, rollover: rollover, runVals: runValues(runningValues)}}, v)
}

// MaxCounter, 2^53, bounds the counter values the mapping takes: every
// whole number below it is exact in a float64, and values from it up are
// refused — one past it (an Int64 2^53+1, or its text) reads as 2^53 in a
// float64, so the bound is taken as reached there (the values probe: 2^53
// and 2^53+1 each booked 9.007×10^15 pieces). Records may carry it.
const MaxCounter = 1 << 53

// maxSafeInteger, 2^53 − 1, is JavaScript's Number.MAX_SAFE_INTEGER: a
// gateway written in JavaScript sends it for "no value" (the values probe:
// it booked 9.0×10^15 good pieces, and on scrap_count a validated scrap
// of as many units).
const maxSafeInteger = MaxCounter - 1

// intMaxMarker: f is the largest value of a 32-bit integer type (signed or
// not) — a "no value" marker — for a counter without rollover. With one,
// the value is either its last before the wrap (rollover 2^32, or 2^31),
// beyond it (rejected as such), or a value a wider counter passes on its
// way. Larger types' maxima are past MaxCounter; 8- and 16-bit counters
// reach theirs at every wrap.
func intMaxMarker(f float64, rollover uint64) bool {
	return rollover == 0 && (f == math.MaxUint32 || f == math.MaxInt32 || f == maxSafeInteger)
}

// convert turns a raw value into what the binding's signal needs.
func convert(x *extracted, v any) error {
	if v == nonFinite {
		return fmt.Errorf("NaN or Infinity is no value: %w", ErrBadValue)
	}
	switch x.b.signal {
	case GoodCount, ScrapCount:
		f, err := toNumber(v)
		if err != nil {
			return err
		}
		if ro := float64(x.b.rollover); f < 0 && ro > 0 && f >= -ro/2 {
			// A signed counter past its maximum (an INT that ran from
			// 32767 to -32768): its unsigned reading, so it counts on.
			f += ro
		}
		if f < 0 && x.b.rollover == 0 && f >= math.MinInt32 && !math.IsInf(f, 0) {
			// A signed counter past its maximum (an Int16 from 32767 to
			// -32768): without rollover its pieces below zero are lost,
			// and the way back to 0 reads as a reset (the uatypes probe).
			return fmt.Errorf("counter value %v is below zero (a signed counter past its maximum? then set its rollover, 65536 for a 16-bit one, 4294967296 for a 32-bit one, so that it counts on): %w", f, ErrBadValue)
		}
		if f < 0 || math.IsInf(f, 0) || math.IsNaN(f) {
			return fmt.Errorf("counter value %v: %w", f, ErrBadValue)
		}
		if f >= MaxCounter {
			// Past 2^53 a float64 no longer holds every whole number, and
			// sums of such values overflow to infinity, which no record
			// or Odoo write can carry. No piece counter gets there; a
			// gateway's "no value" marker (DBL_MAX) does.
			return fmt.Errorf("counter value %v is beyond 2^53, more than a piece counter holds (a gateway's \"no value\" marker?): %w", f, ErrBadValue)
		}
		if intMaxMarker(f, x.b.rollover) {
			// A gateway or PLC without a value sends its type's largest
			// (the OPC UA probe: one UInt32 4294967295 among Int32 readings
			// booked 4.29 billion pieces). Not counted, the counter's state
			// stays: the next reading counts from the last one, so a
			// counter that really stood there loses nothing.
			if f == maxSafeInteger {
				return fmt.Errorf("counter value %.0f is JavaScript's largest safe integer, which gateways send for \"no value\": not counted, the next reading counts from the last one: %w", f, ErrBadValue)
			}
			return fmt.Errorf("counter value %.0f is the largest a %s integer holds, which gateways send for \"no value\" (a 32-bit counter that wraps there: set its rollover, 4294967296): not counted, the next reading counts from the last one: %w",
				f, map[bool]string{true: "32-bit", false: "signed 32-bit"}[f == math.MaxUint32], ErrBadValue)
		}
		if ro := float64(x.b.rollover); ro > 0 && f >= ro {
			return fmt.Errorf("counter value %v is beyond its rollover %v (a counter that wraps there never reaches it; wrong tag or wrong rollover?): %w", f, ro, ErrBadValue)
		}
		x.counter = f
	case Running:
		r, err := toRunning(v)
		if x.b.runVals != nil {
			r, err = toState(v, x.b.runVals)
		}
		if err != nil {
			return err
		}
		x.running = r
	case DowntimeReason:
		r, err := toReason(v)
		if err != nil {
			return err
		}
		x.reason = r
	}
	return nil
}

// decimalRe is a number as a payload or a JSON string carries one: decimal,
// with an optional fraction and exponent.
var decimalRe = regexp.MustCompile(`^[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?$`)

func toNumber(v any) (float64, error) {
	switch x := v.(type) {
	case json.Number:
		f, err := strconv.ParseFloat(x.String(), 64)
		if err != nil {
			return 0, fmt.Errorf("number %s: %w", truncate(x.String()), ErrBadValue)
		}
		return f, nil
	case string:
		t := strings.TrimSpace(x)
		if !decimalRe.MatchString(t) {
			// ParseFloat would also take Go's 1_000 and 0x1p4: a gateway
			// sending those sends something else than a count.
			return 0, fmt.Errorf("%q is not a number: %w", truncate(x), ErrBadValue)
		}
		f, err := strconv.ParseFloat(t, 64)
		if err != nil {
			return 0, fmt.Errorf("%q is not a number: %w", truncate(x), ErrBadValue)
		}
		return f, nil
	case float64:
		return x, nil
	case float32:
		return connectors.Widen(x), nil
	case int:
		return float64(x), nil
	case int8:
		return float64(x), nil
	case int16:
		return float64(x), nil
	case int32:
		return float64(x), nil
	case int64:
		return float64(x), nil
	case uint:
		return float64(x), nil
	case uint8:
		return float64(x), nil
	case uint16:
		return float64(x), nil
	case uint32:
		return float64(x), nil
	case uint64:
		return float64(x), nil
	}
	return 0, fmt.Errorf("%s is not a number: %w", typeName(v), ErrBadValue)
}

func toRunning(v any) (bool, error) {
	switch x := v.(type) {
	case bool:
		return x, nil
	case string:
		switch strings.ToLower(strings.TrimSpace(x)) {
		case "true", "1", "running", "run", "on":
			return true, nil
		case "false", "0", "stopped", "stop", "off":
			return false, nil
		}
		// A number in text, as a number would be (a gateway that sends
		// every value as a string: "1.0", "0.0"; the payloads probe).
		if f, err := strconv.ParseFloat(strings.TrimSpace(x), 64); err == nil && !math.IsNaN(f) && !math.IsInf(f, 0) {
			return f != 0, nil
		}
		return false, fmt.Errorf("running value %q: want true/false, 1/0, running/stopped (run/stop) or on/off: %w", truncate(x), ErrBadValue)
	case nil:
		return false, fmt.Errorf("running value is null: %w", ErrBadValue)
	}
	f, err := toNumber(v)
	if err != nil {
		return false, fmt.Errorf("running value: %w", err)
	}
	if math.IsNaN(f) || math.IsInf(f, 0) {
		// An OPC UA Double with no value, as for a reason code: Infinity
		// read as running (the signals51 probe).
		return false, fmt.Errorf("running value NaN or Infinity: %w", ErrBadValue)
	}
	return f != 0, nil
}

// toState is whether v, a machine-state word or text, is one of the values
// that mean running (config running_values; compared as config.StateCode):
// any other value is a stop (a fault, idle, setup state).
func toState(v any, running map[string]bool) (bool, error) {
	code, err := toReason(v)
	switch {
	case err != nil:
		return false, fmt.Errorf("running value: %w", err)
	case code == "":
		return false, fmt.Errorf("running value is empty or null: %w", ErrBadValue)
	}
	return running[config.StateCode(code)], nil
}

func toReason(v any) (string, error) {
	switch x := v.(type) {
	case nil:
		return "", nil
	case string:
		s := strings.TrimSpace(x)
		if len(s) > 256 || !utf8.ValidString(s) {
			return "", fmt.Errorf("reason code too long or not UTF-8: %w", ErrBadValue)
		}
		if config.NonFinite(s) {
			// A number with no value written as text (a bare payload,
			// a gateway that sends every value as a string), as a JSON
			// NaN is: no code, nor a state word that means a stop (the
			// signals51 probe: a stop booked with the default loss for
			// the code "NaN"; with running_values, a stop that never was).
			return "", fmt.Errorf("%q is NaN or Infinity, no value: %w", s, ErrBadValue)
		}
		return s, nil
	case bool:
		return strconv.FormatBool(x), nil
	case json.Number:
		// 7.0 is code 7, as an OPC UA double 7.0 is (gateways write
		// numbers as floats); a whole number stays as written, digits
		// beyond a float's included.
		if n := x.String(); strings.ContainsAny(n, ".eE") {
			if f, err := strconv.ParseFloat(n, 64); err == nil && !math.IsInf(f, 0) {
				return floatCode(f, 64), nil
			}
		} else if n == "-0" {
			return "0", nil
		}
		return x.String(), nil
	case float64:
		if math.IsNaN(x) || math.IsInf(x, 0) {
			// An OPC UA Double with no value: no code (it read as "NaN").
			return "", fmt.Errorf("reason code NaN or Infinity: %w", ErrBadValue)
		}
		return floatCode(x, 64), nil
	case float32:
		if f := float64(x); math.IsNaN(f) || math.IsInf(f, 0) {
			return "", fmt.Errorf("reason code NaN or Infinity: %w", ErrBadValue)
		}
		return floatCode(float64(x), 32), nil
	case int, int8, int16, int32, int64, uint, uint8, uint16, uint32, uint64:
		return fmt.Sprint(x), nil
	}
	return "", fmt.Errorf("reason is %s, want a code or text: %w", typeName(v), ErrBadValue)
}

// floatCode is a numeric code sent as a float, as its decimal text: -0
// is 0, as config's numericCode reads a map's -0 and as an integer 0
// arrives (a float's sign on zero is no other code).
func floatCode(f float64, bitSize int) string {
	if f == 0 {
		return "0"
	}
	return strconv.FormatFloat(f, 'f', -1, bitSize)
}

func typeName(v any) string {
	switch x := v.(type) {
	case connectors.Structured:
		if x.Array {
			// An array node (a PLC's counters, one per lane): the signal
			// reads one element of it by its index.
			return x.Type + " (set index: next to node: to read one element, 0 for the first)"
		}
		return x.Type + " (a node of its own holds each member or element the agent can read)"
	case nil:
		return "null"
	case map[string]any:
		return "an object"
	case []any:
		return "a list"
	case bool:
		return "a boolean"
	case string:
		return "a string"
	case json.Number:
		return "a number"
	}
	return fmt.Sprintf("%T", v)
}

func truncate(s string) string {
	if len(s) > 40 {
		return s[:40] + "..."
	}
	return s
}

// storedLine is the line of a stop the edge node stored (Historical), from
// start to end, taken at t, with reason and the loss it maps to.
func (m *Mapper) storedLine(machine string, t, start, end time.Time, reason string) Event {
	ev := Event{Machine: machine, Kind: EventRunning, Signal: Running, Time: t, Start: start, End: end, Reason: reason, Historical: true}
	if rb := m.reason[machine]; rb != nil {
		ev.Loss, ev.LossDefaulted = rb.loss(reason)
	}
	return ev
}

// reasonOr is the downtime reason the history stored last, or fallback
// when it stored none.
func (h *HistRun) reasonOr(fallback string) string {
	if h.ReasonTime.IsZero() {
		return fallback
	}
	return h.Reason
}
