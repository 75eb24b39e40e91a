package agent

import (
	"context"
	"errors"
	"testing"
	"time"
)

// A request whose caller is gone: withdrawn while no round holds it
// ("nothing was changed" is then true); held by a round that does not
// answer in time, it says that it may still be done (the re-review's M3:
// "nothing was changed", and the correction was accepted 5 s later); and
// the round's later answer blocks nothing.
func TestAcceptQtyCallerGone(t *testing.T) {
	defer func(g time.Duration) { acceptGrace = g }(acceptGrace)
	acceptGrace = 200 * time.Millisecond
	f := &forwarder{kick: make(chan struct{}, 1)}

	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := f.AcceptQty(ctx, "m1"); !errors.Is(err, context.DeadlineExceeded) || len(f.accept) != 0 {
		t.Errorf("no round took it: %v, waiting %d; want withdrawn", err, len(f.accept))
	}

	ctx2, cancel2 := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel2()
	done := make(chan error, 1)
	go func() {
		_, err := f.AcceptQty(ctx2, "m1")
		done <- err
	}()
	var held map[string]*acceptReq
	for held == nil || held["m1"] == nil { // a round takes it
		time.Sleep(time.Millisecond)
		if h := f.takeAccepts(); h != nil {
			held = h
		}
	}
	if err := <-done; !errors.Is(err, errAcceptPending) {
		t.Errorf("held by a round past the grace: %v, want errAcceptPending", err)
	}
	held["m1"].done <- acceptAnswer{} // the round's late answer: buffered, no one blocks
}

// An accept-qty or rebook waiting for a round when the agent begins to stop
// is answered at once that nothing was changed, and one asked of a
// stopping agent is refused: no round will come (the lifecycle review:
// each waited out its time, made the stop 2 s longer, and the operator was
// told the agent was not running). A rebook no round took before its
// caller stopped waiting is withdrawn, and says so: it was reported as
// going on.
func TestAcceptAndRebookAtTheStop(t *testing.T) {
	f := &forwarder{kick: make(chan struct{}, 1), stopCh: make(chan struct{})}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := f.Rebook(ctx, time.Now(), true); !errors.Is(err, errRebookNotTaken) || f.rebook != nil {
		t.Errorf("a rebook no round took: %v, waiting %v; want errRebookNotTaken, withdrawn", err, f.rebook)
	}

	accepted, rebooked := make(chan error, 1), make(chan error, 1)
	go func() {
		_, err := f.AcceptQty(context.Background(), "m1")
		accepted <- err
	}()
	go func() {
		_, err := f.Rebook(context.Background(), time.Now(), false)
		rebooked <- err
	}()
	for waiting := false; !waiting; {
		time.Sleep(time.Millisecond)
		f.mu.Lock()
		waiting = f.accept["m1"] != nil && f.rebook != nil
		f.mu.Unlock()
	}
	f.beginStop()
	if err := <-accepted; !errors.Is(err, errAgentStopping) {
		t.Errorf("accept-qty waiting at the stop: %v, want errAgentStopping", err)
	}
	if err := <-rebooked; !errors.Is(err, errAgentStopping) {
		t.Errorf("rebook waiting at the stop: %v, want errAgentStopping", err)
	}
	if _, err := f.AcceptQty(context.Background(), "m2"); !errors.Is(err, errAgentStopping) {
		t.Errorf("accept-qty asked of a stopping agent: %v", err)
	}
	if _, err := f.Rebook(context.Background(), time.Now(), false); !errors.Is(err, errAgentStopping) {
		t.Errorf("rebook asked of a stopping agent: %v", err)
	}
}
