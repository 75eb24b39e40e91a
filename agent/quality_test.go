package agent

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/plantedge/plantedge/agent/config"
	"github.com/plantedge/plantedge/buffer"
	"github.com/plantedge/plantedge/connectors"
)

type lockedBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}
func (l *lockedBuf) String() string { l.mu.Lock(); defer l.mu.Unlock(); return l.b.String() }

// An OPC UA value flapping between Good and Uncertain (a marginal field bus,
// a gateway's UncertainLastUsableValue) is logged once each way, then at
// most once a minute: 1,000 flaps are not 1,000 lines.
func TestFlappingQualityDoesNotFloodTheLog(t *testing.T) {
	dir := t.TempDir()
	yaml := fmt.Sprintf(`site: t
data_dir: %q
odoo: { url: "http://odoo.invalid", database: odoo, username: bot }
opcua: [{ name: line1, endpoint: "opc.tcp://127.0.0.1:1" }]
machines: [{ id: m1, workcenter: W, good_count: { opcua: { server: line1, node: "ns=2;s=Good" } } }]
`, dir)
	path := filepath.Join(dir, "plantedge.yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	logs := &lockedBuf{}
	a, err := New(cfg, Options{Logger: slog.New(slog.NewTextHandler(logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	buf, err := buffer.Open(cfg.BufferPath(), buffer.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer buf.Close()
	a.buf = buf
	now := time.Now()
	for i := range 1000 {
		s := connectors.Sample{Source: "line1", Kind: connectors.KindOPCUA, Address: "ns=2;s=Good", Value: int64(100 + i),
			Good: i%2 == 0, ReceiveTime: now.Add(time.Duration(i) * time.Millisecond)}
		if !s.Good {
			s.Quality = "UncertainLastUsableValue"
		}
		a.commitSamples(context.Background(), []connectors.Sample{s})
	}
	bad := strings.Count(logs.String(), "source value has bad quality")
	good := strings.Count(logs.String(), "source value good again")
	if bad != 1 || good != 1 {
		t.Errorf("one tag flapping 500 times wrote %d + %d quality log lines", bad, good)
	}
}
