package opcuatest

import (
	"encoding/json"
	"fmt"
	"io"
	"log"
	"reflect"
	"testing"
	"time"

	"github.com/gopcua/opcua/id"
	"github.com/gopcua/opcua/schema"
	"github.com/gopcua/opcua/server"
	"github.com/gopcua/opcua/ua"
)

// serverOpts are the options of the servers the tests below compare.
func serverOpts() []server.Option {
	return []server.Option{
		server.EnableSecurity("None", ua.MessageSecurityModeNone),
		server.EnableAuthMode(ua.UserTokenTypeAnonymous),
		server.EndPoint("127.0.0.1", 4840),
		server.SetLogger(quiet{}),
	}
}

// ns0IDs are the ids of the nodes namespace 0 holds: the standard set's
// and those server.New adds of its own.
func ns0IDs(t *testing.T, srv *server.Server) []*ua.NodeID {
	t.Helper()
	set, err := parseStandard()
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	eachNode(set, func(id string, _ *schema.ListOfReferences) { ids = append(ids, id) })
	var out []*ua.NodeID
	for _, s := range ids {
		out = append(out, ua.MustParseNodeID(s))
	}
	own := []*server.Node{server.CurrentTimeNode(), server.NamespacesNode(srv)}
	own = append(own, server.ServerStatusNodes(srv, server.NewNode(ua.NewNumericNodeID(0, 1), nil, nil, nil))...)
	own = append(own, server.ServerCapabilitiesNodes(srv)...)
	for _, n := range own {
		out = append(out, n.ID())
	}
	return out
}

// view is what a client can see of a node: its attributes (the Value by
// its type only, as some are clocks; no source timestamps, which are the
// time the attribute was made) and its references.
type view struct {
	Attrs  []any
	Browse *ua.BrowseResult
}

func nodeView(ns server.NameSpace, nid *ua.NodeID) *view {
	n := ns.Node(nid)
	if n == nil {
		return nil
	}
	v := &view{}
	for a := ua.AttributeIDNodeID; a <= ua.AttributeIDAccessLevelEx; a++ {
		av, err := n.Attribute(a)
		switch {
		case err != nil:
			v.Attrs = append(v.Attrs, err)
		case av.Value == nil:
			v.Attrs = append(v.Attrs, nil)
		case a == ua.AttributeIDValue:
			v.Attrs = append(v.Attrs, fmt.Sprintf("%T", av.Value.Value.Value()))
		default:
			dv := *av.Value
			dv.SourceTimestamp = time.Time{}
			v.Attrs = append(v.Attrs, dv)
		}
	}
	v.Browse = ns.Browse(&ua.BrowseDescription{
		NodeID:          nid,
		BrowseDirection: ua.BrowseDirectionBoth,
		ReferenceTypeID: ua.NewNumericNodeID(0, 0),
		IncludeSubtypes: true,
		ResultMask:      uint32(ua.BrowseResultMaskAll),
	})
	return v
}

// String shows a view in a failure message.
func (v *view) String() string {
	if v == nil {
		return "no node"
	}
	j, err := json.MarshalIndent(v, "", " ")
	if err != nil {
		return err.Error()
	}
	return string(j)
}

// NewServer's namespace 0 is server.New's: the same nodes, with the same
// attributes and references.
func TestNewServerAsServerNew(t *testing.T) {
	// server.New parses the standard set itself; NewServer is not called
	// meanwhile (it holds newMu) and its output is kept out of the log.
	newMu.Lock()
	prev := log.Writer()
	log.SetOutput(io.Discard)
	want := server.New(serverOpts()...)
	log.SetOutput(prev)
	newMu.Unlock()

	got, err := NewServer(serverOpts()...)
	if err != nil {
		t.Fatal(err)
	}
	if g, w := len(got.Namespaces()), len(want.Namespaces()); g != w {
		t.Fatalf("%d namespaces, server.New gives %d", g, w)
	}
	gotNS, err := got.Namespace(0)
	if err != nil {
		t.Fatal(err)
	}
	wantNS, err := want.Namespace(0)
	if err != nil {
		t.Fatal(err)
	}
	ids := ns0IDs(t, want)
	if len(ids) < 4000 {
		t.Fatalf("only %d node ids", len(ids))
	}
	bad := 0
	for _, nid := range ids {
		g, w := nodeView(gotNS, nid), nodeView(wantNS, nid)
		if !reflect.DeepEqual(g, w) {
			bad++
			if bad <= 3 {
				t.Errorf("node %v:\n%s\nserver.New gives\n%s", nid, g, w)
			}
		}
	}
	if bad > 0 {
		t.Errorf("%d of %d nodes differ", bad, len(ids))
	}
}

// Servers made by NewServer share no node: a reference added to one's
// Objects folder, and an attribute written, are not in the next one's.
func TestNewServerIndependent(t *testing.T) {
	a, err := NewServer(serverOpts()...)
	if err != nil {
		t.Fatal(err)
	}
	ns0, err := a.Namespace(0)
	if err != nil {
		t.Fatal(err)
	}
	objects := ua.NewNumericNodeID(0, id.ObjectsFolder)
	before := nodeView(ns0, objects)
	other := server.NewNodeNameSpace(a, "urn:plantedge:other")
	ns0.Objects().AddRef(other.Objects(), id.HasComponent, true)
	ns0.Node(objects).SetAttribute(ua.AttributeIDDescription, server.DataValueFromValue(ua.NewLocalizedText("changed")))
	if reflect.DeepEqual(nodeView(ns0, objects), before) {
		t.Fatal("the change did not show in the server changed")
	}

	b, err := NewServer(serverOpts()...)
	if err != nil {
		t.Fatal(err)
	}
	bns0, err := b.Namespace(0)
	if err != nil {
		t.Fatal(err)
	}
	if got := nodeView(bns0, objects); !reflect.DeepEqual(got, before) {
		t.Errorf("the next server's Objects folder:\n%s\nwant\n%s", got, before)
	}
}
