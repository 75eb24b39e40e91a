package buffer

import (
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// A full disk (ENOSPC) is met like a full quota: the file is held
// at what it uses now, so the quota's order applies — telemetry dropped,
// counts merged, then the oldest events — and new values keep being
// accepted into the pages the file already has. Without this, appends would
// only fail, and whatever the sources cannot queue (an OPC UA state that
// flips back, an MQTT broker's bounded queue) would be lost while Odoo is
// away. Once the file system has room again the budget goes back up.

// diskLowerEvery is the least time between two lowerings of the budget for
// a full disk: pages the file holds may not fit the next commit at once,
// and a run of failing commits must not each take another tenth.
const diskLowerEvery = time.Minute

// diskLowerMinUsed: below this, a full disk is not the buffer's doing and
// dropping its records would gain nothing; appends fail (backpressure).
const diskLowerMinUsed = 256 << 10

// diskRoomUnlimited: with no max_bytes, the budget is lifted again once
// the file system has this much room.
const diskRoomUnlimited = 256 << 20

// diskFullErr: the file system is full. A user quota (EDQUOT) is not
// handled so: statfs does not see it, so the room coming back could not be
// told; such appends fail (backpressure) until the quota allows them.
func diskFullErr(err error) bool {
	return errors.Is(err, syscall.ENOSPC)
}

// diskReserve is the size of the reserve file kept next to the buffer
// file (<path>.reserve): when the disk is full, removing it gives the
// delete that holds the buffer to its file the blocks it must write (new
// copies of the pages it changes, the free list). Without it, a file that
// had no free page when the disk filled (it was growing) could not be held
// to its size: every append would fail until space came back. It is given
// up as well for acknowledgements failing so (lendReserve).
const diskReserve = 1 << 20

// reserveFor is the reserve file's size for a MaxBytes: diskReserve, or an
// eighth of a smaller quota (whole pages), which counts it: max_bytes is
// the buffer's disk quota, the reserve file's bytes with the file's (the
// spec audit: with max_bytes 1MiB the data_dir held 1.7 MB). A delete
// holding a file of a few MiB to its size writes far less than that.
func reserveFor(maxBytes int64) int64 {
	if maxBytes == 0 {
		return diskReserve
	}
	return min(diskReserve, maxBytes/8&^4095)
}

func (q *Queue) reservePath() string { return q.path + ".reserve" }

// reserveThere reports whether the reserve file is there, whole.
func (q *Queue) reserveThere() bool {
	fi, err := os.Stat(q.reservePath())
	return err == nil && fi.Size() == q.reserve
}

// makeReserve writes the reserve file if it is not there (at Open, and once
// the disk has room again); without room it stays missing, and the error
// says why.
func (q *Queue) makeReserve() error {
	if q.opts.Offline || q.reserveThere() {
		return nil
	}
	p := q.reservePath()
	_ = os.Remove(p) // left short by a crash while it was written
	f, err := os.OpenFile(p, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(make([]byte, q.reserve))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = os.Remove(p)
		return err
	}
	q.reserveReturned()
	return nil
}

// reserveAtOpen writes the reserve file at Open. On a disk too full for it
// (the last run lent it, or the disk filled while plantedge was stopped),
// a small buffer (under diskLowerMinUsed: never held to its file, see
// lowerBudgetForDisk) starts as if it had lent it (lendReserve): appends
// may not grow the file, so the room the disk has is left to the
// acknowledgements. Otherwise the appends took the disk's last bytes and,
// with no reserve to give up, every acknowledgement failed: its backlog
// stayed pending with Odoo online until someone freed the disk. A larger
// one is held to its file at the first append the disk refuses, which
// frees pages for the acknowledgements; lent, it would hold itself to its
// file before using the room the disk has.
func (q *Queue) reserveAtOpen(st *state) {
	if err := q.makeReserve(); err != nil && diskFullErr(err) && st.used() < diskLowerMinUsed {
		q.reserveLent.Store(time.Now().UnixNano())
		q.log.Warn("buffer: the disk is full; could not write the buffer's reserve file: appends wait, without growing the file, until the disk has room for the reserve again, so that acknowledgements can be written; free space on the disk",
			"path", q.reservePath(), "bytes", q.reserve)
	}
}

// reserveReturned ends a lending of the reserve (lendReserve) once the
// reserve file is there again.
func (q *Queue) reserveReturned() {
	if since := q.reserveLent.Swap(0); since != 0 {
		q.log.Info("buffer: the disk has room again; the buffer's reserve file is back and appends may grow the file again",
			"path", q.reservePath(), "lent_for", time.Since(time.Unix(0, since)).Round(time.Second))
	}
}

// lendReserve removes the reserve file so that acknowledgements (and the
// other writes that are not appends) failing for a full disk get its
// blocks: the audit saw a small buffer (under diskLowerMinUsed, so never
// held to its file) on a disk something else filled keep its whole backlog
// pending with Odoo online, every acknowledgement failing with ENOSPC and
// the reserve kept for such deletes unused next to the file. An
// acknowledgement must write new copies of the pages it changes, and the
// agent's carry the work orders' states and the bookings kept for rebook
// with them, so it may need pages the file does not have; the appends that
// failed meanwhile had taken the disk's last bytes. Until the reserve is
// back (makeReserve), appends may not grow the file (runTxCapped): its
// room is for the acknowledgements, and an append that took it would
// leave the next one failing again. Reports whether the reserve is lent now.
// Committer only.
func (q *Queue) lendReserve() bool {
	if q.reserveLent.Load() != 0 {
		return true
	}
	if err := os.Remove(q.reservePath()); err != nil {
		return false // not there: nothing to give
	}
	q.reserveLent.Store(time.Now().UnixNano())
	q.log.Warn("buffer: the disk is full; removed the buffer's reserve file so that acknowledgements can be written: appends wait, without growing the file, until the disk has room for the reserve again; free space on the disk",
		"path", q.reservePath(), "bytes", q.reserve)
	return true
}

// ReserveLentSince is when the reserve file was last given up for the
// writes that are not appends on a full disk (see lendReserve); zero when
// it is not given up so.
func (q *Queue) ReserveLentSince() time.Time {
	if n := q.reserveLent.Load(); n != 0 {
		return time.Unix(0, n)
	}
	return time.Time{}
}

// keepReserve writes the reserve file again when it is missing while the
// buffer is not held for a full disk (a lowering that removed it and still
// failed, someone deleting it) and the disk has room for it with some to
// spare: never the last free bytes. A reserve lent for acknowledgements
// (lendReserve) comes back so even while the buffer is held for a full
// disk: until it does, appends may not grow the file, and a lowering that
// followed kept the reserve away until the budget was restored (half the
// disk free, or max_bytes' worth): every append that needed the file to
// grow took another tenth of the buffer, with megabytes free on the disk.
// Committer only (every fileCheckEvery).
func (q *Queue) keepReserve() {
	if q.opts.ReadOnly || q.diskFull.Load() != 0 && q.reserveLent.Load() == 0 {
		return
	}
	if q.reserveThere() {
		q.reserveReturned() // (someone put it back: the review)
		return
	}
	if avail, ok := freeBytes(filepath.Dir(q.path)); ok && avail >= 4*q.reserve {
		_ = q.makeReserve() // (without room: tried at the next check)
	}
}

// reserveBack writes the reserve file again, if the disk has room for it
// (keepReserve), after an append was refused growth because it is lent
// (errNoGrowth), and reports whether it is back. Without it, the disk could
// have had room for up to fileCheckEvery while such appends took the
// budget down for a full disk, a tenth of the buffer dropped each time.
// Committer only.
func (q *Queue) reserveBack() bool {
	q.keepReserve()
	return q.reserveLent.Load() == 0
}

// lowerBudgetForDisk holds the file at what it uses now after a commit
// failed for a full disk, and frees a tenth of that in a delete-only
// transaction. It reports whether the budget was lowered; when the delete
// fails too (no page of the file is free), the budget stays as it was and
// appends fail until space comes back.
func (q *Queue) lowerBudgetForDisk(cur *state) bool {
	now := time.Now()
	old := q.budget.Load()
	// Once a minute — or at once when the budget was raised since the
	// last lowering (the disk had room, and has filled again).
	if last := q.diskLowered.Load(); last != 0 && now.Sub(time.Unix(0, last)) < q.opts.diskLowerEvery &&
		(old == 0 || old <= q.diskLowBudget.Load()) {
		return false
	}
	used := cur.used()
	if used < diskLowerMinUsed {
		return false
	}
	nb := used * 9 / 10
	if old > 0 {
		nb = min(old, used) * 9 / 10
	}
	q.budget.Store(nb)
	q.diskLowered.Store(now.UnixNano())
	if err := os.Remove(q.reservePath()); err == nil {
		q.log.Warn("buffer: the disk is full; removed the buffer's reserve file to make room for holding the buffer to its file",
			"path", q.reservePath(), "bytes", q.reserve)
	}
	if err := q.fitBudget(cur); err != nil {
		q.budget.Store(old)
		q.diskLowBudget.Store(old)
		// Tried again in a twelfth of the interval, not a whole one: the
		// delete found no free page of the file, most often because a read
		// in progress (a status scan, a forwarding round) held the pages
		// the last commit freed; a failed try took nothing.
		q.diskLowered.Store(now.Add(q.opts.diskLowerEvery/12 - q.opts.diskLowerEvery).UnixNano())
		q.log.Error("buffer: the disk is full and no room could be freed in the file yet; appends fail until there is", "err", err,
			"next_try_in", q.opts.diskLowerEvery/12)
		return false
	}
	q.diskLowBudget.Store(nb)
	q.diskFull.CompareAndSwap(0, now.UnixNano())
	q.log.Warn("DISK FULL: the buffer keeps to its current size, as at max_bytes: telemetry dropped, counts merged, then the oldest events; free space on the disk",
		"dir", filepath.Dir(q.path), "old_budget", old, "new_budget", nb, "used", used)
	return true
}

// checkDiskRoom lifts a budget lowered for a full disk as the file system
// gets room again: to what is used plus 3/10 of the free space (the file
// needs about 1/0.6 of its logical bytes, and the disk is shared), until
// that reaches the configured budget — or until half the disk is free: on
// a disk smaller than max_bytes the budget could never reach it, and the
// buffer stayed "full" with the disk empty (the disk probe: DISK FULL for
// minutes with an empty buffer and 23.9 of 24 MB free, and no reserve for
// the next time). The reserve file's room is not the buffer's: until the
// reserve is back, that much of the free space is left out (the probe: a
// lowering removed it, and the buffer then grew into its megabyte and
// took the disk to zero).
func (q *Queue) checkDiskRoom(cur *state) {
	// Not within a minute of a lowering: a disk that fills and frees
	// itself by turns must not flap the budget.
	if q.diskFull.Load() == 0 || time.Since(time.Unix(0, q.diskLowered.Load())) < q.opts.diskLowerEvery {
		return
	}
	conf := q.ceiling.Load() // what max_bytes gives, as shrinkBudget learned it
	avail, total, ok := diskSpace(filepath.Dir(q.path))
	if !ok {
		q.restoreBudget(conf, -1) // cannot tell: try again (a minute after a lowering)
		return
	}
	room := avail
	if !q.reserveThere() {
		room = max(0, avail-q.reserve)
	}
	nb := cur.used() + room*3/10
	switch {
	case conf == 0 && room >= diskRoomUnlimited, conf > 0 && nb >= conf, total > 0 && room >= total/2:
		q.restoreBudget(conf, avail)
	case nb > q.budget.Load():
		q.budget.Store(nb)
	}
}

func (q *Queue) restoreBudget(b, avail int64) {
	q.budget.Store(b)
	_ = q.makeReserve() // back before the buffer says it is not held for a full disk (without room: kept missing, and tried again at the file checks)
	q.diskFull.Store(0)
	q.log.Info("buffer: the disk has room again; the buffer's budget is back to what max_bytes gives", "budget", b, "free_bytes", avail)
}

// DiskFullSince is when a full disk last made the buffer keep to its size
// (see lowerBudgetForDisk); zero when it does not.
func (q *Queue) DiskFullSince() time.Time {
	if n := q.diskFull.Load(); n != 0 {
		return time.Unix(0, n)
	}
	return time.Time{}
}
