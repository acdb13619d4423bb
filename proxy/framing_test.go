package proxy

import (
	"bytes"
	"testing"
)

// A valid stream of pipelined requests (with a Content-Length body, a
// chunked body with trailers, then a CONNECT and tunnel bytes) passes
// unchanged whatever the read sizes.
func TestFramingGuardPassesValidStreams(t *testing.T) {
	stream := []byte("GET http://a/ HTTP/1.1\r\nHost: a\r\n\r\n" +
		"POST http://a/p HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello" +
		"POST http://a/c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5;x=y\r\nhello\r\n0\r\nT: 1\r\n\r\n" +
		"\r\nCONNECT b:443 HTTP/1.1\r\nHost: b:443\r\n\r\n\x16\x03\x01 not http \n\n at all")
	for _, size := range []int{1, 2, 3, 7, 64, len(stream)} {
		g := newFramingGuard(64 << 10)
		for i := 0; i < len(stream); i += size {
			g.feed(stream[i:min(i+size, len(stream))])
		}
		if g.verdict != 0 || !bytes.Equal(g.out, stream) {
			t.Errorf("read size %d: verdict %d, passed %d of %d bytes", size, g.verdict, len(g.out), len(stream))
		}
	}
}

func TestFramingGuardVerdicts(t *testing.T) {
	for _, tc := range []struct {
		name, head string
		want       int
	}{
		{"CL and TE", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", 400},
		{"two CL", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\ncontent-length: 3\r\n\r\n", 400},
		{"TE on 1.0", "POST / HTTP/1.0\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n", 400},
		{"obs-fold", "GET / HTTP/1.1\r\nHost: a\r\nX: 1\r\n 2\r\n\r\n", 400},
		{"bare LF", "GET / HTTP/1.1\nHost: a\n\n", 400},
		{"bare LF in one line", "GET / HTTP/1.1\r\nHost: a\nX: 1\r\n\r\n", 400},
		{"long request line", "GET /" + string(bytes.Repeat([]byte("a"), 9000)) + " HTTP/1.1\r\n\r\n", 414},
		{"many headers", "GET / HTTP/1.1\r\n" + string(bytes.Repeat([]byte("a: 1\r\n"), 101)) + "\r\n", 431},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := newFramingGuard(64 << 10)
			g.feed([]byte(tc.head))
			if g.verdict != tc.want || len(g.out) != 0 {
				t.Errorf("verdict %d (passed %d bytes), want %d and nothing passed", g.verdict, len(g.out), tc.want)
			}
		})
	}
}

// FuzzFramingGuard: any bytes, any split: no panic, and what passes is
// always a prefix of the input.
func FuzzFramingGuard(f *testing.F) {
	f.Add([]byte("GET / HTTP/1.1\r\nHost: a\r\n\r\n"), uint8(3))
	f.Add([]byte("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"), uint8(1))
	f.Add([]byte("POST / HTTP/1.1\r\nContent-Length: 2\r\n\r\nabGET / HTTP/1.1\r\n\r\n"), uint8(5))
	f.Fuzz(func(t *testing.T, data []byte, split uint8) {
		size := int(split%64) + 1
		g := newFramingGuard(4096)
		for i := 0; i < len(data); i += size {
			g.feed(data[i:min(i+size, len(data))])
		}
		if !bytes.HasPrefix(data, g.out) {
			t.Fatalf("passed bytes that are not a prefix of the input")
		}
	})
}
