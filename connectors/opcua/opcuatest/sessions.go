package opcuatest

import (
	"reflect"
	"sync"
	"unsafe"

	"github.com/gopcua/opcua/id"
	"github.com/gopcua/opcua/server"
	"github.com/gopcua/opcua/ua"
	"github.com/gopcua/opcua/uasc"
)

// Sessions counts the sessions of a gopcua server and can hold their
// number to a limit, as a PLC's few session slots do. gopcua v0.8.0's
// server has no session limit, keeps its session table to itself and never
// drops a session whose client went away (no session timeout): a session
// lives here from its CreateSession until its CloseSession, so one a client
// left without closing stays counted for good — what a real server does
// for the session's lifetime. Its own CreateSession and CloseSession still
// do the work: Sessions stands in front of them, refusing a CreateSession
// with BadTooManySessions while the limit is reached.
type Sessions struct {
	create, close server.Handler // gopcua's own

	mu      sync.Mutex
	max     int                 // 0: no limit
	open    map[string]struct{} // authentication tokens of open sessions
	created int                 // sessions created
	refused int                 // CreateSession refused for the limit
	kept    int                 // CloseSession that kept the subscriptions (DeleteSubscriptions false)
}

// TrackSessions puts a Sessions in front of srv's session service; call it
// before srv.Start (gopcua takes the first handler registered for a
// request). max > 0 limits the open sessions.
func TrackSessions(srv *server.Server, max int) *Sessions {
	// gopcua's SessionService has one unexported field, its server; it
	// is set so, the package offering no constructor.
	svc := &server.SessionService{}
	f := reflect.ValueOf(svc).Elem().FieldByName("srv")
	reflect.NewAt(f.Type(), unsafe.Pointer(f.UnsafeAddr())).Elem().Set(reflect.ValueOf(srv))
	s := &Sessions{create: svc.CreateSession, close: svc.CloseSession, max: max, open: map[string]struct{}{}}
	srv.RegisterHandler(id.CreateSessionRequest_Encoding_DefaultBinary, s.createSession)
	srv.RegisterHandler(id.CloseSessionRequest_Encoding_DefaultBinary, s.closeSession)
	return s
}

func (s *Sessions) createSession(sc *uasc.SecureChannel, r ua.Request, reqID uint32) (ua.Response, error) {
	s.mu.Lock()
	if s.max > 0 && len(s.open) >= s.max {
		s.refused++
		s.mu.Unlock()
		return nil, ua.StatusBadTooManySessions
	}
	s.mu.Unlock()
	resp, err := s.create(sc, r, reqID)
	if res, ok := resp.(*ua.CreateSessionResponse); ok && err == nil && res.AuthenticationToken != nil {
		s.mu.Lock()
		s.open[res.AuthenticationToken.String()] = struct{}{}
		s.created++
		s.mu.Unlock()
	}
	return resp, err
}

func (s *Sessions) closeSession(sc *uasc.SecureChannel, r ua.Request, reqID uint32) (ua.Response, error) {
	if req, ok := r.(*ua.CloseSessionRequest); ok && req.RequestHeader != nil && req.RequestHeader.AuthenticationToken != nil {
		s.mu.Lock()
		delete(s.open, req.RequestHeader.AuthenticationToken.String())
		if !req.DeleteSubscriptions {
			s.kept++
		}
		s.mu.Unlock()
	}
	return s.close(sc, r, reqID)
}

// Open is the number of sessions created and not closed.
func (s *Sessions) Open() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.open)
}

// Created is the number of sessions created.
func (s *Sessions) Created() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.created
}

// Refused is the number of CreateSession requests refused for the limit.
func (s *Sessions) Refused() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.refused
}

// KeptSubscriptions is the number of sessions closed without deleting
// their subscriptions.
func (s *Sessions) KeptSubscriptions() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.kept
}

// SetMax changes the limit (0: none); sessions open beyond it stay.
func (s *Sessions) SetMax(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.max = n
}
