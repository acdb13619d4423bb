package scanner

import (
	"bufio"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// Gzip as browsers and zlib read it. Go's compress/gzip refuses a member
// whose header carries a file name or comment over 512 bytes (ErrHeader),
// which zlib, and so every browser and curl --compressed, decodes: a body
// the scanner could not decode would pass unscanned, a file the client
// reads whole. gzipReader reads each member's header itself, whatever the
// length of its optional fields, and hands compress/gzip a header without
// them; the deflate data, its CRC-32 and its length are checked by
// compress/gzip as before. A stream of several members is read through as
// one, as gzip.Reader's multistream mode does.

// gzip header flags (RFC 1952 section 2.3.1).
const (
	gzipFlagHCRC    = 1 << 1
	gzipFlagExtra   = 1 << 2
	gzipFlagName    = 1 << 3
	gzipFlagComment = 1 << 4
)

// maxGzipName is how much of a member's file name is kept: its last bytes,
// where the extension is, after an ellipsis.
const maxGzipName = 255

type gzipReader struct {
	br   *bufio.Reader
	zr   *gzip.Reader
	hdr  headerReader // the current member: its rewritten header, then br
	name string       // the first member's file name, as latin-1 decoded
	err  error
}

// newGzipReader reads the first member's header from r.
func newGzipReader(r io.Reader) (*gzipReader, error) {
	br, ok := r.(*bufio.Reader)
	if !ok {
		br = bufio.NewReader(r)
	}
	g := &gzipReader{br: br}
	name, err := g.member()
	if err != nil {
		return nil, err
	}
	g.name = name
	return g, nil
}

// member reads the next member's header and sets the decoder on it.
func (g *gzipReader) member() (string, error) {
	var h [10]byte
	if _, err := io.ReadFull(g.br, h[:]); err != nil {
		if err == io.ErrUnexpectedEOF {
			err = gzip.ErrHeader
		}
		return "", err
	}
	if h[0] != 0x1f || h[1] != 0x8b || h[2] != 8 {
		return "", gzip.ErrHeader
	}
	flags := h[3]
	if flags&gzipFlagExtra != 0 {
		var n [2]byte
		if _, err := io.ReadFull(g.br, n[:]); err != nil {
			return "", gzip.ErrHeader
		}
		if _, err := g.br.Discard(int(binary.LittleEndian.Uint16(n[:]))); err != nil {
			return "", gzip.ErrHeader
		}
	}
	var name string
	if flags&gzipFlagName != 0 {
		var err error
		if name, err = g.field(true); err != nil {
			return "", err
		}
	}
	if flags&gzipFlagComment != 0 {
		if _, err := g.field(false); err != nil {
			return "", err
		}
	}
	if flags&gzipFlagHCRC != 0 {
		if _, err := g.br.Discard(2); err != nil {
			return "", gzip.ErrHeader
		}
	}
	h[3] = 0 // no optional fields: they were read above
	g.hdr = headerReader{head: h, br: g.br}
	if g.zr == nil {
		g.zr = new(gzip.Reader)
	}
	if err := g.zr.Reset(&g.hdr); err != nil {
		return "", err
	}
	g.zr.Multistream(false) // members are read by Read, each header here
	return name, nil
}

// field reads a NUL-terminated header field of any length, keeping its
// last maxGzipName bytes when keep is set.
func (g *gzipReader) field(keep bool) (string, error) {
	var kept []byte
	long := false
	for {
		b, err := g.br.ReadSlice(0)
		if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
			return "", gzip.ErrHeader
		}
		if keep {
			if err == nil {
				b = b[:len(b)-1] // the NUL
			}
			kept = append(kept, b...)
			if len(kept) > maxGzipName {
				kept, long = kept[len(kept)-maxGzipName:], true
			}
		}
		if err == nil {
			break
		}
	}
	// Latin-1 (RFC 1952), as compress/gzip decodes it.
	r := make([]rune, 0, len(kept)+1)
	if long {
		r = append(r, '…')
	}
	for _, c := range kept {
		r = append(r, rune(c))
	}
	return string(r), nil
}

func (g *gzipReader) Read(p []byte) (int, error) {
	for g.err == nil {
		n, err := g.zr.Read(p)
		if err != io.EOF {
			return n, err
		}
		// The member is done (its CRC and length checked): another one,
		// or the end.
		if _, perr := g.br.Peek(1); perr == io.EOF {
			g.err = io.EOF
		} else if _, merr := g.member(); merr != nil {
			g.err = fmt.Errorf("gzip: member after the first: %w", merr)
		}
		if n > 0 {
			return n, nil
		}
	}
	return 0, g.err
}

// headerReader is a gzip member as compress/gzip is given it: a header
// without optional fields, then the member's data straight from br. It is
// a flate.Reader (ReadByte), so that compress/gzip reads no byte past the
// member's end.
type headerReader struct {
	head [10]byte
	off  int
	br   *bufio.Reader
}

func (h *headerReader) Read(p []byte) (int, error) {
	if h.off < len(h.head) {
		n := copy(p, h.head[h.off:])
		h.off += n
		return n, nil
	}
	return h.br.Read(p)
}

func (h *headerReader) ReadByte() (byte, error) {
	if h.off < len(h.head) {
		h.off++
		return h.head[h.off-1], nil
	}
	return h.br.ReadByte()
}
