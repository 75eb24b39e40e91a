// Package mapping turns source samples (OPC UA values, MQTT payloads) into
// machine events — counter deltas and downtime transitions — following the
// tag mapping of the configuration. It is pure code: no I/O, no goroutines.
package mapping

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/plantedge/plantedge/agent/config"
	"github.com/plantedge/plantedge/connectors"
)

// Signal names a machine signal as in the YAML.
type Signal string

// Machine signals.
const (
	GoodCount      Signal = "good_count"
	ScrapCount     Signal = "scrap_count"
	Running        Signal = "running"
	DowntimeReason Signal = "downtime_reason"
)

// EventKind says what an Event reports.
type EventKind uint8

// Event kinds.
const (
	EventCount   EventKind = iota + 1 // a counter advanced: Delta > 0
	EventStopped                      // machine went running -> stopped at Time; opens a downtime
	EventRunning                      // machine went stopped -> running: closes the downtime Start..End
	EventReason                       // downtime reason changed while stopped
	// EventReasonLate: a downtime reason stamped before the end of the
	// machine's last stop (Start..End) that arrived after that end, mapped
	// to another loss than the one the stop was booked with: the stop's
	// line takes it (an operator entering the code at the HMI after the
	// restart, a gateway connection that lags). Only with source times.
	EventReasonLate
	// EventStale: a running or downtime_reason sample that would change the
	// state, stamped before the last one taken (Start): ignored. A source
	// sending out of order, or one whose clock went back with nothing to
	// show it (see Apply).
	EventStale
	// EventEndStored: the machine's stop that a Sparkplug BIRTH's run state
	// ended (its line booked from Start to BookedEnd, the BIRTH), open
	// when the edge node lost the broker, ended earlier, at End: the run
	// the edge node stored meanwhile (is_historical), which came after the
	// BIRTH. The stop's line takes that end (its start, its key in Odoo,
	// stays), once.
	EventEndStored
)

// String names the kind for logs and golden files.
func (k EventKind) String() string {
	switch k {
	case EventCount:
		return "count"
	case EventStopped:
		return "stopped"
	case EventRunning:
		return "running"
	case EventReason:
		return "reason"
	case EventReasonLate:
		return "reason_late"
	case EventStale:
		return "stale"
	case EventEndStored:
		return "end_stored"
	}
	return fmt.Sprintf("EventKind(%d)", uint8(k))
}

// Event is one thing that happened to a machine.
type Event struct {
	Machine string
	Kind    EventKind
	Signal  Signal
	// Time is the source time of the sample (or its receive time when the
	// source gave none).
	Time time.Time

	Delta float64 // EventCount: the counter's increase since the previous value
	// Pieces (EventCount) is Delta in the work order's units: times the
	// counter's factor.
	Pieces float64
	Raw    float64 // EventCount: the raw counter value
	Range  uint64  // EventCount: the counter's rollover (0: none)
	// Reset, Rollover and StepBack say how a decrease was read
	// (EventCount); From is the value it went down from. A step back counts
	// nothing (Delta 0), nor does a reset to zero.
	Reset, Rollover, StepBack bool
	From                      float64
	// Behind (EventCount, Delta 0) reports that this many values in a row
	// came lower than the last accepted one (From) and stamped before it:
	// held as possible repeats; a counter restarted with its clock behind?
	Behind int
	// ClockBack is how far the source's clock went back (EventCount): a
	// fresh increase came stamped earlier than the last accepted value. The
	// caller reports it; the machine's other signals from the same source
	// are measured against the new time from then on.
	ClockBack time.Duration
	// BoxStep (EventRunning) is how far this box's clock was stepped during
	// the stop, both of whose ends were dated by it at their receipt: the
	// line lasts as long as the agent saw the stop (endStop). The caller
	// reports it.
	BoxStep time.Duration
	// Historical (EventRunning) is a stop an edge node stored while it
	// could not publish, and the run that ended it, both older than the
	// machine's current run state (Sparkplug is_historical) — or, for a
	// stop a BIRTH's run state began whose line is open already, the part
	// the stored values tell came before it (storedStart): a line of its
	// own, which neither opens nor closes the machine's current one. On an
	// EventCount: a stored value's (its time says nothing of the source's
	// clock now).
	Historical bool
	// Stored (EventRunning, EventStopped): the stop a Sparkplug BIRTH's run
	// state found open, since before the edge node lost the broker, ended
	// at the run the edge node stored (EventRunning: the stop's line, to its
	// stored end), and the machine's stop from then on begun at that BIRTH
	// (EventStopped): their times are no values as the source sent them
	// now, and say nothing of its clock.
	Stored bool
	// Seen (EventRunning) is when the agent received the stop's end by the
	// box's boot clock, when both its ends were dated by this box's clock
	// at their receipt (zero otherwise): a step of the clock after it
	// leaves the line in the old clock, which the agent corrects as it
	// books the line.
	Seen connectors.Seen
	// Glitch (EventCount) reports that the counter came back near the value
	// it went down from (From) at its last reset, faster than it counts:
	// the reset to Dip was a glitch (a gateway restarting, a wrong reading),
	// so Delta counts only the pieces above From, less those the reset
	// counted.
	Glitch bool
	Dip    float64
	// Implausible (EventCount) reports an increase far above what the
	// counter makes in the time since its last value (more than spikeSlack
	// times its usual rate over that time and its usual step, plus
	// spikeMin): counted, and worth a look — another machine's value
	// published on its topic, a wrong reading, a preset.
	Implausible bool
	// Marker (EventCount, Delta 0) reports the top of a wrapping counter's
	// range (rollover−1: a -1, or 65535) read far above what the counter
	// makes since From: a "no value" marker, not counted.
	Marker bool
	// NewServer (EventCount, Delta 0) reports that the counter is now read
	// from another server (OPC UA endpoint, MQTT broker) than NewServer,
	// where it read From: counting starts from Raw, the new server's value.
	NewServer string
	// NewSource (EventCount, Delta 0) reports that the counter's stored
	// value was read from another source (NewSource: kind:source:address:
	// field; the mapping was edited, also while the agent was stopped),
	// where it read From: counting starts from Raw, the new source's value.
	NewSource string
	// Replaced (EventCount, Delta 0) reports that the machine's replaced
	// mark changed since the counter's last value (From): counting starts
	// from Raw, the replacement's value.
	Replaced bool

	// Start..End is the downtime (EventRunning); EventStopped sets Start.
	Start, End time.Time
	// BookedEnd (EventEndStored) is the end the stop's line was booked
	// with, at the BIRTH: whether the stop booked a line (min_stop) is
	// decided by it, as it was then.
	BookedEnd time.Time
	// Reason is the raw reason code, Loss the Odoo loss name it maps to
	// ("" when the machine has no downtime_reason signal).
	Reason, Loss string
	// LossDefaulted is set when Reason had no entry in the map and the
	// default loss was used; the caller reports it.
	LossDefaulted bool
}

// PayloadError is a sample whose value cannot be used. The caller counts and
// logs it and acknowledges the message; the state is left unchanged.
type PayloadError struct {
	Source  string // configured source name
	Address string // topic or node id
	Field   string // dot path in the payload, "" for a bare value
	// Whole: the payload as a whole could not be read (not the JSON the
	// mapping needs, too large): every signal of the address went without
	// a value, whichever Field names.
	Whole bool
	Err   error
}

// Error names the source, topic or node, and field.
func (e *PayloadError) Error() string {
	if e.Field != "" {
		return fmt.Sprintf("value from %s %q field %q: %v", e.Source, e.Address, e.Field, e.Err)
	}
	return fmt.Sprintf("value from %s %q: %v", e.Source, e.Address, e.Err)
}

// Unwrap returns the underlying error.
func (e *PayloadError) Unwrap() error { return e.Err }

// Errors wrapped by PayloadError.
var (
	// ErrMissingField means none of the fields bound to a topic was present.
	ErrMissingField = errors.New("field not found")
	// ErrNoTime: a message without its timestamp_field (CheckPayload):
	// the agent takes it at its receive time, so validate warns.
	ErrNoTime = errors.New("timestamp field not found")
	// ErrBadValue means a value has the wrong type or range for its signal.
	ErrBadValue = errors.New("unusable value")
	// ErrBadJSON means the payload is not the JSON object the mapping needs.
	ErrBadJSON = errors.New("malformed JSON")
	// ErrBadTime means a source time cannot be used (unreadable, or out of
	// [minSourceTime, maxSourceTime)): the values are taken at their receive
	// time.
	ErrBadTime = errors.New("source time unusable, receive time used")
)

// Source times outside [minSourceTime, maxSourceTime) come from a clock
// that was never set (a PLC whose battery-backed clock fell back to 2000 or
// 1970) or from a unit mistake: the receive time is used instead.
var (
	minSourceTime = time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)
	maxSourceTime = time.Date(2200, 1, 1, 0, 0, 0, 0, time.UTC)
)

// checkSourceTime returns an ErrBadTime error for t outside the range.
func checkSourceTime(t time.Time) error {
	if t.Before(minSourceTime) || !t.Before(maxSourceTime) {
		return fmt.Errorf("%s is not between %d and %d (a clock that was never set?): %w",
			t.UTC().Format(time.RFC3339Nano), minSourceTime.Year(), maxSourceTime.Year(), ErrBadTime)
	}
	return nil
}

type addrKey struct {
	kind    connectors.Kind
	source  string
	address string
}

type binding struct {
	machine  string
	signal   Signal
	field    string // MQTT dot path, "" for bare payload
	tsField  string
	srcID    string // identity of the source value, stored with counter state
	clock    string // whose clock stamps the value: the OPC UA server, or the MQTT topic
	rollover uint64
	per      float64 // counters: units per step (config.Counter.Per)
	lossMap  map[string]string
	defLoss  string
	hasLoss  bool            // machine has a downtime_reason signal
	replaced string          // the machine's replaced mark (counters)
	runVals  map[string]bool // running: the values that mean running (config.StateCode), nil for a run bit
	source   string          // the configured source's name

	sparkplug bool                  // field is a Sparkplug B metric name
	spTopic   config.SparkplugTopic // its DATA topic, parsed

	dupOrInitial bool // set on per-sample copies: the value may repeat one already seen
}

// Mapper maps samples to events. It is immutable after New and safe for
// concurrent use; the State passed to Apply is not.
type Mapper struct {
	index    map[addrKey][]*binding
	nodes    map[string][]config.OPCUARef
	topics   map[string][]string
	machines []string
	reason   map[string]*binding // machine -> its reason binding (for loss mapping)
	running  map[string]*binding // machine -> its running binding
	spNodes  map[string]bool     // source "\x00" group/node: Sparkplug B edge nodes read
	spCerts  map[string]bool     // the brokers whose BIRTH certificates are read (sparkplug_certificates)
}

// New builds a Mapper from a validated configuration.
func New(cfg *config.Config) (*Mapper, error) {
	if cfg == nil {
		return nil, errors.New("mapping: nil config")
	}
	m := &Mapper{
		index:   map[addrKey][]*binding{},
		nodes:   map[string][]config.OPCUARef{},
		topics:  map[string][]string{},
		reason:  map[string]*binding{},
		running: map[string]*binding{},
		spNodes: map[string]bool{},
		spCerts: map[string]bool{},
	}
	for _, b := range cfg.MQTT {
		if b.SparkplugCertificates {
			m.spCerts[b.Name] = true
		}
	}
	seenMachine := map[string]bool{}
	for i := range cfg.Machines {
		mc := &cfg.Machines[i]
		if mc.ID == "" || seenMachine[mc.ID] {
			return nil, fmt.Errorf("mapping: machine %d: empty or duplicate id %q", i, mc.ID)
		}
		seenMachine[mc.ID] = true
		m.machines = append(m.machines, mc.ID)
		defLoss := cfg.Odoo.DefaultLoss
		var lossMap map[string]string
		if mc.DowntimeReason != nil {
			lossMap = reasonMap(mc.DowntimeReason)
			if mc.DowntimeReason.Default != "" {
				defLoss = mc.DowntimeReason.Default
			}
		}
		for _, r := range mc.Refs() {
			b := &binding{
				machine:  mc.ID,
				signal:   Signal(r.Signal),
				lossMap:  lossMap,
				defLoss:  defLoss,
				hasLoss:  mc.DowntimeReason != nil,
				replaced: mc.Replaced,
			}
			switch b.signal {
			case GoodCount:
				b.rollover, b.per = mc.GoodCount.Rollover, mc.GoodCount.Per()
			case ScrapCount:
				b.rollover, b.per = mc.ScrapCount.Rollover, mc.ScrapCount.Per()
			case DowntimeReason:
				m.reason[mc.ID] = b
			case Running:
				m.running[mc.ID] = b
				b.runVals = runValues(mc.Running.RunningValues)
			}
			var k addrKey
			switch {
			case r.Ref.OPCUA != nil:
				k = addrKey{connectors.KindOPCUA, r.Ref.OPCUA.Server, r.Ref.OPCUA.Address()}
				b.clock = "opcua:" + k.source
				if !slices.ContainsFunc(m.nodes[k.source], func(o config.OPCUARef) bool { return o.Address() == k.address }) {
					m.nodes[k.source] = append(m.nodes[k.source], *r.Ref.OPCUA)
				}
			case r.Ref.MQTT != nil:
				k = addrKey{connectors.KindMQTT, r.Ref.MQTT.Broker, r.Ref.MQTT.Topic}
				b.field = r.Ref.MQTT.Field
				b.tsField = r.Ref.MQTT.TimestampField
				b.clock = "mqtt:" + k.source + ":" + k.address
				if t, ok := config.ParseSparkplugTopic(k.address); ok && r.Ref.MQTT.Sparkplug() {
					// Every message of the edge node: its BIRTHs name the
					// aliases and its DEATHs say it is gone, and its seq
					// counts over all of them (a gap is only seen so).
					b.sparkplug, b.spTopic = true, t
					m.spNodes[SparkplugNodeKey(k.source, t)] = true
					for _, f := range t.Filters(m.spCerts[k.source]) {
						m.topics[k.source] = appendUnique(m.topics[k.source], f)
					}
				} else {
					m.topics[k.source] = appendUnique(m.topics[k.source], k.address)
				}
			default:
				return nil, fmt.Errorf("mapping: machine %s %s: no source", mc.ID, r.Signal)
			}
			b.source = k.source
			b.srcID = fmt.Sprintf("%s:%s:%s:%s", k.kind, k.source, k.address, b.field)
			m.index[k] = append(m.index[k], b)
		}
	}
	return m, nil
}

// reasonMap is a machine's map of reason codes as they are looked up
// (config.Reason.Codes): a code written with white space at an end is
// matched without it, as a source's code is read (toReason trims it).
func reasonMap(r *config.Reason) map[string]string {
	out := make(map[string]string, len(r.Map))
	for t, code := range r.Codes() {
		out[t] = r.Map[code]
	}
	return out
}

// runValues is the set of running_values, compared as config.StateCode
// (nil when none).
func runValues(vals []string) map[string]bool {
	if len(vals) == 0 {
		return nil
	}
	m := map[string]bool{}
	for _, v := range vals {
		m[config.StateCode(v)] = true
	}
	return m
}

func appendUnique(list []string, s string) []string {
	for _, x := range list {
		if x == s {
			return list
		}
	}
	return append(list, s)
}

// OPCUANodes returns the nodes (and array elements) to monitor on the
// named server, in configuration order, each address once.
func (m *Mapper) OPCUANodes(server string) []config.OPCUARef {
	return slices.Clone(m.nodes[server])
}

// MQTTTopics returns the topics to subscribe on the named broker, in
// configuration order, without duplicates.
func (m *Mapper) MQTTTopics(broker string) []string {
	return append([]string(nil), m.topics[broker]...)
}

// EachMQTTTopic calls fn for every broker and topic subscribed to.
func (m *Mapper) EachMQTTTopic(fn func(broker, topic string)) {
	for b, ts := range m.topics {
		for _, t := range ts {
			fn(b, t)
		}
	}
}

// EachUse calls fn for every signal of a machine an address of a source
// feeds, in configuration order; it allocates nothing.
func (m *Mapper) EachUse(kind connectors.Kind, source, address string, fn func(machine string, signal Signal)) {
	if kind == connectors.KindMQTT {
		if t, cert, ok := m.sparkplugTopic(source, address); ok {
			if !cert {
				m.eachSparkplugUse(source, t, fn)
			}
			return // a certificate feeds no signal: its values are not read
		}
	}
	for _, b := range m.index[addrKey{kind, source, address}] {
		fn(b.machine, b.signal)
	}
}

// EachUnusable calls fn for each machine signal of the address that err,
// an error Apply returned for a sample of it, concerns: the signals that
// read the field (or timestamp_field) it names, so that a value one field
// of a shared topic cannot use shows on that signal's machine, as that
// signal — every signal of the address when it names none of them or is
// about the whole payload.
func (m *Mapper) EachUnusable(kind connectors.Kind, source, address string, err error, fn func(machine string, signal Signal)) {
	var pe *PayloadError
	if _, _, sp := m.sparkplugTopic(source, address); kind == connectors.KindMQTT && sp || !errors.As(err, &pe) || pe.Whole {
		m.EachUse(kind, source, address, fn)
		return
	}
	fields := strings.Split(pe.Field, ",") // (ErrMissingField names them all)
	var hit []*binding
	for _, b := range m.index[addrKey{kind, source, address}] {
		if slices.Contains(fields, b.field) || b.tsField != "" && slices.Contains(fields, b.tsField) {
			hit = append(hit, b)
		}
	}
	if len(hit) == 0 {
		m.EachUse(kind, source, address, fn)
		return
	}
	for _, b := range hit {
		fn(b.machine, b.signal)
	}
}

// Maps reports whether any signal uses the address of the source.
func (m *Mapper) Maps(kind connectors.Kind, source, address string) bool {
	if kind == connectors.KindMQTT {
		if _, _, ok := m.sparkplugTopic(source, address); ok {
			return true // a topic of an edge node read (or its filter)
		}
	}
	return len(m.index[addrKey{kind, source, address}]) > 0
}

// Feeds reports whether a value on the address can reach a signal: Maps
// less the topics under a Sparkplug B edge node's filter that feed none
// (its devices no signal reads, DEATHs, commands, BIRTH certificates, and
// any other topic a client publishes there). What the agent keeps per
// address is kept for these only: the filter brings topics from outside,
// as many as a device publishes (a device id per serial number).
func (m *Mapper) Feeds(kind connectors.Kind, source, address string) bool {
	if kind != connectors.KindMQTT || len(m.spNodes) == 0 {
		return len(m.index[addrKey{kind, source, address}]) > 0
	}
	fed := false
	m.EachUse(kind, source, address, func(string, Signal) { fed = true })
	return fed
}

// PendingRun is a held running value (MachineState.RunPending).
type PendingRun struct {
	Running bool      `json:"running"`
	Time    time.Time `json:"time"`
	Recv    time.Time `json:"recv,omitzero"`
	Watch   uint64    `json:"watch"`
}

// Adopted is a counter's state moved from a machine gone from the mapping
// to one that reads the same value (AdoptCounters).
type Adopted struct {
	From, To string
	Signal   Signal
	Last     float64
}

// AdoptCounters gives a machine of m whose counter has no state yet the
// state of the same counter (the same source, address and field) kept for
// a machine m does not map: a machine renamed in the configuration. Its
// next value then counts from the last one read, instead of starting a new
// baseline that loses the pieces made in between. Only a counter read
// since since (received, or stamped when the receipt is not known) is
// adopted, and only when one machine gone from the mapping has it: a
// machine removed months ago left its last value, and a new one reading
// that counter again would book the whole climb since as pieces. Counters
// only: the old machine's stop is ended as any removed machine's.
func (m *Mapper) AdoptCounters(st *State, since time.Time) []Adopted {
	mapped := map[string]bool{}
	for _, id := range m.machines {
		mapped[id] = true
	}
	var bs []*binding
	for _, list := range m.index {
		for _, b := range list {
			if b.signal == GoodCount || b.signal == ScrapCount {
				bs = append(bs, b)
			}
		}
	}
	order := map[string]int{}
	for i, id := range m.machines {
		order[id] = i
	}
	slices.SortFunc(bs, func(x, y *binding) int {
		return cmp.Or(cmp.Compare(order[x.machine], order[y.machine]), strings.Compare(string(x.signal), string(y.signal)))
	})
	var out []Adopted
	for _, b := range bs {
		if ms := st.Machines[b.machine]; ms != nil && ms.Counters[b.signal] != nil {
			continue
		}
		from := ""
		for id, old := range st.Machines {
			cs := old.Counters[b.signal]
			if mapped[id] || cs == nil || cs.Src != b.srcID || cmp.Or(cs.SeenRecv, cs.Seen).Before(since) {
				continue
			}
			if from != "" {
				from = "" // two: which one is not for the agent to guess
				break
			}
			from = id
		}
		if from == "" {
			continue
		}
		cs := st.Machines[from].Counters[b.signal]
		delete(st.Machines[from].Counters, b.signal)
		ms := st.machine(b.machine)
		if ms.Counters == nil {
			ms.Counters = map[Signal]*CounterState{}
		}
		ms.Counters[b.signal] = cs
		out = append(out, Adopted{From: from, To: b.machine, Signal: b.signal, Last: cs.Last})
	}
	return out
}

// Machines returns the configured machine ids in configuration order.
func (m *Mapper) Machines() []string { return append([]string(nil), m.machines...) }

// Loss maps a reason code of a machine to its Odoo loss name; defaulted
// reports that the code was not in the map.
func (m *Mapper) Loss(machine, reason string) (loss string, defaulted bool) {
	b := m.reason[machine]
	if b == nil {
		return "", false
	}
	return b.loss(reason)
}

func (b *binding) loss(reason string) (string, bool) {
	if !b.hasLoss {
		return "", false
	}
	if reason == "" {
		return b.defLoss, false
	}
	if l, ok := b.lossMap[reason]; ok {
		return l, false
	}
	return b.defLoss, true
}

// State is everything the mapping remembers between samples, per machine.
// It is small and serialisable; the agent persists one machine at a time.
type State struct {
	Machines map[string]*MachineState
	// Absent counts, per counter bound to a field of an MQTT topic, the
	// messages in a row that carried other fields of the topic but not a
	// usable value of its own (in memory only). A gateway may leave a
	// field out now and then; a field name that is wrong, or that the
	// gateway renamed, never comes — and the other fields hide that the
	// counter stands still (see AbsentWarn).
	Absent map[SignalKey]*Absence
	// TimeAbsent counts likewise, per signal with a timestamp_field, the
	// messages in a row that gave it a value but no time: taken at their
	// receive time (see noteTimeAbsent).
	TimeAbsent map[SignalKey]*Absence
	// Sparkplug is what the Sparkplug B messages told (nil until one came).
	Sparkplug *SparkplugState
	// fedSignals are the signals the last sample applied gave a usable
	// value of their own now (not stored, historical ones).
	fedSignals []SignalKey
}

// FedSignals returns the signals, with their machines, the last sample
// applied (Mapper.Apply) gave a usable value now — a payload that could not
// be read, a field missing, a value that is not a number give none. Valid
// until the next Apply.
func (st *State) FedSignals() []SignalKey { return st.fedSignals }

// SignalKey names one signal of one machine.
type SignalKey struct {
	Machine string
	Signal  Signal
}

// Absence is a counter's field missing from messages of its topic.
type Absence struct {
	Topic, Field string
	N            int // messages in a row
}

// AbsentWarn is how many messages in a row without a counter's field, on
// a topic whose other fields came, make it worth showing.
const AbsentWarn = 20

// MachineState is one machine's remembered values.
type MachineState struct {
	// Counters holds the last accepted raw value per counter signal.
	Counters map[Signal]*CounterState `json:"counters,omitempty"`
	// Running is the last known run state; nil when unknown.
	Running *bool `json:"running,omitempty"`
	// RunningTime is the source time of the last accepted running sample.
	RunningTime time.Time `json:"running_time,omitzero"`
	// RunPending is a running value that would change the state, stamped
	// before RunningTime, held until the next value of its watch tells why
	// (see applyRunning).
	RunPending *PendingRun `json:"run_pending,omitempty"`
	// StopStart is when the open downtime began (set while stopped).
	StopStart time.Time `json:"stop_start,omitzero"`
	// StopRecv is when the agent received the stop (zero: not known): the
	// stop's length when the source's clock went back during it.
	StopRecv time.Time `json:"stop_recv,omitzero"`
	// StopSeen is when the agent received the stop by the box's boot clock
	// (zero: not known): the stop's length when the box's clock was stepped
	// during it.
	StopSeen connectors.Seen `json:"stop_seen,omitzero"`
	// LineOpened is set by the agent when it recorded an open downtime line
	// for the current stop (block_workcenter): the restart must close it,
	// whatever the configuration says by then.
	LineOpened bool `json:"line_opened,omitempty"`
	// LineSite is the site the open line was booked under (its close goes
	// to the same external id).
	LineSite string `json:"line_site,omitempty"`
	// LineKey is set by the agent to the start (ms) of the newest stop it
	// made a downtime record of: the key of the newest downtime line's
	// external id that can come from this state (see the agent's
	// checkRestored).
	LineKey int64 `json:"line_key,omitempty"`
	// StopWorkcenter is set by the agent to the machine's work center code
	// when it stops: a stop ended after the machine left the configuration
	// (its line open in Odoo) is still booked on that work center.
	StopWorkcenter string `json:"stop_workcenter,omitempty"`
	// Reason is the current downtime reason code; ReasonSet says one was seen.
	Reason     string    `json:"reason,omitempty"`
	ReasonSet  bool      `json:"reason_set,omitempty"`
	ReasonTime time.Time `json:"reason_time,omitzero"`
	// PrevReason is the reason before the last change, stamped (source
	// time) ReasonChanged: a change stamped at or after the end of a stop
	// that arrived before it (a PLC clearing its stop code with the run,
	// the two notifications in either order) does not give the stop its
	// reason.
	PrevReason    string    `json:"prev_reason,omitempty"`
	ReasonChanged time.Time `json:"reason_changed,omitzero"`
	// LastStop is the machine's last stop that ended, when both its ends
	// had source times: a reason stamped before its end that arrives after
	// it is that stop's (EventReasonLate). For a stop a BIRTH began, its
	// line from that BIRTH, After is when the machine was last known
	// running before that BIRTH (StopAfter): a stored stop from then on,
	// its run not stored, ran to its start (beforeLastStop).
	LastStop *EndedStop `json:"last_stop,omitempty"`
	// Recent holds, per MQTT topic ("source topic") feeding the run state
	// or the downtime reason, digests of its last messages (recentKept):
	// a retained copy the broker sends again for a re-subscribe is news
	// only when the topic did not carry it before — a state published
	// while the agent was away whose own copy the broker did not queue for
	// the session (QoS 0). A stop whose payload repeats an earlier one
	// word for word cannot be told from the stale copy of that one, and is
	// not taken.
	Recent map[string][]string `json:"recent,omitempty"`
	// Delivered holds, per MQTT topic ("source topic") feeding the run
	// state or the downtime reason without a source time, the connection
	// number (Sample.Epoch), packet identifier and payload digest of its
	// last QoS 1 or 2 messages taken (deliveredKept), stored with their
	// effect: a copy the broker resends with DUP at the next connect,
	// because the acknowledgement of one already taken never reached it
	// (the agent killed between its commit and the PUBACK), keeps its
	// identifier and is not taken again.
	Delivered map[string][]string `json:"delivered,omitempty"`
	// Hist is the run state an edge node's store and forward has told of
	// (Sparkplug is_historical values older than the current run state):
	// a stop it stored and the run that ended it are booked as one line of
	// their own (EventRunning, Historical).
	Hist *HistRun `json:"hist,omitempty"`
	// BirthStop is the stop the machine was in when the last Sparkplug
	// BIRTH's run state came, from its start to that BIRTH (to its stored
	// run, once one came: lateEnd): what the edge node stored within it is
	// booked already (notBooked).
	BirthStop *EndedStop `json:"birth_stop,omitempty"`
	// StopAtBirth says the current stop was begun by a Sparkplug BIRTH's
	// run state (the machine ran, or its state was not known, before): it
	// may have begun while the edge node was away, as its stored values
	// tell (Mapper.storedStart, when it ends). Cleared when it ends.
	StopAtBirth bool `json:"stop_at_birth,omitempty"`
	// StopAfter (with StopAtBirth) is when the machine was last known
	// running before that BIRTH (its run state's time then, or the stored
	// run that ended the stop before, splitAtStoredRun): a stored stop
	// before it is not the one the stop goes on from (storedPart).
	StopAfter time.Time `json:"stop_after,omitzero"`
	// EndAtBirth is the last stop a Sparkplug BIRTH's run state ended, as
	// its line was booked (to that BIRTH): open when the edge node lost
	// the broker, it may have ended earlier, as its stored values tell
	// (HistRun.Ended, lateEnd). Handed to the history of that outage when
	// its first stored value comes, or dropped when the first is later.
	EndAtBirth *EndedStop `json:"end_at_birth,omitempty"`
	// OnAtBirth is the stop a Sparkplug BIRTH's run state found still on
	// (stopped), begun before (seen live, or at an earlier BIRTH), from its
	// start to that BIRTH's run time: open when the edge node lost the
	// broker, it may have ended meanwhile, as its stored values tell
	// (HistRun.On, splitAtStoredRun). Handed to the history of that outage
	// when its first stored value comes, or dropped when the first is
	// later; when the stop ends before, the end it is booked with is the one
	// the stored run corrects (EndAtBirth, Tail).
	OnAtBirth *EndedStop `json:"on_at_birth,omitempty"`
}

// HistRun is the run state by a machine's historical values (applyHistorical).
type HistRun struct {
	Running bool      `json:"running"`
	Time    time.Time `json:"time"`
	// StopStart is when the stored stop began (Running false).
	StopStart time.Time `json:"stop_start,omitzero"`
	// Reason is the downtime reason by the historical values, stamped
	// ReasonTime.
	Reason     string    `json:"reason,omitempty"`
	ReasonTime time.Time `json:"reason_time,omitzero"`
	// From is the machine's live state's time (run state or reason, the
	// later) when this history began: a stored value later than it is the
	// next outage's, and begins a HistRun afresh (histFor).
	From time.Time `json:"from,omitzero"`
	// Ended is the stop the machine was in when the edge node lost the
	// broker, ended by the BIRTH's run state (MachineState.EndAtBirth): the
	// history is stopped from that stop's start, and its first stored run
	// from then on ends the stop (lateEnd). Nil once one came.
	Ended *EndedStop `json:"ended,omitempty"`
	// On is the stop the machine was in when the edge node lost the broker,
	// still on at the BIRTH (MachineState.OnAtBirth), while it is the
	// machine's current stop: the history is stopped from that stop's start,
	// and its first stored run before the BIRTH ends the stop there
	// (splitAtStoredRun). Nil once one came.
	On *EndedStop `json:"on,omitempty"`
	// Tail is a stop that went on through a BIRTH that found it stopped, as
	// booked (Ended with Tail, once its stored run came): a stored stop
	// after that run whose own run is not (yet) stored runs to its end
	// (histTail).
	Tail *EndedStop `json:"tail,omitempty"`
	// RanBefore is the stop a BIRTH ended (MachineState.EndAtBirth) whose
	// stored run came in this history (Ran), once a later BIRTH ended
	// another stop (the new EndAtBirth) before this history went on to a
	// later outage: the stored stop this history is left in after that
	// run runs to its end all the same (ranLeft).
	RanBefore *EndedStop `json:"ran_before,omitempty"`
	// Left is that stored stop, as the history before this one booked it
	// (ranLeft, to RanBefore's end): this history's first stored run
	// before that end ends its line there (EventEndStored). Apart from
	// HistRun.Ended, which holds the new EndAtBirth.
	Left *EndedStop `json:"left,omitempty"`
}

// EndedStop is a stop that ended, and the reason it was booked with.
type EndedStop struct {
	Start  time.Time `json:"start"`
	End    time.Time `json:"end"`
	Reason string    `json:"reason,omitempty"`
	// Tail says the machine was stopped at the BIRTH, and until End: the
	// stop the history ends in, its run not stored, runs to End (histTail).
	Tail bool `json:"tail,omitempty"`
	// Booked (OnAtBirth, HistRun.On) is the end the stop's line was booked
	// with, once it ended after the BIRTH (Start is then the line's start):
	// zero while it goes on.
	Booked time.Time `json:"booked,omitzero"`
	// AtBirth (with Booked) says the stop was one a BIRTH began, its line
	// booked from that BIRTH: a stored stop before it, in the history of
	// the outage that BIRTH ended, is a line of its own (storedPart).
	AtBirth bool `json:"at_birth,omitempty"`
	// Ran (EndAtBirth) says its stored run came, in a history it was
	// handed to as HistRun.On: a later outage's first stored run does not
	// end it again (ranLeft).
	Ran bool `json:"ran,omitempty"`
	// After (with AtBirth) is the stop's StopAfter: the machine ran then,
	// and a stored stop before it is an earlier outage's, its run not
	// stored. With Tail (HistRun.Tail, set as a stop a BIRTH began ended
	// live, the history of the outage before that BIRTH still coming), it
	// is when the machine was last known running before that BIRTH, and
	// Prev where the line of the stop that run ended begins (its end, once
	// its stored run came: lateEnd): one history may tell of both outages,
	// and a stored stop before After is the earlier one's, which ran to
	// Prev, not to End (earlierOutage).
	After time.Time `json:"after,omitzero"`
	Prev  time.Time `json:"prev,omitzero"`
}

// CounterState is the baseline of one counter.
type CounterState struct {
	// Replaced is the machine's replaced mark (config) Last was read under.
	Replaced string `json:"replaced,omitempty"`
	// Src identifies the source value (kind:source:address:field). A stored
	// baseline from another source (the mapping was edited) is not used.
	Src string `json:"src"`
	// Server is the OPC UA server (connectors.Sample.Server) Last was read
	// from: the same node read from another one starts counting anew.
	Server string  `json:"server,omitempty"`
	Last   float64 `json:"last"`
	// back is the value of the last step back reported (0: none since
	// the counter last moved): the same value read again (polled) is not
	// another one. Not stored.
	back float64
	// stillAt is when Last was last read again, unchanged, by a reading
	// that is no repeat (an MQTT publisher sending the counter of a
	// stopped line): it stood there then. Zero since Last changed. Not
	// stored: after a restart the time since Seen bounds it, as before.
	stillAt time.Time
	// Time is the source time of Last; zero when the source gave none.
	Time time.Time `json:"time,omitzero"`
	// ResetFrom is the value the counter went down from at its last reset
	// or rollover, and ResetTime the source time of the first value after
	// it (zero when unknown): a repeat of an older value may come back up
	// to ResetFrom, and must not count again.
	ResetFrom float64   `json:"reset_from,omitempty"`
	ResetTime time.Time `json:"reset_time,omitzero"`
	// ResetFromTime is the source time of ResetFrom, and ResetWrap says
	// the decrease was taken as a rollover: a higher value stamped between
	// ResetFromTime and ResetTime arrived late from before the reset.
	ResetFromTime time.Time `json:"reset_from_time,omitzero"`
	ResetWrap     bool      `json:"reset_wrap,omitempty"`
	// Seen is when Last was taken (source time, else receive time): a
	// reading a little lower soon after is a step back, not a reset.
	Seen time.Time `json:"seen,omitzero"`
	// SeenRecv is when Last was received (zero: not known): see sinceSeen.
	SeenRecv time.Time `json:"seen_recv,omitzero"`
	// BehindTime is the latest source time of the values held since Last
	// for being lower than Last and stamped before it (zero: none), and
	// BehindCount how many: possible repeats, unless the counter passes
	// Last in that past — then it was reset while its clock went back.
	BehindTime  time.Time `json:"behind_time,omitzero"`
	BehindCount int       `json:"behind_count,omitempty"`
	// Steps are the counter's last plain increases: its usual rate and
	// step tell a wrap from a reset (plausibleWrap), a counter set back
	// from a reset (resetWouldShow), and a glitch from a reset
	// (glitchReturn).
	Steps []RateStep `json:"steps,omitempty"`
	// StepAt is when the increases being added up for the next step
	// began, and StepD their sum (see noteIncrease).
	StepAt time.Time `json:"step_at,omitzero"`
	StepD  float64   `json:"step_d,omitempty"`
	// JustReset says Last is the value of a reset from ResetFrom, and
	// nothing counted since: a first value back near ResetFrom, faster
	// than the counter counts, makes the reset a glitch.
	JustReset bool `json:"just_reset,omitempty"`
	// Watch is the connectors.Sample.Watch Last (or the same value again)
	// was read under: a value read under the same one was watched without
	// a break since (see applyCounter).
	Watch uint64 `json:"watch,omitempty"`
	// enc is what its JSON keeps between two encodings (appendCounter).
	// Not stored.
	enc *counterEnc
}

// NewState returns an empty state.
func NewState() *State { return &State{Machines: map[string]*MachineState{}} }

// Marshal encodes one machine's state; an unknown machine encodes as an empty state.
func (s *State) Marshal(machine string) ([]byte, error) { return s.AppendMarshal(nil, machine) }

// AppendMarshal is Marshal appending to b: the agent encodes each changed
// machine's state with every commit into a buffer it reuses.
func (s *State) AppendMarshal(b []byte, machine string) ([]byte, error) {
	ms := s.Machines[machine]
	if ms == nil {
		ms = &MachineState{}
	}
	if b == nil {
		b = make([]byte, 0, 64+640*len(ms.Counters))
	}
	if out, ok := appendCountersOnly(b, ms); ok {
		return out, nil
	}
	j, err := json.Marshal(ms)
	if err != nil {
		return nil, fmt.Errorf("marshal state of %s: %w", machine, err)
	}
	return append(b, j...), nil
}

// Unmarshal restores one machine's state from Marshal's output.
func (s *State) Unmarshal(machine string, b []byte) error {
	var ms MachineState
	if err := json.Unmarshal(b, &ms); err != nil {
		return fmt.Errorf("unmarshal state of %s: %w", machine, err)
	}
	for sig, c := range ms.Counters {
		if c == nil {
			delete(ms.Counters, sig)
		}
	}
	if s.Machines == nil {
		s.Machines = map[string]*MachineState{}
	}
	s.Machines[machine] = &ms
	return nil
}

func (s *State) machine(id string) *MachineState {
	if s.Machines == nil {
		s.Machines = map[string]*MachineState{}
	}
	ms := s.Machines[id]
	if ms == nil {
		ms = &MachineState{}
		s.Machines[id] = ms
	}
	return ms
}
