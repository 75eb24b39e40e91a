package agent_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// gaveUpProxy stands in front of Odoo like a CDN or a load balancer with a
// shorter timeout than the agent's: it sends each request on, and when Odoo
// has not answered within wait it answers status with a page of its own —
// while Odoo goes on with the request, and commits it, answering no one.
func gaveUpProxy(t *testing.T, target string, wait time.Duration, status int) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		req, err := http.NewRequestWithContext(context.WithoutCancel(r.Context()), r.Method, target+r.URL.RequestURI(), bytes.NewReader(body))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		req.Header = r.Header.Clone()
		type answer struct {
			resp *http.Response
			body []byte
			err  error
		}
		done := make(chan answer, 1)
		go func() {
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				done <- answer{err: err}
				return
			}
			b, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			done <- answer{resp, b, err}
		}()
		select {
		case a := <-done:
			if a.err != nil {
				http.Error(w, a.err.Error(), http.StatusBadGateway)
				return
			}
			for k, v := range a.resp.Header {
				w.Header()[k] = v
			}
			w.WriteHeader(a.resp.StatusCode)
			_, _ = w.Write(a.body)
		case <-time.After(wait):
			w.Header().Set("Content-Type", "text/html")
			w.WriteHeader(status)
			fmt.Fprintf(w, "<html><title>%d: A timeout occurred</title><body>The origin web server timed out responding to this request.</body></html>", status)
		}
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

// A proxy in front of Odoo that gives up on a quantity write before Odoo
// has committed it answers with a timeout page of its own: nginx, HAProxy
// or an AWS load balancer a 504, Cloudflare a 524 ("the connection to the
// origin web server was made, but the origin web server timed out before
// responding"), and Cloudflare a 520 when that connection, the request
// sent, was reset or closed without an answer (a reset the agent sees
// itself is in doubt too). Odoo still runs the write and commits it late; a write the
// agent sends meanwhile (12) would be overwritten by it (8).
func TestProxyTimeoutPageLeavesTheWriteInDoubt(t *testing.T) {
	for _, status := range []int{http.StatusGatewayTimeout, 524, 520} {
		t.Run(fmt.Sprint(status), func(t *testing.T) {
			t.Parallel()
			p := newPlant(t, plantOptions{machines: []string{"press-1"}})
			p.editConfig(p.odoo.URL(), gaveUpProxy(t, p.odoo.URL(), time.Second, status))
			lateCommitOverNewer(t, p, func() {
				time.Sleep(1200 * time.Millisecond) // the proxy has answered after 1 s
			})
		})
	}
}

// A scrap validation a proxy in front of Odoo gave up on (504, 524, or
// Cloudflare's 520 for a connection closed after the request went out)
// while Odoo still runs it is in doubt like one the agent timed out
// itself: not validated again before Odoo's request limit has passed, so
// one stock move, not two. (The quantity write of the test above is one
// write path; this is the scrap's.)
func TestProxyTimeoutPageLeavesTheScrapValidationInDoubt(t *testing.T) {
	for _, status := range []int{http.StatusGatewayTimeout, 524, 520} {
		t.Run(fmt.Sprint(status), func(t *testing.T) {
			t.Parallel()
			p := newPlant(t, plantOptions{machines: []string{"press-1"}})
			p.requestLimit("8s")
			p.editConfig(p.odoo.URL(), gaveUpProxy(t, p.odoo.URL(), time.Second, status))
			_, ran := p.holdFirst("stock.scrap", "action_validate", 4*time.Second)
			ra := p.startAgent()
			p.produce(p.machines[0], 0, 3)
			waitClosed(t, ran, "the held validation")
			p.wantOneScrapBooking(ra, 15*time.Second)
		})
	}
}
