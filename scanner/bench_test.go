package scanner

import (
	"context"
	"testing"
)

// BenchmarkHash measures the three hashes in one pass (MB/s).
func BenchmarkHash(b *testing.B) {
	buf := make([]byte, 64<<10)
	h := NewHasher()
	b.SetBytes(int64(len(buf)))
	b.ReportAllocs()
	for b.Loop() {
		h.Write(buf)
	}
}

// BenchmarkScanWrite measures Write: hashing plus buffering in memory.
func BenchmarkScanWrite(b *testing.B) {
	s := newTestScanner(b, Config{MemoryThreshold: 64 << 20, MemoryBudget: 1 << 30})
	buf := make([]byte, 32<<10)
	const per = 16 << 20
	b.SetBytes(per)
	b.ReportAllocs()
	for b.Loop() {
		sc := s.NewScan(Meta{Size: -1})
		for n := 0; n < per; n += len(buf) {
			sc.Write(buf)
		}
		sc.Close()
	}
}

func BenchmarkClassify(b *testing.B) {
	s := newTestScanner(b, Config{})
	for _, bc := range []struct {
		name string
		head []byte
	}{
		{"html", []byte("<!doctype html><html><head><meta charset=utf-8><title>x</title></head><body>")},
		{"png", []byte("\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR\x00\x00\x01\x00")},
		{"pe", pe(512)},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				s.Classify(bc.head, "application/octet-stream", "file.bin", 1<<20)
			}
		})
	}
}

// BenchmarkFinishPE measures a whole scan of a 10 MiB PE: write, Finish
// (signatures, no archive), read back.
func BenchmarkFinishPE(b *testing.B) {
	data := pe(10 << 20)
	sigs, _, err := LoadSignatures([]string{"../data/signatures/*.hsb"})
	if err != nil {
		b.Fatal(err)
	}
	s := newTestScanner(b, Config{Signatures: sigs})
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		sc := s.NewScan(Meta{Size: int64(len(data))})
		sc.Write(data)
		if _, err := sc.Finish(context.Background()); err != nil {
			b.Fatal(err)
		}
		sc.Close()
	}
}

// BenchmarkFinishZip measures the inspection of a zip with 100 members.
func BenchmarkFinishZip(b *testing.B) {
	ms := make([]member, 100)
	for i := range ms {
		ms[i] = member{string(rune('a'+i%26)) + "/f", pe(64 << 10)}
	}
	data := zipOf(b, ms...)
	s := newTestScanner(b, Config{})
	b.SetBytes(int64(100 * 64 << 10))
	b.ReportAllocs()
	for b.Loop() {
		sc := s.NewScan(Meta{Size: int64(len(data))})
		sc.Write(data)
		if _, err := sc.Finish(context.Background()); err != nil {
			b.Fatal(err)
		}
		sc.Close()
	}
}
