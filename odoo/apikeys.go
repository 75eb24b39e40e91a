package odoo

import (
	"context"
	"time"
)

// KeyDates is what a user may read of its own API keys: from Odoo 18 each
// has an expiration date (a non-admin user's must), and Odoo refuses a key
// once it is past, exactly as it refuses a wrong key, a revoked one or
// any key of an archived user. Odoo does not say which of the user's keys
// is the one in use, so a caller knows the key it holds expires at one of
// Expires, or never when Persistent > 0.
type KeyDates struct {
	Expires    []time.Time // the dates of keys that have one, in Odoo's order
	Persistent int         // keys without one (17's, and those made before 18)
}

// OwnKeyDates reads the expiration dates of the calling user's API keys
// (res.users.apikeys: base lets internal users read it, and its record
// rule shows each user its own). Odoo 17 has no such date: zero KeyDates,
// and nothing is asked.
func (c *Client) OwnKeyDates(ctx context.Context) (KeyDates, error) {
	if err := c.ensureConnected(ctx); err != nil {
		return KeyDates{}, err
	}
	if c.Major() < 18 {
		return KeyDates{}, nil
	}
	var rows []struct {
		Expires odooTime `json:"expiration_date"`
	}
	err := c.Call(ctx, "res.users.apikeys", "search_read", []any{[]any{[]any{"user_id", "=", c.UID()}}},
		map[string]any{"fields": []string{"expiration_date"}, "order": "id"}, &rows)
	if err != nil {
		return KeyDates{}, err
	}
	var d KeyDates
	for _, r := range rows {
		if t := time.Time(r.Expires); t.IsZero() {
			d.Persistent++
		} else {
			d.Expires = append(d.Expires, t)
		}
	}
	return d, nil
}
