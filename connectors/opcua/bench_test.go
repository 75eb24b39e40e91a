package opcua

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/plantedge/plantedge/connectors"
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
