package proxy

import (
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"strings"
	"testing"
	"time"
)

// TestDrain: while a load balancer takes the node out of rotation, Picket
// keeps accepting and serving, but idle keep-alive connections are closed
// and every response closes its connection, on the fast path and on the
// net/http path, so that clients come back on new connections.
func TestDrain(t *testing.T) {
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		io.WriteString(w, "ok "+r.Method+" "+string(b))
	}))
	defer origin.Close()
	tp := startProxy(t, Config{})
	c := tp.client(t)
	do := func(method, body string) (resp *http.Response, reused bool) {
		t.Helper()
		req, _ := http.NewRequest(method, origin.URL+"/", strings.NewReader(body))
		if body == "" {
			req.Body = nil
		}
		req = req.WithContext(httptrace.WithClientTrace(req.Context(), &httptrace.ClientTrace{
			GotConn: func(i httptrace.GotConnInfo) { reused = i.Reused },
		}))
		resp, err := c.Do(req)
		if err != nil {
			t.Fatalf("%s: %v", method, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if want := "ok " + method + " " + body; string(b) != want {
			t.Fatalf("%s: got %q, want %q", method, b, want)
		}
		return resp, reused
	}

	// Before: keep-alive (the second request reuses the connection).
	do("GET", "")
	if resp, reused := do("GET", ""); !reused || resp.Close {
		t.Fatalf("before Drain: reused=%v close=%v, want a kept-alive connection", reused, resp.Close)
	}
	idle := tp.OpenConns()

	tp.Drain()
	// The idle connection is closed at once...
	for deadline := time.Now().Add(5 * time.Second); tp.OpenConns() >= idle; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the idle keep-alive connection is still open (%d open)", tp.OpenConns())
		}
	}
	// ... and new ones are served, each answer closing its connection:
	// GET on the fast path, POST on the net/http path.
	for _, m := range [][2]string{{"GET", ""}, {"POST", "form=1"}, {"GET", ""}} {
		resp, reused := do(m[0], m[1])
		if reused || !resp.Close {
			t.Errorf("%s while draining: reused=%v close=%v, want a new connection closed after the answer", m[0], reused, resp.Close)
		}
	}
}
