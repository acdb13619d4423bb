package config

import (
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/picket-proxy/picket/internal/netaddr"
)

// Duration is a time.Duration written in the file as a Go duration string
// ("300ms", "1m30s").
type Duration time.Duration

// UnmarshalText parses a duration string. Negative durations are refused.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(strings.TrimSpace(string(b)))
	if err != nil {
		return fmt.Errorf("invalid duration %q (want e.g. \"300ms\", \"10s\", \"2m\")", string(b))
	}
	if v < 0 {
		return fmt.Errorf("invalid duration %q: must not be negative", string(b))
	}
	*d = Duration(v)
	return nil
}

// MarshalText writes the duration in Go syntax.
func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

// D returns the value as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// Size is a byte count written in the file as a string with an optional
// binary or decimal unit ("512", "64KiB", "32MiB", "1GB").
type Size int64

var sizeUnits = []struct {
	suffix string
	mult   int64
}{
	{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40},
	{"KB", 1000}, {"MB", 1000 * 1000}, {"GB", 1000 * 1000 * 1000}, {"TB", 1000 * 1000 * 1000 * 1000},
	{"K", 1 << 10}, {"M", 1 << 20}, {"G", 1 << 30},
	{"B", 1},
}

// ParseSize parses a size string such as "32MiB". Negative sizes are refused.
func ParseSize(s string) (Size, error) {
	t := strings.TrimSpace(s)
	mult := int64(1)
	for _, u := range sizeUnits {
		if strings.HasSuffix(t, u.suffix) {
			mult = u.mult
			t = strings.TrimSpace(strings.TrimSuffix(t, u.suffix))
			break
		}
	}
	n, err := strconv.ParseInt(t, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("invalid size %q (want e.g. \"512\", \"64KiB\", \"32MiB\")", s)
	}
	if n < 0 {
		return 0, fmt.Errorf("invalid size %q: must not be negative", s)
	}
	if n > (1<<62)/mult {
		return 0, fmt.Errorf("invalid size %q: too large", s)
	}
	return Size(n * mult), nil
}

// UnmarshalText parses a size string; a bare TOML integer is also accepted
// through UnmarshalTOML.
func (s *Size) UnmarshalText(b []byte) error {
	v, err := ParseSize(string(b))
	if err != nil {
		return err
	}
	*s = v
	return nil
}

// UnmarshalTOML accepts both strings ("32MiB") and plain integers (bytes).
func (s *Size) UnmarshalTOML(v any) error {
	switch x := v.(type) {
	case string:
		return s.UnmarshalText([]byte(x))
	case int64:
		if x < 0 {
			return fmt.Errorf("invalid size %d: must not be negative", x)
		}
		*s = Size(x)
		return nil
	default:
		return fmt.Errorf("invalid size %v: want a string such as \"32MiB\" or a byte count", v)
	}
}

// MarshalText writes the size in bytes.
func (s Size) MarshalText() ([]byte, error) { return []byte(strconv.FormatInt(int64(s), 10)), nil }

// checkListen validates a host:port listen address. An empty host means all
// interfaces.
func checkListen(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("invalid listen address %q: %v", addr, err)
	}
	p, err := strconv.Atoi(port)
	if err != nil || p < 0 || p > 65535 {
		return fmt.Errorf("invalid listen address %q: port must be 0-65535", addr)
	}
	if host != "" && net.ParseIP(host) == nil && host != "localhost" {
		return fmt.Errorf("invalid listen address %q: host must be an IP address, \"localhost\" or empty", addr)
	}
	return nil
}

// checkCIDR parses an address or a prefix ("10.0.0.0/8", "::1") as the
// proxy will (netaddr.ParsePrefix).
func checkCIDR(s string) error {
	_, err := netaddr.ParsePrefix(s)
	return err
}

// checkPortRange parses "443" or "1024-65535" as the proxy will
// (netaddr.ParsePortRange).
func checkPortRange(s string) error {
	_, err := netaddr.ParsePortRange(s)
	return err
}
