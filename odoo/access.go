package odoo

import (
	"context"
	"fmt"
)

// Access operations, as Odoo's ir.model.access names them.
const (
	OpRead   = "read"
	OpWrite  = "write"
	OpCreate = "create"
	OpUnlink = "unlink"
)

// CanAccess reports whether the authenticated user may perform operation
// (read, write, create or unlink) on model according to its access rights
// (ir.model.access; record rules are not evaluated: no records are named).
//
// Odoo 17 has the @api.model check_access_rights(operation,
// raise_exception=True); 18 added the record method has_access(operation)
// (called on an empty recordset it checks the model) and deprecated
// check_access_rights, which later versions dropped. So 18+ use has_access:
// over JSON-RPC execute_kw(model, "has_access", [[], operation]), over
// JSON-2 POST /json/2/<model>/has_access {"ids": [], "operation": ...}.
// Before 18 it is execute_kw(model, "check_access_rights", [operation],
// {"raise_exception": false}). It connects first when needed.
func (c *Client) CanAccess(ctx context.Context, model, operation string) (bool, error) {
	switch operation {
	case OpRead, OpWrite, OpCreate, OpUnlink:
	default:
		return false, &Error{Op: model + ".can_access", Message: fmt.Sprintf("operation %q: want read, write, create or unlink", operation), Class: Permanent}
	}
	if err := c.ensureConnected(ctx); err != nil {
		return false, err
	}
	var ok bool
	var err error
	if c.Major() >= 18 {
		err = c.Call(ctx, model, "has_access", []any{[]int64{}, operation}, nil, &ok)
	} else {
		err = c.Call(ctx, model, "check_access_rights", []any{operation}, map[string]any{"raise_exception": false}, &ok)
	}
	if err != nil {
		return false, err // an *Error whose Op names model and method
	}
	return ok, nil
}
