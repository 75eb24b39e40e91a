package opcuatest

import (
	"context"
	"testing"
)

// BenchmarkStart is one server start and close, with one variable.
func BenchmarkStart(b *testing.B) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for b.Loop() {
		s, err := Start(ctx, 0, map[string]any{"Press.Count": int64(5)})
		if err != nil {
			b.Fatal(err)
		}
		s.Close()
	}
}
