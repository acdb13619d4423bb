// Command loadbench measures Picket against direct requests on loopback:
// it starts a local origin and the picket binary, drives the same load
// straight to the origin and through the proxy, and prints each scenario's
// throughput as a ratio to direct, with the proxy's CPU time per request and
// its memory. Every run is bounded in time and targets loopback only.
package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/pem"
	"flag"
	"fmt"
	"io"
	"log"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/picket-proxy/picket/internal/procstat"
)

func main() {
	bin := flag.String("bin", "bin/picket", "picket binary to measure")
	dur := flag.Duration("duration", 4*time.Second, "length of each measured run")
	only := flag.String("only", "", "run only scenarios whose name contains this (alternatives separated by |)")
	peers := flag.Bool("peers", false, "also measure squid, tinyproxy, a bare goproxy and (intercepted rows) mitmproxy")
	serveGP := flag.String("serve-goproxy", "", "internal: run as a bare goproxy on this address")
	gpMitm := flag.Bool("goproxy-mitm", false, "internal: with -serve-goproxy, intercept CONNECT")
	serveGT := flag.String("serve-gotunnel", "", "internal: run as the minimal Go CONNECT proxy on this address")
	flag.BoolVar(&withFloor, "floor", false, "also measure go-tunnel, the least a Go CONNECT proxy does (tunnel rows only): the floor Go's runtime sets")
	flag.StringVar(&profileDir, "profile", "", "write each picket's CPU profile into this directory")
	flag.IntVar(&rounds, "rounds", 5, "rounds per scenario; each proxy's ratio is the median over them")
	flag.BoolVar(&verbose, "v", false, "print every round's ratios, and per contestant this process's CPU per request, the machine's idle share and TCP segments per request")
	flag.StringVar(&picketEnv, "picket-env", "", "extra environment for picket (e.g. \"GOGC=200\")")
	flag.StringVar(&bBin, "b-bin", "", "A/B: also measure this picket binary, as \"picket-b\", in the same rounds")
	flag.StringVar(&bEnv, "b-env", "", "A/B: also measure picket with this extra environment, as \"picket-b\"")
	flag.Parse()
	if *serveGT != "" {
		if err := serveGoTunnel(*serveGT); err != nil {
			fmt.Fprintln(os.Stderr, "loadbench go-tunnel:", err)
			os.Exit(1)
		}
		return
	}
	if *serveGP != "" {
		if err := serveGoproxy(*serveGP, *gpMitm); err != nil {
			fmt.Fprintln(os.Stderr, "loadbench goproxy:", err)
			os.Exit(1)
		}
		return
	}
	withPeers = *peers
	if rounds < 1 {
		fmt.Fprintln(os.Stderr, "loadbench: -rounds must be at least 1")
		os.Exit(2)
	}
	if err := run(*bin, *dur, *only); err != nil {
		fmt.Fprintln(os.Stderr, "loadbench:", err)
		os.Exit(1)
	}
}

// profileDir, if set, receives picket's CPU profiles.
var profileDir string

// rounds is how many times each scenario is measured; verbose prints each.
var (
	rounds  int
	verbose bool
)

// picketEnv is extra environment for the picket processes.
var picketEnv string

// bBin and bEnv, when either is set, add a second picket ("picket-b": that
// binary, or the same one with that environment) to the same rounds, so that
// a change is compared with the code before it under the same load.
var bBin, bEnv string

// withPeers adds squid, tinyproxy, bare goproxy and mitmproxy columns.
var withPeers bool

// withFloor adds the go-tunnel column (tunnel rows only).
var withFloor bool

// scenario is one load shape.
type scenario struct {
	name   string
	conns  int
	https  bool
	fresh  bool   // a new connection per request
	resume bool   // the client resumes TLS sessions (as browsers do)
	path   string // origin path
	// h2: the client speaks HTTP/2 (inside the tunnel when proxied) over
	// conns connections, each carrying streams concurrent requests; a
	// response over anything else counts as an error.
	h2      bool
	streams int
}

func run(bin string, dur time.Duration, only string) error {
	origin, tlsOrigin, h2Origin := startOrigins()
	defer origin.Close()
	defer tlsOrigin.Close()
	defer h2Origin.Close()
	dir, err := os.MkdirTemp("", "picket-loadbench")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	originPEM := filepath.Join(dir, "origin.pem")
	if err := os.WriteFile(originPEM, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: tlsOrigin.Certificate().Raw}), 0o644); err != nil {
		return err
	}

	// Tunnels: filtering on (rules, reputation on the embedded demo
	// database, scanner ready), interception off.
	tunnelCfg := "[tls]\nintercept = false\n"
	tunnel, err := startPicket(bin, picketEnv, dir, "tunnel", tunnelCfg)
	if err != nil {
		return err
	}
	defer tunnel.stop()
	// Interception: the same, with every CONNECT intercepted.
	mitmCfg := fmt.Sprintf("[tls]\nextra_roots = [%q]\nauto_bypass = \"0s\" # the load generator hangs up mid-handshake at the end of each run\n", originPEM)
	mitm, err := startPicket(bin, picketEnv, dir, "mitm", mitmCfg)
	if err != nil {
		return err
	}
	defer mitm.stop()

	type contestant struct {
		name        string
		url         *url.URL
		cpu         func() time.Duration
		tunnelsOnly bool // CONNECT only: no column on plain HTTP rows
		noH2        bool // does not offer HTTP/2 to intercepted clients: no column on HTTP/2 rows
	}
	var peersPlain, peersMitm []contestant
	withB := bBin != "" || bEnv != ""
	if withB {
		b, env := bin, strings.TrimSpace(picketEnv+" "+bEnv)
		if bBin != "" {
			b = bBin
		}
		bt, err := startPicket(b, env, dir, "tunnel-b", tunnelCfg)
		if err != nil {
			return err
		}
		defer bt.stop()
		bm, err := startPicket(b, env, dir, "mitm-b", mitmCfg)
		if err != nil {
			return err
		}
		defer bm.stop()
		peersPlain = append(peersPlain, contestant{"picket-b", bt.url, bt.cpu, false, false})
		peersMitm = append(peersMitm, contestant{"picket-b", bm.url, bm.cpu, false, false})
	}
	if withPeers {
		for _, start := range []func() (*peer, error){
			func() (*peer, error) { return startSquid(dir) },
			func() (*peer, error) { return startTinyproxy(dir) },
			func() (*peer, error) { return startGoproxy(false) },
		} {
			p, err := start()
			if err != nil {
				return err
			}
			defer p.stop()
			peersPlain = append(peersPlain, contestant{p.name, p.url, p.cpu, false, false})
		}
		gm, err := startGoproxy(true)
		if err != nil {
			return err
		}
		defer gm.stop()
		// goproxy's MITM answers http/1.1 only (its HTTP/2 path would skip
		// per-request handlers): no column on the HTTP/2 row.
		peersMitm = append(peersMitm, contestant{"squid", nil, nil, false, false}, contestant{"tinyproxy", nil, nil, false, false}, contestant{"goproxy", gm.url, gm.cpu, false, true})
		// mitmproxy intercepts (HTTP/1.1 and HTTP/2 on both sides); it does
		// not forward plain rows here.
		mp, err := startMitmproxy(dir)
		if err != nil {
			return err
		}
		defer mp.stop()
		peersPlain = append(peersPlain, contestant{"mitmproxy", nil, nil, false, false})
		peersMitm = append(peersMitm, contestant{mp.name, mp.url, mp.cpu, false, false})
	}
	if withFloor {
		p, err := startGoTunnel()
		if err != nil {
			return err
		}
		defer p.stop()
		peersPlain = append(peersPlain, contestant{p.name, p.url, p.cpu, true, false})
		peersMitm = append(peersMitm, contestant{p.name, nil, nil, true, false})
	}
	scenarios := []struct {
		scenario
		intercept bool
	}{
		{scenario{name: "HTTP 1 KiB GET, 64 keep-alive conns", conns: 64, path: "/1k"}, false},
		{scenario{name: "HTTP 10 MiB GET, 4 conns", conns: 4, path: "/10m"}, false},
		{scenario{name: "HTTPS new TCP+TLS per request (tunnel)", conns: 16, https: true, fresh: true, path: "/1k"}, false},
		{scenario{name: "HTTPS keep-alive through a tunnel", conns: 64, https: true, path: "/1k"}, false},
		{scenario{name: "HTTPS 10 MiB through a tunnel", conns: 4, https: true, path: "/10m"}, false},
		{scenario{name: "HTTPS new conns, intercepted (cert cache)", conns: 16, https: true, fresh: true, path: "/1k"}, true},
		{scenario{name: "HTTPS new conns, intercepted, resumed", conns: 16, https: true, fresh: true, resume: true, path: "/1k"}, true},
		{scenario{name: "HTTPS keep-alive, intercepted", conns: 64, https: true, path: "/1k"}, true},
		{scenario{name: "HTTPS 10 MiB, intercepted", conns: 4, https: true, path: "/10m"}, true},
		{scenario{name: "HTTP/2 intercepted, 4 conns x 32 streams", conns: 4, streams: 32, https: true, h2: true, path: "/1k"}, true},
	}
	fmt.Printf("loadbench: %d rounds of %s per proxy and scenario; origin and load generator in this process; 2 cores shared by all.\n", rounds, dur)
	fmt.Printf("Each round measures direct, then every proxy in a rotated order. Each proxy column: the median over the rounds\n")
	fmt.Printf("of its throughput as a ratio to the round's direct run, its CPU per request")
	fmt.Printf(" (per MiB for 10 MiB rows: divide by 10).\n\n")
	header := fmt.Sprintf("%-42s %10s | %-34s", "scenario", "direct/s", "picket: ratio  cpu/req   p50    p99")
	if withB {
		header += " | picket-b        "
	}
	if withPeers {
		header += " | squid            | tinyproxy        | goproxy (bare)   | mitmproxy       "
	}
	if withFloor {
		header += " | go-tunnel (floor)"
	}
	fmt.Println(header)
	for _, sc := range scenarios {
		if !selected(only, sc.name) {
			continue
		}
		target := origin.URL
		switch {
		case sc.h2:
			target = h2Origin.URL // offers h2: direct runs are HTTP/2 too
		case sc.https:
			target = tlsOrigin.URL // http/1.1 only, as before
		}
		pk, others := tunnel, peersPlain
		if sc.intercept {
			pk, others = mitm, peersMitm
		}
		field := append([]contestant{{"picket", pk.url, pk.cpu, false, false}}, others...)
		for i := range field { // a new slice: others keeps its URLs
			if field[i].tunnelsOnly && !sc.https || field[i].noH2 && sc.h2 {
				field[i].url = nil
			}
		}
		tallies := make([]tally, len(field))
		var directs []float64
		var directT tally // this process's CPU and the machine's counters in the direct runs
		// Rounds: each measures direct, then every contestant in an order
		// rotated by one per round, so that a slow or fast stretch of the
		// shared machine does not favour whoever runs at a fixed position.
		for round := range rounds {
			direct := directT.observe(func() result { return load(sc.scenario, target, nil, dur) })
			directs = append(directs, direct.rate())
			directT.n += direct.n
			for k := range field {
				i := (k + round) % len(field)
				c := field[i]
				if c.url == nil {
					continue
				}
				cpu0 := c.cpu()
				r := tallies[i].observe(func() result { return load(sc.scenario, target, c.url, dur) })
				tallies[i].add(r, direct, c.cpu()-cpu0)
			}
		}
		row := fmt.Sprintf("%-42s %10.0f", sc.name, median(directs))
		t := tallies[0]
		p50, p99 := t.latency()
		row += fmt.Sprintf(" | %6.2f %10s %6s %6s", t.ratio(), t.perReq(), p50, p99)
		errs := fmt.Sprintf("picket %d", t.errs)
		for i, c := range field[1:] {
			if c.url == nil {
				row += fmt.Sprintf(" | %-16s", "-")
				continue
			}
			t := tallies[i+1]
			row += fmt.Sprintf(" | %5.2f %10s", t.ratio(), t.perReq())
			errs += fmt.Sprintf(", %s %d", c.name, t.errs)
		}
		fmt.Print(row)
		if strings.Contains(errs, " 0") && !strings.ContainsAny(strings.ReplaceAll(errs, " 0", ""), "123456789") {
			fmt.Println()
		} else {
			fmt.Printf("  (errors: %s)\n", errs)
		}
		if verbose {
			fmt.Printf("    %-10s client+origin CPU/req %s, %s\n", "direct", perReq(directT.self, directT.n), directT.machineString())
			for i, c := range field {
				if c.url != nil {
					p50, p99 := tallies[i].latency()
					t := &tallies[i]
					fmt.Printf("    %-10s ratios per round %.2f, latency p50 %s p99 %s, client+origin CPU/req %s, %s\n",
						c.name, t.ratios, p50, p99, perReq(t.self, t.n), t.machineString())
				}
			}
		}
	}

	// Memory: a 64 MiB upload and download streamed through the proxy must
	// not grow its resident set by more than a few MiB.
	if selected(only, "memory") {
		rss0 := tunnel.rss()
		if err := stream64(origin.URL, tunnel.url); err != nil {
			return err
		}
		fmt.Printf("\n64 MiB POST echoed through the proxy: RSS before %.1f MiB, after %.1f MiB, peak %.1f MiB\n",
			mib(rss0), mib(tunnel.rss()), mib(tunnel.hwm()))
	}
	if selected(only, "connections") {
		if err := connMemory(tunnel, origin.URL, 10000, 1000); err != nil {
			return fmt.Errorf("connection memory: %w", err)
		}
	}
	if selected(only, "scanning") {
		return scanning(bin, dir, origin.URL)
	}
	return nil
}

// scanning measures download scanning: time to first byte of a body that is
// not scanned (with the scanner on and off), time to last byte of scanned
// downloads in buffer and trickle modes, and the resident memory of 20
// concurrent 100 MiB scanned downloads against the configured budget.
func scanning(bin, dir, origin string) error {
	off, err := startPicket(bin, picketEnv, dir, "noscan", "[scanner]\nenabled = false\n")
	if err != nil {
		return err
	}
	defer off.stop()
	buffer, err := startPicket(bin, picketEnv, dir, "buffer", "[scanner]\nmode = \"buffer\"\nmemory_budget = \"64MiB\"\n")
	if err != nil {
		return err
	}
	defer buffer.stop()
	trickle, err := startPicket(bin, picketEnv, dir, "trickle", "[scanner]\nmode = \"trickle\"\n")
	if err != nil {
		return err
	}
	defer trickle.stop()

	fmt.Printf("\n%-52s %14s %14s %14s\n", "download scanning (median of 5)", "first byte", "last byte", "picket CPU")
	for _, c := range []struct {
		name, path string
		p          *picket
	}{
		{"10 MiB image, not scanned, scanner off", "/10m.png", off},
		{"10 MiB image, not scanned, scanner on", "/10m.png", buffer},
		{"10 MiB executable, buffer", "/10m.exe", buffer},
		{"10 MiB executable, trickle", "/10m.exe", trickle},
		{"100 MiB executable, buffer (32 MiB scanned)", "/100m.exe", buffer},
		{"100 MiB executable, trickle (32 MiB scanned)", "/100m.exe", trickle},
	} {
		cpu0 := c.p.cpu()
		first, last, err := timeDownload(origin+c.path, c.p.url, 5)
		if err != nil {
			return fmt.Errorf("%s: %w", c.name, err)
		}
		cpu := (c.p.cpu() - cpu0) / 5
		fmt.Printf("%-52s %14s %14s %14s\n", c.name, first.Round(10*time.Microsecond), last.Round(100*time.Microsecond), cpu.Round(100*time.Microsecond))
	}

	// 20 concurrent 100 MiB scanned downloads, memory_budget 64 MiB.
	rss0 := buffer.rss()
	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, _, err := timeDownload(origin+"/100m.exe", buffer.url, 1); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		return err
	}
	fmt.Printf("\n20 concurrent 100 MiB scanned downloads (buffer, memory_budget 64 MiB): RSS before %.1f MiB, peak %.1f MiB\n",
		mib(rss0), mib(buffer.hwm()))
	return engineRows(bin, dir, origin)
}

// timeDownload fetches url through proxy n times and returns the median
// times to the first and the last byte.
func timeDownload(url string, proxy *url.URL, n int) (time.Duration, time.Duration, error) {
	tr := &http.Transport{Proxy: http.ProxyURL(proxy), DisableCompression: true}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr, Timeout: 2 * time.Minute}
	var firsts, lasts []time.Duration
	buf := make([]byte, 64<<10)
	for range n {
		start := time.Now()
		resp, err := c.Get(url)
		if err != nil {
			return 0, 0, err
		}
		var first time.Duration
		for {
			k, err := resp.Body.Read(buf)
			if k > 0 && first == 0 {
				first = time.Since(start)
			}
			if err == io.EOF {
				break
			}
			if err != nil {
				resp.Body.Close()
				return 0, 0, err
			}
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return 0, 0, fmt.Errorf("status %d", resp.StatusCode)
		}
		firsts, lasts = append(firsts, first), append(lasts, time.Since(start))
	}
	slices.Sort(firsts)
	slices.Sort(lasts)
	return firsts[n/2], lasts[n/2], nil
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }

// result counts completed requests of one run.
type result struct {
	n, errs int64
	d       time.Duration
	lat     []time.Duration // a sample of request latencies, sorted
}

func (r result) rate() float64 { return float64(r.n) / r.d.Seconds() }

// p returns the q-th percentile latency, rounded for the table.
func (r result) p(q int) string {
	if len(r.lat) == 0 {
		return "-"
	}
	d := r.lat[min(len(r.lat)-1, len(r.lat)*q/100)]
	switch {
	case d < time.Millisecond:
		return d.Round(10 * time.Microsecond).String()
	case d < time.Second:
		return d.Round(100 * time.Microsecond).String()
	}
	return d.Round(10 * time.Millisecond).String()
}

// selected reports whether the scenario or section name is chosen by
// -only: empty chooses all, else any |-separated alternative name contains.
func selected(only, name string) bool {
	if only == "" {
		return true
	}
	for _, alt := range strings.Split(only, "|") {
		if alt != "" && strings.Contains(name, alt) {
			return true
		}
	}
	return false
}

// tally gathers one contestant's rounds of a scenario.
type tally struct {
	ratios  []float64 // throughput / direct, per round
	n, errs int64
	cpu     time.Duration
	self    time.Duration // this process's (load generator and origin) CPU
	idle    []float64     // the machine's idle share, per round
	segs    uint64        // TCP segments sent on the machine
	lat     []time.Duration
}

func (t *tally) add(r, direct result, cpu time.Duration) {
	ratio := 0.0
	if direct.rate() > 0 {
		ratio = r.rate() / direct.rate()
	}
	t.ratios = append(t.ratios, ratio)
	t.n += r.n
	t.errs += r.errs
	t.cpu += cpu
	t.lat = append(t.lat, r.lat...)
}

// observe runs one load run and adds what the rest of the machine did
// meanwhile: this process's CPU, the machine's idle share, TCP segments.
func (t *tally) observe(run func() result) result {
	self0, m0 := procstat.CPU(os.Getpid()), procstat.ReadMachine()
	r := run()
	t.self += procstat.CPU(os.Getpid()) - self0
	idle, segs := procstat.ReadMachine().Since(m0)
	t.idle = append(t.idle, idle)
	t.segs += segs
	return r
}

func (t *tally) machineString() string {
	if t.n == 0 {
		return "-"
	}
	return fmt.Sprintf("machine idle %.0f%%, TCP segments/req %.1f", 100*median(t.idle), float64(t.segs)/float64(t.n))
}

// ratio is the median of the rounds' ratios to direct.
func (t *tally) ratio() float64 { return median(t.ratios) }

// perReq is the CPU time per request over all rounds.
func (t *tally) perReq() string { return perReq(t.cpu, t.n) }

func perReq(cpu time.Duration, n int64) string {
	if n == 0 {
		return "-"
	}
	return (cpu / time.Duration(n)).Round(time.Microsecond).String()
}

// latency returns the p50 and p99 latencies over all rounds.
func (t *tally) latency() (p50, p99 string) {
	slices.Sort(t.lat)
	r := result{lat: t.lat}
	return r.p(50), r.p(99)
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// load runs sc against target for dur, through proxy when not nil.
func load(sc scenario, target string, proxy *url.URL, dur time.Duration) result {
	if sc.h2 {
		return loadH2(sc, target, proxy, dur)
	}
	tr := &http.Transport{
		MaxIdleConnsPerHost: sc.conns,
		DisableKeepAlives:   sc.fresh,
		TLSClientConfig:     &tls.Config{InsecureSkipVerify: true}, // our own loopback origin
		DisableCompression:  true,
	}
	if sc.resume {
		tr.TLSClientConfig.ClientSessionCache = tls.NewLRUClientSessionCache(64)
	}
	if proxy != nil {
		tr.Proxy = http.ProxyURL(proxy)
	}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	ctx, cancel := context.WithTimeout(context.Background(), dur)
	defer cancel()
	var n, errs atomic.Int64
	var wg sync.WaitGroup
	var mu sync.Mutex
	var lat []time.Duration
	start := time.Now()
	for range sc.conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mine []time.Duration
			defer func() {
				mu.Lock()
				lat = append(lat, mine...)
				mu.Unlock()
			}()
			for ctx.Err() == nil {
				t0 := time.Now()
				req, _ := http.NewRequestWithContext(ctx, "GET", target+sc.path, nil)
				resp, err := client.Do(req)
				if err != nil {
					if ctx.Err() == nil {
						errs.Add(1)
					}
					continue
				}
				_, err = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if err == nil && resp.StatusCode == 200 {
					n.Add(1)
					if len(mine) < 20000 {
						mine = append(mine, time.Since(t0))
					}
				} else if ctx.Err() == nil {
					errs.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	slices.Sort(lat)
	return result{n: n.Load(), errs: errs.Load(), d: time.Since(start), lat: lat}
}

// loadH2 is load for HTTP/2 scenarios: sc.conns clients, each with one
// HTTP/2 connection (through a CONNECT tunnel when proxied) opened by a
// first request, then sc.streams goroutines per connection issuing
// requests as concurrent streams. A response that is not HTTP/2 is an
// error.
func loadH2(sc scenario, target string, proxy *url.URL, dur time.Duration) result {
	ctx, cancel := context.WithTimeout(context.Background(), dur)
	defer cancel()
	var n, errs atomic.Int64
	var wg sync.WaitGroup
	var mu sync.Mutex
	var lat []time.Duration
	start := time.Now()
	for range sc.conns {
		tr := &http.Transport{
			ForceAttemptHTTP2:  true,
			TLSClientConfig:    &tls.Config{InsecureSkipVerify: true}, // our own loopback origin, or the proxy's CA
			DisableCompression: true,
		}
		if proxy != nil {
			tr.Proxy = http.ProxyURL(proxy)
		}
		defer tr.CloseIdleConnections()
		client := &http.Client{Transport: tr, Timeout: 30 * time.Second}
		get := func() (time.Duration, bool) {
			t0 := time.Now()
			req, _ := http.NewRequestWithContext(ctx, "GET", target+sc.path, nil)
			resp, err := client.Do(req)
			if err != nil {
				return 0, false
			}
			_, err = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			return time.Since(t0), err == nil && resp.StatusCode == 200 && resp.ProtoMajor == 2
		}
		// One request opens the connection: concurrent first requests
		// would each open one.
		if _, ok := get(); !ok {
			if ctx.Err() == nil {
				errs.Add(1)
			}
			continue
		}
		n.Add(1)
		for range sc.streams {
			wg.Add(1)
			go func() {
				defer wg.Done()
				var mine []time.Duration
				defer func() {
					mu.Lock()
					lat = append(lat, mine...)
					mu.Unlock()
				}()
				for ctx.Err() == nil {
					d, ok := get()
					switch {
					case ok:
						n.Add(1)
						if len(mine) < 20000 {
							mine = append(mine, d)
						}
					case ctx.Err() == nil:
						errs.Add(1)
					}
				}
			}()
		}
	}
	wg.Wait()
	slices.Sort(lat)
	return result{n: n.Load(), errs: errs.Load(), d: time.Since(start), lat: lat}
}

func startOrigins() (plain, secure, h2 *httptest.Server) {
	small := make([]byte, 1024)
	big := make([]byte, 10<<20)
	var seed [32]byte
	rand.NewChaCha8(seed).Read(big)
	copy(small, big)
	mux := http.NewServeMux()
	mux.HandleFunc("/1k", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Write(small)
	})
	mux.HandleFunc("/10m", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Write(big)
	})
	exe10, exe100 := append([]byte("MZ"), big[2:]...), bytes.Repeat(big, 10)
	copy(exe100, "MZ")
	png := append([]byte("\x89PNG\r\n\x1a\n"), big[8:]...)
	for path, body := range map[string][]byte{"/10m.exe": exe10, "/100m.exe": exe100, "/10m.png": png} {
		mux.HandleFunc(path, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/octet-stream")
			w.Write(body)
		})
	}
	mux.HandleFunc("/echo", func(w http.ResponseWriter, r *http.Request) {
		io.Copy(w, r.Body)
	})
	quiet := log.New(io.Discard, "", 0) // clients cut at the end of a run are not news
	plain, secure, h2 = httptest.NewUnstartedServer(mux), httptest.NewUnstartedServer(mux), httptest.NewUnstartedServer(mux)
	plain.Config.ErrorLog, secure.Config.ErrorLog, h2.Config.ErrorLog = quiet, quiet, quiet
	h2.EnableHTTP2 = true
	plain.Start()
	secure.StartTLS()
	h2.StartTLS()
	return plain, secure, h2
}

// stream64 posts 64 MiB through the proxy and reads the echo.
func stream64(origin string, proxy *url.URL) error {
	const size = 64 << 20
	var seed [32]byte
	body := io.LimitReader(rand.NewChaCha8(seed), size)
	tr := &http.Transport{Proxy: http.ProxyURL(proxy)}
	defer tr.CloseIdleConnections()
	req, _ := http.NewRequest("POST", origin+"/echo", body)
	req.ContentLength = size
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	n, err := io.Copy(io.Discard, resp.Body)
	if err != nil || n != size {
		return fmt.Errorf("64 MiB echo: got %d bytes (%v)", n, err)
	}
	return nil
}

// picket is the proxy process under test.
type picket struct {
	cmd *exec.Cmd
	url *url.URL
}

func startPicket(bin, env, base, name, extra string) (*picket, error) {
	return startPicketTail(bin, env, base, name, extra, "")
}

// startPicketTail is startPicket with tail appended after the [scanner]
// keys (sub-tables such as [scanner.clamd]).
func startPicketTail(bin, env, base, name, extra, tail string) (*picket, error) {
	dir := filepath.Join(base, name)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	addr := ln.Addr().String()
	ln.Close()
	feeds, err := filepath.Abs(filepath.Join("data", "feeds"))
	if err != nil {
		return nil, err
	}
	sigs, err := filepath.Abs(filepath.Join("data", "signatures"))
	if err != nil {
		return nil, err
	}
	// Filtering stays on: rules, reputation lookups on the embedded demo
	// database, download scanning with the demo signatures.
	cfg := fmt.Sprintf(`[proxy]
listen = %q
allow_destinations = ["127.0.0.0/8"]
allow_ports = ["1-65535"]
max_conns_per_client = 0 # the load generator is one client
[admin]
listen = ""
[log]
format = "json"
level = "warn"
access_log = %q
[reputation.kpsn]
database = %q
`, addr, filepath.Join(dir, "access.log"), feeds)
	cfg += extra
	if !strings.Contains(extra, "[scanner]") {
		cfg += "[scanner]\n"
	}
	cfg += fmt.Sprintf("signatures = [%q, %q]\n", filepath.Join(sigs, "*.hsb"), filepath.Join(sigs, "*.fp")) + tail
	path := filepath.Join(dir, "picket.toml")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		return nil, err
	}
	args := []string{"serve", "-config", path}
	if profileDir != "" {
		args = append(args, "-cpuprofile", filepath.Join(profileDir, name+".cpu.pprof"))
	}
	cmd := exec.Command(bin, args...)
	if env != "" {
		cmd.Env = append(os.Environ(), strings.Fields(env)...)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &picket{cmd: cmd, url: &url.URL{Scheme: "http", Host: addr}}
	if err := waitListening("picket", addr, 10*time.Second); err != nil {
		p.stop()
		return nil, err
	}
	return p, nil
}

func (p *picket) stop() { stopProcess(p.cmd) }

// stopProcess interrupts cmd and kills it if it has not exited after 5s.
func stopProcess(cmd *exec.Cmd) {
	_ = cmd.Process.Signal(os.Interrupt)
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		cmd.Process.Kill()
	}
}

// cpu returns the process's user+system CPU time.
func (p *picket) cpu() time.Duration { return procstat.CPU(p.cmd.Process.Pid) }

func (p *picket) rss() int64 { return procstat.RSS(p.cmd.Process.Pid) }
func (p *picket) hwm() int64 { return procstat.HWM(p.cmd.Process.Pid) }

// connMemory opens n idle keep-alive client connections (each after one
// request) and then m idle CONNECT tunnels to the origin, and reports
// Picket's resident memory per connection and per tunnel.
func connMemory(p *picket, origin string, n, m int) error {
	host := strings.TrimPrefix(origin, "http://")
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	open := func(count int, req string, want string) error {
		var mu sync.Mutex
		errs := make(chan error, 64)
		var wg sync.WaitGroup
		per := count / 64
		for w := 0; w < 64; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < per; i++ {
					c, err := net.DialTimeout("tcp", p.url.Host, 5*time.Second)
					if err != nil {
						errs <- err
						return
					}
					c.SetDeadline(time.Now().Add(10 * time.Second))
					if _, err := io.WriteString(c, req); err != nil {
						errs <- err
						return
					}
					br := bufio.NewReader(c)
					resp, err := http.ReadResponse(br, nil)
					if err != nil || !strings.Contains(resp.Status, want) {
						errs <- fmt.Errorf("response %v %v", resp, err)
						return
					}
					if want == "200 OK" {
						io.Copy(io.Discard, resp.Body)
					}
					c.SetDeadline(time.Time{})
					mu.Lock()
					conns = append(conns, c)
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		close(errs)
		return <-errs
	}
	time.Sleep(500 * time.Millisecond)
	rss0 := p.rss()
	if err := open(n, "GET "+origin+"/1k HTTP/1.1\r\nHost: "+host+"\r\n\r\n", "200 OK"); err != nil {
		return err
	}
	time.Sleep(500 * time.Millisecond)
	rss1 := p.rss()
	idle := len(conns)
	if err := open(m, "CONNECT "+host+" HTTP/1.1\r\nHost: "+host+"\r\n\r\n", "200"); err != nil {
		return err
	}
	time.Sleep(500 * time.Millisecond)
	rss2 := p.rss()
	tunnels := len(conns) - idle
	fmt.Printf("\n%d idle keep-alive connections: RSS %.1f -> %.1f MiB, %.1f KiB each\n",
		idle, mib(rss0), mib(rss1), float64(rss1-rss0)/1024/float64(max(idle, 1)))
	fmt.Printf("%d idle CONNECT tunnels: RSS %.1f -> %.1f MiB, %.1f KiB each (client and upstream sides)\n",
		tunnels, mib(rss1), mib(rss2), float64(rss2-rss1)/1024/float64(max(tunnels, 1)))
	return nil
}
