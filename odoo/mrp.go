package odoo

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/plantedge/plantedge/internal/decimal"
)

// TimeLayout is how Odoo sends datetimes over the wire (UTC).
const TimeLayout = "2006-01-02 15:04:05"

// Workcenter is an mrp.workcenter.
type Workcenter struct {
	ID                       int64
	Code, Name, WorkingState string
	// CompanyID is its company (0: none, shared). Downtime lines of a work
	// center are written in its company (see UpsertDowntimes).
	CompanyID int64
}

// Workorder is the part of an mrp.workorder the agent uses.
type Workorder struct {
	ID                                       int64
	Name, State                              string
	WorkcenterID, ProductionID               int64
	ProductID, UomID                         int64
	ProductionName                           string
	CompanyID                                int64 // its manufacturing order's company
	QtyProduction, QtyProducing, QtyProduced float64
	QtyRemaining                             float64
	DateStart                                time.Time
	DateFinished                             time.Time // read by WorkTimeline only (a cancelled one's: its last time line's end)
	// Tracking is how its product is tracked: "none", "lot" or "serial"
	// (product_tracking). Odoo 17/18 keep a serial-tracked product's
	// quantity producing at 1, whatever is written (SerialProducing).
	Tracking string
}

// SerialProducing reports whether Odoo 17/18 (major < 19) keep the work
// order's quantity producing at 1: its product is tracked by serial number,
// produced one unit at a time (mrp_production.py _set_qty_producing puts
// any other quantity written back to 1, and the write succeeds). Odoo 19's
// qty_produced is the work order's own and takes any quantity.
func (w Workorder) SerialProducing(major int) bool { return major < 19 && w.Tracking == "serial" }

// Ended reports whether the order is done or cancelled: no more work
// goes to it.
func (w Workorder) Ended() bool { return w.State == "done" || w.State == "cancel" }

// Downtime is one mrp.workcenter.productivity line, written idempotently
// under its external id.
type Downtime struct {
	XMLID                             string // "plantedge.<name>"
	WorkcenterID, WorkorderID, LossID int64
	Start                             time.Time
	End                               time.Time // zero = open line (blocks the work center for non-productive losses)
	Description                       string
}

// Scrap is one stock.scrap, booked idempotently under its external id.
type Scrap struct {
	XMLID                                       string
	ProductID, UomID, ProductionID, WorkorderID int64
	Qty                                         float64
	// ConfirmShort confirms a scrap Odoo has too little stock for, as a
	// user does in its Insufficient Quantity dialog (do_scrap); otherwise
	// the scrap is left a draft, not done.
	ConfirmShort bool
}

// many2one decodes Odoo's [id, "name"] or false.
type many2one struct {
	ID   int64
	Name string
}

func (m *many2one) UnmarshalJSON(b []byte) error {
	if bytes.Equal(b, []byte("false")) || bytes.Equal(b, []byte("null")) {
		*m = many2one{}
		return nil
	}
	var pair []json.RawMessage
	if err := json.Unmarshal(b, &pair); err == nil && len(pair) >= 1 {
		if err := json.Unmarshal(pair[0], &m.ID); err != nil {
			return fmt.Errorf("many2one id: %w", err)
		}
		if len(pair) > 1 {
			_ = json.Unmarshal(pair[1], &m.Name)
		}
		return nil
	}
	// a bare id (some JSON-2 answers)
	return json.Unmarshal(b, &m.ID)
}

// text decodes a char/selection field: a string or false.
type text string

func (t *text) UnmarshalJSON(b []byte) error {
	if bytes.Equal(b, []byte("false")) || bytes.Equal(b, []byte("null")) {
		*t = ""
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("text field: %w", err)
	}
	*t = text(s)
	return nil
}

// odooTime decodes "YYYY-MM-DD HH:MM:SS" (UTC) or false.
type odooTime time.Time

func (t *odooTime) UnmarshalJSON(b []byte) error {
	var s text
	if err := s.UnmarshalJSON(b); err != nil {
		return err
	}
	if s == "" {
		*t = odooTime{}
		return nil
	}
	v, err := time.ParseInLocation(TimeLayout, string(s), time.UTC)
	if err != nil {
		return fmt.Errorf("datetime field: %w", err)
	}
	*t = odooTime(v)
	return nil
}

var workorderFields = []string{"id", "name", "state", "workcenter_id", "production_id", "product_id",
	"product_uom_id", "qty_production", "qty_producing", "qty_produced", "qty_remaining", "date_start", "company_id",
	"product_tracking"}

// workorderFieldsFinished is workorderFields and date_finished.
var workorderFieldsFinished = append(slices.Clone(workorderFields), "date_finished")

// readWorkorders calls method on mrp.workorder with kw's fields set to the
// work order fields read (finished: workorderFieldsFinished). The work
// order's unit is product_uom_id up to Odoo 19.0; Odoo after it (master,
// saas~19.x builds: Odoo Online) has uom_id instead, and refuses the read
// of a field it lacks as a whole: every work order read failed there (the
// Odoo audit). When Odoo names the unit field asked for invalid, the other
// is read from then on, and the call is made once more.
func (c *Client) readWorkorders(ctx context.Context, method string, args []any, kw map[string]any, finished bool, rows *[]workorderRow) error {
	for retried := false; ; retried = true {
		fields := workorderFields
		if finished {
			fields = workorderFieldsFinished
		}
		unit := "product_uom_id"
		if c.woUnitAlt.Load() {
			unit = "uom_id"
			fields = slices.Clone(fields)
			fields[slices.Index(fields, "product_uom_id")] = unit
		}
		kw["fields"] = fields
		err := c.Call(ctx, "mrp.workorder", method, args, kw, rows)
		if err == nil || retried || !strings.Contains(err.Error(), fmt.Sprintf("Invalid field '%s' on model 'mrp.workorder'", unit)) {
			return err
		}
		c.woUnitAlt.Store(unit == "product_uom_id")
		c.log.Warn("Odoo's work orders have no field "+unit+" (a version after 19.0 renamed it): reading the unit from the other", "server_version", c.ServerVersion())
	}
}

type workorderRow struct {
	ID            int64    `json:"id"`
	Name          text     `json:"name"`
	State         text     `json:"state"`
	Workcenter    many2one `json:"workcenter_id"`
	Production    many2one `json:"production_id"`
	Product       many2one `json:"product_id"`
	Uom           many2one `json:"product_uom_id"`
	UomAlt        many2one `json:"uom_id"` // Odoo after 19.0 (readWorkorders)
	Company       many2one `json:"company_id"`
	QtyProduction float64  `json:"qty_production"`
	QtyProducing  float64  `json:"qty_producing"`
	QtyProduced   float64  `json:"qty_produced"`
	QtyRemaining  float64  `json:"qty_remaining"`
	DateStart     odooTime `json:"date_start"`
	DateFinished  odooTime `json:"date_finished"` // read by WorkTimeline only
	Tracking      text     `json:"product_tracking"`
}

func (r workorderRow) workorder() Workorder {
	return Workorder{ID: r.ID, Name: string(r.Name), State: string(r.State), WorkcenterID: r.Workcenter.ID,
		ProductionID: r.Production.ID, ProductionName: r.Production.Name, ProductID: r.Product.ID, UomID: cmp.Or(r.Uom.ID, r.UomAlt.ID),
		CompanyID: r.Company.ID, QtyProduction: r.QtyProduction, QtyProducing: r.QtyProducing, QtyProduced: r.QtyProduced,
		QtyRemaining: r.QtyRemaining, DateStart: time.Time(r.DateStart), DateFinished: time.Time(r.DateFinished),
		Tracking: string(r.Tracking)}
}

// WorkcenterByCode finds the work center with this code. Codes are not
// unique in Odoo: zero matches wrap ErrNotFound, several wrap ErrAmbiguous.
func (c *Client) WorkcenterByCode(ctx context.Context, code string) (Workcenter, error) {
	var rows []workcenterRow
	err := c.Call(ctx, "mrp.workcenter", "search_read", []any{[]any{[]any{"code", "=", code}}},
		map[string]any{"fields": workcenterFields, "order": "id asc", "limit": 2}, &rows)
	if err != nil {
		return Workcenter{}, err
	}
	switch len(rows) {
	case 0:
		return Workcenter{}, &Error{Op: "workcenter by code", Message: fmt.Sprintf("no work center with code %q", code),
			Class: Permanent, Err: ErrNotFound}
	case 1:
		return c.workcenter(rows[0]), nil
	}
	return Workcenter{}, &Error{Op: "workcenter by code",
		Message: fmt.Sprintf("work center code %q matches ids %d and %d (codes are not unique in Odoo)", code, rows[0].ID, rows[1].ID),
		Class:   Permanent, Err: ErrAmbiguous}
}

// WorkcentersByCodes resolves several work center codes in one call. A code
// that matches no work center is absent from found; one that matches
// several is in ambiguous (codes are not unique in Odoo).
func (c *Client) WorkcentersByCodes(ctx context.Context, codes []string) (found map[string]Workcenter, ambiguous []string, err error) {
	found = map[string]Workcenter{}
	if len(codes) == 0 {
		return found, nil, nil
	}
	var rows []workcenterRow
	err = c.Call(ctx, "mrp.workcenter", "search_read", []any{[]any{[]any{"code", "in", codes}}},
		map[string]any{"fields": workcenterFields, "order": "id asc"}, &rows)
	if err != nil {
		return nil, nil, err
	}
	seen := map[string]int{}
	for _, r := range rows {
		code := string(r.Code)
		seen[code]++
		if seen[code] == 1 {
			found[code] = c.workcenter(r)
		} else if seen[code] == 2 {
			delete(found, code)
			ambiguous = append(ambiguous, code)
		}
	}
	return found, ambiguous, nil
}

// ArchivedWorkcenterCodes returns those of codes that only archived work
// centers have: Odoo's search leaves archived records out (active_test),
// so WorkcentersByCodes does not find them, and "no such code" would send
// an admin after the mapping.
func (c *Client) ArchivedWorkcenterCodes(ctx context.Context, codes []string) ([]string, error) {
	if len(codes) == 0 {
		return nil, nil
	}
	var rows []workcenterRow
	err := c.Call(ctx, "mrp.workcenter", "search_read", []any{[]any{[]any{"code", "in", codes}, []any{"active", "=", false}}},
		map[string]any{"fields": []string{"id", "code"}, "order": "id asc", "context": map[string]any{"active_test": false}}, &rows)
	if err != nil {
		return nil, err
	}
	var archived []string
	for _, r := range rows {
		if code := string(r.Code); !slices.Contains(archived, code) {
			archived = append(archived, code)
		}
	}
	return archived, nil
}

// WorkordersInProgress returns the work orders in state "progress" on the
// work center, in WorkordersInProgressOn's order.
func (c *Client) WorkordersInProgress(ctx context.Context, workcenterID int64) ([]Workorder, error) {
	byWC, err := c.WorkordersInProgressOn(ctx, []int64{workcenterID})
	return byWC[workcenterID], err
}

// workedFirst orders each list of several work orders in progress on one
// work center by when work on it last began, latest first: the start of
// its latest productive time line (Odoo's Start opens one, Pause closes
// it, Resume opens another; an order paused stays in progress), or its own
// start when later (one started without a timer) — not a start ahead of
// now, which from 17 on is a planned one (a paused order rescheduled took
// the pieces back: the second attribution probe). An operator who pauses
// an order for a rush order and starts that one works on the second; one
// who forgets the pause too; a break or an Unblock closing the timers
// changes nothing; resuming the first goes back to it (the gaps and
// attribution probes: the earliest started took the rush order's pieces,
// and the paused order took them again whenever no timer ran). One call
// for each work center that has several. A refusal to read time lines
// leaves the latest started first.
func (c *Client) workedFirst(ctx context.Context, byWC map[int64][]Workorder) error {
	now := time.Now()
	for wc, wos := range byWC {
		if len(wos) < 2 {
			continue
		}
		began, open, err := c.workBegan(ctx, wos)
		if err != nil {
			return err
		}
		at := func(wo Workorder) time.Time {
			t := wo.DateStart
			if t.After(now) {
				t = time.Time{} // a planned start ahead (from 17 on): no start of work
			}
			if l := began[wo.ID]; l.After(t) {
				t = l
			}
			return t
		}
		// Odoo keeps seconds: within one, a running timer, then the
		// order created last.
		slices.SortStableFunc(wos, func(a, b Workorder) int {
			if c := at(b).Compare(at(a)); c != 0 {
				return c
			}
			if open[a.ID] != open[b.ID] {
				if open[a.ID] {
					return -1
				}
				return 1
			}
			return cmp.Compare(b.ID, a.ID)
		})
		byWC[wc] = wos
	}
	return nil
}

// workBegan reads, for work orders of one work center, the start of each
// one's latest run of productive time — its latest time line that begins
// work (workStarts: not Odoo's cut of an overrun timer) — and whether one
// of its lines is open.
// The latest lines of the work center's orders alone: an order none of them
// names began work before all of them (lines of another work center's
// orders pushed a resumed order out of a shared window: the second
// attribution probe). A refusal (the bot may not read time lines) gives
// none, said once.
func (c *Client) workBegan(ctx context.Context, wos []Workorder) (began map[int64]time.Time, open map[int64]bool, err error) {
	ids := make([]int64, len(wos))
	for i, wo := range wos {
		ids[i] = wo.ID
	}
	var rows []timeLine
	err = c.Call(ctx, "mrp.workcenter.productivity", "search_read",
		[]any{[]any{[]any{"workorder_id", "in", ids}, []any{"loss_id.loss_type", "in", []any{"productive", "performance"}}}},
		map[string]any{"fields": timeLineFields, "order": "date_start desc, id desc", "limit": 200}, &rows)
	switch {
	case IsPermanent(err) && !IsAuth(err):
		if c.timeLinesRefused.CompareAndSwap(false, true) {
			c.log.Warn("cannot read the work orders' time lines (the bot user needs read access to mrp.workcenter.productivity); of several work orders in progress on one work center, the latest started counts", "err", err)
		}
		return nil, nil, nil
	case err != nil:
		return nil, nil, err
	}
	c.timeLinesRefused.Store(false)
	began, open = map[int64]time.Time{}, map[int64]bool{}
	for _, r := range rows {
		open[r.Workorder.ID] = open[r.Workorder.ID] || time.Time(r.DateEnd).IsZero()
	}
	slices.Reverse(rows)                 // in time order
	for _, l := range workStarts(rows) { // the latest start of each order last
		began[l.Workorder.ID] = time.Time(l.DateStart)
	}
	return began, open, nil
}

// Timeline tells, for times from some point on, which work order of a work
// center was worked on (WorkTimeline).
type Timeline struct {
	began []began // in time order
	wos   map[int64]Workorder
}

// began: work began on order wo at at.
type began struct {
	at time.Time
	wo int64
}

// At returns the order worked on at t — the one work last began on at or
// before t (a resume counts: an order paused for a rush order and resumed
// is worked on again), nil when none was, or when that one was finished
// (or cancelled) before t — and the next order work began on after t that
// was not cancelled since (what was made while none was in progress goes
// to it), and when (zero when none). Work may have begun on a cancelled
// one before that: NextStart.
func (tl Timeline) At(t time.Time) (at, next *Workorder, nextAt time.Time) {
	i, _ := slices.BinarySearchFunc(tl.began, t, func(b began, t time.Time) int {
		if b.at.After(t) {
			return 1
		}
		return -1 // at or before t: i ends past the last of them
	})
	var atID int64
	if i > 0 {
		atID = tl.began[i-1].wo
		if wo, ok := tl.wos[atID]; ok && !(wo.Ended() && !wo.DateFinished.IsZero() && wo.DateFinished.Before(t.Truncate(time.Second))) {
			at = &wo
		}
	}
	for _, b := range tl.began[i:] {
		if b.wo == atID {
			continue
		}
		if wo, ok := tl.wos[b.wo]; ok && wo.State != "cancel" {
			return at, &wo, b.at
		}
	}
	return at, nil, time.Time{}
}

// NextStart is when work next began after t on an order other than the one
// worked on at t (At), cancelled since or not: where t's stretch ends (zero
// when none).
func (tl Timeline) NextStart(t time.Time) time.Time {
	i, _ := slices.BinarySearchFunc(tl.began, t, func(b began, t time.Time) int {
		if b.at.After(t) {
			return 1
		}
		return -1
	})
	var atID int64
	if i > 0 {
		atID = tl.began[i-1].wo
	}
	for _, b := range tl.began[i:] {
		if _, ok := tl.wos[b.wo]; ok && b.wo != atID {
			return b.at
		}
	}
	return time.Time{}
}

// WorkTimeline reads which work orders of the work center were worked on
// from since on: from their operators' time lines (Odoo's Start opens a
// productive line, Pause closes it, Resume opens another) when the bot may
// read them, and from its own start (date_start, Odoo's first start: a
// resume leaves it) for an order that has none — all of them when the bot
// may not read time lines. The orders are those in progress or finished at
// or after since, and those cancelled that a time line names: Odoo's
// action_cancel closes an order's timers and keeps its lines, so it was
// worked on until its last line ended (its DateFinished here; zero while
// one is open). Other cancelled ones are left out (one may never have been
// started, and from 17 on date_start is also the planned start); before,
// all were, and a cancelled order's pieces and scrap not yet in Odoo went
// to the next order started, another product's maybe (the operators
// probe).
//
// The part of a timer Odoo cuts off as overrun when it closes it is no
// start of work (workStarts; the re-review: it made a paused order the one
// worked on from the cut on).
//
// Three calls and more: the orders; the time lines begun by since (the
// last few) and since then, 2,000 a page; the orders they name besides.
func (c *Client) WorkTimeline(ctx context.Context, workcenterID int64, since time.Time) (Timeline, error) {
	ts := since.UTC().Format(time.DateTime)
	tl := Timeline{wos: map[int64]Workorder{}}
	var rows []workorderRow
	err := c.readWorkorders(ctx, "search_read",
		[]any{[]any{[]any{"workcenter_id", "=", workcenterID}, "|", []any{"state", "=", "progress"},
			"&", []any{"state", "=", "done"}, []any{"date_finished", ">=", ts}}},
		map[string]any{"order": "date_start asc, id asc"}, true, &rows)
	if err != nil {
		return Timeline{}, err
	}
	for _, r := range rows {
		tl.wos[r.ID] = r.workorder()
	}
	lines := func(op, order string, limit, offset int) ([]timeLine, error) {
		var rows []timeLine
		err := c.Call(ctx, "mrp.workcenter.productivity", "search_read",
			[]any{[]any{[]any{"workcenter_id", "=", workcenterID}, []any{"workorder_id", "!=", false},
				[]any{"loss_id.loss_type", "in", []any{"productive", "performance"}}, []any{"date_start", op, ts}}},
			map[string]any{"fields": timeLineFields, "order": order, "limit": limit, "offset": offset}, &rows)
		return rows, err
	}
	// The last few begun by since (newest first: turned), so that the one
	// a cut continues is among them; then the rest, a page at a time.
	all, err := lines("<=", "date_start desc, id desc", 8, 0)
	slices.Reverse(all)
	for off := 0; err == nil; off += timelinePage {
		var page []timeLine
		if page, err = lines(">", "date_start asc, id asc", timelinePage, off); err == nil {
			all = append(all, page...)
		}
		if len(page) < timelinePage {
			break
		}
	}
	if refused, err := c.timeLinesRefusal(err); err != nil {
		return Timeline{}, err
	} else if refused {
		all = nil
	}
	timed := map[int64]bool{} // (a cut's order has the line it was cut from)
	var missing []int64
	for _, l := range workStarts(all) {
		wo := l.Workorder.ID
		timed[wo] = true
		tl.began = append(tl.began, began{at: time.Time(l.DateStart), wo: wo})
		if _, ok := tl.wos[wo]; !ok && !slices.Contains(missing, wo) {
			missing = append(missing, wo)
		}
	}
	if len(missing) > 0 { // finished before since, or cancelled
		var more []workorderRow
		if err := c.readWorkorders(ctx, "read", []any{missing}, map[string]any{}, true, &more); err != nil {
			return Timeline{}, err
		}
		c.noteWorkorders(more)
		for _, r := range more {
			tl.wos[r.ID] = r.workorder()
		}
	}
	for _, wo := range tl.wos {
		if !timed[wo.ID] && !wo.DateStart.IsZero() {
			tl.began = append(tl.began, began{at: wo.DateStart, wo: wo.ID}) // no timer: its start
		}
	}
	ended, open := map[int64]time.Time{}, map[int64]bool{}
	for _, l := range all {
		wo, end := l.Workorder.ID, time.Time(l.DateEnd)
		if end.IsZero() {
			open[wo] = true
		} else if end.After(ended[wo]) {
			ended[wo] = end
		}
	}
	for id, wo := range tl.wos {
		switch {
		case wo.State != "cancel":
		case !timed[id]:
			delete(tl.wos, id)
		default:
			wo.DateFinished = ended[id]
			if open[id] {
				wo.DateFinished = time.Time{}
			}
			tl.wos[id] = wo
		}
	}
	slices.SortStableFunc(tl.began, func(a, b began) int { return a.at.Compare(b.at) })
	return tl, nil
}

// OthersWorked tells, for each work center of since, whether an order
// other than sole[wc] — the only one in progress there — was worked on or
// in play from since[wc] on: finished at or after it, or named by an
// operator's productive time line open then or begun since. false means
// WorkTimeline would show only sole[wc] from since[wc] on, so a backlog
// made since then is its own without reading the timeline (three calls
// and more per work center). Two calls (and more: 2,000 lines a page) for
// every work center together. When the bot may not read time lines, the
// orders alone answer, as in WorkTimeline.
func (c *Client) OthersWorked(ctx context.Context, sole map[int64]int64, since map[int64]time.Time) (map[int64]bool, error) {
	out := map[int64]bool{}
	if len(since) == 0 {
		return out, nil
	}
	wcs := make([]int64, 0, len(since))
	var first time.Time
	for wc, t := range since {
		wcs = append(wcs, wc)
		if first.IsZero() || t.Before(first) {
			first = t
		}
	}
	slices.Sort(wcs)
	ts := first.UTC().Format(time.DateTime)
	other := func(wc, wo int64, t time.Time) {
		if from, ok := since[wc]; ok && wo != sole[wc] && (t.IsZero() || !t.Before(from.Truncate(time.Second))) {
			out[wc] = true
		}
	}
	var done []workorderRow
	if err := c.readWorkorders(ctx, "search_read",
		[]any{[]any{[]any{"workcenter_id", "in", wcs}, []any{"state", "=", "done"}, []any{"date_finished", ">=", ts}}},
		map[string]any{"order": "id asc"}, true, &done); err != nil {
		return nil, err
	}
	for _, r := range done {
		wo := r.workorder()
		other(wo.WorkcenterID, wo.ID, wo.DateFinished)
	}
	type openLine struct {
		Workcenter many2one `json:"workcenter_id"`
		Workorder  many2one `json:"workorder_id"`
		DateEnd    odooTime `json:"date_end"`
	}
	var err error
	for off := 0; err == nil; off += timelinePage {
		var page []openLine
		err = c.Call(ctx, "mrp.workcenter.productivity", "search_read",
			[]any{[]any{[]any{"workcenter_id", "in", wcs}, []any{"workorder_id", "!=", false},
				[]any{"loss_id.loss_type", "in", []any{"productive", "performance"}},
				"|", []any{"date_end", "=", false}, []any{"date_end", ">=", ts}}},
			map[string]any{"fields": []any{"workcenter_id", "workorder_id", "date_end"}, "order": "id asc",
				"limit": timelinePage, "offset": off}, &page)
		for _, l := range page {
			other(l.Workcenter.ID, l.Workorder.ID, time.Time(l.DateEnd))
		}
		if len(page) < timelinePage {
			break
		}
	}
	if _, err := c.timeLinesRefusal(err); err != nil {
		return nil, err
	}
	return out, nil
}

// timeLinesRefusal sorts the error of a read of time lines: refused for
// good (not the key: the bot may not read them) is reported as refused,
// logged once a client, and the orders alone tell; any other is returned.
func (c *Client) timeLinesRefusal(err error) (refused bool, _ error) {
	switch {
	case IsPermanent(err) && !IsAuth(err):
		if c.timeLinesRefused.CompareAndSwap(false, true) {
			c.log.Warn("cannot read the work orders' time lines (the bot user needs read access to mrp.workcenter.productivity); which order a backlog was made on is told by the orders' first starts", "err", err)
		}
		return true, nil
	case err != nil:
		return false, err
	}
	return false, nil
}

// timeLine is an operator's time line (mrp.workcenter.productivity) as
// workBegan and WorkTimeline read it.
type timeLine struct {
	Workorder many2one `json:"workorder_id"`
	User      many2one `json:"user_id"`
	LossType  text     `json:"loss_type"`
	DateStart odooTime `json:"date_start"`
	DateEnd   odooTime `json:"date_end"`
}

var timeLineFields = []any{"workorder_id", "user_id", "loss_type", "date_start", "date_end"}

// workStarts returns, of lines in time order, those that begin work on
// their order: not the part of a timer Odoo cut off as overrun when it
// closed it (_close, on an order past its expected duration: the overrun a
// Reduced Speed line of the same user from where the first part ends; the
// Odoo fidelity probe: a paused order taken for the one worked on, from
// the cut on). A second operator's timer is no such cut: one who joins an
// order begins work on it (the review).
func workStarts(lines []timeLine) []timeLine {
	type timer struct {
		wo, user int64
		end      time.Time
	}
	ended := map[timer]bool{}
	var out []timeLine
	for _, l := range lines {
		cut := l.LossType == "performance" && ended[timer{l.Workorder.ID, l.User.ID, time.Time(l.DateStart)}]
		if end := time.Time(l.DateEnd); !end.IsZero() {
			ended[timer{l.Workorder.ID, l.User.ID, end}] = true
		}
		if !cut {
			out = append(out, l)
		}
	}
	return out
}

// timelinePage is how many time lines WorkTimeline reads a call.
const timelinePage = 2000

// WorkordersInProgressOn returns, in one call, the work orders in state
// "progress" on each of the work centers; a list of several has the one
// work last began on first (workedFirst: one more call).
// Work centers without one are absent from the map. The forwarder uses it
// so that looking up 100 machines costs one call, not 100.
func (c *Client) WorkordersInProgressOn(ctx context.Context, workcenterIDs []int64) (map[int64][]Workorder, error) {
	out := map[int64][]Workorder{}
	if len(workcenterIDs) == 0 {
		return out, nil
	}
	var rows []workorderRow
	err := c.readWorkorders(ctx, "search_read",
		[]any{[]any{[]any{"workcenter_id", "in", workcenterIDs}, []any{"state", "=", "progress"}}},
		// Explicit: the default order differs between versions.
		map[string]any{"order": "date_start asc, id asc"}, false, &rows)
	if err != nil {
		return nil, err
	}
	c.noteWorkorders(rows)
	for _, r := range rows {
		wo := r.workorder()
		out[wo.WorkcenterID] = append(out[wo.WorkcenterID], wo)
	}
	return out, c.workedFirst(ctx, out)
}

// CurrentWorkorder returns the work order in progress on the work center.
// When several are in progress it picks the first of WorkordersInProgress
// (the one work last began on) and logs the others; found is false when
// none is.
func (c *Client) CurrentWorkorder(ctx context.Context, workcenterID int64) (wo Workorder, found bool, err error) {
	wos, err := c.WorkordersInProgress(ctx, workcenterID)
	if err != nil || len(wos) == 0 {
		return Workorder{}, false, err
	}
	if len(wos) > 1 {
		others := make([]int64, 0, len(wos)-1)
		for _, w := range wos[1:] {
			others = append(others, w.ID)
		}
		c.log.Warn("several work orders in progress; using the one work last began on (its operator's timer, else its start)", "workcenter_id", workcenterID,
			"workorder_id", wos[0].ID, "others", others)
	}
	return wos[0], true, nil
}

// ReadWorkorder reads one work order's state and quantities.
func (c *Client) ReadWorkorder(ctx context.Context, id int64) (Workorder, error) {
	var rows []workorderRow
	if err := c.readWorkorders(ctx, "read", []any{[]int64{id}}, map[string]any{}, false, &rows); err != nil {
		return Workorder{}, err
	}
	c.noteWorkorders(rows)
	if len(rows) != 1 {
		return Workorder{}, &Error{Op: "mrp.workorder.read", Message: fmt.Sprintf("work order %d not found", id),
			Class: Permanent, Err: ErrNotFound}
	}
	return rows[0].workorder(), nil
}

// ProducedField is the work-order field that carries the produced quantity
// on the server connected to: qty_producing on 17/18, qty_produced on 19+.
func (c *Client) ProducedField() string {
	if c.Major() >= 19 {
		return "qty_produced"
	}
	return "qty_producing"
}

// ProducedQty returns the quantity the agent maintains on wo: qty_producing
// on 17/18, qty_produced on 19+.
func (c *Client) ProducedQty(wo Workorder) float64 {
	if c.Major() >= 19 {
		return wo.QtyProduced
	}
	return wo.QtyProducing
}

// StartingQty is the quantity to count on from when plantedge first
// attributes counts to wo: ProducedQty, except on 17/18 when qty_producing
// holds what starting the work order put there. button_start sets an order's
// qty_producing, while nothing is recorded on it, to the whole remaining
// quantity (mrp_workorder.py: "elif wo.qty_producing == 0: wo.qty_producing
// = wo.qty_remaining"), before a single piece is made; counting on from it
// would book the order as made the moment the first piece is counted. A
// value that differs from the remaining quantity was entered by someone (an
// operator, plantedge before its state was lost) and is counted on.
// startDefault reports the first case.
func (c *Client) StartingQty(wo Workorder) (qty float64, startDefault bool) {
	if c.Major() >= 19 {
		return wo.QtyProduced, false
	}
	if wo.QtyProducing > 0 && c.RoundQty(wo.QtyProducing) == c.RoundQty(wo.QtyRemaining) {
		return 0, true
	}
	return wo.QtyProducing, false
}

// SetProducedQty writes the absolute produced quantity (rounded to
// QtyDigits decimals, as Odoo stores it): qty_producing on 17/18 (MO-wide; Odoo ignores 0), qty_produced
// on 19+ (Odoo refuses negatives and done/cancelled work orders). Repeating
// it is harmless.
func (c *Client) SetProducedQty(ctx context.Context, workorderID int64, qty float64) error {
	if err := c.ensureConnected(ctx); err != nil { // the field name depends on the version
		return err
	}
	return c.callTrue(ctx, "mrp.workorder", "write", []any{[]int64{workorderID},
		map[string]any{c.ProducedField(): c.RoundQty(qty)}}, "the quantity is not known to be written")
}

// callTrue calls a method that returns True or raises (write, do_scrap):
// anything else (a proxy's JSON, a JSON-2 200 of another shape, null) is
// not Odoo's answer, and says nothing of what was done: a transient
// "decode" error whose message ends with unknown.
func (c *Client) callTrue(ctx context.Context, model, method string, args []any, unknown string) error {
	var ok bool
	if err := c.Call(ctx, model, method, args, nil, &ok); err != nil {
		return err
	}
	if !ok {
		return notOdoos(model+"."+method, "the answer to "+method+" is not Odoo's true: "+unknown, nil)
	}
	return nil
}

// Round2 rounds like Odoo's default quantity precision (2 decimals, half
// away from zero: float_round's HALF-UP; Client.RoundQty rounds to the
// database's own) the decimal v stands for
// (decimal.Of): the shortest decimal of up to 15 significant digits within
// 1.5 ulps of v — 29*0.005 is the float64 just below 0.145, and 1.005 is
// 1.00499999999999989… in binary: booked 0.15 and 1.01 —, or, for the
// float noise of sums stored by earlier versions (11 steps of 0.005 added
// up to 0.05499999999999999), v to 12 significant digits (4 decimals from
// 100 million up), as those versions read it. 103,827 steps of 0.45359237
// are 47095.13499999 and book 47095.13, as Odoo's float_round does (its
// tolerance, 2^-50 of the value, is far below the 13th digit); a cut of
// every value to 12 digits first made that 47095.135, booked 47095.14.
func Round2(v float64) float64 { return decimal.Round(v, 2) }

func checkXMLID(id string) error {
	mod, name, ok := strings.Cut(id, ".")
	if !ok || mod == "" || name == "" || strings.ContainsAny(id, " ,\n") {
		return fmt.Errorf("external id %q: want module.name", id)
	}
	return nil
}

func dbid(id int64) string {
	if id == 0 {
		return ""
	}
	return strconv.FormatInt(id, 10)
}

func wireTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(TimeLayout)
}

var downtimeFields = []string{"id", "workcenter_id/.id", "workorder_id/.id", "loss_id/.id", "date_start", "date_end", "description"}

// UpsertDowntime creates or updates the productivity line with d.XMLID (one
// load() call) and returns its database id.
func (c *Client) UpsertDowntime(ctx context.Context, d Downtime) (int64, error) {
	ids, err := c.UpsertDowntimes(ctx, []Downtime{d})
	if err != nil {
		return 0, err
	}
	return ids[0], nil
}

// UpsertDowntimes writes several lines in one load() call (one transaction:
// all or nothing) and returns their ids in order.
func (c *Client) UpsertDowntimes(ctx context.Context, ds []Downtime) ([]int64, error) {
	if len(ds) == 0 {
		return nil, nil
	}
	rows := make([][]string, len(ds))
	wcs, wos := make([]int64, len(ds)), make([]int64, len(ds))
	for i, d := range ds {
		if err := checkXMLID(d.XMLID); err != nil {
			return nil, &Error{Op: "upsert downtime", Message: err.Error(), Class: Permanent}
		}
		if d.Start.IsZero() {
			return nil, &Error{Op: "upsert downtime", Message: fmt.Sprintf("%s: start time is required", d.XMLID), Class: Permanent}
		}
		rows[i] = []string{d.XMLID, dbid(d.WorkcenterID), dbid(d.WorkorderID), dbid(d.LossID),
			wireTime(d.Start), wireTime(d.End), d.Description}
		wcs[i], wos[i] = d.WorkcenterID, d.WorkorderID
	}
	// Each line in its work center's company (company.go). A refusal for
	// incompatible companies may be a work center moved to another company
	// since its company was read: read again, and load again once if it was.
	byWC, err := c.workcenterCompanies(ctx, wcs, false)
	if err != nil {
		return nil, err
	}
	ids, err := c.loadDowntimes(ctx, rows, wcs, wos, byWC)
	if !isIncompatibleCompanies(err) {
		return ids, err
	}
	again, rerr := c.workcenterCompanies(ctx, wcs, true)
	switch {
	case rerr != nil:
		return nil, rerr
	case maps.Equal(again, byWC):
		return nil, err
	}
	return c.loadDowntimes(ctx, rows, wcs, wos, again)
}

// loadDowntimes loads the rows of UpsertDowntimes, each in the company of
// its work center (wcs[i]) — of its work order (wos[i]) when the work
// center is shared by companies (none of its own): Odoo checks the line's
// company against both (the review: a shared work center's lines of another
// company's order were refused).
func (c *Client) loadDowntimes(ctx context.Context, rows [][]string, wcs, wos []int64, byWC map[int64]int64) ([]int64, error) {
	company := make([]int64, len(rows))
	var ask []int64
	for i, wc := range wcs {
		if company[i] = byWC[wc]; company[i] == 0 && wos[i] != 0 {
			ask = append(ask, wos[i])
		}
	}
	if len(ask) > 0 {
		byWO, err := c.workorderCompanies(ctx, ask)
		if err != nil {
			return nil, err
		}
		for i := range company {
			if company[i] == 0 {
				company[i] = byWO[wos[i]]
			}
		}
	}
	// (A load mixing rows of no company with others goes without the
	// column, one transaction: withCompanies.)
	fields, rows := withCompanies(downtimeFields, rows, company)
	return c.load(ctx, "mrp.workcenter.productivity", fields, rows)
}

// unfoundHint follows Odoo's "No matching record found for database id"
// in a load's refusal: the id is one the agent read from Odoo, so the record
// was there; Odoo's import looks it up with a search (ir_fields.py
// db_id_for), which leaves out what was archived since (a product, a work
// center) and what the bot user may no longer see.
const unfoundHint = " (a record the agent read from Odoo before, which Odoo's search no longer finds: archived, deleted, or in a company the bot user may not use since)"

// load calls Model.load and turns its messages into an error.
func (c *Client) load(ctx context.Context, model string, fields []string, rows [][]string) ([]int64, error) {
	var res struct {
		IDs      json.RawMessage `json:"ids"`
		Messages []struct {
			Type    string `json:"type"`
			Message string `json:"message"`
			Record  int    `json:"record"`
			Field   string `json:"field"`
		} `json:"messages"`
	}
	// load reads date-time cells in the context's time zone, else the user's
	// (ir_fields.py _input_tz), unlike create and write, which take UTC. The
	// cells are UTC: say so, or a bot user with a time zone set shifts every
	// line by its offset.
	kw := map[string]any{"context": map[string]any{"tz": "UTC"}}
	if err := c.Call(ctx, model, "load", []any{fields, rows}, kw, &res); err != nil {
		return nil, err
	}
	var ids []int64
	if !loadAnswer(res.IDs, res.Messages == nil, &ids) {
		// Odoo's load answers {"ids": [...] or false, "messages": [...]}:
		// anything else (a proxy's JSON, the request echoed back) is not
		// a refusal of the rows, and must not dead-letter them.
		return nil, notOdoos(model+".load", "not Odoo's answer to a load (no ids, or no messages)", nil)
	}
	var msgs, raw, unfound []string
	for _, m := range res.Messages {
		if m.Type == "error" {
			msg := fmt.Sprintf("row %d %s: %s", m.Record, m.Field, m.Message)
			raw = append(raw, m.Message)
			if strings.HasPrefix(m.Message, "No matching record found for database id ") {
				unfound = append(unfound, m.Field)
				msg += unfoundHint
			}
			msgs = append(msgs, msg)
		}
	}
	if slices.ContainsFunc(ids, func(id int64) bool { return id <= 0 }) {
		// Odoo's ids are positive: not its answer (nothing to book a line
		// as). Retried, like every answer that does not read.
		return nil, notOdoos(model+".load", c.clean(fmt.Sprintf("a load answered with ids %s: not Odoo's answer", res.IDs), maxMessage), nil)
	}
	if len(msgs) > 0 || len(ids) != len(rows) {
		if len(msgs) == 0 {
			msgs = append(msgs, fmt.Sprintf("got %d ids for %d rows", len(ids), len(rows)))
		}
		e := loadFailure(model+".load", c.clean(strings.Join(msgs, "; "), maxMessage), raw)
		e.unfound = unfound
		return nil, e
	}
	return ids, nil
}

// loadAnswer decodes a load's ids into ids: a list, or false when Odoo
// refused the rows; false when the answer is not Odoo's (noMessages: it
// had no list of messages).
func loadAnswer(raw json.RawMessage, noMessages bool, ids *[]int64) bool {
	if noMessages {
		return false
	}
	if string(bytes.TrimSpace(raw)) == "false" {
		return true
	}
	return json.Unmarshal(raw, ids) == nil && *ids != nil
}

// LossID resolves a loss reason (mrp.workcenter.productivity.loss) by
// external id ("mrp.block_reason1") or by exact name ("Equipment Failure").
func (c *Client) LossID(ctx context.Context, nameOrXMLID string) (int64, error) {
	const lossModel = "mrp.workcenter.productivity.loss"
	if mod, name, ok := strings.Cut(nameOrXMLID, "."); ok && checkXMLID(nameOrXMLID) == nil {
		model, id, found, err := c.ExternalID(ctx, mod, name)
		if err != nil {
			return 0, err
		}
		if found && model == lossModel {
			return id, nil
		}
	}
	var rows []struct {
		ID int64 `json:"id"`
	}
	if err := c.Call(ctx, lossModel, "search_read", []any{[]any{[]any{"name", "=", nameOrXMLID}}},
		map[string]any{"fields": []string{"id"}, "order": "id asc", "limit": 2}, &rows); err != nil {
		return 0, err
	}
	switch len(rows) {
	case 0:
		return 0, &Error{Op: "loss id", Message: fmt.Sprintf("no loss reason %q (names are matched as Odoo has them in English; its external id, such as mrp.block_reason1, matches in any language)", nameOrXMLID), Class: Permanent, Err: ErrNotFound}
	case 1:
		return rows[0].ID, nil
	}
	return 0, &Error{Op: "loss id", Message: fmt.Sprintf("loss reason %q matches several records", nameOrXMLID),
		Class: Permanent, Err: ErrAmbiguous}
}

// ExternalID looks up module.name in ir.model.data.
func (c *Client) ExternalID(ctx context.Context, module, name string) (model string, resID int64, found bool, err error) {
	var rows []struct {
		Model text  `json:"model"`
		ResID int64 `json:"res_id"`
	}
	err = c.Call(ctx, "ir.model.data", "search_read",
		[]any{[]any{[]any{"module", "=", module}, []any{"name", "=", name}}},
		map[string]any{"fields": []string{"model", "res_id"}, "limit": 1}, &rows)
	if err != nil || len(rows) == 0 {
		return "", 0, false, err
	}
	if err := c.resID(module+"."+name, rows[0].ResID); err != nil {
		return "", 0, false, err
	}
	return string(rows[0].Model), rows[0].ResID, true, nil
}

// resID checks the res_id of the ir.model.data row of the external id
// xmlid: Odoo's is the database id of the record the id names, a positive
// integer. 0, negative or missing (read as 0) is not Odoo's answer — a
// proxy's, a gateway's — and would read as a record of that id: a loss
// reason named by its external id resolved to id 0 (its lines refused for
// good, dead-lettered), a line or scrap looked up under id 0 and taken as
// missing from Odoo. Transient, as the other answers that are not Odoo's
// (notOdoos).
func (c *Client) resID(xmlid string, id int64) error {
	if id > 0 {
		return nil
	}
	return notOdoos("ir.model.data.search_read", c.clean(fmt.Sprintf("an external id (%s) whose res_id is %d, not a record's positive id (0 also when it has none): not Odoo's answer", xmlid, id), maxMessage), nil)
}

// ExternalIDNames returns the names of module's external ids that match
// the SQL LIKE pattern (% and _ are wildcards), the newest first, at most
// limit.
func (c *Client) ExternalIDNames(ctx context.Context, module, pattern string, limit int) ([]string, error) {
	var rows []struct {
		Name text `json:"name"`
	}
	err := c.Call(ctx, "ir.model.data", "search_read",
		[]any{[]any{[]any{"module", "=", module}, []any{"name", "=like", pattern}}},
		map[string]any{"fields": []string{"name"}, "order": "id desc", "limit": limit}, &rows)
	names := make([]string, 0, len(rows))
	for _, r := range rows {
		names = append(names, string(r.Name))
	}
	return names, err
}

// DowntimeLine is what Odoo has of a downtime line.
type DowntimeLine struct {
	Found        bool // Odoo has the line with that external id
	Closed       bool // it has an end
	WorkcenterID int64
	WorkorderID  int64
}

// DowntimeLine reads the downtime line with this external id.
func (c *Client) DowntimeLine(ctx context.Context, xmlid string) (DowntimeLine, error) {
	mod, name, _ := strings.Cut(xmlid, ".")
	model, id, found, err := c.ExternalID(ctx, mod, name)
	if err != nil || !found || model != "mrp.workcenter.productivity" {
		return DowntimeLine{}, err
	}
	var rows []struct {
		End        text     `json:"date_end"`
		Workcenter many2one `json:"workcenter_id"`
		Workorder  many2one `json:"workorder_id"`
	}
	if err := c.Call(ctx, "mrp.workcenter.productivity", "search_read", []any{[]any{[]any{"id", "=", id}}},
		map[string]any{"fields": []string{"date_end", "workcenter_id", "workorder_id"}}, &rows); err != nil || len(rows) != 1 {
		return DowntimeLine{}, err
	}
	return DowntimeLine{Found: true, Closed: rows[0].End != "", WorkcenterID: rows[0].Workcenter.ID, WorkorderID: rows[0].Workorder.ID}, nil
}

// BookedDowntime is a downtime line as Odoo has it, found by its external
// id: its database id, and what a load of it would send.
type BookedDowntime struct {
	ID int64
	Downtime
}

// Same reports whether Odoo has d as b is: the same work center, work
// order, loss reason, description, start and end (to the second, as Odoo
// keeps them) — a load of d would change nothing.
func (b BookedDowntime) Same(d Downtime) bool {
	sec := func(t time.Time) time.Time {
		if t.IsZero() {
			return t
		}
		return t.UTC().Truncate(time.Second)
	}
	return b.WorkcenterID == d.WorkcenterID && b.WorkorderID == d.WorkorderID && b.LossID == d.LossID &&
		b.Description == d.Description && sec(b.Start).Equal(sec(d.Start)) && sec(b.End).Equal(sec(d.End))
}

// DowntimesByXMLID reads the downtime lines with these external ids, by
// external id: ExternalIDs' calls and one for the lines a page. An id Odoo
// has no line for is missing from the result.
func (c *Client) DowntimesByXMLID(ctx context.Context, xmlids []string) (map[string]BookedDowntime, error) {
	refs, err := c.ExternalIDs(ctx, xmlids)
	if err != nil {
		return nil, err
	}
	byID := map[int64]string{}
	ids := make([]int64, 0, len(refs))
	for x, r := range refs {
		if r.Model == "mrp.workcenter.productivity" {
			byID[r.ResID] = x
			ids = append(ids, r.ResID)
		}
	}
	slices.Sort(ids)
	out := map[string]BookedDowntime{}
	for len(ids) > 0 {
		page := ids[:min(len(ids), 500)]
		ids = ids[len(page):]
		var rows []struct {
			ID          int64    `json:"id"`
			Workcenter  many2one `json:"workcenter_id"`
			Workorder   many2one `json:"workorder_id"`
			Loss        many2one `json:"loss_id"`
			Start       odooTime `json:"date_start"`
			End         odooTime `json:"date_end"`
			Description text     `json:"description"`
		}
		if err := c.Call(ctx, "mrp.workcenter.productivity", "search_read", []any{[]any{[]any{"id", "in", page}}},
			map[string]any{"fields": []string{"workcenter_id", "workorder_id", "loss_id", "date_start", "date_end", "description"}}, &rows); err != nil {
			return nil, err
		}
		for _, r := range rows {
			x, ok := byID[r.ID]
			if !ok {
				continue
			}
			out[x] = BookedDowntime{ID: r.ID, Downtime: Downtime{XMLID: x, WorkcenterID: r.Workcenter.ID, WorkorderID: r.Workorder.ID,
				LossID: r.Loss.ID, Start: time.Time(r.Start), End: time.Time(r.End), Description: string(r.Description)}}
		}
	}
	return out, nil
}

// OpenDowntimeLines says which of the downtime lines with these database
// ids Odoo has open (no end), 500 at a time.
func (c *Client) OpenDowntimeLines(ctx context.Context, ids []int64) (map[int64]bool, error) {
	out := map[int64]bool{}
	for len(ids) > 0 {
		page := ids[:min(len(ids), 500)]
		ids = ids[len(page):]
		var rows []struct {
			ID int64 `json:"id"`
		}
		if err := c.Call(ctx, "mrp.workcenter.productivity", "search_read",
			[]any{[]any{[]any{"id", "in", page}, []any{"date_end", "=", false}}},
			map[string]any{"fields": []string{"id"}}, &rows); err != nil {
			return nil, err
		}
		for _, r := range rows {
			out[r.ID] = true
		}
	}
	return out, nil
}

// OpenLine is a downtime line open in Odoo (no end) that carries an
// external id of module.
type OpenLine struct {
	ID    int64
	Name  string // its external id's name, without the module
	Start time.Time
}

// OpenLinesOf returns the lines Odoo has open (no end) whose external ids
// are module's: the open lines first (an open one is a stop going on: a
// few, however many lines the site has booked), then their external ids.
// Two calls. The operators' open timers are read too, and left out by
// the second call (they carry no external id of module).
func (c *Client) OpenLinesOf(ctx context.Context, module string) ([]OpenLine, error) {
	var rows []struct {
		ID    int64    `json:"id"`
		Start odooTime `json:"date_start"`
	}
	if err := c.Call(ctx, "mrp.workcenter.productivity", "search_read",
		[]any{[]any{[]any{"date_end", "=", false}}},
		map[string]any{"fields": []string{"id", "date_start"}, "order": "id asc"}, &rows); err != nil || len(rows) == 0 {
		return nil, err
	}
	start := map[int64]time.Time{}
	ids := make([]int64, 0, len(rows))
	for _, r := range rows {
		start[r.ID] = time.Time(r.Start)
		ids = append(ids, r.ID)
	}
	var refs []struct {
		Name  text  `json:"name"`
		ResID int64 `json:"res_id"`
	}
	if err := c.Call(ctx, "ir.model.data", "search_read",
		[]any{[]any{[]any{"module", "=", module}, []any{"model", "=", "mrp.workcenter.productivity"}, []any{"res_id", "in", ids}}},
		map[string]any{"fields": []string{"name", "res_id"}, "order": "id asc"}, &refs); err != nil {
		return nil, err
	}
	out := make([]OpenLine, 0, len(refs))
	for _, r := range refs {
		if err := c.resID(module+"."+string(r.Name), r.ResID); err != nil {
			return nil, err
		}
		if t, ok := start[r.ResID]; ok {
			out = append(out, OpenLine{ID: r.ResID, Name: string(r.Name), Start: t})
		}
	}
	return out, nil
}

// CloseDowntimeLine sets the end of the downtime line with database id id,
// if it is still open and began at start (to the second): false when Odoo
// has no such line open (closed since, deleted, or another line by that
// id). One read and one write.
func (c *Client) CloseDowntimeLine(ctx context.Context, id int64, start, end time.Time) (bool, error) {
	var rows []struct {
		Start odooTime `json:"date_start"`
		End   text     `json:"date_end"`
	}
	if err := c.Call(ctx, "mrp.workcenter.productivity", "search_read", []any{[]any{[]any{"id", "=", id}}},
		map[string]any{"fields": []string{"date_start", "date_end"}}, &rows); err != nil {
		return false, err
	}
	if len(rows) != 1 || rows[0].End != "" || !time.Time(rows[0].Start).Equal(start.UTC().Truncate(time.Second)) {
		return false, nil
	}
	if err := c.callTrue(ctx, "mrp.workcenter.productivity", "write", []any{[]int64{id}, map[string]any{"date_end": wireTime(end)}},
		"the line is not known to be closed"); err != nil {
		return false, err
	}
	return true, nil
}

// ExternalRef is the record an external id names.
type ExternalRef struct {
	Model string
	ResID int64
}

// ExternalIDs looks up external ids ("module.name"), 500 at a time, one
// call per module of a page: the record of each that Odoo has. One it
// lacks (never made, or its record deleted: Odoo deletes the id with the
// record; a database restored from an older backup) is missing from the
// result. A page something in front of Odoo refuses as too large (a 413:
// 500 ids are about 22 KB) is looked up in halves, and the pages after it
// are of the size that passed: behind a proxy taking 16 KiB, a rebook of
// 600 bookings failed at its look-up every time, where the loads split.
func (c *Client) ExternalIDs(ctx context.Context, xmlids []string) (map[string]ExternalRef, error) {
	out := map[string]ExternalRef{}
	size := 500
	for len(xmlids) > 0 {
		page := xmlids[:min(len(xmlids), size)]
		err := c.externalIDsPage(ctx, page, out)
		if TooLarge(err) && len(page) > 1 {
			size = len(page) / 2
			continue
		}
		if err != nil {
			return nil, err
		}
		xmlids = xmlids[len(page):]
	}
	return out, nil
}

// externalIDsPage is ExternalIDs of a page, into out.
func (c *Client) externalIDsPage(ctx context.Context, page []string, out map[string]ExternalRef) error {
	byMod := map[string][]string{}
	var mods []string
	for _, x := range page {
		mod, name, _ := strings.Cut(x, ".")
		if _, ok := byMod[mod]; !ok {
			mods = append(mods, mod)
		}
		byMod[mod] = append(byMod[mod], name)
	}
	for _, mod := range mods {
		var rows []struct {
			Name  text  `json:"name"`
			Model text  `json:"model"`
			ResID int64 `json:"res_id"`
		}
		if err := c.Call(ctx, "ir.model.data", "search_read",
			[]any{[]any{[]any{"module", "=", mod}, []any{"name", "in", byMod[mod]}}},
			map[string]any{"fields": []string{"name", "model", "res_id"}}, &rows); err != nil {
			return err
		}
		for _, r := range rows {
			if err := c.resID(mod+"."+string(r.Name), r.ResID); err != nil {
				return err
			}
			out[mod+"."+string(r.Name)] = ExternalRef{Model: string(r.Model), ResID: r.ResID}
		}
	}
	return nil
}

// ScrapBooking is a stock.scrap as Odoo holds it: its state ("draft",
// "done"; "" when Odoo has none) and its quantity as stored — not rounded
// anew to the decimals Odoo keeps now (a Float is read as its column
// holds it), so a scrap validated at 2 decimals reads 1.6 after 0 were set,
// what its stock move moved.
type ScrapBooking struct {
	State string
	Qty   float64
}

// ScrapStates reads the states of the scraps with these external ids, 500
// at a time: a call per module of the ids, and one for the scraps. An id
// Odoo has no scrap for is missing from the result (deleted).
func (c *Client) ScrapStates(ctx context.Context, xmlids []string) (map[string]string, error) {
	bs, err := c.ScrapBookings(ctx, xmlids)
	if err != nil {
		return nil, err
	}
	out := make(map[string]string, len(bs))
	for x, b := range bs {
		out[x] = b.State
	}
	return out, nil
}

// ScrapBookings is ScrapStates with each scrap's quantity (the same calls).
func (c *Client) ScrapBookings(ctx context.Context, xmlids []string) (map[string]ScrapBooking, error) {
	out := map[string]ScrapBooking{}
	for len(xmlids) > 0 {
		page := xmlids[:min(len(xmlids), 500)]
		xmlids = xmlids[len(page):]
		refs, err := c.ExternalIDs(ctx, page)
		if err != nil {
			return nil, err
		}
		ids := map[int64]string{} // scrap id -> xmlid
		for x, r := range refs {
			if r.Model == "stock.scrap" {
				ids[r.ResID] = x
			}
		}
		if len(ids) == 0 {
			continue
		}
		list := make([]int64, 0, len(ids))
		for id := range ids {
			list = append(list, id)
		}
		var rows []scrapRead
		if err := c.Call(ctx, "stock.scrap", "search_read", []any{[]any{[]any{"id", "in", list}}},
			map[string]any{"fields": scrapReadFields}, &rows); err != nil {
			return nil, err
		}
		for _, r := range rows {
			out[ids[r.ID]] = ScrapBooking{State: string(r.State), Qty: r.Qty}
		}
	}
	return out, nil
}

// scrapRead is a stock.scrap as read by scrapReadFields.
type scrapRead struct {
	ID    int64   `json:"id"`
	State text    `json:"state"`
	Qty   float64 `json:"scrap_qty"`
}

var scrapReadFields = []string{"id", "state", "scrap_qty"}

// scrapRow builds the load() columns of s. Odoo's import turns an empty cell
// into False, so the unit column is sent only when set: otherwise Odoo
// computes it from the product on create and keeps it on update.
func scrapRow(s Scrap, round func(float64) float64) ([]string, []string) {
	fields := []string{"id", "product_id/.id", "scrap_qty", "production_id/.id", "workorder_id/.id"}
	row := []string{s.XMLID, dbid(s.ProductID), strconv.FormatFloat(round(s.Qty), 'f', -1, 64), dbid(s.ProductionID), dbid(s.WorkorderID)}
	if s.UomID != 0 {
		fields = append(fields, "product_uom_id/.id")
		row = append(row, dbid(s.UomID))
	}
	return fields, row
}

// BookScrap books s once: a scrap already done under s.XMLID is reported
// done without a second booking; otherwise it is created or updated with
// load() and validated. A wizard returned by action_validate (too little
// stock at the scrap's source location — for a manufacturing order in
// progress, its components' location, where the finished product usually
// is not) means not done: with s.ConfirmShort the scrap is confirmed as
// the wizard's Confirm does (do_scrap, which books the move whatever the
// stock); otherwise it stays a draft under s.XMLID, for a person to
// validate (ScrapStates tells when).
func (c *Client) BookScrap(ctx context.Context, s Scrap) (done bool, err error) {
	if err := checkXMLID(s.XMLID); err != nil {
		return false, &Error{Op: "book scrap", Message: err.Error(), Class: Permanent}
	}
	if s.Qty <= 0 {
		return false, &Error{Op: "book scrap", Message: fmt.Sprintf("%s: quantity must be positive", s.XMLID), Class: Permanent}
	}
	if _, state, err := c.scrapState(ctx, s.XMLID); err != nil || state == "done" {
		return err == nil, err
	}
	company, err := c.scrapCompany(ctx, s)
	if err != nil {
		return false, err
	}
	fields, row := scrapRow(s, c.RoundQty)
	// In its manufacturing order's company (company.go): validating it
	// checks that its order and work order are of its company.
	fields, rows := withCompanies(fields, [][]string{row}, []int64{company})
	ids, err := c.load(ctx, "stock.scrap", fields, rows)
	if err != nil {
		return false, err
	}
	done, err = c.validateScrap(ctx, ids[0], s.XMLID, s.ConfirmShort)
	if err != nil {
		return false, &DraftLeftError{XMLID: s.XMLID, Err: err}
	}
	return done, nil
}

// DraftLeftError is BookScrap's error when the scrap was created (it is a
// draft in Odoo under its external id) but validating it failed: booking it
// again under another id would book the pieces twice once a person
// validates the draft; ValidateScrap tries the same draft again.
type DraftLeftError struct {
	XMLID string
	Err   error
}

func (e *DraftLeftError) Error() string { return e.Err.Error() }
func (e *DraftLeftError) Unwrap() error { return e.Err }

// ValidateScrap validates the scrap booked under xmlid again (after
// BookScrap's DraftLeftError): done when it is done (also when it already
// was), not done when Odoo keeps it a draft for too little stock (see
// BookScrap for confirmShort). A scrap no longer there (deleted in Odoo)
// is a permanent error.
func (c *Client) ValidateScrap(ctx context.Context, xmlid string, confirmShort bool) (done bool, err error) {
	id, state, err := c.scrapState(ctx, xmlid)
	switch {
	case err != nil:
		return false, err
	case state == "":
		return false, &Error{Op: "validate scrap", Message: xmlid + ": no such scrap in Odoo (deleted there)", Class: Permanent}
	case state == "done":
		return true, nil
	}
	return c.validateScrap(ctx, id, xmlid, confirmShort)
}

// scrapState finds the scrap booked under xmlid and reads its state ("":
// Odoo has none).
func (c *Client) scrapState(ctx context.Context, xmlid string) (id int64, state string, err error) {
	id, b, err := c.scrapBooking(ctx, xmlid)
	return id, b.State, err
}

// scrapBooking finds the scrap booked under xmlid and reads it (State "":
// Odoo has none).
func (c *Client) scrapBooking(ctx context.Context, xmlid string) (int64, ScrapBooking, error) {
	mod, name, _ := strings.Cut(xmlid, ".")
	model, id, found, err := c.ExternalID(ctx, mod, name)
	if err != nil || !found || model != "stock.scrap" {
		return 0, ScrapBooking{}, err
	}
	var rows []scrapRead
	if err := c.Call(ctx, "stock.scrap", "search_read", []any{[]any{[]any{"id", "=", id}}},
		map[string]any{"fields": scrapReadFields}, &rows); err != nil || len(rows) != 1 {
		return 0, ScrapBooking{}, err
	}
	return id, ScrapBooking{State: string(rows[0].State), Qty: rows[0].Qty}, nil
}

// ZeroScrapDraft writes 0 as the quantity of the scrap booked under xmlid
// while it is a draft — one the agent will not book: its quantity rounds
// to nothing at the decimals Odoo keeps now (0.4 at 0 decimals), and the
// agent carries it into its next booking instead. A draft of 0 can never
// be validated (action_validate refuses it: "You can only enter positive
// quantities."), so nothing of it is booked twice; deleting it is not the
// bot user's right (unlink on stock.scrap is Inventory / Administrator's).
// The write is absolute: made twice (its answer lost), it is the same. It
// returns the scrap as found — State "" when Odoo has none (deleted), a
// done one untouched with what it holds, a draft with Qty 0.
func (c *Client) ZeroScrapDraft(ctx context.Context, xmlid string) (ScrapBooking, error) {
	if err := checkXMLID(xmlid); err != nil {
		return ScrapBooking{}, &Error{Op: "zero scrap draft", Message: err.Error(), Class: Permanent}
	}
	id, b, err := c.scrapBooking(ctx, xmlid)
	if err != nil || b.State != "draft" || b.Qty == 0 {
		return b, err
	}
	if err := c.callTrue(ctx, "stock.scrap", "write", []any{[]int64{id}, map[string]any{"scrap_qty": 0}},
		"the draft is not known to be 0"); err != nil {
		return ScrapBooking{}, err
	}
	b.Qty = 0
	return b, nil
}

// validateScrap validates the draft scrap id (see BookScrap).
func (c *Client) validateScrap(ctx context.Context, id int64, xmlid string, confirmShort bool) (done bool, err error) {
	var res json.RawMessage
	if err := c.Call(ctx, "stock.scrap", "action_validate", []any{[]int64{id}}, nil, &res); err != nil {
		return false, err
	}
	switch validateAnswer(res) {
	case validated:
		return true, nil
	case notValidateAnswer:
		// Neither True nor an action: a proxy's JSON, null, the request
		// echoed. Nothing is known of the scrap (done, or a draft): the
		// caller reads its state before validating it again; do_scrap
		// on a scrap done would book it twice (it does not look at the
		// state).
		return false, notOdoos("stock.scrap.action_validate", c.clean("not Odoo's answer to action_validate (true, or a wizard's action): "+cmp.Or(string(bytes.TrimSpace(res)), "no result"), maxMessage), nil)
	}
	if !confirmShort {
		return false, nil
	}
	// The scrap is a draft (action_validate just said so): do_scrap runs
	// once. Its answer lost, the next call finds the scrap done above.
	if err := c.callTrue(ctx, "stock.scrap", "do_scrap", []any{[]int64{id}}, "the scrap is not known to be done"); err != nil {
		return false, err
	}
	c.log.Info("scrap confirmed although Odoo had too little stock at its source location (odoo.scrap_when_short: confirm)",
		"xmlid", xmlid, "scrap_id", id)
	return true, nil
}

// What action_validate answered.
const (
	notValidateAnswer = iota
	validated         // True: do_scrap ran
	wizard            // an action (the insufficient quantity wizard): not done
)

// validateAnswer reads stock.scrap action_validate's answer: do_scrap's
// True, or the action of the wizard it opens instead (stock_scrap.py: a
// dict whose type is an ir.actions model, ir.actions.act_window);
// notValidateAnswer for anything else.
func validateAnswer(res json.RawMessage) int {
	var ok bool
	if json.Unmarshal(res, &ok) == nil && ok {
		return validated
	}
	var action struct {
		Type string `json:"type"`
	}
	if t := bytes.TrimSpace(res); len(t) > 0 && t[0] == '{' && json.Unmarshal(t, &action) == nil &&
		strings.HasPrefix(action.Type, "ir.actions.") {
		return wizard
	}
	return notValidateAnswer
}
