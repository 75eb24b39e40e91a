package odoo_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/plantedge/plantedge/odoo"
	"github.com/plantedge/plantedge/odoo/odootest"
)

// The client against whatever comes back: every request of a real call is
// served by the emulator's handler in process, but for the one the
// scenario targets, answered with what the fuzzer says — a status, the
// headers a proxy, a captive portal or an upgraded Odoo would set, and any
// body. The properties (checkAnswer) say what the client may make of it:
// no success unless the body is Odoo's success answer for that protocol
// and call, errors classified as ODOO.md says, Retry-After without
// overflow, and never the API key in an error.

// Placeholders a fuzzed body may hold, filled in from the request
// answered: the JSON-RPC id it sent, the API key, the whole request body
// (a server that echoes the request back).
const (
	phID  = "@ID@"
	phKey = "@KEY@"
	phReq = "@REQ@"
)

// answer is what the fuzzed server says to the targeted request.
type answer struct {
	status                        int
	contentType, retryAfter, auth string
	body                          []byte
}

// scenario is one real call of the client, with the request it targets.
type scenario struct {
	name    string
	version int    // emulator
	proto   string // client Config.Protocol
	// connect: the targeted request is made by Connect (otherwise Connect
	// runs against the emulator first, and the call after it is answered).
	connect bool
	// jsonrpc: the targeted request is JSON-RPC (else GET /web/version or
	// JSON-2).
	jsonrpc bool
	// target reports the request to answer: its path, and for JSON-RPC
	// its service, method, and execute_kw's model and method.
	target func(path, service, method, model, kwMethod string) bool
	// run makes the call; the value it reports on success.
	run func(ctx context.Context, c *odoo.Client, f *answerFixture) (any, error)
	// shape reports whether a success result (JSON-RPC's "result", a
	// JSON-2 body) has the shape Odoo answers the call with, and the value
	// the call must then report.
	shape func(result json.RawMessage) (want any, ok bool)
	// odoos, when set, reports whether a success result is one Odoo
	// answers the call with, also one the call then fails on (a search
	// that found nothing, or several, where the call wants one: Odoo's
	// answer, whatever class it gets); shape alone otherwise.
	odoos func(result json.RawMessage) bool
	// short: the emulator has too little stock of the scrapped product
	// (action_validate answers its wizard).
	short bool
}

type answerFixture struct {
	srv               *odootest.Server
	wc, wo            int64
	product, mo       int64
	loss              int64
	started           time.Time
	confirmShortScrap bool
}

func rpcTarget(service, method, model, kwMethod string) func(path, service, method, model, kwMethod string) bool {
	return func(p, s, m, mo, km string) bool {
		return p == "/jsonrpc" && s == service && m == method && mo == model && km == kwMethod
	}
}

func pathTarget(path string) func(path, service, method, model, kwMethod string) bool {
	return func(p, _, _, _, _ string) bool { return p == path }
}

func workordersRun(ctx context.Context, c *odoo.Client, f *answerFixture) (any, error) {
	wos, err := c.WorkordersInProgress(ctx, f.wc)
	ids := make([]int64, 0, len(wos))
	for _, w := range wos {
		ids = append(ids, w.ID)
	}
	return ids, err
}

// workordersShape: a list of work-order records (objects with a positive
// id); the call reports their ids (workedFirst may reorder them: compared
// as a set).
func workordersShape(res json.RawMessage) (any, bool) {
	ids, ok := records(res)
	if !ok {
		return nil, false
	}
	return ids, true
}

func writeRun(ctx context.Context, c *odoo.Client, f *answerFixture) (any, error) {
	return true, c.SetProducedQty(ctx, f.wo, 7)
}

// writeShape: write returns True.
func writeShape(res json.RawMessage) (any, bool) {
	var ok bool
	return true, json.Unmarshal(res, &ok) == nil && ok
}

func loadRun(ctx context.Context, c *odoo.Client, f *answerFixture) (any, error) {
	return c.UpsertDowntime(ctx, odoo.Downtime{XMLID: "plantedge.fuzz_m1_stop_1", WorkcenterID: f.wc, WorkorderID: f.wo,
		LossID: f.loss, Start: f.started})
}

// loadShape: {"ids": [one positive id], "messages": [no error]}.
func loadShape(res json.RawMessage) (any, bool) {
	var r struct {
		IDs      []int64 `json:"ids"`
		Messages []struct {
			Type string `json:"type"`
		} `json:"messages"`
	}
	if json.Unmarshal(res, &r) != nil || len(r.IDs) != 1 || r.IDs[0] <= 0 {
		return nil, false
	}
	for _, m := range r.Messages {
		if m.Type == "error" {
			return nil, false
		}
	}
	return r.IDs[0], true
}

func closeRun(ctx context.Context, c *odoo.Client, f *answerFixture) (any, error) {
	// The open line, booked first (a load: not the targeted write).
	id, err := c.UpsertDowntime(ctx, odoo.Downtime{XMLID: "plantedge.fuzz_m1_stop_2", WorkcenterID: f.wc, WorkorderID: f.wo,
		LossID: f.loss, Start: f.started})
	if err != nil {
		return nil, err
	}
	return c.CloseDowntimeLine(ctx, id, f.started, f.started.Add(5*time.Minute))
}

func scrapRun(ctx context.Context, c *odoo.Client, f *answerFixture) (any, error) {
	return c.BookScrap(ctx, odoo.Scrap{XMLID: "plantedge.fuzz_m1_scrap_1", ProductID: f.product, ProductionID: f.mo,
		WorkorderID: f.wo, Qty: 2, ConfirmShort: f.confirmShortScrap})
}

// scrapLoadShape: a load's success; the scrap is then validated by the
// emulator, which has it only when the load reached it (never here: an
// id it has no scrap by fails the validation).
func scrapLoadShape(res json.RawMessage) (any, bool) {
	_, ok := loadShape(res)
	return true, ok
}

// validateShape: action_validate answers True (done), or the action of
// its Insufficient Quantity wizard (not done; kept a draft without
// odoo.scrap_when_short: confirm).
func validateShape(res json.RawMessage) (any, bool) {
	var done bool
	if json.Unmarshal(res, &done) == nil && done {
		return true, true
	}
	var action map[string]json.RawMessage
	var typ string
	if json.Unmarshal(res, &action) == nil && json.Unmarshal(action["type"], &typ) == nil && strings.HasPrefix(typ, "ir.actions.") {
		return false, true
	}
	return nil, false
}

// records reports a search_read's answer: a list of records, each an
// object with a positive id.
func records(res json.RawMessage) ([]int64, bool) {
	var rows []map[string]json.RawMessage
	if json.Unmarshal(res, &rows) != nil || rows == nil {
		return nil, false
	}
	ids := make([]int64, 0, len(rows))
	for _, r := range rows {
		var id int64
		if r == nil || json.Unmarshal(r["id"], &id) != nil || id <= 0 {
			return nil, false
		}
		ids = append(ids, id)
	}
	return ids, true
}

// oneRecordShape: the call succeeds on exactly one record, and reports its
// id; none or several are Odoo's answer too, which the call refuses.
func oneRecordShape(res json.RawMessage) (any, bool) {
	ids, ok := records(res)
	if !ok || len(ids) != 1 {
		return nil, false
	}
	return ids[0], true
}

func isRecords(res json.RawMessage) bool {
	_, ok := records(res)
	return ok
}

func lossRun(ctx context.Context, c *odoo.Client, _ *answerFixture) (any, error) {
	return c.LossID(ctx, "Equipment Failure")
}

func workcenterRun(ctx context.Context, c *odoo.Client, _ *answerFixture) (any, error) {
	wc, err := c.WorkcenterByCode(ctx, "M1")
	return wc.ID, err
}

// answerScenarios: 0-3 Connect's requests, 4- the calls after it, each
// on both protocols (the fuzz functions and their corpus pick them by
// index: add at the end).
var answerScenarios = slices.Concat([]scenario{
	{name: "web.version", version: 19, proto: "auto", connect: true, target: pathTarget("/web/version"),
		run: func(ctx context.Context, c *odoo.Client, _ *answerFixture) (any, error) {
			err := c.Connect(ctx)
			return c.Protocol(), err
		},
		shape: func(res json.RawMessage) (any, bool) {
			var v struct {
				Version string `json:"version"`
			}
			if json.Unmarshal(res, &v) != nil || v.Version == "" {
				return nil, false
			}
			if odoo.MajorOf(v.Version) >= 19 {
				return "json2", true
			}
			return "jsonrpc", true
		}},
	{name: "common.version", version: 17, proto: "jsonrpc", connect: true, jsonrpc: true,
		target: rpcTarget("common", "version", "", ""),
		run: func(ctx context.Context, c *odoo.Client, _ *answerFixture) (any, error) {
			err := c.Connect(ctx)
			return c.ServerVersion(), err
		},
		shape: func(res json.RawMessage) (any, bool) {
			var v struct {
				ServerVersion string `json:"server_version"`
			}
			return v.ServerVersion, json.Unmarshal(res, &v) == nil && v.ServerVersion != ""
		}},
	{name: "authenticate", version: 17, proto: "jsonrpc", connect: true, jsonrpc: true,
		target: rpcTarget("common", "authenticate", "", ""),
		run: func(ctx context.Context, c *odoo.Client, _ *answerFixture) (any, error) {
			err := c.Connect(ctx)
			return c.UID(), err
		},
		shape: func(res json.RawMessage) (any, bool) {
			var uid int64
			return uid, json.Unmarshal(res, &uid) == nil && uid > 0
		}},
	{name: "context_get", version: 19, proto: "auto", connect: true, target: pathTarget("/json/2/res.users/context_get"),
		run: func(ctx context.Context, c *odoo.Client, _ *answerFixture) (any, error) {
			err := c.Connect(ctx)
			return c.UID(), err
		},
		shape: func(res json.RawMessage) (any, bool) {
			var v struct {
				UID int64 `json:"uid"`
			}
			return v.UID, json.Unmarshal(res, &v) == nil && v.UID > 0
		}},
},
	onBoth("search_read", 17, "mrp.workorder", "search_read", scenario{run: workordersRun, shape: workordersShape}),
	onBoth("write", 17, "mrp.workorder", "write", scenario{run: writeRun, shape: writeShape}),
	onBoth("load", 18, "mrp.workcenter.productivity", "load", scenario{run: loadRun, shape: loadShape}),
	// 10-: the downtime line's close, the scrap path, the look-ups the
	// agent books by.
	onBoth("close", 17, "mrp.workcenter.productivity", "write", scenario{run: closeRun, shape: writeShape}),
	onBoth("scrapload", 18, "stock.scrap", "load", scenario{run: scrapRun, shape: scrapLoadShape}),
	onBoth("validate", 17, "stock.scrap", "action_validate", scenario{run: scrapRun, shape: validateShape}),
	onBoth("doscrap", 18, "stock.scrap", "do_scrap", scenario{run: scrapRun, shape: writeShape, short: true}),
	onBoth("loss", 18, "mrp.workcenter.productivity.loss", "search_read", scenario{run: lossRun, shape: oneRecordShape, odoos: isRecords}),
	onBoth("workcenter", 17, "mrp.workcenter", "search_read", scenario{run: workcenterRun, shape: oneRecordShape, odoos: isRecords}),
)

// onBoth is the scenarios of one call of sc's, in this order: over
// JSON-RPC (execute_kw of model's method) to an Odoo of version rpc,
// named name-rpc, and over JSON-2 (/json/2/model/method) to a 19, named
// name-19; the client's protocol "auto" in both.
func onBoth(name string, rpc int, model, method string, sc scenario) []scenario {
	r, j := sc, sc
	r.name, r.version, r.proto, r.jsonrpc = fmt.Sprintf("%s-%d", name, rpc), rpc, "auto", true
	r.target = rpcTarget("object", "execute_kw", model, method)
	j.name, j.version, j.proto = name+"-19", 19, "auto"
	j.target = pathTarget("/json/2/" + model + "/" + method)
	return []scenario{r, j}
}

// swapTransport serves requests with the emulator's handler, but answers
// those the scenario targets with the fuzzed answer.
type swapTransport struct {
	h    http.Handler
	sc   scenario
	ans  answer
	key  string
	hits int    // targeted requests answered
	id   []byte // the JSON-RPC id of the last one
	body []byte // the fuzzed body sent for it, placeholders filled in
}

func (t *swapTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	reqBody, err := readBody(req)
	if err != nil {
		return nil, err
	}
	var rpc struct {
		ID     json.RawMessage `json:"id"`
		Params struct {
			Service string `json:"service"`
			Method  string `json:"method"`
			Args    []any  `json:"args"`
		} `json:"params"`
	}
	model, kwMethod := "", ""
	if req.URL.Path == "/jsonrpc" && json.Unmarshal(reqBody, &rpc) == nil && len(rpc.Params.Args) > 4 {
		model, _ = rpc.Params.Args[3].(string)
		kwMethod, _ = rpc.Params.Args[4].(string)
	}
	if !t.sc.target(req.URL.Path, rpc.Params.Service, rpc.Params.Method, model, kwMethod) {
		return serveIn(t.h, req, reqBody), nil
	}
	t.hits++
	t.id = rpc.ID
	body := bytes.ReplaceAll(t.ans.body, []byte(phID), rpc.ID)
	body = bytes.ReplaceAll(body, []byte(phKey), []byte(t.key))
	body = bytes.ReplaceAll(body, []byte(phReq), reqBody)
	t.body = body
	h := http.Header{}
	if t.ans.contentType != "" {
		h.Set("Content-Type", t.ans.contentType)
	}
	if t.ans.retryAfter != "" {
		h.Set("Retry-After", t.ans.retryAfter)
	}
	if t.ans.auth != "" {
		h.Set("WWW-Authenticate", t.ans.auth)
	}
	return answerWith(req, t.ans.status, h, body), nil
}

// readBody reads and closes req's body (nil: none).
func readBody(req *http.Request) ([]byte, error) {
	if req.Body == nil {
		return nil, nil
	}
	defer req.Body.Close()
	return io.ReadAll(req.Body)
}

// serveIn answers req, whose body readBody read, with h in the test
// process, as asked from 127.0.0.1.
func serveIn(h http.Handler, req *http.Request, body []byte) *http.Response {
	in := req.Clone(req.Context())
	in.Body = io.NopCloser(bytes.NewReader(body))
	in.RemoteAddr = "127.0.0.1:40000"
	in.RequestURI = req.URL.RequestURI()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, in)
	resp := rec.Result()
	resp.Request = req
	return resp
}

// answerWith is an answer to req made up of status, header and body.
func answerWith(req *http.Request, status int, header http.Header, body []byte) *http.Response {
	return &http.Response{StatusCode: status, Status: fmt.Sprintf("%d %s", status, http.StatusText(status)),
		Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1, Header: header, Body: io.NopCloser(bytes.NewReader(body)),
		ContentLength: int64(len(body)), Request: req}
}

// runAnswer runs scenario sc against ans and checks the properties.
func runAnswer(t *testing.T, sc scenario, ans answer) {
	tr, got, err := callWith(t, sc, ans)
	checkAnswer(t, sc, tr, ans, got, err)
}

// callWith makes sc's call with ans as the answer to its targeted request.
func callWith(t *testing.T, sc scenario, ans answer) (*swapTransport, any, error) {
	t.Helper()
	s := odootest.New(odootest.Options{Version: sc.version})
	f := &answerFixture{srv: s, started: time.Date(2026, 3, 2, 6, 0, 0, 0, time.UTC)}
	f.wc = s.AddWorkcenter("M1", "Press 1")
	f.product = s.AddProduct("Bracket")
	f.mo = s.AddProduction("WH/MO/00078", f.product, 500)
	f.wo = s.AddWorkorder(f.mo, f.wc, "Pressing", "progress")
	f.loss = 2
	if sc.short {
		s.SetShortStock(f.product, true)
		f.confirmShortScrap = true
	}
	tr := &swapTransport{h: s.Handler(), sc: sc, ans: ans, key: s.AdminKey()}
	hc := &http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	c, err := odoo.New(odoo.Config{URL: "http://odoo.example:8069", Database: "odoo", Username: "admin", APIKey: s.AdminKey(),
		Protocol: sc.proto, Timeout: 5 * time.Second, HTTPClient: hc, IdleRecheck: -1, VersionRecheck: -1})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if !sc.connect {
		// Connect against the emulator; only the call after is answered.
		saved := tr.sc.target
		tr.sc.target = func(string, string, string, string, string) bool { return false }
		if err := c.Connect(ctx); err != nil {
			t.Fatalf("%s: Connect to the emulator: %v", sc.name, err)
		}
		tr.sc.target = saved
	}
	got, err := sc.run(ctx, c, f)
	return tr, got, err
}

// wellFormed says whether body, sent for the targeted request, is Odoo's
// success answer to it, and the result then.
func wellFormed(sc scenario, tr *swapTransport, ans answer) (json.RawMessage, bool) {
	if ans.status != http.StatusOK || !json.Valid(tr.body) {
		return nil, false
	}
	if !sc.jsonrpc {
		return tr.body, true
	}
	var env struct {
		JSONRPC string           `json:"jsonrpc"`
		ID      json.RawMessage  `json:"id"`
		Result  *json.RawMessage `json:"result"`
		Error   json.RawMessage  `json:"error"`
	}
	if json.Unmarshal(tr.body, &env) != nil || env.JSONRPC != "2.0" || env.Result == nil ||
		(len(env.Error) > 0 && string(env.Error) != "null") || !sameJSON(env.ID, tr.id) {
		return nil, false
	}
	return *env.Result, true
}

func sameJSON(a, b json.RawMessage) bool {
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return false
	}
	return fmt.Sprint(x) == fmt.Sprint(y)
}

func checkAnswer(t *testing.T, sc scenario, tr *swapTransport, ans answer, got any, err error) {
	t.Helper()
	if tr.hits == 0 {
		// The call did not reach the targeted request (an earlier
		// answer ended it, or the protocol picked did not send it).
		if err != nil {
			var oe *odoo.Error
			if !errors.As(err, &oe) {
				t.Fatalf("%s: error is not an *odoo.Error: %T %v", sc.name, err, err)
			}
		}
		return
	}
	res, ok := wellFormed(sc, tr, ans)
	var want any
	if ok {
		want, ok = sc.shape(res)
	}
	if err == nil {
		if !ok && sc.name != "web.version" {
			t.Fatalf("%s: success (%v) on an answer that is not Odoo's success: %d %q", sc.name, got, ans.status, tr.body)
		}
		if sc.name == "web.version" && got == "json2" && !ok {
			t.Fatalf("%s: JSON-2 picked on an answer that is not Odoo 19's version: %d %q", sc.name, ans.status, tr.body)
		}
		if ok && sc.name != "web.version" && !sameValue(got, want) {
			t.Fatalf("%s: success reports %v, the answer says %v: %q", sc.name, got, want, tr.body)
		}
		return
	}
	var oe *odoo.Error
	if !errors.As(err, &oe) {
		t.Fatalf("%s: error is not an *odoo.Error: %T %v", sc.name, err, err)
	}
	if strings.Contains(err.Error(), tr.key) || strings.Contains(oe.Name, tr.key) || strings.Contains(oe.LockoutNote(), tr.key) {
		t.Fatalf("%s: the API key in the error: %v", sc.name, err)
	}
	if oe.RetryAfter < 0 {
		t.Fatalf("%s: Retry-After %q gave %v", sc.name, ans.retryAfter, oe.RetryAfter)
	}
	if oe.Status == ans.status && ans.status >= 400 { // a redirect's Retry-After is not read
		if want, ok := retryAfterSeconds(ans.retryAfter); ok && oe.RetryAfter != want {
			t.Fatalf("%s: Retry-After %q gave %v, want %v", sc.name, ans.retryAfter, oe.RetryAfter, want)
		}
	}
	if want, why := wantClass(sc, tr, ans); want != 0 && oe.Class != want {
		t.Fatalf("%s: %s: class %v, want %v (%v): %d %q", sc.name, why, oe.Class, want, err, ans.status, tr.body)
	}
}

func sameValue(got, want any) bool {
	g, okG := got.([]int64)
	w, okW := want.([]int64)
	if okG && okW {
		if len(g) != len(w) {
			return false
		}
		seen := map[int64]int{}
		for _, id := range w {
			seen[id]++
		}
		for _, id := range g {
			if seen[id]--; seen[id] < 0 {
				return false
			}
		}
		return true
	}
	return fmt.Sprint(got) == fmt.Sprint(want)
}

// retryAfterSeconds is the delay a Retry-After of delay-seconds asks for,
// saturated at the longest time.Duration.
func retryAfterSeconds(v string) (time.Duration, bool) {
	v = strings.TrimSpace(v)
	if v == "" || strings.Trim(v, "0123456789") != "" {
		return 0, false
	}
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil || n > uint64(math.MaxInt64/int64(time.Second)) {
		return time.Duration(math.MaxInt64), true
	}
	return time.Duration(n) * time.Second, true
}

// odooError is the exception name of a non-200 answer whose body is a
// JSON object naming one (JSON-2's errors), "" otherwise.
func odooError(ans answer, body []byte) string {
	var obj struct {
		Name string `json:"name"`
	}
	if ans.status == http.StatusOK || json.Unmarshal(body, &obj) != nil {
		return ""
	}
	return obj.Name
}

// jsonString reports a body that is a non-empty JSON string.
func jsonString(body []byte) bool {
	var str string
	return json.Unmarshal(body, &str) == nil && str != ""
}

// classOfName is the class ODOO.md gives an exception Odoo names, 0 for
// the names it says nothing definite of.
func classOfName(name string) odoo.ErrorClass {
	if !strings.HasPrefix(name, "odoo.exceptions.") && !strings.HasPrefix(name, "psycopg2.") {
		return 0
	}
	for _, s := range []string{"SerializationFailure", "LockNotAvailable", "DeadlockDetected", "LockError", "ConcurrencyError"} {
		if strings.HasSuffix(name, s) {
			return odoo.Transient
		}
	}
	if strings.HasSuffix(name, ".AccessDenied") {
		return odoo.Auth
	}
	for _, s := range []string{".AccessError", ".ValidationError", ".UserError", ".MissingError"} {
		if strings.HasPrefix(name, "odoo.exceptions.") && strings.HasSuffix(name, s) {
			return odoo.Permanent
		}
	}
	return 0
}

// notTheValue is Transient for a success result that is not the call's
// value: a load's that is not {"ids": [...] or false, "messages": [...]}
// (Odoo's refusal of a row, ids false with an error message, is
// permanent; ids for fewer or more rows than sent the client holds
// permanent too), any other call's that does not have its shape.
func notTheValue(sc scenario, res json.RawMessage) (odoo.ErrorClass, string) {
	if sc.odoos != nil {
		if !sc.odoos(res) {
			return odoo.Transient, "a result that is not Odoo's answer to the call"
		}
		return 0, ""
	}
	if !strings.Contains(sc.name, "load") {
		if _, ok := sc.shape(res); !ok {
			return odoo.Transient, "a result that is not the call's value"
		}
		return 0, ""
	}
	var r struct {
		IDs      json.RawMessage   `json:"ids"`
		Messages []json.RawMessage `json:"messages"`
	}
	var ids []json.Number
	if json.Unmarshal(res, &r) != nil || r.Messages == nil ||
		string(bytes.TrimSpace(r.IDs)) != "false" && (json.Unmarshal(r.IDs, &ids) != nil || ids == nil) {
		return odoo.Transient, "not Odoo's answer to a load"
	}
	return 0, ""
}

// wantClass is the class ODOO.md gives the answer, 0 where it says
// nothing definite.
func wantClass(sc scenario, tr *swapTransport, ans answer) (odoo.ErrorClass, string) {
	body := tr.body
	if ans.status == http.StatusOK {
		switch {
		case !json.Valid(body):
			return odoo.Transient, "a 200 that is not JSON (a proxy's page)"
		case sc.name == "web.version":
			return 0, "" // auto falls back to JSON-RPC
		case !sc.jsonrpc:
			return notTheValue(sc, body)
		}
		var env struct {
			JSONRPC string           `json:"jsonrpc"`
			ID      json.RawMessage  `json:"id"`
			Result  *json.RawMessage `json:"result"`
			Error   *struct {
				Data struct {
					Name string `json:"name"`
				} `json:"data"`
			} `json:"error"`
		}
		switch {
		case json.Unmarshal(body, &env) != nil || env.JSONRPC != "2.0":
			return odoo.Transient, "not a JSON-RPC answer"
		case !sameJSON(env.ID, tr.id):
			return odoo.Transient, "a JSON-RPC answer to another request"
		case env.Error != nil && env.Error.Data.Name == "":
			return odoo.Transient, "a JSON-RPC error naming no Odoo exception"
		case env.Error != nil:
			return classOfName(env.Error.Data.Name), "Odoo's error " + env.Error.Data.Name
		case env.Result == nil || string(*env.Result) == "null":
			return odoo.Transient, "a JSON-RPC answer without a result"
		case sc.name == "authenticate" && string(bytes.TrimSpace(*env.Result)) == "false":
			return odoo.Auth, "authenticate answered false: the login refused"
		}
		return notTheValue(sc, *env.Result)
	}
	name := odooError(ans, body)
	json2 := !sc.jsonrpc && sc.name != "web.version"
	switch {
	case ans.status >= 300 && ans.status < 400:
		return odoo.Transient, "a redirect (not followed: a proxy's maintenance page, or Odoo moved)"
	case strings.HasSuffix(name, ".AccessDenied"):
		return odoo.Auth, "AccessDenied"
	case ans.status == http.StatusUnauthorized && json.Valid(body):
		return odoo.Auth, "401"
	case ans.status == http.StatusUnauthorized, ans.status == http.StatusNotFound && !json.Valid(body),
		ans.status == http.StatusForbidden && (!json2 || name == "" && !jsonString(body)):
		// (A bare JSON string is an early 19 build's AccessError.)
		return odoo.Transient, "a 401/403/404 that is not Odoo's (a proxy's)"
	case ans.status == http.StatusConflict, ans.status == http.StatusTooManyRequests,
		ans.status == http.StatusBadGateway, ans.status == http.StatusServiceUnavailable, ans.status == http.StatusGatewayTimeout:
		return odoo.Transient, "a status to retry"
	case ans.status == http.StatusInternalServerError && classOfName(name) == odoo.Transient:
		return odoo.Transient, "a concurrency failure"
	case json2 && (ans.status == http.StatusForbidden && strings.HasSuffix(name, ".AccessError") ||
		ans.status == http.StatusUnprocessableEntity && (strings.HasSuffix(name, ".ValidationError") || strings.HasSuffix(name, ".UserError")) ||
		ans.status == http.StatusNotFound && strings.HasSuffix(name, ".MissingError")):
		return classOfName(name), "Odoo's refusal"
	}
	return 0, ""
}

// answerSeeds are real shapes: Odoo's own answers (ODOO.md, the
// emulator's), and what stands between the box and Odoo answers.
func answerSeeds(f *testing.F, scenarios []int) {
	html := "<html><head><title>Maintenance</title></head><body>Back soon</body></html>"
	type seed struct {
		status                        int
		ctype, retryAfter, auth, body string
	}
	common := []seed{
		{200, "text/html", "", "", html},
		{200, "text/html", "", "", "<!DOCTYPE html><html><head><title>Wi-Fi login</title></head><body><form>...</form></body></html>"},
		{200, "application/json", "", "", `{"jsonrpc":"2.0","id":` + phID + `,"result":`},
		{200, "application/json", "", "", `{"jsonrpc":"2.0","id":` + phID + `,"result":true,"error":{"code":200,"message":"Odoo Server Error","data":{"name":"odoo.exceptions.ValidationError","message":"x"}}}`},
		{200, "application/json", "", "", `{"jsonrpc":"2.0","id":99999,"result":true}`},
		{200, "application/json", "", "", `{"jsonrpc":"2.0","id":` + phID + `}`},
		{200, "application/json", "", "", `{"jsonrpc":"2.0","id":` + phID + `,"result":null}`},
		{200, "application/json", "", "", `null`},
		{200, "application/json", "", "", `{}`},
		{200, "application/json", "", "", `{"status":"ok"}`},
		{200, "application/json", "", "", phReq},
		{200, "application/json", "", "", `{"jsonrpc":"2.0","id":` + phID + `,"error":{"code":200,"message":"Odoo Server Error","data":{"name":"odoo.exceptions.AccessDenied","message":"Access Denied","arguments":["Access Denied"],"context":{},"debug":"Traceback ..."}}}`},
		{200, "application/json", "", "", `{"jsonrpc":"2.0","id":` + phID + `,"error":{"code":0,"message":"Odoo Server Error","data":{"name":"psycopg2.errors.SerializationFailure","message":"could not serialize access due to concurrent update"}}}`},
		{200, "application/json", "", "", `{"jsonrpc":"2.0","id":` + phID + `,"error":{"code":200,"message":"Odoo Server Error","data":{"name":"odoo.exceptions.UserError","message":"echo ` + phKey + `"}}}`},
		{200, "application/json", "", "", `{"jsonrpc":"2.0","id":` + phID + `,"error":{"code":-32600,"message":"Invalid Request"}}`},
		{200, "application/json", "", "", `{"jsonrpc":"2.0","id":` + phID + `,"error":{"code":200,"message":"Odoo Server Error","data":{"name":"odoo.exceptions.UserError ` + phKey + `","message":"x"}}}`},
		{422, "application/json", "", "", `{"name":"odoo.exceptions.UserError ` + phKey + `","message":"x"}`},
		{400, "text/plain", "", "", "Invalid JSON data"},
		{401, "application/json", "", "bearer", `{"name":"odoo.exceptions.AccessDenied","message":"Access Denied","arguments":["Access Denied"],"context":{},"debug":""}`},
		{401, "text/html", "", `Basic realm="proxy"`, html},
		{403, "application/json", "", "", `{"name":"odoo.exceptions.AccessError","message":"You are not allowed to modify 'Work Order' (mrp.workorder) records.","arguments":[],"context":{},"debug":""}`},
		{403, "text/html", "", "", "<html><head><title>403 Forbidden</title></head></html>"},
		{404, "application/json", "", "", `{"name":"odoo.exceptions.MissingError","message":"Record does not exist or has been deleted.","arguments":[],"context":{},"debug":""}`},
		{404, "text/html", "", "", "<html><head><title>404 Not Found</title></head><body>No database is selected</body></html>"},
		{409, "application/json", "", "", `{"name":"odoo.exceptions.ConcurrencyError","message":"could not serialize access","arguments":[],"context":{},"debug":""}`},
		{422, "application/json", "", "", `{"name":"odoo.exceptions.UserError","message":"It is not possible to produce a negative quantity.","arguments":[],"context":{},"debug":""}`},
		{422, "application/json", "", "", `"It is not possible to produce a negative quantity."`},
		{400, "text/html", "", "", "<html><head><title>400 Request Header Or Cookie Too Large</title></head></html>"},
		{413, "text/html", "", "", "<html><head><title>413 Request Entity Too Large</title></head></html>"},
		{429, "text/plain", "120", "", "Too Many Requests"},
		{429, "text/plain", "99999999999999999999", "", "slow down"},
		{503, "text/html", "9223372036", "", html},
		{503, "text/html", "-5", "", html},
		{503, "text/html", "Wed, 21 Oct 2999 07:28:00 GMT", "", html},
		{503, "text/html", "Wed, 21 Oct 2015 07:28:00 GMT", "", html},
		{500, "application/json", "", "", `{"name":"builtins.ValueError","message":"Invalid field 'x' on model 'mrp.workorder'","arguments":[],"context":{},"debug":""}`},
		{500, "text/plain", "", "", "Internal Server Error"},
		{502, "text/html", "", "", "<html><title>502 Bad Gateway</title></html>"},
		{504, "", "", "", ""},
		{302, "text/html", "", "", ""},
	}
	success := map[string][]string{
		"web.version":    {`{"version_info":[19,0,0,"final",0,""],"version":"19.0"}`, `{"version_info":[18,0,0,"final",0,""],"version":"18.0"}`, `{"version":""}`},
		"common.version": {`{"server_version":"17.0","server_version_info":[17,0,0,"final",0,""],"server_serie":"17.0","protocol_version":1}`, `{}`},
		"authenticate":   {`7`, `false`, `0`},
		"context_get":    {`{"lang":"en_US","tz":"Europe/Brussels","uid":7}`, `{"lang":"en_US"}`},
		"search_read":    {`[{"id":1,"name":"Pressing","state":"progress","workcenter_id":[1,"Press 1"],"qty_producing":0,"date_start":false}]`, `[]`, `{"records":[]}`},
		"write":          {`true`, `false`, `{"ids":[1]}`},
		"load":           {`{"ids":[5],"messages":[]}`, `{"ids":false,"messages":[{"type":"error","record":0,"field":"loss_id","message":"No matching record found for database id '2' in field 'Loss Reason'"}]}`, `{"ids":[0],"messages":[]}`, `{"ids":[5,6],"messages":[]}`},
		"close":          {`true`, `false`, `{"ids":[1]}`},
		"scrapload":      {`{"ids":[1],"messages":[]}`, `{"ids":false,"messages":[{"type":"error","record":0,"field":"product_id","message":"No matching record found for database id '9' in field 'Product'"}]}`},
		"validate": {`true`, `false`, `{"status":"ok"}`, `[]`,
			`{"name":"Bracket: Insufficient Quantity To Scrap","view_mode":"form","res_model":"stock.warn.insufficient.qty.scrap","view_id":412,"type":"ir.actions.act_window","context":{"default_product_id":1,"default_scrap_id":1,"default_quantity":2},"target":"new"}`},
		"doscrap":    {`true`, `false`, `{"status":"ok"}`},
		"loss":       {`[{"id":2}]`, `[]`, `[{"id":2},{"id":9}]`, `[{}]`, `[null]`, `[{"id":0}]`},
		"workcenter": {`[{"id":1,"code":"M1","name":"Press 1","company_id":[1,"YourCompany"]}]`, `[]`, `[{}]`, `[{"status":"ok"}]`},
	}
	for j, i := range scenarios {
		sc := answerScenarios[i]
		base, _, _ := strings.Cut(sc.name, "-")
		for _, s := range common {
			f.Add(uint8(j), uint16(s.status), s.ctype, s.retryAfter, s.auth, []byte(s.body))
		}
		for _, r := range success[base] {
			if sc.jsonrpc {
				f.Add(uint8(j), uint16(200), "application/json", "", "", []byte(`{"jsonrpc":"2.0","id":`+phID+`,"result":`+r+`}`))
			} else {
				f.Add(uint8(j), uint16(200), "application/json", "", "", []byte(r))
			}
		}
	}
}

func fuzzAnswers(f *testing.F, scenarios []int) {
	answerSeeds(f, scenarios)
	f.Fuzz(func(t *testing.T, which uint8, status uint16, ctype, retryAfter, auth string, body []byte) {
		sc := answerScenarios[scenarios[int(which)%len(scenarios)]]
		st := int(status)
		if st < 200 || st > 599 {
			st = 200 + st%400
		}
		runAnswer(t, sc, answer{status: st, contentType: ctype, retryAfter: retryAfter, auth: auth, body: body})
	})
}

// FuzzConnectAnswer answers the requests of Connect: the version
// detection (GET /web/version, common.version), JSON-RPC's authenticate,
// JSON-2's context_get.
func FuzzConnectAnswer(f *testing.F) { fuzzAnswers(f, []int{0, 1, 2, 3}) }

// FuzzCallAnswer answers the calls the agent makes once connected: the
// work orders in progress (search_read), a quantity written, a downtime
// line loaded and closed, a scrap loaded, validated and confirmed
// (do_scrap), a loss reason and a work center looked up — over JSON-RPC
// (17, 18) and JSON-2 (19).
func FuzzCallAnswer(f *testing.F) {
	fuzzAnswers(f, []int{4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21})
}

// rpcResult is Odoo's JSON-RPC success answer to the request body req: its
// id echoed, with result.
func rpcResult(req []byte, result string) string {
	var r struct {
		ID json.RawMessage `json:"id"`
	}
	_ = json.Unmarshal(req, &r)
	return `{"jsonrpc":"2.0","id":` + string(r.ID) + `,"result":` + result + `}`
}
