package opcua

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestBrowseInProcessServer(t *testing.T) {
	ts := startInProcess(t, 0)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	var out bytes.Buffer
	if err := Browse(ctx, ts.url, BrowseOptions{Node: "nsu=" + testNS + ";i=85", Depth: 3}, &out); err != nil {
		t.Fatalf("Browse: %v\n%s", err, out.String())
	}
	got := out.String()
	t.Logf("\n%s", got)
	for _, want := range []string{
		"ns=1;i=85  \"" + testNS + "\"  (Object)",
		"  ns=1;s=Counter  \"Counter\"  Int32 = 0",
		"  ns=1;s=Temp  \"Temp\"  Double = 21.5",
		"  ns=1;s=Name  \"Name\"  String = \"press-07\"",
		"  ns=1;i=1001  \"Speed\"  UInt16 = 1200",
		"  ns=1;s=Broken  \"Broken\"  ? = BadSensorFailure",
		"  ns=1;s=Line1/Press07  \"Press07\"  (Object)",
		"    ns=1;s=Press07.GoodCount  \"GoodCount\"  UInt32 = 0",
	} {
		if !strings.Contains(got, want+"\n") {
			t.Errorf("output lacks line %q", want)
		}
	}

	// Depth 1 stops above the folder's children.
	out.Reset()
	if err := Browse(ctx, ts.url, BrowseOptions{Node: "ns=1;i=85", Depth: 1}, &out); err != nil {
		t.Fatalf("Browse depth 1: %v", err)
	}
	if strings.Contains(out.String(), "GoodCount") || !strings.Contains(out.String(), "Press07") {
		t.Errorf("depth 1 output wrong:\n%s", out.String())
	}

	// The node limit stops a large address space and says so.
	out.Reset()
	err := Browse(ctx, ts.url, BrowseOptions{Depth: 5, MaxNodes: 4}, &out)
	if !errors.Is(err, ErrTruncated) {
		t.Fatalf("Browse with MaxNodes 4 = %v, want ErrTruncated", err)
	}
	if n := strings.Count(out.String(), "\n"); n != 5 { // 4 nodes + the notice
		t.Errorf("printed %d lines, want 5:\n%s", n, out.String())
	}

	// The default start is the Objects folder, which links namespace 1.
	out.Reset()
	if err := Browse(ctx, ts.url, BrowseOptions{Depth: 2}, &out); err != nil {
		t.Fatalf("Browse default: %v", err)
	}
	if !strings.HasPrefix(out.String(), "i=85  \"Objects\"") || !strings.Contains(out.String(), "ns=1;s=Counter") {
		t.Errorf("default browse:\n%s", out.String())
	}

	if err := Browse(ctx, ts.url, BrowseOptions{Node: "ns=1;s=Nope"}, &out); err == nil {
		t.Error("Browse of an unknown node succeeded")
	}
}
