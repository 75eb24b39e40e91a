package agent

import (
	"fmt"
	"os"
	"runtime/pprof"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// benchSets counts the simulated PLC's Set calls (countUp): how much of
// the cores the PLC got, next to the agent and the server.
var benchSets atomic.Int64

// benchProfiles numbers the window profiles of one test process.
var benchProfiles atomic.Int64

// benchWindow is the measured window of an ingest benchmark. It reports
// the cores the process used in it, the process's CPU time per durable
// value (server, simulated PLC and agent together: steadier than values/s
// when other work takes the cores) and the PLC's sets per second, and
// with PLANTEDGE_BENCH_CPUPROFILE set to a file name prefix writes a CPU
// profile of the window alone (prefix.1, prefix.2, … one per run):
// -test.cpuprofile also takes in the setup (the server's address space,
// the subscription), and values/s on a shared machine depends on its
// load, the CPU per value in each part much less.
type benchWindow struct {
	cpu0  time.Duration
	sets0 int64
	prof  *os.File
}

func processCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func startWindow(b *testing.B) *benchWindow {
	b.Helper()
	w := &benchWindow{cpu0: processCPU(), sets0: benchSets.Load()}
	if p := os.Getenv("PLANTEDGE_BENCH_CPUPROFILE"); p != "" {
		f, err := os.Create(fmt.Sprintf("%s.%d", p, benchProfiles.Add(1)))
		if err != nil {
			b.Fatal(err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			f.Close()
			b.Fatal(err)
		}
		w.prof = f
	}
	return w
}

// end closes the window, elapsed after it began, in which values became
// durable.
func (w *benchWindow) end(b *testing.B, values int, elapsed time.Duration) {
	b.Helper()
	cpu := processCPU() - w.cpu0
	sets := benchSets.Load() - w.sets0
	if w.prof != nil {
		pprof.StopCPUProfile()
		if err := w.prof.Close(); err != nil {
			b.Error(err)
		}
	}
	b.ReportMetric(cpu.Seconds()/elapsed.Seconds(), "cores")
	if values > 0 {
		b.ReportMetric(float64(cpu.Microseconds())/float64(values), "cpu_us/value")
	}
	b.ReportMetric(float64(sets)/elapsed.Seconds(), "sets/s")
}
