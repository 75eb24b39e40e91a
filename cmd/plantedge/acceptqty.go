package main

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/plantedge/plantedge/agent"
)

func newAcceptQtyCmd() *cobra.Command {
	var cfgPath string
	cmd := &cobra.Command{
		Use:   "accept-qty MACHINE",
		Short: "Keep the quantity corrected in Odoo on the machine's work order: counting goes on from it",
		Long: "plantedge writes a work order's quantity as an absolute value, so a quantity typed into the work order\n" +
			"in Odoo is replaced by its next write. When the count was wrong (a jump: another machine's value\n" +
			"published on the counter's topic, a preset, a wrong reading), correct the quantity in Odoo, then run\n" +
			"accept-qty for the machine: the running agent takes the quantity Odoo now shows on the work order in\n" +
			"progress on the machine's work center as right, and adds the pieces made since to it. Pieces still in\n" +
			"the buffer are added too (the output says how many). Nothing changes in Odoo.\n" +
			"It exits 0 when the quantity was accepted, 1 when there was nothing to accept (the output says why),\n" +
			"2 when the agent is not running (also when another program answers at listen and no agent holds the\n" +
			"buffer file), 4 when it could not be asked or no round reached the machine in time.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := loadForAgent(cfgPath, os.Stderr)
			if err != nil {
				return cannotAsk(err) // not 1, "nothing to accept" (the readme probe)
			}
			res, err := agent.NewAPIClient(cfg.Listen).ForConfig(cfg).AcceptQty(cmd.Context(), args[0])
			if stoppedForeign(err) {
				// (It was 4 for another program's refusal, and 1, ": not
				// changed: ", for its JSON.)
				return throughTheAgentOnly(cfg, err, "accept-qty", "accepted", "works")
			}
			if errors.Is(err, agent.ErrNotRunning) {
				if err := notAnswering(cfg); err != nil {
					return cannotAsk(err)
				}
				return &exitError{code: 2, msg: "the agent is not running: accept-qty works through it (start it, then run accept-qty again)"}
			}
			if err != nil {
				return &exitError{code: 4, cause: err, msg: notTheAgent(cfg, err, "accept-qty").Error()}
			}
			return printAccept(cmd.OutOrStdout(), res)
		},
	}
	cmd.Flags().StringVarP(&cfgPath, "config", "c", defaultConfig, "config file")
	return cmd
}

func printAccept(w io.Writer, res agent.AcceptResult) error {
	if !res.Accepted {
		return &exitError{code: 1, msg: fmt.Sprintf("%s: not changed: %s", res.Machine, res.Note)}
	}
	if res.Note != "" { // an edit plantedge had written over, taken back
		fmt.Fprintf(w, "%s: %s", res.Machine, res.Note)
	} else {
		fmt.Fprintf(w, "%s: work order %s: the %s in Odoo is kept (plantedge had written %s); counting goes on from it", res.Machine, res.WorkOrder, agent.Qty(res.Now), agent.Qty(res.Was))
	}
	if res.Pending > 0 {
		// (some may go to an earlier work order, the one they were made on)
		fmt.Fprintf(w, "; the %s still in the buffer %s written by the next rounds", agent.Pieces(res.Pending, ""), agent.OneOrMore(res.Pending == 1, "is", "are"))
	}
	fmt.Fprintln(w)
	return nil
}
