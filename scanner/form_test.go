package scanner

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"mime/multipart"
	"net/textproto"
	"testing"

	"github.com/picket-proxy/picket/reputation"
)

// formOf returns a multipart/form-data body with a text field and the
// files, and its Content-Type.
func formOf(t testing.TB, files ...member) ([]byte, string) {
	t.Helper()
	var b bytes.Buffer
	w := multipart.NewWriter(&b)
	if err := w.WriteField("comment", "quarterly figures"); err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		h := textproto.MIMEHeader{}
		h.Set("Content-Disposition", fmt.Sprintf(`form-data; name="file"; filename=%q`, f.name))
		h.Set("Content-Type", "application/octet-stream")
		pw, err := w.CreatePart(h)
		if err != nil {
			t.Fatal(err)
		}
		pw.Write(f.data)
	}
	w.Close()
	return b.Bytes(), w.FormDataContentType()
}

// TestUploadForm: the files of a multipart upload are checked one by one,
// as archive members are (a detection names the file), but only for an
// upload; a form claiming a boundary it does not have is scanned whole.
func TestUploadForm(t *testing.T) {
	sigs := sigsFrom(t, nil, Detections, fmt.Sprintf("%x:*:Local.Detection", sha256.Sum256(harmless)))
	s := newTestScanner(t, Config{Signatures: sigs})
	eicarForm, ct := formOf(t, member{"notes.txt", []byte("hello")}, member{"eicar.com", eicarFile})
	sigForm, sigCT := formOf(t, member{"report.zip", zipOf(t, member{"inner/doc.txt", harmless})})
	cleanForm, cleanCT := formOf(t, member{"photo.jpg", []byte("\xff\xd8\xff\xe0 not much of a photo")})
	tests := []struct {
		name   string
		data   []byte
		m      Meta
		want   Verdict
		threat string
		member string
	}{
		{"EICAR in a form", eicarForm, Meta{Upload: true, ContentType: ct, Size: -1}, VerdictMalicious, EICARName, "eicar.com"},
		{"signature in a zip in a form", sigForm, Meta{Upload: true, ContentType: sigCT, Size: -1}, VerdictMalicious, "Local.Detection", "report.zip/inner/doc.txt"},
		{"clean form", cleanForm, Meta{Upload: true, ContentType: cleanCT, Size: -1}, VerdictUnknown, "", ""},
		{"a download is not a form", eicarForm, Meta{ContentType: ct, Size: -1}, VerdictUnknown, "", ""},
		{"wrong boundary", eicarForm, Meta{Upload: true, ContentType: "multipart/form-data; boundary=nothere", Size: -1}, VerdictUnknown, "", ""},
		{"a bare upload", eicarFile, Meta{Upload: true, ContentType: "application/octet-stream", Size: -1}, VerdictMalicious, EICARName, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := scanBytes(t, s, tt.data, tt.m)
			if res.Verdict != tt.want || res.Threat != tt.threat || res.Member != tt.member || res.Blocked != (tt.want == VerdictMalicious) {
				t.Errorf("got %v %q in %q (blocked %v), want %v %q in %q", res.Verdict, res.Threat, res.Member, res.Blocked, tt.want, tt.threat, tt.member)
			}
		})
	}
}

// TestUploadNoReputation: an upload's hashes are never looked up, even
// when the service would have a verdict; the same bytes downloaded are.
func TestUploadNoReputation(t *testing.T) {
	sum := sha256.Sum256(pe(4096))
	rep := &fakeReputation{lookup: func(q reputation.Query) reputation.Verdict {
		if [32]byte(q.SHA256) == sum {
			return reputation.Verdict{Kind: reputation.KindMalware, ThreatName: "Rep.Threat", Source: reputation.SourceServer}
		}
		return reputation.Verdict{}
	}}
	s := newTestScanner(t, Config{Reputation: rep})
	form, ct := formOf(t, member{"tool.exe", pe(4096)})
	for _, m := range []struct {
		data []byte
		meta Meta
	}{{pe(4096), Meta{Upload: true, Size: -1}}, {form, Meta{Upload: true, ContentType: ct, Size: -1}}} {
		if res := scanBytes(t, s, m.data, m.meta); res.Verdict != VerdictUnknown || rep.calls != 0 {
			t.Errorf("upload: got %v after %d lookups, want unknown after none", res.Verdict, rep.calls)
		}
	}
	if res := scanBytes(t, s, pe(4096), Meta{Size: -1}); res.Verdict != VerdictMalicious || rep.calls == 0 {
		t.Errorf("download: got %v after %d lookups, want malicious after a lookup", res.Verdict, rep.calls)
	}
}

// TestSkippedNotCached: a body an engine skipped (an ICAP server without a
// REQMOD service skips uploads) was not judged, so the same bytes
// downloaded later are asked about, not answered from the cache.
func TestSkippedNotCached(t *testing.T) {
	bad := append(pe(4096), "ENGINE-MARKER"...)
	e := &fakeEngine{name: "fake", tag: "t1", judge: detects("ENGINE-MARKER", "Fake.Threat")}
	skipUploads := &skipping{fakeEngine: e}
	s := newTestScanner(t, Config{Engines: []EngineConfig{{Engine: skipUploads}}})
	if res := scanBytes(t, s, bad, Meta{Upload: true, Size: -1}); res.Verdict != VerdictUnknown {
		t.Fatalf("skipped upload: got %v, want unknown", res.Verdict)
	}
	if res := scanBytes(t, s, bad, Meta{Size: -1}); res.Threat != "Fake.Threat" {
		t.Errorf("download after a skipped upload: got %v %q, want the engine's detection", res.Verdict, res.Threat)
	}
	if st := s.EngineStats()[0]; st.CacheHits != 0 {
		t.Errorf("got %d cache hits, want none", st.CacheHits)
	}
}

// skipping is a fakeEngine that skips uploads.
type skipping struct{ *fakeEngine }

func (s *skipping) Open(m EngineMeta) EngineStream {
	if m.Upload {
		return skipStream{}
	}
	return s.fakeEngine.Open(m)
}

type skipStream struct{}

func (skipStream) Write(p []byte) (int, error) { return len(p), nil }
func (skipStream) Finish(context.Context) (EngineResult, error) {
	return EngineResult{Skipped: "no REQMOD service for uploads"}, nil
}
func (skipStream) Close() error { return nil }

// TestFormFilesToEngines: an engine that knows a file only whole (by its
// hash or structure: here, a body that starts with MZ and holds a marker)
// finds it in an uploaded form, because each file of the form goes to it
// on its own; the detection names the file and the engine. A download of
// the same form is asked about whole only.
func TestFormFilesToEngines(t *testing.T) {
	judge := func(b []byte) (EngineResult, error) {
		if bytes.HasPrefix(b, []byte("MZ")) && bytes.Contains(b, []byte("ENGINE-MARKER")) {
			return EngineResult{Threat: "Fake.Whole.File"}, nil
		}
		return EngineResult{}, nil
	}
	bad := append(pe(4096), "ENGINE-MARKER"...)
	form, ct := formOf(t, member{"notes.txt", []byte("hello")}, member{"tool.exe", bad})
	for _, tc := range []struct {
		name   string
		m      Meta
		threat string
		member string
		asked  int
	}{
		{"upload", Meta{Upload: true, ContentType: ct, Size: -1}, "Fake.Whole.File", "tool.exe", 3},
		{"download", Meta{ContentType: ct, Size: -1}, "", "", 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := &fakeEngine{name: "fake", judge: judge}
			s := newTestScanner(t, Config{Engines: []EngineConfig{{Engine: e}}})
			res := scanBytes(t, s, form, tc.m)
			if res.Threat != tc.threat || res.Member != tc.member || (tc.threat != "" && (res.Engine != "fake" || !res.Blocked)) {
				t.Errorf("got %q in %q by %q (blocked %v), want %q in %q", res.Threat, res.Member, res.Engine, res.Blocked, tc.threat, tc.member)
			}
			if e.opens != tc.asked {
				t.Errorf("engine asked about %d bodies, want %d (the form, then each file)", e.opens, tc.asked)
			}
		})
	}
}
