package odoo_test

import (
	"context"
	"testing"
	"time"

	"github.com/plantedge/plantedge/odoo"
	"github.com/plantedge/plantedge/odoo/odootest"
)

// OwnKeyDates reads when the bot user's keys expire (18+), with no more
// rights than the README's bot user holds; on 17, whose keys have no
// date, it asks nothing.
func TestOwnKeyDates(t *testing.T) {
	for _, m := range modes {
		t.Run(m.String(), func(t *testing.T) {
			f := newFixture(t, odootest.Options{Version: m.version})
			_, key := f.srv.AddUser("plc")
			f.srv.GiveOnlyBotRights("plc")
			second := f.srv.AddKey("plc")
			at := time.Now().UTC().Add(48 * time.Hour).Truncate(time.Second)
			f.srv.SetKeyExpiry(key, at)
			c := f.client(t, m.protocol, func(cfg *odoo.Config) { cfg.Username, cfg.APIKey = "plc", key })
			got, err := c.OwnKeyDates(context.Background())
			if err != nil {
				t.Fatalf("OwnKeyDates: %v", err)
			}
			if m.version < 18 {
				if len(got.Expires) != 0 || got.Persistent != 0 {
					t.Errorf("17: %+v, want nothing", got)
				}
				return
			}
			if len(got.Expires) != 1 || !got.Expires[0].Equal(at) || got.Persistent != 1 {
				t.Errorf("%+v: want one key expiring %s and one (%s…) without a date", got, at, second[:4])
			}
		})
	}
}
