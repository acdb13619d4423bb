package proxy

import (
	"errors"
	"net"
	"net/netip"
	"syscall"
	"unsafe"
)

// errNoTransparent is nil: Linux tells a redirected connection's original
// destination.
var errNoTransparent error

// originalDst returns the destination a REDIRECTed connection was sent to
// before the firewall rewrote it (SO_ORIGINAL_DST, IPv4 and IPv6).
func originalDst(c net.Conn) (netip.AddrPort, error) {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return netip.AddrPort{}, errors.New("not a TCP connection")
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return netip.AddrPort{}, err
	}
	var dst netip.AddrPort
	var serr error
	err = rc.Control(func(fd uintptr) {
		var raw syscall.RawSockaddrInet6 // large enough for either family
		size := uint32(unsafe.Sizeof(raw))
		level, opt := syscall.SOL_IP, 80 // SO_ORIGINAL_DST
		if la, ok := tc.LocalAddr().(*net.TCPAddr); ok && la.IP.To4() == nil {
			level, opt = syscall.SOL_IPV6, 80 // IP6T_SO_ORIGINAL_DST
		}
		_, _, e := syscall.Syscall6(syscall.SYS_GETSOCKOPT, fd, uintptr(level), uintptr(opt),
			uintptr(unsafe.Pointer(&raw)), uintptr(unsafe.Pointer(&size)), 0)
		if e != 0 {
			serr = e
			return
		}
		port := uint16(raw.Port>>8) | uint16(raw.Port&0xff)<<8
		if raw.Family == syscall.AF_INET {
			r4 := (*syscall.RawSockaddrInet4)(unsafe.Pointer(&raw))
			dst = netip.AddrPortFrom(netip.AddrFrom4(r4.Addr), port)
		} else {
			dst = netip.AddrPortFrom(netip.AddrFrom16(raw.Addr).Unmap(), port)
		}
	})
	if err != nil {
		return netip.AddrPort{}, err
	}
	return dst, serr
}
