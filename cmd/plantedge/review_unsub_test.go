package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Review (review-unsub), probe of 67a88ed: counts held for lack of a work
// order, then Odoo refusing the key (auth_failed). Before 67a88ed flush
// said exit 3 at once ("waiting for Odoo-side action"); now it waits for a
// round that reaches Odoo, which auth_failed never gives: it exits 1 at the
// timeout — by design (README) — but its last words are "not drained
// within 3s: 0 records pending": the held records, the only thing left,
// are not named in the verdict a script logs (the exit-1 message was
// written when "0 pending" could not reach it: all held was exit 3).
func TestReviewUnsubFlushHeldWhileAuthFailed(t *testing.T) {
	b := newBench(t, 17)
	b.editConfig("  interval: 100ms\n", "  interval: 1s\n")
	b.startAgent()
	b.odoo.SetWorkorderState(b.woID, "done")
	b.produce(4)
	waitUntil(t, 10*time.Second, "the counts held", func() (bool, string) {
		st := b.a.Status()
		return st.Buffer.Held > 0 && st.Odoo.State == "online", fmt.Sprintf("held %d, odoo %s", st.Buffer.Held, st.Odoo.State)
	})
	key, err := os.ReadFile(filepath.Join(filepath.Dir(b.cfgPath), "odoo-api-key"))
	if err != nil {
		t.Fatal(err)
	}
	b.odoo.ExpireKey(strings.TrimSpace(string(key)))
	b.produce(1) // something to send: a round that tries Odoo
	waitUntil(t, 30*time.Second, "auth_failed", func() (bool, string) {
		st := b.a.Status()
		return st.Odoo.State == "auth_failed", st.Odoo.State
	})
	out, err := cli(t, "flush", "-c", b.cfgPath, "--timeout", "3s")
	t.Logf("flush with auth_failed: exit %d, err %v\n%s", exitCode(err), err, out)
	if msg := fmt.Sprint(err); strings.Contains(msg, "0 records pending") && !strings.Contains(msg, "held") {
		t.Errorf("flush's verdict %q says nothing is pending and not why it is not drained (records held, Odoo refusing the key)", msg)
	}
}
