package agent

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/plantedge/plantedge/agent/agenttest"
	"github.com/plantedge/plantedge/agent/config"
)

// keyOdoo is a JSON-RPC Odoo (17 or 18) that takes the key until refuse is
// set, and shows the bot user's keys with expires as their
// expiration_date (a JSON value: a date string, false; "" refuses the
// read with an AccessError).
type keyOdoo struct {
	version string
	expires func() string
	refuse  atomic.Bool
	logins  atomic.Int64
	reads   atomic.Int64 // reads of the bot user's keys
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
		o.reads.Add(1)
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
			a, _ := keyAgent(t, cfg, o)
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

// A key that worked with Odoo 17 has no expiration date, and never gets
// one: Odoo 18 brought the dates (odoo/odoo#178558), its migration leaves
// the keys made before without, and Odoo takes a key without one for ever
// (expiration_date IS NULL OR expiration_date >= now). So once it worked
// with 17 the key is known not to expire — also after it worked with 18,
// where the dates read need not tell (Odoo did not show them; another of
// the bot user's keys past its date), and across restarts: refused on 18,
// it was revoked or replaced (or the bot user archived), never
// key_expired. Status says the version Odoo answered with.
func TestRefusedKeyMadeBefore18IsNoExpiredKey(t *testing.T) {
	for _, tc := range []struct {
		name    string
		expires func() string
	}{
		{"dates not shown", func() string { return "" }},
		{"another key's date came", func() string {
			return `"` + time.Now().UTC().Add(30*time.Minute).Format("2006-01-02 15:04:05") + `"`
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig(t, oneMQTTMachine)
			o := &keyOdoo{version: "17.0", expires: tc.expires}
			a, _ := keyAgent(t, cfg, o)
			for _, v := range []string{"17.0", "18.0"} { // upgraded while the agent was stopped
				o.version = v
				inBubble(t, a, func(context.Context) {
					time.Sleep(10 * time.Second)
					l := a.fwd.linkSnapshot()
					if l.State != "online" || l.Version != v {
						t.Fatalf("the key works with %s: link %+v", v, l)
					}
					// Nor does it come near an expiry: another key's
					// date is not the agent's key's (no warning of it).
					if len(l.KeyExpires) != 0 {
						t.Errorf("with %s, the key made before 18 is taken to expire at %v", v, l.KeyExpires)
					}
				})
			}
			o.refuse.Store(true) // revoked while the agent was stopped
			var link linkState
			inBubble(t, a, func(context.Context) {
				time.Sleep(10 * time.Second)
				link = a.fwd.linkSnapshot()
			})
			if link.State != "auth_failed" || link.KeyExpired || link.Version != "18.0" {
				t.Fatalf("link %+v: want auth_failed with Odoo 18.0, not key_expired", link)
			}
			if !strings.Contains(link.LastError, "made before Odoo 18") || !strings.Contains(link.LastError, "revoked") {
				t.Errorf("last error %q: want the key made before Odoo 18 (no expiration date), so revoked or replaced", link.LastError)
			}
		})
	}
}

// The bot user unarchived, the technician runs plantedge flush: one login
// is tried now, not at the end of the doubled wait after refused logins
// (minutes), and the log says how it went. A flush a few seconds after a
// refusal waits until forward.auth_backoff has passed since it, so Odoo's
// login cooldown is never met.
func TestFlushTriesARefusedKeyOnceNow(t *testing.T) {
	cfg := testConfig(t, "forward: { backoff_max: 5s }\n"+oneMQTTMachine)
	o := &keyOdoo{version: "17.0", expires: func() string { return "false" }}
	o.refuse.Store(true)
	a, logs := keyAgent(t, cfg, o)
	inBubble(t, a, func(context.Context) {
		// Refused at 0, 1, 3 and 7 minutes: the next at 15.
		time.Sleep(10 * time.Minute)
		before := o.logins.Load()
		a.Flush() // still archived
		time.Sleep(time.Second)
		if n := o.logins.Load() - before; n != 1 {
			t.Errorf("%d logins within a second of a flush, want 1", n)
		}
		if !strings.Contains(logs.String(), "a flush tried the API key again: odoo still refuses it") {
			t.Errorf("the log does not say what the flush's login found:\n%s", logs.String())
		}
		// A flush 10 s after that refusal: not before a minute has passed
		// since it.
		time.Sleep(9 * time.Second)
		before = o.logins.Load()
		a.Flush()
		time.Sleep(40 * time.Second)
		if n := o.logins.Load() - before; n != 0 {
			t.Errorf("%d logins within 50 s of a refused one", n)
		}
		if l := a.fwd.linkSnapshot(); time.Until(l.NextAttempt) > 12*time.Second {
			t.Errorf("after the flush, next attempt in %s, want at a minute after the refusal", time.Until(l.NextAttempt))
		}
		o.refuse.Store(false) // unarchived
		time.Sleep(15 * time.Second)
		if n := o.logins.Load() - before; n != 1 {
			t.Errorf("%d logins a minute after the refusal, with a flush asked, want 1", n)
		}
		if l := a.fwd.linkSnapshot(); l.State != "online" {
			t.Errorf("after the flush's login: link %+v, want online", l)
		}
		if !strings.Contains(logs.String(), "odoo takes the API key again") {
			t.Errorf("the log does not say that the key works again:\n%s", logs.String())
		}
	})
}

// Odoo reported its lockout of this address ("Too many login failures"):
// a flush, however often, waits it out with the doubled waits.
func TestFlushWaitsOutAReportedLockout(t *testing.T) {
	var mu sync.Mutex
	var calls []time.Time
	logins := 0
	lockedOut := lockoutOdoo(&logins, func() {
		mu.Lock()
		calls = append(calls, time.Now())
		mu.Unlock()
	})
	runForwarderLink(t, "5s", lockedOut, 8*time.Minute, 500*time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	// One attempt is a round's calls, a moment apart.
	var attempts []time.Time
	for _, c := range calls {
		if len(attempts) == 0 || c.Sub(attempts[len(attempts)-1]) > time.Second {
			attempts = append(attempts, c)
		}
	}
	want := time.Minute
	for i := 1; i < len(attempts); i++ {
		if g := attempts[i].Sub(attempts[i-1]); g < want {
			t.Errorf("attempt %d came %s after one Odoo refused with its lockout (want >= %s)", i+1, g, want)
		}
		want = min(2*want, 16*time.Minute)
	}
	if len(attempts) < 2 {
		t.Errorf("%d attempts in 8 minutes", len(attempts))
	}
	t.Logf("attempts with flush looping through a lockout: %d, %s", len(attempts), fmt.Sprint(attempts))
}

// keyAgent is an agent of cfg whose Odoo is o (keyOdoo), logging into the
// buffer it returns.
func keyAgent(t *testing.T, cfg *config.Config, o *keyOdoo) (*Agent, *agenttest.SyncBuffer) {
	t.Helper()
	logs := &agenttest.SyncBuffer{}
	a, err := New(cfg, Options{OdooHTTPClient: &http.Client{Transport: &fakeOdoo{answer: o.answer}},
		Logger: slog.New(slog.NewTextHandler(logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	return a, logs
}
