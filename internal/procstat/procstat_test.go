package procstat

import (
	"os"
	"testing"
)

func TestSelf(t *testing.T) {
	pid := os.Getpid()
	for i := 0; i < 2_000_000; i++ { // burn a little CPU
		_ = i * i
	}
	if rss := RSS(pid); rss < 1<<20 {
		t.Errorf("RSS of this test: got %d bytes, want at least 1 MiB", rss)
	}
	if r, h := RSS(pid), HWM(pid); h < r {
		t.Errorf("peak RSS %d below RSS %d read before it", h, r)
	}
	if CPU(pid) < 0 {
		t.Errorf("negative CPU time")
	}
	if RSS(1<<30) != 0 || CPU(1<<30) != 0 {
		t.Errorf("a missing process should read as zero")
	}
}
