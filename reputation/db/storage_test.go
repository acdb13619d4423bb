package db

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/picket-proxy/picket/reputation"
	"github.com/rs/zerolog"
)

// model is the reference the compiled database is checked against: a map
// with Builder.Add's rule (the more severe verdict wins; between equals,
// details win, then the smaller category, then the smaller name).
type model map[reputation.Hash]reputation.Verdict

func norm(v reputation.Verdict) reputation.Verdict {
	return reputation.Verdict{Kind: v.Kind, Category: truncateString(v.Category, maxVerdictStr), ThreatName: truncateString(v.ThreatName, maxVerdictStr)}
}

func modelWorse(v, w reputation.Verdict) bool {
	if v.Kind != w.Kind {
		return v.Kind > w.Kind
	}
	dv, dw := v.Category != "" || v.ThreatName != "", w.Category != "" || w.ThreatName != ""
	if dv != dw {
		return dv
	}
	if v.Category != w.Category {
		return v.Category < w.Category
	}
	return v.ThreatName < w.ThreatName
}

func (m model) add(h reputation.Hash, v reputation.Verdict) {
	v = norm(v)
	if old, ok := m[h]; !ok || modelWorse(v, old) {
		m[h] = v
	}
}

func (m model) sorted() []reputation.Hash {
	return slices.SortedFunc(maps.Keys(m), func(a, b reputation.Hash) int { return bytes.Compare(a[:], b[:]) })
}

// checksum is the protocol's checksum computed the obvious way.
func (m model) checksum() [32]byte {
	s := sha256.New()
	for _, h := range m.sorted() {
		v := m[h]
		var b []byte
		b = append(b, h[:]...)
		b = append(b, byte(v.Kind))
		b = binary.AppendUvarint(b, uint64(len(v.Category)))
		b = append(b, v.Category...)
		b = binary.AppendUvarint(b, uint64(len(v.ThreatName)))
		b = append(b, v.ThreatName...)
		s.Write(b)
	}
	var out [32]byte
	s.Sum(out[:0])
	return out
}

// entries makes n random additions: hashes often repeated (duplicates to
// merge), verdicts from small pools and one of a kind, a few long names,
// and categories beyond the table's limit when manyCats is set.
func entries(r *rand.Rand, n int, manyCats bool) []Entry {
	var es []Entry
	for i := 0; i < n; i++ {
		var h reputation.Hash
		if len(es) > 0 && r.IntN(4) == 0 {
			h = es[r.IntN(len(es))].Hash
		} else {
			for k := 0; k < 32; k += 8 {
				binary.LittleEndian.PutUint64(h[k:], r.Uint64())
			}
		}
		v := reputation.Verdict{Kind: reputation.Kind(r.IntN(5))}
		switch r.IntN(4) {
		case 1:
			v.Category = []string{"phishing", "malware_download", "ads"}[r.IntN(3)]
		case 2:
			if manyCats {
				v.Category = fmt.Sprint("cat-", r.IntN(6000))
			}
		}
		switch r.IntN(5) {
		case 1, 2:
			v.ThreatName = fmt.Sprint("Win.Trojan.Agent-", r.Uint32())
		case 3:
			v.ThreatName = []string{"Mirai", "AgentTesla"}[r.IntN(2)]
		case 4:
			if r.IntN(50) == 0 {
				v.ThreatName = strings.Repeat("é", 700) // 1400 bytes: truncated on a rune boundary
			}
		}
		es = append(es, Entry{Hash: h, Verdict: v})
	}
	return es
}

func build(t testing.TB, es []Entry, path string) (*DB, model) {
	t.Helper()
	b := NewBuilder(len(es))
	b.SetTempDir(t.TempDir())
	m := model{}
	for _, e := range es {
		b.Add(e.Hash, e.Verdict)
		m.add(e.Hash, e.Verdict)
	}
	var d *DB
	var err error
	if path != "" {
		d, err = b.BuildTo(Target{Path: path, Version: 7})
	} else {
		d, err = b.Build(7)
	}
	if err != nil {
		t.Fatal(err)
	}
	return d, m
}

// check compares d with the model: every lookup, the order, the checksum.
func check(t *testing.T, d *DB, m model) {
	t.Helper()
	if d.Len() != len(m) {
		t.Fatalf("Len = %d, want %d", d.Len(), len(m))
	}
	if err := d.Verify(); err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if got, want := d.Checksum(), m.checksum(); got != want {
		t.Fatalf("Checksum = %x, want %x", got, want)
	}
	keys := m.sorted()
	i := 0
	d.All(func(e Entry) {
		if i >= len(keys) || e.Hash != keys[i] || e.Verdict != m[keys[i]] {
			t.Fatalf("All: entry %d = %x %+v, want %x %+v", i, e.Hash, e.Verdict, keys[i], m[keys[i]])
		}
		i++
	})
	var es []Entry
	for _, h := range keys {
		v, ok := d.Get(h)
		if !ok || v != m[h] {
			t.Fatalf("Get(%x) = %+v, %v; want %+v", h, v, ok, m[h])
		}
		es = d.Find(es[:0], h.Prefix())
		found := false
		for _, e := range es {
			if e.Hash.Prefix() != h.Prefix() {
				t.Fatalf("Find(%v) returned %x", h.Prefix(), e.Hash)
			}
			found = found || (e.Hash == h && e.Verdict == m[h])
		}
		if !found {
			t.Fatalf("Find(%v) = %+v, missing %x", h.Prefix(), es, h)
		}
		// A hash next to a present one is absent.
		h[31] ^= 0x55
		if _, ok := m[h]; !ok {
			if v, ok := d.Get(h); ok {
				t.Fatalf("Get(absent %x) = %+v", h, v)
			}
		}
	}
}

// small sets the spill thresholds low, so that a few thousand entries go
// through the partition files, a verdict file and an unnamed output file.
func small(t *testing.T) {
	r, b, o := memRecords, memBlobs, memDB
	memRecords, memBlobs, memDB = 100*recSize, 1000, 1000
	t.Cleanup(func() { memRecords, memBlobs, memDB = r, b, o })
}

func TestBuildAgainstModel(t *testing.T) {
	for _, tt := range []struct {
		name     string
		n        int
		spill    bool
		file     bool
		manyCats bool
	}{
		{"empty", 0, false, false, false},
		{"one", 1, false, false, false},
		{"in memory", 3000, false, false, false},
		{"spilled", 5000, true, false, false},
		{"file", 5000, true, true, false},
		{"categories inline", 20000, false, false, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if tt.spill {
				small(t)
			}
			path := ""
			if tt.file {
				path = filepath.Join(t.TempDir(), "feeds.db")
			}
			d, m := build(t, entries(rand.New(rand.NewPCG(uint64(tt.n), 1)), tt.n, tt.manyCats), path)
			check(t, d, m)
			if got, want := d.Mapped(), tt.spill && canMap; got != want {
				t.Errorf("Mapped = %v, want %v", got, want)
			}
			if tt.file {
				back, err := ReadFile(path)
				if err != nil {
					t.Fatal(err)
				}
				check(t, back, m)
				if back.Version() != 7 {
					t.Errorf("version %d, want 7", back.Version())
				}
			}
			left, _ := filepath.Glob(filepath.Join(os.TempDir(), ".picketdb-*"))
			for _, f := range left {
				if fi, err := os.Stat(f); err == nil && fi.ModTime().After(startTime) {
					t.Errorf("temporary file left behind: %s", f)
				}
			}
		})
	}
}

func TestBuildDuplicatesDoNotDependOnOrder(t *testing.T) {
	small(t)
	es := entries(rand.New(rand.NewPCG(3, 3)), 4000, false)
	a, _ := build(t, es, "")
	slices.Reverse(es)
	b, _ := build(t, es, "")
	if a.Checksum() != b.Checksum() {
		t.Error("the same entries added in another order give another database")
	}
}

func TestFileDamageIsDetected(t *testing.T) {
	small(t)
	path := filepath.Join(t.TempDir(), "feeds.db")
	d, m := build(t, entries(rand.New(rand.NewPCG(4, 4)), 3000, false), path)
	check(t, d, m)
	good, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(5, 5))
	for _, off := range []int{0, 8, 12, 20, 60, 100, 255, headerSize, headerSize + 1000, len(good) / 2, len(good) - 1, r.IntN(len(good))} {
		bad := slices.Clone(good)
		bad[off] ^= 0x10
		p := filepath.Join(t.TempDir(), "bad.db")
		os.WriteFile(p, bad, 0o600)
		if _, err := ReadFile(p); err == nil {
			t.Errorf("a flipped bit at byte %d of %d went unnoticed", off, len(good))
		}
	}
	p := filepath.Join(t.TempDir(), "short.db")
	os.WriteFile(p, good[:len(good)-1], 0o600)
	if _, err := ReadFile(p); err == nil {
		t.Error("a truncated file went unnoticed")
	}
}

func TestDiffApplyAgainstModel(t *testing.T) {
	for _, spill := range []bool{false, true} {
		t.Run(fmt.Sprint("spill=", spill), func(t *testing.T) {
			if spill {
				small(t)
			}
			r := rand.New(rand.NewPCG(6, 6))
			es := entries(r, 5000, false)
			old, om := build(t, es, "")
			// new: about a tenth removed, a tenth changed, some added.
			var next []Entry
			want := model{}
			for _, h := range om.sorted() {
				switch r.IntN(10) {
				case 0: // removed
				case 1:
					e := Entry{Hash: h, Verdict: reputation.Verdict{Kind: reputation.KindPhishing, ThreatName: fmt.Sprint("changed-", r.Uint32())}}
					next = append(next, e)
					want.add(e.Hash, e.Verdict)
				default:
					next = append(next, Entry{Hash: h, Verdict: om[h]})
					want.add(h, om[h])
				}
			}
			for _, e := range entries(r, 400, false) {
				next = append(next, e)
				want.add(e.Hash, e.Verdict)
			}
			new, nm := build(t, next, "")
			check(t, new, nm)

			c, err := Diff(old, new)
			if err != nil {
				t.Fatal(err)
			}
			added, removed := 0, 0
			for h, v := range nm {
				if ov, ok := om[h]; !ok || ov != v {
					added++
					if got, ok := c.Added.Get(h); !ok || got != v {
						t.Fatalf("Diff: added %x = %+v, %v; want %+v", h, got, ok, v)
					}
				}
			}
			for h := range om {
				if _, ok := nm[h]; !ok {
					removed++
					if _, ok := c.Removed.Get(h); !ok {
						t.Fatalf("Diff: %x not removed", h)
					}
				}
			}
			if c.Added.Len() != added || c.Removed.Len() != removed {
				t.Fatalf("Diff: %d added, %d removed; want %d, %d", c.Added.Len(), c.Removed.Len(), added, removed)
			}
			got, err := old.Apply(c, 9)
			if err != nil {
				t.Fatal(err)
			}
			check(t, got, nm)
			if got.Version() != 9 {
				t.Errorf("Apply: version %d, want 9", got.Version())
			}
			path := filepath.Join(t.TempDir(), "mirror.db")
			got, err = old.ApplyTo(c, Target{Path: path, Version: 9})
			if err != nil {
				t.Fatal(err)
			}
			if back, err := ReadFile(path); err != nil || back.Checksum() != nm.checksum() {
				t.Fatalf("ApplyFile: %v", err)
			}
			// Apply(nothing) is the same database.
			same, err := old.Apply(Changes{}, 10)
			if err != nil || same.Checksum() != old.Checksum() {
				t.Errorf("Apply of no changes: %v", err)
			}
		})
	}
}

func TestWriteFileRoundTrip(t *testing.T) {
	for _, spill := range []bool{false, true} {
		t.Run(fmt.Sprint("spill=", spill), func(t *testing.T) {
			if spill {
				small(t)
			}
			d, m := build(t, entries(rand.New(rand.NewPCG(7, 7)), 2000, false), "")
			path := filepath.Join(t.TempDir(), "copy.db")
			if err := d.WriteFile(path); err != nil {
				t.Fatal(err)
			}
			back, err := ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			check(t, back, m)
			var buf bytes.Buffer
			if err := d.WriteTo(&buf, "tok-1"); err != nil {
				t.Fatal(err)
			}
			p2 := filepath.Join(t.TempDir(), "tok.db")
			os.WriteFile(p2, buf.Bytes(), 0o600)
			tok, err := ReadFile(p2)
			if err != nil || tok.Token() != "tok-1" || tok.Checksum() != d.Checksum() {
				t.Fatalf("WriteTo with a token: %v, token %q", err, tok.Token())
			}
		})
	}
}

func TestLookupsDoNotAllocate(t *testing.T) {
	small(t)
	d, m := build(t, entries(rand.New(rand.NewPCG(8, 8)), 3000, false), "")
	var named, plain reputation.Hash
	for h, v := range m {
		if v.ThreatName != "" {
			named = h
		} else {
			plain = h
		}
	}
	es := make([]Entry, 0, 8)
	for _, tt := range []struct {
		name string
		p    reputation.Prefix
	}{
		{"miss", ^named.Prefix()},
		{"hit", plain.Prefix()},
		{"hit with a threat name, returned before", named.Prefix()},
	} {
		es = d.Find(es[:0], tt.p) // a first call may fill the name cache
		if got := testing.AllocsPerRun(100, func() { es = d.Find(es[:0], tt.p) }); got != 0 {
			t.Errorf("%s: %v allocations per Find, want 0", tt.name, got)
		}
	}
}

func TestMappingReleasedWhenUnreachable(t *testing.T) {
	if !canMap {
		t.Skip("no mmap on this system")
	}
	small(t)
	before := released.Load()
	d, _ := build(t, entries(rand.New(rand.NewPCG(9, 9)), 2000, false), filepath.Join(t.TempDir(), "x.db"))
	if !d.Mapped() {
		t.Fatal("not mapped")
	}
	d = nil
	for i := 0; i < 100 && released.Load() == before; i++ {
		runtime.GC()
		runtime.Gosched()
	}
	if released.Load() == before {
		t.Error("the mapping of an unreachable DB was not released")
	}
}

func TestStoreCompiledFile(t *testing.T) {
	dir := writeFeeds(t, map[string]string{
		"feeds.toml": "[[source]]\npath = \"u.txt\"\nformat = \"urls\"\n" +
			"[[source]]\npath = \"drop.txt\"\nformat = \"ips\"\nverdict = \"malware\"\ncategory = \"drop\"\n",
		"u.txt":    "one.test\nbad line here\n",
		"drop.txt": "192.0.2.0/24\n2001:db8::/32\n198.51.100.7\n",
	})
	stale := filepath.Join(dir, ".picketdb-123")
	os.WriteFile(stale, []byte("left by a crash"), 0o644)
	old := time.Now().Add(-48 * time.Hour)
	os.Chtimes(stale, old, old)
	open := func() *Store {
		t.Helper()
		s, err := Open(Config{Dir: dir, Poll: -1}, zerolog.Nop())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	s1 := open()
	v1 := s1.DB().Version()
	if err := s1.Reload(); err != nil || s1.DB().Version() != v1 {
		t.Errorf("Reload with nothing changed: %v, version %d (was %d); want no rebuild", err, s1.DB().Version(), v1)
	}
	if _, err := os.Stat(filepath.Join(dir, DefaultCompiled)); err != nil {
		t.Fatalf("no compiled file: %v", err)
	}
	// Unchanged feeds: the compiled file is mapped, same version, same report.
	s2 := open()
	if s2.DB().Version() != v1 || !s2.DB().Mapped() && canMap {
		t.Errorf("reopened: version %d (want %d), mapped %v", s2.DB().Version(), v1, s2.DB().Mapped())
	}
	if r := s2.Report(); r == nil || r.BadLines() != 1 || r.Entries() != 4 || len(r.Sources[0].Bad) != 1 {
		t.Errorf("report from the compiled file: %+v", r)
	}
	// The address lists come back from the compiled file too.
	for _, a := range []string{"192.0.2.200", "2001:db8::1", "198.51.100.7"} {
		m, ok := s2.DB().Networks().Lookup(netip.MustParseAddr(a))
		if !ok || m.Verdict.Kind != reputation.KindMalware || m.Verdict.Category != "drop" || m.Source != "drop.txt" {
			t.Errorf("%s after a restart from the compiled file: %+v, %v", a, m, ok)
		}
	}
	if s2.DB().Networks().Len() != s1.DB().Networks().Len() || s1.DB().Networks().Len() != 3 {
		t.Errorf("networks: %d from the compiled file, %d loaded; want 3", s2.DB().Networks().Len(), s1.DB().Networks().Len())
	}
	if _, err := os.Stat(stale); err == nil {
		t.Error("a day-old temporary file of an unfinished build is still there")
	}
	if a, _ := s2.FindPrefixes(context.Background(), []reputation.Prefix{urlHash(t, "one.test").Prefix()}); len(a.Matches) != 1 {
		t.Errorf("reopened: %d matches, want 1", len(a.Matches))
	}
	// Changed feeds: rebuilt.
	os.WriteFile(filepath.Join(dir, "u.txt"), []byte("one.test\ntwo.test\n"), 0o644)
	s3 := open()
	if s3.DB().Version() == v1 || s3.DB().Len() != 2 || s3.DB().Networks().Len() != 3 {
		t.Errorf("after a change: version %d (was %d), %d entries", s3.DB().Version(), v1, s3.DB().Len())
	}
	// A damaged compiled file is rebuilt, not trusted.
	p := filepath.Join(dir, DefaultCompiled)
	data, _ := os.ReadFile(p)
	data[len(data)-3] ^= 1
	os.WriteFile(p, data, 0o644)
	s4 := open()
	if s4.DB().Len() != 2 || s4.DB().Verify() != nil {
		t.Errorf("after damage: %d entries", s4.DB().Len())
	}
	if back, err := ReadFile(p); err != nil || back.Len() != 2 {
		t.Errorf("compiled file not rewritten: %v", err)
	}
	// No writable place: the store still works, without a file.
	s5, err := Open(Config{Dir: dir, Poll: -1, Compiled: filepath.Join(dir, "missing", "x.db")}, zerolog.Nop())
	if err != nil || s5.DB().Len() != 2 {
		t.Fatalf("without a compiled file: %v", err)
	}
	s5.Close()
}

var startTime = time.Now()

func TestComposeAgainstModel(t *testing.T) {
	small(t)
	r := rand.New(rand.NewPCG(10, 10))
	// Four versions, each changing the last: the composed changes from the
	// first turn it into the last, through Apply.
	es := entries(r, 3000, false)
	first, m := build(t, es, "")
	cur := first
	var steps []Changes
	for step := 0; step < 4; step++ {
		var next []Entry
		for _, h := range m.sorted() {
			switch r.IntN(8) {
			case 0: // removed
			case 1:
				next = append(next, Entry{Hash: h, Verdict: reputation.Verdict{Kind: reputation.KindUnwanted, ThreatName: fmt.Sprint("s", step)}})
			default:
				next = append(next, Entry{Hash: h, Verdict: m[h]})
			}
		}
		next = append(next, entries(r, 200, false)...)
		// Some hashes come back after being removed in an earlier step.
		if step > 0 {
			steps[0].Removed.All(func(e Entry) {
				if r.IntN(3) == 0 {
					next = append(next, Entry{Hash: e.Hash, Verdict: reputation.Verdict{Kind: reputation.KindMalware}})
				}
			})
		}
		nd, nm := build(t, next, "")
		c, err := Diff(cur, nd)
		if err != nil {
			t.Fatal(err)
		}
		steps = append(steps, c)
		cur, m = nd, nm
	}
	c, err := Compose(steps)
	if err != nil {
		t.Fatal(err)
	}
	got, err := first.Apply(c, 5)
	if err != nil {
		t.Fatal(err)
	}
	check(t, got, m)
	direct, err := Diff(first, cur)
	if err != nil {
		t.Fatal(err)
	}
	// Compose may carry changes that cancel out (a verdict changed and
	// changed back), never fewer than the direct diff.
	if c.Len() < direct.Len() {
		t.Errorf("composed %d changes, the direct diff has %d", c.Len(), direct.Len())
	}
	if one, err := Compose(steps[3:]); err != nil || one.Added.Checksum() != steps[3].Added.Checksum() || one.Removed.Checksum() != steps[3].Removed.Checksum() {
		t.Errorf("Compose of one step differs from it: %v", err)
	}
}

func TestReceive(t *testing.T) {
	small(t)
	d, m := build(t, entries(rand.New(rand.NewPCG(11, 11)), 3000, false), "")
	var file bytes.Buffer
	if err := d.WriteTo(&file, "tok-9"); err != nil {
		t.Fatal(err)
	}
	good := file.Bytes()
	sum := m.checksum()
	other := sum
	other[0] ^= 1
	dir := t.TempDir()
	path := filepath.Join(dir, "mirror.db")
	for _, tt := range []struct {
		name   string
		data   []byte
		expect *[32]byte
		token  string
		ok     bool
	}{
		{"good", good, &sum, "", true},
		{"good, its token expected", good, &sum, "tok-9", true},
		{"good, nothing expected", good, nil, "", true},
		{"another token expected", good, &sum, "tok-10", false},
		{"other checksum expected", good, &other, "", false},
		{"truncated", good[:len(good)-10], &sum, "", false},
		{"header only", good[:headerSize], &sum, "", false},
		{"damaged body", func() []byte { b := slices.Clone(good); b[headerSize+40] ^= 4; return b }(), &sum, "", false},
		{"not a database", []byte(strings.Repeat("x", 400)), &sum, "", false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			before, _ := os.ReadFile(path)
			got, err := Receive(bytes.NewReader(tt.data), Target{Path: path, Expect: tt.expect, Token: tt.token})
			after, _ := os.ReadFile(path)
			if tt.ok {
				if err != nil {
					t.Fatal(err)
				}
				check(t, got, m)
				if got.Token() != "tok-9" || !bytes.Equal(after, good) {
					t.Errorf("token %q, file replaced %v", got.Token(), bytes.Equal(after, good))
				}
				return
			}
			if err == nil {
				t.Fatal("accepted")
			}
			if !bytes.Equal(before, after) {
				t.Error("a rejected download replaced the file")
			}
			if tt.expect == &other && !errors.Is(err, ErrChecksum) {
				t.Errorf("error %v, want ErrChecksum", err)
			}
		})
	}
	left, _ := filepath.Glob(filepath.Join(dir, ".picketdb-*"))
	if len(left) != 0 {
		t.Errorf("temporary files left: %v", left)
	}
}

func TestApplyToExpect(t *testing.T) {
	small(t)
	r := rand.New(rand.NewPCG(12, 12))
	old, _ := build(t, entries(r, 2000, false), "")
	add, am := build(t, entries(r, 100, false), "")
	path := filepath.Join(t.TempDir(), "mirror.db")
	if err := old.WriteFile(path); err != nil {
		t.Fatal(err)
	}
	wrong := am.checksum()
	if _, err := old.ApplyTo(Changes{Added: add}, Target{Path: path, Version: 2, Expect: &wrong}); !errors.Is(err, ErrChecksum) {
		t.Fatalf("got %v, want ErrChecksum", err)
	}
	if back, err := ReadFile(path); err != nil || back.Checksum() != old.Checksum() {
		t.Fatalf("the file changed after a mismatch: %v", err)
	}
	want, err := old.Apply(Changes{Added: add}, 2)
	if err != nil {
		t.Fatal(err)
	}
	sum := want.Checksum()
	got, err := old.ApplyTo(Changes{Added: add}, Target{Path: path, Version: 2, Token: "t2", Expect: &sum})
	if err != nil || got.Token() != "t2" {
		t.Fatalf("ApplyTo: %v, token %q", err, got.Token())
	}
	if back, err := ReadFile(path); err != nil || back.Checksum() != sum || back.Token() != "t2" {
		t.Fatalf("the file was not replaced: %v", err)
	}
}

// BenchmarkBuilderAdd is the cost of one entry in a load, past parsing:
// a third with a source's shared verdict, two thirds with a threat name of
// their own (as ClamAV signatures and URLhaus URLs have).
func BenchmarkBuilderAdd(b *testing.B) {
	keys := make([]reputation.Hash, 1<<16)
	names := make([]string, len(keys))
	for i := range keys {
		keys[i] = reputation.HashExpression(fmt.Sprint(i))
		names[i] = fmt.Sprintf("Win.Trojan.Agent-%d-0", 1000000+i)
	}
	shared := reputation.Verdict{Kind: reputation.KindPhishing, Category: "phishing"}
	bl := NewBuilder(0)
	bl.SetTempDir(b.TempDir())
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		k := i & (len(keys) - 1)
		if i%3 == 0 {
			bl.Add(keys[k], shared)
		} else {
			bl.Add(keys[k], reputation.Verdict{Kind: reputation.KindMalware, Category: "malware", ThreatName: names[k]})
		}
	}
	b.StopTimer()
	bl.Discard()
}

// TestBuildLongRuns sorts runs of records sharing their first 16 bits
// (sorted by the next 48, then where those tie: hashes sharing 8 bytes),
// and a run too long for the key sort (one hash added 70,000 times).
func TestBuildLongRuns(t *testing.T) {
	for _, spill := range []bool{false, true} {
		t.Run(fmt.Sprint("spill=", spill), func(t *testing.T) {
			if spill {
				small(t)
			}
			r := rand.New(rand.NewPCG(13, 13))
			var es []Entry
			for i := 0; i < 3000; i++ {
				var h reputation.Hash
				for k := 0; k < 32; k += 8 {
					binary.LittleEndian.PutUint64(h[k:], r.Uint64())
				}
				h[0], h[1] = 0xab, byte(i%3) // three long runs
				if i%5 == 0 {
					copy(h[2:8], []byte{1, 2, 3, 4, 5, 6}) // ties in the 48-bit key
				}
				es = append(es, Entry{Hash: h, Verdict: reputation.Verdict{Kind: reputation.Kind(r.IntN(5)), ThreatName: fmt.Sprint(i % 7)}})
			}
			var same reputation.Hash
			same[0], same[1] = 0xcd, 0xef
			for i := 0; i < 70_000; i++ {
				es = append(es, Entry{Hash: same, Verdict: reputation.Verdict{Kind: reputation.Kind(i % 4), ThreatName: fmt.Sprint("n", i%11)}})
			}
			r.Shuffle(len(es), func(i, j int) { es[i], es[j] = es[j], es[i] })
			d, m := build(t, es, "")
			check(t, d, m)
		})
	}
}

// TestRemoveStale: only regular files with the prefix and over a day old go,
// for both prefixes (a cache directory's downloads, a compiled database's
// builds).
func TestRemoveStale(t *testing.T) {
	now := time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)
	for _, prefix := range []string{tmpPrefix, buildPrefix} {
		t.Run(prefix, func(t *testing.T) {
			dir := t.TempDir()
			files := []struct {
				name string
				age  time.Duration
				dir  bool
				gone bool
			}{
				{name: prefix + "old", age: 25 * time.Hour, gone: true},
				{name: prefix + "young", age: 23 * time.Hour},
				{name: prefix + "olddir", age: 48 * time.Hour, dir: true},
				{name: "feed.txt", age: 48 * time.Hour},
				{name: "x" + prefix + "old", age: 48 * time.Hour},
			}
			for _, f := range files {
				p := filepath.Join(dir, f.name)
				var err error
				if f.dir {
					err = os.Mkdir(p, 0o755)
				} else {
					err = os.WriteFile(p, []byte("left"), 0o644)
				}
				if err != nil {
					t.Fatal(err)
				}
				if err := os.Chtimes(p, now.Add(-f.age), now.Add(-f.age)); err != nil {
					t.Fatal(err)
				}
			}
			removeStale(dir, prefix, now)
			for _, f := range files {
				_, err := os.Stat(filepath.Join(dir, f.name))
				if gone := errors.Is(err, os.ErrNotExist); gone != f.gone {
					t.Errorf("%s: got removed %v, want %v", f.name, gone, f.gone)
				}
			}
		})
	}
}

// TestFindAllAgainstFind: FindAll answers what Find answers prefix by
// prefix, in the same order, for batches of every size around findBatch,
// with present, absent and repeated prefixes, and on an empty database.
func TestFindAllAgainstFind(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 7))
	es := entries(r, 5000, false)
	// Hashes sharing a prefix: Find returns several entries for it.
	for i := 0; i < 50; i++ {
		h := es[r.IntN(len(es))].Hash
		h[31] ^= byte(i + 1)
		es = append(es, Entry{Hash: h, Verdict: reputation.Verdict{Kind: reputation.KindMalware}})
	}
	full, _ := build(t, es, "")
	empty, _ := build(t, nil, "")
	for _, d := range []*DB{full, empty} {
		for _, n := range []int{0, 1, 2, 31, 32, 33, 64, 65, 100} {
			ps := make([]reputation.Prefix, n)
			for i := range ps {
				switch r.IntN(3) {
				case 0:
					ps[i] = es[r.IntN(len(es))].Hash.Prefix()
				case 1:
					ps[i] = reputation.Prefix(r.Uint32())
				default:
					if i > 0 {
						ps[i] = ps[r.IntN(i)]
					}
				}
			}
			var want []Entry
			for _, p := range ps {
				want = d.Find(want, p)
			}
			got := d.FindAll(nil, ps)
			if len(got) != len(want) {
				t.Fatalf("%d entries, %d prefixes: FindAll returned %d entries, Find %d", d.Len(), n, len(got), len(want))
			}
			for i := range want {
				if got[i] != want[i] {
					t.Fatalf("%d prefixes: entry %d = %x %+v, Find gives %x %+v", n, i, got[i].Hash, got[i].Verdict, want[i].Hash, want[i].Verdict)
				}
			}
			if d == full && n >= 32 && len(want) == 0 {
				t.Fatalf("%d prefixes, a third of them present: nothing found", n)
			}
		}
	}
}

// TestPrefixFilter: every file the assembler writes (a build, an Apply, a
// diff) carries a prefix filter that passes every record's prefix and
// rejects nearly every absent one, and lookups answer the same with it as
// without it (a file written before the filter existed).
func TestPrefixFilter(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 11))
	es := entries(r, 100_000, false)
	d, m := build(t, es, "")
	more, _ := build(t, entries(r, 1000, false), "")
	applied, err := d.Apply(Changes{Added: more}, 8)
	if err != nil {
		t.Fatal(err)
	}
	changes, err := Diff(more, d)
	if err != nil {
		t.Fatal(err)
	}
	for name, db := range map[string]*DB{"build": d, "apply": applied, "diff add": changes.Added, "diff remove": changes.Removed} {
		if db.filter == nil || !validFilter(db.filter) {
			t.Fatalf("%s: prefix filter %d bytes", name, len(db.filter))
		}
		db.All(func(e Entry) {
			if !filterHas(db.filter, uint32(e.Hash.Prefix())) {
				t.Fatalf("%s: the filter rejects the prefix of %x, in the file", name, e.Hash)
			}
		})
	}
	filter := d.filter
	passed, absent := 0, 0
	var with, without []Entry
	for i := 0; i < 200_000; i++ {
		p := reputation.Prefix(r.Uint32())
		with = d.Find(with[:0], p)
		d.filter = nil // as a file without one
		without = d.Find(without[:0], p)
		d.filter = filter
		if !slices.Equal(with, without) {
			t.Fatalf("Find(%v) = %v with the filter, %v without", p, with, without)
		}
		if len(without) == 0 {
			absent++
			if filterHas(d.filter, uint32(p)) {
				passed++
			}
		}
	}
	t.Logf("the filter passes %d of %d absent prefixes", passed, absent)
	// About 20 bits a record here: a false positive rate well under 1 %.
	if rate := float64(passed) / float64(absent); rate > 0.01 {
		t.Errorf("the filter passes %.2f%% of absent prefixes (%d of %d)", 100*rate, passed, absent)
	}
	check(t, d, m)
	for _, f := range [][]byte{nil, make([]byte, 31), make([]byte, 3*filterBlock)} {
		if validFilter(f) {
			t.Errorf("a filter of %d bytes is valid", len(f))
		}
	}
}

// TestPrefixFilterSizes: the false positive rates the filter's sizing gives
// (filter.go, docs/benchmarks.md), from n random prefixes and a million
// others: under 1 % at 5 M records (13.4 bits a record), under 3.5 % at
// 1 M, just past a power of two (8.4 bits, the least the sizing gives).
func TestPrefixFilterSizes(t *testing.T) {
	for _, tt := range []struct {
		n    int
		want float64 // the most false positives, in per cent
	}{{1_000_000, 3.5}, {5_000_000, 1}} {
		r := rand.New(rand.NewPCG(1, uint64(tt.n)))
		f := make([]byte, filterBlocks(tt.n)*filterBlock)
		for i := 0; i < tt.n; i++ {
			filterAdd(f, r.Uint32())
		}
		passed := 0
		for i := 0; i < 1_000_000; i++ {
			if filterHas(f, r.Uint32()) {
				passed++
			}
		}
		rate := float64(passed) / 1e4
		t.Logf("%d records: %d KiB, %.1f bits a record, %.2f %% false positives", tt.n, len(f)>>10, float64(8*len(f))/float64(tt.n), rate)
		if rate > tt.want {
			t.Errorf("%d records: %.2f %% false positives, want at most %.1f %%", tt.n, rate, tt.want)
		}
	}
}
