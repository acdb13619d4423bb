package main

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net/http"
	"net/url"
	"strings"
	"time"
)

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
