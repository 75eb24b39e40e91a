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

	"github.com/plantedge/plantedge/buffer"
)

// A corrupt buffer file of a stopped agent is the agent's start to deal
// with (it moves it aside and starts a fresh one, as the service's user).
// A command run by hand on it — as root, as the runbook has it — must
// leave it where it is and say what to do: `deadletter drop` moved it
// aside, made a fresh buffer.db owned by root, which the service then
// could not open (exit 78), and said "drop: 0 dead letters", exit 0 (the
// technician probe).
func TestOfflineCommandsLeaveACorruptBufferToTheAgent(t *testing.T) {
	dir, cfgPath := stoppedAgentConfig(t)
	path := filepath.Join(dir, "buffer.db")
	q, err := buffer.Open(path, buffer.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := q.Append(context.Background(), []buffer.Record{{Lane: buffer.LaneCounts, Key: "m1/good", Time: time.Now(), Data: []byte("x")}}); err != nil {
		t.Fatal(err)
	}
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	// Both meta pages overwritten: bbolt cannot open it at all.
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(bytes.Repeat([]byte{0xa5}, 8192), 0); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	// The reserve file too is the agent's to make, as its user.
	if err := os.Remove(path + ".reserve"); err != nil {
		t.Fatal(err)
	}
	damaged, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}

	for _, args := range [][]string{
		{"deadletter", "drop", "all", "-y"},
		{"deadletter", "retry", "all"},
		{"deadletter", "list"},
		{"compact"},
	} {
		out, err := cli(t, append(args, "-c", cfgPath)...)
		if exitCode(err) != 1 || !strings.Contains(fmt.Sprint(err), "start the agent") || !strings.Contains(fmt.Sprint(err), "aside") {
			t.Errorf("%v on a corrupt buffer file: exit %d (%v), want 1 naming what to do\n%s", args, exitCode(err), err, out)
		}
		ents, _ := os.ReadDir(dir)
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		if got, _ := os.ReadFile(path); !bytes.Equal(got, damaged) || len(names) != 2 {
			t.Fatalf("%v changed data_dir: %v (buffer.db the same: %v), want only plantedge.yaml and the untouched buffer.db", args, names, bytes.Equal(got, damaged))
		}
	}
}
