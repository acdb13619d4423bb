package reputation

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/picket-proxy/picket/internal/testutil"
)

// fakeBackend is a Backend whose behaviour is a function field.
type fakeBackend struct {
	find  func(ctx context.Context, prefixes []Prefix) (Answer, error)
	calls atomic.Int64
	mu    sync.Mutex
	asked [][]Prefix
}

func (f *fakeBackend) FindPrefixes(ctx context.Context, prefixes []Prefix) (Answer, error) {
	f.calls.Add(1)
	f.mu.Lock()
	f.asked = append(f.asked, append([]Prefix(nil), prefixes...))
	f.mu.Unlock()
	return f.find(ctx, prefixes)
}

// knows answers with the given verdicts for expressions (by full hash).
func knows(ttl, negTTL time.Duration, entries map[string]Kind) func(context.Context, []Prefix) (Answer, error) {
	return func(_ context.Context, prefixes []Prefix) (Answer, error) {
		a := Answer{NegativeTTL: negTTL, Source: SourceServer}
		for expr, k := range entries {
			h := HashExpression(expr)
			for _, p := range prefixes {
				if h.Prefix() == p {
					a.Matches = append(a.Matches, Match{Hash: h, Verdict: Verdict{Kind: k, ThreatName: "T", TTL: ttl}})
				}
			}
		}
		return a, nil
	}
}

func newTestClient(t testing.TB, cfg Config) (*Client, *testutil.Clock) {
	t.Helper()
	c, err := New(cfg, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	clk := testutil.NewClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	c.now = clk.Now
	t.Cleanup(func() { c.Close() })
	return c, clk
}

func mustLookup(t testing.TB, c *Client, q Query) Verdict {
	t.Helper()
	v, err := c.Lookup(context.Background(), q)
	if err != nil {
		t.Fatalf("Lookup(%+v): %v", q, err)
	}
	return v
}

func TestClientCacheAndTTL(t *testing.T) {
	fb := &fakeBackend{find: knows(time.Minute, 5*time.Minute, map[string]Kind{"evil.test/": KindMalware})}
	c, clk := newTestClient(t, Config{Backend: fb})

	v := mustLookup(t, c, Query{URL: "http://evil.test/a/b.html?x=1"})
	if v.Kind != KindMalware || v.Source != SourceServer || v.Cached || v.TTL != time.Minute {
		t.Fatalf("first lookup = %+v, want malware from server, not cached, with TTL 1m", v)
	}
	if got := len(fb.asked[0]); got != 4 {
		t.Errorf("first request had %d prefixes, want 4 (all expressions in one batch)", got)
	}
	v = mustLookup(t, c, Query{URL: "http://evil.test/a/b.html?x=1"})
	if v.Kind != KindMalware || v.Source != SourceServer || !v.Cached || fb.calls.Load() != 1 {
		t.Errorf("second lookup = %+v after %d requests; want malware from server, cached, after 1", v, fb.calls.Load())
	}
	// Another URL on the same host: only its new expression is asked for.
	mustLookup(t, c, Query{URL: "http://evil.test/a/c.html"})
	if n := fb.calls.Load(); n != 2 || len(fb.asked[1]) != 1 {
		t.Errorf("got %d requests, last with %v; want 2, the last with 1 prefix", n, fb.asked[len(fb.asked)-1])
	}
	// The positive TTL expires: a new request.
	clk.Add(61 * time.Second)
	v = mustLookup(t, c, Query{URL: "http://evil.test/a/b.html?x=1"})
	if fb.calls.Load() != 3 || v.Source != SourceServer || v.Cached {
		t.Errorf("after TTL: %d requests, source %v, cached %v; want 3, server, not cached", fb.calls.Load(), v.Source, v.Cached)
	}
	// Negative caching: an unknown URL is asked for once per negative TTL.
	mustLookup(t, c, Query{URL: "http://good.test/"})
	mustLookup(t, c, Query{URL: "http://good.test/"})
	if fb.calls.Load() != 4 {
		t.Errorf("got %d requests, want 4", fb.calls.Load())
	}
	clk.Add(5*time.Minute + time.Second)
	if v := mustLookup(t, c, Query{URL: "http://good.test/"}); v.Kind != KindUnknown || fb.calls.Load() != 5 {
		t.Errorf("after negative TTL: %+v after %d requests, want unknown after 5", v, fb.calls.Load())
	}
	s := c.Stats()
	if s.Lookups != 7 || s.CacheHits != 2 || s.Requests != 5 {
		t.Errorf("Stats() = %+v", s)
	}
}

func TestClientCollapsesConcurrentLookups(t *testing.T) {
	release := make(chan struct{})
	answer := knows(time.Minute, time.Minute, map[string]Kind{"slow.test/": KindPhishing})
	fb := &fakeBackend{find: func(ctx context.Context, p []Prefix) (Answer, error) {
		<-release
		return answer(ctx, p)
	}}
	c, _ := newTestClient(t, Config{Backend: fb, Timeout: time.Minute})
	const n = 100
	var wg sync.WaitGroup
	verdicts := make([]Verdict, n)
	errs := make([]error, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			verdicts[i], errs[i] = c.Lookup(context.Background(), Query{URL: "http://slow.test/x"})
		}()
	}
	// Every lookup has missed the cache and the backend holds the first:
	// only then may it answer. A regression fails here, it does not hang.
	deadline := time.Now().Add(30 * time.Second)
	for c.Stats().CacheMisses < n || fb.calls.Load() < 1 {
		if time.Now().After(deadline) {
			close(release)
			t.Fatalf("after 30s: %d cache misses and %d backend calls, want %d and at least 1", c.Stats().CacheMisses, fb.calls.Load(), n)
		}
		time.Sleep(time.Millisecond)
	}
	close(release)
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	if got := fb.calls.Load(); got != 1 {
		t.Errorf("%d concurrent lookups made %d requests, want 1", n, got)
	}
	for i, v := range verdicts {
		if v.Kind != KindPhishing {
			t.Fatalf("lookup %d = %v, want phishing", i, v)
		}
	}
}

func TestClientFailPolicy(t *testing.T) {
	hang := func(ctx context.Context, _ []Prefix) (Answer, error) {
		<-ctx.Done()
		return Answer{}, ctx.Err()
	}
	tests := []struct {
		name   string
		policy FailPolicy
		blocks bool
	}{
		{"open", FailOpen, false},
		{"closed", FailClosed, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var logs testutil.SyncBuffer
			c, err := New(Config{Backend: &fakeBackend{find: hang}, Timeout: 30 * time.Millisecond, Fail: tt.policy}, zerolog.New(&logs))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			// The backend never answers: only the client's 30ms timeout
			// ends the lookup. Were it missing, the caller's deadline
			// (a guard against hanging, not a speed budget) would end it
			// with an error instead of the fail policy's verdict.
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			v, err := c.Lookup(ctx, Query{URL: "http://any.test/"})
			if err != nil {
				t.Fatalf("Lookup: %v, want the fail policy's verdict", err)
			}
			if v.Source != SourceFailure || v.Blocks() != tt.blocks {
				t.Errorf("got %+v, want source failure, blocks=%v", v, tt.blocks)
			}
			s := c.Stats()
			if s.Failures != 1 || s.FailOpen+s.FailClosed != 1 {
				t.Errorf("Stats() = %+v, want 1 failure counted", s)
			}
			if got := logs.String(); !strings.Contains(got, `"level":"error"`) || !strings.Contains(got, `"fail":"`+tt.name+`"`) {
				t.Errorf("log %q, want an error line naming the policy", got)
			}
			// Failures are not cached.
			mustLookup(t, c, Query{URL: "http://any.test/"})
			if c.Stats().Requests != 2 {
				t.Errorf("failure was cached")
			}
		})
	}
}

func TestClientBreaker(t *testing.T) {
	fail := true
	var mu sync.Mutex
	fb := &fakeBackend{find: func(ctx context.Context, p []Prefix) (Answer, error) {
		mu.Lock()
		defer mu.Unlock()
		if fail {
			return Answer{}, errors.New("down")
		}
		return Answer{NegativeTTL: time.Minute, Source: SourceServer}, nil
	}}
	c, clk := newTestClient(t, Config{Backend: fb, BreakerFailures: 3, BreakerCooldown: 10 * time.Second})
	for i := 0; i < 10; i++ {
		if v := mustLookup(t, c, Query{URL: fmt.Sprintf("http://h%d.test/", i)}); v.Source != SourceFailure {
			t.Fatalf("lookup %d: %+v, want failure", i, v)
		}
	}
	if got := fb.calls.Load(); got != 3 {
		t.Errorf("%d requests with the breaker open, want 3", got)
	}
	if s := c.Stats(); s.Breaker != BreakerOpen || s.Failures != 10 {
		t.Errorf("Stats() = %+v, want breaker open and 10 failures", s)
	}
	mu.Lock()
	fail = false
	mu.Unlock()
	clk.Add(11 * time.Second)
	if v := mustLookup(t, c, Query{URL: "http://probe.test/"}); v.Source != SourceServer {
		t.Errorf("probe = %+v, want an answer from the server", v)
	}
	if s := c.Stats(); s.Breaker != BreakerClosed {
		t.Errorf("breaker %v after a good probe, want closed", s.Breaker)
	}
}

func TestClientLocalLists(t *testing.T) {
	fb := &fakeBackend{find: knows(time.Minute, time.Minute, map[string]Kind{"fp.test/": KindMalware})}
	eicar := "275a021bbfb6489e54d471899f7db9d1663fc695ec2fe2a2c4538aabf651fd0f"
	c, _ := newTestClient(t, Config{Backend: fb,
		Block: []string{"blocked.test", "http://mixed.test/bad/", eicar},
		Allow: []string{"fp.test", "mixed.test"},
	})
	sum, _ := ParseFileHash(eicar)
	tests := []struct {
		name string
		q    Query
		want Verdict
	}{
		{"blocked host", Query{URL: "https://www.blocked.test/x"}, BlockedVerdict},
		{"allowed false positive", Query{URL: "http://fp.test/"}, AllowedVerdict},
		{"block wins over allow", Query{URL: "http://mixed.test/bad/x.exe"}, BlockedVerdict},
		{"allowed host", Query{URL: "http://mixed.test/good"}, AllowedVerdict},
		{"blocked hash", Query{SHA256: sum}, BlockedVerdict},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := mustLookup(t, c, tt.q); got.Kind != tt.want.Kind || got.Source != SourceLocal {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
	if fb.calls.Load() != 0 {
		t.Errorf("local lists made %d requests, want 0", fb.calls.Load())
	}
	if _, err := New(Config{Block: []string{"http://"}}, zerolog.Nop()); err == nil {
		t.Error("New with a bad block entry: no error")
	}
}

// TestClientProvenanceSurvivesCache: whoever gave a verdict — the block
// list, the allow list, the fail policy or the service — a lookup answers
// the same kind and the same Source on the 1st request, the 2nd (from the
// result cache), after the entry's TTL and after Reload; only Cached tells
// the cache hits apart. Fail-policy verdicts are never cached, and the
// first lookup after an outage gets the service's verdict.
func TestClientProvenanceSurvivesCache(t *testing.T) {
	var down atomic.Bool
	answer := knows(time.Minute, time.Minute, map[string]Kind{
		"blocked.test/": KindMalware, "allowed.test/": KindMalware, "unwanted.test/": KindUnwanted,
	})
	fb := &fakeBackend{find: func(ctx context.Context, p []Prefix) (Answer, error) {
		if down.Load() {
			return Answer{}, errors.New("down")
		}
		return answer(ctx, p)
	}}
	for _, tt := range []struct {
		name       string
		url        string
		fail       FailPolicy
		down       bool
		kind       Kind
		source     Source
		cachedOn2n bool // the 2nd lookup is a cache hit
	}{
		{"block list", "http://blocked.test/x", FailOpen, false, KindUnwanted, SourceLocal, true},
		{"allow list", "http://allowed.test/x", FailOpen, false, KindClean, SourceLocal, true},
		{"block list, service down", "http://blocked.test/x", FailClosed, true, KindUnwanted, SourceLocal, true},
		{"fail closed", "http://other.test/x", FailClosed, true, KindUnwanted, SourceFailure, false},
		{"fail open", "http://other.test/x", FailOpen, true, KindUnknown, SourceFailure, false},
		{"service verdict", "http://unwanted.test/x", FailClosed, false, KindUnwanted, SourceServer, true},
		{"service, nothing known", "http://other.test/x", FailClosed, false, KindUnknown, SourceServer, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			down.Store(tt.down)
			c, clk := newTestClient(t, Config{Backend: fb, Fail: tt.fail, BreakerFailures: 100,
				Block: []string{"blocked.test"}, Allow: []string{"allowed.test"}})
			for i, step := range []struct {
				name   string
				before func()
				cached bool
			}{
				{"1st", func() {}, false},
				{"2nd", func() {}, tt.cachedOn2n},
				{"3rd", func() {}, tt.cachedOn2n},
				{"after TTL", func() { clk.Add(LocalTTL + time.Second) }, false},
				{"after Reload", func() {
					if err := c.Reload(); err != nil {
						t.Fatal(err)
					}
				}, false},
				{"after Reload, 2nd", func() {}, tt.cachedOn2n},
			} {
				step.before()
				v := mustLookup(t, c, Query{URL: tt.url})
				if v.Kind != tt.kind || v.Source != tt.source || v.Cached != step.cached {
					t.Errorf("%d. %s: got %v (cached %v), want %v source=%v (cached %v)", i+1, step.name, v, v.Cached, tt.kind, tt.source, step.cached)
				}
			}
		})
	}
	// The outage ends: the next lookup gets the service's verdict, not a
	// remembered fail-closed block.
	down.Store(true)
	c, _ := newTestClient(t, Config{Backend: fb, Fail: FailClosed, BreakerFailures: 100})
	if v := mustLookup(t, c, Query{URL: "http://other.test/"}); v.Source != SourceFailure || !v.Blocks() {
		t.Fatalf("during the outage: got %v, want the fail-closed block", v)
	}
	down.Store(false)
	if v := mustLookup(t, c, Query{URL: "http://other.test/"}); v.Source != SourceServer || v.Kind != KindUnknown {
		t.Errorf("after the outage: got %v, want unknown from the server", v)
	}
}

func TestClientBadQueries(t *testing.T) {
	c, _ := newTestClient(t, Config{})
	for _, q := range []Query{{}, {SHA256: []byte{1, 2}}, {URL: "http://"}} {
		if _, err := c.Lookup(context.Background(), q); err == nil {
			t.Errorf("Lookup(%+v): no error", q)
		}
	}
}

func BenchmarkLookupCached(b *testing.B) {
	fb := &fakeBackend{find: knows(time.Hour, time.Hour, map[string]Kind{"evil.test/": KindMalware})}
	c, _ := newTestClient(b, Config{Backend: fb})
	c.now = time.Now
	q := Query{URL: "http://evil.test/some/path/file.html?q=1"}
	mustLookup(b, c, q)
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if v, _ := c.Lookup(ctx, q); !v.Cached {
			b.Fatal(v)
		}
	}
}

func BenchmarkLookupCachedParallel(b *testing.B) {
	fb := &fakeBackend{find: knows(time.Hour, time.Hour, nil)}
	c, _ := newTestClient(b, Config{Backend: fb})
	c.now = time.Now
	q := Query{URL: "http://good.test/some/path/file.html?q=1"}
	mustLookup(b, c, q)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			c.Lookup(context.Background(), q)
		}
	})
}

func BenchmarkCanonicalizeExpressions(b *testing.B) {
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		u, err := ParseURL("http://www.Example.com/a/b/../c/d.html?x=1#frag")
		if err != nil {
			b.Fatal(err)
		}
		for _, e := range u.Expressions() {
			_ = HashExpression(e)
		}
	}
}

func TestLookupCachedAllocatesNothing(t *testing.T) {
	fb := &fakeBackend{find: knows(time.Hour, time.Hour, map[string]Kind{"evil.test/": KindMalware})}
	c, _ := newTestClient(t, Config{Backend: fb})
	sum := make([]byte, 32)
	for _, q := range []Query{{URL: "http://evil.test/a?b=c"}, {SHA256: sum}} {
		mustLookup(t, c, q)
		ctx := context.Background()
		if n := testing.AllocsPerRun(100, func() { c.Lookup(ctx, q) }); n != 0 {
			t.Errorf("cached Lookup(%+v): %v allocations, want 0", q, n)
		}
	}
}

// TestFlush: after Flush the next lookup asks the backend again.
func TestFlush(t *testing.T) {
	fb := &fakeBackend{find: knows(time.Hour, time.Hour, map[string]Kind{"flush.example/": KindMalware})}
	c, err := New(Config{Backend: fb}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	q := Query{URL: "http://flush.example/"}
	c.Lookup(ctx, q)
	c.Lookup(ctx, q)
	if n := fb.calls.Load(); n != 1 {
		t.Fatalf("before Flush: backend asked %d times, want 1 (cached)", n)
	}
	c.Flush()
	if v, _ := c.Lookup(ctx, q); v.Kind != KindMalware {
		t.Errorf("after Flush: verdict %v, want malware", v.Kind)
	}
	if n := fb.calls.Load(); n != 2 {
		t.Errorf("after Flush: backend asked %d times, want 2", n)
	}
}

// inMemoryBackend marks a fakeBackend as answering from memory.
type inMemoryBackend struct{ *fakeBackend }

func (inMemoryBackend) InMemory() {}

// TestInMemoryResolvesAsRemote: a backend answering from memory skips the
// prefix cache (resolveInMemory); for the same answers its first verdict
// for a query — kind, names, Source, TTL — is the one a remote backend's
// goes through the prefix cache to (resolve), and the result cache keeps it
// as long: several matches of different severity, a match that expires at
// once, no negative TTL, a file hash, an unknown URL.
func TestInMemoryResolvesAsRemote(t *testing.T) {
	sum, _ := ParseFileHash("275a021bbfb6489e54d471899f7db9d1663fc695ec2fe2a2c4538aabf651fd0f")
	fileKey, err := FileKey(sum)
	if err != nil {
		t.Fatal(err)
	}
	known := map[Hash]Verdict{
		HashExpression("many.test/"):       {Kind: KindUnwanted, Category: "ads", TTL: time.Hour},
		HashExpression("many.test/a/"):     {Kind: KindMalware, ThreatName: "M", TTL: 10 * time.Minute},
		HashExpression("many.test/a/b"):    {Kind: KindPhishing, TTL: time.Minute},
		HashExpression("gone.test/"):       {Kind: KindMalware, ThreatName: "old", TTL: 0},
		HashExpression("clean.test/"):      {Kind: KindClean, TTL: 2 * time.Hour},
		HashExpression("clean.test/x.exe"): {Kind: KindUnwanted, ThreatName: "PUA", TTL: 3 * time.Minute},
		fileKey:                            {Kind: KindMalware, ThreatName: "EICAR", TTL: 24 * time.Hour},
	}
	answer := func(negTTL time.Duration) func(context.Context, []Prefix) (Answer, error) {
		return func(_ context.Context, prefixes []Prefix) (Answer, error) {
			a := Answer{NegativeTTL: negTTL, Source: SourceDatabase}
			for _, p := range prefixes {
				for h, v := range known {
					if h.Prefix() == p {
						a.Matches = append(a.Matches, Match{Hash: h, Verdict: v})
					}
				}
			}
			return a, nil
		}
	}
	queries := []Query{
		{URL: "http://many.test/a/b?q=1"}, {URL: "http://many.test/a/c"}, {URL: "http://www.many.test/"},
		{URL: "http://gone.test/"}, {URL: "https://clean.test/x.exe"}, {URL: "http://nothing.test/"},
		{SHA256: sum},
	}
	for _, negTTL := range []time.Duration{5 * time.Minute, 0} {
		for _, q := range queries {
			remote := &fakeBackend{find: answer(negTTL)}
			local := &fakeBackend{find: answer(negTTL)}
			rc, rclk := newTestClient(t, Config{Backend: remote})
			lc, lclk := newTestClient(t, Config{Backend: inMemoryBackend{local}})
			want, got := mustLookup(t, rc, q), mustLookup(t, lc, q)
			if got != want {
				t.Errorf("negative TTL %v, %+v: in memory %+v, through the prefix cache %+v", negTTL, q, got, want)
			}
			if local.calls.Load() != 1 {
				t.Errorf("%+v: %d backend calls, want 1", q, local.calls.Load())
			}
			// Cached exactly as long: a hit just before the TTL, a new
			// backend call just after it.
			if want.TTL > 0 {
				rclk.Add(want.TTL - time.Second)
				lclk.Add(want.TTL - time.Second)
				mustLookup(t, rc, q)
				mustLookup(t, lc, q)
				if local.calls.Load() != 1 {
					t.Errorf("%+v: a lookup within the TTL called the in-memory backend", q)
				}
				rclk.Add(2 * time.Second)
				lclk.Add(2 * time.Second)
				mustLookup(t, lc, q)
				if local.calls.Load() != 2 {
					t.Errorf("%+v: a lookup after the TTL %v did not call the in-memory backend", q, want.TTL)
				}
			}
		}
	}
}
