package connectors

import (
	"os"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// bootID names this boot: CLOCK_MONOTONIC counts from it.
var bootID = func() string {
	b, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}()

// monoBase is CLOCK_MONOTONIC when monoStart was taken: from then on the
// boot clock is read off Go's own monotonic clock (the same clock, through
// the vDSO) — no system call per value received.
var monoStart, monoBase, monoOK = func() (time.Time, time.Duration, bool) {
	var ts unix.Timespec
	start := time.Now()
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return start, 0, false
	}
	return start, time.Duration(ts.Nano()), true
}()

func bootClock() (time.Duration, bool) {
	if !monoOK {
		return 0, false
	}
	return monoBase + time.Since(monoStart), true
}
