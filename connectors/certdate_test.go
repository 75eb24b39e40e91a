package connectors_test

import (
	"crypto/tls"
	"errors"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
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
