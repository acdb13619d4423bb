package proxy

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"path"
	"strings"

	"github.com/picket-proxy/picket/scanner"
)

// ScanMode is how a scanned download reaches the client.
type ScanMode uint8

const (
	// ScanBuffer holds the whole body until the verdict, then delivers it
	// or the block page.
	ScanBuffer ScanMode = iota
	// ScanTrickle streams all but a held-back tail while scanning and
	// aborts the transfer on a blocking verdict.
	ScanTrickle
)

// minHead is how many leading bytes the proxy waits for before it
// classifies a body: enough for every magic number Classify knows but tar's
// (and the EICAR test file's 68 characters, waited for while they match:
// scanner.MoreHead), and little enough that a stream of small events is not
// held up.
const minHead = 16

// maxEncodedHead bounds how many encoded bytes are read to see the decoded
// type of a Content-Encoded body; maxZstdHead that of a zstd body, whose
// first block (at most 128 KiB, after a frame header of at most 18 bytes)
// decodes only once it is whole.
const (
	maxEncodedHead = 8 << 10
	maxZstdHead    = 128<<10 + 1<<10
)

// errBlockedDownload aborts a trickled transfer whose body was found
// malicious: the client sees a truncated, failed download.
var errBlockedDownload = errors.New("picket: download blocked by the scanner")

// scanResponse is the download-scanning step of the pipeline: it classifies
// resp's body from its first bytes and, when it must be scanned, returns the
// response to deliver instead (the same bytes, a block page, or a trickled
// body that aborts on a bad verdict). Bodies that are not scanned stream on
// with nothing added but the few bytes read to classify them. Any status
// with a body is scanned, not only 200: clients save the body of any 2xx
// (a 203, a 206 answering "Range: bytes=0-"), curl -o that of any status.
// A 101's body is the upgraded connection, never a download.
func (s *Server) scanResponse(in *http.Request, x *exchange, resp *http.Response) *http.Response {
	sc := s.cfg.Scanner
	if sc == nil || x.decision.Bypass || in.Method == http.MethodHead || resp.StatusCode < http.StatusOK ||
		resp.Body == nil || resp.Body == http.NoBody || resp.ContentLength == 0 || isGRPC(resp.Header) {
		return resp
	}
	// 1. The first bytes, and the true type behind any Content-Encoding.
	enc := resp.Header.Get("Content-Encoding")
	raw, rerr := readHead(resp.Body, enc)
	body := &joinedBody{Reader: io.MultiReader(bytes.NewReader(raw), errReader(rerr, resp.Body)), Closer: resp.Body}
	head := scanner.DecodeHead(enc, raw)
	typ, scan := sc.Classify(head, resp.Header.Get("Content-Type"), fileName(in, resp), resp.ContentLength)
	if rerr == nil && len(head) < minHead {
		// An encoded body that does not decode within the bytes read for
		// its head (a gzip header padded with a long name or extra field,
		// brotli metadata): its type is unknown, and a client may well
		// decode it. Scanned, decoded whole.
		scan = true
	}
	if !scan {
		resp.Body = body
		return resp
	}

	// 2. Scan: buffered or trickled.
	st := sc.NewScan(scanner.Meta{ContentEncoding: enc, Size: resp.ContentLength, Method: in.Method,
		URL: logURL(in.URL, false), Name: fileName(in, resp), ContentType: resp.Header.Get("Content-Type")})
	x.scan = &ScanEvent{Type: typ.String(), Executable: typ.Executable()}
	whole := enc == "" && resp.StatusCode != http.StatusPartialContent // what a sample may be taken of
	if s.cfg.ScanMode == ScanTrickle {
		resp.Body = &trickleBody{s: s, in: in, x: x, st: st, src: body, whole: whole,
			tr: scanner.NewTrickle(body, st, sc.TrickleHold(resp.ContentLength))}
		return resp
	}
	_, err := st.ReadFrom(body)
	switch {
	case errors.Is(err, scanner.ErrTooLarge):
		// Over max_size: the scanner judges it oversize (pass or block, by
		// configuration); if it passes, what was read goes out first.
	case err != nil:
		st.Close()
		body.Close()
		x.errKind = ErrUpstreamBody
		return pageResponse(in, page{Status: http.StatusBadGateway, Title: "Bad gateway",
			Msg: "The download was interrupted before it could be checked."})
	}
	res, ferr := st.Finish(in.Context())
	s.noteScan(x, x.scan, res, ferr)
	if blocked := s.scanBlocks(res, ferr); blocked {
		st.Close()
		body.Close()
		s.blockScanned(x, res, ferr, false)
		b := s.pages.render(in, x, false, "")
		b.Header.Set("X-Picket-Reason", headerSafe(blockReason(x.decision)))
		return b
	}
	s.offerSample(x, st, whole)
	// 3. Deliver the scanned bytes (still encoded as received), then any
	// rest past max_size.
	resp.Body = &joinedBody{Reader: io.MultiReader(st.Reader(), body), Closer: closers{st, body}}
	return resp
}

// offerSample hands a passing download of unknown reputation to
// participation, if it wants it. Only whole bodies are offered: not an
// encoded one (the bytes kept are the wire bytes, not the file the hashes
// name), nor a 206's part of a file.
func (s *Server) offerSample(x *exchange, st *scanner.Scan, whole bool) {
	if s.cfg.WantSample == nil || s.cfg.OfferSample == nil || !whole || x.scan == nil || x.scan.Result != "unknown" {
		return
	}
	if s.cfg.WantSample(x.req.Client, *x.scan) {
		s.cfg.OfferSample(*x.scan, st.Reader())
	}
}

// scanBlocks applies the verdict, or the fail policy when the scanner could
// not decide: an engine's own (fail closed: an *scanner.EngineError), else
// ScanFailClosed.
func (s *Server) scanBlocks(res scanner.Result, err error) bool {
	if err != nil {
		return scanner.IsEngineError(err) || s.cfg.ScanFailClosed
	}
	return res.Blocked
}

// noteScan records the outcome of x's download or upload scan in e, for
// the log and observers.
func (s *Server) noteScan(x *exchange, e *ScanEvent, res scanner.Result, err error) {
	e.Type, e.Threat, e.Size, e.FalseAlarm = res.Type.String(), res.Threat, res.Size, res.FalseAlarm
	e.Engine, e.Partial, e.Source = res.Engine, res.Partial, res.Source.String()
	e.Active = res.Active.String()
	e.Executable = res.Type.Executable()
	e.SHA256 = res.Sums.SHA256[:]
	e.Result = res.Verdict.String()
	what := "download"
	if e.Upload {
		what = "upload"
	}
	if err != nil {
		e.Result = "error"
		s.cfg.Log.Warn().Err(err).Str(fURL, logURL(x.req.URL, false)).Msg(what + " scan could not decide")
	}
	if res.FalseAlarm {
		s.cfg.Log.Info().Str(fURL, logURL(x.req.URL, false)).Str("threat", res.Threat).Str(fEngine, res.Engine).
			Msg("local detection overridden as a false alarm")
	}
	if err == nil && res.Incomplete != "" && strings.Contains(res.Incomplete, "(fail open)") {
		s.cfg.Log.Warn().Str(fURL, logURL(x.req.URL, false)).Str(fReason, res.Incomplete).
			Msg("an anti-virus engine could not scan a " + what + "; it went on without that engine (fail open)")
	}
}

// blockScanned turns the exchange's decision into the scanner's block of
// its download, or of its upload: then the rule says so
// ("scanner.upload.clamd") and the reason speaks of what was sent.
func (s *Server) blockScanned(x *exchange, res scanner.Result, err error, upload bool) {
	what, fate, prefix := "download", "It was not delivered.", "scanner."
	if upload {
		what, fate, prefix = "upload", "It was not sent.", "scanner.upload."
	}
	d := &x.decision
	d.Action, d.Stage, d.Threat = Block, "scan", res.Threat
	d.Rule = prefix + res.Source.String()
	if res.Engine != "" {
		d.Rule = prefix + res.Engine
	}
	switch {
	case scanner.IsEngineError(err):
		d.Verdict = "unknown"
		d.Reason = "The " + what + " could not be checked by the anti-virus engine (" + res.Engine + "), and your organisation blocks what cannot be checked."
	case err != nil:
		d.Verdict, d.Reason = "unknown", "The "+what+" could not be checked, and your organisation blocks what cannot be checked."
	case res.Verdict != scanner.VerdictMalicious && res.Partial:
		d.Verdict, d.Reason = "unknown", "This "+what+" is larger than your organisation's anti-virus engine can check whole."
	case res.Verdict == scanner.VerdictBomb:
		d.Verdict, d.Reason = "malware", "This archive is built to exhaust the systems that open it (an archive bomb)."
	case res.Verdict == scanner.VerdictOversize:
		d.Verdict, d.Reason = "unknown", "This "+what+" is larger than your organisation allows to be checked."
	default:
		d.Verdict = "malware"
		d.Reason = "This " + what + " contains malware"
		if upload && res.Member != "" { // a file of a form
			d.Reason = "The file " + res.Member + " in this upload contains malware"
		}
		switch {
		case res.Threat != "" && res.Engine != "":
			d.Reason += " (" + res.Threat + ", found by " + res.Engine + ")"
		case res.Threat != "":
			d.Reason += " (" + res.Threat + ")"
		}
		d.Reason += ". " + fate
	}
	x.incident = newIncident()
}

// trickleBody streams a scanned body all but its tail; at the end it
// releases the tail if the verdict passes, or fails the read so the client
// never has the complete file.
type trickleBody struct {
	s     *Server
	in    *http.Request
	x     *exchange
	st    *scanner.Scan
	src   io.ReadCloser
	tr    *scanner.Trickle
	whole bool // a sample may be taken (offerSample)
	tail  *bytes.Reader
	err   error
}

func (b *trickleBody) Read(p []byte) (int, error) {
	if b.tail != nil {
		return b.tail.Read(p)
	}
	if b.err != nil {
		return 0, b.err
	}
	n, err := b.tr.Read(p)
	if err != io.EOF {
		return n, err
	}
	// The whole body is in: judge it before releasing the tail.
	res, ferr := b.st.Finish(b.in.Context())
	b.s.noteScan(b.x, b.x.scan, res, ferr)
	if b.s.scanBlocks(res, ferr) {
		b.s.blockScanned(b.x, res, ferr, false)
		b.s.cfg.Log.Warn().Str(fURL, logURL(b.x.req.URL, false)).Str("threat", res.Threat).Str(fIncident, b.x.incident).
			Msg("trickled download aborted: the client did not get the complete file")
		b.err = fmt.Errorf("%w: %s", errBlockedDownload, res.Threat)
		return n, b.err
	}
	b.s.offerSample(b.x, b.st, b.whole)
	var tail bytes.Buffer
	_, _ = b.tr.Release(&tail)
	b.tail = bytes.NewReader(tail.Bytes())
	if n > 0 {
		return n, nil
	}
	return b.tail.Read(p)
}

func (b *trickleBody) Close() error {
	b.st.Close()
	return b.src.Close()
}

// isGRPC reports whether a response is a gRPC stream: a sequence of framed
// RPC messages, not a download. It is never held for classification, which
// waits for the first bytes: a bidirectional stream whose server answers a
// short message and then waits for the client would wait for ever.
func isGRPC(h http.Header) bool {
	ct := h.Get("Content-Type")
	return len(ct) >= 16 && strings.EqualFold(ct[:16], "application/grpc")
}

// readHead reads from r until it has minHead bytes of the body (decoded,
// for an encoded body, up to maxEncodedHead or maxZstdHead raw bytes), and
// more while they are the start of the EICAR test file
// (scanner.MoreHead), or r ends. It returns the raw bytes read and the read
// error, if any, to replay after them.
func readHead(r io.Reader, enc string) ([]byte, error) {
	buf := make([]byte, 0, scanner.HeadSize)
	limit := scanner.HeadSize
	switch {
	case strings.Contains(strings.ToLower(enc), "zstd"):
		limit = maxZstdHead
	case enc != "":
		limit = maxEncodedHead
	}
	for len(buf) < limit {
		if cap(buf) == len(buf) {
			buf = append(buf, make([]byte, min(cap(buf), limit-len(buf)))...)[:len(buf)]
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err != nil {
			return buf, err
		}
		if head := scanner.DecodeHead(enc, buf); len(head) >= minHead && !scanner.MoreHead(head) {
			break
		}
	}
	return buf, nil
}

// fileName is the download's name for Classify: Content-Disposition's
// filename, else the last element of the URL path.
func fileName(in *http.Request, resp *http.Response) string {
	if cd := resp.Header.Get("Content-Disposition"); cd != "" {
		if _, params, err := mime.ParseMediaType(cd); err == nil && params["filename"] != "" {
			return params["filename"]
		}
	}
	return path.Base(in.URL.Path)
}

// joinedBody is a response body read from one reader and closed by another.
type joinedBody struct {
	io.Reader
	io.Closer
}

// closers closes several things, returning the first error.
type closers []io.Closer

func (cs closers) Close() error {
	var first error
	for _, c := range cs {
		if err := c.Close(); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// errReader replays a read error after the head, or reads on from r.
func errReader(err error, r io.Reader) io.Reader {
	if err != nil {
		return &failReader{err}
	}
	return r
}

type failReader struct{ err error }

func (f *failReader) Read([]byte) (int, error) { return 0, f.err }
