package stats

import (
	"net/netip"
	"strings"
)

// Event is what statistics take of one finished request or tunnel. It has
// no field for user names, cookies, headers or bodies; URL is read only for
// detections (and then only hashed, without its query), and Client only in
// memory, keyed with a per-process secret, to count distinct clients for
// minimum aggregation: neither is ever stored or sent.
type Event struct {
	Action   string // allow, block, warn, tunnel, intercept, error
	Verdict  string // reputation verdict kind, "" if none
	Category string
	Source   string // who gave the verdict: local, database, server, failure
	Stage    string // policy stage that decided
	Tunnel   bool
	URL      string
	Client   netip.Addr
	// Scan is the download scan's outcome, nil when nothing was scanned.
	Scan *Scan
}

// Scan is what statistics take of one download scan.
type Scan struct {
	Type       string // the scanner's true type: pe, zip, pdf, ...
	Result     string // clean, malicious, unknown, bomb, oversize, error
	SHA256     []byte
	Size       int64 // bytes
	Executable bool
	// Threat is the detection's name and Source what found it (eicar,
	// signature, engine, reputation); statistics send the name of a
	// detected file only in the shape threatName allows.
	Threat, Source string
}

// Sample describes a scanned file the proxy could offer as a sample.
type Sample struct {
	SHA256 []byte
	Size   int64  // bytes of the whole file
	Type   string // the scanner's true type
	Result string // the scan result; only "unknown" files are sampled
	// Active is the scanner's active content ("executable",
	// "macros,ole-object", ...); only files with some are sampled.
	Active string
	// Client is the address that downloaded the file; it is only turned
	// into a keyed digest, in memory, to count distinct clients.
	Client netip.Addr
}

// Fixed vocabularies: anything else is sent as "other", so no free text
// (rule names, administrator categories with odd spellings) leaves the site.
var (
	verdictNames = set("unknown", "clean", "unwanted", "phishing", "malware")
	stageNames   = set("none", "bypass", "access", "protection")
	resultNames  = set("clean", "malicious", "unknown", "bomb", "oversize", "error")
	typeNames    = set("unknown", "pe", "elf", "macho", "script", "java-class",
		"zip", "ooxml", "jar", "apk", "gzip", "bzip2", "xz", "7z", "rar", "tar", "cab",
		"pdf", "ole2", "rtf", "image", "audio", "video", "font", "text")
	// activeNames are the scanner's kinds of active content
	// (scanner.ActiveNames; a test keeps the two in step).
	activeNames = set("executable", "script", "archived-executable", "macros", "ole-object", "external-template",
		"rtf-object", "pdf-javascript", "pdf-openaction", "pdf-launch", "pdf-embedded-file", "pdf-richmedia")
	// partialTypes are the executables whose first bytes may be sent
	// alone (samples = "full-or-part"): their header identifies them.
	partialTypes = set("pe", "elf", "macho", "script", "java-class")
)

// activeReason keeps the kinds of active content the vocabulary knows, in
// their order; "" if none.
func activeReason(s string) string {
	if s == "" {
		return ""
	}
	kept := make([]string, 0, 2)
	for _, k := range strings.Split(s, ",") {
		if activeNames[k] {
			kept = append(kept, k)
		}
	}
	return strings.Join(kept, ",")
}

func set(names ...string) map[string]bool {
	m := make(map[string]bool, len(names))
	for _, n := range names {
		m[n] = true
	}
	return m
}

func oneOf(vocab map[string]bool, s string) string {
	if vocab[s] {
		return s
	}
	return "other"
}

// category keeps a service category if it is a short plain token
// ("phishing", "malware-distribution"), else "other".
func category(s string) string {
	if s == "" {
		return ""
	}
	if len(s) > 32 {
		return "other"
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return "other"
		}
	}
	return s
}

// threatName is what a batch says of a detection's name: the name an
// anti-virus engine, the EICAR check or the reputation service gave it
// (they name malware, never people or sites), if it has the shape of a
// signature name (at most 64 letters, digits and . _ - : /); "local" for
// the administrator's own signatures (Picket's hash lists, and clamd's
// ".UNOFFICIAL" databases), whose names are the site's own words; "other"
// for anything else.
func threatName(source, name string) string {
	switch {
	case name == "":
		return ""
	case source == "signature" || strings.HasSuffix(name, ".UNOFFICIAL"):
		return "local"
	case len(name) > 64:
		return "other"
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("._-:/", c) >= 0) {
			return "other"
		}
	}
	return name
}

// detection reports whether a verdict kind is one the cloud learns from:
// the service's own blocking verdicts, not the administrator's lists.
func detection(verdict, source string) bool {
	switch verdict {
	case "unwanted", "phishing", "malware":
		return source != "local"
	}
	return false
}
