package agent_test

import (
	"fmt"
	"testing"
	"time"
)

// A machine that publishes its state without a source time. The agent
// takes a stop and its run, stores them, and its PUBACKs never reach the
// broker (as if killed right after the commit): at the next start the
// broker resends both with DUP and their packet identifiers. They are
// copies of messages taken, and book no second line. A DUP the agent never
// took (mochi marks a message queued while the agent was away DUP too) is
// taken.
func TestEndToEndRedeliveredStopAndRunBookOneLine(t *testing.T) {
	p, send, acked := redeliveryPlant(t)
	m := p.machines[0]

	ra := p.startAgentWith(false)
	send(1000, true)
	p.waitState(ra, "running")
	acked("the first message acknowledged", 1)
	p.broker.LoseAcks(true)
	send(1003, false)
	p.waitState(ra, "stopped")
	send(1005, true)
	m.stops++
	p.waitExact(ra, 20*time.Second)
	ra.stop()
	if n := p.broker.AcksLost(); n != 2 {
		t.Fatalf("%d PUBACKs lost, want the stop's and the run's", n)
	}
	p.broker.LoseAcks(false)

	ra = p.startAgentWith(false) // the broker resends the stop and the run, DUP
	acked("the resent stop and run acknowledged", 3)
	if s := ra.a.Status().Machines[0].State; s != "running" {
		t.Errorf("after the redelivery the machine is %q, want running", s)
	}
	p.waitExact(ra, 20*time.Second)
	ra.stop()

	send(1007, false) // a stop while the agent is away: mochi resends it DUP
	ra = p.startAgentWith(false)
	p.waitState(ra, "stopped")
	acked("the stop queued while away acknowledged", 4)
	send(1009, true)
	m.stops++
	p.waitExact(ra, 20*time.Second)
	if n := p.closedLines("press-1"); n != 2 {
		t.Errorf("%d downtime lines, want 2", n)
	}
}

// mochi numbers a connection's messages from 1 again at every connect,
// and sends a message queued for the session while the agent was away
// with DUP set, the first time, with an identifier counted on from the
// connection it was queued for. A stop and its run taken in one connection
// (identifiers 1 and 2), then a connection that brings nothing (the agent
// restarted, say), then a stop and its run queued while the agent is away
// again with the same payloads (no piece made between): they come as DUP
// with identifiers 1 and 2, a pair the agent has taken before, yet they are
// a new stop and run, not copies (the review of the packet-id dedupe: the
// stop and the run were dropped, "downtime lines 1 want 2").
func TestEndToEndNewStopQueuedWhileAwayWithIdentifiersGivenAgainIsBooked(t *testing.T) {
	p, send, acked := redeliveryPlant(t)
	m := p.machines[0]

	ra := p.startAgentWith(false)
	send(1000, true) // identifier 1 of this connection
	p.waitState(ra, "running")
	acked("the run acknowledged", 1)
	ra.stop()

	ra = p.startAgentWith(false) // the identifiers start again at 1
	send(1005, false)            // 1
	p.waitState(ra, "stopped")
	send(1005, true) // 2
	m.stops++
	p.waitExact(ra, 20*time.Second)
	acked("the stop and the run acknowledged", 3)
	ra.stop()

	ra = p.startAgentWith(false) // a connection that brings nothing
	ra.stop()

	send(1005, false) // queued for the last connection: 1, DUP
	nextSecond()      // (mochi's resend order)
	send(1005, true)  // 2, DUP
	m.stops++
	ra = p.startAgentWith(false)
	acked("the stop and the run queued while away acknowledged", 5)
	p.waitExact(ra, 20*time.Second)
	if n := p.closedLines("press-1"); n != 2 {
		t.Errorf("%d downtime lines, want 2", n)
	}
}

// A gateway that repeats a machine's state without a source time (every
// second, say): a repeat changes nothing, and costs no buffer commit (the
// packet-id dedupe made one per repeat, with its fsync: 50 for 50). Its
// record goes into the buffer with the machine's next write; until then a
// copy resent after a crash changes nothing taken again either. A stop, a
// repeat of it and the run, their PUBACKs lost, resent at the next start,
// book one line.
func TestEndToEndRepeatedStateCostsNoCommitAndItsCopyIsKnown(t *testing.T) {
	p, send, acked := redeliveryPlant(t)
	m := p.machines[0]
	commits := func() float64 {
		t.Helper()
		v, ok := metric(p.metrics(), "plantedge_ingest_commit_seconds_count")
		if !ok {
			t.Fatal("no plantedge_ingest_commit_seconds_count")
		}
		return v
	}

	ra := p.startAgentWith(false)
	send(1000, true)
	p.waitState(ra, "running")
	send(1001, true) // a piece
	acked("the first messages acknowledged", 2)
	p.waitExact(ra, 20*time.Second)
	before := commits()
	for i := range 50 { // one at a time, as a gateway repeating every second sends them
		send(1001, true)
		acked("the repeat acknowledged", int64(3+i))
	}
	if n := commits() - before; n != 0 {
		t.Errorf("%v buffer commits for 50 repeats of the state, want 0", n)
	}

	p.broker.LoseAcks(true)
	send(1001, false)
	p.waitState(ra, "stopped")
	send(1001, false) // a repeat: its record rides with the run's write
	send(1001, true)
	m.stops++
	p.waitExact(ra, 20*time.Second)
	ra.stop()
	if n := p.broker.AcksLost(); n != 3 {
		t.Fatalf("%d PUBACKs lost, want the stop's, its repeat's and the run's", n)
	}
	p.broker.LoseAcks(false)

	ra = p.startAgentWith(false) // all three resent, DUP
	acked("the three resent acknowledged", 55)
	p.waitExact(ra, 20*time.Second)
	if n := p.closedLines("press-1"); n != 1 {
		t.Errorf("%d downtime lines, want 1", n)
	}
	if s := ra.a.Status().Machines[0].State; s != "running" {
		t.Errorf("after the redelivery the machine is %q, want running", s)
	}
}

// redeliveryPlant is plantWithoutSourceTimes with what the redelivery tests
// do: send publishes the machine's good count and run state, acked waits
// until the broker has n PUBACKs.
// nextSecond waits until the clock's second changes. mochi resends a
// kept session's queue sorted by the second each message came in
// (inflight.go GetAll: uint16(Created), an unstable sort), in no
// particular order within one second, where Mosquitto keeps publish
// order (MQTT-4.6.0-1); without source times a run resent before its stop
// reads as a machine that stopped (the flake: "downtime lines 1 want 2",
// 2 of 6 runs on a quiet machine, both messages resent run first).
// Messages queued in different seconds come in the order sent.
func nextSecond() {
	for s := time.Now().Unix(); time.Now().Unix() == s; {
		time.Sleep(10 * time.Millisecond)
	}
}

func redeliveryPlant(t *testing.T) (p *plant, send func(good int64, running bool), acked func(what string, n int64)) {
	p = plantWithoutSourceTimes(t)
	m := p.machines[0]
	send = func(good int64, running bool) { t.Helper(); p.publishState(m, good, running, false, 1) }
	acked = func(what string, n int64) {
		t.Helper()
		waitFor(t, 10*time.Second, what, func() (bool, string) {
			got := p.broker.Acked()
			return got >= n, fmt.Sprintf("%d acknowledged, want %d", got, n)
		})
	}
	return p, send, acked
}
