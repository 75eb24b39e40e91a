// Package demo runs the whole plantedge flow on one machine with nothing
// installed: an Odoo emulator, an in-process OPC UA server simulating two
// presses, an embedded MQTT broker with a simulated packing machine, and
// the real agent on a temporary data directory. Midway it cuts Odoo off,
// shows the buffer filling, restores Odoo and shows the drain.
package demo

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/plantedge/plantedge/agent"
	"github.com/plantedge/plantedge/agent/config"
	"github.com/plantedge/plantedge/connectors/mqtt/mqtttest"
	"github.com/plantedge/plantedge/connectors/opcua/opcuatest"
	"github.com/plantedge/plantedge/odoo/odootest"
)

// Options configure a demo run.
type Options struct {
	Duration    time.Duration // whole run; the outage is the middle third (default 60s)
	Keep        bool          // keep everything running after the summary until ctx ends
	OdooVersion int           // 17, 18 or 19 (default 17)
	Out         io.Writer     // live status and summary
	LogOut      io.Writer     // agent logs (default: discarded)
	DataDir     string        // default: a new temporary directory, removed at the end
	Tick        time.Duration // status refresh period (default 2s)
}

// Result is what the demo measured at the end, per machine.
type Result struct {
	Machines []MachineResult
	Drained  bool
}

// MachineResult compares what the simulated machine made with what Odoo shows.
type MachineResult struct {
	ID, Workcenter, WorkOrder string
	Made                      float64 // pieces the simulator made while the agent ran
	Counted                   float64 // pieces the agent counted
	OdooQty                   float64 // the work order's produced quantity in Odoo
	Stops                     int     // stop→run intervals the simulator made
	DowntimeLines             int     // closed downtime lines in Odoo for the work center
}

// machine is one simulated machine.
type machine struct {
	id, wc, woName string
	woID, wcID     int64
	mu             sync.Mutex
	count          int64 // raw counter as the PLC shows it
	start          int64 // counter when the agent started
	scrap          int64
	running        bool
	since          time.Time // last run-state change
	stops          int
	reason         string
}

// demoRequestLimit is the emulated Odoo's request limit and the demo
// agent's odoo.request_limit (request_limit in the generated config).
const demoRequestLimit = 5 * time.Second

func (m *machine) made() float64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return float64(m.count - m.start)
}

// Run runs the demo until its duration has passed (or ctx ends) and
// returns what it measured.
func Run(ctx context.Context, o Options) (*Result, error) {
	if o.Duration <= 0 {
		o.Duration = 60 * time.Second
	}
	if o.OdooVersion == 0 {
		o.OdooVersion = 17
	}
	if o.Out == nil {
		o.Out = io.Discard
	}
	if o.LogOut == nil {
		o.LogOut = io.Discard
	}
	if o.Tick <= 0 {
		o.Tick = 2 * time.Second
	}
	if o.OdooVersion < 17 || o.OdooVersion > 19 {
		return nil, fmt.Errorf("odoo version %d: the emulator knows 17, 18 and 19", o.OdooVersion)
	}
	if o.Duration < 3*o.Tick {
		return nil, fmt.Errorf("duration %s: at least %s (the outage is the middle third, the status refreshes every %s)", o.Duration, 3*o.Tick, o.Tick)
	}
	if o.DataDir == "" {
		dir, err := os.MkdirTemp("", "plantedge-demo-")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(dir)
		o.DataDir = dir
	}
	out := o.Out
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	// Odoo emulator with three work centers, each with a work order in progress.
	odooSrv := odootest.New(odootest.Options{Version: o.OdooVersion})
	// Its request limit, and the agent's odoo.request_limit with it (as
	// docs/runbook.md, WAN outage / Odoo upgrade, says to set it): a write the outage cut off is waited for 5 s,
	// not the default 2 minutes, after Odoo is back.
	odooSrv.SetRequestLimit(demoRequestLimit)
	odooAddr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	odooErr := make(chan error, 1)
	go func() { odooErr <- odooSrv.ListenAndServe(ctx, odooAddr) }()
	machines := []*machine{
		{id: "press-01", wc: "WC-PRESS-01", count: 40000, running: true},
		{id: "press-02", wc: "WC-PRESS-02", count: 65500, running: true}, // wraps at 65536 during the demo
		{id: "pack-03", wc: "WC-PACK-03", count: 1200, running: true},
	}
	product := odooSrv.AddProduct("Bracket B-200")
	for i, m := range machines {
		m.start = m.count
		m.wcID = odooSrv.AddWorkcenter(m.wc, strings.ToUpper(m.id[:1])+m.id[1:])
		mo := odooSrv.AddProduction(fmt.Sprintf("WH/MO/%05d", 101+i), product, 100000)
		m.woName = fmt.Sprintf("WH/MO/%05d - %s", 101+i, m.id)
		m.woID = odooSrv.AddWorkorder(mo, m.wcID, m.woName, "progress")
	}
	_, key := odooSrv.AddUser("plantedge-bot")
	odooSrv.GiveOnlyBotRights("plantedge-bot") // the README's least-privilege bot
	keyFile := filepath.Join(o.DataDir, "odoo-api-key")
	if err := os.WriteFile(keyFile, []byte(key+"\n"), 0o600); err != nil {
		return nil, err
	}

	// OPC UA server with the two presses.
	ua, err := opcuatest.Start(ctx, 0, map[string]any{
		"Press01.GoodCount": machines[0].count, "Press01.Running": true,
		"Press02.GoodCount": machines[1].count, "Press02.Running": true,
	})
	if err != nil {
		return nil, err
	}
	defer ua.Close()
	// MQTT broker with the packing machine.
	broker, err := mqtttest.Start("127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	defer broker.Close()

	listen, err := freeAddr()
	if err != nil {
		return nil, err
	}
	cfgPath := filepath.Join(o.DataDir, "plantedge.yaml")
	if err := os.WriteFile(cfgPath, []byte(configYAML(o.DataDir, listen, "http://"+odooAddr, keyFile, ua, broker.URL())), 0o600); err != nil {
		return nil, err
	}
	cfg, err := config.Load(cfgPath)
	if err != nil {
		return nil, fmt.Errorf("demo config: %w", err)
	}
	log := slog.New(slog.NewTextHandler(o.LogOut, &slog.HandlerOptions{Level: slog.LevelInfo}))
	a, err := agent.New(cfg, agent.Options{Logger: log, Version: "demo"})
	if err != nil {
		return nil, err
	}
	agentCtx, stopAgent := context.WithCancel(ctx)
	agentErr := make(chan error, 1)
	go func() { agentErr <- a.Run(agentCtx) }()
	defer func() { stopAgent(); <-agentErr }()

	fmt.Fprintf(out, "plantedge demo: Odoo %d emulator at http://%s, OPC UA %s, MQTT %s\n", o.OdooVersion, odooAddr, ua.Endpoint(), broker.URL())
	fmt.Fprintf(out, "agent API http://%s (try: plantedge status -c %s)\n\n", listen, cfgPath)

	// The simulator: presses over OPC UA, the packing machine over MQTT.
	publish := func(m *machine) {
		m.mu.Lock()
		good, scrap, running, reason := m.count, m.scrap, m.running, m.reason
		m.mu.Unlock()
		b, _ := json.Marshal(map[string]any{"good": good, "scrap": scrap, "running": running, "reason": reason,
			"ts": time.Now().UTC().Format(time.RFC3339Nano)})
		_ = broker.Publish("plant/pack-03/state", b, true, 1)
	}
	// Let the agent connect and read every counter once before the
	// machines start: that first reading is its baseline.
	publish(machines[2])
	if err := waitConnected(ctx, a, 20*time.Second); err != nil {
		return nil, err
	}
	time.Sleep(1500 * time.Millisecond)
	simDone := make(chan struct{})
	simStop := make(chan struct{})
	go func() {
		defer close(simDone)
		rng := rand.New(rand.NewPCG(1, 2))
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-simStop:
				return
			case <-ctx.Done():
				return
			case <-t.C:
			}
			for i, m := range machines {
				m.mu.Lock()
				changedRun := false
				// Stops and runs last at least a second: an OPC UA server
				// reports at most one value per publishing interval, and a
				// real machine doesn't flicker either.
				settled := time.Since(m.since) > time.Second
				switch {
				case settled && m.running && rng.IntN(150) == 0:
					m.running, changedRun, m.since = false, true, time.Now()
					m.reason = []string{"JAM", "SETUP", "NO_MATERIAL"}[rng.IntN(3)]
				case settled && !m.running && rng.IntN(20) == 0:
					m.running, changedRun, m.since = true, true, time.Now()
					m.stops++
				}
				if m.running {
					m.count += int64(1 + rng.IntN(3))
					if rng.IntN(40) == 0 {
						m.scrap++
					}
				}
				raw, running := m.count, m.running
				m.mu.Unlock()
				switch i {
				case 0, 1:
					name := fmt.Sprintf("Press%02d", i+1)
					ua.Set(name+".GoodCount", raw%65536)
					if changedRun {
						ua.Set(name+".Running", running)
					}
				case 2:
					publish(m)
				}
			}
		}
	}()

	// Timeline: normal, Odoo down for the middle third, restored.
	third := o.Duration / 3
	phase := "up"
	begin := time.Now()
	tick := time.NewTicker(o.Tick)
	defer tick.Stop()
	cutAt, restoreAt := begin.Add(third), begin.Add(2*third)
	for time.Now().Before(begin.Add(o.Duration)) {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case err := <-agentErr:
			return nil, fmt.Errorf("agent stopped: %w", err)
		case err := <-odooErr:
			return nil, fmt.Errorf("odoo emulator stopped: %w", err)
		case <-tick.C:
		}
		now := time.Now()
		switch {
		case phase == "up" && now.After(cutAt):
			phase = "DOWN"
			odooSrv.SetDown(true)
			fmt.Fprintln(out, ">>> cutting Odoo off (WAN outage): the agent keeps counting into its buffer")
		case phase == "DOWN" && now.After(restoreAt):
			phase = "back up"
			odooSrv.SetDown(false)
			fmt.Fprintln(out, ">>> Odoo is back: the agent drains the buffer (coalesced absolute writes)")
			a.Flush()
		}
		printLive(out, a.Status(), machines, odooSrv, phase, time.Since(begin))
	}
	if phase == "DOWN" { // a short run can end inside the outage
		odooSrv.SetDown(false)
		fmt.Fprintln(out, ">>> Odoo is back: the agent drains the buffer (coalesced absolute writes)")
		a.Flush()
	}

	// Stop the machines, publish their last values, and wait for the drain.
	close(simStop)
	<-simDone
	// A stop that began just now must be seen before the machine runs again:
	// an OPC UA server reports at most one value per publishing interval.
	time.Sleep(1200 * time.Millisecond)
	for i, m := range machines {
		m.mu.Lock()
		running := m.running
		if !running {
			m.running = true
			m.stops++
		}
		m.mu.Unlock()
		if i < 2 {
			ua.Set(fmt.Sprintf("Press%02d.Running", i+1), true)
		} else {
			publish(m)
		}
	}
	fmt.Fprintln(out, ">>> machines done; waiting for the agent to forward everything")
	res := &Result{}
	deadline := time.Now().Add(30 * time.Second)
	stable := 0
	for {
		a.Flush()
		st := a.Status()
		settled := st.Buffer.Pending == 0
		for i, m := range machines {
			// All counted, and the final restart seen (it closes the last stop).
			if st.Machines[i].GoodCount != m.made() || st.Machines[i].State != "running" {
				settled = false
			}
		}
		// Twice in a row: status shows a machine's new run state as soon as
		// it is mapped, a few milliseconds before its record is committed.
		if settled {
			stable++
		} else {
			stable = 0
		}
		if stable == 2 {
			res.Drained = true
			break
		}
		if time.Now().After(deadline) {
			break
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
	st := a.Status()
	lines := odooSrv.Productivity()
	for i, m := range machines {
		mr := MachineResult{ID: m.id, Workcenter: m.wc, WorkOrder: m.woName, Made: m.made(), Counted: st.Machines[i].GoodCount,
			OdooQty: qtyOf(odooSrv, o.OdooVersion, m.woID), Stops: m.stops}
		for _, l := range lines {
			if l.WorkcenterID == m.wcID && !l.End.IsZero() {
				mr.DowntimeLines++
			}
		}
		res.Machines = append(res.Machines, mr)
	}
	printSummary(out, res, odooSrv)
	if o.Keep {
		fmt.Fprintf(out, "\n--keep: still running. Odoo emulator: http://%s (database %q, bot key in %s)\n", odooAddr, odooSrv.Database(), keyFile)
		fmt.Fprintf(out, "status: plantedge status -c %s ; stop with Ctrl-C\n", cfgPath)
		<-ctx.Done()
	}
	return res, nil
}

func waitConnected(ctx context.Context, a *agent.Agent, d time.Duration) error {
	deadline := time.Now().Add(d)
	for {
		st := a.Status()
		ok := len(st.Sources) > 0
		for _, s := range st.Sources {
			if s.State != "connected" {
				ok = false
			}
		}
		if ok {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("sources not connected after %s: %+v", d, st.Sources)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func qtyOf(s *odootest.Server, version int, woID int64) float64 {
	wo := s.Workorder(woID)
	if version >= 19 {
		return wo.QtyProduced
	}
	return wo.QtyProducing
}

func printLive(w io.Writer, st agent.Status, machines []*machine, s *odootest.Server, phase string, el time.Duration) {
	fmt.Fprintf(w, "[%5.1fs] odoo emulator %-9s | agent's odoo link %-11s | buffer %5d records %8s, oldest %5.1fs\n", el.Seconds(), phase, st.Odoo.State,
		st.Buffer.Pending, fmt.Sprintf("%dB", st.Buffer.Bytes), st.Buffer.OldestAgeSeconds)
	for i, m := range machines {
		ms := st.Machines[i]
		fmt.Fprintf(w, "          %-9s %-8s made %6.0f  counted %6.0f  in Odoo %6.0f\n", m.id, ms.State, m.made(), ms.GoodCount,
			qtyOf(s, s.Version(), m.woID))
	}
}

func printSummary(w io.Writer, res *Result, s *odootest.Server) {
	fmt.Fprintln(w, "\nSummary (pieces made by the simulated machines vs. Odoo's work orders)")
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "MACHINE\tWORK ORDER\tMADE\tCOUNTED\tIN ODOO\tSTOPS\tDOWNTIME LINES\tOK")
	for _, m := range res.Machines {
		ok := "yes"
		if m.Made != m.OdooQty || m.Stops != m.DowntimeLines {
			ok = "NO"
		}
		fmt.Fprintf(tw, "%s\t%s\t%.0f\t%.0f\t%.0f\t%d\t%d\t%s\n", m.ID, m.WorkOrder, m.Made, m.Counted, m.OdooQty, m.Stops, m.DowntimeLines, ok)
	}
	tw.Flush()
	calls := map[string]int{}
	for _, c := range s.Calls() {
		calls[c.Model+"."+c.Method]++
	}
	keys := make([]string, 0, len(calls))
	for k := range calls {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	fmt.Fprint(w, "Odoo calls:")
	for _, k := range keys {
		fmt.Fprintf(w, " %s=%d", k, calls[k])
	}
	fmt.Fprintln(w)
	if !res.Drained {
		fmt.Fprintln(w, "WARNING: the buffer did not drain within 30 s")
	}
}

func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

func configYAML(dataDir, listen, odooURL, keyFile string, ua *opcuatest.Server, mqttURL string) string {
	return fmt.Sprintf(`# generated by plantedge demo
site: demo
data_dir: %q
listen: %q
buffer:
  max_bytes: 64MiB
odoo:
  url: %q
  database: odoo
  username: plantedge-bot
  api_key_file: %q
  protocol: auto
  timeout: 5s
  request_limit: 5s
forward:
  interval: 1s
  backoff_max: 3s
  rate: 50
opcua:
  - name: line1
    endpoint: %q
    publishing_interval: 200ms
    sampling_interval: 100ms
    backoff_max: 2s
mqtt:
  - name: plant-broker
    url: %q
    client_id: plantedge-demo
machines:
  - id: press-01
    workcenter: WC-PRESS-01
    good_count:
      opcua: { server: line1, node: %q }
      rollover: 65536
    running:
      opcua: { server: line1, node: %q }
  - id: press-02
    workcenter: WC-PRESS-02
    good_count:
      opcua: { server: line1, node: %q }
      rollover: 65536
    running:
      opcua: { server: line1, node: %q }
  - id: pack-03
    workcenter: WC-PACK-03
    good_count:
      mqtt: { broker: plant-broker, topic: plant/pack-03/state, field: good, timestamp_field: ts }
    scrap_count:
      mqtt: { broker: plant-broker, topic: plant/pack-03/state, field: scrap, timestamp_field: ts }
    running:
      mqtt: { broker: plant-broker, topic: plant/pack-03/state, field: running, timestamp_field: ts }
    downtime_reason:
      mqtt: { broker: plant-broker, topic: plant/pack-03/state, field: reason, timestamp_field: ts }
      map: { JAM: Equipment Failure, SETUP: Setup and Adjustments, NO_MATERIAL: Material Availability }
`, dataDir, listen, odooURL, keyFile, ua.Endpoint(), mqttURL,
		ua.NodeID("Press01.GoodCount"), ua.NodeID("Press01.Running"),
		ua.NodeID("Press02.GoodCount"), ua.NodeID("Press02.Running"))
}
