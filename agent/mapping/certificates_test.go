package mapping

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/plantedge/plantedge/internal/sptest"
)

// certRig applies Sparkplug samples to a mapper reading the broker's BIRTH
// certificates (sparkplug_certificates), with the connection number, the
// retained and DUP flags of each.
type certRig struct {
	t  *testing.T
	m  *Mapper
	st *State
	at time.Time
	// unstamped: payloads without a timestamp go as they are (else they
	// are stamped with the time they are applied at, as the spec has
	// every BIRTH and DATA stamped).
	unstamped bool
}

func newCertRig(t *testing.T) *certRig {
	cfg := strings.Replace(spConfig, "client_id: pe }", "client_id: pe, sparkplug_certificates: true }", 1)
	return &certRig{t: t, m: newTestMapper(t, cfg), st: NewState(), at: spT0}
}

const (
	rigData  = "spBv1.0/plant/DDATA/edge1/press1"
	rigBirth = "spBv1.0/plant/DBIRTH/edge1/press1"
	rigCert  = "$sparkplug/certificates/spBv1.0/plant/DBIRTH/edge1/press1"
)

func (r *certRig) apply(topic string, conn uint64, retained, dup bool, p sptest.Payload) []Event {
	r.t.Helper()
	r.at = r.at.Add(time.Second)
	if p.Timestamp == 0 && !r.unstamped {
		p.Timestamp = ms(r.at)
	}
	s := spSample(topic, p, r.at)
	s.Conn, s.Initial, s.Duplicate = conn, retained, dup
	evs, _, err := r.m.Apply(r.st, s)
	if err != nil {
		r.t.Fatalf("%s: %v", topic, err)
	}
	return evs
}

func (r *certRig) notes() (kinds []string) {
	for _, n := range r.st.TakeSparkplugNotes() {
		kinds = append(kinds, n.Kind)
	}
	return kinds
}

// rigBirthPayload: Counters/Good and Counters/Scrap Total by the aliases
// given, stamped ts (ms, 0: none).
func rigBirthPayload(good, scrap uint64, v int64, ts uint64) sptest.Payload {
	return sptest.Payload{Seq: 0, Timestamp: ts, Metrics: []sptest.Metric{
		{Name: "Counters/Good", Alias: good, HasAlias: true, Datatype: sptest.UInt32, Value: v},
		{Name: "Counters/Scrap Total", Alias: scrap, HasAlias: true, Datatype: sptest.UInt32, Value: int64(0)},
	}}
}

func rigDataPayload(seq int, alias uint64, v int64, ts uint64) sptest.Payload {
	return sptest.Payload{Seq: seq, Timestamp: ts, Metrics: []sptest.Metric{{Alias: alias, HasAlias: true, Value: v}}}
}

// A BIRTH the broker redelivers (DUP, QoS 1) in a new connection is not
// trusted: it may be older than one sent while the agent was away. The
// retained certificate that comes after it, at the subscription, is the
// broker's last BIRTH: it should give the map. It is skipped instead, as
// if the untrusted BIRTH were as new, and DATA by alias waits for a BIRTH
// (and asks the edge node for one) although the certificate named them.
func TestSparkplugCertificateAfterDuplicateBirth(t *testing.T) {
	r := newCertRig(t)
	r.apply(rigBirth, 1, false, false, rigBirthPayload(7, 8, 100, 0))
	r.apply(rigData, 1, false, false, rigDataPayload(1, 7, 101, 0))
	// Reconnect: the DBIRTH (aliases 7/8) is redelivered with DUP; the
	// edge node had re-aliased meanwhile (Good 9), which the retained
	// certificate says.
	r.apply(rigBirth, 2, false, true, rigBirthPayload(7, 8, 101, 0))
	r.apply(rigCert, 2, true, false, rigBirthPayload(9, 10, 105, 0))
	r.notes()
	evs := r.apply(rigData, 2, false, false, rigDataPayload(5, 9, 108, 0))
	if w := r.st.SparkplugWaiting(); len(w) != 0 || spCount(evs, "p1", GoodCount) != 7 {
		t.Errorf("waiting for a BIRTH %v, notes %v, events %+v: the certificate after the redelivered BIRTH was not taken", w, r.notes(), evs)
	}
	if rs := r.st.TakeSparkplugRebirths(); len(rs) != 0 {
		t.Errorf("a rebirth asked for although the certificate named the aliases: %+v", rs)
	}
}

// A retained copy of a BIRTH that comes after a live copy of a newer one
// in the same connection (a broker that sends retained messages at the
// subscription asynchronously — HiveMQ, EMQX before 6.1.1, aedes — while
// the edge node rebirths) replaced the newer map: its DATA by alias was
// then read by the old map — its good count (alias 9 now) read by the
// alias that was scrap before, and scrap counted as good. So for a
// certificate, and for a BIRTH on the edge node's own topic that it
// publishes retained (against the spec, but seen).
func TestSparkplugRetainedBirthAfterLiveCopy(t *testing.T) {
	for _, topic := range []string{rigCert, rigBirth} {
		t.Run(strings.SplitN(topic, "/", 2)[0], func(t *testing.T) {
			r := newCertRig(t)
			// The live copy of the BIRTH just sent (Good 9, Scrap 10) ...
			r.apply(topic, 1, false, false, rigBirthPayload(9, 10, 200, ms(spT0.Add(time.Hour))))
			// ... then the retained one, as the broker had it at the
			// subscription (Good 10, Scrap 9: the BIRTH before).
			r.apply(topic, 1, true, false, rigBirthPayload(10, 9, 100, ms(spT0)))
			r.apply(rigData, 1, false, false, rigDataPayload(1, 9, 200, ms(spT0.Add(time.Hour+time.Second))))
			evs := r.apply(rigData, 1, false, false, rigDataPayload(2, 9, 205, ms(spT0.Add(time.Hour+2*time.Second))))
			if g, s := spCount(evs, "p1", GoodCount), spCount(evs, "p1", ScrapCount); g != 5 || s != 0 {
				t.Errorf("good %v, scrap %v; want 5 good by the newer map: %+v", g, s, evs)
			}
		})
	}
}

// The BIRTH in the certificate is stamped by the edge node's clock; a
// clock stepped back after it (a gateway that booted with its clock ahead,
// then set by NTP) stamps every DATA before it. Each is then taken for one
// queued under an earlier BIRTH: its values by alias are skipped, nothing
// waits, no rebirth is asked for, status shows nothing — the counter
// stands still until the edge node's next BIRTH (and a reconnect brings
// the same certificate back).
//
// Fixed: a DATA stamped before the certificate's BIRTH waits for a BIRTH
// as any alias without a current map (shown; asked for with
// sparkplug_rebirth).
func TestSparkplugCertificateClockSteppedBack(t *testing.T) {
	r := newCertRig(t)
	birthAt := spT0.Add(time.Hour) // the clock an hour ahead at the BIRTH
	r.apply(rigCert, 1, true, false, rigBirthPayload(7, 8, 100, ms(birthAt)))
	r.notes()
	var good float64
	for i := range 10 {
		evs := r.apply(rigData, 1, false, false, rigDataPayload(10+i, 7, int64(500+i), ms(spT0.Add(time.Duration(i+1)*time.Minute))))
		good += spCount(evs, "p1", GoodCount)
	}
	kinds := r.notes()
	if good == 0 && len(r.st.SparkplugWaiting()) == 0 && len(r.st.TakeSparkplugRebirths()) == 0 {
		t.Errorf("10 DATA stamped after the clock step: nothing counted, nothing waiting, no rebirth asked for (notes %v): the counter stands still unseen", kinds)
	}
	if !slices.Contains(kinds, "alias") {
		t.Errorf("notes %v", kinds)
	}
}

// A DATA queued for the agent's session under an earlier BIRTH and
// delivered after the retained certificate (a backlog longer than the
// broker's inflight window: Mosquitto sends the rest of it after the
// SUBSCRIBE's retained messages) is told apart only by its payload
// timestamp. One without (an edge node that leaves it out, against the
// spec) is read by the certificate's aliases: under the earlier BIRTH
// alias 7 was good, under the certificate's it is scrap.
//
// Fixed: a certificate's aliases are read only in a DATA stamped at or
// after its BIRTH, until one is.
func TestSparkplugQueuedDataWithoutTimestampAfterCertificate(t *testing.T) {
	r := newCertRig(t)
	r.apply(rigBirth, 1, false, false, rigBirthPayload(7, 8, 100, 0))
	r.apply(rigData, 1, false, false, rigDataPayload(1, 7, 101, 0))
	// Reconnect: the certificate (re-aliased while the agent was away:
	// Good 8, Scrap 7), then the backlog's rest, sent under the old BIRTH.
	r.apply(rigCert, 2, true, false, rigBirthPayload(8, 7, 150, ms(spT0.Add(time.Hour))))
	r.unstamped = true
	evs := r.apply(rigData, 2, false, false, rigDataPayload(3, 7, 104, 0))
	if s := spCount(evs, "p1", ScrapCount); s != 0 {
		t.Errorf("a queued good count read as %v scrap by the certificate's aliases: %+v", s, evs)
	}
}

// A BIRTH that gives one alias to two metrics (against the spec: aliases
// are unique) leaves a DATA by that alias ambiguous. Before 7aba33a the
// metric named last took the alias (here one no signal reads: not
// counted); now the metric a signal reads always does, so the value,
// whichever metric the edge node meant, is counted as good.
//
// Fixed: an alias given to two metrics is read as neither; it waits for
// a BIRTH, said so.
func TestSparkplugBirthAliasGivenTwice(t *testing.T) {
	m := newTestMapper(t, spConfig)
	st := NewState()
	b := sptest.Payload{Seq: 1, Metrics: []sptest.Metric{
		{Name: "Counters/Good", Alias: 7, HasAlias: true, Datatype: sptest.UInt32, Value: int64(100)},
		{Name: "Folder/Other", Alias: 7, HasAlias: true, Datatype: sptest.UInt32, Value: int64(5)},
	}}
	if _, _, err := m.Apply(st, spSample(rigBirth, b, spT0)); err != nil {
		t.Fatal(err)
	}
	evs, _, err := m.Apply(st, spSample(rigData, sptest.Payload{Seq: 2, Metrics: []sptest.Metric{{Alias: 7, HasAlias: true, Value: int64(107)}}}, spT0.Add(time.Second)))
	if err != nil {
		t.Fatal(err)
	}
	if g := spCount(evs, "p1", GoodCount); g != 0 {
		t.Errorf("a DATA by an alias the BIRTH gave two metrics counted %v good", g)
	}
}
