package admin

import (
	"sync"
	"time"

	"github.com/picket-proxy/picket/proxy"
)

// Point is one minute of the console's charts. Time is the minute's start
// in seconds since the Unix epoch; the counts are of requests that finished
// in that minute.
type Point struct {
	Time     int64  `json:"t"`
	Requests uint64 `json:"requests"` // requests and tunnels, every action
	Blocks   uint64 `json:"blocks"`
	Warns    uint64 `json:"warns"`
	Errors   uint64 `json:"errors"`
	Scans    uint64 `json:"scans"`
	Threats  uint64 `json:"threats"` // scans found malicious or a bomb
}

// Totals are counts since start, for the console's verdict and action mix.
type Totals struct {
	Actions  map[string]uint64 `json:"actions"`
	Verdicts map[string]uint64 `json:"verdicts"`
}

// series keeps one Point per minute for the last len(slots) minutes (the
// chart's calendar minutes), one Point per second for the last 60 seconds
// (the console's "last minute" tiles: a rolling window, so that a burst is
// counted at once, not only when its calendar minute is over), and the
// totals, with bounded keys (the metrics' label values).
type series struct {
	now func() time.Time

	mu       sync.Mutex
	slots    []Point
	seconds  [windowSeconds]Point // Time is the second, not its minute
	actions  []uint64             // by actionLabels
	verdicts []uint64             // by kindLabels
}

// windowSeconds is the length of the rolling "last minute" window.
const windowSeconds = 60

func newSeries(minutes int, now func() time.Time) *series {
	return &series{now: now, slots: make([]Point, minutes),
		actions: make([]uint64, len(actionLabels)), verdicts: make([]uint64, len(kindLabels))}
}

// add counts e in the minute and the second it finished (Time + Duration),
// or in the current ones when that is unknown or outside the rings.
func (s *series) add(e *proxy.Event) {
	nowSec := s.now().Unix()
	sec := nowSec
	if !e.Time.IsZero() {
		if t := e.Time.Add(e.Duration).Unix(); t <= nowSec && t/60 > nowSec/60-int64(len(s.slots)) {
			sec = t
		}
	}
	min := sec / 60
	s.mu.Lock()
	defer s.mu.Unlock()
	p := &s.slots[min%int64(len(s.slots))]
	if p.Time != min*60 {
		*p = Point{Time: min * 60}
	}
	p.count(e)
	if sec > nowSec-windowSeconds {
		q := &s.seconds[sec%windowSeconds]
		if q.Time != sec {
			*q = Point{Time: sec}
		}
		q.count(e)
	}
	s.actions[label(actionLabels, e.Action)]++
	if e.Verdict != "" {
		s.verdicts[label(kindLabels, e.Verdict)]++
	}
}

// lastMinute counts the requests that finished in the last 60 seconds (the
// current second included); its Time is the first second of that window.
func (s *series) lastMinute() Point {
	nowSec := s.now().Unix()
	out := Point{Time: nowSec - windowSeconds + 1}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, q := range s.seconds {
		if q.Time > nowSec-windowSeconds && q.Time <= nowSec {
			out.Requests += q.Requests
			out.Blocks += q.Blocks
			out.Warns += q.Warns
			out.Errors += q.Errors
			out.Scans += q.Scans
			out.Threats += q.Threats
		}
	}
	return out
}

// count adds one finished request to p.
func (p *Point) count(e *proxy.Event) {
	p.Requests++
	switch e.Action {
	case "block":
		p.Blocks++
	case "warn":
		p.Warns++
	case "error":
		p.Errors++
	}
	for _, sc := range []*proxy.ScanEvent{e.Scan, e.Upload} { // downloads and uploads alike
		if sc != nil {
			p.Scans++
			if sc.Result == "malicious" || sc.Result == "bomb" {
				p.Threats++
			}
		}
	}
}

// points returns the last minutes Points, oldest first, the current
// (partial) minute last; minutes without requests are zero.
func (s *series) points(minutes int) []Point {
	minutes = min(minutes, len(s.slots))
	now := s.now().Unix() / 60
	out := make([]Point, 0, minutes)
	s.mu.Lock()
	defer s.mu.Unlock()
	for m := now - int64(minutes) + 1; m <= now; m++ {
		p := s.slots[((m%int64(len(s.slots)))+int64(len(s.slots)))%int64(len(s.slots))]
		if p.Time != m*60 {
			p = Point{Time: m * 60}
		}
		out = append(out, p)
	}
	return out
}

func (s *series) totals() Totals {
	t := Totals{Actions: map[string]uint64{}, Verdicts: map[string]uint64{}}
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, n := range s.actions {
		if n > 0 {
			t.Actions[actionLabels[i]] = n
		}
	}
	for i, n := range s.verdicts {
		if n > 0 {
			t.Verdicts[kindLabels[i]] = n
		}
	}
	return t
}
