package db

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// Where a database file is assembled (build.go) or received: memory up to
// a limit, then a temporary file; renamed into place and checked at the end.

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
		f, err := os.CreateTemp(dir, buildPrefix+"*")
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
	if received && t.Token != "" && d.Token() != t.Token {
		return fmt.Errorf("%w: version token %q, want %q", ErrBadSnapshot, d.Token(), t.Token)
	}
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
// structure (Verify) and, when they are set, the checksum (t.Expect) and
// the version token (t.Token), before the file takes t.Path's place.
// t.Version is ignored: the file's header has it.
func Receive(r io.Reader, t Target) (*DB, error) {
	var hb [headerSize]byte
	if _, err := io.ReadFull(r, hb[:]); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadSnapshot, err)
	}
	_, l, err := headerLayout(hb[:])
	if err != nil {
		return nil, err
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
