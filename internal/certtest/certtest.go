// Package certtest makes certificates for tests: a CA and the leaves it
// signs, with the validity a test needs (one that expires in 10 days, one
// expired yesterday).
package certtest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/url"
	"os"
	"sync/atomic"
	"testing"
	"time"
)

var serial atomic.Int64

// CA is a certificate authority of a test.
type CA struct {
	Cert *x509.Certificate
	Key  *ecdsa.PrivateKey
}

// Days is n days from now (negative: ago).
func Days(n int) time.Time {
	return time.Now().Add(time.Duration(n) * 24 * time.Hour).Truncate(time.Second)
}

// NewCA makes a self-signed CA named cn valid until notAfter.
func NewCA(t testing.TB, cn string, notAfter time.Time) *CA {
	t.Helper()
	return newCA(t, cn, notAfter, nil)
}

// newCA makes a CA named cn valid until notAfter, signed by parent (nil:
// by itself).
func newCA(t testing.TB, cn string, notAfter time.Time, parent *CA) *CA {
	t.Helper()
	key := newKey(t)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial.Add(1)), Subject: pkix.Name{CommonName: cn},
		NotBefore: notBefore(notAfter), NotAfter: notAfter,
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	signer, signerKey := tmpl, key
	if parent != nil {
		signer, signerKey = parent.Cert, parent.Key
	}
	return &CA{Cert: issue(t, tmpl, signer, &key.PublicKey, signerKey), Key: key}
}

// Renew is ca's root made again with the same name and key, valid until
// notAfter (a CA's rotation: what it signed verifies against either).
func (ca *CA) Renew(t testing.TB, notAfter time.Time) *CA {
	t.Helper()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial.Add(1)), Subject: ca.Cert.Subject,
		NotBefore: notBefore(notAfter), NotAfter: notAfter,
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	return &CA{Cert: issue(t, tmpl, tmpl, &ca.Key.PublicKey, ca.Key), Key: ca.Key}
}

// Intermediate makes an intermediate CA named cn valid until notAfter,
// signed by ca: what it issues verifies against ca's root when the peer
// sends it along.
func (ca *CA) Intermediate(t testing.TB, cn string, notAfter time.Time) *CA {
	t.Helper()
	return newCA(t, cn, notAfter, ca)
}

// Issue makes a leaf named cn valid until notAfter, signed by ca, for
// the server 127.0.0.1 and localhost and for a client.
func (ca *CA) Issue(t testing.TB, cn string, notAfter time.Time) tls.Certificate {
	t.Helper()
	key := newKey(t)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial.Add(1)), Subject: pkix.Name{CommonName: cn},
		NotBefore: notBefore(notAfter), NotAfter: notAfter,
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		DNSNames:    []string{"localhost"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	return keyPair(issue(t, tmpl, ca.Cert, &key.PublicKey, ca.Key), key)
}

// OPCUAServer makes a self-signed OPC UA application instance certificate
// named cn, as a PLC makes its own: RSA 2048 (the Basic256Sha256 family
// takes no other key), appURI in its subject alternative names, for
// 127.0.0.1 and localhost, valid until notAfter.
func OPCUAServer(t testing.TB, cn, appURI string, notAfter time.Time) tls.Certificate {
	t.Helper()
	return opcuaServer(t, cn, appURI, notAfter, nil)
}

// OPCUAServer makes an OPC UA application instance certificate named cn,
// as OPCUAServer does, but signed by ca (a plant PKI's CA, a GDS) instead
// of self-signed.
func (ca *CA) OPCUAServer(t testing.TB, cn, appURI string, notAfter time.Time) tls.Certificate {
	t.Helper()
	return opcuaServer(t, cn, appURI, notAfter, ca)
}

// opcuaServer is OPCUAServer's certificate, signed by ca or (nil)
// self-signed.
func opcuaServer(t testing.TB, cn, appURI string, notAfter time.Time, ca *CA) tls.Certificate {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(appURI)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial.Add(1)), Subject: pkix.Name{CommonName: cn},
		NotBefore: notBefore(notAfter), NotAfter: notAfter,
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageContentCommitment | x509.KeyUsageKeyEncipherment |
			x509.KeyUsageDataEncipherment | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
		DNSNames:              []string{"localhost"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, URIs: []*url.URL{u},
	}
	if ca == nil {
		return keyPair(issue(t, tmpl, tmpl, &key.PublicKey, key), key) // self-signed
	}
	tmpl.KeyUsage &^= x509.KeyUsageCertSign
	return keyPair(issue(t, tmpl, ca.Cert, &key.PublicKey, ca.Key), key)
}

// issue makes the certificate tmpl describes for the public key pub,
// signed by parent's key (parentKey), and parses it.
func issue(t testing.TB, tmpl, parent *x509.Certificate, pub, parentKey any) *x509.Certificate {
	t.Helper()
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, parentKey)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// keyPair is c with its private key, as TLS takes them.
func keyPair(c *x509.Certificate, key any) tls.Certificate {
	return tls.Certificate{Certificate: [][]byte{c.Raw}, PrivateKey: key, Leaf: c}
}

// Pool is a pool of ca alone.
func (ca *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.Cert)
	return p
}

// WriteCerts writes certs to file as a PEM bundle.
func WriteCerts(t testing.TB, file string, certs ...*x509.Certificate) {
	t.Helper()
	var b []byte
	for _, c := range certs {
		b = append(b, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	if err := os.WriteFile(file, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// WritePair writes c's certificate (PEM) to certFile and its key (PEM,
// PKCS #8, mode 0600) to keyFile.
func WritePair(t testing.TB, c tls.Certificate, certFile, keyFile string) {
	t.Helper()
	WriteCerts(t, certFile, c.Leaf)
	k, err := x509.MarshalPKCS8PrivateKey(c.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: k}), 0o600); err != nil {
		t.Fatal(err)
	}
}

func newKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return key
}

// notBefore is a year before notAfter, or a day ago when that is later.
func notBefore(notAfter time.Time) time.Time {
	nb := notAfter.AddDate(-1, 0, 0)
	if d := time.Now().Add(-48 * time.Hour); nb.After(d) {
		nb = d
	}
	return nb
}
