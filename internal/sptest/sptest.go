// Package sptest encodes Sparkplug B payloads for tests, as an edge node
// (Ignition's MQTT Transmission, a Kepware IoT gateway) publishes them.
package sptest

import (
	"errors"
	"math"

	"google.golang.org/protobuf/encoding/protowire"
)

// Sparkplug B data types (sparkplug_b.proto's DataType).
const (
	Int8     = 1
	Int16    = 2
	Int32    = 3
	Int64    = 4
	UInt8    = 5
	UInt16   = 6
	UInt32   = 7
	UInt64   = 8
	Float    = 9
	Double   = 10
	Boolean  = 11
	String   = 12
	DateTime = 13
	Text     = 14
	DataSet  = 16
	Bytes    = 17
	Template = 19
)

// Payload is a Sparkplug B payload. Seq < 0 leaves seq out (an NDEATH).
type Payload struct {
	Timestamp uint64
	Seq       int
	Metrics   []Metric
}

// Metric is one metric. Value is int64 (sent as the datatype says:
// int_value for 8 to 32 bits, long_value otherwise), uint64, float32,
// float64, bool, string, []byte, or nil (none).
type Metric struct {
	Name      string
	Alias     uint64
	HasAlias  bool
	Timestamp uint64
	Datatype  uint32
	IsNull    bool
	// Historical sends is_historical (an edge node's store and forward).
	Historical bool
	Value      any
	Dataset    bool // a dataset_value (an empty one)
	// Quality, with HasQuality, is sent as the Quality property (a
	// PropertySet with one key; the value an Int32 in int_value, as
	// Ignition sends it): 192 good, 0 bad, 500 stale.
	Quality    uint32
	HasQuality bool
}

// Encode returns the payload's protobuf encoding.
func (p Payload) Encode() []byte {
	var b []byte
	if p.Timestamp != 0 {
		b = protowire.AppendTag(b, 1, protowire.VarintType)
		b = protowire.AppendVarint(b, p.Timestamp)
	}
	for _, m := range p.Metrics {
		b = protowire.AppendTag(b, 2, protowire.BytesType)
		b = protowire.AppendBytes(b, m.encode())
	}
	if p.Seq >= 0 {
		b = protowire.AppendTag(b, 3, protowire.VarintType)
		b = protowire.AppendVarint(b, uint64(p.Seq))
	}
	return b
}

func (m Metric) encode() []byte {
	var b []byte
	if m.Name != "" {
		b = protowire.AppendTag(b, 1, protowire.BytesType)
		b = protowire.AppendString(b, m.Name)
	}
	if m.HasAlias {
		b = protowire.AppendTag(b, 2, protowire.VarintType)
		b = protowire.AppendVarint(b, m.Alias)
	}
	if m.Timestamp != 0 {
		b = protowire.AppendTag(b, 3, protowire.VarintType)
		b = protowire.AppendVarint(b, m.Timestamp)
	}
	if m.Datatype != 0 {
		b = protowire.AppendTag(b, 4, protowire.VarintType)
		b = protowire.AppendVarint(b, uint64(m.Datatype))
	}
	if m.Historical {
		b = protowire.AppendTag(b, 5, protowire.VarintType)
		b = protowire.AppendVarint(b, 1)
	}
	if m.IsNull {
		b = protowire.AppendTag(b, 7, protowire.VarintType)
		b = protowire.AppendVarint(b, 1)
	}
	if m.HasQuality {
		var pv []byte
		pv = protowire.AppendTag(pv, 1, protowire.VarintType)
		pv = protowire.AppendVarint(pv, Int32)
		pv = protowire.AppendTag(pv, 3, protowire.VarintType)
		pv = protowire.AppendVarint(pv, uint64(m.Quality))
		var ps []byte
		ps = protowire.AppendTag(ps, 1, protowire.BytesType)
		ps = protowire.AppendString(ps, "Quality")
		ps = protowire.AppendTag(ps, 2, protowire.BytesType)
		ps = protowire.AppendBytes(ps, pv)
		b = protowire.AppendTag(b, 9, protowire.BytesType)
		b = protowire.AppendBytes(b, ps)
	}
	switch v := m.Value.(type) {
	case int64:
		if m.Datatype == Int64 || m.Datatype == UInt64 || m.Datatype == DateTime {
			b = protowire.AppendTag(b, 11, protowire.VarintType)
			b = protowire.AppendVarint(b, uint64(v))
		} else {
			// 32 bits, two's complement (as Tahu's Java encoder sends it)
			b = protowire.AppendTag(b, 10, protowire.VarintType)
			b = protowire.AppendVarint(b, uint64(uint32(v)))
		}
	case uint64:
		b = protowire.AppendTag(b, 11, protowire.VarintType)
		b = protowire.AppendVarint(b, v)
	case float32:
		b = protowire.AppendTag(b, 12, protowire.Fixed32Type)
		b = protowire.AppendFixed32(b, math.Float32bits(v))
	case float64:
		b = protowire.AppendTag(b, 13, protowire.Fixed64Type)
		b = protowire.AppendFixed64(b, math.Float64bits(v))
	case bool:
		b = protowire.AppendTag(b, 14, protowire.VarintType)
		b = protowire.AppendVarint(b, protowire.EncodeBool(v))
	case string:
		b = protowire.AppendTag(b, 15, protowire.BytesType)
		b = protowire.AppendString(b, v)
	case []byte:
		b = protowire.AppendTag(b, 16, protowire.BytesType)
		b = protowire.AppendBytes(b, v)
	}
	if m.Dataset {
		b = protowire.AppendTag(b, 17, protowire.BytesType)
		b = protowire.AppendBytes(b, nil)
	}
	return b
}

// CheckRebirth checks an NCMD payload as an edge node reads a rebirth
// request (Sparkplug 3.0): a timestamp, no seq, and a metric named
// Node Control/Rebirth of data type Boolean with the value true. It reads
// the payload with a decoder of its own (fields), not the agent's
// (mapping's eachField, of like shape): a test of the agent's encoding
// that used the agent's decoder would share its mistakes.
func CheckRebirth(b []byte) error {
	var ts, seq, rebirth bool
	err := fields(b, func(num protowire.Number, typ protowire.Type, v []byte, u uint64) error {
		switch {
		case num == 1 && typ == protowire.VarintType:
			ts = u != 0
		case num == 3:
			seq = true
		case num == 2 && typ == protowire.BytesType:
			var name string
			var datatype, val uint64
			var hasVal bool
			if err := fields(v, func(num protowire.Number, typ protowire.Type, v []byte, u uint64) error {
				switch {
				case num == 1 && typ == protowire.BytesType:
					name = string(v)
				case num == 4 && typ == protowire.VarintType:
					datatype = u
				case num == 14 && typ == protowire.VarintType:
					val, hasVal = u, true
				}
				return nil
			}); err != nil {
				return err
			}
			if name == "Node Control/Rebirth" && datatype == Boolean && hasVal && val == 1 {
				rebirth = true
			}
		}
		return nil
	})
	switch {
	case err != nil:
		return err
	case !ts:
		return errors.New("no timestamp")
	case seq:
		return errors.New("a seq (an NCMD must not carry one)")
	case !rebirth:
		return errors.New("no metric Node Control/Rebirth, Boolean, true")
	}
	return nil
}

func fields(b []byte, fn func(num protowire.Number, typ protowire.Type, v []byte, u uint64) error) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
		var v []byte
		var u uint64
		switch typ {
		case protowire.VarintType:
			u, n = protowire.ConsumeVarint(b)
		case protowire.BytesType:
			v, n = protowire.ConsumeBytes(b)
		default:
			n = protowire.ConsumeFieldValue(num, typ, b)
		}
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
		if err := fn(num, typ, v, u); err != nil {
			return err
		}
	}
	return nil
}
