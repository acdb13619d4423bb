package scanner

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/picket-proxy/picket/reputation"
)

// fakeEngine is an Engine judging whole bodies with a function. The real
// engines are tested against clamd and c-icap in scanner/clamd,
// scanner/icap and cmd/picket.
type fakeEngine struct {
	name    string
	tag     string
	judge   func(body []byte) (EngineResult, error)
	breakAt int // the first stream's Write fails once it has this many bytes (0: never)

	mu        sync.Mutex
	opens     int
	finishes  int
	streamed  int // bytes received by Write calls that returned before Finish was called
	finishing bool
	broken    bool
}

func (f *fakeEngine) Name() string         { return f.name }
func (f *fakeEngine) Tag() string          { return f.tag }
func (f *fakeEngine) Health() EngineHealth { return EngineHealth{Healthy: true, Kind: "fake"} }
func (f *fakeEngine) Open(m EngineMeta) EngineStream {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.opens++
	return &fakeStream{f: f}
}

type fakeStream struct {
	f    *fakeEngine
	body []byte
}

func (s *fakeStream) Write(p []byte) (int, error) {
	f := s.f
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.breakAt > 0 && !f.broken && len(s.body)+len(p) >= f.breakAt {
		f.broken = true
		return 0, errors.New("fake: connection reset")
	}
	s.body = append(s.body, p...)
	if !f.finishing {
		f.streamed += len(p)
	}
	return len(p), nil
}

func (s *fakeStream) Finish(ctx context.Context) (EngineResult, error) {
	s.f.mu.Lock()
	s.f.finishes++
	s.f.finishing = true
	s.f.mu.Unlock()
	res, err := s.f.judge(s.body)
	res.Scanned = int64(len(s.body))
	return res, err
}

func (s *fakeStream) Close() error { return nil }

// detects returns a judge finding threat in bodies containing marker.
func detects(marker, threat string) func([]byte) (EngineResult, error) {
	return func(b []byte) (EngineResult, error) {
		if bytes.Contains(b, []byte(marker)) {
			return EngineResult{Threat: threat}, nil
		}
		return EngineResult{}, nil
	}
}

func TestEngineOrder(t *testing.T) {
	bad := append(pe(4096), "ENGINE-MARKER"...)
	md5hex := func(b []byte) string { s := md5.Sum(b); return hex.EncodeToString(s[:]) }
	sigs := sigsFrom(t, nil, KnownGood, fmt.Sprintf("%s:%d:Good.File\n", md5hex(bad), len(bad)))
	for _, tc := range []struct {
		name      string
		data      []byte
		sigs      *Signatures
		rep       reputation.Kind
		verdict   Verdict
		threat    string
		source    Source
		asked     bool // the engine was asked for a verdict
		falseAlrm bool
	}{
		{"engine detection", bad, nil, 0, VerdictMalicious, "Fake.Engine.Hit", SourceEngine, true, false},
		{"clean", pe(4096), nil, 0, VerdictUnknown, "", SourceNone, true, false},
		{"local EICAR first: the engine is not waited for", append(eicarFile, "ENGINE-MARKER"...)[:len(eicarFile)], nil, 0, VerdictMalicious, EICARName, SourceEICAR, false, false},
		{"known good first: the engine is not asked", bad, sigs, 0, VerdictClean, "", SourceKnownGood, false, false},
		{"reputation clean overrides an engine detection", bad, nil, reputation.KindClean, VerdictClean, "Fake.Engine.Hit", SourceReputation, true, true},
		{"reputation malware after a clean engine", pe(4096), nil, reputation.KindMalware, VerdictMalicious, "Rep.Bad", SourceReputation, true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := &fakeEngine{name: "fake", judge: detects("ENGINE-MARKER", "Fake.Engine.Hit")}
			rep := &fakeReputation{lookup: func(reputation.Query) reputation.Verdict {
				return reputation.Verdict{Kind: tc.rep, ThreatName: map[reputation.Kind]string{reputation.KindMalware: "Rep.Bad"}[tc.rep]}
			}}
			s := newTestScanner(t, Config{Engines: []EngineConfig{{Engine: e}}, Signatures: tc.sigs, Reputation: rep})
			sc := s.NewScan(Meta{Size: int64(len(tc.data))})
			defer sc.Close()
			for i := 0; i < len(tc.data); i += 1000 { // as it arrives
				sc.Write(tc.data[i:min(i+1000, len(tc.data))])
			}
			res, err := sc.Finish(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if res.Verdict != tc.verdict || res.Threat != tc.threat || res.Source != tc.source || res.FalseAlarm != tc.falseAlrm {
				t.Fatalf("got %s %q source %s false alarm %v, want %s %q %s %v", res.Verdict, res.Threat, res.Source, res.FalseAlarm,
					tc.verdict, tc.threat, tc.source, tc.falseAlrm)
			}
			if (e.finishes > 0) != tc.asked {
				t.Errorf("engine asked %d times, want asked=%v", e.finishes, tc.asked)
			}
			if e.streamed != len(tc.data) {
				t.Errorf("the engine got %d bytes while the body arrived, want all %d (streamed, not sent after the end)", e.streamed, len(tc.data))
			}
			if tc.threat == "Fake.Engine.Hit" && res.Engine != "fake" {
				t.Errorf("Engine %q, want fake", res.Engine)
			}
		})
	}
}

func TestEngineCache(t *testing.T) {
	e := &fakeEngine{name: "fake", tag: "v1", judge: detects("MARK", "Hit")}
	s := newTestScanner(t, Config{Engines: []EngineConfig{{Engine: e}}})
	now := time.Now()
	s.cache.now = func() time.Time { return now }
	body := append(pe(2000), "MARK"...)
	for i := range 3 {
		if res := scanBytes(t, s, body, Meta{Size: -1}); res.Threat != "Hit" {
			t.Fatalf("scan %d: got %+v", i, res)
		}
	}
	st := s.Stats().Engines[0]
	if e.finishes != 1 || st.CacheHits != 2 || st.Scans != 1 || st.Detections != 1 || st.Latency.Count != 1 {
		t.Fatalf("asked %d times, stats %+v; want asked once, 2 cache hits", e.finishes, st)
	}
	e.tag = "v2" // new signatures: cached verdicts are stale
	scanBytes(t, s, body, Meta{Size: -1})
	now = now.Add(DefaultCacheTTL + time.Second) // and they expire
	scanBytes(t, s, body, Meta{Size: -1})
	if e.finishes != 3 {
		t.Errorf("asked %d times, want 3 (after a tag change and after the TTL)", e.finishes)
	}
}

func TestEngineFailPolicy(t *testing.T) {
	down := errors.New("fake: connection refused")
	for _, closed := range []bool{false, true} {
		t.Run(fmt.Sprintf("fail closed %v", closed), func(t *testing.T) {
			e := &fakeEngine{name: "fake", judge: func([]byte) (EngineResult, error) { return EngineResult{}, down }}
			s := newTestScanner(t, Config{Engines: []EngineConfig{{Engine: e, FailClosed: closed}}})
			sc := s.NewScan(Meta{Size: -1})
			defer sc.Close()
			sc.Write(pe(3000))
			res, err := sc.Finish(context.Background())
			if closed {
				var ee *EngineError
				if !errors.As(err, &ee) || ee.Engine != "fake" || !errors.Is(err, down) || !IsEngineError(err) || res.Engine != "fake" {
					t.Fatalf("got %+v, %v; want an EngineError wrapping the failure", res, err)
				}
				return
			}
			if err != nil || res.Blocked || !strings.Contains(res.Incomplete, "fake could not scan (fail open)") {
				t.Fatalf("got %+v, %v; want a pass noting the failure", res, err)
			}
			if st := s.Stats().Engines[0]; st.Errors != 1 || st.Scans != 0 {
				t.Errorf("stats %+v, want 1 error", st)
			}
		})
	}
}

// TestEngineRetry: a stream that breaks on the way (a stale connection) is
// retried once from the scan's own copy of the body.
func TestEngineRetry(t *testing.T) {
	e := &fakeEngine{name: "fake", breakAt: 5000, judge: detects("MARK", "Hit")}
	s := newTestScanner(t, Config{Engines: []EngineConfig{{Engine: e}}})
	body := append(pe(20000), "MARK"...)
	res := scanBytes(t, s, body, Meta{Size: -1})
	if res.Threat != "Hit" || e.opens != 2 {
		t.Fatalf("got %+v with %d streams, want Hit from a second stream", res, e.opens)
	}
}

// TestEngineEncoded: an encoded body reaches the engines decoded, after it
// has arrived.
func TestEngineEncoded(t *testing.T) {
	e := &fakeEngine{name: "fake", judge: detects("MARK", "Hit")}
	s := newTestScanner(t, Config{Engines: []EngineConfig{{Engine: e}}})
	plain := append(pe(3000), "MARK"...)
	sc := s.NewScan(Meta{ContentEncoding: "gzip", Size: -1})
	defer sc.Close()
	sc.Write(gzipOf(t, "", plain))
	if e.opens != 0 {
		t.Fatalf("%d streams opened while the encoded body arrived, want none", e.opens)
	}
	res, err := sc.Finish(context.Background())
	if err != nil || res.Threat != "Hit" || e.opens != 1 {
		t.Fatalf("got %+v, %v (%d streams), want Hit from the decoded file", res, err, e.opens)
	}
}

func TestEnginePartial(t *testing.T) {
	partial := func([]byte) (EngineResult, error) { return EngineResult{Partial: true}, nil }
	for _, block := range []bool{false, true} {
		e := &fakeEngine{name: "fake", judge: partial}
		s := newTestScanner(t, Config{Engines: []EngineConfig{{Engine: e}}, BlockOversize: block})
		res := scanBytes(t, s, pe(5000), Meta{Size: -1})
		if !res.Partial || res.Blocked != block || !strings.Contains(res.Incomplete, "scanned only the first") {
			t.Errorf("BlockOversize %v: got %+v, want partial, blocked %v", block, res, block)
		}
	}
}
