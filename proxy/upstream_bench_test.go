package proxy

import (
	"io"
	"net/http"
	"testing"
)

// BenchmarkUpstreamTransport and BenchmarkUpstreamInline are one request
// on its way to a loopback origin and back (1 KiB, keep-alive, 64 at a
// time), the two ways Picket sends it, on the same guarded connections
// (poolguard.go):
//
//   - Transport: net/http's Transport (everything but the simplest
//     requests): the request goes to the connection's writer goroutine
//     and the response comes back from its reader goroutine.
//   - Inline: inlineClient (GET and HEAD without a body to HTTP/1.1
//     origins), which writes the request and reads the response in the
//     caller's goroutine.
func BenchmarkUpstreamTransport(b *testing.B) {
	origin := benchOrigin(b, false)
	tr := guardedTestTransport(256)
	defer tr.CloseIdleConnections()
	benchUpstream(b, tr, origin.URL+"/1k")
}

func BenchmarkUpstreamInline(b *testing.B) {
	origin := benchOrigin(b, false)
	tr := guardedTestTransport(256)
	defer tr.CloseIdleConnections()
	ic := testInline(tr, 256)
	defer ic.CloseIdleConnections()
	benchUpstream(b, ic, origin.URL+"/1k")
}

// benchUpstream sends b.N GETs of url through rt, 64 at a time, and reads
// each body.
func benchUpstream(b *testing.B, rt http.RoundTripper, url string) {
	req, _ := http.NewRequest("GET", url, nil)
	b.ReportAllocs()
	b.SetBytes(1024)
	b.SetParallelism(32)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			resp, err := rt.RoundTrip(req)
			if err != nil {
				b.Error(err)
				return
			}
			_, err = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if err != nil {
				b.Error(err)
				return
			}
		}
	})
}
