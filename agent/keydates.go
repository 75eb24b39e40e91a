package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/plantedge/plantedge/buffer"
	"github.com/plantedge/plantedge/odoo"
)

// keyDatesKey is the buffer meta key of what Odoo last showed of the bot
// user's API keys' expiration dates (keyDates), so that a key that expired
// while the agent was stopped is still told from one refused for another
// reason.
const keyDatesKey = "odoo/key_dates"

// expirySlack is how far the agent's clock may be from Odoo's when a key
// is refused about when it was to expire: Odoo compares with its own.
const expirySlack = time.Hour

// keyDates is what Odoo showed of the bot user's keys while Key (a keyID)
// worked with Odoo Major. Odoo answers a key past its expiration date as
// it answers a revoked key, any key of an archived user, and (JSON-RPC) a
// login renamed: the dates tell expiry from the others.
type keyDates struct {
	Key   string    `json:"key"`
	Major int       `json:"major"`
	Read  time.Time `json:"read"`
	// Known: Odoo showed the dates (18+); false when it refused to.
	Known      bool        `json:"known"`
	Expires    []time.Time `json:"expires,omitempty"`
	Persistent int         `json:"persistent,omitempty"`
}

// loadKeyDates takes keyDatesKey from the buffer file (run's start).
func (f *forwarder) loadKeyDates() {
	b, err := f.a.buf.Meta(keyDatesKey)
	if err != nil || len(b) == 0 {
		return
	}
	var d keyDates
	if json.Unmarshal(b, &d) == nil {
		f.keyDates = d
	}
}

// readKeyDates asks Odoo, once a run for the key in use and the version
// connected to, when the bot user's keys expire (a call of a round that
// connected). A refused key fails the round as any call would; any other
// failure leaves the dates unknown for this key, and the round goes on.
func (f *forwarder) readKeyDates(ctx context.Context) error {
	major := f.client.Major()
	if f.keyDatesRead == f.keyID && f.keyDates.Key == f.keyID && f.keyDates.Major == major {
		return nil
	}
	var got odoo.KeyDates
	var err error
	if major >= 18 { // 17's keys have no date: nothing to ask
		err = f.call(ctx, "key_dates", func(ctx context.Context) error {
			var err error
			got, err = f.client.OwnKeyDates(ctx)
			return err
		})
	}
	if err != nil && (odoo.IsAuth(err) || !odoo.IsPermanent(err) || errors.Is(err, context.Canceled)) {
		return err // refused, Odoo away, the agent stopping: as any call of the round
	}
	d := keyDates{Key: f.keyID, Major: major, Read: time.Now(), Known: err == nil && major >= 18}
	if d.Known {
		for _, e := range got.Expires {
			if e.After(d.Read.Add(-expirySlack)) { // not a key Odoo already refuses
				d.Expires = append(d.Expires, e)
			}
		}
		d.Persistent = got.Persistent
	} else if err != nil {
		f.a.log.Info("odoo does not show the bot user's API keys' expiration dates: a refused key will be called expired without them",
			"component", "forwarder", "err", err)
	}
	f.keyDatesRead = f.keyID
	f.keyDates = d
	if b, jerr := json.Marshal(d); jerr == nil {
		_ = f.a.buf.PutMeta(ctx, buffer.KV{Key: keyDatesKey, Value: b})
	}
	return nil
}

// keyLikelyExpired reports whether the refusal now of key keyID, which
// worked before, is most likely its expiry (status's key_expired): not on
// Odoo 17, whose keys do not expire; on 18+ when one of the bot user's
// keys was to expire by now — else it was revoked, its user archived, or
// (JSON-RPC) its login renamed, which the messages name. Without the
// dates (Odoo did not show them, or never while this key worked) expiry,
// which every non-admin key of 18+ comes to, is taken as the likeliest.
// why says what tells it is not expiry ("" when it may be).
func (f *forwarder) keyLikelyExpired(keyID string, now time.Time) (expired bool, why string) {
	d := f.keyDates
	major := d.Major
	if d.Key != keyID {
		major, d = odoo.MajorOf(f.link.Version), keyDates{}
	}
	switch {
	case major > 0 && major < 18:
		return false, fmt.Sprintf("Odoo %d's keys do not expire", major)
	case !d.Known:
		return true, ""
	}
	var first time.Time
	for _, e := range d.Expires {
		if !e.After(now.Add(expirySlack)) {
			return true, ""
		}
		if first.IsZero() || e.Before(first) {
			first = e
		}
	}
	if first.IsZero() {
		return false, "the bot user's keys have no expiration date"
	}
	return false, "the bot user's keys expire from " + first.UTC().Format("2006-01-02 15:04") + " UTC on"
}
