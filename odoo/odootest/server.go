// Package odootest is an in-memory Odoo 17/18/19 emulator for plantedge's
// tests and `plantedge demo`: the JSON-RPC and JSON-2 transports, the mrp
// models the agent touches with their real side effects, companies (a
// record created with none takes the caller's main company, and
// _check_company refuses another company's work center: company.go), API
// keys and the login cooldown, and fault injection (latency, a load's time per row, refused connections, 502/503,
// serialization and lock failures, commit-then-drop).
package odootest

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	stdlog "log"
	"log/slog"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	_ "time/tzdata" // load reads date-times in the user's time zone; the demo binary runs anywhere

	"github.com/plantedge/plantedge/odoo"
)

// Options configures a Server.
type Options struct {
	Version  int    // 17, 18 or 19 (default 17)
	Database string // default "odoo"
	Logger   *slog.Logger
	// Enterprise makes the version string end in "+e".
	Enterprise bool
	// Saas makes the server a saas~<Version>.<Saas> build (Odoo Online's
	// versions between the majors) as Odoo's master branch has it after
	// 19.0: the work order's unit is uom_id, product_uom_id is gone (read
	// in Odoo's own mrp_workorder.py). Everything else is Version's.
	Saas int
	// StringErrors makes JSON-2 error bodies a bare JSON string, as early 19 builds sent.
	StringErrors bool
	// ManyDatabases is a server with several databases and no dbfilter
	// picking one: Odoo serves a JSON-RPC request with no database, so with
	// no request environment, and 18/19 render its messages in the user's
	// language (lang.go); a JSON-2 request without X-Odoo-Database is
	// answered 404 with Odoo's "No database is selected" page
	// (databases.go).
	ManyDatabases bool
	// DBFilter is the server's dbfilter (odoo.conf dbfilter, a Python
	// regular expression matched at the start of a database name; %h and
	// %d are not expanded): a database it does not match is not served,
	// and of several databases the only one it matches is served without
	// X-Odoo-Database (databases.go).
	DBFilter string
	// NoNotFoundNoDB is a 19-series build whose http.py has no
	// NOT_FOUND_NODB page: a JSON-2 request without a usable database is
	// answered werkzeug's own 404 page (databases.go).
	NoNotFoundNoDB bool
	// NoListDB is a server with list_db off (odoo.conf), as hosted Odoo
	// has it: /web/database/list refuses with AccessDenied (databases.go).
	NoListDB bool
}

// Fault is an injected failure of one object/JSON-2 call.
type Fault int

// Faults.
const (
	FaultNone Fault = iota
	// FaultHTTP502 answers 502 Bad Gateway (a proxy whose worker died); nothing runs.
	FaultHTTP502
	// FaultHTTP503 answers 503 with Retry-After; nothing runs.
	FaultHTTP503
	// FaultSerialization fails with a serialization failure after Odoo's own retries; nothing is committed.
	// A load answers it as real Odoo's load does: ids false and the error as a row message (HTTP 200).
	FaultSerialization
	// FaultLockConflict fails with a lock conflict (JSON-2 409 odoo.exceptions.LockError, JSON-RPC
	// psycopg2 LockNotAvailable); nothing is committed. A load answers it as a row message, as
	// FaultSerialization.
	FaultLockConflict
	// FaultCommitThenDrop runs and commits the call, then drops the connection unanswered.
	FaultCommitThenDrop
	// FaultDatabaseDown fails as Odoo does when its PostgreSQL is away (restarting, failing
	// over, out of connections) for this call: over JSON-RPC psycopg2.OperationalError with
	// HTTP 200; over JSON-2 (19) the 404 page NOT_FOUND_NODB, as the request could not open its
	// database (databases.go); nothing runs. SetPostgresDown keeps PostgreSQL away for a while.
	FaultDatabaseDown
)

// String names the fault.
func (f Fault) String() string {
	return [...]string{"none", "http502", "http503", "serialization", "lock-conflict", "commit-then-drop", "database-down"}[f]
}

// Call is one logged request.
type Call struct {
	Time     time.Time
	Protocol string // "jsonrpc" | "json2"
	Model    string // model, or "common" for the JSON-RPC common service
	Method   string
	UID      int64
	Status   int    // HTTP status sent (0 when the connection was dropped)
	Outcome  string // "ok", an exception name, or "fault:<fault>"
}

// ProductivityLine is a copy of an mrp.workcenter.productivity record.
type ProductivityLine struct {
	ID, WorkcenterID, WorkorderID, LossID, UserID int64
	CompanyID                                     int64
	LossName, LossType                            string
	Start, End                                    time.Time // End zero: open line
	Description, XMLID                            string
}

// ScrapRecord is a copy of a stock.scrap record.
type ScrapRecord struct {
	ID, ProductID, UomID, ProductionID, WorkorderID int64
	CompanyID                                       int64
	Qty                                             float64
	State, Name, XMLID                              string
	Moves                                           int // stock moves booked by validation (2+ = double booking)
}

type apiKey struct {
	uid int64
	rec int64 // its res.users.apikeys record
	// expires is its expiration_date (zero: none): Odoo refuses it once
	// its clock is past (APIKeys._check_credentials: expiration_date >= now).
	expires time.Time
}

type loginFailure struct {
	count int
	last  time.Time
}

// none is Python's None as a method result.
type none struct{}

// Server is the emulator. All methods are safe for concurrent use.
type Server struct {
	opts Options
	log  *slog.Logger

	mu           sync.Mutex
	models       map[string]*model
	curUID       int64          // uid of the call being executed (under mu)
	curCtx       map[string]any // its context (under mu)
	curProto     string         // its protocol, "jsonrpc" or "json2" (under mu)
	langs        []string       // active languages (lang.go), nil for en_US alone
	keys         map[string]*apiKey
	adminKey     string
	admins       map[int64]bool               // users given the Settings group (MakeAdmin), besides uid 1 and 2
	rightsAdmins map[int64]bool               // users given Administration / Access Rights (GiveAccessRights)
	onlyRights   map[string]map[string]string // logins holding only a group's rights (GiveOnlyManufacturingUser, …)
	failures     map[string]*loginFailure
	maxFails     int
	cooldown     time.Duration
	calls        []Call
	latency      time.Duration
	rowLatency   time.Duration // SetLoadRowLatency
	wallLimit    time.Duration
	failN        int
	failF        Fault
	rateF        Fault
	rateP        float64
	rng          *mrand.Rand
	retryAfter   time.Duration
	refusals     []refusal
	mfaults      []methodFault
	onDrop       func(model, method string)
	beforeCall   atomic.Pointer[func(model, method string)]
	denied       map[aclKey]bool // DenyAccess
	shortStock   map[int64]bool
	scrapMoves   map[int64]int
	qtyDigits    int // SetQtyDigits
	now          func() time.Time

	version  atomic.Int64 // major version: Options.Version, then Upgrade's
	inFlight atomic.Int64 // requests whose handler has not returned (InFlight)
	down     atomic.Bool
	pgDown   atomic.Bool // SetPostgresDown
	ts       *httptest.Server
	url      string
	closing  chan struct{}
	closeMu  sync.Once
}

// New builds an emulator with the base data (company, admin user with an
// API key, unit of measure, default loss reasons). It does not listen yet.
func New(opts Options) *Server {
	if opts.Version == 0 {
		opts.Version = 17
	}
	if opts.Database == "" {
		opts.Database = "odoo"
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{opts: opts, log: log.With("component", "odootest"),
		keys: map[string]*apiKey{}, failures: map[string]*loginFailure{}, maxFails: 10, cooldown: 60 * time.Second,
		retryAfter: time.Second, shortStock: map[int64]bool{}, scrapMoves: map[int64]int{}, qtyDigits: 2,
		now: func() time.Time { return time.Now().UTC().Truncate(time.Second) }, closing: make(chan struct{})}
	s.version.Store(int64(opts.Version))
	s.buildModels()
	s.adminKey = s.newUserKey(2)
	return s
}

// newUserKey makes user uid a key without expiry, and its
// res.users.apikeys record (under mu).
func (s *Server) newUserKey(uid int64) string {
	key := newKey()
	id := s.insert("res.users.apikeys", rec{"name": "plantedge", "user_id": uid, "scope": "rpc", "create_date": s.nowStr()}, "")
	s.keys[key] = &apiKey{uid: uid, rec: id}
	return key
}

// keyValid reports whether Odoo takes key k now: not past its expiration
// date (under mu).
func (s *Server) keyValid(k *apiKey) bool {
	return k.expires.IsZero() || !s.now().After(k.expires)
}

func newKey() string {
	b := make([]byte, 20)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// Version returns the emulated major version.
func (s *Server) Version() int { return s.v() }

func (s *Server) v() int { return int(s.version.Load()) }

// Database returns the database name.
func (s *Server) Database() string { return s.opts.Database }

// ServerVersion returns the version string, e.g. "17.0" or "19.0+e".
func (s *Server) ServerVersion() string {
	v := fmt.Sprintf("%d.0", s.v())
	if s.opts.Saas > 0 {
		v = fmt.Sprintf("saas~%d.%d", s.v(), s.opts.Saas)
	}
	if s.opts.Enterprise {
		v += "+e"
	}
	return v
}

// AdminKey returns the API key of the admin user (login "admin", uid 2).
func (s *Server) AdminKey() string { return s.adminKey }

// AddUser creates a user and returns its uid and a fresh 40-hex API key.
func (s *Server) AddUser(login string) (uid int64, key string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	uid = s.insert("res.users", rec{"name": login, "login": login, "company_id": int64(1)}, "")
	return uid, s.newUserKey(uid)
}

// SetUserTZ sets a user's time zone preference (res.users.tz, an IANA name
// such as "Europe/Berlin"; "" for none). Model.load reads date-times in it.
func (s *Server) SetUserTZ(uid int64, tz string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if r, ok := s.models["res.users"].recs[uid]; ok {
		r["tz"] = tz
	}
}

// userTZ is the current user's tz preference (false when unset, as Odoo reads it).
func (s *Server) userTZ() any {
	if tz, _ := s.models["res.users"].recs[s.curUID]["tz"].(string); tz != "" {
		return tz
	}
	return false
}

// inputTZ is the time zone Model.load reads date-times in
// (base/models/ir_fields.py _input_tz): the context's tz, else the user's,
// else UTC. create and write take UTC.
func (s *Server) inputTZ() *time.Location {
	for _, name := range []any{s.curCtx["tz"], s.userTZ()} {
		if n, ok := name.(string); ok && n != "" {
			if loc, err := time.LoadLocation(n); err == nil {
				return loc
			}
		}
	}
	return time.UTC
}

// AddKey gives an existing user another API key (Odoo users may hold
// several), as an admin rotating the bot's key does; "" if no such login.
func (s *Server) AddKey(login string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	for id, r := range s.models["res.users"].recs {
		if r["login"] == login {
			return s.newUserKey(id)
		}
	}
	return ""
}

// ExpireKey makes the key fail like any invalid key (Odoo does not say
// why): its expiration date is set to a second ago, as if that time had
// come — on Odoo 17, whose keys have none, an emulator's shortcut. A
// client that read the key's date before (SetKeyExpiry) saw another one.
func (s *Server) ExpireKey(apiKey string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if k, ok := s.keys[apiKey]; ok {
		s.setKeyExpiry(k, s.now().Add(-time.Second))
	}
}

// SetKeyExpiry gives the key the expiration date at (zero: none), as the
// user who made it chose it (Odoo 18+: 1 day to 3 months for a non-admin
// user); Odoo refuses the key once its clock is past it. The user reads it
// on its res.users.apikeys record (expiration_date, 18+).
func (s *Server) SetKeyExpiry(apiKey string, at time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if k, ok := s.keys[apiKey]; ok {
		s.setKeyExpiry(k, at)
	}
}

func (s *Server) setKeyExpiry(k *apiKey, at time.Time) {
	k.expires = at
	if r, ok := s.models["res.users.apikeys"].recs[k.rec]; ok && s.v() >= 18 {
		if at.IsZero() {
			delete(r, "expiration_date")
		} else {
			r["expiration_date"] = at.UTC().Format(timeLayout)
		}
	}
}

// SetUserActive archives (false) or unarchives (true) the user with this
// uid, as Settings → Users → Archive does. Odoo refuses an archived user
// everything, whatever key it sends: its API keys match only active users
// (res_users.py APIKeys._check_credentials: INNER JOIN res_users u ...
// WHERE u.active), authenticate finds no active user of that login
// (_login searches active users only: false), and every JSON-RPC object
// call is refused (res_users.check: AccessDenied when the user is not
// active); JSON-2 answers 401. Its keys stay: unarchived, they work again.
func (s *Server) SetUserActive(uid int64, active bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if r, ok := s.models["res.users"].recs[uid]; ok {
		r["active"] = active
	}
}

// userActive tells whether the user with this uid exists and is not archived (under mu).
func (s *Server) userActive(uid int64) bool {
	r, ok := s.models["res.users"].recs[uid]
	if !ok {
		return false
	}
	a, set := r["active"].(bool)
	return !set || a
}

// SetLoginCooldown sets how many failed logins from one address trigger
// the cooldown and how long it lasts (the system parameters
// base.login_cooldown_after and base.login_cooldown_duration, which a new
// database sets to 10 and 60 s: ir_config_parameter.py
// _default_parameters; res.users falls back to 5 only where the parameter
// was deleted).
func (s *Server) SetLoginCooldown(failures int, cooldown time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.maxFails, s.cooldown = failures, cooldown
}

// AddWorkcenter creates an mrp.workcenter (codes need not be unique).
func (s *Server) AddWorkcenter(code, name string) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.insert("mrp.workcenter", rec{"name": name, "code": code, "company_id": int64(1), "sequence": int64(1)}, "")
}

// AddProduct creates a product.product in Units.
func (s *Server) AddProduct(name string) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.insert("product.product", rec{"name": name, "uom_id": int64(1), "tracking": "none"}, "")
}

// SetProductTracking sets how a product is tracked: "none", "lot" or
// "serial". A manufacturing order of a serial-tracked product keeps 1 as its
// producing quantity, whatever is written (serialProducing).
func (s *Server) SetProductTracking(productID int64, tracking string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if r, ok := s.models["product.product"].recs[productID]; ok {
		r["tracking"] = tracking
	}
}

// AddProduction creates a confirmed mrp.production for qty units of the product.
func (s *Server) AddProduction(name string, productID int64, qty float64) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.insert("mrp.production", rec{"name": name, "product_id": productID, "product_qty": s.roundQty(qty),
		"product_uom_id": int64(1), "qty_producing": 0.0, "state": "confirmed", "priority": "0", "company_id": int64(1)}, "")
}

// AddWorkorder creates an mrp.workorder. state must belong to the version's
// selection; it panics otherwise (a broken test fixture, not an I/O failure).
func (s *Server) AddWorkorder(productionID, workcenterID int64, name, state string) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mustState(state)
	r := rec{"name": name, "state": state, "production_id": productionID, "workcenter_id": workcenterID,
		"qty_produced": 0.0, "sequence": int64(100), "duration_expected": 60.0}
	if s.v() < 19 {
		r["product_uom_id"] = int64(1)
	}
	if state == "progress" || state == "done" {
		r["date_start"] = s.nowStr()
	}
	id := s.insert("mrp.workorder", r, "")
	// A work order's company is its manufacturing order's (related), which
	// is the work center's (check_company).
	if mo, ok := s.models["mrp.production"].recs[productionID]; ok {
		if wc, ok := s.models["mrp.workcenter"].recs[workcenterID]; ok && asInt(wc["company_id"]) != 0 {
			mo["company_id"] = wc["company_id"]
		}
	}
	if state == "progress" {
		s.startQty(r)
	}
	return id
}

// SetNow sets the clock the server stamps its dates with (to the second,
// UTC); nil gives back the real one.
func (s *Server) SetNow(now func() time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if now == nil {
		now = time.Now
	}
	s.now = func() time.Time { return now().UTC().Truncate(time.Second) }
}

// Press presses a work order's button — button_start, button_pending or
// button_finish — as user uid (2: the administrator) on the shop floor's
// tablet, which reaches Odoo when plantedge does not (SetDown: a WAN
// outage between the plant's agent and Odoo). It returns Odoo's refusal.
func (s *Server) Press(uid int64, method string, id int64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	was := s.curUID
	s.curUID = uid
	defer func() { s.curUID = was }()
	button, ok := buttons[method]
	if !ok {
		return fmt.Errorf("odootest: no button %q", method)
	}
	if _, err := button(s, []int64{id}); err != nil {
		return fmt.Errorf("%s: %w", method, err)
	}
	return nil
}

// buttons are a work order's buttons, by method name (dispatch, Press).
var buttons = map[string]func(*Server, []int64) (any, *odooError){
	"button_start":   (*Server).buttonStart,
	"button_pending": (*Server).buttonPending,
	"button_finish":  (*Server).buttonFinish,
	"action_cancel":  (*Server).actionCancel,
}

// SetWorkorderDurationExpected sets how long a work order is expected to
// take, in minutes (60 for those AddWorkorder makes): a timer closed after
// the order has run longer is cut where the overrun began (closeLines).
func (s *Server) SetWorkorderDurationExpected(id int64, minutes float64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.models["mrp.workorder"].recs[id]["duration_expected"] = minutes
}

func (s *Server) mustState(state string) {
	for _, st := range workorderStates(s.v()) {
		if st == state {
			return
		}
	}
	panic(fmt.Sprintf("odootest: work order state %q does not exist in Odoo %d (%v)", state, s.v(), workorderStates(s.v())))
}

// SetWorkorderState sets a work order's state directly (and its start date
// when it enters progress, its end when it is done).
func (s *Server) SetWorkorderState(id int64, state string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mustState(state)
	if r, ok := s.models["mrp.workorder"].recs[id]; ok {
		if state == "progress" && r["state"] != "progress" {
			s.startQty(r)
		}
		if state == "done" && r["state"] != "done" {
			r["date_finished"] = s.nowStr() // as button_finish sets it
		}
		r["state"] = state
		if state == "progress" && isEmpty(r["date_start"]) {
			r["date_start"] = s.nowStr()
		}
	}
}

// SetQtyDigits sets the decimals the database keeps of quantities (its
// decimal.precision record "Product Unit of Measure", "Product Unit" in
// 19: Settings → Technical → Decimal Accuracy; 2 as installed, 0 to 10
// here). Quantities written from then on are rounded to it, and fields_get
// describes the quantity fields with it; those stored are left as they
// are (Odoo does not round them anew either).
func (s *Server) SetQtyDigits(n int) {
	if n < 0 || n > 10 {
		panic(fmt.Sprintf("odootest: SetQtyDigits(%d): want 0 to 10", n))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.qtyDigits = n
}

// SetWorkorderQty writes a work order's produced quantity as someone else
// (an operator, or a write of the agent's whose commit came late) would,
// with the write's rules: Odoo 19 qty_produced, 17/18 qty_producing.
func (s *Server) SetWorkorderQty(id int64, qty float64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.models["mrp.workorder"]
	if _, ok := m.recs[id]; !ok {
		return
	}
	field := "qty_producing"
	if s.v() >= 19 {
		field = "qty_produced"
	}
	was := s.curUID
	// The superuser: neither a user with fewer rights (the bot's) nor the
	// administrator, whom a multi-company rule refuses an order of a
	// company it is not in, as it refuses no operator with access there.
	s.curUID = 1
	defer func() { s.curUID = was }()
	if err := s.writeHook(m, id, map[string]any{field: qty}); err != nil {
		panic(fmt.Sprintf("odootest: SetWorkorderQty: %s", err.msg))
	}
}

// SetWorkorderDateStart sets a work order's start date (to order fixtures).
func (s *Server) SetWorkorderDateStart(id int64, t time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if r, ok := s.models["mrp.workorder"].recs[id]; ok {
		r["date_start"] = t.UTC().Format(timeLayout)
	}
}

// SetShortStock makes action_validate of scraps of the product return the
// insufficient-quantity wizard instead of scrapping.
func (s *Server) SetShortStock(productID int64, short bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.shortStock[productID] = short
}

// Workorder returns a copy of a work order (zero when it does not exist).
func (s *Server) Workorder(id int64) odoo.Workorder {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.models["mrp.workorder"]
	r, ok := m.recs[id]
	if !ok {
		return odoo.Workorder{}
	}
	unit := "product_uom_id"
	if _, ok := m.fields[unit]; !ok {
		unit = "uom_id" // Options.Saas
	}
	wo := odoo.Workorder{ID: id, Name: r["name"].(string), State: r["state"].(string),
		WorkcenterID: asInt(r["workcenter_id"]), ProductionID: asInt(r["production_id"]),
		ProductID: s.compute(m, r, "product_id").(int64), UomID: s.value(m, r, unit).(int64),
		ProductionName: s.displayName("mrp.production", asInt(r["production_id"])),
		QtyProduction:  s.compute(m, r, "qty_production").(float64), QtyProducing: s.compute(m, r, "qty_producing").(float64),
		QtyProduced: s.value(m, r, "qty_produced").(float64), QtyRemaining: s.compute(m, r, "qty_remaining").(float64)}
	if d, _ := r["date_start"].(string); d != "" {
		wo.DateStart, _ = time.Parse(timeLayout, d)
	}
	return wo
}

// ProductionQtyProducing returns an MO's qty_producing.
func (s *Server) ProductionQtyProducing(id int64) float64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	if r, ok := s.models["mrp.production"].recs[id]; ok {
		return r["qty_producing"].(float64)
	}
	return 0
}

// WorkingState returns a work center's computed working_state.
func (s *Server) WorkingState(workcenterID int64) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.models["mrp.workcenter"]
	if r, ok := m.recs[workcenterID]; ok {
		return s.compute(m, r, "working_state").(string)
	}
	return ""
}

// Productivity returns copies of all productivity lines, by id.
func (s *Server) Productivity() []ProductivityLine {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.models["mrp.workcenter.productivity"]
	xmlids := s.xmlidsOf(m.name)
	var out []ProductivityLine
	for _, id := range m.ids() {
		r := m.recs[id]
		l := ProductivityLine{ID: id, WorkcenterID: asInt(r["workcenter_id"]), WorkorderID: asInt(r["workorder_id"]),
			LossID: asInt(r["loss_id"]), UserID: asInt(r["user_id"]), CompanyID: asInt(r["company_id"]),
			LossName: s.displayName("mrp.workcenter.productivity.loss", asInt(r["loss_id"])),
			LossType: s.lossType(asInt(r["loss_id"])), XMLID: xmlids[id]}
		l.Description, _ = r["description"].(string)
		if d, _ := r["date_start"].(string); d != "" {
			l.Start, _ = time.Parse(timeLayout, d)
		}
		if d, _ := r["date_end"].(string); d != "" {
			l.End, _ = time.Parse(timeLayout, d)
		}
		out = append(out, l)
	}
	return out
}

// Scraps returns copies of all stock.scrap records, by id.
func (s *Server) Scraps() []ScrapRecord {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.models["stock.scrap"]
	xmlids := s.xmlidsOf(m.name)
	var out []ScrapRecord
	for _, id := range m.ids() {
		r := m.recs[id]
		out = append(out, ScrapRecord{ID: id, ProductID: asInt(r["product_id"]), UomID: asInt(r["product_uom_id"]),
			ProductionID: asInt(r["production_id"]), WorkorderID: asInt(r["workorder_id"]), CompanyID: asInt(r["company_id"]), Qty: s.value(m, r, "scrap_qty").(float64),
			State: s.value(m, r, "state").(string), Name: s.value(m, r, "name").(string), XMLID: xmlids[id], Moves: s.scrapMoves[id]})
	}
	return out
}

// Calls returns a copy of the call log.
func (s *Server) Calls() []Call {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Call(nil), s.calls...)
}

// CallCount counts logged calls of model.method (any outcome).
func (s *Server) CallCount(model, method string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, c := range s.calls {
		if c.Model == model && c.Method == method {
			n++
		}
	}
	return n
}

// SetLatency delays every request by d. A request whose client gives up
// meanwhile still runs after d (unless the request limit kills it first),
// as in Odoo: a timeout does not mean nothing happened.
func (s *Server) SetLatency(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.latency = d
}

// SetLoadRowLatency makes every load call (any model) take d more per row
// it carries, after SetLatency's delay: Odoo's load runs each row through
// the ORM (conversion, create or write, recomputes), so a call of 200 rows
// takes about 200 times one row's time (seconds on a small VM). As with
// SetLatency, a client that gives up meanwhile does not stop it: the load
// runs to its end and commits, answering no one; one whose total delay
// exceeds the request limit (SetRequestLimit) is killed at the limit and
// commits nothing. 0 turns it off.
func (s *Server) SetLoadRowLatency(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rowLatency = d
}

// loadRows is how many rows a load call carries: its data argument, by
// position (JSON-RPC's args: fields, data) or by name (JSON-2, or kwargs).
func loadRows(pos []any, kw map[string]any) int {
	if d, ok := kw["data"].([]any); ok {
		return len(d)
	}
	if len(pos) > 1 {
		if d, ok := pos[1].([]any); ok {
			return len(d)
		}
	}
	return 0
}

// SetRequestLimit emulates Odoo's per-request wall-time limit (120 s by
// default in Odoo; 0 here = off): a request whose latency exceeds it has its
// worker killed, so the connection drops after d and nothing is committed.
func (s *Server) SetRequestLimit(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.wallLimit = d
}

// SetRetryAfter sets the Retry-After of FaultHTTP503 (default 1 s).
func (s *Server) SetRetryAfter(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.retryAfter = d
}

// SetDown makes the server drop every connection at once (Odoo down) while
// the listener stays open, or serve again.
func (s *Server) SetDown(down bool) { s.down.Store(down) }

// SetPostgresDown makes Odoo's PostgreSQL unreachable (down, restarting,
// out of connections) until called with false; Odoo itself answers. 19's
// JSON-2 answers every call with the 404 page NOT_FOUND_NODB, before the
// key is looked at (databases.go); JSON-RPC's common.authenticate and
// object calls fail with psycopg2.OperationalError (HTTP 200);
// /web/version and common.version, which need no database, are served.
func (s *Server) SetPostgresDown(down bool) { s.pgDown.Store(down) }

// Upgrade migrates the database to Odoo major version v, higher than the
// current one, as Odoo's upgrade does: records, external ids, users and API
// keys stay; the models take v's fields, order and behaviour (from 19: the
// JSON-2 transport, /web/version, qty_produced's rules). Work orders waiting
// for another operation or for components (17/18 pending, waiting) become
// 19's blocked (an assumption: Odoo 19 merged those states into blocked).
// Odoo is down while it upgrades: call SetDown(true) first and
// SetDown(false) after, or clients see the switch mid-conversation.
func (s *Server) Upgrade(v int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	from := s.v()
	if v <= from || v > 19 {
		panic(fmt.Sprintf("odootest: cannot upgrade Odoo %d to %d", from, v))
	}
	defs := modelDefs(v, s.opts.Saas)
	for name, m := range defs {
		if old, ok := s.models[name]; ok {
			m.recs, m.next = old.recs, old.next
		}
	}
	if from < 19 && v >= 19 {
		for _, r := range defs["mrp.workorder"].recs {
			if st := r["state"]; st == "pending" || st == "waiting" {
				r["state"] = "blocked"
			}
		}
	}
	s.models = defs
	s.version.Store(int64(v))
	s.log.Info("odoo emulator upgraded", "from", from, "to", v)
}

// FailNext makes the next n object/JSON-2 calls fail with f.
func (s *Server) FailNext(n int, f Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failN, s.failF = n, f
}

// SetFaultRate makes each object/JSON-2 call fail with f with probability p,
// drawn from a generator seeded with seed (p = 0 turns it off).
func (s *Server) SetFaultRate(f Fault, p float64, seed int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rateF, s.rateP = f, p
	s.rng = mrand.New(mrand.NewPCG(uint64(seed), uint64(seed)^0x9e3779b97f4a7c15))
}

// nextFault decides the fault of one call (under mu).
func (s *Server) nextFault(model, method string) Fault {
	if f, ok := s.takeMethodFault(model, method); ok {
		return f
	}
	if s.failN > 0 {
		s.failN--
		return s.failF
	}
	if s.rateP > 0 && s.rng != nil && s.rng.Float64() < s.rateP {
		return s.rateF
	}
	return FaultNone
}

// ---- listeners ----

// downListener drops new connections while the server is down.
type downListener struct {
	net.Listener
	s *Server
}

func (l downListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if !l.s.down.Load() {
			return c, nil
		}
		resetClose(c)
	}
}

// resetClose closes with RST so the peer sees a refused/reset connection.
func resetClose(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = c.Close()
}

// Start serves on an httptest listener on 127.0.0.1 and returns the base URL.
func (s *Server) Start() string { return s.serve(nil) }

// StartOn is Start on the given address (host:port) instead of a free
// port, for a harness that must keep to ports it was given.
func (s *Server) StartOn(addr string) (string, error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return "", err
	}
	return s.serve(l), nil
}

// serve serves on l (nil: httptest's listener on a free port of
// 127.0.0.1) and returns the base URL.
func (s *Server) serve(l net.Listener) string {
	ts := httptest.NewUnstartedServer(s.Handler())
	if l != nil {
		_ = ts.Listener.Close()
	} else {
		l = ts.Listener
	}
	ts.Listener = downListener{l, s}
	ts.Start()
	s.mu.Lock()
	s.ts, s.url = ts, ts.URL
	s.mu.Unlock()
	return ts.URL
}

// StartTLS is Start with TLS; the certificate is ts.Certificate() of the
// returned server, or certs when given (the chain it presents).
func (s *Server) StartTLS(certs ...tls.Certificate) *httptest.Server {
	ts := httptest.NewUnstartedServer(s.Handler())
	if len(certs) > 0 {
		ts.TLS = &tls.Config{Certificates: certs}
	}
	ts.Listener = downListener{ts.Listener, s}
	ts.Config.ErrorLog = stdlog.New(io.Discard, "", 0) // refused handshakes are expected in tests
	ts.StartTLS()
	s.mu.Lock()
	s.ts, s.url = ts, ts.URL
	s.mu.Unlock()
	return ts
}

// Close stops a server started with Start; safe to call twice.
func (s *Server) Close() {
	s.closeMu.Do(func() { close(s.closing) })
	s.mu.Lock()
	ts := s.ts
	s.mu.Unlock()
	if ts != nil {
		ts.CloseClientConnections()
		ts.Close()
	}
}

// ListenAndServe serves on addr until ctx is done (standalone/demo use).
func (s *Server) ListenAndServe(ctx context.Context, addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("odootest listen %s: %w", addr, err)
	}
	s.mu.Lock()
	s.url = "http://" + ln.Addr().String()
	s.mu.Unlock()
	srv := &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(downListener{ln, s}) }()
	s.log.Info("odoo emulator listening", "url", s.URL(), "database", s.opts.Database, "version", s.v())
	select {
	case err := <-errc:
		return fmt.Errorf("odootest serve: %w", err)
	case <-ctx.Done():
	}
	s.closeMu.Do(func() { close(s.closing) })
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		_ = srv.Close()
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("odootest serve: %w", err)
	}
	return nil
}

// URL returns the base URL once listening.
func (s *Server) URL() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.url
}

// Handler returns the HTTP handler (JSON-RPC, /web/health, /web/database/list,
// and /web/version and JSON-2 in 19).
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /jsonrpc", s.serveJSONRPC)
	mux.HandleFunc("GET /web/version", s.serveWebVersion)
	mux.HandleFunc("POST /json/2/{model}/{method}", s.serveJSON2)
	mux.HandleFunc("GET /web/health", s.serveHealth)
	mux.HandleFunc("POST /web/database/list", s.serveDatabaseList)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.inFlight.Add(1)
		defer s.inFlight.Add(-1)
		if s.down.Load() {
			drop(w)
			return
		}
		s.mu.Lock()
		d, limit := s.latency, s.wallLimit
		s.mu.Unlock()
		killed := limit > 0 && d > limit
		if killed {
			d = limit
		}
		gone := false // the client gave up waiting
		if d > 0 {
			t := time.NewTimer(d)
			select {
			case <-t.C:
			case <-r.Context().Done():
				// Odoo does not notice a client that gave up: its worker
				// runs the request to its end (or to the wall limit) and
				// commits, answering no one.
				gone = true
				select {
				case <-t.C:
				case <-s.closing:
					t.Stop()
					return
				}
			case <-s.closing:
				t.Stop()
				return
			}
		}
		switch {
		case gone && (killed || s.down.Load()):
		case killed || s.down.Load():
			drop(w)
		case gone:
			mux.ServeHTTP(httptest.NewRecorder(), r.WithContext(context.WithoutCancel(r.Context())))
		default:
			mux.ServeHTTP(w, r)
		}
	})
}

// InFlight is how many requests the emulator is still working on: taken in
// and not yet done with, answered or not (a request whose client gave up
// runs on, as in Odoo; a killed one ends at the request limit). A test
// that asserts something did not commit waits for 0 first: every request
// that could have committed it has then ended, however loaded the machine.
func (s *Server) InFlight() int {
	return int(s.inFlight.Load())
}

// drop closes the connection without an answer.
func drop(w http.ResponseWriter) {
	hj, ok := w.(http.Hijacker)
	if !ok {
		panic(http.ErrAbortHandler) // net/http closes the connection silently
	}
	c, _, err := hj.Hijack()
	if err != nil {
		panic(http.ErrAbortHandler)
	}
	resetClose(c)
}

func (s *Server) logCall(proto, model, method string, uid int64, status int, outcome string) {
	s.calls = append(s.calls, Call{Time: time.Now(), Protocol: proto, Model: model, Method: method, UID: uid, Status: status, Outcome: outcome})
	s.log.Debug("call", "version", s.v(), "protocol", proto, "model", model, "method", method, "uid", uid, "status", status, "outcome", outcome)
}

func remoteHost(r *http.Request) string {
	h, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return h
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, "encode: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

func (s *Server) serveWebVersion(w http.ResponseWriter, r *http.Request) {
	if s.v() < 19 {
		http.NotFound(w, r)
		return
	}
	info := []any{s.v(), 0, 0, "final", 0, ""}
	if s.opts.Enterprise {
		info[5] = "e"
	}
	writeJSON(w, http.StatusOK, map[string]any{"version_info": info, "version": s.ServerVersion()})
}

// ---- JSON-RPC ----

type rpcRequest struct {
	JSONRPC string `json:"jsonrpc"`
	Method  string `json:"method"`
	ID      any    `json:"id"`
	Params  struct {
		Service string `json:"service"`
		Method  string `json:"method"`
		Args    []any  `json:"args"`
	} `json:"params"`
}

func (s *Server) serveJSONRPC(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 32<<20))
	var req rpcRequest
	if err == nil {
		err = json.Unmarshal(body, &req)
	}
	if err != nil {
		http.Error(w, "Invalid JSON data", http.StatusBadRequest)
		return
	}
	reply := func(result any) {
		env := map[string]any{"jsonrpc": "2.0", "id": req.ID}
		if _, isNone := result.(none); !isNone || s.v() >= 18 {
			if _, isNone := result.(none); isNone {
				result = nil
			}
			env["result"] = result
		}
		writeJSON(w, http.StatusOK, env)
	}
	fail := func(e *odooError) {
		writeJSON(w, http.StatusOK, map[string]any{"jsonrpc": "2.0", "id": req.ID, "error": s.rpcError(e)})
	}
	args := req.Params.Args
	switch req.Params.Service {
	case "common":
		s.mu.Lock()
		res, oerr := s.common(remoteHost(r), req.Params.Method, args)
		outcome := "ok"
		if oerr != nil {
			outcome = oerr.name
		}
		s.logCall("jsonrpc", "common", req.Params.Method, 0, http.StatusOK, outcome)
		s.mu.Unlock()
		if oerr != nil {
			fail(oerr)
			return
		}
		reply(res)
	case "object":
		if req.Params.Method != "execute_kw" && req.Params.Method != "execute" {
			fail(&odooError{excAttr, fmt.Sprintf("'object' service has no method %q", req.Params.Method)})
			return
		}
		if len(args) < 5 {
			fail(&odooError{excType, "execute_kw() missing required positional arguments"})
			return
		}
		db, _ := args[0].(string)
		uid, _ := toInt(args[1])
		key, _ := args[2].(string)
		modelName, _ := args[3].(string)
		method, _ := args[4].(string)
		var pos []any
		kw := map[string]any{}
		if req.Params.Method == "execute_kw" {
			if len(args) > 5 {
				pos, _ = args[5].([]any)
			}
			if len(args) > 6 {
				kw, _ = args[6].(map[string]any)
			}
		} else {
			pos = args[5:]
		}
		s.handleObject(w, "jsonrpc", remoteHost(r), db, uid, key, modelName, method, pos, kw, nil, false, reply, fail, nil)
	case "db":
		// service/db.py dispatch: these take no master password.
		switch req.Params.Method {
		case "db_exist":
			db := ""
			if len(args) > 0 {
				db, _ = args[0].(string)
			}
			reply(s.dbExist(db))
		default:
			fail(&odooError{excKey, fmt.Sprintf("Method not found: %s", req.Params.Method)})
		}
	default:
		fail(&odooError{excKey, fmt.Sprintf("unknown service %q", req.Params.Service)})
	}
}

// rpcError is JSON-RPC's error member for e (JsonRPCDispatcher.handle_error).
func (s *Server) rpcError(e *odooError) map[string]any {
	code := 200
	if s.v() >= 19 {
		code = 0
	}
	return map[string]any{"code": code, "message": "Odoo Server Error",
		"data": map[string]any{"name": e.name, "message": e.msg, "arguments": []any{e.msg}, "context": map[string]any{},
			"debug": "Traceback (most recent call last):\n  (odootest)\n" + e.name + ": " + e.msg}}
}

// common serves the JSON-RPC common service (under mu).
func (s *Server) common(addr, method string, args []any) (any, *odooError) {
	switch method {
	case "version":
		info := []any{s.v(), 0, 0, "final", 0, ""}
		if s.opts.Enterprise {
			info[5] = "e"
		}
		return map[string]any{"server_version": s.ServerVersion(), "server_version_info": info,
			"server_serie": fmt.Sprintf("%d.0", s.v()), "protocol_version": 1}, nil
	case "authenticate", "login":
		if len(args) < 3 {
			return nil, &odooError{excType, method + "() missing required positional arguments"}
		}
		db, _ := args[0].(string)
		login, _ := args[1].(string)
		password, _ := args[2].(string)
		if s.pgDown.Load() {
			return nil, postgresRefused() // Registry(db) connects first
		}
		if db != s.opts.Database {
			return nil, noSuchDatabase(db)
		}
		// service/common.py exp_authenticate answers False for any
		// AccessDenied, the cooldown's included.
		var uid int64
		if err := s.assertCanAuth(addr, 0, func() bool { uid = s.checkLogin(login, password); return uid != 0 }); err != nil {
			s.log.Info("login failed", "login", login, "addr", addr, "error", err.msg)
			return false, nil
		}
		return uid, nil
	}
	return nil, &odooError{excAttr, fmt.Sprintf("'common' service has no method %q", method)}
}

// assertCanAuth is res_users.py _assert_can_auth around a credentials
// check (under mu): refused without checking while the address is on
// cooldown (maxFails failures, the last one less than the cooldown ago); a
// failure counts and stamps the address, a success forgets its failures.
// Logins (authenticate) and every JSON-RPC object call (res_users.check)
// go through it. The cooldown's message is _()'s, for user uid (the
// frame's user: lang.go), before the call's context is read; Access
// Denied is AccessDenied's default, never translated.
func (s *Server) assertCanAuth(addr string, uid int64, check func() bool) *odooError {
	f := s.failures[addr]
	if f != nil && f.count >= s.maxFails && time.Since(f.last) < s.cooldown {
		return &odooError{excDenied, translate(s.msgLang("jsonrpc", uid, nil), msgLoginCooldown)}
	}
	if check() {
		delete(s.failures, addr)
		return nil
	}
	if f == nil {
		f = &loginFailure{}
		s.failures[addr] = f
	}
	f.count++
	f.last = time.Now()
	return &odooError{excDenied, "Access Denied"}
}

func (s *Server) checkLogin(login, key string) int64 {
	k, ok := s.keys[key]
	if !ok || !s.keyValid(k) {
		return 0
	}
	if r, ok := s.models["res.users"].recs[k.uid]; ok && r["login"] == login && s.userActive(k.uid) {
		return k.uid
	}
	return 0
}

func (s *Server) checkUID(uid int64, key string) bool {
	k, ok := s.keys[key]
	return ok && s.keyValid(k) && k.uid == uid && s.userActive(uid)
}

// handleObject authenticates, applies faults, runs one model call and
// answers through reply/fail (JSON-RPC) or jsonOut (JSON-2).
func (s *Server) handleObject(w http.ResponseWriter, proto, addr, db string, uid int64, key, modelName, method string,
	pos []any, kw map[string]any, ids []int64, hasIDs bool,
	reply func(any), fail func(*odooError), json2Fail func(int, *odooError)) {
	if method == "load" {
		// SetLoadRowLatency: the rows take their time before the call is
		// served; the request's own latency (the handler's) has passed.
		s.mu.Lock()
		d, lat, limit := s.rowLatency*time.Duration(loadRows(pos, kw)), s.latency, s.wallLimit
		s.mu.Unlock()
		killed := limit > 0 && lat+d > limit
		if killed {
			d = max(0, limit-lat)
		}
		if d > 0 {
			t := time.NewTimer(d)
			select {
			case <-t.C:
			case <-s.closing:
				t.Stop()
				return
			}
		}
		if killed {
			drop(w)
			return
		}
	}
	if fn := s.beforeCall.Load(); fn != nil {
		(*fn)(modelName, method) // a test changes Odoo just before this call
	}
	s.mu.Lock()
	if proto == "jsonrpc" {
		if s.pgDown.Load() {
			// service/model.py dispatch: security.check opens a cursor.
			s.logCall(proto, modelName, method, uid, 200, excOperational)
			s.mu.Unlock()
			fail(postgresRefused())
			return
		}
		if db != s.opts.Database {
			s.logCall(proto, modelName, method, uid, 200, excOperational)
			s.mu.Unlock()
			fail(noSuchDatabase(db))
			return
		}
		if err := s.assertCanAuth(addr, uid, func() bool { return s.checkUID(uid, key) }); err != nil {
			s.logCall(proto, modelName, method, uid, 200, excDenied)
			s.mu.Unlock()
			fail(err)
			return
		}
	}
	fault := s.nextFault(modelName, method)
	switch fault {
	case FaultHTTP502:
		s.logCall(proto, modelName, method, uid, 502, "fault:"+fault.String())
		s.mu.Unlock()
		w.Header().Set("Content-Type", "text/html")
		w.WriteHeader(http.StatusBadGateway)
		_, _ = io.WriteString(w, "<html><body><h1>502 Bad Gateway</h1></body></html>")
		return
	case FaultHTTP503:
		ra := s.retryAfter
		s.logCall(proto, modelName, method, uid, 503, "fault:"+fault.String())
		s.mu.Unlock()
		w.Header().Set("Retry-After", fmt.Sprint(int(ra.Seconds())))
		w.Header().Set("Content-Type", "text/html")
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = io.WriteString(w, "<html><body><h1>503 Service Unavailable</h1></body></html>")
		return
	case FaultDatabaseDown:
		if proto == "json2" {
			// The request could not open its database (databases.go).
			s.logCall(proto, modelName, method, uid, http.StatusNotFound, "fault:"+fault.String())
			s.mu.Unlock()
			s.notFoundNoDB(w)
			return
		}
		s.failFault(proto, modelName, method, uid, fault, http.StatusOK, fail, json2Fail, postgresRefused())
		return
	case FaultSerialization, FaultLockConflict:
		e := &odooError{excSerialize, "could not serialize access due to concurrent update"}
		if method == "load" {
			// models.py load catches every psycopg2.Error per row and
			// answers it as a message, rolled back, with HTTP 200 — its
			// server-side retry never sees it.
			msg := "could not serialize access due to concurrent update\n"
			if fault == FaultLockConflict {
				msg = "could not obtain lock on row in relation \"" + strings.ReplaceAll(modelName, ".", "_") + "\"\n"
			}
			s.logCall(proto, modelName, method, uid, 200, "fault:"+fault.String())
			s.mu.Unlock()
			reply(map[string]any{"ids": false, "messages": []any{map[string]any{
				"type": "error", "record": 0, "rows": map[string]any{"from": 0, "to": 0}, "message": msg}}})
			return
		}
		status := http.StatusInternalServerError
		if fault == FaultLockConflict {
			// Over JSON-RPC the database's own error after Odoo's retries;
			// over JSON-2, Odoo's LockError (a UserError whose http_status
			// is 409), which json2.py answers as such. (A psycopg2 lock
			// error reaching JSON-2 would be a 500, as FaultSerialization.)
			e = &odooError{excLock, "could not obtain lock on row in relation \"" + strings.ReplaceAll(modelName, ".", "_") + "\""}
			if proto != "jsonrpc" {
				e = &odooError{excLockError, "Cannot grab a lock on records of " + modelName + ": they are being modified by another operation"}
			}
			status = http.StatusConflict
		}
		s.failFault(proto, modelName, method, uid, fault, status, fail, json2Fail, e)
		return
	}
	s.curUID, s.curProto = uid, proto
	s.curCtx, _ = kw["context"].(map[string]any)
	res, oerr := s.dispatch(modelName, method, pos, kw, ids, hasIDs, proto == "json2")
	s.curUID, s.curCtx, s.curProto = 0, nil, ""
	outcome, status := "ok", 200
	if oerr != nil {
		outcome = oerr.name
		if proto == "json2" {
			status = json2Status(oerr)
		}
	}
	if fault == FaultCommitThenDrop {
		s.logCall(proto, modelName, method, uid, 0, "fault:"+fault.String())
		hook := s.onDrop
		s.mu.Unlock()
		if hook != nil {
			hook(modelName, method)
		}
		drop(w)
		return
	}
	s.logCall(proto, modelName, method, uid, status, outcome)
	s.mu.Unlock()
	switch {
	case oerr != nil && proto == "jsonrpc":
		fail(oerr)
	case oerr != nil:
		json2Fail(status, oerr)
	default:
		reply(res)
	}
}

// failFault answers an injected fault with e: over JSON-RPC with HTTP 200
// (Odoo's JSON-RPC errors), over JSON-2 with json2Code. It unlocks s.mu.
func (s *Server) failFault(proto, modelName, method string, uid int64, fault Fault, json2Code int,
	fail func(*odooError), json2Fail func(int, *odooError), e *odooError) {
	status := json2Code
	if proto == "jsonrpc" {
		status = 200
	}
	s.logCall(proto, modelName, method, uid, status, "fault:"+fault.String())
	s.mu.Unlock()
	if proto == "jsonrpc" {
		fail(e)
	} else {
		json2Fail(status, e)
	}
}

// ---- JSON-2 ----

// bearerRe is ir_http.py _auth_method_bearer's match of the Authorization header.
var bearerRe = regexp.MustCompile(`(?i)^bearer\s+(.+)$`)

func json2Status(e *odooError) int {
	switch e.name {
	case excAccess, excDenied:
		// exceptions.py (18.0 on): AccessError and AccessDenied are
		// UserErrors whose http_status is 403. JSON-2's 401 is only the
		// bearer check's werkzeug Unauthorized (serveJSON2).
		return http.StatusForbidden
	case excMissing, "werkzeug.exceptions.NotFound":
		return http.StatusNotFound
	case excLockError:
		return http.StatusConflict
	case excUser, excValidation, "werkzeug.exceptions.UnprocessableEntity":
		return http.StatusUnprocessableEntity
	}
	// json2.py handle_error: anything but a UserError or an HTTP exception
	// (a ValueError or TypeError raised inside the method, a database error)
	// is 500 "internal server error".
	return http.StatusInternalServerError
}

func (s *Server) json2Error(w http.ResponseWriter, status int, e *odooError) {
	if status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", "bearer")
	}
	if s.opts.StringErrors {
		msg := e.msg
		if status == http.StatusInternalServerError {
			msg = "internal server error"
		}
		writeJSON(w, status, msg)
		return
	}
	args := []any{e.msg}
	if strings.HasPrefix(e.name, "werkzeug.exceptions.") {
		// json2.py handle_error: an HTTP exception is serialized with
		// arguments=(exc.description, exc.code).
		args = append(args, status)
	}
	writeJSON(w, status, map[string]any{"name": e.name, "message": e.msg, "arguments": args,
		"context": map[string]any{}, "debug": "Traceback (most recent call last):\n  (odootest)\n" + e.name + ": " + e.msg})
}

func (s *Server) serveJSON2(w http.ResponseWriter, r *http.Request) {
	if s.v() < 19 {
		if s.v() == 18 {
			// 18.0's web client route /json/<path:subpath> (auth='user',
			// type='http') takes the path: without a session it sends
			// the caller to the login page (review5 F6). 17 has no route.
			http.Redirect(w, r, "/web/login?redirect="+url.QueryEscape(r.URL.Path), http.StatusSeeOther)
			return
		}
		http.NotFound(w, r)
		return
	}
	modelName, method := r.PathValue("model"), r.PathValue("method")
	if !s.servesDB(r.Header.Get("X-Odoo-Database")) || s.pgDown.Load() {
		// http.py: no database for the request, or one Odoo cannot open
		// (absent, excluded by dbfilter, PostgreSQL unreachable:
		// RegistryError), is served without one, where no /json/2 route
		// exists. The key is never looked at.
		s.mu.Lock()
		s.logCall("json2", modelName, method, 0, http.StatusNotFound, "nodb")
		s.mu.Unlock()
		s.notFoundNoDB(w)
		return
	}
	// ir_http.py _auth_method_bearer: the token of an Authorization
	// header matching ^bearer\s+(.+)$ (any case); without one, werkzeug's
	// Unauthorized "User not authenticated", with one Odoo does not take,
	// "Invalid apikey" — both 401 with WWW-Authenticate: bearer.
	m := bearerRe.FindStringSubmatch(r.Header.Get("Authorization"))
	s.mu.Lock()
	var uid int64
	var key string
	if m != nil {
		key = strings.TrimSpace(m[1])
		if k, ok := s.keys[key]; ok && s.keyValid(k) && s.userActive(k.uid) {
			uid = k.uid
		}
	}
	if uid == 0 {
		s.logCall("json2", modelName, method, 0, http.StatusUnauthorized, excDenied)
		s.mu.Unlock()
		msg := "Invalid apikey"
		if m == nil {
			msg = `User not authenticated, use the "Authorization" header`
		}
		s.json2Error(w, http.StatusUnauthorized, &odooError{"werkzeug.exceptions.Unauthorized", msg})
		return
	}
	s.mu.Unlock()
	body, err := io.ReadAll(io.LimitReader(r.Body, 32<<20))
	params := map[string]any{}
	if err == nil && len(body) > 0 { // Odoo parses the body only when there is one
		var v any
		if err = json.Unmarshal(body, &v); err != nil {
			// json2.py dispatch: get_json_data's ValueError
			s.json2Error(w, http.StatusBadRequest, &odooError{"werkzeug.exceptions.BadRequest", "could not parse the body as json: " + err.Error()})
			return
		}
		params, _ = v.(map[string]any)
	}
	if err != nil || params == nil {
		// json2.py dispatch: JSON that is not an object (params |= it: TypeError)
		s.json2Error(w, http.StatusBadRequest, &odooError{"werkzeug.exceptions.BadRequest", "could not parse the body, expecting a json object"})
		return
	}
	var ids []int64
	rawIDs, hasIDs := params["ids"]
	if hasIDs {
		var ok bool
		if ids, ok = toIDs(rawIDs); !ok {
			s.json2Error(w, http.StatusUnprocessableEntity, &odooError{"werkzeug.exceptions.UnprocessableEntity", "ids must be a list of integers"})
			return
		}
	}
	delete(params, "ids") // the context stays: the call's methods may read it
	s.handleObject(w, "json2", remoteHost(r), s.opts.Database, uid, key, modelName, method, nil, params, ids, hasIDs,
		func(v any) {
			if _, isNone := v.(none); isNone {
				v = nil
			}
			writeJSON(w, http.StatusOK, v)
		}, nil,
		func(status int, e *odooError) { s.json2Error(w, status, e) })
}
