package scanner

import (
	"bufio"
	"bytes"
	"compress/flate"
	"compress/zlib"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/andybalholm/brotli"
	"github.com/klauspost/compress/zstd"
)

// ErrEncoding is returned (wrapped) for a Content-Encoding the scanner cannot
// decode.
var ErrEncoding = errors.New("scanner: unsupported content encoding")

// zstdMaxWindow is the largest zstd window decoded: RFC 9659's limit for
// HTTP, which browsers keep (they refuse larger windows).
const zstdMaxWindow = 8 << 20

// decodeBody returns a reader of r with the Content-Encoding enc removed:
// gzip (x-gzip), deflate (zlib, or raw deflate as some servers send), br
// and zstd, applied in the reverse of the order they are listed. "" and
// identity are no-ops.
func decodeBody(enc string, r io.Reader) (io.Reader, error) {
	var codings []string
	for _, c := range strings.Split(enc, ",") {
		c = strings.ToLower(strings.TrimSpace(c))
		if c != "" && c != "identity" {
			codings = append(codings, c)
		}
	}
	for i := len(codings) - 1; i >= 0; i-- {
		switch codings[i] {
		case "gzip", "x-gzip":
			zr, err := newGzipReader(r) // as browsers read it (gzip.go)
			if err != nil {
				return nil, fmt.Errorf("scanner: gzip encoding: %w", err)
			}
			r = zr
		case "deflate":
			br := bufio.NewReader(r)
			if h, err := br.Peek(2); err == nil && h[0]&0x0f == 8 && (uint16(h[0])<<8|uint16(h[1]))%31 == 0 {
				zr, err := zlib.NewReader(br)
				if err != nil {
					return nil, fmt.Errorf("scanner: deflate encoding: %w", err)
				}
				r = zr
			} else {
				r = flate.NewReader(br)
			}
		case "br":
			r = brotli.NewReader(r)
		case "zstd":
			// One goroutine-free decoder (concurrency 1), nothing to close.
			zr, err := zstd.NewReader(r, zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(true),
				zstd.WithDecoderMaxWindow(zstdMaxWindow))
			if err != nil {
				return nil, fmt.Errorf("scanner: zstd encoding: %w", err)
			}
			r = zr
		default:
			return nil, fmt.Errorf("%w %q", ErrEncoding, codings[i])
		}
	}
	return r, nil
}

// identity reports whether enc needs no decoding.
func identity(enc string) bool {
	for _, c := range strings.Split(enc, ",") {
		c = strings.TrimSpace(c)
		if c != "" && !strings.EqualFold(c, "identity") {
			return false
		}
	}
	return true
}

// DecodeHead returns up to HeadSize decoded bytes from raw, the first bytes
// of a body sent with Content-Encoding enc, so that Classify can see the true
// type of an encoded body. It returns what it could decode (possibly
// nothing, when raw is too short or not in that encoding).
func DecodeHead(enc string, raw []byte) []byte {
	if identity(enc) {
		return raw[:min(len(raw), HeadSize)]
	}
	r, err := decodeBody(enc, bytes.NewReader(raw))
	if err != nil {
		return nil
	}
	out := make([]byte, HeadSize)
	n, _ := io.ReadFull(r, out)
	return out[:n]
}
