// Package odoo is plantedge's client for Odoo 17, 18 and 19: JSON-RPC and
// JSON-2 transports, classified errors, and the manufacturing (mrp)
// operations the agent needs, each written to be safe to repeat.
package odoo

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/plantedge/plantedge/connectors"
)

// Protocols.
const (
	ProtocolAuto    = "auto"
	ProtocolJSONRPC = "jsonrpc"
	ProtocolJSON2   = "json2"
)

// DefaultTimeout bounds one call when Config.Timeout is zero.
const DefaultTimeout = 30 * time.Second

// DefaultIdleRecheck is Config.IdleRecheck when zero.
const DefaultIdleRecheck = time.Minute

// DefaultVersionRecheck is Config.VersionRecheck when zero.
const DefaultVersionRecheck = 5 * time.Minute

// maxResponse caps how much of a response body is read.
const maxResponse = 16 << 20 // a work-order lookup of thousands of orders is well below

// Config configures a Client.
type Config struct {
	URL, Database, Username string
	APIKey                  string        // never printed: String/GoString and every error/log redact it
	Protocol                string        // "auto" (default) | "jsonrpc" | "json2"
	Timeout                 time.Duration // per call; default 30s
	CAFile                  string        // PEM CA bundle; when set it replaces the system roots
	InsecureSkipVerify      bool
	HTTPClient              *http.Client // optional (tests); replaces the built transport
	Logger                  *slog.Logger
	// PeerCertificates, if set, is called at each new HTTPS connection of
	// the built transport with the chain it relies on
	// (connectors.ChainInUse: the verified chain from the certificate Odoo,
	// or the proxy in front of it, presented up to CAFile's or the system's
	// root; what was presented when InsecureSkipVerify): the agent shows
	// when it expires. It must not block.
	PeerCertificates func([]*x509.Certificate)
	// Wait, when set, is called before every HTTP request (a rate
	// limiter's Wait): a rate then counts requests, not operations of
	// several requests each. Its time does not count against Timeout.
	Wait func(context.Context) error
	// IdleRecheck: after this long without an answer from Odoo, the next
	// call reads the version again first — Odoo may have been upgraded
	// (or restored) while the agent had nothing to send, so no call
	// failed. Default one minute; negative: never.
	IdleRecheck time.Duration
	// VersionRecheck: the version is read again at least this often, also
	// while Odoo answers every call. A proxy switched to an upgraded copy
	// (or back to the old server after a failed upgrade) fails no call and
	// leaves no quiet spell: a busy plant would write the old version's
	// field for good (the odooupgrade probe). One GET of /web/version (or
	// common.version); the session stands when it is unchanged. Default
	// five minutes; negative: never.
	VersionRecheck time.Duration
}

// String prints the configuration with the API key redacted.
func (c Config) String() string {
	key := ""
	if c.APIKey != "" {
		key = "[redacted]"
	}
	return fmt.Sprintf("odoo.Config{URL:%q Database:%q Username:%q APIKey:%q Protocol:%q Timeout:%s CAFile:%q InsecureSkipVerify:%t}",
		c.URL, c.Database, c.Username, key, c.Protocol, c.Timeout, c.CAFile, c.InsecureSkipVerify)
}

// GoString is String, so %#v cannot leak the key either.
func (c Config) GoString() string { return c.String() }

// Client talks to one Odoo database. It is safe for concurrent use.
type Client struct {
	cfg  Config
	base *url.URL
	hc   *http.Client
	log  *slog.Logger
	id   atomic.Int64
	// timeLinesRefused: reading time lines was refused (said once).
	timeLinesRefused atomic.Bool
	// woUnitAlt: the work order's unit is read as uom_id, not
	// product_uom_id (readWorkorders).
	woUnitAlt atomic.Bool
	// companies of work centers and manufacturing orders, as read
	companies companies

	mu      sync.RWMutex
	proto   string
	version string
	major   int
	uid     int64
	authOK  bool // the key has been accepted at least once
	// seenProto and seenVersion are what the last Connect found the server
	// to be before it logged in: set even when the login was then refused
	// (see Seen).
	seenProto, seenVersion string
	connect                sync.Mutex
	// recheck is set when Odoo could not be reached (refused or dropped
	// connections, timeouts, 502/503/504, a proxy's page): Odoo may come
	// back upgraded (17/18 → 19 changes the protocol and the quantity
	// field) or restored from an older backup, so the next call connects
	// again first, reading the version anew.
	recheck atomic.Bool
	// answered is when Odoo last answered (UnixNano; 0 before): see
	// Config.IdleRecheck.
	answered atomic.Int64
	// checked is when the version was last read (UnixNano; 0 before): see
	// Config.VersionRecheck.
	checked atomic.Int64
	// digitsRead is when the precision was last asked for (UnixNano; 0
	// before): sameVersion asks again only Config.VersionRecheck later.
	digitsRead atomic.Int64
	// qtyDigits is Odoo's quantity precision (precision.go): 0 before it
	// was read, digits+1 as read, -(digits+1) as assumed after a read
	// that failed.
	qtyDigits atomic.Int32
}

// New validates cfg and builds the HTTP transport. It does no network I/O;
// a CAFile is read here so a bad one fails early.
func New(cfg Config) (*Client, error) {
	var problems []string
	if cfg.Protocol == "" {
		cfg.Protocol = ProtocolAuto
	}
	switch cfg.Protocol {
	case ProtocolAuto, ProtocolJSONRPC, ProtocolJSON2:
	default:
		problems = append(problems, fmt.Sprintf("protocol %q: want auto, jsonrpc or json2", cfg.Protocol))
	}
	u, err := url.Parse(strings.TrimRight(cfg.URL, "/"))
	if cfg.URL == "" {
		problems = append(problems, "url is required")
	} else if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		problems = append(problems, fmt.Sprintf("url %q: want http(s)://host[:port]", cfg.URL))
	}
	if cfg.APIKey == "" {
		problems = append(problems, "api key is required")
	}
	// With protocol auto they are needed only if the server turns out to be
	// 17/18 (Connect says so then): JSON-2 needs only the key.
	if cfg.Protocol == ProtocolJSONRPC && cfg.Database == "" {
		problems = append(problems, "database is required for JSON-RPC")
	}
	if cfg.Protocol == ProtocolJSONRPC && cfg.Username == "" {
		problems = append(problems, "username is required for JSON-RPC")
	}
	if cfg.Timeout < 0 {
		problems = append(problems, "timeout must not be negative")
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.IdleRecheck == 0 {
		cfg.IdleRecheck = DefaultIdleRecheck
	}
	if cfg.VersionRecheck == 0 {
		cfg.VersionRecheck = DefaultVersionRecheck
	}
	var tlsCfg *tls.Config
	if cfg.CAFile != "" || cfg.InsecureSkipVerify {
		tlsCfg = &tls.Config{InsecureSkipVerify: cfg.InsecureSkipVerify, MinVersion: tls.VersionTLS12} //nolint:gosec // explicit opt-in
		if cfg.CAFile != "" {
			pem, err := os.ReadFile(cfg.CAFile)
			if err != nil {
				problems = append(problems, fmt.Sprintf("ca file: %v", err))
			} else {
				pool := x509.NewCertPool()
				if !pool.AppendCertsFromPEM(pem) {
					problems = append(problems, fmt.Sprintf("ca file %s: no PEM certificates", cfg.CAFile))
				}
				tlsCfg.RootCAs = pool
			}
		}
	}
	if len(problems) > 0 {
		return nil, fmt.Errorf("odoo config: %s", strings.Join(problems, "; "))
	}
	if hook := cfg.PeerCertificates; hook != nil {
		if tlsCfg == nil {
			tlsCfg = &tls.Config{MinVersion: tls.VersionTLS12}
		}
		tlsCfg.VerifyConnection = connectors.NoteChainInUse(hook)
	}
	hc := cfg.HTTPClient
	if hc == nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.TLSClientConfig = tlsCfg
		tr.MaxIdleConnsPerHost = 4
		tr.IdleConnTimeout = 90 * time.Second
		tr.ResponseHeaderTimeout = 0 // the per-call context bounds the wait
		// Redirects are not followed: one could carry the key (JSON-RPC
		// sends it in the body) to another host, even over plain http.
		hc = &http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		}}
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Client{cfg: cfg, base: u, hc: hc, log: log.With("component", "odoo")}, nil
}

// String describes the client without secrets.
func (c *Client) String() string {
	return fmt.Sprintf("odoo.Client{%s protocol=%s version=%s}", c.base.Redacted(), c.Protocol(), c.ServerVersion())
}

// KeyID is a short fingerprint of the API key (the first 8 hex digits of
// its SHA-256): it tells which key is in use, in logs or after a rotation,
// without revealing it.
func (c *Client) KeyID() string { return KeyIDOf(c.cfg.APIKey) }

// KeyIDOf is KeyID for a key not (yet) in a client.
func KeyIDOf(apiKey string) string {
	sum := sha256.Sum256([]byte(apiKey))
	return hex.EncodeToString(sum[:4])
}

// Close releases idle connections. The client stays usable.
func (c *Client) Close() { c.hc.CloseIdleConnections() }

// Protocol returns the protocol in use, "" before Connect.
func (c *Client) Protocol() string {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.proto
}

// ServerVersion returns the server version, e.g. "17.0" or "19.0+e".
func (c *Client) ServerVersion() string {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.version
}

// Major returns the server's major version (17, 18, 19...), 0 before Connect.
func (c *Client) Major() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.major
}

// Seen returns the protocol and version the server answered with at the
// last Connect that got that far, even when the login was then refused
// (Protocol and ServerVersion change only when it succeeds): after an
// upgrade with the key revoked, the version the refusal came from, not
// the one before. Protocol and ServerVersion before any such Connect.
func (c *Client) Seen() (protocol, version string) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.seenVersion == "" {
		return c.proto, c.version
	}
	return c.seenProto, c.seenVersion
}

// saw records what Connect found the server to be, before its login.
func (c *Client) saw(proto, version string) {
	c.mu.Lock()
	c.seenProto, c.seenVersion = proto, version
	c.mu.Unlock()
}

// UID returns the authenticated user id, 0 before Connect.
func (c *Client) UID() int64 {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.uid
}

// Connect picks the protocol (auto: GET /web/version, 19+ means JSON-2),
// reads the server version and authenticates. After a quiet spell (see
// Config.IdleRecheck) it only reads the version, unless that changed.
// ctx bounds this attempt only.
func (c *Client) Connect(ctx context.Context) error {
	c.connect.Lock()
	defer c.connect.Unlock()
	return c.connectLocked(ctx)
}

// connectLocked is Connect; the caller holds c.connect.
func (c *Client) connectLocked(ctx context.Context) (err error) {
	if c.sameVersion(ctx) {
		return nil
	}
	// Cleared for the requests below; set again unless this Connect
	// succeeds (a failure after /web/version must not leave the old
	// version in use).
	c.recheck.Store(false)
	defer func() {
		if err != nil {
			c.recheck.Store(true)
		}
	}()
	proto := c.cfg.Protocol
	var version string
	if proto == ProtocolAuto || proto == ProtocolJSON2 {
		v, err := c.webVersion(ctx)
		switch {
		case err == nil:
			version = v
			if proto == ProtocolAuto {
				proto = ProtocolJSONRPC
				if parseMajor(v) >= 19 {
					proto = ProtocolJSON2
				}
			} else if m := parseMajor(v); m > 0 && m < 19 {
				// JSON-2 is Odoo 19's. Odoo Online's saas~18.x served an
				// earlier /json/2 that takes its parameters as "args" and
				// "kwargs" (json2.py in Odoo's history) and drops any other
				// body member (http.py route_wrapper): a search's domain
				// and fields, a write's vals — every record read back, no
				// write done.
				c.saw(proto, v)
				return &Error{Op: "connect", Class: Permanent, Message: fmt.Sprintf(
					"odoo.protocol is json2, which plantedge speaks to Odoo 19 and later; this Odoo is %s, whose JSON-2 (if any) takes its parameters otherwise: set odoo.protocol to auto (JSON-RPC there)", v)}
			}
		case proto == ProtocolAuto && isNoWebVersion(err):
			proto = ProtocolJSONRPC
		default:
			return err
		}
	}
	var uid int64
	if proto == ProtocolJSONRPC && (c.cfg.Username == "" || c.cfg.Database == "") {
		return &Error{Op: "connect", Class: Permanent, Message: fmt.Sprintf(
			"the server speaks JSON-RPC only (Odoo %s, before 19): it needs odoo.username (the bot user's login) and odoo.database; JSON-2 (the key alone) needs Odoo 19+",
			cmp.Or(version, "17/18"))}
	}
	if proto == ProtocolJSONRPC {
		v, err := c.commonVersion(ctx)
		if err != nil {
			return err
		}
		version = v
		c.saw(proto, version)
		var res json.RawMessage
		if err := c.rpc(ctx, "authenticate", "common", "authenticate",
			[]any{c.cfg.Database, c.cfg.Username, c.cfg.APIKey, map[string]any{}}, &res); err != nil {
			return c.markExpired(err)
		}
		if string(bytes.TrimSpace(res)) != "false" && (json.Unmarshal(res, &uid) != nil || uid <= 0) {
			// Odoo answers a user id or false: anything else (no result,
			// a proxy's JSON) is not a refused login, which would back off
			// hard and say the key refused.
			return notOdoos("authenticate", c.clean("not Odoo's answer to authenticate (a user id or false): "+cmp.Or(string(res), "no result"), 200), nil)
		}
		if uid <= 0 {
			return c.markExpired(&Error{Op: "authenticate", Name: "odoo.exceptions.AccessDenied",
				Message: fmt.Sprintf("login %q refused for database %q", c.cfg.Username, c.cfg.Database), Class: Auth,
				loginFalse: true})
		}
	} else {
		c.saw(proto, version)
		var uctx struct {
			UID int64 `json:"uid"`
		}
		if err := c.json2(ctx, "res.users.context_get", "res.users", "context_get", map[string]any{}, &uctx); err != nil {
			return c.markExpired(err)
		}
		if uctx.UID <= 0 {
			// Odoo's context_get always says who the key is: not its
			// answer (a proxy's JSON of its own).
			return notOdoos("res.users.context_get", "an answer without the user's id (uid): not Odoo's context_get", nil)
		}
		uid = uctx.UID
	}
	c.mu.Lock()
	oldProto, oldVersion := c.proto, c.version
	c.proto, c.version, c.major, c.uid, c.authOK = proto, version, parseMajor(version), uid, true
	c.mu.Unlock()
	c.checked.Store(time.Now().UnixNano())
	switch {
	case oldProto == "":
		c.log.Info("connected", "protocol", proto, "server_version", version, "uid", uid, "database", c.cfg.Database)
	case oldProto != proto || oldVersion != version:
		c.log.Warn("Odoo came back as another version (upgraded, or restored from a backup): switching to it",
			"protocol", proto, "server_version", version, "was_protocol", oldProto, "was_server_version", oldVersion, "uid", uid)
	default:
		c.log.Debug("connected again", "protocol", proto, "server_version", version, "uid", uid)
	}
	if version != oldVersion && proto == ProtocolJSONRPC && c.cfg.Protocol == ProtocolJSONRPC && parseMajor(version) >= 19 {
		// Pinned by the config since 17/18, and the server upgraded (the
		// odooupgrade probe): it works, but not for long.
		c.log.Warn("odoo.protocol is jsonrpc, which Odoo 19 still serves but has deprecated: set odoo.protocol to auto (JSON-2, with the same API key)",
			"server_version", version)
	}
	if version != oldVersion && newerThanKnown(version) {
		// Odoo after 19.0 changed models the agent uses (the fidelity
		// probe: mrp.workorder.product_uom_id gone): said, not refused.
		c.log.Warn("odoo is newer than the versions plantedge was made for (17.0, 18.0, 19.0): it works with it as with 19.0; "+
			"a call it refuses is said at ERROR — plantedge validate --odoo checks the calls the agent makes",
			"server_version", version)
	}
	// Read at every full connect: Odoo may come back with another
	// precision (restored, or set anew by an administrator).
	return c.readQtyDigits(ctx)
}

// NeedsConnect reports whether the next call connects first: before the
// first Connect, after Odoo could not be reached, after it was not heard
// from for Config.IdleRecheck, and when its version was last read
// Config.VersionRecheck ago (it may be another version since).
func (c *Client) NeedsConnect() bool {
	return c.Protocol() == "" || c.recheck.Load() || c.quiet() || c.versionDue()
}

// versionDue reports whether the version was last read Config.VersionRecheck
// ago.
func (c *Client) versionDue() bool {
	last := c.checked.Load()
	return c.cfg.VersionRecheck > 0 && last != 0 && time.Since(time.Unix(0, last)) > c.cfg.VersionRecheck
}

// quiet reports whether Odoo has not answered for Config.IdleRecheck.
func (c *Client) quiet() bool {
	last := c.answered.Load()
	return c.cfg.IdleRecheck > 0 && last != 0 && time.Since(time.Unix(0, last)) > c.cfg.IdleRecheck
}

// sameVersion is Connect's short way after a quiet spell, or when the
// version is due to be read again (nothing failed): one request reads the
// version, and if it is the one connected to, the session stands — no
// login every few minutes.
func (c *Client) sameVersion(ctx context.Context) bool {
	c.mu.RLock()
	proto, version := c.proto, c.version
	c.mu.RUnlock()
	if proto == "" || c.recheck.Load() || !c.quiet() && !c.versionDue() {
		return false
	}
	now := ""
	if c.cfg.Protocol != ProtocolJSONRPC {
		v, err := c.webVersion(ctx)
		if err != nil && !isNoWebVersion(err) {
			return false
		}
		now = v
	}
	if now == "" {
		if proto != ProtocolJSONRPC {
			return false
		}
		v, err := c.commonVersion(ctx)
		if err != nil {
			return false
		}
		now = v
	}
	if now != version {
		return false
	}
	// The precision too: an administrator may set other decimals while
	// Odoo answers every call, and a busy plant on a steady link would
	// not connect anew for as long as it runs. As often as the version
	// is due, not at every quiet spell: an idle plant's check each quiet
	// minute stays two requests (the version, the work orders). Not read
	// (Odoo not reached): a full connect, which reads it.
	if c.digitsDue() && c.readQtyDigits(ctx) != nil {
		return false
	}
	c.checked.Store(time.Now().UnixNano())
	c.log.Debug("Odoo version unchanged", "server_version", now)
	return true
}

// digitsDue reports whether the precision was last asked for
// Config.VersionRecheck ago (or never).
func (c *Client) digitsDue() bool {
	last := c.digitsRead.Load()
	return c.cfg.VersionRecheck <= 0 || last == 0 || time.Since(time.Unix(0, last)) >= c.cfg.VersionRecheck
}

// ensureConnected connects when no Connect has succeeded yet, or again
// after Odoo could not be reached (see recheck).
func (c *Client) ensureConnected(ctx context.Context) error {
	if !c.NeedsConnect() {
		return nil
	}
	c.connect.Lock()
	defer c.connect.Unlock()
	if !c.NeedsConnect() { // another goroutine connected while we waited
		return nil
	}
	// Still under the lock: two goroutines that both found the client
	// unconnected must not both log in.
	return c.connectLocked(ctx)
}

// markExpired flags an auth failure of a key that worked before.
func (c *Client) markExpired(err error) error {
	var oe *Error
	if errors.As(err, &oe) && oe.Class == Auth {
		c.mu.RLock()
		oe.expired = c.authOK && !oe.LoginCooldown() // a locked-out address says nothing of the key
		c.mu.RUnlock()
	}
	return err
}

func isNoWebVersion(err error) bool {
	var oe *Error
	if !errors.As(err, &oe) {
		return false
	}
	// 17 and 18 have no /web/version: their 404 (or an HTML page) means JSON-RPC.
	return oe.Name == "decode" || oe.Status == http.StatusNotFound || oe.Status == http.StatusMethodNotAllowed
}

// parseMajor reads the major version of "17.0", "19.0+e" or "saas~18.3".
// newerThanKnown reports a server version after 19.0: a later major, or a
// saas~19.x build between releases.
func newerThanKnown(v string) bool {
	m := parseMajor(v)
	return m > 19 || m == 19 && strings.HasPrefix(v, "saas~")
}

func parseMajor(v string) int {
	v = strings.TrimPrefix(v, "saas~")
	end := 0
	for end < len(v) && v[end] >= '0' && v[end] <= '9' {
		end++
	}
	n, _ := strconv.Atoi(v[:end])
	return n
}

// commonVersion reads the server version through JSON-RPC's common service.
func (c *Client) commonVersion(ctx context.Context) (string, error) {
	var ver struct {
		ServerVersion string `json:"server_version"`
	}
	if err := c.rpc(ctx, "common.version", "common", "version", []any{}, &ver); err != nil {
		return "", err
	}
	if ver.ServerVersion == "" {
		// Odoo's common.version always names its version: without one the
		// client would pick 17/18's quantity field for any server.
		return "", notOdoos("common.version", "an answer without server_version: not Odoo's common.version", nil)
	}
	return ver.ServerVersion, nil
}

func (c *Client) webVersion(ctx context.Context) (string, error) {
	body, _, err := c.do(ctx, "web.version", http.MethodGet, "/web/version", nil, nil)
	if err != nil {
		var oe *Error
		if errors.As(err, &oe) && oe.Status == http.StatusNotFound {
			// No /web/version at this address (an Odoo before 18, or no
			// Odoo at this path): a fact about the server, not a moment.
			oe.Class = Permanent
		}
		return "", err
	}
	var v struct {
		Version     string `json:"version"`
		VersionInfo []any  `json:"version_info"`
	}
	if err := json.Unmarshal(body, &v); err != nil || v.Version == "" {
		return "", &Error{Op: "web.version", Name: "decode", Message: "not an Odoo version document", Class: Permanent, Err: err}
	}
	return v.Version, nil
}

// Call runs model.method with positional args and keyword args and decodes
// the result into out (nil to discard). With JSON-RPC it is execute_kw; with
// JSON-2 the positional args are mapped to the method's named parameters
// (record methods take the ids as their first positional argument).
// It connects first when Connect has not succeeded yet.
func (c *Client) Call(ctx context.Context, model, method string, args []any, kwargs map[string]any, out any) error {
	if err := c.ensureConnected(ctx); err != nil {
		return err
	}
	return c.call(ctx, model, method, args, kwargs, out)
}

// call is Call on the session set up (connectLocked uses it, holding the
// connect lock).
func (c *Client) call(ctx context.Context, model, method string, args []any, kwargs map[string]any, out any) error {
	if (method == "search_read" || method == "read") && out != nil {
		return c.readRecords(ctx, model, method, args, kwargs, out)
	}
	return c.callOnce(ctx, model, method, args, kwargs, out)
}

// callOnce is call without the check of the records read.
func (c *Client) callOnce(ctx context.Context, model, method string, args []any, kwargs map[string]any, out any) error {
	op := model + "." + method
	if args == nil {
		args = []any{}
	}
	kwargs = inEnglish(kwargs)
	if c.Protocol() == ProtocolJSONRPC {
		err := c.rpc(ctx, op, "object", "execute_kw",
			[]any{c.cfg.Database, c.UID(), c.cfg.APIKey, model, method, args, kwargs}, out)
		return withRightHint(model, c.markExpired(err))
	}
	params, err := json2Named(method, args, kwargs)
	if err != nil {
		return &Error{Op: op, Message: err.Error(), Class: Permanent}
	}
	return withRightHint(model, c.markExpired(c.json2(ctx, op, model, method, params, out)))
}

// readRecords is call for search_read and read, whose answer Odoo makes a
// list of records, each with its positive id: a row that is not a record
// (null, an object without an id, a proxy's JSON in a list) is not Odoo's
// answer, and would read as a record of id 0 — a loss reason, a work
// center, a line booked by id 0, refused for good (dead letters).
func (c *Client) readRecords(ctx context.Context, model, method string, args []any, kwargs map[string]any, out any) error {
	op := model + "." + method
	var raw json.RawMessage
	if err := c.callOnce(ctx, model, method, args, kwargs, &raw); err != nil {
		return err
	}
	if e := noResult(op, raw, out); e != nil {
		return e
	}
	var rows []struct {
		ID *int64 `json:"id"`
	}
	if err := json.Unmarshal(raw, &rows); err != nil {
		return notOdoos(op, "unexpected result shape", err)
	}
	for _, r := range rows {
		if r.ID == nil || *r.ID <= 0 {
			return notOdoos(op, c.clean("a "+method+" answered with a row that is not a record (no positive id): not Odoo's answer: "+string(raw), maxMessage), nil)
		}
	}
	if err := json.Unmarshal(raw, out); err != nil {
		return notOdoos(op, "unexpected result shape", err)
	}
	return nil
}

// rightHintOpen begins every hint the client puts after the first line of
// an AccessError (WithoutRightHint).
const rightHintOpen = "(plantedge: "

// WithoutRightHint is line, the first line of an AccessError's message,
// without the hint of the group to give that the client put after it
// (for a caller that says it in its own words: validate --odoo).
func WithoutRightHint(line string) string {
	before, _, _ := strings.Cut(line, " "+rightHintOpen)
	return before
}

// ExternalIDsRightHint is what an AccessError on reading ir.model.data
// says after Odoo's first line.
const ExternalIDsRightHint = rightHintOpen + "give the bot user read on Model Data (ir.model.data) through a group of its own, " +
	"as the README says; not Administration / Access Rights, which Odoo names below but which may give itself any right)"

// The groups to give the bot user for the rights the agent uses, said
// after the first line of Odoo's refusal (status shows that line; Odoo's
// own list of groups is on the lines after it, and names the
// administrators' groups too). From mrp's and stock's
// security/ir.model.access.csv (17.0-19.0): Manufacturing / User holds
// work orders, manufacturing orders and time lines, and reads work centers
// and loss reasons; it implies Inventory / User, which reads, writes and
// creates scraps and stock moves; every internal user (base.group_user)
// has every right on move lines (access_stock_move_line_all) and reads
// quants (access_stock_quant_all).
const (
	mrpUserRightHint  = rightHintOpen + "give the bot user the group Manufacturing / User, as the README says)"
	invUserRightHint  = rightHintOpen + "give the bot user the group Manufacturing / User, which includes Inventory / User, as the README says)"
	internalRightHint = rightHintOpen + "Odoo gives this right to every internal user: make the bot user's user type Internal User)"
)

// aclRefusal is the first line of ir_model.py _make_access_error (the
// access rights, not record rules), in English as every call asks:
// "You are not allowed to create 'Stock Move' (stock.move) records."
var aclRefusal = regexp.MustCompile(`^You are not allowed to (access|modify|create|delete) '[^']*' \(([a-z0-9_]+(?:\.[a-z0-9_]+)+)\) records\.`)

// rightHint is what to give the bot user for the right op ("access",
// "modify", "create", "delete", as Odoo's refusal says) on model, among
// those the agent uses ("" for others).
func rightHint(model, op string) string {
	switch model {
	case "mrp.workorder", "mrp.production", "mrp.workcenter.productivity":
		if op != "delete" {
			return mrpUserRightHint
		}
	case "mrp.workcenter", "mrp.workcenter.productivity.loss":
		if op == "access" { // changing them is Manufacturing / Administrator's
			return mrpUserRightHint
		}
	case "stock.scrap", "stock.move":
		if op != "delete" { // Inventory / Administrator's
			return invUserRightHint
		}
	case "stock.move.line":
		return internalRightHint
	case "stock.quant":
		if op == "access" {
			return internalRightHint
		}
	case "ir.model.data":
		return ExternalIDsRightHint
	}
	return ""
}

// withRightHint puts after the first line of Odoo's AccessError which
// group gives the bot user the right it lacks: for ir.model.data
// ExternalIDsRightHint, on any refusal of a call on it (Odoo lists
// Administration / Access Rights alone there, as base's access file gives
// internal users nothing on them: an admin who follows it gives the bot
// user the power to give itself any right); for the other models the
// agent uses, the group its refusal names (a call on a scrap is refused
// for a right on stock moves), so that the line status shows, and the
// dead letter, say what to give.
func withRightHint(model string, err error) error {
	var oe *Error
	if !errors.As(err, &oe) || !strings.HasSuffix(oe.Name, ".AccessError") {
		return err
	}
	first, rest, more := strings.Cut(oe.Message, "\n")
	hint := ""
	if model == "ir.model.data" {
		hint = ExternalIDsRightHint
	} else if m := aclRefusal.FindStringSubmatch(first); m != nil {
		hint = rightHint(m[2], m[1])
	}
	if hint == "" || strings.Contains(first, hint) {
		return err
	}
	oe.Message = first + " " + hint
	if more {
		oe.Message += "\n" + rest
	}
	return err
}

// inEnglish returns a copy of kwargs whose context says lang en_US (the
// caller's maps are left alone). Odoo renders the messages its code
// raises in the context's language first; without one in the request's
// (the Accept-Language header's, English without it, or the company's
// where English is deactivated), and over JSON-RPC to a server of several
// databases with no dbfilter, in Odoo 18 and 19, in the bot user's own
// language (tools/translate.py _get_lang). The client tells a refusal for
// incompatible companies by its words, and shows Odoo's reasons in status
// and dead letters: in English, whatever the languages of the bot user and
// of the database. en_US is Odoo's source text, valid in every database
// (api.py Environment.lang exempts it from the check that a language is
// active). Names are read and searched in the context's language too,
// en_US as Odoo does without one.
func inEnglish(kwargs map[string]any) map[string]any {
	out := make(map[string]any, len(kwargs)+1)
	for k, v := range kwargs {
		out[k] = v
	}
	ctx := map[string]any{}
	if given, ok := kwargs["context"].(map[string]any); ok {
		for k, v := range given {
			ctx[k] = v
		}
	}
	ctx["lang"] = "en_US"
	out["context"] = ctx
	return out
}

// json2Sig lists a method's JSON-2 named parameters in positional order.
type json2Sig struct {
	ids   bool // first positional argument is the record ids
	names []string
}

var json2Sigs = map[string]json2Sig{
	"search_read":  {names: []string{"domain", "fields", "offset", "limit", "order"}},
	"search":       {names: []string{"domain", "offset", "limit", "order"}},
	"search_count": {names: []string{"domain", "limit"}},
	"read":         {ids: true, names: []string{"fields"}},
	"write":        {ids: true, names: []string{"vals"}},
	"unlink":       {ids: true},
	"create":       {names: []string{"vals_list"}},
	"load":         {names: []string{"fields", "data"}},
	"name_search":  {names: []string{"name", "domain", "operator", "limit"}},
	"context_get":  {},
	"fields_get":   {names: []string{"allfields", "attributes"}},
	"has_access":   {ids: true, names: []string{"operation"}},
	// check_access_rights exists only before 19 (JSON-2 arrived in 19); kept for completeness
	"check_access_rights": {names: []string{"operation", "raise_exception"}},
}

func json2Named(method string, args []any, kwargs map[string]any) (map[string]any, error) {
	sig, ok := json2Sigs[method]
	if !ok {
		// public action methods (button_*, action_*): ids only
		sig = json2Sig{ids: true}
	}
	p := make(map[string]any, len(kwargs)+2)
	for k, v := range kwargs {
		p[k] = v
	}
	if sig.ids && len(args) > 0 {
		p["ids"] = args[0]
		args = args[1:]
	}
	if len(args) > len(sig.names) {
		return nil, fmt.Errorf("%s takes %d positional arguments over JSON-2, got %d", method, len(sig.names), len(args))
	}
	for i, a := range args {
		p[sig.names[i]] = a
	}
	if method == "create" {
		if m, ok := p["vals_list"].(map[string]any); ok {
			p["vals_list"] = []any{m}
		}
	}
	return p, nil
}

// rpc performs one JSON-RPC call.
func (c *Client) rpc(ctx context.Context, op, service, method string, args []any, out any) error {
	id := c.id.Add(1)
	req := map[string]any{"jsonrpc": "2.0", "method": "call", "id": id,
		"params": map[string]any{"service": service, "method": method, "args": args}}
	body, _, err := c.do(ctx, op, http.MethodPost, "/jsonrpc", req, nil)
	if err != nil {
		return err
	}
	var env struct {
		JSONRPC string          `json:"jsonrpc"`
		ID      json.RawMessage `json:"id"`
		Result  json.RawMessage `json:"result"`
		Error   *struct {
			Code    int    `json:"code"`
			Message string `json:"message"`
			Data    struct {
				Name    string `json:"name"`
				Message string `json:"message"`
			} `json:"data"`
		} `json:"error"`
	}
	if err := json.Unmarshal(body, &env); err != nil || env.JSONRPC != "2.0" {
		// Not Odoo's JSON-RPC answer (which always says "jsonrpc": "2.0",
		// also when it leaves "result" out for a None): something in
		// front of Odoo answered.
		return &Error{Op: op, Name: "decode", Message: "invalid JSON-RPC response", Status: http.StatusOK, Class: Transient, Err: err}
	}
	if !answersID(env.ID, id) {
		got := string(bytes.TrimSpace(env.ID))
		// Odoo echoes the request's id: this answers another request (a
		// proxy's cache, a gateway of its own), or none. Nothing it says,
		// a result or a refusal, is about this call.
		return notOdoos(op, c.clean(fmt.Sprintf("a JSON-RPC answer to another request (id %s, sent %d): not Odoo's answer to this call", cmp.Or(got, "none"), id), maxMessage), nil)
	}
	if env.Error != nil && env.Error.Data.Name == "" {
		// Odoo names the exception of every error it answers
		// (http.py serialize_exception): an error without one is a
		// JSON-RPC gateway's or proxy's, which says nothing about the call.
		msg := env.Error.Message
		return notOdoos(op, c.clean("a JSON-RPC error that names no Odoo exception (not Odoo's answer): "+cmp.Or(msg, "no message"), maxMessage), nil)
	}
	if env.Error != nil {
		msg := env.Error.Data.Message
		if msg == "" {
			msg = env.Error.Message
		}
		e := &Error{Op: op, Name: c.clean(env.Error.Data.Name, maxName), Message: c.clean(msg, maxMessage), Class: classifyName(env.Error.Data.Name)}
		if c.cfg.Database != "" && e.Unavailable() && strings.Contains(msg, `database "`+c.cfg.Database+`" does not exist`) {
			// PostgreSQL's words for the database the call named
			// (service/common.py, service/model.py: Registry(db)).
			e.db = dbMissing
			e.Message = fmt.Sprintf("odoo.database %q: this Odoo has no such database (misspelt? renamed?) — Odoo answered: %s",
				c.cfg.Database, e.Message)
		}
		return e
	}
	// Odoo 17 omits "result" when the method returned None (18 and 19
	// answer null): success, for a call that expects nothing back.
	if out == nil {
		return nil
	}
	if e := noResult(op, env.Result, out); e != nil {
		return e
	}
	if len(env.Result) == 0 {
		return nil
	}
	if err := json.Unmarshal(env.Result, out); err != nil {
		return &Error{Op: op, Name: "decode", Message: "unexpected result shape", Class: Transient, Err: err}
	}
	return nil
}

// json2 performs one JSON-2 call.
func (c *Client) json2(ctx context.Context, op, model, method string, params map[string]any, out any) error {
	hdr := http.Header{"Authorization": {"bearer " + c.cfg.APIKey}}
	if c.cfg.Database != "" {
		hdr.Set("X-Odoo-Database", c.cfg.Database)
	}
	body, _, err := c.do(ctx, op, http.MethodPost, "/json/2/"+url.PathEscape(model)+"/"+url.PathEscape(method), params, hdr)
	if err != nil {
		var oe *Error
		if errors.As(err, &oe) && oe.page != "" {
			c.diagnose(ctx, oe)
		}
		return err
	}
	if out == nil {
		return nil
	}
	if e := noResult(op, body, out); e != nil {
		return e
	}
	if len(body) == 0 {
		return nil
	}
	if err := json.Unmarshal(body, out); err != nil {
		// Transient, like every answer the agent cannot read: nothing was
		// refused, so nothing is dead-lettered (status shows the error).
		return &Error{Op: op, Name: "decode", Message: "unexpected result shape", Class: Transient, Err: err}
	}
	return nil
}

// noResult is the error of a result that is absent or null for a call
// that expects a value in out: every method the client decodes an answer
// of (search_read, read, load, fields_get, context_get, version, ...)
// returns one, so none is not Odoo's answer — a proxy's, or the request
// echoed back — and must not read as no records found or a login refused.
// A *json.RawMessage takes anything (action_validate's True, a dict, or
// None). nil when there is one.
func noResult(op string, result []byte, out any) *Error {
	if _, raw := out.(*json.RawMessage); raw {
		return nil
	}
	switch t := bytes.TrimSpace(result); {
	case len(t) == 0:
		return notOdoos(op, "an answer without a result (none)", nil)
	case string(t) == "null":
		return notOdoos(op, "an answer without a result (null)", nil)
	}
	return nil
}

// notOdoos is the transient "decode" error of an answer with status 200
// that is not Odoo's answer to the call op (a proxy's, a gateway's, the
// request echoed back): held and retried, never taken for a success nor
// a refusal. err says why it did not decode, when it did not.
func notOdoos(op, msg string, err error) *Error {
	return &Error{Op: op, Name: "decode", Status: http.StatusOK, Class: Transient, Message: msg, Err: err}
}

// answersID reports whether a JSON-RPC answer's id (raw) is the request's:
// Odoo echoes it; an answer to another request, or none, says nothing
// about this call.
func answersID(raw json.RawMessage, id int64) bool {
	return string(bytes.TrimSpace(raw)) == strconv.FormatInt(id, 10)
}

// send sends one request bounded by the configured timeout and returns the
// answer, its body read, whatever its status; an error when none came.
func (c *Client) send(ctx context.Context, op, method, path string, payload any, hdr http.Header) (*http.Response, []byte, error) {
	if c.cfg.Wait != nil {
		if err := c.cfg.Wait(ctx); err != nil {
			return nil, nil, &Error{Op: op, Message: "waiting for the request rate", Class: Transient, Err: err}
		}
	}
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	var rd io.Reader
	if payload != nil {
		b, err := json.Marshal(payload)
		if err != nil {
			return nil, nil, &Error{Op: op, Name: "encode", Message: err.Error(), Class: Permanent}
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base.String()+path, rd)
	if err != nil {
		return nil, nil, &Error{Op: op, Message: "build request", Class: Permanent, Err: err}
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	if payload != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "plantedge-odoo")
	start := time.Now()
	resp, err := c.hc.Do(req)
	if err != nil {
		c.recheck.Store(true)
		return nil, nil, c.transportError(op, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse))
	if err != nil {
		c.recheck.Store(true)
		return nil, nil, c.transportError(op, err)
	}
	c.log.Debug("call", "op", op, "status", resp.StatusCode, "elapsed", time.Since(start))
	return resp, body, nil
}

// do sends one request bounded by the configured timeout and returns the
// body of a 200 answer; anything else becomes an *Error.
func (c *Client) do(ctx context.Context, op, method, path string, payload any, hdr http.Header) ([]byte, http.Header, error) {
	resp, body, err := c.send(ctx, op, method, path, payload, hdr)
	if err != nil {
		return nil, nil, err
	}
	if resp.StatusCode == http.StatusOK {
		if !json.Valid(body) {
			// Odoo answers JSON; a 200 with anything else is a page of
			// something in front of it (a maintenance page, a login
			// form): Odoo is not reachable yet, nothing was refused.
			c.recheck.Store(true)
			return nil, nil, notOdoos(op, "not an Odoo answer (a proxy's page?): "+c.clean(bodyText(body), 200), nil)
		}
		c.answered.Store(time.Now().UnixNano())
		return body, resp.Header, nil
	}
	if resp.StatusCode >= 300 && resp.StatusCode < 400 {
		// Transient: a proxy may redirect to a maintenance page during an
		// upgrade; a moved Odoo shows in status until odoo.url is fixed.
		c.recheck.Store(true)
		to := resp.Header.Get("Location")
		if u, err := resp.Request.URL.Parse(to); err == nil {
			to = u.Redacted()
		}
		return nil, nil, &Error{Op: op, Status: resp.StatusCode, Class: Transient,
			Message: c.clean(fmt.Sprintf("redirected to %s; not followed (it could carry the API key elsewhere): if Odoo moved, set odoo.url to its address", to), maxMessage)}
	}
	switch resp.StatusCode {
	case http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout, statusOriginTimeout, statusOriginUnknown:
		c.recheck.Store(true) // Odoo itself is not there (restarting, upgrading)
	default:
		c.answered.Store(time.Now().UnixNano())
	}
	return nil, nil, c.statusError(op, resp, body)
}

func (c *Client) transportError(op string, err error) *Error {
	e := &Error{Op: op, Class: Transient, Err: err, timedOut: mayHaveCommitted(err)}
	var ue *url.Error
	if errors.As(err, &ue) {
		e.Err = ue.Err // the URL carries no secret but is noise in every message
	}
	if errors.Is(err, context.DeadlineExceeded) {
		e.Message, e.timeout = "timed out", true
	}
	// An expired certificate (Odoo's, the proxy's, a CA's): said with its
	// date, Go's words say "expired or is not yet valid".
	e.Message = cmp.Or(e.Message, connectors.ExplainCertDate(err, time.Now()))
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		e.Message, e.timeout = "timed out", true
	}
	return e
}

func (c *Client) statusError(op string, resp *http.Response, body []byte) *Error {
	e := &Error{Op: op, Status: resp.StatusCode, RetryAfter: parseRetryAfter(resp.Header.Get("Retry-After"), time.Now())}
	var obj struct {
		Name    string `json:"name"`
		Message string `json:"message"`
	}
	var str string
	bare := false // a bare JSON string: early 19 builds' JSON-2 errors
	switch {
	case json.Unmarshal(body, &obj) == nil && (obj.Name != "" || obj.Message != ""):
		// The name too is the server's text: it may echo the request.
		e.Name, e.Message = c.clean(obj.Name, maxName), obj.Message
	case json.Unmarshal(body, &str) == nil:
		e.Message, bare = str, true
	default:
		e.Message = c.clean(bodyText(body), 200)
		if e.Message == "" {
			e.Message = http.StatusText(resp.StatusCode)
		}
	}
	e.Message = c.clean(e.Message, maxMessage)
	e.Class = classifyStatus(resp.StatusCode, e.Name)
	page := e.Message
	if resp.StatusCode == http.StatusNotFound && !json.Valid(body) {
		// Odoo's JSON-2 answers a missing record with JSON: a page is a
		// path nothing serves — a proxy routing elsewhere for a while (a
		// maintenance), or an odoo.url with a wrong path — or Odoo 19
		// serving the request without a database (json2 asks it which:
		// diagnose). No record is missing; retried like Odoo being away.
		e.Class = Transient
		e.Message = "not found (a page, not Odoo's answer: a proxy in front of Odoo, or a wrong path in odoo.url?): " + e.Message
	}
	jsonRPC := resp.Request != nil && resp.Request.URL != nil && !strings.Contains(resp.Request.URL.Path, "/json/2/")
	if resp.StatusCode == http.StatusNotFound && !json.Valid(body) && !jsonRPC {
		e.page, e.werkzeugPage = page, werkzeugNotFoundPage(body)
	}
	if resp.StatusCode == http.StatusNotFound && !json.Valid(body) && !jsonRPC && resp.Request != nil {
		// A JSON-2 route answered with a page may also be a server
		// without JSON-2: Odoo 17 put back after a failed upgrade to 19,
		// a proxy switched to it, no call failed — the 404 was retried
		// for good (the odooupgrade probe; 18 sends the caller to its
		// login page, a redirect, which rechecks already). The next call
		// reads the version again first.
		c.recheck.Store(true)
	}
	if resp.StatusCode == http.StatusNotFound && !jsonRPC && noDatabasePage(body) {
		// Odoo's own page for a request it serves without a database
		// (http.py NOT_FOUND_NODB): not a proxy's, not a wrong path.
		e.noDBPage = true
		c.noDatabase(e, "Odoo answered 404: "+noDatabaseText)
	}
	if resp.StatusCode == http.StatusForbidden && (jsonRPC || e.Name == "" && (str == "" || !json.Valid(body))) {
		// Odoo's 403 is JSON-2's AccessError, which names its exception
		// (early 19 builds: a bare JSON string); JSON-RPC answers 200. Any
		// other 403 comes from something in front of Odoo (a deny during a
		// maintenance, an address allow-list, a web firewall or API
		// gateway, in HTML or JSON of its own: the review). It says
		// nothing about the records: they are kept and sent again.
		e.Class = Transient
		e.Message = "forbidden by something in front of Odoo, not by Odoo (a proxy's access rule or maintenance block, a firewall?): " + e.Message
	}
	if e.Name == "" && (resp.StatusCode != http.StatusBadRequest || jsonRPC || !bare) {
		// Odoo answers none of these with its JSON (JSON-2's 400, a bad
		// body, names its exception or is a bare JSON string; JSON-RPC
		// answers 200): a page or a gateway's own JSON (an API gateway's
		// {"message":"Bad Request"}), of something in front of Odoo or of
		// Odoo's web layer, which refuses the request's form or size, not a
		// record.
		frontRefusal(e, resp)
	}
	if resp.StatusCode == http.StatusUnauthorized && !json.Valid(body) {
		// Odoo's 401 is JSON: this one comes from something in front of it
		// (a proxy's own login), and says nothing about the API key.
		e.Class = Transient
		e.Message = "refused by something in front of Odoo, not by Odoo (a proxy's login?): " + e.Message
	}
	return e
}

// frontRefusal makes e, an answer with one of these statuses that is not
// Odoo's (no exception named), say what refused the request, and whether
// sending it again can help:
//
//   - 413: the request's body is larger than something in front of Odoo
//     takes (nginx's client_max_body_size, 1m by default; a web firewall's
//     body limit, ModSecurity's 128 KiB): TooLarge, Transient — a smaller
//     request passes (the agent's loads of downtime lines split, and
//     ExternalIDs' pages; its other requests are all far smaller than a
//     load).
//   - 400, 405, 414, 431: the request's form (its headers or cookies, its
//     method, its URL), the same for every call the agent makes: Transient,
//     held and retried until the proxy is fixed, never a record's refusal
//     (dead-lettering every record one by one, as a Permanent 400 page did).
func frontRefusal(e *Error, resp *http.Response) {
	var why string
	switch resp.StatusCode {
	case http.StatusRequestEntityTooLarge:
		e.Class, e.tooLarge = Transient, true
		size := "a request"
		if resp.Request != nil && resp.Request.ContentLength > 0 {
			size = fmt.Sprintf("a request of %d bytes", resp.Request.ContentLength)
		}
		e.Message = size + " refused as too large by something in front of Odoo, not by Odoo (a proxy's limit on a request's body: nginx's client_max_body_size, 1m by default; a web firewall's): " + e.Message
		return
	case http.StatusBadRequest:
		why = "refused as a bad request by something in front of Odoo or by Odoo's web layer, not Odoo's answer to the call (a proxy's limit on headers or cookies, https sent to its plain-http port, or the reverse?): "
	case http.StatusMethodNotAllowed:
		why = "method not allowed by something in front of Odoo, not Odoo's answer to the call (a proxy's rule, or odoo.url not Odoo's address?): "
	case http.StatusRequestURITooLong:
		why = "URL too long for something in front of Odoo, not Odoo's answer to the call (a proxy's limit, or a long path in odoo.url?): "
	case http.StatusRequestHeaderFieldsTooLarge:
		why = "request headers too large for something in front of Odoo, not Odoo's answer to the call (a proxy's limit on headers): "
	default:
		return
	}
	e.Class = Transient
	e.Message = why + e.Message
}

// maxMessage caps the length of an error message taken from the server: it
// goes into logs, status and dead-letter reasons (a server that echoes a
// large request, or a traceback, must not fill them).
const maxMessage = 2000

// maxName caps an exception name taken from the server (Odoo's are
// module.Class, well below).
const maxName = 200

// clean prepares text that came from the server for logs and status: the
// API key removed first (so that cutting cannot leave part of it), then cut
// to limit bytes on a character boundary.
func (c *Client) clean(s string, limit int) string {
	if c.cfg.APIKey != "" {
		s = strings.ReplaceAll(s, c.cfg.APIKey, "[redacted]")
	}
	if len(s) <= limit {
		return s
	}
	cut := limit
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "..."
}

// MajorOf is the major version of a server version string such as "18.0",
// "saas~18.2" or "19.0+e" (0 when it has none).
func MajorOf(version string) int { return parseMajor(version) }
