package netaddr

// Unescape percent-decodes s until it no longer changes, as the Safe
// Browsing canonicalization does ("%2541" is "A"); an invalid escape ("%%",
// "%zz", a '%' near the end) stays as it is. It does not allocate when s
// has no escape.
func Unescape(s string) string {
	for {
		t := unescapeOnce(s)
		if len(t) == len(s) {
			return s
		}
		s = t
	}
}

func unescapeOnce(s string) string {
	var b []byte
	for i := 0; i < len(s); i++ {
		if s[i] == '%' && i+2 < len(s) {
			hi, ok1 := hexDigit(s[i+1])
			lo, ok2 := hexDigit(s[i+2])
			if ok1 && ok2 {
				if b == nil {
					b = make([]byte, 0, len(s))
					b = append(b, s[:i]...)
				}
				b = append(b, hi<<4|lo)
				i += 2
				continue
			}
		}
		if b != nil {
			b = append(b, s[i])
		}
	}
	if b == nil {
		return s
	}
	return string(b)
}

// hexDigit returns the value of the hex digit c, either case.
func hexDigit(c byte) (byte, bool) {
	if 'A' <= c && c <= 'F' {
		c += 'a' - 'A'
	}
	return digit(c, 16)
}
