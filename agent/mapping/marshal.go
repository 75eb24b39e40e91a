package mapping

import (
	"math"
	"slices"

	"github.com/plantedge/plantedge/internal/jsonenc"
)

// appendCountersOnly appends the JSON of a state that holds counters and
// nothing else (a machine that only counts, the most common one), byte
// for byte as encoding/json writes it: the agent stores a changed
// machine's state with every commit, and encoding/json took 3 µs a
// counter (about a third of the ingest loop's CPU in the IngestOPCUA
// benchmark). False for any other state, or a value encoding/json would
// escape or refuse: Marshal then leaves it to encoding/json.
// TestMarshalFastPath holds it to encoding/json's output.
func appendCountersOnly(b []byte, ms *MachineState) ([]byte, bool) {
	if ms.Running != nil || !ms.RunningTime.IsZero() || ms.RunPending != nil || !ms.StopStart.IsZero() ||
		!ms.StopRecv.IsZero() || ms.StopSeen != (MachineState{}).StopSeen || ms.LineOpened || ms.LineSite != "" ||
		ms.LineKey != 0 || ms.StopWorkcenter != "" || ms.Reason != "" || ms.ReasonSet || !ms.ReasonTime.IsZero() ||
		ms.PrevReason != "" || !ms.ReasonChanged.IsZero() || ms.LastStop != nil || len(ms.Recent) > 0 ||
		len(ms.Delivered) > 0 || ms.Hist != nil || ms.BirthStop != nil || ms.StopAtBirth || !ms.StopAfter.IsZero() ||
		ms.EndAtBirth != nil || ms.OnAtBirth != nil {
		return b, false
	}
	if len(ms.Counters) == 0 {
		return append(b, "{}"...), true
	}
	var sigs [4]Signal
	keys := sigs[:0]
	for sig := range ms.Counters {
		keys = append(keys, sig)
	}
	slices.Sort(keys) // encoding/json writes a map's keys sorted
	b = append(b, `{"counters":{`...)
	ok := true
	for i, sig := range keys {
		if i > 0 {
			b = append(b, ',')
		}
		if b, ok = jsonenc.String(b, string(sig)); !ok {
			return b, false
		}
		b = append(b, ':')
		if b, ok = appendCounter(b, ms.Counters[sig]); !ok {
			return b, false
		}
	}
	return append(b, "}}"...), true
}

// appendCounter appends c's JSON as encoding/json writes it (its fields
// in order, omitempty and omitzero as tagged); false where it would
// escape or refuse a value.
func appendCounter(b []byte, c *CounterState) ([]byte, bool) {
	if c == nil {
		return append(b, "null"...), true
	}
	o := jsonenc.Begin(b)
	// The members before "last" change only with the mapping: their
	// bytes are kept (enc.head) while those strings stay the same.
	if e := c.enc; e == nil || e.replaced != c.Replaced || e.src != c.Src || e.server != c.Server {
		h := jsonenc.Begin(nil)
		if c.Replaced != "" {
			h.String("replaced", c.Replaced)
		}
		h.String("src", c.Src)
		if c.Server != "" {
			h.String("server", c.Server)
		}
		head, ok := h.End()
		c.enc = &counterEnc{replaced: c.Replaced, src: c.Src, server: c.Server, head: head[1 : len(head)-1], headOK: ok}
		if e != nil {
			c.enc.steps, c.enc.stepsJSON, c.enc.stepsOK = e.steps, e.stepsJSON, e.stepsOK
		}
	}
	o.Members(c.enc.head, c.enc.headOK)
	o.Float("last", c.Last)
	if !c.Time.IsZero() {
		o.Time("time", c.Time)
	}
	if c.ResetFrom != 0 {
		o.Float("reset_from", c.ResetFrom)
	}
	if !c.ResetTime.IsZero() {
		o.Time("reset_time", c.ResetTime)
	}
	if !c.ResetFromTime.IsZero() {
		o.Time("reset_from_time", c.ResetFromTime)
	}
	if c.ResetWrap {
		o.Bool("reset_wrap", true)
	}
	var seen []byte // Seen's value as written
	if !c.Seen.IsZero() {
		o.Key("seen")
		at := len(o.Bytes())
		b, ok := jsonenc.Time(o.Bytes(), c.Seen)
		o.Set(b, ok)
		seen = b[at:]
	}
	if !c.SeenRecv.IsZero() {
		if c.SeenRecv == c.Seen && seen != nil {
			// The same time (a value without a source time): the same bytes.
			o.Key("seen_recv")
			o.Set(append(o.Bytes(), seen...), true)
		} else {
			o.Time("seen_recv", c.SeenRecv)
		}
	}
	if !c.BehindTime.IsZero() {
		o.Time("behind_time", c.BehindTime)
	}
	if c.BehindCount != 0 {
		o.Int("behind_count", int64(c.BehindCount))
	}
	if len(c.Steps) > 0 {
		// The steps change at most once a rateMinGap: their bytes are
		// kept (enc.stepsJSON) while they stay the same.
		if e := c.enc; !sameSteps(e.steps, c.Steps) {
			b := []byte{'['}
			ok := true
			for i, st := range c.Steps {
				if i > 0 {
					b = append(b, ',')
				}
				s := jsonenc.Begin(b)
				s.Float("d", st.D)
				s.Float("s", st.S)
				var sok bool
				b, sok = s.End()
				ok = ok && sok
			}
			// A new counterEnc: one that a copy of c holds stays as it was.
			c.enc = &counterEnc{replaced: e.replaced, src: e.src, server: e.server, head: e.head, headOK: e.headOK,
				steps: slices.Clone(c.Steps), stepsJSON: append(b, ']'), stepsOK: ok}
		}
		o.Key("steps")
		o.Set(append(o.Bytes(), c.enc.stepsJSON...), c.enc.stepsOK)
	}
	if !c.StepAt.IsZero() {
		o.Time("step_at", c.StepAt)
	}
	if c.StepD != 0 {
		o.Float("step_d", c.StepD)
	}
	if c.JustReset {
		o.Bool("just_reset", true)
	}
	if c.Watch != 0 {
		o.Uint("watch", c.Watch)
	}
	return o.End()
}

// counterEnc is what appendCounter keeps of a counter's JSON between
// calls: the bytes of the members that seldom change, with the values
// they were written from. Never changed once made (a copy of the
// CounterState shares it): a change makes a new one.
type counterEnc struct {
	replaced, src, server string
	head                  []byte // "replaced", "src" and "server", without braces
	headOK                bool
	steps                 []RateStep // (a copy)
	stepsJSON             []byte
	stepsOK               bool
}

// sameSteps reports whether a and b hold the same steps, bit for bit (-0
// is written otherwise than 0).
func sameSteps(a, b []RateStep) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if math.Float64bits(a[i].D) != math.Float64bits(b[i].D) || math.Float64bits(a[i].S) != math.Float64bits(b[i].S) {
			return false
		}
	}
	return true
}
