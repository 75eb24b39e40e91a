package odoo_test

import (
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/plantedge/plantedge/odoo"
)

// scenarioNamed is the answerScenarios entry of that name.
func scenarioNamed(t *testing.T, name string) scenario {
	t.Helper()
	for _, sc := range answerScenarios {
		if sc.name == name {
			return sc
		}
	}
	t.Fatalf("no scenario %q", name)
	return scenario{}
}

// Answers that are not Odoo's success answer to the call (FuzzConnectAnswer
// and FuzzCallAnswer found them counted as one): each is an error, and
// transient — something in front of Odoo answered, or nothing that can be
// read: nothing was refused, so nothing is dead-lettered, nor taken for a
// refused key, nor for "no work order in progress", nor for a quantity
// written or a downtime line booked.
func TestAnswersThatAreNotOdoosAreTransientErrors(t *testing.T) {
	ok := func(body string) answer {
		return answer{status: http.StatusOK, contentType: "application/json", body: []byte(body)}
	}
	cases := []struct {
		name, scenario string
		ans            answer
	}{
		// A JSON-RPC answer to another request: a proxy's cache, a gateway.
		{"jsonrpc-write-another-id", "write-17", ok(`{"jsonrpc":"2.0","id":99999,"result":true}`)},
		{"jsonrpc-authenticate-another-id", "authenticate", ok(`{"jsonrpc":"2.0","id":99999,"result":7}`)},
		{"jsonrpc-search_read-no-id", "search_read-17", ok(`{"jsonrpc":"2.0","result":[]}`)},
		// No result where the call returns one: was a refused login, "no
		// work order in progress", a version of "".
		{"jsonrpc-authenticate-no-result", "authenticate", ok(`{"jsonrpc":"2.0","id":@ID@}`)},
		{"jsonrpc-authenticate-null", "authenticate", ok(`{"jsonrpc":"2.0","id":@ID@,"result":null}`)},
		{"jsonrpc-authenticate-not-a-uid", "authenticate", ok(`{"jsonrpc":"2.0","id":@ID@,"result":"ok"}`)},
		{"jsonrpc-authenticate-request-echoed", "authenticate", ok(`@REQ@`)},
		{"jsonrpc-search_read-no-result", "search_read-17", ok(`{"jsonrpc":"2.0","id":@ID@}`)},
		{"jsonrpc-search_read-null", "search_read-17", ok(`{"jsonrpc":"2.0","id":@ID@,"result":null}`)},
		{"jsonrpc-version-without-server_version", "common.version", ok(`{"jsonrpc":"2.0","id":@ID@,"result":{}}`)},
		{"jsonrpc-version-no-result", "common.version", ok(`{"jsonrpc":"2.0","id":@ID@}`)},
		// An error that names no Odoo exception: was permanent.
		{"jsonrpc-error-without-name", "write-17", ok(`{"jsonrpc":"2.0","id":@ID@,"error":{"code":-32600,"message":"Invalid Request"}}`)},
		// A write answered other than true: was a quantity written.
		{"jsonrpc-write-null", "write-17", ok(`{"jsonrpc":"2.0","id":@ID@,"result":null}`)},
		{"jsonrpc-write-false", "write-17", ok(`{"jsonrpc":"2.0","id":@ID@,"result":false}`)},
		{"json2-write-proxy-json", "write-19", ok(`{"status":"ok"}`)},
		{"json2-write-null", "write-19", ok(`null`)},
		{"json2-write-request-echoed", "write-19", ok(`@REQ@`)},
		{"json2-search_read-null", "search_read-19", ok(`null`)},
		{"json2-context_get-without-uid", "context_get", ok(`{"lang":"en_US"}`)},
		// A load answered without Odoo's ids and messages: was permanent
		// ("got 0 ids for 1 rows"), or a line booked as id 0.
		{"json2-load-proxy-json", "load-19", ok(`{"status":"ok"}`)},
		{"json2-load-request-echoed", "load-19", ok(`@REQ@`)},
		{"json2-load-id-0", "load-19", ok(`{"ids":[0],"messages":[]}`)},
		{"jsonrpc-load-empty", "load-18", ok(`{"jsonrpc":"2.0","id":@ID@,"result":{}}`)},
		// The downtime line's close answered other than true: was a line
		// closed.
		{"jsonrpc-close-null", "close-17", ok(`{"jsonrpc":"2.0","id":@ID@,"result":null}`)},
		{"jsonrpc-close-no-result", "close-17", ok(`{"jsonrpc":"2.0","id":@ID@}`)},
		{"json2-close-proxy-json", "close-19", ok(`{"status":"ok"}`)},
		{"json2-close-false", "close-19", ok(`false`)},
		// action_validate answered neither true nor an action: null,
		// false, a list were a scrap done; a proxy's JSON object the
		// wizard (a draft left, or do_scrap on a scrap perhaps done).
		{"json2-validate-null", "validate-19", ok(`null`)},
		{"json2-validate-false", "validate-19", ok(`false`)},
		{"jsonrpc-validate-list", "validate-17", ok(`{"jsonrpc":"2.0","id":@ID@,"result":[]}`)},
		{"jsonrpc-validate-no-result", "validate-17", ok(`{"jsonrpc":"2.0","id":@ID@}`)},
		{"json2-validate-proxy-json", "validate-19", ok(`{"status":"ok"}`)},
		{"jsonrpc-validate-request-echoed", "validate-17", ok(`{"jsonrpc":"2.0","id":@ID@,"result":@REQ@}`)},
		// do_scrap answered other than true: was a scrap done.
		{"jsonrpc-doscrap-null", "doscrap-18", ok(`{"jsonrpc":"2.0","id":@ID@,"result":null}`)},
		{"json2-doscrap-proxy-json", "doscrap-19", ok(`{"status":"ok"}`)},
		// A search_read row that is not a record: was a loss reason or a
		// work center of id 0 (lines booked with it, refused for good).
		{"json2-loss-empty-object", "loss-19", ok(`[{}]`)},
		{"jsonrpc-loss-null-row", "loss-18", ok(`{"jsonrpc":"2.0","id":@ID@,"result":[null]}`)},
		{"json2-workcenter-proxy-json-row", "workcenter-19", ok(`[{"status":"ok"}]`)},
		{"jsonrpc-workcenter-id-0", "workcenter-17", ok(`{"jsonrpc":"2.0","id":@ID@,"result":[{"id":0,"code":"M1"}]}`)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			sc := scenarioNamed(t, tc.scenario)
			tr, got, err := callWith(t, sc, tc.ans)
			if tr.hits == 0 {
				t.Fatalf("the answer was not asked for")
			}
			var oe *odoo.Error
			if !errors.As(err, &oe) || oe.Class != odoo.Transient {
				t.Fatalf("%s answered %s: got %v, %v; want a transient error", sc.name, tr.body, got, err)
			}
		})
	}
}

// Odoo's own answers still read as they did: a refused login is Auth, a
// row refused by load is permanent, a write's true is a quantity written,
// and a UserError that echoes the key is permanent without the key.
func TestOdoosOwnAnswersKeepTheirMeaning(t *testing.T) {
	ok := func(body string) answer {
		return answer{status: http.StatusOK, contentType: "application/json", body: []byte(body)}
	}
	_, _, err := callWith(t, scenarioNamed(t, "authenticate"), ok(`{"jsonrpc":"2.0","id":@ID@,"result":false}`))
	if !odoo.IsAuth(err) {
		t.Errorf("authenticate false: %v; want an auth error", err)
	}
	_, _, err = callWith(t, scenarioNamed(t, "load-19"), ok(`{"ids":false,"messages":[{"type":"error","record":0,"field":"loss_id","message":"No matching record found for database id '2' in field 'Loss Reason'"}]}`))
	if !odoo.IsPermanent(err) {
		t.Errorf("load refused: %v; want a permanent error", err)
	}
	if _, _, err := callWith(t, scenarioNamed(t, "write-17"), ok(`{"jsonrpc":"2.0","id":@ID@,"result":true}`)); err != nil {
		t.Errorf("JSON-RPC write true: %v", err)
	}
	if _, _, err := callWith(t, scenarioNamed(t, "write-19"), ok(`true`)); err != nil {
		t.Errorf("JSON-2 write true: %v", err)
	}
	tr, _, err := callWith(t, scenarioNamed(t, "write-17"), ok(`{"jsonrpc":"2.0","id":@ID@,"error":{"code":200,"message":"Odoo Server Error","data":{"name":"odoo.exceptions.UserError","message":"echo @KEY@"}}}`))
	if !odoo.IsPermanent(err) || strings.Contains(err.Error(), tr.key) {
		t.Errorf("UserError: %v; want a permanent error", err)
	}
}

// The same for the downtime line's close, the scrap path and the look-ups:
// write's and do_scrap's true are done; action_validate's true is a scrap
// done, its wizard's action a scrap not done (a draft, without
// odoo.scrap_when_short: confirm); a search that finds no record, or
// several, is Odoo's answer, refused for good as before.
func TestOdoosOwnAnswersToCloseScrapAndLookUps(t *testing.T) {
	ok := func(body string) answer {
		return answer{status: http.StatusOK, contentType: "application/json", body: []byte(body)}
	}
	const wizard = `{"name":"Bracket: Insufficient Quantity To Scrap","view_mode":"form","res_model":"stock.warn.insufficient.qty.scrap",` +
		`"view_id":412,"type":"ir.actions.act_window","context":{"default_product_id":1,"default_scrap_id":1,"default_quantity":2},"target":"new"}`
	for _, c := range []struct {
		scenario string
		body     string
		want     any
	}{
		{"close-17", `{"jsonrpc":"2.0","id":@ID@,"result":true}`, true},
		{"close-19", `true`, true},
		{"validate-17", `{"jsonrpc":"2.0","id":@ID@,"result":true}`, true},
		{"validate-19", `true`, true},
		{"validate-17", `{"jsonrpc":"2.0","id":@ID@,"result":` + wizard + `}`, false},
		{"validate-19", wizard, false},
		{"doscrap-18", `{"jsonrpc":"2.0","id":@ID@,"result":true}`, true},
		{"doscrap-19", `true`, true},
		{"loss-19", `[{"id":2}]`, int64(2)},
		{"workcenter-17", `{"jsonrpc":"2.0","id":@ID@,"result":[{"id":1,"code":"M1","name":"Press 1","company_id":[1,"YourCompany"]}]}`, int64(1)},
	} {
		tr, got, err := callWith(t, scenarioNamed(t, c.scenario), ok(c.body))
		if tr.hits == 0 || err != nil || got != c.want {
			t.Errorf("%s answered %s: %v, %v; want %v", c.scenario, tr.body, got, err, c.want)
		}
	}
	for _, c := range []struct{ scenario, body string }{
		{"loss-19", `[]`},
		{"loss-18", `{"jsonrpc":"2.0","id":@ID@,"result":[{"id":2},{"id":9}]}`},
		{"workcenter-19", `[]`},
	} {
		tr, got, err := callWith(t, scenarioNamed(t, c.scenario), ok(c.body))
		if tr.hits == 0 || !odoo.IsPermanent(err) {
			t.Errorf("%s answered %s: %v, %v; want a permanent error (not found, or several)", c.scenario, tr.body, got, err)
		}
	}
}

// The API key is in no error, also when the server echoes it in the
// exception's name (FuzzCallAnswer's seeds: the name went into the error
// as it came).
func TestTheKeyEchoedInAnExceptionNameIsRedacted(t *testing.T) {
	for _, c := range []struct {
		scenario string
		status   int
		body     string
	}{
		{"write-17", http.StatusOK, `{"jsonrpc":"2.0","id":@ID@,"error":{"code":200,"message":"x","data":{"name":"odoo.exceptions.UserError @KEY@","message":"x"}}}`},
		{"write-19", http.StatusUnprocessableEntity, `{"name":"odoo.exceptions.UserError @KEY@","message":"x"}`},
	} {
		tr, _, err := callWith(t, scenarioNamed(t, c.scenario), answer{status: c.status, contentType: "application/json", body: []byte(c.body)})
		if err == nil || strings.Contains(err.Error(), tr.key) {
			t.Errorf("%s: %v; want an error without the key", c.scenario, err)
		}
	}
}

// A proxy's page whose bytes before its title lower to another length —
// Latin-1 (a German maintenance page: "für"), or a letter such as 'İ' —
// is said by its title: the client cut the page at indices of its
// lowered copy, and panicked (FuzzConnectAnswer: "<html\xb9<title>").
func TestAPageNotInUTF8IsSaidNotAPanic(t *testing.T) {
	for _, body := range []string{
		"<html\xb9<title>",
		"<html><!-- Wartungsseite f\xfcr den Proxy, \xfcberall gleich --><head><title>Wartung</title></head></html>",
		"<html><head><meta name=\"x\" content=\"İİİİİİİİ\"><title>Bakım</title></head></html>",
	} {
		for _, c := range []struct {
			scenario string
			status   int
		}{{"write-17", http.StatusOK}, {"write-19", http.StatusBadGateway}, {"search_read-19", http.StatusServiceUnavailable}} {
			_, _, err := callWith(t, scenarioNamed(t, c.scenario), answer{status: c.status, contentType: "text/html", body: []byte(body)})
			if !odoo.IsTemporary(err) {
				t.Errorf("%s answered %d %q: %v; want a transient error", c.scenario, c.status, body, err)
			}
		}
	}
}
