package connectors_test

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/plantedge/plantedge/connectors"
	"github.com/plantedge/plantedge/internal/certtest"
)

// A server whose certificate expired is refused with Go's "has expired or
// is not yet valid" and two RFC 3339 times: Explain says which, with the
// date; a refusal for another reason is left alone.
func TestExplainCertDate(t *testing.T) {
	ca := certtest.NewCA(t, "Plant CA", certtest.Days(400))
	expired := ca.Issue(t, "broker.plant", certtest.Days(-3))
	ts := httptest.NewUnstartedServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	ts.TLS = &tls.Config{Certificates: []tls.Certificate{expired}}
	ts.Config.ErrorLog = log.New(io.Discard, "", 0) // refused handshakes are the test
	ts.StartTLS()
	defer ts.Close()
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool()}}}
	_, err := hc.Get(ts.URL)
	if err == nil {
		t.Fatal("an expired certificate was taken")
	}
	want := "the certificate CN=broker.plant expired on " + expired.Leaf.NotAfter.UTC().Format(connectors.CertDateLayout)
	if got := connectors.ExplainCertDate(err, time.Now()); got != want {
		t.Errorf("Explain = %q, want %q (err: %v)", got, want, err)
	}
	if w := connectors.WrapCertDate(err); !strings.HasPrefix(w.Error(), want+": ") || !errors.Is(w, err) {
		t.Errorf("Wrap = %v", w)
	}

	// A valid certificate of another CA: not a date.
	ts.TLS.Certificates = []tls.Certificate{certtest.NewCA(t, "Other CA", certtest.Days(400)).Issue(t, "broker.plant", certtest.Days(30))}
	hc.CloseIdleConnections()
	_, err = hc.Get(ts.URL)
	if err == nil {
		t.Fatal("a certificate of another CA was taken")
	}
	if got := connectors.ExplainCertDate(err, time.Now()); got != "" {
		t.Errorf("Explain of %v = %q, want nothing", err, got)
	}
}

// The chain a connection relies on reaches the root of the client's pool
// (a server sends no root): tls.Config.VerifyConnection already has the
// verified chains. With a root renewed under the same key in the pool
// beside the old one, two chains verify and the one that lasts longer
// counts; without verification, what the server presented.
func TestChainInUse(t *testing.T) {
	oldRoot := certtest.NewCA(t, "Plant CA", certtest.Days(10))
	newRoot := oldRoot.Renew(t, certtest.Days(400))
	leaf := oldRoot.Issue(t, "broker.plant", certtest.Days(300))
	ts := httptest.NewUnstartedServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	ts.TLS = &tls.Config{Certificates: []tls.Certificate{leaf}}
	ts.StartTLS()
	defer ts.Close()
	// chainOf is ChainInUse at VerifyConnection of a connection with cfg,
	// and how many chains verified.
	chainOf := func(cfg *tls.Config) (chain []*x509.Certificate, verified int) {
		t.Helper()
		cfg.VerifyConnection = func(cs tls.ConnectionState) error {
			chain, verified = connectors.ChainInUse(cs), len(cs.VerifiedChains)
			return nil
		}
		conn, err := tls.Dial("tcp", ts.Listener.Addr().String(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		conn.Close()
		return chain, verified
	}
	ends := func(chain []*x509.Certificate) []time.Time {
		var out []time.Time
		for _, c := range chain {
			out = append(out, c.NotAfter)
		}
		return out
	}

	chain, n := chainOf(&tls.Config{RootCAs: oldRoot.Pool()})
	if want := []time.Time{leaf.Leaf.NotAfter, oldRoot.Cert.NotAfter}; n != 1 || !slices.EqualFunc(ends(chain), want, time.Time.Equal) {
		t.Errorf("old root alone: %d verified chains, chain ending %v, want 1 ending %v", n, ends(chain), want)
	}
	both := x509.NewCertPool()
	both.AddCert(oldRoot.Cert)
	both.AddCert(newRoot.Cert)
	chain, n = chainOf(&tls.Config{RootCAs: both})
	if want := []time.Time{leaf.Leaf.NotAfter, newRoot.Cert.NotAfter}; n != 2 || !slices.EqualFunc(ends(chain), want, time.Time.Equal) {
		t.Errorf("old and renewed root: %d verified chains, chain ending %v, want 2, the one ending %v", n, ends(chain), want)
	}
	chain, n = chainOf(&tls.Config{InsecureSkipVerify: true}) //nolint:gosec // the unverified case is the test
	if want := []time.Time{leaf.Leaf.NotAfter}; n != 0 || !slices.EqualFunc(ends(chain), want, time.Time.Equal) {
		t.Errorf("not verified: %d verified chains, chain ending %v, want what the server sent, ending %v", n, ends(chain), want)
	}
}
