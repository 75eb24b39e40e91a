package main

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/plantedge/plantedge/agent/config"
	"github.com/plantedge/plantedge/buffer"
)

// stoppedAgentConfig writes a configuration of one machine whose agent is
// not running (nothing listens at its addresses), its data_dir a fresh
// directory: the offline commands' (compact, deadletter) ground.
func stoppedAgentConfig(t *testing.T) (dir, cfgPath string) {
	t.Helper()
	dir = t.TempDir()
	cfgPath = filepath.Join(dir, "plantedge.yaml")
	yaml := fmt.Sprintf(`site: t
data_dir: %q
listen: 127.0.0.1:1
odoo: { url: "http://127.0.0.1:1", database: odoo, username: bot, api_key_file: /nonexistent }
mqtt: [{ name: b, url: "tcp://127.0.0.1:1", client_id: c }]
machines: [{ id: m1, workcenter: W, good_count: { mqtt: { broker: b, topic: t, field: good } } }]
`, dir)
	if err := os.WriteFile(cfgPath, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	return dir, cfgPath
}

func TestCompactShrinksAndKeepsRecords(t *testing.T) {
	dir, cfgPath := stoppedAgentConfig(t)
	cfg, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	q, err := buffer.Open(cfg.BufferPath(), buffer.Options{})
	if err != nil {
		t.Fatal(err)
	}
	var recs []buffer.Record
	for i := 0; i < 20000; i++ {
		recs = append(recs, buffer.Record{Lane: buffer.LaneCounts, Key: "m1/good", Time: time.Now(), Data: bytes.Repeat([]byte("x"), 200)})
	}
	if _, err := q.Append(ctx, recs); err != nil {
		t.Fatal(err)
	}
	got, err := q.Read(buffer.LaneCounts, 0, 19990)
	if err != nil {
		t.Fatal(err)
	}
	if err := q.Ack(ctx, got); err != nil {
		t.Fatal(err)
	}
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	before, _ := os.Stat(cfg.BufferPath())

	// Another process holding the file (a second compact): refused, and
	// said so.
	held, err := buffer.Open(cfg.BufferPath(), buffer.Options{})
	if err != nil {
		t.Fatal(err)
	}
	err = compactBuffer(ctx, cfg, &bytes.Buffer{})
	if exitCode(err) != 1 || !strings.Contains(err.Error(), "in use by another process") {
		t.Errorf("compact of a file in use: %v", err)
	}
	if err := held.Close(); err != nil {
		t.Fatal(err)
	}

	var out bytes.Buffer
	if err := compactBuffer(ctx, cfg, &out); err != nil {
		t.Fatal(err)
	}
	after, _ := os.Stat(cfg.BufferPath())
	if after.Size() >= before.Size() || !strings.Contains(out.String(), "compacted") {
		t.Fatalf("size %d -> %d, output %q", before.Size(), after.Size(), out.String())
	}
	if after.Mode().Perm() != before.Mode().Perm() {
		t.Errorf("mode %v -> %v", before.Mode().Perm(), after.Mode().Perm())
	}
	q, err = buffer.Open(cfg.BufferPath(), buffer.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	left, err := q.Read(buffer.LaneCounts, 0, 100)
	if err != nil || len(left) != 10 || left[0].Seq != got[len(got)-1].Seq+1 {
		t.Fatalf("after compact: %d records (%v), first seq %v", len(left), err, left)
	}

	// Before the agent ever ran: nothing to do, and no error.
	cfg.DataDir = filepath.Join(dir, "never")
	out.Reset()
	if err := compactBuffer(ctx, cfg, &out); err != nil || !strings.Contains(out.String(), "nothing to compact: no buffer file at") {
		t.Errorf("compact with no buffer file: %v, %q", err, out.String())
	}
}

// compact needs a stopped agent's data_dir and listen only, as status
// does: a config file that does not load (being edited while the disk
// fills) warns and compacts the file's data_dir. It exited 1 with the
// file's problem, and the technician had to mend the file first.
func TestCompactWithAConfigThatDoesNotLoad(t *testing.T) {
	dir, broken, _ := brokenStoppedConfig(t, blockOdoo)
	out, err := cli(t, "compact", "-c", broken)
	if err != nil || !strings.Contains(out, "does not load") || !strings.Contains(out, "compacted "+filepath.Join(dir, "buffer.db")) {
		t.Fatalf("compact with a config that does not load: exit %d (%v), want 0 with a warning and the buffer compacted\n%s", exitCode(err), err, out)
	}
	// What it holds is still there.
	q, err := buffer.Open(filepath.Join(dir, "buffer.db"), buffer.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	left, err := q.Read(buffer.LaneCounts, 0, 10)
	dead, derr := q.DeadLetters()
	if err != nil || derr != nil || len(left) != 1 || len(dead) != 1 {
		t.Fatalf("after compact: %d records (%v), %d dead letters (%v); want 1 and 1", len(left), err, len(dead), derr)
	}
}

// Another program on the agent's listen port, the agent stopped: compact
// said "agent: 404 page not found" and exited 1, compacting nothing. No
// agent holds the buffer file, which is what matters: it is compacted,
// with a note on what answers there.
func TestCompactWithAnotherProgramOnTheListenPort(t *testing.T) {
	dir, broken, _ := brokenStoppedConfig(t, blockOdoo)
	other := serveAt(t, http.NotFoundHandler())
	b, err := os.ReadFile(broken)
	if err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(dir, "other.yaml")
	b = bytes.Replace(bytes.Replace(b, []byte("listen: 127.0.0.1:1\n"), []byte("listen: "+other+"\n"), 1), []byte("bogus_key: 1\n"), nil, 1)
	if err := os.WriteFile(cfgPath, b, 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := cli(t, "compact", "-c", cfgPath)
	if err != nil || !strings.Contains(out, "is not this agent (it answered 404 Not Found") || !strings.Contains(out, "compacted ") {
		t.Fatalf("compact, another program at listen: exit %d (%v), want 0, the buffer compacted with a note\n%s", exitCode(err), err, out)
	}

	// An agent holding the file (here: the test) while the other program
	// answers at listen: refused, saying the agent runs.
	held, err := buffer.Open(filepath.Join(dir, "buffer.db"), buffer.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	out, err = cli(t, "compact", "-c", cfgPath)
	if exitCode(err) != 1 || !strings.Contains(fmt.Sprint(err), "the agent is running (it holds") {
		t.Errorf("compact, the file held, another program at listen: exit %d (%v), want 1 saying the agent runs\n%s", exitCode(err), err, out)
	}
}
