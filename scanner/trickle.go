package scanner

import (
	"errors"
	"io"
)

// Trickle is trickle mode's body: reading it reads the source, writes every
// byte into the Scan, and returns all but the last hold bytes, which it
// keeps until Release. The proxy copies a Trickle to the client, calls
// Scan.Finish, and then either Releases the tail (the body passes) or
// aborts the transfer, so the client never holds the complete file:
//
//	tr := scanner.NewTrickle(resp.Body, scan, s.TrickleHold(resp.ContentLength))
//	if _, err := io.Copy(client, tr); err != nil { abort }
//	res, err := scan.Finish(ctx)
//	if err != nil || res.Blocked { abort (log it) } else { tr.Release(client) }
//
// A body over MaxSize keeps streaming (the Scan stops taking bytes) and is
// reported as VerdictOversize by Finish.
type Trickle struct {
	src  io.Reader
	scan *Scan
	hold int

	buf  []byte // buf[r:] is read from src and not yet returned
	r    int
	eof  bool
	err  error
	done bool
}

// trickleChunk is how much a Trickle reads from its source at once.
const trickleChunk = 32 << 10

// NewTrickle returns a Trickle over src that feeds scan and holds back hold
// bytes (at least 1).
func NewTrickle(src io.Reader, scan *Scan, hold int64) *Trickle {
	h := int(max(hold, 1))
	return &Trickle{src: src, scan: scan, hold: h, buf: make([]byte, 0, h+trickleChunk)}
}

// Read returns the bytes of the source that are not in the held-back tail.
// It returns io.EOF when only the tail is left.
func (t *Trickle) Read(p []byte) (int, error) {
	for len(t.buf)-t.r <= t.hold && !t.eof {
		if t.err != nil {
			return 0, t.err
		}
		if t.r > 0 { // compact
			t.buf = t.buf[:copy(t.buf, t.buf[t.r:])]
			t.r = 0
		}
		free := t.buf[len(t.buf):cap(t.buf)]
		n, err := t.src.Read(free)
		if n > 0 {
			if _, werr := t.scan.Write(free[:n]); werr != nil && !errors.Is(werr, ErrTooLarge) {
				t.err = werr
			}
			t.buf = t.buf[:len(t.buf)+n]
		}
		if err == io.EOF {
			t.eof = true
		} else if err != nil {
			t.err = err
		}
	}
	avail := len(t.buf) - t.r - t.hold
	if avail <= 0 {
		return 0, io.EOF
	}
	n := copy(p, t.buf[t.r:t.r+min(avail, len(p))])
	t.r += n
	return n, nil
}

// Held returns the number of bytes held back.
func (t *Trickle) Held() int { return len(t.buf) - t.r }

// Release writes the held-back tail to w; call it only after Read returned
// io.EOF and Finish said the body passes.
func (t *Trickle) Release(w io.Writer) (int64, error) {
	if !t.eof || t.done {
		return 0, errors.New("scanner: trickle: release before the end of the body, or twice")
	}
	t.done = true
	n, err := w.Write(t.buf[t.r:])
	t.r += n
	return int64(n), err
}
