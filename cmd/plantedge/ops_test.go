package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/plantedge/plantedge/agent"
	"github.com/plantedge/plantedge/agent/agenttest"
	"github.com/plantedge/plantedge/agent/config"
	"github.com/plantedge/plantedge/buffer"
	"github.com/plantedge/plantedge/connectors/mqtt/mqtttest"
	"github.com/plantedge/plantedge/odoo/odootest"
)

// bench is one machine publishing a good-piece counter over MQTT, an Odoo
// emulator with its work order in progress, and the agent run in-process
// from a config file, for driving the CLI commands against.
type bench struct {
	t       *testing.T
	odoo    *odootest.Server
	broker  *mqtttest.Broker
	cfgPath string
	listen  string
	woID    int64
	wcID    int64
	version int
	good    int64
	start   int64
	key     string // the bot user's API key, in the key file

	// logs, when set before startAgent, takes the agent's log at debug
	// level instead of the test's log.
	logs *agenttest.SyncBuffer
	// writeStall, when set before startAgent, is the agent's
	// WriteStallAfter (30 s by default).
	writeStall time.Duration

	a      *agent.Agent
	cancel context.CancelFunc
	done   chan error
}

func newBench(t *testing.T, version int) *bench {
	t.Helper()
	b := &bench{t: t, version: version, good: 500, start: 500}
	b.odoo = odootest.New(odootest.Options{Version: version})
	b.odoo.Start()
	t.Cleanup(b.odoo.Close)
	br, err := mqtttest.Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b.broker = br
	t.Cleanup(func() { br.Close() })
	product := b.odoo.AddProduct("Bracket")
	wc := b.odoo.AddWorkcenter("WC-PRESS-1", "press-1")
	mo := b.odoo.AddProduction("WH/MO/00001", product, 100000)
	b.woID, b.wcID = b.odoo.AddWorkorder(mo, wc, "WO press-1", "progress"), wc
	_, key := b.odoo.AddUser("plantedge-bot")
	b.key = key
	dir := t.TempDir()
	keyFile := agenttest.WriteKeyFile(t, dir, key)
	b.listen = agenttest.FreeAddr(t)
	b.cfgPath = filepath.Join(dir, "plantedge.yaml")
	cfg := agenttest.Config{Site: "cli-test", DataDir: filepath.Join(dir, "data"), Listen: b.listen,
		OdooURL: b.odoo.URL(), KeyFile: keyFile, BrokerURL: br.URL(), ClientID: "plantedge-cli-test"}.YAML() + `  - id: press-1
    workcenter: WC-PRESS-1
    good_count: { mqtt: { broker: broker, topic: plant/press-1, field: good } }
    running: { mqtt: { broker: broker, topic: plant/press-1, field: running } }
`
	if err := os.WriteFile(b.cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return b
}

// editConfig replaces the first old with new in the bench's config file.
func (b *bench) editConfig(old, new string) {
	b.t.Helper()
	raw, err := os.ReadFile(b.cfgPath)
	if err != nil {
		b.t.Fatal(err)
	}
	edited := strings.Replace(string(raw), old, new, 1)
	if edited == string(raw) {
		b.t.Fatalf("no %q in:\n%s", old, raw)
	}
	if err := os.WriteFile(b.cfgPath, []byte(edited), 0o600); err != nil {
		b.t.Fatal(err)
	}
}

// makeDataDir makes the bench's data_dir, as an agent's first start does,
// and returns the config.
func (b *bench) makeDataDir() *config.Config {
	b.t.Helper()
	cfg, err := config.Load(b.cfgPath)
	if err != nil {
		b.t.Fatal(err)
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		b.t.Fatal(err)
	}
	return cfg
}

// startAgent runs the agent and waits until it has the counter's baseline.
func (b *bench) startAgent() {
	b.t.Helper()
	b.launchAgent()
	a := b.a
	waitUntil(b.t, 20*time.Second, "sources connected", func() (bool, string) {
		st := a.Status()
		for _, s := range st.Sources {
			if s.State != "connected" {
				return false, fmt.Sprintf("%+v", st.Sources)
			}
		}
		return len(st.Sources) > 0, fmt.Sprintf("%+v", st.Sources)
	})
	b.publish()
	waitUntil(b.t, 20*time.Second, "baseline", func() (bool, string) {
		st := a.Status()
		return st.Machines[0].State == "running", fmt.Sprintf("%+v", st.Machines)
	})
}

// launchAgent runs the agent, waiting for nothing.
func (b *bench) launchAgent() {
	b.t.Helper()
	cfg, err := config.Load(b.cfgPath)
	if err != nil {
		b.t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(agenttest.LogWriter{T: b.t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	if b.logs != nil {
		log = slog.New(slog.NewTextHandler(b.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	a, err := agent.New(cfg, agent.Options{Logger: log, Version: "test", WriteStallAfter: b.writeStall})
	if err != nil {
		b.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	b.a, b.cancel, b.done = a, cancel, make(chan error, 1)
	go func() { b.done <- a.Run(ctx) }()
	b.t.Cleanup(b.stopAgent)
}

// stopAgent stops the agent if it runs and waits for Run to return.
func (b *bench) stopAgent() {
	if b.cancel == nil {
		return
	}
	b.cancel()
	select {
	case err := <-b.done:
		if err != nil {
			b.t.Errorf("agent run: %v", err)
		}
	case <-time.After(30 * time.Second):
		b.t.Fatal("agent did not stop within 30s")
	}
	b.cancel = nil
}

func (b *bench) publish() {
	msg := fmt.Sprintf(`{"good": %d, "running": true}`, b.good)
	if err := b.broker.Publish("plant/press-1", []byte(msg), false, 1); err != nil {
		b.t.Fatal(err)
	}
}

func (b *bench) produce(n int64) {
	b.good += n
	b.publish()
}

func (b *bench) qty() float64 { return b.qtyOf(b.woID) }

// qtyOf is work order id's produced quantity, in the field of the bench's
// Odoo version.
func (b *bench) qtyOf(id int64) float64 {
	wo := b.odoo.Workorder(id)
	if b.version >= 19 {
		return wo.QtyProduced
	}
	return wo.QtyProducing
}

func (b *bench) waitQty() {
	b.t.Helper()
	want := float64(b.good - b.start)
	waitUntil(b.t, 15*time.Second, "odoo quantity", func() (bool, string) {
		got := b.qty()
		return got == want, fmt.Sprintf("qty %v want %v", got, want)
	})
}

// waitPending waits until the running agent, Odoo offline, holds records
// of good pieces for the machine: every count produced while Odoo was away
// (a record pending is the first value's, maybe not the last's: a test
// that stopped the agent then found the last value unread, or its record
// written after the pending count it had taken).
func (b *bench) waitPending(good float64) {
	b.t.Helper()
	waitUntil(b.t, 10*time.Second, fmt.Sprintf("%v good pieces pending", good), func() (bool, string) {
		st := b.a.Status()
		var got float64
		if len(st.Machines) > 0 {
			got = st.Machines[0].Pending
		}
		return got == good && st.Buffer.Pending > 0 && st.Odoo.State == "offline", fmt.Sprintf("pending %d records, %v good, odoo %s", st.Buffer.Pending, got, st.Odoo.State)
	})
}

// cli runs one plantedge command line as main would and returns its output.
func cli(t *testing.T, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	root := newRootCmd()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(args)
	err := execute(ctx, root)
	return out.String(), err
}

// A command line not understood exits 64, apart from what the commands
// exit with (flush's 1 is a timeout).
func TestUsageErrorsExit64(t *testing.T) {
	for _, args := range [][]string{{"flush", "--bogus"}, {"flush", "--timeout", "soon"}, {"flush", "--timeout", "-5s"}, {"status", "extra"}, {"bogus"},
		{"deadletter"}, {"deadletter", "drop"}, {"deadletter", "drop", "notanid"}, {"browse", "notaurl"}, {"browse", "opc.tcp://127.0.0.1:1", "--node", "garbage"},
		{"browse", "opc.tcp://127.0.0.1:1", "--depth", "-1"}, {"browse", "opc.tcp://127.0.0.1:99999"}, {"browse", "opc.tcp://127.0.0.1:1", "--security-policy", "Bogus"},
		{"browse", "opc.tcp://127.0.0.1:1", "--server-thumbprint", "zz"}, {"browse", "opc.tcp://127.0.0.1:1", "--timeout", "-5s"},
		{"browse", "opc.tcp://127.0.0.1:1", "--timeout", "0"}, {"browse", "opc.tcp://127.0.0.1:1", "--timeout", "five"},
		{"demo", "--odoo-version", "12"}, {"demo", "--duration", "-1s"},
		{"rebook"}, {"rebook", "--since", "yesterday"}, // (the readme probe: 1, which rebook means for "Odoo refused some")
		{"help", "bogus"}, {"help", "deadletter", "bogus"}} { // (the spec audit: cobra's help said "Unknown help topic" and exited 0)
		_, err := cli(t, args...)
		if exitCode(err) != exitUsage || !strings.Contains(err.Error(), "--help") {
			t.Errorf("plantedge %s: exit %d, %v", strings.Join(args, " "), exitCode(err), err)
		}
	}
	for _, args := range [][]string{{"help"}, {"help", "status"}, {"help", "deadletter", "drop"}} {
		if out, err := cli(t, args...); err != nil || !strings.Contains(out, "Usage:") {
			t.Errorf("plantedge %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	absent := filepath.Join(t.TempDir(), "absent.yaml")
	if _, err := cli(t, "status", "-c", absent); exitCode(err) != 1 {
		t.Errorf("a command that ran and failed: exit %d, %v", exitCode(err), err)
	}
	// A config file it cannot read: the agent could not be asked (4), as
	// for flush — not accept-qty's 1 (nothing to accept) or rebook's 1
	// (Odoo refused some), which a script acts on (the readme probe).
	for _, args := range [][]string{{"flush"}, {"accept-qty", "press-1"}, {"rebook", "--since", "1h"}} {
		if _, err := cli(t, append(args, "-c", absent)...); exitCode(err) != 4 {
			t.Errorf("plantedge %s with its config file absent: exit %d, %v", args[0], exitCode(err), err)
		}
	}
}

var waitUntil = agenttest.WaitFor

// statusJSON runs `status --json` and decodes it generically, as a script
// would.
func statusJSON(t *testing.T, cfgPath string) map[string]any {
	t.Helper()
	out, err := cli(t, "status", "-c", cfgPath, "--json")
	if err != nil {
		t.Fatalf("status --json: %v\n%s", err, out)
	}
	return decodeStatus(t, out)
}

// decodeStatus decodes status --json output generically and checks it
// against the contract.
func decodeStatus(t *testing.T, out string) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(out), &m); err != nil {
		t.Fatalf("status --json is not JSON: %v\n%s", err, out)
	}
	checkStatusContract(t, m)
	return m
}

// checkStatusContract checks every key SPEC.md promises, its JSON type and
// the allowed enum values.
func checkStatusContract(t *testing.T, m map[string]any) {
	t.Helper()
	typ := func(where string, obj map[string]any, key, want string) any {
		t.Helper()
		v, ok := obj[key]
		if !ok {
			t.Errorf("%s: key %q missing", where, key)
			return nil
		}
		var got string
		switch v.(type) {
		case string:
			got = "string"
		case float64:
			got = "number"
		case bool:
			got = "bool"
		case map[string]any:
			got = "object"
		case []any:
			got = "array"
		default:
			got = fmt.Sprintf("%T", v)
		}
		if got != want {
			t.Errorf("%s.%s is %s (%v), want %s", where, key, got, v, want)
		}
		return v
	}
	enum := func(where string, v any, allowed ...string) {
		t.Helper()
		if s, _ := v.(string); !slices.Contains(allowed, s) {
			t.Errorf("%s = %v, want one of %v", where, v, allowed)
		}
	}
	typ("status", m, "site", "string")
	typ("status", m, "agent_running", "bool")
	if buf, ok := typ("status", m, "buffer", "object").(map[string]any); ok {
		for _, k := range []string{"pending", "bytes", "oldest_age_seconds", "dead_letters"} {
			typ("buffer", buf, k, "number")
		}
	}
	if o, ok := typ("status", m, "odoo", "object").(map[string]any); ok {
		for _, k := range []string{"state", "protocol", "server_version", "last_error"} {
			typ("odoo", o, k, "string")
		}
		typ("odoo", o, "next_attempt_seconds", "number")
		enum("odoo.state", o["state"], "online", "offline", "auth_failed")
	}
	if srcs, ok := typ("status", m, "sources", "array").([]any); ok {
		if len(srcs) == 0 {
			t.Errorf("no sources")
		}
		for i, s := range srcs {
			so, _ := s.(map[string]any)
			where := fmt.Sprintf("sources[%d]", i)
			for _, k := range []string{"name", "kind", "state"} {
				typ(where, so, k, "string")
			}
			enum(where+".state", so["state"], "connected", "connecting", "down")
		}
	}
	if ms, ok := typ("status", m, "machines", "array").([]any); ok {
		if len(ms) == 0 {
			t.Errorf("no machines")
		}
		for i, x := range ms {
			mo, _ := x.(map[string]any)
			where := fmt.Sprintf("machines[%d]", i)
			for _, k := range []string{"id", "workcenter", "work_order", "state"} {
				typ(where, mo, k, "string")
			}
			typ(where, mo, "good_count", "number")
			typ(where, mo, "unattributed", "number")
			enum(where+".state", mo["state"], "running", "stopped", "unknown")
		}
	}
}

func TestStatusJSONContract(t *testing.T) {
	b := newBench(t, 17)
	b.startAgent()
	b.produce(7)
	b.waitQty()
	waitUntil(t, 10*time.Second, "status after forwarding", func() (bool, string) {
		st := b.a.Status()
		return st.Odoo.State == "online" && st.Buffer.Pending == 0, fmt.Sprintf("%+v", st.Odoo)
	})
	m := statusJSON(t, b.cfgPath)
	checkStatusContract(t, m)
	if m["site"] != "cli-test" || m["agent_running"] != true {
		t.Errorf("site %v agent_running %v", m["site"], m["agent_running"])
	}
	odoo := m["odoo"].(map[string]any)
	if odoo["state"] != "online" || odoo["protocol"] != "jsonrpc" || odoo["server_version"] == "" {
		t.Errorf("odoo %v", odoo)
	}
	src := m["sources"].([]any)[0].(map[string]any)
	if src["name"] != "broker" || src["kind"] != "mqtt" || src["state"] != "connected" || src["malformed_samples"] != float64(0) {
		t.Errorf("source %v", src)
	}
	mach := m["machines"].([]any)[0].(map[string]any)
	if mach["id"] != "press-1" || mach["workcenter"] != "WC-PRESS-1" || mach["work_order"] != "WO press-1" ||
		mach["production"] != "WH/MO/00001" || mach["good_count"] != 7.0 || mach["state"] != "running" {
		t.Errorf("machine %v", mach)
	}
	if out, err := cli(t, "status", "-c", b.cfgPath); err != nil || !strings.Contains(out, "WH/MO/00001 - WO press-1") {
		t.Errorf("human status: the work order with its manufacturing order, as Odoo shows it: %v\n%s", err, out)
	}
	if age, ok := mach["last_sample_age_seconds"].(float64); !ok || age <= 0 || age > 60 {
		t.Errorf("last_sample_age_seconds %v: want the age of the last value, in seconds", mach["last_sample_age_seconds"])
	}

	// Odoo goes away: records wait in the buffer.
	b.odoo.SetDown(true)
	b.produce(5)
	b.produce(4)
	b.waitPending(9)
	m = statusJSON(t, b.cfgPath)
	checkStatusContract(t, m)
	if s := m["odoo"].(map[string]any)["state"]; s != "offline" {
		t.Errorf("odoo state %v while down", s)
	}
	pending := b.a.Status().Buffer.Pending

	// The agent stops: status reads the buffer file and says so.
	b.stopAgent()
	m = statusJSON(t, b.cfgPath)
	checkStatusContract(t, m)
	if m["agent_running"] != false {
		t.Errorf("agent_running %v with the agent stopped", m["agent_running"])
	}
	buf := m["buffer"].(map[string]any)
	if got := buf["pending"]; got != float64(pending) || pending == 0 {
		t.Errorf("offline pending %v, want %d", got, pending)
	}
	src = m["sources"].([]any)[0].(map[string]any)
	if src["state"] != "down" {
		t.Errorf("offline source state %v", src["state"])
	}
	mach = m["machines"].([]any)[0].(map[string]any)
	if mach["good_count"] != 16.0 || mach["work_order"] != "WO press-1" {
		t.Errorf("offline machine %v", mach)
	}
	if mach["state"] != "unknown" { // nobody reads it while the agent is stopped
		t.Errorf("offline machine state %v, want unknown", mach["state"])
	}
	out, err := cli(t, "status", "-c", b.cfgPath)
	if err != nil || !strings.Contains(out, "AGENT NOT RUNNING") {
		t.Errorf("human status with the agent stopped: %v\n%s", err, out)
	}
}

// Installed, never started: status, flush and deadletter say so plainly
// (status --json still gives the whole contract, with nothing buffered).
func TestCommandsBeforeTheFirstRun(t *testing.T) {
	b := newBench(t, 17)
	m := statusJSON(t, b.cfgPath)
	checkStatusContract(t, m)
	buf := m["buffer"].(map[string]any)
	if m["agent_running"] != false || buf["no_file"] != true || buf["pending"] != 0.0 || buf["dead_letters"] != 0.0 {
		t.Errorf("status before the first run: agent_running %v, buffer %v", m["agent_running"], buf)
	}
	if mach := m["machines"].([]any)[0].(map[string]any); mach["id"] != "press-1" || mach["state"] != "unknown" {
		t.Errorf("machine before the first run: %v", mach)
	}
	out, err := cli(t, "status", "-c", b.cfgPath)
	if err != nil || !strings.Contains(out, "AGENT NOT RUNNING") || !strings.Contains(out, "no buffer file yet") {
		t.Errorf("human status before the first run: %v\n%s", err, out)
	}
	out, err = cli(t, "deadletter", "list", "-c", b.cfgPath, "--json")
	if err != nil || strings.TrimSpace(out) != "[]" {
		t.Errorf("deadletter list --json before the first run: %v\n%s", err, out)
	}
	// Nothing to drop is done (exit 0, as on a file that holds none), and
	// said with where the agent looked.
	if out, err := cli(t, "deadletter", "drop", "all", "-c", b.cfgPath); err != nil || !strings.Contains(out, "0 dead letters") || !strings.Contains(out, "no buffer file") {
		t.Errorf("deadletter drop all before the first run: %v\n%s", err, out)
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(b.cfgPath), "data", "buffer.db")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a command made a buffer file before the first run: %v", err)
	}
	if _, err := cli(t, "flush", "-c", b.cfgPath, "--timeout", "1s"); exitCode(err) != 2 {
		t.Errorf("flush before the first run: %v, want exit 2", err)
	}
}

// A stopped agent's buffer.db of 0 bytes (a crash between its creation and
// its first write, a file system that lost its contents, a truncate by
// hand): status says what it is and what the agent does with it, not only
// that the file was not read because it is empty.
func TestStatusOfAnEmptyBufferFile(t *testing.T) {
	b := newBench(t, 17)
	cfg := b.makeDataDir()
	if err := os.WriteFile(cfg.BufferPath(), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := cli(t, "status", "-c", b.cfgPath)
	if exitCode(err) != 1 || strings.Contains(out, "NOT READ") || !strings.Contains(out, "AGENT NOT RUNNING") ||
		!strings.Contains(out, "EMPTY (0 bytes)") || !strings.Contains(out, "nothing is buffered in it") {
		t.Errorf("status: exit %d\n%s", exitCode(err), out)
	}
	if err == nil || !strings.Contains(err.Error(), "next start makes a fresh one") || !strings.Contains(err.Error(), "what it held is lost") {
		t.Errorf("status's reason: %v", err)
	}
	out, err = cli(t, "status", "-c", b.cfgPath, "--json")
	if m := decodeStatus(t, out); exitCode(err) != 1 || !strings.Contains(fmt.Sprint(m["status_error"]), "next start makes a fresh one") {
		t.Errorf("status --json: exit %d\n%s", exitCode(err), out)
	}
}

// The commands that open a stopped agent's buffer file, on one of 0 bytes
// (status says EMPTY for it): no dead letters, exit 0, said as what it is;
// a dead letter named by its id is not found (1); compact has nothing to
// do; flush says nothing is buffered. The file is left as it is, for the
// agent's start to say that what it held is lost. Before, deadletter list
// exited 1 ("buffer not readable"), and retry, drop and compact made a
// fresh buffer of it without a word (compact: "0 B -> 32.0 KiB").
func TestCommandsOnAnEmptyBufferFile(t *testing.T) {
	b := newBench(t, 17)
	cfg := b.makeDataDir()
	if err := os.WriteFile(cfg.BufferPath(), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	said := func(out string) bool {
		return strings.Contains(out, cfg.BufferPath()+" is empty (0 bytes): nothing is buffered in it")
	}
	for _, c := range []struct {
		args  []string
		first string // how its first line begins
	}{
		{[]string{"deadletter", "list"}, "no dead letters: "},
		{[]string{"deadletter", "retry"}, "retry: 0 dead letters ("},
		{[]string{"deadletter", "retry", "all"}, "retry: 0 dead letters ("},
		{[]string{"deadletter", "drop", "all", "-y"}, "drop: 0 dead letters ("},
		{[]string{"compact"}, "nothing to compact: "},
	} {
		out, err := cli(t, append(c.args, "-c", b.cfgPath)...)
		first, _, _ := strings.Cut(out, "\n")
		if err != nil || !strings.HasPrefix(first, c.first) || !said(first) || !strings.Contains(first, "agent's next start makes a fresh one") {
			t.Errorf("%s: exit %d (%v)\n%s", strings.Join(c.args, " "), exitCode(err), err, out)
		}
	}
	out, err := cli(t, "deadletter", "list", "--json", "-c", b.cfgPath)
	if err != nil || !strings.HasSuffix(out, "[]\n") || !said(out) {
		t.Errorf("deadletter list --json: exit %d (%v)\n%s", exitCode(err), err, out)
	}
	for _, args := range [][]string{{"retry", "3"}, {"drop", "3", "-y"}} {
		out, err := cli(t, append(append([]string{"deadletter"}, args...), "-c", b.cfgPath)...)
		if exitCode(err) != 1 || !strings.Contains(fmt.Sprint(err), "no dead letter 3") || !said(fmt.Sprint(err)) {
			t.Errorf("deadletter %s: exit %d (%v)\n%s", strings.Join(args, " "), exitCode(err), err, out)
		}
	}
	out, err = cli(t, "flush", "-c", b.cfgPath, "--timeout", "1s")
	if exitCode(err) != 2 || !said(fmt.Sprint(err)) || strings.Contains(fmt.Sprint(err), "kept on disk") {
		t.Errorf("flush: exit %d (%v)\n%s", exitCode(err), err, out)
	}
	if fi, err := os.Stat(cfg.BufferPath()); err != nil || fi.Size() != 0 {
		t.Errorf("the empty buffer file was changed: %v", err)
	}
}

// An agent that holds the buffer but does not answer at the config's listen
// (starting up, or listen edited since it started): the commands say so
// instead of "not running" and "start it".
func TestCommandsWhenTheAgentDoesNotAnswer(t *testing.T) {
	b := newBench(t, 17)
	cfg := b.makeDataDir()
	q, err := buffer.Open(cfg.BufferPath(), buffer.Options{}) // what a running agent holds
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	for _, args := range [][]string{
		{"status", "-c", b.cfgPath},
		{"status", "-c", b.cfgPath, "--json"},
		{"flush", "-c", b.cfgPath, "--timeout", "1s"},
		{"deadletter", "list", "-c", b.cfgPath},
		{"deadletter", "retry", "all", "-c", b.cfgPath},
	} {
		out, err := cli(t, args...)
		want := 1
		if args[0] == "flush" {
			want = 4 // not a timeout: the agent could not be asked
		}
		if exitCode(err) != want || !strings.Contains(err.Error(), "the agent is running") || !strings.Contains(err.Error(), b.listen) {
			t.Errorf("%s: %v (exit %d)\n%s", strings.Join(args, " "), err, exitCode(err), out)
		}
		if len(args) == 3 && args[0] == "status" && !strings.Contains(out, "agent running, status NOT KNOWN") {
			t.Errorf("status of an agent not answering, stdout:\n%s", out)
		}
		if args[len(args)-1] == "--json" {
			// scripts still get a document, saying why it is incomplete
			if m := decodeStatus(t, out); m["agent_running"] != true || !strings.Contains(fmt.Sprint(m["status_error"]), "does not answer") {
				t.Errorf("status --json of an agent not answering: %v", m)
			}
		}
	}
}

// A stopped agent's buffer file that cannot be read: status --json prints
// the document with the reason (and exits 1), not nothing.
func TestStatusJSONWithAnUnreadableBufferFile(t *testing.T) {
	b := newBench(t, 17)
	cfg := b.makeDataDir()
	junk := bytes.Repeat([]byte("not a bbolt file "), 1000)
	if err := os.WriteFile(cfg.BufferPath(), junk, 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := cli(t, "status", "-c", b.cfgPath, "--json")
	if exitCode(err) != 1 {
		t.Errorf("exit %d: %v", exitCode(err), err)
	}
	if m := decodeStatus(t, out); m["agent_running"] != false || !strings.Contains(fmt.Sprint(m["status_error"]), "the buffer file fails the read-only check") {
		t.Errorf("status --json with an unreadable buffer file: %v", m)
	}
	// The human view says on stdout which case it is, the reason on stderr.
	out, err = cli(t, "status", "-c", b.cfgPath)
	if exitCode(err) != 1 || !strings.Contains(err.Error(), "the buffer file fails the read-only check") ||
		!strings.Contains(out, "AGENT NOT RUNNING, buffer file "+cfg.BufferPath()+" NOT READ") {
		t.Errorf("status with an unreadable buffer file: %v (exit %d)\nstdout:\n%s", err, exitCode(err), out)
	}
}

// A config file status cannot read (another user's, or gone): --json
// still prints a document, with the reason, and exits 1.
func TestStatusJSONWithoutTheConfigFile(t *testing.T) {
	out, err := cli(t, "status", "-c", filepath.Join(t.TempDir(), "absent.yaml"), "--json")
	if exitCode(err) != 1 {
		t.Errorf("exit %d: %v", exitCode(err), err)
	}
	var m map[string]any // (no sources or machines to check the contract on)
	if err := json.Unmarshal([]byte(out), &m); err != nil {
		t.Fatalf("status --json is not JSON: %v\n%s", err, out)
	}
	if !strings.Contains(fmt.Sprint(m["status_error"]), "absent.yaml") || m["agent_running"] != false {
		t.Errorf("status --json without its config file: %v", m)
	}
	if _, ok := m["machines"].([]any); !ok {
		t.Errorf("machines: %v, want a list", m["machines"])
	}
}

// A config file broken while the agent runs (it keeps what it loaded): status
// and flush still reach the agent, with a warning.
func TestStatusWithABrokenConfigFile(t *testing.T) {
	b := newBench(t, 17)
	b.startAgent()
	b.produce(2)
	b.waitQty()
	good, err := os.ReadFile(b.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(b.cfgPath, append(good, []byte("machines: [ {\n")...), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := cli(t, "status", "-c", b.cfgPath)
	if err != nil || !strings.Contains(out, "does not load") || strings.Contains(out, "AGENT NOT RUNNING") || !strings.Contains(out, "press-1") {
		t.Errorf("status with a broken file: %v\n%s", err, out)
	}
	out, err = cli(t, "flush", "-c", b.cfgPath, "--timeout", "10s")
	if err != nil || !strings.HasSuffix(out, "drained\n") {
		t.Errorf("flush with a broken file: %v\n%s", err, out)
	}
	// Stopped, with records waiting: status reads the buffer, and does not
	// call them records of removed machines (it does not know the
	// machines) — and exits 1, saying so (it cannot tell everything).
	b.odoo.SetDown(true)
	b.produce(3)
	b.waitPending(3)
	b.stopAgent()
	out, err = cli(t, "status", "-c", b.cfgPath)
	if exitCode(err) != 1 || !strings.Contains(fmt.Sprint(err), "machines and sources are not shown") ||
		!strings.Contains(out, "AGENT NOT RUNNING") || strings.Contains(out, "no longer in the config") {
		t.Errorf("offline status with a broken file: %v\n%s", err, out)
	}
	out, err = cli(t, "status", "--json", "-c", b.cfgPath)
	var m map[string]any // after the warning (stderr, joined here)
	if jerr := json.Unmarshal([]byte(out[strings.Index(out, "{"):]), &m); jerr != nil || exitCode(err) != 1 ||
		!strings.Contains(fmt.Sprint(m["status_error"]), "does not load") {
		t.Errorf("offline status --json with a broken file: exit %d, %v\n%s", exitCode(err), jerr, out)
	}
}

// With Odoo down, rebook and accept-qty exit 4 (not done: run it again)
// with Odoo's error in words — not rebook's 1, which says Odoo refused
// bookings, nor HTTP's "502 Bad Gateway" (the technician probe).
func TestRebookAndAcceptQtyWhileOdooIsDown(t *testing.T) {
	b := newBench(t, 17)
	b.startAgent()
	b.produce(2)
	b.waitQty()
	b.odoo.SetDown(true)
	b.produce(1)
	b.waitPending(1)
	for _, args := range [][]string{{"rebook", "--since", "1h"}, {"accept-qty", "press-1"}} {
		out, err := cli(t, append(args, "-c", b.cfgPath)...)
		t.Logf("%s: %v", args[0], err)
		if exitCode(err) != 4 || strings.Contains(err.Error(), "Bad Gateway") || !strings.Contains(err.Error(), "odoo") {
			t.Errorf("%s with odoo down: exit %d, %v\n%s", args[0], exitCode(err), err, out)
		}
	}
}

func TestFlushCommand(t *testing.T) {
	b := newBench(t, 18)
	b.startAgent()
	b.odoo.SetDown(true)
	b.produce(3)
	b.waitPending(3)

	out, err := cli(t, "flush", "-c", b.cfgPath, "--timeout", "1s")
	if code := exitCode(err); code != 1 {
		t.Fatalf("flush with odoo down: exit %d (%v), want 1\n%s", code, err, out)
	}
	if !strings.Contains(err.Error(), "not drained within 1s") {
		t.Errorf("flush error %q", err)
	}
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	if len(lines) == 0 || lines[0] == "" {
		t.Fatalf("flush printed nothing")
	}
	for _, l := range lines {
		if !strings.HasPrefix(l, "pending ") || !strings.Contains(l, "odoo offline") {
			t.Errorf("flush progress line %q", l)
		}
		if strings.ContainsAny(l, "\r\x1b") {
			t.Errorf("terminal control codes on a non-terminal: %q", l)
		}
	}
	if strings.Contains(out, "drained") {
		t.Errorf("flush said drained with odoo down:\n%s", out)
	}

	b.odoo.SetDown(false)
	out, err = cli(t, "flush", "-c", b.cfgPath, "--timeout", "30s")
	if err != nil {
		t.Fatalf("flush with odoo back: %v\n%s", err, out)
	}
	if !strings.HasSuffix(out, "drained\n") {
		t.Errorf("flush output does not end with drained:\n%s", out)
	}
	b.waitQty()
	if p := b.a.Status().Buffer.Pending; p != 0 {
		t.Errorf("flush exited 0 with %d pending", p)
	}

	// No work order in progress: the counts are held; flush says so (exit
	// 3; its timeout would be 1), neither drained nor timed out.
	b.odoo.SetWorkorderState(b.woID, "done")
	b.produce(4)
	waitUntil(t, 10*time.Second, "counts held", func() (bool, string) {
		st := b.a.Status()
		return st.Buffer.Held > 0 && st.Machines[0].Unattributed == 4, fmt.Sprintf("held %d, unattributed %v", st.Buffer.Held, st.Machines[0].Unattributed)
	})
	out, err = cli(t, "flush", "-c", b.cfgPath, "--timeout", "1m")
	if code := exitCode(err); code != 3 || strings.Contains(out, "drained") || !strings.Contains(err.Error(), "held") {
		t.Errorf("flush with counts held: exit %d (%v)\n%s", code, err, out)
	}
	// status's pending counts the held records; the line says its own
	// leaves them out (the spec audit's L3).
	if !strings.Contains(out, "pending 0 records to forward, odoo online") {
		t.Errorf("flush's line with counts held:\n%s", out)
	}

	b.stopAgent()
	out, err = cli(t, "flush", "-c", b.cfgPath, "--timeout", "1s")
	if code := exitCode(err); code != 2 {
		t.Fatalf("flush with the agent stopped: exit %d (%v), want 2\n%s", code, err, out)
	}
	if !strings.Contains(err.Error(), "agent not running") {
		t.Errorf("flush message %q", err)
	}
}

// refuse makes Odoo refuse the next quantity write for good and waits for
// the agent to dead-letter it.
func (b *bench) refuse(wantDead int) {
	b.t.Helper()
	b.odoo.RefuseNext("mrp.workorder", "write", 1, "odoo.exceptions.UserError", "You cannot change the quantity of a done work order.")
	b.produce(2)
	waitUntil(b.t, 15*time.Second, "dead letter", func() (bool, string) {
		st := b.a.Status()
		return st.Buffer.DeadLetters == wantDead, fmt.Sprintf("dead letters %d", st.Buffer.DeadLetters)
	})
}

// readerFunc is an io.Reader made of a function.
type readerFunc func([]byte) (int, error)

func (f readerFunc) Read(p []byte) (int, error) { return f(p) }

func TestDeadLetterCommands(t *testing.T) {
	b := newBench(t, 19)
	b.startAgent()
	b.produce(5)
	b.waitQty()
	dl := func(args ...string) string {
		t.Helper()
		out, err := cli(t, append([]string{"deadletter"}, append(args, "-c", b.cfgPath)...)...)
		if err != nil {
			t.Fatalf("deadletter %v: %v\n%s", args, err, out)
		}
		return out
	}
	if out := dl("list"); out != "no dead letters\n" {
		t.Errorf("list with none: %q", out)
	}
	// A mistyped action fails (a script must not take the help for done).
	if out, err := cli(t, "deadletter", "rety", "all", "-c", b.cfgPath); exitCode(err) != exitUsage || !strings.Contains(fmt.Sprint(err), `unknown command "rety"`) {
		t.Errorf("deadletter rety all: exit %d (%v)\n%s", exitCode(err), err, out)
	}

	b.refuse(1)
	out := dl("list")
	// What the dead letter holds shows: the reason names the quantity the
	// write would have set, not the pieces a retry books or a drop loses.
	if !strings.Contains(out, "press-1/good") || !strings.Contains(out, "done work order") || !strings.HasPrefix(out, "ID") ||
		!strings.Contains(out, "HOLDS") || !strings.Contains(out, "2 good pieces") {
		t.Errorf("list:\n%s", out)
	}
	var views []agent.DeadLetterView
	if err := json.Unmarshal([]byte(dl("list", "--json")), &views); err != nil || len(views) != 1 || views[0].Lane != "counts" || views[0].What != "2 good pieces" {
		t.Fatalf("list --json: %v %+v", err, views)
	}
	// A bare drop names what it needs (it loses what it drops); a bare
	// retry is all of them (SPEC writes it bare; it loses nothing).
	if out, err := cli(t, "deadletter", "drop", "-c", b.cfgPath); exitCode(err) != exitUsage || !strings.Contains(fmt.Sprint(err), "name what to drop") {
		t.Errorf("bare drop: exit %d (%v)\n%s", exitCode(err), err, out)
	}
	// Retried, it lands exactly once.
	if out := dl("retry"); out != "retry: 1 dead letter\n" {
		t.Errorf("retry: %q", out)
	}
	b.waitQty()
	if out := dl("list"); out != "no dead letters\n" {
		t.Errorf("list after retry: %q", out)
	}

	// Dropped by id.
	b.refuse(1)
	views = nil
	if err := json.Unmarshal([]byte(dl("list", "--json")), &views); err != nil || len(views) != 1 {
		t.Fatalf("list --json: %v %+v", err, views)
	}
	// On a terminal a drop is asked first: a no drops nothing.
	stdinIsTerminal = func() bool { return true }
	answerFrom := func(in io.Reader, args ...string) (string, error) {
		root := newRootCmd()
		var out bytes.Buffer
		root.SetOut(&out)
		root.SetErr(&out)
		root.SetIn(in)
		root.SetArgs(append([]string{"deadletter", "drop"}, append(args, "-c", b.cfgPath)...))
		err := execute(context.Background(), root)
		return out.String(), err
	}
	answer := func(in string, args ...string) (string, error) { return answerFrom(strings.NewReader(in), args...) }
	if out, err := answer("\n", "all"); exitCode(err) != 1 || !strings.Contains(out, "2 good pieces") ||
		!strings.Contains(out, "Drop 1 dead letter for good?") || b.a.Status().Buffer.DeadLetters != 1 {
		t.Errorf("drop answered with Enter: %v\n%s", err, out)
	}
	// One more arrives while the question is open: "all" was what was shown.
	more := readerFunc(func(p []byte) (int, error) {
		b.refuse(2)
		return copy(p, "y\n"), io.EOF
	})
	if out, err := answerFrom(more, "all"); exitCode(err) != 1 || !strings.Contains(fmt.Sprint(err), "came in while you were asked") ||
		b.a.Status().Buffer.DeadLetters != 2 {
		t.Errorf("drop all with one more arrived meanwhile: %v\n%s", err, out)
	}
	if out, err := answer("y\n", fmt.Sprint(views[0].ID)); err != nil || !strings.HasSuffix(out, "drop: 1 dead letter\n") {
		t.Errorf("drop answered yes: %v\n%s", err, out)
	}
	if out, err := answer("y\n", "all"); err != nil || !strings.HasSuffix(out, "drop: 1 dead letter\n") {
		t.Errorf("drop all answered yes: %v\n%s", err, out)
	}
	stdinIsTerminal = func() bool { return false }
	if n := b.a.Status().Buffer.DeadLetters; n != 0 {
		t.Errorf("%d dead letters after drop", n)
	}
	// An operator's drop is counted apart from the quota's (the figure
	// monitoring alerts on as lost data).
	if buf := statusJSON(t, b.cfgPath)["buffer"].(map[string]any); buf["dead_letters_dropped"] != 2.0 || buf["dropped"] != 0.0 {
		t.Errorf("after an operator's drop: dead_letters_dropped %v, dropped %v", buf["dead_letters_dropped"], buf["dropped"])
	}
	if _, err := cli(t, "deadletter", "drop", "nonsense", "-c", b.cfgPath); err == nil {
		t.Errorf("drop of a non-numeric id accepted")
	}
	// An id that is none (dropped just now): said once, with where to look
	// (it said "drop dead letter: dead letter 5: not found").
	for _, action := range []string{"drop", "retry"} {
		out, err := cli(t, "deadletter", action, fmt.Sprint(views[0].ID), "--yes", "-c", b.cfgPath)
		if action == "retry" {
			out, err = cli(t, "deadletter", action, fmt.Sprint(views[0].ID), "-c", b.cfgPath)
		}
		msg := fmt.Sprint(err)
		if err == nil || strings.Count(msg, "dead letter") != 1 || !strings.Contains(msg, fmt.Sprintf("no dead letter %d", views[0].ID)) ||
			!strings.Contains(msg, "plantedge deadletter list") {
			t.Errorf("deadletter %s of an id that is none: %v\n%s", action, err, out)
		}
	}

	// Offline: the agent is stopped, the commands work on the buffer file.
	b.refuse(1)
	b.stopAgent()
	out = dl("list")
	if !strings.Contains(out, "press-1/good") {
		t.Errorf("offline list:\n%s", out)
	}
	if out := dl("drop", "all"); out != "drop: 1 dead letter\n" {
		t.Errorf("offline drop: %q", out)
	}
	if out := dl("list"); out != "no dead letters\n" {
		t.Errorf("offline list after drop: %q", out)
	}
	if out, err := cli(t, "status", "-c", b.cfgPath); err != nil || !strings.Contains(out, "3 dead letters dropped by an operator") || !strings.Contains(out, "dropped by the quota 0") {
		t.Errorf("offline status after three drops: %v\n%s", err, out)
	}
}

// Two configurations that share a listen address: the commands of the one
// whose agent is not there refuse to act on the other plant's agent.
func TestCommandsRefuseAnotherSitesAgent(t *testing.T) {
	b := newBench(t, 17)
	b.startAgent()
	b.refuse(1)
	cfg, err := os.ReadFile(b.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	other := filepath.Join(t.TempDir(), "other.yaml")
	text := strings.Replace(string(cfg), "site: cli-test", "site: other-plant", 1)
	text = regexp.MustCompile(`(?m)^data_dir: .*$`).ReplaceAllString(text, fmt.Sprintf("data_dir: %q", t.TempDir()))
	if err := os.WriteFile(other, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	if c, err := config.Load(other); err != nil || c.Site != "other-plant" {
		t.Fatalf("the other config: %v", err)
	}
	for _, args := range [][]string{
		{"status", "-c", other, "--json"},
		{"flush", "-c", other, "--timeout", "1s"},
		{"deadletter", "list", "-c", other},
		{"deadletter", "drop", "all", "-c", other},
	} {
		out, err := cli(t, args...)
		if err == nil || !errors.Is(err, agent.ErrOtherSite) || !strings.Contains(err.Error(), "runs site cli-test") {
			t.Errorf("%s: %v\n%s", strings.Join(args, " "), err, out)
		}
		if args[0] == "status" && !strings.Contains(out, `"agent_running": false`) {
			// This configuration's agent is not the one that answered
			// (the spec audit: a script reading agent_running alone was
			// told it ran).
			t.Errorf("status of a configuration whose agent never ran, another site's answering:\n%s", out)
		}
	}
	if n := b.a.Status().Buffer.DeadLetters; n != 1 {
		t.Errorf("the other config's commands changed this agent's dead letters: %d left, want 1", n)
	}
	if _, err := cli(t, "deadletter", "list", "-c", b.cfgPath); err != nil {
		t.Errorf("the agent's own config: %v", err)
	}
}

// flush --timeout bounds the whole command, also against an agent that
// takes the connection and never answers (hung, or paused with SIGSTOP).
// On a running plant new records keep coming while flush waits: once what
// was pending at its request has reached Odoo it is drained (exit 0), not
// timed out waiting for an empty buffer.
func TestFlushOnAProducingPlant(t *testing.T) {
	b := newBench(t, 18)
	b.startAgent()
	b.odoo.SetDown(true)
	b.produce(3)
	b.waitPending(3)
	b.odoo.SetDown(false)
	stop, done := make(chan struct{}), make(chan struct{})
	go func() { // the machine keeps making pieces, a value every 10 ms
		defer close(done)
		for {
			select {
			case <-stop:
				return
			case <-time.After(10 * time.Millisecond):
				b.produce(1)
			}
		}
	}()
	out, err := cli(t, "flush", "-c", b.cfgPath, "--timeout", "30s")
	close(stop)
	<-done
	if err != nil || !strings.Contains(out, "drained") {
		t.Fatalf("flush on a producing plant: %v\n%s", err, out)
	}
}

func TestFlushTimeoutBoundsAHungAgent(t *testing.T) {
	b := newBench(t, 17)
	cfg := b.makeDataDir()
	q, err := buffer.Open(cfg.BufferPath(), buffer.Options{}) // a hung agent holds its buffer file
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	ln, err := net.Listen("tcp", b.listen) // accepts (the kernel does), never answers
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	out, err := cli(t, "flush", "-c", b.cfgPath, "--timeout", "1s")
	// Cut by its own --timeout ("not drained within 1s"), not by the HTTP
	// client's 10 s limit (a bare "not answering").
	if exitCode(err) != 1 || !strings.Contains(err.Error(), "not drained within 1s: the agent did not answer") {
		t.Errorf("flush against a hung agent: %v (exit %d)\n%s", err, exitCode(err), out)
	}
}

// The progress line: one terminal line, and a log of it gets a line per
// change of state, not one per retry (a connection's local port differs).
func TestFlushProgressLine(t *testing.T) {
	long := strings.Repeat("x", 200)
	if got := fitWidth(long, 80); len([]rune(got)) != 79 {
		t.Errorf("fitWidth to 80 columns: %d runes", len([]rune(got)))
	}
	if got := fitWidth("short", 80); got != "short" {
		t.Errorf("fitWidth of a short line: %q", got)
	}
	a := "pending 3 records, odoo offline — Post \"http://10.0.0.9:8069/json/2\": read tcp 127.0.0.1:55142->10.0.0.9:8069: connection reset"
	c := strings.Replace(a, "55142", "55190", 1)
	if volatile.ReplaceAllString(a, "") != volatile.ReplaceAllString(c, "") {
		t.Errorf("two retries' lines differ after normalising:\n%s\n%s", a, c)
	}
}

// The agent's own config file, with its site edited since the agent started
// (a reload keeps the old one until a restart) or edited so that it no
// longer loads (only its top-level keys are read): same data_dir, so the
// same agent — the commands still reach it.
func TestCommandsReachTheAgentAfterASiteEdit(t *testing.T) {
	for _, tc := range []struct{ name, site string }{
		{"valid new site, not yet restarted", "site: cli-test-renamed"},
		{"invalid site (the file does not load)", "site: Cli-Test"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newBench(t, 17)
			b.startAgent()
			good, err := os.ReadFile(b.cfgPath)
			if err != nil {
				t.Fatal(err)
			}
			edited := strings.Replace(string(good), "site: cli-test", tc.site, 1)
			if err := os.WriteFile(b.cfgPath, []byte(edited), 0o600); err != nil {
				t.Fatal(err)
			}
			for _, args := range [][]string{
				{"status", "-c", b.cfgPath},
				{"flush", "-c", b.cfgPath, "--timeout", "10s"},
				{"deadletter", "list", "-c", b.cfgPath},
			} {
				if out, err := cli(t, args...); err != nil {
					t.Errorf("%s: %v\n%s", strings.Join(args, " "), err, out)
				}
			}
		})
	}
}

// status with the agent stopped, given another plant's config that shares
// the data_dir: it says whose buffer file it read.
func TestOfflineStatusNamesTheFilesSite(t *testing.T) {
	b := newBench(t, 17)
	b.startAgent()
	b.stopAgent()
	b.editConfig("site: cli-test", "site: other-plant")
	out, err := cli(t, "status", "-c", b.cfgPath)
	if err != nil || !strings.Contains(out, `WARNING: the buffer file was last used by the agent of site "cli-test", not "other-plant"`) {
		t.Errorf("status: %v\n%s", err, out)
	}
}

// benchHoldingCounts is a bench forwarding every interval whose work order
// is done when its machine makes 4 pieces, once the agent's status is as
// held says.
func benchHoldingCounts(t *testing.T, interval string, held func(agent.Status) bool) *bench {
	t.Helper()
	b := newBench(t, 17)
	b.editConfig("  interval: 100ms\n", "  interval: "+interval+"\n")
	b.startAgent()
	b.odoo.SetWorkorderState(b.woID, "done")
	b.produce(4)
	waitUntil(t, 10*time.Second, "the counts buffered", func() (bool, string) {
		st := b.a.Status()
		return held(st), fmt.Sprintf("pending %d, held %d, odoo %s", st.Buffer.Pending, st.Buffer.Held, st.Odoo.State)
	})
	return b
}

// flush judges on a round that began after it asked: counts held for lack
// of a work order, which is then started in Odoo, are drained (exit 0),
// not reported held from the round before (exit 3).
func TestFlushAfterAWorkOrderStarted(t *testing.T) {
	b := benchHoldingCounts(t, "20s", func(st agent.Status) bool { return st.Buffer.Pending > 0 })
	if _, err := cli(t, "flush", "-c", b.cfgPath, "--timeout", "30s"); exitCode(err) != 3 {
		t.Fatalf("flush with counts held: %v, want exit 3", err)
	}
	b.odoo.SetWorkorderState(b.woID, "progress")
	out, err := cli(t, "flush", "-c", b.cfgPath, "--timeout", "30s")
	if err != nil || !strings.HasSuffix(out, "drained\n") {
		t.Errorf("flush after the work order started: %v\n%s", err, out)
	}
	b.waitQty()
}

// Counts held for lack of a work order while Odoo is down are not
// reported held (exit 3) on the word of work orders read before the
// outage: the order may have been started meanwhile. flush waits for a
// round that reaches Odoo, and drains once it does.
func TestFlushHeldNotJudgedWhileOdooIsDown(t *testing.T) {
	b := benchHoldingCounts(t, "1s", func(st agent.Status) bool { return st.Buffer.Held > 0 && st.Odoo.State == "online" })
	b.odoo.SetDown(true)
	waitUntil(t, 15*time.Second, "odoo offline", func() (bool, string) {
		st := b.a.Status()
		return st.Odoo.State == "offline", st.Odoo.State
	})
	b.odoo.SetWorkorderState(b.woID, "progress")
	out, err := cli(t, "flush", "-c", b.cfgPath, "--timeout", "3s")
	if exitCode(err) != 1 || strings.Contains(out, "waiting for Odoo-side action") {
		t.Fatalf("flush while Odoo is down: %v (exit %d), want a timeout (1), not held (3)\n%s", err, exitCode(err), out)
	}
	b.odoo.SetDown(false)
	out, err = cli(t, "flush", "-c", b.cfgPath, "--timeout", "1m")
	if err != nil || !strings.HasSuffix(out, "drained\n") {
		t.Errorf("flush with Odoo back: %v\n%s", err, out)
	}
	b.waitQty()
}

// Counts held while Odoo refuses the key (auth_failed): flush waits for a
// round that reaches Odoo and exits 1 at its timeout, its verdict naming
// the held records (the review: "0 records pending" and nothing more).
func TestFlushHeldWhileAuthFailedSaysSo(t *testing.T) {
	b := benchHoldingCounts(t, "1s", func(st agent.Status) bool { return st.Buffer.Held > 0 && st.Odoo.State == "online" })
	key, err := os.ReadFile(filepath.Join(filepath.Dir(b.cfgPath), "odoo-api-key"))
	if err != nil {
		t.Fatal(err)
	}
	b.odoo.ExpireKey(strings.TrimSpace(string(key)))
	b.produce(1) // something to send: a round that tries Odoo
	waitUntil(t, 30*time.Second, "auth_failed", func() (bool, string) {
		st := b.a.Status()
		return st.Odoo.State == "auth_failed", st.Odoo.State
	})
	_, err = cli(t, "flush", "-c", b.cfgPath, "--timeout", "3s")
	if msg := fmt.Sprint(err); exitCode(err) != 1 || !strings.Contains(msg, "records held (judged when Odoo is reached") || !strings.Contains(msg, "odoo auth_failed") {
		t.Errorf("flush's verdict %q (exit %d): want exit 1 naming the held records and Odoo refusing the key", msg, exitCode(err))
	}
}

// A record Odoo refuses during the flush leaves the buffer for the dead
// letters: flush says so instead of a bare "drained" (exit 0: the buffer is
// drained; the dead letter is the operator's to look at).
func TestFlushSaysWhatWasRefused(t *testing.T) {
	b := newBench(t, 17)
	b.startAgent()
	b.produce(5)
	b.waitQty()
	b.odoo.SetDown(true)
	b.produce(2)
	waitUntil(t, 15*time.Second, "odoo offline with a record pending", func() (bool, string) {
		st := b.a.Status()
		return st.Odoo.State == "offline" && st.Buffer.Pending > 0, fmt.Sprintf("%s, pending %d", st.Odoo.State, st.Buffer.Pending)
	})
	b.odoo.RefuseNext("mrp.workorder", "write", 1, "odoo.exceptions.UserError", "You cannot change the quantity of a done work order.")
	b.odoo.SetDown(false)
	out, err := cli(t, "flush", "-c", b.cfgPath, "--timeout", "1m")
	if err != nil || !strings.Contains(out, "drained; 1 record went to the dead letters during the flush (refused by Odoo, or pieces of a finished work order): not in Odoo (plantedge deadletter list") {
		t.Errorf("flush: %v\n%s", err, out)
	}
	if strings.Contains(out, "1 dead letters") {
		t.Errorf("flush: %q", out)
	}
}

// A slow first round acknowledges nothing until it ends: flush says that
// it is under way (the disk probe read 30 s of the same count as stuck).
func TestFlushShowsARoundUnderWay(t *testing.T) {
	b := newBench(t, 17)
	b.startAgent()
	b.produce(2)
	b.waitQty()
	b.odoo.SetDown(true)
	b.produce(3)
	b.waitPending(3)
	b.odoo.SetLatency(800 * time.Millisecond)
	b.odoo.SetDown(false)
	out, err := cli(t, "flush", "-c", b.cfgPath, "--timeout", "30s")
	if err != nil || !strings.HasSuffix(out, "drained\n") {
		t.Fatalf("flush: %v\n%s", err, out)
	}
	if !strings.Contains(out, "(a round is under way): ") || strings.Count(out, "under way") > 1 {
		t.Errorf("flush did not say once that a round was under way:\n%s", out)
	}
	// The round is a backlog's (the outage's records): the line says
	// when its time left is known, or the time left.
	if !strings.Contains(out, "; time left known once the first round's count writes show their pace") && !strings.Contains(out, " left (this round") {
		t.Errorf("flush did not say the drain's time left:\n%s", out)
	}
}

// plantedge help completes command names as cobra's own help did, and a
// topic it does not know suggests the command meant, as an unknown command
// does (the review: the help command made for exit 64 completed nothing,
// and "help stauts" lost the "Did you mean this? status").
func TestHelpCompletesAndSuggests(t *testing.T) {
	if out, err := cli(t, "__complete", "help", "st"); err != nil || !strings.Contains(out, "status\t") {
		t.Errorf("plantedge help st<TAB>: %v\n%s", err, out)
	}
	if out, err := cli(t, "__complete", "help", "deadletter", "dr"); err != nil || !strings.Contains(out, "drop\t") {
		t.Errorf("plantedge help deadletter dr<TAB>: %v\n%s", err, out)
	}
	if _, err := cli(t, "help", "stauts"); exitCode(err) != exitUsage || !strings.Contains(err.Error(), "status") {
		t.Errorf("plantedge help stauts: exit %d, %v", exitCode(err), err)
	}
	// A mistyped action of deadletter suggests the one meant, as the root
	// does for a command (the conformance audit: "deadletter lst" said
	// only unknown command).
	if _, err := cli(t, "deadletter", "lst"); exitCode(err) != exitUsage || !strings.Contains(err.Error(), "Did you mean this?\n\tlist") {
		t.Errorf("plantedge deadletter lst: exit %d, %v", exitCode(err), err)
	}
}

// A configuration whose agent is stopped, another site's agent answering at
// its listen: status reads this configuration's buffer file, as for any
// stopped agent, and says who answers (exit 1). It said "buffer file NOT
// READ" and pending 0 with a backlog in the file (the review: a script
// reading buffer.pending was told nothing waited).
func TestStatusReadsTheBufferWhenAnotherSiteAnswers(t *testing.T) {
	b := benchHoldingCounts(t, "200ms", func(st agent.Status) bool { return st.Buffer.Pending > 0 })
	b.stopAgent()
	other := newBench(t, 17)
	other.editConfig("site: cli-test", "site: other-plant")
	other.startAgent()
	b.editConfig(b.listen, other.listen)
	out, err := cli(t, "status", "-c", b.cfgPath, "--json")
	if !errors.Is(err, agent.ErrOtherSite) {
		t.Fatalf("status --json: %v\n%s", err, out)
	}
	m := decodeStatus(t, out)
	if buf, _ := m["buffer"].(map[string]any); m["agent_running"] != false || buf == nil || buf["pending"] == float64(0) {
		t.Errorf("status --json of a stopped agent with a backlog, another site answering: %v", m)
	}
	out, err = cli(t, "status", "-c", b.cfgPath)
	if !errors.Is(err, agent.ErrOtherSite) || !strings.Contains(out, "AGENT NOT RUNNING (read from the buffer file)") || strings.Contains(out, "NOT READ") {
		t.Errorf("status: %v\n%s", err, out)
	}
}

// Another program on the agent's listen port (the agent then exits with
// "bind: address already in use"): status said "agent running, status NOT
// KNOWN" and "agent: 404 page not found", flush the 404 alone (the operator
// review). No agent holds the buffer file: status reads it as a stopped
// agent's and names what answers; flush says the agent is not running.
func TestAnotherProgramOnTheListenPort(t *testing.T) {
	b := newBench(t, 17)
	b.makeDataDir()
	other := serveAt(t, http.NotFoundHandler())
	b.editConfig(b.listen, other)
	out, err := cli(t, "status", "-c", b.cfgPath)
	if err == nil || !strings.Contains(out, "AGENT NOT RUNNING") || strings.Contains(out, "agent running") ||
		!strings.Contains(err.Error(), "another program on that port?") {
		t.Errorf("status: %v\n%s", err, out)
	}
	out, err = cli(t, "status", "-c", b.cfgPath, "--json")
	if m := decodeStatus(t, out); err == nil || m["agent_running"] != false {
		t.Errorf("status --json: %v\n%s", err, out)
	}
	// flush: exit 2, the agent not running (TestFlushWithAnotherProgramOnTheListenPort).
	out, err = cli(t, "flush", "-c", b.cfgPath, "--timeout", "5s")
	if exitCode(err) != 2 || !strings.Contains(err.Error(), "agent not running") || !strings.Contains(err.Error(), "another program on that port?") {
		t.Errorf("flush: exit %d, %v\n%s", exitCode(err), err, out)
	}
	// A web server's page (review 44: status and flush printed its 13
	// lines of HTML, up to 64 MiB of it): what it answered, in one line.
	web := serveAt(t, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		w.WriteHeader(http.StatusNotFound)
		fmt.Fprint(w, "<!DOCTYPE HTML>\n<html lang=\"en\">\n<head><title>Error response</title></head>\n<body>\n<h1>Error response</h1>\n"+
			strings.Repeat("<p>padding</p>\n", 500)+"</body>\n</html>\n")
	}))
	// status and flush say what the page answered, in one line; want, too.
	// So do deadletter, accept-qty and rebook (ux45: they printed the
	// page whole).
	// (deadletter, with no agent holding the buffer file, works on the
	// file: TestDeadLettersOfAStoppedAgentWithAnotherProgramOnTheListenPort.)
	oneLine := func(when, want string, deadletter bool) {
		t.Helper()
		cmds := [][]string{{"status", "-c", b.cfgPath}, {"flush", "-c", b.cfgPath, "--timeout", "5s"},
			{"accept-qty", "press-1", "-c", b.cfgPath}, {"rebook", "--since", "1h", "-c", b.cfgPath}}
		if deadletter {
			cmds = append(cmds, []string{"deadletter", "list", "-c", b.cfgPath}, []string{"deadletter", "retry", "-c", b.cfgPath},
				[]string{"deadletter", "drop", "all", "--yes", "-c", b.cfgPath})
		}
		for _, args := range cmds {
			_, err := cli(t, args...)
			if err == nil || strings.Contains(err.Error(), "\n") || strings.Contains(err.Error(), "padding") || len(err.Error()) > 700 ||
				!strings.Contains(err.Error(), "it answered 404 Not Found (text/html)") || !strings.Contains(err.Error(), want) {
				t.Errorf("%s, %s: %v", strings.Join(args[:2], " "), when, err)
			}
		}
	}
	b.editConfig(other, web)
	oneLine("an HTML page answering", "another program on that port?", false)
	// An agent holding the buffer file, started with another listen: the
	// page is not printed whole either, and deadletter refuses (the file
	// is that agent's).
	b.editConfig(web, b.listen)
	b.startAgent()
	b.editConfig(b.listen, web)
	oneLine("an HTML page answering, an agent holding the file", "", true)
}

// flush with another program at listen and no agent holding the buffer
// file (its lock free: no agent runs with this data_dir): the agent is not
// running, exit 2 as for nothing at listen, said with what answers there,
// whatever that program answers — a refusal, a 200 with JSON of its own
// (read as a status with nothing pending: "drained", exit 0), a 200 with
// text, or nothing in time (read as a hung agent: exit 1). Before, exit 4,
// or 0 and 1 for those. With a process holding the file (an agent started
// with another listen) it is still 4: that agent could not be asked.
func TestFlushWithAnotherProgramOnTheListenPort(t *testing.T) {
	b := newBench(t, 17)
	cfg := b.makeDataDir()
	answer := func(status int, ctype, body string) string {
		return serveAt(t, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", ctype)
			w.WriteHeader(status)
			fmt.Fprint(w, body)
		}))
	}
	hung, err := net.Listen("tcp", agenttest.FreeAddr(t)) // accepts (the kernel does), never answers
	if err != nil {
		t.Fatal(err)
	}
	defer hung.Close()
	programs := []struct{ name, addr, what string }{
		{"404", answer(http.StatusNotFound, "text/plain", "404 page not found\n"), "it answered 404 Not Found (text/plain): 404 page not found, without the agent's Plantedge-Agent header"},
		{"200 JSON", answer(http.StatusOK, "application/json", `{"status":"ok"}`), `it answered 200 OK (application/json): {"status":"ok"}, without the agent's Plantedge-Agent header`},
		{"200 text", answer(http.StatusOK, "text/plain", "OK"), "it answered 200 OK (text/plain): OK, without the agent's Plantedge-Agent header"},
		{"no answer", hung.Addr().String(), "it takes the connection but does not answer in time"},
	}
	listen := b.listen
	for _, p := range programs {
		b.editConfig(`listen: "`+listen+`"`, `listen: "`+p.addr+`"`)
		listen = p.addr
		out, err := cli(t, "flush", "-c", b.cfgPath, "--timeout", "2s")
		msg := fmt.Sprint(err)
		if exitCode(err) != 2 || !strings.HasPrefix(msg, "agent not running (no agent holds "+cfg.BufferPath()+")") ||
			!strings.Contains(msg, "what answers at listen "+p.addr+" is not it ("+p.what+")") || !strings.Contains(msg, "Nothing was flushed") ||
			strings.Contains(out, "drained") {
			t.Errorf("flush, %s at listen: exit %d (%v)\n%s", p.name, exitCode(err), err, out)
		}
	}
	q, err := buffer.Open(cfg.BufferPath(), buffer.Options{}) // what an agent started with another listen holds
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	for _, p := range programs[:3] {
		b.editConfig(`listen: "`+listen+`"`, `listen: "`+p.addr+`"`)
		listen = p.addr
		out, err := cli(t, "flush", "-c", b.cfgPath, "--timeout", "2s")
		if exitCode(err) != 4 || strings.Contains(fmt.Sprint(err), "agent not running") || strings.Contains(out, "drained") {
			t.Errorf("flush, %s at listen, the buffer file held: exit %d (%v)\n%s", p.name, exitCode(err), err, out)
		}
	}
}

// deadletter with another program at listen and no agent holding the
// buffer file (its lock free: no agent runs with this data_dir, whatever
// its listen): the agent is stopped, and its file is used as any stopped
// agent's (docs/commands.md, deadletter), with a warning of what answers at listen.
// Before, list, retry and drop refused (exit 1) and the technician could
// not see or mend the dead letters until the port was freed.
func TestDeadLettersOfAStoppedAgentWithAnotherProgramOnTheListenPort(t *testing.T) {
	b := newBench(t, 17)
	b.startAgent()
	b.produce(3)
	b.waitQty()
	b.refuse(1)
	b.stopAgent()
	other := serveAt(t, http.NotFoundHandler())
	b.editConfig(b.listen, other)
	run := func(args ...string) (stdout, stderr string, err error) {
		t.Helper()
		root := newRootCmd()
		var o, e bytes.Buffer
		root.SetOut(&o)
		root.SetErr(&e)
		root.SetArgs(append(args, "-c", b.cfgPath))
		err = execute(context.Background(), root)
		return o.String(), e.String(), err
	}
	warned := func(what, stderr string) {
		t.Helper()
		if !strings.Contains(stderr, "another program on that port?") || !strings.Contains(stderr, "read from the buffer file") ||
			strings.Count(stderr, "warning:") != 1 {
			t.Errorf("%s: the warning of what answers at listen:\n%s", what, stderr)
		}
	}
	out, errs, err := run("deadletter", "list")
	if err != nil || !strings.Contains(out, "press-1/good") || !strings.Contains(out, "2 good pieces") {
		t.Errorf("list: %v\n%s%s", err, out, errs)
	}
	warned("list", errs)
	out, errs, err = run("deadletter", "list", "--json")
	var views []agent.DeadLetterView
	if jerr := json.Unmarshal([]byte(out), &views); err != nil || jerr != nil || len(views) != 1 {
		t.Errorf("list --json: %v, %v\n%s", err, jerr, out)
	}
	warned("list --json", errs)
	out, errs, err = run("deadletter", "retry")
	if err != nil || out != "retry: 1 dead letter\n" {
		t.Errorf("retry: %v\n%s%s", err, out, errs)
	}
	warned("retry", errs)
	// The record retried is sent once the agent runs (on its own listen).
	b.editConfig(other, b.listen)
	b.startAgent()
	b.waitQty()
	if n := b.a.Status().Buffer.DeadLetters; n != 0 {
		t.Errorf("%d dead letters after the retry", n)
	}
	b.refuse(1)
	b.stopAgent()
	b.editConfig(b.listen, other)
	out, errs, err = run("deadletter", "drop", "all", "--yes")
	if err != nil || out != "drop: 1 dead letter\n" {
		t.Errorf("drop: %v\n%s%s", err, out, errs)
	}
	warned("drop", errs)
	if out, _, err := run("deadletter", "list"); err != nil || out != "no dead letters\n" {
		t.Errorf("list after the drop: %v\n%s", err, out)
	}
}

// serveAt serves h on a free loopback port until the test ends and returns
// its address: another program where the agent's listen points.
func serveAt(t *testing.T, h http.Handler) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: time.Second}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return l.Addr().String()
}

// The same, run by a user who may not look into data_dir (the packaged one
// is plantedge's, 0750): status cannot tell from the buffer file's lock
// whether an agent holds it, and said "agent running, status NOT KNOWN"
// with the other program's answer (review 44), where root is told the
// agent is not running. It says what answers, and to use sudo.
func TestAnotherProgramOnTheListenPortAsAnotherUser(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root, to run status as user nobody")
	}
	b := newBench(t, 17)
	b.makeDataDir() // 0700 root: nobody may not look in
	if err := os.Chmod(b.cfgPath, 0o644); err != nil {
		t.Fatal(err)
	}
	b.editConfig(b.listen, serveAt(t, http.NotFoundHandler()))
	cmd := asNobody(t, filepath.Dir(b.cfgPath), "status", "-c", b.cfgPath)
	out, _ := cmd.CombinedOutput()
	s := string(out)
	if cmd.ProcessState.ExitCode() != 1 || strings.Contains(s, "agent running") || !strings.Contains(s, "another program on that port?") ||
		!strings.Contains(s, "sudo plantedge status") {
		t.Errorf("status as nobody: exit %d\n%s", cmd.ProcessState.ExitCode(), s)
	}
	// flush's hint is flush run so (operator review: it said "sudo
	// plantedge status", the command not run).
	cmd = asNobody(t, filepath.Dir(b.cfgPath), "flush", "-c", b.cfgPath, "--timeout", "5s")
	out, _ = cmd.CombinedOutput()
	s = string(out)
	if cmd.ProcessState.ExitCode() != 4 || !strings.Contains(s, "another program on that port?") ||
		!strings.Contains(s, "sudo plantedge flush") || strings.Contains(s, "sudo plantedge status") {
		t.Errorf("flush as nobody: exit %d\n%s", cmd.ProcessState.ExitCode(), s)
	}
}

// A flush while Odoo refuses the key (auth_failed): the agent's wait is
// not cut short by the flush's ask (Odoo's login lockout), and the
// progress line gave the ask's time, "next attempt in 1s", while the
// agent tried a minute later (review 44).
func TestFlushAfterARefusedKeyGivesTheAgentsWait(t *testing.T) {
	b := newBench(t, 17)
	if err := os.WriteFile(filepath.Join(filepath.Dir(b.cfgPath), "odoo-api-key"), []byte("not-the-key\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	b.startAgent()
	b.produce(5)
	waitUntil(t, 20*time.Second, "the key refused", func() (bool, string) {
		st := b.a.Status()
		return st.Odoo.State == "auth_failed" && st.Buffer.Pending > 0, fmt.Sprintf("%+v", st.Odoo)
	})
	out, err := cli(t, "flush", "-c", b.cfgPath, "--timeout", "3s")
	if exitCode(err) != 1 || strings.Contains(out, "(next attempt in 1s") || strings.Contains(out, "(next attempt in 2s") ||
		!strings.Contains(out, ": a flush tries a refused key again once forward.auth_backoff has passed since the refusal, not sooner") {
		t.Errorf("flush: exit %d, %v\n%s", exitCode(err), err, out)
	}
}

// deadletter retry or drop of all on a data_dir the agent has never run
// with, while it is stopped: there is nothing, which is done (exit 0) as
// with a buffer file that holds none — "0 done (also when there was
// nothing)" — and said so; a dead letter named by its id is not found (1).
// Nothing is made in data_dir. (The small leads probe: exit 1 for all.)
func TestDeadLetterAllWithoutABufferFile(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	cfg := oneMachineConfig(t, dir, data, agenttest.WriteKeyFile(t, dir, "k"))
	y, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	y = []byte(strings.Replace(string(y), `listen: "127.0.0.1:9464"`, `listen: "`+agenttest.FreeAddr(t)+`"`, 1))
	if err := os.WriteFile(cfg, y, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"retry"}, {"retry", "all"}, {"drop", "all", "-y"}} {
		out, err := cli(t, append(append([]string{"deadletter"}, args...), "-c", cfg)...)
		if err != nil || !strings.HasPrefix(out, args[0]+": 0 dead letters") || !strings.Contains(out, "no buffer file at "+filepath.Join(data, "buffer.db")) {
			t.Errorf("deadletter %s: exit %d (%v)\n%s", strings.Join(args, " "), exitCode(err), err, out)
		}
	}
	for _, args := range [][]string{{"retry", "3"}, {"drop", "3", "-y"}} {
		out, err := cli(t, append(append([]string{"deadletter"}, args...), "-c", cfg)...)
		if exitCode(err) != 1 || !strings.Contains(fmt.Sprint(err), "no dead letter 3") {
			t.Errorf("deadletter %s: exit %d (%v)\n%s", strings.Join(args, " "), exitCode(err), err, out)
		}
	}
	if _, err := os.Stat(data); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("data_dir made: %v", err)
	}
}

// The commands a technician runs say their exit statuses in --help, as
// flush does and as the README's table has them (the operator probe:
// status, validate, compact and deadletter said none).
func TestHelpSaysExitStatuses(t *testing.T) {
	for cmd, want := range map[string][]string{
		"status":     {"It exits 0 when it could tell, and 1 when", "a config file that does not load"},
		"validate":   {"It exits 0 when there is no problem (warnings allowed) and 1 on any problem."},
		"compact":    {"It exits 0 when done", "and 1 when the agent runs"},
		"deadletter": {"It exits 0 when done (also when there was nothing to do), and 1 when a drop was declined"},
		"flush": {"It exits 0 when drained, 1 when the timeout passes first (or the buffer drained while its writes fail", "2 when the agent is not running",
			"or an agent that stopped during the flush"},
		// The README's table has these too (the docs probe: run's and
		// demo's help said none).
		"run":        {"It exits 0 when stopped cleanly, 78 (EX_CONFIG) for a configuration it refuses", "and 1 on other failures"},
		"demo":       {"It exits 0 when Odoo matches what the machines made, 1 when it does not or the demo could not run, and 130 when interrupted"},
		"accept-qty": {"It exits 0 when the quantity was accepted, 1 when there was nothing to accept", "2 when the agent is not running (also when another program answers at listen and no agent holds the buffer file), 4 when"},
		"rebook":     {"It exits 1 if Odoo refused any booking", "2 when the agent is not running (also when another program answers at listen and no agent holds the buffer file), 3 when", "4 when it could not go through"},
		"browse":     {"It exits 1 when the tree was cut short (--max-nodes), a node's children could not be read, or the server could not be reached."},
	} {
		out, err := cli(t, cmd, "--help")
		for _, w := range want {
			if err != nil || !strings.Contains(strings.Join(strings.Fields(out), " "), w) {
				t.Errorf("%s --help (%v) lacks %q:\n%s", cmd, err, w, out)
			}
		}
	}
}
