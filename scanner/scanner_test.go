package scanner

import (
	"bytes"
	"context"
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/andybalholm/brotli"
	"github.com/picket-proxy/picket/reputation"
)

func TestSniff(t *testing.T) {
	tar := tarOf(t, member{"a.txt", []byte("hi")})
	tests := []struct {
		name string
		head []byte
		want Type
	}{
		{"pe", pe(1024), TypePE},
		{"elf", []byte("\x7fELF\x02\x01\x01\x00"), TypeELF},
		{"macho64", []byte("\xcf\xfa\xed\xfe\x07\x00\x00\x01"), TypeMachO},
		{"macho fat", []byte("\xca\xfe\xba\xbe\x00\x00\x00\x02"), TypeMachO},
		{"java class", []byte("\xca\xfe\xba\xbe\x00\x00\x00\x34"), TypeJavaClass},
		{"script", []byte("#!/bin/sh\necho hi\n"), TypeScript},
		{"zip", zipOf(t, member{"a.txt", []byte("x")}), TypeZip},
		{"empty zip", []byte("PK\x05\x06" + strings.Repeat("\x00", 18)), TypeZip},
		{"ooxml", zipOf(t, member{"[Content_Types].xml", []byte("<x/>")}), TypeOOXML},
		{"jar", zipOf(t, member{"META-INF/MANIFEST.MF", []byte("x")}), TypeJAR},
		{"apk", zipOf(t, member{"AndroidManifest.xml", []byte("x")}), TypeAPK},
		{"gzip", gzipOf(t, "", []byte("x")), TypeGzip},
		{"7z", []byte("7z\xbc\xaf\x27\x1c\x00\x04"), Type7z},
		{"rar5", []byte("Rar!\x1a\x07\x01\x00"), TypeRAR},
		{"tar", tar, TypeTar},
		{"pdf", []byte("%PDF-1.7\n"), TypePDF},
		{"ole2", []byte("\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1\x00"), TypeOLE2},
		{"png", []byte("\x89PNG\r\n\x1a\n\x00\x00"), TypeImage},
		{"jpeg", []byte("\xff\xd8\xff\xe0\x00\x10JFIF"), TypeImage},
		{"mp4", []byte("\x00\x00\x00\x18ftypmp42"), TypeVideo},
		{"woff2", []byte("wOF2\x00\x01\x00\x00"), TypeFont},
		{"html", []byte("<!doctype html><html>"), TypeText},
		{"js", []byte("function f() { return 1 }\n"), TypeText},
		{"binary", []byte{0, 1, 2, 3, 4, 5}, TypeUnknown},
		{"one byte", []byte("M"), TypeUnknown},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Sniff(tt.head); got != tt.want {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestClassify(t *testing.T) {
	s := newTestScanner(t, Config{})
	png := []byte("\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR")
	tests := []struct {
		name, ct, file string
		head           []byte
		size           int64
		want           Type
		scan           bool
	}{
		{"renamed executable", "image/jpeg", "cat.jpg", pe(512), 512, TypePE, true},
		{"zip as octet-stream", "application/octet-stream", "", zipOf(t, member{"a", nil}), -1, TypeZip, true},
		{"image named exe", "application/octet-stream", "setup.exe", png, 100, TypeImage, false},
		{"html", "text/html", "index.html", []byte("<html><body>"), -1, TypeText, false},
		{"unknown magic, risky name", "", "run.PS1", []byte{0xff, 0xfe, 0, 1}, 4, TypeUnknown, true},
		{"unknown magic, risky type", "application/x-msdownload; x=y", "", []byte{0, 0, 0, 9}, 4, TypeUnknown, true},
		{"unknown magic, harmless name", "application/octet-stream", "data.bin", []byte{0, 0, 0, 9}, 4, TypeUnknown, false},
		{"EICAR whatever its name", "text/plain", "readme.txt", []byte(`X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*`), 68, TypeText, true},
		{"text script, risky name", "text/plain", "install.bat", []byte("@echo off\r\n"), 11, TypeText, true},
		{"web script", "text/javascript", "app.js", []byte("function f() {}\n"), 16, TypeText, false},
		{"empty body", "application/x-msdownload", "a.exe", nil, 0, TypeUnknown, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			typ, scan := s.Classify(tt.head, tt.ct, tt.file, tt.size)
			if typ != tt.want || scan != tt.scan {
				t.Errorf("got (%v, %v), want (%v, %v)", typ, scan, tt.want, tt.scan)
			}
		})
	}
	var nilScanner *Scanner
	if _, scan := nilScanner.Classify(pe(512), "", "", 512); scan {
		t.Error("nil Scanner: got scan, want none")
	}
	html := []byte("<!doctype html><html><head><title>x</title></head><body>hello</body></html>")
	if n := testing.AllocsPerRun(100, func() { s.Classify(html, "text/html; charset=utf-8", "index.html", 1000) }); n != 0 {
		t.Errorf("Classify allocations on the not-scanned path: got %v, want 0", n)
	}
	if n := testing.AllocsPerRun(100, func() { s.Classify(png, "image/png", "a.png", 1000) }); n != 0 {
		t.Errorf("Classify allocations for an image: got %v, want 0", n)
	}
}

func TestIsEICAR(t *testing.T) {
	tests := []struct {
		name string
		data string
		want bool
	}{
		{"exact", eicar, true},
		{"CRLF", eicar + "\r\n", true},
		{"whitespace to 128 bytes", eicar + strings.Repeat(" \t\x1a\n", 15), true},
		{"129 bytes", eicar + strings.Repeat(" ", 61), false},
		{"other trailing text", eicar + " x", false},
		{"not at the start", " " + eicar, false},
		{"truncated", eicar[:67], false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := IsEICAR([]byte(tt.data), int64(len(tt.data))); got != tt.want {
				t.Errorf("got %v, want %v (len %d)", got, tt.want, len(tt.data))
			}
		})
	}
	if sum := md5.Sum([]byte(eicar)); hex.EncodeToString(sum[:]) != "44d88612fea8a8f36de82e1278abb02f" {
		t.Errorf("EICAR string MD5: got %x, want 44d88612fea8a8f36de82e1278abb02f", sum)
	}
}

func TestMoreHead(t *testing.T) {
	tests := []struct {
		name string
		head string
		want bool
	}{
		{"EICAR's first 16 bytes", eicar[:16], true},
		{"all but its last byte", eicar[:67], true},
		{"the whole test file", eicar, false},
		{"the test file and more", eicar + "\r\n", false},
		{"other text", "Hello, world, this is text", false},
		{"an executable", "MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff\x00\x00", false},
		{"EICAR's start then other bytes", eicar[:20] + "x", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := MoreHead([]byte(tt.head)); got != tt.want {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestEICAR(t *testing.T) {
	var br bytes.Buffer
	bw := brotli.NewWriter(&br)
	bw.Write(eicarFile)
	bw.Close()
	s := newTestScanner(t, Config{})
	shallow := newTestScanner(t, Config{Archive: ArchiveLimits{MaxDepth: 1}})
	tests := []struct {
		name       string
		s          *Scanner
		data       []byte
		enc        string
		want       Verdict
		member     string
		incomplete bool
	}{
		{"plain", s, eicarFile, "", VerdictMalicious, "", false},
		{"in zip", s, zipOf(t, member{"eicar.com", eicarFile}), "", VerdictMalicious, "eicar.com", false},
		{"zip in zip", s, nestZip(t, "eicar.com", eicarFile, 2), "", VerdictMalicious, "level.zip/eicar.com", false},
		{"zip depth 3, max_depth 3", s, nestZip(t, "eicar.com", eicarFile, 3), "", VerdictMalicious, "level.zip/level.zip/eicar.com", false},
		{"zip depth 4, beyond max_depth 3", s, nestZip(t, "eicar.com", eicarFile, 4), "", VerdictUnknown, "", true},
		{"zip in zip, beyond max_depth 1", shallow, nestZip(t, "eicar.com", eicarFile, 2), "", VerdictUnknown, "", true},
		{"gzip encoded", s, gzipOf(t, "", eicarFile), "gzip", VerdictMalicious, "", false},
		{"br encoded", s, br.Bytes(), "br", VerdictMalicious, "", false},
		{"zstd encoded", s, zstdOf(eicarFile), "zstd", VerdictMalicious, "", false},
		{"gzip encoded zip", s, gzipOf(t, "", zipOf(t, member{"e.com", eicarFile})), "gzip", VerdictMalicious, "e.com", false},
		{"gzip file", s, gzipOf(t, "eicar.com", eicarFile), "", VerdictMalicious, "eicar.com", false},
		{"tar.gz", s, gzipOf(t, "", tarOf(t, member{"a.txt", harmless}, member{"x/eicar.com", eicarFile})), "", VerdictMalicious, "(gzip)/x/eicar.com", false},
		// Headers compress/gzip refuses and zlib (browsers) reads.
		{"gzip encoded, a 10,000-byte name in its header", s, gzipMember(strings.Repeat("n", 10000), "", nil, eicarFile), "gzip", VerdictMalicious, "", false},
		{"gzip encoded, a long comment and an extra field", s, gzipMember("", strings.Repeat("c", 5000), []byte("XY\x02\x00ab"), eicarFile), "gzip", VerdictMalicious, "", false},
		{"gzip encoded, two members, the second's name long", s,
			append(gzipMember("a", "", nil, eicarFile[:30]), gzipMember(strings.Repeat("n", 2000), "", nil, eicarFile[30:])...), "gzip", VerdictMalicious, "", false},
		{"gzip file, a long name", s, gzipMember(strings.Repeat("n", 1000)+".com", "", nil, eicarFile), "", VerdictMalicious, "…" + strings.Repeat("n", 251) + ".com", false},
		{"EICAR with a suffix", s, append(bytes.Clone(eicarFile), 'x'), "", VerdictUnknown, "", false},
		{"harmless", s, harmless, "", VerdictUnknown, "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := scanBytes(t, tt.s, tt.data, Meta{ContentEncoding: tt.enc, Size: -1})
			if res.Verdict != tt.want || res.Member != tt.member || res.Blocked != (tt.want == VerdictMalicious) {
				t.Fatalf("got %v member %q blocked %v, want %v member %q (%+v)", res.Verdict, res.Member, res.Blocked, tt.want, tt.member, res)
			}
			if tt.want == VerdictMalicious && (res.Threat != EICARName || res.Source != SourceEICAR) {
				t.Errorf("got threat %q source %v, want %q eicar", res.Threat, res.Source, EICARName)
			}
			if (res.Incomplete != "") != tt.incomplete {
				t.Errorf("got incomplete %q, want incomplete %v", res.Incomplete, tt.incomplete)
			}
		})
	}
}

func TestSignatures(t *testing.T) {
	sha := sha256.Sum256(harmless)
	sha1sum := sha1.Sum(harmless)
	md := md5.Sum(harmless)
	n := len(harmless)
	tests := []struct {
		name      string
		hsb, fp   string
		data      []byte
		want      Verdict
		source    Source
		threat    string
		falseAlrm bool
	}{
		{"hsb sha256", fmt.Sprintf("%x:%d:Test.SHA256", sha, n), "", harmless, VerdictMalicious, SourceSignature, "Test.SHA256", false},
		{"hsb sha1, any size", fmt.Sprintf("%x:*:Test.SHA1", sha1sum), "", harmless, VerdictMalicious, SourceSignature, "Test.SHA1", false},
		{"hdb md5", fmt.Sprintf("%x:%d:Test.MD5", md, n), "", harmless, VerdictMalicious, SourceSignature, "Test.MD5", false},
		{"size differs", fmt.Sprintf("%x:%d:Test.SHA256", sha, n+1), "", harmless, VerdictUnknown, SourceNone, "", false},
		{"in a zip", fmt.Sprintf("%x:%d:Test.SHA256", sha, n), "", zipOf(t, member{"a/b.txt", harmless}), VerdictMalicious, SourceSignature, "Test.SHA256", false},
		{"fp overrides", fmt.Sprintf("%x:%d:Test.SHA256", sha, n), fmt.Sprintf("%x:%d:Good", sha, n), harmless, VerdictClean, SourceKnownGood, "Test.SHA256", true},
		{"fp on the zip overrides members", fmt.Sprintf("%x:%d:Test.SHA256", sha, n), "", nil, VerdictClean, SourceKnownGood, "Test.SHA256", true},
		{"fp overrides EICAR", "", fmt.Sprintf("%x:*:Good", sha256.Sum256(eicarFile)), eicarFile, VerdictClean, SourceKnownGood, EICARName, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			data, fp := tt.data, tt.fp
			if data == nil { // the fp names the zip itself
				data = zipOf(t, member{"b.txt", harmless})
				fp = fmt.Sprintf("%x:%d:Good.Zip", sha256.Sum256(data), len(data))
			}
			sigs := sigsFrom(t, nil, Detections, tt.hsb)
			sigsFrom(t, sigs, KnownGood, fp)
			s := newTestScanner(t, Config{Signatures: sigs})
			res := scanBytes(t, s, data, Meta{Size: -1})
			if res.Verdict != tt.want || res.Source != tt.source || res.Threat != tt.threat || res.FalseAlarm != tt.falseAlrm {
				t.Errorf("got %v/%v threat %q false alarm %v, want %v/%v %q %v", res.Verdict, res.Source, res.Threat, res.FalseAlarm, tt.want, tt.source, tt.threat, tt.falseAlrm)
			}
		})
	}
}

func TestDemoSignatures(t *testing.T) {
	sigs, rep, err := LoadSignatures([]string{"../data/signatures/*.hsb", "../data/signatures/*.fp"})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Files) != 2 || rep.BadLines != 0 {
		t.Fatalf("got files %v, %d bad lines, want 2 files and none", rep.Files, rep.BadLines)
	}
	s := newTestScanner(t, Config{Signatures: sigs})
	if res := scanBytes(t, s, demoDetected, Meta{Size: -1}); res.Verdict != VerdictMalicious || res.Threat != "Picket.Demo.Detected" {
		t.Errorf("demo-detected: got %v %q, want malicious Picket.Demo.Detected", res.Verdict, res.Threat)
	}
	if res := scanBytes(t, s, demoCleared, Meta{Size: -1}); res.Verdict != VerdictClean || !res.FalseAlarm {
		t.Errorf("demo-cleared: got %v false alarm %v, want clean false alarm", res.Verdict, res.FalseAlarm)
	}
}

func TestParseSignatures(t *testing.T) {
	var s Signatures
	var rep SignatureReport
	in := "# comment\n\n" +
		"44d88612fea8a8f36de82e1278abb02f:68:Eicar:73\n" + // with a functionality level
		"nothex:68:X\n" +
		"44d88612fea8a8f36de82e1278abb02f:-1:X\n" +
		"44d88612fea8a8f36de82e1278abb02f:68\n" +
		"44d88612fea8a8f36de82e1278abb02f:68:\n"
	if err := s.Parse("t.hdb", Detections, strings.NewReader(in), &rep); err != nil {
		t.Fatal(err)
	}
	if d, g := s.Len(); d != 1 || g != 0 {
		t.Errorf("got %d detections %d known good, want 1 and 0", d, g)
	}
	if rep.BadLines != 4 || rep.Bad[0].Line != 4 {
		t.Errorf("got %d bad lines %v, want 4 starting at line 4", rep.BadLines, rep.Bad)
	}
	if _, _, err := LoadSignatures([]string{"nope/missing.hsb"}); err == nil {
		t.Error("missing file: got no error")
	}
	if _, err := SignatureKindOf("x.ndb"); !errors.Is(err, ErrSignatureFile) {
		t.Errorf("x.ndb: got %v, want ErrSignatureFile", err)
	}
}

func TestReputation(t *testing.T) {
	sha := sha256.Sum256(harmless)
	sigs := sigsFrom(t, nil, Detections, fmt.Sprintf("%x:*:Local.Detection", sha))
	zipped := zipOf(t, member{"tool.exe", pe(4096)})
	peSum := sha256.Sum256(pe(4096))
	tests := []struct {
		name    string
		data    []byte
		answer  map[[32]byte]reputation.Kind
		want    Verdict
		blocked bool
		source  Source
		falseA  bool
	}{
		{"clean overrides local detection", harmless, map[[32]byte]reputation.Kind{sha: reputation.KindClean}, VerdictClean, false, SourceReputation, true},
		{"malware without local signature", pe(4096), map[[32]byte]reputation.Kind{peSum: reputation.KindMalware}, VerdictMalicious, true, SourceReputation, false},
		{"malware member", zipped, map[[32]byte]reputation.Kind{peSum: reputation.KindMalware}, VerdictMalicious, true, SourceReputation, false},
		{"unknown keeps local detection", harmless, nil, VerdictMalicious, true, SourceSignature, false},
		{"unknown, nothing local", pe(4096), nil, VerdictUnknown, false, SourceNone, false},
		{"clean", pe(4096), map[[32]byte]reputation.Kind{peSum: reputation.KindClean}, VerdictClean, false, SourceReputation, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rep := &fakeReputation{lookup: func(q reputation.Query) reputation.Verdict {
				k := tt.answer[[32]byte(q.SHA256)]
				return reputation.Verdict{Kind: k, ThreatName: "Rep.Threat", Source: reputation.SourceServer}
			}}
			s := newTestScanner(t, Config{Signatures: sigs, Reputation: rep})
			res := scanBytes(t, s, tt.data, Meta{Size: -1})
			if res.Verdict != tt.want || res.Blocked != tt.blocked || res.Source != tt.source || res.FalseAlarm != tt.falseA {
				t.Errorf("got %v blocked %v source %v false alarm %v, want %v %v %v %v (%+v)",
					res.Verdict, res.Blocked, res.Source, res.FalseAlarm, tt.want, tt.blocked, tt.source, tt.falseA, res)
			}
			if rep.calls == 0 {
				t.Error("reputation not asked")
			}
		})
	}
	if got := newTestScanner(t, Config{}).Stats().Scans; got != 0 {
		t.Errorf("fresh scanner: got %d scans, want 0", got)
	}
}

// heapGrowth runs f and returns the bytes allocated during it.
func heapGrowth(f func()) uint64 {
	var a, b runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&a)
	f()
	runtime.ReadMemStats(&b)
	return b.TotalAlloc - a.TotalAlloc
}

func TestArchiveBomb(t *testing.T) {
	const mib = 2048 // 2 GiB of zeros
	bomb := bombZip(t, mib, 0)
	t.Logf("bomb: %d bytes expanding to %d MiB", len(bomb), mib)
	lying := bombZip(t, 64, 512<<10) // declares 512 KiB, inflates to 64 MiB
	manyMembers := make([]member, 50)
	for i := range manyMembers {
		manyMembers[i] = member{fmt.Sprintf("m%d", i), []byte("x")}
	}
	small := newTestScanner(t, Config{Archive: ArchiveLimits{MaxMembers: 20, MaxExpanded: 32 << 20}})
	tests := []struct {
		name   string
		s      *Scanner
		data   []byte
		reason string
	}{
		{"2 GiB of zeros", newTestScanner(t, Config{}), bomb, "max_ratio"},
		{"nested 2 GiB of zeros", newTestScanner(t, Config{}), zipOf(t, member{"inner.zip", bomb}), "max_ratio"},
		{"gzip of a bomb zip", newTestScanner(t, Config{}), gzipOf(t, "b.zip", bomb), "max_ratio"},
		{"size lies", newTestScanner(t, Config{}), lying, "declared size"},
		{"too many members", small, zipOf(t, manyMembers...), "max_members"},
		{"over max_expanded", newTestScanner(t, Config{Archive: ArchiveLimits{MaxExpanded: 1 << 20, MaxRatio: 100000}}), bombZip(t, 2, 0), "max_expanded"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var res Result
			grew := heapGrowth(func() { res = scanBytes(t, tt.s, tt.data, Meta{Size: -1}) })
			if res.Verdict != VerdictBomb || !res.Blocked || !strings.Contains(res.Reason, tt.reason) {
				t.Errorf("got %v blocked %v reason %q, want blocked bomb for %s", res.Verdict, res.Blocked, res.Reason, tt.reason)
			}
			if grew > 48<<20 {
				t.Errorf("allocated %d MiB scanning, want under 48 MiB", grew>>20)
			}
		})
	}
	pass := newTestScanner(t, Config{PassArchiveBombs: true})
	if res := scanBytes(t, pass, bomb, Meta{Size: -1}); res.Verdict != VerdictBomb || res.Blocked {
		t.Errorf("PassArchiveBombs: got %v blocked %v, want bomb not blocked", res.Verdict, res.Blocked)
	}
}

func TestZerosDeflate(t *testing.T) {
	res := scanBytes(t, newTestScanner(t, Config{}), bombZip(t, 3, 0), Meta{Size: -1})
	if res.Verdict != VerdictBomb {
		t.Fatalf("3 MiB of zeros: got %v, want bomb", res.Verdict)
	}
	// Within the ratio the same member is read through, proving the
	// generated stream valid.
	res = scanBytes(t, newTestScanner(t, Config{Archive: ArchiveLimits{MaxRatio: 1 << 20}}), bombZip(t, 3, 0), Meta{Size: -1})
	if res.Verdict != VerdictUnknown || res.Incomplete != "" || res.Scanned < 3<<20 {
		t.Fatalf("got %v incomplete %q scanned %d, want unknown, complete, ≥ 3 MiB", res.Verdict, res.Incomplete, res.Scanned)
	}
}

func TestSpill(t *testing.T) {
	dir := t.TempDir()
	s := newTestScanner(t, Config{TempDir: dir, MemoryThreshold: 256 << 10})
	data := pe(1 << 20)
	sc := s.NewScan(Meta{Size: int64(len(data))})
	if _, err := sc.ReadFrom(bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	if !sc.sp.onDisk() {
		t.Fatal("1 MiB with a 256 KiB threshold: not spilled")
	}
	fi, err := sc.sp.file.Stat()
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("temp file mode: got %v, want 0600", fi.Mode().Perm())
	}
	if n := dirEntries(t, dir); n != 0 {
		t.Errorf("temp dir entries while scanning: got %d, want 0 (unlinked at once)", n)
	}
	if s.Stats().MemoryInUse != 0 {
		t.Errorf("memory in use after the spill: got %d, want 0", s.Stats().MemoryInUse)
	}
	res, err := sc.Finish(context.Background())
	if err != nil || res.Sums.SHA256 != sha256.Sum256(data) || res.Type != TypePE {
		t.Fatalf("Finish: got %v %x %v, want the data's hash and pe", err, res.Sums.SHA256, res.Type)
	}
	var out bytes.Buffer
	if _, err := sc.WriteTo(&out); err != nil || !bytes.Equal(out.Bytes(), data) {
		t.Fatalf("WriteTo: got %d bytes, err %v, want the data back", out.Len(), err)
	}
	f := sc.sp.file
	sc.Close()
	sc.Close() // idempotent
	if _, err := f.Stat(); err == nil {
		t.Error("temp file still open after Close")
	}
	if _, err := sc.Write([]byte("x")); err == nil {
		t.Error("Write after Close: got no error")
	}
}

func TestSpillErrorRemovesFile(t *testing.T) {
	dir := t.TempDir()
	s := newTestScanner(t, Config{TempDir: dir, MemoryThreshold: 64 << 10})
	sc := s.NewScan(Meta{Size: -1})
	os.RemoveAll(dir) // the temp dir vanishes: spilling fails
	_, err := sc.Write(make([]byte, 200<<10))
	if err == nil {
		t.Fatal("Write with no temp dir: got no error")
	}
	if _, err := sc.Finish(context.Background()); err == nil {
		t.Error("Finish after a failed write: got no error, want one (could not decide)")
	}
	sc.Close()
	if got := s.Stats().MemoryInUse; got != 0 {
		t.Errorf("memory in use after Close: got %d, want 0", got)
	}
}

func TestMemoryBudget(t *testing.T) {
	s := newTestScanner(t, Config{MemoryThreshold: 1 << 20, MemoryBudget: 256 << 10})
	a, b := s.NewScan(Meta{Size: -1}), s.NewScan(Meta{Size: -1})
	defer a.Close()
	defer b.Close()
	a.Write(make([]byte, 200<<10))
	if a.sp.onDisk() || s.Stats().MemoryInUse != 256<<10 {
		t.Fatalf("first scan: on disk %v, memory %d, want in memory using 256 KiB", a.sp.onDisk(), s.Stats().MemoryInUse)
	}
	b.Write(make([]byte, 100<<10))
	if !b.sp.onDisk() {
		t.Error("second scan over the budget: not spilled")
	}
	if got := s.Stats().MemoryInUse; got > 256<<10 {
		t.Errorf("memory in use: got %d, want at most the 256 KiB budget", got)
	}
	a.Close()
	if got := s.Stats().MemoryInUse; got != 0 {
		t.Errorf("memory after Close: got %d, want 0", got)
	}
}

// patternReader yields n deterministic bytes.
type patternReader struct {
	n, off int64
}

func (p *patternReader) Read(b []byte) (int, error) {
	if p.off >= p.n {
		return 0, io.EOF
	}
	b = b[:min(int64(len(b)), p.n-p.off)]
	for i := range b {
		x := uint64(p.off + int64(i))
		b[i] = byte(x*2654435761>>13) ^ byte(x>>9)
	}
	p.off += int64(len(b))
	return len(b), nil
}

func TestLargeObject(t *testing.T) {
	const size = 100 << 20
	want := sha256.New()
	io.Copy(want, &patternReader{n: size})
	s := newTestScanner(t, Config{MaxSize: 128 << 20})
	sc := s.NewScan(Meta{Size: size})
	defer sc.Close()
	if _, err := sc.ReadFrom(&patternReader{n: size}); err != nil {
		t.Fatal(err)
	}
	res, err := sc.Finish(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if res.Size != size || !bytes.Equal(res.Sums.SHA256[:], want.Sum(nil)) {
		t.Errorf("got size %d sha256 %x, want %d %x", res.Size, res.Sums.SHA256, size, want.Sum(nil))
	}
	if got := s.Stats().MemoryInUse; got > DefaultMemoryThreshold {
		t.Errorf("memory in use: got %d, want at most the threshold", got)
	}
}

func TestOversize(t *testing.T) {
	for _, block := range []bool{false, true} {
		t.Run(fmt.Sprint("block=", block), func(t *testing.T) {
			s := newTestScanner(t, Config{MaxSize: 100 << 10, BlockOversize: block})
			data := pe(300 << 10)
			src := bytes.NewReader(data)
			sc := s.NewScan(Meta{Size: -1})
			defer sc.Close()
			_, err := sc.ReadFrom(src)
			if !errors.Is(err, ErrTooLarge) {
				t.Fatalf("ReadFrom: got %v, want ErrTooLarge", err)
			}
			var got bytes.Buffer
			io.Copy(&got, io.MultiReader(sc.Reader(), src))
			if !bytes.Equal(got.Bytes(), data) {
				t.Fatalf("Reader then the rest: got %d bytes, want the %d sent", got.Len(), len(data))
			}
			res, err := sc.Finish(context.Background())
			if err != nil || res.Verdict != VerdictOversize || res.Blocked != block {
				t.Errorf("got %v blocked %v err %v, want oversize blocked=%v", res.Verdict, res.Blocked, err, block)
			}
		})
	}
	s := newTestScanner(t, Config{MaxSize: 1 << 10})
	sc := s.NewScan(Meta{Size: 1 << 20}) // declared too large
	defer sc.Close()
	if n, err := sc.Write([]byte("MZ")); n != 2 || !errors.Is(err, ErrTooLarge) {
		t.Errorf("declared oversize: got %d %v, want 2 ErrTooLarge", n, err)
	}
	gz := gzipOf(t, "", make([]byte, 4<<10))
	if res := scanBytes(t, s, gz, Meta{ContentEncoding: "gzip", Size: -1}); res.Verdict != VerdictOversize {
		t.Errorf("decodes over max_size: got %v, want oversize", res.Verdict)
	}
}

func TestTrickle(t *testing.T) {
	s := newTestScanner(t, Config{})
	for _, tt := range []struct {
		name string
		data []byte
		hold int64
		pass bool
	}{
		{"clean", pe(200 << 10), 1000, true},
		{"eicar", eicarFile, 10, false},
		{"hold over size", harmless, 1 << 20, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			sc := s.NewScan(Meta{Size: int64(len(tt.data))})
			defer sc.Close()
			tr := NewTrickle(bytes.NewReader(tt.data), sc, tt.hold)
			var client bytes.Buffer
			if _, err := io.Copy(&client, tr); err != nil {
				t.Fatal(err)
			}
			wantSent := max(0, len(tt.data)-int(tt.hold))
			if client.Len() != wantSent || tr.Held() != len(tt.data)-wantSent {
				t.Fatalf("before the verdict: sent %d held %d, want %d and the rest", client.Len(), tr.Held(), wantSent)
			}
			res, err := sc.Finish(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if res.Blocked == tt.pass {
				t.Fatalf("got blocked %v, want %v", res.Blocked, !tt.pass)
			}
			if tt.pass {
				tr.Release(&client)
				if !bytes.Equal(client.Bytes(), tt.data) {
					t.Errorf("after Release: got %d bytes, want the %d sent", client.Len(), len(tt.data))
				}
			}
		})
	}
}

func TestConcurrencyLimit(t *testing.T) {
	s := newTestScanner(t, Config{MaxConcurrent: 1})
	if err := s.acquire(context.Background()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	sc := s.NewScan(Meta{Size: -1})
	defer sc.Close()
	sc.Write(harmless)
	if _, err := sc.Finish(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("Finish with every slot taken and ctx ended: got %v, want context.Canceled", err)
	}
	s.release()
	if _, err := sc.Finish(context.Background()); err != nil {
		t.Errorf("Finish with a free slot: got %v", err)
	}
	if st := s.Stats(); st.Scans != 1 || st.Errors != 1 {
		t.Errorf("stats: got %d scans %d errors, want 1 and 1", st.Scans, st.Errors)
	}
}

func TestNewRejects(t *testing.T) {
	for _, cfg := range []Config{
		{MaxSize: -1},
		{TempDir: filepath.Join(t.TempDir(), "missing")},
		{Archive: ArchiveLimits{MaxRatio: -1}},
		{TrickleHoldPercent: 101},
	} {
		if _, err := New(cfg); err == nil {
			t.Errorf("New(%+v): got no error", cfg)
		}
	}
}

func TestConcurrentScansStayInBudget(t *testing.T) {
	const scans, size, budget = 20, 4 << 20, 2 << 20
	s := newTestScanner(t, Config{MemoryThreshold: 1 << 20, MemoryBudget: budget})
	want := sha256.New()
	io.Copy(want, &patternReader{n: size})
	errs := make(chan error, scans)
	for i := 0; i < scans; i++ {
		go func() {
			sc := s.NewScan(Meta{Size: size})
			defer sc.Close()
			r := &patternReader{n: size}
			buf := make([]byte, 16<<10)
			for {
				n, err := r.Read(buf)
				if err == io.EOF {
					break
				}
				sc.Write(buf[:n])
				if used := s.Stats().MemoryInUse; used > budget {
					errs <- fmt.Errorf("memory in use %d, over the budget %d", used, budget)
					return
				}
			}
			res, err := sc.Finish(context.Background())
			if err == nil && !bytes.Equal(res.Sums.SHA256[:], want.Sum(nil)) {
				err = fmt.Errorf("sha256 %x, want %x", res.Sums.SHA256, want.Sum(nil))
			}
			errs <- err
		}()
	}
	for i := 0; i < scans; i++ {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	if st := s.Stats(); st.MemoryInUse != 0 || st.Spills == 0 {
		t.Errorf("after all scans: memory %d spills %d, want 0 and some", st.MemoryInUse, st.Spills)
	}
}
