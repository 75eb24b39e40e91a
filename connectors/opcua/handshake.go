package opcua

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/gopcua/opcua/uacp"
)

// ErrServerLimits is returned when a server's answer to the connection
// handshake announces buffer sizes the client library would allocate
// without bound; the connection is refused.
var ErrServerLimits = errors.New("server announces buffer sizes beyond what plantedge accepts")

// Bounds on what a server may announce in its Acknowledge. gopcua (v0.8)
// takes the server's ReceiveBufferSize as its own receive buffer and
// allocates that many bytes for every message chunk it reads; it gathers
// up to MaxChunkCount chunks of a message before it checks the message's
// size. A server announcing 4 GiB (one 28-byte answer) made the agent
// allocate 4 GiB at the next read, and die of it under a memory limit —
// every machine's data with it, at every reconnect. plantedge asks for
// 8,192-byte chunks both ways (see init in security.go), and a server
// must not announce more than was asked; maxAckChunk leaves room for
// servers that announce their own size anyway.
const (
	maxAckChunk   = 1 << 20 // ReceiveBufferSize
	maxAckMessage = 1 << 30 // ReceiveBufferSize × MaxChunkCount (0: gopcua's 512)
	ackReadLimit  = 4096    // the most of the answer read here
)

// checkServerLimits makes the connection handshake (Hello, Acknowledge) on
// a connection of its own and refuses a server whose Acknowledge announces
// sizes beyond the bounds above, before gopcua connects and trusts them.
// It cannot see a server that answers this check one way and the next
// connection another, but it stops one that announces absurd sizes —
// misconfigured, broken or hostile — from taking the agent's memory. Any
// other failure here (no answer, an Error message) is left to gopcua's
// own connection, which reports it as it always did.
func checkServerLimits(ctx context.Context, endpoint string, timeout time.Duration) error {
	_, u, err := uacp.ResolveEndpoint(ctx, endpoint)
	if err != nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", u.Host)
	if err != nil {
		return nil
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	// Cancelled (the source stopping), the read ends at once, not at the
	// deadline: a server that opens its port and never answers held every
	// stop of the agent up to the request timeout (the lifecycle review).
	defer context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Now()) })()
	ack, err := handshake(conn, endpoint)
	if err != nil || ack == nil {
		return nil
	}
	return ackWithinLimits(ack)
}

// handshake sends Hello on conn and reads the answer; ack is nil when the
// answer is not an Acknowledge.
func handshake(conn net.Conn, endpoint string) (*uacp.Acknowledge, error) {
	c := uacp.DefaultClientACK
	hel := &uacp.Hello{Version: c.Version, ReceiveBufSize: c.ReceiveBufSize, SendBufSize: c.SendBufSize,
		MaxMessageSize: c.MaxMessageSize, MaxChunkCount: c.MaxChunkCount, EndpointURL: endpoint}
	body, err := hel.Encode()
	if err != nil {
		return nil, err
	}
	h := uacp.Header{MessageType: "HEL", ChunkType: 'F', MessageSize: uint32(8 + len(body))}
	hdr, err := h.Encode()
	if err != nil {
		return nil, err
	}
	if _, err := conn.Write(append(hdr, body...)); err != nil {
		return nil, err
	}
	b := make([]byte, 8)
	if _, err := io.ReadFull(conn, b); err != nil {
		return nil, err
	}
	if _, err := h.Decode(b); err != nil || h.MessageType != "ACK" || h.MessageSize < 8 {
		return nil, err
	}
	b = make([]byte, min(h.MessageSize-8, ackReadLimit))
	if _, err := io.ReadFull(conn, b); err != nil {
		return nil, err
	}
	ack := new(uacp.Acknowledge)
	if _, err := ack.Decode(b); err != nil {
		return nil, err
	}
	return ack, nil
}

// ackWithinLimits checks a server's Acknowledge against the bounds.
func ackWithinLimits(ack *uacp.Acknowledge) error {
	chunks := uint64(ack.MaxChunkCount)
	if chunks == 0 {
		chunks = uacp.DefaultMaxChunkCount // what gopcua uses for "no limit"
	}
	switch {
	case ack.ReceiveBufSize > maxAckChunk:
		return fmt.Errorf("%w: a receive buffer of %d bytes (plantedge asked for %d; it accepts up to %d), which the OPC UA library would allocate for every message chunk",
			ErrServerLimits, ack.ReceiveBufSize, uacp.DefaultClientACK.SendBufSize, maxAckChunk)
	case uint64(ack.ReceiveBufSize)*chunks > maxAckMessage:
		return fmt.Errorf("%w: chunks of %d bytes, up to %d of them in a message (%d bytes; plantedge accepts up to %d), which the OPC UA library would gather in memory",
			ErrServerLimits, ack.ReceiveBufSize, chunks, uint64(ack.ReceiveBufSize)*chunks, maxAckMessage)
	}
	return nil
}
