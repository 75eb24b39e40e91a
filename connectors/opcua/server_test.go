package opcua

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gopcua/opcua/id"
	"github.com/gopcua/opcua/server"
	"github.com/gopcua/opcua/server/attrs"
	"github.com/gopcua/opcua/ua"

	"github.com/plantedge/plantedge/connectors/opcua/opcuatest"
	"github.com/plantedge/plantedge/internal/nettest"
)

// testNS is the namespace URI of the test server's nodes (index 1).
const testNS = "http://plantedge.test/line1"

// env variables that turn the test binary into a child OPC UA server.
const (
	envChildPort    = "PLANTEDGE_OPCUA_TEST_SERVER_PORT"
	envChildCounter = "PLANTEDGE_OPCUA_TEST_SERVER_COUNTER"
)

// testServer is gopcua's own server with a small plant address space:
//
//	ns=1;s=Counter  int32, incremented by Bump
//	ns=1;s=Running  bool
//	ns=1;s=Temp     float64
//	ns=1;s=Name     string
//	ns=1;i=1001     uint16 (numeric id)
//	ns=1;s=Broken   always BadSensorFailure
//	ns=1;s=Maybe    UncertainLastUsableValue
//	ns=1;s=Line1/Press07 folder holding Press07.GoodCount (uint32 counter)
type testServer struct {
	srv     *server.Server
	ns      *server.NodeNameSpace
	url     string
	counter atomic.Int64
	silent  atomic.Bool // stop the server-time notifications
	clock   clockTicks  // the server-time notifications sent
	stop    chan struct{}
	// sessions counts the server's sessions: open from CreateSession to
	// CloseSession (gopcua's server never drops one by itself)
	sessions *opcuatest.Sessions
}

func dv(v any, status ua.StatusCode) *ua.DataValue {
	now := time.Now()
	d := &ua.DataValue{
		EncodingMask:    ua.DataValueSourceTimestamp | ua.DataValueServerTimestamp,
		SourceTimestamp: now,
		ServerTimestamp: now,
	}
	if v != nil {
		d.EncodingMask |= ua.DataValueValue
		d.Value = ua.MustVariant(v)
	}
	if status != ua.StatusOK {
		d.EncodingMask |= ua.DataValueStatusCode
		d.Status = status
	}
	return d
}

func varNode(nid *ua.NodeID, name string, val func() *ua.DataValue) *server.Node {
	return server.NewNode(nid, map[ua.AttributeID]*ua.DataValue{
		ua.AttributeIDBrowseName:  server.DataValueFromValue(attrs.BrowseName(name)),
		ua.AttributeIDDisplayName: server.DataValueFromValue(attrs.DisplayName(name, name)),
		ua.AttributeIDNodeClass:   server.DataValueFromValue(uint32(ua.NodeClassVariable)),
		ua.AttributeIDDataType:    server.DataValueFromValue(ua.NewNumericExpandedNodeID(0, id.BaseDataType)),
	}, nil, val)
}

// newTestServer builds and starts a server on 127.0.0.1:port with the
// counter at counterStart. extraVars adds that many numeric variables
// (ns=1;i=5000..) for the benchmark.
func newTestServer(port int, counterStart int64, extraVars int) (*testServer, error) {
	ts := &testServer{stop: make(chan struct{})}
	ts.counter.Store(counterStart)
	ts.url = fmt.Sprintf("opc.tcp://127.0.0.1:%d", port)
	srv, err := opcuatest.NewServer(
		server.EndPoint("127.0.0.1", port),
		server.EnableSecurity("None", ua.MessageSecurityModeNone),
		server.EnableAuthMode(ua.UserTokenTypeAnonymous),
	)
	if err != nil {
		return nil, err
	}
	ts.srv = srv
	root, err := srv.Namespace(0)
	if err != nil {
		return nil, err
	}
	ns := server.NewNodeNameSpace(srv, testNS)
	ts.ns = ns
	objs := ns.Objects()
	root.Objects().AddRef(objs, id.HasComponent, true)

	add := func(parent *server.Node, n *server.Node) {
		ns.AddNode(n)
		parent.AddRef(n, id.HasComponent, true)
	}
	add(objs, varNode(ua.NewStringNodeID(ns.ID(), "Counter"), "Counter", func() *ua.DataValue {
		return dv(int32(ts.counter.Load()), ua.StatusOK)
	}))
	add(objs, varNode(ua.NewStringNodeID(ns.ID(), "Running"), "Running", func() *ua.DataValue { return dv(true, ua.StatusOK) }))
	add(objs, varNode(ua.NewStringNodeID(ns.ID(), "Temp"), "Temp", func() *ua.DataValue { return dv(21.5, ua.StatusOK) }))
	add(objs, varNode(ua.NewStringNodeID(ns.ID(), "Name"), "Name", func() *ua.DataValue { return dv("press-07", ua.StatusOK) }))
	add(objs, varNode(ua.NewNumericNodeID(ns.ID(), 1001), "Speed", func() *ua.DataValue { return dv(uint16(1200), ua.StatusOK) }))
	add(objs, varNode(ua.NewStringNodeID(ns.ID(), "Broken"), "Broken", func() *ua.DataValue {
		return dv(nil, ua.StatusBadSensorFailure)
	}))
	add(objs, varNode(ua.NewStringNodeID(ns.ID(), "Maybe"), "Maybe", func() *ua.DataValue {
		return dv(int32(7), ua.StatusUncertainLastUsableValue)
	}))
	// server.NewFolderNode panics in v0.8.0 (Description from a NodeClass).
	folder := server.NewNode(ua.NewStringNodeID(ns.ID(), "Line1/Press07"), map[ua.AttributeID]*ua.DataValue{
		ua.AttributeIDNodeClass:   server.DataValueFromValue(uint32(ua.NodeClassObject)),
		ua.AttributeIDBrowseName:  server.DataValueFromValue(attrs.BrowseName("Press07")),
		ua.AttributeIDDisplayName: server.DataValueFromValue(attrs.DisplayName("Press07", "Press07")),
	}, nil, nil)
	add(objs, folder)
	add(folder, varNode(ua.NewStringNodeID(ns.ID(), "Press07.GoodCount"), "GoodCount", func() *ua.DataValue {
		return dv(uint32(ts.counter.Load()), ua.StatusOK)
	}))
	for i := range extraVars {
		v := uint32(i)
		add(objs, varNode(ua.NewNumericNodeID(ns.ID(), uint32(5000+i)), fmt.Sprintf("Tag%d", i), func() *ua.DataValue {
			return dv(v+uint32(ts.counter.Load()), ua.StatusOK)
		}))
	}
	ts.sessions = opcuatest.TrackSessions(srv, 0)
	if err := srv.Start(context.Background()); err != nil {
		return nil, err
	}
	go opcuatest.Unstick(srv, ts.stop)
	// A real server samples its clock; gopcua's only notifies on request.
	go func() {
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-ts.stop:
				return
			case <-t.C:
				if ts.silent.Load() {
					continue
				}
				srv.ChangeNotification(ua.NewNumericNodeID(0, id.Server_ServerStatus_CurrentTime))
				ts.clock.sent(time.Now())
			}
		}
	}()
	return ts, nil
}

// clockTicks counts the server-time notifications a testServer sent, and
// the longest time between two since the last look: a server starved on a
// loaded machine (its clock notified 100 ms apart otherwise) shows there.
type clockTicks struct {
	mu   sync.Mutex
	n    int
	last time.Time
	most time.Duration
}

func (c *clockTicks) sent(now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.last.IsZero() {
		c.most = max(c.most, now.Sub(c.last))
	}
	c.n, c.last = c.n+1, now
}

// peek returns how many were sent and the longest gap since the last look.
func (c *clockTicks) peek() (n int, most time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n, c.most
}

// look returns how many were sent and the longest gap between two since
// the last look (or the start), and starts a new one.
func (c *clockTicks) look() (n int, most time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	n, most = c.n, c.most
	c.most = 0
	return n, most
}

// Bump increments the counter and notifies subscribers of both counter nodes.
func (ts *testServer) Bump(n int64) {
	ts.counter.Add(n)
	ts.srv.ChangeNotification(ua.NewStringNodeID(ts.ns.ID(), "Counter"))
	ts.srv.ChangeNotification(ua.NewStringNodeID(ts.ns.ID(), "Press07.GoodCount"))
}

// NotifyAll notifies subscribers of the first n extra variables.
func (ts *testServer) NotifyExtra(n int) {
	for i := range n {
		ts.srv.ChangeNotification(ua.NewNumericNodeID(ts.ns.ID(), uint32(5000+i)))
	}
}

// startInProcess starts a server in the test process. Server.Close hangs and
// leaves connections up (FIELD-NOTES), so the server is left to die with
// the test binary; only its notifier goroutine is stopped.
func startInProcess(t testing.TB, extraVars int) *testServer {
	t.Helper()
	ts, err := newTestServer(freePort(t), 0, extraVars)
	if err != nil {
		t.Fatalf("start server: %v", err)
	}
	t.Cleanup(func() { close(ts.stop) })
	return ts
}

// freePort is a port for a server started later, or again on the same port:
// one a port-0 bind cannot take meanwhile (nettest.FreePort).
func freePort(t testing.TB) int { return nettest.FreePort(t) }

// runChildServer is the child-process side: serve until killed.
func runChildServer() {
	port, err := strconv.Atoi(os.Getenv(envChildPort))
	if err != nil {
		fmt.Fprintln(os.Stderr, "bad port:", err)
		os.Exit(2)
	}
	start, _ := strconv.ParseInt(os.Getenv(envChildCounter), 10, 64)
	if _, err := newTestServer(port, start, 0); err != nil {
		fmt.Fprintln(os.Stderr, "start server:", err)
		os.Exit(2)
	}
	// Die with the parent: its end of our stdin closes when it exits.
	_, _ = io.Copy(io.Discard, os.Stdin)
	os.Exit(0)
}

// childServer is a server in a child process (the test binary re-executed),
// so a test can kill -9 it like a PLC losing power.
type childServer struct {
	t    testing.TB
	port int
	url  string
	cmd  *exec.Cmd
}

func newChildServer(t testing.TB) *childServer {
	port := freePort(t)
	cs := &childServer{t: t, port: port, url: fmt.Sprintf("opc.tcp://127.0.0.1:%d", port)}
	t.Cleanup(cs.Kill)
	return cs
}

// Start launches the child with the counter at counter and waits until it
// accepts TCP connections; it returns when the server became ready.
func (cs *childServer) Start(counter int64) time.Time {
	cs.t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), envChildPort+"="+strconv.Itoa(cs.port), envChildCounter+"="+strconv.FormatInt(counter, 10))
	if _, err := cmd.StdinPipe(); err != nil {
		cs.t.Fatalf("child stdin: %v", err)
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		cs.t.Fatalf("start child server: %v", err)
	}
	cs.cmd = cmd
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", cs.port), 200*time.Millisecond)
		if err == nil {
			c.Close()
			return time.Now()
		}
		time.Sleep(20 * time.Millisecond)
	}
	cs.Kill()
	cs.t.Fatalf("child server did not listen on %d", cs.port)
	return time.Time{}
}

// Kill sends SIGKILL and reaps the child; safe to call twice.
func (cs *childServer) Kill() {
	if cs.cmd == nil || cs.cmd.Process == nil {
		return
	}
	_ = cs.cmd.Process.Kill()
	_ = cs.cmd.Wait()
	cs.cmd = nil
}
