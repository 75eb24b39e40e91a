package agent

import (
	"context"
	"strings"
	"time"

	"github.com/plantedge/plantedge/buffer"
	"github.com/plantedge/plantedge/connectors"
	"github.com/plantedge/plantedge/connectors/opcua"
)

// nsPins keeps in the buffer file what namespace URI each ns=N node of an
// OPC UA server meant when it was first read (opcua.NamespacePins), so a
// server that renumbers its namespaces — also while the agent was down, as
// when a power cut restarts both — is read by URI. A pin is kept with the
// endpoint it was taken at: a source pointed at another endpoint (a
// replacement PLC, a gateway) is another server, whose nodes are pinned
// anew.
type nsPins struct {
	a        *Agent
	source   string
	endpoint string
}

const nsPinPrefix = "nspin/"

func nsPinKey(source, node string) string { return nsPinPrefix + source + "/" + node }

// decodePin splits a kept pin into the endpoint it was taken at and the
// URI; endpoint is "" for a pin kept by a version that did not keep it.
func decodePin(b []byte) (endpoint, uri string) {
	endpoint, uri, ok := strings.Cut(string(b), "\n")
	if !ok {
		return "", string(b)
	}
	return endpoint, uri
}

func (p nsPins) NamespacePin(node string) (string, bool) {
	b, err := p.a.buf.Meta(nsPinKey(p.source, node))
	if err != nil || b == nil {
		return "", false
	}
	endpoint, uri := decodePin(b)
	if endpoint == "" {
		// Kept by a version that did not keep the endpoint: taken at the
		// endpoint the source has now, and kept so from here on.
		_ = p.SetNamespacePin(node, uri) // failed: tried again at the next session
		return uri, true
	}
	return uri, sameEndpoint(endpoint, p.endpoint)
}

func (p nsPins) SetNamespacePin(node, uri string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return p.a.buf.PutMeta(ctx, buffer.KV{Key: nsPinKey(p.source, node), Value: []byte(p.endpoint + "\n" + uri)})
}

// SetNamespacePins keeps several pins in one durable write
// (opcua.NamespacePinsSetter): a session's first sight of its nodes.
func (p nsPins) SetNamespacePins(pins map[string]string) error {
	kvs := make([]buffer.KV, 0, len(pins))
	for node, uri := range pins {
		kvs = append(kvs, buffer.KV{Key: nsPinKey(p.source, node), Value: []byte(p.endpoint + "\n" + uri)})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return p.a.buf.PutMeta(ctx, kvs...)
}

// sameEndpoint compares two OPC UA endpoint URLs as the same server (see
// connectors.ServerID).
func sameEndpoint(a, b string) bool { return connectors.ServerID(a) == connectors.ServerID(b) }

// NamespacePin is a namespace pin the agent keeps: the URI that node's
// ns=N stood for when source first read it at endpoint ("" when kept by a
// version that did not keep the endpoint: it holds for any).
type NamespacePin struct {
	Source   string `json:"source"`
	Node     string `json:"node"`
	Endpoint string `json:"endpoint,omitempty"`
	URI      string `json:"uri"`
}

// NamespacePinsIn lists the namespace pins kept in q, a running agent's
// buffer or a stopped one's opened read-only.
func NamespacePinsIn(q *buffer.Queue) ([]NamespacePin, error) {
	var out []NamespacePin
	err := q.MetaPrefix(nsPinPrefix, func(key string, value []byte) error {
		source, node, ok := strings.Cut(strings.TrimPrefix(key, nsPinPrefix), "/")
		if !ok {
			return nil
		}
		endpoint, uri := decodePin(value)
		out = append(out, NamespacePin{Source: source, Node: node, Endpoint: endpoint, URI: uri})
		return nil
	})
	return out, err
}

// KeptPins is the read-only opcua.NamespacePins of source at endpoint
// that pins hold: what the agent would resolve its ns=N nodes by, for a
// check that must not pin anything itself (plantedge validate --opcua).
func KeptPins(pins []NamespacePin, source, endpoint string) opcua.NamespacePins {
	k := keptPins{}
	for _, p := range pins {
		if p.Source == source && (p.Endpoint == "" || sameEndpoint(p.Endpoint, endpoint)) {
			k[p.Node] = p.URI
		}
	}
	return k
}

type keptPins map[string]string

func (k keptPins) NamespacePin(node string) (string, bool) {
	uri, ok := k[node]
	return uri, ok
}

func (keptPins) SetNamespacePin(string, string) error { return nil }
