// Package server is the reputation server behind "picket repserver": the
// lookup protocol of docs/protocol.md over HTTP/JSON, in two roles.
//
//	role cloud (KSN)    feeds dir ──▶ db.Store ──▶ /v1/lookup, /v1/update
//	                                              [/v1/stats, /v1/samples: participation Intake]
//	role private (KPSN) upstream /v1/update ──▶ mirror DB (+ snapshot) ──▶ /v1/lookup
//
// A private server sends nothing upstream but update requests, has no
// statistics or sample endpoints, and keeps serving its last good copy while
// the upstream is unreachable.
package server

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/picket-proxy/picket/reputation"
	"github.com/picket-proxy/picket/reputation/db"
	"github.com/rs/zerolog"
)

// Role is what a server does.
type Role uint8

// The roles.
const (
	RoleCloud   Role = iota // serves lookups and updates from its feeds (KSN)
	RolePrivate             // mirrors an upstream and serves lookups (KPSN)
)

func (r Role) String() string {
	if r == RolePrivate {
		return "private"
	}
	return "cloud"
}

// ParseRole parses "cloud" or "private".
func ParseRole(s string) (Role, error) {
	switch s {
	case "cloud":
		return RoleCloud, nil
	case "private":
		return RolePrivate, nil
	}
	return 0, fmt.Errorf("unknown role %q (want cloud or private)", s)
}

// Config configures a Server.
type Config struct {
	Role Role
	// Feeds is, for a cloud server, the feed directory (feeds.toml); for a
	// private server, the directory where the mirror keeps its snapshot
	// ("" keeps it in memory only).
	Feeds string
	// Upstream is the base URL a private server mirrors.
	Upstream string
	// UpstreamToken is the bearer token sent upstream.
	UpstreamToken string
	// Token, if set, is the bearer token clients must send (KPSN licences).
	Token string
	// TTL is the positive cache duration of answers; 0 means DefaultTTL.
	TTL time.Duration
	// NegativeTTL is the negative cache duration; 0 means DefaultNegativeTTL.
	NegativeTTL time.Duration
	// Poll is how often a cloud server checks its feeds; 0 means
	// db.DefaultPoll, negative never.
	Poll time.Duration
	// SyncEvery is how often a private server asks for updates; 0 means
	// DefaultSyncEvery.
	SyncEvery time.Duration
	// History is how many updates a cloud server keeps for incremental
	// downloads; 0 means DefaultHistory. However many, they hold at most
	// half as many changes as the database has entries.
	History int
	// MinWait is the least time a cloud server tells mirrors to wait
	// between update requests (min_wait); 0 means DefaultMinWait.
	MinWait time.Duration
	// Intake receives participating installations' statistics and samples
	// (docs/privacy.md); cloud role only. Nil
	// means those endpoints answer 404.
	Intake http.Handler
	// HTTPClient is used upstream; nil means one with sane timeouts.
	HTTPClient *http.Client
}

// Defaults of Config.
const (
	DefaultTTL         = 30 * time.Minute
	DefaultNegativeTTL = 5 * time.Minute
	DefaultSyncEvery   = time.Minute
	DefaultHistory     = 64
	DefaultMinWait     = 30 * time.Second
	// MaxBackoff bounds how long a mirror waits after failed updates.
	MaxBackoff = 30 * time.Minute
)

// Limits of the server.
const (
	maxLookupBody     = 64 << 10
	maxUpdateResponse = 4 << 30 // JSON; a database file says its own size
	snapshotName      = "mirror.db"
)

// Server is a reputation server. Create it with New, serve Handler (or call
// Serve), and Close it.
type Server struct {
	cfg Config
	log zerolog.Logger

	store *db.Store // cloud
	hist  history   // cloud

	mirror   atomic.Pointer[db.DB] // private
	synced   atomic.Bool           // private: at least one good copy
	syncMu   sync.Mutex            // one Sync at a time
	stateMu  sync.Mutex            // sync, read by /healthz while a Sync runs
	sync     syncState             // private
	upstream *http.Client

	lookups, updates atomic.Uint64
	sent             sentCounters // cloud
}

// sentCounters count what a cloud server sent mirrors.
type sentCounters struct {
	current, incremental, full atomic.Uint64 // update requests by answer
	entries, bytes             atomic.Uint64 // changes or entries sent; bytes on the wire
}

// New loads the feeds (cloud) or the last snapshot (private) and returns a
// Server. A private server without a snapshot starts empty and unready
// until its first successful Sync.
func New(cfg Config, log zerolog.Logger) (*Server, error) {
	if cfg.TTL <= 0 {
		cfg.TTL = DefaultTTL
	}
	if cfg.NegativeTTL <= 0 {
		cfg.NegativeTTL = DefaultNegativeTTL
	}
	if cfg.SyncEvery <= 0 {
		cfg.SyncEvery = DefaultSyncEvery
	}
	if cfg.History <= 0 {
		cfg.History = DefaultHistory
	}
	if cfg.MinWait <= 0 {
		cfg.MinWait = DefaultMinWait
	}
	s := &Server{cfg: cfg, log: log.With().Str(reputation.LogComponent, "repserver").Str(reputation.LogRole, cfg.Role.String()).Logger()}
	s.hist.max = cfg.History
	switch cfg.Role {
	case RoleCloud:
		if cfg.Feeds == "" {
			return nil, errors.New("repserver: a cloud server needs a feed directory")
		}
		st, err := db.Open(db.Config{Dir: cfg.Feeds, Poll: cfg.Poll, TTL: cfg.TTL, NegativeTTL: cfg.NegativeTTL,
			OnChange: s.hist.record}, log)
		if err != nil {
			return nil, fmt.Errorf("repserver: %w", err)
		}
		s.store = st
		s.hist.published.Store(st.DB())
		go st.DB().Checksum() // ready before the first mirror asks
	case RolePrivate:
		if cfg.Intake != nil {
			return nil, errors.New("repserver: a private server has no statistics or sample endpoints")
		}
		if cfg.Upstream == "" {
			return nil, errors.New("repserver: a private server needs an upstream")
		}
		s.upstream = cfg.HTTPClient
		if s.upstream == nil {
			s.upstream = &http.Client{Timeout: 5 * time.Minute, Transport: &http.Transport{
				Proxy: http.ProxyFromEnvironment, TLSHandshakeTimeout: 10 * time.Second,
				ResponseHeaderTimeout: time.Minute, IdleConnTimeout: 90 * time.Second,
			}}
		}
		s.upstream = reputation.KeepTokenHome(s.upstream)
		s.mirror.Store(db.Empty(0))
		if cfg.Feeds != "" {
			d, err := db.ReadFile(s.snapshotPath())
			switch {
			case err == nil && d.Token() != "":
				s.mirror.Store(d)
				s.synced.Store(true)
				s.log.Info().Uint64(reputation.LogVersion, d.Version()).Int(reputation.LogEntries, d.Len()).Msg("mirror snapshot loaded")
			case err == nil:
				s.log.Warn().Msg("mirror snapshot without an upstream version; starting empty")
			case !errors.Is(err, fs.ErrNotExist):
				s.log.Warn().Err(err).Msg("mirror snapshot unreadable; starting empty")
			}
		}
	default:
		return nil, fmt.Errorf("repserver: unknown role %d", cfg.Role)
	}
	return s, nil
}

// DB returns the database being served.
func (s *Server) DB() *db.DB {
	if s.store != nil {
		return s.store.DB()
	}
	return s.mirror.Load()
}

// Reload reloads a cloud server's feeds now (SIGHUP); no-op for a private
// server.
func (s *Server) Reload() error {
	if s.store == nil {
		return nil
	}
	return s.store.Reload()
}

// Run runs a private server's sync loop until ctx ends, waiting between
// updates as nextWait says; for a cloud server it just waits (its feed
// watcher runs from New to Close).
func (s *Server) Run(ctx context.Context) {
	if s.cfg.Role != RolePrivate {
		<-ctx.Done()
		return
	}
	for {
		err := s.Sync(ctx)
		if err != nil && ctx.Err() == nil {
			s.log.Warn().Err(err).Str(reputation.LogAddr, s.cfg.Upstream).Msg("mirror update failed; serving the last good copy")
		}
		st := s.syncStatus()
		t := time.NewTimer(nextWait(s.cfg.SyncEvery, st.minWait, st.failures, rand.Float64()))
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// Serve serves HTTP on ln (TLS when certFile is set) until ctx ends, then
// shuts down gracefully, waiting up to grace for requests in flight.
func (s *Server) Serve(ctx context.Context, ln net.Listener, certFile, keyFile string, grace time.Duration) error {
	hs := &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      5 * time.Minute, // full database downloads
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    16 << 10,
	}
	runCtx, stopRun := context.WithCancel(ctx)
	ran := make(chan struct{})
	go func() {
		defer close(ran)
		s.Run(runCtx)
	}()
	defer func() {
		stopRun()
		<-ran
	}()
	errc := make(chan error, 1)
	go func() {
		if certFile != "" {
			errc <- hs.ServeTLS(ln, certFile, keyFile)
		} else {
			errc <- hs.Serve(ln)
		}
	}()
	s.log.Info().Str(reputation.LogAddr, ln.Addr().String()).Bool(reputation.LogTLS, certFile != "").Msg("repserver listening")
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	err := hs.Shutdown(sctx)
	<-errc
	return err
}

// Close stops a cloud server's feed watcher. It is idempotent.
func (s *Server) Close() error {
	if s.store != nil {
		return s.store.Close()
	}
	return nil
}

// Handler returns the server's HTTP handler.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc(reputation.PathHealth, s.health)
	mux.Handle(reputation.PathLookup, s.auth(http.HandlerFunc(s.lookup)))
	if s.cfg.Role == RoleCloud {
		mux.Handle(reputation.PathUpdate, s.auth(http.HandlerFunc(s.update)))
		if s.cfg.Intake != nil {
			mux.Handle(reputation.PathStats, s.auth(s.cfg.Intake))
			mux.Handle(reputation.PathSamples, s.auth(s.cfg.Intake))
		}
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "no such endpoint")
	})
	return mux
}

func (s *Server) auth(next http.Handler) http.Handler {
	if s.cfg.Token == "" {
		return next
	}
	want := []byte("Bearer " + s.cfg.Token)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if subtle.ConstantTimeCompare([]byte(r.Header.Get("Authorization")), want) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="picket"`)
			writeError(w, http.StatusUnauthorized, "missing or wrong bearer token")
			return
		}
		next.ServeHTTP(w, r)
	})
}

// Health is the body of GET /healthz.
type Health struct {
	Status  string `json:"status"` // "ok" or "unsynced"
	Role    string `json:"role"`
	Version uint64 `json:"version"`
	// Token is the database's opaque version token: the cloud's current
	// one, or the one a mirror last got from its upstream.
	Token   string `json:"token"`
	Entries int    `json:"entries"`
	Lookups uint64 `json:"lookups"` // lookup requests served since start
	Updates uint64 `json:"updates"` // update requests served since start (cloud)
	// Cloud: update requests answered "up to date", with changes, with the
	// whole database; changes or entries sent; bytes sent.
	UpdatesCurrent     uint64 `json:"updates_current,omitempty"`
	UpdatesIncremental uint64 `json:"updates_incremental,omitempty"`
	UpdatesFull        uint64 `json:"updates_full,omitempty"`
	EntriesSent        uint64 `json:"entries_sent,omitempty"`
	BytesSent          uint64 `json:"bytes_sent,omitempty"`
	// Private: the last update attempt and success (RFC 3339), the last
	// error ("" after a success), and the upstream's minimum wait.
	LastAttempt string `json:"last_attempt,omitempty"`
	LastSuccess string `json:"last_success,omitempty"`
	LastError   string `json:"last_error,omitempty"`
	MinWait     int64  `json:"min_wait,omitempty"`
}

func (s *Server) health(w http.ResponseWriter, r *http.Request) {
	d := s.DB()
	h := Health{Status: "ok", Role: s.cfg.Role.String(), Version: d.Version(), Token: d.Token(), Entries: d.Len(),
		Lookups: s.lookups.Load(), Updates: s.updates.Load(),
		UpdatesCurrent: s.sent.current.Load(), UpdatesIncremental: s.sent.incremental.Load(), UpdatesFull: s.sent.full.Load(),
		EntriesSent: s.sent.entries.Load(), BytesSent: s.sent.bytes.Load()}
	code := http.StatusOK
	if s.cfg.Role == RoleCloud {
		h.Token = versionToken(s.hist.published.Load().Version())
	} else {
		st := s.syncStatus()
		h.LastAttempt, h.LastSuccess, h.LastError, h.MinWait = timeString(st.lastAttempt), timeString(st.lastSuccess), st.lastErr, int64(st.minWait/time.Second)
		if !s.synced.Load() {
			h.Status, code = "unsynced", http.StatusServiceUnavailable
		}
	}
	writeJSON(w, code, h)
}

func timeString(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}

func (s *Server) lookup(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		writeError(w, http.StatusMethodNotAllowed, "use POST")
		return
	}
	var req reputation.LookupRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxLookupBody))
	if err := dec.Decode(&req); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			writeError(w, http.StatusRequestEntityTooLarge, "request body too large")
			return
		}
		writeError(w, http.StatusBadRequest, "malformed JSON: "+err.Error())
		return
	}
	if len(req.Prefixes) == 0 || len(req.Prefixes) > reputation.MaxPrefixesPerRequest {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("want 1 to %d prefixes, got %d", reputation.MaxPrefixesPerRequest, len(req.Prefixes)))
		return
	}
	prefixes := make([]reputation.Prefix, len(req.Prefixes))
	for i, p := range req.Prefixes {
		var err error
		if prefixes[i], err = reputation.ParsePrefix(p); err != nil {
			writeError(w, http.StatusBadRequest, err.Error())
			return
		}
	}
	if s.cfg.Role == RolePrivate && !s.synced.Load() {
		// Its empty copy would answer "nothing known", which clients cache
		// for the negative TTL: refused, their fail policy decides.
		writeError(w, http.StatusServiceUnavailable, "unsynced: no copy of the upstream's database yet")
		return
	}
	s.lookups.Add(1)
	a := db.Answer(s.DB(), prefixes, s.cfg.TTL, s.cfg.NegativeTTL, reputation.SourceServer)
	resp := reputation.LookupResponse{Matches: make([]reputation.WireMatch, 0, len(a.Matches)), NegativeTTL: int64(a.NegativeTTL / time.Second)}
	for _, m := range a.Matches {
		resp.Matches = append(resp.Matches, wireMatch(m.Hash, m.Verdict, ceilSeconds(m.Verdict.TTL)))
	}
	s.log.Debug().Int(reputation.LogPrefixes, len(prefixes)).Msg("lookup")
	writeJSON(w, http.StatusOK, resp)
}

// ceilSeconds is d in whole seconds, rounded up: a client takes a match
// with TTL 0 as expired at once, so a TTL under a second must not become 0.
func ceilSeconds(d time.Duration) int64 { return int64((d + time.Second - 1) / time.Second) }

func wireMatch(h reputation.Hash, v reputation.Verdict, ttl int64) reputation.WireMatch {
	return reputation.WireMatch{Hash: h.String(), Verdict: v.Kind, Category: v.Category, Threat: v.ThreatName, TTL: ttl}
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, reputation.ErrorResponse{Error: msg})
}
