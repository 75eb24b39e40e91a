package agent

import (
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// A seriesCounter shows on /metrics as the prometheus.CounterVec it
// replaces: the same series, values, help and type after the same seeds,
// increments and deletions, and each series with a created time.
func TestSeriesCounterExportsAsCounterVec(t *testing.T) {
	for _, labels := range [][]string{{"machine", "signal"}, {"machine"}} {
		vec := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "plantedge_x_total", Help: "X."}, labels)
		sc := newSeriesCounter("plantedge_x_total", "X.", labels...)
		lvs := func(m, s string) []string { return []string{m, s}[:len(labels)] }
		for _, m := range []string{"press-2", "press-1", "gone", "a\"b\\c"} {
			vec.WithLabelValues(lvs(m, "good_count")...)
			sc.seed(lvs(m, "good_count")...)
		}
		for range 3 {
			vec.WithLabelValues(lvs("press-1", "good_count")...).Inc()
			sc.Inc(lvs("press-1", "good_count")...)
		}
		vec.WithLabelValues(lvs("gone", "scrap_count")...).Inc()
		sc.Inc(lvs("gone", "scrap_count")...)
		vec.WithLabelValues(lvs("press-2", "scrap_count")...).Inc()
		sc.Inc(lvs("press-2", "scrap_count")...)
		sc.seed(lvs("press-2", "scrap_count")...) // a seed keeps the count
		vec.DeletePartialMatch(prometheus.Labels{"machine": "gone"})
		sc.deleteFirst("gone")

		text := func(c prometheus.Collector) string {
			t.Helper()
			reg := prometheus.NewRegistry()
			reg.MustRegister(c)
			mfs, err := reg.Gather()
			if err != nil {
				t.Fatal(err)
			}
			for _, mf := range mfs {
				for _, m := range mf.GetMetric() {
					if m.GetCounter().GetCreatedTimestamp() == nil {
						t.Errorf("%v: no created time", m.GetLabel())
					}
				}
			}
			rec := httptest.NewRecorder()
			promhttp.HandlerFor(reg, promhttp.HandlerOpts{}).ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
			return rec.Body.String()
		}
		want, got := text(vec), text(sc)
		if got != want {
			t.Errorf("labels %v: exported\n%s\nwant (CounterVec)\n%s", labels, got, want)
		}
		if !strings.Contains(got, `plantedge_x_total{machine="press-1"`) {
			t.Errorf("labels %v: press-1's series missing:\n%s", labels, got)
		}
	}
}
