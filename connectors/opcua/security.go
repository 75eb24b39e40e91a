package opcua

import (
	"cmp"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gopcua/opcua"
	"github.com/gopcua/opcua/ua"
	"github.com/gopcua/opcua/uacp"
)

// ErrThumbprintMismatch is returned when the server certificate does not
// match the configured ServerThumbprint; the connection is refused.
var ErrThumbprintMismatch = errors.New("server certificate thumbprint mismatch")

// ErrNoEndpoint is returned when the server offers no endpoint with the
// configured security policy and mode.
var ErrNoEndpoint = errors.New("no matching server endpoint")

// clientCert is the client's application instance certificate.
type clientCert struct {
	der []byte
	key *rsa.PrivateKey
}

// Thumbprint returns the hex SHA-1 of a DER certificate, as OPC UA tools
// show it: of the leaf alone when der is a chain (the leaf's DER followed
// by its issuers', as a server may send its certificate).
func Thumbprint(der []byte) string {
	sum := sha1.Sum(leafCert(der))
	return hex.EncodeToString(sum[:])
}

// leafCert is the first certificate of der, a certificate or a chain of
// certificates in DER one after the other (OPC UA Part 6: a server's
// certificate may come with its issuers'); der itself when it does not
// parse so.
func leafCert(der []byte) []byte {
	chain, err := x509.ParseCertificates(der)
	if err != nil || len(chain) < 2 {
		return der
	}
	return chain[0].Raw
}

// GeneratesCert reports whether a source whose security_policy is policy
// and cert_file certFile uses a client certificate it generates in its
// data directory (CertPaths): a secure one without cert_file.
func GeneratesCert(policy, certFile string) bool {
	return certFile == "" && policy != "" && policy != "None"
}

// CertPaths returns where a generated client certificate and key for the
// source called name are kept in dataDir.
func CertPaths(dataDir, name string) (certFile, keyFile string) {
	return filepath.Join(dataDir, "opcua-"+name+".crt"), filepath.Join(dataDir, "opcua-"+name+".key")
}

// errNoCert means no client certificate has been generated in the data
// directory yet.
var errNoCert = errors.New("no client certificate yet")

// loadClientCert loads the configured pair, or the generated pair in
// dataDir; errNoCert when neither half of the generated pair exists.
func loadClientCert(certFile, keyFile, dataDir, name string) (clientCert, error) {
	if certFile != "" {
		return loadCert(certFile, keyFile)
	}
	certFile, keyFile = CertPaths(dataDir, name)
	_, errC := os.Stat(certFile)
	_, errK := os.Stat(keyFile)
	switch {
	case errC == nil && errK == nil:
		return loadCert(certFile, keyFile)
	case errors.Is(errC, os.ErrNotExist) && errors.Is(errK, os.ErrNotExist):
		return clientCert{}, fmt.Errorf("%w (%s)", errNoCert, certFile)
	case errC == nil || errK == nil:
		// One half lost: regenerating silently would break the PLC's trust list.
		return clientCert{}, fmt.Errorf("client certificate: only one of %s and %s exists; restore it or remove both", certFile, keyFile)
	default:
		return clientCert{}, fmt.Errorf("client certificate: %w", errors.Join(errC, errK))
	}
}

// loadOrCreateCert is loadClientCert, generating the pair in dataDir the
// first time. generated reports a new pair.
func loadOrCreateCert(certFile, keyFile, dataDir, name string) (cc clientCert, generated bool, err error) {
	cc, err = loadClientCert(certFile, keyFile, dataDir, name)
	if !errors.Is(err, errNoCert) {
		return cc, false, err
	}
	certFile, keyFile = CertPaths(dataDir, name)
	cc, certPEM, keyPEM, err := generateCert(name)
	if err != nil {
		return cc, false, err
	}
	if err := os.MkdirAll(dataDir, 0o750); err != nil {
		return cc, false, fmt.Errorf("client certificate: %w", err)
	}
	if err := writeFileAtomic(keyFile, keyPEM, 0o600); err != nil {
		return cc, false, err
	}
	if err := writeFileAtomic(certFile, certPEM, 0o644); err != nil {
		return cc, false, err
	}
	return cc, true, nil
}

func loadCert(certFile, keyFile string) (clientCert, error) {
	var cc clientCert
	b, err := os.ReadFile(certFile)
	if err != nil {
		return cc, fmt.Errorf("client certificate: %w", err)
	}
	if blk, _ := pem.Decode(b); blk != nil {
		b = blk.Bytes
	}
	if _, err := x509.ParseCertificate(b); err != nil {
		return cc, fmt.Errorf("client certificate %s: %w", certFile, err)
	}
	cc.der = b
	k, err := os.ReadFile(keyFile)
	if err != nil {
		return cc, fmt.Errorf("client key: %w", err)
	}
	if blk, _ := pem.Decode(k); blk != nil {
		k = blk.Bytes
	}
	if key, err := x509.ParsePKCS1PrivateKey(k); err == nil {
		cc.key = key
		return cc, nil
	}
	anyKey, err := x509.ParsePKCS8PrivateKey(k)
	if err != nil {
		return cc, fmt.Errorf("client key %s: %w", keyFile, err)
	}
	key, ok := anyKey.(*rsa.PrivateKey)
	if !ok {
		return cc, fmt.Errorf("client key %s: not an RSA key", keyFile)
	}
	cc.key = key
	return cc, nil
}

// generateCert makes a self-signed application instance certificate valid
// for 10 years, with the application URI OPC UA requires in its SAN.
func generateCert(name string) (cc clientCert, certPEM, keyPEM []byte, err error) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return cc, nil, nil, fmt.Errorf("generate client key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return cc, nil, nil, fmt.Errorf("generate serial: %w", err)
	}
	host, _ := os.Hostname()
	if host == "" {
		host = "localhost"
	}
	appURI := &url.URL{Scheme: "urn", Opaque: "plantedge:" + host + ":" + url.PathEscape(name)}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: "plantedge " + name, Organization: []string{"plantedge"}},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.AddDate(10, 0, 0),
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageContentCommitment |
			x509.KeyUsageKeyEncipherment | x509.KeyUsageDataEncipherment | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		URIs:                  []*url.URL{appURI},
		DNSNames:              []string{host},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return cc, nil, nil, fmt.Errorf("create client certificate: %w", err)
	}
	certPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM = pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})
	return clientCert{der: der, key: key}, certPEM, keyPEM, nil
}

func writeFileAtomic(path string, data []byte, perm os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Chmod(perm); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// clientParams is everything needed to open a client, shared by Source and Browse.
type clientParams struct {
	endpoint           string
	sec                security
	cert               *clientCert
	username, password string
	requestTimeout     time.Duration
	lifetime           time.Duration // secure channel token lifetime; 0: gopcua's default
	sessionTimeout     time.Duration // 0: defaultSessionTimeout
	// revisedTimeout is the lifetime the server gave the source's earlier
	// sessions, said when it refuses one for want of a slot (slotHint);
	// 0: not known.
	revisedTimeout time.Duration
	// serverCert, if set, gets the certificate of the endpoint chosen for a
	// secure connection (after the pin, if any, matched).
	serverCert func(der []byte)
	// orphan, if set, is a session a lost connection left on the server:
	// closed before the new one is made, orphanGone set to what
	// closeOrphan did.
	orphan     *opcua.Session
	orphanGone *atomic.Int32
	// orphanSub, if set with recovered, is the subscription of orphan
	// (or of left): closeOrphan takes what it holds (drainOrphan) before
	// it closes the session, and stores it in recovered. asking, if set,
	// sees each request of the drain (tests).
	orphanSub *orphanSub
	recovered *atomic.Pointer[drained]
	asking    func(string)
	// stop, if set, is the attempt's context, which a stop cancels: it
	// ends the drain (the close runs on), and the close has stopWait
	// from then.
	stop     context.Context
	orphanMu *sync.Mutex // held while orphan is closed
	// left, if set (and orphan not), is the session the previous process
	// left on the server: closed the same way, orphanGone set.
	left *keptSession
	// checkLogin: the login is checked first on a session of its own,
	// closed whatever the answer (see checkLogin); onChecked, if set, is
	// called when the server took it.
	checkLogin bool
	onChecked  func()
	// onOptions, if set, gets the client options of the attempt (they
	// close a session a lost connection left, at a stop).
	onOptions func([]opcua.Option)
	// onActivated, if set, gets the connection's session once the server
	// has activated it, before Connect reads the namespace array: dial's
	// goroutine calls it, and dial returns after it did. Not when the
	// attempt was cancelled meanwhile (dial closes what it made; see
	// activatedBy).
	onActivated func(*opcua.Session)
}

// defaultSessionTimeout is how long the server keeps a session the agent
// no longer uses (one left when the edge box lost power, or the agent was
// killed): gopcua asks for 20 minutes, and a PLC with few session slots
// then refused the restarted agent that long (the OPC UA probe:
// BadTooManySessions for 150 s and counting). The agent makes a new session
// itself whenever one fails, so a long one buys it nothing; its requests
// (publish, reads) come far more often than this.
const defaultSessionTimeout = 2 * time.Minute

// minChunk is the smallest message chunk OPC UA lets an endpoint ask for
// (Part 6, 7.1.2.3).
const minChunk = 8192

func init() {
	// gopcua keeps the server's Acknowledge as its own limits: it takes the
	// server's receive buffer as the largest chunk it accepts and the
	// server's send buffer as the largest it sends, the wrong way round.
	// Against a server whose two sizes differ (allowed: each direction is
	// negotiated on its own) every message over the smaller one ended the
	// connection. Asking for chunks of 8,192 bytes both ways, the least any
	// server must take, makes every size in play 8,192: messages just come
	// in more chunks. (gopcua's client options would write this same global,
	// once per client; here it is written once, before any client exists.)
	uacp.DefaultClientACK.ReceiveBufSize = minChunk
	uacp.DefaultClientACK.SendBufSize = minChunk
}

// clientOptions asks the server for its endpoints, picks the one matching
// the security settings, checks the pin and returns the client options;
// chained when the endpoint's certificate is a chain (see chainHint).
// gopcua connects reliably only with SecurityFromEndpoint (FIELD-NOTES).
func clientOptions(ctx context.Context, p clientParams) (opts []opcua.Option, chained bool, err error) {
	if err := checkServerLimits(ctx, p.endpoint, p.requestTimeout); err != nil {
		return nil, false, err
	}
	eps, err := opcua.GetEndpoints(ctx, p.endpoint, opcua.DialTimeout(p.requestTimeout), opcua.RequestTimeout(p.requestTimeout))
	if err != nil {
		return nil, false, fmt.Errorf("get endpoints: %w", err)
	}
	opts = []opcua.Option{
		opcua.AutoReconnect(false), // we own reconnection
		opcua.DialTimeout(p.requestTimeout),
		opcua.RequestTimeout(p.requestTimeout),
		opcua.ApplicationName("plantedge"),
		opcua.SessionName("plantedge"),
		opcua.SessionTimeout(cmp.Or(p.sessionTimeout, defaultSessionTimeout)),
	}
	if p.lifetime > 0 {
		opts = append(opts, opcua.Lifetime(p.lifetime))
	}
	if len(eps) == 0 && p.sec.none() && p.sec.thumbprint == nil {
		// Some servers (gopcua's among them) list only endpoints whose URL
		// matches the one asked for, so behind NAT or a port forward they
		// list none. Without security there is nothing to take from them.
		opts = append(opts, opcua.SecurityPolicy(ua.SecurityPolicyURINone), opcua.SecurityMode(ua.MessageSecurityModeNone))
		if p.username != "" {
			return nil, false, fmt.Errorf("%w: the server lists no endpoint for %s, needed for user authentication", ErrNoEndpoint, p.endpoint)
		}
		return append(opts, opcua.AuthAnonymous()), false, nil
	}
	var ep *ua.EndpointDescription
	for _, e := range eps {
		if e.SecurityPolicyURI == p.sec.policyURI && e.SecurityMode == p.sec.mode {
			if ep == nil || e.SecurityLevel > ep.SecurityLevel {
				ep = e
			}
		}
	}
	if ep == nil {
		return nil, false, fmt.Errorf("%w for %s %s among %d offered", ErrNoEndpoint, p.sec.policyURI, p.sec.mode, len(eps))
	}
	leaf := leafCert(ep.ServerCertificate)
	if p.sec.thumbprint != nil {
		if got := Thumbprint(leaf); len(leaf) == 0 || got != hex.EncodeToString(p.sec.thumbprint) {
			return nil, false, fmt.Errorf("%w: server presents %s, pinned %s", ErrThumbprintMismatch,
				got, hex.EncodeToString(p.sec.thumbprint))
		}
	}
	if p.serverCert != nil && !p.sec.none() {
		p.serverCert(ep.ServerCertificate)
	}
	tokenType := ua.UserTokenTypeAnonymous
	if p.username != "" {
		tokenType = ua.UserTokenTypeUserName
	}
	if p.cert != nil {
		opts = append(opts, opcua.Certificate(p.cert.der), opcua.PrivateKey(p.cert.key))
	}
	if p.username != "" {
		opts = append(opts, opcua.AuthUsername(p.username, p.password))
	} else {
		opts = append(opts, opcua.AuthAnonymous())
	}
	// Of a chain, the leaf alone goes to gopcua: it encrypts the
	// OpenSecureChannel to that certificate's key (the server's, the
	// leaf's) and names it by its SHA-1 (the receiver thumbprint, the
	// leaf's: OPC UA Part 6), and parses it as one certificate (a chain
	// failed: "x509: trailing data").
	leafEP := *ep
	leafEP.ServerCertificate = leaf
	opts = append(opts, opcua.SecurityFromEndpoint(&leafEP, tokenType))
	return opts, !p.sec.none() && len(leafEP.ServerCertificate) < len(ep.ServerCertificate), nil
}
