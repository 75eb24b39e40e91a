package agent

import (
	"context"
	"path/filepath"
	"slices"
	"testing"

	"github.com/plantedge/plantedge/buffer"
)

// TestDeadLettersTiedToTheirOdoo: each switch of Odoo ties the dead letters
// there are then to the Odoo left; those after the last switch are the
// file's Odoo's; spans of dead letters no longer there are forgotten.
func TestDeadLettersTiedToTheirOdoo(t *testing.T) {
	buf, err := buffer.Open(filepath.Join(t.TempDir(), "buffer.db"), buffer.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer buf.Close()
	ctx := context.Background()
	refuse := func(n int) {
		t.Helper()
		recs := make([]buffer.Record, n)
		for i := range recs {
			recs[i] = buffer.Record{Lane: buffer.LaneEvents, Key: "m1", Data: []byte(`{"s":1}`)}
		}
		seqs, err := buf.Append(ctx, recs)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range seqs {
			if err := buf.DeadLetter(ctx, buffer.Record{Lane: buffer.LaneEvents, Key: "m1", Seq: s}, "refused"); err != nil {
				t.Fatal(err)
			}
		}
	}
	// switchTo does what switchOdoo does with them, and checks the spans.
	switchTo := func(to string, want ...deadOdooSpan) deadOdoo {
		t.Helper()
		by, err := loadDeadOdoo(buf)
		if err != nil {
			t.Fatal(err)
		}
		tie, err := by.leaving(buf, by.file)
		if err != nil {
			t.Fatal(err)
		}
		meta := []buffer.KV{{Key: odooMetaKey, Value: []byte(to)}}
		if tie != nil {
			meta = append(meta, *tie)
		}
		if err := buf.PutMeta(ctx, meta...); err != nil {
			t.Fatal(err)
		}
		if by, err = loadDeadOdoo(buf); err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(by.spans, want) || by.file != to {
			t.Fatalf("after the switch to %s: %+v in %s, want %+v", to, by.spans, by.file, want)
		}
		return by
	}
	if err := buf.PutMeta(ctx, buffer.KV{Key: odooMetaKey, Value: []byte("a:8069 prod")}); err != nil {
		t.Fatal(err)
	}
	switchTo("b:8069 prod") // none yet: nothing to tie
	refuse(3)               // 1-3 by b
	switchTo("a:8069 prod", deadOdooSpan{3, "b:8069 prod"})
	refuse(2) // 4-5 by a
	by := switchTo("c:8069 test", deadOdooSpan{3, "b:8069 prod"}, deadOdooSpan{5, "a:8069 prod"})
	refuse(1) // 6 by c
	for id, want := range map[uint64]string{1: "b:8069 prod", 3: "b:8069 prod", 4: "a:8069 prod", 5: "a:8069 prod", 6: "c:8069 test"} {
		if got := by.of(id); got != want {
			t.Errorf("dead letter %d: refused by %q, want %q", id, got, want)
		}
	}
	// 1-3 dropped: b's span goes; back to c (nothing new): c's joins.
	for id := uint64(1); id <= 3; id++ {
		if err := buf.DropDeadLetter(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	switchTo("a:8069 prod", deadOdooSpan{5, "a:8069 prod"}, deadOdooSpan{6, "c:8069 test"})
	// All gone: the spans go.
	for id := uint64(4); id <= 6; id++ {
		if err := buf.DropDeadLetter(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	switchTo("c:8069 test")
}
