package opcua

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gopcua/opcua/id"
	"github.com/gopcua/opcua/server"
	"github.com/gopcua/opcua/server/attrs"
	"github.com/gopcua/opcua/ua"

	"github.com/plantedge/plantedge/connectors"
	"github.com/plantedge/plantedge/internal/nettest"
)

// BenchmarkNotifications measures data-change notifications per second from
// one server with 1,000 monitored items: each iteration changes all 1,000
// values and waits until every change has been delivered to the sink.
func BenchmarkNotifications(b *testing.B) {
	const items = 1000
	ts := startInProcess(b, items)
	nodes := make([]string, items)
	for i := range nodes {
		nodes[i] = fmt.Sprintf("ns=1;i=%d", 5000+i)
	}
	var live atomic.Int64
	sink := connectors.SinkFunc(func(_ context.Context, s connectors.Sample) error {
		if !s.Initial {
			live.Add(1)
		}
		return nil
	})
	src, err := New(Config{
		Name: "bench", Endpoint: ts.url, Nodes: nodes,
		PublishingInterval: 10 * time.Millisecond, HeartbeatTimeout: 30 * time.Second,
	}, sink)
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- src.Run(ctx) }()
	defer func() { cancel(); <-done }()

	// The server sends each item's value once when it is created.
	waitCount(b, &live, items)
	b.ResetTimer()
	start := time.Now()
	for i := range b.N {
		ts.counter.Add(1)
		ts.NotifyExtra(items)
		waitCount(b, &live, int64(items*(i+2)))
	}
	elapsed := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(items*b.N)/elapsed.Seconds(), "notifications/s")
}

func waitCount(b *testing.B, n *atomic.Int64, want int64) {
	deadline := time.Now().Add(60 * time.Second)
	for n.Load() < want {
		if time.Now().After(deadline) {
			b.Fatalf("got %d notifications, want %d", n.Load(), want)
		}
		time.Sleep(time.Millisecond)
	}
}

// bigAddressSpace adds a plant-shaped tree under the namespace's Objects
// folder: lines × machines objects, each with tags variables, and returns the
// number of nodes added.
func (ts *testServer) bigAddressSpace(lines, machines, tags int) int {
	obj := func(nid *ua.NodeID, name string) *server.Node {
		return server.NewNode(nid, map[ua.AttributeID]*ua.DataValue{
			ua.AttributeIDNodeClass:   server.DataValueFromValue(uint32(ua.NodeClassObject)),
			ua.AttributeIDBrowseName:  server.DataValueFromValue(attrs.BrowseName(name)),
			ua.AttributeIDDisplayName: server.DataValueFromValue(attrs.DisplayName(name, name)),
		}, nil, nil)
	}
	add := func(parent, n *server.Node) {
		ts.ns.AddNode(n)
		parent.AddRef(n, id.HasComponent, true)
	}
	n := 0
	for l := range lines {
		line := obj(ua.NewStringNodeID(ts.ns.ID(), fmt.Sprintf("L%d", l)), fmt.Sprintf("Line%d", l))
		add(ts.ns.Objects(), line)
		n++
		for m := range machines {
			mp := fmt.Sprintf("L%d.M%d", l, m)
			mach := obj(ua.NewStringNodeID(ts.ns.ID(), mp), fmt.Sprintf("Machine%d", m))
			add(line, mach)
			n++
			for t := range tags {
				v := float64(t)
				add(mach, varNode(ua.NewStringNodeID(ts.ns.ID(), fmt.Sprintf("%s.T%d", mp, t)), fmt.Sprintf("Tag%d", t),
					func() *ua.DataValue { return dv(v, ua.StatusOK) }))
				n++
			}
		}
	}
	return n
}

// BenchmarkBrowse walks an address space of 110,010 nodes (10 lines × 100
// machines × 109 tags, the size of benthos-umh's published browse) with the
// tree printer `plantedge browse` uses, values and data types included,
// served by gopcua's own server in this process.
func BenchmarkBrowse(b *testing.B) {
	ts := startInProcess(b, 0)
	nodes := ts.bigAddressSpace(10, 100, 109)
	benchBrowse(b, ts.url, "ns=1;i=85", nodes)
}

// BenchmarkBrowseNodeOPCUA walks the same tree served by node-opcua in a
// process of its own (a server that pages references and splits responses
// into chunks, as PLC servers do), directly and through a link with a round
// trip of 1 ms, as between an edge box and a PLC across a plant network.
func BenchmarkBrowseNodeOPCUA(b *testing.B) {
	srv := startNodeServer(b, "NO_SECURITY=1", "PLANT=10,100,109")
	b.Run("rtt=0", func(b *testing.B) {
		benchBrowse(b, srv.Endpoint, "i=85", 10+10*100+10*100*109)
	})
	b.Run("rtt=1ms", func(b *testing.B) {
		url := "opc.tcp://" + nettest.LatencyProxy(b, strings.TrimPrefix(srv.Endpoint, "opc.tcp://"), 500*time.Microsecond)
		benchBrowse(b, url, "i=85", 10+10*100+10*100*109)
	})
}

// benchBrowse browses endpoint from node, three levels deep, and checks that
// at least nodes nodes (and not many more) were printed.
func benchBrowse(b *testing.B, endpoint, node string, nodes int) {
	ctx := context.Background()
	b.ResetTimer()
	start := time.Now()
	printed := 0
	var calls int64
	for range b.N {
		var out countWriter
		br, err := browse(ctx, endpoint, BrowseOptions{Node: node, Depth: 3, MaxNodes: 2 * nodes}, &out)
		if err != nil {
			b.Fatal(err)
		}
		// The servers' own nodes sit beside the tree.
		if out.lines < nodes+1 || out.lines > nodes+500 {
			b.Fatalf("printed %d lines, want %d and the server's own", out.lines, nodes+1)
		}
		printed += out.lines
		calls += br.calls.browse.Load() + br.calls.next.Load() + br.calls.read.Load()
	}
	elapsed := time.Since(start)
	b.ReportMetric(float64(printed)/elapsed.Seconds(), "nodes/s")
	b.ReportMetric(elapsed.Seconds()/float64(b.N), "s/browse")
	b.ReportMetric(float64(calls)/float64(b.N), "requests/browse")
	b.ReportMetric(0, "ns/op")
}

type countWriter struct{ lines int }

func (w *countWriter) Write(p []byte) (int, error) {
	w.lines += bytes.Count(p, []byte{'\n'})
	return len(p), nil
}
