package proxy

import (
	"bytes"
	"crypto/sha256"
	"io"
	"math/rand"
	"net"
	"sync"
	"testing"
	"time"
)

// tcpPair returns the two ends of a loopback TCP connection.
func tcpPair(t testing.TB) (a, b net.Conn) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := l.Accept()
		accepted <- c
	}()
	a, err = net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	b = <-accepted
	if b == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { a.Close(); b.Close() })
	return a, b
}

// opaqueConn hides the socket under a connection (as a TLS or counting
// wrapper would): the tunnel must copy through buffers.
type opaqueConn struct{ net.Conn }

func (c opaqueConn) CloseWrite() error { return c.Conn.(*net.TCPConn).CloseWrite() }

// tunnelModes run a test over a tunnel between two sockets (spliced) and
// between two wrapped connections (buffers).
var tunnelModes = []struct {
	name   string
	opaque bool
}{{"sockets", false}, {"buffers", true}}

// startTunnel relays a tunnel between a client and an origin connection it
// returns; done closes when the relay has ended.
func startTunnel(t testing.TB, opaque bool, idle time.Duration) (client, origin net.Conn, done <-chan struct{}) {
	client, proxyClient := tcpPair(t)
	proxyUpstream, origin := tcpPair(t)
	if opaque {
		proxyClient, proxyUpstream = opaqueConn{proxyClient}, opaqueConn{proxyUpstream}
	}
	ended := make(chan struct{})
	go func() {
		splice(proxyClient, proxyUpstream, idle)
		close(ended)
	}()
	return client, origin, ended
}

// A tunnel that moves bytes in one direction only stays open past the idle
// timeout (a stream the client only listens to), and closes once nothing
// moves for the idle timeout.
func TestSpliceOneWayTrafficIsNotIdle(t *testing.T) {
	for _, mode := range tunnelModes {
		t.Run(mode.name, func(t *testing.T) { testOneWayTraffic(t, mode.opaque) })
	}
}

func testOneWayTraffic(t *testing.T, opaque bool) {
	// A byte every idle/8: the writer may stall for most of an idle period
	// on a loaded machine before the tunnel rightly counts as idle.
	const idle = time.Second
	client, origin, done := startTunnel(t, opaque, idle)

	const beats = 16 // 2 idle timeouts' worth
	lastWrite := make(chan time.Time, 1)
	go func() {
		var last time.Time
		defer func() { lastWrite <- last }()
		for i := 0; i < beats; i++ {
			if _, err := origin.Write([]byte{'.'}); err != nil {
				return
			}
			last = time.Now()
			if i < beats-1 {
				time.Sleep(idle / 8)
			}
		}
	}()
	_ = client.SetReadDeadline(time.Now().Add(30 * time.Second))
	buf := make([]byte, beats)
	if n, err := io.ReadFull(client, buf); err != nil {
		t.Fatalf("client got %d of %d bytes streamed one way: %v (tunnel closed as idle while bytes moved)", n, beats, err)
	}
	last := <-lastWrite

	// Closed at last (the guard only tells "never" from "late"), and not
	// sooner than the idle timeout after the last byte was written: a
	// bound that load can only make easier to meet.
	select {
	case <-done:
	case <-time.After(10 * idle):
		t.Fatalf("tunnel still open %v after the last byte (idle %v)", 10*idle, idle)
	}
	if waited := time.Since(last); waited < idle-idle/20 {
		t.Errorf("tunnel closed %v after the last byte, before the idle timeout %v", waited, idle)
	}
}

// A tunnel where nothing moves closes at the idle timeout: not sooner, and
// at last. (How late — the sweeper looks every idle/idleChecks — is not
// asserted against the wall clock: on a loaded machine that would time the
// machine, not the tunnel. The guard only tells "never" from "late".)
func TestSpliceSilentTunnelCloses(t *testing.T) {
	for _, mode := range tunnelModes {
		t.Run(mode.name, func(t *testing.T) {
			const idle = 400 * time.Millisecond
			start := time.Now() // before the relay starts: load can only lengthen waited
			client, _, done := startTunnel(t, mode.opaque, idle)
			select {
			case <-done:
			case <-time.After(10 * idle):
				t.Fatalf("silent tunnel still open after %v (idle %v)", 10*idle, idle)
			}
			if waited := time.Since(start); waited < idle-idle/20 {
				t.Errorf("silent tunnel closed after %v, before the idle timeout %v", waited, idle)
			}
			// And the client sees the close.
			_ = client.SetReadDeadline(time.Now().Add(5 * time.Second))
			if n, err := client.Read(make([]byte, 1)); err == nil {
				t.Errorf("client read %d bytes from a closed tunnel", n)
			}
		})
	}
}

// A client that half-closes its side and then stops reading cannot hold
// the tunnel past the idle timeout: once the bytes the origin sends fill
// the buffers and nothing moves, the tunnel closes, though the direction
// still open waits to write, not to read.
func TestSpliceStalledWriterAfterHalfCloseCloses(t *testing.T) {
	for _, mode := range tunnelModes {
		t.Run(mode.name, func(t *testing.T) {
			const idle = 400 * time.Millisecond
			client, origin, done := startTunnel(t, mode.opaque, idle)
			client.(*net.TCPConn).CloseWrite() // and never reads
			go func() {
				_ = origin.SetWriteDeadline(time.Now().Add(30 * time.Second))
				buf := make([]byte, 64<<10)
				for {
					if _, err := origin.Write(buf); err != nil {
						return
					}
				}
			}()
			select {
			case <-done:
			case <-time.After(20 * idle):
				t.Fatalf("tunnel to a client that stopped reading still open after %v (idle %v)", 20*idle, idle)
			}
		})
	}
}

// Large transfers both ways at once arrive whole and in order (through
// splice(2) once they run in bulk), and a half-close carries through.
func TestSpliceBulkBothWays(t *testing.T) {
	for _, mode := range tunnelModes {
		t.Run(mode.name, func(t *testing.T) { testBulkBothWays(t, mode.opaque) })
	}
}

func testBulkBothWays(t *testing.T, opaque bool) {
	drainPipes() // pipes kept by earlier tests must not pass for this one's
	client, origin, _ := startTunnel(t, opaque, 10*time.Second)

	const size = 24 << 20
	send := func(c net.Conn, seed int64) <-chan []byte {
		sum := make(chan []byte, 1)
		go func() {
			h := sha256.New()
			w := io.MultiWriter(c, h)
			// Uneven writes: some small messages, some bulk.
			rng := rand.New(rand.NewSource(seed))
			for left := size; left > 0; {
				n := min(left, 1+rng.Intn(256<<10))
				if _, err := io.CopyN(w, rng, int64(n)); err != nil {
					break
				}
				left -= n
			}
			c.(*net.TCPConn).CloseWrite()
			sum <- h.Sum(nil)
		}()
		return sum
	}
	receive := func(c net.Conn) <-chan []byte {
		sum := make(chan []byte, 1)
		go func() {
			h := sha256.New()
			n, err := io.Copy(h, c) // ends at the half-close
			if err != nil || n != size {
				t.Errorf("received %d of %d bytes: %v", n, size, err)
			}
			sum <- h.Sum(nil)
		}()
		return sum
	}
	for _, c := range []net.Conn{client, origin} {
		_ = c.SetDeadline(time.Now().Add(60 * time.Second))
	}
	upSent, downSent := send(client, 1), send(origin, 2)
	upGot, downGot := receive(origin), receive(client)
	if a, b := <-upSent, <-upGot; !bytes.Equal(a, b) {
		t.Errorf("client→origin: bytes differ")
	}
	if a, b := <-downSent, <-downGot; !bytes.Equal(a, b) {
		t.Errorf("origin→client: bytes differ")
	}
	if !opaque {
		checkSpliced(t)
	}
}

// Tunnels relay between two sockets (spliced) or between wrapped connections
// (buffers): small request/response messages on 16 tunnels at once, and one
// bulk transfer.

func BenchmarkRelayMessages(b *testing.B) {
	for _, mode := range tunnelModes {
		b.Run(mode.name, func(b *testing.B) {
			const tunnels = 16
			req, resp := make([]byte, 200), make([]byte, 1200)
			var wg sync.WaitGroup
			per := b.N/tunnels + 1
			conns := make([][2]net.Conn, tunnels)
			for i := range conns {
				client, origin, _ := startTunnel(b, mode.opaque, time.Minute)
				conns[i] = [2]net.Conn{client, origin}
				go func() { // echo server: a response per request
					buf := make([]byte, len(req))
					for {
						if _, err := io.ReadFull(origin, buf); err != nil {
							return
						}
						if _, err := origin.Write(resp); err != nil {
							return
						}
					}
				}()
			}
			b.ResetTimer()
			for _, c := range conns {
				wg.Add(1)
				go func() {
					defer wg.Done()
					buf := make([]byte, len(resp))
					for range per {
						c[0].Write(req)
						if _, err := io.ReadFull(c[0], buf); err != nil {
							b.Error(err)
							return
						}
					}
				}()
			}
			wg.Wait()
		})
	}
}

func BenchmarkRelayBulk(b *testing.B) {
	for _, mode := range tunnelModes {
		b.Run(mode.name, func(b *testing.B) {
			client, origin, _ := startTunnel(b, mode.opaque, time.Minute)
			chunk := make([]byte, 1<<20)
			b.SetBytes(int64(len(chunk)))
			go func() {
				for range b.N {
					if _, err := origin.Write(chunk); err != nil {
						return
					}
				}
			}()
			b.ResetTimer()
			if _, err := io.CopyN(io.Discard, client, int64(b.N)*int64(len(chunk))); err != nil {
				b.Fatal(err)
			}
		})
	}
}

// A peer's last bytes and its close often arrive together: the tunnel
// carries both at once (a relay that stops reading after a short read
// without noticing the close would hold the tunnel open until the idle
// timeout).
func TestSpliceCloseRightBehindData(t *testing.T) {
	for _, mode := range tunnelModes {
		t.Run(mode.name, func(t *testing.T) {
			for i := range 100 {
				client, origin, done := startTunnel(t, mode.opaque, time.Minute)
				msg := bytes.Repeat([]byte{byte('a' + i%26)}, 1+i*37%3000)
				from, to := origin, client
				if i%2 == 1 {
					from, to = client, origin
				}
				go func() {
					from.Write(msg)
					from.(*net.TCPConn).CloseWrite()
				}()
				_ = to.SetReadDeadline(time.Now().Add(10 * time.Second))
				got, err := io.ReadAll(to)
				if err != nil || !bytes.Equal(got, msg) {
					t.Fatalf("round %d: read %d of %d bytes, %v", i, len(got), len(msg), err)
				}
				to.Close()
				from.Close()
				select {
				case <-done:
				case <-time.After(10 * time.Second):
					t.Fatalf("round %d: tunnel still open after both ends closed", i)
				}
			}
		})
	}
}

// One sweeper watches many tunnels: it ends the idle one and leaves alone
// the one that moves bytes, whichever order tunnels leave its list in, and
// its goroutine ends with the last tunnel.
func TestSweeperManyTunnels(t *testing.T) {
	const idle = 600 * time.Millisecond
	sw := sweeperFor(idle)
	early, earlyOrigin, earlyDone := startTunnel(t, true, idle)
	waitListed(t, sw, 1)
	_, _, silentDone := startTunnel(t, false, idle)
	busyClient, busyOrigin, busyDone := startTunnel(t, false, idle)
	waitListed(t, sw, 3)

	// The first tunnel in the list to leave (both ends hang up): the others
	// move in its slot.
	early.Close()
	earlyOrigin.Close()
	select {
	case <-earlyDone:
	case <-time.After(idle / 2):
		t.Fatal("a tunnel whose ends hung up did not end at once")
	}

	// The busy tunnel moves a byte every idle/6 for two idle periods.
	stopBeat := make(chan struct{})
	go func() {
		for {
			select {
			case <-stopBeat:
				return
			case <-time.After(idle / 6):
			}
			if _, err := busyOrigin.Write([]byte{'.'}); err != nil {
				return
			}
		}
	}()
	go io.Copy(io.Discard, busyClient)
	select {
	case <-silentDone:
	case <-time.After(10 * idle):
		t.Fatalf("silent tunnel still open after %v (idle %v)", 10*idle, idle)
	}
	select {
	case <-busyDone:
		t.Fatal("the sweeper ended a tunnel that moved a byte every idle/6")
	case <-time.After(idle + idle/2):
	}
	close(stopBeat)
	select {
	case <-busyDone:
	case <-time.After(10 * idle):
		t.Fatalf("tunnel still open %v after its last byte (idle %v)", 10*idle, idle)
	}

	// Every tunnel has left: the list is empty and the goroutine told to end.
	sw.mu.Lock()
	n, running := len(sw.live), sw.stop != nil
	sw.mu.Unlock()
	if n != 0 || running {
		t.Errorf("after the last tunnel: %d tunnels listed, sweeping %v; want none, not sweeping", n, running)
	}
}

// waitListed waits until the sweeper lists n tunnels.
func waitListed(t *testing.T, sw *sweeper, n int) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(time.Millisecond) {
		sw.mu.Lock()
		got := len(sw.live)
		sw.mu.Unlock()
		if got == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("sweeper lists %d tunnels, want %d", got, n)
		}
	}
}
