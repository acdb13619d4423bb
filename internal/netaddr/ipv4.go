package netaddr

import "net/netip"

// endsInNumber reports whether the last label of the lower-case name is a
// number (all decimal digits, or "0x" and hex digits): the WHATWG URL
// standard then reads the whole name as an IPv4 address, or refuses it.
func endsInNumber(name string) bool {
	last := name
	for i := len(name) - 1; i >= 0; i-- {
		if name[i] == '.' {
			last = name[i+1:]
			break
		}
	}
	if last == "" {
		return false
	}
	digits, base := last, 10
	if len(last) >= 2 && last[0] == '0' && last[1] == 'x' {
		digits, base = last[2:], 16
	}
	for i := 0; i < len(digits); i++ {
		if _, ok := digit(digits[i], base); !ok {
			return false
		}
	}
	return true
}

// parseIPv4 reads the IPv4 spellings browsers and inet_aton accept: one to
// four dot-separated numbers, each decimal, octal (a leading 0) or hex (a
// leading 0x; "0x" alone is 0), every one but the last at most 255, the
// last filling the bytes that remain ("127.1" is 127.0.0.1, "2130706433"
// too). The name is lower case and has no trailing dot.
func parseIPv4(name string) (netip.Addr, bool) {
	var (
		v     uint64
		parts int
	)
	for start := 0; start <= len(name); {
		end := start
		for end < len(name) && name[end] != '.' {
			end++
		}
		n, ok := parseIPv4Number(name[start:end])
		if !ok {
			return netip.Addr{}, false
		}
		parts++
		if end == len(name) { // the last part fills the bytes that remain
			if parts > 4 {
				return netip.Addr{}, false
			}
			rest := uint(5 - parts)
			if n >= 1<<(8*rest) {
				return netip.Addr{}, false
			}
			v = v<<(8*rest) | n
			return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}), true
		}
		if n > 0xff || parts == 4 {
			return netip.Addr{}, false
		}
		v = v<<8 | n
		start = end + 1
	}
	return netip.Addr{}, false
}

// parseIPv4Number reads one part: decimal, octal after a leading 0, hex
// after a leading 0x ("0x" alone is 0). It refuses an empty part and values
// above 2^32-1.
func parseIPv4Number(s string) (uint64, bool) {
	base := 10
	switch {
	case len(s) >= 2 && s[0] == '0' && s[1] == 'x':
		s, base = s[2:], 16
	case len(s) >= 2 && s[0] == '0':
		s, base = s[1:], 8
	case s == "":
		return 0, false
	}
	var v uint64
	for i := 0; i < len(s); i++ {
		d, ok := digit(s[i], base)
		if !ok {
			return 0, false
		}
		if v = v*uint64(base) + uint64(d); v > 0xffffffff {
			return 0, false
		}
	}
	return v, true
}

// digit returns the value of the lower-case digit c in base (8, 10 or 16).
func digit(c byte, base int) (byte, bool) {
	var d byte
	switch {
	case '0' <= c && c <= '9':
		d = c - '0'
	case 'a' <= c && c <= 'f':
		d = c - 'a' + 10
	default:
		return 0, false
	}
	return d, int(d) < base
}
