// Package opcuatest runs an in-process OPC UA server (gopcua's own server
// package, SecurityPolicy None, anonymous) whose variables a test or
// `plantedge demo` sets by name. It binds to loopback only.
package opcuatest

import (
	"context"
	"fmt"
	"io"
	"log"
	"net"
	"strconv"
	"time"

	"github.com/gopcua/opcua/server"
	"github.com/gopcua/opcua/ua"
)

// Server is a running OPC UA server with one map-backed namespace.
type Server struct {
	srv      *server.Server
	ns       *server.MapNamespace
	endpoint string
}

// Start starts a server on 127.0.0.1:port (0 picks a free port) with the
// given initial variables, addressable as "ns=<NS()>;s=<name>".
func Start(ctx context.Context, port int, vars map[string]any) (*Server, error) {
	if port == 0 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("pick a port: %w", err)
		}
		port = l.Addr().(*net.TCPAddr).Port
		l.Close()
	}
	// gopcua's server prints its node-set import through the standard
	// logger; keep that out of test and demo output.
	prev := log.Writer()
	log.SetOutput(io.Discard)
	defer log.SetOutput(prev)
	srv := server.New(
		server.EnableSecurity("None", ua.MessageSecurityModeNone),
		server.EnableAuthMode(ua.UserTokenTypeAnonymous),
		server.EndPoint("127.0.0.1", port),
		server.SetLogger(quiet{}),
	)
	ns := server.NewMapNamespace(srv, "urn:plantedge:sim")
	for k, v := range vars {
		ns.Data[k] = v
	}
	if err := srv.Start(ctx); err != nil {
		return nil, fmt.Errorf("start opc ua server: %w", err)
	}
	return &Server{srv: srv, ns: ns, endpoint: "opc.tcp://127.0.0.1:" + strconv.Itoa(port)}, nil
}

// Endpoint is the server's opc.tcp URL.
func (s *Server) Endpoint() string { return s.endpoint }

// NS is the namespace index of the simulated variables.
func (s *Server) NS() uint16 { return s.ns.ID() }

// NodeID returns the string node id of a variable.
func (s *Server) NodeID(name string) string { return fmt.Sprintf("ns=%d;s=%s", s.ns.ID(), name) }

// Set changes a variable and notifies subscribers.
func (s *Server) Set(name string, v any) { s.ns.SetValue(name, v) }

// Get returns a variable's current value.
func (s *Server) Get(name string) any { return s.ns.GetValue(name) }

// Close stops the server. gopcua's Close can take ~10 s (FIELD-NOTES), so
// it runs in the background and Close returns at once.
func (s *Server) Close() {
	done := make(chan struct{})
	go func() { _ = s.srv.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(100 * time.Millisecond):
	}
}

// quiet discards gopcua server logs.
type quiet struct{}

func (quiet) Debug(string, ...any) {}
func (quiet) Info(string, ...any)  {}
func (quiet) Warn(string, ...any)  {}
func (quiet) Error(string, ...any) {}
