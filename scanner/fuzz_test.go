package scanner

import (
	"bytes"
	"context"
	"testing"
)

func FuzzClassify(f *testing.F) {
	f.Add(pe(600), "application/octet-stream", "a.jpg", int64(600))
	f.Add([]byte("\xca\xfe\xba\xbe\x00\x00\x00\x02"), "", "", int64(-1))
	f.Add([]byte("PK\x03\x04\x14\x00\x00\x00\x08\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\xff\xff"), "", "", int64(30))
	f.Add([]byte("<html>"), "text/html", "index.html", int64(6))
	s := newTestScanner(f, Config{})
	f.Fuzz(func(t *testing.T, head []byte, ct, name string, size int64) {
		typ, scan := s.Classify(head, ct, name, size)
		if typ.Scannable() && size != 0 && !scan {
			t.Errorf("scannable type %v not scanned", typ)
		}
		_ = typ.String()
	})
}

// FuzzScan runs whole scans of arbitrary bodies, as zips, gzip and tar
// members, with tight limits: no panic, no error.
func FuzzScan(f *testing.F) {
	f.Add(zipOf(f, member{"eicar.com", eicarFile}))
	f.Add(nestZip(f, "a", harmless, 3))
	f.Add(gzipOf(f, "x", tarOf(f, member{"a", harmless})))
	f.Add(bombZip(f, 2, 512<<10))
	s := newTestScanner(f, Config{MaxSize: 1 << 20, Archive: ArchiveLimits{MaxExpanded: 4 << 20, MaxMembers: 100}})
	f.Fuzz(func(t *testing.T, data []byte) {
		sc := s.NewScan(Meta{Size: -1})
		defer sc.Close()
		sc.Write(data)
		if _, err := sc.Finish(context.Background()); err != nil {
			t.Fatalf("Finish: %v", err)
		}
	})
}

func FuzzSignatures(f *testing.F) {
	f.Add("44d88612fea8a8f36de82e1278abb02f:68:Eicar\n")
	f.Add("275a021bbfb6489e54d471899f7db9d1663fc695ec2fe2a2c4538aabf651fd0f:*:X:73:255\n#c\n")
	f.Fuzz(func(t *testing.T, in string) {
		var s Signatures
		var rep SignatureReport
		if err := s.Parse("f", Detections, bytes.NewReader([]byte(in)), &rep); err != nil {
			t.Fatal(err)
		}
		s.Match(Sums{}, 0)
	})
}
