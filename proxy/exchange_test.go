package proxy

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"sync/atomic"
	"testing"
	"time"
)

// TestLateBodyCloseLeavesConnection: the upstream transport may close a
// request body after the handler returned (it hands a response over
// without waiting for the request's write to end when it will not reuse
// the connection, e.g. after a 204 that announced a body). By then the
// client connection is net/http's again: the close must not move its read
// deadline. A move that landed just after net/http interrupted its
// background read with a past deadline cancelled the interruption, and the
// next pipelined request hung until the deadline. Here the connection
// itself runs the late close at exactly that moment.
func TestLateBodyCloseLeavesConnection(t *testing.T) {
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var late atomic.Pointer[countingBody] // the body of /a, closed late
	var lateMoves atomic.Int32
	ln := &lateCloseListener{Listener: inner, late: &late, moves: &lateMoves}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// As forward and the transport do: the body read to its end
		// through a countingBody bounded via the handler's writer.
		d := newHandlerDeadlines(w)
		defer d.done()
		b := &countingBody{ReadCloser: r.Body, n: new(atomic.Int64), rc: d, idle: time.Hour}
		if _, err := io.ReadAll(b); err != nil {
			t.Errorf("%s: reading the body: %v", r.URL.Path, err)
		}
		if r.URL.Path == "/a" {
			late.Store(b)
		}
		w.WriteHeader(http.StatusNoContent)
	}), ReadHeaderTimeout: time.Minute}
	go srv.Serve(ln)
	defer srv.Close()

	c, err := net.Dial("tcp", inner.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second)) // a regression fails here, it does not hang
	write(t, c, "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\na"+
		"POST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\nb")
	br := bufio.NewReader(c)
	for _, path := range []string{"/a", "/b"} {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNoContent {
			t.Errorf("%s: got status %d, want 204", path, resp.StatusCode)
		}
	}
	if late.Load() != nil {
		t.Fatal("net/http never interrupted a background read: the late close did not run")
	}
	if n := lateMoves.Load(); n != 0 {
		t.Errorf("closing the body after the handler returned moved the client connection's read deadline %d times, want 0", n)
	}
}

// lateCloseListener's connections close the body in late (once) right after
// net/http interrupts a background read with a past read deadline, and count
// the read deadline moves that close makes.
type lateCloseListener struct {
	net.Listener
	late  *atomic.Pointer[countingBody]
	moves *atomic.Int32
}

func (l *lateCloseListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &lateCloseConn{Conn: c, l: l}, nil
}

type lateCloseConn struct {
	net.Conn
	l       *lateCloseListener
	closing atomic.Bool
}

func (c *lateCloseConn) SetReadDeadline(t time.Time) error {
	if c.closing.Load() {
		c.l.moves.Add(1)
	}
	err := c.Conn.SetReadDeadline(t)
	if !t.IsZero() && t.Before(time.Now()) {
		if b := c.l.late.Swap(nil); b != nil {
			c.closing.Store(true)
			b.Close()
			c.closing.Store(false)
		}
	}
	return err
}
