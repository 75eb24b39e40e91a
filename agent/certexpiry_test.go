package agent_test

import (
	"crypto/tls"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/plantedge/plantedge/agent"
	"github.com/plantedge/plantedge/internal/certtest"
)

// certLayout is how the agent writes a certificate's date.
const certLayout = "2006-01-02 15:04 UTC"

// certOf is status's certificate of use and source (nil: none).
func certOf(st agent.Status, use, source string) *agent.CertificateStatus {
	for i, c := range st.Certificates {
		if c.Use == use && c.Source == source {
			return &st.Certificates[i]
		}
	}
	return nil
}

// The certificates the agent uses are in status --json's certificates and
// in plantedge_certificate_expiry_timestamp_seconds: the files the
// configuration names (a CA bundle by its latest-expiring certificate: an
// expired old root in it is neither shown nor warned of), and the chains
// the connections to the MQTT broker (it verifies the agent's client
// certificate) and Odoo over HTTPS rely on, verified up to the CA file's
// root: the broker's private root, which expires in 10 days, is the
// mqtt_server date though the broker's certificate lasts 300, and is named
// as the root the broker's certificate chains to (chain root), not as a
// certificate the broker presents (it does not send it); Odoo's is its own (chain leaf). Those
// within 30 days are logged once a day (a reload does not log them again),
// an expired one not at all here.
func TestCertificateExpiry(t *testing.T) {
	t.Parallel()
	ca := certtest.NewCA(t, "Plant CA", certtest.Days(400))
	oldCA := certtest.NewCA(t, "Old Plant CA", certtest.Days(-5)) // left in the bundle
	brokerCA := certtest.NewCA(t, "Broker CA", certtest.Days(10))
	server := brokerCA.Issue(t, "broker.plant", certtest.Days(300))
	client := ca.Issue(t, "plantedge-test", certtest.Days(10))
	odooLeaf := ca.Issue(t, "odoo.plant", certtest.Days(300))
	dir := t.TempDir()
	caFile, certFile, keyFile := filepath.Join(dir, "ca.pem"), filepath.Join(dir, "client.pem"), filepath.Join(dir, "client.key")
	certtest.WriteCerts(t, caFile, oldCA.Cert, brokerCA.Cert, ca.Cert)
	certtest.WritePair(t, client, certFile, keyFile)
	p := newPlant(t, plantOptions{machines: []string{"press-1"},
		brokerTLS: &tls.Config{Certificates: []tls.Certificate{server}, ClientCAs: ca.Pool(), ClientAuth: tls.RequireAndVerifyClientCert},
		odooTLS:   []tls.Certificate{odooLeaf}, odooCA: caFile})
	p.editConfig("    client_id: plantedge-test\n", fmt.Sprintf("    client_id: plantedge-test\n    ca_file: %q\n    cert_file: %q\n    key_file: %q\n", caFile, certFile, keyFile))
	ra := p.startAgentWith(false)

	want := []struct {
		use, source, file, chain string
		notAfter                 time.Time
		soon                     bool
	}{
		{"mqtt_client", "broker", certFile, "", client.Leaf.NotAfter, true},
		{"mqtt_ca", "broker", caFile, "", ca.Cert.NotAfter, false},
		{"odoo_ca", "odoo", caFile, "", ca.Cert.NotAfter, false},
		{"mqtt_server", "broker", "", "root", brokerCA.Cert.NotAfter, true},
		{"odoo_server", "odoo", "", "leaf", odooLeaf.Leaf.NotAfter, false},
	}
	waitFor(t, 30*time.Second, "Odoo's certificate in status", func() (bool, string) {
		st := ra.a.Status()
		return certOf(st, "odoo_server", "odoo") != nil, fmt.Sprintf("%+v", st.Certificates)
	})
	st := ra.a.Status()
	if len(st.Certificates) != len(want) {
		t.Errorf("%d certificates in status, want %d: %+v", len(st.Certificates), len(want), st.Certificates)
	}
	for _, w := range want {
		c := certOf(st, w.use, w.source)
		if c == nil {
			t.Errorf("no %s of %s in status: %+v", w.use, w.source, st.Certificates)
			continue
		}
		if c.File != w.file || c.Chain != w.chain || !c.NotAfter.Equal(w.notAfter) || c.ExpiresSoon != w.soon || c.Expired || c.Subject == "" {
			t.Errorf("%s of %s: %+v, want file %q, chain %q, not after %s, expires_soon %t", w.use, w.source, *c, w.file, w.chain, w.notAfter, w.soon)
		}
		metric := fmt.Sprintf(`plantedge_certificate_expiry_timestamp_seconds{source=%q,use=%q}`, w.source, w.use)
		if got, err := strconv.ParseFloat(p.metricLine(metric), 64); err != nil || got != float64(w.notAfter.Unix()) {
			t.Errorf("%s = %v (%v), want %d", metric, got, err, w.notAfter.Unix())
		}
	}
	js, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(js), fmt.Sprintf(`{"use":"mqtt_client","source":"broker","file":%q,"subject":"CN=plantedge-test","not_after":%q,"expires_soon":true}`,
		certFile, client.Leaf.NotAfter.UTC().Format(time.RFC3339))) {
		t.Errorf("status --json's certificates: %s", js)
	}

	// Logged once each, with the file, subject and date.
	warned := func() (nClient, nServer int) {
		for line := range strings.SplitSeq(p.logs.String(), "\n") {
			if !strings.Contains(line, "level=WARN") || !strings.Contains(line, "expires on") {
				continue
			}
			if strings.Contains(line, "use=mqtt_client") && strings.Contains(line, "file="+certFile) && strings.Contains(line, `subject="CN=plantedge-test"`) &&
				strings.Contains(line, client.Leaf.NotAfter.UTC().Format(certLayout)) {
				nClient++
			}
			if strings.Contains(line, "use=mqtt_server") && strings.Contains(line, `subject="CN=Broker CA"`) &&
				strings.Contains(line, `msg="the root CA certificate MQTT broker broker's certificate chains to (CN=Broker CA) expires on `+brokerCA.Cert.NotAfter.UTC().Format(certLayout)) &&
				strings.Contains(line, "put the renewed root in the broker's ca_file") {
				nServer++
			}
		}
		return nClient, nServer
	}
	if c, s := warned(); c != 1 || s != 1 {
		t.Errorf("warned %d times of the client certificate and %d of the broker's, want once each:\n%s", c, s, p.logs.String())
	}
	if err := ra.a.Reload(t.Context(), p.cfgPath); err != nil {
		t.Fatal(err)
	}
	if c, s := warned(); c != 1 || s != 1 {
		t.Errorf("after a reload: warned %d times of the client certificate and %d of the broker's, want once each (once a day)", c, s)
	}
	if l := p.logs.String(); strings.Contains(l, "EXPIRED") || strings.Contains(l, "Old Plant CA") {
		t.Errorf("an expired certificate logged, the only one is an old root no connection uses:\n%s", l)
	}
}

// A broker whose certificate expired is refused (Go verifies it), and the
// source's error says so with the date, not Go's "expired or is not yet
// valid" with two times. A client certificate file that expired is in
// status as expired, and logged as an ERROR.
func TestExpiredBrokerCertificate(t *testing.T) {
	t.Parallel()
	ca := certtest.NewCA(t, "Plant CA", certtest.Days(400))
	server := ca.Issue(t, "broker.plant", certtest.Days(-3))
	client := ca.Issue(t, "plantedge-test", certtest.Days(-1))
	dir := t.TempDir()
	caFile, certFile, keyFile := filepath.Join(dir, "ca.pem"), filepath.Join(dir, "client.pem"), filepath.Join(dir, "client.key")
	certtest.WriteCerts(t, caFile, ca.Cert)
	certtest.WritePair(t, client, certFile, keyFile)
	p := newPlant(t, plantOptions{machines: []string{"press-1"}, brokerTLS: &tls.Config{Certificates: []tls.Certificate{server}}})
	p.editConfig("    client_id: plantedge-test\n", fmt.Sprintf("    client_id: plantedge-test\n    ca_file: %q\n    cert_file: %q\n    key_file: %q\n", caFile, certFile, keyFile))
	p.downSources = map[string]bool{"broker": true}
	ra := p.startAgentWith(false)
	want := "the certificate CN=broker.plant expired on " + server.Leaf.NotAfter.UTC().Format(certLayout)
	waitFor(t, 30*time.Second, "the expiry in the source's error", func() (bool, string) {
		st := ra.a.Status()
		return len(st.Sources) == 1 && strings.Contains(st.Sources[0].LastError, want), fmt.Sprintf("%+v", st.Sources)
	})
	st := ra.a.Status()
	if c := certOf(st, "mqtt_server", "broker"); c != nil {
		t.Errorf("a certificate the agent refused in status: %+v", *c)
	}
	if c := certOf(st, "mqtt_client", "broker"); c == nil || !c.Expired || !c.ExpiresSoon {
		t.Errorf("the expired client certificate in status: %+v", st.Certificates)
	}
	wantLog := "EXPIRED on " + client.Leaf.NotAfter.UTC().Format(certLayout)
	n := 0
	for line := range strings.SplitSeq(p.logs.String(), "\n") {
		if strings.Contains(line, "level=ERROR") && strings.Contains(line, wantLog) && strings.Contains(line, "file="+certFile) {
			n++
		}
	}
	if n != 1 {
		t.Errorf("%d ERROR lines with %q, want 1:\n%s", n, wantLog, p.logs.String())
	}
}

// A broker that sends its issuing CA's certificate with its own: that
// intermediate, which expires in 10 days, is the mqtt_server date though
// the broker's certificate lasts 300 and the root (ca_file) 400, and
// status and the log name it as the intermediate the broker sends (chain
// intermediate), with what to do about it — not as the broker's
// certificate, nor as the root.
func TestBrokerIntermediateCertificateExpiry(t *testing.T) {
	t.Parallel()
	root := certtest.NewCA(t, "Plant Root CA", certtest.Days(400))
	issuing := root.Intermediate(t, "Plant Issuing CA", certtest.Days(10))
	server := issuing.Issue(t, "broker.plant", certtest.Days(300))
	server.Certificate = append(server.Certificate, issuing.Cert.Raw)
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	certtest.WriteCerts(t, caFile, root.Cert)
	p := newPlant(t, plantOptions{machines: []string{"press-1"}, brokerTLS: &tls.Config{Certificates: []tls.Certificate{server}}})
	p.editConfig("    client_id: plantedge-test\n", fmt.Sprintf("    client_id: plantedge-test\n    ca_file: %q\n", caFile))
	ra := p.startAgentWith(false)
	waitFor(t, 30*time.Second, "the broker's chain in status", func() (bool, string) {
		st := ra.a.Status()
		return certOf(st, "mqtt_server", "broker") != nil, fmt.Sprintf("%+v", st.Certificates)
	})
	c := certOf(ra.a.Status(), "mqtt_server", "broker")
	if c.Chain != "intermediate" || c.Subject != "CN=Plant Issuing CA" || !c.NotAfter.Equal(issuing.Cert.NotAfter) || !c.ExpiresSoon {
		t.Errorf("the broker's chain in status: %+v, want the intermediate CN=Plant Issuing CA, not after %s", *c, issuing.Cert.NotAfter)
	}
	want := `msg="an intermediate CA certificate MQTT broker broker sends with its own (CN=Plant Issuing CA) expires on ` +
		issuing.Cert.NotAfter.UTC().Format(certLayout)
	n := 0
	for line := range strings.SplitSeq(p.logs.String(), "\n") {
		if strings.Contains(line, "level=WARN") && strings.Contains(line, want) && strings.Contains(line, "renewed intermediate certificate") {
			n++
		}
	}
	if n != 1 {
		t.Errorf("%d WARN lines with %s, want 1:\n%s", n, want, p.logs.String())
	}
}
