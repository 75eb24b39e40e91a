package opcuatest

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gopcua/opcua"
	"github.com/gopcua/opcua/server"
	"github.com/gopcua/opcua/ua"
)

// A subscription whose loop has ended (nothing reads its channel) and whose
// channel is full holds the server's ChangeNotification for good — with the
// monitored items' lock, which the subscription's own delete then waits
// for: the deadlock gopcua v0.8.0 ran into in CI. Unstick reads the full
// channel off, and the notification completes.
func TestUnstickFreesANotificationToADeadSubscription(t *testing.T) {
	_, s := startPress(t)
	node := ua.MustParseNodeID(s.NodeID("Press.Count"))
	dead := &server.Subscription{ID: 4242, NotifyChannel: make(chan *ua.MonitoredItemNotification, 3)}
	for range cap(dead.NotifyChannel) {
		dead.NotifyChannel <- &ua.MonitoredItemNotification{}
	}
	ss, mis := s.srv.SubscriptionService, s.srv.MonitoredItemService
	ss.Mu.Lock()
	ss.Subs[dead.ID] = dead
	ss.Mu.Unlock()
	item := &server.MonitoredItem{ID: 4243, Sub: dead, Req: &ua.MonitoredItemCreateRequest{
		ItemToMonitor:       &ua.ReadValueID{NodeID: node, AttributeID: ua.AttributeIDValue},
		RequestedParameters: &ua.MonitoringParameters{ClientHandle: 1},
	}}
	mis.Mu.Lock()
	mis.Items[item.ID] = item
	mis.Nodes[node.String()] = append(mis.Nodes[node.String()], item)
	mis.Subs[dead.ID] = append(mis.Subs[dead.ID], item)
	mis.Mu.Unlock()
	done := make(chan struct{})
	go func() {
		s.srv.ChangeNotification(node) // blocks on the full channel
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("a notification to a subscription nobody reads still blocks after 10 s")
	}
	ss.Mu.Lock()
	delete(ss.Subs, dead.ID)
	ss.Mu.Unlock()
	mis.DeleteSub(dead.ID)
}

// addItem registers a monitored item of node for sub, as gopcua's
// CreateMonitoredItems does, with sub in the server's subscriptions.
func addItem(srv *server.Server, sub *server.Subscription, node *ua.NodeID) {
	ss, mis := srv.SubscriptionService, srv.MonitoredItemService
	ss.Mu.Lock()
	ss.Subs[sub.ID] = sub
	ss.Mu.Unlock()
	item := &server.MonitoredItem{ID: sub.ID + 1, Sub: sub, Req: &ua.MonitoredItemCreateRequest{
		ItemToMonitor:       &ua.ReadValueID{NodeID: node, AttributeID: ua.AttributeIDValue},
		RequestedParameters: &ua.MonitoringParameters{ClientHandle: 1},
	}}
	mis.Mu.Lock()
	mis.Items[item.ID] = item
	mis.Nodes[node.String()] = append(mis.Nodes[node.String()], item)
	mis.Subs[sub.ID] = append(mis.Subs[sub.ID], item)
	mis.Mu.Unlock()
}

// A live subscription's loop does not read its channel while it sends a
// publish response (long on a loaded machine); a burst of changes meanwhile
// fills the channel at look after look, and ChangeNotification waits for
// room until the loop reads again. Unstick leaves that channel alone: every
// change reaches the subscription. (Read off, the channel lost about a
// hundred of 1,500 changed values in TestMessagesLongerThanAChunk.)
func TestUnstickLeavesABusySubscriptionsNotifications(t *testing.T) {
	_, s := startPress(t)
	// Start's own Unstick stops (with the clock): the subscription below is
	// made by hand, and counts as deleted to it.
	s.stopOnce.Do(func() { close(s.stop) })
	srv := s.srv
	node := ua.MustParseNodeID(s.NodeID("Press.Count"))
	busy := &server.Subscription{ID: 4242, NotifyChannel: make(chan *ua.MonitoredItemNotification, 3)}
	addItem(srv, busy, node)
	stop := make(chan struct{})
	defer close(stop)
	var looked atomic.Int32 // looks at the full channel
	go unstick(srv, stop, 10*time.Millisecond, func(*server.Subscription) bool {
		looked.Add(1)
		return false // live: not deleted
	})

	const sent = 20
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range sent {
			srv.ChangeNotification(node)
		}
	}()
	// The loop sends meanwhile: its channel fills, and stays full while
	// Unstick looks at it ten times (or is read off, and all are sent).
	deadline := time.Now().Add(30 * time.Second)
wait:
	for looked.Load() < 10 {
		select {
		case <-done:
			break wait
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("Unstick looked at the full channel %d times in 30 s", looked.Load())
		}
		time.Sleep(5 * time.Millisecond)
	}
	// The loop reads again, until all are sent and none is left.
	got := 0
	timeout := time.After(30 * time.Second)
	for {
		select {
		case <-busy.NotifyChannel:
			got++
			continue
		case <-timeout:
			t.Fatalf("the subscription got %d of %d notifications in 30 s", got, sent)
		case <-done:
		}
		for len(busy.NotifyChannel) > 0 {
			<-busy.NotifyChannel
			got++
		}
		break
	}
	if got != sent {
		t.Errorf("the subscription got %d of %d notifications", got, sent)
	}
}

// deleted reads gopcua's own mark: a subscription the server runs is not
// deleted, one its client deleted is, and so is one made by hand (as the
// dead one above).
func TestDeletedReadsTheServersMark(t *testing.T) {
	ctx, s := startPress(t)
	c, err := opcua.NewClient(s.Endpoint(), opcua.SecurityMode(ua.MessageSecurityModeNone), opcua.AutoReconnect(false))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	sub, err := c.Subscribe(ctx, &opcua.SubscriptionParameters{Interval: 100 * time.Millisecond}, make(chan *opcua.PublishNotificationData, 16))
	if err != nil {
		t.Fatal(err)
	}
	ss := s.srv.SubscriptionService
	ss.Mu.Lock()
	live := ss.Subs[sub.SubscriptionID]
	ss.Mu.Unlock()
	if live == nil {
		t.Fatalf("subscription %d not on the server", sub.SubscriptionID)
	}
	if deleted(live) {
		t.Error("a running subscription counts as deleted")
	}
	if !deleted(&server.Subscription{}) {
		t.Error("a subscription made by hand (never run) does not count as deleted: gopcua's running flag changed? Unstick unsticks only after stuckFor")
	}
	if err := sub.Cancel(ctx); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for !deleted(live) {
		if time.Now().After(deadline) {
			t.Fatal("a subscription its client deleted does not count as deleted after 30 s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
