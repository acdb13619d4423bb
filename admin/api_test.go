package admin

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/picket-proxy/picket/proxy"
)

const (
	loop   = "127.0.0.1:40000"
	remote = "192.0.2.10:40000"
)

func decode[T any](t *testing.T, resp *http.Response) T {
	t.Helper()
	var v T
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil {
		t.Fatalf("decoding the answer: %v", err)
	}
	return v
}

// TestAccess checks who may do what: the table in the package doc.
func TestAccess(t *testing.T) {
	s, _ := newTestServer(t, nil)
	tests := []struct {
		name, method, path, from, token string
		hdr                             []string
		want                            int
		wantChallenge                   bool
	}{
		{"healthz from anywhere", "GET", "/healthz", remote, "", nil, 200, false},
		{"readyz from anywhere", "GET", "/readyz", remote, "", nil, 200, false},
		{"loopback GET without token", "GET", "/api/v1/status", loop, "", nil, 200, false},
		{"loopback IPv6 GET without token", "GET", "/api/v1/status", "[::1]:40000", "", []string{"Host", "[::1]:9090"}, 200, false},
		{"loopback HEAD without token", "HEAD", "/api/v1/status", loop, "", nil, 200, false},
		{"loopback metrics without token", "GET", "/metrics", loop, "", nil, 200, false},
		{"loopback console without token", "GET", "/", loop, "", []string{"Host", "localhost:9090"}, 200, false},
		{"loopback rebinding name", "GET", "/api/v1/status", loop, "", []string{"Host", "evil.example:9090"}, 403, false},
		{"loopback rebinding name with token", "GET", "/api/v1/status", loop, testToken, []string{"Host", "evil.example:9090"}, 200, false},
		{"loopback POST without token", "POST", "/api/v1/reload", loop, "", nil, 401, true},
		{"loopback POST with bad token", "POST", "/api/v1/reload", loop, "wrong-token-wrong-token", nil, 401, true},
		{"loopback POST with token", "POST", "/api/v1/reload", loop, testToken, nil, 200, false},
		{"remote GET without token", "GET", "/api/v1/status", remote, "", nil, 401, true},
		{"remote metrics without token", "GET", "/metrics", remote, "", nil, 401, true},
		{"remote console without token", "GET", "/", remote, "", nil, 401, true},
		{"remote GET with bad token", "GET", "/api/v1/status", remote, "nope", nil, 401, true},
		{"remote GET with token", "GET", "/api/v1/status", remote, testToken, nil, 200, false},
		{"remote basic auth", "GET", "/api/v1/status", remote, "", []string{"Authorization", "Basic dXNlcjpwYXNz"}, 401, true},
		{"remote POST with token", "POST", "/api/v1/cache/flush", remote, testToken, nil, 200, false},
		{"cross-site POST with token", "POST", "/api/v1/reload", loop, testToken, []string{"Sec-Fetch-Site", "cross-site"}, 403, false},
		{"cross-origin POST with token", "POST", "/api/v1/reload", loop, testToken, []string{"Origin", "http://evil.example"}, 403, false},
		{"same-origin POST with token", "POST", "/api/v1/reload", loop, testToken, []string{"Sec-Fetch-Site", "same-origin"}, 200, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := do(s, tt.method, tt.path, tt.from, tt.token, "", tt.hdr...)
			if resp.StatusCode != tt.want {
				b, _ := io.ReadAll(resp.Body)
				t.Fatalf("got %d %s, want %d", resp.StatusCode, b, tt.want)
			}
			if got := resp.Header.Get("WWW-Authenticate"); strings.HasPrefix(got, "Bearer") != tt.wantChallenge {
				t.Errorf("WWW-Authenticate: got %q, want a Bearer challenge: %v", got, tt.wantChallenge)
			}
			if tt.want >= 400 && tt.method != "HEAD" {
				if e := decode[map[string]string](t, resp); e["error"] == "" {
					t.Errorf("got no error message, want {\"error\": ...}")
				}
			}
		})
	}
}

func TestAllowClients(t *testing.T) {
	s, _ := newTestServer(t, func(c *Config) { c.AllowClients = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")} })
	for _, tt := range []struct {
		name, from string
		want       int
	}{
		{"listed network", "10.9.9.9:1000", 200},
		{"other network, even with the token", remote, 403},
		{"loopback is always allowed", loop, 200},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := do(s, "GET", "/api/v1/status", tt.from, testToken, "").StatusCode; got != tt.want {
				t.Errorf("got %d, want %d", got, tt.want)
			}
		})
	}
}

func TestNewNeedsToken(t *testing.T) {
	if _, err := New(Config{Token: "short"}); !errors.Is(err, ErrNoToken) {
		t.Errorf("got %v, want ErrNoToken", err)
	}
}

func TestRoutes(t *testing.T) {
	s, _ := newTestServer(t, nil)
	tests := []struct {
		name, method, path string
		want               int
		allow              string
	}{
		{"unknown path", "GET", "/api/v1/nothing", 404, ""},
		{"GET reload", "GET", "/api/v1/reload", 405, "POST"},
		{"DELETE status", "DELETE", "/api/v1/status", 405, "GET, HEAD"},
		{"PUT participation", "PUT", "/api/v1/participation", 405, "GET, HEAD, POST"},
		{"GET cache flush", "GET", "/api/v1/cache/flush", 405, "POST"},
		{"POST decisions", "POST", "/api/v1/decisions", 405, "GET, HEAD"},
		{"POST healthz", "POST", "/healthz", 405, "GET, HEAD"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := do(s, tt.method, tt.path, loop, testToken, "")
			if resp.StatusCode != tt.want {
				t.Fatalf("got %d, want %d", resp.StatusCode, tt.want)
			}
			if got := resp.Header.Get("Allow"); got != tt.allow {
				t.Errorf("Allow: got %q, want %q", got, tt.allow)
			}
			if e := decode[map[string]string](t, resp); e["error"] == "" {
				t.Errorf("got no error message")
			}
		})
	}
}

func TestReadyz(t *testing.T) {
	s, parts := newTestServer(t, nil)
	if got := do(s, "GET", "/readyz", remote, "", "").StatusCode; got != 200 {
		t.Errorf("ready: got %d, want 200", got)
	}
	parts.ready = errors.New("reputation database not loaded")
	resp := do(s, "GET", "/readyz", remote, "", "")
	if resp.StatusCode != 503 {
		t.Errorf("not ready: got %d, want 503", resp.StatusCode)
	}
	if e := decode[map[string]string](t, resp); !strings.Contains(e["error"], "database") {
		t.Errorf("got %v, want the reason", e)
	}
	if st := s.Status(); st.Ready || st.NotReady == "" {
		t.Errorf("status: got ready %v %q, want not ready with the reason", st.Ready, st.NotReady)
	}
}

func TestStatus(t *testing.T) {
	s, parts := newTestServer(t, nil)
	parts.participation = Participation{Participation: true, Samples: "full"}
	for _, e := range workload(time.Now()) {
		s.Observe(e)
	}
	base := serve(t, s)
	resp, err := http.Get(base + "/api/v1/status")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("got %d %s, want 200 JSON", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	st := decode[Status](t, resp)
	checks := []struct {
		name string
		ok   bool
	}{
		{"version", st.Version == "v-test"},
		{"mode", st.Mode == "kpsn (embedded database)"},
		{"ready", st.Ready},
		{"participation", st.Participation != nil && st.Participation.Participation && st.Participation.Samples == "full"},
		{"listeners", len(st.Listeners) == 2 && st.Listeners[0].Addr == "127.0.0.1:3128"},
		{"ca fingerprint", st.CA != nil && st.CA.Fingerprint == "AB:CD:EF"},
		{"ca hit ratio", st.CA != nil && st.CA.HitRatio == 0.8 && st.CA.Mints == 2},
		{"databases", len(st.Databases) == 1 && st.Databases[0].Version == 4 && st.Databases[0].Entries == 1200},
		{"reputation", st.Reputation != nil && st.Reputation.Healthy && st.Reputation.Breaker == "closed" && st.Reputation.HitRatio == 0.6},
		{"scanner", st.Scanner != nil && st.Scanner.Scans == 3 && st.Scanner.Malicious == 1},
		{"engines", st.Scanner != nil && len(st.Scanner.Engines) == 2 && st.Scanner.Engines[0].Healthy &&
			st.Scanner.Engines[0].Version == "ClamAV 1.4.6" && st.Scanner.Engines[0].Detections == 1 &&
			!st.Scanner.Engines[1].Healthy && strings.Contains(st.Scanner.Engines[1].Error, "connection refused")},
		{"open connections", st.OpenConnections != nil && *st.OpenConnections == 7},
		{"auto-bypassed", len(st.AutoBypassed) == 1 && st.AutoBypassed[0] == "pinned.example"},
		{"action totals", st.Totals.Actions["block"] == 4 && st.Totals.Actions["allow"] == 9},
		{"verdict totals", st.Totals.Verdicts["phishing"] == 3 && st.Totals.Verdicts["clean"] == 6},
		{"endpoints", st.Extra["reload"] && st.Extra["set_participation"]},
	}
	for _, c := range checks {
		if !c.ok {
			t.Errorf("%s: got %+v", c.name, st)
		}
	}
	if got := do(s, "GET", "/api/v1/status?x=1", loop, "", "").StatusCode; got != 400 {
		t.Errorf("unknown parameter: got %d, want 400", got)
	}
}

// TestStatusBare: without any part, the status still answers, with nulls.
func TestStatusBare(t *testing.T) {
	s, err := New(Config{Token: testToken})
	if err != nil {
		t.Fatal(err)
	}
	resp := do(s, "GET", "/api/v1/status", loop, "", "")
	if resp.StatusCode != 200 {
		t.Fatalf("got %d, want 200", resp.StatusCode)
	}
	raw := decode[map[string]any](t, resp)
	for _, k := range []string{"participation", "ca", "reputation", "scanner", "open_connections"} {
		if v, ok := raw[k]; !ok || v != nil {
			t.Errorf("%s: got %v, want null", k, v)
		}
	}
	for path, method := range map[string]string{
		"/api/v1/reload": "POST", "/api/v1/participation": "GET", "/api/v1/cache/flush": "POST",
	} {
		if got := do(s, method, path, loop, testToken, "").StatusCode; got != 501 {
			t.Errorf("%s %s: got %d, want 501", method, path, got)
		}
	}
	if got := do(s, "POST", "/api/v1/participation", loop, testToken, `{"participation":true}`).StatusCode; got != 501 {
		t.Errorf("POST participation: got %d, want 501", got)
	}
}

func TestReload(t *testing.T) {
	s, parts := newTestServer(t, nil)
	resp := do(s, "POST", "/api/v1/reload", loop, testToken, "")
	if resp.StatusCode != 200 || parts.reloads != 1 {
		t.Fatalf("got %d after %d reloads, want 200 after 1", resp.StatusCode, parts.reloads)
	}
	parts.reloadErr = errors.New("config.toml:3: proxy.listen: bad address")
	resp = do(s, "POST", "/api/v1/reload", loop, testToken, "")
	if resp.StatusCode != 422 {
		t.Fatalf("invalid config: got %d, want 422", resp.StatusCode)
	}
	if e := decode[map[string]string](t, resp); !strings.Contains(e["error"], "proxy.listen") {
		t.Errorf("got %v, want the config error", e)
	}
	fams := scrape(t, s)
	if ok, bad := value(fams, "picket_reloads_total", "result", "ok"), value(fams, "picket_reloads_total", "result", "error"); ok != 1 || bad != 1 {
		t.Errorf("picket_reloads_total: got ok %v error %v, want 1 and 1", ok, bad)
	}
}

func TestCacheFlush(t *testing.T) {
	s, parts := newTestServer(t, nil)
	resp := do(s, "POST", "/api/v1/cache/flush", loop, testToken, "")
	if resp.StatusCode != 200 || parts.flushes != 1 {
		t.Errorf("got %d after %d flushes, want 200 after 1", resp.StatusCode, parts.flushes)
	}
}

func TestParticipation(t *testing.T) {
	s, parts := newTestServer(t, nil)
	resp := do(s, "GET", "/api/v1/participation", loop, "", "")
	if got := decode[Participation](t, resp); resp.StatusCode != 200 || got != (Participation{Samples: "off"}) {
		t.Fatalf("GET: got %d %+v, want 200 off", resp.StatusCode, got)
	}
	tests := []struct {
		name, body string
		want       int
		state      Participation
	}{
		{"on with samples", `{"participation": true, "samples": "full-or-part"}`, 200, Participation{Participation: true, Samples: "full-or-part"}},
		{"on, samples default off", `{"participation": true}`, 200, Participation{Participation: true, Samples: "off"}},
		{"off", `{"participation": false, "samples": "off"}`, 200, Participation{Participation: false, Samples: "off"}},
		{"empty body", ``, 400, Participation{Participation: false, Samples: "off"}},
		{"not JSON", `participation=true`, 400, Participation{Participation: false, Samples: "off"}},
		{"wrong type", `{"participation": "yes"}`, 400, Participation{Participation: false, Samples: "off"}},
		{"missing participation", `{"samples": "full"}`, 400, Participation{Participation: false, Samples: "off"}},
		{"unknown samples", `{"participation": true, "samples": "some"}`, 400, Participation{Participation: false, Samples: "off"}},
		{"samples without participation", `{"participation": false, "samples": "full"}`, 400, Participation{Participation: false, Samples: "off"}},
		{"unknown field", `{"participation": true, "extra": 1}`, 400, Participation{Participation: false, Samples: "off"}},
		{"trailing data", `{"participation": true} {}`, 400, Participation{Participation: false, Samples: "off"}},
		{"too large", `{"participation": true, "samples": "` + strings.Repeat("x", 5000) + `"}`, 400, Participation{Participation: false, Samples: "off"}},
		// Last: the test's SetParticipation keeps what it was given.
		{"rotate", `{"participation": false, "rotate_installation": true}`, 200, Participation{Participation: false, Samples: "off", RotateInstallation: true}},
		{"rotate, wrong type", `{"participation": false, "rotate_installation": "yes"}`, 400, Participation{Participation: false, Samples: "off", RotateInstallation: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := do(s, "POST", "/api/v1/participation", loop, testToken, tt.body, "Content-Type", "application/json")
			if resp.StatusCode != tt.want {
				b, _ := io.ReadAll(resp.Body)
				t.Fatalf("got %d %s, want %d", resp.StatusCode, b, tt.want)
			}
			if tt.want == 200 {
				if got := decode[Participation](t, resp); got != tt.state {
					t.Errorf("answer: got %+v, want %+v", got, tt.state)
				}
			} else if e := decode[map[string]string](t, resp); e["error"] == "" {
				t.Errorf("got no error message")
			}
			if parts.participation != tt.state {
				t.Errorf("state: got %+v, want %+v", parts.participation, tt.state)
			}
		})
	}
	if got := do(s, "POST", "/api/v1/participation", loop, "", `{"participation": true}`).StatusCode; got != 401 {
		t.Errorf("without token: got %d, want 401", got)
	}
}

func TestDecisions(t *testing.T) {
	s, _ := newTestServer(t, func(c *Config) { c.Recent = 9 })
	events := workload(time.Now())
	for _, e := range events {
		s.Observe(e)
	}
	type answer struct {
		Decisions []Decision `json:"decisions"`
	}
	get := func(query string) (int, []Decision) {
		resp := do(s, "GET", "/api/v1/decisions"+query, loop, "", "")
		if resp.StatusCode != 200 {
			return resp.StatusCode, nil
		}
		return 200, decode[answer](t, resp).Decisions
	}
	// The ring keeps the last 9 of 17 events, newest first.
	if code, all := get(""); code != 200 || len(all) != 9 || all[0].Scan == nil || all[0].Scan.Type != "zip" {
		t.Fatalf("all: got %d, %d decisions, want 9 newest first", code, len(all))
	}
	_, blocks := get("?action=block")
	if len(blocks) != 3 || blocks[0].Incident != "INC-SCAN" || blocks[1].Incident != "INC-C" || blocks[2].Incident != "INC-B" {
		t.Errorf("blocks: got %+v, want INC-SCAN, INC-C, INC-B (INC-A fell out of the ring)", blocks)
	}
	if blocks[1].Rule != "reputation" || blocks[1].Verdict != "phishing" || blocks[1].Host != "badc.example" || blocks[1].Client != "10.1.2.3" {
		t.Errorf("got %+v, want rule, verdict, host and client", blocks[1])
	}
	if blocks[0].Scan == nil || blocks[0].Scan.Threat != "EICAR-Test-File" {
		t.Errorf("got %+v, want the scan's threat", blocks[0].Scan)
	}
	if _, one := get("?action=block&limit=1"); len(one) != 1 || one[0].Incident != "INC-SCAN" {
		t.Errorf("limit=1: got %+v", one)
	}
	if _, inc := get("?incident=INC-B"); len(inc) != 1 || inc[0].Host != "badb.example" {
		t.Errorf("incident: got %+v", inc)
	}
	if _, none := get("?action=warn&incident=INC-B"); none == nil || len(none) != 0 {
		t.Errorf("no match: got %+v, want an empty list", none)
	}
	for _, q := range []string{"?limit=0", "?limit=-1", "?limit=abc", "?limit=11", "?action=bogus", "?action=other", "?host=x"} {
		resp := do(s, "GET", "/api/v1/decisions"+q, loop, "", "")
		if resp.StatusCode != 400 {
			t.Errorf("%s: got %d, want 400", q, resp.StatusCode)
			continue
		}
		if e := decode[map[string]string](t, resp); e["error"] == "" {
			t.Errorf("%s: got no message", q)
		}
	}
}

func TestSeries(t *testing.T) {
	now := time.Date(2025, 3, 1, 12, 30, 20, 0, time.UTC)
	clock := func() time.Time { return now }
	parts := &fakeParts{}
	s, err := New(parts.config(clock))
	if err != nil {
		t.Fatal(err)
	}
	events := workload(now)
	for _, e := range events[:10] {
		s.Observe(e)
	}
	now = now.Add(2 * time.Minute)
	for _, e := range events[10:] {
		e.Time = now.Add(-e.Duration) // finished now
		s.Observe(e)
	}
	// Counted in the minute it finished; without a time or with one outside
	// the ring, in the current minute.
	s.Observe(proxy.Event{Time: now.Add(-time.Minute), Action: "allow"})
	s.Observe(proxy.Event{Action: "allow"})
	s.Observe(proxy.Event{Time: now.Add(time.Hour), Action: "allow"})
	s.Observe(proxy.Event{Time: now.Add(-24 * time.Hour), Action: "allow"})
	type answer struct {
		Step   int     `json:"step_seconds"`
		Points []Point `json:"points"`
	}
	resp := do(s, "GET", "/api/v1/series?minutes=5", loop, "", "")
	a := decode[answer](t, resp)
	if a.Step != 60 || len(a.Points) != 5 {
		t.Fatalf("got step %d and %d points, want 60 and 5", a.Step, len(a.Points))
	}
	p := a.Points
	if p[4].Time != now.Truncate(time.Minute).Unix() || p[2].Requests != 10 || p[2].Blocks != 3 || p[3].Requests != 1 {
		t.Errorf("got %+v, want 10 requests (3 blocks) two minutes ago, 1 a minute ago", p)
	}
	if p[4].Requests != 10 || p[4].Blocks != 1 || p[4].Warns != 1 || p[4].Errors != 1 || p[4].Scans != 2 || p[4].Threats != 1 {
		t.Errorf("current minute: got %+v, want 10 requests, 1 block, 1 warning, 1 error, 2 scans, 1 threat", p[4])
	}
	// Three hours later the old minutes have left the ring.
	now = now.Add(3 * time.Hour)
	a = decode[answer](t, do(s, "GET", "/api/v1/series?minutes=180", loop, "", ""))
	if len(a.Points) != 180 {
		t.Fatalf("got %d points, want 180", len(a.Points))
	}
	for _, pt := range a.Points {
		if pt.Requests != 0 {
			t.Errorf("got %+v, want no requests after 3h", pt)
		}
	}
	for _, q := range []string{"?minutes=0", "?minutes=181", "?minutes=x", "?step=5"} {
		if got := do(s, "GET", "/api/v1/series"+q, loop, "", "").StatusCode; got != 400 {
			t.Errorf("%s: got %d, want 400", q, got)
		}
	}
}

// TestSeriesLastMinute: last_minute counts the requests that finished in
// the last 60 seconds, across a calendar minute's boundary: a burst is
// counted at once (the last full calendar minute still reads 0), a request
// 59 s old still counts, one 60 s old no longer does.
func TestSeriesLastMinute(t *testing.T) {
	now := time.Date(2025, 3, 1, 12, 30, 20, 0, time.UTC)
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	s, err := New((&fakeParts{}).config(clock))
	if err != nil {
		t.Fatal(err)
	}
	type answer struct {
		Points     []Point `json:"points"`
		LastMinute Point   `json:"last_minute"`
	}
	get := func() answer { return decode[answer](t, do(s, "GET", "/api/v1/series?minutes=2", loop, "", "")) }

	at := clock()
	s.Observe(proxy.Event{Time: at.Add(-60 * time.Second), Action: "block"}) // 12:29:20: out of the window
	s.Observe(proxy.Event{Time: at.Add(-59 * time.Second), Action: "block"}) // 12:29:21: in it
	for i := range 61 {
		e := proxy.Event{Time: at.Add(-time.Second), Duration: time.Second, Action: "allow"} // finished now
		if i%10 == 0 {
			e.Action = "block"
		}
		if i%20 == 0 {
			e.Scan = &proxy.ScanEvent{Result: "clean"}
		}
		s.Observe(e)
	}
	a := get()
	if w := a.LastMinute; w.Requests != 62 || w.Blocks != 8 || w.Scans != 4 || w.Time != at.Unix()-59 {
		t.Errorf("last minute: got %+v, want 62 requests, 8 blocks, 4 scans from %d", w, at.Unix()-59)
	}
	if p := a.Points; p[1].Requests != 61 || p[0].Requests != 2 {
		t.Errorf("points: got %+v, want 2 in 12:29 and 61 in 12:30", p)
	}
	advance(59 * time.Second) // 12:31:19: the burst (12:30:20) is 59 s old
	if w := get().LastMinute; w.Requests != 61 || w.Blocks != 7 {
		t.Errorf("59 s later: got %+v, want the burst's 61 requests, 7 blocks", w)
	}
	advance(time.Second) // 60 s old: gone
	if w := get().LastMinute; w.Requests != 0 || w.Blocks != 0 || w.Scans != 0 {
		t.Errorf("60 s later: got %+v, want nothing", w)
	}
	// A slot reused 60 s later counts only its new second.
	s.Observe(proxy.Event{Action: "warn"})
	if w := get().LastMinute; w.Requests != 1 || w.Warns != 1 {
		t.Errorf("after reuse: got %+v, want 1 warning", w)
	}
}

func TestConsoleAssets(t *testing.T) {
	s, _ := newTestServer(t, nil)
	for path, ctype := range map[string]string{"/": "text/html", "/console.js": "text/javascript", "/console.css": "text/css"} {
		resp := do(s, "GET", path, loop, "", "")
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), ctype) || len(b) < 500 {
			t.Errorf("%s: got %d %s %d bytes, want 200 %s", path, resp.StatusCode, resp.Header.Get("Content-Type"), len(b), ctype)
		}
		if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") {
			t.Errorf("%s: CSP %q, want default-src 'none'", path, csp)
		}
		if strings.Contains(string(b), "http://") || strings.Contains(string(b), "https://") {
			if path != "/console.js" || strings.Count(string(b), "http://www.w3.org/2000/svg") != strings.Count(string(b), "http") {
				t.Errorf("%s: refers to an external resource", path)
			}
		}
	}
}
