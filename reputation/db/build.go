package db

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/maphash"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
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
	est := int64(headerSize) + int64(b.n)*recSize + int64(4<<indexBits(b.n)) + b.enc.blobs.n
	out := newOutput(t, est)
	a := newAssembler(out, indexBits(b.n))
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

// spill is an append-only byte stream held in memory up to limit bytes,
// then in a file made by create (written directly when the caller
// buffers, else through a bufio.Writer).
type spill struct {
	limit  int
	create func() (*os.File, error)
	direct bool
	mem    []byte
	f      *os.File
	w      *bufio.Writer
	n      int64
	err    error
}

func (s *spill) write(p []byte) error {
	if s.err != nil {
		return s.err
	}
	s.n += int64(len(p))
	if s.f == nil && len(s.mem)+len(p) <= s.limit {
		s.mem = appendDoubling(s.mem, p)
		return nil
	}
	if s.f == nil {
		create := s.create
		if create == nil {
			create = tempFile("", true)
		}
		if s.f, s.err = create(); s.err != nil {
			return s.err
		}
		size := 64 << 10
		if s.direct {
			size = 0 // bufio passes large writes through
		}
		s.w = bufio.NewWriterSize(s.f, size)
		s.w.Write(s.mem)
		s.mem = nil
	}
	_, s.err = s.w.Write(p)
	return s.err
}

// readAll returns the whole stream, reusing buf.
func (s *spill) readAll(buf []byte) ([]byte, error) {
	if s.err != nil {
		return nil, s.err
	}
	if s.f == nil {
		return s.mem, nil
	}
	if err := s.w.Flush(); err != nil {
		return nil, err
	}
	if int64(cap(buf)) < s.n {
		buf = make([]byte, s.n)
	}
	buf = buf[:s.n]
	_, err := s.f.ReadAt(buf, 0)
	if err == io.EOF && s.n == 0 {
		err = nil
	}
	return buf, err
}

// view returns the stream for random reads: the memory, or the file
// mapped until release.
func (s *spill) view() ([]byte, func(), error) {
	if s.err != nil {
		return nil, nil, s.err
	}
	if s.f == nil || s.n == 0 {
		return s.mem, func() {}, nil
	}
	if err := s.w.Flush(); err != nil {
		return nil, nil, err
	}
	m, err := mapFile(s.f, int(s.n))
	if err != nil {
		return nil, nil, err
	}
	return m, func() { unmapFile(m) }, nil
}

// copyTo writes the whole stream to w.
func (s *spill) copyTo(w io.Writer) error {
	if s.err != nil {
		return s.err
	}
	if s.f == nil {
		_, err := w.Write(s.mem)
		return err
	}
	if err := s.w.Flush(); err != nil {
		return err
	}
	_, err := io.Copy(w, io.NewSectionReader(s.f, 0, s.n))
	return err
}

func (s *spill) close() {
	if s.f != nil {
		s.f.Close()
		os.Remove(s.f.Name()) // already gone when unlinked at creation
		s.f = nil
	}
	s.mem, s.w = nil, nil
}

// tempFile returns a function creating a temporary file in dir ("" is
// os.TempDir()); an unlinked one is removed at once, so that nothing stays
// behind whatever happens to the process.
func tempFile(dir string, unlinked bool) func() (*os.File, error) {
	return func() (*os.File, error) {
		if dir == "" {
			dir = os.TempDir()
		}
		f, err := os.CreateTemp(dir, ".picketdb-*")
		if err != nil {
			return nil, fmt.Errorf("db: temporary file: %w", err)
		}
		if unlinked {
			os.Remove(f.Name())
		}
		return f, nil
	}
}

// output is where a database file is assembled: memory, a named file
// renamed into place at the end, or an unnamed temporary file.
type output struct {
	t Target
	s spill
}

func newOutput(t Target, size int64) *output {
	o := &output{t: t}
	switch {
	case t.Path != "":
		o.s.create = tempFile(filepath.Dir(t.Path), false)
	case size <= int64(memDB):
		o.s.limit = memDB
		o.s.create = tempFile(t.TempDir, true)
	default:
		o.s.create = tempFile(t.TempDir, true)
	}
	return o
}

func (o *output) abort() { o.s.close() }

// finish writes the header at the start and returns the DB.
func (o *output) finish(hd []byte) (*DB, error) {
	s := &o.s
	if s.err != nil {
		o.abort()
		return nil, s.err
	}
	if s.f == nil {
		copy(s.mem, hd)
		d, err := open(s.mem, false, nil)
		if err != nil {
			return nil, err
		}
		if err := o.t.check(d, false); err != nil {
			return nil, err
		}
		return d, nil
	}
	err := s.w.Flush()
	if err == nil {
		_, err = s.f.WriteAt(hd, 0)
	}
	if err == nil && o.t.Path != "" {
		err = s.f.Sync()
	}
	if err != nil {
		o.abort()
		return nil, err
	}
	f := s.f
	s.f = nil // the DB owns it now
	return settle(f, false, o.t)
}

// check compares d's checksum with the one t expects; a received d is
// verified whole even when nothing is expected.
func (t Target) check(d *DB, received bool) error {
	if t.Expect == nil && !received {
		return nil
	}
	sum, err := d.walk()
	if err != nil {
		return err
	}
	if t.Expect != nil && sum != *t.Expect {
		return fmt.Errorf("%w: got %x, want %x", ErrChecksum, sum[:8], t.Expect[:8])
	}
	return nil
}

// settle maps the finished file f, checks it against t (a received one
// also for its CRCs and structure), and renames it to t.Path (an unnamed
// file has no name left to rename). On error the file is closed and
// removed, and t.Path is as it was.
func settle(f *os.File, received bool, t Target) (*DB, error) {
	name := f.Name()
	fail := func(err error) (*DB, error) {
		if t.Path != "" {
			os.Remove(name)
		}
		return nil, err
	}
	d, err := openFile(f, received)
	if err != nil {
		f.Close()
		return fail(err)
	}
	if err := t.check(d, received); err != nil {
		return fail(err) // the cleanup closes f
	}
	if t.Path != "" {
		// Readable by all, as the feeds are: a file the CLI compiled as
		// root is mapped by the service's user.
		if err := os.Chmod(name, 0o644); err != nil {
			return fail(err)
		}
		if err := os.Rename(name, t.Path); err != nil {
			return fail(err)
		}
	}
	return d, nil
}

// Receive reads a database file from r (a mirror's full download) into t:
// it checks the header and the size it announces, the CRCs, the whole
// structure (Verify) and, when t.Expect is set, the checksum, before the
// file takes t.Path's place. t.Version and t.Token are ignored: the file's
// header has them.
func Receive(r io.Reader, t Target) (*DB, error) {
	var hb [headerSize]byte
	if _, err := io.ReadFull(r, hb[:]); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadSnapshot, err)
	}
	h, err := parseHeader(hb[:])
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadSnapshot, err)
	}
	l, err := h.layout()
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadSnapshot, err)
	}
	dir := t.TempDir
	if t.Path != "" {
		dir = filepath.Dir(t.Path)
	}
	f, err := tempFile(dir, t.Path == "")()
	if err != nil {
		return nil, err
	}
	fail := func(err error) (*DB, error) {
		f.Close()
		if t.Path != "" {
			os.Remove(f.Name())
		}
		return nil, err
	}
	w := bufio.NewWriterSize(f, 1<<20)
	w.Write(hb[:])
	n, err := io.CopyN(w, r, int64(l.end-headerSize))
	if err != nil {
		return fail(fmt.Errorf("%w: %d of %d bytes: %v", ErrBadSnapshot, n+headerSize, l.end, err))
	}
	if err := w.Flush(); err != nil {
		return fail(err)
	}
	if t.Path != "" {
		if err := f.Sync(); err != nil {
			return fail(err)
		}
	}
	return settle(f, true, t)
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
}

func newAssembler(out *output, bits uint8) *assembler {
	a := &assembler{out: out, bits: bits, shift: 32 - uint(bits), idx: make([]uint32, 1<<bits+1), buf: make([]byte, 0, 64<<10)}
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
		if a.bits > 0 {
			a.idx[binary.BigEndian.Uint32(recs[off:])>>a.shift+1]++
		}
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
	if a.bits > 0 {
		a.idx[binary.BigEndian.Uint32(h)>>a.shift+1]++
	}
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
	extra := appendSections(nil, sections)
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
