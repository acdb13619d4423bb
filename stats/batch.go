package stats

import (
	"encoding/json"
	"time"
)

// Schema is the version of the Batch format.
const Schema = 1

// Batch is everything a statistics report can contain: the one definition of
// what participation sends. docs/privacy.md documents every field (a test
// checks it); adding a field here means adding it there.
type Batch struct {
	// Schema is the format version, Schema.
	Schema int `json:"schema"`
	// Installation is the random installation identifier (32 hex digits),
	// rotatable by the administrator; it is not derived from anything.
	Installation string `json:"installation"`
	// Version is the Picket version.
	Version string `json:"version"`
	// Seq numbers the batches of an installation, from 1.
	Seq uint64 `json:"seq"`
	// Start and End bound the interval, UTC, whole minutes.
	Start time.Time `json:"start"`
	End   time.Time `json:"end"`
	// Requests counts finished requests and tunnels by outcome.
	Requests Requests `json:"requests"`
	// Verdicts counts reputation verdicts by kind and category.
	Verdicts []VerdictCount `json:"verdicts"`
	// Blocks counts blocked requests by policy stage.
	Blocks []BlockCount `json:"blocks"`
	// Scans counts download scans by true file type and result.
	Scans []ScanCount `json:"scans"`
	// Lookups are the reputation client's counters over the interval.
	Lookups Lookups `json:"lookups"`
	// Files are the SHA-256 hashes of detected files and of unknown
	// executables, with how often they were seen.
	Files []FileCount `json:"files"`
	// URLs are the SHA-256 hashes of the lookup expressions of detected
	// URLs, with how often they were seen.
	URLs []URLCount `json:"urls"`
	// Withheld counts what minimum aggregation kept out of Files and URLs.
	Withheld Withheld `json:"withheld"`
	// Queue reports on earlier batches this installation could not deliver.
	Queue QueueReport `json:"queue"`
}

// Requests counts finished requests and tunnels by outcome.
type Requests struct {
	Total       uint64 `json:"total"`
	Tunnels     uint64 `json:"tunnels"`     // CONNECT tunnels not intercepted
	Intercepted uint64 `json:"intercepted"` // intercepted tunnels
	Blocked     uint64 `json:"blocked"`
	Warned      uint64 `json:"warned"`
	Errors      uint64 `json:"errors"` // upstream failures
}

// VerdictCount is how many requests got one verdict kind and category.
type VerdictCount struct {
	Verdict  string `json:"verdict"`  // unknown, clean, unwanted, phishing, malware
	Category string `json:"category"` // the service's category, "" or "other"
	Count    uint64 `json:"count"`
}

// BlockCount is how many requests one policy stage blocked.
type BlockCount struct {
	Stage string `json:"stage"` // bypass, access, protection, none, other
	Count uint64 `json:"count"`
}

// ScanCount is how many downloads of one type got one scan result.
type ScanCount struct {
	Type   string `json:"type"`   // the scanner's type names, or "other"
	Result string `json:"result"` // clean, malicious, unknown, bomb, oversize, error
	Count  uint64 `json:"count"`
}

// Lookups are reputation lookup counters over the interval.
type Lookups struct {
	Total     uint64 `json:"total"`
	CacheHits uint64 `json:"cache_hits"`
	// CacheHitRatio is CacheHits/Total, 0 when Total is 0.
	CacheHitRatio float64 `json:"cache_hit_ratio"`
	// Failures are backend requests that failed or the breaker refused.
	Failures uint64 `json:"failures"`
}

// FileCount is one file hash and how often it was seen.
type FileCount struct {
	SHA256  string `json:"sha256"`  // 64 hex digits
	Verdict string `json:"verdict"` // "detected" or "unknown"
	Type    string `json:"type"`
	// Threat is a detected file's threat name (see threatName); "" for
	// unknown files.
	Threat string `json:"threat,omitempty"`
	Count  uint64 `json:"count"`
}

// URLCount is one hashed URL expression of a detection.
type URLCount struct {
	// SHA256 is the hex SHA-256 of the canonical expression host/path
	// (without scheme, query or fragment), as in the lookup protocol.
	SHA256   string `json:"sha256"`
	Verdict  string `json:"verdict"` // unwanted, phishing, malware
	Category string `json:"category"`
	Count    uint64 `json:"count"`
}

// Withheld counts entries left out by minimum aggregation or by the caps.
type Withheld struct {
	Files uint64 `json:"files"`
	URLs  uint64 `json:"urls"`
}

// QueueReport tells the cloud how many batches were lost before this one.
type QueueReport struct {
	// Dropped batches: the queue was full and the oldest went.
	Dropped uint64 `json:"dropped"`
}

// Encode returns the batch as sent (before gzip): indented JSON with a final
// newline, the same bytes preview prints.
func (b *Batch) Encode() ([]byte, error) {
	out, err := json.MarshalIndent(b, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(out, '\n'), nil
}
