package scanner

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"compress/flate"
	"context"
	"encoding/binary"
	"hash/crc32"
	"os"
	"testing"

	"github.com/klauspost/compress/zstd"

	tf "github.com/picket-proxy/picket/internal/testfiles"
	"github.com/picket-proxy/picket/reputation"
)

// Test files, built at run time.
var (
	eicarFile    = []byte(eicar + "\r\n")
	harmless     = []byte("Picket scanner test file: nothing to see here.\n")
	demoDetected = []byte("Picket demo: a harmless file that data/signatures/picket-demo.hsb detects.\n")
	demoCleared  = []byte("Picket demo: a harmless file that the .hsb detects and the .fp clears.\n")
)

// newTestScanner returns a Scanner with cfg and its temp dir in t.TempDir().
func newTestScanner(t testing.TB, cfg Config) *Scanner {
	t.Helper()
	if cfg.TempDir == "" {
		cfg.TempDir = t.TempDir()
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// scanBytes scans data as one body.
func scanBytes(t testing.TB, s *Scanner, data []byte, m Meta) Result {
	t.Helper()
	sc := s.NewScan(m)
	defer sc.Close()
	if _, err := sc.Write(data); err != nil {
		t.Fatalf("Write: %v", err)
	}
	res, err := sc.Finish(context.Background())
	if err != nil {
		t.Fatalf("Finish: %v", err)
	}
	return res
}

type member struct {
	name string
	data []byte
}

// zipOf returns a zip of the members, deflated (testfiles.Zip).
func zipOf(t testing.TB, ms ...member) []byte {
	t.Helper()
	zs := make([]tf.Member, len(ms))
	for i, m := range ms {
		zs[i] = tf.Member{Name: m.name, Data: m.data}
	}
	return tf.Zip(zs...)
}

// nestZip wraps data in depth zips, the innermost member named name.
func nestZip(t testing.TB, name string, data []byte, depth int) []byte {
	for i := 0; i < depth; i++ {
		data = zipOf(t, member{name, data})
		name = "level.zip"
	}
	return data
}

func gzipOf(t testing.TB, name string, data []byte) []byte {
	t.Helper()
	return tf.Gzip(name, data)
}

// zstdOf returns data as one zstd frame.
func zstdOf(data []byte) []byte {
	zw, _ := zstd.NewWriter(nil)
	defer zw.Close()
	return zw.EncodeAll(data, nil)
}

func tarOf(t testing.TB, ms ...member) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, m := range ms {
		tw.WriteHeader(&tar.Header{Name: m.name, Mode: 0644, Size: int64(len(m.data)), Typeflag: tar.TypeReg})
		tw.Write(m.data)
	}
	tw.Close()
	return buf.Bytes()
}

// zerosDeflate returns a raw deflate stream of mib MiB of zeros without
// compressing them all: a 1 MiB block of zeros encoded after a window of
// zeros is the same every time, so it is repeated.
func zerosDeflate(t testing.TB, mib int) []byte {
	t.Helper()
	zeros := make([]byte, 1<<20)
	var buf bytes.Buffer
	fw, _ := flate.NewWriter(&buf, flate.BestCompression)
	fw.Write(zeros)
	fw.Flush()
	first := bytes.Clone(buf.Bytes())
	buf.Reset()
	fw.Write(zeros)
	fw.Flush()
	next := bytes.Clone(buf.Bytes())
	buf.Reset()
	fw.Close()
	out := make([]byte, 0, len(first)+len(next)*mib+len(buf.Bytes()))
	out = append(out, first...)
	for i := 1; i < mib; i++ {
		out = append(out, next...)
	}
	return append(out, buf.Bytes()...)
}

// zerosCRC is the CRC-32 of mib MiB of zeros.
func zerosCRC(mib int) uint32 {
	zeros := make([]byte, 1<<20)
	var c uint32
	for i := 0; i < mib; i++ {
		c = crc32.Update(c, crc32.IEEETable, zeros)
	}
	return c
}

// bombZip returns a zip with one member of mib MiB of zeros, declaring
// declared bytes (the true size when declared is 0).
func bombZip(t testing.TB, mib int, declared uint64) []byte {
	t.Helper()
	raw := zerosDeflate(t, mib)
	if declared == 0 {
		declared = uint64(mib) << 20
	}
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	w, err := zw.CreateRaw(&zip.FileHeader{
		Name: "zeros.bin", Method: zip.Deflate, CRC32: zerosCRC(mib),
		CompressedSize64: uint64(len(raw)), UncompressedSize64: declared,
	})
	if err != nil {
		t.Fatal(err)
	}
	w.Write(raw)
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// pe returns a minimal-looking PE of n bytes: MZ header, PE signature,
// then deterministic filler.
func pe(n int) []byte {
	b := make([]byte, n)
	copy(b, "MZ")
	binary.LittleEndian.PutUint32(b[0x3c:], 0x80)
	copy(b[0x80:], "PE\x00\x00")
	x := uint32(1)
	for i := 0x100; i < n; i++ {
		x = x*1664525 + 1013904223
		b[i] = byte(x >> 24)
	}
	return b
}

// fakeReputation is a Reputation answering with a function.
type fakeReputation struct {
	lookup func(q reputation.Query) reputation.Verdict
	calls  int
}

func (f *fakeReputation) Lookup(ctx context.Context, q reputation.Query) (reputation.Verdict, error) {
	f.calls++
	return f.lookup(q), ctx.Err()
}

// sigsFrom parses signature lines of kind.
func sigsFrom(t testing.TB, s *Signatures, kind SignatureKind, lines string) *Signatures {
	t.Helper()
	if s == nil {
		s = &Signatures{}
	}
	var rep SignatureReport
	if err := s.Parse("test", kind, bytes.NewReader([]byte(lines)), &rep); err != nil {
		t.Fatal(err)
	}
	if rep.BadLines > 0 {
		t.Fatalf("bad lines: %v", rep.Bad)
	}
	return s
}

func dirEntries(t testing.TB, dir string) int {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	return len(es)
}

// gzipMember returns data as one gzip member whose header carries name,
// comment and extra (each left out when empty) and a header CRC, written
// by hand: compress/gzip reads no name or comment over 512 bytes, which
// zlib, and so browsers, do.
func gzipMember(name, comment string, extra, data []byte) []byte {
	var b bytes.Buffer
	flags := byte(1 << 1) // FHCRC
	if len(extra) > 0 {
		flags |= 1 << 2
	}
	if name != "" {
		flags |= 1 << 3
	}
	if comment != "" {
		flags |= 1 << 4
	}
	b.Write([]byte{0x1f, 0x8b, 8, flags, 0, 0, 0, 0, 0, 255})
	if len(extra) > 0 {
		b.Write(binary.LittleEndian.AppendUint16(nil, uint16(len(extra))))
		b.Write(extra)
	}
	for _, s := range []string{name, comment} {
		if s != "" {
			b.WriteString(s)
			b.WriteByte(0)
		}
	}
	b.Write(binary.LittleEndian.AppendUint16(nil, uint16(crc32.ChecksumIEEE(b.Bytes()))))
	fw, _ := flate.NewWriter(&b, flate.BestCompression)
	fw.Write(data)
	fw.Close()
	b.Write(binary.LittleEndian.AppendUint32(nil, crc32.ChecksumIEEE(data)))
	b.Write(binary.LittleEndian.AppendUint32(nil, uint32(len(data))))
	return b.Bytes()
}
