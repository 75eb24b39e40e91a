package opcua

import (
	"testing"
	"time"

	"github.com/gopcua/opcua/ua"

	"github.com/plantedge/plantedge/connectors"
)

func TestDecodeValue(t *testing.T) {
	ts := time.Date(2026, 11, 30, 8, 0, 0, 5, time.FixedZone("CET", 3600))
	for _, tc := range []struct {
		in   any
		want any
	}{
		{int16(-3), int64(-3)},
		{uint32(65535), uint64(65535)},
		{float32(1.5), float64(1.5)},
		// A REAL is the decimal the PLC shows (mapping46), not
		// 100.09999847412109.
		{float32(100.1), float64(100.1)},
		{true, true},
		{"press-07", "press-07"},
		{ts, "2026-11-30T07:00:00.000000005Z"},
		{[]byte{0xde, 0xad}, "dead"},
		{&ua.LocalizedText{Text: "Jam"}, "Jam"},
		{ua.NewStringNodeID(2, "Press07"), "ns=2;s=Press07"},
		// A structure (here the server status) must not print Go pointers.
		{ua.NewExtensionObject(&ua.ServerStatusDataType{StartTime: ts, BuildInfo: &ua.BuildInfo{}}), connectors.Structured{Type: "structure i=864"}},
		// An array is no value either (it read as the text "[7 12]").
		{[]int32{7, 12}, connectors.Structured{Type: "Int32 array", Array: true}},
	} {
		if got := decodeValue(ua.MustVariant(tc.in)); got != tc.want {
			t.Errorf("decodeValue(%T) = %#v, want %#v", tc.in, got, tc.want)
		}
	}
	if got := decodeValue(nil); got != nil {
		t.Errorf("decodeValue(nil) = %#v", got)
	}
}

// The OPC UA type a value came as is kept with it (Value widens integers,
// which hid a PLC program's change from Int16 to Int32: the uatypes probe).
func TestDataType(t *testing.T) {
	for _, tc := range []struct {
		in   any
		want string
	}{
		{int16(-3), "Int16"},
		{int32(7), "Int32"},
		{uint16(7), "UInt16"},
		{3.5, "Double"},
		{"FAULT", "String"},
		{[]int32{7, 12}, "Int32 array"},
	} {
		if got := dataType(&ua.DataValue{Value: ua.MustVariant(tc.in)}); got != tc.want {
			t.Errorf("dataType(%T) = %q, want %q", tc.in, got, tc.want)
		}
	}
	if got := dataType(&ua.DataValue{}); got != "" {
		t.Errorf("no value: %q", got)
	}
}
