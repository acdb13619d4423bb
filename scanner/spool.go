package scanner

import (
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
)

// chunkSize is the unit in which memory is taken from the budget.
const chunkSize = 64 << 10

var chunkPool = sync.Pool{New: func() any { b := make([]byte, chunkSize); return &b }}

// budget is the memory all spools of one Scanner may hold, in bytes.
type budget struct {
	limit int64
	used  atomic.Int64
}

// reserve takes n bytes from the budget; false when that would exceed it.
func (b *budget) reserve(n int64) bool {
	for {
		u := b.used.Load()
		if u+n > b.limit {
			return false
		}
		if b.used.CompareAndSwap(u, u+n) {
			return true
		}
	}
}

func (b *budget) release(n int64) { b.used.Add(-n) }

// spool holds a body: in memory chunks up to threshold bytes (and while the
// budget allows), then in a temp file. The temp file is created 0600 and, on
// systems that allow it, unlinked at once, so it disappears with the process
// even on a crash; elsewhere Close removes it. spool is an io.ReaderAt over
// what was written. It is not safe for concurrent writes.
type spool struct {
	budget    *budget
	threshold int64
	dir       string
	spills    *atomic.Uint64 // counts spills; may be nil

	chunks []*[]byte
	n      int64
	file   *os.File
	path   string // the temp file's name until it is removed
	closed bool
}

// errDisk wraps failures of the temp file.
var errDisk = errors.New("scanner: temp file")

// errClosed is returned by a spool or Scan used after Close.
var errClosed = errors.New("scanner: scan closed")

func (s *spool) Write(p []byte) (int, error) {
	if s.closed {
		return 0, errClosed
	}
	total := len(p)
	for len(p) > 0 {
		if s.file != nil {
			n, err := s.file.Write(p)
			s.n += int64(n)
			if err != nil {
				return total - len(p) + n, fmt.Errorf("%w: writing: %w", errDisk, err)
			}
			return total, nil
		}
		off := int(s.n % chunkSize)
		if off == 0 && int64(len(s.chunks)) == s.n/chunkSize {
			if int64(len(s.chunks)+1)*chunkSize > s.threshold || !s.budget.reserve(chunkSize) {
				if err := s.spill(); err != nil {
					return total - len(p), err
				}
				continue
			}
			s.chunks = append(s.chunks, chunkPool.Get().(*[]byte))
		}
		n := copy((*s.chunks[len(s.chunks)-1])[off:], p)
		s.n += int64(n)
		p = p[n:]
	}
	return total, nil
}

// spill moves the memory chunks into a new temp file.
func (s *spool) spill() error {
	f, err := os.CreateTemp(s.dir, "picket-scan-*")
	if err != nil {
		return fmt.Errorf("%w: spilling to disk: %w", errDisk, err)
	}
	s.file, s.path = f, f.Name()
	if runtime.GOOS != "windows" {
		if os.Remove(s.path) == nil {
			s.path = ""
		}
	}
	if s.spills != nil {
		s.spills.Add(1)
	}
	rest := s.n
	for _, c := range s.chunks {
		m := min(rest, chunkSize)
		if _, err := f.Write((*c)[:m]); err != nil {
			s.closeFile()
			return fmt.Errorf("%w: spilling to disk: %w", errDisk, err)
		}
		rest -= m
	}
	s.freeChunks()
	return nil
}

func (s *spool) freeChunks() {
	for _, c := range s.chunks {
		chunkPool.Put(c)
	}
	s.budget.release(int64(len(s.chunks)) * chunkSize)
	s.chunks = nil
}

func (s *spool) closeFile() {
	if s.file != nil {
		s.file.Close()
		s.file = nil
	}
	if s.path != "" {
		os.Remove(s.path)
		s.path = ""
	}
}

// Size is the number of bytes written.
func (s *spool) Size() int64 { return s.n }

// onDisk reports whether the spool spilled to a temp file.
func (s *spool) onDisk() bool { return s.file != nil }

// ReadAt reads what was written, at off.
func (s *spool) ReadAt(p []byte, off int64) (int, error) {
	if s.closed {
		return 0, errClosed
	}
	if off < 0 {
		return 0, errors.New("scanner: negative offset")
	}
	if off >= s.n {
		return 0, io.EOF
	}
	want := len(p)
	if int64(want) > s.n-off {
		p = p[:s.n-off]
	}
	if s.file != nil {
		n, err := s.file.ReadAt(p, off)
		if err == nil && n < want {
			err = io.EOF
		}
		return n, err
	}
	n := 0
	for len(p) > 0 {
		c := *s.chunks[off/chunkSize]
		m := copy(p, c[off%chunkSize:])
		n += m
		off += int64(m)
		p = p[m:]
	}
	if n < want {
		return n, io.EOF
	}
	return n, nil
}

// Close frees the memory and closes (and if needed removes) the temp file.
// It is idempotent.
func (s *spool) Close() error {
	if s.closed {
		return nil
	}
	s.closed = true
	s.freeChunks()
	s.closeFile()
	return nil
}
