package opcua

import (
	"context"
	"log/slog"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/plantedge/plantedge/connectors"
	"github.com/plantedge/plantedge/connectors/opcua/opcuatest"
)

// memPins keeps namespace pins in memory (the agent keeps them in the
// buffer file).
type memPins struct {
	mu sync.Mutex
	m  map[string]string
}

func (p *memPins) NamespacePin(node string) (string, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	uri, ok := p.m[node]
	return uri, ok
}

func (p *memPins) SetNamespacePin(node, uri string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.m == nil {
		p.m = map[string]string{}
	}
	p.m[node] = uri
	return nil
}

// A server restarted with a namespace added in front of the plant's: the
// node written as ns=1 is read where its namespace went (ns=2), not as the
// new ns=1's node of the same name, whose value would be counted as ours.
func TestRenumberedNamespaceIsFollowed(t *testing.T) {
	ctx := context.Background()
	srv, err := opcuatest.Start(ctx, 0, map[string]any{"Good": int64(100)})
	if err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(srv.Endpoint())
	port, _ := strconv.Atoi(u.Port())
	node := srv.NodeID("Good")
	pins := &memPins{}
	col := newCollector()
	var logs lockedLog
	runSource(t, Config{Endpoint: srv.Endpoint(), Nodes: []string{node}, Pins: pins, Logger: slog.New(slog.NewTextHandler(&logs, nil)),
		PublishingInterval: 100 * time.Millisecond, HeartbeatTimeout: 2 * time.Second, BackoffMax: time.Second}, col)
	col.waitFor(t, 0, 10*time.Second, "100", func(s connectors.Sample) bool { return s.Value == int64(100) })
	if uri, ok := pins.NamespacePin(node); !ok || uri != "urn:plantedge:sim" {
		t.Fatalf("pin of %s = %q, %v", node, uri, ok)
	}
	srv.Close()

	from := col.len()
	srv2, err := opcuatest.Start(ctx, port, map[string]any{"Good": int64(150)},
		opcuatest.WithNamespaceBefore("urn:other", map[string]any{"Good": int64(424242)}))
	if err != nil {
		t.Fatal(err)
	}
	if srv2.NodeID("Good") == node {
		t.Fatalf("the plant's namespace did not move: %s", node)
	}
	s, _ := col.waitFor(t, from, 15*time.Second, "150 after the restart", func(s connectors.Sample) bool {
		return s.Address == node && s.Good && (s.Value == int64(150) || s.Value == int64(424242))
	})
	if s.Value != int64(150) {
		t.Fatalf("after the renumbering %s read %v: the other namespace's node", node, s.Value)
	}
	// Restarted again as it is now: the move is not news at every
	// reconnect (the OPC UA probe: a warning at each one).
	srv2.Close()
	from = col.len()
	srv3, err := opcuatest.Start(ctx, port, map[string]any{"Good": int64(160)},
		opcuatest.WithNamespaceBefore("urn:other", map[string]any{"Good": int64(424242)}))
	if err != nil {
		t.Fatal(err)
	}
	defer srv3.Close()
	col.waitFor(t, from, 15*time.Second, "160 after the second restart", func(s connectors.Sample) bool {
		return s.Address == node && s.Value == int64(160)
	})
	if n := strings.Count(logs.String(), "renumbered its namespaces"); n != 1 {
		t.Errorf("%d warnings of the renumbering, want 1:\n%s", n, logs.String())
	}
}

// A node added to the file after the server renumbered its namespaces,
// written ns=1 like the nodes pinned before (where ns=1 meant urn:plant):
// the server's ns=1 is urn:other now, so it could mean either — not read
// (reading urn:other's node of that name booked another machine's pieces),
// with what to write instead. Where ns=1 still means what it meant, a new
// node is pinned as before.
func TestNewNodeOfARenumberedIndexIsNotGuessed(t *testing.T) {
	pins := &memPins{m: map[string]string{"ns=1;s=Good": "urn:plant"}}
	old, _ := parseNode("ns=1;s=Good")
	added, _ := parseNode("ns=1;s=M7.Good")
	nodes := []nodeRef{old, added}
	renumbered := []string{"http://opcfoundation.org/UA/", "urn:other", "urn:plant"}
	_, _, err := added.pinned(renumbered, pins, meantIndexes(nodes, pins))
	if err == nil || !strings.Contains(err.Error(), `ns=1 meant urn:plant for this server's other nodes written ns=1`) ||
		!strings.Contains(err.Error(), "nsu=<uri>;s=M7.Good") {
		t.Errorf("new node of a renumbered index: %v", err)
	}
	if _, ok := pins.NamespacePin("ns=1;s=M7.Good"); ok {
		t.Error("the new node was pinned")
	}
	if id, _, err := old.pinned(renumbered, pins, meantIndexes(nodes, pins)); err != nil || id.String() != "ns=2;s=Good" {
		t.Errorf("the pinned node: %v %v", id, err)
	}
	same := []string{"http://opcfoundation.org/UA/", "urn:plant"}
	if id, _, err := added.pinned(same, pins, meantIndexes(nodes, pins)); err != nil || id.String() != "ns=1;s=M7.Good" {
		t.Errorf("new node, index unchanged: %v %v", id, err)
	}
	if uri, ok := pins.NamespacePin("ns=1;s=M7.Good"); !ok || uri != "urn:plant" {
		t.Errorf("new node, index unchanged: pinned %q %v", uri, ok)
	}
}

func TestPinnedNamespaceGone(t *testing.T) {
	n, err := parseNode("ns=1;s=Good")
	if err != nil {
		t.Fatal(err)
	}
	pins := &memPins{m: map[string]string{"ns=1;s=Good": "urn:plant"}}
	_, _, err = n.pinned([]string{"http://opcfoundation.org/UA/", "urn:other"}, pins, nil)
	if err == nil || !strings.Contains(err.Error(), `its namespace urn:plant (ns=1 when first read) is gone from the server, whose ns=1 is now "urn:other"`) {
		t.Errorf("pinned namespace gone: %v", err)
	}
	id, moved, err := n.pinned([]string{"http://opcfoundation.org/UA/", "urn:other", "urn:plant"}, pins, nil)
	if err != nil || id.String() != "ns=2;s=Good" || moved != "ns=1 (urn:plant) is now ns=2" {
		t.Errorf("moved: %v %q %v", id, moved, err)
	}
	// ns=0 and nsu= forms are never pinned.
	for _, addr := range []string{"i=2258", "nsu=urn:plant;s=Good"} {
		n, _ := parseNode(addr)
		if _, moved, err := n.pinned([]string{"http://opcfoundation.org/UA/", "urn:plant"}, pins, nil); err != nil || moved != "" {
			t.Errorf("%s: %q %v", addr, moved, err)
		}
		if _, ok := pins.NamespacePin(addr); ok {
			t.Errorf("%s pinned", addr)
		}
	}
}

// batchPins is memPins that keeps several pins at once
// (NamespacePinsSetter), counting how it was asked to.
type batchPins struct {
	memPins
	batches []int // the size of each SetNamespacePins
	singles int   // SetNamespacePin calls
}

func (p *batchPins) SetNamespacePin(node, uri string) error {
	p.mu.Lock()
	p.singles++
	p.mu.Unlock()
	return p.memPins.SetNamespacePin(node, uri)
}

func (p *batchPins) SetNamespacePins(pins map[string]string) error {
	p.mu.Lock()
	p.batches = append(p.batches, len(pins))
	p.mu.Unlock()
	for node, uri := range pins {
		if err := p.memPins.SetNamespacePin(node, uri); err != nil {
			return err
		}
	}
	return nil
}

// The pins of a session's first sight of its nodes are kept at once: the
// agent's SetNamespacePin is a durable write of the buffer file, and 1,000
// of them one after the other held the subscription back for seconds.
func TestFirstPinsKeptAtOnce(t *testing.T) {
	vars := map[string]any{}
	var nodes []string
	for i := range 200 {
		vars["T"+strconv.Itoa(i)] = int64(i)
	}
	srv, err := opcuatest.Start(context.Background(), 0, vars)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	for i := range 200 {
		nodes = append(nodes, srv.NodeID("T"+strconv.Itoa(i)))
	}
	pins := &batchPins{}
	col := newCollector()
	runSource(t, Config{Endpoint: srv.Endpoint(), Nodes: nodes, Pins: pins,
		PublishingInterval: 100 * time.Millisecond, HeartbeatTimeout: 2 * time.Second, BackoffMax: time.Second}, col)
	col.waitFor(t, 0, 10*time.Second, "T199", func(s connectors.Sample) bool { return s.Address == nodes[199] && s.Value == int64(199) })
	pins.mu.Lock()
	defer pins.mu.Unlock()
	if len(pins.batches) != 1 || pins.batches[0] != len(nodes) || pins.singles != 0 {
		t.Fatalf("pins kept in batches of %v and %d one by one, want one batch of %d", pins.batches, pins.singles, len(nodes))
	}
	for _, n := range nodes {
		if uri := pins.m[n]; uri != "urn:plantedge:sim" {
			t.Fatalf("pin of %s = %q", n, uri)
		}
	}
}
