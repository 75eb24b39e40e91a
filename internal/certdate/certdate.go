// Package certdate says when a certificate a TLS handshake refused
// expired: Go's error says "certificate has expired or is not yet valid"
// with two RFC 3339 times, not which, and a technician reads it as either.
package certdate

import (
	"crypto/x509"
	"errors"
	"fmt"
	"time"
)

// Layout is how the agent writes a certificate's dates.
const Layout = "2006-01-02 15:04 UTC"

// Explain is what err says of a certificate refused for its dates ("the
// certificate CN=broker expired on 2026-11-30 08:00 UTC"), or "" when err
// is not that. now is the time of the refusal.
func Explain(err error, now time.Time) string {
	var ce x509.CertificateInvalidError
	if !errors.As(err, &ce) || ce.Reason != x509.Expired || ce.Cert == nil {
		return ""
	}
	if now.Before(ce.Cert.NotBefore) {
		return fmt.Sprintf("the certificate %s is not valid before %s (is this box's clock behind?)", ce.Cert.Subject, ce.Cert.NotBefore.UTC().Format(Layout))
	}
	return fmt.Sprintf("the certificate %s expired on %s", ce.Cert.Subject, ce.Cert.NotAfter.UTC().Format(Layout))
}

// Wrap is err with Explain's words before it, or err itself when they are
// empty.
func Wrap(err error) error {
	if s := Explain(err, time.Now()); s != "" {
		return fmt.Errorf("%s: %w", s, err)
	}
	return err
}
