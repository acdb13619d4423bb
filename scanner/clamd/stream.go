package clamd

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/picket-proxy/picket/scanner"
	"github.com/picket-proxy/picket/scanner/internal/wire"
)

// errClosed is returned by a stream used after Close.
var errClosed = errors.New("clamd: stream closed")

// ErrStreamRefused is wrapped in the error of a body clamd stopped taking
// because it is longer than clamd's own StreamMaxLength.
var ErrStreamRefused = errors.New("clamd refused the stream: INSTREAM size limit exceeded")

// Open implements scanner.Engine: an INSTREAM of one body. The connection
// is taken from the pool at the first Write (or at Finish for an empty
// body).
func (c *Client) Open(scanner.EngineMeta) scanner.EngineStream { return &stream{c: c} }

// stream is one INSTREAM.
type stream struct {
	c       *Client
	conn    *wire.Conn
	opened  bool
	sent    int64
	partial bool
	err     error
	closed  bool
	hdr     [4]byte
}

func (s *stream) deadline() time.Time { return time.Now().Add(s.c.cfg.Timeout) }

func (s *stream) open() error {
	ctx, cancel := context.WithTimeout(context.Background(), s.c.cfg.Timeout)
	defer cancel()
	conn, err := s.c.pool.Get(ctx)
	if err != nil {
		return err
	}
	s.conn, s.opened = conn, true
	conn.Seq++
	_ = conn.SetWriteDeadline(s.deadline())
	if _, err := conn.Write([]byte("zINSTREAM\x00")); err != nil {
		return fmt.Errorf("clamd: INSTREAM: %w", err)
	}
	return nil
}

// fail makes err the stream's sticky error and drops the connection.
func (s *stream) fail(err error) error {
	s.err = err
	if s.conn != nil {
		s.conn.Release(false)
		s.conn = nil
	}
	s.c.health.Set(err)
	return err
}

// Write sends p as INSTREAM chunks, up to StreamMaxLength in all; bytes
// past it are dropped and the verdict is marked partial.
func (s *stream) Write(p []byte) (int, error) {
	switch {
	case s.err != nil:
		return 0, s.err
	case s.closed:
		return 0, errClosed
	}
	if !s.opened {
		if err := s.open(); err != nil {
			return 0, s.fail(err)
		}
	}
	n := len(p)
	if room := s.c.cfg.StreamMaxLength - s.sent; int64(len(p)) > room {
		p, s.partial = p[:room], true
	}
	for len(p) > 0 {
		k := min(len(p), maxChunk)
		binary.BigEndian.PutUint32(s.hdr[:], uint32(k))
		_ = s.conn.SetWriteDeadline(s.deadline())
		bufs := net.Buffers{s.hdr[:], p[:k]}
		if _, err := bufs.WriteTo(s.conn.Conn); err != nil {
			return 0, s.fail(s.writeError(err))
		}
		p = p[k:]
		s.sent += int64(k)
	}
	return n, nil
}

// writeError explains a failed write: clamd may have closed the stream with
// an answer saying why.
func (s *stream) writeError(err error) error {
	_ = s.conn.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	if reply, rerr := readReply(s.conn.R, s.conn.Seq); rerr == nil {
		if strings.Contains(reply, "size limit exceeded") {
			return fmt.Errorf("%w after %d bytes: clamd's StreamMaxLength is lower than stream_max_length (%d bytes)",
				ErrStreamRefused, s.sent, s.c.cfg.StreamMaxLength)
		}
		return fmt.Errorf("clamd: stream cut after %d bytes: %s", s.sent, reply)
	}
	return fmt.Errorf("clamd: sending the body (%d bytes sent): %w", s.sent, err)
}

// Finish ends the stream and reads the verdict.
func (s *stream) Finish(ctx context.Context) (scanner.EngineResult, error) {
	switch {
	case s.err != nil:
		return scanner.EngineResult{}, s.err
	case s.closed:
		return scanner.EngineResult{}, errClosed
	}
	if !s.opened {
		if err := s.open(); err != nil {
			return scanner.EngineResult{}, s.fail(err)
		}
	}
	conn := s.conn
	dl := s.deadline()
	if d, ok := ctx.Deadline(); ok && d.Before(dl) {
		dl = d
	}
	_ = conn.SetDeadline(dl)
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Now()) })
	defer stop()
	if _, err := conn.Write([]byte{0, 0, 0, 0}); err != nil {
		return scanner.EngineResult{}, s.failCtx(ctx, s.writeError(err))
	}
	reply, err := readReply(conn.R, conn.Seq)
	if err != nil {
		return scanner.EngineResult{}, s.failCtx(ctx, fmt.Errorf("clamd: waiting for the verdict: %w", err))
	}
	res := scanner.EngineResult{Partial: s.partial, Scanned: s.sent}
	switch {
	case reply == "stream: OK":
	case strings.HasPrefix(reply, "stream: ") && strings.HasSuffix(reply, " FOUND"):
		res.Threat = strings.TrimSpace(strings.TrimSuffix(strings.TrimPrefix(reply, "stream: "), " FOUND"))
	case strings.Contains(reply, "size limit exceeded"):
		return scanner.EngineResult{}, s.failCtx(ctx, fmt.Errorf("%w after %d bytes: clamd's StreamMaxLength is lower than stream_max_length (%d bytes)",
			ErrStreamRefused, s.sent, s.c.cfg.StreamMaxLength))
	case strings.HasSuffix(reply, " ERROR"):
		return scanner.EngineResult{}, s.failCtx(ctx, fmt.Errorf("clamd: %s", reply))
	default:
		return scanner.EngineResult{}, s.failCtx(ctx, fmt.Errorf("clamd: unexpected answer %s", wire.Quote([]byte(reply))))
	}
	s.conn = nil
	conn.Release(true)
	s.c.health.Set(nil)
	return res, nil
}

// failCtx is fail, except that a verdict abandoned because ctx ended (the
// client went away) says nothing of clamd's health.
func (s *stream) failCtx(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		err = fmt.Errorf("%w (%w)", err, context.Cause(ctx))
		s.err = err
		if s.conn != nil {
			s.conn.Release(false)
			s.conn = nil
		}
		return err
	}
	return s.fail(err)
}

// Close abandons the stream: a connection in the middle of an INSTREAM
// cannot be reused, so it is closed.
func (s *stream) Close() error {
	s.closed = true
	if s.conn != nil {
		s.conn.Release(false)
		s.conn = nil
	}
	return nil
}

// newReader is a small buffered reader for a one-command connection.
func newReader(c *wire.Conn) *bufio.Reader { return bufio.NewReaderSize(c.Conn, 1024) }

// readReply reads one NUL-terminated answer; inside a session (seq > 0) it
// checks and strips the "seq: " prefix.
func readReply(r *bufio.Reader, seq int) (string, error) {
	b, err := wire.ReadLine(r, 0, maxReply)
	if err != nil {
		return "", err
	}
	line := strings.TrimRight(string(b), "\n")
	if seq > 0 {
		num, rest, ok := strings.Cut(line, ": ")
		if n, err := strconv.Atoi(num); !ok || err != nil || n != seq {
			return "", fmt.Errorf("clamd: answer %s is not the answer to command %d of the session", wire.Quote(b), seq)
		}
		line = rest
	}
	return line, nil
}
