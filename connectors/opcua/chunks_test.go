package opcua

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/plantedge/plantedge/connectors/opcua/opcuatest"
)

// Messages longer than a chunk: a server that answers the agent's Hello
// with the 8,192-byte chunks it asks for, as a server following OPC UA
// Part 6 does (opcuatest.WithChunkSize), sends a 100,000-character text,
// the initial reads and data changes of 1,500 nodes, and a browse of them,
// in many chunks; the agent's requests for them (the reads, the monitored
// items) go in many too. All of it arrives whole.
func TestMessagesLongerThanAChunk(t *testing.T) {
	t.Parallel()
	const tags = 1500
	big := strings.Repeat("0123456789", 10000)
	vars := map[string]any{"Big": big}
	for i := range tags {
		vars[fmt.Sprintf("Tag%04d", i)] = uint32(0)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	plc, err := opcuatest.Start(ctx, 0, vars, opcuatest.WithChunkSize(minChunk))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(plc.Close)

	// The server's answer to the Hello: chunks of 8,192 bytes both ways.
	conn, err := net.Dial("tcp", strings.TrimPrefix(plc.Endpoint(), "opc.tcp://"))
	if err != nil {
		t.Fatal(err)
	}
	_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
	ack, err := handshake(conn, plc.Endpoint())
	conn.Close()
	if err != nil || ack == nil {
		t.Fatalf("handshake: %v, %v", ack, err)
	}
	if ack.ReceiveBufSize != minChunk || ack.SendBufSize != minChunk {
		t.Fatalf("the server announces chunks of %d (receive) and %d (send) bytes, want %d", ack.ReceiveBufSize, ack.SendBufSize, minChunk)
	}

	nodes := []string{plc.NodeID("Big")}
	for i := range tags {
		nodes = append(nodes, plc.NodeID(fmt.Sprintf("Tag%04d", i)))
	}
	col := newCollector()
	runSource(t, Config{Endpoint: plc.Endpoint(), Nodes: nodes, PublishingInterval: 50 * time.Millisecond, HeartbeatTimeout: 10 * time.Second}, col)
	s, _ := col.waitFor(t, 0, time.Minute, "the 100,000-character text", addrIs(plc.NodeID("Big")))
	if s.Value != big || !s.Good {
		t.Errorf("the text came as %d characters (good %v), want %d", len(fmt.Sprint(s.Value)), s.Good, len(big))
	}
	waitAll := func(what string, want uint64) {
		t.Helper()
		deadline := time.Now().Add(time.Minute)
		for {
			seen := map[string]bool{}
			for _, s := range col.all() {
				if s.Good && s.Value == want {
					seen[s.Address] = true
				}
			}
			if len(seen) == tags {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: %d of %d nodes", what, len(seen), tags)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	waitAll("initial values", 0)
	for i := range tags {
		plc.Set(fmt.Sprintf("Tag%04d", i), uint32(7))
	}
	waitAll("changed values", 7)

	var out bytes.Buffer
	if err := Browse(ctx, plc.Endpoint(), BrowseOptions{Node: fmt.Sprintf("ns=%d;i=85", plc.NS()), Depth: 1}, &out); err != nil {
		t.Fatalf("Browse: %v", err)
	}
	for _, name := range []string{"Tag0000", "Tag0749", "Tag1499"} {
		if !strings.Contains(out.String(), plc.NodeID(name)+"  ") {
			t.Errorf("browse lacks %s:\n%.2000s", name, out.String())
		}
	}
	if n := strings.Count(out.String(), "\n"); n < tags {
		t.Errorf("browse printed %d lines, want at least %d", n, tags)
	}
}
