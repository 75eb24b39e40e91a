package agent

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/plantedge/plantedge/agent/agenttest"
	"github.com/plantedge/plantedge/agent/config"
	"github.com/plantedge/plantedge/buffer"
	"github.com/plantedge/plantedge/connectors/mqtt/mqtttest"
	"github.com/plantedge/plantedge/connectors/opcua/opcuatest"
	"github.com/plantedge/plantedge/odoo/odootest"
)

// benchConfig writes a config for n MQTT machines m-000.. against the
// given Odoo and broker.
func benchConfig(b *testing.B, dir, odooURL, keyFile, brokerURL string, n int, listen string) string {
	var sb strings.Builder
	fmt.Fprintf(&sb, `site: bench
data_dir: %q
listen: %q
buffer: { max_bytes: 2GiB }
log: { level: warn }
odoo: { url: %q, database: odoo, username: bot, api_key_file: %q, timeout: 10s }
mqtt:
  - { name: broker, url: %q, client_id: plantedge-bench }
machines:
`, filepath.Join(dir, "data"), listen, odooURL, keyFile, brokerURL)
	for i := 0; i < n; i++ {
		fmt.Fprintf(&sb, "  - { id: m-%03d, workcenter: WC-%03d, good_count: { mqtt: { broker: broker, topic: bench/m-%03d, field: good } } }\n", i, i, i)
	}
	path := filepath.Join(dir, "plantedge.yaml")
	if err := os.WriteFile(path, []byte(sb.String()), 0o600); err != nil {
		b.Fatal(err)
	}
	return path
}

// procStatus returns a /proc/<pid>/status field in MB (VmHWM: peak RSS,
// RssAnon: heap and stacks now, RssFile: mapped file pages now — for the
// agent mostly the buffer's bbolt mmap, which the kernel can drop).
func procStatus(pid int, field string) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, field+":") {
			f := strings.Fields(line)
			kb, _ := strconv.ParseFloat(f[1], 64)
			return kb / 1024
		}
	}
	return 0
}

func vmHWM(pid int) float64 { return procStatus(pid, "VmHWM") }

// procCPU is the CPU time (user and system) process pid used so far, from
// /proc/<pid>/stat (in clock ticks of 10 ms); 0 if it cannot be read.
func procCPU(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// The fields after the command name, which is in parentheses and may
	// hold spaces: state is the first, utime and stime the 12th and 13th.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0
	}
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(utime+stime) * (time.Second / 100) // USER_HZ is 100 on Linux
}

// benchChildEnv set to "test" makes the benchmarks that report the agent's
// RSS run their agent child as this test binary (agenttest.StartChild)
// instead of `plantedge run` (agenttest.StartPlantedge). The test binary
// is several times larger than plantedge, and its file pages count in
// the child's RSS; its child sets no memory limit where `plantedge run`
// sets 40 MiB when GOMEMLIMIT is not set. agenttest.HeapProfileEnv,
// which only the test binary's child knows, selects it
// too.
const benchChildEnv = "PLANTEDGE_BENCH_CHILD"

// benchChild returns what starts the agent alone in a child process on a
// config file: `plantedge run`, built now (outside the timed part), or the
// test binary (benchChildEnv, or a profile asked for: agenttest.HeapProfileEnv,
// agenttest.CPUProfileEnv).
func benchChild(b *testing.B) func(cfgPath string) *exec.Cmd {
	b.Helper()
	if os.Getenv(benchChildEnv) == "test" || os.Getenv(agenttest.HeapProfileEnv) != "" || os.Getenv(agenttest.CPUProfileEnv) != "" {
		b.Log("agent child: the test binary")
		return func(cfgPath string) *exec.Cmd { return agenttest.StartChild(b, cfgPath) }
	}
	agenttest.Plantedge(b)
	b.Log("agent child: plantedge run")
	return func(cfgPath string) *exec.Cmd { return agenttest.StartPlantedge(b, cfgPath) }
}

// BenchmarkDrainBacklog: a 1,000,000-value backlog of 100 machines drains
// into the Odoo emulator answering each call after 20 ms. The agent runs
// in a child process, `plantedge run` (benchChildEnv), so its peak RSS is
// its own. orders=running: each machine's work order was in progress all
// through the outage (started two hours before, the values one hour old);
// orders=new: started after the values were made (as Odoo's clock has
// it), so they are "made while no order was in progress" and go to the
// next one started.
func BenchmarkDrainBacklog(b *testing.B) {
	b.Run("orders=running", func(b *testing.B) { drainBacklog(b, true) })
	b.Run("orders=new", func(b *testing.B) { drainBacklog(b, false) })
}

func drainBacklog(b *testing.B, running bool) {
	const machines, perMachine = 100, 10000
	startChild := benchChild(b)
	for i := 0; i < b.N; i++ {
		dir := b.TempDir()
		srv := odootest.New(odootest.Options{Version: 17})
		srv.Start()
		defer srv.Close()
		broker, err := mqtttest.Start("127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		defer broker.Close()
		product := srv.AddProduct("P")
		wos := make([]int64, machines)
		for m := 0; m < machines; m++ {
			wc := srv.AddWorkcenter(fmt.Sprintf("WC-%03d", m), fmt.Sprintf("m-%03d", m))
			mo := srv.AddProduction(fmt.Sprintf("MO/%03d", m), product, 1e6)
			wos[m] = srv.AddWorkorder(mo, wc, fmt.Sprintf("WO %03d", m), "progress")
			if running {
				srv.SetWorkorderDateStart(wos[m], time.Now().Add(-2*time.Hour))
			}
		}
		_, key := srv.AddUser("bot")
		keyFile := agenttest.WriteKeyFile(b, dir, key)
		cfgPath := benchConfig(b, dir, srv.URL(), keyFile, broker.URL(), machines, agenttest.FreeAddr(b))
		cfg, err := config.Load(cfgPath)
		if err != nil {
			b.Fatal(err)
		}
		// The backlog: one record per value, the worst case (live ingest
		// coalesces values of one batch).
		if err := os.MkdirAll(cfg.DataDir, 0o750); err != nil {
			b.Fatal(err)
		}
		q, err := buffer.Open(cfg.BufferPath(), buffer.Options{})
		if err != nil {
			b.Fatal(err)
		}
		now := time.Now().Add(-time.Hour).UnixMilli()
		for r := 0; r < perMachine; r += 100 {
			recs := make([]buffer.Record, 0, 100*machines)
			for k := 0; k < 100; k++ {
				for m := 0; m < machines; m++ {
					t := now + int64(r+k)
					recs = append(recs, buffer.Record{Lane: buffer.LaneCounts, Key: countKey(fmt.Sprintf("m-%03d", m), sigGood),
						Time: time.UnixMilli(t), Data: mustJSON(countRecord{Delta: 1, First: t, Last: t})})
				}
			}
			if _, err := q.Append(context.Background(), recs); err != nil {
				b.Fatal(err)
			}
		}
		if err := q.Close(); err != nil {
			b.Fatal(err)
		}
		srv.SetLatency(20 * time.Millisecond)
		callsBefore := len(srv.Calls())

		b.ResetTimer()
		start := time.Now()
		cmd := startChild(cfgPath)
		var peak, peakAnon, peakFile, peakDrain float64
		var peakFileAt time.Duration
		deadline := time.Now().Add(5 * time.Minute)
		for {
			if h := vmHWM(cmd.Process.Pid); h > peak {
				peak = h
			}
			if h := procStatus(cmd.Process.Pid, "RssAnon"); h > peakAnon {
				peakAnon = h
			}
			if h := procStatus(cmd.Process.Pid, "RssFile"); h > peakFile {
				peakFile, peakFileAt = h, time.Since(start)
			}
			// RSS while draining, after start-up (whose consistency check of
			// the whole file is a transient of its own, seen in VmHWM).
			if time.Since(start) > 2*time.Second {
				if h := procStatus(cmd.Process.Pid, "VmRSS"); h > peakDrain {
					peakDrain = h
				}
			}
			done := true
			for _, id := range wos {
				if srv.Workorder(id).QtyProducing != perMachine {
					done = false
					break
				}
			}
			if done {
				break
			}
			if time.Now().After(deadline) {
				_ = cmd.Process.Kill()
				b.Fatal("backlog not drained in 5 minutes")
			}
			time.Sleep(20 * time.Millisecond)
		}
		elapsed := time.Since(start)
		b.StopTimer()
		if h := vmHWM(cmd.Process.Pid); h > peak {
			peak = h
		}
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
		b.ReportMetric(elapsed.Seconds(), "s_drain")
		b.ReportMetric(float64(machines*perMachine)/elapsed.Seconds(), "values/s")
		b.ReportMetric(float64(len(srv.Calls())-callsBefore), "calls")
		b.ReportMetric(peak, "MB_rss")
		b.ReportMetric(peakAnon, "MB_anon")
		b.ReportMetric(peakDrain, "MB_rss_draining")
		b.Logf("peak file-backed RSS %.1f MB at %s", peakFile, peakFileAt.Round(time.Millisecond))
	}
}

// BenchmarkIngestMQTT: values published to the embedded broker until they
// are durable in the buffer; p99 is from the connector's receipt to the
// end of the commit that holds the value.
func BenchmarkIngestMQTT(b *testing.B) {
	const machines, values = 100, 200000
	dir := b.TempDir()
	srv := odootest.New(odootest.Options{Version: 17})
	srv.Start()
	defer srv.Close()
	srv.SetDown(true) // ingest only: nothing drains meanwhile
	broker, err := mqtttest.Start("127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer broker.Close()
	keyFile := agenttest.WriteKeyFile(b, dir, "0123456789012345678901234567890123456789")
	cfg, err := config.Load(benchConfig(b, dir, srv.URL(), keyFile, broker.URL(), machines, agenttest.FreeAddr(b)))
	if err != nil {
		b.Fatal(err)
	}
	for i := 0; i < b.N; i++ {
		a := startBenchAgent(b, cfg)
		b.ResetTimer()
		start := time.Now()
		for v := 0; v < values; v++ {
			// mochi silently drops QoS 1 messages past 8,192 unacknowledged
			// per client (FIELD-NOTES): keep fewer than that in flight.
			for broker.Inflight() > 4000 {
				time.Sleep(100 * time.Microsecond)
			}
			m := v % machines
			payload := []byte(fmt.Sprintf(`{"good": %d}`, v/machines))
			if err := broker.Publish(fmt.Sprintf("bench/m-%03d", m), payload, false, 1); err != nil {
				b.Fatal(err)
			}
		}
		deadline := time.Now().Add(30 * time.Second)
		for {
			n := a.count()
			if n >= values {
				break
			}
			if time.Now().After(deadline) {
				src := a.sourceList()[0]
				b.Fatalf("only %d of %d values became durable in 30s (source connections %d, last error %q, broker dropped %d)",
					n, values, src.sessions(), src.lastErr(), broker.Dropped())
			}
			time.Sleep(5 * time.Millisecond)
		}
		elapsed := time.Since(start)
		b.StopTimer()
		a.stop()
		lat := a.sorted()
		b.ReportMetric(float64(values)/elapsed.Seconds(), "values/s")
		b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99_ms")
		rss, cpu := childIngest(b, srv.URL(), keyFile, broker, machines, values)
		b.ReportMetric(rss, "MB_rss")
		b.ReportMetric(float64(cpu.Microseconds())/values, "agent_cpu_us/value")
	}
}

// childIngest runs the same ingest with the agent alone in a child
// process, `plantedge run` (benchChildEnv; the benchmark process also runs
// the broker and the publisher), and returns the agent's peak RSS (MB)
// and the CPU time the child used from the first value published until
// the last was counted: the agent's own CPU on the MQTT path, without the
// broker's and the publisher's.
func childIngest(b *testing.B, odooURL, keyFile string, broker *mqtttest.Broker, machines, values int) (rss float64, cpu time.Duration) {
	b.Helper()
	startChild := benchChild(b)
	listen := agenttest.FreeAddr(b)
	cfgPath := benchConfig(b, b.TempDir(), odooURL, keyFile, broker.URL(), machines, listen)
	cmd := startChild(cfgPath)
	defer func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
	}()
	samples := func() float64 {
		resp, err := http.Get("http://" + listen + "/metrics")
		if err != nil {
			return -1
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		for _, line := range strings.Split(string(body), "\n") {
			if v, ok := strings.CutPrefix(line, "plantedge_samples_total "); ok {
				f, _ := strconv.ParseFloat(v, 64)
				return f
			}
		}
		return 0
	}
	deadline := time.Now().Add(time.Minute)
	for samples() < 0 { // up, and subscribed a moment later
		if time.Now().After(deadline) {
			b.Fatal("child agent did not start")
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(500 * time.Millisecond)
	base := samples()
	cpu0 := procCPU(cmd.Process.Pid)
	for v := 0; v < values; v++ {
		for broker.Inflight() > 4000 {
			time.Sleep(100 * time.Microsecond)
		}
		payload := []byte(fmt.Sprintf(`{"good": %d}`, 1000000+v/machines))
		if err := broker.Publish(fmt.Sprintf("bench/m-%03d", v%machines), payload, false, 1); err != nil {
			b.Fatal(err)
		}
	}
	for samples() < base+float64(values) {
		if time.Now().After(deadline) {
			b.Fatalf("child agent took only %v of %d values", samples()-base, values)
		}
		time.Sleep(100 * time.Millisecond) // (a scrape is CPU of the child's too)
	}
	return vmHWM(cmd.Process.Pid), procCPU(cmd.Process.Pid) - cpu0
}

// benchAgent is an agent running in the benchmark process that records how
// long each value took from the connector's receipt to its commit.
type benchAgent struct {
	*Agent
	mu     sync.Mutex
	lat    []time.Duration
	cancel context.CancelFunc
	done   chan error
}

// startBenchAgent starts an agent on cfg and waits until its first source
// is connected.
func startBenchAgent(b *testing.B, cfg *config.Config) *benchAgent {
	b.Helper()
	a, err := New(cfg, Options{})
	if err != nil {
		b.Fatal(err)
	}
	ba := &benchAgent{Agent: a, done: make(chan error, 1)}
	a.latencyHook = func(d time.Duration) { ba.mu.Lock(); ba.lat = append(ba.lat, d); ba.mu.Unlock() }
	ctx, cancel := context.WithCancel(context.Background())
	ba.cancel = cancel
	go func() { ba.done <- a.Run(ctx) }()
	for len(a.Status().Sources) == 0 || a.Status().Sources[0].State != "connected" {
		time.Sleep(10 * time.Millisecond)
	}
	return ba
}

func (ba *benchAgent) count() int { ba.mu.Lock(); defer ba.mu.Unlock(); return len(ba.lat) }

func (ba *benchAgent) reset() { ba.mu.Lock(); ba.lat = ba.lat[:0]; ba.mu.Unlock() }

// sorted is a sorted copy of the latencies recorded so far.
func (ba *benchAgent) sorted() []time.Duration {
	ba.mu.Lock()
	out := slices.Clone(ba.lat)
	ba.mu.Unlock()
	slices.Sort(out)
	return out
}

func (ba *benchAgent) stop() { ba.cancel(); <-ba.done }

// opcuaBenchPlant starts what the OPC UA benchmarks need: an Odoo emulator
// that is down (ingest only), an API key file, and a simulated PLC serving
// the given uint32 tags. It returns the directory for the agent's files.
func opcuaBenchPlant(b *testing.B, tags []string, opts ...opcuatest.Option) (dir, odooURL, keyFile string, plc *opcuatest.Server) {
	b.Helper()
	dir = b.TempDir()
	srv := odootest.New(odootest.Options{Version: 17})
	srv.Start()
	b.Cleanup(srv.Close)
	srv.SetDown(true)
	vars := map[string]any{}
	for _, t := range tags {
		vars[t] = uint32(0)
	}
	plc, err := opcuatest.Start(context.Background(), 0, vars, opts...)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(plc.Close)
	keyFile = agenttest.WriteKeyFile(b, dir, "0123456789012345678901234567890123456789")
	return dir, srv.URL(), keyFile, plc
}

// countUp makes every tag count up, all the time, until the returned stop
// is called: a PLC whose machines all run.
func countUp(plc *opcuatest.Server, tags []string) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for v := uint32(1); ; v++ {
			for _, t := range tags {
				select {
				case <-done:
					return
				default:
				}
				plc.Set(t, v)
				benchSets.Add(1)
			}
		}
	})
	return func() { close(done); wg.Wait() }
}

// ingestBenchConfig writes and loads the configuration of the ingest
// benchmarks: machines machines counting good and scrap on OPC UA server
// endpoint (nodes names each one's two node ids), 10 ms publishing, Odoo
// at odooURL.
func ingestBenchConfig(b *testing.B, dir, odooURL, keyFile, endpoint, level string, machines int, nodes func(m int) (good, scrap string)) *config.Config {
	b.Helper()
	var sb strings.Builder
	fmt.Fprintf(&sb, `site: bench
data_dir: %q
listen: %q
buffer: { max_bytes: 2GiB }
log: { level: %s }
odoo: { url: %q, database: odoo, username: bot, api_key_file: %q, timeout: 10s }
opcua:
  - { name: plc, endpoint: %q, publishing_interval: 10ms, sampling_interval: 10ms, queue_size: 1 }
machines:
`, filepath.Join(dir, "data"), agenttest.FreeAddr(b), level, odooURL, keyFile, endpoint)
	for m := range machines {
		good, scrap := nodes(m)
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
	return cfg
}

// BenchmarkIngestOPCUA: one OPC UA server with 500 machines' good and scrap
// counters (1,000 tags) that all change continuously; the agent subscribes
// (10 ms publishing and sampling) and makes every notification durable.
// values/s is what became durable per second over 5 s — gopcua's server
// sends the latest value of each tag per publishing interval, so at most
// 100,000 a second; p99 is from the connector's receipt to the commit. The
// server, the simulated PLC and the agent share the process's 2 cores:
// cores is what the process used of them in the window, cpu_us/value its
// CPU time per durable value, sets/s how fast the PLC's loop went (see
// benchWindow, also for a profile of the window).
func BenchmarkIngestOPCUA(b *testing.B) {
	const machines = 500
	var tags []string
	for m := range machines {
		tags = append(tags, fmt.Sprintf("M%03d.Good", m), fmt.Sprintf("M%03d.Scrap", m))
	}
	dir, odooURL, keyFile, plc := opcuaBenchPlant(b, tags)
	cfg := ingestBenchConfig(b, dir, odooURL, keyFile, plc.Endpoint(), "warn", machines, func(m int) (string, string) {
		return plc.NodeID(fmt.Sprintf("M%03d.Good", m)), plc.NodeID(fmt.Sprintf("M%03d.Scrap", m))
	})
	for range b.N {
		a := startBenchAgent(b, cfg)
		time.Sleep(time.Second) // the initial reads and monitored items settle
		stop := countUp(plc, tags)
		a.reset()
		b.ResetTimer()
		start := time.Now()
		win := startWindow(b)
		time.Sleep(5 * time.Second)
		sorted := a.sorted()
		n := len(sorted)
		elapsed := time.Since(start)
		win.end(b, n, elapsed)
		b.StopTimer()
		stop()
		a.stop()
		if n == 0 {
			b.Fatal("no value became durable")
		}
		b.ReportMetric(float64(n)/elapsed.Seconds(), "values/s")
		b.ReportMetric(float64(sorted[len(sorted)*99/100].Microseconds())/1000, "p99_ms")
		b.ReportMetric(0, "ns/op")
	}
}

// BenchmarkOPCUASessions: how an edge box with many PLCs fares. The agent,
// alone in a child process, opens one session per configured server (here
// 50 servers of 20 machines' good counters each, all served by one
// in-process gopcua server) and ingests while every tag changes for 5 s
// (benchIngestEnv sets another duration). Reported: seconds until every session is connected, values/s durable, and
// the agent's peak RSS (the child is `plantedge run`: benchChildEnv).
// chunk=64KiB: gopcua's server as it comes, which announces 64 KiB message
// chunks whatever the agent asked (gopcua's client allocates every chunk
// it reads at the size announced); chunk=8KiB: the 8,192 bytes the agent
// asks for, as a server following OPC UA Part 6 answers
// (opcuatest.WithChunkSize).
func BenchmarkOPCUASessions(b *testing.B) {
	b.Run("chunk=64KiB", func(b *testing.B) { opcuaSessions(b) })
	b.Run("chunk=8KiB", func(b *testing.B) { opcuaSessions(b, opcuatest.WithChunkSize(8192)) })
}

// benchIngestEnv sets how long BenchmarkOPCUASessions ingests (a Go
// duration, e.g. 10m; 5s when unset): a box runs for months, and what the
// agent holds after 5 s is not all it will hold.
const benchIngestEnv = "PLANTEDGE_BENCH_INGEST"

func benchIngest(b *testing.B) time.Duration {
	b.Helper()
	v := os.Getenv(benchIngestEnv)
	if v == "" {
		return 5 * time.Second
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		b.Fatalf("%s=%q: want a positive duration such as 10m", benchIngestEnv, v)
	}
	b.Logf("ingest %v (%s)", d, benchIngestEnv)
	return d
}

func opcuaSessions(b *testing.B, opts ...opcuatest.Option) {
	const sessions, perSession = 50, 20
	ingest := benchIngest(b)
	startChild := benchChild(b)
	var tags []string
	for i := range sessions * perSession {
		tags = append(tags, fmt.Sprintf("T%04d", i))
	}
	dir, odooURL, keyFile, plc := opcuaBenchPlant(b, tags, opts...)
	listen := agenttest.FreeAddr(b)
	var sb strings.Builder
	fmt.Fprintf(&sb, "site: bench\ndata_dir: %q\nlisten: %q\nlog: { level: warn }\n", filepath.Join(dir, "data"), listen)
	fmt.Fprintf(&sb, "odoo: { url: %q, database: odoo, username: bot, api_key_file: %q }\nopcua:\n", odooURL, keyFile)
	for s := range sessions {
		fmt.Fprintf(&sb, "  - { name: plc%02d, endpoint: %q, publishing_interval: 100ms, sampling_interval: 100ms }\n", s, plc.Endpoint())
	}
	sb.WriteString("machines:\n")
	for i := range sessions * perSession {
		fmt.Fprintf(&sb, "  - { id: m%04d, workcenter: WC%04d, good_count: { opcua: { server: plc%02d, node: %q } } }\n",
			i, i, i/perSession, plc.NodeID(fmt.Sprintf("T%04d", i)))
	}
	cfgPath := filepath.Join(dir, "plantedge.yaml")
	if err := os.WriteFile(cfgPath, []byte(sb.String()), 0o600); err != nil {
		b.Fatal(err)
	}
	metric := func(name string) float64 {
		resp, err := http.Get("http://" + listen + "/metrics")
		if err != nil {
			return -1
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		sum := 0.0
		for line := range strings.Lines(string(body)) {
			if rest, ok := strings.CutPrefix(line, name); ok && (rest[0] == ' ' || rest[0] == '{') {
				f, _ := strconv.ParseFloat(strings.TrimSpace(rest[strings.LastIndexByte(rest, ' '):]), 64)
				sum += f
			}
		}
		return sum
	}
	for range b.N {
		start := time.Now()
		cmd := startChild(cfgPath)
		deadline := time.Now().Add(2 * time.Minute)
		for metric("plantedge_source_connected") < sessions {
			if time.Now().After(deadline) {
				b.Fatalf("%v of %d sessions connected after 2 minutes", metric("plantedge_source_connected"), sessions)
			}
			time.Sleep(50 * time.Millisecond)
		}
		connected := time.Since(start)
		time.Sleep(time.Second) // the initial reads settle
		stop := countUp(plc, tags)
		base, t0 := metric("plantedge_samples_total"), time.Now()
		time.Sleep(ingest)
		stop()
		elapsed := time.Since(t0)
		// MB_rss_ingest is the peak of the ingest, before the scrape
		// below; MB_rss_agent the peak after it. A scrape of /metrics
		// builds the whole exposition and sums the pending counts, a
		// scan of the backlog, which after minutes of ingest (Odoo is
		// down) takes seconds and memory of its own.
		rssIngest := vmHWM(cmd.Process.Pid)
		end := metric("plantedge_samples_total")
		rss := vmHWM(cmd.Process.Pid)
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
		b.ReportMetric(connected.Seconds(), "s_to_connect_all")
		if end >= 0 {
			b.ReportMetric((end-base)/elapsed.Seconds(), "values/s")
		} else {
			b.Log("the scrape of /metrics at the end failed: no values/s")
		}
		b.ReportMetric(rss, "MB_rss_agent")
		b.ReportMetric(rssIngest, "MB_rss_ingest")
		b.ReportMetric(0, "ns/op")
	}
}
