package agent

import (
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/plantedge/plantedge/buffer"
)

// keyExpiryGauge is the value of plantedge_odoo_key_expiry_timestamp_seconds,
// and whether the agent exports it.
func keyExpiryGauge(t *testing.T, a *Agent) (float64, bool) {
	t.Helper()
	mfs, err := a.opts.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "plantedge_odoo_key_expiry_timestamp_seconds" && len(mf.GetMetric()) > 0 {
			return mf.GetMetric()[0].GetGauge().GetValue(), true
		}
	}
	return 0, false
}

// On Odoo 18+ a non-admin bot user's key expires, and the plant stops
// booking that day: the agent warns ahead. While the soonest of the bot
// user's keys expires within keyExpiryWarning (Odoo does not say which key
// is in use), the log says so at WARN once a day, status shows the date
// (odoo.key_expires_at, key_expires_soon) and the gauge its unix time. The
// dates are read again every keyDatesRefresh, not every round: a key
// rotated in Odoo (the old one deleted) ends the warning. Nothing of it on
// Odoo 17, whose keys do not expire.
func TestKeyExpiryIsWarnedAhead(t *testing.T) {
	at := func(d time.Duration) string {
		return `"` + time.Now().UTC().Add(d).Truncate(time.Second).Format("2006-01-02 15:04:05") + `"`
	}
	for _, tc := range []struct {
		name, version string
		in            time.Duration // 0: no date
		soon          bool
	}{
		{"18: expires in 10 days", "18.0", 10 * 24 * time.Hour, true},
		{"18: expires in 30 days", "18.0", 30 * 24 * time.Hour, false},
		{"17: keys do not expire", "17.0", 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig(t, "forward: { interval: 1m }\n"+oneMQTTMachine)
			var mu sync.Mutex
			expires := "false"
			o := &keyOdoo{version: tc.version, expires: func() string { mu.Lock(); defer mu.Unlock(); return expires }}
			a, logs := keyAgent(t, cfg, o)
			inBubble(t, a, func(context.Context) {
				var want time.Time
				if tc.in > 0 {
					want = time.Now().UTC().Add(tc.in).Truncate(time.Second)
					mu.Lock()
					expires = at(tc.in)
					mu.Unlock()
				}
				time.Sleep(10 * time.Second)
				st := a.Status()
				if st.Odoo.State != "online" {
					t.Fatalf("the key works: odoo %+v", st.Odoo)
				}
				switch {
				case want.IsZero() && st.Odoo.KeyExpiresAt != nil:
					t.Errorf("key_expires_at %s on Odoo %s, want none", st.Odoo.KeyExpiresAt, tc.version)
				case !want.IsZero() && (st.Odoo.KeyExpiresAt == nil || !st.Odoo.KeyExpiresAt.Equal(want)):
					t.Errorf("key_expires_at %v, want %s", st.Odoo.KeyExpiresAt, want)
				}
				if st.Odoo.KeyExpiresSoon != tc.soon {
					t.Errorf("key_expires_soon %v, want %v", st.Odoo.KeyExpiresSoon, tc.soon)
				}
				g, ok := keyExpiryGauge(t, a)
				if want.IsZero() && ok {
					t.Errorf("the key expiry gauge is exported (%v) on Odoo %s", g, tc.version)
				}
				if !want.IsZero() && (!ok || g != float64(want.Unix())) {
					t.Errorf("the key expiry gauge is %v (exported %v), want %d", g, ok, want.Unix())
				}
				warned := func() int { return strings.Count(logs.String(), "the odoo API key expires soon") }
				if n, w := warned(), map[bool]int{true: 1}[tc.soon]; n != w {
					t.Errorf("%d warnings of the key's expiry after a start, want %d:\n%s", n, w, logs.String())
				}
				// A day and a half: one more warning, and the dates read again
				// about once an hour, not every round.
				reads := o.reads.Load()
				time.Sleep(36 * time.Hour)
				if n, w := warned(), map[bool]int{true: 2}[tc.soon]; n != w {
					t.Errorf("%d warnings of the key's expiry in a day and a half, want %d", n, w)
				}
				if n := o.reads.Load() - reads; tc.version != "17.0" && (n < 30 || n > 40) {
					t.Errorf("the keys' dates read %d times in 36 hours, want about once an hour", n)
				}
				if !tc.soon {
					return
				}
				// The key rotated: a new key in use, the old one deleted in
				// Odoo. Within the hour the warning ends.
				mu.Lock()
				expires = at(80 * 24 * time.Hour)
				mu.Unlock()
				time.Sleep(61 * time.Minute)
				st = a.Status()
				if st.Odoo.KeyExpiresSoon || st.Odoo.KeyExpiresAt == nil || time.Until(*st.Odoo.KeyExpiresAt) < 79*24*time.Hour {
					t.Errorf("after the rotation: key_expires_at %v, key_expires_soon %v", st.Odoo.KeyExpiresAt, st.Odoo.KeyExpiresSoon)
				}
				n := warned()
				time.Sleep(25 * time.Hour)
				if warned() != n {
					t.Errorf("warned of the key's expiry after the rotation")
				}
			})
		})
	}
}

// With the agent stopped, status reads the dates it last read from the
// buffer file, for the key that last worked (not another's).
func TestStoppedStatusShowsTheKeyExpiry(t *testing.T) {
	cfg := testConfig(t, oneMQTTMachine)
	at := time.Now().Add(5 * 24 * time.Hour).UTC().Truncate(time.Second)
	for _, tc := range []struct {
		name, worked string
		want         bool
	}{
		{"the key that worked", "k1", true},
		{"another key worked since", "k2", false},
	} {
		buf, err := buffer.Open(cfg.BufferPath(), buffer.Options{})
		if err != nil {
			t.Fatal(err)
		}
		d, _ := json.Marshal(keyDates{Key: "k1", Major: 18, Read: time.Now(), Known: true, Expires: []time.Time{at.Add(30 * 24 * time.Hour), at}})
		if err := buf.PutMeta(context.Background(), buffer.KV{Key: keyDatesKey, Value: d}, buffer.KV{Key: keyWorkedKey, Value: []byte(tc.worked)}); err != nil {
			t.Fatal(err)
		}
		buf.Close()
		st, err := OfflineStatus(cfg)
		if err != nil {
			t.Fatal(err)
		}
		got := st.Odoo.KeyExpiresAt != nil && st.Odoo.KeyExpiresAt.Equal(at) && st.Odoo.KeyExpiresSoon
		if got != tc.want || !tc.want && st.Odoo.KeyExpiresAt != nil {
			t.Errorf("%s: key_expires_at %v, key_expires_soon %v; want shown %v (%s)", tc.name, st.Odoo.KeyExpiresAt, st.Odoo.KeyExpiresSoon, tc.want, at)
		}
	}
}
