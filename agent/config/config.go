// Package config loads and validates plantedge's YAML configuration: the
// agent's settings and the tag mapping that says which OPC UA node or MQTT
// topic is which machine's counter, run flag or downtime reason.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/big"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/plantedge/plantedge/connectors"
)

// Duration is a time.Duration that decodes from YAML strings such as "20ms",
// "5s" or "1m".
type Duration time.Duration

// D returns the duration as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// String formats the duration like time.Duration.
func (d Duration) String() string { return time.Duration(d).String() }

// OffDuration is a Duration that may also be written "off" (or YAML's
// false): 0, never.
type OffDuration Duration

// D returns the duration as a time.Duration.
func (d OffDuration) D() time.Duration { return time.Duration(d) }

// ParseOffDuration parses a duration (ParseDuration) or "off" (0).
func ParseOffDuration(s string) (OffDuration, error) {
	if strings.EqualFold(strings.TrimSpace(s), "off") {
		return 0, nil
	}
	d, err := ParseDuration(s)
	return OffDuration(d), err
}

// ParseDuration parses a Go duration string ("20ms", "1m30s"). A bare "0" is
// accepted; other unit-less numbers are rejected because they are ambiguous.
func ParseDuration(s string) (Duration, error) {
	s = strings.TrimSpace(s)
	if s == "0" {
		return 0, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		if _, nerr := strconv.ParseFloat(s, 64); nerr == nil {
			// 45 meant as minutes, or seconds: which is not known.
			return 0, fmt.Errorf("duration %q has no unit", s)
		}
		return 0, fmt.Errorf("invalid duration %q", s)
	}
	if d < 0 {
		return 0, fmt.Errorf("negative duration %q", s)
	}
	return Duration(d), nil
}

// ByteSize is a size in bytes that decodes from "1GiB", "512MiB", "64MB",
// "10kB" or a bare number of bytes.
type ByteSize int64

// String formats the size exactly, with the largest unit that divides it:
// binary down to MiB, then decimal (a size written "1TB" is "1TB", not
// "976562500KiB": the OT audit), then KiB.
func (b ByteSize) String() string {
	for _, u := range byteUnitsString {
		if b != 0 && int64(b)%u.n == 0 {
			return strconv.FormatInt(int64(b)/u.n, 10) + u.name
		}
	}
	return strconv.FormatInt(int64(b), 10)
}

var byteUnitsString = []byteUnit{
	{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20},
	{"TB", 1e12}, {"GB", 1e9}, {"MB", 1e6}, {"KiB", 1 << 10},
}

type byteUnit struct {
	name string
	n    int64
}

// ParseByteSize parses "1GiB", "512MiB", "64MB", "10kB" or a bare number of
// bytes: KiB, MiB, GiB, TiB and K, M, G, T are binary (2^10 …); kB (or KB),
// MB, GB, TB decimal (10^3 …), in any case.
func ParseByteSize(s string) (ByteSize, error) {
	t := strings.TrimSpace(s)
	i := 0
	for i < len(t) && t[i] >= '0' && t[i] <= '9' {
		i++
	}
	if i == 0 {
		return 0, fmt.Errorf("invalid size %q", s)
	}
	n, err := strconv.ParseInt(t[:i], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("invalid size %q", s)
	}
	frac := ""
	if i < len(t) && t[i] == '.' {
		// A fraction ("1.5GiB"): refused, saying so and with the whole
		// number of a smaller unit it means; read as a unit, it was
		// said to have an invalid unit ".5GiB".
		j := i + 1
		for j < len(t) && t[j] >= '0' && t[j] <= '9' {
			j++
		}
		if j == i+1 {
			return 0, fmt.Errorf("invalid size %q", s)
		}
		frac, i = t[:j], j
	}
	unit := strings.TrimSpace(t[i:])
	var mult int64
	switch strings.ToLower(unit) {
	case "", "b":
		mult = 1
	case "kb": // like MB and GB: decimal (KB was 1024, MB 10^6)
		mult = 1e3
	case "mb":
		mult = 1e6
	case "gb":
		mult = 1e9
	case "tb":
		mult = 1e12
	case "k", "kib":
		mult = 1 << 10
	case "m", "mib":
		mult = 1 << 20
	case "g", "gib":
		mult = 1 << 30
	case "t", "tib":
		mult = 1 << 40
	default:
		if frac != "" && strings.HasPrefix(unit, ".") {
			return 0, fmt.Errorf("invalid size %q", s)
		}
		return 0, fmt.Errorf("invalid size unit %q in %q", unit, s)
	}
	if frac != "" {
		return 0, fractionalSize(s, frac, mult)
	}
	if n > (1<<63-1)/mult {
		return 0, fmt.Errorf("size %q too large", s)
	}
	return ByteSize(n * mult), nil
}

// fractionalSize is the error for a size written with a fraction (num, of
// unit mult): it says so, and names the whole number of a smaller unit the
// size is, or the nearest below when it is no whole number of bytes.
func fractionalSize(s, num string, mult int64) error {
	r, ok := new(big.Rat).SetString(num)
	if !ok {
		return fmt.Errorf("invalid size %q", s)
	}
	r.Mul(r, new(big.Rat).SetInt64(mult))
	smaller := map[int64]byteUnit{
		1 << 40: {"GiB", 1 << 30}, 1 << 30: {"MiB", 1 << 20}, 1 << 20: {"KiB", 1 << 10}, 1 << 10: {"", 1},
		1e12: {"GB", 1e9}, 1e9: {"MB", 1e6}, 1e6: {"kB", 1e3}, 1e3: {"", 1},
	}[mult]
	if r.IsInt() && r.Num().IsInt64() {
		return fmt.Errorf("size %q has a fraction: a size is a whole number of its unit; write it as %q", s, ByteSize(r.Num().Int64()).String())
	}
	if smaller.n == 0 {
		return fmt.Errorf("size %q has a fraction: a size is a whole number of bytes", s)
	}
	below := new(big.Int).Quo(r.Num(), new(big.Int).Mul(r.Denom(), big.NewInt(smaller.n)))
	return fmt.Errorf("size %q has a fraction, and is no whole number of bytes: write a whole number of a smaller unit, such as %q", s, below.String()+smaller.name)
}

// Config is the whole configuration file.
type Config struct {
	Site     string        `yaml:"site"`     // required, [a-z0-9-]+
	DataDir  string        `yaml:"data_dir"` // default /var/lib/plantedge
	Listen   string        `yaml:"listen"`   // default 127.0.0.1:9464; or "unix:/path"
	Log      Log           `yaml:"log"`
	Buffer   Buffer        `yaml:"buffer"`
	Odoo     Odoo          `yaml:"odoo"`
	Forward  Forward       `yaml:"forward"`
	OPCUA    []OPCUAServer `yaml:"opcua"`
	MQTT     []MQTTBroker  `yaml:"mqtt"`
	Machines []Machine     `yaml:"machines"` // required, >= 1, unique ids

	// Path is the file the configuration was loaded from.
	Path string `yaml:"-"`
	// Warnings are problems that do not stop the agent but that an operator
	// must see (TLS verification off, ...). validate prints them.
	Warnings []Problem `yaml:"-"`
	// EndpointsOnly marks a Config from Endpoints: only site, data_dir,
	// listen, odoo.url, odoo.database and buffer.max_bytes were read (the
	// file does not load); there are no machines.
	EndpointsOnly bool `yaml:"-"`

	pos map[string]Pos // key path -> position of its value in the file
	// vias: key path -> the aliases its value was reached through
	// (Problem.Via), for a value in an anchor's text.
	vias map[string]string
}

// Log configures the agent's log output.
type Log struct {
	Level  string `yaml:"level"`  // debug|info|warn|error, default info
	Format string `yaml:"format"` // text|json, default text
}

// Buffer configures the durable buffer.
type Buffer struct {
	MaxBytes     ByteSize `yaml:"max_bytes"`     // default 1GiB, min 1MiB
	CommitWindow Duration `yaml:"commit_window"` // default 10ms, max 20ms
}

// Odoo configures the connection to Odoo.
type Odoo struct {
	URL        string   `yaml:"url"`      // required, http or https
	Database   string   `yaml:"database"` // required
	Username   string   `yaml:"username"` // required for jsonrpc
	APIKeyFile string   `yaml:"api_key_file"`
	Protocol   string   `yaml:"protocol"` // auto (default) | jsonrpc | json2
	Timeout    Duration `yaml:"timeout"`  // per call, default 30s
	// RequestLimit is how long Odoo may work on one request (its
	// limit_time_real, default 120 s): a request it did not answer may
	// still commit until then, so nothing more is sent before.
	RequestLimit       Duration `yaml:"request_limit"`
	CAFile             string   `yaml:"ca_file"`
	InsecureSkipVerify bool     `yaml:"insecure_skip_verify"`
	DefaultLoss        string   `yaml:"default_loss"` // default "Equipment Failure"
	// ScrapWhenShort is what a scrap booking does when Odoo has too little
	// of the product at the scrap's source location (its Insufficient
	// Quantity dialog): hold (default) leaves it a draft in Odoo for a
	// person to validate or discard; confirm confirms it, as the dialog's
	// Confirm does.
	ScrapWhenShort string `yaml:"scrap_when_short"`
}

// Forward configures how the buffer is forwarded to Odoo.
type Forward struct {
	Rate        float64  `yaml:"rate"`         // max Odoo HTTP requests per second, default 5
	BackoffMax  Duration `yaml:"backoff_max"`  // cap of exponential backoff, default 1m
	Interval    Duration `yaml:"interval"`     // forwarding round period when idle, default 2s
	AuthBackoff Duration `yaml:"auth_backoff"` // min wait after an authentication failure, default (and min) 60s
}

// OPCUAServer is one OPC UA server the agent reads from.
type OPCUAServer struct {
	Name               string   `yaml:"name"`
	Endpoint           string   `yaml:"endpoint"`        // opc.tcp://host:port[/path]
	SecurityPolicy     string   `yaml:"security_policy"` // None|Basic256Sha256|Aes128_Sha256_RsaOaep|Aes256_Sha256_RsaPss
	SecurityMode       string   `yaml:"security_mode"`   // None|Sign|SignAndEncrypt
	CertFile           string   `yaml:"cert_file"`
	KeyFile            string   `yaml:"key_file"`
	ServerThumbprint   string   `yaml:"server_thumbprint"` // hex SHA-1 of the server certificate
	Username           string   `yaml:"username"`
	PasswordFile       string   `yaml:"password_file"`
	PasswordEnv        string   `yaml:"password_env"` // or the name of an environment variable holding it
	Mode               string   `yaml:"mode"`         // subscribe (default) | poll
	PublishingInterval Duration `yaml:"publishing_interval"`
	SamplingInterval   Duration `yaml:"sampling_interval"`
	QueueSize          uint32   `yaml:"queue_size"`
	PollInterval       Duration `yaml:"poll_interval"`
	HeartbeatTimeout   Duration `yaml:"heartbeat_timeout"`
	BackoffMax         Duration `yaml:"backoff_max"`
}

// MQTTBroker is one MQTT broker the agent subscribes to.
type MQTTBroker struct {
	Name               string   `yaml:"name"`
	URL                string   `yaml:"url"`       // tcp:// ssl:// tls:// ws:// wss://
	ClientID           string   `yaml:"client_id"` // required and stable: it keys the persistent session
	Username           string   `yaml:"username"`
	PasswordFile       string   `yaml:"password_file"`
	PasswordEnv        string   `yaml:"password_env"` // or the name of an environment variable holding it
	CAFile             string   `yaml:"ca_file"`
	CertFile           string   `yaml:"cert_file"`
	KeyFile            string   `yaml:"key_file"`
	ServerName         string   `yaml:"server_name"`
	InsecureSkipVerify bool     `yaml:"insecure_skip_verify"`
	KeepAlive          Duration `yaml:"keep_alive"`  // default 30s
	BackoffMax         Duration `yaml:"backoff_max"` // default 30s
	// SparkplugRebirth lets the agent publish a Sparkplug B rebirth request
	// (NCMD Node Control/Rebirth) to an edge node one of its signals reads
	// when it cannot read that node's DATA by alias. Off by default: it is
	// the agent writing to the plant network, a decision for the OT
	// engineer, and the broker's ACL must let the client publish it.
	SparkplugRebirth bool `yaml:"sparkplug_rebirth"`
	// SparkplugCertificates has the agent read the BIRTH certificates a
	// Sparkplug-aware broker keeps (Sparkplug 3.0: every NBIRTH and DBIRTH
	// it passes on, retained on $sparkplug/certificates/spBv1.0/...) of
	// the edge nodes its signals read: their alias maps, so that DATA by
	// alias is read from the agent's start and after every reconnect,
	// without waiting for a BIRTH. Off by default: only a broker that is
	// Sparkplug aware keeps them current, and a stale one names metrics
	// wrongly.
	SparkplugCertificates bool `yaml:"sparkplug_certificates"`
}

// ACLSubject names whom the broker's ACL must allow: the username when
// one is set (Mosquitto's and most brokers' ACLs go by it), and the client
// id.
func (b MQTTBroker) ACLSubject() string {
	if b.Username != "" {
		return "user " + b.Username + " (client " + b.ClientID + ")"
	}
	return "client " + b.ClientID
}

// Machine maps one machine's signals to sources and names its Odoo work center.
type Machine struct {
	ID              string   `yaml:"id"`
	Workcenter      string   `yaml:"workcenter"`
	GoodCount       *Counter `yaml:"good_count"`
	ScrapCount      *Counter `yaml:"scrap_count"`
	Running         *Signal  `yaml:"running"`
	DowntimeReason  *Reason  `yaml:"downtime_reason"`
	BlockWorkcenter bool     `yaml:"block_workcenter"`
	// MinStop is the shortest stop booked as a downtime line; shorter ones
	// (a run bit chattering while a setter jogs the machine) are counted
	// in a metric only. 0 books every stop.
	MinStop Duration `yaml:"min_stop"`
	// Replaced marks the machine's PLC or gateway as replaced (any text, a
	// date say): when it differs from the mark its counters were read
	// under, each counter's next value is its new baseline, whatever the
	// old device's last value was. Change it while the old device is gone
	// and before the new one is read.
	Replaced string `yaml:"replaced"`
}

// SourceRef says where a signal is read: exactly one of OPCUA or MQTT.
type SourceRef struct {
	OPCUA *OPCUARef `yaml:"opcua"`
	MQTT  *MQTTRef  `yaml:"mqtt"`
}

// OPCUARef is a node on a configured OPC UA server.
type OPCUARef struct {
	Server string `yaml:"server"`
	Node   string `yaml:"node"`
	// Index, for a node that holds an array (a PLC's counters, one per
	// lane), reads only that element, 0-based (OPC UA IndexRange). Its own
	// key, not brackets in node: a node id may hold brackets of its own.
	Index *uint32 `yaml:"index"`
}

// Address is what the agent calls the value the signal reads, in its
// state, log and status: the node id, and for an element its index in
// brackets (connectors.ElementAddress).
func (r OPCUARef) Address() string {
	if r.Index == nil {
		return r.Node
	}
	return connectors.ElementAddress(r.Node, *r.Index)
}

// MQTTRef is a topic (no wildcards) on a configured broker and, for JSON
// payloads, the dot path of the value and optionally of its source time.
// With Format sparkplug_b the topic is a Sparkplug B DATA topic and Field
// the metric's name (a name, not a path: metric names have slashes).
type MQTTRef struct {
	Broker         string `yaml:"broker"`
	Topic          string `yaml:"topic"`
	Field          string `yaml:"field"`
	TimestampField string `yaml:"timestamp_field"`
	Format         string `yaml:"format"`
}

// FormatSparkplugB is MQTTRef.Format for Sparkplug B (protobuf) payloads.
const FormatSparkplugB = "sparkplug_b"

// Sparkplug reports whether the reference reads a Sparkplug B metric.
func (r *MQTTRef) Sparkplug() bool { return r != nil && r.Format == FormatSparkplugB }

// SparkplugTopic is a Sparkplug B topic split into its parts:
// spBv1.0/<Group>/<Type>/<Node>[/<Device>].
type SparkplugTopic struct {
	Group, Type, Node, Device string
}

// ParseSparkplugTopic splits a Sparkplug B topic; ok is false for a topic
// not in the spBv1.0 namespace or with empty parts.
func ParseSparkplugTopic(topic string) (t SparkplugTopic, ok bool) {
	parts := strings.Split(topic, "/")
	if len(parts) < 4 || len(parts) > 5 || parts[0] != "spBv1.0" {
		return t, false
	}
	for _, p := range parts[1:] {
		if p == "" {
			return t, false
		}
	}
	t = SparkplugTopic{Group: parts[1], Type: parts[2], Node: parts[3]}
	if len(parts) == 5 {
		t.Device = parts[4]
	}
	return t, true
}

// With returns the topic of the same node (and device) for message type typ.
func (t SparkplugTopic) With(typ string) string {
	s := "spBv1.0/" + t.Group + "/" + typ + "/" + t.Node
	if t.Device != "" {
		s += "/" + t.Device
	}
	return s
}

// Birth is the BIRTH topic of t's node, or device (NBIRTH for an N
// message, DBIRTH for a D one).
func (t SparkplugTopic) Birth() string { return t.With(t.Type[:1] + "BIRTH") }

// NodeFilter is the subscription filter for every message of the edge
// node (its devices' too).
func (t SparkplugTopic) NodeFilter() string {
	return "spBv1.0/" + t.Group + "/+/" + t.Node + "/#"
}

// SparkplugCertificates prefixes the topics on which a Sparkplug-aware
// broker keeps the last NBIRTH and DBIRTH of each edge node and device,
// retained: $sparkplug/certificates/spBv1.0/<group>/NBIRTH/<node>[/<device>].
const SparkplugCertificates = "$sparkplug/certificates/"

// CertificateFilters are the subscription filters for the BIRTH
// certificates of the edge node and of its devices on a Sparkplug-aware
// broker: two, not one ending in "#", whose match of its parent level
// (the NBIRTH's topic) a broker may miss for retained messages (mochi
// does).
func (t SparkplugTopic) CertificateFilters() []string {
	c := SparkplugCertificates + "spBv1.0/" + t.Group
	return []string{c + "/NBIRTH/" + t.Node, c + "/DBIRTH/" + t.Node + "/+"}
}

// Filters are the subscription filters the agent makes for the edge node
// of t: its BIRTH certificates first (certificates: the broker's
// sparkplug_certificates), then every message of the node.
func (t SparkplugTopic) Filters(certificates bool) []string {
	if !certificates {
		return []string{t.NodeFilter()}
	}
	return append(t.CertificateFilters(), t.NodeFilter())
}

// Signal is a plain signal (running).
type Signal struct {
	SourceRef `yaml:",inline"`
	// RunningValues are the values that mean running, for a source that
	// sends a machine-state word or text (1 running, 2 fault; "EXECUTE",
	// "IDLE"): every other value is a stop. Empty: a run bit (true/false,
	// 1/0, running/stopped, on/off; a number other than 0 is running).
	RunningValues []string `yaml:"running_values"`
}

// Counter is a cumulative counter signal.
type Counter struct {
	SourceRef `yaml:",inline"`
	// Rollover is the modulus of a wrapping counter (65536 for a 16-bit
	// counter); 0 means it does not wrap.
	Rollover uint64 `yaml:"rollover"`
	// Factor is how many of the work order's units one step of the
	// counter makes (a 4-cavity tool counting strokes: 4; a counter in
	// grams for an order in kg: 0.001); nil means 1.
	Factor *float64 `yaml:"factor"`
	// QuietAfter (good_count only) is how long the machine may be shown
	// running with no value of this counter before status notes that its
	// pieces are not counted (a topic, field or node mistyped?): nil, the
	// default (15 minutes, longer when the counter's usual time between
	// values says so); 0 ("0" or "off"), never — a machine whose one
	// piece takes longer than any limit (a curing oven).
	QuietAfter *OffDuration `yaml:"quiet_after"`
}

// Per is the units one step of the counter makes (Factor, 1 if unset).
func (c *Counter) Per() float64 {
	if c == nil || c.Factor == nil {
		return 1
	}
	return *c.Factor
}

// Reason is a downtime reason signal and its mapping to Odoo loss names.
type Reason struct {
	SourceRef `yaml:",inline"`
	Map       map[string]string `yaml:"map"`
	// Default is the loss used for codes missing from Map; empty means
	// odoo.default_loss.
	Default string `yaml:"default"`
}

// Codes maps each code of Map as a source's code is read — without white
// space at its ends — to the entry of Map that serves it: the entry written
// so; else, of those written with white space that are the code without it
// (" S", "S "), the first in sort order, the same at every start. The
// mapping looks codes up so; validate warns of the entries never used.
func (r *Reason) Codes() map[string]string {
	out := make(map[string]string, len(r.Map))
	var spaced []string
	for code := range r.Map {
		if strings.TrimSpace(code) != code {
			spaced = append(spaced, code)
			continue
		}
		out[code] = code
	}
	slices.Sort(spaced)
	for _, code := range spaced {
		t := strings.TrimSpace(code)
		if _, taken := out[t]; !taken {
			out[t] = code
		}
	}
	return out
}

// Signal names as used in the YAML, in the order they are listed.
var SignalNames = []string{"good_count", "scrap_count", "running", "downtime_reason"}

// Refs returns the machine's configured signals by name, in SignalNames order.
func (m *Machine) Refs() []NamedRef {
	var out []NamedRef
	if m.GoodCount != nil {
		out = append(out, NamedRef{"good_count", m.GoodCount.SourceRef})
	}
	if m.ScrapCount != nil {
		out = append(out, NamedRef{"scrap_count", m.ScrapCount.SourceRef})
	}
	if m.Running != nil {
		out = append(out, NamedRef{"running", m.Running.SourceRef})
	}
	if m.DowntimeReason != nil {
		out = append(out, NamedRef{"downtime_reason", m.DowntimeReason.SourceRef})
	}
	return out
}

// CounterSource names the value a counter reads: server and node, or
// broker, topic and field ("" for no source). Two counters with the same
// read the same value.
func (r SourceRef) CounterSource() string {
	switch {
	case r.OPCUA != nil:
		return "OPC UA " + r.OPCUA.Server + " node " + r.OPCUA.Address()
	case r.MQTT != nil:
		if r.MQTT.Field == "" {
			return "MQTT " + r.MQTT.Broker + " topic " + r.MQTT.Topic
		}
		return "MQTT " + r.MQTT.Broker + " topic " + r.MQTT.Topic + " field " + r.MQTT.Field
	}
	return ""
}

// NamedRef is a signal name and its source.
type NamedRef struct {
	Signal string
	Ref    SourceRef
}

func defaultConfig() *Config {
	return &Config{
		DataDir: "/var/lib/plantedge",
		Listen:  "127.0.0.1:9464",
		Log:     Log{Level: "info", Format: "text"},
		Buffer:  Buffer{MaxBytes: 1 << 30, CommitWindow: Duration(10 * time.Millisecond)},
		Odoo:    Odoo{Protocol: "auto", Timeout: Duration(30 * time.Second), RequestLimit: Duration(2 * time.Minute), DefaultLoss: "Equipment Failure", ScrapWhenShort: "hold"},
		Forward: Forward{
			Rate:        5,
			BackoffMax:  Duration(time.Minute),
			Interval:    Duration(2 * time.Second),
			AuthBackoff: Duration(60 * time.Second),
		},
	}
}

func (s *OPCUAServer) setDefaults() {
	s.SecurityPolicy = "None"
	// SecurityMode: set by Parse when not given (see defaultSecurityMode).
	s.Mode = "subscribe"
	s.PublishingInterval = Duration(time.Second)
	s.SamplingInterval = Duration(500 * time.Millisecond)
	s.QueueSize = 10
	s.PollInterval = Duration(time.Second)
	s.HeartbeatTimeout = Duration(10 * time.Second)
	s.BackoffMax = Duration(30 * time.Second)
}

// DefaultSecurityMode is the security_mode of an OPC UA server that names
// none: None with policy None, else SignAndEncrypt (what browse takes too).
func DefaultSecurityMode(policy string) string {
	if policy == "None" || policy == "" {
		return "None"
	}
	return "SignAndEncrypt"
}

func (b *MQTTBroker) setDefaults() {
	b.KeepAlive = Duration(30 * time.Second)
	b.BackoffMax = Duration(30 * time.Second)
}

// BufferPath is the bbolt buffer file inside DataDir.
func (c *Config) BufferPath() string { return filepath.Join(c.DataDir, "buffer.db") }

// Pos is a position in the configuration file (1-based; 0 when unknown).
type Pos struct{ Line, Column int }

// via is what Problem.Via says for a problem at path: the aliases its
// value (or the nearest written key above it, as Position) was reached
// through.
func (c *Config) via(path string) string {
	for p := path; p != ""; p = parentPath(p) {
		if _, ok := c.pos[p]; ok {
			return c.vias[p]
		}
	}
	return ""
}

// Position returns where the value at key path (e.g. "machines[0].id") was
// written, falling back to its closest written parent.
func (c *Config) Position(path string) Pos {
	for p := path; p != ""; p = parentPath(p) {
		if pos, ok := c.pos[p]; ok {
			return pos
		}
	}
	// A top-level key that is missing: the top of the file, so that every
	// problem has a place an editor can jump to.
	return Pos{Line: 1, Column: 1}
}

func parentPath(p string) string {
	i := strings.LastIndexAny(p, ".[")
	if i <= 0 {
		return ""
	}
	return p[:i]
}

// Problem is one thing wrong with a configuration file.
type Problem struct {
	File         string
	Line, Column int
	Path         string // key path, e.g. machines[1].good_count.opcua.node
	Msg, Hint    string
	// Via names the aliases the value was reached through, outermost
	// first ("*press at line 25"), when Line is inside an anchor's text
	// that other places use too.
	Via string
	// Meant is, for an unknown key, the known key its name is nearest to
	// (the hint's "did you mean"); "" when none is near.
	Meant string
}

// String formats the problem as "file:line:col: path: msg (hint)".
func (p Problem) String() string {
	var b strings.Builder
	b.WriteString(p.File)
	if p.Line > 0 {
		fmt.Fprintf(&b, ":%d:%d", p.Line, p.Column)
	}
	b.WriteString(": ")
	if p.Path != "" {
		b.WriteString(p.Path)
		b.WriteString(": ")
	}
	b.WriteString(p.Msg)
	if p.Via != "" {
		b.WriteString(", via ")
		b.WriteString(p.Via)
	}
	if p.Hint != "" {
		b.WriteString(" (")
		b.WriteString(p.Hint)
		b.WriteString(")")
	}
	return b.String()
}

// Error is every problem found in a configuration file.
type Error struct {
	Problems []Problem
	// Warnings are what the file would be warned of once its problems are
	// fixed (see Config.Warnings), so that one round shows everything;
	// Error() leaves them out.
	Warnings []Problem
}

// Error lists all problems, one per line.
func (e *Error) Error() string {
	lines := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		lines[i] = p.String()
	}
	return strings.Join(lines, "\n")
}

func sortProblems(ps []Problem) {
	sort.SliceStable(ps, func(i, j int) bool {
		if ps[i].Line != ps[j].Line {
			return ps[i].Line < ps[j].Line
		}
		return ps[i].Column < ps[j].Column
	})
}

// Load reads and parses the configuration file at path.
func Load(path string) (*Config, error) {
	data, size, err := readFile(path)
	if err != nil {
		return nil, err
	}
	if size != "" {
		return nil, &Error{Problems: []Problem{tooLarge(path, size)}}
	}
	return Parse(path, data)
}

// readFile reads a configuration file, but no more of it than Parse takes
// (a BOM and MaxFileBytes): -c naming a log file or a device must not fill
// the memory or hang. A file over that is cut there, and size says how
// large it is ("" when it is not).
func readFile(path string) (data []byte, size string, err error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, "", fmt.Errorf("read config: %w", err)
	}
	defer f.Close()
	const limit = MaxFileBytes + 3 // a BOM is not counted
	data, err = io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, "", fmt.Errorf("read config: %w", err)
	}
	if len(data) <= limit {
		return data, "", nil
	}
	size = "more than " + strconv.Itoa(MaxFileBytes) + " bytes"
	if fi, err := f.Stat(); err == nil && fi.Mode().IsRegular() {
		size = strconv.FormatInt(fi.Size(), 10) + " bytes"
	}
	return data[:limit], size, nil
}

func tooLarge(file, size string) Problem {
	return Problem{File: file, Line: 1, Column: 1,
		Msg:  fmt.Sprintf("file too large: %s, a configuration is at most %d", size, MaxFileBytes),
		Hint: "is this the right file? A thousand machines with four signals each take about 400 KB"}
}

// topLevelScalar matches a top-level "key: value" line (value unquoted or
// quoted, an optional comment after it).
var topLevelScalar = regexp.MustCompile(`^(site|data_dir|listen):[ \t]*("[^"]*"|'[^']*'|[^#\s]+)?[ \t]*(#.*)?$`)

// topLevelSection matches the line that opens a top-level block
// ("odoo:", "buffer:", a comment after it).
var topLevelSection = regexp.MustCompile(`^([A-Za-z_]+):[ \t]*(#.*)?$`)

// sectionScalar matches an indented "key: value" line of odoo: or buffer:.
var sectionScalar = regexp.MustCompile(`^[ \t]+(url|database|max_bytes):[ \t]*("[^"]*"|'[^']*'|[^#\s]+)?[ \t]*(#.*)?$`)

// Endpoints reads only the top-level site, data_dir and listen of a
// configuration file, line by line, over the defaults, and odoo.url,
// odoo.database and buffer.max_bytes when they are written in block style.
// It is for the commands that talk to a running agent or read its buffer
// (status, flush, deadletter, compact) when the file does not load: the
// agent keeps running on what it loaded before (a reload of a broken file
// is refused), and that is when a technician needs status most. The Odoo
// is what deadletter tells another Odoo's refusals by, and max_bytes the
// quota status shows: without them every dead letter looked refused
// elsewhere (a retry kept them all) and the quota was the default's.
func Endpoints(path string) (*Config, error) {
	data, _, err := readFile(path) // the top of one too large to load will do
	if err != nil {
		return nil, err
	}
	c := defaultConfig()
	c.Path, c.EndpointsOnly = path, true
	section := ""
	for line := range strings.SplitSeq(string(Text(data)), "\n") { // Text: no CR left
		if m := topLevelSection.FindStringSubmatch(line); m != nil {
			section = m[1]
			continue
		}
		if m := sectionScalar.FindStringSubmatch(line); m != nil {
			v := strings.Trim(m[2], `"'`)
			switch section + "." + m[1] {
			case "odoo.url":
				c.Odoo.URL = endpointsURL(v)
			case "odoo.database":
				c.Odoo.Database = v
			case "buffer.max_bytes":
				if b, err := ParseByteSize(v); err == nil {
					c.Buffer.MaxBytes = b
				}
			}
			continue
		}
		if line != "" && line[0] != ' ' && line[0] != '\t' && line[0] != '#' {
			section = "" // another top-level key: a nested line is not odoo's
		}
		m := topLevelScalar.FindStringSubmatch(line)
		if m == nil || m[2] == "" {
			continue
		}
		v := strings.Trim(m[2], `"'`)
		switch m[1] {
		case "site":
			c.Site = v
		case "data_dir":
			c.DataDir = v
		case "listen":
			c.Listen = v
		}
	}
	return c, nil
}

// endpointsURL is odoo.url as Endpoints takes it: an http or https URL
// without its user and password. A file that does not load has not been
// checked for credentials in the URL (a problem that stops it loading),
// and status prints the URL.
func endpointsURL(v string) string {
	u, err := url.Parse(v)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return ""
	}
	u.User = nil
	return u.String()
}

// stripBOM drops a UTF-8 byte order mark, which Windows editors put at the
// start of a file: YAML allows it, and it must not make "site" an unknown key.
func stripBOM(data []byte) []byte { return bytes.TrimPrefix(data, []byte("\xef\xbb\xbf")) }

// Text is a configuration file's text as it is parsed, and as its lines
// are numbered: without a UTF-8 byte order mark, its CRLF and lone CR line
// breaks made LF, as YAML reads them. The parser counted a Windows file's
// CRLF as two breaks inside a quoted value, and kept it as a line break
// where a value folded over two lines has a space (the val54 probe: an
// unclosed quote said at line 27 of a 23-line file; a work center
// "WC\n1" where the same file with LF read "WC 1").
func Text(data []byte) []byte {
	data = stripBOM(data)
	if !bytes.ContainsRune(data, '\r') {
		return data
	}
	data = bytes.ReplaceAll(data, []byte("\r\n"), []byte("\n"))
	return bytes.ReplaceAll(data, []byte("\r"), []byte("\n"))
}

// MaxFileBytes is the largest configuration file Parse reads.
const MaxFileBytes = 4 << 20

// Parse applies defaults, decodes data strictly and validates the result.
// Any error is an *Error holding every problem found.
func Parse(filename string, data []byte) (*Config, error) {
	data = Text(data)
	if len(data) > MaxFileBytes {
		return nil, &Error{Problems: []Problem{tooLarge(filename, strconv.Itoa(len(data))+" bytes")}}
	}
	c := defaultConfig()
	c.Path = filename
	if bytes.HasPrefix(data, []byte{0xff, 0xfe}) || bytes.HasPrefix(data, []byte{0xfe, 0xff}) {
		// UTF-16 with its byte order mark (Windows editors' "Unicode"):
		// named, not only "NUL bytes" (the OT audit).
		return nil, &Error{Problems: []Problem{{File: filename, Line: 1, Column: 1,
			Msg: "a UTF-16 text file (a Windows editor's \"Unicode\"), not UTF-8", Hint: "save the configuration as UTF-8 text"}}}
	}
	if i := bytes.IndexByte(data, 0); i >= 0 {
		// A binary (or UTF-16) file: the YAML parser's complaint would
		// quote its bytes to the terminal.
		line := 1 + bytes.Count(data[:i], []byte("\n"))
		return nil, &Error{Problems: []Problem{{File: filename, Line: line, Column: 1 + i - (bytes.LastIndexByte(data[:i], '\n') + 1),
			Msg: "not a YAML text file (it holds NUL bytes)", Hint: "is this the right file? save the configuration as UTF-8 text"}}}
	}
	var notUTF8 *Problem
	if !utf8.Valid(data) {
		// Latin-1 or Windows-1252 (an editor's default): "WC-Ä" would be
		// read as "WC-\ufffd", a code Odoo does not have.
		i := 0
		for i < len(data) {
			r, n := utf8.DecodeRune(data[i:])
			if r == utf8.RuneError && n <= 1 {
				break
			}
			i += n
		}
		line := 1 + bytes.Count(data[:i], []byte("\n"))
		col := 1 + utf8.RuneCount(data[bytes.LastIndexByte(data[:i], '\n')+1:i])
		// A warning: a file that ran before (the byte in a comment) must
		// not stop the agent after an upgrade.
		notUTF8 = &Problem{File: filename, Line: line, Column: col,
			Msg:  fmt.Sprintf("not UTF-8: byte 0x%02x (a value with it reads wrong: a work-center code or loss name Odoo does not have)", data[i]),
			Hint: "save the file as UTF-8 (it looks like Latin-1 or Windows-1252)"}
	}
	d := newDecoder(filename)
	d.decodeFile(data, c)
	c.pos, c.vias = d.pos, d.vias
	for i := range c.OPCUA {
		if c.OPCUA[i].SecurityMode == "" {
			c.OPCUA[i].SecurityMode = DefaultSecurityMode(c.OPCUA[i].SecurityPolicy)
		}
	}
	probs := d.probs
	if d.tooLarge != nil {
		// Everything decoded before the limit is incomplete: its
		// "required" problems would all be wrong.
		probs = []Problem{*d.tooLarge}
	}
	if d.tooLarge == nil && (len(probs) == 0 || d.decodedRoot) {
		vp := c.validate()
		// A required key written with nothing ("workcenter:") is said
		// once, as required with its hint (the ot-audit probe: two lines).
		required := map[string]bool{}
		for _, p := range vp {
			if p.Msg == "required" {
				required[p.Path] = true
			}
		}
		probs = slices.DeleteFunc(probs, func(p Problem) bool { return required[p.Path] && p.Msg == nothingString })
		// A value that did not decode is said once: not again by a rule
		// about the empty value it left (running_values: [[1, 2]] was
		// "expected a string, got a list" and "empty value": the ot-audit
		// probe), nor as "required" when written as a list or a mapping
		// ("site: [plant-2]": the key is there, and "required" would send
		// the reader looking for a missing line; the spec audit). One
		// written with nothing is "required" (its problem dropped above).
		undecoded := map[string]bool{}
		for _, p := range probs {
			// (A duplicate key's first value was kept and decoded: what
			// is wrong with it is said too.)
			undecoded[p.Path] = undecoded[p.Path] || p.Msg != duplicateKey
		}
		// Nor, for a mapping or a list that did not decode at all, as
		// "required" for each key it would have held, at its own line and
		// column ("odoo: https://erp…" was three problems at one place;
		// the review).
		// Nor, when the mqtt: or opcua: section did not decode at all
		// (one broker written without its "- "), as an unknown broker or
		// server at every signal that names one (the OT probe: 13 such
		// problems under the one to fix).
		unknownSource := func(p Problem) bool {
			return d.undecoded["mqtt"] && strings.HasSuffix(p.Path, ".mqtt.broker") && strings.HasPrefix(p.Msg, "unknown MQTT broker ") ||
				d.undecoded["opcua"] && strings.HasSuffix(p.Path, ".opcua.server") && strings.HasPrefix(p.Msg, "unknown OPC UA server ")
		}
		probs = append(probs, slices.DeleteFunc(vp, func(p Problem) bool { return undecoded[p.Path] || d.inUndecoded(p.Path) || unknownSource(p) })...)
		c.Warnings = slices.DeleteFunc(c.Warnings, func(p Problem) bool { return d.inUndecoded(p.Path) })
	}
	if notUTF8 != nil {
		d.warns = append(d.warns, *notUTF8)
	}
	if len(probs) > 0 {
		sortProblems(probs)
		var warns []Problem
		if d.tooLarge == nil {
			warns = append(append(warns, d.warns...), c.Warnings...)
			sortProblems(warns)
		}
		return nil, &Error{Problems: dedupProblems(probs), Warnings: warns}
	}
	if len(d.warns) > 0 {
		c.Warnings = append(d.warns, c.Warnings...)
		sortProblems(c.Warnings)
	}
	return c, nil
}

func dedupProblems(ps []Problem) []Problem {
	seen := make(map[Problem]bool, len(ps))
	out := ps[:0]
	for _, p := range ps {
		if !seen[p] {
			seen[p] = true
			out = append(out, p)
		}
	}
	return out
}

// Validate checks the semantic rules on an already decoded configuration and
// returns an *Error with every problem, or nil. Parse calls it.
func (c *Config) Validate() error {
	ps := c.validate()
	if len(ps) == 0 {
		return nil
	}
	sortProblems(ps)
	return &Error{Problems: ps}
}

// EnvAPIKey is the environment variable that may hold the Odoo API key.
const EnvAPIKey = "PLANTEDGE_ODOO_API_KEY"

// CredentialAPIKey is the systemd credential name (LoadCredential=) of the
// Odoo API key inside $CREDENTIALS_DIRECTORY.
const CredentialAPIKey = "odoo-api-key"

// PackagedAPIKey says where the packaged unit keeps the Odoo API key and
// how the service gets it: the words of the agent's log and validate
// --odoo for a key that may not be read.
const PackagedAPIKey = "the packaged unit hands /etc/plantedge/odoo-api-key, root-only, to the service as the credential " + CredentialAPIKey

// ErrNoSecret is returned when a secret was found nowhere.
var ErrNoSecret = errors.New("secret not found")

// OdooAPIKey returns the Odoo API key from $PLANTEDGE_ODOO_API_KEY, else
// $CREDENTIALS_DIRECTORY/odoo-api-key, else odoo.api_key_file. Surrounding
// whitespace is trimmed. The key itself never appears in errors.
func (c *Config) OdooAPIKey() (string, error) {
	key, _, err := c.OdooAPIKeySource()
	return key, err
}

// OdooAPIKeySource is OdooAPIKey and where the key was found, for messages
// about a refused key ("$PLANTEDGE_ODOO_API_KEY", "the systemd credential
// odoo-api-key", "api_key_file /etc/plantedge/odoo-api-key").
func (c *Config) OdooAPIKeySource() (key, source string, err error) {
	if v := strings.TrimSpace(os.Getenv(EnvAPIKey)); v != "" {
		return v, "$" + EnvAPIKey, nil
	}
	var looked []string
	if dir := os.Getenv("CREDENTIALS_DIRECTORY"); dir != "" {
		p := filepath.Join(dir, CredentialAPIKey)
		v, err := readSecretFile(p, p)
		if err == nil {
			return v, "the systemd credential " + CredentialAPIKey, nil
		}
		if !errors.Is(err, os.ErrNotExist) {
			return "", "", err
		}
		looked = append(looked, p)
	} else {
		looked = append(looked, "$CREDENTIALS_DIRECTORY (unset)")
	}
	if c.Odoo.APIKeyFile != "" {
		v, err := ReadSecret(c.Odoo.APIKeyFile)
		if err == nil {
			return v, "api_key_file " + SecretPathShown(c.Odoo.APIKeyFile), nil
		}
		if !errors.Is(err, os.ErrNotExist) {
			return "", "", err
		}
		looked = append(looked, SecretPathShown(c.Odoo.APIKeyFile))
	} else {
		looked = append(looked, "odoo.api_key_file (unset)")
	}
	return "", "", fmt.Errorf("odoo api key: looked in $%s (unset or empty), %s: %w", EnvAPIKey, strings.Join(looked, ", "), ErrNoSecret)
}

// EnvSecret reads a secret from environment variable name (password_env),
// trimmed of surrounding whitespace; unset or empty is ErrNoSecret.
func EnvSecret(name string) (string, error) {
	if v := strings.TrimSpace(os.Getenv(name)); v != "" {
		if err := noControl(v); err != nil {
			return "", fmt.Errorf("$%s: %w", name, err)
		}
		return v, nil
	}
	return "", fmt.Errorf("$%s is unset or empty: %w", name, ErrNoSecret)
}

// ReadSecret reads a secret file such as password_file and trims surrounding
// whitespace. A name alone (no '/', as systemd credentials are named) is
// looked up in $CREDENTIALS_DIRECTORY first (systemd LoadCredential=), then
// in the working directory; another relative path ("./pw", "../pw") is the
// working directory's only.
func ReadSecret(path string) (string, error) {
	if path == "" {
		return "", fmt.Errorf("read secret: empty path: %w", ErrNoSecret)
	}
	shown := SecretPathShown(path)
	if !strings.ContainsRune(path, '/') && path != "." && path != ".." {
		if dir := os.Getenv("CREDENTIALS_DIRECTORY"); dir != "" {
			p := filepath.Join(dir, path)
			if shown != path {
				shown = filepath.Join(dir, shown)
			}
			if _, err := os.Stat(p); err == nil || errors.Is(err, fs.ErrPermission) {
				// A credential that is there: named by its path, not by
				// a name the working directory may hold another file of.
				shown = p
			}
			v, err := readSecretFile(p, shown)
			if err == nil || !errors.Is(err, os.ErrNotExist) {
				return v, err
			}
			shown = SecretPathShown(path)
		}
	}
	return readSecretFile(path, shown)
}

// SecretPathShown is how messages name a secret file: its path when it
// names a file that exists (or one this user may not look at), or an
// absolute path in such a directory, or below a top-level directory of
// this machine (/etc, /run) with a name no secret has (a '.', '-' or '_',
// and no '+' or '='); anything else may be the secret itself, pasted where
// its file's path belongs (a base64 password has slashes too), and is not
// shown.
func SecretPathShown(path string) string {
	there := func(p string) bool {
		_, err := os.Stat(p)
		// A directory this user may not search hides an absolute path
		// (it is one); a relative name says nothing so.
		return err == nil || filepath.IsAbs(p) && errors.Is(err, fs.ErrPermission)
	}
	if there(path) {
		return path
	}
	if dir := filepath.Dir(path); filepath.IsAbs(path) && dir != "/" {
		if there(dir) {
			return path
		}
		top, _, _ := strings.Cut(path[1:], "/")
		if there("/"+top) && strings.ContainsAny(path, ".-_") && !strings.ContainsAny(path, "+= \t") {
			return path
		}
	}
	if dir := os.Getenv("CREDENTIALS_DIRECTORY"); dir != "" && !strings.ContainsRune(path, '/') {
		if _, err := os.Stat(filepath.Join(dir, path)); err == nil {
			return path // a credential's name
		}
	}
	return "<value not shown: no such file, nor a directory for it — write the secret into a file and give that file's path>"
}

// readSecretFile reads p, named shown in errors.
func readSecretFile(p, shown string) (string, error) {
	b, err := os.ReadFile(p)
	if err != nil {
		var pe *os.PathError
		if errors.As(err, &pe) {
			// Keep the path, drop nothing secret: the content was never read.
			return "", fmt.Errorf("read secret %s: %w", shown, pe.Err)
		}
		return "", fmt.Errorf("read secret %s: %w", shown, err)
	}
	// An editor on Windows may save a byte-order mark: not part of the key.
	v := strings.TrimSpace(strings.TrimPrefix(string(b), "\ufeff"))
	if v == "" {
		return "", fmt.Errorf("read secret %s: file is empty: %w", shown, ErrNoSecret)
	}
	if n := strings.Count(v, "\n") + 1; n > 1 {
		// A key or password is one line: a second one (a note, another key
		// pasted after it) would be sent as part of it, and refused.
		return "", fmt.Errorf("read secret %s: the file holds %d lines, a key or password is one: keep only it", shown, n)
	}
	if err := noControl(v); err != nil {
		return "", fmt.Errorf("read secret %s: %w", shown, err)
	}
	return v, nil
}

// noControl refuses a secret holding a control character: no key or
// password has one, and sent in a header it failed as "cannot reach Odoo
// … check odoo.url, the network" (the technician probe). Where it is is
// said, not what is around it.
func noControl(v string) error {
	for i, r := range []rune(v) {
		if unicode.IsControl(r) {
			return fmt.Errorf("character %d of the secret is a control character (%U), which no key or password holds "+
				"(a terminal's or editor's keystroke pasted with it?): write the secret again", i+1, r)
		}
		if unicode.Is(unicode.Cf, r) {
			// A zero-width space or joiner, invisible where it was
			// copied from (a web page, a chat): sent, it is refused as a
			// wrong key (the review).
			return fmt.Errorf("character %d of the secret is an invisible formatting character (%U), which no key holds "+
				"(copied from a web page or a chat?): write the secret again", i+1, r)
		}
	}
	return nil
}
