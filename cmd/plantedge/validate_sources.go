package main

import (
	"errors"
	"fmt"
	"io"
	"slices"

	"github.com/plantedge/plantedge/agent/config"
	"github.com/plantedge/plantedge/agent/mapping"
)

// sourceUse is one machine signal reading a source.
type sourceUse struct {
	path     string // machines[i].<signal>.<opcua|mqtt>
	machine  string
	signal   mapping.Signal
	ref      config.SourceRef
	rollover uint64   // counters'
	running  []string // running's running_values
}

// usesOf lists, in file order, the machine signals that read the OPC UA
// server (kind "opcua") or MQTT broker (kind "mqtt") called name, and the
// nodes or topics they read, each once.
func usesOf(cfg *config.Config, kind, name string) (out []sourceUse, addrs []string) {
	for i := range cfg.Machines {
		mc := &cfg.Machines[i]
		for _, r := range mc.Refs() {
			var addr string
			switch {
			case kind == "opcua" && r.Ref.OPCUA != nil && r.Ref.OPCUA.Server == name:
				addr = r.Ref.OPCUA.Address() // an element of an array: its own
			case kind == "mqtt" && r.Ref.MQTT != nil && r.Ref.MQTT.Broker == name:
				addr = r.Ref.MQTT.Topic
			default:
				continue
			}
			if !slices.Contains(addrs, addr) {
				addrs = append(addrs, addr)
			}
			u := sourceUse{path: fmt.Sprintf("machines[%d].%s.%s", i, r.Signal, kind), machine: mc.ID,
				signal: mapping.Signal(r.Signal), ref: r.Ref}
			switch u.signal {
			case mapping.GoodCount:
				u.rollover = mc.GoodCount.Rollover
			case mapping.ScrapCount:
				u.rollover = mc.ScrapCount.Rollover
			case mapping.Running:
				u.running = mc.Running.RunningValues
			}
			out = append(out, u)
		}
	}
	return out, addrs
}

// sourceCheck prints what a --opcua or --mqtt check finds and counts the
// problems, each at its place in the file.
type sourceCheck struct {
	w        io.Writer
	cfg      *config.Config
	file     string
	kind     string
	problems int
}

func (c *sourceCheck) problem(path, msg, hint string) {
	c.problems++
	pos := c.cfg.Position(path)
	fmt.Fprintln(c.w, c.kind+": problem: "+config.Problem{File: c.file, Line: pos.Line, Column: pos.Column, Path: path, Msg: msg, Hint: hint}.String())
}

// warning prints what is likely a slip, at its place in the file; it does
// not fail the check.
func (c *sourceCheck) warning(path, msg, hint string) {
	pos := c.cfg.Position(path)
	fmt.Fprintln(c.w, c.kind+": warning: "+config.Problem{File: c.file, Line: pos.Line, Column: pos.Column, Path: path, Msg: msg, Hint: hint}.String())
}

func (c *sourceCheck) result() error {
	if c.problems > 0 {
		return errors.New(plural(c.problems, "problem"))
	}
	return nil
}
