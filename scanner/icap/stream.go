package icap

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/picket-proxy/picket/scanner"
	"github.com/picket-proxy/picket/scanner/internal/wire"
)

// errClosed is returned by a stream used after Close.
var errClosed = errors.New("icap: stream closed")

// seed hashes the bytes sent and the bytes an ICAP server sends back, to
// tell an unmodified copy (a 200 from a server without Allow: 204) from a
// modified one.
var seed = maphash.MakeSeed()

// stream states.
const (
	stNew     = iota // nothing decided yet
	stPreview        // collecting the preview
	stBody           // the rest of the body streams as chunks
	stDone           // the server answered early (during the preview or the body)
	stSkip           // Transfer-Ignore: nothing is sent
)

// Open implements scanner.Engine: a RESPMOD of a download, or a REQMOD of
// an upload (m.Upload); without the service a body is skipped.
func (c *Client) Open(m scanner.EngineMeta) scanner.EngineStream {
	s := &stream{c: c, svc: c.respmod, meta: m}
	s.hash.SetSeed(seed)
	switch {
	case m.Upload:
		s.svc = c.reqmod
		if s.svc == nil {
			s.state, s.skipped = stSkip, "no REQMOD service for uploads"
		}
	case s.svc == nil:
		s.state, s.skipped = stSkip, "no RESPMOD service for downloads"
	}
	return s
}

// stream is one RESPMOD or REQMOD request.
type stream struct {
	c     *Client
	svc   *service
	meta  scanner.EngineMeta
	state int

	conn    *wire.Conn
	preview int    // the preview size, -1 for none
	buf     []byte // the preview being collected
	sent    int64  // body bytes taken (sent or in buf)
	hash    maphash.Hash
	early   *answer // a final answer before the body's end
	reuse   bool    // the connection may serve another request
	skipped string
	err     error
	closed  bool
	hdr     [24]byte
}

// answer is an ICAP server's final answer.
type answer struct {
	h       *head
	http    int  // the encapsulated HTTP status (0 if none)
	request bool // the encapsulated message is a request (REQMOD, modified)
	same    bool // its body is the body sent, unchanged
}

func (s *stream) deadline() time.Time { return time.Now().Add(s.c.cfg.Timeout) }

// fail makes err the stream's sticky error and drops the connection.
func (s *stream) fail(err error) error {
	s.err = err
	s.drop()
	s.c.health.Set(err)
	return err
}

func (s *stream) drop() {
	if s.conn != nil {
		s.conn.Release(false)
		s.conn = nil
	}
}

// start decides from the service's options how the body goes, and sends
// the request head unless it waits for a preview.
func (s *stream) start() error {
	ctx, cancel := context.WithTimeout(context.Background(), s.c.cfg.Timeout)
	defer cancel()
	o, err := s.svc.options(ctx)
	if err != nil {
		return err
	}
	s.preview = -1
	switch o.transferFor(s.meta.Name) {
	case transferIgnore:
		s.state, s.skipped = stSkip, "not sent (the server's Transfer-Ignore)"
		return nil
	case transferPreview:
		s.preview = o.Preview
	}
	if s.conn, err = s.svc.pool.Get(ctx); err != nil {
		return err
	}
	if s.preview >= 0 {
		s.state = stPreview
		s.buf = make([]byte, 0, s.preview)
		return nil
	}
	s.state = stBody
	return s.writeHead(o, false)
}

// writeHead sends the request line, the headers and the encapsulated HTTP
// headers (with the preview when there is one).
func (s *stream) writeHead(o *Options, ieof bool) error {
	upload := s.svc.method == "REQMOD"
	reqHdr, resHdr := encapsulated(s.meta, upload)
	var b bytes.Buffer
	fmt.Fprintf(&b, "%s %s ICAP/1.0\r\nHost: %s\r\nUser-Agent: Picket\r\n", s.svc.method, s.svc.url, s.svc.host)
	if o.Allow204 || s.preview >= 0 {
		b.WriteString("Allow: 204\r\n")
	}
	if s.preview >= 0 {
		fmt.Fprintf(&b, "Preview: %d\r\n", len(s.buf))
	}
	if upload {
		fmt.Fprintf(&b, "Encapsulated: req-hdr=0, req-body=%d\r\n\r\n", len(reqHdr))
	} else {
		fmt.Fprintf(&b, "Encapsulated: req-hdr=0, res-hdr=%d, res-body=%d\r\n\r\n", len(reqHdr), len(reqHdr)+len(resHdr))
	}
	b.Write(reqHdr)
	b.Write(resHdr)
	if s.preview >= 0 {
		if len(s.buf) > 0 {
			fmt.Fprintf(&b, "%x\r\n", len(s.buf))
			b.Write(s.buf)
			b.WriteString("\r\n")
		}
		if ieof {
			b.WriteString("0; ieof\r\n\r\n")
		} else {
			b.WriteString("0\r\n\r\n")
		}
	}
	_ = s.conn.SetWriteDeadline(s.deadline())
	if _, err := s.conn.Write(b.Bytes()); err != nil {
		return fmt.Errorf("icap: sending %s: %w", s.svc.method, err)
	}
	return nil
}

// chunk sends p as one chunk.
func (s *stream) chunk(p []byte) error {
	h := strconv.AppendInt(s.hdr[:0], int64(len(p)), 16)
	h = append(h, '\r', '\n')
	_ = s.conn.SetWriteDeadline(s.deadline())
	bufs := net.Buffers{h, p, []byte("\r\n")}
	if _, err := bufs.WriteTo(s.conn.Conn); err != nil {
		return fmt.Errorf("icap: sending the body (%d bytes sent): %w", s.sent, err)
	}
	return nil
}

// Write takes the next bytes of the body: into the preview until it is
// full, then as chunks. An empty p sends nothing: a zero-length chunk
// would end the body.
func (s *stream) Write(p []byte) (int, error) {
	switch {
	case s.err != nil:
		return 0, s.err
	case s.closed:
		return 0, errClosed
	case len(p) == 0:
		return 0, nil
	}
	if s.state == stNew {
		if err := s.start(); err != nil {
			return 0, s.fail(err)
		}
	}
	n := len(p)
	switch s.state {
	case stDone, stSkip:
		return n, nil
	case stPreview:
		s.hash.Write(p)
		s.sent += int64(len(p))
		need := s.preview - len(s.buf)
		if len(p) <= need {
			s.buf = append(s.buf, p...)
			return n, nil
		}
		s.buf = append(s.buf, p[:need]...)
		p = p[need:]
		if err := s.sendPreview(); err != nil {
			return 0, s.fail(err)
		}
		if s.state == stDone {
			return n, nil
		}
		if err := s.chunk(p); err != nil {
			return 0, s.fail(err)
		}
		return n, nil
	}
	// stBody: a server may answer before the end (it then reads no more).
	if wire.Pending(s.conn.Conn) {
		if err := s.readEarly(); err != nil {
			return 0, s.fail(err)
		}
		return n, nil
	}
	s.hash.Write(p)
	s.sent += int64(len(p))
	if err := s.chunk(p); err != nil {
		return 0, s.fail(err)
	}
	return n, nil
}

// sendPreview sends the head and a full preview (more follows) and reads
// the answer: 100 Continue goes on with the body, anything else is final.
func (s *stream) sendPreview() error {
	o, err := s.svc.options(context.Background())
	if err != nil {
		return err
	}
	if err := s.writeHead(o, false); err != nil {
		return err
	}
	_ = s.conn.SetReadDeadline(s.deadline())
	h, err := readHead(s.conn.R)
	if err != nil {
		return fmt.Errorf("icap: waiting for the answer to the preview: %w", err)
	}
	if h.status == 100 {
		s.state = stBody
		return nil
	}
	a, err := s.readAnswer(h, false)
	if err != nil {
		return err
	}
	s.early, s.state = a, stDone
	return nil
}

// readEarly reads a final answer that came before the body's end; the
// connection is not reused (the server may have left bytes of ours unread).
func (s *stream) readEarly() error {
	_ = s.conn.SetReadDeadline(s.deadline())
	h, err := readHead(s.conn.R)
	if err != nil {
		return fmt.Errorf("icap: reading an early answer: %w", err)
	}
	if h.status == 100 {
		return errors.New("icap: unexpected 100 Continue without a preview")
	}
	a, err := s.readAnswer(h, false)
	if err != nil {
		return err
	}
	s.early, s.state, s.reuse = a, stDone, false
	s.drop()
	return nil
}

// Finish ends the body and reads the verdict.
func (s *stream) Finish(ctx context.Context) (scanner.EngineResult, error) {
	switch {
	case s.err != nil:
		return scanner.EngineResult{}, s.err
	case s.closed:
		return scanner.EngineResult{}, errClosed
	}
	if s.state == stNew {
		if err := s.start(); err != nil {
			return scanner.EngineResult{}, s.fail(err)
		}
	}
	res := scanner.EngineResult{Scanned: s.sent}
	if s.state == stSkip {
		res.Skipped = s.skipped
		return res, nil
	}
	a := s.early
	if a == nil {
		var err error
		if a, err = s.finalAnswer(ctx); err != nil {
			if ctx.Err() != nil { // the client went away: says nothing of the server
				s.err = fmt.Errorf("%w (%w)", err, context.Cause(ctx))
				s.drop()
				return scanner.EngineResult{}, s.err
			}
			return scanner.EngineResult{}, s.fail(err)
		}
	}
	if s.conn != nil {
		s.conn.Release(s.reuse)
		s.conn = nil
	}
	s.svc.noteISTag(a.h.header.Get("Istag"))
	threat, err := s.verdict(a)
	if err != nil {
		return scanner.EngineResult{}, s.fail(err)
	}
	s.c.health.Set(nil)
	res.Threat = threat
	return res, nil
}

// finalAnswer ends the body (or sends the whole body as a preview with
// ieof) and reads the final answer.
func (s *stream) finalAnswer(ctx context.Context) (*answer, error) {
	dl := s.deadline()
	if d, ok := ctx.Deadline(); ok && d.Before(dl) {
		dl = d
	}
	_ = s.conn.SetDeadline(dl)
	conn := s.conn
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Now()) })
	defer stop()
	switch s.state {
	case stPreview:
		o, err := s.svc.options(ctx)
		if err != nil {
			return nil, err
		}
		if err := s.writeHead(o, true); err != nil {
			return nil, err
		}
		_ = s.conn.SetDeadline(dl)
	case stBody:
		if _, err := s.conn.Write([]byte("0\r\n\r\n")); err != nil {
			return nil, fmt.Errorf("icap: ending the body: %w", err)
		}
	}
	h, err := readHead(s.conn.R)
	if err != nil {
		return nil, fmt.Errorf("icap: waiting for the verdict: %w", err)
	}
	if h.status == 100 {
		return nil, protoErr("100 Continue after the whole body was sent")
	}
	return s.readAnswer(h, true)
}

// readAnswer reads the encapsulated message of a final answer (whole is
// true when the server had the whole body). It decides whether the
// connection can be reused.
func (s *stream) readAnswer(h *head, whole bool) (*answer, error) {
	a := &answer{h: h}
	s.reuse = !strings.EqualFold(h.header.Get("Connection"), "close")
	if h.status != 200 {
		if h.status != 204 {
			s.reuse = false // an error answer: do not trust the connection's state
		}
		if enc := h.header.Get("Encapsulated"); h.status == 204 && enc != "" {
			secs, err := parseEncapsulated(enc)
			if err != nil {
				return nil, err
			}
			if len(secs) > 1 || secs[0].name != "null-body" {
				return nil, protoErr("204 with an encapsulated message %q", enc)
			}
		}
		return a, nil
	}
	secs, err := parseEncapsulated(h.header.Get("Encapsulated"))
	if err != nil {
		return nil, err
	}
	if len(secs) == 0 {
		return nil, protoErr("200 without an Encapsulated header")
	}
	for i := 0; i < len(secs)-1; i++ {
		size := secs[i+1].off - secs[i].off
		if size > maxSection {
			return nil, protoErr("encapsulated %s over %d bytes", secs[i].name, maxSection)
		}
		raw := make([]byte, size)
		if _, err := io.ReadFull(s.conn.R, raw); err != nil {
			return nil, fmt.Errorf("icap: reading the encapsulated %s: %w", secs[i].name, err)
		}
		br := bufio.NewReader(bytes.NewReader(raw))
		switch secs[i].name {
		case "res-hdr":
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				return nil, protoErr("encapsulated response head: %v", err)
			}
			a.http = resp.StatusCode
		case "req-hdr":
			if _, err := http.ReadRequest(br); err != nil {
				return nil, protoErr("encapsulated request head: %v", err)
			}
			a.request = true
		}
	}
	if a.http != 0 {
		a.request = false // a response to the request wins over the request
	}
	last := secs[len(secs)-1]
	if last.name == "null-body" {
		a.same = whole && s.sent == 0
		return a, nil
	}
	// Read the body back, hashing it, to know whether it is ours
	// unchanged; a body longer than ours is modified, and not read on.
	var back maphash.Hash
	back.SetSeed(seed)
	n, _, err := readChunked(s.conn.R, &back, max(s.sent, 1<<20))
	switch {
	case errors.Is(err, errTooLong):
		s.reuse = false // longer than ours, so modified; the rest is not read
		return a, nil
	case err != nil:
		return nil, err
	}
	a.same = whole && n == s.sent && back.Sum64() == s.hash.Sum64()
	return a, nil
}

// verdict turns a final answer into a threat name ("" for clean).
func (s *stream) verdict(a *answer) (string, error) {
	switch a.h.status {
	case 204:
		return "", nil
	case 200:
	default:
		return "", fmt.Errorf("icap: %s %s: the server answered %d %s", s.svc.method, s.svc.url, a.h.status, clean(a.h.reason))
	}
	if t := threatOf(a.h.header); t != "" {
		return t, nil
	}
	switch {
	case a.http != 0 && (a.http < 200 || a.http > 299):
		return fmt.Sprintf("blocked by the ICAP service (HTTP %d)", a.http), nil
	case a.same:
		return "", nil // an unmodified copy: the server could not answer 204
	}
	return "modified by the ICAP service", nil
}

// Close abandons the stream; a connection in the middle of a request is
// closed.
func (s *stream) Close() error {
	s.closed = true
	s.drop()
	return nil
}
