package server

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/picket-proxy/picket/internal/testutil"
	"github.com/picket-proxy/picket/reputation"
	"github.com/picket-proxy/picket/reputation/db"
)

// recorded is one request a server received, with its response.
type recorded struct {
	method, path, query string
	body                []byte
	status              int
	resp                []byte
}

// recorder wraps a handler and keeps every request it sees.
type recorder struct {
	next http.Handler
	mu   sync.Mutex
	reqs []recorded
}

type teeWriter struct {
	http.ResponseWriter
	status int
	buf    bytes.Buffer
}

func (w *teeWriter) WriteHeader(code int) { w.status = code; w.ResponseWriter.WriteHeader(code) }
func (w *teeWriter) Write(b []byte) (int, error) {
	w.buf.Write(b)
	return w.ResponseWriter.Write(b)
}

func (rc *recorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	r.Body = io.NopCloser(bytes.NewReader(body))
	tw := &teeWriter{ResponseWriter: w, status: 200}
	rc.next.ServeHTTP(tw, r)
	resp := tw.buf.Bytes()
	if tw.Header().Get("Content-Encoding") == "gzip" {
		zr, _ := gzip.NewReader(bytes.NewReader(resp))
		resp, _ = io.ReadAll(zr)
	}
	rc.mu.Lock()
	rc.reqs = append(rc.reqs, recorded{r.Method, r.URL.Path, r.URL.RawQuery, body, tw.status, resp})
	rc.mu.Unlock()
}

func (rc *recorder) all() []recorded {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]recorded(nil), rc.reqs...)
}

type testServer struct {
	srv  *Server
	http *httptest.Server
	rec  *recorder
}

func startServer(t testing.TB, cfg Config) *testServer {
	t.Helper()
	s, err := New(cfg, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	rec := &recorder{next: s.Handler()}
	hs := httptest.NewServer(rec)
	t.Cleanup(hs.Close)
	return &testServer{srv: s, http: hs, rec: rec}
}

func newClient(t testing.TB, b reputation.Backend) *reputation.Client {
	t.Helper()
	c, err := reputation.New(reputation.Config{Backend: b, Timeout: 2 * time.Second}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func remote(t testing.TB, url, token string) *reputation.Remote {
	t.Helper()
	r, err := reputation.NewRemote(reputation.RemoteConfig{Server: url, Token: token})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func hexBytes(t testing.TB, s string) []byte {
	b, err := reputation.ParseFileHash(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

type lookupCase struct {
	name string
	q    reputation.Query
	want reputation.Kind
}

func demoCases(t testing.TB) []lookupCase {
	return []lookupCase{
		{"malware URL", reputation.Query{URL: "http://malware.picket.test/"}, reputation.KindMalware},
		{"malware deep URL", reputation.Query{URL: "http://malware.picket.test/a/b/c.exe?x=1"}, reputation.KindMalware},
		{"phishing subdomain", reputation.Query{URL: "https://www.phishing.picket.test/login"}, reputation.KindPhishing},
		{"ads host", reputation.Query{URL: "http://ads.picket.test/banner.js"}, reputation.KindUnwanted},
		{"clean host", reputation.Query{URL: "http://clean.picket.test/"}, reputation.KindClean},
		{"unknown", reputation.Query{URL: "http://example.org/"}, reputation.KindUnknown},
		{"EICAR MD5", reputation.Query{MD5: hexBytes(t, "44d88612fea8a8f36de82e1278abb02f")}, reputation.KindMalware},
		{"EICAR SHA-1", reputation.Query{SHA1: hexBytes(t, "3395856ce81f2b7382dee72602f798b642f14140")}, reputation.KindMalware},
		{"EICAR SHA-256", reputation.Query{SHA256: hexBytes(t, "275a021bbfb6489e54d471899f7db9d1663fc695ec2fe2a2c4538aabf651fd0f")}, reputation.KindMalware},
	}
}

var prefixRE = regexp.MustCompile(`^[0-9a-f]{8}$`)

func TestEndToEnd(t *testing.T) {
	ctx := context.Background()
	feeds := testutil.CopyFeeds(t)
	cloud := startServer(t, Config{Role: RoleCloud, Feeds: feeds, Poll: -1, Token: "cloud-secret"})
	mirrorDir := t.TempDir()
	private := startServer(t, Config{Role: RolePrivate, Upstream: cloud.http.URL, UpstreamToken: "cloud-secret",
		Feeds: mirrorDir, Token: "kpsn-licence"})
	if err := private.srv.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	embedded, err := db.Open(db.Config{Dir: feeds, Poll: -1}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	clients := map[string]*reputation.Client{
		"ksn":      newClient(t, remote(t, cloud.http.URL, "cloud-secret")),
		"kpsn":     newClient(t, remote(t, private.http.URL, "kpsn-licence")),
		"embedded": newClient(t, embedded),
	}
	for _, tt := range demoCases(t) {
		t.Run(tt.name, func(t *testing.T) {
			for mode, c := range clients {
				v, err := c.Lookup(ctx, tt.q)
				if err != nil {
					t.Fatal(err)
				}
				if v.Kind != tt.want {
					t.Errorf("%s: got %v, want %v", mode, v, tt.want)
				}
			}
		})
	}

	// Only 4-byte prefixes reached the servers: never URLs or full hashes.
	for name, ts := range map[string]*testServer{"cloud": cloud, "private": private} {
		n := 0
		for _, r := range ts.rec.all() {
			if r.path != reputation.PathLookup {
				continue
			}
			n++
			if bytes.Contains(r.body, []byte("picket.test")) || bytes.Contains(r.body, []byte("http")) {
				t.Errorf("%s: request body reveals a URL: %s", name, r.body)
			}
			var req map[string][]string
			if err := json.Unmarshal(r.body, &req); err != nil || len(req) != 1 {
				t.Fatalf("%s: request %s: want only {\"prefixes\": [...]}", name, r.body)
			}
			for _, p := range req["prefixes"] {
				if !prefixRE.MatchString(p) {
					t.Errorf("%s: sent %q, want 8 hex digits", name, p)
				}
			}
		}
		if n == 0 {
			t.Errorf("%s: no lookups recorded", name)
		}
	}
	// The cloud's only lookups are the KSN client's: the private server
	// forwards none.
	cloudLookups := 0
	for _, r := range cloud.rec.all() {
		if r.path == reputation.PathLookup {
			cloudLookups++
		}
	}
	if want := clients["ksn"].Stats().Requests; uint64(cloudLookups) != want {
		t.Errorf("cloud saw %d lookups, the KSN client sent %d", cloudLookups, want)
	}
	// The private server sent nothing upstream but updates, the first
	// without a version.
	for _, r := range cloud.rec.all() {
		if r.path == reputation.PathUpdate && r.query != "" {
			t.Errorf("first update asked %q, want no version", r.query)
		}
	}

	// A cloud feed update reaches the mirror incrementally.
	f, _ := os.OpenFile(filepath.Join(feeds, "phishing.txt"), os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString("new-phish.picket.test\n")
	f.Close()
	if err := cloud.srv.Reload(); err != nil {
		t.Fatal(err)
	}
	// A second change before the mirror asks: the update composes both.
	if err := os.WriteFile(filepath.Join(feeds, "hosts.txt"), []byte("0.0.0.0 tracker.picket.test telemetry.picket.test\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := cloud.srv.Reload(); err != nil {
		t.Fatal(err)
	}
	before := len(cloud.rec.all())
	if err := private.srv.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	upd := cloud.rec.all()[before]
	var u UpdateResponse
	if err := json.Unmarshal(upd.resp, &u); err != nil {
		t.Fatal(err)
	}
	if upd.query == "" || u.Full || len(u.Added) != 1 || len(u.Removed) != 1 {
		t.Errorf("update %q: full=%v, %d added, %d removed; want incremental with 1 added, 1 removed", upd.query, u.Full, len(u.Added), len(u.Removed))
	}
	if got, want := private.srv.DB().Checksum(), cloud.srv.DB().Checksum(); got != want {
		t.Error("mirror differs from the cloud after the update")
	}
	fresh := newClient(t, remote(t, private.http.URL, "kpsn-licence"))
	if v, _ := fresh.Lookup(ctx, reputation.Query{URL: "http://new-phish.picket.test/"}); v.Kind != reputation.KindPhishing {
		t.Errorf("new entry through the mirror: %v, want phishing", v)
	}
	if v, _ := fresh.Lookup(ctx, reputation.Query{URL: "http://ads.picket.test/"}); v.Kind != reputation.KindUnknown {
		t.Errorf("removed entry through the mirror: %v, want unknown", v)
	}

	// The cloud goes down: the mirror keeps answering, also after a restart.
	cloud.http.Close()
	if err := private.srv.Sync(ctx); err == nil {
		t.Error("Sync with the cloud down: no error")
	}
	fresh = newClient(t, remote(t, private.http.URL, "kpsn-licence"))
	if v, _ := fresh.Lookup(ctx, reputation.Query{URL: "http://malware.picket.test/"}); v.Kind != reputation.KindMalware || v.Source != reputation.SourceServer {
		t.Errorf("private with the cloud down: %v, want malware from the server", v)
	}
	restarted := startServer(t, Config{Role: RolePrivate, Upstream: cloud.http.URL, Feeds: mirrorDir})
	if got := restarted.srv.DB().Len(); got != private.srv.DB().Len() {
		t.Errorf("restarted mirror has %d entries, want %d from its snapshot", got, private.srv.DB().Len())
	}
	resp, err := http.Get(restarted.http.URL + reputation.PathHealth)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Errorf("healthz of the restarted mirror: %v %v", resp.Status, err)
	}
}

func TestPrivateHasNoIntake(t *testing.T) {
	intake := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusAccepted) })
	if _, err := New(Config{Role: RolePrivate, Upstream: "http://127.0.0.1:1", Intake: intake}, zerolog.Nop()); err == nil {
		t.Error("private server with an intake: no error")
	}
	private := startServer(t, Config{Role: RolePrivate, Upstream: "http://127.0.0.1:1"})
	cloud := startServer(t, Config{Role: RoleCloud, Feeds: testutil.CopyFeeds(t), Poll: -1, Intake: intake})
	for _, p := range []string{reputation.PathStats, reputation.PathSamples, reputation.PathUpdate} {
		resp, err := http.Post(private.http.URL+p, "application/json", strings.NewReader("{}"))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("private %s: %d, want 404", p, resp.StatusCode)
		}
	}
	resp, err := http.Post(cloud.http.URL+reputation.PathStats, "application/json", strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Errorf("cloud stats: %d, want the intake's 202", resp.StatusCode)
	}
	// An unsynced mirror is not healthy.
	resp, _ = http.Get(private.http.URL + reputation.PathHealth)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("unsynced healthz: %d, want 503", resp.StatusCode)
	}
}

func TestMalformedRequests(t *testing.T) {
	ts := startServer(t, Config{Role: RoleCloud, Feeds: testutil.CopyFeeds(t), Poll: -1, Token: "tok"})
	many := `{"prefixes":[` + strings.Repeat(`"00000000",`, reputation.MaxPrefixesPerRequest) + `"00000000"]}`
	tests := []struct {
		name, method, path, token, body string
		want                            int
	}{
		{"no token", "POST", reputation.PathLookup, "", `{"prefixes":["00000000"]}`, 401},
		{"wrong token", "POST", reputation.PathLookup, "nope", `{"prefixes":["00000000"]}`, 401},
		{"ok", "POST", reputation.PathLookup, "tok", `{"prefixes":["00000000"]}`, 200},
		{"GET lookup", "GET", reputation.PathLookup, "tok", "", 405},
		{"bad JSON", "POST", reputation.PathLookup, "tok", `{"prefixes":`, 400},
		{"no prefixes", "POST", reputation.PathLookup, "tok", `{"prefixes":[]}`, 400},
		{"full hash", "POST", reputation.PathLookup, "tok", `{"prefixes":["` + strings.Repeat("ab", 32) + `"]}`, 400},
		{"not hex", "POST", reputation.PathLookup, "tok", `{"prefixes":["zzzzzzzz"]}`, 400},
		{"too many", "POST", reputation.PathLookup, "tok", many, 400},
		{"too large", "POST", reputation.PathLookup, "tok", `{"x":"` + strings.Repeat("a", 70<<10) + `"}`, 413},
		{"unknown path", "GET", "/nope", "", "", 404},
		{"health without token", "GET", reputation.PathHealth, "", "", 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest(tt.method, ts.http.URL+tt.path, strings.NewReader(tt.body))
			if tt.token != "" {
				req.Header.Set("Authorization", "Bearer "+tt.token)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if resp.StatusCode != tt.want {
				t.Errorf("got %d, want %d", resp.StatusCode, tt.want)
			}
			if tt.want >= 400 {
				var e reputation.ErrorResponse
				if err := json.NewDecoder(resp.Body).Decode(&e); err != nil || e.Error == "" {
					t.Errorf("error body: %v %+v, want {\"error\": ...}", err, e)
				}
			}
		})
	}
}

func TestClientAgainstDeadServer(t *testing.T) {
	ts := httptest.NewServer(http.NotFoundHandler())
	dead := ts.URL
	ts.Close() // nothing listens there any more
	release := make(chan struct{})
	hung := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-release // never answers while the test runs
	}))
	defer hung.Close()
	// Stalled sends the head, then nothing: the transport's own header
	// timeout cannot end that, only the lookup's deadline.
	stalled := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusOK)
		io.WriteString(w, `{"matches":[`)
		http.NewResponseController(w).Flush()
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer stalled.Close()
	defer close(release)
	for _, tc := range []struct {
		url    string
		policy reputation.FailPolicy
	}{
		{dead, reputation.FailOpen}, {dead, reputation.FailClosed},
		{hung.URL, reputation.FailOpen}, {hung.URL, reputation.FailClosed},
		{stalled.URL, reputation.FailOpen}, {stalled.URL, reputation.FailClosed},
	} {
		policy := tc.policy
		c, err := reputation.New(reputation.Config{Backend: remote(t, tc.url, ""), Fail: policy, Timeout: 200 * time.Millisecond}, zerolog.Nop())
		if err != nil {
			t.Fatal(err)
		}
		// The hung and stalled servers never finish an answer: the
		// client's 200ms timeout ends the lookup with the fail policy's
		// verdict. Without it, the stalled answer would last until the
		// caller's deadline (a guard against hanging, not a speed budget)
		// and end with an error.
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		v, err := c.Lookup(ctx, reputation.Query{URL: "http://malware.picket.test/"})
		cancel()
		if err != nil || v.Source != reputation.SourceFailure || v.Blocks() != (policy == reputation.FailClosed) {
			t.Errorf("fail-%v: %+v, %v", policy, v, err)
		}
		c.Close()
	}
}

func TestServeGracefulShutdown(t *testing.T) {
	s, err := New(Config{Role: RoleCloud, Feeds: testutil.CopyFeeds(t), Poll: -1}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ln, err := netListen()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, ln, "", "", time.Second) }()
	c := newClient(t, remote(t, "http://"+ln.Addr().String(), ""))
	if v, err := c.Lookup(context.Background(), reputation.Query{URL: "http://malware.picket.test/"}); err != nil || v.Kind != reputation.KindMalware {
		t.Errorf("lookup over a real listener: %v %v", v, err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Serve after cancel: %v", err)
	}
}

func BenchmarkRemoteRoundTrip(b *testing.B) {
	ts := startServer(b, Config{Role: RoleCloud, Feeds: testutil.CopyFeeds(b), Poll: -1})
	r := remote(b, ts.http.URL, "")
	u, _ := reputation.ParseURL("http://malware.picket.test/a/b/c.html?x=1")
	var prefixes []reputation.Prefix
	for _, e := range u.Expressions() {
		prefixes = append(prefixes, reputation.HashExpression(e).Prefix())
	}
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if a, err := r.FindPrefixes(ctx, prefixes); err != nil || len(a.Matches) != 1 {
			b.Fatal(a, err)
		}
	}
}

// BenchmarkLookupEmbeddedUncached is a client lookup that misses both
// caches and asks the embedded database: canonicalize, 30 hashes, search.
func BenchmarkLookupEmbeddedUncached(b *testing.B) {
	st, err := db.Open(db.Config{Dir: testutil.CopyFeeds(b), Poll: -1}, zerolog.Nop())
	if err != nil {
		b.Fatal(err)
	}
	c, err := reputation.New(reputation.Config{Backend: st, CacheSize: 1}, zerolog.Nop())
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	urls := make([]string, 1024)
	for i := range urls {
		urls[i] = "http://www" + strings.Repeat("x", i%7) + ".example" + string(rune('a'+i%26)) + ".test/a/b/" + strings.Repeat("c", i%13) + ".html?q=" + string(rune('a'+i%26))
	}
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := c.Lookup(ctx, reputation.Query{URL: urls[i%len(urls)]}); err != nil {
			b.Fatal(err)
		}
	}
}

func TestEmbeddedClientReload(t *testing.T) {
	feeds := testutil.CopyFeeds(t)
	st, err := db.Open(db.Config{Dir: feeds, Poll: -1}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	c := newClient(t, st)
	q := reputation.Query{URL: "http://fresh.picket.test/"}
	if v, _ := c.Lookup(context.Background(), q); v.Kind != reputation.KindUnknown || v.Source != reputation.SourceDatabase {
		t.Fatalf("before: %+v, want unknown from the database", v)
	}
	f, _ := os.OpenFile(filepath.Join(feeds, "phishing.txt"), os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString("fresh.picket.test\n")
	f.Close()
	if err := c.Reload(); err != nil {
		t.Fatal(err)
	}
	if v, _ := c.Lookup(context.Background(), q); v.Kind != reputation.KindPhishing {
		t.Errorf("after Reload: %+v, want phishing", v)
	}
}

// fakeUpstream serves scripted /v1/update replies.
func fakeUpstream(t *testing.T, replies func(from string) UpdateResponse) (*httptest.Server, *[]string) {
	var mu sync.Mutex
	var asked []string
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		asked = append(asked, r.URL.Query().Get("from"))
		mu.Unlock()
		json.NewEncoder(w).Encode(replies(r.URL.Query().Get("from")))
	}))
	t.Cleanup(ts.Close)
	return ts, &asked
}

func TestMirrorRejectsBadUpdates(t *testing.T) {
	b := db.NewBuilder(0)
	b.Add(reputation.HashExpression("a.test/"), reputation.Verdict{Kind: reputation.KindMalware})
	v1, _ := b.Build(1)
	b = db.NewBuilder(0)
	b.Add(reputation.HashExpression("a.test/"), reputation.Verdict{Kind: reputation.KindMalware})
	b.Add(reputation.HashExpression("b.test/"), reputation.Verdict{Kind: reputation.KindPhishing})
	v2, _ := b.Build(2)
	full := func(d *db.DB, token string) UpdateResponse {
		u := UpdateResponse{Version: token, Full: true, Checksum: fmt.Sprintf("%x", d.Checksum())}
		d.All(func(e db.Entry) { u.Added = append(u.Added, wireMatch(e.Hash, e.Verdict, 0)) })
		return u
	}
	var stage atomic.Int32
	stage.Store(1)
	up, asked := fakeUpstream(t, func(from string) UpdateResponse {
		if stage.Load() == 1 {
			return full(v1, "v1")
		}
		if from == "v1" { // changes that do not give the announced database
			u := full(v2, "v2")
			u.Full, u.Added = false, u.Added[:0]
			return u
		}
		return full(v2, "v2")
	})
	dir := t.TempDir()
	s, err := New(Config{Role: RolePrivate, Upstream: up.URL, Feeds: dir}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := s.Sync(ctx); err != nil || s.DB().Checksum() != v1.Checksum() || s.DB().Token() != "v1" {
		t.Fatalf("first sync: %v", err)
	}
	stage.Store(2)
	if err := s.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if s.DB().Checksum() != v2.Checksum() || s.DB().Token() != "v2" {
		t.Error("mirror did not end at version 2")
	}
	if got := strings.Join(*asked, ","); got != ",v1," {
		t.Errorf("asked from %q, want \",v1,\" (everything, bad changes, everything again)", got)
	}
	// Garbage from upstream keeps the current copy, in memory and on disk.
	for _, bad := range []UpdateResponse{
		{Version: "v9", Full: true, Added: []reputation.WireMatch{{Hash: "zz"}}},
		{Version: "v9", Full: true, Checksum: "00", Added: []reputation.WireMatch{}},
		{Version: "v9", Full: true, Checksum: strings.Repeat("ab", 32), Added: []reputation.WireMatch{{Hash: strings.Repeat("cd", 32), Verdict: 9}}},
		{Version: "", Full: true, Checksum: strings.Repeat("ab", 32)},
	} {
		up, _ := fakeUpstream(t, func(string) UpdateResponse { return bad })
		s.cfg.Upstream = up.URL
		if err := s.Sync(ctx); err == nil {
			t.Errorf("Sync with %+v: no error", bad)
		}
		if s.DB().Token() != "v2" {
			t.Errorf("token %q after a bad update, want v2", s.DB().Token())
		}
		if back, err := db.ReadFile(filepath.Join(dir, snapshotName)); err != nil || back.Checksum() != v2.Checksum() {
			t.Errorf("snapshot after a bad update: %v", err)
		}
	}
	if st := s.syncStatus(); st.failures != 4 || st.lastErr == "" {
		t.Errorf("sync status %+v, want 4 failures and the last error", st)
	}
}

func TestNextWait(t *testing.T) {
	for _, tt := range []struct {
		name           string
		every, minWait time.Duration
		failures       int
		jitter         float64
		want           time.Duration
	}{
		{"success", time.Minute, 0, 0, 0.5, time.Minute},
		{"success, the upstream asks for more", time.Minute, 10 * time.Minute, 0, 0.5, 10 * time.Minute},
		{"one failure, no jitter", time.Minute, 0, 1, 0.5, time.Minute},
		{"three failures", time.Minute, 0, 3, 0.5, 4 * time.Minute},
		{"three failures, low jitter", time.Minute, 0, 3, 0, 4 * time.Minute * 8 / 10},
		{"many failures: capped", time.Minute, 0, 40, 0.5, MaxBackoff},
		{"capped, high jitter", time.Minute, 0, 40, 1, MaxBackoff * 12 / 10},
		{"failure, the upstream's wait wins", time.Minute, time.Hour, 2, 0.5, time.Hour},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := nextWait(tt.every, tt.minWait, tt.failures, tt.jitter); got != tt.want {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

// TestClientKeepsBlockEvictedDuringLookup: a URL one of whose expressions
// is a cached block ("malware.picket.test/") and another not yet asked for
// ("malware.picket.test/x") blocks, also when the block's prefix leaves the
// prefix cache while the missing prefixes are being asked for (other
// lookups fill the cache meanwhile), and the verdict the result cache keeps
// is the block.
func TestClientKeepsBlockEvictedDuringLookup(t *testing.T) {
	s, err := New(Config{Role: RoleCloud, Feeds: testutil.CopyFeeds(t), Poll: -1}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	held := reputation.HashExpression("malware.picket.test/x").Prefix().String()
	arrived, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(body))
		if bytes.Contains(body, []byte(held)) {
			once.Do(func() { close(arrived) })
			<-release
		}
		s.Handler().ServeHTTP(w, r)
	}))
	t.Cleanup(hs.Close)
	c, err := reputation.New(reputation.Config{Backend: remote(t, hs.URL, ""), CacheSize: 64, Timeout: 30 * time.Second}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	ctx := context.Background()
	if v, err := c.Lookup(ctx, reputation.Query{URL: "http://malware.picket.test/"}); err != nil || v.Kind != reputation.KindMalware {
		t.Fatalf("first lookup: %v, %v; want malware", v, err)
	}
	type result struct {
		v   reputation.Verdict
		err error
	}
	done := make(chan result, 1)
	go func() {
		v, err := c.Lookup(ctx, reputation.Query{URL: "http://malware.picket.test/x"})
		done <- result{v, err}
	}()
	<-arrived
	for i := range 100 {
		if _, err := c.Lookup(ctx, reputation.Query{URL: fmt.Sprintf("http://filler-%d.test/", i)}); err != nil {
			t.Fatal(err)
		}
	}
	close(release)
	r := <-done
	if r.err != nil || r.v.Kind != reputation.KindMalware {
		t.Errorf("lookup whose cached block was evicted meanwhile: got %v, %v; want malware", r.v, r.err)
	}
	if v, err := c.Lookup(ctx, reputation.Query{URL: "http://malware.picket.test/x"}); err != nil || v.Kind != reputation.KindMalware {
		t.Errorf("the same lookup again: got %v, %v; want malware", v, err)
	}
}

// TestSubSecondTTLStillBlocks: the wire gives TTLs in whole seconds, and a
// client takes a match with TTL 0 as expired at once (it answers nothing).
// A server given a positive TTL under a second must still make its matches
// count.
func TestSubSecondTTLStillBlocks(t *testing.T) {
	for _, ttl := range []time.Duration{500 * time.Millisecond, 1500 * time.Millisecond} {
		cloud := startServer(t, Config{Role: RoleCloud, Feeds: testutil.CopyFeeds(t), Poll: -1, TTL: ttl})
		c := newClient(t, remote(t, cloud.http.URL, ""))
		v, err := c.Lookup(context.Background(), reputation.Query{URL: "http://malware.picket.test/"})
		if err != nil || v.Kind != reputation.KindMalware || v.TTL <= 0 {
			t.Errorf("server TTL %v: got %v (TTL %v), %v; want malware with a TTL", ttl, v, v.TTL, err)
		}
	}
}

// TestUnsyncedMirrorDoesNotAnswer: a private server that has never had a
// good copy knows nothing, and must not say "nothing known" (which clients
// cache for the negative TTL, past its first sync): it refuses lookups, so
// that the client's fail policy decides until then.
func TestUnsyncedMirrorDoesNotAnswer(t *testing.T) {
	ctx := context.Background()
	cloud := startServer(t, Config{Role: RoleCloud, Feeds: testutil.CopyFeeds(t), Poll: -1})
	private := startServer(t, Config{Role: RolePrivate, Upstream: cloud.http.URL})
	c, err := reputation.New(reputation.Config{Backend: remote(t, private.http.URL, ""), Fail: reputation.FailClosed, Timeout: 10 * time.Second}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	q := reputation.Query{URL: "http://malware.picket.test/"}
	if v, err := c.Lookup(ctx, q); err != nil || v.Source != reputation.SourceFailure || !v.Blocks() {
		t.Errorf("before the first sync: got %v, %v; want the fail-closed verdict", v, err)
	}
	if err := private.srv.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if v, err := c.Lookup(ctx, q); err != nil || v.Kind != reputation.KindMalware || v.Source != reputation.SourceServer {
		t.Errorf("after the first sync: got %v, %v; want malware from the server", v, err)
	}
}

// TestTokenNotSentElsewhere: a bearer token goes only to the server it is
// for. A redirect to another port of the same host (another origin: Go's
// client keeps Authorization for the same host name whatever the port or
// scheme) must not carry it, neither from a client's lookup nor from a
// mirror's update.
func TestTokenNotSentElsewhere(t *testing.T) {
	var mu sync.Mutex
	var leaked []string
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		if a := r.Header.Get("Authorization"); a != "" {
			leaked = append(leaked, r.URL.Path+": "+a)
		}
		mu.Unlock()
		writeError(w, http.StatusNotFound, "no such endpoint")
	}))
	defer other.Close()
	redirector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, other.URL+r.URL.Path, http.StatusTemporaryRedirect)
	}))
	defer redirector.Close()

	c := newClient(t, remote(t, redirector.URL, "kpsn-licence"))
	if _, err := c.Lookup(context.Background(), reputation.Query{URL: "http://malware.picket.test/"}); err != nil {
		t.Fatal(err)
	}
	private := startServer(t, Config{Role: RolePrivate, Upstream: redirector.URL, UpstreamToken: "cloud-secret"})
	if err := private.srv.Sync(context.Background()); err == nil {
		t.Error("a sync whose upstream redirected to a 404 succeeded")
	}
	mu.Lock()
	defer mu.Unlock()
	if len(leaked) > 0 {
		t.Errorf("tokens sent to another origin after a redirect: got %q, want none", leaked)
	}
}

// TestMirrorRejectsWrongToken: a whole database whose version token is not
// the one the upstream announced is refused before it takes the snapshot's
// place, so that a restart does not serve the copy this sync refused.
func TestMirrorRejectsWrongToken(t *testing.T) {
	b := db.NewBuilder(0)
	b.Add(reputation.HashExpression("a.test/"), reputation.Verdict{Kind: reputation.KindMalware})
	v1, _ := b.Build(1)
	b = db.NewBuilder(0)
	b.Add(reputation.HashExpression("b.test/"), reputation.Verdict{Kind: reputation.KindPhishing})
	v2, _ := b.Build(2)
	var announce atomic.Value
	announce.Store("v1")
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		d, token := v1, "v1"
		if announce.Load() != "v1" {
			d, token = v2, "v2-in-the-file"
		}
		sum := d.Checksum()
		w.Header().Set("Content-Type", MediaTypeDB)
		w.Header().Set(HeaderChecksum, hex.EncodeToString(sum[:]))
		w.Header().Set(HeaderVersion, announce.Load().(string))
		d.WriteTo(w, token)
	}))
	t.Cleanup(up.Close)
	dir := t.TempDir()
	s, err := New(Config{Role: RolePrivate, Upstream: up.URL, Feeds: dir}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Sync(context.Background()); err != nil || s.DB().Token() != "v1" {
		t.Fatalf("first sync: %v, token %q", err, s.DB().Token())
	}
	announce.Store("v2")
	if err := s.Sync(context.Background()); err == nil {
		t.Error("a database with another token than announced: no error")
	}
	if s.DB().Token() != "v1" {
		t.Errorf("token %q in memory after the refused sync, want v1", s.DB().Token())
	}
	back, err := db.ReadFile(filepath.Join(dir, snapshotName))
	if err != nil || back.Token() != "v1" || back.Checksum() != v1.Checksum() {
		t.Errorf("snapshot after the refused sync: %v (the refused copy took its place)", err)
	}
}
