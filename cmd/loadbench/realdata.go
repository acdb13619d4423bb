package main

import (
	"bufio"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/picket-proxy/picket/internal/feedgen"
)

// realData generates the reputation database of dbEntries entries
// (internal/feedgen: URL expressions, domains, file signatures) into the
// temporary directory, for every Picket of the run to load. It is never
// committed and goes with the directory.
func (b *bench) realData() error {
	if dbEntries == 0 {
		return nil
	}
	b.feeds = filepath.Join(b.dir, "feeds")
	if err := os.MkdirAll(b.feeds, 0o755); err != nil {
		return err
	}
	start := time.Now()
	size, err := feedgen.Write(b.feeds, dbEntries)
	if err != nil {
		return fmt.Errorf("generate the reputation database: %w", err)
	}
	fmt.Printf("reputation database: %d entries (internal/feedgen), %.0f MB of feeds generated in %s; every Picket loads it\n",
		dbEntries, float64(size)/1e6, time.Since(start).Round(100*time.Millisecond))
	return nil
}

// waitReady waits until Picket's admin listener answers /readyz with 200
// (the database is loaded and every listener serves).
func (p *picket) waitReady(limit time.Duration) error {
	deadline := time.Now().Add(limit)
	c := &http.Client{Timeout: 2 * time.Second}
	for {
		resp, err := c.Get(p.admin + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("picket not ready within %s", limit)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// cacheCounts returns Picket's verdict-cache hits and misses so far
// (picket_reputation_cache_total).
func (p *picket) cacheCounts() (hits, misses float64, err error) {
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Get(p.admin + "/metrics")
	if err != nil {
		return 0, 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, 0, fmt.Errorf("metrics: %s", resp.Status)
	}
	return parseCacheCounts(bufio.NewScanner(resp.Body))
}

// parseCacheCounts reads the hit and miss counters of
// picket_reputation_cache_total from a metrics exposition.
func parseCacheCounts(sc *bufio.Scanner) (hits, misses float64, err error) {
	found := false
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "picket_reputation_cache_total{") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			return 0, 0, fmt.Errorf("metrics line %q: %w", line, err)
		}
		switch {
		case strings.Contains(line, `result="hit"`):
			hits, found = v, true
		case strings.Contains(line, `result="miss"`):
			misses, found = v, true
		}
	}
	if !found {
		return 0, 0, fmt.Errorf("no picket_reputation_cache_total in the metrics")
	}
	return hits, misses, sc.Err()
}

// cacheWatch reports the verdict cache's hit ratio between two readings
// of one or more Pickets.
type cacheWatch struct {
	pickets     []*picket
	hits, total float64
}

func newCacheWatch(ps ...*picket) *cacheWatch {
	w := &cacheWatch{pickets: ps}
	w.hits, w.total = w.read()
	return w
}

func (w *cacheWatch) read() (hits, total float64) {
	for _, p := range w.pickets {
		if p.admin == "" {
			continue
		}
		h, m, err := p.cacheCounts()
		if err != nil {
			continue
		}
		hits, total = hits+h, total+h+m
	}
	return hits, total
}

// String is the hit ratio since the watch began (or since the last
// String) and the number of lookups.
func (w *cacheWatch) String() string {
	h, t := w.read()
	dh, dt := h-w.hits, t-w.total
	w.hits, w.total = h, t
	if dt == 0 {
		return "no verdict-cache lookups"
	}
	return fmt.Sprintf("verdict cache %.1f%% hits over %.0f lookups", 100*dh/dt, dt)
}
