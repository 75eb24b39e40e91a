package odoo_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/plantedge/plantedge/odoo"
	"github.com/plantedge/plantedge/odoo/odootest"
)

// BenchmarkSetProducedQty measures one absolute quantity write round trip
// against the in-process emulator (client + HTTP + emulator cost).
func BenchmarkSetProducedQty(b *testing.B) {
	for _, m := range []mode{{17, "jsonrpc", "jsonrpc"}, {19, "json2", "json2"}} {
		b.Run(m.String(), func(b *testing.B) {
			s := odootest.New(odootest.Options{Version: m.version})
			url := s.Start()
			defer s.Close()
			wo := s.AddWorkorder(s.AddProduction("MO", s.AddProduct("P"), 1e6), s.AddWorkcenter("M1", "Press"), "Op", "progress")
			c, err := odoo.New(odoo.Config{URL: url, Database: "odoo", Username: "admin", APIKey: s.AdminKey(), Protocol: m.protocol})
			if err != nil {
				b.Fatal(err)
			}
			ctx := context.Background()
			if err := c.Connect(ctx); err != nil {
				b.Fatal(err)
			}
			start := time.Now()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if err := c.SetProducedQty(ctx, wo, float64(i+1)); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "writes/s")
		})
	}
}

// BenchmarkUpsertDowntimes measures batched load() of 100 downtime lines.
func BenchmarkUpsertDowntimes(b *testing.B) {
	s := odootest.New(odootest.Options{Version: 19})
	url := s.Start()
	defer s.Close()
	wc := s.AddWorkcenter("M1", "Press")
	c, err := odoo.New(odoo.Config{URL: url, APIKey: s.AdminKey(), Protocol: "json2"})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	loss, err := c.LossID(ctx, "mrp.block_reason1")
	if err != nil {
		b.Fatal(err)
	}
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	batch := make([]odoo.Downtime, 100)
	for i := range batch {
		batch[i] = odoo.Downtime{XMLID: fmt.Sprintf("plantedge.bench_%d", i), WorkcenterID: wc, LossID: loss,
			Start: t0.Add(time.Duration(i) * time.Hour), End: t0.Add(time.Duration(i)*time.Hour + time.Minute)}
	}
	start := time.Now()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := c.UpsertDowntimes(ctx, batch); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*len(batch))/time.Since(start).Seconds(), "rows/s")
}
