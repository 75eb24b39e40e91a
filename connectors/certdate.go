package connectors

// What a TLS handshake refused for a certificate's dates says: Go's error
// says "certificate has expired or is not yet valid" with two RFC 3339
// times, not which, and a technician reads it as either. Here for the
// connectors, Odoo's client and the agent alike.

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"time"
)

// CertDateLayout is how the agent writes a certificate's dates.
const CertDateLayout = "2006-01-02 15:04 UTC"

// ExplainCertDate is what err says of a certificate refused for its dates ("the
// certificate CN=broker expired on 2026-11-30 08:00 UTC"), or "" when err
// is not that. now is the time of the refusal.
func ExplainCertDate(err error, now time.Time) string {
	var ce x509.CertificateInvalidError
	if !errors.As(err, &ce) || ce.Reason != x509.Expired || ce.Cert == nil {
		return ""
	}
	if now.Before(ce.Cert.NotBefore) {
		return fmt.Sprintf("the certificate %s is not valid before %s (is this box's clock behind?)", ce.Cert.Subject, ce.Cert.NotBefore.UTC().Format(CertDateLayout))
	}
	return fmt.Sprintf("the certificate %s expired on %s", ce.Cert.Subject, ce.Cert.NotAfter.UTC().Format(CertDateLayout))
}

// WrapCertDate is err with ExplainCertDate's words before it, or err itself when they are
// empty.
func WrapCertDate(err error) error {
	if s := ExplainCertDate(err, time.Now()); s != "" {
		return fmt.Errorf("%s: %w", s, err)
	}
	return err
}

// ChainInUse is the certificate chain a TLS connection of cs relies on,
// for the agent to show when it expires (by its soonest certificate): of
// cs.VerifiedChains (each from the peer's certificate to the trust anchor
// of the CA file or the system's roots, which the peer usually does not
// send), the one whose soonest expiry is latest — the connection verifies
// while any one of them is valid, as with a root renewed under the same
// key; without verification (InsecureSkipVerify), what the peer presented.
// crypto/tls sets VerifiedChains before it calls tls.Config.VerifyConnection.
func ChainInUse(cs tls.ConnectionState) []*x509.Certificate {
	var best []*x509.Certificate
	var bestEnd time.Time
	for _, chain := range cs.VerifiedChains {
		var end time.Time
		for i, c := range chain {
			if i == 0 || c.NotAfter.Before(end) {
				end = c.NotAfter
			}
		}
		if len(chain) > 0 && (best == nil || end.After(bestEnd)) {
			best, bestEnd = chain, end
		}
	}
	if best == nil {
		return cs.PeerCertificates
	}
	return best
}

// NoteChainInUse is a tls.Config.VerifyConnection that hands each
// connection's ChainInUse to note (the MQTT connector's and Odoo's client's
// PeerCertificates) and refuses nothing.
func NoteChainInUse(note func([]*x509.Certificate)) func(tls.ConnectionState) error {
	return func(cs tls.ConnectionState) error {
		note(ChainInUse(cs))
		return nil
	}
}
