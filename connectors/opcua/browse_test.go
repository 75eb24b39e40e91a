package opcua

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gopcua/opcua/id"
	"github.com/gopcua/opcua/server"
	"github.com/gopcua/opcua/server/attrs"
	"github.com/gopcua/opcua/ua"
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

	// Depth 0 is the node alone: one line, no children looked at.
	out.Reset()
	if err := Browse(ctx, ts.url, BrowseOptions{Node: "ns=1;s=Temp", Depth: 0}, &out); err != nil {
		t.Fatalf("Browse depth 0: %v", err)
	}
	if out.String() != "ns=1;s=Temp  \"Temp\"  Double = 21.5\n" {
		t.Errorf("depth 0 output: %q", out.String())
	}
	if err := Browse(ctx, ts.url, BrowseOptions{Depth: -1}, &out); err == nil {
		t.Error("Browse depth -1: no error")
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

	// One node: said in the singular (ux45: "after 1 nodes").
	out.Reset()
	if err := Browse(ctx, ts.url, BrowseOptions{Depth: 5, MaxNodes: 1}, &out); !errors.Is(err, ErrTruncated) ||
		!strings.HasSuffix(out.String(), "... stopped after 1 node (raise --max-nodes or browse a deeper --node)\n") {
		t.Errorf("Browse with MaxNodes 1 = %v:\n%s", err, out.String())
	}

	// The default start is the Objects folder, which links namespace 1.
	out.Reset()
	if err := Browse(ctx, ts.url, BrowseOptions{Depth: 2}, &out); err != nil {
		t.Fatalf("Browse default: %v", err)
	}
	if !strings.HasPrefix(out.String(), "i=85  \"Objects\"") || !strings.Contains(out.String(), "ns=1;s=Counter") {
		t.Errorf("default browse:\n%s", out.String())
	}

	// With namespace URIs, ids a configuration can use across a renumbering.
	out.Reset()
	if err := Browse(ctx, ts.url, BrowseOptions{Node: "ns=1;i=85", Depth: 2, NamespaceURIs: true}, &out); err != nil {
		t.Fatalf("Browse with namespace URIs: %v", err)
	}
	for _, want := range []string{
		"nsu=" + testNS + ";i=85  \"" + testNS + "\"  (Object)",
		"  nsu=" + testNS + ";s=Counter  \"Counter\"  Int32 = 0",
		"    nsu=" + testNS + ";s=Press07.GoodCount  \"GoodCount\"  UInt32 = 0",
	} {
		if !strings.Contains(out.String(), want+"\n") {
			t.Errorf("output lacks line %q:\n%s", want, out.String())
		}
	}
	if n, err := parseNode("nsu=" + testNS + ";s=Press07.GoodCount"); err != nil || n.nsURI != testNS {
		t.Errorf("printed id does not parse back: %v %+v", err, n)
	}

	if err := Browse(ctx, ts.url, BrowseOptions{Node: "ns=1;s=Nope"}, &out); err == nil {
		t.Error("Browse of an unknown node succeeded")
	}
}

// A node whose children the server cannot send (the gopcua server answers
// a folder of 2,000 variables in one message too large to read): browse
// prints what it found, marks where it stopped, and fails (the OPC UA
// probe: it printed nothing).
func TestBrowsePrintsWhatItFoundBeforeAFailure(t *testing.T) {
	ts := startInProcess(t, 2000)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var out bytes.Buffer
	err := Browse(ctx, ts.url, BrowseOptions{Depth: 3}, &out)
	if err == nil {
		t.Skip("the server sent the folder's children: nothing failed to show")
	}
	o := out.String()
	if !strings.Contains(o, `i=85  "Objects"`) || strings.Count(o, "[its children could not be read: ") != 1 ||
		!strings.Contains(o, "... browsing stopped after") {
		t.Errorf("browse output after %v:\n%.3000s", err, o)
	}
}

// plantLines is what browse prints for server.js's PLANT tree under the
// Objects folder (namespace index ns), in order.
func plantLines(ns, lines, machines, tags int) []string {
	var out []string
	for l := range lines {
		out = append(out, fmt.Sprintf("  ns=%d;s=L%d  \"Line%d\"  (Object)", ns, l, l))
		for m := range machines {
			out = append(out, fmt.Sprintf("    ns=%d;s=L%d.M%d  \"Machine%d\"  (Object)", ns, l, m, m))
			for t := range tags {
				out = append(out, fmt.Sprintf("      ns=%d;s=L%d.M%d.T%d  \"Tag%d\"  Double = %d", ns, l, m, t, t, t))
			}
		}
	}
	return out
}

// TestBrowseServerLimits browses node-opcua, a server that pages references
// and enforces its operation limits, set tight: 7 nodes per Browse, 10
// attributes per Read, 2 continuation points per session. Machines have 120
// tags, more than a batched request asks for per node, so references come in
// pages, and most nodes of a batch get no continuation point. Every node
// must be printed once, in order, with its value.
func TestBrowseServerLimits(t *testing.T) {
	srv := startNodeServer(t, "NO_SECURITY=1", "PLANT=2,10,120",
		"MAX_NODES_PER_BROWSE=7", "MAX_NODES_PER_READ=10", "MAX_BROWSE_CONTINUATION_POINTS=2")
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	var out bytes.Buffer
	b, err := browse(ctx, srv.Endpoint, BrowseOptions{Depth: 3, MaxNodes: 100_000}, &out)
	if err != nil {
		t.Fatalf("browse: %v\n%.2000s", err, out.String())
	}
	var got []string
	for line := range strings.Lines(out.String()) {
		if strings.Contains(line, ";s=L") {
			got = append(got, strings.TrimSuffix(line, "\n"))
		}
	}
	want := plantLines(2, 2, 10, 120)
	if !slices.Equal(got, want) {
		for i := range min(len(got), len(want)) {
			if got[i] != want[i] {
				t.Fatalf("line %d of the plant tree: got %q, want %q (%d lines, want %d)", i, got[i], want[i], len(got), len(want))
			}
		}
		t.Fatalf("plant tree has %d lines, want %d", len(got), len(want))
	}
	if b.perBrowse != 7 || b.perRead != 10 {
		t.Errorf("request sizes %d nodes per Browse, %d per Read; want the server's limits 7 and 10", b.perBrowse, b.perRead)
	}
	if b.calls.next.Load() == 0 || b.calls.alone.Load() == 0 {
		t.Errorf("BrowseNext calls %d, nodes browsed alone %d: the paging paths did not run", b.calls.next.Load(), b.calls.alone.Load())
	}
	t.Logf("%d nodes: %d Browse, %d BrowseNext, %d Read requests, %d nodes browsed alone",
		strings.Count(out.String(), "\n"), b.calls.browse.Load(), b.calls.next.Load(), b.calls.read.Load(), b.calls.alone.Load())
}

// TestBrowseHalvesRefusedRequests: a server that refuses a request as too
// large (here: limits it does advertise, ignored on purpose) gets it again
// in halves until it fits.
func TestBrowseHalvesRefusedRequests(t *testing.T) {
	srv := startNodeServer(t, "NO_SECURITY=1", "PLANT=1,20,30", "MAX_NODES_PER_BROWSE=3", "MAX_NODES_PER_READ=8")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	sec, errs := parseSecurity("None", "None", "")
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	c, err := dial(ctx, clientParams{endpoint: srv.Endpoint, sec: sec, requestTimeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer closeClient(c)
	b := &browser{c: c, opts: BrowseOptions{Timeout: 10 * time.Second}, seen: map[string]bool{},
		perBrowse: browseNodesPerRequest, perRead: readOpsPerRequest, refStats: map[browseStatKey][2]int{}}
	var machines []*tnode
	for m := range 20 {
		machines = append(machines, &tnode{nid: ua.MustParseNodeID(fmt.Sprintf("ns=2;s=L0.M%d", m)), class: ua.NodeClassObject})
	}
	// Teach the sizing that machines have few children, so that it asks
	// for many at once.
	b.refStats[browseStatKey{2, ua.NodeClassObject}] = [2]int{100, 0}
	kids, err := b.children(ctx, machines, 2)
	if err != nil {
		t.Fatalf("children: %v", err)
	}
	for m, k := range kids {
		if len(k) != 30 {
			t.Errorf("machine %d: %d children, want 30", m, len(k))
		}
	}
	// One request would do without the limit; with it, at least 7.
	if n := b.calls.browse.Load(); n < 7 {
		t.Errorf("%d Browse requests for 20 nodes at 3 a request", n)
	}
	tags := kids[7]
	vals, err := b.readVars(ctx, tags)
	if err != nil {
		t.Fatalf("readVars: %v", err)
	}
	for i, v := range vals {
		if got := formatValue(v[0]); got != strconv.Itoa(i) {
			t.Errorf("tag %d = %s", i, got)
		}
	}
	if n := b.calls.read.Load(); n < 8 {
		t.Errorf("%d Read requests for 60 attributes at 8 a request", n)
	}
	t.Logf("%d Browse and %d Read requests", b.calls.browse.Load(), b.calls.read.Load())
}

// TestBrowseSecure browses over an encrypted channel with a certificate
// generated into the data directory, as `plantedge browse --security-policy
// Basic256Sha256 --data-dir DIR` does.
func TestBrowseSecure(t *testing.T) {
	srv := startNodeServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var out bytes.Buffer
	opts := BrowseOptions{Node: "nsu=urn:plantedge:test;s=Counter", Depth: 1, NamespaceURIs: true,
		SecurityPolicy: "Basic256Sha256", DataDir: t.TempDir(), ServerThumbprint: srv.Thumbprint}
	if err := Browse(ctx, srv.Endpoint, opts, &out); err != nil {
		t.Fatalf("browse: %v", err)
	}
	if !strings.HasPrefix(out.String(), "nsu=urn:plantedge:test;s=Counter  \"Counter\"  Int32 = ") {
		t.Errorf("output:\n%s", out.String())
	}
	opts.ServerThumbprint = strings.Repeat("0", 40)
	if err := Browse(ctx, srv.Endpoint, opts, &out); err == nil || !strings.Contains(err.Error(), "thumbprint") {
		t.Errorf("browse of a server with another thumbprint: %v", err)
	}
}

// TestBrowseShowsRefusedNodes: a node whose children the server will not
// browse (here: a reference to a node the server does not know) is printed
// with the status, and the rest of the tree is printed as usual. (gopcua's
// server logs "n was nil!" here, the one such line of this package's
// tests: answering the Browse of the Objects folder, it fills each
// reference's TypeDefinition from the target node's DataType, and the
// ghost's target it does not have. No DataType is asked of it.)
func TestBrowseShowsRefusedNodes(t *testing.T) {
	ts := startInProcess(t, 0)
	ghost := server.NewNode(ua.NewStringNodeID(ts.ns.ID(), "Ghost"), map[ua.AttributeID]*ua.DataValue{
		ua.AttributeIDNodeClass:   server.DataValueFromValue(uint32(ua.NodeClassObject)),
		ua.AttributeIDBrowseName:  server.DataValueFromValue(attrs.BrowseName("Ghost")),
		ua.AttributeIDDisplayName: server.DataValueFromValue(attrs.DisplayName("Ghost", "Ghost")),
	}, nil, nil)
	ts.ns.Objects().AddRef(ghost, id.HasComponent, true) // referenced, never added
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out bytes.Buffer
	if err := Browse(ctx, ts.url, BrowseOptions{Node: "ns=1;i=85", Depth: 2}, &out); err != nil {
		t.Fatalf("browse: %v\n%s", err, out.String())
	}
	for _, want := range []string{
		"  ns=1;s=Ghost  \"Ghost\"  (Object)  [children not browsable: BadNodeIdUnknown]",
		"    ns=1;s=Press07.GoodCount  \"GoodCount\"  UInt32 = 0",
	} {
		if !strings.Contains(out.String(), want+"\n") {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
}
