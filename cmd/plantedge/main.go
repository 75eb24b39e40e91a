// Command plantedge is the plant-edge store-and-forward agent: it reads OPC UA
// and MQTT machine values, buffers them durably and forwards them to Odoo
// work orders. See README.md.
package main

import (
	"errors"
	"fmt"
	"os"
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
	return root.Execute()
}

// exitError carries a specific exit code out of a command; cause, if set,
// is the error it stands for (errors.Is sees through).
type exitError struct {
	code  int
	msg   string
	cause error
}

func (e *exitError) Error() string { return e.msg }
func (e *exitError) Unwrap() error { return e.cause }
