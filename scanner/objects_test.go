package scanner

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"mime/multipart"
	"testing"

	"github.com/picket-proxy/picket/reputation"
)

// TestKnownGoodClearsOnlyItself: a known-good (.fp) or reputation-clean
// member clears its own detections and those of what it encloses, not a
// detection in another member that has the same name (zip and tar allow
// duplicates, a form's file names are the sender's), nor, for a member
// with an empty name, the whole file.
func TestKnownGoodClearsOnlyItself(t *testing.T) {
	good := fmt.Sprintf("%x:%d:Demo.Good\n", sha256.Sum256(demoCleared), len(demoCleared))
	tool := pe(4096)
	toolSum := sha256.Sum256(tool)
	form := func(parts ...member) ([]byte, string) {
		var b bytes.Buffer
		w := multipart.NewWriter(&b)
		for _, p := range parts {
			fw, _ := w.CreateFormFile("file", p.name)
			fw.Write(p.data)
		}
		w.Close()
		return b.Bytes(), w.FormDataContentType()
	}
	formData, formType := form(member{"a.txt", demoCleared}, member{"a.txt", eicarFile})
	tests := []struct {
		name  string
		data  []byte
		ctype string // an upload's, else a download
	}{
		{"zip, good first", zipOf(t, member{"a.txt", demoCleared}, member{"a.txt", eicarFile}), ""},
		{"zip, good last", zipOf(t, member{"a.txt", eicarFile}, member{"a.txt", demoCleared}), ""},
		{"tar", tarOf(t, member{"a.txt", demoCleared}, member{"a.txt", eicarFile}), ""},
		{"zip member without a name", zipOf(t, member{"", demoCleared}, member{"e.com", eicarFile}), ""},
		{"reputation-clean namesake", zipOf(t, member{"tool.exe", tool}, member{"tool.exe", eicarFile}), ""},
		{"form", formData, formType},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rep := &fakeReputation{lookup: func(q reputation.Query) reputation.Verdict {
				if [32]byte(q.SHA256) == toolSum {
					return reputation.Verdict{Kind: reputation.KindClean, Source: reputation.SourceServer}
				}
				return reputation.Verdict{}
			}}
			s := newTestScanner(t, Config{Signatures: sigsFrom(t, nil, KnownGood, good), Reputation: rep})
			res := scanBytes(t, s, tt.data, Meta{Size: -1, ContentType: tt.ctype, Upload: tt.ctype != ""})
			if res.Verdict != VerdictMalicious || !res.Blocked || res.Threat != EICARName {
				t.Errorf("got %v blocked %v threat %q false alarm %v, want the EICAR member blocked (%+v)",
					res.Verdict, res.Blocked, res.Threat, res.FalseAlarm, res)
			}
		})
	}
}
