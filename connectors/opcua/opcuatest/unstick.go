package opcuatest

import (
	"reflect"
	"time"

	"github.com/gopcua/opcua/server"
	"github.com/gopcua/opcua/ua"
)

// Unstick keeps gopcua v0.8.0's server from deadlocking until stop is
// closed. Its ChangeNotification holds the monitored items' lock while it
// sends on each subscription's buffered NotifyChannel; a subscription whose
// loop has ended (its session gone) stops reading that channel and then
// deletes its items under the same lock, holding the subscriptions' lock
// meanwhile: once the channel has filled, the send and the delete wait for
// each other for good, and with them every later notification (seen once
// in CI, in a storm of 60 dropped connections: the test hung until its
// timeout). What such a channel holds is read off, so the send completes
// and the delete goes on.
//
// Only a channel nobody reads any more: a live subscription's loop does not
// read its channel while it sends a publish response, and on a loaded
// machine that takes long enough for a burst of changes (1,500 nodes set at
// once) to fill it at two looks in a row; reading it off then threw away the
// latest values of about a hundred nodes, which the server had queued and
// would have published (TestMessagesLongerThanAChunk, 1,399 of 1,500 changed
// values in a whole-package run under -race). So a channel full at two looks
// in a row is read off when its subscription is deleted (gone from the
// server's list, or marked not running by the delete that waits); a
// subscription not yet marked — its loop ended, its delete waiting for the
// lock another delete holds — when its channel stayed full at every look
// for stuckFor while the subscriptions' lock was held all along.
func Unstick(srv *server.Server, stop <-chan struct{}) {
	unstick(srv, stop, 250*time.Millisecond, deleted)
}

// stuckFor is how long a channel of a subscription not known deleted must
// stay full, a delete waiting all along, before it is read off.
const stuckFor = 5 * time.Second

// unstick is Unstick looking every every; gone reports whether a
// subscription has been deleted.
func unstick(srv *server.Server, stop <-chan struct{}, every time.Duration, gone func(*server.Subscription) bool) {
	// Each subscription's channel, and at how many looks in a row it was
	// full (and since when).
	type watched struct {
		sub   *server.Subscription
		ch    chan *ua.MonitoredItemNotification
		full  int
		since time.Time
		out   bool // gone from the server's list of subscriptions
	}
	known := map[uint32]*watched{}
	var heldSince time.Time // since when the subscriptions' lock was held at every look; zero when free at the last
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case now := <-t.C:
			ss := srv.SubscriptionService
			if ss.Mu.TryLock() {
				heldSince = time.Time{}
				for id, sub := range ss.Subs {
					if w := known[id]; w == nil || w.ch != sub.NotifyChannel {
						known[id] = &watched{sub: sub, ch: sub.NotifyChannel}
					}
				}
				for id, w := range known {
					if _, ok := ss.Subs[id]; !ok {
						w.out = true
						if len(w.ch) == 0 {
							delete(known, id) // gone, and nothing left to read off
						}
					}
				}
				ss.Mu.Unlock()
			} else if heldSince.IsZero() {
				// Held by a delete that waits (or briefly by a create):
				// look at those known.
				heldSince = now
			}
			for _, w := range known {
				if len(w.ch) < cap(w.ch) {
					w.full = 0
					continue
				}
				if w.full == 0 {
					w.since = now
				}
				w.full++
				if w.full < 2 {
					continue
				}
				stuck := !heldSince.IsZero() && now.Sub(heldSince) >= stuckFor && now.Sub(w.since) >= stuckFor
				if !w.out && !gone(w.sub) && !stuck {
					continue
				}
				for drained := false; !drained; {
					select {
					case <-w.ch:
					default:
						drained = true
					}
				}
				w.full = 0
			}
		}
	}
}

// deleted reports whether gopcua v0.8.0's server has deleted sub: its
// DeleteSubscription clears the unexported running flag under sub.Mu, then
// deletes the items (the wait that deadlocks). A Subscription made by hand
// (never started) counts as deleted; so does one whose flag gopcua no longer
// has (then only a loop that reads no more is unstuck, after stuckFor).
func deleted(sub *server.Subscription) bool {
	if sub == nil {
		return true
	}
	f := reflect.ValueOf(sub).Elem().FieldByName("running")
	if !f.IsValid() || f.Kind() != reflect.Bool {
		return false
	}
	if !sub.Mu.TryLock() { // the delete holds it a moment: look again next time
		return false
	}
	defer sub.Mu.Unlock()
	return !f.Bool()
}
