package proxy

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"io"
	"net"
	"net/http"
	"testing"
	"time"
)

// writeCounter is a net.Conn that keeps what is written to it and counts the
// writes.
type writeCounter struct {
	net.Conn
	buf    bytes.Buffer
	writes int
}

func (w *writeCounter) Write(p []byte) (int, error) { w.writes++; return w.buf.Write(p) }
func (w *writeCounter) SetWriteDeadline(time.Time) error {
	return nil
}

// pieces reads its data at most size bytes at a time, as a TLS connection
// hands out one record at a time.
type pieces struct {
	data []byte
	size int
}

func (p *pieces) Read(b []byte) (int, error) {
	if len(p.data) == 0 {
		return 0, io.EOF
	}
	n := copy(b[:min(len(b), p.size)], p.data)
	p.data = p.data[n:]
	return n, nil
}

// A chunked body leaves in one write per piece read from the upstream, framed
// correctly; a body of known length (here one in memory, as Picket's own
// answers; proxied ones copy themselves, logBody.WriteTo) is not cut into the
// head buffer's 4 KiB; a small one leaves with its head in one write.
func TestWriteResponseOneWritePerPiece(t *testing.T) {
	body := make([]byte, 1<<20+123)
	rand.Read(body)
	const piece = 16 << 10
	reads := func(size int) int { return (len(body) + size - 1) / size }
	for _, tc := range []struct {
		name   string
		length int64
		body   []byte
		piece  int // bytes per read from the upstream
		writes int // at most
	}{
		{"chunked", -1, body, piece, reads(piece) + 2}, // + the head, + the last chunk
		// Once a read fills the 32 KiB buffer, reads go into a 256 KiB one.
		{"chunked, fast", -1, body, 1 << 20, 2 + reads(largeChunk) + 1},
		{"known length", int64(len(body)), body, piece, reads(piece) + 1},
		{"small", 1000, body[:1000], piece, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := &writeCounter{}
			resp := &http.Response{StatusCode: 200, Header: http.Header{"X-A": {"b"}}, ContentLength: tc.length,
				Body: io.NopCloser(&pieces{data: tc.body, size: tc.piece})}
			if tc.length >= 0 { // as Picket's own answers: in memory, written whole
				resp.Body = io.NopCloser(bytes.NewReader(tc.body))
			}
			req, _ := http.NewRequest(http.MethodGet, "http://example.test/", nil)
			if !writeResponse(c, req, resp, true) {
				t.Fatal("writeResponse: connection not reusable")
			}
			if c.writes > tc.writes {
				t.Errorf("%d writes, want at most %d", c.writes, tc.writes)
			}
			got, err := http.ReadResponse(bufio.NewReader(&c.buf), req)
			if err != nil {
				t.Fatal(err)
			}
			b, err := io.ReadAll(got.Body)
			if err != nil || !bytes.Equal(b, tc.body) {
				t.Fatalf("body: %d bytes (%v), want %d", len(b), err, len(tc.body))
			}
			if got.Header.Get("X-A") != "b" || (tc.length < 0) != (len(got.TransferEncoding) > 0) {
				t.Errorf("head: %v, transfer encoding %v", got.Header, got.TransferEncoding)
			}
			if c.buf.Len() != 0 {
				t.Errorf("%d bytes after the response", c.buf.Len())
			}
		})
	}
}
