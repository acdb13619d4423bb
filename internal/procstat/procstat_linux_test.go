package procstat

import (
	"os"
	"syscall"
	"testing"
	"time"
)

// TestCPUAgreesWithRusage: the CPU time read from /proc (procfs, in USER_HZ
// ticks) is the time the kernel reports to getrusage, to a few ticks — a
// wrong USER_HZ would be off by a factor.
func TestCPUAgreesWithRusage(t *testing.T) {
	start, x := time.Now(), 0
	for CPU(os.Getpid()) < 200*time.Millisecond && time.Since(start) < 20*time.Second {
		for i := 0; i < 1_000_000; i++ {
			x += i * i
		}
	}
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		t.Fatal(err)
	}
	got := CPU(os.Getpid())
	want := time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	if got < 200*time.Millisecond {
		t.Fatalf("CPU time %v after burning CPU for %v (%d)", got, time.Since(start), x)
	}
	if d := got - want; d < -50*time.Millisecond || d > 50*time.Millisecond {
		t.Errorf("CPU from /proc: %v, getrusage: %v; want them within 50 ms", got, want)
	}
}

func TestMemoryParts(t *testing.T) {
	m := Memory(os.Getpid())
	if m.Anon <= 0 || m.File <= 0 || m.Anon+m.File > m.RSS+m.RSS/10 {
		t.Errorf("got %+v, want anonymous and file memory, adding up to about the RSS", m)
	}
}
