package reputation

import (
	"time"

	"github.com/picket-proxy/picket/internal/enum"
)

// Kind is the class of a verdict. Kinds are ordered by severity: a larger
// Kind is more severe, and combining answers keeps the most severe.
type Kind uint8

// The verdict kinds, least severe first.
const (
	KindUnknown  Kind = iota // nothing is known
	KindClean                // known good; also suppresses local false alarms
	KindUnwanted             // adware, riskware, administrator's block list
	KindPhishing             // credential theft, fraud
	KindMalware              // malicious code or its distribution
)

var kindNames = [...]string{"unknown", "clean", "unwanted", "phishing", "malware"}

func (k Kind) String() string { return enum.Name("Kind", kindNames[:], k) }

// ParseKind is the inverse of Kind.String.
func ParseKind(s string) (Kind, error) { return enum.Parse("verdict", kindNames[:], KindUnknown, s) }

// Blocks reports whether a request with this verdict should be blocked.
func (k Kind) Blocks() bool { return k >= KindUnwanted }

// MarshalText writes the kind's name.
func (k Kind) MarshalText() ([]byte, error) { return []byte(k.String()), nil }

// UnmarshalText parses a kind's name.
func (k *Kind) UnmarshalText(b []byte) error {
	v, err := ParseKind(string(b))
	if err != nil {
		return err
	}
	*k = v
	return nil
}

// Source says who gave a verdict: the administrator's lists, a reputation
// service (embedded database or server), or the fail policy. It is the
// verdict's provenance and travels with it through the client's caches: a
// verdict answered from a cache keeps the Source it was given (Verdict.Cached
// says that a cache answered), so that whatever decides by the Source (the
// administrator's lists win over the protection table, fail = "closed"
// always blocks) decides the same on the first request and on every later
// one.
type Source uint8

// The verdict sources.
const (
	SourceNone     Source = iota // no source answered (zero Verdict, or a client with no backend)
	SourceLocal                  // administrator's allow or block list
	SourceDatabase               // the embedded database (KPSN mode without a server)
	SourceServer                 // a KSN or KPSN reputation server
	SourceFailure                // the fail-open or fail-closed policy
)

var sourceNames = [...]string{"none", "local", "database", "server", "failure"}

func (s Source) String() string { return enum.Name("Source", sourceNames[:], s) }

// MarshalText writes the source's name.
func (s Source) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// Verdict is the answer for one query.
type Verdict struct {
	Kind Kind
	// Category is a free-form class from the feed ("phishing",
	// "malware_download", "blocklist"); may be empty.
	Category string
	// ThreatName names the threat ("EICAR-Test-File"); may be empty.
	ThreatName string
	// TTL is how long the verdict may be cached; 0 means do not cache.
	TTL time.Duration
	// Source is who gave the verdict; a cached verdict keeps it.
	Source Source
	// Cached is true when the client answered from its caches rather than
	// from its lists or its backend just now (for logs; decisions never
	// depend on it).
	Cached bool
}

// Blocks reports whether the verdict's kind blocks.
func (v Verdict) Blocks() bool { return v.Kind.Blocks() }

func (v Verdict) String() string {
	s := v.Kind.String()
	if v.Category != "" {
		s += " category=" + v.Category
	}
	if v.ThreatName != "" {
		s += " threat=" + v.ThreatName
	}
	s += " source=" + v.Source.String()
	if v.Cached {
		s += " cached"
	}
	return s
}

// Worse reports whether v is more severe than w. Between equal kinds, the
// one with a threat name or category wins, so details are not lost.
func (v Verdict) Worse(w Verdict) bool {
	if v.Kind != w.Kind {
		return v.Kind > w.Kind
	}
	return w.ThreatName == "" && w.Category == "" && (v.ThreatName != "" || v.Category != "")
}
