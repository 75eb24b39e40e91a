package opcuatest

import (
	"encoding/xml"
	"fmt"
	"sync"

	"github.com/gopcua/opcua/id"
	"github.com/gopcua/opcua/schema"
	"github.com/gopcua/opcua/server"
	"github.com/gopcua/opcua/ua"
)

// gopcua's server.New parses the standard node set (schema.OpcUaNodeSet2,
// 3.5 MB of XML) into namespace 0 of every server it makes: about two
// thirds of a server's start, some 1.5 s under the race detector. NewServer
// parses it once per process and imports the parsed set into each server
// it makes; every server still gets its own nodes, built afresh from the
// shared set, which is only read.
var (
	standardOnce sync.Once
	standard     *schema.UANodeSet
	standardErr  error

	// newMu serializes NewServer's swap of schema.OpcUaNodeSet2.
	newMu sync.Mutex
)

// stubNodeSet is what server.New parses inside NewServer instead of the
// standard set: server.New needs an Aliases table (its import reads it)
// and the Server object (it hangs the server status nodes from it), with
// a References list (its import reads that too).
var stubNodeSet = []byte(`<UANodeSet><Aliases/><UAObject NodeId="i=2253" BrowseName="Server"><References/></UAObject></UANodeSet>`)

// parseStandard parses gopcua's standard node set once.
func parseStandard() (*schema.UANodeSet, error) {
	standardOnce.Do(func() {
		newMu.Lock()
		data := schema.OpcUaNodeSet2
		newMu.Unlock()
		var set schema.UANodeSet
		if err := xml.Unmarshal(data, &set); err != nil {
			standardErr = fmt.Errorf("parse the standard node set: %w", err)
			return
		}
		if set.Aliases == nil {
			standardErr = fmt.Errorf("the standard node set has no aliases")
			return
		}
		// gopcua's import sets a missing IsForward to true in the set it
		// imports; done here once, the imports only read the set.
		yes := true
		eachNode(&set, func(_ string, r *schema.ListOfReferences) {
			if r == nil {
				return
			}
			for _, ref := range r.Reference {
				if ref.IsForwardAttr == nil {
					ref.IsForwardAttr = &yes
				}
			}
		})
		standard = &set
	})
	return standard, standardErr
}

// eachNode calls fn with the id and the references of every node of set,
// kind by kind (reference types, data types, object types, variable types,
// variables, methods, objects).
func eachNode(set *schema.UANodeSet, fn func(id string, refs *schema.ListOfReferences)) {
	for _, n := range set.UAReferenceType {
		fn(n.NodeIdAttr, n.References)
	}
	for _, n := range set.UADataType {
		fn(n.NodeIdAttr, n.References)
	}
	for _, n := range set.UAObjectType {
		fn(n.NodeIdAttr, n.References)
	}
	for _, n := range set.UAVariableType {
		fn(n.NodeIdAttr, n.References)
	}
	for _, n := range set.UAVariable {
		fn(n.NodeIdAttr, n.References)
	}
	for _, n := range set.UAMethod {
		fn(n.NodeIdAttr, n.References)
	}
	for _, n := range set.UAObject {
		fn(n.NodeIdAttr, n.References)
	}
}

// NewServer is gopcua's server.New(opts...) with the standard node set
// parsed once per process: namespace 0 holds the nodes server.New gives
// it, built the way server.New builds them (the standard set imported,
// then the server's own status, namespace and capability nodes over it).
// The servers share no node: a write to one server's node is not seen
// by another.
//
// server.New takes its node set from the package variable
// schema.OpcUaNodeSet2; NewServer points it at a stub while it calls
// server.New and back after, so a server.New called meanwhile from
// another goroutine, without NewServer, would race with it: build every
// gopcua server of a test process with NewServer.
func NewServer(opts ...server.Option) (*server.Server, error) {
	set, err := parseStandard()
	if err != nil {
		return nil, err
	}
	newMu.Lock()
	full := schema.OpcUaNodeSet2
	schema.OpcUaNodeSet2 = stubNodeSet
	srv := server.New(opts...)
	schema.OpcUaNodeSet2 = full
	newMu.Unlock()

	if err := srv.ImportNodeSet(set); err != nil {
		return nil, fmt.Errorf("import the standard node set: %w", err)
	}
	// What server.New adds after its import, over the imported nodes of
	// the same ids (the stub's went with them).
	ns0, err := srv.Namespace(0)
	if err != nil {
		return nil, err
	}
	ns0.AddNode(server.CurrentTimeNode())
	ns0.AddNode(server.NamespacesNode(srv))
	for _, n := range server.ServerStatusNodes(srv, ns0.Node(ua.NewNumericNodeID(0, id.Server))) {
		ns0.AddNode(n)
	}
	for _, n := range server.ServerCapabilitiesNodes(srv) {
		ns0.AddNode(n)
	}
	return srv, nil
}
