package buffer

import (
	"bufio"
	"bytes"
	"context"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// procStatusKB reads a "Name:   123 kB" line of /proc/self/status.
func procStatusKB(name string) int64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+":"); ok {
			n, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return n
		}
	}
	return 0
}

// rssSampler records the peak resident memory while a benchmark runs:
// anonymous memory (heap, stacks) and total (which includes the pages of
// bbolt's memory-mapped file the kernel keeps resident, reclaimable cache).
type rssSampler struct {
	stop          chan struct{}
	done          chan struct{}
	anonKB, allKB atomic.Int64
}

func startRSS() *rssSampler {
	s := &rssSampler{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		t := time.NewTicker(5 * time.Millisecond)
		defer t.Stop()
		for {
			s.anonKB.Store(max(s.anonKB.Load(), procStatusKB("RssAnon")))
			s.allKB.Store(max(s.allKB.Load(), procStatusKB("VmRSS")))
			select {
			case <-s.stop:
				return
			case <-t.C:
			}
		}
	}()
	return s
}

func (s *rssSampler) report(b *testing.B) {
	close(s.stop)
	<-s.done
	b.ReportMetric(float64(s.anonKB.Load())/1024, "MB_rss_anon")
	b.ReportMetric(float64(s.allKB.Load())/1024, "MB_rss")
	b.ReportMetric(float64(procStatusKB("VmHWM"))/1024, "MB_hwm_process")
}

// rawSyncRate is the baseline: append batches of the same bytes to a plain
// file on the same disk with write + fdatasync, as records per second.
func rawSyncRate(b *testing.B, dir string, records, batch, recBytes int) float64 {
	f, err := os.OpenFile(filepath.Join(dir, "raw.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		b.Fatal(err)
	}
	defer os.Remove(f.Name())
	defer f.Close()
	buf := bytes.Repeat([]byte{'r'}, batch*recBytes)
	start := time.Now()
	for done := 0; done < records; done += batch {
		if _, err := f.Write(buf); err != nil {
			b.Fatal(err)
		}
		if err := fdatasync(f); err != nil {
			b.Fatal(err)
		}
	}
	return float64(records) / time.Since(start).Seconds()
}

// plainBoltRate is the ceiling bbolt itself sets on this disk: one goroutine,
// one bucket, sequential keys, FillPercent 1.0, one Update per batch.
func plainBoltRate(b *testing.B, dir string, records, batch, recBytes int) float64 {
	db, err := bolt.Open(filepath.Join(dir, "plain.db"), 0o600, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer os.Remove(db.Path())
	defer db.Close()
	v := bytes.Repeat([]byte{'b'}, recBytes)
	var seq uint64
	start := time.Now()
	for done := 0; done < records; done += batch {
		err := db.Update(func(tx *bolt.Tx) error {
			bk, err := tx.CreateBucketIfNotExists([]byte("b"))
			if err != nil {
				return err
			}
			bk.FillPercent = 1.0
			for range batch {
				seq++
				if err := bk.Put(seqKey(seq), v); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	return float64(records) / time.Since(start).Seconds()
}

// BenchmarkIngest appends 200-byte records from concurrent appenders with the
// default group commit. Each iteration ingests a fixed number of records into
// a fresh file, then runs the raw write+fdatasync loop (x_raw) and plain
// bbolt (x_bbolt, the ceiling of any bbolt-based queue) with the same batch
// size (records per commit measured in the run) on the same disk.
func BenchmarkIngest(b *testing.B) {
	cases := []struct {
		name               string
		appenders, perCall int
		records            int
		batchHint          int // records per commit expected (the "before" baseline)
	}{
		{"appenders=32/records_per_append=64", 32, 64, 300_000, DefaultCommitRecords},
		{"appenders=16/records_per_append=16", 16, 16, 200_000, 256},
		{"appenders=64/records_per_append=1", 64, 1, 30_000, 32},
	}
	for _, tc := range cases {
		b.Run(tc.name, func(b *testing.B) {
			payload := bytes.Repeat([]byte{'p'}, 200)
			var elapsed time.Duration
			var lats []time.Duration
			var commits uint64
			var rawRate, boltRate float64
			rss := startRSS()
			for i := range b.N {
				dir := b.TempDir()
				recBytes := encodedSize(Record{Key: "m00", Data: payload})
				// The disk's speed drifts: measure the raw baseline right before and
				// right after, at the batch size group commit reached before.
				rawBefore := rawSyncRate(b, dir, min(tc.records, 100_000), tc.batchHint, recBytes)
				q, err := Open(filepath.Join(dir, "ingest.db"), Options{})
				if err != nil {
					b.Fatal(err)
				}
				var left atomic.Int64
				left.Store(int64(tc.records))
				var mu sync.Mutex
				var wg sync.WaitGroup
				c0 := q.commits.Load()
				start := time.Now()
				for a := range tc.appenders {
					wg.Go(func() {
						recs := make([]Record, tc.perCall)
						for j := range recs {
							recs[j] = Record{Lane: Lane(j % NumLanes), Key: "m" + strconv.Itoa(a), Data: payload}
						}
						var mine []time.Duration
						for left.Add(-int64(tc.perCall)) >= 0 {
							t0 := time.Now()
							if _, err := q.Append(context.Background(), recs); err != nil {
								b.Error(err)
								return
							}
							mine = append(mine, time.Since(t0))
						}
						mu.Lock()
						lats = append(lats, mine...)
						mu.Unlock()
					})
				}
				wg.Wait()
				elapsed += time.Since(start)
				commits += q.commits.Load() - c0
				if err := q.Close(); err != nil {
					b.Fatal(err)
				}
				perCommit := max(1, tc.records/int(max(1, q.commits.Load()-c0)))
				rawAfter := rawSyncRate(b, dir, min(tc.records, 100_000), perCommit, recBytes)
				rawRate += (rawBefore + rawAfter) / 2 / float64(b.N)
				boltRate += plainBoltRate(b, dir, min(tc.records, 100_000), perCommit, recBytes) / float64(b.N)
				_ = i
			}
			rss.report(b)
			slices.Sort(lats)
			rate := float64(tc.records*b.N) / elapsed.Seconds()
			b.ReportMetric(rate, "records/s")
			b.ReportMetric(float64(lats[len(lats)*99/100].Microseconds())/1000, "p99_ms")
			b.ReportMetric(float64(tc.records*b.N)/float64(commits), "records/commit")
			b.ReportMetric(rawRate, "raw_records/s")
			b.ReportMetric(rate/rawRate, "x_raw")
			b.ReportMetric(boltRate, "bbolt_records/s")
			b.ReportMetric(rate/boltRate, "x_bbolt")
			b.ReportMetric(0, "ns/op")
		})
	}
}

// BenchmarkDrain fills a file with 1,000,000 records of 200 bytes in all
// lanes, reopens it (open_ms: consistency check + state scan), then drains it
// with Next(1000) + Ack, the forwarder's pattern.
func BenchmarkDrain(b *testing.B) {
	const total, chunk = 1_000_000, 1000
	payload := bytes.Repeat([]byte{'d'}, 200)
	var elapsed, opening time.Duration
	var rss *rssSampler
	for range b.N {
		path := filepath.Join(b.TempDir(), "drain.db")
		q, err := Open(path, Options{})
		if err != nil {
			b.Fatal(err)
		}
		recs := make([]Record, 10_000)
		for j := range recs {
			recs[j] = Record{Lane: Lane(j % NumLanes), Key: "m" + strconv.Itoa(j%100), Data: payload}
		}
		for range total / len(recs) {
			if _, err := q.Append(context.Background(), recs); err != nil {
				b.Fatal(err)
			}
		}
		if err := q.Close(); err != nil {
			b.Fatal(err)
		}
		if rss == nil {
			rss = startRSS()
		}
		t0 := time.Now()
		q, err = Open(path, Options{})
		if err != nil {
			b.Fatal(err)
		}
		opening += time.Since(t0)
		start := time.Now()
		n := drainWith(b, q, func() ([]Record, error) { return q.Next(chunk) })
		elapsed += time.Since(start)
		if n != total {
			b.Fatalf("drained %d records, want %d", n, total)
		}
		if err := q.Close(); err != nil {
			b.Fatal(err)
		}
	}
	rss.report(b)
	b.ReportMetric(float64(total*b.N)/elapsed.Seconds(), "records/s")
	b.ReportMetric(float64(opening.Milliseconds())/float64(b.N), "open_ms")
	b.ReportMetric(0, "ns/op")
}

// BenchmarkShrink measures what the self-shrink after a drained backlog
// adds to the process's memory: a 90 MB file of which about 3 MB stays
// pending (the shrink's upper bound is shrinkMaxLive), shrunk by the
// committer after the next commit. MB_heap_rise is the peak of the Go heap's
// objects above what was live before, MB_rss_file_rise the peak of the
// process's mapped file pages above what they were (the binary's text in
// both readings), shrink_ms how long the commits waited for it,
// MB_file_after the new file's size.
func BenchmarkShrink(b *testing.B) {
	payload := bytes.Repeat([]byte{'s'}, 200)
	var heapRise, fileRise, took, size float64
	for range b.N {
		path := filepath.Join(b.TempDir(), "shrink.db")
		q, err := Open(path, Options{shrinkMinFree: -1})
		if err != nil {
			b.Fatal(err)
		}
		recs := make([]Record, 10_000)
		for i := range 45 {
			for j := range recs {
				recs[j] = Record{Lane: LaneCounts, Key: "m" + strconv.Itoa(j%100), Data: payload}
				if i%3 == 0 && j%10 == 0 {
					recs[j].Lane = LaneEvents // about 3 MB stays: 15,000 records
				}
			}
			if _, err := q.Append(context.Background(), recs); err != nil {
				b.Fatal(err)
			}
		}
		drainWith(b, q, func() ([]Record, error) { return q.Read(LaneCounts, 0, 10_000) })
		if err := q.Close(); err != nil {
			b.Fatal(err)
		}
		q, err = Open(path, Options{})
		if err != nil {
			b.Fatal(err)
		}
		heap, file, d, err := measureShrink(q)
		if err != nil {
			b.Fatal(err)
		}
		took += float64(d.Microseconds()) / 1000
		if q.shrinks.Load() != 1 {
			b.Fatalf("shrinks %d, want 1 (stats %+v)", q.shrinks.Load(), q.Stats())
		}
		if st := q.Stats(); st.Pending != 15_000 {
			b.Fatalf("pending %d after the shrink, want 15000", st.Pending)
		}
		size += float64(q.Stats().FileBytes) / (1 << 20)
		heapRise += float64(heap) / (1 << 20)
		fileRise += float64(file) / 1024
		if err := q.Close(); err != nil {
			b.Fatal(err)
		}
	}
	n := float64(b.N)
	b.ReportMetric(heapRise/n, "MB_heap_rise")
	b.ReportMetric(fileRise/n, "MB_rss_file_rise")
	b.ReportMetric(took/n, "shrink_ms")
	b.ReportMetric(size/n, "MB_file_after")
	b.ReportMetric(0, "ns/op")
}

// measureShrink makes a commit after which q shrinks its file (the caller
// made it ripe), and returns the peak rise of the heap's objects above
// what was live before (bytes) and of the process's mapped file pages (kB)
// while the commit and the shrink after it ran, and how long they took.
func measureShrink(q *Queue) (heapRise uint64, fileRiseKB int64, took time.Duration, err error) {
	runtime.GC()
	heap0 := heapObjects()
	file0 := procStatusKB("RssFile")
	var peakHeap uint64
	var peakFile int64
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			peakHeap = max(peakHeap, heapObjects())
			peakFile = max(peakFile, procStatusKB("RssFile"))
			select {
			case <-stop:
				return
			case <-time.After(100 * time.Microsecond):
			}
		}
	}()
	t0 := time.Now()
	err = q.PutMeta(context.Background(), KV{Key: "k", Value: []byte("v")})
	if err == nil {
		// The committer shrinks after that commit; the next request waits for it.
		err = q.PutMeta(context.Background(), KV{Key: "k"})
	}
	took = time.Since(t0)
	close(stop)
	<-done
	return peakHeap - min(peakHeap, heap0), max(peakFile-file0, 0), took, err
}

// heapObjects is the bytes of the Go heap's objects, live or not yet swept.
func heapObjects() uint64 {
	s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// BenchmarkOpenLarge opens a file of 1,000,000 count records (the agent
// drain benchmark's backlog: 100 keys, a small JSON value each, appended
// 10,000 at a time) b.N times and reports the peak resident memory each
// open added (VmHWM, reset before it, minus VmRSS before it: the file's
// pages the checks at open map count in it) and how long an open took.
// records=segments stores each commit's records as one segment, as such
// appends are; records=plain stores one bbolt key per record, as a backlog
// of small live commits is, which the checks read page by page. Run it
// with other processes holding both cores as well: a busy machine must
// not let the pages the checks read pile up.
func BenchmarkOpenLarge(b *testing.B) {
	if _, err := os.Stat("/proc/self/clear_refs"); err != nil {
		b.Skip("needs /proc/self/clear_refs (Linux) to reset the peak")
	}
	b.Run("records=plain", func(b *testing.B) { openLarge(b, -1) })
	b.Run("records=segments", func(b *testing.B) { openLarge(b, 0) })
}

func openLarge(b *testing.B, segMin int) {
	path := filepath.Join(b.TempDir(), "large.db")
	q, err := Open(path, Options{segmentMinBytes: segMin})
	if err != nil {
		b.Fatal(err)
	}
	at := time.Now().Add(-time.Hour)
	for r := 0; r < 1_000_000; r += 10_000 {
		recs := make([]Record, 10_000)
		for j := range recs {
			t := at.Add(time.Duration(r+j) * time.Millisecond).UnixMilli()
			recs[j] = Record{Lane: LaneCounts, Key: "m-" + strconv.Itoa(j%100) + "/good", Time: time.UnixMilli(t),
				Data: []byte(`{"d":1,"f":` + strconv.FormatInt(t, 10) + `,"l":` + strconv.FormatInt(t, 10) + `}`)}
		}
		if _, err := q.Append(context.Background(), recs); err != nil {
			b.Fatal(err)
		}
	}
	if err := q.Close(); err != nil {
		b.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		b.Fatal(err)
	}
	var rises []float64
	var took time.Duration
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		runtime.GC()
		debug.FreeOSMemory()
		if err := os.WriteFile("/proc/self/clear_refs", []byte("5"), 0); err != nil {
			b.Skipf("reset the peak: %v", err)
		}
		before := procStatusKB("VmRSS")
		b.StartTimer()
		t0 := time.Now()
		q, err := Open(path, Options{segmentMinBytes: segMin})
		took += time.Since(t0)
		b.StopTimer()
		rises = append(rises, float64(procStatusKB("VmHWM")-before)/1024)
		if err != nil {
			b.Fatal(err)
		}
		if err := q.Close(); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	b.StopTimer()
	slices.Sort(rises)
	b.Logf("file %.1f MB; peak RSS rise per open (MB, sorted): %.1f", float64(fi.Size())/1e6, rises)
	b.ReportMetric(rises[len(rises)-1], "MB_peak_rise_max")
	b.ReportMetric(rises[len(rises)/2], "MB_peak_rise_median")
	b.ReportMetric(float64(took.Milliseconds())/float64(b.N), "open_ms")
	b.ReportMetric(0, "ns/op")
}
