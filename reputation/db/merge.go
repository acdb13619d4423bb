package db

import (
	"bytes"
	"container/heap"
	"fmt"
	"runtime"
)

// Changes turn one database into another: the entries added or changed,
// with their new verdicts, and the hashes removed. Both are DBs, sorted by
// hash (Removed's verdicts are empty), so that a large change costs a
// mapped file, not memory.
type Changes struct {
	Added, Removed *DB
}

// Len is the number of changes.
func (c Changes) Len() int { return c.Added.Len() + c.Removed.Len() }

// Diff returns the changes from old to new, reading both once in hash
// order.
func Diff(old, new *DB) (Changes, error) {
	add := newMergeWriter(Target{}, max(new.n-old.n, 0)+64, 0)
	rem := newMergeWriter(Target{}, max(old.n-new.n, 0)+64, 0)
	i, j := 0, 0
	for i < old.n || j < new.n {
		var c int
		switch {
		case j == new.n:
			c = -1
		case i == old.n:
			c = 1
		default:
			c = bytes.Compare(old.hashAt(i), new.hashAt(j))
		}
		switch {
		case c < 0:
			rem.addHash(old.hashAt(i))
			i++
		case c > 0:
			add.add(new, j)
			j++
		default:
			if !sameVerdict(old, old.ref(i), new, new.ref(j)) {
				add.add(new, j)
			}
			i++
			j++
		}
	}
	runtime.KeepAlive(old)
	runtime.KeepAlive(new)
	a, err := add.finish(header{version: new.Version()})
	if err != nil {
		rem.abort()
		return Changes{}, err
	}
	r, err := rem.finish(header{version: new.Version()})
	if err != nil {
		return Changes{}, err
	}
	return Changes{Added: a, Removed: r}, nil
}

// sameVerdict compares two encoded verdicts by value.
func sameVerdict(x *DB, rx uint32, y *DB, ry uint32) bool {
	vx := decodeVerdict(x.blobs, rx, len(x.cats))
	vy := decodeVerdict(y.blobs, ry, len(y.cats))
	return vx.kind == vy.kind && !vx.invalid && !vy.invalid &&
		rawCategory(vx, x.cats) == rawCategory(vy, y.cats) && bytes.Equal(vx.name, vy.name)
}

// Apply returns d with c applied, at version: removed hashes deleted, added
// ones put (replacing the verdict of one present). It reads d and the
// changes once in hash order and writes the result straight into its
// final layout (in memory when small, else an unnamed temporary file); d
// is unchanged.
func (d *DB) Apply(c Changes, version uint64) (*DB, error) {
	return d.ApplyTo(c, Target{Version: version})
}

// ApplyTo is Apply into t.
func (d *DB) ApplyTo(c Changes, t Target) (*DB, error) {
	add, rem := c.Added, c.Removed
	if add == nil {
		add = Empty(0)
	}
	if rem == nil {
		rem = Empty(0)
	}
	if len(t.Token) > maxTokenLen {
		return nil, fmt.Errorf("db: token longer than %d bytes", maxTokenLen)
	}
	w := newMergeWriter(t, d.n+add.n, int64(len(d.data)+len(add.data)))
	i, j, k := 0, 0, 0
	for i < d.n || j < add.n {
		if j < add.n && (i == d.n || bytes.Compare(add.hashAt(j), d.hashAt(i)) <= 0) {
			if i < d.n && bytes.Equal(add.hashAt(j), d.hashAt(i)) {
				i++ // replaced
			}
			w.add(add, j)
			j++
			continue
		}
		h := d.hashAt(i)
		for k < rem.n && bytes.Compare(rem.hashAt(k), h) < 0 {
			k++
		}
		if !(k < rem.n && bytes.Equal(rem.hashAt(k), h)) {
			w.add(d, i)
		}
		i++
	}
	runtime.KeepAlive(d)
	runtime.KeepAlive(add)
	runtime.KeepAlive(rem)
	return w.finish(header{version: t.Version, token: t.Token})
}

// mergeWriter writes a database from records that come in hash order,
// re-encoding their verdicts from the DBs they come from.
type mergeWriter struct {
	enc verdictEncoder
	out *output
	a   *assembler
}

func newMergeWriter(t Target, n int, size int64) *mergeWriter {
	w := &mergeWriter{}
	w.enc.init(n)
	w.enc.blobs.create = tempFile(t.TempDir, true)
	w.out = newOutput(t, size)
	w.a = newAssembler(w.out, n)
	return w
}

// add appends record i of src.
func (w *mergeWriter) add(src *DB, i int) { w.a.record(src.hashAt(i), w.enc.refFrom(src, src.ref(i))) }

// addHash appends a hash with an empty verdict.
func (w *mergeWriter) addHash(h []byte) { w.a.record(h, w.enc.ref(0, "", "")) }

func (w *mergeWriter) abort() {
	w.out.abort()
	w.enc.blobs.close()
}

func (w *mergeWriter) finish(hd header) (*DB, error) {
	defer w.enc.blobs.close()
	if w.enc.err != nil {
		w.out.abort()
		return nil, w.enc.err
	}
	return w.a.finish(hd, &w.enc, nil)
}

// Compose returns the changes that cs make one after the other: for each
// hash, what the last of them to mention it did. It merges them in hash
// order, without a map.
func Compose(cs []Changes) (Changes, error) {
	n := 0
	var h cursors
	for i, c := range cs {
		for _, cur := range []cursor{{db: c.Added, step: i, add: true}, {db: c.Removed, step: i}} {
			if cur.db != nil && cur.db.n > 0 {
				h = append(h, cur)
				n += cur.db.n
			}
		}
	}
	heap.Init(&h)
	add := newMergeWriter(Target{}, n+64, 0)
	rem := newMergeWriter(Target{}, n+64, 0)
	for len(h) > 0 {
		top := h[0]
		hash := top.hash()
		if top.add {
			add.add(top.db, top.i)
		} else {
			rem.addHash(hash)
		}
		for len(h) > 0 && bytes.Equal(h[0].hash(), hash) {
			if h[0].i++; h[0].i == h[0].db.n {
				heap.Pop(&h)
			} else {
				heap.Fix(&h, 0)
			}
		}
	}
	for _, c := range cs {
		runtime.KeepAlive(c.Added)
		runtime.KeepAlive(c.Removed)
	}
	a, err := add.finish(header{})
	if err != nil {
		rem.abort()
		return Changes{}, err
	}
	r, err := rem.finish(header{})
	if err != nil {
		return Changes{}, err
	}
	return Changes{Added: a, Removed: r}, nil
}

// cursor reads one side of one step of Compose.
type cursor struct {
	db   *DB
	i    int
	step int
	add  bool
}

func (c *cursor) hash() []byte { return c.db.hashAt(c.i) }

// cursors is a heap by hash, then latest step first.
type cursors []cursor

func (h cursors) Len() int { return len(h) }
func (h cursors) Less(i, j int) bool {
	if c := bytes.Compare(h[i].hash(), h[j].hash()); c != 0 {
		return c < 0
	}
	return h[i].step > h[j].step
}
func (h cursors) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *cursors) Push(x any)   { *h = append(*h, x.(cursor)) }
func (h *cursors) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}
