package odoo

import (
	"context"
	"slices"
	"strings"
	"sync"
)

// Companies. In a multi-company Odoo a record created with no company
// takes the caller's main company (env.company: res.users.company_id when
// the call names no allowed_company_ids), whatever company its work center
// belongs to, and Odoo refuses a downtime line (mrp.workcenter.productivity,
// _check_company_auto) or validating a scrap (stock.scrap do_scrap's
// _check_company) whose work center, work order or manufacturing order
// belongs to another company: "Incompatible companies on records". Reads
// are not affected: without allowed_company_ids they see all the user's
// companies. So the client names the company of every line and scrap it
// writes, as a company_id/.id column of load() — a row's own, so one call
// may carry lines of work centers of several companies: the work center's
// company for a downtime line, the manufacturing order's for a scrap. The
// ids come from the company_id fields of the work centers and work orders
// the client reads anyway (no read of res.company, which a least-privilege
// bot user may not be allowed).

// companies caches the companies of work centers and manufacturing orders
// by id, as last read. 0 is "none" (a record shared between companies).
type companies struct {
	mu sync.Mutex
	wc map[int64]int64
	mo map[int64]int64
	wo map[int64]int64 // work orders: their manufacturing order's
}

// get returns the company cached for record id under which ("wc", "mo",
// "wo").
func (cs *companies) get(which string, id int64) (int64, bool) {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	c, ok := (*cs.of(which))[id]
	return c, ok
}

func (cs *companies) set(which string, id, company int64) {
	if id == 0 {
		return
	}
	cs.mu.Lock()
	defer cs.mu.Unlock()
	m := cs.of(which)
	if *m == nil {
		*m = map[int64]int64{}
	}
	(*m)[id] = company
}

// of is the cache of which (under mu).
func (cs *companies) of(which string) *map[int64]int64 {
	switch which {
	case "mo":
		return &cs.mo
	case "wo":
		return &cs.wo
	}
	return &cs.wc
}

var workcenterFields = []string{"id", "code", "name", "working_state", "company_id"}

type workcenterRow struct {
	ID           int64    `json:"id"`
	Code         text     `json:"code"`
	Name         text     `json:"name"`
	WorkingState text     `json:"working_state"`
	Company      many2one `json:"company_id"`
}

// workcenter turns a row into a Workcenter and remembers its company.
func (c *Client) workcenter(r workcenterRow) Workcenter {
	c.companies.set("wc", r.ID, r.Company.ID)
	return Workcenter{ID: r.ID, Code: string(r.Code), Name: string(r.Name), WorkingState: string(r.WorkingState),
		CompanyID: r.Company.ID}
}

// noteWorkorders remembers the companies of the work orders' manufacturing
// orders.
func (c *Client) noteWorkorders(rows []workorderRow) {
	for _, r := range rows {
		if r.Production.ID != 0 && r.Company.ID != 0 {
			c.companies.set("mo", r.Production.ID, r.Company.ID)
		}
		c.companies.set("wo", r.ID, r.Company.ID)
	}
}

// workorderCompanies returns the companies of the work orders (their
// manufacturing orders'): those not known yet read in one call.
func (c *Client) workorderCompanies(ctx context.Context, ids []int64) (map[int64]int64, error) {
	return c.companiesOf(ctx, "wo", "mrp.workorder", ids, false)
}

// workcenterCompanies returns the companies of the work centers: those
// not known yet (or all, with fresh) read in one call.
func (c *Client) workcenterCompanies(ctx context.Context, ids []int64, fresh bool) (map[int64]int64, error) {
	return c.companiesOf(ctx, "wc", "mrp.workcenter", ids, fresh)
}

// companiesOf returns the companies of model's records ids, as cached
// under which: those not known yet (or all, with fresh) read in one call.
func (c *Client) companiesOf(ctx context.Context, which, model string, ids []int64, fresh bool) (map[int64]int64, error) {
	out := map[int64]int64{}
	var ask []int64
	for _, id := range ids {
		if id == 0 || slices.Contains(ask, id) {
			continue
		}
		if co, ok := c.companies.get(which, id); ok && !fresh {
			out[id] = co
			continue
		}
		ask = append(ask, id)
	}
	if len(ask) == 0 {
		return out, nil
	}
	var rows []struct {
		ID      int64    `json:"id"`
		Company many2one `json:"company_id"`
	}
	if err := c.Call(ctx, model, "read", []any{ask}, map[string]any{"fields": []string{"company_id"}}, &rows); err != nil {
		return nil, err
	}
	for _, r := range rows {
		c.companies.set(which, r.ID, r.Company.ID)
		out[r.ID] = r.Company.ID
	}
	return out, nil
}

// scrapCompany returns the company of the scrap's manufacturing order (of
// its work order when it names none): remembered from the work orders
// read, else read (0 when it has none).
func (c *Client) scrapCompany(ctx context.Context, s Scrap) (int64, error) {
	if co, ok := c.companies.get("mo", s.ProductionID); ok && s.ProductionID != 0 {
		return co, nil
	}
	which, model, id := "mo", "mrp.production", s.ProductionID
	if s.WorkorderID != 0 {
		which, model, id = "wo", "mrp.workorder", s.WorkorderID // the bot reads these already; company_id is its order's
	}
	if id == 0 {
		return 0, nil
	}
	byID, err := c.companiesOf(ctx, which, model, []int64{id}, false)
	if err != nil {
		return 0, err
	}
	c.companies.set("mo", s.ProductionID, byID[id]) // (0 when gone: load() says so)
	return byID[id], nil
}

// withCompanies adds a company_id/.id column to load() rows when every
// row has a company: a work center of no company (shared) leaves the
// column out, and Odoo's default (the caller's main company) applies, as
// it passes its check.
func withCompanies(fields []string, rows [][]string, company []int64) ([]string, [][]string) {
	if len(company) != len(rows) || slices.Contains(company, 0) {
		return fields, rows
	}
	out := make([][]string, len(rows))
	for i, r := range rows {
		out[i] = append(slices.Clip(r), dbid(company[i]))
	}
	return append(slices.Clip(fields), "company_id/.id"), out
}

// isIncompatibleCompanies reports a refusal by Odoo's _check_company. Only
// its words tell it from other UserErrors (and a load's row messages carry
// no exception name); they are English because every call asks for
// English (inEnglish).
func isIncompatibleCompanies(err error) bool {
	return err != nil && strings.Contains(err.Error(), "Incompatible companies on records")
}
