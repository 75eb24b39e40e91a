//go:build !linux

package connectors

import "time"

// bootID is empty: the boot clock is read on Linux only.
var bootID = ""

func bootClock() (time.Duration, bool) { return 0, false }
