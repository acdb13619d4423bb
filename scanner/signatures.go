package scanner

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/picket-proxy/picket/reputation"
)

// Signatures is a set of ClamAV hash signatures: detections (.hdb MD5 and
// .hsb SHA-1/SHA-256 files, and their .hdu/.hsu "potentially unwanted"
// variants) and known-good files (.fp and .sfp), each a line
// "HASH:SIZE:NAME" where SIZE is the file size in bytes or "*" for any size.
// The hash's length says its algorithm. The zero value matches nothing; a
// loaded set is read-only and safe for concurrent use.
type Signatures struct {
	bad  hashSet
	good hashSet
}

type hashSet struct {
	md5    map[[16]byte][]sig
	sha1   map[[20]byte][]sig
	sha256 map[[32]byte][]sig
	n      int
}

type sig struct {
	size int64 // -1 for any size
	name string
}

// match returns the name of an entry for sums and size.
func (h *hashSet) match(s *Sums, size int64) (string, bool) {
	for _, list := range [...][]sig{h.sha256[s.SHA256], h.sha1[s.SHA1], h.md5[s.MD5]} {
		for _, e := range list {
			if e.size < 0 || e.size == size {
				return e.name, true
			}
		}
	}
	return "", false
}

func (h *hashSet) add(sum []byte, e sig) {
	switch len(sum) {
	case 16:
		if h.md5 == nil {
			h.md5 = make(map[[16]byte][]sig)
		}
		k := [16]byte(sum)
		h.md5[k] = append(h.md5[k], e)
	case 20:
		if h.sha1 == nil {
			h.sha1 = make(map[[20]byte][]sig)
		}
		k := [20]byte(sum)
		h.sha1[k] = append(h.sha1[k], e)
	case 32:
		if h.sha256 == nil {
			h.sha256 = make(map[[32]byte][]sig)
		}
		k := [32]byte(sum)
		h.sha256[k] = append(h.sha256[k], e)
	}
	h.n++
}

// Match returns the threat name of a detection signature for a file with
// these digests and size.
func (s *Signatures) Match(sums Sums, size int64) (string, bool) {
	if s == nil {
		return "", false
	}
	return s.bad.match(&sums, size)
}

// KnownGood returns the name of a known-good (.fp) entry for the file.
func (s *Signatures) KnownGood(sums Sums, size int64) (string, bool) {
	if s == nil {
		return "", false
	}
	return s.good.match(&sums, size)
}

// Len returns the number of detection and known-good entries.
func (s *Signatures) Len() (detections, knownGood int) {
	if s == nil {
		return 0, 0
	}
	return s.bad.n, s.good.n
}

// SignatureKind says what a signature file holds.
type SignatureKind uint8

// The signature file kinds.
const (
	Detections SignatureKind = iota // .hdb, .hsb, .hdu, .hsu
	KnownGood                       // .fp, .sfp
)

// ErrSignatureFile is returned (wrapped) for a file whose extension is not a
// supported ClamAV hash database.
var ErrSignatureFile = errors.New("scanner: unsupported signature file (want .hdb, .hsb, .hdu, .hsu, .fp or .sfp)")

// SignatureKindOf returns the kind of a signature file from its extension.
func SignatureKindOf(path string) (SignatureKind, error) {
	switch strings.ToLower(filepath.Ext(path)) {
	case ".hdb", ".hsb", ".hdu", ".hsu":
		return Detections, nil
	case ".fp", ".sfp":
		return KnownGood, nil
	}
	return 0, fmt.Errorf("%w: %s", ErrSignatureFile, path)
}

// BadLine is a line of a signature file that was skipped.
type BadLine struct {
	File string
	Line int
	Msg  string
}

func (b BadLine) String() string { return fmt.Sprintf("%s:%d: %s", b.File, b.Line, b.Msg) }

// MaxBadLinesKept bounds SignatureReport.Bad.
const MaxBadLinesKept = 100

// SignatureReport says what LoadSignatures read.
type SignatureReport struct {
	Files    []string // the files read, after glob expansion
	BadLines int      // lines skipped
	Bad      []BadLine
}

// maxSigLine bounds one signature line.
const maxSigLine = 4 << 10

// LoadSignatures reads every file matching the glob patterns. A pattern
// without glob characters must name an existing file; a glob may match
// nothing. Bad lines are skipped and reported, not fatal.
func LoadSignatures(patterns []string) (*Signatures, *SignatureReport, error) {
	s := &Signatures{}
	r := &SignatureReport{}
	for _, pat := range patterns {
		files, err := filepath.Glob(pat)
		if err != nil {
			return nil, nil, fmt.Errorf("scanner: signatures %q: %w", pat, err)
		}
		if len(files) == 0 && !strings.ContainsAny(pat, "*?[") {
			return nil, nil, fmt.Errorf("scanner: signatures: %w", &os.PathError{Op: "open", Path: pat, Err: os.ErrNotExist})
		}
		sort.Strings(files)
		for _, path := range files {
			kind, err := SignatureKindOf(path)
			if err != nil {
				return nil, nil, err
			}
			f, err := os.Open(path)
			if err != nil {
				return nil, nil, fmt.Errorf("scanner: signatures: %w", err)
			}
			err = s.Parse(path, kind, f, r)
			f.Close()
			if err != nil {
				return nil, nil, err
			}
			r.Files = append(r.Files, path)
		}
	}
	return s, r, nil
}

// Parse adds the lines of one signature file to s. name is used in the
// report, which may be nil. Only read errors are returned.
func (s *Signatures) Parse(name string, kind SignatureKind, r io.Reader, rep *SignatureReport) error {
	set := &s.bad
	if kind == KnownGood {
		set = &s.good
	}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), maxSigLine)
	n := 0
	bad := func(format string, args ...any) {
		if rep == nil {
			return
		}
		rep.BadLines++
		if len(rep.Bad) < MaxBadLinesKept {
			rep.Bad = append(rep.Bad, BadLine{File: name, Line: n, Msg: fmt.Sprintf(format, args...)})
		}
	}
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		sum, e, err := parseSigLine(line)
		if err != nil {
			bad("%v", err)
			continue
		}
		set.add(sum, e)
	}
	if errors.Is(sc.Err(), bufio.ErrTooLong) {
		n++
		bad("line longer than %d bytes; rest of file skipped", maxSigLine)
		return nil
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("scanner: signatures %s: %w", name, err)
	}
	return nil
}

// parseSigLine parses "HASH:SIZE:NAME[:FLEVEL[:...]]".
func parseSigLine(line string) ([]byte, sig, error) {
	f := strings.SplitN(line, ":", 4)
	if len(f) < 3 {
		return nil, sig{}, errors.New("want HASH:SIZE:NAME")
	}
	sum, err := reputation.ParseFileHash(f[0])
	if err != nil {
		return nil, sig{}, err
	}
	e := sig{size: -1, name: strings.TrimSpace(f[2])}
	if e.name == "" {
		return nil, sig{}, errors.New("empty signature name")
	}
	if f[1] != "*" {
		e.size, err = strconv.ParseInt(f[1], 10, 64)
		if err != nil || e.size < 0 {
			return nil, sig{}, fmt.Errorf("bad size %q (want bytes or *)", f[1])
		}
	}
	return sum, e, nil
}
