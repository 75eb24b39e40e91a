package opcua

import (
	"context"
	"errors"
	"fmt"

	"github.com/gopcua/opcua"
)

// ErrLibraryFailed is the OPC UA library failing on a server's answers
// during a connect (a panic in it, or no session and no error), returned
// as the connect's error.
var ErrLibraryFailed = errors.New("the OPC UA library failed on the server's answers")

// gopcua v0.8.0's CreateSession, when the server's session signature does
// not verify (its certificate sent as a chain there, a signature made with
// another key), logs it and returns no session and no error; its Connect
// then activates that nil session: a nil dereference that nothing
// recovered, so one server's answer took the whole agent down, at every
// reconnection (read from gopcua's client.go, CreateSession and
// ActivateSession; node-opcua's test server does not answer so).

// connectGuarded is c.Connect with a panic in it returned as an error: the
// source closes the client and connects again after its backoff, as after
// any failed connect, and the other sources go on.
func connectGuarded(ctx context.Context, c *opcua.Client) error {
	return guardPanic("connect", func() error { return c.Connect(ctx) })
}

// guardPanic runs f, a step of a connect, and returns a panic in it as an
// error wrapping ErrLibraryFailed.
func guardPanic(what string, f func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w during %s (%v): the server's certificate or signature may be one it cannot check — a certificate sent as a chain, or of another kind than RSA", ErrLibraryFailed, what, r)
		}
	}()
	return f()
}
