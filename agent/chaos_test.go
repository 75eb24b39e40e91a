package agent_test

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"syscall"
	"testing"
	"time"

	"github.com/plantedge/plantedge/agent"
	"github.com/plantedge/plantedge/agent/agenttest"
	"github.com/plantedge/plantedge/agent/config"
	"github.com/plantedge/plantedge/connectors/opcua/opcuatest"
	"github.com/plantedge/plantedge/odoo/odootest"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	if path := os.Getenv(agenttest.ChildEnv); path != "" {
		os.Exit(runChildAgent(path))
	}
	if url := os.Getenv(postChildEnv); url != "" {
		os.Exit(postAndPrint(url))
	}
	if file := os.Getenv(passwordChildEnv); file != "" {
		os.Exit(mqttConfigAndPrint(file))
	}
	var ignore []goleak.Option
	for _, fn := range opcuatest.ServerGoroutines {
		ignore = append(ignore, goleak.IgnoreAnyFunction(fn))
	}
	// The plantedge binary the benchmarks may have built goes with the
	// process (goleak's cleanup is then what exits).
	ignore = append(ignore, goleak.Cleanup(func(code int) {
		agenttest.RemovePlantedge()
		os.Exit(code)
	}))
	goleak.VerifyTestMain(m, ignore...)
}

// runChildAgent is the agent process the chaos test kills with SIGKILL.
func runChildAgent(path string) int {
	if os.Getenv(agenttest.HeapProfileEnv) != "" {
		runtime.MemProfileRate = 1024 // every allocation of a kilobyte and more, the rest sampled
	}
	cfg, err := config.Load(path)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	a, err := agent.New(cfg, agent.Options{Logger: log})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	if file := os.Getenv(agenttest.HeapProfileEnv); file != "" {
		ctx = heapProfileAtStop(ctx, file)
	}
	if file := os.Getenv(agenttest.CPUProfileEnv); file != "" {
		f, err := os.Create(file)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 2
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 2
		}
		defer pprof.StopCPUProfile()
	}
	if err := a.Run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// heapProfileAtStop returns a context ended after the heap profile is
// written, once ctx ends.
func heapProfileAtStop(ctx context.Context, file string) context.Context {
	out, cancel := context.WithCancel(context.Background())
	go func() {
		defer cancel()
		<-ctx.Done()
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		fmt.Fprintf(os.Stderr, "heap profile: heap in use %.1f MB, stacks %.1f MB, runtime total %.1f MB, %d goroutines\n",
			float64(ms.HeapInuse)/1e6, float64(ms.StackInuse)/1e6, float64(ms.Sys-ms.HeapReleased)/1e6, runtime.NumGoroutine())
		f, err := os.Create(file)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return
		}
		defer f.Close()
		if err := pprof.Lookup("heap").WriteTo(f, 0); err != nil {
			fmt.Fprintln(os.Stderr, err)
		}
	}()
	return out
}

// TestChaosKillWhileDraining: Odoo answers with commit-then-drop and
// serialization failures while the agent drains a backlog, and the agent
// process is SIGKILLed again and again. In the end every piece made is in
// Odoo exactly once and every stop is exactly one downtime line.
func TestChaosKillWhileDraining(t *testing.T) { chaosDrain(t, nil) }

// crash ends the agent process some other way than a plain SIGKILL.
type crash interface {
	// mount prepares the data directory before the first start.
	mount(t *testing.T, dataDir string)
	// before is called right before the SIGKILL, after when the process is
	// gone and before it starts again.
	before(rng *rand.Rand)
	after(t *testing.T)
}

func chaosDrain(t *testing.T, cr crash) {
	if testing.Short() {
		t.Skip("chaos test skipped in -short mode")
	}
	p := newPlant(t, plantOptions{machines: []string{"press-1", "press-2", "press-3"}})
	rng := rand.New(rand.NewPCG(7, 11))
	if cr != nil {
		cr.mount(t, filepath.Join(p.dir, "data"))
	}
	// Build a backlog while Odoo is down.
	p.odoo.SetDown(true)
	child := agenttest.StartChild(t, p.cfgPath)
	kill := func() {
		_ = child.Process.Signal(syscall.SIGKILL)
		_, _ = child.Process.Wait()
	}
	defer func() { kill() }()
	kills := 0
	crash := func() {
		if cr != nil {
			cr.before(rng)
		}
		kill()
		if cr != nil {
			cr.after(t)
		}
		kills++
	}
	// The first value the agent ever sees is a counter's baseline: let the
	// child subscribe and take one before the machines produce.
	api := agent.NewAPIClient(p.listen)
	waitChildSubscribed(t, api)
	for _, m := range p.machines {
		p.publish(m)
	}
	waitFor(t, 30*time.Second, "baselines", func() (bool, string) {
		st, err := api.Status(context.Background())
		if err != nil {
			return false, err.Error()
		}
		for _, m := range st.Machines {
			if m.State == "unknown" {
				return false, m.ID
			}
		}
		return true, ""
	})
	for i := 0; i < 20; i++ {
		for _, m := range p.machines {
			p.produce(m, int64(1+rng.IntN(5)), int64(rng.IntN(2)))
		}
		if i%7 == 3 {
			p.stop(p.machines[i%3], "JAM")
		}
		if i%7 == 5 {
			p.run(p.machines[(i-2)%3])
		}
		time.Sleep(20 * time.Millisecond)
	}
	p.odoo.SetDown(false)
	p.odoo.SetFaultRate(odootest.FaultCommitThenDrop, 0.25, 1)
	for round := 0; round < 20; round++ {
		time.Sleep(time.Duration(150+rng.IntN(400)) * time.Millisecond)
		crash()
		if round%4 == 1 {
			p.odoo.SetFaultRate(odootest.FaultSerialization, 0.3, int64(round))
		} else if round%4 == 3 {
			p.odoo.SetFaultRate(odootest.FaultCommitThenDrop, 0.3, int64(round))
		}
		// Machines keep working while the agent is dead; the broker queues
		// for the persistent session.
		for _, m := range p.machines {
			p.produce(m, int64(rng.IntN(4)), int64(rng.IntN(2)))
		}
		if round == 5 {
			p.stop(p.machines[1], "SETUP")
		}
		if round == 8 {
			p.run(p.machines[1])
		}
		child = agenttest.StartChild(t, p.cfgPath)
	}
	p.odoo.SetFaultRate(odootest.FaultNone, 0, 0)
	// Last, pieces the agent acknowledged right before the crash, with no
	// later message to bring them back (counters are cumulative: any later
	// value would carry lost pieces along). Odoo is down so that they stay
	// in the buffer; once status counts them as pending there they are
	// committed, and the acknowledgement follows at once (given half a
	// second): crash, and publish nothing more.
	p.odoo.SetDown(true)
	pending := func() map[string]float64 {
		st, err := api.Status(context.Background())
		if err != nil {
			return nil
		}
		out := map[string]float64{}
		for _, m := range st.Machines {
			out[m.ID] = m.Pending
		}
		return out
	}
	var before map[string]float64
	waitFor(t, 30*time.Second, "the restarted agent answering", func() (bool, string) {
		before = pending()
		return before != nil, ""
	})
	for _, m := range p.machines {
		p.produce(m, 5, 0)
	}
	waitFor(t, 30*time.Second, "the last pieces in the buffer", func() (bool, string) {
		now := pending()
		for _, m := range p.machines {
			if now == nil || now[m.id] < before[m.id]+5 {
				return false, fmt.Sprintf("pending %v, before %v", now, before)
			}
		}
		return true, ""
	})
	time.Sleep(500 * time.Millisecond)
	crash()
	child = agenttest.StartChild(t, p.cfgPath)
	p.odoo.SetDown(false)
	t.Logf("crashed the agent %d times", kills)
	p.waitExact(nil, 60*time.Second)
	// And it stays exact: nothing arrives twice later (two rounds of the
	// child begun after it matched have ended; 500 ms could hold none on
	// a loaded machine).
	childRoundsPass(t, api, 2)
	p.waitExact(nil, time.Second)
	// Scrap too: booked through its outbox while the process dies and Odoo
	// commits-then-drops, each piece once, each booking one stock move.
	waitFor(t, 30*time.Second, "the scrap booked", func() (bool, string) {
		var diffs []string
		for _, m := range p.machines {
			if got, want := p.scrapped(m.id), float64(m.scrap); got != want {
				diffs = append(diffs, fmt.Sprintf("%s scrapped %v want %v", m.id, got, want))
			}
		}
		return len(diffs) == 0, fmt.Sprint(diffs)
	})
	for _, s := range p.odoo.Scraps() {
		if s.Moves > 1 || s.State != "done" {
			t.Errorf("scrap %s: %v %s with %d stock moves", s.XMLID, s.Qty, s.State, s.Moves)
		}
	}
	var xml = map[string]int{}
	for _, l := range p.odoo.Productivity() {
		xml[l.XMLID]++
		if xml[l.XMLID] > 1 {
			t.Errorf("duplicate downtime line %s", l.XMLID)
		}
	}
}

// childRoundsPass waits until n forwarding rounds that the child agent at
// api began after the call have ended: waitRoundsPass for a child.
func childRoundsPass(t *testing.T, api *agent.APIClient, n uint64) {
	t.Helper()
	var want uint64
	waitFor(t, 30*time.Second, fmt.Sprintf("%d rounds of the child agent", n), func() (bool, string) {
		st, err := api.Status(context.Background())
		if err != nil {
			return false, err.Error()
		}
		if want == 0 {
			want = st.Odoo.RoundsDone + 1 + n
		}
		return st.Odoo.RoundsDone >= want, fmt.Sprintf("%d rounds done, want %d", st.Odoo.RoundsDone, want)
	})
}
