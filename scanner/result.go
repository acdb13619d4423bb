package scanner

import (
	"time"

	"github.com/picket-proxy/picket/internal/enum"
	"github.com/picket-proxy/picket/reputation"
)

// Verdict is the scanner's judgement of a body.
type Verdict uint8

// The verdicts.
const (
	VerdictUnknown   Verdict = iota // nothing found and nothing known: passes
	VerdictClean                    // known good (.fp or reputation): passes
	VerdictMalicious                // a signature, EICAR or the reputation service: blocks
	VerdictBomb                     // an archive over the limits: blocks unless PassArchiveBombs
	VerdictOversize                 // over MaxSize, not scanned: passes unless BlockOversize
)

var verdictNames = [...]string{"unknown", "clean", "malicious", "bomb", "oversize"}

func (v Verdict) String() string { return enum.Name("Verdict", verdictNames[:], v) }

// MarshalText writes the verdict's name.
func (v Verdict) MarshalText() ([]byte, error) { return []byte(v.String()), nil }

// Source says what decided a Result.
type Source uint8

// The sources.
const (
	SourceNone       Source = iota // nothing matched
	SourceEICAR                    // the EICAR test file
	SourceSignature                // a .hdb/.hsb signature
	SourceKnownGood                // a .fp entry
	SourceReputation               // the reputation service
	SourceLimits                   // size or archive limits
	SourceEngine                   // an external engine (clamd, ICAP)
)

var sourceNames = [...]string{"none", "eicar", "signature", "known-good", "reputation", "limits", "engine"}

func (s Source) String() string { return enum.Name("Source", sourceNames[:], s) }

// MarshalText writes the source's name.
func (s Source) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// Result is the outcome of a scan.
type Result struct {
	Verdict Verdict `json:"verdict"`
	// Blocked says whether the body must not be delivered: malicious
	// always, bombs and oversize by configuration.
	Blocked bool `json:"blocked"`
	// Threat names what was found ("EICAR-Test-File"). With FalseAlarm
	// set, it is the local detection that was overridden.
	Threat string `json:"threat,omitempty"`
	// Member is the path of the detection inside archives, members joined
	// by "/" ("" for the file itself).
	Member string `json:"member,omitempty"`
	// Source is what decided the verdict.
	Source Source `json:"source"`
	// Engine names the external engine that found the threat (Source
	// engine), or that failed with the fail-closed policy.
	Engine string `json:"engine,omitempty"`
	// Partial says an engine saw only the first part of the body (clamd's
	// StreamMaxLength); nothing was found in that part. Such a body is
	// blocked only when oversize bodies are (BlockOversize).
	Partial bool `json:"partial,omitempty"`
	// FalseAlarm is set when a local detection was overridden by a .fp entry
	// or a reputation verdict of clean; the body passes and it is logged.
	FalseAlarm bool `json:"false_alarm,omitempty"`
	// Reason explains bombs and oversize bodies.
	Reason string `json:"reason,omitempty"`
	// Incomplete, if not empty, says why parts of the body were not
	// inspected (nesting beyond MaxDepth, encrypted or corrupt members, an
	// unknown Content-Encoding). It does not change the verdict.
	Incomplete string `json:"incomplete,omitempty"`
	// Type is the true type of the (decoded) body.
	Type Type `json:"type"`
	// Active is the active content the file carries (executable code,
	// macros, embedded objects, PDF actions...); zero for a plain document
	// or media. It is not a verdict: it says what a file can do, not that
	// it is malicious.
	Active Active `json:"active_content,omitempty"`
	// Sums are the digests of the (decoded) body; zero when oversize.
	Sums Sums `json:"hashes"`
	// Size is the body's size in bytes after Content-Encoding decoding.
	Size int64 `json:"size"`
	// Scanned is the number of bytes inspected, archive members included.
	Scanned int64 `json:"scanned"`
	// Reputation is the reputation verdict of the body's hashes (zero if
	// none was asked).
	Reputation reputation.Verdict `json:"-"`
	// Duration is how long Finish took, waiting for a slot included.
	Duration time.Duration `json:"duration_ns"`
}
