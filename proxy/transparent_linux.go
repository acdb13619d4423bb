package proxy

import (
	"encoding/binary"
	"errors"
	"net"
	"net/netip"

	"golang.org/x/sys/unix"
)

// errNoTransparent is nil: Linux tells a redirected connection's original
// destination.
var errNoTransparent error

// ip6tSOOriginalDST is IP6T_SO_ORIGINAL_DST (linux/netfilter_ipv6/
// ip6_tables.h), the IPv6 twin of unix.SO_ORIGINAL_DST with the same value;
// golang.org/x/sys/unix does not define it.
const ip6tSOOriginalDST = unix.SO_ORIGINAL_DST

// originalDst returns the destination a REDIRECTed connection was sent to
// before the firewall rewrote it (SO_ORIGINAL_DST, IPv4 and IPv6).
//
// The answer is a sockaddr, for which golang.org/x/sys/unix has no getter;
// two of its getters read a struct that holds one (and that is at least
// as large as the kernel requires), so no unsafe code is needed: IPv6Mreq
// (20 bytes) holds a sockaddr_in in its first 16 bytes, IPv6MTUInfo starts
// with a sockaddr_in6.
func originalDst(c net.Conn) (netip.AddrPort, error) {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return netip.AddrPort{}, errors.New("not a TCP connection")
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return netip.AddrPort{}, err
	}
	v6 := false
	if la, ok := tc.LocalAddr().(*net.TCPAddr); ok && la.IP.To4() == nil {
		v6 = true
	}
	var dst netip.AddrPort
	var serr error
	err = rc.Control(func(fd uintptr) {
		if v6 {
			info, err := unix.GetsockoptIPv6MTUInfo(int(fd), unix.SOL_IPV6, ip6tSOOriginalDST)
			if err != nil {
				serr = err
				return
			}
			sa := info.Addr // sockaddr_in6: its port's bytes in network order
			var port [2]byte
			binary.NativeEndian.PutUint16(port[:], sa.Port)
			dst = netip.AddrPortFrom(netip.AddrFrom16(sa.Addr).Unmap(), binary.BigEndian.Uint16(port[:]))
			return
		}
		mreq, err := unix.GetsockoptIPv6Mreq(int(fd), unix.SOL_IP, unix.SO_ORIGINAL_DST)
		if err != nil {
			serr = err
			return
		}
		sa := mreq.Multiaddr // sockaddr_in: family, port (network byte order), address
		dst = netip.AddrPortFrom(netip.AddrFrom4([4]byte(sa[4:8])), binary.BigEndian.Uint16(sa[2:4]))
	})
	if err != nil {
		return netip.AddrPort{}, err
	}
	return dst, serr
}
