//go:build !linux

package proxy

import (
	"errors"
	"net"
	"net/netip"
)

// errNoTransparent is why the transparent listeners do not start here: the
// original destination of a redirected connection (SO_ORIGINAL_DST) is
// Linux's.
var errNoTransparent = errors.New("transparent listeners need Linux (SO_ORIGINAL_DST tells a redirected connection's destination)")

func originalDst(net.Conn) (netip.AddrPort, error) { return netip.AddrPort{}, errNoTransparent }
