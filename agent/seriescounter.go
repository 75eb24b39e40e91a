package agent

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// seriesCounter is a counter family by one or two labels (machine, or
// machine and signal) that keeps each series as a number and exports it at
// scrape time, as a prometheus.CounterVec would (same name, help, type,
// labels and created time). A CounterVec keeps an object per series with
// its label pairs, hash and created time, about 500 bytes; seed makes
// four to six series a machine, and with 1,000 machines (the many-PLCs
// benchmark, 4,000 series) they were 2.1 MB of a heap of 15 MB. Here a
// series is a map entry of its label values, value and created time.
type seriesCounter struct {
	desc   *prometheus.Desc
	labels int
	mu     sync.Mutex
	vals   map[seriesKey]seriesValue
}

// seriesKey holds a series' label values (the second unused in a family
// of one label).
type seriesKey [2]string

type seriesValue struct {
	v       float64
	created time.Time
}

func newSeriesCounter(name, help string, labels ...string) *seriesCounter {
	if len(labels) < 1 || len(labels) > 2 {
		panic("seriesCounter: one or two labels")
	}
	return &seriesCounter{desc: prometheus.NewDesc(name, help, labels, nil), labels: len(labels), vals: map[seriesKey]seriesValue{}}
}

// add adds d to the series of lvs (the family's label values), made at 0
// if missing.
func (c *seriesCounter) add(d float64, lvs []string) {
	if len(lvs) != c.labels {
		panic("seriesCounter: wrong number of label values")
	}
	var k seriesKey
	copy(k[:], lvs)
	c.mu.Lock()
	defer c.mu.Unlock()
	s, ok := c.vals[k]
	if !ok {
		s.created = time.Now()
	}
	s.v += d
	c.vals[k] = s
}

// seed makes the series of lvs at 0 unless it exists.
func (c *seriesCounter) seed(lvs ...string) { c.add(0, lvs) }

// Inc adds 1 to the series of lvs.
func (c *seriesCounter) Inc(lvs ...string) { c.add(1, lvs) }

// deleteFirst deletes the series whose first label value is v (a machine
// gone from the configuration).
func (c *seriesCounter) deleteFirst(v string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k := range c.vals {
		if k[0] == v {
			delete(c.vals, k)
		}
	}
}

func (c *seriesCounter) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *seriesCounter) Collect(ch chan<- prometheus.Metric) {
	type series struct {
		k seriesKey
		seriesValue
	}
	c.mu.Lock()
	all := make([]series, 0, len(c.vals))
	for k, s := range c.vals {
		all = append(all, series{k, s})
	}
	c.mu.Unlock()
	for _, s := range all {
		lvs := s.k[:c.labels]
		ch <- prometheus.MustNewConstMetricWithCreatedTimestamp(c.desc, prometheus.CounterValue, s.v, s.created, lvs...)
	}
}
