package proxy

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// The fast path's response writing (fastpath.go).

var fastWriters = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 4<<10) }}

// fastWriter is the response writer a fast-path CONNECT is decided on:
// serve either hijacks the connection (a tunnel) or writes an answer
// (403, 407, 502, ...), sent when it returns, after which the connection
// closes.
type fastWriter struct {
	c        net.Conn
	br       *bufio.Reader
	h        http.Header
	status   int
	body     []byte
	hijacked bool
}

func (w *fastWriter) Header() http.Header { return w.h }

func (w *fastWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
}

func (w *fastWriter) Write(p []byte) (int, error) {
	w.WriteHeader(http.StatusOK)
	w.body = append(w.body, p...)
	return len(p), nil
}

// Hijack hands the connection over with the bytes already buffered.
func (w *fastWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	w.hijacked = true
	return w.c, bufio.NewReadWriter(w.br, bufio.NewWriterSize(w.c, 64)), nil
}

// finish sends the answer written as the response to req; keepOpen is
// whether the connection stays open after it. It reports whether the connection can
// carry another request.
func (w *fastWriter) finish(req *http.Request, keepOpen bool) bool {
	w.WriteHeader(http.StatusOK)
	_ = w.c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	defer w.c.SetWriteDeadline(time.Time{})
	resp := &http.Response{StatusCode: w.status, Header: w.h, ContentLength: int64(len(w.body)),
		Body: io.NopCloser(bytes.NewReader(w.body))}
	w.h["Content-Length"] = []string{strconv.Itoa(len(w.body))}
	return writeResponse(w.c, req, resp, keepOpen)
}

// writeFast writes resp to the client and closes its body. It reports
// whether the connection can carry another request.
func (s *Server) writeFast(c net.Conn, req *http.Request, resp *http.Response) bool {
	return writeResponse(c, req, resp, !req.Close && !resp.Close && s.keepAlive())
}

// writeResponse writes resp as the answer to req and closes its body;
// keepOpen is whether the connection stays open after it. It reports whether the
// connection can carry another request.
func writeResponse(c net.Conn, req *http.Request, resp *http.Response, keepOpen bool) bool {
	bw := fastWriters.Get().(*bufio.Writer)
	bw.Reset(c)
	defer func() {
		bw.Reset(nil)
		fastWriters.Put(bw)
	}()
	if resp.Body == nil {
		resp.Body = http.NoBody
	}
	code := resp.StatusCode
	noBody := req.Method == http.MethodHead || code == http.StatusNoContent || code == http.StatusNotModified || code < 200
	chunked := !noBody && resp.ContentLength < 0

	// Head.
	bw.WriteString("HTTP/1.1 ")
	bw.WriteString(strconv.Itoa(code))
	bw.WriteByte(' ')
	if text := http.StatusText(code); text != "" {
		bw.WriteString(text)
	} else {
		bw.WriteString("status code " + strconv.Itoa(code))
	}
	bw.WriteString("\r\n")
	h := resp.Header
	if _, ok := h["Date"]; !ok {
		bw.WriteString("Date: ")
		var b [32]byte
		bw.Write(time.Now().UTC().AppendFormat(b[:0], http.TimeFormat))
		bw.WriteString("\r\n")
	}
	switch {
	case chunked:
		h.Del("Content-Length")
		h["Transfer-Encoding"] = []string{"chunked"}
	case !noBody:
		h.Del("Transfer-Encoding")
		if _, ok := h["Content-Length"]; !ok {
			h["Content-Length"] = []string{strconv.FormatInt(resp.ContentLength, 10)}
		}
	}
	if !keepOpen {
		h["Connection"] = []string{"close"}
	}
	if err := h.Write(bw); err != nil {
		resp.Body.Close()
		return false
	}
	bw.WriteString("\r\n")

	// Body.
	var err error
	switch {
	case noBody:
	case chunked:
		err = copyChunked(bw, resp)
	default:
		// Every proxied body is a logBody, which copies itself through
		// pooled buffers of 32 KiB, then 256 KiB once a read fills one
		// (WriteTo); answers of Picket's own are in memory (bytes.Reader).
		var n int64
		n, err = io.Copy(bw, resp.Body)
		if err == nil && n != resp.ContentLength {
			err = io.ErrUnexpectedEOF
		}
	}
	if err == nil {
		err = bw.Flush()
	}
	resp.Body.Close()
	return keepOpen && err == nil
}

// A chunk is framed in place: its size line (up to 16 hex digits and CRLF)
// goes into the chunkRoom bytes before the data read, its closing CRLF into
// the 2 bytes after. The reads are sized so that a whole chunk is 32 KiB,
// or 256 KiB once a read fills the small buffer (as logBody.WriteTo does):
// whole TLS records when intercepted, never a last record of a few bytes.
const (
	chunkRoom  = 18
	smallChunk = 32<<10 - 8  // 4 hex digits
	largeChunk = 256<<10 - 9 // 5 hex digits
)

var chunkBufs = [2]sync.Pool{
	{New: func() any { b := make([]byte, chunkRoom+smallChunk+2); return &b }},
	{New: func() any { b := make([]byte, chunkRoom+largeChunk+2); return &b }},
}

// copyChunked writes resp's body in chunked encoding, then its trailers.
// Each piece read from the body is framed in place and flushed in one
// write, so that streams (server-sent events, long polls) are not held
// back and a large body costs one write per read, not three.
func copyChunked(bw *bufio.Writer, resp *http.Response) error {
	large := 0 // index into chunkBufs
	bp := chunkBufs[large].Get().(*[]byte)
	defer func() { chunkBufs[large].Put(bp) }()
	for {
		buf := *bp
		size := len(buf) - chunkRoom - 2
		n, rerr := resp.Body.Read(buf[chunkRoom : chunkRoom+size])
		if n > 0 {
			if _, err := bw.Write(frameChunk(buf, n)); err != nil {
				return err
			}
			if err := bw.Flush(); err != nil {
				return err
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			return rerr
		}
		if n == size && large == 0 { // the body runs fast: larger reads
			chunkBufs[0].Put(bp)
			large = 1
			bp = chunkBufs[1].Get().(*[]byte)
		}
	}
	bw.WriteString("0\r\n")
	if len(resp.Trailer) > 0 { // complete once the body reached EOF
		if err := resp.Trailer.Write(bw); err != nil {
			return err
		}
	}
	_, err := bw.WriteString("\r\n")
	return err
}

// frameChunk returns the chunk of the n bytes at buf[chunkRoom:]: its size
// line written just before them, the closing CRLF just after.
func frameChunk(buf []byte, n int) []byte {
	var size [16]byte
	line := append(strconv.AppendInt(size[:0], int64(n), 16), '\r', '\n')
	start := chunkRoom - len(line)
	copy(buf[start:], line)
	end := chunkRoom + n
	buf[end], buf[end+1] = '\r', '\n'
	return buf[start : end+2]
}
