package main

import (
	"bytes"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/plantedge/plantedge/agent"
	"github.com/plantedge/plantedge/connectors/opcua"
)

// TestStatusShowsPolledNodes: a source whose server cannot monitor some
// nodes says how many it polls, next to its state.
func TestStatusShowsPolledNodes(t *testing.T) {
	var out bytes.Buffer
	printStatus(&out, agent.Status{Site: "s", AgentRunning: true, Sources: []agent.SourceStatus{
		{Name: "line1", Kind: "opcua", State: "connected", Sessions: 1, PolledNodes: 3},
		{Name: "broker", Kind: "mqtt", State: "connected", Sessions: 1},
	}})
	var line1, broker string
	for l := range strings.Lines(out.String()) {
		switch {
		case strings.HasPrefix(l, "  line1 "):
			line1 = l
		case strings.HasPrefix(l, "  broker "):
			broker = l
		}
	}
	if !strings.Contains(line1, "connected (polling 3 nodes)") || strings.Contains(broker, "polling") {
		t.Errorf("sources:\n%s", out.String())
	}
}

// One refused topic or polled node is said in the singular (the README
// audit: a broker refusing one topic showed "1 topics refused").
func TestStatusCountsOneRefusedTopicInTheSingular(t *testing.T) {
	var out bytes.Buffer
	printStatus(&out, agent.Status{Site: "s", AgentRunning: true, Sources: []agent.SourceStatus{
		{Name: "line1", Kind: "opcua", State: "connected", Sessions: 1, PolledNodes: 1},
		{Name: "broker", Kind: "mqtt", State: "connected", Sessions: 1, RefusedNodes: []opcua.RefusedNode{{Node: "a/b", Status: "subscription refused by the broker (code 0x80)"}}},
	}})
	s := out.String()
	if !strings.Contains(s, "connected (polling 1 node)") || !strings.Contains(s, "connected (1 topic refused)") ||
		!strings.Contains(s, "  broker: topic a/b refused: subscription refused by the broker (code 0x80)\n") {
		t.Errorf("sources:\n%s", s)
	}
}

// A buffer file written back once is said so: "1 times" before (the docs
// probe: rm of buffer.db under a running agent).
func TestStatusCountsOneRestoredFileInTheSingular(t *testing.T) {
	for n, want := range map[uint64]string{1: "(1 time since start)", 3: "(3 times since start)"} {
		var out bytes.Buffer
		printStatus(&out, agent.Status{Site: "s", AgentRunning: true, Buffer: agent.BufferStatus{FileRestored: n}})
		if s := out.String(); !strings.Contains(s, "WARNING: the buffer file was deleted or replaced while in use "+want+" and written back") {
			t.Errorf("%d restores:\n%s", n, s)
		}
	}
}

// A refusal's text goes below the sources table, not into its STATE
// column, which it stretched for every source (the PEERS audit); past five
// the rest are counted.
func TestStatusListsRefusedNodesBelowTheSources(t *testing.T) {
	var refused []opcua.RefusedNode
	for i := range 7 {
		refused = append(refused, opcua.RefusedNode{Node: fmt.Sprintf("ns=2;s=Line1.Press%d.Count", i),
			Status: "BadNodeIdUnknown: The node id refers to a node that does not exist in the server address space."})
	}
	var out bytes.Buffer
	printStatus(&out, agent.Status{Site: "s", AgentRunning: true, Sources: []agent.SourceStatus{
		{Name: "line1", Kind: "opcua", State: "connected", Sessions: 1, RefusedNodes: refused},
		{Name: "broker", Kind: "mqtt", State: "connected", Sessions: 1},
	}})
	s := out.String()
	var broker string
	for l := range strings.Lines(s) {
		if strings.HasPrefix(l, "  broker ") {
			broker = l
		}
	}
	if len(broker) > 60 || !strings.Contains(s, "connected (7 nodes refused)") ||
		!strings.Contains(s, "  line1: node ns=2;s=Line1.Press4.Count refused: BadNodeIdUnknown: The node id") ||
		strings.Contains(s, "Press5") || !strings.Contains(s, "  line1: 2 more refused (plantedge status --json lists them all)\n") {
		t.Errorf("sources:\n%s", s)
	}
}

// While a write Odoo did not answer may still commit, status says that a
// flush does not help (it said "plantedge flush tries now").
func TestStatusSaysAFlushDoesNotCutTheSettleWait(t *testing.T) {
	var out bytes.Buffer
	printStatus(&out, agent.Status{Site: "s", AgentRunning: true, Odoo: agent.OdooStatus{URL: "https://erp", State: "offline",
		LastError: "odoo mrp.workorder.write: timed out", NextAttemptSeconds: 87, SettleSeconds: 87, LastAnswerAgeSeconds: 40}})
	if s := out.String(); !strings.Contains(s, "next attempt in 1m27s (a write Odoo did not answer") || strings.Contains(s, "flush tries now") ||
		!strings.Contains(s, "Odoo      WRITES HELD 1m27s (offline at the last try; not asked again before then)  https://erp") {
		t.Errorf("status:\n%s", s)
	}
	// Just started, holding back for what the last run sent: Odoo was not
	// asked yet, so it is not called offline.
	out.Reset()
	printStatus(&out, agent.Status{Site: "s", AgentRunning: true, Odoo: agent.OdooStatus{URL: "https://erp", State: "offline",
		LastError: agent.SettleNote, NextAttemptSeconds: 87, SettleSeconds: 87}})
	if s := out.String(); !strings.Contains(s, "Odoo      NOT ASKED YET  https://erp") {
		t.Errorf("status at a start that holds back:\n%s", s)
	}
}

// A key the agent's user cannot read shows as auth_failed (the state SPEC
// knows), but status says that Odoo refused nothing (the operator probe:
// "once a new API key is in place" sent the technician to Odoo for a new key).
func TestStatusSaysAnUnreadableKeyIsNotOdoosRefusal(t *testing.T) {
	var out bytes.Buffer
	printStatus(&out, agent.Status{Site: "s", AgentRunning: true, Odoo: agent.OdooStatus{URL: "https://erp", State: "auth_failed",
		LastError: "odoo client: read secret /etc/plantedge/odoo-api-key: permission denied", NextAttemptSeconds: 10}})
	if s := out.String(); !strings.Contains(s, "Odoo was not asked: the agent cannot read its API key") || strings.Contains(s, "plantedge flush tries the key again") {
		t.Errorf("status:\n%s", s)
	}
	// A key file read, whose content the agent refuses (two lines, none, a
	// control character): not its owner, mode or path (review 44: status
	// sent the technician to the file's permissions).
	for _, e := range []string{
		"odoo client: read secret /etc/plantedge/odoo-api-key: the file holds 2 lines, a key or password is one: keep only it",
		"odoo client: read secret /etc/plantedge/odoo-api-key: file is empty: no secret",
	} {
		out.Reset()
		printStatus(&out, agent.Status{Site: "s", AgentRunning: true, Odoo: agent.OdooStatus{URL: "https://erp", State: "auth_failed", LastError: e, NextAttemptSeconds: 10}})
		if s := out.String(); !strings.Contains(s, "Odoo was not asked: the agent's API key file holds no key it can send") || strings.Contains(s, "owner, mode or path") {
			t.Errorf("status:\n%s", s)
		}
	}
}

// With the agent stopped nobody asks Odoo: the human view does not call it
// offline (the JSON keeps offline, as SPEC's values go).
func TestStoppedStatusDoesNotCallOdooOffline(t *testing.T) {
	var out bytes.Buffer
	printStatus(&out, agent.Status{Site: "s", Odoo: agent.OdooStatus{URL: "https://erp", State: "offline", LastError: "agent not running"}})
	if s := out.String(); !strings.Contains(s, "Odoo      NOT ASKED (agent not running)  https://erp") || strings.Contains(s, "OFFLINE") {
		t.Errorf("status:\n%s", s)
	}
}

// Nor its sources: a stopped agent reads no PLC and no broker, so the
// human view does not call them down — a technician took "line1 opcua down"
// for the PLC being off (the operator review). The JSON keeps down, as
// SPEC's values go.
func TestStoppedStatusDoesNotCallSourcesDown(t *testing.T) {
	var out bytes.Buffer
	printStatus(&out, agent.Status{Site: "s", Odoo: agent.OdooStatus{URL: "https://erp", State: "offline", LastError: "agent not running"},
		Sources: []agent.SourceStatus{{Name: "line1", Kind: "opcua", State: "down"}, {Name: "broker", Kind: "mqtt", State: "down"}}})
	s := out.String()
	for _, name := range []string{"line1", "broker"} {
		var row string
		for l := range strings.Lines(s) {
			if strings.HasPrefix(l, "  "+name+" ") {
				row = l
			}
		}
		if !strings.Contains(row, "NOT ASKED (agent not running)") || strings.Contains(row, "down") {
			t.Errorf("source %s: %q in:\n%s", name, row, s)
		}
	}
}

// A machine whose run state is not known now says what it was and why.
// Held records point at the machines' errors — which a stopped agent's
// status does not have (the technician probe: "see Machines", and nothing
// there).
func TestStatusSaysWhereHeldRecordsAreExplained(t *testing.T) {
	for _, running := range []bool{true, false} {
		var out bytes.Buffer
		printStatus(&out, agent.Status{Site: "s", AgentRunning: running, Buffer: agent.BufferStatus{Pending: 415, Held: 414}})
		want := map[bool]string{true: "414 held: they wait for Odoo-side action, see Machines)",
			false: "414 held: they wait for Odoo-side action, the agent's status says which once it runs)"}[running]
		if !strings.Contains(out.String(), want) {
			t.Errorf("agent running %v: no %q in\n%s", running, want, out.String())
		}
	}
}

func TestStatusSaysWhyAMachinesStateIsUnknown(t *testing.T) {
	var out bytes.Buffer
	printStatus(&out, agent.Status{Site: "s", AgentRunning: true, Machines: []agent.MachineStatus{
		{ID: "press-1", Workcenter: "WC1", State: "unknown", LastKnownState: "running", UnknownBecause: "source down"},
		{ID: "press-2", Workcenter: "WC2", State: "unknown", LastKnownState: "stopped", UnknownBecause: "bad quality"},
	}})
	for _, want := range []string{"unknown (was running: source down)", "unknown (was stopped: its running value has bad or uncertain quality)"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("want %q in:\n%s", want, out.String())
		}
	}
}

// Malformed values a source sent show under the sources, with the last
// one's reason; the disk-full state of the buffer shows too, and a write
// the disk does not complete.
func TestStatusShowsMalformedAndDiskFull(t *testing.T) {
	var out bytes.Buffer
	printStatus(&out, agent.Status{Site: "s", AgentRunning: true, Sources: []agent.SourceStatus{
		{Name: "broker", Kind: "mqtt", State: "connected", Sessions: 1, MalformedSamples: 12,
			LastMalformed: `plant/press-1: "n/a" is not a number`, LastMalformedAgeSeconds: 65,
			StrayMessages: 3, LastStrayTopic: "plant-9/press-1", LastStrayAgeSeconds: 4},
	}, Buffer: agent.BufferStatus{Path: "/var/lib/plantedge/buffer.db", DiskFullSeconds: 130, LimitBytes: 3 << 20,
		ReserveGivenUpSeconds: 75, WriteStalledSeconds: 42}})
	for _, want := range []string{
		`  broker: 12 values skipped as malformed since start; the last 1m5s ago: plant/press-1: "n/a" is not a number`,
		"  broker: 3 messages since start on topics no machine maps, the last 4s ago on plant-9/press-1: the broker's session for this client_id has subscriptions this agent did not make",
		"WARNING: DISK FULL for 2m10s (free space on the disk of /var/lib/plantedge): the buffer keeps to 3.0 MiB of records",
		"WARNING: DISK FULL: the buffer's reserve file was given up 1m15s ago so that what Odoo takes can be recorded (free space on the disk of /var/lib/plantedge)",
		"WARNING: BUFFER WRITE STALLED for 42s: the disk of /var/lib/plantedge does not complete it",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("want %q in:\n%s", want, out.String())
		}
	}
}

func TestStatusShowsTheConfigFile(t *testing.T) {
	var out strings.Builder
	printStatus(&out, agent.Status{Site: "s", AgentRunning: true, Config: &agent.ConfigStatus{File: "/etc/plantedge/plantedge.yaml",
		ChangedSinceLoaded: true, LastReloadError: "plantedge.yaml:4:9: yaml: bad", LastReloadErrorAgeSeconds: 42}})
	if s := out.String(); !strings.Contains(s, "CONFIG RELOAD REJECTED 42s ago: plantedge.yaml:4:9: yaml: bad") {
		t.Errorf("rejected reload not shown:\n%s", s)
	}
	out.Reset()
	// the file put back as the agent runs it: history, nothing to fix
	printStatus(&out, agent.Status{Site: "s", AgentRunning: true, Config: &agent.ConfigStatus{File: "/etc/plantedge/plantedge.yaml",
		LastReloadError: "plantedge.yaml:4:9: yaml: bad", LastReloadErrorAgeSeconds: 42}})
	if s := out.String(); strings.Contains(s, "REJECTED") || !strings.Contains(s, "the file is back as the agent runs it") {
		t.Errorf("a rejected reload whose file is back:\n%s", s)
	}
	out.Reset()
	printStatus(&out, agent.Status{Site: "s", AgentRunning: true, Config: &agent.ConfigStatus{File: "/etc/plantedge/plantedge.yaml", ChangedSinceLoaded: true}})
	if s := out.String(); !strings.Contains(s, "CONFIG FILE CHANGED since the agent read it") {
		t.Errorf("changed file not shown:\n%s", s)
	}
	out.Reset()
	printStatus(&out, agent.Status{Site: "s", AgentRunning: true, Config: &agent.ConfigStatus{File: "/etc/plantedge/plantedge.yaml",
		ChangedSinceLoaded: true, RestartNeededFor: []string{"site", "odoo"}}})
	if s := out.String(); !strings.Contains(s, "CONFIG CHANGES WAIT FOR A RESTART (site, odoo): a reload does not apply them; systemctl restart plantedge") {
		t.Errorf("restart-only changes not shown:\n%s", s)
	}
	out.Reset()
	printStatus(&out, agent.Status{Site: "s", AgentRunning: true, Config: &agent.ConfigStatus{File: "/etc/plantedge/plantedge.yaml"}})
	if s := out.String(); strings.Contains(s, "CONFIG") {
		t.Errorf("a config in step shown:\n%s", s)
	}
}

// A refused key that came as the systemd credential: the hint says to
// restart (systemd copies the key at the start), not that flush tries it;
// from api_key_file, that flush tries it (once auth_backoff has passed
// since the refusal: the bot user unarchived, a new key in the file).
func TestStatusHintForARefusedCredential(t *testing.T) {
	var out strings.Builder
	printStatus(&out, agent.Status{Site: "s", AgentRunning: true, Odoo: agent.OdooStatus{State: "auth_failed", NextAttemptSeconds: 50,
		KeyFrom: "the systemd credential odoo-api-key"}})
	if s := out.String(); !strings.Contains(s, "sudo systemctl restart plantedge") || strings.Contains(s, "flush tries the key again") {
		t.Errorf("hint:\n%s", s)
	}
	out.Reset()
	printStatus(&out, agent.Status{Site: "s", AgentRunning: true, Odoo: agent.OdooStatus{State: "auth_failed", NextAttemptSeconds: 50,
		KeyFrom: "api_key_file /etc/plantedge/odoo-api-key"}})
	if s := out.String(); !strings.Contains(s, "plantedge flush tries the key again once forward.auth_backoff has passed since the refusal") {
		t.Errorf("hint:\n%s", s)
	}
}

func TestTimeoutFlagTakesSeconds(t *testing.T) {
	for in, want := range map[string]time.Duration{"5": 5 * time.Second, "2.5": 2500 * time.Millisecond, "90s": 90 * time.Second, "5m": 5 * time.Minute} {
		var d secondsOrDuration
		if err := d.Set(in); err != nil || time.Duration(d) != want {
			t.Errorf("Set(%q) = %v, %v; want %v", in, time.Duration(d), err, want)
		}
	}
	for _, in := range []string{"-1", "five", "1e300"} {
		var d secondsOrDuration
		if err := d.Set(in); err == nil {
			t.Errorf("Set(%q) accepted: %v", in, time.Duration(d))
		}
	}
}

// Every duration flag takes a bare number of seconds, as flush's --timeout
// does (the small leads probe: browse --timeout 5 was refused with Go's
// "time: missing unit in duration"), and says so in its help.
func TestDurationFlagsTakeSeconds(t *testing.T) {
	for _, tc := range []struct{ cmd, flag, in, want string }{
		{"flush", "timeout", "5", "5s"},
		{"browse", "timeout", "5", "5s"},
		{"browse", "timeout", "2.5", "2.5s"},
		{"browse", "timeout", "1m", "1m0s"},
		{"demo", "duration", "60", "1m0s"},
	} {
		c, _, err := newRootCmd().Find([]string{tc.cmd})
		if err != nil {
			t.Fatal(err)
		}
		f := c.Flag(tc.flag)
		if err := c.ParseFlags([]string{"--" + tc.flag, tc.in}); err != nil || f.Value.String() != tc.want {
			t.Errorf("%s --%s %s: %v, %v; want %s", tc.cmd, tc.flag, tc.in, f.Value, err, tc.want)
		}
		if !strings.Contains(f.Usage, "a bare number is seconds") {
			t.Errorf("%s --%s: its help does not say a bare number is seconds: %q", tc.cmd, tc.flag, f.Usage)
		}
	}
	// Defaults stay as they were.
	for cmd, want := range map[string]string{"browse": "10s", "demo": "45s", "flush": "5m0s"} {
		c, _, _ := newRootCmd().Find([]string{cmd})
		name := "timeout"
		if cmd == "demo" {
			name = "duration"
		}
		if got := c.Flag(name).DefValue; got != want {
			t.Errorf("%s --%s default %s, want %s", cmd, name, got, want)
		}
	}
}

// flush judges held records on a round that began after its request — of
// the instance it asked; an agent that does not say, or another instance,
// is taken as it is.
func TestFlushTicket(t *testing.T) {
	start := time.Date(2026, 12, 1, 6, 0, 0, 0, time.UTC)
	five := uint64(5)
	st := func(done uint64, started time.Time) agent.Status {
		return agent.Status{Started: started, Odoo: agent.OdooStatus{RoundsDone: done}}
	}
	tk := agent.FlushTicket{After: &five, Started: start}
	for _, c := range []struct {
		st   agent.Status
		want bool
	}{
		{st(5, start), false},
		{st(6, start), true},
		{st(0, start.Add(time.Minute)), true}, // restarted meanwhile
	} {
		if got := tk.Past(c.st); got != c.want {
			t.Errorf("Past(%d rounds, started %v) = %v", c.st.Odoo.RoundsDone, c.st.Started, got)
		}
	}
	if !(agent.FlushTicket{}).Past(st(0, time.Time{})) {
		t.Error("an agent that does not say is not taken as it is")
	}
	// Through: nothing forwardable left from before the request.
	seq := uint64(100)
	tk.Seq = &seq
	for oldest, want := range map[uint64]bool{0: true, 101: true, 100: false, 7: false} {
		s := st(6, start)
		s.Buffer.OldestForwardableSeq = oldest
		if got := tk.Through(s); got != want {
			t.Errorf("Through(oldest forwardable %d, ticket 100) = %v", oldest, got)
		}
	}
	if (agent.FlushTicket{After: &five, Started: start}).Through(st(6, start)) {
		t.Error("an agent that does not say its seq is taken as through")
	}
}

// The Odoo line says how long ago Odoo last answered, and a wait Odoo asked
// for with Retry-After is not offered to flush away; a write failure says
// which of the quota, the disk or the device it is.
func TestStatusOdooWaitsAndWriteCause(t *testing.T) {
	var out bytes.Buffer
	printStatus(&out, agent.Status{Site: "s", AgentRunning: true,
		Odoo: agent.OdooStatus{State: "offline", URL: "https://odoo.example", LastError: "http 503", NextAttemptSeconds: 600,
			RetryAfterSeconds: 590, LastAnswerAgeSeconds: 12},
		Buffer: agent.BufferStatus{Pending: 5, WriteError: "append: buffer full: max_bytes reached: need 200 bytes", WriteErrorCause: "max_bytes", WriteFailingSeconds: 30}})
	for _, want := range []string{
		"last answer 12s ago",
		"Odoo asked the agent to wait 9m50s more with Retry-After: plantedge flush does not cut that short",
		"(max_bytes reached, until the records being forwarded reach Odoo)",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("want %q in:\n%s", want, out.String())
		}
	}
	if strings.Contains(out.String(), "flush tries now") {
		t.Errorf("flush offered against a Retry-After:\n%s", out.String())
	}
	// With no record pending, forwarding frees nothing (the spec audit).
	out.Reset()
	printStatus(&out, agent.Status{Site: "s", AgentRunning: true,
		Buffer: agent.BufferStatus{WriteError: "append: buffer full: max_bytes reached: need 200 bytes", WriteErrorCause: "max_bytes", WriteFailingSeconds: 30}})
	if want := "(max_bytes reached with no record pending: dead letters and what the agent keeps besides the records fill it"; !strings.Contains(out.String(), want) {
		t.Errorf("want %q in:\n%s", want, out.String())
	}
}

// Counts held because Odoo refuses the bot the work orders are not sent
// looking for a work order to start.
func TestFlushSaysWhyCountsAreHeld(t *testing.T) {
	st := agent.Status{Machines: []agent.MachineStatus{{ID: "m1", Unattributed: 5}}}
	if why := heldWhy(st); why != "waiting for a work order in progress" {
		t.Errorf("no work order: %q", why)
	}
	st.Machines[0].Error = agent.WorkordersRefusedPrefix + " (odoo mrp.workorder.search_read: access denied): counts are held; give the bot user read access"
	if why := heldWhy(st); !strings.Contains(why, "give it read access") {
		t.Errorf("reads refused: %q", why)
	}
	// Another reason the machine gives (the Odoo probe: a work-center code
	// on two work centers, which flush called waiting for a work order).
	st.Machines[0].Error = `work center code "WC1" matches several work centers in Odoo`
	if why := heldWhy(st); why != `m1: work center code "WC1" matches several work centers in Odoo` {
		t.Errorf("the machine's own reason: %q", why)
	}
}

// Records held only because their machine left the configuration are not
// said to wait for Odoo.
func TestStatusHeldForARemovedMachine(t *testing.T) {
	var out strings.Builder
	printStatus(&out, agent.Status{Site: "s", AgentRunning: true, Buffer: agent.BufferStatus{Pending: 1, Held: 1, Unmapped: 1,
		UnmappedMachines: []agent.UnmappedMachine{{ID: "press-8", Records: 1, Good: 15}}}})
	for _, want := range []string{
		"1 record (1 held: of machines no longer in the config, see below)",
		"1 record of machines no longer in the config (press-8 (15 pieces)): they wait for the machine to come back, an hour at most, then go to the dead letters",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("want %q in:\n%s", want, out.String())
		}
	}
	if strings.Contains(out.String(), "Odoo-side") {
		t.Errorf("held records of a removed machine said to wait for Odoo:\n%s", out.String())
	}
}

// While the agent waits for writes it sent before to settle, Odoo is not
// asked: a flush line says so rather than "offline" (a technician then
// checks the WAN while Odoo is fine).
// flush's line says when Odoo is asked next: its own ask to the agent when
// that comes before the agent's backoff, which it cuts short.
func TestFlushNextAttemptCountsItsOwnAsk(t *testing.T) {
	for _, tc := range []struct {
		agent float64
		kick  time.Duration
		want  time.Duration
	}{{10, 1200 * time.Millisecond, 2 * time.Second}, {10, 500 * time.Millisecond, time.Second}, {3, 16 * time.Second, 3 * time.Second}, {0.2, 4 * time.Second, time.Second}} {
		if got := flushNextAttempt(agent.OdooStatus{State: "offline", NextAttemptSeconds: tc.agent}, tc.kick); got != tc.want {
			t.Errorf("agent in %gs, flush asks in %s: %s, want %s", tc.agent, tc.kick, got, tc.want)
		}
	}
	// A refused key's wait (Odoo's login lockout) is not cut short by the
	// flush's ask (review 44: "next attempt in 1s", the agent 57 s away).
	if got := flushNextAttempt(agent.OdooStatus{State: "auth_failed", NextAttemptSeconds: 56.2}, time.Second); got != 57*time.Second {
		t.Errorf("auth_failed, agent in 56.2s, flush asks in 1s: %s, want 57s", got)
	}
	// A key file the agent cannot read: no key was refused.
	unread := agent.OdooStatus{State: "auth_failed", NextAttemptSeconds: 30, LastError: "odoo client: read secret /etc/plantedge/odoo-api-key: permission denied"}
	if n := authWaitNote(unread); n != " (next attempt in 30s: the agent cannot use its API key file; once it can, a flush tries it at once)" {
		t.Errorf("unreadable key: %q", n)
	}
}

func TestFlushLineWhileWritesSettle(t *testing.T) {
	st := agent.Status{Odoo: agent.OdooStatus{State: "offline", SettleSeconds: 80}}
	if w := odooWord(st); w != "not asked yet (writes sent before may still commit)" {
		t.Errorf("settling: %q", w)
	}
	st.Odoo.SettleSeconds = 0
	if w := odooWord(st); w != "offline" {
		t.Errorf("offline: %q", w)
	}
}

// Rounds that mostly wait for forward.rate (the scale probe: 200 machines
// at the default 5 requests/s, 70 s a round, Odoo 70–140 s behind and
// status silent about it) are named, with the setting; a slow round that
// waits on Odoo itself, or a short one, is not.
func TestStatusSaysForwardRateHoldsOdooBehind(t *testing.T) {
	for _, tc := range []struct {
		round, wait float64
		want        bool
	}{{70, 62, true}, {70, 10, false}, {8, 7, false}} {
		var out bytes.Buffer
		printStatus(&out, agent.Status{Site: "s", AgentRunning: true, Odoo: agent.OdooStatus{URL: "https://erp", State: "online",
			RoundSeconds: tc.round, RateWaitSeconds: tc.wait}})
		s := out.String()
		if got := strings.Contains(s, "BEHIND: a round of writes takes 1m10s, 1m2s of it waiting for forward.rate"); got != tc.want {
			t.Errorf("round %g s, %g s waiting: shown %v, want %v\n%s", tc.round, tc.wait, got, tc.want, s)
		}
	}
}

// A switch to another Odoo waiting for its first answer (the second
// self-probe: status did not show it, only the start's log line did).
func TestStatusShowsASwitchWaitingForTheNewOdoo(t *testing.T) {
	var out bytes.Buffer
	printStatus(&out, agent.Status{Site: "s", AgentRunning: true, Odoo: agent.OdooStatus{URL: "https://erp.example.com", State: "offline",
		SwitchFrom: "odoo-test:8069 test"}})
	if s := out.String(); !strings.Contains(s, "SWITCHING: the buffer file's state belongs to another Odoo (odoo-test:8069 test)") {
		t.Errorf("switch not shown:\n%s", s)
	}
	out.Reset()
	printStatus(&out, agent.Status{Site: "s", Odoo: agent.OdooStatus{URL: "https://erp.example.com", State: "offline",
		SwitchFrom: "odoo-test:8069 test"}})
	if s := out.String(); !strings.Contains(s, "at its start the agent switches to this one") {
		t.Errorf("switch not shown with the agent stopped:\n%s", s)
	}
	// A file an older plantedge wrote, which does not record its Odoo: an
	// upgrade, checked, not said to be another Odoo's (the upgrade probe).
	out.Reset()
	printStatus(&out, agent.Status{Site: "s", AgentRunning: true, Odoo: agent.OdooStatus{URL: "https://erp.example.com", State: "offline",
		SwitchFrom: agent.UnrecordedOdoo}})
	if s := out.String(); strings.Contains(s, "SWITCHING") || !strings.Contains(s, "CHECKING: an older plantedge wrote the buffer file") {
		t.Errorf("an older version's file shown as another Odoo's:\n%s", s)
	}
	out.Reset()
	printStatus(&out, agent.Status{Site: "s", AgentRunning: true, Odoo: agent.OdooStatus{URL: "https://erp.example.com", State: "online"}})
	if s := out.String(); strings.Contains(s, "SWITCHING") {
		t.Errorf("a switch shown without one:\n%s", s)
	}
}

// Buffer files moved aside as corrupt are shown until deleted — this run's
// once, as the one moved now.
func TestStatusShowsCorruptFilesSetAside(t *testing.T) {
	var out bytes.Buffer
	now, old := "/var/lib/plantedge/buffer.db.corrupt-20261203T040000.000Z", "/var/lib/plantedge/buffer.db.corrupt-20261101T080000.000Z"
	printStatus(&out, agent.Status{Site: "s", AgentRunning: true, Buffer: agent.BufferStatus{Recovered: now, SetAside: []string{old, now}}})
	s := out.String()
	if !strings.Contains(s, "the buffer file was corrupt and was moved to "+now) ||
		!strings.Contains(s, "1 buffer file moved aside as corrupt earlier, records in it not forwarded: "+old+" (look, then delete it)") ||
		strings.Count(s, now) != 1 {
		t.Errorf("status:\n%s", s)
	}
}

// A scan of the pending counts that stopped short is said: the machines'
// PENDING column is then less than what waits.
func TestStatusShowsPendingCountsShort(t *testing.T) {
	var out bytes.Buffer
	printStatus(&out, agent.Status{Site: "s", Buffer: agent.BufferStatus{PendingPartial: "a damaged record in the buffer file ended the scan"}})
	if s := out.String(); !strings.Contains(s, "WARNING: PENDING COUNTS SHORT: a damaged record in the buffer file ended the scan") {
		t.Errorf("status:\n%s", s)
	}
}

// Pending counts still being read in the background (a big backlog after
// a start) are said, and the machines' PENDING shown unknown, not 0.
func TestStatusShowsPendingCountsBeingRead(t *testing.T) {
	var out bytes.Buffer
	printStatus(&out, agent.Status{Site: "s", AgentRunning: true, Buffer: agent.BufferStatus{Pending: 2500000, PendingCountsReading: 2400000},
		Machines: []agent.MachineStatus{{ID: "press-1", Workcenter: "wc"}}})
	s := out.String()
	if !strings.Contains(s, "pending counts being read (2400000 records)") {
		t.Errorf("status does not say the counts are being read:\n%s", s)
	}
	var row []string
	for line := range strings.SplitSeq(s, "\n") {
		if f := strings.Fields(line); len(f) > 0 && f[0] == "press-1" {
			row = f
		}
	}
	if !slices.Contains(row, "?") {
		t.Errorf("press-1's PENDING not shown unknown:\n%s", s)
	}
}

// A flush that runs out of time while Odoo refuses the key says what to
// look at: it said "not drained within 5s: 1 record pending (odoo
// auth_failed)" and nothing more, and no wait drains that.
func TestFlushVerdictOnARefusedKeySaysWhatToMend(t *testing.T) {
	st := agent.Status{Odoo: agent.OdooStatus{State: "auth_failed"}}
	msg := notDrained(5*time.Second, 1, st)
	for _, want := range []string{"not drained within 5s: 1 record pending (odoo auth_failed); Odoo refuses the API key: plantedge status says why", "bot user archived", "then flush again"} {
		if !strings.Contains(msg, want) {
			t.Errorf("verdict lacks %q: %s", want, msg)
		}
	}
	st.Odoo.State = "offline"
	if msg := notDrained(5*time.Second, 1, st); strings.Contains(msg, "API key") {
		t.Errorf("verdict with Odoo offline: %s", msg)
	}
}

// A flush that runs out of time on a healthy drain of an outage's stops
// says why, and so does status: they go 2000 a round (the drain probe: a 5-minute flush failed on
// 2,129 lines of 100 machines that took 10 minutes, saying only how many
// records were pending). Not said of a few stops, nor with Odoo away.
func TestFlushVerdictNamesAStopsBacklog(t *testing.T) {
	st := agent.Status{Odoo: agent.OdooStatus{State: "online"}, Buffer: agent.BufferStatus{Lanes: map[string]agent.LaneStatus{"events": {Pending: 4258}, "counts": {Pending: 900}}}}
	if msg := notDrained(5*time.Minute, 5158, st); !strings.Contains(msg, "not drained within 5m0s: 5158 records pending (odoo online); 4258 records of them are stops and runs, which go to Odoo as downtime lines, 2000 a round in loads of 200, each round also booking every machine's counts and scrap: a backlog") {
		t.Errorf("verdict: %s", msg)
	}
	var out bytes.Buffer
	printStatus(&out, st)
	if !strings.Contains(out.String(), "4258 records are stops and runs: they go to Odoo as downtime lines, 2000 a round in loads of 200, each round also booking every machine's counts and scrap\n") {
		t.Errorf("status:\n%s", out.String())
	}
	st.Buffer.Lanes["events"] = agent.LaneStatus{Pending: 12}
	if msg := notDrained(5*time.Minute, 912, st); strings.Contains(msg, "stops and runs") {
		t.Errorf("a few stops: %s", msg)
	}
	st.Odoo.State = "offline"
	st.Buffer.Lanes["events"] = agent.LaneStatus{Pending: 4258}
	if msg := notDrained(5*time.Minute, 5158, st); strings.Contains(msg, "stops and runs") || !strings.Contains(msg, "(odoo offline)") {
		t.Errorf("Odoo away: %s", msg)
	}
}

// A backlog that drains (status --json's drain): one line with its pace,
// the time left, and what the round under way does — buffer.pending does
// not move until a round's end (the drain probe: 915,000 for 90 s).
func TestStatusShowsTheDrain(t *testing.T) {
	f := func(v float64) *float64 { return &v }
	for _, tc := range []struct {
		name string
		d    *agent.DrainStatus
		want string
	}{
		{"none", nil, ""},
		{"first round, its loads", &agent.DrainStatus{DowntimeLeft: 8, RoundsLeft: 1, Round: &agent.DrainRound{Number: 31, Seconds: 6.2, Phase: "downtime",
			DowntimeClaimed: 2000, CountRecords: 914211, Loads: 10, LoadsSent: 6, RecordsLeft: 1200}},
			"Drain     backlog going to Odoo, time left known once the first round's count writes show their pace; round 31 under way for 6s: " +
				"downtime lines, 6 loads sent and 4 to go (2000 stop/run records taken), the counts of 914211 records in flight (acknowledged at the round's end)\n"},
		{"first round, downtime only", &agent.DrainStatus{DowntimeLeft: 3000, RoundsLeft: 2, Round: &agent.DrainRound{Number: 4, Seconds: 3, Phase: "downtime",
			DowntimeClaimed: 2000, Loads: 10, LoadsSent: 2, RecordsLeft: 400}},
			"Drain     backlog going to Odoo, time left known once the first round ends (it sends downtime lines only: no count writes to pace it); round 4 under way for 3s: " +
				"downtime lines, 2 loads sent and 8 to go (2000 stop/run records taken)\n"},
		{"first round, reading", &agent.DrainStatus{DowntimeLeft: 3000, RoundsLeft: 2, Round: &agent.DrainRound{Number: 4, Seconds: 1, Phase: "reading"}},
			"Drain     backlog going to Odoo, time left known once the first round's count writes show their pace, or once it ends if it has none; round 4 under way for 1s: " +
				"reading the buffer and the work orders in Odoo\n"},
		{"first round, its writes", &agent.DrainStatus{RoundSeconds: f(95.4), ETASeconds: f(78), Round: &agent.DrainRound{Number: 31, Seconds: 17, Phase: "counts",
			DowntimeClaimed: 2000, CountRecords: 914211, Loads: 10, LoadsSent: 10, Writes: 100, WritesSent: 12}},
			"Drain     backlog going to Odoo, about 1m18s left (this round, 1m35s a round); round 31 under way for 17s: " +
				"writing counts, 12 machines done and 88 to go, the counts of 914211 records in flight (acknowledged at the round's end)\n"},
		// mapping46: counts in words, not "0 of 1 loads sent".
		{"its one load to send", &agent.DrainStatus{RoundsLeft: 1, Round: &agent.DrainRound{Number: 5, Seconds: 1, Phase: "downtime", DowntimeClaimed: 1, Loads: 1}},
			"round 5 under way for 1s: downtime lines, 1 load to send (1 stop/run record taken)\n"},
		{"one sent, one to go", &agent.DrainStatus{RoundsLeft: 1, Round: &agent.DrainRound{Number: 5, Seconds: 1, Phase: "downtime", DowntimeClaimed: 400, Loads: 2, LoadsSent: 1}},
			"round 5 under way for 1s: downtime lines, 1 load sent and 1 to go (400 stop/run records taken)\n"},
		{"every load sent", &agent.DrainStatus{RoundsLeft: 1, Round: &agent.DrainRound{Number: 5, Seconds: 1, Phase: "downtime", DowntimeClaimed: 400, Loads: 2, LoadsSent: 2}},
			"round 5 under way for 1s: downtime lines, both loads sent (400 stop/run records taken)\n"},
		{"its one machine to write", &agent.DrainStatus{RoundsLeft: 1, Round: &agent.DrainRound{Number: 5, Seconds: 1, Phase: "counts", Writes: 1}},
			"round 5 under way for 1s: writing counts, 1 machine to write\n"},
		{"every machine written", &agent.DrainStatus{RoundsLeft: 1, Round: &agent.DrainRound{Number: 5, Seconds: 1, Phase: "counts", Writes: 3, WritesSent: 3}},
			"round 5 under way for 1s: writing counts, all 3 machines done\n"},
		{"between rounds", &agent.DrainStatus{RoundsDone: 1, RecordsPerSecond: f(9554.9), WindowSeconds: 95.4, RoundSeconds: f(95.4), ETASeconds: f(191), DowntimeLeft: 2500, RoundsLeft: 2},
			"Drain     backlog going to Odoo at 9555 records/s (the last 1m35s), about 3m11s left (2 more rounds, 1m35s a round)\n"},
		// Rounds that keep failing (behind nginx, a load Odoo's worker
		// was killed for, 502 41 times in a minute): not "going to Odoo".
		{"rounds failing", &agent.DrainStatus{RoundsFailed: 41, LastFailure: "odoo mrp.workcenter.productivity.load: <html>\r\n<title>502 Bad Gateway</title> (http 502)",
			DowntimeLeft: 0, RoundsLeft: 1, Round: &agent.DrainRound{Number: 42, Seconds: 1, Phase: "downtime", DowntimeClaimed: 600, Loads: 3}},
			"Drain     backlog NOT going to Odoo: its last 41 rounds failed, the last with odoo mrp.workcenter.productivity.load: <html>\\x0d\\x0a<title>502 Bad Gateway</title> (http 502); " +
				"round 42 under way for 1s: downtime lines, 3 loads to send (600 stop/run records taken)\n"},
		// One round failed: not "its last 1 round failed, the last with".
		{"one round failed", &agent.DrainStatus{RoundsFailed: 1, LastFailure: "odoo unreachable", RoundsLeft: 1},
			"Drain     backlog NOT going to Odoo: its last round failed, with odoo unreachable\n"},
		// ux45: after the load size changed, the rounds measured before
		// are no measure: said so, not "the first round".
		{"the load size changed", &agent.DrainStatus{RoundsDone: 3, RecordsPerSecond: f(33.3), WindowSeconds: 180, DowntimeLeft: 6000, RoundsLeft: 6, SizeChanged: true},
			"Drain     backlog going to Odoo at 33 records/s (the last 3m0s), time left known once a round at the load size in force ends " +
				"(those measured so far sent another number of downtime lines a load)\n"},
		{"a later round", &agent.DrainStatus{RoundsDone: 1, RecordsPerSecond: f(7131), WindowSeconds: 129, RoundSeconds: f(95), ETASeconds: f(128), RoundsLeft: 1,
			Round: &agent.DrainRound{Number: 32, Seconds: 34, Phase: "reading"}},
			"Drain     backlog going to Odoo at 7131 records/s (the last 2m9s), about 2m8s left (this round and 1 more round, 1m35s a round); " +
				"round 32 under way for 34s: reading the buffer and the work orders in Odoo\n"},
	} {
		var out bytes.Buffer
		printStatus(&out, agent.Status{Site: "s", AgentRunning: true, Odoo: agent.OdooStatus{URL: "https://erp", State: "online"}, Drain: tc.d})
		s := out.String()
		if tc.want == "" && strings.Contains(s, "Drain") || tc.want != "" && !strings.Contains(s, tc.want) {
			t.Errorf("%s: want %q in\n%s", tc.name, tc.want, s)
		}
	}
	// A backlog of downtime records only: flush's verdict says what its
	// time left waits on (it said "count writes", which the round has none
	// of: the operator review).
	dt := agent.Status{Odoo: agent.OdooStatus{State: "online"}, Buffer: agent.BufferStatus{Lanes: map[string]agent.LaneStatus{"events": {Pending: 5000}}},
		Drain: &agent.DrainStatus{DowntimeLeft: 3000, RoundsLeft: 2, Round: &agent.DrainRound{Phase: "downtime", DowntimeClaimed: 2000, Loads: 10}}}
	if msg := notDrained(time.Minute, 5000, dt); !strings.HasSuffix(msg, "the drain goes on: time left known once the first round ends (it sends downtime lines only: no count writes to pace it)") {
		t.Errorf("flush's verdict during a drain of downtime records only: %s", msg)
	}
	st := agent.Status{Odoo: agent.OdooStatus{State: "online"}, Buffer: agent.BufferStatus{Lanes: map[string]agent.LaneStatus{"events": {Pending: 12}}},
		Drain: &agent.DrainStatus{RoundSeconds: f(60), ETASeconds: f(45), Round: &agent.DrainRound{Phase: "counts"}}}
	if msg := notDrained(time.Minute, 912, st); !strings.HasSuffix(msg, "(odoo online); the drain goes on: about 45s left (this round, 1m0s a round)") {
		t.Errorf("flush's verdict during a drain: %s", msg)
	}
}

// A reload that changed settings only a restart applies (odoo.url fixed
// after a typo, then systemctl reload): flush forwards with the old ones
// and timed out after 5 minutes saying only "odoo offline" (the operator
// review). It says so at its start and in its verdict.
func TestFlushSaysChangesWaitForARestart(t *testing.T) {
	st := agent.Status{AgentRunning: true, Odoo: agent.OdooStatus{State: "offline"},
		Config: &agent.ConfigStatus{File: "/etc/plantedge/plantedge.yaml", RestartNeededFor: []string{"odoo"}}}
	want := "the configuration's changes to odoo wait for a restart: the agent still uses the settings it started with (systemctl restart plantedge)"
	if n := restartNote(st); n != want {
		t.Errorf("note %q, want %q", n, want)
	}
	if msg := notDrained(10*time.Second, 1, st); !strings.HasSuffix(msg, "; "+want) {
		t.Errorf("verdict %q", msg)
	}
	st.Config.RestartNeededFor = nil
	if n, msg := restartNote(st), notDrained(10*time.Second, 1, st); n != "" || strings.Contains(msg, "restart") {
		t.Errorf("no restart needed: note %q, verdict %q", n, msg)
	}
}

// With the loads shrunk (Odoo took too long for larger ones) status and
// flush say the pace in force, not the full size's.
func TestStatusSaysTheShrunkenLoads(t *testing.T) {
	st := agent.Status{Odoo: agent.OdooStatus{State: "online", LinesPerLoad: 50}, Buffer: agent.BufferStatus{Lanes: map[string]agent.LaneStatus{"events": {Pending: 700}}}}
	want := "500 a round in loads of 50 (not 200: Odoo took about odoo.timeout or longer for larger loads, or a proxy in front of it refused them as too large)"
	if msg := notDrained(5*time.Minute, 700, st); !strings.Contains(msg, want) {
		t.Errorf("verdict: %s", msg)
	}
	var out bytes.Buffer
	printStatus(&out, st)
	if !strings.Contains(out.String(), "700 records are stops and runs: they go to Odoo as downtime lines, "+want) ||
		!strings.Contains(out.String(), "LOADS OF 50: Odoo took about odoo.timeout or longer") {
		t.Errorf("status:\n%s", out.String())
	}
}

// The dead letters of a machine no longer in the config (ux45: a removed
// machine has no row, and only the buffer's total said them).
func TestStatusNamesTheDeadLettersOfRemovedMachines(t *testing.T) {
	var out bytes.Buffer
	printStatus(&out, agent.Status{Site: "s", AgentRunning: true, Odoo: agent.OdooStatus{URL: "https://erp", State: "online"},
		Buffer: agent.BufferStatus{DeadLetters: 3, RemovedDeadLetters: []agent.RemovedDeadLetters{
			{ID: "press-2", DeadLetters: 2, Good: 4, Scrap: 1}, {ID: "press-9", DeadLetters: 1}}}})
	want := "          3 dead letters of machines no longer in the config (press-2: 2, holding 4 good pieces and 1 scrapped piece; press-9: 1): " +
		"plantedge deadletter list says why each is there; what was set aside while its machine was out of the config goes to Odoo by " +
		"plantedge deadletter retry once the machine is back; drop what should not go\n"
	if !strings.Contains(out.String(), want) {
		t.Errorf("want %q in\n%s", want, out.String())
	}
}

// The agent's own refusals are one line of text, some of them long: a
// retry of a dead letter made on a finished work order, or refused by
// another Odoo, is answered with what to do (over 300 characters). Since
// deadletter says its errors through notTheAgent (ux45), such an answer
// must reach the operator whole, not as "not in the agent's words:
// another program at listen" cut at 120 characters.
func TestShortAnswerKeepsTheAgentsOwnLongRefusals(t *testing.T) {
	for _, msg := range []string{
		fmt.Sprintf("dead letter %d holds what was made on a finished or cancelled work order: not retried. %s", 7, agent.FinishedOrderAdvice),
		(&agent.ElsewhereError{ID: 7, Odoo: "https://erp-old.example.com (db prod)", To: "https://erp.example.com (db prod)"}).Error(),
	} {
		// As the agent's API answers (http.Error: text/plain, a newline
		// the client trims).
		err := error(&agent.AnswerError{Status: "400 Bad Request", ContentType: "text/plain; charset=utf-8", Body: msg})
		got := shortAnswer(err)
		if got.Error() != "agent: "+msg {
			t.Errorf("%d characters of the agent's words said as\n%v", len(msg), got)
		}
	}
	// Another program's page is still said in one line.
	page := &agent.AnswerError{Status: "404 Not Found", ContentType: "text/html", Body: "<html>\n<p>x</p>\n</html>"}
	if got := shortAnswer(page); !strings.Contains(got.Error(), "not in the agent's words") {
		t.Errorf("a page: %v", got)
	}
}

// TestStatusWarnsOfAKeyExpiringSoon: on Odoo 18+ the human view says, from
// 14 days before the bot user's soonest key expires, when and what to do;
// not before, and not once Odoo refuses the key (key_expired says that).
func TestStatusWarnsOfAKeyExpiringSoon(t *testing.T) {
	at := time.Now().Add(9*24*time.Hour + time.Hour).UTC()
	for _, tc := range []struct {
		name string
		odoo agent.OdooStatus
		want bool
	}{
		{"soon", agent.OdooStatus{State: "online", KeyExpiresAt: &at, KeyExpiresSoon: true}, true},
		{"not soon", agent.OdooStatus{State: "online", KeyExpiresAt: &at}, false},
		{"expired", agent.OdooStatus{State: "auth_failed", KeyExpiresAt: &at, KeyExpiresSoon: true, KeyExpired: true}, false},
	} {
		var out bytes.Buffer
		printStatus(&out, agent.Status{Site: "s", AgentRunning: true, Odoo: tc.odoo})
		line := "KEY EXPIRES " + at.Format("2006-01-02 15:04 UTC") + " (in 9 days)"
		if got := strings.Contains(out.String(), line); got != tc.want {
			t.Errorf("%s: %q shown %v, want %v:\n%s", tc.name, line, got, tc.want, out.String())
		}
		if tc.want && !strings.Contains(out.String(), "Rotating the API key") {
			t.Errorf("%s: the runbook is not named:\n%s", tc.name, out.String())
		}
	}
}

// The text status says Odoo's quantity precision when it is not the
// default 2, and that it was assumed when it could not be read.
func TestStatusSaysTheQtyPrecision(t *testing.T) {
	for _, tc := range []struct {
		digits  int
		assumed bool
		want    string // "" : nothing said
	}{
		{2, false, ""},
		{3, false, "(jsonrpc, Odoo 17.0)  quantities to 3 decimals"},
		{0, false, "(jsonrpc, Odoo 17.0)  quantities to 0 decimals"},
		{2, true, "(jsonrpc, Odoo 17.0)  QUANTITY DECIMALS NOT READ: 2 assumed (the log says why)"},
	} {
		var out bytes.Buffer
		d := tc.digits
		printStatus(&out, agent.Status{Site: "s", AgentRunning: true, Odoo: agent.OdooStatus{URL: "https://erp", State: "online",
			Protocol: "jsonrpc", ServerVersion: "17.0", QtyDigits: &d, QtyDigitsAssumed: tc.assumed}})
		s := out.String()
		if tc.want == "" && (strings.Contains(s, "decimals") || strings.Contains(s, "DECIMALS")) || tc.want != "" && !strings.Contains(s, tc.want) {
			t.Errorf("%d digits (assumed %v): status:\n%s\nwant %q", tc.digits, tc.assumed, s, tc.want)
		}
	}
}

// A source waiting to connect again says when it will (the technician who
// fixed the password on the broker waits for it), in its row and in the
// JSON, as Odoo's next attempt is said; a connected one says nothing of it.
func TestStatusSaysASourcesNextAttempt(t *testing.T) {
	st := agent.Status{Site: "s", AgentRunning: true, Sources: []agent.SourceStatus{
		{Name: "broker", Kind: "mqtt", State: "down", LastError: "connect tcp://broker:1883: not Authorized (the broker refused user line)", NextAttemptSeconds: 41.6},
		{Name: "line1", Kind: "opcua", State: "connected", Sessions: 1},
	}}
	var out bytes.Buffer
	printStatus(&out, st)
	var broker, line1 string
	for l := range strings.Lines(out.String()) {
		switch {
		case strings.HasPrefix(l, "  broker "):
			broker = l
		case strings.HasPrefix(l, "  line1 "):
			line1 = l
		}
	}
	if !strings.Contains(broker, "refused user line") || !strings.Contains(broker, "next attempt in 41.6s") || strings.Contains(line1, "next attempt") {
		t.Errorf("sources:\n%s", out.String())
	}
	var js bytes.Buffer
	if err := writeStatusJSON(&js, st); err != nil {
		t.Fatal(err)
	}
	if s := js.String(); strings.Count(s, `"next_attempt_seconds": 41.6`) != 1 {
		t.Errorf("JSON: want the broker's next_attempt_seconds once (Odoo's is another):\n%s", s)
	}
}
