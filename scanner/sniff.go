package scanner

import (
	"bytes"
	"encoding/binary"
	"strings"

	"github.com/picket-proxy/picket/internal/enum"
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

func (t Type) String() string { return enum.Name("Type", typeNames[:], t) }

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

// Sniff returns the type of a body from its first bytes (up to HeadSize):
// the first of signatures that matches, else a PDF header after some junk,
// else text or unknown. It does not allocate.
func Sniff(head []byte) Type {
	h := head[:min(len(head), HeadSize)]
	if len(h) < 2 {
		return TypeUnknown
	}
	for _, i := range candidates[h[0]] {
		if t := signatures[i].match(h); t != TypeUnknown {
			return t
		}
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

// signature is a type's magic: bytes at an offset of a body's head, and a
// second part for the few types that need one.
type signature struct {
	typ   Type
	magic magicAt
	also  magicAt // none when empty
	min   int     // the head is at least this long (beyond the magic's own end)
	// kind, when set, tells the type from a head that has the magic
	// (TypeUnknown: not a match after all).
	kind func(h []byte) Type
}

// magicAt is bytes at an offset.
type magicAt struct {
	off   int
	bytes string
}

// at is magic at offset 0.
func at(magic string) magicAt { return magicAt{0, magic} }

// in reports whether h holds the magic.
func (m magicAt) in(h []byte) bool {
	end := m.off + len(m.bytes)
	return end <= len(h) && string(h[m.off:end]) == m.bytes
}

// match returns the signature's type when h has its magic, else
// TypeUnknown.
func (s *signature) match(h []byte) Type {
	if len(h) < s.min || !s.magic.in(h) || s.also.bytes != "" && !s.also.in(h) {
		return TypeUnknown
	}
	if s.kind != nil {
		return s.kind(h)
	}
	return s.typ
}

// signatures are the magics Sniff knows, in the order it tries them: the
// first that matches decides. Executables, archives and documents come
// before media, fonts and text.
var signatures = [...]signature{
	{typ: TypePE, magic: at("MZ")},
	{typ: TypeScript, magic: at("#!")},
	{typ: TypeGzip, magic: at("\x1f\x8b")},
	{magic: at("PK\x03\x04"), kind: zipKind},
	{typ: TypeZip, magic: at("PK\x05\x06")},
	{typ: TypeZip, magic: at("PK\x07\x08")},
	{typ: TypeELF, magic: at("\x7fELF")},
	{typ: TypePDF, magic: at("%PDF-")},
	{typ: TypeOLE2, magic: at("\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1")},
	{typ: Type7z, magic: at("7z\xbc\xaf\x27\x1c")},
	{typ: TypeRAR, magic: at("Rar!\x1a\x07")},
	{typ: TypeBzip2, magic: at("BZh")},
	{typ: TypeXZ, magic: at("\xfd7zXZ\x00")},
	{typ: TypeCAB, magic: at("MSCF\x00\x00\x00\x00")},
	{typ: TypeRTF, magic: at(`{\rtf`)},
	{typ: TypeMachO, magic: at("\xfe\xed\xfa\xce"), min: 8},
	{typ: TypeMachO, magic: at("\xfe\xed\xfa\xcf"), min: 8},
	{typ: TypeMachO, magic: at("\xce\xfa\xed\xfe"), min: 8},
	{typ: TypeMachO, magic: at("\xcf\xfa\xed\xfe"), min: 8},
	{magic: at("\xca\xfe\xba\xbe"), min: 8, kind: fatOrClass},
	{magic: at("\xca\xfe\xba\xbf"), min: 8, kind: fatOrClass},
	{typ: TypeTar, magic: magicAt{257, "ustar"}},

	{typ: TypeImage, magic: at("\x89PNG\r\n\x1a\n")},
	{typ: TypeImage, magic: at("\xff\xd8\xff")},
	{typ: TypeImage, magic: at("GIF87a")},
	{typ: TypeImage, magic: at("GIF89a")},
	{typ: TypeImage, magic: at("BM"), also: magicAt{6, "\x00\x00\x00\x00"}, min: 14},
	{typ: TypeImage, magic: at("\x00\x00\x01\x00")}, // ICO
	{typ: TypeImage, magic: at("RIFF"), also: magicAt{8, "WEBP"}},
	{typ: TypeImage, magic: magicAt{4, "ftypavif"}},
	{typ: TypeImage, magic: magicAt{4, "ftypheic"}},
	{typ: TypeVideo, magic: magicAt{4, "ftyp"}},
	{typ: TypeVideo, magic: at("\x1a\x45\xdf\xa3")},
	{typ: TypeVideo, magic: at("RIFF"), also: magicAt{8, "AVI "}},
	{typ: TypeVideo, magic: at("FLV")},
	{typ: TypeAudio, magic: at("ID3")},
	{typ: TypeAudio, magic: at("OggS")},
	{typ: TypeAudio, magic: at("fLaC")},
	{typ: TypeAudio, magic: at("RIFF"), also: magicAt{8, "WAVE"}},
	{magic: at("\xff"), min: 3, kind: mpegAudio},
	{typ: TypeFont, magic: at("wOFF")},
	{typ: TypeFont, magic: at("wOF2")},
	{typ: TypeFont, magic: at("OTTO")},
	{typ: TypeFont, magic: at("\x00\x01\x00\x00\x00")},
}

// candidates lists, for each first byte of a head, the signatures that can
// match it, in their order: those whose magic starts with that byte, and
// those whose magic starts further in. Sniff tries a few signatures instead
// of all of them.
var candidates = func() (c [256][]uint8) {
	for i, sig := range signatures {
		if m := sig.magic; m.off == 0 {
			c[m.bytes[0]] = append(c[m.bytes[0]], uint8(i))
			continue
		}
		for b := range c {
			c[b] = append(c[b], uint8(i))
		}
	}
	return c
}()

// fatOrClass tells a fat Mach-O from a Java class file, which share their
// magic: a fat header's next word is a small architecture count, a class
// file's is its version (45 and up in the low half).
func fatOrClass(h []byte) Type {
	if n := binary.BigEndian.Uint32(h[4:]); n > 0 && n < 45 {
		return TypeMachO
	}
	return TypeJavaClass
}

// mpegAudio recognises an MPEG audio frame header (h starts with 0xff).
func mpegAudio(h []byte) Type {
	if h[1]&0xe0 == 0xe0 && h[1]&0x06 != 0 && h[1] != 0xfe && h[2]&0xf0 != 0xf0 {
		return TypeAudio
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

// MoreHead reports whether Classify needs more of a body than head, its
// first bytes, to decide: head is a strict prefix of the EICAR test file,
// which Classify recognises only by its 68 characters. (Tar's magic, at
// offset 257, is not waited for.)
func MoreHead(head []byte) bool {
	return len(head) < len(eicar) && string(head) == eicar[:len(head)]
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
