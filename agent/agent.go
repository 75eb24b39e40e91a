// Package agent joins the pieces of plantedge: it maps samples from the
// connectors into the durable buffer (acknowledging them only after the
// commit), forwards the buffer to Odoo work orders, and serves status,
// flush, dead letters and metrics to the operators.
package agent

import (
	"cmp"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash/maphash"
	"io"
	"io/fs"
	"log/slog"
	"maps"
	"math"
	"net"
	"net/http"
	"os"
	"os/user"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/plantedge/plantedge/agent/config"
	"github.com/plantedge/plantedge/agent/mapping"
	"github.com/plantedge/plantedge/buffer"
	"github.com/plantedge/plantedge/connectors"
	"github.com/plantedge/plantedge/connectors/mqtt"
	"github.com/plantedge/plantedge/connectors/opcua"
	"github.com/plantedge/plantedge/odoo"
)

// Options are the agent's run-time settings that are not in the config file.
type Options struct {
	Logger *slog.Logger
	// LogLevel, if set, is the level Logger's handler logs from: a reload
	// sets it from log.level.
	LogLevel *slog.LevelVar
	Registry *prometheus.Registry // nil: a private registry with the Go and process collectors
	Version  string
	// StopTimeout bounds the orderly stop after the context ends (default 20s).
	StopTimeout time.Duration
	// OdooHTTPClient, if set, is used for Odoo calls (tests).
	OdooHTTPClient *http.Client
	// UnmappedHold is how long records of a machine gone from the
	// configuration wait before going to the dead letters (default 1 h;
	// tests).
	UnmappedHold time.Duration
	// OutageReminder is how often the log says again that Odoo is not
	// taking the buffer, while it is not (default 15 min; tests).
	OutageReminder time.Duration
	// WriteStallAfter is how long a buffer write may run before status,
	// /readyz and the metrics call it stalled (default 30 s; tests).
	WriteStallAfter time.Duration
	// CountQuietAfter is how long a machine may run with no good_count
	// value before status says its pieces are not counted (0: 15 minutes).
	CountQuietAfter time.Duration
	// BacklogClockSlack is how long before a work order's start pieces
	// and scrap are still taken as its own (default 1 min; tests).
	BacklogClockSlack time.Duration
	// BacklogAge is how long counts must have waited before the work
	// orders in progress when they were made are looked up for them
	// although they were made after the order in progress now started
	// (backlogAge when 0; a test shortens it).
	BacklogAge time.Duration
	// ReplayLag is how much later than their source's values as they are
	// made values must come to be a backlog although they did not wait in
	// the buffer (replayLag when 0; a test shortens it).
	ReplayLag time.Duration
	// OffsetWindow is how long a machine's least receipt-less-source-time
	// difference stands (offsetWindow when 0; a test shortens it).
	OffsetWindow time.Duration
	// APIIdleTimeout closes a keep-alive connection to the local API idle
	// this long (default 60 s; tests).
	APIIdleTimeout time.Duration
	// OdooIdleRecheck is how long Odoo may be quiet before the forwarder
	// reads its version again (odoo.Config.IdleRecheck; tests).
	OdooIdleRecheck time.Duration
	// WorkcenterRefresh is how often the work-center codes are looked up
	// in Odoo again, and every machine's work order read (default 5 min;
	// tests).
	WorkcenterRefresh time.Duration
}

// Agent is one running plantedge: sources, ingest, buffer, forwarder and
// the local HTTP API.
type Agent struct {
	opts    Options
	log     *slog.Logger
	cfg     atomic.Pointer[config.Config]
	mapper  atomic.Pointer[mapping.Mapper]
	state   *mapping.State
	buf     *buffer.Queue
	fwd     *forwarder
	metrics *metrics
	// certs are the certificates the agent uses and when they expire.
	certs certDates

	// epochs numbers each MQTT source's connections across restarts and
	// reloads (Sample.Epoch).
	epochs mqttEpochs

	samples    *sampleQueue
	jobs       chan func(context.Context) // run by the ingest goroutine
	stopIngest chan struct{}

	totalsMu sync.Mutex
	totals   map[string]totals

	// stateMu guards state: the ingest loop maps under it, status reads it.
	stateMu sync.Mutex
	// stateJSON is machineKV's buffer for a machine state's JSON, under
	// stateMu.
	stateJSON []byte
	// badQuality is the quality of each source address whose last sample
	// was bad (OPC UA: an unknown node, a sensor failure), under stateMu:
	// status shows it on the machines the address feeds.
	badQuality map[sampleAddr]string
	// unusable is why the last good sample of each source address could
	// not be used (not a number, beyond rollover, ...), under stateMu:
	// status shows it on the machines the address feeds until a usable
	// one comes (a wrong tag or rollover is found there, not only in the log).
	unusable map[sampleAddr]error
	// valueType is the data type of each OPC UA address's last good value
	// (its OPC UA type, Sample.DataType), under stateMu: a change (Int16 to
	// Int32, Int32 to String after a PLC program or gateway change) is
	// logged — the value may still be read, but the tag may no longer be
	// what the mapping meant (a counter's rollover).
	valueType map[sampleAddr]string
	// malformed counts each source's samples (or fields) skipped as
	// malformed since start, with the last one's reason, under stateMu.
	malformed map[string]malformedCount
	// lastStamp is the receive time given to each source address's last
	// sample, under stateMu: samples of one address get distinct
	// milliseconds (see uniqueStamp).
	lastStamp map[sampleAddr]time.Time
	// srcOff measures how late values come (see offsets).
	srcOff offsets
	// lastSample is when each machine last got a good sample (receive
	// time), under stateMu: a machine whose source went quiet shows it.
	lastSample map[string]time.Time
	// countFed is when each machine last got a good_count value of its
	// own (not a stored, historical one) that was news (countNews), and
	// runSince since when it is shown running (unset for a machine running
	// since before this start), both under stateMu: a machine that runs with a counter that brings
	// nothing — a topic or field mistyped — shows it (quietCounters).
	countFed, runSince map[string]time.Time
	// countHeard is the last good sample of each source address that gave
	// a good_count a value, as countNews compares them, under stateMu: a
	// value the source hands the agent again as it was (a retained
	// message at each reconnect, the read that starts each OPC UA
	// session) is no news from the machine, and does not start its
	// counter's watch over.
	countHeard map[sampleAddr]heard
	// heardSeed hashes the MQTT payloads of countHeard.
	heardSeed maphash.Seed
	// countMapped is when a reload last gave each machine its good_count
	// (added, or moved to another topic, node or field), under stateMu:
	// its watch starts there, as at a start (a counter sent on change has
	// had no chance to send).
	countMapped map[string]time.Time
	// runFed is when each machine first got a run-state value of its own
	// since this start, under stateMu: a run state restored from the
	// buffer that nothing confirmed since may be stale (the machine
	// stopped while the agent was down), and is no run for quietCounters.
	runFed map[string]time.Time
	// countRan is how long each machine ran while its good_count's source
	// was connected, in stretches that ended (a stop, a lost connection),
	// since its good_count's watch began (countWatch), under stateMu: a
	// machine with short stops, or whose broker or server drops the agent
	// again and again, adds its runs up (quietCounters).
	countRan map[string]time.Duration
	// countNeed is how much of that running a reconnect of its counter's
	// source asked for before the note (countSourceConnected), and
	// countLost how many times that source's connection was lost, since
	// each machine's good_count's watch began, under stateMu.
	countNeed map[string]time.Duration
	countLost map[string]int
	// countSame is how many values of each machine's good_count came that
	// were no news (countNews) since its watch began, under stateMu.
	countSame map[string]int
	// srcUp is since when each source (sourceKey) is connected, under
	// stateMu: absent while it is not.
	srcUp map[string]time.Time
	// shownRunning is each machine's run state as of the last commit: what
	// status shows, so that a stop shown is one a flush finds in the
	// buffer (a.state runs ahead of it while a batch is being appended).
	shownRunning map[string]bool

	srcMu   sync.Mutex
	sources []*sourceHandle
	srcCtx  context.Context // parent of the sources' contexts (Run's)
	// srcStarted is set once Run started the sources (sourcesStarted).
	srcStarted atomic.Bool
	reloadMu   sync.Mutex
	// runPhase is where Run is (under reloadMu): a reload is applied only
	// while it runs — asked for while it starts, it is applied once it
	// runs (reloadAsked: the file); while it stops, it is not.
	runPhase    int
	reloadAsked string
	// loaded is the digest of the configuration file as the running
	// configuration was read from it (kept from before a reload that
	// changed settings needing a restart: the agent does not run the file
	// then); reloadErr the last rejected reload (nil after a good one).
	// Under configMu, not reloadMu: status must not wait for a reload.
	configMu  sync.Mutex
	loaded    [sha256.Size]byte
	reloadErr *writeFailure
	// pendingRestart names the settings a reload found changed that only
	// a restart applies (under configMu).
	pendingRestart []string

	pendingMu  sync.Mutex // guards the status cache of pending counts
	pendingAt  time.Time
	pendingVal map[string]pendingCount
	pendingSeq uint64 // the buffer's last sequence number when pendingVal's scan began
	// pendingErr is why pendingVal's scan stopped short (nil: it read
	// the whole buffer).
	pendingErr error
	// pendingTook is how long the last scan took; pendingGen counts the
	// forgets (forgetPendingCounts), pendingBusy says a scan runs in the
	// background; bg is waited for before the buffer is closed.
	pendingTook time.Duration
	pendingGen  uint64
	pendingBusy bool
	// pendingWaited is the scan callers wait for (nil: none runs;
	// scanWhileWaited).
	pendingWaited *waitedScan
	// pendingDone: the buffer is closing (stopPendingScans) — no more
	// background scans, and one under way ends at its next chunk.
	pendingDone atomic.Bool
	bg          sync.WaitGroup

	lastBeat     atomic.Int64
	opened       atomic.Bool            // buf and fwd are set
	startStep    atomic.Pointer[string] // what Run's start waits on, for watchStart
	ready        atomic.Bool
	started      time.Time
	malformedLog rateLogs // per source and topic or node: one bad tag must not hide another
	// strays counts, per MQTT source, messages on topics no machine maps
	// (under stateMu): subscriptions this agent did not make.
	strays   map[string]malformedCount
	strayLog rateLogs
	// dropped holds "broker\x00topic" of the topics an earlier
	// configuration subscribed to (of this run, or the last one's, kept in
	// the buffer file) and the one in force does not (under stateMu): the
	// broker's persistent session keeps their subscriptions, so their
	// messages still come — this agent's own, not another one's.
	dropped map[string]bool
	// unsubscribe holds, per MQTT broker, the filters an earlier
	// configuration subscribed to and the one in force does not (under
	// stateMu): its source unsubscribes them when it resumes the session,
	// or a wildcard filter's messages would come as strays for good (the
	// review: sparkplug_certificates turned off).
	unsubscribe map[string][]string
	topicsMu    sync.Mutex // orders storeTopics' read and write of the stored lists
	// badLog and goodLog: a tag's quality turning bad, and good again, per
	// source address (a tag flapping Good/Uncertain must not flood the log).
	badLog, goodLog rateLogs
	typeLog         rateLogs   // an OPC UA value's data type changing, per address
	eventLog        rateLogs   // counter resets, rollovers, clock steps: per machine
	reasonLog       rateLogs   // unmapped downtime reasons: per machine and code, once an hour
	reasonBudget    codeBudget // ... and at most unmappedCodesLogged codes a machine an hour
	reasonOverLog   rateLogs   // the rest: per machine, once an hour
	clockLog        rateLogs   // a source clock far off this box's: per machine, once an hour
	deadLog         rateLogs   // per record key
	// rebirth: the Sparkplug B rebirth requests made, per edge node.
	rebirth  rebirths
	httpAddr atomic.Pointer[string]

	// deadAct holds the dead-letter retry or drop under way (one at a
	// time), deadAsked what it is (nil: none).
	deadAct   chan struct{}
	deadAsked atomic.Pointer[deadAsked]

	// writeFail is set while buffer appends fail (disk full, read-only
	// file system): nothing new is acknowledged meanwhile, and status,
	// /readyz and flush say so.
	writeFail atomic.Pointer[writeFailure]

	// bufID names this buffer file in the external ids of scrap bookings,
	// which count by the file's sequence numbers: a fresh file (a corrupt
	// one moved aside, a new box with the same site) starts them at 1
	// again, and must not meet the bookings of the old one in Odoo.
	bufID string
	// startSeq is the buffer file's newest sequence number at the start,
	// before anything was appended (see forwarder.checkRestored).
	startSeq uint64
	// startLineKeys is each machine's LineKey at the start (see
	// forwarder.checkRestored).
	startLineKeys map[string]int64
	// newFile: the buffer file was made at this start — none was there, or
	// the one there was corrupt and moved aside (recoveredFile): it has no
	// record of what an earlier one sent (see forwarder.closeOrphanLines,
	// forwarder.woState).
	newFile, recoveredFile bool
	// odooWas is the Odoo the buffer file's Odoo state belongs to when the
	// configuration names another (checkOdoo); the forwarder clears it.
	odooWas string
	// legacySite is the site downtime records without one (made by a
	// version that did not note it) are booked under ("": the configured).
	legacySite string

	// inFlight holds, per count key, the last record an Odoo call not yet
	// settled covers (a quantity write, woState.InFlight; a scrap booking,
	// scrapOutbox): the quota merge must not fold a newer record into a
	// covered one (see mergeCounts).
	inFlight sync.Map

	// latencyHook, when set (benchmarks), gets each sample's receipt-to-
	// durable latency.
	latencyHook func(time.Duration)
	// clockShift and clockEvery, when set (tests), step this box's wall
	// clock as the agent sees it (samples' receive times, and its looks at
	// the clock; the boot clock stays) and stand in for clockLook.
	clockShift func() time.Duration
	clockEvery time.Duration
	// damagedState names the machines whose stored state could not be
	// read at the start (loadMachineState).
	damagedState []string
}

// New checks cfg and prepares an agent; it does no I/O.
func New(cfg *config.Config, opts Options) (*Agent, error) {
	m, err := mapping.New(cfg)
	if err != nil {
		return nil, fmt.Errorf("mapping: %w", err)
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Registry == nil {
		// With the Go runtime's and the process's own metrics: goroutines,
		// heap and resident memory are what to watch around reconnects.
		opts.Registry = prometheus.NewRegistry()
		opts.Registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}
	if opts.StopTimeout <= 0 {
		opts.StopTimeout = 20 * time.Second
	}
	a := &Agent{
		opts:          opts,
		deadAct:       make(chan struct{}, 1),
		log:           opts.Logger,
		state:         mapping.NewState(),
		samples:       newSampleQueue(ingestQueue),
		jobs:          make(chan func(context.Context), 16),
		stopIngest:    make(chan struct{}),
		totals:        map[string]totals{},
		badQuality:    map[sampleAddr]string{},
		valueType:     map[sampleAddr]string{},
		unusable:      map[sampleAddr]error{},
		malformed:     map[string]malformedCount{},
		strays:        map[string]malformedCount{},
		dropped:       map[string]bool{},
		unsubscribe:   map[string][]string{},
		lastStamp:     map[sampleAddr]time.Time{},
		lastSample:    map[string]time.Time{},
		countFed:      map[string]time.Time{},
		runSince:      map[string]time.Time{},
		countMapped:   map[string]time.Time{},
		countHeard:    map[sampleAddr]heard{},
		countSame:     map[string]int{},
		heardSeed:     maphash.MakeSeed(),
		runFed:        map[string]time.Time{},
		countRan:      map[string]time.Duration{},
		countNeed:     map[string]time.Duration{},
		countLost:     map[string]int{},
		srcUp:         map[string]time.Time{},
		shownRunning:  map[string]bool{},
		reasonLog:     rateLogs{every: time.Hour, forgetLeftOut: true},
		reasonBudget:  codeBudget{every: time.Hour, n: unmappedCodesLogged},
		reasonOverLog: rateLogs{every: time.Hour},
		clockLog:      rateLogs{every: time.Hour},
		srcOff:        offsets{window: opts.OffsetWindow},
	}
	a.cfg.Store(cfg)
	if cfg.Path != "" {
		a.loaded = fileDigest(cfg.Path)
	}
	a.mapper.Store(m)
	a.metrics = newMetrics(a)
	a.metrics.seed(cfg)
	return a, nil
}

// Addr is the address the local HTTP API listens on once Run has started it.
func (a *Agent) Addr() string {
	if p := a.httpAddr.Load(); p != nil {
		return *p
	}
	return ""
}

// StartError is Run's failure to start: the data directory, the buffer
// file or the local API's address could not be made, opened or bound.
type StartError struct{ Err error }

func (e *StartError) Error() string { return e.Err.Error() }
func (e *StartError) Unwrap() error { return e.Err }

// Run runs the agent until ctx ends, then stops it in order: sources first,
// then the in-flight ingest batch, the forwarder, the HTTP API, and the
// buffer last. The buffer is not drained at shutdown: it is durable.
func (a *Agent) Run(ctx context.Context) error {
	cfg := a.cfg.Load()
	a.started = time.Now()
	a.beat()
	a.logWarnings(cfg)
	a.step("creating the data directory")
	started := a.watchStart(cfg.DataDir)
	defer started() // when the start fails; at once when it succeeds
	if err := os.MkdirAll(cfg.DataDir, 0o750); err != nil {
		return &StartError{fmt.Errorf("data dir: %w", err)}
	}
	a.checkDiskSpace(cfg)
	_, statErr := os.Stat(cfg.BufferPath())
	a.newFile = errors.Is(statErr, os.ErrNotExist)
	a.step("opening the buffer file")
	buf, err := buffer.Open(cfg.BufferPath(), buffer.Options{
		MaxBytes:     int64(cfg.Buffer.MaxBytes),
		CommitWindow: cfg.Buffer.CommitWindow.D(),
		Merge:        a.mergeCounts,
		Logger:       a.log.With("component", "buffer"),
		EventTime:    eventStart,
	})
	if err != nil {
		return &StartError{fmt.Errorf("open buffer: %w", err)}
	}
	a.buf = buf
	a.startSeq = buf.LastSeq()
	defer buf.Close()
	defer a.stopPendingScans()     // a status scan in the background reads the buffer
	defer a.rebirth.sending.Wait() // a rebirth request being published (at most the MQTT connect timeout)
	if p := buf.Recovered(); p != "" {
		a.newFile, a.recoveredFile = true, true
		a.log.Error("BUFFER FILE WAS CORRUPT: moved aside and started fresh; records in it were not forwarded",
			"moved_to", p, "buffer", cfg.BufferPath())
		a.metrics.corruptBuffers.Inc()
	}
	a.step("reading the buffer file's state")
	if err := a.loadMachineState(); err != nil {
		return err
	}
	if err := dropSparkplugMaps(ctx, buf); err != nil {
		if ctx.Err() != nil {
			return nil // stopped while starting: a clean stop, not a failure
		}
		return err
	}
	if err := a.upgradeDecimals(ctx); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	a.startLineKeys = map[string]int64{}
	for id, ms := range a.state.Machines {
		if ms.LineKey > 0 && findMachine(cfg, id) != nil { // see endOrphanedStops
			a.startLineKeys[id] = ms.LineKey
		}
	}
	if err := a.checkOdoo(ctx, cfg); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	if err := a.loadInFlight(); err != nil {
		return err
	}
	a.startClock()
	if err := a.loadBufferID(ctx); err != nil {
		if ctx.Err() != nil {
			return nil // stopped while starting: a clean stop, not a failure
		}
		return err
	}
	if err := a.checkSite(ctx, cfg); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	a.fwd = newForwarder(a)
	a.step("ending the stops of machines no longer configured")
	// Stops of machines whose running signal left the configuration while
	// the agent was stopped: nothing would end them. Bounded: a failing
	// disk must not hold the start (the stored state keeps the stop, the
	// next start ends it).
	startCtx, startCancel := context.WithTimeout(ctx, 10*time.Second)
	a.noteDroppedTopics(startCtx, nil, a.brokerNames(nil, a.cfg.Load()))
	a.endOrphanedStops(startCtx, nil)
	startCancel()
	a.opened.Store(true) // publishes buf and fwd to Status and the API
	started()            // watchWrites takes over
	// A write of the start that stalled was said by watchStart: not
	// again as one that ended (the review).
	buf.TakeLongestWrite()

	ln, err := listen(cfg.Listen)
	if err != nil {
		return &StartError{fmt.Errorf("listen %s: %w", cfg.Listen, err)}
	}
	addr := ln.Addr().String()
	a.httpAddr.Store(&addr)
	// The local API serves short requests (status, flush, metrics): a
	// connection is closed when idle for 5 s (the CLI gives up after 10 s:
	// idle connections holding every slot must be gone before; scrapes
	// every 10 s or more open a connection each), slow to send its
	// request or slow to take the answer, and the connections are bounded
	// (limitAPI).
	srv := &http.Server{Handler: a.Handler(), ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second,
		WriteTimeout: time.Minute, IdleTimeout: cmp.Or(a.opts.APIIdleTimeout, 5*time.Second), ConnContext: connContext}
	ln = limitAPI(ln)
	httpDone := make(chan struct{})
	go func() {
		defer close(httpDone)
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			a.log.Error("http api stopped", "err", err)
		}
	}()

	// Sinks before sources: forwarder and ingest first.
	fwdCtx, fwdCancel := context.WithCancel(context.WithoutCancel(ctx))
	fwdDone := make(chan struct{})
	go func() { defer close(fwdDone); a.fwd.run(fwdCtx) }()

	ingestCtx, ingestCancel := context.WithCancel(context.WithoutCancel(ctx))
	ingestDone := make(chan struct{})
	go func() { defer close(ingestDone); a.ingest(ingestCtx) }()

	a.markRunStart(ctx, cfg, time.Now())
	a.readCertFiles(cfg)
	a.startSources(ctx, cfg)
	wdDone := make(chan struct{})
	wdCtx, wdCancel := context.WithCancel(ctx)
	clockDone := make(chan struct{})
	go func() { defer close(wdDone); a.watchdog(wdCtx) }()
	go func() { defer close(clockDone); a.watchClock(wdCtx) }()
	writesDone := make(chan struct{})
	go func() { defer close(writesDone); a.watchWrites(wdCtx) }()
	pagesDone := make(chan struct{})
	go func() { defer close(pagesDone); a.dropPages(wdCtx) }()
	certsDone := make(chan struct{})
	go func() {
		defer close(certsDone)
		every(wdCtx, certCheckEvery, func() { a.readCertFiles(a.cfg.Load()) })
	}()

	a.setPhase(ctx, phaseRunning)
	a.ready.Store(true)
	if err := sdNotify("READY=1\nSTATUS=forwarding"); err != nil {
		a.log.Warn("systemd notify failed", "err", err)
	}
	a.log.Info("plantedge running", "site", cfg.Site, "buffer", cfg.BufferPath(), "listen", addr,
		"machines", len(cfg.Machines), "version", a.opts.Version)

	var runErr error
	select {
	case <-ctx.Done():
	case <-buf.Failed():
		// Nothing can be acknowledged any more: stop, and let the restart
		// (systemd's Restart=) open the file anew.
		runErr = fmt.Errorf("buffer: %w", buf.Err())
		a.log.Error("buffer failed; stopping", "err", buf.Err())
		ingestCancel()
	}
	// The stop is said and its deadline runs from here, before the wait for
	// a reload in progress (setPhase): a reload waiting on a source that
	// does not answer held a SIGTERM 8 s without a word (the lifecycle
	// review).
	a.ready.Store(false)
	_ = sdNotify("STOPPING=1")
	a.log.Info("stopping")
	deadline := time.AfterFunc(a.opts.StopTimeout, func() {
		if wf := a.writeFail.Load(); wf != nil {
			// (A full disk: appends fail fast and are tried again until
			// here, in case room is made.)
			a.log.Error("stop timeout reached while buffer writes fail: what was not written is not acknowledged; its sources give it again to the next run",
				"cause", wf.Cause, "err", wf.Err)
		} else {
			a.log.Error("stop timeout reached; abandoning in-flight work (nothing acknowledged is lost)")
		}
		ingestCancel()
		fwdCancel()
	})
	defer deadline.Stop()
	// No Odoo write begins from now on (one begun while the sources stop
	// could be cut by the deadline, left in doubt, and hold the next start's
	// writes for odoo.request_limit); a write Odoo is doing runs to its
	// answer, bounded by the deadline. What is buffered waits for the next
	// start.
	a.fwd.beginStop()
	a.setPhase(ctx, phaseStopping)
	a.stopSources()
	a.epochs.wait() // (no connect after the sources stopped)
	close(a.stopIngest)
	<-ingestDone
	ingestCancel()
	<-fwdDone
	fwdCancel()
	wdCancel()
	<-wdDone
	<-clockDone
	<-writesDone
	<-pagesDone
	<-certsDone
	shCtx, shCancel := context.WithTimeout(context.Background(), 2*time.Second)
	if err := srv.Shutdown(shCtx); err != nil {
		a.log.Warn("local API requests still open at the stop, left unanswered", "err", err)
	}
	shCancel()
	<-httpDone
	a.clearRunMark()     // the sources are stopped, their sessions closed
	a.stopPendingScans() // a status scan reads the buffer: before it closes
	if err := buf.Close(); err != nil {
		return fmt.Errorf("close buffer: %w", err)
	}
	a.log.Info("stopped")
	return runErr
}

// QuotaOverDisk reports whether buffer.max_bytes is larger than what
// data_dir's file system has free plus what the buffer file and its
// reserve file hold now, and the free bytes (false when data_dir cannot be
// looked at). The reserve file counts within max_bytes (buffer.reserveFor):
// left out, a quota that fits was said not to.
func QuotaOverDisk(cfg *config.Config) (free int64, over bool) {
	fs, ok := dataDirFS(cfg)
	if !ok {
		return 0, false
	}
	free = int64(fs.Bavail) * int64(fs.Bsize)
	var used int64
	for _, p := range []string{cfg.BufferPath(), cfg.BufferPath() + ".reserve"} {
		if fi, err := os.Stat(p); err == nil {
			used += fi.Size()
		}
	}
	return free, int64(cfg.Buffer.MaxBytes) > free+used
}

// dataDirFS is data_dir's file system; a data_dir not made yet
// (validate before the first start) is made on the file system of its
// nearest parent that is there. false when none can be looked at.
func dataDirFS(cfg *config.Config) (syscall.Statfs_t, bool) {
	var fs syscall.Statfs_t
	dir := cfg.DataDir
	for syscall.Statfs(dir, &fs) != nil {
		parent := filepath.Dir(dir)
		if parent == dir {
			return fs, false
		}
		dir = parent
	}
	return fs, true
}

// File system magic numbers (statfs f_type) of memory file systems.
const (
	tmpfsMagic = 0x01021994
	ramfsMagic = 0x858458f6
)

// VolatileDataDir says why data_dir would not keep the buffer across a
// restart or a reboot ("" when nothing says so): a memory file system
// (tmpfs, ramfs: /dev/shm, /run, a tmpfs /tmp) — and for the service
// (service: started by systemd, or validate run as its user) /tmp or
// /var/tmp, which the packaged unit's PrivateTmp=yes makes its own,
// emptied at every restart (the PEERS probe: both accepted without a word;
// PEERS complaint 9, "a persistent buffer that wasn't"). Run by hand, or
// by tests, a directory under /tmp stays.
func VolatileDataDir(cfg *config.Config, service bool) string {
	if fs, ok := dataDirFS(cfg); ok && (fs.Type == tmpfsMagic || uint32(fs.Type) == ramfsMagic) {
		return "is on a file system in memory (tmpfs or ramfs): what the buffer holds is lost at a reboot or power cut"
	}
	if abs, err := filepath.Abs(cfg.DataDir); err == nil && service {
		for _, tmp := range []string{"/tmp", "/var/tmp"} {
			if abs == tmp || strings.HasPrefix(abs, tmp+"/") {
				return "is under " + tmp + ": the packaged unit runs with PrivateTmp=yes, which gives the service an empty " + tmp +
					" of its own at every start, so what the buffer holds is lost at every restart (and " + tmp + " is cleaned at boot)"
			}
		}
	}
	return ""
}

// checkDiskSpace warns when data_dir would not keep the buffer
// (VolatileDataDir), and when the buffer quota is larger than the space
// left on data_dir's filesystem: the quota (drop, merge, backpressure) is what
// keeps a long outage from filling the disk, so it must fit.
func (a *Agent) checkDiskSpace(cfg *config.Config) {
	// INVOCATION_ID: systemd sets it for each service it starts.
	if why := VolatileDataDir(cfg, os.Getenv("INVOCATION_ID") != ""); why != "" {
		a.log.Warn("data_dir "+why+": put it on a disk (the package's is /var/lib/plantedge)", "data_dir", cfg.DataDir)
	}
	if free, over := QuotaOverDisk(cfg); over {
		a.log.Warn("buffer.max_bytes is larger than the free space of data_dir: a long outage could fill the disk before the quota acts; lower max_bytes or free space",
			"max_bytes", cfg.Buffer.MaxBytes.String(), "free_bytes", config.ByteSize(free).String(), "data_dir", cfg.DataDir)
	}
}

func listen(addr string) (net.Listener, error) {
	if p, ok := strings.CutPrefix(addr, "unix:"); ok {
		// A socket left by an earlier run is replaced; any other file there
		// is not ours to delete (listen: unix:/var/lib/plantedge/buffer.db).
		if fi, err := os.Lstat(p); err == nil {
			if fi.Mode().Type() != os.ModeSocket {
				return nil, fmt.Errorf("%s exists and is not a socket", p)
			}
			_ = os.Remove(p)
		}
		// Created under a umask that leaves others out, so that no one
		// else connects between its creation and the chmod (the self-probe
		// did, under umask 000). The umask is the process's: it only
		// narrows what is created meanwhile.
		old := syscall.Umask(0o077)
		syscall.Umask(old | 0o007)
		ln, err := net.Listen("unix", p)
		syscall.Umask(old)
		if err == nil {
			// The agent's user and group: the group may drop dead letters
			// over TCP too (dropRefused), so it may use the socket.
			err = os.Chmod(p, 0o770)
			if err != nil {
				_ = ln.Close()
			}
		}
		return ln, err
	}
	return net.Listen("tcp", addr)
}

// newOdooClient builds the Odoo client from the current config; it reads
// the API key (file, credential or environment) but makes no call.
func (a *Agent) newOdooClient() (*odoo.Client, error) {
	c := odooConfig(a.cfg.Load(), a.opts.OdooHTTPClient, a.log, a.fwd.waitRate)
	c.IdleRecheck = a.opts.OdooIdleRecheck
	c.PeerCertificates = a.peerCerts(CertOdooServer, "odoo")
	return newOdooClient(a.cfg.Load(), c)
}

// NewOdooClient builds the Odoo client the agent uses for cfg: it reads the
// API key (environment, systemd credential or odoo.api_key_file) but makes
// no call. hc replaces the HTTP transport when not nil (tests); log may be nil.
func NewOdooClient(cfg *config.Config, hc *http.Client, log *slog.Logger) (*odoo.Client, error) {
	return newOdooClient(cfg, odooConfig(cfg, hc, log, nil))
}

// newOdooClient builds the client of oc with the API key cfg names.
func newOdooClient(cfg *config.Config, oc odoo.Config) (*odoo.Client, error) {
	key, err := cfg.OdooAPIKey()
	if err != nil {
		return nil, err
	}
	oc.APIKey = key
	return odoo.New(oc)
}

// odooConfig is the client configuration of cfg, without the key; its
// requests wait for wait (the forwarder's rate limit) when it is not nil.
func odooConfig(cfg *config.Config, hc *http.Client, log *slog.Logger, wait func(context.Context) error) odoo.Config {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return odoo.Config{
		URL:                cfg.Odoo.URL,
		Database:           cfg.Odoo.Database,
		Username:           cfg.Odoo.Username,
		Protocol:           cfg.Odoo.Protocol,
		Timeout:            cfg.Odoo.Timeout.D(),
		CAFile:             cfg.Odoo.CAFile,
		InsecureSkipVerify: cfg.Odoo.InsecureSkipVerify,
		HTTPClient:         hc,
		Logger:             log, // the client adds component=odoo
		Wait:               wait,
	}
}

// Flush asks the forwarder to try now, skipping a backoff wait.
func (a *Agent) Flush() (roundsStarted uint64) {
	if a.opened.Load() {
		return a.fwd.Flush()
	}
	return 0
}

// beat records that the forwarding loop is alive (for the systemd watchdog
// and /healthz).
func (a *Agent) beat() { a.lastBeat.Store(time.Now().UnixNano()) }

func (a *Agent) sinceBeat() time.Duration {
	return time.Since(time.Unix(0, a.lastBeat.Load()))
}

// watchdog pings systemd while the forwarding loop is alive: a hung loop
// stops the pings and systemd restarts the agent.
func (a *Agent) watchdog(ctx context.Context) {
	usec, _ := strconv.ParseInt(os.Getenv("WATCHDOG_USEC"), 10, 64)
	if usec <= 0 {
		return
	}
	limit := time.Duration(usec) * time.Microsecond
	// The loop beats before and after every Odoo call; one call may take up
	// to the Odoo timeout, which must not count as a hang.
	silent := limit + a.cfg.Load().Odoo.Timeout.D()
	every(ctx, limit/3, func() {
		if a.sinceBeat() < silent {
			_ = sdNotify("WATCHDOG=1")
		} else {
			a.log.Error("forwarding loop silent; withholding the watchdog ping", "silent_for", a.sinceBeat().Round(time.Second))
		}
	})
}

// every calls fn every d until ctx ends.
func every(ctx context.Context, d time.Duration, fn func()) {
	t := time.NewTicker(d)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			fn()
		}
	}
}

// Reload loads the config file again; a valid one replaces the mapping
// (sources are restarted with the new nodes and topics), an invalid one is
// rejected and the running mapping stays.
func (a *Agent) Reload(ctx context.Context, path string) error {
	a.reloadMu.Lock()
	defer a.reloadMu.Unlock()
	switch a.runPhase {
	case phaseStarting:
		// The buffer and the sources are not there yet (systemd's
		// ExecReload can race the start): the file is read again once
		// they are. A reload here crashed the agent (the reload probe).
		a.reloadAsked = path
		a.log.Info("reload asked for while starting: applied once started", "file", path)
		return nil
	case phaseStopping:
		a.log.Info("reload asked for while stopping: not applied", "file", path)
		return nil
	}
	return a.reload(ctx, path)
}

// Run's phases, for Reload.
const (
	phaseStarting = iota
	phaseRunning
	phaseStopping
)

// setPhase moves Run to phase p, after any reload in progress, and applies
// a reload asked for while it started.
func (a *Agent) setPhase(ctx context.Context, p int) {
	a.reloadMu.Lock()
	defer a.reloadMu.Unlock()
	a.runPhase = p
	if path := a.reloadAsked; p == phaseRunning && path != "" {
		a.reloadAsked = ""
		_ = a.reload(ctx, path) // logged by reload
	}
}

// maxReloadProblems is how many of a rejected file's problems status and
// the log show.
const maxReloadProblems = 10

// reloadErrorText is why a reload was rejected, for status and the log: a
// file's first problems and how many more there are. One slip repeated down
// 715 machines made status 1,445 lines and the log record 135 KB, which
// journald splits (the ot-audit probe); plantedge validate shows them all.
func reloadErrorText(err error) string {
	ce, ok := err.(*config.Error)
	if !ok || len(ce.Problems) <= maxReloadProblems {
		return err.Error()
	}
	short := &config.Error{Problems: ce.Problems[:maxReloadProblems]}
	return fmt.Sprintf("%s\n… and %s (plantedge validate shows every problem)", short.Error(), Plural(len(ce.Problems)-maxReloadProblems, "more problem"))
}

// reload is Reload while Run runs (under reloadMu).
func (a *Agent) reload(ctx context.Context, path string) error {
	digest := fileDigest(path)
	next, err := config.Load(path)
	var m *mapping.Mapper
	if err == nil {
		m, err = mapping.New(next)
	}
	if err == nil {
		// A source its connector refuses would go down with every machine
		// it reads: the running configuration is kept instead. Not for one
		// that runs broken already (a password the environment lacked at
		// the start): that would refuse every reload (the review). What
		// runs decides, not the old file read again: a password file made
		// unreadable since would pass as broken before (the third review).
		down := map[string]bool{}
		for _, h := range a.sourceList() {
			if h.broken {
				down[string(h.kind)+"/"+h.name] = true
			}
		}
		var errs []error
		bad := sourceErrors(next, m, true)
		for _, k := range slices.Sorted(maps.Keys(bad)) {
			if !down[k] {
				errs = append(errs, bad[k])
			}
		}
		if len(errs) > 0 {
			err = fmt.Errorf("sources: %w", errors.Join(errs...))
		}
	}
	if err != nil {
		said := reloadErrorText(err)
		a.log.Error("reload rejected; keeping the running configuration", "file", path, "err", said)
		a.metrics.reloads.WithLabelValues("rejected").Inc()
		a.configMu.Lock()
		a.reloadErr = &writeFailure{Err: said, Since: time.Now()}
		a.configMu.Unlock()
		return err
	}
	cur := a.cfg.Load()
	var later []string
	for _, k := range []struct {
		name    string
		changed bool
	}{
		{"site", next.Site != cur.Site}, {"data_dir", next.DataDir != cur.DataDir}, {"listen", next.Listen != cur.Listen},
		{"buffer", !reflect.DeepEqual(next.Buffer, cur.Buffer)}, {"odoo", !reflect.DeepEqual(next.Odoo, cur.Odoo)},
		{"log.format", next.Log.Format != cur.Log.Format},
	} {
		if k.changed {
			later = append(later, k.name)
		}
	}
	if len(later) > 0 {
		a.log.Warn("reload: these settings changed and take effect only after a restart; the running agent keeps the old ones",
			"settings", strings.Join(later, ", "))
		next.Site, next.DataDir, next.Listen, next.Buffer, next.Odoo = cur.Site, cur.DataDir, cur.Listen, cur.Buffer, cur.Odoo
		next.Log.Format = cur.Log.Format
	}
	// log.level at once (forward.rate and forward.backoff_max too, after
	// the config is stored: the forwarder's reloaded).
	if lv := a.opts.LogLevel; lv != nil && next.Log.Level != cur.Log.Level {
		var level slog.Level
		if level.UnmarshalText([]byte(next.Log.Level)) == nil {
			lv.Set(level)
		}
	}
	a.configMu.Lock()
	a.reloadErr, a.pendingRestart = nil, later
	if len(later) == 0 {
		a.loaded = digest
	}
	a.configMu.Unlock()
	// The mapper first: kept sources deliver to it from now on. Sources
	// whose settings changed are replaced.
	prev := a.mapper.Load()
	names := a.brokerNames(cur, next)
	a.noteUnsubscribe(func(fn func(broker, topic string)) { prev.EachMQTTTopic(fn) }, m, names)
	a.cfg.Store(next)
	a.mapper.Store(m)
	a.metrics.seed(next)
	// Queued also before the ingest loop runs (a reload while starting):
	// it takes the job when it starts.
	select {
	case a.jobs <- func(ctx context.Context) { a.noteDroppedTopics(ctx, prev, names); a.endOrphanedStops(ctx, prev) }:
	default:
		a.log.Error("reload: the ingest loop is not taking work; stops whose running signal is gone are ended at the next start")
	}
	a.applySources(next)
	a.readCertFiles(next)
	a.metrics.reloads.WithLabelValues("ok").Inc()
	if a.opened.Load() {
		a.fwd.forget.Store(true)
		a.fwd.reloaded()
	}
	added, removed, changed, rebased := machineChanges(cur, next)
	var moved, settings []string // machines mapped to another work center; other settings changed
	for i := range next.Machines {
		nm := &next.Machines[i]
		mc := findMachine(cur, nm.ID)
		if mc == nil {
			continue
		}
		if mc.Workcenter != nm.Workcenter {
			moved = append(moved, fmt.Sprintf("%s %s→%s", mc.ID, mc.Workcenter, nm.Workcenter))
		}
		// A signal's other keys (rollover, map, default), and the
		// machine's own: what signals_changed (where a signal reads)
		// does not show.
		for _, k := range []struct {
			name     string
			was, now any
		}{
			{"good_count", mc.GoodCount, nm.GoodCount}, {"scrap_count", mc.ScrapCount, nm.ScrapCount},
			{"running", mc.Running, nm.Running}, {"downtime_reason", mc.DowntimeReason, nm.DowntimeReason},
			{"block_workcenter", mc.BlockWorkcenter, nm.BlockWorkcenter}, {"min_stop", mc.MinStop, nm.MinStop},
			{"replaced", mc.Replaced, nm.Replaced},
		} {
			if !reflect.DeepEqual(k.was, k.now) && !slices.Contains(changed, nm.ID+" "+k.name) {
				settings = append(settings, nm.ID+" "+k.name)
			}
		}
	}
	a.log.Info("configuration reloaded", "file", path, "machines", len(next.Machines),
		"added", strings.Join(added, ","), "removed", strings.Join(removed, ","), "signals_changed", strings.Join(changed, ","),
		"settings_changed", strings.Join(settings, ","), "workcenter_changed", strings.Join(moved, ","))
	now := time.Now()
	a.stateMu.Lock()
	for _, id := range added {
		a.countMapped[id] = now
		a.countWatchAnew(id)
	}
	for _, c := range changed {
		if id, ok := strings.CutSuffix(c, " good_count"); ok {
			a.countMapped[id] = now
			a.countWatchAnew(id)
		}
	}
	a.stateMu.Unlock()
	for _, c := range rebased {
		a.log.Info("a counter now reads another node, topic or field: where its first value there comes from another counter than the last one read, counting starts from it, pieces made since the last one's last value are not counted, and that first value is logged (\"a counter's first value from the node, topic or field it now reads\"); without that line (the same counter under a fixed name, or a mapping put back before a value came) it counts on",
			"signal", c)
	}
	a.logWarnings(next)
	return nil
}

// fileDigest is the SHA-256 of the file at path (zero if unreadable).
func fileDigest(path string) (d [sha256.Size]byte) {
	f, err := os.Open(path)
	if err != nil {
		return d
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, io.LimitReader(f, 2*config.MaxFileBytes)); err == nil {
		h.Sum(d[:0])
	}
	return d
}

// machineChanges lists the machines next adds and removes, the signals
// ("machine signal") whose source it changes, adds or drops, and of those
// the counters that read a new source.
func machineChanges(cur, next *config.Config) (added, removed, changed, rebased []string) {
	refs := func(c *config.Config) map[string]map[string]config.SourceRef {
		out := map[string]map[string]config.SourceRef{}
		for i := range c.Machines {
			m := &c.Machines[i]
			rs := map[string]config.SourceRef{}
			for _, r := range m.Refs() {
				rs[r.Signal] = r.Ref
			}
			out[m.ID] = rs
		}
		return out
	}
	was, now := refs(cur), refs(next)
	for i := range next.Machines {
		id := next.Machines[i].ID
		old, ok := was[id]
		if !ok {
			added = append(added, id)
			continue
		}
		for _, sig := range config.SignalNames {
			if r := now[id][sig]; !reflect.DeepEqual(old[sig], r) {
				changed = append(changed, id+" "+sig)
				if src := r.CounterSource(); src != "" && src != old[sig].CounterSource() && strings.HasSuffix(sig, "_count") &&
					counterIdentity(next, r) != counterIdentity(cur, old[sig]) {
					rebased = append(rebased, id+" "+sig)
				}
			}
		}
	}
	for i := range cur.Machines {
		if _, ok := now[cur.Machines[i].ID]; !ok {
			removed = append(removed, cur.Machines[i].ID)
		}
	}
	return added, removed, changed, rebased
}

// counterIdentity is what makes a counter the same one: its server's URL
// (not the name the configuration gives it), node or topic, and field —
// as the mapping's counter state knows it (CounterState.Src and Server).
func counterIdentity(c *config.Config, r config.SourceRef) string {
	switch {
	case r.OPCUA != nil:
		for _, s := range c.OPCUA {
			if s.Name == r.OPCUA.Server {
				return "opcua " + connectors.ServerID(s.Endpoint) + " " + r.OPCUA.Address()
			}
		}
	case r.MQTT != nil:
		for _, b := range c.MQTT {
			if b.Name == r.MQTT.Broker {
				return "mqtt " + connectors.ServerID(b.URL) + " " + r.MQTT.Topic + " " + r.MQTT.Field
			}
		}
	}
	return r.CounterSource()
}

// logWarnings logs what validate would warn about in cfg (the agent runs
// with it, but the technician reading the journal should know).
func (a *Agent) logWarnings(cfg *config.Config) {
	for _, w := range cfg.Warnings {
		a.log.Warn("configuration: " + w.String())
	}
}

// sampleAddr is where a sample comes from.
type sampleAddr struct {
	kind            connectors.Kind
	source, address string
}

// sourceHandle is a running connector as the agent sees it.
type sourceHandle struct {
	name      string
	kind      connectors.Kind
	state     func() connectors.State
	sessions  func() uint64
	lastErr   func() string
	lastErrAt func() time.Time                         // when lastErr happened; nil if unknown
	nextTry   func() time.Time                         // when it connects again while it waits to (zero otherwise); nil if unknown
	refused   func() []opcua.RefusedNode               // OPC UA: nodes the server refuses; nil for MQTT
	opcStats  func() opcua.Stats                       // OPC UA: the source's counters (nodes polled, overflows, sessions closed, login checks, heartbeat rebuilds); nil for MQTT
	publish   func(topic string, payload []byte) error // MQTT: a QoS 0 publish on the connection; nil for OPC UA
	run       func(context.Context) error
	// settings are the connector's configuration (without its logger): a
	// reload keeps a running source whose settings did not change.
	settings any
	cancel   context.CancelFunc // set when started
	done     chan struct{}      // closed when run returned
	// broken: the source could not be built (its connector refused its
	// configuration, or its password could not be read): down, not run.
	broken bool
	// closesKept: OPC UA, whether the source would close the session kept
	// as these bytes (opcua.Source.ClosesKept); nil for MQTT and broken
	closesKept func([]byte) bool
}

// gaveUp reports whether the source's run has returned while it was to
// run: it gave up (a TLS file it cannot use).
func (h *sourceHandle) gaveUp() bool {
	if h.done == nil {
		return false
	}
	select {
	case <-h.done:
		return true
	default:
		return false
	}
}

// nextAttemptSeconds is how long until the source, in state, connects
// again: 0 when it is connected, its attempt is due, or it is not known.
// Status's next_attempt_seconds and the next_attempt_seconds metric.
func (h *sourceHandle) nextAttemptSeconds(state connectors.State) float64 {
	if h.nextTry == nil || state == connectors.StateConnected {
		return 0
	}
	next := h.nextTry()
	if next.IsZero() {
		return 0
	}
	return max(0, time.Until(next).Seconds())
}

// readPassword reads a source's password from its file or environment
// variable; with neither there is none.
func readPassword(file, env string) (string, error) {
	switch {
	case env != "":
		v, err := config.EnvSecret(env)
		if err != nil {
			// A reload keeps the process's environment: only a restart
			// brings a variable set since.
			err = fmt.Errorf("password_env: %w in the agent's environment (set it in a root-only EnvironmentFile= of a drop-in, systemctl edit plantedge, then restart the agent: a reload does not change its environment)", err)
		}
		return v, err
	case file != "":
		v, err := config.ReadSecret(file)
		if errors.Is(err, fs.ErrPermission) {
			err = fmt.Errorf("%w: %s", err, unreadableSecretHint(file))
		}
		return v, err
	}
	return "", nil
}

// unreadableSecretHint says what to do about a password file the agent's
// user may not read (validate says the same for the service's user).
func unreadableSecretHint(file string) string {
	who, group := strconv.Itoa(os.Geteuid()), strconv.Itoa(os.Getegid())
	if u, err := user.LookupId(who); err == nil {
		who = u.Username
	}
	if g, err := user.LookupGroupId(group); err == nil {
		group = g.Name
	}
	return fmt.Sprintf("not readable by %s, the agent's user: chgrp %s %s && chmod 640 %s, then systemctl reload plantedge; "+
		"or keep it root-only and hand it over as a systemd credential (a drop-in, systemctl edit plantedge: "+
		"LoadCredential=<name>:%s, and password_file: <name>), then restart", who, group, file, file, file)
}

// OPCUAConfig is the connector configuration for server s of cfg watching
// nodes (an array element by its index); it reads the password file.
func OPCUAConfig(cfg *config.Config, s config.OPCUAServer, nodes []config.OPCUARef, log *slog.Logger) (opcua.Config, error) {
	password, err := readPassword(s.PasswordFile, s.PasswordEnv)
	if err != nil {
		return opcua.Config{}, fmt.Errorf("opcua %s: %w", s.Name, err)
	}
	ids := make([]string, len(nodes))
	var index map[int]uint32
	for i, n := range nodes {
		ids[i] = n.Node
		if n.Index != nil {
			if index == nil {
				index = map[int]uint32{}
			}
			index[i] = *n.Index
		}
	}
	return opcua.Config{
		Name: s.Name, Endpoint: s.Endpoint,
		SecurityPolicy: s.SecurityPolicy, SecurityMode: s.SecurityMode,
		CertFile: s.CertFile, KeyFile: s.KeyFile, DataDir: cfg.DataDir,
		ServerThumbprint: s.ServerThumbprint,
		Username:         s.Username, Password: password,
		Mode:               s.Mode,
		PublishingInterval: s.PublishingInterval.D(), SamplingInterval: s.SamplingInterval.D(),
		PollInterval: s.PollInterval.D(), QueueSize: s.QueueSize,
		HeartbeatTimeout: s.HeartbeatTimeout.D(), BackoffMax: s.BackoffMax.D(),
		Nodes: ids, Index: index,
		Logger: log,
	}, nil
}

// MQTTConfig is the connector configuration for broker b subscribing to
// topics; it reads the password file.
func MQTTConfig(b config.MQTTBroker, topics []string, log *slog.Logger) (mqtt.Config, error) {
	password, err := readPassword(b.PasswordFile, b.PasswordEnv)
	if err != nil {
		return mqtt.Config{}, fmt.Errorf("mqtt %s: %w", b.Name, err)
	}
	return mqtt.Config{
		Name: b.Name, URL: b.URL, ClientID: b.ClientID,
		Username: b.Username, Password: password,
		CAFile: b.CAFile, CertFile: b.CertFile, KeyFile: b.KeyFile, ServerName: b.ServerName,
		InsecureSkipVerify: b.InsecureSkipVerify,
		Topics:             topics,
		KeepAlive:          b.KeepAlive.D(), BackoffMax: b.BackoffMax.D(),
		Logger: log,
	}, nil
}

// CheckSources has each source's connector check the configuration cfg
// gives it, as a start or a reload does when it builds the sources: what
// only the connector refuses would otherwise take the whole server or
// broker down (the yaml probe: validate said OK, a reload took a PLC's
// machines down). With readSecrets false the password files and variables
// are not read (validate runs as someone who may not read them).
func CheckSources(cfg *config.Config, readSecrets bool) error {
	m, err := mapping.New(cfg)
	if err != nil {
		return err
	}
	var errs []error
	bad := sourceErrors(cfg, m, readSecrets)
	for _, k := range slices.Sorted(maps.Keys(bad)) {
		errs = append(errs, bad[k])
	}
	return errors.Join(errs...)
}

// sourceErrors are the errors of the sources of cfg their connectors
// refuse, by kind and name.
func sourceErrors(cfg *config.Config, m *mapping.Mapper, readSecrets bool) map[string]error {
	errs := map[string]error{}
	for _, s := range cfg.OPCUA {
		nodes := m.OPCUANodes(s.Name)
		if len(nodes) == 0 {
			continue
		}
		if !readSecrets {
			s.PasswordFile, s.PasswordEnv = "", ""
		}
		oc, err := OPCUAConfig(cfg, s, nodes, nil)
		if err == nil {
			_, err = opcua.New(oc, discard{})
		}
		if err != nil {
			errs["opcua/"+s.Name] = err
		}
	}
	for _, b := range cfg.MQTT {
		topics := m.MQTTTopics(b.Name)
		if len(topics) == 0 {
			continue
		}
		if !readSecrets {
			b.PasswordFile, b.PasswordEnv = "", ""
		}
		mc, err := MQTTConfig(b, topics, nil)
		if err == nil {
			_, err = mqtt.New(mc, discard{})
		}
		if err != nil {
			errs["mqtt/"+b.Name] = err
		}
	}
	return errs
}

// discard is a connectors.Sink for a source only built to be checked.
type discard struct{}

func (discard) Deliver(context.Context, connectors.Sample) error { return nil }

// writeStallAfter: a buffer write (a commit and its fdatasync: milliseconds
// on a sound disk, a second or two on a slow SD card under load) running
// this long is a disk that does not complete writes.
const writeStallAfter = 30 * time.Second

// writeStalled is for how long the buffer write in progress has run, when
// that is past WriteStallAfter (a frozen or failing disk, a hung network
// file system: the write neither fails nor returns, so no error tells,
// and no value is taken meanwhile); 0 otherwise, or before the buffer is
// open.
func (a *Agent) writeStalled() time.Duration {
	if d := a.writeRunning(); d >= cmp.Or(a.opts.WriteStallAfter, writeStallAfter) {
		return d
	}
	return 0
}

// The buffer file's mapped pages are given back to the page cache every
// dropPagesEvery while the file is dropPagesFrom or larger (dropPages).
// Every 10 s, an agent ingesting 1,000 changing tags held up to 13 MiB of
// the file's pages between two drops, every 2 s up to 8 (the many-PLCs
// benchmark over 5 minutes, sampled by mapping; peak RSS 63.2–63.6 MB
// against 57.3–59.9). A drop is one madvise over the mapping; the pages
// still in use are mapped again from the page cache.
const (
	dropPagesEvery = 2 * time.Second
	dropPagesFrom  = 16 << 20
)

// dropPages gives the buffer file's mapped pages back to the page cache
// (buffer.Queue.DropMappedPages) every dropPagesEvery while the file is
// large: appends and acknowledgements touch each page of a growing backlog
// through bbolt's mapping, and those pages stayed the agent's resident
// memory, which a systemd MemoryMax= counts (the drain probe: a 6-hour
// backlog of 100 machines, a 96 MiB file, took RSS to 67 MB while it grew
// and 71 MB after its first round, over SPEC's 64 MB; the scans of a
// backlog drop them already).
func (a *Agent) dropPages(ctx context.Context) {
	every(ctx, dropPagesEvery, func() {
		if a.buf.Stats().FileBytes >= dropPagesFrom {
			_ = a.buf.DropMappedPages()
		}
	})
}

// step names what Run's start does next, for watchStart.
func (a *Agent) step(what string) { a.startStep.Store(&what) }

// watchStart watches Run's start until the buffer is open (watchWrites
// takes over then): a step that has not completed after WriteStallAfter is
// logged, once, and said to systemd (systemctl status), and so is the
// start going on. Every step before is disk work (the data directory, the
// buffer file's open, its reads and first writes); on a frozen or failing
// disk or a hung network file system the start waited without a word
// until systemd's start timeout killed it (the stall review). done stops
// the watch and may be called again.
func (a *Agent) watchStart(dir string) (done func()) {
	after := cmp.Or(a.opts.WriteStallAfter, writeStallAfter)
	began := time.Now()
	ctx, cancel := context.WithCancel(context.Background())
	exited := make(chan struct{})
	var said bool // read after exited
	go func() {
		defer close(exited)
		every(ctx, after/6, func() {
			if said || time.Since(began) < after {
				return
			}
			said = true
			step := *a.startStep.Load()
			a.log.Warn("START WAITS ON THE DISK: "+step+" has not completed (a frozen or failing disk, a hung network file system); no value is taken meanwhile; check the disk (dmesg)",
				"dir", dir, "waiting_for", time.Since(began).Round(time.Second))
			_ = sdNotify("STATUS=start waits on the disk: " + step + " has not completed; check the disk (dmesg)")
		})
	}()
	var once sync.Once
	return func() {
		once.Do(func() {
			cancel()
			<-exited
			if said {
				a.log.Info("the start's wait on the disk ended", "waited", time.Since(began).Round(time.Second))
			}
		})
	}
}

// watchWrites logs a buffer write that stalls (writeStalled), once, and
// when it completes: the journal is where a technician looks first.
func (a *Agent) watchWrites(ctx context.Context) {
	var said time.Time // the start of the stalled write last logged
	after := cmp.Or(a.opts.WriteStallAfter, writeStallAfter)
	every(ctx, after/6, func() {
		since := a.buf.WriteRunningSince()
		// After since: a write ending between the two is seen running now
		// and ended at the next look, not also in longest then.
		longest := a.buf.TakeLongestWrite()
		switch {
		case !said.IsZero() && !since.Equal(said):
			// Ended, but not always well: a failing disk may answer the
			// stalled write with an error (the stall review: "the disk
			// takes writes again" was said of one that failed).
			if wf := a.writeFail.Load(); wf != nil {
				a.log.Warn("the stalled buffer write ended, and buffer writes fail: "+wf.Err, "stalled_for", time.Since(said).Round(time.Second))
			} else {
				a.log.Info("the stalled buffer write ended; the disk takes writes again", "stalled_for", time.Since(said).Round(time.Second))
			}
			said = time.Time{}
		case said.IsZero() && a.writeStalled() > 0:
			said = since
			a.log.Warn("BUFFER WRITE STALLED: the disk does not complete a write (a frozen or failing disk, a hung network file system); no value is taken meanwhile; check the disk (dmesg)",
				"dir", filepath.Dir(a.cfg.Load().BufferPath()), "running_for", time.Since(since).Round(time.Second))
		case said.IsZero() && longest >= after:
			// Stalled past the mark and ended between two looks (the
			// stall review: one of 30-35 s was never said).
			a.log.Warn("A BUFFER WRITE STALLED and has ended: the disk did not complete it for that long (a frozen or failing disk, a hung network file system); no value was taken meanwhile; check the disk (dmesg)",
				"dir", filepath.Dir(a.cfg.Load().BufferPath()), "stalled_for", longest.Round(time.Second))
		}
	})
}

// mqttEpochs keeps the number of each MQTT source's last connection
// (Sample.Epoch), in memory and in the buffer (mqttEpochKey), so that a
// source made anew — at a start, at a reload — numbers its connections on:
// the mapping takes a DUP for a copy of a message it took only when that
// was taken in the connection before (or in the same one).
type mqttEpochs struct {
	mu    sync.Mutex
	last  map[string]uint64 // by source name
	saved map[string]uint64 // the last number the buffer holds
	wmu   sync.Mutex        // one write at a time, the highest number last
	wg    sync.WaitGroup    // the writes under way (wait)
}

// mqttEpochKey is the buffer meta key holding the number of the MQTT
// source's last connection.
func mqttEpochKey(name string) string { return "mqtt/epoch/" + name }

// base is the number of source name's last connection: the one noted in
// this process, else the buffer's (0 when it has none).
func (e *mqttEpochs) base(buf *buffer.Queue, name string) uint64 {
	e.mu.Lock()
	defer e.mu.Unlock()
	if v, ok := e.last[name]; ok {
		return v
	}
	var v uint64
	if b, err := buf.Meta(mqttEpochKey(name)); err == nil {
		v, _ = strconv.ParseUint(string(b), 10, 64)
	}
	if e.last == nil {
		e.last, e.saved = map[string]uint64{}, map[string]uint64{}
	}
	e.last[name], e.saved[name] = v, v
	return v
}

// note records that source name's connection epoch was made, and writes
// the highest number noted to the buffer (in the background: OnConnect
// must not block).
func (e *mqttEpochs) note(buf *buffer.Queue, name string, epoch uint64) {
	e.mu.Lock()
	if e.last == nil {
		e.last, e.saved = map[string]uint64{}, map[string]uint64{}
	}
	e.last[name] = max(e.last[name], epoch)
	e.mu.Unlock()
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		e.wmu.Lock()
		defer e.wmu.Unlock()
		e.mu.Lock()
		v, done := e.last[name], e.saved[name] >= e.last[name]
		e.mu.Unlock()
		if done {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if buf.PutMeta(ctx, buffer.KV{Key: mqttEpochKey(name), Value: []byte(strconv.FormatUint(v, 10))}) == nil {
			e.mu.Lock()
			e.saved[name] = max(e.saved[name], v)
			e.mu.Unlock()
		}
	}()
}

// wait waits for the writes note began: at the stop, before the buffer
// closes (a connection made just before the stop and not kept would make
// the next run number its first one as that, and take a record two
// connections old for one of the connection before).
func (e *mqttEpochs) wait() { e.wg.Wait() }

// mqttSessionKey is the buffer meta key holding "<url> <client_id>" of the
// MQTT source name once the broker gave it a session.
func mqttSessionKey(name string) string { return "mqtt/session/" + name }

// mqttSessionID is what keys the agent's session at an MQTT broker: the
// broker's address and the client id (the value kept under mqttSessionKey).
func mqttSessionID(b config.MQTTBroker) string { return b.URL + " " + b.ClientID }

// sameSession is a session id (mqttSessionID) compared by where its URL
// connects (config.BrokerAddr: host case, a default port written or not,
// localhost for 127.0.0.1): the broker keys the session by client_id
// alone, so a URL written another way is the same session (the review).
func sameSession(id string) string {
	u, clientID, _ := strings.Cut(id, " ")
	return config.BrokerAddr(u) + " " + clientID
}

// brokerNames returns a function giving, for the name of an MQTT broker
// entry of an earlier configuration, the name of next's entry that holds
// the same session (same URL and client_id; the earlier entry's session
// found by prev's entries, or when prev is nil by the session the buffer
// file noted for the name), whatever its name; when no entry of next holds
// it, the name itself. The session keeps the filters subscribed under the
// old name: the review found them coming as strays for good after a
// rename.
func (a *Agent) brokerNames(prev, next *config.Config) func(string) string {
	// Compared by sameSession: a URL written another way in the same edit
	// as a rename is the same session.
	byID := map[string]string{}
	for _, b := range next.MQTT {
		byID[sameSession(mqttSessionID(b))] = b.Name
	}
	return func(name string) string {
		// The session first: an entry renamed while another took its old
		// name (or two names swapped) leaves the filters with the session
		// that holds them, the renamed entry's (the stall/unsubscribe
		// review: kept under the name, they came as strays for good).
		var id string
		if prev != nil {
			for _, b := range prev.MQTT {
				if b.Name == name {
					id = mqttSessionID(b)
				}
			}
		} else if v, err := a.buf.Meta(mqttSessionKey(name)); err == nil {
			id = string(v)
		}
		if to, ok := byID[sameSession(id)]; ok && id != "" {
			return to
		}
		return name
	}
}

func (a *Agent) buildSources(cfg *config.Config) ([]*sourceHandle, error) {
	m := a.mapper.Load()
	var out []*sourceHandle
	var errs []error
	// A source that cannot be built (an unreadable password file, a bad
	// certificate) is down with its error in status; the others run.
	broken := func(name string, kind connectors.Kind, err error) {
		errs = append(errs, err)
		msg := err.Error()
		out = append(out, &sourceHandle{
			name: name, kind: kind,
			state:    func() connectors.State { return connectors.StateDown },
			sessions: func() uint64 { return 0 },
			lastErr:  func() string { return msg },
			run:      func(ctx context.Context) error { <-ctx.Done(); return nil },
			settings: msg,
			broken:   true,
		})
	}
	for _, s := range cfg.OPCUA {
		nodes := m.OPCUANodes(s.Name)
		if len(nodes) == 0 {
			continue
		}
		oc, err := OPCUAConfig(cfg, s, nodes, a.log)
		if err != nil {
			broken(s.Name, connectors.KindOPCUA, err)
			continue
		}
		settings := oc
		settings.Logger = nil
		oc.Pins = nsPins{a: a, source: s.Name, endpoint: s.Endpoint}
		oc.Sessions = opcSessions{a: a, source: s.Name}
		name := s.Name
		generated := generatesCert(s)
		oc.OnConnect = func() {
			a.countSourceConnected(connectors.KindOPCUA, name, time.Now())
			if generated {
				a.noteGeneratedCert(name)
			}
		}
		oc.OnDisconnect = func() { a.countSourceDown(connectors.KindOPCUA, name, true, time.Now()) }
		oc.ServerCertificates = a.peerCerts(CertOPCUAServer, name)
		src, err := opcua.New(oc, a)
		if err != nil {
			broken(s.Name, connectors.KindOPCUA, err) // it names the source
			continue
		}
		out = append(out, &sourceHandle{
			name: s.Name, kind: connectors.KindOPCUA, state: src.State, run: src.Run, closesKept: src.ClosesKept,
			sessions:  func() uint64 { return src.Stats().SessionsCreated },
			lastErr:   func() string { return src.Stats().LastError },
			lastErrAt: func() time.Time { return src.Stats().LastErrorTime },
			nextTry:   func() time.Time { return src.Stats().NextAttempt },
			refused:   func() []opcua.RefusedNode { return src.Stats().Refused },
			opcStats:  src.Stats,
			settings:  settings,
		})
	}
	for _, b := range cfg.MQTT {
		topics := m.MQTTTopics(b.Name)
		if len(topics) == 0 {
			continue
		}
		mc, err := MQTTConfig(b, topics, a.log)
		if err != nil {
			broken(b.Name, connectors.KindMQTT, err)
			continue
		}
		a.stateMu.Lock()
		mc.Unsubscribe = slices.Clone(a.unsubscribe[b.Name])
		a.stateMu.Unlock()
		settings := mc
		settings.Logger = nil
		settings.Unsubscribe = nil // a clean-up of the session, no reason to reconnect
		// The broker's session for this client id outlives the agent: a
		// start that finds it gone (the broker restarted without
		// persistence while the agent was down too) reports the loss.
		key, id := mqttSessionKey(b.Name), mqttSessionID(b)
		if v, err := a.buf.Meta(key); err == nil && sameSession(string(v)) == sameSession(id) {
			// (by sameSession: a URL written another way since, alone,
			// hid one lost session at that start — the stall review)
			mc.HadSession = true
		}
		if len(mc.Unsubscribe) > 0 {
			name := b.Name
			var once sync.Once
			mc.Unsubscribed = func(filters []string) {
				once.Do(func() {
					go func() {
						ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
						defer cancel()
						a.unsubscribed(ctx, name, filters)
					}()
				})
			}
		}
		var marked atomic.Bool
		broker := b.Name
		mc.EpochBase = a.epochs.base(a.buf, broker)
		mc.OnDisconnect = func() { a.countSourceDown(connectors.KindMQTT, broker, true, time.Now()) }
		mc.PeerCertificates = a.peerCerts(CertMQTTServer, broker)
		mc.OnConnect = func(_ bool, epoch uint64) {
			a.countSourceConnected(connectors.KindMQTT, broker, time.Now())
			a.epochs.note(a.buf, broker, epoch)
			if mc.HadSession || !marked.CompareAndSwap(false, true) {
				return
			}
			go func() {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				if err := a.buf.PutMeta(ctx, buffer.KV{Key: key, Value: []byte(id)}); err != nil {
					marked.Store(false) // the next connect tries again
				}
			}()
		}
		src, err := mqtt.New(mc, a)
		if err != nil {
			broken(b.Name, connectors.KindMQTT, fmt.Errorf("mqtt %s: %w", b.Name, err))
			continue
		}
		out = append(out, &sourceHandle{
			name: b.Name, kind: connectors.KindMQTT, state: src.State, run: src.Run, publish: src.Publish,
			sessions:  func() uint64 { return src.Stats().Connects },
			lastErr:   func() string { return src.Stats().LastError },
			lastErrAt: func() time.Time { return src.Stats().LastErrorTime },
			nextTry:   func() time.Time { return src.Stats().NextAttempt },
			refused: func() []opcua.RefusedNode {
				var r []opcua.RefusedNode
				for _, t := range src.Stats().Refused {
					r = append(r, opcua.RefusedNode{Node: t.Topic, Status: fmt.Sprintf("subscription refused by the broker (code 0x%02x): its ACL must let %s read it", t.Code, b.ACLSubject())})
				}
				return r
			},
			settings: settings,
		})
	}
	return out, errors.Join(errs...)
}

// startSources starts one goroutine per source of cfg under ctx.
func (a *Agent) startSources(ctx context.Context, cfg *config.Config) {
	a.srcMu.Lock()
	a.srcCtx = ctx
	a.srcMu.Unlock()
	a.applySources(cfg)
	a.srcStarted.Store(true)
}

// sourcesStarted reports whether Run has started the sources (they may
// have stopped since).
func (a *Agent) sourcesStarted() bool { return a.srcStarted.Load() }

// applySources makes the running sources those of cfg. A source that cannot
// be built is logged and shown as down; the others run. A source already
// running with the same settings (a reload that changed other things) is
// kept as it is: no reconnect, no new session.
func (a *Agent) applySources(cfg *config.Config) {
	srcs, err := a.buildSources(cfg)
	if err != nil {
		a.log.Error("sources not started (down in status until fixed and reloaded)", "err", err)
	}
	a.srcMu.Lock()
	parent, old := a.srcCtx, a.sources
	a.srcMu.Unlock()
	if parent == nil {
		return // not started yet: Run starts them from the configuration in force
	}
	running := map[string]*sourceHandle{}
	for _, h := range old {
		running[string(h.kind)+"/"+h.name] = h
	}
	var fresh []*sourceHandle
	for i, s := range srcs {
		k := string(s.kind) + "/" + s.name
		// One that gave up is started again: its cause (a CA file) may be
		// fixed although its settings are the same (the mosquitto probe:
		// only a restart brought it back).
		if h := running[k]; h != nil && reflect.DeepEqual(h.settings, s.settings) && !h.gaveUp() {
			srcs[i] = h // unchanged: keep it running
			delete(running, k)
			continue
		}
		fresh = append(fresh, s)
	}
	// Removed or changed ones stop first: a changed broker source must not
	// meet itself under one client id.
	var stop []*sourceHandle
	for _, h := range running {
		stop = append(stop, h)
	}
	stopHandles(stop)
	a.sweepKeptSessions(cfg, srcs, fresh)
	for _, s := range fresh {
		sctx, cancel := context.WithCancel(parent)
		s.cancel, s.done = cancel, make(chan struct{})
		go func() {
			defer close(s.done)
			// (Stopped, it is not connected: what runs until it connects
			// again is no counter's silence.)
			defer func() { a.countSourceDown(s.kind, s.name, false, time.Now()) }()
			if err := s.run(sctx); err != nil && sctx.Err() == nil {
				a.log.Error("source stopped: it starts again at the next reload (systemctl reload plantedge) once the cause is fixed", "source", s.name, "err", err)
			}
		}()
	}
	a.srcMu.Lock()
	a.sources = srcs
	a.srcMu.Unlock()
}

// stopSources stops every source and waits for them.
func (a *Agent) stopSources() {
	a.srcMu.Lock()
	srcs := a.sources
	a.sources = nil
	a.srcMu.Unlock()
	stopHandles(srcs)
}

func stopHandles(hs []*sourceHandle) {
	for _, h := range hs {
		if h.cancel != nil {
			h.cancel()
		}
	}
	for _, h := range hs {
		if h.done != nil {
			<-h.done
		}
	}
}

func (a *Agent) sourceList() []*sourceHandle {
	a.srcMu.Lock()
	defer a.srcMu.Unlock()
	return append([]*sourceHandle(nil), a.sources...)
}

// largeJump is an increase in one reading worth a warning: more pieces
// than a line makes in a day, more likely a tag read as the wrong thing.
const largeJump = 100_000

// jump is the increase in one reading worth a warning for a counter of
// range ro (its rollover, 0: none): largeJump, or a quarter of the range
// when that is smaller (16,384 pieces for a 16-bit counter, which
// largeJump could never warn of).
func jump(ro uint64) float64 {
	if ro == 0 {
		return largeJump
	}
	return min(largeJump, float64(ro)/4)
}

// num is a counter value or quantity for a log line: a whole number as an
// integer, so a 32-bit count shows all its digits (4294967290, not
// 4.29496729e+09); a part as Qty writes it (0.3, not the
// 0.30000000000000004 of three steps of a counter with factor 0.1).
func num(f float64) any {
	if f == math.Trunc(f) && math.Abs(f) < 1<<53 {
		return int64(f)
	}
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return f
	}
	return logQty(f)
}

// logQty is a quantity in a log line: a number in JSON logs, the same
// digits in text ones (slog writes a float64 with an exponent there).
type logQty float64

func (q logQty) MarshalText() ([]byte, error) { return []byte(Qty(float64(q))), nil }
func (q logQty) MarshalJSON() ([]byte, error) { return []byte(Qty(float64(q))), nil }

// noteEvent keeps per-machine run state for status and counts counter
// anomalies for metrics.
func (a *Agent) noteEvent(ev mapping.Event) {
	if ev.Kind != mapping.EventCount && ev.Kind != mapping.EventStale {
		if ahead := time.Until(ev.Time); ahead > mapping.ClockAhead {
			a.eventLog.log("ahead "+ev.Machine, a.log, slog.LevelWarn,
				"a stop or run stamped ahead of this machine's clock: a wrong clock or time zone on the source — or this box's clock not set yet (every source ahead by the same)? Its downtime is dated there; once the clock is set right, stops are taken in the new time",
				"machine", ev.Machine, "signal", ev.Signal, "ahead", ahead.Round(time.Second), "source_time", ev.Time)
		}
		if ev.ClockBack > 0 {
			a.eventLog.log("clock "+ev.Machine, a.log, slog.LevelWarn, "source clock went back (it was ahead and was set right, or it was set back); its stops are taken in the new time from here",
				"machine", ev.Machine, "signal", ev.Signal, "by", ev.ClockBack.Round(time.Second))
		}
		if ev.BoxStep != 0 {
			a.eventLog.log("boxclock "+ev.Machine, a.log, slog.LevelWarn,
				"this box's clock was stepped during a stop whose ends carried no source time (NTP setting a box that started with its clock behind, or someone setting it): the line lasts as long as the agent saw the stop, dated by the clock as it is now (see docs/config.md: This box's clock)",
				"machine", ev.Machine, "stepped", ev.BoxStep.Round(time.Second), "stop_start", ev.Start, "stop_end", ev.End)
		}
	}
	if ev.Kind == mapping.EventStale {
		a.metrics.staleSamples.Inc(ev.Machine, string(ev.Signal))
		a.eventLog.log("stale "+ev.Machine, a.log, slog.LevelWarn,
			"a run-state or stop-reason value stamped before the last one taken was ignored: the source sends out of order, or its clock went back (then its stops are missed until the clock passes the last time; set the clock, or map a counter from the same source, which shows a clock that went back)",
			"machine", ev.Machine, "signal", ev.Signal, "source_time", ev.Time, "last", ev.Start)
	}
	switch ev.Kind {
	case mapping.EventCount:
		// Logged at most once a minute per machine and kind: a signal
		// mapped by mistake (a temperature read as a counter) would
		// otherwise fill the journal. The metrics count every one.
		if ev.Reset {
			a.metrics.counterResets.Inc(ev.Machine, string(ev.Signal))
			args := []any{"machine", ev.Machine, "signal", ev.Signal, "from", num(ev.From), "raw", num(ev.Raw)}
			if h := wrapHint(ev.From, ev.Raw); h != "" && ev.Range == 0 {
				args = append(args, "hint", h)
			}
			a.eventLog.log("reset "+ev.Machine, a.log, slog.LevelWarn, "counter reset", args...)
		}
		if ev.NewServer != "" {
			a.log.Warn("a counter is now read from another server (the OPC UA endpoint or MQTT broker url was changed: a replacement PLC?): counting starts from its value there; pieces the old one counted after its last value read are not booked",
				"machine", ev.Machine, "signal", ev.Signal, "was", ev.NewServer, "last", num(ev.From), "now", num(ev.Raw))
		}
		if ev.NewSource != "" {
			a.log.Info("a counter's first value from the node, topic or field it now reads (the mapping was edited): counting starts from it; pieces made between the old source's last value and it are not counted",
				"machine", ev.Machine, "signal", ev.Signal, "was", ev.NewSource, "last", num(ev.From), "now", num(ev.Raw))
		}
		if ev.Replaced {
			a.log.Warn("the machine's replaced mark changed: counting starts from the replacement's value; pieces the old device counted after its last value read are not booked",
				"machine", ev.Machine, "signal", ev.Signal, "last", num(ev.From), "now", num(ev.Raw))
		}
		if ev.StepBack {
			a.metrics.counterSteps.Inc(ev.Machine, string(ev.Signal))
			a.eventLog.log("step "+ev.Machine, a.log, slog.LevelWarn, "counter went back a little (an out-of-order or corrected reading); ignored, counting resumes above the last value",
				"machine", ev.Machine, "signal", ev.Signal, "from", num(ev.From), "raw", num(ev.Raw))
		}
		if ev.Marker {
			a.metrics.counterSteps.Inc(ev.Machine, string(ev.Signal))
			a.eventLog.log("marker "+ev.Machine, a.log, slog.LevelWarn,
				"counter read the top of its range (rollover − 1: a -1, or 65535), far above what it makes in that time: taken for a gateway's \"no value\" marker and not counted; counting goes on from the last value",
				"machine", ev.Machine, "signal", ev.Signal, "last", num(ev.From), "raw", num(ev.Raw))
		}
		if ev.Glitch {
			a.metrics.counterGlitches.Inc(ev.Machine, string(ev.Signal))
			a.eventLog.log("glitch "+ev.Machine, a.log, slog.LevelWarn,
				"counter came back near its value before the last reset faster than it counts: that reset was a glitch (a gateway restarting, a wrong reading), not a restart; only the pieces above that value count",
				"machine", ev.Machine, "signal", ev.Signal, "from", num(ev.From), "dip", num(ev.Dip), "raw", num(ev.Raw), "pieces", num(ev.Pieces))
		}
		if ev.Rollover {
			a.metrics.counterRollovers.Inc(ev.Machine, string(ev.Signal))
			a.eventLog.log("rollover "+ev.Machine, a.log, slog.LevelInfo, "counter rollover", "machine", ev.Machine, "signal", ev.Signal, "raw", num(ev.Raw))
		}
		switch {
		case ev.Delta >= largeJump || !ev.Rollover && ev.Delta >= jump(ev.Range):
			a.eventLog.log("jump "+ev.Machine, a.log, slog.LevelWarn, "counter jumped by a large amount in one reading (counted; a mis-mapped tag? If its pieces were not made: correct the work order's quantity in Odoo, then plantedge accept-qty MACHINE keeps it)",
				"machine", ev.Machine, "signal", ev.Signal, "pieces", num(ev.Pieces), "raw", num(ev.Raw))
		case ev.Implausible:
			a.eventLog.log("jump "+ev.Machine, a.log, slog.LevelWarn,
				"counter jumped far above what it makes in that time (counted; another machine's value published on its topic? a wrong reading? a preset? If the next value falls back, the jump's pieces were not made: correct the work order's quantity in Odoo, then plantedge accept-qty MACHINE keeps it)",
				"machine", ev.Machine, "signal", ev.Signal, "pieces", num(ev.Pieces), "from", num(ev.Raw-ev.Delta), "raw", num(ev.Raw))
		}
		if ev.Behind > 0 {
			a.eventLog.log("behind "+ev.Machine, a.log, slog.LevelWarn,
				"counter values keep coming lower than the last one and stamped before it: held as possible repeats (a PLC restarted with its clock behind? set its clock); they count once the counter passes the last value or its clock is right",
				"machine", ev.Machine, "signal", ev.Signal, "held", ev.Behind, "last", num(ev.From), "raw", num(ev.Raw), "source_time", ev.Time)
		}
		if ev.ClockBack > 0 {
			a.eventLog.log("clock "+ev.Machine, a.log, slog.LevelWarn, "source clock went back; its values are taken in the new time from here",
				"machine", ev.Machine, "signal", ev.Signal, "by", ev.ClockBack.Round(time.Second))
		}
	}
	if ev.Kind == mapping.EventEndStored && !a.belowMinStop(mapping.Event{Machine: ev.Machine, Start: ev.Start, End: ev.BookedEnd}) {
		// (One min_stop left without a line at the BIRTH books none now.)
		a.log.Info("a stop a Sparkplug BIRTH ended (to the BIRTH) ended earlier, as its edge node stored: its line takes that end",
			"machine", ev.Machine, "stop_start", ev.Start, "stop_end", ev.End, "booked_end", ev.BookedEnd)
	}
	if ev.Kind == mapping.EventRunning && ev.Stored {
		// (One shorter than min_stop books no line: only the stop the BIRTH
		// found is said.)
		line := ": its line ends there"
		if a.belowMinStop(ev) {
			line = ", shorter than min_stop: it books no line"
		}
		a.log.Info("a stop a Sparkplug BIRTH found on (stopped) ended while its edge node was away, as it stored"+line+
			", and the stop the BIRTH found is booked from the BIRTH, or from the stop the edge node stored after",
			"machine", ev.Machine, "stop_start", ev.Start, "stop_end", ev.End)
	}
	if ev.Kind == mapping.EventReasonLate && !a.belowMinStop(ev) {
		a.log.Info("a downtime reason stamped before the end of the last stop came after it: that stop's line takes it",
			"machine", ev.Machine, "reason", ev.Reason, "loss", ev.Loss, "source_time", ev.Time, "stop_start", ev.Start, "stop_end", ev.End)
	}
	if ev.LossDefaulted && (ev.Kind == mapping.EventRunning || ev.Kind == mapping.EventStopped) {
		if ev.Kind == mapping.EventRunning { // once per downtime: its end
			a.metrics.unmappedReasons.Inc(ev.Machine)
		}
		// Once an hour per machine and code: a PLC code missing from the
		// map would otherwise warn at every stop, for good (the metric
		// counts them all). And at most unmappedCodesLogged codes a machine
		// an hour: a source sending an alarm's text as the reason (a count
		// or a time in it) makes a new code at every stop (the spec audit:
		// 13,232 lines for 20,000 texts).
		key := ev.Machine + "\x00" + ev.Reason
		if a.reasonLog.skip(key) {
			return
		}
		if !a.reasonBudget.take(ev.Machine) {
			a.reasonOverLog.log(ev.Machine, a.log, slog.LevelWarn,
				fmt.Sprintf("more downtime reasons not in the map than are said one by one (%d codes an hour per machine); using the default loss "+
					"(is the reason a text with a count or a time in it? read the machine's reason code instead, or map the codes)", unmappedCodesLogged),
				"machine", ev.Machine, "reason", ev.Reason, "loss", ev.Loss)
			return
		}
		a.reasonLog.log(key, a.log, slog.LevelWarn,
			"downtime reason not in the map; using the default loss (said once an hour per machine and code; add it to the machine's downtime_reason map)",
			"machine", ev.Machine, "reason", ev.Reason, "loss", ev.Loss)
	}
}

// unmappedCodesLogged is how many codes missing from a machine's reason
// map are logged one by one an hour.
const unmappedCodesLogged = 10

// codeBudget lets n things a key through every interval.
type codeBudget struct {
	mu    sync.Mutex
	every time.Duration
	n     int
	m     map[string]*budgetWindow
}

type budgetWindow struct {
	from  time.Time
	taken int
}

// take reports whether key may have one more this interval, and counts it.
func (b *codeBudget) take(key string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	now := time.Now()
	if b.m == nil {
		b.m = map[string]*budgetWindow{}
	}
	w := b.m[key]
	if w == nil || now.Sub(w.from) >= b.every {
		if len(b.m) >= rateLogsKept {
			for k, o := range b.m { // (machines come and go with the configuration)
				if now.Sub(o.from) >= b.every {
					delete(b.m, k)
				}
			}
		}
		w = &budgetWindow{from: now}
		b.m[key] = w
	}
	if w.taken >= b.n {
		return false
	}
	w.taken++
	return true
}

// stopStart is when the machine's current stop began (for an open line);
// the caller holds stateMu.
func (a *Agent) stopStart(machine string, fallback time.Time) time.Time {
	if ms := a.state.Machines[machine]; ms != nil && !ms.StopStart.IsZero() {
		return ms.StopStart
	}
	return fallback
}

// shortStop reports whether the downtime ev closes is shorter than its
// machine's min_stop, and counts it: such a stop books no line. (A line
// opened at the stop, with block_workcenter, is closed whatever its length:
// the caller asks only for stops that opened none.)
func (a *Agent) shortStop(ev mapping.Event) bool {
	if !a.belowMinStop(ev) {
		return false
	}
	mc := findMachine(a.cfg.Load(), ev.Machine)
	a.metrics.shortStops.Inc(ev.Machine)
	a.log.Debug("stop shorter than min_stop; no downtime line", "machine", ev.Machine,
		"stopped", ev.End.Sub(ev.Start).Round(time.Millisecond), "min_stop", mc.MinStop)
	return true
}

// belowMinStop reports whether the stop ev ended books no line for its
// machine's min_stop.
func (a *Agent) belowMinStop(ev mapping.Event) bool {
	mc := findMachine(a.cfg.Load(), ev.Machine)
	return mc != nil && mc.MinStop > 0 && !mc.BlockWorkcenter && ev.End.Sub(ev.Start) < mc.MinStop.D()
}

func (a *Agent) blocks(machine string) bool {
	mc := findMachine(a.cfg.Load(), machine)
	return mc != nil && mc.BlockWorkcenter
}

func findMachine(cfg *config.Config, id string) *config.Machine {
	for i := range cfg.Machines {
		if cfg.Machines[i].ID == id {
			return &cfg.Machines[i]
		}
	}
	return nil
}

// rateLog logs the first of a burst of similar lines and then at most one
// summary a minute (or every, if set), so a flood of bad payloads can't
// flood the journal.
type rateLog struct {
	mu         sync.Mutex
	every      time.Duration // 0: a minute
	last       time.Time
	suppressed int
}

// due reports whether a line may be logged at now (r.mu held).
func (r *rateLog) due(now time.Time) bool { return now.Sub(r.last) >= cmp.Or(r.every, time.Minute) }

func (r *rateLog) log(l *slog.Logger, level slog.Level, msg string, args ...any) {
	r.mu.Lock()
	now := time.Now()
	if !r.due(now) {
		r.suppressed++
		r.mu.Unlock()
		return
	}
	n := r.suppressed
	r.last, r.suppressed = now, 0
	r.mu.Unlock()
	if n > 0 {
		args = append(args, "suppressed_since_last", n)
	}
	l.Log(context.Background(), level, msg, args...)
}

// rateLogs is a rateLog per key, each logging at most once every (0: a
// minute).
type rateLogs struct {
	mu    sync.Mutex
	every time.Duration
	m     map[string]*rateLog
	// forgetLeftOut: a key quiet for its interval is forgotten even when
	// it left lines out, for a rateLogs nobody tells (tell) what its keys
	// left out, whose keys come and go: the unmapped reasons' codes (each
	// stop's run event leaves one out, so none was ever forgotten; the
	// review). What is lost is the count a later line of the key would
	// have carried (the metric counts every one).
	forgetLeftOut bool
}

// rateLogsKept is how many keys a rateLogs holds before it forgets those
// quiet for a minute (a key per work order would otherwise grow for good).
const rateLogsKept = 1024

func (r *rateLogs) log(key string, l *slog.Logger, level slog.Level, msg string, args ...any) {
	r.mu.Lock()
	if r.m == nil {
		r.m = map[string]*rateLog{}
	}
	rl := r.m[key]
	if rl == nil {
		if len(r.m) >= rateLogsKept {
			r.forgetQuiet()
		}
		rl = &rateLog{every: r.every}
		r.m[key] = rl
	}
	r.mu.Unlock()
	rl.log(l, level, msg, args...)
}

// skip counts a line of key left out and reports true when key logged
// within its interval: the caller need not make the line (log would leave
// it out). False when a line is due, counting nothing.
func (r *rateLogs) skip(key string) bool {
	r.mu.Lock()
	rl := r.m[key]
	r.mu.Unlock()
	if rl == nil {
		return false
	}
	rl.mu.Lock()
	defer rl.mu.Unlock()
	if rl.due(time.Now()) {
		return false
	}
	rl.suppressed++
	return true
}

// tell logs, for each key whose interval has passed since its last line
// and that left lines out since, that it did — msg with the key and how
// many — so that what was left out is said even when no later line of the
// key comes to carry it (the self-probe: 5 refusals, 1 line, the 4 others
// never mentioned).
// With all, it tells every key that left lines out, minute or not (at
// shutdown). A key made of a record key and a kind, separated by a zero
// byte, is told as both.
func (r *rateLogs) tell(l *slog.Logger, level slog.Level, msg string, all bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := time.Now()
	for k, rl := range r.m {
		rl.mu.Lock()
		n := rl.suppressed
		if n > 0 && (all || now.Sub(rl.last) >= cmp.Or(r.every, time.Minute)) {
			rl.suppressed, rl.last = 0, now
		} else {
			n = 0
		}
		rl.mu.Unlock()
		if n > 0 {
			key, kind, _ := strings.Cut(k, "\x00")
			args := []any{"key", key, "left_out", n}
			if kind != "" {
				args = append(args, "kind", kind)
			}
			l.Log(context.Background(), level, msg, args...)
		}
	}
}

// forgetQuiet drops the keys that logged nothing for their interval (and
// left nothing out that tell did not say yet, unless forgetLeftOut): their
// next line is logged anyway (what they left out since is lost). r.mu is
// held.
func (r *rateLogs) forgetQuiet() {
	now := time.Now()
	for k, rl := range r.m {
		rl.mu.Lock()
		quiet := now.Sub(rl.last) >= cmp.Or(r.every, time.Minute) && (rl.suppressed == 0 || r.forgetLeftOut)
		rl.mu.Unlock()
		if quiet {
			delete(r.m, k)
		}
	}
}

// wrapWidths are the moduli counters commonly wrap at, smallest first, as
// a person would name them.
var wrapWidths = []struct {
	m    float64
	name string
}{
	{1 << 8, "an 8-bit counter wrapping"}, {10_000, ""}, {1 << 15, ""}, {1 << 16, "a 16-bit counter wrapping"},
	{100_000, ""}, {1_000_000, ""}, {1 << 32, "a 32-bit counter wrapping"},
}

// wrapHint says, for a reset of a counter without rollover from just below
// a width it commonly wraps at to just above 0, that it wrapped and which
// rollover to set ("" otherwise): an MQTT counter's type is not known to
// validate, and a wrap read as a reset loses the pieces made across it.
func wrapHint(from, raw float64) string {
	for _, w := range wrapWidths {
		tol := max(w.m/100, 10)
		if from >= w.m || w.m-from > tol || raw < 0 || raw > tol {
			continue
		}
		what := w.name
		if what == "" {
			what = "a counter wrapping at " + strconv.FormatFloat(w.m, 'f', -1, 64)
		}
		return fmt.Sprintf("from %s to %s looks like %s: set rollover: %s under this counter, or its wraps lose the pieces made across them",
			Qty(from), Qty(raw), what, strconv.FormatFloat(w.m, 'f', -1, 64))
	}
	return ""
}
