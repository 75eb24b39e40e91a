//go:build linux

// Command soak is a long-running stress harness for plantedge: not a test
// (nothing here runs under "go test" for more than a moment), a tool to run
// before a release or after a change to the forwarding, buffer or
// connector code.
//
// It runs the built plantedge binary as a child against an OPC UA server
// and an MQTT broker that it kills and restarts again and again, and an
// Odoo emulator (odoo/odootest, in process) that it takes down every few
// minutes; it reloads the agent with SIGHUP (alternating two configs) and
// SIGKILLs it twice. Simulated machines count parts, scrap and stops the
// whole time: over OPC UA (one counter rolls over, some are elements of an
// array node read with index:), MQTT JSON, and as devices of a Sparkplug B
// edge node (sparkplug.go: aliases that change at every rebirth, DATA now
// and then by name, its connection cut now and then so that the broker
// sends its NDEATH; with -sp-history, as Ignition's store and forward, it
// keeps what changed while cut off and sends it flagged is_historical
// after its BIRTH). Every 10 s it samples the agent's memory, open files,
// threads, goroutines, heap and buffer. At the end it stops production,
// flushes, and checks that the emulator holds exactly what the machines
// made: quantity per work order, one closed downtime line per stop (a
// stop the edge node stored, at its stored times), scrap per work order,
// no duplicate downtime or scrap booking; it checks again
// after an idle minute, then prints a summary of the samples.
//
// Linux only (it reads /proc and uses Pdeathsig). From the repository root:
//
//	go build -o bin/plantedge ./cmd/plantedge
//	nice -n 5 go run ./internal/soak run -bin bin/plantedge -version 17 -dur 10m -out /tmp/soak-out
//	go run ./internal/soak summarize /tmp/soak-out/samples.csv
//
// "run" takes 1 to 4 minutes more than -dur (start-up, an Odoo outage
// under way when the chaos ends, wind-down, flush, the idle -settle
// minute). Ctrl-C stops the agent and servers, prints the summary
// of what was sampled and exits with status 130. The exit status is 0 when
// both exact checks pass, 1 when one fails or the run could not be done, 2
// for bad flags.
//
// The output directory (-out; it must not exist or be empty; by default a
// new directory under $TMPDIR) holds:
//
//	events.log          what happened when (also printed), ending in the VERIFY lines
//	samples.csv         one row per 10 s: see sampleHeader
//	summary.txt         the summary "summarize" prints for samples.csv
//	agent.log           the agent's output, all incarnations
//	opcua.stderr, broker.stderr   the servers' errors
//	plantedge.yaml      the agent's config, odoo-api-key its key, data/ its buffer
//	flush.out, final-status.json, final-metrics.txt   the agent at the end
//
// Every listener is on 127.0.0.1, on ports the kernel picks, or on -ports
// and the three after it.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/plantedge/plantedge/agent"
	"github.com/plantedge/plantedge/connectors/mqtt/mqtttest"
	"github.com/plantedge/plantedge/odoo/odootest"
)

const usage = `usage:
  soak run [flags]            soak the agent (soak run -h lists the flags)
  soak summarize [flags] FILE summarize a samples.csv (or the -out directory of a run)

soak uaserver and soak broker are the servers run runs as its children.`

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, usage)
		os.Exit(2)
	}
	switch os.Args[1] {
	case "run":
		os.Exit(runCmd(os.Args[2:]))
	case "summarize":
		os.Exit(summarizeCmd(os.Args[2:]))
	case "uaserver":
		uaChild(os.Args[2:])
	case "broker":
		brokerChild(os.Args[2:])
	case "help", "-h", "-help", "--help":
		fmt.Println(usage)
	default:
		fmt.Fprintln(os.Stderr, usage)
		os.Exit(2)
	}
}

type options struct {
	bin     string
	version int
	dur     time.Duration
	settle  time.Duration
	out     string
	seed    uint64
	nUA     int
	nMQ     int
	nArr    int
	nSP     int
	ports   int
	// spHistory: the Sparkplug edge node stores its devices' changes while
	// cut off and sends them flagged is_historical after its BIRTH.
	spHistory bool
}

func runCmd(args []string) int {
	var o options
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.StringVar(&o.bin, "bin", "bin/plantedge", "the plantedge binary to soak")
	fs.IntVar(&o.version, "version", 17, "Odoo version the emulator plays: 17, 18 or 19")
	fs.DurationVar(&o.dur, "dur", 30*time.Minute, "length of the chaos phase; the run takes 1-4m more")
	fs.DurationVar(&o.settle, "settle", time.Minute, "idle time after the check, before the last sample and the second check")
	fs.StringVar(&o.out, "out", "", "output directory; must not exist or be empty (default: a new one under $TMPDIR)")
	fs.Uint64Var(&o.seed, "seed", 1, "seed of the simulated production and the chaos schedule")
	fs.IntVar(&o.nUA, "ua", 4, "machines read over OPC UA (the last one's counter rolls over at 65536)")
	fs.IntVar(&o.nMQ, "mqtt", 6, "machines read over MQTT")
	fs.IntVar(&o.nArr, "uaarray", 2, "machines whose OPC UA counter is an element of one array node (index:)")
	fs.IntVar(&o.nSP, "sparkplug", 3, "machines that are devices of a Sparkplug B edge node (aliases, rebirths, NDEATH)")
	fs.BoolVar(&o.spHistory, "sp-history", true, "the Sparkplug edge node stores and forwards (as Ignition): cut off 10-45 s at a time, it keeps its devices' changes and sends them flagged is_historical after its BIRTH; the check expects the stored stops at their times")
	fs.IntVar(&o.ports, "ports", 0, "first of 4 consecutive TCP ports to use (agent API, OPC UA, broker, Odoo emulator); 0: free ones the kernel picks")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	var bad []string
	if fs.NArg() > 0 {
		bad = append(bad, fmt.Sprintf("unexpected arguments %q", fs.Args()))
	}
	if o.version < 17 || o.version > 19 {
		bad = append(bad, "-version must be 17, 18 or 19")
	}
	if o.dur <= 0 || o.settle < 0 {
		bad = append(bad, "-dur must be positive and -settle not negative")
	}
	if o.nUA < 1 || o.nMQ < 1 || o.nArr < 0 || o.nSP < 0 || o.nUA+o.nMQ+o.nArr+o.nSP > 99 {
		bad = append(bad, "-ua and -mqtt must be at least 1, -uaarray and -sparkplug not negative, at most 99 together")
	}
	if o.ports != 0 && (o.ports < 1024 || o.ports > 65532) {
		bad = append(bad, "-ports must be 0 or from 1024 to 65532")
	}
	if fi, err := os.Stat(o.bin); err != nil {
		bad = append(bad, fmt.Sprintf("-bin: %v (build it: go build -o bin/plantedge ./cmd/plantedge)", err))
	} else if fi.IsDir() || fi.Mode().Perm()&0o111 == 0 {
		bad = append(bad, fmt.Sprintf("-bin: %s is not an executable file", o.bin))
	}
	if len(bad) > 0 {
		for _, b := range bad {
			fmt.Fprintln(os.Stderr, "soak run:", b)
		}
		return 2
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	s, err := newSoak(o)
	if err != nil {
		fmt.Fprintln(os.Stderr, "soak run:", err)
		return 1
	}
	defer s.close() // also on a panic: stop the children
	ok, err := s.run(ctx)
	interrupted := ctx.Err() != nil
	s.close()
	stop() // a second Ctrl-C from here on ends the soak at once

	if sum, serr := summarizeFile(filepath.Join(s.out, "samples.csv"), 5*time.Minute, 2*time.Minute); serr != nil {
		fmt.Fprintln(os.Stderr, "soak run: summary:", serr)
	} else {
		fmt.Print("\n", sum)
		if werr := os.WriteFile(filepath.Join(s.out, "summary.txt"), []byte(sum), 0o644); werr != nil {
			fmt.Fprintln(os.Stderr, "soak run:", werr)
		}
	}
	switch {
	case interrupted:
		fmt.Printf("\ninterrupted; output in %s\n", s.out)
		return 130
	case err != nil:
		fmt.Fprintf(os.Stderr, "\nsoak run: %v; output in %s\n", err, s.out)
		return 1
	case !ok:
		fmt.Printf("\nFAIL: the emulator's totals differ (VERIFY DIFF lines in %s)\n", filepath.Join(s.out, "events.log"))
		return 1
	}
	fmt.Printf("\nPASS: exact totals in the emulator; output in %s\n", s.out)
	return 0
}

// ---------- simulated machines ----------

// machine is a simulated machine. Its state changes (a stop, a restart)
// wait until the previous change was surely seen by the agent (confirmed),
// so every stop the machine makes is one the agent can book.
type machine struct {
	id       string
	ua       bool  // read over OPC UA, else MQTT
	rollover int64 // the OPC UA counter wraps at this, 0: never
	lane     int   // >= 0: the OPC UA counter is element 2*lane+1 of the array node Lanes
	sp       bool  // a device of the Sparkplug B edge node (ua false)

	mu         sync.Mutex
	good       int64
	scrap      int64
	goodStart  int64 // good when the agent had seen the baseline
	scrapStart int64
	running    bool
	reason     string
	stops      int // stops ended (each is one downtime line in Odoo)
	changedAt  time.Time
	confirmed  bool
	holdUntil  time.Time
	// spStops is each stop of the machine (of every machine, for the side
	// by side printed when its lines differ), and for a Sparkplug device
	// what the edge node stored of it while it was cut off (its store and
	// forward).
	spStops []spStop
	// dbirths is the timestamp of each DBIRTH of a Sparkplug device sent
	// (the time the agent takes a stop the BIRTH found on from).
	dbirths []time.Time
}

// spStop is a stop of a Sparkplug device. A start or end the edge node
// stored has the time it stored it with (the one the agent is given).
type spStop struct {
	start, end               time.Time
	reason                   string
	startStored, endStored   bool
	startFlushed, endFlushed bool // sent after a BIRTH, as is_historical
	// births: when a DBIRTH gave the machine stopped after the stored
	// start (whether the agent heard it or not: the soak's monitor may not
	// yet count a connection of the agent that got it).
	births []time.Time
}

// beginStop and endStop note a machine's stop (begun with the reason
// set); call with mu held.
func (m *machine) beginStop(t time.Time) {
	m.spStops = append(m.spStops, spStop{start: t, reason: m.reason})
}

func (m *machine) endStop(t time.Time) {
	if len(m.spStops) > 0 && m.spStops[len(m.spStops)-1].end.IsZero() {
		m.spStops[len(m.spStops)-1].end = t
	}
}

type snap struct {
	good, scrap int64
	running     bool
	reason      string
	ts          time.Time
}

// source is how the agent reads the machine: "ua" (OPC UA), "mq" (MQTT
// JSON) or "sp" (Sparkplug B).
func (m *machine) source() string {
	switch {
	case m.ua:
		return "ua"
	case m.sp:
		return "sp"
	}
	return "mq"
}

func (m *machine) snapshot() snap {
	m.mu.Lock()
	defer m.mu.Unlock()
	return snap{m.good, m.scrap, m.running, m.reason, time.Now()}
}

// ---------- the soak ----------

type soak struct {
	opts    options
	out     string // absolute output directory
	exe     string // this binary, run again for the servers
	bin     string // absolute path of the agent binary
	start   time.Time
	cfgPath string
	cfgA    string
	cfgB    string // cfgA with a changed downtime map; SIGHUPs alternate
	listen  string
	dataDir string

	logMu   sync.Mutex
	events  io.Writer // events.log and stdout; nil once closed
	evFile  *os.File
	samples *os.File

	odoo     *odootest.Server
	ua       *server
	uaPort   int
	broker   *server
	brkPort  int
	pub      *mqtttest.Publisher
	edge     *edgeNode
	machines []*machine
	wcIDs    map[string]int64
	woIDs    map[string]int64

	agentMu    sync.Mutex
	agent      *process
	agentUp    atomic.Bool // false from just before a kill until the restart
	incarn     atomic.Int64
	producing  atomic.Bool
	odooDown   atomic.Bool
	odooOut    atomic.Int64
	hups       atomic.Int64
	agentKills atomic.Int64

	okMu    sync.Mutex
	okSince map[string]time.Time // by machine.source(): since when it was surely readable
	// The agent's connection to the broker as the monitor last saw it:
	// since when, and which (incarnation, sessions_created).
	mqConnSince time.Time
	mqConn      [2]int64
	// Stored values the edge node sent, to be seen delivered: the agent's
	// connection to the broker they went over must last 3 s more.
	flushNotes                   []flushNote
	histDelivered, histUncertain int

	closeOnce sync.Once
}

// logf writes one line to events.log and stdout, prefixed with the seconds
// since the start.
func (s *soak) logf(format string, a ...any) {
	s.logMu.Lock()
	defer s.logMu.Unlock()
	if s.events != nil {
		fmt.Fprintf(s.events, "%7.1f %s\n", time.Since(s.start).Seconds(), fmt.Sprintf(format, a...))
	}
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// prepareOut creates dir, or a new directory under os.TempDir if dir is
// empty, and refuses one that holds anything (an old buffer or log would
// spoil the run).
func prepareOut(dir string) (string, error) {
	if dir == "" {
		return os.MkdirTemp("", "plantedge-soak-")
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(abs, 0o755); err != nil {
		return "", err
	}
	ents, err := os.ReadDir(abs)
	if err != nil {
		return "", err
	}
	if len(ents) > 0 {
		return "", fmt.Errorf("-out %s is not empty: give a new directory", abs)
	}
	return abs, nil
}

// newSoak prepares the output directory and the emulator's data; it starts
// no process.
func newSoak(o options) (*soak, error) {
	out, err := prepareOut(o.out)
	if err != nil {
		return nil, err
	}
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	bin, err := filepath.Abs(o.bin)
	if err != nil {
		return nil, err
	}
	s := &soak{opts: o, out: out, exe: exe, bin: bin, start: time.Now(),
		cfgPath: filepath.Join(out, "plantedge.yaml"), dataDir: filepath.Join(out, "data"),
		wcIDs: map[string]int64{}, woIDs: map[string]int64{}, okSince: map[string]time.Time{}}
	if s.evFile, err = os.Create(filepath.Join(out, "events.log")); err != nil {
		return nil, err
	}
	s.events = io.MultiWriter(s.evFile, os.Stdout)
	if s.samples, err = os.Create(filepath.Join(out, "samples.csv")); err != nil {
		s.evFile.Close()
		return nil, err
	}
	s.writeSample(sampleHeader + "\n")
	ports := []int{o.ports, o.ports + 1, o.ports + 2}
	for i := range ports {
		if o.ports != 0 {
			continue
		}
		if ports[i], err = freePort(); err != nil {
			s.evFile.Close()
			s.samples.Close()
			return nil, err
		}
	}
	s.listen = fmt.Sprintf("127.0.0.1:%d", ports[0])
	s.uaPort, s.brkPort = ports[1], ports[2]
	s.ua = &server{name: "opcua", sub: "uaserver", exe: exe, logDir: out}
	s.broker = &server{name: "broker", sub: "broker", exe: exe, logDir: out}
	s.pub = mqtttest.NewPublisher(fmt.Sprintf("tcp://127.0.0.1:%d", s.brkPort), "soak-sim")

	s.odoo = odootest.New(odootest.Options{Version: o.version})
	product := s.odoo.AddProduct("Bracket")
	var devs []*machine
	for i := 0; i < o.nUA+o.nMQ+o.nArr+o.nSP; i++ {
		m := &machine{running: true, confirmed: true, lane: -1}
		switch {
		case i >= o.nUA+o.nMQ+o.nArr:
			m.id, m.sp = fmt.Sprintf("sp-%02d", i+1), true
			m.good = int64(700 * i)
			devs = append(devs, m)
		case i >= o.nUA+o.nMQ:
			m.id, m.ua, m.lane = fmt.Sprintf("ar-%02d", i+1), true, i-o.nUA-o.nMQ
			m.good = int64(300 * i)
		case i < o.nUA:
			m.id, m.ua = fmt.Sprintf("ua-%02d", i+1), true
			if i == o.nUA-1 {
				m.rollover = 65536
				m.good = 65536 - 3000 // wraps some minutes in
			} else {
				m.good = int64(1000 * (i + 1))
			}
		default:
			m.id = fmt.Sprintf("mq-%02d", i+1)
			m.good = int64(500 * i)
		}
		s.machines = append(s.machines, m)
		wc := s.odoo.AddWorkcenter("WC-"+strings.ToUpper(m.id), m.id)
		mo := s.odoo.AddProduction(fmt.Sprintf("WH/MO/%05d", i+1), product, 1e6)
		s.wcIDs[m.id] = wc
		s.woIDs[m.id] = s.odoo.AddWorkorder(mo, wc, "WO "+m.id, "progress")
	}
	s.edge = newEdgeNode(fmt.Sprintf("tcp://127.0.0.1:%d", s.brkPort), devs, rand.New(rand.NewPCG(o.seed, 0x5b)), s.logf)
	s.edge.history, s.edge.hostReady, s.edge.onFlush = o.spHistory, s.spHostReady, s.noteFlush
	_, key := s.odoo.AddUser("plantedge-bot")
	if err := os.WriteFile(filepath.Join(out, "odoo-api-key"), []byte(key), 0o600); err != nil {
		s.evFile.Close()
		s.samples.Close()
		return nil, err
	}
	return s, nil
}

// close stops the agent (SIGTERM, then SIGKILL), the servers and the
// emulator, and closes the files. Safe to call more than once.
func (s *soak) close() {
	s.closeOnce.Do(func() {
		s.agentMu.Lock()
		if s.agent != nil && !s.agent.exited() {
			_ = s.agent.stop(syscall.SIGTERM, stopGrace)
		}
		s.agentMu.Unlock()
		s.edge.close()
		for _, c := range []*server{s.ua, s.broker} {
			c.mu.Lock()
			c.stop(syscall.SIGKILL)
			c.mu.Unlock()
		}
		s.pub.Close()
		s.odoo.SetDown(false)
		s.odoo.Close()
		s.logMu.Lock()
		s.events = nil
		s.logMu.Unlock()
		_ = s.evFile.Close()
		_ = s.samples.Close()
	})
}

// run is the soak: start-up, chaos for opts.dur, wind-down, the checks. It
// returns whether both exact checks passed, or why the run could not be
// done.
func (s *soak) run(ctx context.Context) (bool, error) {
	ctx, abort := context.WithCancelCause(ctx)
	defer abort(nil)
	rng := rand.New(rand.NewPCG(s.opts.seed, uint64(s.opts.version)))
	var err error

	url := ""
	if s.opts.ports != 0 {
		if url, err = s.odoo.StartOn(fmt.Sprintf("127.0.0.1:%d", s.opts.ports+3)); err != nil {
			return false, fmt.Errorf("odoo emulator: %w", err)
		}
	} else {
		url = s.odoo.Start()
	}
	if err := s.startUA(); err != nil {
		return false, err
	}
	s.broker.mu.Lock()
	err = s.broker.start([]string{strconv.Itoa(s.brkPort)})
	s.broker.mu.Unlock()
	if err != nil {
		return false, err
	}
	s.cfgA, s.cfgB = s.config("A"), s.config("B")
	if err := writeFileAtomic(s.cfgPath, []byte(s.cfgA)); err != nil {
		return false, err
	}
	s.logf("odoo %d at %s, opcua :%d (ns %d), broker :%d, agent listen %s, output %s",
		s.opts.version, url, s.uaPort, s.ua.ns, s.brkPort, s.listen, s.out)
	if err := s.startAgent(); err != nil {
		return false, err
	}

	// The machines and the monitor run until the end.
	bg, stopBG := context.WithCancel(ctx)
	var bgWG sync.WaitGroup
	defer func() { stopBG(); bgWG.Wait() }()
	for _, m := range s.machines {
		r := rand.New(rand.NewPCG(rng.Uint64(), rng.Uint64()))
		bgWG.Go(func() { s.machineLoop(bg, m, r) })
	}
	bgWG.Go(func() { s.monitor(bg) })

	if err := s.waitBaselines(ctx, 2*time.Minute); err != nil {
		return false, err
	}
	s.logf("baselines seen; producing")
	s.producing.Store(true)

	sctx, stopSampler := context.WithCancel(ctx)
	samplerDone := make(chan struct{})
	go func() { s.sampler(sctx); close(samplerDone) }()
	defer func() { stopSampler(); <-samplerDone }()

	chaosStart := time.Now()
	cctx, stopChaos := context.WithTimeout(ctx, s.opts.dur)
	var r [4]*rand.Rand // drawn here: rng is not safe for concurrent use
	for i := range r {
		r[i] = rand.New(rand.NewPCG(rng.Uint64(), uint64(i+1)))
	}
	var wg sync.WaitGroup
	wg.Go(func() { s.chaosUA(cctx, ctx, abort, r[0]) })
	wg.Go(func() { s.chaosBroker(cctx, ctx, abort, r[1]) })
	wg.Go(func() { s.chaosOdoo(cctx, ctx, r[2]) })
	wg.Go(func() { s.chaosHUP(cctx, r[3]) })
	wg.Go(func() { s.chaosAgent(cctx, abort, chaosStart) })
	<-cctx.Done()
	stopChaos()
	wg.Wait()
	if ctx.Err() != nil {
		return false, context.Cause(ctx)
	}
	s.logf("chaos over: opcua restarts %d, broker restarts %d, odoo outages %d, HUPs %d, agent kills %d",
		s.ua.restarts.Load(), s.broker.restarts.Load(), s.odooOut.Load(), s.hups.Load(), s.agentKills.Load())
	s.logEdge()

	s.windDown(ctx, 3*time.Minute)
	if !sleepCtx(ctx, 5*time.Second) {
		return false, context.Cause(ctx)
	}
	s.flush(ctx)
	ok := s.verify(ctx, time.Minute)
	// Idle a while to see memory settle and nothing booked twice late.
	if !sleepCtx(ctx, s.opts.settle) {
		return false, context.Cause(ctx)
	}
	ok = s.verify(ctx, 0) && ok
	s.logEdge()
	stopSampler()
	<-samplerDone
	s.sampleOnce(ctx)
	s.writeFinal(ctx)

	s.agentMu.Lock()
	p := s.agent
	s.agentMu.Unlock()
	if err := p.stop(syscall.SIGTERM, 30*time.Second); err != nil {
		s.logf("WARN agent pid %d did not exit cleanly on SIGTERM: %v", p.pid(), err)
	}
	if ctx.Err() != nil {
		return false, context.Cause(ctx)
	}
	return ok, nil
}

// waitBaselines waits until the agent reports a state for every machine:
// the first counter value it sees is its baseline, so production starts
// only then.
func (s *soak) waitBaselines(ctx context.Context, limit time.Duration) error {
	api := agent.NewAPIClient(s.listen)
	deadline := time.Now().Add(limit)
	for {
		sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		st, err := api.Status(sctx)
		cancel()
		known := 0
		if err == nil {
			for _, m := range st.Machines {
				if m.State != "unknown" {
					known++
				}
			}
		}
		if known == len(s.machines) {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the agent saw %d of %d machines in %v (last status error: %v); see agent.log", known, len(s.machines), limit, err)
		}
		if !sleepCtx(ctx, 200*time.Millisecond) {
			return context.Cause(ctx)
		}
	}
	if !sleepCtx(ctx, time.Second) {
		return context.Cause(ctx)
	}
	for _, m := range s.machines {
		m.mu.Lock()
		m.goodStart, m.scrapStart = m.good, m.scrap
		m.mu.Unlock()
	}
	return nil
}

// windDown stops production and ends every open stop, and waits (up to
// limit) until each machine's last change was surely seen.
func (s *soak) windDown(ctx context.Context, limit time.Duration) {
	s.producing.Store(false)
	deadline := time.Now().Add(limit)
	for _, m := range s.machines {
		if m.sp {
			// A Sparkplug device's last values, too, must have been
			// readable: after the agent's last (re)connection, DATA by
			// alias waits for the edge node's next BIRTH.
			m.mu.Lock()
			m.changedAt, m.confirmed = time.Now(), false
			m.mu.Unlock()
		}
	}
	for _, m := range s.machines {
		for {
			m.mu.Lock()
			done := m.confirmed
			if done && !m.running {
				m.running, m.reason, m.stops = true, "", m.stops+1
				m.endStop(time.Now())
				m.changedAt, m.confirmed, done = time.Now(), false, false
			}
			m.mu.Unlock()
			if done {
				break
			}
			if time.Now().After(deadline) {
				s.logf("WARN %s: last change not seen by the agent within %v", m.id, limit)
				break
			}
			if !sleepCtx(ctx, 200*time.Millisecond) {
				return
			}
		}
	}
	for s.edge.pending() > 0 {
		if time.Now().After(deadline) {
			s.logf("WARN the Sparkplug edge node still holds %d stored changes after %v", s.edge.pending(), limit)
			break
		}
		if !sleepCtx(ctx, 200*time.Millisecond) {
			return
		}
	}
	if s.opts.nSP > 0 && s.opts.spHistory {
		// Its last flush seen delivered (checkFlushes after 3 s).
		sleepCtx(ctx, 3500*time.Millisecond)
	}
	s.logf("all machines running, final values confirmed")
}

// flush runs "plantedge flush", which waits until the buffer is drained.
func (s *soak) flush(ctx context.Context) {
	fctx, cancel := context.WithTimeout(ctx, 6*time.Minute)
	defer cancel()
	t0 := time.Now()
	out, err := command(fctx, s.bin, "flush", "-c", s.cfgPath, "--timeout", "5m").CombinedOutput()
	if werr := os.WriteFile(filepath.Join(s.out, "flush.out"), out, 0o644); werr != nil {
		s.logf("write flush.out: %v", werr)
	}
	s.logf("flush: exit %v after %v; last line: %s", err, time.Since(t0).Round(time.Millisecond), lastLine(string(out)))
}

// writeFinal saves the agent's status and its plantedge_* series.
func (s *soak) writeFinal(ctx context.Context) {
	st, err := s.statusJSON(ctx)
	if err != nil {
		s.logf("final status: %v", err)
	}
	b, _ := json.MarshalIndent(st, "", "  ")
	if err := os.WriteFile(filepath.Join(s.out, "final-status.json"), b, 0o644); err != nil {
		s.logf("write final-status.json: %v", err)
	}
	var lines []string
	for line := range strings.SplitSeq(s.scrape(ctx), "\n") {
		if strings.HasPrefix(line, "plantedge_") {
			lines = append(lines, line)
		}
	}
	if err := os.WriteFile(filepath.Join(s.out, "final-metrics.txt"), []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		s.logf("write final-metrics.txt: %v", err)
	}
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		return s[i+1:]
	}
	return s
}

// writeFileAtomic replaces path so that a reader sees the old or the new
// content, never a part.
func writeFileAtomic(path string, data []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// ---------- the servers and the machines ----------

// uaVars is the OPC UA variables' current values, for a (re)start.
func (s *soak) uaVars() string {
	vars := map[string]any{}
	for _, m := range s.machines {
		if !m.ua {
			continue
		}
		sn := m.snapshot()
		g := sn.good
		if m.rollover > 0 {
			g %= m.rollover
		}
		if m.lane < 0 {
			vars[m.id+".Good"] = g
		}
		vars[m.id+".Running"] = sn.running
	}
	if s.opts.nArr > 0 {
		vars["Lanes"] = s.lanes()
	}
	b, _ := json.Marshal(vars)
	return string(b)
}

// lanes is the array node Lanes: element 2*lane+1 is the good count of the
// machine with that lane, element 2*lane a lane no machine reads (that
// counts too). Call with ua.mu held, so that the arrays go out in the order
// their values were read (a counter must not go back).
func (s *soak) lanes() []int64 {
	out := make([]int64, 2*s.opts.nArr)
	for _, m := range s.machines {
		if m.lane >= 0 {
			g := m.snapshot().good
			out[2*m.lane], out[2*m.lane+1] = 3*g+7, g
		}
	}
	return out
}

func (s *soak) startUA() error {
	s.ua.mu.Lock()
	defer s.ua.mu.Unlock()
	return s.ua.start([]string{strconv.Itoa(s.uaPort), s.uaVars()})
}

func (s *soak) publishMachine(m *machine, sn snap) {
	if m.sp {
		s.edge.publish(m)
		return
	}
	if m.ua {
		g := sn.good
		if m.rollover > 0 {
			g %= m.rollover
		}
		r := 0
		if sn.running {
			r = 1
		}
		s.ua.mu.Lock()
		if m.lane >= 0 {
			var b strings.Builder
			for i, v := range s.lanes() {
				if i > 0 {
					b.WriteByte(',')
				}
				b.WriteString(strconv.FormatInt(v, 10))
			}
			s.ua.send("a Lanes " + b.String())
		} else {
			s.ua.send(fmt.Sprintf("i %s.Good %d", m.id, g))
		}
		s.ua.send(fmt.Sprintf("b %s.Running %d", m.id, r))
		s.ua.mu.Unlock()
		return
	}
	b, _ := json.Marshal(map[string]any{"good": sn.good, "scrap": sn.scrap, "running": sn.running, "reason": sn.reason,
		"ts": sn.ts.UTC().Format("2006-01-02T15:04:05.000Z07:00")})
	s.pub.Publish("plant/"+m.id, b)
}

// machineLoop makes parts every 100-500 ms while producing, stops about
// every 250 ticks for 2-10 s (MQTT machines with a reason), and publishes
// its values each tick.
func (s *soak) machineLoop(ctx context.Context, m *machine, rng *rand.Rand) {
	for sleepCtx(ctx, time.Duration(100+rng.IntN(400))*time.Millisecond) {
		now := time.Now()
		m.mu.Lock()
		if s.producing.Load() {
			if m.running {
				m.good += int64(1 + rng.IntN(2))
				if !m.ua && rng.IntN(20) == 0 {
					m.scrap++
				}
				// A Sparkplug device whose edge node holds stored changes
				// stops about every 40 ticks: its outages are short.
				every := 250
				if m.sp && s.edge.storing.Load() {
					every = 40
				}
				if m.confirmed && now.After(m.holdUntil) && rng.IntN(every) == 0 {
					m.running = false
					m.reason = []string{"JAM", "SETUP"}[rng.IntN(2)]
					m.beginStop(now)
					m.changedAt, m.confirmed = now, false
					m.holdUntil = now.Add(time.Duration(2000+rng.IntN(8000)) * time.Millisecond)
				}
			} else if m.confirmed && now.After(m.holdUntil) {
				m.running = true
				m.reason = ""
				m.stops++
				m.endStop(now)
				m.changedAt, m.confirmed = now, false
				m.holdUntil = now.Add(5 * time.Second)
			}
		}
		m.mu.Unlock()
		s.publishMachine(m, m.snapshot())
	}
}

// monitor decides when a machine's state change was surely seen: its source
// was up, the agent alive and reporting the source connected (and for MQTT
// the simulator's publishes acknowledged) for 2 s after the change.
func (s *soak) monitor(ctx context.Context) {
	api := agent.NewAPIClient(s.listen)
	for sleepCtx(ctx, 200*time.Millisecond) {
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		st, err := api.Status(cctx)
		cancel()
		conn := map[string]bool{}
		if err == nil && s.agentUp.Load() {
			for _, src := range st.Sources {
				conn[src.Name] = src.State == "connected"
			}
		}
		now := time.Now()
		uaOK := conn["line1"] && s.ua.up.Load()
		brokerOK := conn["broker"] && s.broker.up.Load()
		mqOK := brokerOK && s.pub.OK()
		s.okMu.Lock()
		for k, ok := range map[string]bool{"ua": uaOK, "mq": mqOK} {
			if !ok {
				s.okSince[k] = time.Time{}
			} else if s.okSince[k].IsZero() {
				s.okSince[k] = now
			}
		}
		// Sparkplug DATA by alias is read only with a BIRTH the agent got
		// in its current connection to the broker: readable since the
		// edge node's first complete BIRTH after the monitor saw that
		// connection (a new incarnation or session is a new one).
		var sessions int64 = -1
		for _, src := range st.Sources {
			if src.Name == "broker" {
				sessions = int64(src.Sessions)
			}
		}
		cur := [2]int64{s.incarn.Load(), sessions}
		switch {
		case !brokerOK:
			s.mqConnSince = time.Time{}
		case s.mqConnSince.IsZero() || cur != s.mqConn:
			s.mqConnSince, s.mqConn = now, cur
		}
		if b := s.edge.readySince(); !s.mqConnSince.IsZero() && b.After(s.mqConnSince) {
			s.okSince["sp"] = b
		} else {
			s.okSince["sp"] = time.Time{}
		}
		s.checkFlushes(now)
		since := maps.Clone(s.okSince)
		s.okMu.Unlock()
		for _, m := range s.machines {
			m.mu.Lock()
			ok0 := since[m.source()]
			if !m.confirmed && !ok0.IsZero() {
				from := ok0
				if m.changedAt.After(from) {
					from = m.changedAt
				}
				if now.Sub(from) >= 2*time.Second {
					m.confirmed = true
				}
			}
			m.mu.Unlock()
		}
	}
}

type flushNote struct {
	at, since time.Time
	values    int
}

// spHostReady says whether the agent surely listens to the broker: alive,
// its connection seen for 2 s (Ignition's primary host online).
func (s *soak) spHostReady() bool {
	s.okMu.Lock()
	defer s.okMu.Unlock()
	return s.agentUp.Load() && !s.mqConnSince.IsZero() && time.Since(s.mqConnSince) >= 2*time.Second
}

// noteFlush notes stored values sent over the agent's current connection.
func (s *soak) noteFlush(values int) {
	s.okMu.Lock()
	defer s.okMu.Unlock()
	s.flushNotes = append(s.flushNotes, flushNote{at: time.Now(), since: s.mqConnSince, values: values})
}

// checkFlushes, with okMu held, decides of each flush 3 s old whether the
// agent's connection lasted: else the stored values may be lost to it.
func (s *soak) checkFlushes(now time.Time) {
	for len(s.flushNotes) > 0 && now.Sub(s.flushNotes[0].at) >= 3*time.Second {
		f := s.flushNotes[0]
		s.flushNotes = s.flushNotes[1:]
		if !f.since.IsZero() && f.since.Equal(s.mqConnSince) {
			s.histDelivered += f.values
		} else {
			s.histUncertain += f.values
			s.logf("WARN %d stored Sparkplug values sent at %s: the agent's connection to the broker did not last 3 s more, they may be lost to it", f.values, f.at.Format("15:04:05.000"))
		}
	}
}

// ---------- the agent ----------

func (s *soak) startAgent() error {
	s.agentMu.Lock()
	defer s.agentMu.Unlock()
	p, err := startProcess(s.bin, []string{"run", "-c", s.cfgPath}, filepath.Join(s.out, "agent.log"), nil, false)
	if err != nil {
		return fmt.Errorf("start agent: %w", err)
	}
	s.agent = p
	n := s.incarn.Add(1)
	s.agentUp.Store(true)
	s.logf("agent started pid %d (incarnation %d)", p.pid(), n)
	go func() {
		<-p.done
		s.logf("agent pid %d exited: %v", p.pid(), p.err)
	}()
	return nil
}

func (s *soak) killAgent() {
	s.agentMu.Lock()
	defer s.agentMu.Unlock()
	s.agentUp.Store(false)
	s.logf("SIGKILL agent pid %d", s.agent.pid())
	_ = s.agent.stop(syscall.SIGKILL, stopGrace)
}

// pid is the running agent's pid, 0 while there is none.
func (s *soak) pid() int {
	s.agentMu.Lock()
	defer s.agentMu.Unlock()
	if s.agent == nil || !s.agentUp.Load() || s.agent.exited() {
		return 0
	}
	return s.agent.pid()
}

// hup switches the config between A and B and sends SIGHUP.
func (s *soak) hup() {
	s.agentMu.Lock()
	defer s.agentMu.Unlock()
	n := s.hups.Add(1)
	src, name := s.cfgA, "A"
	if n%2 == 1 {
		src, name = s.cfgB, "B"
	}
	if err := writeFileAtomic(s.cfgPath, []byte(src)); err != nil {
		s.logf("SIGHUP %d: write config: %v", n, err)
		return
	}
	if err := s.agent.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		s.logf("SIGHUP %d (config %s): %v", n, name, err)
		return
	}
	s.logf("SIGHUP %d (config %s)", n, name)
}

// config is the agent's config; variant B adds a reason to the downtime map.
func (s *soak) config(variant string) string {
	var b strings.Builder
	fmt.Fprintf(&b, `site: soak-%d
data_dir: %q
listen: %q
log: { level: info }
buffer:
  max_bytes: 64MiB
odoo:
  url: %q
  database: odoo
  username: plantedge-bot
  api_key_file: %q
  timeout: 5s
forward:
  interval: 500ms
  backoff_max: 10s
opcua:
  - name: line1
    endpoint: "opc.tcp://127.0.0.1:%d"
    publishing_interval: 100ms
    sampling_interval: 50ms
    backoff_max: 5s
mqtt:
  - name: broker
    url: "tcp://127.0.0.1:%d"
    client_id: plantedge-soak-%d
    backoff_max: 5s
`, s.opts.version, s.dataDir, s.listen, s.odoo.URL(), filepath.Join(s.out, "odoo-api-key"), s.uaPort, s.brkPort, s.opts.version)
	if variant == "B" && s.opts.nSP > 0 {
		// The agent asks the edge node for its BIRTH while config B is
		// in force; the reloads switch it on and off.
		b.WriteString("    sparkplug_rebirth: true\n")
	} else if s.opts.nSP > 0 {
		// The broker is Sparkplug aware: while config A is in force the
		// agent reads its BIRTH certificates (each reload to or from B
		// connects the source again).
		b.WriteString("    sparkplug_certificates: true\n")
	}
	b.WriteString("machines:\n")
	for _, m := range s.machines {
		fmt.Fprintf(&b, "  - id: %s\n    workcenter: WC-%s\n", m.id, strings.ToUpper(m.id))
		if m.sp {
			t := spTopic("DDATA", m.id)
			for _, sig := range []struct{ key, field string }{{"good_count", spGood}, {"scrap_count", spScrap}, {"running", spRunning}} {
				fmt.Fprintf(&b, "    %s: { mqtt: { broker: broker, format: sparkplug_b, topic: %s, field: %s } }\n", sig.key, t, sig.field)
			}
			continue
		}
		if m.lane >= 0 {
			fmt.Fprintf(&b, "    good_count: { opcua: { server: line1, node: \"ns=%d;s=Lanes\", index: %d } }\n", s.ua.ns, 2*m.lane+1)
			fmt.Fprintf(&b, "    running: { opcua: { server: line1, node: \"ns=%d;s=%s.Running\" } }\n", s.ua.ns, m.id)
			continue
		}
		if m.ua {
			fmt.Fprintf(&b, "    good_count: { opcua: { server: line1, node: \"ns=%d;s=%s.Good\" }", s.ua.ns, m.id)
			if m.rollover > 0 {
				fmt.Fprintf(&b, ", rollover: %d", m.rollover)
			}
			b.WriteString(" }\n")
			fmt.Fprintf(&b, "    running: { opcua: { server: line1, node: \"ns=%d;s=%s.Running\" } }\n", s.ua.ns, m.id)
			continue
		}
		t := "plant/" + m.id
		fmt.Fprintf(&b, "    good_count: { mqtt: { broker: broker, topic: %s, field: good, timestamp_field: ts } }\n", t)
		fmt.Fprintf(&b, "    scrap_count: { mqtt: { broker: broker, topic: %s, field: scrap, timestamp_field: ts } }\n", t)
		fmt.Fprintf(&b, "    running: { mqtt: { broker: broker, topic: %s, field: running, timestamp_field: ts } }\n", t)
		fmt.Fprintf(&b, "    downtime_reason:\n      mqtt: { broker: broker, topic: %s, field: reason, timestamp_field: ts }\n", t)
		if variant == "B" {
			b.WriteString("      map: { JAM: Equipment Failure, SETUP: Setup and Adjustments, X99: Equipment Failure }\n")
		} else {
			b.WriteString("      map: { JAM: Equipment Failure, SETUP: Setup and Adjustments }\n")
		}
	}
	return b.String()
}

// ---------- chaos ----------
//
// Each chaos loop stops when cctx (the chaos phase) ends, but finishes an
// outage it started, unless ctx (the whole run) ends too. A server that
// cannot be restarted aborts the run.

const restartAttempts = 10

// restart starts c again, retrying each second; abort ends the run if it
// cannot.
func (s *soak) restart(ctx context.Context, abort context.CancelCauseFunc, c *server, start func() error) {
	for attempt := 1; ; attempt++ {
		err := start()
		if err == nil {
			s.logf("%s up", c.name)
			return
		}
		s.logf("%s start: %v", c.name, err)
		if attempt == restartAttempts {
			abort(fmt.Errorf("%s did not start in %d attempts: %w", c.name, attempt, err))
			return
		}
		if !sleepCtx(ctx, time.Second) {
			return
		}
	}
}

// chaosUA SIGKILLs the OPC UA server every 30-60 s, for 1-3 s (one time in
// four for 10-15 s).
func (s *soak) chaosUA(cctx, ctx context.Context, abort context.CancelCauseFunc, rng *rand.Rand) {
	for sleepCtx(cctx, time.Duration(30+rng.IntN(31))*time.Second) {
		down := time.Duration(1000+rng.IntN(2000)) * time.Millisecond
		if rng.IntN(4) == 0 {
			down = time.Duration(10+rng.IntN(6)) * time.Second
		}
		s.ua.mu.Lock()
		s.ua.stop(syscall.SIGKILL)
		s.ua.mu.Unlock()
		n := s.ua.restarts.Add(1)
		s.logf("opcua server killed (#%d), down %v", n, down)
		if !sleepCtx(ctx, down) {
			return
		}
		s.restart(ctx, abort, s.ua, s.startUA)
	}
}

// chaosBroker stops the MQTT broker (SIGKILL or SIGTERM) every 45-90 s, for
// 1-5 s (one time in five for 10 s).
func (s *soak) chaosBroker(cctx, ctx context.Context, abort context.CancelCauseFunc, rng *rand.Rand) {
	for sleepCtx(cctx, time.Duration(45+rng.IntN(46))*time.Second) {
		down := time.Duration(1000+rng.IntN(4000)) * time.Millisecond
		if rng.IntN(5) == 0 {
			down = 10 * time.Second
		}
		sig := syscall.SIGKILL
		if rng.IntN(2) == 0 {
			sig = syscall.SIGTERM
		}
		s.broker.mu.Lock()
		s.broker.stop(sig)
		s.broker.mu.Unlock()
		n := s.broker.restarts.Add(1)
		s.logf("mqtt broker stopped with %v (#%d), down %v", sig, n, down)
		if !sleepCtx(ctx, down) {
			return
		}
		s.restart(ctx, abort, s.broker, func() error {
			s.broker.mu.Lock()
			defer s.broker.mu.Unlock()
			return s.broker.start([]string{strconv.Itoa(s.brkPort)})
		})
	}
}

// chaosOdoo takes the emulator down (every connection dropped) 150 s in,
// then every 4-6 min, for 1-3 min.
func (s *soak) chaosOdoo(cctx, ctx context.Context, rng *rand.Rand) {
	wait := 150 * time.Second
	for sleepCtx(cctx, wait) {
		wait = time.Duration(240+rng.IntN(120)) * time.Second
		down := time.Duration(60+rng.IntN(121)) * time.Second
		s.odoo.SetDown(true)
		s.odooDown.Store(true)
		n := s.odooOut.Add(1)
		s.logf("odoo down (#%d) for %v", n, down)
		sleepCtx(ctx, down)
		s.odoo.SetDown(false)
		s.odooDown.Store(false)
		s.logf("odoo up")
	}
}

// chaosHUP reloads the agent every 150-250 s.
func (s *soak) chaosHUP(cctx context.Context, rng *rand.Rand) {
	for sleepCtx(cctx, time.Duration(150+rng.IntN(100))*time.Second) {
		s.hup()
	}
}

// chaosAgent SIGKILLs the agent at 30% and 70% of the chaos phase and
// starts it again 3 s later.
func (s *soak) chaosAgent(cctx context.Context, abort context.CancelCauseFunc, from time.Time) {
	for _, at := range []float64{0.3, 0.7} {
		if !sleepCtx(cctx, time.Until(from.Add(time.Duration(float64(s.opts.dur)*at)))) {
			return
		}
		s.killAgent()
		s.agentKills.Add(1)
		time.Sleep(3 * time.Second)
		if err := s.startAgent(); err != nil {
			abort(err)
			return
		}
	}
}

// ---------- sampling ----------

// sampleHeader is samples.csv's header. Memory from /proc/<pid>/status is in
// kB; -1 while the agent is down. goroutines, heap_* (bytes) and
// samples_total come from the agent's /metrics, empty when it did not
// answer; pending, dead_letters, *_sessions and odoo_state from "plantedge
// status --json", -1 or ? when it failed. The *_restarts, odoo_outages and
// hups columns count the chaos so far; odoo_down, ua_up and broker_up are
// 0/1.
const sampleHeader = "t_s,incarnation,pid,vmrss_kb,rssanon_kb,rssfile_kb,vmhwm_kb,fds,threads,goroutines,heap_inuse,heap_alloc,buffer_file,pending,dead_letters,ua_restarts,broker_restarts,odoo_outages,hups,odoo_down,ua_up,broker_up,ua_sessions,mqtt_sessions,samples_total,odoo_state"

func (s *soak) sampler(ctx context.Context) {
	tick := time.NewTicker(10 * time.Second)
	defer tick.Stop()
	for {
		s.sampleOnce(ctx)
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

func (s *soak) writeSample(line string) {
	if _, err := s.samples.WriteString(line); err != nil {
		s.logf("samples.csv: %v", err)
	}
}

// procStatus reads the kB fields (and Threads) of /proc/<pid>/status; -1
// for each when there is no such process.
func procStatus(pid int, fields ...string) []int64 {
	out := make([]int64, len(fields))
	for i := range out {
		out[i] = -1
	}
	if pid <= 0 {
		return out
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return out
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		name, val, ok := strings.Cut(line, ":")
		if i := slices.Index(fields, name); ok && i >= 0 {
			if f := strings.Fields(val); len(f) > 0 {
				out[i], _ = strconv.ParseInt(f[0], 10, 64)
			}
		}
	}
	return out
}

// scrape fetches the agent's /metrics text; empty when it did not answer.
func (s *soak) scrape(ctx context.Context) string {
	mctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(mctx, http.MethodGet, "http://"+s.listen+"/metrics", nil)
	if err != nil {
		return ""
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil || resp.StatusCode != http.StatusOK {
		return ""
	}
	return string(body)
}

// metrics reads the agent's /metrics, summing each metric's series.
func (s *soak) metrics(ctx context.Context) map[string]float64 {
	out := map[string]float64{}
	for line := range strings.SplitSeq(s.scrape(ctx), "\n") {
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		name := line[:i]
		if j := strings.IndexByte(name, '{'); j >= 0 {
			name = name[:j]
		}
		if v, err := strconv.ParseFloat(line[i+1:], 64); err == nil {
			out[name] += v
		}
	}
	return out
}

// statusJSON runs "plantedge status --json", as an operator would.
func (s *soak) statusJSON(ctx context.Context) (agent.Status, error) {
	sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	out, err := command(sctx, s.bin, "status", "-c", s.cfgPath, "--json").Output()
	var st agent.Status
	if jerr := json.Unmarshal(out, &st); jerr != nil && err == nil {
		err = jerr
	}
	return st, err
}

func (s *soak) sampleOnce(ctx context.Context) {
	pid := s.pid()
	fds := -1
	if pid > 0 {
		if ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid)); err == nil {
			fds = len(ents)
		}
	}
	proc := procStatus(pid, "VmRSS", "RssAnon", "RssFile", "VmHWM", "Threads")
	met := s.metrics(ctx)
	var fsize int64 = -1
	if fi, err := os.Stat(filepath.Join(s.dataDir, "buffer.db")); err == nil {
		fsize = fi.Size()
	}
	st, err := s.statusJSON(ctx)
	pending, dls := -1, -1
	var uaSess, mqSess uint64
	odooState := "?"
	if err == nil || st.Site != "" {
		pending, dls = st.Buffer.Pending, st.Buffer.DeadLetters
		for _, src := range st.Sources {
			if src.Name == "line1" {
				uaSess = src.Sessions
			} else {
				mqSess = src.Sessions
			}
		}
		odooState = st.Odoo.State
	}
	b2i := func(b bool) int {
		if b {
			return 1
		}
		return 0
	}
	g := func(k string) string {
		v, ok := met[k]
		if !ok {
			return ""
		}
		return strconv.FormatFloat(v, 'f', -1, 64)
	}
	s.writeSample(fmt.Sprintf("%.0f,%d,%d,%d,%d,%d,%d,%d,%d,%s,%s,%s,%d,%d,%d,%d,%d,%d,%d,%d,%d,%d,%d,%d,%s,%s\n",
		time.Since(s.start).Seconds(), s.incarn.Load(), pid,
		proc[0], proc[1], proc[2], proc[3], fds, proc[4],
		g("go_goroutines"), g("go_memstats_heap_inuse_bytes"), g("go_memstats_heap_alloc_bytes"),
		fsize, pending, dls, s.ua.restarts.Load(), s.broker.restarts.Load(), s.odooOut.Load(), s.hups.Load(),
		b2i(s.odooDown.Load()), b2i(s.ua.up.Load()), b2i(s.broker.up.Load()), uaSess, mqSess, g("plantedge_samples_total"), odooState))
	_ = s.samples.Sync()
}

// ---------- the check ----------

// logEdge logs what the Sparkplug edge node did, and what the agent counted
// of it.
func (s *soak) logEdge() {
	if s.opts.nSP == 0 {
		return
	}
	met := s.metrics(context.Background())
	s.logf("sparkplug edge node: %d connections (bdSeq %d), %d BIRTHs, %d DATA by alias, %d by name, %d cut connections, %d rebirth requests received; agent: unknown aliases %v, seq gaps %v, rebirth requests %v, certificates read %v (this agent run's)",
		s.edge.sessions.Load(), s.edge.session(), s.edge.births.Load(), s.edge.byAlias.Load(), s.edge.byName.Load(), s.edge.crashes.Load(), s.edge.requests.Load(),
		met["plantedge_sparkplug_unknown_aliases_total"], met["plantedge_sparkplug_seq_gaps_total"], met["plantedge_sparkplug_rebirth_requests_total"], met["plantedge_sparkplug_certificates_total"])
	if !s.opts.spHistory {
		return
	}
	e := s.edge
	s.okMu.Lock()
	del, unc := s.histDelivered, s.histUncertain
	s.okMu.Unlock()
	s.logf("sparkplug store and forward: stored %d values (%d stops, %d runs; %d changes not stored, no BIRTH yet), %d still held; sent %d values (%d stops, %d runs) in %d historical DDATA after %d BIRTHs; seen delivered %d, uncertain %d; agent: historical messages %v (this agent run's)",
		e.storedValues.Load(), e.storedStops.Load(), e.storedRuns.Load(), e.storeDropped.Load(), e.pending(),
		e.histValues.Load(), e.histStops.Load(), e.histRuns.Load(), e.histMessages.Load(), e.flushes.Load(), del, unc,
		met["plantedge_sparkplug_historical_messages_total"])
}

// verify compares, every second for up to wait, what each machine made with
// what the emulator holds, and logs the result (VERIFY lines).
func (s *soak) verify(ctx context.Context, wait time.Duration) bool {
	deadline := time.Now().Add(wait)
	for {
		diffs, report := s.compare()
		if len(diffs) == 0 || time.Now().After(deadline) || ctx.Err() != nil {
			for _, r := range report {
				s.logf("VERIFY %s", r)
			}
			if len(diffs) == 0 {
				s.logf("VERIFY exact: all machines match")
			}
			for _, d := range diffs {
				s.logf("VERIFY DIFF %s", d)
			}
			return len(diffs) == 0
		}
		sleepCtx(ctx, time.Second)
	}
}

func (s *soak) compare() (diffs, report []string) {
	lines := s.odoo.Productivity()
	xmlids := map[string]int{}
	for _, l := range lines {
		xmlids[l.XMLID]++
	}
	for x, n := range xmlids {
		if n > 1 {
			diffs = append(diffs, fmt.Sprintf("duplicate downtime xmlid %s x%d", x, n))
		}
	}
	scraps := s.odoo.Scraps()
	for _, sc := range scraps {
		if sc.Moves > 1 {
			diffs = append(diffs, fmt.Sprintf("scrap %s booked %d times", sc.XMLID, sc.Moves))
		}
	}
	for _, m := range s.machines {
		m.mu.Lock()
		made, scr, stops := m.good-m.goodStart, m.scrap-m.scrapStart, m.stops
		m.mu.Unlock()
		wo := s.odoo.Workorder(s.woIDs[m.id])
		qty := wo.QtyProducing
		if s.opts.version >= 19 {
			qty = wo.QtyProduced
		}
		closed, open := 0, 0
		for _, l := range lines {
			if l.WorkcenterID == s.wcIDs[m.id] {
				if l.End.IsZero() {
					open++
				} else {
					closed++
				}
			}
		}
		var sq float64
		for _, sc := range scraps {
			if sc.WorkorderID == s.woIDs[m.id] && sc.State == "done" {
				sq += sc.Qty
			}
		}
		report = append(report, fmt.Sprintf("%s made %d odoo %v | stops %d lines %d open %d | scrap %d odoo %v", m.id, made, qty, stops, closed, open, scr, sq))
		// extra: lines more than stops, as the agent books them (a stop
		// split at a BIRTH); storedDiff: a stored stop not booked as it
		// should be.
		extra, storedDiff := 0, false
		if m.sp && s.opts.spHistory {
			d, r, x := s.compareStored(m, lines)
			diffs, report = append(diffs, d...), append(report, r...)
			extra, storedDiff = x, len(d) > 0
		}
		if qty != float64(made) {
			diffs = append(diffs, fmt.Sprintf("%s qty %v want %d", m.id, qty, made))
		}
		if closed != stops+extra || open != 0 {
			if extra == 0 {
				diffs = append(diffs, fmt.Sprintf("%s downtime lines %d (open %d) want %d", m.id, closed, open, stops))
			} else {
				diffs = append(diffs, fmt.Sprintf("%s downtime lines %d (open %d) want %d (%d stops, %d split at a BIRTH)", m.id, closed, open, stops+extra, stops, extra))
			}
		}
		if closed != stops+extra || open != 0 || storedDiff {
			report = append(report, s.sideBySide(m, lines)...)
		}
		if sq != float64(scr) {
			diffs = append(diffs, fmt.Sprintf("%s scrap %v want %d", m.id, sq, scr))
		}
	}
	slices.Sort(diffs)
	return diffs, report
}

// compareStored checks the lines of a Sparkplug device's stops that the
// edge node stored (is_historical): a stop it stored from start to end is
// a line from its stored start to its stored end, a stop begun live and
// ended in the store one that ends at the stored end, a stored start whose
// stop went on past a BIRTH one from the stored start; each to the second
// (the agent's line is of the millisecond it was given, Odoo keeps
// seconds). That last one booked from a later time is the known gap (a
// stored stop whose run was not stored booked nothing before the BIRTH):
// reported, not a difference. (A stop begun live booked to the BIRTH
// after its stored end, the late end the agent had, is a difference.)
//
// A stored start still stopped at a BIRTH whose stop ended (live or at a
// later BIRTH) before its stored stop came is two lines, as the Sparkplug B
// section of docs/config.md says: the BIRTH's line (its start, the BIRTH, is its
// key in Odoo, booked before the history came) and the stored part, from
// the stored stop to the BIRTH, a line of its own. Lines that tile the stop
// so, each cut at a BIRTH, are that stop booked in full: reported (SPLIT),
// not a difference; extra counts the lines more than one.
func (s *soak) compareStored(m *machine, lines []odootest.ProductivityLine) (diffs, report []string, extra int) {
	m.mu.Lock()
	stops := slices.Clone(m.spStops)
	m.mu.Unlock()
	var mine []odootest.ProductivityLine
	for _, l := range lines {
		if l.WorkcenterID == s.wcIDs[m.id] {
			mine = append(mine, l)
		}
	}
	near := func(a, b time.Time) bool {
		d := a.Sub(b.Truncate(time.Second))
		return d >= -time.Second && d <= time.Second
	}
	// The line that holds t (with a second either side).
	holding := func(t time.Time) *odootest.ProductivityLine {
		for i, l := range mine {
			if !l.Start.After(t.Add(time.Second)) && (l.End.IsZero() || !l.End.Before(t.Add(-time.Second))) {
				return &mine[i]
			}
		}
		return nil
	}
	show := func(l *odootest.ProductivityLine) string {
		if l == nil {
			return "no line"
		}
		return fmt.Sprintf("line %s-%s", l.Start.Format("15:04:05"), l.End.Format("15:04:05"))
	}
	// The lines that tile st from its start to its end, cut only at its
	// BIRTHs (nil unless more than one).
	tiled := func(st spStop) []odootest.ProductivityLine {
		var in []odootest.ProductivityLine
		for _, l := range mine {
			if !l.End.IsZero() && !l.Start.Before(st.start.Truncate(time.Second).Add(-time.Second)) && !l.End.After(st.end.Add(time.Second)) {
				in = append(in, l)
			}
		}
		slices.SortFunc(in, func(a, b odootest.ProductivityLine) int { return a.Start.Compare(b.Start) })
		if len(in) < 2 || !near(in[0].Start, st.start) || !near(in[len(in)-1].End, st.end) {
			return nil
		}
		for i := 1; i < len(in); i++ {
			if !in[i].Start.Equal(in[i-1].End) || !slices.ContainsFunc(st.births, func(b time.Time) bool { return near(in[i].Start, b) }) {
				return nil
			}
		}
		return in
	}
	var full, fullOK, startOnly, startOK, gap, split, endOnly, endOK int
	var downTruth, downOdoo time.Duration
	for _, st := range stops {
		if !st.startFlushed && !st.endFlushed {
			continue
		}
		span := fmt.Sprintf("%s-%s", st.start.Format("15:04:05.000"), st.end.Format("15:04:05.000"))
		switch {
		case st.startFlushed && st.endFlushed && len(st.births) == 0:
			full++
			l := holding(st.start)
			if l != nil && near(l.Start, st.start) && near(l.End, st.end) {
				fullOK++
				downTruth += st.end.Sub(st.start)
				downOdoo += l.End.Sub(l.Start)
				continue
			}
			diffs = append(diffs, fmt.Sprintf("%s stop stored from start to end %s: %s", m.id, span, show(l)))
		case st.startFlushed:
			startOnly++
			if parts := tiled(st); parts != nil {
				split++
				extra += len(parts) - 1
				var shown []string
				for i := range parts {
					shown = append(shown, show(&parts[i]))
				}
				b := st.births[slices.IndexFunc(st.births, func(b time.Time) bool { return near(parts[1].Start, b) })]
				report = append(report, fmt.Sprintf("SPLIT %s stop stored at %s, still stopped at the BIRTH of %s, ended at %s (stored %v): booked as %d lines cut at its BIRTHs (%s): the stored part to the BIRTH a line of its own, none of it lost",
					m.id, st.start.Format("15:04:05.000"), b.Format("15:04:05.000"), st.end.Format("15:04:05.000"), st.endFlushed, len(parts), strings.Join(shown, ", ")))
				continue
			}
			l := holding(st.end.Add(-time.Second))
			if l != nil && near(l.Start, st.start) {
				startOK++
				continue
			}
			var birth time.Time
			for _, b := range st.births {
				if l != nil && !l.Start.Before(b.Truncate(time.Second)) && !l.Start.After(b.Add(2*time.Second)) {
					birth = b
				}
			}
			if !birth.IsZero() {
				gap++
				report = append(report, fmt.Sprintf("KNOWN GAP %s stop stored at %s, still stopped at the BIRTH of %s, ended at %s (stored %v): booked as %s, %v not booked",
					m.id, st.start.Format("15:04:05.000"), birth.Format("15:04:05.000"), st.end.Format("15:04:05.000"), st.endFlushed, show(l), l.Start.Sub(st.start.Truncate(time.Second))))
				continue
			}
			diffs = append(diffs, fmt.Sprintf("%s stop stored at its start %s (stopped at %d BIRTHs; end stored %v): %s", m.id, span, len(st.births), st.endFlushed, show(l)))
		default:
			endOnly++
			l := holding(st.start)
			if l != nil && near(l.End, st.end) {
				endOK++
				continue
			}
			diffs = append(diffs, fmt.Sprintf("%s stop begun live, its end stored, %s: %s", m.id, span, show(l)))
		}
	}
	report = append(report, fmt.Sprintf("%s stored stops: %d stored start to end (%d booked at their times, %v of downtime, odoo %v), %d stored start only (%d booked from it, %d known gap, %d split at a BIRTH), %d stored end only (%d booked to it)",
		m.id, full, fullOK, downTruth.Round(time.Second), downOdoo, startOnly, startOK, gap, split, endOnly, endOK))
	return diffs, report, extra
}

// sideBySide is m's stops as the soak made them and its lines in Odoo, each
// stop with the lines that overlap it (a second either side), then the
// lines no stop overlaps: one report line each ("STOP" / "LINE").
func (s *soak) sideBySide(m *machine, lines []odootest.ProductivityLine) []string {
	m.mu.Lock()
	stops, births := slices.Clone(m.spStops), slices.Clone(m.dbirths)
	m.mu.Unlock()
	var mine []odootest.ProductivityLine
	for _, l := range lines {
		if l.WorkcenterID == s.wcIDs[m.id] {
			mine = append(mine, l)
		}
	}
	slices.SortFunc(mine, func(a, b odootest.ProductivityLine) int { return a.Start.Compare(b.Start) })
	const ms = "15:04:05.000"
	show := func(l odootest.ProductivityLine) string {
		end := "open"
		if !l.End.IsZero() {
			end = l.End.Format("15:04:05")
		}
		return fmt.Sprintf("%s-%s %s", l.Start.Format("15:04:05"), end, l.LossName)
	}
	used := make([]bool, len(mine))
	var out []string
	for i, st := range stops {
		end, endS := st.end, st.end.Format(ms)
		if end.IsZero() {
			end, endS = time.Now(), "(on)"
		}
		var how []string
		if m.sp {
			for _, p := range []struct {
				what            string
				stored, flushed bool
			}{{"start", st.startStored, st.startFlushed}, {"end", st.endStored, st.endFlushed}} {
				switch {
				case p.flushed:
					how = append(how, p.what+" stored, sent")
				case p.stored:
					how = append(how, p.what+" stored, not sent")
				default:
					how = append(how, p.what+" live")
				}
			}
			var bs []string
			for _, b := range births {
				if !b.Before(st.start.Add(-10*time.Second)) && !b.After(end.Add(10*time.Second)) {
					bs = append(bs, b.Format(ms))
				}
			}
			if len(bs) == 0 {
				bs = []string{"none"}
			}
			how = append(how, "BIRTHs within 10s: "+strings.Join(bs, " "))
		}
		var ls []string
		for j, l := range mine {
			lend := l.End
			if lend.IsZero() {
				lend = time.Now()
			}
			if !l.Start.After(end.Add(time.Second)) && !lend.Before(st.start.Truncate(time.Second).Add(-time.Second)) {
				used[j] = true
				ls = append(ls, "line "+show(l))
			}
		}
		if len(ls) == 0 {
			ls = []string{"no line"}
		}
		info := ""
		if len(how) > 0 {
			info = " (" + strings.Join(how, "; ") + ")"
		}
		out = append(out, fmt.Sprintf("STOP %s #%d %s-%s %s%s | %s", m.id, i+1, st.start.Format(ms), endS, st.reason, info, strings.Join(ls, ", ")))
	}
	for j, l := range mine {
		if !used[j] {
			out = append(out, fmt.Sprintf("LINE %s %s | no stop", m.id, show(l)))
		}
	}
	return out
}
