package server

import (
	"sync"

	"github.com/picket-proxy/picket/reputation"
	"github.com/picket-proxy/picket/reputation/db"
)

// history keeps a cloud server's last changes so that mirrors can update
// incrementally.
type history struct {
	max    int
	mu     sync.Mutex
	deltas []delta // oldest first, contiguous: deltas[i].to == deltas[i+1].from
}

// delta turns version from into version to.
type delta struct {
	from, to uint64
	added    []db.Entry
	removed  []reputation.Hash
}

// record is the store's OnChange hook.
func (h *history) record(old, new *db.DB) {
	c, err := db.Diff(old, new)
	if err != nil {
		h.mu.Lock()
		h.deltas = nil // mirrors get a full download
		h.mu.Unlock()
		return
	}
	var added []db.Entry
	var removed []reputation.Hash
	c.Added.All(func(e db.Entry) { added = append(added, e) })
	c.Removed.All(func(e db.Entry) { removed = append(removed, e.Hash) })
	h.mu.Lock()
	defer h.mu.Unlock()
	if n := len(h.deltas); n > 0 && h.deltas[n-1].to != old.Version() {
		h.deltas = nil // a gap: start over
	}
	h.deltas = append(h.deltas, delta{from: old.Version(), to: new.Version(), added: added, removed: removed})
	if len(h.deltas) > h.max {
		h.deltas = h.deltas[len(h.deltas)-h.max:]
	}
}

// since composes the deltas from version from to version to; ok is false
// when from is not in the history (the mirror needs a full download).
func (h *history) since(from, to uint64) (added []db.Entry, removed []reputation.Hash, ok bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	start := -1
	for i, d := range h.deltas {
		if d.from == from {
			start = i
			break
		}
	}
	if start < 0 || h.deltas[len(h.deltas)-1].to != to {
		return nil, nil, false
	}
	type change struct {
		e       db.Entry
		removed bool
	}
	state := make(map[reputation.Hash]change)
	var order []reputation.Hash
	for _, d := range h.deltas[start:] {
		for _, r := range d.removed {
			if _, seen := state[r]; !seen {
				order = append(order, r)
			}
			state[r] = change{removed: true}
		}
		for _, e := range d.added {
			if _, seen := state[e.Hash]; !seen {
				order = append(order, e.Hash)
			}
			state[e.Hash] = change{e: e}
		}
	}
	for _, hh := range order {
		if c := state[hh]; c.removed {
			removed = append(removed, hh)
		} else {
			added = append(added, c.e)
		}
	}
	return added, removed, true
}
