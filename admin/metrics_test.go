package admin

import (
	"fmt"
	"io"
	"math"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/picket-proxy/picket/proxy"
)

// scrape reads /metrics over a loopback listener and parses it with the
// Prometheus text parser.
func scrape(t *testing.T, s *Server) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(serve(t, s) + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("GET /metrics: got %d %s, want 200", resp.StatusCode, b)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parsing the exposition: %v", err)
	}
	return fams
}

// value sums the samples of family name whose labels include the pairs.
func value(fams map[string]*dto.MetricFamily, name string, pairs ...string) float64 {
	f, ok := fams[name]
	if !ok {
		return math.NaN()
	}
	var sum float64
next:
	for _, m := range f.GetMetric() {
		for i := 0; i+1 < len(pairs); i += 2 {
			found := false
			for _, l := range m.GetLabel() {
				if l.GetName() == pairs[i] && l.GetValue() == pairs[i+1] {
					found = true
				}
			}
			if !found {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			sum += m.GetCounter().GetValue()
		case m.Gauge != nil:
			sum += m.GetGauge().GetValue()
		case m.Histogram != nil:
			sum += float64(m.GetHistogram().GetSampleCount())
		}
	}
	return sum
}

func TestMetricsAddUp(t *testing.T) {
	s, _ := newTestServer(t, nil)
	events := workload(time.Now())
	for _, e := range events {
		s.Observe(e)
	}
	fams := scrape(t, s)
	req := func(pairs ...string) float64 { return value(fams, "picket_requests_total", pairs...) }

	total := req()
	var byAction float64
	for _, a := range actionLabels {
		byAction += req("action", a)
	}
	var byMethod float64
	for _, m := range methodLabels {
		byMethod += req("method", m)
	}
	var verdicts, withVerdict float64
	for _, k := range kindLabels {
		verdicts += value(fams, "picket_verdicts_total", "kind", k)
	}
	var tunnels, bytesIn, bytesOut float64
	for _, e := range events {
		if e.Verdict != "" {
			withVerdict++
		}
		if e.Tunnel {
			tunnels++
		}
		bytesIn += float64(e.BytesIn)
		bytesOut += float64(e.BytesOut)
	}
	checks := []struct {
		name      string
		got, want float64
	}{
		{"requests = events", total, float64(len(events))},
		{"requests = allow + block + warn + tunnel + intercept + error", req("action", "allow") + req("action", "block") +
			req("action", "warn") + req("action", "tunnel") + req("action", "intercept") + req("action", "error"), total},
		{"requests by action add up", byAction, total},
		{"requests by method add up", byMethod, total},
		{"allowed", req("action", "allow"), 9},
		{"blocked", req("action", "block"), 4},
		{"GET blocked", req("method", "GET", "action", "block"), 4},
		{"CONNECT", req("method", "CONNECT"), 2},
		{"odd method is other", req("method", "other"), 1},
		{"verdicts = requests with a verdict", verdicts, withVerdict},
		{"phishing from the database", value(fams, "picket_verdicts_total", "kind", "phishing", "source", "database"), 3},
		{"clean from the server", value(fams, "picket_verdicts_total", "kind", "clean", "source", "server"), 6},
		{"dns errors", value(fams, "picket_upstream_errors_total", "kind", "dns"), 1},
		{"errors = error actions", value(fams, "picket_upstream_errors_total"), req("action", "error")},
		{"pe malicious scans", value(fams, "picket_scans_total", "type", "pe", "result", "malicious"), 1},
		{"scans", value(fams, "picket_scans_total"), 2},
		{"latency samples = requests - tunnels", value(fams, "picket_request_duration_seconds"), total - tunnels},
		{"tunnel samples", value(fams, "picket_tunnel_duration_seconds"), tunnels},
		{"bytes in", value(fams, "picket_bytes_total", "direction", "in"), bytesIn},
		{"bytes out", value(fams, "picket_bytes_total", "direction", "out"), bytesOut},
		{"reputation lookups", value(fams, "picket_reputation_lookups_total"), 10},
		{"reputation hits + misses = lookups", value(fams, "picket_reputation_cache_total"), 10},
		{"reputation failures", value(fams, "picket_reputation_failures_total"), 1},
		{"breaker closed", value(fams, "picket_reputation_breaker_state", "state", "closed"), 1},
		{"one breaker state", value(fams, "picket_reputation_breaker_state"), 1},
		{"url cache entries", value(fams, "picket_reputation_cache_entries", "cache", "urls"), 6},
		{"cert mints", value(fams, "picket_certs_mints_total"), 2},
		{"cert cache hits", value(fams, "picket_certs_cache_total", "result", "hit"), 8},
		{"cert cache entries", value(fams, "picket_certs_cache_entries"), 2},
		{"scanner scans", value(fams, "picket_scanner_results_total", "outcome", "all"), 3},
		{"scanner bytes", value(fams, "picket_scanner_bytes_total"), 4096},
		{"clamd up", value(fams, "picket_scanner_engine_up", "engine", "clamd", "kind", "clamd"), 1},
		{"icap down", value(fams, "picket_scanner_engine_up", "engine", "icap", "kind", "icap"), 0},
		{"clamd detections", value(fams, "picket_scanner_engine_detections_total", "engine", "clamd"), 1},
		{"icap errors", value(fams, "picket_scanner_engine_errors_total", "engine", "icap"), 2},
		{"clamd cache hits", value(fams, "picket_scanner_engine_cache_hits_total", "engine", "clamd"), 2},
		{"clamd latency samples", value(fams, "picket_scanner_engine_duration_seconds", "engine", "clamd"), 3},
		{"open connections", value(fams, "picket_open_connections"), 7},
		{"HTTP/2 rapid resets", value(fams, "picket_http2_client_errors_total", "kind", "rapid_reset"), 1},
		{"HTTP/2 early resets", value(fams, "picket_http2_client_errors_total", "kind", "early_resets"), 2},
		{"HTTP/2 other errors", value(fams, "picket_http2_client_errors_total", "kind", "other"), 4},
		{"PROXY protocol headers missing", value(fams, "picket_proxy_protocol_errors_total", "kind", "missing"), 3},
		{"PROXY protocol errors", value(fams, "picket_proxy_protocol_errors_total"), 4},
		{"PROXY protocol series", float64(len(fams["picket_proxy_protocol_errors_total"].GetMetric())), 3},
		{"auto-bypassed hosts", value(fams, "picket_auto_bypassed_hosts"), 1},
		{"build info", value(fams, "picket_build_info", "version", "v-test"), 1},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s: got %v, want %v", c.name, c.got, c.want)
		}
	}
	h := fams["picket_request_duration_seconds"].GetMetric()[0].GetHistogram()
	if sum := h.GetSampleSum(); math.Abs(sum-(total-tunnels)*0.02) > 1e-9 {
		t.Errorf("latency sum: got %v, want %v", sum, (total-tunnels)*0.02)
	}
	if _, ok := fams["go_goroutines"]; !ok {
		t.Errorf("got no Go runtime metrics")
	}
	// docs/operations.md (CPUs) points administrators at this one.
	if got, want := value(fams, "go_sched_gomaxprocs_threads"), float64(runtime.GOMAXPROCS(0)); got != want {
		t.Errorf("go_sched_gomaxprocs_threads: got %v, want GOMAXPROCS %v", got, want)
	}
}

// TestMetricsCardinality: whatever clients send, the series count stays put.
func TestMetricsCardinality(t *testing.T) {
	s, _ := newTestServer(t, nil)
	before := scrape(t, s)
	for i := range 500 {
		s.Observe(proxy.Event{
			Method: fmt.Sprintf("M%d", i), Action: fmt.Sprintf("a%d", i), Verdict: fmt.Sprintf("v%d", i),
			Source: fmt.Sprintf("s%d", i), ErrKind: proxy.ErrKind(fmt.Sprintf("e%d", i)), Host: fmt.Sprintf("h%d.example", i),
			URL: fmt.Sprintf("http://h%d.example/", i), Scan: &proxy.ScanEvent{Type: fmt.Sprintf("t%d", i), Result: "r"},
		})
	}
	after := scrape(t, s)
	for _, name := range []string{"picket_requests_total", "picket_verdicts_total", "picket_upstream_errors_total", "picket_scans_total"} {
		if b, a := len(before[name].GetMetric()), len(after[name].GetMetric()); a != b {
			t.Errorf("%s: got %d series, want %d as before", name, a, b)
		}
	}
	if got := value(after, "picket_requests_total", "method", "other", "action", "other"); got != 500 {
		t.Errorf("got %v requests counted as other/other, want 500", got)
	}
	for name, f := range after {
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if strings.Contains(l.GetValue(), "example") {
					t.Errorf("%s has a host in label %s", name, l.GetName())
				}
			}
		}
	}
}

func TestObserveAllocs(t *testing.T) {
	m := NewMetrics("v", Sources{})
	e := workload(time.Now())[0]
	e.Scan = &proxy.ScanEvent{Type: "pe", Result: "clean"}
	if n := testing.AllocsPerRun(1000, func() { m.Observe(e) }); n != 0 {
		t.Errorf("Metrics.Observe: got %v allocations, want 0", n)
	}
}

func BenchmarkObserve(b *testing.B) {
	s, _ := newTestServer(b, nil)
	events := workload(time.Now())
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			s.Observe(events[i%len(events)])
			i++
		}
	})
}

func BenchmarkMetricsObserve(b *testing.B) {
	m := NewMetrics("v", Sources{})
	events := workload(time.Now())
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		m.Observe(events[i%len(events)])
	}
}
