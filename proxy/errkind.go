package proxy

// ErrKind classifies why a request or tunnel could not be completed: the
// access log's error field and the metrics' error kind. The zero ErrKind
// ("") means nothing failed.
type ErrKind string

// The kinds. Upstream failures (classify) come first, then the proxy's own.
const (
	ErrDenied      ErrKind = "denied"      // a destination the policy refuses (403)
	ErrDesync      ErrKind = "desync"      // an upstream response no request asked for
	ErrCanceled    ErrKind = "canceled"    // the client went away
	ErrDNS         ErrKind = "dns"         // the name does not resolve
	ErrTimeout     ErrKind = "timeout"     // the upstream did not answer in time (504)
	ErrTLS         ErrKind = "tls"         // the upstream's certificate or handshake failed
	ErrRefused     ErrKind = "refused"     // the upstream refused the connection
	ErrReset       ErrKind = "reset"       // the upstream closed the connection unexpectedly
	ErrUnreachable ErrKind = "unreachable" // no route to the upstream
	ErrParent      ErrKind = "parent"      // the parent proxy failed or refused
	ErrOther       ErrKind = "other"       // any other upstream failure

	ErrDecide        ErrKind = "decide"         // the Decider could not decide (503)
	ErrHijack        ErrKind = "hijack"         // the CONNECT connection could not be taken over
	ErrClientBody    ErrKind = "client-body"    // the request body from the client failed
	ErrUpstreamBody  ErrKind = "upstream-body"  // the response body failed before it was checked
	ErrUpgrade       ErrKind = "upgrade"        // a protocol upgrade failed
	ErrClientHello   ErrKind = "client-hello"   // no usable ClientHello on the transparent TLS listener
	ErrHandshake     ErrKind = "handshake"      // the client's TLS handshake with Picket failed
	ErrContinueToken ErrKind = "continue-token" // a warn page's continue link was invalid or expired
)
