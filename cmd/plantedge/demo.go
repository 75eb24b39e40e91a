package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/plantedge/plantedge/agent/demo"
)

type demoOptions struct {
	duration time.Duration
	keep     bool
	version  int
	verbose  bool
}

func newDemoCmd() *cobra.Command {
	o := &demoOptions{}
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Run the whole flow on this machine: embedded OPC UA server, MQTT broker, Odoo emulator and a WAN outage",
		Long: "demo starts an Odoo emulator with three work orders in progress, an OPC UA server simulating two\n" +
			"presses, an MQTT broker with a simulated packing machine, and the agent on a temporary data dir.\n" +
			"It cuts Odoo off for the middle third of the run, restores it, and ends by comparing, per machine,\n" +
			"the pieces made with the quantity in Odoo and the stops with the downtime lines. Everything listens\n" +
			"on 127.0.0.1 only, on ports the system picks free (so it never collides with a running agent).\n" +
			"It exits 0 when Odoo matches what the machines made, 1 when it does not or the demo could not run,\n" +
			"and 130 when interrupted (Ctrl-C) before its summary.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return o.Run(cmd.Context(), cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	o.duration = 45 * time.Second
	cmd.Flags().Var((*secondsOrDuration)(&o.duration), "duration", "how long the machines run, the Odoo outage the middle third (90s, 2m; a bare number is seconds)")
	cmd.Flags().BoolVar(&o.keep, "keep", false, "keep everything running after the summary (prints the emulator URL)")
	cmd.Flags().IntVar(&o.version, "odoo-version", 17, "Odoo version the emulator behaves like: 17, 18 or 19")
	cmd.Flags().BoolVarP(&o.verbose, "verbose", "v", false, "show the agent's log on stderr")
	return cmd
}

func (o *demoOptions) Run(ctx context.Context, out, errOut io.Writer) error {
	if o.version < 17 || o.version > 19 {
		return &exitError{code: exitUsage, msg: fmt.Sprintf("--odoo-version %d: the emulator behaves like 17, 18 or 19 (see: plantedge demo --help)", o.version)}
	}
	if o.duration < 3*time.Second {
		return &exitError{code: exitUsage, msg: fmt.Sprintf("--duration %s: want 3s or more (see: plantedge demo --help)", o.duration)}
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	logOut := io.Discard
	if o.verbose {
		logOut = errOut
	}
	res, err := demo.Run(ctx, demo.Options{Duration: o.duration, Keep: o.keep, OdooVersion: o.version, Out: out, LogOut: logOut})
	if err != nil {
		if errors.Is(err, context.Canceled) && ctx.Err() != nil {
			// Ctrl-C: the user's choice, not a failure (everything it
			// started is stopped and its temporary directory removed).
			fmt.Fprintln(out, "\ndemo stopped before its summary")
			return &exitError{code: 130, msg: "demo: interrupted"}
		}
		return err
	}
	for _, m := range res.Machines {
		if m.Made != m.OdooQty || m.Stops != m.DowntimeLines {
			return &exitError{code: 1, msg: "demo: Odoo does not match what the machines made (see the summary)"}
		}
	}
	return nil
}
