package scanner

import (
	"archive/zip"
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/xml"
	"io"
	"path"
	"strings"
	"unicode/utf16"
)

// Active is the set of kinds of active content found in a file: what lets
// a file act when it is opened — run code, fetch a template, launch a
// program — as opposed to a document that is only read. A file with none
// (a plain PDF, a .docx without macros, an image) is zero. Participation
// sends samples only of files with active content (docs/privacy.md).
type Active uint16

// The kinds of active content.
const (
	// ActiveExecutable is machine code (PE, ELF, Mach-O), a Java class, a
	// Java or Android package, or a Windows installer (MSI, MSP).
	ActiveExecutable Active = 1 << iota
	// ActiveScript is a script: a "#!" file, or a text file named like a
	// Windows or Unix script (.bat, .cmd, .ps1, .vbs, .hta, .sh, ...).
	ActiveScript
	// ActiveArchivedExecutable is an archive holding an executable or a
	// script, at any depth the scanner opens.
	ActiveArchivedExecutable
	// ActiveMacros is an Office VBA project: an OOXML vbaProject.bin
	// part, or an OLE2 document with a _VBA_PROJECT stream.
	ActiveMacros
	// ActiveOLEObject is an OOXML document with an embedded or linked OLE
	// object or an ActiveX control.
	ActiveOLEObject
	// ActiveExternalTemplate is an OOXML document whose attachedTemplate
	// relationship has TargetMode="External" (the template is fetched
	// when the document opens).
	ActiveExternalTemplate
	// ActiveRTFObject is an RTF document with an embedded object (\object
	// or \objdata).
	ActiveRTFObject
	// ActivePDFJavaScript is a PDF with /JavaScript or /JS.
	ActivePDFJavaScript
	// ActivePDFOpenAction is a PDF whose /OpenAction is an action other
	// than going to a page (a destination array or a GoTo action is not
	// active content).
	ActivePDFOpenAction
	// ActivePDFLaunch is a PDF with a /Launch action.
	ActivePDFLaunch
	// ActivePDFEmbeddedFile is a PDF with /EmbeddedFile or /EmbeddedFiles.
	ActivePDFEmbeddedFile
	// ActivePDFRichMedia is a PDF with /RichMedia (Flash or video).
	ActivePDFRichMedia
)

var activeNames = [...]string{
	"executable", "script", "archived-executable", "macros", "ole-object", "external-template", "rtf-object",
	"pdf-javascript", "pdf-openaction", "pdf-launch", "pdf-embedded-file", "pdf-richmedia",
}

// ActiveNames are the names of the kinds of active content, in order: the
// vocabulary of Active.String.
func ActiveNames() []string { return activeNames[:] }

// String names the kinds found, comma-separated in the order of the
// constants ("macros,ole-object"); "" when there are none.
func (a Active) String() string {
	if a == 0 {
		return ""
	}
	var b strings.Builder
	for i, n := range activeNames {
		if a&(1<<i) != 0 {
			if b.Len() > 0 {
				b.WriteByte(',')
			}
			b.WriteString(n)
		}
	}
	return b.String()
}

// MarshalText writes the kinds' names, as String.
func (a Active) MarshalText() ([]byte, error) { return []byte(a.String()), nil }

// Limits of the active-content checks. Parsing is streaming: memory stays
// bounded by these whatever the file.
const (
	maxXMLPart     = 1 << 20  // bytes read of one OOXML relationships or content-types part
	maxXMLTotal    = 16 << 20 // bytes read of those parts in one file
	maxCFBSectors  = 1 << 16  // directory and DIFAT sectors followed in a compound file
	maxPDFInflated = 64 << 20 // bytes inflated of a PDF's object streams
)

// scriptExtensions are names of files that run as scripts when opened,
// whatever their bytes look like.
var scriptExtensions = [...]string{".bat", ".cmd", ".ps1", ".psm1", ".vbs", ".vbe", ".jse", ".wsf", ".wsh", ".hta", ".sh"}

// memberExtensions are programs by name inside archives: installers (the
// scanner streams members, so an MSI member's class is not read),
// shortcuts that run commands, and scripts Windows runs when opened from
// an archive (.js, which a web page's scripts are not, being no member).
var memberExtensions = [...]string{".exe", ".dll", ".scr", ".com", ".msi", ".msp", ".cpl", ".sys", ".lnk", ".js"}

func hasExt(name string, exts []string) bool {
	for _, ext := range exts {
		if len(name) >= len(ext) && strings.EqualFold(name[len(name)-len(ext):], ext) {
			return true
		}
	}
	return false
}

// activeMember reports whether an archive member named name, of type t,
// makes its archive one that holds an executable.
func activeMember(name string, t Type) bool {
	return t.Executable() || t == TypeAPK || t == TypeJAR ||
		hasExt(name, scriptExtensions[:]) || hasExt(name, memberExtensions[:])
}

// activeContent classifies the file just inspected (t is its true type,
// name its file name, "" if none): what active content it carries. Notes
// on what could not be read go to in.note.
func (in *inspector) activeContent(file io.ReaderAt, size int64, t Type, name string) Active {
	if in.bomb != "" || in.stop != nil {
		return 0
	}
	var a Active
	if in.archivedExec {
		a |= ActiveArchivedExecutable
	}
	switch {
	case t == TypeScript:
		a |= ActiveScript
	case t.Executable(), t == TypeJAR, t == TypeAPK:
		a |= ActiveExecutable
	case (t == TypeText || t == TypeUnknown) && hasExt(name, scriptExtensions[:]):
		a |= ActiveScript
	case t == TypeZip || t == TypeOOXML:
		a |= in.ooxmlActive(file, size)
	case t == TypeOLE2:
		a |= cfbActive(file, size)
	case t == TypeRTF:
		a |= rtfActive(io.NewSectionReader(file, 0, size))
	case t == TypePDF:
		p := newPDFScan(maxPDFInflated)
		a |= p.scan(io.NewSectionReader(file, 0, size))
		if p.incomplete != "" {
			in.note("pdf: " + p.incomplete)
		}
	}
	return a
}

// ooxmlActive reads an Office Open XML package's parts list, relationships
// and content types: macros (vbaProject.bin, the VBA project content
// type), embedded or linked OLE objects and ActiveX controls, and external
// attached templates. A zip without [Content_Types].xml is not OOXML: 0.
func (in *inspector) ooxmlActive(ra io.ReaderAt, size int64) Active {
	zr, err := zip.NewReader(ra, size)
	if err != nil || len(zr.File) > in.lim.MaxMembers {
		return 0
	}
	isOOXML := false
	for _, f := range zr.File {
		if f.Name == "[Content_Types].xml" {
			isOOXML = true
			break
		}
	}
	if !isOOXML {
		return 0
	}
	var a Active
	budget := int64(maxXMLTotal)
	for _, f := range zr.File {
		if in.ctx.Err() != nil {
			return a
		}
		lower := strings.ToLower(f.Name)
		base := path.Base(lower)
		switch {
		case strings.HasPrefix(base, "vbaproject") && strings.HasSuffix(base, ".bin"):
			a |= ActiveMacros
		case strings.HasSuffix(lower, ".rels") || f.Name == "[Content_Types].xml":
			if budget <= 0 || f.Flags&1 != 0 {
				continue
			}
			rc, err := f.Open()
			if err != nil {
				continue
			}
			n := min(budget, maxXMLPart)
			lr := &io.LimitedReader{R: rc, N: n}
			a |= xmlPartActive(lr)
			budget -= n - lr.N
			rc.Close()
		case strings.HasSuffix(base, ".bin") && f.Flags&1 == 0:
			// An OLE2 compound file part other than the VBA project: an
			// embedded object (word/embeddings/oleObject1.bin) or an
			// ActiveX control (activeX1.bin).
			rc, err := f.Open()
			if err != nil {
				continue
			}
			var magic [8]byte
			if _, err := io.ReadFull(rc, magic[:]); err == nil && bytes.Equal(magic[:], cfbMagic) {
				a |= ActiveOLEObject
			}
			rc.Close()
		}
	}
	return a
}

// OOXML relationship types and content types that are active content.
const (
	relAttachedTemplate = "/attachedTemplate"
	relOLEObject        = "/oleObject"
	relActiveX          = "/activeXControlBinary"
	relVBAProject       = "/vbaProject"
	ctVBAProject        = "application/vnd.ms-office.vbaproject"
	ctOLEObject         = "application/vnd.openxmlformats-officedocument.oleobject"
	ctActiveX           = "application/vnd.ms-office.activex"
)

// xmlPartActive reads a relationships part (Relationship elements) or
// [Content_Types].xml (Default and Override elements) for active content.
// Malformed XML ends the reading with what was found so far.
func xmlPartActive(r io.Reader) Active {
	var a Active
	d := xml.NewDecoder(r)
	d.Strict = false
	for {
		tok, err := d.RawToken()
		if err != nil {
			return a
		}
		se, ok := tok.(xml.StartElement)
		if !ok {
			continue
		}
		var typ, mode, ct string
		for _, at := range se.Attr {
			switch at.Name.Local {
			case "Type":
				typ = at.Value
			case "TargetMode":
				mode = at.Value
			case "ContentType":
				ct = strings.ToLower(strings.TrimSpace(at.Value))
			}
		}
		switch se.Name.Local {
		case "Relationship":
			switch {
			case strings.HasSuffix(typ, relAttachedTemplate) && strings.EqualFold(mode, "External"):
				a |= ActiveExternalTemplate
			case strings.HasSuffix(typ, relOLEObject), strings.HasSuffix(typ, relActiveX):
				a |= ActiveOLEObject
			case strings.HasSuffix(typ, relVBAProject):
				a |= ActiveMacros
			}
		case "Default", "Override":
			switch {
			case strings.HasPrefix(ct, ctVBAProject):
				a |= ActiveMacros
			case strings.HasPrefix(ct, ctOLEObject), strings.HasPrefix(ct, ctActiveX):
				a |= ActiveOLEObject
			}
		}
	}
}

// cfbMagic starts every OLE2 compound file.
var cfbMagic = []byte("\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1")

// Classes of the root storage of Windows Installer files.
var (
	clsidMSI = [16]byte{0x84, 0x10, 0x0c, 0x00, 0, 0, 0, 0, 0xc0, 0, 0, 0, 0, 0, 0, 0x46} // {000C1084-0000-0000-C000-000000000046}
	clsidMSP = [16]byte{0x86, 0x10, 0x0c, 0x00, 0, 0, 0, 0, 0xc0, 0, 0, 0, 0, 0, 0, 0x46} // {000C1086-...}: a patch
)

// cfbActive reads an OLE2 compound file's directory: a _VBA_PROJECT
// stream (or Excel's _VBA_PROJECT_CUR storage) is macros; a root storage
// of the Windows Installer classes is an executable. Only the directory is
// read, never the streams' contents, so a document's text cannot look like
// a VBA project.
func cfbActive(ra io.ReaderAt, size int64) Active {
	c, ok := openCFB(ra, size)
	if !ok {
		return 0
	}
	var a Active
	c.entries(func(i int, name string, kind byte, clsid [16]byte) bool {
		switch {
		case i == 0 && kind == 5 && (clsid == clsidMSI || clsid == clsidMSP):
			a |= ActiveExecutable
		case (kind == 1 || kind == 2) && (strings.EqualFold(name, "_VBA_PROJECT") || strings.EqualFold(name, "_VBA_PROJECT_CUR")):
			a |= ActiveMacros
		}
		return a&ActiveMacros == 0
	})
	return a
}

// cfb is an OLE2 compound file opened for its directory.
type cfb struct {
	ra       io.ReaderAt
	size     int64
	shift    uint
	firstDir uint32
	difat    []uint32 // the FAT sectors' locations, from the header and DIFAT chain
	maxSteps int      // sectors a chain may have
}

// Special sector numbers.
const (
	cfbEnd  = 0xfffffffe // end of a chain
	cfbFree = 0xffffffff
)

func openCFB(ra io.ReaderAt, size int64) (*cfb, bool) {
	var h [512]byte
	if size < 512 {
		return nil, false
	}
	if _, err := ra.ReadAt(h[:], 0); err != nil || !bytes.Equal(h[:8], cfbMagic) {
		return nil, false
	}
	shift := uint(binary.LittleEndian.Uint16(h[0x1e:]))
	if shift != 9 && shift != 12 {
		return nil, false
	}
	// No chain is longer than the file has sectors: a loop ends there.
	c := &cfb{ra: ra, size: size, shift: shift, firstDir: binary.LittleEndian.Uint32(h[0x30:]),
		maxSteps: int(min(size>>shift, maxCFBSectors))}
	nFAT := binary.LittleEndian.Uint32(h[0x2c:])
	for i := 0; i < 109 && uint32(len(c.difat)) < nFAT; i++ {
		c.difat = append(c.difat, binary.LittleEndian.Uint32(h[0x4c+4*i:]))
	}
	// The DIFAT chain holds the rest of the FAT's locations; each of its
	// sectors ends with the next one's number.
	next := binary.LittleEndian.Uint32(h[0x44:])
	per := int(1<<shift)/4 - 1
	buf := make([]byte, 1<<shift)
	for steps := 0; uint32(len(c.difat)) < nFAT && next < cfbEnd && steps < c.maxSteps; steps++ {
		if !c.sector(next, buf) {
			break
		}
		for i := 0; i < per && uint32(len(c.difat)) < nFAT; i++ {
			c.difat = append(c.difat, binary.LittleEndian.Uint32(buf[4*i:]))
		}
		next = binary.LittleEndian.Uint32(buf[4*per:])
	}
	return c, true
}

// sector reads sector n into buf.
func (c *cfb) sector(n uint32, buf []byte) bool {
	off := (int64(n) + 1) << c.shift
	if n >= cfbEnd-2 || off+int64(len(buf)) > c.size {
		return false
	}
	_, err := c.ra.ReadAt(buf, off)
	return err == nil
}

// next returns the sector after n in its chain, from the FAT.
func (c *cfb) next(n uint32) uint32 {
	per := uint32(1<<c.shift) / 4
	i := n / per
	if int(i) >= len(c.difat) {
		return cfbEnd
	}
	var b [4]byte
	off := (int64(c.difat[i])+1)<<c.shift + int64(n%per)*4
	if c.difat[i] >= cfbEnd-2 || off+4 > c.size {
		return cfbEnd
	}
	if _, err := c.ra.ReadAt(b[:], off); err != nil {
		return cfbEnd
	}
	return binary.LittleEndian.Uint32(b[:])
}

// entries calls f for each directory entry in order (the root first) until
// f returns false. A loop in the chain ends after as many sectors as the
// file has.
func (c *cfb) entries(f func(i int, name string, kind byte, clsid [16]byte) bool) {
	buf := make([]byte, 1<<c.shift)
	i := 0
	for s, steps := c.firstDir, 0; s < cfbEnd-2 && steps < c.maxSteps; s, steps = c.next(s), steps+1 {
		if !c.sector(s, buf) {
			return
		}
		for e := 0; e+128 <= len(buf); e += 128 {
			ent := buf[e : e+128]
			n := int(binary.LittleEndian.Uint16(ent[0x40:]))
			if n > 64 {
				n = 64
			}
			u := make([]uint16, 0, 32)
			for j := 0; j+1 < n; j += 2 {
				if v := binary.LittleEndian.Uint16(ent[j:]); v != 0 {
					u = append(u, v)
				}
			}
			if !f(i, string(utf16.Decode(u)), ent[0x42], [16]byte(ent[0x50:0x60])) {
				return
			}
			i++
		}
	}
}

// rtfActive lexes an RTF document's control words: \object (an embedded or
// linked object's group) or \objdata (its data). Escaped backslashes and
// \binN runs of raw bytes are skipped, so text and pictures cannot look
// like control words.
func rtfActive(r io.Reader) Active {
	br := bufio.NewReaderSize(r, 32<<10)
	var word [32]byte
	for {
		// Fast forward to the next backslash.
		if _, err := br.ReadSlice('\\'); err != nil {
			if err == bufio.ErrBufferFull {
				continue
			}
			return 0
		}
		c, err := br.ReadByte()
		if err != nil {
			return 0
		}
		if !isLetter(c) {
			continue // a control symbol: \\, \{, \}, \'hh, ...
		}
		n := 0
		for isLetter(c) {
			if n < len(word) {
				word[n] = c
			}
			n++
			if c, err = br.ReadByte(); err != nil {
				break
			}
		}
		w := string(word[:min(n, len(word))])
		if n > len(word) {
			w = ""
		}
		neg := false
		if err == nil && c == '-' {
			neg = true
			c, err = br.ReadByte()
		}
		param, digits := int64(0), 0
		for err == nil && c >= '0' && c <= '9' && digits < 10 {
			param = param*10 + int64(c-'0')
			digits++
			c, err = br.ReadByte()
		}
		if err == nil && c != ' ' {
			br.UnreadByte() // the delimiter belongs to what follows
		}
		switch w {
		case "object", "objdata":
			return ActiveRTFObject
		case "bin":
			if !neg && digits > 0 {
				if _, err := br.Discard(int(param)); err != nil {
					return 0
				}
			}
		}
		if err != nil {
			return 0
		}
	}
}

func isLetter(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }
