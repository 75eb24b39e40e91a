package buffer

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// rssFileKB is the process's resident file-backed memory (Linux).
func rssFileKB(t *testing.T) int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Skip("no /proc/self/status")
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "RssFile:") {
			n, _ := strconv.ParseInt(strings.Fields(line)[1], 10, 64)
			return n
		}
	}
	t.Skip("no RssFile")
	return 0
}

// Reading a large buffer maps its pages into the process; the readers hand
// them back to the page cache as they go (and DropMappedPages does on
// demand), so draining a backlog of any size does not show the file as the
// process's resident memory, and the records read afterwards are intact
// (the pages are simply mapped again).
func TestDropMappedPages(t *testing.T) {
	q, err := Open(filepath.Join(t.TempDir(), "buffer.db"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	ctx := context.Background()
	payload := bytes.Repeat([]byte("p"), 200)
	for i := 0; i < 20; i++ {
		recs := make([]Record, 5000)
		for j := range recs {
			recs[j] = Record{Lane: LaneCounts, Key: "m", Time: time.Now(), Data: payload}
		}
		if _, err := q.Append(ctx, recs); err != nil {
			t.Fatal(err)
		}
	}
	scan := func() int {
		n := 0
		for after := uint64(0); ; {
			recs, err := q.Peek(LaneCounts, after, 10000)
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range recs {
				if !bytes.Equal(r.Data, payload) {
					t.Fatalf("record %d damaged after dropping pages", r.Seq)
				}
			}
			n += len(recs)
			if len(recs) < 10000 {
				return n
			}
			after = recs[len(recs)-1].Seq
		}
	}
	if err := q.DropMappedPages(); err != nil {
		t.Fatal(err)
	}
	base := rssFileKB(t)
	if n := scan(); n != 100000 { // ~25 MB of records
		t.Fatalf("read %d records", n)
	}
	scanned := rssFileKB(t)
	if err := q.DropMappedPages(); err != nil {
		t.Fatal(err)
	}
	dropped := rssFileKB(t)
	t.Logf("file-backed RSS %d kB before a full scan of 25 MB, %d kB after it, %d kB after DropMappedPages", base, scanned, dropped)
	if grew := scanned - base; grew > 2*dropReadPagesEvery/1024+1024 {
		t.Errorf("a full scan left %d kB more of the file mapped; the readers hand pages back every %d kB", grew, dropReadPagesEvery/1024)
	}
	if dropped > base+1024 {
		t.Errorf("DropMappedPages left %d kB mapped, %d kB before the scan", dropped, base)
	}
	if n := scan(); n != 100000 {
		t.Fatalf("read %d records after dropping pages", n)
	}

	// The drain pattern (Next + Ack) is bounded the same way.
	if err := q.DropMappedPages(); err != nil {
		t.Fatal(err)
	}
	base = rssFileKB(t)
	n := drain(t, q)
	drained := rssFileKB(t)
	t.Logf("file-backed RSS %d kB before draining %d records, %d kB after", base, n, drained)
	if n != 100000 {
		t.Fatalf("drained %d records", n)
	}
	if grew := drained - base; grew > 2*dropReadPagesEvery/1024+1024 {
		t.Errorf("draining left %d kB more of the file mapped", grew)
	}
	if _, err := q.Append(ctx, []Record{{Lane: LaneCounts, Key: "m", Data: payload}}); err != nil {
		t.Fatalf("append after dropping pages: %v", err)
	}
}
