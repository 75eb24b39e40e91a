package agent_test

import (
	"context"
	"os"
	"strings"
	"testing"
)

// A machine renamed in the configuration (press-1 to press-1b, the same
// counter): the renamed machine counts on from the counter's last value.
// It took that value as a new baseline, and the pieces made since the
// last reading under the old id were lost (5 of 20 in the probe).
func TestRenamedMachineCountsOn(t *testing.T) {
	p := newPlant(t, plantOptions{machines: []string{"press-1"}})
	ra := p.startAgent()
	m := p.machines[0]
	p.produce(m, 10, 0)
	p.waitExactQty(ra, "press-1", 10)
	full, err := os.ReadFile(p.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	renamed := strings.Replace(string(full), "  - id: press-1\n", "  - id: press-1b\n", 1)
	// And one of its settings: the reload's log names it.
	renamed = strings.Replace(renamed, "field: good, timestamp_field: ts } }\n", "field: good, timestamp_field: ts }, rollover: 1000000 }\n", 1)
	if renamed == string(full) {
		t.Fatalf("config not as expected:\n%s", full)
	}
	p.writeConfig(renamed)
	if err := ra.a.Reload(context.Background(), p.cfgPath); err != nil {
		t.Fatal(err)
	}
	p.produce(m, 5, 0)
	p.waitExactQty(ra, "press-1", 15) // the work order on the machine's work center
	if !strings.Contains(p.logs.String(), "renamed?") {
		t.Errorf("the rename is not logged:\n%s", p.logs.String())
	}
	full, _ = os.ReadFile(p.cfgPath)
	full = []byte(strings.Replace(string(full), "rollover: 1000000", "rollover: 2000000", 1))
	p.writeConfig(string(full))
	if err := ra.a.Reload(context.Background(), p.cfgPath); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(p.logs.String(), `settings_changed="press-1b good_count"`) {
		t.Errorf("the rollover change is not named by the reload's log:\n%s", p.logs.String())
	}
}
