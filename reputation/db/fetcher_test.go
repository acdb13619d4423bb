package db

import (
	"archive/zip"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/picket-proxy/picket/internal/testutil"
	"github.com/picket-proxy/picket/reputation"
)

// newFakeClock is the tests' clock, stopped at a fixed time.
func newFakeClock() *testutil.Clock {
	return testutil.NewClock(time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC))
}

// feedServer is a feed publisher on loopback: it serves body with an ETag
// and answers If-None-Match with 304, or misbehaves as told.
type feedServer struct {
	*httptest.Server
	mu       sync.Mutex
	body     []byte
	header   http.Header // extra response headers
	mode     string      // "", "500", "hang", "stall", "truncate", "noetag"
	requests []*http.Request
	codes    []int
}

func newFeedServer(t *testing.T, body string) *feedServer {
	fs := &feedServer{body: []byte(body), header: http.Header{}}
	fs.Server = httptest.NewServer(http.HandlerFunc(fs.serve))
	t.Cleanup(fs.Close)
	return fs
}

func (fs *feedServer) set(mode, body string) {
	fs.mu.Lock()
	fs.mode = mode
	if body != "" {
		fs.body = []byte(body)
	}
	fs.mu.Unlock()
}

func (fs *feedServer) serve(w http.ResponseWriter, r *http.Request) {
	fs.mu.Lock()
	mode, body := fs.mode, fs.body
	fs.requests = append(fs.requests, r)
	for k, v := range fs.header {
		w.Header()[k] = v
	}
	code := http.StatusOK
	etag := fmt.Sprintf(`"%x"`, sha256.Sum256(body))
	switch {
	case mode == "500":
		code = http.StatusInternalServerError
	case mode != "noetag" && r.Header.Get("If-None-Match") == etag:
		code = http.StatusNotModified
	}
	fs.codes = append(fs.codes, code)
	fs.mu.Unlock()
	if mode != "noetag" {
		w.Header().Set("ETag", etag)
	}
	switch {
	case mode == "hang":
		<-r.Context().Done()
		return
	case code != http.StatusOK:
		w.WriteHeader(code)
		return
	case mode == "stall":
		w.Header().Set("Content-Length", fmt.Sprint(len(body)))
		w.Write(body[:len(body)/2])
		w.(http.Flusher).Flush()
		<-r.Context().Done()
		return
	case mode == "truncate":
		w.Header().Set("Content-Length", fmt.Sprint(len(body)+100))
		w.Write(body)
		return // the server closes the connection: 100 bytes short
	}
	w.Write(body)
}

// count returns how many requests got each status.
func (fs *feedServer) count(code int) int {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	n := 0
	for _, c := range fs.codes {
		if c == code {
			n++
		}
	}
	return n
}

func (fs *feedServer) last() *http.Request {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	return fs.requests[len(fs.requests)-1]
}

// openManual opens a Store on dir whose downloads run only when asked,
// on clk, with no randomness.
func openManual(t *testing.T, dir string, clk *testutil.Clock) *Store {
	t.Helper()
	s, err := Open(Config{Dir: dir, Poll: -1, Fetch: FetchConfig{Manual: true, Now: clk.Now, Jitter: func() float64 { return 0 }}}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func sourceStatus(t *testing.T, s *Store, name string) SourceStatus {
	t.Helper()
	for _, st := range s.Sources() {
		if st.Name == name {
			return st
		}
	}
	t.Fatalf("no source %s in %+v", name, s.Sources())
	return SourceStatus{}
}

func has(s *Store, t *testing.T, u string) bool {
	_, ok := s.DB().Get(urlHash(t, u))
	return ok
}

// TestFetchLifecycle follows one URL source: first download, a refresh
// answered 304 (no reload), a new entry published, every kind of failure
// (each keeps the last good copy and shows in the status), and a restart
// with the feed server down.
func TestFetchLifecycle(t *testing.T) {
	srv := newFeedServer(t, "one.test\ntwo.test\nthree.test\nfour.test\n")
	dir := writeFeeds(t, map[string]string{
		"feeds.toml": fmt.Sprintf(`
[[source]]
name = "blocklist"
url = %q
format = "urls"
verdict = "phishing"
refresh = "1h"
stale_after = "6h"
timeout = "300ms"
max_size = "1KiB"
[[source]]
path = "local.txt"
format = "urls"
`, srv.URL+"/list.txt"),
		"local.txt": "local.test\n",
	})
	clk := newFakeClock()
	s := openManual(t, dir, clk)

	// Before the first download: the local source only; the download is
	// missing and stale.
	st := sourceStatus(t, s, "blocklist")
	if !st.Missing || !st.Stale || st.Entries != 0 || !has(s, t, "local.test") {
		t.Fatalf("before the first download: %+v", st)
	}
	if l := sourceStatus(t, s, "local.txt"); l.Stale || l.Entries != 1 || l.URL != "" {
		t.Errorf("local source: %+v", l)
	}

	// 1. First download.
	rs, next, err := s.FetchDue(context.Background())
	if err != nil || len(rs) != 1 || rs[0].Outcome != Updated || rs[0].Entries != 4 {
		t.Fatalf("first download: %+v %v", rs, err)
	}
	if want := clk.Now().Add(time.Hour); !next.Equal(want) {
		t.Errorf("next download at %v, want %v (refresh, no jitter)", next, want)
	}
	if v, ok := s.DB().Get(urlHash(t, "two.test")); !ok || v.Kind != reputation.KindPhishing {
		t.Errorf("two.test: got %v %v, want phishing", v, ok)
	}
	st = sourceStatus(t, s, "blocklist")
	if st.Missing || st.Stale || st.Entries != 4 || !st.LastSuccess.Equal(clk.Now()) || st.LastError != "" || st.Path != "cache/blocklist.feed" {
		t.Errorf("after the first download: %+v", st)
	}

	// 2. Not due yet: nothing is asked.
	clk.Add(59 * time.Minute)
	if rs, _, _ := s.FetchDue(context.Background()); len(rs) != 0 || srv.count(200) != 1 {
		t.Errorf("before the refresh: %+v, %d downloads", rs, srv.count(200))
	}

	// 3. Due: a conditional request, 304, no reload.
	clk.Add(time.Minute)
	v1 := s.DB().Version()
	rs, _, _ = s.FetchDue(context.Background())
	if len(rs) != 1 || rs[0].Outcome != Unchanged || srv.count(304) != 1 || srv.last().Header.Get("If-None-Match") == "" {
		t.Fatalf("refresh: %+v, %d 304s", rs, srv.count(304))
	}
	if s.DB().Version() != v1 {
		t.Errorf("a 304 reloaded the database (version %d → %d)", v1, s.DB().Version())
	}
	if st := sourceStatus(t, s, "blocklist"); !st.LastSuccess.Equal(clk.Now()) || st.LastChange.Equal(clk.Now()) {
		t.Errorf("after 304: last success %v, last change %v; want now and earlier", st.LastSuccess, st.LastChange)
	}

	// 4. A new entry published is enforced after the next refresh.
	srv.set("", "one.test\ntwo.test\nthree.test\nfour.test\nfive.test\n")
	clk.Add(time.Hour)
	if rs, _, _ := s.FetchDue(context.Background()); len(rs) != 1 || rs[0].Outcome != Updated || !has(s, t, "five.test") {
		t.Fatalf("new entry: %+v, five.test listed %v", rs, has(s, t, "five.test"))
	}
	good := s.DB().Version()

	// 5. Failures: each keeps the last good copy, counts, and shows.
	failures := []struct {
		mode, body string
		want       error
		wantText   string
	}{
		{"500", "", ErrHTTPStatus, "500 Internal Server Error"},
		{"hang", "", context.DeadlineExceeded, "timed out"},
		{"stall", "one.test\ntwo.test\nthree.test\nfour.test\nfive.test\nstall.test\n", context.DeadlineExceeded, "timed out"},
		{"truncate", "one.test\ntwo.test\nthree.test\nfour.test\nfive.test\ncut.test\n", ErrTruncated, "truncated"},
		{"", strings.Repeat("big.test\n", 200), ErrOversized, "larger than max_size"},
		{"", "<!DOCTYPE html>\n<html>\n<head><title>503 Service Unavailable</title></head>\n<body>\n<h1>Service Unavailable</h1>\n</body>\n</html>\n", ErrUnusable, "mostly unusable"},
		{"", "one.test\n", ErrTooFew, "1 entries, the last good copy has 5"},
	}
	for i, f := range failures {
		srv.set(f.mode, f.body)
		clk.Add(2 * time.Hour) // past any back-off
		rs, _, _ := s.FetchDue(context.Background())
		if len(rs) != 1 || rs[0].Outcome != Failed || !errors.Is(rs[0].Err, f.want) {
			t.Errorf("%d (%s %.20q): got %+v, want a failure with %v", i, f.mode, f.body, rs, f.want)
			continue
		}
		if s.DB().Version() != good || !has(s, t, "five.test") || !has(s, t, "three.test") {
			t.Errorf("%d: the last good copy was not kept", i)
		}
		st := sourceStatus(t, s, "blocklist")
		if !strings.Contains(st.LastError, f.wantText) || st.Failures != i+1 || st.Errors != uint64(i+1) ||
			st.Entries != 5 || !st.LastErrorAt.Equal(clk.Now()) || !st.LastAttempt.Equal(clk.Now()) {
			t.Errorf("%d: status %+v, want error %q, %d failures", i, st, f.wantText, i+1)
		}
		if strings.Contains(st.LastError, srv.URL) {
			t.Errorf("%d: the error shows the URL: %q", i, st.LastError)
		}
	}
	// Many hours without a success: stale.
	if st := sourceStatus(t, s, "blocklist"); !st.Stale || st.Age != 14*time.Hour {
		t.Errorf("after 14h of failures: stale %v, age %v", st.Stale, st.Age)
	}
	// Recovery clears the failures.
	srv.set("", "one.test\ntwo.test\nthree.test\nfour.test\nfive.test\nsix.test\n")
	clk.Add(2 * time.Hour)
	if rs, _, _ := s.FetchDue(context.Background()); len(rs) != 1 || rs[0].Outcome != Updated {
		t.Fatalf("recovery: %+v", rs)
	}
	if st := sourceStatus(t, s, "blocklist"); st.Failures != 0 || st.Stale || st.Errors != uint64(len(failures)) || !has(s, t, "six.test") {
		t.Errorf("after recovery: %+v", st)
	}

	// 6. Restart with the feed server down: the last good copy, its age.
	s.Close()
	srv.Close()
	clk.Add(30 * time.Minute)
	s2 := openManual(t, dir, clk)
	if !has(s2, t, "six.test") {
		t.Fatal("restart without the feed server: the last good copy was not loaded")
	}
	st = sourceStatus(t, s2, "blocklist")
	if st.Missing || st.Entries != 6 || st.Age != 30*time.Minute || st.Stale {
		t.Errorf("after restart: %+v", st)
	}
	clk.Add(time.Hour)
	rs, _, _ = s2.FetchDue(context.Background())
	if len(rs) != 1 || rs[0].Outcome != Failed || !has(s2, t, "six.test") {
		t.Errorf("download with the server down: %+v", rs)
	}
	if st := sourceStatus(t, s2, "blocklist"); st.Failures != 1 || st.Errors != 1 || !strings.Contains(st.LastError, "refused") {
		t.Errorf("server down: %+v", st)
	}
}

func TestFetchBackoff(t *testing.T) {
	srv := newFeedServer(t, "a.test\n")
	srv.set("500", "")
	dir := writeFeeds(t, map[string]string{"feeds.toml": fmt.Sprintf("[[source]]\nname = \"x\"\nurl = %q\nformat = \"urls\"\nrefresh = \"6h\"\n", srv.URL)})
	clk := newFakeClock()
	jitter := 0.0
	s, err := Open(Config{Dir: dir, Poll: -1, Fetch: FetchConfig{Manual: true, Now: clk.Now, Jitter: func() float64 { return jitter }}}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	// Half of each wait is fixed, half random: with jitter 0 the waits are
	// half of 1m, 2m, 4m, ... up to the 1h cap.
	for i, want := range []time.Duration{30 * time.Second, time.Minute, 2 * time.Minute, 4 * time.Minute, 8 * time.Minute,
		16 * time.Minute, 30 * time.Minute, 30 * time.Minute} {
		rs, next, _ := s.FetchDue(context.Background())
		if len(rs) != 1 || rs[0].Outcome != Failed {
			t.Fatalf("attempt %d: %+v", i, rs)
		}
		if got := next.Sub(clk.Now()); got != want {
			t.Errorf("after failure %d: next in %v, want %v", i+1, got, want)
		}
		// Not due a second before.
		clk.Add(want - time.Second)
		if rs, _, _ := s.FetchDue(context.Background()); len(rs) != 0 {
			t.Errorf("after failure %d: tried again before the back-off ended", i+1)
		}
		clk.Add(time.Second)
	}
	// The random half: jitter just below 1 nearly doubles the wait.
	jitter = 0.999
	_, next, _ := s.FetchDue(context.Background())
	if got := next.Sub(clk.Now()); got < 59*time.Minute || got > time.Hour {
		t.Errorf("with full jitter: next in %v, want just under 1h", got)
	}
	// A refresh shorter than a minute backs off no longer than it.
	dir2 := writeFeeds(t, map[string]string{"feeds.toml": fmt.Sprintf("[[source]]\nname = \"x\"\nurl = %q\nformat = \"urls\"\nrefresh = \"10s\"\n", srv.URL)})
	s2 := openManual(t, dir2, clk)
	for i := 0; i < 4; i++ {
		_, next, _ := s2.FetchDue(context.Background())
		if got := next.Sub(clk.Now()); got != 5*time.Second {
			t.Errorf("10s refresh, failure %d: next in %v, want 5s", i+1, got)
		}
		clk.Add(5 * time.Second)
	}
}

func gzipped(t *testing.T, s string) []byte {
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	io.WriteString(zw, s)
	zw.Close()
	return b.Bytes()
}

func zipped(t *testing.T, files ...string) []byte {
	var b bytes.Buffer
	zw := zip.NewWriter(&b)
	for i := 0; i+1 < len(files); i += 2 {
		w, err := zw.Create(files[i])
		if err != nil {
			t.Fatal(err)
		}
		io.WriteString(w, files[i+1])
	}
	zw.Close()
	return b.Bytes()
}

func TestFetchCompression(t *testing.T) {
	hashes := "275a021bbfb6489e54d471899f7db9d1663fc695ec2fe2a2c4538aabf651fd0f\n44d88612fea8a8f36de82e1278abb02f\n"
	bomb := gzipped(t, strings.Repeat("0", 4<<20)) // 4 MiB of zeros in a few KiB
	tests := []struct {
		name     string
		body     []byte
		encoding string // Content-Encoding
		keys     string
		entries  int
		err      error
	}{
		{"plain", []byte(hashes), "", "", 2, nil},
		{"gzip file", gzipped(t, hashes), "", "", 2, nil},
		{"gzip transfer", gzipped(t, hashes), "gzip", "", 2, nil},
		{"zip one member", zipped(t, "full_sha256.txt", hashes), "", "", 2, nil},
		{"zip named member", zipped(t, "readme.txt", "hello", "data/sha256.txt", hashes), "", "member = \"sha256.txt\"\n", 2, nil},
		{"zip two members", zipped(t, "a.txt", hashes, "b.txt", hashes), "", "", 0, ErrCompression},
		{"zip forced on plain", []byte(hashes), "", "compression = \"zip\"\n", 0, ErrCompression},
		{"gzip bomb", bomb, "", "", 0, ErrOversized},
		{"gzip bomb in transfer", bomb, "gzip", "", 0, ErrOversized},
		{"truncated gzip", gzipped(t, hashes)[:20], "", "", 0, ErrTruncated},
		{"compression none keeps gzip bytes", gzipped(t, hashes), "", "compression = \"none\"\n", 0, ErrUnusable},
		{"unknown encoding", []byte(hashes), "br", "", 0, ErrCompression},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if tt.encoding != "" {
					w.Header().Set("Content-Encoding", tt.encoding)
				}
				w.Write(tt.body)
			}))
			defer srv.Close()
			dir := writeFeeds(t, map[string]string{"feeds.toml": fmt.Sprintf("[[source]]\nname = \"h\"\nurl = %q\nformat = \"hashes\"\nmax_size = \"1MiB\"\n%s", srv.URL, tt.keys)})
			s := openManual(t, dir, newFakeClock())
			r, err := s.Fetch(context.Background(), "h", false)
			if err != nil {
				t.Fatal(err)
			}
			if tt.err != nil {
				if r.Outcome != Failed || !errors.Is(r.Err, tt.err) {
					t.Errorf("got %v %v, want a failure with %v", r.Outcome, r.Err, tt.err)
				}
				return
			}
			if r.Outcome != Updated || r.Entries != tt.entries || r.Err != nil {
				t.Errorf("got %+v, want %d entries", r, tt.entries)
			}
			if _, ok := s.DB().Get(fileHash(t, "44d88612fea8a8f36de82e1278abb02f")); !ok {
				t.Error("EICAR MD5 not in the database")
			}
			left, _ := filepath.Glob(filepath.Join(dir, "cache", tmpPrefix+"*"))
			if len(left) != 0 {
				t.Errorf("temporary files left: %v", left)
			}
		})
	}
}

// TestFetchHeaders: header values from the environment and a file are
// sent, never to another host after a redirect; no conditional request
// without a copy; -force sends none either; a server without validators
// that sends the same bytes costs no reload.
func TestFetchHeaders(t *testing.T) {
	t.Setenv("PICKET_TEST_AUTH_KEY", "s3cret")
	other := newFeedServer(t, "moved.test\n")
	var got http.Header
	var gotQuery string
	var mu sync.Mutex
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		got, gotQuery = r.Header.Clone(), r.URL.RawQuery
		mu.Unlock()
		if r.URL.Path == "/moved" {
			http.Redirect(w, r, other.URL+"/list", http.StatusFound)
			return
		}
		io.WriteString(w, "a.test\n")
	}))
	defer origin.Close()
	dir := writeFeeds(t, map[string]string{
		"feeds.toml": fmt.Sprintf(`
[[source]]
name = "direct"
url = %q
format = "urls"
headers = { "Auth-Key" = "env:PICKET_TEST_AUTH_KEY", "X-Team" = "file:team.txt" }
[[source]]
name = "moved"
url = %q
format = "urls"
headers = { "Auth-Key" = "env:PICKET_TEST_AUTH_KEY" }
[[source]]
name = "keyed"
url = %q
format = "urls"
`, origin.URL+"/list", origin.URL+"/moved", origin.URL+"/export.txt?auth-key={env:PICKET_TEST_AUTH_KEY}"),
		"team.txt": "blue\n",
	})
	s, err := Open(Config{Dir: dir, Poll: -1, Fetch: FetchConfig{Manual: true, UserAgent: "Picket/test"}}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if r, _ := s.Fetch(context.Background(), "direct", false); r.Outcome != Updated {
		t.Fatalf("direct: %+v", r)
	}
	mu.Lock()
	if got.Get("Auth-Key") != "s3cret" || got.Get("X-Team") != "blue" || got.Get("User-Agent") != "Picket/test" || got.Get("If-None-Match") != "" {
		t.Errorf("headers sent: %v", got)
	}
	mu.Unlock()
	// No validators from the origin: the same bytes again are unchanged,
	// without a reload.
	v := s.DB().Version()
	if r, _ := s.Fetch(context.Background(), "direct", false); r.Outcome != Unchanged || s.DB().Version() != v {
		t.Errorf("same content: %+v, version %d → %d", r, v, s.DB().Version())
	}
	if r, _ := s.Fetch(context.Background(), "moved", false); r.Outcome != Updated || !has(s, t, "moved.test") {
		t.Fatalf("moved: %+v", r)
	}
	if r, _ := s.Fetch(context.Background(), "keyed", false); r.Outcome != Updated {
		t.Fatalf("keyed: %+v", r)
	}
	mu.Lock()
	if gotQuery != "auth-key=s3cret" {
		t.Errorf("key in the URL: the server got query %q", gotQuery)
	}
	mu.Unlock()
	for _, st := range s.Sources() {
		if strings.Contains(fmt.Sprint(st), "s3cret") {
			t.Errorf("the status shows the key: %+v", st)
		}
	}
	if k := other.last().Header.Get("Auth-Key"); k != "" {
		t.Errorf("the key followed a redirect to another host: %q", k)
	}
	// Force: no conditional headers although a copy with an ETag exists.
	if r, _ := s.Fetch(context.Background(), "moved", true); r.Err != nil || other.last().Header.Get("If-None-Match") != "" {
		t.Errorf("forced download: %+v, If-None-Match %q", r, other.last().Header.Get("If-None-Match"))
	}
	if _, err := s.Fetch(context.Background(), "nope", false); !errors.Is(err, ErrUnknownSource) {
		t.Errorf("unknown source: %v", err)
	}
	// The cache holds the copies and their state, nothing of the key.
	b, _ := os.ReadFile(filepath.Join(dir, "cache", "keyed.state.json"))
	if strings.Contains(string(b), "s3cret") {
		t.Errorf("the state file holds the key: %s", b)
	}
	b, _ = os.ReadFile(filepath.Join(dir, "cache", "direct.state.json"))
	if !strings.Contains(string(b), `"entries": 1`) || strings.Contains(string(b), "s3cret") || strings.Contains(string(b), origin.URL) {
		t.Errorf("state file: %s", b)
	}
}

// TestFetchLoop: in the background, a Store downloads a new source at
// once and reloads; a lookup never waits for it.
func TestFetchLoop(t *testing.T) {
	srv := newFeedServer(t, "looped.test\n")
	dir := writeFeeds(t, map[string]string{"feeds.toml": fmt.Sprintf("[[source]]\nname = \"x\"\nurl = %q\nformat = \"urls\"\n", srv.URL)})
	s, err := Open(Config{Dir: dir, Poll: -1}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	deadline := time.Now().Add(10 * time.Second)
	for !has(s, t, "looped.test") {
		if time.Now().After(deadline) {
			t.Fatalf("the loop did not download the source: %+v", s.Sources())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if n := srv.count(200); n != 1 {
		t.Errorf("%d downloads, want 1", n)
	}
}

// TestFetchSharedCache: two Stores on one feed directory (a configuration
// reload's old and new one, or the daemon and "picket feeds update") share
// the copies and the schedule: the second does not download again what the
// first just did, even when it decided before the first took the lock.
func TestFetchSharedCache(t *testing.T) {
	srv := newFeedServer(t, "shared.test\n")
	dir := writeFeeds(t, map[string]string{"feeds.toml": fmt.Sprintf("[[source]]\nname = \"x\"\nurl = %q\nformat = \"urls\"\n", srv.URL)})
	clk := newFakeClock()
	s1, s2 := openManual(t, dir, clk), openManual(t, dir, clk)
	if rs, _, _ := s1.FetchDue(context.Background()); len(rs) != 1 || rs[0].Outcome != Updated {
		t.Fatalf("first store: %+v", rs)
	}
	if rs, _, _ := s2.FetchDue(context.Background()); len(rs) != 0 {
		t.Errorf("second store downloaded again: %+v", rs)
	}
	// A scheduled attempt that was decided before the first one ran finds,
	// under the lock, that it is not due any more.
	m, _ := ReadManifest(dir)
	r, tried := s2.fetch.f.attempt(context.Background(), m, &m.Sources[0], false, true)
	if tried || !r.Next.Equal(clk.Now().Add(time.Hour)) || len(srv.requests) != 1 {
		t.Errorf("late scheduled attempt: tried %v, %+v, %d requests", tried, r, len(srv.requests))
	}
	if !has(s2, t, "shared.test") {
		// The second store loads the copy at its next check.
		if _, err := s2.Check(); err != nil || !has(s2, t, "shared.test") {
			t.Errorf("the second store does not load the shared copy: %v", err)
		}
	}
}

// TestFetchBrokenCopy: a cached copy that cannot be read stops neither the
// load nor the other sources; the status says why; a copy without its
// state file is dated by its modification time.
func TestFetchBrokenCopy(t *testing.T) {
	dir := writeFeeds(t, map[string]string{
		"feeds.toml": "[[source]]\nname = \"broken\"\nurl = \"http://127.0.0.1:1/\"\nformat = \"urls\"\n" +
			"[[source]]\nname = \"orphan\"\nurl = \"http://127.0.0.1:1/\"\nformat = \"urls\"\n" +
			"[[source]]\npath = \"l.txt\"\nformat = \"urls\"\n",
		"l.txt": "local.test\n",
	})
	os.MkdirAll(filepath.Join(dir, "cache", "broken.feed"), 0o755) // a directory where the copy should be
	os.WriteFile(filepath.Join(dir, "cache", "orphan.feed"), []byte("orphan.test\n"), 0o644)
	old := time.Now().Add(-2 * time.Hour)
	os.Chtimes(filepath.Join(dir, "cache", "orphan.feed"), old, old)
	s, err := Open(Config{Dir: dir, Poll: -1, Fetch: FetchConfig{Manual: true}}, zerolog.Nop())
	if err != nil {
		t.Fatalf("a broken copy stopped the load: %v", err)
	}
	defer s.Close()
	if !has(s, t, "local.test") || !has(s, t, "orphan.test") {
		t.Error("the other sources were not loaded")
	}
	if st := sourceStatus(t, s, "broken"); !strings.Contains(st.LastError, "the copy cannot be read") {
		t.Errorf("broken copy: %+v", st)
	}
	if st := sourceStatus(t, s, "orphan"); st.Missing || st.Entries != 1 || st.Age < time.Hour || st.Stale {
		t.Errorf("copy without a state file: %+v", st)
	}
}

// TestFetchTooFewWithoutState: the copy on disk is the last good one even
// when its state file is gone (deleted, corrupt, or the copy put there by
// hand): a download that lost most entries is refused against the copy's
// own count, and the copy stays. A source whose URL the administrator
// changed is a new feed: its first download is not compared.
func TestFetchTooFewWithoutState(t *testing.T) {
	srv := newFeedServer(t, "one.test\ntwo.test\nthree.test\nfour.test\nfive.test\n")
	feeds := func(path string) string {
		return fmt.Sprintf("[[source]]\nname = \"blocklist\"\nurl = %q\nformat = \"urls\"\nrefresh = \"1h\"\n", srv.URL+path)
	}
	dir := writeFeeds(t, map[string]string{"feeds.toml": feeds("/list.txt")})
	clk := newFakeClock()
	s := openManual(t, dir, clk)
	if r, err := s.Fetch(context.Background(), "blocklist", true); err != nil || r.Outcome != Updated || r.Entries != 5 {
		t.Fatalf("first download: %+v %v", r, err)
	}
	state := filepath.Join(dir, "cache", "blocklist.state.json")
	for _, lose := range []struct {
		name string
		do   func() error
	}{
		{"state deleted", func() error { return os.Remove(state) }},
		{"state corrupt", func() error { return os.WriteFile(state, []byte("{not json"), 0o644) }},
	} {
		if err := lose.do(); err != nil {
			t.Fatal(err)
		}
		srv.set("", "one.test\n")
		r, _ := s.Fetch(context.Background(), "blocklist", true)
		if r.Outcome != Failed || !errors.Is(r.Err, ErrTooFew) || !strings.Contains(r.Err.Error(), "the last good copy has 5") || r.Entries != 5 {
			t.Errorf("%s, emptied feed: %+v, want %v against 5 entries", lose.name, r, ErrTooFew)
		}
		if !has(s, t, "five.test") {
			t.Errorf("%s: the last good copy was replaced", lose.name)
		}
	}
	// Another URL: a new feed, taken whatever its size.
	if err := os.WriteFile(filepath.Join(dir, "feeds.toml"), []byte(feeds("/other.txt")), 0o644); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s = openManual(t, dir, clk)
	if r, err := s.Fetch(context.Background(), "blocklist", true); err != nil || r.Outcome != Updated || r.Entries != 1 {
		t.Fatalf("first download of the new URL: %+v %v", r, err)
	}
}

// TestFetchIfModifiedSince: a server with Last-Modified only (no ETag) is
// asked with If-Modified-Since, and its 304 costs no reload.
func TestFetchIfModifiedSince(t *testing.T) {
	mod := time.Date(2025, 2, 1, 10, 0, 0, 0, time.UTC)
	var mu sync.Mutex
	var ims []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		ims = append(ims, r.Header.Get("If-Modified-Since"))
		mu.Unlock()
		http.ServeContent(w, r, "list.txt", mod, strings.NewReader("dated.test\n")) // answers 304 itself
	}))
	defer srv.Close()
	dir := writeFeeds(t, map[string]string{"feeds.toml": fmt.Sprintf("[[source]]\nname = \"x\"\nurl = %q\nformat = \"urls\"\n", srv.URL)})
	s := openManual(t, dir, newFakeClock())
	if r, _ := s.Fetch(context.Background(), "x", false); r.Outcome != Updated || !has(s, t, "dated.test") {
		t.Fatalf("first download: %+v", r)
	}
	v := s.DB().Version()
	if r, _ := s.Fetch(context.Background(), "x", false); r.Outcome != Unchanged || s.DB().Version() != v {
		t.Errorf("second download: %+v, version %d → %d", r, v, s.DB().Version())
	}
	mu.Lock()
	defer mu.Unlock()
	if len(ims) != 2 || ims[0] != "" || ims[1] != mod.Format(http.TimeFormat) {
		t.Errorf("If-Modified-Since sent: %q, want none then %q", ims, mod.Format(http.TimeFormat))
	}
}

// TestFetchHeadersNotDowngraded: a source's secret headers do not follow a
// redirect from https to http on the same host (they would cross the
// network in clear). The two servers stand at example.com's ports 443 and
// 80 through the test client's dialer.
func TestFetchHeadersNotDowngraded(t *testing.T) {
	t.Setenv("PICKET_TEST_AUTH_KEY", "s3cret")
	plain := newFeedServer(t, "moved.test\n")
	secure := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "http://example.com/list", http.StatusFound)
	}))
	defer secure.Close()
	addrs := map[string]string{"example.com:443": secure.Listener.Addr().String(), "example.com:80": plain.Listener.Addr().String()}
	tr := secure.Client().Transport.(*http.Transport).Clone()
	tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		to, ok := addrs[addr]
		if !ok {
			return nil, fmt.Errorf("test dialer: no server for %s", addr)
		}
		var d net.Dialer
		return d.DialContext(ctx, network, to)
	}
	dir := writeFeeds(t, map[string]string{"feeds.toml": `
[[source]]
name = "moved"
url = "https://example.com/moved"
format = "urls"
headers = { "Auth-Key" = "env:PICKET_TEST_AUTH_KEY" }
`})
	s, err := Open(Config{Dir: dir, Poll: -1, Fetch: FetchConfig{Manual: true, HTTPClient: &http.Client{Transport: tr}}}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if r, _ := s.Fetch(context.Background(), "moved", false); r.Outcome != Updated {
		t.Fatalf("moved: %+v", r)
	}
	if k := plain.last().Header.Get("Auth-Key"); k != "" {
		t.Errorf("the key followed a redirect from https to http: got %q, want none", k)
	}
}
