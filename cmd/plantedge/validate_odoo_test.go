package main

import (
	"bytes"
	"cmp"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/plantedge/plantedge/agent"
	"github.com/plantedge/plantedge/odoo/odootest"
)

// odooSite is an emulator with the bot user and two work centers, and a
// configuration file pointing at it.
type odooSite struct {
	srv            *odootest.Server
	url            string
	uid            int64
	key            string
	wc1, wc2       int64
	dir            string
	machines, loss string // YAML of machines:, value of odoo.default_loss
	db, user       string // odoo.database and odoo.username ("": odoo, plantedge-bot)
}

func newOdooSite(t *testing.T, version int) *odooSite {
	t.Helper()
	return newOdooSiteWith(t, odootest.Options{Version: version})
}

func newOdooSiteWith(t *testing.T, opts odootest.Options) *odooSite {
	t.Helper()
	t.Setenv("PLANTEDGE_ODOO_API_KEY", "")
	t.Setenv("CREDENTIALS_DIRECTORY", "")
	s := odootest.New(opts)
	url := s.Start()
	t.Cleanup(s.Close)
	o := &odooSite{srv: s, url: url, dir: t.TempDir(), loss: "Equipment Failure"}
	o.uid, o.key = s.AddUser("plantedge-bot")
	// The bot user the README asks for: Manufacturing / User, and a group
	// of its own that reads external ids.
	s.GiveOnlyBotRights("plantedge-bot")
	o.wc1 = s.AddWorkcenter("WC-PRESS-01", "Press 1")
	o.wc2 = s.AddWorkcenter("WC-PACK-02", "Packing 2")
	o.machines = `  - id: press-1
    workcenter: WC-PRESS-01
    good_count: { mqtt: { broker: broker, topic: plant/press-1, field: good } }
    scrap_count: { mqtt: { broker: broker, topic: plant/press-1, field: scrap } }
    running: { mqtt: { broker: broker, topic: plant/press-1, field: running } }
    downtime_reason:
      mqtt: { broker: broker, topic: plant/press-1, field: reason }
      map: { JAM: Equipment Failure, SETUP: mrp.block_reason2 }
  - id: pack-2
    workcenter: WC-PACK-02
    good_count: { mqtt: { broker: broker, topic: plant/pack-2, field: good } }
`
	return o
}

// write writes the key (its owner's only) and the configuration (readable
// by all: TestValidateOdooKeyUnreadableByThisUser runs validate as another
// user) and returns their paths.
func (o *odooSite) write(t *testing.T) (cfg, keyFile string) {
	t.Helper()
	keyFile = filepath.Join(o.dir, "key")
	if err := os.WriteFile(keyFile, []byte(o.key+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg = filepath.Join(o.dir, "plantedge.yaml")
	y := fmt.Sprintf(`site: plant-2
data_dir: %q
odoo:
  url: %q
  database: %s
  username: %s
  api_key_file: %q
  timeout: 5s
  default_loss: %q
mqtt:
  - name: broker
    url: tcp://127.0.0.1:1883
    client_id: plantedge-test
machines:
%s`, filepath.Join(o.dir, "data"), o.url, cmp.Or(o.db, "odoo"), cmp.Or(o.user, "plantedge-bot"), keyFile, o.loss, o.machines)
	if err := os.WriteFile(cfg, []byte(y), 0o644); err != nil {
		t.Fatal(err)
	}
	return cfg, keyFile
}

// run writes the key and the configuration and runs validate --odoo.
func (o *odooSite) run(t *testing.T) (lines []string, err error) {
	t.Helper()
	cfg, _ := o.write(t)
	out, errOut, err := runValidate(t, "-c", cfg, "--odoo")
	if errOut != "" {
		t.Fatalf("stderr: %s", errOut)
	}
	// the file summary, then one line per Odoo finding
	head, rest, ok := strings.Cut(out, "  mqtt broker (tcp://127.0.0.1:1883): ")
	if !ok || !strings.HasPrefix(head, cfg+": OK — the file; Odoo checked below\n") {
		t.Fatalf("no file summary before the Odoo check:\n%s", out)
	}
	_, rest, _ = strings.Cut(rest, "\n")
	for _, l := range strings.Split(strings.TrimSuffix(rest, "\n"), "\n") {
		if l != "" {
			lines = append(lines, l)
		}
	}
	return lines, err
}

// at is a problem's place in the file run writes: "line:col: key path: ".
func (o *odooSite) at(place string) string {
	return filepath.Join(o.dir, "plantedge.yaml") + ":" + place + ": "
}

func (o *odooSite) connected(version int, proto string) string {
	return fmt.Sprintf(`odoo: connected to %s (database "odoo") as user "plantedge-bot" (uid %d): Odoo %d.0 over %s`, o.url, o.uid, version, proto)
}

func (o *odooSite) workcenters() []string {
	return []string{
		fmt.Sprintf(`odoo: machine press-1: work center "WC-PRESS-01" "Press 1" (id %d)`, o.wc1),
		fmt.Sprintf(`odoo: machine pack-2: work center "WC-PACK-02" "Packing 2" (id %d)`, o.wc2),
	}
}

var goodLosses = []string{
	`odoo: loss reason "Equipment Failure" (id 2)`,
	`odoo: loss reason "mrp.block_reason2" (id 3)`,
}

func wantLines(t *testing.T, got []string, err error, wantErr string, want ...[]string) {
	t.Helper()
	var all []string
	for _, w := range want {
		all = append(all, w...)
	}
	if strings.Join(got, "\n") != strings.Join(all, "\n") {
		t.Errorf("output:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(all, "\n"))
	}
	gotErr := ""
	if err != nil {
		gotErr = err.Error()
	}
	if gotErr != wantErr {
		t.Errorf("err = %q, want %q", gotErr, wantErr)
	}
	if wantErr != "" && exitCode(err) != 1 {
		t.Errorf("exit code %d, want 1", exitCode(err))
	}
}

// odooReleases are the Odoo releases validate is tested on, with the
// protocol the agent takes on each.
var odooReleases = []struct {
	version int
	proto   string
}{{17, "JSON-RPC"}, {18, "JSON-RPC"}, {19, "JSON-2"}}

// The bot user the README asks for, Manufacturing / User and a group of
// its own that reads external ids, passes: every right validate checks is
// in these, and no warning.
func TestValidateOdooAllGood(t *testing.T) {
	for _, c := range odooReleases {
		t.Run(fmt.Sprint(c.version), func(t *testing.T) {
			o := newOdooSite(t, c.version)
			lines, err := o.run(t)
			wantLines(t, lines, err, "", []string{o.connected(c.version, c.proto)}, o.workcenters(), goodLosses,
				[]string{"odoo: OK: 2 work centers, 2 loss reasons, 15 access rights"})
			method := "has_access"
			if c.version < 18 {
				method = "check_access_rights"
			}
			if n := o.srv.CallCount("mrp.workorder", method); n != 2 {
				t.Errorf("%d calls of mrp.workorder.%s, want 2", n, method)
			}
			if n := o.srv.CallCount("mrp.workcenter", "search_read"); n != 1 {
				t.Errorf("%d work center lookups, want 1 for all machines", n)
			}
		})
	}
}

// A bot user holding more than the agent needs works, but its key would
// open that much of Odoo: a warning, not a problem. An administrator
// (Settings, which implies Access Rights) is told once; a user who may
// change groups (Access Rights) may give itself any right; a Manufacturing
// / Administrator may change work centers and loss reasons, which the
// agent only reads.
func TestValidateOdooWarnsAboutAnOverPrivilegedBot(t *testing.T) {
	for _, w := range []struct {
		name, warning string
		give          func(o *odooSite)
	}{
		{"settings", "has administrator rights (it may change system parameters); the agent needs only Manufacturing / User and a group of its own reading Model Data (the README's bot user): give it a user of its own without Administration rights",
			func(o *odooSite) { o.srv.MakeAdmin(o.uid) }},
		{"access_rights", "has Administration / Access Rights (it may change groups, and so give itself any right); the agent needs only Manufacturing / User and a group of its own reading Model Data (the README's bot user): take Access Rights away",
			func(o *odooSite) { o.srv.GiveAccessRights(o.uid) }},
		{"manufacturing_administrator", "is a Manufacturing / Administrator (it may change work centers, loss reasons and bills of materials); the agent needs only Manufacturing / User: give it that instead",
			func(o *odooSite) { o.srv.GiveOnlyManufacturingAdministrator("plantedge-bot") }},
	} {
		for _, c := range odooReleases {
			t.Run(fmt.Sprintf("%s/%d", w.name, c.version), func(t *testing.T) {
				o := newOdooSite(t, c.version)
				w.give(o)
				lines, err := o.run(t)
				wantLines(t, lines, err, "", []string{o.connected(c.version, c.proto)}, o.workcenters(), goodLosses,
					[]string{fmt.Sprintf(`odoo: warning: user "plantedge-bot" (uid %d) %s`, o.uid, w.warning),
						"odoo: OK: 2 work centers, 2 loss reasons, 15 access rights"})
			})
		}
	}
}

// Manufacturing / User alone does not read external ids on Odoo 17-19
// (no standard group below Access Rights does): validate says which group
// to make, not to give it Access Rights.
func TestValidateOdooManufacturingUserAloneCannotReadExternalIDs(t *testing.T) {
	for _, c := range odooReleases {
		t.Run(fmt.Sprint(c.version), func(t *testing.T) {
			o := newOdooSite(t, c.version)
			o.srv.GiveOnlyManufacturingUser("plantedge-bot")
			lines, err := o.run(t)
			// the loss named by its external id cannot be resolved either
			wantLines(t, lines, err, "odoo: 2 problems", []string{o.connected(c.version, c.proto)}, o.workcenters(), goodLosses[:1], []string{
				`odoo: problem: looking up loss reason "mrp.block_reason2": access denied: You are not allowed to access 'Model Data' (ir.model.data) records. (hint: the bot user lacks a right the agent needs; give it a group of its own whose one access right is read on Model Data (ir.model.data), as the README says)`,
				fmt.Sprintf(`odoo: problem: user "plantedge-bot" (uid %d) may not read ir.model.data, needed to find the agent's downtime and scrap records by external id (hint: give the user a group of its own whose one access right is read on Model Data (ir.model.data): Odoo gives it to no standard group but Administration / Access Rights, which may give itself any right)`, o.uid)})
		})
	}
}

// Validating a scrap books a stock move with the bot user's rights: a
// custom group without them would leave every scrap a draft.
func TestValidateOdooDeniedStockMove(t *testing.T) {
	for _, c := range odooReleases {
		t.Run(fmt.Sprint(c.version), func(t *testing.T) {
			o := newOdooSite(t, c.version)
			o.srv.DenyAccess("plantedge-bot", "stock.move", "create")
			o.srv.DenyAccess("plantedge-bot", "stock.move.line", "create")
			lines, err := o.run(t)
			wantLines(t, lines, err, "odoo: 2 problems", []string{o.connected(c.version, c.proto)}, o.workcenters(), goodLosses, []string{
				fmt.Sprintf(`odoo: problem: user "plantedge-bot" (uid %d) may not create stock.move, needed to validate scrap (Odoo books it as a stock move, with the bot user's rights) (hint: give the user the group Inventory / User)`, o.uid),
				fmt.Sprintf(`odoo: problem: user "plantedge-bot" (uid %d) may not create stock.move.line, needed to validate scrap (Odoo books it as a stock move, with the bot user's rights) (hint: give the user the group Internal User (user type))`, o.uid)})
		})
	}
}

// Validating a scrap of a storable product first reads its stock on hand
// with the bot user's rights (stock moves, then quants): a custom group
// without them would leave every scrap a draft.
func TestValidateOdooDeniedStockRead(t *testing.T) {
	for _, c := range odooReleases {
		t.Run(fmt.Sprint(c.version), func(t *testing.T) {
			o := newOdooSite(t, c.version)
			o.srv.DenyAccess("plantedge-bot", "stock.move", "read")
			o.srv.DenyAccess("plantedge-bot", "stock.quant", "read")
			lines, err := o.run(t)
			wantLines(t, lines, err, "odoo: 2 problems", []string{o.connected(c.version, c.proto)}, o.workcenters(), goodLosses, []string{
				fmt.Sprintf(`odoo: problem: user "plantedge-bot" (uid %d) may not read stock.move, needed to validate scrap (Odoo reads the product's stock on hand from stock moves and quants, with the bot user's rights) (hint: give the user the group Inventory / User)`, o.uid),
				fmt.Sprintf(`odoo: problem: user "plantedge-bot" (uid %d) may not read stock.quant, needed to validate scrap (Odoo reads the product's stock on hand from stock moves and quants, with the bot user's rights) (hint: give the user the group Internal User (user type))`, o.uid)})
		})
	}
}

// Write on stock moves: on Odoo 17, 18 and 19 every produced quantity needs
// it (Odoo sets the order's component moves with the bot user's rights; 19
// too, from qty_produced through the work orders' qty_producing), whether
// or not a machine has scrap, and it is asked once. The emulator refuses
// the quantity write of such a user on every version
// (odootest's TestAccessDeniedStockMoveWriteRefusesQuantityWrite).
func TestValidateOdooDeniedStockMoveWrite(t *testing.T) {
	for _, c := range odooReleases {
		for _, scrap := range []bool{true, false} {
			t.Run(fmt.Sprintf("%d/scrap=%v", c.version, scrap), func(t *testing.T) {
				o := newOdooSite(t, c.version)
				if !scrap {
					o.machines = strings.Replace(o.machines, "    scrap_count: { mqtt: { broker: broker, topic: plant/press-1, field: scrap } }\n", "", 1)
				}
				o.srv.DenyAccess("plantedge-bot", "stock.move", "write")
				lines, err := o.run(t)
				wantLines(t, lines, err, "odoo: 1 problem", []string{o.connected(c.version, c.proto)}, o.workcenters(), goodLosses, []string{
					fmt.Sprintf(`odoo: problem: user "plantedge-bot" (uid %d) may not write stock.move, needed to write produced quantities (Odoo sets the manufacturing order's component quantities on its stock moves, with the bot user's rights) (hint: give the user the group Inventory / User)`, o.uid)})
			})
		}
	}
}

func TestValidateOdooMissingWorkcenter(t *testing.T) {
	o := newOdooSite(t, 17)
	o.machines = strings.Replace(o.machines, "WC-PACK-02", "WC-PACK-09", 1)
	lines, err := o.run(t)
	wantLines(t, lines, err, "odoo: 1 problem", []string{o.connected(17, "JSON-RPC"), o.workcenters()[0],
		`odoo: problem: ` + o.at("24:17: machines[1].workcenter") + `machine pack-2: no work center with code "WC-PACK-09" (set this Code on the work center in Odoo, or fix the machine's workcenter; in a multi-company Odoo, add the work center's company to the bot user's allowed companies (its default company does not matter))`},
		goodLosses)
}

// A work center archived in Odoo is not found by its code (Odoo's searches
// leave archived records out): validate says it is archived, not that no
// work center has the code.
func TestValidateOdooArchivedWorkcenter(t *testing.T) {
	for _, c := range odooReleases {
		t.Run(fmt.Sprint(c.version), func(t *testing.T) {
			o := newOdooSite(t, c.version)
			o.srv.SetWorkcenterActive(o.wc2, false)
			lines, err := o.run(t)
			wantLines(t, lines, err, "odoo: 1 problem", []string{o.connected(c.version, c.proto), o.workcenters()[0],
				`odoo: problem: ` + o.at("24:17: machines[1].workcenter") + `machine pack-2: the work center with code "WC-PACK-02" is archived in Odoo (unarchive it (Manufacturing > Configuration > Work Centers, filter Archived), or give the machine another work center)`},
				goodLosses)
		})
	}
}

func TestValidateOdooAmbiguousCode(t *testing.T) {
	o := newOdooSite(t, 18)
	o.srv.AddWorkcenter("WC-PRESS-01", "Press 1 (old)")
	lines, err := o.run(t)
	wantLines(t, lines, err, "odoo: 1 problem", []string{o.connected(18, "JSON-RPC"),
		`odoo: problem: ` + o.at("16:17: machines[0].workcenter") + `machine press-1: work center code "WC-PRESS-01" matches several work centers (codes are not unique in Odoo: give each work center its own Code)`,
		o.workcenters()[1]}, goodLosses)
}

func TestValidateOdooUnknownLoss(t *testing.T) {
	o := newOdooSite(t, 17)
	o.machines = strings.Replace(o.machines, "JAM: Equipment Failure", "JAM: Jammed", 1)
	o.loss = "Jammed"
	lines, err := o.run(t)
	// at each place that names it
	wantLines(t, lines, err, "odoo: 2 problems", []string{o.connected(17, "JSON-RPC")}, o.workcenters(), []string{
		`odoo: problem: ` + o.at("22:19: machines[0].downtime_reason.map.JAM") + `no loss reason "Jammed", used by machine press-1 (use the exact English name of a loss reason in Odoo, or its external id such as mrp.block_reason1)`,
		`odoo: problem: ` + o.at("9:17: odoo.default_loss") + `no loss reason "Jammed" (use the exact English name of a loss reason in Odoo, or its external id such as mrp.block_reason1)`,
		goodLosses[1]})
}

func TestValidateOdooDeniedWrite(t *testing.T) {
	o := newOdooSite(t, 19)
	o.srv.DenyAccess("plantedge-bot", "mrp.workorder", "write")
	lines, err := o.run(t)
	wantLines(t, lines, err, "odoo: 1 problem", []string{o.connected(19, "JSON-2")}, o.workcenters(), goodLosses, []string{
		fmt.Sprintf(`odoo: problem: user "plantedge-bot" (uid %d) may not write mrp.workorder, needed to write produced quantities (hint: give the user the group Manufacturing / User)`, o.uid)})
}

// Odoo writes a work order's produced quantity on its manufacturing order
// with the bot user's rights (17/18 _set_qty_producing, 19 write): a user
// that may write work orders but not manufacturing orders has every
// quantity write refused, so validate names that right too.
func TestValidateOdooDeniedProductionWrite(t *testing.T) {
	for _, c := range odooReleases {
		t.Run(fmt.Sprint(c.version), func(t *testing.T) {
			o := newOdooSite(t, c.version)
			o.srv.DenyAccess("plantedge-bot", "mrp.production", "write")
			lines, err := o.run(t)
			wantLines(t, lines, err, "odoo: 1 problem", []string{o.connected(c.version, c.proto)}, o.workcenters(), goodLosses, []string{
				fmt.Sprintf(`odoo: problem: user "plantedge-bot" (uid %d) may not write mrp.production, needed to write produced quantities, which Odoo writes on the work order's manufacturing order (hint: give the user the group Manufacturing / User)`, o.uid)})
		})
	}
}

// Reading its scrap bookings is a right too: the agent finds them by
// external id and watches the drafts Odoo leaves.
func TestValidateOdooDeniedScrapRead(t *testing.T) {
	o := newOdooSite(t, 19)
	o.srv.DenyAccess("plantedge-bot", "stock.scrap", "read")
	lines, err := o.run(t)
	wantLines(t, lines, err, "odoo: 1 problem", []string{o.connected(19, "JSON-2")}, o.workcenters(), goodLosses, []string{
		fmt.Sprintf(`odoo: problem: user "plantedge-bot" (uid %d) may not read stock.scrap, needed to find its bookings and watch the drafts Odoo leaves (hint: give the user the group Inventory / User)`, o.uid)})
}

// Every problem is reported, not only the first.
func TestValidateOdooReportsEveryProblem(t *testing.T) {
	o := newOdooSite(t, 17)
	o.machines = strings.Replace(o.machines, "WC-PACK-02", "WC-PACK-09", 1)
	o.loss = "Jammed"
	o.srv.DenyAccess("plantedge-bot", "stock.scrap", "create")
	o.srv.DenyAccess("plantedge-bot", "ir.model.data", "read")
	lines, err := o.run(t)
	// without ir.model.data read, the external id of a loss cannot be resolved either
	wantLines(t, lines, err, "odoo: 5 problems", []string{o.connected(17, "JSON-RPC"), o.workcenters()[0],
		`odoo: problem: ` + o.at("24:17: machines[1].workcenter") + `machine pack-2: no work center with code "WC-PACK-09" (set this Code on the work center in Odoo, or fix the machine's workcenter; in a multi-company Odoo, add the work center's company to the bot user's allowed companies (its default company does not matter))`,
		goodLosses[0],
		`odoo: problem: looking up loss reason "mrp.block_reason2": access denied: You are not allowed to access 'Model Data' (ir.model.data) records. (hint: the bot user lacks a right the agent needs; give it a group of its own whose one access right is read on Model Data (ir.model.data), as the README says)`,
		`odoo: problem: ` + o.at("9:17: odoo.default_loss") + `no loss reason "Jammed" (use the exact English name of a loss reason in Odoo, or its external id such as mrp.block_reason1)`,
		fmt.Sprintf(`odoo: problem: user "plantedge-bot" (uid %d) may not create stock.scrap, needed to book scrap (hint: give the user the group Inventory / User)`, o.uid),
		fmt.Sprintf(`odoo: problem: user "plantedge-bot" (uid %d) may not read ir.model.data, needed to find the agent's downtime and scrap records by external id (hint: give the user a group of its own whose one access right is read on Model Data (ir.model.data): Odoo gives it to no standard group but Administration / Access Rights, which may give itself any right)`, o.uid),
	})
}

// The bot user archived: Odoo refuses its key as a wrong one; validate
// names that cause with the others.
func TestValidateOdooArchivedBotUser(t *testing.T) {
	for _, v := range []int{17, 19} {
		t.Run(fmt.Sprint(v), func(t *testing.T) {
			o := newOdooSite(t, v)
			o.srv.SetUserActive(o.uid, false)
			lines, err := o.run(t)
			wantLines(t, lines, err, "odoo: 1 problem", []string{authFailed(o, v)})
		})
	}
}

func TestValidateOdooBadKey(t *testing.T) {
	for _, v := range []int{17, 19} {
		t.Run(fmt.Sprint(v), func(t *testing.T) {
			o := newOdooSite(t, v)
			o.srv.ExpireKey(o.key)
			lines, err := o.run(t)
			wantLines(t, lines, err, "odoo: 1 problem", []string{
				authFailed(o, v)})
			if n := len(o.srv.Calls()); n > 2 {
				t.Errorf("%d calls after the key was refused, want at most 2 (version and one login)", n)
			}
		})
	}
}

// Once Odoo locks the address out, even the right key is refused; validate
// says that may be why.
func TestValidateOdooLoginCooldown(t *testing.T) {
	o := newOdooSite(t, 17)
	o.srv.SetLoginCooldown(1, time.Minute)
	good := o.key
	o.key = strings.Repeat("0", 40)
	if _, err := o.run(t); exitCode(err) != 1 {
		t.Fatalf("bad key: err = %v", err)
	}
	o.key = good
	// Odoo's authenticate answers a locked-out address like a wrong key.
	lines, err := o.run(t)
	wantLines(t, lines, err, "odoo: 1 problem", []string{authFailed(o, 17)})
}

// authFailed is validate's line for a refused key; Odoo 17/18 (JSON-RPC)
// take the login with the key, and a login not the key's user's is
// refused alike.
func authFailed(o *odooSite, version int) string {
	notHis := ""
	if version < 19 {
		notHis = ", or not this user's (is odoo.username the login of the user the key was made for?)"
	}
	return `odoo: problem: authentication failed: Odoo refused the API key of user "plantedge-bot" for database "odoo" (from api_key_file ` +
		filepath.Join(o.dir, "key") + `): wrong, expired or revoked, or its user archived` + notHis + `, or this address is locked out after 10 failed logins (5 where base.login_cooldown_after was deleted) ` +
		`(hint: a key mistyped, expired or revoked: create a new key in Odoo under Preferences > Account Security and store it there; ` +
		`a bot user archived (Settings > Users, filter Archived): unarchive it, its key works again; $PLANTEDGE_ODOO_API_KEY, when set, ` +
		`comes before the credential and api_key_file; if the key is right, wait a minute and try once: each failure restarts Odoo's 60 s lockout)`
}

// Odoo not reachable: one problem, at odoo.url in the file.
func TestValidateOdooUnreachableAtItsURL(t *testing.T) {
	o := newOdooSite(t, 17)
	o.url = "http://127.0.0.1:1"
	lines, err := o.run(t)
	if exitCode(err) != 1 || len(lines) != 1 ||
		!strings.HasPrefix(lines[0], "odoo: problem: "+o.at("4:8")+"odoo.url: cannot reach Odoo at http://127.0.0.1:1: ") ||
		!strings.HasSuffix(lines[0], "(check odoo.url, the network and TLS settings)") {
		t.Errorf("exit %d (%v):\n%s", exitCode(err), err, strings.Join(lines, "\n"))
	}
}

// A database name Odoo does not have (a typo in odoo.database): Odoo answers
// as it does for its PostgreSQL away, naming the database. validate points
// at odoo.database, not at odoo.url and the network (the operator review).
func TestValidateOdooUnknownDatabaseAtItsKey(t *testing.T) {
	o := newOdooSite(t, 17)
	o.db = "prd"
	lines, err := o.run(t)
	if exitCode(err) != 1 || len(lines) != 1 ||
		!strings.HasPrefix(lines[0], "odoo: problem: "+o.at("5:13")+"odoo.database: Odoo at "+o.url+` cannot open database "prd": `) ||
		!strings.HasSuffix(lines[0], "(check odoo.database: the database's name as Odoo's database manager lists it; if it is right, "+
			"the PostgreSQL behind Odoo is away: try again later)") {
		t.Errorf("exit %d (%v):\n%s", exitCode(err), err, strings.Join(lines, "\n"))
	}
}

// Odoo 19 answers JSON-2 for a database it does not serve (absent, or
// excluded by its dbfilter) with its 404 page "No database is selected"
// (werkzeug's 404 in builds without that page): validate points at
// odoo.database too, not at odoo.url, and says what Odoo's answers to the
// client's next questions point to — here no database by that name, its
// PostgreSQL answering.
func TestValidateOdooUnknownDatabaseAtItsKeyJSON2(t *testing.T) {
	for _, build := range []struct {
		name   string
		noPage bool
		said   string
	}{{"page", false, "No database is selected"}, {"werkzeug-404", true, "Odoo 19.0 answered 404: 404 Not Found"}} {
		t.Run(build.name, func(t *testing.T) {
			o := newOdooSiteWith(t, odootest.Options{Version: 19, NoNotFoundNoDB: build.noPage})
			o.db = "prd"
			lines, err := o.run(t)
			if exitCode(err) != 1 || len(lines) != 1 ||
				!strings.HasPrefix(lines[0], "odoo: problem: "+o.at("5:13")+"odoo.database: Odoo at "+o.url+` cannot open database "prd": `) ||
				!strings.Contains(lines[0], build.said) || !strings.Contains(lines[0], "Odoo's PostgreSQL has no database by that name") ||
				!strings.HasSuffix(lines[0], "(check odoo.database: the database's name as Odoo's database manager lists it, which the server's dbfilter (odoo.conf) must match)") {
				t.Errorf("exit %d (%v):\n%s", exitCode(err), err, strings.Join(lines, "\n"))
			}
		})
	}
}

// Odoo 19 with its PostgreSQL down answers JSON-2 with the same 404 as a
// database it does not serve; its /web/health says PostgreSQL is not
// reachable: validate says so, with nothing to change in the
// configuration, not at odoo.database.
func TestValidateOdooPostgresDownJSON2(t *testing.T) {
	for _, noPage := range []bool{false, true} {
		t.Run(fmt.Sprint("without-the-page-", noPage), func(t *testing.T) {
			o := newOdooSiteWith(t, odootest.Options{Version: 19, NoNotFoundNoDB: noPage})
			o.srv.SetPostgresDown(true)
			lines, err := o.run(t)
			if exitCode(err) != 1 || len(lines) != 1 ||
				!strings.HasPrefix(lines[0], "odoo: problem: Odoo at "+o.url+` answers, but its PostgreSQL is not reachable: `) ||
				!strings.HasSuffix(lines[0], "(hint: nothing to change in plantedge's configuration; start the database server, or wait for it, and try again)") ||
				strings.Contains(lines[0], "odoo.database:") {
				t.Errorf("exit %d (%v):\n%s", exitCode(err), err, strings.Join(lines, "\n"))
			}
		})
	}
}

// Over JSON-RPC (Odoo 17/18) the login is sent with the key: a wrong
// odoo.username is refused as a wrong key is, and validate names both.
func TestValidateOdooWrongUsernameNamed(t *testing.T) {
	o := newOdooSite(t, 17)
	o.user = "plantedge_bot"
	lines, err := o.run(t)
	if exitCode(err) != 1 || len(lines) != 1 || !strings.Contains(lines[0], `Odoo refused the API key of user "plantedge_bot"`) ||
		!strings.Contains(lines[0], "is odoo.username the login of the user the key was made for?") {
		t.Errorf("exit %d (%v):\n%s", exitCode(err), err, strings.Join(lines, "\n"))
	}
}

// validate --odoo run by a user who may not read the API key file (the
// packaged one is root-only, handed to the service as a credential): the
// problem is at odoo.api_key_file's line:column and says to run it as root
// (the operator review: "read secret …: permission denied" alone). Run as
// user nobody, which the test can only be as root.
func TestValidateOdooKeyUnreadableByThisUser(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root, to run validate as user nobody")
	}
	o := newOdooSite(t, 17)
	cfg, keyFile := o.write(t) // the key root's only, the config readable by all
	cmd := asNobody(t, o.dir, "validate", "--odoo", "-c", cfg)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	_ = cmd.Run()
	out := stdout.String()
	want := "odoo: problem: " + o.at("7:17") + "odoo.api_key_file: read secret " + keyFile + ": permission denied: Odoo was not asked: this user may not read the API key " +
		"(run it as root, as the agent gets its key: sudo plantedge validate --odoo; the packaged unit hands /etc/plantedge/odoo-api-key, root-only, to the service as the credential odoo-api-key)\n"
	if cmd.ProcessState.ExitCode() != 1 || !strings.Contains(out, want) {
		t.Errorf("exit %d, want 1 and\n%s\nin:\n%s\nstderr:\n%s", cmd.ProcessState.ExitCode(), want, out, stderr.String())
	}
	if len(o.srv.Calls()) > 0 {
		t.Errorf("Odoo was asked: %v", o.srv.Calls())
	}
}

// validate --odoo with an api_key_file that is not there: the problem is
// at odoo.api_key_file's line:column, as every other problem of validate
// is (the operator probe: "odoo: problem: odoo api key: looked in … secret
// not found", with no place in the file), and says what to write there.
func TestValidateOdooKeyFileMissingIsAtItsKey(t *testing.T) {
	t.Setenv("PLANTEDGE_ODOO_API_KEY", "")
	t.Setenv("CREDENTIALS_DIRECTORY", "")
	o := newOdooSite(t, 17)
	cfg, keyFile := o.write(t)
	if err := os.Remove(keyFile); err != nil {
		t.Fatal(err)
	}
	out, _, err := runValidate(t, "-c", cfg, "--odoo")
	want := "odoo: problem: " + o.at("7:17") + "odoo.api_key_file: odoo api key: looked in"
	if exitCode(err) != 1 || !strings.Contains(out, want) || !strings.Contains(out, "secret not found (write the bot user's API key to this file (mode 0600)") {
		t.Errorf("exit %d (%v), want 1 and a line starting %q:\n%s", exitCode(err), err, want, out)
	}
	if len(o.srv.Calls()) > 0 {
		t.Errorf("Odoo was asked: %v", o.srv.Calls())
	}
}

// asNobody is the command plantedge args run as user nobody: the test
// binary, copied where nobody may run it (dir, which it makes 0755 with
// its parent).
func asNobody(t *testing.T, dir string, args ...string) *exec.Cmd {
	t.Helper()
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	bin := filepath.Join(dir, "plantedge")
	src, err := os.ReadFile(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, src, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := mainCmd(bin, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	return cmd
}

// The agent run by a user who may not read its API key file logs what
// status says (validate --odoo too): Odoo was not asked, the file's owner,
// mode or path — not "until the configuration is fixed" (review 44).
func TestRunSaysAnUnreadableKeyAsStatusDoes(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root, to run the agent as user nobody")
	}
	b := newBench(t, 17)
	dir := filepath.Dir(b.cfgPath)
	if err := os.Chmod(b.cfgPath, 0o644); err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(dir, "data")
	if err := os.Mkdir(data, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(data, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	logs, _ := startMain(t, asNobody(t, dir, "run", "-c", b.cfgPath))
	want := "Odoo was not asked: the agent cannot read its API key (the file's owner, mode or path"
	waitUntil(t, 20*time.Second, "the log line", func() (bool, string) {
		return strings.Contains(logs.String(), want), logs.String()
	})
	if l := logs.String(); strings.Contains(l, "until the configuration is fixed") {
		t.Errorf("log:\n%s", l)
	}
	var out bytes.Buffer
	printStatus(&out, agent.Status{Site: "s", AgentRunning: true, Odoo: agent.OdooStatus{State: "auth_failed", LastError: "odoo client: read secret k: permission denied", NextAttemptSeconds: 1}})
	if !strings.Contains(out.String(), "Odoo was not asked: the agent cannot read its API key — the file's owner, mode or path") {
		t.Errorf("status's words:\n%s", out.String())
	}
}
