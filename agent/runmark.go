package agent

import (
	"context"
	"encoding/json"
	"time"

	"github.com/plantedge/plantedge/agent/config"
	"github.com/plantedge/plantedge/buffer"
)

// runMarkKey holds, while the agent runs, when the run started and how many
// runs before it in a row ended without a clean stop: written before the
// sources start, deleted at a clean stop once they are stopped (their OPC UA
// sessions closed). Found at start, it says the previous run was killed,
// crashed or lost power: its OPC UA sessions were left on the servers, each
// holding one of a PLC's few session slots for its lifetime (the one the
// server gave, kept with the session; 2 minutes by default, what plantedge
// asks, where none is known); a crash loop restarted every 5 s by systemd left one per start
// (22–24 held on node-opcua's test server, packaging README) until each
// source kept what closes its session (opcSessions) and closed the one the
// previous run left before connecting. The agent says so; it does not wait
// at start (data would flow later after every kill).
const runMarkKey = "agent/run"

type runMark struct {
	Started time.Time `json:"started"`
	// Unclean counts the runs in a row before this one that ended
	// without a clean stop, each started within crashLoopWindow of the
	// next.
	Unclean int `json:"unclean"`
}

// crashLoopRuns unclean ends in a row, each run started within
// crashLoopWindow (the default OPC UA session lifetime) of the next, are
// called a crash loop.
const (
	crashLoopRuns   = 3
	crashLoopWindow = 2 * time.Minute
)

// markRunStart says what the previous run left when it ended uncleanly,
// for OPC UA sources only, and writes this run's mark. Best-effort and
// bounded: a mark that cannot be read or written costs only the message.
func (a *Agent) markRunStart(ctx context.Context, cfg *config.Config, now time.Time) {
	mark := runMark{Started: now}
	if v, err := a.buf.Meta(runMarkKey); err == nil && v != nil {
		var prev runMark
		if json.Unmarshal(v, &prev) == nil {
			mark.Unclean = 1
			if since := now.Sub(prev.Started); since >= 0 && since < crashLoopWindow {
				mark.Unclean = prev.Unclean + 1
			}
			if len(cfg.OPCUA) > 0 {
				a.logUnclean(mark.Unclean, prev.Started)
			}
		}
	}
	b, err := json.Marshal(mark)
	if err != nil {
		return
	}
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := a.buf.PutMeta(wctx, buffer.KV{Key: runMarkKey, Value: b}); err != nil {
		a.log.Debug("run mark not written", "err", err)
	}
}

func (a *Agent) logUnclean(unclean int, prevStart time.Time) {
	if unclean >= crashLoopRuns {
		a.log.Warn("crash loop: the last runs ended without a clean stop, each started within 2 minutes of the next; "+
			"each start closes the OPC UA sessions the previous one left before its sources connect, but a run killed "+
			"while connecting leaves its session on the server for its lifetime ("+a.keptSessionLifetimes()+"), and a server "+
			"with few session slots refuses new sessions meanwhile (BadTooManySessions), the HMI's too: "+
			"the journal says why the agent ends; `systemctl stop plantedge` ends the loop",
			"unclean_runs", unclean, "previous_start", prevStart.UTC().Format(time.RFC3339))
		return
	}
	a.log.Info("the previous run did not stop cleanly (killed, crashed or power lost): each OPC UA source closes the session it left on its server before it connects; one the server does not close is kept there for its lifetime ("+a.keptSessionLifetimes()+")",
		"previous_start", prevStart.UTC().Format(time.RFC3339))
}

// clearRunMark deletes the run's mark at a clean stop.
func (a *Agent) clearRunMark() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := a.buf.PutMeta(ctx, buffer.KV{Key: runMarkKey}); err != nil {
		a.log.Debug("run mark not cleared", "err", err)
	}
}
