package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"slices"
	"strings"

	"github.com/plantedge/plantedge/agent"
	"github.com/plantedge/plantedge/agent/config"
	"github.com/plantedge/plantedge/odoo"
)

func init() { validateOdoo = checkOdoo }

// odooRight is one access right the bot user needs, and how to give it
// (the group that has it, or where no standard group is right for it,
// what to do).
type odooRight struct {
	model, op, why, hint string
}

// lossUse is one loss reason name, where the file names it (key paths),
// and for which machine ("" for odoo.default_loss).
type lossUse struct {
	name  string
	paths []string
	by    []string
}

// odooCheck collects what checkOdoo found: problems of a place in the
// file (a work center code, a loss name) at it, the others (the link, the
// user's rights) on their own.
type odooCheck struct {
	sourceCheck
}

func (c *odooCheck) problem(format string, a ...any) {
	c.problems++
	fmt.Fprintf(c.w, "odoo: problem: "+format+"\n", a...)
}

// checkOdoo connects to Odoo with cfg's settings and checks that every
// machine's work center exists exactly once, every loss reason the file
// names exists, and the bot user holds the access rights the agent needs.
// It prints what it found and every problem, one per line with a hint, to w
// and fails when there is any problem.
func checkOdoo(ctx context.Context, cfg *config.Config, file string, w io.Writer) error {
	c := &odooCheck{sourceCheck{w: w, cfg: cfg, file: file, kind: "odoo"}}
	client, err := agent.NewOdooClient(cfg, nil, nil)
	if errors.Is(err, config.ErrNoSecret) && cfg.Odoo.APIKeyFile != "" {
		// At the key that names the file, as an unreadable one is (it
		// was the one --odoo problem with no file:line:column).
		c.sourceCheck.problem("odoo.api_key_file", trimPrefix(err, "odoo client: "),
			"write the bot user's API key to this file (mode 0600), or set PLANTEDGE_ODOO_API_KEY or the systemd credential odoo-api-key")
		return c.result()
	}
	if errors.Is(err, config.ErrNoSecret) {
		c.problem("%v (hint: set PLANTEDGE_ODOO_API_KEY, the systemd credential odoo-api-key, or odoo.api_key_file)", err)
		return c.result()
	}
	if errors.Is(err, os.ErrPermission) {
		c.keyUnreadable(cfg, err)
		return c.result()
	}
	if err != nil {
		c.problem("%v", err)
		return c.result()
	}
	defer client.Close()
	if err := client.Connect(ctx); err != nil {
		c.connectProblem(cfg, err)
		return c.result()
	}
	proto := "JSON-RPC"
	if client.Protocol() == odoo.ProtocolJSON2 {
		proto = "JSON-2"
	}
	who := fmt.Sprintf("uid %d", client.UID())
	if cfg.Odoo.Username != "" {
		who = fmt.Sprintf("user %q (uid %d)", cfg.Odoo.Username, client.UID())
	}
	fmt.Fprintf(w, "odoo: connected to %s (database %q) as %s: Odoo %s over %s\n",
		cfg.Odoo.URL, cfg.Odoo.Database, who, client.ServerVersion(), proto)

	nWC, ok := c.checkWorkcenters(ctx, cfg, client)
	if !ok {
		return c.result()
	}
	nLoss, ok := c.checkLosses(ctx, cfg, client)
	if !ok {
		return c.result()
	}
	nRights, ok := c.checkRights(ctx, cfg, client, who)
	if ok {
		c.checkNotOverPrivileged(ctx, client, who)
	}
	if c.problems > 0 {
		return c.result()
	}
	fmt.Fprintf(w, "odoo: OK: %s, %s, %s\n", plural(nWC, "work center"),
		plural(nLoss, "loss reason"), plural(nRights, "access right"))
	return nil
}

// keyUnreadable explains an API key this user may not read (err): at
// odoo.api_key_file when that is the file, with what to do — as root, run
// as the agent is given its key; as root, the file's owner, mode or path
// (status's words for the agent's own case).
func (c *odooCheck) keyUnreadable(cfg *config.Config, err error) {
	msg := fmt.Sprintf("%v: Odoo was not asked: this user may not read the API key", trimPrefix(err, "odoo client: "))
	hint := "run it as root, as the agent gets its key: sudo plantedge validate --odoo; " + config.PackagedAPIKey
	if os.Geteuid() == 0 {
		msg = fmt.Sprintf("%v: Odoo was not asked: root may not read the API key", trimPrefix(err, "odoo client: "))
		hint = "check the file's owner, mode and path, and what may deny root (a network file system, a security module)"
	}
	if _, ferr := config.ReadSecret(cfg.Odoo.APIKeyFile); cfg.Odoo.APIKeyFile != "" && errors.Is(ferr, os.ErrPermission) {
		c.sourceCheck.problem("odoo.api_key_file", msg, hint)
		return
	}
	// The systemd credential ($CREDENTIALS_DIRECTORY), no place in the file.
	c.problem("%s (hint: %s)", msg, hint)
}

// trimPrefix is err's text without prefix.
func trimPrefix(err error, prefix string) string {
	return strings.TrimPrefix(err.Error(), prefix)
}

// connectProblem explains a failed Connect.
func (c *odooCheck) connectProblem(cfg *config.Config, err error) {
	var oe *odoo.Error
	switch {
	case errors.As(err, &oe) && oe.LoginCooldown():
		c.problem(oe.LockoutNote() + " (hint: wait a minute, fix the key, then try once)")
	case odoo.IsAuth(err):
		user := ""
		if cfg.Odoo.Username != "" {
			user = fmt.Sprintf(" of user %q", cfg.Odoo.Username)
		}
		_, source, _ := cfg.OdooAPIKeySource()
		// Over JSON-RPC (Odoo 17/18) the login goes with the key, and
		// Odoo refuses a login that is not the key's user's as it refuses
		// a wrong key (JSON-2 sends the key alone).
		notHis := ""
		if errors.As(err, &oe) && oe.Op == "authenticate" && cfg.Odoo.Username != "" {
			notHis = ", or not this user's (is odoo.username the login of the user the key was made for?)"
		}
		// Odoo answers a login from a locked-out address like a wrong key.
		// An archived user's keys are all refused alike (res_users.py:
		// they match active users only), and it cannot make a new one.
		c.problem("authentication failed: Odoo refused the API key%s for database %q (from %s): wrong, expired or revoked, or its user archived%s, "+
			"or this address is locked out after 10 failed logins (5 where base.login_cooldown_after was deleted) "+
			"(hint: a key mistyped, expired or revoked: create a new key in Odoo under Preferences > Account Security and store it there; a bot user archived (Settings > Users, filter Archived): unarchive it, its key works again; "+
			"$PLANTEDGE_ODOO_API_KEY, when set, comes before the credential and api_key_file; "+
			"if the key is right, wait a minute and try once: each failure restarts Odoo's 60 s lockout)", user, cfg.Odoo.Database, source, notHis)
	case errors.As(err, &oe) && oe.PostgresDown():
		// Odoo said so (its /web/health, asked after JSON-2's 404):
		// nothing in the configuration to fix.
		c.problem("Odoo at %s answers, but its PostgreSQL is not reachable: %s (hint: nothing to change in plantedge's configuration; start the database server, or wait for it, and try again)",
			cfg.Odoo.URL, firstLine(err.Error()))
	case errors.As(err, &oe) && (oe.Unavailable() || oe.NoDatabase()):
		// Odoo is up; the database it names is not: a name Odoo lacks
		// (odoo.database mistyped) is answered as a PostgreSQL away is —
		// over JSON-2 (19) also one the server's dbfilter excludes.
		hint := "check odoo.database: the database's name as Odoo's database manager lists it; if it is right, the PostgreSQL behind Odoo is away: try again later"
		switch {
		case oe.MaybePostgresDown() && oe.Status != 0:
			hint = "check odoo.database: the database's name as Odoo's database manager lists it, which the server's dbfilter (odoo.conf) must match; if both are right, the PostgreSQL behind Odoo is away: try again later"
		case oe.NoDatabase() && oe.Status != 0:
			// Odoo's PostgreSQL answers: the error says what Odoo's
			// answers point to (no such database, or the dbfilter).
			hint = "check odoo.database: the database's name as Odoo's database manager lists it, which the server's dbfilter (odoo.conf) must match"
		case oe.Status != 0:
			// It exists and the dbfilter serves it: Odoo cannot open it.
			hint = "the database is there but Odoo cannot open it: Odoo's log says why (\"Database or registry unusable\"); if odoo.database should name another database, fix it"
		}
		c.sourceCheck.problem("odoo.database", fmt.Sprintf("Odoo at %s cannot open database %q: %s", cfg.Odoo.URL, cfg.Odoo.Database, firstLine(err.Error())), hint)
	case odoo.IsTemporary(err):
		c.sourceCheck.problem("odoo.url", fmt.Sprintf("cannot reach Odoo at %s: %s", cfg.Odoo.URL, firstLine(err.Error())),
			"check odoo.url, the network and TLS settings")
	default:
		c.problem("%s (hint: check odoo.url, odoo.database and odoo.protocol)", firstLine(err.Error()))
	}
}

// callProblem reports a failed call on one line; it returns false when
// checking further is pointless (Odoo unreachable or the key refused).
func (c *odooCheck) callProblem(what string, err error) bool {
	if odoo.IsAuth(err) || odoo.IsTemporary(err) {
		c.problem("%s: %s (hint: Odoo stopped answering or refused the key during the check; try again)", what, firstLine(err.Error()))
		return false
	}
	var oe *odoo.Error
	if errors.As(err, &oe) && strings.HasSuffix(oe.Name, ".AccessError") {
		// Odoo's words, without the client's hint of the group to give:
		// the hint here says it.
		msg := odoo.WithoutRightHint(firstLine(oe.Message))
		c.problem("%s: access denied: %s (hint: the bot user lacks a right the agent needs; give it %s)", what, msg, groupFor(oe.Message))
		return true
	}
	c.problem("%s: %s", what, firstLine(err.Error()))
	return true
}

// accessModel finds the model an AccessError names: "… (mrp.workcenter) records".
var accessModel = regexp.MustCompile(`\(([a-z0-9_]+(?:\.[a-z0-9_]+)+)\)`)

// groupFor names the group that grants the agent's rights on the model an
// AccessError message names.
func groupFor(msg string) string {
	m := accessModel.FindStringSubmatch(msg)
	switch {
	case m == nil:
		return "the group that grants it"
	case strings.HasPrefix(m[1], "mrp."):
		return "the group Manufacturing / User (" + m[1] + ")"
	case strings.HasPrefix(m[1], "stock."):
		return "the group Inventory / User (" + m[1] + ")"
	case m[1] == "ir.model.data":
		// No standard group below Access Rights has it (see neededRights).
		return "a group of its own whose one access right is read on Model Data (" + m[1] + "), as the README says"
	}
	return "the group that grants reading " + m[1]
}

// firstLine keeps a server message (Odoo's are often several paragraphs) on one line.
func firstLine(s string) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	return s
}

// checkWorkcenters resolves every machine's work center in one call and
// returns how many distinct codes there are.
func (c *odooCheck) checkWorkcenters(ctx context.Context, cfg *config.Config, client *odoo.Client) (int, bool) {
	codes := make([]string, 0, len(cfg.Machines))
	for _, m := range cfg.Machines {
		if !slices.Contains(codes, m.Workcenter) {
			codes = append(codes, m.Workcenter)
		}
	}
	found, ambiguous, err := client.WorkcentersByCodes(ctx, codes)
	if err != nil {
		return 0, c.callProblem("looking up work centers", err)
	}
	var notFound []string
	for _, code := range codes {
		if _, ok := found[code]; !ok && !slices.Contains(ambiguous, code) {
			notFound = append(notFound, code)
		}
	}
	archived, _ := client.ArchivedWorkcenterCodes(ctx, notFound) // a failure leaves them unexplained
	for i, m := range cfg.Machines {
		wc, ok := found[m.Workcenter]
		path := fmt.Sprintf("machines[%d].workcenter", i)
		switch {
		case ok:
			fmt.Fprintf(c.w, "odoo: machine %s: work center %q %q (id %d)\n", m.ID, wc.Code, wc.Name, wc.ID)
		case slices.Contains(ambiguous, m.Workcenter):
			c.sourceCheck.problem(path, fmt.Sprintf("machine %s: work center code %q matches several work centers", m.ID, m.Workcenter),
				"codes are not unique in Odoo: give each work center its own Code")
		case slices.Contains(archived, m.Workcenter):
			c.sourceCheck.problem(path, fmt.Sprintf("machine %s: the work center with code %q is archived in Odoo", m.ID, m.Workcenter),
				"unarchive it (Manufacturing > Configuration > Work Centers, filter Archived), or give the machine another work center")
		default:
			// Odoo reads in all the bot user's allowed companies when a call
			// names none (the agent names none), so a work center of another
			// company is missing only when that company is not allowed.
			c.sourceCheck.problem(path, fmt.Sprintf("machine %s: no work center with code %q", m.ID, m.Workcenter),
				"set this Code on the work center in Odoo, or fix the machine's workcenter; in a multi-company Odoo, add the work center's company to the bot user's allowed companies (its default company does not matter)")
		}
	}
	return len(codes), true
}

// lossUses lists the loss names the file uses, in file order, each with the
// keys that name it.
func lossUses(cfg *config.Config) []*lossUse {
	var uses []*lossUse
	add := func(name, path, by string) {
		if name == "" {
			return
		}
		for _, u := range uses {
			if u.name == name {
				u.paths, u.by = append(u.paths, path), append(u.by, by)
				return
			}
		}
		uses = append(uses, &lossUse{name: name, paths: []string{path}, by: []string{by}})
	}
	for i, m := range cfg.Machines {
		r := m.DowntimeReason
		if r == nil {
			continue
		}
		codes := make([]string, 0, len(r.Map))
		for code := range r.Map {
			codes = append(codes, code)
		}
		slices.Sort(codes)
		p := fmt.Sprintf("machines[%d].downtime_reason", i)
		for _, code := range codes {
			add(r.Map[code], p+".map."+code, "machine "+m.ID)
		}
		add(r.Default, p+".default", "machine "+m.ID)
	}
	add(cfg.Odoo.DefaultLoss, "odoo.default_loss", "")
	return uses
}

func usedBy(by string) string {
	if by == "" {
		return ""
	}
	return ", used by " + by
}

// checkLosses resolves every loss reason name the file uses.
func (c *odooCheck) checkLosses(ctx context.Context, cfg *config.Config, client *odoo.Client) (int, bool) {
	uses := lossUses(cfg)
	for _, u := range uses {
		id, err := client.LossID(ctx, u.name)
		switch {
		case err == nil:
			fmt.Fprintf(c.w, "odoo: loss reason %q (id %d)\n", u.name, id)
		case errors.Is(err, odoo.ErrNotFound):
			// At each place that names it: the file may name it often.
			for i, path := range u.paths {
				c.sourceCheck.problem(path, fmt.Sprintf("no loss reason %q%s", u.name, usedBy(u.by[i])),
					"use the exact English name of a loss reason in Odoo, or its external id such as mrp.block_reason1")
			}
		case errors.Is(err, odoo.ErrAmbiguous):
			for i, path := range u.paths {
				c.sourceCheck.problem(path, fmt.Sprintf("loss reason %q matches several records%s", u.name, usedBy(u.by[i])),
					"use its external id, such as mrp.block_reason1, or rename one")
			}
		default:
			if !c.callProblem(fmt.Sprintf("looking up loss reason %q", u.name), err) {
				return 0, false
			}
		}
	}
	return len(uses), true
}

// neededRights lists the rights the agent uses with cfg: the same on Odoo
// 17, 18 and 19.
func neededRights(cfg *config.Config) []odooRight {
	const (
		mrpUser = "give the user the group Manufacturing / User"
		invUser = "give the user the group Inventory / User"
		// Every internal user's (stock's access_stock_quant_all and
		// access_stock_move_line_all).
		internalUser = "give the user the group Internal User (user type)"
	)
	rights := []odooRight{
		{"mrp.workorder", odoo.OpRead, "to find each machine's work order in progress", mrpUser},
		{"mrp.workorder", odoo.OpWrite, "to write produced quantities", mrpUser},
		// Odoo writes them on the order with the caller's rights (17/18
		// _set_qty_producing, 19 write): refused without this one.
		{"mrp.production", odoo.OpWrite, "to write produced quantities, which Odoo writes on the work order's manufacturing order", mrpUser},
		{"mrp.workcenter.productivity", odoo.OpRead, "to read downtime lines back, and which of several work orders in progress is worked on", mrpUser},
		{"mrp.workcenter.productivity", odoo.OpCreate, "to record downtime", mrpUser},
		{"mrp.workcenter.productivity", odoo.OpWrite, "to update and close downtime", mrpUser},
	}
	// The order's new producing quantity sets its component moves'
	// quantities with the caller's rights (mrp_workorder.py
	// _set_qty_producing, then mrp_production.py _set_qty_producing:
	// move._set_quantity_done, move.picked = True; 19.0 gets there from
	// the write of qty_produced through the work orders' qty_producing):
	// every quantity write that changes the producing quantity of an
	// order with components is refused without it, 17.0 to 19.0. (The
	// move lines it creates, updates and deletes are every internal
	// user's.)
	rights = append(rights, odooRight{"stock.move", odoo.OpWrite,
		"to write produced quantities (Odoo sets the manufacturing order's component quantities on its stock moves, with the bot user's rights)", invUser})
	if slices.ContainsFunc(cfg.Machines, func(m config.Machine) bool { return m.ScrapCount != nil }) {
		rights = append(rights,
			odooRight{"stock.scrap", odoo.OpRead, "to find its bookings and watch the drafts Odoo leaves", invUser},
			odooRight{"stock.scrap", odoo.OpCreate, "to book scrap", invUser},
			odooRight{"stock.scrap", odoo.OpWrite, "to update and validate scrap", invUser},
			// action_validate first reads a storable product's stock on
			// hand with the caller's rights (stock_scrap.py
			// check_available_qty; qty_available is compute_sudo=False and
			// reads stock moves, then quants): refused without these,
			// also where stock is short.
			odooRight{"stock.move", odoo.OpRead, "to validate scrap (Odoo reads the product's stock on hand from stock moves and quants, with the bot user's rights)", invUser},
			odooRight{"stock.quant", odoo.OpRead, "to validate scrap (Odoo reads the product's stock on hand from stock moves and quants, with the bot user's rights)", internalUser},
			// do_scrap moves the pieces out of stock with the caller's
			// rights: a custom group without these leaves every scrap a
			// draft with Odoo's refusal.
			odooRight{"stock.move", odoo.OpCreate, "to validate scrap (Odoo books it as a stock move, with the bot user's rights)", invUser},
			// (It then marks the move done, writing it: checked above,
			// for quantities.)
			odooRight{"stock.move.line", odoo.OpCreate, "to validate scrap (Odoo books it as a stock move, with the bot user's rights)", internalUser})
	}
	// No standard group below Access Rights reads external ids (base's
	// access_ir_model_data_user: nothing, 17.0-19.0).
	return append(rights, odooRight{"ir.model.data", odoo.OpRead,
		"to find the agent's downtime and scrap records by external id",
		"give the user a group of its own whose one access right is read on Model Data (ir.model.data): Odoo gives it to no standard group but Administration / Access Rights, which may give itself any right"})
}

// botGroups names the rights the agent does need, as the README's bot
// user has them (said beside a right it never uses).
const botGroups = "the agent needs only Manufacturing / User and a group of its own reading Model Data (the README's bot user)"

// overRights are rights the agent never uses whose holder may do far more
// than it needs: with one of them the bot user's key is worth more to an
// attacker than it should be. Each one's group, in the order checked.
var overRights = []struct {
	model, op, what string
	// settings: the Settings group holds it too (Access Rights is implied
	// by it): not said again of an administrator.
	settings bool
}{
	{"ir.config_parameter", odoo.OpWrite, "has administrator rights (it may change system parameters); " + botGroups + ": give it a user of its own without Administration rights", false},
	{"res.groups", odoo.OpWrite, "has Administration / Access Rights (it may change groups, and so give itself any right); " + botGroups + ": take Access Rights away", true},
	{"mrp.workcenter", odoo.OpWrite, "is a Manufacturing / Administrator (it may change work centers, loss reasons and bills of materials); the agent needs only Manufacturing / User: give it that instead", false},
}

// checkNotOverPrivileged warns when the bot user holds more than the agent
// needs: an administrator, a user who may change groups, or a
// manufacturing administrator. A warning, not a problem: it works.
func (c *odooCheck) checkNotOverPrivileged(ctx context.Context, client *odoo.Client, who string) {
	admin := false
	for _, r := range overRights {
		if r.settings && admin {
			continue
		}
		if ok, err := client.CanAccess(ctx, r.model, r.op); err == nil && ok {
			admin = admin || r.model == "ir.config_parameter"
			fmt.Fprintf(c.w, "odoo: warning: %s %s\n", who, r.what)
		}
	}
}

// checkRights asks Odoo whether the bot user holds each needed right.
func (c *odooCheck) checkRights(ctx context.Context, cfg *config.Config, client *odoo.Client, who string) (int, bool) {
	rights := neededRights(cfg)
	for _, r := range rights {
		ok, err := client.CanAccess(ctx, r.model, r.op)
		switch {
		case err != nil:
			if !c.callProblem(fmt.Sprintf("checking %s on %s", r.op, r.model), err) {
				return 0, false
			}
		case !ok:
			c.problem("%s may not %s %s, needed %s (hint: %s)", who, r.op, r.model, r.why, r.hint)
		}
	}
	return len(rights), true
}
