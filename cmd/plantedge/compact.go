package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/plantedge/plantedge/agent"
	"github.com/plantedge/plantedge/agent/config"
	"github.com/plantedge/plantedge/buffer"
)

func newCompactCmd() *cobra.Command {
	var cfgPath string
	cmd := &cobra.Command{
		Use:   "compact",
		Short: "Shrink the buffer file (offline: stop the agent first)",
		Long: "compact copies the live records of the buffer into a fresh file and replaces the old one,\n" +
			"keeping its owner and mode. Freed pages are reused in normal operation, and the running agent\n" +
			"shrinks the file by itself once a backlog has drained to at most 4 MiB; this gives the disk\n" +
			"space back in any other state. The agent must be stopped. A config file that does not load\n" +
			"does not stop it, as it does not stop status: it warns and compacts the buffer in the file's\n" +
			"data_dir.\n\n" +
			"It exits 0 when done (also when there is no buffer file yet, or one of 0 bytes, left as it is), and 1 when the agent runs, another\n" +
			"process holds the file, the file is damaged, or it failed.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			// Only data_dir and listen are needed: a file that does
			// not load (being edited while the disk fills) is no
			// reason to refuse, as status reads a stopped agent's
			// buffer then too.
			cfg, err := loadForAgent(cfgPath, cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			return compactBuffer(cmd.Context(), cfg, cmd.OutOrStdout())
		},
	}
	cmd.Flags().StringVarP(&cfgPath, "config", "c", defaultConfig, "config file")
	return cmd
}

func compactBuffer(ctx context.Context, cfg *config.Config, w io.Writer) error {
	src := cfg.BufferPath()
	if _, err := agent.NewAPIClient(cfg.Listen).ForConfig(cfg).Status(ctx); err == nil {
		return &exitError{code: 1, msg: "the agent is running: stop it first (systemctl stop plantedge)"}
	} else if foreign := stoppedForeign(err); foreign || !errors.Is(err, agent.ErrNotRunning) {
		// Something answers at listen that is not this agent (another
		// program on the port, another site's agent), or an agent that
		// does not answer. The buffer file's lock tells whether an agent
		// holds it: none does, and it is compacted (the operator probe:
		// "plantedge: agent: 404 page not found", exit 1, nothing done).
		// The client looked already when what answered did not say it is
		// the agent (foreign), whatever it answered (a 200 with JSON of
		// its own was taken for the agent: "the agent is running").
		if !foreign {
			running, ierr := buffer.InUse(src)
			switch {
			case ierr != nil:
				return notTheAgent(cfg, err, "compact")
			case running:
				return notAnswering(cfg)
			}
		}
		fmt.Fprintf(w, "note: what answers at listen %s is not this agent (%s); no agent holds %s\n", cfg.Listen, answered(err), src)
	}
	if fi, err := os.Stat(src); errors.Is(err, os.ErrNotExist) {
		fmt.Fprintf(w, "nothing to compact: no buffer file at %s (the agent has not run with this data_dir)\n", src)
		return nil
	} else if zeroBytes(fi, err) {
		// Opened, it became a fresh buffer ("0 B -> 32.0 KiB"), and the
		// agent's start no longer said that what it held is lost.
		fmt.Fprintf(w, "nothing to compact: the buffer file %s is empty (0 bytes): nothing is buffered in it; "+
			"left as it is, the agent's next start makes a fresh one (plantedge status says more)\n", src)
		return nil
	}
	before, after, err := buffer.CompactFile(src)
	switch {
	case errors.Is(err, os.ErrPermission):
		return fmt.Errorf("%w (run it as root or as the plantedge user: sudo plantedge compact)", err)
	case errors.Is(err, buffer.ErrInUse):
		return &exitError{code: 1, msg: err.Error() + ": try again once it is done (the agent must be stopped)"}
	case err != nil:
		return err
	}
	fmt.Fprintf(w, "compacted %s: %s -> %s\n", src, human(before), human(after))
	return nil
}
