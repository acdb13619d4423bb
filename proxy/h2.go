package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"log"
	"maps"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http2"
)

// HTTP/2 towards clients. An intercepted client that offers h2 in its TLS
// ClientHello gets it (ALPN), and its connection is served by our own
// golang.org/x/net/http2 server — never by goproxy's AllowHTTP2 path, which
// hands whole h2 sessions to a shared http2.Server on which per-request
// filters (and so decisions) do not run. Each stream is one request through serveInner, exactly as
// a request read over HTTP/1.1: decision, block and warn pages, scanning,
// one access-log line (proto "HTTP/2.0") and one Event.
//
// The limits, and what each defends against:
//   - streams: at most MaxStreams handlers run per connection; x/net queues
//     up to four times as many streams a client opened and reset early, and
//     closes the connection (ENHANCE_YOUR_CALM) beyond that (rapid reset,
//     CVE-2023-44487). h2Guard also ends a connection whose client resets
//     most of the streams it opens.
//   - header blocks: MaxHeaderBytes is the advertised MAX_HEADER_LIST_SIZE,
//     which x/net enforces while decoding; h2Guard bounds the CONTINUATION
//     frames of one block and the time it may take (ReadHeaderTimeout), so
//     that an endless stream of empty CONTINUATION frames — which x/net
//     reads on for ever, since they never exceed the size — ends the
//     connection (CVE-2023-45288 and its variants).
//   - flow control: uploads are buffered at most h2ConnWindow per
//     connection; a response stream whose window the client never opens
//     holds its handler until the stream's write deadline (tunnel idle
//     timeout, moved while the body moves: logBody) resets it; a client
//     that stops reading the connection altogether is closed after the same
//     time by WriteByteTimeout, and x/net closes a connection whose client
//     lets more than 10,000 control frames queue up.
//   - time: an idle connection (no open stream) gets GOAWAY after the idle
//     timeout; one that sends no frame at all is pinged after it and closed
//     when the ping is not answered in h2PingTimeout.
//
// Extended CONNECT (RFC 8441, WebSockets over HTTP/2) is not offered: the
// SETTINGS frame never carries ENABLE_CONNECT_PROTOCOL, so browsers open an
// HTTP/1.1 connection for a WebSocket, whose upgrade Picket relays.

// DefaultHTTP2MaxStreams is how many concurrent streams an intercepted
// HTTP/2 client may open on one connection when Config.HTTP2MaxStreams is
// zero: as many as browsers open for a busy page.
const DefaultHTTP2MaxStreams = 100

const (
	// h2ConnWindow and h2StreamWindow are the receive windows (upload bytes
	// buffered) of an intercepted client's connection and of each stream.
	h2ConnWindow   = 1 << 20
	h2StreamWindow = 256 << 10
	// h2PingTimeout is how long an unanswered health-check ping waits.
	h2PingTimeout = 15 * time.Second
	// upstreamStreamWindow is the receive window of each upstream HTTP/2
	// stream: what Picket may hold of a response its client does not read.
	// The connection window stays at Go's default (1 GiB) so that a stalled
	// client's streams can never stall other clients' streams sharing the
	// upstream connection; the per-stream window is the bound.
	upstreamStreamWindow = 256 << 10
)

// h2 is the HTTP/2 server shared by every intercepted connection that
// negotiated h2.
type h2 struct {
	srv  *http2.Server
	base *http.Server // limits and timeouts; Shutdown sends GOAWAY to every connection
}

// xconnectForced reports whether GODEBUG turns on x/net's extended CONNECT
// (http2xconnect=1), which would advertise WebSockets over HTTP/2 that
// Picket refuses (405): browsers would not fall back to HTTP/1.1.
func xconnectForced() bool { return strings.Contains(os.Getenv("GODEBUG"), "http2xconnect=1") }

// newH2 configures the HTTP/2 server from cfg; nil when HTTP/2 is off.
// countError is told the kind of every protocol error x/net sees.
func newH2(cfg *Config, errorLog *log.Logger, countError func(string)) *h2 {
	if cfg.DisableHTTP2 {
		return nil
	}
	base := &http.Server{
		// Advertised as SETTINGS_MAX_HEADER_LIST_SIZE and enforced by the
		// frame reader.
		MaxHeaderBytes: cfg.MaxHeaderBytes,
		ErrorLog:       errorLog,
		// GOAWAY after this long without an open stream.
		IdleTimeout: cfg.IdleTimeout,
		HTTP2: &http.HTTP2Config{
			MaxConcurrentStreams:          cfg.HTTP2MaxStreams,
			MaxReceiveBufferPerConnection: h2ConnWindow,
			MaxReceiveBufferPerStream:     h2StreamWindow,
			SendPingTimeout:               cfg.IdleTimeout,
			PingTimeout:                   h2PingTimeout,
			WriteByteTimeout:              cfg.TunnelIdleTimeout,
			CountError:                    countError,
		},
	}
	srv := &http2.Server{}
	if err := http2.ConfigureServer(base, srv); err != nil {
		panic(err) // only for cipher-suite lists, which base does not have
	}
	return &h2{srv: srv, base: base}
}

// withALPN returns the interception TLS configuration offering h2 before
// HTTP/1.1 when HTTP/2 is on; cfg must be a copy the caller owns.
func (h *h2) withALPN(cfg *tls.Config) *tls.Config {
	if h == nil {
		cfg.NextProtos = []string{"http/1.1"}
		return cfg
	}
	cfg.NextProtos = []string{http2.NextProtoTLS, "http/1.1"}
	return cfg
}

// serveH2 serves the HTTP/2 connection of an intercepted tunnel until it
// closes: every stream through serveInner.
func (s *Server) serveH2(tc *tls.Conn, t *tunnel) {
	g := newH2Guard(tc, s.cfg.MaxHeaderBytes, s.cfg.ReadHeaderTimeout)
	g.onClose = func(reason string) {
		s.h2Errors.count(reason)
		s.cfg.Log.Warn().Str(fClient, t.client.String()).Str(fTunnel, t.host).Str(fReason, reason).
			Msg("closed a misbehaving HTTP/2 client connection")
	}
	s.h2.srv.ServeConn(g, &http2.ServeConnOpts{
		Context:    context.Background(),
		BaseConfig: s.h2.serveConnBase(), // base, or none on Go 1.27 (h2_go127.go)
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			growStack(0)
			st := &h2Stream{handlerDeadlines: newHandlerDeadlines(w)}
			s.serveInner(w, r, t, st)
			st.done()
			if st.aborted.Load() {
				// The body failed mid-way (upstream cut off, a trickled
				// download blocked): reset the stream, so that the client
				// sees an error, never a clean end of a truncated body.
				panic(http.ErrAbortHandler)
			}
		}),
	})
}

// shutdownH2 sends GOAWAY to every HTTP/2 client connection: they finish
// their open streams and close.
func (s *Server) shutdownH2() {
	if s.h2 == nil {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // base serves no listener: Shutdown only runs the GOAWAY hook
	_ = s.h2.base.Shutdown(ctx)
}

// clientEnd is where a response body goes, as logBody needs it: a deadline
// for writes to a client that stopped reading, and a way to abort a body
// that failed mid-way. An HTTP/1.1 client's is its connection (*clientConn);
// an HTTP/2 client's is its stream (*h2Stream), so that one stream's fate
// never touches the others.
type clientEnd interface {
	SetWriteDeadline(time.Time) error
	abort()
}

// abort closes an HTTP/1.1 client's connection.
func (c *clientConn) abort() { c.Close() }

// h2Stream is one HTTP/2 stream's end. Its deadlines may be moved from
// other goroutines than the handler's (the upstream transport reads the
// request body on its own, and closes it after the handler may have
// returned): once the handler returned they do nothing, since x/net's
// ResponseWriter must not be used then (handlerDeadlines). SetWriteDeadline
// bounds the stream's writes: when it passes, x/net resets the stream and
// the handler's blocked write returns.
type h2Stream struct {
	*handlerDeadlines
	aborted atomic.Bool
}

// abort marks the stream for a reset when its handler returns.
func (st *h2Stream) abort() { st.aborted.Store(true) }

// h2ErrorCounts counts the HTTP/2 protocol errors of client connections by
// kind: x/net's CountError names and h2Guard's reasons.
type h2ErrorCounts struct {
	mu sync.Mutex
	m  map[string]int64
}

func (c *h2ErrorCounts) count(kind string) {
	c.mu.Lock()
	if c.m == nil {
		c.m = make(map[string]int64)
	}
	c.m[kind]++
	c.mu.Unlock()
}

// HTTP2Errors returns how many HTTP/2 client errors of each kind were seen
// since start (e.g. "too_many_early_resets", "continuation_flood",
// "rapid_reset", "header_timeout").
func (s *Server) HTTP2Errors() map[string]int64 {
	s.h2Errors.mu.Lock()
	defer s.h2Errors.mu.Unlock()
	return maps.Clone(s.h2Errors.m)
}

// HTTP/2 frame types and flags h2Guard looks at (RFC 9113 §6).
const (
	frameHeaders      = 0x1
	frameRSTStream    = 0x3
	frameContinuation = 0x9
	flagEndHeaders    = 0x4
	frameHeaderLen    = 9
)

// Rapid-reset heuristics: a connection whose client has reset at least
// rapidResetMin streams, and more than half of all it opened, is closed.
// Browsers cancel streams when a user navigates away, but not most of them
// over a connection's life.
const rapidResetMin = 200

var (
	errContinuationFlood = errors.New("http2: too many CONTINUATION frames in one header block")
	errHeaderTimeout     = errors.New("http2: header block not completed in time")
	errRapidReset        = errors.New("http2: client resets most of the streams it opens")
)

// h2Guard reads the frame headers of an HTTP/2 client connection as the
// server reads it, without copying or holding frames, and fails the read
// (the server then closes the connection) when a header block has more
// than maxContinuations CONTINUATION frames or takes longer than
// headerTimeout, or when the client resets most of the streams it opens.
type h2Guard struct {
	net.Conn         // the client's TLS connection
	maxContinuations int
	headerTimeout    time.Duration
	onClose          func(reason string) // called once, with the kind of violation

	preface        int                  // client preface bytes still to skip
	hdr            [frameHeaderLen]byte // a frame header split across reads
	nhdr           int
	remain         uint32 // payload bytes of the current frame still to pass
	inBlock        bool
	continuations  int
	opened, resets int
	err            error
}

// ConnectionState is the TLS connection's, for x/net (Request.TLS, the
// HTTP/2 cipher-suite checks).
func (g *h2Guard) ConnectionState() tls.ConnectionState {
	if tc, ok := g.Conn.(interface{ ConnectionState() tls.ConnectionState }); ok {
		return tc.ConnectionState()
	}
	return tls.ConnectionState{}
}

func newH2Guard(c net.Conn, maxHeaderBytes int, headerTimeout time.Duration) *h2Guard {
	return &h2Guard{
		Conn: c,
		// A header block needs CONTINUATION frames only beyond the frame
		// size (16 KiB at least): MaxHeaderBytes in 1 KiB frames is ample.
		maxContinuations: maxHeaderBytes/1024 + 1,
		headerTimeout:    headerTimeout,
		preface:          len(http2.ClientPreface),
	}
}

func (g *h2Guard) Read(p []byte) (int, error) {
	if g.err != nil {
		return 0, g.err
	}
	n, err := g.Conn.Read(p)
	if n > 0 {
		if ferr := g.scan(p[:n]); ferr != nil {
			g.err = ferr
			if g.onClose != nil {
				g.onClose(reasonOf(ferr))
			}
			return 0, ferr
		}
	}
	if err != nil && g.inBlock && errors.Is(err, os.ErrDeadlineExceeded) {
		if g.onClose != nil {
			g.onClose(reasonOf(errHeaderTimeout))
		}
		g.err = errHeaderTimeout
		return n, errHeaderTimeout
	}
	return n, err
}

// scan follows the frame boundaries in b.
func (g *h2Guard) scan(b []byte) error {
	for len(b) > 0 {
		switch {
		case g.preface > 0:
			k := min(g.preface, len(b))
			g.preface -= k
			b = b[k:]
		case g.remain > 0:
			k := min(int(g.remain), len(b))
			g.remain -= uint32(k)
			b = b[k:]
		default:
			k := copy(g.hdr[g.nhdr:], b)
			g.nhdr += k
			b = b[k:]
			if g.nhdr < frameHeaderLen {
				return nil
			}
			g.nhdr = 0
			g.remain = uint32(g.hdr[0])<<16 | uint32(g.hdr[1])<<8 | uint32(g.hdr[2])
			if err := g.frame(g.hdr[3], g.hdr[4]); err != nil {
				return err
			}
		}
	}
	return nil
}

// frame checks one frame header.
func (g *h2Guard) frame(typ, flags byte) error {
	switch typ {
	case frameHeaders:
		g.opened++ // a trailer block counts too: the ratio stays conservative
		if flags&flagEndHeaders == 0 {
			g.inBlock, g.continuations = true, 0
			_ = g.Conn.SetReadDeadline(time.Now().Add(g.headerTimeout))
		}
	case frameContinuation:
		if g.continuations++; g.continuations > g.maxContinuations {
			return errContinuationFlood
		}
		if flags&flagEndHeaders != 0 && g.inBlock {
			g.inBlock = false
			_ = g.Conn.SetReadDeadline(time.Time{})
		}
	case frameRSTStream:
		if g.resets++; g.resets >= rapidResetMin && 2*g.resets > g.opened {
			return errRapidReset
		}
	}
	return nil
}

func reasonOf(err error) string {
	switch err {
	case errContinuationFlood:
		return "continuation_flood"
	case errHeaderTimeout:
		return "header_timeout"
	case errRapidReset:
		return "rapid_reset"
	}
	return "other"
}

var _ net.Conn = (*h2Guard)(nil)
