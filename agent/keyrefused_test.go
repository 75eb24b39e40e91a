package agent

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// lockedLog is a log sink safe for the forwarder's goroutine and the test.
type lockedLog struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// keyOdoo is a JSON-RPC Odoo (17 or 18) that takes the key until refuse is
// set, and shows the bot user's keys with expires as their
// expiration_date (a JSON value: a date string, false; "" refuses the
// read with an AccessError).
type keyOdoo struct {
	version string
	expires func() string
	refuse  atomic.Bool
	logins  atomic.Int64
}

func (o *keyOdoo) answer(r *http.Request) (*http.Response, error) {
	if r.URL.Path == "/web/version" {
		return respond(404, "not found")
	}
	b, _ := io.ReadAll(r.Body)
	body := string(b)
	denied := `{"jsonrpc":"2.0","id":1,"error":{"code":200,"message":"Odoo Server Error","data":{"name":"odoo.exceptions.AccessDenied","message":"Access Denied","arguments":[],"context":{},"debug":""}}}`
	switch {
	case strings.Contains(body, `"authenticate"`):
		o.logins.Add(1)
		if o.refuse.Load() {
			return respond(200, `{"jsonrpc":"2.0","id":1,"result":false}`)
		}
		return respond(200, `{"jsonrpc":"2.0","id":1,"result":7}`)
	case strings.Contains(body, `"execute_kw"`) && o.refuse.Load():
		return respond(200, denied)
	case strings.Contains(body, `"res.users.apikeys"`):
		e := o.expires()
		if e == "" {
			return respond(200, `{"jsonrpc":"2.0","id":1,"error":{"code":200,"message":"Odoo Server Error","data":{"name":"odoo.exceptions.AccessError","message":"You are not allowed to access 'Users API Keys' (res.users.apikeys) records.","arguments":[],"context":{},"debug":""}}}`)
		}
		return respond(200, `{"jsonrpc":"2.0","id":1,"result":[{"id":3,"expiration_date":`+e+`}]}`)
	case strings.Contains(body, `"version"`):
		return respond(200, `{"jsonrpc":"2.0","id":1,"result":{"server_version":"`+o.version+`"}}`)
	}
	return respond(200, `{"jsonrpc":"2.0","id":1,"result":[]}`)
}

// key_expired is an alerting field: true only when the refused key most
// likely expired. Odoo answers an expired key, a revoked one, any key of an
// archived bot user and (JSON-RPC) a renamed login alike; what tells
// expiry from the others is when the bot user's keys expire, which the
// agent reads while its key works (Odoo 18+), and Odoo 17's keys have
// none. The key works, the agent stops; the key is refused at the next
// start (the bot user archived meanwhile, or the key past its date).
func TestRefusedKeyIsExpiredOnlyWhenItsDateCame(t *testing.T) {
	day := func(d time.Duration) func() string {
		return func() string { return `"` + time.Now().UTC().Add(d).Format("2006-01-02 15:04:05") + `"` }
	}
	for _, tc := range []struct {
		name, version string
		expires       func() string
		want          bool
		why           string
	}{
		{"17: keys do not expire", "17.0", func() string { return "false" }, false, "Odoo 17's keys do not expire"},
		{"18: the key good for days", "18.0", day(9 * 24 * time.Hour), false, "the bot user's keys expire from 2000-01-10"},
		{"18: a key without a date", "18.0", func() string { return "false" }, false, "the bot user's keys have no expiration date"},
		{"18: the key's date came", "18.0", day(30 * time.Minute), true, ""},
		{"18: dates not shown", "18.0", func() string { return "" }, true, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig(t, oneMQTTMachine)
			o := &keyOdoo{version: tc.version, expires: tc.expires}
			a, err := New(cfg, Options{OdooHTTPClient: &http.Client{Transport: &fakeOdoo{answer: o.answer}}})
			if err != nil {
				t.Fatal(err)
			}
			inBubble(t, a, func(context.Context) {
				time.Sleep(10 * time.Second)
				if l := a.fwd.linkSnapshot(); l.State != "online" {
					t.Fatalf("the key works: link %+v", l)
				}
			})
			o.refuse.Store(true) // archived, or past its date, while the agent was stopped
			var link linkState
			inBubble(t, a, func(context.Context) {
				time.Sleep(10 * time.Second)
				link = a.fwd.linkSnapshot()
			})
			if link.State != "auth_failed" || link.KeyExpired != tc.want {
				t.Fatalf("link %+v: want auth_failed, key_expired %v", link, tc.want)
			}
			if !tc.want && (!strings.Contains(link.LastError, "the bot user archived") || !strings.Contains(link.LastError, "not expired: "+tc.why)) {
				t.Errorf("last error %q: want the bot user archived named, and why not expired (%s)", link.LastError, tc.why)
			}
			if tc.want && !strings.Contains(link.LastError, "most likely expired") {
				t.Errorf("last error %q: want most likely expired", link.LastError)
			}
		})
	}
}
