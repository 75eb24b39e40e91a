// Command plantedge is the plant-edge store-and-forward agent: it reads OPC UA
// and MQTT machine values, buffers them durably and forwards them to Odoo
// work orders. See README.md.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		var ee *exitError
		if errors.As(err, &ee) {
			if ee.msg != "" {
				fmt.Fprintln(termSafe{os.Stderr}, "plantedge:", ee.msg)
			}
			os.Exit(ee.code)
		}
		fmt.Fprintln(termSafe{os.Stderr}, "plantedge:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	root := newRootCmd()
	root.SetOut(termSafe{os.Stdout})
	root.SetErr(termSafe{os.Stderr})
	root.SetArgs(args)
	return execute(context.Background(), root)
}

// execute runs root; an error before the command's own run began — its
// flags and arguments are taken first — is the command line's (exitUsage).
func execute(ctx context.Context, root *cobra.Command) error {
	began := false
	root.PersistentPreRunE = func(cmd *cobra.Command, _ []string) error {
		// cobra checks required flags after this hook: a missing one
		// (rebook's --since) is the command line's too (the readme probe:
		// exit 1).
		if err := cmd.ValidateRequiredFlags(); err != nil {
			return err
		}
		began = true
		return nil
	}
	cmd, err := root.ExecuteContextC(ctx)
	if err != nil && !began {
		return &exitError{code: exitUsage, cause: err,
			msg: fmt.Sprintf("%v (see: %s --help)", err, cmd.CommandPath())}
	}
	return err
}

// exitUsage is the exit status for a command line that is not understood
// (sysexits' EX_USAGE): apart from what the commands exit with — flush's 1
// for a timeout, for one — so that a script tells a typo from a result.
const exitUsage = 64

// exitError carries a specific exit code out of a command; cause, if set,
// is the error it stands for (errors.Is sees through).
type exitError struct {
	code  int
	msg   string
	cause error
}

func (e *exitError) Error() string { return e.msg }
func (e *exitError) Unwrap() error { return e.cause }
