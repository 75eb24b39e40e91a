package agent

import (
	"context"
	"time"

	"github.com/plantedge/plantedge/buffer"
)

// opcSessions keeps in the buffer file (0600) what closes the session an
// OPC UA source has open on its server (opcua.SessionKeeper), so that the
// next start closes the session a killed or crashed run left, rather than
// leave it holding one of the PLC's session slots for its lifetime. What
// is kept (the session's authentication token among it) is never logged
// nor shown in the status: it opens nothing without the user's
// credentials, but it is the session's.
type opcSessions struct {
	a      *Agent
	source string
}

const opcSessionPrefix = "opcsession/"

func (k opcSessions) KeptSession() ([]byte, error) {
	return k.a.buf.Meta(opcSessionPrefix + k.source)
}

func (k opcSessions) KeepSession(b []byte) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return k.a.buf.PutMeta(ctx, buffer.KV{Key: opcSessionPrefix + k.source, Value: b})
}
