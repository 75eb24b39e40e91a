package opcua

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/gopcua/opcua/ua"

	"github.com/plantedge/plantedge/connectors"
	"github.com/plantedge/plantedge/connectors/opcua/opcuatest"
)

// arrayServer serves Counts, an Int32 array of two counters (one per lane
// of a PLC), and Scalar, an Int32.
func arrayServer(t *testing.T) *opcuatest.Server {
	t.Helper()
	srv, err := opcuatest.Start(context.Background(), freePort(t), map[string]any{
		"Counts": []int32{10, 20},
		"Scalar": int32(5),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	return srv
}

// One element of an array node is read by its index: two signals on one
// node, each its element, under an address of its own; an index beyond
// the array, or on a node that holds no array, is a bad value saying so
// (never a value); each element follows its own changes. Subscribed and
// polled alike.
func TestArrayElementByIndex(t *testing.T) {
	for _, mode := range []string{ModeSubscribe, ModePoll} {
		t.Run(mode, func(t *testing.T) {
			srv := arrayServer(t)
			counts, scalar := srv.NodeID("Counts"), srv.NodeID("Scalar")
			col := newCollector()
			src := runSource(t, Config{
				Endpoint: srv.Endpoint(), Mode: mode,
				PublishingInterval: 50 * time.Millisecond, PollInterval: 50 * time.Millisecond, HeartbeatTimeout: 5 * time.Second,
				Nodes: []string{counts, counts, counts, scalar},
				Index: map[int]uint32{0: 0, 1: 1, 2: 5, 3: 0},
			}, col)
			want := map[string]any{counts + "[0]": int64(10), counts + "[1]": int64(20)}
			for addr, v := range want {
				s, _ := col.waitFor(t, 0, 10*time.Second, "initial "+addr, func(s connectors.Sample) bool { return s.Address == addr && s.Initial })
				if !s.Good || s.Value != v || s.DataType != "Int32" {
					t.Errorf("%s = %+v, want good Int32 %v", addr, s, v)
				}
			}
			for addr, q := range map[string]string{counts + "[5]": "BadIndexRangeNoData", scalar + "[0]": "BadIndexRangeInvalid"} {
				s, _ := col.waitFor(t, 0, 10*time.Second, "initial "+addr, func(s connectors.Sample) bool { return s.Address == addr && s.Initial })
				if s.Good || s.Quality != q || s.Value != nil {
					t.Errorf("%s = %+v, want bad %s and no value", addr, s, q)
				}
			}
			from := col.len()
			srv.Set("Counts", []int32{11, 25})
			for addr, v := range map[string]any{counts + "[0]": int64(11), counts + "[1]": int64(25)} {
				col.waitFor(t, from, 10*time.Second, addr+" changed", func(s connectors.Sample) bool { return s.Address == addr && s.Good && s.Value == v })
			}
			for _, s := range col.all() {
				if s.Address == counts || s.Address == scalar {
					t.Errorf("a sample of the whole node: %+v", s)
				}
			}
			if st := src.Stats(); st.BadValues < 2 {
				t.Errorf("BadValues = %d, want the index errors counted", st.BadValues)
			}
		})
	}
}

// Each read and monitored item of an element asks for the node's whole
// value, the element taken from it.
func TestWholeArrayIsAsked(t *testing.T) {
	src, err := New(Config{Name: "l", Endpoint: "opc.tcp://127.0.0.1:1", Nodes: []string{"ns=2;s=Counts", "ns=2;s=Counts"},
		Index: map[int]uint32{1: 3}}, newCollector())
	if err != nil {
		t.Fatal(err)
	}
	nid := ua.NewStringNodeID(2, "Counts")
	if r := src.nodes[0].valueID(nid); r.IndexRange != "" {
		t.Errorf("whole node asks IndexRange %q", r.IndexRange)
	}
	// No IndexRange: from a server that applies it, the answer for index 1
	// of [10] ([10]: no data) would read as the whole array of a server
	// that ignores it ([10]: element 0), review5 F4.
	if r := src.nodes[1].valueID(nid); r.IndexRange != "" || r.AttributeID != ua.AttributeIDValue {
		t.Errorf("element asks %+v, want the whole value", r)
	}
	if r := src.itemRequest(nid, 2); r.ItemToMonitor.IndexRange != "" {
		t.Errorf("element's monitored item asks %+v, want the whole value", r.ItemToMonitor)
	}
	if a := src.nodes[1].addr; a != "ns=2;s=Counts[3]" {
		t.Errorf("element address %q", a)
	}
}

// The element of an array node's whole value, or a bad value: an index
// beyond it, a node that holds no array, a bad status.
func TestElementOfAnswer(t *testing.T) {
	arr := func(v any) *ua.DataValue {
		return &ua.DataValue{EncodingMask: ua.DataValueValue, Value: ua.MustVariant(v)}
	}
	for _, tc := range []struct {
		name    string
		dv      *ua.DataValue
		index   uint32
		want    any
		quality string
	}{
		{"one element", arr([]int32{25}), 0, int64(25), ""},
		{"beyond an array of one", arr([]int32{10}), 1, nil, "BadIndexRangeNoData"},
		{"an element", arr([]int32{10, 25, 30}), 1, int64(25), ""},
		{"beyond the array", arr([]int32{10, 25}), 2, nil, "BadIndexRangeNoData"},
		{"empty array", arr([]int32{}), 0, nil, "BadIndexRangeNoData"},
		{"a scalar", arr(int32(7)), 0, nil, "BadIndexRangeInvalid"},
		{"a string is no array", arr("FAULT"), 0, nil, "BadIndexRangeInvalid"},
		{"a byte string is no array", arr([]byte{1, 2}), 0, nil, "BadIndexRangeInvalid"},
		{"server says no data", &ua.DataValue{EncodingMask: ua.DataValueStatusCode, Status: ua.StatusBadIndexRangeNoData}, 9, nil, "BadIndexRangeNoData"},
		{"strings", arr([]string{"IDLE", "FAULT"}), 1, "FAULT", ""},
	} {
		v, good, quality, _ := sampleFields(element(tc.dv, tc.index))
		if v != tc.want || quality != tc.quality || good != (tc.quality == "") {
			t.Errorf("%s: %v good=%v %q, want %v %q", tc.name, v, good, quality, tc.want, tc.quality)
		}
	}
}

// An element's address is its node's and the index; the same node with
// the same index twice is refused as listed twice, with another index
// (or none) it is not.
func TestElementAddressesAreDistinct(t *testing.T) {
	_, err := New(Config{Name: "l", Endpoint: "opc.tcp://127.0.0.1:1", Nodes: []string{"ns=2;s=C", "ns=2;s=C", "ns=2;s=C"},
		Index: map[int]uint32{0: 1, 1: 2}}, newCollector())
	if err != nil {
		t.Fatalf("two elements and the whole node refused: %v", err)
	}
	_, err = New(Config{Name: "l", Endpoint: "opc.tcp://127.0.0.1:1", Nodes: []string{"ns=2;s=C", "ns=2;s=C"},
		Index: map[int]uint32{0: 1, 1: 1}}, newCollector())
	if err == nil || !strings.Contains(err.Error(), `"ns=2;s=C[1]" listed twice`) {
		t.Fatalf("one element twice: %v", err)
	}
}

// browse shows an array node's length and first elements: what index
// can read.
func TestBrowseShowsAnArraysElements(t *testing.T) {
	srv := arrayServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out strings.Builder
	if err := Browse(ctx, srv.Endpoint(), BrowseOptions{Node: srv.NodeID("Counts"), Depth: 1}, &out); err != nil {
		t.Fatalf("Browse: %v\n%s", err, out.String())
	}
	if want := `(Int32 array of 2: [10 20]; index 0 to 1 reads one)`; !strings.Contains(out.String(), want) {
		t.Errorf("browse of the array node:\n%s\nwant %q", out.String(), want)
	}
}
