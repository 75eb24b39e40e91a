package agent

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
)

// A quantity in a log line reads as the plant's number, in text and JSON
// logs alike: three steps of a counter with factor 0.1 log 0.3, not
// 0.30000000000000004, and a large part quantity has no exponent
// (mapping46).
func TestLogQuantities(t *testing.T) {
	tenth := 0.1
	for _, tc := range []struct {
		name string
		h    func(*bytes.Buffer) slog.Handler
		want string
	}{
		{"text", func(b *bytes.Buffer) slog.Handler { return slog.NewTextHandler(b, nil) }, "pieces=0.3 qty=1234567.5 whole=4294967290"},
		{"json", func(b *bytes.Buffer) slog.Handler { return slog.NewJSONHandler(b, nil) }, `"pieces":0.3,"qty":1234567.5,"whole":4294967290`},
	} {
		var b bytes.Buffer
		slog.New(tc.h(&b)).Info("x", "pieces", num(3*tenth), "qty", num(1234567.5), "whole", num(4294967290))
		if !strings.Contains(b.String(), tc.want) {
			t.Errorf("%s: %q, want %q in it", tc.name, b.String(), tc.want)
		}
	}
}
