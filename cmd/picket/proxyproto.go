package main

import (
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pires/go-proxyproto"
	"github.com/rs/zerolog"
)

// The PROXY protocol, behind a load balancer ([proxy] proxy_protocol_from).
// A connection from a trusted balancer must open with a header (the
// protocol's specification forbids guessing, and a balancer that lost its
// send-proxy setting would otherwise pass every client off as itself); a
// header from any other address fails the connection; other clients connect
// directly. Every connection refused for its header is counted by kind and
// logged (at most one line per kind every logEvery), so that a balancer
// misconfigured shows at once in the log and in
// picket_proxy_protocol_errors_total.

// Kinds of PROXY protocol failures, indexes of ppKinds and ppMessages.
const (
	ppMissing   = iota // a trusted balancer's connection without a header
	ppUntrusted        // a header from an address not in proxy_protocol_from
	ppInvalid          // a malformed header
	ppNone      = -1   // not a PROXY protocol failure
)

// ppKinds are the kinds' names, the metric's label values.
var ppKinds = [...]string{"missing", "untrusted", "invalid"}

// ppMessages are the log's messages by kind.
var ppMessages = [...]string{
	"connection refused: no PROXY protocol header from a trusted load balancer (is send-proxy set on it?)",
	"connection refused: PROXY protocol header from an address not in proxy_protocol_from",
	"connection refused: malformed PROXY protocol header",
}

// ppInvalidErrors are go-proxyproto's errors for a header that is there but
// malformed.
var ppInvalidErrors = []error{
	proxyproto.ErrCantReadVersion1Header, proxyproto.ErrVersion1HeaderTooLong, proxyproto.ErrLineMustEndWithCrlf,
	proxyproto.ErrCantReadProtocolVersionAndCommand, proxyproto.ErrCantReadAddressFamilyAndProtocol,
	proxyproto.ErrCantReadLength, proxyproto.ErrCantResolveSourceUnixAddress,
	proxyproto.ErrCantResolveDestinationUnixAddress, proxyproto.ErrUnknownProxyProtocolVersion,
	proxyproto.ErrUnsupportedProtocolVersionAndCommand, proxyproto.ErrUnsupportedAddressFamilyAndProtocol,
	proxyproto.ErrInvalidLength, proxyproto.ErrInvalidAddress, proxyproto.ErrInvalidPortNumber,
	proxyproto.ErrTruncatedTLV, proxyproto.ErrMalformedTLV, proxyproto.ErrIncompatibleTLV,
}

// ppKind is the kind of PROXY protocol failure err is, ppNone when it is
// none (an ordinary read error).
func ppKind(err error) int {
	switch {
	case errors.Is(err, proxyproto.ErrNoProxyProtocol):
		return ppMissing
	case errors.Is(err, proxyproto.ErrSuperfluousProxyHeader):
		return ppUntrusted
	}
	for _, e := range ppInvalidErrors {
		if errors.Is(err, e) {
			return ppInvalid
		}
	}
	return ppNone
}

// logEvery is how often a kind of failure is logged at most.
const logEvery = 10 * time.Second

// ppListener is the proxy listener behind the PROXY protocol.
type ppListener struct {
	*proxyproto.Listener
	log    zerolog.Logger
	counts [len(ppKinds)]atomic.Int64 // by kind

	mu     sync.Mutex
	logged [len(ppKinds)]time.Time // when each kind was last logged
	quiet  [len(ppKinds)]int64     // failures of each kind not logged since
}

// newPPListener wraps ln: the addresses in from are the balancers.
func newPPListener(ln net.Listener, from []string, headerTimeout time.Duration, log zerolog.Logger) (*ppListener, error) {
	policy, err := proxyproto.PolicyFromRanges(from, proxyproto.REQUIRE, proxyproto.REJECT)
	if err != nil {
		return nil, err
	}
	return &ppListener{
		Listener: &proxyproto.Listener{Listener: ln, ConnPolicy: policy, ReadHeaderTimeout: headerTimeout},
		log:      log,
	}, nil
}

func (l *ppListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	if pc, ok := c.(*proxyproto.Conn); ok {
		return &ppConn{Conn: pc, l: l}, nil
	}
	return c, nil
}

// Errors counts the connections refused for their header, by kind.
func (l *ppListener) Errors() map[string]int64 {
	m := make(map[string]int64, len(ppKinds))
	for i, k := range ppKinds {
		m[k] = l.counts[i].Load()
	}
	return m
}

// failed counts a connection refused for its header, and logs it unless
// its kind was logged less than logEvery ago.
func (l *ppListener) failed(i int, peer net.Addr, err error) {
	l.counts[i].Add(1)
	now := time.Now()
	l.mu.Lock()
	if now.Sub(l.logged[i]) < logEvery {
		l.quiet[i]++
		l.mu.Unlock()
		return
	}
	quiet := l.quiet[i]
	l.logged[i], l.quiet[i] = now, 0
	l.mu.Unlock()
	l.log.Warn().Str("peer", peer.String()).Str("kind", ppKinds[i]).Err(err).Int64("not_logged_since", quiet).Msg(ppMessages[i])
}

// ppConn is a connection accepted behind the PROXY protocol: its first
// read error, when the header made it, is reported to the listener. It
// keeps *proxyproto.Conn's methods (Raw: proxy.Listen reads the client's
// address only once the header is read).
type ppConn struct {
	*proxyproto.Conn
	l    *ppListener
	once sync.Once
}

func (c *ppConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if err != nil {
		c.once.Do(func() {
			if kind := ppKind(err); kind != ppNone {
				c.l.failed(kind, c.Raw().RemoteAddr(), err)
			}
		})
	}
	return n, err
}
