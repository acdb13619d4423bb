package db

import (
	"context"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/rs/zerolog"
)

// FetchConfig configures a Store's downloads of URL sources.
type FetchConfig struct {
	// HTTPClient downloads the sources; nil means DefaultHTTPClient.
	HTTPClient *http.Client
	// UserAgent is sent with downloads; "" means "Picket".
	UserAgent string
	// Now is the clock of the schedule and the status; nil means time.Now.
	Now func() time.Time
	// Jitter returns a number in [0, 1) spreading download times; nil
	// means a random one.
	Jitter func() float64
	// Manual leaves downloads to FetchDue and Fetch (tests, tools): no
	// background schedule.
	Manual bool
}

// maxFetchWait is the longest the download loop sleeps: it then re-reads
// feeds.toml (new sources, changed refresh) and the state files (another
// process's downloads).
const maxFetchWait = time.Minute

// fetchLoop runs a Store's downloads in the background.
type fetchLoop struct {
	f      *Fetcher
	now    func() time.Time
	cancel context.CancelFunc
	done   chan struct{}
	once   sync.Once
}

func startFetchLoop(s *Store, dir string, cfg FetchConfig, log zerolog.Logger) {
	l := &fetchLoop{
		f:    NewFetcher(FetcherConfig{Dir: dir, HTTPClient: cfg.HTTPClient, UserAgent: cfg.UserAgent, Now: cfg.Now, Jitter: cfg.Jitter}, log),
		done: make(chan struct{}),
	}
	l.now = l.f.now
	if s.manifest != nil {
		removeStale(s.manifest.Cache(), tmpPrefix, time.Now())
	}
	ctx, cancel := context.WithCancel(context.Background())
	l.cancel = cancel
	s.fetch = l
	if cfg.Manual {
		close(l.done)
		return
	}
	go l.run(ctx, s)
}

func (l *fetchLoop) run(ctx context.Context, s *Store) {
	defer close(l.done)
	for {
		_, next, err := s.FetchDue(ctx)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			s.log.Error().Err(err).Msg("feed downloads: feeds.toml unreadable; keeping the current database")
		}
		wait := maxFetchWait
		if !next.IsZero() {
			wait = min(max(next.Sub(l.now()), 0), maxFetchWait)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// stop cancels a download in flight and waits for the loop to end.
func (l *fetchLoop) stop() {
	if l == nil {
		return
	}
	l.once.Do(l.cancel)
	<-l.done
}

// FetchDue downloads the URL sources that are due and reloads the database
// if any changed. It returns the results and when the next download is due.
func (s *Store) FetchDue(ctx context.Context) ([]Result, time.Time, error) {
	rs, next, err := s.fetch.f.RunDue(ctx)
	s.reloadIfUpdated(rs...)
	return rs, next, err
}

// Fetch downloads the URL source called name now (force: unconditionally)
// and reloads the database if it changed.
func (s *Store) Fetch(ctx context.Context, name string, force bool) (Result, error) {
	r, err := s.fetch.f.Update(ctx, name, force)
	if err == nil {
		s.reloadIfUpdated(r)
	}
	return r, err
}

// reloadIfUpdated reloads after a new copy, unless the watcher already
// did (Check compares the files' fingerprint: one load per new copy).
func (s *Store) reloadIfUpdated(rs ...Result) {
	for _, r := range rs {
		if r.Outcome == Updated {
			if _, err := s.Check(); err != nil {
				s.log.Error().Err(err).Msg("feed downloaded but the reload failed; keeping the current database")
			}
			return
		}
	}
}

// SourceStatus is one source's freshness: for GET /api/v1/status, the
// metrics and "picket feeds list".
type SourceStatus struct {
	Name   string
	Format string
	URL    string // a download's URL without its query; "" for a local file
	Path   string // the file read
	// Entries and BadLines are those of the database in force (for "feeds
	// list", of the copy on disk).
	Entries  int
	BadLines int
	// Missing is true for a download that has no copy yet.
	Missing bool
	// LastSuccess is the last download or check that confirmed the copy
	// (a local file: its modification time); LastChange when the copy last
	// changed.
	LastSuccess, LastChange  time.Time
	LastAttempt, NextAttempt time.Time
	LastError                string
	LastErrorAt              time.Time
	// Failures is the number of consecutive failed downloads; Errors the
	// failed downloads of this process.
	Failures int
	Errors   uint64
	// Age is the time since LastSuccess (0 when there was none).
	Age time.Duration
	// StaleAfter is the source's stale_after (0: never stale).
	StaleAfter time.Duration
	// Stale is true when Age is beyond StaleAfter or a download has no
	// copy yet: Picket then reports itself degraded.
	Stale bool
}

// Sources returns the freshness of the database's sources.
func (s *Store) Sources() []SourceStatus {
	s.mu.Lock()
	m, r := s.manifest, s.report
	s.mu.Unlock()
	if m == nil {
		return nil
	}
	return Statuses(m, r, s.fetch.f, s.fetch.now())
}

// Statuses builds the sources' freshness from a manifest, the report of
// the database in force (nil: from the copies' fetch state) and the
// fetcher's state files, at now.
func Statuses(m *Manifest, r *Report, f *Fetcher, now time.Time) []SourceStatus {
	out := make([]SourceStatus, 0, len(m.Sources))
	for i := range m.Sources {
		src := &m.Sources[i]
		st := SourceStatus{Name: src.Name, Format: src.Format, URL: src.DisplayURL(), Path: m.rel(m.File(src)),
			StaleAfter: src.StaleAfter.D()}
		rep, loaded := r.Source(src.Name)
		if src.Remote() {
			fs := f.Status(m, src)
			st.LastSuccess, st.LastChange, st.LastAttempt, st.NextAttempt = fs.LastSuccess, fs.LastChange, fs.LastAttempt, fs.NextAttempt
			st.LastError, st.LastErrorAt, st.Failures, st.Errors = fs.LastError, fs.LastErrorAt, fs.Failures, fs.Errors
			st.Entries, st.BadLines = fs.Entries, fs.BadLines
			if fi, err := os.Stat(m.File(src)); err != nil {
				st.Missing = true
			} else if st.LastSuccess.IsZero() {
				st.LastSuccess, st.LastChange = fi.ModTime(), fi.ModTime() // a copy without its state file
			}
		} else if fi, err := os.Stat(m.File(src)); err == nil {
			st.LastSuccess, st.LastChange = fi.ModTime(), fi.ModTime()
		}
		if loaded {
			st.Entries, st.BadLines, st.Missing = rep.Entries, rep.BadLines, rep.Missing
			if rep.Error != "" && st.LastError == "" {
				st.LastError = "the copy cannot be read: " + rep.Error
			}
		}
		if !st.LastSuccess.IsZero() {
			st.Age = max(now.Sub(st.LastSuccess), 0)
		}
		st.Stale = (src.Remote() && (st.Missing || st.LastSuccess.IsZero())) || (st.StaleAfter > 0 && st.Age > st.StaleAfter)
		out = append(out, st)
	}
	return out
}
