package agent

import (
	"context"
	"strconv"
	"strings"

	"github.com/plantedge/plantedge/buffer"
	"github.com/plantedge/plantedge/internal/decimal"
)

// decimalsMetaKey marks a buffer file whose stored quantities are exact
// decimals (internal/decimal): its work orders' counts, its scrap carries.
// A file without it was written by an older version, whose float64 sums
// carry noise; upgradeDecimals reads them once as that version did.
const decimalsMetaKey = "decimals"

// upgradeDecimals reads the quantities an older version stored (a work
// order's count and baseline, the pieces counted when an edit was written
// over, a scrap carry) as that version read them — to 12 significant
// digits — and stores them as their decimals, with the mark, in one
// transaction; a file with the mark, or a new one, only gets the mark.
// Read as exact decimals instead, one sum in 20 or so of an older
// version's would book 0.01 less than it did (297 steps of 0.005 stored as
// 1.4849999999999903, an ulp from 1.48499999999999: booked 1.48, not
// 1.49). States that do not read are left to loadWOState to say.
func (a *Agent) upgradeDecimals(ctx context.Context) error {
	if b, err := a.buf.Meta(decimalsMetaKey); err != nil || len(b) > 0 {
		return err
	}
	var kvs []buffer.KV
	err := a.buf.MetaPrefix("wo/", func(key string, value []byte) error {
		st, err := decodeWOState(value)
		if err != nil {
			return nil
		}
		was := st
		st.Counted, st.Baseline = decimal.Legacy(st.Counted), decimal.Legacy(st.Baseline)
		if st.Replaced != nil {
			r := *st.Replaced
			r.Counted = decimal.Legacy(r.Counted)
			st.Replaced = &r
		}
		if st.Counted != was.Counted || st.Baseline != was.Baseline || st.Replaced != nil && st.Replaced.Counted != was.Replaced.Counted {
			kvs = append(kvs, woStateKV(strings.TrimPrefix(key, "wo/"), st))
		}
		return nil
	})
	if err != nil {
		return err
	}
	err = a.buf.MetaPrefix("scrapcarry/", func(key string, value []byte) error {
		v, err := strconv.ParseFloat(string(value), 64)
		if err != nil {
			return nil // scrapCarry says so
		}
		if l := decimal.Legacy(v); l != v {
			kvs = append(kvs, carryKV(strings.TrimPrefix(key, "scrapcarry/"), l))
		}
		return nil
	})
	if err != nil {
		return err
	}
	err = a.buf.MetaPrefix("scrap/", func(key string, value []byte) error {
		ob, err := decodeScrapOutbox(value)
		if err != nil {
			return nil
		}
		if l := decimal.Legacy(ob.Carry); l != ob.Carry {
			ob.Carry = l
			kvs = append(kvs, buffer.KV{Key: key, Value: mustJSON(ob)})
		}
		return nil
	})
	if err != nil {
		return err
	}
	return a.buf.PutMeta(ctx, append(kvs, buffer.KV{Key: decimalsMetaKey, Value: []byte("1")})...)
}
