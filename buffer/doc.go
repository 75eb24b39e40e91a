// Package buffer is plantedge's durable store-and-forward queue: records from
// the plant are committed to a local bbolt file (group commit, fsync) before
// they are acknowledged to their source, and deleted only once Odoo has them.
//
// # Lanes and order
//
// Records live in three lanes read in priority order (events, counts,
// telemetry). Every record gets a global, strictly increasing Seq; within a
// lane records are read in Seq order, so the order of one key (machine) is
// kept within a lane.
//
// # Group commit
//
// One committer goroutine owns all writes. It gathers concurrent Append, Ack,
// PutMeta and dead-letter calls into one bbolt transaction and commits as
// soon as CommitRecords wait, or every caller currently inside a write call
// has joined, or CommitWindow (from the first caller's arrival) has passed.
// Callers return after the fsync'd commit. bbolt's db.Batch is not used: its
// fixed wait makes small batches slow.
//
// # Storage: plain records and segments
//
// A lane is a bbolt bucket keyed by Seq. A commit that brings at least 16 KiB
// of records for a lane stores them as a segment: a nested bucket keyed by
// its first Seq whose one value holds the records back to back (split into
// parts of at most 128 KiB); smaller shares are stored one key per record.
// A segment costs bbolt one contiguous page run instead of a B+tree insert
// and a leaf page per few records, which is what lets group commit approach
// the disk's raw write+fdatasync rate (see BenchmarkIngest). Every record
// keeps its own CRC inside a segment. Acking, dropping or dead-lettering part
// of a segment rewrites the rest (as a smaller segment, or as plain records
// under 16 KiB); quota merges and dead-letter retries first turn the segment
// concerned into plain records. No plain key ever lies inside a segment's
// Seq range, so key order is Seq order. A segment whose framing is damaged
// goes to the dead letters whole, as raw bytes.
//
// # Bytes and the quota
//
// Stats.Bytes and the quota count logical bytes: each stored record's encoded
// size plus 24 bytes of bbolt per-entry overhead (8-byte key, 16-byte leaf
// header), in a segment or not (a segment needs less: 4 bytes per record
// plus at most a partly used last page); dead letters and meta entries are
// counted the same way. The
// promise is about the file: it stays under Options.MaxBytes. bbolt needs
// room beyond the logical bytes (partly filled pages after deletes and
// merges, branch pages, the freelist, pages only reusable after the next
// commit, and its growth step), so the logical budget is 60% of MaxBytes
// minus two growth steps (MaxBytes/16, at most 16 MiB). bbolt's own MaxSize
// is set one growth step below MaxBytes as a hard stop for appends; if it is
// ever hit, the budget is lowered below current use and space is freed — once:
// while reads in progress hold the freed pages, appends wait (ErrFull)
// rather than lowering it again. The step left is the deletes' (acks, dead
// letters, the freeing itself): they may grow the file up to MaxBytes, and
// past it only if even that is not enough (reads in progress holding every
// freed page), so that a full buffer can always drain. Freed pages are
// reused, so the file stays flat in steady state; Compact shrinks it offline.
//
// When an append does not fit, space is freed in this order: oldest
// telemetry; merging consecutive count records of one key with
// Options.Merge; oldest events. Counts are never dropped; incoming telemetry
// never displaces counts or events; if that is not enough Append returns
// ErrFull. Records already handed out by Read or Next are never merged (an
// ack of them must not delete counts that were not delivered). Drops and
// merges are counted (persisted in the file) and logged once per burst.
//
// # Corruption
//
// Open walks every page, checks what bbolt's consistency check does
// (reading the file, not bbolt's mapping: see checkPageGraph) and decodes
// every record (CRC-32C). A damaged file (bad meta pages, truncated, broken
// tree) is renamed to <name>.corrupt-<UTC time> and a fresh buffer is
// started; Recovered reports it. bbolt panics and memory faults during the
// scan of the records are recovered. A single record whose checksum fails
// in an otherwise sound file is moved to the dead letters with its raw
// bytes instead. A locked or unreadable file is an error, not corruption.
// Open's cost grows with the backlog (about 0.3 s for 1,000,000 records,
// see BenchmarkDrain open_ms and BenchmarkOpenLarge).
package buffer
