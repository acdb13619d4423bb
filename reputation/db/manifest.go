package db

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
	"github.com/picket-proxy/picket/reputation"
)

// ManifestName is the feed directory's list of sources.
const ManifestName = "feeds.toml"

// Manifest is feeds.toml.
type Manifest struct {
	// CacheDir is where downloaded sources keep their last good copy and
	// their fetch state, relative to the feed directory; default
	// DefaultCacheDir.
	CacheDir string   `toml:"cache_dir"`
	Sources  []Source `toml:"source"` // the enabled sources, after ReadManifest

	// Disabled are the sources with enabled = false: listed, never loaded
	// or downloaded.
	Disabled []Source `toml:"-"`

	dir string // the feed directory
}

// Source is one [[source]] of feeds.toml: a local file (Path) or a
// download (URL) kept fresh by the Store's fetcher.
type Source struct {
	// Enabled = false keeps a source in feeds.toml without loading or
	// downloading it (the shipped catalogue of public feeds); default true.
	Enabled *bool `toml:"enabled"`
	// Name names the source in the status, the metrics, the logs and the
	// CLI; default the path. Required with url (it also names the cached
	// copy): letters, digits, '.', '_' and '-'.
	Name string `toml:"name"`
	// Path is the feed file, relative to the feed directory.
	Path string `toml:"path"`
	// URL is where the feed is downloaded from (http or https), instead of
	// a Path. "{env:NAME}" and "{file:PATH}" in it are replaced at each
	// download (query-escaped), for keys that a provider wants in the URL.
	URL string `toml:"url"`
	// Format is one of Formats.
	Format string `toml:"format"`
	// Verdict is the verdict of entries that carry none; default
	// "malware" ("clean" for ClamAV .fp files).
	Verdict string `toml:"verdict"`
	// Category is the category of entries that carry none.
	Category string `toml:"category"`
	// Threat is the threat name of entries that carry none.
	Threat string `toml:"threat"`

	// Refresh is how often a URL source is downloaded again; default
	// DefaultRefresh, at least MinRefresh.
	Refresh Duration `toml:"refresh"`
	// StaleAfter is the age (since the last successful download or check)
	// beyond which the source is reported stale and Picket degraded;
	// default 3×Refresh for URL sources, never for local files.
	StaleAfter Duration `toml:"stale_after"`
	// Timeout bounds one download, headers to last byte; default
	// DefaultTimeout.
	Timeout Duration `toml:"timeout"`
	// MaxSize bounds a download, compressed and decompressed; default
	// DefaultMaxSize.
	MaxSize Size `toml:"max_size"`
	// Headers are sent with each download. A value "env:NAME" is read from
	// the environment variable NAME, "file:PATH" from the file PATH
	// (relative to the feed directory, trailing newline removed), at each
	// download; any other value is sent as it is.
	Headers map[string]string `toml:"headers"`
	// Compression of the download: "auto" (default: gzip or zip by the
	// body's first bytes), "gzip", "zip" or "none".
	Compression string `toml:"compression"`
	// Member is the file to read from a zip archive; default the only (or
	// first) regular file in it.
	Member string `toml:"member"`
	// MinRatio refuses a download that parses to fewer entries than
	// MinRatio × the last good copy's (a truncated or emptied feed); the
	// last good copy stays. Default DefaultMinRatio; 0 < MinRatio ≤ 1.
	MinRatio float64 `toml:"min_ratio"`
}

// Defaults of a URL source.
const (
	DefaultCacheDir = "cache"
	DefaultRefresh  = time.Hour
	DefaultTimeout  = 5 * time.Minute
	DefaultMaxSize  = 256 << 20
	DefaultMinRatio = 0.5
	// MinRefresh keeps a typo ("1s" for "1h") from hammering a feed's
	// provider.
	MinRefresh = time.Second
)

// Formats are the known feed formats.
var Formats = []string{"urls", "hosts", "urlhaus-csv", "clamav", "jsonl", "domains", "hashes", "ips", "spamhaus-drop"}

var sourceName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// ReadManifest reads and checks dir/feeds.toml. Every problem is reported
// at once, each naming the file, the source and the key.
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
	m.dir = dir
	var errs []error
	for _, k := range md.Undecoded() {
		errs = append(errs, fmt.Errorf("feeds: %s: unknown key %s", path, k))
	}
	if len(m.Sources) == 0 {
		errs = append(errs, fmt.Errorf("feeds: %s: no [[source]]", path))
	}
	if m.CacheDir == "" {
		m.CacheDir = DefaultCacheDir
	}
	names := make(map[string]int)
	var enabled []Source
	for i := range m.Sources {
		s := &m.Sources[i]
		if s.Name == "" {
			s.Name = s.Path
		}
		where := fmt.Sprintf("feeds: %s: source %d", path, i+1)
		if s.Name != "" {
			where += " (" + s.Name + ")"
		}
		on := s.Enabled == nil || *s.Enabled
		for _, e := range s.check(dir, on) {
			errs = append(errs, fmt.Errorf("%s: %w", where, e))
		}
		if j, dup := names[s.Name]; dup && s.Name != "" {
			errs = append(errs, fmt.Errorf("%s: name: %q is also the name of source %d", where, s.Name, j))
		}
		names[s.Name] = i + 1
		s.setDefaults()
		if on {
			enabled = append(enabled, *s)
		} else {
			m.Disabled = append(m.Disabled, *s)
		}
	}
	m.Sources = enabled
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return &m, nil
}

// check validates one source; the errors name the key. Header and URL
// values from the environment or files are resolved only for an enabled
// source (resolve).
func (s *Source) check(dir string, resolve bool) []error {
	var e sourceErrors
	switch {
	case s.Path == "" && s.URL == "":
		e.bad("path", "missing (give path or url)")
	case s.Path != "" && s.URL != "":
		e.bad("url", "give either path or url, not both")
	}
	if !knownFormat(s.Format) {
		e.bad("format", "unknown format %q (want one of %s)", s.Format, strings.Join(Formats, ", "))
	}
	if s.Verdict != "" {
		if _, err := reputation.ParseKind(s.Verdict); err != nil {
			e.bad("verdict", "%v", err)
		}
	}
	if s.URL == "" {
		s.checkLocal(&e)
		return e
	}
	s.checkDownload(dir, resolve, &e)
	return e
}

// sourceErrors are the problems of one source, each naming its key.
type sourceErrors []error

func (e *sourceErrors) bad(key, format string, args ...any) {
	*e = append(*e, fmt.Errorf("%s: %s", key, fmt.Sprintf(format, args...)))
}

// checkLocal refuses the keys that only a downloaded source has.
func (s *Source) checkLocal(e *sourceErrors) {
	for _, k := range []struct {
		key string
		set bool
	}{{"refresh", s.Refresh != 0}, {"timeout", s.Timeout != 0}, {"max_size", s.MaxSize != 0},
		{"headers", len(s.Headers) > 0}, {"compression", s.Compression != ""}, {"member", s.Member != ""},
		{"min_ratio", s.MinRatio != 0}} {
		if k.set {
			e.bad(k.key, "only for a source with url")
		}
	}
}

// checkDownload checks a source with a URL: its name, URL, schedule,
// compression and headers.
func (s *Source) checkDownload(dir string, resolve bool, e *sourceErrors) {
	if s.Name != "" && !sourceName.MatchString(s.Name) {
		e.bad("name", "%q: want letters, digits, '.', '_' or '-' (at most 64)", s.Name)
	}
	if s.Name == "" {
		e.bad("name", "required with url")
	}
	if err := checkFeedURL(s.URL); err != nil {
		e.bad("url", "%v", err)
	} else if _, err := ExpandURL(dir, s.URL); err != nil && resolve {
		e.bad("url", "%v", err)
	}
	if s.Refresh != 0 && s.Refresh.D() < MinRefresh {
		e.bad("refresh", "%s is too often (at least %s; most providers ask for an hour or more)", s.Refresh.D(), MinRefresh)
	}
	if s.StaleAfter != 0 && s.Refresh != 0 && s.StaleAfter.D() < s.Refresh.D() {
		e.bad("stale_after", "%s is shorter than refresh (%s)", s.StaleAfter.D(), s.Refresh.D())
	}
	switch s.Compression {
	case "", "auto", "gzip", "zip", "none":
	default:
		e.bad("compression", "unknown compression %q (want auto, gzip, zip or none)", s.Compression)
	}
	if s.Member != "" && s.Compression != "" && s.Compression != "auto" && s.Compression != "zip" {
		e.bad("member", "only for zip archives")
	}
	if s.MinRatio < 0 || s.MinRatio > 1 {
		e.bad("min_ratio", "%v is not between 0 and 1", s.MinRatio)
	}
	s.checkHeaders(dir, resolve, e)
}

// checkHeaders checks the names of the headers sent with the download and,
// when resolve, that their values can be read.
func (s *Source) checkHeaders(dir string, resolve bool, e *sourceErrors) {
	for k, v := range s.Headers {
		if !validHeaderName(k) {
			e.bad("headers."+k, "not a valid header name")
			continue
		}
		if _, err := HeaderValue(dir, v); err != nil && resolve {
			e.bad("headers."+k, "%v", err)
		}
	}
}

func (s *Source) setDefaults() {
	if s.URL != "" {
		if s.Refresh == 0 {
			s.Refresh = Duration(DefaultRefresh)
		}
		if s.StaleAfter == 0 {
			s.StaleAfter = 3 * s.Refresh
		}
		if s.Timeout == 0 {
			s.Timeout = Duration(DefaultTimeout)
		}
		if s.MaxSize == 0 {
			s.MaxSize = DefaultMaxSize
		}
		if s.Compression == "" {
			s.Compression = "auto"
		}
		if s.MinRatio == 0 {
			s.MinRatio = DefaultMinRatio
		}
	}
}

// checkFeedURL accepts http(s)://host[:port]/path[?query] without user
// info (credentials belong in headers, which are never shown).
func checkFeedURL(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return fmt.Errorf("invalid URL %q", s)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("invalid URL %q: want http(s)://host/path", s)
	}
	if u.User != nil {
		return fmt.Errorf("invalid URL: no user info (send credentials with headers = { Authorization = \"file:...\" })")
	}
	return nil
}

var urlPlaceholder = regexp.MustCompile(`\{((?:env|file):[^{}]+)\}`)

// ExpandURL replaces the {env:NAME} and {file:PATH} placeholders of a
// source URL by their values, query-escaped.
func ExpandURL(dir, raw string) (string, error) {
	var err error
	out := urlPlaceholder.ReplaceAllStringFunc(raw, func(m string) string {
		v, e := HeaderValue(dir, m[1:len(m)-1])
		if e != nil && err == nil {
			err = fmt.Errorf("%s: %w", m, e)
		}
		return url.QueryEscape(v)
	})
	return out, err
}

func validHeaderName(k string) bool {
	if k == "" {
		return false
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte("\"(),/:;<=>?@[\\]{}", c) >= 0 {
			return false
		}
	}
	return http.CanonicalHeaderKey(k) != "Host"
}

// HeaderValue resolves a headers value: "env:NAME" reads the environment,
// "file:PATH" a file (relative to dir), anything else is the value itself.
// The value must not be empty or hold control characters.
func HeaderValue(dir, v string) (string, error) {
	var out string
	switch {
	case strings.HasPrefix(v, "env:"):
		name := strings.TrimPrefix(v, "env:")
		val, ok := os.LookupEnv(name)
		if !ok || val == "" {
			return "", fmt.Errorf("environment variable %s is not set", name)
		}
		out = val
	case strings.HasPrefix(v, "file:"):
		p := strings.TrimPrefix(v, "file:")
		if !filepath.IsAbs(p) {
			p = filepath.Join(dir, p)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return "", err
		}
		out = strings.TrimRight(string(b), "\r\n")
	default:
		out = v
	}
	if out == "" {
		return "", errors.New("empty value")
	}
	for i := 0; i < len(out); i++ {
		if c := out[i]; (c < ' ' && c != '\t') || c == 0x7f {
			return "", errors.New("value holds control characters")
		}
	}
	return out, nil
}

func knownFormat(f string) bool {
	for _, g := range Formats {
		if f == g {
			return true
		}
	}
	return false
}

// Remote reports whether the source is downloaded.
func (s *Source) Remote() bool { return s.URL != "" }

// File is the file a source is read from: its path in the feed directory,
// or the last good copy of a download in the cache directory.
func (m *Manifest) File(s *Source) string {
	if s.Remote() {
		return filepath.Join(m.Cache(), s.Name+".feed")
	}
	return filepath.Join(m.dir, s.Path)
}

// Cache is the cache directory's path.
func (m *Manifest) Cache() string {
	if filepath.IsAbs(m.CacheDir) {
		return m.CacheDir
	}
	return filepath.Join(m.dir, m.CacheDir)
}

// Dir is the feed directory.
func (m *Manifest) Dir() string { return m.dir }

// Source returns the source called name.
func (m *Manifest) Source(name string) (*Source, bool) {
	for i := range m.Sources {
		if m.Sources[i].Name == name {
			return &m.Sources[i], true
		}
	}
	return nil, false
}

// DisplayURL is the URL without its query (which may carry a key), for
// the status and the logs.
func (s *Source) DisplayURL() string {
	u, err := url.Parse(s.URL)
	if err != nil {
		return ""
	}
	if u.RawQuery != "" {
		u.RawQuery = "…"
	}
	u.Fragment = ""
	return u.String()
}

// origin is the path or URL path a source's file name conventions (.fp)
// are read from.
func (s *Source) origin() string {
	if s.Path != "" {
		return s.Path
	}
	if u, err := url.Parse(s.URL); err == nil {
		return u.Path
	}
	return ""
}

// Duration is a time.Duration written as a Go duration string ("1h").
type Duration time.Duration

// UnmarshalText parses a duration; negative ones are refused.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(strings.TrimSpace(string(b)))
	if err != nil || v < 0 {
		return fmt.Errorf("invalid duration %q (want e.g. \"30m\", \"6h\")", string(b))
	}
	*d = Duration(v)
	return nil
}

// MarshalText writes the duration in Go syntax.
func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

// D returns the value as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// Size is a byte count written as "512", "64KiB", "256MiB" or "1GiB" (or a
// TOML integer).
type Size int64

// UnmarshalTOML accepts strings with a binary unit and plain integers.
func (s *Size) UnmarshalTOML(v any) error {
	switch x := v.(type) {
	case int64:
		if x < 0 {
			return fmt.Errorf("invalid size %d", x)
		}
		*s = Size(x)
		return nil
	case string:
		t := strings.TrimSpace(x)
		mult := int64(1)
		for _, u := range []struct {
			suffix string
			mult   int64
		}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"B", 1}} {
			if strings.HasSuffix(t, u.suffix) {
				t, mult = strings.TrimSpace(strings.TrimSuffix(t, u.suffix)), u.mult
				break
			}
		}
		n, err := strconv.ParseInt(t, 10, 64)
		if err != nil || n < 0 || n > (1<<50)/mult {
			return fmt.Errorf("invalid size %q (want e.g. \"64MiB\")", x)
		}
		*s = Size(n * mult)
		return nil
	}
	return fmt.Errorf("invalid size %v (want e.g. \"64MiB\")", v)
}
