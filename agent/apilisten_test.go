package agent

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// One host other than this one gets at most maxAPIConnsPerHost connections:
// the next is closed at once, and a slot it frees is taken again.
func TestAPIListenerSharesConnectionsFairly(t *testing.T) {
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := limitAPI(raw).(*apiListener)
	l.hostOf = func(net.Conn) string { return "10.0.0.9" } // every client another host
	defer l.Close()
	accepted := make(chan net.Conn, 2*maxAPIConnsPerHost)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	var clients []net.Conn
	defer func() {
		for _, c := range clients {
			c.Close()
		}
	}()
	dial := func() net.Conn {
		c, err := net.Dial("tcp", raw.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		clients = append(clients, c)
		return c
	}
	var server []net.Conn
	for range maxAPIConnsPerHost {
		dial()
		server = append(server, <-accepted)
	}
	// One more from that host: a 503 and closed by the listener, never
	// handed out.
	if strconv.Itoa(len(overShareBody)) != overShareLen {
		t.Fatalf("overShareLen %s, the body is %d bytes", overShareLen, len(overShareBody))
	}
	extra := dial()
	_ = extra.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(extra), nil)
	if err != nil {
		t.Fatalf("the connection over the host's share: %v, want a 503", err)
	}
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusServiceUnavailable || string(body) != overShareBody {
		t.Fatalf("the connection over the host's share: %d %q", resp.StatusCode, body)
	}
	select {
	case c := <-accepted:
		t.Fatalf("a connection over the host's share was handed out: %v", c.RemoteAddr())
	default:
	}
	// A slot freed is taken again.
	server[0].Close()
	dial()
	select {
	case c := <-accepted:
		c.Close()
	case <-time.After(10 * time.Second):
		t.Fatal("no connection accepted after one of the host's was closed")
	}
	for _, c := range server[1:] {
		c.Close()
	}
}

// A unix socket that refuses the user (not in the plantedge group) is an
// agent the CLI may not ask, not a stopped one: "not running, start it"
// was wrong (the technician probe: flush exited 2, status --json said
// agent_running false). Root passes any socket's mode, so the refusal is
// the kernel's error, as connect(2) gives it.
func TestAPIClientSocketPermissionDenied(t *testing.T) {
	c := NewAPIClient("unix:/run/plantedge/api.sock")
	c.hc.Transport = &http.Transport{DialContext: func(context.Context, string, string) (net.Conn, error) {
		return nil, &net.OpError{Op: "dial", Net: "unix", Err: os.NewSyscallError("connect", syscall.EACCES)}
	}}
	_, err := c.Status(context.Background())
	if !errors.Is(err, ErrNoAccess) || errors.Is(err, ErrNotRunning) ||
		!strings.Contains(err.Error(), "unix:/run/plantedge/api.sock") || !strings.Contains(err.Error(), "plantedge group") {
		t.Errorf("socket refusing the user: %v", err)
	}
}
