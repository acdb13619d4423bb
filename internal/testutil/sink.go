package testutil

import (
	"fmt"
	"io"
	"net/http"
	"sync"
)

// Sink is an origin handler that records the body and framing of every
// request it receives, by path, and answers "stored N bytes": the tests of
// upload scanning check with it what reached the origin, and that nothing
// did.
type Sink struct {
	mu  sync.Mutex
	got map[string]Received
}

// Received is what a Sink got for one path.
type Received struct {
	Body          []byte
	ContentLength int64 // -1 when unknown (chunked)
	Chunked       bool
	Err           error // reading the body
}

// NewSink returns an empty Sink.
func NewSink() *Sink { return &Sink{got: map[string]Received{}} }

func (s *Sink) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, err := io.ReadAll(r.Body)
	s.mu.Lock()
	s.got[r.URL.Path] = Received{b, r.ContentLength, len(r.TransferEncoding) > 0 && r.TransferEncoding[0] == "chunked", err}
	s.mu.Unlock()
	fmt.Fprintf(w, "stored %d bytes", len(b))
}

// Received returns what the request for path brought, and whether one
// came at all.
func (s *Sink) Received(path string) (Received, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.got[path]
	return r, ok
}
