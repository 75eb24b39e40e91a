package config

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/parser"
	"github.com/goccy/go-yaml/token"
)

// maxNodes bounds the work of decoding one file, so that a file that
// expands aliases exponentially ("billion laughs") is refused, not decoded.
const maxNodes = 200000

// abortTooLarge stops decoding at the maxNodes-th value: the one problem
// of the file (see Parse).
func (d *decoder) abortTooLarge(n ast.Node, path string) {
	if d.aborted {
		return
	}
	d.aborted = true
	d.problem(n, path, fmt.Sprintf("more than %d values to decode, aliases expanded: too large to check", maxNodes),
		"a thousand machines with four signals each take about 60,000; if the file uses anchors and aliases, an alias that expands into others multiplies them")
	p := d.probs[len(d.probs)-1]
	d.tooLarge = &p
}

// maxMergeDepth bounds nested merge keys (<<), which also stops an anchor
// that merges itself.
const maxMergeDepth = 16

// decoder decodes a goccy/go-yaml AST into the config structs by reflection,
// collecting every problem (go-yaml's own decoder stops at the first one)
// and the position of every key path for later validation messages.
type decoder struct {
	file        string
	probs       []Problem
	warns       []Problem
	pos         map[string]Pos
	vias        map[string]string // key path -> the aliases its value was reached through (Problem.Via)
	via         string            // the aliases the value being decoded was reached through
	anchors     map[string][]*ast.AnchorNode
	nodes       int
	mergeDepth  int
	aborted     bool
	tooLarge    *Problem // the problem of a file over maxNodes
	lines       [][]byte // the file's lines, for what the parser leaves out (comments)
	decodedRoot bool
	// undecoded: key paths of a mapping or a list that did not decode at
	// all (written as text, an alias to no anchor): the keys it would have
	// held are not also "required" (Parse).
	undecoded map[string]bool
}

func newDecoder(file string) *decoder {
	return &decoder{file: file, pos: map[string]Pos{}, vias: map[string]string{}, anchors: map[string][]*ast.AnchorNode{}, undecoded: map[string]bool{}}
}

func posOf(n ast.Node) Pos {
	if n == nil {
		return Pos{}
	}
	// A block mapping's own token is its first ':'; point at its first key.
	switch t := n.(type) {
	case *ast.MappingNode:
		if len(t.Values) > 0 && !t.IsFlowStyle {
			return posOf(t.Values[0])
		}
	case *ast.MappingValueNode:
		if t.Key != nil {
			return posOf(t.Key)
		}
	}
	tk := n.GetToken()
	if tk == nil || tk.Position == nil {
		return Pos{}
	}
	return Pos{tk.Position.Line, tk.Position.Column}
}

func (d *decoder) problem(n ast.Node, path, msg, hint string) {
	d.probs = append(d.probs, d.at(n, path, msg, hint))
}

// at is a problem at node n, for the value at path: with the aliases it
// was reached through when n is in an anchor's text.
func (d *decoder) at(n ast.Node, path, msg, hint string) Problem {
	p := posOf(n)
	return Problem{File: d.file, Line: p.Line, Column: p.Column, Path: path, Msg: msg, Hint: hint, Via: d.via}
}

// through notes, while fn decodes a value reached through the aliases as
// (outermost first; none: not through an alias), that problems found in
// it are via them.
func (d *decoder) through(as []*ast.AliasNode, fn func()) {
	if len(as) == 0 {
		fn()
		return
	}
	saved := d.via
	for _, a := range as {
		name := ""
		if a.Value != nil {
			name = a.Value.GetToken().Value
		}
		one := fmt.Sprintf("*%s at line %d", name, posOf(a).Line)
		switch {
		case d.via == "":
			d.via = one
		case !strings.Contains(", "+d.via+", ", ", "+one+", "): // (an anchor merging itself: once)
			d.via += ", " + one
		}
	}
	fn()
	d.via = saved
}

// aliasOf is the alias n is (under its tags), as a list for through.
func aliasOf(n ast.Node) []*ast.AliasNode {
	for {
		switch t := n.(type) {
		case *ast.TagNode:
			n = t.Value
		case *ast.AliasNode:
			return []*ast.AliasNode{t}
		default:
			return nil
		}
	}
}

type anchorCollector struct{ d *decoder }

func (a anchorCollector) Visit(n ast.Node) ast.Visitor {
	if an, ok := n.(*ast.AnchorNode); ok && an.Name != nil {
		name := an.Name.GetToken().Value
		a.d.anchors[name] = append(a.d.anchors[name], an)
	}
	return a
}

// keyNoSpace is a line starting "key:value": YAML needs a space after the
// colon of a key.
var keyNoSpace = regexp.MustCompile(`^\s*(?:- )?([A-Za-z_][A-Za-z0-9_]*):[^\s:/]`)

// noSpaceAfterColon returns the key of line (1-based) of the file's lines
// when the line reads "key:value", else "".
func noSpaceAfterColon(lines [][]byte, line int) string {
	if line < 1 || line > len(lines) {
		return ""
	}
	if m := keyNoSpace.FindSubmatch(lines[line-1]); m != nil {
		return string(m[1])
	}
	return ""
}

// keyLine is a line holding a key: its indentation and the key.
var keyLine = regexp.MustCompile(`^( *)[^\s#-][^:#]*:(?:\s|$)`)

// listLevelKey finds, for a line (1-based) holding a key indented as the
// "- " of a list entry above it (running: pasted two spaces short under
// machines:, the val54 probe: "value is not allowed in this context" and
// "check the indentation"), that entry's line and the column its keys
// begin at; 0 otherwise.
func listLevelKey(lines [][]byte, line int) (int, int) {
	if line < 2 || line > len(lines) {
		return 0, 0
	}
	m := keyLine.FindSubmatch(lines[line-1])
	if m == nil {
		return 0, 0
	}
	n := len(m[1])
	for l := line - 1; l >= 1; l-- {
		t := lines[l-1]
		rest := bytes.TrimLeft(t, " ")
		if len(bytes.TrimSpace(rest)) == 0 || rest[0] == '#' {
			continue
		}
		switch ind := len(t) - len(rest); {
		case ind > n:
			continue
		case ind < n:
			return 0, 0
		}
		if !bytes.HasPrefix(rest, []byte("- ")) {
			return 0, 0 // a key beside it: not this slip
		}
		return l, n + 3 + len(rest[2:]) - len(bytes.TrimLeft(rest[2:], " "))
	}
	return 0, 0
}

// quoteOpens is where a quoted value begins: after a key's ": ", a list's
// "- ", or a flow mapping's or list's "{", "[" or ",".
var quoteOpens = regexp.MustCompile(`(?:^\s*|: |- |[{\[,]\s*)(["'])`)

// unclosedQuote finds, on the lines up to line (1-based) and at most 20
// before it, the last quoted value that does not end on its own line
// (node: "ns=2;i=5002 with its closing quote forgotten): the parser reads
// on to the next quote and reports a line or more further on (the OT
// probe). It returns that quote's line and column (in bytes, 1-based),
// or 0.
func unclosedQuote(lines [][]byte, line int) (int, int) {
	for l := min(line, len(lines)); l >= 1 && l > line-20; l-- {
		text := lines[l-1]
		for _, m := range quoteOpens.FindAllSubmatchIndex(text, -1) {
			q, at := text[m[2]], m[2]
			if at > 0 && bytes.Contains(text[:at], []byte(" #")) {
				break // in a comment
			}
			closed := false
			for i := at + 1; i < len(text); i++ {
				switch {
				case q == '"' && text[i] == '\\':
					i++
				case text[i] == q && q == '\'' && i+1 < len(text) && text[i+1] == '\'':
					i++ // '' is a quote inside a single-quoted value
				case text[i] == q:
					closed = true
				}
				if closed {
					break
				}
			}
			if !closed {
				return l, at + 1
			}
		}
	}
	return 0, 0
}

// tabCause reports whether a tab plausibly caused the syntax error msg at
// pos: the parser names it, or it is in the error's line up to its
// column. A tab elsewhere (in a comment, a value, another part of the
// file) is not (the val54 probe: a tab after "site: plant-1" gave "indent
// with spaces, not tabs" for a misindented key 15 lines below).
func tabCause(lines [][]byte, msg string, pos *token.Position) bool {
	if strings.Contains(msg, "tab") || strings.Contains(msg, "\t") {
		return true
	}
	if pos == nil || pos.Line < 1 || pos.Line > len(lines) {
		return false
	}
	text := []rune(string(lines[pos.Line-1]))
	return strings.ContainsRune(string(text[:min(max(pos.Column, 0), len(text))]), '\t')
}

// parse runs the YAML parser; a panic inside it becomes an error, so no
// input file can crash the agent or validate.
func parse(data []byte) (f *ast.File, err error) {
	defer func() {
		if r := recover(); r != nil {
			f, err = nil, fmt.Errorf("yaml parser failed: %v", r)
		}
	}()
	return parser.ParseBytes(data, 0, parser.AllowDuplicateMapKey())
}

func (d *decoder) decodeFile(data []byte, c *Config) {
	d.lines = bytes.Split(data, []byte("\n"))
	f, err := parse(data)
	if err != nil {
		var ye yaml.Error
		if errors.As(err, &ye) && ye.GetToken() != nil {
			tk := ye.GetToken()
			hint := "fix the YAML syntax: check the indentation of this line and the next against the lines above, and the quotes and brackets"
			p := Problem{File: d.file, Msg: "yaml: " + ye.GetMessage(), Hint: hint}
			if tabCause(d.lines, ye.GetMessage(), tk.Position) {
				p.Hint = "fix the YAML syntax; indent with spaces, not tabs"
			}
			if tk.Position != nil {
				p.Line, p.Column = tk.Position.Line, tk.Position.Column
				if col, what := lookalike(d.lines, p.Line); col > 0 {
					// Shown where it is: it looks like what it is not.
					p.Column = col
					p.Hint = "fix the YAML syntax: here is " + what + " (a paste from a spreadsheet or a web page?)"
				} else if l, col, what := lookalikeBefore(d.lines, p.Line); l > 0 {
					p.Hint = fmt.Sprintf("fix the YAML syntax: line %d column %d holds %s (a paste from a spreadsheet or a web page?)", l, col, what)
				} else if k := noSpaceAfterColon(d.lines, p.Line); k != "" {
					p.Hint = fmt.Sprintf("put a space after the colon: %q is read as one word, not the key %s", k+":…", k)
				} else if l, col := unclosedQuote(d.lines, p.Line); l > 0 {
					p.Hint = fmt.Sprintf("close the quote opened at line %d column %d: YAML reads a quoted value on to the next quote", l, col)
				} else if l, col := listLevelKey(d.lines, p.Line); l > 0 {
					p.Hint = fmt.Sprintf("this key is indented as the \"- \" that begins the list entry at line %d: indent it to column %d to make it that entry's, or begin a new entry with \"- \"", l, col)
				}
			}
			d.probs = append(d.probs, p)
		} else {
			d.probs = append(d.probs, Problem{File: d.file, Msg: "yaml: " + err.Error()})
		}
		return
	}
	var docs []*ast.DocumentNode
	for _, doc := range f.Docs {
		if doc != nil && doc.Body != nil {
			docs = append(docs, doc)
		}
	}
	if len(docs) > 1 {
		d.problem(docs[1].Body, "", "more than one YAML document", "keep the whole configuration in one document; remove the second ---")
	}
	d.decodedRoot = true
	d.lookalikeWarnings()
	if len(docs) == 0 {
		return // empty file: validation reports the missing keys
	}
	for _, doc := range docs[:1] {
		ast.Walk(anchorCollector{d}, doc.Body)
	}
	d.decode("", docs[0].Body, reflect.ValueOf(c).Elem())
}

// resolve strips tags and anchors and follows aliases.
func (d *decoder) resolve(path string, n ast.Node) ast.Node {
	for i := 0; n != nil && i < 100; i++ {
		switch t := n.(type) {
		case *ast.TagNode:
			n = t.Value
		case *ast.AnchorNode:
			n = t.Value
		case *ast.AliasNode:
			name := ""
			if t.Value != nil {
				name = t.Value.GetToken().Value
			}
			target := d.anchorBefore(name, t)
			if target == nil {
				d.problem(t, path, fmt.Sprintf("unknown alias *%s", name), "define the anchor &"+name+" before using it")
				return nil
			}
			n = target.Value
		default:
			return n
		}
	}
	return n
}

// anchorBefore returns the last anchor of that name defined before the
// alias: d.anchors holds each name's anchors in file order (the walk's),
// so a binary search finds it — a file redefining one name at every
// machine stays linear to check (the scan of all of them for each alias
// took validate 1.2 s for 6,000 machines).
func (d *decoder) anchorBefore(name string, alias ast.Node) *ast.AnchorNode {
	as := d.anchors[name]
	ap := alias.GetToken().Position
	if ap == nil {
		if len(as) == 0 {
			return nil
		}
		return as[len(as)-1]
	}
	i := sort.Search(len(as), func(i int) bool {
		p := as[i].GetToken().Position
		return p != nil && p.Offset >= ap.Offset
	})
	if i == 0 {
		return nil
	}
	return as[i-1]
}

func isNull(n ast.Node) bool {
	if n == nil {
		return true
	}
	_, ok := n.(*ast.NullNode)
	return ok
}

// scalar returns the text of a scalar node.
func scalar(n ast.Node) (string, bool) {
	switch t := n.(type) {
	case *ast.StringNode:
		return t.Value, true
	case *ast.LiteralNode:
		if t.Value != nil {
			return t.Value.Value, true
		}
		return "", true
	case *ast.IntegerNode, *ast.FloatNode, *ast.BoolNode, *ast.InfinityNode, *ast.NanNode:
		return n.GetToken().Value, true
	}
	return "", false
}

func kindName(n ast.Node) string {
	switch n.(type) {
	case *ast.MappingNode, *ast.MappingValueNode:
		return "a mapping"
	case *ast.SequenceNode:
		return "a list"
	case *ast.NullNode, nil:
		return "nothing"
	case *ast.BoolNode:
		return "a boolean"
	case *ast.IntegerNode, *ast.FloatNode:
		return "a number"
	}
	return "a string"
}

// duplicateKey is the problem of a key written twice in a mapping.
const duplicateKey = "duplicate key"

// nothingString is the problem of a string key written with nothing.
const nothingString = "expected a string, got nothing"

var (
	durationType    = reflect.TypeFor[Duration]()
	offDurationType = reflect.TypeFor[OffDuration]()
	byteSizeType    = reflect.TypeFor[ByteSize]()
)

func (d *decoder) decode(path string, raw ast.Node, v reflect.Value) {
	if d.aborted {
		return
	}
	d.nodes++
	if d.nodes > maxNodes {
		d.abortTooLarge(raw, path)
		return
	}
	n := d.resolve(path, raw)
	if n == nil && raw != nil {
		if _, isAlias := raw.(*ast.AliasNode); isAlias {
			d.undecoded[path] = true
			return
		}
	}
	d.through(aliasOf(raw), func() { d.decodeValue(path, n, v) })
}

// decodeValue decodes n, resolved (decode), into v.
func (d *decoder) decodeValue(path string, n ast.Node, v reflect.Value) {
	if path != "" && n != nil {
		d.pos[path] = posOf(n)
		if d.via != "" {
			d.vias[path] = d.via
		}
	}
	t := v.Type()
	switch t {
	case durationType:
		s, ok := scalar(n)
		if !ok || isNull(n) {
			d.problem(n, path, "expected a duration, got "+kindName(n), `write it like "500ms", "10s" or "5m"`)
			return
		}
		dur, err := ParseDuration(s)
		if err != nil {
			d.problem(n, path, err.Error(), `write it like "500ms", "10s" or "5m"`)
			return
		}
		v.Set(reflect.ValueOf(dur))
		return
	case offDurationType:
		s, ok := scalar(n)
		if !ok || isNull(n) {
			d.problem(n, path, "expected a duration or off, got "+kindName(n), `write it like "45m" or "2h", or off`)
			return
		}
		if b, isBool := n.(*ast.BoolNode); isBool {
			// false reads as off to a person (ux45); true says nothing
			// of how long.
			if b.Value {
				d.problem(n, path, "expected a duration or off, got "+s, `write it like "45m" or "2h", or off`)
				return
			}
			s = "off"
		}
		dur, err := ParseOffDuration(s)
		if err != nil {
			d.problem(n, path, err.Error(), `write it like "45m" or "2h", or off`)
			return
		}
		v.Set(reflect.ValueOf(dur))
		return
	case byteSizeType:
		s, ok := scalar(n)
		if !ok || isNull(n) {
			d.problem(n, path, "expected a size, got "+kindName(n), `write it like "512MiB", "1GiB" or a number of bytes`)
			return
		}
		b, err := ParseByteSize(s)
		if err != nil {
			d.problem(n, path, err.Error(), `write it like "512MiB", "1GiB" or a number of bytes`)
			return
		}
		v.Set(reflect.ValueOf(b))
		return
	}
	switch t.Kind() {
	case reflect.Pointer:
		if isNull(n) {
			if n != nil && t.Elem().Kind() == reflect.Struct {
				// "running:" with nothing after it (its source commented
				// out, or forgotten): not read. A warning, not an error: a
				// file that loaded before must not stop the agent after an
				// upgrade.
				d.warns = append(d.warns, d.at(n, path, "empty: this signal is not read", "give its source (opcua: {...} or mqtt: {...}), or remove the key"))
			}
			if n != nil && strings.HasSuffix(path, ".factor") {
				// "factor:" with its value forgotten (a counter in grams
				// whose 0.001 was never filled in): 1, a thousand times
				// the kilograms. A warning, as for a signal above.
				d.warns = append(d.warns, d.at(n, path, "empty: read as 1, as if it were left out",
					"give the units one step of the counter makes, e.g. 0.001, or remove the key"))
			}
			v.Set(reflect.Zero(t))
			return
		}
		nv := reflect.New(t.Elem())
		probs := len(d.probs)
		d.decode(path, n, nv.Elem())
		if len(d.probs) > probs && t.Elem().Kind() != reflect.Struct {
			return // a value that did not decode stays unset: one problem, not a second of its zero
		}
		v.Set(nv)
	case reflect.Struct:
		if isNull(n) {
			return
		}
		d.decodeStruct(path, n, v)
	case reflect.Map:
		if isNull(n) {
			return
		}
		d.decodeMap(path, n, v)
	case reflect.Slice:
		if isNull(n) {
			return
		}
		seq, ok := n.(*ast.SequenceNode)
		if !ok {
			d.problem(n, path, "expected a list, got "+kindName(n), "start each entry with \"- \"")
			d.undecoded[path] = true
			return
		}
		out := reflect.MakeSlice(t, 0, len(seq.Values))
		for i, item := range seq.Values {
			ev := reflect.New(t.Elem())
			if df, ok := ev.Interface().(interface{ setDefaults() }); ok {
				df.setDefaults()
			}
			d.decode(fmt.Sprintf("%s[%d]", path, i), item, ev.Elem())
			out = reflect.Append(out, ev.Elem())
		}
		v.Set(out)
	case reflect.String:
		s, ok := scalar(n)
		if !ok {
			d.problem(n, path, "expected a string, got "+kindName(n), "")
			return
		}
		if sn, plain := n.(*ast.StringNode); plain {
			d.hashComment(path, sn)
			d.typographicQuotes(path, sn)
		}
		d.envReference(path, n, s)
		v.SetString(s)
	case reflect.Bool:
		b, ok := n.(*ast.BoolNode)
		if !ok {
			d.problem(n, path, "expected true or false, got "+describe(n), quotedHint(n))
			return
		}
		v.SetBool(b.Value)
	case reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uint:
		s, ok := scalar(n)
		if d.leadingZero(n, path, s) {
			return
		}
		u, err := strconv.ParseUint(strings.ReplaceAll(s, "_", ""), 0, t.Bits())
		if _, isInt := n.(*ast.IntegerNode); !ok || !isInt || err != nil {
			d.problem(n, path, fmt.Sprintf("expected a whole number from 0 to %d, got %s", uint64(math.MaxUint64)>>(64-t.Bits()), describe(n)), quotedHint(n))
			return
		}
		v.SetUint(u)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		s, ok := scalar(n)
		if d.leadingZero(n, path, s) {
			return
		}
		i, err := strconv.ParseInt(strings.ReplaceAll(s, "_", ""), 0, t.Bits())
		if _, isInt := n.(*ast.IntegerNode); !ok || !isInt || err != nil {
			d.problem(n, path, "expected a whole number, got "+describe(n), quotedHint(n))
			return
		}
		v.SetInt(i)
	case reflect.Float64, reflect.Float32:
		var f float64
		switch x := n.(type) {
		case *ast.IntegerNode:
			s, _ := scalar(x)
			if d.leadingZero(n, path, s) {
				return
			}
			i, err := strconv.ParseInt(strings.ReplaceAll(s, "_", ""), 0, 64)
			if err != nil {
				d.problem(n, path, "expected a number, got "+describe(n), "")
				return
			}
			f = float64(i)
		case *ast.FloatNode:
			f = x.Value
		default:
			d.problem(n, path, "expected a number, got "+describe(n), quotedHint(n))
			return
		}
		if math.IsNaN(f) || math.IsInf(f, 0) {
			d.problem(n, path, "expected a finite number", "")
			return
		}
		v.SetFloat(f)
	default:
		d.problem(n, path, "unsupported type "+t.String(), "")
	}
}

// hashAfter is what follows a plain value that " #" ended: a comment whose
// text starts right after the # (a comment is mostly "# text") with a digit
// or holds a tag's or topic's separator in its first word ("#1.Count",
// "#2/state", "#A;B"): a name's "#", not a comment written "#main press",
// which is not warned of.
var hashAfter = regexp.MustCompile(`^[ \t]+#(\d\S*|[^\s./;]*[./;]\S*)`)

// maxHashLine is the longest line hashComment looks at.
const maxHashLine = 4096

// hashComment warns of a plain value that " #" cut short: a PLC tag "Press
// #1.Count" or a topic "line #2/state" copied in without quotes is read up
// to the " #", a node or topic that does not exist (the ot-audit probe).
func (d *decoder) hashComment(path string, n *ast.StringNode) {
	tk := n.GetToken()
	if tk == nil || tk.Type != token.StringType || tk.Position == nil || n.Value == "" ||
		tk.Position.Line < 1 || tk.Position.Line > len(d.lines) {
		return
	}
	raw := d.lines[tk.Position.Line-1]
	if len(raw) > maxHashLine || !bytes.Contains(raw, []byte(" #")) {
		// (A file written on one line, flow style, is not looked at: the
		// walk to each value's column would be quadratic in its length.)
		return
	}
	line := string(raw)
	start, col := len(line), 1
	for i := range line { // the token's column counts characters from 1
		if col == tk.Position.Column {
			start = i
			break
		}
		col++
	}
	if !strings.HasPrefix(line[start:], n.Value) {
		return // a value over several lines
	}
	end := start + len(n.Value)
	m := hashAfter.FindStringSubmatchIndex(line[end:])
	if m == nil {
		return
	}
	hash := end + m[2] - 1
	d.warns = append(d.warns, Problem{File: d.file, Line: tk.Position.Line, Column: utf8.RuneCountInString(line[:hash]) + 1, Path: path,
		Msg:  fmt.Sprintf("a value ends at \" #\": YAML reads %q and the rest of the line as a comment, so the value is %q", line[hash:end+m[3]], n.Value),
		Hint: `quote the value ("...") if the # is part of it`, Via: d.via})
}

// curlyQuotes are the quotes a word processor or a spreadsheet types for
// " and ': not YAML's.
const curlyQuotes = "\u201c\u201d\u201e\u2018\u2019\u201a\u00ab\u00bb"

// typographicQuotes warns of a plain value that begins and ends with
// typographic quotes (node: “ns=2;s=M1.Good”, pasted from a document or a
// spreadsheet): YAML does not take them for quotes, so they are part of
// the value — a work center, a topic or a loss name nobody has (the val54
// probe: the node id was refused with no word of the quotes; a work
// center “WC2” validated OK). A secret's value is not repeated.
func (d *decoder) typographicQuotes(path string, n *ast.StringNode) {
	r := []rune(n.Value)
	if len(r) < 2 || !strings.ContainsRune(curlyQuotes, r[0]) || !strings.ContainsRune(curlyQuotes, r[len(r)-1]) {
		return
	}
	msg := fmt.Sprintf("written in typographic quotes (%s), which YAML does not take for quotes: they are part of the value", n.Value)
	if secretKey.MatchString(path) {
		msg = fmt.Sprintf("written in typographic quotes (%c…%c, value not shown), which YAML does not take for quotes: they are part of the value", r[0], r[len(r)-1])
	}
	d.warns = append(d.warns, d.at(n, path, msg, `write straight quotes ("..." or '...'), or none`))
}

// lookalikes are characters a paste from a spreadsheet, a web page or a
// word processor leaves that look like what YAML needs and are not: the
// parser takes them for text.
var lookalikes = map[rune]string{
	'\u00a0': "a non-breaking space (U+00A0), which YAML takes for text, not a space: retype it as a plain space",
	'\u2007': "a figure space (U+2007), which YAML takes for text, not a space: retype it as a plain space",
	'\u202f': "a narrow non-breaking space (U+202F), which YAML takes for text, not a space: retype it as a plain space",
	'\u3000': "an ideographic space (U+3000), which YAML takes for text, not a space: retype it as a plain space",
	'\u200b': "an invisible zero-width space (U+200B), which YAML takes for text: delete it",
	'\ufeff': "an invisible zero-width no-break space (U+FEFF), which YAML takes for text: delete it",
	'\uff1a': "a full-width colon (U+FF1A), which YAML does not take for a key's colon: type a plain colon",
}

// lookalikeBefore is lookalike on the 20 lines before line: a line
// indented with non-breaking spaces may be read on as part of the value
// above it, and the parser stops lines further on.
func lookalikeBefore(lines [][]byte, line int) (int, int, string) {
	for l := min(line, len(lines)+1) - 1; l >= 1 && l >= line-20; l-- {
		if col, what := lookalike(lines, l); col > 0 {
			return l, col, what
		}
	}
	return 0, 0, ""
}

// lookalikeWarnings warns of each line of a file that parsed with one of
// lookalikes where YAML's own character matters: a line indented with
// non-breaking spaces is read on as part of the value above it (the val54
// probe: "node: required" for a node: line right there, taken into the
// server's name).
func (d *decoder) lookalikeWarnings() {
	for i, l := range d.lines {
		if !bytes.ContainsFunc(l, func(r rune) bool { return r >= 0x80 }) {
			continue
		}
		if col, what := lookalike(d.lines, i+1); col > 0 {
			d.warns = append(d.warns, Problem{File: d.file, Line: i + 1, Column: col, Msg: "this column holds " + what,
				Hint: "a paste from a spreadsheet or a web page? The line is not read as it looks"})
		}
	}
}

// lookalike finds on line (1-based) of lines the first of lookalikes
// where YAML's own character matters — in the indentation (a list's "- "
// included), right after a colon, or a full-width colon ending a word —,
// and returns its column (1-based, in characters, as the parser counts)
// and what it is; 0 if none. One inside a value's text (a work center
// "WC 2") is the value's, and one in a comment the comment's.
func lookalike(lines [][]byte, line int) (int, string) {
	if line < 1 || line > len(lines) {
		return 0, ""
	}
	rs := []rune(string(lines[line-1]))
	indent := true
	for i, r := range rs {
		if r == '#' && (i == 0 || rs[i-1] == ' ' || rs[i-1] == '\t') {
			break // a comment (or a value's " #": hashComment's)
		}
		what, ok := lookalikes[r]
		switch {
		case ok && r == '\uff1a':
			if i+1 == len(rs) || rs[i+1] == ' ' || lookalikes[rs[i+1]] != "" {
				return i + 1, what
			}
		case ok && (indent || (i > 0 && rs[i-1] == ':')):
			return i + 1, what
		}
		indent = indent && (ok || r == ' ' || r == '\t' || r == '-')
	}
	return 0, ""
}

var (
	// envRef is a shell's or a compose file's reference to the
	// environment: ${NAME} (${NAME:-default} …) anywhere, $NAME at the start.
	envRef = regexp.MustCompile(`\$\{[A-Za-z_][A-Za-z0-9_]*(?:[:?+=-][^}]*)?\}|^\$[A-Za-z_][A-Za-z0-9_]*`)
	// secretKey is a key whose value is not repeated in a message.
	secretKey = regexp.MustCompile(`(?i)(key|pass|secret|token|pwd|cred|auth)[^.\[\]]*$`)
)

// envReference warns of a value that refers to the environment as a shell
// would: the file is not expanded, so it is taken as written — a work
// center "$WC" Odoo lacks, a data_dir "${STATE_DIRECTORY}/x" below the
// directory the agent starts in (the ot-audit probe). A value of a key
// named like a secret, or one with a URL's user, is not repeated.
func (d *decoder) envReference(path string, n ast.Node, s string) {
	if !envRef.MatchString(s) || strings.Contains(s, "@") {
		return
	}
	if secretKey.MatchString(path) {
		if strings.HasSuffix(path, "_file") {
			d.secretFileEnvReference(path, n, s)
		}
		return
	}
	if strings.HasSuffix(path, ".topic") && !strings.Contains(s, "${") {
		// An MQTT topic beginning with $ is a broker's own ($aws/things/…
		// of AWS IoT's device shadows, $SYS/…), not an environment
		// variable's name.
		return
	}
	d.warns = append(d.warns, d.at(n, path, fmt.Sprintf("%q is taken as written: this file is not expanded", s),
		"write the value itself; a password comes from password_file or password_env, the API key from api_key_file or PLANTEDGE_ODOO_API_KEY"))
}

// credentialsDir matches a secret file's path written below systemd's
// credentials directory as a unit file or a shell would name it.
var credentialsDir = regexp.MustCompile(`^(?:\$\{CREDENTIALS_DIRECTORY\}|\$CREDENTIALS_DIRECTORY)/([A-Za-z0-9._-]+)$`)

// secretFileEnvReference warns of a secret file's path (password_file,
// api_key_file, key_file) that refers to the environment: not expanded, so
// the agent looks for a file by that name and finds none. The value is not
// repeated (it may be the secret, pasted), only systemd's credentials
// directory is named: a relative password_file or api_key_file is looked
// up there first, so the credential's name alone is what works.
func (d *decoder) secretFileEnvReference(path string, n ast.Node, s string) {
	w := d.at(n, path, "refers to an environment variable and is taken as written (value not shown): this file is not expanded",
		"write the file's path itself")
	if m := credentialsDir.FindStringSubmatch(s); m != nil {
		w.Msg = "$CREDENTIALS_DIRECTORY is taken as written: this file is not expanded"
		if strings.HasSuffix(path, "password_file") || strings.HasSuffix(path, "api_key_file") {
			w.Hint = fmt.Sprintf("give the credential's name alone (%s: %s): a relative name is looked up in systemd's $CREDENTIALS_DIRECTORY (LoadCredential=) first", path[strings.LastIndex(path, ".")+1:], m[1])
		} else {
			w.Hint = "write the path of the file itself: only password_file and api_key_file are looked up among systemd's credentials"
		}
	}
	d.warns = append(d.warns, w)
}

// quotedHint is the hint for a number or true/false written in quotes
// (rollover: "65536"): YAML reads it as text (the technician probe: the
// message gave the place but not what to do).
func quotedHint(n ast.Node) string {
	sn, ok := n.(*ast.StringNode)
	if !ok {
		return ""
	}
	v := strings.TrimSpace(sn.Value)
	if f, err := strconv.ParseFloat(strings.ReplaceAll(v, "_", ""), 64); err == nil || v == "true" || v == "false" {
		if t := sn.GetToken(); err == nil && t != nil && t.Type != token.SingleQuoteType && t.Type != token.DoubleQuoteType {
			// Not quoted: a form YAML does not read as a number (1e-3
			// needs a dot: the yaml probe was told to remove quotes it had not).
			return "YAML reads this form as text: write " + strconv.FormatFloat(f, 'f', -1, 64)
		}
		return "remove the quotes: in quotes YAML reads it as text"
	}
	if g := powerForm.FindStringSubmatch(v); g != nil {
		// rollover: 2^32 (the OT probe: told only the range of a whole
		// number). YAML does no arithmetic.
		b, _ := strconv.ParseUint(g[1], 10, 64)
		e, _ := strconv.ParseUint(g[3], 10, 64)
		if b == 2 && g[2] != "<<" && e <= 63 || b == 1 && g[2] == "<<" && e <= 63 {
			return "YAML does no arithmetic: write " + strconv.FormatUint(1<<e, 10)
		}
		return "YAML does no arithmetic: write the number itself"
	}
	if thousands.MatchString(v) {
		// 65,536 or 65 536: digits grouped as a person writes them.
		return "write the digits alone: " + strings.NewReplacer(",", "", " ", "", "'", "").Replace(v)
	}
	return ""
}

// powerForm is a number written as arithmetic: 2^32, 2**16, 1<<16.
var powerForm = regexp.MustCompile(`^(\d+)\s*(\^|\*\*|<<)\s*(\d+)$`)

// thousands is a whole number with its digits grouped: 65,536, 4 294 967 296, 65'536.
var thousands = regexp.MustCompile(`^\d{1,3}(?:[, ']\d{3})+$`)

func describe(n ast.Node) string {
	if s, ok := scalar(n); ok {
		return kindName(n) + " " + strconv.Quote(s)
	}
	return kindName(n)
}

type entry struct {
	key   string
	keyN  ast.Node
	value ast.Node
	via   []*ast.AliasNode // the merge keys' aliases it came through, outermost first
}

// entries lists a mapping's keys in order with merge keys (<<) applied:
// explicit keys win over merged ones, and earlier merged maps over later.
func (d *decoder) entries(path string, n ast.Node) ([]entry, bool) {
	var values []*ast.MappingValueNode
	switch t := n.(type) {
	case *ast.MappingNode:
		values = t.Values
	case *ast.MappingValueNode:
		values = []*ast.MappingValueNode{t}
	default:
		return nil, false
	}
	d.nodes += len(values)
	if d.nodes > maxNodes {
		d.abortTooLarge(n, path)
		return nil, true
	}
	var explicit, merged []entry
	seen := map[string]ast.Node{}
	for _, mv := range values {
		if mv.Key != nil && mv.Key.IsMergeKey() {
			if d.mergeDepth >= maxMergeDepth {
				d.problem(mv.Key, path, "merge keys nest too deep or refer to themselves", "an anchor cannot merge itself")
				continue
			}
			d.mergeDepth++
			for _, src := range d.mergeSources(path, mv.Value) {
				var es []entry
				d.through(src.via, func() { es, _ = d.entries(path, src.n) })
				for i := range es {
					es[i].via = append(slices.Clip(src.via), es[i].via...)
				}
				merged = append(merged, es...)
			}
			d.mergeDepth--
			continue
		}
		var kn ast.Node = mv.Key
		if mk, ok := kn.(*ast.MappingKeyNode); ok {
			kn = mk.Value
		}
		kr := d.resolve(path, kn)
		key, ok := scalar(kr)
		if !ok {
			d.problem(kn, path, "mapping key must be a plain string, got "+kindName(kr), "")
			continue
		}
		if prev, dup := seen[key]; dup {
			d.problem(kn, joinPath(path, key), duplicateKey, fmt.Sprintf("already set at line %d", posOf(prev).Line))
			continue
		}
		seen[key] = kn
		explicit = append(explicit, entry{key: key, keyN: kn, value: mv.Value})
	}
	out := explicit
	for _, e := range merged {
		if _, ok := seen[e.key]; !ok {
			seen[e.key] = e.keyN
			out = append(out, e)
		}
	}
	return out, true
}

// mergeSource is a mapping a merge key (<<) brings in, and the alias it
// came through (none for a mapping written there).
type mergeSource struct {
	n   ast.Node
	via []*ast.AliasNode
}

func (d *decoder) mergeSources(path string, v ast.Node) []mergeSource {
	r := d.resolve(path, v)
	switch t := r.(type) {
	case *ast.MappingNode, *ast.MappingValueNode:
		return []mergeSource{{t, aliasOf(v)}}
	case *ast.SequenceNode:
		var out []mergeSource
		for _, item := range t.Values {
			ir := d.resolve(path, item)
			switch ir.(type) {
			case *ast.MappingNode, *ast.MappingValueNode:
				out = append(out, mergeSource{ir, aliasOf(item)})
			default:
				if ir != nil {
					d.problem(item, path, "merge key << needs a mapping or a list of mappings", "write <<: *anchor")
				}
			}
		}
		return out
	case nil:
		return nil
	}
	d.problem(v, path, "merge key << needs a mapping or a list of mappings", "write <<: *anchor")
	return nil
}

func joinPath(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func structFields(t reflect.Type) (map[string][]int, []string) {
	fields := map[string][]int{}
	var names []string
	var walk func(t reflect.Type, prefix []int)
	walk = func(t reflect.Type, prefix []int) {
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			tag := f.Tag.Get("yaml")
			if tag == "-" || !f.IsExported() {
				continue
			}
			name, opts, _ := strings.Cut(tag, ",")
			idx := append(append([]int(nil), prefix...), i)
			if opts == "inline" && f.Type.Kind() == reflect.Struct {
				walk(f.Type, idx)
				continue
			}
			if name == "" {
				name = strings.ToLower(f.Name)
			}
			fields[name] = idx
			names = append(names, name)
		}
	}
	walk(t, nil)
	return fields, names
}

// secretKeys are keys people write by habit; secrets never go inline.
var secretKeys = map[string]bool{"api_key": true, "apikey": true, "password": true, "token": true, "secret": true}

// secretHint says where the secret written inline as key in a section of
// type typ goes: only the Odoo section takes an api_key_file, only a
// source a password_file or password_env (the audit61 probe: an inline
// odoo.password was told to use password_file, which the Odoo section
// refuses as an unknown key).
func secretHint(typ, key string) string {
	apiKey := "put the key in a file named by api_key_file (mode 0600), or set " + EnvAPIKey + ", or use systemd LoadCredential=" + CredentialAPIKey
	switch typ {
	case "Odoo":
		if key == "password" {
			// The bot user logs in with its API key in place of its
			// password.
			return "the agent logs in with the bot user's API key, never a password: " + apiKey
		}
		return apiKey
	case "OPCUAServer", "MQTTBroker":
		// A source's password is read by the agent's own user (the
		// unit's plantedge), so its file is group-readable as validate
		// advises for it; an environment variable is the other way
		// (password_env).
		return "put the password in a file named by password_file (mode 0640, group plantedge), or name the environment variable that holds it in password_env"
	}
	return "secrets are never written inline: an MQTT broker's or OPC UA server's password goes in its password_file or password_env, Odoo's API key in odoo.api_key_file"
}

func (d *decoder) decodeStruct(path string, n ast.Node, v reflect.Value) {
	es, ok := d.entries(path, n)
	if !ok {
		hint := "write key: value pairs indented under it"
		if path == "" {
			hint = "a configuration is key: value pairs at the top level: site:, odoo:, opcua: or mqtt:, machines:"
		}
		d.problem(n, path, "expected a mapping, got "+describe(n), hint)
		d.undecoded[path] = true
		if path == "" {
			// Not a configuration at all (a wrong file): that is the one
			// problem, not every required key after it.
			d.decodedRoot = false
		}
		return
	}
	fields, names := structFields(v.Type())
	for _, e := range es {
		d.through(e.via, func() { d.structEntry(path, e, v, fields, names) })
	}
}

// structEntry decodes the struct v's field that e sets.
func (d *decoder) structEntry(path string, e entry, v reflect.Value, fields map[string][]int, names []string) {
	kp := joinPath(path, e.key)
	idx, ok := fields[e.key]
	if !ok {
		if path == "" && strings.HasPrefix(e.key, "x-") {
			return // extension keys hold anchors for reuse; ignored
		}
		if key := strings.ToLower(e.key); secretKeys[key] {
			d.problem(e.keyN, kp, "inline secret not allowed", secretHint(v.Type().Name(), key))
			return
		}
		hint, meant := misplaced(v.Type().Name(), e.key), ""
		if v.Type().Name() == "Counter" && hint == "" {
			// What a SCADA tag calls it (the OT review): not a near
			// spelling of factor, nor a list of keys.
			switch strings.ToLower(e.key) {
			case "unit", "units", "uom", "unit_of_measure":
				meant, hint = "factor", "the agent reads no unit: a counter counts in the work order's unit of measure, times its factor, e.g. factor: 0.001 for a counter in grams on an order in kg"
			case "scale", "scaling", "multiplier", "gain", "ratio":
				meant, hint = "factor", `did you mean "factor"? the units one step of the counter makes`
			}
		}
		if v.Type().Name() == "Odoo" && hint == "" {
			// What other Odoo clients call them (the audit61 probe: db:
			// and user: were told only the list of known keys, being too
			// far from database and username to be a near spelling).
			switch strings.ToLower(e.key) {
			case "db", "dbname", "db_name", "database_name":
				meant = "database"
			case "user", "login", "user_name", "user_login":
				meant = "username"
			case "host", "server", "base_url", "endpoint", "address":
				meant = "url"
			case "api_key_env", "key_env", "api_key_variable":
				hint = "no key names the API key's environment variable: the agent reads " + EnvAPIKey + ", or the file api_key_file names"
			}
			if meant != "" {
				hint = suggest(meant, names)
			}
		}
		if hint == "" {
			meant = nearest(e.key, names)
			hint = suggest(meant, names)
			if v.Type().Name() == "Reason" && !strings.EqualFold(e.key, meant) && (meant == "" || strings.ToLower(e.key) != e.key || strings.ContainsAny(e.key, "0123456789")) {
				// A code written beside map: rather than under it (the
				// OT probe: "known keys: default, map, mqtt, opcua", and
				// its loss name masked as a secret's; JAM was "did you
				// mean map?"). No key is written in capitals or digits.
				meant, hint = "map", "a reason code? write it under map:, indented further than map:"
			}
		}
		p := d.at(e.keyN, kp, "unknown key", hint)
		p.Meant = meant
		d.probs = append(d.probs, p)
		return
	}
	d.decode(kp, e.value, v.FieldByIndex(idx))
}

func (d *decoder) decodeMap(path string, n ast.Node, v reflect.Value) {
	es, ok := d.entries(path, n)
	if !ok {
		d.problem(n, path, "expected a mapping, got "+describe(n), "write CODE: Loss name pairs")
		d.undecoded[path] = true
		return
	}
	m := reflect.MakeMapWithSize(v.Type(), len(es))
	for _, e := range es {
		ev := reflect.New(v.Type().Elem()).Elem()
		d.through(e.via, func() { d.decode(joinPath(path, e.key), e.value, ev) })
		m.SetMapIndex(reflect.ValueOf(e.key), ev)
	}
	v.Set(m)
}

// machineKey is where a machine's own keys belong (misplaced).
const machineKey = "to the machine, beside its id:"

// misplaced returns a hint for a key that is known one level up or down
// from the struct (by its type name) where it was found: a line indented
// one step too little or too much.
func misplaced(typ, key string) string {
	under := map[string]string{
		"rollover": "under good_count: or scrap_count:, beside its opcua: or mqtt:",
		"factor":   "under good_count: or scrap_count:, beside its opcua: or mqtt:",
		"map":      "under downtime_reason:, beside its opcua: or mqtt:",
		"default":  "under downtime_reason:, beside its opcua: or mqtt:",
		"opcua":    "under a signal (good_count:, scrap_count:, running: or downtime_reason:)",
		"mqtt":     "under a signal (good_count:, scrap_count:, running: or downtime_reason:)",
		"server":   "under a signal's opcua:",
		"node":     "under a signal's opcua:",
		"broker":   "under a signal's mqtt:",
		"topic":    "under a signal's mqtt:",
		"field":    "under a signal's mqtt:",

		"timestamp_field": "under a signal's mqtt:",
		"format":          "under a signal's mqtt:",
		"quiet_after":     "under good_count:, beside its opcua: or mqtt:",

		// A machine's own keys found in one of its signals (the OT audit:
		// workcenter: indented under running: said only the known keys).
		"workcenter":       machineKey,
		"good_count":       machineKey,
		"scrap_count":      machineKey,
		"running":          machineKey,
		"downtime_reason":  machineKey,
		"block_workcenter": machineKey,
		"min_stop":         machineKey,
		"replaced":         machineKey,
	}[key]
	switch typ {
	case "Machine", "Counter", "Signal", "Reason", "OPCUARef", "MQTTRef":
		if under != "" {
			return "check its indentation: it belongs " + under
		}
	}
	return ""
}

// nearest returns the name a misspelt key is nearest to ("" when none is
// within two edits).
func nearest(key string, names []string) string {
	best, bestD := "", 3
	for _, n := range names {
		if dd := editDistance(strings.ToLower(key), n); dd < bestD {
			best, bestD = n, dd
		}
	}
	return best
}

// suggest returns a "did you mean" hint for a misspelt key, best its
// nearest name.
func suggest(best string, names []string) string {
	if best != "" {
		return fmt.Sprintf("did you mean %q?", best)
	}
	sorted := append([]string(nil), names...)
	sort.Strings(sorted)
	return "known keys: " + strings.Join(sorted, ", ")
}

func editDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return 64
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// leadingZero reports, as a problem at n, a whole number written with a
// leading zero ("065536"): YAML 1.1 and Go read it as octal, an OT engineer
// means decimal. 0x, 0o and 0b prefixes say what they mean and pass.
func (d *decoder) leadingZero(n ast.Node, path, s string) bool {
	digits := strings.TrimLeft(strings.ReplaceAll(s, "_", ""), "+-")
	if len(digits) < 2 || digits[0] != '0' || digits[1] < '0' || digits[1] > '9' {
		return false
	}
	d.problem(n, path, fmt.Sprintf("%s has a leading zero, which would read as an octal number (%s as written here)", s, octal(s)),
		"write it without the leading zero, e.g. "+strings.TrimLeft(strings.TrimLeft(s, "+-"), "0_"))
	return true
}

// octal is what a number with a leading zero reads as (a note when it has an 8
// or a 9).
func octal(s string) string {
	u, err := strconv.ParseInt(strings.ReplaceAll(s, "_", ""), 0, 64)
	if err != nil {
		return "not even a valid octal number"
	}
	return strconv.FormatInt(u, 10)
}

// inUndecoded reports whether path is inside a mapping or a list that did
// not decode at all (d.undecoded): what the validation says of it is about
// the empty value it left.
func (d *decoder) inUndecoded(path string) bool {
	for p := parentPath(path); p != ""; p = parentPath(p) {
		if d.undecoded[p] {
			return true
		}
	}
	return false
}
