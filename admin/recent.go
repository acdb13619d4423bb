package admin

import (
	"sync"
	"time"

	"github.com/picket-proxy/picket/proxy"
)

// Decision is one finished request as GET /api/v1/decisions shows it. The
// admin API is for the administrator only, so the URL and client address
// are kept (the URL without its query unless log.access_log_query is on).
type Decision struct {
	Time       time.Time `json:"time"`
	DurationMS float64   `json:"duration_ms"`
	Client     string    `json:"client"`
	Method     string    `json:"method"`
	URL        string    `json:"url"`
	Host       string    `json:"host"`
	Status     int       `json:"status"`
	Action     string    `json:"action"`
	Verdict    string    `json:"verdict,omitempty"`
	Category   string    `json:"category,omitempty"`
	Source     string    `json:"source,omitempty"`
	Rule       string    `json:"rule,omitempty"`
	Stage      string    `json:"stage,omitempty"`
	Incident   string    `json:"incident,omitempty"`
	ErrKind    string    `json:"error,omitempty"`
	BytesIn    int64     `json:"bytes_in"`
	BytesOut   int64     `json:"bytes_out"`
	Scan       *ScanInfo `json:"scan,omitempty"`
}

// ScanInfo is the scan outcome of a Decision.
type ScanInfo struct {
	Type   string `json:"type"`
	Result string `json:"result"`
	Threat string `json:"threat,omitempty"`
	// Upload says the scan was of the request's body.
	Upload bool `json:"upload,omitempty"`
}

func decisionOf(e *proxy.Event) Decision {
	d := Decision{
		Time: e.Time, DurationMS: float64(e.Duration.Microseconds()) / 1000, Method: e.Method, URL: e.URL,
		Host: e.Host, Status: e.Status, Action: e.Action, Verdict: e.Verdict, Category: e.Category,
		Source: e.Source, Rule: e.Rule, Stage: e.Stage, Incident: e.Incident, ErrKind: string(e.ErrKind),
		BytesIn: e.BytesIn, BytesOut: e.BytesOut,
	}
	if e.Client.IsValid() {
		d.Client = e.Client.String()
	}
	switch {
	case e.Scan != nil:
		d.Scan = &ScanInfo{Type: e.Scan.Type, Result: e.Scan.Result, Threat: e.Scan.Threat}
	case e.Upload != nil: // the response was not scanned: show what was sent
		d.Scan = &ScanInfo{Type: e.Upload.Type, Result: e.Upload.Result, Threat: e.Upload.Threat, Upload: true}
	}
	return d
}

// recent is the bounded ring of the last finished requests.
type recent struct {
	mu   sync.Mutex
	buf  []proxy.Event // Scan pointers are shared with the proxy, read-only
	next int           // where the next event goes
	full bool
}

func newRecent(n int) *recent { return &recent{buf: make([]proxy.Event, n)} }

func (r *recent) add(e *proxy.Event) {
	r.mu.Lock()
	r.buf[r.next] = *e
	r.next++
	if r.next == len(r.buf) {
		r.next, r.full = 0, true
	}
	r.mu.Unlock()
}

// list returns up to limit decisions, newest first, that keep says to keep.
func (r *recent) list(limit int, keep func(*proxy.Event) bool) []Decision {
	out := []Decision{}
	r.mu.Lock()
	defer r.mu.Unlock()
	n := r.next
	if r.full {
		n = len(r.buf)
	}
	for i := 0; i < n && len(out) < limit; i++ {
		e := &r.buf[(r.next-1-i+len(r.buf))%len(r.buf)]
		if keep(e) {
			out = append(out, decisionOf(e))
		}
	}
	return out
}

func (r *recent) size() int { return len(r.buf) }
