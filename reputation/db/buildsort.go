package db

import (
	"bytes"
	"encoding/binary"
	"slices"
	"strings"
)

// Sorting a Builder's records (build.go): by hash, one part at a time,
// keeping the worst verdict of a hash added twice.

// sorter sorts records by hash, one part at a time.
type sorter struct {
	tmp     [][recSize]byte
	scratch [][recSize]byte
	keys    []uint64
	counts  []int
}

// sort sorts data (whole records) by hash and drops duplicates, keeping
// the worse verdict; the result is in data's memory. A counting sort by the
// first 16 bits makes runs of a few dozen records; each run is sorted by
// its next 48 bits, then put right where those tie.
func (s *sorter) sort(data []byte, d *dedup) []byte {
	n := len(data) / recSize
	if cap(s.tmp) < n {
		s.tmp = make([][recSize]byte, n)
	}
	tmp := s.tmp[:n]
	if s.counts == nil {
		s.counts = make([]int, 1<<16+1)
	}
	c := s.counts
	clear(c)
	for off := 0; off < len(data); off += recSize {
		c[int(binary.BigEndian.Uint16(data[off:]))+1]++
	}
	for k := 1; k < len(c); k++ {
		c[k] += c[k-1]
	}
	for off := 0; off < len(data); off += recSize {
		k := binary.BigEndian.Uint16(data[off:])
		copy(tmp[c[k]][:], data[off:off+recSize])
		c[k]++
	}
	// c[k] is now the end of run k.
	start := 0
	for k := 0; k < 1<<16; k++ {
		end := c[k]
		if end-start > 1 {
			s.sortRun(tmp[start:end])
		}
		start = end
	}
	out := data[:0]
	for i := 0; i < n; {
		j := i + 1
		win := i
		for j < n && bytes.Equal(tmp[j][:32], tmp[i][:32]) {
			if d.worse(&tmp[j], &tmp[win]) {
				win = j
			}
			j++
		}
		out = append(out, tmp[win][:]...)
		i = j
	}
	return out
}

// sortRun sorts records that share their first 16 bits.
func (s *sorter) sortRun(r [][recSize]byte) {
	if len(r) <= 16 {
		insertionSort(r)
		return
	}
	if len(r) >= 1<<16 { // duplicates by the thousand: no room for an index in the key
		slices.SortFunc(r, cmpRec)
		return
	}
	s.keys = s.keys[:0]
	for i := range r {
		s.keys = append(s.keys, binary.BigEndian.Uint64(r[i][:8])<<16|uint64(i))
	}
	slices.Sort(s.keys)
	if cap(s.scratch) < len(r) {
		s.scratch = make([][recSize]byte, len(r))
	}
	sc := s.scratch[:len(r)]
	for i, k := range s.keys {
		sc[i] = r[k&0xffff]
	}
	copy(r, sc)
	insertionSort(r) // in order but where 48 bits tie: a pass
}

func insertionSort(r [][recSize]byte) {
	for i := 1; i < len(r); i++ {
		for j := i; j > 0 && lessRec(&r[j], &r[j-1]); j-- {
			r[j], r[j-1] = r[j-1], r[j]
		}
	}
}

func lessRec(x, y *[recSize]byte) bool {
	a, b := binary.BigEndian.Uint64(x[:8]), binary.BigEndian.Uint64(y[:8])
	if a != b {
		return a < b
	}
	return bytes.Compare(x[8:32], y[8:32]) < 0
}

func cmpRec(x, y [recSize]byte) int {
	a, b := binary.BigEndian.Uint64(x[:8]), binary.BigEndian.Uint64(y[:8])
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return bytes.Compare(x[8:32], y[8:32])
}

// dedup decides between two verdicts of the same hash, reading the
// encoder's verdicts (mapped only when a duplicate first shows up).
type dedup struct {
	enc   *verdictEncoder
	blobs []byte
	unmap func()
	err   error
}

// prepare maps the verdicts (no page is read until a duplicate needs it),
// so that worse is safe for concurrent use.
func (d *dedup) prepare() error {
	d.blobs, d.unmap, d.err = d.enc.blobs.view()
	return d.err
}

func (d *dedup) worse(x, y *[recSize]byte) bool {
	vx := decodeVerdict(d.blobs, binary.LittleEndian.Uint32(x[32:]), len(d.enc.cats))
	vy := decodeVerdict(d.blobs, binary.LittleEndian.Uint32(y[32:]), len(d.enc.cats))
	return worseRaw(vx, vy, d.enc.cats)
}

func (d *dedup) release() {
	if d.unmap != nil {
		d.unmap()
	}
}

// worseRaw is reputation.Verdict.Worse on encoded verdicts, made a total
// order so that the winner does not depend on the order of the feeds:
// between equal kinds, one with a category or threat name beats one
// without, then the smaller category, then the smaller name.
func worseRaw(x, y rawVerdict, cats []string) bool {
	if x.kind != y.kind {
		return x.kind > y.kind
	}
	cx, cy := rawCategory(x, cats), rawCategory(y, cats)
	dx, dy := cx != "" || len(x.name) > 0, cy != "" || len(y.name) > 0
	if dx != dy {
		return dx
	}
	if c := strings.Compare(cx, cy); c != 0 {
		return c < 0
	}
	return bytes.Compare(x.name, y.name) < 0
}

func rawCategory(v rawVerdict, cats []string) string {
	if v.catIdx > 0 && int(v.catIdx) <= len(cats) {
		return cats[v.catIdx-1]
	}
	return string(v.catRaw)
}
