package odoo

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

// ErrorClass says what a caller should do with a failed call.
type ErrorClass int

// Error classes. NotFound is Permanent with Missing() true.
const (
	// Transient failures may succeed when retried (network, timeouts,
	// 502/503/504/429, JSON-2 409/500, serialization and lock failures).
	Transient ErrorClass = iota + 1
	// Permanent failures will fail again unchanged: dead-letter and alert.
	Permanent
	// Auth failures mean the login or API key is refused; back off hard:
	// Odoo locks an address out after 10 failed logins (the default of
	// base.login_cooldown_after; 5 where that parameter was deleted).
	Auth
)

// String names the class.
func (c ErrorClass) String() string {
	switch c {
	case Transient:
		return "transient"
	case Permanent:
		return "permanent"
	case Auth:
		return "auth"
	}
	return "unknown"
}

// ErrNotFound is wrapped by lookups that matched no record.
var ErrNotFound = errors.New("not found")

// ErrAmbiguous is wrapped by lookups that matched more than one record.
var ErrAmbiguous = errors.New("ambiguous")

// Error is a failed Odoo call, classified for retry decisions.
type Error struct {
	Op         string        // what the client was doing, e.g. "mrp.workorder.write"
	Name       string        // Odoo exception name, e.g. "odoo.exceptions.ValidationError"
	Message    string        // server message (API key redacted)
	Status     int           // HTTP status, 0 when no response arrived
	RetryAfter time.Duration // from the Retry-After header, 0 when absent
	Class      ErrorClass
	Err        error // underlying cause (network error, sentinel), may be nil

	timedOut bool // the request may have reached Odoo and committed
	timeout  bool // no answer within the call's timeout
	expired  bool // the key was accepted before and is refused now
	busy     bool // a load's row message that is a concurrency failure (loadFailure)
	away     bool // a load's row message that is its database away (loadFailure)
	// loginFalse: the client's own AccessDenied for an authenticate that
	// answered false (a wrong key and a lockout alike).
	loginFalse bool
	// db: what Odoo serving the call without the database odoo.database
	// names was found to mean (dbCause).
	db dbCause
	// page: a JSON-2 call's 404 page, as said (pageText); noDBPage: it is
	// Odoo's NOT_FOUND_NODB; said: what Odoo answered, as the message ends
	// (noDatabase).
	page     string
	noDBPage bool
	said     string
	// werkzeugPage: the page is werkzeug's own 404 (werkzeugNotFoundPage).
	werkzeugPage bool
	// tooLarge: a 413 of something in front of Odoo (frontRefusal).
	tooLarge bool
	// unfound: the columns of a load whose database id Odoo's search did
	// not find (MissingReference).
	unfound []string
}

// dbCause is what Odoo serving a call without the database odoo.database
// names was found to mean (noDatabase, diagnose): one at a time.
type dbCause uint8

const (
	_ dbCause = iota // the zero value: none of them
	// dbMissing: no database by that name for this Odoo (NoDatabase).
	dbMissing
	// dbMissingOrPGDown: the same, or its PostgreSQL not reachable; Odoo's
	// answers could not tell (NoDatabase, MaybePostgresDown).
	dbMissingOrPGDown
	// dbAway: a database Odoo served before, or one it cannot open now:
	// an outage (Unavailable).
	dbAway
	// dbPGDown: Odoo said it cannot reach its PostgreSQL (Unavailable,
	// PostgresDown).
	dbPGDown
)

// Error describes the failure; it never contains the API key.
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("odoo ")
	b.WriteString(e.Op)
	if e.Name != "" {
		b.WriteString(": ")
		b.WriteString(e.Name)
	}
	if e.Message != "" {
		b.WriteString(": ")
		b.WriteString(e.Message)
	}
	if e.Status != 0 {
		b.WriteString(" (http ")
		b.WriteString(strconv.Itoa(e.Status))
		b.WriteString(")")
	}
	if e.Err != nil {
		b.WriteString(": ")
		b.WriteString(e.Err.Error())
	}
	return b.String()
}

// Unwrap returns the underlying cause.
func (e *Error) Unwrap() error { return e.Err }

// Temporary reports whether retrying the same call may succeed.
func (e *Error) Temporary() bool { return e.Class == Transient }

// Permanent reports whether the call will fail again unchanged.
func (e *Error) Permanent() bool { return e.Class == Permanent }

// Auth reports an authentication failure (bad, revoked or expired key, login cooldown).
func (e *Error) Auth() bool { return e.Class == Auth }

// Missing reports that the record or lookup target does not exist.
func (e *Error) Missing() bool {
	return errors.Is(e.Err, ErrNotFound) || strings.HasSuffix(e.Name, ".MissingError") ||
		(e.Status == http.StatusNotFound && e.Name == "" && e.Class != Transient)
}

// Expired reports an authentication failure for a key that this client had
// used successfully before: Odoo answers an expired (or revoked) key exactly
// like a wrong one, so the client infers it from the earlier success.
func (e *Error) Expired() bool { return e.Class == Auth && e.expired }

// LoginCooldown reports Odoo's "Too many login failures" lockout: an
// AccessDenied whose message is not AccessDenied's own "Access Denied".
// The lockout's words are translated (res_users.py _assert_can_auth, before
// the call's context is read, so in the bot user's language over JSON-RPC
// to a server of several databases: inEnglish cannot help), and a wrong or
// expired key is a bare AccessDenied(), whose default message Odoo never
// translates. Not the client's own AccessDenied for an authenticate that
// answered false, which is how Odoo answers a lockout and a wrong key
// alike.
// lockoutWords reports whether a LoginCooldown says so in English, as Odoo
// writes it unless it renders it in the bot user's language: an add-on may
// also raise AccessDenied with words of its own (review5 F3), so messages
// say which when these words are missing.
func (e *Error) lockoutWords() bool {
	return strings.Contains(e.Message, "Too many login failures")
}

// LockoutNote is how the agent and validate say a LoginCooldown: Odoo's
// lockout, or, without its English words, an AccessDenied with its own
// message quoted.
func (e *Error) LockoutNote() string {
	if e.lockoutWords() {
		return "odoo refuses every login from this address for now: too many failed logins (from this agent or anyone behind the same address)"
	}
	return fmt.Sprintf("odoo refuses the bot's calls with AccessDenied: %q (its login lockout after too many failed logins, said in the bot user's language, or an add-on's own refusal)", e.Message)
}

func (e *Error) LoginCooldown() bool {
	return strings.HasSuffix(e.Name, ".AccessDenied") && !e.loginFalse && e.Message != "" &&
		!strings.EqualFold(strings.TrimSpace(e.Message), "Access Denied")
}

// Busy reports that Odoo answered and could not do the call for now: a
// concurrency failure in its database (a lock held, a serialization
// failure, JSON-2's 409) that its own retries did not get past. Odoo is
// up; the call is retried.
func (e *Error) Busy() bool {
	if e.Class != Transient {
		return false
	}
	return e.busy || e.Status == http.StatusConflict || concurrencyFailure(e.Name)
}

// Unavailable reports that Odoo answered but could not serve the call for
// now: its database away (PostgreSQL restarting, failing over, out of
// connections), a statement cancelled, the worker out of memory
// (unavailableNames). Nothing was committed; the call is retried.
func (e *Error) Unavailable() bool {
	return e.Class == Transient && (e.away || e.db == dbAway || e.db == dbPGDown || unavailableNames[e.Name])
}

// NoDatabase reports that Odoo serves no database by the name the client
// sends (Config.Database): over JSON-2 its 404 page "No database is
// selected" (the name absent, excluded by the server's dbfilter, or none
// named to a server of several databases) — werkzeug's plain 404 in
// 19-series builds without that page, once /web/version shows Odoo 19
// there — over JSON-RPC PostgreSQL's "database … does not exist". A
// configuration to fix, said at once; the call is retried (Transient),
// nothing was done. Not when Odoo says its PostgreSQL is not reachable
// (PostgresDown), nor when that database answered this client before and
// still exists: then Unavailable (JSON-2 answers its PostgreSQL away with
// the same page).
func (e *Error) NoDatabase() bool { return e.db == dbMissing || e.db == dbMissingOrPGDown }

// MaybePostgresDown reports a NoDatabase that may as well be Odoo's
// PostgreSQL not reachable: Odoo 19 answers both with the same 404, and
// what the client asked Odoo next (its /web/health) got no answer that
// says. When Odoo says its PostgreSQL answers, or does not, the error is
// the one that fits (PostgresDown, or a NoDatabase saying which: no such
// database, or one the dbfilter excludes).
func (e *Error) MaybePostgresDown() bool { return e.db == dbMissingOrPGDown }

// PostgresDown reports that Odoo answered and said it cannot reach its
// PostgreSQL (its /web/health, asked after JSON-2's 404 without a
// database): Unavailable, an outage that ends by itself.
func (e *Error) PostgresDown() bool { return e.db == dbPGDown }

// Odoo's load catches every database error per row (models.py: except
// psycopg2.Error) and answers it as a row message with HTTP 200, the whole
// load rolled back — its server-side retry of concurrency failures never
// sees them. A row message that begins with one of these texts
// (PostgreSQL's own, as str(error) gives them; 18's LockError) is a
// failure of the database, not of the row. Only at the start: the same
// words inside a validation message (a loss reason named "Connection to
// server lost") are the row's; and not psycopg2.InternalError's "Unknown
// database error: …", which is also how a trigger's RAISE refusing the row
// comes back, for good (the review: one such row, retried, stopped every
// machine's forwarding).
var (
	loadBusyTexts = []string{"could not serialize access", "deadlock detected", "could not obtain lock",
		"canceling statement due to lock timeout", "cannot grab a lock"}
	loadAwayTexts = []string{"server closed the connection unexpectedly", "terminating connection due to",
		"connection already closed", "ssl connection has been closed unexpectedly", "could not connect to server",
		"connection to server at"}
)

// loadFailure classifies a load's error rows (msgs: Odoo's messages as
// they came; text: what the error says): Transient (busy or away) when one
// of them is a failure of the database — the other rows' messages may be
// its consequences, and a row really at fault is refused again when
// retried — else Permanent.
func loadFailure(op, text string, msgs []string) *Error {
	e := &Error{Op: op, Name: "load", Message: text, Class: Permanent}
	for _, m := range msgs {
		low := strings.ToLower(strings.TrimSpace(m))
		for _, t := range loadBusyTexts {
			if strings.HasPrefix(low, t) {
				e.Class, e.busy = Transient, true
				return e
			}
		}
		for _, t := range loadAwayTexts {
			if strings.HasPrefix(low, t) {
				e.Class, e.away = Transient, true
				return e
			}
		}
	}
	return e
}

// TimedOut reports that the request may have reached Odoo and committed
// before the answer was lost: re-read state before repeating the call.
func (e *Error) TimedOut() bool { return e.timedOut }

// Timeout reports that no answer came within the call's timeout: Odoo (or
// something in front of it) may still be working on the request.
func (e *Error) Timeout() bool { return e.timeout }

// InDoubt reports whether Odoo may still be working on the request err
// answered: the request was sent and no answer came — the timeout passed,
// the connection was reset or closed (by a proxy, a NAT or firewall
// forgetting it, a WAN link dropping), or a proxy in front of Odoo gave up
// waiting (504, or Cloudflare's 524; its 520, a connection reset or an
// empty answer after the request was sent, is the reset). Odoo runs such
// a request to its end (up to its request limit), and may commit it after
// the caller has moved on. (A connection reset because Odoo itself went down is in doubt too:
// that cannot be told apart.)
func InDoubt(err error) bool {
	var oe *Error
	if !errors.As(err, &oe) {
		return false
	}
	return oe.timedOut || oe.proxyGaveUp() || oe.Status == statusOriginUnknown
}

// ProxyGaveUp reports whether err is a proxy in front of Odoo that gave up
// waiting for its answer: 504, or Cloudflare's 524 — in doubt (InDoubt),
// and the request took at least the proxy's timeout.
func ProxyGaveUp(err error) bool {
	var oe *Error
	return errors.As(err, &oe) && oe.proxyGaveUp()
}

func (e *Error) proxyGaveUp() bool {
	return e.Status == http.StatusGatewayTimeout || e.Status == statusOriginTimeout
}

// statusOriginUnknown is Cloudflare's 520, "web server returns an unknown
// error": it had a connection to the origin (Odoo, or a proxy in front of
// it) and sent the request, and the connection was reset or closed
// without an answer, or the answer was empty or not HTTP — what the
// agent's own connection reset is (in doubt: Odoo may be running the
// call). Odoo down or refusing is 521, 522 or 523 (nothing was sent).
const statusOriginUnknown = 520

// statusOriginTimeout is Cloudflare's 524, "a timeout occurred": it had
// sent the request to the origin (Odoo) and had no answer within its
// timeout (100 s by default) — a proxy's 504 under another number, with
// Odoo still running the call.
const statusOriginTimeout = 524

// IsTemporary reports whether err is worth retrying: a transient *Error, a
// network error or a timeout.
func IsTemporary(err error) bool {
	if err == nil {
		return false
	}
	var oe *Error
	if errors.As(err, &oe) {
		return oe.Temporary()
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne)
}

// IsPermanent reports whether err is a permanent *Error.
func IsPermanent(err error) bool {
	var oe *Error
	return errors.As(err, &oe) && oe.Permanent()
}

// MissingReference reports a load refused because a row's field/.id cell
// names a record Odoo's search does not find: deleted, archived, or of a
// company the caller may not use. Odoo's import resolves a database id
// with RelatedModel.search([('id', '=', id)]) (ir_fields.py db_id_for) and
// answers "No matching record found for database id …" for the field.
func MissingReference(err error, field string) bool {
	var oe *Error
	return errors.As(err, &oe) && slices.Contains(oe.unfound, field)
}

// TooLarge reports a request refused as too large by something in front
// of Odoo (a proxy's 413 page: nginx's client_max_body_size, a web
// firewall's body limit), not by Odoo: Transient — the same request is
// refused again, a smaller one passes. A caller that sends many records in
// one request sends fewer; one record alone refused so cannot be sent
// through that proxy as it is set up.
func TooLarge(err error) bool {
	var oe *Error
	return errors.As(err, &oe) && oe.tooLarge
}

// IsAuth reports whether err is an authentication failure.
func IsAuth(err error) bool {
	var oe *Error
	return errors.As(err, &oe) && oe.Auth()
}

// transientNames are the exception name suffixes Odoo raises for
// concurrency failures that survived its own server-side retries
// (odoo.exceptions.ConcurrencyError exists from 18.0 on).
var transientNames = []string{"SerializationFailure", "LockNotAvailable", "DeadlockDetected", "LockError", "ConcurrencyError"}

// concurrencyFailure reports an exception name of transientNames.
func concurrencyFailure(name string) bool {
	for _, s := range transientNames {
		if strings.HasSuffix(name, s) {
			return true
		}
	}
	return false
}

// unavailableNames are the exceptions Odoo answers when its database, or
// the worker itself, cannot serve for now: PostgreSQL restarting, failing
// over or out of connections or space, a statement cancelled, the worker
// out of memory. Odoo 17/18 answer them over JSON-RPC with HTTP 200 (JSON-2
// with 500 when PostgreSQL goes during the call; a call that comes while it
// is away cannot open its database and gets 19's 404 page, page.go), named
// module.Class as http.py serialize_exception does. The
// request's transaction was rolled back (unless the connection was lost at
// its very commit: every call the agent makes is idempotent — absolute
// writes, loads by external id, a scrap's state read before it is
// validated — so a retry repeats nothing). Odoo is up, its database is not.
// Not here, for they can be the request's own, for good: a statement
// timeout (QueryCanceled), a transaction an earlier error aborted
// (InFailedSqlTransaction), the worker's memory limit (MemoryError).
var unavailableNames = map[string]bool{
	"psycopg2.OperationalError":                                     true,
	"psycopg2.InterfaceError":                                       true, // connection already closed
	"psycopg2.pool.PoolError":                                       true, // "The Connection Pool Is Full"
	"psycopg2.extensions.TransactionRollbackError":                  true,
	"psycopg2.errors.AdminShutdown":                                 true,
	"psycopg2.errors.CrashShutdown":                                 true,
	"psycopg2.errors.CannotConnectNow":                              true, // the database starting up
	"psycopg2.errors.DatabaseDropped":                               true,
	"psycopg2.errors.IdleSessionTimeout":                            true,
	"psycopg2.errors.IdleInTransactionSessionTimeout":               true,
	"psycopg2.errors.ConnectionException":                           true,
	"psycopg2.errors.ConnectionDoesNotExist":                        true,
	"psycopg2.errors.ConnectionFailure":                             true,
	"psycopg2.errors.SqlclientUnableToEstablishSqlconnection":       true,
	"psycopg2.errors.SqlserverRejectedEstablishmentOfSqlconnection": true,
	"psycopg2.errors.TooManyConnections":                            true,
	"psycopg2.errors.InsufficientResources":                         true,
	"psycopg2.errors.OutOfMemory":                                   true,
	"psycopg2.errors.DiskFull":                                      true,
	"psycopg2.errors.IoError":                                       true,
	"psycopg2.errors.ReadOnlySqlTransaction":                        true, // a standby after a fail-over
	"psycopg2.errors.TransactionRollback":                           true,
	"psycopg2.errors.ObjectInUse":                                   true,
	"werkzeug.exceptions.ServiceUnavailable":                        true,
}

// classifyName classifies a JSON-RPC error by its error.data.name.
func classifyName(name string) ErrorClass {
	if concurrencyFailure(name) || unavailableNames[name] {
		return Transient
	}
	if strings.HasSuffix(name, ".AccessDenied") {
		return Auth
	}
	return Permanent
}

// classifyStatus classifies a non-200 HTTP answer (JSON-2, or a proxy in
// front of JSON-RPC). A 500 that names an error of the call itself (JSON-2
// answers every exception that is not a UserError with 500 and its name)
// is permanent: an invalid field, a bad domain, a custom module's
// TypeError, an Odoo exception — they were retried for good on 19, said as
// "odoo unreachable", where 17 dead-lettered them or said so at ERROR (the
// fidelity probe). Any other 500 stays transient: a bare one (a proxy, an
// early 19 build's "internal server error"), werkzeug's, and the server's
// passing troubles — a worker's MemoryError, a column missing while an
// upgrade runs (the review: a quantity dead-lettered for one MemoryError).
func classifyStatus(status int, name string) ErrorClass {
	switch {
	case status == http.StatusUnauthorized:
		return Auth
	case strings.HasSuffix(name, ".AccessDenied"):
		return Auth
	case status == http.StatusInternalServerError && callError(name):
		return classifyName(name)
	case status == http.StatusConflict, status == http.StatusTooManyRequests,
		status == http.StatusRequestTimeout, status >= 500:
		return Transient
	}
	if name != "" && classifyName(name) == Transient {
		return Transient
	}
	return Permanent
}

// callError reports an exception name that is the call's own fault, for
// good: Odoo's exceptions (a UserError reaches JSON-2 as 422, but not its
// subclasses' every path) and Python's for a bad argument.
func callError(name string) bool {
	switch name {
	case "builtins.ValueError", "builtins.TypeError", "builtins.AttributeError":
		return true
	}
	return strings.HasPrefix(name, "odoo.exceptions.") && classifyName(name) == Permanent
}

// parseRetryAfter reads a Retry-After header: delay-seconds or an HTTP date.
func parseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if strings.Trim(v, "0123456789") == "" {
		// delay-seconds (RFC 9110: 1*DIGIT), saturated: a value too large
		// for a time.Duration (a proxy's "wait forever") asks for the
		// longest wait, not a wrapped-around short one (FuzzConnectAnswer).
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n > int64(math.MaxInt64/time.Second) {
			return time.Duration(math.MaxInt64)
		}
		return time.Duration(n) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		if d := t.Sub(now); d > 0 {
			return d
		}
	}
	return 0
}

// mayHaveCommitted reports whether a transport error leaves the outcome of
// the request unknown. Only a failed dial proves nothing was sent.
func mayHaveCommitted(err error) bool {
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Op == "dial" {
		return false
	}
	var dnsErr *net.DNSError
	return !errors.As(err, &dnsErr)
}
