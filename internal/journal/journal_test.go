package journal

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func TestLinesCarryTheirPriorityAndNoTime(t *testing.T) {
	for _, format := range []string{"text", "json"} {
		t.Run(format, func(t *testing.T) {
			var out bytes.Buffer
			inner := func(w io.Writer, o *slog.HandlerOptions) slog.Handler { return slog.NewTextHandler(w, o) }
			if format == "json" {
				inner = func(w io.Writer, o *slog.HandlerOptions) slog.Handler { return slog.NewJSONHandler(w, o) }
			}
			log := slog.New(NewHandler(&out, &slog.HandlerOptions{Level: slog.LevelDebug}, inner))
			sub := log.With("component", "opcua").WithGroup("g")
			log.Debug("d")
			log.Info("i", "k", "v")
			sub.Warn("w", "k", 1)
			log.Error("e\nsecond line")
			lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
			if len(lines) != 4 {
				t.Fatalf("%d lines:\n%s", len(lines), out.String())
			}
			for i, p := range []string{"<7>", "<6>", "<4>", "<3>"} {
				if !strings.HasPrefix(lines[i], p) || strings.Contains(lines[i], "time") {
					t.Errorf("line %d: %q, want prefix %s and no time", i, lines[i], p)
				}
			}
			if !strings.Contains(lines[2], "component") || !strings.Contains(lines[2], "g") {
				t.Errorf("attributes and groups lost: %q", lines[2])
			}
		})
	}
}

func TestAttached(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "stream"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var st syscall.Stat_t
	if err := syscall.Fstat(int(f.Fd()), &st); err != nil {
		t.Fatal(err)
	}
	t.Setenv("JOURNAL_STREAM", "")
	if Attached(f) {
		t.Error("attached without JOURNAL_STREAM")
	}
	t.Setenv("JOURNAL_STREAM", fmt.Sprintf("%d:%d", st.Dev, st.Ino))
	if !Attached(f) {
		t.Error("not attached to the stream JOURNAL_STREAM names")
	}
	t.Setenv("JOURNAL_STREAM", fmt.Sprintf("%d:%d", st.Dev, st.Ino+1))
	if Attached(f) {
		t.Error("attached to another stream (a child of the service with its own stderr)")
	}
}
