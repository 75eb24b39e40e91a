//go:build unix

package buffer

import (
	"errors"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestOpenWaitsForReadersAndSaysSo: a stopped agent's status or deadletter
// reads the file under a shared lock; the agent systemd starts meanwhile
// waited bbolt's 2 s for the lock and exited with "is plantedge already
// running with this data_dir?" (a status of 3 million records read for
// 4–5 s). It now says that the file is being read, waits for the reader,
// and opens the file.
func TestOpenWaitsForReadersAndSaysSo(t *testing.T) {
	path, reader := fileWithAReader(t)
	var logs syncBuffer
	type result struct {
		q   *Queue
		err error
	}
	opened := make(chan result, 1)
	go func() {
		q, err := Open(path, Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
		opened <- result{q, err}
	}()
	for deadline := time.Now().Add(30 * time.Second); !strings.Contains(logs.String(), "being read by another process"); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no word of the reader in the log: %q", logs.String())
		}
	}
	select {
	case r := <-opened:
		t.Fatalf("the open returned while the reader held the file: %v", r.err)
	default:
	}
	if err := reader.Close(); err != nil {
		t.Fatal(err)
	}
	r := <-opened
	if r.err != nil {
		t.Fatalf("open after the reader closed: %v", r.err)
	}
	defer r.q.Close()
	if st := r.q.Stats(); st.Pending != 1 {
		t.Errorf("pending %d, want 1", st.Pending)
	}
	if !strings.Contains(logs.String(), "done waiting for its readers") {
		t.Errorf("log %q: want the end of the wait said", logs.String())
	}
}

// TestOpenOfAFileReadForTooLongSaysByWhat: a reader that keeps the file past
// readersWait (and bbolt's own wait) gets ErrLocked naming a reader, not
// "already running".
func TestOpenOfAFileReadForTooLongSaysByWhat(t *testing.T) {
	defer func(w time.Duration) { readersWait = w }(readersWait)
	readersWait = 10 * time.Millisecond
	path, reader := fileWithAReader(t)
	defer reader.Close()
	_, err := Open(path, Options{})
	if !errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), "read by another process") || strings.Contains(err.Error(), "already running") {
		t.Fatalf("open while a reader holds the file: %v, want ErrLocked naming a reader", err)
	}
}

// fileWithAReader is a buffer file of one record and a read-only open of
// it (a stopped agent's status), which the caller closes.
func fileWithAReader(t *testing.T) (string, *Queue) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "buffer.db")
	q := openTest(t, path, Options{})
	mustAppend(t, q, Record{Lane: LaneCounts, Key: "m1/good", Data: []byte(`{"d":1}`)})
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	reader, err := Open(path, Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	return path, reader
}
