package main

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/plantedge/plantedge/agent/agenttest"
	"github.com/plantedge/plantedge/odoo/odootest"
)

// TestKeyNeverShown holds SPEC.md's guarantee 8 at the commands: the Odoo
// API key appears in none of the agent's log lines (at debug level), the
// human and JSON status (agent running and stopped), flush's, validate
// --odoo's and deadletter's output and errors, /metrics and /healthz —
// while Odoo answers, fails for a moment, commits without answering, and
// refuses the key. (The odoo package's TestSecretNeverPrinted holds it for
// the client alone.)
func TestKeyNeverShown(t *testing.T) {
	b := newBench(t, 17)
	b.logs = new(agenttest.SyncBuffer)
	b.startAgent()
	if len(b.key) < 16 {
		t.Fatalf("emulator key %q", b.key)
	}
	var seen []string
	run := func(args ...string) (string, error) {
		out, err := cli(t, args...)
		seen = append(seen, fmt.Sprintf("plantedge %s:\n%s%v", strings.Join(args, " "), out, err))
		return out, err
	}
	get := func(path string) {
		resp, err := http.Get("http://" + b.listen + path)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		seen = append(seen, "GET "+path+":\n"+string(body))
	}
	everything := func() {
		run("status", "-c", b.cfgPath)
		run("status", "-c", b.cfgPath, "--json")
		run("deadletter", "list", "-c", b.cfgPath, "--json")
		run("validate", "-c", b.cfgPath, "--odoo")
		get("/metrics")
		get("/healthz")
	}

	b.produce(3)
	b.waitQty()
	everything()

	// Odoo fails for a moment, and commits a write it does not answer.
	for _, f := range []odootest.Fault{odootest.FaultHTTP503, odootest.FaultCommitThenDrop} {
		b.odoo.FailNext(1, f)
		b.produce(2)
		if _, err := run("flush", "-c", b.cfgPath, "--timeout", "30s"); err != nil {
			t.Fatalf("flush after a %s: %v", f, err)
		}
	}
	b.waitQty()

	// Odoo refuses the key.
	b.odoo.ExpireKey(b.key)
	b.produce(4)
	waitUntil(t, 30*time.Second, "auth_failed", func() (bool, string) {
		st := b.a.Status()
		return st.Odoo.State == "auth_failed", st.Odoo.State + " " + st.Odoo.LastError
	})
	if _, err := run("flush", "-c", b.cfgPath, "--timeout", "1s"); err == nil {
		t.Errorf("flush with the key refused: exit 0")
	}
	everything()
	if out, err := run("validate", "-c", b.cfgPath, "--odoo"); err == nil {
		t.Errorf("validate --odoo with the key refused: exit 0\n%s", out)
	}

	b.stopAgent()
	run("status", "-c", b.cfgPath)
	run("status", "-c", b.cfgPath, "--json")
	run("flush", "-c", b.cfgPath, "--timeout", "1s")

	seen = append(seen, "agent log:\n"+b.logs.String())
	if !strings.Contains(b.logs.String(), "level=DEBUG") {
		t.Errorf("no debug line in the agent's log: the check below would miss them")
	}
	for _, s := range seen {
		// The whole key, or a half of it long enough to be used.
		for _, part := range []string{b.key, b.key[:len(b.key)/2], b.key[len(b.key)/2:]} {
			if strings.Contains(s, part) {
				t.Errorf("the API key (or a half of it) is shown in %s", s)
			}
		}
	}
}
