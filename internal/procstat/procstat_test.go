//go:build linux

package procstat

import (
	"io"
	"net"
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

// The machine's counters move with what happens on it: TCP segments sent
// over loopback are counted, and the idle share is a share.
func TestMachine(t *testing.T) {
	m0 := ReadMachine()
	if m0.Total == 0 {
		t.Fatal("no CPU ticks read from /proc/stat")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		_, _ = io.Copy(c, c)
	}()
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	const exchanges = 50
	buf := make([]byte, 1)
	for range exchanges { // one segment each way, at least
		if _, err := c.Write(buf); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(c, buf); err != nil {
			t.Fatal(err)
		}
	}
	// The CPU counters move by ticks: poll until one passed (without one
	// the idle share reads 0 and its check below could not fail).
	var m Machine
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		if m = ReadMachine(); m.Total > m0.Total {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the machine's CPU tick counters did not move in 10s")
		}
	}
	idle, segs := m.Since(m0)
	if segs < 2*exchanges {
		t.Errorf("TCP segments sent: %d, want at least %d for %d loopback exchanges", segs, 2*exchanges, exchanges)
	}
	if idle < 0 || idle > 1 {
		t.Errorf("idle share %v outside [0, 1]", idle)
	}
}

// TestSinceAllIdle: a window in which every tick was idle is a share of 1,
// not the 1.0000000005 the floating-point differences give.
func TestSinceAllIdle(t *testing.T) {
	m0 := Machine{Idle: 12345.67, Total: 123456.78}
	m := Machine{Idle: m0.Idle + 0.01, Total: m0.Total + 0.01}
	if idle, _ := m.Since(m0); idle != 1 {
		t.Errorf("idle share %v, want 1", idle)
	}
}
