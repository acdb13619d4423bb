package admin

import (
	"io"
	"strings"
	"testing"
	"time"
)

// TestFeedsFreshness: the feeds' freshness shows in the status, the
// metrics and /readyz; a stale source makes Picket degraded, not unready.
func TestFeedsFreshness(t *testing.T) {
	now := time.Now()
	feeds := testFeeds(now)
	s, _ := newTestServer(t, func(c *Config) { c.Sources.Feeds = func() []Feed { return feeds } })

	// All fresh (one failing within its stale_after): ready.
	resp := do(s, "GET", "/readyz", remote, "", "")
	if r := decode[map[string]any](t, resp); resp.StatusCode != 200 || r["status"] != "ready" {
		t.Errorf("fresh feeds: /readyz %d %v, want 200 ready", resp.StatusCode, r)
	}
	st := s.Status()
	if len(st.Feeds) != 3 || st.Feeds[1].Entries != 12345 || st.Feeds[2].Failures != 4 || len(st.Degraded) != 0 {
		t.Errorf("status feeds: %+v, degraded %v", st.Feeds, st.Degraded)
	}

	resp = do(s, "GET", "/metrics", remote, testToken, "")
	b, _ := io.ReadAll(resp.Body)
	for _, want := range []string{
		`picket_feed_entries{source="urlhaus"} 12345`,
		`picket_feed_bad_lines{source="urlhaus"} 3`,
		`picket_feed_age_seconds{source="urlhaus"} 600`,
		`picket_feed_age_seconds{source="phishing.txt"} 172800`,
		`picket_feed_errors_total{source="drop"} 9`,
		`picket_feed_consecutive_failures{source="drop"} 4`,
		`picket_feed_stale{source="drop"} 0`,
	} {
		if !strings.Contains(string(b), want+"\n") {
			t.Errorf("metrics lack %q", want)
		}
	}

	// A download older than its stale_after, and one never downloaded:
	// degraded, still 200, with the detail.
	feeds[1].AgeSeconds = new(int64)
	*feeds[1].AgeSeconds = 4 * 3600
	feeds[1].Stale = true
	feeds = append(feeds, Feed{Name: "bazaar", Format: "hashes", URL: "https://bazaar.example/", Missing: true, Stale: true,
		LastError: "GET: dial tcp: connection refused", Failures: 1, Errors: 1})
	resp = do(s, "GET", "/readyz", remote, "", "")
	r := decode[map[string]any](t, resp)
	detail, _ := r["degraded"].([]any)
	if resp.StatusCode != 200 || r["status"] != "degraded" || len(detail) != 2 ||
		detail[0] != "feed urlhaus: last successful download 4h0m0s ago, stale after 3h0m0s" ||
		detail[1] != "feed bazaar: no copy downloaded yet (GET: dial tcp: connection refused)" {
		t.Errorf("stale feeds: /readyz %d %v, want 200 degraded with both", resp.StatusCode, r)
	}
	st = s.Status()
	if !st.Ready || len(st.Degraded) != 2 {
		t.Errorf("status: ready %v, degraded %v; want ready and degraded", st.Ready, st.Degraded)
	}
	resp = do(s, "GET", "/metrics", remote, testToken, "")
	b, _ = io.ReadAll(resp.Body)
	for _, want := range []string{`picket_feed_stale{source="urlhaus"} 1`, `picket_feed_stale{source="bazaar"} 1`, `picket_feed_entries{source="bazaar"} 0`} {
		if !strings.Contains(string(b), want+"\n") {
			t.Errorf("metrics lack %q", want)
		}
	}
	if strings.Contains(string(b), `picket_feed_age_seconds{source="bazaar"}`) {
		t.Error("an age for a source never downloaded")
	}
}
