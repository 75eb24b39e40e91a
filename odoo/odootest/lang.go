package odootest

import (
	"fmt"
	"slices"
)

// Languages. Odoo renders the messages its code raises with _() in one
// language, picked when the message is made (odoo/tools/translate.py
// _get_lang, from the frame of the code raising it), in this order:
//   - the call's context lang (env.lang: execute_kw's context keyword,
//     JSON-2's context parameter); en_US is the source text itself;
//   - the request's environment's lang (request.env.lang): the session's
//     default language, which http.py takes from the Accept-Language header
//     (en_US without one) and ir_http._pre_dispatch checks with get_lang:
//     kept if it is active, else the company's language, else en_US, else
//     the first active one;
//   - when the request has no environment — a JSON-RPC request to a server
//     with several databases and no dbfilter picking one (http.py serves it
//     with no database: _serve_nodb) — Odoo 18 and 19 guess the language of
//     the user (res.users context_get, the user's preference: "Last
//     resort"); Odoo 17 fails on request.env being None and leaves the
//     message untranslated.
//
// JSON-2 (19) is served with a database (the X-Odoo-Database header's, or
// the server's only one), so with a request environment. So the bot user's
// preference shows only over JSON-RPC in Odoo 18/19 served without a
// database; the company's language (English deactivated) over both.
//
// (A message made with env._(), 18 and later, takes the call's context
// lang or en_US alone: api.py Environment._.)
//
// Only the messages plantedge tells apart are translated here (as Odoo
// falls back to the source text where a catalogue lacks one).

// translations are those messages in French and German, keyed by language
// and source text: close to Odoo's catalogues (base/i18n); what the tests
// need of them is that they are not English.
var translations = map[string]map[string]string{
	"fr_FR": {
		msgIncompatible:     "Sociétés incompatibles sur les enregistrements :",
		msgIncompatibleLine: "- %s appartient à la société %s et %s (%s : %s) appartient à une autre société.",
		msgLoginCooldown:    "Trop d'échecs de connexion, veuillez patienter un peu avant de réessayer.",
	},
	"de_DE": {
		msgIncompatible:     "Inkompatible Unternehmen bei Datensätzen:",
		msgIncompatibleLine: "- %s gehört zum Unternehmen %s und %s (%s: %s) gehört zu einem anderen Unternehmen.",
		msgLoginCooldown:    "Zu viele fehlgeschlagene Anmeldeversuche, bitte warten Sie etwas, bevor Sie es erneut versuchen.",
	},
}

// Source texts (Odoo's msgids, with Python's %(name)r / %(name)s as the
// emulator's %s in the same order).
const (
	msgIncompatible     = "Incompatible companies on records:"
	msgIncompatibleLine = "- %s belongs to company %s and %s (%s: %s) belongs to another company."
	msgLoginCooldown    = "Too many login failures, please wait a bit before trying again."
)

// SetUserLang sets a user's language preference (res.users.lang, e.g.
// "fr_FR"), activating the language as Odoo requires of a preference.
func (s *Server) SetUserLang(uid int64, lang string) { s.setLang("res.users", uid, lang) }

// SetCompanyLang sets a company's language (its partner's lang),
// activating it.
func (s *Server) SetCompanyLang(companyID int64, lang string) {
	s.setLang("res.company", companyID, lang)
}

// setLang sets record id's lang in model, activating the language.
func (s *Server) setLang(model string, id int64, lang string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if r, ok := s.models[model].recs[id]; ok {
		r["lang"] = lang
		s.activateLang(lang)
	}
}

// DeactivateEnglish deactivates en_US (res.lang active=False), as a
// database kept in its own language can be; get_lang then falls back to
// the company's language.
func (s *Server) DeactivateEnglish() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.langs = slices.DeleteFunc(s.activeLangs(), func(l string) bool { return l == "en_US" })
}

// activeLangs is the active languages' codes (under mu), sorted.
func (s *Server) activeLangs() []string {
	if s.langs == nil {
		s.langs = []string{"en_US"}
	}
	return s.langs
}

func (s *Server) activateLang(lang string) {
	if lang != "" && !slices.Contains(s.activeLangs(), lang) {
		s.langs = append(s.langs, lang)
		slices.Sort(s.langs)
	}
}

// userLang is res.users.lang of uid (en_US when unset).
func (s *Server) userLang(uid int64) string {
	if l, _ := s.models["res.users"].recs[uid]["lang"].(string); l != "" {
		return l
	}
	return "en_US"
}

// requestLang is tools/misc.py get_lang(env) for the request's
// environment of user uid whose context lang is the session's default
// (en_US: no Accept-Language header): that if active, else the user's
// company's language if active, else en_US if active, else the first
// active one.
func (s *Server) requestLang(uid int64) string {
	active := s.activeLangs()
	if slices.Contains(active, "en_US") {
		return "en_US"
	}
	company := asInt(s.models["res.users"].recs[uid]["company_id"])
	if l, _ := s.models["res.company"].recs[company]["lang"].(string); l != "" && slices.Contains(active, l) {
		return l
	}
	if len(active) == 0 {
		return "en_US"
	}
	return active[0]
}

// msgLang is the language _() renders a message in for a call by uid over
// proto with context ctx (under mu): see Languages above. A JSON-RPC
// request's environment is the public one of auth='none' (get_lang of the
// superuser's environment).
func (s *Server) msgLang(proto string, uid int64, ctx map[string]any) string {
	if l, _ := ctx["lang"].(string); l != "" {
		return l
	}
	switch {
	case proto == "json2":
		return s.requestLang(uid)
	case s.monoDB() != "":
		return s.requestLang(1)
	case s.v() < 18:
		return "en_US" // 17: request.env.lang fails on None; _get_translation gives the source
	}
	return s.userLang(uid)
}

// tr is _(source) in the language of the call being served (under mu).
func (s *Server) tr(source string) string {
	return translate(s.msgLang(s.curProto, s.curUID, s.curCtx), source)
}

// translate is source in lang, the source itself where the catalogue has
// none.
func translate(lang, source string) string {
	if t, ok := translations[lang][source]; ok {
		return t
	}
	return source
}

// trf is tr with the arguments formatted in.
func (s *Server) trf(source string, a ...any) string {
	return fmt.Sprintf(s.tr(source), a...)
}
