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

	"github.com/BurntSushi/toml"
	"github.com/picket-proxy/picket/reputation"
)

// ManifestName is the feed directory's list of sources.
const ManifestName = "feeds.toml"

// Source is one [[source]] of feeds.toml.
type Source struct {
	// Path is the feed file, relative to the feed directory.
	Path string `toml:"path"`
	// Format is urls, hosts, urlhaus-csv, clamav or jsonl.
	Format string `toml:"format"`
	// Verdict is the verdict of entries that carry none; default
	// "malware" ("clean" for ClamAV .fp files).
	Verdict string `toml:"verdict"`
	// Category is the category of entries that carry none.
	Category string `toml:"category"`
	// Threat is the threat name of entries that carry none.
	Threat string `toml:"threat"`
}

// Manifest is feeds.toml.
type Manifest struct {
	Sources []Source `toml:"source"`
}

// Formats are the known feed formats.
var Formats = []string{"urls", "hosts", "urlhaus-csv", "clamav", "jsonl"}

// ReadManifest reads and checks dir/feeds.toml.
func ReadManifest(dir string) (*Manifest, error) {
	path := filepath.Join(dir, ManifestName)
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("feeds: %w", err)
	}
	var m Manifest
	md, err := toml.Decode(string(data), &m)
	if err != nil {
		return nil, fmt.Errorf("feeds: %s: %w", path, err)
	}
	var errs []error
	for _, k := range md.Undecoded() {
		errs = append(errs, fmt.Errorf("feeds: %s: unknown key %s", path, k))
	}
	if len(m.Sources) == 0 {
		errs = append(errs, fmt.Errorf("feeds: %s: no [[source]]", path))
	}
	for i, s := range m.Sources {
		if s.Path == "" {
			errs = append(errs, fmt.Errorf("feeds: %s: source %d: missing path", path, i+1))
		}
		if !knownFormat(s.Format) {
			errs = append(errs, fmt.Errorf("feeds: %s: source %d (%s): unknown format %q (want one of %s)",
				path, i+1, s.Path, s.Format, strings.Join(Formats, ", ")))
		}
		if s.Verdict != "" {
			if _, err := reputation.ParseKind(s.Verdict); err != nil {
				errs = append(errs, fmt.Errorf("feeds: %s: source %d (%s): %w", path, i+1, s.Path, err))
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return &m, nil
}

func knownFormat(f string) bool {
	for _, g := range Formats {
		if f == g {
			return true
		}
	}
	return false
}

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
	Path     string
	Format   string
	Entries  int
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

// Load reads every source of dir/feeds.toml into a DB at version. A missing
// file or a bad feeds.toml is an error; bad lines are counted in the Report.
func Load(dir string, version uint64) (*DB, *Report, error) {
	m, err := ReadManifest(dir)
	if err != nil {
		return nil, nil, err
	}
	b := NewBuilder(0)
	r := &Report{}
	for _, s := range m.Sources {
		sr, err := loadSource(b, dir, s)
		if err != nil {
			return nil, nil, err
		}
		r.Sources = append(r.Sources, sr)
	}
	return b.Build(version), r, nil
}

func loadSource(b *Builder, dir string, s Source) (SourceReport, error) {
	f, err := os.Open(filepath.Join(dir, s.Path))
	if err != nil {
		return SourceReport{}, fmt.Errorf("feeds: source %s: %w", s.Path, err)
	}
	defer f.Close()
	def := reputation.Verdict{Kind: reputation.KindMalware, Category: s.Category, ThreatName: s.Threat}
	if s.Format == "clamav" && strings.HasSuffix(s.Path, ".fp") {
		def.Kind = reputation.KindClean
	}
	if s.Verdict != "" {
		def.Kind, _ = reputation.ParseKind(s.Verdict)
	}
	sr := SourceReport{Path: s.Path, Format: s.Format}
	add := func(h reputation.Hash, v reputation.Verdict) {
		b.Add(h, v)
		sr.Entries++
	}
	bad := func(line int, format string, args ...any) {
		sr.BadLines++
		if len(sr.Bad) < MaxBadLinesKept {
			sr.Bad = append(sr.Bad, BadLine{File: s.Path, Line: line, Msg: fmt.Sprintf(format, args...)})
		}
	}
	p := parser{def: def, add: add, bad: bad}
	switch s.Format {
	case "urlhaus-csv":
		err = p.urlhaus(f)
	default:
		err = p.lines(f, map[string]func(string, int){
			"urls": p.urlLine, "hosts": p.hostsLine, "clamav": p.clamavLine, "jsonl": p.jsonLine,
		}[s.Format])
	}
	if err != nil {
		return SourceReport{}, fmt.Errorf("feeds: source %s: %w", s.Path, err)
	}
	return sr, nil
}

// parser turns lines into entries.
type parser struct {
	def reputation.Verdict
	add func(reputation.Hash, reputation.Verdict)
	bad func(line int, format string, args ...any)
}

// maxLineBytes bounds one feed line.
const maxLineBytes = 64 << 10

// lines calls fn for each non-empty, non-comment line.
func (p parser) lines(r io.Reader, fn func(line string, n int)) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), maxLineBytes)
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		fn(line, n)
	}
	if errors.Is(sc.Err(), bufio.ErrTooLong) {
		p.bad(n+1, "line longer than %d bytes; rest of file skipped", maxLineBytes)
		return nil
	}
	return sc.Err()
}

func (p parser) addExpr(raw string, v reputation.Verdict, n int) {
	e, err := reputation.Expression(raw)
	if err != nil {
		p.bad(n, "%v", err)
		return
	}
	p.add(reputation.HashExpression(e), v)
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
	f := strings.Split(line, ":")
	if len(f) < 3 {
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
	if !found {
		p.bad(n, "no url, host, sha256, sha1 or md5")
	}
}

// urlhaus reads the URLhaus CSV dump: '#' comments, then quoted records
// id,dateadded,url,url_status,last_online,threat,tags,urlhaus_link,reporter
// (older dumps lack last_online).
func (p parser) urlhaus(r io.Reader) error {
	br := bufio.NewReaderSize(r, maxLineBytes)
	n := 0
	for {
		line, err := br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			// Over-long line: skip to its end.
			n++
			p.bad(n, "line too long")
			for errors.Is(err, bufio.ErrBufferFull) {
				_, err = br.ReadSlice('\n')
			}
			if err == io.EOF {
				return nil
			}
			continue
		}
		if len(line) > 0 {
			n++
			p.urlhausLine(bytes.TrimSpace(line), n)
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

func (p parser) urlhausLine(line []byte, n int) {
	if len(line) == 0 || line[0] == '#' {
		return
	}
	rec, err := csv.NewReader(bytes.NewReader(line)).Read()
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
	if t := strings.Split(rec[tags], ","); t[0] != "" && t[0] != "None" {
		v.ThreatName = t[0]
	}
	p.addExpr(rec[2], v, n)
}
