package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"

	"github.com/plantedge/plantedge/agent"
	"github.com/plantedge/plantedge/agent/config"
	"github.com/plantedge/plantedge/agent/mapping"
	"github.com/plantedge/plantedge/connectors/opcua"
)

func init() { validateOPCUA = checkOPCUA }

// opcuaUse is one signal reading a node.
type opcuaUse struct {
	path     string // machines[i].<signal>.opcua.node
	machine  string
	signal   mapping.Signal
	node     string
	rollover uint64
}

// checkOPCUA connects to every OPC UA server the machines use, reads each
// node they name, and checks that it exists, is a variable, and holds a
// value its signal can use. Every problem gets one line with its place in
// file; it fails when there is any.
func checkOPCUA(ctx context.Context, cfg *config.Config, file string, w io.Writer) error {
	problems := 0
	problem := func(path, msg, hint string) {
		problems++
		pos := cfg.Position(path)
		fmt.Fprintln(w, "opcua: problem: "+config.Problem{File: file, Line: pos.Line, Column: pos.Column, Path: path, Msg: msg, Hint: hint}.String())
	}
	for si, s := range cfg.OPCUA {
		var uses []opcuaUse
		var nodes []string
		for i := range cfg.Machines {
			mc := &cfg.Machines[i]
			for _, r := range mc.Refs() {
				if r.Ref.OPCUA == nil || r.Ref.OPCUA.Server != s.Name {
					continue
				}
				u := opcuaUse{path: fmt.Sprintf("machines[%d].%s.opcua.node", i, r.Signal), machine: mc.ID,
					signal: mapping.Signal(r.Signal), node: r.Ref.OPCUA.Node}
				switch u.signal {
				case mapping.GoodCount:
					u.rollover = mc.GoodCount.Rollover
				case mapping.ScrapCount:
					u.rollover = mc.ScrapCount.Rollover
				}
				uses = append(uses, u)
				if !slices.Contains(nodes, u.node) {
					nodes = append(nodes, u.node)
				}
			}
		}
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
			problem(fmt.Sprintf("opcua[%d].endpoint", si), fmt.Sprintf("%s (%s): %v", s.Name, s.Endpoint, err),
				"check the endpoint, the network, security_policy/security_mode and that the server trusts the client certificate")
			continue
		}
		fmt.Fprintf(w, "opcua %s: connected to %s: %s\n", s.Name, s.Endpoint, plural(len(nodes), "node"))
		byNode := map[string]opcua.NodeInfo{}
		for _, in := range infos {
			byNode[in.Node] = in
		}
		for _, u := range uses {
			in := byNode[u.node]
			browse := fmt.Sprintf("plantedge browse %s --node %q shows what is there", s.Endpoint, u.node)
			switch {
			case in.Status != "":
				problem(u.path, fmt.Sprintf("%s: %s", u.node, in.Status), "plantedge browse "+s.Endpoint+" shows the server's node ids")
			case in.Class != "Variable":
				problem(u.path, fmt.Sprintf("%s is not a variable (node class %s)", u.node, in.Class), browse)
			case in.Value == nil:
				fmt.Fprintf(w, "opcua %s: %s %s: %s %s: no good value now (%s)\n", s.Name, u.machine, u.signal, u.node, in.DataType, in.Quality)
			default:
				if err := mapping.CheckValue(u.signal, in.Value, u.rollover); err != nil {
					problem(u.path, fmt.Sprintf("%s holds %s %v, which %s cannot use: %v", u.node, in.DataType, in.Value, u.signal, err), browse)
					continue
				}
				fmt.Fprintf(w, "opcua %s: %s %s: %s %s = %v\n", s.Name, u.machine, u.signal, u.node, in.DataType, in.Value)
			}
		}
	}
	if problems > 0 {
		return errors.New(plural(problems, "problem"))
	}
	return nil
}
