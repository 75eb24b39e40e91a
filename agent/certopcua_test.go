package agent_test

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/plantedge/plantedge/agent"
	"github.com/plantedge/plantedge/agent/agenttest"
	"github.com/plantedge/plantedge/agent/config"
	"github.com/plantedge/plantedge/connectors/opcua"
	"github.com/plantedge/plantedge/internal/certtest"
	"github.com/plantedge/plantedge/internal/nodeopcua"
)

// nodeCounter is the node-opcua server's counter (up every 200 ms).
const nodeCounter = "nsu=urn:plantedge:test;s=Counter"

// startNodeOPCUA starts the node-opcua test server (Basic256Sha256,
// Sign and SignAndEncrypt, anonymous; it trusts any client certificate) on
// a free loopback port with env (NAME=value, see its server.js) and
// returns its endpoint. It skips the test when node-opcua is not installed,
// unless CI is set (make deps installs it).
func startNodeOPCUA(t *testing.T, env ...string) string {
	t.Helper()
	var endpoint string
	nodeopcua.Start(t, func(line string) bool {
		var v struct{ Endpoint string }
		if endpoint == "" && strings.HasPrefix(line, "{") && json.Unmarshal([]byte(line), &v) == nil && v.Endpoint != "" {
			endpoint = v.Endpoint
			return true
		}
		return false
	}, env...)
	return endpoint
}

// securePlant is a plant whose machine ua-1 counts on a node-opcua server
// over Basic256Sha256 SignAndEncrypt, the server's certificate srv; the
// agent's client certificate is the one it generates in data_dir (no
// cert_file).
func securePlant(t *testing.T, srv certFiles) *plant {
	t.Helper()
	endpoint := startNodeOPCUA(t, "SERVER_CERT_FILE="+srv.cert, "SERVER_KEY_FILE="+srv.key, "SERVER_URI="+srv.uri)
	p := newPlant(t, plantOptions{machines: []string{"ua-1"}})
	p.editConfig(fmt.Sprintf("    endpoint: %q\n", p.ua.Endpoint()),
		fmt.Sprintf("    endpoint: %q\n    security_policy: Basic256Sha256\n    security_mode: SignAndEncrypt\n", endpoint))
	p.editConfig(fmt.Sprintf("{ server: line1, node: %q }", p.ua.NodeID("ua-1.Good")), fmt.Sprintf("{ server: line1, node: %q }", nodeCounter))
	p.editConfig(fmt.Sprintf("    running: { opcua: { server: line1, node: %q } }\n", p.ua.NodeID("ua-1.Running")), "")
	return p
}

// certFiles is a certificate and key written as PEM, and the application
// URI the certificate names.
type certFiles struct{ cert, key, uri string }

// A secure OPC UA session (Basic256Sha256, SignAndEncrypt) relies on the
// server's certificate, which the PLC made itself and which expires in 10
// days: it is in status --json's certificates (opcua_server), in the gauge,
// and logged at WARN once, through the agent and a real secure server.
// The client certificate the agent generated in data_dir for it (no
// cert_file; the server trusts it) is watched as well (opcua_client, with
// its file, generated): it ends the sessions the day it expires as surely,
// 10 years on.
func TestOPCUAServerCertificateExpiry(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	srv := certFiles{filepath.Join(dir, "plc.pem"), filepath.Join(dir, "plc.key"), "urn:plantedge:test:plc"}
	plc := certtest.OPCUAServer(t, "PLC line1", srv.uri, certtest.Days(10))
	certtest.WritePair(t, plc, srv.cert, srv.key)
	p := securePlant(t, srv)
	ra := p.startAgentWith(false)

	generated, _ := opcua.CertPaths(filepath.Join(p.dir, "data"), "line1")
	var ownEnd time.Time
	if c, err := os.ReadFile(generated); err != nil {
		t.Fatalf("no generated client certificate: %v", err)
	} else if blk, _ := pem.Decode(c); blk == nil {
		t.Fatalf("generated client certificate: no PEM in %s", generated)
	} else if own, err := x509.ParseCertificate(blk.Bytes); err != nil {
		t.Fatalf("generated client certificate: %v", err)
	} else {
		ownEnd = own.NotAfter
	}
	waitFor(t, 30*time.Second, "both OPC UA certificates in status", func() (bool, string) {
		st := ra.a.Status()
		return certOf(st, "opcua_server", "line1") != nil && certOf(st, "opcua_client", "line1") != nil, fmt.Sprintf("%+v", st.Certificates)
	})
	st := ra.a.Status()
	srvSt, own := certOf(st, "opcua_server", "line1"), certOf(st, "opcua_client", "line1")
	if !srvSt.NotAfter.Equal(plc.Leaf.NotAfter) || !srvSt.ExpiresSoon || srvSt.Expired || srvSt.Subject != "CN=PLC line1" || srvSt.File != "" {
		t.Errorf("the server's certificate in status: %+v, want CN=PLC line1, not after %s, expires_soon", *srvSt, plc.Leaf.NotAfter)
	}
	if !own.NotAfter.Equal(ownEnd) || own.ExpiresSoon || own.File != generated || !own.Generated {
		t.Errorf("the generated client certificate in status: %+v, want file %s, not after %s, generated", *own, generated, ownEnd)
	}
	for use, end := range map[string]time.Time{"opcua_server": plc.Leaf.NotAfter, "opcua_client": ownEnd} {
		metric := fmt.Sprintf(`plantedge_certificate_expiry_timestamp_seconds{source="line1",use=%q}`, use)
		if got, err := strconv.ParseFloat(p.metricLine(metric), 64); err != nil || got != float64(end.Unix()) {
			t.Errorf("%s = %v (%v), want %d", metric, got, err, end.Unix())
		}
	}
	js, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprintf(`{"use":"opcua_server","source":"line1","subject":"CN=PLC line1","chain":"leaf","not_after":%q,"expires_soon":true}`,
		plc.Leaf.NotAfter.UTC().Format(time.RFC3339)); !strings.Contains(string(js), want) {
		t.Errorf("status --json's certificates: %s\nwant %s", js, want)
	}
	n := 0
	for line := range strings.SplitSeq(p.logs.String(), "\n") {
		if strings.Contains(line, "level=WARN") && strings.Contains(line, "use=opcua_server") && strings.Contains(line, "source=line1") &&
			strings.Contains(line, `"OPC UA server line1's certificate (CN=PLC line1) expires on `+plc.Leaf.NotAfter.UTC().Format(certLayout)) {
			n++
		}
		if strings.Contains(line, "use=opcua_client") && strings.Contains(line, "expires on") {
			t.Errorf("a client certificate 10 years off warned of: %s", line)
		}
	}
	if n != 1 {
		t.Errorf("%d WARN lines of the server's certificate, want 1:\n%s", n, p.logs.String())
	}
}

// An OPC UA server whose certificate a plant CA's intermediate issued
// sends the intermediate with it (a chain): the expiry watch sees the two
// as separate certificates and names the one that ends first by its place,
// here the intermediate, in 10 days (the server's own: a year).
func TestOPCUAServerCertificateChain(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	srv := certFiles{filepath.Join(dir, "plc.pem"), filepath.Join(dir, "plc.key"), "urn:plantedge:test:plc"}
	ca := certtest.NewCA(t, "Plant root CA", certtest.Days(3650)).Intermediate(t, "Plant GDS CA", certtest.Days(10))
	plc := ca.OPCUAServer(t, "PLC line1", srv.uri, certtest.Days(365))
	certtest.WritePair(t, plc, srv.cert, srv.key)
	certtest.WriteCerts(t, srv.cert, plc.Leaf, ca.Cert)
	p := securePlant(t, srv)
	// Started without waiting for the source to connect: it does not
	// (gopcua v0.8.0 takes no chain in the secure channel's handshake), but
	// the certificate is known from the server's endpoints before.
	cfg, err := config.Load(p.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	a, err := agent.New(cfg, agent.Options{Logger: slog.New(slog.NewTextHandler(io.MultiWriter(agenttest.LogWriter{T: t}, &p.logs), nil))})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ra := &runningAgent{a: a, cancel: cancel, done: make(chan error, 1)}
	go func() { ra.done <- a.Run(ctx) }()
	t.Cleanup(ra.stop)
	waitFor(t, 30*time.Second, "the OPC UA server's certificate in status", func() (bool, string) {
		st := ra.a.Status()
		return certOf(st, "opcua_server", "line1") != nil, fmt.Sprintf("%+v", st.Certificates)
	})
	c := certOf(ra.a.Status(), "opcua_server", "line1")
	if c.Chain != "intermediate" || c.Subject != "CN=Plant GDS CA" || !c.NotAfter.Equal(ca.Cert.NotAfter) || !c.ExpiresSoon {
		t.Errorf("the server's chain in status: %+v, want the intermediate CN=Plant GDS CA, not after %s, expires_soon", *c, ca.Cert.NotAfter)
	}
	if w := c.What(); !strings.Contains(w, "an intermediate CA certificate OPC UA server line1 sends with its own") {
		t.Errorf("What() = %q", w)
	}
}
