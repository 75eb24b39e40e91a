package odootest

import (
	"net"
	"net/http"
	"testing"
)

// StartOn serves on the address given, as Start does on a free port: the
// base URL names it, and the server answers there.
func TestStartOnTheAddressGiven(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close() // free again, for StartOn
	s := New(Options{Version: 17})
	url, err := s.StartOn(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if url != "http://"+addr {
		t.Fatalf("url %q, want http://%s", url, addr)
	}
	resp, err := http.Post(url+"/jsonrpc", "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if _, err := s.StartOn(addr); err == nil {
		t.Error("a second StartOn on a port in use did not fail")
	}
}
