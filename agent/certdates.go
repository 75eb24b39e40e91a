package agent

import (
	"bytes"
	"cmp"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/plantedge/plantedge/agent/config"
	"github.com/plantedge/plantedge/connectors"
	"github.com/plantedge/plantedge/connectors/opcua"
)

// CertExpiryWarning is how long before a certificate the agent uses
// expires it warns of it (the log once a day, status, validate): a
// certificate is usually made by someone else (the plant's IT, the PLC's
// integrator), who needs the time.
const CertExpiryWarning = 30 * 24 * time.Hour

// certCheckEvery is how often the agent reads the certificate files again
// and warns of those within CertExpiryWarning (each at most once every
// keyWarnEvery).
const certCheckEvery = time.Hour

// The uses of a certificate (the gauge's and status's use).
const (
	CertOPCUAClient = "opcua_client" // opcua[].cert_file, or the one the agent generated in data_dir
	CertMQTTClient  = "mqtt_client"  // mqtt[].cert_file
	CertMQTTCA      = "mqtt_ca"      // mqtt[].ca_file
	CertOdooCA      = "odoo_ca"      // odoo.ca_file
	CertOPCUAServer = "opcua_server" // the certificate the OPC UA server's session used
	CertMQTTServer  = "mqtt_server"  // the chain the MQTT broker presented
	CertOdooServer  = "odoo_server"  // the chain Odoo (or the proxy in front of it) presented
)

// CertFile is a certificate file the configuration names: its use, the
// source it is of ("odoo" for odoo's), the key path that names it and
// the file. Generated: the OPC UA client certificate the agent makes in
// data_dir for a secure source without cert_file (Path is the source's
// entry then).
type CertFile struct {
	Use, Source, Path, File string
	Generated               bool
}

// CertFiles are the certificate files cfg names, and the OPC UA client
// certificate the agent generates in data_dir for a secure source without
// cert_file (opcua.CertPaths; not there until the source's first start).
// The OPC UA server's administrator trusts that one as any other, and
// refuses the agent's sessions the day it expires (10 years on, or a pair
// put there from the plant's own CA).
func CertFiles(cfg *config.Config) []CertFile {
	var out []CertFile
	add := func(use, source, path, file string) {
		if file != "" {
			out = append(out, CertFile{Use: use, Source: source, Path: path, File: file})
		}
	}
	for i, s := range cfg.OPCUA {
		if generatesCert(s) && cfg.DataDir != "" {
			crt, _ := opcua.CertPaths(cfg.DataDir, s.Name)
			out = append(out, CertFile{Use: CertOPCUAClient, Source: s.Name, Path: fmt.Sprintf("opcua[%d]", i), File: crt, Generated: true})
			continue
		}
		add(CertOPCUAClient, s.Name, fmt.Sprintf("opcua[%d].cert_file", i), s.CertFile)
	}
	for i, b := range cfg.MQTT {
		add(CertMQTTClient, b.Name, fmt.Sprintf("mqtt[%d].cert_file", i), b.CertFile)
		add(CertMQTTCA, b.Name, fmt.Sprintf("mqtt[%d].ca_file", i), b.CAFile)
	}
	add(CertOdooCA, "odoo", "odoo.ca_file", cfg.Odoo.CAFile)
	return out
}

// generatesCert reports whether OPC UA source s uses a client certificate
// the agent generates in data_dir: secure, without cert_file.
func generatesCert(s config.OPCUAServer) bool {
	return opcua.GeneratesCert(s.SecurityPolicy, s.CertFile)
}

// EndingCert reads f's file (PEM, every certificate of a bundle; or one
// DER certificate, as an OPC UA cert_file may be) and returns the
// certificate whose expiry ends the file's use. A CA file (ca_file) stops
// verifying peers only when its last certificate expires: a bundle (the
// system's, or an old and a new root during a rotation) counts by its
// latest-expiring certificate, and the root a peer's chain actually
// reaches is the peer's (notePeerCerts). A certificate file (cert_file)
// counts by its soonest: the peer checks the leaf and every intermediate
// sent with it.
func EndingCert(f CertFile) (*x509.Certificate, error) {
	certs, err := readCerts(f.File)
	if err != nil {
		return nil, err
	}
	if f.Use == CertMQTTCA || f.Use == CertOdooCA {
		return latestOf(certs), nil
	}
	return soonestOf(certs), nil
}

// readCerts are the certificates of file: every one of a PEM file, or its
// one DER certificate.
func readCerts(file string) ([]*x509.Certificate, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	var certs []*x509.Certificate
	rest := b
	for {
		var blk *pem.Block
		blk, rest = pem.Decode(rest)
		if blk == nil {
			break
		}
		if blk.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", file, err)
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		c, err := x509.ParseCertificate(b)
		if err != nil {
			return nil, fmt.Errorf("%s holds no certificate", file)
		}
		certs = append(certs, c)
	}
	return certs, nil
}

// latestOf is the certificate of certs that expires last (nil: none).
func latestOf(certs []*x509.Certificate) *x509.Certificate {
	var last *x509.Certificate
	for _, c := range certs {
		if c != nil && (last == nil || c.NotAfter.After(last.NotAfter)) {
			last = c
		}
	}
	return last
}

// soonestOf is the certificate of certs that expires first (nil: none).
func soonestOf(certs []*x509.Certificate) *x509.Certificate {
	if i := soonestIndex(certs); i >= 0 {
		return certs[i]
	}
	return nil
}

// soonestIndex is the index of the certificate of certs that expires
// first (the first of those that expire together; -1: none).
func soonestIndex(certs []*x509.Certificate) int {
	first := -1
	for i, c := range certs {
		if c != nil && (first < 0 || c.NotAfter.Before(certs[first].NotAfter)) {
			first = i
		}
	}
	return first
}

// CertificateStatus is a certificate the agent uses, in status's
// certificates: the one of a file the configuration names whose expiry
// ends the file's use (File set; EndingCert), or the soonest to expire of
// the chain the agent's last connection to a peer relied on (File empty;
// with verification up to the root it trusts).
type CertificateStatus struct {
	Use    string `json:"use"`
	Source string `json:"source"`
	File   string `json:"file,omitempty"`
	// Generated: the OPC UA client certificate the agent generated in
	// data_dir (CertFile.Generated).
	Generated bool   `json:"generated,omitempty"`
	Subject   string `json:"subject"`
	// Chain is where a peer's certificate sits in its chain (File empty):
	// ChainLeaf, ChainIntermediate or ChainRoot.
	Chain    string    `json:"chain,omitempty"`
	NotAfter time.Time `json:"not_after"`
	// ExpiresSoon: within 30 days (CertExpiryWarning), or past.
	ExpiresSoon bool `json:"expires_soon"`
	Expired     bool `json:"expired,omitempty"`
}

// CertStatus is c's status entry as of now (of use and source; file for
// one the configuration names): what status, the log and validate say
// of it.
func CertStatus(use, source, file string, c *x509.Certificate, now time.Time) CertificateStatus {
	return refreshed(CertificateStatus{Use: use, Source: source, File: file, Subject: c.Subject.String(), NotAfter: c.NotAfter.UTC()}, now)
}

// Status is the status entry of f, c its EndingCert, as of now.
func (f CertFile) Status(c *x509.Certificate, now time.Time) CertificateStatus {
	st := CertStatus(f.Use, f.Source, f.File, c, now)
	st.Generated = f.Generated
	return st
}

// Where a peer's certificate sits in the chain its connection relied on
// (status's chain).
const (
	ChainLeaf         = "leaf"         // the peer's own
	ChainIntermediate = "intermediate" // a CA's the peer sends with its own
	ChainRoot         = "root"         // the self-signed CA's the chain ends at
)

// chainPlace is where chain[i] sits in chain (the peer's first): a
// verified chain ends at the root the agent trusts (ca_file's or the
// system's), which the peer usually does not send; an unverified one is
// what the peer sent, and ends at a root only when the peer sent it.
func chainPlace(chain []*x509.Certificate, i int) string {
	c := chain[i]
	switch {
	case i == 0:
		return ChainLeaf
	case i == len(chain)-1 && bytes.Equal(c.RawSubject, c.RawIssuer):
		return ChainRoot
	}
	return ChainIntermediate
}

// certDates holds the certificates the agent uses: the configured files,
// read at the start, at each reload and every certCheckEvery, and the
// peers', noted at each connection.
type certDates struct {
	mu     sync.Mutex
	files  []CertificateStatus
	peers  map[[2]string]CertificateStatus // by use and source
	warned map[string]time.Time            // by certKey: when last logged
}

// certKey names one certificate of one use for the log's once a day.
func certKey(c CertificateStatus) string {
	return c.Use + "\x00" + c.Source + "\x00" + c.File + "\x00" + c.NotAfter.String()
}

// configuredCerts reads the certificate files cfg names as of now; one
// that cannot be read is left out (validate and the source's connector
// say why).
func configuredCerts(cfg *config.Config, now time.Time) []CertificateStatus {
	out := []CertificateStatus{}
	for _, f := range CertFiles(cfg) {
		if c, err := EndingCert(f); err == nil {
			out = append(out, f.Status(c, now))
		}
	}
	return out
}

// readCertFiles reads the certificate files of cfg again (the start, a
// reload, every certCheckEvery), forgets the peers of sources no longer
// in it, and warns of those that expire soon.
func (a *Agent) readCertFiles(cfg *config.Config) {
	now := time.Now()
	files := configuredCerts(cfg, now)
	sources := map[string]bool{"odoo": true}
	for _, s := range cfg.OPCUA {
		sources[s.Name] = true
	}
	for _, b := range cfg.MQTT {
		sources[b.Name] = true
	}
	a.certs.mu.Lock()
	a.certs.files = files
	for k := range a.certs.peers {
		if !sources[k[1]] {
			delete(a.certs.peers, k)
		}
	}
	a.certs.mu.Unlock()
	a.warnCerts(now)
}

// notePeerCerts takes the chain a connection to a peer relied on (use
// CertMQTTServer, CertOdooServer or CertOPCUAServer, of source; for MQTT
// and Odoo connectors.ChainInUse: verified, it ends at the root of ca_file
// or the system's): its soonest to expire is shown, and warned of when
// within CertExpiryWarning.
func (a *Agent) notePeerCerts(use, source string, chain []*x509.Certificate) {
	i := soonestIndex(chain)
	if i < 0 {
		return
	}
	c := chain[i]
	now := time.Now()
	st := CertStatus(use, source, "", c, now)
	st.Chain = chainPlace(chain, i)
	a.certs.mu.Lock()
	if a.certs.peers == nil {
		a.certs.peers = map[[2]string]CertificateStatus{}
	}
	prev, had := a.certs.peers[[2]string{use, source}]
	a.certs.peers[[2]string{use, source}] = st
	a.certs.mu.Unlock()
	if !had || !prev.NotAfter.Equal(c.NotAfter.UTC()) {
		a.warnCerts(now)
	}
}

// noteGeneratedCert reads the certificate files again when the client
// certificate OPC UA source generates in data_dir is not among them: the
// source makes it at its first start, after the agent read them.
func (a *Agent) noteGeneratedCert(source string) {
	a.certs.mu.Lock()
	have := slices.ContainsFunc(a.certs.files, func(c CertificateStatus) bool { return c.Use == CertOPCUAClient && c.Source == source })
	a.certs.mu.Unlock()
	if !have {
		a.readCertFiles(a.cfg.Load())
	}
}

// peerCerts is the hook a connector calls with the chain each connection
// to its peer relies on.
func (a *Agent) peerCerts(use, source string) func([]*x509.Certificate) {
	return func(chain []*x509.Certificate) { a.notePeerCerts(use, source, chain) }
}

// certificates is status's certificates as of now: the configured files
// first (in the file's order), then the peers' by use and source.
func (a *Agent) certificates(now time.Time) []CertificateStatus {
	a.certs.mu.Lock()
	defer a.certs.mu.Unlock()
	return a.certsLocked(now)
}

// certsLocked is certificates, a.certs.mu held.
func (a *Agent) certsLocked(now time.Time) []CertificateStatus {
	out := make([]CertificateStatus, 0, len(a.certs.files)+len(a.certs.peers))
	for _, c := range a.certs.files {
		out = append(out, refreshed(c, now))
	}
	peers := make([]CertificateStatus, 0, len(a.certs.peers))
	for _, c := range a.certs.peers {
		peers = append(peers, refreshed(c, now))
	}
	slices.SortFunc(peers, func(x, y CertificateStatus) int {
		return cmp.Or(cmp.Compare(x.Use, y.Use), cmp.Compare(x.Source, y.Source))
	})
	return append(out, peers...)
}

// refreshed is c with expires_soon and expired as of now.
func refreshed(c CertificateStatus, now time.Time) CertificateStatus {
	c.ExpiresSoon, c.Expired = c.NotAfter.Sub(now) <= CertExpiryWarning, !now.Before(c.NotAfter)
	return c
}

// warnCerts logs each certificate that expires within CertExpiryWarning
// (WARN) or has expired (ERROR), each at most once every keyWarnEvery, and
// what to do (docs/runbook.md: A certificate about to expire).
func (a *Agent) warnCerts(now time.Time) {
	var due []CertificateStatus
	a.certs.mu.Lock()
	if a.certs.warned == nil {
		a.certs.warned = map[string]time.Time{}
	}
	for _, c := range a.certsLocked(now) {
		if !c.ExpiresSoon {
			continue
		}
		k := certKey(c)
		if last, ok := a.certs.warned[k]; ok && now.Sub(last) < keyWarnEvery {
			continue
		}
		a.certs.warned[k] = now
		due = append(due, c)
	}
	a.certs.mu.Unlock()
	for _, c := range due {
		args := []any{"component", "certificates", "use", c.Use, "source", c.Source}
		if c.File != "" {
			args = append(args, "file", c.File)
		}
		args = append(args, "subject", c.Subject, "not_after", c.NotAfter.Format(connectors.CertDateLayout))
		if c.Expired {
			a.log.Error(fmt.Sprintf("%s EXPIRED on %s: %s (docs/runbook.md: A certificate about to expire)",
				c.What(), c.NotAfter.Format(connectors.CertDateLayout), c.Todo()), args...)
			continue
		}
		a.log.Warn(fmt.Sprintf("%s expires on %s, in %s: %s (docs/runbook.md: A certificate about to expire)",
			c.What(), c.NotAfter.Format(connectors.CertDateLayout), ExpiresIn(c.NotAfter.Sub(now)), c.Todo()), args...)
	}
}

// What names the certificate c is (the log's and text status's words).
// A peer's is named by its place in the chain (Chain): the peer's own,
// an intermediate CA's it sends with it, or the root CA's the chain ends
// at (ca_file's or the system's: the peer does not send it, unless
// unverified).
func (c CertificateStatus) What() string {
	switch c.Use {
	case CertOPCUAClient:
		if c.Generated {
			return fmt.Sprintf("the client certificate the agent generated for OPC UA server %s (%s, %s)", c.Source, c.File, c.Subject)
		}
		return fmt.Sprintf("the agent's client certificate for OPC UA server %s (%s, %s)", c.Source, c.File, c.Subject)
	case CertMQTTClient:
		return fmt.Sprintf("the agent's client certificate for MQTT broker %s (%s, %s)", c.Source, c.File, c.Subject)
	case CertMQTTCA:
		return fmt.Sprintf("a CA certificate of MQTT broker %s's ca_file (%s, %s)", c.Source, c.File, c.Subject)
	case CertOdooCA:
		return fmt.Sprintf("a CA certificate of odoo.ca_file (%s, %s)", c.File, c.Subject)
	case CertOPCUAServer:
		return c.peerWhat("OPC UA server "+c.Source, "OPC UA server "+c.Source+"'s certificate")
	case CertMQTTServer:
		return c.peerWhat("MQTT broker "+c.Source, "MQTT broker "+c.Source+"'s certificate")
	case CertOdooServer:
		return c.peerWhat("Odoo's HTTPS server", "Odoo's HTTPS certificate")
	}
	return c.Subject
}

// peerWhat names a peer's certificate c by its place in the chain; peer
// names the peer, own the peer's own certificate.
func (c CertificateStatus) peerWhat(peer, own string) string {
	switch c.Chain {
	case ChainIntermediate:
		return fmt.Sprintf("an intermediate CA certificate %s sends with its own (%s)", peer, c.Subject)
	case ChainRoot:
		return fmt.Sprintf("the root CA certificate %s chains to (%s)", own, c.Subject)
	}
	return fmt.Sprintf("%s (%s)", own, c.Subject)
}

// Todo says what to do about c before (or once) it expires.
func (c CertificateStatus) Todo() string {
	switch c.Use {
	case CertOPCUAClient:
		if c.Generated {
			return fmt.Sprintf("in a planned stop, delete it and its key %s and restart plantedge: the agent generates a new pair "+
				"and logs its thumbprint; the OPC UA server refuses the agent until its administrator trusts the new certificate "+
				"(or set cert_file and key_file to a pair of the plant's CA)", strings.TrimSuffix(c.File, ".crt")+".key")
		}
		return "make a new one, have the OPC UA server trust it, put it and its key where cert_file and key_file say and restart plantedge"
	case CertMQTTClient:
		return "get a new one from the broker's CA, put it and its key where cert_file and key_file say and restart plantedge"
	case CertMQTTCA, CertOdooCA:
		return "put the CA's renewed certificate in the file and restart plantedge"
	case CertOPCUAServer:
		switch c.Chain {
		case ChainIntermediate, ChainRoot:
			return "the PLC's or server's administrator installs its CA's renewed certificate with the server's"
		}
		return "the PLC's or server's administrator renews it; if server_thumbprint pins it, set the new one's thumbprint then"
	case CertMQTTServer:
		switch c.Chain {
		case ChainIntermediate:
			return "the broker's administrator installs the CA's renewed intermediate certificate with the broker's"
		case ChainRoot:
			return "the CA renews its root: put the renewed root in the broker's ca_file (without ca_file: update the system's CA bundle) and restart plantedge; the broker's certificate must chain to it"
		}
		return "the broker's administrator renews it"
	case CertOdooServer:
		switch c.Chain {
		case ChainIntermediate:
			return "the administrator of Odoo's server (or of the proxy in front of it) installs the CA's renewed intermediate certificate with the server's"
		case ChainRoot:
			return "the CA renews its root: put the renewed root in odoo.ca_file (without it: update the system's CA bundle) and restart plantedge; the server's certificate must chain to it"
		}
		return "the administrator of Odoo's server (or of the proxy in front of it) renews it"
	}
	return "renew it"
}
