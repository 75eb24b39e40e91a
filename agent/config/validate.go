package config

import (
	"cmp"
	"encoding/base64"
	"fmt"
	"maps"
	"math"
	"math/bits"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

var (
	siteRe = regexp.MustCompile(`^[a-z0-9-]+$`)
	idRe   = regexp.MustCompile(`^[A-Za-z0-9._-]+$`)
	hexRe  = regexp.MustCompile(`^[0-9a-fA-F]{40}$`)
	// fieldPathRe is a dot path whose parts may hold a space inside
	// ("Good Parts"), not at an end ("counters. good" is a slip).
	fieldPathRe = regexp.MustCompile(`^[^.\s](?:[^.\t\n\v\f\r]*[^.\s])?(?:\.[^.\s](?:[^.\t\n\v\f\r]*[^.\s])?)*$`)
	// nodeIDRe accepts the OPC UA string forms: [ns=<n>;|nsu=<uri>;](i|s|g|b)=<id>;
	// nodeIDNum finds their numbers (see nodeIDRange).
	nodeIDNum = regexp.MustCompile(`^(?:ns=(\d+);|nsu=[^;]+;)?(?:i=(\d+))?`)
	nodeIDRe  = regexp.MustCompile(`^(?:(?:ns=\d+|nsu=[^;]+);)?(?:i=\d+|s=.+|g=[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}|b=[A-Za-z0-9+/=]+)$`)
)

// Accepted enumerations.
var (
	LogLevels        = []string{"debug", "info", "warn", "error"}
	LogFormats       = []string{"text", "json"}
	OdooProtocols    = []string{"auto", "jsonrpc", "json2"}
	ScrapWhenShort   = []string{"hold", "confirm"}
	SecurityPolicies = []string{"None", "Basic256Sha256", "Aes128_Sha256_RsaOaep", "Aes256_Sha256_RsaPss"}
	SecurityModes    = []string{"None", "Sign", "SignAndEncrypt"}
	OPCUAModes       = []string{"subscribe", "poll"}
	MQTTSchemes      = []string{"tcp", "mqtt", "ssl", "tls", "mqtts", "ws", "wss"}
)

// maxBufferBytes is the largest buffer.max_bytes on a system whose int has
// intSize bits (0: no limit): buffer.MaxMaxBytes, 1 GiB on a 32-bit system
// (the arch probe: more wrapped round, and appends failed at 2.1 GB).
func maxBufferBytes(intSize int) ByteSize {
	if intSize == 32 {
		return 1 << 30
	}
	return 0
}

// intSize is strconv.IntSize (a test sets 32).
var intSize = strconv.IntSize

// Limits enforced by validation.
const (
	MinBufferBytes   = ByteSize(1 << 20)
	MaxCommitWindow  = Duration(20 * time.Millisecond)
	MinAuthBackoff   = Duration(60 * time.Second)
	maxTopicBytes    = 65535
	maxSourceNameLen = 64
)

type validator struct {
	c     *Config
	probs []Problem
	warns []Problem
}

func (v *validator) add(path, msg, hint string) {
	v.probs = append(v.probs, v.at(path, msg, hint))
}

func (v *validator) warn(path, msg, hint string) {
	v.warns = append(v.warns, v.at(path, msg, hint))
}

func (v *validator) at(path, msg, hint string) Problem {
	p := v.c.Position(path)
	return Problem{File: v.c.Path, Line: p.Line, Column: p.Column, Path: path, Msg: msg, Hint: hint, Via: v.c.via(path)}
}

// has reports whether the key path was written in the file.
func (v *validator) has(path string) bool {
	_, ok := v.c.pos[path]
	return ok
}

func oneOf(s string, set []string) bool {
	for _, x := range set {
		if s == x {
			return true
		}
	}
	return false
}

func (v *validator) enum(path, val string, set []string) {
	if !oneOf(val, set) {
		v.add(path, fmt.Sprintf("invalid value %q", val), "one of: "+strings.Join(set, ", "))
	}
}

// requiredHints explain a missing key, by its last path element.
var requiredHints = map[string]string{
	"site":       "the id of this plant: lowercase letters, digits and '-', e.g. plant-2",
	"data_dir":   "where the buffer lives, e.g. /var/lib/plantedge",
	"listen":     "e.g. 127.0.0.1:9464",
	"odoo.url":   "the base URL of Odoo, e.g. https://erp.example.com",
	"url":        "e.g. tcp://10.1.2.10:1883 or ssl://broker:8883",
	"database":   "the Odoo database name",
	"name":       "the name signals use to refer to this source",
	"endpoint":   "e.g. opc.tcp://10.1.2.3:4840",
	"client_id":  "a stable id for this agent, e.g. plantedge-plant2; it keys the persistent session",
	"id":         "a unique machine id: letters, digits, '.', '_' and '-'",
	"workcenter": "the code of the machine's Odoo work center",
	"server":     "the name of an OPC UA server under opcua:",
	"node":       `the node id, e.g. "ns=2;s=Press07.GoodCount" (use plantedge browse)`,
	"broker":     "the name of an MQTT broker under mqtt:",
	"topic":      "the exact MQTT topic, e.g. plant2/press-07/counters",
}

func (v *validator) required(path, val string) bool {
	if strings.TrimSpace(val) == "" {
		hint, ok := requiredHints[path]
		if !ok {
			hint = requiredHints[path[strings.LastIndex(path, ".")+1:]]
		}
		v.add(path, "required", hint)
		return false
	}
	return true
}

// counterKey identifies a counter by the address its source connects to
// (URL or endpoint, without case or a trailing slash) rather than the
// source's name.
func (c *Config) counterKey(r SourceRef) string {
	norm := func(u string) string { return strings.TrimSuffix(strings.ToLower(strings.TrimSpace(u)), "/") }
	switch {
	case r.OPCUA != nil:
		addr := r.OPCUA.Server
		for _, s := range c.OPCUA {
			if s.Name == r.OPCUA.Server {
				addr = norm(s.Endpoint)
			}
		}
		return "opcua " + addr + " " + r.OPCUA.Address()
	case r.MQTT != nil:
		addr := r.MQTT.Broker
		for _, b := range c.MQTT {
			if b.Name == r.MQTT.Broker {
				addr = norm(b.URL)
			}
		}
		return "mqtt " + addr + " " + r.MQTT.Topic + " " + r.MQTT.Field
	}
	return ""
}

// BrokerAddr is where an MQTT URL connects, for comparing entries: lower
// case host and port (the scheme's default port when none is written).
func BrokerAddr(raw string) string {
	u, err := url.Parse(strings.TrimSpace(raw))
	if err != nil {
		return raw
	}
	port := u.Port()
	if port == "" {
		port = map[string]string{"opc.tcp": "4840", "tcp": "1883", "mqtt": "1883", "ssl": "8883", "tls": "8883", "mqtts": "8883", "ws": "80", "wss": "443"}[u.Scheme]
	}
	host := strings.ToLower(u.Hostname())
	if isLoopback(host) {
		host = "loopback" // localhost, 127.0.0.1 and ::1 reach the same broker
	}
	return host + ":" + port
}

// envName is an environment variable's name as password_env takes it:
// upper case, digits and underscores (a password pasted there instead of
// a name does not look like one, and is not repeated in a message).
var envName = regexp.MustCompile(`^[A-Z_][A-Z0-9_]*$`)

// password checks a source's password keys at p: one of password_file and
// password_env, each only with a username.
func (v *validator) password(p, username, file, env string) {
	if file != "" && env != "" {
		v.add(p+".password_env", "password_file and password_env both set", "keep one: a file holding the password, or the name of an environment variable holding it")
	}
	if (file != "" || env != "") && username == "" {
		key := "password_file"
		if file == "" {
			key = "password_env"
		}
		v.add(p+".username", "required with "+key, "")
	}
	if env != "" && !envName.MatchString(env) {
		v.add(p+".password_env", "not the name of an environment variable (value not shown)", "name the variable in upper case letters, digits and _, e.g. password_env: MQTT_PASSWORD, and set it for the agent in a root-only file (systemctl edit plantedge: [Service] EnvironmentFile=/etc/plantedge/secrets.env); the password itself never goes in this file")
	}
}

func (v *validator) filePath(path, val string) {
	if val == "" {
		return
	}
	if strings.ContainsRune(val, 0) || strings.TrimSpace(val) != val || strings.HasSuffix(val, "/") {
		shown := val
		if strings.HasSuffix(path, "password_file") || strings.HasSuffix(path, "api_key_file") {
			shown = SecretPathShown(val)
		}
		v.add(path, fmt.Sprintf("invalid file path %q", shown), "name a file, e.g. /etc/plantedge/odoo-api-key")
	}
}

func (v *validator) positive(path string, d Duration) {
	if d <= 0 {
		v.add(path, "must be greater than 0", "")
	}
}

func (c *Config) validate() []Problem {
	v := &validator{c: c}
	v.validateTop()
	v.validateOdoo()
	v.validateForward()
	sources := map[string]string{} // name -> path of its definition
	servers := map[string]bool{}
	brokers := map[string]bool{}
	endpoints := map[string]string{} // where an endpoint connects -> the first entry's name
	for i := range c.OPCUA {
		p := fmt.Sprintf("opcua[%d]", i)
		o := &c.OPCUA[i]
		v.validateOPCUA(p, o)
		v.uniqueSource(p, o.Name, sources)
		servers[o.Name] = true
		if u, err := url.Parse(strings.TrimSpace(o.Endpoint)); err == nil && u.Host != "" {
			at := BrokerAddr(u.String()) // host case, localhost for 127.0.0.1
			if first, ok := endpoints[at]; ok {
				// Each entry is a session of its own (the OT audit: no
				// word of it), and a PLC serves only a few.
				v.warn(p+".endpoint", fmt.Sprintf("the same server as %q's endpoint: each entry opens a session of its own, and a PLC serves only a few", first),
					"put the nodes of both under one entry, unless they need other settings (security, user, publishing interval)")
			} else {
				endpoints[at] = o.Name
			}
		}
	}
	clientIDs := map[string]int{} // client_id -> index of the first entry with it
	for i := range c.MQTT {
		p := fmt.Sprintf("mqtt[%d]", i)
		b := &c.MQTT[i]
		v.validateMQTT(p, b)
		v.uniqueSource(p, b.Name, sources)
		brokers[b.Name] = true
		if b.ClientID == "" {
			continue
		}
		j, dup := clientIDs[b.ClientID]
		if !dup {
			clientIDs[b.ClientID] = i
			continue
		}
		// A broker keeps one connection per client id: a second one
		// takes over, the first reconnects and takes it back, and each
		// gets the other's messages (dropped as strays) in between.
		if BrokerAddr(b.URL) == BrokerAddr(c.MQTT[j].URL) {
			v.add(p+".client_id", fmt.Sprintf("client_id %q is also that of %q, which connects to the same broker: the two connections throw each other off, and messages are lost", b.ClientID, c.MQTT[j].Name),
				"give each entry its own client_id, or map all its topics through one entry")
		} else {
			v.warn(p+".client_id", fmt.Sprintf("client_id %q is also that of %q: if both URLs reach one broker, the two connections throw each other off, and messages are lost", b.ClientID, c.MQTT[j].Name),
				"give each entry its own client_id")
		}
	}
	if len(c.Machines) == 0 {
		v.add("machines", "at least one machine is required", "list the machines under machines:, each with id, workcenter and a signal")
	}
	ids := map[string]string{}
	folded := map[string]int{}        // machine id in lower case -> the first machine's index
	counters := map[string]string{}   // work center -> machine counting good pieces into it
	counterSrc := map[string]string{} // a counter's source -> "machine signal" reading it
	runningSrc := map[string]string{} // a running signal's source -> the machine reading it
	for i := range c.Machines {
		p := fmt.Sprintf("machines[%d]", i)
		m := &c.Machines[i]
		v.validateMachine(p, m, servers, brokers)
		for _, r := range m.Refs() {
			if r.Signal == "running" {
				// A machine block copied with its running source left
				// as it was: one's stops booked as the other's downtime.
				// Not a state word each reads its own running_values
				// from (a cell's active station: 1 one machine, 2 the
				// other): their stops differ.
				if src := r.Ref.CounterSource(); src != "" {
					key := c.counterKey(r.Ref)
					if m.Running != nil {
						key += "\x00" + strings.Join(slices.Sorted(slices.Values(m.Running.RunningValues)), "\x00")
					}
					if prev, dup := runningSrc[key]; dup {
						v.warn(p+".running", fmt.Sprintf("reads the same run state as %s running (%s): the stops of one are booked as the other's downtime too", prev, src),
							"a copied entry? point it at this machine's own; if one run signal stands for both, a line's, this is right")
					} else {
						runningSrc[key] = m.ID
					}
				}
			}
			if r.Signal != "good_count" && r.Signal != "scrap_count" {
				continue
			}
			src := r.Ref.CounterSource()
			if src == "" {
				continue
			}
			// Keyed by where the source connects, not its name: two broker
			// entries with one URL read one topic.
			key := c.counterKey(r.Ref)
			if prev, dup := counterSrc[key]; dup {
				v.warn(p+"."+r.Signal, fmt.Sprintf("reads the same counter as %s (%s): its pieces are counted twice", prev, src),
					"a copied entry? point it at this machine's own counter")
			} else {
				counterSrc[key] = m.ID + " " + r.Signal
			}
		}
		if m.GoodCount != nil && m.Workcenter != "" {
			// The work order's quantity is written as an absolute value from
			// one machine's counter: a second machine would overwrite it.
			if prev, dup := counters[m.Workcenter]; dup {
				// A warning, not an error: a file that ran before must not stop
				// the service after an upgrade (its sources would go unread).
				v.warn(p+".workcenter", fmt.Sprintf("work center %q already gets good_count from machine %s: their counts overwrite each other in Odoo", m.Workcenter, prev),
					"one machine per work center counts good pieces (the quantity is written as an absolute value): map the other machine to its own work center, or drop its good_count")
			} else {
				counters[m.Workcenter] = m.ID
			}
		}
		id := m.ID
		if id == "" {
			continue
		}
		if prev, dup := ids[id]; dup {
			v.add(p+".id", fmt.Sprintf("duplicate machine id %q", id), "also used by "+prev)
		} else {
			ids[id] = p
			// Press1 and press1: the agent keeps them apart (Odoo's
			// external ids, the buffer, the metrics' labels are
			// case-sensitive), people do not (the val54 probe).
			if j, near := folded[strings.ToLower(id)]; near {
				v.warn(p+".id", fmt.Sprintf("machine id %q differs from %q (machines[%d]) only in letter case: the agent keeps them apart, people may not", id, c.Machines[j].ID, j),
					fmt.Sprintf("accept-qty, status and the metrics name each exactly as written — accept-qty %s acts on machines[%d], not on this one — and a search that ignores case (Odoo's, a spreadsheet's) finds both: give them ids that differ in more than case", c.Machines[j].ID, j))
			} else {
				folded[strings.ToLower(id)] = i
			}
		}
	}
	v.checkTopicShapes()
	v.checkUnusedSources()
	c.Warnings = v.warns
	sortProblems(c.Warnings)
	return v.probs
}

func (v *validator) uniqueSource(path, name string, seen map[string]string) {
	if name == "" {
		return
	}
	if prev, dup := seen[name]; dup {
		v.add(path+".name", fmt.Sprintf("duplicate source name %q", name), "also used by "+prev+"; OPC UA servers and MQTT brokers share one namespace")
		return
	}
	seen[name] = path
}

// foreignRune names the first character of s that is not ASCII: a
// typographic dash looks like '-' (the val54 probe: "invalid machine id
// "press–2"" for an id that read right, pasted from a document).
func foreignRune(s string) string {
	for _, r := range s {
		switch {
		case r < 0x80:
			continue
		case r >= 0x2010 && r <= 0x2015 || r == 0x2212 || r == 0xfe63 || r == 0xff0d:
			return fmt.Sprintf(": its %q (%U) is a typographic dash, not '-'", r, r)
		case unicode.IsSpace(r):
			return fmt.Sprintf(": it holds %U, a space that is not ASCII", r)
		default:
			return fmt.Sprintf(": its %q (%U) is not ASCII", r, r)
		}
	}
	return ""
}

func (v *validator) validateTop() {
	c := v.c
	if v.required("site", c.Site) && !siteRe.MatchString(c.Site) {
		v.add("site", fmt.Sprintf("invalid site %q%s", c.Site, foreignRune(c.Site)), "use lowercase letters, digits and '-' only, e.g. plant-2")
	}
	if v.required("data_dir", c.DataDir) {
		v.filePath("data_dir", c.DataDir)
	}
	if v.required("listen", c.Listen) {
		if sock, ok := strings.CutPrefix(c.Listen, "unix:"); ok {
			if !filepath.IsAbs(sock) {
				v.add("listen", fmt.Sprintf("invalid unix socket %q", c.Listen), "use an absolute path, e.g. unix:/run/plantedge/api.sock")
			}
		} else if host, port, err := net.SplitHostPort(c.Listen); err != nil || !validPort(port) {
			v.add("listen", fmt.Sprintf("invalid listen address %q", c.Listen), "use host:port (e.g. 127.0.0.1:9464) or unix:/path")
		} else if n, _ := strconv.Atoi(port); n == 0 {
			// A warning, not an error: a file that ran before (the metrics
			// scraped elsewhere, no one asking status) runs on.
			v.warn("listen", fmt.Sprintf("port 0 in %q: the agent listens on a port the system picks", c.Listen),
				"plantedge status and flush cannot find it there: give a port of 1 to 65535, e.g. 127.0.0.1:9464")
		} else if !isLoopback(host) {
			v.warn("listen", "status API and /metrics reachable from the network",
				"anyone who can reach it reads machine and work-order status; flush and dead-letter retry/drop are accepted only from this machine; prefer 127.0.0.1 unless a Prometheus server scrapes it")
		}
	}
	v.enum("log.level", c.Log.Level, LogLevels)
	v.enum("log.format", c.Log.Format, LogFormats)
	if c.Buffer.MaxBytes < MinBufferBytes {
		v.add("buffer.max_bytes", fmt.Sprintf("%s is below the minimum of 1MiB", c.Buffer.MaxBytes), "")
	}
	if m := maxBufferBytes(intSize); m > 0 && c.Buffer.MaxBytes > m {
		v.add("buffer.max_bytes", fmt.Sprintf("%s is above the %s a 32-bit system can map (bbolt maps the whole buffer file into memory)", c.Buffer.MaxBytes, m),
			"set 1GiB or less on this box")
	}
	if c.Buffer.CommitWindow > MaxCommitWindow {
		v.add("buffer.commit_window", fmt.Sprintf("%s is above the maximum of %s", c.Buffer.CommitWindow, MaxCommitWindow), "a longer window delays every MQTT ack")
	}
}

// isLoopback reports whether host names this machine only: localhost or a
// loopback address ("" — all interfaces — is not).
func isLoopback(host string) bool {
	ip := net.ParseIP(host)
	return host == "localhost" || ip != nil && ip.IsLoopback()
}

func validPort(p string) bool {
	n, err := strconv.Atoi(p)
	return err == nil && n >= 0 && n <= 65535
}

// ValidOPCUAEndpoint reports whether s is opc.tcp://host:port with a port
// of 1 to 65535 (what the agent and browse connect to).
func ValidOPCUAEndpoint(s string) bool {
	u, err := url.Parse(s)
	// The scheme as the connector wants it, in lower case (url.Parse
	// lowers it: OPC.TCP:// passed here and failed there).
	return err == nil && strings.HasPrefix(s, "opc.tcp://") && u.Hostname() != "" && u.Port() != "" && validRemotePort(u.Port())
}

// validRemotePort: a port to connect to, 1 to 65535 (url.Parse takes any
// digits), or none (the scheme's own).
func validRemotePort(p string) bool {
	n, err := strconv.Atoi(p)
	return p == "" || err == nil && n >= 1 && n <= 65535
}

func (v *validator) validateOdoo() {
	o := &v.c.Odoo
	if v.required("odoo.url", o.URL) {
		u, err := url.Parse(o.URL)
		switch {
		case err != nil || u.Host == "":
			v.add("odoo.url", fmt.Sprintf("invalid URL %q", redactURL(o.URL)), "write the base URL, e.g. https://erp.example.com")
		case u.Scheme != "http" && u.Scheme != "https":
			v.add("odoo.url", fmt.Sprintf("unsupported scheme %q", u.Scheme), "use https:// (or http:// on a trusted network)")
		case !validRemotePort(u.Port()):
			v.add("odoo.url", fmt.Sprintf("invalid port %q", u.Port()), "a port is 1 to 65535; https:// without one is 443")
		case u.User != nil:
			v.add("odoo.url", "credentials in the URL", "remove user:password@; the key comes from api_key_file or "+EnvAPIKey)
		case u.Scheme == "http":
			host := u.Hostname()
			if !isLoopback(host) {
				v.warn("odoo.url", "plain http: the API key crosses the network unencrypted", "use https://")
			}
		}
	}
	v.required("odoo.database", o.Database)
	v.enum("odoo.protocol", o.Protocol, OdooProtocols)
	if o.Username == "" {
		switch o.Protocol {
		case "jsonrpc":
			v.add("odoo.username", "required with protocol jsonrpc", "the login of the Odoo bot user, e.g. plantedge-bot")
		case "auto":
			v.warn("odoo.username", "not set: protocol auto can only use JSON-2 (Odoo 19+)", "set the bot user's login to also support Odoo 17/18")
		}
	}
	v.filePath("odoo.api_key_file", o.APIKeyFile)
	if o.APIKeyFile == "" && os.Getenv(EnvAPIKey) == "" {
		v.warn("odoo.api_key_file", "not set: the API key must come from "+EnvAPIKey+" or the systemd credential "+CredentialAPIKey, "")
	}
	v.positive("odoo.timeout", o.Timeout)
	switch {
	case o.RequestLimit >= o.Timeout:
	case !v.has("odoo.request_limit"):
		// The limit not written: said at the timeout, the key that was
		// (a problem at a key the file lacks points at odoo's first line).
		v.add("odoo.timeout", fmt.Sprintf("%s is longer than odoo.request_limit %s, its default", o.Timeout, o.RequestLimit),
			"Odoo's limit_time_real (120s unless its admin changed it): set request_limit to it, or a shorter timeout")
	default:
		// The hint says what to set, not only what request_limit is (the
		// operator probe: "… (Odoo's limit_time_real (120s unless its
		// admin changed it))" named no fix).
		v.add("odoo.request_limit", fmt.Sprintf("%s is shorter than odoo.timeout %s", o.RequestLimit, o.Timeout),
			fmt.Sprintf("request_limit is Odoo's limit_time_real (120s unless its admin changed it): set it to that, and odoo.timeout to at most %s", o.RequestLimit))
	}
	v.filePath("odoo.ca_file", o.CAFile)
	if o.InsecureSkipVerify {
		v.warn("odoo.insecure_skip_verify", "TLS CERTIFICATE VERIFICATION IS OFF for Odoo: anyone on the path can read the API key", "use ca_file with your CA instead")
	}
	if strings.TrimSpace(o.DefaultLoss) == "" {
		v.add("odoo.default_loss", "must not be empty", `an Odoo loss reason name, e.g. "Equipment Failure"`)
	} else {
		v.lossName("odoo.default_loss", o.DefaultLoss)
	}
	v.enum("odoo.scrap_when_short", o.ScrapWhenShort, ScrapWhenShort)
}

func (v *validator) validateForward() {
	f := &v.c.Forward
	if f.Rate <= 0 || f.Rate > 1000 {
		v.add("forward.rate", fmt.Sprintf("%g is out of range", f.Rate), "Odoo HTTP requests per second, greater than 0 and at most 1000")
	}
	if f.BackoffMax < Duration(time.Second) {
		v.add("forward.backoff_max", "must be at least 1s", "")
	}
	v.positive("forward.interval", f.Interval)
	if f.AuthBackoff < MinAuthBackoff {
		v.add("forward.auth_backoff", fmt.Sprintf("%s is below the minimum of 1m0s", f.AuthBackoff), "retrying a refused login sooner can lock the bot user out")
	}
}

func (v *validator) sourceName(path, name string) {
	if !v.required(path, name) {
		return
	}
	if !idRe.MatchString(name) || len(name) > maxSourceNameLen {
		v.add(path, fmt.Sprintf("invalid name %q%s", name, foreignRune(name)), "use ASCII letters (a-z, A-Z), digits, '.', '_' and '-' only, at most 64")
	}
}

func (v *validator) validateOPCUA(p string, s *OPCUAServer) {
	v.sourceName(p+".name", s.Name)
	if v.required(p+".endpoint", s.Endpoint) {
		u, _ := url.Parse(s.Endpoint)
		switch {
		case !ValidOPCUAEndpoint(s.Endpoint):
			hint := "write opc.tcp://host:port, e.g. opc.tcp://10.1.2.3:4840"
			if strings.HasPrefix(strings.ToLower(s.Endpoint), "opc.tcp://") {
				hint = "write the scheme in lower case: opc.tcp://"
			}
			v.add(p+".endpoint", fmt.Sprintf("invalid endpoint %q", redactURL(s.Endpoint)), hint)
		case u.User != nil:
			v.add(p+".endpoint", "credentials in the URL", "use username and password_file")
		}
	}
	v.enum(p+".security_policy", s.SecurityPolicy, SecurityPolicies)
	v.enum(p+".security_mode", s.SecurityMode, SecurityModes)
	if oneOf(s.SecurityPolicy, SecurityPolicies) && oneOf(s.SecurityMode, SecurityModes) &&
		(s.SecurityPolicy == "None") != (s.SecurityMode == "None") {
		at := p + ".security_mode"
		if !v.has(at) {
			at = p + ".security_policy"
		}
		v.add(at, fmt.Sprintf("security_mode %s does not fit security_policy %s", s.SecurityMode, s.SecurityPolicy),
			"policy None goes with mode None; any other policy needs Sign or SignAndEncrypt")
	}
	if (s.CertFile == "") != (s.KeyFile == "") {
		v.add(p+".cert_file", "cert_file and key_file go together", "set both, or neither to generate a certificate in data_dir")
	}
	v.filePath(p+".cert_file", s.CertFile)
	v.filePath(p+".key_file", s.KeyFile)
	if s.ServerThumbprint == "" && oneOf(s.SecurityPolicy, SecurityPolicies) && s.SecurityPolicy != "None" {
		v.warn(p+".security_policy", "the server's certificate is not pinned: any certificate it presents is accepted",
			"set server_thumbprint to the thumbprint the agent logs at connect")
	}
	if s.ServerThumbprint != "" && !hexRe.MatchString(strings.NewReplacer(":", "", " ", "").Replace(s.ServerThumbprint)) {
		v.add(p+".server_thumbprint", "invalid thumbprint", "40 hex digits: the SHA-1 of the server certificate")
	}
	v.password(p, s.Username, s.PasswordFile, s.PasswordEnv)
	if s.Username != "" && s.PasswordFile == "" && s.PasswordEnv == "" {
		v.add(p+".password_file", "required with username", "the file holding the OPC UA user's password (or password_env: the name of an environment variable holding it)")
	}
	if s.Username != "" && s.SecurityPolicy == "None" {
		v.warn(p+".username", "password sent over an unencrypted channel", "use security_policy Basic256Sha256 with SignAndEncrypt")
	}
	v.filePath(p+".password_file", s.PasswordFile)
	v.enum(p+".mode", s.Mode, OPCUAModes)
	v.positive(p+".publishing_interval", s.PublishingInterval)
	v.positive(p+".sampling_interval", s.SamplingInterval)
	if s.QueueSize == 0 {
		v.add(p+".queue_size", "must be at least 1", "")
	}
	v.positive(p+".poll_interval", s.PollInterval)
	// What the connector needs, or it does not start and every machine of
	// the server goes unread (the yaml probe: validate said OK, a reload
	// took the source down).
	switch few := max(10*time.Second, 3*s.PublishingInterval.D()); {
	case s.Mode == "poll" || s.HeartbeatTimeout >= 2*s.PublishingInterval:
	case !v.has(p + ".heartbeat_timeout"):
		// The timeout not written: said at publishing_interval, the key
		// that was (a problem at a key the file lacks points at the
		// entry's first line; the spec audit).
		v.add(p+".publishing_interval", fmt.Sprintf("%s needs a heartbeat_timeout of at least twice it; heartbeat_timeout is %s, its default", s.PublishingInterval, s.HeartbeatTimeout),
			fmt.Sprintf("set heartbeat_timeout to a few publishing intervals, e.g. %s", few))
	default:
		v.add(p+".heartbeat_timeout", fmt.Sprintf("%s must be at least twice publishing_interval %s", s.HeartbeatTimeout, s.PublishingInterval),
			fmt.Sprintf("a few publishing intervals, e.g. %s", few))
	}
	v.backoffMax(p+".backoff_max", s.BackoffMax)
}

// backoffMax checks a source's backoff_max: the connectors' first retry
// waits minBackoff, and the longest wait cannot be shorter.
func (v *validator) backoffMax(key string, d Duration) {
	if d.D() < minBackoff {
		v.add(key, fmt.Sprintf("%s is below %s, the first reconnect wait", d.D(), minBackoff), "e.g. 1m")
	}
}

// minBackoff is the connectors' first reconnect wait (DefaultBackoffMin of
// connectors/opcua and connectors/mqtt).
const minBackoff = 500 * time.Millisecond

func (v *validator) validateMQTT(p string, b *MQTTBroker) {
	v.sourceName(p+".name", b.Name)
	tlsScheme, schemeOK, loopback := false, false, false
	if v.required(p+".url", b.URL) {
		u, err := url.Parse(b.URL)
		switch {
		case err != nil || u.Hostname() == "":
			v.add(p+".url", fmt.Sprintf("invalid URL %q", redactURL(b.URL)), "write tcp://host:1883 or ssl://host:8883")
		case !oneOf(u.Scheme, MQTTSchemes):
			v.add(p+".url", fmt.Sprintf("unsupported scheme %q", u.Scheme), "one of: tcp:// (or mqtt://), ssl:// (or tls://, mqtts://), ws://, wss://")
		case u.User != nil:
			v.add(p+".url", "credentials in the URL", "use username and password_file")
		case u.Port() == "" && u.Scheme != "ws" && u.Scheme != "wss":
			// The port of its own scheme: a TLS broker's is 8883, not
			// the plain-text 1883 (the spec audit).
			port := "1883"
			if u.Scheme == "ssl" || u.Scheme == "tls" || u.Scheme == "mqtts" {
				port = "8883"
			}
			v.add(p+".url", fmt.Sprintf("missing port in %q", b.URL), "e.g. "+u.Scheme+"://"+net.JoinHostPort(u.Hostname(), port))
		case !validRemotePort(u.Port()):
			v.add(p+".url", fmt.Sprintf("invalid port %q", u.Port()), "a port is 1 to 65535, e.g. tcp://10.1.2.10:1883")
		}
		if u != nil && oneOf(u.Scheme, MQTTSchemes) {
			schemeOK = true
			tlsScheme = u.Scheme == "ssl" || u.Scheme == "tls" || u.Scheme == "mqtts" || u.Scheme == "wss"
			loopback = isLoopback(u.Hostname())
		}
	}
	if v.required(p+".client_id", b.ClientID) && (len(b.ClientID) > 65535 || !utf8.ValidString(b.ClientID)) {
		v.add(p+".client_id", "invalid client id", "")
	}
	v.password(p, b.Username, b.PasswordFile, b.PasswordEnv)
	v.filePath(p+".password_file", b.PasswordFile)
	if (b.CertFile == "") != (b.KeyFile == "") {
		v.add(p+".cert_file", "cert_file and key_file go together", "set both for client-certificate authentication, or neither")
	}
	for _, k := range []struct{ key, val string }{{"ca_file", b.CAFile}, {"cert_file", b.CertFile}, {"key_file", b.KeyFile}} {
		v.filePath(p+"."+k.key, k.val)
	}
	usesTLS := b.CAFile != "" || b.CertFile != "" || b.ServerName != "" || b.InsecureSkipVerify
	if usesTLS && !tlsScheme && schemeOK {
		v.add(p+".url", "TLS options set but the URL is not TLS", "use ssl://, tls:// or wss://")
	}
	if b.InsecureSkipVerify {
		v.warn(p+".insecure_skip_verify", "TLS CERTIFICATE VERIFICATION IS OFF for this broker", "use ca_file with your CA instead")
	}
	if pw := cmp.Or(b.PasswordFile, b.PasswordEnv); pw != "" && schemeOK && !tlsScheme && !loopback {
		key := ".password_file"
		if b.PasswordFile == "" {
			key = ".password_env"
		}
		v.warn(p+key, "the password crosses the network unencrypted (the URL is not TLS)", "use ssl:// or wss://")
	}
	if b.KeepAlive < Duration(time.Second) {
		v.add(p+".keep_alive", "must be at least 1s", "")
	}
	if b.KeepAlive > Duration(65535*time.Second) {
		v.add(p+".keep_alive", fmt.Sprintf("%s is above 65535s, the most MQTT can carry", b.KeepAlive.D()), "e.g. 30s")
	}
	v.backoffMax(p+".backoff_max", b.BackoffMax)
}

// checkUnusedSources warns about sources no signal reads: the agent would
// connect to them for nothing, and it is often a misspelt reference.
func (v *validator) checkUnusedSources() {
	if len(v.c.Machines) == 0 {
		// No machine at all is the problem (machines: misspelt, or not
		// written yet): every source unused beside it is noise.
		return
	}
	used := map[string]bool{}
	for i := range v.c.Machines {
		for _, r := range v.c.Machines[i].Refs() {
			if r.Ref.OPCUA != nil {
				used["opcua\x00"+r.Ref.OPCUA.Server] = true
			}
			if r.Ref.MQTT != nil {
				used["mqtt\x00"+r.Ref.MQTT.Broker] = true
				if r.Ref.MQTT.Sparkplug() {
					used["sparkplug\x00"+r.Ref.MQTT.Broker] = true
				}
			}
		}
	}
	for i, s := range v.c.OPCUA {
		if s.Name != "" && !used["opcua\x00"+s.Name] {
			v.warn(fmt.Sprintf("opcua[%d].name", i), fmt.Sprintf("OPC UA server %q is not used by any machine", s.Name), "remove it or map a signal to it")
		}
	}
	for i, b := range v.c.MQTT {
		if b.Name != "" && !used["mqtt\x00"+b.Name] {
			v.warn(fmt.Sprintf("mqtt[%d].name", i), fmt.Sprintf("MQTT broker %q is not used by any machine", b.Name), "remove it or map a signal to it")
		}
		if b.SparkplugRebirth && b.Name != "" && used["mqtt\x00"+b.Name] && !used["sparkplug\x00"+b.Name] {
			// Harmless (it asks only edge nodes a signal reads), but a
			// sign of the option set on the wrong broker.
			v.warn(fmt.Sprintf("mqtt[%d].sparkplug_rebirth", i), fmt.Sprintf("no signal of MQTT broker %q reads format: sparkplug_b: there is no edge node to ask for a rebirth", b.Name),
				"set it on the broker the Sparkplug B signals name, or remove it")
		}
		if b.SparkplugCertificates && b.Name != "" && used["mqtt\x00"+b.Name] && !used["sparkplug\x00"+b.Name] {
			v.warn(fmt.Sprintf("mqtt[%d].sparkplug_certificates", i), fmt.Sprintf("no signal of MQTT broker %q reads format: sparkplug_b: there is no edge node whose BIRTH certificates to read", b.Name),
				"set it on the broker the Sparkplug B signals name, or remove it")
		}
	}
}

// checkTopicShapes rejects a topic read as a bare value by one signal and as
// JSON with a field by another: one of the two would fail on every message.
// The problem is reported at the signals of the smaller side (the bare ones
// on a tie): a field misspelt or left out on one signal of a gateway topic
// that five others read with a field is one problem at that signal, not
// five at the signals written right.
func (v *validator) checkTopicShapes() {
	type topic struct{ broker, name string }
	type use struct {
		path string
		bare bool
	}
	var order []topic
	uses := map[topic][]use{}
	for i := range v.c.Machines {
		for _, r := range v.c.Machines[i].Refs() {
			mr := r.Ref.MQTT
			if mr == nil || r.Ref.OPCUA != nil || mr.Topic == "" {
				continue
			}
			k := topic{mr.Broker, mr.Topic}
			if _, seen := uses[k]; !seen {
				order = append(order, k)
			}
			uses[k] = append(uses[k], use{fmt.Sprintf("machines[%d].%s.mqtt", i, r.Signal), mr.Field == ""})
		}
	}
	for _, k := range order {
		var bare, field []string
		for _, u := range uses[k] {
			if u.bare {
				bare = append(bare, u.path)
			} else {
				field = append(field, u.path)
			}
		}
		if len(bare) == 0 || len(field) == 0 {
			continue
		}
		if len(bare) <= len(field) {
			for _, p := range bare {
				v.add(p+".field", fmt.Sprintf("topic %q is read as a bare value here but as JSON with a field by %s", k.name, others(field)),
					"give this signal a field: the path of its value in the JSON payload (is field misspelt, or left out?)")
			}
			continue
		}
		for _, p := range field {
			v.add(p+".field", fmt.Sprintf("topic %q is read as JSON with a field here but as a bare value by %s", k.name, others(bare)),
				"a topic carries either a bare value or JSON: give every signal on a JSON topic a field, or none on a bare one")
		}
	}
}

// others names the first of paths, and how many more there are.
func others(paths []string) string {
	if len(paths) == 1 {
		return paths[0]
	}
	return fmt.Sprintf("%s and %d more", paths[0], len(paths)-1)
}

type refKey struct{ kind, source, address, field string }

func (v *validator) validateMachine(p string, m *Machine, servers, brokers map[string]bool) {
	if v.required(p+".id", m.ID) && !idRe.MatchString(m.ID) {
		v.add(p+".id", fmt.Sprintf("invalid machine id %q%s", m.ID, foreignRune(m.ID)), "use ASCII letters (a-z, A-Z), digits, '.', '_' and '-' only (it goes into Odoo external ids and metric labels)")
	}
	if v.required(p+".workcenter", m.Workcenter) && (strings.TrimFunc(m.Workcenter, unicode.IsSpace) != m.Workcenter || strings.ContainsFunc(m.Workcenter, invisible)) {
		// Odoo compares codes exactly: " WC-B" is not found, and nothing
		// on the screen shows why. (A warning: the agent's other machines
		// must not stop after an upgrade for it.)
		v.warn(p+".workcenter", fmt.Sprintf("work-center code %q holds white space at an end, or an invisible character", m.Workcenter),
			"write the code exactly as in Odoo (Manufacturing > Configuration > Work Centers)")
	}
	if m.DowntimeReason != nil && m.Running == nil {
		v.warn(p+".downtime_reason", "has no effect: the machine has no running signal",
			"a downtime reason names the loss of a stop, and stops come from running")
	} else if m.DowntimeReason != nil && len(m.DowntimeReason.Map) == 0 && !v.has(p+".downtime_reason.map") {
		// Every code is unmapped: each stop gets the default loss, and
		// each code is logged as unmapped (the OT probe: a map forgotten,
		// or left for later, validated OK).
		v.warn(p+".downtime_reason", "has no map: every stop gets the default loss, its code only in the downtime line's description",
			"add map: { CODE: Loss name } for the codes the machine sends (the log names each unmapped code)")
	}
	refs := m.Refs()
	if len(refs) == 0 {
		v.add(p, "machine has no signal", "add at least one of good_count, scrap_count, running, downtime_reason")
	}
	used := map[refKey]string{}
	for _, r := range refs {
		sp := p + "." + r.Signal
		k, ok := v.validateRef(sp, r.Ref, servers, brokers)
		if !ok {
			continue
		}
		before, dup := used[k]
		switch {
		case dup && before == "running" && r.Signal == "downtime_reason" && len(m.Running.RunningValues) > 0:
			// A machine-state word says both: running_values which of its
			// values run, the reason's map the loss of the others.
		case dup:
			v.add(sp, "reads the same value as "+before, "each signal needs its own node, topic or field")
		default:
			used[k] = r.Signal
		}
	}
	for _, c := range []struct {
		name string
		c    *Counter
	}{{"good_count", m.GoodCount}, {"scrap_count", m.ScrapCount}} {
		if c.c != nil && c.c.Factor != nil && !(*c.c.Factor > 0 && *c.c.Factor <= maxFactor) {
			v.add(p+"."+c.name+".factor", fmt.Sprintf("must be above 0 and at most %d", maxFactor),
				"the units one step of the counter makes: 4 for a 4-cavity tool counting strokes, 0.001 for a counter in grams and an order in kg; leave it out for 1")
		}
		if c.c != nil && c.c.Rollover == 1 {
			v.add(p+"."+c.name+".rollover", "must be 0 (no wrap) or at least 2", "the counter's modulus, e.g. 65536 for a 16-bit counter")
		}
		if c.c != nil && c.c.Rollover > 1<<53 {
			v.warn(p+"."+c.name+".rollover", fmt.Sprintf("%d is beyond 2^53, more than a piece counter holds", c.c.Rollover),
				"the counter's modulus, e.g. 4294967296 for a 32-bit counter; leave it out for a 64-bit one")
		}
		if r := c.c; r != nil && r.Rollover >= 255 && r.Rollover < math.MaxUint64 && (r.Rollover+1)&r.Rollover == 0 {
			// 65535 for a 16-bit counter: every wrap would book one piece too few.
			v.warn(p+"."+c.name+".rollover", fmt.Sprintf("%d is the largest value of a %d-bit counter, not its modulus", r.Rollover, bits.Len64(r.Rollover)),
				fmt.Sprintf("rollover is the number of values: %d for a counter that goes from %d to 0", r.Rollover+1, r.Rollover))
		}
		if r := c.c; r != nil && r.Rollover >= 999 && r.Rollover < math.MaxUint64 && strings.Trim(strconv.FormatUint(r.Rollover, 10), "9") == "" {
			// 999 for a counter that goes 0-999 (a classic S7 counter, an
			// HMI's digits): every wrap would book one piece too few.
			v.warn(p+"."+c.name+".rollover", fmt.Sprintf("%d is the largest value of a %d-digit decimal counter, not its modulus", r.Rollover, len(strconv.FormatUint(r.Rollover, 10))),
				fmt.Sprintf("rollover is the number of values: %d for a counter that goes from %d to 0", r.Rollover+1, r.Rollover))
		}
	}
	if m.ScrapCount != nil && m.ScrapCount.QuietAfter != nil {
		v.add(p+".scrap_count.quiet_after", "only good_count has it",
			"status notes a good_count that brings nothing while the machine runs; scrap comes seldom anyway: move it under good_count, or remove it")
	}
	if c := m.GoodCount; c != nil && c.QuietAfter != nil && *c.QuietAfter > 0 {
		if m.Running == nil {
			v.warn(p+".good_count.quiet_after", "has no effect: the machine has no running signal", "the note is of a machine shown running")
		} else if *c.QuietAfter < OffDuration(time.Minute) {
			v.warn(p+".good_count.quiet_after", fmt.Sprintf("%s is shorter than the time between two pieces of most machines: the note would come between pieces", c.QuietAfter.D()),
				"a little longer than the machine's longest cycle, e.g. 45m for a piece every 20 to 40 minutes; off for never")
		}
	}
	if m.MinStop > 0 {
		if m.BlockWorkcenter {
			v.add(p+".min_stop", "cannot be combined with block_workcenter",
				"block_workcenter opens the downtime line at the stop, before its length is known; use one or the other")
		}
		if m.Running == nil {
			v.warn(p+".min_stop", "has no effect: the machine has no running signal", "")
		}
		if m.MinStop > Duration(15*time.Minute) {
			// Meant for blips of seconds; 25h (the OT audit) booked no
			// stop at all, silently.
			v.warn(p+".min_stop", fmt.Sprintf("%s keeps every stop shorter than that out of Odoo: real stops, not only blips, would be missing from the work center's downtime", m.MinStop.D()),
				"min_stop is for the blips of a chattering run bit, a few seconds (e.g. 5s)")
		}
	}
	if r := m.Running; r != nil && r.RunningValues != nil {
		if len(r.RunningValues) == 0 {
			v.add(p+".running.running_values", "empty list", "list the values that mean running (e.g. [1] or [RUNNING, EXECUTE]), or leave it out for a run bit")
		}
		for i, val := range r.RunningValues {
			at := fmt.Sprintf("%s.running.running_values[%d]", p, i)
			if strings.TrimSpace(val) == "" {
				v.add(at, "empty value", "a value the source sends while the machine runs, e.g. 1 or RUNNING")
			}
		}
	}
	if r := m.DowntimeReason; r != nil {
		codes := r.Codes()
		for code, loss := range r.Map {
			if strings.TrimSpace(code) == "" {
				v.add(p+".downtime_reason.map", "empty reason code", "")
			}
			if strings.TrimSpace(loss) == "" {
				v.add(p+".downtime_reason.map."+code, "empty loss name", "an Odoo loss reason name, e.g. Equipment Failure")
			} else {
				v.lossName(p+".downtime_reason.map."+code, loss)
			}
			if t := strings.TrimSpace(code); t != code && t != "" {
				// A source's code is read without its white space (the
				// mapping matches the entry so): " JAM" never matched
				// (the ot-audit probe).
				msg := fmt.Sprintf("reason code %q begins or ends with white space: a source's code is read without it", code)
				switch taken := codes[t]; taken {
				case t:
					v.warn(p+".downtime_reason.map."+code, msg+fmt.Sprintf(", and %q is in the map too: this entry is never used", t), "remove it")
				case code:
					v.warn(p+".downtime_reason.map."+code, msg+fmt.Sprintf(" (matched as %q)", t), "")
				default:
					// The mapping takes the first in sort order.
					v.warn(p+".downtime_reason.map."+code, msg+fmt.Sprintf(", and %q is read as %q too and taken: this entry is never used", taken, t), "remove it")
				}
				continue
			}
			if NonFinite(code) {
				// Refused as no value before any lookup (the small leads
				// probe: NaN: Jam taken without a word).
				v.warn(p+".downtime_reason.map."+code, fmt.Sprintf("reason code %q is how a source writes a number with no value: "+
					"the agent refuses such a value (logged), so this entry is never used", code), "remove it")
				continue
			}
			if yamlNonFinite[strings.ToLower(strings.TrimLeft(code, "+-"))] {
				v.warn(p+".downtime_reason.map."+code, fmt.Sprintf("reason code %q is YAML's way to write NaN or Infinity, but a map's code is text: "+
					"a source's NaN or Infinity is refused (logged), and only the text %q matches this entry", code, code),
					"remove it, unless the source sends that text")
				continue
			}
			if n, ok := numericCode(code); ok && n != code {
				// A PLC's numeric code arrives as its decimal text (7,
				// 42, 1.0 → "7", "42", "1"): looked up as written, 07
				// or 0x2A never matches (the yaml probe).
				v.warn(p+".downtime_reason.map."+code, fmt.Sprintf("reason code %q is matched as written: a code sent as a number arrives as %q", code, n),
					fmt.Sprintf("write %s, unless the source sends the text %q", n, code))
			}
		}
		if r.Default != "" {
			v.lossName(p+".downtime_reason.default", r.Default)
		}
	}
}

// lossName warns of a loss reason's name with white space at an end or an
// invisible character: Odoo compares names exactly, and the stops it names
// would go to dead letters (a warning, as for a work-center code).
func (v *validator) lossName(path, name string) {
	if strings.TrimFunc(name, unicode.IsSpace) != name || strings.ContainsFunc(name, invisible) {
		v.warn(path, fmt.Sprintf("loss name %q holds white space at an end, or an invisible character", name),
			"write the name exactly as in Odoo (Manufacturing > Configuration > Loss Reasons), or its external id")
	}
}

// nonFiniteTexts are the ways serializers write a float with no value:
// JavaScript and Python's json (NaN, Infinity), Python's str and C's printf
// (nan, inf), Go's fmt (+Inf). Upper-case forms (INF, NAN) are left to be
// codes a PLC's text list may hold.
var nonFiniteTexts = map[string]bool{
	"NaN": true, "-NaN": true, "+NaN": true, "nan": true, "-nan": true, "+nan": true,
	"Infinity": true, "-Infinity": true, "+Infinity": true,
	"inf": true, "-inf": true, "+inf": true, "Inf": true, "-Inf": true, "+Inf": true,
	"infinity": true, "-infinity": true, "+infinity": true,
}

// NonFinite reports whether s, a value sent as text (without white space
// at its ends), is a number with no value, NaN or Infinity, as serializers
// write one: the mapping takes it for no value, neither a reason code nor
// a state.
func NonFinite(s string) bool { return nonFiniteTexts[s] }

// yamlNonFinite are YAML's NaN and Infinity (lower-cased, without a sign):
// a map's key keeps them as the text written.
var yamlNonFinite = map[string]bool{".nan": true, ".inf": true}

// StateCode is how a running value is compared with running_values: a
// number (written with leading zeros, in hex, with a fraction of zero, or
// sent as a float) as its decimal text, any other text in lower case.
func StateCode(v string) string {
	if n, ok := numericCode(v); ok {
		return n
	}
	switch s := strings.ToLower(strings.TrimSpace(v)); s {
	case "true": // a Boolean node: [1] and [true] both mean true
		return "1"
	case "false":
		return "0"
	default:
		return s
	}
}

// numericCode is the decimal text a reason code written as a number (with
// leading zeros, in hex, with a fraction of zero, with an exponent) stands
// for, as a numeric code from a source arrives.
func numericCode(code string) (string, bool) {
	c := strings.TrimSpace(code)
	if h, ok := strings.CutPrefix(strings.ToLower(c), "0x"); ok {
		n, err := strconv.ParseUint(h, 16, 64)
		return strconv.FormatUint(n, 10), err == nil
	}
	if digits, neg := strings.CutPrefix(c, "-"); digits != "" && strings.Trim(digits, "0123456789") == "" {
		// Whole: arrives as written, without leading zeros (JSON has
		// none; an OPC UA integer is printed), however many digits — a
		// float64 would round those beyond 2^53 (the review).
		t := strings.TrimLeft(digits, "0")
		switch {
		case t == "":
			return "0", true
		case neg:
			return "-" + t, true
		}
		return t, true
	}
	f, err := strconv.ParseFloat(c, 64)
	if err != nil || math.IsInf(f, 0) || math.IsNaN(f) {
		return "", false
	}
	return strconv.FormatFloat(f, 'f', -1, 64), true
}

// nodeIDParts splits a node id written with white space around its ; and
// = or its prefixes in capitals (" ns=2; s=Press07.Count", "NS=2;S=…").
var nodeIDParts = regexp.MustCompile(`^\s*(?:([A-Za-z]+)\s*=\s*([^;]*?)\s*;\s*)?([A-Za-z])\s*=\s*(.+)$`)

// nodeIDMeant is the node id id was meant to be, for the mistakes seen
// written (white space around ; and =, capitals in the prefixes: the
// operator probe got the bare "write ns=<index>;s=<name>" for them), when
// that one is valid; "" otherwise.
func nodeIDMeant(id string) string {
	g := nodeIDParts.FindStringSubmatch(id)
	if g == nil {
		return ""
	}
	fixed := strings.ToLower(g[3]) + "=" + g[4]
	if g[1] != "" {
		fixed = strings.ToLower(g[1]) + "=" + g[2] + ";" + fixed
	}
	if fixed == id || !nodeIDRe.MatchString(fixed) {
		return ""
	}
	return fixed
}

// uaExpertNodeID is the form UaExpert (and tools modelled on it) shows a
// node id in: "NS2|String|Press01.Good", "NS2|Numeric|5002".
var uaExpertNodeID = regexp.MustCompile(`^\s*[Nn][Ss](\d+)\s*\|\s*(String|Numeric|Guid|ByteString|Opaque)\s*\|(.+)$`)

// nodeIDAs is the node id id was meant to be, and why, for a node id
// written in another tool's form or in the wrong shape (the OT probe:
// "ns=2,i=5002", "ns=2;Press01.Good", "i=5002;ns=2" and UaExpert's
// "NS2|Numeric|5002" got only the general "write ns=<index>;s=<name>");
// "" when no valid one is seen.
func nodeIDAs(id string) (fixed, why string) {
	const spacing = "no white space around ; and =, and ns=, nsu=, s=, i=, g=, b= in lower case"
	if f := nodeIDMeant(id); f != "" {
		return f, spacing
	}
	if g := uaExpertNodeID.FindStringSubmatch(id); g != nil {
		kind := map[string]string{"String": "s", "Numeric": "i", "Guid": "g", "ByteString": "b", "Opaque": "b"}[g[2]]
		if f := "ns=" + g[1] + ";" + kind + "=" + strings.TrimSpace(g[3]); nodeIDRe.MatchString(f) {
			return f, "NS2|String|… is how UaExpert shows a node id; the file takes its text form"
		}
	}
	try := func(f string) string {
		if nodeIDRe.MatchString(f) {
			return f
		}
		if m := nodeIDMeant(f); m != "" {
			return m
		}
		return ""
	}
	if ns, rest, ok := strings.Cut(id, ","); ok {
		if f := try(strings.TrimSpace(ns) + ";" + strings.TrimSpace(rest)); f != "" {
			return f, "a ; separates the namespace from the identifier"
		}
	}
	if ns, rest, ok := strings.Cut(id, ";"); ok {
		lns := strings.ToLower(strings.TrimSpace(ns))
		rest = strings.TrimSpace(rest)
		switch {
		case (strings.HasPrefix(lns, "ns=") || strings.HasPrefix(lns, "nsu=")) && rest != "" && !strings.Contains(rest, "="):
			kind := "s="
			if strings.Trim(rest, "0123456789") == "" {
				kind = "i="
			}
			if f := try(strings.TrimSpace(ns) + ";" + kind + rest); f != "" {
				return f, "the identifier is written with its type: s= for a name, i= for a number"
			}
		case strings.HasPrefix(strings.ToLower(rest), "ns=") || strings.HasPrefix(strings.ToLower(rest), "nsu="):
			if f := try(rest + ";" + strings.TrimSpace(ns)); f != "" && f != id {
				return f, "the namespace comes first"
			}
		case strings.HasPrefix(strings.ToLower(rest), "i=") && strings.Trim(rest[2:], "0123456789") != "":
			// A name given as a number's (the val54 probe: ns=2;i=M1.Run
			// got the general "write ns=<index>;s=<name>").
			if f := try(strings.TrimSpace(ns) + ";s=" + rest[2:]); f != "" {
				return f, "i= takes a number; a name is written s="
			}
		}
	}
	if t := strings.Trim(id, curlyQuotes); t != id {
		if f := try(t); f != "" {
			return f, "typographic quotes are not YAML's: they are part of the value"
		}
	}
	return "", ""
}

func (v *validator) validateRef(p string, r SourceRef, servers, brokers map[string]bool) (refKey, bool) {
	switch {
	case r.OPCUA == nil && r.MQTT == nil:
		v.add(p, "no source", "add opcua: {server, node} or mqtt: {broker, topic}")
		return refKey{}, false
	case r.OPCUA != nil && r.MQTT != nil:
		v.add(p, "both opcua and mqtt set", "a signal reads from exactly one source")
		return refKey{}, false
	case r.OPCUA != nil:
		o := r.OPCUA
		ok := true
		if v.required(p+".opcua.server", o.Server) && !servers[o.Server] {
			hint := defined("opcua", servers)
			if brokers[o.Server] {
				// The OT probe: told only which servers there are.
				hint = fmt.Sprintf("%q is an MQTT broker: read it with mqtt: { broker: %s, topic: …, field: … }; %s", o.Server, o.Server, hint)
			}
			v.add(p+".opcua.server", fmt.Sprintf("unknown OPC UA server %q", o.Server), hint+caseOnly(o.Server, servers))
			ok = false
		}
		if v.required(p+".opcua.node", o.Node) && !nodeIDRe.MatchString(o.Node) {
			if fixed, why := nodeIDAs(o.Node); fixed != "" {
				v.add(p+".opcua.node", fmt.Sprintf("invalid node id %q", o.Node), fmt.Sprintf(`did you mean %q? %s (use plantedge browse)`, fixed, why))
			} else {
				v.add(p+".opcua.node", fmt.Sprintf("invalid node id %q", o.Node), `write ns=<index>;s=<name> or ns=<index>;i=<number>, e.g. "ns=2;s=Press07.GoodCount" (use plantedge browse)`)
			}
			ok = false
		} else if msg := nodeIDRange(o.Node); msg != "" {
			v.add(p+".opcua.node", fmt.Sprintf("invalid node id %q: %s", o.Node, msg), "use plantedge browse to see the server's node ids")
			ok = false
		} else if strings.TrimSpace(o.Node) != o.Node {
			// Legal in a string identifier, but hardly meant: the server
			// answers BadNodeIdUnknown for a node that looks right.
			v.warn(p+".opcua.node", fmt.Sprintf("node id %q begins or ends with white space", o.Node), "remove it, unless the server's identifier really has it")
		} else if pasted(o.Node) != "" {
			v.warn(p+".opcua.node", fmt.Sprintf("node id %q holds %s", o.Node, pasted(o.Node)),
				"retype the node id, unless the server's identifier really has it (plantedge browse shows them)")
		} else if strings.HasPrefix(o.Node, "s=") || strings.HasPrefix(o.Node, "g=") || strings.HasPrefix(o.Node, "b=") {
			// Namespace 0 is the OPC UA standard's own: no PLC tag is
			// there, so the server answers BadNodeIdUnknown (the OT
			// audit: only validate --opcua found it, without saying why).
			meant := "ns=2;" + o.Node
			if i := max(strings.LastIndex(o.Node, ";ns="), strings.LastIndex(o.Node, ";nsu=")); i > 0 && nodeIDRe.MatchString(o.Node[i+1:]+";"+o.Node[:i]) {
				// "s=Press.Good;ns=2": the namespace written last (the
				// OT probe: the hint made it "ns=2;s=Press.Good;ns=2").
				meant = o.Node[i+1:] + ";" + o.Node[:i]
			}
			v.warn(p+".opcua.node", fmt.Sprintf("node id %q names no namespace, so it is in namespace 0, the OPC UA standard's own nodes", o.Node),
				`write the namespace of the PLC's tags, e.g. "`+meant+`" (plantedge browse shows the ids)`)
		}
		return refKey{"opcua", o.Server, o.Address(), ""}, ok && o.Node != ""
	default:
		m := r.MQTT
		ok := true
		if v.required(p+".mqtt.broker", m.Broker) && !brokers[m.Broker] {
			hint := defined("mqtt", brokers)
			if servers[m.Broker] {
				hint = fmt.Sprintf("%q is an OPC UA server: read it with opcua: { server: %s, node: … }; %s", m.Broker, m.Broker, hint)
			}
			v.add(p+".mqtt.broker", fmt.Sprintf("unknown MQTT broker %q", m.Broker), hint+caseOnly(m.Broker, brokers))
			ok = false
		}
		if v.required(p+".mqtt.topic", m.Topic) {
			switch {
			case strings.ContainsAny(m.Topic, "+#"):
				v.add(p+".mqtt.topic", fmt.Sprintf("wildcard in topic %q", m.Topic), "name the exact topic of this machine; wildcards are not allowed here")
				ok = false
			case len(m.Topic) > maxTopicBytes || !utf8.ValidString(m.Topic) || strings.ContainsRune(m.Topic, 0):
				v.add(p+".mqtt.topic", "invalid topic", "")
				ok = false
			case strings.TrimSpace(m.Topic) != m.Topic:
				// Legal in MQTT, but a publisher's topic hardly ends in a
				// space: a quiet topic nobody would see why.
				v.warn(p+".mqtt.topic", fmt.Sprintf("topic %q begins or ends with white space", m.Topic), "remove it, unless the publisher's topic really has it")
			case pasted(m.Topic) != "":
				// A topic pasted from a web page or a spreadsheet: a
				// non-breaking space for the publisher's plain one stays
				// quiet, and shows as a space.
				v.warn(p+".mqtt.topic", fmt.Sprintf("topic %q holds %s", m.Topic, pasted(m.Topic)),
					"retype the topic, unless the publisher's topic really has it (mosquitto_sub -t '#' -v shows the topics sent)")
			case len(m.Topic) > 1 && (strings.HasPrefix(m.Topic, "/") || strings.HasSuffix(m.Topic, "/")):
				// Legal too, and another topic than the one without the
				// slash ("/plant/m1" has an empty first level): copied
				// from a path, it stays quiet.
				v.warn(p+".mqtt.topic", fmt.Sprintf("topic %q begins or ends with /: an empty topic level, another topic than %q", m.Topic, strings.Trim(m.Topic, "/")),
					"remove the slash, unless the publisher's topic really has it (mosquitto_sub -t '#' -v shows the topics sent)")
			}
		}
		if m.Format != "" && m.Format != FormatSparkplugB {
			v.add(p+".mqtt.format", fmt.Sprintf("unknown format %q", m.Format), "leave it out for JSON or a bare value, or write format: sparkplug_b")
			return refKey{}, false
		}
		if m.Sparkplug() {
			return v.validateSparkplug(p, m, ok)
		}
		if strings.HasPrefix(m.Topic, "spBv1.0/") {
			// Its payloads are protobuf: read as JSON or a bare value,
			// every message would be malformed.
			v.warn(p+".mqtt.topic", fmt.Sprintf("topic %q is a Sparkplug B topic, read without format: sparkplug_b", m.Topic),
				"add format: sparkplug_b, with field the metric's name")
		}
		if invalid, _ := v.fieldPath(p+".mqtt.field", m.Field, "counters.good", "counters.good, and values.0.v for the first element of an array"); invalid {
			ok = false
		}
		_, said := v.fieldPath(p+".mqtt.timestamp_field", m.TimestampField, "ts", "ts, or meta.time")
		switch {
		case said: // one word on the path is enough
		case m.TimestampField != "" && m.TimestampField == m.Field:
			// The value's own field read as its time: a counter of
			// 1,700 pieces is an epoch-ms time in January 1970, every
			// value refused or dated wrong.
			v.warn(p+".mqtt.timestamp_field", fmt.Sprintf("is the value's own field %q", m.Field),
				"timestamp_field names the field holding the value's time (e.g. ts); remove it if the payload carries none")
		case m.TimestampField != "" && m.Field == "":
			// The mapping reads a bare value then, and never looks for a
			// time (a warning: the file loaded before).
			v.warn(p+".mqtt.timestamp_field", "not used without field: a bare value (a number or a bool) carries no time, so the values are taken at their receive time",
				"for a JSON payload, give field the value's path; else remove timestamp_field")
		}
		return refKey{"mqtt", m.Broker, m.Topic, m.Field}, ok && m.Topic != ""
	}
}

// fieldPath checks path, a payload's field path (field, timestamp_field)
// at key: an error where it is no dot path (invalid), a warning where it
// looks like JSONPath or a JSON Pointer; said is whether it said either.
// example is a path for the hints, examples the JSONPath hint's.
func (v *validator) fieldPath(key, path, example, examples string) (invalid, said bool) {
	switch {
	case path != "" && !fieldPathRe.MatchString(path):
		v.add(key, fmt.Sprintf("invalid field path %q", path), "a dot path into the JSON payload, e.g. "+example)
		return true, true
	case strings.HasPrefix(path, "$.") || strings.ContainsAny(path, "[]"):
		// A warning: a key may really be named so.
		v.warn(key, fmt.Sprintf("field path %q looks like JSONPath", path),
			"write a plain dot path without $ and brackets: "+examples)
		return false, true
	case strings.HasPrefix(path, "/") && len(path) > 1:
		// A JSON Pointer (RFC 6901, Node-RED's and many gateways'
		// form): read as one key named "/cnc01/parts/good", never
		// found (the OT probe: no word of it). A warning: a key may
		// really be named so.
		v.warn(key, fmt.Sprintf("field path %q looks like a JSON Pointer (/a/b)", path),
			fmt.Sprintf("write a dot path: %s", strings.ReplaceAll(strings.TrimPrefix(path, "/"), "/", ".")))
		return false, true
	}
	return false, false
}

// validateSparkplug checks a Sparkplug B reference: a DATA topic (the
// BIRTH and DEATH topics follow from it), the metric's name in field, no
// timestamp_field (the metric's own timestamp is the source time).
func (v *validator) validateSparkplug(p string, m *MQTTRef, ok bool) (refKey, bool) {
	if m.Topic != "" && !strings.ContainsAny(m.Topic, "+#") {
		t, tok := ParseSparkplugTopic(m.Topic)
		switch {
		case !tok:
			v.add(p+".mqtt.topic", fmt.Sprintf("topic %q is not a Sparkplug B topic", m.Topic),
				"write the DATA topic: spBv1.0/<group>/DDATA/<edge node>/<device>, or spBv1.0/<group>/NDATA/<edge node> for a metric of the edge node")
			ok = false
		case t.Type == "DDATA" && t.Device != "", t.Type == "NDATA" && t.Device == "":
		default:
			hint := "write the DATA topic: spBv1.0/<group>/DDATA/<edge node>/<device>, or spBv1.0/<group>/NDATA/<edge node> for a metric of the edge node"
			if t.Device != "" {
				hint = "write " + t.With("DDATA") + ": the BIRTH and DEATH topics are read with it"
			} else if strings.HasPrefix(t.Type, "N") {
				hint = "write " + t.With("NDATA") + ": the BIRTH and DEATH topics are read with it"
			}
			v.add(p+".mqtt.topic", fmt.Sprintf("topic %q is not a Sparkplug B DATA topic", m.Topic), hint)
			ok = false
		}
	}
	if strings.TrimSpace(m.Field) == "" {
		v.add(p+".mqtt.field", "no metric name", "with format: sparkplug_b, field is the metric's name as the edge node publishes it, e.g. field: Counters/Good")
		ok = false
	}
	if m.TimestampField != "" {
		v.add(p+".mqtt.timestamp_field", "not used with format: sparkplug_b", "remove it: the metric's own timestamp (else the payload's) is the source time")
		ok = false
	}
	return refKey{"mqtt", m.Broker, m.Topic, m.Field}, ok && m.Topic != ""
}

// caseOnly is a hint's ending for a source name that differs from a
// defined one only in letter case: names are compared as written.
func caseOnly(name string, names map[string]bool) string {
	for _, n := range slices.Sorted(maps.Keys(names)) {
		if strings.EqualFold(n, name) {
			return fmt.Sprintf("; names are case-sensitive: %q is not %q", name, n)
		}
	}
	return ""
}

func defined(kind string, names map[string]bool) string {
	if len(names) == 0 {
		return "no " + kind + " sources are defined; add one under " + kind + ":"
	}
	return "defined: " + strings.Join(slices.Sorted(maps.Keys(names)), ", ")
}

// nodeIDRange checks the numbers of a node id that nodeIDRe accepted: a
// namespace index is 16 bits, a numeric identifier 32 (OPC UA Part 6). A
// number beyond them would pass here and fail when the connector starts,
// taking the whole server's signals down with it.
func nodeIDRange(node string) string {
	m := nodeIDNum.FindStringSubmatch(node)
	if m == nil {
		return ""
	}
	if m[1] != "" {
		if n, err := strconv.ParseUint(m[1], 10, 16); err != nil || n > 65535 {
			return "the namespace index is above 65535"
		}
	}
	if m[2] != "" {
		if _, err := strconv.ParseUint(m[2], 10, 32); err != nil {
			return "a numeric identifier is at most 4294967295"
		}
	}
	id := node
	if strings.HasPrefix(id, "ns=") || strings.HasPrefix(id, "nsu=") {
		_, id, _ = strings.Cut(id, ";")
	}
	if b, ok := strings.CutPrefix(id, "b="); ok {
		if _, err := base64.StdEncoding.DecodeString(b); err != nil {
			return "a b= (opaque) identifier is base64 (padded to a multiple of 4 with =)"
		}
	}
	return ""
}

// urlUserinfo is the user:password@ of a URL url.Parse may refuse.
var urlUserinfo = regexp.MustCompile(`^([a-zA-Z][a-zA-Z0-9+.-]*://).*@`) // to the last @: a password may hold / and @

// schemelessUserinfo is the user:password@ of a URL written without its
// scheme (admin:pw@erp.example.com): url.Parse takes the user for the
// scheme and the password for part of an opaque URL, with no User. (Not
// scheme://: the first character after the colon is no slash.)
var schemelessUserinfo = regexp.MustCompile(`^([^/@:\s]+:)(?:[^/\s]\S*)?@`) // to the last @

// redactURL is raw for a message: without the password of its user:password@,
// also when it does not parse or has no scheme.
func redactURL(raw string) string {
	if !strings.Contains(raw, "://") && schemelessUserinfo.MatchString(raw) {
		return schemelessUserinfo.ReplaceAllString(raw, "${1}****@")
	}
	if u, err := url.Parse(raw); err == nil {
		if _, secret := u.User.Password(); !secret {
			// As written: url.Parse lowers the scheme, and a message
			// about an upper-case one then quoted it right (the README
			// audit).
			return raw
		}
		return u.Redacted()
	}
	return urlUserinfo.ReplaceAllString(raw, "${1}****@")
}

// invisible is a character that shows as nothing, or as something else:
// zero widths, the byte order mark, soft hyphens (a code pasted from a web
// page), control characters. A plain space is visible enough.
func invisible(r rune) bool {
	return unicode.Is(unicode.Cf, r) || !unicode.IsPrint(r)
}

// pasted says where s holds a character a paste from a web page, a
// spreadsheet or a chat leaves in a name: one that shows as a space and is
// not the plain one (a non-breaking space), or as nothing (a zero-width
// space); "" if none. A topic or node id with one looks right and never
// matches the publisher's or the server's.
func pasted(s string) string {
	for i, r := range []rune(s) {
		switch {
		case r == ' ' || !invisible(r):
		case unicode.IsSpace(r):
			return fmt.Sprintf("at character %d a space that is not the plain one (%U)", i+1, r)
		default:
			return fmt.Sprintf("at character %d an invisible character (%U)", i+1, r)
		}
	}
	return ""
}

// maxFactor bounds a counter's factor: more units per step than any tool
// makes is a typo (a rollover, a part number).
const maxFactor = 10_000
