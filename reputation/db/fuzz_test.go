package db

import (
	"bytes"
	"encoding/binary"
	"encoding/csv"
	"fmt"
	"hash/crc32"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/picket-proxy/picket/reputation"
)

// FuzzFeedFile runs each feed format's whole-file reader (line splitting,
// comments, over-long lines, the URLhaus CSV reader) over arbitrary bytes:
// no panic, and never more entries than lines.
func FuzzFeedFile(f *testing.F) {
	f.Add(uint8(0), []byte("# urls\nhttp://a.test/x\nb.test/\n\n"))
	f.Add(uint8(1), []byte("0.0.0.0 a.test b.test\n127.0.0.1 localhost\n# c\n"))
	f.Add(uint8(2), []byte("# id,dateadded,url,url_status,last_online,threat,tags,urlhaus_link,reporter\n"+
		`"1","2024-01-01","http://a.test/x","online","2024-01-01","malware_download","exe,Emotet","l","r"`+"\n"))
	f.Add(uint8(3), []byte("44d88612fea8a8f36de82e1278abb02f:68:Eicar-Test-Signature\n"))
	f.Add(uint8(4), []byte(`{"url":"http://a.test/","verdict":"phishing"}`+"\n"+`{"hash":"x"}`+"\n"))
	f.Add(uint8(2), []byte(strings.Repeat("x", 70<<10)+"\n\"1\",\"d\",\"http://a.test/\",\"o\",\"d\",\"t\",\"g\",\"l\",\"r\"\n"))
	f.Add(uint8(0), []byte(strings.Repeat("a", 70<<10)))
	f.Add(uint8(5), []byte("evil.test\n*.wild.test\n<html>\n"))
	f.Add(uint8(6), []byte("# sha256\n275a021bbfb6489e54d471899f7db9d1663fc695ec2fe2a2c4538aabf651fd0f\n"))
	f.Add(uint8(7), []byte("192.0.2.0/24 ; SBL1\n2001:db8::/32\n::ffff:1.2.3.4\n"))
	f.Add(uint8(8), []byte(`{"cidr":"192.0.2.0/24","sblid":"SBL1","rir":"arin"}`+"\n"+`{"type":"metadata"}`+"\n"))
	f.Fuzz(func(t *testing.T, format uint8, data []byte) {
		var n int
		p := parser{
			def:    reputation.Verdict{Kind: reputation.KindMalware},
			add:    func(reputation.Hash, reputation.Verdict) { n++ },
			addNet: func(netip.Prefix, reputation.Verdict) { n++ },
			bad:    func(int, string, ...any) {},
		}
		lines := bytes.Count(data, []byte("\n")) + 1
		var err error
		switch Formats[int(format)%len(Formats)] {
		case "urls":
			err = p.lines(bytes.NewReader(data), p.urlLine)
		case "hosts":
			err = p.lines(bytes.NewReader(data), p.hostsLine)
		case "urlhaus-csv":
			err = p.urlhaus(bytes.NewReader(data))
		case "clamav":
			err = p.lines(bytes.NewReader(data), p.clamavLine)
		default:
			err = p.lines(bytes.NewReader(data), p.lineFunc(Formats[int(format)%len(Formats)]))
		}
		if err != nil {
			t.Fatalf("reading from memory failed: %v", err)
		}
		// A hosts line may name several hosts; every other format adds at
		// most one entry a line.
		if max := lines * (1 + len(data)/2); n > max {
			t.Fatalf("%d entries from %d lines", n, lines)
		}
	})
}

// FuzzManifest reads arbitrary feeds.toml files: a manifest that is
// accepted names only known formats, and a path or a URL for each named
// source.
func FuzzManifest(f *testing.F) {
	f.Add("[[source]]\npath = \"urls.txt\"\nformat = \"urls\"\nverdict = \"phishing\"\n")
	f.Add("[[source]]\npath = \"a.fp\"\nformat = \"clamav\"\ncategory = \"c\"\nthreat = \"t\"\n")
	f.Add("[[source]]\nformat = \"nope\"\n[[source]]\npath = 3\n")
	f.Add("source = [ { path = \"x\", format = \"hosts\" } ]\n")
	f.Add("cache_dir = \"dl\"\n[[source]]\nname = \"u\"\nurl = \"https://a.example/x.gz\"\nformat = \"hashes\"\nrefresh = \"2h\"\nmax_size = \"1MiB\"\nheaders = { A = \"v\" }\n")
	f.Add("")
	f.Fuzz(func(t *testing.T, manifest string) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, ManifestName), []byte(manifest), 0o600); err != nil {
			t.Fatal(err)
		}
		m, err := ReadManifest(dir)
		if err != nil {
			return
		}
		if len(m.Sources) == 0 {
			t.Fatal("accepted a manifest without sources")
		}
		for _, s := range m.Sources {
			if (s.Path == "") == (s.URL == "") || s.Name == "" || !knownFormat(s.Format) {
				t.Fatalf("accepted source %+v", s)
			}
		}
	})
}

// FuzzSnapshot opens arbitrary database files (a mirror's download, a
// compiled file after a crash): a damaged one is an error, never a panic
// or a huge allocation. Since the CRCs stop nearly every mutation, each
// input is also opened with its CRCs recomputed, so that the fuzzer reaches
// the structure: whatever open accepts, every lookup, walk and write-back
// must handle without panicking, and Verify must hold a walk that is not
// in order to be an error.
func FuzzSnapshot(f *testing.F) {
	dir := f.TempDir()
	good := filepath.Join(dir, "good.db")
	if err := synthetic(20).WriteFile(good); err != nil {
		f.Fatal(err)
	}
	data, err := os.ReadFile(good)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(data)
	f.Add(data[:len(data)/2])
	f.Add([]byte(fileMagic))
	b := NewBuilder(0)
	for i := 0; i < 40; i++ {
		b.Add(reputation.HashExpression(fmt.Sprint(i)), reputation.Verdict{Kind: reputation.Kind(i % 5), Category: fmt.Sprint("c", i%3), ThreatName: fmt.Sprint("t", i)})
	}
	d40, err := b.Build(3)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(d40.data)
	f.Fuzz(func(t *testing.T, data []byte) {
		// open is ReadFile without the file (TestFileDamageIsDetected
		// covers the file itself): no disk in the loop.
		if d, err := open(bytes.Clone(data), true, nil); err == nil {
			exercise(t, d)
		}
		if len(data) < headerSize || string(data[:len(fileMagic)]) != fileMagic {
			return
		}
		fixed := bytes.Clone(data)
		binary.LittleEndian.PutUint32(fixed[56:], crc32c(fixed[headerSize:]))
		clear(fixed[12:16])
		binary.LittleEndian.PutUint32(fixed[12:], crc32.Checksum(fixed[:headerSize], castagnoli))
		if d, err := open(fixed, true, nil); err == nil {
			exercise(t, d)
		}
	})
}

// exercise runs every read of d; it must not panic.
func exercise(t *testing.T, d *DB) {
	var es []Entry
	for _, p := range []reputation.Prefix{0, 1, 0x7fffffff, 0xffffffff, 0x12345678} {
		es = d.Find(es[:0], p)
	}
	n := 0
	d.All(func(e Entry) {
		n++
		d.Get(e.Hash)
		es = d.Find(es[:0], e.Hash.Prefix())
	})
	if n != d.Len() {
		t.Fatalf("All gave %d entries, Len %d", n, d.Len())
	}
	if err := d.Verify(); err == nil {
		var back bytes.Buffer
		if err := d.WriteTo(&back, ""); err != nil {
			t.Fatal(err)
		}
		d2, err := open(back.Bytes(), true, nil)
		if err != nil || d2.Checksum() != d.Checksum() || d2.Version() != d.Version() {
			t.Fatalf("a verified database does not round-trip: %v", err)
		}
		var prev []byte
		d.All(func(e Entry) {
			if prev != nil && bytes.Compare(prev, e.Hash[:]) >= 0 {
				t.Fatal("Verify passed a database out of order")
			}
			prev = bytes.Clone(e.Hash[:])
		})
	}
	d.Apply(Changes{Added: d, Removed: d}, 1)
	Diff(d, d)
}

// FuzzSplitCSV holds the URLhaus reader's CSV fast path to encoding/csv:
// for every line, the same fields or the same failure.
func FuzzSplitCSV(f *testing.F) {
	for _, s := range []string{`"1","d","http://a.test/x","online","d","malware_download","t,u","l","r"`,
		`a,b,,c`, `"a""b",c`, `"a"x,b`, ` "a",b`, `"a`, `a"b`, `"",""`, `,`, "\"a\rb\",c", `"a,b",c,`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		if strings.ContainsAny(line, "\n") {
			return
		}
		want, werr := csv.NewReader(strings.NewReader(line)).Read()
		got, gerr := splitCSV([]byte(line))
		if (werr == nil) != (gerr == nil) || !slices.Equal(got, want) {
			t.Fatalf("splitCSV(%q) = %q, %v; encoding/csv: %q, %v", line, got, gerr, want, werr)
		}
	})
}
