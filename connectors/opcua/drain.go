package opcua

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/gopcua/opcua"
	"github.com/gopcua/opcua/ua"

	"github.com/plantedge/plantedge/connectors"
)

// A link lost for less than the session's lifetime leaves the session,
// and its subscription (asked to live as long: subLifetime), on the
// server (s.orphan), however the loss was found: the changes
// the monitored items saw meanwhile wait in their queues (queue_size
// each), and an answer the server sent as the link went is kept for
// Republish. The new session's first read brought only the current values:
// a stop and the run after it, both within the loss, were lost. The next
// connection activates the left session to close it (closeOrphan); before
// it closes it, it now takes those changes from its subscription
// (drainOrphan), and the source delivers them before the new session's
// first read (deliverRecovered).

// orphanSub is the subscription of the source's session, kept with it
// when a lost connection leaves it on the server (s.orphan). Its monitored
// items' client handles are the nodes' indexes + 1 (heartbeatHandle the
// server's clock), the same in every session of the source.
type orphanSub struct {
	id       uint32
	interval time.Duration // the publishing interval the server revised
	lifetime uint32        // the lifetime count the server revised
	// kept: the subscription of the session a killed run left (kept with
	// cfg.Sessions); its changes start watches of their own (what that
	// run watched, and how, is not known). noRepublish: what the server
	// sent that run is not asked again (see DeliveredTimes).
	kept, noRepublish bool
}

// drainedChange is a data change taken from a left session's subscription.
type drainedChange struct {
	seq    uint32 // the sequence number of the message that carried it
	handle uint32 // the monitored item's client handle
	dv     *ua.DataValue
}

// drained is what drainOrphan took from the subscription.
type drained struct {
	changes     []drainedChange // in sequence-number order
	republished int             // messages asked again (Republish)
	// gap: a message the server offered (AvailableSequenceNumbers) was
	// not had again: changes may be missing among those taken.
	gap  bool
	err  error // why it stopped short, if it did
	kept bool  // from the session a killed run left (orphanSub.kept)
}

// drainOrphan takes from sub, the subscription of the left session c has
// just activated on its own channel (c runs no publish loop: Dial and
// ActivateSession start none), the data changes it still holds:
//
//   - ModifySubscription first asks for a keep-alive at every publishing
//     interval, so that a subscription with nothing queued answers a
//     Publish within one interval, not its keep-alive period (a third of
//     heartbeat_timeout). A server that does not support it (gopcua's,
//     which also answers a Publish only on the channel that made the
//     subscription, gone with the link) or no longer has the subscription
//     (its lifetime passed) is asked nothing more: one round trip.
//   - Publish, each answer acknowledged in the next request, until one is
//     a keep-alive, carries a status change (the subscription ends), or,
//     made after the server said MoreNotifications false, no change of
//     the nodes; what changes from then on, the new session's first read
//     brings.
//   - Republish for each sequence number the server offered
//     (AvailableSequenceNumbers) that no answer brought: an answer lost
//     with the link, or one not acknowledged before it (delivered then:
//     deliverRecovered drops its values by their source times) — not
//     when sub.noRepublish.
//
// ctx bounds it all. asking, if set, is called before each request
// ("modify subscription", "publish", "republish"; tests).
func drainOrphan(ctx context.Context, c *opcua.Client, sub orphanSub, asking func(string)) drained {
	ask := func(what string) {
		if asking != nil {
			asking(what)
		}
	}
	var out drained
	ask("modify subscription")
	var mr *ua.ModifySubscriptionResponse
	out.err = c.Send(ctx, &ua.ModifySubscriptionRequest{
		SubscriptionID:              sub.id,
		RequestedPublishingInterval: float64(sub.interval) / float64(time.Millisecond),
		RequestedLifetimeCount:      sub.lifetime, // as it was: a close that fails leaves it as long
		RequestedMaxKeepAliveCount:  1,
		MaxNotificationsPerPublish:  0, // no limit
	}, func(v ua.Response) error { return assignResponse(v, &mr) })
	if out.err != nil {
		out.err = fmt.Errorf("modify subscription: %w", out.err)
		return out
	}
	seen, offered := map[uint32]bool{}, map[uint32]bool{}
	acks := []*ua.SubscriptionAcknowledgement{}
	// take adds the data changes of msg; false: a status change ended
	// the subscription.
	take := func(msg *ua.NotificationMessage) bool {
		for _, eo := range msg.NotificationData {
			if eo == nil {
				continue
			}
			switch v := eo.Value.(type) {
			case *ua.DataChangeNotification:
				for _, it := range v.MonitoredItems {
					if it != nil && it.Value != nil {
						out.changes = append(out.changes, drainedChange{seq: msg.SequenceNumber, handle: it.ClientHandle, dv: it.Value})
					}
				}
			case *ua.StatusChangeNotification:
				return false
			}
		}
		return true
	}
	// fresh: the server has sent every message it had made before the
	// drain began (MoreNotifications false). Those may be older than what
	// the monitored items queued after them (node-opcua makes one as the
	// subscription goes late, and sends it as the first answer, the
	// changes since still queued: a stop and run made while a killed run
	// was down came without the run). From then on, an answer is made at
	// a publishing interval: one without a change of the nodes (the
	// server clock's alone, which changes every second: no keep-alive
	// then) says nothing of them is queued.
	fresh := false
	// A bound besides ctx: a server that answers every Publish with data
	// and MoreNotifications (it never does) is not drained for good.
	for range 64 {
		ask("publish")
		var res *ua.PublishResponse
		err := c.Send(ctx, &ua.PublishRequest{SubscriptionAcknowledgements: acks}, func(v ua.Response) error {
			return assignResponse(v, &res)
		})
		if err != nil {
			out.err = fmt.Errorf("publish: %w", err)
			break
		}
		acks = []*ua.SubscriptionAcknowledgement{}
		for _, n := range res.AvailableSequenceNumbers {
			offered[n] = true
		}
		msg := res.NotificationMessage
		if res.SubscriptionID != sub.id || msg == nil {
			continue
		}
		if len(msg.NotificationData) == 0 {
			break // a keep-alive: nothing more queued
		}
		seen[msg.SequenceNumber] = true
		had := len(out.changes)
		if !take(msg) {
			break
		}
		acks = append(acks, &ua.SubscriptionAcknowledgement{SubscriptionID: sub.id, SequenceNumber: msg.SequenceNumber})
		if fresh && !nodeChanges(out.changes[had:]) {
			break // made since the drain began, and nothing of the nodes in it
		}
		fresh = fresh || !res.MoreNotifications
	}
	out.kept = sub.kept
	var again []uint32
	for n := range offered {
		if !seen[n] && !sub.noRepublish {
			again = append(again, n)
		}
	}
	slices.Sort(again)
	for _, n := range again {
		if ctx.Err() != nil {
			out.gap = true
			break
		}
		ask("republish")
		var res *ua.RepublishResponse
		err := c.Send(ctx, &ua.RepublishRequest{SubscriptionID: sub.id, RetransmitSequenceNumber: n}, func(v ua.Response) error {
			return assignResponse(v, &res)
		})
		if err != nil {
			// Gone since it was offered (acknowledged, or the
			// retransmission queue full): the others are asked still.
			out.err = cmp.Or(out.err, fmt.Errorf("republish %d: %w", n, err))
			out.gap = true
			continue
		}
		if res.NotificationMessage != nil {
			out.republished++
			take(res.NotificationMessage)
		}
	}
	slices.SortStableFunc(out.changes, func(a, b drainedChange) int { return cmp.Compare(a.seq, b.seq) })
	return out
}

// nodeChanges reports whether cs holds a change of a node, not only the
// server clock's.
func nodeChanges(cs []drainedChange) bool {
	return slices.ContainsFunc(cs, func(c drainedChange) bool { return c.handle != heartbeatHandle })
}

// assignResponse sets *to to v, a response of the type asked.
func assignResponse[T ua.Response](v ua.Response, to *T) error {
	r, ok := v.(T)
	if !ok {
		return fmt.Errorf("unexpected response %T", v)
	}
	*to = r
	return nil
}

// deliverRecovered delivers the data changes taken from the subscription
// of the session a lost connection left (drainOrphan), in the order the
// server sent them, in the watch of that session (its values went on
// being watched on the server while the link was down): a value whose
// source time is not after the last one delivered of its node (one
// delivered before the loss, sent again) is dropped. A message the server
// offered and did not send again (d.gap) may have held changes among
// them: they start a watch of their own then. It logs how many.
//
// From the session a killed run left (d.kept), before any session of
// this run: in watches of their own, and the last one delivered of a node
// is the one the sink kept (DeliveredTimes), if it tells. (A server may
// send a change twice: node-opcua sends the one it answered a Publish
// the killed run had waiting with, gone with its channel, again in the
// next answer.)
func (s *Source) deliverRecovered(ctx context.Context, d drained) error {
	if d.err != nil {
		s.log.Debug("the subscription of the session a lost connection left was not drained to its end", "err", d.err)
	}
	if d.gap && len(d.changes) > 0 || len(s.watch) != len(s.nodes) {
		s.watch = make([]uint64, len(s.nodes))
		for i := range s.watch {
			s.watch[i] = newWatch()
		}
	}
	if dt, ok := s.cfg.Sessions.(DeliveredTimes); ok && d.kept {
		asked := make([]bool, len(s.nodes))
		for _, ch := range d.changes {
			if i := int64(ch.handle) - 1; i >= 0 && i < int64(len(s.nodes)) && !asked[i] {
				asked[i] = true
				if t := dt.DeliveredTime(s.nodes[i].addr); t.After(s.lastTime[i]) {
					s.lastTime[i] = t
				}
			}
		}
	}
	rx := connectors.Receive()
	n, again := 0, 0
	defer func() {
		if n > 0 {
			s.update(func(st *Stats) { st.RecoveredChanges += uint64(n) })
		}
	}()
	for _, ch := range d.changes {
		if ch.handle == 0 || ch.handle == heartbeatHandle || int64(ch.handle) > int64(len(s.nodes)) {
			continue
		}
		idx := int(ch.handle - 1)
		if _, _, _, ts := sampleFields(s.nodes[idx].read(ch.dv)); !ts.After(s.lastTime[idx]) {
			again++
			continue
		}
		if overflowed(ch.dv.Status) {
			s.overflow(uint32(idx))
		}
		if err := s.deliver(ctx, idx, ch.dv, rx, false, s.cfg.HeartbeatTimeout); err != nil {
			return err
		}
		n++
	}
	switch {
	case d.kept && (n > 0 || again > 0):
		s.log.Info("recovered the changes made while the previous run was down from the subscription it left on the server when it ended uncleanly (killed, crashed)",
			"changes", n, "delivered_before", again, "republished", d.republished)
	case n > 0 || again > 0:
		s.log.Info("recovered the changes the lost connection hid from the subscription it left on the server",
			"changes", n, "delivered_before", again, "republished", d.republished)
	}
	return nil
}
