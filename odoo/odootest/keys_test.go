package odootest_test

import (
	"encoding/json"
	"testing"
	"time"
)

// A user may hold several API keys; each authenticates as that user, and
// expiring one leaves the other working (rotation without downtime).
func TestAddKeyRotation(t *testing.T) {
	e := newEnv(t, 17)
	uid, first := e.s.AddUser("bot")
	second := e.s.AddKey("bot")
	if second == "" || second == first || e.s.AddKey("nobody") != "" {
		t.Fatalf("AddKey: %q (first %q)", second, first)
	}
	login := func(key string) any {
		return e.rpc("common", "authenticate", "odoo", "bot", key, map[string]any{}).Result
	}
	if got := login(second); num(got) != float64(uid) {
		t.Fatalf("second key authenticates as %v, want uid %d", got, uid)
	}
	e.s.ExpireKey(first)
	if got := login(first); got != false {
		t.Fatalf("expired key authenticates: %v", got)
	}
	if got := login(second); num(got) != float64(uid) {
		t.Fatalf("second key after the first expired: %v", got)
	}
}

// An archived user is refused everything with every key it holds
// (res_users.py: its keys match active users only, _login finds active
// users only, check raises AccessDenied for an inactive user): the same
// answers as a wrong key, so a client cannot tell the two apart.
// Unarchived, its keys work again.
func TestArchivedUserIsRefusedLikeAWrongKey(t *testing.T) {
	e := newEnv(t, 17)
	uid, key := e.s.AddUser("bot")
	e.s.SetUserActive(uid, false)
	if got := e.rpc("common", "authenticate", "odoo", "bot", key, map[string]any{}).Result; got != false {
		t.Errorf("authenticate of an archived user: %v, want false", got)
	}
	e.wantErr(e.execAs(uid, key, "mrp.workorder", "search_read", []any{[]any{}}, map[string]any{"fields": []string{"id"}}), "odoo.exceptions.AccessDenied")
	e.s.SetUserActive(uid, true)
	if got := e.rpc("common", "authenticate", "odoo", "bot", key, map[string]any{}).Result; num(got) != float64(uid) {
		t.Errorf("authenticate once unarchived: %v, want %d", got, uid)
	}

	e19 := newEnv(t, 19)
	uid, key = e19.s.AddUser("bot")
	e19.s.SetUserActive(uid, false)
	if status, _ := e19.j2As(key, "res.users", "context_get", `{}`); status != 401 {
		t.Errorf("json2 for an archived user: %d, want 401", status)
	}
	e19.s.SetUserActive(uid, true)
	if status, body := e19.j2As(key, "res.users", "context_get", `{}`); status != 200 {
		t.Errorf("json2 once unarchived: %d %s", status, body)
	}
}

// From 18.0 an API key has an expiration date (res.users.apikeys
// expiration_date; a non-admin user's key must have one): Odoo takes the
// key until then and refuses it after, like a wrong key. A user reads its
// own keys' dates (base: internal users read res.users.apikeys, and the
// record rule api_key_user shows each its own), not another user's.
func TestKeyExpirationDates(t *testing.T) {
	for _, v := range []int{18, 19} {
		e := newEnv(t, v)
		uid, key := e.s.AddUser("bot")
		e.s.GiveOnlyBotRights("bot")
		_, other := e.s.AddUser("someone")
		at := time.Now().UTC().Add(2 * time.Hour).Truncate(time.Second)
		e.s.SetKeyExpiry(key, at)
		e.s.SetKeyExpiry(other, at.Add(time.Hour))
		var rows []any
		if v >= 19 {
			status, body := e.j2As(key, "res.users.apikeys", "search_read", `{"domain":[],"fields":["expiration_date"]}`)
			if status != 200 || json.Unmarshal([]byte(body), &rows) != nil {
				t.Fatalf("%d: json2 search_read of its keys: %d %s", v, status, body)
			}
		} else {
			rows, _ = e.ok(e.execAs(uid, key, "res.users.apikeys", "search_read", []any{[]any{}}, map[string]any{"fields": []string{"expiration_date"}})).([]any)
		}
		if len(rows) != 1 || rows[0].(map[string]any)["expiration_date"] != at.Format("2006-01-02 15:04:05") {
			t.Errorf("%d: the user reads %v of its keys, want its one key expiring %s", v, rows, at)
		}
		// Its date comes (Odoo's clock past it): refused like a wrong key.
		e.s.SetNow(func() time.Time { return at.Add(time.Second) })
		if v >= 19 {
			if status, _ := e.j2As(key, "res.users", "context_get", `{}`); status != 401 {
				t.Errorf("%d: a key past its date answered %d, want 401", v, status)
			}
		} else if got := e.rpc("common", "authenticate", "odoo", "bot", key, map[string]any{}).Result; got != false {
			t.Errorf("%d: a key past its date authenticates: %v", v, got)
		}
	}
	// 17's keys have no date.
	e := newEnv(t, 17)
	uid, key := e.s.AddUser("bot")
	rows, _ := e.ok(e.execAs(uid, key, "res.users.apikeys", "search_read", []any{[]any{}}, map[string]any{"fields": []string{"name"}})).([]any)
	if len(rows) != 1 {
		t.Errorf("17: the user reads %v of its keys", rows)
	}
	e.wantErr(e.execAs(uid, key, "res.users.apikeys", "search_read", []any{[]any{}}, map[string]any{"fields": []string{"expiration_date"}}), "builtins.ValueError")
}

// An archived work center (active false) is left out of searches
// (models.py: active_test), unless the context says active_test false or
// the domain names active; its work orders are still found by its id.
func TestArchivedWorkcenterIsLeftOutOfSearches(t *testing.T) {
	e := newEnv(t, 17)
	e.s.SetWorkcenterActive(e.wc, false)
	find := func(domain []any, ctx map[string]any) int {
		kw := map[string]any{"fields": []string{"id"}}
		if ctx != nil {
			kw["context"] = ctx
		}
		rows, _ := e.ok(e.exec("mrp.workcenter", "search_read", []any{domain}, kw)).([]any)
		return len(rows)
	}
	if n := find([]any{[]any{"code", "=", "M1"}}, nil); n != 0 {
		t.Errorf("an archived work center found by its code: %d", n)
	}
	if n := find([]any{[]any{"code", "=", "M1"}}, map[string]any{"active_test": false}); n != 1 {
		t.Errorf("with active_test false: %d, want 1", n)
	}
	if n := find([]any{[]any{"code", "=", "M1"}, []any{"active", "=", false}}, nil); n != 1 {
		t.Errorf("with active in the domain: %d, want 1", n)
	}
	// Only a leaf on the field active itself lifts the filter (17.0/18.0
	// _search: any(item[0] == self._active_name for item in domain)), not
	// a value or another field that merely spells "active".
	inactive := e.s.AddWorkcenter("INACTIVE-1", "Reactive press")
	e.s.SetWorkcenterActive(inactive, false)
	for _, d := range [][]any{{[]any{"code", "=", "INACTIVE-1"}}, {[]any{"name", "ilike", "active"}}, {[]any{"code", "in", []any{"M1", "INACTIVE-1"}}}} {
		if n := find(d, nil); n != 0 {
			t.Errorf("%v finds %d archived work centers, want 0", d, n)
		}
	}
	rows, _ := e.ok(e.exec("mrp.workorder", "search_read", []any{[]any{[]any{"workcenter_id", "=", e.wc}}}, map[string]any{"fields": []string{"id"}})).([]any)
	if len(rows) != 1 {
		t.Errorf("its work orders by its id: %d, want 1", len(rows))
	}
	e.s.SetWorkcenterActive(e.wc, true)
	if n := find([]any{[]any{"code", "=", "M1"}}, nil); n != 1 {
		t.Errorf("unarchived: %d, want 1", n)
	}
}

// load resolves a field/.id cell with a search on the related model
// (ir_fields.py db_id_for: RelatedModel.search([('id', '=', tentative_id)])),
// so the search's active_test and record rules hold: an archived work
// center is "No matching record found" for a downtime line, unless the
// context says active_test false.
func TestLoadDatabaseIDOfAnArchivedRecordIsNotFound(t *testing.T) {
	e := newEnv(t, 17)
	e.s.SetWorkcenterActive(e.wc, false)
	fields := []any{"id", "workcenter_id/.id", "loss_id/id", "date_start"}
	rows := []any{[]any{"plantedge.s_m1_down_1", itoa(e.wc), "mrp.block_reason1", "2026-01-01 08:00:00"}}
	r := e.ok(e.exec("mrp.workcenter.productivity", "load", []any{fields, rows}, nil)).(map[string]any)
	msgs, _ := r["messages"].([]any)
	want := "No matching record found for database id '" + itoa(e.wc) + "' in field 'Work Center'"
	if r["ids"] != false || len(msgs) != 1 || msgs[0].(map[string]any)["message"] != want {
		t.Errorf("load on an archived work center: %v, want ids false and %q", r, want)
	}
	if n := len(e.s.Productivity()); n != 0 {
		t.Errorf("%d lines written", n)
	}
	r = e.ok(e.exec("mrp.workcenter.productivity", "load", []any{fields, rows}, map[string]any{"context": map[string]any{"active_test": false}})).(map[string]any)
	if ids, _ := r["ids"].([]any); len(ids) != 1 {
		t.Errorf("with active_test false: %v, want the line loaded", r)
	}
}
