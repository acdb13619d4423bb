package reputation

import (
	"errors"
	"fmt"
	"net/netip"
	"path"
	"strings"

	"github.com/picket-proxy/picket/internal/netaddr"
)

// ErrInvalidURL is returned (wrapped) for URLs that cannot be canonicalized.
var ErrInvalidURL = errors.New("reputation: invalid URL")

// maxURLLength bounds the input of Canonicalize in bytes; longer URLs are
// refused rather than unescaped over and over.
const maxURLLength = 64 << 10

// URL is a canonicalized URL split into the parts lookup expressions use.
type URL struct {
	Scheme string // lower case, "http" when the input had none
	Host   string // canonical host: lower case, punycode, dotted-decimal IPv4
	Path   string // canonical path, starting with "/"
	Query  string // without the "?"
	// HasQuery is set when the URL had a "?", even with an empty query.
	HasQuery bool
}

// String returns the canonical URL.
func (u URL) String() string {
	s := u.Scheme + "://" + u.Host + u.Path
	if u.HasQuery {
		s += "?" + u.Query
	}
	return s
}

// Canonicalize returns the Safe Browsing canonical form of a URL, e.g.
// "http://www.GOOgle.com.../a/../b#frag" → "http://www.google.com/b". A URL
// without a scheme is taken as http.
func Canonicalize(raw string) (string, error) {
	u, err := ParseURL(raw)
	if err != nil {
		return "", err
	}
	return u.String(), nil
}

// ParseURL canonicalizes raw as Safe Browsing specifies: strip surrounding
// whitespace, tab, CR and LF and the fragment; unescape percent-escapes
// repeatedly; normalise the host (dots, case, IPv4 forms, IDN to punycode)
// and the path ("/./", "/../", "//"); re-escape bytes <= 0x20, >= 0x7f, '#'
// and '%'. The port and user info are dropped.
func ParseURL(raw string) (URL, error) {
	if len(raw) > maxURLLength {
		return URL{}, fmt.Errorf("%w: longer than %d bytes", ErrInvalidURL, maxURLLength)
	}
	// 1. Whitespace, embedded tab/CR/LF, fragment.
	s := strings.TrimSpace(raw)
	if strings.ContainsAny(s, "\t\r\n") {
		s = strings.NewReplacer("\t", "", "\r", "", "\n", "").Replace(s)
	}
	if i := strings.IndexByte(s, '#'); i >= 0 {
		s = s[:i]
	}
	// 2. User information, before anything is unescaped: an escaped '/' or
	// '?' in it ("http://good.example%2F@evil.example/") would otherwise end
	// the authority early and pass for the host, while the request goes to
	// the host after the '@'.
	s = dropUserInfo(s)

	// 3. Unescape until nothing changes, then escape once.
	s = escape(netaddr.Unescape(s))

	// 4. Scheme: only "scheme://"; anything else is a schemeless URL.
	var u URL
	u.Scheme = "http"
	if i := strings.Index(s, "://"); i > 0 && isScheme(s[:i]) {
		u.Scheme = strings.ToLower(s[:i])
		s = s[i+3:]
	}
	// 5. Query, then host and path.
	if i := strings.IndexByte(s, '?'); i >= 0 {
		s, u.Query, u.HasQuery = s[:i], s[i+1:], true
	}
	host, p := s, ""
	if i := strings.IndexByte(s, '/'); i >= 0 {
		host, p = s[:i], s[i:]
	}
	var err error
	if u.Host, err = canonicalHost(host); err != nil {
		return URL{}, err
	}
	u.Path = canonicalPath(p)
	return u, nil
}

// dropUserInfo removes the user information from s: what its authority,
// as written, holds before its last '@'. The authority starts after
// "scheme://" (or at the start of a URL without a scheme) and ends at the
// first '/' or '?'.
func dropUserInfo(s string) string {
	start := 0
	if i := strings.Index(s, "://"); i > 0 && isScheme(s[:i]) {
		start = i + 3
	}
	auth := s[start:]
	if i := strings.IndexAny(auth, "/?"); i >= 0 {
		auth = auth[:i]
	}
	at := strings.LastIndexByte(auth, '@')
	if at < 0 {
		return s
	}
	return s[:start] + s[start+at+1:]
}

func isScheme(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z':
		case i > 0 && ('0' <= c && c <= '9' || c == '+' || c == '-' || c == '.'):
		default:
			return false
		}
	}
	return true
}

// canonicalHost works on an escaped host[:port] with optional user info.
// A host is read as every part of Picket reads it (internal/netaddr), after
// Safe Browsing's own step of dropping leading, trailing and repeated dots:
// a name in lower-case punycode, an IPv4 address in any spelling as dotted
// decimal, an IPv6 address in brackets (an IPv4-mapped one as IPv4). A host
// that is neither is never dialled (the rules refuse it), but it is still a
// lookup key: its text, lower case and escaped.
func canonicalHost(h string) (string, error) {
	if i := strings.LastIndexByte(h, '@'); i >= 0 {
		h = h[i+1:]
	}
	host, _, err := netaddr.SplitHostPort(netaddr.Unescape(h))
	if err != nil {
		return "", fmt.Errorf("%w: bad host %q", ErrInvalidURL, h)
	}
	if !strings.HasPrefix(host, "[") {
		host = squeezeDots(host)
	}
	if host == "" {
		return "", fmt.Errorf("%w: missing host", ErrInvalidURL)
	}
	if c, err := netaddr.ParseHost(host); err == nil {
		return c.URLHost(), nil
	}
	if host[0] == '[' { // "[" only starts an IPv6 literal
		return "", fmt.Errorf("%w: bad IPv6 address %q", ErrInvalidURL, host)
	}
	return escape(netaddr.LowerASCII(host)), nil
}

// squeezeDots removes leading and trailing dots and collapses runs of dots.
func squeezeDots(h string) string {
	h = strings.Trim(h, ".")
	if !strings.Contains(h, "..") {
		return h
	}
	var b strings.Builder
	for i := 0; i < len(h); i++ {
		if h[i] == '.' && i > 0 && h[i-1] == '.' {
			continue
		}
		b.WriteByte(h[i])
	}
	return b.String()
}

// canonicalPath resolves "/./", "/../" and "//", keeping a trailing slash.
func canonicalPath(p string) string {
	if p == "" {
		return "/"
	}
	c := path.Clean(p)
	if c == "/" {
		return c
	}
	if strings.HasSuffix(p, "/") || strings.HasSuffix(p, "/.") || strings.HasSuffix(p, "/..") {
		c += "/"
	}
	return c
}

// escape percent-escapes bytes <= 0x20, >= 0x7f, '#' and '%'.
func escape(s string) string {
	n := 0
	for i := 0; i < len(s); i++ {
		if mustEscape(s[i]) {
			n++
		}
	}
	if n == 0 {
		return s
	}
	const hex = "0123456789ABCDEF"
	b := make([]byte, 0, len(s)+2*n)
	for i := 0; i < len(s); i++ {
		c := s[i]
		if mustEscape(c) {
			b = append(b, '%', hex[c>>4], hex[c&15])
			continue
		}
		b = append(b, c)
	}
	return string(b)
}

func mustEscape(c byte) bool { return c <= 0x20 || c >= 0x7f || c == '#' || c == '%' }

// Expressions returns the lookup expressions of a canonical URL, at most 5
// hosts × 6 paths: for each of the exact host and up to 4 suffixes of its last
// five components (IP addresses only as they are), the exact path with query,
// the exact path, and "/" followed by up to 3 leading path components.
// Expressions have no scheme: "a.b.c/1/2.html?param=1".
func (u URL) Expressions() []string {
	hosts := u.hosts()
	paths := u.paths()
	out := make([]string, 0, len(hosts)*len(paths))
	for _, h := range hosts {
		for _, p := range paths {
			out = append(out, h+p)
		}
	}
	return out
}

func (u URL) hosts() []string {
	hosts := []string{u.Host}
	if strings.HasPrefix(u.Host, "[") {
		return hosts
	}
	if _, err := netip.ParseAddr(u.Host); err == nil { // canonical IPv4
		return hosts
	}
	comps := strings.Split(u.Host, ".")
	start := len(comps) - 5
	if start < 1 {
		start = 1
	}
	for i := start; i < len(comps)-1; i++ {
		hosts = append(hosts, strings.Join(comps[i:], "."))
	}
	return hosts
}

func (u URL) paths() []string {
	var paths []string
	if u.HasQuery && u.Query != "" {
		paths = append(paths, u.Path+"?"+u.Query)
	}
	paths = append(paths, u.Path)
	add := func(p string) {
		for _, q := range paths {
			if q == p {
				return
			}
		}
		paths = append(paths, p)
	}
	add("/")
	prefix := "/"
	rest := strings.TrimPrefix(u.Path, "/")
	for n := 0; n < 3; n++ {
		i := strings.IndexByte(rest, '/')
		if i < 0 {
			break
		}
		if i > 0 {
			prefix += rest[:i+1]
			add(prefix)
		}
		rest = rest[i+1:]
	}
	return paths
}

// Expression returns the single expression a feed or list entry stands for:
// the canonical host and path (and query) of a URL or host expression,
// without the scheme. "Phishing.Example" → "phishing.example/".
func Expression(raw string) (string, error) {
	u, err := ParseURL(raw)
	if err != nil {
		return "", err
	}
	s := u.Host + u.Path
	if u.HasQuery && u.Query != "" {
		s += "?" + u.Query
	}
	return s, nil
}
