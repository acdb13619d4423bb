package proxy

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// This file is the hardening suite: hostile and broken peers on both
// sides of the proxy, driven over raw sockets. Every case states the bytes a
// client sends, what a recording origin does, and the outcome: the status
// lines the client gets, whether the proxy closes the connection, how many
// requests reached the origin, and that every client connection the proxy
// held is released afterwards.

// hardeningTimeout is the one short timeout every hardening proxy is
// configured with; outcomes are bounded by a small multiple of it.
const hardeningTimeout = 800 * time.Millisecond

// repeatTimeout replaces hardeningTimeout for the cases run hundreds of
// times (the desync races), whose origin answers at once: no outcome there
// depends on a timeout, and on a loaded machine one slow round in 300 (a
// loopback dial or an answer taking over 800 ms, seen at load average 11
// on 2 cores) would otherwise fail the case with a 504 the race has
// nothing to do with.
const repeatTimeout = 10 * time.Second

// hardeningCase is one raw-socket case. In raw and reply, ORIGIN stands for
// the recording origin's host:port.
type hardeningCase struct {
	name string
	raw  string // bytes the client sends
	// trickle sends raw one byte every trickle instead of in one write
	// (slowloris); the proxy may close the connection before the end.
	trickle time.Duration
	// converse, if set, replaces sending raw and reading the responses: it
	// drives the exchange itself over c and br.
	converse func(t *testing.T, c net.Conn, br *bufio.Reader)

	// reply is what the origin answers to every request, raw; "" answers
	// "echo:<path>:<body>" with keep-alive. With hang the origin keeps the
	// connection open after reply (or without replying at all).
	reply string
	hang  bool
	// intercept starts the proxy with interception of every CONNECT.
	intercept bool
	// repeat runs the exchange this many times against the same proxy and
	// origin (a race that came back would fail within the run).
	repeat int

	// want are the final status codes expected, in order: one code each,
	// the one that is right; nil expects no response at all. 1xx responses
	// are skipped.
	want []string
	// body, if set, is a substring of the last response's body.
	body string
	// truncated expects the last response's body to end in an error, or
	// the connection to close before its status line: either way the client
	// can tell the download failed; never a clean end.
	truncated bool
	// closed expects the proxy to close the connection once the responses
	// are read, within within (default 2s).
	closed bool
	within time.Duration
	// forwarded is how many complete requests the origin must receive; -1
	// does not check.
	forwarded int
	// check runs extra assertions on what the client and the origin got.
	check func(t *testing.T, got *hardeningResult)
}

// hardeningResult is what a case produced.
type hardeningResult struct {
	responses []*http.Response
	bodies    []string
	origin    []originRequest
}

// hardeningCases is the table: the bytes a client or an upstream sends, and
// the status, closing and forwarding the proxy must show.
func hardeningCases() []hardeningCase {
	const post = "POST http://ORIGIN/echo HTTP/1.1\r\nHost: ORIGIN\r\n"
	smuggled := "GET http://ORIGIN/smuggled HTTP/1.1\r\nHost: ORIGIN\r\n\r\n"
	return []hardeningCase{
		// 1. Smuggling and desync on the client side: 400, closed, nothing
		// forwarded.
		{name: "duplicate Content-Length differing", raw: post + "Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!" + smuggled,
			want: []string{"400"}, closed: true, forwarded: 0},
		{name: "comma-joined Content-Length", raw: post + "Content-Length: 5, 5\r\n\r\nhello" + smuggled,
			want: []string{"400"}, closed: true, forwarded: 0},
		// A final coding other than chunked leaves the length unknown:
		// 400 and close (RFC 9112 §6.3).
		{name: "Transfer-Encoding xchunked", raw: post + "Transfer-Encoding: xchunked\r\n\r\n0\r\n\r\n" + smuggled,
			want: []string{"400"}, closed: true, forwarded: 0},
		// "chunked " with trailing whitespace is plain chunked (RFC 9110
		// §5.5 strips OWS): the proxy reads it as chunked and frames the
		// request anew upstream, so the two hops cannot disagree.
		{name: "Transfer-Encoding with trailing whitespace", raw: post + "Transfer-Encoding: chunked \r\nConnection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
			want: []string{"200"}, body: "echo:/echo:hello", closed: true, forwarded: 1},
		{name: "Transfer-Encoding chunked twice", raw: post + "Transfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n" + smuggled,
			want: []string{"400"}, closed: true, forwarded: 0},
		// Well framed, but a coding Picket does not implement (RFC 9110
		// §15.6.2).
		{name: "Transfer-Encoding gzip then chunked", raw: post + "Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n" + smuggled,
			want: []string{"501"}, closed: true, forwarded: 0},
		{name: "NUL in header value", raw: "GET http://ORIGIN/ HTTP/1.1\r\nHost: ORIGIN\r\nX-A: a\x00b\r\n\r\n",
			want: []string{"400"}, closed: true, forwarded: 0},
		{name: "control byte in header value", raw: "GET http://ORIGIN/ HTTP/1.1\r\nHost: ORIGIN\r\nX-A: a\x01b\r\n\r\n",
			want: []string{"400"}, closed: true, forwarded: 0},
		{name: "control byte in header name", raw: "GET http://ORIGIN/ HTTP/1.1\r\nHost: ORIGIN\r\nX\x01A: a\r\n\r\n",
			want: []string{"400"}, closed: true, forwarded: 0},
		{name: "space before colon", raw: "GET http://ORIGIN/ HTTP/1.1\r\nHost: ORIGIN\r\nContent-Length : 5\r\n\r\nhello",
			want: []string{"400"}, closed: true, forwarded: 0},
		{name: "CR without LF in header", raw: "GET http://ORIGIN/ HTTP/1.1\r\nHost: ORIGIN\r\nX-A: a\rX-B: b\r\n\r\n",
			want: []string{"400"}, closed: true, forwarded: 0},
		{name: "bare LF in chunk size line", raw: post + "Transfer-Encoding: chunked\r\n\r\n5\nhello\r\n0\r\n\r\n",
			want: []string{"400"}, closed: true, forwarded: 0},
		{name: "missing Host", raw: "GET http://ORIGIN/ HTTP/1.1\r\n\r\n",
			want: []string{"400"}, closed: true, forwarded: 0},
		{name: "two Host headers", raw: "GET http://ORIGIN/ HTTP/1.1\r\nHost: ORIGIN\r\nHost: other.test\r\n\r\n",
			want: []string{"400"}, closed: true, forwarded: 0},
		{name: "malformed request line", raw: "GET http://ORIGIN/ HTTP/1.1 extra\r\nHost: ORIGIN\r\n\r\n",
			want: []string{"400"}, closed: true, forwarded: 0},
		{name: "HTTP/2 preface on the proxy port", raw: "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
			want: []string{"505"}, closed: true, forwarded: 0},

		// 1. Sizes.
		{name: "oversized headers", raw: "GET http://ORIGIN/ HTTP/1.1\r\nHost: ORIGIN\r\nX-Big: " + strings.Repeat("a", 16<<10) + "\r\n\r\n",
			want: []string{"431"}, closed: true, forwarded: 0},
		{name: "too many headers", raw: "GET http://ORIGIN/ HTTP/1.1\r\nHost: ORIGIN\r\n" + strings.Repeat("X-N: 1\r\n", 2000) + "\r\n",
			want: []string{"431"}, closed: true, forwarded: 0},

		// 1. Request targets.
		{name: "absolute form: the URL wins over Host", raw: "GET http://ORIGIN/where HTTP/1.1\r\nHost: evil.test:81\r\nConnection: close\r\n\r\n",
			want: []string{"200"}, body: "echo:/where:", closed: true, forwarded: 1,
			check: func(t *testing.T, got *hardeningResult) {
				if h := got.origin[0].host; strings.Contains(h, "evil") {
					t.Errorf("origin saw Host %q, want the URL's authority", h)
				}
			}},
		{name: "CONNECT with a path", raw: "CONNECT ORIGIN/x HTTP/1.1\r\nHost: ORIGIN\r\n\r\n", want: []string{"400"}, forwarded: 0},
		{name: "CONNECT without port", raw: "CONNECT example.test HTTP/1.1\r\nHost: example.test\r\n\r\n", want: []string{"400"}, forwarded: 0},
		{name: "CONNECT port 0", raw: "CONNECT example.test:0 HTTP/1.1\r\nHost: example.test:0\r\n\r\n", want: []string{"400"}, forwarded: 0},
		{name: "CONNECT port 65536", raw: "CONNECT example.test:65536 HTTP/1.1\r\nHost: example.test:65536\r\n\r\n", want: []string{"400"}, forwarded: 0},
		{name: "CONNECT port 99999999999", raw: "CONNECT example.test:99999999999 HTTP/1.1\r\nHost: x\r\n\r\n", want: []string{"400"}, forwarded: 0},
		{name: "CONNECT port +443", raw: "CONNECT example.test:+443 HTTP/1.1\r\nHost: x\r\n\r\n", want: []string{"400"}, forwarded: 0},
		{name: "CONNECT with userinfo", raw: "CONNECT user:pw@ORIGIN HTTP/1.1\r\nHost: ORIGIN\r\n\r\n", want: []string{"400"}, forwarded: 0},
		{name: "CONNECT to a URL", raw: "CONNECT http://ORIGIN/ HTTP/1.1\r\nHost: ORIGIN\r\n\r\n", want: []string{"400"}, forwarded: 0},
		// The same port check on an absolute-form URL: a client's error,
		// not an upstream failure (502).
		{name: "absolute URL with port 0", raw: "GET http://127.0.0.1:0/ HTTP/1.1\r\nHost: 127.0.0.1:0\r\n\r\n", want: []string{"400"}, forwarded: 0},
		{name: "absolute URL with port 99999", raw: "GET http://127.0.0.1:99999/ HTTP/1.1\r\nHost: 127.0.0.1:99999\r\n\r\n", want: []string{"400"}, forwarded: 0},
		{name: "absolute URL with port 99999, net/http path", raw: "POST http://127.0.0.1:99999/ HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\na",
			want: []string{"400"}, forwarded: 0},

		// 1. Well-formed but less common clients.
		{name: "Expect: 100-continue", forwarded: 1, converse: func(t *testing.T, c net.Conn, br *bufio.Reader) {
			write(t, c, post+"Content-Length: 5\r\nExpect: 100-continue\r\n\r\n")
			if line := readLine(t, br); !strings.Contains(line, "100") {
				t.Fatalf("before the body: got %q, want 100 Continue", line)
			}
			for line := readLine(t, br); line != ""; line = readLine(t, br) {
			}
			write(t, c, "hello")
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != 200 || string(b) != "echo:/echo:hello" {
				t.Errorf("got %d %q, want 200 echo:/echo:hello", resp.StatusCode, b)
			}
		}},
		{name: "HTTP/1.0 client, close-delimited upstream body", raw: "GET http://ORIGIN/ HTTP/1.0\r\n\r\n",
			reply: "HTTP/1.0 200 OK\r\n\r\nall of it", want: []string{"200"}, body: "all of it", closed: true, forwarded: 1,
			check: func(t *testing.T, got *hardeningResult) {
				if te := got.responses[0].TransferEncoding; len(te) > 0 {
					t.Errorf("HTTP/1.0 client got Transfer-Encoding %v, want none", te)
				}
			}},
		{name: "pipelined requests answered in order",
			raw: "GET http://ORIGIN/one HTTP/1.1\r\nHost: ORIGIN\r\n\r\n" +
				"POST http://ORIGIN/two HTTP/1.1\r\nHost: ORIGIN\r\nContent-Length: 3\r\n\r\nabc" +
				"GET http://ORIGIN/three HTTP/1.1\r\nHost: ORIGIN\r\nConnection: close\r\n\r\n",
			want: []string{"200", "200", "200"}, closed: true, forwarded: 3,
			check: func(t *testing.T, got *hardeningResult) {
				want := []string{"echo:/one:", "echo:/two:abc", "echo:/three:"}
				for i, b := range got.bodies {
					if b != want[i] {
						t.Errorf("response %d: got %q, want %q", i, b, want[i])
					}
				}
			}},

		// 1. Upstream protocol abuse.
		{name: "upstream conflicting Content-Length", raw: "GET http://ORIGIN/ HTTP/1.1\r\nHost: ORIGIN\r\n\r\n",
			reply: "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 12\r\n\r\nok", want: []string{"502"}, forwarded: 1},
		{name: "upstream CL and TE: chunked wins, CL dropped", raw: "GET http://ORIGIN/ HTTP/1.1\r\nHost: ORIGIN\r\n\r\n",
			reply: "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
			want:  []string{"200"}, forwarded: 1,
			check: func(t *testing.T, got *hardeningResult) {
				r := got.responses[0]
				if got.bodies[0] != "hello" || r.Header.Get("Content-Length") != "" {
					t.Errorf("got body %q with Content-Length %q, want hello and no Content-Length", got.bodies[0], r.Header.Get("Content-Length"))
				}
			}},
		{name: "upstream oversized headers", raw: "GET http://ORIGIN/ HTTP/1.1\r\nHost: ORIGIN\r\n\r\n",
			reply: "HTTP/1.1 200 OK\r\nX-Big: " + strings.Repeat("b", 16<<10) + "\r\nContent-Length: 2\r\n\r\nok", want: []string{"502"}, forwarded: 1},
		{name: "upstream invalid status line", raw: "GET http://ORIGIN/ HTTP/1.1\r\nHost: ORIGIN\r\n\r\n",
			reply: "HTTP/1.1 abc Fine\r\nContent-Length: 2\r\n\r\nok", want: []string{"502"}, forwarded: 1},
		{name: "upstream not HTTP", raw: "GET http://ORIGIN/ HTTP/1.1\r\nHost: ORIGIN\r\n\r\n",
			reply: "SSH-2.0-OpenSSH_9.6\r\n", want: []string{"502"}, forwarded: 1},
		{name: "upstream NUL in header", raw: "GET http://ORIGIN/ HTTP/1.1\r\nHost: ORIGIN\r\n\r\n",
			reply: "HTTP/1.1 200 OK\r\nX-A: a\x00b\r\nContent-Length: 2\r\n\r\nok", want: []string{"502"}, forwarded: 1},
		{name: "upstream closes mid-body (Content-Length)", raw: "GET http://ORIGIN/file.bin HTTP/1.1\r\nHost: ORIGIN\r\n\r\n",
			reply: "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly ten b", want: []string{"200"}, truncated: true, closed: true, forwarded: 1},
		{name: "upstream closes mid-body (chunked)", raw: "GET http://ORIGIN/file.bin HTTP/1.1\r\nHost: ORIGIN\r\n\r\n",
			reply: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\na\r\nonly ten b\r\n", want: []string{"200"}, truncated: true, closed: true, forwarded: 1},
		{name: "upstream invalid chunk size mid-body", raw: "GET http://ORIGIN/file.bin HTTP/1.1\r\nHost: ORIGIN\r\n\r\n",
			reply: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\na\r\nonly ten b\r\nzz\r\n", hang: true,
			want: []string{"200"}, truncated: true, closed: true, forwarded: 1},
		{name: "upstream 1xx before the final response", raw: "GET http://ORIGIN/ HTTP/1.1\r\nHost: ORIGIN\r\n\r\n",
			reply: "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfinal",
			want:  []string{"200"}, body: "final", forwarded: 1},
		{name: "upstream trailers", raw: "GET http://ORIGIN/ HTTP/1.1\r\nHost: ORIGIN\r\n\r\n",
			reply: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sum\r\n\r\n5\r\nhello\r\n0\r\nX-Sum: 42\r\n\r\n",
			want:  []string{"200"}, body: "hello", forwarded: 1},
		// An upgrade offered on a final response (Apache's mod_http2 sends
		// "Upgrade: h2,h2c" with every HTTP/1.1 answer) is about the
		// origin's connection to Picket: the client does not get it.
		{name: "upstream offers an upgrade on a 200", raw: "GET http://ORIGIN/ HTTP/1.1\r\nHost: ORIGIN\r\n\r\n",
			reply: answerUpgradeOffer, want: []string{"200"}, body: "ok", forwarded: 1, check: noUpgradeOffer},
		{name: "upstream offers an upgrade on a 200, net/http path", raw: "POST http://ORIGIN/ HTTP/1.1\r\nHost: ORIGIN\r\nContent-Length: 1\r\n\r\na",
			reply: answerUpgradeOffer, want: []string{"200"}, body: "ok", forwarded: 1, check: noUpgradeOffer},
		// A response nobody asked for never reaches a request: an origin
		// that follows its answer with a smuggled 200 (in the same write or
		// a second one), for the next request on the client's connection
		// and for another client's on the pooled upstream connection, on
		// the fast path and on net/http's. Each case runs hundreds of
		// rounds against one proxy: the race this guards against
		// (golang/go#31259, poolguard.go) would come back within the run.
		{name: "upstream 204 with a body", raw: "GET http://ORIGIN/a HTTP/1.1\r\nHost: ORIGIN\r\n\r\nGET http://ORIGIN/b HTTP/1.1\r\nHost: ORIGIN\r\n\r\n",
			reply: answer204 + injected, want: []string{"204", "204"}, forwarded: 2, repeat: 300, check: notInjected},
		{name: "upstream 204 with a body in a second write", raw: "GET http://ORIGIN/a HTTP/1.1\r\nHost: ORIGIN\r\n\r\nGET http://ORIGIN/b HTTP/1.1\r\nHost: ORIGIN\r\n\r\n",
			reply: answer204 + writeBreak + injected, want: []string{"204", "204"}, forwarded: 2, repeat: 300, check: notInjected},
		{name: "upstream 204 with a body, net/http path", raw: "POST http://ORIGIN/a HTTP/1.1\r\nHost: ORIGIN\r\nContent-Length: 1\r\n\r\naPOST http://ORIGIN/b HTTP/1.1\r\nHost: ORIGIN\r\nContent-Length: 1\r\n\r\nb",
			reply: answer204 + injected, want: []string{"204", "204"}, forwarded: 2, repeat: 300, check: notInjected},
		{name: "two clients, one pooled connection: 204 with a body", reply: answer204 + injected,
			forwarded: 2, repeat: 300, converse: twoClients("GET", answer204, false)},
		{name: "two clients, one pooled connection: 204 with a body in a second write", reply: answer204 + writeBreak + injected,
			forwarded: 2, repeat: 300, converse: twoClients("GET", answer204, false)},
		{name: "two clients, one pooled connection: short Content-Length", reply: answerShort + injected,
			forwarded: 2, repeat: 300, converse: twoClients("GET", answerShort, false)},
		// In a second write: the next request waits until the origin has
		// written it (a byte that arrives after the next request started
		// is, as far as the wire shows, that request's answer).
		{name: "two clients, one pooled connection: short Content-Length in a second write", reply: answerShort + writeBreak + injected,
			forwarded: 2, repeat: 300, converse: twoClients("GET", answerShort, true)},
		{name: "two clients, one pooled connection, net/http path", reply: answerShort + writeBreak + injected,
			forwarded: -1, repeat: 300, converse: twoClients("POST", answerShort, true)},

		// 2. Slow and greedy peers, each bounded by the configured timeout.
		{name: "slowloris on request headers", raw: "GET http://ORIGIN/ HTTP/1.1\r\nHost: ORIGIN\r\nX-Slow: " + strings.Repeat("a", 200) + "\r\n\r\n",
			trickle: 50 * time.Millisecond, want: nil, closed: true, within: 4 * hardeningTimeout, forwarded: 0},
		{name: "slowloris on the request body", forwarded: 0,
			converse: func(t *testing.T, c net.Conn, br *bufio.Reader) {
				start := time.Now()
				go sendRaw(t, c, post+"Content-Length: 100\r\n\r\n"+strings.Repeat("b", 100), 2*hardeningTimeout)
				expectClosed(t, c, br, 8*hardeningTimeout-time.Since(start))
			}},
		{name: "silent client after connecting", raw: "", want: nil, closed: true, within: 4 * hardeningTimeout, forwarded: 0},
		{name: "idle keep-alive client", raw: "GET http://ORIGIN/ HTTP/1.1\r\nHost: ORIGIN\r\n\r\n",
			want: []string{"200"}, closed: true, within: 4 * hardeningTimeout, forwarded: 1},
		{name: "upstream accepts and never answers", raw: "GET http://ORIGIN/ HTTP/1.1\r\nHost: ORIGIN\r\n\r\n",
			hang: true, want: []string{"504"}, within: 4 * hardeningTimeout, forwarded: 1},
		{name: "upstream stalls mid-body", raw: "GET http://ORIGIN/file.bin HTTP/1.1\r\nHost: ORIGIN\r\n\r\n",
			reply: "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly ten b", hang: true,
			want: []string{"200"}, truncated: true, closed: true, within: 6 * hardeningTimeout, forwarded: 1},
		{name: "upstream TLS handshake never finishes", raw: "GET https://ORIGIN/ HTTP/1.1\r\nHost: ORIGIN\r\n\r\n",
			hang: true, want: []string{"504"}, within: 4 * hardeningTimeout, forwarded: -1},
		{name: "intercepted: client TLS handshake never finishes", intercept: true,
			converse: func(t *testing.T, c net.Conn, br *bufio.Reader) {
				write(t, c, "CONNECT ORIGIN HTTP/1.1\r\nHost: ORIGIN\r\n\r\n")
				if line := readLine(t, br); !strings.Contains(line, "200") {
					t.Fatalf("CONNECT: got %q, want 200", line)
				}
				readLine(t, br)
				// A TLS record header announcing a ClientHello that never comes.
				write(t, c, "\x16\x03\x01\x02\x00\x01\x00\x01")
				expectClosed(t, c, br, 4*hardeningTimeout)
			}, forwarded: 0},
		{name: "intercepted: upstream TLS handshake never finishes", intercept: true, hang: true,
			converse: func(t *testing.T, c net.Conn, br *bufio.Reader) {
				tc := connectTLS(t, c, br)
				start := time.Now()
				write(t, tc, "GET / HTTP/1.1\r\nHost: ORIGIN\r\n\r\n")
				resp, err := http.ReadResponse(bufio.NewReader(tc), nil)
				if err != nil {
					t.Fatalf("inside the tunnel: %v", err)
				}
				resp.Body.Close()
				if resp.StatusCode != 504 {
					t.Errorf("status: got %d, want 504", resp.StatusCode)
				}
				if took := time.Since(start); took > 4*hardeningTimeout {
					t.Errorf("took %v, want under %v", took, 4*hardeningTimeout)
				}
			}, forwarded: -1},
		{name: "intercepted: idle inside the tunnel", intercept: true,
			converse: func(t *testing.T, c net.Conn, br *bufio.Reader) {
				tc := connectTLS(t, c, br)
				expectClosed(t, tc, bufio.NewReader(tc), 4*hardeningTimeout)
			}, forwarded: 0},
		{name: "tunnel idle in both directions", hang: true,
			converse: func(t *testing.T, c net.Conn, br *bufio.Reader) {
				write(t, c, "CONNECT ORIGIN HTTP/1.1\r\nHost: ORIGIN\r\n\r\n")
				if line := readLine(t, br); !strings.Contains(line, "200") {
					t.Fatalf("CONNECT: got %q, want 200", line)
				}
				readLine(t, br)
				expectClosed(t, c, br, 4*hardeningTimeout)
			}, forwarded: -1},
		{name: "invalid chunk size", raw: post + "Transfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
			want: []string{"400"}, closed: true, forwarded: 0},
		{name: "chunk size overflow", raw: post + "Transfer-Encoding: chunked\r\n\r\n1ffffffffffffffff\r\nhello\r\n0\r\n\r\n",
			want: []string{"400"}, closed: true, forwarded: 0},
		{name: "slow-reading client", converse: func(t *testing.T, c net.Conn, br *bufio.Reader) {
			write(t, c, "GET http://ORIGIN/big HTTP/1.1\r\nHost: ORIGIN\r\n\r\n")
			// Read nothing: the proxy must give up on us within the timeout
			// once its buffers are full.
			start := time.Now()
			oc := c.(*originConn)
			for oc.openConns() != 0 {
				if time.Since(start) > 10*hardeningTimeout {
					t.Errorf("the proxy still holds the connection of a client that reads nothing after %v", time.Since(start))
					return
				}
				time.Sleep(20 * time.Millisecond)
			}
		}, reply: "BIG", forwarded: -1}, // under load the origin may see it late; the point is the release
		{name: "Expect: 100-continue and the upstream never answers", hang: true, forwarded: -1,
			converse: func(t *testing.T, c net.Conn, br *bufio.Reader) {
				// The upstream never answers: the client gets 504 within the
				// bound (a 100 Continue first is allowed: it is interim).
				start := time.Now()
				write(t, c, post+"Content-Length: 5\r\nExpect: 100-continue\r\n\r\n")
				_ = c.SetReadDeadline(start.Add(8 * hardeningTimeout))
				for {
					resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodPost})
					if err != nil {
						t.Fatalf("got %v after %v, want 504 within %v", err, time.Since(start), 8*hardeningTimeout)
					}
					if resp.StatusCode == http.StatusContinue {
						continue
					}
					if resp.StatusCode != http.StatusGatewayTimeout {
						t.Fatalf("got %d after %v, want 504", resp.StatusCode, time.Since(start))
					}
					break
				}
			}},
		// Refused by the framing guard (framing.go) before net/http sees them.
		{name: "CL and TE together", raw: post + "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + smuggled,
			want: []string{"400"}, closed: true, forwarded: 0},
		{name: "Transfer-Encoding folded", raw: post + "Transfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n" + smuggled,
			want: []string{"400"}, closed: true, forwarded: 0},
		{name: "Transfer-Encoding on HTTP/1.0", raw: "POST http://ORIGIN/echo HTTP/1.0\r\nHost: ORIGIN\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + smuggled,
			want: []string{"400"}, closed: true, forwarded: 0},
		{name: "obsolete line folding", raw: "GET http://ORIGIN/ HTTP/1.1\r\nHost: ORIGIN\r\nX-Folded: a\r\n b\r\n\r\n",
			want: []string{"400"}, closed: true, forwarded: 0},
		{name: "duplicate Content-Length, same value", raw: post + "Content-Length: 5\r\nContent-Length: 5\r\n\r\nhello" + smuggled,
			want: []string{"400"}, closed: true, forwarded: 0},
		{name: "bare LF line endings", raw: "GET http://ORIGIN/ HTTP/1.1\nHost: ORIGIN\nX-A: 1\n\n",
			want: []string{"400"}, closed: true, forwarded: 0},
		{name: "oversized request line", raw: "GET http://ORIGIN/" + strings.Repeat("a", 8<<10) + " HTTP/1.1\r\nHost: ORIGIN\r\n\r\n",
			want: []string{"414"}, closed: true, forwarded: 0},
		{name: "many small headers within the byte limit", raw: "GET http://ORIGIN/ HTTP/1.1\r\nHost: ORIGIN\r\n" + strings.Repeat("a:1\r\n", 300) + "\r\n",
			want: []string{"431"}, closed: true, forwarded: 0},
		// The guard stops at a head with an Upgrade (what follows may be
		// another protocol): answered without switching, the connection
		// ends, or the requests after it would not be checked.
		{name: "upgrade declined by the origin, then CL and TE", raw: "GET http://ORIGIN/ws HTTP/1.1\r\nHost: ORIGIN\r\n" +
			"Connection: Upgrade\r\nUpgrade: websocket\r\n\r\n" + post + "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + smuggled,
			want: []string{"200"}, body: "echo:/ws:", closed: true, forwarded: 1},
		{name: "upgrade answered by the proxy itself, then CL and TE", raw: "GET / HTTP/1.1\r\nHost: picket\r\nUpgrade: websocket\r\n\r\n" +
			post + "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + smuggled,
			want: []string{"200"}, closed: true, forwarded: 0},
	}
}

// Scripted replies of the cases where an origin follows its answer with
// a response nobody asked for.
const (
	answer204   = "HTTP/1.1 204 No Content\r\nContent-Length: 30\r\n\r\n"
	answerShort = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
	injected    = "HTTP/1.1 200 OK\r\nX-Injected: 1\r\nContent-Length: 0\r\n\r\n"
)

// answerUpgradeOffer is a final response that offers the origin's
// connection an upgrade.
const answerUpgradeOffer = "HTTP/1.1 200 OK\r\nUpgrade: h2,h2c\r\nConnection: Upgrade\r\nContent-Length: 2\r\n\r\nok"

// noUpgradeOffer checks that the client got neither the origin's Upgrade
// nor its "Connection: Upgrade".
func noUpgradeOffer(t *testing.T, got *hardeningResult) {
	for i, r := range got.responses {
		if v, c := r.Header.Values("Upgrade"), r.Header.Values("Connection"); len(v) > 0 || len(c) > 0 {
			t.Errorf("response %d: got Upgrade %q and Connection %q, want neither", i, v, c)
		}
	}
}

// notInjected checks that no response the upstream smuggled reached the
// client.
func notInjected(t *testing.T, got *hardeningResult) {
	for _, r := range got.responses {
		if r.Header.Get("X-Injected") != "" {
			t.Errorf("a response the upstream smuggled in behind its answer reached the client")
		}
	}
}

// twoClients is a conversation of two clients over one pooled upstream
// connection: the case's client sends method /a and gets answer, then a
// second client connection sends /b and must get answer too (a POST may get
// 502 instead: when the guard refuses a dirty connection the transport
// cannot replay its body), never the smuggled response. With wait, no
// request starts before the origin has written the reply to the one before
// in full, smuggled part included.
func twoClients(method, answer string, wait bool) func(t *testing.T, c net.Conn, br *bufio.Reader) {
	want, _ := http.ReadResponse(bufio.NewReader(strings.NewReader(answer)), nil)
	ask := func(t *testing.T, c net.Conn, br *bufio.Reader, path string, replied func() int64) {
		t.Helper()
		before := replied()
		raw := method + " http://ORIGIN" + path + " HTTP/1.1\r\nHost: ORIGIN\r\n"
		if method == http.MethodPost {
			raw += "Content-Length: 1\r\n\r\nx"
		} else {
			raw += "\r\n"
		}
		write(t, c, raw)
		resp, err := http.ReadResponse(br, &http.Request{Method: method})
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		io.Copy(io.Discard, resp.Body)
		switch {
		case resp.Header.Get("X-Injected") != "":
			t.Fatalf("%s got the response the upstream smuggled in behind another's answer", path)
		case resp.StatusCode == http.StatusBadGateway && method == http.MethodPost && path == "/b":
			return // refused before a byte was forwarded: the origin wrote nothing
		case resp.StatusCode != want.StatusCode:
			t.Fatalf("%s: got status %d, want %d", path, resp.StatusCode, want.StatusCode)
		}
		if wait {
			waitFor(t, "the origin's reply written", func() bool { return replied() > before })
		}
	}
	return func(t *testing.T, c net.Conn, br *bufio.Reader) {
		oc := c.(*originConn)
		ask(t, c, br, "/a", oc.replied)
		b, err := net.DialTimeout("tcp", oc.proxy, repeatTimeout)
		if err != nil {
			t.Fatal(err)
		}
		defer b.Close()
		_ = b.SetDeadline(time.Now().Add(10 * time.Second))
		ask(t, &originConn{Conn: b, origin: oc.origin}, bufio.NewReader(b), "/b", oc.replied)
	}
}

func TestHardening(t *testing.T) {
	runHardening(t, hardeningCases())
}

func runHardening(t *testing.T, cases []hardeningCase) {
	ca := testCA(t)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			origin := startRecordingOrigin(t, tc.reply, tc.hang)
			timeout := hardeningTimeout
			if tc.repeat > 1 {
				timeout = repeatTimeout
			}
			cfg := Config{
				MaxHeaderBytes:        4096,
				ReadHeaderTimeout:     timeout,
				IdleTimeout:           timeout,
				TunnelIdleTimeout:     timeout,
				DialTimeout:           timeout,
				TLSHandshakeTimeout:   timeout,
				ResponseHeaderTimeout: timeout,
				RootCAs:               poolOf(ca.Certificate()),
			}
			if tc.intercept {
				cfg.Decider = interceptAll
				cfg.Intercept = func(host string) (*tls.Config, error) { return ca.TLSConfig(host), nil }
			}
			tp := startProxy(t, cfg)
			tc.raw = strings.ReplaceAll(tc.raw, "ORIGIN", origin.addr)
			rounds := max(tc.repeat, 1)
			for round := 1; round <= rounds && !t.Failed(); round++ {
				hardeningRound(t, tc, tp, origin, round)
				if t.Failed() && rounds > 1 {
					t.Logf("failed in round %d of %d", round, rounds)
				}
			}
		})
	}
}

// hardeningRound runs one exchange of tc on a new client connection to tp;
// round counts the exchanges so far (the origin's tally is cumulative).
func hardeningRound(t *testing.T, tc hardeningCase, tp *testProxy, origin *recordingOrigin, round int) {
	c, err := net.DialTimeout("tcp", tp.addr, repeatTimeout)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(repeatTimeout))
	br := bufio.NewReader(c)
	start := time.Now()

	if tc.converse != nil {
		tc.converse(t, &originConn{Conn: c, origin: origin.addr, proxy: tp.addr, openConns: tp.OpenConns, replied: origin.replied.Load}, br)
	} else {
		got := &hardeningResult{}
		sendRaw(t, c, tc.raw, tc.trickle)
		method, _, _ := strings.Cut(tc.raw, " ")
		for i := 0; i < len(tc.want); i++ {
			resp, err := http.ReadResponse(br, &http.Request{Method: method})
			if err != nil && tc.truncated && i == len(tc.want)-1 && errors.Is(err, io.ErrUnexpectedEOF) {
				break // closed before the status line: failed too, never "complete"
			}
			if err != nil {
				t.Fatalf("response %d: %v (got %d responses, want %v)", i, err, len(got.responses), tc.want)
			}
			if resp.StatusCode >= 100 && resp.StatusCode < 200 {
				i--
				continue
			}
			b, berr := io.ReadAll(resp.Body)
			got.responses = append(got.responses, resp)
			got.bodies = append(got.bodies, string(b))
			if strconv.Itoa(resp.StatusCode) != tc.want[i] {
				t.Errorf("response %d: got status %d, want %s (body %.200q)", i, resp.StatusCode, tc.want[i], b)
			}
			last := i == len(tc.want)-1
			switch {
			case last && tc.truncated && berr == nil:
				t.Errorf("body: got a clean end after %d bytes %q, want an error (truncated download)", len(b), b)
			case !tc.truncated && berr != nil:
				t.Errorf("body %d: got error %v, want a complete body", i, berr)
			}
			if last && tc.body != "" && !strings.Contains(string(b), tc.body) {
				t.Errorf("body: got %.200q, want it to contain %q", b, tc.body)
			}
		}
		if tc.closed || tc.want == nil {
			within := tc.within
			if within == 0 {
				within = 2 * time.Second
			}
			expectClosed(t, c, br, within-time.Since(start))
		}
		if tc.check != nil && !t.Failed() {
			got.origin = origin.waitRequests(tc.forwarded)
			tc.check(t, got)
		}
	}

	// Resources: the proxy releases the client connection.
	c.Close()
	waitFor(t, "open client connections back to 0", func() bool { return tp.OpenConns() == 0 })

	// Nothing smuggled, and the expected number forwarded.
	reqs := origin.waitRequests(tc.forwarded * round)
	for _, r := range reqs {
		if strings.Contains(r.uri, "smuggled") {
			t.Errorf("a smuggled request reached the origin: %s %s", r.method, r.uri)
		}
	}
	if tc.forwarded >= 0 && len(reqs) != tc.forwarded*round {
		t.Errorf("origin received %d complete requests, want %d: %v", len(reqs), tc.forwarded*round, reqs)
	}
}

// sendRaw writes raw in one go, or one byte every trickle until the peer
// closes.
func sendRaw(t *testing.T, c net.Conn, raw string, trickle time.Duration) {
	t.Helper()
	if trickle == 0 {
		if raw != "" {
			write(t, c, raw)
		}
		return
	}
	for i := 0; i < len(raw); i++ {
		if _, err := c.Write([]byte{raw[i]}); err != nil {
			return // the proxy gave up on us: what slowloris must get
		}
		time.Sleep(trickle)
	}
}

func write(t *testing.T, c net.Conn, s string) {
	t.Helper()
	if _, err := io.WriteString(c, s); err != nil {
		t.Fatalf("write: %v", err)
	}
}

func readLine(t *testing.T, br *bufio.Reader) string {
	t.Helper()
	line, err := br.ReadString('\n')
	if err != nil {
		t.Fatalf("read: got %q, %v", line, err)
	}
	return strings.TrimRight(line, "\r\n")
}

// expectClosed reads until the proxy closes the connection, which it must do
// within d; bytes that come first are ignored.
func expectClosed(t *testing.T, c net.Conn, br *bufio.Reader, d time.Duration) {
	t.Helper()
	start := time.Now()
	_ = c.SetReadDeadline(start.Add(max(d, 50*time.Millisecond)))
	_, err := io.Copy(io.Discard, br)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Errorf("the proxy kept the connection open for more than %v, want it closed", d)
	}
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
}

// waitFor polls cond for up to 3 seconds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Errorf("timed out waiting for %s", what)
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// connectTLS opens an intercepted tunnel over c and returns the TLS
// connection inside (the proxy's test CA is not checked: the tests are about
// the proxy's behaviour, not its certificate).
func connectTLS(t *testing.T, c net.Conn, br *bufio.Reader) net.Conn {
	t.Helper()
	oc := c.(*originConn)
	write(t, c, "CONNECT "+oc.origin+" HTTP/1.1\r\nHost: "+oc.origin+"\r\n\r\n")
	if line := readLine(t, br); !strings.Contains(line, "200") {
		t.Fatalf("CONNECT: got %q, want 200", line)
	}
	readLine(t, br)
	tc := tls.Client(&bufConn{Conn: c, r: br}, &tls.Config{InsecureSkipVerify: true, ServerName: "127.0.0.1"})
	if err := tc.Handshake(); err != nil {
		t.Fatalf("TLS handshake with the proxy: %v", err)
	}
	return &originConn{Conn: tc, origin: oc.origin, proxy: oc.proxy, openConns: oc.openConns, replied: oc.replied}
}

// originConn carries the origin's address to converse functions, and
// rewrites ORIGIN in what they write.
type originConn struct {
	net.Conn
	origin    string
	proxy     string // the proxy's address, for more client connections
	openConns func() int
	replied   func() int64 // replies the origin has finished writing
}

func (c *originConn) Write(p []byte) (int, error) {
	if !bytes.Contains(p, []byte("ORIGIN")) {
		return c.Conn.Write(p)
	}
	if _, err := c.Conn.Write(bytes.ReplaceAll(p, []byte("ORIGIN"), []byte(c.origin))); err != nil {
		return 0, err
	}
	return len(p), nil
}

// bufConn reads through a bufio.Reader that may hold bytes already read.
type bufConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *bufConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// originRequest is a complete request the recording origin received.
type originRequest struct {
	method, uri, host, body string
}

// recordingOrigin is a raw HTTP/1.1 origin that records every complete
// request (headers and the whole body) it receives, and answers each with a
// scripted reply or an echo of its path and body.
type recordingOrigin struct {
	addr    string
	mu      sync.Mutex
	reqs    []originRequest
	conns   []net.Conn
	replied atomic.Int64 // scripted replies written in full
}

// writeBreak in a scripted reply splits it into separate writes.
const writeBreak = "<WRITE>"

func startRecordingOrigin(t *testing.T, reply string, hang bool) *recordingOrigin {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	o := &recordingOrigin{addr: ln.Addr().String()}
	reply = strings.ReplaceAll(reply, "ORIGIN", o.addr)
	done := make(chan struct{})
	t.Cleanup(func() {
		close(done)
		ln.Close()
		o.mu.Lock()
		for _, c := range o.conns {
			c.Close()
		}
		o.mu.Unlock()
	})
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			o.mu.Lock()
			o.conns = append(o.conns, c)
			o.mu.Unlock()
			go o.serve(c, reply, hang, done)
		}
	}()
	return o
}

func (o *recordingOrigin) serve(c net.Conn, reply string, hang bool, done chan struct{}) {
	defer c.Close()
	br := bufio.NewReader(c)
	for {
		req, err := http.ReadRequest(br)
		if err != nil {
			if hang { // e.g. a TLS ClientHello: never answer
				<-done
			}
			return
		}
		if req.Header.Get("Expect") == "100-continue" && reply == "" && !hang {
			_, _ = io.WriteString(c, "HTTP/1.1 100 Continue\r\n\r\n")
		}
		b, err := io.ReadAll(req.Body)
		if err != nil {
			return // incomplete: not forwarded
		}
		o.mu.Lock()
		o.reqs = append(o.reqs, originRequest{method: req.Method, uri: req.RequestURI, host: req.Host, body: string(b)})
		o.mu.Unlock()
		switch {
		case reply == "BIG": // 64 MiB, for slow readers
			fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n", 64<<20)
			_, _ = io.Copy(c, io.LimitReader(zeros{}, 64<<20))
		case reply != "":
			for part := range strings.SplitSeq(reply, writeBreak) {
				_, _ = io.WriteString(c, part)
			}
			o.replied.Add(1)
		case !hang:
			echo := "echo:" + req.URL.Path + ":" + string(b)
			fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(echo), echo)
			continue
		}
		if hang {
			<-done
		}
		return
	}
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) { clear(p); return len(p), nil }

// waitRequests returns the complete requests received, waiting a moment for
// want of them when want > 0.
func (o *recordingOrigin) waitRequests(want int) []originRequest {
	deadline := time.Now().Add(time.Second)
	for {
		o.mu.Lock()
		reqs := append([]originRequest(nil), o.reqs...)
		o.mu.Unlock()
		if want <= 0 || len(reqs) >= want || time.Now().After(deadline) {
			return reqs
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestConnectionLimits: beyond the per-client and overall limits a new
// connection gets a clear 503 and is closed; a freed slot is usable again.
func TestConnectionLimits(t *testing.T) {
	tp := startProxy(t, Config{MaxConns: 3, MaxConnsPerClient: 2})
	dial := func() net.Conn {
		c, err := net.Dial("tcp", tp.addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	status := func(c net.Conn) string {
		c.SetDeadline(time.Now().Add(3 * time.Second))
		fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		line, _ := bufio.NewReader(c).ReadString('\n')
		return strings.TrimSpace(line)
	}
	a, b := dial(), dial()
	if got := status(a); !strings.Contains(got, "200") {
		t.Fatalf("first connection: got %q", got)
	}
	status(b)
	if got := status(dial()); !strings.Contains(got, "503") {
		t.Errorf("third connection from one client: got %q, want 503", got)
	}
	// Another client address (127.0.0.2) may still connect, up to the
	// overall limit.
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}}
	other, err := d.Dial("tcp", tp.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if got := status(other); !strings.Contains(got, "200") {
		t.Errorf("another client: got %q, want 200", got)
	}
	other2, err := d.Dial("tcp", tp.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer other2.Close()
	if got := status(other2); !strings.Contains(got, "503") {
		t.Errorf("beyond the overall limit: got %q, want 503", got)
	}
	// Closing one frees its slot.
	a.Close()
	deadline := time.Now().Add(5 * time.Second)
	for tp.OpenConns() > 2 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if got := status(dial()); !strings.Contains(got, "200") {
		t.Errorf("after a close: got %q, want 200", got)
	}
}
