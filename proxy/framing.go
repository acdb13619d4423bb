package proxy

import (
	"bytes"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
)

// framingGuard reads a client connection's HTTP/1.x byte stream ahead of
// net/http and refuses the request heads that net/http would quietly
// normalize but that let two parsers disagree about where a request ends
// (request smuggling): Content-Length together with Transfer-Encoding,
// Transfer-Encoding on HTTP/1.0, duplicate Content-Length, obsolete line
// folding, bare LF line endings; and it enforces the request-line (414) and
// header-count (431) limits net/http lacks. It follows message framing
// (Content-Length and chunked bodies) to find each next head; it stops at a
// CONNECT or an Upgrade, after which the bytes are not HTTP (and which end
// their connection when they are refused or declined: closeAfterUpgrade).
//
// A refused head is never given to net/http: in its place net/http reads a
// small request to rejectPath, which ServeHTTP answers with the verdict's
// status and then closes the connection. Nothing after it is read.
type framingGuard struct {
	maxLine, maxHeaders, maxHead int

	buf      []byte // read from the client, not yet checked
	out      []byte // checked, for net/http
	bufBase  []byte // the arrays buf and out restart from when empty
	outBase  []byte
	state    guardState
	remain   int64        // body bytes left in stateBody / stateChunkData
	verdict  int          // status of a refused head (0 = none)
	finished bool         // stopped guarding: pass everything through
	injected bool         // the reject request was handed over
	status   atomic.Int32 // verdict, for the handler's goroutine
}

// read fills p with checked bytes, reading from r as needed. After a
// refused head it hands over the reject request, then io.EOF. Read errors
// are not kept: net/http interrupts a background read with a past deadline
// and then reads again.
func (g *framingGuard) read(r io.Reader, p []byte) (int, error) {
	for len(g.out) == 0 {
		if g.verdict != 0 {
			if g.injected {
				return 0, io.EOF
			}
			g.injected = true
			g.out = append(g.out, rejectRequest...)
			break
		}
		if g.finished && len(g.buf) == 0 {
			return r.Read(p)
		}
		// Read into p itself: feed copies what it keeps before p is
		// overwritten with what passed (no buffer on this goroutine's
		// stack, which idle keep-alive connections would keep).
		n, err := r.Read(p)
		g.feed(p[:n])
		if err != nil && len(g.out) == 0 && g.verdict == 0 {
			return 0, err
		}
	}
	n := copy(p, g.out)
	g.took(n)
	return n, nil
}

// refuse records the verdict on the current head.
func (g *framingGuard) refuse(status int) {
	g.verdict = status
	g.status.Store(int32(status))
}

// refused returns the verdict for other goroutines (the handler that answers
// it runs beside net/http's background read).
func (g *framingGuard) refused() int { return int(g.status.Load()) }

// done reports whether the guard has stopped and holds nothing.
func (g *framingGuard) done() bool {
	return g.finished && len(g.buf) == 0 && len(g.out) == 0
}

// guardedConn puts a framing guard in front of a connection's reads (the
// TLS connection of an intercepted tunnel).
type guardedConn struct {
	net.Conn
	g *framingGuard
}

func (c *guardedConn) Read(p []byte) (int, error) { return c.g.read(c.Conn, p) }

type guardState uint8

const (
	stateHead guardState = iota
	stateBody
	stateChunkSize
	stateChunkData
	stateChunkCRLF
	stateTrailers
)

// refuseHead answers a head the framing guard refused with its status, and
// closes the connection.
func refuseHead(w http.ResponseWriter, status int) {
	w.Header().Set("Connection", "close")
	writePage(w, page{Status: status, Title: http.StatusText(status),
		Msg: "The request was malformed or ambiguous and was not forwarded."})
}

// closeAfterUpgrade wraps the handler of each HTTP/1.x server whose
// connections a framing guard checks. The guard stops at a head with an
// Upgrade, since what follows may be another protocol; a request with one
// that is answered without switching protocols must therefore be its
// connection's last, or the requests after it would reach net/http
// unchecked (net/http itself ends a connection after a CONNECT, even a
// refused one). Answers written to w keep the header set here; goproxy
// replaces w's header with the response's, which respond marks the same
// way.
func closeAfterUpgrade(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if upgradeAsked(r) {
			w.Header().Set("Connection", "close")
		}
		h.ServeHTTP(w, r)
	})
}

// upgradeAsked reports whether r is an HTTP/1.x request with an Upgrade
// header: a head at which the framing guard stopped.
func upgradeAsked(r *http.Request) bool {
	return r.ProtoMajor == 1 && r.Header["Upgrade"] != nil
}

// rejectPath is what net/http reads in place of a refused head.
const rejectPath = "/.well-known/picket-rejected"

func newFramingGuard(maxHead int) *framingGuard {
	return &framingGuard{maxLine: 8 << 10, maxHeaders: 100, maxHead: maxHead + 4096}
}

// saveArrays remembers the arrays of buf and out once they have grown, to
// reuse them for the next requests (they start empty: an idle connection costs
// nothing here).
func (g *framingGuard) saveArrays() {
	if cap(g.buf) > cap(g.bufBase) {
		g.bufBase = g.buf[:0]
	}
	if cap(g.out) > cap(g.outBase) {
		g.outBase = g.out[:0]
	}
}

// took records that n bytes of out were handed to net/http.
func (g *framingGuard) took(n int) {
	g.out = g.out[n:]
	if len(g.out) == 0 {
		g.out = g.outBase[:0]
	}
}

// feed takes bytes read from the client and moves what is checked to out.
func (g *framingGuard) feed(p []byte) {
	if g.verdict != 0 {
		return // nothing after a refused head is read
	}
	g.buf = append(g.buf, p...)
	g.saveArrays()
	for len(g.buf) > 0 && !g.finished && g.verdict == 0 {
		if !g.step() {
			break // needs more bytes
		}
	}
	if g.finished {
		g.out = append(g.out, g.buf...)
		g.buf = nil
	}
}

// pass moves n checked bytes from buf to out.
func (g *framingGuard) pass(n int) {
	g.out = append(g.out, g.buf[:n]...)
	g.saveArrays()
	g.buf = g.buf[n:]
	if len(g.buf) == 0 {
		g.buf = g.bufBase[:0] // reuse the array: no allocation per request
	}
}

// step handles one piece of the stream; false means it needs more bytes.
func (g *framingGuard) step() bool {
	switch g.state {
	case stateHead:
		return g.head()
	case stateBody, stateChunkData:
		n := int(min(g.remain, int64(len(g.buf))))
		g.pass(n)
		g.remain -= int64(n)
		if g.remain == 0 {
			if g.state == stateBody {
				g.state = stateHead
			} else {
				g.state = stateChunkCRLF
			}
		}
		return true
	case stateChunkCRLF:
		if len(g.buf) < 2 {
			return false
		}
		if g.buf[0] != '\r' || g.buf[1] != '\n' {
			g.finished = true // malformed: net/http refuses it
			return true
		}
		g.pass(2)
		g.state = stateChunkSize
		return true
	case stateChunkSize:
		return g.chunkSize()
	case stateTrailers:
		return g.trailer()
	}
	return false
}

// chunkSize reads a chunk-size line.
func (g *framingGuard) chunkSize() bool {
	i := bytes.IndexByte(g.buf, '\n')
	if i < 0 {
		if len(g.buf) > 4096 {
			g.finished = true
		}
		return false
	}
	line := strings.TrimSuffix(string(g.buf[:i]), "\r")
	if j := strings.IndexByte(line, ';'); j >= 0 {
		line = line[:j]
	}
	size, err := strconv.ParseInt(strings.TrimSpace(line), 16, 64)
	if err != nil || size < 0 {
		g.finished = true // net/http answers the malformed chunk
		return true
	}
	g.pass(i + 1)
	if size == 0 {
		g.state = stateTrailers
	} else {
		g.state, g.remain = stateChunkData, size
	}
	return true
}

// trailer reads a trailer line; the empty one ends the chunked body.
func (g *framingGuard) trailer() bool {
	i := bytes.IndexByte(g.buf, '\n')
	if i < 0 {
		if len(g.buf) > g.maxHead {
			g.finished = true
		}
		return false
	}
	empty := i == 0 || i == 1 && g.buf[0] == '\r'
	g.pass(i + 1)
	if empty {
		g.state = stateHead
	}
	return true
}

// head checks one complete request head.
func (g *framingGuard) head() bool {
	g.skipBlankLines()
	end, status, complete := g.headEnd()
	if status != 0 {
		g.refuse(status)
		return true
	}
	if !complete {
		return false
	}
	h, status := g.scanHead(g.buf[:end+1])
	if status == 0 {
		status = h.refusal(g.maxHeaders)
	}
	if status != 0 {
		g.refuse(status)
		return true
	}
	g.pass(end + 3)
	g.follow(&h)
	return true
}

// skipBlankLines passes the blank lines between requests, which net/http
// tolerates.
func (g *framingGuard) skipBlankLines() {
	for len(g.buf) > 0 && (g.buf[0] == '\r' || g.buf[0] == '\n') {
		if g.buf[0] == '\r' && (len(g.buf) < 2 || g.buf[1] != '\n') {
			break
		}
		if g.buf[0] == '\r' {
			g.pass(2)
		} else {
			g.pass(1)
		}
	}
}

// headEnd finds the end of the head at the start of buf: the index of its
// "\n\r\n", and complete. It returns a status to refuse with when the
// request line is too long or the head ends in bare LFs; not complete when
// more bytes are needed (or, beyond the head size limit, when the guard
// finished: net/http answers 431).
func (g *framingGuard) headEnd() (end, status int, complete bool) {
	end = bytes.Index(g.buf, []byte("\n\r\n"))
	lf := bytes.Index(g.buf, []byte("\n\n"))
	switch {
	case end < 0 && lf < 0:
		if nl := bytes.IndexByte(g.buf, '\n'); (nl < 0 && len(g.buf) > g.maxLine) || nl > g.maxLine {
			return 0, http.StatusRequestURITooLong, false
		}
		if len(g.buf) > g.maxHead {
			g.finished = true // net/http answers 431
		}
		return 0, 0, false
	case end < 0 || (lf >= 0 && lf < end):
		return 0, http.StatusBadRequest, false // a head ended by bare LFs
	}
	return end, 0, true
}

// clientHead is what the framing guard reads of a client's request head.
type clientHead struct {
	line             []byte // the request line
	headers          int    // header lines
	cl, te           int    // Content-Length and Transfer-Encoding lines
	clValue          []byte // the (last) Content-Length value
	upgrade, chunked bool   // an Upgrade line; a Transfer-Encoding of chunked alone
	badCoding        bool   // a Transfer-Encoding that does not apply chunked last, once
}

// scanHead walks the lines of a head (through its last header line's
// '\n') in place: no copies, no allocations on this path. A status is
// returned for a bare LF, an overlong request line or obsolete line
// folding.
func (g *framingGuard) scanHead(head []byte) (h clientHead, status int) {
	for off := 0; off < len(head); {
		nl := bytes.IndexByte(head[off:], '\n') + off
		line := head[off:nl]
		off = nl + 1
		if len(line) == 0 || line[len(line)-1] != '\r' {
			return h, http.StatusBadRequest // bare LF
		}
		line = line[:len(line)-1]
		if h.line == nil {
			if h.line = line; len(line) > g.maxLine {
				return h, http.StatusRequestURITooLong
			}
			continue
		}
		if len(line) > 0 && (line[0] == ' ' || line[0] == '\t') {
			return h, http.StatusBadRequest // obsolete line folding
		}
		h.headers++
		h.field(line)
	}
	return h, 0
}

// field notes a header line of the head.
func (h *clientHead) field(line []byte) {
	colon := bytes.IndexByte(line, ':')
	if colon < 0 {
		return // net/http refuses it
	}
	name, value := bytes.TrimSpace(line[:colon]), bytes.TrimSpace(line[colon+1:])
	switch {
	case bytes.EqualFold(name, []byte("Content-Length")):
		h.cl++
		h.clValue = value
	case bytes.EqualFold(name, []byte("Transfer-Encoding")):
		h.te++
		h.chunked = bytes.EqualFold(value, []byte("chunked"))
		h.badCoding = !chunkedLast(value)
	case bytes.EqualFold(name, []byte("Upgrade")):
		h.upgrade = true
	}
}

// refusal returns the status to refuse the head with, or 0.
func (h *clientHead) refusal(maxHeaders int) int {
	if h.headers > maxHeaders {
		return http.StatusRequestHeaderFieldsTooLarge
	}
	if v := h.line[bytes.LastIndexByte(h.line, ' ')+1:]; len(v) > 5 && string(v[:5]) == "HTTP/" && v[5] != '1' {
		// Not HTTP/1.x: the HTTP/2 connection preface ("PRI * HTTP/2.0")
		// on the proxy port, or HTTP/0.9 (RFC 9110 §15.6.6).
		return http.StatusHTTPVersionNotSupported
	}
	http10 := bytes.HasSuffix(h.line, []byte("HTTP/1.0"))
	switch {
	case h.cl > 0 && h.te > 0, h.cl > 1, h.te > 1, h.te > 0 && http10,
		h.badCoding: // RFC 9112 §6.3: the length cannot be determined; 400 and close
		return http.StatusBadRequest
	}
	return 0
}

// follow sets the guard to what comes after an accepted head: its body, the
// next head, or bytes that are not HTTP.
func (g *framingGuard) follow(h *clientHead) {
	switch {
	case bytes.HasPrefix(h.line, []byte("CONNECT ")) || h.upgrade:
		g.finished = true // a tunnel or another protocol follows
	case h.te > 0:
		if !h.chunked {
			g.finished = true // net/http answers an unknown coding
		} else {
			g.state = stateChunkSize
		}
	case h.cl == 1:
		size, err := strconv.ParseInt(string(h.clValue), 10, 64)
		if err != nil || size < 0 {
			g.finished = true // net/http answers it
		} else if size > 0 {
			g.state, g.remain = stateBody, size
		}
	}
}

// rejectRequest is the request net/http reads in place of a refused head.
const rejectRequest = "GET " + rejectPath + " HTTP/1.1\r\nHost: picket\r\n\r\n"

// chunkedLast reports whether a Transfer-Encoding value applies chunked
// last and only once (RFC 9112 §6.1). Otherwise the request's length cannot
// be determined, and a server must answer 400 and close (RFC 9112 §6.3).
// A value that ends in chunked after other codings is well framed; net/http
// answers it 501 (it implements chunked alone).
func chunkedLast(value []byte) bool {
	var last []byte
	chunks := 0
	for tok := range bytes.SplitSeq(value, []byte(",")) {
		last = bytes.TrimSpace(tok)
		if bytes.EqualFold(last, []byte("chunked")) {
			chunks++
		}
	}
	return chunks == 1 && bytes.EqualFold(last, []byte("chunked"))
}
