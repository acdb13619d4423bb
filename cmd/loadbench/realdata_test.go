package main

import (
	"bufio"
	"strings"
	"testing"
)

func TestParseCacheCounts(t *testing.T) {
	for _, tc := range []struct {
		name, in     string
		hits, misses float64
		err          bool
	}{
		{"both", "# HELP x\npicket_reputation_cache_total{result=\"hit\"} 81\npicket_reputation_cache_total{result=\"miss\"} 19\nother 5\n", 81, 19, false},
		{"float", "picket_reputation_cache_total{result=\"hit\"} 1.5e+06\n", 1.5e6, 0, false},
		{"absent", "picket_reputation_lookups_total 7\n", 0, 0, true},
		{"garbage", "picket_reputation_cache_total{result=\"hit\"} x\n", 0, 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, m, err := parseCacheCounts(bufio.NewScanner(strings.NewReader(tc.in)))
			if (err != nil) != tc.err {
				t.Fatalf("got error %v, want error %v", err, tc.err)
			}
			if h != tc.hits || m != tc.misses {
				t.Errorf("got %v hits %v misses, want %v and %v", h, m, tc.hits, tc.misses)
			}
		})
	}
}

// TestMix checks the URL mix: every host used, a client that keeps a host
// gets only that host, the popular URLs repeat (a cache has something to
// hit) and the hosts file names every host on loopback.
func TestMix(t *testing.T) {
	m := newMix(64)
	src := m.source(1)
	seen, urls := map[int]int{}, map[string]int{}
	for range 20000 {
		h, p := src.next(m, "/1k", -1)
		seen[h]++
		urls[p]++
	}
	if len(seen) != 64 {
		t.Errorf("got %d hosts used, want 64", len(seen))
	}
	if len(urls) > 15000 || len(urls) < 1000 {
		t.Errorf("got %d distinct URLs in 20000 draws, want a Zipf mix (some repeated, many distinct)", len(urls))
	}
	stuck := m.source(2)
	for range 1000 {
		if h, _ := stuck.next(m, "/1k", 70); h != 70%64 {
			t.Fatalf("got host %d, want %d", h, 70%64)
		}
	}
	hosts := m.hostsFile()
	for _, h := range m.hosts {
		if !strings.Contains(hosts, "127.0.0.1\t"+h+"\n") {
			t.Errorf("hosts file lacks %s on 127.0.0.1", h)
		}
	}
	if strings.Count(hosts, "\n") != 66 {
		t.Errorf("got %d lines, want 66", strings.Count(hosts, "\n"))
	}
}
