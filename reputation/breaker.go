package reputation

import (
	"fmt"
	"sync"
	"time"
)

// BreakerState is the state of the client's circuit breaker.
type BreakerState uint8

// The breaker states.
const (
	BreakerClosed   BreakerState = iota // requests flow
	BreakerOpen                         // requests fail at once until the cooldown ends
	BreakerHalfOpen                     // one probe request is let through
)

func (s BreakerState) String() string {
	switch s {
	case BreakerClosed:
		return "closed"
	case BreakerOpen:
		return "open"
	case BreakerHalfOpen:
		return "half-open"
	}
	return fmt.Sprintf("BreakerState(%d)", uint8(s))
}

// breaker opens after threshold consecutive failures, stays open for
// cooldown, then lets one probe through: success closes it, failure opens
// it again.
type breaker struct {
	threshold int
	cooldown  time.Duration

	mu       sync.Mutex
	state    BreakerState
	failures int
	openedAt time.Time
	probing  bool
}

// allow reports whether a request may be sent now.
func (b *breaker) allow(now time.Time) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch b.state {
	case BreakerOpen:
		if now.Sub(b.openedAt) < b.cooldown {
			return false
		}
		b.state, b.probing = BreakerHalfOpen, true
		return true
	case BreakerHalfOpen:
		if b.probing {
			return false
		}
		b.probing = true
		return true
	}
	return true
}

// record notes a request's outcome and returns the state before and after.
func (b *breaker) record(ok bool, now time.Time) (from, to BreakerState) {
	b.mu.Lock()
	defer b.mu.Unlock()
	from = b.state
	if ok {
		b.failures, b.state, b.probing = 0, BreakerClosed, false
		return from, b.state
	}
	b.failures++
	if b.state == BreakerHalfOpen || b.failures >= b.threshold {
		b.state, b.openedAt, b.probing = BreakerOpen, now, false
	}
	return from, b.state
}

func (b *breaker) current() BreakerState {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.state
}
