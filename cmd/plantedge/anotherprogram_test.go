package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/plantedge/plantedge/agent"
	"github.com/plantedge/plantedge/agent/agenttest"
	"github.com/plantedge/plantedge/buffer"
)

// foreignProgram is another program on the agent's listen port: kind is
// "200 JSON" (an answer of its own, 200 OK), "404" or "no answer" (it takes
// the connection and never answers). It returns its address and how the
// commands say what it answered.
func foreignProgram(t *testing.T, kind string) (addr, what string) {
	t.Helper()
	ln, err := net.Listen("tcp", agenttest.FreeAddr(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	var h http.HandlerFunc
	switch kind {
	case "200 JSON":
		h, what = func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprint(w, `{"status":"ok"}`)
		}, `it answered 200 OK (application/json): {"status":"ok"}, without the agent's Plantedge-Agent header`
	case "404":
		h, what = func(w http.ResponseWriter, r *http.Request) { http.NotFound(w, r) },
			"it answered 404 Not Found (text/plain): 404 page not found, without the agent's Plantedge-Agent header"
	case "no answer":
		return ln.Addr().String(), "it takes the connection but does not answer in time" // the kernel accepts
	default:
		t.Fatalf("foreign program %q", kind)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: time.Second}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String(), what
}

// seedDeadLetter makes path a stopped agent's buffer file holding one dead
// letter (a count of 2 good pieces of press-1), in place of what is there.
func seedDeadLetter(t *testing.T, path, odoo string) {
	t.Helper()
	if err := os.Remove(path); err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	ctx := context.Background()
	q, err := buffer.Open(path, buffer.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	if err := q.PutMeta(ctx, buffer.KV{Key: "odoo", Value: []byte(odoo)}); err != nil {
		t.Fatal(err)
	}
	if _, err := q.Append(ctx, []buffer.Record{{Lane: buffer.LaneCounts, Key: "press-1/good", Time: time.Now(), Data: []byte(`{"d":2}`)}}); err != nil {
		t.Fatal(err)
	}
	got, err := q.Read(buffer.LaneCounts, 0, 1)
	if err != nil || len(got) != 1 {
		t.Fatalf("read: %v, %v", got, err)
	}
	if err := q.DeadLetter(ctx, got[0], "odoo mrp.workorder.write: ValidationError: refused"); err != nil {
		t.Fatal(err)
	}
}

// runCmd runs one command line within ctx and returns stdout, stderr and
// its error.
func runCmd(ctx context.Context, args ...string) (stdout, stderr string, err error) {
	root := newRootCmd()
	var o, e bytes.Buffer
	root.SetOut(&o)
	root.SetErr(&e)
	root.SetArgs(args)
	err = execute(ctx, root)
	return o.String(), e.String(), err
}

// Another program on the agent's listen port answering what it answers —
// a 200 with JSON of its own, a 404, nothing at all — while no agent holds
// the buffer file (the agent stopped). Before, the CLI took a 200 with JSON
// for the agent's answer: deadletter retry and drop all said "0 dead
// letters" without reading the file (exit 0), rebook "rebooked 0 lines"
// (exit 0), accept-qty ": not changed: " (exit 1), compact refused ("the
// agent is running"), and status said "site  — AGENT NOT RUNNING (read from
// the buffer file)" with no word of what answered (exit 0). The agent's
// answers carry a Plantedge-Agent header; one without it, with the lock
// free, is another program's, whatever it answers: each command says so,
// works on the file where it can without the agent (status, deadletter,
// compact) or exits 2, the agent not running (flush, rebook, accept-qty:
// they exited 4 for a 404 or for no answer).
func TestCommandsWithAnotherProgramOnTheListenPort(t *testing.T) {
	for _, kind := range []string{"200 JSON", "404", "no answer"} {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			b := newBench(t, 17)
			cfg := b.makeDataDir()
			addr, what := foreignProgram(t, kind)
			b.editConfig(b.listen, addr)
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			run := func(args ...string) (string, string, error) {
				t.Helper()
				return runCmd(ctx, append(args, "-c", b.cfgPath)...)
			}
			// A request it does not answer ends at the client's timeout:
			// 50 s and more for rebook and accept-qty, which wait for a
			// round. The same, cut by the command's context, sooner.
			soon := func(args ...string) (string, string, error) {
				t.Helper()
				ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
				defer cancel()
				return runCmd(ctx, append(args, "-c", b.cfgPath)...)
			}
			notIt := "what answers at listen " + addr + " is not it (" + what + "): another program on that port?"
			says := func(cmd, text string) {
				t.Helper()
				if !strings.Contains(text, "agent not running (no agent holds "+cfg.BufferPath()+")") || !strings.Contains(text, notIt) {
					t.Errorf("%s: does not say that the agent is not running and what answers at listen:\n%s", cmd, text)
				}
			}
			seedDeadLetter(t, cfg.BufferPath(), agent.OdooIdentity(cfg))

			out, errs, err := run("status")
			if exitCode(err) != 1 || !strings.HasPrefix(out, "site cli-test — AGENT NOT RUNNING (read from the buffer file)\n") ||
				!strings.Contains(out, "dead letters 1,") {
				t.Errorf("status: exit %d\n%s%s", exitCode(err), out, errs)
			}
			says("status", fmt.Sprint(err))
			// A request to a program that does not answer takes the
			// client's 10 s: status --json, drop and no buffer file are
			// left to the programs that answer.
			slow := kind == "no answer"
			if !slow {
				out, _, err = run("status", "--json")
				if m := decodeStatus(t, out); exitCode(err) != 1 || m["agent_running"] != false || m["site"] != "cli-test" ||
					m["buffer"].(map[string]any)["dead_letters"] != 1.0 {
					t.Errorf("status --json: exit %d\n%s", exitCode(err), out)
				} else {
					says("status --json", fmt.Sprint(m["status_error"]))
				}
			}

			out, errs, err = run("deadletter", "list")
			if err != nil || !strings.Contains(out, "press-1/good") || !strings.Contains(out, "2 good pieces") {
				t.Errorf("deadletter list: exit %d (%v)\n%s%s", exitCode(err), err, out, errs)
			}
			says("deadletter list", errs)
			out, errs, err = run("deadletter", "retry")
			if err != nil || out != "retry: 1 dead letter\n" {
				t.Errorf("deadletter retry: exit %d (%v)\n%s%s", exitCode(err), err, out, errs)
			}
			says("deadletter retry", errs)
			if !slow {
				seedDeadLetter(t, cfg.BufferPath(), agent.OdooIdentity(cfg))
				out, errs, err = run("deadletter", "drop", "all", "-y")
				if err != nil || out != "drop: 1 dead letter\n" {
					t.Errorf("deadletter drop all: exit %d (%v)\n%s%s", exitCode(err), err, out, errs)
				}
				says("deadletter drop", errs)
			}

			out, errs, err = run("compact")
			if err != nil || !strings.Contains(out, "note: what answers at listen "+addr+" is not this agent ("+what+"); no agent holds") ||
				!strings.Contains(out, "compacted "+cfg.BufferPath()) {
				t.Errorf("compact: exit %d (%v)\n%s%s", exitCode(err), err, out, errs)
			}

			out, errs, err = run("flush", "--timeout", "3s")
			if exitCode(err) != 2 || strings.Contains(out, "drained") || !strings.Contains(fmt.Sprint(err), "Nothing was flushed") {
				t.Errorf("flush: exit %d (%v)\n%s%s", exitCode(err), err, out, errs)
			}
			says("flush", fmt.Sprint(err))
			// Each in its own words (one helper says both).
			free := "The agent cannot listen there while it is taken: stop that program or give listen another address, then start the agent (systemctl start plantedge)"
			for _, c := range []struct {
				args    []string
				nothing string
			}{
				{[]string{"rebook", "--since", "1h"}, "Nothing was rebooked: rebook books through the agent. " + free + ", then run rebook again"},
				{[]string{"accept-qty", "press-1"}, "Nothing was accepted: accept-qty works through the agent. " + free + ", then run accept-qty again"},
			} {
				out, errs, err := soon(c.args...)
				if exitCode(err) != 2 || out != "" || !strings.HasSuffix(fmt.Sprint(err), notIt+" "+c.nothing) {
					t.Errorf("%s: exit %d (%v)\n%s%s", c.args[0], exitCode(err), err, out, errs)
				}
				says(c.args[0], fmt.Sprint(err))
			}

			if slow {
				return
			}
			// No buffer file (the agent never ran with this data_dir).
			if err := os.Remove(cfg.BufferPath()); err != nil {
				t.Fatal(err)
			}
			out, errs, err = run("status")
			if exitCode(err) != 1 || !strings.HasPrefix(out, "site cli-test — AGENT NOT RUNNING (and no buffer file yet)\n") {
				t.Errorf("status, no buffer file: exit %d\n%s%s", exitCode(err), out, errs)
			}
			says("status, no buffer file", fmt.Sprint(err))
			out, errs, err = run("deadletter", "retry")
			if err != nil || !strings.HasPrefix(out, "retry: 0 dead letters (agent not running, and no buffer file at ") {
				t.Errorf("deadletter retry, no buffer file: exit %d (%v)\n%s%s", exitCode(err), err, out, errs)
			}
			says("deadletter retry, no buffer file", errs)
			if _, err := os.Stat(cfg.BufferPath()); !os.IsNotExist(err) {
				t.Errorf("a command made a buffer file: %v", err)
			}
		})
	}
}

// The same programs while a process holds the buffer file: an agent of a
// version before the Plantedge-Agent header (a package upgrade that left
// it running), or one started with another listen. Its answers are taken
// as before — the agent's refusals, in one line — and not one of them is
// said to be the agent not running; the file is not touched. A 200 with
// JSON of its own is not taken for a status (agent_running), nor for a
// rebook or accept-qty that does not name what was asked.
func TestCommandsWithAnotherProgramOnTheListenPortAndTheFileHeld(t *testing.T) {
	for _, kind := range []string{"200 JSON", "404"} {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			b := newBench(t, 17)
			cfg := b.makeDataDir()
			addr, _ := foreignProgram(t, kind)
			b.editConfig(b.listen, addr)
			seedDeadLetter(t, cfg.BufferPath(), agent.OdooIdentity(cfg))
			q, err := buffer.Open(cfg.BufferPath(), buffer.Options{}) // what a running agent holds
			if err != nil {
				t.Fatal(err)
			}
			defer q.Close()
			run := func(args ...string) (string, string, error) {
				t.Helper()
				return runCmd(context.Background(), append(args, "-c", b.cfgPath)...)
			}
			for _, c := range []struct {
				args []string
				exit int
			}{
				{[]string{"status"}, 1},
				{[]string{"flush", "--timeout", "3s"}, 4},
				{[]string{"deadletter", "list"}, 1},
				{[]string{"compact"}, 1},
				{[]string{"rebook", "--since", "1h"}, 4},
				{[]string{"accept-qty", "press-1"}, 4},
			} {
				out, errs, err := run(c.args...)
				if exitCode(err) != c.exit || strings.Contains(fmt.Sprint(err), "agent not running") || strings.Contains(fmt.Sprint(err), "\n") {
					t.Errorf("%s: exit %d, want %d (%v)\n%s%s", c.args[0], exitCode(err), c.exit, err, out, errs)
				}
				if c.args[0] == "status" && !strings.HasPrefix(out, "site cli-test — agent running, status NOT KNOWN") {
					t.Errorf("status:\n%s", out)
				}
			}
			if kind == "404" {
				// The file is the holder's: a retry or drop through what
				// answers is refused, in one line.
				for _, args := range [][]string{{"deadletter", "retry"}, {"deadletter", "drop", "all", "-y"}} {
					out, errs, err := run(args...)
					if exitCode(err) != 1 || fmt.Sprint(err) != "agent: 404 page not found" {
						t.Errorf("%s: exit %d (%v)\n%s%s", strings.Join(args, " "), exitCode(err), err, out, errs)
					}
				}
			}
			if dls, err := q.DeadLetters(); err != nil || len(dls) != 1 {
				t.Errorf("dead letters in the held file: %d (%v), want 1", len(dls), err)
			}
		})
	}
}

// Every answer of the agent's local API carries the Plantedge-Agent header
// with its version — the API's, its refusals, and what monitoring reads
// (/metrics, /healthz, /readyz, which are unchanged otherwise) — and the
// commands take the running agent's answers.
func TestAgentAnswersCarryItsHeader(t *testing.T) {
	b := newBench(t, 17)
	b.startAgent()
	for _, c := range []struct {
		method, path, host string
		status             int
	}{
		{http.MethodGet, "/api/v1/status", "", http.StatusOK},
		{http.MethodGet, "/api/v1/deadletters", "", http.StatusOK},
		{http.MethodPost, "/api/v1/rebook?since=x", "", http.StatusBadRequest},
		{http.MethodGet, "/api/v1/status", "rebound.example", http.StatusForbidden}, // a Host not this machine
		{http.MethodGet, "/api/v1/nothing", "", http.StatusNotFound},
		{http.MethodGet, "/metrics", "", http.StatusOK},
		{http.MethodGet, "/healthz", "", http.StatusOK},
		{http.MethodGet, "/readyz", "", http.StatusOK},
	} {
		req, err := http.NewRequest(c.method, "http://"+b.listen+c.path, nil)
		if err != nil {
			t.Fatal(err)
		}
		if c.host != "" {
			req.Host = c.host
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != c.status || resp.Header.Get(agent.AgentHeader) != "test" {
			t.Errorf("%s %s (Host %q): %s, %s %q", c.method, c.path, c.host, resp.Status, agent.AgentHeader, resp.Header.Get(agent.AgentHeader))
		}
	}
	for _, args := range [][]string{{"status"}, {"deadletter", "list"}, {"flush", "--timeout", "30s"}} {
		if out, err := cli(t, append(args, "-c", b.cfgPath)...); err != nil || strings.Contains(out, "another program") {
			t.Errorf("%s: %v\n%s", args[0], err, out)
		}
	}
}
