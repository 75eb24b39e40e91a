package buffer

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// Lane is a priority class of records; a lower value is read first.
type Lane uint8

// The lanes, highest priority first.
const (
	LaneEvents Lane = iota
	LaneCounts
	LaneTelemetry
)

// NumLanes is the number of lanes.
const NumLanes = 3

// String returns the lane's name: "events", "counts" or "telemetry".
func (l Lane) String() string {
	switch l {
	case LaneEvents:
		return "events"
	case LaneCounts:
		return "counts"
	case LaneTelemetry:
		return "telemetry"
	}
	return fmt.Sprintf("lane(%d)", uint8(l))
}

// Record is one queued value.
type Record struct {
	Seq  uint64    // assigned by Append: global, strictly increasing across lanes
	Lane Lane      // priority class
	Key  string    // e.g. machine id; order per key is preserved
	Time time.Time // the record's time: oldest-age stats use it; zero: the append time
	Data []byte    // opaque payload
}

// KV is a meta entry; a nil Value deletes the key. The call that writes it
// (Append, Ack, PutMeta) reads Value until it returns, and not after.
type KV struct {
	Key   string
	Value []byte
}

// MergeFunc folds b (the later record) into a (the earlier one); both are
// LaneCounts records with the same Key. It is used only under quota pressure:
// consecutive count records of one key become one. Counts are additive.
// An error keeps both records; ErrKeepBoth does so without a warning.
type MergeFunc func(a, b Record) (Record, error)

// ErrKeepBoth is returned by a MergeFunc that declines a merge on purpose.
var ErrKeepBoth = errors.New("buffer: records kept apart")

// Options configure a Queue.
type Options struct {
	MaxBytes      int64         // hard quota for the file and its reserve file (reserveFor); 0 = unlimited
	CommitWindow  time.Duration // group-commit window; default 10ms, at most 20ms
	CommitRecords int           // commit early when this many records wait; default 1024
	Merge         MergeFunc     // nil: counts are never merged (a full quota then returns ErrFull for counts)
	ReadOnly      bool          // inspect a stopped agent's buffer: no writes, no quarantine
	Logger        *slog.Logger  // nil: discard; the caller scopes it (component=buffer)
	// Offline: a command changing a stopped agent's buffer (deadletter
	// retry, drop), often run as root. A corrupt file is an error, as with
	// ReadOnly, not moved aside for a fresh one (which would be root's, and
	// the service could not open it: the agent's start, as its user, does
	// that); and no reserve file is made (the agent makes it).
	Offline bool
	// EventTime, when set, gives the time an event record's event happened
	// at its source (a stop's start): the quota's log of dropped events
	// names their span by it, not only by when they were buffered.
	EventTime func(Record) (time.Time, bool)

	// segmentMinBytes: a lane's part of a commit at least this big is stored
	// as one segment (see segment.go); 0 = DefaultSegmentMinBytes, < 0 never.
	// Tests lower it to run everything through segments.
	segmentMinBytes int
	// shrinkMinFree: free bytes that make a drained file worth shrinking
	// (shrink.go); 0 = DefaultShrinkMinFree, < 0 never. shrinkEvery: least
	// time between attempts; 0 = shrinkEvery.
	shrinkMinFree int64
	shrinkEvery   time.Duration
	// fileCheckEvery: how often an idle committer, or one that could not
	// write a deleted file back, looks at the path again (checkFile);
	// 0 = fileCheckEvery.
	fileCheckEvery time.Duration
	// diskLowerEvery: least time between two lowerings of the budget for a
	// full disk, and from one to a raise; 0 = diskLowerEvery.
	diskLowerEvery time.Duration
	// initialMmap is bbolt's InitialMmapSize (tests: a read transaction
	// held across a file's growth would otherwise block bbolt's remap).
	initialMmap int
	shrinkHook  func(stage string) // tests: called with "copied" and "renamed"
}

// Defaults and limits of Options.
const (
	DefaultCommitWindow  = 10 * time.Millisecond
	MaxCommitWindow      = 20 * time.Millisecond
	DefaultCommitRecords = 1024
)

// ErrFull is returned by Append when the quota is exhausted even after
// dropping and merging what may be dropped or merged.
var ErrFull = errors.New("buffer full")

// ErrQuota is the ErrFull of max_bytes: what could be dropped or merged
// was (while a forwarding round holds count records, which merging must
// leave alone, nothing is dropped: appends wait for the round instead).
// ErrDiskFull is the ErrFull of a file system without room (ENOSPC,
// EDQUOT) when the file could not be held at its size. errors.Is(err,
// ErrFull) holds for both.
var (
	ErrQuota    = fmt.Errorf("%w: max_bytes reached", ErrFull)
	ErrDiskFull = fmt.Errorf("%w: disk full", ErrFull)
)

// ErrClosed is returned by every method after Close.
var ErrClosed = errors.New("buffer closed")

// ErrReadOnly is returned by write methods of a queue opened with ReadOnly.
var ErrReadOnly = errors.New("buffer opened read-only")

// ErrNotFound is returned for a record or dead letter that does not exist
// (already delivered, dropped, or never there).
var ErrNotFound = errors.New("not found")

// ErrEmptyFile matches the error of a read-only Open of a file of 0 bytes
// (a read-write Open starts a fresh buffer in it, with a warning).
var ErrEmptyFile = errors.New("empty (0 bytes)")

// ErrLocked is returned by Open when another process holds the file (bbolt's
// flock): another agent, or a command that opened it for writing.
var ErrLocked = errors.New("buffer file locked by another process")

// ErrDamaged is returned for a retry of a damaged dead letter.
var ErrDamaged = errors.New("damaged: its bytes could not be read as a record, so it cannot go back into a lane; drop it once inspected")

// DeadLetter is a record the forwarder gave up on, with the reason.
type DeadLetter struct {
	ID     uint64
	Record Record
	Reason string
	At     time.Time
	// Damaged: the file held bytes that do not decode (a damaged record set
	// aside at Open, or a damaged dead letter). Record.Data holds them as
	// stored; it can be listed and dropped, not retried.
	Damaged bool

	laneUnknown bool // a damaged dead letter: Record.Lane is a stand-in
}

// LaneName is the name of the record's lane, "unknown" for a damaged dead
// letter whose bytes do not say.
func (d DeadLetter) LaneName() string {
	if d.laneUnknown {
		return "unknown"
	}
	return d.Record.Lane.String()
}

// The reasons of damaged dead letters.
const (
	damagedRecord     = "damaged record in buffer file: "
	damagedDeadLetter = "damaged dead letter in buffer file: "
)

// deadLetterAt decodes the dead letter stored under id. One that does not
// decode comes back Damaged, holding the stored bytes: one bad entry must
// neither hide the others nor condemn the whole file.
func deadLetterAt(id uint64, v []byte) DeadLetter {
	d, err := decodeDeadLetter(id, v)
	if err != nil {
		return DeadLetter{ID: id, Damaged: true, laneUnknown: true, Reason: damagedDeadLetter + err.Error(),
			Record: Record{Lane: LaneTelemetry, Data: bytes.Clone(v)}}
	}
	d.Damaged = strings.HasPrefix(d.Reason, damagedRecord)
	return d
}

// LaneStats describe one lane.
type LaneStats struct {
	Pending int       // records waiting
	Bytes   int64     // logical bytes of those records (see Stats)
	Oldest  time.Time // time of the lane's head record (Record.Time); zero when empty
	Dropped uint64    // records dropped by the quota or from the dead letters, ever
}

// Stats describe the queue. Bytes are logical: the encoded record plus
// bbolt's per-entry overhead (key and leaf header), which is what the quota
// counts. FileBytes is the size of the file on disk.
type Stats struct {
	Lanes           [NumLanes]LaneStats
	Pending         int       // records waiting in all lanes
	Bytes           int64     // logical bytes of pending records
	Oldest          time.Time // oldest head-record time over all lanes
	DeadLetters     int       // records in the dead-letter bucket
	DeadLetterBytes int64     // logical bytes of dead letters
	MetaBytes       int64     // logical bytes of meta entries
	UsedBytes       int64     // Bytes + DeadLetterBytes + MetaBytes: what the quota compares
	LimitBytes      int64     // logical budget derived from MaxBytes (or a full disk); 0 = unlimited
	// DiskFullSince: since when a full disk holds the file at its size
	// (the budget lowered as if max_bytes were reached); zero when not.
	DiskFullSince  time.Time
	Dropped        uint64 // records the quota dropped, ever (the sum of the lanes')
	DeadDropped    uint64 // dead letters an operator dropped (DropDeadLetter), ever
	DamagedDropped uint64 // of those, damaged ones (lane unknown)
	Merged         uint64 // count records merged into an earlier one, ever
	FileBytes      int64  // size of the bbolt file
	Shrinks        uint64 // times the drained file was replaced by a compact copy since Open
	// Restored counts the times the file was found deleted or replaced
	// while in use since Open, and its data written back to the path.
	Restored uint64
	// ReserveLentSince: since when the reserve file is given up so that
	// acknowledgements can be written on a full disk (appends do not grow
	// the file meanwhile); zero while the reserve is there, or is missing
	// for another reason.
	ReserveLentSince time.Time
}

var (
	bucketLanes = [NumLanes][]byte{[]byte("lane.events"), []byte("lane.counts"), []byte("lane.telemetry")}
	bucketDead  = []byte("dead")
	bucketMeta  = []byte("meta")
	bucketSys   = []byte("sys")

	sysSeq     = []byte("seq")
	sysDLSeq   = []byte("dlseq")
	sysMerged  = []byte("merged")
	sysFormat  = []byte("format")
	sysDropped = [NumLanes][]byte{[]byte("dropped.events"), []byte("dropped.counts"), []byte("dropped.telemetry")}
	// Damaged dead letters dropped: their lane is unknown.
	sysDroppedDamaged = []byte("dropped.damaged")
	// Dead letters dropped by an operator, damaged or not. (Before this
	// key existed, such drops were counted in the lane's sysDropped.)
	sysDroppedDead = []byte("dropped.dead")
)

// state is the in-memory mirror of what the file holds. The committer owns
// it; Stats reads a published copy.
type state struct {
	seq       uint64
	dlSeq     uint64
	lanes     [NumLanes]LaneStats
	dead      int
	deadBytes int64
	metaBytes int64
	merged    uint64
	// deadDropped counts dead letters dropped by an operator, and
	// damagedDropped those of them that were damaged (lane unknown).
	deadDropped    uint64
	damagedDropped uint64
	// latestDead is the newest dead letter (nil: none), kept by every
	// write and delete in the dead bucket (putDeadLetter, takeDeadLetter)
	// and read at open: LatestDeadLetter answers without a read
	// transaction, which waits behind a commit stalled in its meta page.
	latestDead *DeadLetter

	burstDropped [NumLanes]uint64 // not yet logged
	burstMerged  uint64
	// burstEvents is which keys lost events in the burst (at most
	// maxBurstKeys), and the span of those events' times.
	burstEvents               []string
	burstFirstEv, burstLastEv time.Time
	// by Options.EventTime, when it knew
	burstFirstSrc, burstLastSrc time.Time
}

// maxBurstKeys bounds the keys a quota log line names.
const maxBurstKeys = 10

// noteDroppedEvent adds a dropped event record (its stored bytes) to the
// burst's keys and time span.
func (s *state) noteDroppedEvent(v []byte, eventTime func(Record) (time.Time, bool)) {
	r, err := decodeRecord(v)
	if err != nil {
		return
	}
	if eventTime != nil {
		if t, ok := eventTime(r); ok {
			if s.burstFirstSrc.IsZero() || t.Before(s.burstFirstSrc) {
				s.burstFirstSrc = t
			}
			if t.After(s.burstLastSrc) {
				s.burstLastSrc = t
			}
		}
	}
	if !slices.Contains(s.burstEvents, r.Key) && len(s.burstEvents) < maxBurstKeys {
		s.burstEvents = append(s.burstEvents, r.Key)
	}
	if s.burstFirstEv.IsZero() || r.Time.Before(s.burstFirstEv) {
		s.burstFirstEv = r.Time
	}
	if r.Time.After(s.burstLastEv) {
		s.burstLastEv = r.Time
	}
}

func (s *state) used() int64 {
	u := s.deadBytes + s.metaBytes
	for _, l := range s.lanes {
		u += l.Bytes
	}
	return u
}

// Queue is the durable buffer. Its methods are safe for concurrent use.
type Queue struct {
	db        *bolt.DB
	path      string
	opts      Options
	log       *slog.Logger
	recovered string
	budget    atomic.Int64 // logical byte budget; 0 = unlimited
	// diskFull: since when (unix ns) a full disk holds the budget below
	// what max_bytes gives, 0 = it does not; diskLowered: when it last
	// lowered it (diskfull.go).
	diskFull    atomic.Int64
	diskLowered atomic.Int64
	// reserveLent: since when (unix ns) the reserve file is given up for
	// acknowledgements on a full disk (lendReserve), 0 = it is not; while
	// it is, appends do not grow the file into its room.
	reserveLent atomic.Int64
	// txSince: since when (unix ns) the committer's work with the disk in
	// progress runs (working), 0 = none (WriteRunningSince).
	txSince atomic.Int64
	// longestWrite: the longest such work (ns) since TakeLongestWrite last
	// took it.
	longestWrite atomic.Int64
	// reserve is the reserve file's size (reserveFor).
	reserve int64
	// diskLowBudget is the budget the last lowering for a full disk set
	// (a budget above it was raised since); ceiling is the budget MaxBytes
	// gives, lowered when bbolt refused to grow the file (shrinkBudget):
	// what a full disk's budget goes back to.
	diskLowBudget atomic.Int64
	ceiling       atomic.Int64
	// pastMaxLogged is when a delete last had to take the file past
	// MaxBytes (runTx; committer only).
	pastMaxLogged time.Time
	// cutPending: the budget was cut (shrinkBudget) and no append has
	// committed since (commit; committer only).
	cutPending bool

	reqs      chan *request
	quit      chan struct{}
	done      chan struct{}
	closed    atomic.Bool
	closeOnce sync.Once
	closeErr  error

	// markMu orders readers against merges: a merge holds it from planning
	// until its commit, readers hold it while reading and raising readMark.
	markMu   sync.RWMutex
	readMark [NumLanes]atomic.Uint64 // highest Seq handed out per lane; merges never touch these
	// claimed are the records Claim marked in flight one by one (events
	// and telemetry lanes), until Release; claimMu guards the map, which
	// Claims add to under markMu's read lock.
	claimMu sync.Mutex
	claimed [NumLanes]map[uint64]struct{}
	// unmapped counts the record bytes read out of the file's mapping since
	// its pages were last handed back to the page cache (see dropReadPages).
	unmapped atomic.Int64

	mu sync.Mutex
	st state // published copy

	lastLog  time.Time          // committer only
	arena    arena              // committer only
	pend     [NumLanes][][]byte // committer only: txn.pend's memory
	commits  atomic.Uint64      // committed transactions, for tests and benchmarks
	inflight atomic.Int64       // requests submitted and not finished

	// dbMu guards db against the committer replacing it (shrink.go):
	// readers hold it for reading while inside a transaction.
	dbMu       sync.RWMutex
	lastShrink time.Time                   // committer only
	shrinks    atomic.Uint64               // files replaced by a compact copy, for tests
	openFile   os.FileInfo                 // committer only (and Open): the file q.db has open
	fileLost   error                       // committer only: why the file is not at its path (checkFile)
	fileLostAt time.Time                   // committer only: the last attempt to write it back
	restored   atomic.Uint64               // files written back after being deleted or replaced
	broken     atomic.Pointer[brokenError] // set when the file could not be reopened after a shrink
	// backed is how much of the file has disk blocks (backFile; committer
	// only, and Open); backFailed: a failure to give the rest was logged.
	backed     int64
	backFailed bool
	// backTriedSize and backTriedAt: the file size and time of the last
	// try (backFile tries a size again only when a file check is due).
	backTriedSize int64
	backTriedAt   time.Time
	failed        chan struct{} // closed with broken
}

// Open opens (or creates) the buffer file at path. A file that bbolt cannot
// open or that fails the consistency check is renamed to
// <path>.corrupt-<UTC timestamp>, an error is logged, and a fresh queue is
// returned; Recovered reports the new name. With ReadOnly, a corrupt file is
// an error instead.
func Open(path string, opts Options) (*Queue, error) {
	if opts.CommitWindow == 0 {
		opts.CommitWindow = DefaultCommitWindow
	}
	if opts.CommitWindow < 0 || opts.CommitWindow > MaxCommitWindow {
		return nil, fmt.Errorf("open buffer %s: commit window %v outside (0, %v]", path, opts.CommitWindow, MaxCommitWindow)
	}
	if opts.CommitRecords <= 0 {
		opts.CommitRecords = DefaultCommitRecords
	}
	if opts.segmentMinBytes == 0 {
		opts.segmentMinBytes = DefaultSegmentMinBytes
	}
	if opts.shrinkMinFree == 0 {
		opts.shrinkMinFree = DefaultShrinkMinFree
	}
	if opts.fileCheckEvery == 0 {
		opts.fileCheckEvery = fileCheckEvery
	}
	if opts.diskLowerEvery == 0 {
		opts.diskLowerEvery = diskLowerEvery
	}
	if opts.shrinkEvery == 0 {
		opts.shrinkEvery = shrinkEvery
	}
	if opts.MaxBytes < 0 {
		return nil, fmt.Errorf("open buffer %s: negative max bytes %d", path, opts.MaxBytes)
	}
	if opts.MaxBytes > 0 && opts.MaxBytes < MinMaxBytes {
		return nil, fmt.Errorf("open buffer %s: max bytes %d below the minimum %d", path, opts.MaxBytes, MinMaxBytes)
	}
	if m := MaxMaxBytes(intSize); m > 0 && opts.MaxBytes > m {
		return nil, fmt.Errorf("open buffer %s: max bytes %d above the %d a 32-bit system can map", path, opts.MaxBytes, m)
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	reserve := reserveFor(opts.MaxBytes)
	if opts.MaxBytes > 0 {
		opts.MaxBytes -= reserve // the file's quota: the reserve file's bytes count too
	}
	q := &Queue{
		path:    path,
		opts:    opts,
		reserve: reserve,
		log:     log,
		reqs:    make(chan *request),
		quit:    make(chan struct{}),
		done:    make(chan struct{}),

		failed: make(chan struct{}),
	}
	q.budget.Store(budgetFor(opts.MaxBytes))
	q.ceiling.Store(budgetFor(opts.MaxBytes))
	if !opts.ReadOnly {
		// A copy left by a shrink that did not finish: the file is intact.
		if err := os.Remove(path + shrinkSuffix); err == nil {
			q.log.Info("buffer: removed the copy of an unfinished shrink", "path", path+shrinkSuffix)
		}
	}

	if fi, err := os.Stat(path); err == nil && fi.Size() == 0 {
		// An empty file where a buffer was: bbolt takes it for a new one
		// (a read-only open failed with "bad file descriptor"). A crash
		// between its creation and its first write leaves one; so does a
		// file system that lost the file's contents, or a truncate by
		// hand — whatever it held is gone (the PEERS audit: started
		// afresh without a word).
		if opts.ReadOnly {
			return nil, fmt.Errorf("open buffer %s: the file is %w: nothing is buffered in it", path, ErrEmptyFile)
		}
		q.log.Warn("buffer file found empty (0 bytes): starting a fresh buffer; if plantedge ran here before, what it held is lost (a file system that lost the file's contents, or truncated by hand)",
			"path", path)
	}
	db, st, err := q.openChecked()
	var ce *corruptError
	if err != nil && errors.As(err, &ce) && !opts.ReadOnly && !opts.Offline {
		moved := path + ".corrupt-" + time.Now().UTC().Format("20060102T150405.000Z")
		if rerr := os.Rename(path, moved); rerr != nil {
			return nil, fmt.Errorf("open buffer %s: move corrupt file aside: %w (corruption: %w)", path, rerr, err)
		}
		q.recovered = moved
		q.log.Error("buffer file corrupt: moved aside, starting a fresh buffer; records in it were not forwarded",
			"err", err, "path", path, "moved_to", moved)
		db, st, err = q.openChecked()
	}
	if err != nil {
		return nil, fmt.Errorf("open buffer %s: %w", path, err)
	}
	if !opts.ReadOnly {
		// The file may be new or renamed: make its directory entry durable
		// too, or a power cut could lose the whole file.
		if err := syncDir(filepath.Dir(path)); err != nil {
			_ = db.Close()
			return nil, fmt.Errorf("open buffer %s: %w", path, err)
		}
	}
	q.db = db
	q.st = st
	if opts.ReadOnly {
		close(q.done)
		return q, nil
	}
	q.backFile()
	if !opts.Offline {
		q.reserveAtOpen(&st)
	}
	go q.run(st)
	return q, nil
}

// WriteRunningSince is when the committer's write in progress (a commit of
// appends or acknowledgements with its retries and fdatasync, or the file
// work between commits: the file check, the reserve file, a shrink) began;
// zero when none runs. One that
// runs for long is a disk that does not complete writes — frozen, failing,
// a hung network file system: it neither fails nor returns, so nothing
// else tells (the README audit: /readyz 200 and status silent for as long
// as the disk was frozen, values not taken).
func (q *Queue) WriteRunningSince() time.Time {
	if n := q.txSince.Load(); n != 0 {
		return time.Unix(0, n)
	}
	return time.Time{}
}

// TakeLongestWrite returns how long the longest of the committer's writes
// (as WriteRunningSince's) that completed since the last call ran, and
// starts anew. A caller that looks at WriteRunningSince now and then may
// miss a write that stalled between two looks: this one it does not miss.
func (q *Queue) TakeLongestWrite() time.Duration {
	return time.Duration(q.longestWrite.Swap(0))
}

// MinMaxBytes is the smallest accepted MaxBytes.
const MinMaxBytes = 256 << 10

// MaxMaxBytes is the largest MaxBytes on a system whose int has intSize
// bits (strconv.IntSize; 0: no limit). bbolt maps the whole file into
// memory, and on a 32-bit system it maps at most 2 GiB − 1, which a file
// past 1 GiB needs (its map grows in steps of 1 GiB from there: "mmap too
// large"); the file's size limit is an int there too, so 3 GiB or more
// wrapped round to no limit or a wrong one (the arch probe: appends failed
// with "invalid argument" at 2.1 GB, and 5 GB became 688 MB). 64-bit
// systems have no such limit.
func MaxMaxBytes(intSize int) int64 {
	if intSize == 32 {
		return 1 << 30
	}
	return 0
}

// intSize is strconv.IntSize (a test sets 32).
var intSize = strconv.IntSize

// allocSize is how far bbolt grows the file at a time once it is past that size.
func allocSize(maxBytes int64) int {
	a := int64(16 << 20)
	if maxBytes > 0 {
		a = min(a, max(maxBytes/16, 32<<10))
	}
	return int(a)
}

// budgetFor turns the file quota into a logical byte budget. bbolt needs room
// beyond the logical bytes: its growth step (allocSize), partly filled leaf
// pages after deletes and merges, branch pages, the freelist, and pages freed
// by the last transaction that only the next one may reuse. 60% of what is
// left after the growth step and the deletes' reserve (appendCap) keeps the
// file under MaxBytes in our fill/drain tests; bbolt's own MaxSize is the
// hard backstop.
func budgetFor(maxBytes int64) int64 {
	if maxBytes == 0 {
		return 0
	}
	return (maxBytes - 2*int64(allocSize(maxBytes))) * 6 / 10
}

// fileFormat is the layout this code writes, kept in the file: 1 = a key
// per record; 2 = segments too (see segment.go). A newer file is refused,
// not taken for corruption (an older plantedge would misread it).
const fileFormat = 2

// ErrNewerFormat is returned by Open for a file written by a newer
// plantedge: upgrade again, or empty the buffer with that version first.
var ErrNewerFormat = errors.New("buffer file written by a newer plantedge")

func checkFormat(tx *bolt.Tx) error {
	sys := tx.Bucket(bucketSys)
	if sys == nil {
		return nil
	}
	// Only a plausible number counts: a damaged sys page is for the
	// corruption checks that follow to judge.
	if f := getUint64(sys, sysFormat); f > fileFormat && f <= fileFormat+100 {
		return fmt.Errorf("%w: format %d, this version reads up to %d; upgrade plantedge again, or empty the buffer (plantedge flush) with the newer version before downgrading "+
			"(if no newer plantedge ever ran on this box, the file's format mark is damaged: stop the agent, move the file aside and start it — it starts a fresh file; keep the old one for support)", ErrNewerFormat, f, fileFormat)
	}
	return nil
}

// corruptError marks an Open failure that means the file is damaged (as
// opposed to, say, a permission problem or a lock held by another process).
// systemError reports an error of the machine, not of the file's content
// (a read-only file system, a full disk, a failing device, no file
// descriptors left): the file must not be moved aside for it — it may be
// whole, with records not yet forwarded — and no fresh file would fare
// better. The agent stops with it; its restart tries again.
func systemError(err error) bool {
	var errno syscall.Errno
	if !errors.As(err, &errno) {
		return false
	}
	switch errno {
	case syscall.EROFS, syscall.EACCES, syscall.EPERM, syscall.ENOSPC, syscall.EDQUOT, syscall.EIO,
		syscall.EMFILE, syscall.ENFILE, syscall.ENOMEM, syscall.EBUSY, syscall.EAGAIN, syscall.EINTR:
		return true
	}
	return false
}

type corruptError struct{ err error }

func (e *corruptError) Error() string        { return "corrupt buffer file: " + e.err.Error() }
func (e *corruptError) Unwrap() error        { return e.err }
func (e *corruptError) Is(target error) bool { return target == ErrCorruptFile }

// ErrCorruptFile matches the error of a read-only (or Offline) Open of a
// file that fails the checks (a read-write Open moves it aside instead).
var ErrCorruptFile = errors.New("corrupt buffer file")

// openBolt opens q.path with the queue's bbolt options (at Open, and again
// after a shrink replaced the file).
func (q *Queue) openBolt() (*bolt.DB, error) {
	db, err := boltOpen(q.path, &bolt.Options{
		Timeout:      2 * time.Second,
		ReadOnly:     q.opts.ReadOnly,
		FreelistType: bolt.FreelistMapType,
		MaxSize:      q.appendCap(),
		// NoFreelistSync would speed up commits of a large freelist, but then
		// bbolt's Open rebuilds the freelist in a goroutine of its own that
		// panics on a damaged page (measured: kills the process, so a corrupt
		// file could not be quarantined), and touches every page of the file
		// (peak RSS 138 MB opening 1M records, against 31 MB). Keep the
		// freelist on disk, and keep it short: see shrink.go.
		NoFreelistSync:  false,
		InitialMmapSize: q.opts.initialMmap,
	})
	if err != nil {
		return nil, err
	}
	db.AllocSize = allocSize(q.opts.MaxBytes)
	q.openFile, _ = os.Stat(q.path)
	return db, nil
}

// readersWait is how long a read-write Open waits for processes reading
// the file (heldByReaders) before bbolt's own wait for the lock (2 s). A
// stopped agent's status or deadletter reads it under a shared lock: the
// agent systemd restarts meanwhile waited 2 s and exited with "is
// plantedge already running with this data_dir?" (a status of a 3
// million record backlog read for 4–5 s). A variable: tests lower it.
var readersWait = 30 * time.Second

// waitForReaders waits, up to readersWait, while only readers hold the
// file's lock, and says so in the log.
func (q *Queue) waitForReaders() {
	if !heldByReaders(q.path) {
		return
	}
	q.log.Warn("buffer file is being read by another process (plantedge status or deadletter with the agent stopped): waiting for it to finish",
		"path", q.path, "up_to", readersWait)
	start := time.Now()
	for heldByReaders(q.path) && time.Since(start) < readersWait {
		time.Sleep(20 * time.Millisecond)
	}
	q.log.Info("buffer file: done waiting for its readers", "path", q.path, "waited", time.Since(start).Round(time.Millisecond))
}

// openChecked opens the file, checks it as bbolt's consistency check does
// (checkPageGraph, thorough) and loads the in-memory state, turning bbolt
// panics and memory faults into corruptError.
func (q *Queue) openChecked() (db *bolt.DB, st state, err error) {
	var bad []badRecord
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			err = &corruptError{fmt.Errorf("damaged pages: reading them failed (%v)", r)}
			if db != nil {
				_ = db.Close()
				db = nil
			}
		}
	}()
	if q.opts.ReadOnly {
		if _, serr := os.Stat(q.path); serr != nil {
			return nil, st, serr
		}
	}
	if !q.opts.ReadOnly {
		q.waitForReaders()
	}
	db, err = q.openBolt()
	if err != nil {
		if errors.Is(err, berrors.ErrTimeout) && heldByReaders(q.path) {
			return nil, st, fmt.Errorf("%w: read by another process for longer than %v (a plantedge status --count-pending or deadletter of a big file?): %s", ErrLocked, readersWait, q.path)
		}
		if errors.Is(err, berrors.ErrTimeout) {
			return nil, st, fmt.Errorf("%w (is plantedge already running with this data_dir?): %s", ErrLocked, q.path)
		}
		if errors.Is(err, fs.ErrPermission) || errors.Is(err, fs.ErrNotExist) || systemError(err) {
			return nil, st, err
		}
		return nil, st, &corruptError{err}
	}
	fail := func(e error) (*bolt.DB, state, error) {
		_ = db.Close()
		return nil, state{}, e
	}
	// First the tree's shape and bbolt's consistency rules, before
	// anything follows the tree or writes.
	if err := checkTreeOf(db, q.path, true); err != nil {
		return fail(err)
	}
	if err := db.View(checkFormat); err != nil {
		return fail(err)
	}
	if !q.opts.ReadOnly {
		if err := db.Update(func(tx *bolt.Tx) error {
			for _, name := range append(bucketLanes[:], bucketDead, bucketMeta, bucketSys) {
				if _, err := tx.CreateBucketIfNotExists(name); err != nil {
					return err
				}
			}
			sys := tx.Bucket(bucketSys)
			if sys.Get(sysDroppedDead) == nil {
				dead, counts := droppedByOperator(sys)
				if err := putUint64(sys, sysDroppedDead, dead); err != nil {
					return err
				}
				if err := putUint64(sys, sysDropped[LaneCounts], counts); err != nil {
					return err
				}
			}
			if getUint64(sys, sysFormat) < fileFormat {
				return putUint64(sys, sysFormat, fileFormat)
			}
			return nil
		}); err != nil {
			if errors.Is(err, berrors.ErrMaxSizeReached) || systemError(err) {
				return fail(err)
			}
			return fail(&corruptError{err})
		}
	}
	err = db.View(func(tx *bolt.Tx) error {
		fi, err := os.Stat(q.path)
		if err != nil {
			return err
		}
		if fi.Size() < tx.Size() {
			return &corruptError{fmt.Errorf("file is %d bytes but its pages reach %d: truncated", fi.Size(), tx.Size())}
		}
		// loadState hands the pages it read back as it goes; the last ones
		// here.
		defer dropTxPages(tx)
		// Read every record in this goroutine, where a wild page id faults
		// into a recoverable panic.
		st, bad, err = loadState(tx)
		if err != nil {
			return &corruptError{err}
		}
		return nil
	})
	if err != nil {
		return fail(err)
	}
	if len(bad) > 0 {
		if q.opts.ReadOnly {
			q.log.Error("buffer file has damaged records (not counted)", "count", len(bad), "err", bad[0].err)
		} else if err := db.Update(func(tx *bolt.Tx) error { return deadLetterBad(tx, &st, bad, q.opts.segmentMinBytes) }); err != nil {
			return fail(fmt.Errorf("set damaged records aside: %w", err))
		} else {
			q.log.Error("buffer file had damaged records: moved them to the dead letters",
				"count", len(bad), "err", bad[0].err, "lane", bad[0].lane.String(), "seq", bad[0].seq)
		}
	}
	return db, st, nil
}

// maxPlausibleSeq bounds a stored sequence number: a million records a
// second for two thousand years stay below it. One above it is damaged
// bytes (erased flash reads 0xff): taken, the next Seq wrapped to 0, which
// no reader meets, and new dead letters overwrote old ones (the second
// damage review).
const maxPlausibleSeq = 1 << 56

// plausibleSeq reads the stored sequence number under key of sys, or 0
// when it is damaged: the file's records and dead letters then give it.
func plausibleSeq(sys *bolt.Bucket, key []byte) uint64 {
	if v := getUint64(sys, key); v < maxPlausibleSeq {
		return v
	}
	return 0
}

// droppedByOperator reads the operator-drop count of a file from before
// sysDroppedDead: such a file counted an operator's drop of a dead letter
// in its lane's drops, and its damaged ones in sysDroppedDamaged. The quota
// never drops counts, so the counts lane's drops were all an operator's;
// the events lane's stay as they are (the quota drops events last, so
// they cannot be told apart). It returns the operator drops and what is
// left of the counts lane's.
func droppedByOperator(sys *bolt.Bucket) (dead, counts uint64) {
	return getUint64(sys, sysDroppedDamaged) + getUint64(sys, sysDropped[LaneCounts]), 0
}

// badRecord is a lane entry whose value fails to decode.
type badRecord struct {
	lane  Lane
	seq   uint64
	seg   uint64 // key of the segment holding it; 0 for a plain record
	idx   int    // position in the segment
	whole bool   // none of the segment's records could be read: raw is all of it (else raw is the record, or the damaged span, at idx: -1 for a span)
	raw   []byte
	err   error
}

// deadLetterBad moves damaged lane entries to the dead letters, keeping the
// raw bytes as the record's Data so nothing disappears silently. The intact
// records of a segment with damaged ones are stored again without them.
func deadLetterBad(tx *bolt.Tx, st *state, bad []badRecord, segMin int) error {
	dead, sys := tx.Bucket(bucketDead), tx.Bucket(bucketSys)
	dead.FillPercent = 1.0
	now := time.Now().UTC()
	type segRef struct {
		lane Lane
		key  uint64
	}
	drop := map[segRef]map[int]bool{}
	var order []segRef
	for _, b := range bad {
		if err := putDeadLetter(dead, st, DeadLetter{At: now, Reason: damagedRecord + b.err.Error(),
			Record: Record{Seq: b.seq, Lane: b.lane, Time: now, Data: b.raw}}); err != nil {
			return err
		}
		lb := tx.Bucket(bucketLanes[b.lane])
		switch {
		case b.seg == 0:
			if err := lb.Delete(seqKey(b.seq)); err != nil {
				return err
			}
		case b.whole:
			if err := lb.DeleteBucket(seqKey(b.seg)); err != nil {
				return err
			}
		default:
			ref := segRef{b.lane, b.seg}
			if drop[ref] == nil {
				drop[ref] = map[int]bool{}
				order = append(order, ref)
			}
			drop[ref][b.idx] = true
		}
	}
	for _, ref := range order {
		lb := tx.Bucket(bucketLanes[ref.lane])
		k := seqKey(ref.key)
		// Its sound records: the damaged spans between them are among the
		// dead letters.
		recs, _ := segmentRecords(segmentOf(lb, k), ref.key)
		var keep [][]byte
		for i, r := range recs {
			if !drop[ref][i] {
				keep = append(keep, r)
			}
		}
		if err := replaceSegment(lb, k, keep, segMin, nil); err != nil {
			return err
		}
	}
	return putUint64(sys, sysDLSeq, st.dlSeq)
}

// setAsideDamaged moves the damaged entries of lane l to the dead letters
// and counts the lane anew, in t: for damage met while the file is open
// (the open sets aside what it finds). Left in place, a damaged record
// failed every read of its lane and every commit that touched its head:
// forwarding stopped until a restart. It returns how many it set aside.
func (t *txn) setAsideDamaged(l Lane) (int, error) {
	if err := t.flushPending(); err != nil { // the records this transaction appended are counted
		return 0, err
	}
	ls, _, bad, err := scanLane(t.lanes[l], l, nil)
	if err != nil || len(bad) == 0 {
		return 0, err
	}
	if err := deadLetterBad(t.tx, &t.w, bad, t.segMin); err != nil {
		return 0, err
	}
	ls.Dropped = t.w.lanes[l].Dropped
	t.w.lanes[l] = ls
	t.dirty[l] = true
	t.setAside = append(t.setAside, bad...)
	return len(bad), nil
}

// repairing runs op, and once more after setting aside the damaged entries
// of lane l if op met one (the op must leave t as it was when it fails so).
func (t *txn) repairing(l Lane, op func() error) error {
	err := op()
	if !errors.Is(err, ErrCorruptRecord) {
		return err
	}
	if n, e := t.setAsideDamaged(l); e != nil || n == 0 {
		return err
	}
	return op()
}

// dropEveryBytes is how much of the file loadState reads between giving
// the pages back to the page cache.
const dropEveryBytes = 2 << 20

// loadState scans the file once to rebuild counts, bytes and head times.
func loadState(tx *bolt.Tx) (state, []badRecord, error) {
	var st state
	var bad []badRecord
	// A whole-file pass: keep it out of RSS, handing the pages read back
	// every dropEveryBytes (a ticker in another goroutine lagged when both
	// cores were busy).
	var walked int
	read := func(n int) {
		if walked += n; walked >= dropEveryBytes {
			dropTxPages(tx)
			walked = 0
		}
	}
	for l := range Lane(NumLanes) {
		b := tx.Bucket(bucketLanes[l])
		if b == nil {
			continue
		}
		ls, last, lb, err := scanLane(b, l, read)
		if err != nil {
			return st, nil, fmt.Errorf("lane %s: %w", l, err)
		}
		st.lanes[l] = ls
		st.seq = max(st.seq, last)
		bad = append(bad, lb...)
	}
	if b := tx.Bucket(bucketDead); b != nil {
		err := b.ForEach(func(k, v []byte) error {
			if len(k) != 8 {
				return fmt.Errorf("dead letter key %x: bad length", k)
			}
			read(len(k) + len(v))
			d := deadLetterAt(beUint64(k), v)
			st.dead++
			st.deadBytes += int64(len(v) + elemOverhead)
			if !d.Damaged {
				// A damaged one's Seq is a label (earlier versions stored
				// what damaged bytes read: the damage review saw the next
				// sequence number set to 2^64-1 by erased flash).
				st.seq = max(st.seq, d.Record.Seq)
			}
			st.dlSeq = max(st.dlSeq, d.ID)
			return nil
		})
		if err != nil {
			return st, nil, err
		}
		if k, v := b.Cursor().Last(); len(k) == 8 {
			d := deadLetterAt(beUint64(k), v)
			st.latestDead = &d
		}
	}
	if b := tx.Bucket(bucketMeta); b != nil {
		_ = b.ForEach(func(k, v []byte) error {
			st.metaBytes += metaSize(len(k), len(v))
			return nil
		})
	}
	if b := tx.Bucket(bucketSys); b != nil {
		st.seq = max(st.seq, plausibleSeq(b, sysSeq))
		st.dlSeq = max(st.dlSeq, plausibleSeq(b, sysDLSeq))
		st.merged = getUint64(b, sysMerged)
		st.damagedDropped = getUint64(b, sysDroppedDamaged)
		st.deadDropped = getUint64(b, sysDroppedDead)
		for l := range Lane(NumLanes) {
			st.lanes[l].Dropped = getUint64(b, sysDropped[l])
		}
		if b.Get(sysDroppedDead) == nil {
			st.deadDropped, st.lanes[LaneCounts].Dropped = droppedByOperator(b)
		}
	}
	return st, bad, nil
}

// scanLane reads lane l of b whole, as the open does: the sound records'
// count, bytes and oldest time (ls), the highest Seq met (damaged ones
// too), and the entries that fail to read. read, if set, is told the
// bytes of each entry met.
func scanLane(b *bolt.Bucket, l Lane, read func(n int)) (ls LaneStats, last uint64, bad []badRecord, _ error) {
	var prev uint64
	err := walkLane(b, 0, func(r laneRec) error {
		if read != nil {
			read(len(r.v))
		}
		last = max(last, r.seq)
		if r.bad != nil {
			bad = append(bad, badRecord{lane: l, seq: r.seq, seg: r.seg, idx: r.idx, whole: !r.span, raw: bytes.Clone(r.v), err: r.bad})
			return nil
		}
		rec, err := decodeRecord(r.v)
		switch {
		case err != nil:
		case rec.Lane != l || rec.Seq != r.seq:
			err = fmt.Errorf("%w: stored under %s seq %d but says %s seq %d", ErrCorruptRecord, l, r.seq, rec.Lane, rec.Seq)
		case rec.Seq <= prev || (r.seg != 0 && rec.Seq < r.seg):
			err = fmt.Errorf("%w: seq %d out of order in %s (after %d, segment %d)", ErrCorruptRecord, rec.Seq, l, prev, r.seg)
		}
		if err != nil {
			// The tree is sound but this value is damaged: set it aside
			// rather than give up the whole file.
			bad = append(bad, badRecord{lane: l, seq: r.seq, seg: r.seg, idx: r.idx, raw: bytes.Clone(r.v), err: err})
			return nil
		}
		prev = rec.Seq
		if ls.Pending == 0 {
			ls.Oldest = rec.Time
		}
		ls.Pending++
		ls.Bytes += int64(len(r.v) + elemOverhead)
		return nil
	})
	return ls, last, bad, err
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync directory: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync directory %s: %w", dir, err)
	}
	return nil
}

func metaSize(k, v int) int64 { return int64(k + v + 16) }

func beUint64(b []byte) uint64 {
	var v uint64
	for _, c := range b[:8] {
		v = v<<8 | uint64(c)
	}
	return v
}

func getUint64(b *bolt.Bucket, key []byte) uint64 {
	v := b.Get(key)
	if len(v) != 8 {
		return 0
	}
	return beUint64(v)
}

func putUint64(b *bolt.Bucket, key []byte, v uint64) error {
	return b.Put(key, seqKey(v))
}

// Recovered returns "" or the path the corrupt file was moved to by Open.
func (q *Queue) Recovered() string { return q.recovered }

// Path returns the buffer file's path.
func (q *Queue) Path() string { return q.path }

// Close stops the committer after its current transaction and closes the
// file. Pending Appends not yet taken into a transaction return ErrClosed.
// It is safe to call twice.
func (q *Queue) Close() error {
	q.closeOnce.Do(func() {
		q.closed.Store(true)
		close(q.quit)
		<-q.done
		if err := q.db.Close(); err != nil {
			q.closeErr = fmt.Errorf("close buffer %s: %w", q.path, err)
		}
	})
	return q.closeErr
}

// LastSeq is the sequence number of the last record appended (0: none
// ever): a record appended later has a higher one.
func (q *Queue) LastSeq() uint64 {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.st.seq
}

// Stats returns the in-memory statistics (no scan).
func (q *Queue) Stats() Stats {
	q.mu.Lock()
	st := q.st
	q.mu.Unlock()
	s := Stats{
		Lanes:           st.lanes,
		DeadLetters:     st.dead,
		DeadLetterBytes: st.deadBytes,
		MetaBytes:       st.metaBytes,
		UsedBytes:       st.used(),
		LimitBytes:      q.budget.Load(),
		DiskFullSince:   q.DiskFullSince(),
		Merged:          st.merged,
		DeadDropped:     st.deadDropped,
		DamagedDropped:  st.damagedDropped,
		Shrinks:         q.shrinks.Load(),
		Restored:        q.restored.Load(),
	}
	s.ReserveLentSince = q.ReserveLentSince()
	for _, l := range st.lanes {
		s.Pending += l.Pending
		s.Bytes += l.Bytes
		s.Dropped += l.Dropped
		if !l.Oldest.IsZero() && (s.Oldest.IsZero() || l.Oldest.Before(s.Oldest)) {
			s.Oldest = l.Oldest
		}
	}
	if fi, err := os.Stat(q.path); err == nil {
		s.FileBytes = fi.Size()
	}
	return s
}

func (q *Queue) view(fn func(tx *bolt.Tx) error) error {
	if q.closed.Load() {
		return ErrClosed
	}
	q.dbMu.RLock()
	defer q.dbMu.RUnlock()
	// Under the lock: a shrink whose reopen failed breaks the queue before
	// it lets readers in, so they get why, not bbolt's closed database.
	if err := q.Err(); err != nil {
		return err
	}
	err := q.db.View(fn)
	if errors.Is(err, berrors.ErrDatabaseNotOpen) {
		return ErrClosed
	}
	return err
}

// Read returns up to limit pending records of one lane with Seq > after, in
// Seq order. Records returned are treated as in flight: quota merging leaves
// them alone (an ack of a merged record would delete counts that were not
// delivered) until they are acked or Release is called.
func (q *Queue) Read(lane Lane, after uint64, limit int) ([]Record, error) {
	return q.read(lane, after, limit, true)
}

// Peek is Read for inspection (status, dead-letter tools): it does not mark
// the records as in flight, so they must not be acked on its word.
func (q *Queue) Peek(lane Lane, after uint64, limit int) ([]Record, error) {
	return q.read(lane, after, limit, false)
}

// Claim marks recs, handed out by Peek, as in flight, as Read would have:
// from then on the quota's drops (of events) and Rekey leave them alone. It
// returns those of recs no longer pending (dropped, acked or dead-lettered
// since they were peeked), which must not be forwarded. A reader that
// forwards a few of many records it looked at claims only those: outside
// the counts lane exactly those, so the quota may still drop the oldest of
// the others while it forwards; in the counts lane, whose merges fold runs
// of records, everything up to the newest of them, as Read does. Release
// forgets the claims with the marks.
func (q *Queue) Claim(recs []Record) (gone []Record, _ error) {
	for i, r := range recs {
		if r.Lane >= NumLanes {
			return nil, fmt.Errorf("claim: record %d: unknown lane %d", i, r.Lane)
		}
	}
	if len(recs) == 0 {
		return nil, nil
	}
	// Held while the marks go up and the records are looked for: a drop
	// or merge (which takes markMu to read the marks) is either committed
	// before, and its records found gone, or waits until after, and spares them.
	var seqs [NumLanes][]uint64
	for _, r := range recs {
		seqs[r.Lane] = append(seqs[r.Lane], r.Seq)
	}
	q.markMu.RLock()
	defer q.markMu.RUnlock()
	q.claimMu.Lock()
	for _, r := range recs {
		if r.Lane == LaneCounts {
			q.raiseMarks([]Record{r})
			continue
		}
		if q.claimed[r.Lane] == nil {
			q.claimed[r.Lane] = map[uint64]struct{}{}
		}
		q.claimed[r.Lane][r.Seq] = struct{}{}
	}
	q.claimMu.Unlock()
	there := map[uint64]bool{}
	err := q.view(func(tx *bolt.Tx) error {
		for l, ss := range seqs {
			b := tx.Bucket(bucketLanes[l])
			if len(ss) == 0 || b == nil {
				continue
			}
			slices.Sort(ss)
			// One walk over the range (a lookup each would parse a
			// segment each).
			want, last := map[uint64]bool{}, ss[len(ss)-1]
			for _, s := range ss {
				want[s] = true
			}
			err := walkLane(b, ss[0]-1, func(r laneRec) error {
				if r.seq > last {
					return errStop
				}
				if want[r.seq] && r.bad == nil {
					there[r.seq] = true
				}
				return nil
			})
			if err != nil && !errors.Is(err, errStop) {
				return err
			}
		}
		return nil
	})
	for _, r := range recs {
		if !there[r.Seq] {
			gone = append(gone, r)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("claim: %w", err)
	}
	return gone, nil
}

// Release declares that no record handed out by Read or Next so far will be
// acked before it is read again (call it when a forwarding round is given
// up, e.g. Odoo is unreachable), so quota merging may fold them again.
func (q *Queue) Release() {
	q.markMu.Lock()
	defer q.markMu.Unlock()
	for l := range q.readMark {
		q.readMark[l].Store(0)
	}
	q.claimMu.Lock()
	q.claimed = [NumLanes]map[uint64]struct{}{}
	q.claimMu.Unlock()
}

// inFlight reports whether a record of lane is handed out to a reader: at
// or below the lane's read mark, or claimed. Called by a transaction that
// holds markMu (heldMark), so neither moves meanwhile.
func (q *Queue) inFlight(lane Lane, mark, seq uint64) bool {
	if seq <= mark {
		return true
	}
	q.claimMu.Lock()
	defer q.claimMu.Unlock()
	_, ok := q.claimed[lane][seq]
	return ok
}

func (q *Queue) read(lane Lane, after uint64, limit int, mark bool) ([]Record, error) {
	if lane >= NumLanes {
		return nil, fmt.Errorf("read: unknown lane %d", lane)
	}
	return q.readRepaired(func() ([]Record, error) { return q.readOnce(lane, after, limit, mark) }, lane)
}

// readRepaired runs read, and once more after setting aside the damage of
// the lanes (none named: all) when read met some — also when another
// reader's repair had set it aside meanwhile.
func (q *Queue) readRepaired(read func() ([]Record, error), lanes ...Lane) ([]Record, error) {
	out, err := read()
	if errors.Is(err, ErrCorruptRecord) && q.repair(lanes...) {
		out, err = read()
	}
	return out, err
}

// repair sets aside the damaged entries of the lanes (none named: all),
// met by a read while the file is open (setAsideDamaged); true when that
// was done (also when another reader's repair had done it).
func (q *Queue) repair(lanes ...Lane) bool {
	if q.opts.ReadOnly {
		return false
	}
	if len(lanes) == 0 {
		for l := range Lane(NumLanes) {
			lanes = append(lanes, l)
		}
	}
	fn := func(t *txn) error {
		for _, l := range lanes {
			if _, err := t.setAsideDamaged(l); err != nil {
				return err
			}
		}
		return nil
	}
	if err := q.submit(context.Background(), &request{fn: fn}); err != nil {
		q.log.Error("buffer: setting damaged records aside failed", "err", err)
		return false
	}
	return true
}

func (q *Queue) readOnce(lane Lane, after uint64, limit int, mark bool) ([]Record, error) {
	q.markMu.RLock()
	defer q.markMu.RUnlock()
	var out []Record
	err := q.view(func(tx *bolt.Tx) error {
		var err error
		out, err = readLane(tx, lane, after, limit, out)
		q.dropReadPages(tx, out)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", lane, err)
	}
	if mark {
		q.raiseMarks(out)
	}
	return out, nil
}

// Next returns up to limit pending records, highest-priority lane first, Seq
// order within a lane. Without an Ack in between it returns the same records.
// Like Read, it marks them as in flight.
func (q *Queue) Next(limit int) ([]Record, error) {
	return q.readRepaired(func() ([]Record, error) { return q.nextOnce(limit) })
}

func (q *Queue) nextOnce(limit int) ([]Record, error) {
	q.markMu.RLock()
	defer q.markMu.RUnlock()
	var out []Record
	err := q.view(func(tx *bolt.Tx) error {
		for l := range Lane(NumLanes) {
			if len(out) >= limit {
				break
			}
			var err error
			out, err = readLane(tx, l, 0, limit-len(out), out)
			if err != nil {
				return err
			}
		}
		q.dropReadPages(tx, out)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("next: %w", err)
	}
	q.raiseMarks(out)
	return out, nil
}

func (q *Queue) raiseMarks(recs []Record) {
	if q.opts.ReadOnly {
		return
	}
	for _, r := range recs {
		m := &q.readMark[r.Lane]
		for {
			cur := m.Load()
			if r.Seq <= cur || m.CompareAndSwap(cur, r.Seq) {
				break
			}
		}
	}
}

// dropReadPagesEvery is how many record bytes the readers take out of the
// mapping before its pages are handed back to the page cache: draining a
// backlog of any size then keeps the mapped part of the process's resident
// memory near this, for every reader, not only those that call
// DropMappedPages.
const dropReadPagesEvery = 4 << 20

// dropReadPages counts the bytes of recs, just read inside tx, and gives
// the mapping's pages back once readers took dropReadPagesEvery bytes.
func (q *Queue) dropReadPages(tx *bolt.Tx, recs []Record) {
	n := int64(0)
	for _, r := range recs {
		n += int64(len(r.Data) + len(r.Key) + recordOverhead)
	}
	if q.unmapped.Add(n) < dropReadPagesEvery {
		return
	}
	q.unmapped.Store(0)
	dropTxPages(tx)
}

func readLane(tx *bolt.Tx, lane Lane, after uint64, limit int, out []Record) ([]Record, error) {
	if limit <= 0 {
		return out, nil
	}
	b := tx.Bucket(bucketLanes[lane])
	if b == nil {
		return out, nil
	}
	n := 0
	err := walkLane(b, after, func(r laneRec) error {
		if r.bad != nil {
			return fmt.Errorf("segment %d: %w", r.seq, r.bad)
		}
		rec, err := decodeRecord(r.v)
		if err != nil {
			return fmt.Errorf("seq %d: %w", r.seq, err)
		}
		out = append(out, rec)
		if n++; n >= limit {
			return errStop
		}
		return nil
	})
	return out, err
}

// Meta returns the value of a meta entry, or nil, nil when absent.
func (q *Queue) Meta(key string) ([]byte, error) {
	var v []byte
	err := q.view(func(tx *bolt.Tx) error {
		if b := tx.Bucket(bucketMeta); b != nil {
			if got := b.Get([]byte(key)); got != nil {
				v = append([]byte{}, got...)
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("meta %q: %w", key, err)
	}
	return v, nil
}

// MetaPrefix calls fn for every meta entry whose key starts with prefix, in
// key order, inside one read transaction; value is only valid during the
// call, and fn must not call the Queue's write methods (a commit that grows
// the file waits for open read transactions).
func (q *Queue) MetaPrefix(prefix string, fn func(key string, value []byte) error) error {
	err := q.view(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketMeta)
		if b == nil {
			return nil
		}
		c := b.Cursor()
		p := []byte(prefix)
		for k, v := c.Seek(p); k != nil && len(k) >= len(p) && string(k[:len(p)]) == prefix; k, v = c.Next() {
			if err := fn(string(k), v); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("meta prefix %q: %w", prefix, err)
	}
	return nil
}

// DeadLetterPage lists up to limit dead letters with an ID above after, in
// ID order: a long list is read a page at a time.
func (q *Queue) DeadLetterPage(after uint64, limit int) ([]DeadLetter, error) {
	var out []DeadLetter
	err := q.view(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketDead)
		if b == nil {
			return nil
		}
		c := b.Cursor()
		for k, v := c.Seek(seqKey(after + 1)); k != nil && len(out) < limit; k, v = c.Next() {
			out = append(out, deadLetterAt(beUint64(k), v))
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("dead letters: %w", err)
	}
	return out, nil
}

// LatestDeadLetter returns the newest dead letter; ok is false when there
// is none. It reads no transaction (the queue keeps it): status asks for it
// on every call, and a read waits behind a commit whose meta page write
// stalls on the disk.
func (q *Queue) LatestDeadLetter() (d DeadLetter, ok bool, err error) {
	if q.closed.Load() {
		return d, false, ErrClosed
	}
	if err := q.Err(); err != nil {
		return d, false, err
	}
	q.mu.Lock()
	l := q.st.latestDead
	q.mu.Unlock()
	if l == nil {
		return d, false, nil
	}
	d = *l
	d.Record.Data = bytes.Clone(l.Record.Data) // the caller's to change
	return d, true, nil
}

// DeadLetters lists the dead letters in ID order.
func (q *Queue) DeadLetters() ([]DeadLetter, error) {
	return q.DeadLetterPage(0, math.MaxInt)
}
