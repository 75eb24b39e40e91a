package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/plantedge/plantedge/agent/agenttest"
	"github.com/plantedge/plantedge/connectors/opcua/opcuatest"
	"github.com/plantedge/plantedge/internal/nettest"
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
	sh := &shown{t: t, listen: b.listen}
	run, get := sh.run, sh.get
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

	sh.afterStop(b)
	for _, s := range sh.seen {
		// The whole key, or a half of it long enough to be used.
		for _, part := range []string{b.key, b.key[:len(b.key)/2], b.key[len(b.key)/2:]} {
			if strings.Contains(s, part) {
				t.Errorf("the API key (or a half of it) is shown in %s", s)
			}
		}
	}
}

// TestSourcePasswordsNeverShown holds SPEC.md's guarantee 8 for the
// sources' passwords, as TestKeyNeverShown does for the API key: an MQTT
// broker that takes one user (password_env) and an OPC UA server that
// takes one user (password_file). Neither password appears in the agent's
// log (at debug level), the human and JSON status (agent running and
// stopped), flush's, validate's (--mqtt, --opcua) output and errors,
// /metrics and /healthz — while the logins are taken, and while both
// servers refuse them (the accounts' passwords changed: the broker answers
// CONNACK "bad user name or password", the OPC UA server
// BadUserAccessDenied), which the status and validate say.
func TestSourcePasswordsNeverShown(t *testing.T) {
	mqttPass, opcuaPass := secretText(t), secretText(t)
	b := newBench(t, 17)
	b.logs = new(agenttest.SyncBuffer)
	b.broker.RequireLogin("line-reader", mqttPass)
	t.Setenv("PE_TEST_MQTT_PASSWORD", mqttPass)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	plc, err := opcuatest.Start(ctx, nettest.FreePort(t), map[string]any{"P2.Good": uint32(100)}, opcuatest.WithUser("operator", opcuaPass))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(plc.Close)
	passFile := filepath.Join(t.TempDir(), "opcua-password")
	if err := os.WriteFile(passFile, []byte(opcuaPass+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	b.odoo.AddWorkcenter("WC-PRESS-2", "press-2")
	b.editConfig("    client_id: plantedge-cli-test\n", "    client_id: plantedge-cli-test\n    username: line-reader\n    password_env: PE_TEST_MQTT_PASSWORD\n")
	b.editConfig("machines:\n", fmt.Sprintf(`opcua:
  - name: line1
    endpoint: %q
    username: operator
    password_file: %q
    publishing_interval: 100ms
    sampling_interval: 50ms
    backoff_max: 1s
machines:
`, plc.Endpoint(), passFile))
	raw, err := os.ReadFile(b.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(b.cfgPath, append(raw, fmt.Sprintf(`  - id: press-2
    workcenter: WC-PRESS-2
    good_count: { opcua: { server: line1, node: %q } }
`, plc.NodeID("P2.Good"))...), 0o600); err != nil {
		t.Fatal(err)
	}

	sh := &shown{t: t, listen: b.listen}
	run, get := sh.run, sh.get
	everything := func() {
		run("status", "-c", b.cfgPath)
		run("status", "-c", b.cfgPath, "--json")
		run("validate", "-c", b.cfgPath)
		get("/metrics")
		get("/healthz")
	}

	// The logins are taken.
	b.startAgent()
	b.produce(3)
	b.waitQty()
	everything()
	for _, flag := range []string{"--mqtt", "--opcua"} {
		if out, err := run("validate", "-c", b.cfgPath, flag); err != nil {
			t.Errorf("validate %s with the logins taken: %v\n%s", flag, err, out)
		}
	}
	if _, err := run("flush", "-c", b.cfgPath, "--timeout", "30s"); err != nil {
		t.Errorf("flush: %v", err)
	}
	if n, m := b.broker.LoginsRefused(), plc.Refused(); n != 0 || m != 0 {
		t.Fatalf("logins refused with the right passwords: %d by the broker, %d by the OPC UA server", n, m)
	}

	// The accounts' passwords change: both servers refuse the logins.
	b.stopAgent()
	b.broker.RequireLogin("line-reader", "changed-"+mqttPass[:4])
	plc.SetPassword("changed-" + opcuaPass[:4])
	b.launchAgent()
	waitUntil(t, 30*time.Second, "both logins refused", func() (bool, string) {
		st := b.a.Status()
		refused := b.broker.LoginsRefused() > 0 && plc.Refused() > 0
		for _, s := range st.Sources {
			if s.State == "connected" || s.LastError == "" {
				refused = false
			}
		}
		return refused, fmt.Sprintf("broker refused %d, OPC UA server %d; %+v", b.broker.LoginsRefused(), plc.Refused(), st.Sources)
	})
	everything()
	for _, flag := range []string{"--mqtt", "--opcua"} {
		if out, err := run("validate", "-c", b.cfgPath, flag); err == nil {
			t.Errorf("validate %s with the login refused: exit 0\n%s", flag, out)
		} else if flag == "--opcua" && !opcuaLoginProblem.MatchString(out) {
			// The server said who it refused: the problem is the login,
			// not the endpoint, network or certificate.
			t.Errorf("validate --opcua with the login refused does not point at the login (%s):\n%s", opcuaLoginProblem, out)
		} else if flag == "--mqtt" && !mqttLoginProblem.MatchString(out) {
			// So did the broker (CONNACK): the login, not the url.
			t.Errorf("validate --mqtt with the login refused does not point at the login (%s):\n%s", mqttLoginProblem, out)
		}
	}
	st := b.a.Status()
	for _, s := range st.Sources {
		t.Logf("source %s refused: %s", s.Name, s.LastError)
	}

	sh.afterStop(b)
	for _, s := range sh.seen {
		for name, secret := range map[string]string{"MQTT": mqttPass, "OPC UA": opcuaPass} {
			// The whole password, or a half of it long enough to be used.
			for _, part := range []string{secret, secret[:len(secret)/2], secret[len(secret)/2:]} {
				if strings.Contains(s, part) {
					t.Errorf("the %s password (or a half of it) is shown in %s", name, s)
				}
			}
		}
	}
	if testing.Verbose() {
		for _, s := range sh.seen[:len(sh.seen)-1] {
			t.Log(s)
		}
	}
}

// opcuaLoginProblem is validate --opcua's problem for a login the server
// refuses: at the user name, pointing at the password.
var opcuaLoginProblem = regexp.MustCompile(`opcua: problem: \S+: opcua\[0\]\.username: line1 .*BadUserAccessDenied.*\(.*password_file`)

// mqttLoginProblem is validate --mqtt's for a login the broker refuses (the
// broker answers CONNACK 5, "not authorized"): at the user name, pointing
// at the password.
var mqttLoginProblem = regexp.MustCompile(`mqtt: problem: \S+: mqtt\[0\]\.username: \S+: the broker refused user line-reader: .*not Authorized.*\(.*password_env`)

// secretText is a password no output holds by chance.
func secretText(t *testing.T) string {
	t.Helper()
	buf := make([]byte, 16)
	if _, err := rand.Read(buf); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(buf)
}

// shown keeps what the commands printed and the local API answered, for a
// test that looks for a secret in all of it.
type shown struct {
	t      *testing.T
	listen string
	seen   []string
}

// run runs plantedge with args and keeps what it printed.
func (s *shown) run(args ...string) (string, error) {
	out, err := cli(s.t, args...)
	s.seen = append(s.seen, fmt.Sprintf("plantedge %s:\n%s%v", strings.Join(args, " "), out, err))
	return out, err
}

// get asks the agent's local API for path and keeps the answer.
func (s *shown) get(path string) {
	resp, err := http.Get("http://" + s.listen + path)
	if err != nil {
		s.t.Fatalf("GET %s: %v", path, err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	s.seen = append(s.seen, "GET "+path+":\n"+string(body))
}

// afterStop stops b's agent, runs what a technician runs on a stopped one
// (status, flush), and keeps the agent's log, which must have debug lines.
func (s *shown) afterStop(b *bench) {
	b.stopAgent()
	s.run("status", "-c", b.cfgPath)
	s.run("status", "-c", b.cfgPath, "--json")
	s.run("flush", "-c", b.cfgPath, "--timeout", "1s")
	s.seen = append(s.seen, "agent log:\n"+b.logs.String())
	if !strings.Contains(b.logs.String(), "level=DEBUG") {
		s.t.Errorf("no debug line in the agent's log: the check below would miss them")
	}
}
