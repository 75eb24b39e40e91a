package opcua

import (
	"context"
	"errors"
	"fmt"
	"io"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gopcua/opcua"
	"github.com/gopcua/opcua/id"
	"github.com/gopcua/opcua/ua"
	"golang.org/x/sync/errgroup"

	"github.com/plantedge/plantedge/connectors"
)

// Browse defaults.
const (
	DefaultBrowseNode     = "i=85" // Objects folder
	DefaultBrowseDepth    = 3
	DefaultBrowseMaxNodes = 10000
	DefaultBrowseTimeout  = 10 * time.Second
)

// Request shapes. A server that advertises lower operation limits
// (Server.ServerCapabilities.OperationLimits) gets those instead.
const (
	// browseNodesPerRequest is the most nodes browsed in one Browse request.
	browseNodesPerRequest = 100
	// browseRefsPerRequest is about how many references one Browse response
	// should carry: at ~70 bytes each, well inside one 64 KiB message chunk.
	// A request asks for at least 50 and at most 1,000 a node; a node with
	// more continues through BrowseNext.
	browseRefsPerRequest = 600
	// readOpsPerRequest is the most attributes read in one Read request.
	readOpsPerRequest = 1000
	// browseInFlight is how many requests a browse keeps in flight.
	browseInFlight = 4
)

// BrowseOptions selects what Browse prints and how it connects.
type BrowseOptions struct {
	Node     string // start node in any string form; default ns=0;i=85 (Objects)
	Depth    int    // levels below Node; 0: the node alone (its type and value)
	MaxNodes int    // stop after printing this many nodes; default 10,000
	// NamespaceURIs prints node ids as nsu=<namespace uri>;..., which stay
	// valid when a server renumbers its namespaces (ns=0 ids stay short).
	NamespaceURIs bool

	SecurityPolicy, SecurityMode string
	CertFile, KeyFile            string
	DataDir                      string // where a generated client certificate is kept
	ServerThumbprint             string
	Username, Password           string

	Timeout time.Duration // per request; default 10 s
}

// ErrTruncated is returned by Browse when MaxNodes stopped it early. The
// tree is fetched level by level, so the levels above the one cut short are
// complete.
var ErrTruncated = errors.New("browse truncated at the node limit")

// Browse prints the address space under opts.Node as an indented tree, one
// node a line: node id, browse name, and for variables the data type and
// current value, so node ids can be copied into the configuration. A node
// with several parents is printed once. The tree is held in memory until it
// is printed (a line and a few pointers a node), so MaxNodes bounds it.
func Browse(ctx context.Context, endpoint string, opts BrowseOptions, w io.Writer) error {
	_, err := browse(ctx, endpoint, opts, w)
	return err
}

// browse is Browse, returning the browser for tests to inspect.
func browse(ctx context.Context, endpoint string, opts BrowseOptions, w io.Writer) (*browser, error) {
	if opts.Node == "" {
		opts.Node = DefaultBrowseNode
	}
	if opts.Depth < 0 {
		return nil, fmt.Errorf("browse: depth %d: want 0 (the node alone) or more", opts.Depth)
	}
	if opts.MaxNodes <= 0 {
		opts.MaxNodes = DefaultBrowseMaxNodes
	}
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultBrowseTimeout
	}
	if !strings.HasPrefix(endpoint, "opc.tcp://") {
		return nil, fmt.Errorf("browse: endpoint %q: want opc.tcp://host:port", endpoint)
	}
	root, err := parseNode(opts.Node)
	if err != nil {
		return nil, fmt.Errorf("browse: %w", err)
	}
	sec, errs := parseSecurity(opts.SecurityPolicy, opts.SecurityMode, opts.ServerThumbprint)
	if len(errs) > 0 {
		return nil, fmt.Errorf("browse: %w", errors.Join(errs...))
	}
	var cert *clientCert
	if !sec.none() {
		if opts.CertFile == "" && opts.DataDir == "" {
			return nil, errors.New("browse: security needs a client certificate (cert/key files or a data dir)")
		}
		cc, _, err := loadOrCreateCert(opts.CertFile, opts.KeyFile, opts.DataDir, "browse")
		if err != nil {
			return nil, fmt.Errorf("browse: %w", err)
		}
		cert = &cc
	}
	cctx, cancel := context.WithTimeout(ctx, 2*opts.Timeout)
	c, err := dial(cctx, clientParams{
		endpoint: endpoint, sec: sec, cert: cert,
		username: opts.Username, password: opts.Password, requestTimeout: opts.Timeout,
		checkLogin: true, // a refused login leaves no session (checkLogin)
	})
	cancel()
	if err != nil {
		return nil, fmt.Errorf("browse %s: %w", endpoint, err)
	}
	defer closeClient(c)
	rootID, err := root.resolve(c.Namespaces())
	if err != nil {
		return nil, fmt.Errorf("browse: %w", err)
	}
	b := &browser{c: c, w: w, opts: opts, seen: map[string]bool{}, typeNames: map[string]string{},
		perBrowse: browseNodesPerRequest, perRead: readOpsPerRequest, refStats: map[browseStatKey][2]int{}}
	b.applyLimits(ctx)
	if opts.NamespaceURIs {
		b.nsURIs = c.Namespaces()
	}
	tree, err := b.rootNode(ctx, rootID)
	if err != nil {
		return nil, err
	}
	if err := b.fetch(ctx, tree); err != nil {
		// What was gathered is printed all the same, and where it stopped
		// (the OPC UA probe: one node of a thousand children, which the
		// gopcua server sends in one answer too large to read, and browse
		// printed nothing at all).
		if perr := b.print(tree, 0); perr != nil {
			return nil, perr
		}
		fmt.Fprintf(w, "... browsing stopped after %s: %v (browse the other nodes with --node)\n", nodeCount(b.printed), err)
		return nil, err
	}
	if err := b.print(tree, 0); err != nil {
		return nil, err
	}
	if b.truncated {
		fmt.Fprintf(w, "... stopped after %s (raise --max-nodes or browse a deeper --node)\n", nodeCount(b.printed))
		return b, ErrTruncated
	}
	return b, nil
}

// nodeCount is n nodes in words ("1 node", "3 nodes").
func nodeCount(n int) string {
	if n == 1 {
		return "1 node"
	}
	return fmt.Sprintf("%d nodes", n)
}

type browser struct {
	c         *opcua.Client
	w         io.Writer
	opts      BrowseOptions
	seen      map[string]bool
	typeNames map[string]string // data type node id -> name
	printed   int
	truncated bool
	nsURIs    []string // the server's namespace array, for NamespaceURIs
	perBrowse int      // nodes per Browse request
	perRead   int      // attributes per Read request
	// refStats counts nodes browsed and their references, by depth and class.
	refStats map[browseStatKey][2]int
	// calls counts requests: Browse, BrowseNext, Read, and nodes browsed
	// again alone (the server had no continuation point for them).
	calls struct{ browse, next, read, alone atomic.Int64 }
}

func (b *browser) reqCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, b.opts.Timeout)
}

// applyLimits lowers the request sizes to the limits the server advertises.
func (b *browser) applyLimits(ctx context.Context) {
	lim := readLimits(ctx, b.c, b.opts.Timeout)
	b.perBrowse = capped(b.perBrowse, lim.browse)
	b.perRead = max(capped(b.perRead, lim.read), 2) // a variable takes two: value and data type
}

// rootNode reads the start node's browse name and class.
func (b *browser) rootNode(ctx context.Context, nid *ua.NodeID) (*tnode, error) {
	rctx, cancel := b.reqCtx(ctx)
	defer cancel()
	res, err := b.c.Read(rctx, &ua.ReadRequest{NodesToRead: []*ua.ReadValueID{
		{NodeID: nid, AttributeID: ua.AttributeIDBrowseName},
		{NodeID: nid, AttributeID: ua.AttributeIDNodeClass},
	}})
	if err != nil {
		return nil, fmt.Errorf("browse: read %s: %w", nid, err)
	}
	if len(res.Results) != 2 {
		return nil, fmt.Errorf("browse: read %s: %d results", nid, len(res.Results))
	}
	if !statusGood(res.Results[0].Status) {
		return nil, fmt.Errorf("browse: node %s: %w", nid, res.Results[0].Status)
	}
	n := &tnode{nid: nid}
	if qn, ok := res.Results[0].Value.Value().(*ua.QualifiedName); ok && qn != nil {
		n.name = qn.Name
	}
	if nc, ok := res.Results[1].Value.Value().(int32); ok {
		n.class = ua.NodeClass(nc)
	}
	b.seen[nid.String()] = true
	return n, nil
}

// tnode is a node of the tree being printed, kept small: a large tree is
// held until it is printed.
type tnode struct {
	nid   *ua.NodeID // until its children are fetched
	name  string     // browse name, until its line is made
	class ua.NodeClass
	line  string // what print writes after the indentation
	kids  []*tnode
	// refused is the status a server answered a browse of the node's
	// children with (BadUserAccessDenied, ...): shown, and the rest goes on.
	refused ua.StatusCode
}

// browseWindow is how many nodes of a level are read and browsed together:
// it bounds the values and references held at a time.
const browseWindow = 4000

// fetch builds the tree under root level by level: the values and the
// children of up to browseWindow nodes of a level are fetched together, in
// batched requests kept in flight side by side, so an address space costs a
// few requests per thousand nodes rather than a round trip per node. It
// stops adding nodes at MaxNodes, so the upper levels of a truncated tree
// are complete.
func (b *browser) fetch(ctx context.Context, root *tnode) error {
	found := 1
	level := []*tnode{root}
	for depth := 0; len(level) > 0; depth++ {
		var next []*tnode
		for lo := 0; lo < len(level); lo += browseWindow {
			win := level[lo:min(lo+browseWindow, len(level))]
			vals, err := b.readVars(ctx, win)
			if err != nil {
				return err
			}
			last := depth >= b.opts.Depth
			for i, n := range win {
				n.line = b.formatLine(ctx, n, vals[i])
				n.name = ""
				if last {
					n.nid = nil
				}
			}
			// Browse the window in parts that should not bring many more
			// nodes than MaxNodes leaves room for.
			for len(win) > 0 && !last && !b.truncated {
				part := win[:min(len(win), b.expectRoom(depth, win[0].class, b.opts.MaxNodes-found))]
				win = win[len(part):]
				kids, err := b.children(ctx, part, depth)
				if err != nil {
					var ne *nodeBrowseError
					errors.As(err, &ne)
					for _, n := range part {
						if ne != nil && n.nid != nil && n.nid.String() == ne.nid.String() {
							n.line += "  [its children could not be read: " + ne.err.Error() + "]"
						} else {
							n.line += "  [children not browsed: browsing stopped]"
						}
					}
					return err
				}
				for i, n := range part {
					n.nid = nil
					if n.refused != 0 {
						n.line += "  [children not browsable: " + statusName(n.refused) + "]"
					}
					for _, c := range b.fresh(kids[i]) {
						if found >= b.opts.MaxNodes {
							b.truncated = true
							break
						}
						n.kids = append(n.kids, c)
						next = append(next, c)
						found++
					}
				}
			}
		}
		level = next
	}
	return nil
}

// expectRoom is how many nodes of class at depth should have about room
// children between them, by what such nodes had so far. Siblings differ, so
// it trusts that only as far as it has seen: at most 16 nodes, or as many as
// have been browsed of that kind when that is more.
func (b *browser) expectRoom(depth int, class ua.NodeClass, room int) int {
	st := b.refStats[browseStatKey{depth, class}]
	n := max(16, st[0])
	if st[1] > 0 {
		n = min(n, room*st[0]/st[1]+1)
	}
	return max(1, n)
}

// print writes n and the nodes below it, depth first.
func (b *browser) print(n *tnode, depth int) error {
	line := n.line
	if line == "" && n.nid != nil { // found, not read: browsing stopped first
		line = b.idString(n.nid) + "  [not read: browsing stopped]"
	}
	if _, err := fmt.Fprintf(b.w, "%s%s\n", strings.Repeat("  ", depth), line); err != nil {
		return fmt.Errorf("browse: write: %w", err)
	}
	b.printed++
	for _, c := range n.kids {
		if err := b.print(c, depth+1); err != nil {
			return err
		}
	}
	return nil
}

// node keeps what the tree needs of a reference; nil for a node on another
// server.
func node(r *ua.ReferenceDescription) *tnode {
	if r == nil || r.NodeID == nil || r.NodeID.NodeID == nil || r.NodeID.HasServerIndex() {
		return nil
	}
	n := &tnode{nid: r.NodeID.NodeID, class: r.NodeClass}
	if r.BrowseName != nil {
		n.name = r.BrowseName.Name
	}
	return n
}

// fresh drops nodes already in the tree (an address space is a graph: a
// node can have several parents).
func (b *browser) fresh(nodes []*tnode) []*tnode {
	var out []*tnode
	for _, n := range nodes {
		if n == nil {
			continue
		}
		k := n.nid.String()
		if b.seen[k] {
			continue
		}
		b.seen[k] = true
		out = append(out, n)
	}
	return out
}

// chunks runs fn over [0, n) in pieces of at most size, browseInFlight at a time.
func (b *browser) chunks(ctx context.Context, n, size int, fn func(ctx context.Context, lo, hi int) error) error {
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(browseInFlight)
	for lo := 0; lo < n; lo += size {
		hi := min(lo+size, n)
		g.Go(func() error { return fn(gctx, lo, hi) })
	}
	return g.Wait()
}

// tooBig reports a refusal that a smaller request avoids.
func tooBig(err error) bool {
	return errors.Is(err, ua.StatusBadTooManyOperations) || errors.Is(err, ua.StatusBadResponseTooLarge) ||
		errors.Is(err, ua.StatusBadRequestTooLarge) || errors.Is(err, ua.StatusBadEncodingLimitsExceeded)
}

// children returns the nodes the hierarchical forward references of every
// node of group (nodes at depth) lead to, in group's order.
//
// Servers page a node's references when asked to (RequestedMaxReferences
// PerNode), but not all do: gopcua's own server sends everything in one
// chunk, and a chunk over 64 KiB ends the connection. So requests are sized
// by what nodes of the same class at the same depth had so far, to carry
// about browseRefsPerRequest references, and grow as that is learnt: the
// first of a kind goes alone, and no request holds more nodes than have been
// browsed of that kind. Each round sends up to browseInFlight requests side
// by side.
func (b *browser) children(ctx context.Context, group []*tnode, depth int) ([][]*tnode, error) {
	out := make([][]*tnode, len(group))
	rest := make([]int, len(group))
	for i := range rest {
		rest[i] = i
	}
	var again []int // nodes the server had no continuation point for
	for len(rest) > 0 {
		var round [][]int
		for len(round) < browseInFlight && len(rest) > 0 {
			n, cost, probe := 0, 0, false
			for n < len(rest) && n < b.perBrowse {
				k := browseStatKey{depth, group[rest[n]].class}
				st, known := b.refStats[k]
				if !known {
					probe = n == 0 // the first of its kind goes alone
					if probe {
						n = 1
					}
					break
				}
				e := (st[1]+st[0]-1)/st[0] + 1 // references on average, plus the node
				if n > 0 && (cost+e > browseRefsPerRequest || n >= st[0]) {
					break
				}
				cost += e
				n++
			}
			round, rest = append(round, rest[:n]), rest[n:]
			if probe {
				break // learn before sizing more
			}
		}
		var mu sync.Mutex
		err := b.chunks(ctx, len(round), 1, func(ctx context.Context, c, _ int) error {
			idx := round[c]
			nids := make([]*ua.NodeID, len(idx))
			for j, i := range idx {
				nids[j] = group[i].nid
			}
			refs, bad, retry, err := b.browseChunk(ctx, nids)
			if err != nil {
				return err
			}
			mu.Lock()
			defer mu.Unlock()
			for j, i := range idx {
				out[i] = nodes(refs[j])
				group[i].refused = bad[j]
			}
			for _, j := range retry {
				again = append(again, idx[j])
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
		for _, idx := range round {
			for _, i := range idx {
				k := browseStatKey{depth, group[i].class}
				st := b.refStats[k]
				b.refStats[k] = [2]int{st[0] + 1, st[1] + len(out[i])}
			}
		}
	}
	// Alone, with no other request holding continuation points.
	slices.Sort(again)
	for _, i := range again {
		b.calls.alone.Add(1)
		refs, bad, retry, err := b.browseChunk(ctx, []*ua.NodeID{group[i].nid})
		if err != nil {
			return nil, err
		}
		if len(retry) > 0 { // not even alone: shown as such, the rest goes on
			bad[0] = ua.StatusBadNoContinuationPoints
		}
		out[i], group[i].refused = nodes(refs[0]), bad[0]
	}
	return out, nil
}

// nodes is node of each reference.
func nodes(refs []*ua.ReferenceDescription) []*tnode {
	out := make([]*tnode, len(refs))
	for i, r := range refs {
		out[i] = node(r)
	}
	return out
}

type browseStatKey struct {
	depth int
	class ua.NodeClass
}

func browseDesc(nid *ua.NodeID) *ua.BrowseDescription {
	return &ua.BrowseDescription{
		NodeID:          nid,
		BrowseDirection: ua.BrowseDirectionForward,
		ReferenceTypeID: ua.NewNumericNodeID(0, id.HierarchicalReferences),
		IncludeSubtypes: true,
		ResultMask:      uint32(ua.BrowseResultMaskAll),
	}
}

// nodeBrowseError: browsing one node's children failed.
type nodeBrowseError struct {
	nid *ua.NodeID
	err error
}

func (e *nodeBrowseError) Error() string { return fmt.Sprintf("browse %s: %v", e.nid, e.err) }
func (e *nodeBrowseError) Unwrap() error { return e.err }

// browseChunk browses nodes in one request (halved while the server finds it
// too large) and follows continuation points in batched BrowseNext calls. It
// also returns the status of each node the server refused to browse (0 for
// the others), and the indexes of nodes to browse again on their own: those
// the server had no continuation point for, or whose point it dropped.
func (b *browser) browseChunk(ctx context.Context, nodes []*ua.NodeID) (out [][]*ua.ReferenceDescription, bad []ua.StatusCode, retry []int, err error) {
	req := &ua.BrowseRequest{
		View:                          &ua.ViewDescription{ViewID: ua.NewTwoByteNodeID(0)},
		RequestedMaxReferencesPerNode: uint32(min(1000, max(50, browseRefsPerRequest/len(nodes)))),
	}
	for _, nid := range nodes {
		req.NodesToBrowse = append(req.NodesToBrowse, browseDesc(nid))
	}
	rctx, cancel := b.reqCtx(ctx)
	b.calls.browse.Add(1)
	res, err := b.c.Browse(rctx, req)
	cancel()
	if err == nil && len(res.Results) != len(nodes) {
		err = fmt.Errorf("%d results for %d nodes", len(res.Results), len(nodes))
	}
	if tooBig(err) && len(nodes) > 1 {
		h := len(nodes) / 2
		out1, bad1, r1, err := b.browseChunk(ctx, nodes[:h])
		if err != nil {
			return nil, nil, nil, err
		}
		out2, bad2, r2, err := b.browseChunk(ctx, nodes[h:])
		for _, i := range r2 {
			r1 = append(r1, h+i)
		}
		return append(out1, out2...), append(bad1, bad2...), r1, err
	}
	if err != nil && len(nodes) == 1 {
		return nil, nil, nil, &nodeBrowseError{nid: nodes[0], err: err}
	}
	if err != nil {
		return nil, nil, nil, fmt.Errorf("browse %s and %d more: %w", nodes[0], len(nodes)-1, err)
	}
	out = make([][]*ua.ReferenceDescription, len(nodes))
	bad = make([]ua.StatusCode, len(nodes))
	var open []int
	var cps [][]byte
	for i, r := range res.Results {
		switch {
		case r.StatusCode == ua.StatusBadNoContinuationPoints:
			retry = append(retry, i)
			continue
		case !statusGood(r.StatusCode):
			bad[i] = r.StatusCode
			continue
		}
		out[i] = r.References
		if len(r.ContinuationPoint) > 0 {
			open, cps = append(open, i), append(cps, r.ContinuationPoint)
		}
	}
	for len(cps) > 0 {
		rctx, cancel := b.reqCtx(ctx)
		b.calls.next.Add(1)
		next, err := b.c.BrowseNext(rctx, &ua.BrowseNextRequest{ContinuationPoints: cps})
		cancel()
		if err == nil && len(next.Results) != len(cps) {
			err = fmt.Errorf("%d results for %d continuation points", len(next.Results), len(cps))
		}
		if err != nil {
			return nil, nil, nil, fmt.Errorf("browse next %s: %w", nodes[open[0]], err)
		}
		var open2 []int
		var cps2 [][]byte
		for j, r := range next.Results {
			i := open[j]
			switch {
			case r.StatusCode == ua.StatusBadContinuationPointInvalid || r.StatusCode == ua.StatusBadNoContinuationPoints:
				out[i] = nil
				retry = append(retry, i)
				continue
			case !statusGood(r.StatusCode):
				out[i], bad[i] = nil, r.StatusCode
				continue
			}
			out[i] = append(out[i], r.References...)
			if len(r.ContinuationPoint) > 0 {
				open2, cps2 = append(open2, i), append(cps2, r.ContinuationPoint)
			}
		}
		open, cps = open2, cps2
	}
	return out, bad, retry, nil
}

// readVars reads value and data type of the variables among group, in
// group's order (nil pairs for other nodes).
func (b *browser) readVars(ctx context.Context, group []*tnode) ([][2]*ua.DataValue, error) {
	vals := make([][2]*ua.DataValue, len(group))
	var vars []int
	for i, n := range group {
		if n.class == ua.NodeClassVariable {
			vars = append(vars, i)
		}
	}
	err := b.chunks(ctx, len(vars), b.perRead/2, func(ctx context.Context, lo, hi int) error {
		return b.readChunk(ctx, group, vars[lo:hi], vals)
	})
	return vals, err
}

// readChunk reads the variables group[idx] into vals in one request, halved
// while the server finds it too large.
func (b *browser) readChunk(ctx context.Context, group []*tnode, idx []int, vals [][2]*ua.DataValue) error {
	req := &ua.ReadRequest{TimestampsToReturn: ua.TimestampsToReturnNeither}
	for _, i := range idx {
		nid := group[i].nid
		req.NodesToRead = append(req.NodesToRead,
			&ua.ReadValueID{NodeID: nid, AttributeID: ua.AttributeIDValue},
			&ua.ReadValueID{NodeID: nid, AttributeID: ua.AttributeIDDataType})
	}
	rctx, cancel := b.reqCtx(ctx)
	b.calls.read.Add(1)
	res, err := b.c.Read(rctx, req)
	cancel()
	if err == nil && len(res.Results) != 2*len(idx) {
		err = fmt.Errorf("%d results for %d", len(res.Results), 2*len(idx))
	}
	if tooBig(err) && len(idx) > 1 {
		h := len(idx) / 2
		if err := b.readChunk(ctx, group, idx[:h], vals); err != nil {
			return err
		}
		return b.readChunk(ctx, group, idx[h:], vals)
	}
	if err != nil {
		return fmt.Errorf("browse: read values: %w", err)
	}
	for j, i := range idx {
		vals[i] = [2]*ua.DataValue{res.Results[2*j], res.Results[2*j+1]}
	}
	return nil
}

// formatLine makes a node's line: id, browse name, and type and value of a
// variable.
func (b *browser) formatLine(ctx context.Context, n *tnode, dv [2]*ua.DataValue) string {
	line := fmt.Sprintf("%s  %q", b.idString(n.nid), n.name)
	if n.class == ua.NodeClassVariable {
		line += "  " + b.typeName(ctx, dv[1], dv[0]) + " = " + formatValue(dv[0])
	} else if n.class != 0 {
		line += "  (" + strings.TrimPrefix(n.class.String(), "NodeClass") + ")"
	}
	return line
}

// idString is nid as the configuration takes it: ns=<index>;..., or with
// NamespaceURIs nsu=<uri>;... for namespaces other than 0 (unless the URI
// holds a ';', which that form cannot carry).
func (b *browser) idString(nid *ua.NodeID) string {
	s := nid.String()
	ns := int(nid.Namespace())
	if ns == 0 || ns >= len(b.nsURIs) || strings.Contains(b.nsURIs[ns], ";") {
		return s
	}
	_, idPart, ok := strings.Cut(s, ";")
	if !ok {
		return s
	}
	return "nsu=" + b.nsURIs[ns] + ";" + idPart
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
			return builtinName(val.Value.Type())
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
	case connectors.Structured:
		if !x.Array {
			return x.String()
		}
		// An array node: a signal reads one element with index: (0-based),
		// so its length and first values are shown.
		rv := reflect.ValueOf(dv.Value.Value())
		n := rv.Len()
		var vals []string
		for i := range min(n, 8) {
			ev, err := ua.NewVariant(rv.Index(i).Interface())
			if err != nil {
				vals = append(vals, "?")
				continue
			}
			vals = append(vals, fmt.Sprint(decodeValue(ev)))
		}
		if n > 8 {
			vals = append(vals, "...")
		}
		if n == 0 {
			return "(" + x.Type + ", empty)"
		}
		return fmt.Sprintf("(%s of %d: [%s]; index 0 to %d reads one)", x.Type, n, strings.Join(vals, " "), n-1)
	case string:
		if len(x) > 80 {
			x = x[:77] + "..."
		}
		return fmt.Sprintf("%q", x)
	default:
		return fmt.Sprint(x)
	}
}
