package scanner

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"strings"
)

// Type is the true type of a body, from its magic bytes.
type Type uint8

// The types Classify recognises. Executables, archives and documents are
// scanned; media, fonts and text are not.
const (
	TypeUnknown Type = iota // no known magic
	// Executables.
	TypePE        // Windows PE or DOS executable ("MZ")
	TypeELF       // ELF
	TypeMachO     // Mach-O, thin or fat (universal)
	TypeScript    // text starting with a "#!" shebang line
	TypeJavaClass // Java class file
	// Archives.
	TypeZip   // zip, not one of the kinds below
	TypeOOXML // Office Open XML document (a zip)
	TypeJAR   // Java archive (a zip)
	TypeAPK   // Android package (a zip)
	TypeGzip
	TypeBzip2
	TypeXZ
	Type7z
	TypeRAR
	TypeTar
	TypeCAB
	// Documents.
	TypePDF
	TypeOLE2 // legacy Office documents, MSI
	TypeRTF
	// Not scanned by default.
	TypeImage
	TypeAudio
	TypeVideo
	TypeFont
	TypeText // HTML, CSS, JavaScript, JSON, XML and other text
)

var typeNames = [...]string{
	"unknown", "pe", "elf", "macho", "script", "java-class",
	"zip", "ooxml", "jar", "apk", "gzip", "bzip2", "xz", "7z", "rar", "tar", "cab",
	"pdf", "ole2", "rtf",
	"image", "audio", "video", "font", "text",
}

func (t Type) String() string {
	if int(t) < len(typeNames) {
		return typeNames[t]
	}
	return fmt.Sprintf("Type(%d)", uint8(t))
}

// MarshalText writes the type's name.
func (t Type) MarshalText() ([]byte, error) { return []byte(t.String()), nil }

// Executable reports whether t is machine code or a script.
func (t Type) Executable() bool { return t >= TypePE && t <= TypeJavaClass }

// Archive reports whether t is an archive or compressed file.
func (t Type) Archive() bool { return t >= TypeZip && t <= TypeCAB }

// IsZip reports whether t is a zip container (zip, OOXML, JAR, APK).
func (t Type) IsZip() bool { return t >= TypeZip && t <= TypeAPK }

// Scannable reports whether bodies of type t are scanned by default:
// executables, archives and documents.
func (t Type) Scannable() bool { return t >= TypePE && t <= TypeRTF }

// HeadSize is how many leading bytes Classify needs to see every magic it
// knows (tar's is at offset 257). Fewer bytes still work; some types are then
// missed.
const HeadSize = 512

// Sniff returns the type of a body from its first bytes (up to HeadSize).
// It does not allocate.
func Sniff(head []byte) Type {
	h := head
	if len(h) > HeadSize {
		h = h[:HeadSize]
	}
	if len(h) < 2 {
		return TypeUnknown
	}
	switch {
	case h[0] == 'M' && h[1] == 'Z':
		return TypePE
	case h[0] == '#' && h[1] == '!':
		return TypeScript
	case h[0] == 0x1f && h[1] == 0x8b:
		return TypeGzip
	case bytes.HasPrefix(h, []byte("PK\x03\x04")):
		return zipKind(h)
	case bytes.HasPrefix(h, []byte("PK\x05\x06")), bytes.HasPrefix(h, []byte("PK\x07\x08")):
		return TypeZip
	case bytes.HasPrefix(h, []byte("\x7fELF")):
		return TypeELF
	case bytes.HasPrefix(h, []byte("%PDF-")):
		return TypePDF
	case bytes.HasPrefix(h, []byte("\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1")):
		return TypeOLE2
	case bytes.HasPrefix(h, []byte("7z\xbc\xaf\x27\x1c")):
		return Type7z
	case bytes.HasPrefix(h, []byte("Rar!\x1a\x07")):
		return TypeRAR
	case bytes.HasPrefix(h, []byte("BZh")):
		return TypeBzip2
	case bytes.HasPrefix(h, []byte("\xfd7zXZ\x00")):
		return TypeXZ
	case bytes.HasPrefix(h, []byte("MSCF\x00\x00\x00\x00")):
		return TypeCAB
	case bytes.HasPrefix(h, []byte(`{\rtf`)):
		return TypeRTF
	}
	if len(h) >= 8 {
		switch binary.BigEndian.Uint32(h) {
		case 0xfeedface, 0xfeedfacf, 0xcefaedfe, 0xcffaedfe:
			return TypeMachO
		case 0xcafebabe, 0xcafebabf:
			// Fat Mach-O and Java class files share the magic; a fat
			// header's next word is a small architecture count, a class
			// file's is its version (45 and up in the low half).
			if n := binary.BigEndian.Uint32(h[4:]); n > 0 && n < 45 {
				return TypeMachO
			}
			return TypeJavaClass
		}
	}
	if len(h) >= 262 && bytes.Equal(h[257:262], []byte("ustar")) {
		return TypeTar
	}
	if t := mediaType(h); t != TypeUnknown {
		return t
	}
	// A PDF's header may follow some junk within its first 1024 bytes.
	if bytes.Contains(h, []byte("%PDF-")) {
		return TypePDF
	}
	if looksText(h) {
		return TypeText
	}
	return TypeUnknown
}

// zipKind tells OOXML, JAR and APK apart from plain zips by the first
// member's name (h starts with a local file header).
func zipKind(h []byte) Type {
	if len(h) < 30 {
		return TypeZip
	}
	n := int(binary.LittleEndian.Uint16(h[26:]))
	if 30+n > len(h) {
		n = len(h) - 30
	}
	name := h[30 : 30+n]
	switch {
	case bytes.Equal(name, []byte("[Content_Types].xml")), bytes.HasPrefix(name, []byte("word/")),
		bytes.HasPrefix(name, []byte("xl/")), bytes.HasPrefix(name, []byte("ppt/")), bytes.HasPrefix(name, []byte("_rels/")):
		return TypeOOXML
	case bytes.Equal(name, []byte("AndroidManifest.xml")), bytes.Equal(name, []byte("classes.dex")):
		return TypeAPK
	case bytes.HasPrefix(name, []byte("META-INF/")):
		return TypeJAR
	}
	return TypeZip
}

func mediaType(h []byte) Type {
	switch {
	case bytes.HasPrefix(h, []byte("\x89PNG\r\n\x1a\n")), bytes.HasPrefix(h, []byte("\xff\xd8\xff")),
		bytes.HasPrefix(h, []byte("GIF87a")), bytes.HasPrefix(h, []byte("GIF89a")),
		bytes.HasPrefix(h, []byte("BM")) && len(h) >= 14 && h[6] == 0 && h[7] == 0 && h[8] == 0 && h[9] == 0,
		bytes.HasPrefix(h, []byte("\x00\x00\x01\x00")), // ICO
		len(h) >= 12 && bytes.HasPrefix(h, []byte("RIFF")) && bytes.Equal(h[8:12], []byte("WEBP")),
		len(h) >= 12 && bytes.Equal(h[4:12], []byte("ftypavif")), len(h) >= 12 && bytes.Equal(h[4:12], []byte("ftypheic")):
		return TypeImage
	case len(h) >= 8 && bytes.Equal(h[4:8], []byte("ftyp")), bytes.HasPrefix(h, []byte("\x1a\x45\xdf\xa3")),
		len(h) >= 12 && bytes.HasPrefix(h, []byte("RIFF")) && bytes.Equal(h[8:12], []byte("AVI ")),
		bytes.HasPrefix(h, []byte("FLV")):
		return TypeVideo
	case bytes.HasPrefix(h, []byte("ID3")), bytes.HasPrefix(h, []byte("OggS")), bytes.HasPrefix(h, []byte("fLaC")),
		len(h) >= 12 && bytes.HasPrefix(h, []byte("RIFF")) && bytes.Equal(h[8:12], []byte("WAVE")),
		len(h) >= 3 && h[0] == 0xff && h[1]&0xe0 == 0xe0 && h[1]&0x06 != 0 && h[1] != 0xfe && h[2]&0xf0 != 0xf0: // MPEG audio frame
		return TypeAudio
	case bytes.HasPrefix(h, []byte("wOFF")), bytes.HasPrefix(h, []byte("wOF2")), bytes.HasPrefix(h, []byte("OTTO")),
		bytes.HasPrefix(h, []byte("\x00\x01\x00\x00\x00")):
		return TypeFont
	}
	return TypeUnknown
}

// looksText reports whether h has no control bytes other than whitespace
// (UTF-8 and its BOMs pass; UTF-16 does not).
func looksText(h []byte) bool {
	for _, c := range h {
		if c < 0x20 && c != '\t' && c != '\n' && c != '\r' && c != '\f' && c != 0x1b {
			return false
		}
	}
	return true
}

// riskyExtensions are file name endings that are scanned even when the
// magic bytes are unknown: scripts and installers without a magic number.
var riskyExtensions = [...]string{
	".exe", ".dll", ".scr", ".com", ".msi", ".bat", ".cmd", ".ps1", ".vbs", ".vbe", ".wsf", ".hta",
	".jar", ".apk", ".dmg", ".iso", ".img", ".lnk", ".sh", ".docm", ".xlsm", ".pptm",
}

// riskyMIME are declared content types scanned even when the magic bytes
// are unknown.
var riskyMIME = [...]string{
	"application/x-msdownload", "application/x-dosexec", "application/vnd.microsoft.portable-executable",
	"application/x-msdos-program", "application/x-executable", "application/x-sh",
	"application/java-archive", "application/vnd.android.package-archive", "application/x-ms-installer",
	"application/x-msi", "application/hta",
}

// Classify returns the true type of a body and whether it must be scanned.
// head is the body's first bytes (HeadSize is enough; give what has arrived),
// contentType the declared Content-Type, fileName the name from
// Content-Disposition or the URL path ("" if none), size the declared length
// in bytes (-1 if unknown).
//
// The magic bytes decide: executables, archives and documents are scanned
// whatever they are called; images, audio, video, fonts and text are not,
// even when named ".exe". When the magic is unknown or the body is text, a
// risky file name extension or declared type (".exe", ".ps1", ".bat",
// application/x-msdownload...) selects the body; ".js" does not, so web
// pages' scripts stream untouched. An empty body is never scanned, nor is anything by a
// nil Scanner (scanning disabled). Classify does not
// allocate, so the not-scanned path costs nothing.
func (s *Scanner) Classify(head []byte, contentType, fileName string, size int64) (Type, bool) {
	if s == nil || size == 0 {
		return Sniff(head), false
	}
	t := Sniff(head)
	if t.Scannable() {
		return t, true
	}
	if len(head) >= len(eicar) && string(head[:len(eicar)]) == eicar {
		return t, true // the EICAR test file, whatever it is called
	}
	if t != TypeUnknown && t != TypeText {
		return t, false
	}
	return t, riskyName(fileName) || riskyType(contentType)
}

func riskyName(name string) bool {
	for _, ext := range riskyExtensions {
		if len(name) >= len(ext) && strings.EqualFold(name[len(name)-len(ext):], ext) {
			return true
		}
	}
	return false
}

func riskyType(ct string) bool {
	if i := strings.IndexByte(ct, ';'); i >= 0 {
		ct = ct[:i]
	}
	ct = strings.TrimSpace(ct)
	for _, m := range riskyMIME {
		if strings.EqualFold(ct, m) {
			return true
		}
	}
	return false
}
