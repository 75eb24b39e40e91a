package agent

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/plantedge/plantedge/agent/mapping"
	"github.com/plantedge/plantedge/buffer"
	"github.com/plantedge/plantedge/connectors"
	"github.com/plantedge/plantedge/internal/decimal"
	"github.com/plantedge/plantedge/internal/jsonenc"
)

// Count signals as they appear in record keys.
const (
	sigGood  = "good"
	sigScrap = "scrap"
)

// countRecord is the payload of a LaneCounts record: pieces counted on one
// machine for one signal between First and Last (source times, Unix ms).
// Consecutive count records of one key are additive, which is what lets the
// buffer merge them when its quota is short and the forwarder coalesce them
// into one absolute write.
type countRecord struct {
	Delta float64 `json:"d"`
	First int64   `json:"f"`
	Last  int64   `json:"l"`
	// Off is how long after its source time the most delayed of its
	// values was received (ms; MQTT values, 0 for others and in records of
	// older versions): a value the broker kept came late (see offsets).
	Off int64 `json:"o,omitempty"`
	// Exact marks a fractional Delta as a decimal sum (internal/decimal),
	// set by mustJSON, which every writer of count records stores them
	// with. A record without it was stored by an older version, whose
	// float64 sums carry noise that can fall within an ulp of another
	// decimal (297 steps of 0.005 added up to
	// 1.4849999999999903, an ulp from 1.48499999999999): decodeCount reads
	// its Delta as that version read it (decimal.Legacy: 1.485), as
	// upgradeDecimals reads its work orders' counts. (An integer reads the
	// same either way: it carries no mark.)
	Exact bool `json:"x,omitempty"`
}

// eventRecord is the payload of a LaneEvents record: a downtime interval of a
// machine. End zero means the line is still open (block_workcenter only).
type eventRecord struct {
	Start  int64  `json:"s"`
	End    int64  `json:"e,omitempty"`
	Reason string `json:"r,omitempty"`
	Loss   string `json:"loss,omitempty"`
	// Defaulted is set when Reason had no entry in the machine's map.
	Defaulted bool `json:"def,omitempty"`
	// Site is the site the line is booked under (its external id): the
	// one in force when the record was made, or, closing a line opened
	// before, the one it was opened under — a site changed meanwhile must
	// not book the stop a second time. Empty in records of older versions:
	// the configured site.
	Site string `json:"site,omitempty"`
	// Workcenter is the machine's work center code when the record was
	// made: a machine gone from the configuration since has its lines
	// booked there (an open line would block that work center for good).
	// Empty in records of older versions.
	Workcenter string `json:"wc,omitempty"`
	// Late marks a reason that came after its stop ended, or the earlier
	// end an edge node stored of a stop a BIRTH ended (the line again, with
	// that reason or end): the line keeps the work order it was booked
	// with, and one Odoo no longer has is not made anew.
	Late bool `json:"late,omitempty"`
	// Rx is when the line's end was received by the box's boot clock, when
	// both its ends were dated by this box's clock at their receipt and no
	// line was opened at the stop: a step of the clock since moves its
	// dates (not its external id) as it is booked. Nil otherwise, and in
	// records of older versions.
	Rx *connectors.Seen `json:"rx,omitempty"`
	// Off is how long after its source time the stop's end was received
	// (ms; MQTT values, 0 for others and in records of older versions):
	// a stop the broker kept came late (see offsets).
	Off int64 `json:"o,omitempty"`
}

// countKey is the buffer key of a machine's count records of one signal.
// Good and scrap are kept apart so that a refusal of one never dead-letters
// (and later replays) the other.
func countKey(machine, signal string) string { return machine + "/" + signal }

// countSignal is the count-key signal of a mapping counter signal ("" for
// another signal).
func countSignal(s mapping.Signal) string {
	switch s {
	case mapping.GoodCount:
		return sigGood
	case mapping.ScrapCount:
		return sigScrap
	}
	return ""
}

// aliasPrefix starts the meta keys of renamed machines' count keys: the
// value is the count key that takes over the old one's records (see
// takeOverRenamed).
const aliasPrefix = "alias/"

func aliasMetaKey(countKey string) string { return aliasPrefix + countKey }

// splitKey returns machine and signal of a count record key.
func splitKey(key string) (machine, signal string) {
	i := strings.LastIndexByte(key, '/')
	if i < 0 {
		return key, ""
	}
	return key[:i], key[i+1:]
}

func decodeCount(r buffer.Record) (countRecord, error) {
	c, err := unmarshalCount(r.Data)
	if err != nil {
		return c, fmt.Errorf("decode count record %d: %w", r.Seq, err)
	}
	if !(c.Delta >= 0 && c.Delta <= mapping.MaxCounter) {
		// Stored by a version that took counter values up to float64's
		// maximum: summed, they overflowed to infinity.
		return c, fmt.Errorf("count record %d holds %v pieces, beyond what a counter can count", r.Seq, c.Delta)
	}
	if !c.Exact {
		c.Delta = decimal.Legacy(c.Delta) // an older version's float64 sum
	}
	return c, nil
}

// unmarshalCount is json.Unmarshal of a count record: parseCount reads
// those appendJSON wrote, encoding/json any other (an older version's,
// spaced or ordered otherwise), with the same result either way
// (TestUnmarshalCountAsEncodingJSON, FuzzDecodeCount). encoding/json took
// 44 % of a status --count-pending's CPU (BenchmarkStoppedStatus/counted's
// profile), and every scan of the pending counts and read of the count
// lane paid it: 453–709 ns and an allocation a record, against 108–141 ns
// and none (BenchmarkDecodeCount).
func unmarshalCount(b []byte) (countRecord, error) {
	if c, ok := parseCount(b); ok {
		return c, nil
	}
	var c countRecord
	err := json.Unmarshal(b, &c)
	return c, err
}

// parseCount reads b when it is exactly what appendJSON writes:
// {"d":NUMBER,"f":INT,"l":INT} then optionally ,"o":INT and ,"x":true, no
// space, nothing after. Numbers are taken as encoding/json takes them
// (strconv.ParseFloat and ParseInt of the literal, which must be a JSON
// number); false for anything else (a number out of range too), which is
// left to encoding/json. It allocates nothing.
func parseCount(b []byte) (c countRecord, ok bool) {
	if b, ok = cutLiteral(b, `{"d":`); !ok {
		return c, false
	}
	n := jsonNumberLen(b)
	if n == 0 || n > 32 { // longer than appendJSON writes: converting it would allocate
		return c, false
	}
	var err error
	if c.Delta, err = strconv.ParseFloat(string(b[:n]), 64); err != nil {
		return c, false
	}
	b = b[n:]
	if b, ok = cutLiteral(b, `,"f":`); !ok {
		return c, false
	}
	if c.First, b, ok = cutInt(b); !ok {
		return c, false
	}
	if b, ok = cutLiteral(b, `,"l":`); !ok {
		return c, false
	}
	if c.Last, b, ok = cutInt(b); !ok {
		return c, false
	}
	if rest, ok := cutLiteral(b, `,"o":`); ok {
		if c.Off, b, ok = cutInt(rest); !ok {
			return c, false
		}
	}
	if rest, ok := cutLiteral(b, `,"x":true`); ok {
		c.Exact, b = true, rest
	}
	return c, string(b) == "}"
}

// cutLiteral cuts s off the start of b.
func cutLiteral(b []byte, s string) ([]byte, bool) {
	if len(b) < len(s) || string(b[:len(s)]) != s {
		return b, false
	}
	return b[len(s):], true
}

// cutInt cuts the JSON integer b begins with off it, read as encoding/json
// reads it into an int64 (one with a fraction or exponent is refused there:
// false, as for one out of range).
func cutInt(b []byte) (int64, []byte, bool) {
	n := jsonIntLen(b)
	if n == 0 || n > 20 { // at most "-9223372036854775808"
		return 0, b, false
	}
	v, err := strconv.ParseInt(string(b[:n]), 10, 64)
	if err != nil {
		return 0, b, false
	}
	return v, b[n:], true
}

// jsonIntLen is the length of the integer part of the JSON number b
// begins with (-?(0|[1-9][0-9]*)), 0 when it begins with none.
func jsonIntLen(b []byte) int {
	i := 0
	if i < len(b) && b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		return i + 1
	case i < len(b) && '1' <= b[i] && b[i] <= '9':
		return i + digitsLen(b[i:])
	}
	return 0
}

// jsonNumberLen is the length of the JSON number b begins with (RFC 8259:
// an integer part, a fraction, an exponent), 0 when it begins with none.
// strconv takes forms JSON does not (.5, 1., +1, Inf, 0x1p3, 1_0): only
// this is given to it.
func jsonNumberLen(b []byte) int {
	i := jsonIntLen(b)
	if i == 0 {
		return 0
	}
	if i < len(b) && b[i] == '.' {
		d := digitsLen(b[i+1:])
		if d == 0 {
			return 0
		}
		i += 1 + d
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		d := digitsLen(b[i:])
		if d == 0 {
			return 0
		}
		i += d
	}
	return i
}

// digitsLen is how many ASCII digits b begins with.
func digitsLen(b []byte) int {
	i := 0
	for i < len(b) && '0' <= b[i] && b[i] <= '9' {
		i++
	}
	return i
}

// eventStart is when a downtime record's stop began by its source (for
// the buffer's log of events its quota dropped).
func eventStart(r buffer.Record) (time.Time, bool) {
	e, err := decodeEvent(r)
	if err != nil || e.Start == 0 {
		return time.Time{}, false
	}
	return time.UnixMilli(e.Start), true
}

func decodeEvent(r buffer.Record) (eventRecord, error) {
	var e eventRecord
	if err := json.Unmarshal(r.Data, &e); err != nil {
		return e, fmt.Errorf("decode event record %d: %w", r.Seq, err)
	}
	return e, nil
}

func mustJSON(v any) []byte {
	switch c := v.(type) {
	case countRecord:
		// Stored by this version: a fractional Delta is a decimal sum
		// (countRecord.Exact). Set here, not by a MarshalJSON method:
		// that doubled a record's encoding time (513 to 1,457 ns).
		c.Exact = c.Delta != math.Trunc(c.Delta)
		if b, ok := c.appendJSON(make([]byte, 0, 64)); ok {
			return b
		}
		v = c
	case machineMeta:
		if b, ok := c.appendJSON(make([]byte, 0, 96+base64.StdEncoding.EncodedLen(len(c.Mapping)))); ok {
			return b
		}
	}
	b, err := json.Marshal(v)
	if err != nil { // only plain structs are marshalled here
		panic(err)
	}
	return b
}

// valueSum is the checksum a stored value of the agent's own state carries
// (bbolt checks its pages, not the values in them): the CRC-32C of b, never
// 0, which marks a value stored without one (by an older version).
func valueSum(b []byte) uint32 { return max(crc32.Checksum(b, castagnoli), 1) }

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// sumWithout is the valueSum of v's JSON, v being a value with its own
// checksum field zeroed: what that field holds when v is stored.
func sumWithout(v any) uint32 { return valueSum(mustJSON(v)) }

// summed is a stored state with a checksum field (its sum): the valueSum
// of its JSON with that field zeroed; 0 in values of older versions.
type summed[T any] interface {
	*T
	sum() *uint32
}

// sealJSON is v's JSON with its checksum set.
func sealJSON[T any, P summed[T]](v T) []byte {
	*P(&v).sum() = 0
	*P(&v).sum() = sumWithout(v)
	return mustJSON(v)
}

// openJSON reads a value sealJSON stored: an error for one that does not
// read, or whose checksum does not hold (one without, of an older version,
// goes unchecked).
func openJSON[T any, P summed[T]](b []byte) (T, error) {
	var v T
	if err := json.Unmarshal(b, &v); err != nil {
		return v, err
	}
	if s := P(&v).sum(); *s != 0 {
		want := *s
		if *s = 0; sumWithout(v) != want {
			return v, errors.New("checksum mismatch")
		}
		*s = want
	}
	return v, nil
}

// mergeCounts is the buffer's MergeFunc: it folds a later count record into
// an earlier one of the same key. Counts are additive, so nothing is lost —
// except across the end of an Odoo call in flight (a quantity write or a
// scrap booking), which settles exactly the records up to its last one:
// such a merge is refused (the buffer keeps both).
func (ag *Agent) mergeCounts(a, b buffer.Record) (buffer.Record, error) {
	if v, ok := ag.inFlight.Load(a.Key); ok {
		if maxSeq := v.(uint64); a.Seq <= maxSeq && b.Seq > maxSeq {
			return a, buffer.ErrKeepBoth
		}
	}
	return mergeCountRecords(a, b)
}

// holdInFlight notes that an Odoo call not yet settled holds the records of
// a count key up to maxSeq (0: none any more), for mergeCounts.
func (ag *Agent) holdInFlight(key string, maxSeq uint64) {
	if maxSeq == 0 {
		ag.inFlight.Delete(key)
		return
	}
	ag.inFlight.Store(key, maxSeq)
}

// mergeCountRecords adds b's count to a.
func mergeCountRecords(a, b buffer.Record) (buffer.Record, error) {
	ca, err := decodeCount(a)
	if err != nil {
		return a, err
	}
	cb, err := decodeCount(b)
	if err != nil {
		return a, err
	}
	ca.Delta = decimal.Add(ca.Delta, cb.Delta)
	ca.Off = max(ca.Off, cb.Off)
	if cb.Last > ca.Last {
		ca.Last = cb.Last
	}
	a.Data = mustJSON(ca)
	return a, nil
}

func ms(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

func fromMS(v int64) time.Time {
	if v == 0 {
		return time.Time{}
	}
	return time.UnixMilli(v).UTC()
}

// coveredInFlight reports whether an Odoo call not yet settled holds r.
func (ag *Agent) coveredInFlight(r buffer.Record) bool {
	v, ok := ag.inFlight.Load(r.Key)
	return ok && r.Seq <= v.(uint64)
}

// appendJSON appends c's JSON byte for byte as encoding/json writes it
// (TestHandEncodedRecords), or says it cannot (a Delta it refuses): one
// record per machine and signal goes with every commit, and reflection
// took most of its encoding.
func (c countRecord) appendJSON(b []byte) ([]byte, bool) {
	o := jsonenc.Begin(b)
	o.Float("d", c.Delta)
	o.Int("f", c.First)
	o.Int("l", c.Last)
	if c.Off != 0 {
		o.Int("o", c.Off)
	}
	if c.Exact {
		o.Bool("x", true)
	}
	return o.End()
}

// appendJSON appends m's JSON byte for byte as encoding/json writes it
// (TestHandEncodedRecords), or says it cannot: every changed machine's
// state goes with every commit, and encoding/json's base64 of its mapping
// state was a fifth of the ingest loop's CPU in the IngestOPCUA benchmark.
func (m machineMeta) appendJSON(b []byte) ([]byte, bool) {
	if m.Mapping == nil { // encoding/json: null
		return b, false
	}
	o := jsonenc.Begin(b)
	o.Key("mapping")
	b = append(o.Bytes(), '"')
	b = base64.StdEncoding.AppendEncode(b, m.Mapping)
	o.Set(append(b, '"'), true)
	o.Float("good", m.Good)
	o.Float("scrap", m.Scrap)
	if m.Sum != 0 {
		o.Uint("sum", uint64(m.Sum))
	}
	if m.Off != nil {
		o.Int("off", *m.Off)
	}
	if m.Src != 0 {
		o.Int("src", m.Src)
	}
	return o.End()
}
