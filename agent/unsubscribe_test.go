package agent_test

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"
)

// A machine taken out of the configuration by a reload (its topic
// unsubscribed by the replaced source) and put back at the next start,
// while the other machine of the broker kept publishing during the
// restart: mochi resends those messages in the resumed session and answers
// the SUBSCRIBE 0x91 ("packet identifier in use"). Taken for "the session
// holds it" (the review), press-2's counts never arrived, the source
// connected, nothing refused; the connector now asks again.
func TestMachinePutBackAfterItsTopicWasUnsubscribed(t *testing.T) {
	t.Parallel()
	p := newPlant(t, plantOptions{machines: []string{"press-1", "press-2"}})
	ra := p.startAgentWith(true)
	m1, m2 := p.machines[0], p.machines[1]
	p.produce(m1, 2, 0)
	p.produce(m2, 2, 0)
	p.waitExactQty(ra, "press-1", 2)
	p.waitExactQty(ra, "press-2", 2)

	raw, err := os.ReadFile(p.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	full := string(raw)
	i := strings.Index(full, "  - id: press-2\n")
	j := strings.Index(full[i+1:], "  - id: ")
	without := full[:i]
	if j >= 0 {
		without += full[i+1+j:]
	}
	p.writeConfig(without)
	if err := ra.a.Reload(t.Context(), p.cfgPath); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "the source replaced and connected", func() (bool, string) {
		return strings.Contains(p.logs.String(), "unsubscribed the broker's session from filters"), "no unsubscribe logged"
	})
	ra.stop()

	for range 10 { // press-1 runs on while the agent restarts
		p.produce(m1, 1, 0)
	}
	p.writeConfig(full)
	ra = p.startAgentWith(false)
	p.produce(m2, 3, 0)
	p.waitExactQty(ra, "press-1", 12)
	waitFor(t, 10*time.Second, "press-2's counts", func() (bool, string) {
		got := p.qty("press-2")
		return got == 5, fmt.Sprintf("qty %v; sources %+v; machine %+v", got, ra.a.Status().Sources, machineStatus(ra, "press-2"))
	})
}
