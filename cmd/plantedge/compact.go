package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"

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
		Long: "compact copies the live records of the buffer into a fresh file and replaces the old one.\n" +
			"Freed pages are reused in normal operation, so this is only needed to give disk space back\n" +
			"after a very long outage. The agent must be stopped.",
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
	if _, err := agent.NewAPIClient(cfg.Listen).Status(ctx); err == nil {
		return &exitError{code: 1, msg: "the agent is running: stop it first (systemctl stop plantedge)"}
	} else if !errors.Is(err, agent.ErrNotRunning) {
		return err
	}
	src := cfg.BufferPath()
	before, err := os.Stat(src)
	if err != nil {
		return fmt.Errorf("buffer: %w", err)
	}
	tmp := src + ".compact"
	_ = os.Remove(tmp) // left over from an interrupted run
	if err := buffer.Compact(src, tmp); err != nil {
		_ = os.Remove(tmp)
		return err
	}
	// Keep the owner and mode: run as root, the new file must still be the
	// service user's.
	if st, ok := before.Sys().(*syscall.Stat_t); ok {
		if err := os.Chown(tmp, int(st.Uid), int(st.Gid)); err != nil {
			_ = os.Remove(tmp)
			return fmt.Errorf("keep the buffer's owner: %w", err)
		}
	}
	if err := os.Chmod(tmp, before.Mode().Perm()); err != nil {
		_ = os.Remove(tmp)
		return err
	}
	after, err := os.Stat(tmp)
	if err != nil {
		return err
	}
	if err := os.Rename(tmp, src); err != nil {
		return fmt.Errorf("replace buffer: %w", err)
	}
	// Make the rename itself durable before saying it is done.
	if dir, err := os.Open(filepath.Dir(src)); err == nil {
		err = dir.Sync()
		dir.Close()
		if err != nil {
			return fmt.Errorf("sync %s: %w", filepath.Dir(src), err)
		}
	}
	fmt.Fprintf(w, "compacted %s: %s -> %s\n", src, human(before.Size()), human(after.Size()))
	return nil
}
