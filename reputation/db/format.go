package db

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math/bits"
)

// The compiled database file, "PICKETDB" format 2, little-endian. A DB is
// always this byte layout, mapped from its file or (small ones) held in
// memory; lookups read it in place.
//
//	header   256 bytes (below)
//	records  n × 36 bytes: a full SHA-256 hash, then the offset of its
//	         verdict in blobs (uint32); sorted by hash, unique
//	index    2^bits+1 × uint32: the records whose hash starts with the
//	         prefix b (its first bits bits) are records[index[b]:index[b+1]]
//	blobs    the verdicts, each: a kind byte (bit 7: the category is
//	         inline), the category (uvarint: 0 none, i the categories'
//	         i-th; inline: uvarint length and bytes), the threat name
//	         (uvarint length and bytes); identical verdicts share a blob
//	cats     the categories: uvarint count, then uvarint length and bytes
//	extra    named sections (the load report, address lists): uvarint
//	         name length, name, uvarint data length, data; repeated
//
// The header carries two CRC-32Cs: one over itself, one over everything
// after it. A server patches the token into a copy of the header when it
// sends the file, without touching the body.
//
//	 0  magic "PICKETDB"       56  body CRC-32C (uint32)
//	 8  format (uint32) = 2    60  index bits (uint8), 3 bytes zero
//	12  header CRC-32C         64  fingerprint (32 bytes)
//	16  version (uint64)       96  token length (uint8), token (≤ 63 bytes)
//	24  records n (uint64)    160  zero up to 256
//	32  blobs length (uint64)
//	40  cats length (uint64)
//	48  extra length (uint64)
const (
	fileMagic     = "PICKETDB"
	fileFormat    = 2
	headerSize    = 256
	recSize       = 36
	maxIndexBits  = 20
	maxTokenLen   = 63
	maxVerdictStr = 1024 // a category or threat name is kept up to this many bytes
	maxCategories = 4096 // distinct categories in the table; more are stored inline
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func crcUpdate(c uint32, b []byte) uint32 { return crc32.Update(c, castagnoli, b) }

// ErrBadSnapshot is returned (wrapped) for a damaged or foreign database
// file.
var ErrBadSnapshot = errors.New("db: bad database file")

// header is the decoded file header.
type header struct {
	version     uint64
	n           uint64
	blobLen     uint64
	catsLen     uint64
	extraLen    uint64
	bodyCRC     uint32
	bits        uint8
	fingerprint [32]byte
	token       string
}

// layout is where each part of a file starts; end is the file's length.
type layout struct {
	recs, index, blobs, cats, extra, end uint64
}

func (h *header) layout() (layout, error) {
	var l layout
	if h.bits > maxIndexBits {
		return l, fmt.Errorf("index bits %d", h.bits)
	}
	// Each size is bounded so the sums cannot overflow.
	const maxPart = 1 << 40
	if h.n > maxPart/recSize || h.blobLen > maxPart || h.catsLen > maxPart || h.extraLen > maxPart {
		return l, errors.New("section too large")
	}
	if h.blobLen > 1<<32 {
		return l, errors.New("verdicts beyond 4 GiB")
	}
	l.recs = headerSize
	l.index = l.recs + h.n*recSize
	l.blobs = l.index + (1<<h.bits+1)*4
	l.cats = l.blobs + h.blobLen
	l.extra = l.cats + h.catsLen
	l.end = l.extra + h.extraLen
	return l, nil
}

func (h *header) marshal() []byte {
	b := make([]byte, headerSize)
	copy(b, fileMagic)
	binary.LittleEndian.PutUint32(b[8:], fileFormat)
	binary.LittleEndian.PutUint64(b[16:], h.version)
	binary.LittleEndian.PutUint64(b[24:], h.n)
	binary.LittleEndian.PutUint64(b[32:], h.blobLen)
	binary.LittleEndian.PutUint64(b[40:], h.catsLen)
	binary.LittleEndian.PutUint64(b[48:], h.extraLen)
	binary.LittleEndian.PutUint32(b[56:], h.bodyCRC)
	b[60] = h.bits
	copy(b[64:96], h.fingerprint[:])
	t := h.token
	if len(t) > maxTokenLen {
		t = t[:maxTokenLen]
	}
	b[96] = byte(len(t))
	copy(b[97:], t)
	binary.LittleEndian.PutUint32(b[12:], crc32.Checksum(b, castagnoli))
	return b
}

// headerLayout parses a file's header and the layout it describes; the error
// is ErrBadSnapshot's.
func headerLayout(b []byte) (header, layout, error) {
	h, err := parseHeader(b)
	if err != nil {
		return h, layout{}, fmt.Errorf("%w: %v", ErrBadSnapshot, err)
	}
	l, err := h.layout()
	if err != nil {
		return h, l, fmt.Errorf("%w: %v", ErrBadSnapshot, err)
	}
	return h, l, nil
}

func parseHeader(b []byte) (header, error) {
	var h header
	if len(b) < headerSize {
		return h, errors.New("short header")
	}
	b = b[:headerSize]
	if string(b[:8]) != fileMagic {
		return h, errors.New("not a Picket database")
	}
	if f := binary.LittleEndian.Uint32(b[8:]); f != fileFormat {
		return h, fmt.Errorf("format %d, want %d", f, fileFormat)
	}
	var c [headerSize]byte
	copy(c[:], b)
	clear(c[12:16])
	if crc32.Checksum(c[:], castagnoli) != binary.LittleEndian.Uint32(b[12:]) {
		return h, errors.New("header checksum mismatch")
	}
	h.version = binary.LittleEndian.Uint64(b[16:])
	h.n = binary.LittleEndian.Uint64(b[24:])
	h.blobLen = binary.LittleEndian.Uint64(b[32:])
	h.catsLen = binary.LittleEndian.Uint64(b[40:])
	h.extraLen = binary.LittleEndian.Uint64(b[48:])
	h.bodyCRC = binary.LittleEndian.Uint32(b[56:])
	h.bits = b[60]
	copy(h.fingerprint[:], b[64:96])
	if int(b[96]) > maxTokenLen {
		return h, errors.New("bad token length")
	}
	h.token = string(b[97 : 97+int(b[96])])
	return h, nil
}

// indexBits is the index width for about n records: buckets of 8 records
// on average, at most 2^20 of them (4 MiB).
func indexBits(n int) uint8 {
	if n < 16 {
		return 0
	}
	return uint8(min(bits.Len(uint(n/8))-1, maxIndexBits))
}

// appendVerdict encodes a verdict blob. cat is the category's index + 1
// (0: none) or, when inline is set, ignored in favour of catStr.
func appendVerdict[S string | []byte](b []byte, kind byte, cat uint32, inline bool, catStr string, name S) []byte {
	if inline {
		b = append(b, kind|0x80)
		b = binary.AppendUvarint(b, uint64(len(catStr)))
		b = append(b, catStr...)
	} else {
		b = append(b, kind)
		b = binary.AppendUvarint(b, uint64(cat))
	}
	b = binary.AppendUvarint(b, uint64(len(name)))
	return append(b, name...)
}

// rawVerdict is a decoded blob that still points into the file: the
// category is from the table (or inline bytes), the name is bytes.
type rawVerdict struct {
	kind    byte
	catIdx  uint32 // index + 1 into the categories; 0 none or inline
	catRaw  []byte // the inline category
	name    []byte
	size    int // the blob's length in bytes
	invalid bool
}

// decodeVerdict decodes the blob at off; a damaged one is invalid, never a
// panic.
func decodeVerdict(blobs []byte, off uint32, ncats int) rawVerdict {
	var v rawVerdict
	if uint64(off) >= uint64(len(blobs)) {
		return rawVerdict{invalid: true}
	}
	b := blobs[off:]
	v.kind = b[0] & 0x7f
	p := 1
	if v.kind > 4 {
		v.invalid = true
	}
	if b[0]&0x80 != 0 {
		n, w := binary.Uvarint(b[p:])
		if w <= 0 || n > uint64(len(b)-p-w) {
			return rawVerdict{invalid: true}
		}
		v.catRaw = b[p+w : p+w+int(n)]
		p += w + int(n)
	} else {
		i, w := binary.Uvarint(b[p:])
		if w <= 0 || i > uint64(ncats) {
			return rawVerdict{invalid: true}
		}
		v.catIdx = uint32(i)
		p += w
	}
	n, w := binary.Uvarint(b[p:])
	if w <= 0 || n > uint64(len(b)-p-w) {
		return rawVerdict{invalid: true}
	}
	v.name = b[p+w : p+w+int(n)]
	v.size = p + w + int(n)
	return v
}

// parseCats decodes the category table.
func parseCats(b []byte) ([]string, error) {
	n, w := binary.Uvarint(b)
	if w <= 0 || n > uint64(len(b)) {
		return nil, errors.New("bad category count")
	}
	b = b[w:]
	cats := make([]string, 0, n)
	for i := uint64(0); i < n; i++ {
		l, w := binary.Uvarint(b)
		if w <= 0 || l > uint64(len(b)-w) {
			return nil, errors.New("bad category")
		}
		cats = append(cats, string(b[w:w+int(l)]))
		b = b[w+int(l):]
	}
	if len(b) != 0 {
		return nil, errors.New("trailing bytes after categories")
	}
	return cats, nil
}

func appendCats(b []byte, cats []string) []byte {
	b = binary.AppendUvarint(b, uint64(len(cats)))
	for _, c := range cats {
		b = binary.AppendUvarint(b, uint64(len(c)))
		b = append(b, c...)
	}
	return b
}

// section is a named extra part of a file.
type section struct {
	name string
	data []byte
}

func appendSections(b []byte, ss []section) []byte {
	for _, s := range ss {
		b = binary.AppendUvarint(b, uint64(len(s.name)))
		b = append(b, s.name...)
		b = binary.AppendUvarint(b, uint64(len(s.data)))
		b = append(b, s.data...)
	}
	return b
}

// parseSections returns the sections of b; their data alias b.
func parseSections(b []byte) (map[string][]byte, error) {
	m := map[string][]byte{}
	for len(b) > 0 {
		l, w := binary.Uvarint(b)
		if w <= 0 || l > uint64(len(b)-w) || l > 64 {
			return nil, errors.New("bad section name")
		}
		name := string(b[w : w+int(l)])
		b = b[w+int(l):]
		l, w = binary.Uvarint(b)
		if w <= 0 || l > uint64(len(b)-w) {
			return nil, errors.New("bad section")
		}
		m[name] = b[w : w+int(l) : w+int(l)]
		b = b[w+int(l):]
	}
	return m, nil
}

// truncateString cuts s to at most n bytes on a UTF-8 boundary.
func truncateString(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && s[n]&0xc0 == 0x80 {
		n--
	}
	return s[:n]
}
