package opcua

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/gopcua/opcua"
	"github.com/gopcua/opcua/id"
	"github.com/gopcua/opcua/ua"
)

// Browse defaults.
const (
	DefaultBrowseNode     = "i=85" // Objects folder
	DefaultBrowseDepth    = 3
	DefaultBrowseMaxNodes = 10000
	DefaultBrowseTimeout  = 10 * time.Second
)

// browsePageSize is the number of references asked for per Browse call;
// larger results come in pages through BrowseNext.
const browsePageSize = 1000

// BrowseOptions selects what Browse prints and how it connects.
type BrowseOptions struct {
	Node     string // start node in any string form; default ns=0;i=85 (Objects)
	Depth    int    // levels below Node; default 3
	MaxNodes int    // stop after printing this many nodes; default 10,000

	SecurityPolicy, SecurityMode string
	CertFile, KeyFile            string
	DataDir                      string // where a generated client certificate is kept
	ServerThumbprint             string
	Username, Password           string

	Timeout time.Duration // per request; default 10 s
}

// ErrTruncated is returned by Browse when MaxNodes stopped it early; the
// tree printed so far is complete up to that node.
var ErrTruncated = errors.New("browse truncated at the node limit")

// Browse prints the address space under opts.Node as an indented tree, one
// node a line: node id, browse name, and for variables the data type and
// current value, so node ids can be copied into the configuration.
func Browse(ctx context.Context, endpoint string, opts BrowseOptions, w io.Writer) error {
	if opts.Node == "" {
		opts.Node = DefaultBrowseNode
	}
	if opts.Depth <= 0 {
		opts.Depth = DefaultBrowseDepth
	}
	if opts.MaxNodes <= 0 {
		opts.MaxNodes = DefaultBrowseMaxNodes
	}
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultBrowseTimeout
	}
	if !strings.HasPrefix(endpoint, "opc.tcp://") {
		return fmt.Errorf("browse: endpoint %q: want opc.tcp://host:port", endpoint)
	}
	root, err := parseNode(opts.Node)
	if err != nil {
		return fmt.Errorf("browse: %w", err)
	}
	sec, errs := parseSecurity(opts.SecurityPolicy, opts.SecurityMode, opts.ServerThumbprint)
	if len(errs) > 0 {
		return fmt.Errorf("browse: %w", errors.Join(errs...))
	}
	var cert *clientCert
	if !sec.none() {
		if opts.CertFile == "" && opts.DataDir == "" {
			return errors.New("browse: security needs a client certificate (cert/key files or a data dir)")
		}
		cc, _, err := loadOrCreateCert(opts.CertFile, opts.KeyFile, opts.DataDir, "browse")
		if err != nil {
			return fmt.Errorf("browse: %w", err)
		}
		cert = &cc
	}
	cctx, cancel := context.WithTimeout(ctx, 2*opts.Timeout)
	c, err := dial(cctx, clientParams{
		endpoint: endpoint, sec: sec, cert: cert,
		username: opts.Username, password: opts.Password, requestTimeout: opts.Timeout,
	})
	cancel()
	if err != nil {
		return fmt.Errorf("browse %s: %w", endpoint, err)
	}
	defer closeClient(c)
	rootID, err := root.resolve(c.Namespaces())
	if err != nil {
		return fmt.Errorf("browse: %w", err)
	}
	b := &browser{c: c, w: w, opts: opts, seen: map[string]bool{}, typeNames: map[string]string{}}
	if err := b.printRoot(ctx, rootID); err != nil {
		return err
	}
	if err := b.walk(ctx, rootID, 1); err != nil {
		return err
	}
	if b.truncated {
		fmt.Fprintf(w, "... stopped after %d nodes (raise --max-nodes or browse a deeper --node)\n", b.printed)
		return ErrTruncated
	}
	return nil
}

type browser struct {
	c         *opcua.Client
	w         io.Writer
	opts      BrowseOptions
	seen      map[string]bool
	typeNames map[string]string // data type node id -> name
	printed   int
	truncated bool
}

func (b *browser) reqCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, b.opts.Timeout)
}

func (b *browser) printRoot(ctx context.Context, nid *ua.NodeID) error {
	rctx, cancel := b.reqCtx(ctx)
	defer cancel()
	res, err := b.c.Read(rctx, &ua.ReadRequest{NodesToRead: []*ua.ReadValueID{
		{NodeID: nid, AttributeID: ua.AttributeIDBrowseName},
		{NodeID: nid, AttributeID: ua.AttributeIDNodeClass},
	}})
	if err != nil {
		return fmt.Errorf("browse: read %s: %w", nid, err)
	}
	if len(res.Results) != 2 {
		return fmt.Errorf("browse: read %s: %d results", nid, len(res.Results))
	}
	if !statusGood(res.Results[0].Status) {
		return fmt.Errorf("browse: node %s: %w", nid, res.Results[0].Status)
	}
	name := ""
	if qn, ok := res.Results[0].Value.Value().(*ua.QualifiedName); ok && qn != nil {
		name = qn.Name
	}
	b.seen[nid.String()] = true
	ref := &ua.ReferenceDescription{NodeID: ua.NewExpandedNodeID(nid, "", 0), BrowseName: &ua.QualifiedName{Name: name}}
	if nc, ok := res.Results[1].Value.Value().(int32); ok {
		ref.NodeClass = ua.NodeClass(nc)
	}
	return b.printNodes(ctx, []*ua.ReferenceDescription{ref}, 0)
}

// walk prints the children of nid at the given depth, depth first.
func (b *browser) walk(ctx context.Context, nid *ua.NodeID, depth int) error {
	if depth > b.opts.Depth || b.truncated {
		return nil
	}
	refs, err := b.children(ctx, nid)
	if err != nil {
		return err
	}
	var fresh []*ua.ReferenceDescription
	for _, r := range refs {
		if r.NodeID == nil || r.NodeID.HasServerIndex() {
			continue // on another server
		}
		k := r.NodeID.NodeID.String()
		if b.seen[k] {
			continue
		}
		b.seen[k] = true
		fresh = append(fresh, r)
	}
	for i := 0; i < len(fresh); i += maxNodesPerRequest {
		chunk := fresh[i:min(i+maxNodesPerRequest, len(fresh))]
		vals, err := b.readVars(ctx, chunk)
		if err != nil {
			return err
		}
		for _, r := range chunk {
			if b.printed >= b.opts.MaxNodes {
				b.truncated = true
				return nil
			}
			if err := b.printLine(ctx, r, vals[r], depth); err != nil {
				return err
			}
			if err := b.walk(ctx, r.NodeID.NodeID, depth+1); err != nil {
				return err
			}
			if b.truncated {
				return nil
			}
		}
	}
	return nil
}

// children returns all hierarchical forward references of nid, following
// continuation points until the server has no more.
func (b *browser) children(ctx context.Context, nid *ua.NodeID) ([]*ua.ReferenceDescription, error) {
	rctx, cancel := b.reqCtx(ctx)
	res, err := b.c.Browse(rctx, &ua.BrowseRequest{
		View:                          &ua.ViewDescription{ViewID: ua.NewTwoByteNodeID(0)},
		RequestedMaxReferencesPerNode: browsePageSize,
		NodesToBrowse: []*ua.BrowseDescription{{
			NodeID:          nid,
			BrowseDirection: ua.BrowseDirectionForward,
			ReferenceTypeID: ua.NewNumericNodeID(0, id.HierarchicalReferences),
			IncludeSubtypes: true,
			ResultMask:      uint32(ua.BrowseResultMaskAll),
		}},
	})
	cancel()
	if err != nil {
		return nil, fmt.Errorf("browse %s: %w", nid, err)
	}
	if len(res.Results) != 1 {
		return nil, fmt.Errorf("browse %s: %d results", nid, len(res.Results))
	}
	r := res.Results[0]
	if !statusGood(r.StatusCode) {
		return nil, fmt.Errorf("browse %s: %w", nid, r.StatusCode)
	}
	refs := r.References
	cp := r.ContinuationPoint
	for len(cp) > 0 {
		rctx, cancel := b.reqCtx(ctx)
		next, err := b.c.BrowseNext(rctx, &ua.BrowseNextRequest{ContinuationPoints: [][]byte{cp}})
		cancel()
		if err != nil {
			return nil, fmt.Errorf("browse next %s: %w", nid, err)
		}
		if len(next.Results) != 1 || !statusGood(next.Results[0].StatusCode) {
			return nil, fmt.Errorf("browse next %s: bad result", nid)
		}
		refs = append(refs, next.Results[0].References...)
		cp = next.Results[0].ContinuationPoint
	}
	return refs, nil
}

// printNodes prints refs at depth.
func (b *browser) printNodes(ctx context.Context, refs []*ua.ReferenceDescription, depth int) error {
	vals, err := b.readVars(ctx, refs)
	if err != nil {
		return err
	}
	for _, r := range refs {
		if err := b.printLine(ctx, r, vals[r], depth); err != nil {
			return err
		}
	}
	return nil
}

// readVars reads value and data type of the variables among refs in one request.
func (b *browser) readVars(ctx context.Context, refs []*ua.ReferenceDescription) (map[*ua.ReferenceDescription][2]*ua.DataValue, error) {
	var vars []*ua.ReferenceDescription
	for _, r := range refs {
		if r.NodeClass == ua.NodeClassVariable {
			vars = append(vars, r)
		}
	}
	vals := map[*ua.ReferenceDescription][2]*ua.DataValue{}
	if len(vars) == 0 {
		return vals, nil
	}
	req := &ua.ReadRequest{TimestampsToReturn: ua.TimestampsToReturnNeither}
	for _, r := range vars {
		req.NodesToRead = append(req.NodesToRead,
			&ua.ReadValueID{NodeID: r.NodeID.NodeID, AttributeID: ua.AttributeIDValue},
			&ua.ReadValueID{NodeID: r.NodeID.NodeID, AttributeID: ua.AttributeIDDataType})
	}
	rctx, cancel := b.reqCtx(ctx)
	res, err := b.c.Read(rctx, req)
	cancel()
	if err != nil {
		return nil, fmt.Errorf("browse: read values: %w", err)
	}
	if len(res.Results) != 2*len(vars) {
		return nil, fmt.Errorf("browse: read values: %d results for %d", len(res.Results), 2*len(vars))
	}
	for i, r := range vars {
		vals[r] = [2]*ua.DataValue{res.Results[2*i], res.Results[2*i+1]}
	}
	return vals, nil
}

// printLine prints one node: id, browse name, and type and value of a variable.
func (b *browser) printLine(ctx context.Context, r *ua.ReferenceDescription, dv [2]*ua.DataValue, depth int) error {
	name := ""
	if r.BrowseName != nil {
		name = r.BrowseName.Name
	}
	line := fmt.Sprintf("%s%s  %q", strings.Repeat("  ", depth), r.NodeID.NodeID, name)
	if r.NodeClass == ua.NodeClassVariable {
		line += "  " + b.typeName(ctx, dv[1], dv[0]) + " = " + formatValue(dv[0])
	} else if r.NodeClass != 0 {
		line += "  (" + strings.TrimPrefix(r.NodeClass.String(), "NodeClass") + ")"
	}
	if _, err := fmt.Fprintln(b.w, line); err != nil {
		return fmt.Errorf("browse: write: %w", err)
	}
	b.printed++
	return nil
}

// builtinTypes names the ns=0 data types a PLC tag normally has.
var builtinTypes = map[uint32]string{
	id.Boolean: "Boolean", id.SByte: "SByte", id.Byte: "Byte", id.Int16: "Int16", id.UInt16: "UInt16",
	id.Int32: "Int32", id.UInt32: "UInt32", id.Int64: "Int64", id.UInt64: "UInt64", id.Float: "Float",
	id.Double: "Double", id.String: "String", id.DateTime: "DateTime", id.GUID: "Guid",
	id.ByteString: "ByteString", id.XMLElement: "XmlElement", id.NodeID: "NodeId",
	id.ExpandedNodeID: "ExpandedNodeId", id.StatusCode: "StatusCode", id.QualifiedName: "QualifiedName",
	id.LocalizedText: "LocalizedText", id.Structure: "Structure", id.DataValue: "DataValue",
	id.BaseDataType: "BaseDataType", id.Number: "Number", id.Integer: "Integer", id.UInteger: "UInteger",
	id.Enumeration: "Enumeration", id.UtcTime: "UtcTime", id.Duration: "Duration",
}

// typeName resolves the DataType attribute to a name. When the attribute is
// missing, abstract, or not a data type at all (gopcua's server reports
// i=267 or BaseDataType for every variable), the value's own type is shown.
func (b *browser) typeName(ctx context.Context, dt, val *ua.DataValue) string {
	fromValue := func() string {
		if val != nil && val.Value != nil && val.Value.Value() != nil {
			// Built-in type ids equal the ns=0 DataType ids (Part 6, 5.1.2).
			if name, ok := builtinTypes[uint32(val.Value.Type())]; ok {
				return name
			}
			return strings.TrimPrefix(val.Value.Type().String(), "TypeID")
		}
		return "?"
	}
	if dt == nil || dt.Value == nil || !statusGood(dt.Status) {
		return fromValue()
	}
	var nid *ua.NodeID
	switch v := dt.Value.Value().(type) {
	case *ua.NodeID:
		nid = v
	case *ua.ExpandedNodeID:
		if v != nil {
			nid = v.NodeID
		}
	}
	if nid == nil {
		return fromValue()
	}
	if nid.Namespace() == 0 {
		switch name, ok := builtinTypes[nid.IntID()]; {
		case ok && nid.IntID() != id.BaseDataType:
			return name
		case ok:
			return fromValue()
		}
	}
	k := nid.String()
	if name, ok := b.typeNames[k]; ok {
		if name == "" {
			return fromValue()
		}
		return name
	}
	rctx, cancel := b.reqCtx(ctx)
	res, err := b.c.Read(rctx, &ua.ReadRequest{NodesToRead: []*ua.ReadValueID{
		{NodeID: nid, AttributeID: ua.AttributeIDBrowseName},
		{NodeID: nid, AttributeID: ua.AttributeIDNodeClass},
	}})
	cancel()
	name := ""
	if err == nil && len(res.Results) == 2 && statusGood(res.Results[0].Status) {
		nc, _ := res.Results[1].Value.Value().(int32)
		if qn, ok := res.Results[0].Value.Value().(*ua.QualifiedName); ok && qn != nil && ua.NodeClass(nc) == ua.NodeClassDataType {
			name = qn.Name
		}
	}
	b.typeNames[k] = name
	if name == "" {
		return fromValue()
	}
	return name
}

// formatValue renders a value for the tree; bad values show their status.
func formatValue(dv *ua.DataValue) string {
	v, good, quality, _ := sampleFields(dv)
	if !good {
		return quality
	}
	switch x := v.(type) {
	case nil:
		return "null"
	case string:
		if len(x) > 80 {
			x = x[:77] + "..."
		}
		return fmt.Sprintf("%q", x)
	default:
		return fmt.Sprint(x)
	}
}
