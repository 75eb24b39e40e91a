//go:build linux && !386 && !arm && !mips && !mipsle

package powercut

import (
	"bytes"
	"math/rand/v2"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// A sector written twice between syncs may survive as either write: the
// kernel may write a dirty page back at any moment, so after "write A,
// write B, cut" a real disk can hold A.
func TestIntermediateVersionCanSurvive(t *testing.T) {
	seen := map[byte]bool{}
	for seed := range uint64(64) {
		f, dir := mount(t, State{"a": bytes.Repeat([]byte("o"), sector)})
		fa, err := os.OpenFile(filepath.Join(dir, "a"), os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range []byte("AB") {
			if _, err := fa.WriteAt(bytes.Repeat([]byte{c}, sector), 0); err != nil {
				t.Fatal(err)
			}
		}
		st := f.Cut(rand.New(rand.NewPCG(seed, 9)))
		fa.Close()
		seen[st["a"][0]] = true
		if err := f.Unmount(); err != nil {
			t.Fatal(err)
		}
	}
	if !seen['A'] || !seen['B'] || !seen['o'] {
		t.Errorf("64 cuts after writing A then B over a synced sector o gave only %q", keys(seen))
	}
}

// Size changes survive as a prefix: after "open O_TRUNC, write, no fsync"
// the file may come back empty (the well-known zero-length file after a
// crash: the truncate committed, the delayed-allocated data did not).
func TestTruncateThenWriteCanLeaveAnEmptyFile(t *testing.T) {
	lens := map[int]bool{}
	for seed := range uint64(64) {
		f, dir := mount(t, State{"cfg": bytes.Repeat([]byte("v1"), 1024)})
		if err := os.WriteFile(filepath.Join(dir, "cfg"), bytes.Repeat([]byte("v2"), 1024), 0o600); err != nil {
			t.Fatal(err)
		}
		st := f.Cut(rand.New(rand.NewPCG(seed, 3)))
		lens[len(st["cfg"])] = true
		if err := f.Unmount(); err != nil {
			t.Fatal(err)
		}
	}
	if !lens[0] || !lens[2048] {
		t.Errorf("64 cuts after O_TRUNC+write without fsync gave lengths %v, want 0 and 2048 among them", lens)
	}
}

// fallocate modes other than plain allocation are refused, not reported
// done and left undone (a punched hole must read as zeros).
func TestPunchHoleRefused(t *testing.T) {
	_, dir := mount(t, State{"a": bytes.Repeat([]byte("x"), 8192)})
	fa, err := os.OpenFile(filepath.Join(dir, "a"), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer fa.Close()
	const punchHole, keepSize = 0x02, 0x01
	if err := syscall.Fallocate(int(fa.Fd()), punchHole|keepSize, 0, 4096); err == nil {
		t.Error("punch hole reported done; the filesystem does not punch holes")
	}
}

func keys(m map[byte]bool) string {
	var s []byte
	for k := range m {
		s = append(s, k)
	}
	return string(s)
}
