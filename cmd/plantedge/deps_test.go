package main

import (
	"bytes"
	"encoding/json"
	"io"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/plantedge/plantedge"

// listedPackage is the part of `go list -json` the import rules look at.
type listedPackage struct {
	ImportPath   string
	Imports      []string
	TestImports  []string
	XTestImports []string
	Deps         []string
}

// under reports whether pkg is dir (a module-relative path) or below it.
func under(pkg, dir string) bool {
	p := module + "/" + dir
	return pkg == p || strings.HasPrefix(pkg, p+"/")
}

// TestImportRules keeps STYLE.md's house rules: each third-party library is
// imported by exactly one package (bbolt by buffer, paho by connectors/mqtt,
// gopcua by connectors/opcua and its opcuatest), everything else reaches it
// only through that package, and connectors, buffer and odoo never depend
// on agent. The binary as a whole links them all.
func TestImportRules(t *testing.T) {
	cmd := exec.Command("go", "list", "-e", "-json", module+"/...")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, stderr.String())
	}
	var pkgs []listedPackage
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var p listedPackage
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatalf("decode go list output: %v", err)
		}
		pkgs = append(pkgs, p)
	}
	if len(pkgs) < 8 {
		t.Fatalf("go list found only %d packages", len(pkgs))
	}

	libs := []struct {
		name, prefix string
		owner        string // module-relative directory allowed to import it
	}{
		{"bbolt", "go.etcd.io/bbolt", "buffer"},
		{"paho", "github.com/eclipse/paho.mqtt.golang", "connectors/mqtt"},
		{"gopcua", "github.com/gopcua/opcua", "connectors/opcua"},
	}
	isLib := func(imp, prefix string) bool { return imp == prefix || strings.HasPrefix(imp, prefix+"/") }
	var binary *listedPackage
	for i := range pkgs {
		p := &pkgs[i]
		if p.ImportPath == module+"/cmd/plantedge" {
			binary = p
		}
		for _, lib := range libs {
			if under(p.ImportPath, lib.owner) {
				continue
			}
			for _, imp := range slices.Concat(p.Imports, p.TestImports, p.XTestImports) {
				if isLib(imp, lib.prefix) {
					t.Errorf("%s imports %s (%s); only %s may", p.ImportPath, imp, lib.name, lib.owner)
				}
			}
			// Whoever links the library must do so through its owner.
			viaOwner := slices.ContainsFunc(p.Deps, func(d string) bool { return under(d, lib.owner) })
			for _, d := range p.Deps {
				if isLib(d, lib.prefix) && !viaOwner {
					t.Errorf("%s depends on %s without going through %s", p.ImportPath, d, lib.owner)
					break
				}
			}
		}
		for _, low := range []string{"connectors", "buffer", "odoo"} {
			if !under(p.ImportPath, low) {
				continue
			}
			all := slices.Concat(p.Deps, p.Imports, p.TestImports, p.XTestImports)
			slices.Sort(all)
			for _, d := range slices.Compact(all) {
				if under(d, "agent") || under(d, "cmd") {
					t.Errorf("%s depends on %s: %s must not import the agent", p.ImportPath, d, low)
				}
			}
		}
	}
	if binary == nil {
		t.Fatal("go list did not report cmd/plantedge")
	}
	for _, lib := range libs {
		if !slices.ContainsFunc(binary.Deps, func(d string) bool { return isLib(d, lib.prefix) }) {
			t.Errorf("the binary does not link %s (%s): is the rule above checking anything?", lib.name, lib.prefix)
		}
	}
}
