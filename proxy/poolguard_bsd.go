//go:build darwin || freebsd || netbsd || openbsd || dragonfly

package proxy

import "golang.org/x/sys/unix"

// peekByte peeks at one byte of fd's receive queue without waiting.
func peekByte(fd int, b *[1]byte) (int, error) {
	n, _, err := unix.Recvfrom(fd, b[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
	return n, err
}
