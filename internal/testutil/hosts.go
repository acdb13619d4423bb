package testutil

import (
	"bufio"
	_ "embed"
	"fmt"
	"io"
	"strconv"
	"strings"
	"testing"
)

//go:embed hosts.txt
var hostsTxt string

// Hosts returns the corpus of odd host spellings (hosts.txt): decimal,
// octal, hex and short IPv4, IPv4-mapped IPv6, zones, trailing dots, mixed
// case, percent-encoding, full-width characters and international names,
// with what each means.
func Hosts(t testing.TB) []Spelling {
	t.Helper()
	rows, err := ReadCorpus(strings.NewReader(hostsTxt))
	if err != nil {
		t.Fatalf("hosts.txt: %v", err)
	}
	return rows
}

// Spelling is a row of the host corpus.
type Spelling struct {
	Text string // as written in a URL or a CONNECT target, without a port
	Want string // the canonical host (Host.String); "" when invalid
	Bare bool   // a bare IPv6 address: no URL can hold it
}

// ReadCorpus reads the corpus format: a row a line, the spelling and its
// meaning as tab-separated Go string literals, then "bare" for an IPv6
// address written without brackets; '#' starts a comment line.
func ReadCorpus(r io.Reader) ([]Spelling, error) {
	var out []Spelling
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		f := strings.Split(line, "\t")
		if len(f) < 2 || len(f) > 3 || (len(f) == 3 && f[2] != "bare") {
			return nil, fmt.Errorf("line %d: want \"spelling\"<TAB>\"meaning\"[<TAB>bare]", n)
		}
		text, err1 := strconv.Unquote(f[0])
		want, err2 := strconv.Unquote(f[1])
		if err1 != nil || err2 != nil {
			return nil, fmt.Errorf("line %d: want Go string literals", n)
		}
		out = append(out, Spelling{Text: text, Want: want, Bare: len(f) == 3})
	}
	return out, sc.Err()
}
