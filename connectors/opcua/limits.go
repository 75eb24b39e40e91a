package opcua

import (
	"context"
	"time"

	"github.com/gopcua/opcua"
	"github.com/gopcua/opcua/id"
	"github.com/gopcua/opcua/ua"
)

// opLimits are the operation limits a server advertises under
// Server.ServerCapabilities.OperationLimits (OPC UA Part 5, 6.3.11); 0 means
// none advertised. Small PLC servers refuse larger requests with
// BadTooManyOperations.
type opLimits struct {
	read, browse, monitoredItems uint32
}

// readLimits reads the server's operation limits. A server without them (or
// one that fails to answer) gets no limits: requests then keep their own caps.
func readLimits(ctx context.Context, c *opcua.Client, timeout time.Duration) opLimits {
	rctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	nodes := []uint32{
		id.Server_ServerCapabilities_OperationLimits_MaxNodesPerRead,
		id.Server_ServerCapabilities_OperationLimits_MaxNodesPerBrowse,
		id.Server_ServerCapabilities_OperationLimits_MaxMonitoredItemsPerCall,
	}
	req := &ua.ReadRequest{TimestampsToReturn: ua.TimestampsToReturnNeither}
	for _, n := range nodes {
		req.NodesToRead = append(req.NodesToRead, &ua.ReadValueID{NodeID: ua.NewNumericNodeID(0, n), AttributeID: ua.AttributeIDValue})
	}
	res, err := c.Read(rctx, req)
	if err != nil || len(res.Results) != len(nodes) {
		return opLimits{}
	}
	v := func(dv *ua.DataValue) uint32 {
		if dv == nil || dv.Value == nil || (dv.EncodingMask&ua.DataValueStatusCode != 0 && !statusGood(dv.Status)) {
			return 0
		}
		n, _ := dv.Value.Value().(uint32)
		return n
	}
	return opLimits{read: v(res.Results[0]), browse: v(res.Results[1]), monitoredItems: v(res.Results[2])}
}

// noteLimits logs the server's limits per request, when they bind, once
// until they change: not at every reconnect (the soak probe: the same line
// 51 times).
func (s *Source) noteLimits() {
	lims := [2]int{s.perRead, s.perMonitor}
	if (s.perRead < maxNodesPerRequest || s.perMonitor < maxNodesPerRequest) && lims != s.limitsSaid {
		s.log.Info("server limits operations per request", "nodes_per_read", s.perRead, "monitored_items_per_call", s.perMonitor)
	}
	s.limitsSaid = lims
}

// capped is n, lowered to limit when the server advertised one.
func capped(n int, limit uint32) int {
	if limit > 0 && int64(limit) < int64(n) {
		return int(limit)
	}
	return n
}
