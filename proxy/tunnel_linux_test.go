package proxy

import (
	"bytes"
	"io"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
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

// spliceNow may enter the kernel without telling the scheduler only because
// it cannot wait there: every descriptor a tunnel splices between — accepted
// and dialled sockets, and the pipes — is non-blocking.
func TestSpliceDescriptorsNonBlocking(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	dialled, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer dialled.Close()
	accepted, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer accepted.Close()
	nonBlocking := func(name string, fd int) {
		t.Helper()
		flags, err := unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0)
		if err != nil {
			t.Fatalf("%s: fcntl: %v", name, err)
		}
		if flags&unix.O_NONBLOCK == 0 {
			t.Errorf("%s: descriptor %d is blocking: spliceNow could hold its thread and P", name, fd)
		}
	}
	for name, c := range map[string]net.Conn{"accepted": accepted, "dialled": dialled} {
		rc := rawConnOf(c)
		if rc == nil {
			t.Fatalf("%s: no raw connection", name)
		}
		if err := rc.Control(func(fd uintptr) { nonBlocking(name, int(fd)) }); err != nil {
			t.Fatal(err)
		}
	}
	p, err := getPipe()
	if err != nil {
		t.Fatal(err)
	}
	defer putPipe(p)
	nonBlocking("pipe read end", p.r)
	nonBlocking("pipe write end", p.w)

	// And with nothing to read, spliceNow says so at once.
	rc := rawConnOf(accepted)
	var n int64
	var serr error
	if err := rc.Control(func(fd uintptr) { n, serr = spliceNow(int(fd), p.w, maxSplice) }); err != nil {
		t.Fatal(err)
	}
	if serr != unix.EAGAIN {
		t.Errorf("splice from an empty socket: %d, %v; want EAGAIN", n, serr)
	}
}
