package mapping

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/plantedge/plantedge/agent/config"
	"github.com/plantedge/plantedge/connectors"
)

var update = flag.Bool("update", false, "rewrite testdata/mapping/*/events.jsonl from the current output")

// goldenSample is one line of samples.jsonl. {"restart": true} simulates an
// agent restart: every machine's state goes through Marshal/Unmarshal into a
// fresh State and a fresh Mapper.
type goldenSample struct {
	Restart     bool            `json:"restart,omitempty"`
	Comment     string          `json:"comment,omitempty"`
	Source      string          `json:"source"`
	Kind        string          `json:"kind"`
	Address     string          `json:"address"`
	Value       json.RawMessage `json:"value,omitempty"`       // OPC UA value
	Payload     *string         `json:"payload,omitempty"`     // MQTT body
	PayloadB64  string          `json:"payload_b64,omitempty"` // MQTT body in base64 (a binary one: Sparkplug B)
	Bad         bool            `json:"bad,omitempty"`         // Good=false
	SourceTime  string          `json:"source_time,omitempty"`
	ReceiveTime string          `json:"receive_time,omitempty"`
	Duplicate   bool            `json:"duplicate,omitempty"`
	Initial     bool            `json:"initial,omitempty"`
	Resent      bool            `json:"resent,omitempty"`
	Watch       uint64          `json:"watch,omitempty"`
	WatchGap    string          `json:"watch_gap,omitempty"` // a time.Duration
}

// goldenEvent is Event with only the fields that matter written out.
type goldenEvent struct {
	Machine       string  `json:"machine"`
	Kind          string  `json:"kind"`
	Signal        Signal  `json:"signal"`
	Time          string  `json:"time"`
	Delta         float64 `json:"delta,omitempty"`
	Pieces        float64 `json:"pieces,omitempty"` // written where it is not Delta (a counter's factor)
	Raw           float64 `json:"raw,omitempty"`
	Reset         bool    `json:"reset,omitempty"`
	Rollover      bool    `json:"rollover,omitempty"`
	StepBack      bool    `json:"step_back,omitempty"`
	From          float64 `json:"from,omitempty"`
	ClockBack     string  `json:"clock_back,omitempty"`
	Behind        int     `json:"behind,omitempty"`
	Glitch        bool    `json:"glitch,omitempty"`
	Dip           float64 `json:"dip,omitempty"`
	Implausible   bool    `json:"implausible,omitempty"`
	Start         string  `json:"start,omitempty"`
	End           string  `json:"end,omitempty"`
	Reason        string  `json:"reason,omitempty"`
	Loss          string  `json:"loss,omitempty"`
	LossDefaulted bool    `json:"loss_defaulted,omitempty"`
}

type goldenLine struct {
	Line    int           `json:"line"`
	Restart bool          `json:"restart,omitempty"`
	Events  []goldenEvent `json:"events,omitempty"`
	Changed []string      `json:"changed,omitempty"`
	Error   string        `json:"error,omitempty"`
}

func fmtTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339Nano)
}

func parseGoldenTime(t *testing.T, s string) time.Time {
	t.Helper()
	if s == "" {
		return time.Time{}
	}
	ts, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		t.Fatalf("bad time %q: %v", s, err)
	}
	return ts
}

// opcuaValue decodes a JSON value the way an OPC UA variant would arrive:
// whole numbers as int64 (uint64 when large), others as float64.
func opcuaValue(t *testing.T, raw json.RawMessage) any {
	t.Helper()
	if len(raw) == 0 || string(raw) == "null" {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("bad value %s: %v", raw, err)
	}
	if n, ok := v.(json.Number); ok {
		if i, err := n.Int64(); err == nil {
			return i
		}
		f, _ := n.Float64()
		return f
	}
	return v
}

func TestGolden(t *testing.T) {
	dirs, err := filepath.Glob("../../testdata/mapping/*")
	if err != nil || len(dirs) == 0 {
		t.Fatalf("no golden cases: %v", err)
	}
	for _, dir := range dirs {
		t.Run(filepath.Base(dir), func(t *testing.T) {
			cfg, err := config.Load(filepath.Join(dir, "config.yaml"))
			if err != nil {
				t.Fatalf("config: %v", err)
			}
			m, err := New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			st := NewState()
			f, err := os.Open(filepath.Join(dir, "samples.jsonl"))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			var out bytes.Buffer
			sc := bufio.NewScanner(f)
			line := 0
			for sc.Scan() {
				line++
				text := strings.TrimSpace(sc.Text())
				if text == "" || strings.HasPrefix(text, "#") {
					continue
				}
				var gs goldenSample
				if err := json.Unmarshal([]byte(text), &gs); err != nil {
					t.Fatalf("samples.jsonl:%d: %v", line, err)
				}
				gl := goldenLine{Line: line}
				if gs.Restart {
					gl.Restart = true
					st = restart(t, m, st)
					if m, err = New(cfg); err != nil {
						t.Fatal(err)
					}
				} else {
					s := connectors.Sample{
						Source: gs.Source, Kind: connectors.Kind(gs.Kind), Address: gs.Address,
						Good: !gs.Bad, SourceTime: parseGoldenTime(t, gs.SourceTime),
						ReceiveTime: parseGoldenTime(t, gs.ReceiveTime),
						Duplicate:   gs.Duplicate, Initial: gs.Initial, Resent: gs.Resent, Watch: gs.Watch,
					}
					if gs.Bad {
						s.Quality = "BadSensorFailure"
					}
					if gs.WatchGap != "" {
						d, err := time.ParseDuration(gs.WatchGap)
						if err != nil {
							t.Fatalf("samples.jsonl:%d: watch_gap: %v", line, err)
						}
						s.WatchGap = d
					}
					if s.Kind == connectors.KindOPCUA {
						s.Value = opcuaValue(t, gs.Value)
					} else if gs.PayloadB64 != "" {
						if s.Payload, err = base64.StdEncoding.DecodeString(gs.PayloadB64); err != nil {
							t.Fatalf("samples.jsonl:%d: payload_b64: %v", line, err)
						}
					} else if gs.Payload != nil {
						s.Payload = []byte(*gs.Payload)
					}
					before := snapshot(t, m, st)
					evs, changed, err := m.Apply(st, s)
					if err != nil {
						gl.Error = err.Error()
						if after := snapshot(t, m, st); after != before && len(evs) == 0 && len(changed) == 0 {
							t.Errorf("samples.jsonl:%d: error %v changed the state:\n%s\n->\n%s", line, err, before, after)
						}
					}
					for _, e := range evs {
						ge := goldenEvent{
							Machine: e.Machine, Kind: e.Kind.String(), Signal: e.Signal, Time: fmtTime(e.Time),
							Delta: e.Delta, Raw: e.Raw, Reset: e.Reset, Rollover: e.Rollover, StepBack: e.StepBack, From: e.From, Behind: e.Behind,
							Glitch: e.Glitch, Dip: e.Dip, Implausible: e.Implausible,
							Start: fmtTime(e.Start), End: fmtTime(e.End),
							Reason: e.Reason, Loss: e.Loss, LossDefaulted: e.LossDefaulted,
						}
						if e.Pieces != e.Delta {
							ge.Pieces = e.Pieces
						}
						if e.ClockBack > 0 {
							ge.ClockBack = e.ClockBack.String()
						}
						gl.Events = append(gl.Events, ge)
						checkEventInvariants(t, line, e)
					}
					gl.Changed = changed
				}
				b, err := json.Marshal(gl)
				if err != nil {
					t.Fatal(err)
				}
				out.Write(b)
				out.WriteByte('\n')
			}
			if err := sc.Err(); err != nil {
				t.Fatal(err)
			}
			goldenPath := filepath.Join(dir, "events.jsonl")
			if *update {
				if err := os.WriteFile(goldenPath, out.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(goldenPath)
			if err != nil {
				t.Fatalf("%v (run go test -run TestGolden -update)", err)
			}
			if got := out.String(); got != string(want) {
				t.Errorf("events differ from %s (diff by line; -update rewrites):\n%s", goldenPath, lineDiff(string(want), got))
			}
		})
	}
}

func checkEventInvariants(t *testing.T, line int, e Event) {
	t.Helper()
	switch e.Kind {
	case EventCount:
		switch {
		case e.StepBack:
			if e.Delta != 0 || e.Raw >= e.From || e.Raw < e.From*stepBackShare {
				t.Errorf("samples.jsonl:%d: step back %v -> %v with delta %v", line, e.From, e.Raw, e.Delta)
			}
		case e.Glitch:
			if e.Delta < 0 || e.Raw < e.From*stepBackShare || e.Delta > max(0, e.Raw-e.From) {
				t.Errorf("samples.jsonl:%d: glitch %v -> %v -> %v with delta %v", line, e.From, e.Dip, e.Raw, e.Delta)
			}
		case e.Behind > 0:
			if e.Delta != 0 || e.Raw >= e.From {
				t.Errorf("samples.jsonl:%d: held values reported with %v -> %v, delta %v", line, e.From, e.Raw, e.Delta)
			}
		case e.Reset && e.Raw == 0:
			if e.Delta != 0 {
				t.Errorf("samples.jsonl:%d: reset to zero with delta %v", line, e.Delta)
			}
		case e.Delta <= 0:
			t.Errorf("samples.jsonl:%d: count event with delta %v", line, e.Delta)
		}
	case EventRunning:
		if e.End.Before(e.Start) {
			t.Errorf("samples.jsonl:%d: downtime ends before it starts: %v", line, e)
		}
	}
}

// restart persists every machine's state and restores it into a new State,
// as the agent does across a restart.
func restart(t *testing.T, m *Mapper, st *State) *State {
	t.Helper()
	fresh := NewState()
	for _, id := range m.Machines() {
		if st.Machines[id] == nil {
			continue
		}
		b, err := st.Marshal(id)
		if err != nil {
			t.Fatal(err)
		}
		if err := fresh.Unmarshal(id, b); err != nil {
			t.Fatal(err)
		}
	}
	return fresh
}

func snapshot(t *testing.T, m *Mapper, st *State) string {
	t.Helper()
	var b strings.Builder
	for _, id := range m.Machines() {
		if st.Machines[id] == nil {
			continue
		}
		j, err := st.Marshal(id)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "%s=%s\n", id, j)
	}
	return b.String()
}

func lineDiff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	var b strings.Builder
	for i := 0; i < max(len(w), len(g)); i++ {
		var wl, gl string
		if i < len(w) {
			wl = w[i]
		}
		if i < len(g) {
			gl = g[i]
		}
		if wl != gl {
			fmt.Fprintf(&b, "- %s\n+ %s\n", wl, gl)
		}
	}
	return b.String()
}
