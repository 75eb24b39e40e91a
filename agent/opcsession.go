package agent

import (
	"context"
	"slices"
	"strings"
	"time"

	"github.com/plantedge/plantedge/agent/config"
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

// sweepKeptSessions deals with the sessions kept for OPC UA sources cfg no
// longer has (renamed or removed while the agent was down, or removed by a
// reload whose stop could not close the session): kept under the old name,
// nothing would ever close them nor forget them. One made with the server,
// security and user of a source about to start (fresh), which keeps none of
// its own, is handed to it: its start closes it, as it closes its own —
// a rename, or a source moved to a PLC another source reads as the same
// user. Any other is forgotten, and the log says so: closing it takes the
// credentials and the client certificate of the source that made it, and
// its server keeps it until its lifetime ends (2 minutes by default).
func (a *Agent) sweepKeptSessions(cfg *config.Config, fresh []*sourceHandle) {
	type kept struct {
		source string
		b      []byte
	}
	var stale []kept
	err := a.buf.MetaPrefix(opcSessionPrefix, func(k string, v []byte) error {
		name := strings.TrimPrefix(k, opcSessionPrefix)
		if !slices.ContainsFunc(cfg.OPCUA, func(s config.OPCUAServer) bool { return s.Name == name }) {
			stale = append(stale, kept{name, slices.Clone(v)})
		}
		return nil
	})
	if err != nil || len(stale) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, k := range stale {
		var to *sourceHandle
		for _, h := range fresh {
			if h.closesKept == nil || !h.closesKept(k.b) {
				continue
			}
			if own, err := a.buf.Meta(opcSessionPrefix + h.name); err == nil && own == nil {
				to = h
				break
			}
		}
		old := buffer.KV{Key: opcSessionPrefix + k.source}
		if to == nil {
			if err := a.buf.PutMeta(ctx, old); err == nil {
				a.log.Info("forgot the OPC UA session kept for a source no longer configured: no source configured for its server, security and user can close it; the server keeps it until its lifetime ends",
					"source", k.source)
			}
			continue
		}
		if err := a.buf.PutMeta(ctx, old, buffer.KV{Key: opcSessionPrefix + to.name, Value: k.b}); err == nil {
			a.log.Info("the OPC UA session kept for a source no longer configured is handed to the source configured for its server, security and user: it closes it as it starts",
				"source", k.source, "closed_by", to.name)
		}
	}
}
