package agent

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/plantedge/plantedge/agent/config"
	"github.com/plantedge/plantedge/buffer"
)

// TestStoppedStatusLeavesABigBacklogUncounted: a stopped agent's status
// read every pending record for the machines' counts — 4.2–5.0 s at
// 3 million records, while its read lock kept the agent systemd started
// meanwhile from the file. Over offlineScanBound records it now reads none
// of them and says how many it left (pending_counts_reading, as while a
// running agent reads them), the oldest forwardable being the oldest
// pending; OfflineStatusCounted (status --count-pending) reads them all,
// and a backlog within the bound is read as before.
func TestStoppedStatusLeavesABigBacklogUncounted(t *testing.T) {
	defer func(b int) { offlineScanBound = b }(offlineScanBound)
	offlineScanBound = 10
	cfg := testConfig(t, `mqtt: [{ name: b, url: "tcp://127.0.0.1:1", client_id: c }]
machines:
  - { id: m1, workcenter: W1, good_count: { mqtt: { broker: b, topic: t1, field: good } } }
`)
	q, err := buffer.Open(cfg.BufferPath(), buffer.Options{})
	if err != nil {
		t.Fatal(err)
	}
	at := time.Now().Add(-time.Hour)
	add := func(n int) {
		t.Helper()
		recs := make([]buffer.Record, n)
		for i := range recs {
			recs[i] = buffer.Record{Lane: buffer.LaneCounts, Key: countKey("m1", sigGood), Time: at, Data: mustJSON(countRecord{Delta: 1, First: ms(at), Last: ms(at)})}
		}
		if _, err := q.Append(context.Background(), recs); err != nil {
			t.Fatal(err)
		}
	}
	add(10)
	q.Close()
	st, err := OfflineStatus(cfg)
	if err != nil || st.Buffer.PendingCountsReading != 0 || st.Machines[0].Pending != 10 {
		t.Fatalf("10 records, bound 10: not read %d, m1 pending %v, %v; want them counted", st.Buffer.PendingCountsReading, st.Machines[0].Pending, err)
	}

	q, err = buffer.Open(cfg.BufferPath(), buffer.Options{})
	if err != nil {
		t.Fatal(err)
	}
	add(1)
	q.Close()
	st, err = OfflineStatus(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if st.Buffer.PendingCountsReading != 11 || st.Machines[0].Pending != 0 || st.Buffer.Pending != 11 {
		t.Errorf("11 records, bound 10: not read %d, m1 pending %v, buffer pending %d; want 11 said not read, none counted, 11 pending",
			st.Buffer.PendingCountsReading, st.Machines[0].Pending, st.Buffer.Pending)
	}
	if st.Buffer.OldestForwardableAgeSeconds < 3000 {
		t.Errorf("oldest forwardable %v s, want the oldest pending record's age (an hour)", st.Buffer.OldestForwardableAgeSeconds)
	}
	st, err = OfflineStatusCounted(cfg)
	if err != nil || st.Buffer.PendingCountsReading != 0 || st.Machines[0].Pending != 11 {
		t.Errorf("counted: not read %d, m1 pending %v, %v; want 11 counted", st.Buffer.PendingCountsReading, st.Machines[0].Pending, err)
	}
}

// BenchmarkStoppedStatus: a stopped agent's status on a backlog of
// 1,000,000 count records of 100 machines (a 1 GiB file holds some 9
// million), as `plantedge status` reads it (bounded: the machines' counts
// left unread over offlineScanBound records) and as `status
// --count-pending` does (counted), in ms a status.
func BenchmarkStoppedStatus(b *testing.B) {
	dir := b.TempDir()
	var sb strings.Builder
	fmt.Fprintf(&sb, "site: t\ndata_dir: %q\nodoo: { url: \"http://odoo.invalid\", database: odoo, username: bot }\n"+
		"mqtt: [{ name: b, url: \"tcp://127.0.0.1:1\", client_id: c }]\nmachines:\n", dir)
	for m := range 100 {
		fmt.Fprintf(&sb, "  - { id: m-%03d, workcenter: W%03d, good_count: { mqtt: { broker: b, topic: t%03d, field: good } } }\n", m, m, m)
	}
	path := filepath.Join(dir, "plantedge.yaml")
	if err := os.WriteFile(path, []byte(sb.String()), 0o600); err != nil {
		b.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		b.Fatal(err)
	}
	q, err := buffer.Open(cfg.BufferPath(), buffer.Options{})
	if err != nil {
		b.Fatal(err)
	}
	const n = 1_000_000
	at := time.Now().Add(-72 * time.Hour)
	for r := 0; r < n; r += 10_000 {
		recs := make([]buffer.Record, 10_000)
		for j := range recs {
			t := at.Add(time.Duration(r+j) * 250 * time.Millisecond)
			recs[j] = buffer.Record{Lane: buffer.LaneCounts, Key: countKey(fmt.Sprintf("m-%03d", j%100), sigGood), Time: t,
				Data: mustJSON(countRecord{Delta: 1, First: ms(t), Last: ms(t)})}
		}
		if _, err := q.Append(context.Background(), recs); err != nil {
			b.Fatal(err)
		}
	}
	if err := q.Close(); err != nil {
		b.Fatal(err)
	}
	for _, c := range []struct {
		name   string
		status func(*config.Config) (Status, error)
		unread int
	}{{"bounded", OfflineStatus, n}, {"counted", OfflineStatusCounted, 0}} {
		b.Run(c.name, func(b *testing.B) {
			for b.Loop() {
				st, err := c.status(cfg)
				if err != nil || st.Buffer.Pending != n || st.Buffer.PendingCountsReading != c.unread {
					b.Fatalf("pending %d, not read %d, %v", st.Buffer.Pending, st.Buffer.PendingCountsReading, err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/status")
			b.ReportMetric(0, "ns/op")
		})
	}
}
