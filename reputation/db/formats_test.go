package db

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"github.com/picket-proxy/picket/reputation"
)

// loadOne loads a feed directory with one source of format holding body.
func loadOne(t *testing.T, format, keys, body string) (*DB, SourceReport) {
	t.Helper()
	dir := writeFeeds(t, map[string]string{
		"feeds.toml": fmt.Sprintf("[[source]]\npath = \"f\"\nformat = %q\n%s", format, keys),
		"f":          body,
	})
	d, r, err := Load(dir, 1)
	if err != nil {
		t.Fatal(err)
	}
	return d, r.Sources[0]
}

func TestNewFormats(t *testing.T) {
	eicarSHA256 := "275a021bbfb6489e54d471899f7db9d1663fc695ec2fe2a2c4538aabf651fd0f"
	tests := []struct {
		name, format, body string
		entries, bad       int
		firstBad           int
		found              []reputation.Hash // each must be in the DB
		absent             []reputation.Hash
	}{
		{"domains", "domains", "# a list\nevil.test\n*.wild.test\n.dot.test\ntrail.test.\nBIG.TEST # comment\n<html>\nhttp://x.test/\ntwo words\n", 5, 3, 7,
			[]reputation.Hash{urlHash(t, "evil.test"), urlHash(t, "wild.test"), urlHash(t, "dot.test"), urlHash(t, "trail.test"), urlHash(t, "big.test")},
			[]reputation.Hash{urlHash(t, "x.test/")}},
		// Domains read as every part of Picket reads hosts (internal/netaddr):
		// an international name is its punycode, a name that ends in a number
		// is an IPv4 address or nothing.
		{"domains read as hosts", "domains", "bücher.test\n0x7f.1\n1.2.3.256\n", 2, 1, 3,
			[]reputation.Hash{urlHash(t, "xn--bcher-kva.test"), urlHash(t, "127.0.0.1")}, nil},
		{"hashes", "hashes", "# MalwareBazaar export\n" + eicarSHA256 + "\n44D88612FEA8A8F36DE82E1278ABB02F\n3395856ce81f2b7382dee72602f798b642f14140 # sha1\nzz\n" + eicarSHA256 + " extra\n", 3, 2, 5,
			[]reputation.Hash{fileHash(t, eicarSHA256), fileHash(t, "44d88612fea8a8f36de82e1278abb02f"), fileHash(t, "3395856ce81f2b7382dee72602f798b642f14140")}, nil},
		{"ips", "ips", "; Spamhaus DROP text\n192.0.2.0/24 ; SBL1\n198.51.100.7\n2001:db8::/32 # doc\n::ffff:203.0.113.0/120\n10.0.0.1/8\nnot-an-ip\n0.0.0.0/0\n1.2.3.4 5.6.7.8\n::/4\n", 5, 4, 7, nil, nil},
		{"spamhaus-drop", "spamhaus-drop", `{"cidr":"192.0.2.0/24","sblid":"SBL1","rir":"arin"}` + "\n" + `{"cidr":"2001:db8::/32","sblid":"SBL2","rir":"ripencc"}` + "\n" +
			`{"sblid":"SBL3"}` + "\n{nope\n" + `{"type":"metadata","timestamp":1700000000,"size":2,"records":2,"copyright":"(c) Spamhaus","terms":"https://www.spamhaus.org/drop/terms/"}` + "\n", 2, 2, 3, nil, nil},
		{"jsonl cidr", "jsonl", `{"cidr":"192.0.2.0/24","verdict":"malware","name":"Botnet.CC"}` + "\n" + `{"cidr":"bad"}` + "\n", 1, 1, 2, nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, s := loadOne(t, tt.format, "", tt.body)
			if s.Entries != tt.entries || s.BadLines != tt.bad {
				t.Errorf("got %d entries, %d bad (%v), want %d, %d", s.Entries, s.BadLines, s.Bad, tt.entries, tt.bad)
			}
			if len(s.Bad) > 0 && s.Bad[0].Line != tt.firstBad {
				t.Errorf("first bad line %v, want line %d", s.Bad[0], tt.firstBad)
			}
			for _, h := range tt.found {
				if v, ok := d.Get(h); !ok || v.Kind != reputation.KindMalware {
					t.Errorf("%v: got %v %v, want malware", h, v, ok)
				}
			}
			for _, h := range tt.absent {
				if _, ok := d.Get(h); ok {
					t.Errorf("%v: listed, want absent", h)
				}
			}
		})
	}
}

func TestNetworksLookup(t *testing.T) {
	_, s := loadOne(t, "ips", "", "")
	if s.Entries != 0 {
		t.Fatalf("empty list: %d entries", s.Entries)
	}
	dir := writeFeeds(t, map[string]string{
		"feeds.toml": `
[[source]]
path = "drop.json"
format = "spamhaus-drop"
category = "hijacked-network"
[[source]]
path = "cc.txt"
format = "ips"
verdict = "phishing"
category = "phishing-host"
[[source]]
path = "good.txt"
format = "ips"
verdict = "clean"
[[source]]
path = "u.txt"
format = "urls"
`,
		"drop.json": `{"cidr":"192.0.2.0/24","sblid":"SBL1"}` + "\n" + `{"cidr":"2001:db8::/32","sblid":"SBL2"}` + "\n" + `{"cidr":"198.51.100.0/24","sblid":"SBL3"}` + "\n",
		"cc.txt":    "192.0.2.128/25\n192.0.2.77\n203.0.113.9\n",
		"good.txt":  "198.51.100.10\n",
		"u.txt":     "a.test\n",
	})
	d, r, err := Load(dir, 1)
	if err != nil {
		t.Fatal(err)
	}
	if got := d.Networks().Len(); got != 7 || r.Entries() != 8 || d.Len() != 1 {
		t.Errorf("got %d networks, %d entries, %d hashes; want 7, 8, 1", got, r.Entries(), d.Len())
	}
	tests := []struct {
		addr    string
		want    reputation.Kind
		network string
		source  string
		threat  string
	}{
		{"192.0.2.1", reputation.KindMalware, "192.0.2.0/24", "drop.json", "SBL1"},
		{"192.0.2.200", reputation.KindMalware, "192.0.2.0/24", "drop.json", "SBL1"}, // the /24's malware beats the /25's phishing
		{"192.0.2.77", reputation.KindMalware, "192.0.2.0/24", "drop.json", "SBL1"},
		{"::ffff:192.0.2.5", reputation.KindMalware, "192.0.2.0/24", "drop.json", "SBL1"}, // mapped form
		{"203.0.113.9", reputation.KindPhishing, "203.0.113.9/32", "cc.txt", ""},
		{"203.0.113.10", reputation.KindUnknown, "", "", ""},
		{"2001:db8:1::1", reputation.KindMalware, "2001:db8::/32", "drop.json", "SBL2"},
		{"2001:db9::1", reputation.KindUnknown, "", "", ""},
		{"198.51.100.10", reputation.KindClean, "198.51.100.10/32", "good.txt", ""}, // known good wins
		{"198.51.100.11", reputation.KindMalware, "198.51.100.0/24", "drop.json", "SBL3"},
		{"0.0.0.0", reputation.KindUnknown, "", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.addr, func(t *testing.T) {
			m, ok := d.Networks().Lookup(netip.MustParseAddr(tt.addr))
			if tt.want == reputation.KindUnknown {
				if ok {
					t.Errorf("got %+v, want no match", m)
				}
				return
			}
			if !ok || m.Verdict.Kind != tt.want || m.Network.String() != tt.network || m.Source != tt.source || m.Verdict.ThreatName != tt.threat {
				t.Errorf("got %+v %v, want %v in %s from %s (%q)", m, ok, tt.want, tt.network, tt.source, tt.threat)
			}
		})
	}
	var none *Networks
	if _, ok := none.Lookup(netip.MustParseAddr("192.0.2.1")); ok || none.Len() != 0 {
		t.Error("a nil *Networks matched")
	}
}

func TestNetworksEveryPrefixLength(t *testing.T) {
	// One network of each length holding 10.255.255.255 (v4) and
	// 2001:db8:ffff:...:ffff (v6): the address is found through each, and
	// the address just outside each network is not.
	var sb strings.Builder
	for bits := minBits4; bits <= 32; bits++ {
		p := netip.PrefixFrom(netip.MustParseAddr("10.255.255.255"), bits).Masked()
		sb.WriteString(p.String() + "\n")
	}
	for bits := minBits6; bits <= 128; bits++ {
		p := netip.PrefixFrom(netip.MustParseAddr("2001:db8:ffff:ffff:ffff:ffff:ffff:ffff"), bits).Masked()
		sb.WriteString(p.String() + "\n")
	}
	d, s := loadOne(t, "ips", "", sb.String())
	if s.BadLines != 0 {
		t.Fatalf("bad lines: %v", s.Bad)
	}
	for bits := minBits4; bits <= 32; bits++ {
		p := netip.PrefixFrom(netip.MustParseAddr("10.255.255.255"), bits).Masked()
		only := writeFeeds(t, map[string]string{"feeds.toml": "[[source]]\npath=\"f\"\nformat=\"ips\"\n", "f": p.String() + "\n"})
		od, _, err := Load(only, 1)
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := od.Networks().Lookup(p.Addr()); !ok {
			t.Errorf("%s: its first address not found", p)
		}
		if before := p.Addr().Prev(); before.IsValid() {
			if m, ok := od.Networks().Lookup(before); ok {
				t.Errorf("%s: %s found in %v, want outside", p, before, m.Network)
			}
		}
	}
	if m, ok := d.Networks().Lookup(netip.MustParseAddr("2001:db8:ffff:ffff:ffff:ffff:ffff:ffff")); !ok || m.Network.Bits() != 128 {
		t.Errorf("v6 host: got %v %v, want the /128", m.Network, ok)
	}
	if m, ok := d.Networks().Lookup(netip.MustParseAddr("2001:db8:ffff:ffff:ffff:ffff:ffff:fffe")); !ok || m.Network.Bits() != 127 {
		t.Errorf("v6 neighbour: got %v %v, want the /127", m.Network, ok)
	}
}

func TestManifestURLSources(t *testing.T) {
	t.Setenv("PICKET_TEST_KEY", "k3y")
	ok := `
cache_dir = "dl"
[[source]]
name = "urlhaus"
url = "https://feeds.example/csv?key=secret"
format = "urlhaus-csv"
refresh = "30m"
max_size = "64MiB"
headers = { "Auth-Key" = "env:PICKET_TEST_KEY", "X-From-File" = "file:key.txt", "User-Agent" = "picket" }
[[source]]
path = "local.txt"
format = "domains"
stale_after = "48h"
[[source]]
name = "catalogue"
enabled = false
url = "https://feeds.example/x?key={env:PICKET_TEST_UNSET_VAR}"
format = "hashes"
headers = { "Auth-Key" = "env:PICKET_TEST_UNSET_VAR" }
`
	dir := writeFeeds(t, map[string]string{"feeds.toml": ok, "key.txt": "from-file\n", "local.txt": "a.test\n"})
	m, err := ReadManifest(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Sources) != 2 || len(m.Disabled) != 1 || m.Disabled[0].Name != "catalogue" {
		t.Errorf("enabled %d, disabled %+v; want 2 and the catalogue entry (its unset variable not resolved)", len(m.Sources), m.Disabled)
	}
	if _, ok := m.Source("catalogue"); ok {
		t.Error("a disabled source is among the sources")
	}
	u, _ := m.Source("urlhaus")
	if u.Refresh.D().Minutes() != 30 || u.StaleAfter.D().Minutes() != 90 || u.MaxSize != 64<<20 || u.Timeout.D() != DefaultTimeout ||
		u.Compression != "auto" || u.MinRatio != DefaultMinRatio {
		t.Errorf("defaults: got %+v", u)
	}
	if got := m.File(u); got != dir+"/dl/urlhaus.feed" {
		t.Errorf("cached copy at %s", got)
	}
	if got := u.DisplayURL(); strings.Contains(got, "secret") {
		t.Errorf("DisplayURL %q shows the query", got)
	}
	if got, err := ExpandURL(dir, "https://a.example/{file:key.txt}/x?auth-key={env:PICKET_TEST_KEY}&t=a+b"); err != nil ||
		got != "https://a.example/from-file/x?auth-key=k3y&t=a+b" {
		t.Errorf("ExpandURL: %q %v", got, err)
	}
	for k, want := range map[string]string{"Auth-Key": "k3y", "X-From-File": "from-file", "User-Agent": "picket"} {
		if v, err := HeaderValue(dir, u.Headers[k]); err != nil || v != want {
			t.Errorf("header %s: got %q %v, want %q", k, v, err, want)
		}
	}
	l, _ := m.Source("local.txt")
	if l.StaleAfter.D().Hours() != 48 || l.Refresh != 0 {
		t.Errorf("local source: %+v", l)
	}
	// A download without a copy yet loads as Missing, not as an error.
	d, r, err := Load(dir, 1)
	if err != nil {
		t.Fatal(err)
	}
	if s, _ := r.Source("urlhaus"); !s.Missing || s.Entries != 0 || d.Len() != 1 {
		t.Errorf("missing copy: %+v, %d entries", s, d.Len())
	}

	bad := []struct{ name, manifest, want string }{
		{"both", "[[source]]\nname=\"x\"\npath=\"a\"\nurl=\"https://a.example/\"\nformat=\"urls\"\n", "source 1 (x): url: give either path or url"},
		{"no name", "[[source]]\nurl=\"https://a.example/\"\nformat=\"urls\"\n", "name: required with url"},
		{"bad name", "[[source]]\nname=\"../x\"\nurl=\"https://a.example/\"\nformat=\"urls\"\n", "name: \"../x\""},
		{"dup name", "[[source]]\nname=\"x\"\nurl=\"https://a.example/\"\nformat=\"urls\"\n[[source]]\nname=\"x\"\nurl=\"https://b.example/\"\nformat=\"urls\"\n", "also the name of source 1"},
		{"ftp", "[[source]]\nname=\"x\"\nurl=\"ftp://a.example/\"\nformat=\"urls\"\n", "url: invalid URL"},
		{"userinfo", "[[source]]\nname=\"x\"\nurl=\"https://u:p@a.example/\"\nformat=\"urls\"\n", "no user info"},
		{"refresh", "[[source]]\nname=\"x\"\nurl=\"https://a.example/\"\nformat=\"urls\"\nrefresh=\"10ms\"\n", "refresh: 10ms is too often"},
		{"refresh syntax", "[[source]]\nname=\"x\"\nurl=\"https://a.example/\"\nformat=\"urls\"\nrefresh=\"hourly\"\n", "invalid duration"},
		{"stale", "[[source]]\nname=\"x\"\nurl=\"https://a.example/\"\nformat=\"urls\"\nrefresh=\"2h\"\nstale_after=\"1h\"\n", "stale_after: 1h0m0s is shorter"},
		{"size", "[[source]]\nname=\"x\"\nurl=\"https://a.example/\"\nformat=\"urls\"\nmax_size=\"lots\"\n", "invalid size"},
		{"compression", "[[source]]\nname=\"x\"\nurl=\"https://a.example/\"\nformat=\"urls\"\ncompression=\"xz\"\n", "compression: unknown"},
		{"ratio", "[[source]]\nname=\"x\"\nurl=\"https://a.example/\"\nformat=\"urls\"\nmin_ratio=2.0\n", "min_ratio"},
		{"url placeholder", "[[source]]\nname=\"x\"\nurl=\"https://a.example/x?key={env:PICKET_TEST_UNSET_VAR}\"\nformat=\"urls\"\n", "url: {env:PICKET_TEST_UNSET_VAR}: environment variable PICKET_TEST_UNSET_VAR is not set"},
		{"env", "[[source]]\nname=\"x\"\nurl=\"https://a.example/\"\nformat=\"urls\"\nheaders={K=\"env:PICKET_TEST_UNSET_VAR\"}\n", "headers.K: environment variable PICKET_TEST_UNSET_VAR is not set"},
		{"file", "[[source]]\nname=\"x\"\nurl=\"https://a.example/\"\nformat=\"urls\"\nheaders={K=\"file:nope.txt\"}\n", "headers.K: open"},
		{"header name", "[[source]]\nname=\"x\"\nurl=\"https://a.example/\"\nformat=\"urls\"\nheaders={\"Bad Name\"=\"v\"}\n", "not a valid header name"},
		{"disabled still checked", "[[source]]\nname=\"x\"\nenabled=false\nurl=\"ftp://a.example/\"\nformat=\"urls\"\n", "url: invalid URL"},
		{"url key on a file", "[[source]]\npath=\"a\"\nformat=\"urls\"\nrefresh=\"1h\"\n", "source 1 (a): refresh: only for a source with url"},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ReadManifest(writeFeeds(t, map[string]string{"feeds.toml": tt.manifest}))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

// TestFeedOddBytes: a feed saved by a Windows tool — a UTF-8 byte order
// mark before its first line, CRLF line ends — is read as the same feed
// without them: the first entry is not lost to the mark, and no line is
// counted bad for it, in every format.
func TestFeedOddBytes(t *testing.T) {
	const bom = "\uFEFF"
	eicarSHA256 := "275a021bbfb6489e54d471899f7db9d1663fc695ec2fe2a2c4538aabf651fd0f"
	for _, tc := range []struct {
		format, first, second string
		found                 reputation.Hash // the first line's entry
	}{
		{"domains", "evil.test", "other.test", urlHash(t, "evil.test")},
		{"urls", "http://evil.test/a", "other.test", urlHash(t, "evil.test/a")},
		{"hosts", "0.0.0.0 evil.test", "0.0.0.0 other.test", urlHash(t, "evil.test")},
		{"hashes", eicarSHA256, "44d88612fea8a8f36de82e1278abb02f", fileHash(t, eicarSHA256)},
		{"clamav", eicarSHA256 + ":68:Eicar", "44d88612fea8a8f36de82e1278abb02f:68:Eicar2", fileHash(t, eicarSHA256)},
		{"jsonl", `{"host":"evil.test"}`, `{"host":"other.test"}`, urlHash(t, "evil.test")},
		{"urlhaus-csv", `"1","2024-01-01 00:00:00","http://evil.test/a","online","2024-01-01 00:00:00","malware_download","exe","https://urlhaus.abuse.ch/url/1/","r"`,
			`"2","2024-01-01 00:00:00","http://other.test/b","online","2024-01-01 00:00:00","malware_download","exe","https://urlhaus.abuse.ch/url/2/","r"`, urlHash(t, "evil.test/a")},
		{"ips", "192.0.2.0/24", "198.51.100.7", reputation.Hash{}},
		{"spamhaus-drop", `{"cidr":"192.0.2.0/24","sblid":"SBL1"}`, `{"cidr":"198.51.100.0/24","sblid":"SBL2"}`, reputation.Hash{}},
	} {
		for _, shape := range []struct{ name, body string }{
			{"BOM", bom + tc.first + "\n" + tc.second + "\n"},
			{"BOM and CRLF", bom + tc.first + "\r\n" + tc.second + "\r\n"},
			{"BOM before a comment", bom + "# list\n" + tc.first + "\n" + tc.second + "\n"},
		} {
			if tc.format == "spamhaus-drop" && shape.name == "BOM before a comment" {
				continue // JSON lines have no comments
			}
			t.Run(tc.format+"/"+shape.name, func(t *testing.T) {
				d, s := loadOne(t, tc.format, "", shape.body)
				if s.Entries != 2 || s.BadLines != 0 {
					t.Errorf("got %d entries, %d bad %v, want 2 entries, none bad", s.Entries, s.BadLines, s.Bad)
				}
				if tc.found != (reputation.Hash{}) {
					if _, ok := d.Get(tc.found); !ok {
						t.Errorf("the first line's entry is not in the database")
					}
				}
			})
		}
	}
}

// TestFeedLongLine: a line longer than maxLineBytes is one bad line — the
// entries after it are read, in every format, as the URLhaus reader always
// did.
func TestFeedLongLine(t *testing.T) {
	long := strings.Repeat("a", maxLineBytes+10)
	eicarSHA256 := "275a021bbfb6489e54d471899f7db9d1663fc695ec2fe2a2c4538aabf651fd0f"
	for _, tc := range []struct {
		format, first, last string
		found               reputation.Hash // the last line's entry
	}{
		{"domains", "evil.test", "other.test", urlHash(t, "other.test")},
		{"urls", "http://evil.test/a", "other.test", urlHash(t, "other.test")},
		{"hosts", "0.0.0.0 evil.test", "0.0.0.0 other.test", urlHash(t, "other.test")},
		{"hashes", "44d88612fea8a8f36de82e1278abb02f", eicarSHA256, fileHash(t, eicarSHA256)},
		{"clamav", "44d88612fea8a8f36de82e1278abb02f:68:Eicar2", eicarSHA256 + ":68:Eicar", fileHash(t, eicarSHA256)},
		{"jsonl", `{"host":"evil.test"}`, `{"host":"other.test"}`, urlHash(t, "other.test")},
		{"urlhaus-csv", `"1","2024-01-01 00:00:00","http://evil.test/a","online","2024-01-01 00:00:00","malware_download","exe","https://urlhaus.abuse.ch/url/1/","r"`,
			`"2","2024-01-01 00:00:00","http://other.test/b","online","2024-01-01 00:00:00","malware_download","exe","https://urlhaus.abuse.ch/url/2/","r"`, urlHash(t, "other.test/b")},
		{"ips", "192.0.2.0/24", "198.51.100.7", reputation.Hash{}},
		{"spamhaus-drop", `{"cidr":"192.0.2.0/24","sblid":"SBL1"}`, `{"cidr":"198.51.100.0/24","sblid":"SBL2"}`, reputation.Hash{}},
	} {
		t.Run(tc.format, func(t *testing.T) {
			d, s := loadOne(t, tc.format, "", tc.first+"\n"+long+"\n"+tc.last+"\n")
			if s.Entries != 2 || s.BadLines != 1 || len(s.Bad) != 1 || s.Bad[0].Line != 2 {
				t.Errorf("got %d entries, %d bad %v, want 2 entries and line 2 bad", s.Entries, s.BadLines, s.Bad)
			}
			if tc.found != (reputation.Hash{}) {
				if _, ok := d.Get(tc.found); !ok {
					t.Errorf("the entry after the long line is not in the database")
				}
			}
		})
	}
}
