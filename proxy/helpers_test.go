package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/picket-proxy/picket/internal/testutil"
)

// testProxy is a running proxy on loopback.
type testProxy struct {
	*Server
	addr   string
	url    *url.URL
	access *testutil.SyncBuffer
	app    *testutil.SyncBuffer
}

// startProxy starts a proxy with cfg on 127.0.0.1:0 and stops it when the
// test ends.
// Test origins live on loopback, which the proxy refuses by default: unless
// a test sets AllowDestinations or ConnectPorts itself (an empty non-nil
// slice keeps the secure defaults), loopback and every port are allowed.
func startProxy(t testing.TB, cfg Config) *testProxy {
	t.Helper()
	if cfg.AllowDestinations == nil {
		cfg.AllowDestinations = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}
	}
	if cfg.ConnectPorts == nil {
		cfg.ConnectPorts = []PortRange{{Lo: 1, Hi: 65535}}
	}
	tp := &testProxy{access: &testutil.SyncBuffer{}, app: &testutil.SyncBuffer{}}
	cfg.AccessLog = zerolog.New(tp.access)
	cfg.Log = zerolog.New(tp.app).Level(zerolog.DebugLevel)
	if _, ok := t.(*testing.B); ok { // benchmarks: do not keep b.N lines
		cfg.AccessLog = zerolog.New(io.Discard)
		cfg.Log = zerolog.Nop()
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = s.Serve(ln)
	}()
	t.Cleanup(func() {
		_ = s.Close()
		<-done
	})
	tp.Server = s
	tp.addr = ln.Addr().String()
	tp.url = &url.URL{Scheme: "http", Host: tp.addr}
	return tp
}

// client returns an HTTP client that uses the proxy.
func (tp *testProxy) client(t *testing.T) *http.Client {
	t.Helper()
	tr := &http.Transport{Proxy: http.ProxyURL(tp.url), MaxIdleConnsPerHost: 8}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 60 * time.Second}
}

// waitAccess waits until an access-log line matching pred appears; the log
// line is written when the response body is closed, which can trail the
// client's read by a moment.
func (tp *testProxy) waitAccess(t *testing.T, pred func(map[string]any) bool) map[string]any {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for {
		for _, l := range tp.access.Lines() {
			if pred(l) {
				return l
			}
		}
		select {
		case <-ctx.Done():
			t.Fatalf("no matching access-log line; have:\n%s", tp.access.String())
			return nil
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// rawRequest sends raw bytes to the proxy and returns the status line and
// the rest of what came back before the proxy closed or 3s passed.
func (tp *testProxy) rawRequest(t *testing.T, raw string) (string, string) {
	t.Helper()
	c, err := net.DialTimeout("tcp", tp.addr, 3*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte(raw)); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	status, err := br.ReadString('\n')
	if err != nil {
		t.Fatalf("reading status: %v", err)
	}
	var rest strings.Builder
	buf := make([]byte, 4096)
	_ = c.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
	for {
		n, err := br.Read(buf)
		rest.Write(buf[:n])
		if err != nil {
			break
		}
	}
	return strings.TrimSpace(status), rest.String()
}

// intercepted opens an intercepted tunnel to host through the proxy at addr
// and returns the TLS connection inside and a reader of its answers.
func intercepted(t *testing.T, addr string, ca *x509.Certificate, host string) (*tls.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 3*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	io.WriteString(c, "CONNECT "+host+" HTTP/1.1\r\nHost: "+host+"\r\n\r\n")
	if resp, err := http.ReadResponse(bufio.NewReader(c), &http.Request{Method: "CONNECT"}); err != nil || resp.StatusCode != 200 {
		t.Fatalf("CONNECT: %v %v", resp, err)
	}
	tc := tls.Client(c, &tls.Config{RootCAs: poolOf(ca), ServerName: "127.0.0.1"})
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	return tc, bufio.NewReader(tc)
}

// interceptedRequest sends raw, one request head (and body), inside an
// intercepted tunnel to host (CONNECT, then TLS trusting only ca) and
// returns the response read inside the tunnel.
func interceptedRequest(t *testing.T, proxyAddr string, ca *x509.Certificate, host, raw string) (*http.Response, string) {
	t.Helper()
	tc, br := intercepted(t, proxyAddr, ca, host)
	if _, err := io.WriteString(tc, raw); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("inner response: %v", err)
	}
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// echoListener is a line-agnostic TCP echo server for one connection: not
// HTTP, not TLS.
func echoListener(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		io.Copy(c, c)
	}()
	return ln
}
