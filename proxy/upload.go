package proxy

import (
	"context"
	"errors"
	"io"
	"net/http"
	"path"
	"sync"

	"github.com/picket-proxy/picket/scanner"
)

// scanUpload is the upload-scanning step of the pipeline: when uploads are
// scanned (Config.ScanUploads), it reads in's body into a scan before
// anything is forwarded, and returns the response that answers the request
// instead — the block page, or an error page when the body could not be
// read — or nil to forward it: in.Body then replays the scanned bytes (and
// any rest past max_size) with the client's own framing, Content-Length or
// chunked. An upload is never offered as a sample, and its hashes are
// never looked up (scanner.Meta.Upload).
func (s *Server) scanUpload(in *http.Request, x *exchange) *http.Response {
	sc := s.cfg.Scanner
	if sc == nil || !s.cfg.ScanUploads || x.decision.Bypass || in.Body == nil || in.Body == http.NoBody ||
		in.ContentLength == 0 || isGRPC(in.Header) {
		return nil
	}
	// 1. The whole body, up to max_size, counted and bounded by the idle
	// timeout as any request body (outbound forwards it from x.body).
	x.body = &countingBody{ReadCloser: in.Body, n: &x.bytesIn, rc: x.bodyDeadliner(), idle: s.cfg.TunnelIdleTimeout}
	name := path.Base(in.URL.Path)
	st := sc.NewScan(scanner.Meta{ContentEncoding: in.Header.Get("Content-Encoding"), Size: in.ContentLength,
		Method: in.Method, URL: logURL(in.URL, false), Name: name, ContentType: in.Header.Get("Content-Type"), Upload: true})
	_, err := st.ReadFrom(x.body)
	switch {
	case errors.Is(err, scanner.ErrTooLarge):
		// Over max_size: judged oversize (pass or block, by configuration);
		// if it passes, what was read goes out first, then the rest.
	case err != nil:
		st.Close()
		x.errKind = ErrClientBody
		if errors.Is(err, context.Canceled) || in.Context().Err() != nil {
			x.errKind = ErrCanceled
		}
		resp := pageResponse(in, page{Status: http.StatusBadRequest, Title: "Bad request",
			Msg: "The request body could not be read."})
		resp.Close = true // the rest of the body is not read
		return resp
	case st.Size() == 0:
		st.Close()
		in.Body = x.body // nothing to scan; the empty body keeps its framing
		return nil
	}

	// 2. The verdict, with the fail policy for downloads.
	x.upload = &ScanEvent{Upload: true}
	res, ferr := st.Finish(in.Context())
	s.noteScan(x, x.upload, res, ferr)
	if s.scanBlocks(res, ferr) {
		st.Close()
		s.blockScanned(x, res, ferr, true)
		b := s.pages.render(in, x, false, "")
		b.Header.Set("X-Picket-Reason", headerSafe(blockReason(x.decision)))
		if err != nil {
			b.Close = true // the rest past max_size is not read
		}
		return b
	}

	// 3. Forward the scanned bytes, then any rest; the transport closes
	// the body, and with it the scan, once it has sent it.
	in.Body = &uploadBody{st: st, held: st.Reader(), rest: x.body}
	return nil
}

// uploadBody replays a scanned upload: the bytes the scan holds, then the
// rest of the client's body (past max_size). The transport may Close it
// while another of its goroutines Reads (HTTP/2 does, golang.org/x/net
// http2's closeReqBodyLocked; golang/go#51907): the scan's memory must not
// be freed under a read of it, so both take mu. The client's body itself
// is safe to close while read.
type uploadBody struct {
	mu     sync.Mutex
	st     *scanner.Scan
	held   io.Reader // st's bytes; nil once replayed (st then closed)
	rest   io.ReadCloser
	closed bool
}

func (b *uploadBody) Read(p []byte) (int, error) {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return 0, errUploadClosed
	}
	if b.held != nil {
		n, err := b.held.Read(p)
		if err == io.EOF {
			b.held, err = nil, nil
			b.st.Close() // replayed: free its memory now
		}
		b.mu.Unlock()
		if n > 0 || err != nil {
			return n, err
		}
	} else {
		b.mu.Unlock()
	}
	return b.rest.Read(p)
}

func (b *uploadBody) Close() error {
	b.mu.Lock()
	b.closed = true
	b.st.Close()
	b.mu.Unlock()
	return b.rest.Close()
}

// errUploadClosed is a read of an upload body after its Close.
var errUploadClosed = errors.New("picket: upload body closed")
