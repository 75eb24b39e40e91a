package main

import (
	"strings"
	"testing"
)

// TestSpecCommandLine pins the command line SPEC.md names, which tests
// outside the repository drive the binary through: each command, its flags
// with their spellings, and -c/--config defaulting to the packaged file.
// Other tests run these commands with the flags given; none would notice a
// renamed flag, a lost shorthand or another default path.
func TestSpecCommandLine(t *testing.T) {
	for _, tc := range []struct {
		cmd   string   // the command's path below plantedge
		flags []string // long flags SPEC.md gives it
	}{
		{cmd: "run"},
		{cmd: "status", flags: []string{"json"}},
		{cmd: "flush", flags: []string{"timeout"}},
		{cmd: "validate", flags: []string{"odoo"}},
		{cmd: "deadletter list"},
		{cmd: "deadletter retry"},
		{cmd: "deadletter drop"},
		{cmd: "browse", flags: []string{"node", "depth"}},
		{cmd: "demo"},
		{cmd: "version"},
	} {
		t.Run(tc.cmd, func(t *testing.T) {
			root := newRootCmd()
			c, rest, err := root.Find(strings.Fields(tc.cmd))
			if err != nil || len(rest) != 0 || c.CommandPath() != "plantedge "+tc.cmd {
				t.Fatalf("plantedge %s: found %q (rest %q): %v", tc.cmd, c.CommandPath(), rest, err)
			}
			for _, name := range tc.flags {
				if c.Flag(name) == nil {
					t.Errorf("plantedge %s has no --%s", tc.cmd, name)
				}
			}
			// SPEC.md: the config file defaults to /etc/plantedge/plantedge.yaml,
			// -c/--config overrides it (browse, demo and version read none).
			f := c.Flag("config")
			switch tc.cmd {
			case "browse", "demo", "version":
				if f != nil {
					t.Errorf("plantedge %s takes --config, which it would not read", tc.cmd)
				}
				return
			}
			if f == nil {
				t.Fatalf("plantedge %s has no --config", tc.cmd)
			}
			if f.Shorthand != "c" || f.DefValue != "/etc/plantedge/plantedge.yaml" {
				t.Errorf("plantedge %s --config: shorthand -%s, default %q; want -c, /etc/plantedge/plantedge.yaml", tc.cmd, f.Shorthand, f.DefValue)
			}
		})
	}
	// browse takes the endpoint as its argument.
	if _, err := cli(t, "browse"); exitCode(err) != exitUsage {
		t.Errorf("browse without ENDPOINT: exit %d, %v; want %d", exitCode(err), err, exitUsage)
	}
}
