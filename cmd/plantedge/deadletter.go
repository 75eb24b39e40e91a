package main

import (
	"bufio"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/plantedge/plantedge/agent"
	"github.com/plantedge/plantedge/agent/config"
	"github.com/plantedge/plantedge/buffer"
)

func newDeadLetterCmd() *cobra.Command {
	var cfgPath string
	var asJSON bool
	cmd := &cobra.Command{
		Use: "deadletter",
		// cobra's default, which it sets on the root command alone.
		SuggestionsMinimumDistance: 2,
		Short:                      "Inspect, retry or drop what Odoo refused for good",
		Long: "deadletter lists what Odoo refused for good, with Odoo's reason and what each record holds, puts\n" +
			"dead letters back for another try, or drops them. It works through the running agent, or on the\n" +
			"buffer file when the agent is stopped.\n\n" +
			"It exits 0 when done (also when there was nothing to do), and 1 when a drop was declined at the\n" +
			"prompt, an ID was not found, or it failed.",
		// A mistyped subcommand ("rety all") is an error, not the help
		// with exit 0 that a script would take for done; so is none (the
		// spec audit: help, exit 0).
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return nil
			}
			// With the action meant, as the root suggests a command (the
			// conformance audit: "deadletter lst" said unknown command).
			msg := fmt.Sprintf("unknown command %q for %q", args[0], cmd.CommandPath())
			if s := cmd.SuggestionsFor(args[0]); len(s) > 0 {
				msg += "\n\nDid you mean this?\n\t" + strings.Join(s, "\n\t") + "\n"
			}
			return errors.New(msg)
		},
		RunE: func(cmd *cobra.Command, _ []string) error {
			return &exitError{code: exitUsage, msg: "deadletter needs an action: list, retry or drop (see: plantedge deadletter --help)"}
		},
	}
	cmd.PersistentFlags().StringVarP(&cfgPath, "config", "c", defaultConfig, "config file")
	list := &cobra.Command{
		Use:   "list",
		Short: "List dead letters with Odoo's reason",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var views []agent.DeadLetterView
			var sendsTo string
			err := withDeadLetters(cfgPath, "deadletter list", true, warnOnce(cmd.ErrOrStderr()),
				func(c *agent.APIClient, cfg *config.Config) (err error) {
					sendsTo = sendsToOf(cfg)
					var note string
					views, note, err = c.DeadLettersNoted(cmd.Context())
					if err == nil && note != "" {
						// What the list does not show yet (a stalled write).
						fmt.Fprintf(cmd.ErrOrStderr(), "note: %s\n", note)
					}
					return err
				},
				func(q *buffer.Queue, cfg *config.Config) (err error) {
					sendsTo = sendsToOf(cfg)
					views, err = agent.ListDeadLetters(q)
					return err
				})
			if eb := (*emptyBufferFileError)(nil); errors.As(err, &eb) {
				// Read, and nothing in it (status says EMPTY for it): no
				// dead letters, exit 0 (the small leads probe: exit 1,
				// "buffer not readable").
				if asJSON {
					fmt.Fprintf(cmd.ErrOrStderr(), "note: no dead letters: %s\n", eb.why())
					return printDeadLetters(cmd.OutOrStdout(), nil, sendsTo, true)
				}
				fmt.Fprintf(cmd.OutOrStdout(), "no dead letters: %s\n", eb.why())
				return nil
			}
			if err != nil {
				return err
			}
			return printDeadLetters(cmd.OutOrStdout(), views, sendsTo, asJSON)
		},
	}
	list.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	var yes, here bool
	action := func(name, short string) *cobra.Command {
		use := name + " ID|all"
		if name == "retry" {
			use = name + " [ID|all]"
		}
		return &cobra.Command{
			Use:   use,
			Short: short,
			Args: func(_ *cobra.Command, args []string) error {
				switch {
				case len(args) == 0 && name == "retry":
					return nil // all: a retry loses nothing (SPEC writes it bare)
				case len(args) == 0:
					return fmt.Errorf("name what to drop: a dead letter's id (plantedge deadletter list) or all")
				case len(args) > 1:
					return fmt.Errorf("one dead letter id or all, not %d arguments", len(args))
				}
				if _, err := strconv.ParseUint(args[0], 10, 64); err != nil && args[0] != "all" {
					return fmt.Errorf("dead letter id %q: want a number (plantedge deadletter list) or all", args[0])
				}
				return nil
			},
			RunE: func(cmd *cobra.Command, args []string) error {
				if len(args) == 0 {
					args = []string{"all"} // retry
				}
				warn := warnOnce(cmd.ErrOrStderr())
				if name == "drop" && !yes && stdinIsTerminal() {
					// What a drop loses never reaches Odoo: on a terminal
					// it is asked first (scripts, without one, are not).
					noted := false
					list := func() (views []agent.DeadLetterView, err error) {
						err = withDeadLetters(cfgPath, "deadletter "+name, true, warn,
							func(c *agent.APIClient, _ *config.Config) (err error) {
								var note string
								views, note, err = c.DeadLettersNoted(cmd.Context())
								if err == nil && note != "" && !noted {
									// What the list shown does not show yet
									// (a stalled write), said before the
									// question, as list says it.
									noted = true
									fmt.Fprintf(cmd.ErrOrStderr(), "note: %s\n", note)
								}
								return err
							},
							func(q *buffer.Queue, _ *config.Config) (err error) { views, err = agent.ListDeadLetters(q); return err })
						if eb := (*emptyBufferFileError)(nil); errors.As(err, &eb) {
							return nil, nil // none to show: the drop says why
						}
						return views, err
					}
					views, err := list()
					if err != nil {
						return err
					}
					if ok, err := confirmDrop(cmd.InOrStdin(), cmd.OutOrStdout(), views, args[0]); err != nil || !ok {
						return cmp.Or(err, error(&exitError{code: 1, msg: "nothing dropped"}))
					}
					// "all" is what was shown: more that came while the
					// question was open are not dropped unseen.
					if now, err := list(); err != nil {
						return err
					} else if args[0] == "all" && !slices.EqualFunc(now, views, func(x, y agent.DeadLetterView) bool { return x.ID == y.ID }) {
						return &exitError{code: 1, msg: fmt.Sprintf("dead letters came in while you were asked (%d now, %d shown): nothing dropped; run it again", len(now), len(views))}
					}
				}
				var res agent.DeadLetterResult
				err := withDeadLetters(cfgPath, "deadletter "+name, false, warn,
					func(c *agent.APIClient, _ *config.Config) (err error) {
						res, err = c.DeadLetterAction(cmd.Context(), name, args[0], here)
						return err
					},
					func(q *buffer.Queue, cfg *config.Config) (err error) {
						if here {
							cfg = nil
						} else if name == "retry" && sendsToOf(cfg) == "" {
							return &exitError{code: 1, msg: unknownOdooRetry(cfgPath)}
						}
						res, err = agent.DeadLetterAction(cmd.Context(), q, name, args[0], cfg)
						return err
					})
				out := cmd.OutOrStdout()
				if nb := (*noBufferFileError)(nil); errors.As(err, &nb) {
					// Never run with this data_dir: nothing, which for
					// all is done (0), as with a file that holds none.
					if args[0] != "all" {
						return fmt.Errorf("no dead letter %s: %w", args[0], err)
					}
					fmt.Fprintf(out, "%s: 0 dead letters (agent not running, and no buffer file at %s: it has never run with this data_dir)\n", name, nb.path)
					return nil
				}
				if eb := (*emptyBufferFileError)(nil); errors.As(err, &eb) {
					// As with no file: nothing, and the file is left as it
					// is (opened for writing, it was made a fresh buffer
					// without a word, and the agent's start no longer
					// said that what it held is lost).
					if args[0] != "all" {
						return fmt.Errorf("no dead letter %s: %s", args[0], eb.why())
					}
					fmt.Fprintf(out, "%s: 0 dead letters (%s)\n", name, eb.why())
					return nil
				}
				if err != nil {
					return err
				}
				fmt.Fprintf(out, "%s: %s\n", name, plural(res.Affected, "dead letter"))
				for _, l := range keptLines(res) {
					fmt.Fprintln(out, l)
				}
				return nil
			},
		}
	}
	drop := action("drop", "Delete dead letters for good (counted and logged; on a terminal, asked first)")
	drop.Flags().BoolVarP(&yes, "yes", "y", false, "do not ask first")
	retry := action("retry", "Put dead letters back for another try: downtime in its original order, counts as the newest (they add up); "+
		"those another Odoo refused (odoo.url or odoo.database changed since) are kept")
	retry.Flags().BoolVar(&here, "here", false, "retry also dead letters another Odoo refused, in the one the agent sends to now (the same database under another address)")
	cmd.AddCommand(list, retry, drop)
	return cmd
}

// sendsToOf is the Odoo cfg sends to (agent.OdooIdentity), or "" when it
// is not known: a file that does not load whose odoo.url could not be read
// either (config.Endpoints). Every dead letter would look refused by
// another Odoo than ": ".
func sendsToOf(cfg *config.Config) string {
	if cfg.EndpointsOnly && cfg.Odoo.URL == "" {
		return ""
	}
	return agent.OdooIdentity(cfg)
}

// unknownOdooRetry is why a retry on a stopped agent's buffer file is not
// done when the config file names no Odoo it can read: a retry books into
// the Odoo the agent sends to, and one another Odoo refused is kept.
func unknownOdooRetry(cfgPath string) string {
	return fmt.Sprintf("nothing retried: %s does not load and its odoo.url could not be read, so which Odoo the agent sends to is not known "+
		"(a dead letter another Odoo refused is kept, not retried): fix the file (plantedge validate -c %s) and retry again, "+
		"or retry --here to put them all back for the Odoo the agent will send to", cfgPath, cfgPath)
}

// stdinIsTerminal: a person may be asked (tests replace it).
var stdinIsTerminal = func() bool { return term.IsTerminal(int(os.Stdin.Fd())) }

// confirmDrop shows what dropping id ("all" or a number) loses and asks
// for a yes.
func confirmDrop(in io.Reader, out io.Writer, views []agent.DeadLetterView, id string) (bool, error) {
	var lose []agent.DeadLetterView
	for _, v := range views {
		if id == "all" || fmt.Sprint(v.ID) == id {
			lose = append(lose, v)
		}
	}
	if len(lose) == 0 {
		return true, nil // the drop says there is none
	}
	for i, v := range lose {
		if i == 5 {
			fmt.Fprintf(out, "  ... and %d more\n", len(lose)-5)
			break
		}
		fmt.Fprintf(out, "  %d  %s  %s\n", v.ID, oneLine(v.Key), oneLine(cmp.Or(v.What, v.Reason)))
	}
	fmt.Fprintf(out, "Drop %s for good? What %s never reaches Odoo. [y/N] ", plural(len(lose), "dead letter"), agent.OneOrMore(len(lose) == 1, "it holds", "they hold"))
	line, err := bufio.NewReader(in).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return false, err
	}
	a := strings.ToLower(strings.TrimSpace(line))
	return a == "y" || a == "yes", nil
}

// noBufferFileError is withDeadLetters' error for an action while the
// agent is stopped and has never run with this data_dir: no dead letters.
type noBufferFileError struct{ path string }

func (e *noBufferFileError) Error() string {
	return fmt.Sprintf("agent not running and no buffer file at %s (it has never run with this data_dir): no dead letters", e.path)
}

// emptyBufferFileError is withDeadLetters' error while the agent is
// stopped and its buffer file is 0 bytes (buffer.ErrEmptyFile: a crash
// between its creation and its first write, a truncate by hand): no dead
// letters. The file is not opened, so it is left as it is for the agent's
// start, which makes a fresh buffer of it and logs that.
type emptyBufferFileError struct{ path string }

func (e *emptyBufferFileError) Error() string { return "no dead letters: " + e.why() }

func (e *emptyBufferFileError) Unwrap() error { return buffer.ErrEmptyFile }

// why says what the file is and what becomes of it, as status says it.
func (e *emptyBufferFileError) why() string {
	return fmt.Sprintf("agent not running, and its buffer file %s is empty (0 bytes): nothing is buffered in it; "+
		"left as it is, the agent's next start makes a fresh one (plantedge status says more)", e.path)
}

// withDeadLetters runs online against the running agent, or offline on the
// buffer file when the agent is stopped. warn says why the file is used
// although something answered at listen (once a command: see warnOnce).
func withDeadLetters(cfgPath, command string, readOnly bool, warn func(error), online func(*agent.APIClient, *config.Config) error, offline func(*buffer.Queue, *config.Config) error) error {
	cfg, err := loadForAgent(cfgPath, os.Stderr)
	if err != nil {
		return err
	}
	err = online(agent.NewAPIClient(cfg.Listen).ForConfig(cfg), cfg)
	if err == nil {
		return nil
	}
	switch {
	case stoppedForeign(err):
		// Another program at listen, and no agent holds this
		// configuration's buffer file (its lock is free, and this user
		// may look): the agent is stopped, wherever its listen, and its
		// file is used as any stopped agent's (Open takes the lock
		// itself: an agent started meanwhile is not written under),
		// whatever that program answered (a 200 with JSON of its own
		// was read as "0 dead letters", the file not read).
		warn(notThisAgent(cfg, err, command))
	case !errors.Is(err, agent.ErrNotRunning):
		// Where the lock cannot be looked at (a user who may not look
		// into data_dir), an agent of another version answering so is
		// not ruled out: refused. So is another site's agent answering
		// (two files sharing listen: TestCommandsRefuseAnotherSitesAgent),
		// and the answer of a process holding the file.
		return notTheAgent(cfg, err, command) // another program's page: not printed whole
	default:
		if err := notAnswering(cfg); err != nil {
			return err
		}
	}
	if fi, err := os.Stat(cfg.BufferPath()); errors.Is(err, os.ErrNotExist) {
		if readOnly {
			return nil // never run: no dead letters
		}
		return &noBufferFileError{path: cfg.BufferPath()}
	} else if zeroBytes(fi, err) {
		return &emptyBufferFileError{path: cfg.BufferPath()}
	}
	q, err := buffer.Open(cfg.BufferPath(), buffer.Options{ReadOnly: readOnly, Offline: !readOnly})
	if errors.Is(err, os.ErrPermission) {
		return fmt.Errorf("agent not running and the buffer file is not readable: %w (run it as root or as the plantedge user: sudo)", err)
	}
	if errors.Is(err, buffer.ErrCorruptFile) {
		return fmt.Errorf("agent not running and the buffer file fails its check (%w): left as it is; %s", err, corruptAdvice)
	}
	if err != nil {
		return fmt.Errorf("agent not running and buffer not readable: %w", err)
	}
	defer q.Close()
	return offline(q, cfg)
}

// warnOnce returns withDeadLetters' warn for a command that may look at
// the dead letters more than once (a drop asked on a terminal): it says
// why the buffer file is used once, on w.
func warnOnce(w io.Writer) func(error) {
	said := false
	return func(err error) {
		if !said {
			said = true
			fmt.Fprintf(w, "warning: %v; the dead letters are read from the buffer file, as a stopped agent's\n", err)
		}
	}
}

// corruptAdvice says what to do about a buffer file that fails its check
// while the agent is stopped: a command run by hand leaves it to the
// agent's start, which runs as the service's user.
const corruptAdvice = "start the agent (systemctl start plantedge), which checks it again: it repairs what a commit can, " +
	"or moves the file aside (buffer.db.corrupt-<time>, kept for analysis) and starts a fresh one, saying so in the log and in status"

// printDeadLetters prints views; the reason of one another Odoo than
// sendsTo refused names it (sendsTo "": not known, none is named).
func printDeadLetters(w io.Writer, views []agent.DeadLetterView, sendsTo string, asJSON bool) error {
	if asJSON {
		if views == nil {
			views = []agent.DeadLetterView{} // [], not null: scripts iterate over it
		}
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(views)
	}
	if len(views) == 0 {
		fmt.Fprintln(w, "no dead letters")
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tLANE\tKEY\tWHEN\tHOLDS\tREASON")
	for _, v := range views {
		// One row per dead letter: Odoo's messages span lines and carry tabs.
		reason := strings.Join(strings.Fields(v.Reason), " ")
		if v.Odoo != "" && sendsTo != "" && v.Odoo != sendsTo {
			reason = "(refused by " + v.Odoo + ", not the Odoo the agent sends to) " + reason
		}
		what := v.What
		if what == "" {
			what = "-"
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\n", v.ID, v.Lane, oneLine(v.Key), v.At.Local().Format(agent.LocalStamp), oneLine(what), oneLine(reason))
	}
	return tw.Flush()
}

// keptLines says the dead letters a retry of all kept, and why.
func keptLines(res agent.DeadLetterResult) []string {
	var lines []string
	if n := res.KeptDamaged; n > 0 {
		lines = append(lines, fmt.Sprintf("kept %s: %s cannot be read as records, so %s cannot be retried; "+
			"inspect %s with `plantedge deadletter list --json` and drop %s", plural(n, "damaged dead letter"),
			agent.OneOrMore(n == 1, "its bytes", "their bytes"), agent.OneOrMore(n == 1, "it", "they"), agent.OneOrMore(n == 1, "it", "them"), agent.OneOrMore(n == 1, "it", "them")))
	}
	if n := res.KeptFinished; n > 0 {
		lines = append(lines, fmt.Sprintf("kept %s of what was made on a finished or cancelled work order: %s", plural(n, "dead letter"), agent.FinishedOrderAdvice))
	}
	if n := res.KeptElsewhere; n > 0 {
		lines = append(lines, fmt.Sprintf("kept %s refused by another Odoo (%s) than the one the agent sends to (%s): retried, %s would be booked in this one. %s",
			plural(n, "dead letter"), strings.Join(res.Elsewhere, ", "), res.To, agent.OneOrMore(n == 1, "it", "they"), agent.ElsewhereAdvice(res.Elsewhere)))
	}
	return lines
}
