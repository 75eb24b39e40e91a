package agent

import (
	"cmp"
	"runtime"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/plantedge/plantedge/agent/config"
	"github.com/plantedge/plantedge/buffer"
	"github.com/plantedge/plantedge/connectors"
)

// metrics are the agent's Prometheus metrics, registered on the registry
// given in Options (no globals).
type metrics struct {
	// seeded are the machines and sources seed last made series for.
	seedMu                sync.Mutex
	seeded, seededSources map[string]bool
	samples               prometheus.Counter
	malformed             *prometheus.CounterVec
	appendErrors          prometheus.Counter
	ingestLatency         prometheus.Histogram
	forwarded             *prometheus.CounterVec
	deadLettered          prometheus.Counter
	odooCalls             *prometheus.CounterVec
	odooLatency           *prometheus.HistogramVec
	odooUp                prometheus.Gauge
	authFailed            prometheus.Gauge
	// Per machine (seed makes them for every machine configured).
	counterResets    *seriesCounter
	counterRollovers *seriesCounter
	counterSteps     *seriesCounter
	counterGlitches  *seriesCounter
	staleSamples     *seriesCounter
	unmappedReasons  *seriesCounter
	shortStops       *seriesCounter
	reloads          *prometheus.CounterVec
	corruptBuffers   prometheus.Counter
	clockSteps       prometheus.Counter
	// Sparkplug B: seq gaps (messages lost) and DATA aliases no BIRTH named.
	sparkplugSeqGaps, sparkplugUnknownAliases *prometheus.CounterVec
	// Sparkplug B rebirth requests published (sparkplug_rebirth).
	sparkplugRebirths *prometheus.CounterVec
	// Sparkplug B alias maps read from a broker's BIRTH certificates
	// (sparkplug_certificates).
	sparkplugCertificates *prometheus.CounterVec
	// Sparkplug B messages with historical values of read metrics.
	sparkplugHistorical *prometheus.CounterVec
}

func newMetrics(a *Agent) *metrics {
	m := &metrics{
		samples: prometheus.NewCounter(prometheus.CounterOpts{Name: "plantedge_samples_total",
			Help: "Samples received from sources and committed to the buffer."}),
		malformed: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "plantedge_malformed_samples_total",
			Help: "Samples that could not be mapped (bad payload, missing field); acknowledged and skipped."}, []string{"source"}),
		appendErrors: prometheus.NewCounter(prometheus.CounterOpts{Name: "plantedge_buffer_append_errors_total",
			Help: "Failed buffer commits (retried; samples stay unacknowledged meanwhile)."}),
		ingestLatency: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "plantedge_ingest_commit_seconds",
			Help: "Time from a batch's append to its durable commit.", Buckets: prometheus.ExponentialBuckets(0.001, 2, 12)}),
		forwarded: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "plantedge_forwarded_total",
			Help: "What reached Odoo: pieces (good_count, scrap_count) and downtime records."}, []string{"kind"}),
		deadLettered: prometheus.NewCounter(prometheus.CounterOpts{Name: "plantedge_dead_lettered_total",
			Help: "Moves to dead letters: records Odoo refused for good (a refused backlog of counts is one), undecodable records, records of a machine gone from the configuration."}),
		odooCalls: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "plantedge_odoo_calls_total",
			Help: "Odoo calls by operation and outcome (ok, transient, permanent, auth)."}, []string{"op", "outcome"}),
		odooLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "plantedge_odoo_call_duration_seconds",
			Help: "Odoo call latency: an operation's requests, from the first sent to the last answered, less the waits for forward.rate between them.", Buckets: prometheus.ExponentialBuckets(0.005, 2, 12)}, []string{"op"}),
		odooUp: prometheus.NewGauge(prometheus.GaugeOpts{Name: "plantedge_odoo_up",
			Help: "1 when the last forwarding round reached Odoo."}),
		authFailed: prometheus.NewGauge(prometheus.GaugeOpts{Name: "plantedge_odoo_auth_failed",
			Help: "1 while Odoo refuses the API key (wrong, revoked or expired): alert on it."}),
		counterResets: newSeriesCounter("plantedge_counter_resets_total",
			"Counter decreases treated as resets.", "machine", "signal"),
		counterRollovers: newSeriesCounter("plantedge_counter_rollovers_total",
			"Counter wraps handled as rollovers.", "machine", "signal"),
		counterSteps: newSeriesCounter("plantedge_counter_steps_back_total",
			"Counter values a little below the last one (out of order or corrected), ignored: not a reset.", "machine", "signal"),
		counterGlitches: newSeriesCounter("plantedge_counter_glitches_total",
			"Counter resets undone: the counter came back near its value before the reset faster than it counts.", "machine", "signal"),
		staleSamples: newSeriesCounter("plantedge_stale_samples_total",
			"Run-state and downtime-reason values stamped before the last one taken, ignored (out of order, or the source's clock went back).", "machine", "signal"),
		unmappedReasons: newSeriesCounter("plantedge_unmapped_downtime_reasons_total",
			"Downtime reasons without an entry in the map (default loss used).", "machine"),
		shortStops: newSeriesCounter("plantedge_short_stops_total",
			"Stops shorter than the machine's min_stop, not booked as downtime lines.", "machine"),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "plantedge_config_reloads_total",
			Help: "SIGHUP reloads by result."}, []string{"result"}),
		corruptBuffers: prometheus.NewCounter(prometheus.CounterOpts{Name: "plantedge_buffer_corrupt_recovered_total",
			Help: "Corrupt buffer files moved aside at start-up."}),
		clockSteps: prometheus.NewCounter(prometheus.CounterOpts{Name: "plantedge_clock_steps_total",
			Help: "Steps of this box's clock (its wall clock against its boot clock): NTP setting it, or someone by hand."}),
		sparkplugSeqGaps: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "plantedge_sparkplug_seq_gaps_total",
			Help: "Gaps in the seq of Sparkplug B edge nodes' messages: messages lost between the edge node and plantedge."}, []string{"source"}),
		sparkplugUnknownAliases: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "plantedge_sparkplug_unknown_aliases_total",
			Help: "Sparkplug B DATA metrics sent by an alias no BIRTH seen named: skipped."}, []string{"source"}),
		sparkplugRebirths: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "plantedge_sparkplug_rebirth_requests_total",
			Help: "Sparkplug B rebirth requests (NCMD Node Control/Rebirth) the agent published to edge nodes whose DATA by alias it could not read (the broker's sparkplug_rebirth); a broker ACL may drop one unseen."}, []string{"source"}),
		sparkplugCertificates: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "plantedge_sparkplug_certificates_total",
			Help: "Sparkplug B alias maps the agent took from a Sparkplug-aware broker's BIRTH certificates (the broker's sparkplug_certificates), of edge nodes and devices its signals read."}, []string{"source"}),
		sparkplugHistorical: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "plantedge_sparkplug_historical_messages_total",
			Help: "Sparkplug B messages carrying historical values (is_historical: an edge node's store and forward) of metrics the agent reads."}, []string{"source"}),
	}
	a.opts.Registry.MustRegister(m.samples, m.malformed, m.appendErrors, m.ingestLatency, m.forwarded, m.deadLettered,
		m.odooCalls, m.odooLatency, m.odooUp, m.authFailed, m.counterResets, m.counterRollovers, m.counterSteps, m.counterGlitches, m.staleSamples, m.unmappedReasons, m.shortStops, m.reloads,
		m.corruptBuffers, m.clockSteps, m.sparkplugSeqGaps, m.sparkplugUnknownAliases, m.sparkplugRebirths, m.sparkplugCertificates, m.sparkplugHistorical, &stateCollector{a: a})
	return m
}

// seed creates the per-machine and per-source series of cfg at 0, so that
// an alert on them sees 0 rather than no data before the first event, and
// deletes those of machines and sources gone from cfg (a reload): the year
// probe counted 13 series left per name a machine once had, 166 for 13
// renames, until a restart. (A machine put back counts from 0 again, which
// rate() takes for a counter reset.)
func (m *metrics) seed(cfg *config.Config) {
	m.reloads.WithLabelValues("ok")
	m.reloads.WithLabelValues("rejected")
	machines, sources := map[string]bool{}, map[string]bool{}
	for _, mc := range cfg.Machines {
		machines[mc.ID] = true
	}
	for _, s := range cfg.OPCUA {
		sources[s.Name] = true
	}
	for _, b := range cfg.MQTT {
		sources[b.Name] = true
	}
	m.seedMu.Lock()
	for id := range m.seeded {
		if !machines[id] {
			for _, v := range []*seriesCounter{m.counterResets, m.counterRollovers, m.counterSteps, m.counterGlitches, m.staleSamples, m.unmappedReasons, m.shortStops} {
				v.deleteFirst(id)
			}
		}
	}
	for name := range m.seededSources {
		if !sources[name] {
			m.malformed.DeleteLabelValues(name)
			m.sparkplugSeqGaps.DeleteLabelValues(name)
			m.sparkplugUnknownAliases.DeleteLabelValues(name)
			m.sparkplugRebirths.DeleteLabelValues(name)
			m.sparkplugCertificates.DeleteLabelValues(name)
			m.sparkplugHistorical.DeleteLabelValues(name)
		}
	}
	m.seeded, m.seededSources = machines, sources
	m.seedMu.Unlock()
	for _, s := range cfg.OPCUA {
		m.malformed.WithLabelValues(s.Name)
	}
	for _, b := range cfg.MQTT {
		m.malformed.WithLabelValues(b.Name)
		m.sparkplugSeqGaps.WithLabelValues(b.Name)
		m.sparkplugUnknownAliases.WithLabelValues(b.Name)
		m.sparkplugRebirths.WithLabelValues(b.Name)
		m.sparkplugCertificates.WithLabelValues(b.Name)
		m.sparkplugHistorical.WithLabelValues(b.Name)
	}
	for i := range cfg.Machines {
		mc := &cfg.Machines[i]
		for sig, on := range map[string]bool{"good_count": mc.GoodCount != nil, "scrap_count": mc.ScrapCount != nil} {
			if !on {
				continue
			}
			for _, v := range []*seriesCounter{m.counterResets, m.counterRollovers, m.counterSteps, m.counterGlitches} {
				v.seed(mc.ID, sig)
			}
		}
		if mc.Running != nil {
			m.unmappedReasons.seed(mc.ID)
			m.shortStops.seed(mc.ID)
			m.staleSamples.seed(mc.ID, "running")
		}
		if mc.DowntimeReason != nil {
			m.staleSamples.seed(mc.ID, "downtime_reason")
		}
	}
}

// stateCollector exports the buffer's and the sources' state at scrape time.
type stateCollector struct{ a *Agent }

var (
	descRecords  = prometheus.NewDesc("plantedge_buffer_records", "Records waiting in the buffer.", []string{"lane"}, nil)
	descBytes    = prometheus.NewDesc("plantedge_buffer_bytes", "Bytes of records waiting in the buffer.", []string{"lane"}, nil)
	descOldest   = prometheus.NewDesc("plantedge_buffer_oldest_age_seconds", "Age of the oldest unforwarded record.", []string{"lane"}, nil)
	descOldestFw = prometheus.NewDesc("plantedge_buffer_oldest_forwardable_age_seconds",
		"Age of the oldest record that can go to Odoo now: not held for a work order in progress, a work center Odoo lacks, or a machine gone from the config (0: none). Alert on this one for a buffer that does not drain.", nil, nil)
	descOdooCall = prometheus.NewDesc("plantedge_odoo_request_seconds_average",
		"How long Odoo takes to answer a request, as a moving average (the wait for forward.rate left out; 0: no answer yet). From 2 s on, status says Odoo is slow.", nil, nil)
	descKeyExp = prometheus.NewDesc("plantedge_odoo_key_expiry_timestamp_seconds",
		"When the soonest of the bot user's API keys to expire does, as a unix time (Odoo 18+; absent on 17, whose keys do not expire, and before the agent read the dates). Odoo does not say which key the agent uses: alert 14 days ahead.", nil, nil)
	descCertExp = prometheus.NewDesc("plantedge_certificate_expiry_timestamp_seconds",
		"When a certificate the agent uses expires, as a unix time: use opcua_client, mqtt_client, mqtt_ca or odoo_ca for the files the configuration names (a bundle's soonest), opcua_server, mqtt_server or odoo_server for the chain the peer presented at the last connection (its soonest). Alert 30 days ahead.", []string{"use", "source"}, nil)
	descDropped  = prometheus.NewDesc("plantedge_buffer_dropped_total", "Records dropped to keep the disk quota.", []string{"lane"}, nil)
	descMerged   = prometheus.NewDesc("plantedge_buffer_merged_total", "Count records merged to keep the disk quota.", nil, nil)
	descDead     = prometheus.NewDesc("plantedge_buffer_dead_letters", "Records in the dead-letter bucket.", nil, nil)
	descDeadDrop = prometheus.NewDesc("plantedge_buffer_dead_letters_dropped_total", "Dead letters dropped by an operator (plantedge deadletter drop).", nil, nil)
	descFile     = prometheus.NewDesc("plantedge_buffer_file_bytes", "Size of the buffer file.", nil, nil)
	descStalled  = prometheus.NewDesc("plantedge_buffer_write_stalled_seconds", "How long the buffer write in progress has run, from 30 s on (a frozen or failing disk, a hung network file system: no value is taken meanwhile); 0 otherwise.", nil, nil)
	descPartial  = prometheus.NewDesc("plantedge_buffer_pending_partial", "1 while the machines' pending counts are short: the buffer file could not be read to its end (status: PENDING COUNTS SHORT).", nil, nil)
	descReading  = prometheus.NewDesc("plantedge_buffer_pending_counts_reading",
		"Records the agent reads in the background for the machines' pending counts, which are not known until it is done (a backlog too big to read during a scrape, with no earlier result: after a start); 0 when they are known. Meanwhile oldest_forwardable_age_seconds is the oldest pending record's age, held or not (status: pending counts being read).", nil, nil)
	descDiskFull = prometheus.NewDesc("plantedge_buffer_disk_full", "1 while a full disk holds the buffer to the size of its file (as if max_bytes were reached), or has its reserve file given up for acknowledgements (appends do not grow the file).", nil, nil)
	descShrinks  = prometheus.NewDesc("plantedge_buffer_shrinks_total", "Times the buffer file was replaced by a compact copy after a backlog drained.", nil, nil)
	descInfo     = prometheus.NewDesc("plantedge_info", "Always 1: the agent's site (as in Odoo's external ids), version and Go version.", []string{"site", "version", "go_version"}, nil)
	descSource   = prometheus.NewDesc("plantedge_source_connected", "1 when the source is connected.", []string{"source", "kind"}, nil)
	descSessions = prometheus.NewDesc("plantedge_source_sessions_created_total", "Sessions (OPC UA) or connections (MQTT) created.", []string{"source", "kind"}, nil)
	descNextTry  = prometheus.NewDesc("plantedge_source_next_attempt_seconds", "How long until a source that is not connected tries to connect again (status's next_attempt_seconds); 0 when connected or when its attempt is due.", []string{"source", "kind"}, nil)
	descPolled   = prometheus.NewDesc("plantedge_source_polled_nodes", "OPC UA nodes read by polling (mode: poll, or the server cannot monitor them).", []string{"source"}, nil)
	descRefused  = prometheus.NewDesc("plantedge_source_refused_nodes", "OPC UA nodes the server will not serve (unknown node, no access); tried again.", []string{"source"}, nil)
	descOverflow = prometheus.NewDesc("plantedge_source_queue_overflows_total", "OPC UA values that followed values the server discarded (a monitored item's queue, queue_size, was full).", []string{"source"}, nil)
	descLeftShut = prometheus.NewDesc("plantedge_source_left_sessions_closed_total", "OPC UA sessions left on the server, by a lost connection or by a run that was killed or crashed, that the agent closed from its next connection (each held one of the PLC's session slots).", []string{"source"}, nil)
	descLoginChk = prometheus.NewDesc("plantedge_source_login_checks_total", "OPC UA sessions made only to check the user login (at the first connection and after a refusal), closed at once.", []string{"source"}, nil)
	descHBeat    = prometheus.NewDesc("plantedge_source_heartbeat_rebuilds_total", "OPC UA sessions torn down and made again because the server's heartbeat (its current time, monitored) stopped coming.", []string{"source"}, nil)
	descCatchUp  = prometheus.NewDesc("plantedge_source_catchup_reads_total", "Reads of an OPC UA source's monitored nodes after its subscription was silent as long as a Publish answer is waited for: an answer that comes later is dropped by the client, with the data changes it carried.", []string{"source"}, nil)
	descRecov    = prometheus.NewDesc("plantedge_source_recovered_changes_total", "Data changes of an OPC UA source's nodes that a lost connection hid, or that came while a killed run was down, taken at the next connection from the subscription of the session left on the server and delivered before the new session's first values.", []string{"source"}, nil)
	descHeld     = prometheus.NewDesc("plantedge_machine_unattributed_pieces", "Good pieces held because no work order is in progress on the machine's work center.", []string{"machine"}, nil)
	descClockOff = prometheus.NewDesc("plantedge_machine_source_clock_offset_seconds",
		"How far the clock of the machine's MQTT publisher is ahead of this box's (behind: negative), by the times its values carry, latency included; only for machines measured (timestamp_field set, a minute of values). From 2 minutes off, status says so.", []string{"machine"}, nil)
)

func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descInfo, descRecords, descBytes, descOldest, descOldestFw, descOdooCall, descKeyExp, descCertExp, descDropped, descMerged, descDead, descDeadDrop, descFile, descDiskFull, descStalled, descPartial, descReading, descShrinks, descSource, descSessions, descNextTry, descPolled, descRefused, descOverflow, descLeftShut, descLoginChk, descHBeat, descCatchUp, descRecov, descHeld, descClockOff} {
		ch <- d
	}
}

func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.MustNewConstMetric(descInfo, prometheus.GaugeValue, 1, c.a.cfg.Load().Site, cmp.Or(c.a.opts.Version, "dev"), runtime.Version())
	if c.a.opened.Load() {
		st := c.a.buf.Stats()
		for l := buffer.Lane(0); l < buffer.NumLanes; l++ {
			ls := st.Lanes[l]
			ch <- prometheus.MustNewConstMetric(descRecords, prometheus.GaugeValue, float64(ls.Pending), l.String())
			ch <- prometheus.MustNewConstMetric(descBytes, prometheus.GaugeValue, float64(ls.Bytes), l.String())
			ch <- prometheus.MustNewConstMetric(descOldest, prometheus.GaugeValue, age(ls.Oldest), l.String())
			ch <- prometheus.MustNewConstMetric(descDropped, prometheus.CounterValue, float64(ls.Dropped), l.String())
		}
		ch <- prometheus.MustNewConstMetric(descDeadDrop, prometheus.CounterValue, float64(st.DeadDropped))
		ch <- prometheus.MustNewConstMetric(descMerged, prometheus.CounterValue, float64(st.Merged))
		ch <- prometheus.MustNewConstMetric(descDead, prometheus.GaugeValue, float64(st.DeadLetters))
		ch <- prometheus.MustNewConstMetric(descFile, prometheus.GaugeValue, float64(st.FileBytes))
		ch <- prometheus.MustNewConstMetric(descShrinks, prometheus.CounterValue, float64(st.Shrinks))
		ch <- prometheus.MustNewConstMetric(descDiskFull, prometheus.GaugeValue, boolGauge(!st.DiskFullSince.IsZero() || !st.ReserveLentSince.IsZero()))
		ch <- prometheus.MustNewConstMetric(descStalled, prometheus.GaugeValue, c.a.writeStalled().Seconds())
	}
	if c.a.opened.Load() { // fwd is set before opened
		links := c.a.fwd.machineSnapshot()
		for _, mc := range c.a.cfg.Load().Machines { // not of machines gone from it
			if ml, ok := links[mc.ID]; ok {
				ch <- prometheus.MustNewConstMetric(descHeld, prometheus.GaugeValue, ml.Unattributed, mc.ID)
			}
			if clock := c.a.srcOff.clock(mc.ID); clock.offOK {
				ch <- prometheus.MustNewConstMetric(descClockOff, prometheus.GaugeValue, clock.off.Seconds(), mc.ID)
			}
		}
		pending, _, reading, scanErr := c.a.pendingCounts() // a scan, kept a second (a big one in the background)
		ch <- prometheus.MustNewConstMetric(descPartial, prometheus.GaugeValue, boolGauge(scanErr != nil))
		ch <- prometheus.MustNewConstMetric(descReading, prometheus.GaugeValue, float64(reading))
		_, at := c.a.oldestForwardableNow(c.a.cfg.Load(), links, pending, reading)
		ch <- prometheus.MustNewConstMetric(descOldestFw, prometheus.GaugeValue, age(at))
		l := c.a.fwd.linkSnapshot()
		ch <- prometheus.MustNewConstMetric(descOdooCall, prometheus.GaugeValue, l.CallSeconds)
		if at := soonestExpiry(l.KeyExpires, time.Now()); !at.IsZero() {
			ch <- prometheus.MustNewConstMetric(descKeyExp, prometheus.GaugeValue, float64(at.Unix()))
		}
	}
	seen := map[[2]string]bool{}
	for _, cs := range c.a.certificates(time.Now()) {
		// One series for a use and source: two files of one use cannot be,
		// a peer's only one.
		if k := [2]string{cs.Use, cs.Source}; !seen[k] {
			seen[k] = true
			ch <- prometheus.MustNewConstMetric(descCertExp, prometheus.GaugeValue, float64(cs.NotAfter.Unix()), cs.Use, cs.Source)
		}
	}
	for _, s := range c.a.sourceList() {
		state := s.state()
		ch <- prometheus.MustNewConstMetric(descSource, prometheus.GaugeValue, boolGauge(state == connectors.StateConnected), s.name, string(s.kind))
		ch <- prometheus.MustNewConstMetric(descSessions, prometheus.CounterValue, float64(s.sessions()), s.name, string(s.kind))
		ch <- prometheus.MustNewConstMetric(descNextTry, prometheus.GaugeValue, s.nextAttemptSeconds(state), s.name, string(s.kind))
		if s.refused != nil {
			ch <- prometheus.MustNewConstMetric(descRefused, prometheus.GaugeValue, float64(len(s.refused())), s.name)
		}
		if s.opcStats != nil {
			st := s.opcStats()
			ch <- prometheus.MustNewConstMetric(descPolled, prometheus.GaugeValue, float64(st.Polled), s.name)
			ch <- prometheus.MustNewConstMetric(descOverflow, prometheus.CounterValue, float64(st.Overflows), s.name)
			ch <- prometheus.MustNewConstMetric(descLeftShut, prometheus.CounterValue, float64(st.LeftSessionsClosed), s.name)
			ch <- prometheus.MustNewConstMetric(descLoginChk, prometheus.CounterValue, float64(st.LoginChecks), s.name)
			ch <- prometheus.MustNewConstMetric(descHBeat, prometheus.CounterValue, float64(st.HeartbeatRebuilds), s.name)
			ch <- prometheus.MustNewConstMetric(descCatchUp, prometheus.CounterValue, float64(st.CatchUpReads), s.name)
			ch <- prometheus.MustNewConstMetric(descRecov, prometheus.CounterValue, float64(st.RecoveredChanges), s.name)
		}
	}
}

func age(t time.Time) float64 {
	if t.IsZero() {
		return 0
	}
	return max(0, time.Since(t).Seconds())
}
