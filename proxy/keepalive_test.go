//go:build linux || darwin || freebsd

package proxy

import (
	"context"
	"net"
	"net/netip"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// tcp_keepalive: accepted and upstream connections carry no keepalive probes
// unless configured, then probes after the configured idle time.
func TestKeepAlive(t *testing.T) {
	keepAlive := func(c net.Conn) (on, idle int) {
		rc, err := c.(*net.TCPConn).SyscallConn()
		if err != nil {
			t.Fatal(err)
		}
		_ = rc.Control(func(fd uintptr) {
			on, _ = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_KEEPALIVE)
			idle, _ = unix.GetsockoptInt(int(fd), unix.IPPROTO_TCP, tcpKeepIdle)
		})
		return on, idle
	}
	for _, tc := range []struct {
		set      time.Duration
		wantOn   int
		wantIdle int
	}{{0, 0, 0}, {45 * time.Second, 1, 45}} {
		l, err := Listen("127.0.0.1:0", tc.set)
		if err != nil {
			t.Fatal(err)
		}
		accepted := make(chan net.Conn, 1)
		go func() {
			c, _ := l.Accept()
			accepted <- c
		}()
		cfg := Config{DialTimeout: time.Second, TCPKeepAlive: tc.set, AllowDestinations: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}}
		dialed, err := newDialer(&cfg, newDestinations(&cfg)).dialRaw(context.Background(), l.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		server := <-accepted
		l.Close()
		for side, c := range map[string]net.Conn{"accepted": server, "dialled": dialed} {
			if c == nil {
				t.Fatalf("%s: no connection", side)
			}
			on, idle := keepAlive(c)
			c.Close()
			if on != tc.wantOn || (tc.wantOn == 1 && idle != tc.wantIdle) {
				t.Errorf("tcp_keepalive %v, %s connection: SO_KEEPALIVE %d, TCP_KEEPIDLE %d; want %d, %d",
					tc.set, side, on, idle, tc.wantOn, tc.wantIdle)
			}
		}
	}
}
