package odootest_test

import "testing"

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
