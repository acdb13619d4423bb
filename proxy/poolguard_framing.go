package proxy

import (
	"bufio"
	"bytes"
	"net/http"
)

// The message framing the pool guard follows (poolguard.go): where a
// response ends, read as net/http's Transport reads it (RFC 9112 §6.3 as Go
// implements it), and where a request Picket wrote ends.

// respState is where a response stream is.
type respState uint8

const (
	respHead       respState = iota // reading a head (final or 1xx)
	respBody                        // Content-Length body bytes left
	respChunks                      // a chunked body
	respUntilClose                  // the body ends with the connection
	respSwitched                    // 101 or a CONNECT's 2xx: no longer HTTP
	respLost                        // framing net/http rejects: not followed
)

// respEnds finds where each response ends in the bytes read.
type respEnds struct {
	state   respState
	hs      headEnd
	left    int64 // respBody: bytes left
	chunks  chunkEnds
	maxHead int
	head    bool // the request answered is a HEAD (set when a response starts)
	connect bool // ... a CONNECT
	// last: the response that ended must be the connection's last (a 204
	// that announced a body: whatever follows it was meant as one).
	last bool
}

// starting reports whether the next byte starts a response.
func (r *respEnds) starting() bool { return r.state == respHead && r.hs.empty() }

// feed follows the response bytes p. When the final response (not a 1xx)
// ends within p it returns the offset just past its end and true; bytes
// after that offset belong to no request. It returns false while the
// response goes on, and in the states where it no longer follows framing.
func (r *respEnds) feed(p []byte) (end int, ended bool) {
	i := 0
	for i < len(p) {
		switch r.state {
		case respHead:
			head, used, st := r.hs.feed(p[i:], r.maxHead)
			i += used
			switch st {
			case headMore:
				return 0, false
			case headTooLong:
				r.state = respLost
				return 0, false
			}
			r.state = r.afterHead(head)
			r.hs.reset()
			if r.state == respBody && r.left == 0 {
				r.state = respHead // no body: ended with the head
				return i, true
			}
		case respBody:
			k := int(min(r.left, int64(len(p)-i)))
			i += k
			if r.left -= int64(k); r.left == 0 {
				r.state = respHead
				return i, true
			}
		case respChunks:
			used, st := r.chunks.feed(p[i:])
			i += used
			switch st {
			case chunksDone:
				r.state = respHead
				return i, true
			case chunksBad:
				r.state = respLost
			}
			return 0, false
		default:
			return 0, false
		}
	}
	return 0, false
}

// afterHead decides, from a complete response head, what follows it: the
// next head (a 1xx), a body of r.left bytes (0 for none), chunks, the rest
// of the connection, or another protocol.
func (r *respEnds) afterHead(head []byte) respState {
	r.last = false
	f, ok := parseRespHead(head)
	if !ok {
		if f, ok = goRespHead(head, r.head); !ok {
			return respLost // net/http rejects it too, and drops the connection
		}
	}
	switch {
	case f.status >= 100 && f.status <= 199 && f.status != http.StatusSwitchingProtocols:
		return respHead // interim: the final response follows
	case f.status == http.StatusSwitchingProtocols, r.connect && f.status >= 200 && f.status <= 299:
		return respSwitched
	case r.head, f.status == http.StatusNoContent, f.status == http.StatusNotModified:
		// A 204 has no content and must not announce any (RFC 9110
		// §8.6, §15.3.5); one that does is followed by bytes that nobody
		// asked for, sooner or later: the connection ends with it.
		r.last = f.status == http.StatusNoContent && (f.length > 0 || f.chunked)
		r.left = 0
		return respBody
	case f.chunked:
		r.chunks = chunkEnds{line: r.chunks.line[:0]}
		return respChunks
	case f.length >= 0:
		r.left = f.length
		return respBody
	}
	return respUntilClose
}

// respFraming is what a response head says about its body.
type respFraming struct {
	status  int
	chunked bool  // Transfer-Encoding: chunked, and HTTP/1.1 or later
	length  int64 // Content-Length, or -1
}

// parseRespHead reads the framing of the common, unambiguous heads without
// allocating: a status line "HTTP/1.x NNN ...", header lines "name: value"
// with token names, at most one Content-Length of digits and at most one
// Transfer-Encoding, "chunked". Anything else reports false, and net/http's
// own parser decides (goRespHead).
func parseRespHead(head []byte) (f respFraming, ok bool) {
	line, rest := cutHeadLine(head)
	var http10 bool
	if f.status, http10, ok = parseStatusLine(line); !ok {
		return f, false
	}
	f.length = -1
	var lengths, encodings int
	for len(rest) > 0 {
		line, rest = cutHeadLine(rest)
		if len(line) == 0 {
			break
		}
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 || !isToken(line[:colon]) {
			return f, false
		}
		name, value := line[:colon], bytes.Trim(line[colon+1:], " \t")
		switch {
		case len(name) == len("Content-Length") && bytes.EqualFold(name, []byte("Content-Length")):
			if lengths++; lengths > 1 {
				return f, false
			}
			if f.length, ok = parseLength(value); !ok {
				return f, false
			}
		case len(name) == len("Transfer-Encoding") && bytes.EqualFold(name, []byte("Transfer-Encoding")):
			if encodings++; encodings > 1 || !bytes.EqualFold(value, []byte("chunked")) {
				return f, false
			}
			f.chunked = !http10 // HTTP/1.0 ignores it, as net/http does
		}
	}
	return f, true
}

// parseStatusLine reads "HTTP/1.x NNN ..." and whether it is HTTP/1.0.
func parseStatusLine(line []byte) (status int, http10, ok bool) {
	if len(line) < 12 || string(line[:7]) != "HTTP/1." || line[7] != '0' && line[7] != '1' || line[8] != ' ' ||
		len(line) > 12 && line[12] != ' ' {
		return 0, false, false
	}
	for _, c := range line[9:12] {
		if c < '0' || c > '9' {
			return 0, false, false
		}
		status = status*10 + int(c-'0')
	}
	return status, line[7] == '0', true
}

// parseLength reads a Content-Length of at most 18 digits.
func parseLength(v []byte) (int64, bool) {
	if len(v) == 0 || len(v) > 18 {
		return 0, false
	}
	var n int64
	for _, c := range v {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

// goRespHead reads the framing of head with net/http's own parser: the
// rare heads parseRespHead leaves to it (repeated Content-Length, odd
// spacing, continuation lines). ok is false when net/http rejects the head.
func goRespHead(head []byte, isHead bool) (f respFraming, ok bool) {
	req := &http.Request{Method: http.MethodGet}
	if isHead {
		req.Method = http.MethodHead
	}
	resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(head)), req)
	if err != nil {
		return f, false
	}
	f.status = resp.StatusCode
	f.chunked = len(resp.TransferEncoding) > 0
	f.length = resp.ContentLength
	if f.status == http.StatusNoContent && resp.Header.Get("Content-Length") != "" {
		f.length = 1 // announced, whatever net/http made of it
	}
	return f, true
}

// cutHeadLine cuts the first line of b as bufio.Reader.ReadLine does: it
// ends at '\n', and one '\r' before it is dropped.
func cutHeadLine(b []byte) (line, rest []byte) {
	i := bytes.IndexByte(b, '\n')
	if i < 0 {
		return b, nil
	}
	line, rest = b[:i], b[i+1:]
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	return line, rest
}

// headState is what headEnd.feed found.
type headState uint8

const (
	headMore    headState = iota // the head goes on
	headDone                     // it ended
	headTooLong                  // it is longer than allowed
)

// headEnd finds the end of a message head — its first empty line, a line
// ending in '\n' that holds nothing or a lone '\r', as net/http's line
// reader sees it — across reads.
type headEnd struct {
	buf  []byte // the head so far, when it spans reads
	line int    // bytes of the current line before its '\n'
	cr   bool   // the current line's last byte is '\r'
}

func (h *headEnd) empty() bool { return h.line == 0 && len(h.buf) == 0 }

func (h *headEnd) reset() {
	h.buf, h.line, h.cr = h.buf[:0], 0, false
}

// feed scans p for the end of the head. When it ends, head is the whole
// head (a slice of p when all of it is there, else of a copy) and used the
// bytes of p it took; otherwise used is len(p).
func (h *headEnd) feed(p []byte, max int) (head []byte, used int, st headState) {
	for i := 0; i < len(p); {
		j := bytes.IndexByte(p[i:], '\n')
		if j < 0 {
			h.line += len(p) - i
			h.cr = p[len(p)-1] == '\r'
			break
		}
		n := h.line + j // the line's length before '\n'
		cr := j > 0 && p[i+j-1] == '\r' || j == 0 && h.cr
		i += j + 1
		h.line, h.cr = 0, false
		if n == 0 || n == 1 && cr {
			if len(h.buf) == 0 {
				return p[:i], i, headDone // all of it in p: no copy
			}
			h.buf = append(h.buf, p[:i]...)
			return h.buf, i, headDone
		}
	}
	h.buf = append(h.buf, p...)
	if len(h.buf) > max {
		return nil, len(p), headTooLong
	}
	return nil, len(p), headMore
}

// chunkState is where a chunked body is.
type chunkState uint8

const (
	chunkSize     chunkState = iota // the chunk-size line
	chunkData                       // chunk data bytes left
	chunkDataCR                     // the CR after the data
	chunkDataLF                     // the LF after the data
	chunkTrailers                   // the trailer section, up to its empty line
)

// chunksStatus is what chunkEnds.feed found.
type chunksStatus uint8

const (
	chunksMore chunksStatus = iota
	chunksDone
	chunksBad // net/http's chunked reader fails on it
)

// maxChunkLine is net/http's limit on a chunk-size line.
const maxChunkLine = 4096

// chunkEnds finds the end of a chunked body (RFC 9112 §7.1), checked as
// net/http's chunked reader checks it: size lines end in CRLF with no other
// CR, hexadecimal sizes of at most 16 digits (extensions after ';'
// ignored), CRLF after each chunk's data; after the last chunk the trailer
// section ends at its first empty line.
type chunkEnds struct {
	state chunkState
	line  []byte // the size line so far, when it spans reads
	left  uint64
	tline int  // chunkTrailers: bytes of the current line
	tcr   bool // ... whose last is '\r'
	tsize int  // ... bytes of the section so far
}

// feed follows p; it returns the bytes of p used (up to the body's end when
// it ended) and what it found.
func (c *chunkEnds) feed(p []byte) (used int, st chunksStatus) {
	i := 0
	for i < len(p) {
		switch c.state {
		case chunkSize:
			j := bytes.IndexByte(p[i:], '\n')
			if j < 0 {
				c.line = append(c.line, p[i:]...)
				if len(c.line) > maxChunkLine+1 {
					return len(p), chunksBad
				}
				return len(p), chunksMore
			}
			line := p[i : i+j+1]
			if len(c.line) > 0 {
				line = append(c.line, line...)
			}
			i += j + 1
			size, ok := chunkSizeLine(line)
			c.line = c.line[:0]
			switch {
			case !ok:
				return i, chunksBad
			case size == 0:
				c.state, c.tline, c.tcr, c.tsize = chunkTrailers, 0, false, 0
			default:
				c.state, c.left = chunkData, size
			}
		case chunkData:
			k := min(c.left, uint64(len(p)-i))
			i += int(k)
			if c.left -= k; c.left == 0 {
				c.state = chunkDataCR
			}
		case chunkDataCR, chunkDataLF:
			want := byte('\r')
			if c.state == chunkDataLF {
				want = '\n'
			}
			if p[i] != want {
				return i, chunksBad
			}
			i++
			if c.state == chunkDataCR {
				c.state = chunkDataLF
			} else {
				c.state = chunkSize
			}
		case chunkTrailers:
			j := bytes.IndexByte(p[i:], '\n')
			if j < 0 {
				c.tline += len(p) - i
				c.tsize += len(p) - i
				c.tcr = p[len(p)-1] == '\r'
				if c.tsize > maxChunkLine {
					return len(p), chunksBad // net/http gives up after its buffer
				}
				return len(p), chunksMore
			}
			n := c.tline + j
			cr := j > 0 && p[i+j-1] == '\r' || j == 0 && c.tcr
			i += j + 1
			c.tsize += j + 1
			c.tline, c.tcr = 0, false
			if n == 0 || n == 1 && cr {
				return i, chunksDone
			}
		}
	}
	return i, chunksMore
}

// chunkSizeLine parses a chunk-size line (with its line end) as net/http
// does.
func chunkSizeLine(line []byte) (uint64, bool) {
	n := len(line)
	if n < 2 || line[n-2] != '\r' || bytes.IndexByte(line, '\r') != n-2 {
		return 0, false // bare LF, or a CR inside
	}
	line = line[:n-2]
	if len(line) >= maxChunkLine {
		return 0, false
	}
	line = bytes.TrimRight(line, " \t")
	if i := bytes.IndexByte(line, ';'); i >= 0 {
		line = line[:i]
	}
	if len(line) == 0 || len(line) > 16 {
		return 0, false
	}
	var size uint64
	for _, b := range line {
		switch {
		case '0' <= b && b <= '9':
			b -= '0'
		case 'a' <= b && b <= 'f':
			b = b - 'a' + 10
		case 'A' <= b && b <= 'F':
			b = b - 'A' + 10
		default:
			return 0, false
		}
		size = size<<4 | uint64(b)
	}
	return size, true
}

// reqState is where the request being written is.
type reqState uint8

const (
	reqBetween reqState = iota // no request being written: the next byte starts one
	reqHead
	reqBody
	reqChunks
	reqOff // the connection switched protocols: writes are not followed
)

// reqEnds finds where each request Picket writes ends (net/http writes
// them: CRLF lines, one Content-Length or "Transfer-Encoding: chunked").
type reqEnds struct {
	state   reqState
	hs      headEnd
	left    int64
	chunks  chunkEnds
	maxHead int
}

// start begins a request.
func (q *reqEnds) start() {
	q.state = reqHead
	q.hs.reset()
}

// feed follows request bytes written.
func (q *reqEnds) feed(p []byte) {
	i := 0
	for i < len(p) {
		switch q.state {
		case reqHead:
			head, used, st := q.hs.feed(p[i:], 1<<30)
			i += used
			if st != headDone {
				return
			}
			q.hs.reset()
			q.state, q.left = requestBody(head)
			q.chunks = chunkEnds{line: q.chunks.line[:0]}
		case reqBody:
			k := int(min(q.left, int64(len(p)-i)))
			i += k
			if q.left -= int64(k); q.left == 0 {
				q.state = reqBetween
			}
		case reqChunks:
			used, st := q.chunks.feed(p[i:])
			i += used
			if st != chunksMore {
				q.state = reqBetween
			}
		default:
			// Bytes past the end of a request in one write: net/http writes
			// one request at a time, so this does not happen; follow them as
			// the next request's.
			q.start()
		}
	}
}

// requestBody reads the body framing of a request head net/http wrote.
func requestBody(head []byte) (reqState, int64) {
	_, rest := cutHeadLine(head)
	for len(rest) > 0 {
		var line []byte
		line, rest = cutHeadLine(rest)
		name, value, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			continue
		}
		value = bytes.Trim(value, " \t")
		switch {
		case bytes.EqualFold(name, []byte("Transfer-Encoding")):
			return reqChunks, 0 // net/http's only coding
		case bytes.EqualFold(name, []byte("Content-Length")):
			var n int64
			for _, c := range value {
				n = n*10 + int64(c-'0')
			}
			if n > 0 {
				return reqBody, n
			}
		}
	}
	return reqBetween, 0
}
