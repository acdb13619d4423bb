package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/picket-proxy/picket/reputation"
	"github.com/picket-proxy/picket/reputation/db"
)

// ErrChecksum is returned (wrapped) when an update does not produce the
// database the upstream announced.
var ErrChecksum = errors.New("repserver: update checksum mismatch")

// Sync brings a private server's mirror up to date: an incremental update
// from its version, or a full download when the upstream asks for one. The
// result is verified against the upstream's checksum and swapped in
// atomically; on any error the current copy stays.
func (s *Server) Sync(ctx context.Context) error {
	if s.cfg.Role != RolePrivate {
		return errors.New("repserver: only a private server syncs")
	}
	s.syncMu.Lock()
	defer s.syncMu.Unlock()
	cur := s.mirror.Load()
	from := cur.Version()
	if !s.synced.Load() {
		from = 0
	}
	next, full, err := s.fetchUpdate(ctx, cur, from)
	if errors.Is(err, ErrChecksum) && from != 0 {
		s.log.Warn().Err(err).Msg("incremental update did not verify; downloading the full database")
		next, full, err = s.fetchUpdate(ctx, cur, 0)
	}
	if err != nil {
		return err
	}
	if next == nil { // up to date
		s.synced.Store(true)
		return nil
	}
	s.mirror.Store(next)
	s.synced.Store(true)
	s.log.Info().Uint64(reputation.LogVersion, next.Version()).Int(reputation.LogEntries, next.Len()).Bool(reputation.LogFull, full).Msg("mirror updated")
	if s.cfg.Feeds != "" {
		if err := next.WriteFile(s.cfg.Feeds + "/" + snapshotName); err != nil {
			s.log.Error().Err(err).Msg("mirror snapshot not written")
		}
	}
	return nil
}

// fetchUpdate asks for the changes since from and applies them to cur. It
// returns nil when cur is already current.
func (s *Server) fetchUpdate(ctx context.Context, cur *db.DB, from uint64) (*db.DB, bool, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	url := fmt.Sprintf("%s%s?from=%d", strings.TrimRight(s.cfg.Upstream, "/"), reputation.PathUpdate, from)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, false, err
	}
	if s.cfg.UpstreamToken != "" {
		req.Header.Set("Authorization", "Bearer "+s.cfg.UpstreamToken)
	}
	resp, err := s.upstream.Do(req)
	if err != nil {
		return nil, false, fmt.Errorf("repserver: update: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		var e reputation.ErrorResponse
		json.NewDecoder(io.LimitReader(resp.Body, 4096)).Decode(&e)
		return nil, false, &reputation.StatusError{Code: resp.StatusCode, Msg: e.Error}
	}
	var u UpdateResponse
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxUpdateResponse)).Decode(&u); err != nil {
		return nil, false, fmt.Errorf("repserver: update: bad response: %w", err)
	}
	if !u.Full && u.Version == cur.Version() && from != 0 {
		return nil, false, nil
	}
	added := make([]db.Entry, 0, len(u.Added))
	for _, m := range u.Added {
		h, err := reputation.ParseHash(m.Hash)
		if err != nil {
			return nil, false, fmt.Errorf("repserver: update: %w", err)
		}
		if m.Verdict > reputation.KindMalware {
			return nil, false, fmt.Errorf("repserver: update: unknown verdict %d", m.Verdict)
		}
		added = append(added, db.Entry{Hash: h, Verdict: reputation.Verdict{Kind: m.Verdict, Category: m.Category, ThreatName: m.Threat}})
	}
	removed := make([]reputation.Hash, 0, len(u.Removed))
	for _, r := range u.Removed {
		h, err := reputation.ParseHash(r)
		if err != nil {
			return nil, false, fmt.Errorf("repserver: update: %w", err)
		}
		removed = append(removed, h)
	}
	ab := db.NewBuilder(len(added))
	for _, e := range added {
		ab.Add(e.Hash, e.Verdict)
	}
	var next *db.DB
	if u.Full {
		next, err = ab.Build(u.Version)
	} else {
		rb := db.NewBuilder(len(removed))
		for _, h := range removed {
			rb.Add(h, reputation.Verdict{})
		}
		var c db.Changes
		if c.Added, err = ab.Build(0); err == nil {
			if c.Removed, err = rb.Build(0); err == nil {
				next, err = cur.Apply(c, u.Version)
			}
		}
	}
	if err != nil {
		return nil, false, fmt.Errorf("repserver: update: %w", err)
	}
	if sum := fmt.Sprintf("%x", next.Checksum()); sum != u.Checksum {
		return nil, false, fmt.Errorf("%w: version %d", ErrChecksum, u.Version)
	}
	return next, u.Full, nil
}
