package main

import (
	"encoding/pem"
	"fmt"
	"net/http/httptest"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"
)

// rowKind is what a scenario asks of a proxy: plain HTTP forwarding, a
// CONNECT tunnel, interception of HTTP/1.1, or interception of HTTP/2.
type rowKind int

const (
	plainRow rowKind = iota
	tunnelRow
	interceptRow
	h2Row
	rowKinds
)

func (sc scenario) kind() rowKind {
	switch {
	case sc.h2:
		return h2Row
	case sc.intercept:
		return interceptRow
	case sc.https:
		return tunnelRow
	}
	return plainRow
}

// proc is a proxy process measured in a column: where it listens and its
// CPU time so far.
type proc struct {
	url *url.URL
	cpu func() time.Duration
}

// column is one contestant of the table: the process it measures on each
// kind of row (nil: no entry on such rows).
type column struct {
	name  string
	procs [rowKinds]*proc
}

// scenarios are the rows of the table.
var scenarios = []scenario{
	{name: "HTTP 1 KiB GET, 64 keep-alive conns", conns: 64, path: "/1k"},
	{name: "HTTP 10 MiB GET, 4 conns", conns: 4, path: "/10m"},
	{name: "HTTPS new TCP+TLS per request (tunnel)", conns: 16, https: true, fresh: true, path: "/1k"},
	{name: "HTTPS keep-alive through a tunnel", conns: 64, https: true, path: "/1k", shared: true},
	{name: "HTTPS 10 MiB through a tunnel", conns: 4, https: true, path: "/10m"},
	{name: "HTTPS new conns, intercepted (cert cache)", conns: 16, https: true, fresh: true, path: "/1k", intercept: true},
	{name: "HTTPS new conns, intercepted, resumed", conns: 16, https: true, fresh: true, resume: true, path: "/1k", intercept: true},
	{name: "HTTPS keep-alive, intercepted", conns: 64, https: true, path: "/1k", intercept: true, shared: true},
	{name: "HTTPS 10 MiB, intercepted", conns: 4, https: true, path: "/10m", intercept: true},
	{name: "HTTP/2 intercepted, 4 conns x 32 streams", conns: 4, streams: 32, https: true, h2: true, path: "/1k", intercept: true},
}

// bench is one run of loadbench: the origins, the temporary directory and
// the settings every part reads.
type bench struct {
	bin  string
	dur  time.Duration
	only string
	dir  string // temporary, removed at the end

	origin, tlsOrigin, h2Origin *httptest.Server
	originPEM                   string // the TLS origins' certificate, for Picket's extra_roots
	mix                         *urlMix
	feeds                       string // the generated feed directory; "" the demo feeds

	mu     sync.Mutex
	stops  []func() // processes to stop at the end, in reverse order
	closed bool

	pickets [rowKinds]*picket // the Picket under test on each kind of row
	// warmed are every Picket process of the current field, picket-b's
	// too: each gets the same warm-up, so that an A/B compares like with
	// like.
	warmed []*picket
}

// stopLater registers stop to run when the bench ends.
func (b *bench) stopLater(stop func()) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.stops = append(b.stops, stop)
}

// close stops every process still registered, the origins, and removes
// the temporary directory; it runs once, at the end or on a signal.
func (b *bench) close() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return
	}
	b.closed = true
	for i := len(b.stops) - 1; i >= 0; i-- {
		b.stops[i]()
	}
	b.origin.Close()
	b.tlsOrigin.Close()
	b.h2Origin.Close()
	os.RemoveAll(b.dir)
}

// closeOnSignal stops everything when loadbench is interrupted or
// terminated, so that no contestant outlives it.
func (b *bench) closeOnSignal() {
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() {
		s := <-sigs
		fmt.Fprintf(os.Stderr, "loadbench: %s: stopping the contestants\n", s)
		b.close()
		os.Exit(1)
	}()
}

func run(bin string, dur time.Duration, only string) error {
	b := &bench{bin: bin, dur: dur, only: only, mix: newMix(hostCount)}
	if profileDir != "" {
		if err := os.MkdirAll(profileDir, 0o755); err != nil {
			return err
		}
	}
	var err error
	if b.origin, b.tlsOrigin, b.h2Origin, err = startOrigins(); err != nil {
		return err
	}
	if b.dir, err = os.MkdirTemp("", "picket-loadbench"); err != nil {
		return err
	}
	defer b.close()
	b.closeOnSignal()
	if hostCount > 0 {
		if err := b.mix.mountHosts(b.dir); err != nil {
			return err
		}
	}
	if err := b.realData(); err != nil {
		return err
	}
	b.originPEM = filepath.Join(b.dir, "origin.pem")
	if err := os.WriteFile(b.originPEM, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: b.tlsOrigin.Certificate().Raw}), 0o644); err != nil {
		return err
	}
	if hostCount > 0 {
		fmt.Printf("URL mix: %d host names (site0.%s ...) resolving to 127.0.0.1 only (a hosts file mounted in loadbench's own mount namespace, seen by every contestant); paths Zipf(%.1f) over %d URLs, a new sequence per run; keep-alive HTTPS connections keep one host each\n",
			hostCount, mixDomain, mixZipf, mixURLs)
	}
	var tunnel *picket
	for i, logOn := range logSettings {
		// Each setting has its own processes, stopped before the next
		// starts; the last setting's stay for the sections.
		b.mu.Lock()
		n := len(b.stops)
		b.mu.Unlock()
		field, t, err := b.startField(logOn)
		if err != nil {
			return err
		}
		tunnel = t
		b.printHeader(field, logOn)
		b.warm(field)
		for _, sc := range scenarios {
			if selected(only, sc.name) {
				b.row(sc, field)
			}
		}
		if i < len(logSettings)-1 {
			b.stopFrom(n)
		}
	}
	return b.sections(tunnel)
}

// warm sends the HTTP mix through each Picket (picket-b's too) for a few
// seconds, so that the rows meet warm verdict caches, and prints their hit
// ratio meanwhile;
// then the intercepted keep-alive mix through every intercepting
// contestant, so that each has minted (and, if it keeps them, cached) its
// certificates for the mix's hosts before the rows.
func (b *bench) warm(field []column) {
	sc := scenarios[0]
	for _, p := range b.warmed {
		w := newCacheWatch(p)
		load(sc, newTargets(sc, b.origin.URL, b.mix), p.url, 5*time.Second)
		fmt.Printf("warm-up, 5 s of the HTTP mix through %s: %s\n", p.name, w)
	}
	for _, sc := range scenarios {
		if sc.kind() != interceptRow || sc.fresh || sc.path != "/1k" {
			continue
		}
		for _, c := range field {
			if p := c.procs[interceptRow]; p != nil {
				load(sc, newTargets(sc, b.tlsOrigin.URL, b.mix), p.url, 3*time.Second)
			}
		}
	}
}

// stopFrom stops the processes registered since the n-th.
func (b *bench) stopFrom(n int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for i := len(b.stops) - 1; i >= n; i-- {
		b.stops[i]()
	}
	b.stops = b.stops[:n]
}

// picketConfigs are the [tls] settings of the two Picket processes:
// tunnels (filtering on, interception off) and interception of every
// CONNECT.
func (b *bench) picketConfigs() (tunnelCfg, mitmCfg string) {
	return "[tls]\nintercept = false\n",
		fmt.Sprintf("[tls]\nextra_roots = [%q]\nauto_bypass = \"0s\" # the load generator hangs up mid-handshake at the end of each run\n", b.originPEM)
}

// startPicketPair starts a Picket for tunnels and one for interception
// and returns its column.
func (b *bench) startPicketPair(name, bin, env string, logOn bool) (column, *picket, error) {
	tunnelCfg, mitmCfg := b.picketConfigs()
	suffix := strings.TrimPrefix(name, "picket") + logSuffix(logOn)
	o := picketOpts{bin: bin, env: env, name: "tunnel" + suffix, extra: tunnelCfg, noAccessLog: !logOn, feeds: b.feeds, admin: true}
	t, err := startPicketWith(b.dir, o)
	if err != nil {
		return column{}, nil, err
	}
	b.stopLater(t.stop)
	o.name, o.extra = "mitm"+suffix, mitmCfg
	m, err := startPicketWith(b.dir, o)
	if err != nil {
		return column{}, nil, err
	}
	b.stopLater(m.stop)
	b.warmed = append(b.warmed, t, m)
	pt, pm := &proc{t.url, t.cpu}, &proc{m.url, m.cpu}
	if name == "picket" {
		b.pickets = [rowKinds]*picket{t, t, m, m}
		if showConfigs {
			fmt.Printf("-- picket (plain and tunnel rows), %s built with %s: picket serve -config picket.toml:\n%s-- picket (intercepted rows): the same with\n%s",
				bin, goVersionOf(bin), t.conf, mitmCfg)
		}
	}
	return column{name: name, procs: [rowKinds]*proc{pt, pt, pm, pm}}, t, nil
}

// startField starts every contestant: Picket first, then picket-b, the
// peers and the floor as the flags ask. It returns the columns and the
// tunnel Picket (for the memory sections).
func (b *bench) startField(logOn bool) ([]column, *picket, error) {
	b.warmed = nil
	pk, tunnel, err := b.startPicketPair("picket", b.bin, picketEnv, logOn)
	if err != nil {
		return nil, nil, err
	}
	field := []column{pk}
	if bBin != "" || bEnv != "" {
		bin, env := b.bin, strings.TrimSpace(picketEnv+" "+bEnv)
		if bBin != "" {
			bin = bBin
		}
		c, _, err := b.startPicketPair("picket-b", bin, env, logOn)
		if err != nil {
			return nil, nil, err
		}
		field = append(field, c)
	}
	if withPeers {
		peers, err := b.startPeers(logOn)
		if err != nil {
			return nil, nil, err
		}
		field = append(field, peers...)
	}
	if withFloor {
		t, err := startGoTunnel()
		if err != nil {
			return nil, nil, err
		}
		b.stopLater(t.stop)
		f, err := startGoForward()
		if err != nil {
			return nil, nil, err
		}
		b.stopLater(f.stop)
		fw := f.proc()
		if showConfigs {
			fmt.Printf("-- floor: loadbench -serve-goforward (HTTP and intercepted rows), loadbench -serve-gotunnel (tunnel rows): cmd/loadbench/floor.go, built with %s; no access log; "+
				"Go's runtime as Picket sets it by default: %s\n", runtime.Version(), strings.Join(floorEnv(), " "))
		}
		field = append(field, column{name: "floor", procs: [rowKinds]*proc{fw, t.proc(), fw, fw}})
	}
	return field, tunnel, nil
}

// startPeers starts squid, tinyproxy, bare goproxy (forwarding and
// intercepting) and mitmproxy.
func (b *bench) startPeers(logOn bool) ([]column, error) {
	var procs []*peer
	for _, start := range []func() (*peer, error){
		func() (*peer, error) { return startSquid(b.dir, logOn) },
		func() (*peer, error) { return startTinyproxy(b.dir, logOn) },
		func() (*peer, error) { return startGoproxy(false) },
		func() (*peer, error) { return startGoproxy(true) },
		func() (*peer, error) { return startMitmproxy(b.dir, logOn) },
	} {
		p, err := start()
		if err != nil {
			return nil, err
		}
		b.stopLater(p.stop)
		procs = append(procs, p)
		if verbose || showConfigs {
			fmt.Printf("-- %s\n%s", p.name, p.conf)
		}
	}
	squid, tiny, gp, gpm, mp := procs[0].proc(), procs[1].proc(), procs[2].proc(), procs[3].proc(), procs[4].proc()
	return []column{
		{name: "squid", procs: [rowKinds]*proc{squid, squid, nil, nil}},
		{name: "tinyproxy", procs: [rowKinds]*proc{tiny, tiny, nil, nil}},
		// goproxy's MITM answers http/1.1 only (its HTTP/2 path would
		// skip per-request handlers): no entry on the HTTP/2 row.
		{name: "goproxy", procs: [rowKinds]*proc{gp, gp, gpm, nil}},
		// mitmproxy intercepts (HTTP/1.1 and HTTP/2 on both sides); it
		// does not forward the plain rows here.
		{name: "mitmproxy", procs: [rowKinds]*proc{nil, nil, mp, mp}},
	}, nil
}

func (b *bench) printHeader(field []column, logOn bool) {
	setting := "OFF for every contestant (Picket access_log = \"off\", squid access_log none, tinyproxy LogLevel Critical, mitmdump flow_detail=0)"
	if logOn {
		setting = "ON for every contestant that has one (Picket a file, squid daemon: buffered, tinyproxy LogLevel Info, mitmdump flow_detail=1)"
	}
	fmt.Printf("\n== Access log %s\n", setting)
	fmt.Printf("loadbench: %d rounds (tunnel rows %d) of %s per proxy, scenario and generator; origins and the go generator in this process; 2 cores shared by all.\n",
		rounds, max(rounds, tunnelRounds), b.dur)
	fmt.Printf("Each round measures direct, then every proxy in a rotated order. Each proxy column: the median over the rounds\n")
	fmt.Printf("of its throughput as a ratio to the round's direct run, its CPU per request (per MiB for 10 MiB rows: divide by 10).\n")
	fmt.Printf("gen: go (in-process), wrk (HTTP rows), hey (HTTPS rows; one URL of the mix per run; HTTP/2: conns x streams workers on hey's connections;\n")
	fmt.Printf("     on the keep-alive rows hey runs %s at least, so that the dial race at its start is a small part of the run).\n", max(b.dur, heyShared))
	fmt.Printf("/floor: Picket's CPU per request over the floor's (go-forward on HTTP rows, go-tunnel on tunnel rows, go-forward intercepting on\n")
	fmt.Printf("intercepted rows). A row is MET when by both generators Picket's ratio is at least the best peer's (tunnel rows 0.95x) and\n")
	fmt.Printf("its CPU per request within 1.2x the floor's (tunnel rows 1.15x).\n\n")
	header := fmt.Sprintf("%-42s %-3s %10s | %-34s %6s", "scenario", "gen", "direct/s", "picket: ratio  cpu/req   p50    p99", "/floor")
	for _, c := range field[1:] {
		header += fmt.Sprintf(" | %-16s", c.name)
	}
	fmt.Println(header)
}

// sections runs the sections after the table that -only selects: memory
// of a streamed body, of idle connections and tunnels, and scanning.
func (b *bench) sections(tunnel *picket) error {
	// Memory: a 64 MiB upload and download streamed through the proxy must
	// not grow its resident set by more than a few MiB.
	if selected(b.only, "memory") {
		rss0 := tunnel.rss()
		if err := stream64(b.origin.URL, tunnel.url); err != nil {
			return err
		}
		fmt.Printf("\n64 MiB POST echoed through the proxy: RSS before %.1f MiB, after %.1f MiB, peak %.1f MiB\n",
			mib(rss0), mib(tunnel.rss()), mib(tunnel.hwm()))
	}
	if selected(b.only, "connections") {
		if err := connMemory(tunnel, b.origin.URL, 10000, 1000); err != nil {
			return fmt.Errorf("connection memory: %w", err)
		}
	}
	if selected(b.only, "scanning") {
		return scanning(b.bin, b.dir, b.origin.URL)
	}
	return nil
}
