package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/picket-proxy/picket/reputation/server"
)

// faultyRepServer sits in front of a real cloud reputation server and
// misbehaves on demand: down, slow (no answer for 5 s), stall (the head and
// a little of the body, then nothing until the client gives up), garbage
// JSON, 500s, an oversized answer, connection resets; "" passes requests
// through. seen counts the requests that arrived in a mode.
func faultyRepServer(t *testing.T) (hs *httptest.Server, mode *atomic.Value, seen func(mode string) int) {
	t.Helper()
	feeds, _ := filepath.Abs("../../data/feeds")
	real, err := server.New(server.Config{Role: server.RoleCloud, Feeds: feeds, Poll: -1}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { real.Close() })
	realHS := httptest.NewServer(real.Handler())
	t.Cleanup(realHS.Close)
	u, _ := url.Parse(realHS.URL)
	pass := httputil.NewSingleHostReverseProxy(u)
	mode = &atomic.Value{}
	mode.Store("")
	stop := make(chan struct{})
	var mu sync.Mutex
	hits := map[string]int{}
	seen = func(m string) int { mu.Lock(); defer mu.Unlock(); return hits[m] }
	hs = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		m := mode.Load().(string)
		mu.Lock()
		hits[m]++
		mu.Unlock()
		switch m {
		case "slow":
			select {
			case <-r.Context().Done():
			case <-time.After(5 * time.Second):
			}
		case "stall":
			w.Header().Set("Content-Type", "application/json")
			io.WriteString(w, `{"matches":[`)
			http.NewResponseController(w).Flush()
			select {
			case <-r.Context().Done():
			case <-stop:
			}
		case "garbage":
			io.WriteString(w, "{\"this is\": not json")
		case "500":
			http.Error(w, "boom", http.StatusInternalServerError)
		case "oversized":
			// A valid answer ("nothing known"), padded past the client's
			// 4 MiB limit: only the limit makes it a failure.
			w.Header().Set("Content-Type", "application/json")
			io.WriteString(w, `{"matches":[],"negative_ttl":60,"pad":"`)
			for i := 0; i < 1<<16; i++ {
				io.WriteString(w, "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa")
			}
			io.WriteString(w, `"}`)
		case "reset", "down":
			c, _, err := http.NewResponseController(w).Hijack()
			if err == nil {
				if tc, ok := c.(*net.TCPConn); ok {
					tc.SetLinger(0) // RST, not FIN
				}
				c.Close()
			}
		default:
			pass.ServeHTTP(w, r)
		}
	}))
	t.Cleanup(hs.Close)
	t.Cleanup(func() { close(stop) }) // before hs.Close
	return hs, mode, seen
}

// TestReputationFaults: whatever the KSN server does wrong, users get an
// answer, the fail policy decides (open: the page; closed: the block page,
// rule reputation.fail), the failure is logged and counted, and when the
// server behaves again the next lookups go to it, with no restart. The
// configured timeout is what bounds the wait: a stalled answer (head sent,
// body never finished) has no other end, so without it the user's request
// would fail at the test client's own 20 s timeout. (No wall-clock budget
// per request: speed is measured by the benchmarks.)
func TestReputationFaults(t *testing.T) {
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "page") }))
	defer origin.Close()
	rep, mode, seen := faultyRepServer(t)
	for _, policy := range []string{"open", "closed"} {
		t.Run("fail="+policy, func(t *testing.T) {
			// The breaker stays closed, so that every fault reaches the
			// server (the breaker is TestClientBreaker's).
			p := startPicket(t, fmt.Sprintf(`[reputation]
mode = "ksn"
fail = %q
timeout = "200ms"
breaker_failures = 100
[reputation.ksn]
server = %q
`, policy, rep.URL))
			c := p.client(t)
			for i, m := range []string{"down", "slow", "stall", "garbage", "500", "oversized", "reset"} {
				mode.Store(m)
				before := seen(m)
				u := fmt.Sprintf("%s/%s-%d", origin.URL, m, i)
				resp, body := fetch(t, c, u, nil)
				if seen(m) == before {
					t.Errorf("%s: the lookup never reached the server", m)
				}
				if l := p.waitAccess(t, func(l map[string]any) bool { return l["url"] == u }); l["source"] != "failure" {
					t.Errorf("%s: verdict source %v, want failure (the fail policy decided)", m, l["source"])
				}
				switch {
				case policy == "open" && (resp.StatusCode != 200 || body != "page"):
					t.Errorf("%s, fail open: got %d %.80q, want the page", m, resp.StatusCode, body)
				case policy == "closed" && resp.StatusCode != 403:
					t.Errorf("%s, fail closed: got %d, want the block page", m, resp.StatusCode)
				}
			}
			if policy == "closed" {
				p.waitAccess(t, func(l map[string]any) bool { return l["rule"] == "reputation.fail" && l["source"] == "failure" })
			}
			if !strings.Contains(p.stderr.String(), "reputation lookup failed") {
				t.Errorf("no failure in the application log")
			}
			_, metrics := fetch(t, http.DefaultClient, "http://"+adminAddr(t, p)+"/metrics", nil)
			if !strings.Contains(metrics, "picket_reputation_failures_total") || strings.Contains(metrics, "picket_reputation_failures_total 0\n") {
				t.Errorf("failures not counted in the metrics")
			}
			// The server recovers: new lookups reach it again.
			mode.Store("")
			deadline := time.Now().Add(10 * time.Second)
			for i := 0; ; i++ {
				resp, _ := fetch(t, c, fmt.Sprintf("%s/recovered-%d", origin.URL, i), nil)
				u := fmt.Sprintf("%s/recovered-%d", origin.URL, i)
				if resp.StatusCode == 200 {
					l := p.waitAccess(t, func(l map[string]any) bool { return l["url"] == u })
					if l["source"] == "server" {
						break
					}
				}
				if time.Now().After(deadline) {
					t.Fatalf("no recovery: lookups still fail after the server came back")
				}
				time.Sleep(50 * time.Millisecond)
			}
		})
	}
}
