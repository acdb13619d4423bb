package db

import (
	"bufio"
	"bytes"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"strings"

	"github.com/picket-proxy/picket/internal/netaddr"
	"github.com/picket-proxy/picket/reputation"
)

// BadLine is a feed line that could not be used.
type BadLine struct {
	File string // relative to the feed directory
	Line int
	Msg  string
}

func (b BadLine) String() string { return fmt.Sprintf("%s:%d: %s", b.File, b.Line, b.Msg) }

// MaxBadLinesKept bounds the bad lines a Report keeps per source; all are
// counted.
const MaxBadLinesKept = 20

// SourceReport is what loading one source found.
type SourceReport struct {
	Name   string
	Path   string // the file read (a download's cached copy), relative to the feed directory when inside it
	URL    string // a download's URL without its query; "" for a local file
	Format string
	// Missing is true for a download with no copy yet (never fetched),
	// or one that cannot be read (Error says why).
	Missing  bool
	Error    string
	Entries  int // hashes and networks read, duplicates included
	BadLines int
	Bad      []BadLine // the first MaxBadLinesKept
}

// Report is what loading a feed directory found.
type Report struct {
	Sources []SourceReport
}

// Entries is the total of entries read, duplicates included.
func (r *Report) Entries() int {
	n := 0
	for _, s := range r.Sources {
		n += s.Entries
	}
	return n
}

// BadLines is the total of bad lines.
func (r *Report) BadLines() int {
	n := 0
	for _, s := range r.Sources {
		n += s.BadLines
	}
	return n
}

// Source returns the report of the source called name.
func (r *Report) Source(name string) (SourceReport, bool) {
	if r == nil {
		return SourceReport{}, false
	}
	for _, s := range r.Sources {
		if s.Name == name {
			return s, true
		}
	}
	return SourceReport{}, false
}

// Load reads every source of dir/feeds.toml into a DB at version. A missing
// local file or a bad feeds.toml is an error; a download without a copy yet
// is reported Missing; bad lines are counted in the Report.
func Load(dir string, version uint64) (*DB, *Report, error) {
	m, err := ReadManifest(dir)
	if err != nil {
		return nil, nil, err
	}
	return m.load(NewBuilder(0), Target{Version: version})
}

// load reads the sources into b (concurrently: parallel.go) and builds the
// DB into t, with the Report and the address lists kept in its file (a
// restart from the compiled file has them: compiled.go).
func (m *Manifest) load(b *Builder, t Target) (*DB, *Report, error) {
	srs, nets, err := m.loadSources(b)
	if err != nil {
		b.Discard()
		return nil, nil, err
	}
	r := &Report{Sources: srs}
	if err := b.setReport(r); err != nil {
		b.Discard()
		return nil, nil, err
	}
	b.setNets(nets)
	d, err := b.BuildTo(t)
	if err != nil {
		return nil, nil, fmt.Errorf("feeds: %w", err)
	}
	d.nets = nets
	return d, r, nil
}

// loadSource reads one source's file into sk.
func (m *Manifest) loadSource(s *Source, sk sink) (SourceReport, error) {
	path := m.File(s)
	f, err := os.Open(path)
	if err != nil && s.Remote() {
		// A download without a usable copy never stops the others: it is
		// reported, and the next download replaces it.
		sr := SourceReport{Name: s.Name, Path: m.rel(path), URL: s.DisplayURL(), Format: s.Format, Missing: true}
		if !errors.Is(err, os.ErrNotExist) {
			sr.Error = err.Error()
		}
		return sr, nil
	}
	if err != nil {
		return SourceReport{}, fmt.Errorf("feeds: source %s: %w", s.Name, err)
	}
	defer f.Close()
	sr, err := ParseSource(f, s, m.rel(path), sk)
	if err != nil && s.Remote() {
		sr.Error = err.Error() // what was read before stays; the next download replaces the copy
		return sr, nil
	}
	if err != nil {
		return SourceReport{}, fmt.Errorf("feeds: source %s: %w", s.Name, err)
	}
	return sr, nil
}

// Count reads one source's file and counts its entries and bad lines,
// keeping nothing ("picket feeds check" and "feeds list").
func (m *Manifest) Count(s *Source) (SourceReport, error) {
	return m.loadSource(s, countingSink())
}

// rel is path relative to the feed directory when it is inside it.
func (m *Manifest) rel(path string) string {
	if r, err := filepath.Rel(m.dir, path); err == nil && !strings.HasPrefix(r, "..") {
		return r
	}
	return path
}

// sink receives a source's entries: full hashes, and networks from the
// address-list formats.
type sink struct {
	add    func(reputation.Hash, reputation.Verdict)
	addNet func(netip.Prefix, reputation.Verdict)
}

// countingSink counts entries and keeps nothing (checking a download
// before it replaces the last good copy).
func countingSink() sink {
	return sink{add: func(reputation.Hash, reputation.Verdict) {}, addNet: func(netip.Prefix, reputation.Verdict) {}}
}

// ParseSource reads one source's content in its format. file names it in
// bad lines. Only a read error is an error.
func ParseSource(r io.Reader, s *Source, file string, sk sink) (SourceReport, error) {
	def := reputation.Verdict{Kind: reputation.KindMalware, Category: s.Category, ThreatName: s.Threat}
	if s.Format == "clamav" && strings.HasSuffix(s.origin(), ".fp") {
		def.Kind = reputation.KindClean
	}
	if s.Verdict != "" {
		def.Kind, _ = reputation.ParseKind(s.Verdict)
	}
	sr := SourceReport{Name: s.Name, Path: file, URL: s.DisplayURL(), Format: s.Format}
	p := parser{
		def: def,
		add: func(h reputation.Hash, v reputation.Verdict) { sk.add(h, v); sr.Entries++ },
		addNet: func(n netip.Prefix, v reputation.Verdict) {
			sk.addNet(n, v)
			sr.Entries++
		},
		bad: func(line int, format string, args ...any) {
			sr.BadLines++
			if len(sr.Bad) < MaxBadLinesKept {
				sr.Bad = append(sr.Bad, BadLine{File: file, Line: line, Msg: fmt.Sprintf(format, args...)})
			}
		},
	}
	var err error
	r = skipBOM(r)
	if s.Format == "urlhaus-csv" {
		err = p.urlhaus(r)
	} else {
		err = p.lines(r, p.lineFunc(s.Format))
	}
	return sr, err
}

// utf8BOM is the byte order mark some Windows tools write before the first
// line of a UTF-8 file.
var utf8BOM = []byte("\xEF\xBB\xBF")

// skipBOM returns r without a UTF-8 byte order mark at its start, which
// would otherwise be read as part of the first line and lose its entry.
func skipBOM(r io.Reader) io.Reader {
	br := bufio.NewReaderSize(r, maxLineBytes)
	if b, err := br.Peek(len(utf8BOM)); err == nil && bytes.Equal(b, utf8BOM) {
		_, _ = br.Discard(len(utf8BOM))
	}
	return br
}

// lineFunc is the line parser of a line-oriented format.
func (p parser) lineFunc(format string) func(string, int) {
	switch format {
	case "urls":
		return p.urlLine
	case "hosts":
		return p.hostsLine
	case "clamav":
		return p.clamavLine
	case "jsonl":
		return p.jsonLine
	case "domains":
		return p.domainLine
	case "hashes":
		return p.hashLine
	case "ips":
		return p.ipLine
	case "spamhaus-drop":
		return p.dropLine
	}
	panic("db: no line parser for format " + format)
}

// parser turns lines into entries.
type parser struct {
	def    reputation.Verdict
	add    func(reputation.Hash, reputation.Verdict)
	addNet func(netip.Prefix, reputation.Verdict)
	bad    func(line int, format string, args ...any)
}

// maxLineBytes bounds one feed line.
const maxLineBytes = 64 << 10

// lines calls fn for each non-empty, non-comment line.
func (p parser) lines(r io.Reader, fn func(line string, n int)) error {
	return p.eachLine(r, func(line []byte, n int) {
		if len(line) == 0 || line[0] == '#' {
			return
		}
		fn(string(line), n)
	})
}

// eachLine calls fn with each line of r, trimmed, and its number. A line
// longer than maxLineBytes is a bad line, skipped to its end: the lines
// after it are still read.
func (p parser) eachLine(r io.Reader, fn func(line []byte, n int)) error {
	br := bufio.NewReaderSize(r, maxLineBytes)
	n := 0
	for {
		line, err := br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			n++
			p.bad(n, "line longer than %d bytes", maxLineBytes)
			for errors.Is(err, bufio.ErrBufferFull) {
				_, err = br.ReadSlice('\n')
			}
		} else if len(line) > 0 {
			n++
			fn(bytes.TrimSpace(line), n)
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

func (p parser) addExpr(raw string, v reputation.Verdict, n int) {
	e, err := reputation.Expression(raw)
	if err != nil {
		p.bad(n, "%v", err)
		return
	}
	if host, _, _ := strings.Cut(e, "/"); !validHost(host) {
		p.bad(n, "%q is not a host name", host) // an HTML error page, a changed format
		return
	}
	p.add(reputation.HashExpression(e), v)
}

// validHost reports whether the canonical host of an expression is a name or
// an address as every part of Picket reads hosts: what a proxy can reach.
func validHost(h string) bool {
	_, err := netaddr.ParseHost(h)
	return err == nil
}

// urlLine: one URL or host expression a line.
func (p parser) urlLine(line string, n int) {
	if strings.ContainsAny(line, " \t") {
		p.bad(n, "want one URL or host a line")
		return
	}
	p.addExpr(line, p.def, n)
}

// hostsLine: "0.0.0.0 name [name...] [# comment]" or a bare host name.
func (p parser) hostsLine(line string, n int) {
	if i := strings.IndexByte(line, '#'); i >= 0 {
		line = line[:i]
	}
	fields := strings.Fields(line)
	if len(fields) == 0 {
		return
	}
	if _, err := netip.ParseAddr(fields[0]); err == nil {
		fields = fields[1:]
		if len(fields) == 0 {
			p.bad(n, "address without a host name")
			return
		}
	} else if len(fields) > 1 {
		p.bad(n, "want \"ADDRESS NAME...\" or a host name")
		return
	}
	for _, h := range fields {
		switch h {
		case "localhost", "localhost.localdomain", "local", "broadcasthost", "ip6-localhost", "ip6-loopback", "0.0.0.0":
			continue
		}
		if strings.ContainsAny(h, "/?") {
			p.bad(n, "%q is not a host name", h)
			continue
		}
		p.addExpr(h, p.def, n)
	}
}

// clamavLine: "HASH:SIZE:NAME[:FLEVEL...]" (.hdb MD5, .hsb SHA-1/SHA-256,
// .fp known good). The hash is looked up as a file hash.
func (p parser) clamavLine(line string, n int) {
	var f [3]string
	var ok1, ok2 bool
	f[0], f[2], ok1 = strings.Cut(line, ":")
	f[1], f[2], ok2 = strings.Cut(f[2], ":")
	f[2], _, _ = strings.Cut(f[2], ":")
	if !ok1 || !ok2 {
		p.bad(n, "want HASH:SIZE:NAME")
		return
	}
	sum, err := reputation.ParseFileHash(f[0])
	if err != nil {
		p.bad(n, "%v", err)
		return
	}
	if f[1] != "*" && strings.Trim(f[1], "0123456789") != "" {
		p.bad(n, "bad size %q", f[1])
		return
	}
	v := p.def
	if f[2] != "" {
		v.ThreatName = f[2]
	}
	h, _ := reputation.FileKey(sum)
	p.add(h, v)
}

// jsonRecord is one line of the native jsonl format.
type jsonRecord struct {
	URL      string `json:"url"`  // URL or host expression
	Host     string `json:"host"` // host expression
	SHA256   string `json:"sha256"`
	SHA1     string `json:"sha1"`
	MD5      string `json:"md5"`
	CIDR     string `json:"cidr"` // an address or a network: a destination address list
	Verdict  string `json:"verdict"`
	Category string `json:"category"`
	Name     string `json:"name"`
}

func (p parser) jsonLine(line string, n int) {
	var r jsonRecord
	dec := json.NewDecoder(strings.NewReader(line))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&r); err != nil {
		p.bad(n, "bad JSON: %v", err)
		return
	}
	v := p.def
	if r.Verdict != "" {
		k, err := reputation.ParseKind(r.Verdict)
		if err != nil {
			p.bad(n, "%v", err)
			return
		}
		v.Kind = k
	}
	if r.Category != "" {
		v.Category = r.Category
	}
	if r.Name != "" {
		v.ThreatName = r.Name
	}
	found := false
	for _, u := range []string{r.URL, r.Host} {
		if u != "" {
			found = true
			p.addExpr(u, v, n)
		}
	}
	for _, s := range []string{r.SHA256, r.SHA1, r.MD5} {
		if s == "" {
			continue
		}
		found = true
		sum, err := reputation.ParseFileHash(s)
		if err != nil {
			p.bad(n, "%v", err)
			continue
		}
		h, _ := reputation.FileKey(sum)
		p.add(h, v)
	}
	if r.CIDR != "" {
		found = true
		p.addNetwork(r.CIDR, v, n)
	}
	if !found {
		p.bad(n, "no url, host, sha256, sha1, md5 or cidr")
	}
}

// urlhaus reads the URLhaus CSV dump: '#' comments, then quoted records
// id,dateadded,url,url_status,last_online,threat,tags,urlhaus_link,reporter
// (older dumps lack last_online).
func (p parser) urlhaus(r io.Reader) error {
	return p.eachLine(r, p.urlhausLine)
}

func (p parser) urlhausLine(line []byte, n int) {
	if len(line) == 0 || line[0] == '#' {
		return
	}
	rec, err := splitCSV(line)
	if err != nil {
		p.bad(n, "bad CSV: %v", err)
		return
	}
	threat, tags := 5, 6
	switch len(rec) {
	case 9:
	case 8:
		threat, tags = 4, 5
	default:
		p.bad(n, "want 8 or 9 fields, got %d", len(rec))
		return
	}
	v := p.def
	if rec[threat] != "" {
		v.Category = rec[threat]
	}
	if t, _, _ := strings.Cut(rec[tags], ","); t != "" && t != "None" {
		v.ThreatName = t
	}
	p.addExpr(rec[2], v, n)
}

// splitCSV splits one CSV record. The common shape (every field either
// quoted without quotes inside, or bare without quotes) is split here, as
// slices of one string; anything else goes to encoding/csv, so the fields
// are always what encoding/csv would give.
func splitCSV(line []byte) ([]string, error) {
	if len(line) > 0 && bytes.IndexByte(line, '\r') < 0 {
		if rec, ok := splitSimpleCSV(string(line)); ok {
			return rec, nil
		}
	}
	return csv.NewReader(bytes.NewReader(line)).Read()
}

func splitSimpleCSV(line string) ([]string, bool) {
	rec := make([]string, 0, 9)
	for {
		if len(line) > 0 && line[0] == '"' {
			end := strings.IndexByte(line[1:], '"')
			if end < 0 {
				return nil, false
			}
			rec = append(rec, line[1:1+end])
			rest := line[2+end:]
			if rest == "" {
				return rec, true
			}
			if rest[0] != ',' {
				return nil, false // "" inside, or text after the closing quote
			}
			line = rest[1:]
			continue
		}
		field, rest, more := strings.Cut(line, ",")
		if strings.IndexByte(field, '"') >= 0 {
			return nil, false
		}
		rec = append(rec, field)
		if !more {
			return rec, true
		}
		line = rest
	}
}
