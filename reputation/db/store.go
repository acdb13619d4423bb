package db

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/picket-proxy/picket/reputation"
	"github.com/rs/zerolog"
)

// Config configures a Store.
type Config struct {
	// Dir is the feed directory holding feeds.toml.
	Dir string
	// Poll is how often the feeds are checked for changes; 0 means
	// DefaultPoll, negative means never (Reload only).
	Poll time.Duration
	// TTL is the positive cache duration given with answers; 0 means
	// DefaultTTL.
	TTL time.Duration
	// NegativeTTL is the negative cache duration; 0 means DefaultTTL.
	NegativeTTL time.Duration
	// OnChange, if set, is called after each reload that replaced the
	// database (not for the initial load), with the old and the new DB.
	OnChange func(old, new *DB)
	// Fetch configures the downloads of URL sources (store_feeds.go).
	Fetch FetchConfig
	// Compiled is the compiled database file: each load writes it, and
	// Open maps it instead of parsing the feeds when they have not changed
	// since. "" means DefaultCompiled in Dir; "-" keeps no file (every
	// start parses the feeds, the database lives in an unnamed temporary
	// file). When its directory is not writable the Store warns and keeps
	// no file.
	Compiled string
}

// Defaults of Config.
const (
	DefaultPoll = 5 * time.Second
	DefaultTTL  = time.Minute
)

// Store holds the current DB of a feed directory and replaces it when the
// feeds change. Lookups read the current DB through an atomic pointer and
// never wait for a reload.
type Store struct {
	dir         string
	ttl, negTTL time.Duration
	log         zerolog.Logger

	cur atomic.Pointer[DB]

	mu          sync.Mutex // serialises reloads
	fingerprint [32]byte
	report      *Report
	manifest    *Manifest // of the DB in force

	fetch *fetchLoop // downloads of URL sources (store_feeds.go)

	onChange func(old, new *DB)
	compiled string // "" none

	stop      chan struct{}
	done      chan struct{}
	closeOnce sync.Once
}

var _ reputation.InMemory = (*Store)(nil)

// Open loads the feeds and, unless cfg.Poll is negative, starts watching
// them. Close stops the watcher.
func Open(cfg Config, log zerolog.Logger) (*Store, error) {
	s := &Store{
		dir: cfg.Dir, ttl: cfg.TTL, negTTL: cfg.NegativeTTL, onChange: cfg.OnChange,
		log:  log.With().Str(reputation.LogComponent, "feeds").Logger(),
		stop: make(chan struct{}), done: make(chan struct{}),
	}
	if s.ttl <= 0 {
		s.ttl = DefaultTTL
	}
	if s.negTTL <= 0 {
		s.negTTL = DefaultTTL
	}
	s.compiled = s.compiledPath(cfg.Compiled)
	if err := s.openCompiled(); err != nil {
		return nil, err
	}
	startFetchLoop(s, cfg.Dir, cfg.Fetch, log)
	poll := cfg.Poll
	if poll == 0 {
		poll = DefaultPoll
	}
	if poll < 0 {
		close(s.done)
		return s, nil
	}
	go s.watch(poll)
	return s, nil
}

func (s *Store) watch(every time.Duration) {
	defer close(s.done)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			if _, err := s.Check(); err != nil {
				s.log.Error().Err(err).Msg("feed reload failed; keeping the current database")
			}
		}
	}
}

// DB returns the current database.
func (s *Store) DB() *DB { return s.cur.Load() }

// Check reloads the feeds if feeds.toml or a source file changed (size or
// modification time) and reports whether it did.
func (s *Store) Check() (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	fp, err := s.fingerprintNow()
	if err != nil {
		return false, err
	}
	if fp == s.fingerprint {
		return false, nil
	}
	return true, s.reloadLocked(fp)
}

// Reload loads the feeds now if feeds.toml or a source changed (SIGHUP):
// rebuilding millions of entries that did not change would only cost CPU
// and memory. On error the current database stays.
func (s *Store) Reload() error {
	_, err := s.Check()
	return err
}

// Report returns what the last successful load found (bad lines).
func (s *Store) Report() *Report {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.report
}

// compiledPath resolves Config.Compiled, checking that its directory takes
// new files.
func (s *Store) compiledPath(c string) string {
	switch c {
	case "-":
		return ""
	case "":
		c = filepath.Join(s.dir, DefaultCompiled)
	}
	f, err := os.CreateTemp(filepath.Dir(c), buildPrefix+"probe-*")
	if err != nil {
		s.log.Warn().Err(err).Str(reputation.LogFile, c).Msg("cannot write the compiled database; every start will parse the feeds")
		return ""
	}
	f.Close()
	os.Remove(f.Name())
	removeStale(filepath.Dir(c), buildPrefix, time.Now())
	return c
}

// removeStale removes the regular files named prefix* in dir that are over
// a day old: the temporary files of a download or a build that never
// finished (a crash, a kill), named so until renamed. A day old, none can
// still be in use by another process.
func removeStale(dir, prefix string, now time.Time) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), prefix) {
			continue
		}
		if fi, err := e.Info(); err == nil && fi.Mode().IsRegular() && now.Sub(fi.ModTime()) > 24*time.Hour {
			os.Remove(filepath.Join(dir, e.Name()))
		}
	}
}

// openCompiled maps the compiled database when it was built from the
// feeds as they are now, else loads the feeds.
func (s *Store) openCompiled() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	fp, err := s.fingerprintNow()
	if err != nil {
		return err
	}
	if s.compiled != "" {
		start := time.Now()
		h, err := readHeader(s.compiled)
		if err == nil && h.fingerprint == fp {
			d, err := ReadFile(s.compiled)
			var r *Report
			var m *Manifest
			if err == nil {
				r, err = d.restore()
			}
			if err == nil {
				m, err = ReadManifest(s.dir)
			}
			if err == nil {
				s.cur.Store(d)
				s.fingerprint, s.report, s.manifest = fp, r, m
				s.log.Info().Uint64(reputation.LogVersion, d.Version()).Int(reputation.LogEntries, d.Len()).
					Str(reputation.LogFile, s.compiled).Dur(reputation.LogElapsed, time.Since(start)).Msg("compiled feeds opened")
				return nil
			}
			s.log.Warn().Err(err).Str(reputation.LogFile, s.compiled).Msg("compiled database unusable; loading the feeds")
		}
	}
	return s.reloadLocked(fp)
}

func (s *Store) reloadLocked(fp [32]byte) error {
	start := time.Now()
	version := uint64(start.UnixNano())
	old := s.cur.Load()
	if old != nil && version <= old.Version() {
		version = old.Version() + 1
	}
	m, err := ReadManifest(s.dir)
	if err != nil {
		return err
	}
	b := NewBuilder(0)
	if s.compiled != "" {
		b.SetTempDir(filepath.Dir(s.compiled))
	}
	b.setFingerprint(fp)
	d, r, err := m.load(b, Target{Path: s.compiled, Version: version})
	if err != nil {
		return err
	}
	s.cur.Store(d)
	s.fingerprint, s.report, s.manifest = fp, r, m
	for _, src := range r.Sources {
		for _, b := range src.Bad {
			s.log.Warn().Str(reputation.LogFile, b.File).Int(reputation.LogLine, b.Line).Msg("bad feed line: " + b.Msg)
		}
		if src.BadLines > len(src.Bad) {
			s.log.Warn().Str(reputation.LogFile, src.Path).Int(reputation.LogBadLines, src.BadLines-len(src.Bad)).Msg("more bad feed lines not shown")
		}
	}
	s.log.Info().Uint64(reputation.LogVersion, version).Int(reputation.LogEntries, d.Len()).
		Int(reputation.LogBadLines, r.BadLines()).Dur(reputation.LogElapsed, time.Since(start)).Msg("feeds loaded")
	if s.onChange != nil && old != nil {
		s.onChange(old, d)
	}
	// Release the old copy now rather than at some later collection (its
	// mapping goes with it), and the heap the parsing used.
	old = nil
	debug.FreeOSMemory()
	return nil
}

// fingerprintNow hashes feeds.toml, the size and mtime of every source,
// and the build of Picket (whose parsers made the compiled file).
func (s *Store) fingerprintNow() ([32]byte, error) {
	m, err := ReadManifest(s.dir)
	if err != nil {
		return [32]byte{}, err
	}
	h := sha256.New()
	fmt.Fprintf(h, "picket %d %s\x00", fileFormat, buildRevision)
	data, _ := os.ReadFile(filepath.Join(s.dir, ManifestName))
	h.Write(data)
	for i := range m.Sources {
		src := &m.Sources[i]
		fi, err := os.Stat(m.File(src))
		if errors.Is(err, fs.ErrNotExist) && src.Remote() {
			fmt.Fprintf(h, "\x00%s\x00missing", src.Name) // not downloaded yet
			continue
		}
		if err != nil {
			return [32]byte{}, fmt.Errorf("feeds: source %s: %w", src.Name, err)
		}
		fmt.Fprintf(h, "\x00%s\x00%d\x00%d", src.Name, fi.Size(), fi.ModTime().UnixNano())
	}
	var fp [32]byte
	h.Sum(fp[:0])
	return fp, nil
}

// FindPrefixes answers from the current database.
func (s *Store) FindPrefixes(ctx context.Context, prefixes []reputation.Prefix) (reputation.Answer, error) {
	return Answer(s.DB(), prefixes, s.ttl, s.negTTL, reputation.SourceDatabase), nil
}

// InMemory marks the Store as a backend that answers from memory without
// waiting (reputation.InMemory).
func (s *Store) InMemory() {}

// Answer looks prefixes up in d and sets the TTLs and source.
func Answer(d *DB, prefixes []reputation.Prefix, ttl, negTTL time.Duration, src reputation.Source) reputation.Answer {
	a := reputation.Answer{NegativeTTL: negTTL, Source: src}
	es := d.FindAll(nil, prefixes)
	if len(es) == 0 {
		return a
	}
	a.Matches = make([]reputation.Match, len(es))
	for i, e := range es {
		v := e.Verdict
		v.TTL, v.Source = ttl, src
		a.Matches[i] = reputation.Match{Hash: e.Hash, Verdict: v}
	}
	return a
}

// Close stops the watcher and the downloads. It is idempotent.
func (s *Store) Close() error {
	s.closeOnce.Do(func() { close(s.stop) })
	<-s.done
	s.fetch.stop()
	return nil
}
