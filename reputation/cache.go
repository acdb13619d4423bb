package reputation

import (
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
// it expires.
type resultEntry struct {
	verdict Verdict
	expires time.Time
}

// answer is the entry as a lookup's answer at now: its provenance (Source)
// unchanged, marked Cached, with the TTL left.
func (e resultEntry) answer(now time.Time) Verdict {
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
	results  *lru.Cache[resultKey, resultEntry]
	prefixes *lru.Cache[Prefix, prefixEntry]
}

func newCaches(size int) (caches, error) {
	r, err := lru.New[resultKey, resultEntry](size)
	if err != nil {
		return caches{}, err
	}
	p, err := lru.New[Prefix, prefixEntry](size)
	if err != nil {
		return caches{}, err
	}
	return caches{results: r, prefixes: p}, nil
}
