//go:build !linux

package proxy

import (
	"errors"
	"net"
	"testing"
)

// Elsewhere than Linux the transparent listeners refuse to start, with the
// reason (no SO_ORIGINAL_DST).
func TestTransparentNeedsLinux(t *testing.T) {
	tp := startProxy(t, Config{})
	for name, serve := range map[string]func(net.Listener) error{"http": tp.ServeTransparentHTTP, "https": tp.ServeTransparentHTTPS} {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		if err := serve(ln); !errors.Is(err, errNoTransparent) {
			t.Errorf("%s: got %v, want %v", name, err, errNoTransparent)
		}
		ln.Close()
	}
}
