package opcuatest

import (
	"reflect"
	"time"

	"github.com/gopcua/opcua/server"
	"github.com/gopcua/opcua/ua"
)

// Unstick keeps gopcua v0.8.0's server from deadlocking until stop is
// closed. Its ChangeNotification holds the monitored items' lock while it
// sends on each subscription's buffered NotifyChannel (100 places); a
// subscription whose loop has ended (its session gone, a send failed)
// stops reading that channel and then deletes its items under the same
// lock, holding the subscriptions' lock meanwhile: once the channel has
// filled, the send and the delete wait for each other for good, and with
// them every later notification (seen once in CI, in a storm of 60
// dropped connections: the test hung until its timeout). What such a
// channel holds is read off, so the send completes and the delete goes on.
//
// A full channel alone does not tell a loop that ended from a live one: a
// live loop does not read its channel while it sends a publish response,
// and on a loaded machine a burst of changes (1,500 nodes set at once)
// kept it full at two looks 250 ms apart; reading it off then threw away
// values the server would have published (TestMessagesLongerThanAChunk
// under -race on one core at nice 10 beside a busy loop: 1,399 of 1,500
// changed values in 1 of 9 runs).
// So a channel full at every look is read off
//   - at the second look, when the subscription is deleted: gone from the
//     server's list, or marked not running by gopcua's delete, which marks
//     it before it waits for the items' lock;
//   - after waitingFor, when the subscriptions' lock was held at every look
//     all along: a loop that ended waits for that lock, held by another
//     subscription's delete, which waits for the items' lock;
//   - after liveFor otherwise: a loop blocked for good sending on a link
//     that takes nothing (its client gone; its values are lost with it).
//
// A live loop that is merely slow reads its channel again long before
// liveFor, and loses nothing (the same test, 9 of 9 runs: a live channel
// full at two looks once, never at four).
func Unstick(srv *server.Server, stop <-chan struct{}) {
	// Each subscription's channel, at how many looks in a row it was full
	// (0: not full at the last) and since when, and whether the
	// subscription was gone from the server's list at the last look.
	type watched struct {
		ch    chan *ua.MonitoredItemNotification
		since time.Time
		looks int
		gone  bool
	}
	known := map[*server.Subscription]*watched{}
	var heldSince time.Time // the subscriptions' lock held at every look since; zero: free at the last
	t := time.NewTicker(look)
	defer t.Stop()
	for {
		var now time.Time
		select {
		case <-stop:
			return
		case now = <-t.C:
		}
		ss := srv.SubscriptionService
		if ss.Mu.TryLock() {
			heldSince = time.Time{}
			for _, w := range known {
				w.gone = true
			}
			for _, sub := range ss.Subs {
				if w := known[sub]; w != nil {
					w.gone = false
				} else {
					known[sub] = &watched{ch: sub.NotifyChannel}
				}
			}
			for sub, w := range known {
				if w.gone && len(w.ch) == 0 {
					delete(known, sub) // nothing left to read off
				}
			}
			ss.Mu.Unlock()
		} else if heldSince.IsZero() {
			heldSince = now
		}
		for sub, w := range known {
			if len(w.ch) < cap(w.ch) {
				w.looks = 0
				continue
			}
			if w.looks == 0 {
				w.since = now
			}
			w.looks++
			if w.looks < 2 {
				continue
			}
			full := now.Sub(w.since)
			held := !heldSince.IsZero() && now.Sub(heldSince) >= waitingFor
			switch {
			case w.gone || !running(sub):
			case held && full >= waitingFor:
			case full >= liveFor:
			default:
				continue
			}
			for drained := false; !drained; {
				select {
				case <-w.ch:
				default:
					drained = true
				}
			}
			w.looks = 0
		}
	}
}

const (
	// look is the time between two looks at the channels.
	look = 250 * time.Millisecond
	// waitingFor is how long a channel stays full, the subscriptions'
	// lock held at every look, before it is read off.
	waitingFor = 2 * time.Second
	// liveFor is how long the channel of a subscription the server has
	// not deleted stays full before it is read off.
	liveFor = 10 * time.Second
)

// running reports whether gopcua v0.8.0's server still marks sub running:
// CreateSubscription sets the unexported flag before it lists the
// subscription, DeleteSubscription clears it under sub.Mu before it waits
// for the items' lock. While another goroutine holds sub.Mu (the delete,
// a moment) and if gopcua no longer has the flag, it reports true: the
// loop then counts as live, its channel read off after liveFor.
func running(sub *server.Subscription) bool {
	f := reflect.ValueOf(sub).Elem().FieldByName("running")
	if !f.IsValid() || f.Kind() != reflect.Bool || !sub.Mu.TryLock() {
		return true
	}
	defer sub.Mu.Unlock()
	return f.Bool()
}
