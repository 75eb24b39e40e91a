package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/plantedge/plantedge/agent"
	"github.com/plantedge/plantedge/buffer"
)

func newDeadLetterCmd() *cobra.Command {
	var cfgPath string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "deadletter",
		Short: "Inspect, retry or drop what Odoo refused for good",
		// A mistyped subcommand ("rety all") is an error, not the help
		// with exit 0 that a script would take for done.
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.PersistentFlags().StringVarP(&cfgPath, "config", "c", defaultConfig, "config file")
	list := &cobra.Command{
		Use:   "list",
		Short: "List dead letters with Odoo's reason",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var views []agent.DeadLetterView
			err := withDeadLetters(cfgPath, true,
				func(c *agent.APIClient) (err error) { views, err = c.DeadLetters(cmd.Context()); return err },
				func(q *buffer.Queue) (err error) { views, err = agent.ListDeadLetters(q); return err })
			if err != nil {
				return err
			}
			return printDeadLetters(cmd.OutOrStdout(), views, asJSON)
		},
	}
	list.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	action := func(name, short string) *cobra.Command {
		return &cobra.Command{
			Use:   name + " ID|all",
			Short: short,
			Args:  cobra.ExactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				var n, kept int
				err := withDeadLetters(cfgPath, false,
					func(c *agent.APIClient) (err error) {
						n, kept, err = c.DeadLetterAction(cmd.Context(), name, args[0])
						return err
					},
					func(q *buffer.Queue) (err error) {
						n, kept, err = agent.DeadLetterAction(cmd.Context(), q, name, args[0])
						return err
					})
				if err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%s: %d dead letter(s)\n", name, n)
				if kept > 0 {
					fmt.Fprintf(cmd.OutOrStdout(), "kept %d damaged dead letter(s): their bytes cannot be read as records, so they cannot be retried; "+
						"inspect them with `plantedge deadletter list --json` and drop them\n", kept)
				}
				return nil
			},
		}
	}
	cmd.AddCommand(list,
		action("retry", "Put dead letters back for another try: downtime in its original order, counts as the newest (they add up)"),
		action("drop", "Delete dead letters for good (counted and logged)"))
	return cmd
}

// withDeadLetters runs online against the running agent, or offline on the
// buffer file when the agent is stopped.
func withDeadLetters(cfgPath string, readOnly bool, online func(*agent.APIClient) error, offline func(*buffer.Queue) error) error {
	cfg, err := loadForAgent(cfgPath, os.Stderr)
	if err != nil {
		return err
	}
	err = online(agent.NewAPIClient(cfg.Listen).ForConfig(cfg))
	if err == nil || !errors.Is(err, agent.ErrNotRunning) {
		return err
	}
	if err := notAnswering(cfg); err != nil {
		return err
	}
	if _, err := os.Stat(cfg.BufferPath()); errors.Is(err, os.ErrNotExist) {
		if readOnly {
			return nil // never run: no dead letters
		}
		return fmt.Errorf("agent not running and no buffer file at %s (it has never run with this data_dir): no dead letters", cfg.BufferPath())
	}
	q, err := buffer.Open(cfg.BufferPath(), buffer.Options{ReadOnly: readOnly})
	if errors.Is(err, os.ErrPermission) {
		return fmt.Errorf("agent not running and the buffer file is not readable: %w (run it as root or as the plantedge user: sudo)", err)
	}
	if err != nil {
		return fmt.Errorf("agent not running and buffer not readable: %w", err)
	}
	defer q.Close()
	return offline(q)
}

func printDeadLetters(w io.Writer, views []agent.DeadLetterView, asJSON bool) error {
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
		what := v.What
		if what == "" {
			what = "-"
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\n", v.ID, v.Lane, oneLine(v.Key), v.At.Local().Format(time.DateTime), oneLine(what), oneLine(reason))
	}
	return tw.Flush()
}
