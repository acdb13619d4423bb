package db

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/picket-proxy/picket/reputation"
)

// Entry is one full hash with its verdict (TTL and Source unset).
type Entry struct {
	Hash    reputation.Hash
	Verdict reputation.Verdict
}

// DB is an immutable database of full hashes and their verdicts, in the
// compiled layout of format.go: 36 bytes a record sorted by hash, an index
// by prefix, and the verdicts stored once each. A DB built into a file (or
// read from one) is mapped read-only, so its records cost the Go heap
// nothing and pages nobody reads stay on disk; a small one is held in
// memory. Lookups read it in place and allocate nothing, except to decode
// a verdict not among the last few hundred returned.
//
// The mapping is released when the DB becomes unreachable (a cleanup run by
// the garbage collector); a Store forces a collection after each swap so
// the old copy goes right away.
type DB struct {
	h     header
	data  []byte // the whole file
	recs  []byte // n × recSize
	index []byte // (1<<bits + 1) × uint32
	blobs []byte
	cats  []string
	extra map[string][]byte
	n     int
	shift uint // 32 - index bits
	file  *mapping
	// filter is the prefix filter (filter.go); nil in a file without one.
	filter []byte

	sumOnce sync.Once
	sum     [32]byte
	sumErr  error

	verdicts *[verdictCacheSize]atomic.Pointer[cachedVerdict]

	// nets are the feeds' address lists (nets.go), built by Load beside
	// the hashes; nil when none. A compiled file keeps them, so a Store
	// restarted from it has them (compiled.go); Diff, Apply and a mirror's
	// copy do not carry them (a repserver serves hashes only).
	nets *Networks
}

// mapping is a DB's file and its mapping; the cleanup closes both.
type mapping struct {
	f    *os.File
	data []byte
	mu   sync.Mutex // serialises reads through f (WriteFile)
}

func (m *mapping) close() {
	unmapFile(m.data)
	m.f.Close()
	released.Add(1)
}

// released counts the mappings released (for the tests).
var released atomic.Int64

// verdictCacheSize is how many decoded verdicts a DB keeps, so that a
// verdict returned again costs neither decoding nor an allocation.
const verdictCacheSize = 1024

type cachedVerdict struct {
	ref uint32
	v   reputation.Verdict
}

// Version is the database's version: increasing with every change.
func (d *DB) Version() uint64 { return d.h.version }

// Token is the opaque version token of the upstream a mirror copied this
// database from ("" for a database built from feeds).
func (d *DB) Token() string { return d.h.token }

// Len is the number of entries.
func (d *DB) Len() int { return d.n }

// Bytes is the size of the compiled database in bytes: the file mapped (of
// which only the pages read are resident), or the memory held.
func (d *DB) Bytes() int { return len(d.data) }

// Mapped reports whether the database is mapped from a file rather than
// held in memory.
func (d *DB) Mapped() bool { return d.file != nil && canMap }

// Get returns the verdict of a full hash.
func (d *DB) Get(h reputation.Hash) (reputation.Verdict, bool) {
	lo, hi := d.bucket(binary.BigEndian.Uint32(h[:4]))
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if bytes.Compare(d.recs[m*recSize:m*recSize+32], h[:]) < 0 {
			lo = m + 1
		} else {
			hi = m
		}
	}
	var v reputation.Verdict
	ok := lo < d.n && reputation.Hash(d.recs[lo*recSize:lo*recSize+32]) == h
	if ok {
		v = d.verdictAt(d.ref(lo))
	}
	runtime.KeepAlive(d)
	return v, ok
}

// Find appends to dst the entries whose hash starts with p.
func (d *DB) Find(dst []Entry, p reputation.Prefix) []Entry {
	if d.filter != nil && !filterHas(d.filter, uint32(p)) {
		return dst
	}
	lo, hi := d.bucket(uint32(p))
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if d.prefix(m) < uint32(p) {
			lo = m + 1
		} else {
			hi = m
		}
	}
	for i := lo; i < d.n && d.prefix(i) == uint32(p); i++ {
		dst = append(dst, Entry{Hash: reputation.Hash(d.recs[i*recSize : i*recSize+32]), Verdict: d.verdictAt(d.ref(i))})
	}
	runtime.KeepAlive(d)
	return dst
}

// findBatch is how many searches FindAll runs in step.
const findBatch = 32

// FindAll appends the entries of every prefix in ps to dst, as Find does one
// prefix after the other, in the same order. The searches advance in step,
// one probe of each per round: their reads of the index and the records do
// not depend on each other, so the CPU overlaps their cache misses instead of
// waiting for each in turn. A URL's lookup asks for up to 30 prefixes, in a
// database far larger than the CPU's caches: one after the other, each
// waits for about five reads from memory.
func (d *DB) FindAll(dst []Entry, ps []reputation.Prefix) []Entry {
	var lo, hi [findBatch]int
	for len(ps) > 0 {
		n := min(len(ps), findBatch)
		for i, p := range ps[:n] {
			if d.filter != nil && !filterHas(d.filter, uint32(p)) {
				lo[i], hi[i] = d.n, d.n // not here
				continue
			}
			lo[i], hi[i] = d.bucket(uint32(p))
		}
		for searching := true; searching; {
			searching = false
			for i, p := range ps[:n] {
				if lo[i] < hi[i] {
					m := int(uint(lo[i]+hi[i]) >> 1)
					if d.prefix(m) < uint32(p) {
						lo[i] = m + 1
					} else {
						hi[i] = m
					}
					searching = true
				}
			}
		}
		for i, p := range ps[:n] {
			for j := lo[i]; j < d.n && d.prefix(j) == uint32(p); j++ {
				dst = append(dst, Entry{Hash: reputation.Hash(d.recs[j*recSize : j*recSize+32]), Verdict: d.verdictAt(d.ref(j))})
			}
		}
		ps = ps[n:]
	}
	runtime.KeepAlive(d)
	return dst
}

func (d *DB) prefix(i int) uint32 { return binary.BigEndian.Uint32(d.recs[i*recSize:]) }

func (d *DB) ref(i int) uint32 { return binary.LittleEndian.Uint32(d.recs[i*recSize+32:]) }

func (d *DB) hashAt(i int) []byte { return d.recs[i*recSize : i*recSize+32] }

// bucket returns the records whose hash may start with p.
func (d *DB) bucket(p uint32) (int, int) {
	if d.shift >= 32 {
		return 0, d.n
	}
	b := int(p>>d.shift) * 4
	return int(binary.LittleEndian.Uint32(d.index[b:])), int(binary.LittleEndian.Uint32(d.index[b+4:]))
}

// verdictAt returns the verdict at ref from a small cache of decoded
// verdicts: one returned before (the few shared ones always) costs neither
// decoding nor an allocation.
func (d *DB) verdictAt(ref uint32) reputation.Verdict {
	slot := &d.verdicts[(ref^ref>>10^ref>>20)%verdictCacheSize]
	if c := slot.Load(); c != nil && c.ref == ref {
		return c.v
	}
	c := &cachedVerdict{ref: ref, v: d.decode(ref)}
	slot.Store(c)
	return c.v
}

// decode decodes the verdict at ref; a damaged one reads as unknown.
func (d *DB) decode(ref uint32) reputation.Verdict {
	rv := decodeVerdict(d.blobs, ref, len(d.cats))
	if rv.invalid {
		return reputation.Verdict{}
	}
	v := reputation.Verdict{Kind: reputation.Kind(rv.kind), Category: d.category(rv)}
	if len(rv.name) > 0 {
		v.ThreatName = string(rv.name)
	}
	return v
}

func (d *DB) category(rv rawVerdict) string {
	if rv.catIdx > 0 {
		return d.cats[rv.catIdx-1]
	}
	if len(rv.catRaw) > 0 {
		return string(rv.catRaw)
	}
	return ""
}

// All calls fn for every entry in hash order.
func (d *DB) All(fn func(Entry)) {
	for i := 0; i < d.n; i++ {
		e := Entry{Verdict: d.decode(d.ref(i))}
		copy(e.Hash[:], d.hashAt(i))
		fn(e)
	}
	runtime.KeepAlive(d)
}

// Checksum is a SHA-256 over every entry in hash order: the hash, the kind
// as one byte, then category and threat name each as uvarint length and
// bytes. Equal databases have equal checksums, whatever their version or
// layout. It is computed once, on first use.
func (d *DB) Checksum() [32]byte {
	sum, _ := d.walk()
	return sum
}

// Verify checks the whole database: records sorted, unique and where the
// index says, every verdict readable. A database received from elsewhere
// is verified before it is used; Checksum is computed by the same pass.
func (d *DB) Verify() error {
	_, err := d.walk()
	return err
}

func (d *DB) walk() ([32]byte, error) {
	d.sumOnce.Do(func() {
		d.sum, d.sumErr = d.checksum()
	})
	return d.sum, d.sumErr
}

func (d *DB) checksum() ([32]byte, error) {
	defer runtime.KeepAlive(d)
	s := sha256.New()
	buf := make([]byte, 0, 64<<10)
	var bad error
	var prev []byte
	next := 0 // the bucket whose start is due
	for i := 0; i < d.n; i++ {
		h := d.hashAt(i)
		if prev != nil && bytes.Compare(prev, h) >= 0 && bad == nil {
			bad = fmt.Errorf("record %d out of order", i)
		}
		prev = h
		if d.shift < 32 && bad == nil {
			b := int(binary.BigEndian.Uint32(h) >> d.shift)
			for ; next <= b; next++ {
				if int(binary.LittleEndian.Uint32(d.index[next*4:])) != i {
					bad = fmt.Errorf("index entry %d does not point at record %d", next, i)
				}
			}
		}
		rv := decodeVerdict(d.blobs, d.ref(i), len(d.cats))
		if rv.invalid && bad == nil {
			bad = fmt.Errorf("record %d: bad verdict at %d", i, d.ref(i))
		}
		buf = append(buf, h...)
		buf = append(buf, rv.kind)
		if rv.catIdx > 0 {
			cat := d.cats[rv.catIdx-1]
			buf = binary.AppendUvarint(buf, uint64(len(cat)))
			buf = append(buf, cat...)
		} else {
			buf = binary.AppendUvarint(buf, uint64(len(rv.catRaw)))
			buf = append(buf, rv.catRaw...)
		}
		buf = binary.AppendUvarint(buf, uint64(len(rv.name)))
		buf = append(buf, rv.name...)
		if len(buf) > cap(buf)-4096 {
			s.Write(buf)
			buf = buf[:0]
		}
	}
	s.Write(buf)
	var sum [32]byte
	s.Sum(sum[:0])
	if bad != nil {
		return sum, fmt.Errorf("%w: %v", ErrBadSnapshot, bad)
	}
	return sum, nil
}

// section returns the extra section called name (nil when absent). It
// aliases the database: copy what must outlive it.
func (d *DB) section(name string) []byte { return d.extra[name] }

// Empty returns a DB with no entries at the given version.
func Empty(version uint64) *DB {
	b := NewBuilder(0)
	d, err := b.Build(version)
	if err != nil {
		panic("db: empty database: " + err.Error()) // in memory: cannot fail
	}
	return d
}

// open makes a DB of a whole file's bytes. The body CRC is checked when
// checkCRC is set (a file read through its mapping); the index is always
// checked, so that no lookup can go out of bounds.
func open(data []byte, checkCRC bool, m *mapping) (*DB, error) {
	h, l, err := headerLayout(data)
	if err != nil {
		return nil, err
	}
	if l.end != uint64(len(data)) {
		return nil, fmt.Errorf("%w: %d bytes, want %d", ErrBadSnapshot, len(data), l.end)
	}
	if checkCRC && crc32c(data[headerSize:]) != h.bodyCRC {
		return nil, fmt.Errorf("%w: checksum mismatch", ErrBadSnapshot)
	}
	d := &DB{
		h: h, data: data, n: int(h.n), shift: 32 - uint(h.bits), file: m,
		recs:     data[l.recs:l.index],
		index:    data[l.index:l.blobs],
		blobs:    data[l.blobs:l.cats],
		verdicts: new([verdictCacheSize]atomic.Pointer[cachedVerdict]),
	}
	if d.cats, err = parseCats(data[l.cats:l.extra]); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadSnapshot, err)
	}
	if d.extra, err = parseSections(data[l.extra:l.end]); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadSnapshot, err)
	}
	if err := d.checkIndex(); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadSnapshot, err)
	}
	if f, ok := d.extra[filterSection]; ok {
		if !validFilter(f) {
			return nil, fmt.Errorf("%w: prefix filter of %d bytes", ErrBadSnapshot, len(f))
		}
		d.filter = f
	}
	return d, nil
}

// checkIndex checks that the index is monotonic and covers the records.
func (d *DB) checkIndex() error {
	if d.shift >= 32 {
		return nil
	}
	prev := uint32(0)
	for i := 0; i < len(d.index); i += 4 {
		v := binary.LittleEndian.Uint32(d.index[i:])
		if v < prev || int(v) > d.n {
			return fmt.Errorf("index entry %d", i/4)
		}
		prev = v
	}
	if int(prev) != d.n {
		return errors.New("index does not end at the last record")
	}
	if binary.LittleEndian.Uint32(d.index) != 0 {
		return errors.New("index does not start at the first record")
	}
	return nil
}

// ReadFile opens a database file written by Build, BuildFile or WriteFile:
// it checks the file's CRCs (reading it once, without keeping it resident)
// and maps it.
func ReadFile(path string) (*DB, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	d, err := openFile(f, true)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return d, nil
}

// openFile maps f as a DB; f belongs to the DB from then on.
func openFile(f *os.File, checkCRC bool) (*DB, error) {
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	var hb [headerSize]byte
	if _, err := f.ReadAt(hb[:], 0); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadSnapshot, err)
	}
	h, l, err := headerLayout(hb[:])
	if err != nil {
		return nil, err
	}
	if l.end != uint64(fi.Size()) || l.end > uint64(maxInt) {
		return nil, fmt.Errorf("%w: %d bytes, want %d", ErrBadSnapshot, fi.Size(), l.end)
	}
	if checkCRC {
		// Read, not through the mapping: the page cache holds the file,
		// the process does not.
		c, err := crc32cReader(io.NewSectionReader(f, headerSize, int64(l.end-headerSize)))
		if err != nil {
			return nil, err
		}
		if c != h.bodyCRC {
			return nil, fmt.Errorf("%w: checksum mismatch", ErrBadSnapshot)
		}
	}
	data, err := mapFile(f, int(l.end))
	if err != nil {
		return nil, err
	}
	m := &mapping{f: f, data: data}
	d, err := open(data, false, m)
	if err != nil {
		unmapFile(data)
		return nil, err
	}
	adviseRandom(data, int(l.blobs))
	runtime.AddCleanup(d, (*mapping).close, m)
	return d, nil
}

const maxInt = int(^uint(0) >> 1)

// ReadHeader returns the version and fingerprint of a database file
// without opening it.
func readHeader(path string) (header, error) {
	f, err := os.Open(path)
	if err != nil {
		return header{}, err
	}
	defer f.Close()
	var hb [headerSize]byte
	if _, err := io.ReadFull(f, hb[:]); err != nil {
		return header{}, fmt.Errorf("%w: %v", ErrBadSnapshot, err)
	}
	return parseHeader(hb[:])
}

// WriteFile writes the database to path atomically (a temporary file, then
// rename), as a file ReadFile opens.
func (d *DB) WriteFile(path string) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), buildPrefix+"*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := d.writeTo(tmp, ""); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// writeTo writes the file to w, with token in its header when token is set.
// A mapped DB is copied from its file, so its pages need not be resident.
func (d *DB) writeTo(w io.Writer, token string) error {
	defer runtime.KeepAlive(d)
	h := d.h
	if token != "" {
		h.token = token
	}
	if _, err := w.Write(h.marshal()); err != nil {
		return err
	}
	if d.file == nil || !canMap {
		_, err := w.Write(d.data[headerSize:])
		return err
	}
	d.file.mu.Lock()
	defer d.file.mu.Unlock()
	_, err := io.Copy(w, io.NewSectionReader(d.file.f, headerSize, int64(len(d.data)-headerSize)))
	return err
}

// WriteTo writes the database file to w with its header's token set to
// token (a cloud server sending its database to a mirror).
func (d *DB) WriteTo(w io.Writer, token string) error { return d.writeTo(w, token) }

func crc32c(b []byte) uint32 { return crcUpdate(0, b) }

func crc32cReader(r io.Reader) (uint32, error) {
	buf := make([]byte, 1<<20)
	var c uint32
	for {
		n, err := r.Read(buf)
		c = crcUpdate(c, buf[:n])
		if err == io.EOF {
			return c, nil
		}
		if err != nil {
			return 0, err
		}
	}
}
