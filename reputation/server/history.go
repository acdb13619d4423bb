package server

import (
	"encoding/base64"
	"encoding/binary"
	"sync"
	"sync/atomic"

	"github.com/picket-proxy/picket/reputation/db"
)

// history keeps a cloud server's last changes so that mirrors can update
// incrementally. Each step turns one version into the next as db.Changes
// (small ones in memory, large ones in unnamed files). Together the steps
// hold at most half as many changes as the database has entries: a mirror
// further behind than that downloads the database instead, which costs
// about as much.
type history struct {
	max   int // steps kept
	mu    sync.Mutex
	steps []step // oldest first, contiguous: steps[i].to == steps[i+1].from

	// published is the database mirrors are offered: the store's, once
	// the step that leads to it is recorded and its checksum known (a
	// mirror asking in between gets the version before, consistent with
	// the steps, rather than the whole database).
	published atomic.Pointer[db.DB]

	hold func() // tests: called while a step is being recorded

	composed struct { // the last composition asked for (mirrors at one version ask alike)
		from, to uint64
		c        db.Changes
	}
}

// step turns version from into version to.
type step struct {
	from, to uint64
	c        db.Changes
}

// minHistoryBudget is the fewest changes the history may hold, however
// small the database.
const minHistoryBudget = 4096

// record is the store's OnChange hook: it keeps the changes from old to
// new, computes new's checksum now rather than on the first update
// request, and then publishes new.
func (h *history) record(old, new *db.DB) {
	c, err := db.Diff(old, new)
	new.Checksum()
	if h.hold != nil {
		h.hold()
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	defer h.published.Store(new)
	if err != nil || (len(h.steps) > 0 && h.steps[len(h.steps)-1].to != old.Version()) {
		h.steps = nil // a gap: mirrors behind it download the database
	}
	if err == nil {
		h.steps = append(h.steps, step{from: old.Version(), to: new.Version(), c: c})
	}
	budget := max(new.Len()/2, minHistoryBudget)
	total := 0
	for _, s := range h.steps {
		total += s.c.Len()
	}
	for len(h.steps) > 0 && (len(h.steps) > h.max || total > budget) {
		total -= h.steps[0].c.Len()
		h.steps = h.steps[1:]
	}
	h.steps = append([]step(nil), h.steps...) // let the dropped ones go
}

// since returns the changes from version from to version to; ok is false
// when from is not in the history (the mirror needs the database).
func (h *history) since(from, to uint64) (c db.Changes, ok bool, err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	start := -1
	for i, s := range h.steps {
		if s.from == from {
			start = i
			break
		}
	}
	if start < 0 || h.steps[len(h.steps)-1].to != to {
		return db.Changes{}, false, nil
	}
	if start == len(h.steps)-1 {
		return h.steps[start].c, true, nil
	}
	if h.composed.c.Added != nil && h.composed.from == from && h.composed.to == to {
		return h.composed.c, true, nil
	}
	cs := make([]db.Changes, 0, len(h.steps)-start)
	for _, s := range h.steps[start:] {
		cs = append(cs, s.c)
	}
	if c, err = db.Compose(cs); err != nil {
		return db.Changes{}, false, err
	}
	h.composed.from, h.composed.to, h.composed.c = from, to, c
	return c, true, nil
}

// versionToken is the opaque version token a cloud server gives mirrors
// for a database version. Mirrors send it back as it is.
func versionToken(v uint64) string {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], v)
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// parseToken is the inverse of versionToken; ok is false for anything
// else (the mirror gets the database).
func parseToken(t string) (uint64, bool) {
	b, err := base64.RawURLEncoding.DecodeString(t)
	if err != nil || len(b) != 8 {
		return 0, false
	}
	return binary.BigEndian.Uint64(b), true
}
