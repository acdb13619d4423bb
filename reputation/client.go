package reputation

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/sync/singleflight"
)

// Query is what to look up: a URL, file hashes, or both (the most severe
// verdict wins). Hashes are raw digests of their algorithm's length.
type Query struct {
	URL    string
	SHA256 []byte
	SHA1   []byte
	MD5    []byte
}

// Lookuper is the interface the proxy depends on; *Client implements it.
type Lookuper interface {
	Lookup(ctx context.Context, q Query) (Verdict, error)
}

var _ Lookuper = (*Client)(nil)

// ErrEmptyQuery is returned for a Query with nothing to look up.
var ErrEmptyQuery = errors.New("reputation: empty query")

// ErrBreakerOpen is the failure recorded when the circuit breaker refuses a
// request; the fail policy then decides the verdict.
var ErrBreakerOpen = errors.New("reputation: circuit breaker open")

// FailPolicy decides the verdict when the backend cannot answer.
type FailPolicy uint8

// The fail policies.
const (
	FailOpen   FailPolicy = iota // unknown: the request goes through
	FailClosed                   // a blocking verdict
)

func (p FailPolicy) String() string {
	if p == FailClosed {
		return "closed"
	}
	return "open"
}

// Config configures a Client. The zero value is a client with no backend
// (only local lists answer), fail-open, and the defaults below.
type Config struct {
	// Backend answers prefix lookups: a *Remote or the embedded database.
	// Nil means only the local lists answer; everything else is unknown.
	Backend Backend
	// Allow and Block are the administrator's lists: URLs, host expressions
	// ("example.org", "example.org/path/") or hex MD5/SHA-1/SHA-256 file
	// hashes. Block is checked before Allow.
	Allow, Block []string
	// Timeout bounds one backend request; 0 means DefaultTimeout.
	Timeout time.Duration
	// CacheSize is the number of entries in each of the result and prefix
	// caches; 0 means DefaultCacheSize.
	CacheSize int
	// Fail is the policy when the backend cannot answer in time.
	Fail FailPolicy
	// BreakerFailures is how many consecutive failures open the circuit
	// breaker; 0 means DefaultBreakerFailures.
	BreakerFailures int
	// BreakerCooldown is how long the breaker stays open before a probe;
	// 0 means DefaultBreakerCooldown.
	BreakerCooldown time.Duration
	// Now is the clock of cache expiry and of the breaker's cooldown; nil
	// means time.Now. Tests set it to move past a TTL without sleeping.
	Now func() time.Time
}

// Defaults of Config.
const (
	DefaultTimeout         = 300 * time.Millisecond
	DefaultCacheSize       = 10000
	DefaultBreakerFailures = 5
	DefaultBreakerCooldown = 10 * time.Second
	// LocalTTL is how long verdicts of the local lists, or of a client with
	// no backend, are cached.
	LocalTTL = 10 * time.Minute
)

// Verdicts given by the local lists and the fail-closed policy.
var (
	BlockedVerdict    = Verdict{Kind: KindUnwanted, Category: "blocklist", ThreatName: "blocked by administrator", Source: SourceLocal}
	AllowedVerdict    = Verdict{Kind: KindClean, Category: "allowlist", Source: SourceLocal}
	FailClosedVerdict = Verdict{Kind: KindUnwanted, Category: "unavailable", ThreatName: "reputation service unavailable", Source: SourceFailure}
	FailOpenVerdict   = Verdict{Kind: KindUnknown, Source: SourceFailure}
)

// Stats are a Client's counters since it was created.
type Stats struct {
	Lookups      uint64 // calls to Lookup
	CacheHits    uint64 // answered from the result cache
	CacheMisses  uint64 // not in the result cache
	LocalHits    uint64 // answered by the local lists
	Requests     uint64 // backend requests sent
	Failures     uint64 // backend requests failed or refused by the breaker
	FailOpen     uint64 // verdicts given by the fail-open policy
	FailClosed   uint64 // verdicts given by the fail-closed policy
	Breaker      BreakerState
	CachedURLs   int // entries in the result cache
	CachedPrefix int // entries in the prefix cache
}

// Client looks verdicts up: local lists, then caches, then the backend.
// It is safe for concurrent use.
type Client struct {
	backend  Backend
	inMemory bool // backend is InMemory: resolved in the caller's goroutine
	timeout  time.Duration
	fail     FailPolicy
	log      zerolog.Logger
	block    map[Hash]struct{}
	allow    map[Hash]struct{}
	caches   caches
	group    singleflight.Group
	breaker  breaker

	// now is the clock; tests replace it.
	now func() time.Time

	lookups, hits, misses, local             atomic.Uint64
	requests, failures, failOpen, failClosed atomic.Uint64
	closeOnce                                sync.Once
}

// New returns a Client. It fails on an invalid local list entry.
func New(cfg Config, log zerolog.Logger) (*Client, error) {
	c := &Client{
		backend: cfg.Backend,
		timeout: cfg.Timeout,
		fail:    cfg.Fail,
		log:     log.With().Str(LogComponent, "reputation").Logger(),
		now:     cfg.Now,
		breaker: breaker{threshold: cfg.BreakerFailures, cooldown: cfg.BreakerCooldown},
	}
	if c.now == nil {
		c.now = time.Now
	}
	_, c.inMemory = cfg.Backend.(InMemory)
	if c.timeout <= 0 {
		c.timeout = DefaultTimeout
	}
	if c.breaker.threshold <= 0 {
		c.breaker.threshold = DefaultBreakerFailures
	}
	if c.breaker.cooldown <= 0 {
		c.breaker.cooldown = DefaultBreakerCooldown
	}
	size := cfg.CacheSize
	if size <= 0 {
		size = DefaultCacheSize
	}
	var err error
	if c.caches, err = newCaches(size); err != nil {
		return nil, err
	}
	if c.block, err = listSet(cfg.Block); err != nil {
		return nil, fmt.Errorf("reputation: block list: %w", err)
	}
	if c.allow, err = listSet(cfg.Allow); err != nil {
		return nil, fmt.Errorf("reputation: allow list: %w", err)
	}
	return c, nil
}

// ParseListEntry returns the lookup hash of a local list entry: a hex
// MD5/SHA-1/SHA-256 file hash, or a URL or host expression.
func ParseListEntry(s string) (Hash, error) {
	if IsFileHash(s) {
		b, err := ParseFileHash(s)
		if err != nil {
			return Hash{}, err
		}
		return FileKey(b)
	}
	e, err := Expression(s)
	if err != nil {
		return Hash{}, fmt.Errorf("%q: %w", s, err)
	}
	return HashExpression(e), nil
}

func listSet(entries []string) (map[Hash]struct{}, error) {
	set := make(map[Hash]struct{}, len(entries))
	var errs []error
	for _, s := range entries {
		h, err := ParseListEntry(s)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		set[h] = struct{}{}
	}
	return set, errors.Join(errs...)
}

// Lookup returns the verdict for q. An error means the query itself is bad
// (ErrInvalidURL, ErrBadHash, ErrEmptyQuery) or ctx ended; backend failures
// are not errors but verdicts of the fail policy (Source == SourceFailure).
func (c *Client) Lookup(ctx context.Context, q Query) (Verdict, error) {
	c.lookups.Add(1)
	key, err := q.key()
	if err != nil {
		return Verdict{}, err
	}
	now := c.now()
	if e, ok := c.caches.results.Get(key); ok && now.Before(e.expires) {
		c.hits.Add(1)
		return e.answer(now), nil
	}
	c.misses.Add(1)
	if c.inMemory {
		// Nothing to wait for: resolved here (concurrent lookups of one
		// query each do the few microseconds of work).
		return c.resolveInMemory(ctx, q, key)
	}
	if c.backend == nil {
		return c.resolve(ctx, q, key)
	}
	// Concurrent lookups of one query share one resolution; it runs on a
	// context that the first caller's cancellation does not end.
	ch := c.group.DoChan(key.String(), func() (any, error) {
		return c.resolve(context.WithoutCancel(ctx), q, key)
	})
	select {
	case r := <-ch:
		if r.Err != nil {
			return Verdict{}, r.Err
		}
		return r.Val.(Verdict), nil
	case <-ctx.Done():
		return Verdict{}, ctx.Err()
	}
}

// resolve answers a query that missed the result cache.
func (c *Client) resolve(ctx context.Context, q Query, key resultKey) (Verdict, error) {
	// 0. A lookup that just finished may have answered this already.
	now := c.now()
	if e, ok := c.caches.results.Peek(key); ok && now.Before(e.expires) {
		return e.answer(now), nil
	}
	// 1. The full hashes to look for.
	targets, err := q.hashes()
	if err != nil {
		return Verdict{}, err
	}
	// 2. The administrator's lists.
	if v, ok := c.checkLists(targets); ok {
		c.local.Add(1)
		return c.store(key, v, now.Add(LocalTTL), now), nil
	}
	// 3. The prefix cache: every prefix fresh means every expression is
	// answered (the verdict keeps its backend's Source).
	known, expires, missing := c.evaluate(targets, now, nil)
	if len(missing) == 0 {
		known.Cached = true
		return c.store(key, known, expires, now), nil
	}
	if c.backend == nil {
		known.Source = SourceNone
		return c.store(key, known, now.Add(LocalTTL), now), nil
	}
	// 4. One batched backend request for the missing prefixes. The
	// prefixes the cache answered count as read above: read again, they
	// may have left the cache (other lookups filled it) or expired
	// meanwhile, and a cached block would be lost.
	ans, err := c.fetch(ctx, missing)
	if err != nil {
		return c.failed(known), nil
	}
	now = c.now()
	fresh := c.fill(missing, ans, now)
	v, freshExpires, _ := c.evaluate(targets, now, fresh)
	if known.Worse(v) {
		v = known
	}
	if expires.IsZero() || !freshExpires.IsZero() && freshExpires.Before(expires) {
		expires = freshExpires
	}
	v.Source, v.Cached = ans.Source, false
	return c.store(key, v, expires, now), nil
}

// resolveInMemory answers a query that missed the result cache from an
// in-memory backend. The prefix cache is not used: it stands in for a remote
// backend's round trip, and the backend answers from memory for less than
// the cache costs to ask and to fill (30 LRU reads, then 30 writes, for a URL
// of five host suffixes and six paths). The verdict is the one resolve
// finds from the same answer.
func (c *Client) resolveInMemory(ctx context.Context, q Query, key resultKey) (Verdict, error) {
	targets, err := q.hashes()
	if err != nil {
		return Verdict{}, err
	}
	now := c.now()
	if v, ok := c.checkLists(targets); ok {
		c.local.Add(1)
		return c.store(key, v, now.Add(LocalTTL), now), nil
	}
	prefixes := make([]Prefix, 0, len(targets))
	for _, h := range targets {
		if p := h.Prefix(); !containsPrefix(prefixes, p) {
			prefixes = append(prefixes, p)
		}
	}
	ans, err := c.fetch(ctx, prefixes)
	if err != nil {
		return c.failed(Verdict{}), nil
	}
	v, expires := answerFor(targets, ans, now)
	return c.store(key, v, expires, now), nil
}

// answerFor is the verdict for targets in a backend's answer to their
// prefixes, and when it expires: the most severe verdict among the targets'
// matches, each valid for its TTL, and "nothing known" for the answer's
// negative TTL.
func answerFor(targets []Hash, ans Answer, now time.Time) (Verdict, time.Time) {
	v := Verdict{Source: ans.Source}
	var expires time.Time
	for _, h := range targets {
		exp := now.Add(ans.NegativeTTL)
		for _, m := range ans.Matches {
			if m.Hash == h {
				exp = now.Add(m.Verdict.TTL)
				if mv := m.Verdict; exp.After(now) && mv.Worse(v) {
					mv.Source = ans.Source
					v = mv
				}
				break
			}
		}
		if !exp.After(now) {
			continue // expired at once: answers nothing about h
		}
		if expires.IsZero() || exp.Before(expires) {
			expires = exp
		}
	}
	return v, expires
}

func (c *Client) checkLists(targets []Hash) (Verdict, bool) {
	for _, set := range []struct {
		m map[Hash]struct{}
		v Verdict
	}{{c.block, BlockedVerdict}, {c.allow, AllowedVerdict}} {
		for _, h := range targets {
			if _, ok := set.m[h]; ok {
				return set.v, true
			}
		}
	}
	return Verdict{}, false
}

// evaluate matches targets against the prefix cache or, when fresh is not
// nil, against those fresh answers only (the targets of other prefixes are
// skipped). It returns the most severe verdict found (its Source is the
// backend's that answered, also for "nothing known"), when it expires, and
// the prefixes that must be asked for.
func (c *Client) evaluate(targets []Hash, now time.Time, fresh map[Prefix]prefixEntry) (Verdict, time.Time, []Prefix) {
	var (
		v       Verdict
		expires time.Time
		missing []Prefix
	)
	for _, h := range targets {
		p := h.Prefix()
		var (
			e  prefixEntry
			ok bool
		)
		if fresh != nil {
			e, ok = fresh[p]
		} else {
			e, ok = c.caches.prefixes.Get(p)
		}
		res, m, exp := cacheMiss, cachedMatch{}, time.Time{}
		if ok {
			res, m, exp = e.lookup(h, now)
		}
		switch res {
		case cacheMiss:
			if fresh == nil && !containsPrefix(missing, p) {
				missing = append(missing, p)
			}
			continue
		case cachePositiveHit:
			if m.verdict.Worse(v) {
				v = m.verdict
			}
		}
		if v.Source == SourceNone {
			v.Source = e.source
		}
		if expires.IsZero() || exp.Before(expires) {
			expires = exp
		}
	}
	return v, expires, missing
}

func containsPrefix(ps []Prefix, p Prefix) bool {
	for _, q := range ps {
		if q == p {
			return true
		}
	}
	return false
}

// fill caches an answer for the asked prefixes and returns the entries.
func (c *Client) fill(asked []Prefix, ans Answer, now time.Time) map[Prefix]prefixEntry {
	fresh := make(map[Prefix]prefixEntry, len(asked))
	for _, p := range asked {
		fresh[p] = prefixEntry{negExpires: now.Add(ans.NegativeTTL), source: ans.Source}
	}
	for _, m := range ans.Matches {
		p := m.Hash.Prefix()
		e, ok := fresh[p]
		if !ok {
			continue // not asked for: ignore
		}
		v := m.Verdict
		v.Source = ans.Source
		e.matches = append(e.matches, cachedMatch{hash: m.Hash, verdict: v, expires: now.Add(m.Verdict.TTL)})
		fresh[p] = e
	}
	for p, e := range fresh {
		c.caches.prefixes.Add(p, e)
	}
	return fresh
}

// fetch sends one request through the breaker with the lookup timeout.
func (c *Client) fetch(ctx context.Context, prefixes []Prefix) (Answer, error) {
	if !c.breaker.allow(c.now()) {
		return Answer{}, ErrBreakerOpen
	}
	if !c.inMemory {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.timeout)
		defer cancel()
	}
	c.requests.Add(1)
	start := time.Now()
	ans, err := c.backend.FindPrefixes(ctx, prefixes)
	if from, to := c.breaker.record(err == nil, c.now()); from != to {
		ev := c.log.Warn()
		if to == BreakerOpen {
			ev = c.log.Error()
		}
		ev.Str(LogBreaker, to.String()).Msg("reputation circuit breaker changed state")
	}
	if err != nil {
		c.log.Error().Err(err).Int(LogPrefixes, len(prefixes)).Dur(LogElapsed, time.Since(start)).
			Str(LogPolicy, c.fail.String()).Msg("reputation lookup failed")
	}
	return ans, err
}

// failed applies the fail policy; a blocking verdict already known from the
// prefix cache still stands (with its backend's Source). Neither is stored
// in the result cache: the next lookup asks the backend again (or the open
// breaker answers at once), so a fail-policy verdict lasts exactly as long
// as the outage and never outlives it as a cached "unwanted" verdict.
func (c *Client) failed(known Verdict) Verdict {
	c.failures.Add(1)
	if known.Blocks() {
		known.Cached = true
		return known
	}
	if c.fail == FailClosed {
		c.failClosed.Add(1)
		return FailClosedVerdict
	}
	c.failOpen.Add(1)
	return FailOpenVerdict
}

// store puts a verdict in the result cache until expires and returns it
// with its TTL set.
func (c *Client) store(key resultKey, v Verdict, expires, now time.Time) Verdict {
	if !expires.After(now) {
		v.TTL = 0
		return v
	}
	v.TTL = expires.Sub(now)
	c.caches.results.Add(key, resultEntry{verdict: v, expires: expires})
	return v
}

// Stats returns the counters.
func (c *Client) Stats() Stats {
	return Stats{
		Lookups:      c.lookups.Load(),
		CacheHits:    c.hits.Load(),
		CacheMisses:  c.misses.Load(),
		LocalHits:    c.local.Load(),
		Requests:     c.requests.Load(),
		Failures:     c.failures.Load(),
		FailOpen:     c.failOpen.Load(),
		FailClosed:   c.failClosed.Load(),
		Breaker:      c.breaker.current(),
		CachedURLs:   c.caches.results.Len(),
		CachedPrefix: c.caches.prefixes.Len(),
	}
}

// Reload asks the backend to reload its data, if it can (the embedded
// database rereads its feeds: SIGHUP), and empties the caches so that new
// verdicts apply at once.
func (c *Client) Reload() error {
	var err error
	if r, ok := c.backend.(interface{ Reload() error }); ok {
		err = r.Reload()
	}
	c.caches.results.Purge()
	c.caches.prefixes.Purge()
	return err
}

// Backend returns the backend the client asks (for status pages: the
// embedded database's version and size).
func (c *Client) Backend() Backend { return c.backend }

// Flush empties the verdict caches (results and prefixes) without touching
// the backend: the next lookups ask it again.
func (c *Client) Flush() {
	c.caches.results.Purge()
	c.caches.prefixes.Purge()
}

// Close closes the backend if it is an io.Closer (the embedded database's
// reloader). It is idempotent.
func (c *Client) Close() error {
	var err error
	c.closeOnce.Do(func() {
		if cl, ok := c.backend.(io.Closer); ok {
			err = cl.Close()
		}
	})
	return err
}

// key builds the result cache key without allocating.
func (q Query) key() (resultKey, error) {
	k := resultKey{url: q.URL}
	for i, h := range [][]byte{q.SHA256, q.SHA1, q.MD5} {
		if h == nil {
			continue
		}
		want := [...]int{32, 20, 16}[i]
		if len(h) != want {
			return resultKey{}, fmt.Errorf("%w: got %d bytes, want %d", ErrBadHash, len(h), want)
		}
		k.has |= 1 << i
	}
	if q.URL == "" && k.has == 0 {
		return resultKey{}, ErrEmptyQuery
	}
	copy(k.sha256[:], q.SHA256)
	copy(k.sha1[:], q.SHA1)
	copy(k.md5[:], q.MD5)
	return k, nil
}

// String names the key for singleflight.
func (k resultKey) String() string {
	return fmt.Sprintf("%d|%s|%s|%s|%s", k.has, hex.EncodeToString(k.sha256[:]),
		hex.EncodeToString(k.sha1[:]), hex.EncodeToString(k.md5[:]), k.url)
}

// hashes returns the full hashes to look for: those of the URL's
// expressions, then the file keys.
func (q Query) hashes() ([]Hash, error) {
	var out []Hash
	if q.URL != "" {
		u, err := ParseURL(q.URL)
		if err != nil {
			return nil, err
		}
		for _, e := range u.Expressions() {
			out = append(out, HashExpression(e))
		}
	}
	for _, sum := range [][]byte{q.SHA256, q.SHA1, q.MD5} {
		if sum == nil {
			continue
		}
		h, err := FileKey(sum)
		if err != nil {
			return nil, err
		}
		out = append(out, h)
	}
	return out, nil
}
