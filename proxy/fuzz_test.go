package proxy

import (
	"bytes"
	"cmp"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/html"
)

// FuzzPeekSNI feeds arbitrary bytes to the ClientHello reader of the
// transparent HTTPS listener: it must never panic or hang, and must return
// only bytes it read, and any name it returns is a host name.
func FuzzPeekSNI(f *testing.F) {
	for _, sni := range []string{"example.test", "", "xn--bcher-kva.example", strings.Repeat("a", 250) + ".test"} {
		f.Add(clientHello(f, sni))
	}
	f.Add(helloWithBadSNI(f))
	f.Add([]byte{0x16, 0x03, 0x01, 0x00, 0x05, 0x01, 0x00, 0x00, 0x01, 0x00})
	f.Add([]byte("GET / HTTP/1.1\r\nHost: example.test\r\n\r\n"))
	f.Add([]byte{0x16, 0x03, 0x01, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, data []byte) {
		read, sni, _ := peekSNI(&bytesConn{r: bytes.NewReader(data)})
		if !bytes.HasPrefix(data, read) {
			t.Fatalf("returned %d bytes that are not a prefix of the input", len(read))
		}
		if sni != "" && !validHostName(sni) {
			t.Fatalf("returned server name %q, not a host name", sni)
		}
	})
}

// TestPeekSNIRejectsBadNames: a ClientHello whose SNI is not a host name
// (found by FuzzPeekSNI) is refused, never passed to the policy or the CA.
func TestPeekSNIRejectsBadNames(t *testing.T) {
	_, sni, err := peekSNI(&bytesConn{r: bytes.NewReader(helloWithBadSNI(t))})
	if err == nil && sni != "" {
		t.Errorf("peekSNI accepted server name %q, want an error", sni)
	}
}

// helloWithBadSNI is a real ClientHello whose server name was patched to
// hold NUL bytes and a slash (same length, so every length field holds).
func helloWithBadSNI(tb testing.TB) []byte {
	h := clientHello(tb, "aaaaaa.example.test")
	return bytes.Replace(h, []byte("aaaaaa.example"), []byte("a\x00\x00/aa.example"), 1)
}

// clientHello returns the first flight of a real TLS client for sni.
func clientHello(tb testing.TB, sni string) []byte {
	tb.Helper()
	var buf bytes.Buffer
	c := tls.Client(&bytesConn{r: bytes.NewReader(nil), w: &buf}, &tls.Config{ServerName: sni, InsecureSkipVerify: true})
	_ = c.Handshake() // fails reading the (absent) answer; the hello is written
	return buf.Bytes()
}

// bytesConn is a net.Conn that reads from r and writes to w (or nowhere).
type bytesConn struct {
	r *bytes.Reader
	w *bytes.Buffer
}

func (c *bytesConn) Read(p []byte) (int, error) { return c.r.Read(p) }
func (c *bytesConn) Write(p []byte) (int, error) {
	if c.w == nil {
		return 0, errors.New("write not supported")
	}
	return c.w.Write(p)
}
func (c *bytesConn) Close() error        { return nil }
func (c *bytesConn) LocalAddr() net.Addr { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 443} }
func (c *bytesConn) RemoteAddr() net.Addr {
	return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 50000}
}
func (c *bytesConn) SetDeadline(time.Time) error      { return nil }
func (c *bytesConn) SetReadDeadline(time.Time) error  { return nil }
func (c *bytesConn) SetWriteDeadline(time.Time) error { return nil }

// tamed replaces the characters markup is made of (FuzzBlockPage).
var tamed = map[rune]rune{'<': 'x', '>': 'x', '&': 'x', '"': 'x', '\'': 'x', '=': 'x', '/': 'x'}

// markup lists an HTML page's tags in order, each with its attribute names:
// its structure without its text and attribute values.
func markup(page []byte) []string {
	z := html.NewTokenizer(bytes.NewReader(page))
	var tags []string
	for {
		tt := z.Next()
		switch tt {
		case html.ErrorToken:
			return tags
		case html.StartTagToken, html.EndTagToken, html.SelfClosingTagToken, html.CommentToken, html.DoctypeToken:
			tok := z.Token()
			tag := tt.String()
			if tt != html.CommentToken { // a comment's data is text
				tag += " " + tok.Data
			}
			for _, a := range tok.Attr {
				tag += " " + a.Key
			}
			tags = append(tags, tag)
		}
	}
}

// FuzzBlockPage renders block and warn pages for hostile URLs and decision
// strings (a feed's category or threat name, a rule name, the reason): no
// markup from them may reach the page unescaped, and the text answer and
// the X-Picket-Reason header stays one line.
func FuzzBlockPage(f *testing.F) {
	f.Add("/x<script>alert(1)</script>", "q=<script>", "phishing", "<script>alert(1)</script>", "rule\"><script>", "reason</p><script>", false)
	f.Add("/", "", "malware", "Eicar-Test-Signature", "r", "", true)
	f.Add("/%3Cscript%3E", "a=%22%3E%3Cscript%3E", "", "", "", "javascript:alert(1)", true)
	f.Add("/\u2028x", "x=\r\nSet-Cookie: a=b", "c\r\nX: y", "t\x00", "r\n", "line\r\nbreak", false)
	p, err := newPages(&Config{Contact: "admin@example.test", WarnFor: time.Hour})
	if err != nil {
		f.Fatal(err)
	}
	page := func(path, query, category, threat, rule, reason string, warn bool) (*http.Request, *exchange, []byte) {
		u := &url.URL{Scheme: "http", Host: "bad.example.test", Path: path, RawQuery: query}
		d := Decision{Action: Block, Verdict: "phishing", Category: category, Threat: threat, Rule: rule, Reason: reason}
		x := &exchange{req: Request{Client: netip.MustParseAddr("192.0.2.7"), Method: "GET", URL: u}, decision: d, incident: newIncident()}
		in := &http.Request{Method: "GET", URL: u, Header: http.Header{"Accept": {"text/html"}}}
		body, _ := io.ReadAll(p.render(in, x, warn, "").Body)
		return in, x, body
	}
	f.Fuzz(func(t *testing.T, path, query, category, threat, rule, reason string, warn bool) {
		in, x, body := page(path, query, category, threat, rule, reason, warn)
		d := x.decision
		if bytes.Contains(bytes.ToLower(body), []byte("<script")) {
			t.Fatalf("page contains <script: %q", body)
		}
		// The inputs change the page's text, never its markup: the page has
		// the same tags and attributes as the one for the same inputs with
		// the characters markup is made of replaced.
		tame := func(s string) string { return strings.Map(func(r rune) rune { return cmp.Or(tamed[r], r) }, s) }
		_, _, plain := page(tame(path), tame(query), tame(category), tame(threat), tame(rule), tame(reason), warn)
		if got, want := markup(body), markup(plain); !slices.Equal(got, want) {
			t.Fatalf("the inputs changed the page's markup:\n%s\nagainst\n%s\npage: %q", strings.Join(got, "\n"), strings.Join(want, "\n"), body)
		}
		if v := headerSafe(blockReason(d)); strings.ContainsAny(v, "\r\n\x00") {
			t.Fatalf("X-Picket-Reason %q is not one line", v)
		}
		// The text answer carries the same strings raw: it must be text/plain
		// that browsers do not sniff into HTML.
		in.Header.Set("Accept", "text/plain")
		tr := p.render(in, x, warn, "")
		if ct := tr.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") || tr.Header.Get("X-Content-Type-Options") != "nosniff" {
			t.Fatalf("text answer: Content-Type %q, X-Content-Type-Options %q", ct, tr.Header.Get("X-Content-Type-Options"))
		}
	})
}

// FuzzH2Guard feeds arbitrary client bytes to the HTTP/2 frame guard, whole
// and in pieces: it must never panic, and must reach the same verdict
// whichever way the bytes are split across reads.
func FuzzH2Guard(f *testing.F) {
	f.Add([]byte(http2ClientPreface+"\x00\x00\x00\x04\x00\x00\x00\x00\x00"), uint8(3))
	f.Add([]byte(http2ClientPreface+"\x00\x00\x02\x01\x00\x00\x00\x00\x01\x82\x87\x00\x00\x00\x09\x00\x00\x00\x00\x01"), uint8(1))
	f.Add([]byte(http2ClientPreface+"\x00\x00\x04\x03\x00\x00\x00\x00\x01\x00\x00\x00\x08"), uint8(5))
	f.Fuzz(func(t *testing.T, data []byte, step uint8) {
		verdict := func(step int) (error, bool, uint32) {
			c1, c2 := net.Pipe()
			defer c1.Close()
			defer c2.Close()
			g := newH2Guard(c1, 4<<10, time.Minute)
			var err error
			for b := data; len(b) > 0 && err == nil; b = b[min(step, len(b)):] {
				err = g.scan(b[:min(step, len(b))])
			}
			return err, g.inBlock, g.remain
		}
		e1, b1, r1 := verdict(len(data) + 1)
		e2, b2, r2 := verdict(int(step%16) + 1)
		if e1 != e2 || b1 != b2 || r1 != r2 {
			t.Fatalf("whole: %v %v %d; in steps of %d: %v %v %d", e1, b1, r1, step%16+1, e2, b2, r2)
		}
	})
}

const http2ClientPreface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

// FuzzAltSvc feeds arbitrary Alt-Svc values to stripQUIC: it must never
// panic, never keep an alternative that is not HTTP over TCP, and give the
// same result when applied twice.
func FuzzAltSvc(f *testing.F) {
	for _, s := range []string{`h3=":443"; ma=86400, h2=":443"`, `clear`, `h3="a,b:1", http%2F1.1=":80"; p="x\"y"`, `quic=":443"; v="46,43"`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		h := http.Header{"Alt-Svc": {v}}
		stripQUIC(h)
		for _, kept := range h["Alt-Svc"] {
			if kept == "clear" {
				continue
			}
			for _, alt := range splitAltSvc(kept) {
				if p := altProtocol(alt); !tcpAlternatives[p] {
					t.Fatalf("kept %q (protocol %q) from %q", alt, p, v)
				}
			}
		}
		again := http.Header{"Alt-Svc": slices.Clone(h["Alt-Svc"])}
		stripQUIC(again)
		if !slices.Equal(again["Alt-Svc"], h["Alt-Svc"]) {
			t.Fatalf("not idempotent: %q then %q", h["Alt-Svc"], again["Alt-Svc"])
		}
	})
}
