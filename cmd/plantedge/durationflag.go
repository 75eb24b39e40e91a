package main

import (
	"fmt"
	"math"
	"strconv"
	"time"
)

// secondsOrDuration is a duration flag that also takes a bare number of
// seconds (--timeout 30), as technicians type it: every duration flag is
// one (flush's and browse's --timeout, demo's --duration).
type secondsOrDuration time.Duration

func (d *secondsOrDuration) String() string { return time.Duration(*d).String() }
func (d *secondsOrDuration) Type() string   { return "duration" }

func (d *secondsOrDuration) Set(s string) error {
	if f, err := strconv.ParseFloat(s, 64); err == nil {
		if f < 0 || math.IsInf(f, 0) || math.IsNaN(f) || f > math.MaxInt64/float64(time.Second) {
			return fmt.Errorf("%q is not a number of seconds", s)
		}
		*d = secondsOrDuration(time.Duration(f * float64(time.Second)))
		return nil
	}
	v, err := time.ParseDuration(s)
	if err != nil || v < 0 {
		return fmt.Errorf("%q: want a duration such as 90s or 5m, or a number of seconds", s)
	}
	*d = secondsOrDuration(v)
	return nil
}
