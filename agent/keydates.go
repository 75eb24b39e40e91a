package agent

import (
	"cmp"
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

// keyDatesRefresh is how often the dates are read again while the key
// works (a call an hour): a key rotated in Odoo, the old one deleted,
// ends the warning of its expiry within it.
const keyDatesRefresh = time.Hour

// keyExpiryWarning is how long before the soonest of the bot user's keys
// expires the agent warns of it (the log once a day, status's
// key_expires_soon): Odoo 18+ gives a non-admin user's key 3 months at
// most, and the plant stops booking the day it expires.
const keyExpiryWarning = 14 * 24 * time.Hour

// keyWarnEvery is how often the log repeats the warning.
const keyWarnEvery = 24 * time.Hour

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
	// Before18 is the Odoo major before 18 (17) Key worked with, in this
	// or an earlier record (0: none seen). Keys got expiration dates in
	// Odoo 18 (odoo/odoo#178558): its migration leaves those made before
	// without one, and Odoo takes a key without one for ever
	// (expiration_date IS NULL OR expiration_date >= now), so such a key
	// never expires, whatever Odoo shows of the bot user's other keys.
	Before18 int `json:"before_18,omitempty"`
}

// madeBefore18 is the Odoo major before 18 the key worked with (0: none
// known): a record of an earlier version has only Major.
func (d keyDates) madeBefore18() int {
	if d.Before18 > 0 {
		return d.Before18
	}
	if d.Major > 0 && d.Major < 18 {
		return d.Major
	}
	return 0
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

// readKeyDates asks Odoo, for the key in use and the version connected
// to, when the bot user's keys expire: once a run and then every
// keyDatesRefresh (a call of a round that connected). A refused key fails
// the round as any call would; any other failure leaves the dates unknown
// for this key, and the round goes on.
func (f *forwarder) readKeyDates(ctx context.Context) error {
	major := f.client.Major()
	first := f.keyDatesRead != f.keyID
	if !first && f.keyDates.Key == f.keyID && f.keyDates.Major == major && time.Since(f.keyDates.Read) < keyDatesRefresh {
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
	if f.keyDates.Key == f.keyID { // worked before 18: carried on after the upgrade
		d.Before18 = f.keyDates.madeBefore18()
	}
	if major > 0 && major < 18 {
		d.Before18 = major
	}
	switch {
	case d.Known && d.Before18 > 0:
		// The agent's key has no date (made before 18): the dates of
		// the bot user's other keys are not its own, and would warn of
		// an expiry it never comes to (a new key made on 18 beside it).
	case d.Known:
		for _, e := range got.Expires {
			if e.After(d.Read.Add(-expirySlack)) { // not a key Odoo already refuses
				d.Expires = append(d.Expires, e)
			}
		}
		d.Persistent = got.Persistent
	case err != nil && first && d.Before18 == 0:
		f.a.log.Info("odoo does not show the bot user's API keys' expiration dates: a refused key will be called expired without them",
			"component", "forwarder", "err", err)
	}
	f.keyDatesRead = f.keyID
	f.keyDates = d
	f.mu.Lock()
	f.link.KeyExpires = d.Expires
	f.mu.Unlock()
	if b, jerr := json.Marshal(d); jerr == nil {
		_ = f.a.buf.PutMeta(ctx, buffer.KV{Key: keyDatesKey, Value: b})
	}
	return nil
}

// keyLikelyExpired reports whether the refusal now of key keyID, which
// worked before, is most likely its expiry (status's key_expired): not on
// Odoo 17, whose keys do not expire, nor for a key that worked with 17
// (made before 18, it has no expiration date: revoked or replaced); on 18+
// when one of the bot user's keys was to expire by now — else it was
// revoked, its user archived, or (JSON-RPC) its login renamed, which the
// messages name. Without the dates (Odoo did not show them, or never while
// this key worked) expiry, which every non-admin key of 18+ comes to, is
// taken as the likeliest. The Odoo is the one that refused it, as it
// answered then (f.link.Version), else the one the dates were read from.
// why says what tells it is not expiry ("" when it may be).
func (f *forwarder) keyLikelyExpired(keyID string, now time.Time) (expired bool, why string) {
	d := f.keyDates
	if d.Key != keyID {
		d = keyDates{}
	}
	major := cmp.Or(odoo.MajorOf(f.link.Version), d.Major)
	switch {
	case major > 0 && major < 18:
		return false, fmt.Sprintf("Odoo %d's keys do not expire", major)
	case d.madeBefore18() > 0:
		return false, fmt.Sprintf("it worked with Odoo %d, so it was made before Odoo 18 and has no expiration date", d.madeBefore18())
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

// soonestExpiry is the first of expires after now (zero: none). Odoo does
// not say which of the bot user's keys is the one in use, so the agent
// takes the soonest to expire as its own: one already past is another
// key's, as Odoo still takes the agent's.
func soonestExpiry(expires []time.Time, now time.Time) time.Time {
	var first time.Time
	for _, e := range expires {
		if e.After(now) && (first.IsZero() || e.Before(first)) {
			first = e
		}
	}
	return first
}

// expiresSoon reports whether at (a soonestExpiry) is within
// keyExpiryWarning of now.
func expiresSoon(at, now time.Time) bool {
	return !at.IsZero() && at.Sub(now) <= keyExpiryWarning
}

// warnKeyExpiry logs, once every keyWarnEvery while the key works, that
// the soonest of the bot user's keys expires within keyExpiryWarning, and
// what to do before it does (docs/runbook.md: Rotating the API key).
func (f *forwarder) warnKeyExpiry(now time.Time) {
	if f.keyDates.Key != f.keyID || !f.keyDates.Known {
		return
	}
	at := soonestExpiry(f.keyDates.Expires, now)
	if !expiresSoon(at, now) || now.Sub(f.keyWarned) < keyWarnEvery && !f.keyWarned.IsZero() {
		return
	}
	f.keyWarned = now
	_, from, _ := f.a.cfg.Load().OdooAPIKeySource()
	f.a.log.Warn("the odoo API key expires soon, and odoo refuses it from then on: create a new API key for the bot user in Odoo, "+
		"put it where the agent takes its key (key_from) and restart plantedge (docs/runbook.md: Rotating the API key). "+
		"Odoo does not say which of the bot user's keys the agent uses: this is the soonest of them to expire; "+
		"if the agent already uses a newer one, delete the old key in Odoo",
		"component", "forwarder", "expires", at.UTC().Format("2006-01-02 15:04 UTC"), "in", ExpiresIn(at.Sub(now)), "key_from", from)
}

// ExpiresIn says how long until a key or certificate expires: in days
// from two days on (the log, status and validate say it alike).
func ExpiresIn(d time.Duration) string {
	if d >= 48*time.Hour {
		return fmt.Sprintf("%d days", int(d/(24*time.Hour)))
	}
	return max(0, d).Round(time.Minute).String()
}
