package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"

	"github.com/plantedge/plantedge/agent/config"
	"github.com/spf13/cobra"
)

// defaultConfig is where the package installs the configuration.
const defaultConfig = "/etc/plantedge/plantedge.yaml"

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:           "plantedge",
		Short:         "Plant-edge store-and-forward agent: OPC UA and MQTT to Odoo work orders",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	ver, rev := buildInfo()
	root.Version = fmt.Sprintf("%s (commit %s)", ver, rev) // --version, as well as `plantedge version`
	root.AddCommand(
		newVersionCmd(),
		newBrowseCmd(),
		newRunCmd(),
		newStatusCmd(),
		newFlushCmd(),
		newRebookCmd(),
		newAcceptQtyCmd(),
		newDeadLetterCmd(),
		newDemoCmd(),
		newCompactCmd(),
		newValidateCmd(),
	)
	root.SetHelpCommand(newHelpCmd())
	return root
}

// newHelpCmd is cobra's help command, but a topic it does not know is the
// command line's mistake (exitUsage), as an unknown command is: cobra's
// own printed "Unknown help topic" and exited 0.
func newHelpCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "help [command]",
		Short: "Help about any command",
		Long:  "Help provides help for any command in the application.\nSimply type plantedge help [path to command] for full details.",
		// Args runs before the command's own run: an error here exits 64.
		// It suggests the command meant, as an unknown command does.
		Args: func(cmd *cobra.Command, args []string) error {
			c, rest, err := cmd.Root().Find(args)
			if err == nil && len(rest) == 0 {
				return nil
			}
			var near []string
			switch {
			case len(rest) > 0 && c != nil:
				near = c.SuggestionsFor(rest[0])
			case len(args) > 0:
				near = cmd.Root().SuggestionsFor(args[0])
			}
			msg := fmt.Sprintf("unknown help topic %q", strings.Join(args, " "))
			if len(near) > 0 {
				msg += "\n\nDid you mean this?\n\t" + strings.Join(near, "\n\t") + "\n"
			}
			return errors.New(msg)
		},
		// Command names complete, as with cobra's own help command.
		ValidArgsFunction: func(cmd *cobra.Command, args []string, toComplete string) ([]string, cobra.ShellCompDirective) {
			c, _, err := cmd.Root().Find(args)
			if err != nil {
				return nil, cobra.ShellCompDirectiveNoFileComp
			}
			if c == nil {
				c = cmd.Root()
			}
			var out []string
			for _, sub := range c.Commands() {
				if (sub.IsAvailableCommand() || sub.Name() == "help") && strings.HasPrefix(sub.Name(), toComplete) {
					out = append(out, cobra.CompletionWithDesc(sub.Name(), sub.Short))
				}
			}
			return out, cobra.ShellCompDirectiveNoFileComp
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			c, _, _ := cmd.Root().Find(args)
			c.InitDefaultHelpFlag()
			c.InitDefaultVersionFlag()
			return c.Help()
		},
	}
}

// loadForAgent loads the configuration for a command that talks to the
// running agent or reads its buffer (status, flush, deadletter). A file that
// does not load no longer stops them: the agent keeps running on what it
// loaded before, so they warn on errw and go on with the file's top-level
// site, data_dir and listen.
func loadForAgent(path string, errw io.Writer) (*config.Config, error) {
	cfg, _, err := loadForAgentPartly(path, errw)
	return cfg, err
}

// loadForAgentPartly is loadForAgent, and also returns why the file does
// not load when cfg holds only its endpoints (nil when it loads).
func loadForAgentPartly(path string, errw io.Writer) (_ *config.Config, broken, _ error) {
	cfg, err := loadConfig(path)
	if errors.Is(err, os.ErrPermission) {
		// /etc/plantedge is root:plantedge 0750: a technician's own user
		// may not read it.
		return nil, nil, fmt.Errorf("%w (run it as root or as the plantedge user: sudo plantedge ...)", err)
	}
	var ce *config.Error
	if err == nil || !errors.As(err, &ce) {
		return cfg, nil, err
	}
	cfg, eerr := config.Endpoints(path)
	if eerr != nil {
		return nil, nil, err
	}
	fmt.Fprintf(errw, "warning: %s does not load (%s; `plantedge validate` shows every problem); "+
		"using its listen %s and data_dir %s\n", path, plural(len(ce.Problems), "problem"), cfg.Listen, cfg.DataDir)
	return cfg, err, nil
}

// loadConfig is config.Load, with a hint when the file is not there: the
// package's default (removed, or a machine without the package), or a path
// given with -c.
func loadConfig(path string) (*config.Config, error) {
	cfg, err := config.Load(path)
	var pe *fs.PathError
	if errors.Is(err, fs.ErrNotExist) && errors.As(err, &pe) && pe.Path == path {
		if path == defaultConfig {
			return nil, fmt.Errorf("%w (the package's default: copy the example, /usr/share/plantedge/plantedge.yaml, there, or name another file with -c FILE)", err)
		}
		return nil, fmt.Errorf("%w (check the path given with -c)", err)
	}
	return cfg, err
}
