package odoo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestClassifyJSONRPCName(t *testing.T) {
	cases := []struct {
		name string
		want ErrorClass
	}{
		{"psycopg2.errors.SerializationFailure", Transient},
		{"psycopg2.errors.LockNotAvailable", Transient},
		{"psycopg2.errors.DeadlockDetected", Transient},
		{"odoo.tools.lock.LockError", Transient},
		{"odoo.exceptions.ConcurrencyError", Transient}, // 18+: a concurrent update that outlived the server-side retries
		// Odoo up, its database away: 17/18 answer these over JSON-RPC
		// with HTTP 200 (the probe: a PostgreSQL restart dead-lettered
		// counts and a stop).
		{"psycopg2.OperationalError", Transient},
		{"psycopg2.InterfaceError", Transient},
		{"psycopg2.pool.PoolError", Transient},
		{"psycopg2.errors.ReadOnlySqlTransaction", Transient},
		{"psycopg2.errors.TooManyConnections", Transient},
		{"werkzeug.exceptions.ServiceUnavailable", Transient},
		// Can be the request's own, for good: retried, they would hold
		// every machine's records (the review).
		{"psycopg2.errors.QueryCanceled", Permanent},
		{"psycopg2.errors.InFailedSqlTransaction", Permanent},
		{"builtins.MemoryError", Permanent},
		// The row's fault, not the database's.
		{"psycopg2.errors.UniqueViolation", Permanent},
		{"psycopg2.errors.NotNullViolation", Permanent},
		{"psycopg2.errors.UndefinedColumn", Permanent},
		{"odoo.exceptions.AccessDenied", Auth},
		{"odoo.exceptions.AccessError", Permanent},
		{"odoo.exceptions.ValidationError", Permanent},
		{"odoo.exceptions.UserError", Permanent},
		{"odoo.exceptions.MissingError", Permanent},
		{"builtins.AttributeError", Permanent},
		{"builtins.KeyError", Permanent},
		{"", Permanent},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := classifyName(tc.name); got != tc.want {
				t.Errorf("classifyName(%q) = %v, want %v", tc.name, got, tc.want)
			}
		})
	}
}

func TestClassifyStatus(t *testing.T) {
	cases := []struct {
		status int
		name   string
		want   ErrorClass
	}{
		{400, "werkzeug.exceptions.BadRequest", Permanent},
		{401, "werkzeug.exceptions.Unauthorized", Auth},
		{401, "", Auth},
		{403, "odoo.exceptions.AccessError", Permanent},
		{403, "odoo.exceptions.AccessDenied", Auth},
		{404, "odoo.exceptions.MissingError", Permanent},
		{409, "", Transient},
		{422, "odoo.exceptions.ValidationError", Permanent},
		{429, "", Transient},
		// JSON-2 answers an exception that is not a UserError with 500 and
		// its name: the call's own errors are permanent (the fidelity
		// probe: an invalid field retried for good on 19); the server's
		// passing troubles stay transient (the review).
		{500, "builtins.ValueError", Permanent},
		{500, "builtins.TypeError", Permanent},
		{500, "odoo.exceptions.ValidationError", Permanent},
		{500, "odoo.exceptions.ConcurrencyError", Transient},
		{500, "builtins.RuntimeError", Transient},
		{500, "builtins.MemoryError", Transient},
		{500, "builtins.KeyError", Transient},
		{500, "psycopg2.errors.UndefinedColumn", Transient},
		{500, "psycopg2.OperationalError", Transient},
		{500, "psycopg2.errors.SerializationFailure", Transient},
		{500, "werkzeug.exceptions.InternalServerError", Transient},
		{500, "", Transient},
		{502, "", Transient},
		{503, "", Transient},
		{504, "", Transient},
	}
	for _, tc := range cases {
		t.Run(fmt.Sprintf("%d-%s", tc.status, tc.name), func(t *testing.T) {
			if got := classifyStatus(tc.status, tc.name); got != tc.want {
				t.Errorf("classifyStatus(%d, %q) = %v, want %v", tc.status, tc.name, got, tc.want)
			}
		})
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	cases := []struct {
		in   string
		want time.Duration
	}{
		{"", 0},
		{"5", 5 * time.Second},
		{" 120 ", 2 * time.Minute},
		{"-3", 0},
		{now.Add(90 * time.Second).Format(http.TimeFormat), 90 * time.Second},
		{now.Add(-time.Minute).Format(http.TimeFormat), 0},
		{"soon", 0},
		// Too large for a time.Duration: the longest wait, not a
		// wrapped-around one (18446744074 s wrapped to 0.29 s; the
		// fuzz target FuzzConnectAnswer).
		{"9223372036", 9223372036 * time.Second},
		{"9223372037", time.Duration(math.MaxInt64)},
		{"18446744074", time.Duration(math.MaxInt64)},
		{"99999999999999999999", time.Duration(math.MaxInt64)},
	}
	for _, tc := range cases {
		if got := parseRetryAfter(tc.in, now); got != tc.want {
			t.Errorf("parseRetryAfter(%q) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

func TestErrorPredicates(t *testing.T) {
	missing := &Error{Op: "read", Name: "odoo.exceptions.MissingError", Class: Permanent}
	if !missing.Missing() || !missing.Permanent() || missing.Temporary() || !IsPermanent(fmt.Errorf("wrap: %w", missing)) {
		t.Errorf("MissingError predicates wrong")
	}
	notFound := &Error{Op: "workcenter by code", Class: Permanent, Err: ErrNotFound}
	if !notFound.Missing() || !errors.Is(notFound, ErrNotFound) {
		t.Errorf("ErrNotFound not recognised")
	}
	auth := &Error{Op: "authenticate", Name: "odoo.exceptions.AccessDenied", Message: "Too many login failures, please wait a bit before trying again.", Class: Auth}
	if !auth.Auth() || !IsAuth(auth) || !auth.LoginCooldown() || auth.Expired() {
		t.Errorf("auth predicates wrong")
	}
	if !IsTemporary(context.DeadlineExceeded) || !IsTemporary(&net.OpError{Op: "dial", Err: errors.New("refused")}) || IsTemporary(errors.New("x")) || IsTemporary(nil) {
		t.Errorf("IsTemporary on plain errors wrong")
	}
	for _, busy := range []*Error{
		{Name: "psycopg2.errors.SerializationFailure", Status: 200, Class: Transient},
		{Name: "odoo.exceptions.ConcurrencyError", Status: 200, Class: Transient},
		{Status: http.StatusConflict, Class: Transient},
	} {
		if !busy.Busy() {
			t.Errorf("%+v: not busy", busy)
		}
	}
	for _, away := range []*Error{
		{Status: http.StatusBadGateway, Class: Transient},
		{Op: "read", Class: Transient, Err: io.EOF},
		{Name: "odoo.exceptions.UserError", Status: 200, Class: Permanent},
	} {
		if away.Busy() {
			t.Errorf("%+v: busy", away)
		}
	}
	got := (&Error{Op: "mrp.workorder.write", Name: "odoo.exceptions.UserError", Message: "nope", Status: 422, Err: io.EOF}).Error()
	if got != "odoo mrp.workorder.write: odoo.exceptions.UserError: nope (http 422): EOF" {
		t.Errorf("Error() = %q", got)
	}
}

// A 404 page (a proxy routing elsewhere for a while) on an object call is
// no missing record: retried, not "work order missing; re-resolving" once
// a second with status showing nothing (the Odoo probe saw 50 of those).
// Odoo's own 404 is JSON and names the exception.
func TestNotFoundPageIsNoMissingRecord(t *testing.T) {
	c := &Client{}
	resp := func() *http.Response { return &http.Response{StatusCode: http.StatusNotFound, Header: http.Header{}} }
	page := c.statusError("mrp.workorder.write", resp(), []byte("<html><body><h1>404 Not Found</h1>nginx</body></html>"))
	if page.Missing() || !page.Temporary() || !strings.Contains(page.Message, "a proxy in front of Odoo") {
		t.Errorf("404 page: missing %v temporary %v %q", page.Missing(), page.Temporary(), page.Message)
	}
	if InDoubt(page) {
		t.Error("a 404 page in doubt")
	}
	gaveUp := c.statusError("mrp.workorder.write", &http.Response{StatusCode: http.StatusGatewayTimeout, Header: http.Header{}}, []byte("<html>504 Gateway Time-out</html>"))
	if !InDoubt(gaveUp) || !gaveUp.Temporary() {
		t.Errorf("a proxy's 504: in doubt %v, temporary %v (Odoo may still run the call)", InDoubt(gaveUp), gaveUp.Temporary())
	}
	odoo := c.statusError("mrp.workorder.write", resp(), []byte(`{"name":"odoo.exceptions.MissingError","message":"Record does not exist"}`))
	if !odoo.Missing() || !odoo.Permanent() {
		t.Errorf("Odoo's 404: missing %v permanent %v", odoo.Missing(), odoo.Permanent())
	}
}

// Cloudflare answers 524 when it reached Odoo and sent the request but had
// no answer within its timeout (100 s): Odoo is still running the call, as
// behind a proxy's 504 — in doubt. A 522 (no connection to Odoo was made)
// is not.
func TestCDNTimeoutPageIsInDoubt(t *testing.T) {
	c := &Client{}
	page := func(status int) *Error {
		return c.statusError("mrp.workorder.write", &http.Response{StatusCode: status, Header: http.Header{}},
			[]byte(fmt.Sprintf("<html><title>%d</title>cloudflare</html>", status)))
	}
	if e := page(524); !InDoubt(e) || !e.Temporary() {
		t.Errorf("a CDN's 524: in doubt %v, temporary %v (Odoo may still run the call)", InDoubt(e), e.Temporary())
	}
	if e := page(520); !InDoubt(e) || !e.Temporary() {
		t.Errorf("a CDN's 520: in doubt %v, temporary %v (the request sent, the connection reset: Odoo may still run the call)", InDoubt(e), e.Temporary())
	}
	if e := page(522); InDoubt(e) || !e.Temporary() {
		t.Errorf("a CDN's 522: in doubt %v, temporary %v (nothing reached Odoo)", InDoubt(e), e.Temporary())
	}
}

// A 403 page comes from something in front of Odoo (a maintenance deny,
// an address allow-list, a web firewall): Odoo's own 403 is JSON, and
// JSON-RPC answers 200. Retried, not dead-lettered (the probe: a stop was
// dead-lettered during a 3 s block).
func TestForbiddenPageIsNoAccessError(t *testing.T) {
	c := &Client{}
	resp := &http.Response{StatusCode: http.StatusForbidden, Header: http.Header{}}
	page := c.statusError("mrp.workorder.write", resp, []byte("<html><head><title>403 Forbidden</title></head><body>nginx</body></html>"))
	if !page.Temporary() || page.Permanent() || !strings.Contains(page.Message, "something in front of Odoo") {
		t.Errorf("403 page: temporary %v permanent %v %q", page.Temporary(), page.Permanent(), page.Message)
	}
	odoo := c.statusError("mrp.workorder.write", resp, []byte(`{"name":"odoo.exceptions.AccessError","message":"You are not allowed to modify 'Work Order' (mrp.workorder) records."}`))
	if !odoo.Permanent() {
		t.Errorf("Odoo's 403 (an AccessError): class %v, want permanent", odoo.Class)
	}
	// A gateway's or firewall's JSON is not Odoo's either (the review: an
	// API gateway's {"message":"Forbidden"} was dead-lettered); an early
	// 19 build's bare JSON string over JSON-2 is.
	json2, rpc := httptest.NewRequest("POST", "https://erp/json/2/mrp.workorder/write", nil), httptest.NewRequest("POST", "https://erp/jsonrpc", nil)
	for _, tc := range []struct {
		req       *http.Request
		body      string
		permanent bool
	}{
		{json2, `{"message":"Forbidden"}`, false},
		{json2, `{"error":"access denied by WAF rule 1234"}`, false},
		{json2, `""`, false},
		{json2, `"You are not allowed to modify 'Work Order' (mrp.workorder) records."`, true},
		{json2, `{"name":"odoo.exceptions.AccessError","message":"You are not allowed"}`, true},
		{rpc, `{"name":"odoo.exceptions.AccessError","message":"You are not allowed"}`, false}, // JSON-RPC answers 200
		{rpc, `"You are not allowed"`, false},
	} {
		r := &http.Response{StatusCode: http.StatusForbidden, Header: http.Header{}, Request: tc.req}
		if e := c.statusError("mrp.workorder.write", r, []byte(tc.body)); e.Permanent() != tc.permanent {
			t.Errorf("403 %s to %s: permanent %v, want %v", tc.body, tc.req.URL.Path, e.Permanent(), tc.permanent)
		}
	}
}

// Real Odoo's load answers a database failure as a row message (HTTP 200,
// ids false, rolled back): one of the database is retried, one of the row
// is refused for good (the probe: a serialization failure in a load
// dead-lettered a downtime line).
func TestLoadFailure(t *testing.T) {
	cases := []struct {
		msgs        []string
		class       ErrorClass
		busy, unava bool
	}{
		{[]string{"could not serialize access due to concurrent update\n"}, Transient, true, false},
		{[]string{"deadlock detected\nDETAIL:  Process 7 waits for ShareLock on transaction 9"}, Transient, true, false},
		{[]string{`could not obtain lock on row in relation "mrp_workcenter"`}, Transient, true, false},
		{[]string{"server closed the connection unexpectedly\n\tThis probably means the server terminated abnormally"}, Transient, false, true},
		{[]string{"No matching record found for name 'Jam' in field 'Loss Reason'"}, Permanent, false, false},
		{[]string{"null value in column \"loss_id\" violates not-null constraint", "could not serialize access due to concurrent update"}, Transient, true, false},
		// The row's own, for good (the review: these were taken for the
		// database away, and one such row held every machine's records).
		{[]string{"Unknown database error: 'Downtime may not overlap a planned maintenance\nCONTEXT:  PL/pgSQL function mrp_check_overlap() line 5 at RAISE\n'"}, Permanent, false, false},
		{[]string{"The loss reason 'Connection to server lost' is archived"}, Permanent, false, false},
		{[]string{"Scrap of 'Terminating connection block TB-12' requires a quality check"}, Permanent, false, false},
		// A busy database's words inside the row's own message (a loss
		// reason named so) are the row's too: retried, that row would hold
		// every machine's lines for good.
		{[]string{"The loss reason 'Deadlock detected at the feeder' is archived"}, Permanent, false, false},
		{[]string{"current transaction is aborted, commands ignored until end of transaction block"}, Permanent, false, false},
	}
	for _, tc := range cases {
		text := strings.Join(tc.msgs, "; ")
		e := loadFailure("mrp.workcenter.productivity.load", text, tc.msgs)
		if e.Class != tc.class || e.Busy() != tc.busy || e.Unavailable() != tc.unava || e.Message != text {
			t.Errorf("%q: class %v busy %v unavailable %v, want %v %v %v", tc.msgs, e.Class, e.Busy(), e.Unavailable(), tc.class, tc.busy, tc.unava)
		}
	}
}

func TestMayHaveCommitted(t *testing.T) {
	if mayHaveCommitted(&net.OpError{Op: "dial", Err: errors.New("connection refused")}) {
		t.Error("a failed dial sent nothing")
	}
	if mayHaveCommitted(&net.DNSError{Err: "no such host", Name: "odoo"}) {
		t.Error("a failed lookup sent nothing")
	}
	for _, err := range []error{io.EOF, io.ErrUnexpectedEOF, context.DeadlineExceeded, &net.OpError{Op: "read", Err: errors.New("reset")}} {
		if !mayHaveCommitted(err) {
			t.Errorf("%v: the request may have been processed", err)
		}
	}
}

// A request sent whose connection was then reset or closed (a proxy, a NAT
// forgetting the flow) is in doubt like one that timed out: Odoo runs it to
// its end and may commit it later (the self-probe: a write of 8 committed
// over the 12 written after it). One never sent (a failed dial) is not.
func TestResetAfterSendIsInDoubt(t *testing.T) {
	c := &Client{}
	reset := c.transportError("mrp.workorder.write", &net.OpError{Op: "read", Net: "tcp", Err: syscall.ECONNRESET})
	if !InDoubt(reset) {
		t.Errorf("a reset after the request was sent: not in doubt (%v)", reset)
	}
	if eof := c.transportError("mrp.workorder.write", io.ErrUnexpectedEOF); !InDoubt(eof) {
		t.Errorf("a connection closed before the answer: not in doubt (%v)", eof)
	}
	if refused := c.transportError("mrp.workorder.write", &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}); InDoubt(refused) {
		t.Errorf("a refused connection (nothing sent): in doubt (%v)", refused)
	}
}

func TestJSON2Named(t *testing.T) {
	p, err := json2Named("write", []any{[]int64{3}, map[string]any{"qty_produced": 1.0}}, nil)
	if err != nil || fmt.Sprint(p["ids"]) != "[3]" || p["vals"] == nil {
		t.Errorf("write: %v %v", p, err)
	}
	p, err = json2Named("search_read", []any{[]any{}}, map[string]any{"limit": 2})
	if err != nil || p["domain"] == nil || p["limit"] != 2 || p["ids"] != nil {
		t.Errorf("search_read: %v %v", p, err)
	}
	p, err = json2Named("button_start", []any{[]int64{5}}, nil)
	if err != nil || fmt.Sprint(p["ids"]) != "[5]" {
		t.Errorf("action method: %v %v", p, err)
	}
	if _, err := json2Named("read", []any{[]int64{1}, []string{"a"}, "extra"}, nil); err == nil || !strings.Contains(err.Error(), "positional") {
		t.Errorf("too many args: %v", err)
	}
	p, _ = json2Named("create", []any{map[string]any{"name": "x"}}, nil)
	if _, ok := p["vals_list"].([]any); !ok {
		t.Errorf("create with one dict becomes vals_list: %v", p)
	}
}

func TestParseMajor(t *testing.T) {
	for in, want := range map[string]int{"17.0": 17, "19.0+e": 19, "saas~18.3": 18, "": 0, "x": 0} {
		if got := parseMajor(in); got != want {
			t.Errorf("parseMajor(%q) = %d, want %d", in, got, want)
		}
	}
}

func TestNewerThanKnown(t *testing.T) {
	for v, want := range map[string]bool{"17.0": false, "18.0+e": false, "19.0": false, "19.0+e": false, "saas~18.3": false,
		"saas~19.1": true, "saas~19.2+e": true, "20.0": true} {
		if got := newerThanKnown(v); got != want {
			t.Errorf("newerThanKnown(%q) = %v, want %v", v, got, want)
		}
	}
}

// TestLoginCooldownByExceptionNotWords: the lockout is an AccessDenied
// whose message is not AccessDenied's untranslated default, in whatever
// language Odoo wrote it; a refused key and the client's own refused login
// are not.
func TestLoginCooldownByExceptionNotWords(t *testing.T) {
	const denied = "odoo.exceptions.AccessDenied"
	for _, c := range []struct {
		e    *Error
		want bool
	}{
		{&Error{Op: "mrp.workorder.read", Name: denied, Message: "Too many login failures, please wait a bit before trying again.", Class: Auth}, true},
		{&Error{Op: "mrp.workorder.read", Name: denied, Message: "Trop d'échecs de connexion, veuillez patienter un peu avant de réessayer.", Class: Auth}, true},
		{&Error{Op: "mrp.workorder.read", Name: denied, Message: "Access Denied", Class: Auth}, false},
		{&Error{Op: "authenticate", Name: denied, Message: `login "bot" refused for database "odoo"`, Class: Auth, loginFalse: true}, false},
		{&Error{Op: "mrp.workorder.read", Name: "werkzeug.exceptions.Unauthorized", Message: "Invalid apikey", Status: 401, Class: Auth}, false},
		{&Error{Op: "mrp.workorder.read", Name: "odoo.exceptions.UserError", Message: "Too many login failures", Class: Permanent}, false},
	} {
		if got := c.e.LoginCooldown(); got != c.want {
			t.Errorf("%v: LoginCooldown %v, want %v", c.e, got, c.want)
		}
	}
}

// A LoginCooldown without Odoo's English words may be an add-on's own
// AccessDenied: the note quotes it rather than blame failed logins that
// never happened (review5 F3).
func TestLockoutNote(t *testing.T) {
	odooWords := &Error{Name: "odoo.exceptions.AccessDenied", Message: "Too many login failures, please wait a bit before trying again."}
	addOn := &Error{Name: "odoo.exceptions.AccessDenied", Message: "Adresse IP non autorisée"}
	if !odooWords.LoginCooldown() || !addOn.LoginCooldown() {
		t.Fatal("not taken as a lockout")
	}
	if n := odooWords.LockoutNote(); !strings.Contains(n, "too many failed logins (from this agent") {
		t.Errorf("Odoo's lockout: %q", n)
	}
	if n := addOn.LockoutNote(); !strings.Contains(n, `"Adresse IP non autorisée"`) || strings.Contains(n, "from this agent") {
		t.Errorf("an add-on's AccessDenied: %q", n)
	}
}

// A page in front of Odoo (nginx's 502 when Odoo's worker was killed, a
// CDN's timeout page) is said by its title, not as its markup: status's
// drain line and last_error quoted "<html>\r\n<head><title>502 Bad
// Gateway</title></head>\r\n<body>…" (review45b). JSON and plain text stay
// as they are.
func TestPageSaidByItsTitle(t *testing.T) {
	c := &Client{}
	for _, tc := range []struct {
		status     int
		body, want string
	}{
		{502, "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx/1.22.1</center>\r\n</body>\r\n</html>\r\n",
			"502 Bad Gateway (an HTML page)"},
		{524, "<!DOCTYPE html>\n<html><head><TITLE>\n  erp.example.com | 524: A timeout occurred\n</TITLE></head><body>The origin web server timed out</body></html>",
			"erp.example.com | 524: A timeout occurred (an HTML page)"},
		{503, "<html><body><h1>Down for   maintenance</h1>\n<p>Back at 14:00</p></body></html>", "Down for maintenance Back at 14:00 (an HTML page)"},
		{503, "upstream connect error", "upstream connect error"},
	} {
		e := c.statusError("mrp.workorder.write", &http.Response{StatusCode: tc.status, Header: http.Header{}}, []byte(tc.body))
		if e.Message != tc.want {
			t.Errorf("%d %q: message %q, want %q", tc.status, tc.body, e.Message, tc.want)
		}
	}
}
