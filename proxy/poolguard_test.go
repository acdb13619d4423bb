package proxy

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/picket-proxy/picket/internal/countio"
)

// responseScripts are response streams as origins send them, for the
// framing follower's table and as fuzz seeds.
var responseScripts = []struct {
	name string
	raw  string
	head bool // the answer to a HEAD
}{
	{name: "content-length", raw: "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"},
	{name: "empty content-length", raw: "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"},
	{name: "204 with content-length", raw: "HTTP/1.1 204 No Content\r\nContent-Length: 30\r\n\r\n"},
	{name: "304 with chunked", raw: "HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\n\r\n"},
	{name: "HEAD with length", raw: "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n", head: true},
	{name: "chunked", raw: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"},
	{name: "chunked with extension and trailers", raw: "HTTP/1.1 200 OK\r\nTransfer-Encoding: Chunked\r\nTrailer: X-Sum\r\n\r\n5;a=b\r\nhello\r\n3 \r\nabc\r\n0\r\nX-Sum: 42\r\n\r\n"},
	{name: "chunked wins over length", raw: "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"},
	{name: "1xx before final", raw: "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"},
	{name: "bare LF head", raw: "HTTP/1.1 200 OK\nContent-Length: 2\n\nok"},
	{name: "repeated equal lengths", raw: "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length:  3\r\n\r\nabc"},
	{name: "HTTP/1.0 ignores transfer-encoding", raw: "HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n0\r\n\r"},
	{name: "spaces around the status", raw: "HTTP/1.1  200\r\nContent-Length: 1\r\n\r\nx"},
	{name: "lower-case names", raw: "HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\nabc"},
	{name: "trailer ends with a bare LF line", raw: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nA: b\n\nX\r\n\r\n"},
	{name: "until close", raw: "HTTP/1.1 200 OK\r\n\r\nall of it"},
	{name: "switching protocols", raw: "HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n\x81\x00"},
	{name: "conflicting lengths", raw: "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nabc"},
	{name: "bare LF chunk line", raw: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\nhello\r\n0\r\n\r\n"},
	{name: "unknown coding", raw: "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nxx"},
}

// goResponseEnd reads raw as net/http's Transport does — 1xx responses
// skipped, the final response's body read to its end — and returns how many
// bytes that took. ok is false when net/http fails on raw; untilClose
// reports a body that ends with the connection, switched a 101.
func goResponseEnd(raw []byte, head bool) (end int, untilClose, switched, ok bool) {
	src := &countio.Reader{R: bytes.NewReader(raw)}
	br := bufio.NewReader(src)
	req := &http.Request{Method: http.MethodGet}
	if head {
		req.Method = http.MethodHead
	}
	for n1xx := 0; ; n1xx++ {
		resp, err := http.ReadResponse(br, req)
		if err != nil || n1xx > 5 {
			return 0, false, false, false
		}
		if resp.StatusCode >= 100 && resp.StatusCode <= 199 && resp.StatusCode != http.StatusSwitchingProtocols {
			continue
		}
		if resp.StatusCode == http.StatusSwitchingProtocols {
			return 0, false, true, true
		}
		if !head && resp.ContentLength < 0 && len(resp.TransferEncoding) == 0 &&
			resp.StatusCode != http.StatusNoContent && resp.StatusCode != http.StatusNotModified {
			return 0, true, false, true
		}
		if _, err := io.Copy(io.Discard, resp.Body); err != nil {
			return 0, false, false, false
		}
		return int(src.N) - br.Buffered(), false, false, true
	}
}

// followResponse feeds raw to the framing follower in pieces split at cuts.
func followResponse(raw []byte, head bool, cuts []int) (end int, state respState, ended bool) {
	r := respEnds{maxHead: 64 << 10, head: head}
	off := 0
	for _, cut := range append(cuts, len(raw)) {
		if cut <= off || cut > len(raw) {
			continue
		}
		e, done := r.feed(raw[off:cut])
		if done {
			return off + e, r.state, true
		}
		if r.state >= respUntilClose {
			return 0, r.state, false
		}
		off = cut
	}
	return 0, r.state, false
}

// checkResponseEnd compares the follower with net/http on raw: where
// net/http reads a whole response, the follower must end it at the same
// byte, however the bytes are split; a body that ends with the connection
// or a switch must be recognised as such.
func checkResponseEnd(t *testing.T, raw []byte, head bool, cuts []int) {
	t.Helper()
	want, untilClose, switched, ok := goResponseEnd(raw, head)
	end, state, ended := followResponse(raw, head, cuts)
	switch {
	case !ok:
		// net/http drops the connection: whatever the follower thinks,
		// nothing is reused. It must not claim an end past the input.
		if ended && end > len(raw) {
			t.Fatalf("ended at %d, past the input (%d bytes)", end, len(raw))
		}
	case switched:
		if state != respSwitched {
			t.Fatalf("101: got state %d ended=%v, want switched", state, ended)
		}
	case untilClose:
		if ended || state != respUntilClose {
			t.Fatalf("body until close: got state %d ended=%v at %d, want until-close", state, ended, end)
		}
	case !ended || end != want:
		t.Fatalf("got end %d (ended=%v, state %d), want %d as net/http reads it", end, ended, state, want)
	}
}

func TestResponseEnds(t *testing.T) {
	for _, tc := range responseScripts {
		t.Run(tc.name, func(t *testing.T) {
			raw := []byte(tc.raw + "HTTP/1.1 200 OK\r\nX-Injected: 1\r\n\r\n")
			checkResponseEnd(t, raw, tc.head, nil)
			for cut := 1; cut < len(raw); cut++ { // every two-piece split
				checkResponseEnd(t, raw, tc.head, []int{cut})
			}
			byByte := make([]int, len(raw))
			for i := range byByte {
				byByte[i] = i + 1
			}
			checkResponseEnd(t, raw, tc.head, byByte)
		})
	}
}

// FuzzResponseEnd: the guard's framing follower ends every response net/http
// reads at the byte net/http ends it, however the stream is split.
func FuzzResponseEnd(f *testing.F) {
	for _, tc := range responseScripts {
		f.Add([]byte(tc.raw+"HTTP/1.1 200 OK\r\n\r\n"), tc.head, uint64(7))
	}
	f.Fuzz(func(t *testing.T, raw []byte, head bool, seed uint64) {
		rng := rand.New(rand.NewPCG(seed, seed>>7))
		var cuts []int
		for off := 0; off < len(raw); {
			off += 1 + rng.IntN(16)
			cuts = append(cuts, off)
		}
		checkResponseEnd(t, raw, head, cuts)
	})
}

// TestRequestEnds: the follower of the requests Picket writes knows where
// each one net/http serializes ends, however the writes are split.
func TestRequestEnds(t *testing.T) {
	body := func(s string) io.Reader { return strings.NewReader(s) }
	unsized := func(s string) io.Reader { return io.MultiReader(strings.NewReader(s)) } // no length: chunked
	reqs := []*http.Request{
		httptest.NewRequest(http.MethodGet, "http://o.test/a", nil),
		httptest.NewRequest(http.MethodHead, "http://o.test/b", nil),
		httptest.NewRequest(http.MethodPost, "http://o.test/c", body("hello")),
		httptest.NewRequest(http.MethodPost, "http://o.test/d", unsized(strings.Repeat("x", 10000))),
	}
	trailer := httptest.NewRequest(http.MethodPut, "http://o.test/e", unsized("abc"))
	trailer.Trailer = http.Header{"X-Sum": {"1"}}
	reqs = append(reqs, trailer)
	for _, r := range reqs {
		r.RequestURI = ""
		if r.Body != nil && r.Body != http.NoBody {
			if _, sized := r.Body.(interface{ Len() int }); !sized {
				r.ContentLength = -1
			}
		}
		var buf bytes.Buffer
		if err := r.Write(&buf); err != nil {
			t.Fatal(err)
		}
		raw := buf.Bytes()
		for _, step := range []int{len(raw), 1, 3, 64} {
			q := reqEnds{}
			q.start()
			for off := 0; off < len(raw); off += step {
				if q.state == reqBetween {
					t.Fatalf("%s %s, writes of %d: ended at %d of %d", r.Method, r.URL, step, off, len(raw))
				}
				q.feed(raw[off:min(off+step, len(raw))])
			}
			if q.state != reqBetween {
				t.Errorf("%s %s, writes of %d: state %d after the whole request, want between requests", r.Method, r.URL, step, q.state)
			}
		}
	}
}

// guardPair is a guarded client connection and the raw server side of it,
// over real loopback TCP (and TLS when tlsOn).
type guardPair struct {
	g      *guardConn
	server net.Conn
	br     *bufio.Reader
}

func newGuardPair(t *testing.T, tlsOn bool) *guardPair {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			close(accepted)
			return
		}
		accepted <- c
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	sc := <-accepted
	tu := &turns{addr: "test"}
	below, sock := insertSock(&idleConn{Conn: c}, tu, tlsOn)
	if sock == nil {
		t.Skip("the socket cannot be watched on this platform")
	}
	p := &guardPair{server: sc}
	if !tlsOn {
		p.g = newGuardConn(below, tu, sock, nil, 1<<16)
	} else {
		ca := testCA(t)
		ts := tls.Server(sc, ca.TLSConfig("origin.test"))
		tc := tls.Client(below, &tls.Config{ServerName: "origin.test", RootCAs: poolOf(ca.Certificate())})
		errc := make(chan error, 1)
		go func() { errc <- ts.Handshake() }()
		if err := tc.Handshake(); err != nil {
			t.Fatal(err)
		}
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
		p.server = ts
		p.g = newGuardConn(tc, tu, sock, tc, 1<<16)
	}
	p.br = bufio.NewReader(p.server)
	t.Cleanup(func() { p.g.Close(); p.server.Close() })
	return p
}

// request writes a GET through the guard and reads it on the server side.
func (p *guardPair) request(t *testing.T, path string) error {
	t.Helper()
	if _, err := io.WriteString(p.g, "GET "+path+" HTTP/1.1\r\nHost: o\r\n\r\n"); err != nil {
		return err
	}
	if _, err := http.ReadRequest(p.br); err != nil {
		t.Fatalf("server: %v", err)
	}
	return nil
}

// readResponse reads one response through the guard as the Transport does.
func (p *guardPair) readResponse(t *testing.T, br *bufio.Reader) (*http.Response, string) {
	t.Helper()
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("reading the response: %v", err)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading the body: %v", err)
	}
	return resp, string(b)
}

// exchange is a first request and its whole, well-framed answer: the
// connection is idle after it.
func (p *guardPair) exchange(t *testing.T, br *bufio.Reader) {
	t.Helper()
	if err := p.request(t, "/a"); err != nil {
		t.Fatal(err)
	}
	io.WriteString(p.server, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
	p.readResponse(t, br)
}

// waitQueued waits until the guarded side's socket has bytes queued (the
// server's write has arrived), polling the guard's own peek.
func (p *guardPair) waitQueued(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		p.g.t.mu.Lock()
		err := p.g.sock.quietLocked()
		p.g.t.mu.Unlock()
		if err != nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the server's bytes never arrived")
		}
		time.Sleep(time.Millisecond)
	}
}

// TestGuardConn drives each way a guarded connection meets unsolicited
// bytes, over plain TCP and TLS: in the same read as a response's end,
// while idle with a read waiting, and queued when the next request starts.
func TestGuardConn(t *testing.T) {
	for _, tlsOn := range []bool{false, true} {
		name := "plain"
		if tlsOn {
			name = "tls"
		}
		t.Run(name+"/keep-alive", func(t *testing.T) {
			// Well-behaved responses of every framing: the connection
			// carries request after request.
			p := newGuardPair(t, tlsOn)
			br := bufio.NewReader(p.g)
			replies := []string{
				"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
				"HTTP/1.1 204 No Content\r\n\r\n",
				"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nX-T: 1\r\n\r\n",
				"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 304 Not Modified\r\n\r\n",
				"HTTP/1.1 200 OK\r\nContent-Length: 70000\r\n\r\n" + strings.Repeat("z", 70000),
			}
			for i, reply := range replies {
				if err := p.request(t, fmt.Sprint("/", i)); err != nil {
					t.Fatalf("request %d: %v", i, err)
				}
				io.WriteString(p.server, reply)
				p.readResponse(t, br)
			}
		})
		t.Run(name+"/same read", func(t *testing.T) {
			p := newGuardPair(t, tlsOn)
			if err := p.request(t, "/a"); err != nil {
				t.Fatal(err)
			}
			io.WriteString(p.server, "HTTP/1.1 204 No Content\r\nContent-Length: 30\r\n\r\nHTTP/1.1 200 OK\r\nX-Injected: 1\r\n\r\n")
			buf := make([]byte, 4096)
			var got []byte
			var err error
			for err == nil {
				var n int
				n, err = p.g.Read(buf)
				got = append(got, buf[:n]...)
			}
			if err != io.EOF || string(got) != "HTTP/1.1 204 No Content\r\nContent-Length: 30\r\n\r\n" {
				t.Fatalf("got %q, %v; want the 204 alone, then io.EOF", got, err)
			}
			if err := p.request(t, "/b"); !errors.Is(err, errUnsolicited) {
				t.Fatalf("next request: got %v, want %v", err, errUnsolicited)
			}
		})
		t.Run(name+"/while idle", func(t *testing.T) {
			p := newGuardPair(t, tlsOn)
			br := bufio.NewReader(p.g)
			p.exchange(t, br)
			// The Transport's peek at an idle connection.
			go io.WriteString(p.server, "HTTP/1.1 200 OK\r\nX-Injected: 1\r\n\r\n")
			if _, err := br.Peek(1); !errors.Is(err, errUnsolicited) {
				t.Fatalf("peek while idle: got %v, want %v", err, errUnsolicited)
			}
			if err := p.request(t, "/b"); !errors.Is(err, errUnsolicited) {
				t.Fatalf("next request: got %v, want %v", err, errUnsolicited)
			}
		})
		t.Run(name+"/queued at the next request", func(t *testing.T) {
			p := newGuardPair(t, tlsOn)
			br := bufio.NewReader(p.g)
			p.exchange(t, br)
			io.WriteString(p.server, "HTTP/1.1 200 OK\r\nX-Injected: 1\r\n\r\n")
			p.waitQueued(t)
			n, err := io.WriteString(p.g, "GET /b HTTP/1.1\r\nHost: o\r\n\r\n")
			if n != 0 || !errors.Is(err, errUnsolicited) {
				t.Fatalf("next request: wrote %d, %v; want nothing written and %v", n, err, errUnsolicited)
			}
		})
		t.Run(name+"/closed while idle", func(t *testing.T) {
			p := newGuardPair(t, tlsOn)
			br := bufio.NewReader(p.g)
			p.exchange(t, br)
			p.server.Close()
			p.waitQueued(t)
			if _, err := io.WriteString(p.g, "GET /b HTTP/1.1\r\nHost: o\r\n\r\n"); err == nil {
				t.Fatal("a request started on a connection the origin closed")
			}
		})
	}
}

// TestGuardedTransport runs real traffic through a guarded Transport to an
// httptest origin, over HTTP and HTTPS: every framing works, connections are
// reused (the guard costs no keep-alive), and an origin that sends a
// response nobody asked for never has it delivered — concurrent clients,
// hundreds of times.
func TestGuardedTransport(t *testing.T) {
	for _, run := range []struct {
		tlsOn, inline bool
	}{{false, false}, {true, false}, {false, true}, {true, true}} {
		tlsOn := run.tlsOn
		t.Run(fmt.Sprintf("tls=%v/inline=%v", tlsOn, run.inline), func(t *testing.T) {
			origin := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				b, _ := io.ReadAll(r.Body)
				switch r.URL.Path {
				case "/chunked":
					w.Header().Set("Trailer", "X-Sum")
					w.Write([]byte("abc"))
					w.(http.Flusher).Flush()
					w.Write(b)
					w.Header().Set("X-Sum", "1")
				case "/204":
					w.WriteHeader(http.StatusNoContent)
				case "/hints":
					w.Header().Set("Link", "</a.css>; rel=preload")
					w.WriteHeader(http.StatusEarlyHints)
					w.Write([]byte("final"))
				default:
					w.Header().Set("Content-Length", fmt.Sprint(len(b)+2))
					w.Write([]byte("ok"))
					w.Write(b)
				}
			}))
			if tlsOn {
				origin.StartTLS()
			} else {
				origin.Start()
			}
			defer origin.Close()
			var dials atomic.Int32
			tr := &http.Transport{MaxIdleConnsPerHost: 4, ExpectContinueTimeout: time.Second, TLSHandshakeTimeout: 5 * time.Second}
			if tlsOn {
				tr.TLSClientConfig = &tls.Config{RootCAs: poolOf(origin.Certificate())}
			}
			guardTransport(tr, func(ctx context.Context, network, addr string) (net.Conn, error) {
				dials.Add(1)
				var d net.Dialer
				return d.DialContext(ctx, network, addr)
			}, 1<<16, nil)
			defer tr.CloseIdleConnections()
			client := &http.Client{Transport: tr}
			if run.inline { // GET and HEAD in the caller's goroutine (https once learnt), the rest through tr
				ic := testInline(tr, 4)
				defer ic.CloseIdleConnections()
				client.Transport = ic
			}
			for i := range 20 {
				for _, m := range []struct{ method, path, body string }{
					{"GET", "/", ""}, {"HEAD", "/", ""}, {"POST", "/", "data"}, {"GET", "/chunked", ""},
					{"POST", "/chunked", strings.Repeat("q", 9000)}, {"GET", "/204", ""}, {"GET", "/hints", ""},
				} {
					req, _ := http.NewRequest(m.method, origin.URL+m.path, strings.NewReader(m.body))
					if m.body == "" {
						req.Body = http.NoBody
					}
					if m.method == "POST" && i%2 == 1 {
						req.Header.Set("Expect", "100-continue")
					}
					resp, err := client.Do(req)
					if err != nil {
						t.Fatalf("%s %s: %v", m.method, m.path, err)
					}
					b, err := io.ReadAll(resp.Body)
					resp.Body.Close()
					if err != nil {
						t.Fatalf("%s %s: body: %v", m.method, m.path, err)
					}
					if m.path == "/chunked" && (string(b) != "abc"+m.body || resp.Trailer.Get("X-Sum") != "1") {
						t.Fatalf("%s %s: got %q trailer %v", m.method, m.path, b, resp.Trailer)
					}
				}
			}
			if n := dials.Load(); n > 2 && sockWatched {
				t.Errorf("dialled %d connections for 140 sequential requests, want 1 (keep-alive; 2 with the inline client)", n)
			}
		})
	}
}

// injection is how an origin follows its answer with a response nobody
// asked for.
type injection struct {
	name   string
	answer string // what the request gets
	split  bool   // the injected response in a second write
	// turns: the next request waits until the origin has written the
	// injected bytes (they were sent while no request was outstanding);
	// otherwise the clients send when they like.
	turns bool
}

var injections = []injection{
	{name: "204 announcing a body, one write", answer: "HTTP/1.1 204 No Content\r\nContent-Length: 30\r\n\r\n"},
	{name: "204 announcing a body, two writes", answer: "HTTP/1.1 204 No Content\r\nContent-Length: 30\r\n\r\n", split: true},
	{name: "short Content-Length, one write", answer: "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"},
	{name: "short Content-Length, two writes", answer: "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", split: true, turns: true},
	{name: "HEAD answered with a body, two writes", answer: "HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n", split: true, turns: true},
}

// TestGuardedTransportInjection: an origin follows each answer with a
// response nobody asked for while two clients take turns on one pooled
// connection (HTTP and HTTPS). Over hundreds of rounds no client ever gets
// the injected response, and every GET gets its real answer (the Transport
// retries on a new connection when the guard refuses a dirty one).
func TestGuardedTransportInjection(t *testing.T) {
	for _, run := range []struct {
		tlsOn, inline bool
	}{{false, false}, {true, false}, {false, true}, {true, true}} {
		tlsOn := run.tlsOn
		for _, inj := range injections {
			t.Run(fmt.Sprintf("tls=%v/inline=%v/%s", tlsOn, run.inline, inj.name), func(t *testing.T) {
				origin, written := startInjectingOrigin(t, tlsOn, inj)
				tr := &http.Transport{MaxIdleConnsPerHost: 1}
				if tlsOn {
					tr.TLSClientConfig = &tls.Config{InsecureSkipVerify: true}
				}
				guardTransport(tr, (&net.Dialer{}).DialContext, 1<<16, nil)
				defer tr.CloseIdleConnections()
				var rt http.RoundTripper = tr
				if run.inline {
					ic := testInline(tr, 1)
					defer ic.CloseIdleConnections()
					if tlsOn {
						ic.learnH1(origin) // as the Transport's first answer would
					}
					rt = ic
				}
				scheme, method := "http", http.MethodGet
				if tlsOn {
					scheme = "https"
				}
				if strings.HasPrefix(inj.name, "HEAD") {
					method = http.MethodHead
				}
				var (
					wg               sync.WaitGroup
					turn             sync.Mutex // inj.turns: one request at a time
					injected, failed atomic.Int32
				)
				const rounds = 150
				for client := range 2 {
					wg.Add(1)
					go func() {
						defer wg.Done()
						for i := range rounds {
							if inj.turns {
								turn.Lock()
							}
							req, _ := http.NewRequest(method, fmt.Sprintf("%s://%s/%d/%d", scheme, origin, client, i), nil)
							resp, err := rt.RoundTrip(req)
							if err == nil {
								io.Copy(io.Discard, resp.Body)
								resp.Body.Close()
							}
							if inj.turns {
								<-written // the injected bytes left the origin before the next request
								turn.Unlock()
							}
							switch {
							case err != nil:
								failed.Add(1)
								t.Logf("%s %d/%d: %v", method, client, i, err)
							case resp.Header.Get("X-Injected") != "":
								injected.Add(1)
							}
						}
					}()
				}
				wg.Wait()
				if n := injected.Load(); n > 0 {
					t.Errorf("%d of %d requests got the response the origin sent after another's answer", n, 2*rounds)
				}
				if n := failed.Load(); n > 0 {
					t.Errorf("%d of %d requests failed; the Transport retries them on a new connection", n, 2*rounds)
				}
			})
		}
	}
}

// startInjectingOrigin answers every request with inj.answer followed by an
// unsolicited 200 (X-Injected), in one write or two; written gets a value
// once both are written.
func startInjectingOrigin(t *testing.T, tlsOn bool, inj injection) (addr string, written chan struct{}) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if tlsOn {
		ln = tls.NewListener(ln, testCA(t).TLSConfig("127.0.0.1"))
	}
	written = make(chan struct{}, 1000)
	var conns sync.WaitGroup
	accepting := make(chan struct{})
	t.Cleanup(func() { ln.Close(); <-accepting; conns.Wait() })
	const injected = "HTTP/1.1 200 OK\r\nX-Injected: 1\r\nContent-Length: 0\r\n\r\n"
	go func() {
		defer close(accepting)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns.Add(1)
			go func() {
				defer conns.Done()
				defer c.Close()
				br := bufio.NewReader(c)
				for {
					if _, err := http.ReadRequest(br); err != nil {
						return
					}
					if inj.split {
						io.WriteString(c, inj.answer)
						io.WriteString(c, injected)
					} else {
						io.WriteString(c, inj.answer+injected)
					}
					written <- struct{}{}
				}
			}()
		}
	}()
	return ln.Addr().String(), written
}

// TestGuardKeepsHTTP2AndUpgrades: with the upstream TLS handshake done by
// the guard's dialer, an origin that offers HTTP/2 still gets it, and a
// WebSocket upgrade to that origin still goes over HTTP/1.1 (a connection of
// its own, h2 left out of ALPN), as with the Transport's own dial.
func TestGuardKeepsHTTP2AndUpgrades(t *testing.T) {
	origin := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/ws" {
			io.WriteString(w, r.Proto)
			return
		}
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		typ, msg, err := c.Read(r.Context())
		if err == nil {
			c.Write(r.Context(), typ, append([]byte(r.Proto+":"), msg...))
		}
	}))
	origin.EnableHTTP2 = true
	origin.StartTLS()
	defer origin.Close()
	_, c := startIntercepting(t, testCA(t), origin.Certificate())

	resp, err := c.Get(origin.URL + "/proto")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "HTTP/2.0" {
		t.Errorf("the origin saw %q, want HTTP/2.0", b)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, strings.Replace(origin.URL, "https://", "wss://", 1)+"/ws", &websocket.DialOptions{HTTPClient: c})
	if err != nil {
		t.Fatalf("wss through interception to an HTTP/2 origin: %v", err)
	}
	defer ws.CloseNow()
	ws.Write(ctx, websocket.MessageText, []byte("hi"))
	if _, got, err := ws.Read(ctx); err != nil || string(got) != "HTTP/1.1:hi" {
		t.Fatalf("got %q (%v), want %q", got, err, "HTTP/1.1:hi")
	}
}

// recordEnds follows TLS records however the bytes are cut into reads: a
// header split over reads, several records in one read, a read ending in
// the next record's header. After every read it knows whether it stopped
// mid-record, and it reports a record end exactly when one was passed.
func TestRecordEndsAcrossReads(t *testing.T) {
	var stream []byte
	boundary := map[int]bool{0: true}
	for _, n := range []int{300, 0, 1, 16384, 7, 2} {
		stream = append(stream, 23, 3, 3, byte(n>>8), byte(n))
		stream = append(stream, make([]byte, n)...)
		boundary[len(stream)] = true
	}
	for _, cut := range []int{1, 2, 3, 5, 6, 301, 4096, 16389, len(stream)} {
		var r recordEnds
		last := 0 // the last boundary passed
		for off := 0; off < len(stream); {
			n := min(cut, len(stream)-off)
			ended := r.advance(stream[off : off+n])
			passed := false
			for b := off + 1; b <= off+n; b++ {
				if boundary[b] {
					passed, last = true, b
				}
			}
			off += n
			if ended != passed {
				t.Fatalf("cut %d, at %d: ended %v, want %v", cut, off, ended, passed)
			}
			if r.mid() == boundary[off] {
				t.Fatalf("cut %d, at %d (last record end %d): mid %v", cut, off, last, r.mid())
			}
		}
	}
}
