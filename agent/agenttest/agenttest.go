// Package agenttest holds what the tests of the agent and of the plantedge
// command share to stand up a test plant: free loopback addresses, the bot's
// API key file, and the config file of an agent wired to an Odoo emulator and
// an MQTT broker (and optionally an OPC UA server). It imports nothing of the
// agent, so both the agent's external tests and package main's tests can use
// it.
package agenttest

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/plantedge/plantedge/internal/nettest"
)

// FreeAddr returns a loopback address with a port that was free a moment ago,
// for a server a test starts later (an agent's API, which keeps its address
// across restarts); see nettest.FreePort for why the port cannot be taken by
// a server the test starts meanwhile.
func FreeAddr(t testing.TB) string {
	t.Helper()
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(nettest.FreePort(t)))
}

// ChildEnv names the config file a re-executed test binary runs the agent
// with: the agent's TestMain runs the agent alone when it is set.
const ChildEnv = "PLANTEDGE_TEST_AGENT_CONFIG"

// HeapProfileEnv names a file the child agent (StartChild) writes its heap
// profile to when SIGTERM comes, before it stops: where the running agent's
// memory is (go tool pprof -sample_index=inuse_space). Set, it makes the
// agent package's memory benchmarks run the test binary as their child,
// not plantedge, which has no such hook. The Go runtime's own accounting
// (heap in use, stacks) goes to stderr with it.
const HeapProfileEnv = "PLANTEDGE_TEST_HEAP_PROFILE"

// CPUProfileEnv names a file the child agent (StartChild) writes a CPU
// profile of its whole run to, from its start to SIGTERM: where the agent
// alone spends its CPU (go tool pprof -top -cum). Set, it makes the agent
// package's benchmarks run the test binary as their child, as
// HeapProfileEnv does.
const CPUProfileEnv = "PLANTEDGE_TEST_CPU_PROFILE"

// StartChild re-executes the test binary as an agent on the config file at
// cfgPath, in a process of its own (to kill it). The benchmarks that report
// the agent's memory run StartPlantedge, the product's own binary.
func StartChild(t testing.TB, cfgPath string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), ChildEnv+"="+cfgPath)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return cmd
}

// StartPlantedge runs `plantedge run --config cfgPath` in a process of its
// own: the binary as shipped, not the test binary (whose own file pages, a
// binary several times larger, count in the child's RSS). It is built on
// the first call (see Plantedge).
func StartPlantedge(t testing.TB, cfgPath string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(Plantedge(t), "run", "--config", cfgPath)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return cmd
}

var built struct {
	once sync.Once
	dir  string // the temporary directory holding the binary
	path string
	err  error
}

// Plantedge returns the path of a plantedge binary built once per test
// process from the module this test runs in (found from the working
// directory, which go test sets to the package's), with the go command of
// the toolchain the test runs under and as `make build` builds it (no cgo,
// trimmed paths, no symbol tables). The environment goes to the build as
// it is (GOTOOLCHAIN with it). RemovePlantedge removes it.
func Plantedge(t testing.TB) string {
	t.Helper()
	built.once.Do(func() {
		root, err := moduleRoot()
		if err != nil {
			built.err = err
			return
		}
		if built.dir, err = os.MkdirTemp("", "plantedge-bin-"); err != nil {
			built.err = err
			return
		}
		path := filepath.Join(built.dir, "plantedge")
		//lint:ignore SA1019 the toolchain this test binary runs under is the one wanted, not a go on PATH
		goCmd := filepath.Join(runtime.GOROOT(), "bin", "go")
		cmd := exec.Command(goCmd, "build", "-trimpath", "-ldflags", "-s -w", "-o", path, "./cmd/plantedge")
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			built.err = fmt.Errorf("%s build ./cmd/plantedge in %s: %v\n%s", goCmd, root, err, out)
			return
		}
		built.path = path
	})
	if built.err != nil {
		t.Fatal(built.err)
	}
	return built.path
}

// RemovePlantedge removes the binary Plantedge built, if it did; a
// TestMain calls it once the tests are done.
func RemovePlantedge() {
	if built.dir != "" {
		_ = os.RemoveAll(built.dir)
	}
}

// moduleRoot is the nearest directory at or above the working directory
// that holds a go.mod.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod at or above the working directory")
		}
		dir = parent
	}
}

// WriteKeyFile stores the Odoo API key as dir/odoo-api-key (mode 0600) and
// returns its path.
func WriteKeyFile(t testing.TB, dir, key string) string {
	t.Helper()
	path := filepath.Join(dir, "odoo-api-key")
	if err := os.WriteFile(path, []byte(key), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// Config is the part of a test agent's config that does not describe
// machines. Timings are short, so that tests do not wait.
type Config struct {
	Site      string
	DataDir   string
	Listen    string // the local HTTP API
	OdooURL   string
	KeyFile   string
	BrokerURL string
	ClientID  string // MQTT client id
	Rate      int    // forward.rate (calls/s); 0 leaves the default
	OPCUA     string // endpoint of an OPC UA server named "line1"; "" for none
	Extra     string // YAML placed before "machines:"
}

// YAML renders the config up to and including the "machines:" line; the
// caller appends the machine entries.
func (c Config) YAML() string {
	var b strings.Builder
	fmt.Fprintf(&b, `site: %s
data_dir: %q
listen: %q
buffer:
  max_bytes: 64MiB
  commit_window: 5ms
odoo:
  url: %q
  database: odoo
  username: plantedge-bot
  api_key_file: %q
  timeout: 2s
  request_limit: 3s
forward:
  interval: 100ms
  backoff_max: 1s
`, c.Site, c.DataDir, c.Listen, c.OdooURL, c.KeyFile)
	if c.Rate > 0 {
		fmt.Fprintf(&b, "  rate: %d\n", c.Rate)
	}
	fmt.Fprintf(&b, `mqtt:
  - name: broker
    url: %q
    client_id: %s
    backoff_max: 1s
`, c.BrokerURL, c.ClientID)
	if c.OPCUA != "" {
		fmt.Fprintf(&b, `opcua:
  - name: line1
    endpoint: %q
    publishing_interval: 100ms
    sampling_interval: 50ms
    backoff_max: 1s
`, c.OPCUA)
	}
	b.WriteString(c.Extra)
	b.WriteString("machines:\n")
	return b.String()
}

// WaitFor polls cond every 50 ms until it holds, or fails the test after
// timeout with what and cond's last detail. The timeout is a guard against
// hangs, not a performance assertion.
func WaitFor(t testing.TB, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var last string
	for time.Now().Before(deadline) {
		ok, detail := cond()
		if ok {
			return
		}
		last = detail
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s: %s", what, last)
}

// WaitProgressing polls cond every 50 ms until it holds, for as long as the
// count it returns keeps changing: it fails t once the count stayed the same
// for stall, however long the whole wait (a backlog draining as fast as a
// loaded machine lets it: a fixed 120 s ran out with the backlog still
// going down). The test's own timeout bounds the rest.
func WaitProgressing(t testing.TB, stall time.Duration, what string, cond func() (ok bool, count int64, detail string)) {
	t.Helper()
	var last int64
	since := time.Now()
	for first := true; ; first = false {
		ok, n, detail := cond()
		if ok {
			return
		}
		if first || n != last {
			last, since = n, time.Now()
		} else if time.Since(since) > stall {
			t.Fatalf("timed out waiting for %s: no change for %s: %s", what, stall, detail)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// LogWriter sends what is written to it (an agent's log lines) to the test
// log, shown on failure or with -v.
type LogWriter struct{ T testing.TB }

func (w LogWriter) Write(b []byte) (int, error) {
	w.T.Log(strings.TrimSpace(string(b)))
	return len(b), nil
}

// SyncBuffer is an io.Writer a test can read while another goroutine or a
// child process writes to it.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
