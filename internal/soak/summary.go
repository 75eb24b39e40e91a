//go:build linux

package main

// The summary of a samples.csv: a condensed table (the first sample, one
// about every 5 minutes, the last), then per agent run (incarnation; the
// soak SIGKILLs and restarts the agent twice) how RSS, FDs, goroutines and
// the rest moved once warmed up: a leak shows as a slope per hour or per
// server restart that does not fade with longer runs.

import (
	"encoding/csv"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

func summarizeCmd(args []string) int {
	fs := flag.NewFlagSet("summarize", flag.ContinueOnError)
	every := fs.Duration("every", 5*time.Minute, "condensed table: about one row per this")
	warmup := fs.Duration("warmup", 2*time.Minute, "per agent run: skip this much after its first sample")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: soak summarize [flags] samples.csv|OUTDIR")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return 2
	}
	path := fs.Arg(0)
	if fi, err := os.Stat(path); err == nil && fi.IsDir() {
		path = filepath.Join(path, "samples.csv")
	}
	sum, err := summarizeFile(path, *every, *warmup)
	if err != nil {
		fmt.Fprintln(os.Stderr, "soak summarize:", err)
		return 1
	}
	fmt.Print(sum)
	return 0
}

func summarizeFile(path string, every, warmup time.Duration) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	var b strings.Builder
	if err := summarize(f, &b, every, warmup); err != nil {
		return "", fmt.Errorf("%s: %w", path, err)
	}
	return b.String(), nil
}

// samples is a parsed samples.csv.
type samples struct {
	col  map[string]int
	rows [][]string
}

// str is a cell as written, "-" when empty or the column is missing.
func (t *samples) str(r []string, name string) string {
	if i, ok := t.col[name]; ok && r[i] != "" {
		return r[i]
	}
	return "-"
}

// num is a cell's value; false when empty, missing or not a number.
func (t *samples) num(r []string, name string) (float64, bool) {
	i, ok := t.col[name]
	if !ok {
		return 0, false
	}
	v, err := strconv.ParseFloat(r[i], 64)
	return v, err == nil
}

func readSamples(r io.Reader) (*samples, error) {
	cr := csv.NewReader(r)
	cr.FieldsPerRecord = -1
	head, err := cr.Read()
	if err != nil {
		return nil, fmt.Errorf("header: %w", err)
	}
	t := &samples{col: map[string]int{}}
	for i, h := range head {
		t.col[h] = i
	}
	for _, need := range []string{"t_s", "incarnation"} {
		if _, ok := t.col[need]; !ok {
			return nil, fmt.Errorf("no %s column: not a soak samples.csv", need)
		}
	}
	for {
		rec, err := cr.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
		if len(rec) != len(head) {
			continue // a row cut short by a killed run
		}
		if _, ok := t.num(rec, "t_s"); ok {
			t.rows = append(t.rows, rec)
		}
	}
	return t, nil
}

// condensedCols are the condensed table's columns (memory in kB, heap in
// bytes).
var condensedCols = []string{"t_s", "incarnation", "vmrss_kb", "rssanon_kb", "vmhwm_kb", "fds", "threads", "goroutines",
	"heap_inuse", "buffer_file", "pending", "ua_restarts", "broker_restarts", "odoo_outages", "hups", "odoo_down"}

// trendCols are the values followed per agent run.
var trendCols = []string{"vmrss_kb", "rssanon_kb", "vmhwm_kb", "fds", "threads", "goroutines", "heap_inuse", "buffer_file"}

// summarize writes the summary of the samples.csv read from r.
func summarize(r io.Reader, w io.Writer, every, warmup time.Duration) error {
	t, err := readSamples(r)
	if err != nil {
		return err
	}
	if len(t.rows) == 0 {
		_, err := fmt.Fprintln(w, "no samples")
		return err
	}
	fmt.Fprintf(w, "samples (first, about every %v, last):\n", every)
	tw := tabwriter.NewWriter(w, 0, 0, 1, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, strings.Join(condensedCols, "\t")+"\t")
	last := math.Inf(-1)
	for i, r := range t.rows {
		ts, _ := t.num(r, "t_s")
		if i == 0 || i == len(t.rows)-1 || ts-last >= every.Seconds()-5 {
			cells := make([]string, len(condensedCols))
			for j, c := range condensedCols {
				cells[j] = t.str(r, c)
			}
			fmt.Fprintln(tw, strings.Join(cells, "\t")+"\t")
			last = ts
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}

	// Agent runs in order of appearance; samples while the agent was down
	// (vmrss_kb -1) do not count.
	var order []string
	byRun := map[string][][]string{}
	for _, r := range t.rows {
		if v, ok := t.num(r, "vmrss_kb"); !ok || v <= 0 {
			continue
		}
		inc := t.str(r, "incarnation")
		if _, seen := byRun[inc]; !seen {
			order = append(order, inc)
		}
		byRun[inc] = append(byRun[inc], r)
	}
	for _, inc := range order {
		rs := byRun[inc]
		t0, _ := t.num(rs[0], "t_s")
		var xs, cyc []float64
		var kept [][]string
		for _, r := range rs {
			ts, _ := t.num(r, "t_s")
			ua, ok1 := t.num(r, "ua_restarts")
			br, ok2 := t.num(r, "broker_restarts")
			if ts-t0 >= warmup.Seconds() && ok1 && ok2 {
				kept = append(kept, r)
				xs = append(xs, ts)
				cyc = append(cyc, ua+br)
			}
		}
		fmt.Fprintln(w)
		if len(kept) < 5 {
			fmt.Fprintf(w, "agent run %s: %d samples after the %v warm-up, too few for trends\n", inc, len(kept), warmup)
			continue
		}
		fmt.Fprintf(w, "agent run %s (pid %s): %d samples after the %v warm-up, t=%.0f..%.0f s, server restarts %.0f..%.0f\n",
			inc, t.str(kept[0], "pid"), len(kept), warmup, xs[0], xs[len(xs)-1], cyc[0], cyc[len(cyc)-1])
		tw := tabwriter.NewWriter(w, 0, 0, 1, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "\tfirst\tlast\tmin\tmax\tslope/h\tslope/restart\tmean 1st third\tmean last third\t")
		for _, c := range trendCols {
			var ts, rs, vs []float64
			for i, r := range kept {
				if v, ok := t.num(r, c); ok && v >= 0 {
					ts, rs, vs = append(ts, xs[i]), append(rs, cyc[i]), append(vs, v)
				}
			}
			n := len(vs)
			if n < 5 {
				continue
			}
			lo, hi := vs[0], vs[0]
			for _, v := range vs {
				lo, hi = math.Min(lo, v), math.Max(hi, v)
			}
			fmt.Fprintf(tw, "%s\t%.0f\t%.0f\t%.0f\t%.0f\t%s\t%s\t%.0f\t%.0f\t\n", c, vs[0], vs[n-1], lo, hi,
				fmtNum(slope(ts, vs)*3600, 1), fmtNum(slope(rs, vs), 2), mean(vs[:n/3]), mean(vs[n-n/3:]))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	return nil
}

// slope is the least-squares slope of ys over xs; NaN when xs do not vary.
func slope(xs, ys []float64) float64 {
	mx, my := mean(xs), mean(ys)
	var sxy, sxx float64
	for i := range xs {
		sxy += (xs[i] - mx) * (ys[i] - my)
		sxx += (xs[i] - mx) * (xs[i] - mx)
	}
	if sxx == 0 {
		return math.NaN()
	}
	return sxy / sxx
}

func mean(v []float64) float64 {
	var s float64
	for _, x := range v {
		s += x
	}
	return s / float64(len(v))
}

func fmtNum(v float64, prec int) string {
	if math.IsNaN(v) {
		return "-"
	}
	return strconv.FormatFloat(v, 'f', prec, 64)
}
