package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	"github.com/spf13/cobra"

	"github.com/plantedge/plantedge/agent"
	"github.com/plantedge/plantedge/agent/config"
	"github.com/plantedge/plantedge/buffer"
	"github.com/plantedge/plantedge/connectors"
	"github.com/plantedge/plantedge/odoo"
)

type statusOptions struct {
	config       string
	json         bool
	countPending bool
}

func newStatusCmd() *cobra.Command {
	o := &statusOptions{}
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show sources, buffer, Odoo link, machines and dead letters at a glance",
		Long: "status shows the sources, the buffer (records, bytes, oldest age, dead letters), the Odoo link (state,\n" +
			"last error, next retry) and each machine's work order and counts. It asks the running agent at listen;\n" +
			"with the agent stopped it reads the buffer file read-only and says so (AGENT NOT RUNNING). --json prints\n" +
			"the same for scripts and monitoring. With the agent stopped, the machines' pending counts are read from a backlog\n" +
			"of up to 300,000 records; --count-pending reads a bigger one too (seconds for millions).\n\n" +
			"It exits 0 when it could tell, and 1 when it could not tell everything: a buffer file it cannot read, an\n" +
			"agent that does not answer, a config file that does not load (what the buffer file holds is still shown),\n" +
			"another site's agent or another program at listen. What it could read is printed, the reason on\n" +
			"stderr; --json still prints the document, with status_error.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return o.Run(cmd.Context(), cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	cmd.Flags().StringVarP(&o.config, "config", "c", defaultConfig, "config file")
	cmd.Flags().BoolVar(&o.json, "json", false, "print JSON (for scripts and monitoring)")
	cmd.Flags().BoolVar(&o.countPending, "count-pending", false, "with the agent stopped, read the machines' pending counts however big the backlog")
	return cmd
}

func (o *statusOptions) Run(ctx context.Context, w, errw io.Writer) error {
	cfg, broken, err := loadForAgentPartly(o.config, errw)
	if err != nil {
		if o.json {
			// Not even the site is known; the document says why.
			st := agent.UnknownStatus(&config.Config{}, false)
			st.Buffer.Path, st.Odoo.LastError = "", "not known: the config file could not be read"
			return failedStatusJSON(w, st, err)
		}
		// The first line on stdout says which case this is, as below (the
		// operator probe: an empty stdout without the config file, or as
		// a user who may not read it).
		fmt.Fprintf(w, "STATUS NOT KNOWN: config file %s NOT READ (why: below)\n", o.config)
		return err
	}
	offline := agent.OfflineStatus
	if o.countPending {
		offline = agent.OfflineStatusCounted
	}
	st, err := fetchStatus(ctx, cfg, offline)
	if err != nil {
		if o.json {
			return failedStatusJSON(w, st, err)
		}
		// A technician reading stdout gets the line that says which case
		// this is; the reason follows on stderr (the spec audit's L2: an
		// empty stdout).
		if be := (*bufferReadError)(nil); errors.As(err, &be) {
			printStatus(w, st)
			return err
		}
		if st.AgentRunning {
			fmt.Fprintf(w, "site %s — agent running, status NOT KNOWN (why: below)\n", st.Site)
		} else if errors.Is(err, buffer.ErrEmptyFile) {
			// Read, and nothing in it: said as what it is (the README
			// probe: "NOT READ", the reason only that it was empty).
			fmt.Fprintf(w, "site %s — AGENT NOT RUNNING, buffer file %s EMPTY (0 bytes): nothing is buffered in it (more: below)\n", st.Site, cfg.BufferPath())
		} else {
			fmt.Fprintf(w, "site %s — AGENT NOT RUNNING, buffer file %s NOT READ (why: below)\n", st.Site, cfg.BufferPath())
		}
		return err
	}
	if broken != nil && !st.AgentRunning {
		// Stopped, with a file that does not load (what run's exit 78
		// leaves): the machines and sources it names are not known, so
		// status cannot tell everything — exit 1 (the spec audit: exit 0,
		// no machine, and status_error empty).
		err := fmt.Errorf("%s does not load, so its machines and sources are not shown, only what the buffer file holds: %w", o.config, broken)
		if o.json {
			return failedStatusJSON(w, st, err)
		}
		printStatus(w, st)
		return err
	}
	if o.json {
		return writeStatusJSON(w, st)
	}
	printStatus(w, st)
	return nil
}

// failedStatusJSON: scripts get a document whatever happened — what is
// known, and why the rest is not (status_error) — and exit 1 all the same.
func failedStatusJSON(w io.Writer, st agent.Status, err error) error {
	st.StatusError = err.Error()
	if jerr := writeStatusJSON(w, st); jerr != nil {
		return jerr
	}
	return err
}

func writeStatusJSON(w io.Writer, st agent.Status) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(st)
}

// fetchStatus asks the running agent, or reads the buffer when it is stopped.
// offline reads the file (agent.OfflineStatus or OfflineStatusCounted).
func fetchStatus(ctx context.Context, cfg *config.Config, offline func(*config.Config) (agent.Status, error)) (agent.Status, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	st, err := agent.NewAPIClient(cfg.Listen).ForConfig(cfg).Status(ctx)
	if err == nil {
		return st, nil
	}
	if errors.Is(err, agent.ErrOtherSite) {
		// Another plant's agent answers at this listen address: this
		// configuration's runs only if it holds its buffer file (the spec
		// audit: agent_running said true for an agent that never ran).
		running, _ := buffer.InUse(cfg.BufferPath())
		if !running {
			// Stopped: its buffer file is read, as for any stopped agent
			// (a backlog was shown as pending 0; the review), and the
			// error says who answers.
			if st, oerr := offline(cfg); oerr == nil {
				return st, &bufferReadError{err}
			}
		}
		return agent.UnknownStatus(cfg, running), err
	}
	if nerr := notThisAgent(cfg, err, "status"); nerr != nil {
		// Stopped (another program holds its port): its buffer file is
		// read, as for any stopped agent, and the error says what answers.
		st, oerr := offline(cfg)
		if oerr == nil {
			return st, &bufferReadError{nerr}
		}
		if errors.Is(oerr, buffer.ErrEmptyFile) {
			return st, fmt.Errorf("%w; %w", nerr, oerr) // said EMPTY
		}
		return agent.UnknownStatus(cfg, false), nerr
	}
	if !errors.Is(err, agent.ErrNotRunning) {
		return agent.UnknownStatus(cfg, true), shortAnswer(err)
	}
	if err := notAnswering(cfg); err != nil {
		return agent.UnknownStatus(cfg, true), err
	}
	return offline(cfg)
}

// keyFileUnreadable says that err, an API key file's read error, is one
// of its owner, mode or path, not of what it holds.
func keyFileUnreadable(err string) bool {
	for _, s := range []string{"permission denied", "operation not permitted", "no such file or directory", "is a directory", "not a directory"} {
		if strings.Contains(err, s) {
			return true
		}
	}
	return false
}

// notThisAgent says that what answered at listen (err: an
// *agent.ForeignError, an answer without the agent's header or none in
// time) is not this configuration's agent, when no agent holds its buffer
// file: another program on the port, where the agent, started, exits with
// "bind: address already in use". nil for other errors (the agent's own
// answers; an agent of another version, or a hung one, holding the file).
// command is the one to run again as root (status, flush), for a user who
// may not look into data_dir.
func notThisAgent(cfg *config.Config, err error, command string) error {
	var fe *agent.ForeignError
	if !errors.As(err, &fe) {
		return nil
	}
	if fe.LockErr != nil {
		// A user who may not look into data_dir (the packaged one is the
		// service's, 0750) cannot tell from the file's lock: an agent of
		// another version answering so is not ruled out (review 44: said
		// "agent running" with the other program's page).
		return fmt.Errorf("what answers at listen %s is not this agent (%s): another program on that port? The agent cannot listen there "+
			"while it is taken; whether an agent holds %s this user may not see (%v): sudo plantedge %s", cfg.Listen, answered(err), cfg.BufferPath(), fe.LockErr, command)
	}
	return errors.New(anotherProgramAt(cfg, err) + " The agent cannot listen there while it is taken")
}

// anotherProgramAt says that the agent is not running and what answers at
// its listen instead (err: an *agent.ForeignError without LockErr).
func anotherProgramAt(cfg *config.Config, err error) string {
	return fmt.Sprintf("agent not running (no agent holds %s), and what answers at listen %s is not it (%s): another program on that port?",
		cfg.BufferPath(), cfg.Listen, answered(err))
}

// stoppedForeign reports err as another program at listen with no agent
// holding the buffer file: the agent is not running.
func stoppedForeign(err error) bool {
	var fe *agent.ForeignError
	return errors.As(err, &fe) && fe.LockErr == nil
}

// freeTheListen is what to do about another program on the agent's port.
const freeTheListen = "The agent cannot listen there while it is taken: stop that program or give listen another address, then start the agent (systemctl start plantedge)"

// throughTheAgentOnly is the exit of command, which works only through
// the running agent (rebook, accept-qty), when another program answers at
// listen and no agent holds the buffer file (stoppedForeign): exit 2, as
// for nothing at listen (it was 4 for that program's refusal, and its
// JSON was read as the agent's answer). done says what the command does
// ("rebooked"), how how it works through the agent ("books").
func throughTheAgentOnly(cfg *config.Config, err error, command, done, how string) error {
	return &exitError{code: 2, cause: err, msg: fmt.Sprintf("%s Nothing was %s: %s %s through the agent. %s, then run %s again",
		anotherProgramAt(cfg, err), done, command, how, freeTheListen, command)}
}

// notTheAgent is err, an answer at listen that is not what the agent
// answers, as the commands that ask the agent say it (command, to run
// again as root): another program on the port when no agent holds the
// buffer file (notThisAgent), else what answered in one line
// (shortAnswer). Other errors are err.
func notTheAgent(cfg *config.Config, err error, command string) error {
	if nerr := notThisAgent(cfg, err, command); nerr != nil {
		return nerr
	}
	return shortAnswer(err)
}

// shortAnswer is err, or, for an answer at listen that is no agent's words
// (a page of several lines, HTML), what answered in one line (review 44:
// printed whole with an agent holding the buffer file, one started with
// another listen).
func shortAnswer(err error) error {
	var ae *agent.AnswerError
	if !errors.As(err, &ae) || oneLineText(ae.Body) && len(ae.Body) <= agentWordsMax {
		return err
	}
	return fmt.Errorf("agent: %s, not in the agent's words: another program at listen (the agent holding the buffer file started with another listen?)", answered(err))
}

// agentWordsMax is the longest line of text taken for the agent's own
// words: its refusals say what to do, and some are long (a retry of a dead
// letter made on a finished work order: 374 characters; one that quotes
// Odoo's answer, longer); a longer line is another program's.
const agentWordsMax = 4096

// answered says in one short line what answered at listen (err): another
// program's page would print whole (review 44: 13 lines of HTML, and up to
// 64 MiB).
func answered(err error) string {
	var ae *agent.AnswerError
	if !errors.As(err, &ae) {
		if errors.Is(err, agent.ErrNotAnswering) {
			return "it takes the connection but does not answer in time"
		}
		return cut(oneLine(err.Error()), 200)
	}
	what := "it answered " + ae.Status
	if ae.ContentType != "" {
		what += " (" + strings.TrimSpace(strings.SplitN(ae.ContentType, ";", 2)[0]) + ")"
	}
	if ae.Body != "" && oneLineText(ae.Body) {
		what += ": " + cut(ae.Body, 120)
	}
	if ae.Unmarked {
		what += ", without the agent's " + agent.AgentHeader + " header"
	}
	return what
}

// oneLineText says that an answer's body is a line of text, as the
// agent's own refusals are, not a page (several lines, HTML).
func oneLineText(body string) bool {
	return !strings.Contains(body, "\n") && !strings.HasPrefix(body, "<")
}

// cut is s cut to n bytes at most, at a rune's start, with "…" when cut.
func cut(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

// bufferReadError is an error of a status read from the buffer file all
// the same: its agent is stopped.
type bufferReadError struct{ error }

func (e *bufferReadError) Unwrap() error { return e.error }

// notAnswering tells apart "no agent at listen" from an agent that runs
// (it holds the buffer file) but does not answer there: it is still
// starting, or listen was edited since it started (a reload keeps the old
// address), and telling the technician to start it would be wrong. An
// offline compact holds the file too (the README audit: status named a
// running agent during one); the lock does not say whose it is.
func notAnswering(cfg *config.Config) error {
	if running, _ := buffer.InUse(cfg.BufferPath()); !running {
		return nil
	}
	return &exitError{code: 1, msg: fmt.Sprintf("the agent is running (it holds %s) but does not answer at %s: it is still starting, "+
		"or listen was changed since it started (a restart applies it: systemctl restart plantedge) — unless a plantedge compact "+
		"holds the file for now", cfg.BufferPath(), cfg.Listen)}
}

// behindRound is the round time from which status says that forward.rate
// holds Odoo behind (when most of it is the wait for the rate).
const behindRound = 20

func printStatus(w io.Writer, st agent.Status) {
	if st.AgentRunning {
		fmt.Fprintf(w, "plantedge %s — site %s — agent running (up %s)\n", st.Version, st.Site, (time.Duration(st.Uptime) * time.Second).String())
	} else {
		from := "read from the buffer file"
		if st.Buffer.NoFile {
			from = "and no buffer file yet"
		}
		fmt.Fprintf(w, "site %s — AGENT NOT RUNNING (%s)\n", st.Site, from)
		if st.LastError != "" {
			fmt.Fprintf(w, "WARNING: %s\n", oneLine(st.LastError))
		}
	}
	if c := st.Config; c != nil {
		if c.LastReloadError != "" && !c.ChangedSinceLoaded {
			// The file was put back as the agent runs it: history.
			fmt.Fprintf(w, "config reload rejected %s (%s); the file is back as the agent runs it: nothing to do\n",
				ago(c.LastReloadErrorAgeSeconds), c.LastReloadError)
		} else if c.LastReloadError != "" {
			fmt.Fprintf(w, "CONFIG RELOAD REJECTED %s: %s\n          the agent runs the configuration it had; fix %s (plantedge validate), then systemctl reload plantedge\n",
				ago(c.LastReloadErrorAgeSeconds), c.LastReloadError, c.File)
		} else if len(c.RestartNeededFor) > 0 {
			fmt.Fprintf(w, "CONFIG CHANGES WAIT FOR A RESTART (%s): a reload does not apply them; systemctl restart plantedge\n",
				strings.Join(c.RestartNeededFor, ", "))
		} else if c.ChangedSinceLoaded {
			fmt.Fprintf(w, "CONFIG FILE CHANGED since the agent read it: plantedge validate, then systemctl reload plantedge to apply %s\n", c.File)
		}
	}
	for _, c := range st.Certificates {
		// Only one within 30 days, or past: the plant stops booking (or
		// reading a source) the day it expires.
		switch {
		case c.Expired:
			fmt.Fprintf(w, "CERTIFICATE EXPIRED on %s: %s — %s (docs/runbook.md: A certificate about to expire)\n",
				c.NotAfter.UTC().Format(connectors.CertDateLayout), c.What(), c.Todo())
		case c.ExpiresSoon:
			fmt.Fprintf(w, "CERTIFICATE EXPIRES %s (in %s): %s — %s (docs/runbook.md: A certificate about to expire)\n",
				c.NotAfter.UTC().Format(connectors.CertDateLayout), agent.ExpiresIn(time.Until(c.NotAfter)), c.What(), c.Todo())
		}
	}
	b := st.Buffer
	held := ""
	// The machines' errors say which; a stopped agent's status has none
	// (the technician probe: "see Machines", and nothing there).
	which := "see Machines"
	if !st.AgentRunning {
		which = "the agent's status says which once it runs"
	}
	switch {
	case b.Held > 0 && b.Held == b.Unmapped:
		held = fmt.Sprintf(" (%d held: of machines no longer in the config, see below)", b.Held)
	case b.Held > 0 && b.Unmapped > 0:
		held = fmt.Sprintf(" (%d held: they wait for Odoo-side action, %s, or for machines back in the config, see below)", b.Held, which)
	case b.Held > 0:
		held = fmt.Sprintf(" (%d held: they wait for Odoo-side action, %s)", b.Held, which)
	}
	fmt.Fprintf(w, "\nBuffer    %s%s, %s pending (file %s of %s), oldest %s, dead letters %d, dropped by the quota %d, merged %d\n",
		plural(b.Pending, "record"), held, human(b.Bytes), human(b.FileBytes), human(b.MaxBytes), ageString(b.OldestAgeSeconds), b.DeadLetters, b.Dropped, b.Merged)
	if ev := stopsBacklog(st); ev > 0 {
		// The oldest age grows while an outage's stops drain: say why
		// (the drain probe: 10 minutes of it with nothing to tell).
		fmt.Fprintf(w, "          %s are stops and runs: they go to Odoo as downtime lines, %s\n",
			plural(ev, "record"), linesPace(st.Odoo))
	}
	if d := st.Drain; d != nil {
		fmt.Fprintf(w, "Drain     %s\n", drainLine(d))
	}
	if b.DeadLettersDropped > 0 {
		fmt.Fprintf(w, "          %s dropped by an operator (plantedge deadletter drop)\n", plural(int(b.DeadLettersDropped), "dead letter"))
	}
	if b.NoFile {
		fmt.Fprintf(w, "          no buffer file yet at %s: the agent has not run with this data_dir\n", b.Path)
	}
	if b.LatestDeadLetter != "" {
		fmt.Fprintf(w, "          latest dead letter: %s (plantedge deadletter list)\n", oneLine(b.LatestDeadLetter))
	}
	if b.Unmapped > 0 {
		whose := ""
		for i, m := range b.UnmappedMachines {
			if i > 0 {
				whose += ", "
			}
			whose += m.ID
			if m.Good > 0 {
				whose += " (" + agent.Pieces(m.Good, "") + ")"
			}
		}
		if whose != "" {
			whose = " (" + whose + ")"
		}
		fmt.Fprintf(w, "          %s of machines no longer in the config%s: they wait for the machine to come back, an hour at most, then go to the dead letters\n", plural(b.Unmapped, "record"), whose)
	}
	if len(b.RemovedDeadLetters) > 0 {
		// A removed machine has no row to name them on.
		n, whose := 0, make([]string, 0, len(b.RemovedDeadLetters))
		for _, m := range b.RemovedDeadLetters {
			n += m.DeadLetters
			var holds []string
			if m.Good > 0 {
				holds = append(holds, agent.Pieces(m.Good, "good"))
			}
			if m.Scrap > 0 {
				holds = append(holds, agent.Pieces(m.Scrap, "scrapped"))
			}
			one := fmt.Sprintf("%s: %d", m.ID, m.DeadLetters)
			if len(holds) > 0 {
				one += ", holding " + strings.Join(holds, " and ")
			}
			whose = append(whose, one)
		}
		// Not all of them wait for the machine: Odoo may have refused
		// some, or they hold what was made on a finished work order
		// (review45b: "put the machine back and retry" said of all).
		fmt.Fprintf(w, "          %s of machines no longer in the config (%s): plantedge deadletter list says why each is there; "+
			"what was set aside while its machine was out of the config goes to Odoo by plantedge deadletter retry once the machine is back; "+
			"drop what should not go\n", plural(n, "dead letter"), strings.Join(whose, "; "))
	}
	if b.Recovered != "" {
		fmt.Fprintf(w, "          WARNING: the buffer file was corrupt and was moved to %s\n", b.Recovered)
	}
	if others := slices.DeleteFunc(slices.Clone(b.SetAside), func(p string) bool { return p == b.Recovered }); len(others) > 0 {
		fmt.Fprintf(w, "          WARNING: %s moved aside as corrupt earlier, records in %s not forwarded: %s (look, then delete %s)\n",
			plural(len(others), "buffer file"), agent.OneOrMore(len(others) == 1, "it", "them"), strings.Join(others, ", "),
			agent.OneOrMore(len(others) == 1, "it", "them"))
	}
	if b.PendingPartial != "" {
		fmt.Fprintf(w, "          WARNING: PENDING COUNTS SHORT: %s\n", b.PendingPartial)
	}
	if b.PendingCountsReading > 0 && !st.AgentRunning {
		// A stopped agent's backlog too big to read while the technician
		// waits (and the file's lock keeps a starting agent waiting).
		fmt.Fprintf(w, "          pending counts not read (%s, more than status reads with the agent stopped): the machines' PENDING are not known (shown ?); "+
			"plantedge status --count-pending reads them all (seconds for millions of records), and the agent counts them once it runs\n",
			plural(b.PendingCountsReading, "record"))
	} else if b.PendingCountsReading > 0 {
		// A backlog too big to read while status waits (after a start).
		fmt.Fprintf(w, "          pending counts being read (%s): the machines' PENDING and dead letters are not known yet (shown ?); status again in a moment\n",
			plural(b.PendingCountsReading, "record"))
	}
	if b.WriteError != "" {
		why := "disk failing? file system read-only?"
		switch b.WriteErrorCause {
		case "max_bytes":
			// The quota, not the disk: a forwarding round holds the count
			// records that merging would fold (Odoo slow), or only events
			// and counts are left.
			why = "max_bytes reached, until the records being forwarded reach Odoo"
			if b.Pending == 0 {
				// None to forward (the spec audit): what fills it is kept
				// besides the records.
				why = "max_bytes reached with no record pending: dead letters and what the agent keeps besides the records fill it; drop the dead letters dealt with (plantedge deadletter drop)"
			}
		case "disk_full":
			why = "disk full, and nothing in the buffer file to free: free space on the disk"
		}
		fmt.Fprintf(w, "          WARNING: BUFFER WRITES FAILING for %s (%s): %s — nothing new is acknowledged; values wait at the sources\n",
			ageString(b.WriteFailingSeconds), why, b.WriteError)
	}
	if b.WriteStalledSeconds > 0 {
		fmt.Fprintf(w, "          WARNING: BUFFER WRITE STALLED for %s: the disk of %s does not complete it (frozen or failing disk, hung network file system) — no value is taken meanwhile; check the disk (dmesg)\n",
			ageString(b.WriteStalledSeconds), filepath.Dir(b.Path))
	}
	if b.DiskFullSeconds > 0 {
		fmt.Fprintf(w, "          WARNING: DISK FULL for %s (free space on the disk of %s): the buffer keeps to %s of records, as at max_bytes — telemetry dropped, counts merged, then the oldest events\n",
			ageString(b.DiskFullSeconds), filepath.Dir(b.Path), human(b.LimitBytes))
	}
	if b.ReserveGivenUpSeconds > 0 {
		fmt.Fprintf(w, "          WARNING: DISK FULL: the buffer's reserve file was given up %s ago so that what Odoo takes can be recorded (free space on the disk of %s): the buffer file does not grow for new values until the disk has room for the reserve again\n",
			ageString(b.ReserveGivenUpSeconds), filepath.Dir(b.Path))
	}
	if b.FileRestored > 0 {
		fmt.Fprintf(w, "          WARNING: the buffer file was deleted or replaced while in use (%s since start) and written back\n", plural(int(b.FileRestored), "time"))
	}
	o := st.Odoo
	state := strings.ToUpper(o.State)
	if !st.AgentRunning {
		// Nobody asks Odoo while the agent is stopped: not known to be down.
		state = "NOT ASKED (agent not running)"
	} else if o.SettleSeconds > 0 && o.State == "offline" && o.LastError == agent.SettleNote {
		// Just started, holding back for what the last run sent: Odoo was
		// not asked yet (it is, at once: probeOdoo).
		state = "NOT ASKED YET"
	} else if o.SettleSeconds > 0 && o.State == "offline" {
		// Odoo is not asked while the write waits: it may well be back
		// (the soak probe: "offline" for 2 minutes while Odoo answered).
		state = fmt.Sprintf("WRITES HELD %s (offline at the last try; not asked again before then)", ageString(o.SettleSeconds))
	}
	fmt.Fprintf(w, "Odoo      %s  %s", state, o.URL)
	if o.Protocol != "" {
		fmt.Fprintf(w, "  (%s, Odoo %s)", o.Protocol, o.ServerVersion)
	}
	switch d := o.QtyDigits; {
	case d != nil && o.QtyDigitsAssumed:
		fmt.Fprintf(w, "  QUANTITY DECIMALS NOT READ: %d assumed (the log says why)", *d)
	case d != nil && *d != odoo.DefaultQtyDigits: // Odoo's default goes unsaid
		fmt.Fprintf(w, "  quantities to %d decimals", *d)
	}
	if o.LastAnswerAgeSeconds > 0 {
		// Idle, the agent asks Odoo once a minute: online is as of then.
		fmt.Fprintf(w, "  last answer %s", ago(o.LastAnswerAgeSeconds))
	}
	if o.Slow && o.State == "online" {
		fmt.Fprintf(w, "  SLOW: a call takes %.1f s on average (Odoo busy, or a slow link): a backlog drains that much slower", o.CallSeconds)
	}
	if o.LinesPerLoad > 0 {
		fmt.Fprintf(w, "  LOADS OF %d: Odoo took about odoo.timeout or longer for a load of more downtime lines, or a proxy in front of it refused one as too large (they grow back after quick answers, not to a size refused)", o.LinesPerLoad)
	}
	fmt.Fprintln(w)
	if o.RoundSeconds >= behindRound && o.RateWaitSeconds >= o.RoundSeconds/2 {
		fmt.Fprintf(w, "          BEHIND: a round of writes takes %s, %s of it waiting for forward.rate — Odoo runs about that far behind the machines; raise forward.rate as far as Odoo takes it\n",
			ageString(o.RoundSeconds), ageString(o.RateWaitSeconds))
	}
	if o.SwitchFrom == agent.UnrecordedOdoo {
		// An upgrade from a version that did not record it: most likely
		// this Odoo's, not another's (the upgrade probe).
		fmt.Fprintf(w, "          CHECKING: an older plantedge wrote the buffer file and did not record which Odoo its state belongs to: "+
			"it is checked against this one once it answers, and nothing is sent before\n")
	} else if o.SwitchFrom != "" {
		when := "the agent switches to this one once it answers, and sends nothing before"
		if !st.AgentRunning {
			when = "odoo.url or odoo.database was changed: at its start the agent switches to this one once it answers, and forgets what it wrote to the other — flush to that one first if you can"
		}
		fmt.Fprintf(w, "          SWITCHING: the buffer file's state belongs to another Odoo (%s); %s (docs/runbook.md: Another Odoo database or server)\n", o.SwitchFrom, when)
	}
	if o.KeyExpiresSoon && o.KeyExpiresAt != nil && !o.KeyExpired {
		// Odoo 18+ refuses the key from then on, and the plant's records
		// wait: warned 14 days ahead.
		fmt.Fprintf(w, "          KEY EXPIRES %s (in %s): Odoo refuses the API key from then on — create a new API key for the bot user in Odoo, "+
			"put it where the agent takes its key and restart plantedge (docs/runbook.md: Rotating the API key). "+
			"The soonest of the bot user's keys to expire: Odoo does not say which the agent uses; if it already uses a newer one, delete the old key in Odoo\n",
			o.KeyExpiresAt.UTC().Format("2006-01-02 15:04 UTC"), agent.ExpiresIn(time.Until(*o.KeyExpiresAt)))
	}
	if o.LastError != "" {
		fmt.Fprintf(w, "          last error: %s\n", oneLine(o.LastError))
	}
	if o.State != "online" && st.AgentRunning {
		hint := " (plantedge flush tries now)"
		if o.RetryAfterSeconds > 0 {
			// Odoo (or a proxy in front of it) asked for the wait.
			hint = fmt.Sprintf(" (Odoo asked the agent to wait %s more with Retry-After: plantedge flush does not cut that short)", ageString(o.RetryAfterSeconds))
		}
		if o.SettleSeconds > 0 {
			hint = fmt.Sprintf(" (a write Odoo did not answer, or one sent before the agent stopped, may still commit for %s: nothing is sent before, and plantedge flush does not cut that short)", ageString(o.SettleSeconds))
		}
		if o.State == "auth_failed" && o.SettleSeconds <= 0 {
			// A flush tries the same key again once auth_backoff has
			// passed since the refusal (Odoo's login lockout), a new key
			// at once. (Not the hold for a write in doubt, which nothing
			// cuts short.)
			hint = " (plantedge flush tries the key again once forward.auth_backoff has passed since the refusal — after the bot user was unarchived, say — and a new API key at once)"
			if strings.HasPrefix(o.KeyFrom, "the systemd credential") {
				// systemd copied the key when the service started: a new
				// one in the file reaches the agent only with a restart.
				hint = " (the key is the systemd credential copied at the service's start: put a new key in /etc/plantedge/odoo-api-key, then sudo systemctl restart plantedge; the same key, once the bot user is unarchived: plantedge flush)"
			}
			if strings.Contains(o.LastError, "read secret ") {
				// Odoo refused nothing: the agent's user cannot read the
				// key (the operator probe: read as a refused key).
				hint = " (Odoo was not asked: the agent cannot read its API key — the file's owner, mode or path, see the error; the packaged unit hands /etc/plantedge/odoo-api-key, root-only, to the service as a credential; plantedge flush tries again now)"
				if !keyFileUnreadable(o.LastError) {
					// Read, and refused for what it holds (two lines,
					// none, a control character): the error says which.
					hint = " (Odoo was not asked: the agent's API key file holds no key it can send — see the error; with the packaged unit fix /etc/plantedge/odoo-api-key, " +
						"then sudo systemctl restart plantedge: the unit copies it at the service's start)"
				}
			}
		}
		if o.NextAttemptSeconds > 0 {
			fmt.Fprintf(w, "          next attempt in %s%s\n", ageString(o.NextAttemptSeconds), hint)
		} else {
			fmt.Fprintln(w, "          trying now")
		}
	}
	if len(st.Sources) > 0 {
		fmt.Fprintln(w, "\nSources")
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "  NAME\tKIND\tSTATE\tSESSIONS\tLAST ERROR")
		for _, s := range st.Sources {
			state := s.State
			if !st.AgentRunning && s.State == "down" {
				// Nobody reads the PLC or the broker while the agent is
				// stopped: not known to be down (as Odoo's NOT ASKED).
				state = "NOT ASKED (agent not running)"
			}
			if s.PolledNodes > 0 && s.State == "connected" {
				state += fmt.Sprintf(" (polling %s)", plural(s.PolledNodes, "node"))
			}
			if n := len(s.RefusedNodes); n > 0 {
				// Which ones and why go below the table: a refusal's text
				// stretched the column for every row (the PEERS audit).
				state += fmt.Sprintf(" (%s refused)", plural(n, refusedWhat(s.Kind)))
			}
			last := s.LastError
			if last != "" && s.State == "connected" {
				when := ""
				if s.LastErrorAgeSeconds > 0 {
					when = ago(s.LastErrorAgeSeconds) + ", "
				}
				before := "before it reconnected"
				if s.Sessions <= 1 {
					before = "at its connect" // the first since the start: none before it (the README audit)
				}
				last = "(" + when + before + ") " + last
			}
			if s.State != "connected" && s.NextAttemptSeconds > 0 {
				// The technician who fixed the password on the broker or
				// the server waits for it (a refused login waits a minute).
				if last != "" {
					last += " — "
				}
				last += "next attempt in " + ageString(s.NextAttemptSeconds)
			}
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%d\t%s\n", s.Name, s.Kind, state, s.Sessions, oneLine(last))
		}
		tw.Flush()
		for _, s := range st.Sources {
			printRefused(w, s)
			if s.MalformedSamples > 0 {
				fmt.Fprintf(w, "  %s: %s skipped as malformed since start; the last %s: %s\n",
					s.Name, plural(int(s.MalformedSamples), "value"), ago(s.LastMalformedAgeSeconds), oneLine(s.LastMalformed))
			}
			if s.StrayMessages > 0 {
				fmt.Fprintf(w, "  %s: %s since start on topics no machine maps, the last %s on %s: the broker's session for this client_id has subscriptions this agent did not make — another agent (the old box?) using the same client_id takes this agent's messages\n",
					s.Name, plural(int(s.StrayMessages), "message"), ago(s.LastStrayAgeSeconds), oneLine(s.LastStrayTopic))
			}
		}
	}
	fmt.Fprintln(w, "\nMachines")
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  ID\tWORK CENTER\tWORK ORDER\tSTATE\tLAST VALUE\tGOOD\tSCRAP\tPENDING\tUNATTRIBUTED\tERROR")
	for _, m := range st.Machines {
		wo := m.WorkOrder
		if wo == "" {
			wo = "-"
		} else if m.Production != "" && !strings.Contains(wo, m.Production) {
			wo = m.Production + " - " + wo // as Odoo shows it
		}
		if len(m.OtherWorkOrders) > 0 {
			// Counts go to the first; the planner may not know the others run.
			wo += fmt.Sprintf(" (also in progress: %s)", strings.Join(m.OtherWorkOrders, ", "))
		}
		last := "-"
		if m.LastSampleAge > 0 {
			last = ago(m.LastSampleAge)
		}
		state := m.State
		if m.LastKnownState != "" {
			why := "source down"
			switch m.UnknownBecause {
			case "bad quality":
				why = "its running value has bad or uncertain quality"
			case "refused":
				why = "its running node or topic is refused"
			}
			state += " (was " + m.LastKnownState + ": " + why + ")"
		}
		pending := count(m.Pending)
		if m.PendingScrap != 0 {
			pending += " (+" + count(m.PendingScrap) + " scrap)"
		}
		unattributed := count(m.Unattributed)
		if st.Buffer.PendingCountsReading > 0 {
			pending = "?" // being read (said under Buffer)
			if !st.AgentRunning && m.WorkOrder == "" {
				// A stopped agent's are its pending ones: not read either.
				unattributed = "?"
			}
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", m.ID, m.Workcenter, oneLine(wo), state, last,
			count(m.GoodCount), count(m.ScrapCount), pending, unattributed, oneLine(m.Error))
	}
	tw.Flush()
}

// refusedWhat names what a source of the kind refuses: OPC UA nodes, MQTT
// topics.
func refusedWhat(kind string) string {
	if kind == "mqtt" {
		return "topic"
	}
	return "node"
}

// maxRefusedShown bounds the refused nodes listed under the sources table;
// status --json lists them all.
const maxRefusedShown = 5

// printRefused lists the source's refused nodes or topics with the server's
// or broker's reason, a line each.
func printRefused(w io.Writer, s agent.SourceStatus) {
	for i, r := range s.RefusedNodes {
		if i == maxRefusedShown {
			fmt.Fprintf(w, "  %s: %d more refused (plantedge status --json lists them all)\n", s.Name, len(s.RefusedNodes)-i)
			return
		}
		fmt.Fprintf(w, "  %s: %s %s refused: %s\n", s.Name, refusedWhat(s.Kind), oneLine(r.Node), oneLine(r.Status))
	}
}

// count prints a quantity as a plant reads it: 17002199, not 1.7002199e+07.
func count(f float64) string { return agent.Qty(f) }

// ago prints an age in seconds as "12s ago" (at least a second).
func ago(seconds float64) string {
	return max(time.Second, time.Duration(seconds*float64(time.Second)).Round(time.Second)).String() + " ago"
}

func human(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

func ageString(sec float64) string {
	if sec <= 0 {
		return "-"
	}
	d := time.Duration(sec * float64(time.Second))
	switch {
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	case d < time.Minute:
		return d.Round(100 * time.Millisecond).String()
	}
	return d.Round(time.Second).String()
}
