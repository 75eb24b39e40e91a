package opcua

import (
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/gopcua/opcua/ua"

	"github.com/plantedge/plantedge/connectors"
)

// Defaults applied by New to zero Config fields.
const (
	DefaultPublishingInterval = time.Second
	DefaultPollInterval       = time.Second
	DefaultQueueSize          = 10
	DefaultHeartbeatTimeout   = 30 * time.Second
	DefaultBackoffMin         = 500 * time.Millisecond
	DefaultBackoffMax         = 30 * time.Second
	DefaultRequestTimeout     = 10 * time.Second
)

// Acquisition modes.
const (
	ModeSubscribe = "subscribe"
	ModePoll      = "poll"
)

// Config configures one OPC UA server connection.
type Config struct {
	Name     string
	Endpoint string

	// SecurityPolicy is None, Basic256Sha256, Aes128_Sha256_RsaOaep or
	// Aes256_Sha256_RsaPss; SecurityMode is None, Sign or SignAndEncrypt.
	// "" means None (a secure policy with an empty mode means SignAndEncrypt).
	SecurityPolicy, SecurityMode string
	// CertFile and KeyFile hold the client certificate and RSA key (PEM or
	// DER). If both are empty and security is not None, a self-signed pair is
	// generated once into DataDir (opcua-<name>.crt/.key) and reused.
	CertFile, KeyFile string
	DataDir           string
	// ServerThumbprint optionally pins the server certificate (hex SHA-1,
	// separators ignored); a mismatch refuses the connection.
	ServerThumbprint string
	// Username and Password select user/password authentication; empty
	// Username means anonymous.
	Username, Password string

	Mode               string // "subscribe" (default) or "poll"
	PublishingInterval time.Duration
	SamplingInterval   time.Duration // default: PublishingInterval
	PollInterval       time.Duration
	QueueSize          uint32
	// HeartbeatTimeout: no data change and no server-time (ns=0;i=2258)
	// update for this long tears the session down and rebuilds it.
	HeartbeatTimeout time.Duration
	// BackoffMin and BackoffMax bound the reconnect backoff (exponential,
	// full jitter).
	BackoffMin, BackoffMax time.Duration
	// RequestTimeout bounds every single request and the connect attempt.
	RequestTimeout time.Duration

	// Nodes are the node ids to watch, in any OPC UA string form
	// (ns=2;s=.., ns=2;i=.., ns=2;g=.., ns=2;b=.., nsu=<uri>;s=..).
	Nodes []string
	// Index, for a position in Nodes, reads only that element (0-based) of
	// the array the node holds: its samples' Address
	// is connectors.ElementAddress. One node may be listed again with
	// another index, or without one.
	Index  map[int]uint32
	Logger *slog.Logger
	// Pins, if set, keeps what namespace each ns=N node meant (see
	// NamespacePins); nil reads ns=N as the server numbers it now.
	Pins NamespacePins
	// Sessions, if set, keeps what closes the source's open session
	// (see SessionKeeper), so that the next process closes the session a
	// killed one left; nil keeps nothing.
	Sessions SessionKeeper
	// OnConnect, if set, is called at each session's start, before the
	// source shows connected and before any of the session's values. It
	// must not block.
	OnConnect func()
	// OnDisconnect, if set, is called when a session OnConnect announced
	// ends by a failure (not when Run ends, nor for the new session taken
	// after refused subscriptions), before the backoff. It must not block.
	OnDisconnect func()
	// ServerCertificates, if set, is called with the certificate chain of
	// the endpoint a secure session (not SecurityMode None) is made with,
	// at each connection: the agent shows when it expires. It must not
	// block.
	ServerCertificates func([]*x509.Certificate)

	// channelLifetime is the secure channel token lifetime asked for
	// (gopcua renews the token at 75 % of it); 0 is gopcua's one hour.
	// Tests shorten it.
	channelLifetime time.Duration
	// pollRetry replaces pollRetryEvery (tests).
	pollRetry time.Duration
	// slotRetry replaces slotRetryMin (tests).
	slotRetry time.Duration
	// sessionTimeout replaces the session lifetime asked for (tests: a
	// server revising it up is met within a test's time).
	sessionTimeout time.Duration
}

// security policy names accepted in Config, mapped to their URIs.
var policyURIs = map[string]string{
	"None":                  ua.SecurityPolicyURINone,
	"Basic256Sha256":        ua.SecurityPolicyURIBasic256Sha256,
	"Aes128_Sha256_RsaOaep": ua.SecurityPolicyURIAes128Sha256RsaOaep,
	"Aes256_Sha256_RsaPss":  ua.SecurityPolicyURIAes256Sha256RsaPss,
}

var securityModes = map[string]ua.MessageSecurityMode{
	"None":           ua.MessageSecurityModeNone,
	"Sign":           ua.MessageSecurityModeSign,
	"SignAndEncrypt": ua.MessageSecurityModeSignAndEncrypt,
}

// nodeRef is a configured node id, parsed as far as possible without a
// connection (namespace URIs are resolved per session).
type nodeRef struct {
	addr   string     // exactly as configured; with an index, connectors.ElementAddress
	index  *uint32    // the array element read, nil for the whole value
	id     *ua.NodeID // complete unless nsURI is set
	nsURI  string     // nsu= form: namespace URI to resolve
	idPart string     // the identifier (i=, s=, g=, b=) without the namespace
}

// valueID is what a Read of n's value asks for: its whole value, also for
// an element (see read).
func (n nodeRef) valueID(nid *ua.NodeID) *ua.ReadValueID {
	return &ua.ReadValueID{NodeID: nid, AttributeID: ua.AttributeIDValue}
}

// read narrows the node's value to n's element (see element); a node
// without an index is read whole. The element is taken here, not asked of
// the server with an IndexRange: a server that ignores the range (gopcua's
// own) answers the whole array, and one that applies it an array of one —
// alike for an array of one element, so index 1 of [10] would have read 10
// as good, and the next element's value once the array grew (review5 F4).
// The whole array of a PLC's counters is small.
func (n nodeRef) read(dv *ua.DataValue) *ua.DataValue {
	if n.index == nil {
		return dv
	}
	return element(dv, *n.index)
}

// checkIdentifier rejects identifiers gopcua would silently read as strings.
func checkIdentifier(s, idPart string) error {
	for _, p := range []string{"i=", "s=", "g=", "b="} {
		if strings.HasPrefix(idPart, p) {
			return nil
		}
	}
	return fmt.Errorf("node id %q: identifier must start with i=, s=, g= or b=", s)
}

// CheckNodeID reports whether s is a node id in a form the agent reads
// (ns=, nsu=, or a namespace 0 id), and why not.
func CheckNodeID(s string) error {
	_, err := parseNode(s)
	return err
}

// parseNode checks a node id string in any OPC UA form.
func parseNode(s string) (nodeRef, error) {
	if strings.TrimSpace(s) == "" {
		return nodeRef{}, errors.New("empty node id")
	}
	if rest, ok := strings.CutPrefix(s, "nsu="); ok {
		uri, idPart, found := strings.Cut(rest, ";")
		if !found || uri == "" {
			return nodeRef{}, fmt.Errorf("node id %q: nsu= needs a namespace uri and an identifier", s)
		}
		if err := checkIdentifier(s, idPart); err != nil {
			return nodeRef{}, err
		}
		id, err := ua.ParseNodeID("ns=0;" + idPart)
		if err != nil {
			return nodeRef{}, fmt.Errorf("node id %q: %w", s, err)
		}
		return nodeRef{addr: s, id: id, nsURI: uri, idPart: idPart}, nil
	}
	idPart := s
	if strings.HasPrefix(s, "ns=") {
		_, idPart, _ = strings.Cut(s, ";")
	}
	if err := checkIdentifier(s, idPart); err != nil {
		return nodeRef{}, err
	}
	id, err := ua.ParseNodeID(s)
	if err != nil {
		return nodeRef{}, fmt.Errorf("node id %q: %w", s, err)
	}
	return nodeRef{addr: s, id: id, idPart: idPart}, nil
}

// NamespacePins keeps, for each node written with a namespace index (ns=N,
// N > 0), the namespace URI that index stood for when the node was first
// read. A server may renumber its namespaces (restarted with a namespace
// added in front of ours): the node is then read where its URI went, not
// at the old number, which would be another namespace's node of the same
// name (counted as if it were ours) or none. Implementations must be safe
// for use by the Source's goroutine; the agent keeps them in the buffer
// file, so they hold across restarts of both.
type NamespacePins interface {
	NamespacePin(node string) (uri string, ok bool)
	SetNamespacePin(node, uri string) error
}

// SessionKeeper keeps, durably, what closes the session a source has open
// on its server (its authentication token, the server nonce and
// certificate, and the server, security and user it was made with), so
// that the next process closes the session a killed one left before its
// first connection rather than leave it holding a server's session slot
// for its lifetime (the agent keeps it in its buffer file). The kept
// bytes open no session by themselves: activating the session again takes
// the user's credentials and, on a secure channel, the client's
// certificate. Implementations must be safe for use by the Source's
// goroutines and never log what they keep.
type SessionKeeper interface {
	// KeptSession returns what was kept; nil when nothing is.
	KeptSession() ([]byte, error)
	// KeepSession keeps b in place of what was kept; nil forgets it.
	KeepSession(b []byte) error
}

// DeliveredTimes is a SessionKeeper that also tells what the sink has
// kept of the source's earlier runs. A run killed (SIGKILL, a power cut)
// leaves its session's subscription on the server, with the changes made
// since and the answers the run was sent and had not acknowledged — which
// may have reached the sink before the kill. With it, the next run takes
// them all (Republish too, as for a lost link's session) and drops each
// value whose source time is not after DeliveredTime of its address;
// without it, only what the server never sent that run (Publish): no value
// comes twice, but the answers the server sent as the run was killed (to
// the Publish requests it had waiting) are lost.
type DeliveredTimes interface {
	SessionKeeper
	// DeliveredTime returns the source time of the newest value of
	// address (a Sample.Address of this source) the sink keeps from
	// earlier runs; zero when none is known.
	DeliveredTime(address string) time.Time
}

// NamespacePinsSetter is NamespacePins that can also keep several pins at
// once: the pins a session sets as it resolves its nodes are kept with one
// SetNamespacePins (for the agent, one durable write of the buffer file)
// rather than one SetNamespacePin each — at the first session of 1,000
// ns=N nodes those were 1,000 commits one after the other, seconds before
// the first value was subscribed to (the IngestOPCUA benchmark: 2.3–3.1 s
// under load against 30 ms).
type NamespacePinsSetter interface {
	NamespacePins
	SetNamespacePins(pins map[string]string) error
}

// pinsDeferred is a NamespacePins whose sets wait in memory until keep:
// what one resolution of a session's nodes pins is kept at once.
type pinsDeferred struct {
	NamespacePins
	set map[string]string // node -> uri, set and not kept yet
}

// deferPins wraps pins for one resolution (nil stays nil).
func deferPins(pins NamespacePins) *pinsDeferred {
	if pins == nil {
		return nil
	}
	return &pinsDeferred{NamespacePins: pins, set: map[string]string{}}
}

// pinsOrNil is d as NamespacePins: nil when d is (no pins kept).
func pinsOrNil(d *pinsDeferred) NamespacePins {
	if d == nil {
		return nil
	}
	return d
}

func (d *pinsDeferred) NamespacePin(node string) (string, bool) {
	if uri, ok := d.set[node]; ok {
		return uri, true
	}
	return d.NamespacePins.NamespacePin(node)
}

func (d *pinsDeferred) SetNamespacePin(node, uri string) error {
	d.set[node] = uri
	return nil
}

// keep keeps the pins set: with one SetNamespacePins where the pins can,
// else one SetNamespacePin each, in node order. A failure leaves them to
// be pinned at the next session (the nodes are read as written).
func (d *pinsDeferred) keep() error {
	if d == nil || len(d.set) == 0 {
		return nil
	}
	set := d.set
	d.set = map[string]string{}
	if b, ok := d.NamespacePins.(NamespacePinsSetter); ok {
		return b.SetNamespacePins(set)
	}
	for _, node := range slices.Sorted(maps.Keys(set)) {
		if err := d.NamespacePins.SetNamespacePin(node, set[node]); err != nil {
			return err
		}
	}
	return nil
}

// meantIndexes returns, for each namespace index nodes are written with
// (ns=N), the URI their pins say it meant (nil without pins).
func meantIndexes(nodes []nodeRef, pins NamespacePins) map[int]string {
	if pins == nil {
		return nil
	}
	meant := map[int]string{}
	for _, n := range nodes {
		if n.nsURI != "" || n.id.Namespace() == 0 {
			continue
		}
		if pin, ok := pins.NamespacePin(n.addr); ok {
			meant[int(n.id.Namespace())] = pin
		}
	}
	return meant
}

// pinned resolves an ns=N node id against the session's namespace array
// ns and its pin: the first sight pins the URI index N has now; later, a
// different URI at N moves the node to the pinned URI's index (moved says
// from what to what), and a pinned URI the server no longer has makes the
// node unavailable. meant (meantIndexes) is what ns=N meant for the
// source's other nodes: a node not pinned yet (added to the file since)
// whose N now numbers another URI is unavailable too — it could mean
// either, and reading the other one books another machine's pieces.
func (n nodeRef) pinned(ns []string, pins NamespacePins, meant map[int]string) (id *ua.NodeID, moved string, err error) {
	idx := int(n.id.Namespace())
	if n.nsURI != "" || idx == 0 || pins == nil {
		id, err = n.resolve(ns)
		return id, "", err
	}
	cur := ""
	if idx < len(ns) {
		cur = ns[idx]
	}
	pin, ok := pins.NamespacePin(n.addr)
	if !ok {
		if m, ok := meant[idx]; ok && m != cur {
			return nil, "", fmt.Errorf("node id %s: ns=%d meant %s for this server's other nodes written ns=%d (when the agent first read them), but the server numbers %q as %d now: write the node as nsu=<uri>;%s to say which",
				n.addr, idx, m, idx, cur, idx, n.idPart)
		}
		if cur != "" {
			_ = pins.SetNamespacePin(n.addr, cur) // failed: pinned at the next session; read as written
		}
		return n.id, "", nil
	}
	if pin == cur {
		return n.id, "", nil
	}
	for j, uri := range ns {
		if uri == pin {
			id, err := ua.ParseNodeID(fmt.Sprintf("ns=%d;%s", j, n.idPart))
			if err != nil {
				return nil, "", fmt.Errorf("node id %s: %w", n.addr, err)
			}
			return id, fmt.Sprintf("ns=%d (%s) is now ns=%d", idx, pin, j), nil
		}
	}
	return nil, "", fmt.Errorf("node id %s: its namespace %s (ns=%d when first read) is gone from the server, whose ns=%d is now %q: write the node as nsu=<uri>;%s",
		n.addr, pin, idx, idx, cur, n.idPart)
}

// resolve returns the node id for a session whose namespace array is ns.
func (n nodeRef) resolve(ns []string) (*ua.NodeID, error) {
	if n.nsURI == "" {
		return n.id, nil
	}
	for i, uri := range ns {
		if uri == n.nsURI {
			id, err := ua.ParseNodeID(fmt.Sprintf("ns=%d;%s", i, n.idPart))
			if err != nil {
				return nil, fmt.Errorf("node id %s: %w", n.addr, err)
			}
			return id, nil
		}
	}
	return nil, fmt.Errorf("node id %s: namespace uri %q not in the server's namespace array", n.addr, n.nsURI)
}

// security is the validated security selection.
type security struct {
	policyURI  string
	mode       ua.MessageSecurityMode
	thumbprint []byte // pinned server certificate SHA-1, nil = no pin
}

func (s security) none() bool { return s.policyURI == ua.SecurityPolicyURINone }

// parseSecurity validates policy, mode and pin.
func parseSecurity(policy, mode, pin string) (security, []error) {
	var errs []error
	var sec security
	if policy == "" {
		policy = "None"
	}
	uri, ok := policyURIs[policy]
	if !ok {
		errs = append(errs, fmt.Errorf("security_policy %q: want None, Basic256Sha256, Aes128_Sha256_RsaOaep or Aes256_Sha256_RsaPss", policy))
	}
	sec.policyURI = uri
	if mode == "" {
		mode = "None"
		if policy != "None" {
			mode = "SignAndEncrypt"
		}
	}
	m, ok := securityModes[mode]
	if !ok {
		errs = append(errs, fmt.Errorf("security_mode %q: want None, Sign or SignAndEncrypt", mode))
	}
	sec.mode = m
	if (policy == "None") != (mode == "None") && len(errs) == 0 {
		errs = append(errs, fmt.Errorf("security_policy %s with security_mode %s: None must be paired with None", policy, mode))
	}
	if pin != "" {
		tp, err := parseThumbprint(pin)
		if err != nil {
			errs = append(errs, err)
		}
		sec.thumbprint = tp
	}
	return sec, errs
}

// CheckThumbprint reports whether s is a certificate's SHA-1 as a pin is
// written (40 hex digits; colons, spaces or dashes between them).
func CheckThumbprint(s string) error {
	_, err := parseThumbprint(s)
	return err
}

func parseThumbprint(s string) ([]byte, error) {
	clean := strings.NewReplacer(":", "", " ", "", "-", "").Replace(strings.TrimSpace(s))
	b, err := hex.DecodeString(clean)
	if err != nil || len(b) != 20 {
		return nil, fmt.Errorf("server_thumbprint %q: want 40 hex digits (SHA-1)", s)
	}
	return b, nil
}

// withDefaults fills zero fields.
func (c Config) withDefaults() Config {
	if c.Mode == "" {
		c.Mode = ModeSubscribe
	}
	if c.PublishingInterval <= 0 {
		c.PublishingInterval = DefaultPublishingInterval
	}
	if c.SamplingInterval <= 0 {
		c.SamplingInterval = c.PublishingInterval
	}
	if c.PollInterval <= 0 {
		c.PollInterval = DefaultPollInterval
	}
	if c.QueueSize == 0 {
		c.QueueSize = DefaultQueueSize
	}
	if c.HeartbeatTimeout <= 0 {
		c.HeartbeatTimeout = DefaultHeartbeatTimeout
	}
	if c.BackoffMin <= 0 {
		c.BackoffMin = DefaultBackoffMin
	}
	if c.BackoffMax <= 0 {
		c.BackoffMax = DefaultBackoffMax
	}
	if c.RequestTimeout <= 0 {
		c.RequestTimeout = DefaultRequestTimeout
	}
	return c
}

// validate returns every problem found, joined.
func (c Config) validate() (security, []nodeRef, error) {
	var errs []error
	if c.Name == "" {
		errs = append(errs, errors.New("name is empty"))
	}
	if !strings.HasPrefix(c.Endpoint, "opc.tcp://") {
		errs = append(errs, fmt.Errorf("endpoint %q: want opc.tcp://host:port[/path]", c.Endpoint))
	}
	sec, secErrs := parseSecurity(c.SecurityPolicy, c.SecurityMode, c.ServerThumbprint)
	errs = append(errs, secErrs...)
	if (c.CertFile == "") != (c.KeyFile == "") {
		errs = append(errs, errors.New("cert_file and key_file must be set together"))
	}
	if len(secErrs) == 0 && GeneratesCert(c.SecurityPolicy, c.CertFile) && c.DataDir == "" {
		errs = append(errs, errors.New("security needs cert_file/key_file or a data_dir to keep a generated certificate"))
	}
	if c.Mode != ModeSubscribe && c.Mode != ModePoll {
		errs = append(errs, fmt.Errorf("mode %q: want subscribe or poll", c.Mode))
	}
	if c.BackoffMin > c.BackoffMax {
		errs = append(errs, fmt.Errorf("backoff min %s > max %s", c.BackoffMin, c.BackoffMax))
	}
	if c.Mode == ModeSubscribe && c.HeartbeatTimeout < 2*c.PublishingInterval {
		errs = append(errs, fmt.Errorf("heartbeat timeout %s must be at least twice the publishing interval %s", c.HeartbeatTimeout, c.PublishingInterval))
	}
	if len(c.Nodes) == 0 {
		errs = append(errs, errors.New("no nodes configured"))
	}
	seen := make(map[string]bool, len(c.Nodes))
	nodes := make([]nodeRef, 0, len(c.Nodes))
	for i, s := range c.Nodes {
		n, err := parseNode(s)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if idx, ok := c.Index[i]; ok {
			n.index, n.addr = &idx, connectors.ElementAddress(s, idx)
		}
		if seen[n.addr] {
			errs = append(errs, fmt.Errorf("node id %q listed twice", n.addr))
			continue
		}
		seen[n.addr] = true
		nodes = append(nodes, n)
	}
	if len(errs) > 0 {
		return security{}, nil, fmt.Errorf("opcua %s: invalid config: %w", c.Name, errors.Join(errs...))
	}
	return sec, nodes, nil
}
