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
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"math/big"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/picket-proxy/picket/internal/procstat"
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
	case ctx.Err() != nil && (err != nil || failure != ""):
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

// clients are the HTTP clients of the soak: plain through the proxy, through
// a tunnel (trusting only the origin's CA: an intercepted tunnel would
// fail), and intercepted (trusting only Picket's CA).
type clients struct {
	proxyURL          *url.URL
	picketPool        *x509.CertPool
	plain, tunnel     *http.Client
	mitm              *http.Client
	plainTr, tunnelTr *http.Transport
	mitmTr            *http.Transport
}

func newClients(proxy *url.URL, originCA, picketCA *x509.Certificate) *clients {
	op, pp := x509.NewCertPool(), x509.NewCertPool()
	op.AddCert(originCA)
	pp.AddCert(picketCA)
	mk := func(pool *x509.CertPool) *http.Transport {
		return &http.Transport{Proxy: http.ProxyURL(proxy), MaxIdleConnsPerHost: 32, DisableCompression: true,
			TLSClientConfig: &tls.Config{RootCAs: pool}}
	}
	c := &clients{proxyURL: proxy, picketPool: pp, plainTr: mk(nil), tunnelTr: mk(op), mitmTr: mk(pp)}
	c.plain = &http.Client{Transport: c.plainTr, Timeout: time.Minute}
	c.tunnel = &http.Client{Transport: c.tunnelTr, Timeout: time.Minute}
	c.mitm = &http.Client{Transport: c.mitmTr, Timeout: time.Minute}
	return c
}

func (c *clients) closeIdle() {
	for _, tr := range []*http.Transport{c.plainTr, c.tunnelTr, c.mitmTr} {
		tr.CloseIdleConnections()
	}
}

func (c *clients) close() { c.closeIdle() }

// getObject fetches a deterministic object of random size and checks it.
func (c *clients) getObject(ctx context.Context, hc *http.Client, base string, rng *mrand.Rand, kind string) (string, error) {
	seed, size := rng.Uint32(), sizeOf(rng)
	status, body, err := get(ctx, hc, fmt.Sprintf("%s%s%d/%d", base, kind, seed, size))
	if err != nil {
		return "", err
	}
	if want := sum(object(seed, size)); status != 200 || sum(body) != want {
		return fmt.Sprintf("%s%d/%d: got %d, %d bytes, want 200 and %d bytes with its checksum", kind, seed, size, status, len(body), size), nil
	}
	return "", nil
}

// postEcho uploads a deterministic body and checks the echo.
func (c *clients) postEcho(ctx context.Context, hc *http.Client, base string, rng *mrand.Rand) (string, error) {
	seed, size := rng.Uint32(), sizeOf(rng)
	body := object(seed, size)
	req, _ := http.NewRequestWithContext(ctx, "POST", base+"/echo", strings.NewReader(string(body)))
	resp, err := hc.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	got, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != 200 || sum(got) != sum(body) {
		return fmt.Sprintf("echo of %d bytes: got %d, %d bytes", size, resp.StatusCode, len(got)), nil
	}
	return "", nil
}

func get(ctx context.Context, hc *http.Client, u string) (int, []byte, error) {
	req, _ := http.NewRequestWithContext(ctx, "GET", u, nil)
	resp, err := hc.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

// sizeOf picks a body size: mostly small, sometimes up to 4 MiB.
func sizeOf(rng *mrand.Rand) int {
	switch rng.IntN(10) {
	case 0:
		return rng.IntN(4 << 20)
	case 1, 2:
		return rng.IntN(256 << 10)
	}
	return rng.IntN(16 << 10)
}

// object is the deterministic body for seed and size. Its first bytes are
// never a known file magic, so the scanner leaves it alone.
func object(seed uint32, size int) []byte {
	var s [32]byte
	binary.LittleEndian.PutUint32(s[:], seed)
	b := make([]byte, size)
	_, _ = mrand.NewChaCha8(s).Read(b)
	if size > 0 {
		b[0] = 'o'
	}
	return b
}

var cleanPE = func() []byte {
	b := object(7, 300<<10)
	copy(b, "MZ")
	return b
}()

func sum(b []byte) [32]byte { return sha256.Sum256(b) }

// originMux serves /obj/SEED/SIZE (Content-Length), /chunked/SEED/SIZE
// (unknown length, flushed in pieces), /echo, /eicar.com and /clean.exe.
func originMux() *http.ServeMux {
	mux := http.NewServeMux()
	parse := func(r *http.Request) (uint32, int, bool) {
		seed, err1 := strconv.ParseUint(r.PathValue("seed"), 10, 32)
		size, err2 := strconv.Atoi(r.PathValue("size"))
		return uint32(seed), size, err1 == nil && err2 == nil && size >= 0 && size <= 64<<20
	}
	mux.HandleFunc("GET /obj/{seed}/{size}", func(w http.ResponseWriter, r *http.Request) {
		seed, size, ok := parse(r)
		if !ok {
			http.Error(w, "bad object", 400)
			return
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Content-Length", strconv.Itoa(size))
		_, _ = w.Write(object(seed, size))
	})
	mux.HandleFunc("GET /chunked/{seed}/{size}", func(w http.ResponseWriter, r *http.Request) {
		seed, size, ok := parse(r)
		if !ok {
			http.Error(w, "bad object", 400)
			return
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		b := object(seed, size)
		for len(b) > 0 {
			n := min(len(b), 32<<10)
			if _, err := w.Write(b[:n]); err != nil {
				return
			}
			w.(http.Flusher).Flush()
			b = b[n:]
		}
	})
	mux.HandleFunc("POST /echo", func(w http.ResponseWriter, r *http.Request) {
		// Read first: an HTTP/1 handler that writes before it has read the
		// body loses the rest of it (net/http discards it).
		b, err := io.ReadAll(r.Body)
		if err != nil {
			return
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		_, _ = w.Write(b)
	})
	mux.HandleFunc("GET /eicar.com", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/octet-stream")
		_, _ = io.WriteString(w, eicar)
	})
	mux.HandleFunc("GET /clean.exe", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/octet-stream")
		_, _ = w.Write(cleanPE)
	})
	return mux
}

func startOrigin(h http.Handler, ip string, cert *tls.Certificate) *httptest.Server {
	s := httptest.NewUnstartedServer(h)
	ln, err := net.Listen("tcp", ip+":0")
	if err != nil {
		log.Fatalf("soak: origin on %s: %v", ip, err)
	}
	s.Listener.Close()
	s.Listener = ln
	s.Config.ErrorLog = log.New(io.Discard, "", 0) // aborted clients are expected
	if cert == nil {
		s.Start()
		return s
	}
	s.TLS = &tls.Config{Certificates: []tls.Certificate{*cert}}
	s.StartTLS()
	return s
}

// originPKI makes a CA and a leaf for 127.0.0.1 and 127.0.0.2.
func originPKI() (*x509.Certificate, *tls.Certificate, error) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	now := time.Now()
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "soak origin CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, nil, err
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "soak origin"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1), net.IPv4(127, 0, 0, 2)},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, KeyUsage: x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return nil, nil, err
	}
	return ca, &tls.Certificate{Certificate: [][]byte{der, caDER}, PrivateKey: key}, nil
}

func readCert(path string) (*x509.Certificate, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, fmt.Errorf("%s: no PEM", path)
	}
	return x509.ParseCertificate(blk.Bytes)
}

// picket is the process under test.
type picket struct {
	cmd     *exec.Cmd
	url     *url.URL
	admin   string
	tempDir string
}

func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

func startPicket(bin, dir, originCA string) (*picket, error) {
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	admin, err := freeAddr()
	if err != nil {
		return nil, err
	}
	feeds, err := filepath.Abs(filepath.Join("data", "feeds"))
	if err != nil {
		return nil, err
	}
	sigs, err := filepath.Abs(filepath.Join("data", "signatures"))
	if err != nil {
		return nil, err
	}
	tmp := filepath.Join(dir, "spool")
	if err := os.MkdirAll(tmp, 0o700); err != nil {
		return nil, err
	}
	// Loopback destinations only; bodies spill to our own temp directory
	// early so that temp files are exercised and counted.
	cfg := fmt.Sprintf(`[proxy]
listen = %q
allow_destinations = ["127.0.0.0/8"]
allow_ports = ["1-65535"]
[admin]
listen = %q
[log]
format = "json"
level = "error"
access_log = %q
[tls]
extra_roots = [%q]
bypass = ["127.0.0.2"]
auto_bypass = "0s"
[reputation.kpsn]
database = %q
[scanner]
mode = "buffer"
memory_threshold = "64KiB"
temp_dir = %q
signatures = [%q, %q]
`, addr, admin, filepath.Join(dir, "access.log"), originCA, feeds, tmp,
		filepath.Join(sigs, "*.hsb"), filepath.Join(sigs, "*.fp"))
	path := filepath.Join(dir, "picket.toml")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, "serve", "-config", path)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &picket{cmd: cmd, url: &url.URL{Scheme: "http", Host: addr}, admin: admin, tempDir: tmp}
	deadline := time.Now().Add(15 * time.Second)
	for {
		if _, err := p.metrics(); err == nil {
			if c, err := net.Dial("tcp", addr); err == nil {
				c.Close()
				return p, nil
			}
		}
		if time.Now().After(deadline) {
			p.stop()
			return nil, fmt.Errorf("picket did not start listening on %s and %s", addr, admin)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (p *picket) stop() {
	_ = p.cmd.Process.Signal(os.Interrupt)
	done := make(chan struct{})
	go func() { _ = p.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-done
	}
}

// metrics reads picket's Prometheus metrics (loopback needs no token for
// reading) into name → value, for unlabelled series.
func (p *picket) metrics() (map[string]float64, error) {
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get("http://" + p.admin + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return nil, fmt.Errorf("admin /metrics: %s", resp.Status)
	}
	m := make(map[string]float64)
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' || strings.Contains(line, "{") {
			continue
		}
		name, val, ok := strings.Cut(line, " ")
		if !ok {
			continue
		}
		if v, err := strconv.ParseFloat(strings.Fields(val)[0], 64); err == nil {
			m[name] = v
		}
	}
	return m, sc.Err()
}

// sample is picket's resource use at one moment.
type sample struct {
	goroutines, fds, tempFiles int
	// pipes are counted apart from fds: they are kept for splice(2) —
	// Picket's free list of tunnel pipes (up to 64, kept while idle; a
	// tunnel takes at most one per direction) and the runtime's pool for
	// TCP-to-TCP body copies, a sync.Pool that only a garbage collection
	// empties, and an idle process collects only every two minutes.
	pipes     int
	heap, rss int64
}

func (p *picket) sample() (sample, error) {
	m, err := p.metrics()
	if err != nil {
		return sample{}, err
	}
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", p.cmd.Process.Pid))
	if err != nil {
		return sample{}, err
	}
	var pipes int
	for _, e := range fds {
		if t, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", p.cmd.Process.Pid, e.Name())); err == nil && strings.HasPrefix(t, "pipe:") {
			pipes++
		}
	}
	var temp int
	_ = filepath.WalkDir(p.tempDir, func(_ string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			temp++
		}
		return nil
	})
	return sample{goroutines: int(m["go_goroutines"]), fds: len(fds) - pipes, pipes: pipes, tempFiles: temp,
		heap: int64(m["go_memstats_heap_inuse_bytes"]), rss: p.mem().RSS}, nil
}

// within reports whether s is back to the baseline b within the tolerances.
func (s sample) within(b sample, o options) bool { return s.leak(b, o) == "" }

func (s sample) leak(b sample, o options) string {
	var out []string
	if s.goroutines > b.goroutines+o.tolGoroutines {
		out = append(out, fmt.Sprintf("goroutines %d → %d", b.goroutines, s.goroutines))
	}
	if s.fds > b.fds+o.tolFDs {
		out = append(out, fmt.Sprintf("open files %d → %d", b.fds, s.fds))
	}
	if s.pipes > b.pipes+4*o.workers { // two fds per pipe, at most one pipe per direction in flight
		out = append(out, fmt.Sprintf("splice pipes %d → %d", b.pipes, s.pipes))
	}
	if s.tempFiles > b.tempFiles {
		out = append(out, fmt.Sprintf("temp files %d → %d", b.tempFiles, s.tempFiles))
	}
	if s.heap > b.heap+o.tolHeapMiB<<20 {
		out = append(out, fmt.Sprintf("heap in use %.1f → %.1f MiB", mib(b.heap), mib(s.heap)))
	}
	return strings.Join(out, ", ")
}

// fdReport groups picket's open files: sockets by TCP state and by the
// role of the peer port (client side, origin, admin), other files by path.
func (p *picket) fdReport(t targets) string {
	pid := p.cmd.Process.Pid
	sockets := map[string]string{} // inode → "state local → remote"
	states := map[string]string{"01": "ESTABLISHED", "06": "TIME_WAIT", "07": "CLOSE", "08": "CLOSE_WAIT",
		"0A": "LISTEN", "04": "FIN_WAIT1", "05": "FIN_WAIT2", "09": "LAST_ACK", "0B": "CLOSING"}
	roles := map[string]string{}
	for name, u := range map[string]string{"plain origin": t.plain, "intercepted origin": t.mitm, "tunnel origin": t.tunnel} {
		if pu, err := url.Parse(u); err == nil {
			roles[pu.Port()] = name
		}
	}
	_, proxyPort, _ := net.SplitHostPort(t.proxy)
	_, adminPort, _ := net.SplitHostPort(p.admin)
	roles[proxyPort], roles[adminPort] = "proxy port", "admin port"
	port := func(hexAddr string) string {
		_, h, _ := strings.Cut(hexAddr, ":")
		n, _ := strconv.ParseUint(h, 16, 16)
		return strconv.FormatUint(n, 10)
	}
	for _, f := range []string{"tcp", "tcp6"} {
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/net/%s", pid, f))
		for _, line := range strings.Split(string(b), "\n")[1:] {
			fs := strings.Fields(line)
			if len(fs) < 10 {
				continue
			}
			lp, rp := port(fs[1]), port(fs[2])
			role := roles[lp]
			if role == "" {
				role = roles[rp]
			}
			if role == "" {
				role = "other"
			}
			sockets[fs[9]] = fmt.Sprintf("%-12s %s", states[fs[3]], role)
		}
	}
	count := map[string]int{}
	entries, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	for _, e := range entries {
		target, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, e.Name()))
		if err != nil {
			continue
		}
		key := target
		if strings.HasPrefix(target, "socket:[") {
			key = "socket (not TCP)"
			if s, ok := sockets[strings.TrimSuffix(strings.TrimPrefix(target, "socket:["), "]")]; ok {
				key = "tcp " + s
			}
		}
		count[key]++
	}
	var b strings.Builder
	for k, n := range count {
		fmt.Fprintf(&b, "  %4d  %s\n", n, k)
	}
	return b.String()
}

// status returns a size field of /proc/PID/status in bytes.
func (p *picket) mem() procstat.Mem { return procstat.Memory(p.cmd.Process.Pid) }

func mib(b int64) float64 { return float64(b) / (1 << 20) }
