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
