package agent

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"hash/maphash"
	"iter"
	"log/slog"
	"maps"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	"github.com/plantedge/plantedge/agent/config"
	"github.com/plantedge/plantedge/agent/mapping"
	"github.com/plantedge/plantedge/buffer"
	"github.com/plantedge/plantedge/connectors"
	"github.com/plantedge/plantedge/connectors/opcua"
	"github.com/plantedge/plantedge/internal/decimal"
)

// Status is what `plantedge status` shows; its JSON form is a contract
// (SPEC.md): fields may be added, never renamed.
type Status struct {
	Site         string  `json:"site"`
	AgentRunning bool    `json:"agent_running"`
	Version      string  `json:"version,omitempty"`
	Uptime       float64 `json:"uptime_seconds,omitempty"`
	// Started is when the running agent started (its instance: flush
	// tells a restart from it).
	Started time.Time    `json:"started,omitzero"`
	Buffer  BufferStatus `json:"buffer"`
	Odoo    OdooStatus   `json:"odoo"`
	// Drain is how a backlog's drain goes (its rate, the round under way,
	// the time left): present while one drains with Odoo online.
	Drain   *DrainStatus   `json:"drain,omitempty"`
	Sources []SourceStatus `json:"sources"`
	// Certificates are the certificates the agent uses and when they
	// expire: the files the configuration names, and the chains the peers
	// presented at the agent's last connection to them (the soonest of
	// each to expire).
	Certificates []CertificateStatus `json:"certificates"`
	Machines     []MachineStatus     `json:"machines"`
	LastError    string              `json:"last_error,omitempty"`
	Config       *ConfigStatus       `json:"config,omitempty"`
	// StatusError says why this status is incomplete: a running agent did
	// not answer, or the stopped agent's buffer file could not be read
	// (status --json prints what it knows and exits 1).
	StatusError string `json:"status_error,omitempty"`
}

// ConfigStatus is the running configuration against its file.
type ConfigStatus struct {
	File string `json:"file"`
	// ChangedSinceLoaded: the file differs from what the agent runs (edited
	// without a reload, or the reload was rejected).
	ChangedSinceLoaded bool `json:"changed_since_loaded"`
	// LastReloadError is why the last reload was rejected (cleared by a
	// good one), and LastReloadErrorAgeSeconds how long ago.
	LastReloadError           string  `json:"last_reload_error,omitempty"`
	LastReloadErrorAgeSeconds float64 `json:"last_reload_error_age_seconds,omitempty"`
	// RestartNeededFor names the settings the last reload found changed
	// that only a restart applies (site, data_dir, listen, buffer, odoo).
	RestartNeededFor []string `json:"restart_needed_for,omitempty"`
}

// BufferStatus is the buffer part of Status.
type BufferStatus struct {
	Path             string  `json:"path"`
	Pending          int     `json:"pending"`
	Bytes            int64   `json:"bytes"`
	FileBytes        int64   `json:"file_bytes"`
	MaxBytes         int64   `json:"max_bytes"`
	OldestAgeSeconds float64 `json:"oldest_age_seconds"`
	DeadLetters      int     `json:"dead_letters"`
	// DeadLettersDropped counts the dead letters an operator dropped, ever:
	// apart from Dropped, which is what the disk quota cost.
	DeadLettersDropped uint64 `json:"dead_letters_dropped"`
	// LatestDeadLetter is why the newest dead letter was refused (Odoo's
	// message), so status says why records are refused, not only how many.
	LatestDeadLetter string                `json:"latest_dead_letter,omitempty"`
	Dropped          uint64                `json:"dropped"`
	Merged           uint64                `json:"merged"`
	Lanes            map[string]LaneStatus `json:"lanes"`
	Recovered        string                `json:"recovered_corrupt_file,omitempty"`
	// SetAside are the buffer files moved aside as corrupt that are still
	// in data_dir (this run's Recovered among them): their records were
	// not forwarded. Listed until someone deletes them — a start that
	// moved one aside and then failed (a full disk) left no other trace.
	SetAside []string `json:"corrupt_files,omitempty"`
	// Held counts the records that wait for a work order in progress (or for
	// a machine's work center to resolve, or scrap for a draft in Odoo to be
	// validated there): flush does not wait for them.
	Held int `json:"held"`
	// Unmapped counts the records of machines no longer in the config
	// (removed by an edit): they are held too; put the machine back to
	// forward them. Count records go to the dead letters after an hour.
	Unmapped int `json:"unmapped"`
	// UnmappedMachines says whose they are (omitted when none).
	UnmappedMachines []UnmappedMachine `json:"unmapped_machines,omitempty"`
	// RemovedDeadLetters names the machines no longer in the config that
	// have dead letters (set aside after the hour they waited, or refused
	// before): a removed machine has no row to say them on.
	RemovedDeadLetters []RemovedDeadLetters `json:"removed_machines_dead_letters,omitempty"`
	// PendingPartial says why the buffer could not be read to its end for
	// the machines' pending and dead-letter counts (a record damaged on the
	// disk while the agent is stopped: the start sets it aside). Those
	// counts are then short; empty when they are whole.
	PendingPartial string `json:"pending_partial,omitempty"`
	// PendingCountsReading is how many records the agent reads in the
	// background for the machines' pending and dead-letter counts, which
	// are not known until it is done (a backlog too big to read while
	// status waits, with no earlier result: after a start): the machines'
	// pending, pending_scrap and dead-letter counts say 0 meanwhile, and
	// held, unmapped and oldest_forwardable leave those records out. 0 when
	// the counts are known. With the agent stopped, the records status did
	// not read for them (a backlog of more than offlineScanBound records;
	// status --count-pending reads them all).
	PendingCountsReading int `json:"pending_counts_reading,omitempty"`
	// WriteError is why appends fail now (disk full, read-only file
	// system), for WriteFailingSeconds: nothing new is acknowledged, values
	// wait at the sources. Empty while writes succeed.
	WriteError string `json:"write_error,omitempty"`
	// WriteErrorCause is max_bytes (the quota: what may be dropped or
	// merged was; the rest waits for Odoo), disk_full (no room on the file
	// system and none to free in the file) or write_error (an I/O error, a
	// read-only file system).
	WriteErrorCause     string  `json:"write_error_cause,omitempty"`
	WriteFailingSeconds float64 `json:"write_failing_seconds,omitempty"`
	// WriteStalledSeconds: for how long the buffer write in progress has
	// run, from 30 s on (a frozen or failing disk, a hung network file
	// system: it neither fails nor returns); no value is taken meanwhile.
	// Absent otherwise.
	WriteStalledSeconds float64 `json:"write_stalled_seconds,omitempty"`
	// DiskFullSeconds: for how long a full disk has held the buffer to the
	// size of its file, as if max_bytes were reached (telemetry dropped,
	// counts merged, then the oldest events); LimitBytes is the logical
	// budget it keeps to. Absent while the disk has room.
	DiskFullSeconds float64 `json:"disk_full_seconds,omitempty"`
	LimitBytes      int64   `json:"disk_full_limit_bytes,omitempty"`
	// ReserveGivenUpSeconds: for how long the buffer's reserve file
	// has been given up so that acknowledgements could be written on a
	// full disk; appends do not grow the file meanwhile (they go into the
	// pages it has, or wait at the sources). Absent while the reserve is
	// there.
	ReserveGivenUpSeconds float64 `json:"reserve_given_up_seconds,omitempty"`
	// OldestForwardableAgeSeconds is the age of the oldest record that can
	// go to Odoo now (not held: see Held): what to alert on for a buffer
	// that does not drain — records held for a work order, or of a machine
	// gone from the config, wait by design (0: none).
	OldestForwardableAgeSeconds float64 `json:"oldest_forwardable_age_seconds"`
	// OldestForwardableSeq is the lowest sequence number of a pending
	// record not held (0: none): flush compares it with the buffer's last
	// sequence number at its request, so that records the plant makes
	// meanwhile do not keep it from finishing.
	OldestForwardableSeq uint64 `json:"oldest_forwardable_seq,omitempty"`
	// FileRestored counts the times the buffer file was found deleted or
	// replaced while in use since start, and written back.
	FileRestored uint64 `json:"file_restored,omitempty"`
	// NoFile is set by a status read with the agent stopped when there is
	// no buffer file yet (the agent never ran with this data_dir).
	NoFile bool `json:"no_file,omitempty"`
}

// LaneStatus is one lane of the buffer.
type LaneStatus struct {
	Pending          int     `json:"pending"`
	Bytes            int64   `json:"bytes"`
	OldestAgeSeconds float64 `json:"oldest_age_seconds"`
	Dropped          uint64  `json:"dropped"`
}

// OdooStatus is the Odoo link part of Status.
type OdooStatus struct {
	URL                string  `json:"url"`
	State              string  `json:"state"` // online | offline | auth_failed
	Protocol           string  `json:"protocol"`
	ServerVersion      string  `json:"server_version"`
	LastError          string  `json:"last_error"`
	NextAttemptSeconds float64 `json:"next_attempt_seconds"`
	// QtyDigits is how many decimals Odoo keeps of a quantity (its
	// decimal accuracy of units of measure, read at each connect): what
	// plantedge rounds the quantities it writes to. Absent before a
	// connect went through. QtyDigitsAssumed: it could not be read, 2
	// (Odoo's default) is assumed; a WARN line said why.
	QtyDigits        *int `json:"qty_digits,omitempty"`
	QtyDigitsAssumed bool `json:"qty_digits_assumed,omitempty"`
	// LastAnswerAgeSeconds is how long ago Odoo last answered (0: not
	// since start). With nothing to send the agent asks Odoo only once a
	// minute (odoo.DefaultIdleRecheck): online is as of then.
	LastAnswerAgeSeconds float64 `json:"last_answer_age_seconds,omitempty"`
	// RetryAfterSeconds is how long Odoo still asks the agent to wait (its
	// Retry-After header): a flush does not cut that short.
	RetryAfterSeconds float64 `json:"retry_after_seconds,omitempty"`
	// SettleSeconds is how long the agent still sends nothing because a
	// write Odoo did not answer (or one sent before the agent stopped) may
	// still commit until then (odoo.request_limit): a flush does not cut
	// that short.
	SettleSeconds float64 `json:"settle_seconds,omitempty"`
	// CallSeconds is how long Odoo takes to answer a call, on average
	// (the wait for forward.rate left out; 0: no answer yet); Slow is set
	// from 2 s up, until it is back below 1 s.
	CallSeconds float64 `json:"call_seconds,omitempty"`
	Slow        bool    `json:"slow,omitempty"`
	// RoundSeconds is how long the last forwarding round that went through
	// took, RateWaitSeconds how much of it the agent waited for
	// forward.rate: Odoo runs about a round behind the machines.
	RoundSeconds    float64 `json:"round_seconds,omitempty"`
	RateWaitSeconds float64 `json:"rate_wait_seconds,omitempty"`
	// LinesPerLoad is how many downtime lines a load carries while it is
	// fewer than LinesPerLoad (absent at full size): Odoo took longer than
	// odoo.timeout, or nearly, for a load of more, or a proxy in front of
	// it refused one as too large (413), so a backlog drains in more,
	// smaller loads (docs/runbook.md, WAN outage / Odoo upgrade:
	// Loads that outlast odoo.timeout shrink).
	LinesPerLoad int `json:"lines_per_load,omitempty"`
	// SwitchFrom names the Odoo (host, port and path of its URL, and the
	// database) the buffer file's state belongs to while odoo.url or
	// odoo.database names another that has not answered yet: the agent
	// switches once it does (docs/runbook.md: Another Odoo database or
	// server). Empty otherwise.
	SwitchFrom string `json:"switch_from,omitempty"`
	Failures   int    `json:"consecutive_failures"`
	// KeyExpired (an alert): Odoo refuses the key that worked before, and
	// most likely for its expiry — on Odoo 18+, one of the bot user's keys
	// was to expire by now (or Odoo did not show when). Not for an archived
	// bot user, a revoked key or a renamed login, which last_error names,
	// nor for a key that worked with Odoo 17: made before 18, it has no
	// expiration date.
	KeyExpired bool `json:"key_expired"`
	// KeyExpiresAt (Odoo 18+; absent on 17, whose keys do not expire) is
	// when the soonest of the bot user's API keys to expire does, as read
	// while the key worked (every hour): Odoo does not say which of them
	// the agent uses, so it is taken as the one. KeyExpiresSoon (an
	// alert) is set from 14 days before it: create a new key and put it in
	// (docs/runbook.md: Rotating the API key).
	KeyExpiresAt   *time.Time `json:"key_expires_at,omitempty"`
	KeyExpiresSoon bool       `json:"key_expires_soon"`
	// KeyFrom says, while the key is refused, where the agent took it
	// from — where a new one goes ("$PLANTEDGE_ODOO_API_KEY", "the systemd
	// credential odoo-api-key", "api_key_file /etc/plantedge/odoo-api-key").
	KeyFrom string `json:"key_from,omitempty"`
	// RoundsDone counts the forwarding rounds completed since start (one
	// at a time; flush waits for one that began after its request).
	RoundsDone uint64 `json:"rounds_done"`
	// Calls counts the Odoo operations made since start (a long round
	// acknowledges its records only at its end: this moves meanwhile).
	Calls uint64 `json:"calls"`
}

// SourceStatus is one OPC UA server or MQTT broker.
type SourceStatus struct {
	Name      string `json:"name"`
	Kind      string `json:"kind"`
	State     string `json:"state"` // connected | connecting | down
	Sessions  uint64 `json:"sessions_created"`
	LastError string `json:"last_error,omitempty"`
	// LastErrorAgeSeconds is how long ago LastError happened: next to
	// state connected it is history (the source reconnected since).
	LastErrorAgeSeconds float64 `json:"last_error_age_seconds,omitempty"`
	// NextAttemptSeconds is how long until the source's next connect
	// attempt while it waits for it (down: the backoff, or a minute after a
	// refused login, connectors.LoginRetry), as Odoo's; absent while it
	// connects or is connected.
	NextAttemptSeconds float64 `json:"next_attempt_seconds,omitempty"`
	// PolledNodes (OPC UA) are read every poll_interval because the server
	// refuses to monitor them (no room for subscriptions or monitored items).
	PolledNodes int `json:"polled_nodes,omitempty"`
	// RefusedNodes (OPC UA; for MQTT the topics the broker refuses to
	// subscribe to, by topic) are nodes the server will not serve (unknown,
	// no access), with its answer; they are tried again.
	RefusedNodes []opcua.RefusedNode `json:"refused_nodes,omitempty"`
	// MalformedSamples counts the samples (or fields of one) skipped since
	// start because their value was unusable (not a number, a field
	// missing, beyond rollover): LastMalformed says why the last one was,
	// LastMalformedAgeSeconds when.
	MalformedSamples        uint64  `json:"malformed_samples"` // 0 shown: a script reads it
	LastMalformed           string  `json:"last_malformed,omitempty"`
	LastMalformedAgeSeconds float64 `json:"last_malformed_age_seconds,omitempty"`
	// StrayMessages (MQTT) counts the messages since start on topics no
	// machine maps, LastStrayTopic the last one's topic: the broker's
	// session for client_id has subscriptions this agent did not make —
	// another client using the same client_id takes this agent's messages.
	StrayMessages       uint64  `json:"stray_messages,omitempty"`
	LastStrayTopic      string  `json:"last_stray_topic,omitempty"`
	LastStrayAgeSeconds float64 `json:"last_stray_age_seconds,omitempty"`
}

// MachineStatus is one machine.
type MachineStatus struct {
	ID         string `json:"id"`
	Workcenter string `json:"workcenter"`
	WorkOrder  string `json:"work_order"`
	// Production is WorkOrder's manufacturing order (Odoo 17/18 name a
	// work order by its operation: "Pressing" on every order that presses;
	// the SPEC probe).
	Production string `json:"production,omitempty"`
	// OtherWorkOrders are the other work orders in progress on the
	// machine's work center: counts go to WorkOrder (the one work last
	// began on: its operator's timer, else its start).
	OtherWorkOrders []string `json:"other_work_orders_in_progress,omitempty"`
	GoodCount       float64  `json:"good_count"`
	ScrapCount      float64  `json:"scrap_count"`
	Unattributed    float64  `json:"unattributed"`
	Pending         float64  `json:"pending_good"`
	// PendingScrap is the scrapped pieces not booked in Odoo yet (the year
	// probe: scrap behind while pending_good was 0 everywhere).
	PendingScrap float64 `json:"pending_scrap"`
	// DeadLetterGood is the good pieces Odoo refused for good, kept in the
	// dead letters: counted in GoodCount, not in Odoo.
	DeadLetterGood float64 `json:"dead_letter_good,omitempty"`
	// DeadLetterScrap is the scrapped pieces in the dead letters, likewise.
	DeadLetterScrap float64 `json:"dead_letter_scrap,omitempty"`
	State           string  `json:"state"` // running | stopped | unknown
	// LastKnownState is the run state last read while State is unknown
	// because the source of the machine's running signal is not connected
	// now (a PLC or broker away: the machine may have stopped since).
	LastKnownState string `json:"last_known_state,omitempty"`
	// UnknownBecause says why State is unknown while LastKnownState is
	// set: "source down", "refused" (the source refuses the running
	// signal's node or topic), or "bad quality" (the running value's
	// source marks it bad or uncertain: the machine may have stopped
	// since).
	UnknownBecause string `json:"unknown_because,omitempty"`
	// LastSampleAge is how long ago a good, usable value for one of the
	// machine's signals came in (absent: none since the agent started): a
	// message that could not be read or lacks the field does not count. A
	// machine whose PLC tag or topic went quiet shows it here.
	LastSampleAge float64 `json:"last_sample_age_seconds,omitempty"`
	// SourceClockOffset is how far the clock of the machine's MQTT
	// publisher is ahead of this box's (behind: negative), by the times
	// its values carry, latency included (absent: not measured — no
	// timestamp_field, OPC UA, or not a minute of values yet). From 2
	// minutes off, Error says so.
	SourceClockOffset *float64 `json:"source_clock_offset_seconds,omitempty"`
	Error             string   `json:"error,omitempty"`
}

// Status returns the running agent's status.
func (a *Agent) Status() Status {
	cfg := a.cfg.Load()
	st := Status{Site: cfg.Site, AgentRunning: true, Version: a.opts.Version, Sources: []SourceStatus{}, Machines: []MachineStatus{}, Certificates: []CertificateStatus{}}
	if !a.opened.Load() {
		st.Odoo.State = "offline"
		st.LastError = "starting"
		return st
	}
	st.Uptime = time.Since(a.started).Seconds()
	st.Certificates = a.certificates(time.Now())
	st.Started = a.started.UTC()
	st.Config = a.configStatus(cfg)
	// The machines' counts before the buffer's pending records: a batch
	// committed meanwhile is then in neither or in the pending too, never
	// counted with nothing pending while Odoo has none of it yet (the
	// review of a flake: good count 47095.13, nothing pending, Odoo 0).
	a.totalsMu.Lock()
	counted := maps.Clone(a.totals)
	a.totalsMu.Unlock()
	st.Buffer = bufferStatus(cfg, a.buf)
	if wf := a.writeFail.Load(); wf != nil {
		st.Buffer.WriteError, st.Buffer.WriteErrorCause, st.Buffer.WriteFailingSeconds = wf.Err, wf.Cause, age(wf.Since)
	}
	st.Buffer.WriteStalledSeconds = a.writeStalled().Seconds()
	st.Odoo = OdooStatus{URL: cfg.Odoo.URL, State: "offline"}
	var links map[string]machineLink
	var drafts map[string]string // machine -> its scrap drafts in Odoo
	{
		l := a.fwd.linkSnapshot()
		st.Odoo.RoundsDone, st.Odoo.Calls = a.fwd.doneRounds(), a.fwd.calls.Load()
		st.Odoo.State, st.Odoo.Protocol, st.Odoo.ServerVersion = l.State, l.Protocol, l.Version
		if l.QtySet {
			d := l.QtyDigits
			st.Odoo.QtyDigits, st.Odoo.QtyDigitsAssumed = &d, !l.QtyRead
		}
		st.Odoo.LastError, st.Odoo.Failures, st.Odoo.KeyExpired = l.LastError, l.Failures, l.KeyExpired
		st.Odoo.KeyExpiresAt, st.Odoo.KeyExpiresSoon = keyExpiryStatus(l.KeyExpires, time.Now())
		if left := time.Until(l.RetryAfter); left > 0 {
			st.Odoo.RetryAfterSeconds = left.Seconds()
		}
		if left := time.Until(l.Settle); left > 0 {
			st.Odoo.SettleSeconds = left.Seconds()
		}
		if !l.Answered.IsZero() {
			st.Odoo.LastAnswerAgeSeconds = max(0.001, age(l.Answered)) // 0 would read as never
		}
		st.Odoo.CallSeconds, st.Odoo.Slow = math.Round(l.CallSeconds*1000)/1000, l.Slow
		st.Odoo.RoundSeconds, st.Odoo.RateWaitSeconds = round1(l.Round.Seconds()), round1(l.RateWait.Seconds())
		st.Odoo.SwitchFrom, st.Odoo.LinesPerLoad = l.SwitchFrom, l.LinesPerLoad
		if l.State == "auth_failed" {
			if _, from, err := cfg.OdooAPIKeySource(); err == nil {
				st.Odoo.KeyFrom = from
			}
		}
		if !l.NextAttempt.IsZero() {
			st.Odoo.NextAttemptSeconds = max(0, time.Until(l.NextAttempt).Seconds())
		}
		st.LastError = l.LastError
		links = a.fwd.machineSnapshot()
		drafts = a.fwd.draftsSnapshot()
		if l.State == "online" {
			st.Drain = a.fwd.drainStatus(time.Now(), st.Buffer.Lanes[buffer.LaneEvents.String()].Pending)
		}
	}
	signalErrs := map[string]string{} // machine -> what is wrong with one of its signals
	runRefused := map[string]bool{}   // machines whose running node or topic the source refuses
	mapper := a.mapper.Load()
	noteBad := func(kind connectors.Kind, source, address, what string) {
		mapper.EachUse(kind, source, address, func(machine string, signal mapping.Signal) {
			if signalErrs[machine] == "" {
				signalErrs[machine] = fmt.Sprintf("%s: %s %s", signal, source, what)
			}
		})
	}
	for _, s := range a.sourceList() {
		ss := SourceStatus{Name: s.name, Kind: string(s.kind), State: string(s.state()),
			Sessions: s.sessions(), LastError: s.lastErr()}
		if s.lastErrAt != nil && ss.LastError != "" {
			ss.LastErrorAgeSeconds = age(s.lastErrAt())
		}
		// As Odoo's; 0 (absent) once it is due: it connects now.
		ss.NextAttemptSeconds = s.nextAttemptSeconds(connectors.State(ss.State))
		if s.gaveUp() && ss.LastError != "" {
			// It is not retried: say what brings it back (the mosquitto
			// probe: "down" with the error, and nothing more).
			ss.LastError = "stopped, not retried: " + ss.LastError + " — fix it, then reload (systemctl reload plantedge)"
		}
		if s.opcStats != nil {
			ss.PolledNodes = s.opcStats().Polled
		}
		if s.refused != nil {
			ss.RefusedNodes = s.refused()
			for _, r := range ss.RefusedNodes {
				what := fmt.Sprintf("refuses node %s (%s)", r.Node, r.Status)
				if s.kind == connectors.KindMQTT {
					what = fmt.Sprintf("refuses topic %s (%s)", r.Node, r.Status)
				}
				noteBad(s.kind, s.name, r.Node, what)
				mapper.EachUse(s.kind, s.name, r.Node, func(machine string, signal mapping.Signal) {
					if signal == mapping.Running {
						runRefused[machine] = true
					}
				})
			}
		}
		st.Sources = append(st.Sources, ss)
	}
	if len(st.Sources) == 0 && !a.sourcesStarted() {
		// The API answers before the sources start (the run's mark is
		// written between, up to 5 s on a slow disk): the configured ones,
		// connecting, as of an agent that does not answer yet — not none
		// (status --json said "sources": [] there, under load).
		st.Sources = UnknownStatus(cfg, true).Sources
	}
	a.stateMu.Lock()
	for i := range st.Sources {
		if mc, ok := a.malformed[st.Sources[i].Name]; ok {
			st.Sources[i].MalformedSamples, st.Sources[i].LastMalformed, st.Sources[i].LastMalformedAgeSeconds = mc.n, mc.last, age(mc.at)
		}
		if sc, ok := a.strays[st.Sources[i].Name]; ok {
			st.Sources[i].StrayMessages, st.Sources[i].LastStrayTopic, st.Sources[i].LastStrayAgeSeconds = sc.n, sc.last, age(sc.at)
		}
	}
	// In a set order (of source and address, of signal): with two signals
	// wrong, repeated calls show the same one.
	runBad := map[string]bool{} // machines whose running value is bad or uncertain now
	spDown := map[string]string{}
	for _, m := range cfg.Machines {
		// A Sparkplug B edge node (or device) whose DEATH came last: its
		// values stand still, so the run state is not known.
		if why := mapper.SparkplugDown(a.state, m.ID); why != "" {
			spDown[m.ID] = why
		}
	}
	for _, k := range sortedAddrs(a.badQuality) {
		what := fmt.Sprintf("%s is %s", k.address, a.badQuality[k])
		if h := qualityHint(a.badQuality[k]); h != "" {
			what += " (" + h + ")"
		}
		noteBad(k.kind, k.source, k.address, what)
		mapper.EachUse(k.kind, k.source, k.address, func(machine string, signal mapping.Signal) {
			if signal == mapping.Running {
				runBad[machine] = true
			}
		})
	}
	// Sparkplug B metrics the edge node flagged not good (its Quality
	// property): as an OPC UA value of bad quality.
	spBad := a.state.SparkplugBadQuality()
	for _, k := range sortedSignals(spBad) {
		if signalErrs[k.Machine] == "" {
			signalErrs[k.Machine] = fmt.Sprintf("%s: %s", k.Signal, spBad[k])
		}
		if k.Signal == mapping.Running {
			runBad[k.Machine] = true
		}
	}
	// Sparkplug B DATA by alias that could not be read: nothing counts
	// from it until the edge node's next BIRTH, which may be weeks away
	// unless someone asks for one.
	for _, w := range a.state.SparkplugWaiting() {
		noteBad(connectors.KindMQTT, w.Source, w.Topic, "waiting for a BIRTH of "+w.Birth+
			": values sent by alias cannot be read until the edge node sends its BIRTH again"+a.rebirthStatus(w.Source, w.Topic))
	}
	for _, k := range sortedAddrs(a.unusable) {
		what := "sent a value that cannot be used: "
		if errors.Is(a.unusable[k], mapping.ErrBadTime) {
			what = "sent a source time that cannot be used (its values are taken at their receive time): "
		}
		// On the signals it concerns: a value one field of a shared topic
		// cannot use is that field's signal's (the signals51 probe: shown
		// as the topic's first signal, and on every machine of the topic).
		err := a.unusable[k]
		mapper.EachUnusable(k.kind, k.source, k.address, err, func(machine string, signal mapping.Signal) {
			if signalErrs[machine] == "" {
				signalErrs[machine] = fmt.Sprintf("%s: %s %s", signal, k.source, what+err.Error())
			}
		})
	}
	// A field (or a timestamp_field) missing from every message of late.
	for _, ab := range []struct {
		m    map[mapping.SignalKey]*mapping.Absence
		what string
	}{
		{a.state.Absent, "field %q missing from the last %d messages of topic %s, which carried other fields (a typo? plantedge validate --mqtt)"},
		{a.state.TimeAbsent, "timestamp_field %q missing from the last %d messages of topic %s: values taken at their receive time (a typo? plantedge validate --mqtt)"},
	} {
		for _, k := range sortedSignals(ab.m) {
			if n := ab.m[k]; n.N >= mapping.AbsentWarn && signalErrs[k.Machine] == "" {
				signalErrs[k.Machine] = fmt.Sprintf("%s: "+ab.what, k.Signal, n.Field, n.N, n.Topic)
			}
		}
	}
	for id, ms := range a.state.Machines {
		for _, sig := range slices.Sorted(maps.Keys(ms.Counters)) {
			if n := ms.Counters[sig].HeldBehind(); n > 0 && signalErrs[id] == "" {
				vals := fmt.Sprintf("%d values in a row", n)
				if n == 1 {
					vals = "a value"
				}
				signalErrs[id] = fmt.Sprintf("%s: %s lower than %v and stamped before it, held (a PLC restarted with its clock behind? set its clock)", sig, vals, ms.Counters[sig].Last)
			}
		}
	}
	quiet := a.quietCounters(cfg, time.Now())
	a.stateMu.Unlock()
	pending, scanned, reading, scanErr := a.pendingCounts()
	st.Buffer.PendingPartial = partialNote(scanErr)
	st.Buffer.PendingCountsReading = reading
	n, list := unmapped(cfg, pending)
	st.Buffer.Unmapped, st.Buffer.UnmappedMachines = n+a.fwd.orphansWaitingNow(), list
	st.Buffer.RemovedDeadLetters = removedDeadLetters(cfg, pending)
	st.Buffer.Held += st.Buffer.Unmapped
	sourceState := map[string]string{}
	for _, s := range st.Sources {
		sourceState[s.Name] = s.State
	}
	for _, m := range cfg.Machines {
		t := counted[m.ID]
		ms := MachineStatus{ID: m.ID, Workcenter: m.Workcenter, GoodCount: tidy(t.Good), ScrapCount: tidy(t.Scrap),
			Pending: tidy(pending[m.ID].good), PendingScrap: tidy(pending[m.ID].scrap)}
		ms.State, ms.LastSampleAge = a.machineState(m.ID)
		if src := runningSource(&m); src != "" && ms.State != "unknown" && sourceState[src] != string(connectors.StateConnected) {
			ms.State, ms.LastKnownState, ms.UnknownBecause = "unknown", ms.State, "source down"
		} else if runRefused[m.ID] && ms.State != "unknown" {
			// (its last value may be of bad quality too: the refusal is
			// why, the PEERS audit saw "bad or uncertain quality" shown)
			ms.State, ms.LastKnownState, ms.UnknownBecause = "unknown", ms.State, "refused"
		} else if runBad[m.ID] && ms.State != "unknown" {
			ms.State, ms.LastKnownState, ms.UnknownBecause = "unknown", ms.State, "bad quality"
		} else if why := spDown[m.ID]; why != "" && ms.State != "unknown" {
			ms.State, ms.LastKnownState, ms.UnknownBecause = "unknown", ms.State, why
		}
		if l, ok := links[m.ID]; ok {
			ms.WorkOrder, ms.Production, ms.Unattributed, ms.Error = l.WorkOrder, l.Production, tidy(l.Unattributed), l.Error
			ms.OtherWorkOrders = l.Others
			if l.WorkorderID == 0 {
				st.Buffer.Held += pending[m.ID].records
				// No work order in progress: every pending piece waits for
				// one (the last round's sum lags the buffer).
				ms.Unattributed = max(ms.Unattributed, ms.Pending)
				if ms.Error == "" && ms.Unattributed > 0 && !l.NoWorkcenter {
					// Say why they wait, and for what (the work-order probe:
					// WORK ORDER -, UNATTRIBUTED 4 and nothing more, the
					// order cancelled or moved).
					ms.Error = fmt.Sprintf("no work order in progress on %s in Odoo: %s held until one is started there (%s to it)",
						m.Workcenter, Pieces(ms.Unattributed, ""), OneOrMore(ms.Unattributed == 1, "it goes", "they go"))
					if wo := a.storedWorkOrder(m.ID); wo != "" {
						ms.Error += "; the last one counted on was " + wo
					}
				}
			}
			if l.NoWorkcenter {
				st.Buffer.Held += pending[m.ID].events // downtime needs the work center
			}
		} else if wo := a.storedWorkOrder(m.ID); wo != "" && st.Odoo.SwitchFrom == "" {
			// (Waiting to switch, the stored one is the old Odoo's: counts
			// go to the new one's, not known yet — the fourth self-probe.)
			ms.WorkOrder = wo
		}
		ms.DeadLetterGood = tidy(pending[m.ID].deadGood)
		ms.DeadLetterScrap = tidy(pending[m.ID].deadScrap)
		clock := a.srcOff.clock(m.ID)
		if clock.offOK {
			ms.SourceClockOffset = ptr(round1(clock.off.Seconds()))
		}
		clockNote, _, _ := clock.warning()
		var inDoubt string
		if st.Odoo.SettleSeconds > 0 {
			// Waiting for Odoo's request limit: a mark left is a write that
			// may have landed (the fifth self-probe: a running agent's
			// status never named one, the stopped status did).
			if wo, err := a.loadWOStateWaited(m.ID); err == nil && wo != nil && wo.InFlight != nil {
				inDoubt = fmt.Sprintf("a quantity write to Odoo (%s to %s) may have reached it without an answer: it is read back and settled "+
					"once Odoo's request limit has passed (plantedge flush waits for that)", wo.Name, Qty(wo.InFlight.Target))
			}
		}
		// Every kind of trouble the machine has, most pressing first: one
		// must not hide another (a waiting scrap draft behind a warning).
		var quietNote string
		if qc, ok := quiet[m.ID]; ok && ms.State == "running" && sourceState[refSource(m.GoodCount.SourceRef)] == string(connectors.StateConnected) {
			// (A counter's source down is said on the source.) In minutes,
			// but a quiet_after under one (warned of, taken) to the second:
			// rounded to a minute it read "no value for 0s".
			q := qc.ran
			if q >= time.Minute {
				q = q.Round(time.Minute)
			} else {
				q = q.Round(time.Second)
			}
			var during string // while connected, and why nothing counted
			var why []string
			if qc.lost > 0 {
				// Said in the words of the source's own warnings ("mqtt
				// connection lost", "opc ua session failed"): the running
				// counted is only while connected, and a connection lost
				// again and again may be why nothing came (another client
				// using the client_id takes the messages).
				during = " while its broker was connected"
				why = append(why, fmt.Sprintf("the connection was lost %s meanwhile: see the source's last_error", timesSaid(qc.lost)))
				if m.GoodCount.OPCUA != nil {
					during = " while its server was connected"
					why[0] = fmt.Sprintf("the session failed %s meanwhile: see the source's last_error", timesSaid(qc.lost))
				}
			}
			if qc.same > 0 {
				// Its last value came again (the machine shows a recent
				// last value): said, or the note would look wrong.
				again := fmt.Sprintf("only the broker's retained copy of its last message came, %s: no news from the machine", timesSaid(qc.same))
				if m.GoodCount.OPCUA != nil {
					again = fmt.Sprintf("its node read %s, standing at its last value: no news from the machine", timesSaid(qc.same))
				}
				why = append(why, again)
			}
			if len(why) > 0 {
				during += " (" + strings.Join(why, "; ") + ")"
			}
			quietNote = fmt.Sprintf("good_count: no value for %s of the machine running%s, so no pieces are counted: its topic, field or node mistyped "+
				"(plantedge validate --mqtt / --opcua), or its publisher stopped? (or the machine runs without making pieces: "+
				"a machine slower than that needs a longer good_count quiet_after, or off)", q, during)
		}
		ms.Error = joinNotes(ms.Error, signalErrs[m.ID], quietNote, clockNote, drafts[m.ID], deadLetterNote(pending[m.ID]), inDoubt)
		st.Machines = append(st.Machines, ms)
	}
	seq, at := a.oldestForwardableNow(cfg, links, pending, reading)
	st.Buffer.OldestForwardableSeq, st.Buffer.OldestForwardableAgeSeconds = seq, age(at)
	// The scan is cached a second: records appended since it began are not
	// in it, and any of them may be forwardable.
	if last := a.buf.LastSeq(); last > scanned && (st.Buffer.OldestForwardableSeq == 0 || st.Buffer.OldestForwardableSeq > scanned+1) {
		st.Buffer.OldestForwardableSeq = scanned + 1
	}
	// From scans a moment apart (counts cached a second, the last round's
	// orphans): never more held than there is.
	st.Buffer.Held = min(st.Buffer.Held, st.Buffer.Pending)
	st.Buffer.Unmapped = min(st.Buffer.Unmapped, st.Buffer.Pending)
	return st
}

func (a *Agent) machineState(id string) (state string, lastSampleAge float64) {
	a.stateMu.Lock()
	defer a.stateMu.Unlock()
	lastSampleAge = age(a.lastSample[id])
	if running, ok := a.shownRunning[id]; ok {
		if running {
			return "running", lastSampleAge
		}
		return "stopped", lastSampleAge
	}
	return "unknown", lastSampleAge
}

// runningSource is the name of the source of m's running signal ("" if it
// has none).
func runningSource(m *config.Machine) string {
	if m.Running == nil {
		return ""
	}
	return refSource(m.Running.SourceRef)
}

// refSource is the name of the source r reads from.
func refSource(r config.SourceRef) string {
	switch {
	case r.MQTT != nil:
		return r.MQTT.Broker
	case r.OPCUA != nil:
		return r.OPCUA.Server
	}
	return ""
}

// countQuietAfter is Options.CountQuietAfter's default: long enough for a
// machine warming up, or a publisher sending on change, to make a piece.
const countQuietAfter = 15 * time.Minute

// quietCounters says, of each machine shown running whose good_count
// brought no value of its own for its limit (quietDue) of running, how
// long: its pieces are not counted, and nothing else says so (the
// operator probe: a counter topic mistyped, the machine's run state read
// from another topic, shown running with a recent last value and no
// error). The running counted is while the counter's source was
// connected (an outage is no silence of the counter), added up since the
// counter's watch began — this start, its last value, or a reload that
// mapped it anew: countWatch — so that short stops (review 44) and
// reconnects do not start it over. Under stateMu.
func (a *Agent) quietCounters(cfg *config.Config, now time.Time) map[string]quietCounter {
	var out map[string]quietCounter
	for i := range cfg.Machines {
		m := &cfg.Machines[i]
		if m.GoodCount == nil || !a.shownRunning[m.ID] {
			continue
		}
		after := a.quietLimit(m.ID, m.GoodCount)
		if after <= 0 {
			continue // quiet_after: off
		}
		if a.started.IsZero() || a.runFed[m.ID].IsZero() {
			// (A run state restored at the start, nothing since: maybe
			// stale — the machine stopped while the agent was down.)
			continue
		}
		if q := a.countRan[m.ID] + a.countRunning(m, now); q >= a.quietDue(m.ID, after) {
			if out == nil {
				out = map[string]quietCounter{}
			}
			out[m.ID] = quietCounter{ran: q, lost: a.countLost[m.ID], same: a.countSame[m.ID]}
		}
	}
	return out
}

// timesSaid says n times in words ("once", "7 times").
func timesSaid(n int) string {
	if n == 1 {
		return "once"
	}
	return fmt.Sprintf("%d times", n)
}

// quietCounter is a quiet counter's running without a value (quietCounters),
// how many times its source's connection was lost meanwhile, and how many
// of its values came again as they were (no news: countNews).
type quietCounter struct {
	ran  time.Duration
	lost int
	same int
}

// quietGrace is the part of its limit a reconnect of its source gives a
// counter to send (quietDue), and quietGraceCap how many times its limit
// of running reconnects may ask for at most.
const (
	quietGrace    = 3
	quietGraceCap = 2
)

// quietDue is how much running without a value of machine id's counter,
// its limit being after, makes the note: the limit, or what its source's
// reconnects asked for (countNeed), at most quietGraceCap times the limit.
// Under stateMu.
func (a *Agent) quietDue(id string, after time.Duration) time.Duration {
	return max(after, min(a.countNeed[id], quietGraceCap*after))
}

// quietGapTimes is how many times its usual time between values a
// counter may bring nothing before it is noted, when that is longer than
// the default limit; quietGapSteps how many of its last steps (all it
// keeps) must be known for that usual time.
const (
	quietGapTimes = 3
	quietGapSteps = 3
)

// quietLimit is how long machine id may run with good_count c bringing
// nothing before it is noted (0: never): its quiet_after, else the
// default (Options.CountQuietAfter), or quietGapTimes its usual time
// between values when that is longer — a press making a piece every 20
// to 40 minutes, a curing oven, sent on change, was noted between every
// two pieces for good (review 44): a note on a healthy machine is worse
// than none, and the configuration names the machines it is not enough
// for. The usual time is the median of the counter's last steps (the
// mapping keeps them for its wraps and resets, in the durable state): a
// gap that held a stop or a weekend is one step of five, and moves it
// little. Under stateMu.
func (a *Agent) quietLimit(id string, c *config.Counter) time.Duration {
	if c.QuietAfter != nil {
		return c.QuietAfter.D()
	}
	after := cmp.Or(a.opts.CountQuietAfter, countQuietAfter)
	ms := a.state.Machines[id]
	if ms == nil {
		return after
	}
	cs := ms.Counters[mapping.GoodCount]
	if cs == nil || len(cs.Steps) < quietGapSteps {
		return after
	}
	gaps := make([]float64, len(cs.Steps))
	for i, st := range cs.Steps {
		gaps[i] = st.S
	}
	slices.Sort(gaps)
	usual := time.Duration(gaps[len(gaps)/2] * float64(time.Second))
	return max(after, quietGapTimes*usual)
}

// countWatch is when the watch of machine id's good_count began: this
// start, its last value, a reload that mapped it anew, or its source's
// last connect (the latest).
// Under stateMu.
func (a *Agent) countWatch(id string) time.Time {
	w := a.started
	for _, t := range []time.Time{a.countFed[id], a.countMapped[id]} {
		if t.After(w) {
			w = t
		}
	}
	return w
}

// ranFrom is since when machine id's run under way counts towards its
// quiet counter: since it began to run, its counter's watch began, or
// (a run state restored at the start) its first run-state value came.
// Under stateMu.
func (a *Agent) ranFrom(id string) time.Time {
	from := a.runSince[id]
	for _, t := range []time.Time{a.countWatch(id), a.runFed[id]} {
		if t.After(from) {
			from = t
		}
	}
	return from
}

// sourceKey names the source of kind and name in srcUp.
func sourceKey(kind connectors.Kind, name string) string { return string(kind) + "/" + name }

// counterSource is the sourceKey of machine m's good_count ("" without one).
func counterSource(m *config.Machine) string {
	switch c := m.GoodCount; {
	case c == nil:
		return ""
	case c.MQTT != nil:
		return sourceKey(connectors.KindMQTT, c.MQTT.Broker)
	case c.OPCUA != nil:
		return sourceKey(connectors.KindOPCUA, c.OPCUA.Server)
	}
	return ""
}

// countersFrom yields the machines of cfg whose good_count source key
// (sourceKey) reads.
func countersFrom(cfg *config.Config, key string) iter.Seq[*config.Machine] {
	return func(yield func(*config.Machine) bool) {
		for i := range cfg.Machines {
			if m := &cfg.Machines[i]; counterSource(m) == key && !yield(m) {
				return
			}
		}
	}
}

// countRunning is how long machine m has run, in its run under way, while
// its counter's source is connected, since its counter's watch began
// (none while the source is not connected). Under stateMu.
func (a *Agent) countRunning(m *config.Machine, now time.Time) time.Duration {
	up, ok := a.srcUp[counterSource(m)]
	if !ok || !a.shownRunning[m.ID] || a.runFed[m.ID].IsZero() {
		return 0 // (a run state restored at the start, nothing since: no run)
	}
	from := a.ranFrom(m.ID)
	if up.After(from) {
		from = up
	}
	return max(0, now.Sub(from))
}

// countFold adds the running of machine id's run under way while its
// counter's source was connected, up to now, to countRan: its run ends,
// or its source's connection. Under stateMu.
func (a *Agent) countFold(id string, now time.Time) {
	cfg := a.cfg.Load()
	if cfg == nil {
		return
	}
	if m := findMachine(cfg, id); m != nil {
		a.countRan[id] += a.countRunning(m, now)
	}
}

// countWatchAnew forgets what machine id's counter's watch added up: a
// value came, or a reload mapped it anew. Under stateMu.
func (a *Agent) countWatchAnew(id string) {
	delete(a.countRan, id)
	delete(a.countNeed, id)
	delete(a.countLost, id)
	delete(a.countSame, id)
}

// heard is what countNews keeps of the last good sample of a source
// address that gave a good_count a value: of an MQTT message its
// payload's hash (a value and its timestamp_field, and the rest), of an
// OPC UA value the value, its data type and its source time.
type heard struct {
	sum uint64
	val any
	typ string
	at  time.Time
}

// countNews reports whether good sample s, which gave a good_count a
// value, is news from the machine for its counter's quiet watch, and keeps
// it as its address's last (countHeard). A value its source hands the
// agent again as the agent last had it is not: the broker's retained copy
// (or a redelivery, DUP) of the payload the topic last brought, sent at
// every reconnect — a publisher that stopped leaves it behind; an OPC UA
// value and source time (the value alone when neither has one; a server
// timestamp, ServerStamped, is none, nor an array's for one of its
// elements) as last read — the read that starts each session, the subscription's first
// value, a poll or heartbeat read of a node that stands (the server sends
// a monitored node's value when it changes). Behind a broker or server
// that drops the agent more often than the limit, each of them started
// the watch over, and the counter was never noted. A retained message
// that differs was published while the agent was away, and is news; a
// message not retained always is (its publisher is alive). Only the watch
// depends on it: the sample is mapped and stored as any other. Under
// stateMu.
func (a *Agent) countNews(k sampleAddr, s connectors.Sample) bool {
	var h heard
	if s.Kind == connectors.KindMQTT {
		h.sum = maphash.Bytes(a.heardSeed, s.Payload)
	} else {
		h.val, h.typ, h.at = s.Value, s.DataType, s.SourceTime
		if s.ServerStamped || s.Element {
			// When the server read it, not when the machine changed it
			// (many servers stamp every read anew), or the time of the
			// whole array, which another element's change moves: no
			// source time of this value.
			h.at = time.Time{}
		}
	}
	last, ok := a.countHeard[k]
	a.countHeard[k] = h
	if !ok {
		return true
	}
	if s.Kind == connectors.KindMQTT {
		return !(s.Initial || s.Duplicate) || h.sum != last.sum
	}
	return h.typ != last.typ || !h.at.Equal(last.at) || !reflect.DeepEqual(h.val, last.val)
}

// countSourceConnected notes that source (of kind) just connected: from
// here on the running of each machine whose good_count it reads counts
// towards its quiet counter again — what ran while the source was down is
// not its silence (review 44: right after its broker came back, the note
// said "no value for" the outage). The watch is not started anew, which
// hid for good a counter that never sends behind a broker or server that
// drops the agent more often than the limit (a flapping broker, every 5
// minutes against 15): a counter sent on change, not retained, that had
// no chance to send during the outage is given a grace instead, a third
// of its limit (its usual time between values where the limit was
// learned from it) of running from here, unless its silence already made
// the note; and what reconnects ask for stops at quietGraceCap times the
// limit. The connectors call it before they show connected.
func (a *Agent) countSourceConnected(kind connectors.Kind, source string, now time.Time) {
	cfg := a.cfg.Load()
	if cfg == nil {
		return
	}
	key := sourceKey(kind, source)
	a.stateMu.Lock()
	defer a.stateMu.Unlock()
	_, up := a.srcUp[key]
	for m := range countersFrom(cfg, key) {
		if up { // (no loss was seen: what ran until now was connected)
			a.countRan[m.ID] += a.countRunning(m, now)
		}
		after := a.quietLimit(m.ID, m.GoodCount)
		if q := a.countRan[m.ID]; after > 0 && q < a.quietDue(m.ID, after) {
			a.countNeed[m.ID] = max(a.countNeed[m.ID], q+after/quietGrace)
		}
	}
	a.srcUp[key] = now
}

// countSourceDown notes that source (of kind) is no longer connected — its
// connection lost (lost), or the source stopped: the running of the
// machines whose good_count it reads counts no more until it connects
// again. Under no lock.
func (a *Agent) countSourceDown(kind connectors.Kind, source string, lost bool, now time.Time) {
	cfg := a.cfg.Load()
	key := sourceKey(kind, source)
	a.stateMu.Lock()
	defer a.stateMu.Unlock()
	if _, up := a.srcUp[key]; !up {
		return
	}
	if cfg != nil {
		for m := range countersFrom(cfg, key) {
			a.countRan[m.ID] += a.countRunning(m, now)
			if lost {
				a.countLost[m.ID]++
			}
		}
	}
	delete(a.srcUp, key)
}

func (a *Agent) storedWorkOrder(id string) string {
	return storedWorkOrderName(a.loadWOStateWaited(id))
}

// loadWOStateWaited is loadWOState for status: once a buffer write has
// stalled it is not waited for (readWaited), and none is said.
func (a *Agent) loadWOStateWaited(id string) (*woState, error) {
	var wo *woState
	var err error
	if !a.readWaited(func() { wo, err = a.loadWOState(id) }) {
		return nil, nil
	}
	return wo, err
}

// readWaited runs read, a read of the buffer that status makes, and waits
// for it until it ends, a buffer write has stalled or one has run for
// waitedReadLimit, as for the pending counts (awaitScan): a read
// transaction waits behind a commit stalled in its meta page, and status
// must answer within the CLI's 10 s and say the stall. While a write is
// stalled none is begun: status may ask for every machine's, each time.
func (a *Agent) readWaited(read func()) bool {
	if a.writeStalled() > 0 {
		return false
	}
	return a.readWaitedWithin(read, waitedReadLimit)
}

func storedWorkOrderName(st *woState, err error) string {
	if err != nil || st == nil {
		return ""
	}
	return st.Name
}

// pendingCount is what scanPending found of a machine. Its quantities are
// exact decimal sums (internal/decimal), as the forwarder's: summed in
// float64, 95 records of 0.01 after one of 100,000,000 showed as
// 100000000.950001 pending.
type pendingCount struct {
	good     float64
	scrap    float64 // scrapped pieces not booked yet
	deadGood float64 // good pieces in the dead letters (Odoo refused them, or made on a finished order)
	// deadFinished is how many of deadGood were made on a work order
	// finished before they reached Odoo (moved there by plantedge, not
	// refused by Odoo).
	deadFinished float64
	// deadCancelled: of deadGood, made on a work order cancelled before
	// they reached Odoo (cancelledOrderReason).
	deadCancelled float64
	deadEvents    int // downtime records in the dead letters (Odoo refused them)
	// deadUnmapped, deadEventsUnmapped: of deadGood and deadEvents, set
	// aside while the machine was not in the configuration (Odoo refused
	// nothing: deadletter retry once it is back).
	deadUnmapped       float64
	deadEventsUnmapped int
	// deadScrap: scrapped pieces in the dead letters; of them,
	// deadScrapUnmapped set aside while the machine was not in the
	// configuration, deadScrapEnded made on a work order finished or
	// cancelled before they reached Odoo.
	deadScrap, deadScrapUnmapped, deadScrapEnded float64
	dead                                         int       // the machine's dead letters (damaged ones left out)
	records                                      int       // count records
	events                                       int       // event records
	eventsNoWC                                   int       // of which name no work center (older versions')
	minSeq                                       uint64    // the lowest sequence number of its records
	minTime                                      time.Time // the oldest time of its records
}

// note keeps the lowest sequence number and the oldest time of a key's
// records.
func (pc *pendingCount) note(r buffer.Record) {
	if pc.minSeq == 0 || r.Seq < pc.minSeq {
		pc.minSeq = r.Seq
	}
	if !r.Time.IsZero() && (pc.minTime.IsZero() || r.Time.Before(pc.minTime)) {
		pc.minTime = r.Time
	}
}

// forwardable reports whether the records of machine id can go to Odoo
// now: not held for a work order in progress, a work center Odoo lacks,
// or a machine gone from the configuration.
func forwardable(cfg *config.Config, links map[string]machineLink, id string) bool {
	if findMachine(cfg, id) == nil {
		return false
	}
	l, ok := links[id]
	return !ok || l.WorkorderID != 0 && !l.NoWorkcenter
}

// oldestForwardable returns the lowest sequence number of the records that
// can go to Odoo now, and when the oldest of them was buffered (0 and zero:
// none).
func oldestForwardable(cfg *config.Config, links map[string]machineLink, pending map[string]pendingCount) (seq uint64, at time.Time) {
	for id, pc := range pending {
		if !forwardable(cfg, links, id) {
			continue
		}
		if pc.minSeq != 0 && (seq == 0 || pc.minSeq < seq) {
			seq = pc.minSeq
		}
		if !pc.minTime.IsZero() && (at.IsZero() || pc.minTime.Before(at)) {
			at = pc.minTime
		}
	}
	return seq, at
}

// UnmappedMachine is a machine gone from the configuration with records in
// the buffer.
type UnmappedMachine struct {
	ID      string  `json:"id"`
	Records int     `json:"records"`
	Good    float64 `json:"pending_good"`
}

// removedDeadLetters lists the machines not in cfg that have dead letters.
func removedDeadLetters(cfg *config.Config, pending map[string]pendingCount) []RemovedDeadLetters {
	var list []RemovedDeadLetters
	for id, pc := range pending {
		if pc.dead > 0 && findMachine(cfg, id) == nil {
			list = append(list, RemovedDeadLetters{ID: id, DeadLetters: pc.dead, Good: tidy(pc.deadGood), Scrap: tidy(pc.deadScrap)})
		}
	}
	slices.SortFunc(list, func(x, y RemovedDeadLetters) int { return strings.Compare(x.ID, y.ID) })
	return list
}

// RemovedDeadLetters is the dead letters of a machine no longer in the
// config: how many, and the good and scrapped pieces they hold.
type RemovedDeadLetters struct {
	ID          string  `json:"id"`
	DeadLetters int     `json:"dead_letters"`
	Good        float64 `json:"good"`
	Scrap       float64 `json:"scrap"`
}

// unmapped counts pending records of machines that are not in cfg, and
// lists those machines.
func unmapped(cfg *config.Config, pending map[string]pendingCount) (int, []UnmappedMachine) {
	n := 0
	var list []UnmappedMachine
	for id, pc := range pending {
		if findMachine(cfg, id) == nil {
			n += pc.records + pc.eventsNoWC // events naming a work center go there (the forwarder counts those waiting)
			if k := pc.records + pc.events; k > 0 {
				list = append(list, UnmappedMachine{ID: id, Records: k, Good: tidy(pc.good)})
			}
		}
	}
	slices.SortFunc(list, func(x, y UnmappedMachine) int { return strings.Compare(x.ID, y.ID) })
	return n, list
}

// pendingCounts sums the good counts still in the buffer per machine. It
// scans the buffer (0.4–0.5 µs a record), so a result is reused for a second,
// or for ten times as long as its scan took: status and /metrics may be
// polled often (flush, a dashboard) while a backlog of millions waits, and
// must neither take a core nor answer late (the scale probe: 1.1 s a call
// and 43 % of the agent's CPU at 90k–370k records). A scan of more than
// pendingScanBound records, or once one took pendingScanSlow or more, runs
// in the background: the last result is answered at once, and with none
// yet (a start, a drained buffer) no counts, reading the number of
// records being read — the many-PLCs benchmark's last /metrics scrape,
// which scanned the backlog while it waited, took 35–42 s after 5 minutes
// of ingest with Odoo down, past Prometheus's 10 s scrape timeout. scanned
// is the buffer's last sequence number when that scan began: later records
// are not in it. err says why that scan stopped short: the counts are then
// partial. A caller waits for a scan only until a buffer write has stalled
// (awaitScan): it then answers the last result, or none yet, reading.
func (a *Agent) pendingCounts() (_ map[string]pendingCount, scanned uint64, reading int, err error) {
	a.pendingMu.Lock()
	defer a.pendingMu.Unlock()
	n := a.pendingBacklog()
	long := n > pendingScanBound && !a.pendingDone.Load()
	if a.pendingVal != nil && !a.pendingDrained() {
		if time.Since(a.pendingAt) < max(time.Second, 10*a.pendingTook) {
			return a.pendingVal, a.pendingSeq, 0, a.pendingErr
		}
		if long || (a.pendingTook >= pendingScanSlow && !a.pendingDone.Load()) {
			a.rescanInBackground()
			return a.pendingVal, a.pendingSeq, 0, a.pendingErr
		}
	} else if long {
		a.rescanInBackground()
		return map[string]pendingCount{}, 0, n, nil
	}
	if a.pendingDone.Load() {
		// Stopped, or a stopped agent's file (OfflineStatus): no write
		// to wait behind, and no background left to wait for.
		a.pendingVal, a.pendingSeq, a.pendingTook, a.pendingErr = a.scanPendingCounts(false)
		a.pendingAt = time.Now()
		return a.pendingVal, a.pendingSeq, 0, a.pendingErr
	}
	w := a.scanWhileWaited()
	a.pendingMu.Unlock()
	ended := a.awaitScan(w.done)
	a.pendingMu.Lock()
	switch {
	case ended:
		return w.val, w.seq, 0, w.err
	case a.pendingVal == nil:
		return map[string]pendingCount{}, 0, n, nil
	}
	return a.pendingVal, a.pendingSeq, 0, a.pendingErr
}

// waitedScan is a scan of the pending counts that a caller waits for
// (scanWhileWaited): its result is set when done is closed.
type waitedScan struct {
	done chan struct{}
	gen  uint64 // pendingGen when it began
	val  map[string]pendingCount
	seq  uint64
	err  error
}

// scanWhileWaited starts a scan of the pending counts for a caller that
// waits for it (pendingCounts), unless one begun since the last forget
// runs (under pendingMu). It reads as a scan under pendingMu did, but
// without holding pendingMu: a read of the buffer waits behind a stalled
// write (bbolt holds the lock a read transaction begins under while a
// commit writes its meta page: fsfreeze at that moment held every status
// and /metrics call, and the status poll of TestWriteStallShows, until the
// disk was thawed), and the callers after it must still answer.
func (a *Agent) scanWhileWaited() *waitedScan {
	if w := a.pendingWaited; w != nil && w.gen == a.pendingGen {
		return w
	}
	w := &waitedScan{done: make(chan struct{}), gen: a.pendingGen}
	a.pendingWaited = w
	a.bg.Add(1)
	go func() {
		defer a.bg.Done()
		if hook := pendingScanStarts.Load(); hook != nil {
			(*hook)()
		}
		val, seq, took, err := a.scanPendingCounts(false)
		a.pendingMu.Lock()
		defer a.pendingMu.Unlock()
		w.val, w.seq, w.err = val, seq, err
		a.pendingVal, a.pendingSeq, a.pendingTook, a.pendingErr, a.pendingAt = val, seq, took, err, time.Now()
		if w.gen != a.pendingGen {
			a.pendingAt = time.Time{} // begun before a forget: due again
		}
		if a.pendingWaited == w {
			a.pendingWaited = nil
		}
		close(w.done)
	}()
	return w
}

// awaitScan waits for a scan of the pending counts (done) to end, and
// reports whether it did: it gives up once a buffer write has stalled
// (writeStalled), or has run for waitedReadLimit, whose stall the scan may
// be waiting behind — status and /metrics then answer with the counts they
// had (or none, "reading"), within the CLI's 10 s, and say the stall once
// it is one.
func (a *Agent) awaitScan(done <-chan struct{}) bool { return a.awaitRead(done, waitedReadLimit, 0) }

// awaitRead waits for a read of the buffer (done) to end, and reports
// whether it did: it gives up once a buffer write has stalled and the
// read has been waited for grace, or a write has run for within.
func (a *Agent) awaitRead(done <-chan struct{}, within, grace time.Duration) bool {
	tick := time.NewTicker(awaitScanLook)
	defer tick.Stop()
	start := time.Now()
	for {
		select {
		case <-done:
			return true
		case <-tick.C:
			if (a.writeStalled() > 0 && time.Since(start) >= grace) || a.writeRunning() >= within {
				select {
				case <-done:
					return true
				default:
					return false
				}
			}
		}
	}
}

// awaitScanLook is how often awaitScan looks for a stalled write.
const awaitScanLook = 20 * time.Millisecond

// pendingScanStarts, when set (tests), is called before a scan that a
// caller waits for (scanWhileWaited) reads the buffer.
var pendingScanStarts atomic.Pointer[func()]

// pendingBacklog is how many records a scan of the pending counts reads
// (telemetry is not read), from the buffer's stats: known at once.
func (a *Agent) pendingBacklog() int {
	if a.buf == nil {
		return 0
	}
	st := a.buf.Stats()
	return st.Lanes[buffer.LaneCounts].Pending + st.Lanes[buffer.LaneEvents].Pending + st.DeadLetters
}

// oldestForwardableNow is oldestForwardable of the pending counts, or,
// while they are being read (reading records, none counted yet), with the
// oldest pending record's time (oldestPending): status and /metrics say
// the same age.
func (a *Agent) oldestForwardableNow(cfg *config.Config, links map[string]machineLink, pending map[string]pendingCount, reading int) (uint64, time.Time) {
	seq, at := oldestForwardable(cfg, links, pending)
	if reading > 0 {
		at = a.oldestPending()
	}
	return seq, at
}

// oldestPending is when the oldest record of the count and event lanes
// was taken, held or not: what oldest_forwardable says while the pending
// counts are being read (an upper bound: 0, none, would hide a backlog
// from an alert just when a WAN outage made it big).
func (a *Agent) oldestPending() time.Time {
	st := a.buf.Stats()
	var at time.Time
	for _, l := range []buffer.Lane{buffer.LaneCounts, buffer.LaneEvents} {
		if o := st.Lanes[l].Oldest; !o.IsZero() && (at.IsZero() || o.Before(at)) {
			at = o
		}
	}
	return at
}

// rescanInBackground starts a background scan unless one runs (under
// pendingMu).
func (a *Agent) rescanInBackground() {
	if !a.pendingBusy {
		a.pendingBusy = true
		a.bg.Add(1)
		go a.rescanPending(a.pendingGen)
	}
}

// pendingDrained reports whether the kept pending counts name records the
// buffer no longer holds: it is empty now. status just after a flush said
// "Buffer 0 records" and 30 pieces pending on the machine for a second
// (the technician probe); a scan of an empty buffer is quick.
func (a *Agent) pendingDrained() bool {
	if a.buf == nil || a.buf.Stats().Pending != 0 {
		return false
	}
	for _, pc := range a.pendingVal {
		if pc.records > 0 || pc.events > 0 {
			return true
		}
	}
	return false
}

// pendingScanSlow is how long a scan of the pending counts may take before
// the next runs in the background (see pendingCounts).
const pendingScanSlow = 100 * time.Millisecond

// pendingScanBound is how many records a scan of the pending counts may
// read while the caller waits; more are read in the background.
// BenchmarkPendingScan measured 0.40–0.47 µs a record on the 2-core box
// at load 3, 0.72–0.99 µs at load 6–8 (helpers' tests and a soak beside
// it): 40–100 ms for 100,000, within pendingScanSlow; 0.69–0.80 µs the
// same day before count records were read without encoding/json; before
// that, 1.30–1.34 µs on an idle day and 2–3 µs under ingest, when the
// bound was 50,000. A variable: tests lower it.
var pendingScanBound = 100000

// errScanStopped ends a background scan of the pending counts cut short by
// the stop.
var errScanStopped = errors.New("the agent is stopping")

// pendingScanChunk, when set (tests), is called after each chunk of
// records a background scan of a's reads.
var pendingScanChunk func(a *Agent)

// rescanPending scans in the background; a forget since gen (dead letters
// moved meanwhile) leaves its result due for another scan.
func (a *Agent) rescanPending(gen uint64) {
	defer a.bg.Done()
	val, seq, took, err := a.scanPendingCounts(true)
	a.pendingMu.Lock()
	defer a.pendingMu.Unlock()
	a.pendingBusy = false
	if errors.Is(err, errScanStopped) {
		return // cut short by the stop: not the buffer's counts
	}
	a.pendingVal, a.pendingSeq, a.pendingTook, a.pendingErr, a.pendingAt = val, seq, took, err, time.Now()
	if gen != a.pendingGen {
		a.pendingAt = time.Time{}
	}
}

// stopPendingScans cuts a background scan short (it ends at its next
// chunk, some 25 ms of reading), waits for it, and lets none start.
func (a *Agent) stopPendingScans() {
	a.pendingMu.Lock() // a scan being started under it is counted in bg
	a.pendingDone.Store(true)
	a.pendingMu.Unlock()
	a.bg.Wait()
}

// forgetPendingCounts makes the next pendingCounts scan again (at once if
// scans are quick, else in the background).
func (a *Agent) forgetPendingCounts() {
	a.pendingMu.Lock()
	a.pendingAt = time.Time{}
	a.pendingGen++
	a.pendingMu.Unlock()
}

// scanPendingCounts reads the pending records and the dead letters' good
// counts; seq is the buffer's last sequence number before it began, took
// how long it took, err why it stopped short (what it read is returned).
// A background scan (bg) ends at the stop, with errScanStopped.
func (a *Agent) scanPendingCounts(bg bool) (_ map[string]pendingCount, seq uint64, took time.Duration, err error) {
	if a.buf == nil {
		return map[string]pendingCount{}, 0, 0, nil
	}
	start := time.Now()
	seq = a.buf.LastSeq()
	out, err := a.scanPending(bg)
	return out, seq, time.Since(start), err
}

// scanPending sums the pending records and the dead letters per machine.
// A read that fails (a record damaged on the disk, which a read-only open
// cannot set aside; a buffer closing) ends the scan of its lane, not of
// the others: the sums are then short, and err says so — status must not
// present them as whole.
func (a *Agent) scanPending(bg bool) (map[string]pendingCount, error) {
	out := map[string]pendingCount{}
	scanErr := a.scanLane(buffer.LaneEvents, bg, func(r buffer.Record) {
		pc := out[r.Key]
		pc.events++
		pc.note(r)
		if ev, err := decodeEvent(r); err != nil || ev.Workcenter == "" {
			pc.eventsNoWC++
		}
		out[r.Key] = pc
	})
	if errors.Is(scanErr, errScanStopped) {
		return out, scanErr
	}
	err := a.scanLane(buffer.LaneCounts, bg, func(r buffer.Record) {
		m, sig := splitKey(r.Key)
		pc := out[m]
		pc.records++
		pc.note(r)
		if sig == sigGood || sig == sigScrap {
			if c, err := decodeCount(r); err == nil {
				if sig == sigGood {
					pc.good = decimal.Add(pc.good, c.Delta)
				} else {
					pc.scrap = decimal.Add(pc.scrap, c.Delta)
				}
			}
		}
		out[m] = pc
	})
	scanErr = cmp.Or(scanErr, err)
	if a.buf.Stats().DeadLetters == 0 || errors.Is(err, errScanStopped) {
		return out, scanErr
	}
	for after := uint64(0); ; {
		if bg && a.pendingDone.Load() {
			return out, errScanStopped
		}
		dls, err := a.buf.DeadLetterPage(after, scanChunk)
		if err != nil || len(dls) == 0 {
			return out, cmp.Or(scanErr, err)
		}
		for _, d := range dls {
			after = d.ID
			if !d.Damaged {
				m, _ := splitKey(d.Record.Key)
				pc := out[m]
				pc.dead++
				out[m] = pc
			}
			if d.Record.Lane == buffer.LaneEvents && !d.Damaged {
				pc := out[d.Record.Key]
				pc.deadEvents++
				if unmappedReason(d.Reason) {
					pc.deadEventsUnmapped++
				}
				out[d.Record.Key] = pc
				continue
			}
			if m, sig := splitKey(d.Record.Key); sig == sigScrap && !d.Damaged && d.Record.Lane == buffer.LaneCounts {
				// Scrap as good pieces are (ux45: named nowhere).
				if c, err := decodeCount(d.Record); err == nil {
					pc := out[m]
					pc.deadScrap = decimal.Add(pc.deadScrap, c.Delta)
					switch {
					case endedOrder(d.Reason):
						pc.deadScrapEnded = decimal.Add(pc.deadScrapEnded, c.Delta)
					case unmappedReason(d.Reason):
						pc.deadScrapUnmapped = decimal.Add(pc.deadScrapUnmapped, c.Delta)
					}
					out[m] = pc
				}
			}
			if m, sig := splitKey(d.Record.Key); sig == sigGood && !d.Damaged && d.Record.Lane == buffer.LaneCounts {
				if c, err := decodeCount(d.Record); err == nil {
					pc := out[m]
					pc.deadGood = decimal.Add(pc.deadGood, c.Delta)
					switch {
					case strings.HasPrefix(d.Reason, cancelledOrderReason):
						pc.deadCancelled = decimal.Add(pc.deadCancelled, c.Delta)
					case endedOrder(d.Reason):
						pc.deadFinished = decimal.Add(pc.deadFinished, c.Delta)
					case unmappedReason(d.Reason):
						pc.deadUnmapped = decimal.Add(pc.deadUnmapped, c.Delta)
					}
					out[m] = pc
				}
			}
		}
	}
}

// partialNote is status's word on a scan of the pending counts that
// stopped short ("" when it read everything).
func partialNote(err error) string {
	switch {
	case err == nil:
		return ""
	case errors.Is(err, buffer.ErrCorruptRecord):
		return "a damaged record in the buffer file ended the scan (" + err.Error() + "): the machines' pending and dead-letter counts are short; " +
			"the agent's start sets damaged records aside in the dead letters"
	}
	return "reading the buffer file failed (" + err.Error() + "): the machines' pending and dead-letter counts are short"
}

// scanLane calls fn for each pending record of lane, in order. A read that
// fails is read again one record at a time, so that the records before the
// one it cannot read count (a chunk's read fails as a whole); its error
// ends the lane's scan. A background scan (bg) ends at the stop, before
// its next chunk: a scan of millions of records must not hold it.
func (a *Agent) scanLane(lane buffer.Lane, bg bool, fn func(buffer.Record)) error {
	for after := uint64(0); ; {
		if bg && a.pendingDone.Load() {
			return errScanStopped
		}
		recs, err := a.buf.Peek(lane, after, scanChunk)
		if err != nil {
			for {
				one, err1 := a.buf.Peek(lane, after, 1)
				if err1 != nil || len(one) == 0 {
					return err
				}
				fn(one[0])
				after = one[0].Seq
			}
		}
		for _, r := range recs {
			fn(r)
			after = r.Seq
		}
		if lane == buffer.LaneCounts {
			_ = a.buf.DropMappedPages() // millions of count records: not kept mapped
		}
		if bg && pendingScanChunk != nil {
			pendingScanChunk(a)
		}
		if len(recs) < scanChunk {
			return nil
		}
	}
}

// joinNotes joins the non-empty notes of a machine's error with "; ".
func joinNotes(notes ...string) string {
	return strings.Join(slices.DeleteFunc(notes, func(n string) bool { return n == "" }), "; ")
}

// deadLetterNote is a machine's error line for good pieces in the dead
// letters ("" when none): they are counted in good_count but are not in
// Odoo.
func deadLetterNote(pc pendingCount) string {
	var notes []string
	if refused := decimal.Sub(decimal.Sub(decimal.Sub(pc.deadGood, pc.deadFinished), pc.deadCancelled), pc.deadUnmapped); refused > 0 {
		notes = append(notes, fmt.Sprintf("%s Odoo refused %s in the dead letters, not in Odoo (plantedge deadletter list)", Pieces(tidy(refused), "good"), OneOrMore(tidy(refused) == 1, "is", "are")))
	}
	if refused := tidy(decimal.Sub(decimal.Sub(pc.deadScrap, pc.deadScrapEnded), pc.deadScrapUnmapped)); refused > 0 {
		notes = append(notes, fmt.Sprintf("%s Odoo refused %s in the dead letters, not in Odoo (plantedge deadletter list)", Pieces(refused, "scrapped"), OneOrMore(refused == 1, "is", "are")))
	}
	if n := pc.deadEvents - pc.deadEventsUnmapped; n > 0 {
		notes = append(notes, fmt.Sprintf("%s Odoo refused %s in the dead letters, not in Odoo (plantedge deadletter list)", Plural(n, "downtime record"), OneOrMore(n == 1, "is", "are")))
	}
	// Set aside while the machine was out of the configuration (review 44:
	// said to be refused by Odoo, which was never asked).
	var aside []string
	one := false
	if pc.deadUnmapped > 0 {
		aside = append(aside, Pieces(tidy(pc.deadUnmapped), "good"))
		one = tidy(pc.deadUnmapped) == 1
	}
	if pc.deadScrapUnmapped > 0 {
		aside = append(aside, Pieces(tidy(pc.deadScrapUnmapped), "scrapped"))
		one = tidy(pc.deadScrapUnmapped) == 1
	}
	if pc.deadEventsUnmapped > 0 {
		aside = append(aside, Plural(pc.deadEventsUnmapped, "downtime record"))
		one = pc.deadEventsUnmapped == 1
	}
	if len(aside) > 0 {
		one = one && len(aside) == 1
		list := strings.Join(aside, " and ")
		if len(aside) == 3 {
			list = aside[0] + ", " + aside[1] + " and " + aside[2]
		}
		notes = append(notes, list+" set aside while the machine was not in the configuration "+OneOrMore(one, "is", "are")+" in the dead letters, not in Odoo "+
			"(plantedge deadletter retry sends "+OneOrMore(one, "it", "them")+", now that it is back)")
	}
	if pc.deadFinished > 0 {
		// The probe of late values: status said Odoo refused them.
		one := tidy(pc.deadFinished) == 1
		notes = append(notes, fmt.Sprintf("%s made on a work order finished before %s reached Odoo %s in the dead letters, not in Odoo "+
			"(its quantity is what it was finished with: correct it in Odoo if need be, then drop %s; plantedge deadletter list)",
			Pieces(tidy(pc.deadFinished), "good"), OneOrMore(one, "it", "they"), OneOrMore(one, "is", "are"), OneOrMore(one, "it", "them")))
	}
	if pc.deadCancelled > 0 {
		one := tidy(pc.deadCancelled) == 1
		notes = append(notes, fmt.Sprintf("%s made on a work order cancelled before %s reached Odoo %s in the dead letters, not in Odoo "+
			"(a cancelled order takes no quantity: book %s by hand if need be, then drop %s; plantedge deadletter list)",
			Pieces(tidy(pc.deadCancelled), "good"), OneOrMore(one, "it", "they"), OneOrMore(one, "is", "are"), OneOrMore(one, "it", "them"), OneOrMore(one, "it", "them")))
	}
	if pc.deadScrapEnded > 0 {
		one := tidy(pc.deadScrapEnded) == 1
		notes = append(notes, fmt.Sprintf("%s made on a work order finished or cancelled before %s reached Odoo %s in the dead letters, not in Odoo "+
			"(plantedge deadletter list says what to do)", Pieces(tidy(pc.deadScrapEnded), "scrapped"), OneOrMore(one, "it", "they"), OneOrMore(one, "is", "are")))
	}
	return joinNotes(notes...)
}

// setAside lists the buffer files moved aside as corrupt next to path
// (<path>.corrupt-<UTC time>), oldest first.
func setAside(path string) []string {
	found, _ := filepath.Glob(globEscape(path) + ".corrupt-*")
	slices.Sort(found)
	return found
}

// globEscape escapes filepath.Match's special characters in s.
func globEscape(s string) string {
	var b strings.Builder
	for _, r := range s {
		if strings.ContainsRune(`*?[\`, r) {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}

func bufferStatus(cfg *config.Config, buf *buffer.Queue) BufferStatus {
	s := buf.Stats()
	bs := BufferStatus{
		Path: cfg.BufferPath(), Pending: s.Pending, Bytes: s.Bytes, FileBytes: s.FileBytes,
		MaxBytes: int64(cfg.Buffer.MaxBytes), OldestAgeSeconds: age(s.Oldest), DeadLetters: s.DeadLetters,
		Dropped: s.Dropped, DeadLettersDropped: s.DeadDropped, Merged: s.Merged, Lanes: map[string]LaneStatus{}, Recovered: buf.Recovered(),
		FileRestored: s.Restored, SetAside: setAside(cfg.BufferPath()),
	}
	if !s.DiskFullSince.IsZero() {
		bs.DiskFullSeconds, bs.LimitBytes = age(s.DiskFullSince), s.LimitBytes
	}
	if !s.ReserveLentSince.IsZero() {
		bs.ReserveGivenUpSeconds = age(s.ReserveLentSince)
	}
	for l := buffer.Lane(0); l < buffer.NumLanes; l++ {
		ls := s.Lanes[l]
		bs.Lanes[l.String()] = LaneStatus{Pending: ls.Pending, Bytes: ls.Bytes, OldestAgeSeconds: age(ls.Oldest), Dropped: ls.Dropped}
	}
	if s.DeadLetters > 0 {
		if d, ok, err := buf.LatestDeadLetter(); err == nil && ok {
			bs.LatestDeadLetter = strings.Join(strings.Fields(d.Reason), " ")
		}
	}
	return bs
}

// OfflineStatus reads the buffer file of a stopped agent (read-only) and
// reports what it holds; Odoo and source states are unknown then. The
// machines' pending and dead-letter counts are read only from a backlog of
// offlineScanBound records or fewer: a bigger one is left unread and
// said so (buffer.pending_counts_reading), as the running agent says one
// it is still reading — see OfflineStatusCounted.
func OfflineStatus(cfg *config.Config) (Status, error) { return offlineStatus(cfg, offlineScanBound) }

// OfflineStatusCounted is OfflineStatus with the machines' pending and
// dead-letter counts read however big the backlog (status
// --count-pending): some 0.6 µs a record, a second or more for millions,
// while the file's lock keeps a starting agent waiting.
func OfflineStatusCounted(cfg *config.Config) (Status, error) { return offlineStatus(cfg, -1) }

// offlineScanBound is how many records a stopped agent's status reads for
// the machines' pending counts (bound < 0: all). A backlog after days of
// a WAN outage holds millions (a 1 GiB file some 9 million): read whole,
// status took 4.2–5.0 s at 3 million records, 70–76 MB RSS, and its
// read lock kept the agent systemd restarted meanwhile from opening the
// file. BenchmarkStoppedStatus: 0.71–0.88 s a status that reads 1,000,000
// records, 0.14–0.23 s one that reads none — 300,000 add some 0.2 s
// (0.97–1.79 s before count records were read without encoding/json). A
// variable: tests lower it.
var offlineScanBound = 300000

func offlineStatus(cfg *config.Config, bound int) (Status, error) {
	st := UnknownStatus(cfg, false)
	if _, err := os.Stat(cfg.BufferPath()); errors.Is(err, os.ErrNotExist) {
		// Installed, never run: nothing buffered, nothing known.
		st.Buffer.NoFile = true
		return st, nil
	}
	buf, err := buffer.Open(cfg.BufferPath(), buffer.Options{ReadOnly: true})
	if errors.Is(err, os.ErrPermission) {
		return st, fmt.Errorf("read the buffer file: %w (run it as root or as the plantedge user: sudo plantedge status)", err)
	}
	if errors.Is(err, buffer.ErrCorruptFile) {
		// A write transaction repairs some damage (a torn meta page) that a
		// read-only open cannot: the agent's start decides.
		return st, fmt.Errorf("the buffer file fails the read-only check (%w); the agent checks it again when it starts: "+
			"it repairs what a commit can, and moves a corrupt file aside and starts afresh, saying so in the log and in status", err)
	}
	if errors.Is(err, buffer.ErrEmptyFile) {
		return st, fmt.Errorf("the buffer file %s is %w: nothing is buffered in it, and the agent's next start makes a fresh one "+
			"(logged: buffer file found empty). If the agent ran here before, what it held is lost: a crash between the file's creation "+
			"and its first write leaves an empty one, so do a file system that lost its contents and a truncate by hand", cfg.BufferPath(), buffer.ErrEmptyFile)
	}
	if err != nil {
		return st, fmt.Errorf("open buffer read-only: %w", err)
	}
	st.Machines = st.Machines[:0]
	defer buf.Close()
	// What the loads would log goes nowhere (the running agent logs it);
	// damaged state is shown per machine below.
	// (pendingDone: no background scan, this status is a command's one
	// answer.)
	a := &Agent{buf: buf, log: slog.New(slog.DiscardHandler), state: mapping.NewState(), totals: map[string]totals{}, shownRunning: map[string]bool{}}
	a.pendingDone.Store(true)
	a.cfg.Store(cfg)
	if err := a.loadMachineState(); err != nil {
		return st, err
	}
	st.Buffer = bufferStatus(cfg, buf)
	st.Certificates = configuredCerts(cfg, time.Now())
	if site, err := buf.Meta("site"); err == nil && len(site) > 0 && string(site) != cfg.Site && !cfg.EndpointsOnly {
		// Another site's agent wrote it (a -c naming another plant's file
		// with the same data_dir), or site was changed since.
		st.LastError = fmt.Sprintf("the buffer file was last used by the agent of site %q, not %q: the wrong config file (-c)? Or site was changed since the agent last ran", site, cfg.Site)
	}
	was, err := buf.Meta(odooMetaKey) // the Odoo the file's state belongs to
	if err == nil && len(was) > 0 && string(was) != odooIdentity(cfg) && !cfg.EndpointsOnly {
		// odoo.url or odoo.database edited since: the start switches.
		st.Odoo.SwitchFrom = string(was)
	}
	if kd, err := buf.Meta(keyDatesKey); err == nil && len(kd) > 0 {
		// When the bot user's keys expire, as the agent last read them
		// for the key that last worked.
		var d keyDates
		if worked, err := buf.Meta(keyWorkedKey); err == nil && json.Unmarshal(kd, &d) == nil && d.Known && d.Key == string(worked) {
			st.Odoo.KeyExpiresAt, st.Odoo.KeyExpiresSoon = keyExpiryStatus(d.Expires, time.Now())
		}
	}
	pending, scanErr := map[string]pendingCount{}, error(nil)
	if n := a.pendingBacklog(); bound >= 0 && n > bound {
		// Not read: the counts are not known, as while a running agent
		// reads them (held, unmapped and oldest forwardable leave those
		// records out, the oldest below is the oldest pending).
		st.Buffer.PendingCountsReading = n
	} else {
		pending, _, _, scanErr = a.pendingCounts()
	}
	st.Buffer.PendingPartial = partialNote(scanErr)
	if !cfg.EndpointsOnly { // without the machines every record would look unmapped
		st.Buffer.Unmapped, st.Buffer.UnmappedMachines = unmapped(cfg, pending)
		st.Buffer.RemovedDeadLetters = removedDeadLetters(cfg, pending)
		st.Buffer.Held += st.Buffer.Unmapped // held, as a running agent says (the upgrade probe: 0 held, 32 unmapped)
	}
	// The machines the agent last found without a work order in progress:
	// their records are held (below), and the oldest forwardable leaves
	// them out, as the running agent's does (a link without a work order).
	held := map[string]machineLink{}
	drafts := map[string][]scrapDraft{}
	if sd, err := storedScrapDrafts(buf); err == nil {
		for _, e := range sd {
			drafts[e.machine] = append(drafts[e.machine], e.d)
		}
	}
	for _, m := range cfg.Machines {
		t := a.totals[m.ID]
		// Nobody reads the machine while the agent is stopped: its last
		// stored run state may be long out of date.
		wo, woErr := a.loadWOState(m.ID)
		ms := MachineStatus{ID: m.ID, Workcenter: m.Workcenter, WorkOrder: storedWorkOrderName(wo, woErr),
			GoodCount: tidy(t.Good), ScrapCount: tidy(t.Scrap), Pending: tidy(pending[m.ID].good), PendingScrap: tidy(pending[m.ID].scrap), State: "unknown"}
		if st.Odoo.SwitchFrom != "" {
			// The old Odoo's: counts go to the new one's, not known yet
			// (the fourth self-probe saw the old one's names).
			ms.WorkOrder = ""
		}
		if b, err := buf.Meta(unattributedMetaKey(m.ID)); err == nil && len(b) > 0 {
			// The agent last found no work order in progress for it.
			ms.WorkOrder, ms.Unattributed = "", ms.Pending
			st.Buffer.Held += pending[m.ID].records
			held[m.ID] = machineLink{}
		}
		if ds := drafts[m.ID]; len(ds) > 0 {
			// Odoo may have validated or deleted them since: the agent
			// looks when it runs.
			ms.Error = scrapDraftsMessage(cfg, ds, "waited") + " (when the agent last looked)"
		}
		if woErr == nil && wo != nil && wo.InFlight != nil {
			// The fourth self-probe: before a switch of Odoo a technician
			// could not see one. A running agent settles it within its
			// first round (after Odoo's request limit): flush waits for
			// that (the fifth self-probe: started, status soon said
			// nothing, and the switch right after doubled it).
			sentTo := "the Odoo it was sent to"
			if len(was) > 0 {
				sentTo += " (" + string(was) + ")"
			}
			ms.Error = joinNotes(ms.Error, fmt.Sprintf("a quantity write to Odoo (%s to %s) got no answer before the agent stopped: "+
				"its next start reads it back and settles it; before pointing the agent at another Odoo, start it on %s and run plantedge flush, which settles it",
				wo.Name, Qty(wo.InFlight.Target), sentTo))
		}
		if slices.Contains(a.damagedState, m.ID) {
			ms.Error = joinNotes(ms.Error, damagedStateMsg)
		}
		if b, err := buf.Meta(woMetaKey(m.ID)); err == nil && b != nil && wo == nil {
			ms.Error = joinNotes(ms.Error, damagedWOMsg)
		}
		ms.DeadLetterGood = tidy(pending[m.ID].deadGood)
		ms.DeadLetterScrap = tidy(pending[m.ID].deadScrap)
		ms.Error = joinNotes(ms.Error, deadLetterNote(pending[m.ID]))
		st.Machines = append(st.Machines, ms)
	}
	if !cfg.EndpointsOnly {
		_, at := a.oldestForwardableNow(cfg, held, pending, st.Buffer.PendingCountsReading)
		st.Buffer.OldestForwardableAgeSeconds = age(at)
	}
	st.Buffer.Held = min(st.Buffer.Held, st.Buffer.Pending)
	return st, nil
}

// UnknownStatus is what status knows from cfg alone: every machine's state
// unknown, nothing buffered, Odoo offline; the sources down when the agent
// is stopped, connecting when it runs but did not answer (mostly: still
// starting).
func UnknownStatus(cfg *config.Config, running bool) Status {
	st := Status{Site: cfg.Site, AgentRunning: running, Sources: []SourceStatus{}, Machines: []MachineStatus{}, Certificates: []CertificateStatus{}}
	st.Odoo = OdooStatus{URL: cfg.Odoo.URL, State: "offline", LastError: "agent not running"}
	st.Buffer = BufferStatus{Path: cfg.BufferPath(), MaxBytes: int64(cfg.Buffer.MaxBytes), Lanes: map[string]LaneStatus{}}
	state := connectors.StateDown
	if running {
		st.Odoo.LastError, state = "agent not answering", connectors.StateConnecting
	}
	for _, s := range cfg.OPCUA {
		st.Sources = append(st.Sources, SourceStatus{Name: s.Name, Kind: string(connectors.KindOPCUA), State: string(state)})
	}
	for _, s := range cfg.MQTT {
		st.Sources = append(st.Sources, SourceStatus{Name: s.Name, Kind: string(connectors.KindMQTT), State: string(state)})
	}
	sort.Slice(st.Sources, func(i, j int) bool { return st.Sources[i].Name < st.Sources[j].Name })
	for _, m := range cfg.Machines {
		st.Machines = append(st.Machines, MachineStatus{ID: m.ID, Workcenter: m.Workcenter, State: "unknown"})
	}
	return st
}

// configStatus compares the running configuration with its file.
func (a *Agent) configStatus(cfg *config.Config) *ConfigStatus {
	if cfg.Path == "" {
		return nil
	}
	a.configMu.Lock()
	defer a.configMu.Unlock()
	cs := &ConfigStatus{File: cfg.Path, ChangedSinceLoaded: fileDigest(cfg.Path) != a.loaded}
	if e := a.reloadErr; e != nil {
		cs.LastReloadError, cs.LastReloadErrorAgeSeconds = e.Err, age(e.Since)
	}
	cs.RestartNeededFor = a.pendingRestart
	return cs
}

// sortedAddrs are the keys of m in the order of source and address.
func sortedAddrs[V any](m map[sampleAddr]V) []sampleAddr {
	return slices.SortedFunc(maps.Keys(m), func(x, y sampleAddr) int {
		return cmp.Or(cmp.Compare(x.source, y.source), cmp.Compare(x.address, y.address), cmp.Compare(x.kind, y.kind))
	})
}

// sortedSignals is m's keys by machine, then signal.
func sortedSignals[V any](m map[mapping.SignalKey]V) []mapping.SignalKey {
	return slices.SortedFunc(maps.Keys(m), func(x, y mapping.SignalKey) int {
		return cmp.Or(cmp.Compare(x.Machine, y.Machine), cmp.Compare(x.Signal, y.Signal))
	})
}

// tidy rounds a sum of fractional counts (a Float counter's deltas) to
// 1e-6: 19.499999999999318 is shown as 19.5. Odoo gets its own rounding.
func tidy(v float64) float64 { return math.Round(v*1e6) / 1e6 }

// keyExpiryStatus is status's key_expires_at and key_expires_soon of the
// bot user's keys' dates.
func keyExpiryStatus(expires []time.Time, now time.Time) (*time.Time, bool) {
	at := soonestExpiry(expires, now)
	if at.IsZero() {
		return nil, false
	}
	at = at.UTC()
	return &at, expiresSoon(at, now)
}
