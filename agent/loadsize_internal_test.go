package agent

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/plantedge/plantedge/agent/config"
	"github.com/plantedge/plantedge/buffer"
	"github.com/plantedge/plantedge/odoo"
)

// The load size halves after a load Odoo took too long for (down to 1),
// doubles after a full load answered in under a quarter of odoo.timeout
// (up to linesPerLoad), and stays after anything else; each change is
// logged once.
func TestLoadSizeHalvesAfterSlowLoadsAndDoublesAfterFastOnes(t *testing.T) {
	var logs bytes.Buffer
	f := loadForwarder(&logs)
	gateway := &odoo.Error{Op: "load", Status: 504, Class: odoo.Transient}  // a proxy gave up waiting
	refused := &odoo.Error{Op: "load", Name: "load", Class: odoo.Permanent} // a row refused
	var sizes []int
	for range 10 {
		f.noteLoad(f.loadLines(), 8*time.Second, gateway)
		sizes = append(sizes, f.loadLines())
	}
	if want := []int{100, 50, 25, 12, 6, 3, 1, 1, 1, 1}; !slices.Equal(sizes, want) {
		t.Fatalf("after 504s: %v, want %v", sizes, want)
	}
	f.noteLoad(1, time.Second, refused)
	f.noteLoad(1, 3*time.Second, nil) // answered, but not well within the timeout
	if n := f.loadLines(); n != 1 {
		t.Fatalf("after a refusal and a slowish load: %d lines, want 1", n)
	}
	sizes = nil
	for range 10 {
		f.noteLoad(f.loadLines(), time.Second, nil)
		sizes = append(sizes, f.loadLines())
	}
	if want := []int{2, 4, 8, 16, 32, 64, 128, 200, 200, 200}; !slices.Equal(sizes, want) {
		t.Fatalf("after fast loads: %v, want %v", sizes, want)
	}
	if f.link.LinesPerLoad != 0 {
		t.Errorf("status's lines_per_load at full size: %d, want 0 (absent)", f.link.LinesPerLoad)
	}
	f.noteLoad(2, 3*time.Second, gateway) // a round's last load, of 2: half the size in force
	f.noteLoad(10, time.Millisecond, nil) // a partial load says nothing of a full one
	if n := f.loadLines(); n != 100 {
		t.Errorf("after a slow load of 2 and a fast one of 10: %d lines, want 100", n)
	}
	fewer, more := strings.Count(logs.String(), "carry fewer"), strings.Count(logs.String(), "carry more")
	if fewer != 8 || more != 8 {
		t.Errorf("logged %d shrinks and %d growths, want 8 and 8 (one a change):\n%s", fewer, more, logs.String())
	}
}

// loadForwarder is a forwarder, without a buffer, of an agent logging to
// logs with an 8 s odoo.timeout: for noteLoad alone.
func loadForwarder(logs io.Writer) *forwarder {
	a := &Agent{log: slog.New(slog.NewTextHandler(logs, nil))}
	cfg := &config.Config{}
	cfg.Odoo.Timeout = config.Duration(8 * time.Second)
	a.cfg.Store(cfg)
	return &forwarder{a: a}
}

// A proxy's 502 (nginx's "upstream prematurely closed connection") after
// half the timeout or more is Odoo's worker killed at its own limit
// (limit_time_real) behind that proxy: the same sign of a load too large
// as the reset the agent sees without a proxy. A 502 at once (Odoo down,
// the proxy refused) says nothing of the size.
func TestLoadSizeHalvesAfterAProxys502ForAKilledLoad(t *testing.T) {
	f := loadForwarder(&bytes.Buffer{})
	badGateway := &odoo.Error{Op: "load", Status: 502, Class: odoo.Transient, Message: "502 Bad Gateway"}
	f.noteLoad(200, 100*time.Millisecond, badGateway)
	if n := f.loadLines(); n != 200 {
		t.Fatalf("after a 502 at once: %d lines, want 200", n)
	}
	f.noteLoad(200, 6*time.Second, badGateway)
	if n := f.loadLines(); n != 100 {
		t.Fatalf("after a 502 after 6 s of an 8 s timeout: %d lines, want 100", n)
	}
	unavailable := &odoo.Error{Op: "load", Status: 503, Class: odoo.Transient}
	f.noteLoad(100, 6*time.Second, unavailable) // Odoo restarting: a 503 says nothing of the size
	if n := f.loadLines(); n != 100 {
		t.Fatalf("after a 503: %d lines, want 100", n)
	}
}

// A proxy's 413 halves the load size, and the loads never grow back to a
// size refused — unless a line is then refused alone: the loads refused on
// the way down to it carried it, and say nothing of loads without it. Kept,
// the mark held every load of the run to one line after a stop with a long
// reason met a proxy's small limit (rebook64: 18 requests for 21 lines,
// lines_per_load 1 to the end, where loads of 8 passed).
func TestLoadSizeGrowsBackAfterALineRefusedAloneAsTooLarge(t *testing.T) {
	f := loadForwarder(&bytes.Buffer{})
	tooLarge := tooLargeError(t)
	f.noteLoad(200, 100*time.Millisecond, tooLarge)
	f.noteLoad(100, time.Second, nil)
	f.noteLoad(100, time.Second, nil)
	if n := f.loadLines(); n != 100 {
		t.Fatalf("after a load of 200 refused as too large and two quick ones of 100: %d lines, want 100 (200 was refused)", n)
	}
	// A line too large alone in the next load: 100, 50, ..., 2 refused
	// with it, then it alone.
	for n := 100; n > 1; n = f.loadLines() {
		f.noteLoad(n, 100*time.Millisecond, tooLarge)
	}
	f.noteLoad(1, 100*time.Millisecond, tooLarge)
	var sizes []int
	for range 9 {
		f.noteLoad(f.loadLines(), time.Second, nil)
		sizes = append(sizes, f.loadLines())
	}
	if want := []int{2, 4, 8, 16, 32, 64, 128, 200, 200}; !slices.Equal(sizes, want) {
		t.Fatalf("quick loads after a line refused alone: %v, want %v", sizes, want)
	}
	// The proxy's real limit is found again, and kept.
	f.noteLoad(200, 100*time.Millisecond, tooLarge)
	f.noteLoad(100, time.Second, nil)
	if n := f.loadLines(); n != 100 {
		t.Errorf("after the load of 200 refused again and a quick one of 100: %d lines, want 100", n)
	}
}

// tooLargeError is the error the odoo client returns for a proxy's 413.
func tooLargeError(t *testing.T) error {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "<html>413 Request Entity Too Large</html>", http.StatusRequestEntityTooLarge)
	}))
	defer srv.Close()
	c, err := odoo.New(odoo.Config{URL: srv.URL, Database: "d", Username: "u", APIKey: "k", Protocol: "json2"})
	if err != nil {
		t.Fatal(err)
	}
	err = c.Call(context.Background(), "mrp.workcenter.productivity", "load", nil, nil, nil)
	if !odoo.TooLarge(err) {
		t.Fatalf("a 413: %v, not TooLarge", err)
	}
	return err
}

// The load size is kept in the buffer file while shrunk, and a forwarder
// made on it (the next start) begins at it; a size grown back to full is
// forgotten there. What is stored is taken within 1 to linesPerLoad: one
// above the largest load (a plantedge whose largest load is smaller than
// the one that stored it), none, or one damaged is full size.
func TestLoadSizeKeptInTheBufferFile(t *testing.T) {
	buf, err := buffer.Open(filepath.Join(t.TempDir(), "buffer.db"), buffer.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer buf.Close()
	ctx := context.Background()
	a := &Agent{log: slog.New(slog.NewTextHandler(&bytes.Buffer{}, nil)), buf: buf}
	cfg := &config.Config{}
	cfg.Odoo.Timeout = config.Duration(8 * time.Second)
	a.cfg.Store(cfg)
	gateway := &odoo.Error{Op: "load", Status: 504, Class: odoo.Transient}
	f := newForwarder(a)
	f.learnLoad(ctx, 200, 8*time.Second, gateway)
	f.learnLoad(ctx, 100, 8*time.Second, gateway)
	if n := newForwarder(a).loadLines(); n != 50 {
		t.Fatalf("a start after two slow loads: %d lines a load, want 50", n)
	}
	if st := newForwarder(a).linkSnapshot(); st.LinesPerLoad != 50 {
		t.Errorf("a start after two slow loads: status lines_per_load %d, want 50", st.LinesPerLoad)
	}
	f = newForwarder(a)
	f.learnLoad(ctx, 50, time.Second, nil) // grows on the restored size
	if n := newForwarder(a).loadLines(); n != 100 {
		t.Fatalf("a start after a quick load of 50: %d lines a load, want 100", n)
	}
	f.learnLoad(ctx, 100, time.Second, nil)
	if n := newForwarder(a).loadLines(); n != 200 {
		t.Fatalf("a start after loads grown back: %d lines a load, want 200", n)
	}
	if b, err := buf.Meta(loadSizeKey); err != nil || b != nil {
		t.Errorf("at full size the buffer file keeps %q (%v), want nothing", b, err)
	}
	for stored, want := range map[string]int{"1": 1, "199": 199, "200": 200, "500": 200, "0": 200, "-3": 200, "x": 200, "": 200} {
		if err := buf.PutMeta(ctx, buffer.KV{Key: loadSizeKey, Value: []byte(stored)}); err != nil {
			t.Fatal(err)
		}
		if n := newForwarder(a).loadLines(); n != want {
			t.Errorf("stored %q: %d lines a load, want %d", stored, n, want)
		}
	}
}

// A load the agent's own stop cut (its stop timeout: the call's context
// ended) says nothing of the size: kept in the buffer file, a shrink then
// would make every start after a stop during a drain begin smaller.
func TestLoadCutByTheStopLeavesTheSize(t *testing.T) {
	buf, err := buffer.Open(filepath.Join(t.TempDir(), "buffer.db"), buffer.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer buf.Close()
	a := &Agent{log: slog.New(slog.NewTextHandler(&bytes.Buffer{}, nil)), buf: buf, opts: Options{Registry: prometheus.NewRegistry()}}
	cfg := &config.Config{}
	cfg.Odoo.Timeout = config.Duration(8 * time.Second)
	cfg.Odoo.RequestLimit = config.Duration(10 * time.Second)
	a.cfg.Store(cfg)
	a.metrics = newMetrics(a)
	f := newForwarder(a)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// What the cut call ends with may look like a load too slow (a
	// connection closed after half the timeout is in doubt); a 504 stands
	// for it here.
	_ = f.callLoad(ctx, 200, func(context.Context) error {
		cancel()
		return &odoo.Error{Op: "load", Status: 504, Class: odoo.Transient}
	})
	if n := f.loadLines(); n != 200 {
		t.Errorf("after a load the stop cut: %d lines a load, want 200", n)
	}
	if b, err := buf.Meta(loadSizeKey); err != nil || b != nil {
		t.Errorf("after a load the stop cut the buffer file keeps %q (%v), want nothing", b, err)
	}
}
