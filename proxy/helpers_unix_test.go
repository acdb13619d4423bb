//go:build unix

package proxy

import (
	"fmt"
	"net"
	"syscall"
	"testing"
	"time"
)

// unansweredAddr returns a loopback address whose TCP handshakes go
// unanswered, as with a host that drops packets: a listener that never
// accepts, its backlog (0) filled by the first connection.
func unansweredAddr(t *testing.T) string {
	t.Helper()
	syscall.ForkLock.RLock() // as package net does: no child inherits it
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	if err == nil {
		syscall.CloseOnExec(fd)
	}
	syscall.ForkLock.RUnlock()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Close(fd) })
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Listen(fd, 0); err != nil {
		t.Fatal(err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	addr := net.JoinHostPort("127.0.0.1", fmt.Sprint(sa.(*syscall.SockaddrInet4).Port))
	for range 8 { // fill the backlog until a handshake goes unanswered
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err != nil {
			return addr
		}
		t.Cleanup(func() { c.Close() })
	}
	t.Fatalf("every handshake to %s was answered: the backlog never filled", addr)
	return ""
}
