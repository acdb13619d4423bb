package proxy

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"testing"
	"time"
)

// BenchmarkUpstreamTransport and BenchmarkUpstreamInline are one request
// on its way to a loopback origin and back (1 KiB, keep-alive, 64 at a
// time), the two ways an HTTP/1.1 forward proxy can send it:
//
//   - Transport: net/http's Transport, as Picket, goproxy and the floor do:
//     the request goes to the connection's writer goroutine and the
//     response comes back from its reader goroutine.
//   - Inline: the caller writes the request and reads the response itself,
//     on a connection from a plain pool, with what a real client adds (a
//     head timeout, cancellation by the request's context).
//
// The difference is what the Transport's hand-offs and bookkeeping cost a
// request (docs/benchmarks.md: why intercepted keep-alive is not met).
func BenchmarkUpstreamTransport(b *testing.B) {
	origin := benchOrigin(b, false)
	tr := &http.Transport{MaxIdleConnsPerHost: 256, DisableCompression: true, ResponseHeaderTimeout: time.Minute}
	defer tr.CloseIdleConnections()
	req, _ := http.NewRequest("GET", origin.URL+"/1k", nil)
	benchUpstream(b, func() error {
		resp, err := tr.RoundTrip(req)
		if err != nil {
			return err
		}
		_, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return err
	})
}

func BenchmarkUpstreamInline(b *testing.B) {
	origin := benchOrigin(b, false)
	addr := origin.Listener.Addr().String()
	type conn struct {
		c  net.Conn
		br *bufio.Reader
		bw *bufio.Writer
	}
	pool := make(chan *conn, 256)
	defer func() {
		close(pool)
		for c := range pool {
			c.c.Close()
		}
	}()
	req, _ := http.NewRequest("GET", origin.URL+"/1k", nil)
	benchUpstream(b, func() error {
		var c *conn
		select {
		case c = <-pool:
		default:
			nc, err := net.Dial("tcp", addr)
			if err != nil {
				return err
			}
			c = &conn{c: nc, br: bufio.NewReader(nc), bw: bufio.NewWriter(nc)}
		}
		stop := context.AfterFunc(req.Context(), func() { c.c.SetDeadline(aLongTimeAgo) })
		defer stop()
		if err := req.Write(c.bw); err != nil {
			c.c.Close()
			return err
		}
		if err := c.bw.Flush(); err != nil {
			c.c.Close()
			return err
		}
		c.c.SetReadDeadline(time.Now().Add(time.Minute))
		resp, err := http.ReadResponse(c.br, req)
		if err != nil {
			c.c.Close()
			return err
		}
		c.c.SetReadDeadline(time.Time{})
		_, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if err != nil || resp.Close || c.br.Buffered() > 0 {
			c.c.Close()
			return err
		}
		pool <- c
		return nil
	})
}

// benchUpstream runs do b.N times, 64 at a time.
func benchUpstream(b *testing.B, do func() error) {
	b.ReportAllocs()
	b.SetBytes(1024)
	b.SetParallelism(32)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := do(); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
