package proxy

import (
	"bufio"
	"bytes"
	"net/http"
	"net/textproto"
	"net/url"
	"strings"
)

// The fast path's request parsing (fastpath.go): what it serves, read
// from the head the framing guard already checked.

// peekHead returns the request head at the start of br (through the empty
// line) without consuming it. fits is false when the head does not fit in
// br's buffer (the fast path declines it). started runs once if the head
// needs more than one read.
func peekHead(br *bufio.Reader, started func()) (head []byte, fits bool, err error) {
	more := false
	for {
		buf, _ := br.Peek(br.Buffered())
		if i := bytes.Index(buf, crlfcrlf); i >= 0 {
			return buf[:i+4], true, nil
		}
		if br.Buffered() == br.Size() {
			return nil, false, nil
		}
		if !more {
			more = true
			started()
		}
		if _, err := br.Peek(br.Buffered() + 1); err != nil {
			return nil, false, err
		}
	}
}

var crlfcrlf = []byte("\r\n\r\n")

// simpleRequest parses head into a request when the fast path can serve
// it, or returns nil. The framing guard has already checked the head's
// syntax; this only picks the requests it serves: on a plain connection
// GET or HEAD with an absolute http URL, or CONNECT; inside an intercepted
// tunnel t, GET or HEAD in origin form for the tunnel's authority. HTTP/1.1
// only.
func (s *Server) simpleRequest(head []byte, rc *reqContext, remote string, t *tunnel) *http.Request {
	line, rest, _ := bytes.Cut(head, []byte("\r\n"))
	method, target, ok := simpleRequestLine(line, t == nil)
	if !ok {
		return nil
	}
	uri := string(target) // one allocation for the URL and RequestURI
	u, ok := s.simpleTarget(method, target, uri, t)
	if !ok {
		return nil
	}
	h, f, ok := simpleHeader(rest)
	if !ok || f.hosts > 1 || f.hosts == 0 && method != http.MethodConnect {
		return nil // HTTP/1.1 needs one Host header (CONNECT may omit it)
	}
	if t == nil {
		f.host = u.Host
	} else if !sameAuthority(f.host, t.authority) {
		return nil // another authority than the tunnel's: net/http answers 421
	}
	return (&http.Request{
		Method:     method,
		URL:        u,
		Proto:      "HTTP/1.1",
		ProtoMajor: 1,
		ProtoMinor: 1,
		Header:     h,
		Body:       http.NoBody,
		Host:       f.host,
		Close:      f.close,
		RemoteAddr: remote,
		RequestURI: uri,
	}).WithContext(rc.forMethod(method))
}

// simpleRequestLine splits a request line the fast path serves: GET, HEAD
// or (on a plain connection) CONNECT, one target, HTTP/1.1.
func simpleRequestLine(line []byte, plain bool) (method string, target []byte, ok bool) {
	switch {
	case bytes.HasPrefix(line, []byte("GET ")):
		method, line = http.MethodGet, line[4:]
	case bytes.HasPrefix(line, []byte("HEAD ")):
		method, line = http.MethodHead, line[5:]
	case bytes.HasPrefix(line, []byte("CONNECT ")) && plain:
		method, line = http.MethodConnect, line[8:]
	default:
		return "", nil, false
	}
	target, ok = bytes.CutSuffix(line, []byte(" HTTP/1.1"))
	if !ok || len(target) == 0 || bytes.IndexByte(target, ' ') >= 0 {
		return "", nil, false
	}
	return method, target, true
}

// simpleTarget reads the URL of a request the fast path serves (uri is
// target as a string): a CONNECT's authority, checked later
// (connectTarget); on a plain connection an absolute http URL for another
// host than Picket; inside the tunnel t an origin-form path, given the
// tunnel's https authority.
func (s *Server) simpleTarget(method string, target []byte, uri string, t *tunnel) (*url.URL, bool) {
	switch {
	case method == http.MethodConnect:
		return &url.URL{Host: uri}, true
	case t == nil:
		if !bytes.HasPrefix(target, []byte("http://")) {
			return nil, false // origin form: Picket's own pages, net/http's
		}
		u, err := url.ParseRequestURI(uri)
		return u, err == nil && u.Host != "" && validPort(u) && !s.isSelf(u)
	}
	// Inside a tunnel: a head the framing guard refused is answered by the
	// tunnel's net/http handler.
	if target[0] != '/' || t.guard != nil && t.guard.refused() != 0 {
		return nil, false
	}
	u, err := url.ParseRequestURI(uri)
	if err != nil || u.Path == rejectPath {
		return nil, false
	}
	u.Scheme, u.Host = "https", t.urlHost
	return u, true
}

// headFacts is what simpleHeader reads of a head's fields beside the
// header it returns.
type headFacts struct {
	host  string // the (last) Host value
	hosts int    // Host fields
	close bool   // Connection: close
}

// simpleHeader parses the header fields of a head (after its request
// line) for the fast path: ok is false for what net/http would refuse with
// a 400, and for a body or a conversation the fast path does not hold
// (Content-Length, Transfer-Encoding, Expect, Upgrade, Trailer,
// Connection: upgrade). Host goes to f, not to the header.
func simpleHeader(rest []byte) (h http.Header, f headFacts, ok bool) {
	text := string(rest) // one allocation; header values are slices of it
	h = make(http.Header, bytes.Count(rest, []byte("\r\n")))
	for len(text) > 2 {
		l, after, _ := strings.Cut(text, "\r\n")
		text = after
		name, value, ok := strings.Cut(l, ":")
		if !ok || !isToken(name) || !validFieldValue(value) {
			return nil, f, false
		}
		name = textproto.CanonicalMIMEHeaderKey(name)
		value = strings.Trim(value, " \t")
		switch name {
		case "Content-Length", "Transfer-Encoding", "Expect", "Upgrade", "Trailer":
			return nil, f, false
		case "Connection":
			if !f.connection(value) {
				return nil, f, false
			}
		case "Host":
			f.hosts++
			f.host = value
			continue // the URL's host wins (RFC 9112 §3.2.2)
		}
		h[name] = append(h[name], value)
	}
	return h, f, true
}

// connection notes a Connection field's options; false for an upgrade.
func (f *headFacts) connection(value string) bool {
	for _, tok := range strings.Split(value, ",") {
		switch strings.ToLower(strings.TrimSpace(tok)) {
		case "close":
			f.close = true
		case "upgrade":
			return false
		}
	}
	return true
}

// isToken reports whether b is an HTTP token (RFC 9110 §5.6.2), as a
// field name must be (§5.1): one or more token characters.
func isToken[T string | []byte](b T) bool {
	if len(b) == 0 {
		return false
	}
	for i := 0; i < len(b); i++ {
		if !isTokenByte[b[i]] {
			return false
		}
	}
	return true
}

// validFieldValue reports whether v holds no control bytes but tab.
func validFieldValue(v string) bool {
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < ' ' && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}

var isTokenByte = func() (t [256]bool) {
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c], t[c-'a'+'A'] = true, true
	}
	for _, c := range "!#$%&'*+-.^_`|~" {
		t[c] = true
	}
	return t
}()
