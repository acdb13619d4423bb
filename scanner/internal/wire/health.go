package wire

import (
	"context"
	"sync"
	"time"

	"github.com/picket-proxy/picket/scanner"
)

// Health is an engine client's health record and the loop that checks it.
type Health struct {
	mu   sync.Mutex
	h    scanner.EngineHealth
	stop chan struct{}
	wg   sync.WaitGroup
	once sync.Once
}

// NewHealth starts a record for an engine of kind at addr, not yet checked.
func NewHealth(kind, addr string) *Health {
	return &Health{h: scanner.EngineHealth{Kind: kind, Address: addr, Error: "not checked yet"}, stop: make(chan struct{})}
}

// Get returns the record.
func (h *Health) Get() scanner.EngineHealth {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.h
}

// Set records the outcome of a check or a scan: err nil is healthy.
func (h *Health) Set(err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.h.Checked = time.Now()
	if err != nil {
		h.h.Healthy, h.h.Error = false, err.Error()
		return
	}
	h.h.Healthy, h.h.Error = true, ""
}

// Update changes the record's other fields (version, signatures).
func (h *Health) Update(f func(*scanner.EngineHealth)) {
	h.mu.Lock()
	defer h.mu.Unlock()
	f(&h.h)
}

// Run calls check at once and then every interval until Stop; a Stop
// cancels a check in progress.
func (h *Health) Run(interval time.Duration, check func(context.Context) error) {
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			ctx, cancel := context.WithCancel(context.Background())
			go func() {
				select {
				case <-h.stop:
					cancel()
				case <-ctx.Done():
				}
			}()
			_ = check(ctx)
			cancel()
			select {
			case <-h.stop:
				return
			case <-t.C:
			}
		}
	}()
}

// Stop ends Run and waits for it. It is idempotent.
func (h *Health) Stop() {
	h.once.Do(func() { close(h.stop) })
	h.wg.Wait()
}
