package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"regexp"
	"sync"
	"testing"
	"time"

	"github.com/plantedge/plantedge/agent"
	"github.com/plantedge/plantedge/agent/agenttest"
	"github.com/plantedge/plantedge/agent/config"
)

// TestStatusSaysConnectingWhileTheBrokerDoesNotAnswer: SPEC.md names three
// values of sources[].state; "connecting" had no test. A broker that takes
// the TCP connection and never answers the CONNECT holds the source in
// "connecting" (no answer yet, none refused), in status --json and in the
// human view.
func TestStatusSaysConnectingWhileTheBrokerDoesNotAnswer(t *testing.T) {
	b := newBench(t, 17)
	silent, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { silent.Close() })
	var held []net.Conn
	var mu sync.Mutex
	go func() {
		for {
			c, err := silent.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			held = append(held, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		mu.Lock()
		defer mu.Unlock()
		for _, c := range held {
			c.Close()
		}
	})
	b.editConfig(b.broker.URL(), "tcp://"+silent.Addr().String())

	cfg, err := config.Load(b.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	a, err := agent.New(cfg, agent.Options{Logger: slog.New(slog.NewTextHandler(agenttest.LogWriter{T: t}, &slog.HandlerOptions{Level: slog.LevelWarn})), Version: "test"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("agent run: %v", err)
		}
	})
	// The first attempt begins at the start and waits for the CONNECT's
	// answer (10 s); status is asked until the API is up.
	waitUntil(t, 20*time.Second, "status with the source connecting", func() (bool, string) {
		out, err := cli(t, "status", "-c", b.cfgPath, "--json")
		if err != nil {
			return false, fmt.Sprint(err)
		}
		m := decodeStatus(t, out)
		src := m["sources"].([]any)[0].(map[string]any)
		return src["state"] == "connecting", fmt.Sprint(src)
	})
	out, err := cli(t, "status", "-c", b.cfgPath)
	if err != nil || !regexp.MustCompile(`(?m)^\s+broker\s+mqtt\s+connecting\b`).MatchString(out) {
		t.Errorf("human status while the broker does not answer: %v\n%s", err, out)
	}
}
