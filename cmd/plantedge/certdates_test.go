package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/plantedge/plantedge/agent"
	"github.com/plantedge/plantedge/agent/agenttest"
	"github.com/plantedge/plantedge/agent/config"
	"github.com/plantedge/plantedge/connectors/opcua"
	"github.com/plantedge/plantedge/internal/certtest"
)

// A certificate file the configuration names that has expired is a
// problem, said with file:line:col, the key path, the date and what to do
// (exit 1); one that expires within 30 days is a warning (exit 0); one
// further off goes unsaid. A CA bundle lasts as long as its
// latest-expiring certificate: an expired old root beside a valid new one
// (a rotation, the system's bundle) is neither a problem nor a warning.
func TestValidateCertificateDates(t *testing.T) {
	dir := t.TempDir()
	t.Setenv(config.EnvAPIKey, strings.Repeat("a", 40))
	ca := certtest.NewCA(t, "Plant CA", certtest.Days(400))
	caFile, certFile, keyFile := filepath.Join(dir, "ca.pem"), filepath.Join(dir, "client.pem"), filepath.Join(dir, "client.key")
	// write writes a client certificate valid for clientDays and a CA
	// file of an old root valid for oldDays and a new one for newDays.
	write := func(clientDays, oldDays, newDays int) (client, newCA time.Time) {
		t.Helper()
		c := ca.Issue(t, "plantedge", certtest.Days(clientDays))
		certtest.WritePair(t, c, certFile, keyFile)
		old, nw := certtest.NewCA(t, "Old CA", certtest.Days(oldDays)), certtest.NewCA(t, "New CA", certtest.Days(newDays))
		certtest.WriteCerts(t, caFile, old.Cert, nw.Cert)
		return c.Leaf.NotAfter, nw.Cert.NotAfter
	}
	y := agenttest.Config{Site: "s", DataDir: filepath.Join(dir, "data"), Listen: "127.0.0.1:9464", OdooURL: "http://127.0.0.1:8069",
		BrokerURL: "ssl://127.0.0.1:8883", ClientID: "c"}.YAML() +
		"  - id: m1\n    workcenter: WC1\n    good_count: { mqtt: { broker: broker, topic: t, field: good } }\n"
	y = strings.Replace(y, "  api_key_file: \"\"\n", "", 1)
	y = strings.Replace(y, "    client_id: c\n", fmt.Sprintf("    client_id: c\n    ca_file: %s\n    cert_file: %s\n    key_file: %s\n", caFile, certFile, keyFile), 1)
	path := filepath.Join(dir, "plantedge.yaml")
	if err := os.WriteFile(path, []byte(y), 0o600); err != nil {
		t.Fatal(err)
	}
	line := lineOf(t, y, "    cert_file: ")

	// The old root expired yesterday: only the client certificate is a
	// problem.
	client, _ := write(-2, -1, 300)
	_, errOut, err := runValidate(t, "-c", path)
	want := fmt.Sprintf("%s:%d:16: mqtt[0].cert_file: the agent's client certificate for MQTT broker broker (%s, CN=plantedge) expired on %s "+
		"(get a new one from the broker's CA, put it and its key where cert_file and key_file say and restart plantedge)\n",
		path, line, certFile, client.UTC().Format("2006-01-02 15:04 UTC"))
	if exitCode(err) != 1 || !strings.Contains(errOut, want) {
		t.Errorf("an expired client certificate: exit %d (%v), want 1 and %q in:\n%s", exitCode(err), err, want, errOut)
	}
	if err != nil && !strings.Contains(err.Error(), "1 expired certificate") {
		t.Errorf("error %q", err)
	}
	if strings.Contains(errOut, "ca_file") {
		t.Errorf("a CA bundle with a valid root said:\n%s", errOut)
	}

	client, newCA := write(10, 5, 20)
	_, errOut, err = runValidate(t, "-c", path)
	for _, want := range []string{
		fmt.Sprintf("warning: %s:%d:16: mqtt[0].cert_file: the agent's client certificate for MQTT broker broker (%s, CN=plantedge) expires on %s, in 9 days",
			path, line, certFile, client.UTC().Format("2006-01-02 15:04 UTC")),
		fmt.Sprintf("warning: %s:%d:14: mqtt[0].ca_file: a CA certificate of MQTT broker broker's ca_file (%s, CN=New CA) expires on %s, in 19 days",
			path, line-1, caFile, newCA.UTC().Format("2006-01-02 15:04 UTC")),
	} {
		if err != nil || !strings.Contains(errOut, want) {
			t.Errorf("certificates within 30 days: %v, want %q in:\n%s", err, want, errOut)
		}
	}

	// Both roots expired: the CA file verifies nothing.
	_, _ = write(300, -3, -1)
	_, errOut, err = runValidate(t, "-c", path)
	if exitCode(err) != 1 || !strings.Contains(errOut, "mqtt[0].ca_file: a CA certificate of MQTT broker broker's ca_file ("+caFile+", CN=New CA) expired on") {
		t.Errorf("a CA file whose roots all expired: exit %d (%v), want 1 and the newer root in:\n%s", exitCode(err), err, errOut)
	}

	write(40, -1, 300)
	if _, errOut, err = runValidate(t, "-c", path); err != nil || strings.Contains(errOut, "expire") {
		t.Errorf("certificates 40 days off beside an expired old root: %v\n%s", err, errOut)
	}
}

// The text status says a certificate within 30 days, or past, and nothing
// of one further off.
func TestStatusCertificateWarnings(t *testing.T) {
	soon := time.Now().Add(10*24*time.Hour + time.Hour).UTC()
	past := time.Date(2026, 11, 30, 8, 0, 0, 0, time.UTC)
	var out bytes.Buffer
	printStatus(&out, agent.Status{Site: "s", AgentRunning: true, Certificates: []agent.CertificateStatus{
		{Use: agent.CertMQTTClient, Source: "plant-broker", File: "/etc/plantedge/mqtt.pem", Subject: "CN=plantedge", NotAfter: soon, ExpiresSoon: true},
		{Use: agent.CertOdooServer, Source: "odoo", Subject: "CN=erp.example.com", Chain: agent.ChainLeaf, NotAfter: past, ExpiresSoon: true, Expired: true},
		{Use: agent.CertMQTTCA, Source: "plant-broker", File: "/etc/plantedge/ca.pem", Subject: "CN=Plant CA", NotAfter: soon.AddDate(1, 0, 0)},
	}})
	for _, want := range []string{
		"CERTIFICATE EXPIRES " + soon.Format("2006-01-02 15:04 UTC") + " (in 10 days): the agent's client certificate for MQTT broker plant-broker (/etc/plantedge/mqtt.pem, CN=plantedge) — get a new one",
		"CERTIFICATE EXPIRED on 2026-11-30 08:00 UTC: Odoo's HTTPS certificate (CN=erp.example.com) — the administrator of Odoo's server",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("no %q in:\n%s", want, out.String())
		}
	}
	if strings.Contains(out.String(), "Plant CA") {
		t.Errorf("a certificate a year off said:\n%s", out.String())
	}
	out.Reset()
	printStatus(&out, agent.Status{Site: "s", AgentRunning: true})
	if strings.Contains(out.String(), "CERTIFICATE") {
		t.Errorf("no certificate, and:\n%s", out.String())
	}
}

// The client certificate the agent generated in data_dir for a secure OPC
// UA source without cert_file is checked as a file the configuration
// names: within 30 days a warning at the source's entry, with the file and
// how to renew it.
func TestValidateGeneratedOPCUACertificate(t *testing.T) {
	dir := t.TempDir()
	t.Setenv(config.EnvAPIKey, strings.Repeat("a", 40))
	data := filepath.Join(dir, "data")
	if err := os.MkdirAll(data, 0o750); err != nil {
		t.Fatal(err)
	}
	crt, key := opcua.CertPaths(data, "line1")
	own := certtest.NewCA(t, "Plant CA", certtest.Days(400)).Issue(t, "plantedge line1", certtest.Days(10))
	certtest.WritePair(t, own, crt, key)
	y := agenttest.Config{Site: "s", DataDir: data, Listen: "127.0.0.1:9464", OdooURL: "http://127.0.0.1:8069",
		BrokerURL: "tcp://127.0.0.1:1883", ClientID: "c", OPCUA: "opc.tcp://127.0.0.1:4840"}.YAML() +
		"  - id: m1\n    workcenter: WC1\n    good_count: { opcua: { server: line1, node: \"ns=2;s=Good\" } }\n"
	y = strings.Replace(y, "  api_key_file: \"\"\n", "", 1)
	y = strings.Replace(y, "    endpoint: \"opc.tcp://127.0.0.1:4840\"\n", "    endpoint: \"opc.tcp://127.0.0.1:4840\"\n    security_policy: Basic256Sha256\n", 1)
	path := filepath.Join(dir, "plantedge.yaml")
	if err := os.WriteFile(path, []byte(y), 0o600); err != nil {
		t.Fatal(err)
	}
	_, errOut, err := runValidate(t, "-c", path)
	want := fmt.Sprintf("opcua[0]: the client certificate the agent generated for OPC UA server line1 (%s, CN=plantedge line1) expires on %s, in 9 days "+
		"(in a planned stop, delete it and its key %s and restart plantedge",
		crt, own.Leaf.NotAfter.UTC().Format("2006-01-02 15:04 UTC"), key)
	if err != nil || !strings.Contains(errOut, "warning: ") || !strings.Contains(errOut, want) {
		t.Errorf("a generated client certificate within 30 days: %v, want %q in:\n%s", err, want, errOut)
	}
}
