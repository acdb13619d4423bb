package auth

import (
	"net/netip"
	"sync"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"golang.org/x/time/rate"
)

// limiter is a token bucket of failed attempts per key (a client address or
// a user name): each key may fail burst times, and earns one attempt back
// every window/burst. The buckets are golang.org/x/time/rate's, read and
// drawn at the time the caller gives (the authenticator's clock), in a
// bounded LRU; a key evicted from it starts afresh.
type limiter[K comparable] struct {
	burst int
	rate  rate.Limit // attempts earned per second
	mu    sync.Mutex // makes finding or adding a key's bucket one step
	lru   *lru.Cache[K, *rate.Limiter]
}

func newLimiter[K comparable](burst int, window time.Duration, size int) *limiter[K] {
	c, _ := lru.New[K, *rate.Limiter](size) // size > 0
	return &limiter[K]{burst: burst, rate: rate.Limit(float64(burst) / window.Seconds()), lru: c}
}

// clientKey is the address failures are counted against: an IPv4 address,
// or the /64 of an IPv6 address (one host usually holds a whole /64).
func clientKey(a netip.Addr) netip.Addr {
	a = a.Unmap().WithZone("")
	if a.Is6() {
		p, _ := a.Prefix(64)
		return p.Addr()
	}
	return a
}

// wait returns how long the key must wait before its next attempt, 0 if it
// may try now.
func (l *limiter[K]) wait(key K, now time.Time) time.Duration {
	l.mu.Lock()
	b, ok := l.lru.Peek(key)
	l.mu.Unlock()
	if !ok {
		return 0
	}
	tokens := b.TokensAt(now)
	if tokens >= 1 {
		return 0
	}
	return time.Duration((1 - tokens) / float64(l.rate) * float64(time.Second))
}

// fail takes one attempt from the key's bucket. It never waits: the failure
// has happened. Failures of attempts that passed wait together may overdraw
// the bucket; the key then waits for each of them.
func (l *limiter[K]) fail(key K, now time.Time) {
	l.mu.Lock()
	b, ok := l.lru.Get(key)
	if !ok {
		b = rate.NewLimiter(l.rate, l.burst)
		l.lru.Add(key, b)
	}
	l.mu.Unlock()
	b.ReserveN(now, 1)
}
