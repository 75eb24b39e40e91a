package agent

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/plantedge/plantedge/agent/agenttest"
	"github.com/plantedge/plantedge/connectors"
	"github.com/plantedge/plantedge/odoo/odootest"
)

// BenchmarkIngestCPU: the agent's own CPU per value on the path of
// BenchmarkIngestOPCUA — mapping, machine state, records, the durable
// commit — without the OPC UA server and the simulated PLC that share the
// process there: 500 machines' good and scrap counters, handed to the
// sink as the connector hands over a publish of 1,000 changes, one
// publish at a time (each durable before the next, a batch of 1,000).
// The configured server does not answer. cpu_us/value is the process's
// CPU time (user and system, GC included) per value: unlike values/s it
// holds on a loaded machine. Each b.N is one publish.
func BenchmarkIngestCPU(b *testing.B) {
	const machines = 500
	dir := b.TempDir()
	srv := odootest.New(odootest.Options{Version: 17})
	srv.Start()
	b.Cleanup(srv.Close)
	srv.SetDown(true)
	keyFile := agenttest.WriteKeyFile(b, dir, "0123456789012345678901234567890123456789")
	endpoint := "opc.tcp://" + agenttest.FreeAddr(b) // nothing listens
	var nodes []string
	cfg := ingestBenchConfig(b, dir, srv.URL(), keyFile, endpoint, "error", machines, func(m int) (string, string) {
		good, scrap := fmt.Sprintf("ns=2;s=M%03d.Good", m), fmt.Sprintf("ns=2;s=M%03d.Scrap", m)
		nodes = append(nodes, good, scrap)
		return good, scrap
	})
	a, err := New(cfg, Options{})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	defer func() { cancel(); <-done }()
	server := connectors.ServerID(endpoint)
	var wg sync.WaitGroup
	publish := func(v uint64) {
		recv := time.Now()
		for _, n := range nodes {
			wg.Add(1)
			s := connectors.Sample{Source: "plc", Kind: connectors.KindOPCUA, Address: n, Server: server, Value: v,
				DataType: "UInt32", Good: true, ReceiveTime: recv, Watch: 1, Ack: wg.Done}
			if err := a.Deliver(ctx, s); err != nil {
				b.Fatal(err)
			}
		}
		wg.Wait()
	}
	publish(1) // the counters' first values: nothing counted yet
	v := uint64(1)
	cpu0 := processCPU()
	start := time.Now()
	for b.Loop() {
		v += 3
		publish(v)
	}
	values := float64(b.N * len(nodes))
	b.ReportMetric(float64((processCPU()-cpu0).Microseconds())/values, "cpu_us/value")
	b.ReportMetric(values/time.Since(start).Seconds(), "values/s")
	b.ReportMetric(0, "ns/op")
}
