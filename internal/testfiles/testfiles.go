// Package testfiles builds small, real files of the formats the scanner
// classifies — PDF, Office Open XML, OLE2 compound files, RTF, zip, PE — for
// tests, at run time, so that no binary fixture from elsewhere is checked in.
// Every builder takes a text that ends up in the file, so tests can make
// files with hashes of their own.
package testfiles

import (
	"archive/zip"
	"bytes"
	"compress/gzip"
	"compress/zlib"
	"encoding/binary"
	"fmt"
	"sort"
	"strings"
	"unicode/utf16"
)

// PDF describes a one-page PDF showing Text.
type PDF struct {
	Text string
	// Catalog is added to the document catalog's dictionary, e.g.
	// "/OpenAction 5 0 R" or "/Names << /JavaScript 6 0 R >>".
	Catalog string
	// Objects are more objects, numbered 5, 6, ... (their bodies only,
	// "<< /S /JavaScript /JS (app.alert(1)) >>").
	Objects []string
	// Compressed puts the catalog, the page tree, the font and Objects in
	// a FlateDecode object stream with a cross-reference stream (PDF 1.5),
	// as most producers do today.
	Compressed bool
}

// Bytes returns the file. Its cross-reference table or stream is correct.
func (d PDF) Bytes() []byte {
	text := strings.NewReplacer(`\`, `\\`, `(`, `\(`, `)`, `\)`).Replace(d.Text)
	content := deflate([]byte(fmt.Sprintf("BT /F1 12 Tf 72 720 Td (%s) Tj ET\n", text)))
	nc := 5 + len(d.Objects) // the content stream's number
	objs := []string{
		fmt.Sprintf("<< /Type /Catalog /Pages 2 0 R %s>>", d.Catalog),
		"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
		fmt.Sprintf("<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 4 0 R >> >> /Contents %d 0 R >>", nc),
		"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
	}
	objs = append(objs, d.Objects...)

	var b bytes.Buffer
	b.WriteString("%PDF-1.7\n%\xe2\xe3\xcf\xd3\n")
	offsets := map[int]int{}
	writeObj := func(n int, body string, stream []byte) {
		offsets[n] = b.Len()
		fmt.Fprintf(&b, "%d 0 obj\n%s\n", n, body)
		if stream != nil {
			b.WriteString("stream\n")
			b.Write(stream)
			b.WriteString("\nendstream\n")
		}
		b.WriteString("endobj\n")
	}
	if !d.Compressed {
		for i, o := range objs {
			writeObj(i+1, o, nil)
		}
		writeObj(nc, fmt.Sprintf("<< /Length %d /Filter /FlateDecode >>", len(content)), content)
		xref := b.Len()
		fmt.Fprintf(&b, "xref\n0 %d\n0000000000 65535 f \n", nc+1)
		for n := 1; n <= nc; n++ {
			fmt.Fprintf(&b, "%010d 00000 n \n", offsets[n])
		}
		fmt.Fprintf(&b, "trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n", nc+1, xref)
		return b.Bytes()
	}

	// The object stream: "num offset" pairs, then the objects.
	var head, body strings.Builder
	for i, o := range objs {
		fmt.Fprintf(&head, "%d %d ", i+1, body.Len())
		body.WriteString(o)
		body.WriteString("\n")
	}
	first := head.Len()
	packed := deflate([]byte(head.String() + body.String()))
	ns, nx := nc+1, nc+2
	writeObj(nc, fmt.Sprintf("<< /Length %d /Filter /FlateDecode >>", len(content)), content)
	writeObj(ns, fmt.Sprintf("<< /Type /ObjStm /N %d /First %d /Length %d /Filter /FlateDecode >>", len(objs), first, len(packed)), packed)
	// The cross-reference stream: type (1 byte), offset or object stream
	// (4), generation or index (2).
	var xs bytes.Buffer
	entry := func(t byte, f2 uint32, f3 uint16) {
		xs.WriteByte(t)
		binary.Write(&xs, binary.BigEndian, f2)
		binary.Write(&xs, binary.BigEndian, f3)
	}
	entry(0, 0, 65535)
	for i := range objs {
		entry(2, uint32(ns), uint16(i))
	}
	entry(1, uint32(offsets[nc]), 0)
	entry(1, uint32(offsets[ns]), 0)
	offsets[nx] = b.Len()
	entry(1, uint32(offsets[nx]), 0)
	writeObj(nx, fmt.Sprintf("<< /Type /XRef /Size %d /W [1 4 2] /Root 1 0 R /Length %d >>", nx+1, xs.Len()), xs.Bytes())
	fmt.Fprintf(&b, "startxref\n%d\n%%%%EOF\n", offsets[nx])
	return b.Bytes()
}

func deflate(p []byte) []byte {
	var b bytes.Buffer
	zw := zlib.NewWriter(&b)
	zw.Write(p)
	zw.Close()
	return b.Bytes()
}

// Docx describes a Word document (Office Open XML) with one paragraph.
type Docx struct {
	Text string
	// Macros adds a VBA project (word/vbaProject.bin, an OLE2 file with a
	// _VBA_PROJECT stream) as a .docm has.
	Macros bool
	// OLEObject embeds an OLE object (word/embeddings/oleObject1.bin).
	OLEObject bool
	// Template, if set, is an attached template (word/settings.xml);
	// External says it is fetched from that address when the document
	// opens (TargetMode="External").
	Template string
	External bool
	// Members are more parts: name → content.
	Members map[string][]byte
}

// Bytes returns the file; [Content_Types].xml is its first member, as Word
// writes it.
func (d Docx) Bytes() []byte {
	main := "application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml"
	if d.Macros {
		main = "application/vnd.ms-word.document.macroEnabled.main+xml"
	}
	types := `<?xml version="1.0" encoding="UTF-8" standalone="yes"?>` +
		`<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">` +
		`<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>` +
		`<Default Extension="xml" ContentType="application/xml"/>`
	if d.Macros {
		types += `<Default Extension="bin" ContentType="application/vnd.ms-office.vbaProject"/>`
	}
	if d.OLEObject {
		types += `<Override PartName="/word/embeddings/oleObject1.bin" ContentType="application/vnd.openxmlformats-officedocument.oleObject"/>`
	}
	types += `<Override PartName="/word/document.xml" ContentType="` + main + `"/></Types>`
	rel := func(id, typ, target, mode string) string {
		s := `<Relationship Id="` + id + `" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/` + typ + `" Target="` + target + `"`
		if mode != "" {
			s += ` TargetMode="` + mode + `"`
		}
		return s + `/>`
	}
	rels := func(rs ...string) []byte {
		return []byte(`<?xml version="1.0" encoding="UTF-8" standalone="yes"?>` +
			`<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">` + strings.Join(rs, "") + `</Relationships>`)
	}
	docRels := []string{rel("rId1", "settings", "settings.xml", "")}
	if d.Macros {
		docRels = append(docRels, `<Relationship Id="rId2" Type="http://schemas.microsoft.com/office/2006/relationships/vbaProject" Target="vbaProject.bin"/>`)
	}
	if d.OLEObject {
		docRels = append(docRels, rel("rId3", "oleObject", "embeddings/oleObject1.bin", ""))
	}
	members := []Member{
		{"[Content_Types].xml", []byte(types)},
		{"_rels/.rels", rels(rel("rId1", "officeDocument", "word/document.xml", ""))},
		{"word/document.xml", []byte(`<?xml version="1.0" encoding="UTF-8" standalone="yes"?>` +
			`<w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"><w:body><w:p><w:r><w:t>` +
			xmlEscape(d.Text) + `</w:t></w:r></w:p></w:body></w:document>`)},
		{"word/_rels/document.xml.rels", rels(docRels...)},
		{"word/settings.xml", []byte(`<?xml version="1.0" encoding="UTF-8" standalone="yes"?>` +
			`<w:settings xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main" ` +
			`xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships">` +
			map[bool]string{true: `<w:attachedTemplate r:id="rId1"/>`}[d.Template != ""] + `</w:settings>`)},
	}
	if d.Template != "" {
		mode := ""
		if d.External {
			mode = "External"
		}
		members = append(members, Member{"word/_rels/settings.xml.rels", rels(rel("rId1", "attachedTemplate", d.Template, mode))})
	}
	if d.Macros {
		members = append(members, Member{"word/vbaProject.bin", CFB{Entries: []CFBEntry{{Name: "VBA", Storage: true}, {Name: "_VBA_PROJECT", Data: []byte{0xcc, 0x61}},
			{Name: "dir", Data: []byte("Attribute VB_Name = \"ThisDocument\"")}, {Name: "PROJECT", Data: []byte("ID=\"{00000000}\"")}}}.Bytes()})
	}
	if d.OLEObject {
		members = append(members, Member{"word/embeddings/oleObject1.bin", CFB{Entries: []CFBEntry{{Name: "\x01Ole10Native", Data: []byte("embedded " + d.Text)}}}.Bytes()})
	}
	names := make([]string, 0, len(d.Members))
	for n := range d.Members {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		members = append(members, Member{n, d.Members[n]})
	}
	return Zip(members...)
}

func xmlEscape(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace(s)
}

// CFBEntry is a storage or a stream of a compound file.
type CFBEntry struct {
	Name    string
	Storage bool
	Data    []byte // a stream's content
}

// CFB describes an OLE2 compound file (version 3, 512-byte sectors) whose
// entries all sit under the root storage, of class Class.
type CFB struct {
	Class   [16]byte
	Entries []CFBEntry
}

// Bytes returns the file. Streams are padded to 4096 bytes so that they
// live in ordinary sectors (no mini stream); at most about 60 KiB of
// streams fit in its one FAT sector.
func (c CFB) Bytes() []byte {
	const sec = 512
	const (
		endChain = 0xfffffffe
		free     = 0xffffffff
		fatSect  = 0xfffffffd
		noStream = 0xffffffff
	)
	entries := append([]CFBEntry(nil), c.Entries...)
	// Siblings are ordered by name length, then by upper-case name.
	sort.Slice(entries, func(i, j int) bool {
		a, b := utf16.Encode([]rune(entries[i].Name)), utf16.Encode([]rune(entries[j].Name))
		if len(a) != len(b) {
			return len(a) < len(b)
		}
		return strings.ToUpper(entries[i].Name) < strings.ToUpper(entries[j].Name)
	})
	nDir := (len(entries) + 1 + 3) / 4
	fat := []uint32{fatSect}
	for i := 1; i <= nDir; i++ {
		if i == nDir {
			fat = append(fat, endChain)
		} else {
			fat = append(fat, uint32(i+1))
		}
	}
	type placed struct{ start, size uint32 }
	where := make([]placed, len(entries))
	var data bytes.Buffer
	for i, e := range entries {
		where[i] = placed{endChain, 0}
		if e.Storage {
			continue
		}
		p := append([]byte(nil), e.Data...)
		if len(p) < 4096 {
			p = append(p, make([]byte, 4096-len(p))...)
		}
		for len(p)%sec != 0 {
			p = append(p, 0)
		}
		start := len(fat)
		for k := 0; k < len(p)/sec; k++ {
			if k == len(p)/sec-1 {
				fat = append(fat, endChain)
			} else {
				fat = append(fat, uint32(len(fat)+1))
			}
		}
		where[i] = placed{uint32(start), uint32(len(p))}
		data.Write(p)
	}
	for len(fat) < sec/4 {
		fat = append(fat, free)
	}

	var b bytes.Buffer
	h := make([]byte, sec)
	copy(h, "\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1")
	binary.LittleEndian.PutUint16(h[0x18:], 0x3e)
	binary.LittleEndian.PutUint16(h[0x1a:], 3)
	binary.LittleEndian.PutUint16(h[0x1c:], 0xfffe)
	binary.LittleEndian.PutUint16(h[0x1e:], 9)
	binary.LittleEndian.PutUint16(h[0x20:], 6)
	binary.LittleEndian.PutUint32(h[0x2c:], 1) // FAT sectors
	binary.LittleEndian.PutUint32(h[0x30:], 1) // first directory sector
	binary.LittleEndian.PutUint32(h[0x38:], 4096)
	binary.LittleEndian.PutUint32(h[0x3c:], endChain)
	binary.LittleEndian.PutUint32(h[0x44:], endChain)
	for i := 0; i < 109; i++ {
		binary.LittleEndian.PutUint32(h[0x4c+4*i:], free)
	}
	binary.LittleEndian.PutUint32(h[0x4c:], 0)
	b.Write(h)
	for _, v := range fat[:sec/4] {
		binary.Write(&b, binary.LittleEndian, v)
	}
	dir := make([]byte, nDir*sec)
	put := func(i int, name string, kind byte, child, right, start, size uint32, class [16]byte) {
		e := dir[i*128 : (i+1)*128]
		u := utf16.Encode([]rune(name))
		for j, v := range u {
			binary.LittleEndian.PutUint16(e[2*j:], v)
		}
		binary.LittleEndian.PutUint16(e[0x40:], uint16(2*(len(u)+1)))
		e[0x42], e[0x43] = kind, 1
		binary.LittleEndian.PutUint32(e[0x44:], noStream)
		binary.LittleEndian.PutUint32(e[0x48:], right)
		binary.LittleEndian.PutUint32(e[0x4c:], child)
		copy(e[0x50:], class[:])
		binary.LittleEndian.PutUint32(e[0x74:], start)
		binary.LittleEndian.PutUint32(e[0x78:], size)
	}
	child := uint32(noStream)
	if len(entries) > 0 {
		child = 1
	}
	put(0, "Root Entry", 5, child, noStream, endChain, 0, c.Class)
	for i, e := range entries {
		right := uint32(noStream)
		if i+1 < len(entries) {
			right = uint32(i + 2)
		}
		kind := byte(2)
		if e.Storage {
			kind = 1
		}
		put(i+1, e.Name, kind, noStream, right, where[i].start, where[i].size, [16]byte{})
	}
	for i := len(entries) + 1; i < nDir*4; i++ {
		e := dir[i*128 : (i+1)*128]
		binary.LittleEndian.PutUint32(e[0x44:], noStream)
		binary.LittleEndian.PutUint32(e[0x48:], noStream)
		binary.LittleEndian.PutUint32(e[0x4c:], noStream)
	}
	b.Write(dir)
	b.Write(data.Bytes())
	return b.Bytes()
}

// ClassMSI is the root class of a Windows Installer package.
var ClassMSI = [16]byte{0x84, 0x10, 0x0c, 0x00, 0, 0, 0, 0, 0xc0, 0, 0, 0, 0, 0, 0, 0x46}

// Doc returns a legacy Word document (OLE2) with text in its WordDocument
// stream (UTF-16, as Word stores it) and, with macros, a VBA project.
func Doc(text string, macros bool) []byte {
	u := utf16.Encode([]rune(text))
	w := make([]byte, 2*len(u))
	for i, v := range u {
		binary.LittleEndian.PutUint16(w[2*i:], v)
	}
	entries := []CFBEntry{{Name: "WordDocument", Data: w}, {Name: "1Table", Data: []byte{0}}}
	if macros {
		entries = append(entries, CFBEntry{Name: "Macros", Storage: true}, CFBEntry{Name: "VBA", Storage: true},
			CFBEntry{Name: "_VBA_PROJECT", Data: []byte{0xcc, 0x61}})
	}
	return CFB{Entries: entries}.Bytes()
}

// RTF returns an RTF document with text; with object it embeds an OLE
// object (\object\objemb with \objdata), as a dropper does.
func RTF(text string, object bool) []byte {
	text = strings.NewReplacer(`\`, `\\`, `{`, `\{`, `}`, `\}`).Replace(text)
	s := `{\rtf1\ansi\deff0{\fonttbl{\f0 Times New Roman;}}\f0\fs24 ` + text + `\par`
	if object {
		s += `{\object\objemb{\*\objclass Package}\objw1000\objh1000{\*\objdata 01050000020000000800000050616b6167650000000000000000000a000000` +
			fmt.Sprintf("%x", "embedded "+text) + `}}`
	}
	return []byte(s + "}\n")
}

// PE returns an unknown Windows executable of n bytes (at least 512): a DOS
// header pointing at a PE signature, then bytes derived from seed.
func PE(seed string, n int) []byte {
	n = max(n, 512)
	b := make([]byte, n)
	copy(b, "MZ")
	binary.LittleEndian.PutUint32(b[0x3c:], 0x80)
	copy(b[0x80:], "PE\x00\x00")
	x := uint32(2166136261)
	for _, c := range []byte(seed) {
		x = (x ^ uint32(c)) * 16777619
	}
	for i := 0x100; i < n; i++ {
		x = x*1664525 + 1013904223
		b[i] = byte(x >> 24)
	}
	return b
}

// Member is a file in a zip archive.
type Member struct {
	Name string
	Data []byte
}

// Gzip returns data gzip-compressed, with name in the header ("" for none).
func Gzip(name string, data []byte) []byte {
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	zw.Name = name
	zw.Write(data)
	zw.Close()
	return b.Bytes()
}

// Zip returns a zip archive of the members, deflated, in order.
func Zip(ms ...Member) []byte {
	var b bytes.Buffer
	zw := zip.NewWriter(&b)
	for _, m := range ms {
		w, _ := zw.Create(m.Name)
		w.Write(m.Data)
	}
	zw.Close()
	return b.Bytes()
}
