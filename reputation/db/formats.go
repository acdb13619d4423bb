package db

import (
	"encoding/json"
	"strings"

	"github.com/picket-proxy/picket/internal/netaddr"
	"github.com/picket-proxy/picket/reputation"
)

// The formats of real feeds beyond Picket's first five: plain domain lists,
// plain hash lists, and destination address lists.

// cutComment drops what follows the first of the comment characters and
// trims the rest.
func cutComment(line, chars string) string {
	if i := strings.IndexAny(line, chars); i >= 0 {
		line = line[:i]
	}
	return strings.TrimSpace(line)
}

// domainLine: one domain a line ("example.com", also "*.example.com" or
// ".example.com", a trailing dot allowed); '#' comments. The entry is the
// domain's host expression, which matches its subdomains too.
func (p parser) domainLine(line string, n int) {
	if line = cutComment(line, "#"); line == "" {
		return
	}
	d := strings.TrimSuffix(strings.TrimPrefix(strings.TrimPrefix(line, "*."), "."), ".")
	if _, err := netaddr.ParseHost(d); err != nil {
		p.bad(n, "want one domain a line")
		return
	}
	p.addExpr(d, p.def, n)
}

// hashLine: one hex MD5, SHA-1 or SHA-256 a line (MalwareBazaar's text
// exports, most hash block lists); '#' comments. The hash is looked up as a
// file hash.
func (p parser) hashLine(line string, n int) {
	if line = cutComment(line, "#"); line == "" {
		return
	}
	sum, err := reputation.ParseFileHash(line)
	if err != nil {
		p.bad(n, "want one hex MD5, SHA-1 or SHA-256 a line")
		return
	}
	h, _ := reputation.FileKey(sum)
	p.add(h, p.def)
}

// ipLine: one IPv4 or IPv6 address or CIDR network a line; what follows
// '#' or ';' is a comment (Spamhaus DROP's text files, FireHOL netsets,
// Feodo Tracker's block list).
func (p parser) ipLine(line string, n int) {
	if line = cutComment(line, "#;"); line == "" {
		return
	}
	if strings.ContainsAny(line, " \t") {
		p.bad(n, "want one address or network a line")
		return
	}
	p.addNetwork(line, p.def, n)
}

// dropRecord is one line of Spamhaus DROP's JSON lines (drop_v4.json,
// drop_v6.json); the last line is a {"type":"metadata",...} record.
type dropRecord struct {
	CIDR  string `json:"cidr"`
	SBLID string `json:"sblid"`
	RIR   string `json:"rir"`
	Type  string `json:"type"`
}

// dropLine: {"cidr":"192.0.2.0/24","sblid":"SBL000000","rir":"ripencc"};
// the SBL id becomes the threat name.
func (p parser) dropLine(line string, n int) {
	var r dropRecord
	if err := json.Unmarshal([]byte(line), &r); err != nil {
		p.bad(n, "bad JSON: %v", err)
		return
	}
	if r.Type == "metadata" {
		return
	}
	if r.CIDR == "" {
		p.bad(n, "no cidr")
		return
	}
	v := p.def
	if r.SBLID != "" {
		v.ThreatName = r.SBLID
	}
	p.addNetwork(r.CIDR, v, n)
}

// Narrowest networks an address list may hold: a shorter prefix is almost
// certainly a mistake that would block a continent.
const (
	minBits4 = 8
	minBits6 = 12
)

// addNetwork adds an address ("192.0.2.1") or a network ("192.0.2.0/24",
// host bits are cleared). IPv4-mapped IPv6 forms count as IPv4.
func (p parser) addNetwork(s string, v reputation.Verdict, n int) {
	pfx, err := netaddr.ParsePrefix(s)
	if err != nil {
		p.bad(n, "%q is not an address or a CIDR network", s)
		return
	}
	if min := minBits4; pfx.Bits() < min || (pfx.Addr().Is6() && pfx.Bits() < minBits6) {
		if pfx.Addr().Is6() {
			min = minBits6
		}
		p.bad(n, "network %s is too broad (shorter than /%d)", pfx, min)
		return
	}
	p.addNet(pfx, v)
}
