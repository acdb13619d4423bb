package wire

import (
	"context"
	"errors"
	"net"
	"sync/atomic"
	"testing"
	"time"
)

// TestPool: idle connections are reused while open, a connection the server
// closed is noticed before reuse, and the bound on open connections holds
// (and can be raised while a Get waits).
func TestPool(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var accepted atomic.Int32
	conns := make(chan net.Conn, 16)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			conns <- c
		}
	}()
	dial := func(ctx context.Context) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "tcp", ln.Addr().String())
	}
	p := NewPool(dial, 1, 1, time.Minute)
	defer p.Close()
	ctx := context.Background()

	c1, err := p.Get(ctx)
	if err != nil {
		t.Fatal(err)
	}
	server := <-conns
	c1.Release(true)
	c2, err := p.Get(ctx)
	if err != nil || c2 != c1 || accepted.Load() != 1 {
		t.Fatalf("got %p (%v), %d accepted; want the idle connection reused", c2, err, accepted.Load())
	}
	c2.Release(true)

	// The server closes the idle connection: the next Get dials anew.
	server.Close()
	deadline := time.Now().Add(5 * time.Second)
	for Alive(c1.Conn) && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	c3, err := p.Get(ctx)
	if err == nil {
		<-conns // accepted
	}
	if err != nil || c3 == c1 || accepted.Load() != 2 {
		t.Fatalf("got %p (%v), %d accepted; want a new connection after the server closed the idle one", c3, err, accepted.Load())
	}

	// At the bound, Get waits; it gives up when ctx ends...
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if _, err := p.Get(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v at the bound, want the context's deadline", err)
	}
	// ...and proceeds when the bound is raised.
	got := make(chan error, 1)
	go func() {
		c, err := p.Get(ctx)
		if err == nil {
			c.Release(false)
		}
		got <- err
	}()
	time.Sleep(20 * time.Millisecond) // let it wait (it passes either way)
	p.SetMax(2)
	if err := <-got; err != nil {
		t.Fatal(err)
	}
	c3.Release(false)
	if n := p.Open(); n != 0 {
		t.Errorf("got %d open after releasing all as not reusable, want 0", n)
	}
	p.Close()
	if _, err := p.Get(ctx); !errors.Is(err, ErrClosed) {
		t.Errorf("got %v after Close, want ErrClosed", err)
	}
}
