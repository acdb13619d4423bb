package reputation

import (
	"sync/atomic"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
)

// resultKey identifies a Query in the result cache. It is comparable and
// built without allocating, so a cache hit allocates nothing.
type resultKey struct {
	url    string
	sha256 [32]byte
	sha1   [20]byte
	md5    [16]byte
	has    uint8 // bit 0 sha256, 1 sha1, 2 md5
}

// resultEntry is a final verdict, with the Source that gave it, and when
// it expires. verdict and expires never change once the entry is cached;
// moved is the results cache's tick when the entry last went to the front.
type resultEntry struct {
	verdict Verdict
	expires time.Time
	moved   atomic.Uint64
}

// answer is the entry as a lookup's answer at now: its provenance (Source)
// unchanged, marked Cached, with the TTL left.
func (e *resultEntry) answer(now time.Time) Verdict {
	v := e.verdict
	v.Cached, v.TTL = true, e.expires.Sub(now)
	return v
}

// cachedMatch is one full hash under a cached prefix.
type cachedMatch struct {
	hash    Hash
	verdict Verdict
	expires time.Time
}

// prefixEntry is what a backend said about one prefix: its full hashes, each
// with its own expiry, and until when no other full hash exists under it
// (negative caching).
type prefixEntry struct {
	matches    []cachedMatch
	negExpires time.Time
	source     Source // the backend that answered
}

// cacheResult is the three-way outcome of looking a full hash up in the
// prefix cache.
type cacheResult uint8

const (
	cacheMiss        cacheResult = iota // unknown or expired: ask the backend
	cachePositiveHit                    // the full hash is listed and fresh
	cacheNegativeHit                    // the prefix is fresh and the hash is not under it
)

// lookup classifies h against e at now.
func (e prefixEntry) lookup(h Hash, now time.Time) (cacheResult, cachedMatch, time.Time) {
	for _, m := range e.matches {
		if m.hash == h {
			if now.Before(m.expires) {
				return cachePositiveHit, m, m.expires
			}
			return cacheMiss, cachedMatch{}, time.Time{}
		}
	}
	if now.Before(e.negExpires) {
		return cacheNegativeHit, cachedMatch{}, e.negExpires
	}
	return cacheMiss, cachedMatch{}, time.Time{}
}

// caches holds the two LRU caches of a Client.
type caches struct {
	results  *resultCache
	prefixes *lru.Cache[Prefix, prefixEntry]
}

func newCaches(size int) (caches, error) {
	r, err := lru.New[resultKey, *resultEntry](size)
	if err != nil {
		return caches{}, err
	}
	p, err := lru.New[Prefix, prefixEntry](size)
	if err != nil {
		return caches{}, err
	}
	return caches{results: &resultCache{lru: r, fresh: uint64(size / 4)}, prefixes: p}, nil
}

// resultCache is the cache of final verdicts: an LRU whose hits move an
// entry to the front only when it is no longer among the most recently
// moved. Every request of a browsing user looks its URL up here, and
// moving an entry takes the cache's write lock and writes the entry's list
// neighbours (memory the two cores then pass back and forth); a hit on an
// entry moved to the front a moment ago only reads, under the read lock.
//
// The tick counts the entries that went to the front (added, or moved by
// a hit). A hit moves its entry again once more than a quarter of the
// cache's size went to the front since the entry last did, so at most that
// many entries are ahead of it that a strict LRU would have behind it. An
// entry leaves only from the back, with the cache's size ahead of it, so
// one hit at least once in every half of that many ticks stays, whatever
// else is added or hit (TestResultCacheKeepsHitEntries).
type resultCache struct {
	lru   *lru.Cache[resultKey, *resultEntry]
	tick  atomic.Uint64
	fresh uint64 // ticks for which a moved entry stays where it is: size/4
}

// get returns the entry of key, moving it to the front when it is due.
func (c *resultCache) get(key resultKey) (*resultEntry, bool) {
	e, ok := c.lru.Peek(key)
	if !ok {
		return nil, false
	}
	if now := c.tick.Load(); now-e.moved.Load() > c.fresh {
		e.moved.Store(c.tick.Add(1))
		c.lru.Get(key) // to the front (if key still names an entry)
	}
	return e, true
}

// peek returns the entry of key without moving it.
func (c *resultCache) peek(key resultKey) (*resultEntry, bool) { return c.lru.Peek(key) }

// add caches v for key until expires, at the front.
func (c *resultCache) add(key resultKey, v Verdict, expires time.Time) {
	e := &resultEntry{verdict: v, expires: expires}
	e.moved.Store(c.tick.Add(1))
	c.lru.Add(key, e)
}

func (c *resultCache) len() int { return c.lru.Len() }
func (c *resultCache) purge()   { c.lru.Purge() }
