package db

import (
	"context"
	"encoding/hex"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/picket-proxy/picket/reputation"
	"github.com/rs/zerolog"
)

const demoFeeds = "../../data/feeds"

func urlHash(t testing.TB, u string) reputation.Hash {
	t.Helper()
	e, err := reputation.Expression(u)
	if err != nil {
		t.Fatal(err)
	}
	return reputation.HashExpression(e)
}

func fileHash(t testing.TB, hexsum string) reputation.Hash {
	t.Helper()
	b, err := hex.DecodeString(hexsum)
	if err != nil {
		t.Fatal(err)
	}
	h, err := reputation.FileKey(b)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func TestLoadDemoFeeds(t *testing.T) {
	d, r, err := Load(demoFeeds, 1)
	if err != nil {
		t.Fatal(err)
	}
	if r.BadLines() != 0 {
		t.Errorf("bad lines = %d, want 0: %+v", r.BadLines(), r.Sources)
	}
	tests := []struct {
		name string
		hash reputation.Hash
		want reputation.Kind
	}{
		{"phishing host", urlHash(t, "phishing.picket.test"), reputation.KindPhishing},
		{"hosts file", urlHash(t, "telemetry.picket.test"), reputation.KindUnwanted},
		{"urlhaus", urlHash(t, "http://malware.picket.test/"), reputation.KindMalware},
		{"jsonl url", urlHash(t, "unwanted.picket.test/toolbar/"), reputation.KindUnwanted},
		{"jsonl clean host", urlHash(t, "clean.picket.test"), reputation.KindClean},
		{"EICAR MD5", fileHash(t, "44d88612fea8a8f36de82e1278abb02f"), reputation.KindMalware},
		{"EICAR SHA-1", fileHash(t, "3395856ce81f2b7382dee72602f798b642f14140"), reputation.KindMalware},
		{"EICAR SHA-256", fileHash(t, "275a021bbfb6489e54d471899f7db9d1663fc695ec2fe2a2c4538aabf651fd0f"), reputation.KindMalware},
		{"known good", fileHash(t, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"), reputation.KindClean},
		{"localhost skipped", urlHash(t, "localhost"), reputation.KindUnknown},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, _ := d.Get(tt.hash)
			if v.Kind != tt.want {
				t.Errorf("got %v, want %v", v.Kind, tt.want)
			}
			if tt.want != reputation.KindUnknown {
				es := d.Find(nil, tt.hash.Prefix())
				if len(es) == 0 || es[0].Hash.Prefix() != tt.hash.Prefix() {
					t.Errorf("Find(%v) = %v, want the entry", tt.hash.Prefix(), es)
				}
			}
		})
	}
}

func writeFeeds(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestBadLines(t *testing.T) {
	tests := []struct {
		name, format, body string
		entries, bad       int
		firstBad           int
	}{
		{"urls", "urls", "# c\nok.test\nhttp://\ntwo words\nok2.test/x\n", 2, 2, 3},
		{"hosts", "hosts", "0.0.0.0 a.test b.test\n0.0.0.0\nbare.test\nx y\n", 3, 2, 2},
		{"clamav", "clamav", "44d88612fea8a8f36de82e1278abb02f:68:E\nzz:1:x\n44d88612fea8a8f36de82e1278abb02f\n", 1, 2, 2},
		{"jsonl", "jsonl", "{\"url\":\"a.test\"}\n{bad\n{\"verdict\":\"malware\"}\n{\"sha256\":\"12\"}\n{\"url\":\"b.test\",\"verdict\":\"evil\"}\n", 1, 4, 2},
		{"urlhaus", "urlhaus-csv", "# h\n\"1\",\"d\",\"http://a.test/x\",\"online\",\"d\",\"malware_download\",\"t\",\"l\",\"r\"\n\"2\",\"d\"\n\"3\",\"d\",\"http://b.test/\",\"online\",\"malware_download\",\"t\",\"l\",\"r\"\n", 2, 1, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := writeFeeds(t, map[string]string{
				"feeds.toml": fmt.Sprintf("[[source]]\npath = \"f\"\nformat = %q\n", tt.format),
				"f":          tt.body,
			})
			_, r, err := Load(dir, 1)
			if err != nil {
				t.Fatal(err)
			}
			s := r.Sources[0]
			if s.Entries != tt.entries || s.BadLines != tt.bad {
				t.Errorf("got %d entries, %d bad (%v), want %d, %d", s.Entries, s.BadLines, s.Bad, tt.entries, tt.bad)
			}
			if len(s.Bad) > 0 && (s.Bad[0].Line != tt.firstBad || s.Bad[0].File != "f") {
				t.Errorf("first bad line %v, want f:%d", s.Bad[0], tt.firstBad)
			}
		})
	}
}

func TestLoadErrors(t *testing.T) {
	tests := []struct {
		name  string
		files map[string]string
		want  string
	}{
		{"no manifest", map[string]string{}, "feeds.toml"},
		{"bad toml", map[string]string{"feeds.toml": "[[source]\n"}, "feeds.toml"},
		{"unknown key", map[string]string{"feeds.toml": "[[source]]\npath=\"a\"\nformat=\"urls\"\ncolour=1\n", "a": ""}, "unknown key"},
		{"unknown format", map[string]string{"feeds.toml": "[[source]]\npath=\"a\"\nformat=\"xml\"\n"}, "unknown format"},
		{"bad verdict", map[string]string{"feeds.toml": "[[source]]\npath=\"a\"\nformat=\"urls\"\nverdict=\"evil\"\n"}, "unknown verdict"},
		{"missing file", map[string]string{"feeds.toml": "[[source]]\npath=\"a\"\nformat=\"urls\"\n"}, "source a"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := Load(writeFeeds(t, tt.files), 1)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

func TestStoreReload(t *testing.T) {
	dir := writeFeeds(t, map[string]string{
		"feeds.toml": "[[source]]\npath = \"u.txt\"\nformat = \"urls\"\n",
		"u.txt":      "one.test\n",
	})
	var changes int
	s, err := Open(Config{Dir: dir, Poll: -1, OnChange: func(old, new *DB) { changes++ }}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ask := func(u string) int {
		h := urlHash(t, u)
		a, _ := s.FindPrefixes(context.Background(), []reputation.Prefix{h.Prefix()})
		return len(a.Matches)
	}
	if got := ask("two.test"); got != 0 {
		t.Fatalf("before reload: %d matches, want 0", got)
	}
	if changed, err := s.Check(); changed || err != nil {
		t.Fatalf("Check() with no change = %v, %v; want false, nil", changed, err)
	}
	v1 := s.DB().Version()
	if err := os.WriteFile(filepath.Join(dir, "u.txt"), []byte("one.test\ntwo.test\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if changed, err := s.Check(); !changed || err != nil {
		t.Fatalf("Check() after change = %v, %v; want true, nil", changed, err)
	}
	if got := ask("two.test"); got != 1 {
		t.Errorf("after reload: %d matches, want 1", got)
	}
	if s.DB().Version() <= v1 || changes != 1 {
		t.Errorf("version %d (was %d), %d changes; want higher and 1", s.DB().Version(), v1, changes)
	}
	// A broken feeds.toml keeps the last good database.
	os.WriteFile(filepath.Join(dir, "feeds.toml"), []byte("[[source]"), 0o644)
	if _, err := s.Check(); err == nil {
		t.Error("Check() with a bad feeds.toml: no error")
	}
	if got := ask("two.test"); got != 1 {
		t.Errorf("after failed reload: %d matches, want 1", got)
	}
}

func FuzzFeedLine(f *testing.F) {
	for _, s := range []string{"a.test", "0.0.0.0 a.test", "44d88612fea8a8f36de82e1278abb02f:68:E", `{"url":"x"}`,
		`"1","d","http://a.test/x","online","d","malware_download","t","l","r"`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		n := 0
		p := parser{add: func(reputation.Hash, reputation.Verdict) { n++ }, bad: func(int, string, ...any) {},
			addNet: func(netip.Prefix, reputation.Verdict) { n++ }}
		for _, f := range Formats {
			if f != "urlhaus-csv" {
				p.lineFunc(f)(line, 1)
			}
		}
		p.urlLine(line, 1)
		p.hostsLine(line, 1)
		p.clamavLine(line, 1)
		p.jsonLine(line, 1)
		p.urlhausLine([]byte(line), 1)
	})
}

// synthetic builds a DB of n URL entries with a realistic mix of verdicts.
func synthetic(n int) *DB {
	b := NewBuilder(n)
	cats := []string{"phishing", "malware_download", "ads"}
	for i := 0; i < n; i++ {
		b.Add(reputation.HashExpression(fmt.Sprintf("host%d.example/path%d", i, i)),
			reputation.Verdict{Kind: reputation.Kind(2 + i%3), Category: cats[i%3]})
	}
	d, err := b.Build(1)
	if err != nil {
		panic(err)
	}
	return d
}

func BenchmarkBuild1M(b *testing.B) {
	const n = 1_000_000
	var d *DB
	for i := 0; i < b.N; i++ {
		d = synthetic(n)
	}
	b.ReportMetric(float64(d.Bytes())/n, "bytes/entry")
}

func BenchmarkLoadFeed1M(b *testing.B) {
	const n = 1_000_000
	dir := b.TempDir()
	var sb strings.Builder
	for i := 0; i < n; i++ {
		fmt.Fprintf(&sb, "http://host%d.example/path/%d.html\n", i, i)
	}
	os.WriteFile(filepath.Join(dir, "feeds.toml"), []byte("[[source]]\npath=\"u\"\nformat=\"urls\"\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "u"), []byte(sb.String()), 0o644)
	b.SetBytes(int64(sb.Len()))
	b.ResetTimer()
	var d *DB
	for i := 0; i < b.N; i++ {
		var err error
		if d, _, err = Load(dir, 1); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	b.ReportMetric(float64(d.Bytes())/n, "bytes/entry")
	b.ReportMetric(float64(ms.HeapInuse)/n, "heap-bytes/entry")
	runtime.KeepAlive(d)
}

func BenchmarkFind(b *testing.B) {
	d := synthetic(1_000_000)
	h := reputation.HashExpression("host4242.example/path4242")
	p := h.Prefix()
	var es []Entry
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		es = d.Find(es[:0], p)
	}
	if len(es) != 1 {
		b.Fatalf("got %d entries", len(es))
	}
}

func TestStoreReloadDoesNotBlockLookups(t *testing.T) {
	dir := writeFeeds(t, map[string]string{
		"feeds.toml": "[[source]]\npath = \"u.txt\"\nformat = \"urls\"\n",
		"u.txt":      "one.test\n",
	})
	s, err := Open(Config{Dir: dir, Poll: -1}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	h := urlHash(t, "one.test")
	stop := make(chan struct{})
	done := make(chan int)
	go func() {
		n := 0
		for {
			select {
			case <-stop:
				done <- n
				return
			default:
			}
			a, _ := s.FindPrefixes(context.Background(), []reputation.Prefix{h.Prefix()})
			if len(a.Matches) != 1 {
				t.Error("lookup during reload lost the entry")
			}
			n++
		}
	}()
	for i := 0; i < 20; i++ {
		// A different size each time: each Reload finds a change.
		if err := os.WriteFile(filepath.Join(dir, "u.txt"), []byte("one.test\n"+strings.Repeat("x.test\n", i+1)), 0o644); err != nil {
			t.Fatal(err)
		}
		v := s.DB().Version()
		if err := s.Reload(); err != nil {
			t.Fatal(err)
		}
		if s.DB().Version() == v {
			t.Fatalf("reload %d: the changed feed was not reloaded", i)
		}
	}
	close(stop)
	if n := <-done; n == 0 {
		t.Error("no lookups ran during the reloads")
	}
}

func BenchmarkFindMiss(b *testing.B) {
	d := synthetic(1_000_000)
	p := reputation.HashExpression("not there").Prefix()
	var es []Entry
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		es = d.Find(es[:0], p)
	}
	if len(es) != 0 {
		b.Fatalf("got %d entries", len(es))
	}
}

// BenchmarkFindURL is the database's part of a URL lookup that misses the
// caches: the 30 prefixes of a URL's expressions (host suffixes × path
// prefixes) in a database larger than the CPU's caches, a different URL
// each time. "each" looks them up one after the other, "all" in step.
func BenchmarkFindURL(b *testing.B) {
	d := synthetic(2_000_000)
	urls := make([][]reputation.Prefix, 4096)
	for i := range urls {
		for j := range 30 {
			urls[i] = append(urls[i], reputation.HashExpression(fmt.Sprintf("a%d.b%d.example/p%d/", i, j, j)).Prefix())
		}
	}
	var es []Entry
	b.Run("each", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			es = es[:0]
			for _, p := range urls[i%len(urls)] {
				es = d.Find(es, p)
			}
		}
	})
	b.Run("all", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			es = d.FindAll(es[:0], urls[i%len(urls)])
		}
	})
}
