package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"io"
	"log"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

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
