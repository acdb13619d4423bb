package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	crand "crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"io"
	"log"
	"math/big"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/picket-proxy/picket/internal/deadline"
)

// targets gives each worker of a run its sequence of request URLs from
// the mix.
type targets struct {
	base string // scheme://, the host goes after it
	port string // :port of the origin
	path string // the scenario's path prefix ("/1k", "/10m")
	mix  *urlMix
	seed uint64 // this run's: every run draws a sequence of its own
	// stick keeps a worker on one host (its keep-alive connection or
	// HTTP/2 connection through a tunnel goes to one site, as a browser's
	// does), the paths still drawn from the mix.
	stick bool
}

// runSeq numbers the runs, for their seeds.
var runSeq atomic.Uint64

// newTargets returns the targets of one run of sc against origin
// (scheme://127.0.0.1:port).
func newTargets(sc scenario, origin string, mix *urlMix) *targets {
	u, _ := url.Parse(origin)
	return &targets{base: u.Scheme + "://", port: ":" + u.Port(), path: sc.path, mix: mix,
		seed: runSeq.Add(1) << 20, stick: sc.https && !sc.fresh}
}

// worker returns worker i's next-URL function; host is the host it
// keeps when the targets stick.
func (t *targets) worker(i, host int) func() string {
	src := t.mix.source(t.seed + uint64(i))
	if !t.stick {
		host = -1
	}
	return func() string {
		h, p := src.next(t.mix, t.path, host)
		return t.base + t.mix.hosts[h] + t.port + p
	}
}

// load runs sc against the targets for dur, through proxy when not nil.
func load(sc scenario, tg *targets, proxy *url.URL, dur time.Duration) result {
	if sc.h2 {
		return loadH2(sc, tg, proxy, dur)
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
	var firstErr atomic.Pointer[string]
	var wg sync.WaitGroup
	var lat latencies
	start := time.Now()
	for w := range sc.conns {
		wg.Add(1)
		next := tg.worker(w, w)
		go func() {
			defer wg.Done()
			var mine []time.Duration
			defer func() { lat.add(mine) }()
			for ctx.Err() == nil {
				t0 := time.Now()
				req, _ := http.NewRequestWithContext(ctx, "GET", next(), nil)
				resp, err := client.Do(req)
				if err != nil {
					if !deadline.Reached(ctx) {
						errs.Add(1)
						noteErr(&firstErr, err.Error())
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
				} else if !deadline.Reached(ctx) {
					errs.Add(1)
					noteErr(&firstErr, fmt.Sprintf("status %d, %v", resp.StatusCode, err))
				}
			}
		}()
	}
	wg.Wait()
	return result{n: n.Load(), errs: errs.Load(), d: time.Since(start), lat: lat.sorted(), firstErr: loadErr(&firstErr)}
}

// latencies gathers the workers' latency samples of a run.
type latencies struct {
	mu  sync.Mutex
	lat []time.Duration
}

// add appends one worker's samples.
func (l *latencies) add(mine []time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lat = append(l.lat, mine...)
}

// sorted returns the samples in order, once the workers are done.
func (l *latencies) sorted() []time.Duration {
	slices.Sort(l.lat)
	return l.lat
}

// noteErr keeps msg if it is the run's first error.
func noteErr(first *atomic.Pointer[string], msg string) { first.CompareAndSwap(nil, &msg) }

func loadErr(first *atomic.Pointer[string]) string {
	if p := first.Load(); p != nil {
		return *p
	}
	return ""
}

// loadH2 is load for HTTP/2 scenarios: sc.conns clients, each with one
// HTTP/2 connection (through a CONNECT tunnel when proxied) opened by a
// first request, then sc.streams goroutines per connection issuing
// requests as concurrent streams. A response that is not HTTP/2 is an
// error.
func loadH2(sc scenario, tg *targets, proxy *url.URL, dur time.Duration) result {
	ctx, cancel := context.WithTimeout(context.Background(), dur)
	defer cancel()
	var n, errs atomic.Int64
	var wg sync.WaitGroup
	var lat latencies
	start := time.Now()
	for c := range sc.conns {
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
		// Every stream of a connection asks the same host (another host
		// would be another connection).
		get := func(u string) (time.Duration, bool) {
			t0 := time.Now()
			req, _ := http.NewRequestWithContext(ctx, "GET", u, nil)
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
		if _, ok := get(tg.worker(c*(sc.streams+1)+sc.streams, c)()); !ok {
			if !deadline.Reached(ctx) {
				errs.Add(1)
			}
			continue
		}
		n.Add(1)
		for st := range sc.streams {
			wg.Add(1)
			next := tg.worker(c*(sc.streams+1)+st, c)
			go func() {
				defer wg.Done()
				var mine []time.Duration
				defer func() { lat.add(mine) }()
				for ctx.Err() == nil {
					d, ok := get(next())
					switch {
					case ok:
						n.Add(1)
						if len(mine) < 20000 {
							mine = append(mine, d)
						}
					case !deadline.Reached(ctx):
						errs.Add(1)
					}
				}
			}()
		}
	}
	wg.Wait()
	return result{n: n.Load(), errs: errs.Load(), d: time.Since(start), lat: lat.sorted()}
}

// originCert is the TLS origins' certificate: self-signed, for the mix's
// host names and 127.0.0.1 (Picket trusts it through extra_roots).
func originCert() (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), crand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "loadbench origin"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true,
		KeyUsage:    x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:    []string{"*." + mixDomain, "localhost"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(crand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}

// originConns counts the connections the origins accepted (-v: a proxy that
// reconnects upstream makes the origin do handshakes the others do not).
var originConns atomic.Int64

func countOriginConns(_ net.Conn, st http.ConnState) {
	if st == http.StateNew {
		originConns.Add(1)
	}
}

func startOrigins() (plain, secure, h2 *httptest.Server, err error) {
	cert, err := originCert()
	if err != nil {
		return nil, nil, nil, err
	}
	small := make([]byte, 1024)
	big := make([]byte, 10<<20)
	var seed [32]byte
	rand.NewChaCha8(seed).Read(big)
	copy(small, big)
	mux := http.NewServeMux()
	// "/1k/N" and "/10m/N" are the mix's URLs (targets).
	for _, p := range []string{"/1k", "/1k/", "/10m", "/10m/"} {
		body := small
		if strings.HasPrefix(p, "/10m") {
			body = big
		}
		mux.HandleFunc(p, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/octet-stream")
			w.Write(body)
		})
	}
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
	for _, o := range []*httptest.Server{plain, secure, h2} {
		o.Config.ConnState = countOriginConns
	}
	h2.EnableHTTP2 = true
	secure.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	h2.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	plain.Start()
	secure.StartTLS()
	h2.StartTLS()
	return plain, secure, h2, nil
}
