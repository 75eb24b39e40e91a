// Package connectors holds what every source of machine values shares: the
// Sample a connector emits and the Sink it hands samples to. The connectors
// themselves live in subpackages, one per protocol library (opcua, mqtt).
package connectors

import (
	"context"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Kind names the protocol a sample came from.
type Kind string

// Source kinds.
const (
	KindOPCUA Kind = "opcua"
	KindMQTT  Kind = "mqtt"
)

// Structured is the value of a source that holds a structure or an array
// (an OPC UA ExtensionObject, an Int32 array): no signal reads one, and
// the messages name what it is. Type is e.g. "structure", "Int32 array";
// Array is set for an array, whose elements a signal's index reads.
type Structured struct {
	Type  string
	Array bool
}

func (s Structured) String() string { return "(" + s.Type + ")" }

// ElementAddress is the address of one element of an OPC UA array node:
// the node id as configured, then the 0-based index in brackets
// ("ns=2;s=Counts[3]"). It keys the element's state, log lines and status
// apart from the node's other elements. It is never parsed back: a node id
// may hold brackets of its own (Siemens: ns=3;s="DB"."arr"[3], which names
// the same element as node ns=3;s="DB"."arr" with index 3).
func ElementAddress(node string, index uint32) string {
	return node + "[" + strconv.FormatUint(uint64(index), 10) + "]"
}

// Sample is one value read from a source. A connector fills either Value
// (OPC UA: the decoded variant) or Payload (MQTT: the raw message body); the
// agent's mapping turns it into machine signals.
type Sample struct {
	Source  string // configured name of the OPC UA server or MQTT broker
	Kind    Kind
	Address string // OPC UA node id as configured (ElementAddress for an element), or MQTT topic as received
	// Server is the OPC UA endpoint or MQTT broker URL the value was read
	// from, as ServerID writes it: a counter read from another server (a
	// replacement PLC) is not counted against the old one's last value,
	// and one whose source was only renamed keeps counting.
	Server  string
	Value   any    // OPC UA: bool, integer, float or string (Structured: neither); nil for MQTT
	Payload []byte // MQTT: message body; nil for OPC UA
	// DataType is the OPC UA built-in type the value came as ("Int16",
	// "Double", "Int32 array"; "" for MQTT): Value widens integers to 64
	// bits, which would hide a PLC program's change from Int16 to Int32.
	DataType string

	// Good is false when the source marked the value bad or uncertain
	// (OPC UA status code); Quality then says why ("BadNodeIdUnknown", ...).
	Good    bool
	Quality string

	SourceTime  time.Time // source timestamp (OPC UA: else its server timestamp, ServerStamped), zero if the source gave none
	ReceiveTime time.Time // when the connector received it
	// ServerStamped is set when SourceTime is an OPC UA value's server
	// timestamp, taken because it carried no source timestamp: when the
	// server read or sampled it (many servers stamp every read anew), not
	// when the machine changed it.
	ServerStamped bool
	// Element is set for an element of an OPC UA array node
	// (ElementAddress): its SourceTime is the whole node's, which a change
	// of any other element moves.
	Element bool
	// Seen is when, by the box's boot clock (Seen): the time between two
	// receipts when the wall clock was stepped between them.
	Seen Seen

	// Duplicate is set for an MQTT message the broker redelivered (DUP flag).
	Duplicate bool
	// PacketID is an MQTT QoS 1 or 2 message's packet identifier (0 for
	// QoS 0 and other sources). A broker resending a message of a kept
	// session after a reconnect uses its original identifier (MQTT 3.1.1
	// §4.4; Mosquitto and mochi measured), and gives no identifier to a
	// new message while an earlier one holding it is unacknowledged.
	PacketID uint16
	// Initial is set for values read right after a (re)connect (OPC UA) and
	// for retained messages (MQTT: the broker sends its stored last value on
	// every subscribe), so the mapping knows they may repeat a value it has
	// already seen.
	Initial bool
	// Resent is set for a value certainly delivered before: an MQTT
	// retained message the broker sends again because the agent
	// re-subscribed in a session the broker kept (the session delivered,
	// or holds, every message since QoS 0 aside). For run state and
	// downtime reason the mapping takes it only if the topic did not carry
	// it before: a stale one (a publisher that retained an old stop) would
	// start a stop that never was.
	Resent bool
	// Conn (MQTT) numbers the connection to the broker the message came
	// in: unique in the process and higher for a later connection (0: not
	// known). A new number means the agent reconnected: what the broker
	// sent only once, while it was away (a Sparkplug BIRTH, QoS 0), may
	// have been missed.
	Conn uint64
	// Epoch (MQTT) numbers the agent's connections to the source's broker
	// across restarts and reloads (the agent keeps the last one in its
	// buffer: mqtt.Config.EpochBase), one more at each connect the broker
	// answered; 0: not known. A broker resends every message it holds
	// unacknowledged at each connect of a kept session, so a copy of one
	// the agent took comes in the connection after the one it was taken
	// (or last resent) in; an identifier seen two or more connections
	// earlier may have been given to another message since (mochi numbers
	// every connection's messages from 1).
	Epoch uint64
	// Watch, when not 0, says the source has watched the value without a
	// break since the last sample of the same Watch: a value that had
	// changed would have been delivered (an OPC UA node monitored or polled
	// in one session, with no bad quality since). A new session, or a bad
	// value, starts another. The mapping takes a counter that went down a
	// little, watched since its last value, for a correction rather than a
	// reset, however long ago that value came: a reset and a climb back
	// to near the old count would have been seen. 0: not known (MQTT).
	Watch uint64
	// WatchGap (with Watch) is how long a change may go unseen between two
	// samples of one watch: the poll interval of a polled node; for a
	// monitored one the heartbeat timeout (a subscription that stalls
	// longer is rebuilt, a new watch). A counter back to near its old value
	// within it would have climbed unseen.
	WatchGap time.Duration

	// Ack, if not nil, tells the source the sample is durable (MQTT: PUBACK).
	// The agent calls it exactly once, after the buffer commit that holds
	// the sample's effect, or after deciding to skip the sample for good.
	Ack func()
}

// Done acknowledges the sample to its source; safe when Ack is nil.
func (s Sample) Done() {
	if s.Ack != nil {
		s.Ack()
	}
}

// Sink receives samples from a connector. Deliver may block to apply
// backpressure; it returns an error only when ctx is done or the sink is
// closed. Samples of one source are delivered in the order received.
type Sink interface {
	Deliver(ctx context.Context, s Sample) error
}

// SinkFunc adapts a function to a Sink.
type SinkFunc func(ctx context.Context, s Sample) error

// Deliver calls f.
func (f SinkFunc) Deliver(ctx context.Context, s Sample) error { return f(ctx, s) }

// State is a source's connection state as shown by `plantedge status`.
type State string

// Connection states; the strings are part of the status contract.
const (
	StateConnected  State = "connected"
	StateConnecting State = "connecting"
	StateDown       State = "down"
)

// ServerID writes a server's URL (an OPC UA endpoint, an MQTT broker) the
// same way however it was typed: scheme and host in lower case, no
// trailing slash, no user name or password (it is stored with the counter
// state). A host name and its address stay two servers.
func ServerID(endpoint string) string {
	u, err := url.Parse(strings.TrimSpace(endpoint))
	if err != nil {
		return endpoint // not a URL: the configuration refuses it
	}
	u.User = nil
	u.Scheme, u.Host, u.Path = strings.ToLower(u.Scheme), strings.ToLower(u.Host), strings.TrimRight(u.Path, "/")
	return u.String()
}

// Widen is a float32 (a PLC's REAL) as the decimal it stands for, which
// the PLC shows: 100.1, not float32's binary widened (100.09999847412109),
// whose steps would carry its noise (100.1 to 100.2 stepping
// 0.09999847412109375).
func Widen(x float32) float64 {
	f, err := strconv.ParseFloat(strconv.FormatFloat(float64(x), 'g', -1, 32), 64)
	if err != nil { // NaN, ±Inf parse; nothing else fails
		return float64(x)
	}
	return f
}
