package agent

import (
	"cmp"
	"context"
	"time"

	"github.com/plantedge/plantedge/agent/mapping"
	"github.com/plantedge/plantedge/connectors"
)

// clockLook is how often watchClock compares the box's wall clock with its
// boot clock.
const clockLook = 10 * time.Second

// clockOffset is this box's wall clock less its boot clock, which nothing
// steps: it moves only when the wall clock is stepped (NTP's slewing
// changes the rate of both alike). ok is false where the boot clock cannot
// be read. seen is the boot clock's reading.
func (a *Agent) clockOffset() (off time.Duration, seen connectors.Seen, ok bool) {
	seen = connectors.SeenNow()
	if seen.Boot == "" {
		return 0, seen, false
	}
	wall := time.Now()
	if a.clockShift != nil {
		wall = wall.Add(a.clockShift())
	}
	return time.Duration(wall.UnixNano()) - seen.Up, seen, true
}

// startClock looks at this box's clock at the start: one that reads a year
// before 2020 is not set (no real-time clock, or its battery flat, and NTP
// not reached yet).
func (a *Agent) startClock() {
	if now := time.Now(); now.Year() < 2020 {
		a.log.Warn("this box's clock is not set (no real-time clock, or its battery is flat, and NTP not reached yet?): values without a source time, and their stops, are dated by it until it is; set it, or have the unit wait for time-sync.target (see docs/config.md: This box's clock)",
			"clock", now.UTC().Format(time.RFC3339))
	}
}

// watchClock looks at this box's clock every clockLook: each step of it by
// more than mapping.BoxStep — NTP setting a box that booted with its clock
// behind, someone setting it by hand — is logged and counted. Values that
// carry no source time are dated by this clock at their receipt, their
// stops' lines too: a stop in progress keeps the length the agent saw
// (mapping.BoxStep), and a line received before the step and booked after
// it is dated in the new clock (clockSince).
func (a *Agent) watchClock(ctx context.Context) {
	last, _, ok := a.clockOffset()
	if !ok {
		return
	}
	every(ctx, cmp.Or(a.clockEvery, clockLook), func() {
		off, _, ok := a.clockOffset()
		if !ok {
			return
		}
		if d := off - last; d > mapping.BoxStep || d < -mapping.BoxStep {
			a.metrics.clockSteps.Inc()
			a.log.Warn("this box's clock was stepped (NTP setting it, or someone by hand): a stop in progress without source times keeps the length the agent saw, and the lines of such stops received before the step in this boot and booked from now on are dated in the new clock (not those booked before, nor lines opened at their stop; see docs/config.md: This box's clock)",
				"by", d.Round(time.Second), "clock", time.Now().UTC().Format(time.RFC3339))
		}
		last = off
	})
}

// clockSince is how far this box's clock was stepped since it dated t, a
// value received at seen (in this boot, the wall clock less the boot clock
// then and now; 0 for another boot, or a difference within BoxStep).
func (a *Agent) clockSince(t time.Time, seen connectors.Seen) time.Duration {
	off, now, ok := a.clockOffset()
	if !ok || now.Boot != seen.Boot || seen.Up <= 0 {
		return 0
	}
	by := off - (time.Duration(t.UnixNano()) - seen.Up)
	if by > mapping.BoxStep || by < -mapping.BoxStep {
		return by
	}
	return 0
}
