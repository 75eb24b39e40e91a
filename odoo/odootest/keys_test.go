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
