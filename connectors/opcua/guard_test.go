package opcua

import (
	"errors"
	"strings"
	"testing"
)

// A panic in a step of a connect (gopcua v0.8.0 activating the nil session
// its CreateSession returns when the server's session signature does not
// verify: guard.go) is the connect's error, not the end of the process; an
// error or success passes through as it is.
func TestGuardPanic(t *testing.T) {
	type session struct{ cert []byte }
	var nilSession *session
	err := guardPanic("connect", func() error {
		_ = nilSession.cert // what gopcua's ActivateSession does with it
		return nil
	})
	if !errors.Is(err, ErrLibraryFailed) || !strings.Contains(err.Error(), "nil pointer dereference") || !strings.Contains(err.Error(), "during connect") {
		t.Errorf("a panic in the connect: %v; want ErrLibraryFailed naming the step and the panic", err)
	}
	other := errors.New("EOF")
	if err := guardPanic("connect", func() error { return other }); err != other {
		t.Errorf("an error of the connect: %v, want it as it is", err)
	}
	if err := guardPanic("connect", func() error { return nil }); err != nil {
		t.Errorf("a connect that succeeds: %v", err)
	}
}
