package main

import (
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"
)

// Outputs as wrk 4.1.0 and hey 0.1.4 (Debian) print them.
const wrkOut = `Running 2s test @ http://127.0.0.1:40111/
  2 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     2.10ms    1.31ms  30.17ms   89.12%
    Req/Sec    15.71k     1.10k   17.90k    70.00%
  Latency Distribution
     50%    1.85ms
     75%    2.40ms
     90%    3.20ms
     99%    7.51ms
  62510 requests in 2.00s, 69.69MB read
  Socket errors: connect 0, read 12, write 1, timeout 2
  Non-2xx or 3xx responses: 10
Requests/sec:  31245.12
Transfer/sec:     34.83MB
`

const heyOut = `
Summary:
  Total:	2.0061 secs
  Slowest:	0.0711 secs
  Fastest:	0.0002 secs
  Average:	0.0052 secs
  Requests/sec:	12270.1228

Latency distribution:
  10% in 0.0013 secs
  50% in 0.0039 secs
  99% in 0.0230 secs

Status code distribution:
  [200]	24600 responses
  [502]	3 responses

Error distribution:
  [61]	Get "https://site1.bench.test:4000/1k/1": context deadline exceeded (Client.Timeout exceeded while awaiting headers)
  [2]	Get "https://site1.bench.test:4000/1k/1": EOF
`

func TestParseWrk(t *testing.T) {
	r := parseWrk(wrkOut)
	if r.n != 62500 || r.errs != 13 || r.d != 2*time.Second {
		t.Errorf("got %d requests, %d errors in %s, want 62500, 13 in 2s", r.n, r.errs, r.d)
	}
	if r.p50 != 1850*time.Microsecond || r.p99 != 7510*time.Microsecond {
		t.Errorf("got p50 %s p99 %s, want 1.85ms 7.51ms", r.p50, r.p99)
	}
	if bad := parseWrk("unable to connect to 127.0.0.1:1 Connection refused"); bad.errs != 1 || bad.n != 0 || !strings.Contains(bad.firstErr, "refused") {
		t.Errorf("got %+v, want one error naming the refusal", bad)
	}
}

func TestParseHey(t *testing.T) {
	r := parseHey(heyOut)
	if r.n != 24600 || r.errs != 5 || r.d != 2006100*time.Microsecond {
		t.Errorf("got %d requests, %d errors in %s, want 24600, 5 (3 statuses, 2 EOF; the cut-off ones not) in 2.0061s", r.n, r.errs, r.d)
	}
	if r.p50 != 3900*time.Microsecond || r.p99 != 23*time.Millisecond {
		t.Errorf("got p50 %s p99 %s, want 3.9ms 23ms", r.p50, r.p99)
	}
	if bad := parseHey("flag provided but not defined"); bad.errs != 1 || bad.n != 0 {
		t.Errorf("got %+v, want one error", bad)
	}
}

// hey's distribution of a run with few requests (hey -n 40 -c 4): the
// percentiles it could not fill print as "0% in 0.0000 secs".
const heyFewOut = `
Summary:
  Total:	0.0812 secs
  Requests/sec:	492.4515

Latency distribution:
  10% in 0.0038 secs
  50% in 0.0074 secs
  95% in 0.0160 secs
  0% in 0.0000 secs

Status code distribution:
  [200]	40 responses
`

// A run where hey printed no 99th percentile gives none, and the table's
// median leaves such rounds out instead of printing a latency of 0s.
func TestHeyMissingPercentile(t *testing.T) {
	few := parseHey(heyFewOut)
	if few.n != 40 || few.p50 != 7400*time.Microsecond || few.p99 != 0 {
		t.Fatalf("got %d requests, p50 %s, p99 %s; want 40, 7.4ms, none", few.n, few.p50, few.p99)
	}
	ms := time.Millisecond
	for _, c := range []struct {
		in   []time.Duration
		want string
	}{
		{[]time.Duration{few.p99, 0, 0}, "-"},
		{[]time.Duration{0, 30 * ms, 0, 50 * ms, 40 * ms}, "40ms"},
		{[]time.Duration{20 * ms}, "20ms"},
	} {
		if got := medianLatency(c.in); got != c.want {
			t.Errorf("medianLatency(%v) = %s, want %s", c.in, got, c.want)
		}
	}
}

// TestWrkScript checks that the script sends absolute-form requests
// through a proxy, origin-form direct, each with its Host.
func TestWrkScript(t *testing.T) {
	b := &bench{mix: newMix(8)}
	sc := scenarios[0]
	proxied := wrkScript(b, sc, "http://127.0.0.1:8080", true)
	if !strings.Contains(proxied, `"GET http://site`) || !strings.Contains(proxied, `.bench.test:8080/1k/`) || !strings.Contains(proxied, `HTTP/1.1\r\nHost: site`) {
		t.Errorf("proxied script lacks absolute-form requests: %.200s", proxied)
	}
	direct := wrkScript(b, sc, "http://127.0.0.1:8080", false)
	if !strings.Contains(direct, `"GET /1k/`) || strings.Contains(direct, `"GET http://`) {
		t.Errorf("direct script is not origin-form: %.200s", direct)
	}
	if n := strings.Count(direct, "\n") - strings.Count(direct[strings.Index(direct, "}"):], "\n"); n != 4097 {
		t.Errorf("got %d lines of requests, want 4096 and the opening", n)
	}
}

// hey runs the keep-alive rows for heyShared at least, every other row for
// the bench's duration; its workers and options follow the row.
func TestHeyArgs(t *testing.T) {
	proxy := &url.URL{Scheme: "http", Host: "127.0.0.1:3128"}
	byName := map[string]scenario{}
	for _, sc := range scenarios {
		byName[sc.name] = sc
	}
	for _, c := range []struct {
		row  string
		dur  time.Duration
		want string
		d    time.Duration
	}{
		{"HTTPS keep-alive through a tunnel", time.Second, "-z 5s -c 64 -t 30 -disable-compression -x http://127.0.0.1:3128 T", 5 * time.Second},
		{"HTTPS keep-alive, intercepted", 8 * time.Second, "-z 8s -c 64 -t 30 -disable-compression -x http://127.0.0.1:3128 T", 8 * time.Second},
		{"HTTPS new TCP+TLS per request (tunnel)", time.Second, "-z 1s -c 16 -t 30 -disable-compression -disable-keepalive -x http://127.0.0.1:3128 T", time.Second},
		{"HTTPS 10 MiB through a tunnel", time.Second, "-z 1s -c 4 -t 30 -disable-compression -x http://127.0.0.1:3128 T", time.Second},
		{"HTTP/2 intercepted, 4 conns x 32 streams", time.Second, "-z 1s -c 128 -t 30 -disable-compression -h2 -x http://127.0.0.1:3128 T", time.Second},
	} {
		sc, ok := byName[c.row]
		if !ok {
			t.Fatalf("no row %q", c.row)
		}
		args, d := heyArgs(c.dur, sc, "T", proxy)
		if got := strings.Join(args, " "); got != c.want || d != c.d {
			t.Errorf("%s: hey %s for %s, want hey %s for %s", c.row, got, d, c.want, c.d)
		}
	}
	if args, _ := heyArgs(time.Second, byName["HTTPS keep-alive through a tunnel"], "T", nil); slices.Contains(args, "-x") {
		t.Errorf("direct run through a proxy: %v", args)
	}
}
