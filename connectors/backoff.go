package connectors

import (
	"math/rand/v2"
	"time"

	"github.com/cenkalti/backoff/v4"
)

// Backoff is exponential backoff with full jitter, the one retry schedule
// of every reconnect loop in plantedge (OPC UA, MQTT, Odoo): the ceiling
// doubles from min up to max, and each wait is uniform in [0, ceiling], so
// agents that lost the same server don't come back in step. There is no
// maximum elapsed time: a plant-edge agent never gives up. It implements
// cenkalti/backoff's BackOff interface and is not safe for concurrent use.
type Backoff struct {
	exp *backoff.ExponentialBackOff
}

// LoginRetry is the least wait after a server refused the login (a wrong
// user name or password, an account locked or removed), whatever the
// backoff says: a refused login is not retried at the pace of a network
// error, as servers, PLCs and brokers lock accounts (and fail2ban bans
// addresses) after a few failed logins. A source the agent builds anew
// with another password (a reload) tries at once.
const LoginRetry = time.Minute

// NewBackoff returns a Backoff from min to max.
func NewBackoff(min, max time.Duration) *Backoff {
	if max < min {
		max = min
	}
	return &Backoff{exp: backoff.NewExponentialBackOff(
		backoff.WithInitialInterval(min),
		backoff.WithMaxInterval(max),
		backoff.WithMultiplier(2),
		backoff.WithRandomizationFactor(0), // the jitter is applied in full below
		backoff.WithMaxElapsedTime(0),
	)}
}

// SetMax moves the ceiling's cap to max (a reload): a lower cap starts
// the schedule again from min, so no wait above it comes after.
func (b *Backoff) SetMax(max time.Duration) {
	if max < b.exp.InitialInterval {
		max = b.exp.InitialInterval
	}
	lower := max < b.exp.MaxInterval
	b.exp.MaxInterval = max
	if lower {
		b.exp.Reset()
	}
}

// NextBackOff returns the next wait.
func (b *Backoff) NextBackOff() time.Duration {
	ceil := b.exp.NextBackOff()
	if ceil <= 0 {
		return 0
	}
	return rand.N(ceil + 1)
}

// Reset starts the schedule again at min (after a success).
func (b *Backoff) Reset() { b.exp.Reset() }
