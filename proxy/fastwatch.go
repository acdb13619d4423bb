package proxy

import (
	"bufio"
	"context"
	"errors"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// The fast path's watch over clients that leave while their request is
// upstream (fastpath.go).

// watchClient makes the client watch of fc, whose requests cancel is
// cancelled when the client leaves, and has the sweep look at it.
func (s *Server) watchClient(fc *fastConn, br *bufio.Reader, cancel context.CancelFunc) *clientWatch {
	w := newClientWatch(fc.rw, br, cancel)
	if fc.c != nil {
		fc.c.watch.Store(w)
		s.sweepOnce.Do(func() { go s.watchSweep() })
	}
	return w
}

// clientWatchTick is the period of the sweep that starts watching the
// clients of slow requests: a request is watched once it has been upstream
// for between one and two ticks.
const clientWatchTick = 250 * time.Millisecond

// clientWatch notices a client that leaves while its request is upstream
// (a browser that navigated away, a script that timed out) and cancels the
// request, as net/http's background read does — but only for requests that
// take a while: a sweep over the connections (watchSweep) starts the watch,
// so that a quick request costs two atomic operations instead of a read or
// a timer. The watch peeks at the connection's reader: a byte (the next
// pipelined request) stays buffered for the loop; EOF or an error means the
// client is gone. One per connection, reused.
type clientWatch struct {
	c      net.Conn
	br     *bufio.Reader
	cancel context.CancelFunc
	done   chan bool // the peek's result: whether the client is gone

	state atomic.Int32  // watchOff, watchArmed or watchReading
	seq   atomic.Uint64 // requests armed so far
	seen  uint64        // seq at the previous sweep (the sweep's own)
	mu    sync.Mutex    // orders the peek's deadline change and stop's abort
}

const (
	watchOff int32 = iota
	watchArmed
	watchReading
)

func newClientWatch(c net.Conn, br *bufio.Reader, cancel context.CancelFunc) *clientWatch {
	return &clientWatch{c: c, br: br, cancel: cancel, done: make(chan bool, 1)}
}

// arm marks a request upstream; the loop does not read until stop.
func (w *clientWatch) arm() {
	w.seq.Add(1)
	w.state.Store(watchArmed)
}

// sweep runs on the sweeping goroutine: a request armed at the previous
// sweep and still upstream starts the watch.
func (w *clientWatch) sweep() {
	seq := w.seq.Load()
	if seq == w.seen && w.state.CompareAndSwap(watchArmed, watchReading) {
		go w.peek()
	}
	w.seen = seq
}

// peek reads until a byte, an error or stop's abort.
func (w *clientWatch) peek() {
	w.mu.Lock()
	if w.state.Load() != watchReading { // stopped already
		w.mu.Unlock()
		w.done <- false
		return
	}
	_ = w.c.SetReadDeadline(time.Time{}) // the header timeout no longer applies
	w.mu.Unlock()
	_, err := w.br.Peek(1)
	gone := err != nil && !errors.Is(err, os.ErrDeadlineExceeded)
	if gone {
		w.cancel()
	}
	w.done <- gone
}

// stop ends the watch before the loop reads again. fired reports whether
// the watch started (and so may have moved the read deadline); gone whether
// it found the client gone.
func (w *clientWatch) stop() (fired, gone bool) {
	if w.state.CompareAndSwap(watchArmed, watchOff) {
		return false, false
	}
	w.mu.Lock()
	w.state.Store(watchOff)
	_ = w.c.SetReadDeadline(aLongTimeAgo) // abort the peek
	w.mu.Unlock()
	return true, <-w.done
}

// aLongTimeAgo is a read deadline that has passed: it aborts a pending read.
var aLongTimeAgo = time.Unix(1, 0)

// watchSweep starts the watches of slow requests, every clientWatchTick,
// until the server has shut down and every connection is gone.
func (s *Server) watchSweep() {
	t := time.NewTicker(clientWatchTick)
	defer t.Stop()
	for range t.C {
		if s.draining.Load() && s.conns.count() == 0 {
			return
		}
		s.conns.each(func(c *clientConn) {
			if w := c.watch.Load(); w != nil {
				w.sweep()
			}
		})
	}
}
