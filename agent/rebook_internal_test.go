package agent

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/plantedge/plantedge/agent/config"
	"github.com/plantedge/plantedge/buffer"
	"github.com/plantedge/plantedge/odoo"
)

// The bookings kept for a rebook are forgotten after a week, and the
// oldest beyond bookedMax.
func TestBookedKeptAWeekAndBounded(t *testing.T) {
	buf, err := buffer.Open(filepath.Join(t.TempDir(), "buffer.db"), buffer.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer buf.Close()
	ctx := context.Background()
	now := time.Now()
	line := func(ago time.Duration, start int64) buffer.KV {
		return bookedKV(now.Add(-ago), bookedEntry{Machine: "m1", Line: &odoo.Downtime{XMLID: downtimeXMLID("s", "m1", start)}})
	}
	kvs := []buffer.KV{line(8*24*time.Hour, 1), line(7*24*time.Hour+time.Minute, 2), line(6*24*time.Hour, 3), line(time.Hour, 4), line(0, 5)}
	if err := buf.PutMeta(ctx, kvs...); err != nil {
		t.Fatal(err)
	}
	f := &forwarder{a: &Agent{buf: buf}}
	kept := func() (keys []string) {
		t.Helper()
		if err := buf.MetaPrefix(bookedPrefix, func(k string, _ []byte) error { keys = append(keys, k); return nil }); err != nil {
			t.Fatal(err)
		}
		return keys
	}
	if err := f.pruneBooked(ctx); err != nil {
		t.Fatal(err)
	}
	if got, want := kept(), []string{kvs[2].Key, kvs[3].Key, kvs[4].Key}; !slices.Equal(got, want) {
		t.Fatalf("after a prune: %q, want the last week's %q", got, want)
	}
	defer func(n int) { bookedMax = n }(bookedMax)
	bookedMax = 2
	if err := f.pruneBooked(ctx); err != nil {
		t.Fatal(err)
	}
	if got := kept(); len(got) != 3 {
		t.Fatalf("pruned again within %s: %q", bookedPruneEvery, got)
	}
	f.bookedPruned = time.Time{}
	if err := f.pruneBooked(ctx); err != nil {
		t.Fatal(err)
	}
	if got, want := kept(), []string{kvs[3].Key, kvs[4].Key}; !slices.Equal(got, want) {
		t.Fatalf("beyond bookedMax: %q, want the newest %q", got, want)
	}
	// A twentieth of max_bytes at most: here room for one.
	bookedMax = 100
	f.a.cfg.Store(&config.Config{Buffer: config.Buffer{MaxBytes: config.ByteSize(20 * (len(kvs[4].Key) + len(kvs[4].Value) + 10))}})
	f.bookedPruned = time.Time{}
	if err := f.pruneBooked(ctx); err != nil {
		t.Fatal(err)
	}
	if got, want := kept(), []string{kvs[4].Key}; !slices.Equal(got, want) {
		t.Fatalf("beyond a twentieth of max_bytes: %q, want the newest %q", got, want)
	}
	// A burst of stops booked after an outage is pruned at the next round
	// once it weighs half the budget, not 10 minutes later (the spec
	// audit: 410 kB kept in 2.5 s took the buffer's budget below them).
	f.bookedPruned = time.Now()
	if err := f.pruneBooked(ctx); err != nil {
		t.Fatal(err)
	}
	var burst []buffer.KV
	for i := range 5 {
		kv := f.keepBooked(now.Add(time.Duration(i)*time.Millisecond),
			bookedEntry{Machine: "m1", Line: &odoo.Downtime{XMLID: downtimeXMLID("s", "m1", int64(10+i))}})
		if !strings.HasPrefix(kv.Key, bookedPrefix) {
			t.Fatalf("a booking not kept with room on the disk: %q", kv.Key)
		}
		burst = append(burst, kv)
	}
	if err := buf.PutMeta(ctx, burst...); err != nil {
		t.Fatal(err)
	}
	if err := f.pruneBooked(ctx); err != nil {
		t.Fatal(err)
	}
	if got, want := kept(), []string{burst[4].Key}; !slices.Equal(got, want) {
		t.Fatalf("after a burst within %s: %q, want the newest %q", bookedPruneEvery, got, want)
	}
}

// A booking kept for a rebook carries its checksum: one that still reads
// but is one digit off (the second bitrot probe: scrap 2 read 6, and a
// rebook after a restore booked 9 for 5) is left out, as one that does not
// read; one kept by an older version, without a checksum, is taken.
func TestBookedChecksum(t *testing.T) {
	at := time.Date(2026, 12, 2, 8, 0, 0, 0, time.UTC)
	kv := bookedKV(at, bookedEntry{Machine: "m1", Scrap: &odoo.Scrap{XMLID: "plantedge.s_m1_scrap_ab_9", ProductID: 5, Qty: 2}, Workorder: "MO/1 Press"})
	e, ok := decodeBooked(kv.Value)
	if !ok || e.Scrap == nil || e.Scrap.Qty != 2 || e.Machine != "m1" {
		t.Fatalf("decodeBooked(%s) = %+v, %v", kv.Value, e, ok)
	}
	if !strings.Contains(string(kv.Value), `"Qty":2,`) || !strings.Contains(string(kv.Value), `"sum":`) {
		t.Fatalf("stored as %s", kv.Value)
	}
	if _, ok := decodeBooked([]byte(strings.Replace(string(kv.Value), `"Qty":2,`, `"Qty":6,`, 1))); ok {
		t.Error("a booking one digit off passes its checksum")
	}
	older := mustJSON(bookedEntry{Machine: "m1", Scrap: &odoo.Scrap{XMLID: "x", Qty: 2}})
	if e, ok := decodeBooked(older); !ok || e.Scrap.Qty != 2 {
		t.Errorf("an older version's booking (no checksum) is not taken: %+v, %v", e, ok)
	}
}

// A round that failed in the buffer is not Odoo's failure; one that failed
// at Odoo, even for its database's full disk, is.
func TestLocalFailure(t *testing.T) {
	for _, tc := range []struct {
		err   error
		local bool
	}{
		{fmt.Errorf("ack downtime records: %w", buffer.ErrDiskFull), true},
		{fmt.Errorf("ack: %w", &os.PathError{Op: "write", Path: "buffer.db", Err: syscall.ENOSPC}), true},
		{fmt.Errorf("ack: %w", &os.PathError{Op: "write", Path: "buffer.db", Err: syscall.EIO}), true},
		{&odoo.Error{Op: "mrp.workorder.write", Name: "psycopg2.errors.DiskFull", Class: odoo.Transient, Err: syscall.ENOSPC}, false},
		{&net.OpError{Op: "dial", Err: syscall.ECONNREFUSED}, false},
	} {
		if got := localFailure(tc.err); got != tc.local {
			t.Errorf("localFailure(%v) = %v, want %v", tc.err, got, tc.local)
		}
	}
}

// When the bookings kept begin (keptFromKey) moves only when some are
// forgotten: a new file keeps all from its start, a prune moves it past
// the last one it forgot, a file of an older version starts at its oldest
// kept, a fresh file for a corrupt one at its start (the val54 probe: the
// rebook's note "not kept" was said when nothing had been forgotten).
func TestBookedKeptFrom(t *testing.T) {
	ctx := context.Background()
	now := time.Now()
	line := func(ago time.Duration, start int64) buffer.KV {
		return bookedKV(now.Add(-ago), bookedEntry{Machine: "m1", Line: &odoo.Downtime{XMLID: downtimeXMLID("s", "m1", start)}})
	}
	open := func(t *testing.T, kvs ...buffer.KV) *forwarder {
		buf, err := buffer.Open(filepath.Join(t.TempDir(), "buffer.db"), buffer.Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { buf.Close() })
		if len(kvs) > 0 {
			if err := buf.PutMeta(ctx, kvs...); err != nil {
				t.Fatal(err)
			}
		}
		return &forwarder{a: &Agent{buf: buf}}
	}
	prune := func(t *testing.T, f *forwarder) (time.Time, bool) {
		t.Helper()
		f.bookedPruned = time.Time{}
		if err := f.pruneBooked(ctx); err != nil {
			t.Fatal(err)
		}
		return f.keptFrom()
	}
	t.Run("new file", func(t *testing.T) {
		f := open(t)
		f.a.newFile = true
		if _, ok := f.keptFrom(); ok {
			t.Fatal("a mark before the first prune")
		}
		if from, ok := prune(t, f); !ok || !from.IsZero() {
			t.Fatalf("kept from %v (%v), want since the file began", from, ok)
		}
		// Bookings a day and an hour old: nothing forgotten.
		if err := f.a.buf.PutMeta(ctx, line(24*time.Hour, 1), line(time.Hour, 2)); err != nil {
			t.Fatal(err)
		}
		if from, ok := prune(t, f); !ok || !from.IsZero() {
			t.Fatalf("kept from %v (%v) with nothing forgotten", from, ok)
		}
		// Beyond bookedMax: the day-old one is forgotten.
		defer func(n int) { bookedMax = n }(bookedMax)
		bookedMax = 1
		want := now.Add(-24 * time.Hour).Truncate(time.Millisecond).Add(time.Millisecond)
		if from, ok := prune(t, f); !ok || !from.Equal(want) {
			t.Fatalf("kept from %v (%v), want %v: after the one forgotten", from, ok, want)
		}
	})
	t.Run("older version's file", func(t *testing.T) {
		f := open(t, line(48*time.Hour, 1), line(time.Hour, 2))
		want := now.Add(-48 * time.Hour).Truncate(time.Millisecond)
		if from, ok := prune(t, f); !ok || !from.Equal(want) {
			t.Fatalf("kept from %v (%v), want its oldest kept %v", from, ok, want)
		}
	})
	t.Run("older version's file keeping none", func(t *testing.T) {
		f := open(t)
		if from, ok := prune(t, f); !ok || from.After(now.Add(-bookedKeep+time.Minute)) || from.Before(now.Add(-bookedKeep-time.Minute)) {
			t.Fatalf("kept from %v (%v), want a week ago", from, ok)
		}
	})
	t.Run("fresh file for a corrupt one", func(t *testing.T) {
		f := open(t)
		f.a.newFile, f.a.recoveredFile = true, true
		if from, ok := prune(t, f); !ok || from.Before(now.Truncate(time.Millisecond)) {
			t.Fatalf("kept from %v (%v), want this start", from, ok)
		}
	})
}
