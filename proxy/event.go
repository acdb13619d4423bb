package proxy

import (
	"net/netip"
	"time"
)

// Event is what the proxy reports of every finished request or tunnel: the
// same facts as the access-log line, for observers such as metrics, the
// admin console's recent decisions and participation statistics. It holds
// the full URL; observers that must not keep personal data (statistics)
// take only what they need.
type Event struct {
	Time     time.Time     // when the request arrived
	Duration time.Duration // until the response body was closed
	// Added is Picket's own share of the time until the response head was
	// ready (decision, lookups, scanning), the upstream's wait excluded; 0
	// for tunnels.
	Added    time.Duration
	Client   netip.Addr
	User     string // authenticated user; local logs and admin only, never statistics
	Method   string
	Proto    string // the client's protocol: HTTP/1.1, HTTP/2.0; "" for a transparent TLS connection
	URL      string // scheme://host/path, query only when access_log_query is on
	Host     string // host without port
	Status   int
	BytesIn  int64
	BytesOut int64
	Action   string // allow, block, warn, tunnel, intercept, error
	Verdict  string // reputation verdict kind, "" if none
	Category string
	Source   string // who gave the verdict: local, database, server, failure
	Rule     string
	Stage    string
	Incident string
	ErrKind  ErrKind // what failed, "" if nothing did
	Tunnel   bool    // a CONNECT tunnel (not a request)
	Complete bool    // the response body reached its end
	// Scan is the download scan's outcome, nil when the body was not scanned.
	Scan *ScanEvent
	// Upload is the upload scan's outcome (the request body's), nil when
	// none was scanned.
	Upload *ScanEvent
}

// ScanEvent is the outcome of scanning one download or upload.
type ScanEvent struct {
	// Upload says the body was the request's: a person's own file, never
	// a sample, its hash never sent.
	Upload     bool
	Type       string // true file type: pe, elf, zip, pdf, ...
	Result     string // clean, malicious, unknown, bomb, oversize, error
	Threat     string
	SHA256     []byte
	Size       int64
	Executable bool
	FalseAlarm bool
	// Engine names the external engine that found Threat (clamd, icap),
	// or that failed with the fail-closed policy; "" otherwise.
	Engine string
	// Partial says an engine saw only the first part of the body.
	Partial bool
	// Source is what decided the result: eicar, signature, known-good,
	// reputation, limits, engine ("none" when nothing did).
	Source string
	// Active names the active content the file carries (executable,
	// macros, pdf-javascript, ...; scanner.Active), "" for none.
	Active string
}

// event builds the Event of a finished exchange.
func (s *Server) event(x *exchange) Event {
	e := Event{
		Time: x.start, Duration: time.Since(x.start), Added: x.added, Client: x.req.Client, User: x.req.User, Method: x.req.Method, Proto: x.proto,
		URL: logURL(x.req.URL, s.cfg.LogQuery), Status: x.status,
		BytesIn: x.bytesIn.Load(), BytesOut: x.bytesOut.Load(), Action: x.action(),
		Verdict: x.decision.Verdict, Category: x.decision.Category, Source: x.decision.VerdictSource,
		Rule: x.decision.Rule, Stage: x.decision.Stage, Incident: x.incident, ErrKind: x.errKind,
		Tunnel: x.req.Connect, Complete: x.complete.Load(), Scan: x.scan, Upload: x.upload,
	}
	if x.req.URL != nil {
		e.Host = x.req.URL.Hostname()
	}
	return e
}
