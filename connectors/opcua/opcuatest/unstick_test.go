package opcuatest

import (
	"testing"
	"time"

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
