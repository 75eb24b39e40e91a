package opcua

import (
	"bytes"
	"context"
	"crypto/sha1"
	"crypto/x509"
	"encoding/hex"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gopcua/opcua"
	"github.com/gopcua/opcua/ua"
	"github.com/plantedge/plantedge/connectors"
	"github.com/plantedge/plantedge/internal/certtest"
)

// chainedNodeServer starts the node-opcua server with a certificate a
// plant PKI's intermediate CA issued, sent as a chain (the PEM file holds
// the leaf, then the intermediate): it returns the server, its leaf and
// the intermediate.
func chainedNodeServer(t *testing.T) (srv *nodeServer, leaf, inter *x509.Certificate) {
	t.Helper()
	dir := t.TempDir()
	certFile, keyFile, uri := filepath.Join(dir, "plc.pem"), filepath.Join(dir, "plc.key"), "urn:plantedge:test:plc"
	root := certtest.NewCA(t, "Plant root CA", certtest.Days(3650))
	ca := root.Intermediate(t, "Plant GDS CA", certtest.Days(1000))
	plc := ca.OPCUAServer(t, "PLC line1", uri, certtest.Days(365))
	certtest.WritePair(t, plc, certFile, keyFile)
	certtest.WriteCerts(t, certFile, plc.Leaf, ca.Cert)
	srv = startNodeServer(t, "SERVER_CERT_FILE="+certFile, "SERVER_KEY_FILE="+keyFile, "SERVER_URI="+uri)
	return srv, plc.Leaf, ca.Cert
}

// A server whose certificate an intermediate CA issued sends the leaf and
// the intermediate (OPC UA Part 6 allows a chain in ServerCertificate);
// its thumbprint, as UaExpert and every OPC UA tool show it, is the SHA-1
// of the leaf alone. That is what the log tells to pin and what a pin is
// checked against (the chain's SHA-1, shown by no tool, refused a pin
// copied from one), and ServerCertificates gets the leaf and the
// intermediate as two certificates. gopcua v0.8.0 cannot open the secure
// channel (the server's OpenSecureChannel answer carries the chain too):
// the error says so, unless a session comes up.
func TestChainedServerCertificate(t *testing.T) {
	srv, leaf, inter := chainedNodeServer(t)
	leafTP := Thumbprint(leaf.Raw)
	both := append(bytes.Clone(leaf.Raw), inter.Raw...)
	sum := sha1.Sum(both)
	chainTP := hex.EncodeToString(sum[:])
	// The server does send a chain.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	eps, err := opcua.GetEndpoints(ctx, srv.Endpoint)
	cancel()
	if err != nil {
		t.Fatalf("GetEndpoints: %v", err)
	}
	if !slices.ContainsFunc(eps, func(ep *ua.EndpointDescription) bool { return bytes.Equal(ep.ServerCertificate, both) }) {
		t.Fatalf("none of %d endpoints has the leaf and the intermediate as its ServerCertificate", len(eps))
	}
	if Thumbprint(both) != leafTP {
		t.Errorf("Thumbprint(chain) = %s, want the leaf's %s", Thumbprint(both), leafTP)
	}

	base := Config{
		Endpoint: srv.Endpoint, SecurityPolicy: "Basic256Sha256", SecurityMode: "SignAndEncrypt",
		DataDir: t.TempDir(), Nodes: []string{secureCounter},
	}
	// connected: a sample came, or the attempt failed and said why.
	connected := func(samples []connectors.Sample, st Stats) bool {
		return len(samples) > 0 || strings.Contains(st.LastError, ErrThumbprintMismatch.Error()) ||
			strings.Contains(st.LastError, "sends its certificate with its issuers'")
	}
	// Without a pin: the leaf's thumbprint is logged, the chain's nowhere.
	var logs lockedLog
	unpinned := base
	unpinned.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	var certMu sync.Mutex
	var chain []*x509.Certificate
	unpinned.ServerCertificates = func(c []*x509.Certificate) { certMu.Lock(); chain = c; certMu.Unlock() }
	if st, ok := runUntil(t, unpinned, 40*time.Second, connected); !ok || strings.Contains(st.LastError, ErrThumbprintMismatch.Error()) {
		t.Errorf("no pin: stats %+v, want a sample or the chain's hint", st)
	} else {
		t.Logf("no pin: %d sessions; last error %q", st.SessionsCreated, st.LastError)
	}
	if l := logs.String(); !strings.Contains(l, "not pinned") || !strings.Contains(l, "thumbprint="+leafTP) || strings.Contains(l, chainTP) {
		t.Errorf("log without a pin, want thumbprint=%s (the leaf's), never %s (the chain's):\n%s", leafTP, chainTP, l)
	}
	certMu.Lock()
	if len(chain) != 2 || !chain[0].Equal(leaf) || !chain[1].Equal(inter) {
		t.Errorf("ServerCertificates got %d certificates, want the leaf and the intermediate", len(chain))
	}
	certMu.Unlock()

	// The leaf's thumbprint pinned, as UaExpert shows it: not refused.
	good := base
	good.ServerThumbprint = strings.ToUpper(leafTP)
	if st, ok := runUntil(t, good, 40*time.Second, connected); !ok || strings.Contains(st.LastError, ErrThumbprintMismatch.Error()) {
		t.Errorf("the leaf's thumbprint pinned: stats %+v, want a sample or the chain's hint", st)
	}

	// Another pin: refused, naming the leaf's thumbprint.
	bad := base
	bad.ServerThumbprint = strings.Repeat("ab", 20)
	st, refused := runUntil(t, bad, 30*time.Second, func(samples []connectors.Sample, st Stats) bool {
		return len(samples) > 0 || st.SessionsCreated != 0 || strings.Contains(st.LastError, ErrThumbprintMismatch.Error())
	})
	if !refused || st.SessionsCreated != 0 || !strings.Contains(st.LastError, "server presents "+leafTP) {
		t.Errorf("mismatching pin: stats %+v, want a thumbprint mismatch naming %s", st, leafTP)
	}
}
