//go:build !unix

package wire

import "net"

// Alive cannot look at the socket on this system: a stale connection shows
// up as an error on its first use instead.
func Alive(c net.Conn) bool { return true }

// Pending cannot look at the socket on this system.
func Pending(c net.Conn) bool { return false }
