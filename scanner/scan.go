package scanner

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/picket-proxy/picket/reputation"
)

// ErrTooLarge is returned by Scan.Write and Scan.ReadFrom once a body is
// over MaxSize (or declared to be). Every byte handed over until then,
// including those of the call that returned it, stays readable through
// Reader, so the caller can deliver Reader followed by the rest of the
// source; Finish then reports VerdictOversize.
var ErrTooLarge = errors.New("scanner: body larger than max_size")

// Meta describes the body of a Scan.
type Meta struct {
	// ContentEncoding is the body's Content-Encoding ("", "gzip", "br",
	// "deflate", or a list); it is removed for scanning, not for delivery.
	ContentEncoding string
	// Size is the declared length in bytes, -1 if unknown.
	Size int64
	// Method, URL (without its query), Name (the file name) and
	// ContentType describe the body to the engines (an ICAP server sees
	// them). Local checks ignore them but for Upload.
	Method, URL, Name, ContentType string
	// Upload marks a request body (form.go): an engine gets it as an
	// upload (ICAP REQMOD), the files of a multipart/form-data body are
	// also checked one by one, and its hashes are never looked up.
	Upload bool
}

// Scan is one body being scanned: write it (Write or ReadFrom) as it
// arrives, call Finish for the verdict, read it back (Reader or WriteTo)
// to deliver it, and Close it. Close frees its memory and temp file and is
// idempotent; call it on every path. A Scan is used by one goroutine.
type Scan struct {
	s    *Scanner
	meta Meta
	sp   *spool
	h    *Hasher // of the wire bytes, when there is no Content-Encoding

	head     [HeadSize]byte
	headN    int
	over     []byte // bytes accepted past MaxSize
	oversize bool
	err      error   // sticky write error
	feeds    []*feed // the engines' streams, fed as the body arrives (engines.go)
}

// NewScan starts a scan of a body described by m.
func (s *Scanner) NewScan(m Meta) *Scan {
	sc := &Scan{s: s, meta: m, sp: s.newSpool()}
	if identity(m.ContentEncoding) {
		sc.h = NewHasher()
	}
	if m.Size > s.cfg.MaxSize {
		sc.oversize = true
	}
	sc.openFeeds()
	return sc
}

// Write adds p to the body. After ErrTooLarge no more bytes are taken.
func (sc *Scan) Write(p []byte) (int, error) {
	if sc.err != nil {
		return 0, sc.err
	}
	if sc.sp.closed {
		return 0, errClosed
	}
	if sc.oversize {
		if sc.over != nil || sc.sp.Size() > 0 {
			return 0, ErrTooLarge
		}
	} else if sc.sp.Size()+int64(len(p)) > sc.s.cfg.MaxSize {
		sc.oversize = true
	}
	if sc.oversize {
		sc.closeFeeds() // an oversize body is not scanned
		sc.over = append(make([]byte, 0, len(p)), p...)
		return len(p), ErrTooLarge
	}
	n, err := sc.sp.Write(p)
	if sc.feeds != nil {
		sc.feedEngines(p[:n])
	}
	if sc.headN < HeadSize {
		sc.headN += copy(sc.head[sc.headN:], p[:n])
	}
	if sc.h != nil {
		sc.h.Write(p[:n])
	}
	if err != nil {
		sc.err = err
	}
	return n, err
}

// ReadFrom writes all of r to the scan; it returns ErrTooLarge (see there)
// when r holds more than MaxSize bytes, and r's read errors as they are.
func (sc *Scan) ReadFrom(r io.Reader) (int64, error) {
	bp := chunkPool.Get().(*[]byte)
	defer chunkPool.Put(bp)
	buf := *bp
	var total int64
	for {
		n, rerr := r.Read(buf)
		if n > 0 {
			m, werr := sc.Write(buf[:n])
			total += int64(m)
			if werr != nil {
				return total, werr
			}
		}
		if rerr == io.EOF {
			return total, nil
		}
		if rerr != nil {
			return total, rerr
		}
	}
}

// Size is the number of bytes written and kept.
func (sc *Scan) Size() int64 { return sc.sp.Size() + int64(len(sc.over)) }

// Reader returns a reader of every byte written, from the start, as
// received (still Content-Encoded). Each call returns a new reader; it is
// valid until Close.
func (sc *Scan) Reader() io.Reader {
	r := io.NewSectionReader(sc.sp, 0, sc.sp.Size())
	if len(sc.over) == 0 {
		return r
	}
	return io.MultiReader(r, bytes.NewReader(sc.over))
}

// WriteTo writes every byte written to w, as received.
func (sc *Scan) WriteTo(w io.Writer) (int64, error) {
	bp := chunkPool.Get().(*[]byte)
	defer chunkPool.Put(bp)
	return io.CopyBuffer(w, struct{ io.Reader }{sc.Reader()}, *bp)
}

// Close frees the scan's memory and temp file. It is idempotent.
func (sc *Scan) Close() error {
	sc.closeFeeds()
	sc.over = nil
	return sc.sp.Close()
}

// Finish judges the body written so far; call it after the last Write. It
// waits for a scan slot (MaxConcurrent) as long as ctx allows. An error
// means the scanner could not decide: ctx ended, the body could not be
// written or read back, or the reputation lookup failed.
func (sc *Scan) Finish(ctx context.Context) (Result, error) {
	s := sc.s
	start := time.Now()
	res, err := sc.finish(ctx)
	res.Duration = time.Since(start)
	if err != nil {
		s.errs.Add(1)
		return res, err
	}
	s.scans.Add(1)
	s.bytes.Add(uint64(res.Scanned))
	switch res.Verdict {
	case VerdictMalicious:
		s.malicious.Add(1)
	case VerdictBomb:
		s.bombs.Add(1)
	case VerdictOversize:
		s.oversize.Add(1)
	}
	if res.FalseAlarm {
		s.falseAlarms.Add(1)
	}
	return res, nil
}

func (sc *Scan) finish(ctx context.Context) (Result, error) {
	s := sc.s
	if sc.err != nil {
		return Result{}, sc.err
	}
	if sc.sp.closed {
		return Result{}, errClosed
	}
	if err := s.acquire(ctx); err != nil {
		return Result{}, err
	}
	held := true
	release := func() {
		if held {
			held = false
			s.release()
		}
	}
	defer release()

	// 1. Oversize bodies are not scanned.
	res := Result{Type: Sniff(sc.head[:sc.headN]), Size: sc.Size()}
	if sc.oversize {
		return s.oversized(res, fmt.Sprintf("over max_size (%d bytes)", s.cfg.MaxSize)), nil
	}

	// 2. The file is the body with its Content-Encoding removed.
	in := newInspector(ctx, s)
	file, size, sums := io.ReaderAt(sc.sp), sc.sp.Size(), Sums{}
	if sc.h != nil {
		sums = sc.h.Sums()
	} else {
		dec, err := sc.decode(ctx, in)
		if dec != nil {
			defer dec.Close()
		}
		switch {
		case err != nil:
			return Result{}, err
		case in.bomb != "":
			return s.bombResult(res, in.bomb), nil
		case dec == nil: // undecodable: scan the bytes as they are
			h := NewHasher()
			if _, err := io.Copy(h, io.NewSectionReader(sc.sp, 0, size)); err != nil {
				return Result{}, fmt.Errorf("scanner: reading body: %w", err)
			}
			sums = h.Sums()
		case dec.Size() > s.cfg.MaxSize:
			res.Size = dec.Size()
			return s.oversized(res, fmt.Sprintf("decodes to over max_size (%d bytes)", s.cfg.MaxSize)), nil
		default:
			file, size, sums = dec, dec.Size(), in.decodedSums
		}
	}
	var head [HeadSize]byte
	n, err := file.ReadAt(head[:], 0)
	if err != nil && err != io.EOF {
		return Result{}, fmt.Errorf("scanner: reading body: %w", err)
	}
	res.Type, res.Size, res.Sums = Sniff(head[:n]), size, sums

	// 3.-5. Signatures, archives, known good.
	in.file("", file, size, sums, head[:n], res.Type)
	if b := formBoundary(sc.meta); b != "" && in.stop == nil {
		in.form(io.NewSectionReader(file, 0, size), b) // form.go: each file of an upload on its own
	}
	if err := ctx.Err(); err != nil {
		return Result{}, fmt.Errorf("scanner: %w", err)
	}
	res.Active = in.activeContent(file, size, res.Type, sc.meta.Name) // active.go
	res.Scanned = in.scanned
	res.Incomplete = in.incomplete

	// The slot bounds CPU work, not waiting for engines or lookups.
	release()

	// 6. The engines (engines.go), unless the local checks decided.
	if err := sc.runEngines(ctx, &res, in, file, size); err != nil {
		res.Scanned, res.Incomplete = in.scanned, in.incomplete
		return res, err
	}
	res.Incomplete = in.incomplete

	// 7. Reputation (never for an upload: its hashes name a person's own
	// document), and the merge.
	res, err = s.merge(ctx, res, in, sc.meta.Upload)
	if err == nil && res.Partial && !res.Blocked && s.cfg.BlockOversize && res.Verdict != VerdictClean {
		res.Blocked = true
		res.Reason = "only partly scanned by an engine, and oversize bodies are blocked"
	}
	return res, err
}

// decode removes the Content-Encoding into a new spool, bounded by MaxSize
// and the ratio limit. It returns a nil spool (and notes it) if the encoding
// is unknown or broken at the start.
func (sc *Scan) decode(ctx context.Context, in *inspector) (*spool, error) {
	s := sc.s
	wire := sc.sp.Size()
	r, err := decodeBody(sc.meta.ContentEncoding, io.NewSectionReader(sc.sp, 0, wire))
	if err != nil {
		in.note(fmt.Sprintf("content encoding not decoded: %v", err))
		return nil, nil
	}
	dec := s.newSpool()
	h := NewHasher()
	lr := &io.LimitedReader{R: ctxReader{ctx, r}, N: s.cfg.MaxSize + 1}
	bp := chunkPool.Get().(*[]byte)
	_, err = io.CopyBuffer(io.MultiWriter(dec, h), lr, *bp)
	chunkPool.Put(bp)
	if cerr := ctx.Err(); cerr != nil {
		dec.Close()
		return nil, fmt.Errorf("scanner: %w", cerr)
	}
	if err != nil {
		if errors.Is(err, errClosed) || errors.Is(err, errDisk) {
			dec.Close()
			return nil, err
		}
		in.note(fmt.Sprintf("content encoding: %v", err)) // scan what decoded
	}
	if lr.N == 0 && wire > 0 && dec.Size()/wire > int64(s.cfg.Archive.MaxRatio) {
		in.bomb = fmt.Sprintf("content encoding expands over %d:1", s.cfg.Archive.MaxRatio)
	}
	in.decodedSums = h.Sums()
	return dec, nil
}

func (s *Scanner) oversized(res Result, why string) Result {
	res.Verdict, res.Source, res.Reason, res.Blocked = VerdictOversize, SourceLimits, why, s.cfg.BlockOversize
	return res
}

func (s *Scanner) bombResult(res Result, why string) Result {
	res.Verdict, res.Source, res.Reason, res.Blocked = VerdictBomb, SourceLimits, why, !s.cfg.PassArchiveBombs
	res.Threat = "Archive-Bomb"
	return res
}

// merge asks the reputation service about the file (and a few members) and
// combines its verdicts with the local findings:
//
//   - a reputation verdict of clean for the file overrides every local
//     finding and archive limit (a false alarm, logged by the caller);
//   - a local detection whose own hash or an enclosing archive's hash is
//     known good (.fp) or reputation-clean is dropped as a false alarm;
//   - a remaining local detection blocks;
//   - a blocking reputation verdict for the file or a member blocks, with
//     or without a local detection;
//   - then an archive bomb (blocked unless PassArchiveBombs);
//   - else the file is clean if known good, unknown otherwise.
func (s *Scanner) merge(ctx context.Context, res Result, in *inspector, upload bool) (Result, error) {
	objs := lookupObjects(res, in)
	verdicts, err := s.lookup(ctx, objs, upload)
	if err != nil {
		return Result{}, err
	}
	res.Reputation = verdicts[0]
	clean := map[string]bool{}
	for i, o := range objs {
		if verdicts[i].Kind == reputation.KindClean {
			clean[o.path] = true
		}
	}
	active, dropped := in.activeFindings(clean)

	switch {
	case verdicts[0].Kind == reputation.KindClean:
		return reputationClean(res, active, dropped, in.bomb), nil
	case len(active) > 0:
		f := active[0]
		res.Verdict, res.Blocked, res.Threat, res.Member, res.Source = VerdictMalicious, true, f.threat, f.path, f.source
		res.Engine = f.engine
		return res, nil
	}
	for i, v := range verdicts {
		if v.Blocks() {
			return reputationBlocks(res, v, objs[i].path), nil
		}
	}
	switch {
	case in.bomb != "":
		return s.bombResult(res, in.bomb), nil
	case in.good[""]:
		res.Verdict, res.Source = VerdictClean, SourceKnownGood
	default:
		res.Verdict = VerdictUnknown
	}
	if dropped != nil {
		res.FalseAlarm, res.Threat, res.Member, res.Engine = true, dropped.threat, dropped.path, dropped.engine
		if res.Source == SourceNone {
			res.Source = SourceKnownGood
		}
	}
	return res, nil
}

// lookupObjects lists what merge asks the reputation service about: the
// file first, then members with findings, then executable members, each
// once, at most maxLookups.
func lookupObjects(res Result, in *inspector) []object {
	objs := make([]object, 0, maxLookups)
	objs = append(objs, object{path: "", sums: res.Sums, typ: res.Type})
	seen := map[[32]byte]bool{res.Sums.SHA256: true}
	for _, list := range [][]object{in.flagged(), in.executables} {
		for _, o := range list {
			if len(objs) < maxLookups && !seen[o.sums.SHA256] {
				seen[o.sums.SHA256] = true
				objs = append(objs, o)
			}
		}
	}
	return objs
}

// lookup returns the reputation verdict of each object (none without a
// reputation service, and none for an upload: the service is not told the
// hashes of what people send).
func (s *Scanner) lookup(ctx context.Context, objs []object, upload bool) ([]reputation.Verdict, error) {
	verdicts := make([]reputation.Verdict, len(objs))
	if s.cfg.Reputation == nil || upload {
		return verdicts, nil
	}
	for i, o := range objs {
		v, err := s.cfg.Reputation.Lookup(ctx, reputation.Query{SHA256: o.sums.SHA256[:], SHA1: o.sums.SHA1[:], MD5: o.sums.MD5[:]})
		if err != nil {
			return nil, fmt.Errorf("scanner: reputation of %s: %w", hexSHA(o.sums), err)
		}
		verdicts[i] = v
	}
	return verdicts, nil
}

// activeFindings returns the local findings that stand, and the first
// dropped as a false alarm: its own hash or an enclosing archive's is known
// good, or clean by reputation (clean holds those paths).
func (in *inspector) activeFindings(clean map[string]bool) (active []finding, dropped *finding) {
	for i, f := range in.findings {
		if in.anyGood(f.chain) || anyIn(f.chain, clean) {
			if dropped == nil {
				dropped = &in.findings[i]
			}
			continue
		}
		active = append(active, f)
	}
	return active, dropped
}

// reputationClean is the result for a file the reputation service says is
// clean: whatever was found locally (or the archive limit it hit) is a
// false alarm.
func reputationClean(res Result, active []finding, dropped *finding, bomb string) Result {
	res.Verdict, res.Source = VerdictClean, SourceReputation
	switch {
	case len(active) > 0:
		res.FalseAlarm, res.Threat, res.Member, res.Engine = true, active[0].threat, active[0].path, active[0].engine
	case dropped != nil:
		res.FalseAlarm, res.Threat, res.Member, res.Engine = true, dropped.threat, dropped.path, dropped.engine
	case bomb != "":
		res.FalseAlarm, res.Threat, res.Reason = true, "Archive-Bomb", bomb
	}
	return res
}

// reputationBlocks is the result for a file whose member at path (the file
// itself: "") has the blocking verdict v.
func reputationBlocks(res Result, v reputation.Verdict, path string) Result {
	res.Verdict, res.Blocked, res.Source, res.Member = VerdictMalicious, true, SourceReputation, path
	res.Threat = v.ThreatName
	if res.Threat == "" {
		res.Threat = v.Category
	}
	if res.Threat == "" {
		res.Threat = "reputation-" + v.Kind.String()
	}
	return res
}

// anyIn reports whether one of the paths is in set.
func anyIn(paths []string, set map[string]bool) bool {
	for _, p := range paths {
		if set[p] {
			return true
		}
	}
	return false
}

// ctxReader fails reads once ctx has ended.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
