package wire

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"
)

// ErrClosed is returned by Get once the pool is closed.
var ErrClosed = errors.New("wire: pool closed")

// Conn is a pooled connection with its buffered reader (kept with it, since
// it may hold bytes already read). Seq is free for the protocol's use
// (clamd numbers the commands of a session).
type Conn struct {
	net.Conn
	R    *bufio.Reader
	Seq  int
	idle time.Time // when it was put back
	pool *Pool
	done bool
}

// Release gives the connection back: reusable ones are kept for the next
// Get, others are closed. It is idempotent; only the first call counts.
func (c *Conn) Release(reusable bool) {
	if c == nil || c.done {
		return
	}
	c.done = true
	c.pool.put(c, reusable)
}

// Pool bounds the open connections to one server and keeps a few idle ones.
type Pool struct {
	// Dial opens a new connection; it must honour ctx.
	Dial func(ctx context.Context) (net.Conn, error)
	// Ready, if not nil, runs on every new connection before it is used
	// (clamd's IDSESSION); an error closes it.
	Ready func(c *Conn) error

	mu          sync.Mutex
	max         int // open connections at most, in use or idle
	maxIdle     int
	idleTimeout time.Duration
	open        int
	idle        []*Conn // most recently used last
	changed     chan struct{}
	closed      bool
	now         func() time.Time
}

// NewPool returns a pool of at most maxOpen open connections (at least 1), of
// which at most maxIdle are kept idle, each for at most idleTimeout.
func NewPool(dial func(ctx context.Context) (net.Conn, error), maxOpen, maxIdle int, idleTimeout time.Duration) *Pool {
	return &Pool{Dial: dial, max: max(maxOpen, 1), maxIdle: maxIdle, idleTimeout: idleTimeout,
		changed: make(chan struct{}), now: time.Now}
}

// SetMax changes the bound on open connections (an ICAP server's
// Max-Connections); n < 1 is taken as 1.
func (p *Pool) SetMax(n int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.max = max(n, 1)
	p.signal()
}

// Max returns the bound on open connections.
func (p *Pool) Max() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.max
}

// Open returns the number of open connections, in use or idle.
func (p *Pool) Open() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.open
}

// signal wakes the waiters of Get; p.mu is held.
func (p *Pool) signal() {
	close(p.changed)
	p.changed = make(chan struct{})
}

// Get returns an idle connection that is still open, or a new one when
// fewer than max are open, or waits for one until ctx ends.
func (p *Pool) Get(ctx context.Context) (*Conn, error) {
	for {
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			return nil, ErrClosed
		}
		for len(p.idle) > 0 {
			c := p.idle[len(p.idle)-1]
			p.idle = p.idle[:len(p.idle)-1]
			if p.now().Sub(c.idle) < p.idleTimeout && c.R.Buffered() == 0 && Alive(c.Conn) {
				p.mu.Unlock()
				c.done = false
				return c, nil
			}
			c.Conn.Close()
			p.open--
		}
		if p.open < p.max {
			p.open++
			p.mu.Unlock()
			return p.dial(ctx)
		}
		ch := p.changed
		p.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, fmt.Errorf("waiting for a free connection (%d open): %w", p.Max(), context.Cause(ctx))
		}
	}
}

func (p *Pool) dial(ctx context.Context) (*Conn, error) {
	nc, err := p.Dial(ctx)
	if err != nil {
		p.forget()
		return nil, err
	}
	c := &Conn{Conn: nc, R: bufio.NewReaderSize(nc, 16<<10), pool: p}
	if p.Ready != nil {
		if err := p.Ready(c); err != nil {
			nc.Close()
			p.forget()
			return nil, err
		}
	}
	return c, nil
}

// forget counts a connection as closed.
func (p *Pool) forget() {
	p.mu.Lock()
	p.open--
	p.signal()
	p.mu.Unlock()
}

func (p *Pool) put(c *Conn, reusable bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !reusable || p.closed || len(p.idle) >= p.maxIdle || p.open > p.max {
		c.Conn.Close()
		p.open--
		p.signal()
		return
	}
	_ = c.Conn.SetDeadline(time.Time{})
	c.idle = p.now()
	p.idle = append(p.idle, c)
	p.signal()
}

// Close closes the idle connections and makes Get fail; connections in use
// are closed when they are released. It is idempotent.
func (p *Pool) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil
	}
	p.closed = true
	for _, c := range p.idle {
		c.Conn.Close()
		p.open--
	}
	p.idle = nil
	p.signal()
	return nil
}
