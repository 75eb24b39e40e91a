package agent

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/plantedge/plantedge/agent/agenttest"
	"github.com/plantedge/plantedge/agent/config"
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
	var sb strings.Builder
	fmt.Fprintf(&sb, `site: bench
data_dir: %q
listen: %q
buffer: { max_bytes: 2GiB }
log: { level: error }
odoo: { url: %q, database: odoo, username: bot, api_key_file: %q, timeout: 10s }
opcua:
  - { name: plc, endpoint: %q, publishing_interval: 10ms, sampling_interval: 10ms, queue_size: 1 }
machines:
`, filepath.Join(dir, "data"), agenttest.FreeAddr(b), srv.URL(), keyFile, endpoint)
	var nodes []string
	for m := range machines {
		good, scrap := fmt.Sprintf("ns=2;s=M%03d.Good", m), fmt.Sprintf("ns=2;s=M%03d.Scrap", m)
		nodes = append(nodes, good, scrap)
		fmt.Fprintf(&sb, "  - { id: m-%03d, workcenter: WC-%03d, good_count: { opcua: { server: plc, node: %q } }, scrap_count: { opcua: { server: plc, node: %q } } }\n", m, m, good, scrap)
	}
	path := filepath.Join(dir, "plantedge.yaml")
	if err := os.WriteFile(path, []byte(sb.String()), 0o600); err != nil {
		b.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		b.Fatal(err)
	}
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
