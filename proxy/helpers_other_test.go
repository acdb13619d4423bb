//go:build !unix

package proxy

import "testing"

// unansweredAddr returns "": Windows answers a handshake to a listener
// whose backlog is full with a reset, so there is no unanswered handshake
// to test with; the cases that need one are left out.
func unansweredAddr(t *testing.T) string { return "" }
