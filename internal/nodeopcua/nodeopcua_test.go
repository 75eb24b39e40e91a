package nodeopcua

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// start starts a server and returns its thumbprint and PKI directory.
func start(t *testing.T) (thumbprint, pki string) {
	t.Helper()
	_, pki = Start(t, func(line string) bool {
		var v struct{ Thumbprint string }
		if thumbprint == "" && strings.HasPrefix(line, "{") && json.Unmarshal([]byte(line), &v) == nil && v.Thumbprint != "" {
			thumbprint = v.Thumbprint
			return true
		}
		return false
	})
	return thumbprint, pki
}

// The servers of a test process share one key and certificate, copied
// into a PKI directory of each one's own (node-opcua makes neither again
// after the first certificate), and present that certificate; what the
// later one trusts starts empty.
func TestServersShareTheirKey(t *testing.T) {
	firstTP, first := start(t)
	secondTP, second := start(t)
	if first == second {
		t.Fatalf("both servers in PKI directory %s", first)
	}
	if firstTP != secondTP {
		t.Errorf("thumbprints %s and %s: the second server made a certificate of its own", firstTP, secondTP)
	}
	k1, c1 := ownFiles(first)
	k2, c2 := ownFiles(second)
	for _, f := range [][2]string{{k1, k2}, {c1, c2}} {
		a, errA := os.ReadFile(f[0])
		b, errB := os.ReadFile(f[1])
		if errA != nil || errB != nil || len(a) == 0 || !bytes.Equal(a, b) {
			t.Errorf("%s and %s differ (%v, %v)", f[0], f[1], errA, errB)
		}
	}
	if fi, err := os.Stat(k2); err != nil {
		t.Error(err)
	} else if fi.Mode().Perm() != 0o600 {
		t.Errorf("the copied key's mode %v, want 0600", fi.Mode().Perm())
	}
	for _, dir := range []string{"trusted/certs", "rejected"} {
		if ents, err := os.ReadDir(filepath.Join(second, "server", dir)); err != nil || len(ents) != 0 {
			t.Errorf("the second server's %s: %d entries (%v), want none", dir, len(ents), err)
		}
	}
}
