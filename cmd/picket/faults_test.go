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
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/picket-proxy/picket/reputation/server"
)

// faultyRepServer sits in front of a real cloud reputation server and
// misbehaves on demand: down, slow, garbage JSON, 500s, an oversized
// answer, connection resets; "" passes requests through.
func faultyRepServer(t *testing.T) (*httptest.Server, *atomic.Value) {
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
	var mode atomic.Value
	mode.Store("")
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch mode.Load().(string) {
		case "slow":
			select {
			case <-r.Context().Done():
			case <-time.After(5 * time.Second):
			}
		case "garbage":
			io.WriteString(w, "{\"this is\": not json")
		case "500":
			http.Error(w, "boom", http.StatusInternalServerError)
		case "oversized":
			w.Header().Set("Content-Type", "application/json")
			io.WriteString(w, `{"hashes":[`)
			for i := 0; i < 1<<16; i++ {
				io.WriteString(w, `"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",`)
			}
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
	return hs, &mode
}

// TestReputationFaults: whatever the KSN server does wrong, users get an
// answer within a bound set by the configured timeout, the fail policy
// decides (open: the page; closed: the block page, rule reputation.fail),
// the failure is logged and counted, and when the server behaves again the
// next lookups go to it, with no restart.
func TestReputationFaults(t *testing.T) {
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "page") }))
	defer origin.Close()
	rep, mode := faultyRepServer(t)
	const timeout = 200 * time.Millisecond
	for _, policy := range []string{"open", "closed"} {
		t.Run("fail="+policy, func(t *testing.T) {
			p := startPicket(t, fmt.Sprintf(`[reputation]
mode = "ksn"
fail = %q
timeout = "200ms"
breaker_cooldown = "100ms"
[reputation.ksn]
server = %q
`, policy, rep.URL))
			c := p.client(t)
			for i, m := range []string{"down", "slow", "garbage", "500", "oversized", "reset"} {
				mode.Store(m)
				start := time.Now()
				resp, body := fetch(t, c, fmt.Sprintf("%s/%s-%d", origin.URL, m, i), nil)
				took := time.Since(start)
				if took > 10*timeout {
					t.Errorf("%s: the user waited %v, want under %v (timeout %v)", m, took, 10*timeout, timeout)
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
