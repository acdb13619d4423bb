package admin

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/picket-proxy/picket/certs"
	"github.com/picket-proxy/picket/proxy"
	"github.com/picket-proxy/picket/reputation"
	"github.com/picket-proxy/picket/scanner"
)

const testToken = "0123456789abcdef0123456789abcdef"

// fakeParts are the live parts behind a test server, as small structs with
// function fields' state.
type fakeParts struct {
	mu            sync.Mutex
	participation Participation
	reloads       int
	reloadErr     error
	flushes       int
	ready         error
}

func (f *fakeParts) config(now func() time.Time) Config {
	return Config{
		Token: testToken, Version: "v-test", Mode: "kpsn (embedded database)",
		Fingerprint: "AB:CD:EF", Recent: 100, History: 3 * time.Hour, Now: now,
		Log: zerolog.Nop(),
		Sources: Sources{
			Reputation: func() reputation.Stats {
				return reputation.Stats{Lookups: 10, CacheHits: 6, CacheMisses: 4, Requests: 4, Failures: 1, CachedURLs: 6, CachedPrefix: 3}
			},
			Certs: func() certs.Stats { return certs.Stats{Mints: 2, Hits: 8, Misses: 2, Size: 2} },
			Scanner: func() scanner.Stats {
				return scanner.Stats{Scans: 3, Malicious: 1, Bytes: 4096, Engines: testEngines()}
			},
			OpenConns: func() int { return 7 },
			HTTP2Errors: func() map[string]int64 {
				return map[string]int64{"rapid_reset": 1, "conn_ENHANCE_YOUR_CALM_too_many_early_resets": 2, "bad_path_method": 3, "headers_body": 1}
			},
			ProxyProtocol: func() map[string]int64 { return map[string]int64{"missing": 3, "invalid": 1} },
			AutoBypassed:  func() []string { return []string{"pinned.example"} },
			Feeds:         func() []Feed { return testFeeds(now()) },
		},
		Listeners: func() []Listener { return []Listener{{"proxy", "127.0.0.1:3128"}, {"admin", "127.0.0.1:9090"}} },
		Databases: func() []Database { return []Database{{Name: "feeds", Version: 4, Entries: 1200}} },
		Ready: func() error {
			f.mu.Lock()
			defer f.mu.Unlock()
			return f.ready
		},
		Reload: func(context.Context) error {
			f.mu.Lock()
			defer f.mu.Unlock()
			f.reloads++
			return f.reloadErr
		},
		Participation: func() (Participation, error) {
			f.mu.Lock()
			defer f.mu.Unlock()
			return f.participation, nil
		},
		SetParticipation: func(_ context.Context, p Participation, who string) error {
			if !strings.HasPrefix(who, "admin API from ") {
				return fmt.Errorf("who: got %q, want the admin API and the client", who)
			}
			f.mu.Lock()
			defer f.mu.Unlock()
			f.participation = p
			return nil
		},
		FlushCache: func() error {
			f.mu.Lock()
			defer f.mu.Unlock()
			f.flushes++
			return nil
		},
	}
}

// testFeeds are a fresh local file, a fresh download and a download that
// keeps failing but is not stale yet.
func testFeeds(now time.Time) []Feed {
	age := func(d time.Duration) *int64 { s := int64(d / time.Second); return &s }
	return []Feed{
		{Name: "phishing.txt", Format: "urls", Path: "phishing.txt", Entries: 2, LastSuccess: now.Add(-48 * time.Hour), AgeSeconds: age(48 * time.Hour)},
		{Name: "urlhaus", Format: "urlhaus-csv", URL: "https://urlhaus.example/csv/", Path: "cache/urlhaus.feed", Entries: 12345, BadLines: 3,
			LastSuccess: now.Add(-10 * time.Minute), NextAttempt: now.Add(50 * time.Minute), AgeSeconds: age(10 * time.Minute), StaleAfterSeconds: 3 * 3600},
		{Name: "drop", Format: "spamhaus-drop", URL: "https://drop.example/drop_v4.json", Path: "cache/drop.feed", Entries: 1400,
			LastSuccess: now.Add(-2 * time.Hour), AgeSeconds: age(2 * time.Hour), StaleAfterSeconds: 3 * 86400, Failures: 4, Errors: 9,
			LastError: "feed server answered with an error: 503 Service Unavailable", NextAttempt: now.Add(8 * time.Minute)},
	}
}

func newTestServer(t testing.TB, edit func(*Config)) (*Server, *fakeParts) {
	t.Helper()
	parts := &fakeParts{participation: Participation{Samples: "off"}}
	cfg := parts.config(time.Now)
	if edit != nil {
		edit(&cfg)
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s, parts
}

// serve runs s on a loopback port until the test ends and returns its base URL.
func serve(t testing.TB, s *Server) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = s.Shutdown(ctx)
		if err := <-done; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("Serve: got %v, want http.ErrServerClosed", err)
		}
	})
	return "http://" + ln.Addr().String()
}

// workload is a scripted mix of events; its totals are known.
func workload(base time.Time) []proxy.Event {
	client := netip.MustParseAddr("10.1.2.3")
	ev := func(method, action, verdict, source string) proxy.Event {
		return proxy.Event{Time: base, Duration: 20 * time.Millisecond, Client: client, Method: method,
			URL: "http://site.example/x", Host: "site.example", Status: 200, BytesIn: 10, BytesOut: 1000,
			Action: action, Verdict: verdict, Source: source}
	}
	var out []proxy.Event
	for range 5 {
		out = append(out, ev("GET", "allow", "clean", "server"))
	}
	for range 2 {
		out = append(out, ev("POST", "allow", "unknown", "server"))
	}
	for i := range 3 {
		e := ev("GET", "block", "phishing", "database")
		e.Status, e.Rule, e.Incident, e.Host = 403, "reputation", "INC-"+string(rune('A'+i)), "bad"+string(rune('a'+i))+".example"
		e.URL = "http://" + e.Host + "/login"
		out = append(out, e)
	}
	w := ev("GET", "warn", "unwanted", "local")
	w.Rule = "warn-ads"
	out = append(out, w)
	t := ev("CONNECT", "tunnel", "", "")
	t.Tunnel, t.Duration = true, 3*time.Second
	out = append(out, t)
	i := ev("CONNECT", "intercept", "clean", "server")
	i.Tunnel = true
	out = append(out, i)
	e := ev("GET", "error", "", "")
	e.ErrKind, e.Status = "dns", 502
	out = append(out, e)
	o := ev("PROPFIND", "allow", "", "") // an odd method counts as "other"
	out = append(out, o)
	s := ev("GET", "block", "", "")
	s.Rule, s.Stage, s.Incident = "", "scan", "INC-SCAN"
	s.Scan = &proxy.ScanEvent{Type: "pe", Result: "malicious", Threat: "EICAR-Test-File", Executable: true}
	out = append(out, s)
	c := ev("GET", "allow", "", "")
	c.Scan = &proxy.ScanEvent{Type: "zip", Result: "clean"}
	out = append(out, c)
	return out
}

// do sends one request to the handler directly, from remote.
func do(s *Server, method, target, remote, token string, body string, hdr ...string) *http.Response {
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, _ := http.NewRequest(method, "http://127.0.0.1:9090"+target, rd)
	if req.Body == nil {
		req.Body = http.NoBody // as the server gives it
	}
	req.RemoteAddr = remote
	req.RequestURI = target
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		if hdr[i] == "Host" {
			req.Host = hdr[i+1]
			continue
		}
		req.Header.Set(hdr[i], hdr[i+1])
	}
	rec := httptest.NewRecorder()
	s.ServeHTTP(rec, req)
	return rec.Result()
}

// testEngines are a healthy clamd and an ICAP service that is down.
func testEngines() []scanner.EngineStats {
	lat := scanner.Histogram{Counts: make([]uint64, len(scanner.LatencyBounds)), Count: 3, Sum: 0.3}
	lat.Counts[6] = 3 // 0.1 s
	return []scanner.EngineStats{
		{Name: "clamd", Scans: 3, Detections: 1, CacheHits: 2, Latency: lat, Health: scanner.EngineHealth{Healthy: true, Kind: "clamd",
			Address: "unix:/run/clamav/clamd.ctl", Version: "ClamAV 1.4.6", Signatures: "27000",
			SignatureDate: time.Date(2026, 12, 1, 8, 0, 0, 0, time.UTC)}},
		{Name: "icap", Errors: 2, Latency: scanner.Histogram{Counts: make([]uint64, len(scanner.LatencyBounds))},
			Health: scanner.EngineHealth{Kind: "icap", Address: "icap://127.0.0.1:1344/avscan",
				Error: "icap: dial tcp 127.0.0.1:1344: connect: connection refused"}},
	}
}
