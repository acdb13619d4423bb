package server

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/picket-proxy/picket/internal/countio"
	"github.com/picket-proxy/picket/reputation"
	"github.com/picket-proxy/picket/reputation/db"
)

// ErrChecksum is returned (wrapped) when an update does not produce the
// database the upstream announced.
var ErrChecksum = db.ErrChecksum

// syncState is what a private server knows of its updates.
type syncState struct {
	lastAttempt, lastSuccess time.Time
	lastErr                  string
	failures                 int           // consecutive
	minWait                  time.Duration // the upstream's, from its last answer
}

func (s *Server) syncStatus() syncState {
	s.stateMu.Lock()
	defer s.stateMu.Unlock()
	return s.sync
}

// syncDone records the end of an update attempt.
func (s *Server) syncDone(attempt time.Time, res syncResult, err error) {
	s.stateMu.Lock()
	defer s.stateMu.Unlock()
	s.sync.lastAttempt = attempt
	if err != nil {
		s.sync.failures++
		s.sync.lastErr = err.Error()
		return
	}
	s.sync.failures, s.sync.lastErr = 0, ""
	s.sync.lastSuccess, s.sync.minWait = time.Now(), res.minWait
}

// nextWait is how long a mirror waits before its next update request:
// every after a success; after failures, every doubled per consecutive
// failure up to MaxBackoff, spread by ±20 % (jitter in [0,1)) so that
// mirrors cut off together do not come back together; never less than
// the upstream's minimum wait.
func nextWait(every, minWait time.Duration, failures int, jitter float64) time.Duration {
	w := every
	if failures > 0 {
		for i := 1; i < failures && w < MaxBackoff; i++ {
			w *= 2
		}
		w = min(w, MaxBackoff)
		w = time.Duration(float64(w) * (0.8 + 0.4*jitter))
	}
	return max(w, minWait)
}

// Sync brings a private server's mirror up to date: the changes since its
// version, or the whole database when the upstream no longer has them or
// the mirror has none. The result is verified against the upstream's
// checksum before it replaces anything (memory or snapshot); a mismatch
// after changes is answered by downloading the whole database. On any
// error the current copy stays and keeps being served.
func (s *Server) Sync(ctx context.Context) error {
	if s.cfg.Role != RolePrivate {
		return errors.New("repserver: only a private server syncs")
	}
	s.syncMu.Lock()
	defer s.syncMu.Unlock()
	cur := s.mirror.Load()
	from := cur.Token()
	if !s.synced.Load() {
		from = ""
	}
	attempt := time.Now()
	next, res, err := s.fetchUpdate(ctx, cur, from)
	if errors.Is(err, ErrChecksum) && from != "" {
		s.log.Warn().Err(err).Msg("the changes did not give the upstream's database; downloading all of it")
		next, res, err = s.fetchUpdate(ctx, cur, "")
	}
	s.syncDone(attempt, res, err)
	if err != nil {
		return err
	}
	if next == nil { // up to date
		s.synced.Store(true)
		return nil
	}
	s.mirror.Store(next)
	s.synced.Store(true)
	s.log.Info().Uint64(reputation.LogVersion, next.Version()).Int(reputation.LogEntries, next.Len()).
		Bool(reputation.LogFull, res.full).Int64(reputation.LogBytes, res.bytes).Msg("mirror updated")
	// Release the old copy now (its mapping goes with it), not at some
	// later collection.
	cur = nil
	debug.FreeOSMemory()
	return nil
}

// syncResult is what one update request brought.
type syncResult struct {
	full    bool
	entries int   // changes, or entries of a whole database
	bytes   int64 // read from the upstream
	minWait time.Duration
}

func (s *Server) snapshotPath() string {
	if s.cfg.Feeds == "" {
		return ""
	}
	return filepath.Join(s.cfg.Feeds, snapshotName)
}

// fetchUpdate asks for the changes since from ("" for the whole database)
// and makes the new database from them. It returns nil when cur is
// already current.
func (s *Server) fetchUpdate(ctx context.Context, cur *db.DB, from string) (*db.DB, syncResult, error) {
	var res syncResult
	ctx, cancel := context.WithTimeout(ctx, 30*time.Minute)
	defer cancel()
	u := strings.TrimRight(s.cfg.Upstream, "/") + reputation.PathUpdate
	if from != "" {
		u += "?from=" + url.QueryEscape(from)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, res, err
	}
	req.Header.Set("Accept", MediaTypeDB+", application/json")
	if s.cfg.UpstreamToken != "" {
		req.Header.Set("Authorization", "Bearer "+s.cfg.UpstreamToken)
	}
	resp, err := s.upstream.Do(req)
	if err != nil {
		return nil, res, fmt.Errorf("repserver: update: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		var e reputation.ErrorResponse
		json.NewDecoder(io.LimitReader(resp.Body, 4096)).Decode(&e)
		return nil, res, &reputation.StatusError{Code: resp.StatusCode, Msg: e.Error}
	}
	body := &countio.Reader{R: resp.Body}
	// Changes are applied to a copy into the snapshot's place (renamed only
	// once verified), so that a restart finds the last good copy.
	t := db.Target{Path: s.snapshotPath(), Version: nextVersion(cur)}
	var next *db.DB
	if mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); mt == MediaTypeDB {
		res.full = true
		next, err = s.receive(body, resp.Header, t, &res)
	} else {
		next, err = s.applyJSON(io.LimitReader(body, maxUpdateResponse), cur, from, t, &res)
	}
	res.bytes = body.N
	return next, res, err
}

// receive takes a whole database file.
func (s *Server) receive(body io.Reader, h http.Header, t db.Target, res *syncResult) (*db.DB, error) {
	sum, err := parseChecksum(h.Get(HeaderChecksum))
	if err != nil {
		return nil, err
	}
	res.minWait = parseMinWait(h.Get(HeaderMinWait))
	// The token too is checked before the file takes the snapshot's place:
	// a restart must not find a copy this sync refused.
	t.Expect, t.Token = &sum, h.Get(HeaderVersion)
	next, err := db.Receive(body, t)
	if err != nil {
		return nil, fmt.Errorf("repserver: update: %w", err)
	}
	if next.Token() == "" || next.Token() != h.Get(HeaderVersion) {
		return nil, fmt.Errorf("repserver: update: the database's version %q is not the announced %q", next.Token(), h.Get(HeaderVersion))
	}
	res.entries = next.Len()
	return next, nil
}

// applyJSON reads a JSON update as a stream: the added entries and the
// removed hashes go straight into Builders (bounded memory however large),
// then into the new database, verified against the checksum.
func (s *Server) applyJSON(body io.Reader, cur *db.DB, from string, t db.Target, res *syncResult) (*db.DB, error) {
	tmp := t.TempDir
	if t.Path != "" {
		tmp = filepath.Dir(t.Path)
	}
	added, removed := db.NewBuilder(0), db.NewBuilder(0)
	added.SetTempDir(tmp)
	removed.SetTempDir(tmp)
	defer added.Discard()
	defer removed.Discard()
	u, err := decodeUpdate(body, added, removed)
	if err != nil {
		return nil, fmt.Errorf("repserver: update: bad response: %w", err)
	}
	res.full, res.minWait = u.Full, parseMinWait(strconv.FormatInt(u.MinWait, 10))
	res.entries = added.Len() + removed.Len()
	if u.Version == "" {
		return nil, errors.New("repserver: update: no version")
	}
	if !u.Full && from != "" && u.Version == cur.Token() && res.entries == 0 {
		return nil, nil
	}
	sum, err := parseChecksum(u.Checksum)
	if err != nil {
		return nil, err
	}
	t.Token, t.Expect = u.Version, &sum
	var next *db.DB
	if u.Full {
		next, err = added.BuildTo(t)
	} else {
		var c db.Changes
		if c.Added, err = added.Build(0); err == nil {
			if c.Removed, err = removed.Build(0); err == nil {
				next, err = cur.ApplyTo(c, t)
			}
		}
	}
	if err != nil {
		return nil, fmt.Errorf("repserver: update to %s: %w", u.Version, err)
	}
	return next, nil
}

// decodeUpdate reads an UpdateResponse token by token, in any field order:
// the entries go to added and removed, the rest into the result.
func decodeUpdate(r io.Reader, added, removed *db.Builder) (UpdateResponse, error) {
	var u UpdateResponse
	dec := json.NewDecoder(r)
	if err := expectDelim(dec, '{'); err != nil {
		return u, err
	}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return u, err
		}
		key, _ := tok.(string)
		switch key {
		case "version":
			err = dec.Decode(&u.Version)
		case "full":
			err = dec.Decode(&u.Full)
		case "checksum":
			err = dec.Decode(&u.Checksum)
		case "min_wait":
			err = dec.Decode(&u.MinWait)
		case "added":
			err = eachElement(dec, func() error {
				var m reputation.WireMatch
				if err := dec.Decode(&m); err != nil {
					return err
				}
				h, err := reputation.ParseHash(m.Hash)
				if err != nil {
					return err
				}
				if m.Verdict > reputation.KindMalware {
					return fmt.Errorf("unknown verdict %d", m.Verdict)
				}
				added.Add(h, reputation.Verdict{Kind: m.Verdict, Category: m.Category, ThreatName: m.Threat})
				return nil
			})
		case "removed":
			err = eachElement(dec, func() error {
				var hs string
				if err := dec.Decode(&hs); err != nil {
					return err
				}
				h, err := reputation.ParseHash(hs)
				if err != nil {
					return err
				}
				removed.Add(h, reputation.Verdict{})
				return nil
			})
		default:
			var skip json.RawMessage
			err = dec.Decode(&skip)
		}
		if err != nil {
			return u, fmt.Errorf("%s: %w", key, err)
		}
	}
	return u, expectDelim(dec, '}')
}

// eachElement calls fn for each element of the array that comes next; null
// is an empty array.
func eachElement(dec *json.Decoder, fn func() error) error {
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	if tok == nil {
		return nil
	}
	if d, ok := tok.(json.Delim); !ok || d != '[' {
		return fmt.Errorf("want an array, got %v", tok)
	}
	for dec.More() {
		if err := fn(); err != nil {
			return err
		}
	}
	return expectDelim(dec, ']')
}

func expectDelim(dec *json.Decoder, want json.Delim) error {
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	if d, ok := tok.(json.Delim); !ok || d != want {
		return fmt.Errorf("want %v, got %v", want, tok)
	}
	return nil
}

func parseChecksum(s string) ([32]byte, error) {
	var sum [32]byte
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != 32 {
		return sum, fmt.Errorf("repserver: update: bad checksum %q", s)
	}
	copy(sum[:], b)
	return sum, nil
}

func parseMinWait(s string) time.Duration {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		return 0
	}
	return time.Duration(min(n, int64(24*time.Hour/time.Second))) * time.Second
}

// nextVersion is the version of a mirror's next copy: its own clock,
// always above the current one.
func nextVersion(cur *db.DB) uint64 {
	return max(uint64(time.Now().UnixNano()), cur.Version()+1)
}
