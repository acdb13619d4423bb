package scanner

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
)

// Engine is an anti-virus engine outside Picket — clamd, an ICAP server —
// that judges whole files. The scanner streams a body into it while the body
// arrives (Open, then Write), and asks for the verdict only when the cheap
// local checks did not decide (Finish); see doc.go for the order. The
// clients live in scanner/clamd and scanner/icap; this package does not
// touch the network itself.
type Engine interface {
	// Name names the engine in logs, metrics and block pages ("clamd").
	Name() string
	// Open starts scanning one body. It does not fail: a down engine
	// reports its error from the stream's Write or Finish.
	Open(m EngineMeta) EngineStream
	// Tag identifies the engine's signatures now (clamd's version line,
	// an ICAP service's ISTag); a cached verdict given under another tag is
	// stale. "" when unknown.
	Tag() string
	// Health reports what the engine's last health check and scans found.
	Health() EngineHealth
}

// EngineStream is one body on its way into an engine.
type EngineStream interface {
	// Write sends the next bytes of the body. Its errors are sticky.
	Write(p []byte) (int, error)
	// Finish ends the body and waits for the verdict, as long as ctx and
	// the engine's own timeout allow.
	Finish(ctx context.Context) (EngineResult, error)
	// Close abandons the stream (or, after Finish, frees it). It is
	// idempotent.
	Close() error
}

// EngineMeta describes a body for an engine: ICAP servers see it in the
// encapsulated HTTP headers; clamd needs none of it.
type EngineMeta struct {
	// Method is the request's method ("GET"); the body is the response's,
	// or the request's when Upload is set.
	Method string
	// URL is the request's URL without its query (scheme://host/path).
	URL string
	// Name is the file name (Content-Disposition or the URL's last part).
	Name string
	// ContentType is the body's declared type.
	ContentType string
	// Size is the body's length in bytes as sent to the engine, -1 if
	// unknown.
	Size int64
	// Upload marks a request body (ICAP REQMOD) instead of a response
	// body (RESPMOD).
	Upload bool
}

// EngineResult is an engine's verdict on one body.
type EngineResult struct {
	// Threat names what the engine found; "" means nothing.
	Threat string
	// Partial says the engine saw only the first Scanned bytes (clamd's
	// StreamMaxLength); a detection in them still counts.
	Partial bool
	// Scanned is the number of bytes the engine got.
	Scanned int64
	// Skipped, if not empty, says why the engine did not look at the body
	// (an ICAP server's Transfer-Ignore); it counts as nothing found.
	Skipped string
}

// EngineHealth is what is known of an engine's state.
type EngineHealth struct {
	// Healthy is false once a health check or a scan failed, until one
	// succeeds again.
	Healthy bool `json:"healthy"`
	// Error is the last failure, "" when healthy.
	Error string `json:"error,omitempty"`
	// Kind is the protocol: "clamd" or "icap".
	Kind string `json:"kind"`
	// Address is where the engine is reached (a socket path, host:port, an
	// icap:// URL).
	Address string `json:"address"`
	// Version is the engine's version (clamd's "ClamAV 1.4.6", an ICAP
	// server's Service header).
	Version string `json:"version,omitempty"`
	// Signatures is the signature database's version (clamd's daily
	// number) or the ICAP service's ISTag.
	Signatures string `json:"signatures,omitempty"`
	// SignatureDate is when the signatures were built (clamd), zero if
	// unknown.
	SignatureDate time.Time `json:"signature_date,omitzero"`
	// Checked is when the engine last answered or failed.
	Checked time.Time `json:"checked,omitzero"`
}

// EngineConfig is one engine in the scanning order.
type EngineConfig struct {
	Engine Engine
	// FailClosed blocks a body this engine could not judge (down, slow,
	// garbage); otherwise the body goes on to the next checks and the
	// failure is logged and counted.
	FailClosed bool
}

// EngineError is returned by Scan.Finish when an engine with the
// fail-closed policy could not judge the body: the caller blocks it.
type EngineError struct {
	Engine string
	Err    error
}

func (e *EngineError) Error() string {
	return fmt.Sprintf("scanner: engine %s could not scan (fail closed): %v", e.Engine, e.Err)
}

func (e *EngineError) Unwrap() error { return e.Err }

// LatencyBounds are the upper bounds, in seconds, of the engine latency
// histogram's buckets (the time from the body's last byte to the verdict).
var LatencyBounds = []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60}

// Histogram is a latency histogram: Counts[i] observations were at most
// LatencyBounds[i] (and over the previous bound); the rest are in Count.
type Histogram struct {
	Counts []uint64 // per bucket, not cumulative
	Count  uint64
	Sum    float64 // seconds
}

// EngineStats are one engine's counters and health.
type EngineStats struct {
	Name   string
	Health EngineHealth
	// Scans are verdicts the engine gave; Detections those naming a
	// threat; Errors bodies it could not judge (after one retry);
	// Partial verdicts on a body's first bytes only; CacheHits bodies
	// judged from the result cache instead of the engine.
	Scans, Detections, Errors, Partial, CacheHits uint64
	Latency                                       Histogram
}

// engineState is an engine with its counters.
type engineState struct {
	EngineConfig
	scans, detections, errs, partial, cacheHits atomic.Uint64
	buckets                                     []atomic.Uint64
	count                                       atomic.Uint64
	sumMicros                                   atomic.Uint64
}

func newEngineState(c EngineConfig) *engineState {
	return &engineState{EngineConfig: c, buckets: make([]atomic.Uint64, len(LatencyBounds))}
}

func (e *engineState) observe(d time.Duration) {
	s := d.Seconds()
	for i, b := range LatencyBounds {
		if s <= b {
			e.buckets[i].Add(1)
			break
		}
	}
	e.count.Add(1)
	e.sumMicros.Add(uint64(max(d.Microseconds(), 0)))
}

func (e *engineState) stats() EngineStats {
	st := EngineStats{Name: e.Engine.Name(), Health: e.Engine.Health(), Scans: e.scans.Load(), Detections: e.detections.Load(),
		Errors: e.errs.Load(), Partial: e.partial.Load(), CacheHits: e.cacheHits.Load()}
	st.Latency.Counts = make([]uint64, len(e.buckets))
	for i := range e.buckets {
		st.Latency.Counts[i] = e.buckets[i].Load()
	}
	st.Latency.Count = e.count.Load()
	st.Latency.Sum = float64(e.sumMicros.Load()) / 1e6
	return st
}

// Defaults of the result cache.
const (
	DefaultCacheSize = 10000
	DefaultCacheTTL  = time.Hour
)

// resultCache remembers engine verdicts by the file's SHA-256, so that a
// file downloaded again is not sent to the engines again: a typed three-way
// answer (detected, clean, miss) with a TTL and the engine's Tag on every
// entry.
type resultCache struct {
	ttl time.Duration
	lru *lru.Cache[cacheKey, cacheEntry]
	now func() time.Time
}

type cacheKey struct {
	engine int
	sha256 [32]byte
}

type cacheEntry struct {
	res     EngineResult
	tag     string
	expires time.Time
}

func newResultCache(size int, ttl time.Duration, now func() time.Time) *resultCache {
	c, _ := lru.New[cacheKey, cacheEntry](max(size, 1))
	return &resultCache{ttl: ttl, lru: c, now: now}
}

func (c *resultCache) get(engine int, sum [32]byte, tag string) (EngineResult, bool) {
	if c == nil {
		return EngineResult{}, false
	}
	k := cacheKey{engine, sum}
	e, ok := c.lru.Get(k)
	if !ok {
		return EngineResult{}, false
	}
	if !c.now().Before(e.expires) || e.tag != tag {
		c.lru.Remove(k)
		return EngineResult{}, false
	}
	return e.res, true
}

func (c *resultCache) put(engine int, sum [32]byte, tag string, res EngineResult) {
	if c == nil {
		return
	}
	c.lru.Add(cacheKey{engine, sum}, cacheEntry{res: res, tag: tag, expires: c.now().Add(c.ttl)})
}

// feed is one engine's stream of one Scan, fed by Scan.Write.
type feed struct {
	st     EngineStream
	err    error // the first Write error: the stream is broken
	broken bool
}

// openFeeds starts the engines' streams of a body that goes to them as it
// arrives (not encoded, not oversize).
func (sc *Scan) openFeeds() {
	s := sc.s
	if len(s.engines) == 0 || !identity(sc.meta.ContentEncoding) || sc.oversize {
		return
	}
	m := sc.engineMeta(sc.meta.Size)
	sc.feeds = make([]*feed, len(s.engines))
	for i, e := range s.engines {
		sc.feeds[i] = &feed{st: e.Engine.Open(m)}
	}
}

func (sc *Scan) engineMeta(size int64) EngineMeta {
	m := sc.meta
	return EngineMeta{Method: m.Method, URL: m.URL, Name: m.Name, ContentType: m.ContentType, Size: size, Upload: m.Upload}
}

// feedEngines hands p to every stream that still works.
func (sc *Scan) feedEngines(p []byte) {
	for _, f := range sc.feeds {
		if f == nil || f.broken {
			continue
		}
		if _, err := f.st.Write(p); err != nil {
			f.err, f.broken = err, true
			f.st.Close()
		}
	}
}

// closeFeeds abandons the streams.
func (sc *Scan) closeFeeds() {
	for i, f := range sc.feeds {
		if f != nil {
			f.st.Close()
			sc.feeds[i] = nil
		}
	}
}

// engineVerdict is one engine's answer within a Finish.
type engineVerdict struct {
	res    EngineResult
	err    error
	cached bool
}

// runEngines asks the engines about the file (its decoded bytes file, size
// bytes, with sums), all at once, and records their findings in in and res.
// Local findings come first: a file already detected, known good, or a
// blocked bomb is not waited for. An engine with the fail-closed policy
// that could not judge the file makes it an *EngineError. The files of an
// uploaded form are then asked about one by one (formEngines, form.go).
func (sc *Scan) runEngines(ctx context.Context, res *Result, in *inspector, file io.ReaderAt, size int64) error {
	s := sc.s
	defer sc.closeFeeds()
	if len(s.engines) == 0 || in.decided(s) {
		return nil
	}
	feeds := sc.feeds
	sc.feeds = nil // taken by askEngines
	out := sc.askEngines(ctx, res.Sums.SHA256, sc.engineMeta(size), feeds, file, size)
	if err := sc.applyVerdicts(res, in, out, "", res.Sums); err != nil {
		return err
	}
	if b := formBoundary(sc.meta); b != "" && !in.decided(s) {
		return sc.formEngines(ctx, res, in, io.NewSectionReader(file, 0, size), b)
	}
	return nil
}

// decided reports whether the local checks (or an engine) have decided
// already: a detection that stands, the file known good, or a blocked bomb.
func (in *inspector) decided(s *Scanner) bool {
	if in.good[""] || in.bomb != "" && !s.cfg.PassArchiveBombs {
		return true
	}
	for _, f := range in.findings {
		if !in.anyGood(f.chain) {
			return true
		}
	}
	return false
}

// askEngines asks every engine about one body (m, file of size bytes,
// whose SHA-256 is sum), all at once: from the verdict cache, by finishing
// the engine's feed (feeds, nil for none: the body is then streamed from
// file), and caches what they judged.
func (sc *Scan) askEngines(ctx context.Context, sum [32]byte, m EngineMeta, feeds []*feed, file io.ReaderAt, size int64) []engineVerdict {
	s := sc.s
	out := make([]engineVerdict, len(s.engines))
	var wg sync.WaitGroup
	for i, e := range s.engines {
		var f *feed
		if feeds != nil {
			f = feeds[i]
		}
		tag := e.Engine.Tag()
		if r, ok := s.cache.get(i, sum, tag); ok {
			e.cacheHits.Add(1)
			out[i] = engineVerdict{res: r, cached: true}
			if f != nil {
				f.st.Close()
			}
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			out[i] = sc.askEngine(ctx, e, f, m, file, size)
			// A body the engine skipped (no service for its direction, a
			// Transfer-Ignore by name) was not judged: nothing to reuse.
			if out[i].err == nil && out[i].res.Skipped == "" {
				s.cache.put(i, sum, tag, out[i].res)
			}
		}()
	}
	wg.Wait()
	return out
}

// applyVerdicts records the engines' verdicts on the object at path ("":
// the file itself, else a file of an uploaded form) in in and res. An
// engine with the fail-closed policy that could not judge it makes it an
// *EngineError.
func (sc *Scan) applyVerdicts(res *Result, in *inspector, out []engineVerdict, path string, sums Sums) error {
	where := ""
	if path != "" {
		where = path + ": "
	}
	for i, v := range out {
		e := sc.s.engines[i]
		name := e.Engine.Name()
		switch {
		case v.err != nil && e.FailClosed:
			res.Engine = name
			return &EngineError{Engine: name, Err: v.err}
		case v.err != nil:
			in.note(fmt.Sprintf("%s%s could not scan (fail open): %v", where, name, v.err))
		case v.res.Threat != "":
			chain := []string{""}
			if path != "" {
				chain = append(chain, path)
			}
			in.findings = append(in.findings, finding{path: path, chain: chain, threat: v.res.Threat,
				source: SourceEngine, engine: name, sums: sums})
		case v.res.Skipped != "":
			in.note(fmt.Sprintf("%s%s: %s", where, name, v.res.Skipped))
		}
		if v.err == nil && v.res.Partial {
			res.Partial = true
			in.note(fmt.Sprintf("%s%s scanned only the first %d bytes", where, name, v.res.Scanned))
		}
	}
	return nil
}

// askEngine finishes e's stream of the body, or streams the body from the
// spool when it had none (an encoded body) or it broke on the way (a
// stale connection, an engine that restarted); one retry, no more. A
// stream that broke because connecting or a write timed out is not
// retried: the engine is hung, and a retry would cost the body a second
// timeout. (A wait for a free connection that timed out is retried: by
// the body's end one may be free.)
func (sc *Scan) askEngine(ctx context.Context, e *engineState, f *feed, m EngineMeta, file io.ReaderAt, size int64) engineVerdict {
	var res EngineResult
	var err error
	switch {
	case f != nil && !f.broken:
		start := time.Now()
		res, err = f.st.Finish(ctx)
		f.st.Close()
		if err == nil {
			e.observe(time.Since(start))
		}
	case f != nil && errors.Is(f.err, os.ErrDeadlineExceeded):
		err = f.err
	default:
		res, err = streamFile(ctx, e, m, file, size)
	}
	if err != nil {
		if ctx.Err() == nil { // a client that went away is not the engine's failure
			e.errs.Add(1)
		}
		return engineVerdict{err: err}
	}
	if res.Skipped == "" {
		e.scans.Add(1)
	}
	if res.Threat != "" {
		e.detections.Add(1)
	}
	if res.Partial {
		e.partial.Add(1)
	}
	return engineVerdict{res: res}
}

// streamFile sends a whole file held by the scan, described by m, to e.
func streamFile(ctx context.Context, e *engineState, m EngineMeta, file io.ReaderAt, size int64) (EngineResult, error) {
	st := e.Engine.Open(m)
	defer st.Close()
	bp := chunkPool.Get().(*[]byte)
	defer chunkPool.Put(bp)
	if _, err := io.CopyBuffer(struct{ io.Writer }{st}, ctxReader{ctx, io.NewSectionReader(file, 0, size)}, *bp); err != nil {
		return EngineResult{}, err
	}
	start := time.Now()
	res, err := st.Finish(ctx)
	if err == nil {
		e.observe(time.Since(start))
	}
	return res, err
}

// IsEngineError reports whether err is an engine's fail-closed failure.
func IsEngineError(err error) bool {
	var ee *EngineError
	return errors.As(err, &ee)
}
