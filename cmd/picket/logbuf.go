package main

import (
	"io"
	"sync"
	"sync/atomic"
	"time"
)

// logBuffer is a log destination behind a bounded buffer: writers append
// whole lines to memory and one goroutine (the flusher) writes them out, so
// that a request's access-log line costs a copy instead of a write(2)
// (under load one system call per line was a quarter of a small request's
// CPU; docs/benchmarks.md).
//
// Lines are written out when a buffer fills, at least every flushEvery, on
// reopen (log rotation) and on Close. There are two buffers of size bytes:
// writers fill one while the flusher writes the other. When both are taken
// — the destination is slower than the lines arrive — a writer waits until
// the flusher has written one out: the access log is an audit trail, so
// nothing is dropped; requests wait instead, and the time they waited is
// counted (Stats, the picket_log_wait_seconds_total metric). A failed write
// is retried (with back-off) until it succeeds, so a full disk holds
// requests rather than losing their lines; only at Close does a write that
// keeps failing give up, after closeRetry.
//
// Every Write must be whole lines (zerolog writes one event per Write, the
// squid format one line): a buffer only ever holds whole lines, each
// written out in one write(2) with the lines before and after it, so lines
// are never interleaved or torn, also when the application log shares the
// destination (openLogs gives both loggers the same logBuffer then).
type logBuffer struct {
	name string // the destination, for errors: a path, "stdout" or "stderr"
	size int

	mu      sync.Mutex
	room    sync.Cond // a buffer came back from the flusher, or Close
	fill    []byte    // lines waiting, appended to by writers
	free    []byte    // the other buffer when idle; nil while pending or being written
	pending []byte    // a full buffer handed to the flusher, not yet taken
	closed  bool

	// outMu is held while lines are written to out, so that a reopen or
	// Close writes out what is buffered before it changes out, and lines
	// leave in the order they were written.
	outMu sync.Mutex
	out   io.Writer
	// late writes a line that arrives after Close (a request finishing
	// after the shutdown grace ended): straight to the destination.
	late func(p []byte) error

	kick    chan struct{} // a buffer is pending (capacity 1)
	stop    chan struct{} // closed by Close
	done    chan struct{} // closed when the flusher returns
	closing atomic.Bool   // Close was called: failed writes give up after closeRetry

	// onError reports a failed write (at most once per errorEvery).
	onError   func(error)
	lastError atomic.Int64 // unix nanoseconds of the last report

	stats logStats
}

// logStats are a logBuffer's counters.
type logStats struct {
	waits, waitNanos    atomic.Int64
	waiting             atomic.Int64
	flushes, bytes      atomic.Int64
	errors, lostBytes   atomic.Int64
	buffered, lateLines atomic.Int64
}

// LogStats is a snapshot of a log destination's counters.
type LogStats struct {
	// Waits counts writes that waited for the destination (both buffers
	// full); WaitTime is how long they waited in all (waits that ended);
	// Waiting is how many wait now.
	Waits    int64
	WaitTime time.Duration
	Waiting  int64
	// Flushes counts writes to the destination; Bytes their size.
	Flushes, Bytes int64
	// Errors counts failed writes (each retried); Lost is what was given
	// up at Close after closeRetry of failures, in bytes.
	Errors, Lost int64
	// Buffered is what is waiting in memory now, in bytes.
	Buffered int64
}

const (
	// flushEvery bounds how long a line waits in the buffer.
	flushEvery = 100 * time.Millisecond
	// logBufferSize is the size of each of a destination's two buffers:
	// at 300 bytes a line, about 200 lines.
	logBufferSize = 64 << 10
	// closeRetry is how long Close keeps retrying a destination that fails.
	closeRetry = 5 * time.Second
	// errorEvery spaces the reports of a failing destination.
	errorEvery = 10 * time.Second
)

// newLogBuffer starts the buffer over out with buffers of size bytes,
// written out at least every flushEvery; late writes lines that arrive
// after Close.
func newLogBuffer(name string, out io.Writer, size int, late func([]byte) error) *logBuffer {
	t := time.NewTicker(flushEvery)
	b := newLogBufferTicks(name, out, size, late, t.C)
	go func() {
		<-b.done
		t.Stop()
	}()
	return b
}

// newLogBufferTicks is newLogBuffer with the flusher's clock: the filling
// buffer is written out on every tick (tests send their own).
func newLogBufferTicks(name string, out io.Writer, size int, late func([]byte) error, tick <-chan time.Time) *logBuffer {
	b := &logBuffer{
		name: name, size: size, out: out, late: late,
		fill: make([]byte, 0, size), free: make([]byte, 0, size),
		kick: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{}),
	}
	b.room.L = &b.mu
	go b.flusher(tick)
	return b
}

// Write buffers p, which must be whole lines. It waits while both buffers
// are full.
func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	var start time.Time
	for !b.closed && len(b.fill) > 0 && len(b.fill)+len(p) > b.size {
		if b.pending == nil && b.free != nil {
			// Hand the full buffer to the flusher and fill the other.
			b.pending, b.fill, b.free = b.fill, b.free, nil
			select {
			case b.kick <- struct{}{}:
			default:
			}
			break
		}
		if start.IsZero() {
			start = time.Now()
			b.stats.waits.Add(1)
			b.stats.waiting.Add(1)
		}
		b.room.Wait()
	}
	if !start.IsZero() {
		b.stats.waiting.Add(-1)
		b.stats.waitNanos.Add(int64(time.Since(start)))
	}
	if b.closed {
		b.mu.Unlock()
		// After Close's last flush (outMu orders this line after it).
		b.stats.lateLines.Add(1)
		b.outMu.Lock()
		err := b.late(p)
		b.outMu.Unlock()
		if err != nil {
			return 0, err
		}
		return len(p), nil
	}
	b.fill = append(b.fill, p...) // a line longer than a buffer goes alone
	b.stats.buffered.Add(int64(len(p)))
	b.mu.Unlock()
	return len(p), nil
}

// flusher writes out pending buffers at once and the filling one every
// flushEvery, until Close.
func (b *logBuffer) flusher(tick <-chan time.Time) {
	defer close(b.done)
	for {
		all := false
		select {
		case <-b.kick: // a full buffer
		case <-tick:
			all = true
		case <-b.stop:
			return
		}
		b.outMu.Lock()
		b.writeOut(false)
		if all {
			b.writeOut(true)
		}
		b.outMu.Unlock()
	}
}

// writeOut writes the pending buffer, or else (with filling) the one
// being filled, to out. The caller holds outMu. It reports whether it
// wrote anything.
func (b *logBuffer) writeOut(filling bool) bool {
	b.mu.Lock()
	w := b.pending
	b.pending = nil
	if w == nil && filling && len(b.fill) > 0 && b.free != nil {
		w, b.fill, b.free = b.fill, b.free, nil
	}
	b.mu.Unlock()
	if w == nil {
		return false
	}
	b.write(w)
	b.stats.buffered.Add(-int64(len(w)))
	if cap(w) > 2*b.size { // a giant line grew it: do not keep that
		w = make([]byte, 0, b.size)
	}
	b.mu.Lock()
	b.free = w[:0]
	b.room.Broadcast()
	b.mu.Unlock()
	return true
}

// write writes p to out, retrying a failed write with back-off until it
// succeeds, or, once Close was called, for at most closeRetry.
func (b *logBuffer) write(p []byte) {
	delay := 10 * time.Millisecond
	var giveUp time.Time
	for len(p) > 0 {
		n, err := b.out.Write(p)
		p = p[min(max(n, 0), len(p)):]
		if n > 0 {
			b.stats.bytes.Add(int64(n))
		}
		if err == nil {
			if len(p) > 0 {
				continue // a short write without an error: write the rest
			}
			break
		}
		b.stats.errors.Add(1)
		b.report(err)
		if b.closing.Load() {
			if giveUp.IsZero() {
				giveUp = time.Now().Add(closeRetry)
			} else if time.Now().After(giveUp) {
				b.stats.lostBytes.Add(int64(len(p)))
				return
			}
		}
		time.Sleep(delay)
		delay = min(2*delay, time.Second)
	}
	b.stats.flushes.Add(1)
}

func (b *logBuffer) report(err error) {
	if b.onError == nil {
		return
	}
	now := time.Now().UnixNano()
	last := b.lastError.Load()
	if last != 0 && now-last < int64(errorEvery) || !b.lastError.CompareAndSwap(last, now) {
		return
	}
	b.onError(err)
}

// Flush writes out everything buffered so far.
func (b *logBuffer) Flush() {
	b.outMu.Lock()
	defer b.outMu.Unlock()
	b.flushLocked()
}

// flushLocked writes out the pending buffer, then the filling one; the
// caller holds outMu.
func (b *logBuffer) flushLocked() {
	b.writeOut(false)
	b.writeOut(true)
}

// swap writes out everything buffered so far to the old destination, then
// makes out the destination, and returns the old one.
func (b *logBuffer) swap(out io.Writer) io.Writer {
	b.outMu.Lock()
	defer b.outMu.Unlock()
	b.flushLocked()
	old := b.out
	b.out = out
	return old
}

// Close writes out everything buffered and stops the flusher; writes after
// it go to late. It is idempotent.
func (b *logBuffer) Close() {
	b.closing.Store(true)
	b.outMu.Lock()
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		b.outMu.Unlock()
		return
	}
	b.mu.Unlock()
	b.flushLocked()
	b.mu.Lock()
	b.closed = true
	b.room.Broadcast()
	b.mu.Unlock()
	b.flushLocked() // lines appended between the first flush and closed
	close(b.stop)
	b.outMu.Unlock()
	<-b.done
}

// Stats returns the destination's counters.
func (b *logBuffer) Stats() LogStats {
	s := &b.stats
	return LogStats{
		Waits: s.waits.Load(), WaitTime: time.Duration(s.waitNanos.Load()), Waiting: s.waiting.Load(),
		Flushes: s.flushes.Load(), Bytes: s.bytes.Load(),
		Errors: s.errors.Load(), Lost: s.lostBytes.Load(),
		Buffered: s.buffered.Load(),
	}
}
