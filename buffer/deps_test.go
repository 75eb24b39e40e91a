package buffer

import (
	"os/exec"
	"strings"
	"testing"
)

// TestDepsOnlyBbolt keeps the package's third-party imports to bbolt (and
// what bbolt itself needs): bbolt is imported by this package only.
func TestDepsOnlyBbolt(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}", ".").Output()
	if err != nil {
		t.Skipf("go list unavailable: %v", err)
	}
	for _, p := range strings.Fields(string(out)) {
		switch {
		case p == "github.com/plantedge/plantedge/buffer",
			p == "go.etcd.io/bbolt", strings.HasPrefix(p, "go.etcd.io/bbolt/"),
			p == "golang.org/x/sys/unix":
		default:
			t.Errorf("buffer depends on %s; it may import only the standard library and bbolt", p)
		}
	}
}
