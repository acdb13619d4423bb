package icap

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/textproto"
	"strconv"
	"strings"

	"github.com/picket-proxy/picket/scanner/internal/wire"
)

// Limits on what an ICAP server may send.
const (
	maxLine        = 8 << 10  // one status, header or chunk-size line
	maxHeaderBytes = 64 << 10 // all the header lines of one response
	maxHeaders     = 128
	maxSection     = 64 << 10 // one encapsulated HTTP header section
)

// errTooLong is returned by readChunked for a body over its limit.
var errTooLong = errors.New("icap: encapsulated body too long")

// ErrProtocol is wrapped by every error about what the server sent.
var ErrProtocol = errors.New("icap: protocol error")

func protoErr(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrProtocol, fmt.Sprintf(format, args...))
}

// head is an ICAP response's status line and headers.
type head struct {
	status int
	reason string
	header textproto.MIMEHeader
}

// readHead reads a response's status line and headers. Folded header lines
// (X-Violations-Found's) are kept, joined to their header with "\n".
func readHead(r *bufio.Reader) (*head, error) {
	line, err := wire.ReadLine(r, '\n', maxLine)
	if err != nil {
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("icap: the server closed the connection without answering: %w", io.ErrUnexpectedEOF)
		}
		return nil, fmt.Errorf("icap: reading the status line: %w", err)
	}
	proto, rest, _ := bytes.Cut(line, []byte(" "))
	code, reason, _ := bytes.Cut(rest, []byte(" "))
	if !bytes.HasPrefix(proto, []byte("ICAP/1.")) || len(code) != 3 {
		return nil, protoErr("not an ICAP status line: %s", wire.Quote(line))
	}
	status, err := strconv.Atoi(string(code))
	if err != nil || status < 100 {
		return nil, protoErr("bad status code in %s", wire.Quote(line))
	}
	h := &head{status: status, reason: string(reason), header: textproto.MIMEHeader{}}
	total, count := 0, 0
	var last string
	for {
		line, err := wire.ReadLine(r, '\n', maxLine)
		if err != nil {
			return nil, fmt.Errorf("icap: reading the headers: %w", err)
		}
		if len(line) == 0 {
			return h, nil
		}
		if total += len(line); total > maxHeaderBytes {
			return nil, protoErr("headers over %d bytes", maxHeaderBytes)
		}
		if line[0] == ' ' || line[0] == '\t' { // a folded continuation
			if last == "" {
				return nil, protoErr("continuation line before any header: %s", wire.Quote(line))
			}
			vs := h.header[last]
			vs[len(vs)-1] += "\n" + string(bytes.TrimSpace(line))
			continue
		}
		if count++; count > maxHeaders {
			return nil, protoErr("more than %d headers", maxHeaders)
		}
		k, v, ok := bytes.Cut(line, []byte(":"))
		if !ok || len(k) == 0 || bytes.ContainsAny(k, " \t") {
			return nil, protoErr("bad header line %s", wire.Quote(line))
		}
		last = textproto.CanonicalMIMEHeaderKey(string(k))
		h.header[last] = append(h.header[last], string(bytes.TrimSpace(v)))
	}
}

// section is one part named by an Encapsulated header.
type section struct {
	name string // req-hdr, res-hdr, req-body, res-body, null-body, opt-body
	off  int
}

func (s section) body() bool { return strings.HasSuffix(s.name, "-body") }

// parseEncapsulated reads "req-hdr=0, res-hdr=137, res-body=296".
func parseEncapsulated(v string) ([]section, error) {
	if strings.TrimSpace(v) == "" {
		return nil, nil
	}
	var out []section
	for part := range strings.SplitSeq(v, ",") {
		name, num, ok := strings.Cut(strings.TrimSpace(part), "=")
		off, err := strconv.Atoi(num)
		if !ok || err != nil || off < 0 {
			return nil, protoErr("bad Encapsulated header %q", v)
		}
		switch name {
		case "req-hdr", "res-hdr", "req-body", "res-body", "null-body", "opt-body":
		default:
			return nil, protoErr("unknown part %q in Encapsulated header %q", name, v)
		}
		if len(out) > 0 && (off < out[len(out)-1].off || out[len(out)-1].body()) {
			return nil, protoErr("Encapsulated header %q is out of order", v)
		}
		out = append(out, section{name, off})
	}
	if !out[len(out)-1].body() {
		return nil, protoErr("Encapsulated header %q does not end with a body part", v)
	}
	if out[0].off != 0 {
		return nil, protoErr("Encapsulated header %q does not start at 0", v)
	}
	return out, nil
}

// readChunked reads a chunked body to its end into w (at most limit
// bytes; more is an error). It reports whether the last chunk carried the
// ieof extension.
func readChunked(r *bufio.Reader, w io.Writer, limit int64) (int64, bool, error) {
	var n int64
	for {
		line, err := wire.ReadLine(r, '\n', maxLine)
		if err != nil {
			return n, false, fmt.Errorf("icap: reading a chunk size: %w", err)
		}
		sz, ext, _ := bytes.Cut(line, []byte(";"))
		size, err := strconv.ParseInt(string(bytes.TrimSpace(sz)), 16, 64)
		if err != nil || size < 0 {
			return n, false, protoErr("bad chunk size line %s", wire.Quote(line))
		}
		if size == 0 {
			ieof := bytes.Equal(bytes.TrimSpace(ext), []byte("ieof"))
			for { // trailer lines, then the empty line
				line, err := wire.ReadLine(r, '\n', maxLine)
				if err != nil {
					return n, ieof, fmt.Errorf("icap: reading the end of a chunked body: %w", err)
				}
				if len(line) == 0 {
					return n, ieof, nil
				}
			}
		}
		if n+size > limit {
			return n, false, fmt.Errorf("%w (over %d bytes)", errTooLong, limit)
		}
		if _, err := io.CopyN(w, r, size); err != nil {
			return n, false, fmt.Errorf("icap: reading a chunk: %w", err)
		}
		n += size
		crlf, err := wire.ReadLine(r, '\n', 2)
		if err != nil || len(crlf) != 0 {
			return n, false, protoErr("chunk not followed by CRLF")
		}
	}
}

// threatOf names the threat an ICAP server reported in its headers:
// X-Infection-Found ("Type=0; Resolution=2; Threat=NAME;"), X-Virus-ID, or
// X-Violations-Found (a count, then per violation the file name, the
// threat, an ID and a disposition on folded lines). "" if none.
func threatOf(h textproto.MIMEHeader) string {
	if v := h.Get("X-Infection-Found"); v != "" {
		for f := range strings.SplitSeq(v, ";") {
			if k, val, ok := strings.Cut(strings.TrimSpace(f), "="); ok && strings.EqualFold(k, "Threat") && strings.TrimSpace(val) != "" {
				return clean(val)
			}
		}
	}
	if v := clean(h.Get("X-Virus-ID")); v != "" && !strings.EqualFold(v, "no threats") {
		return v
	}
	if v := h.Get("X-Violations-Found"); v != "" {
		lines := strings.Split(v, "\n")
		if n, err := strconv.Atoi(strings.TrimSpace(lines[0])); err == nil && n > 0 && len(lines) >= 3 {
			return clean(lines[2])
		}
		if n, err := strconv.Atoi(strings.TrimSpace(lines[0])); err == nil && n > 0 {
			return "ICAP violation"
		}
	}
	return ""
}

// clean keeps printable ASCII of s, at most 128 bytes: a threat name from a
// server goes into logs and pages.
func clean(s string) string {
	s = strings.TrimSpace(s)
	var b strings.Builder
	for i := 0; i < len(s) && b.Len() < 128; i++ {
		if c := s[i]; c >= 0x20 && c < 0x7f {
			b.WriteByte(c)
		}
	}
	return strings.TrimSpace(b.String())
}

// headerValue makes s safe as an HTTP header value inside an encapsulated
// header (no control characters).
func headerValue(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return -1
		}
		return r
	}, s)
}
