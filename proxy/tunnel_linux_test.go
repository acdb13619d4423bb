package proxy

import (
	"bytes"
	"io"
	"os"
	"strings"
	"testing"
	"time"
)

// drainPipes closes the pipes the free list keeps.
func drainPipes() {
	for {
		select {
		case p := <-freePipes:
			p.n = 1 // closed, not kept
			putPipe(p)
		default:
			return
		}
	}
}

// checkSpliced checks that a bulk transfer between sockets went through
// splice(2): the pipes it used are kept.
func checkSpliced(t *testing.T) {
	t.Helper()
	if !spliceWorks.Load() || len(freePipes) == 0 {
		t.Errorf("bulk transfer did not go through splice(2) (splice works: %v, pipes kept: %d)", spliceWorks.Load(), len(freePipes))
	}
}

// An idle tunnel holds no pipe (nor buffer), even after a bulk transfer:
// descriptors open are the tunnels' sockets and nothing else.
func TestSpliceIdleTunnelsHoldNoPipes(t *testing.T) {
	// The pipes open now, by descriptor and inode ("pipe:[1234]"): other
	// tests' connections may close meanwhile, so only pipes count.
	pipes := func() map[string]bool {
		ents, err := os.ReadDir("/proc/self/fd")
		if err != nil {
			t.Fatal(err)
		}
		open := make(map[string]bool)
		for _, e := range ents {
			if target, err := os.Readlink("/proc/self/fd/" + e.Name()); err == nil && strings.HasPrefix(target, "pipe:") {
				open[e.Name()+" "+target] = true
			}
		}
		return open
	}
	drainPipes()
	before := pipes()

	const tunnels = 8
	payload := bytes.Repeat([]byte("x"), 4<<20)
	for range tunnels {
		client, origin, _ := startTunnel(t, false, time.Minute)
		go origin.Write(payload)
		_ = client.SetReadDeadline(time.Now().Add(20 * time.Second))
		if _, err := io.ReadFull(client, make([]byte, len(payload))); err != nil {
			t.Fatal(err)
		}
	}
	checkSpliced(t)
	// Idle now: give the pumps a moment to be back to waiting.
	var held []string
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		drainPipes()
		held = held[:0]
		for p := range pipes() {
			if !before[p] {
				held = append(held, p)
			}
		}
		if len(held) == 0 {
			return
		}
	}
	t.Errorf("%d idle tunnels hold %d pipes, want none: %v", tunnels, len(held), held)
}
