package connectors

// What a TLS handshake refused for a certificate's dates says: Go's error
// says "certificate has expired or is not yet valid" with two RFC 3339
// times, not which, and a technician reads it as either. Here for the
// connectors, Odoo's client and the agent alike.

import (
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
