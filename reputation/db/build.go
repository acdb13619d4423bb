package db

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/maphash"
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/picket-proxy/picket/reputation"
)

// Builder collects entries for a DB with bounded memory: records go to
// temporary files split by hash prefix once there are more than a few
// thousand, verdicts are encoded as they come (identical ones shared), and
// Build sorts one part at a time into the final file. Adding a hash twice
// keeps the more severe verdict. A Builder is not safe for concurrent use.
type Builder struct {
	enc   verdictEncoder
	recs  []byte  // records while few enough to hold
	parts []spill // records split by the hash's first 6 bits, once spilled
	pbuf  [][]byte
	n     int
	dir   string // temporary files; "" is os.TempDir()

	fingerprint [32]byte
	sections    []section
	err         error
	done        bool
}

// Limits of building (variables for the tests).
var (
	memRecords = 4 << 20  // bytes of records held in memory before spilling
	memBlobs   = 16 << 20 // bytes of verdicts held in memory before spilling
	memDB      = 8 << 20  // an anonymous DB up to this size stays in memory
)

const (
	numParts     = 64 // spill files of records, by the hash's first 6 bits
	partBuffer   = 32 << 10
	verdictSlots = 1 << 12 // the encoder's cache of recent verdicts
)

// ErrTooLarge is returned when a database would exceed the format's
// limits (4 GiB of verdicts, 2^32 entries).
var ErrTooLarge = errors.New("db: database too large")

// NewBuilder returns a Builder; n is a hint of the entries to come.
func NewBuilder(n int) *Builder {
	b := &Builder{}
	b.enc.init(verdictSlots)
	b.recs = make([]byte, 0, min(n, memRecords/recSize)*recSize)
	return b
}

// SetTempDir sets the directory of the Builder's temporary files (default
// os.TempDir()); call it before the first Add. BuildFile uses the
// directory of its file.
func (b *Builder) SetTempDir(dir string) {
	b.dir = dir
	b.enc.blobs.create = tempFile(dir, true)
}

// Len is the number of entries added, duplicates included.
func (b *Builder) Len() int { return b.n }

// Add adds an entry. Only Kind, Category and ThreatName of v are kept,
// the last two up to 1 KiB each.
func (b *Builder) Add(h reputation.Hash, v reputation.Verdict) {
	if b.err != nil || b.done {
		return
	}
	ref := b.enc.ref(byte(v.Kind), v.Category, v.ThreatName)
	var rec [recSize]byte
	copy(rec[:], h[:])
	binary.LittleEndian.PutUint32(rec[32:], ref)
	b.n++
	if b.parts == nil {
		b.recs = appendDoubling(b.recs, rec[:])
		if len(b.recs) >= memRecords {
			b.spillRecords()
		}
		return
	}
	b.toPart(rec[:])
}

// toPart adds a record to its part's buffer, which goes to the part's
// file when full.
func (b *Builder) toPart(rec []byte) {
	i := rec[0] >> 2
	b.pbuf[i] = append(b.pbuf[i], rec...)
	if len(b.pbuf[i]) == cap(b.pbuf[i]) {
		b.flushPart(i)
	}
}

func (b *Builder) flushPart(i byte) {
	if err := b.parts[i].write(b.pbuf[i]); err != nil && b.err == nil {
		b.err = err
	}
	b.pbuf[i] = b.pbuf[i][:0]
}

func (b *Builder) spillRecords() {
	b.parts = make([]spill, numParts)
	b.pbuf = make([][]byte, numParts)
	for i := range b.parts {
		b.parts[i] = spill{create: tempFile(b.dir, true), direct: true}
		b.pbuf[i] = make([]byte, 0, partBuffer/recSize*recSize)
	}
	for off := 0; off < len(b.recs); off += recSize {
		b.toPart(b.recs[off : off+recSize])
	}
	b.recs = nil
}

// Discard removes the Builder's temporary files. Build does it too.
func (b *Builder) Discard() {
	b.done = true
	for i := range b.parts {
		b.parts[i].close()
	}
	b.parts, b.recs = nil, nil
	b.enc.blobs.close()
}

// Target says where a new DB goes and what its header says.
type Target struct {
	// Path is the database file, replaced atomically (a temporary file in
	// the same directory, then rename). "" keeps the DB in memory when
	// small, else in an unnamed temporary file in TempDir.
	Path string
	// TempDir holds unnamed files; "" is os.TempDir().
	TempDir string
	// Version is the new DB's version.
	Version uint64
	// Token is the opaque version token of the upstream a mirror copies
	// (at most 63 bytes).
	Token string
	// Expect, if set, is the checksum the new DB must have: otherwise the
	// result is ErrChecksum and Path is left as it was.
	Expect *[32]byte
}

// ErrChecksum is returned (wrapped) when a new DB does not have the
// checksum its Target expects.
var ErrChecksum = errors.New("db: checksum mismatch")

// Build sorts and indexes the entries into a DB: in memory when small,
// else in an unnamed temporary file, mapped. The Builder is done after.
func (b *Builder) Build(version uint64) (*DB, error) { return b.BuildTo(Target{Version: version}) }

// BuildTo builds the DB into t.
func (b *Builder) BuildTo(t Target) (*DB, error) {
	defer b.Discard()
	if b.done {
		return nil, errors.New("db: Builder used after Build")
	}
	if b.err == nil {
		b.err = b.enc.err
	}
	if b.err != nil {
		return nil, b.err
	}
	if b.n > 1<<32-1 {
		return nil, ErrTooLarge
	}
	if len(t.Token) > maxTokenLen {
		return nil, fmt.Errorf("db: token longer than %d bytes", maxTokenLen)
	}
	if t.TempDir == "" {
		t.TempDir = b.dir
	}
	est := int64(headerSize) + int64(b.n)*recSize + int64(4<<indexBits(b.n)) + int64(filterBlocks(b.n)*filterBlock) + b.enc.blobs.n
	out := newOutput(t, est)
	a := newAssembler(out, b.n)
	d := dedup{enc: &b.enc}
	if err := d.prepare(); err != nil {
		out.abort()
		return nil, err
	}
	defer d.release()
	if b.parts == nil {
		var s sorter
		a.records(s.sort(b.recs, &d))
	} else if err := b.sortParts(a, &d); err != nil {
		out.abort()
		return nil, err
	}
	hd := header{version: t.Version, fingerprint: b.fingerprint, token: t.Token}
	return a.finish(hd, &b.enc, b.sections)
}

// sortParts sorts the spilled parts, a few at once, and passes them to a
// in order: a part is read whole (a 64th of the records), sorted by a
// worker, and written while the next ones sort. At most workers+1 parts
// are in memory.
func (b *Builder) sortParts(a *assembler, d *dedup) error {
	for i := range b.parts {
		b.flushPart(byte(i))
	}
	workers := min(runtime.GOMAXPROCS(0), 4)
	type result struct {
		recs []byte
		err  error
	}
	results := make([]chan result, len(b.parts))
	for i := range results {
		results[i] = make(chan result, 1)
	}
	free := make(chan []byte, workers+1) // buffers; holding one is a part in flight
	for i := 0; i < workers+1; i++ {
		free <- nil
	}
	var next atomic.Int32
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var s sorter
			for {
				var buf []byte
				select {
				case buf = <-free:
				case <-stop:
					return
				}
				i := int(next.Add(1)) - 1
				if i >= len(b.parts) {
					return
				}
				data, err := b.parts[i].readAll(buf)
				if err == nil {
					data = s.sort(data, d)
				}
				results[i] <- result{data, err}
			}
		}()
	}
	defer func() {
		close(stop)
		wg.Wait()
	}()
	for i := range b.parts {
		r := <-results[i]
		if r.err != nil {
			return r.err
		}
		a.records(r.recs)
		b.parts[i].close()
		free <- r.recs[:0]
	}
	return nil
}

// verdictEncoder writes verdict blobs and hands out their offsets,
// sharing a blob between identical verdicts it still remembers: the last
// one, and a cache of recent ones by hash. A verdict forgotten and seen
// again is written again; that costs bytes, never correctness.
type verdictEncoder struct {
	blobs  spill
	cats   []string
	catIdx map[string]uint32
	cache  []vslot
	last   vslot
	seed   maphash.Seed
	buf    []byte
	err    error

	raw   []rawSlot // re-encoding from another DB (merges)
	slots int       // of each cache, a power of two
}

type vslot struct {
	h         uint64 // of kind, category and name
	kind      byte
	ok        bool
	ref       uint32
	cat, name string
}

type rawSlot struct {
	src      *DB
	ref, out uint32
}

// init readies the encoder for about n verdicts (the cache is smaller
// for a few).
func (e *verdictEncoder) init(n int) {
	e.blobs = spill{limit: memBlobs}
	e.catIdx = map[string]uint32{}
	e.slots = verdictSlots
	for e.slots > 16 && e.slots/2 >= n {
		e.slots /= 2
	}
	e.cache = make([]vslot, e.slots)
	e.seed = maphash.MakeSeed()
}

// ref returns the offset of the verdict's blob, writing it if needed.
func (e *verdictEncoder) ref(kind byte, cat, name string) uint32 {
	cat, name = truncateString(cat, maxVerdictStr), truncateString(name, maxVerdictStr)
	if l := &e.last; l.ok && l.kind == kind && l.cat == cat && l.name == name {
		return l.ref
	}
	h := maphash.String(e.seed, name) ^ maphash.String(e.seed, cat)*0x9e3779b97f4a7c15 ^ uint64(kind)
	s := &e.cache[h&uint64(e.slots-1)]
	if !(s.ok && s.h == h && s.kind == kind && s.cat == cat && s.name == name) {
		idx, inline := e.category(cat)
		*s = vslot{h: h, kind: kind, ok: true, cat: cat, name: name, ref: e.write(appendVerdict(e.buf[:0], kind, idx, inline, cat, name))}
	}
	e.last = *s
	return s.ref
}

// refFrom returns the offset of a blob equal to src's verdict at ref,
// re-encoding it (its category index is src's) without allocating.
func (e *verdictEncoder) refFrom(src *DB, ref uint32) uint32 {
	if e.raw == nil {
		e.raw = make([]rawSlot, e.slots)
	}
	s := &e.raw[(ref^ref>>14)&uint32(e.slots-1)]
	if s.src == src && s.ref == ref {
		return s.out
	}
	rv := decodeVerdict(src.blobs, ref, len(src.cats))
	if rv.invalid {
		rv = rawVerdict{}
	}
	cat := src.category(rv)
	idx, inline := e.category(cat)
	out := e.write(appendVerdict(e.buf[:0], rv.kind, idx, inline, cat, rv.name))
	*s = rawSlot{src: src, ref: ref, out: out}
	return out
}

func (e *verdictEncoder) category(cat string) (uint32, bool) {
	if cat == "" {
		return 0, false
	}
	if i, ok := e.catIdx[cat]; ok {
		return i, false
	}
	if len(e.cats) >= maxCategories {
		return 0, true
	}
	e.cats = append(e.cats, cat)
	e.catIdx[cat] = uint32(len(e.cats))
	return uint32(len(e.cats)), false
}

func (e *verdictEncoder) write(blob []byte) uint32 {
	e.buf = blob[:0]
	off := e.blobs.n
	if off+int64(len(blob)) > 1<<32 {
		if e.err == nil {
			e.err = fmt.Errorf("%w: more than 4 GiB of verdicts", ErrTooLarge)
		}
		return 0
	}
	if err := e.blobs.write(blob); err != nil && e.err == nil {
		e.err = err
	}
	return uint32(off)
}

// assembler writes a database file's parts in order: records (sorted),
// then the index it counted, the verdicts, the categories and the extra
// sections, keeping the body's CRC.
type assembler struct {
	out   *output
	crc   uint32
	n     int
	bits  uint8
	shift uint
	idx   []uint32
	buf   []byte
	// filter is the prefix filter (filter.go) of the records written.
	filter []byte
}

// newAssembler starts a file of about n records (at most n: the index and
// the filter are sized for n).
func newAssembler(out *output, n int) *assembler {
	bits := indexBits(n)
	a := &assembler{out: out, bits: bits, shift: 32 - uint(bits), idx: make([]uint32, 1<<bits+1), buf: make([]byte, 0, 64<<10),
		filter: make([]byte, filterBlocks(n)*filterBlock)}
	out.s.write(make([]byte, headerSize))
	return a
}

// Write adds p to the body.
func (a *assembler) Write(p []byte) (int, error) {
	a.crc = crcUpdate(a.crc, p)
	if err := a.out.s.write(p); err != nil {
		return 0, err
	}
	return len(p), nil
}

func (a *assembler) flush() {
	if len(a.buf) > 0 {
		a.Write(a.buf)
		a.buf = a.buf[:0]
	}
}

// records appends whole records, which must come in increasing hash
// order.
func (a *assembler) records(recs []byte) {
	a.flush()
	a.Write(recs)
	for off := 0; off < len(recs); off += recSize {
		p := binary.BigEndian.Uint32(recs[off:])
		if a.bits > 0 {
			a.idx[p>>a.shift+1]++
		}
		filterAdd(a.filter, p)
		a.n++
	}
}

// record appends a record; records must come in increasing hash order.
func (a *assembler) record(h []byte, ref uint32) {
	a.buf = append(a.buf, h[:32]...)
	a.buf = binary.LittleEndian.AppendUint32(a.buf, ref)
	if len(a.buf) > cap(a.buf)-recSize {
		a.flush()
	}
	p := binary.BigEndian.Uint32(h)
	if a.bits > 0 {
		a.idx[p>>a.shift+1]++
	}
	filterAdd(a.filter, p)
	a.n++
}

func (a *assembler) finish(hd header, enc *verdictEncoder, sections []section) (*DB, error) {
	a.flush()
	if a.n > 1<<32-1 {
		a.out.abort()
		return nil, ErrTooLarge
	}
	if a.bits == 0 {
		a.idx[1] = uint32(a.n)
	} else {
		for i := 1; i < len(a.idx); i++ {
			a.idx[i] += a.idx[i-1]
		}
	}
	ib := make([]byte, 0, len(a.idx)*4)
	for _, v := range a.idx {
		ib = binary.LittleEndian.AppendUint32(ib, v)
	}
	a.Write(ib)
	if err := enc.blobs.copyTo(a); err != nil {
		a.out.abort()
		return nil, err
	}
	cats := appendCats(nil, enc.cats)
	a.Write(cats)
	extra := appendSections(nil, append(sections[:len(sections):len(sections)], section{name: filterSection, data: a.filter}))
	a.Write(extra)
	hd.n, hd.bits = uint64(a.n), a.bits
	hd.blobLen, hd.catsLen, hd.extraLen = uint64(enc.blobs.n), uint64(len(cats)), uint64(len(extra))
	hd.bodyCRC = a.crc
	return a.out.finish(hd.marshal())
}

// appendDoubling is append that doubles a full slice (append grows large
// ones by a quarter: many more copies of megabytes).
func appendDoubling(b, p []byte) []byte {
	if len(b)+len(p) > cap(b) {
		nb := make([]byte, len(b), max(2*cap(b), len(b)+len(p), 4096))
		copy(nb, b)
		b = nb
	}
	return append(b, p...)
}
