// Package journal makes slog output fit systemd's journal: when stderr is
// the journal's stream, each line carries its syslog priority as a "<N>"
// prefix (journald's SyslogLevelPrefix, on by default), so that
// `journalctl -p warning` finds the agent's warnings and errors, and no
// time of its own (the journal stamps every line).
package journal

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"syscall"
)

// Attached reports whether f is the stream $JOURNAL_STREAM names (systemd
// sets it to the device and inode of the service's stdout/stderr when they
// go to the journal).
func Attached(f *os.File) bool {
	v := os.Getenv("JOURNAL_STREAM")
	if v == "" {
		return false
	}
	var dev, ino uint64
	if _, err := fmt.Sscanf(v, "%d:%d", &dev, &ino); err != nil {
		return false
	}
	fi, err := f.Stat()
	if err != nil {
		return false
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	return ok && uint64(st.Dev) == dev && st.Ino == ino
}

// NewHandler returns a handler that writes each record to w as one line,
// "<N>" then what newInner writes for it, where newInner builds the format
// (text or JSON) on the writer and options it is given; records carry no
// time.
func NewHandler(w io.Writer, opts *slog.HandlerOptions, newInner func(io.Writer, *slog.HandlerOptions) slog.Handler) slog.Handler {
	o := slog.HandlerOptions{}
	if opts != nil {
		o = *opts
	}
	replace := o.ReplaceAttr
	o.ReplaceAttr = func(groups []string, a slog.Attr) slog.Attr {
		if len(groups) == 0 && a.Key == slog.TimeKey {
			return slog.Attr{}
		}
		if replace != nil {
			return replace(groups, a)
		}
		return a
	}
	s := &shared{out: w}
	return &handler{s: s, inner: newInner(&s.buf, &o)}
}

type shared struct {
	mu  sync.Mutex
	buf bytes.Buffer
	out io.Writer
}

type handler struct {
	s     *shared
	inner slog.Handler
}

func (h *handler) Enabled(ctx context.Context, l slog.Level) bool { return h.inner.Enabled(ctx, l) }

func (h *handler) Handle(ctx context.Context, r slog.Record) error {
	h.s.mu.Lock()
	defer h.s.mu.Unlock()
	h.s.buf.Reset()
	h.s.buf.WriteString(Priority(r.Level))
	if err := h.inner.Handle(ctx, r); err != nil {
		return err
	}
	_, err := h.s.out.Write(h.s.buf.Bytes())
	return err
}

func (h *handler) WithAttrs(as []slog.Attr) slog.Handler {
	return &handler{s: h.s, inner: h.inner.WithAttrs(as)}
}

func (h *handler) WithGroup(name string) slog.Handler {
	return &handler{s: h.s, inner: h.inner.WithGroup(name)}
}

// Priority is the syslog priority prefix of a level: <3> error, <4>
// warning, <6> info, <7> debug.
func Priority(l slog.Level) string {
	switch {
	case l >= slog.LevelError:
		return "<3>"
	case l >= slog.LevelWarn:
		return "<4>"
	case l >= slog.LevelInfo:
		return "<6>"
	}
	return "<7>"
}
