package opcuatest

import (
	"reflect"
	"testing"
	"time"
	"unsafe"

	"github.com/gopcua/opcua/server"
	"github.com/gopcua/opcua/ua"
)

// watch lists a subscription made by hand, its channel of size size,
// with a monitored item on node, on s's server, marked running as gopcua's
// CreateSubscription marks a live one or not, as its delete marks one whose
// loop has ended; its cleanup takes them off again.
func watch(t *testing.T, s *Server, id uint32, node *ua.NodeID, size int, live bool) *server.Subscription {
	t.Helper()
	sub := &server.Subscription{ID: id, NotifyChannel: make(chan *ua.MonitoredItemNotification, size)}
	f := reflect.ValueOf(sub).Elem().FieldByName("running")
	reflect.NewAt(f.Type(), unsafe.Pointer(f.UnsafeAddr())).Elem().SetBool(live)
	if running(sub) != live {
		t.Fatalf("running reads %v from a subscription marked %v: gopcua's mark moved", running(sub), live)
	}
	ss, mis := s.srv.SubscriptionService, s.srv.MonitoredItemService
	ss.Mu.Lock()
	ss.Subs[sub.ID] = sub
	ss.Mu.Unlock()
	item := &server.MonitoredItem{ID: id + 1, Sub: sub, Req: &ua.MonitoredItemCreateRequest{
		ItemToMonitor:       &ua.ReadValueID{NodeID: node, AttributeID: ua.AttributeIDValue},
		RequestedParameters: &ua.MonitoringParameters{ClientHandle: 1},
	}}
	mis.Mu.Lock()
	mis.Items[item.ID] = item
	mis.Nodes[node.String()] = append(mis.Nodes[node.String()], item)
	mis.Subs[sub.ID] = append(mis.Subs[sub.ID], item)
	mis.Mu.Unlock()
	t.Cleanup(func() {
		for {
			select {
			case <-sub.NotifyChannel:
				continue
			default:
			}
			break
		}
		ss.Mu.Lock()
		delete(ss.Subs, sub.ID)
		ss.Mu.Unlock()
		mis.DeleteSub(sub.ID)
	})
	return sub
}

// notified calls ChangeNotification for node n times in the background and
// closes the channel it returns when the last call has returned.
func notified(s *Server, node *ua.NodeID, n int) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		for range n {
			s.srv.ChangeNotification(node)
		}
		close(done)
	}()
	return done
}

// A subscription whose loop has ended (nothing reads its channel; gopcua's
// delete marked it not running) and whose channel is full holds the
// server's ChangeNotification for good — with the monitored items' lock,
// which the subscription's own delete then waits for: the deadlock gopcua
// v0.8.0 ran into in CI. Unstick reads the full channel off, and the
// notification completes.
func TestUnstickFreesANotificationToADeadSubscription(t *testing.T) {
	_, s := startPress(t)
	node := ua.MustParseNodeID(s.NodeID("Press.Count"))
	dead := watch(t, s, 4242, node, 3, false)
	for range cap(dead.NotifyChannel) {
		dead.NotifyChannel <- &ua.MonitoredItemNotification{}
	}
	select {
	case <-notified(s, node, 1): // blocks on the full channel until read off
	case <-time.After(10 * time.Second):
		t.Fatal("a notification to a subscription nobody reads still blocks after 10 s")
	}
}

// A live subscription's loop does not read its channel while it sends a
// publish response, which on a loaded machine takes long enough for a
// burst of changes to keep the channel full at two looks and more. Unstick
// leaves it: here the reader waits 2 s (eight looks) with the channel
// full, then gets every notification. Before, Unstick read the channel off
// at the second look (the reader got 0 of 12).
func TestUnstickLeavesALiveSubscriptionsNotifications(t *testing.T) {
	_, s := startPress(t)
	node := ua.MustParseNodeID(s.NodeID("Press.Count"))
	live := watch(t, s, 4244, node, 3, true)
	const sent = 12
	done := notified(s, node, sent)
	for deadline := time.Now().Add(10 * time.Second); len(live.NotifyChannel) < cap(live.NotifyChannel); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the channel not full after 10 s")
		}
	}
	time.Sleep(2 * time.Second) // the loop sending a publish response
	got := 0
	for end := time.After(time.Minute); ; {
		select {
		case <-live.NotifyChannel:
			got++
			continue
		case <-end:
			t.Fatalf("the notifications not sent after a minute (%d of %d read)", got, sent)
		case <-done:
		}
		break
	}
	for len(live.NotifyChannel) > 0 { // sent before done closed
		<-live.NotifyChannel
		got++
	}
	if got != sent {
		t.Errorf("the live subscription got %d of %d notifications", got, sent)
	}
}

// A subscription the server still lists as live whose loop never reads its
// channel again (blocked for good sending on a link that takes nothing) is
// read off after liveFor, and the notification completes.
func TestUnstickFreesANotificationToALoopBlockedForGood(t *testing.T) {
	_, s := startPress(t)
	node := ua.MustParseNodeID(s.NodeID("Press.Count"))
	stuck := watch(t, s, 4246, node, 3, true)
	for range cap(stuck.NotifyChannel) {
		stuck.NotifyChannel <- &ua.MonitoredItemNotification{}
	}
	select {
	case <-notified(s, node, 1):
	case <-time.After(liveFor + time.Minute):
		t.Fatalf("a notification to a loop that never reads still blocks after %v", liveFor+time.Minute)
	}
}

// A loop that ended waits, not yet marked, for the subscriptions' lock
// that another subscription's delete holds while it waits for the items'
// lock, which ChangeNotification holds, blocked on the full channel. With
// the subscriptions' lock held all along, the channel is read off after
// waitingFor, and the notification completes.
func TestUnstickFreesANotificationWhileADeleteWaits(t *testing.T) {
	_, s := startPress(t)
	node := ua.MustParseNodeID(s.NodeID("Press.Count"))
	ended := watch(t, s, 4248, node, 3, true)
	// Unstick lists the subscriptions while their lock is free: once it
	// has read off the channel of one marked deleted, listed after this one,
	// it knows both.
	probe := watch(t, s, 4250, node, 3, false)
	for range cap(probe.NotifyChannel) {
		probe.NotifyChannel <- &ua.MonitoredItemNotification{}
	}
	for deadline := time.Now().Add(time.Minute); len(probe.NotifyChannel) > 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("a deleted subscription's full channel not read off after a minute")
		}
	}
	// Filled now, so that only waitingFor's rule reads it off in time.
	for range cap(ended.NotifyChannel) {
		ended.NotifyChannel <- &ua.MonitoredItemNotification{}
	}
	ss := s.srv.SubscriptionService
	ss.Mu.Lock() // the other delete
	done := notified(s, node, 1)
	select {
	case <-done:
	case <-time.After(liveFor - time.Second):
		// Only liveFor's rule would have read it off.
		ss.Mu.Unlock()
		t.Fatalf("a notification blocked while a delete waits still blocks after %v (waitingFor %v)", liveFor-time.Second, waitingFor)
	}
	ss.Mu.Unlock()
}
