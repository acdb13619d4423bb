// Command soak runs a bounded soak of mixed traffic through the picket
// binary and checks that nothing is lost: it starts local origins and
// picket (with interception, download scanning and the demo reputation
// feeds), drives plain requests, CONNECT tunnels, intercepted HTTPS, scanned
// downloads, blocked requests and aborted clients for -duration,
// checksumming every body, then lets picket settle and compares its
// goroutines, open files, heap and temp files with the baseline taken before
// the load. It prints its figures and exits non-zero on any wrong answer or
// a leak beyond the tolerances. Everything runs on loopback: no name is ever
// resolved.
package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/picket-proxy/picket/internal/deadline"
)

func main() {
	o := options{}
	flag.StringVar(&o.bin, "bin", "bin/picket", "picket binary to soak")
	flag.DurationVar(&o.duration, "duration", 2*time.Minute, "length of the mixed load")
	flag.IntVar(&o.workers, "workers", 16, "concurrent clients")
	flag.DurationVar(&o.settle, "settle", 15*time.Second, "longest wait for picket to return to its baseline")
	flag.IntVar(&o.tolGoroutines, "tolerance-goroutines", 10, "goroutines allowed above the baseline after settling")
	flag.IntVar(&o.tolFDs, "tolerance-fds", 8, "open files (pipes apart) allowed above the baseline after settling")
	flag.Int64Var(&o.tolHeapMiB, "tolerance-heap", 64, "MiB of heap in use allowed above the baseline after settling")
	flag.Parse()
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "soak:", err)
		os.Exit(1)
	}
}

type options struct {
	bin                   string
	duration, settle      time.Duration
	workers               int
	tolGoroutines, tolFDs int
	tolHeapMiB            int64
}

const eicar = `X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*`

func run(o options) error {
	dir, err := os.MkdirTemp("", "picket-soak")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	// 1. Origins: plain HTTP on 127.0.0.1, HTTPS on 127.0.0.1 (intercepted)
	// and on 127.0.0.2 (bypassed, so CONNECT is a plain tunnel), all with a
	// certificate from a CA of our own that picket trusts as an extra root.
	originCA, leaf, err := originPKI()
	if err != nil {
		return err
	}
	caPEM := filepath.Join(dir, "origin-ca.pem")
	if err := os.WriteFile(caPEM, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: originCA.Raw}), 0o644); err != nil {
		return err
	}
	mux := originMux()
	plain := startOrigin(mux, "127.0.0.1", nil)
	defer plain.Close()
	mitmOrigin := startOrigin(mux, "127.0.0.1", leaf)
	defer mitmOrigin.Close()
	tunnelOrigin := startOrigin(mux, "127.0.0.2", leaf)
	defer tunnelOrigin.Close()

	// 2. Picket.
	p, err := startPicket(o.bin, dir, caPEM)
	if err != nil {
		return err
	}
	defer p.stop()
	picketCA, err := readCert(filepath.Join(dir, "data", "ca", "picket-ca.pem"))
	if err != nil {
		return err
	}
	cl := newClients(p.url, originCA, picketCA)
	defer cl.close()
	targets := targets{plain: plain.URL, mitm: mitmOrigin.URL, tunnel: tunnelOrigin.URL, proxy: p.url.Host}

	// 3. Warm up every path once (certificate cache, pools, scanner), then
	// take the baseline with every connection closed.
	var st stats
	for _, sc := range scenarios {
		sc.run(context.Background(), cl, targets, mrand.New(mrand.NewPCG(1, 2)), &st)
	}
	if st.failures.Load() > 0 {
		return fmt.Errorf("warm-up failed: %s", st.firstFailure())
	}
	quiesce := func() {
		cl.closeIdle()
		for _, s := range []*httptest.Server{plain, mitmOrigin, tunnelOrigin} {
			s.CloseClientConnections()
		}
	}
	quiesce()
	time.Sleep(time.Second)
	before, err := p.sample()
	if err != nil {
		return err
	}

	// 4. The mixed load.
	fmt.Printf("soak: %s of mixed traffic, %d clients, picket pid %d\n", o.duration, o.workers, p.cmd.Process.Pid)
	st = stats{}
	ctx, cancel := context.WithTimeout(context.Background(), o.duration)
	defer cancel()
	var peak atomic.Int64
	go func() {
		for ctx.Err() == nil {
			if r := p.mem().RSS; r > peak.Load() {
				peak.Store(r)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}()
	var wg sync.WaitGroup
	for w := range o.workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := mrand.New(mrand.NewPCG(uint64(w), 99))
			for ctx.Err() == nil {
				sc := pick(rng)
				sc.run(ctx, cl, targets, rng, &st)
			}
		}()
	}
	wg.Wait()

	// 5. Settle: every client and origin connection closed, picket must
	// come back to its baseline.
	quiesce()
	deadline := time.Now().Add(o.settle)
	var after sample
	for {
		if after, err = p.sample(); err != nil {
			return err
		}
		if after.within(before, o) || time.Now().After(deadline) {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}

	// 6. Figures and verdict.
	fmt.Println("\nrequests")
	for _, sc := range scenarios {
		fmt.Printf("  %-28s %8d\n", sc.name, st.count(sc.name))
	}
	fmt.Printf("  %-28s %8d\n", "total", st.total.Load())
	fmt.Printf("  %-28s %8d\n", "wrong bodies or statuses", st.failures.Load())
	fmt.Printf("  %-28s %8d\n", "transport errors", st.errors.Load())
	fmt.Printf("\n%-22s %12s %12s\n", "picket", "before", "after")
	fmt.Printf("  %-20s %12d %12d\n", "goroutines", before.goroutines, after.goroutines)
	fmt.Printf("  %-20s %12d %12d\n", "open files", before.fds, after.fds)
	fmt.Printf("  %-20s %12d %12d\n", "splice pipe fds", before.pipes, after.pipes)
	fmt.Printf("  %-20s %12d %12d\n", "temp files", before.tempFiles, after.tempFiles)
	fmt.Printf("  %-20s %9.1f MiB %8.1f MiB\n", "heap in use", mib(before.heap), mib(after.heap))
	fmt.Printf("  %-20s %9.1f MiB %8.1f MiB\n", "RSS", mib(before.rss), mib(after.rss))
	fmt.Printf("  %-20s %12s %8.1f MiB\n", "peak RSS", "", mib(max(peak.Load(), p.mem().HWM)))

	var problems []string
	if n := st.failures.Load(); n > 0 {
		problems = append(problems, fmt.Sprintf("%d wrong answers (first: %s)", n, st.firstFailure()))
	}
	if n := st.errors.Load(); n > 0 {
		problems = append(problems, fmt.Sprintf("%d transport errors (first: %s)", n, st.firstError()))
	}
	if !after.within(before, o) {
		problems = append(problems, fmt.Sprintf("picket did not return to its baseline within %s: %s", o.settle, after.leak(before, o)))
		fmt.Printf("\nopen files of picket after settling:\n%s", p.fdReport(targets))
	}
	if len(problems) > 0 {
		return errors.New(strings.Join(problems, "; "))
	}
	fmt.Println("\nsoak: PASS")
	return nil
}

// targets are the origin URLs and the proxy address.
type targets struct{ plain, mitm, tunnel, proxy string }

// stats counts outcomes; failures are wrong statuses or bodies, errors are
// requests that did not complete where they should have.
type stats struct {
	total, failures, errors atomic.Int64
	byName                  sync.Map // name → *atomic.Int64
	mu                      sync.Mutex
	failure, err            string
}

func (s *stats) count(name string) int64 {
	if v, ok := s.byName.Load(name); ok {
		return v.(*atomic.Int64).Load()
	}
	return 0
}

func (s *stats) done(name string) {
	s.total.Add(1)
	v, _ := s.byName.LoadOrStore(name, new(atomic.Int64))
	v.(*atomic.Int64).Add(1)
}

func (s *stats) fail(name, format string, args ...any) {
	s.failures.Add(1)
	s.mu.Lock()
	if s.failure == "" {
		s.failure = name + ": " + fmt.Sprintf(format, args...)
	}
	s.mu.Unlock()
}

func (s *stats) error(name string, err error) {
	s.errors.Add(1)
	s.mu.Lock()
	if s.err == "" {
		s.err = name + ": " + err.Error()
	}
	s.mu.Unlock()
}

func (s *stats) firstFailure() string { s.mu.Lock(); defer s.mu.Unlock(); return s.failure }
func (s *stats) firstError() string   { s.mu.Lock(); defer s.mu.Unlock(); return s.err }

// scenario is one kind of traffic, with its weight in the mix.
type scenario struct {
	name   string
	weight int
	do     func(ctx context.Context, cl *clients, t targets, rng *mrand.Rand) (failure string, err error)
}

func (sc scenario) run(ctx context.Context, cl *clients, t targets, rng *mrand.Rand, st *stats) {
	failure, err := sc.do(ctx, cl, t, rng)
	switch {
	case deadline.Reached(ctx) && (err != nil || failure != ""):
		return // cut by the end of the run
	case err != nil:
		st.error(sc.name, err)
	case failure != "":
		st.fail(sc.name, "%s", failure)
	}
	st.done(sc.name)
}

func pick(rng *mrand.Rand) scenario {
	total := 0
	for _, sc := range scenarios {
		total += sc.weight
	}
	n := rng.IntN(total)
	for _, sc := range scenarios {
		if n < sc.weight {
			return sc
		}
		n -= sc.weight
	}
	return scenarios[0]
}

var scenarios = []scenario{
	{"plain GET", 20, func(ctx context.Context, cl *clients, t targets, rng *mrand.Rand) (string, error) {
		return cl.getObject(ctx, cl.plain, t.plain, rng, "/obj/")
	}},
	{"plain GET chunked", 8, func(ctx context.Context, cl *clients, t targets, rng *mrand.Rand) (string, error) {
		return cl.getObject(ctx, cl.plain, t.plain, rng, "/chunked/")
	}},
	{"plain POST echo", 8, func(ctx context.Context, cl *clients, t targets, rng *mrand.Rand) (string, error) {
		return cl.postEcho(ctx, cl.plain, t.plain, rng)
	}},
	{"CONNECT tunnel", 12, func(ctx context.Context, cl *clients, t targets, rng *mrand.Rand) (string, error) {
		return cl.getObject(ctx, cl.tunnel, t.tunnel, rng, "/obj/")
	}},
	{"intercepted GET", 12, func(ctx context.Context, cl *clients, t targets, rng *mrand.Rand) (string, error) {
		return cl.getObject(ctx, cl.mitm, t.mitm, rng, "/obj/")
	}},
	{"intercepted POST echo", 6, func(ctx context.Context, cl *clients, t targets, rng *mrand.Rand) (string, error) {
		return cl.postEcho(ctx, cl.mitm, t.mitm, rng)
	}},
	{"scanned clean PE", 6, func(ctx context.Context, cl *clients, t targets, rng *mrand.Rand) (string, error) {
		c, base := cl.plain, t.plain
		if rng.IntN(2) == 0 {
			c, base = cl.mitm, t.mitm
		}
		status, body, err := get(ctx, c, base+"/clean.exe")
		if err != nil {
			return "", err
		}
		if want := sum(cleanPE); status != 200 || sum(body) != want {
			return fmt.Sprintf("clean PE: got %d, %d bytes, want 200 and %d bytes with its checksum", status, len(body), len(cleanPE)), nil
		}
		return "", nil
	}},
	{"scanned EICAR blocked", 4, func(ctx context.Context, cl *clients, t targets, rng *mrand.Rand) (string, error) {
		c, base := cl.plain, t.plain
		if rng.IntN(2) == 0 {
			c, base = cl.mitm, t.mitm
		}
		status, body, err := get(ctx, c, base+"/eicar.com")
		if err != nil {
			return "", err
		}
		if status != http.StatusForbidden || strings.Contains(string(body), "EICAR-STANDARD") {
			return fmt.Sprintf("EICAR: got %d (%d bytes), want 403 without the file", status, len(body)), nil
		}
		return "", nil
	}},
	{"blocked by reputation", 6, func(ctx context.Context, cl *clients, t targets, rng *mrand.Rand) (string, error) {
		status, _, err := get(ctx, cl.plain, "http://phishing.picket.test/")
		if err != nil {
			return "", err
		}
		if status != http.StatusForbidden {
			return fmt.Sprintf("phishing.picket.test: got %d, want 403", status), nil
		}
		return "", nil
	}},
	{"aborted download", 6, func(ctx context.Context, cl *clients, t targets, rng *mrand.Rand) (string, error) {
		// A fresh connection, cut after the first 64 KiB of 8 MiB.
		tr := &http.Transport{Proxy: http.ProxyURL(cl.proxyURL), DisableKeepAlives: true,
			TLSClientConfig: &tls.Config{RootCAs: cl.picketPool}}
		defer tr.CloseIdleConnections()
		base := []string{t.plain, t.mitm}[rng.IntN(2)]
		actx, cancel := context.WithCancel(ctx)
		defer cancel()
		req, _ := http.NewRequestWithContext(actx, "GET", fmt.Sprintf("%s/obj/%d/%d", base, rng.Uint32(), 8<<20), nil)
		resp, err := (&http.Client{Transport: tr}).Do(req)
		if err != nil {
			return "", err
		}
		_, err = io.CopyN(io.Discard, resp.Body, 64<<10)
		cancel()
		resp.Body.Close()
		return "", err
	}},
	{"aborted raw client", 4, func(ctx context.Context, cl *clients, t targets, rng *mrand.Rand) (string, error) {
		// Half a request, a CONNECT cut mid-handshake, or a body cut short.
		c, err := (&net.Dialer{Timeout: 5 * time.Second}).DialContext(ctx, "tcp", t.proxy)
		if err != nil {
			return "", err
		}
		defer c.Close()
		host := strings.TrimPrefix(t.plain, "http://")
		switch rng.IntN(3) {
		case 0:
			fmt.Fprintf(c, "GET http://%s/obj/1/10 HTTP/1.1\r\nHost: %s\r\nX-Half", host, host)
		case 1:
			mhost := strings.TrimPrefix(t.mitm, "https://")
			fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n\x16\x03\x01\x02\x00\x01", mhost, mhost)
			_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
			_, _ = bufio.NewReader(c).ReadString('\n')
		case 2:
			fmt.Fprintf(c, "POST http://%s/echo HTTP/1.1\r\nHost: %s\r\nContent-Length: 100000\r\n\r\npartial", host, host)
		}
		time.Sleep(time.Duration(rng.IntN(50)) * time.Millisecond)
		return "", nil
	}},
}
