package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/plantedge/plantedge/agent"
)

func newRebookCmd() *cobra.Command {
	var cfgPath, sinceArg string
	var dry bool
	cmd := &cobra.Command{
		Use:   "rebook --since TIME",
		Short: "Book again the downtime lines and scrap that Odoo confirmed since TIME and lacks now (Odoo restored from a backup)",
		Long: "The agent keeps, for a week, each downtime line and scrap booking Odoo confirmed. When Odoo's\n" +
			"database is restored from a backup, what was booked after the backup is gone from Odoo, while the\n" +
			"agent has long forgotten the records. rebook asks the running agent to look up each booking since\n" +
			"TIME by its external id and to book again those Odoo lacks — only those: one Odoo has is left as it\n" +
			"is. It also has each machine's count written again where its work order shows another quantity.\n" +
			"TIME is the backup's time (RFC 3339, \"2006-01-02 15:04\" in local time) or how long ago (36h).\n" +
			"--dry-run only counts. It exits 1 if Odoo refused any booking (the output says which and why), 2 when the\n" +
			"agent is not running (also when another program answers at listen and no agent holds the buffer file),\n" +
			"3 when the rebook takes longer than the agent's API waits (it goes on; its result is logged),\n" +
			"4 when it could not go through (Odoo not reached, or the agent refused the request: the output says why).",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			since, err := parseSince(sinceArg, time.Now(), time.Local)
			if err != nil { // a flag's bad value: the command line's
				return &exitError{code: exitUsage, cause: err, msg: fmt.Sprintf("%v (see: %s --help)", err, cmd.CommandPath())}
			}
			cfg, err := loadForAgent(cfgPath, os.Stderr)
			if err != nil {
				return cannotAsk(err) // not 1, "Odoo refused some" (the readme probe)
			}
			res, err := agent.NewAPIClient(cfg.Listen).ForConfig(cfg).Rebook(cmd.Context(), since, dry)
			if stoppedForeign(err) {
				// (It was 4, "not rebooked", for another program's
				// refusal, and 0, "rebooked 0 lines", for its JSON.)
				return throughTheAgentOnly(cfg, err, "rebook", "rebooked", "books")
			}
			if errors.Is(err, agent.ErrNotRunning) {
				if err := notAnswering(cfg); err != nil {
					return cannotAsk(err)
				}
				return &exitError{code: 2, msg: "the agent is not running: rebook books through it (start it, then run rebook again)"}
			}
			if err != nil {
				// Odoo not reached, or the agent's own refusal: not Odoo
				// refusing bookings (exit 1, listed); run it again.
				return &exitError{code: 4, cause: err, msg: "not rebooked: " + notTheAgent(cfg, err, "rebook").Error() + " (run it again once that is mended: it books only what Odoo still lacks)"}
			}
			return printRebook(cmd.OutOrStdout(), res)
		},
	}
	cmd.Flags().StringVarP(&cfgPath, "config", "c", defaultConfig, "config file")
	cmd.Flags().StringVar(&sinceArg, "since", "", "the backup's time: RFC 3339, \"2006-01-02 15:04\" (local time), or how long ago (36h)")
	cmd.Flags().BoolVar(&dry, "dry-run", false, "only count what Odoo lacks")
	_ = cmd.MarkFlagRequired("since")
	return cmd
}

// parseSince reads --since: a time (RFC 3339, or a date and time in loc,
// this box's zone) or a duration before now.
func parseSince(s string, now time.Time, loc *time.Location) (time.Time, error) {
	if d, err := time.ParseDuration(s); err == nil && d > 0 {
		return now.Add(-d), nil
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	for _, layout := range []string{"2006-01-02 15:04:05", "2006-01-02 15:04", "2006-01-02T15:04:05", "2006-01-02T15:04", "2006-01-02"} {
		if wall, err := time.Parse(layout, s); err == nil {
			return earliestAt(wall, loc), nil
		}
	}
	return time.Time{}, fmt.Errorf("--since %q: want a time (2026-12-01T14:00:00Z, \"2026-12-01 14:00\" in local time) or how long ago (36h)", s)
}

// earliestAt is the earliest instant that wall (a date and time read as
// UTC) names in loc: a local time in the hour the autumn change repeats
// names two, and Go's parser may give either (the tz probe: the later, and
// a backup taken at the first 02:30 had an hour of bookings not rebooked);
// one the spring change skips names none, and of the two readings by the
// offsets either side the earlier is taken (the review). A lower bound
// takes the first.
func earliestAt(wall time.Time, loc *time.Location) time.Time {
	t := time.Date(wall.Year(), wall.Month(), wall.Day(), wall.Hour(), wall.Minute(), wall.Second(), 0, loc)
	_, before := t.Add(-3 * time.Hour).Zone()
	_, after := t.Add(3 * time.Hour).Zone()
	var valid, either time.Time
	for _, off := range []int{before, after} {
		c := wall.Add(-time.Duration(off) * time.Second)
		if either.IsZero() || c.Before(either) {
			either = c
		}
		if c.In(loc).Format(time.DateTime) == wall.Format(time.DateTime) && (valid.IsZero() || c.Before(valid)) {
			valid = c
		}
	}
	if valid.IsZero() {
		return either.In(loc) // in the spring gap
	}
	return valid.In(loc)
}

func printRebook(w io.Writer, res agent.RebookResult) error {
	since := res.Since.Local().Format(agent.LocalStamp)
	if res.Pending {
		return &exitError{code: 3, msg: fmt.Sprintf("the rebook since %s takes longer than the agent's API waits; "+
			"it goes on, and the agent logs its result: journalctl -u plantedge -g 'rebooked what Odoo'", since)}
	}
	fmt.Fprintf(w, "Odoo confirmed since %s: %s, %s\n", since, plural(res.Lines, "downtime line"), plural(res.Scraps, "scrap booking"))
	// Said only when bookings since --since were forgotten (the val54
	// probe: said the day after the install, when none had been). An
	// agent of an older version says only its oldest booking kept.
	keptFrom := res.OldestKept
	if res.KeptFrom != nil {
		keptFrom = *res.KeptFrom
	}
	if keptFrom.After(res.Since) {
		fmt.Fprintf(w, "note: the bookings kept begin at %s (a week is kept at most, and nothing from before the agent was last pointed at this Odoo, "+
			"nor from before a corrupt buffer file was replaced): "+
			"if Odoo confirmed any between %s and then, it is not kept — book it by hand\n",
			keptFrom.Local().Format(agent.LocalStamp), since)
	}
	for _, p := range res.Unkept {
		from, to := p.From.Local().Format(agent.LocalStamp), p.To.Local().Format(agent.LocalStamp)
		when := "between " + from + " and " + to
		if from == to {
			when = "at " + from // one round's (the README audit: "between 04:15:42 and 04:15:42")
		}
		fmt.Fprintf(w, "note: bookings Odoo confirmed %s were not kept (the disk was full): "+
			"if Odoo lacks any of them, book them by hand\n", when)
	}
	fmt.Fprintf(w, "Odoo lacks %s", plural(res.LinesMissing, "line"))
	if res.LinesOpen > 0 {
		fmt.Fprintf(w, " (%d of them it has open, closed since: closed again)", res.LinesOpen)
	}
	fmt.Fprintf(w, " and %s", plural(res.ScrapsMissing, "scrap booking"))
	if res.DryRun {
		fmt.Fprintln(w, " (dry run: nothing booked)")
		return nil
	}
	fmt.Fprintf(w, ": rebooked %s and %s\n", plural(res.LinesRebooked, "line"), plural(res.ScrapsRebooked, "scrap booking"))
	if res.LinesWithoutWorkorder > 0 {
		fmt.Fprintf(w, "%s booked without %s work order: Odoo lacks it (made after the backup?)\n", plural(res.LinesWithoutWorkorder, "line"), agent.OneOrMore(res.LinesWithoutWorkorder == 1, "its", "their"))
	}
	if res.ScrapDrafts > 0 {
		fmt.Fprintf(w, "%s left %s in Odoo (too little stock, or it refused to validate): plantedge status shows %s\n", plural(res.ScrapDrafts, "scrap booking"),
			agent.OneOrMore(res.ScrapDrafts == 1, "a draft", "drafts"), agent.OneOrMore(res.ScrapDrafts == 1, "it", "them"))
	}
	if len(res.NotRebooked) > 0 {
		fmt.Fprintf(w, "not rebooked (%d):\n", len(res.NotRebooked))
		for _, n := range res.NotRebooked {
			fmt.Fprintln(w, "  "+oneLine(n))
		}
		return &exitError{code: 1, msg: fmt.Sprintf("%s not rebooked: %s", plural(len(res.NotRebooked), "booking"), strings.Join(res.NotRebooked[:min(len(res.NotRebooked), 1)], ""))}
	}
	return nil
}
