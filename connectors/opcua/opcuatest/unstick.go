package opcuatest

import (
	"time"

	"github.com/gopcua/opcua/server"
	"github.com/gopcua/opcua/ua"
)

// Unstick keeps gopcua v0.8.0's server from deadlocking until stop is
// closed. Its ChangeNotification holds the monitored items' lock while it
// sends on each subscription's buffered NotifyChannel; a subscription whose
// loop has ended (its session gone) stops reading that channel and then
// deletes its items under the same lock: once the channel has filled, the
// send and the delete wait for each other for good, and with them every
// later notification (seen once in CI, in a storm of 60 dropped
// connections: the test hung until its timeout). A channel found full at
// two looks in a row has no reader; what it holds is read off, so the send
// completes and the delete goes on. A live subscription's loop reads its
// channel at once, so it never stays full.
func Unstick(srv *server.Server, stop <-chan struct{}) {
	// Each subscription's channel, and whether it was full at the last look.
	type watched struct {
		ch   chan *ua.MonitoredItemNotification
		full bool
	}
	known := map[uint32]*watched{}
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		ss := srv.SubscriptionService
		if ss.Mu.TryLock() { // held by a delete that waits: look at those known
			for id, sub := range ss.Subs {
				if w := known[id]; w == nil || w.ch != sub.NotifyChannel {
					known[id] = &watched{ch: sub.NotifyChannel}
				}
			}
			for id, w := range known {
				if _, ok := ss.Subs[id]; !ok && len(w.ch) == 0 {
					delete(known, id) // gone, and nothing left to read off
				}
			}
			ss.Mu.Unlock()
		}
		for _, w := range known {
			if len(w.ch) < cap(w.ch) {
				w.full = false
				continue
			}
			if w.full {
				for drained := false; !drained; {
					select {
					case <-w.ch:
					default:
						drained = true
					}
				}
			}
			w.full = true
		}
	}
}
