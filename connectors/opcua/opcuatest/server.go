// Package opcuatest runs an in-process OPC UA server (gopcua's own server
// package, SecurityPolicy None, anonymous unless WithUser) whose variables a test or
// `plantedge demo` sets by name. It binds to loopback only.
package opcuatest

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/gopcua/opcua/id"
	"github.com/gopcua/opcua/server"
	"github.com/gopcua/opcua/ua"
	"github.com/gopcua/opcua/uasc"
)

// Server is a running OPC UA server with one namespace of variables.
// gopcua's MapNamespace reads its map without its lock when notifying
// subscribers (a data race under -race), so the values live here, behind
// our own mutex, and the nodes read them through value functions.
type Server struct {
	srv      *server.Server
	ns       *server.NodeNameSpace
	endpoint string

	mu      sync.Mutex
	vals    map[string]any
	stamped map[string]bool // StampReads

	stop     chan struct{}
	stopOnce sync.Once

	user     string // WithUser: the one user name and password taken
	password string
	refused  int      // logins refused (WithUser)
	listFor  []string // ListFor

	sessions *Sessions
	front    *front // WithChunkSize
}

// Option configures Start.
type Option func(*options)

type options struct {
	before         []otherNS
	uri            string
	user, password string
	maxSessions    int
	chunk          uint32
}

type otherNS struct {
	uri  string
	vars map[string]any
}

// WithNamespaceBefore registers a namespace uri ahead of the server's own,
// holding vars (fixed values), as a server restarted with a namespace added
// in front of the plant's: the plant's variables move up one index, and a
// stale "ns=N;s=name" reads this namespace's variable of that name.
func WithNamespaceBefore(uri string, vars map[string]any) Option {
	return func(o *options) { o.before = append(o.before, otherNS{uri, vars}) }
}

// WithNamespaceURI names the server's own namespace uri instead of
// urn:plantedge:sim, as a server whose project was rebuilt under another
// name: nodes pinned to the old URI are gone from it.
func WithNamespaceURI(uri string) Option {
	return func(o *options) { o.uri = uri }
}

// WithUser makes the server take one user, by name and password, and no
// anonymous session: a session activated with another name or password,
// or anonymously, is refused with BadUserAccessDenied, as a PLC with user
// authentication answers. gopcua's server offers a user name token only on
// a secured endpoint, which it cannot open (FIELD-NOTES), and does not
// check the token it gets: here its SecurityPolicy None endpoint lists a
// user name token (the password then crosses in the clear, as a real
// server allows when configured so) and the server checks it.
func WithUser(user, password string) Option {
	return func(o *options) { o.user, o.password = user, password }
}

// WithMaxSessions makes the server keep at most n sessions open, as a PLC
// with few session slots: a CreateSession beyond them is refused with
// BadTooManySessions (see Sessions).
func WithMaxSessions(n int) Option {
	return func(o *options) { o.maxSessions = n }
}

// WithChunkSize makes the server answer as a server following OPC UA
// Part 6 answers a client that asks for message chunks of n bytes
// (plantedge asks for 8,192): its Acknowledge announces chunks of at most
// n bytes both ways, and an answer longer than a chunk comes in several. gopcua's server, as it
// comes, announces 64 KiB whatever the client asked and sends every answer
// in one chunk; its client, plantedge's, allocates every chunk it reads at
// the size announced. A front in this process relays the connections to
// the server and chunks its answers; the server's endpoints list the
// front's URL (Endpoint) besides its own.
func WithChunkSize(n uint32) Option {
	return func(o *options) { o.chunk = n }
}

// Sessions counts the server's sessions (and holds them to
// WithMaxSessions).
func (s *Server) Sessions() *Sessions { return s.sessions }

// SetPassword changes the password WithUser's user must give from the
// next session on (the account's password changed on the PLC).
func (s *Server) SetPassword(password string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.password = password
}

// ListFor makes a server WithUser list its endpoints also to a client
// that asks for them at url — a proxy in front of the server, as a server
// configured with the address it is reached at behind NAT lists it.
func (s *Server) ListFor(url string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.listFor = append(s.listFor, url)
}

// Refused is how many session activations WithUser refused.
func (s *Server) Refused() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.refused
}

// activateSession checks the identity of a session being activated
// (WithUser) and activates it as gopcua's own handler does with
// SecurityPolicy None: no signature to verify, a fresh nonce.
func (s *Server) activateSession(_ *uasc.SecureChannel, r ua.Request, _ uint32) (ua.Response, error) {
	req, ok := r.(*ua.ActivateSessionRequest)
	if !ok {
		return nil, ua.StatusBadRequestTypeInvalid
	}
	if s.srv.Session(req.RequestHeader) == nil {
		return nil, ua.StatusBadSessionIDInvalid
	}
	var tok *ua.UserNameIdentityToken
	if req.UserIdentityToken != nil {
		tok, _ = req.UserIdentityToken.Value.(*ua.UserNameIdentityToken)
	}
	s.mu.Lock()
	good := tok != nil && tok.EncryptionAlgorithm == "" && tok.UserName == s.user && string(tok.Password) == s.password
	if !good {
		s.refused++
	}
	s.mu.Unlock()
	if !good {
		return nil, ua.StatusBadUserAccessDenied
	}
	nonce := make([]byte, 32)
	if _, err := rand.Read(nonce); err != nil {
		return nil, ua.StatusBadInternalError
	}
	return &ua.ActivateSessionResponse{
		ResponseHeader: okHeader(req.RequestHeader),
		ServerNonce:    nonce,
	}, nil
}

// okHeader is the header of a good answer to a request with header h, as
// gopcua's server writes it.
func okHeader(h *ua.RequestHeader) *ua.ResponseHeader {
	return &ua.ResponseHeader{
		Timestamp:          time.Now(),
		RequestHandle:      h.RequestHandle,
		ServiceResult:      ua.StatusOK,
		ServiceDiagnostics: &ua.DiagnosticInfo{},
		StringTable:        []string{},
		AdditionalHeader:   ua.NewExtensionObject(nil),
	}
}

// getEndpoints answers GetEndpoints (WithUser) as gopcua's own handler
// does, with the user name token policy on each endpoint, which gopcua
// offers only with a secure policy. It answers with copies: the endpoints
// were patched in place after Start before, racing a client that asked at
// once (a source of another test still reconnecting to the port, CI).
func (s *Server) getEndpoints(_ *uasc.SecureChannel, r ua.Request, _ uint32) (ua.Response, error) {
	req, ok := r.(*ua.GetEndpointsRequest)
	if !ok {
		return nil, ua.StatusBadRequestTypeInvalid
	}
	s.mu.Lock()
	other := slices.ContainsFunc(s.listFor, func(u string) bool { return strings.EqualFold(u, req.EndpointURL) })
	s.mu.Unlock()
	eps := []*ua.EndpointDescription{}
	for _, ep := range s.srv.Endpoints() {
		if !other && !strings.EqualFold(ep.EndpointURL, req.EndpointURL) {
			continue
		}
		c := *ep
		if other {
			c.EndpointURL = req.EndpointURL
		}
		c.UserIdentityTokens = []*ua.UserTokenPolicy{{
			PolicyID: "username_none", TokenType: ua.UserTokenTypeUserName, SecurityPolicyURI: ua.SecurityPolicyURINone,
		}}
		eps = append(eps, &c)
	}
	return &ua.GetEndpointsResponse{
		ResponseHeader: okHeader(req.RequestHeader),
		Endpoints:      eps,
	}, nil
}

// Start starts a server on 127.0.0.1:port (0 picks a free port) with the
// given initial variables, addressable as "ns=<NS()>;s=<name>".
func Start(ctx context.Context, port int, vars map[string]any, opts ...Option) (*Server, error) {
	o := options{uri: "urn:plantedge:sim"}
	for _, opt := range opts {
		opt(&o)
	}
	if port != 0 {
		return start(ctx, port, vars, o)
	}
	for try := 1; ; try++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("pick a port: %w", err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		l.Close()
		s, err := start(ctx, port, vars, o)
		// The port was free when picked; the server binds it only once
		// its address space is built (seconds on a loaded machine), and
		// an outgoing connection may have been given it meanwhile (CI:
		// "bind: address already in use"): another one.
		if err == nil || try == 5 || !errors.Is(err, syscall.EADDRINUSE) {
			return s, err
		}
	}
}

// start is Start on a port given.
func start(ctx context.Context, port int, vars map[string]any, o options) (*Server, error) {
	// gopcua's server prints its node-set import through the standard
	// logger; keep that out of test and demo output.
	prev := log.Writer()
	log.SetOutput(io.Discard)
	defer log.SetOutput(prev)
	// gopcua's server listens at its first endpoint. With a front, the
	// front takes port and the server another, both listed.
	var fl net.Listener
	serverPort := port
	if o.chunk != 0 {
		var err error
		if fl, err = net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port)); err != nil {
			return nil, err
		}
		port = fl.Addr().(*net.TCPAddr).Port
		if serverPort, err = freeLoopbackPort(); err != nil {
			fl.Close()
			return nil, err
		}
	}
	sopts := []server.Option{
		server.EnableSecurity("None", ua.MessageSecurityModeNone),
		server.EnableAuthMode(ua.UserTokenTypeAnonymous),
		server.EndPoint("127.0.0.1", serverPort),
		server.SetLogger(quiet{}),
	}
	if fl != nil {
		sopts = append(sopts, server.EndPoint("127.0.0.1", port))
	}
	srv, err := NewServer(sopts...)
	if err != nil {
		if fl != nil {
			fl.Close()
		}
		return nil, err
	}
	for _, other := range o.before {
		ons := server.NewNodeNameSpace(srv, other.uri)
		for k, v := range other.vars {
			ons.AddNewVariableStringNode(k, v)
		}
	}
	ns := server.NewNodeNameSpace(srv, o.uri)
	s := &Server{srv: srv, ns: ns, endpoint: "opc.tcp://127.0.0.1:" + strconv.Itoa(port), vals: map[string]any{}, stamped: map[string]bool{},
		user: o.user, password: o.password}
	if o.user != "" {
		// Registered before Start, it stands instead of gopcua's own.
		srv.RegisterHandler(id.ActivateSessionRequest_Encoding_DefaultBinary, s.activateSession)
		srv.RegisterHandler(id.GetEndpointsRequest_Encoding_DefaultBinary, s.getEndpoints)
	}
	s.sessions = TrackSessions(srv, o.maxSessions)
	// Objects -> the namespace's folder -> the variables, so browse finds them.
	if ns0, err := srv.Namespace(0); err == nil {
		ns0.Objects().AddRef(ns.Objects(), id.HasComponent, true)
	}
	for k, v := range vars {
		s.vals[k] = v
		n := ns.AddNewVariableStringNode(k, func() *ua.DataValue { return s.dataValue(k) })
		ns.Objects().AddRef(n, id.HasComponent, true)
	}
	if err := srv.Start(ctx); err != nil {
		if fl != nil {
			fl.Close()
		}
		return nil, fmt.Errorf("start opc ua server: %w", err)
	}
	if fl != nil {
		s.front = startFront(fl, "127.0.0.1:"+strconv.Itoa(serverPort), o.chunk)
	}
	// gopcua's server never notifies changes of its own clock; a real
	// server does, and plantedge watches it as a heartbeat.
	s.stop = make(chan struct{})
	go Unstick(srv, s.stop)
	go func() {
		t := time.NewTicker(250 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-s.stop:
				return
			case <-t.C:
				srv.ChangeNotification(ua.NewNumericNodeID(0, id.Server_ServerStatus_CurrentTime))
			}
		}
	}()
	return s, nil
}

// Endpoint is the server's opc.tcp URL.
func (s *Server) Endpoint() string { return s.endpoint }

// NS is the namespace index of the simulated variables.
func (s *Server) NS() uint16 { return s.ns.ID() }

// NodeID returns the string node id of a variable.
func (s *Server) NodeID(name string) string { return fmt.Sprintf("ns=%d;s=%s", s.ns.ID(), name) }

// Set changes a variable (one given to Start) and notifies subscribers.
func (s *Server) Set(name string, v any) {
	s.mu.Lock()
	s.vals[name] = v
	s.mu.Unlock()
	s.srv.ChangeNotification(ua.NewStringNodeID(s.ns.ID(), name))
}

// SetAt is Set with a source timestamp: the server's values carry none
// otherwise (gopcua's DataValueFromValue leaves it out of the encoding).
func (s *Server) SetAt(name string, v any, at time.Time) {
	s.Set(name, &ua.DataValue{
		EncodingMask:    ua.DataValueValue | ua.DataValueSourceTimestamp,
		Value:           ua.MustVariant(v),
		SourceTimestamp: at,
	})
}

// StampReads makes the server give variable name's values no source
// timestamp but its own clock's time as their server timestamp, at every
// read and notification, as many servers do (open62541's read stamps the
// server timestamp with the time of the read).
func (s *Server) StampReads(name string) {
	s.mu.Lock()
	s.stamped[name] = true
	s.mu.Unlock()
}

// dataValue is what the server gives of variable name.
func (s *Server) dataValue(name string) *ua.DataValue {
	s.mu.Lock()
	v, stamped := s.vals[name], s.stamped[name]
	s.mu.Unlock()
	if _, ok := v.(*ua.DataValue); stamped && !ok {
		return &ua.DataValue{
			EncodingMask:    ua.DataValueValue | ua.DataValueServerTimestamp,
			Value:           ua.MustVariant(v),
			ServerTimestamp: time.Now(),
		}
	}
	return server.DataValueFromValue(v)
}

// Get returns a variable's current value (a *ua.DataValue when it was set
// as one, by SetAt for instance).
func (s *Server) Get(name string) any {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.vals[name]
}

// Close stops the server. gopcua's Close can take ~10 s (FIELD-NOTES), so
// it runs in the background and Close returns at once.
func (s *Server) Close() {
	s.stopOnce.Do(func() {
		close(s.stop)
		if s.front != nil {
			s.front.close()
		}
	})
	done := make(chan struct{})
	go func() { _ = s.srv.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(100 * time.Millisecond):
	}
}

// ServerGoroutines names the functions of goroutines that gopcua's server
// leaves running after Close (it cannot be shut down cleanly); leak checks
// in tests that use this package ignore them.
var ServerGoroutines = []string{
	"github.com/gopcua/opcua/server.(*Server).acceptAndRegister",
	"github.com/gopcua/opcua/server.(*Server).monitorConnections",
	"github.com/gopcua/opcua/server.(*channelBroker).RegisterConn",
	"github.com/gopcua/opcua/server.(*SubscriptionService).CreateSubscription.func1",
	"github.com/gopcua/opcua/server.(*Subscription).run",
	"github.com/gopcua/opcua/server.(*Subscription).keepalive",
	"github.com/gopcua/opcua/server.(*MonitoredItemService).ChangeNotification",
	"github.com/gopcua/opcua/uasc.(*SecureChannel).dispatcher",
	"github.com/gopcua/opcua/uacp.(*Listener).Accept",
	"github.com/gopcua/opcua/server.(*Server).ChangeNotification",
	"github.com/gopcua/opcua/server.(*channelBroker).readLoop",
	"github.com/gopcua/opcua/server.(*Server).Close",
	// Close's wait for the server's secure channels (seen left after a
	// connection that ended after its Hello).
	"github.com/gopcua/opcua/server.(*channelBroker).Close.func1",
}

// quiet discards gopcua server logs.
type quiet struct{}

func (quiet) Debug(string, ...any) {}
func (quiet) Info(string, ...any)  {}
func (quiet) Warn(string, ...any)  {}
func (quiet) Error(string, ...any) {}
