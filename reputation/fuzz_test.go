package reputation

import (
	"strings"
	"testing"
)

// FuzzParsePrefix parses the hash prefixes a reputation server receives in
// lookup requests from any client: accepted prefixes print back to the same
// (lower-case) text.
func FuzzParsePrefix(f *testing.F) {
	h := HashExpression("a.test/").String()
	for _, s := range []string{h[:8], h, h[:7], strings.ToUpper(h[:8]), "", "zzzzzzzz", h + "00", "0x123456"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ParsePrefix(s)
		if err != nil {
			return
		}
		if got := p.String(); !strings.EqualFold(got, s) {
			t.Fatalf("ParsePrefix(%q).String() = %q", s, got)
		}
	})
}

// FuzzParseHash parses full hashes from lookup responses and feeds.
func FuzzParseHash(f *testing.F) {
	h := HashExpression("a.test/").String()
	for _, s := range []string{h, h[:63], strings.ToUpper(h), "", h + "0"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		hh, err := ParseHash(s)
		if err != nil {
			return
		}
		if got := hh.String(); !strings.EqualFold(got, s) {
			t.Fatalf("ParseHash(%q).String() = %q", s, got)
		}
	})
}
