//go:build linux && !386 && !arm && !mips && !mipsle

package powercut

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// mount mounts a filesystem holding initial, or skips where FUSE is missing.
func mount(t *testing.T, initial State) (*FS, string) {
	t.Helper()
	if err := Available(); err != nil {
		Unavailable(t, err)
	}
	dir := t.TempDir()
	f, err := Mount(dir, initial)
	if err != nil {
		Unavailable(t, err)
	}
	t.Cleanup(func() { _ = f.Unmount() })
	return f, dir
}

func syncDir(t *testing.T, dir string) {
	t.Helper()
	d, err := os.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		t.Fatal(err)
	}
}

func TestSyncedSurvivesUnsyncedMayNot(t *testing.T) {
	old := bytes.Repeat([]byte("o"), 4096)
	sawOld, sawNew, sawTorn := false, false, false
	for seed := range uint64(20) {
		f, dir := mount(t, State{"a": old})
		fa, err := os.OpenFile(filepath.Join(dir, "a"), os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		// A new file, synced, and its name synced.
		if err := os.WriteFile(filepath.Join(dir, "b"), []byte("synced"), 0o600); err != nil {
			t.Fatal(err)
		}
		fb, _ := os.OpenFile(filepath.Join(dir, "b"), os.O_RDWR, 0)
		if err := fb.Sync(); err != nil {
			t.Fatal(err)
		}
		fb.Close()
		syncDir(t, dir)
		// A page of "a" rewritten, not synced.
		if _, err := fa.WriteAt(bytes.Repeat([]byte("n"), 4096), 0); err != nil {
			t.Fatal(err)
		}
		st := f.Cut(rand.New(rand.NewPCG(seed, 1)))
		if _, err := fa.WriteAt([]byte("x"), 0); !errors.Is(err, syscall.EIO) {
			t.Fatalf("write after the cut: %v, want EIO", err)
		}
		fa.Close()
		if string(st["b"]) != "synced" {
			t.Fatalf("seed %d: synced file b = %q", seed, st["b"])
		}
		a := st["a"]
		if len(a) != 4096 {
			t.Fatalf("seed %d: a has %d bytes", seed, len(a))
		}
		olds := 0
		for s := 0; s < 4096; s += sector {
			switch {
			case bytes.Equal(a[s:s+sector], old[:sector]):
				olds++
			case bytes.Equal(a[s:s+sector], bytes.Repeat([]byte("n"), sector)):
			default:
				t.Fatalf("seed %d: sector at %d is neither old nor new: %q", seed, s, a[s:s+sector])
			}
		}
		switch olds {
		case 8:
			sawOld = true
		case 0:
			sawNew = true
		default:
			sawTorn = true
		}
		if err := f.Unmount(); err != nil {
			t.Fatal(err)
		}
	}
	if !sawTorn {
		t.Fatalf("20 cuts: old %v, new %v, never torn: each unsynced sector should survive or not on its own", sawOld, sawNew)
	}
}

func TestNamesNeedTheDirectorySynced(t *testing.T) {
	outcomes := map[string]bool{}
	for seed := range uint64(30) {
		f, dir := mount(t, State{"data": []byte("v1")})
		// A copy written and synced, renamed over the original; the
		// directory is not synced.
		tmp := filepath.Join(dir, "data.tmp")
		if err := os.WriteFile(tmp, []byte("v2"), 0o600); err != nil {
			t.Fatal(err)
		}
		ft, _ := os.OpenFile(tmp, os.O_RDWR, 0)
		if err := ft.Sync(); err != nil {
			t.Fatal(err)
		}
		ft.Close()
		if err := os.Rename(tmp, filepath.Join(dir, "data")); err != nil {
			t.Fatal(err)
		}
		st := f.Cut(rand.New(rand.NewPCG(seed, 2)))
		outcome := ""
		for _, n := range st.Names() {
			outcome += n + "=" + string(st[n]) + " "
		}
		switch outcome {
		case "data=v1 ", "data=v1 data.tmp= ", "data=v1 data.tmp=v2 ", "data=v2 ":
		default:
			t.Fatalf("seed %d: %q is no state a journal could leave", seed, outcome)
		}
		outcomes[outcome] = true
		if err := f.Unmount(); err != nil {
			t.Fatal(err)
		}
	}
	if !outcomes["data=v1 "] || !outcomes["data=v2 "] {
		t.Fatalf("30 cuts gave %v: an unsynced rename should both survive and not", outcomes)
	}

	// With the directory synced, the rename always survives.
	f, dir := mount(t, State{"data": []byte("v1")})
	if err := os.WriteFile(filepath.Join(dir, "n"), []byte("v2"), 0o600); err != nil {
		t.Fatal(err)
	}
	fn, _ := os.OpenFile(filepath.Join(dir, "n"), os.O_RDWR, 0)
	_ = fn.Sync()
	fn.Close()
	if err := os.Rename(filepath.Join(dir, "n"), filepath.Join(dir, "data")); err != nil {
		t.Fatal(err)
	}
	syncDir(t, dir)
	st := f.Cut(rand.New(rand.NewPCG(1, 1)))
	if len(st) != 1 || string(st["data"]) != "v2" {
		t.Fatalf("after a synced rename: %v", st)
	}
	if s := f.Stats(); s.DirSyncs != 1 || s.Renames != 1 || s.FileSyncs != 1 {
		t.Fatalf("stats %+v", s)
	}
}

func TestTruncateAndGrowAfterSync(t *testing.T) {
	f, dir := mount(t, State{"a": []byte("abcdefgh")})
	p := filepath.Join(dir, "a")
	if err := os.Truncate(p, 2); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(p, 8); err != nil {
		t.Fatal(err)
	}
	fa, _ := os.OpenFile(p, os.O_RDWR, 0)
	if err := fa.Sync(); err != nil {
		t.Fatal(err)
	}
	fa.Close()
	st := f.Cut(rand.New(rand.NewPCG(1, 1)))
	if want := "ab\x00\x00\x00\x00\x00\x00"; string(st["a"]) != want {
		t.Fatalf("after truncate, grow and sync: %q, want %q", st["a"], want)
	}
}
