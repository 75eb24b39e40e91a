package main

import (
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
	root.AddCommand(
		newVersionCmd(),
		newBrowseCmd(),
		newRunCmd(),
		newStatusCmd(),
		newFlushCmd(),
		newDeadLetterCmd(),
		newDemoCmd(),
		newCompactCmd(),
		newValidateCmd(),
	)
	return root
}
