package policy

import (
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// maxTracked bounds the hosts whose handshake failures are remembered.
const maxTracked = 4096

// autoBypass remembers hosts whose clients fail the intercepted handshake
// (pinned apps) and tunnels them untouched for a while.
type autoBypass struct {
	dur       time.Duration // 0: disabled
	threshold int
	window    time.Duration

	mu       sync.Mutex
	failures map[string][]time.Time // recent failures, oldest first
	until    map[string]time.Time   // bypassed hosts and when that ends
	count    atomic.Int32           // len(until): Decide skips the lock when 0
}

func (a *autoBypass) init(in Inspection) {
	a.dur, a.threshold, a.window = in.AutoBypass, in.AutoBypassFailures, in.AutoBypassWindow
	if a.threshold <= 0 {
		a.threshold = DefaultAutoBypassFailures
	}
	if a.window <= 0 {
		a.window = DefaultAutoBypassWindow
	}
	a.failures = make(map[string][]time.Time)
	a.until = make(map[string]time.Time)
}

// NoteHandshakeFailure records that a client failed the TLS handshake with
// an intercepted host (host or host:port). It returns true when this
// failure starts an auto-bypass: the proxy logs it, and the host is then
// tunnelled untouched for Inspection.AutoBypass. It does nothing when
// auto-bypass is disabled or the host is not a valid name or address.
func (e *Engine) NoteHandshakeFailure(host string) bool {
	a := &e.auto
	t := parseTarget(host)
	if a.dur <= 0 || !t.valid() {
		return false
	}
	key, now := t.key(), e.now()
	a.mu.Lock()
	defer a.mu.Unlock()
	if until, ok := a.until[key]; ok && now.Before(until) {
		return false
	}
	fs := a.failures[key]
	cut := 0
	for cut < len(fs) && now.Sub(fs[cut]) >= a.window {
		cut++
	}
	fs = append(fs[cut:], now)
	if len(fs) < a.threshold {
		if len(a.failures) >= maxTracked {
			a.pruneFailures(now)
		}
		if _, ok := a.failures[key]; ok || len(a.failures) < maxTracked {
			a.failures[key] = fs
		}
		return false
	}
	delete(a.failures, key)
	if len(a.until) >= maxTracked {
		a.pruneUntil(now)
		if len(a.until) >= maxTracked {
			return false
		}
	}
	a.until[key] = now.Add(a.dur)
	a.count.Store(int32(len(a.until)))
	return true
}

// AutoBypassed returns the hosts currently auto-bypassed, sorted, for the
// administrator to see (and make permanent in tls.bypass).
func (e *Engine) AutoBypassed() []string {
	a := &e.auto
	now := e.now()
	a.mu.Lock()
	defer a.mu.Unlock()
	a.pruneUntil(now)
	out := make([]string, 0, len(a.until))
	for h := range a.until {
		out = append(out, h)
	}
	slices.Sort(out)
	return out
}

// active reports whether host (a target key) is auto-bypassed now.
func (a *autoBypass) active(key string, now time.Time) bool {
	if a.count.Load() == 0 || key == "" {
		return false
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	until, ok := a.until[key]
	if ok && !now.Before(until) {
		delete(a.until, key)
		a.count.Store(int32(len(a.until)))
		return false
	}
	return ok
}

func (a *autoBypass) pruneUntil(now time.Time) {
	for h, until := range a.until {
		if !now.Before(until) {
			delete(a.until, h)
		}
	}
	a.count.Store(int32(len(a.until)))
}

func (a *autoBypass) pruneFailures(now time.Time) {
	for h, fs := range a.failures {
		if len(fs) == 0 || now.Sub(fs[len(fs)-1]) >= a.window {
			delete(a.failures, h)
		}
	}
}
