package main

import (
	"context"
	"errors"
	"fmt"
	"io"

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
			"space back in any other state. The agent must be stopped.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := config.Load(cfgPath)
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
	if _, err := agent.NewAPIClient(cfg.Listen).ForConfig(cfg).Status(ctx); err == nil {
		return &exitError{code: 1, msg: "the agent is running: stop it first (systemctl stop plantedge)"}
	} else if !errors.Is(err, agent.ErrNotRunning) {
		return err
	}
	src := cfg.BufferPath()
	before, after, err := buffer.CompactFile(src)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "compacted %s: %s -> %s\n", src, human(before), human(after))
	return nil
}
