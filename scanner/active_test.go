package scanner

import (
	"bytes"
	"compress/zlib"
	"context"
	"fmt"
	"strings"
	"testing"

	tf "github.com/picket-proxy/picket/internal/testfiles"
)

// jsAction is a JavaScript action object, as droppers write it.
const jsAction = `<< /S /JavaScript /JS (app.alert\(1\); this.exportDataObject\({cName: "a", nLaunch: 2}\)) >>`

func TestActiveContent(t *testing.T) {
	s := newTestScanner(t, Config{})
	tricky := `Statement: /JavaScript /JS /Launch /OpenAction /EmbeddedFile \object vbaProject.bin _VBA_PROJECT (c) <<>>`
	for _, tc := range []struct {
		name string
		file []byte
		as   string // the download's file name
		want Active
	}{
		// PDF.
		{"plain pdf", tf.PDF{Text: tricky}.Bytes(), "statement.pdf", 0},
		{"plain pdf, object stream", tf.PDF{Text: tricky, Compressed: true}.Bytes(), "statement.pdf", 0},
		{"pdf opening at a page", tf.PDF{Text: "x", Catalog: "/OpenAction [3 0 R /FitH null]"}.Bytes(), "", 0},
		{"pdf opening with a GoTo action object", tf.PDF{Text: "x", Catalog: "/OpenAction 5 0 R",
			Objects: []string{"<< /S /GoTo /D [3 0 R /Fit] >>"}}.Bytes(), "", 0},
		{"pdf opening with a GoTo in an object stream", tf.PDF{Text: "x", Catalog: "/OpenAction 5 0 R", Compressed: true,
			Objects: []string{"<< /S /GoTo /D [3 0 R /Fit] >>"}}.Bytes(), "", 0},
		{"pdf with a URI link that is not opened", tf.PDF{Text: "x", Objects: []string{"<< /S /URI /URI (https://example.com/) >>"}}.Bytes(), "", 0},
		{"pdf javascript", tf.PDF{Text: "x", Catalog: "/Names << /JavaScript 5 0 R >>",
			Objects: []string{"<< /Names [(a) 6 0 R] >>", jsAction}}.Bytes(), "", ActivePDFJavaScript},
		{"pdf javascript, object stream", tf.PDF{Text: "x", Catalog: "/OpenAction 5 0 R", Compressed: true,
			Objects: []string{jsAction}}.Bytes(), "", ActivePDFJavaScript | ActivePDFOpenAction},
		{"pdf javascript, #xx escapes, object stream", tf.PDF{Text: "x", Compressed: true, Catalog: "/AA << /O 5 0 R >>",
			Objects: []string{`<< /#53 /J#61v#61Script /J#53 (app.alert\(1\)) >>`}}.Bytes(), "", ActivePDFJavaScript},
		{"pdf opening a web page", tf.PDF{Text: "x", Catalog: "/OpenAction 5 0 R",
			Objects: []string{"<< /S /URI /URI (https://phish.example/login) >>"}}.Bytes(), "", ActivePDFOpenAction},
		{"pdf opening a web page, object stream", tf.PDF{Text: "x", Catalog: "/OpenAction 5 0 R", Compressed: true,
			Objects: []string{"<< /S /URI /URI (https://phish.example/login) >>"}}.Bytes(), "", ActivePDFOpenAction},
		{"pdf opening a remote file, in place", tf.PDF{Text: "x", Catalog: `/OpenAction << /S /GoToR /F (\\\\host\\share\\a.pdf) /D [0 /Fit] >>`}.Bytes(), "", ActivePDFOpenAction},
		{"pdf launch", tf.PDF{Text: "x", Catalog: "/OpenAction << /S /Launch /Win << /F (cmd.exe) >> >>"}.Bytes(), "",
			ActivePDFLaunch | ActivePDFOpenAction},
		{"pdf embedded file", tf.PDF{Text: "x", Catalog: "/Names << /EmbeddedFiles 5 0 R >>",
			Objects: []string{"<< /Names [(a.exe) 6 0 R] >>", "<< /Type /Filespec /F (a.exe) /EF << /F 7 0 R >> >>",
				"<< /Type /EmbeddedFile /Length 0 >>"}}.Bytes(), "", ActivePDFEmbeddedFile},
		{"pdf rich media", tf.PDF{Text: "x", Objects: []string{"<< /Type /Annot /Subtype /RichMedia /Rect [0 0 10 10] >>"}}.Bytes(), "",
			ActivePDFRichMedia},

		// Office Open XML.
		{"docx", tf.Docx{Text: tricky}.Bytes(), "contract.docx", 0},
		{"docx with a template on the author's disk", tf.Docx{Text: "x", Template: "Normal.dotm"}.Bytes(), "", 0},
		{"docm", tf.Docx{Text: "x", Macros: true}.Bytes(), "invoice.docm", ActiveMacros},
		{"docx with an OLE object", tf.Docx{Text: "x", OLEObject: true}.Bytes(), "", ActiveOLEObject},
		{"docx with a remote template", tf.Docx{Text: "x", Template: "https://evil.example/t.dotm", External: true}.Bytes(), "",
			ActiveExternalTemplate},
		{"docx holding an executable", tf.Docx{Text: "x", Members: map[string][]byte{"word/media/setup.exe": pe(600)}}.Bytes(), "",
			ActiveArchivedExecutable},
		{"docm first member not content types", tf.Zip(tf.Member{Name: "docProps/app.xml", Data: []byte("<x/>")},
			tf.Member{Name: "[Content_Types].xml", Data: []byte(`<Types><Default Extension="bin" ContentType="application/vnd.ms-office.vbaProject"/></Types>`)},
			tf.Member{Name: "word/vbaProject.bin", Data: []byte("not even ole")}), "", ActiveMacros},

		// OLE2, RTF.
		{"doc", tf.Doc(tricky, false), "letter.doc", 0},
		{"doc with macros", tf.Doc("x", true), "letter.doc", ActiveMacros},
		{"msi", tf.CFB{Class: tf.ClassMSI, Entries: []tf.CFBEntry{{Name: "SummaryInformation", Data: []byte("x")}}}.Bytes(), "", ActiveExecutable},
		{"rtf", tf.RTF(tricky, false), "cv.rtf", 0},
		{"rtf with an object", tf.RTF("x", true), "cv.rtf", ActiveRTFObject},
		{"rtf with an object control word in binary data", []byte(`{\rtf1 {\pict\bin12 \object\objd}\par}`), "", 0},

		// Executables, scripts, archives.
		{"pe", tf.PE("x", 2048), "setup.exe", ActiveExecutable},
		{"elf", append([]byte("\x7fELF\x02\x01\x01"), make([]byte, 64)...), "", ActiveExecutable},
		{"shebang script", []byte("#!/bin/sh\necho hi\n"), "run", ActiveScript},
		{"powershell by name", []byte("Write-Host hi\n"), "run.ps1", ActiveScript},
		{"text", []byte("Write-Host hi\n"), "notes.txt", 0},
		{"zip holding an exe", tf.Zip(tf.Member{Name: "readme.txt", Data: []byte("hi")}, tf.Member{Name: "setup.exe", Data: pe(700)}), "",
			ActiveArchivedExecutable},
		{"zip holding documents", tf.Zip(tf.Member{Name: "a.pdf", Data: tf.PDF{Text: "x"}.Bytes()},
			tf.Member{Name: "b.docx", Data: tf.Docx{Text: "y"}.Bytes()}), "", 0},
		{"zip in a zip holding a script", nestZip(t, "install.bat", []byte("echo hi\r\n"), 2), "", ActiveArchivedExecutable},
		{"zip holding a .js", tf.Zip(tf.Member{Name: "invoice.js", Data: []byte("WScript.Echo(1)")}), "", ActiveArchivedExecutable},
		{"tar.gz holding a script", gzipOf(t, "a.tar", tarOf(t, member{"a/run.sh", []byte("echo hi\n")})), "", ActiveArchivedExecutable},
		{"image", append([]byte("\x89PNG\r\n\x1a\n"), make([]byte, 64)...), "x.png", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := scanBytes(t, s, tc.file, Meta{Size: int64(len(tc.file)), Name: tc.as})
			if res.Active != tc.want {
				t.Errorf("active content: got %q, want %q (type %s, incomplete %q)", res.Active, tc.want, res.Type, res.Incomplete)
			}
			if res.Verdict != VerdictUnknown {
				t.Errorf("verdict: got %s, want unknown (active content is not a verdict)", res.Verdict)
			}
		})
	}
}

// TestActiveContentEncoded: the classification reads the decoded file.
func TestActiveContentEncoded(t *testing.T) {
	s := newTestScanner(t, Config{})
	docm := tf.Docx{Text: "x", Macros: true}.Bytes()
	var b bytes.Buffer
	zw := zlib.NewWriter(&b)
	zw.Write(tf.PDF{Text: "x", Catalog: "/OpenAction 5 0 R", Objects: []string{jsAction}}.Bytes())
	zw.Close()
	for _, tc := range []struct {
		name, enc string
		body      []byte
		want      Active
	}{
		{"gzip", "gzip", gzipOf(t, "", docm), ActiveMacros},
		{"deflate", "deflate", b.Bytes(), ActivePDFJavaScript | ActivePDFOpenAction},
	} {
		res := scanBytes(t, s, tc.body, Meta{Size: int64(len(tc.body)), ContentEncoding: tc.enc})
		if res.Active != tc.want {
			t.Errorf("%s: got %q, want %q", tc.name, res.Active, tc.want)
		}
	}
}

// TestPDFObjectStreamBudget: object streams inflate within the budget; past
// it, reading stops and says so.
func TestPDFObjectStreamBudget(t *testing.T) {
	pad := strings.Repeat("<< /Padding (0123456789abcdef) >>\n", 4000) // about 140 KB inflated
	file := tf.PDF{Text: "x", Compressed: true, Objects: []string{"<< /P 1 >>", pad, jsAction}}.Bytes()
	for _, tc := range []struct {
		budget   int64
		want     Active
		complete bool
	}{
		{1 << 20, ActivePDFJavaScript, true},
		{16 << 10, 0, false},
	} {
		p := newPDFScan(tc.budget)
		got := p.scan(bytes.NewReader(file))
		if got != tc.want || (p.incomplete == "") != tc.complete {
			t.Errorf("budget %d: got %q (incomplete %q), want %q, complete %t", tc.budget, got, p.incomplete, tc.want, tc.complete)
		}
	}
}

func TestActiveString(t *testing.T) {
	for _, tc := range []struct {
		a    Active
		want string
	}{
		{0, ""},
		{ActiveExecutable, "executable"},
		{ActiveArchivedExecutable | ActiveScript, "script,archived-executable"},
		{ActiveMacros | ActiveOLEObject, "macros,ole-object"},
		{ActivePDFRichMedia, "pdf-richmedia"},
	} {
		if got := tc.a.String(); got != tc.want {
			t.Errorf("String: got %q, want %q", got, tc.want)
		}
	}
	if n := len(ActiveNames()); n != 12 || Active(1<<n).String() != "" {
		t.Errorf("ActiveNames: %d names", n)
	}
}

// FuzzActive feeds arbitrary bytes to each active-content parser (PDF,
// RTF, OLE2) and to whole scans as an OOXML-named download: no panic, and
// the result names only kinds of active content.
func FuzzActive(f *testing.F) {
	for _, seed := range [][]byte{
		tf.PDF{Text: "x", Catalog: "/OpenAction 5 0 R", Compressed: true, Objects: []string{jsAction}}.Bytes(),
		tf.PDF{Text: "y", Catalog: "/OpenAction [3 0 R /Fit]"}.Bytes(),
		[]byte("%PDF-1.7\n1 0 obj << /Type /ObjStm /N 1 /First 4 /Filter /FlateDecode >> stream\nx\x9c\nendstream endobj /J#61vaScript"),
		tf.Docx{Text: "x", Macros: true, OLEObject: true, Template: "http://x/t", External: true}.Bytes(),
		tf.Doc("x", true),
		tf.RTF("x", true),
		[]byte(`{\rtf1\bin99999999999 \object}`),
	} {
		f.Add(seed)
	}
	s := newTestScanner(f, Config{MaxSize: 1 << 20, Archive: ArchiveLimits{MaxExpanded: 4 << 20, MaxMembers: 100}})
	known := map[string]bool{}
	for _, n := range ActiveNames() {
		known[n] = true
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var a Active
		p := newPDFScan(1 << 20)
		a |= p.scan(bytes.NewReader(data))
		a |= rtfActive(bytes.NewReader(data))
		a |= cfbActive(bytes.NewReader(data), int64(len(data)))
		sc := s.NewScan(Meta{Size: -1, Name: "f.docm"})
		defer sc.Close()
		sc.Write(data)
		res, err := sc.Finish(context.Background())
		if err != nil {
			t.Fatalf("Finish: %v", err)
		}
		a |= res.Active
		for _, n := range strings.Split(a.String(), ",") {
			if n != "" && !known[n] {
				t.Fatalf("unknown kind %q in %q", n, a)
			}
		}
		_ = fmt.Sprint(a)
	})
}

// BenchmarkActive measures the active-content checks alone (MB/s of the
// file): a PDF of 20,000 objects in object streams, a PDF that is one
// 8 MiB stream (skipped), a 4 MiB RTF picture, a .docm.
func BenchmarkActive(b *testing.B) {
	objs := make([]string, 20000)
	for i := range objs {
		objs[i] = fmt.Sprintf("<< /Type /Annot /Subtype /Link /Rect [%d 0 10 10] /A << /S /GoTo /D [3 0 R /Fit] >> >>", i)
	}
	bigStream := tf.PDF{Text: "x"}.Bytes()
	raw := pe(8 << 20)
	bigStream = append(bigStream, fmt.Sprintf("9 0 obj\n<< /Length %d /Filter /DCTDecode >>\nstream\n", len(raw))...)
	bigStream = append(append(bigStream, raw...), "\nendstream\nendobj\n"...)
	rtf := []byte(`{\rtf1{\pict\pngblip ` + strings.Repeat("89504e470d0a1a0a", 4<<20/16) + `}}`)
	s := newTestScanner(b, Config{})
	for _, bc := range []struct {
		name string
		file []byte
		run  func([]byte) Active
	}{
		{"pdf-objects", tf.PDF{Text: "x", Compressed: true, Objects: objs}.Bytes(), func(f []byte) Active {
			return newPDFScan(maxPDFInflated).scan(bytes.NewReader(f))
		}},
		{"pdf-stream", bigStream, func(f []byte) Active { return newPDFScan(maxPDFInflated).scan(bytes.NewReader(f)) }},
		{"rtf-picture", rtf, func(f []byte) Active { return rtfActive(bytes.NewReader(f)) }},
		{"docm", tf.Docx{Text: strings.Repeat("text ", 20000), Macros: true}.Bytes(), func(f []byte) Active {
			return newInspector(context.Background(), s).ooxmlActive(bytes.NewReader(f), int64(len(f)))
		}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			if bc.run(bc.file) == 0 && bc.name == "docm" {
				b.Fatal("docm: no macros found")
			}
			b.SetBytes(int64(len(bc.file)))
			b.ReportAllocs()
			for b.Loop() {
				bc.run(bc.file)
			}
		})
	}
}
