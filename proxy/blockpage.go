package proxy

import (
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	_ "embed"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"html/template"
	"io"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
)

//go:embed templates/block.html
var defaultBlockTemplate string

// continuePath is the path, on the warned site itself, of a warn page's
// "continue" link. It is answered by the proxy and never forwarded.
const continuePath = "/.well-known/picket-continue"

// blockData is what the block and warn templates see.
type blockData struct {
	Warn        bool
	Title       string
	Reason      string // the reason in plain words
	URL         string
	DisplayURL  string // URL shortened for display
	Category    string
	Threat      string
	Rule        string
	Incident    string
	Time        string
	User        string // the signed-in user, "" without proxy authentication
	Contact     string
	Mailto      template.URL
	ContinueURL string
	WarnFor     string
}

// pages renders block and warn pages and keeps the warn allowances.
type pages struct {
	block, warn *template.Template
	contact     string
	warnFor     time.Duration
	key         [32]byte // signs continue tokens; new on every start
	allowed     *lru.Cache[string, time.Time]
	now         func() time.Time
}

func newPages(cfg *Config) (*pages, error) {
	p := &pages{contact: cfg.Contact, warnFor: cfg.WarnFor, now: time.Now}
	if _, err := rand.Read(p.key[:]); err != nil {
		return nil, err
	}
	var err error
	if p.block, err = parseTemplate("block", cfg.BlockTemplate); err != nil {
		return nil, err
	}
	if p.warn, err = parseTemplate("warn", cfg.WarnTemplate); err != nil {
		return nil, err
	}
	p.allowed, _ = lru.New[string, time.Time](10000)
	return p, nil
}

func parseTemplate(name, src string) (*template.Template, error) {
	if src == "" {
		src = defaultBlockTemplate
	}
	t, err := template.New(name).Parse(src)
	if err != nil {
		return nil, fmt.Errorf("proxy: %s page template: %w", name, err)
	}
	// Render once with sample data so a broken template fails at start.
	if err := t.Execute(io.Discard, blockData{Title: "t", Incident: "x", Mailto: "mailto:x"}); err != nil {
		return nil, fmt.Errorf("proxy: %s page template: %w", name, err)
	}
	return t, nil
}

// newIncident returns a short random incident ID, shown on the page and
// logged with the request.
func newIncident() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return strings.ToUpper(hex.EncodeToString(b[:]))
}

// plainReason says in plain words why a request was stopped.
func plainReason(d Decision, warn bool) string {
	if d.Reason != "" {
		return d.Reason
	}
	switch d.Verdict {
	case "malware":
		return "This site is known to spread malware. Opening it could infect your device."
	case "phishing":
		return "This is a known phishing site: it imitates a trusted site to steal passwords or payment details."
	case "unwanted":
		return "This site offers potentially unwanted software (adware or riskware)."
	}
	if warn {
		return "Your organisation asks you to think twice before opening this site."
	}
	return "Your organisation's web policy does not allow this site."
}

// shorten keeps a URL readable on a page: at most n runes, cut in the middle.
func shorten(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	half := (n - 1) / 2
	return string(r[:half]) + "…" + string(r[len(r)-half:])
}

// render answers a blocked or warned request: HTML for browsers, a short
// text for clients that do not accept HTML. continueURL is empty for blocks.
func (p *pages) render(in *http.Request, x *exchange, warn bool, continueURL string) *http.Response {
	d := x.decision
	full := ""
	if x.req.URL != nil {
		full = redactURL(x.req.URL)
	}
	data := blockData{
		Warn: warn, Title: "Access blocked", Reason: plainReason(d, warn), URL: full, DisplayURL: shorten(full, 90),
		Category: d.Category, Threat: d.Threat, Rule: d.Rule, Incident: x.incident,
		Time: p.now().UTC().Format("2006-01-02 15:04:05 UTC"), User: x.req.User, Contact: p.contact, ContinueURL: continueURL,
		WarnFor: p.warnFor.String(),
	}
	if warn {
		data.Title = "Warning: think before you continue"
	}
	if p.contact != "" {
		q := url.Values{}
		q.Set("subject", "Picket incident "+x.incident)
		q.Set("body", "Incident: "+x.incident+"\nURL: "+full+"\n")
		data.Mailto = template.URL("mailto:" + url.PathEscape(p.contact) + "?" + strings.ReplaceAll(q.Encode(), "+", "%20"))
	}
	status := http.StatusForbidden
	if warn {
		status = http.StatusOK
	}
	if !wantsHTML(in) {
		text := fmt.Sprintf("%s: %s\nURL: %s\nIncident: %s\n", data.Title, data.Reason, full, x.incident)
		if data.User != "" {
			text += "Signed in as: " + data.User + "\n"
		}
		return textResponse(in, status, text)
	}
	var buf bytes.Buffer
	t := p.block
	if warn {
		t = p.warn
	}
	if err := t.Execute(&buf, data); err != nil {
		return textResponse(in, status, data.Title+"\n")
	}
	resp := bodyResponse(in, status, "text/html; charset=utf-8", buf.Bytes())
	resp.Header.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; form-action 'none'; frame-ancestors 'none'")
	return resp
}

// wantsHTML reports whether the client takes an HTML page: not for HEAD,
// not for script requests that change state, not when Accept leaves
// text/html out.
func wantsHTML(r *http.Request) bool {
	if r.Method == http.MethodHead {
		return false
	}
	if r.Method != http.MethodGet && r.Header.Get("X-Requested-With") != "" {
		return false
	}
	accept := r.Header.Get("Accept")
	return accept == "" || strings.Contains(accept, "text/html")
}

// redactURL is the URL shown on pages: no user information.
func redactURL(u *url.URL) string {
	c := *u
	c.User = nil
	return c.String()
}

func textResponse(req *http.Request, status int, text string) *http.Response {
	return bodyResponse(req, status, "text/plain; charset=utf-8", []byte(text))
}

func bodyResponse(req *http.Request, status int, ctype string, body []byte) *http.Response {
	h := make(http.Header, 4)
	h.Set("Content-Type", ctype)
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	var rc io.ReadCloser = http.NoBody
	if req.Method != http.MethodHead {
		rc = io.NopCloser(bytes.NewReader(body))
	}
	return &http.Response{
		Status: strconv.Itoa(status) + " " + http.StatusText(status), StatusCode: status,
		Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: h, Body: rc, ContentLength: int64(len(body)), Request: req,
	}
}

// Continue tokens bind a client address, a host and an expiry time with an
// HMAC under a key that lives only in this process: they cannot be forged,
// nor used for another host or by another client, and die with a restart.

func (p *pages) token(client netip.Addr, host string, exp time.Time) string {
	var b [8 + 16]byte
	binary.BigEndian.PutUint64(b[:8], uint64(exp.Unix()))
	copy(b[8:], p.mac(client, host, b[:8]))
	return base64.RawURLEncoding.EncodeToString(b[:])
}

func (p *pages) mac(client netip.Addr, host string, exp []byte) []byte {
	m := hmac.New(sha256.New, p.key[:])
	m.Write([]byte(client.String()))
	m.Write([]byte{0})
	m.Write([]byte(normalizeHost(host)))
	m.Write([]byte{0})
	m.Write(exp)
	return m.Sum(nil)[:16]
}

// verify checks a continue token for client and host; it returns the expiry.
func (p *pages) verify(tok string, client netip.Addr, host string) (time.Time, bool) {
	b, err := base64.RawURLEncoding.DecodeString(tok)
	if err != nil || len(b) != 24 {
		return time.Time{}, false
	}
	if !hmac.Equal(b[8:], p.mac(client, host, b[:8])) {
		return time.Time{}, false
	}
	exp := time.Unix(int64(binary.BigEndian.Uint64(b[:8])), 0)
	return exp, p.now().Before(exp)
}

// continueURL is the warn page's link: on the same site, back to where the
// user was going.
func (p *pages) continueURL(x *exchange) string {
	u := x.req.URL
	exp := p.now().Add(p.warnFor)
	q := url.Values{}
	q.Set("t", p.token(x.req.Client, u.Hostname(), exp))
	q.Set("u", u.RequestURI())
	return (&url.URL{Scheme: u.Scheme, Host: u.Host, Path: continuePath, RawQuery: q.Encode()}).String()
}

// allowance is the key of a granted "continue". Hosts are keyed as every
// part of Picket reads them (normalizeHost), like the token's MAC, so that
// the continue granted for one spelling holds for all.
func allowance(client netip.Addr, host string) string {
	return client.String() + "\x00" + normalizeHost(host)
}

// isAllowed reports whether client continued past a warning for host.
func (p *pages) isAllowed(client netip.Addr, host string) bool {
	exp, ok := p.allowed.Get(allowance(client, host))
	return ok && p.now().Before(exp)
}

// handleContinue answers a warn page's continue link: a valid token grants
// the allowance and redirects to the original path on the same site.
func (p *pages) handleContinue(in *http.Request, x *exchange) *http.Response {
	host := in.URL.Hostname()
	q := in.URL.Query()
	exp, ok := p.verify(q.Get("t"), x.req.Client, host)
	target := q.Get("u")
	if !ok || !strings.HasPrefix(target, "/") || strings.HasPrefix(target, "//") || strings.ContainsAny(target, "\\\r\n") {
		x.errKind = ErrContinueToken
		return textResponse(in, http.StatusForbidden, "This continue link is invalid or has expired. Open the site again.\n")
	}
	p.allowed.Add(allowance(x.req.Client, host), exp)
	resp := bodyResponse(in, http.StatusSeeOther, "text/plain; charset=utf-8", []byte("Continuing.\n"))
	resp.Header.Set("Location", (&url.URL{Scheme: in.URL.Scheme, Host: in.URL.Host}).String()+target)
	return resp
}
