package mapping

import (
	"cmp"
	"errors"
	"fmt"
	"hash/maphash"
	"math"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/plantedge/plantedge/agent/config"
	"github.com/plantedge/plantedge/connectors"
)

// Sparkplug B payloads (Eclipse Sparkplug 3.0, sparkplug_b.proto), read
// with protowire: the few fields a signal needs, every other one skipped.

// ErrBadSparkplug means a payload on a Sparkplug B topic is not a
// Sparkplug B payload (malformed protobuf).
var ErrBadSparkplug = errors.New("malformed Sparkplug B payload")

// Sparkplug B data types (the DataType enum of sparkplug_b.proto).
const (
	spInt8     = 1
	spInt16    = 2
	spInt32    = 3
	spInt64    = 4
	spUInt8    = 5
	spUInt16   = 6
	spUInt32   = 7
	spUInt64   = 8
	spFloat    = 9
	spDouble   = 10
	spBoolean  = 11
	spString   = 12
	spDateTime = 13
	spText     = 14
	spUUID     = 15
	spDataSet  = 16
	spBytes    = 17
	spFile     = 18
	spTemplate = 19
)

// maxSparkplugPayload bounds the Sparkplug B payloads the mapping will
// decode: larger than JSON's (maxPayload), because a BIRTH lists every
// metric of an edge node or device, and a big Ignition UDT tree's passes
// 1 MiB. A BIRTH refused would leave every alias of its DATA unread.
const maxSparkplugPayload = 16 << 20

// spPayload is a decoded Sparkplug B payload.
type spPayload struct {
	ts      uint64 // ms since the epoch; 0 when absent
	seq     uint64
	hasSeq  bool
	metrics []spMetric
}

// spMetric is one metric of a payload. Its value stays as sent (vField,
// the oneof field's number, and its raw contents) until its data type,
// which a DATA message may leave to the BIRTH, is known.
type spMetric struct {
	name     string
	alias    uint64
	hasAlias bool
	ts       uint64
	datatype uint32
	isNull   bool
	// historical: is_historical, a value the edge node stored while it
	// could not publish (store and forward), sent after its BIRTH.
	historical bool
	vField     protowire.Number // 0: no value
	u          uint64           // varint and fixed values
	s          string           // string_value
	// quality is the metric's Quality property (192 good, 0 bad, 500
	// stale: Ignition's), if it has one.
	quality    uint64
	hasQuality bool
}

// spQualityGood is the Quality property's value for a good value.
const spQualityGood = 192

// badQuality says why the metric's value is not good ("": it is).
func (m *spMetric) badQuality() string {
	switch {
	case !m.hasQuality || m.quality == spQualityGood:
		return ""
	case m.quality == 0:
		return "Sparkplug quality BAD (0)"
	case m.quality == 500:
		return "Sparkplug quality STALE (500)"
	}
	return fmt.Sprintf("Sparkplug quality %d (not GOOD, 192)", m.quality)
}

// decodeQuality reads the Quality property of a metric's PropertySet
// (keys = 1, values = 2: parallel lists; a PropertyValue holds its number
// in int_value = 3 or long_value = 4).
func decodeQuality(b []byte) (q uint64, ok bool, err error) {
	var keys int
	at := -1
	var vals [][]byte
	err = eachField(b, func(num protowire.Number, typ protowire.Type, v []byte, _ uint64) error {
		switch {
		case num == 1 && typ == protowire.BytesType:
			if string(v) == "Quality" && at < 0 {
				at = keys
			}
			keys++
		case num == 2 && typ == protowire.BytesType:
			vals = append(vals, v)
		}
		return nil
	})
	if err != nil || at < 0 || at >= len(vals) {
		return 0, false, err
	}
	err = eachField(vals[at], func(num protowire.Number, typ protowire.Type, _ []byte, u uint64) error {
		if (num == 3 || num == 4) && typ == protowire.VarintType {
			q, ok = u, true
		}
		return nil
	})
	return q, ok, err
}

// decodeSparkplug decodes a Sparkplug B Payload message.
func decodeSparkplug(b []byte) (*spPayload, error) {
	if len(b) > maxSparkplugPayload {
		return nil, fmt.Errorf("payload of %d bytes exceeds %d: %w", len(b), maxSparkplugPayload, ErrBadValue)
	}
	p := &spPayload{}
	err := eachField(b, func(num protowire.Number, typ protowire.Type, v []byte, u uint64) error {
		switch {
		case num == 1 && typ == protowire.VarintType:
			p.ts = u
		case num == 2 && typ == protowire.BytesType:
			m, err := decodeMetric(v)
			if err != nil {
				return err
			}
			p.metrics = append(p.metrics, m)
		case num == 3 && typ == protowire.VarintType:
			p.seq, p.hasSeq = u, true
		case num <= 5:
			// uuid and body, or a known field with another wire type:
			// read past it.
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return p, nil
}

func decodeMetric(b []byte) (spMetric, error) {
	var m spMetric
	err := eachField(b, func(num protowire.Number, typ protowire.Type, v []byte, u uint64) error {
		switch {
		case num == 1 && typ == protowire.BytesType:
			if !utf8.Valid(v) {
				return fmt.Errorf("metric name is not UTF-8: %w", ErrBadSparkplug)
			}
			m.name = string(v)
		case num == 2 && typ == protowire.VarintType:
			m.alias, m.hasAlias = u, true
		case num == 3 && typ == protowire.VarintType:
			m.ts = u
		case num == 4 && typ == protowire.VarintType:
			m.datatype = uint32(u)
		case num == 5 && typ == protowire.VarintType:
			m.historical = u != 0
		case num == 7 && typ == protowire.VarintType:
			m.isNull = u != 0
		case num == 9 && typ == protowire.BytesType:
			q, ok, err := decodeQuality(v)
			if err != nil {
				return err
			}
			if ok {
				m.quality, m.hasQuality = q, true
			}
		case (num == 10 || num == 11 || num == 14) && typ == protowire.VarintType,
			num == 12 && typ == protowire.Fixed32Type,
			num == 13 && typ == protowire.Fixed64Type:
			m.vField, m.u = num, u
		case num == 15 && typ == protowire.BytesType:
			m.vField, m.s = num, string(v)
		case num >= 16 && num <= 19:
			m.vField = num // bytes, dataset, template, extension: refused when read
		}
		return nil
	})
	return m, err
}

// eachField calls fn for each field of a message: u holds a varint or
// fixed value, v a length-delimited one. Groups and malformed input fail.
func eachField(b []byte, fn func(num protowire.Number, typ protowire.Type, v []byte, u uint64) error) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return fmt.Errorf("%w: %v", ErrBadSparkplug, protowire.ParseError(n))
		}
		b = b[n:]
		var v []byte
		var u uint64
		switch typ {
		case protowire.VarintType:
			u, n = protowire.ConsumeVarint(b)
		case protowire.Fixed32Type:
			var x uint32
			x, n = protowire.ConsumeFixed32(b)
			u = uint64(x)
		case protowire.Fixed64Type:
			u, n = protowire.ConsumeFixed64(b)
		case protowire.BytesType:
			v, n = protowire.ConsumeBytes(b)
		default:
			// Groups are not in sparkplug_b.proto: a payload with one is
			// not a Sparkplug payload.
			n = protowire.ConsumeFieldValue(num, typ, b)
			if n >= 0 {
				return fmt.Errorf("%w: unexpected group field %d", ErrBadSparkplug, num)
			}
		}
		if n < 0 {
			return fmt.Errorf("%w: %v", ErrBadSparkplug, protowire.ParseError(n))
		}
		b = b[n:]
		if err := fn(num, typ, v, u); err != nil {
			return err
		}
	}
	return nil
}

// value returns the metric's value as the mapping converts it, reading it
// as datatype (the metric's own, else the one its BIRTH gave). Signed
// integers are sent as two's complement in the unsigned fields.
func (m *spMetric) value(datatype uint32) (any, error) {
	switch m.vField {
	case 0:
		return nil, fmt.Errorf("metric has no value: %w", ErrBadValue)
	case 10, 11:
		switch datatype {
		case spInt8:
			return int8(m.u), nil
		case spInt16:
			return int16(m.u), nil
		case spInt32:
			return int32(m.u), nil
		case spInt64:
			if m.vField == 10 {
				// An Int64 in int_value (a uint32 field: some small
				// encoders do) holds 32 bits of two's complement.
				return int64(int32(m.u)), nil
			}
			return int64(m.u), nil
		case spUInt8, spUInt16, spUInt32:
			return uint32(m.u), nil
		case spDateTime:
			return nil, fmt.Errorf("a DateTime metric is no count, run state or reason: %w", ErrBadValue)
		}
		if m.vField == 10 {
			return uint32(m.u), nil
		}
		return m.u, nil // UInt64, or no type known
	case 12:
		return math.Float32frombits(uint32(m.u)), nil
	case 13:
		return math.Float64frombits(m.u), nil
	case 14:
		return m.u != 0, nil
	case 15:
		return m.s, nil
	case 16:
		return nil, fmt.Errorf("a Bytes, File or array metric is not read (only single numbers, booleans and strings): %w", ErrBadValue)
	case 17:
		return nil, fmt.Errorf("a DataSet metric is not read (only single numbers, booleans and strings; publish the value as a metric of its own): %w", ErrBadValue)
	case 18:
		return nil, fmt.Errorf("a Template (UDT) metric is not read as a whole: name its member, e.g. field: Counters/Good, if the edge node publishes members as metrics of their own: %w", ErrBadValue)
	}
	return nil, fmt.Errorf("metric value of an extension type is not read: %w", ErrBadValue)
}

// time returns the metric's source time: its own timestamp, else the
// payload's (zero: none).
func (m *spMetric) time(p *spPayload) time.Time {
	switch {
	case m.ts != 0 && m.ts <= math.MaxInt64:
		return time.UnixMilli(int64(m.ts)).UTC()
	case p.ts != 0 && p.ts <= math.MaxInt64:
		return time.UnixMilli(int64(p.ts)).UTC()
	}
	return time.Time{}
}

// SparkplugState is what the agent keeps of the Sparkplug B edge nodes it
// reads, in memory only: per edge node the last seq and bdSeq, which of it
// is dead, and per BIRTH the metric names of its aliases — trusted only
// while known current (see spBirth).
type SparkplugState struct {
	nodes map[string]*spNode // key: source "\x00" group/node
	notes []SparkplugNote
	// waiting are the DATA topics whose values by alias could not be read
	// since their last BIRTH (key: source "\x00" DATA topic; value: the
	// BIRTH topic that would name them).
	waiting map[string]string
	// badQuality are the signals whose last value the edge node flagged
	// with a Quality other than good: why.
	badQuality map[SignalKey]string
	// rebirths are the edge nodes the samples applied since the last
	// TakeSparkplugRebirths showed the agent needs a BIRTH of, once each.
	rebirths []SparkplugRebirth
}

// SparkplugRebirth is an edge node whose BIRTH the agent needs (its DATA by
// alias cannot be read, or its seq broke while it sends by alias): what a
// Sparkplug host asks for with a rebirth request (RebirthRequest), if the
// broker's sparkplug_rebirth allows it.
type SparkplugRebirth struct {
	Source, Group, Node string
	Why                 string // "unknown alias" or "seq gap"
}

// wantRebirth notes that a BIRTH of the edge node of t is needed.
func (sp *SparkplugState) wantRebirth(source string, t config.SparkplugTopic, why string) {
	for _, r := range sp.rebirths {
		if r.Source == source && r.Group == t.Group && r.Node == t.Node {
			return
		}
	}
	sp.rebirths = append(sp.rebirths, SparkplugRebirth{Source: source, Group: t.Group, Node: t.Node, Why: why})
}

// TakeSparkplugRebirths returns and forgets the edge nodes whose BIRTH the
// samples applied since the last call showed is needed.
func (st *State) TakeSparkplugRebirths() []SparkplugRebirth {
	if st.Sparkplug == nil {
		return nil
	}
	r := st.Sparkplug.rebirths
	st.Sparkplug.rebirths = nil
	return r
}

// RebirthMetric is the metric an NCMD carries to ask an edge node for a
// rebirth (Sparkplug 3.0, Node Control/Rebirth).
const RebirthMetric = "Node Control/Rebirth"

// RebirthRequest is the payload of a rebirth request, published to the
// edge node's NCMD topic: a Sparkplug B Payload with its timestamp (the
// spec: an NCMD MUST carry the time it was sent) and one metric, Node
// Control/Rebirth, a Boolean true. It has no seq: seq numbers an edge
// node's own messages, and the spec says an NCMD MUST NOT carry one.
func RebirthRequest(now time.Time) []byte {
	ms := uint64(now.UnixMilli())
	var m []byte
	m = protowire.AppendTag(m, 1, protowire.BytesType) // name
	m = protowire.AppendString(m, RebirthMetric)
	m = protowire.AppendTag(m, 3, protowire.VarintType) // timestamp
	m = protowire.AppendVarint(m, ms)
	m = protowire.AppendTag(m, 4, protowire.VarintType) // datatype
	m = protowire.AppendVarint(m, spBoolean)
	m = protowire.AppendTag(m, 14, protowire.VarintType) // boolean_value
	m = protowire.AppendVarint(m, 1)
	var b []byte
	b = protowire.AppendTag(b, 1, protowire.VarintType) // timestamp
	b = protowire.AppendVarint(b, ms)
	b = protowire.AppendTag(b, 2, protowire.BytesType) // metrics
	b = protowire.AppendBytes(b, m)
	return b
}

// spBirth is what a BIRTH told of its metrics. The alias map is trusted
// only while it is known current: learned from a BIRTH in the agent's
// current connection to the broker, with the edge node's seq continuous
// since. An edge node re-aliases at every rebirth (Ignition does when a
// tag or UDT changes, or the gateway restarts): a map from before a
// BIRTH the agent missed names values wrongly — good counted as scrap.
// Types are by name, so they stay useful after the map is not trusted.
//
// Only the metrics the signals read (fields) are kept by name: an Ignition
// edge node's BIRTH names every tag, tens of thousands, of which the agent
// reads a few. Of the others, the alias, type and a hash of the name are
// kept, so that a DATA value of a metric no signal reads is known as such,
// and a signal a reload adds reads its metric by the BIRTH that came before
// (cover). Kept whole, an edge node of 20 devices × 5,000 tags took 17 MB of
// heap (BenchmarkSparkplugBirths).
type spBirth struct {
	fields  []string          // the metrics the signals read
	aliases map[uint64]string // of those metrics
	named   map[string]bool   // those given an alias
	types   map[string]uint32
	others  []spOther // by alias
	trusted bool
	conn    uint64 // Sample.Conn it came in
	cert    bool   // a broker's BIRTH certificate, not a BIRTH received
	// how it came in its connection (spRedelivered, spRetained, spLive):
	// what a later certificate of the same connection may replace.
	came uint8
	ts   uint64 // a certificate's payload timestamp (ms; 0: none)
	// confirmed: a DATA stamped at or after the certificate's BIRTH was
	// read by it in this connection.
	confirmed bool
	// ambiguous are the aliases the BIRTH gave to more than one metric
	// (against the spec), one of them read: not read.
	ambiguous map[uint64]bool
	// unread: the metrics of the BIRTH of a device no signal read when it
	// came, or at the last recount (0: one read, or the node's own), which
	// count towards spUnreadMetricsKept while it is kept. metrics: all of
	// the BIRTH's.
	unread, metrics int
}

// How a BIRTH or certificate came in its connection, oldest first: a
// copy the broker redelivers (DUP) was sent in an earlier connection; a
// retained one is what the broker held at the subscription; one that came
// live was published after the subscription, so is at least as new as the
// retained one (a broker may deliver the retained copy after it: EMQX
// before 6.1.1, aedes).
const (
	spRedelivered uint8 = iota
	spRetained
	spLive
)

func spCame(s connectors.Sample) uint8 {
	switch {
	case s.Duplicate:
		return spRedelivered
	case s.Initial:
		return spRetained
	}
	return spLive
}

// spOther is a metric of a BIRTH no signal read when it came.
type spOther struct {
	alias    uint64
	name     uint64 // maphash of its name (spNameSeed)
	datatype uint32
	hasAlias bool
}

// spNameSeed seeds the hashes of spOther's names. Two names of 64-bit hash
// alike among the metrics of one BIRTH: not to be expected in this world.
var spNameSeed = maphash.MakeSeed()

// keepBirth keeps of a BIRTH payload what the signals bs read.
func keepBirth(p *spPayload, bs []*binding, trusted bool, conn uint64) *spBirth {
	b := &spBirth{aliases: map[uint64]string{}, named: map[string]bool{}, types: map[string]uint32{}, trusted: trusted, conn: conn, came: spLive, metrics: len(p.metrics)}
	for _, x := range bs {
		if !slices.Contains(b.fields, x.field) {
			b.fields = append(b.fields, x.field)
		}
	}
	b.others = make([]spOther, 0, len(p.metrics))
	for i := range p.metrics {
		mt := &p.metrics[i]
		switch {
		case mt.name == "":
		case slices.Contains(b.fields, mt.name):
			b.learn(mt.name, mt.alias, mt.hasAlias, mt.datatype)
		default:
			b.others = append(b.others, spOther{alias: mt.alias, name: maphash.String(spNameSeed, mt.name), datatype: mt.datatype, hasAlias: mt.hasAlias})
		}
	}
	slices.SortFunc(b.others, func(x, y spOther) int { return cmp.Compare(x.alias, y.alias) })
	b.others = slices.Clip(b.others)
	for alias := range b.aliases {
		if b.othersWith(alias) > 0 {
			b.ambiguate(alias)
		}
	}
	return b
}

func (b *spBirth) learn(name string, alias uint64, hasAlias bool, datatype uint32) {
	if hasAlias {
		switch prev, ok := b.aliases[alias]; {
		case b.ambiguous[alias]:
		case ok && prev != name:
			b.ambiguate(alias)
		default:
			b.aliases[alias] = name
			b.named[name] = true
		}
	}
	if datatype != 0 {
		b.types[name] = datatype
	}
}

// ambiguate takes alias, which the BIRTH gave to more than one metric, out
// of the map: a value by it could be any of them (the review: before, the
// metric named last took it; then the one a signal reads did).
func (b *spBirth) ambiguate(alias uint64) {
	if name, ok := b.aliases[alias]; ok {
		delete(b.named, name)
		delete(b.aliases, alias)
	}
	if b.ambiguous == nil {
		b.ambiguous = map[uint64]bool{}
	}
	b.ambiguous[alias] = true
}

// cover has the BIRTH answer for the metrics the signals bs read: a
// reload may have a signal read one it did not keep by name.
func (b *spBirth) cover(bs []*binding) {
	for _, x := range bs {
		if slices.Contains(b.fields, x.field) {
			continue
		}
		b.fields = append(b.fields, x.field)
		h := maphash.String(spNameSeed, x.field)
		for _, o := range b.others {
			if o.name == h {
				b.learn(x.field, o.alias, o.hasAlias, o.datatype)
				if o.hasAlias && b.othersWith(o.alias) > 1 {
					b.ambiguate(o.alias) // another metric has it too
				}
			}
		}
	}
}

// other reports whether the BIRTH gave alias to a metric no signal reads
// (and to none a signal reads).
func (b *spBirth) other(alias uint64) bool {
	return b.othersWith(alias) > 0 && !b.ambiguous[alias]
}

// othersWith counts the metrics no signal read when the BIRTH came that it
// gave alias.
func (b *spBirth) othersWith(alias uint64) (n int) {
	i, _ := slices.BinarySearchFunc(b.others, alias, func(o spOther, a uint64) int { return cmp.Compare(o.alias, a) })
	for ; i < len(b.others) && b.others[i].alias == alias; i++ {
		if b.others[i].hasAlias {
			n++
		}
	}
	return n
}

// aliasesAll reports whether the BIRTH gave an alias to the field of every
// binding in bs: then an alias it does not name is not one the agent reads.
func (b *spBirth) aliasesAll(bs []*binding) bool {
	for _, x := range bs {
		if !b.named[x.field] {
			return false
		}
	}
	return true
}

// spUnreadDevicesKept bounds, per edge node, the devices no signal reads
// whose BIRTH and DEATH are kept (those read are always kept, and count
// towards it, as the node's own BIRTH does: keepsUnread is given how many
// BIRTHs, or DEATHs, the node keeps in all): a device
// per serial number, or a client publishing under the node's topics, must
// not grow the agent for good. A slot is freed where Sparkplug ends the
// device's state (dropUnreadBirths): its DDEATH, its edge node's NDEATH or
// next NBIRTH; a device that comes back sends its DBIRTH again.
const spUnreadDevicesKept = 1000

// spUnreadMetricsKept bounds, per edge node, the metrics of the BIRTHs kept
// of its devices no signal reads (24 bytes each, spOther: 1,000 devices of
// 5,000 tags were 117.5 MB of heap, BenchmarkSparkplugUnreadBirths): 5.9 MB. A
// BIRTH that would pass it is not kept (nor the device's earlier one, whose
// aliases it replaces): a reload that reads the device reads it from its
// next BIRTH, as past spUnreadDevicesKept.
const spUnreadMetricsKept = 250_000

type spNode struct {
	conn    uint64 // Sample.Conn of the node's last message
	seq     uint64
	seqOK   bool
	bdSeq   uint64 // the bdSeq metric of the last NBIRTH
	bdSeqOK bool
	dead    bool
	deadDev map[string]bool
	births  map[string]*spBirth // by device ("": the node's own)
	// unreadMetrics: the metrics of the BIRTHs in births kept for devices
	// no signal read when they came (spBirth.unread), against
	// spUnreadMetricsKept.
	unreadMetrics int
	// full: a device no signal reads was not kept, spUnreadDevicesKept
	// being reached (said once); fullMetrics: one was not kept,
	// spUnreadMetricsKept being reached (said once).
	full, fullMetrics bool
	// freed: a BIRTH of a device no signal read was dropped at a DEATH or
	// NBIRTH (dropUnreadBirths).
	freed bool
}

// keepsUnread reports whether the node keeps a BIRTH or DEATH of t's
// device, which no signal reads: one it keeps already (known), or a new one
// while it keeps fewer than spUnreadDevicesKept (kept: the BIRTHs, or the
// DEATHs, it keeps). The first one past them is said.
func (sp *SparkplugState) keepsUnread(n *spNode, known bool, kept int, source string, t config.SparkplugTopic) bool {
	if known || kept < spUnreadDevicesKept {
		return true
	}
	if !n.full {
		n.full = true
		sp.notes = append(sp.notes, SparkplugNote{Kind: "devices", Source: source, Topic: t.NodeFilter(),
			Msg: fmt.Sprintf("the edge node has more than %d devices no signal reads (a device id per serial number, or a client publishing under its topics?): the BIRTHs and DEATHs of those past them are not kept (a reload that reads one reads it from its next BIRTH); said once until a restart", spUnreadDevicesKept)})
	}
	return false
}

// keepsUnreadBirth reports whether the node keeps the BIRTH of t's device,
// which no signal reads, of metrics metrics: within spUnreadDevicesKept and
// spUnreadMetricsKept (less the device's BIRTH it replaces). The first one
// past the metrics is said. Not kept, the device's earlier BIRTH is dropped:
// its aliases are no longer the device's. Past the bound, the BIRTHs kept
// are counted again by the devices read now (read): a reload since may
// read a device whose BIRTH came unread, or no longer read one.
func (sp *SparkplugState) keepsUnreadBirth(n *spNode, metrics int, source string, t config.SparkplugTopic, read func(dev string) bool) bool {
	old := n.births[t.Device]
	if !sp.keepsUnread(n, old != nil, len(n.births), source, t) {
		return false
	}
	fits := func() bool {
		kept := n.unreadMetrics
		if old != nil {
			kept -= old.unread
		}
		return kept+metrics <= spUnreadMetricsKept
	}
	if fits() {
		return true
	}
	n.recountUnread(read)
	if fits() {
		return true
	}
	if old != nil {
		n.setBirth(t.Device, nil)
	}
	if !n.fullMetrics {
		n.fullMetrics = true
		sp.notes = append(sp.notes, SparkplugNote{Kind: "devicemetrics", Source: source, Topic: t.NodeFilter(),
			Msg: fmt.Sprintf("the BIRTHs of the edge node's devices no signal reads name more than %d metrics in all (%d in %s): the BIRTHs past them are not kept (a reload that reads such a device reads it from its next BIRTH); said once until a restart", spUnreadMetricsKept, metrics, t.Birth())})
	}
	return false
}

// recountUnread counts the metrics of the BIRTHs kept towards
// spUnreadMetricsKept by the devices read now (read).
func (n *spNode) recountUnread(read func(dev string) bool) {
	for d, b := range n.births {
		unread := 0
		if d != "" && !read(d) {
			unread = b.metrics
		}
		n.unreadMetrics += unread - b.unread
		b.unread = unread
	}
}

// setBirth keeps b as the BIRTH of device dev (nil: none), counting the
// metrics of those of devices no signal reads.
func (n *spNode) setBirth(dev string, b *spBirth) {
	if old := n.births[dev]; old != nil {
		n.unreadMetrics -= old.unread
	}
	if b == nil {
		delete(n.births, dev)
		return
	}
	n.births[dev] = b
	n.unreadMetrics += b.unread
}

// dropUnreadBirths drops the BIRTHs of the node's devices no signal reads
// (read reports those read), all or (dev) one, where Sparkplug 3.0 ends the
// device's state: at its DDEATH, or its edge node's NDEATH or NBIRTH (a new
// session, whose DBIRTHs follow). A device sends its DBIRTH again before
// its DATA, so a reload that reads it later reads it from that, and the
// slot (spUnreadDevicesKept) is free for a device alive. Not a BIRTH that
// may be newer than the DEATH or NBIRTH s: one that came live in this
// connection after a retained or redelivered copy of it, or with it a
// retained copy (a broker may send retained messages in any order). The
// devices read keep theirs (a DATA after the DDEATH, against the spec,
// reads as before).
func (n *spNode) dropUnreadBirths(s connectors.Sample, dev string, read func(dev string) bool) {
	came := spCame(s)
	drop := func(d string, b *spBirth) {
		if d == "" || b == nil || read(d) || (b.conn == s.Conn && (b.came > came || (b.came == came && came != spLive))) {
			return
		}
		n.setBirth(d, nil)
		n.freed = true
	}
	if dev != "" {
		drop(dev, n.births[dev])
		return
	}
	for d, b := range n.births {
		drop(d, b)
	}
}

// SparkplugNodeKey keys an edge node of a source (SparkplugState.nodes,
// Mapper.spNodes, the agent's rebirth requests): source "\x00" group/node.
func SparkplugNodeKey(source string, t config.SparkplugTopic) string {
	return source + "\x00" + t.Group + "/" + t.Node
}

// distrust forgets that the node's alias maps (its own and its devices')
// are current: a BIRTH may have been missed.
func (n *spNode) distrust() {
	for _, b := range n.births {
		b.trusted = false
	}
}

// aliased reports whether a BIRTH of the node (its own or a device's) gave
// aliases to metrics the signals read: then its DATA may name them by alias
// only. (Aliases of metrics no signal reads do not matter to the agent.)
func (n *spNode) aliased() bool {
	for _, b := range n.births {
		if len(b.aliases) > 0 {
			return true
		}
	}
	return false
}

// bdSeq returns the payload's bdSeq metric (the edge node's MQTT session
// number, in its NBIRTH and in the NDEATH it left as its will).
func (p *spPayload) bdSeq() (uint64, bool) {
	for i := range p.metrics {
		if m := &p.metrics[i]; m.name == "bdSeq" && (m.vField == 10 || m.vField == 11) {
			return m.u, true
		}
	}
	return 0, false
}

// SparkplugNote is something a Sparkplug message showed that the agent
// logs and counts: Kind is "seq" (a gap: messages lost), "alias" (a DATA
// alias that cannot be read), "quality" (a metric flagged not good),
// "certificate" (an alias map taken from a broker's BIRTH certificate),
// "historical" (a message with historical values of read metrics),
// "devices" or "devicemetrics" (an edge node's devices no signal reads past
// spUnreadDevicesKept, or spUnreadMetricsKept).
type SparkplugNote struct {
	Kind, Source, Topic, Msg string
}

func (st *State) sparkplug() *SparkplugState {
	if st.Sparkplug == nil {
		st.Sparkplug = &SparkplugState{nodes: map[string]*spNode{}, waiting: map[string]string{}, badQuality: map[SignalKey]string{}}
	}
	return st.Sparkplug
}

// TakeSparkplugNotes returns and forgets the notes of the samples applied
// since the last call.
func (st *State) TakeSparkplugNotes() []SparkplugNote {
	if st.Sparkplug == nil {
		return nil
	}
	n := st.Sparkplug.notes
	st.Sparkplug.notes = nil
	return n
}

// SparkplugWait is a DATA topic whose values by alias cannot be read until
// the edge node's next BIRTH (Birth: its topic).
type SparkplugWait struct {
	Source, Topic, Birth string
}

// SparkplugWaiting returns the DATA topics whose values by alias were
// skipped since their last BIRTH, in a set order.
func (st *State) SparkplugWaiting() []SparkplugWait {
	if st.Sparkplug == nil {
		return nil
	}
	var out []SparkplugWait
	for k, birth := range st.Sparkplug.waiting {
		source, topic, _ := strings.Cut(k, "\x00")
		out = append(out, SparkplugWait{Source: source, Topic: topic, Birth: birth})
	}
	slices.SortFunc(out, func(a, b SparkplugWait) int {
		return cmp.Or(cmp.Compare(a.Source, b.Source), cmp.Compare(a.Topic, b.Topic))
	})
	return out
}

// SparkplugBadQuality returns the signals whose last value the edge node
// flagged not good (Sparkplug Quality property), with why.
func (st *State) SparkplugBadQuality() map[SignalKey]string {
	if st.Sparkplug == nil {
		return nil
	}
	return st.Sparkplug.badQuality
}

// sparkplugTopic reports whether address is a topic of a Sparkplug B
// edge node some signal of source reads, or (cert) the topic of one of its
// BIRTH certificates where source's are read.
func (m *Mapper) sparkplugTopic(source, address string) (t config.SparkplugTopic, cert, ok bool) {
	if len(m.spNodes) == 0 {
		return t, false, false
	}
	if rest, found := strings.CutPrefix(address, config.SparkplugCertificates); found && m.spCerts[source] {
		address, cert = rest, true
	} else if !strings.HasPrefix(address, "spBv1.0/") {
		// Not split (an allocation) for every other topic's sample.
		return t, false, false
	}
	t, ok = config.ParseSparkplugTopic(address)
	if !ok || !m.spNodes[SparkplugNodeKey(source, t)] {
		return config.SparkplugTopic{}, false, false
	}
	return t, cert, true
}

// readsDevice returns whether a signal of source reads device dev of t's
// edge node (its DDATA topic).
func (m *Mapper) readsDevice(source string, t config.SparkplugTopic) func(dev string) bool {
	return func(dev string) bool {
		t.Device = dev
		return len(m.index[addrKey{connectors.KindMQTT, source, t.With("DDATA")}]) > 0
	}
}

// eachSparkplugUse calls fn for the signals a Sparkplug B topic feeds:
// those of its DATA topic for a BIRTH or DATA, every signal of the edge
// node for its subscription filter (a refused subscription), none for a
// DEATH or a command.
func (m *Mapper) eachSparkplugUse(source string, t config.SparkplugTopic, fn func(machine string, signal Signal)) {
	var data string
	switch t.Type {
	case "NBIRTH", "NDATA":
		data = t.With("NDATA")
	case "DBIRTH", "DDATA":
		data = t.With("DDATA")
	case "+":
		for _, bs := range m.index {
			for _, b := range bs {
				if b.sparkplug && b.source == source && b.spTopic.Group == t.Group && b.spTopic.Node == t.Node {
					fn(b.machine, b.signal)
				}
			}
		}
		return
	default:
		return
	}
	for _, b := range m.index[addrKey{connectors.KindMQTT, source, data}] {
		fn(b.machine, b.signal)
	}
}

// node returns the state of the edge node of t, first forgetting what may
// have changed while the agent was not connected to the broker.
func (sp *SparkplugState) node(s connectors.Sample, t config.SparkplugTopic) *spNode {
	nk := SparkplugNodeKey(s.Source, t)
	n := sp.nodes[nk]
	if n == nil {
		n = &spNode{conn: s.Conn, births: map[string]*spBirth{}}
		sp.nodes[nk] = n
	}
	if s.Conn != n.conn {
		// The agent reconnected to the broker since the node's last
		// message: a BIRTH (QoS 0, never queued) may have come meanwhile,
		// and the seq and bdSeq are not known to follow on. Nor is a gap
		// from here on the edge node's fault.
		n.conn = s.Conn
		n.distrust()
		n.seqOK, n.bdSeqOK = false, false
	}
	return n
}

// applyCertificate takes the alias map of a BIRTH certificate a
// Sparkplug-aware broker keeps: the last NBIRTH or DBIRTH it passed on,
// retained, sent as the agent subscribes, so that the edge node's DATA by
// alias is read from the agent's start or reconnect on, without a BIRTH.
// Not its values: they may be hours old (a counter's value older than the
// last one read would read as a reset); not its seq either. A BIRTH the
// agent received itself in this connection (not redelivered) is as new or
// newer, and stays; so does a certificate that came live, over a retained
// copy that comes after it.
// An empty certificate is one the broker removed (a device no longer in
// its edge node's BIRTH): nothing to take.
func (m *Mapper) applyCertificate(st *State, s connectors.Sample, t config.SparkplugTopic) error {
	if !s.Good || len(s.Payload) == 0 || (t.Type != "NBIRTH" && t.Type != "DBIRTH") || (t.Type == "NBIRTH") != (t.Device == "") {
		return nil
	}
	dataTopic := t.With(t.Type[:1] + "DATA")
	bs := m.index[addrKey{connectors.KindMQTT, s.Source, dataTopic}]
	p, err := decodeSparkplug(s.Payload)
	if err != nil {
		if len(bs) == 0 {
			return nil // a device no signal reads
		}
		return &PayloadError{Source: s.Source, Address: s.Address, Err: err}
	}
	sp := st.sparkplug()
	n := sp.node(s, t)
	// What came earlier in this connection stands if it is newer: a BIRTH
	// received, unless redelivered (DUP: from before the certificate the
	// broker holds); a certificate that came live, over a retained or
	// redelivered copy (a broker may send the retained copy after it).
	came := spCame(s)
	if b := n.births[t.Device]; b != nil && b.conn == s.Conn && (b.came > came || (b.came == came && !b.cert)) {
		return nil
	}
	if t.Type == "NBIRTH" {
		n.bdSeq, n.bdSeqOK = p.bdSeq()
	}
	unread := t.Device != "" && len(bs) == 0
	if unread && !sp.keepsUnreadBirth(n, len(p.metrics), s.Source, t, m.readsDevice(s.Source, t)) {
		return nil
	}
	b := keepBirth(p, bs, !s.Duplicate, s.Conn)
	b.cert, b.ts, b.came = true, p.ts, came
	if unread {
		b.unread = len(p.metrics)
	}
	n.setBirth(t.Device, b)
	if len(bs) > 0 {
		wk := s.Source + "\x00" + dataTopic
		delete(sp.waiting, wk)
		sp.notes = append(sp.notes, SparkplugNote{Kind: "certificate", Source: s.Source, Topic: s.Address,
			Msg: fmt.Sprintf("the aliases of %s are read from the broker's BIRTH certificate (its last BIRTH, kept by a Sparkplug-aware broker): DATA by alias is read without waiting for a BIRTH", t.With(t.Type))})
	}
	return nil
}

// SparkplugDown says why the machine's run state is unknown when its
// running signal is a metric of a Sparkplug B edge node (or device) whose
// DEATH came last ("" when not).
func (m *Mapper) SparkplugDown(st *State, machine string) string {
	b := m.running[machine]
	if b == nil || !b.sparkplug || st.Sparkplug == nil {
		return ""
	}
	t := b.spTopic
	n := st.Sparkplug.nodes[SparkplugNodeKey(b.source, t)]
	switch {
	case n == nil:
		return ""
	case n.dead:
		return "edge node offline (Sparkplug NDEATH)"
	case t.Device != "" && n.deadDev[t.Device]:
		return "device offline (Sparkplug DDEATH)"
	}
	return ""
}

// applySparkplug handles a message on a Sparkplug B topic: BIRTH, DATA
// and DEATH of the edge node and its devices (commands and others pass).
func (m *Mapper) applySparkplug(st *State, s connectors.Sample, t config.SparkplugTopic) ([]Event, []string, error) {
	if !s.Good || len(s.Payload) == 0 {
		return nil, nil, nil
	}
	var dataType string
	switch t.Type {
	case "NBIRTH", "NDATA", "NDEATH":
		if t.Device != "" {
			return nil, nil, nil
		}
		dataType = "NDATA"
	case "DBIRTH", "DDATA", "DDEATH":
		if t.Device == "" {
			return nil, nil, nil
		}
		dataType = "DDATA"
	default:
		return nil, nil, nil // NCMD, DCMD: sent to the node, not by it
	}
	p, err := decodeSparkplug(s.Payload)
	if err != nil {
		if t.Device != "" && len(m.index[addrKey{connectors.KindMQTT, s.Source, t.With(dataType)}]) == 0 {
			// A device no signal reads (the filter brings the edge
			// node's every device): its fault is none of the agent's.
			return nil, nil, nil
		}
		return nil, nil, &PayloadError{Source: s.Source, Address: s.Address, Err: err}
	}
	sp := st.sparkplug()
	n := sp.node(s, t)
	if t.Type == "NBIRTH" || t.Type == "DBIRTH" {
		// A retained or redelivered copy of a BIRTH that comes after one
		// that came live in this connection (a broker may send retained
		// messages after live ones: EMQX before 6.1.1, aedes) is older:
		// its alias map replaced the newer one, and a re-aliased edge
		// node's good count was read by the alias that had been scrap.
		// Nothing of it is taken, not its seq either.
		if b := n.births[t.Device]; b != nil && b.conn == s.Conn && b.came > spCame(s) {
			return nil, nil, nil
		}
	}
	m.noteSeq(sp, n, s, t, p)
	dataTopic := t.With(dataType)
	wk := s.Source + "\x00" + dataTopic
	switch t.Type {
	case "NDEATH":
		if bd, ok := p.bdSeq(); ok && n.bdSeqOK && behind(bd, n.bdSeq) {
			// The will of an earlier session, delivered after the edge
			// node came back (its NBIRTH has a later bdSeq): not its
			// death. A bdSeq ahead is the will of a session whose NBIRTH
			// the agent missed: a death.
			return nil, nil, nil
		}
		n.dead, n.seqOK = true, false
		n.distrust() // it re-aliases at its next BIRTH
		n.dropUnreadBirths(s, "", m.readsDevice(s.Source, t))
		return nil, nil, nil
	case "DDEATH":
		n.dropUnreadBirths(s, t.Device, m.readsDevice(s.Source, t))
		if len(m.index[addrKey{connectors.KindMQTT, s.Source, dataTopic}]) == 0 && !sp.keepsUnread(n, n.deadDev[t.Device], len(n.deadDev), s.Source, t) {
			return nil, nil, nil
		}
		if n.deadDev == nil {
			n.deadDev = map[string]bool{}
		}
		n.deadDev[t.Device] = true
		return nil, nil, nil
	case "NBIRTH", "DBIRTH":
		if t.Type == "NBIRTH" {
			n.bdSeq, n.bdSeqOK = p.bdSeq()
			// A new session: the devices' own BIRTHs follow.
			n.dropUnreadBirths(s, "", m.readsDevice(s.Source, t))
		}
		// A BIRTH the broker redelivers (DUP: sent before, in a
		// connection that broke before it was acknowledged) may be
		// older than one sent meanwhile, missed: its map is not trusted.
		bs := m.index[addrKey{connectors.KindMQTT, s.Source, dataTopic}]
		unread := t.Device != "" && len(bs) == 0
		if !unread || sp.keepsUnreadBirth(n, len(p.metrics), s.Source, t, m.readsDevice(s.Source, t)) {
			b := keepBirth(p, bs, !s.Duplicate, s.Conn)
			b.came = spCame(s)
			if unread {
				b.unread = len(p.metrics)
			}
			n.setBirth(t.Device, b)
		}
		delete(sp.waiting, wk)
		// The BIRTH's values are the metrics' current values, sent again
		// at every rebirth: taken as a retained message's are.
		s.Initial = true
	}
	// A BIRTH or DATA: the node (and the device) lives.
	n.dead = false
	if t.Device != "" {
		delete(n.deadDev, t.Device)
	} else if t.Type == "NBIRTH" {
		clear(n.deadDev) // the devices' own BIRTHs follow
	}
	bs := m.index[addrKey{connectors.KindMQTT, s.Source, dataTopic}]
	if len(bs) == 0 {
		return nil, nil, nil
	}
	birth := n.births[t.Device]
	if birth != nil {
		birth.cover(bs)
	}
	// A certificate is the broker's last BIRTH, but a DATA queued for the
	// agent's session under an earlier BIRTH, whose aliases may differ,
	// can come after it (a backlog longer than the broker's inflight
	// window). Its aliases are read only in a DATA stamped at or after the
	// certificate's BIRTH, until one is: from then on the edge node's DATA
	// come in the order it sent them (a clock set back since is no matter).
	// A DATA stamped before it (or not stamped: against the spec, and not
	// to be placed) waits for a BIRTH as any alias without a current map:
	// shown, and asked for with sparkplug_rebirth (the review: skipped
	// unseen, a clock set back after the BIRTH stalled the counter).
	stored := birth
	byAlias := slices.ContainsFunc(p.metrics, func(mt spMetric) bool { return mt.name == "" && mt.hasAlias })
	certWait := byAlias && birth != nil && birth.cert && !birth.confirmed && (birth.ts == 0 || p.ts == 0 || p.ts < birth.ts)
	if certWait {
		untrusted := *birth
		untrusted.trusted = false
		birth = &untrusted
	}
	unknown, historical := false, false
	birthTopic := t.Birth()
	xs, err := extractSparkplug(bs, s, p, birth, func(alias uint64) {
		unknown = true
		// A retained DATA may be older than the map: its aliases are not
		// read either.
		why := "no BIRTH of it was received since plantedge connected to the broker, or messages of the edge node were lost since"
		if birth == nil && (n.full || n.fullMetrics || n.freed) && t.Device != "" {
			// Its BIRTH may have come while no signal read the device,
			// past those kept, or have been dropped at a DEATH (a reload
			// read it since): not kept.
			why = fmt.Sprintf("its BIRTH was not kept: it came while no signal read the device, past the %d such devices (or %d metrics of their BIRTHs) of the edge node kept, or the device or edge node died after it, or the edge node began a session (DDEATH, NDEATH, NBIRTH: a device sends its DBIRTH again before its DATA); or none came since plantedge connected to the broker, or messages of the edge node were lost since", spUnreadDevicesKept, spUnreadMetricsKept)
		}
		switch {
		case certWait:
			why = "the DATA is stamped before the BIRTH of the broker's certificate, or not stamped: it may have been sent under an earlier BIRTH (queued while plantedge was away), or the edge node's clock went back since that BIRTH"
		case birth != nil && birth.trusted && !s.Initial && birth.ambiguous[alias]:
			why = "the edge node's last BIRTH gives it to more than one metric, against the Sparkplug spec (aliases are unique)"
		case birth != nil && birth.trusted && !s.Initial:
			why = "the edge node's last BIRTH does not name it"
			if birth.aliasesAll(bs) {
				// Not a metric the agent reads: the current BIRTH names
				// the alias of each it reads. Logged and counted (an edge
				// node's fault), nothing waits, and a rebirth would not
				// name it either (the review: it asked for one at every
				// DATA).
				sp.notes = append(sp.notes, SparkplugNote{Kind: "alias", Source: s.Source, Topic: s.Address,
					Msg: fmt.Sprintf("metric alias %d is not named by the edge node's last BIRTH %s: it is none of the metrics plantedge reads there (each has its alias), so it is ignored", alias, birthTopic)})
				return
			}
		}
		sp.waiting[wk] = birthTopic
		if !s.Initial || birth == nil || !birth.trusted {
			// A retained DATA while the map is current needs no BIRTH:
			// the live DATA after it is read.
			sp.wantRebirth(s.Source, t, "unknown alias")
		}
		sp.notes = append(sp.notes, SparkplugNote{Kind: "alias", Source: s.Source, Topic: s.Address,
			Msg: fmt.Sprintf("metric alias %d cannot be read (%s): its value is skipped until the edge node sends its BIRTH %s again (plantedge asks for one if the broker's sparkplug_rebirth is on; else restart it, or send a rebirth: in Ignition, the transmitter's Refresh, or Node Control/Rebirth); a counter counts what was missed at its next value", alias, why, birthTopic)})
	}, func(b *binding, quality string) {
		k := SignalKey{b.machine, b.signal}
		if quality == "" {
			delete(sp.badQuality, k)
			return
		}
		if sp.badQuality[k] != quality {
			sp.notes = append(sp.notes, SparkplugNote{Kind: "quality", Source: s.Source, Topic: s.Address,
				Msg: fmt.Sprintf("metric %s has %s: its values are ignored until it is good again", b.field, quality)})
		}
		sp.badQuality[k] = quality
	}, func() {
		if !historical {
			historical = true
			sp.notes = append(sp.notes, SparkplugNote{Kind: "historical", Source: s.Source, Topic: s.Address,
				Msg: "historical values (is_historical: stored by the edge node while it could not publish, sent after its BIRTH): read at their own times; a counter's values older and lower than the current one are what the BIRTH counted, held as repeats (not a PLC clock gone back); a stop older than the current run state and its run are booked as a line of their own"})
		}
	})
	if byAlias && !unknown && !s.Initial && len(xs) > 0 {
		// Every alias read by a current map, values of the signals among
		// them: nothing waits any more (a DATA queued under an earlier
		// BIRTH made it wait, the next one is read), and a certificate's
		// map is borne out.
		delete(sp.waiting, wk)
		if stored != nil && stored.cert {
			stored.confirmed = true
		}
	}
	if len(xs) == 0 {
		return nil, nil, err
	}
	if t.Type == "NBIRTH" || t.Type == "DBIRTH" {
		for i := range xs {
			xs[i].birth = true
		}
	}
	return m.applyExtracted(st, s, xs, err)
}

// behind reports whether bdSeq bd is of a session before last's, modulo
// 256 (the edge node counts it 0..255 and wraps).
func behind(bd, last uint64) bool {
	d := (last - bd) % 256
	return d >= 1 && d <= 127
}

// noteSeq checks the message's seq against the edge node's last one: it
// counts up by one (0 after 255) over all the node's BIRTH, DATA and
// DDEATH messages; a gap means messages were lost, a BIRTH among them
// perhaps: the node's alias maps are no longer trusted.
func (m *Mapper) noteSeq(sp *SparkplugState, n *spNode, s connectors.Sample, t config.SparkplugTopic, p *spPayload) {
	if t.Type == "NDEATH" || !p.hasSeq {
		return // an NDEATH (the broker's will) has no seq
	}
	if s.Resent || s.Duplicate || s.Initial {
		// A retained or redelivered copy: from some time before, so the
		// next live message is not measured against its seq.
		n.seqOK = false
		return
	}
	seq := p.seq
	if n.seqOK && t.Type != "NBIRTH" && seq != (n.seq+1)%256 {
		n.distrust()
		if n.aliased() {
			// Its maps are no longer trusted, and its DATA names metrics
			// by alias: a BIRTH is needed (the spec's host asks for one
			// at a seq gap). One by name only is read on without.
			sp.wantRebirth(s.Source, t, "seq gap")
		}
		sp.notes = append(sp.notes, SparkplugNote{Kind: "seq", Source: s.Source, Topic: s.Address,
			Msg: fmt.Sprintf("Sparkplug seq %d after %d: messages of edge node %s/%s were lost between it and the broker (the next BIRTH or DATA gives the current values; values by alias are skipped until its next BIRTH, which plantedge asks for if the broker's sparkplug_rebirth is on)", seq, n.seq, t.Group, t.Node)})
	}
	n.seq, n.seqOK = seq, true
}

// extractSparkplug reads the bound metrics of a BIRTH or DATA payload, by
// name or (DATA) by the alias the BIRTH named, in the payload's order (a
// message may carry several values of one metric). A metric the payload
// does not carry is no absence: Sparkplug sends only what changed.
//
// By alias it reads only with a trusted map (spBirth), and not in a
// retained DATA (it may be older than the map): otherwise the value is
// skipped and unknownAlias called. Nothing is lost for a counter: its next
// value read (in a BIRTH, or by name) counts what was made meanwhile. A
// metric whose Quality property is not good is skipped, as an OPC UA value
// of bad quality is (not counted, no reset, no stop): quality is called
// for each bound metric read with why it is not good ("": good); and
// historical for each bound metric flagged is_historical.
func extractSparkplug(bs []*binding, s connectors.Sample, p *spPayload, birth *spBirth, unknownAlias func(uint64), quality func(*binding, string), historical func()) ([]extracted, error) {
	dup := s.Duplicate || s.Initial
	var out []extracted
	var bad error
	skip := func(field string, err error) {
		if bad == nil {
			bad = &PayloadError{Source: s.Source, Address: s.Address, Field: field, Err: err}
		}
	}
	for i := range p.metrics {
		mt := &p.metrics[i]
		name := mt.name
		if name == "" && mt.hasAlias {
			if birth != nil && birth.trusted && !s.Initial {
				name = birth.aliases[mt.alias]
				if name == "" && birth.other(mt.alias) {
					continue // a metric no signal reads
				}
			}
			if name == "" {
				unknownAlias(mt.alias)
				continue
			}
		}
		if name == "" {
			continue
		}
		datatype := mt.datatype
		if datatype == 0 && birth != nil {
			datatype = birth.types[name]
		}
		for _, b := range bs {
			if b.field != name {
				continue
			}
			if mt.historical {
				historical()
			}
			if why := mt.badQuality(); why != "" || !mt.isNull {
				quality(b, why)
				if why != "" {
					continue
				}
			}
			if mt.isNull {
				continue // is_null: no value, as an empty message
			}
			x := fromSample(b, s, dup, s.ReceiveTime, false)
			x.historical = mt.historical
			if ts := mt.time(p); !ts.IsZero() {
				if err := checkSourceTime(ts); err != nil {
					skip(name, fmt.Errorf("source time %w", err)) // taken at its receive time
				} else {
					x.t, x.srcTime = ts, true
				}
			}
			v, err := mt.value(datatype)
			if err == nil {
				err = convert(&x, v)
			}
			if err != nil {
				skip(name, err)
				continue
			}
			out = append(out, x)
		}
	}
	return out, bad
}

// CheckSparkplug reports whether a Sparkplug B payload (on a BIRTH or
// DATA topic) carries metric by name, with a value signal can use (found:
// it was there by name, not null; a DATA carries it by alias, named in the
// BIRTH only). It returns the value as read, and its source time.
func CheckSparkplug(signal Signal, metric string, payload []byte, rollover uint64, runningValues ...string) (found bool, v any, ts time.Time, err error) {
	p, err := decodeSparkplug(payload)
	if err != nil {
		return false, nil, time.Time{}, err
	}
	for i := range p.metrics {
		mt := &p.metrics[i]
		if mt.name != metric {
			continue
		}
		if mt.isNull {
			continue // no value to check: the next message may have one
		}
		v, err := mt.value(mt.datatype)
		if err == nil {
			err = CheckValue(signal, v, rollover, runningValues...)
		}
		return true, v, mt.time(p), err
	}
	return false, nil, time.Time{}, nil
}

// SparkplugNames returns the metric names a Sparkplug B payload carries (a
// BIRTH carries every metric of its edge node or device), in its order.
func SparkplugNames(payload []byte) ([]string, error) {
	p, err := decodeSparkplug(payload)
	if err != nil {
		return nil, err
	}
	var names []string
	for i := range p.metrics {
		if n := p.metrics[i].name; n != "" {
			names = append(names, n)
		}
	}
	return names, nil
}
