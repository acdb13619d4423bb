package proxy

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/picket-proxy/picket/certs"
)

// h2Origin is a TLS origin that offers h2 (and http/1.1) by ALPN and counts
// the connections it accepted.
func h2Origin(t *testing.T, h http.Handler) (*httptest.Server, *atomic.Int64) {
	t.Helper()
	var conns atomic.Int64
	o := httptest.NewUnstartedServer(h)
	o.EnableHTTP2 = true
	o.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			conns.Add(1)
		}
	}
	o.StartTLS()
	t.Cleanup(o.Close)
	return o, &conns
}

// startInterceptingWith is startIntercepting with more of the Config set.
func startInterceptingWith(t *testing.T, ca *certs.Authority, cfg Config, upstream ...*x509.Certificate) *testProxy {
	t.Helper()
	if cfg.Decider == nil {
		cfg.Decider = interceptAll
	}
	cfg.Intercept = func(host string) (*tls.Config, error) { return ca.TLSConfig(host), nil }
	cfg.RootCAs = poolOf(upstream...)
	return startProxy(t, cfg)
}

// h2Client is an HTTP client that goes through the proxy at tp, trusts ca
// and offers h2 inside its tunnels.
func h2Client(t *testing.T, tp *testProxy, ca *certs.Authority) *http.Client {
	t.Helper()
	tr := &http.Transport{Proxy: http.ProxyURL(tp.url), ForceAttemptHTTP2: true,
		TLSClientConfig: &tls.Config{RootCAs: poolOf(ca.Certificate())}}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 20 * time.Second}
}

// An intercepted client that offers h2 gets it: concurrent requests are
// streams of one tunnel, each decided and logged (proto HTTP/2.0) as a
// request over HTTP/1.1 is, blocked ones get the block page; an origin that
// offers h2 gets the streams over one reused connection, one that does not
// gets HTTP/1.1.
func TestInterceptedHTTP2(t *testing.T) {
	var originProtos sync.Map
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		originProtos.Store(r.Proto, true)
		if r.Method == http.MethodPost {
			b, _ := io.ReadAll(r.Body)
			fmt.Fprintf(w, "got %d bytes", len(b))
			return
		}
		fmt.Fprintf(w, "path=%s", r.URL.Path)
	})
	h2o, h2Conns := h2Origin(t, handler)
	h1o := httptest.NewTLSServer(handler) // http/1.1 only
	defer h1o.Close()
	ca := testCA(t)
	tp := startInterceptingWith(t, ca, Config{}, h2o.Certificate(), h1o.Certificate())
	c := h2Client(t, tp, ca)

	for _, o := range []struct {
		name      string
		url       string
		wantProto string
	}{{"h2 origin", h2o.URL, "HTTP/2.0"}, {"http/1.1 origin", h1o.URL, "HTTP/1.1"}} {
		t.Run(o.name, func(t *testing.T) {
			originProtos.Clear()
			// One request first: until a connection is known to speak h2,
			// concurrent requests each open one (the client's tunnels and
			// Picket's upstream connections alike).
			resp, err := c.Get(o.url + "/first")
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			tunnels0, conns0 := countTunnels(tp), h2Conns.Load()
			const n = 20
			var wg sync.WaitGroup
			errs := make(chan error, n)
			for i := range n {
				wg.Add(1)
				go func() {
					defer wg.Done()
					resp, err := c.Get(fmt.Sprintf("%s/res/%d", o.url, i))
					if err != nil {
						errs <- err
						return
					}
					b, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					if resp.ProtoMajor != 2 || resp.TLS.NegotiatedProtocol != "h2" || string(b) != fmt.Sprintf("path=/res/%d", i) {
						errs <- fmt.Errorf("request %d: got %s (ALPN %q) %q", i, resp.Proto, resp.TLS.NegotiatedProtocol, b)
					}
				}()
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Error(err)
			}
			for i := range n {
				url := fmt.Sprintf("%s/res/%d", o.url, i)
				l := tp.waitAccess(t, func(l map[string]any) bool { return l[fURL] == url })
				if l[fProto] != "HTTP/2.0" || l[fStatus] != float64(200) || l[fTunnel] == nil || l[fComplete] != true {
					t.Errorf("access line of %s: got %v, want proto HTTP/2.0, 200, in a tunnel, complete", url, l)
				}
			}
			if _, ok := originProtos.Load(o.wantProto); !ok {
				t.Errorf("origin saw no %s request", o.wantProto)
			}
			// Many streams, one tunnel; to the h2 origin one upstream
			// connection.
			if got := countTunnels(tp) - tunnels0; got != 0 {
				t.Errorf("new tunnels for %d concurrent requests: got %d, want 0 (streams of one connection)", n, got)
			}
			if got := h2Conns.Load() - conns0; got != 0 {
				t.Errorf("new upstream connections to the h2 origin: got %d, want 0", got)
			}
			// A request body travels as a stream too.
			resp, err = c.Post(o.url+"/upload", "application/octet-stream", bytes.NewReader(make([]byte, 300<<10)))
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if string(b) != fmt.Sprintf("got %d bytes", 300<<10) {
				t.Errorf("POST over h2: got %q", b)
			}
		})
	}
	// A blocked URL gets the block page over HTTP/2.
	resp, err := c.Get(h2o.URL + "/blocked")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.ProtoMajor != 2 || resp.StatusCode != 403 || !strings.Contains(string(b), "phishing") || resp.Header.Get("X-Picket-Reason") == "" {
		t.Errorf("blocked over h2: got %s %d %q", resp.Proto, resp.StatusCode, b)
	}
	l := tp.waitAccess(t, func(l map[string]any) bool { return l[fURL] == h2o.URL+"/blocked" })
	if l[fAction] != "block" || l[fProto] != "HTTP/2.0" || l[fIncident] == nil {
		t.Errorf("block line: got %v", l)
	}
}

// countTunnels counts the CONNECTs the proxy has accepted so far (a tunnel's
// line is written when it ends: open tunnels are counted by the
// connections the proxy holds).
func countTunnels(tp *testProxy) int { return tp.OpenConns() }

// With HTTP/2 off, intercepted clients are offered http/1.1 only and
// origins are asked for HTTP/1.1.
func TestHTTP2Disabled(t *testing.T) {
	var proto atomic.Value
	o, _ := h2Origin(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		proto.Store(r.Proto)
		io.WriteString(w, "ok")
	}))
	ca := testCA(t)
	tp := startInterceptingWith(t, ca, Config{DisableHTTP2: true}, o.Certificate())
	resp, err := h2Client(t, tp, ca).Get(o.URL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.ProtoMajor != 1 || resp.TLS.NegotiatedProtocol != "http/1.1" || proto.Load() != "HTTP/1.1" {
		t.Errorf("got client %s (ALPN %q), origin %v; want HTTP/1.1 on both sides", resp.Proto, resp.TLS.NegotiatedProtocol, proto.Load())
	}
}

// A request without a body that reaches Picket over HTTP/2 leaves it
// without one: its stream ends with its headers upstream too (the origin
// sees a length of 0, not an unknown length followed by an empty DATA
// frame), GET, HEAD and an explicitly empty POST alike; a POST with a body
// still carries it.
func TestHTTP2BodilessRequestStaysBodiless(t *testing.T) {
	type seen struct {
		cl   int64
		body int
	}
	var got sync.Map
	o, _ := h2Origin(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got.Store(r.Method+" "+r.URL.Path, seen{r.ContentLength, len(b)})
		io.WriteString(w, "ok")
	}))
	ca := testCA(t)
	tp := startInterceptingWith(t, ca, Config{}, o.Certificate())
	c := h2Client(t, tp, ca)
	for _, tc := range []struct {
		method, path string
		body         io.Reader
		want         seen
	}{
		{"GET", "/get", nil, seen{0, 0}},
		{"HEAD", "/head", nil, seen{0, 0}},
		{"POST", "/empty", http.NoBody, seen{0, 0}},
		{"POST", "/body", strings.NewReader("12345"), seen{5, 5}},
	} {
		req, _ := http.NewRequest(tc.method, o.URL+tc.path, tc.body)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.ProtoMajor != 2 {
			t.Fatalf("%s %s: client side got %s, want HTTP/2.0", tc.method, tc.path, resp.Proto)
		}
		v, ok := got.Load(tc.method + " " + tc.path)
		if !ok {
			t.Errorf("%s %s did not reach the origin", tc.method, tc.path)
			continue
		}
		if v.(seen) != tc.want {
			t.Errorf("%s %s: origin saw content length %d and %d body bytes, want %d and %d",
				tc.method, tc.path, v.(seen).cl, v.(seen).body, tc.want.cl, tc.want.body)
		}
	}
}

// An HTTP/1.1 client's requests still go to an h2 origin over HTTP/2 (the
// shared upstream pool), including the fast path's.
func TestHTTP1ClientToHTTP2Origin(t *testing.T) {
	var protos sync.Map
	o, conns := h2Origin(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		protos.Store(r.Method+" "+r.Proto, true)
		io.WriteString(w, "ok")
	}))
	ca := testCA(t)
	tp, c := startIntercepting(t, ca, o.Certificate())
	_ = tp
	for _, method := range []string{"GET", "POST"} { // fast path, net/http path
		req, _ := http.NewRequest(method, o.URL+"/x", strings.NewReader("body"))
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.ProtoMajor != 1 {
			t.Errorf("client side: got %s, want HTTP/1.1", resp.Proto)
		}
		if _, ok := protos.Load(method + " HTTP/2.0"); !ok {
			t.Errorf("%s did not reach the origin over HTTP/2", method)
		}
	}
	if got := conns.Load(); got != 1 {
		t.Errorf("upstream connections: got %d, want 1", got)
	}
}

// A body that fails mid-way resets the HTTP/2 stream: the client sees an
// error, never a clean end of a truncated body, and the connection's other
// streams go on.
func TestHTTP2StreamResetOnFailedBody(t *testing.T) {
	o, _ := h2Origin(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/ok" {
			io.WriteString(w, "fine")
			return
		}
		w.Write(make([]byte, 100<<10))
		w.(http.Flusher).Flush()
		panic(http.ErrAbortHandler) // the upstream stream is reset mid-body
	}))
	ca := testCA(t)
	tp := startInterceptingWith(t, ca, Config{}, o.Certificate())
	c := h2Client(t, tp, ca)
	resp, err := c.Get(o.URL + "/cut")
	if err != nil {
		t.Fatal(err)
	}
	n, err := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err == nil {
		t.Fatalf("truncated body read cleanly (%d bytes), want a stream error", n)
	}
	var se http2.StreamError
	if !errors.As(err, &se) && !strings.Contains(err.Error(), "stream error") {
		t.Errorf("got %v, want a stream reset", err)
	}
	resp, err = c.Get(o.URL + "/ok")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "fine" {
		t.Errorf("next stream: got %q", b)
	}
	l := tp.waitAccess(t, func(l map[string]any) bool { return l[fURL] == o.URL+"/cut" })
	if l[fComplete] != false {
		t.Errorf("access line of the cut body: got %v, want complete=false", l)
	}
}

// Origins' QUIC alternatives never reach the client, over HTTP/1.1 or
// HTTP/2, intercepted or plain; TCP ones do.
func TestAltSvcQUICRemoved(t *testing.T) {
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Alt-Svc", `h3=":443"; ma=86400, h3-29=":443"; ma=86400, h2="alt.example:443"; ma=60`)
		w.Header().Add("Alt-Svc", `quic=":443"; ma=2592000; v="46,43"`)
		io.WriteString(w, "ok")
	})
	o, _ := h2Origin(t, handler)
	plain := httptest.NewServer(handler)
	defer plain.Close()
	ca := testCA(t)
	tp := startInterceptingWith(t, ca, Config{}, o.Certificate())
	h1 := &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(tp.url), TLSClientConfig: &tls.Config{RootCAs: poolOf(ca.Certificate())}}}
	for _, tc := range []struct {
		name string
		c    *http.Client
		url  string
	}{
		{"intercepted HTTP/2", h2Client(t, tp, ca), o.URL},
		{"intercepted HTTP/1.1, fast path", h1, o.URL},
		{"plain HTTP", h1, plain.URL},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := tc.c.Get(tc.url)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if got := resp.Header.Values("Alt-Svc"); len(got) != 1 || got[0] != `h2="alt.example:443"; ma=60` {
				t.Errorf("Alt-Svc: got %q, want only the h2 alternative", got)
			}
		})
	}
}

func TestStripQUIC(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   []string
		want []string // nil: header removed
	}{
		{"h3 only", []string{`h3=":443"; ma=86400`}, nil},
		{"drafts and gQUIC", []string{`h3-29=":443", h3-Q050=":443", quic=":443"; v="46,43"`}, nil},
		{"keeps h2", []string{`h3=":443", h2=":8443"; ma=10`}, []string{`h2=":8443"; ma=10`}},
		{"percent-encoded http/1.1", []string{`http%2F1.1=":80"`}, []string{`http%2F1.1=":80"`}},
		{"clear stays", []string{"clear"}, []string{"clear"}},
		{"comma inside a quoted string", []string{`h3="a,b:443"; ma=1, h2=":443"`}, []string{`h2=":443"`}},
		{"unknown protocols go", []string{`hq-interop=":443", foo=":1"`}, nil},
		{"malformed", []string{`h2`, `=":443"`, `h%zz=":1"`}, nil},
		{"two lines", []string{`h3=":443"`, `h2=":443"`}, []string{`h2=":443"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := http.Header{"Alt-Svc": tc.in}
			stripQUIC(h)
			got, ok := h["Alt-Svc"]
			if tc.want == nil && ok || tc.want != nil && strings.Join(got, "|") != strings.Join(tc.want, "|") {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

// rawH2 is a hand-driven HTTP/2 client connection through the proxy's
// interception: for peers that break the rules on purpose.
type rawH2 struct {
	t   *testing.T
	c   *tls.Conn
	fr  *http2.Framer
	enc *hpack.Encoder
	buf bytes.Buffer
	mu  sync.Mutex // writes
}

// dialRawH2 opens an intercepted tunnel to host through tp, negotiates h2
// and sends the preface and settings.
func dialRawH2(t *testing.T, tp *testProxy, ca *certs.Authority, host string, settings ...http2.Setting) *rawH2 {
	t.Helper()
	c, err := net.DialTimeout("tcp", tp.addr, 3*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", host, host)
	buf := make([]byte, len(connectEstablished))
	if _, err := io.ReadFull(c, buf); err != nil || !bytes.Equal(buf, connectEstablished) {
		t.Fatalf("CONNECT: %q %v", buf, err)
	}
	tc := tls.Client(c, &tls.Config{RootCAs: poolOf(ca.Certificate()), ServerName: "127.0.0.1", NextProtos: []string{"h2"}})
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	if p := tc.ConnectionState().NegotiatedProtocol; p != "h2" {
		t.Fatalf("ALPN: got %q, want h2", p)
	}
	r := &rawH2{t: t, c: tc}
	r.fr = http2.NewFramer(tc, tc)
	r.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	r.enc = hpack.NewEncoder(&r.buf)
	io.WriteString(tc, http2.ClientPreface)
	if err := r.fr.WriteSettings(settings...); err != nil {
		t.Fatal(err)
	}
	return r
}

// headerBlock encodes a request head for path on host.
func (r *rawH2) headerBlock(method, host, path string, extra ...string) []byte {
	r.buf.Reset()
	fields := []string{":method", method, ":scheme", "https", ":authority", host, ":path", path}
	if method == http.MethodConnect {
		fields = []string{":method", method, ":authority", host}
	}
	for _, kv := range [][]string{fields, extra} {
		for i := 0; i+1 < len(kv); i += 2 {
			r.enc.WriteField(hpack.HeaderField{Name: kv[i], Value: kv[i+1]})
		}
	}
	return bytes.Clone(r.buf.Bytes())
}

// request sends a whole request head on stream id.
func (r *rawH2) request(id uint32, method, host, path string, extra ...string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: r.headerBlock(method, host, path, extra...),
		EndStream: method == http.MethodGet || method == http.MethodConnect && len(extra) == 0, EndHeaders: true})
}

// settle completes the SETTINGS exchange: the server's SETTINGS read and
// acknowledged, ours acknowledged.
func (r *rawH2) settle() {
	r.t.Helper()
	theirs, ours := false, false
	if err := r.readUntil(10*time.Second, func(f http2.Frame) bool {
		if sf, ok := f.(*http2.SettingsFrame); ok {
			if sf.IsAck() {
				ours = true
			} else {
				theirs = true
			}
		}
		return theirs && ours
	}); err != nil {
		r.t.Fatalf("SETTINGS exchange: %v", err)
	}
}

// readUntil reads frames, answering SETTINGS, until done returns true or
// the connection ends; it returns the last error.
func (r *rawH2) readUntil(deadline time.Duration, done func(http2.Frame) bool) error {
	_ = r.c.SetReadDeadline(time.Now().Add(deadline))
	for {
		f, err := r.fr.ReadFrame()
		if err != nil {
			return err
		}
		if sf, ok := f.(*http2.SettingsFrame); ok && !sf.IsAck() {
			r.mu.Lock()
			r.fr.WriteSettingsAck()
			r.mu.Unlock()
		}
		if done(f) {
			return nil
		}
	}
}

// A CONNECT inside an intercepted tunnel would open a tunnel past
// inspection: over HTTP/2 it gets 405, extended CONNECT (RFC 8441) is not
// offered in SETTINGS and a request that tries it is reset; over HTTP/1.1
// it gets 405 too.
func TestCONNECTInsideInterceptionRefused(t *testing.T) {
	var reached atomic.Int64
	o, _ := h2Origin(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { reached.Add(1) }))
	ca := testCA(t)
	tp := startInterceptingWith(t, ca, Config{}, o.Certificate())
	host := strings.TrimPrefix(o.URL, "https://")

	r := dialRawH2(t, tp, ca, host)
	var status string
	sawSettings, extendedConnect := false, false
	if err := r.request(1, http.MethodConnect, host, ""); err != nil {
		t.Fatal(err)
	}
	err := r.readUntil(5*time.Second, func(f http2.Frame) bool {
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				sawSettings = true
				_, extendedConnect = f.Value(http2.SettingEnableConnectProtocol)
			}
		case *http2.MetaHeadersFrame:
			status = f.PseudoValue("status")
			return true
		}
		return false
	})
	if err != nil || status != "405" {
		t.Errorf("CONNECT over h2: got status %q (%v), want 405", status, err)
	}
	if !sawSettings || extendedConnect {
		t.Errorf("server SETTINGS seen %v, ENABLE_CONNECT_PROTOCOL present %v; want it absent", sawSettings, extendedConnect)
	}
	if err := r.request(3, http.MethodConnect, host, "", ":protocol", "websocket", ":scheme", "https", ":path", "/ws"); err != nil {
		t.Fatal(err)
	}
	var rst *http2.RSTStreamFrame
	err = r.readUntil(5*time.Second, func(f http2.Frame) bool {
		rst, _ = f.(*http2.RSTStreamFrame)
		return rst != nil || f.Header().Type == http2.FrameHeaders
	})
	if err != nil || rst == nil || rst.StreamID != 3 {
		t.Errorf("extended CONNECT: got %v (%v), want RST_STREAM on stream 3", rst, err)
	}

	resp, body := interceptedRequest(t, tp.addr, ca.Certificate(), host, "CONNECT "+host+" HTTP/1.1\r\nHost: "+host+"\r\n\r\n")
	if resp.StatusCode != 405 {
		t.Errorf("CONNECT over HTTP/1.1 inside the tunnel: got %d %q, want 405", resp.StatusCode, body)
	}
	if n := reached.Load(); n != 0 {
		t.Errorf("origin reached %d times", n)
	}
}

// goroutinesSettle waits until the goroutine count is at most max, and
// returns the last count.
func goroutinesSettle(max int, within time.Duration) int {
	deadline := time.Now().Add(within)
	for {
		n := runtime.NumGoroutine()
		if n <= max || time.Now().After(deadline) {
			return n
		}
		time.Sleep(20 * time.Millisecond)
	}
}

var _ = context.Background

// misbehavingOrigin serves /big (8 MiB, written in pieces), /slow (until
// the request is cancelled) and /ok, and counts the /slow requests and the
// /big bytes written.
func misbehavingOrigin(t *testing.T) (*httptest.Server, *atomic.Int64) {
	o, slow, _ := misbehavingOriginBytes(t)
	return o, slow
}

func misbehavingOriginBytes(t *testing.T) (*httptest.Server, *atomic.Int64, *atomic.Int64) {
	t.Helper()
	var slow, written atomic.Int64
	piece := make([]byte, 64<<10)
	o, _ := h2Origin(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/big":
			for range 128 {
				n, err := w.Write(piece)
				written.Add(int64(n))
				if err != nil {
					return
				}
			}
		case "/slow":
			slow.Add(1)
			select {
			case <-r.Context().Done():
			case <-time.After(30 * time.Second):
			}
		default:
			io.WriteString(w, "ok")
		}
	}))
	return o, &slow, &written
}

// fetchAll GETs each URL with c and checks the whole body arrived.
func fetchAll(t *testing.T, c *http.Client, urls ...string) {
	t.Helper()
	for _, u := range urls {
		resp, err := c.Get(u)
		if err != nil {
			t.Errorf("well-behaved client, %s: %v", u, err)
			continue
		}
		n, err := io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != 200 || resp.ProtoMajor != 2 || strings.HasSuffix(u, "/big") && n != 8<<20 {
			t.Errorf("well-behaved client, %s: got %s %d, %d bytes (%v)", u, resp.Proto, resp.StatusCode, n, err)
		}
	}
}

// heapInUse returns the live heap after a collection.
func heapInUse() int64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapAlloc)
}

// A client that opens streams and never opens their windows holds at most
// HTTP2MaxStreams handlers, each with at most the upstream stream window of
// response buffered — while another client, whose streams share the same
// upstream connection, downloads at full speed — and the streams are reset
// once the write deadline (tunnel idle timeout) passes.
func TestHTTP2StreamWindowNeverOpened(t *testing.T) {
	const streams = 16
	o, _, written := misbehavingOriginBytes(t)
	host := strings.TrimPrefix(o.URL, "https://")
	ca := testCA(t)

	t.Run("bounded while stalled, others unaffected", func(t *testing.T) {
		tp := startInterceptingWith(t, ca, Config{HTTP2MaxStreams: streams, TunnelIdleTimeout: time.Minute}, o.Certificate())
		good := h2Client(t, tp, ca)
		fetchAll(t, good, o.URL+"/ok") // the good client's tunnel and the upstream connection exist
		g0, h0, w0 := runtime.NumGoroutine(), heapInUse(), written.Load()

		bad := dialRawH2(t, tp, ca, host, http2.Setting{ID: http2.SettingInitialWindowSize, Val: 0})
		for i := range streams {
			if err := bad.request(uint32(2*i+1), "GET", host, "/big"); err != nil {
				t.Fatal(err)
			}
		}
		heads, maxStreams := 0, uint32(0)
		if err := bad.readUntil(20*time.Second, func(f http2.Frame) bool {
			switch f := f.(type) {
			case *http2.SettingsFrame:
				if v, ok := f.Value(http2.SettingMaxConcurrentStreams); ok {
					maxStreams = v
				}
			case *http2.MetaHeadersFrame:
				heads++
			case *http2.DataFrame:
				t.Errorf("DATA on stream %d with a closed window", f.StreamID)
			}
			return heads == streams
		}); err != nil {
			t.Fatalf("response heads: %d of %d (%v)", heads, streams, err)
		}
		if maxStreams != streams {
			t.Errorf("SETTINGS_MAX_CONCURRENT_STREAMS: got %d, want %d", maxStreams, streams)
		}
		// Measure once every stream's upstream window is full: the origin
		// has written at least a window's worth for each (Picket's
		// transport took it in while the client reads nothing) and writes
		// no more (it made no progress over five polls).
		deadline := time.Now().Add(20 * time.Second)
		for last, still := int64(-1), 0; still < 5 && time.Now().Before(deadline); {
			time.Sleep(20 * time.Millisecond)
			w := written.Load() - w0
			if w >= streams*upstreamStreamWindow && w == last {
				still++
			} else {
				still = 0
			}
			last = w
		}
		pulled := written.Load() - w0
		if pulled < streams*upstreamStreamWindow {
			t.Fatalf("the origin wrote %d bytes, want the %d of %d full stream windows", pulled, streams*upstreamStreamWindow, streams)
		}
		// What Picket pulled from the origin for the stalled streams is
		// bounded by the stream windows (plus what sits in the origin's
		// and Picket's small buffers).
		if limit := int64(streams) * (upstreamStreamWindow + 128<<10); pulled > limit {
			t.Errorf("the origin wrote %d bytes for %d stalled streams, want at most %d", pulled, streams, limit)
		}
		g1, h1 := runtime.NumGoroutine(), heapInUse()
		t.Logf("%d stalled streams: goroutines %d -> %d, heap %.1f -> %.1f MiB, %.1f MiB pulled from the origin",
			streams, g0, g1, float64(h0)/(1<<20), float64(h1)/(1<<20), float64(pulled)/(1<<20))
		if g1-g0 > 6*streams+20 {
			t.Errorf("goroutines grew by %d for %d stalled streams, want at most %d", g1-g0, streams, 6*streams+20)
		}
		if limit := int64(streams) * (upstreamStreamWindow + 256<<10); h1-h0 > limit {
			t.Errorf("heap grew by %.1f MiB for %d stalled streams, want at most %.1f MiB", float64(h1-h0)/(1<<20), streams, float64(limit)/(1<<20))
		}

		// Meanwhile another client downloads over the same upstream
		// connection.
		fetchAll(t, good, o.URL+"/big", o.URL+"/big", o.URL+"/ok")
		// The stalled streams are still held: nothing was reset yet.
		bad.c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		if f, err := bad.fr.ReadFrame(); err == nil {
			if rst, ok := f.(*http2.RSTStreamFrame); ok {
				t.Errorf("stream %d reset before the idle timeout: %v", rst.StreamID, rst.ErrCode)
			}
		}
		bad.c.Close()
		if g := goroutinesSettle(g0+4, 10*time.Second); g > g0+4 {
			t.Errorf("goroutines after the client left: %d, want at most %d", g, g0+4)
		}
	})

	t.Run("reset after the idle timeout", func(t *testing.T) {
		tp := startInterceptingWith(t, ca, Config{HTTP2MaxStreams: streams, TunnelIdleTimeout: time.Second}, o.Certificate())
		bad := dialRawH2(t, tp, ca, host, http2.Setting{ID: http2.SettingInitialWindowSize, Val: 0})
		const n = 4
		for i := range n {
			if err := bad.request(uint32(2*i+1), "GET", host, "/big"); err != nil {
				t.Fatal(err)
			}
		}
		resets := map[uint32]bool{}
		if err := bad.readUntil(30*time.Second, func(f http2.Frame) bool {
			if rst, ok := f.(*http2.RSTStreamFrame); ok {
				resets[rst.StreamID] = true
			}
			return len(resets) == n
		}); err != nil {
			t.Fatalf("streams reset: %v of %d (%v)", resets, n, err)
		}
		for i := range n {
			_ = i
			l := tp.waitAccess(t, func(l map[string]any) bool { return l[fURL] == o.URL+"/big" && l[fComplete] == false })
			if l[fProto] != "HTTP/2.0" {
				t.Errorf("access line: got %v", l)
			}
		}
	})
}

// Rapid reset (CVE-2023-44487): a client that opens streams and resets
// them at once loses its connection long before the origin sees one
// request per stream, holds bounded goroutines meanwhile, and other clients
// are served throughout.
func TestHTTP2RapidReset(t *testing.T) {
	o, slow := misbehavingOrigin(t)
	host := strings.TrimPrefix(o.URL, "https://")
	ca := testCA(t)
	tp := startInterceptingWith(t, ca, Config{HTTP2MaxStreams: 16}, o.Certificate())
	good := h2Client(t, tp, ca)
	fetchAll(t, good, o.URL+"/ok")
	g0 := runtime.NumGoroutine()

	bad := dialRawH2(t, tp, ca, host)
	const pairs = 5000
	var maxG atomic.Int64
	go func() {
		for i := range pairs {
			id := uint32(2*i + 1)
			if bad.request(id, "GET", host, "/slow") != nil {
				return
			}
			bad.mu.Lock()
			err := bad.fr.WriteRSTStream(id, http2.ErrCodeCancel)
			bad.mu.Unlock()
			if err != nil {
				return
			}
			if g := int64(runtime.NumGoroutine()); g > maxG.Load() {
				maxG.Store(g)
			}
		}
	}()
	fetchAll(t, good, o.URL+"/ok", o.URL+"/big")
	err := bad.readUntil(20*time.Second, func(f http2.Frame) bool { return f.Header().Type == http2.FrameGoAway })
	if isTimeout(err) {
		t.Fatalf("the resetting client kept its connection: %v", err)
	}
	fetchAll(t, good, o.URL+"/ok")
	t.Logf("origin saw %d of %d streams; goroutines %d, at most %d during the attack; errors %v",
		slow.Load(), pairs, g0, maxG.Load(), tp.HTTP2Errors())
	if n := slow.Load(); n > rapidResetMin {
		t.Errorf("origin saw %d requests from %d reset streams, want at most %d", n, pairs, rapidResetMin)
	}
	if g := maxG.Load() - int64(g0); g > 6*16+20 {
		t.Errorf("goroutines grew by %d during the attack, want at most %d", g, 6*16+20)
	}
	// Either defence may end it first: x/net's queue of handlers for reset
	// streams, or h2Guard's share of reset streams.
	errs := tp.HTTP2Errors()
	if errs["rapid_reset"]+errs["conn_ENHANCE_YOUR_CALM_too_many_early_resets"] == 0 {
		t.Errorf("HTTP2Errors: got %v, want rapid_reset or too_many_early_resets counted", errs)
	}
}

// CONTINUATION floods (CVE-2023-45288 and the empty-frame variant) and a
// header block that never ends lose their connection; others are served.
func TestHTTP2HeaderBlockAbuse(t *testing.T) {
	o, _ := misbehavingOrigin(t)
	host := strings.TrimPrefix(o.URL, "https://")
	ca := testCA(t)
	tp := startInterceptingWith(t, ca, Config{ReadHeaderTimeout: time.Second}, o.Certificate())
	good := h2Client(t, tp, ca)
	fetchAll(t, good, o.URL+"/ok")
	g0 := runtime.NumGoroutine()

	for _, tc := range []struct {
		name, kind string
		frag       []byte // each CONTINUATION's fragment
		frames     int    // CONTINUATION frames to send (0: none, then silence)
	}{
		{"endless empty CONTINUATION frames", "continuation_flood", nil, 1_000_000},
		{"endless small CONTINUATION frames", "continuation_flood", []byte{0x40, 0x01, 'a', 0x01, 'b'}, 1_000_000},
		{"header block never finished", "header_timeout", nil, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := tp.HTTP2Errors()[tc.kind]
			bad := dialRawH2(t, tp, ca, host)
			bad.settle() // no frame of ours may come between HEADERS and its CONTINUATIONs
			block := bad.headerBlock("GET", host, "/ok")
			go func() {
				bad.mu.Lock()
				defer bad.mu.Unlock()
				if bad.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: block, EndStream: true}) != nil {
					return
				}
				for range tc.frames {
					if bad.fr.WriteContinuation(1, false, tc.frag) != nil {
						return
					}
				}
			}()
			err := bad.readUntil(20*time.Second, func(f http2.Frame) bool {
				if f.Header().Type == http2.FrameHeaders {
					t.Errorf("the unfinished request was answered")
				}
				return false
			})
			if isTimeout(err) {
				t.Fatalf("the connection was kept: %v", err)
			}
			t.Logf("connection ended: %v", err)
			if got := tp.HTTP2Errors()[tc.kind]; got != before+1 {
				t.Errorf("HTTP2Errors[%q]: got %d, want %d", tc.kind, got, before+1)
			}
			fetchAll(t, good, o.URL+"/ok")
		})
	}
	if g := goroutinesSettle(g0+4, 10*time.Second); g > g0+4 {
		t.Errorf("goroutines after the floods: %d, want at most %d", g, g0+4)
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// frames encodes HTTP/2 frames with the Framer, for h2Guard's tests.
func frames(t testing.TB, write func(fr *http2.Framer)) []byte {
	var b bytes.Buffer
	b.WriteString(http2.ClientPreface)
	write(http2.NewFramer(&b, nil))
	return b.Bytes()
}

func TestH2Guard(t *testing.T) {
	hdr := []byte{0x82, 0x87} // :method GET, :scheme https
	for _, tc := range []struct {
		name  string
		wire  []byte
		want  error
		block bool // still inside a header block at the end
	}{
		{"requests", frames(t, func(fr *http2.Framer) {
			fr.WriteSettings()
			for id := uint32(1); id < 400; id += 2 {
				fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: hdr, EndHeaders: true, EndStream: true})
			}
			fr.WriteData(1, true, make([]byte, 70000))
		}), nil, false},
		{"a block in three frames", frames(t, func(fr *http2.Framer) {
			fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: hdr})
			fr.WriteContinuation(1, false, hdr)
			fr.WriteContinuation(1, true, hdr)
		}), nil, false},
		{"a block left open", frames(t, func(fr *http2.Framer) {
			fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: hdr})
			fr.WriteContinuation(1, false, hdr)
		}), nil, true},
		{"empty CONTINUATION flood", frames(t, func(fr *http2.Framer) {
			fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: hdr})
			for range 66 {
				fr.WriteContinuation(1, false, nil)
			}
		}), errContinuationFlood, true},
		{"reset now and then", frames(t, func(fr *http2.Framer) {
			for id := uint32(1); id < 2000; id += 2 {
				fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: hdr, EndHeaders: true, EndStream: true})
				if id%6 == 1 {
					fr.WriteRSTStream(id, http2.ErrCodeCancel)
				}
			}
		}), nil, false},
		{"rapid reset", frames(t, func(fr *http2.Framer) {
			for id := uint32(1); id < 2000; id += 2 {
				fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: hdr, EndHeaders: true, EndStream: true})
				fr.WriteRSTStream(id, http2.ErrCodeCancel)
			}
		}), errRapidReset, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Whole, and byte by byte: frame headers split across reads.
			for _, step := range []int{len(tc.wire), 1, 7} {
				c1, c2 := net.Pipe()
				g := newH2Guard(c1, 64<<10, time.Minute)
				var err error
				for b := tc.wire; len(b) > 0 && err == nil; b = b[min(step, len(b)):] {
					err = g.scan(b[:min(step, len(b))])
				}
				c1.Close()
				c2.Close()
				if err != tc.want || g.inBlock != tc.block {
					t.Errorf("in steps of %d: got %v (in a block: %v), want %v (%v)", step, err, g.inBlock, tc.want, tc.block)
				}
			}
		})
	}
}

// Shutdown sends GOAWAY to HTTP/2 clients: a stream in flight completes,
// and the client opens no new stream on that connection.
func TestHTTP2GracefulShutdown(t *testing.T) {
	release := make(chan struct{})
	started := make(chan struct{}, 1)
	o, _ := h2Origin(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			started <- struct{}{}
			<-release
		}
		io.WriteString(w, "done")
	}))
	ca := testCA(t)
	tp := startInterceptingWith(t, ca, Config{}, o.Certificate())
	host := strings.TrimPrefix(o.URL, "https://")
	r := dialRawH2(t, tp, ca, host)
	r.settle()
	if err := r.request(1, "GET", host, "/slow"); err != nil {
		t.Fatal(err)
	}
	<-started
	shut := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		shut <- tp.Shutdown(ctx)
	}()
	var goaway *http2.GoAwayFrame
	if err := r.readUntil(10*time.Second, func(f http2.Frame) bool {
		goaway, _ = f.(*http2.GoAwayFrame)
		return goaway != nil
	}); err != nil {
		t.Fatalf("no GOAWAY after Shutdown: %v", err)
	}
	if goaway.ErrCode != http2.ErrCodeNo {
		t.Errorf("GOAWAY: got %v, want NO_ERROR", goaway.ErrCode)
	}
	close(release)
	var body []byte
	if err := r.readUntil(10*time.Second, func(f http2.Frame) bool {
		if d, ok := f.(*http2.DataFrame); ok && d.StreamID == 1 {
			body = append(body, d.Data()...)
			return d.StreamEnded()
		}
		return false
	}); err != nil || string(body) != "done" {
		t.Fatalf("the stream in flight: got %q (%v), want it completed", body, err)
	}
	if err := <-shut; err != nil {
		t.Errorf("Shutdown: %v", err)
	}
}
