package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/plantedge/plantedge/agent"
	"github.com/plantedge/plantedge/agent/config"
	"github.com/plantedge/plantedge/buffer"
)

// brokenStoppedConfig writes a stopped agent's configuration in block
// style, as the packaged example is, with one more key than the format
// knows (a file being edited): it does not load. ok is the same file
// without that key. The buffer file holds one count record and one dead
// letter that this file's Odoo refused.
func brokenStoppedConfig(t *testing.T, odoo string) (dir, broken, ok string) {
	t.Helper()
	dir = t.TempDir()
	yaml := fmt.Sprintf(`site: t
data_dir: %q
listen: 127.0.0.1:1
buffer:
  max_bytes: 64MiB
%s
mqtt:
  - name: b
    url: tcp://127.0.0.1:1
    client_id: c
machines:
  - id: m1
    workcenter: W
    good_count:
      mqtt: { broker: b, topic: t, field: good }
`, dir, odoo)
	ok = filepath.Join(dir, "ok.yaml")
	broken = filepath.Join(dir, "plantedge.yaml")
	if err := os.WriteFile(ok, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(broken, []byte(yaml+"bogus_key: 1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(ok)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := config.Load(broken); err == nil {
		t.Fatal("the broken file loaded")
	}
	ctx := context.Background()
	q, err := buffer.Open(cfg.BufferPath(), buffer.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	if err := q.PutMeta(ctx, buffer.KV{Key: "odoo", Value: []byte(agent.OdooIdentity(cfg))}); err != nil {
		t.Fatal(err)
	}
	recs := []buffer.Record{
		{Lane: buffer.LaneCounts, Key: "m1/good", Time: time.Now(), Data: []byte(`{"d":2}`)},
		{Lane: buffer.LaneCounts, Key: "m1/good", Time: time.Now(), Data: []byte(`{"d":3}`)},
	}
	if _, err := q.Append(ctx, recs); err != nil {
		t.Fatal(err)
	}
	got, err := q.Read(buffer.LaneCounts, 0, 1)
	if err != nil || len(got) != 1 {
		t.Fatalf("read: %v, %v", got, err)
	}
	if err := q.DeadLetter(ctx, got[0], "odoo mrp.workorder.write: ValidationError: refused"); err != nil {
		t.Fatal(err)
	}
	return dir, broken, ok
}

const blockOdoo = `odoo:
  url: http://127.0.0.1:1
  database: odoo
  username: bot
  api_key_file: /nonexistent`

// With the agent stopped and its config file not loading, deadletter
// list called every dead letter "refused by 127.0.0.1:1 odoo, not the
// Odoo the agent sends to", and retry kept them all "refused by another
// Odoo than the one the agent sends to (: )": the file's Odoo was not
// read. Now it is (block style); and where it cannot be (flow style),
// list names no other Odoo and retry says why it retries nothing.
func TestDeadLettersWithAConfigThatDoesNotLoad(t *testing.T) {
	t.Run("odoo read", func(t *testing.T) {
		_, broken, _ := brokenStoppedConfig(t, blockOdoo)
		out, err := cli(t, "deadletter", "list", "-c", broken)
		if err != nil || !strings.Contains(out, "ValidationError: refused") || strings.Contains(out, "not the Odoo the agent sends to") {
			t.Fatalf("list: exit %d (%v), want 0 and the dead letter as this Odoo's\n%s", exitCode(err), err, out)
		}
		out, err = cli(t, "deadletter", "retry", "-c", broken)
		if err != nil || !strings.Contains(out, "retry: 1 dead letter\n") || strings.Contains(out, "kept") {
			t.Fatalf("retry: exit %d (%v), want the dead letter retried\n%s", exitCode(err), err, out)
		}
	})
	t.Run("odoo not read", func(t *testing.T) {
		_, broken, ok := brokenStoppedConfig(t, `odoo: { url: "http://127.0.0.1:1", database: odoo, username: bot, api_key_file: /nonexistent }`)
		out, err := cli(t, "deadletter", "list", "-c", broken)
		if err != nil || !strings.Contains(out, "ValidationError: refused") || strings.Contains(out, "not the Odoo the agent sends to") {
			t.Fatalf("list: exit %d (%v), want 0 naming no other Odoo\n%s", exitCode(err), err, out)
		}
		out, err = cli(t, "deadletter", "retry", "-c", broken)
		if exitCode(err) != 1 || !strings.Contains(err.Error(), "nothing retried") || !strings.Contains(err.Error(), "plantedge validate") ||
			strings.Contains(out+err.Error(), "(: )") {
			t.Fatalf("retry: exit %d (%v), want 1 saying what to fix\n%s", exitCode(err), err, out)
		}
		// Still there, for the mended file's retry.
		out, err = cli(t, "deadletter", "retry", "-c", ok)
		if err != nil || !strings.Contains(out, "retry: 1 dead letter\n") {
			t.Fatalf("retry with the mended file: exit %d (%v)\n%s", exitCode(err), err, out)
		}
	})
}

// A stopped agent's status with a config file that does not load showed
// the default quota ("file 32.0 KiB of 1.0 GiB") for the file's 64MiB.
func TestStatusOfABrokenConfigShowsItsQuota(t *testing.T) {
	_, broken, _ := brokenStoppedConfig(t, blockOdoo)
	var out bytes.Buffer
	root := newRootCmd()
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs([]string{"status", "-c", broken})
	err := execute(context.Background(), root)
	if exitCode(err) != 1 || !strings.Contains(out.String(), "of 64.0 MiB") || !strings.Contains(out.String(), "http://127.0.0.1:1") {
		t.Fatalf("status: exit %d (%v), want 1 with the file's quota and Odoo\n%s", exitCode(err), err, out.String())
	}
}

// A broken file's odoo.url with a password in it (one of the problems
// that stop it loading) is shown without it: status read the URL as
// written and printed "http://bot:hunter2@127.0.0.1:1".
func TestStatusOfABrokenConfigShowsNoPasswordOfItsURL(t *testing.T) {
	_, broken, _ := brokenStoppedConfig(t, blockOdoo)
	b, err := os.ReadFile(broken)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(broken, bytes.Replace(b, []byte("http://127.0.0.1:1"), []byte("http://bot:hunter2@127.0.0.1:1"), 1), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"status"}, {"status", "--json"}} {
		var out bytes.Buffer
		root := newRootCmd()
		root.SetOut(&out)
		root.SetErr(&out)
		root.SetArgs(append(args, "-c", broken))
		err := execute(context.Background(), root)
		if s := out.String(); strings.Contains(s, "hunter2") || !strings.Contains(s, "http://127.0.0.1:1") {
			t.Errorf("%v: exit %d (%v), want the URL without its password\n%s", args, exitCode(err), err, s)
		}
	}
}

// A config file status cannot read (not there; a user who may not read
// /etc/plantedge): stdout was empty, the reason on stderr alone. Its first
// line now says which case this is, as for a buffer file not read.
func TestStatusOfAnUnreadableConfigSaysSoOnStdout(t *testing.T) {
	path := filepath.Join(t.TempDir(), "missing.yaml")
	var out, errOut bytes.Buffer
	root := newRootCmd()
	root.SetOut(&out)
	root.SetErr(&errOut)
	root.SetArgs([]string{"status", "-c", path})
	err := execute(context.Background(), root)
	if exitCode(err) != 1 || out.String() != "STATUS NOT KNOWN: config file "+path+" NOT READ (why: below)\n" || !strings.Contains(err.Error(), "no such file or directory") {
		t.Errorf("status: exit %d (%v), stdout %q", exitCode(err), err, out.String())
	}
}
