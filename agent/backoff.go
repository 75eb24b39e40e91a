package agent

import (
	"math/rand/v2"
	"time"

	"github.com/cenkalti/backoff/v4"
)

// fullJitter turns an exponential backoff into "full jitter" (AWS
// architecture blog): each wait is uniform in [0, ceiling), where the
// ceiling grows exponentially up to the cap. Many agents restarting after
// the same outage then spread their retries instead of arriving together.
type fullJitter struct {
	exp *backoff.ExponentialBackOff
}

// newBackoff returns a full-jitter backoff from base up to max, without a
// maximum elapsed time: the agent never gives up on Odoo.
func newBackoff(base, max time.Duration) *fullJitter {
	e := backoff.NewExponentialBackOff(
		backoff.WithInitialInterval(base),
		backoff.WithMaxInterval(max),
		backoff.WithMultiplier(2),
		backoff.WithRandomizationFactor(0),
		backoff.WithMaxElapsedTime(0),
	)
	return &fullJitter{exp: e}
}

// NextBackOff implements backoff.BackOff.
func (f *fullJitter) NextBackOff() time.Duration {
	ceil := f.exp.NextBackOff()
	if ceil <= 0 {
		return ceil
	}
	return time.Duration(rand.Int64N(int64(ceil))) + time.Millisecond
}

// Reset implements backoff.BackOff.
func (f *fullJitter) Reset() { f.exp.Reset() }
