package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"regexp"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/plantedge/plantedge/agent"
	"github.com/plantedge/plantedge/agent/config"
	"github.com/plantedge/plantedge/buffer"
	"github.com/plantedge/plantedge/internal/decimal"
)

type flushOptions struct {
	config   string
	timeout  time.Duration
	interval time.Duration
}

func newFlushCmd() *cobra.Command {
	o := &flushOptions{interval: 500 * time.Millisecond}
	cmd := &cobra.Command{
		Use:   "flush",
		Short: "Forward now (skip the backoff wait) and show progress until the buffer is empty",
		Long: "flush asks the running agent to forward immediately and waits until the buffer is drained.\n" +
			"It exits 0 when drained, 1 when the timeout passes first (or the buffer drained while its writes\n" +
			"fail: a full or read-only disk), 2 when the agent is not running (also when another program\n" +
			"answers at listen and no agent holds the buffer file: nothing is flushed),\n" +
			"3 as soon as all that is left is held: records that cannot reach Odoo yet (no work order in\n" +
			"progress, a work center Odoo lacks, a machine removed from the config) — plantedge status\n" +
			"says which; waiting would not move them; judged on a round that reached Odoo — and 4 when it\n" +
			"could not ask the agent (the config file unreadable, an agent that runs but does not answer at\n" +
			"listen, another plant's agent — another site and data_dir — answering there, or another program\n" +
			"there while a process holds the buffer file or this user may not look into data_dir, or an agent\n" +
			"that stopped during the flush). Dead letters\n" +
			"are reported, not waited for (plantedge deadletter list).",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return o.Run(cmd.Context(), cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	cmd.Flags().StringVarP(&o.config, "config", "c", defaultConfig, "config file")
	o.timeout = 5 * time.Minute
	cmd.Flags().Var((*secondsOrDuration)(&o.timeout), "timeout", "give up after this long (5m, 90s; a bare number is seconds)")
	return cmd
}

// drainable is what flush waits for: records that can reach Odoo now.
// Counts held because no work order is in progress can't, so they are
// reported but not waited for.
func drainable(st agent.Status) (pending int, held float64) {
	for _, m := range st.Machines {
		held = decimal.Add(held, m.Unattributed)
	}
	return max(0, st.Buffer.Pending-st.Buffer.Held), held
}

// heldWhy is why counts are held: no work order in progress, or Odoo
// refusing the bot user the work orders (then starting one would not help).
func heldWhy(st agent.Status) string {
	for _, m := range st.Machines {
		if m.Unattributed > 0 && strings.HasPrefix(m.Error, agent.WorkordersRefusedPrefix) {
			return "Odoo refuses the bot user the work orders in progress: give it read access to them"
		}
	}
	// A machine whose pieces wait for another reason says it (its work
	// center missing in Odoo, or its code on two of them), as status does.
	for _, m := range st.Machines {
		if m.Unattributed > 0 && m.Error != "" {
			return m.ID + ": " + oneLine(m.Error)
		}
	}
	return "waiting for a work order in progress"
}

// cannotAsk makes err exit 4 (flush, accept-qty, rebook): the agent could
// not be asked (the config unreadable, the agent not answering), which a
// script must not take for flush's timeout, accept-qty's nothing to accept
// or rebook's refused bookings (1).
func cannotAsk(err error) error {
	return &exitError{code: 4, msg: err.Error(), cause: err}
}

func (o *flushOptions) Run(ctx context.Context, w, errw io.Writer) error {
	cfg, err := loadForAgent(o.config, errw)
	if err != nil {
		return cannotAsk(err)
	}
	c := agent.NewAPIClient(cfg.Listen).ForConfig(cfg)
	// --timeout bounds the whole command, a hung (or paused) agent's
	// requests included; a second more lets the last status through.
	ctx, cancel := context.WithTimeout(ctx, max(o.timeout, 0)+time.Second)
	defer cancel()
	deadline := time.Now().Add(o.timeout)
	timedOut := func(err error) error {
		return &exitError{code: 1, msg: fmt.Sprintf("not drained within %s: the agent did not answer (%v)", o.timeout, err)}
	}
	ticket, err := c.Flush(ctx)
	if err != nil {
		if err := anotherProgram(cfg, err); err != nil {
			return err
		}
		if errors.Is(err, agent.ErrNotRunning) && ctx.Err() == nil {
			if err := notAnswering(cfg); err != nil {
				return cannotAsk(err)
			}
			return &exitError{code: 2, msg: "agent not running: start it (systemctl start plantedge); " + onDisk(cfg)}
		}
		if ctx.Err() != nil {
			return timedOut(err)
		}
		return cannotAsk(notTheAgent(cfg, err, "flush"))
	}
	tty, width := false, 80
	if f, ok := rawWriter(w).(*os.File); ok {
		tty = term.IsTerminal(int(f.Fd()))
		if cols, _, err := term.GetSize(int(f.Fd())); err == nil && cols > 20 {
			width = cols
		}
	}
	// While Odoo is not reachable, ask again now and then, not at every
	// poll: each request is a connection attempt (the agent never lets one
	// cut an authentication backoff or a Retry-After short).
	kickEvery := time.Second
	nextKick := time.Now().Add(kickEvery)
	start := -1
	deadBefore := -1 // dead letters at the first status: those since are this flush's
	var callsBefore uint64
	lastLine, lastShape, lastAt := "", "", time.Time{}
	began := time.Now()
	for {
		// (A status without agent_running, which another program's JSON
		// lacks, is an error: the cli probe read {"status":"ok"} at listen
		// as nothing pending, "drained", exit 0.)
		st, err := c.Status(ctx)
		if err != nil {
			if start < 0 {
				// A program that took the flush request but not the
				// status's, or none that answered in time.
				if err := anotherProgram(cfg, err); err != nil {
					return err
				}
			}
			if ctx.Err() != nil {
				if tty {
					fmt.Fprintln(w)
				}
				return timedOut(err)
			}
			return cannotAsk(err)
		}
		pending, held := drainable(st)
		if start < 0 {
			start, deadBefore, callsBefore = pending, st.Buffer.DeadLetters, st.Odoo.Calls
			if n := restartNote(st); n != "" {
				fmt.Fprintln(w, "note: "+n)
			}
		}
		forward := "" // status's pending counts the held records too (the spec audit's L3)
		if st.Buffer.Held > 0 {
			forward = " to forward"
		}
		line := fmt.Sprintf("pending %s%s, odoo %s", plural(pending, "record"), forward, odooWord(st))
		calls := "" // like next: a count going up is no reason to print another line
		if n := st.Odoo.Calls - callsBefore; pending >= start && n > 0 && st.Odoo.State == "online" {
			// A round acknowledges its records at its end: until the
			// first one ends, say that it moves (the disk probe read 30 s
			// of the same count as stuck).
			line += " (a round is under way)"
			calls = fmt.Sprintf(": %s so far", plural(int(n), "Odoo call"))
		}
		if st.Buffer.Held > 0 {
			line += fmt.Sprintf(", %s held", plural(st.Buffer.Held, "record"))
			if held > 0 {
				line += fmt.Sprintf(" (among them %s, %s)", heldPieces(held), heldWhy(st))
			}
			line += " — see plantedge status"
		}
		if st.Buffer.DeadLetters > 0 {
			line += ", " + plural(st.Buffer.DeadLetters, "dead letter")
		}
		if st.Odoo.LastError != "" && st.Odoo.State != "online" {
			line += " — " + oneLine(st.Odoo.LastError)
		}
		next := calls // a countdown: not a reason to print another line
		if st.Odoo.State != "online" && st.Odoo.NextAttemptSeconds > 0 {
			next = fmt.Sprintf(" (next attempt in %s)", flushNextAttempt(st.Odoo, max(time.Until(nextKick), o.interval)))
			if st.Odoo.State == "auth_failed" {
				next = authWaitNote(st.Odoo)
			}
			if st.Odoo.RetryAfterSeconds > 0 {
				next = fmt.Sprintf(" (next attempt in %s: Odoo asked to wait with Retry-After, which a flush does not cut short)",
					time.Duration(math.Ceil(st.Odoo.NextAttemptSeconds))*time.Second)
			}
			if st.Odoo.SettleSeconds > 0 {
				next = fmt.Sprintf(" (next attempt in %s: a write Odoo did not answer may still commit until then, which a flush does not cut short)",
					time.Duration(math.Ceil(st.Odoo.NextAttemptSeconds))*time.Second)
			}
		}
		eta := "" // a backlog's time left: like next, no reason to print another line
		if st.Drain != nil {
			eta = "; " + etaWords(st.Drain)
		}
		if tty {
			// One line redrawn in place: cut to the terminal's width, or
			// a wrapped line would pile up copies of itself.
			fmt.Fprintf(rawWriter(w), "\r\033[K%s", fitWidth(bar(start, pending, 30)+" "+line+next+eta, width))
		} else if same := volatile.ReplaceAllString(line, ""); same != lastLine {
			// A line per change — but a count going down on its own (a
			// drain, machines adding records) at most every 5 s: the soak
			// probe's 20 s flush printed 40 lines of the same words.
			// After a minute, at most every 30 s (the technician probe: a
			// 5-minute flush under cron logged 60 lines of the same words).
			every := 5 * time.Second
			if time.Since(began) > time.Minute {
				every = 30 * time.Second
			}
			if shape := countDigits.ReplaceAllString(same, "#"); shape != lastShape || time.Since(lastAt) >= every {
				fmt.Fprintln(w, line+next+eta)
				lastLine, lastShape, lastAt = same, shape, time.Now()
			}
		}
		// An empty buffer is drained whatever round it is. What is held is
		// judged on a round that began after the request: the round before
		// may still show what the request was about (a work order since
		// started in Odoo).
		// On a running plant new records keep coming: what was pending at
		// the request having gone is drained.
		through := ticket.Past(st) && ticket.Through(st)
		done := st.Buffer.Pending == 0 || pending == 0 && ticket.Past(st) || through
		if done && st.Buffer.Pending > 0 && st.Buffer.Held > 0 && st.Odoo.State != "online" {
			// What is held was judged by the work orders as Odoo last
			// showed them: a round that could not reach Odoo read none
			// (the README audit: exit 3, "waiting for Odoo-side action",
			// for an order since started, while Odoo was down). Wait
			// for a round that reaches it, or the timeout.
			done = false
		}
		if done {
			if tty {
				fmt.Fprintln(w)
			}
			if st.Buffer.WriteError != "" {
				// Drained, but what the sources sent since the disk failed
				// is not in it: not everything reached Odoo.
				return &exitError{code: 1, msg: "buffer drained, but buffer writes are failing (disk full? read-only?): " + st.Buffer.WriteError +
					" — new values wait at the sources until writes succeed"}
			}
			if st.Buffer.Held > 0 {
				// Not drained (the buffer is not empty), and no wait moves
				// them: say so now.
				since := "" // new records keep coming on a running plant
				if pending > 0 {
					since = fmt.Sprintf(" (%s came in since the request)", plural(pending, "record"))
				}
				return &exitError{code: 3, msg: fmt.Sprintf("forwarded what can go%s; %s held, waiting for Odoo-side "+
					"action (a work order in progress, a work center, a machine back in the config): plantedge status says which", since, plural(st.Buffer.Held, "record"))}
			}
			refused := ""
			if n := st.Buffer.DeadLetters - deadBefore; n > 0 {
				// Out of the buffer, but not in Odoo: not to be read as
				// "all in Odoo".
				// Odoo's refusals, or pieces of an order finished meanwhile:
				// the reason is in the dead letter, not known here.
				refused = fmt.Sprintf("; %s went to the dead letters during the flush (refused by Odoo, or pieces of a finished work order): "+
					"not in Odoo (plantedge deadletter list says why and what to do)", plural(n, "record"))
			}
			if pending > 0 {
				gone := "reached Odoo"
				if refused != "" {
					gone = "left the buffer"
				}
				fmt.Fprintf(w, "drained: what was pending at the request has %s (%s came in since)%s\n", gone, plural(pending, "record"), refused)
				return nil
			}
			fmt.Fprintln(w, "drained"+refused)
			return nil
		}
		if time.Now().After(deadline) {
			if tty {
				fmt.Fprintln(w)
			}
			return &exitError{code: 1, msg: notDrained(o.timeout, pending, st)}
		}
		select {
		case <-ctx.Done():
			return timedOut(ctx.Err())
		case <-time.After(o.interval):
		}
		if st.Odoo.State != "online" && time.Now().After(nextKick) {
			_, _ = c.Flush(ctx)
			kickEvery = min(2*kickEvery, 30*time.Second)
			nextKick = time.Now().Add(kickEvery)
		}
	}
}

// anotherProgram is flush's exit for err, another program's answer at
// listen (or none in time) while no agent holds the buffer file (its lock
// is free, and this user may look: agent.ForeignError): the agent is not
// running — exit 2, as for nothing at listen — and another program is on
// its port (the cli probe: exit 4, "could not ask", which reads as an
// agent that does not answer). nil for other errors: an agent may hold the
// file (one not answering at listen, or one of another version), another
// site's agent answers, or nothing does (ErrNotRunning alone).
func anotherProgram(cfg *config.Config, err error) error {
	if !stoppedForeign(err) {
		return nil
	}
	return &exitError{code: 2, cause: err, msg: fmt.Sprintf("%s Nothing was flushed. %s; %s", anotherProgramAt(cfg, err), freeTheListen, onDisk(cfg))}
}

// onDisk says what a stopped agent left to forward: its buffer file, kept
// on disk, or none — no file yet, or one of 0 bytes, which status says
// EMPTY (it said "the buffer is kept on disk" for those too).
func onDisk(cfg *config.Config) string {
	fi, err := os.Stat(cfg.BufferPath())
	switch {
	case errors.Is(err, os.ErrNotExist):
		return fmt.Sprintf("there is no buffer file at %s yet: it has never run with this data_dir, and nothing is buffered", cfg.BufferPath())
	case zeroBytes(fi, err):
		return fmt.Sprintf("its buffer file %s is empty (0 bytes): nothing is buffered in it (plantedge status says more)", cfg.BufferPath())
	}
	return "the buffer is kept on disk"
}

// zeroBytes reports whether fi, err (os.Stat's of a stopped agent's
// buffer file) is a file of 0 bytes: nothing buffered, and left as it is —
// opened, it would become a fresh buffer and the agent's start would no
// longer say that what it held is lost (buffer.ErrEmptyFile).
func zeroBytes(fi os.FileInfo, err error) bool {
	return err == nil && fi.Mode().IsRegular() && fi.Size() == 0
}

// volatile matches what changes in an error from one retry to the next
// without saying anything new (a connection's local port), so a log of
// flush's output gets a line per change of state, not per retry.
var volatile = regexp.MustCompile(`:\d+->`)

// fitWidth cuts s to one terminal line of width columns.
func fitWidth(s string, width int) string {
	r := []rune(s)
	if len(r) < width {
		return s
	}
	return string(r[:width-2]) + "…"
}

func bar(total, left, width int) string {
	done := width
	if total > 0 {
		done = width * (total - left) / total
	}
	done = max(0, min(width, done))
	return "[" + strings.Repeat("#", done) + strings.Repeat(".", width-done) + "]"
}

// countDigits are the numbers of a progress line, left out to tell a line
// whose counts alone changed.
var countDigits = regexp.MustCompile(`[0-9]+`)

// odooWord is the Odoo link's state for a flush line: offline while the
// agent sends nothing because writes it sent before may still commit says
// so — Odoo may be fine, and a technician reading "offline" checks the WAN.
// notDrained is flush's verdict when its time ran out with pending
// records left.
func notDrained(timeout time.Duration, pending int, st agent.Status) string {
	held := ""
	if st.Buffer.Held > 0 {
		// All held, Odoo not reached: the verdict names them (the
		// review: "0 records pending" and nothing more).
		held = fmt.Sprintf(", %s held (judged when Odoo is reached; plantedge status says which)", plural(st.Buffer.Held, "record"))
	}
	slow := ""
	if ev := stopsBacklog(st); ev > 0 {
		// A healthy drain can outlast the timeout (the drain probe: 2,129
		// lines of 100 machines took 10 minutes at 200 a round, and a
		// flush of 5 minutes failed without saying why).
		slow = fmt.Sprintf("; %s of them are stops and runs, which go to Odoo as downtime lines, %s: "+
			"a backlog of them after an outage takes several rounds (plantedge status shows a round's length)", plural(ev, "record"), linesPace(st.Odoo))
	}
	if st.Drain != nil {
		slow += "; the drain goes on: " + etaWords(st.Drain)
	}
	if n := restartNote(st); n != "" {
		slow += "; " + n
	}
	if st.Odoo.State == "auth_failed" {
		// No wait drains it: the verdict says what to look at (the
		// operator probe: "(odoo auth_failed)" and nothing more).
		slow += "; Odoo refuses the API key: plantedge status says why (the key expired, revoked or replaced, the bot user archived, " +
			"odoo.username renamed); mend that, then flush again (docs/runbook.md: auth_failed)"
	}
	return fmt.Sprintf("not drained within %s: %s pending%s (odoo %s)%s", timeout, plural(pending, "record"), held, odooWord(st), slow)
}

// flushNextAttempt is when a flush's Odoo is asked next, in whole seconds:
// at the agent's next attempt (agentSeconds), or sooner, when the flush
// asks the agent to try (untilKick; flush asks every 1, 2, 4 … 30 s while
// Odoo is not online) — not the agent's backoff alone (the operator probe:
// "next attempt in 10s", and the next try a second later).
//
// After a refused key (auth_failed) the ask cuts the agent's wait no
// shorter than forward.auth_backoff after the refusal (Odoo's login
// lockout; a new key it tries at once), which the agent's time says once
// asked: the agent's time alone.
func flushNextAttempt(o agent.OdooStatus, untilKick time.Duration) time.Duration {
	wait := time.Duration(o.NextAttemptSeconds * float64(time.Second))
	if o.State != "auth_failed" {
		wait = min(wait, untilKick)
	}
	return time.Duration(math.Ceil(wait.Seconds())) * time.Second
}

// authWaitNote is flush's next attempt while the key is refused, or not
// read: the agent's wait, which the flush's ask cuts to forward.auth_backoff
// after the refusal at most.
func authWaitNote(o agent.OdooStatus) string {
	if strings.Contains(o.LastError, "read secret ") {
		// Odoo refused nothing: a key the agent can read is tried at once.
		return fmt.Sprintf(" (next attempt in %s: the agent cannot use its API key file; once it can, a flush tries it at once)", flushNextAttempt(o, 0))
	}
	return fmt.Sprintf(" (next attempt in %s: a flush tries a refused key again once forward.auth_backoff has passed since the refusal, not sooner, so that Odoo does not lock this address out — and not before a lockout Odoo reported is over; a new key it tries at once)", flushNextAttempt(o, 0))
}

// restartNote says that settings a reload found changed wait for a restart
// ("" when none do): a flush goes on with the old ones (an odoo.url fixed,
// then reloaded, is not tried).
func restartNote(st agent.Status) string {
	if st.Config == nil || len(st.Config.RestartNeededFor) == 0 {
		return ""
	}
	return fmt.Sprintf("the configuration's changes to %s wait for a restart: the agent still uses the settings it started with (systemctl restart plantedge)",
		strings.Join(st.Config.RestartNeededFor, ", "))
}

// loadSize is the downtime lines a load carries as status says (o), and
// how many records a round takes at that size: fewer after loads Odoo took
// too long for.
func loadSize(o agent.OdooStatus) (lines, perRound int) {
	if n := o.LinesPerLoad; n > 0 && n < agent.LinesPerLoad {
		return n, agent.EventsPerRound / agent.LinesPerLoad * n
	}
	return agent.LinesPerLoad, agent.EventsPerRound
}

// linesPace says how an outage's stops go to Odoo (status and flush): at
// the load size in force, shrunk after loads Odoo took too long for.
func linesPace(o agent.OdooStatus) string {
	lines, perRound := loadSize(o)
	shrunk := ""
	if lines < agent.LinesPerLoad {
		shrunk = fmt.Sprintf(" (not %d: Odoo took about odoo.timeout or longer for larger loads, or a proxy in front of it refused them as too large)", agent.LinesPerLoad)
	}
	return fmt.Sprintf("%d a round in loads of %d%s, each round also booking every machine's counts and scrap", perRound, lines, shrunk)
}

// stopsBacklog is how many stop and run records wait with Odoo online when
// they are more than a round sends (linesPace), so the oldest age grows
// meanwhile. 0 when they are not.
func stopsBacklog(st agent.Status) int {
	_, perRound := loadSize(st.Odoo)
	if ev := st.Buffer.Lanes[buffer.LaneEvents.String()].Pending; ev > perRound && st.Odoo.State == "online" {
		return ev
	}
	return 0
}

func odooWord(st agent.Status) string {
	if st.Odoo.State == "offline" && st.Odoo.SettleSeconds > 0 {
		return "not asked yet (writes sent before may still commit)"
	}
	return st.Odoo.State
}

// heldPieces says what the held count records hold.
func heldPieces(n float64) string {
	return "the counts of " + agent.Pieces(n, "")
}
