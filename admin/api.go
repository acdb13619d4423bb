package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/picket-proxy/picket/proxy"
	"github.com/picket-proxy/picket/scanner"
)

func (s *Server) routeTable() map[string]map[string]http.HandlerFunc {
	get := http.MethodGet
	post := http.MethodPost
	return map[string]map[string]http.HandlerFunc{
		"/healthz":                 {get: s.healthz},
		"/readyz":                  {get: s.readyz},
		"/metrics":                 {get: s.metrics.Handler().ServeHTTP},
		"/api/v1/status":           {get: s.status},
		"/api/v1/reload":           {post: s.reload},
		"/api/v1/participation":    {get: s.getParticipation, post: s.setParticipation},
		"/api/v1/cache/flush":      {post: s.flushCache},
		"/api/v1/decisions":        {get: s.decisions},
		"/api/v1/series":           {get: s.seriesPoints},
		"/":                        {get: s.console},
		"/" + consoleFiles[1].name: {get: s.console},
		"/" + consoleFiles[2].name: {get: s.console},
	}
}

// writeJSON writes v with status.
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// writeError writes {"error": msg} with status.
func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]string{"error": msg})
}

func (s *Server) healthz(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	if s.cfg.Ready != nil {
		if err := s.cfg.Ready(); err != nil {
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "not ready", "error": err.Error()})
			return
		}
	}
	// Stale threat feeds: still serving, with old data (feeds.go).
	if s.cfg.Sources.Feeds != nil {
		if d := degraded(s.cfg.Sources.Feeds()); len(d) > 0 {
			writeJSON(w, http.StatusOK, map[string]any{"status": "degraded", "degraded": d})
			return
		}
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
}

// Status is the answer of GET /api/v1/status. A part that is absent is
// null (or an empty list).
type Status struct {
	Version         string          `json:"version"`
	Started         time.Time       `json:"started"`
	UptimeSeconds   int64           `json:"uptime_seconds"`
	Mode            string          `json:"mode"`
	Ready           bool            `json:"ready"`
	NotReady        string          `json:"not_ready,omitempty"`
	Participation   *Participation  `json:"participation"`
	Statement       string          `json:"participation_statement,omitempty"`
	Listeners       []Listener      `json:"listeners"`
	CA              *CAStatus       `json:"ca"`
	Databases       []Database      `json:"databases"`
	Feeds           []Feed          `json:"feeds"`              // threat-feed sources (feeds.go)
	Degraded        []string        `json:"degraded,omitempty"` // why Picket is degraded (stale feeds)
	Reputation      *RepStatus      `json:"reputation"`
	Scanner         *ScannerStatus  `json:"scanner"`
	OpenConnections *int            `json:"open_connections"`
	AutoBypassed    []string        `json:"auto_bypassed"`
	Totals          Totals          `json:"totals"`
	Recent          int             `json:"recent_capacity"`
	HistoryMinutes  int             `json:"history_minutes"`
	Extra           map[string]bool `json:"endpoints"` // which optional endpoints work

	// Parents are the parent proxies in failover order ([upstream]); empty
	// without them.
	Parents []proxy.ParentStatus `json:"parents"`
}

// CAStatus is the interception CA and its leaf cache.
type CAStatus struct {
	Fingerprint  string  `json:"fingerprint"`
	Mints        uint64  `json:"mints"`
	CacheHits    uint64  `json:"cache_hits"`
	CacheMisses  uint64  `json:"cache_misses"`
	Evictions    uint64  `json:"cache_evictions"`
	CacheEntries int     `json:"cache_entries"`
	HitRatio     float64 `json:"hit_ratio"`
}

// RepStatus is the reputation client's health and caches.
type RepStatus struct {
	Healthy        bool    `json:"healthy"` // the circuit breaker is closed
	Breaker        string  `json:"breaker"`
	Lookups        uint64  `json:"lookups"`
	CacheHits      uint64  `json:"cache_hits"`
	CacheMisses    uint64  `json:"cache_misses"`
	HitRatio       float64 `json:"hit_ratio"`
	LocalHits      uint64  `json:"local_hits"`
	Requests       uint64  `json:"requests"`
	Failures       uint64  `json:"failures"`
	FailOpen       uint64  `json:"fail_open"`
	FailClosed     uint64  `json:"fail_closed"`
	CachedURLs     int     `json:"cached_urls"`
	CachedPrefixes int     `json:"cached_prefixes"`
}

// ScannerStatus is the download scanner's counters.
type ScannerStatus struct {
	Scans       uint64 `json:"scans"`
	Errors      uint64 `json:"errors"`
	Malicious   uint64 `json:"malicious"`
	Bombs       uint64 `json:"bombs"`
	Oversize    uint64 `json:"oversize"`
	FalseAlarms uint64 `json:"false_alarms"`
	Spills      uint64 `json:"spills"`
	Bytes       uint64 `json:"bytes"`
	MemoryInUse int64  `json:"memory_in_use"`
	// Engines are the external anti-virus engines (clamd, ICAP), in the
	// scanning order.
	Engines []EngineStatus `json:"engines"`
}

// EngineStatus is one anti-virus engine's health and counters.
type EngineStatus struct {
	Name string `json:"name"`
	scanner.EngineHealth
	Scans      uint64 `json:"scans"`
	Detections uint64 `json:"detections"`
	Errors     uint64 `json:"errors"`
	Partial    uint64 `json:"partial"`
	CacheHits  uint64 `json:"cache_hits"`
}

func ratio(hits, misses uint64) float64 {
	if hits+misses == 0 {
		return 0
	}
	return float64(hits) / float64(hits+misses)
}

// Status gathers the status from the sources.
func (s *Server) Status() Status {
	c := &s.cfg
	now := c.Now()
	st := Status{
		Version: c.Version, Started: c.Started.UTC(), UptimeSeconds: int64(now.Sub(c.Started) / time.Second),
		Mode: *s.mode.Load(), Statement: c.ParticipationStatement, Ready: true, Listeners: []Listener{}, Databases: []Database{}, Feeds: []Feed{}, AutoBypassed: []string{}, Parents: []proxy.ParentStatus{},
		Totals: s.series.totals(), Recent: s.recent.size(), HistoryMinutes: len(s.series.slots),
		Extra: map[string]bool{
			"reload":            c.Reload != nil,
			"participation":     c.Participation != nil,
			"set_participation": c.SetParticipation != nil,
			"cache_flush":       c.FlushCache != nil,
		},
	}
	if c.Ready != nil {
		if err := c.Ready(); err != nil {
			st.Ready, st.NotReady = false, err.Error()
		}
	}
	if c.Participation != nil {
		if p, err := c.Participation(); err == nil {
			st.Participation = &p
		}
	}
	if c.Listeners != nil {
		st.Listeners = append(st.Listeners, c.Listeners()...)
	}
	if c.Databases != nil {
		st.Databases = append(st.Databases, c.Databases()...)
	}
	if c.Sources.Feeds != nil {
		st.Feeds = append(st.Feeds, c.Sources.Feeds()...)
		st.Degraded = degraded(st.Feeds)
	}
	if c.Fingerprint != "" || c.Sources.Certs != nil {
		st.CA = &CAStatus{Fingerprint: c.Fingerprint}
		if c.Sources.Certs != nil {
			cs := c.Sources.Certs()
			st.CA.Mints, st.CA.CacheHits, st.CA.CacheMisses, st.CA.Evictions, st.CA.CacheEntries =
				cs.Mints, cs.Hits, cs.Misses, cs.Evictions, cs.Size
			st.CA.HitRatio = ratio(cs.Hits, cs.Misses)
		}
	}
	if c.Sources.Reputation != nil {
		rs := c.Sources.Reputation()
		st.Reputation = &RepStatus{
			Healthy: rs.Breaker.String() == "closed", Breaker: rs.Breaker.String(), Lookups: rs.Lookups,
			CacheHits: rs.CacheHits, CacheMisses: rs.CacheMisses, HitRatio: ratio(rs.CacheHits, rs.CacheMisses),
			LocalHits: rs.LocalHits, Requests: rs.Requests, Failures: rs.Failures, FailOpen: rs.FailOpen,
			FailClosed: rs.FailClosed, CachedURLs: rs.CachedURLs, CachedPrefixes: rs.CachedPrefix,
		}
	}
	if c.Sources.Scanner != nil {
		ss := c.Sources.Scanner()
		st.Scanner = &ScannerStatus{Scans: ss.Scans, Errors: ss.Errors, Malicious: ss.Malicious, Bombs: ss.Bombs,
			Oversize: ss.Oversize, FalseAlarms: ss.FalseAlarms, Spills: ss.Spills, Bytes: ss.Bytes,
			MemoryInUse: ss.MemoryInUse, Engines: []EngineStatus{}}
		for _, e := range ss.Engines {
			st.Scanner.Engines = append(st.Scanner.Engines, EngineStatus{Name: e.Name, EngineHealth: e.Health, Scans: e.Scans,
				Detections: e.Detections, Errors: e.Errors, Partial: e.Partial, CacheHits: e.CacheHits})
		}
	}
	if c.Sources.OpenConns != nil {
		n := c.Sources.OpenConns()
		st.OpenConnections = &n
	}
	if c.Sources.AutoBypassed != nil {
		st.AutoBypassed = append(st.AutoBypassed, c.Sources.AutoBypassed()...)
	}
	if c.Sources.Parents != nil {
		st.Parents = append(st.Parents, c.Sources.Parents()...)
	}
	return st
}

func (s *Server) status(w http.ResponseWriter, r *http.Request) {
	if !checkQuery(w, r.URL.Query()) {
		return
	}
	writeJSON(w, http.StatusOK, s.Status())
}

// checkQuery answers 400 when the query has a parameter not in allowed.
func checkQuery(w http.ResponseWriter, q url.Values, allowed ...string) bool {
	for k := range q {
		ok := false
		for _, a := range allowed {
			ok = ok || k == a
		}
		if !ok {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("unknown parameter %q", k))
			return false
		}
	}
	return true
}

// intParam reads an integer parameter in [lo, hi], def when absent.
func intParam(q url.Values, name string, def, lo, hi int) (int, error) {
	v := q.Get(name)
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < lo || n > hi {
		return 0, fmt.Errorf("%s must be an integer between %d and %d, got %q", name, lo, hi, v)
	}
	return n, nil
}

func (s *Server) decisions(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if !checkQuery(w, q, "action", "limit", "incident") {
		return
	}
	limit, err := intParam(q, "limit", 50, 1, s.recent.size())
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	action, incident := q.Get("action"), q.Get("incident")
	if action != "" && (action == "other" || label(actionLabels, action) == len(actionLabels)-1) {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("unknown action %q (want allow, block, warn, tunnel, intercept or error)", action))
		return
	}
	list := s.recent.list(limit, func(e *proxy.Event) bool {
		return (action == "" || e.Action == action) && (incident == "" || e.Incident == incident)
	})
	writeJSON(w, http.StatusOK, map[string]any{"decisions": list})
}

func (s *Server) seriesPoints(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if !checkQuery(w, q, "minutes") {
		return
	}
	n, err := intParam(q, "minutes", min(180, len(s.series.slots)), 1, len(s.series.slots))
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"step_seconds": 60, "points": s.series.points(n), "last_minute": s.series.lastMinute()})
}

func (s *Server) reload(w http.ResponseWriter, r *http.Request) {
	if s.cfg.Reload == nil {
		writeError(w, http.StatusNotImplemented, "reload is not available")
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), actionTimeout)
	defer cancel()
	err := s.cfg.Reload(ctx)
	s.metrics.ObserveReload(err)
	ev := s.cfg.Log.Info()
	if err != nil {
		ev = s.cfg.Log.Error().Err(err)
	}
	ev.Str(LogClient, remoteAddr(r).String()).Msg("admin: configuration reload requested")
	if err != nil {
		// The new configuration was refused; the old one stays.
		writeError(w, http.StatusUnprocessableEntity, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"reloaded": true})
}

func (s *Server) flushCache(w http.ResponseWriter, r *http.Request) {
	if s.cfg.FlushCache == nil {
		writeError(w, http.StatusNotImplemented, "cache flush is not available")
		return
	}
	if err := s.cfg.FlushCache(); err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	s.cfg.Log.Info().Str(LogClient, remoteAddr(r).String()).Msg("admin: caches flushed")
	writeJSON(w, http.StatusOK, map[string]any{"flushed": true})
}

// Participation is the participation state (docs/ksn.md): whether Picket reports
// verdict statistics, and which file samples it may send. POST takes only
// the first three fields; the others are what GET and the status report.
type Participation struct {
	Participation bool   `json:"participation"`
	Samples       string `json:"samples"` // off, full or full-or-part
	// RotateInstallation, in a POST, replaces the installation identifier
	// (and the samples' client key) with new random ones, so that later
	// batches cannot be linked to earlier ones. GET never sets it.
	RotateInstallation bool `json:"rotate_installation,omitempty"`

	Sending   bool      `json:"sending"` // statistics are actually sent (KSN mode and participation)
	LastSend  time.Time `json:"last_send,omitzero"`
	LastError string    `json:"last_error,omitempty"`
	Queued    int       `json:"queued"` // batches waiting to be sent
	Changed   time.Time `json:"changed,omitzero"`
	ChangedBy string    `json:"changed_by,omitempty"`

	// QueuedSamples are samples waiting to be sent; SamplesWaiting files
	// with active content downloaded by too few distinct clients so far;
	// SamplesInFlight samples being written to the queue; SamplesTaken and
	// SamplesDropped the samples queued and given up since the start
	// (docs/privacy.md).
	QueuedSamples   int    `json:"queued_samples"`
	SamplesWaiting  int    `json:"samples_waiting"`
	SamplesInFlight int    `json:"samples_in_flight"`
	SamplesTaken    uint64 `json:"samples_taken"`
	SamplesDropped  uint64 `json:"samples_dropped"`
}

// ErrBadParticipation is the error of an invalid participation change.
var ErrBadParticipation = errors.New("invalid participation")

// parseParticipation decodes a POST body: participation is required;
// samples defaults to "off" and must be "off" without participation.
func parseParticipation(body io.Reader) (Participation, error) {
	var in struct {
		Participation      *bool   `json:"participation"`
		Samples            *string `json:"samples"`
		RotateInstallation bool    `json:"rotate_installation"`
	}
	dec := json.NewDecoder(body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&in); err != nil {
		return Participation{}, fmt.Errorf("%w: body must be a JSON object {\"participation\": bool, \"samples\": \"off|full|full-or-part\", \"rotate_installation\": bool}: %v", ErrBadParticipation, err)
	}
	if dec.More() {
		return Participation{}, fmt.Errorf("%w: trailing data after the JSON object", ErrBadParticipation)
	}
	if in.Participation == nil {
		return Participation{}, fmt.Errorf("%w: participation (true or false) is required", ErrBadParticipation)
	}
	p := Participation{Participation: *in.Participation, Samples: "off", RotateInstallation: in.RotateInstallation}
	if in.Samples != nil {
		p.Samples = *in.Samples
	}
	switch p.Samples {
	case "off", "full", "full-or-part":
	default:
		return Participation{}, fmt.Errorf("%w: samples must be off, full or full-or-part, got %q", ErrBadParticipation, p.Samples)
	}
	if !p.Participation && p.Samples != "off" {
		return Participation{}, fmt.Errorf("%w: samples need participation", ErrBadParticipation)
	}
	return p, nil
}

func (s *Server) getParticipation(w http.ResponseWriter, r *http.Request) {
	if s.cfg.Participation == nil {
		writeError(w, http.StatusNotImplemented, "participation is not available")
		return
	}
	p, err := s.cfg.Participation()
	if err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, p)
}

func (s *Server) setParticipation(w http.ResponseWriter, r *http.Request) {
	if s.cfg.SetParticipation == nil || s.cfg.Participation == nil {
		writeError(w, http.StatusNotImplemented, "participation is not available")
		return
	}
	p, err := parseParticipation(http.MaxBytesReader(w, r.Body, maxBodyBytes))
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), actionTimeout)
	defer cancel()
	who := "admin API from " + remoteAddr(r).String()
	if err := s.cfg.SetParticipation(ctx, p, who); err != nil {
		status := http.StatusInternalServerError
		if errors.Is(err, ErrBadParticipation) {
			status = http.StatusBadRequest
		}
		writeError(w, status, err.Error())
		return
	}
	s.cfg.Log.Info().Str(LogClient, remoteAddr(r).String()).Bool(LogParticipation, p.Participation).
		Str(LogSamples, p.Samples).Bool(LogRotated, p.RotateInstallation).Msg("admin: participation changed")
	s.getParticipation(w, r)
}
