package agent

import (
	"net"
	"os"
	"testing"
)

// The uid behind a loopback connection is found in /proc/net/tcp{,6}: over
// IPv4, IPv6, and IPv4 to a socket on [::] (listed as IPv6-mapped).
func TestPeerUID(t *testing.T) {
	for _, c := range []struct{ listen, dial string }{
		{"tcp4", "127.0.0.1"},
		{"tcp6", "::1"},
		{"tcp", "127.0.0.1"}, // a socket on [::]
	} {
		addr := map[string]string{"tcp4": "127.0.0.1:0", "tcp6": "[::1]:0", "tcp": ":0"}[c.listen]
		ln, err := net.Listen(c.listen, addr)
		if err != nil {
			t.Logf("%s: %v (skipped)", c.listen, err)
			continue
		}
		_, port, _ := net.SplitHostPort(ln.Addr().String())
		client, err := net.Dial("tcp", net.JoinHostPort(c.dial, port))
		if err != nil {
			ln.Close()
			t.Fatalf("%s: dial: %v", c.listen, err)
		}
		server, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		uid, err := peerUID(server.RemoteAddr().String(), server.LocalAddr().String())
		if err != nil || uid != os.Getuid() {
			t.Errorf("%s to %s: uid %d, %v; want %d", c.dial, c.listen, uid, err, os.Getuid())
		}
		client.Close()
		server.Close()
		ln.Close()
	}
}

func TestMayDrop(t *testing.T) {
	if !mayDrop(0) || !mayDrop(os.Geteuid()) {
		t.Error("root or the agent's own user may not drop")
	}
	if os.Geteuid() != 65534 && os.Getegid() != 65534 && mayDrop(65534) {
		t.Error("nobody may drop")
	}
}
