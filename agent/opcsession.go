package agent

import (
	"context"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/plantedge/plantedge/agent/config"
	"github.com/plantedge/plantedge/agent/mapping"
	"github.com/plantedge/plantedge/buffer"
	"github.com/plantedge/plantedge/connectors"
	"github.com/plantedge/plantedge/connectors/opcua"
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

// DeliveredTime is the source time of the newest value of address the
// agent has taken (opcua.DeliveredTimes): the latest of the last times of
// the machine signals it feeds, as the mapping state holds them. The
// session a killed run left holds the answers its server sent that run
// and had not had acknowledged; the next run takes them again, with the
// changes made while no run was, and those not after this are dropped:
// sent again, a stop and the run after it that the killed run had booked,
// older than the run state, were taken for a clock set back and booked
// again.
func (k opcSessions) DeliveredTime(address string) time.Time {
	m := k.a.mapper.Load()
	if m == nil {
		return time.Time{}
	}
	k.a.stateMu.Lock()
	defer k.a.stateMu.Unlock()
	var last time.Time
	m.EachUse(connectors.KindOPCUA, k.source, address, func(machine string, sig mapping.Signal) {
		ms := k.a.state.Machines[machine]
		if ms == nil {
			return
		}
		var t time.Time
		switch sig {
		case mapping.Running:
			t = ms.RunningTime
		case mapping.DowntimeReason:
			t = ms.ReasonTime
		default:
			if cs := ms.Counters[sig]; cs != nil {
				t = cs.Time
			}
		}
		if t.After(last) {
			last = t
		}
	})
	return last
}

// sweepKeptSessions deals with the sessions kept for OPC UA sources that
// do not start: no longer in cfg (renamed or removed while the agent was
// down, or removed by a reload whose stop could not close the session),
// or in cfg but not among srcs, the sources built — no node mapped to it,
// or it could not be built. Kept under that name, nothing would ever close
// them nor forget them. One made with the server, security and user of a
// source about to start (fresh), which keeps none of its own, is handed to
// it: its start closes it, as it closes its own — a rename, or a source
// moved to a PLC another source reads as the same user. Any other is
// forgotten, and the log says so: closing it takes the credentials and the
// client certificate of the source that made it, and its server keeps it
// until its lifetime ends: the one it gave, kept with the session, else
// said as the default (2 minutes, what plantedge asks; keptLifetime).
func (a *Agent) sweepKeptSessions(cfg *config.Config, srcs, fresh []*sourceHandle) {
	type kept struct {
		source     string
		b          []byte
		configured bool
	}
	var stale []kept
	err := a.buf.MetaPrefix(opcSessionPrefix, func(k string, v []byte) error {
		name := strings.TrimPrefix(k, opcSessionPrefix)
		if slices.ContainsFunc(srcs, func(h *sourceHandle) bool { return h.kind == connectors.KindOPCUA && h.name == name && !h.broken }) {
			return nil
		}
		configured := slices.ContainsFunc(cfg.OPCUA, func(s config.OPCUAServer) bool { return s.Name == name })
		stale = append(stale, kept{name, slices.Clone(v), configured})
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
			if err := a.buf.PutMeta(ctx, old); err != nil {
				continue
			}
			if k.configured {
				a.log.Info("forgot the OPC UA session kept for a source configured but not started (no node mapped to it, or it could not be built): no source started for its server, security and user can close it; the server keeps it until its lifetime ends ("+keptLifetime(k.b)+")",
					"source", k.source)
			} else {
				a.log.Info("forgot the OPC UA session kept for a source no longer configured: no source configured for its server, security and user can close it; the server keeps it until its lifetime ends ("+keptLifetime(k.b)+")",
					"source", k.source)
			}
			continue
		}
		if err := a.buf.PutMeta(ctx, old, buffer.KV{Key: opcSessionPrefix + to.name, Value: k.b}); err != nil {
			continue
		}
		if k.configured {
			a.log.Info("the OPC UA session kept for a source configured but not started is handed to the source started for its server, security and user: it closes it as it starts",
				"source", k.source, "closed_by", to.name)
		} else {
			a.log.Info("the OPC UA session kept for a source no longer configured is handed to the source configured for its server, security and user: it closes it as it starts",
				"source", k.source, "closed_by", to.name)
		}
	}
}

// keptLifetime says the lifetime of the OPC UA session kept in b: the one
// its server gave it (its CreateSession answer, kept with it), else the
// default, what plantedge asks (an earlier version's record, or a server
// that did not say: gopcua's answers 0).
func keptLifetime(b []byte) string {
	if l := opcua.KeptLifetime(b); l != "" {
		return l + ", as the server gave it"
	}
	return "2 minutes by default"
}

// keptLifetimes says the lifetimes of the OPC UA sessions kept (source:
// what keptLifetime read there, "" where nothing was known): the ones the
// servers gave, by source, and the default where none is known.
func keptLifetimes(gave map[string]string) string {
	var known []string
	unknown := len(gave) == 0
	for _, src := range slices.Sorted(maps.Keys(gave)) {
		if gave[src] == "" {
			unknown = true
			continue
		}
		known = append(known, gave[src]+" for "+src)
	}
	switch {
	case len(known) == 0:
		return "2 minutes by default"
	case unknown:
		return "as the server gave the last session kept: " + strings.Join(known, ", ") + "; 2 minutes by default for the others"
	}
	return "as the server gave the last session kept: " + strings.Join(known, ", ")
}

// keptSessionLifetimes is keptLifetimes of the sessions the buffer keeps.
func (a *Agent) keptSessionLifetimes() string {
	gave := map[string]string{}
	_ = a.buf.MetaPrefix(opcSessionPrefix, func(k string, v []byte) error {
		gave[strings.TrimPrefix(k, opcSessionPrefix)] = opcua.KeptLifetime(v)
		return nil
	})
	return keptLifetimes(gave)
}
