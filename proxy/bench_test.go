package proxy

import (
	"crypto/tls"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"

	"github.com/elazarl/goproxy"
	"testing"
)

// benchOrigin serves 1 KiB bodies.
func benchOrigin(b *testing.B, tlsOn bool) *httptest.Server {
	body := make([]byte, 1024)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write(body) })
	var s *httptest.Server
	if tlsOn {
		s = httptest.NewTLSServer(h)
	} else {
		s = httptest.NewServer(h)
	}
	b.Cleanup(s.Close)
	return s
}

// benchGet runs b.N keep-alive GETs of url with c, in parallel.
func benchGet(b *testing.B, c *http.Client, url string) {
	b.ReportAllocs()
	b.SetBytes(1024)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			resp, err := c.Get(url)
			if err != nil {
				b.Error(err)
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	})
}

// BenchmarkDirectGET is the baseline: the same client and origin, no proxy.
func BenchmarkDirectGET(b *testing.B) {
	origin := benchOrigin(b, false)
	tr := &http.Transport{MaxIdleConnsPerHost: 64}
	defer tr.CloseIdleConnections()
	benchGet(b, &http.Client{Transport: tr}, origin.URL)
}

// BenchmarkProxyGET is one full plain-HTTP request through the pipeline
// (decide, forward over the pool, access-log line) with keep-alive.
func BenchmarkProxyGET(b *testing.B) {
	origin := benchOrigin(b, false)
	tp := startProxy(b, Config{})
	tr := &http.Transport{Proxy: http.ProxyURL(tp.url), MaxIdleConnsPerHost: 64}
	defer tr.CloseIdleConnections()
	benchGet(b, &http.Client{Transport: tr}, origin.URL)
}

// BenchmarkInterceptedGET is one request inside an intercepted TLS tunnel
// with keep-alive (the leaf is minted once, then cached).
func BenchmarkInterceptedGET(b *testing.B) {
	origin := benchOrigin(b, true)
	ca := testCA(b)
	tp := startProxy(b, Config{
		Decider:   interceptAll,
		Intercept: func(host string) (*tls.Config, error) { return ca.TLSConfig(host), nil },
		RootCAs:   poolOf(origin.Certificate()),
	})
	tr := &http.Transport{Proxy: http.ProxyURL(tp.url), MaxIdleConnsPerHost: 64,
		TLSClientConfig: &tls.Config{RootCAs: poolOf(ca.Certificate())}}
	defer tr.CloseIdleConnections()
	benchGet(b, &http.Client{Transport: tr}, origin.URL)
}

// BenchmarkBareGoproxyGET is goproxy alone (tuned pool, no filtering): the
// library's own cost, to compare BenchmarkProxyGET with.
func BenchmarkBareGoproxyGET(b *testing.B) {
	origin := benchOrigin(b, false)
	gp := goproxy.NewProxyHttpServer()
	gp.Tr = &http.Transport{MaxIdleConnsPerHost: 256}
	srv := httptest.NewServer(gp)
	defer srv.Close()
	u, _ := url.Parse(srv.URL)
	tr := &http.Transport{Proxy: http.ProxyURL(u), MaxIdleConnsPerHost: 64}
	defer tr.CloseIdleConnections()
	benchGet(b, &http.Client{Transport: tr}, origin.URL)
}
