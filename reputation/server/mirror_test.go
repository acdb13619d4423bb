package server

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/picket-proxy/picket/internal/feedgen"
	"github.com/picket-proxy/picket/internal/testutil"
	"github.com/picket-proxy/picket/reputation"
	"github.com/picket-proxy/picket/reputation/db"
)

// updateCall is one update request the cloud answered, as the mirror got
// it: what it asked, what kind of answer, how many bytes on the wire and,
// for JSON, the answer.
type updateCall struct {
	from     string
	mediaDB  bool
	wire     int
	response UpdateResponse
}

// cloudWire serves a cloud server's handler and keeps its update calls.
// With tamper set, the next answer with changes loses its first added
// entry on the way, so that the mirror's result cannot match the checksum.
type cloudWire struct {
	next   http.Handler
	tamper atomic.Bool
	mu     sync.Mutex
	calls  []updateCall
}

func (cw *cloudWire) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != reputation.PathUpdate {
		cw.next.ServeHTTP(w, r)
		return
	}
	rec := httptest.NewRecorder()
	cw.next.ServeHTTP(rec, r)
	body := rec.Body.Bytes()
	call := updateCall{from: r.URL.Query().Get("from"), mediaDB: rec.Header().Get("Content-Type") == MediaTypeDB, wire: len(body)}
	if !call.mediaDB {
		plain := body
		if rec.Header().Get("Content-Encoding") == "gzip" {
			zr, err := gzip.NewReader(bytes.NewReader(body))
			if err != nil {
				panic(err)
			}
			plain, _ = io.ReadAll(zr)
		}
		if err := json.Unmarshal(plain, &call.response); err != nil {
			panic(err)
		}
		if !call.response.Full && len(call.response.Added) > 0 && cw.tamper.CompareAndSwap(true, false) {
			call.response.Added = call.response.Added[1:]
			body, _ = json.Marshal(call.response)
			rec.Header().Del("Content-Encoding")
			rec.Header().Del("Content-Length")
		}
	}
	cw.mu.Lock()
	cw.calls = append(cw.calls, call)
	cw.mu.Unlock()
	for k, v := range rec.Header() {
		w.Header()[k] = v
	}
	w.WriteHeader(rec.Code)
	w.Write(body)
}

// since returns the calls after the first n.
func (cw *cloudWire) since(n int) []updateCall {
	cw.mu.Lock()
	defer cw.mu.Unlock()
	return append([]updateCall(nil), cw.calls[n:]...)
}

func (cw *cloudWire) count() int {
	cw.mu.Lock()
	defer cw.mu.Unlock()
	return len(cw.calls)
}

// feedDir is a cloud's generated feed directory, edited between updates.
type feedDir struct {
	t   *testing.T
	dir string
}

func (f feedDir) edit(name string, fn func(lines []string) []string) {
	f.t.Helper()
	path := filepath.Join(f.dir, name)
	data, err := os.ReadFile(path)
	if err != nil {
		f.t.Fatal(err)
	}
	lines := fn(strings.Split(strings.TrimSuffix(string(data), "\n"), "\n"))
	if err := os.WriteFile(path, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		f.t.Fatal(err)
	}
}

// addDomains lists n new domains; dropDomains unlists the domains of the
// given entries; rename gives the signatures of the given entries new
// threat names.
func (f feedDir) addDomains(prefix string, n int) []reputation.Hash {
	var keys []reputation.Hash
	f.edit(feedgen.DomainFile, func(lines []string) []string {
		for i := 0; i < n; i++ {
			host := fmt.Sprintf("%s-%d.test", prefix, i)
			lines = append(lines, "0.0.0.0 "+host)
			keys = append(keys, reputation.HashExpression(host+"/"))
		}
		return lines
	})
	return keys
}

func (f feedDir) dropDomains(entries []int) {
	drop := map[string]bool{}
	for _, i := range entries {
		drop["0.0.0.0 "+feedgen.Host(i)] = true
	}
	f.edit(feedgen.DomainFile, func(lines []string) []string {
		var out []string
		for _, l := range lines {
			if !drop[l] {
				out = append(out, l)
			}
		}
		return out
	})
}

func (f feedDir) rename(entries []int, name string) {
	renamed := map[string]bool{}
	for _, i := range entries {
		renamed[feedgen.Threat(i)] = true
	}
	f.edit(feedgen.HashFile, func(lines []string) []string {
		for k, l := range lines {
			parts := strings.Split(l, ":")
			if len(parts) > 2 && renamed[parts[2]] {
				parts[2] = name
				lines[k] = strings.Join(parts, ":")
			}
		}
		return lines
	})
}

// entriesOf returns the first n entries of a class.
func entriesOf(class feedgen.Class, skip, n int) []int {
	var out []int
	for i := 0; len(out) < n; i++ {
		if feedgen.ClassOf(i) == class {
			if skip > 0 {
				skip--
				continue
			}
			out = append(out, i)
		}
	}
	return out
}

// TestMirrorFollowsCloud runs a private server against a real cloud
// server over HTTP through additions, removals and changed verdicts: the
// first update is the whole database (the compiled file itself), every
// later one carries only the changes (counted: entries and bytes on the
// wire), two cloud updates between two requests come as one, a mirror
// that is current gets nothing, and changes that do not verify (one entry
// lost on the way) make it download the whole database again. With the
// cloud gone it keeps serving its last good copy, also after a restart.
func TestMirrorFollowsCloud(t *testing.T) {
	ctx := context.Background()
	const n = 30_000
	feeds := feedDir{t, t.TempDir()}
	if _, err := feedgen.Write(feeds.dir, n); err != nil {
		t.Fatal(err)
	}
	cloud, err := New(Config{Role: RoleCloud, Feeds: feeds.dir, Poll: -1, MinWait: 45 * time.Second}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cloud.Close() })
	wire := &cloudWire{next: cloud.Handler()}
	hs := httptest.NewServer(wire)
	t.Cleanup(hs.Close)
	mirrorDir := t.TempDir()
	private := startServer(t, Config{Role: RolePrivate, Upstream: hs.URL, Feeds: mirrorDir})
	mirror := private.srv

	same := func(step string) {
		t.Helper()
		m, c := mirror.DB(), cloud.DB()
		if m.Checksum() != c.Checksum() || m.Len() != c.Len() {
			t.Fatalf("%s: the mirror (%d entries) differs from the cloud (%d)", step, m.Len(), c.Len())
		}
		if m.Token() != versionToken(c.Version()) {
			t.Fatalf("%s: mirror token %q, cloud %q", step, m.Token(), versionToken(c.Version()))
		}
		if back, err := db.ReadFile(filepath.Join(mirrorDir, snapshotName)); err != nil || back.Checksum() != c.Checksum() {
			t.Fatalf("%s: the snapshot is not the cloud's database: %v", step, err)
		}
	}
	sync := func(step string) []updateCall {
		t.Helper()
		before := wire.count()
		if err := mirror.Sync(ctx); err != nil {
			t.Fatalf("%s: %v", step, err)
		}
		same(step)
		return wire.since(before)
	}
	reload := func() {
		t.Helper()
		v := cloud.DB().Version()
		if err := cloud.Reload(); err != nil || cloud.DB().Version() == v {
			t.Fatalf("cloud reload: %v (version unchanged: %v)", err, cloud.DB().Version() == v)
		}
	}
	incremental := func(step string, calls []updateCall, from string, added, removed, fullWire int) {
		t.Helper()
		if len(calls) != 1 {
			t.Fatalf("%s: %d update requests, want 1", step, len(calls))
		}
		c := calls[0]
		if c.from != from || c.mediaDB || c.response.Full {
			t.Fatalf("%s: asked from %q (want %q), got the whole database: %v %v", step, c.from, from, c.mediaDB, c.response.Full)
		}
		if len(c.response.Added) != added || len(c.response.Removed) != removed {
			t.Errorf("%s: %d added, %d removed sent; want %d, %d", step, len(c.response.Added), len(c.response.Removed), added, removed)
		}
		if c.wire*50 > fullWire {
			t.Errorf("%s: %d bytes on the wire, the whole database is %d: not incremental", step, c.wire, fullWire)
		}
		if c.response.MinWait != 45 {
			t.Errorf("%s: min_wait %d, want 45", step, c.response.MinWait)
		}
	}

	// 1. The first update is the whole database, as its compiled file.
	calls := sync("first update")
	if len(calls) != 1 || calls[0].from != "" || !calls[0].mediaDB {
		t.Fatalf("first update: %+v, want one request without a version answered with the database file", calls)
	}
	fullWire := calls[0].wire
	if fullWire < cloud.DB().Bytes() {
		t.Errorf("first update: %d bytes, the database is %d", fullWire, cloud.DB().Bytes())
	}
	if st := mirror.syncStatus(); st.minWait != 45*time.Second {
		t.Errorf("min wait after the database file: %v, want 45s", st.minWait)
	}

	// 2. Additions, removals, changed verdicts: only they travel.
	token := mirror.DB().Token()
	added := feeds.addDomains("fresh", 30)
	gone := entriesOf(feedgen.Domain, 0, 20)
	feeds.dropDomains(gone)
	renamed := entriesOf(feedgen.FileHash, 0, 10)
	feeds.rename(renamed, "Win.Renamed-1")
	reload()
	incremental("additions and removals", sync("additions and removals"), token, 30+10, 20, fullWire)
	for _, h := range added {
		if v, ok := mirror.DB().Get(h); !ok || v.Kind != reputation.KindPhishing {
			t.Errorf("added domain: %+v, %v; want phishing", v, ok)
		}
	}
	for _, i := range gone {
		if v, ok := mirror.DB().Get(feedgen.Key(i)); ok {
			t.Errorf("removed domain still there: %+v", v)
		}
	}
	for _, i := range renamed {
		if v, _ := mirror.DB().Get(feedgen.Key(i)); v.ThreatName != "Win.Renamed-1" {
			t.Errorf("renamed signature: %+v, want Win.Renamed-1", v)
		}
	}

	// 3. Two cloud updates before the mirror asks: one answer with both.
	token = mirror.DB().Token()
	batch := feeds.addDomains("batch", 5)
	reload()
	feeds.edit(feedgen.DomainFile, func(lines []string) []string {
		var out []string
		for _, l := range lines {
			if l != "0.0.0.0 batch-0.test" && l != "0.0.0.0 batch-1.test" && l != "0.0.0.0 batch-2.test" {
				out = append(out, l)
			}
		}
		return out
	})
	feeds.dropDomains(entriesOf(feedgen.Domain, 20, 2))
	reload()
	incremental("two updates at once", sync("two updates at once"), token, 2, 3+2, fullWire)
	if _, ok := mirror.DB().Get(batch[4]); !ok {
		t.Error("a domain added by the first of two updates is missing")
	}
	if _, ok := mirror.DB().Get(batch[0]); ok {
		t.Error("a domain added and removed again is there")
	}

	// 4. Up to date: an empty answer and no new copy.
	before := mirror.DB()
	calls = sync("up to date")
	if len(calls) != 1 || calls[0].from != before.Token() || len(calls[0].response.Added)+len(calls[0].response.Removed) != 0 {
		t.Errorf("up to date: %+v", calls)
	}
	if mirror.DB() != before {
		t.Error("up to date: the mirror replaced its copy")
	}

	// 5. Changes that do not verify: the whole database again.
	token = mirror.DB().Token()
	feeds.addDomains("tampered", 7)
	reload()
	wire.tamper.Store(true)
	calls = sync("checksum mismatch")
	if len(calls) != 2 || calls[0].from != token || calls[0].mediaDB || len(calls[0].response.Added) != 6 || // 7, one lost on the way

		calls[1].from != "" || !calls[1].mediaDB {
		t.Errorf("checksum mismatch: %+v; want the changes (asked from %q), then the database file", calls, token)
	}

	// The cloud counted what it sent.
	var h Health
	resp, err := http.Get(hs.URL + reputation.PathHealth)
	if err != nil {
		t.Fatal(err)
	}
	json.NewDecoder(resp.Body).Decode(&h)
	resp.Body.Close()
	if h.UpdatesFull != 2 || h.UpdatesIncremental != 3 || h.UpdatesCurrent != 1 || h.Token != mirror.DB().Token() {
		t.Errorf("cloud health %+v: want 2 full, 3 incremental, 1 current, token %q", h, mirror.DB().Token())
	}

	// 6. The cloud is gone: the mirror keeps serving its last good copy,
	// and so does a new one started from its snapshot.
	hs.Close()
	last := mirror.DB().Checksum()
	if err := mirror.Sync(ctx); err == nil {
		t.Fatal("Sync with the cloud gone: no error")
	}
	if mirror.DB().Checksum() != last {
		t.Fatal("a failed update changed the mirror")
	}
	r := remote(t, private.http.URL, "")
	key := feedgen.Key(7) // a signature
	a, err := r.FindPrefixes(ctx, []reputation.Prefix{key.Prefix()})
	if err != nil || len(a.Matches) == 0 {
		t.Errorf("lookup through the mirror with the cloud gone: %v, %d matches", err, len(a.Matches))
	}
	restarted := startServer(t, Config{Role: RolePrivate, Upstream: hs.URL, Feeds: mirrorDir})
	if restarted.srv.DB().Checksum() != last || !restarted.srv.synced.Load() {
		t.Error("a mirror restarted with the cloud gone does not serve its snapshot")
	}
	resp, err = http.Get(restarted.http.URL + reputation.PathHealth)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Errorf("healthz of the restarted mirror: %v %v", resp.Status, err)
	}
}

func TestUpdateAnswers(t *testing.T) {
	feeds := testutil.CopyFeeds(t)
	cloud := startServer(t, Config{Role: RoleCloud, Feeds: feeds, Poll: -1, MinWait: 90 * time.Second})
	d := cloud.srv.DB()
	token := versionToken(d.Version())
	get := func(query, accept string) *http.Response {
		t.Helper()
		req, _ := http.NewRequest("GET", cloud.http.URL+reputation.PathUpdate+query, nil)
		if accept != "" {
			req.Header.Set("Accept", accept)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { resp.Body.Close() })
		return resp
	}
	decode := func(resp *http.Response) UpdateResponse {
		t.Helper()
		var u UpdateResponse
		if err := json.NewDecoder(resp.Body).Decode(&u); err != nil {
			t.Fatal(err)
		}
		return u
	}
	sum := fmt.Sprintf("%x", d.Checksum())
	for _, tt := range []struct {
		name, query, accept string
		full, file          bool
	}{
		{"no version: everything, JSON", "", "", true, false},
		{"no version, the file accepted", "", MediaTypeDB + ", application/json", true, true},
		{"the file refused", "", MediaTypeDB + ";q=0, application/json", true, false},
		{"a version never issued", "?from=" + versionToken(12345), "", true, false},
		{"not a version token", "?from=x!", "", true, false},
		{"the current version", "?from=" + token, MediaTypeDB, false, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			resp := get(tt.query, tt.accept)
			if resp.StatusCode != 200 {
				t.Fatalf("status %d", resp.StatusCode)
			}
			if tt.file {
				if resp.Header.Get("Content-Type") != MediaTypeDB || resp.Header.Get(HeaderVersion) != token ||
					resp.Header.Get(HeaderChecksum) != sum || resp.Header.Get(HeaderMinWait) != "90" {
					t.Fatalf("headers %v", resp.Header)
				}
				got, err := db.Receive(resp.Body, db.Target{})
				if err != nil || got.Checksum() != d.Checksum() || got.Token() != token {
					t.Fatalf("the file: %v", err)
				}
				return
			}
			u := decode(resp)
			if u.Version != token || u.Checksum != sum || u.MinWait != 90 || u.Full != tt.full {
				t.Errorf("got %+v", u)
			}
			if want := map[bool]int{true: d.Len(), false: 0}[tt.full]; len(u.Added) != want || len(u.Removed) != 0 {
				t.Errorf("%d added, %d removed; want %d, 0", len(u.Added), len(u.Removed), want)
			}
		})
	}
}

// FuzzDecodeUpdate feeds the mirror's streaming reader of update answers
// arbitrary bytes: an error or a result, never a panic; what it accepts
// builds.
func FuzzDecodeUpdate(f *testing.F) {
	h := strings.Repeat("ab", 32)
	f.Add([]byte(`{"version":"v1","full":false,"checksum":"` + h + `","min_wait":30,"added":[{"hash":"` + h + `","verdict":"malware","category":"c","threat":"t"}],"removed":["` + h + `"]}`))
	f.Add([]byte(`{"removed":null,"added":[],"x":{"y":[1,2]},"version":"v"}`))
	f.Add([]byte(`{"added":[{"hash":"zz"}]}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		added, removed := db.NewBuilder(0), db.NewBuilder(0)
		added.SetTempDir(t.TempDir())
		defer added.Discard()
		defer removed.Discard()
		if _, err := decodeUpdate(bytes.NewReader(data), added, removed); err != nil {
			return
		}
		a, err := added.Build(1)
		if err != nil {
			t.Fatal(err)
		}
		r, err := removed.Build(1)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := db.Empty(0).Apply(db.Changes{Added: a, Removed: r}, 2); err != nil {
			t.Fatal(err)
		}
	})
}

// TestHealthDuringSync: /healthz answers while an update is in progress
// (a whole database can take minutes to arrive).
func TestHealthDuringSync(t *testing.T) {
	asked, release := make(chan struct{}), make(chan struct{})
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(asked)
		<-release
	}))
	t.Cleanup(up.Close)
	var once sync.Once
	free := func() { once.Do(func() { close(release) }) }
	t.Cleanup(free) // runs before up.Close, even after a failure
	private := startServer(t, Config{Role: RolePrivate, Upstream: up.URL})
	done := make(chan error, 1)
	go func() { done <- private.srv.Sync(context.Background()) }()
	<-asked
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get(private.http.URL + reputation.PathHealth)
	if err != nil {
		t.Fatalf("healthz during a sync: %v", err)
	}
	var h Health
	json.NewDecoder(resp.Body).Decode(&h)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || h.Status != "unsynced" {
		t.Errorf("healthz during the first sync: %d %+v, want 503 unsynced", resp.StatusCode, h)
	}
	free()
	if err := <-done; err == nil {
		t.Error("a sync whose upstream answered nothing succeeded")
	}
	if st := private.srv.syncStatus(); st.failures != 1 || st.lastAttempt.IsZero() {
		t.Errorf("after a failed sync: %+v", st)
	}
}

// TestMirrorAsksDuringCloudReload: a mirror that asks while the cloud is
// still recording the changes of a reload (the Diff of millions of entries
// takes seconds) gets the version before, not the whole database; once
// the step is recorded it gets the changes.
func TestMirrorAsksDuringCloudReload(t *testing.T) {
	ctx := context.Background()
	feeds := feedDir{t, t.TempDir()}
	if _, err := feedgen.Write(feeds.dir, 3000); err != nil {
		t.Fatal(err)
	}
	cloud, err := New(Config{Role: RoleCloud, Feeds: feeds.dir, Poll: -1}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cloud.Close() })
	wire := &cloudWire{next: cloud.Handler()}
	hs := httptest.NewServer(wire)
	t.Cleanup(hs.Close)
	mirror := startServer(t, Config{Role: RolePrivate, Upstream: hs.URL}).srv
	if err := mirror.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	token := mirror.DB().Token()

	recording, proceed := make(chan struct{}), make(chan struct{})
	cloud.hist.hold = func() {
		close(recording)
		<-proceed
	}
	feeds.addDomains("during", 3)
	reloaded := make(chan error, 1)
	go func() { reloaded <- cloud.Reload() }()
	<-recording
	if versionToken(cloud.DB().Version()) == token {
		t.Fatal("the cloud's store has not swapped yet")
	}
	n := wire.count()
	if err := mirror.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if calls := wire.since(n); len(calls) != 1 || calls[0].mediaDB || calls[0].response.Full || calls[0].response.Version != token {
		t.Errorf("asking during the reload: %+v; want \"up to date\" at %q", calls, token)
	}
	close(proceed)
	if err := <-reloaded; err != nil {
		t.Fatal(err)
	}
	n = wire.count()
	if err := mirror.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	calls := wire.since(n)
	if len(calls) != 1 || calls[0].mediaDB || calls[0].response.Full || len(calls[0].response.Added) != 3 {
		t.Errorf("asking after the reload: %+v; want the 3 changes", calls)
	}
	if mirror.DB().Checksum() != cloud.DB().Checksum() {
		t.Error("the mirror differs from the cloud")
	}
}
