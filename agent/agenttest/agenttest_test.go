package agenttest

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/plantedge/plantedge/agent/config"
)

// TestConfigLoads: the rendered config, with and without its optional parts,
// is one the agent's loader accepts, and says what it was given.
func TestConfigLoads(t *testing.T) {
	dir := t.TempDir()
	key := WriteKeyFile(t, dir, "0123456789012345678901234567890123456789")
	for _, c := range []Config{
		{Site: "a", ClientID: "c1"},
		{Site: "b", ClientID: "c2", Rate: 200, OPCUA: "opc.tcp://127.0.0.1:4840", Extra: "log: { level: warn }\n"},
	} {
		c.DataDir, c.Listen, c.OdooURL, c.KeyFile, c.BrokerURL = filepath.Join(dir, "data"), FreeAddr(t), "http://127.0.0.1:8069", key, "tcp://127.0.0.1:1883"
		y := c.YAML() + "  - id: press-1\n    workcenter: WC-1\n    good_count: { mqtt: { broker: broker, topic: p/1, field: good } }\n"
		path := filepath.Join(dir, "plantedge.yaml")
		if err := os.WriteFile(path, []byte(y), 0o600); err != nil {
			t.Fatal(err)
		}
		cfg, err := config.Load(path)
		if err != nil {
			t.Fatalf("config %+v does not load: %v\n%s", c, err, y)
		}
		if cfg.Site != c.Site || len(cfg.Machines) != 1 || (c.OPCUA != "") != (len(cfg.OPCUA) == 1) {
			t.Fatalf("loaded %+v from\n%s", cfg, y)
		}
		if c.Rate > 0 && !strings.Contains(y, "rate: 200") {
			t.Fatalf("rate missing:\n%s", y)
		}
	}
}

// WaitProgressing waits past its stall for as long as the count changes: a
// count that goes down every 60 ms over 1.2 s, with a stall of 300 ms,
// is waited for to its end.
func TestWaitProgressingWaitsWhileTheCountChanges(t *testing.T) {
	start := time.Now()
	left := func() int64 { return max(0, 20-int64(time.Since(start)/(60*time.Millisecond))) }
	WaitProgressing(t, 300*time.Millisecond, "the count at 0", func() (bool, int64, string) {
		n := left()
		return n == 0, n, ""
	})
	if left() != 0 {
		t.Errorf("returned with %d left", left())
	}
}
