package db

import (
	"archive/zip"
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path"
	"strings"

	"github.com/picket-proxy/picket/reputation"
)

// Download errors, wrapped with detail; a failed download keeps the last
// good copy.
var (
	ErrOversized   = errors.New("feed larger than max_size")
	ErrTruncated   = errors.New("feed body truncated")
	ErrHTTPStatus  = errors.New("feed server answered with an error")
	ErrTooFew      = errors.New("feed parses to too few entries")
	ErrUnusable    = errors.New("feed is mostly unusable lines")
	ErrCompression = errors.New("feed compression")
)

// downloaded is a fresh copy of a source in a temporary file of the cache
// directory, decompressed, not yet checked or committed.
type downloaded struct {
	notModified  bool // 304: the last good copy is current
	tmp          string
	size         int64
	sha256       string
	etag         string
	lastModified string
}

// remove deletes the temporary file.
func (d *downloaded) remove() {
	if d != nil && d.tmp != "" {
		os.Remove(d.tmp)
	}
}

// download fetches s into a temporary file in cache. With cond (the last
// good copy's validators) the request is conditional.
func download(ctx context.Context, hc *http.Client, userAgent, dir, cache string, s *Source, cond *fetchState) (*downloaded, error) {
	ctx, cancel := context.WithTimeout(ctx, s.Timeout.D())
	defer cancel()
	u, err := ExpandURL(dir, s.URL)
	if err != nil {
		return nil, fmt.Errorf("url: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, errors.New("url: invalid") // the expanded URL may hold a key: not in the message
	}
	var secret []string // header names not to follow a redirect to another host, or from https to http
	for k, v := range s.Headers {
		val, err := HeaderValue(dir, v)
		if err != nil {
			return nil, fmt.Errorf("header %s: %w", k, err)
		}
		req.Header.Set(k, val)
		secret = append(secret, k)
	}
	if req.Header.Get("User-Agent") == "" {
		req.Header.Set("User-Agent", userAgent)
	}
	// We decode ourselves, with limits (the transport would not bound it).
	req.Header.Set("Accept-Encoding", "gzip")
	if cond != nil {
		if cond.ETag != "" {
			req.Header.Set("If-None-Match", cond.ETag)
		}
		if cond.LastModified != "" {
			req.Header.Set("If-Modified-Since", cond.LastModified)
		}
	}
	c := *hc
	c.CheckRedirect = func(r *http.Request, via []*http.Request) error {
		if len(via) >= 5 {
			return errors.New("too many redirects")
		}
		if reputation.LeavesOrigin(via[0].URL, r.URL) {
			for _, k := range secret {
				r.Header.Del(k)
			}
		}
		return nil
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusNotModified && cond != nil:
		return &downloaded{notModified: true, etag: resp.Header.Get("ETag"), lastModified: resp.Header.Get("Last-Modified")}, nil
	case resp.StatusCode != http.StatusOK:
		return nil, fmt.Errorf("%w: %s", ErrHTTPStatus, resp.Status)
	case resp.ContentLength > int64(s.MaxSize):
		return nil, fmt.Errorf("%w: Content-Length %d, max_size %d", ErrOversized, resp.ContentLength, s.MaxSize)
	}
	d := &downloaded{etag: resp.Header.Get("ETag"), lastModified: resp.Header.Get("Last-Modified")}
	body := io.Reader(resp.Body)
	switch enc := strings.ToLower(resp.Header.Get("Content-Encoding")); enc {
	case "", "identity":
	case "gzip", "x-gzip":
		zr, err := gzip.NewReader(&capReader{r: resp.Body, left: int64(s.MaxSize)})
		if err != nil {
			return nil, fmt.Errorf("%w: Content-Encoding gzip: %v", ErrCompression, err)
		}
		body = zr
	default:
		return nil, fmt.Errorf("%w: unsupported Content-Encoding %q", ErrCompression, enc)
	}
	raw, err := spool(cache, s.Name, body, int64(s.MaxSize), nil)
	if err != nil {
		return nil, err
	}
	d.tmp = raw
	if err := d.decompress(cache, s); err != nil {
		d.remove()
		return nil, err
	}
	return d, nil
}

// decompress replaces the spooled body by its content when it is a gzip
// file or a zip archive (by compression, or by its first bytes for
// "auto"), and computes the copy's size and SHA-256.
func (d *downloaded) decompress(cache string, s *Source) error {
	f, err := os.Open(d.tmp)
	if err != nil {
		return err
	}
	defer f.Close()
	kind := s.Compression
	if kind == "auto" {
		magic := make([]byte, 4)
		n, _ := io.ReadFull(f, magic)
		switch {
		case bytes.HasPrefix(magic[:n], []byte{0x1f, 0x8b}):
			kind = "gzip"
		case bytes.Equal(magic[:n], []byte("PK\x03\x04")):
			kind = "zip"
		default:
			kind = "none"
		}
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			return err
		}
	}
	var content io.Reader
	switch kind {
	case "none":
		h := sha256.New()
		n, err := io.Copy(h, bufio.NewReader(f))
		if err != nil {
			return err
		}
		d.size, d.sha256 = n, hex.EncodeToString(h.Sum(nil))
		return nil
	case "gzip":
		zr, err := gzip.NewReader(bufio.NewReader(f))
		if err != nil {
			return fmt.Errorf("%w: gzip: %v", ErrCompression, err)
		}
		content = zr
	case "zip":
		fi, err := f.Stat()
		if err != nil {
			return err
		}
		zr, err := zip.NewReader(f, fi.Size())
		if err != nil {
			return fmt.Errorf("%w: zip: %v", ErrCompression, err)
		}
		m, err := zipMember(zr, s.Member)
		if err != nil {
			return err
		}
		rc, err := m.Open()
		if err != nil {
			return fmt.Errorf("%w: zip member %s: %v", ErrCompression, m.Name, err)
		}
		defer rc.Close()
		content = rc
	}
	h := sha256.New()
	out, err := spool(cache, s.Name, content, int64(s.MaxSize), h)
	if err != nil {
		if errors.Is(err, ErrTruncated) {
			err = fmt.Errorf("%w: the %s data ends early (%v)", ErrTruncated, kind, err)
		}
		return err
	}
	os.Remove(d.tmp)
	d.tmp = out
	fi, err := os.Stat(out)
	if err != nil {
		return err
	}
	d.size, d.sha256 = fi.Size(), hex.EncodeToString(h.Sum(nil))
	return nil
}

// zipMember picks the member to read: the one named (by path or base
// name), else the only regular file.
func zipMember(zr *zip.Reader, name string) (*zip.File, error) {
	var files []*zip.File
	for _, f := range zr.File {
		if f.FileInfo().Mode().IsRegular() {
			files = append(files, f)
		}
	}
	if name != "" {
		for _, f := range files {
			if f.Name == name || path.Base(f.Name) == name {
				return f, nil
			}
		}
		return nil, fmt.Errorf("%w: zip has no member %q", ErrCompression, name)
	}
	switch len(files) {
	case 1:
		return files[0], nil
	case 0:
		return nil, fmt.Errorf("%w: zip holds no file", ErrCompression)
	}
	return nil, fmt.Errorf("%w: zip holds %d files; set member", ErrCompression, len(files))
}

// Prefixes of temporary files, removed at start when a day old
// (removeStale).
const (
	tmpPrefix   = ".tmp-"      // a download or a fetch state in the cache directory
	buildPrefix = ".picketdb-" // a compiled database being written, beside its final name
)

// spool copies r into a new temporary file of cache, at most max bytes (a
// larger body is ErrOversized), hashing into h if not nil. A read that ends
// early (io.ErrUnexpectedEOF) is ErrTruncated.
func spool(cache, name string, r io.Reader, max int64, h io.Writer) (string, error) {
	if err := os.MkdirAll(cache, 0o750); err != nil {
		return "", err
	}
	f, err := os.CreateTemp(cache, tmpPrefix+name+"-*")
	if err != nil {
		return "", err
	}
	w := io.Writer(f)
	if h != nil {
		w = io.MultiWriter(f, h)
	}
	bw := bufio.NewWriterSize(w, 64<<10)
	n, err := io.Copy(bw, io.LimitReader(r, max+1))
	if err == nil {
		err = bw.Flush()
	}
	if err == nil && n > max {
		err = fmt.Errorf("%w: more than %d bytes", ErrOversized, max)
	}
	if errors.Is(err, io.ErrUnexpectedEOF) {
		err = fmt.Errorf("%w after %d bytes: %v", ErrTruncated, n, err)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(f.Name())
		return "", err
	}
	return f.Name(), nil
}

// capReader reads at most left bytes and fails with ErrOversized beyond.
type capReader struct {
	r    io.Reader
	left int64
}

func (c *capReader) Read(p []byte) (int, error) {
	for c.left <= 0 {
		var one [1]byte
		n, err := c.r.Read(one[:])
		if n > 0 {
			return 0, fmt.Errorf("%w: compressed body beyond the limit", ErrOversized)
		}
		if err != nil {
			return 0, err
		}
	}
	if int64(len(p)) > c.left {
		p = p[:c.left]
	}
	n, err := c.r.Read(p)
	c.left -= int64(n)
	return n, err
}
