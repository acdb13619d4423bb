package proxy

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// peekByte peeks at one byte of fd's receive queue without waiting;
// recvfrom(2) called directly, as unix.Recvfrom allocates its address on
// every call (this runs at the start of every upstream request).
func peekByte(fd int, b *[1]byte) (int, error) {
	n, _, errno := unix.Syscall6(unix.SYS_RECVFROM, uintptr(fd), uintptr(unsafe.Pointer(&b[0])), 1,
		unix.MSG_PEEK|unix.MSG_DONTWAIT, 0, 0)
	if errno != 0 {
		return 0, errno
	}
	return int(n), nil
}
