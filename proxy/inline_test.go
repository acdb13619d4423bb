package proxy

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// testInline is an inline client over tr keeping maxIdle connections per
// origin, with generous timeouts.
func testInline(tr *http.Transport, maxIdle int) *inlineClient {
	return newInlineClient(tr, &Config{MaxIdleConnsPerHost: maxIdle, UpstreamIdleTimeout: time.Minute, ResponseHeaderTimeout: time.Minute})
}

// rawOrigin accepts connections on loopback and hands each to serve; it
// returns the address and the count of connections accepted.
func rawOrigin(t *testing.T, serve func(c net.Conn, br *bufio.Reader)) (string, *atomic.Int32) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	var accepted atomic.Int32
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			go func() {
				defer c.Close()
				serve(c, bufio.NewReader(c))
			}()
		}
	}()
	return ln.Addr().String(), &accepted
}

// silentOrigin reads a request on each connection and never answers.
func silentOrigin(t *testing.T) string {
	addr, _ := rawOrigin(t, func(c net.Conn, br *bufio.Reader) {
		http.ReadRequest(br)
		io.Copy(io.Discard, br)
	})
	return addr
}

// guardedTestTransport is an upstream Transport with Picket's pool guard,
// set up as newTransport sets it (no compression asked for, a head timeout).
func guardedTestTransport(maxIdle int) *http.Transport {
	tr := &http.Transport{MaxIdleConnsPerHost: maxIdle, DisableCompression: true, ResponseHeaderTimeout: time.Minute}
	guardTransport(tr, (&net.Dialer{}).DialContext, 1<<16, nil)
	return tr
}

// TestInlineRetriesClosedIdle: an origin that closes each connection after
// one answer (without saying so) costs the next GET nothing: the quiet check
// sees the close and the request goes out again on a new connection.
func TestInlineRetriesClosedIdle(t *testing.T) {
	addr, accepted := rawOrigin(t, func(c net.Conn, br *bufio.Reader) {
		if _, err := http.ReadRequest(br); err == nil {
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		}
	})
	tr := guardedTestTransport(4)
	defer tr.CloseIdleConnections()
	ic := testInline(tr, 4)
	defer ic.CloseIdleConnections()
	for i := range 5 {
		req, _ := http.NewRequest("GET", "http://"+addr+"/", nil)
		resp, err := ic.RoundTrip(req)
		if err != nil {
			t.Fatalf("GET %d: %v", i, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(b) != "ok" {
			t.Fatalf("GET %d: %q", i, b)
		}
		time.Sleep(20 * time.Millisecond) // the close reaches Picket's side
	}
	if n := accepted.Load(); n != 5 {
		t.Errorf("%d connections for 5 GETs to an origin that closes after each, want 5", n)
	}
}

// TestInlineKeepsAlive: sequential GETs and HEADs, with bodies of every
// framing, share one connection.
func TestInlineKeepsAlive(t *testing.T) {
	addr, accepted := rawOrigin(t, func(c net.Conn, br *bufio.Reader) {
		for i := 0; ; i++ {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			switch {
			case req.Method == "HEAD":
				io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n")
			case i%3 == 0:
				io.WriteString(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n")
			case i%3 == 1:
				io.WriteString(c, "HTTP/1.1 204 No Content\r\n\r\n")
			default:
				io.WriteString(c, "HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
			}
		}
	})
	tr := guardedTestTransport(4)
	defer tr.CloseIdleConnections()
	ic := testInline(tr, 4)
	defer ic.CloseIdleConnections()
	for i := range 30 {
		method := "GET"
		if i%5 == 4 {
			method = "HEAD"
		}
		req, _ := http.NewRequest(method, "http://"+addr+"/", nil)
		resp, err := ic.RoundTrip(req)
		if err != nil {
			t.Fatalf("%s %d: %v", method, i, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode == 103 {
			t.Fatalf("%s %d: an informational response came back as the answer", method, i)
		}
	}
	if n := accepted.Load(); n != 1 {
		t.Errorf("%d connections for 30 sequential requests, want 1", n)
	}
}

// TestInlineHeadTimeout: an origin that never answers gets the request a
// timeout error within the head timeout, and its connection is not kept.
func TestInlineHeadTimeout(t *testing.T) {
	addr := silentOrigin(t)
	tr := guardedTestTransport(4)
	defer tr.CloseIdleConnections()
	ic := newInlineClient(tr, &Config{MaxIdleConnsPerHost: 4, UpstreamIdleTimeout: time.Minute, ResponseHeaderTimeout: 200 * time.Millisecond})
	req, _ := http.NewRequest("GET", "http://"+addr+"/", nil)
	start := time.Now()
	_, err := ic.RoundTrip(req)
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("err %v, want a timeout", err)
	}
	if e := classify(addr, err); e.Kind != ErrTimeout || e.Status != http.StatusGatewayTimeout {
		t.Errorf("classified as %+v, want a 504 timeout", e)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("took %v", d)
	}
	ic.mu.Lock()
	n := len(ic.idle)
	ic.mu.Unlock()
	if n != 0 {
		t.Errorf("%d origins with idle connections after a timeout", n)
	}
}

// TestInlineCanceled: a request whose context ends while it waits for the
// head fails with the context's error at once.
func TestInlineCanceled(t *testing.T) {
	addr := silentOrigin(t)
	tr := guardedTestTransport(4)
	defer tr.CloseIdleConnections()
	ic := testInline(tr, 4)
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel)
	req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+addr+"/", nil)
	if _, err := ic.RoundTrip(req); !errors.Is(err, context.Canceled) {
		t.Fatalf("err %v, want context.Canceled", err)
	}
}

// TestInlineHeadTooLarge: a response head over the limit fails the request
// without reading it all.
func TestInlineHeadTooLarge(t *testing.T) {
	addr, _ := rawOrigin(t, func(c net.Conn, br *bufio.Reader) {
		http.ReadRequest(br)
		io.WriteString(c, "HTTP/1.1 200 OK\r\nX-Big: ")
		io.Copy(c, io.LimitReader(neverEnding('a'), 8<<20))
	})
	tr := guardedTestTransport(4)
	tr.MaxResponseHeaderBytes = 64 << 10
	defer tr.CloseIdleConnections()
	ic := testInline(tr, 4)
	req, _ := http.NewRequest("GET", "http://"+addr+"/", nil)
	if _, err := ic.RoundTrip(req); !errors.Is(err, errHeadTooLarge) {
		t.Fatalf("err %v, want %v", err, errHeadTooLarge)
	}
}

type neverEnding byte

func (b neverEnding) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = byte(b)
	}
	return len(p), nil
}

// TestInlineLeavesHTTP2ToTransport: an https origin goes inline only after
// the Transport spoke HTTP/1.1 with it; one that speaks HTTP/2 stays on the
// Transport (every request arrives over HTTP/2).
func TestInlineLeavesHTTP2ToTransport(t *testing.T) {
	for _, h2 := range []bool{false, true} {
		var protos, conns atomic.Int32
		origin := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.ProtoMajor == 2 {
				protos.Add(1)
			}
			io.WriteString(w, "ok")
		}))
		origin.EnableHTTP2 = h2
		origin.Config.ConnState = func(c net.Conn, s http.ConnState) {
			if s == http.StateNew {
				conns.Add(1)
			}
		}
		origin.StartTLS()
		defer origin.Close()
		tr := &http.Transport{ForceAttemptHTTP2: true, TLSClientConfig: origin.Client().Transport.(*http.Transport).TLSClientConfig.Clone()}
		guardTransport(tr, (&net.Dialer{}).DialContext, 1<<16, nil)
		ic := testInline(tr, 4)
		for i := range 10 {
			req, _ := http.NewRequest("GET", origin.URL+"/"+strings.Repeat("x", i), nil)
			resp, err := ic.RoundTrip(req)
			if err != nil {
				t.Fatalf("h2=%v GET %d: %v", h2, i, err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		ic.CloseIdleConnections()
		tr.CloseIdleConnections()
		switch {
		case h2 && protos.Load() != 10:
			t.Errorf("h2 origin: %d of 10 requests over HTTP/2", protos.Load())
		case !h2 && protos.Load() != 0:
			t.Errorf("HTTP/1.1 origin: %d requests over HTTP/2", protos.Load())
		case !h2 && conns.Load() != 2:
			t.Errorf("HTTP/1.1 origin: %d connections, want 2 (the Transport's first request, then the inline one)", conns.Load())
		case h2 && conns.Load() != 1:
			t.Errorf("h2 origin: %d connections, want 1", conns.Load())
		}
	}
}

// TestInlineCloseEarly: a body closed before its end (the client left) ends
// its connection at once, without reading the rest of the body from an
// origin that sends it slowly, also while a Read waits in another
// goroutine.
func TestInlineCloseEarly(t *testing.T) {
	addr, accepted := rawOrigin(t, func(c net.Conn, br *bufio.Reader) {
		for {
			if _, err := http.ReadRequest(br); err != nil {
				return
			}
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 10485760\r\n\r\nfirst")
			time.Sleep(time.Minute) // the rest never comes within the test
		}
	})
	tr := guardedTestTransport(4)
	defer tr.CloseIdleConnections()
	ic := testInline(tr, 4)
	defer ic.CloseIdleConnections()
	for i := range 2 {
		req, _ := http.NewRequest("GET", "http://"+addr+"/", nil)
		resp, err := ic.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 5)
		if _, err := io.ReadFull(resp.Body, buf); err != nil {
			t.Fatal(err)
		}
		read := make(chan error, 1)
		go func() { _, err := resp.Body.Read(buf); read <- err }() // blocks: nothing more comes
		time.Sleep(50 * time.Millisecond)
		closed := make(chan struct{})
		go func() { resp.Body.Close(); close(closed) }()
		select {
		case <-closed:
		case <-time.After(5 * time.Second):
			t.Fatalf("request %d: Close waited for the rest of the body", i)
		}
		select {
		case <-read:
		case <-time.After(5 * time.Second):
			t.Fatalf("request %d: a Read blocked in another goroutine did not return after Close", i)
		}
	}
	if n := accepted.Load(); n != 2 {
		t.Errorf("%d connections, want 2 (a body closed early does not give its connection back)", n)
	}
}
