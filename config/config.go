// Package config reads config.toml: the single place where the file is
// parsed, defaulted and validated for every subcommand (serve, lookup, ...).
// It is a real room of its own because several subcommands share the file and
// every error must name the file, the line and the key.
//
// The structs here mirror the file; each runtime package owns its own Config,
// and cmd/picket maps these sections into them.
package config

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/BurntSushi/toml"
)

// File is the whole configuration file.
type File struct {
	Proxy      Proxy          `toml:"proxy"`
	Admin      Admin          `toml:"admin"`
	Log        Log            `toml:"log"`
	TLS        TLS            `toml:"tls"`
	Reputation Reputation     `toml:"reputation"`
	Scanner    ScannerSection `toml:"scanner"`
	Policy     Policy         `toml:"policy"`
	Rules      Rules          `toml:"rules"`
	// Transparent holds the transparent gateway's listeners.
	Transparent Transparent `toml:"transparent"`
	PAC         PAC         `toml:"pac"`
	Auth        Auth        `toml:"auth"`
	// Upstream holds the parent proxies (upstream.go).
	Upstream Upstream `toml:"upstream"`

	// Path is the file the configuration was read from ("" for defaults).
	Path string `toml:"-"`
	// Dir is the directory relative paths in the file are resolved against.
	Dir string `toml:"-"`

	lines map[string]int  // the line each key is set on, for Problem
	set   map[string]bool // the keys the file sets, for IsSet
}

// Problem is an *Error about key in this file, with the key's line when the
// file sets it, for problems found after parsing (a directory that does
// not exist).
func (f *File) Problem(key, format string, args ...any) error {
	return &Error{File: f.Path, Line: f.lines[key], Key: key, Msg: fmt.Sprintf(format, args...)}
}

// IsSet reports whether the file sets key (dotted, e.g. "reputation.kpsn.database").
func (f *File) IsSet(key string) bool { return f.set[key] }

// Default returns the configuration used when a key is absent from the file.
func Default() *File {
	f := &File{}
	f.Proxy.defaults()
	f.Admin.defaults()
	f.Log.defaults()
	f.TLS.defaults()
	f.Reputation.defaults()
	f.Scanner.defaults()
	f.Policy.defaults()
	f.Rules.defaults()
	f.Transparent.defaults()
	f.PAC.defaults()
	f.Auth.defaults()
	f.Upstream.defaults()
	return f
}

// Error is one problem with the configuration: the file, the line (0 when
// unknown), the dotted key and what is wrong.
type Error struct {
	File string
	Line int
	Key  string
	Msg  string
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d", e.Line)
	}
	if e.Key != "" {
		fmt.Fprintf(&b, ": %s", e.Key)
	}
	fmt.Fprintf(&b, ": %s", e.Msg)
	return b.String()
}

// problems collects every validation error of a file at once.
type problems struct {
	file  string
	lines map[string]int
	errs  []error
}

// add records a problem with key (dotted path, e.g. "proxy.listen").
func (p *problems) add(key string, format string, args ...any) {
	p.errs = append(p.errs, &Error{File: p.file, Line: p.lines[key], Key: key, Msg: fmt.Sprintf(format, args...)})
}

// check records err, if not nil, against key.
func (p *problems) check(key string, err error) {
	if err != nil {
		p.add(key, "%s", err.Error())
	}
}

// oneOf records a problem when v, the value of key, is not one of allowed:
// "unknown <what> "v" (want "a", "b" or "c")". Every key with a fixed set
// of values is checked by it, so that each says so the same way.
func (p *problems) oneOf(key, what, v string, allowed ...string) {
	if slices.Contains(allowed, v) {
		return
	}
	want := make([]string, len(allowed))
	for i, a := range allowed {
		want[i] = strconv.Quote(a)
	}
	list := want[len(want)-1]
	if len(want) > 1 {
		list = strings.Join(want[:len(want)-1], ", ") + " or " + list
	}
	p.add(key, "unknown %s %q (want %s)", what, v, list)
}

// tomlTypeError is how the decoder words a value of the wrong type (a
// plain error, not a toml.ParseError): `toml: line 4 (last key
// "proxy.forwarded_for"): incompatible types: ...`.
var tomlTypeError = regexp.MustCompile(`^toml: line (\d+) \(last key ("(?:[^"\\]|\\.)*")\): (.*)$`)

// decodeError is an *Error for a decoding error other than a syntax error,
// with the line and key the decoder's message names, said as every other
// problem is ("bad.toml:4: proxy.forwarded_for: incompatible types ...").
func decodeError(path string, err error) *Error {
	m := tomlTypeError.FindStringSubmatch(err.Error())
	if m == nil {
		return &Error{File: path, Msg: err.Error()}
	}
	line, _ := strconv.Atoi(m[1])
	key, uerr := strconv.Unquote(m[2])
	if uerr != nil {
		return &Error{File: path, Msg: err.Error()}
	}
	return &Error{File: path, Line: line, Key: key, Msg: m[3]}
}

// Load reads, defaults and validates the configuration in path. The returned
// error joins every problem found (errors.Join of *Error values).
func Load(path string) (*File, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return Parse(path, data)
}

// Parse is Load on bytes already read; path is used in messages and to
// resolve relative paths.
func Parse(path string, data []byte) (*File, error) {
	f := Default()
	f.Path = path
	f.Dir = dirOf(path)
	md, err := toml.NewDecoder(bytes.NewReader(data)).Decode(f)
	if err != nil {
		var pe toml.ParseError
		if errors.As(err, &pe) {
			return nil, &Error{File: path, Line: pe.Position.Line, Key: pe.LastKey, Msg: pe.Message}
		}
		return nil, decodeError(path, err)
	}
	p := &problems{file: path, lines: keyLines(data)}
	f.lines, f.set = p.lines, make(map[string]bool)
	for _, k := range md.Keys() {
		f.set[k.String()] = true
	}
	unknownKeys(md, p)
	f.validate(p)
	if len(p.errs) > 0 {
		return nil, errors.Join(p.errs...)
	}
	return f, nil
}

// unknownKeys records a problem for each key the file sets that File does
// not have. A key inside an array of tables ([[rules]]) is named by its
// entry, "rules[1].colour", so that each points at its own line: the
// decoder names every entry's key alike ("rules.colour").
func unknownKeys(md toml.MetaData, p *problems) {
	unknown := make(map[string]bool)
	for _, k := range md.Undecoded() {
		unknown[k.String()] = true
	}
	headers := make(map[string]int) // [name] and [[name]] headers seen so far
	for _, k := range md.Keys() {
		if len(k) == 1 {
			headers[k[0]]++
		}
		if !unknown[k.String()] {
			continue
		}
		key := k.String()
		if n := headers[k[0]]; len(k) > 1 && n > 0 {
			indexed := fmt.Sprintf("%s[%d].%s", k[0], n-1, k[1:].String())
			if _, ok := p.lines[indexed]; ok { // keyLines saw [[k[0]]] headers
				key = indexed
			}
		}
		p.add(key, "unknown key")
	}
}

func (f *File) validate(p *problems) {
	f.Proxy.validate(p)
	f.Admin.validate(p)
	f.Log.validate(p)
	f.TLS.validate(p)
	f.Reputation.validate(p)
	f.Scanner.validate(p)
	f.Policy.validate(p)
	f.Rules.validate(p)
	f.Transparent.validate(p)
	f.PAC.validate(p)
	f.Auth.validate(p)
	f.Upstream.validate(p)
}

// Resolve makes a path from the file relative to the file's directory.
func (f *File) Resolve(path string) string {
	if path == "" || strings.HasPrefix(path, "/") || f.Dir == "" {
		return path
	}
	return f.Dir + "/" + path
}

func dirOf(path string) string {
	i := strings.LastIndexByte(path, '/')
	switch {
	case i < 0:
		return "."
	case i == 0:
		return "/"
	}
	return path[:i]
}

// keyLines maps dotted keys to the line they are set on. It understands what
// config.toml uses: [table] and [[array]] headers and key = value lines; it is
// only used to point error messages at a line.
func keyLines(data []byte) map[string]int {
	lines := make(map[string]int)
	table := ""
	indexed := ""                  // "rules[3]" inside the fourth [[rules]]
	arrays := make(map[string]int) // [[name]] headers seen so far
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || line[0] == '#':
			continue
		case strings.HasPrefix(line, "[["):
			table = strings.TrimSpace(strings.Trim(strings.SplitN(line, "]]", 2)[0], "[ "))
			if _, ok := lines[table]; !ok {
				lines[table] = n
			}
			indexed = fmt.Sprintf("%s[%d]", table, arrays[table])
			arrays[table]++
			lines[indexed] = n
		case line[0] == '[':
			table = strings.TrimSpace(strings.Trim(strings.SplitN(line, "]", 2)[0], "[ "))
			lines[table] = n
			indexed = ""
		default:
			eq := strings.IndexByte(line, '=')
			if eq <= 0 {
				continue
			}
			key := strings.Trim(strings.TrimSpace(line[:eq]), `"`)
			if indexed != "" {
				if _, ok := lines[indexed+"."+key]; !ok {
					lines[indexed+"."+key] = n
				}
			}
			if table != "" {
				key = table + "." + key
			}
			if _, ok := lines[key]; !ok {
				lines[key] = n
			}
		}
	}
	return lines
}
