package opcua

import (
	"encoding/hex"
	"fmt"
	"reflect"
	"strings"
	"time"

	"github.com/gopcua/opcua/ua"

	"github.com/plantedge/plantedge/connectors"
)

// decodeValue turns a variant into the Go value a Sample carries: bool,
// int64, uint64, float64 or string. Other scalar types are rendered as
// strings; nil stays nil.
func decodeValue(v *ua.Variant) any {
	if v == nil {
		return nil
	}
	switch x := v.Value().(type) {
	case nil:
		return nil
	case bool:
		return x
	case int8:
		return int64(x)
	case int16:
		return int64(x)
	case int32:
		return int64(x)
	case int64:
		return x
	case byte:
		return uint64(x)
	case uint16:
		return uint64(x)
	case uint32:
		return uint64(x)
	case uint64:
		return x
	case float32:
		return connectors.Widen(x)
	case float64:
		return x
	case string:
		return x
	case time.Time:
		return x.UTC().Format(time.RFC3339Nano)
	case []byte:
		return hex.EncodeToString(x)
	case *ua.LocalizedText:
		if x == nil {
			return ""
		}
		return x.Text
	case *ua.QualifiedName:
		if x == nil {
			return ""
		}
		return x.Name
	case *ua.NodeID:
		return x.String()
	case ua.StatusCode:
		return statusName(x)
	case *ua.ExtensionObject:
		// A structure: its members, when the server exposes them, are nodes
		// of their own. Printing it would show Go pointers. Named by its
		// encoding's node id, which plantedge browse shows.
		t := "structure"
		if x != nil && x.TypeID != nil && x.TypeID.NodeID != nil {
			t += " " + x.TypeID.NodeID.String()
		}
		return connectors.Structured{Type: t}
	default:
		if reflect.ValueOf(x).Kind() == reflect.Slice {
			// An array: not a value (it was read as the text "[7 12]", a
			// reason code; the uatypes probe).
			return connectors.Structured{Type: builtinName(v.Type()) + " array", Array: true}
		}
		return fmt.Sprint(x)
	}
}

// statusGood reports whether a status code is in the Good class.
func statusGood(c ua.StatusCode) bool { return uint32(c)&0xC0000000 == 0 }

// statusName returns the OPC UA symbolic name of a status code
// ("BadNodeIdUnknown"), or its hex form when unknown.
func statusName(c ua.StatusCode) string {
	d, ok := ua.StatusCodes[c]
	if !ok {
		// Keep the severity word so a reader sees what class it is.
		switch {
		case uint32(c)&0x80000000 != 0:
			return fmt.Sprintf("Bad(0x%08X)", uint32(c))
		case uint32(c)&0x40000000 != 0:
			return fmt.Sprintf("Uncertain(0x%08X)", uint32(c))
		}
		return fmt.Sprintf("Good(0x%08X)", uint32(c))
	}
	n := strings.TrimPrefix(d.Name, "Status")
	// gopcua spells Id as ID; the OPC UA names use Id.
	return strings.ReplaceAll(n, "ID", "Id")
}

// dataType is the built-in type name of a data value's variant ("Int16",
// "Int32 array"; "" when it has none).
func dataType(dv *ua.DataValue) string {
	if dv == nil || dv.Value == nil || dv.Value.Type() == 0 {
		return ""
	}
	t := builtinName(dv.Value.Type())
	if dv.Value.ArrayLength() > 0 || len(dv.Value.ArrayDimensions()) > 0 {
		t += " array"
	}
	return t
}

// builtinName is an OPC UA built-in type's name as the specification and
// servers write it (gopcua's names differ in case: Uint16, NodeID, GUID).
func builtinName(t ua.TypeID) string {
	if name, ok := builtinTypes[uint32(t)]; ok {
		return name
	}
	return strings.TrimPrefix(t.String(), "TypeID")
}

// element narrows the whole value of an array node to its element index.
// An index beyond the array is BadIndexRangeNoData, and a node that holds
// no array BadIndexRangeInvalid, as a server applying an IndexRange
// answers (OPC UA Part 4, 7.27): a bad value, never a value of the signal.
// A bad status stays as it is.
func element(dv *ua.DataValue, index uint32) *ua.DataValue {
	if dv == nil || dv.Value == nil || (dv.EncodingMask&ua.DataValueStatusCode != 0 && !statusGood(dv.Status)) {
		return dv
	}
	bad := func(c ua.StatusCode) *ua.DataValue {
		out := *dv
		out.EncodingMask = (out.EncodingMask | ua.DataValueStatusCode) &^ ua.DataValueValue
		out.Status, out.Value = c, nil
		return &out
	}
	rv := reflect.ValueOf(dv.Value.Value())
	_, byteString := dv.Value.Value().([]byte)
	if !rv.IsValid() || rv.Kind() != reflect.Slice || byteString || len(dv.Value.ArrayDimensions()) > 1 {
		// A scalar (a ByteString is one value too), or an array of more
		// than one dimension, which one index does not address.
		return bad(ua.StatusBadIndexRangeInvalid)
	}
	if uint64(index) >= uint64(rv.Len()) {
		return bad(ua.StatusBadIndexRangeNoData)
	}
	v, err := ua.NewVariant(rv.Index(int(index)).Interface())
	if err != nil {
		return bad(ua.StatusBadIndexRangeInvalid)
	}
	out := *dv
	out.Value = v
	return &out
}

// sampleFields fills the value part of a sample from a data value.
func sampleFields(dv *ua.DataValue) (value any, good bool, quality string, srcTime time.Time) {
	if dv == nil {
		return nil, false, "BadNoData", time.Time{}
	}
	status := ua.StatusOK
	if dv.EncodingMask&ua.DataValueStatusCode != 0 {
		status = dv.Status
	}
	good = statusGood(status)
	if !good {
		quality = statusName(status)
	} else if status != ua.StatusOK {
		quality = statusName(status) // GoodClamped etc. stay good but say so
	}
	value = decodeValue(dv.Value)
	srcTime = dv.SourceTimestamp
	if srcTime.IsZero() {
		srcTime = dv.ServerTimestamp
	}
	return value, good, quality, srcTime
}
