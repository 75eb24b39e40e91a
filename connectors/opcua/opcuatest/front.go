package opcuatest

import (
	"encoding/binary"
	"errors"
	"io"
	"net"
	"sync"

	"github.com/gopcua/opcua/uacp"
)

// front relays a client's connection to gopcua's server the way a server
// following OPC UA Part 6 (7.1.2) would answer: its Acknowledge announces
// chunk bytes as the largest message chunk both ways, and its messages
// come in chunks of at most that size. gopcua's server announces 64 KiB
// whatever the client's Hello asked, and sends every answer in one chunk
// however long; gopcua's client, plantedge's, allocates every chunk it
// reads at the size the server announces. Only SecurityPolicy None (the
// only one opcuatest serves): a chunk is its 24 bytes of headers and a part
// of the message body.
type front struct {
	l       net.Listener
	backend string // the gopcua server's host:port
	chunk   uint32

	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
	wg     sync.WaitGroup
}

func startFront(l net.Listener, backend string, chunk uint32) *front {
	f := &front{l: l, backend: backend, chunk: chunk, conns: map[net.Conn]struct{}{}}
	f.wg.Go(f.accept)
	return f
}

func (f *front) accept() {
	for {
		c, err := f.l.Accept()
		if err != nil {
			return
		}
		f.wg.Go(func() { f.relay(c) })
	}
}

// track keeps c to be closed by close; false when the front is closed.
func (f *front) track(c net.Conn) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		c.Close()
		return false
	}
	f.conns[c] = struct{}{}
	return true
}

// done closes c and forgets it.
func (f *front) done(c net.Conn) {
	c.Close()
	f.mu.Lock()
	delete(f.conns, c)
	f.mu.Unlock()
}

// close stops the front and ends its connections.
func (f *front) close() {
	f.l.Close()
	f.mu.Lock()
	f.closed = true
	for c := range f.conns {
		c.Close()
	}
	f.mu.Unlock()
	f.wg.Wait()
}

func (f *front) relay(client net.Conn) {
	if !f.track(client) {
		return
	}
	defer f.done(client)
	server, err := net.Dial("tcp", f.backend)
	if err != nil {
		return
	}
	if !f.track(server) {
		return
	}
	defer f.done(server)
	f.wg.Go(func() {
		_, _ = io.Copy(server, client) // the client's chunks fit the server's 64 KiB
		server.Close()
	})
	_ = f.rechunk(client, server)
}

// rechunk copies the server's messages to the client, the Acknowledge
// with the front's sizes, each message longer than a chunk in chunks.
// Chunks get sequence numbers of their own, one after another from the
// server's OpenSecureChannel answer on (gopcua's client needs them only
// to differ between a message's chunks).
func (f *front) rechunk(client, server net.Conn) error {
	const (
		hdr     = 8  // message type, chunk type, size
		symHdrs = 24 // hdr, secure channel id, token id, sequence number, request id
	)
	var seq uint32
	head := make([]byte, hdr)
	for {
		if _, err := io.ReadFull(server, head); err != nil {
			return err
		}
		size := binary.LittleEndian.Uint32(head[4:])
		if size < hdr || size > 1<<26 {
			return errors.New("opcuatest front: bad message size")
		}
		msg := make([]byte, size)
		copy(msg, head)
		if _, err := io.ReadFull(server, msg[hdr:]); err != nil {
			return err
		}
		switch string(msg[:3]) {
		case "ACK":
			ack := new(uacp.Acknowledge)
			if _, err := ack.Decode(msg[hdr:]); err != nil {
				return err
			}
			ack.ReceiveBufSize, ack.SendBufSize = min(ack.ReceiveBufSize, f.chunk), min(ack.SendBufSize, f.chunk)
			body, err := ack.Encode()
			if err != nil {
				return err
			}
			msg = binary.LittleEndian.AppendUint32([]byte("ACKF"), uint32(hdr+len(body)))
			msg = append(msg, body...)
		case "OPN":
			// The sequence header follows the asymmetric security header:
			// policy URI, sender certificate, receiver thumbprint.
			p := hdr + 4
			for range 3 {
				if p+4 > len(msg) {
					return errors.New("opcuatest front: short OPN")
				}
				n := int32(binary.LittleEndian.Uint32(msg[p:]))
				p += 4 + max(0, int(n))
			}
			if p+4 > len(msg) {
				return errors.New("opcuatest front: short OPN")
			}
			seq = binary.LittleEndian.Uint32(msg[p:]) + 1
		case "MSG", "CLO":
			if size < symHdrs {
				return errors.New("opcuatest front: short message")
			}
			final := msg[3]
			body := msg[symHdrs:]
			room := int(f.chunk) - symHdrs
			var out []byte
			for {
				part, last := body, true
				if len(part) > room {
					part, last = body[:room], false
				}
				c := append([]byte(nil), msg[:symHdrs]...)
				if !last {
					c[3] = 'C'
				} else {
					c[3] = final
				}
				binary.LittleEndian.PutUint32(c[4:], uint32(symHdrs+len(part)))
				binary.LittleEndian.PutUint32(c[16:], seq)
				seq++
				out = append(append(out, c...), part...)
				body = body[len(part):]
				if last {
					break
				}
			}
			msg = out
		}
		if _, err := client.Write(msg); err != nil {
			return err
		}
	}
}

// freeLoopbackPort is a port free on 127.0.0.1 when asked (Start retries
// when another took it meanwhile).
func freeLoopbackPort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
