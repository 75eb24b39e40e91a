package agent

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/plantedge/plantedge/agent/agenttest"
	"github.com/plantedge/plantedge/buffer"
	"github.com/plantedge/plantedge/connectors"
)

// An OPC UA value flapping between Good and Uncertain (a marginal field bus,
// a gateway's UncertainLastUsableValue) is logged once each way, then at
// most once a minute: 1,000 flaps are not 1,000 lines.
func TestFlappingQualityDoesNotFloodTheLog(t *testing.T) {
	cfg := testConfig(t, `opcua: [{ name: line1, endpoint: "opc.tcp://127.0.0.1:1" }]
machines: [{ id: m1, workcenter: W, good_count: { opcua: { server: line1, node: "ns=2;s=Good" } } }]
`)
	logs := &agenttest.SyncBuffer{}
	a, err := New(cfg, Options{Logger: slog.New(slog.NewTextHandler(logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	buf, err := buffer.Open(cfg.BufferPath(), buffer.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer buf.Close()
	a.buf = buf
	now := time.Now()
	for i := range 1000 {
		s := connectors.Sample{Source: "line1", Kind: connectors.KindOPCUA, Address: "ns=2;s=Good", Value: int64(100 + i),
			Good: i%2 == 0, ReceiveTime: now.Add(time.Duration(i) * time.Millisecond)}
		if !s.Good {
			s.Quality = "UncertainLastUsableValue"
		}
		a.commitSamples(context.Background(), []connectors.Sample{s})
	}
	bad := strings.Count(logs.String(), "source value has bad quality")
	good := strings.Count(logs.String(), "source value good again")
	if bad != 1 || good != 1 {
		t.Errorf("one tag flapping 500 times wrote %d + %d quality log lines", bad, good)
	}
}
