package admin

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/picket-proxy/picket/internal/netaddr"
	"github.com/picket-proxy/picket/proxy"
)

// Config is what the admin server needs. Every func field may be nil; the
// doc of each says what nil means.
type Config struct {
	// Token is the bearer token; required (see LoadToken).
	Token string
	// Version is Picket's version, shown in the status and the metrics.
	Version string
	// Mode describes the reputation mode and backend, e.g. "kpsn (embedded database)".
	Mode string
	// Fingerprint is the interception CA's SHA-256 fingerprint; "" when
	// there is no CA.
	Fingerprint string
	// Started is when Picket started; zero means when New was called.
	Started time.Time
	// AllowClients, when not empty, are the networks allowed to reach the
	// listener besides loopback; others get 403 even with the token.
	AllowClients []netip.Prefix
	// Recent is the size of the recent-decisions ring; 0 means 1000.
	Recent int
	// History is how far back the per-minute series go; 0 means 6h.
	History time.Duration

	// Sources are the counters read by the status and the metrics.
	Sources Sources
	// Metrics, if nil, are created with NewMetrics(Version, Sources).
	Metrics *Metrics
	// Listeners returns the addresses Picket listens on; nil shows none.
	Listeners func() []Listener
	// Databases returns the reputation databases' versions and sizes; nil
	// shows none.
	Databases func() []Database
	// Ready reports why Picket is not ready to serve (the CA, the database
	// or a listener is not up), nil when it is. Nil means always ready.
	Ready func() error
	// Reload re-reads the configuration; nil answers POST reload with 501.
	Reload func(context.Context) error
	// Participation returns the participation state (docs/ksn.md); nil answers the
	// participation endpoints with 501.
	Participation func() (Participation, error)
	// ParticipationStatement is the statement's summary the console shows
	// next to the switch; "" shows the console's built-in summary.
	ParticipationStatement string
	// SetParticipation changes it (only Participation and Samples are
	// set); who says where the change came from ("admin API from
	// 127.0.0.1"), for the log. Nil answers POST participation with 501.
	SetParticipation func(ctx context.Context, p Participation, who string) error
	// FlushCache empties the verdict and certificate caches; nil answers
	// POST cache/flush with 501.
	FlushCache func() error

	// Log receives the administrator's actions and refused requests.
	Log zerolog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Listener is one address Picket listens on.
type Listener struct {
	Name string `json:"name"` // proxy, admin, ...
	Addr string `json:"addr"`
}

// Database is one reputation database.
type Database struct {
	Name    string `json:"name"`
	Version uint64 `json:"version"`
	Entries int    `json:"entries"`
	Bytes   int    `json:"bytes,omitempty"`
	// Networks counts the address lists' networks (feeds.go).
	Networks int `json:"networks,omitempty"`
}

// Timeouts of the admin listener.
const (
	readHeaderTimeout = 5 * time.Second
	readTimeout       = 15 * time.Second
	writeTimeout      = 30 * time.Second
	idleTimeout       = 2 * time.Minute
	maxHeaderBytes    = 16 << 10
	maxBodyBytes      = 4 << 10
	actionTimeout     = 30 * time.Second // for reload and participation changes
)

// Server is the admin listener's handler and http.Server. Create it with
// New, feed it with Observe, run it with Serve.
type Server struct {
	cfg     Config
	token   [sha256.Size]byte
	metrics *Metrics
	recent  *recent
	series  *series
	cop     *http.CrossOriginProtection
	srv     *http.Server
	routes  map[string]map[string]http.HandlerFunc
	mode    atomic.Pointer[string] // Config.Mode, then SetMode's

	closeOnce sync.Once
}

// ErrNoToken is returned by New without a token.
var ErrNoToken = errors.New("admin: no token")

// New returns a Server for cfg.
func New(cfg Config) (*Server, error) {
	if len(cfg.Token) < 16 {
		return nil, ErrNoToken
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Started.IsZero() {
		cfg.Started = cfg.Now()
	}
	if cfg.Recent <= 0 {
		cfg.Recent = 1000
	}
	if cfg.History <= 0 {
		cfg.History = 6 * time.Hour
	}
	if cfg.Metrics == nil {
		cfg.Metrics = NewMetrics(cfg.Version, cfg.Sources)
	}
	s := &Server{
		cfg:     cfg,
		token:   sha256.Sum256([]byte(cfg.Token)),
		metrics: cfg.Metrics,
		recent:  newRecent(cfg.Recent),
		series:  newSeries(max(int(cfg.History/time.Minute), 1), cfg.Now),
		cop:     http.NewCrossOriginProtection(),
	}
	s.cop.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusForbidden, "cross-origin request refused")
	}))
	s.SetMode(cfg.Mode)
	s.routes = s.routeTable()
	s.srv = &http.Server{
		Handler:           s,
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readTimeout,
		WriteTimeout:      writeTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
	}
	return s, nil
}

// SetMode replaces Config.Mode in the status: a configuration reload may
// change the reputation mode or backend.
func (s *Server) SetMode(mode string) { s.mode.Store(&mode) }

// Metrics returns the server's metrics.
func (s *Server) Metrics() *Metrics { return s.metrics }

// Observe records a finished request or tunnel: the metrics, the recent
// decisions and the per-minute series. Use it as proxy.Config.Observe.
func (s *Server) Observe(e proxy.Event) {
	s.metrics.Observe(e)
	s.recent.add(&e)
	s.series.add(&e)
}

// Serve answers on ln until Shutdown or Close; it returns
// http.ErrServerClosed then.
func (s *Server) Serve(ln net.Listener) error { return s.srv.Serve(ln) }

// Shutdown stops accepting and waits for the requests in flight until ctx
// ends.
func (s *Server) Shutdown(ctx context.Context) error { return s.srv.Shutdown(ctx) }

// Close closes the listener and every connection. It is idempotent.
func (s *Server) Close() error {
	var err error
	s.closeOnce.Do(func() { err = s.srv.Close() })
	return err
}

// ServeHTTP checks access (see the package doc) and routes the request.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Cache-Control", "no-store")

	// 1. Probes: anyone, no token.
	if r.URL.Path == "/healthz" || r.URL.Path == "/readyz" {
		s.route(w, r)
		return
	}
	client := remoteAddr(r)
	// 2. Networks and cross-origin browser requests.
	if !client.IsLoopback() && len(s.cfg.AllowClients) > 0 && !contains(s.cfg.AllowClients, client) {
		s.refuse(w, r, client, http.StatusForbidden, "client address not allowed")
		return
	}
	if err := s.cop.Check(r); err != nil {
		s.refuse(w, r, client, http.StatusForbidden, "cross-origin request refused")
		return
	}
	// 3. The token.
	switch auth := r.Header.Get("Authorization"); {
	case auth != "":
		if !s.validToken(auth) {
			h.Set("WWW-Authenticate", `Bearer realm="picket", error="invalid_token"`)
			s.refuse(w, r, client, http.StatusUnauthorized, "invalid token")
			return
		}
	case !client.IsLoopback():
		h.Set("WWW-Authenticate", `Bearer realm="picket"`)
		s.refuse(w, r, client, http.StatusUnauthorized, "token required")
		return
	case !loopbackHost(r.Host):
		// A page on another name that resolves to 127.0.0.1 (DNS rebinding)
		// must not read the API with the browser's loopback privilege.
		s.refuse(w, r, client, http.StatusForbidden, "open the admin listener by a loopback address or send the token")
		return
	case r.Method != http.MethodGet && r.Method != http.MethodHead:
		h.Set("WWW-Authenticate", `Bearer realm="picket"`)
		s.refuse(w, r, client, http.StatusUnauthorized, "token required")
		return
	}
	s.route(w, r)
}

// validToken compares the Authorization header's bearer token with the
// server's in constant time (both hashed, so the length leaks nothing).
func (s *Server) validToken(auth string) bool {
	scheme, tok, ok := strings.Cut(auth, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return false
	}
	sum := sha256.Sum256([]byte(strings.TrimSpace(tok)))
	return subtle.ConstantTimeCompare(sum[:], s.token[:]) == 1
}

func (s *Server) refuse(w http.ResponseWriter, r *http.Request, client netip.Addr, status int, msg string) {
	ev := s.cfg.Log.Debug()
	if status == http.StatusUnauthorized && r.Header.Get("Authorization") != "" {
		ev = s.cfg.Log.Warn()
	}
	ev.Str(LogClient, client.String()).Str(LogMethod, r.Method).Str(LogPath, r.URL.Path).Int(LogStatus, status).
		Msg("admin request refused: " + msg)
	writeError(w, status, msg)
}

// route finds the handler of the path and method: 404 for an unknown
// path, 405 with Allow for a method the path does not take.
func (s *Server) route(w http.ResponseWriter, r *http.Request) {
	methods, ok := s.routes[r.URL.Path]
	if !ok {
		writeError(w, http.StatusNotFound, "no such endpoint")
		return
	}
	m := r.Method
	if m == http.MethodHead {
		m = http.MethodGet
	}
	h, ok := methods[m]
	if !ok {
		allow := make([]string, 0, len(methods)+1)
		for _, name := range []string{http.MethodGet, http.MethodHead, http.MethodPost} {
			if _, ok := methods[name]; ok || (name == http.MethodHead && methods[http.MethodGet] != nil) {
				allow = append(allow, name)
			}
		}
		w.Header().Set("Allow", strings.Join(allow, ", "))
		writeError(w, http.StatusMethodNotAllowed, "method "+r.Method+" not allowed")
		return
	}
	h(w, r)
}

// remoteAddr is the client's address, IPv4-mapped addresses unmapped.
func remoteAddr(r *http.Request) netip.Addr {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}

// loopbackHost reports whether a Host header names the loopback: an address
// in 127.0.0.0/8 or ::1 (in any spelling, as every part of Picket reads
// hosts), or "localhost".
func loopbackHost(host string) bool {
	h, _, err := netaddr.ParseHostPort(host)
	return err == nil && (h.Name == "localhost" || h.Addr.IsLoopback())
}

func contains(list []netip.Prefix, a netip.Addr) bool {
	for _, p := range list {
		if p.Contains(a) {
			return true
		}
	}
	return false
}
