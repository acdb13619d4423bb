package admin

import (
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/picket-proxy/picket/auth"
	"github.com/picket-proxy/picket/certs"
	"github.com/picket-proxy/picket/proxy"
	"github.com/picket-proxy/picket/reputation"
	"github.com/picket-proxy/picket/scanner"
)

// Sources are the live parts whose counters are read at scrape time (and by
// GET /api/v1/status). Every field may be nil: that part is absent.
type Sources struct {
	Reputation   func() reputation.Stats
	Certs        func() certs.Stats
	Scanner      func() scanner.Stats
	OpenConns    func() int      // open client connections of the proxy
	AutoBypassed func() []string // hosts auto-bypassed now
	// ParticipationQueue is the number of participation reports (statistics
	// batches) waiting to be sent to the cloud.
	ParticipationQueue func() int
	// Parents are the parent proxies' states (proxy.Server.Parents).
	Parents func() []proxy.ParentStatus
	// Feeds reports the threat-feed sources of the embedded database and
	// their freshness (feeds.go).
	Feeds func() []Feed
	// HTTP2Errors counts HTTP/2 client errors by kind
	// (proxy.Server.HTTP2Errors).
	HTTP2Errors func() map[string]int64
	// ProxyProtocol counts the connections refused for their PROXY
	// protocol header by kind (missing, untrusted, invalid); nil when the
	// proxy is not behind the PROXY protocol.
	ProxyProtocol func() map[string]int64
	// Auth reads proxy authentication (auth.Authenticator.Stats); nil when
	// it is off.
	Auth func() auth.Stats
	// AccessLog reads the access log's buffer; nil when the access log is
	// off.
	AccessLog func() AccessLogStats
}

// AccessLogStats are the access log's counters: lines are buffered and
// written out by one goroutine; when the destination cannot keep up,
// requests wait for it rather than lose their lines.
type AccessLogStats struct {
	Waits    uint64        // writes that waited for the destination
	WaitTime time.Duration // how long they waited in all (waits that ended)
	Waiting  int64         // writes waiting now
	Bytes    uint64        // written to the destination
	Errors   uint64        // failed writes (each retried)
	Lost     uint64        // bytes given up at shutdown after writes kept failing
	Buffered int64         // bytes waiting in memory now
}

// The label values. Every label has a closed set of values, the last one
// "other" for anything else, so that no client can grow the series count.
var (
	methodLabels = []string{"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE", "other"}
	actionLabels = []string{"allow", "block", "warn", "tunnel", "intercept", "error", "other"}
	errorLabels  = []string{"denied", "canceled", "dns", "timeout", "tls", "refused", "reset", "unreachable",
		"handshake", "decide", "upgrade", "hijack", "continue-token", "parent", "other"}
	resultLabels = []string{"clean", "malicious", "unknown", "bomb", "oversize", "error", "other"}
	kindLabels   = enumNames(func(i int) string { return reputation.Kind(i).String() }, "Kind(")
	sourceLabels = enumNames(func(i int) string { return reputation.Source(i).String() }, "Source(")
	typeLabels   = enumNames(func(i int) string { return scanner.Type(i).String() }, "Type(")
)

// enumNames lists an enum's names up to the first unnamed value, then "other".
func enumNames(name func(int) string, unnamed string) []string {
	var out []string
	for i := 0; i < 256; i++ {
		n := name(i)
		if strings.HasPrefix(n, unnamed) {
			break
		}
		out = append(out, n)
	}
	return append(out, "other")
}

// label returns the index of v in values, or of "other" (the last).
func label(values []string, v string) int {
	for i, s := range values[:len(values)-1] {
		if s == v {
			return i
		}
	}
	return len(values) - 1
}

// Metrics are Picket's Prometheus metrics. Observe counts one proxy.Event;
// the Sources are read at scrape time. It is safe for concurrent use.
type Metrics struct {
	reg *prometheus.Registry

	// Children resolved once, so that Observe costs a few atomic adds and
	// no map lookups or allocations.
	requests [][]prometheus.Counter // [method][action]
	verdicts [][]prometheus.Counter // [kind][source]
	scans    [][]prometheus.Counter // [type][result]
	errors   []prometheus.Counter   // [kind]
	latency  prometheus.Observer
	added    prometheus.Observer
	tunnels  prometheus.Observer
	bytesIn  prometheus.Counter
	bytesOut prometheus.Counter
	reloadOK prometheus.Counter
	reloadKO prometheus.Counter
}

// NewMetrics registers the metrics, the Go runtime's and the process's, and
// a collector reading src, in a registry of its own.
func NewMetrics(version string, src Sources) *Metrics {
	reg := prometheus.NewRegistry()
	m := &Metrics{reg: reg}
	requests := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "picket_requests_total",
		Help: "Finished requests and tunnels by method (CONNECT for tunnels) and action (allow, block, warn, tunnel, intercept, error).",
	}, []string{"method", "action"})
	verdicts := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "picket_verdicts_total",
		Help: "Reputation verdicts of finished requests by kind and source.",
	}, []string{"kind", "source"})
	scans := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "picket_scans_total",
		Help: "Scanned downloads and uploads by true file type and result.",
	}, []string{"type", "result"})
	errs := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "picket_upstream_errors_total",
		Help: "Requests that failed by failure class (dns, timeout, tls, refused, ...).",
	}, []string{"kind"})
	latency := prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "picket_request_duration_seconds",
		Help:    "Time from a request's arrival until its response body was closed, tunnels excluded.",
		Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
	})
	added := prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "picket_added_duration_seconds",
		Help:    "Picket's own share of the time to a response head (decision, lookups, scanning), the upstream's wait excluded.",
		Buckets: []float64{.00005, .0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, 1},
	})
	tunnels := prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "picket_tunnel_duration_seconds",
		Help:    "Lifetime of CONNECT tunnels (intercepted or not).",
		Buckets: []float64{.1, 1, 10, 60, 300, 900, 3600, 4 * 3600},
	})
	bytes := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "picket_bytes_total",
		Help: "Body bytes: in = sent by clients upstream, out = sent to clients.",
	}, []string{"direction"})
	reloads := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "picket_reloads_total",
		Help: "Configuration reloads by result (ok, error).",
	}, []string{"result"})
	build := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "picket_build_info",
		Help:        "Always 1; the version label is Picket's version.",
		ConstLabels: prometheus.Labels{"version": version},
	})
	build.Set(1)
	start := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "picket_start_time_seconds",
		Help: "When Picket started, in seconds since the Unix epoch.",
	})
	start.Set(float64(time.Now().UnixNano()) / 1e9)
	reg.MustRegister(requests, verdicts, scans, errs, latency, added, tunnels, bytes, reloads, build, start,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		&sourceCollector{src: src}, feedCollector{feeds: src.Feeds})

	m.requests = grid(requests, methodLabels, actionLabels)
	m.verdicts = grid(verdicts, kindLabels, sourceLabels)
	m.scans = grid(scans, typeLabels, resultLabels)
	for _, k := range errorLabels {
		m.errors = append(m.errors, errs.WithLabelValues(k))
	}
	m.latency, m.added, m.tunnels = latency, added, tunnels
	m.bytesIn, m.bytesOut = bytes.WithLabelValues("in"), bytes.WithLabelValues("out")
	m.reloadOK, m.reloadKO = reloads.WithLabelValues("ok"), reloads.WithLabelValues("error")
	return m
}

// grid resolves every pair of label values of v. The series exist from the
// start at 0, so that rate() sees the first increment.
func grid(v *prometheus.CounterVec, rows, cols []string) [][]prometheus.Counter {
	out := make([][]prometheus.Counter, len(rows))
	for i, r := range rows {
		out[i] = make([]prometheus.Counter, len(cols))
		for j, c := range cols {
			out[i][j] = v.WithLabelValues(r, c)
		}
	}
	return out
}

// Observe counts one finished request or tunnel. It takes no locks and
// allocates nothing.
func (m *Metrics) Observe(e proxy.Event) {
	m.requests[label(methodLabels, e.Method)][label(actionLabels, e.Action)].Inc()
	if e.Verdict != "" {
		src := e.Source
		if src == "" {
			src = "none"
		}
		m.verdicts[label(kindLabels, e.Verdict)][label(sourceLabels, src)].Inc()
	}
	if e.ErrKind != "" {
		m.errors[label(errorLabels, string(e.ErrKind))].Inc()
	}
	for _, sc := range []*proxy.ScanEvent{e.Scan, e.Upload} { // downloads and uploads alike
		if sc != nil {
			m.scans[label(typeLabels, sc.Type)][label(resultLabels, sc.Result)].Inc()
		}
	}
	if e.Tunnel {
		m.tunnels.Observe(e.Duration.Seconds())
	} else {
		m.latency.Observe(e.Duration.Seconds())
		m.added.Observe(e.Added.Seconds())
	}
	m.bytesIn.Add(float64(max(e.BytesIn, 0)))
	m.bytesOut.Add(float64(max(e.BytesOut, 0)))
}

// ObserveReload counts a configuration reload: err nil is a success.
// SIGHUP reloads should be counted here too.
func (m *Metrics) ObserveReload(err error) {
	if err != nil {
		m.reloadKO.Inc()
		return
	}
	m.reloadOK.Inc()
}

// Registry returns the registry, for other parts to register metrics of
// their own.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Handler serves the exposition format (text or protobuf, gzip when asked).
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{MaxRequestsInFlight: 4, Timeout: 10 * time.Second, ErrorHandling: promhttp.ContinueOnError})
}

// sourceCollector reads the Sources' counters at scrape time.
type sourceCollector struct{ src Sources }

func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc(name, help, labels, nil)
}

var (
	repLookups    = desc("picket_reputation_lookups_total", "Reputation lookups.")
	repCache      = desc("picket_reputation_cache_total", "Reputation lookups by result cache outcome (hit, miss).", "result")
	repLocal      = desc("picket_reputation_local_hits_total", "Lookups answered by the administrator's allow or block list.")
	repRequests   = desc("picket_reputation_requests_total", "Requests sent to the reputation backend.")
	repFailures   = desc("picket_reputation_failures_total", "Backend requests failed or refused by the circuit breaker.")
	repFallback   = desc("picket_reputation_fail_policy_total", "Verdicts given by the fail policy (open, closed).", "policy")
	repBreaker    = desc("picket_reputation_breaker_state", "1 for the circuit breaker's current state (closed, open, half-open), 0 for the others.", "state")
	repEntries    = desc("picket_reputation_cache_entries", "Entries in the reputation caches (urls, prefixes).", "cache")
	certMints     = desc("picket_certs_mints_total", "Leaf certificates minted.")
	certCache     = desc("picket_certs_cache_total", "Leaf certificate requests by cache outcome (hit, miss).", "result")
	certEvictions = desc("picket_certs_cache_evictions_total", "Leaf certificates evicted from the cache.")
	certEntries   = desc("picket_certs_cache_entries", "Leaf certificates in the cache.")
	scanScans     = desc("picket_scanner_results_total", "Scanner outcomes (all, error, malicious, bomb, oversize, false_alarm).", "outcome")
	scanSpills    = desc("picket_scanner_spills_total", "Bodies and archive members spilled to disk.")
	scanBytes     = desc("picket_scanner_bytes_total", "Bytes inspected, archive expansion included.")
	scanMemory    = desc("picket_scanner_memory_bytes", "Bytes of the scanner's memory budget in use.")
	engineUp      = desc("picket_scanner_engine_up", "1 when the anti-virus engine answered its last health check or scan, 0 when it failed.", "engine", "kind")
	engineScans   = desc("picket_scanner_engine_scans_total", "Verdicts given by the anti-virus engine.", "engine")
	engineDetects = desc("picket_scanner_engine_detections_total", "Verdicts of the anti-virus engine naming a threat.", "engine")
	engineErrors  = desc("picket_scanner_engine_errors_total", "Bodies the anti-virus engine could not judge (down, slow, garbage), after one retry.", "engine")
	enginePartial = desc("picket_scanner_engine_partial_total", "Verdicts on the first part of a body only (clamd's StreamMaxLength).", "engine")
	engineCache   = desc("picket_scanner_engine_cache_hits_total", "Bodies judged from the verdict cache (by SHA-256) instead of the engine.", "engine")
	engineLatency = desc("picket_scanner_engine_duration_seconds", "Time from a body's last byte to the engine's verdict.", "engine")
	openConns     = desc("picket_open_connections", "Open client connections of the proxy.")
	autoBypassed  = desc("picket_auto_bypassed_hosts", "Hosts tunnelled untouched after repeated handshake failures.")
	partQueue     = desc("picket_participation_queue_length", "Participation reports waiting to be sent.")
	parentUp      = desc("picket_parent_up", "1 while the parent proxy is used, 0 while it is skipped after a failure.", "parent")
	parentReqs    = desc("picket_parent_requests_total", "Requests and tunnels sent through the parent proxy.", "parent")
	parentFails   = desc("picket_parent_failures_total", "Failed attempts to reach the parent proxy (connect, CONNECT answer, credentials).", "parent")
	h2Errors      = desc("picket_http2_client_errors_total", "HTTP/2 client connections closed or streams refused for misbehaving, by kind (rapid_reset, early_resets, continuation_flood, header_timeout, other protocol errors).", "kind")
	ppErrors      = desc("picket_proxy_protocol_errors_total", "Connections refused for their PROXY protocol header, by kind (missing: from a trusted load balancer without one; untrusted: from an address not in proxy_protocol_from; invalid: malformed).", "kind")
	authChecks    = desc("picket_auth_checks_total", "Requests with proxy credentials by outcome (success, failure, rate_limited, unavailable).", "result")
	authCache     = desc("picket_auth_cache_hits_total", "Successes from remembered verifications: fresh (within cache_ttl), stale (standing in for an unreachable directory).", "kind")
	authDirChecks = desc("picket_auth_directory_checks_total", "Logins the directory answered (accepted or refused).")
	authDirDown   = desc("picket_auth_directory_servers_down", "Directory servers that could not be reached at their last try.")
	logWaits      = desc("picket_access_log_waits_total", "Access-log lines that waited for the log's destination (both buffers full: the disk or pipe is slower than the lines arrive).")
	logWait       = desc("picket_access_log_wait_seconds_total", "Time requests spent waiting for the access log's destination, in seconds.")
	logBytes      = desc("picket_access_log_written_bytes_total", "Bytes written to the access log's destination.")
	logErrors     = desc("picket_access_log_write_errors_total", "Failed writes to the access log's destination (each retried until it succeeds).")
	logLost       = desc("picket_access_log_lost_bytes_total", "Access-log bytes given up at shutdown because the destination kept failing.")
	logBuffered   = desc("picket_access_log_buffered_bytes", "Access-log bytes waiting in memory to be written.")
	logWaiting    = desc("picket_access_log_waiting", "Requests waiting now for the access log's destination.")
)

// h2ErrorLabels are the kinds of picket_http2_client_errors_total.
var h2ErrorLabels = []string{"rapid_reset", "early_resets", "continuation_flood", "header_timeout", "other"}

// ppErrorLabels are the kinds of picket_proxy_protocol_errors_total.
var ppErrorLabels = []string{"missing", "untrusted", "invalid"}

// h2ErrorKind maps a kind from proxy.Server.HTTP2Errors (Picket's own, or
// golang.org/x/net's CountError names) to a label.
func h2ErrorKind(k string) string {
	if strings.HasSuffix(k, "too_many_early_resets") {
		return "early_resets"
	}
	return h2ErrorLabels[label(h2ErrorLabels, k)]
}

func (c *sourceCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{repLookups, repCache, repLocal, repRequests, repFailures, repFallback,
		repBreaker, repEntries, certMints, certCache, certEvictions, certEntries, scanScans, scanSpills,
		scanBytes, scanMemory, engineUp, engineScans, engineDetects, engineErrors, enginePartial, engineCache,
		engineLatency, openConns, autoBypassed, partQueue, parentUp, parentReqs, parentFails, h2Errors,
		ppErrors, authChecks, authCache, authDirChecks, authDirDown, logWaits, logWait, logBytes, logErrors, logLost, logBuffered, logWaiting} {
		ch <- d
	}
}

func (c *sourceCollector) Collect(ch chan<- prometheus.Metric) {
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	if c.src.Reputation != nil {
		s := c.src.Reputation()
		counter(repLookups, s.Lookups)
		counter(repCache, s.CacheHits, "hit")
		counter(repCache, s.CacheMisses, "miss")
		counter(repLocal, s.LocalHits)
		counter(repRequests, s.Requests)
		counter(repFailures, s.Failures)
		counter(repFallback, s.FailOpen, "open")
		counter(repFallback, s.FailClosed, "closed")
		for _, st := range []reputation.BreakerState{reputation.BreakerClosed, reputation.BreakerOpen, reputation.BreakerHalfOpen} {
			gauge(repBreaker, b2f(s.Breaker == st), st.String())
		}
		gauge(repEntries, float64(s.CachedURLs), "urls")
		gauge(repEntries, float64(s.CachedPrefix), "prefixes")
	}
	if c.src.Certs != nil {
		s := c.src.Certs()
		counter(certMints, s.Mints)
		counter(certCache, s.Hits, "hit")
		counter(certCache, s.Misses, "miss")
		counter(certEvictions, s.Evictions)
		gauge(certEntries, float64(s.Size))
	}
	if c.src.Scanner != nil {
		s := c.src.Scanner()
		counter(scanScans, s.Scans, "all")
		counter(scanScans, s.Errors, "error")
		counter(scanScans, s.Malicious, "malicious")
		counter(scanScans, s.Bombs, "bomb")
		counter(scanScans, s.Oversize, "oversize")
		counter(scanScans, s.FalseAlarms, "false_alarm")
		counter(scanSpills, s.Spills)
		counter(scanBytes, s.Bytes)
		gauge(scanMemory, float64(s.MemoryInUse))
		for _, e := range s.Engines {
			gauge(engineUp, b2f(e.Health.Healthy), e.Name, e.Health.Kind)
			counter(engineScans, e.Scans, e.Name)
			counter(engineDetects, e.Detections, e.Name)
			counter(engineErrors, e.Errors, e.Name)
			counter(enginePartial, e.Partial, e.Name)
			counter(engineCache, e.CacheHits, e.Name)
			buckets := make(map[float64]uint64, len(scanner.LatencyBounds))
			var cum uint64
			for i, b := range scanner.LatencyBounds {
				cum += e.Latency.Counts[i]
				buckets[b] = cum
			}
			ch <- prometheus.MustNewConstHistogram(engineLatency, e.Latency.Count, e.Latency.Sum, buckets, e.Name)
		}
	}
	if c.src.Auth != nil {
		s := c.src.Auth()
		counter(authChecks, s.Successes, "success")
		counter(authChecks, s.Failures, "failure")
		counter(authChecks, s.RateLimited, "rate_limited")
		counter(authChecks, s.Unavailable, "unavailable")
		counter(authCache, s.CacheHits, "fresh")
		counter(authCache, s.StaleHits, "stale")
		counter(authDirChecks, s.DirectoryChecks)
		gauge(authDirDown, float64(s.ServersDown))
	}
	if c.src.AccessLog != nil {
		s := c.src.AccessLog()
		counter(logWaits, s.Waits)
		ch <- prometheus.MustNewConstMetric(logWait, prometheus.CounterValue, s.WaitTime.Seconds())
		counter(logBytes, s.Bytes)
		counter(logErrors, s.Errors)
		counter(logLost, s.Lost)
		gauge(logBuffered, float64(s.Buffered))
		gauge(logWaiting, float64(s.Waiting))
	}
	if c.src.OpenConns != nil {
		gauge(openConns, float64(c.src.OpenConns()))
	}
	if c.src.AutoBypassed != nil {
		gauge(autoBypassed, float64(len(c.src.AutoBypassed())))
	}
	if c.src.ParticipationQueue != nil {
		gauge(partQueue, float64(c.src.ParticipationQueue()))
	}
	if c.src.HTTP2Errors != nil {
		byKind := make(map[string]uint64, len(h2ErrorLabels))
		for k, n := range c.src.HTTP2Errors() {
			byKind[h2ErrorKind(k)] += uint64(n)
		}
		for _, k := range h2ErrorLabels {
			counter(h2Errors, byKind[k], k)
		}
	}
	if c.src.ProxyProtocol != nil {
		errs := c.src.ProxyProtocol()
		for _, k := range ppErrorLabels {
			counter(ppErrors, uint64(max(errs[k], 0)), k)
		}
	}
	if c.src.Parents != nil {
		for _, p := range c.src.Parents() {
			gauge(parentUp, b2f(p.Up), p.Proxy)
			counter(parentReqs, p.Requests, p.Proxy)
			counter(parentFails, p.Failures, p.Proxy)
		}
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
