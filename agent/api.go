package agent

import (
	"cmp"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/plantedge/plantedge/agent/config"
	"github.com/plantedge/plantedge/buffer"
)

// Handler serves the local HTTP API: /metrics, /healthz, /readyz and the
// status, flush and dead-letter endpoints the CLI uses (under /api/,
// guarded: see guardAPI). Every answer carries AgentHeader.
func (a *Agent) Handler() http.Handler {
	mux := http.NewServeMux()
	api := http.NewServeMux()
	mux.Handle("/api/", a.guardAPI(api))
	mux.Handle("GET /metrics", promhttp.HandlerFor(a.opts.Registry, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		if d := a.sinceBeat(); d > 2*time.Minute {
			http.Error(w, fmt.Sprintf("forwarding loop silent for %s\n", d.Round(time.Second)), http.StatusServiceUnavailable)
			return
		}
		io.WriteString(w, "ok\n")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !a.ready.Load() {
			http.Error(w, "not ready\n", http.StatusServiceUnavailable)
			return
		}
		if wf := a.writeFail.Load(); wf != nil {
			http.Error(w, fmt.Sprintf("buffer writes failing for %s: %s\n", time.Since(wf.Since).Round(time.Second), wf.Err), http.StatusServiceUnavailable)
			return
		}
		if d := a.writeStalled(); d > 0 {
			http.Error(w, fmt.Sprintf("buffer write stalled for %s: the disk does not complete it (frozen or failing disk, hung network file system); no value is taken meanwhile\n", d.Round(time.Second)), http.StatusServiceUnavailable)
			return
		}
		io.WriteString(w, "ready\n")
	})
	api.HandleFunc("GET /api/v1/status", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, a.Status())
	})
	api.HandleFunc("POST /api/v1/flush", func(w http.ResponseWriter, _ *http.Request) {
		var seq uint64
		if a.opened.Load() {
			seq = a.buf.LastSeq() // before the round: what is in the buffer now
		}
		n := a.Flush()
		// after: status's odoo.rounds_done past it says a round that began
		// after this request has completed — in this instance (started).
		// seq: the buffer's last record at the request.
		writeJSON(w, map[string]any{"ok": true, "after": n, "started": a.started.UTC(), "seq": seq})
	})
	api.HandleFunc("POST /api/v1/rebook", func(w http.ResponseWriter, r *http.Request) {
		if !a.bufferOpen(w) {
			return
		}
		since, err := time.Parse(time.RFC3339, r.URL.Query().Get("since"))
		if err != nil {
			http.Error(w, "since: want an RFC 3339 time: "+err.Error(), http.StatusBadRequest)
			return
		}
		dry := r.URL.Query().Get("dry_run") == "1"
		if !dry {
			who := peerOf(r)
			// It writes to Odoo: over TCP, as accept-qty, only from
			// root, the agent's user or its group (the README audit:
			// any local user could; a dry run only reads).
			if why := who.refused("booking again writes to Odoo", "plantedge rebook"); why != "" {
				a.log.Warn("rebook refused", "since", since.UTC().Format(time.RFC3339), "by", who.String())
				http.Error(w, why, http.StatusForbidden)
				return
			}
			a.log.Warn("rebook asked", "since", since.UTC().Format(time.RFC3339), "by", who.String())
		}
		// Within the API's write timeout; the rebook itself goes on.
		ctx, cancel := context.WithTimeout(r.Context(), rebookWait)
		defer cancel()
		res, err := a.fwd.Rebook(ctx, since, dry)
		switch {
		case err != nil && ctx.Err() != nil && errors.Is(err, ctx.Err()):
			// The API's own wait, not the rebook's error: a load of it
			// that timed out wraps context.DeadlineExceeded too, and was
			// said to be going on (load45) where the rebook had failed.
			// Taken by a round and going on (2 min 18 s for 240 bookings,
			// measured): it is logged when done. (One no round took is
			// withdrawn: errRebookNotTaken.)
			writeJSON(w, RebookResult{Since: since, DryRun: dry, Pending: true})
		case errors.Is(err, errRebookNotTaken):
			http.Error(w, err.Error(), http.StatusGatewayTimeout)
		default:
			answerRound(w, res, err)
		}
	})
	api.HandleFunc("POST /api/v1/accept-qty", func(w http.ResponseWriter, r *http.Request) {
		if !a.bufferOpen(w) {
			return
		}
		machine := r.URL.Query().Get("machine")
		if m := findMachine(a.cfg.Load(), machine); m == nil || m.GoodCount == nil {
			http.Error(w, fmt.Sprintf("machine %q: no such machine with a good_count in the configuration the agent runs", machine), http.StatusNotFound)
			return
		}
		who := peerOf(r)
		if why := who.refused("accepting Odoo's quantity changes what plantedge writes", "plantedge accept-qty"); why != "" {
			a.log.Warn("accepting the quantity in Odoo refused", "machine", machine, "by", who.String())
			http.Error(w, why, http.StatusForbidden)
			return
		}
		a.log.Info("accepting the quantity in Odoo asked", "machine", machine, "by", who.String())
		ctx, cancel := context.WithTimeout(r.Context(), acceptWait)
		defer cancel()
		res, err := a.fwd.AcceptQty(ctx, machine)
		switch {
		case errors.Is(err, context.DeadlineExceeded):
			http.Error(w, fmt.Sprintf("no forwarding round reached the machine within %s (Odoo offline? plantedge status says): nothing was changed; try again", acceptWait),
				http.StatusGatewayTimeout)
		case errors.Is(err, errAcceptBusy):
			http.Error(w, err.Error(), http.StatusConflict)
		case errors.Is(err, errAcceptPending):
			http.Error(w, err.Error(), http.StatusGatewayTimeout)
		default:
			answerRound(w, res, err)
		}
	})
	api.HandleFunc("GET /api/v1/opcua/pins", func(w http.ResponseWriter, _ *http.Request) {
		if !a.bufferOpen(w) {
			return
		}
		pins, err := NamespacePinsIn(a.buf)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		if pins == nil {
			pins = []NamespacePin{}
		}
		writeJSON(w, pins)
	})
	api.HandleFunc("GET /api/v1/deadletters", a.serveDeadLetters)
	api.HandleFunc("POST /api/v1/deadletters/{action}", a.serveDeadLetterAction)
	return markAnswers(mux, cmp.Or(a.opts.Version, "unknown"))
}

// AgentHeader is on every answer of the agent's local API, its version
// for value: what answers at listen without it is not the agent — another
// program on its port, or an agent of a version before it (see
// APIClient.do). The CLI could not tell them apart: a 200 with JSON of
// another program's was read as the agent's ("0 dead letters", "rebooked 0
// lines", the file not read).
const AgentHeader = "Plantedge-Agent"

// markAnswers sets AgentHeader on each answer of h, its refusals too.
func markAnswers(h http.Handler, version string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set(AgentHeader, version)
		h.ServeHTTP(w, r)
	})
}

// guardAPI lets through only what the CLI on this machine sends:
//   - a Host header naming this machine (an IP address, localhost, the
//     listen host or the machine's name), so that a web page cannot reach
//     the API through a DNS name rebound to 127.0.0.1;
//   - for requests that change something (flush, dead-letter retry/drop):
//     a peer on this machine (loopback, the listen address itself, or the
//     unix socket), and no sign of a web page (an Origin header, or
//     Sec-Fetch-Site other than none/same-origin): neither another host on
//     the plant network nor a browser on the edge box can drop dead letters.
func (a *Agent) guardAPI(next http.Handler) http.Handler {
	hostname, _ := os.Hostname()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, unix := r.Context().Value(http.LocalAddrContextKey).(*net.UnixAddr) // its file mode guards it
		if !unix && !a.hostIsThisMachine(r.Host, hostname) {
			http.Error(w, fmt.Sprintf("host %q is not this machine", r.Host), http.StatusForbidden)
			return
		}
		cfg := a.cfg.Load()
		site, dir := r.Header.Get(siteHeader), r.Header.Get(dataDirHeader)
		if site != "" && dir != "" && site != cfg.Site && filepath.Clean(dir) != filepath.Clean(cfg.DataDir) {
			w.Header().Set(siteHeader, cfg.Site)
			http.Error(w, fmt.Sprintf("the agent at this address runs site %s with data_dir %s, not site %s with data_dir %s: "+
				"two configurations share listen %s (or both were edited since this agent started: a restart applies them)",
				cfg.Site, cfg.DataDir, site, dir, cfg.Listen), http.StatusConflict)
			return
		}
		if r.Method == http.MethodGet || r.Method == http.MethodHead {
			next.ServeHTTP(w, r)
			return
		}
		if !unix && !peerIsThisMachine(r) {
			http.Error(w, "the agent's API changes nothing on request from another host: run plantedge on the edge box", http.StatusForbidden)
			return
		}
		if site := r.Header.Get("Sec-Fetch-Site"); r.Header.Get("Origin") != "" || (site != "" && site != "none" && site != "same-origin") {
			http.Error(w, "requests from web pages are refused", http.StatusForbidden)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// hostIsThisMachine reports whether an HTTP Host header names this
// machine: an IP address, localhost, the configured listen host or the
// machine's name.
func (a *Agent) hostIsThisMachine(hostport, hostname string) bool {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.Trim(host, "[]"), ".")
	if net.ParseIP(host) != nil || strings.EqualFold(host, "localhost") || (hostname != "" && strings.EqualFold(host, hostname)) {
		return true
	}
	if lh, _, err := net.SplitHostPort(a.cfg.Load().Listen); err == nil && strings.EqualFold(host, lh) {
		return true
	}
	return false
}

// peerIsThisMachine reports whether a TCP request comes from this machine:
// from a loopback address, or from the address it was received on.
func peerIsThisMachine(r *http.Request) bool {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return false
	}
	ip := net.ParseIP(host)
	if ip == nil {
		return false
	}
	if ip.IsLoopback() {
		return true
	}
	local, ok := r.Context().Value(http.LocalAddrContextKey).(*net.TCPAddr)
	return ok && local.IP.Equal(ip)
}

// bufferOpen says whether the buffer is open; where it is not yet, it
// answers 503 for the request that needs it.
func (a *Agent) bufferOpen(w http.ResponseWriter) bool {
	if !a.opened.Load() {
		http.Error(w, "buffer not open yet", http.StatusServiceUnavailable)
		return false
	}
	return true
}

// answerRound answers a request a forwarding round served (rebook,
// accept-qty) with its result, once each handler has answered the errors
// of its own: a stopping agent is 503 (nothing was changed), any other
// error 502 (Odoo's).
func answerRound(w http.ResponseWriter, res any, err error) {
	switch {
	case errors.Is(err, errAgentStopping):
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
	case err != nil:
		http.Error(w, err.Error(), http.StatusBadGateway)
	default:
		writeJSON(w, res)
	}
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// DeadLetterView is a dead letter as the CLI shows it.
type DeadLetterView struct {
	ID     uint64    `json:"id"`
	Lane   string    `json:"lane"`
	Key    string    `json:"key"`
	Seq    uint64    `json:"seq"`
	Time   time.Time `json:"time"`
	At     time.Time `json:"dead_lettered_at"`
	Reason string    `json:"reason"`
	// Odoo is the Odoo that refused it (host:port/path database): a retry
	// books it in the one the agent sends to, so one another Odoo refused
	// is kept unless asked for (--here). Empty when not known (a file from
	// a version that did not keep it).
	Odoo string `json:"odoo,omitempty"`
	// What the record holds, in words ("3 good pieces", "stop from … to …,
	// reason JAM"): what a retry books, or a drop loses.
	What string `json:"what,omitempty"`
	Data string `json:"data"`
	// Damaged: bytes the buffer could not read as a record (Data holds them
	// as stored); they can be dropped, not retried.
	Damaged bool `json:"damaged,omitempty"`
	// DataBase64 is Data exactly, when it is not valid UTF-8 (JSON would
	// replace those bytes in Data).
	DataBase64 string `json:"data_base64,omitempty"`
}

func deadLetterViews(dls []buffer.DeadLetter, by deadOdoo) []DeadLetterView {
	out := make([]DeadLetterView, 0, len(dls))
	for _, d := range dls {
		v := DeadLetterView{ID: d.ID, Lane: d.LaneName(), Key: d.Record.Key, Seq: d.Record.Seq,
			Time: d.Record.Time, At: d.At, Reason: d.Reason, Odoo: by.of(d.ID), Data: string(d.Record.Data), Damaged: d.Damaged}
		if !d.Damaged {
			v.What = describeRecord(d.Record)
		}
		if !utf8.Valid(d.Record.Data) {
			v.DataBase64 = base64.StdEncoding.EncodeToString(d.Record.Data)
		}
		out = append(out, v)
	}
	return out
}

// LocalStamp is how a time in this box's zone is shown to a person: with
// the zone's name, so that a stop across the autumn change reads "from
// 02:50:00 CEST to 02:10:00 CET", not backwards (the tz probe).
const LocalStamp = "2006-01-02 15:04:05 MST"

// Plural is n and word, with an s unless n is 1 ("1 record", "3 records").
func Plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return strconv.Itoa(n) + " " + word + "s"
}

// OneOrMore is single when one holds, else more: the words that agree
// with a count beside it ("it is", "they are").
func OneOrMore(one bool, single, more string) string {
	if one {
		return single
	}
	return more
}

// Pieces is a number of pieces in words, of a kind ("good", "scrapped",
// or "" for none): "1 good piece", "2.5 good pieces".
func Pieces(n float64, kind string) string {
	what := "piece"
	if kind != "" {
		what = kind + " piece"
	}
	if n != 1 {
		what += "s"
	}
	return Qty(n) + " " + what
}

// Qty is a quantity as a plant reads it: 2000000, not 2e+06, and 0.3, not
// the 0.30000000000000004 that three steps of a counter with factor 0.1
// make, nor the 99.9999999999986 that a thousand of them add up to. It is
// rounded to 12 significant digits (4 decimals from 100 million up) —
// more than any count or factor has, fewer than float64's noise — and
// printed without an exponent.
func Qty(n float64) string {
	if n == 0 || math.IsNaN(n) || math.IsInf(n, 0) {
		return strconv.FormatFloat(math.Abs(n), 'f', -1, 64) // (-0 is 0)
	}
	s := strconv.FormatFloat(n, 'g', 12, 64)
	if math.Abs(n) >= 1e8 { // (12 digits would cut the hundredths of 10 billion)
		s = strconv.FormatFloat(n, 'f', 4, 64)
	}
	r, err := strconv.ParseFloat(s, 64)
	if err != nil {
		r = n
	}
	return strconv.FormatFloat(r, 'f', -1, 64)
}

// describeRecord says in words what a count or event record holds ("" when
// it cannot be decoded).
func describeRecord(r buffer.Record) string {
	switch r.Lane {
	case buffer.LaneCounts:
		c, err := decodeCount(r)
		if err != nil {
			return ""
		}
		kind := ""
		switch _, sig := splitKey(r.Key); sig {
		case sigGood:
			kind = "good"
		case sigScrap:
			kind = "scrapped"
		}
		return Pieces(c.Delta, kind)
	case buffer.LaneEvents:
		e, err := decodeEvent(r)
		if err != nil || e.Start == 0 {
			return ""
		}
		out := "stop from " + fromMS(e.Start).Local().Format(LocalStamp)
		if e.End != 0 {
			out += " to " + fromMS(e.End).Local().Format(LocalStamp)
		} else {
			out += ", still open"
		}
		if e.Reason != "" {
			out += ", reason " + e.Reason
		}
		return out
	}
	return ""
}

// DeadLetterResult is what a retry or drop did.
type DeadLetterResult struct {
	Affected int `json:"affected"`
	// KeptDamaged: dead letters a retry of all kept because they cannot be
	// retried (see buffer.ErrDamaged).
	KeptDamaged int `json:"kept_damaged"`
	// KeptElsewhere: dead letters a retry of all kept because another Odoo
	// than the one it would book them in refused them (Elsewhere names it,
	// To the one it books in).
	KeptElsewhere int      `json:"kept_elsewhere,omitempty"`
	Elsewhere     []string `json:"elsewhere,omitempty"`
	To            string   `json:"to,omitempty"`
	// KeptFinished: dead letters a retry of all kept because they hold
	// pieces made on a finished work order (see finishedOrderReason).
	KeptFinished int `json:"kept_finished,omitempty"`
}

// FinishedOrderAdvice is what to do with the pieces of a finished order.
const FinishedOrderAdvice = "Odoo takes no quantity on a finished or cancelled work order, and retried they would be booked on the one in progress: " +
	"correct the finished order's quantity in Odoo (a cancelled one's pieces or scrap: book them by hand) if need be, then drop the dead letter (plantedge deadletter drop ID)"

// DeadLetterAction retries or drops the dead letter id ("all" for every
// one) on buf. A retry books into the Odoo to names (cfg: the one the agent
// sends to); dead letters another Odoo refused are kept, not retried —
// retried, they would be booked here — unless to is nil (--here). A retry
// of all keeps the damaged ones too (they cannot be retried, see
// buffer.ErrDamaged); a retry of one of either is an error.
func DeadLetterAction(ctx context.Context, buf *buffer.Queue, action, id string, to *config.Config) (res DeadLetterResult, err error) {
	var fn func(context.Context, uint64) error
	var all func(context.Context, []uint64) ([]uint64, error)
	switch action {
	case "retry":
		fn, all = buf.RetryDeadLetter, buf.RetryDeadLetters
	case "drop":
		fn, all = buf.DropDeadLetter, buf.DropDeadLetters
	default:
		return res, fmt.Errorf("unknown action %q (retry or drop)", action)
	}
	var by deadOdoo
	if action == "retry" && to != nil {
		if by, err = loadDeadOdoo(buf); err != nil {
			return res, err
		}
		res.To = odooIdentity(to)
	}
	// elsewhere: refused by another Odoo than the one a retry books in.
	elsewhere := func(d uint64) string {
		if o := by.of(d); o != "" && res.To != "" && o != res.To {
			return o
		}
		return ""
	}
	if id != "all" {
		n, err := strconv.ParseUint(id, 10, 64)
		if err != nil {
			return res, fmt.Errorf("dead letter id %q: want a number or \"all\"", id)
		}
		if o := elsewhere(n); o != "" {
			// Unless it is gone: then the buffer's error says so.
			if page, err := buf.DeadLetterPage(n-1, 1); err == nil && len(page) == 1 && page[0].ID == n {
				return res, &ElsewhereError{ID: n, Odoo: o, To: res.To}
			}
		}
		if action == "retry" {
			if page, err := buf.DeadLetterPage(n-1, 1); err == nil && len(page) == 1 && page[0].ID == n && finishedOrder(page[0]) {
				return res, fmt.Errorf("dead letter %d holds what was made on a finished or cancelled work order: not retried. %s", n, FinishedOrderAdvice)
			}
		}
		if err := fn(ctx, n); errors.Is(err, buffer.ErrNotFound) {
			// (The buffer's words, "drop dead letter: dead letter 5: not
			// found", said it twice and not where to look.)
			return res, fmt.Errorf("no dead letter %d: retried or dropped already, or never one (plantedge deadletter list shows those there are)", n)
		} else if err != nil {
			return res, err // the buffer's error names the action and the id
		}
		res.Affected = 1
		return res, nil
	}
	// Every dead letter there is now, read a page at a time, and acted on
	// in one transaction: all or none, never half (one at a time, a retry
	// of all stopped between two when the disk stalled and the caller gave
	// up). One retried and refused again meanwhile has a higher ID and
	// waits for the next "all"; one retried or dropped meanwhile (another
	// command's) is left out.
	latest, ok, err := buf.LatestDeadLetter()
	if err != nil || !ok {
		return res, err
	}
	last := latest.ID
	var ids []uint64
	for after := uint64(0); after < last; {
		page, err := buf.DeadLetterPage(after, deadLetterPage)
		if err != nil {
			return res, err
		}
		if len(page) == 0 {
			break
		}
		for _, d := range page {
			if d.ID > last {
				break
			}
			after = d.ID
			if d.Damaged && action == "retry" {
				res.KeptDamaged++
				continue
			}
			if action == "retry" && finishedOrder(d) {
				res.KeptFinished++
				continue
			}
			if o := elsewhere(d.ID); o != "" {
				res.KeptElsewhere++
				if !slices.Contains(res.Elsewhere, o) {
					res.Elsewhere = append(res.Elsewhere, o)
				}
				continue
			}
			ids = append(ids, d.ID)
		}
		if page[len(page)-1].ID > last {
			break
		}
	}
	done, err := all(ctx, ids)
	res.Affected = len(done)
	return res, err
}

// finishedOrder reports a dead letter of pieces made on a finished (or
// cancelled) work order (finishedOrderReason, cancelledOrderReason).
func finishedOrder(d buffer.DeadLetter) bool { return endedOrder(d.Reason) }

// endedOrder reports a dead letter's reason for pieces made on a work
// order finished or cancelled before they reached Odoo.
func endedOrder(reason string) bool {
	return strings.HasPrefix(reason, finishedOrderReason) || strings.HasPrefix(reason, cancelledOrderReason)
}

// deadLetterPage is how many dead letters are read (and sent) at a time.
const deadLetterPage = 1000

// ListDeadLetters reads the dead letters of a stopped agent's buffer.
func ListDeadLetters(buf *buffer.Queue) ([]DeadLetterView, error) {
	var out []DeadLetterView
	by, err := loadDeadOdoo(buf)
	if err != nil {
		return nil, err
	}
	for after := uint64(0); ; {
		page, err := buf.DeadLetterPage(after, deadLetterPage)
		if err != nil || len(page) == 0 {
			return out, err
		}
		out = append(out, deadLetterViews(page, by)...)
		after = page[len(page)-1].ID
	}
}

// APIClient talks to a running agent's local HTTP API.
type APIClient struct {
	base, listen  string
	hc            *http.Client
	site, dataDir string // what the caller's config names; "" asks any agent
	// bufferPath is the caller's config's buffer file, whose lock tells
	// whether an agent runs with it ("": not known, see do).
	bufferPath string
}

// siteHeader and dataDirHeader carry the site and data_dir of the caller's
// config. An agent whose site and data_dir both differ (another plant's
// agent: two configs sharing a listen address) refuses the request, so
// that `deadletter drop all` never acts on the wrong plant's buffer. One of
// them differing is this agent's own file edited since it started (a reload
// keeps both until a restart), or a file that only partly loads: allowed.
const (
	siteHeader    = "X-Plantedge-Site"
	dataDirHeader = "X-Plantedge-Data-Dir"
)

// ErrOtherSite means the agent at the listen address runs another site.
var ErrOtherSite = errors.New("another site's agent answers at this address")

// ForConfig makes the client's requests name cfg's site and data_dir (see
// siteHeader).
func (c *APIClient) ForConfig(cfg *config.Config) *APIClient {
	c.site, c.dataDir, c.bufferPath = cfg.Site, cfg.DataDir, cfg.BufferPath()
	return c
}

// ErrNotRunning means no agent answered on the configured listen address.
var ErrNotRunning = errors.New("agent not running")

// ErrNotAnswering means the listen address took the connection (or kept
// it) but no answer came in time: an agent that is running but hung or
// paused, not a stopped one (whose buffer file the CLI must not touch).
var ErrNotAnswering = errors.New("agent not answering")

// ErrNoAccess means the agent's unix socket refused this user.
var ErrNoAccess = errors.New("the agent's socket does not let this user in")

// ForeignError is what answered at listen (an answer without AgentHeader,
// or none in time) when it is not the agent: no process holds the buffer
// file of the client's config (ForConfig). Another program has the
// agent's port, and the agent is not running — it is ErrNotRunning too,
// so that the commands use the buffer file as a stopped agent's, or say
// that the agent is not running. With LockErr set, whether a process
// holds the file could not be looked at (a user who may not look into
// data_dir): an agent of a version before AgentHeader is not ruled out,
// nor is the agent not running said (not ErrNotRunning).
type ForeignError struct {
	Listen, BufferPath string
	// Err is what answered: an *AnswerError (Unmarked), or ErrNotAnswering.
	Err     error
	LockErr error
}

func (e *ForeignError) Error() string {
	if e.LockErr != nil {
		return fmt.Sprintf("what answers at listen %s does not say it is the agent (%v), and whether an agent holds %s this user may not see (%v)",
			e.Listen, e.Err, e.BufferPath, e.LockErr)
	}
	return fmt.Sprintf("agent not running (no agent holds %s), and what answers at listen %s is not it (%v)", e.BufferPath, e.Listen, e.Err)
}

func (e *ForeignError) Unwrap() []error {
	if e.LockErr != nil {
		return []error{e.Err}
	}
	return []error{ErrNotRunning, e.Err}
}

// notTheAgent is err, what answered at listen without AgentHeader (or
// nothing in time), as a *ForeignError when no process holds the buffer
// file (or that cannot be looked at); nil when one does — an agent of a
// version before AgentHeader (a package upgrade that left it running), or
// a hung one — and when the client knows no buffer file (NewAPIClient
// alone): its answer is taken as before.
func (c *APIClient) notTheAgent(err error) error {
	if c.bufferPath == "" {
		return nil
	}
	running, ierr := buffer.InUse(c.bufferPath)
	switch {
	case running:
		return nil
	case ierr != nil && !errors.Is(ierr, os.ErrPermission):
		return nil // not known either way: as before
	}
	return &ForeignError{Listen: c.listen, BufferPath: c.bufferPath, Err: err, LockErr: ierr}
}

// NewAPIClient returns a client for the agent listening on listen
// ("host:port" or "unix:/path").
func NewAPIClient(listen string) *APIClient {
	c := &APIClient{base: "http://" + listen, listen: listen, hc: &http.Client{Timeout: 10 * time.Second}}
	if p, ok := strings.CutPrefix(listen, "unix:"); ok {
		c.base = "http://plantedge"
		c.hc.Transport = &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", p)
		}}
	} else if host, port, err := net.SplitHostPort(listen); err == nil && (host == "" || host == "0.0.0.0" || host == "::") {
		c.base = "http://" + net.JoinHostPort("127.0.0.1", port)
	}
	return c
}

func (c *APIClient) do(ctx context.Context, method, path string, out any) error {
	return c.doNoted(ctx, method, path, out, nil)
}

// doNoted is do, and sets note, when not nil, to the agent's note on the
// answer (NoteHeader).
func (c *APIClient) doNoted(ctx context.Context, method, path string, out any, note *string) error {
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, nil)
	if err != nil {
		return err
	}
	if c.site != "" && c.dataDir != "" {
		req.Header.Set(siteHeader, c.site)
		req.Header.Set(dataDirHeader, c.dataDir)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		var ne net.Error
		var oe *net.OpError
		if errors.As(err, &ne) && ne.Timeout() {
			err := fmt.Errorf("%w on %s in time: running but hung or paused? (%v)", ErrNotAnswering, c.base, err)
			if ferr := c.notTheAgent(err); ferr != nil {
				return ferr // a program that takes the connection, with no agent holding the file
			}
			return err
		}
		if errors.Is(err, os.ErrPermission) {
			// The unix socket refuses this user: an agent runs there (its
			// socket file is there), and saying "not running, start it"
			// would be wrong (the technician probe: flush exited 2 and
			// status --json said agent_running false).
			return fmt.Errorf("%w: %s: permission denied; the socket lets in root and the plantedge group "+
				"(sudo plantedge ..., or sudo usermod -aG plantedge $USER and log in again)", ErrNoAccess, c.listen)
		}
		if errors.As(err, &oe) || errors.As(err, &ne) {
			return fmt.Errorf("%w (%v)", ErrNotRunning, err)
		}
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode == http.StatusConflict && resp.Header.Get(siteHeader) != "" {
		return fmt.Errorf("%w: %s", ErrOtherSite, strings.TrimSpace(string(body)))
	}
	answer := &AnswerError{Status: resp.Status, ContentType: resp.Header.Get("Content-Type"), Body: strings.TrimSpace(string(body)),
		Unmarked: resp.Header.Get(AgentHeader) == ""}
	if answer.Unmarked {
		// Not the agent's, whatever it answered (a 200 with JSON of its
		// own was read as "0 dead letters" and "rebooked 0 lines"), unless
		// an agent holds the buffer file: one of a version before the
		// header.
		if err := c.notTheAgent(answer); err != nil {
			return err
		}
	}
	if resp.StatusCode != http.StatusOK {
		// The agent's own words (a request it refuses, Odoo not reached):
		// not HTTP's ("502 Bad Gateway", the technician probe).
		return answer
	}
	if note != nil {
		*note = resp.Header.Get(NoteHeader)
	}
	if out != nil {
		return json.Unmarshal(body, out)
	}
	return nil
}

// AnswerError is an answer at the agent's address other than 200 OK: the
// agent's refusal in its own words, or another program's answer.
type AnswerError struct {
	Status      string // "404 Not Found"
	ContentType string
	Body        string // trimmed
	// Unmarked: without AgentHeader — another program's answer, or an
	// agent's of a version before the header.
	Unmarked bool
}

func (e *AnswerError) Error() string {
	if e.Body == "" {
		return "agent: " + e.Status
	}
	return "agent: " + e.Body
}

// Status fetches the agent's status.
func (c *APIClient) Status(ctx context.Context) (Status, error) {
	var st Status
	if err := c.do(ctx, http.MethodGet, "/api/v1/status", &st); err != nil {
		return st, err
	}
	if !st.AgentRunning {
		// The agent's status says it runs: a 200 with other JSON (taken
		// while a process holds the buffer file: see do) is another
		// program's (the cli probe: {"status":"ok"} read as nothing
		// pending, flush said "drained").
		return Status{}, notAnswered("the agent's status (agent_running)")
	}
	return st, nil
}

// notAnswered is the error for a 200 OK whose JSON is not what the agent
// answers: want names what it lacks.
func notAnswered(want string) error {
	return fmt.Errorf("agent: it answered 200 OK, but not with %s: another program at listen?", want)
}

// NamespacePins fetches the OPC UA namespace pins the agent keeps.
func (c *APIClient) NamespacePins(ctx context.Context) ([]NamespacePin, error) {
	var pins []NamespacePin
	err := c.do(ctx, http.MethodGet, "/api/v1/opcua/pins", &pins)
	return pins, err
}

// Flush asks the agent to forward now.
// FlushTicket says which status comes from a round that began after a
// flush request.
type FlushTicket struct {
	After   *uint64   `json:"after"`   // nil: an agent of a version that does not say
	Started time.Time `json:"started"` // the agent instance that answered
	// Seq is the buffer's last sequence number at the request (nil: an
	// older agent): what came later is not the flush's to wait for.
	Seq *uint64 `json:"seq"`
}

// Through reports whether every record the buffer held at the request that
// is not held has gone: the plant may have made more since.
func (t FlushTicket) Through(st Status) bool {
	if t.Seq == nil || !st.Started.Equal(t.Started) {
		return false // an older agent, or another instance: see Past
	}
	return st.Buffer.OldestForwardableSeq == 0 || st.Buffer.OldestForwardableSeq > *t.Seq
}

// Past reports whether st comes after a round that began after the
// request: true for an agent that does not say, and for another instance
// (restarted meanwhile: every round of it began after the request).
func (t FlushTicket) Past(st Status) bool {
	return t.After == nil || !st.Started.Equal(t.Started) || st.Odoo.RoundsDone > *t.After
}

// Flush asks the agent for a round now.
func (c *APIClient) Flush(ctx context.Context) (FlushTicket, error) {
	var out FlushTicket
	err := c.do(ctx, http.MethodPost, "/api/v1/flush", &out)
	return out, err
}

// rebookWait is how long the API waits for a rebook (its server's write
// timeout is a minute).
const rebookWait = 50 * time.Second

// Rebook asks the running agent to book again what Odoo confirmed since
// since and lacks now (dry: only count it); see RebookResult.
func (c *APIClient) Rebook(ctx context.Context, since time.Time, dry bool) (RebookResult, error) {
	q := url.Values{"since": {since.UTC().Format(time.RFC3339)}}
	if dry {
		q.Set("dry_run", "1")
	}
	var res RebookResult
	err := c.waiting(rebookWait+10*time.Second).do(ctx, http.MethodPost, "/api/v1/rebook?"+q.Encode(), &res)
	if err == nil && res.Since.Unix() != since.Unix() {
		// The agent's result names the time asked (to the second, as
		// sent): another program's JSON printed "rebooked 0 lines".
		return RebookResult{}, notAnswered("a rebook since the time asked")
	}
	return res, err
}

// waiting is c for a request the agent answers only after a forwarding
// round: its HTTP timeout is d.
func (c *APIClient) waiting(d time.Duration) *APIClient {
	long := *c
	hc := *c.hc
	hc.Timeout = d
	long.hc = &hc
	return &long
}

// acceptWait is how long the API waits for a round to accept a machine's
// quantity in Odoo (AcceptQty).
const acceptWait = 30 * time.Second

// AcceptQty asks the running agent to take the quantity Odoo shows on the
// machine's work order in progress as right: counting goes on from it.
func (c *APIClient) AcceptQty(ctx context.Context, machine string) (AcceptResult, error) {
	var res AcceptResult
	// within the server's write timeout, a minute
	err := c.waiting(acceptWait+acceptGrace+10*time.Second).do(ctx, http.MethodPost, "/api/v1/accept-qty?"+url.Values{"machine": {machine}}.Encode(), &res)
	if err == nil && res.Machine != machine {
		// The agent's result names the machine asked: another program's
		// JSON printed ": not changed: ".
		return AcceptResult{}, notAnswered("the machine asked")
	}
	return res, err
}

// DeadLetters lists the agent's dead letters, reading them a page at a time.
func (c *APIClient) DeadLetters(ctx context.Context) ([]DeadLetterView, error) {
	out, _, err := c.DeadLettersNoted(ctx)
	return out, err
}

// DeadLettersNoted is DeadLetters, with the agent's note on what the list
// does not show ("": none; see serveDeadLetters).
func (c *APIClient) DeadLettersNoted(ctx context.Context) (_ []DeadLetterView, note string, _ error) {
	var out []DeadLetterView
	for after := uint64(0); ; {
		var page []DeadLetterView
		var n string
		err := c.doNoted(ctx, http.MethodGet, fmt.Sprintf("/api/v1/deadletters?after=%d&limit=%d", after, deadLetterPage), &page, &n)
		if err != nil {
			return out, note, err
		}
		note = cmp.Or(n, note)
		out = append(out, page...)
		if len(page) < deadLetterPage {
			return out, note, nil
		}
		after = page[len(page)-1].ID
	}
}

// deadLetterActionWait is how long the CLI waits for a retry or drop: the
// agent answers when it is done, or once a buffer write it waits behind
// has stalled (WriteStallAfter, 30 s), saying so.
const deadLetterActionWait = 50 * time.Second

// DeadLetterAction retries or drops dead letters in the running agent;
// here retries also those another Odoo refused (see DeadLetterAction).
func (c *APIClient) DeadLetterAction(ctx context.Context, action, id string, here bool) (res DeadLetterResult, err error) {
	q := url.Values{"id": {id}}
	if here {
		q.Set("here", "1")
	}
	err = c.waiting(deadLetterActionWait).do(ctx, http.MethodPost, "/api/v1/deadletters/"+action+"?"+q.Encode(), &res)
	if fe := (*ForeignError)(nil); errors.Is(err, ErrNotAnswering) && !errors.As(err, &fe) {
		// Asked, and not answered: the agent goes on with it.
		return res, fmt.Errorf("%w; the %s was asked and may still take effect (plantedge deadletter list shows whether it has)", err, action)
	}
	return res, err
}
