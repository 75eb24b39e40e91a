package opcuatest

import (
	"context"
	"testing"
	"time"

	"github.com/gopcua/opcua"
	"github.com/gopcua/opcua/ua"
)

// Writer writes the values of another OPC UA server's nodes (node-opcua's,
// in tests), as a PLC's program would: with a client of its own, not the
// agent's source, so that tests outside connectors/opcua need not import
// gopcua. Security None, anonymous; closed at the test's end.
type Writer struct {
	c  *opcua.Client
	ns map[string]uint16 // namespace indexes by URI, as found
}

// NewWriter connects a Writer to endpoint, within a minute.
func NewWriter(t testing.TB, endpoint string) *Writer {
	t.Helper()
	c, err := opcua.NewClient(endpoint, opcua.AutoReconnect(false), opcua.SecurityMode(ua.MessageSecurityModeNone))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := c.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = c.Close(ctx)
	})
	return &Writer{c: c, ns: map[string]uint16{}}
}

// Set (one goroutine at a time) writes v, a Double, to the node of string identifier id in the
// namespace of URI nsURI, reads it back, and returns the source time the
// server gave it.
func (w *Writer) Set(t testing.TB, nsURI, id string, v float64) time.Time {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ns, ok := w.ns[nsURI]
	if !ok {
		var err error
		if ns, err = w.c.FindNamespace(ctx, nsURI); err != nil {
			t.Fatalf("namespace %s: %v", nsURI, err)
		}
		w.ns[nsURI] = ns
	}
	node := ua.NewStringNodeID(ns, id)
	res, err := w.c.Write(ctx, &ua.WriteRequest{NodesToWrite: []*ua.WriteValue{{
		NodeID: node, AttributeID: ua.AttributeIDValue,
		Value: &ua.DataValue{EncodingMask: ua.DataValueValue, Value: ua.MustVariant(v)},
	}}})
	if err != nil || len(res.Results) != 1 || res.Results[0] != ua.StatusOK {
		t.Fatalf("write %v to %s: %v %+v", v, id, err, res)
	}
	rr, err := w.c.Read(ctx, &ua.ReadRequest{TimestampsToReturn: ua.TimestampsToReturnBoth,
		NodesToRead: []*ua.ReadValueID{{NodeID: node, AttributeID: ua.AttributeIDValue}}})
	if err != nil || len(rr.Results) != 1 || rr.Results[0].Value.Value() != v {
		t.Fatalf("read back %v of %s: %v %+v", v, id, err, rr)
	}
	return rr.Results[0].SourceTimestamp
}
