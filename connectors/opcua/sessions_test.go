package opcua

import (
	"bytes"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gopcua/opcua/id"
	"github.com/gopcua/opcua/uacp"

	"github.com/plantedge/plantedge/connectors"
	"github.com/plantedge/plantedge/internal/nettest"
)

// sessionCounter counts the CreateSession and ActivateSession requests a
// client sends (nettest.PipeProxy's up): what a server sees, whoever in the
// client made them.
type sessionCounter struct{ created, activated atomic.Int64 }

// typeID is the encoded type id of a request (four-byte form, ns=0).
func typeID(enc uint16) []byte { return []byte{0x01, 0x00, byte(enc), byte(enc >> 8)} }

var (
	createSession   = typeID(id.CreateSessionRequest_Encoding_DefaultBinary)
	activateSession = typeID(id.ActivateSessionRequest_Encoding_DefaultBinary)
)

func (sc *sessionCounter) forward(dst, src net.Conn) {
	forwardChunks(dst, src, func(h uacp.Header, body []byte) bool {
		// SecurityPolicy None: channel id, token id, sequence number and
		// request id (16 bytes), then the request's type id.
		if h.MessageType == "MSG" && len(body) >= 20 {
			switch {
			case bytes.Equal(body[16:20], createSession):
				sc.created.Add(1)
			case bytes.Equal(body[16:20], activateSession):
				sc.activated.Add(1)
			}
		}
		return true
	})
}

// PEERS complaint 4: Telegraf sent 6,410 CreateSession requests in two
// minutes because gopcua's own reconnecting and Telegraf's both ran. Every
// session the server is asked for across server crashes is one the source
// made and counted (Stats.SessionsCreated), and activated once: no second
// loop in the client re-creates or re-activates sessions behind its back.
// TestReconnectStormBounded counts the source's own sessions only; this
// counts the server's side of the wire. (With gopcua's AutoReconnect
// switched on the counts held here, the source closing each lost client
// first; -race found a data race in gopcua's reconnect instead.)
func TestEverySessionOnTheWireIsOneTheSourceMade(t *testing.T) {
	ts := startInProcess(t, 0)
	crash := nettest.NewCrashProxy(t, strings.TrimPrefix(ts.url, "opc.tcp://"))
	var sc sessionCounter
	px := nettest.PipeProxy(t, crash.Addr(), sc.forward, func(dst, src net.Conn) {
		_, _ = io.Copy(dst, src)
		dst.Close()
		src.Close()
	})
	col := newCollector()
	src := runSource(t, Config{
		Endpoint: "opc.tcp://" + px, Nodes: []string{"ns=1;s=Counter"},
		PublishingInterval: 50 * time.Millisecond, HeartbeatTimeout: 2 * time.Second,
		BackoffMin: 20 * time.Millisecond, BackoffMax: 200 * time.Millisecond,
	}, col)
	col.waitFor(t, 0, 15*time.Second, "first sample", func(s connectors.Sample) bool { return s.Initial })
	const crashes = 5
	for i := range crashes {
		from := col.len()
		crash.Crash()
		waitUntil(t, 10*time.Second, func() bool { return src.State() != connectors.StateConnected })
		crash.Restart()
		col.waitFor(t, from, 15*time.Second, "a sample after the restart", func(s connectors.Sample) bool { return s.Initial })
		t.Logf("restart %d: %d sessions made; on the wire %d created, %d activated", i+1, src.Stats().SessionsCreated, sc.created.Load(), sc.activated.Load())
	}
	st := src.Stats()
	if st.SessionsCreated < crashes+1 {
		t.Fatalf("%d sessions for %d crashes", st.SessionsCreated, crashes)
	}
	// A session a cut left on the server is activated once more, on a
	// channel of its own, to be closed (TestLostConnectionsSessionIsClosedFromTheNext);
	// a crash of this proxy cuts the link, the server keeps the session.
	// The first connection's login is checked on a session of its own
	// (checkLogin), once: the later ones' was taken by activating the
	// session the crash left, to close it.
	if st.LoginChecks != 1 {
		t.Errorf("%d logins checked, want the first connection's", st.LoginChecks)
	}
	if c, a := sc.created.Load(), sc.activated.Load(); c != int64(st.SessionsCreated+st.LoginChecks) || a != c+int64(st.LeftSessionsClosed) {
		t.Errorf("the server was asked to create %d sessions and activate %d, the source made %d, checked %d logins and closed %d left by a cut: another loop re-creates or re-activates sessions",
			c, a, st.SessionsCreated, st.LoginChecks, st.LeftSessionsClosed)
	}
}
