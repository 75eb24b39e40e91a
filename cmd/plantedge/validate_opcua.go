package main

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/plantedge/plantedge/agent"
	"github.com/plantedge/plantedge/agent/config"
	"github.com/plantedge/plantedge/agent/mapping"
	"github.com/plantedge/plantedge/connectors/opcua"
)

func init() { validateOPCUA = checkOPCUA }

// checkOPCUA connects to every OPC UA server the machines use, reads each
// node they name, and checks that it exists, is a variable, and holds a
// value its signal can use. Every problem gets one line with its place in
// file; it fails when there is any.
func checkOPCUA(ctx context.Context, cfg *config.Config, file string, w io.Writer) error {
	c := &sourceCheck{w: w, cfg: cfg, file: file, kind: "opcua"}
	for si, s := range cfg.OPCUA {
		uses, nodes := usesOf(cfg, "opcua", s.Name)
		if len(nodes) == 0 {
			fmt.Fprintf(w, "opcua %s: no machine uses it\n", s.Name)
			continue
		}
		oc, err := agent.OPCUAConfig(cfg, s, nodes, nil)
		var infos []opcua.NodeInfo
		if err == nil {
			infos, err = opcua.Inspect(ctx, oc)
		}
		if err != nil {
			c.problem(fmt.Sprintf("opcua[%d].endpoint", si), fmt.Sprintf("%s (%s): %v", s.Name, s.Endpoint, err),
				"check the endpoint, the network, security_policy/security_mode and that the server trusts the client certificate")
			continue
		}
		fmt.Fprintf(w, "opcua %s: connected to %s: %s\n", s.Name, s.Endpoint, plural(len(nodes), "node"))
		byNode := map[string]opcua.NodeInfo{}
		for _, in := range infos {
			byNode[in.Node] = in
		}
		for _, u := range uses {
			node := u.ref.OPCUA.Node
			in := byNode[node]
			at := u.path + ".node"
			browse := fmt.Sprintf("plantedge browse %s --node %q shows what is there", s.Endpoint, node)
			switch {
			case in.Status != "":
				c.problem(at, fmt.Sprintf("%s: %s", node, in.Status), "plantedge browse "+s.Endpoint+" shows the server's node ids")
			case in.Class != "Variable":
				c.problem(at, fmt.Sprintf("%s is not a variable (node class %s)", node, in.Class), browse)
			case in.Value == nil:
				fmt.Fprintf(w, "opcua %s: %s %s: %s %s: no good value now (%s)\n", s.Name, u.machine, u.signal, node, in.DataType, in.Quality)
			default:
				if err := mapping.CheckValue(u.signal, in.Value, u.rollover); err != nil {
					c.problem(at, fmt.Sprintf("%s holds %s %v, which %s cannot use: %v", node, in.DataType, in.Value, u.signal, err), browse)
					continue
				}
				fmt.Fprintf(w, "opcua %s: %s %s: %s %s = %v\n", s.Name, u.machine, u.signal, node, in.DataType, in.Value)
				if r := narrowRange[in.DataType]; r > 0 && u.rollover == 0 && (u.signal == mapping.GoodCount || u.signal == mapping.ScrapCount) {
					// A 16-bit counter wraps within days; a signed one goes
					// negative (unusable) after 32,767 without rollover.
					c.warning(strings.TrimSuffix(u.path, ".opcua"), fmt.Sprintf("%s is %s: a counter of that type wraps at %d, and no rollover is set", node, in.DataType, r),
						fmt.Sprintf("set rollover: %d, or its wrap (a signed one past its maximum) counts as a reset or an unusable value", r))
				}
			}
		}
	}
	return c.result()
}

// narrowRange is the rollover of the OPC UA integer types a counter wraps
// in soon: 8 and 16 bits (a 32-bit one at 100 pieces/s takes over a year).
var narrowRange = map[string]uint64{"SByte": 1 << 8, "Byte": 1 << 8, "Int16": 1 << 16, "UInt16": 1 << 16}
