package config

import (
	"errors"
	"os"
	"testing"
)

func FuzzParse(f *testing.F) {
	f.Add([]byte(base))
	for _, p := range []string{"../../packaging/plantedge.yaml", "../../testdata/config/presses.yaml", "../../testdata/config/minimal.yaml"} {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte("site: [x\n"))
	f.Add([]byte("a: &a {<<: *a}\n"))
	f.Add([]byte("machines:\n  - <<: [*x, 1]\n"))
	f.Add([]byte("buffer: {max_bytes: 99999999999999999999TiB, commit_window: -1s}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse("fuzz.yaml", data)
		if err != nil {
			var ce *Error
			if !errors.As(err, &ce) || len(ce.Problems) == 0 {
				t.Fatalf("error is not a non-empty *Error: %v", err)
			}
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("parsed config does not validate again: %v", err)
		}
		if len(c.Machines) == 0 || c.Site == "" {
			t.Fatalf("accepted a config without site or machines")
		}
	})
}
