package opcua

import (
	"context"
	"fmt"
	"reflect"
	"time"
	"unsafe"

	"github.com/gopcua/opcua"
	"github.com/gopcua/opcua/ua"
	"github.com/gopcua/opcua/uasc"
)

// sessionCloseTimeout bounds a CloseSession sent on the way out (a
// session whose activation failed, a stop).
const sessionCloseTimeout = 2 * time.Second

// checkLogin asks the server, on a secure channel of its own, for a
// session with the client's options and activates it with the configured
// identity, then closes it, whatever the answer: nil when the server took
// the login. gopcua's Connect (v0.8.0) creates a session and, when its
// activation fails (a wrong password, an account locked, a user token
// policy the server does not take), closes only the channel: the server
// kept the session, unactivated, and a slot, for its lifetime, one more at
// every refused attempt. Connect cannot be done in steps here — it alone
// starts the client's watch on its channel and its publishing — so the
// login is checked first at every connection (the password may have
// changed on the server since the last; not when activating the session a
// lost connection left took it), with gopcua's own CreateSession and
// ActivateSession (the same requests Connect sends), on a session that is
// closed even when refused. It needs the session configuration and the
// session's authentication token, which gopcua keeps to itself (see
// unexported); without them (another gopcua) there is no check: nil.
func checkLogin(ctx context.Context, endpoint string, opts []opcua.Option) error {
	cfg, err := opcua.ApplyConfig(opts...)
	if err != nil {
		return err
	}
	sc := unexported[*uasc.SessionConfig](cfg, "session")
	if sc == nil || *sc == nil {
		return nil
	}
	c, err := opcua.NewClient(endpoint, opts...)
	if err != nil {
		return err
	}
	defer closeClient(c) // with the session, once activated
	if err := c.Dial(ctx); err != nil {
		return err
	}
	s, err := c.CreateSession(ctx, *sc)
	if err != nil {
		return err
	}
	if s == nil {
		// gopcua's CreateSession when the server's session signature did
		// not verify: no session, no error (guard.go).
		return fmt.Errorf("%w during the login's check: the server's answer to CreateSession did not verify (its certificate, or its signature with it)", ErrLibraryFailed)
	}
	if err := guardPanic("the login's check", func() error { return c.ActivateSession(ctx, s) }); err != nil {
		closeUnactivated(ctx, c, s)
		return err
	}
	return nil
}

// closeUnactivated closes session s of c, which c's ActivateSession did
// not take on (refused, or its answer did not come), with its
// authentication token, over c's channel.
func closeUnactivated(ctx context.Context, c *opcua.Client, s *opcua.Session) {
	res := unexported[*ua.CreateSessionResponse](s, "resp")
	sc := c.SecureChannel()
	if res == nil || *res == nil || sc == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), sessionCloseTimeout)
	defer cancel()
	_ = sc.SendRequest(ctx, &ua.CloseSessionRequest{DeleteSubscriptions: true}, (*res).AuthenticationToken,
		func(ua.Response) error { return nil })
}

// unexported returns a pointer to the field name, of type T, of the struct
// p points to, or nil when it has no such field. gopcua v0.8.0 keeps a
// client's session configuration (Client.cfg, Config.session) and a
// session's settings, authentication token, server nonce and certificate
// (Session.cfg, resp, serverNonce, serverCertificate) and the client's
// current session (Client.atomicSession) unexported; go.mod pins that
// version, and TestUnexportedGopcuaFields fails when they move.
func unexported[T any](p any, name string) *T {
	v := reflect.ValueOf(p)
	if v.Kind() != reflect.Pointer || v.IsNil() || v.Elem().Kind() != reflect.Struct {
		return nil
	}
	f := v.Elem().FieldByName(name)
	if !f.IsValid() || f.Type() != reflect.TypeFor[T]() {
		return nil
	}
	return (*T)(unsafe.Pointer(f.UnsafeAddr()))
}
