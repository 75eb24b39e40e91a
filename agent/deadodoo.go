package agent

import (
	"cmp"
	"encoding/json"
	"fmt"
	"slices"

	"github.com/plantedge/plantedge/buffer"
)

// deadOdooMetaKey keeps which Odoo refused which dead letters: a dead
// letter is tied to the Odoo that refused it, so that a retry after the
// agent was pointed at another one does not book it there (the fifth
// self-probe: +14 pieces, where dead letters held a write in doubt that had
// landed in the old database). Its value is a list of deadOdooSpan in
// order, one for each switch of Odoo that left dead letters behind; dead
// letters newer than the last span are the buffer file's Odoo's
// (odooMetaKey). Dead-letter ids only grow, so a span is their upper bound.
const deadOdooMetaKey = "deadletters/odoo"

// deadOdooSpan: the dead letters up to UpTo (and after the span before)
// were refused by Odoo (an odooIdentity).
type deadOdooSpan struct {
	UpTo uint64 `json:"up_to"`
	Odoo string `json:"odoo"`
}

// deadOdoo says which Odoo refused a dead letter.
type deadOdoo struct {
	spans []deadOdooSpan
	file  string // the buffer file's Odoo: what refused the ones after the spans
}

func loadDeadOdoo(buf *buffer.Queue) (deadOdoo, error) {
	var d deadOdoo
	file, err := buf.Meta(odooMetaKey)
	if err != nil {
		return d, err
	}
	d.file = string(file)
	b, err := buf.Meta(deadOdooMetaKey)
	if err != nil || len(b) == 0 {
		return d, err
	}
	if err := json.Unmarshal(b, &d.spans); err != nil {
		return d, fmt.Errorf("decode %s: %w", deadOdooMetaKey, err)
	}
	return d, nil
}

// of is the Odoo that refused dead letter id: unrecordedOdoo in a file
// that does not record its Odoo (an older plantedge's, until the agent has
// checked its state against the Odoo named: the self-probe retried them
// offline into another).
func (d deadOdoo) of(id uint64) string {
	for _, s := range d.spans {
		if id <= s.UpTo {
			return s.Odoo
		}
	}
	return cmp.Or(d.file, unrecordedOdoo)
}

// leaving is the meta value that ties the dead letters there are now to
// was, the Odoo the agent switches away from (nil: no change). Spans of
// dead letters no longer there are forgotten.
func (d deadOdoo) leaving(buf *buffer.Queue, was string) (*buffer.KV, error) {
	latest, ok, err := buf.LatestDeadLetter()
	if err != nil {
		return nil, err
	}
	first, err := buf.DeadLetterPage(0, 1)
	if err != nil {
		return nil, err
	}
	var spans []deadOdooSpan
	if len(first) > 0 {
		for _, s := range d.spans {
			if s.UpTo >= first[0].ID {
				spans = append(spans, s)
			}
		}
	}
	if n := len(spans); ok && (n == 0 || spans[n-1].UpTo < latest.ID) {
		if n > 0 && spans[n-1].Odoo == was {
			spans[n-1].UpTo = latest.ID
		} else {
			spans = append(spans, deadOdooSpan{UpTo: latest.ID, Odoo: was})
		}
	}
	if slices.Equal(spans, d.spans) {
		return nil, nil
	}
	if len(spans) == 0 {
		return &buffer.KV{Key: deadOdooMetaKey}, nil
	}
	return &buffer.KV{Key: deadOdooMetaKey, Value: mustJSON(spans)}, nil
}

// ElsewhereError is a retry of one dead letter that another Odoo than the
// one the agent sends to refused.
type ElsewhereError struct {
	ID       uint64
	Odoo, To string
}

func (e *ElsewhereError) Error() string {
	return fmt.Sprintf("dead letter %d was refused by another Odoo (%s) than the one the agent sends to (%s): retried, it would be booked in this one. %s",
		e.ID, e.Odoo, e.To, ElsewhereAdvice([]string{e.Odoo}))
}

// ElsewhereAdvice says what to do with dead letters refused by the Odoos
// named.
func ElsewhereAdvice(odoos []string) string {
	if slices.Contains(odoos, unrecordedOdoo) {
		// The check is made when the agent first reaches Odoo, which may
		// be a while after its start (an upgrade's request-limit hold: the
		// upgrade probe read "start the agent" of an agent running).
		return "Which Odoo refused those the buffer file does not record yet (an older plantedge wrote it): the agent checks the file " +
			"against the Odoo it sends to when it first reaches it (start it if it is stopped; if it runs, wait until status shows " +
			"Odoo online), then retry again; should they still be kept and be of that Odoo, retry them with --here; else drop them"
	}
	return "Retry them once the agent is pointed back there, or drop them; --here retries them anyway (the same database under another address)"
}
