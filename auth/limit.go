package auth

import (
	"net/netip"
	"sync"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
)

// limiter is a token bucket of failed attempts per key (a client address or
// a user name): each key may fail burst times, and earns one attempt back
// every window/burst. Buckets live in a bounded LRU; a key evicted from it
// starts afresh.
type limiter[K comparable] struct {
	burst float64
	rate  float64 // attempts earned per second
	mu    sync.Mutex
	lru   *lru.Cache[K, *bucket]
}

type bucket struct {
	tokens float64
	at     time.Time
}

func newLimiter[K comparable](burst int, window time.Duration, size int) *limiter[K] {
	c, _ := lru.New[K, *bucket](size) // size > 0
	return &limiter[K]{burst: float64(burst), rate: float64(burst) / window.Seconds(), lru: c}
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

// refill brings b up to now; the caller holds l.mu.
func (l *limiter[K]) refill(b *bucket, now time.Time) {
	if d := now.Sub(b.at).Seconds(); d > 0 {
		b.tokens = min(l.burst, b.tokens+d*l.rate)
		b.at = now
	}
}

// wait returns how long the key must wait before its next attempt, 0 if it
// may try now.
func (l *limiter[K]) wait(key K, now time.Time) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	b, ok := l.lru.Peek(key)
	if !ok {
		return 0
	}
	l.refill(b, now)
	if b.tokens >= 1 {
		return 0
	}
	return time.Duration((1 - b.tokens) / l.rate * float64(time.Second))
}

// fail takes one attempt from the key's bucket.
func (l *limiter[K]) fail(key K, now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	b, ok := l.lru.Get(key)
	if !ok {
		b = &bucket{tokens: l.burst, at: now}
		l.lru.Add(key, b)
	}
	l.refill(b, now)
	b.tokens = max(b.tokens-1, 0)
}
