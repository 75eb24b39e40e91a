package opcua

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/gopcua/opcua/ua"
)

// NodeInfo is what a server says about one configured node.
type NodeInfo struct {
	Node     string // as configured
	Status   string // why the node could not be read (BadNodeIdUnknown, ...); "" when it could
	Class    string // Variable, Object, ...
	DataType string
	Value    any // as samples carry it; nil when the value is bad
	Quality  string
	// Moved says where a node written as ns=N was read instead, when
	// cfg.Pins has it pinned to a namespace the server now numbers
	// differently ("ns=2 (urn:x) is now ns=3"), as the agent reads it.
	Moved string
	NSU   string // with Moved: the node written by its namespace URI (nsu=...;s=...)
}

// Inspect connects as a Source with cfg would — with its client certificate,
// which it never creates — reads the class, data type and value of every
// node in cfg.Nodes, in that order, and disconnects. It is for checking a
// configuration before the agent runs. A node written as ns=N is resolved
// by cfg.Pins as the agent resolves it; Inspect never pins one (it calls
// only NamespacePin).
func Inspect(ctx context.Context, cfg Config) ([]NodeInfo, error) {
	cfg = cfg.withDefaults()
	sec, nodes, err := cfg.validate()
	if err != nil {
		return nil, err
	}
	var cert *clientCert
	if !sec.none() {
		cc, err := loadClientCert(cfg.CertFile, cfg.KeyFile, cfg.DataDir, cfg.Name)
		if errors.Is(err, errNoCert) {
			return nil, fmt.Errorf("%w: the agent creates it on its first start, then the server must trust it; or set cert_file and key_file", err)
		}
		if err != nil {
			return nil, err
		}
		cert = &cc
	}
	cctx, cancel := context.WithTimeout(ctx, 2*cfg.RequestTimeout)
	c, err := dial(cctx, clientParams{
		endpoint: cfg.Endpoint, sec: sec, cert: cert,
		username: cfg.Username, password: cfg.Password, requestTimeout: cfg.RequestTimeout,
		checkLogin: true, // a refused login leaves no session (checkLogin)
	})
	cancel()
	if err != nil {
		return nil, err
	}
	defer closeClient(c)
	out := make([]NodeInfo, len(nodes))
	var ids []*ua.NodeID
	var at []int
	meant := meantIndexes(nodes, cfg.Pins)
	for i, n := range nodes {
		out[i].Node = n.addr
		pins := readOnlyPins{cfg.Pins}
		nid, moved, err := n.pinned(c.Namespaces(), pins, meant)
		if moved != "" {
			uri, _ := pins.NamespacePin(n.addr)
			out[i].Moved, out[i].NSU = moved, "nsu="+uri+";"+n.idPart
		}
		if err != nil {
			out[i].Status = err.Error()
			continue
		}
		ids, at = append(ids, nid), append(at, i)
	}
	per := max(1, capped(maxNodesPerRequest*3, readLimits(ctx, c, cfg.RequestTimeout).read)/3)
	b := &browser{c: c, opts: BrowseOptions{Timeout: cfg.RequestTimeout}, typeNames: map[string]string{}}
	for lo := 0; lo < len(ids); lo += per {
		hi := min(lo+per, len(ids))
		req := &ua.ReadRequest{TimestampsToReturn: ua.TimestampsToReturnNeither}
		for j, nid := range ids[lo:hi] {
			req.NodesToRead = append(req.NodesToRead,
				&ua.ReadValueID{NodeID: nid, AttributeID: ua.AttributeIDNodeClass},
				&ua.ReadValueID{NodeID: nid, AttributeID: ua.AttributeIDDataType},
				nodes[at[lo+j]].valueID(nid))
		}
		rctx, cancel := context.WithTimeout(ctx, cfg.RequestTimeout)
		res, err := c.Read(rctx, req)
		cancel()
		if err == nil && len(res.Results) != len(req.NodesToRead) {
			err = fmt.Errorf("%d results for %d", len(res.Results), len(req.NodesToRead))
		}
		if err != nil {
			return nil, fmt.Errorf("read: %w", err)
		}
		for j := range ids[lo:hi] {
			ni := &out[at[lo+j]]
			class, dt, raw := res.Results[3*j], res.Results[3*j+1], res.Results[3*j+2]
			val := nodes[at[lo+j]].read(raw) // an element's: its value, or why there is none
			if class == nil || !statusGood(class.Status) {
				ni.Status = "BadNoData"
				if class != nil {
					ni.Status = statusName(class.Status)
				}
				continue
			}
			if nc, ok := class.Value.Value().(int32); ok {
				ni.Class = strings.TrimPrefix(ua.NodeClass(nc).String(), "NodeClass")
			}
			if ni.Class != "Variable" {
				continue
			}
			ni.DataType = b.typeName(ctx, dt, raw) // the node's type, also where its element is missing
			v, good, quality, _ := sampleFields(val)
			ni.Quality = quality
			if good {
				ni.Value = v
			}
		}
	}
	return out, nil
}

// readOnlyPins passes lookups through and drops what would be pinned.
type readOnlyPins struct{ NamespacePins }

func (p readOnlyPins) NamespacePin(node string) (string, bool) {
	if p.NamespacePins == nil {
		return "", false
	}
	return p.NamespacePins.NamespacePin(node)
}

func (readOnlyPins) SetNamespacePin(string, string) error { return nil }
