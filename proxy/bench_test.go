package proxy

import (
	"bytes"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/elazarl/goproxy"
	"github.com/rs/zerolog"
)

// benchOrigin serves 1 KiB bodies.
func benchOrigin(b *testing.B, tlsOn bool) *httptest.Server {
	body := make([]byte, 1024)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write(body) })
	var s *httptest.Server
	if tlsOn {
		s = httptest.NewTLSServer(h)
	} else {
		s = httptest.NewServer(h)
	}
	b.Cleanup(s.Close)
	return s
}

// benchGet runs b.N keep-alive GETs of url with c, in parallel.
func benchGet(b *testing.B, c *http.Client, url string) {
	b.ReportAllocs()
	b.SetBytes(1024)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			resp, err := c.Get(url)
			if err != nil {
				b.Error(err)
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	})
}

// BenchmarkDirectGET is the baseline: the same client and origin, no proxy.
func BenchmarkDirectGET(b *testing.B) {
	origin := benchOrigin(b, false)
	tr := &http.Transport{MaxIdleConnsPerHost: 64}
	defer tr.CloseIdleConnections()
	benchGet(b, &http.Client{Transport: tr}, origin.URL)
}

// BenchmarkProxyGET is one full plain-HTTP request through the pipeline
// (decide, forward over the pool, access-log line) with keep-alive.
func BenchmarkProxyGET(b *testing.B) {
	origin := benchOrigin(b, false)
	tp := startProxy(b, Config{})
	tr := &http.Transport{Proxy: http.ProxyURL(tp.url), MaxIdleConnsPerHost: 64}
	defer tr.CloseIdleConnections()
	benchGet(b, &http.Client{Transport: tr}, origin.URL)
}

// BenchmarkInterceptedGET is one request inside an intercepted TLS tunnel
// with keep-alive (the leaf is minted once, then cached).
func BenchmarkInterceptedGET(b *testing.B) {
	origin := benchOrigin(b, true)
	ca := testCA(b)
	tp := startProxy(b, Config{
		Decider:   interceptAll,
		Intercept: func(host string) (*tls.Config, error) { return ca.TLSConfig(host), nil },
		RootCAs:   poolOf(origin.Certificate()),
	})
	tr := &http.Transport{Proxy: http.ProxyURL(tp.url), MaxIdleConnsPerHost: 64,
		TLSClientConfig: &tls.Config{RootCAs: poolOf(ca.Certificate())}}
	defer tr.CloseIdleConnections()
	benchGet(b, &http.Client{Transport: tr}, origin.URL)
}

// BenchmarkBareGoproxyGET is goproxy alone (tuned pool, no filtering): the
// library's own cost, to compare BenchmarkProxyGET with.
func BenchmarkBareGoproxyGET(b *testing.B) {
	origin := benchOrigin(b, false)
	gp := goproxy.NewProxyHttpServer()
	gp.Tr = &http.Transport{MaxIdleConnsPerHost: 256}
	srv := httptest.NewServer(gp)
	defer srv.Close()
	u, _ := url.Parse(srv.URL)
	tr := &http.Transport{Proxy: http.ProxyURL(u), MaxIdleConnsPerHost: 64}
	defer tr.CloseIdleConnections()
	benchGet(b, &http.Client{Transport: tr}, origin.URL)
}

// BenchmarkConnectTunnel is one CONNECT tunnel, opened, used and closed:
// the proxy decides the CONNECT, dials, answers 200 and relays 1 KiB each
// way to a TCP echo server (the new-connection tunnel row of loadbench,
// without TLS).
func BenchmarkConnectTunnel(b *testing.B) {
	target := benchEcho(b)
	tp := startProxy(b, Config{})
	benchConnect(b, tp.addr, target)
}

// BenchmarkBareGoproxyConnect is the same through goproxy alone.
func BenchmarkBareGoproxyConnect(b *testing.B) {
	target := benchEcho(b)
	srv := httptest.NewServer(goproxy.NewProxyHttpServer())
	defer srv.Close()
	benchConnect(b, strings.TrimPrefix(srv.URL, "http://"), target)
}

// benchEcho starts a TCP echo server and returns its address.
func benchEcho(b *testing.B) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { io.Copy(c, c); c.Close() }()
		}
	}()
	return ln.Addr().String()
}

// benchConnect runs b.N tunnels through the proxy at proxyAddr to target,
// one after another.
func benchConnect(b *testing.B, proxyAddr, target string) {
	head := []byte("CONNECT " + target + " HTTP/1.1\r\nHost: " + target + "\r\n\r\n")
	payload := make([]byte, 1024)
	buf := make([]byte, 4096)
	b.ReportAllocs()
	b.SetBytes(1024)
	b.ResetTimer()
	for range b.N {
		c, err := net.Dial("tcp", proxyAddr)
		if err != nil {
			b.Fatal(err)
		}
		c.Write(head)
		// The answer's head, then the echo.
		n := 0
		for !bytes.Contains(buf[:n], []byte("\r\n\r\n")) {
			m, err := c.Read(buf[n:])
			if err != nil {
				b.Fatal(err)
			}
			n += m
		}
		if !bytes.HasPrefix(buf, []byte("HTTP/1.1 200")) {
			b.Fatalf("CONNECT: %q", buf[:n])
		}
		c.Write(payload)
		if _, err := io.ReadFull(c, buf[:len(payload)]); err != nil {
			b.Fatal(err)
		}
		c.Close()
	}
}

// BenchmarkAccessLine is one JSON access-log line for an allowed CONNECT
// with a reputation verdict, on a logger made as cmd/picket makes it.
func BenchmarkAccessLine(b *testing.B) {
	s := &Server{}
	s.cfg.AccessLog = zerolog.New(io.Discard).With().Timestamp().Str("log", "access").Logger()
	x := &exchange{start: time.Now(), status: http.StatusOK, req: Request{
		Client: netip.MustParseAddr("192.0.2.7"), Method: http.MethodConnect, Connect: true,
		URL: &url.URL{Scheme: "https", Host: "example.com:443"},
	}}
	x.decision = Decision{Verdict: "clean", VerdictSource: "database", VerdictCached: true, Rule: "default"}
	b.ReportAllocs()
	for b.Loop() {
		s.jsonAccess(x)
	}
}

// BenchmarkGoroutineStack is a goroutine going about 6 KiB deep in twenty
// frames, as a connection's goroutine does at the decision, with its stack
// grown by growStack at the start or by Go where it runs out.
func BenchmarkGoroutineStack(b *testing.B) {
	for _, early := range []bool{false, true} {
		name := "grown-deep"
		if early {
			name = "grown-at-start"
		}
		b.Run(name, func(b *testing.B) {
			done := make(chan byte)
			for b.Loop() {
				go func() {
					if early {
						growStack(0)
					}
					done <- deepFrames(20)
				}()
				<-done
			}
		})
	}
}

// deepFrames calls itself n times, each frame about 300 bytes.
//
//go:noinline
func deepFrames(n int) byte {
	var pad [256]byte
	if n > 0 {
		pad[n] = deepFrames(n - 1)
	}
	return pad[n&255]
}
