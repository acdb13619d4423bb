package db

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/picket-proxy/picket/reputation"
	"github.com/rs/zerolog"
)

// FetcherConfig configures a Fetcher.
type FetcherConfig struct {
	// Dir is the feed directory holding feeds.toml.
	Dir string
	// HTTPClient downloads the sources; nil means DefaultHTTPClient.
	// cmd/picket passes one built from the proxy's upstream settings, so
	// that downloads obey the same destination policy and parent proxy as
	// user traffic.
	HTTPClient *http.Client
	// UserAgent is sent with each download unless the source's headers set
	// one; "" means "Picket".
	UserAgent string
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Jitter returns a number in [0, 1) that spreads the download times;
	// nil means a random one.
	Jitter func() float64
}

// Retry timing: after a failure a source is tried again after
// RetryMin·2^(failures-1), at most RetryMax, never less often than its
// refresh; half of each wait is random.
const (
	RetryMin = time.Minute
	RetryMax = time.Hour
)

// Fetcher keeps the URL sources of a feed directory downloaded. Each source
// has, in the cache directory, its last good copy (NAME.feed) and its
// fetch state (NAME.state.json: validators for conditional requests, last
// success, last error, back-off); the files are the truth, shared with
// "picket feeds update" through a lock file per source, so a restart
// without network still has the data and the schedule.
//
// A download replaces the last good copy only when it is complete, within
// max_size and parses to enough entries (see Source.MinRatio); anything
// else keeps the copy, counts an error and backs off.
type Fetcher struct {
	dir    string
	hc     *http.Client
	ua     string
	now    func() time.Time
	jitter func() float64
	log    zerolog.Logger

	attemptMu sync.Mutex // one attempt at a time in this process

	mu     sync.Mutex
	errors map[string]uint64 // failed attempts by source
}

// DefaultHTTPClient downloads directly (no proxy), verifying certificates,
// with timeouts on every phase.
func DefaultHTTPClient() *http.Client {
	return &http.Client{Transport: &http.Transport{
		Proxy:                 nil,
		DialContext:           (&net.Dialer{Timeout: 10 * time.Second}).DialContext,
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: time.Minute,
		IdleConnTimeout:       90 * time.Second,
		DisableCompression:    true,
		ForceAttemptHTTP2:     true,
	}}
}

// NewFetcher returns a Fetcher for cfg.Dir.
func NewFetcher(cfg FetcherConfig, log zerolog.Logger) *Fetcher {
	f := &Fetcher{dir: cfg.Dir, hc: cfg.HTTPClient, ua: cfg.UserAgent, now: cfg.Now, jitter: cfg.Jitter,
		log: log.With().Str(reputation.LogComponent, "feeds").Logger(), errors: make(map[string]uint64)}
	if f.hc == nil {
		f.hc = DefaultHTTPClient()
	}
	if f.ua == "" {
		f.ua = "Picket"
	}
	if f.now == nil {
		f.now = time.Now
	}
	if f.jitter == nil {
		f.jitter = rand.Float64
	}
	return f
}

// Outcome is how one download attempt ended.
type Outcome uint8

// The outcomes.
const (
	Unchanged Outcome = iota // 304, or the same content: the copy is current
	Updated                  // a new copy replaced the last good one
	Failed                   // the last good copy stays
)

func (o Outcome) String() string {
	switch o {
	case Unchanged:
		return "unchanged"
	case Updated:
		return "updated"
	}
	return "failed"
}

// Result is the end of one attempt.
type Result struct {
	Source  string
	Outcome Outcome
	Entries int   // of the copy in use
	Err     error // why it failed
	Next    time.Time
}

// fetchState is NAME.state.json.
type fetchState struct {
	URLHash      string    `json:"url_sha256,omitempty"` // the URL the copy came from (it may hold a key)
	ETag         string    `json:"etag,omitempty"`
	LastModified string    `json:"last_modified,omitempty"`
	LastSuccess  time.Time `json:"last_success,omitzero"` // last download or 304 that confirmed the copy
	LastChange   time.Time `json:"last_change,omitzero"`  // when the copy was last replaced
	LastAttempt  time.Time `json:"last_attempt,omitzero"`
	LastError    string    `json:"last_error,omitempty"`
	LastErrorAt  time.Time `json:"last_error_at,omitzero"`
	Failures     int       `json:"failures,omitempty"` // consecutive
	NextAttempt  time.Time `json:"next_attempt,omitzero"`
	Entries      int       `json:"entries"` // of the copy
	BadLines     int       `json:"bad_lines"`
	Size         int64     `json:"size"`
	SHA256       string    `json:"sha256,omitempty"`
}

func statePath(cache, name string) string { return filepath.Join(cache, name+".state.json") }

// readState reads a source's state; a missing or corrupt file is a zero
// state (the copy is then downloaded again unconditionally).
func readState(cache, name string) fetchState {
	var st fetchState
	if b, err := os.ReadFile(statePath(cache, name)); err == nil {
		if json.Unmarshal(b, &st) != nil {
			st = fetchState{}
		}
	}
	return st
}

// writeState replaces a source's state atomically.
func writeState(cache, name string, st fetchState) error {
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(cache, tmpPrefix+name+"-state-*")
	if err != nil {
		return err
	}
	_, err = tmp.Write(append(b, '\n'))
	if err == nil {
		err = tmp.Chmod(0o644) // no secret in it: URLs are hashed
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), statePath(cache, name))
	}
	if err != nil {
		os.Remove(tmp.Name())
	}
	return err
}

// lockSource takes the source's lock file, shared with other processes
// ("picket feeds update" beside a running Picket).
func lockSource(cache, name string) (func(), error) {
	if err := os.MkdirAll(cache, 0o750); err != nil {
		return nil, err
	}
	// Read-only is enough for flock, and works for a lock file another
	// user (root running "picket feeds update") created.
	f, err := os.OpenFile(filepath.Join(cache, name+".lock"), os.O_CREATE|os.O_RDONLY, 0o644)
	if err != nil {
		return nil, err
	}
	if err := lockFile(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() { unlockFile(f); f.Close() }, nil
}

func sourceURLHash(u string) string {
	s := sha256.Sum256([]byte(u))
	return hex.EncodeToString(s[:])
}

// ErrUnknownSource is returned for a name feeds.toml does not have, or
// that is not a download.
var ErrUnknownSource = errors.New("no such URL source")

// Update downloads the source called name now, whatever its schedule;
// force sends no conditional headers (a full download). The error is for
// a bad feeds.toml or an unknown name; a failed download is a Result.
func (f *Fetcher) Update(ctx context.Context, name string, force bool) (Result, error) {
	m, err := ReadManifest(f.dir)
	if err != nil {
		return Result{}, err
	}
	s, ok := m.Source(name)
	if !ok || !s.Remote() {
		return Result{}, fmt.Errorf("feeds: %q: %w", name, ErrUnknownSource)
	}
	r, _ := f.attempt(ctx, m, s, force, false)
	return r, nil
}

// RunDue downloads every URL source that is due (never downloaded, or
// its refresh or back-off is over) and returns the results and when the
// next one is due (zero when there are no URL sources).
func (f *Fetcher) RunDue(ctx context.Context) ([]Result, time.Time, error) {
	m, err := ReadManifest(f.dir)
	if err != nil {
		return nil, time.Time{}, err
	}
	var out []Result
	var next time.Time
	for i := range m.Sources {
		s := &m.Sources[i]
		if !s.Remote() {
			continue
		}
		if ctx.Err() != nil {
			return out, next, ctx.Err()
		}
		due := f.dueAt(m, s, readState(m.Cache(), s.Name))
		if !due.After(f.now()) {
			r, tried := f.attempt(ctx, m, s, false, true)
			if tried {
				out = append(out, r)
			}
			due = r.Next
		}
		if next.IsZero() || due.Before(next) {
			next = due
		}
	}
	return out, next, nil
}

// dueAt is when a source should next be downloaded.
func (f *Fetcher) dueAt(m *Manifest, s *Source, st fetchState) time.Time {
	now := f.now()
	if _, err := os.Stat(m.File(s)); err != nil && st.Failures == 0 {
		return now // no copy yet
	}
	if st.Failures > 0 && !st.NextAttempt.IsZero() {
		return minTime(st.NextAttempt, now.Add(retryCap(s)))
	}
	next := st.LastSuccess.Add(s.Refresh.D())
	if !st.NextAttempt.IsZero() && st.NextAttempt.Before(next) {
		next = st.NextAttempt
	}
	// A clock set back must not postpone the download beyond one refresh.
	return minTime(next, now.Add(s.Refresh.D()))
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// retryCap is the longest back-off of a source.
func retryCap(s *Source) time.Duration { return min(s.Refresh.D(), RetryMax) }

// backoff is the wait after the nth consecutive failure: exponential from
// RetryMin (or the refresh, if shorter) up to retryCap, half of it random.
func (f *Fetcher) backoff(s *Source, n int) time.Duration {
	d := min(RetryMin, s.Refresh.D())
	for i := 1; i < n && d < retryCap(s); i++ {
		d *= 2
	}
	d = min(d, retryCap(s))
	return d/2 + time.Duration(f.jitter()*float64(d/2))
}

// attempt downloads one source, checks the new copy and commits it, and
// records the outcome in the state file. A scheduled attempt first checks,
// under the source's lock, that another process (or another Store during a
// configuration reload) did not just do it: then it returns false and when
// the source is next due.
func (f *Fetcher) attempt(ctx context.Context, m *Manifest, s *Source, force, scheduled bool) (Result, bool) {
	f.attemptMu.Lock()
	defer f.attemptMu.Unlock()
	start := time.Now()
	cache := m.Cache()
	log := f.log.With().Str(reputation.LogFeed, s.Name).Logger()
	unlock, err := lockSource(cache, s.Name)
	if err != nil {
		return f.failed(log, s, fetchState{}, cache, fmt.Errorf("cache directory: %w", err), false), true
	}
	defer unlock()
	st := readState(cache, s.Name)
	if due := f.dueAt(m, s, st); scheduled && due.After(f.now()) {
		return Result{Source: s.Name, Outcome: Unchanged, Entries: st.Entries, Next: due}, false
	}
	st.LastAttempt = f.now()
	file := m.File(s)
	_, statErr := os.Stat(file)
	haveCopy := statErr == nil
	sameURL := st.URLHash == sourceURLHash(s.URL)
	var cond *fetchState
	if haveCopy && sameURL && !force {
		cond = &st
	}

	d, err := download(ctx, f.hc, f.ua, m.Dir(), cache, s, cond)
	if err != nil {
		return f.failed(log, s, st, cache, err, true), true
	}
	defer d.remove()
	if d.notModified || (haveCopy && sameURL && d.sha256 == st.SHA256) {
		st.ETag, st.LastModified = firstNonEmpty(d.etag, st.ETag), firstNonEmpty(d.lastModified, st.LastModified)
		return f.succeeded(log, s, st, cache, Unchanged, start), true
	}
	prev := 0
	switch {
	case haveCopy && sameURL:
		prev = st.Entries
	case haveCopy && st.URLHash == "":
		// No state (lost, corrupt, or the copy put there by hand): the
		// copy on disk is taken as this URL's last good one, so an
		// emptied or cut feed must not replace it; its entries are
		// counted from the file and recorded, whatever this attempt
		// gives. (A state of another URL is a feed the administrator
		// changed: no comparison.)
		prev = copyEntries(file, s)
		st.URLHash, st.Entries = sourceURLHash(s.URL), prev
	}
	rep, err := checkCopy(d.tmp, s, prev)
	if err != nil {
		return f.failed(log, s, st, cache, err, true), true
	}
	if err := commitFile(d.tmp, file); err != nil {
		return f.failed(log, s, st, cache, fmt.Errorf("storing the copy: %w", err), true), true
	}
	d.tmp = ""
	st.URLHash, st.ETag, st.LastModified = sourceURLHash(s.URL), d.etag, d.lastModified
	st.Entries, st.BadLines, st.Size, st.SHA256 = rep.Entries, rep.BadLines, d.size, d.sha256
	st.LastChange = st.LastAttempt
	return f.succeeded(log, s, st, cache, Updated, start), true
}

// checkCopy parses a download (counting only) and refuses one that is
// mostly unusable lines or has lost most entries against the last good
// copy's prev.
func checkCopy(path string, s *Source, prev int) (SourceReport, error) {
	fh, err := os.Open(path)
	if err != nil {
		return SourceReport{}, err
	}
	defer fh.Close()
	rep, err := ParseSource(fh, s, s.Name, countingSink())
	if err != nil {
		return rep, fmt.Errorf("reading the copy: %w", err)
	}
	if rep.BadLines > rep.Entries {
		return rep, fmt.Errorf("%w: %d bad lines, %d entries (first: %s)", ErrUnusable, rep.BadLines, rep.Entries, rep.Bad[0].Msg)
	}
	if prev > 0 && float64(rep.Entries) < s.MinRatio*float64(prev) {
		return rep, fmt.Errorf("%w: %d entries, the last good copy has %d (min_ratio %g)", ErrTooFew, rep.Entries, prev, s.MinRatio)
	}
	return rep, nil
}

// copyEntries counts the entries of the copy at file, read as s reads it;
// 0 when it cannot be read (then there is nothing to keep).
func copyEntries(file string, s *Source) int {
	fh, err := os.Open(file)
	if err != nil {
		return 0
	}
	defer fh.Close()
	rep, err := ParseSource(fh, s, s.Name, countingSink())
	if err != nil {
		return 0
	}
	return rep.Entries
}

// commitFile makes tmp the copy at file, durably. The copy is public data,
// readable by all: a copy "picket feeds update" wrote as root is still
// read by the service's user.
func commitFile(tmp, file string) error {
	fh, err := os.Open(tmp)
	if err != nil {
		return err
	}
	if err = fh.Chmod(0o644); err == nil {
		err = fh.Sync()
	}
	fh.Close()
	if err != nil {
		return err
	}
	if err := os.Rename(tmp, file); err != nil {
		return err
	}
	if d, err := os.Open(filepath.Dir(file)); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

func (f *Fetcher) succeeded(log zerolog.Logger, s *Source, st fetchState, cache string, o Outcome, start time.Time) Result {
	st.LastSuccess, st.Failures = st.LastAttempt, 0
	// Up to a tenth early, never late: installations spread out and the
	// source never goes longer than its refresh without a check.
	refresh := s.Refresh.D()
	st.NextAttempt = st.LastSuccess.Add(refresh - time.Duration(f.jitter()*float64(refresh/10)))
	if err := writeState(cache, s.Name, st); err != nil {
		log.Error().Err(err).Msg("feed state not saved")
	}
	ev := log.Debug()
	if o == Updated {
		ev = log.Info()
	}
	ev.Str(reputation.LogOutcome, o.String()).Int(reputation.LogEntries, st.Entries).Int(reputation.LogBadLines, st.BadLines).
		Int64(reputation.LogBytes, st.Size).Dur(reputation.LogElapsed, time.Since(start)).Time(reputation.LogNext, st.NextAttempt).
		Msg("feed downloaded")
	return Result{Source: s.Name, Outcome: o, Entries: st.Entries, Next: st.NextAttempt}
}

func (f *Fetcher) failed(log zerolog.Logger, s *Source, st fetchState, cache string, err error, save bool) Result {
	if st.LastAttempt.IsZero() {
		st.LastAttempt = f.now()
	}
	st.Failures++
	st.LastError, st.LastErrorAt = describe(err), st.LastAttempt
	st.NextAttempt = st.LastAttempt.Add(f.backoff(s, st.Failures))
	f.mu.Lock()
	f.errors[s.Name]++
	f.mu.Unlock()
	if save {
		if werr := writeState(cache, s.Name, st); werr != nil {
			log.Error().Err(werr).Msg("feed state not saved")
		}
	}
	log.Warn().Str(reputation.LogOutcome, Failed.String()).Err(errors.New(st.LastError)).Int(reputation.LogFailures, st.Failures).
		Time(reputation.LogNext, st.NextAttempt).Int(reputation.LogEntries, st.Entries).
		Msg("feed download failed; keeping the last good copy")
	return Result{Source: s.Name, Outcome: Failed, Entries: st.Entries, Err: err, Next: st.NextAttempt}
}

// describe words a download error for the status without the URL (which
// may hold a key): url.Error's text names it.
func describe(err error) string {
	msg := err.Error()
	if ue, ok := err.(*url.Error); ok {
		msg = ue.Op + ": " + ue.Err.Error()
	}
	if errors.Is(err, context.DeadlineExceeded) {
		msg = "timed out: " + msg
	}
	return msg
}

func firstNonEmpty(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// FetchStatus is what the cache directory knows of a URL source.
type FetchStatus struct {
	LastSuccess time.Time
	LastChange  time.Time
	LastAttempt time.Time
	NextAttempt time.Time
	LastError   string
	LastErrorAt time.Time
	Failures    int    // consecutive
	Errors      uint64 // failed attempts of this process
	Entries     int    // of the copy
	BadLines    int
	Size        int64
}

// Status reads a source's fetch state.
func (f *Fetcher) Status(m *Manifest, s *Source) FetchStatus {
	st := readState(m.Cache(), s.Name)
	f.mu.Lock()
	n := f.errors[s.Name]
	f.mu.Unlock()
	fs := FetchStatus{LastSuccess: st.LastSuccess, LastChange: st.LastChange, LastAttempt: st.LastAttempt,
		LastError: st.LastError, LastErrorAt: st.LastErrorAt, Failures: st.Failures, Errors: n,
		Entries: st.Entries, BadLines: st.BadLines, Size: st.Size}
	fs.NextAttempt = f.dueAt(m, s, st)
	return fs
}
