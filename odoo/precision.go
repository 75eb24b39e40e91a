package odoo

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/plantedge/plantedge/internal/decimal"
)

// DefaultQtyDigits is the decimals of Odoo's quantity precision as
// installed (the decimal.precision record of work-order and scrap
// quantities: "Product Unit of Measure" in 17 and 18, "Product Unit" in
// 19, 2 digits), and what the client rounds to when it cannot read the
// database's own.
const DefaultQtyDigits = 2

// maxQtyDigits bounds a precision read from Odoo: more decimals than a
// float64 quantity keeps apart are not a setting anyone made.
const maxQtyDigits = 10

// QtyDigits returns the decimals Odoo keeps of the quantities plantedge
// writes (the work order's qty_producing / qty_produced, a scrap's
// scrap_qty): as read at the last full connect, DefaultQtyDigits before
// one or when it could not be read.
func (c *Client) QtyDigits() int {
	d, _ := c.QtyPrecision()
	return d
}

// QtyPrecision is QtyDigits and whether it was read from Odoo (false: the
// default, assumed).
func (c *Client) QtyPrecision() (digits int, read bool) {
	v := c.qtyDigits.Load()
	if v == 0 {
		return DefaultQtyDigits, false
	}
	if v < 0 { // assumed after a read that failed
		return int(-v - 1), false
	}
	return int(v - 1), true
}

// RoundQty rounds v as Odoo's ORM rounds a quantity it stores: half up, to
// QtyDigits decimals, of the decimal v stands for (see Round2).
func (c *Client) RoundQty(v float64) float64 { return decimal.Round(v, c.QtyDigits()) }

// readQtyDigits reads the precision of the quantity plantedge writes, with
// fields_get on mrp.workorder: the digits the ORM rounds the field to on
// every write (fields.py Float.get_digits: decimal.precision's
// precision_get of the field's digits name, 2 when no such record). The
// field, not the decimal.precision record by name: the record was renamed
// in 19 ("Product Unit of Measure" → "Product Unit"), and fields_get needs
// no right beyond the model's that the bot user has anyway. Called by
// connectLocked with the session just set up, by sameVersion when the
// version is read again with the session standing, and by
// RefreshQtyDigits. A refusal or an answer
// without digits keeps the precision read before, or DefaultQtyDigits,
// said once at WARN (an answer that does not read, too: a proxy's page
// for every path, which the next call meets and reconnects after); Odoo
// not reached (a dropped connection, a timeout, a 502) fails the connect,
// which is tried again.
func (c *Client) readQtyDigits(ctx context.Context) error {
	field := c.ProducedField()
	var res map[string]struct {
		Digits json.RawMessage `json:"digits"`
	}
	err := c.call(ctx, "mrp.workorder", "fields_get", []any{},
		map[string]any{"allfields": []string{field}, "attributes": []string{"digits"}}, &res)
	var oe *Error
	if err != nil && IsTemporary(err) && !(errors.As(err, &oe) && oe.Name == "decode") {
		return err
	}
	c.digitsRead.Store(time.Now().UnixNano())
	var digits int
	var ok bool
	if err == nil {
		digits, ok = parseDigits(res[field].Digits)
		if !ok {
			err = fmt.Errorf("mrp.workorder.%s has no digits in fields_get: %s", field, cmpRaw(res[field].Digits))
		}
	}
	was, wasRead := c.QtyPrecision()
	if err != nil {
		if c.qtyDigits.Load() >= 0 { // not said since the last read that failed
			c.log.Warn("the decimals Odoo keeps of a quantity cannot be read: rounding to "+fmt.Sprint(was)+
				" (Odoo's default, or as read before); quantities may be booked less exactly than Odoo keeps them",
				"field", "mrp.workorder."+field, "error", err.Error(), "digits", was)
		}
		c.qtyDigits.Store(int32(-was - 1))
		return nil
	}
	c.qtyDigits.Store(int32(digits + 1))
	switch {
	case wasRead && was != digits:
		c.log.Warn("Odoo's quantity precision changed: rounding quantities to the new one", "digits", digits, "was", was)
	case !wasRead && digits != DefaultQtyDigits:
		c.log.Info("Odoo keeps quantities to "+fmt.Sprint(digits)+" decimals: rounding to them", "digits", digits)
	}
	return nil
}

// RefreshQtyDigits reads Odoo's quantity precision again, the session
// standing (a full connect when one is due, which reads it): the caller
// met a quantity that tells that Odoo keeps fewer decimals than the
// client rounds to — its administrator set them since they were read.
// Like a connect's read, a refusal keeps the digits read before; an error
// is Odoo not reached.
func (c *Client) RefreshQtyDigits(ctx context.Context) error {
	c.connect.Lock()
	defer c.connect.Unlock()
	if c.NeedsConnect() {
		return c.connectLocked(ctx)
	}
	return c.readQtyDigits(ctx)
}

// parseDigits reads fields_get's digits, [precision, scale]: the scale.
// The last element, so that a triple (a development build's
// [precision, min_display, scale]) reads too.
func parseDigits(raw json.RawMessage) (int, bool) {
	var d []int
	if len(raw) == 0 || json.Unmarshal(raw, &d) != nil || len(d) < 2 {
		return 0, false
	}
	n := d[len(d)-1]
	return n, n >= 0 && n <= maxQtyDigits
}

func cmpRaw(raw json.RawMessage) string {
	if len(raw) == 0 {
		return "none"
	}
	return string(raw)
}

// UnitRounding reads the rounding of unit of measure id (uom.uom's
// rounding), which Odoo validates a scrap in besides its decimals: in
// 17.0 and 18.0 a field of each unit (0.01 as installed, 1.0 set for one
// that cannot be split), coarser than the decimals when its
// administrator set those to 3 and left the units; in 19.0 the decimals'
// own for every unit. Every user reads units (uom's access rules give
// base.group_user read). 0 when Odoo answers none.
func (c *Client) UnitRounding(ctx context.Context, id int64) (float64, error) {
	var rows []struct {
		Rounding float64 `json:"rounding"`
	}
	if err := c.Call(ctx, "uom.uom", "read", []any{[]int64{id}, []string{"rounding"}}, nil, &rows); err != nil {
		return 0, err
	}
	if len(rows) != 1 || rows[0].Rounding <= 0 {
		return 0, nil
	}
	return rows[0].Rounding, nil
}

// RoundScrapQty rounds v as a scrap Odoo validates: to a multiple of its
// unit's rounding (unit, UnitRounding; 0 when not known) when that is
// coarser than the decimals Odoo keeps, and to those decimals. Odoo
// refuses to validate a scrap that is not so (stock_scrap.py
// action_validate: one that rounds to 0 by its unit; stock_move_line.py
// _action_done: one its unit's rounding would change), and leaves it a
// draft: 0.125 kg at 3 decimals and a unit rounding of 0.01 books 0.13,
// 0.4 pieces of a unit of 1.0 books nothing, 1.6 books 2.
func (c *Client) RoundScrapQty(v, unit float64) float64 {
	digits := c.QtyDigits()
	if unit > math.Pow10(-digits) {
		v = decimal.RoundStep(v, unit)
	}
	return decimal.Round(v, digits)
}
