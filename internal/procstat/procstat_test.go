package procstat

import (
	"os"
	"testing"
	"time"
)

func TestSelf(t *testing.T) {
	pid := os.Getpid()
	if rss := RSS(pid); rss < 1<<20 {
		t.Errorf("RSS of this test: got %d bytes, want at least 1 MiB", rss)
	}
	if r, h := RSS(pid), HWM(pid); h < r {
		t.Errorf("peak RSS %d below RSS %d read before it", h, r)
	}
	// CPU time is counted in ticks: burn until one shows, or give up.
	start, x := time.Now(), 0
	for CPU(pid) == 0 && time.Since(start) < 5*time.Second {
		for i := 0; i < 1_000_000; i++ {
			x += i * i
		}
	}
	if CPU(pid) <= 0 {
		t.Errorf("no CPU time read for this busy process (%d)", x)
	}
	if RSS(1<<30) != 0 || CPU(1<<30) != 0 {
		t.Errorf("a missing process should read as zero")
	}
}
