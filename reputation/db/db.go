package db

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"slices"
	"sort"

	"github.com/picket-proxy/picket/reputation"
)

// Entry is one full hash with its verdict (TTL and Source unset).
type Entry struct {
	Hash    reputation.Hash
	Verdict reputation.Verdict
}

// DB is an immutable, compact index of entries. Each entry costs its 32-byte
// hash and a 4-byte index into a table of distinct verdicts; a fixed 256 KiB
// table of offsets by the hash's first two bytes narrows every search.
type DB struct {
	version  uint64
	hashes   []reputation.Hash    // sorted, unique
	vidx     []uint32             // verdict of hashes[i]: verdicts[vidx[i]]
	verdicts []reputation.Verdict // distinct verdicts
	index    []uint32             // len 65537: hashes with first two bytes b start at index[b]
	// nets are the feeds' address lists (nets.go), built by Load beside
	// the hashes; nil when none. Diff, Apply and snapshot files do not
	// carry them (a repserver serves hashes only): a DB the embedded Store
	// restores from a file must get them from the feeds again.
	nets *Networks
}

// Version is the database's version: increasing with every change.
func (d *DB) Version() uint64 { return d.version }

// Len is the number of entries.
func (d *DB) Len() int { return len(d.hashes) }

// Bytes is the memory held by the index, in bytes, not counting the
// strings of the verdict table.
func (d *DB) Bytes() int {
	return len(d.hashes)*32 + len(d.vidx)*4 + len(d.index)*4 + len(d.verdicts)*int(verdictSize)
}

const verdictSize = 56 // unsafe.Sizeof(reputation.Verdict{}) on 64-bit

// Get returns the verdict of a full hash.
func (d *DB) Get(h reputation.Hash) (reputation.Verdict, bool) {
	lo, hi := d.bucket(h[0], h[1])
	i := lo + sort.Search(hi-lo, func(i int) bool { return bytes.Compare(d.hashes[lo+i][:], h[:]) >= 0 })
	if i < hi && d.hashes[i] == h {
		return d.verdicts[d.vidx[i]], true
	}
	return reputation.Verdict{}, false
}

// Find appends to dst the entries whose hash starts with p.
func (d *DB) Find(dst []Entry, p reputation.Prefix) []Entry {
	var pb [4]byte
	binary.BigEndian.PutUint32(pb[:], uint32(p))
	lo, hi := d.bucket(pb[0], pb[1])
	i := lo + sort.Search(hi-lo, func(i int) bool { return bytes.Compare(d.hashes[lo+i][:4], pb[:]) >= 0 })
	for ; i < hi && d.hashes[i].Prefix() == p; i++ {
		dst = append(dst, Entry{Hash: d.hashes[i], Verdict: d.verdicts[d.vidx[i]]})
	}
	return dst
}

func (d *DB) bucket(b0, b1 byte) (int, int) {
	if len(d.index) == 0 {
		return 0, 0
	}
	b := int(b0)<<8 | int(b1)
	return int(d.index[b]), int(d.index[b+1])
}

// All calls fn for every entry in hash order.
func (d *DB) All(fn func(Entry)) {
	for i, h := range d.hashes {
		fn(Entry{Hash: h, Verdict: d.verdicts[d.vidx[i]]})
	}
}

// Checksum is a SHA-256 over every entry in hash order (hash, kind,
// category, threat name): equal databases have equal checksums, whatever
// their version.
func (d *DB) Checksum() [32]byte {
	s := sha256.New()
	var buf []byte
	for i, h := range d.hashes {
		v := d.verdicts[d.vidx[i]]
		buf = append(buf[:0], h[:]...)
		buf = append(buf, byte(v.Kind))
		buf = binary.AppendUvarint(buf, uint64(len(v.Category)))
		buf = append(buf, v.Category...)
		buf = binary.AppendUvarint(buf, uint64(len(v.ThreatName)))
		buf = append(buf, v.ThreatName...)
		s.Write(buf)
	}
	var out [32]byte
	s.Sum(out[:0])
	return out
}

// Builder collects entries for a DB. Adding a hash twice keeps the more
// severe verdict.
type Builder struct {
	entries  []bentry
	verdicts []reputation.Verdict
	ids      map[reputation.Verdict]uint32
}

type bentry struct {
	hash reputation.Hash
	v    uint32
}

// NewBuilder returns a Builder with room for n entries.
func NewBuilder(n int) *Builder {
	return &Builder{entries: make([]bentry, 0, n), ids: make(map[reputation.Verdict]uint32)}
}

// Add adds an entry. Only Kind, Category and ThreatName of v are kept.
func (b *Builder) Add(h reputation.Hash, v reputation.Verdict) {
	v = reputation.Verdict{Kind: v.Kind, Category: v.Category, ThreatName: v.ThreatName}
	id, ok := b.ids[v]
	if !ok {
		id = uint32(len(b.verdicts))
		b.verdicts = append(b.verdicts, v)
		b.ids[v] = id
	}
	b.entries = append(b.entries, bentry{hash: h, v: id})
}

// Build sorts and indexes the entries. The Builder must not be used after.
func (b *Builder) Build(version uint64) *DB {
	es := b.entries
	slices.SortFunc(es, func(x, y bentry) int { return bytes.Compare(x.hash[:], y.hash[:]) })
	d := &DB{version: version, verdicts: b.verdicts}
	// Merge duplicates, keeping the most severe verdict.
	n := 0
	for i := range es {
		if n > 0 && es[n-1].hash == es[i].hash {
			if b.verdicts[es[i].v].Worse(b.verdicts[es[n-1].v]) {
				es[n-1].v = es[i].v
			}
			continue
		}
		es[n] = es[i]
		n++
	}
	es = es[:n]
	d.hashes = make([]reputation.Hash, n)
	d.vidx = make([]uint32, n)
	for i, e := range es {
		d.hashes[i], d.vidx[i] = e.hash, e.v
	}
	b.entries = nil
	d.buildIndex()
	return d
}

func (d *DB) buildIndex() {
	d.index = make([]uint32, 65537)
	j := 0
	for b := 0; b < 65536; b++ {
		d.index[b] = uint32(j)
		for j < len(d.hashes) && int(d.hashes[j][0])<<8|int(d.hashes[j][1]) == b {
			j++
		}
	}
	d.index[65536] = uint32(len(d.hashes))
}

// Diff returns what turns old into new: entries added or changed, and
// hashes removed.
func Diff(old, new *DB) (added []Entry, removed []reputation.Hash) {
	i, j := 0, 0
	for i < len(old.hashes) || j < len(new.hashes) {
		switch {
		case j == len(new.hashes) || (i < len(old.hashes) && bytes.Compare(old.hashes[i][:], new.hashes[j][:]) < 0):
			removed = append(removed, old.hashes[i])
			i++
		case i == len(old.hashes) || bytes.Compare(old.hashes[i][:], new.hashes[j][:]) > 0:
			added = append(added, Entry{new.hashes[j], new.verdicts[new.vidx[j]]})
			j++
		default:
			if old.verdicts[old.vidx[i]] != new.verdicts[new.vidx[j]] {
				added = append(added, Entry{new.hashes[j], new.verdicts[new.vidx[j]]})
			}
			i++
			j++
		}
	}
	return added, removed
}

// Apply returns a new DB: d with removed deleted and added put (replacing
// an existing verdict), at the given version. d is unchanged.
func (d *DB) Apply(added []Entry, removed []reputation.Hash, version uint64) *DB {
	gone := make(map[reputation.Hash]struct{}, len(removed)+len(added))
	for _, h := range removed {
		gone[h] = struct{}{}
	}
	for _, e := range added {
		gone[e.Hash] = struct{}{}
	}
	b := NewBuilder(len(d.hashes) + len(added))
	d.All(func(e Entry) {
		if _, ok := gone[e.Hash]; !ok {
			b.Add(e.Hash, e.Verdict)
		}
	})
	for _, e := range added {
		b.Add(e.Hash, e.Verdict)
	}
	return b.Build(version)
}

// Empty returns a DB with no entries at the given version.
func Empty(version uint64) *DB { return NewBuilder(0).Build(version) }
