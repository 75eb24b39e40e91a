package odootest_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/plantedge/plantedge/odoo"
	"github.com/plantedge/plantedge/odoo/odootest"
)

// FuzzHandler feeds arbitrary request bodies to both transports: the
// emulator must answer (never wedge its lock or crash) and keep serving.
func FuzzHandler(f *testing.F) {
	const key = "0123456789abcdef0123456789abcdef01234567" // replaced by the real admin key
	f.Add("/jsonrpc", `{"jsonrpc":"2.0","method":"call","id":1,"params":{"service":"object","method":"execute_kw","args":["odoo",2,"`+key+`","mrp.workorder","search_read",[["|",["workcenter_id.code","=","M1"],"!",["state","in",[1,null]]]],{"order":"date_start desc, id"}]}}`)
	f.Add("/jsonrpc", `{"params":{"service":"common","method":"authenticate","args":["odoo","admin",null,{}]}}`)
	f.Add("/jsonrpc", `{"params":{"service":"object","method":"execute_kw","args":["odoo",2,"`+key+`","mrp.workcenter.productivity","load",[["id","loss_id/id","workcenter_id/.id"],[["x","mrp.block_reason1","1"],[1,2]]]]}}`)
	f.Add("/jsonrpc", `{"params":{"service":"object","method":"execute_kw","args":["odoo",2,"`+key+`","mrp.workorder","write",[[1],{"qty_producing":3.5,"date_start":"2026-01-01"}]]}}`)
	f.Add("/json/2/mrp.workorder/write", `{"ids":[1],"vals":{"qty_produced":"a","state":7}}`)
	f.Add("/json/2/mrp.workorder/search", `{"domain":[["&"]],"limit":-1}`)
	f.Add("/json/2/stock.scrap/create", `{"vals_list":[{"product_id":[1,"x"],"scrap_qty":0}]}`)
	f.Add("/json/2/mrp.workorder/button_start", `{"ids":[1,1,2]}`)
	f.Add("/json/2/mrp.workcenter/unblock", `{"ids":1}`)
	f.Fuzz(func(t *testing.T, path, body string) {
		if !strings.HasPrefix(path, "/jsonrpc") && !strings.HasPrefix(path, "/json/2/") {
			return
		}
		s := odootest.New(odootest.Options{Version: 19})
		wc := s.AddWorkcenter("M1", "Press")
		s.AddWorkorder(s.AddProduction("MO", s.AddProduct("P"), 5), wc, "Op", "progress")
		body = strings.ReplaceAll(body, key, s.AdminKey())
		req, err := http.NewRequest(http.MethodPost, "http://odoo"+path, strings.NewReader(body))
		if err != nil {
			return // not a path an HTTP client can send
		}
		req.RemoteAddr = "192.0.2.1:1234"
		req.Header.Set("Authorization", "bearer "+s.AdminKey())
		req.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		s.Handler().ServeHTTP(rec, req)
		if rec.Code == 0 {
			t.Fatalf("no answer for %s %q", path, body)
		}
		for _, c := range s.Calls() {
			if c.Outcome == "builtins.RuntimeError" {
				t.Fatalf("emulator panicked on %s %q: %s", path, body, rec.Body)
			}
		}
	})
}

func TestListenAndServeStandalone(t *testing.T) {
	s := odootest.New(odootest.Options{Version: 18})
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- s.ListenAndServe(ctx, "127.0.0.1:0") }()
	deadline := time.Now().Add(5 * time.Second)
	for s.URL() == "" && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	c, err := odoo.New(odoo.Config{URL: s.URL(), Database: "odoo", Username: "admin", APIKey: s.AdminKey()})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Connect(context.Background()); err != nil || c.ServerVersion() != "18.0" {
		t.Fatalf("Connect: %v (%q)", err, c.ServerVersion())
	}
	cancel()
	select {
	case err := <-errc:
		if err != nil {
			t.Errorf("ListenAndServe: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("ListenAndServe did not return after cancel")
	}
	if err := s.ListenAndServe(context.Background(), "256.0.0.1:1"); err == nil {
		t.Error("bad address: want error")
	}
}
