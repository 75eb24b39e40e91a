package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/plantedge/plantedge/connectors/opcua/opcuatest"
)

func TestBrowseCommand(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	srv, err := opcuatest.Start(ctx, 0, map[string]any{"Press07.GoodCount": int32(1234)})
	if err != nil {
		t.Fatalf("start server: %v", err)
	}
	t.Cleanup(srv.Close)

	root := newRootCmd()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs([]string{"browse", srv.Endpoint(), "--depth", "3"})
	if err := root.ExecuteContext(ctx); err != nil {
		t.Fatalf("browse: %v\n%s", err, out.String())
	}
	want := srv.NodeID("Press07.GoodCount")
	var line string
	for _, l := range strings.Split(out.String(), "\n") {
		if strings.Contains(l, want) {
			line = l
		}
	}
	if line == "" || !strings.HasSuffix(line, "Int32 = 1234") || !strings.HasPrefix(line, "  ") {
		t.Errorf("no indented line for %s with its type and value:\n%s", want, out.String())
	}

	// --depth 0: the node alone, with its type and current value (a
	// technician reading one tag).
	out.Reset()
	root = newRootCmd()
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs([]string{"browse", srv.Endpoint(), "--node", want, "--depth", "0"})
	if err := root.ExecuteContext(ctx); err != nil {
		t.Fatalf("browse --depth 0: %v\n%s", err, out.String())
	}
	if got := out.String(); !strings.HasPrefix(got, want+"  ") || !strings.HasSuffix(got, "Int32 = 1234\n") || strings.Count(got, "\n") != 1 {
		t.Errorf("browse --depth 0 of %s: want its one line with type and value, got:\n%s", want, got)
	}

	for _, args := range [][]string{
		{"browse", "http://x"},
		{"browse", srv.Endpoint(), "--depth", "-1"},
		{"browse", srv.Endpoint(), "--cert", "a.crt"},
		{"browse"},
	} {
		root := newRootCmd()
		root.SetOut(&bytes.Buffer{})
		root.SetErr(&bytes.Buffer{})
		root.SetArgs(args)
		if err := root.ExecuteContext(ctx); err == nil {
			t.Errorf("%v: accepted", args)
		}
	}
}
