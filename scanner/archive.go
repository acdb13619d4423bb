package scanner

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/picket-proxy/picket/internal/countio"
)

// errBomb stops every read of an inspection once a limit is crossed.
var errBomb = errors.New("scanner: archive limits exceeded")

// object is a file or member kept for reputation lookups.
type object struct {
	path string
	sums Sums
	typ  Type
}

// finding is a local detection.
type finding struct {
	path   string
	chain  []string // the enclosing archives' paths, then path
	threat string
	source Source
	engine string // the engine's name, for SourceEngine
	sums   Sums
}

// inspector walks one file and the archives inside it, depth first,
// streaming members (only a zip inside an archive is spooled, since a zip
// is read from its end). It keeps running totals for the limits.
type inspector struct {
	ctx  context.Context
	s    *Scanner
	lim  ArchiveLimits
	sigs *Signatures
	buf  []byte

	chain        []string // paths of the archives being walked
	findings     []finding
	good         map[string]bool // paths of known-good objects
	paths        map[string]bool // every object's path, each once (member)
	parts        []string        // an upload form's parts' paths, in order (form.go)
	executables  []object        // executable members, up to maxLookups
	archivedExec bool            // a member is an executable or a script (active.go)
	decodedSums  Sums

	members    int
	expanded   int64
	scanned    int64
	bomb       string // why the file is an archive bomb
	incomplete string // what was not inspected
	stop       error  // errBomb or ctx's error: stop reading
}

func newInspector(ctx context.Context, s *Scanner) *inspector {
	return &inspector{ctx: ctx, s: s, lim: s.cfg.Archive, sigs: s.cfg.Signatures, good: map[string]bool{},
		paths: map[string]bool{"": true}}
}

// member returns the path of a new member: path itself, or, when another
// object of this file has it already, path with " (2)", " (3)"... before
// its extension. Zip and tar allow duplicate names, a form's file names
// are the sender's, and a member without a name would be the file itself
// (""): what is known of one object by its path (known good, clean by
// reputation) must never be taken for another's.
func (in *inspector) member(path string) string {
	p := path
	for n := 2; in.paths[p]; n++ {
		i := strings.LastIndexByte(path, '.')
		if i <= strings.LastIndexByte(path, '/') {
			i = len(path)
		}
		p = fmt.Sprintf("%s (%d)%s", path[:i], n, path[i:])
	}
	in.paths[p] = true
	return p
}

// maxNotes bounds the notes kept in Result.Incomplete.
const maxNotes = 4

// note records something that was not inspected.
func (in *inspector) note(msg string) {
	switch n := strings.Count(in.incomplete, "; "); {
	case in.incomplete == "":
		in.incomplete = msg
	case n < maxNotes-1:
		in.incomplete += "; " + msg
	case n == maxNotes-1:
		in.incomplete += "; ..."
	}
}

func (in *inspector) setBomb(format string, args ...any) {
	if in.bomb == "" {
		in.bomb = fmt.Sprintf(format, args...)
	}
	in.stop = errBomb
}

// flagged returns the objects with a finding.
func (in *inspector) flagged() []object {
	out := make([]object, 0, len(in.findings))
	for _, f := range in.findings {
		out = append(out, object{path: f.path, sums: f.sums})
	}
	return out
}

// anyGood reports whether one of the paths is known good.
func (in *inspector) anyGood(paths []string) bool { return anyIn(paths, in.good) }

// check runs the per-object rules: known good, EICAR, hash signatures.
func (in *inspector) check(path string, sums Sums, size int64, head []byte, t Type) {
	in.scanned += size
	if _, ok := in.sigs.KnownGood(sums, size); ok {
		in.good[path] = true // findings under it are dropped by merge
	}
	f := finding{path: path, sums: sums}
	if IsEICAR(head, size) {
		f.threat, f.source = EICARName, SourceEICAR
	} else if name, ok := in.sigs.Match(sums, size); ok {
		f.threat, f.source = name, SourceSignature
	}
	if f.threat != "" {
		f.chain = append(slices.Clone(in.chain), path)
		in.findings = append(in.findings, f)
	}
	if path != "" && activeMember(path, t) {
		in.archivedExec = true
	}
	if path != "" && t.Executable() && len(in.executables) < maxLookups {
		in.executables = append(in.executables, object{path: path, sums: sums, typ: t})
	}
}

// file inspects an object held whole: the scanned file itself, or a zip
// member spooled for random access.
func (in *inspector) file(path string, ra io.ReaderAt, size int64, sums Sums, head []byte, t Type) {
	in.check(path, sums, size, head, t)
	if in.opens(path, t, len(in.chain)+1) {
		in.chain = append(in.chain, path)
		if t.IsZip() {
			in.zip(path, ra, size, len(in.chain))
		} else {
			in.archiveStream(path, t, io.NewSectionReader(ra, 0, size), len(in.chain))
		}
		in.chain = in.chain[:len(in.chain)-1]
	}
}

// opens reports whether an object of type t is an archive to open, with its
// members at depth; it notes archives too deep to open.
func (in *inspector) opens(path string, t Type, depth int) bool {
	if !t.IsZip() && t != TypeGzip && t != TypeTar || in.stop != nil {
		return false
	}
	if depth > in.lim.MaxDepth {
		in.note(fmt.Sprintf("%s: nested deeper than max_depth %d, not opened", display(path), in.lim.MaxDepth))
		return false
	}
	return true
}

// addMember counts a member against MaxMembers.
func (in *inspector) addMember(path string) bool {
	if in.stop != nil {
		return false
	}
	if err := in.ctx.Err(); err != nil {
		in.stop = err
		return false
	}
	in.members++
	if in.members > in.lim.MaxMembers {
		in.setBomb("%s: over max_members (%d)", display(path), in.lim.MaxMembers)
		return false
	}
	return true
}

// stream inspects a member read once from r, at depth. It returns r's
// read error; the member is then not checked (its hash would be wrong).
func (in *inspector) stream(path string, r io.Reader, depth int) error {
	head := make([]byte, HeadSize)
	n, err := io.ReadFull(r, head)
	if err != nil && err != io.EOF && err != io.ErrUnexpectedEOF {
		return err
	}
	head = head[:n]
	h := NewHasher()
	h.Write(head)
	t := Sniff(head)
	body := io.TeeReader(r, h)
	if in.opens(path, t, depth+1) {
		if t.IsZip() {
			sp := in.s.newSpool()
			defer sp.Close()
			sp.Write(head)
			if _, err := io.CopyBuffer(sp, body, in.buffer()); err != nil {
				return err
			}
			in.file(path, sp, sp.Size(), h.Sums(), head, t)
			return nil
		}
		in.chain = append(in.chain, path)
		in.archiveStream(path, t, io.MultiReader(bytes.NewReader(head), body), depth+1)
		in.chain = in.chain[:len(in.chain)-1]
	}
	if in.stop != nil {
		return in.stop
	}
	if _, err := io.Copy(io.Discard, body); err != nil {
		return err
	}
	in.check(path, h.Sums(), h.Size(), head, t)
	return nil
}

func (in *inspector) buffer() []byte {
	if in.buf == nil {
		in.buf = make([]byte, 32<<10)
	}
	return in.buf
}

// archiveStream walks a gzip or tar archive read once from r; its members
// are at depth.
func (in *inspector) archiveStream(path string, t Type, r io.Reader, depth int) {
	switch t {
	case TypeGzip:
		cr := &countio.Reader{R: r}
		zr, err := newGzipReader(cr)
		if err != nil {
			in.note(fmt.Sprintf("%s: not a valid gzip file: %v", display(path), err))
			return
		}
		name := zr.name
		if name == "" {
			name = "(gzip)"
		}
		if !in.addMember(path) {
			return
		}
		err = in.stream(in.member(join(path, name)), &expander{in: in, r: zr, compressed: cr}, depth)
		in.readError(path, err)
	case TypeTar:
		tr := tar.NewReader(r)
		for {
			hdr, err := tr.Next()
			if err == io.EOF {
				return
			}
			if err != nil {
				in.readError(path, err)
				return
			}
			if hdr.Typeflag != tar.TypeReg && hdr.Typeflag != tar.TypeRegA {
				continue
			}
			if !in.addMember(path) {
				return
			}
			if err := in.stream(in.member(join(path, hdr.Name)), tr, depth); err != nil {
				in.readError(path, err)
				return
			}
		}
	}
}

// readError notes a member that could not be read, unless reading stopped
// on purpose.
func (in *inspector) readError(path string, err error) {
	if err == nil || in.stop != nil || errors.Is(err, errBomb) {
		return
	}
	if cerr := in.ctx.Err(); cerr != nil {
		in.stop = cerr
		return
	}
	in.note(fmt.Sprintf("%s: %v", display(path), err))
}

// zip walks a zip archive whose members are at depth. Limits are checked
// on the central directory first, so a bomb is found before anything is
// decompressed; archive/zip then refuses members that inflate past their
// declared size.
func (in *inspector) zip(path string, ra io.ReaderAt, size int64, depth int) {
	if n, ok := zipEntries(ra, size); ok && n > uint64(in.lim.MaxMembers-in.members) {
		in.setBomb("%s: %d members, over max_members (%d)", display(path), n, in.lim.MaxMembers)
		return
	}
	zr, err := zip.NewReader(ra, size)
	if err != nil {
		in.note(fmt.Sprintf("%s: not a valid zip: %v", display(path), err))
		return
	}
	for _, f := range zr.File {
		if !in.addMember(path) {
			return
		}
		u, c := f.UncompressedSize64, f.CompressedSize64
		if u >= ratioFloor && (c == 0 || u/c > uint64(in.lim.MaxRatio)) {
			in.setBomb("%s: member %q expands %d:1, over max_ratio (%d)", display(path), f.Name, u/max(c, 1), in.lim.MaxRatio)
			return
		}
		if u > uint64(in.lim.MaxExpanded-in.expanded) {
			in.setBomb("%s: members expand to over max_expanded (%d bytes)", display(path), in.lim.MaxExpanded)
			return
		}
		in.expanded += int64(u)
	}
	for _, f := range zr.File {
		if in.stop != nil {
			return
		}
		if strings.HasSuffix(f.Name, "/") || f.Mode().IsDir() {
			continue
		}
		if f.Flags&1 != 0 {
			in.note(fmt.Sprintf("%s: member %q is encrypted", display(path), f.Name))
			continue
		}
		rc, err := f.Open()
		if err != nil {
			in.note(fmt.Sprintf("%s: member %q: %v", display(path), f.Name, err))
			continue
		}
		err = in.stream(in.member(join(path, f.Name)), ctxReader{in.ctx, rc}, depth)
		rc.Close()
		if errors.Is(err, zip.ErrFormat) && in.stop == nil {
			in.setBomb("%s: member %q inflates past its declared size", display(path), f.Name)
			return
		}
		in.readError(path, err)
	}
}

// zipEntries reads the number of members from a zip's end of central
// directory record (zip64 too), without reading the directory.
func zipEntries(ra io.ReaderAt, size int64) (uint64, bool) {
	const eocdLen, maxComment = 22, 65535
	n := min(size, eocdLen+maxComment)
	if n < eocdLen {
		return 0, false
	}
	buf := make([]byte, n)
	if _, err := ra.ReadAt(buf, size-n); err != nil && err != io.EOF {
		return 0, false
	}
	i := bytes.LastIndex(buf, []byte("PK\x05\x06"))
	if i < 0 || len(buf)-i < eocdLen {
		return 0, false
	}
	count := uint64(binary.LittleEndian.Uint16(buf[i+10:]))
	if count != 0xffff || i < 20 || !bytes.Equal(buf[i-20:i-16], []byte("PK\x06\x07")) {
		return count, true
	}
	off := int64(binary.LittleEndian.Uint64(buf[i-20+8:]))
	var rec [56]byte
	if off < 0 || off > size-56 {
		return 0, false
	}
	if _, err := ra.ReadAt(rec[:], off); err != nil || !bytes.Equal(rec[:4], []byte("PK\x06\x06")) {
		return 0, false
	}
	return binary.LittleEndian.Uint64(rec[32:]), true
}

// expander counts decompressed bytes against MaxExpanded and MaxRatio.
type expander struct {
	in         *inspector
	r          io.Reader
	compressed *countio.Reader
	out        int64
}

func (e *expander) Read(p []byte) (int, error) {
	in := e.in
	if in.stop != nil {
		return 0, in.stop
	}
	if err := in.ctx.Err(); err != nil {
		in.stop = err
		return 0, err
	}
	n, err := e.r.Read(p)
	e.out += int64(n)
	in.expanded += int64(n)
	switch {
	case in.expanded > in.lim.MaxExpanded:
		in.setBomb("decompression past max_expanded (%d bytes)", in.lim.MaxExpanded)
		return n, errBomb
	case e.out >= ratioFloor && e.out/max(e.compressed.N, 1) > int64(in.lim.MaxRatio):
		in.setBomb("gzip stream expands over max_ratio (%d:1)", in.lim.MaxRatio)
		return n, errBomb
	}
	return n, err
}

func join(path, name string) string {
	if path == "" {
		return name
	}
	return path + "/" + name
}

func display(path string) string {
	if path == "" {
		return "file"
	}
	return path
}

func hexSHA(s Sums) string { return hex.EncodeToString(s.SHA256[:]) }
