package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"github.com/plantedge/plantedge/agent"
	"github.com/plantedge/plantedge/agent/config"
	"github.com/plantedge/plantedge/agent/mapping"
	"github.com/plantedge/plantedge/buffer"
	"github.com/plantedge/plantedge/connectors/opcua"
)

func init() { validateOPCUA = checkOPCUA }

// checkOPCUA connects to every OPC UA server the machines use, reads each
// node they name, and checks that it exists, is a variable, and holds a
// value its signal can use. Every problem gets one line with its place in
// file; it fails when there is any.
func checkOPCUA(ctx context.Context, cfg *config.Config, file string, w io.Writer) error {
	c := &sourceCheck{w: w, cfg: cfg, file: file, kind: "opcua"}
	pins, err := keptNamespacePins(ctx, cfg)
	if err != nil {
		fmt.Fprintf(w, "opcua: the namespace pins the agent keeps are not readable (%v): nodes written as ns=N are read as each server numbers its namespaces now, which may not be where the agent reads them\n", err)
	}
	for si, s := range cfg.OPCUA {
		uses, addrs := usesOf(cfg, "opcua", s.Name)
		if len(addrs) == 0 {
			fmt.Fprintf(w, "opcua %s: no machine uses it\n", s.Name)
			continue
		}
		var nodes []config.OPCUARef // each address once, an element with its index
		for _, u := range uses {
			if !slices.ContainsFunc(nodes, func(n config.OPCUARef) bool { return n.Address() == u.ref.OPCUA.Address() }) {
				nodes = append(nodes, *u.ref.OPCUA)
			}
		}
		oc, err := agent.OPCUAConfig(cfg, s, nodes, nil)
		var infos []opcua.NodeInfo
		if err == nil {
			oc.Pins = agent.KeptPins(pins, s.Name, s.Endpoint)
			infos, err = opcua.Inspect(ctx, oc)
		}
		switch {
		case err != nil && opcua.LoginRefused(err) && s.Username != "":
			// The server answered and said whom it refuses.
			c.problem(fmt.Sprintf("opcua[%d].username", si), fmt.Sprintf("%s (%s): the server refused user %s: %v", s.Name, s.Endpoint, s.Username, err),
				"check the user name, and the password in password_file or password_env (the password changed on the server? the account locked?)")
			continue
		case err != nil && opcua.LoginRefused(err):
			c.problem(fmt.Sprintf("opcua[%d]", si), fmt.Sprintf("%s (%s): the server refused an anonymous session: %v", s.Name, s.Endpoint, err),
				"set username and password_file (or password_env) for a user the server takes")
			continue
		case err != nil:
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
			node := u.ref.OPCUA.Address() // an element: node[index]
			in := byNode[node]
			at := u.path + ".node"
			browse := fmt.Sprintf("plantedge browse %s --node %q shows what is there", s.Endpoint, u.ref.OPCUA.Node)
			if in.Moved != "" {
				// The agent reads the node where its namespace went, and so
				// does this check; ns=N alone now names another namespace's
				// node, or none.
				c.warning(strings.TrimSuffix(u.path, ".opcua"), fmt.Sprintf("%s: the server renumbered its namespaces since the agent first read this node: %s, where the agent reads it", node, in.Moved),
					fmt.Sprintf("write the node as %s so that it names that node whatever the numbers", in.NSU))
			}
			switch {
			case in.Status != "":
				c.problem(at, fmt.Sprintf("%s: %s", node, in.Status), "plantedge browse "+s.Endpoint+" shows the server's node ids")
			case in.Class != "Variable":
				c.problem(at, fmt.Sprintf("%s is not a variable (node class %s)", node, in.Class), browse)
			case u.ref.OPCUA.Index != nil && in.Quality == "BadIndexRangeNoData":
				c.problem(u.path+".index", fmt.Sprintf("%s: the array at %s has no element %d (%s)", node, u.ref.OPCUA.Node, *u.ref.OPCUA.Index, in.Quality),
					"the index is 0-based: 0 is the first element, and it must be below the array's length; "+browse)
			case u.ref.OPCUA.Index != nil && in.Quality == "BadIndexRangeInvalid":
				c.problem(u.path+".index", fmt.Sprintf("%s: %s holds one %s, no array (%s), so no element is read", node, u.ref.OPCUA.Node, in.DataType, in.Quality),
					"remove index: for a node that holds one value; "+browse)
			case in.Value == nil:
				fmt.Fprintf(w, "opcua %s: %s %s: %s %s: no good value now (%s)\n", s.Name, u.machine, u.signal, node, in.DataType, in.Quality)
			default:
				if err := mapping.CheckValue(u.signal, in.Value, u.rollover, u.running...); err != nil {
					c.problem(at, fmt.Sprintf("%s holds %s %v, which %s cannot use: %v", node, in.DataType, in.Value, u.signal, err), browse)
					continue
				}
				fmt.Fprintf(w, "opcua %s: %s %s: %s %s = %s\n", s.Name, u.machine, u.signal, node, in.DataType, oneLine(fmt.Sprint(in.Value)))
				if u.signal == mapping.Running && len(u.running) == 0 && in.DataType != "Boolean" {
					// A state word or text read as a run bit: a fault state
					// (2) reads as running, a state text other than the run
					// words (FAULT) is refused: either way its stop is lost
					// (the uatypes probe).
					what := "every value but 0 reads as running: a state word (1 running, 2 fault) books no stop for 2"
					if in.DataType == "String" || in.DataType == "LocalizedText" {
						what = "only true/false, 1/0, running/stopped, run/stop and on/off are read: another state text (FAULT, IDLE) is refused, and its stop lost"
					}
					c.warning(strings.TrimSuffix(u.path, ".opcua"), fmt.Sprintf("%s is %s, not Boolean: %s", node, in.DataType, what),
						"if it is a machine state, list the values that mean running: running_values: [1] (or [RUNNING, EXECUTE])")
				}
				if r := narrowRange[in.DataType]; r > 0 && u.rollover == 0 && (u.signal == mapping.GoodCount || u.signal == mapping.ScrapCount) {
					// A 16-bit counter wraps within days; a signed one goes
					// negative (unusable) after 32,767 without rollover.
					c.warning(strings.TrimSuffix(u.path, ".opcua"), fmt.Sprintf("%s is %s: a counter of that type wraps at %d, and no rollover is set", node, in.DataType, r),
						fmt.Sprintf("set rollover: %d, or its wrap (a signed one past its maximum) counts as a reset or an unusable value", r))
				}
				if in.DataType == "Float" && (u.signal == mapping.GoodCount || u.signal == mapping.ScrapCount) {
					// A REAL's 24-bit mantissa: 16777216 + 1 is 16777216.
					c.warning(strings.TrimSuffix(u.path, ".opcua"), fmt.Sprintf("%s is Float: it holds whole numbers exactly only up to 16777216, past which a step of 1 is lost", node),
						"read a DINT/UDINT counter, or a Double, if the PLC has one")
				}
			}
		}
	}
	return c.result()
}

// keptNamespacePins reads the OPC UA namespace pins the agent keeps: from
// the running agent, or from a stopped one's buffer file opened read-only
// (none when it never ran).
func keptNamespacePins(ctx context.Context, cfg *config.Config) ([]agent.NamespacePin, error) {
	pins, err := agent.NewAPIClient(cfg.Listen).ForConfig(cfg).NamespacePins(ctx)
	if err == nil || !errors.Is(err, agent.ErrNotRunning) {
		return pins, err
	}
	if _, err := os.Stat(cfg.BufferPath()); errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	q, err := buffer.Open(cfg.BufferPath(), buffer.Options{ReadOnly: true})
	if err != nil {
		return nil, err
	}
	defer q.Close()
	return agent.NamespacePinsIn(q)
}

// narrowRange is the rollover of the OPC UA integer types a counter wraps
// in soon: 8 and 16 bits (a 32-bit one at 100 pieces/s takes over a year).
var narrowRange = map[string]uint64{"SByte": 1 << 8, "Byte": 1 << 8, "Int16": 1 << 16, "UInt16": 1 << 16}
