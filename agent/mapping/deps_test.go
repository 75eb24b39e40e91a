package mapping

import (
	"os/exec"
	"strings"
	"testing"
)

// TestDeps keeps config and mapping free of I/O libraries: they must build
// without bbolt, paho, gopcua or the Odoo client (cf. tailscale deps_test).
func TestDeps(t *testing.T) {
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go tool not in PATH")
	}
	out, err := exec.Command(gobin, "list", "-deps", ".", "../config").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	for _, dep := range strings.Fields(string(out)) {
		for _, banned := range []string{"go.etcd.io/bbolt", "github.com/eclipse/paho", "github.com/gopcua/", "github.com/plantedge/plantedge/odoo", "github.com/plantedge/plantedge/buffer"} {
			if strings.HasPrefix(dep, banned) {
				t.Errorf("config/mapping depend on %s", dep)
			}
		}
	}
}
