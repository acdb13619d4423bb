package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/picket-proxy/picket/internal/testutil"
)

// picketUnderTest is a Picket started with serve() on loopback.
type picketUnderTest struct {
	addr   string
	dir    string // the config's directory (CA under it)
	caFile string
	ca     *x509.Certificate
	stdout *testutil.SyncBuffer // access log
	stderr *testutil.SyncBuffer // application log
	stop   func()               // shuts serve() down and waits (idempotent)
}

// startPicket runs serve() with writeConfig(extra) until the test ends.
func startPicket(t *testing.T, extra string) *picketUnderTest {
	t.Helper()
	return startPicketWith(t, "", extra)
}

// startPicketWith also adds keys to [proxy].
func startPicketWith(t *testing.T, proxyKeys, extra string) *picketUnderTest {
	t.Helper()
	return startPicketAt(t, writeConfigWith(t, proxyKeys, extra))
}

// startPicketAt runs serve() with the config file at path until the test
// ends or stop is called.
func startPicketAt(t *testing.T, path string) *picketUnderTest {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan string, 1)
	done := make(chan error, 1)
	p := &picketUnderTest{dir: filepath.Dir(path), stdout: &testutil.SyncBuffer{}, stderr: &testutil.SyncBuffer{}}
	go func() { done <- serve(ctx, path, p.stdout, p.stderr, ready) }()
	select {
	case p.addr = <-ready:
	case err := <-done:
		cancel()
		t.Fatalf("serve: %v", err)
	}
	var once sync.Once
	p.stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("serve: %v", err)
			}
		})
	}
	t.Cleanup(p.stop)
	p.caFile = filepath.Join(p.dir, "data", "ca", "picket-ca.pem")
	b, err := os.ReadFile(p.caFile)
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(b)
	if p.ca, err = x509.ParseCertificate(blk.Bytes); err != nil {
		t.Fatal(err)
	}
	return p
}

// client returns an HTTP client through Picket that trusts its CA.
func (p *picketUnderTest) client(t *testing.T) *http.Client {
	pool := x509.NewCertPool()
	pool.AddCert(p.ca)
	u, _ := url.Parse("http://" + p.addr)
	tr := &http.Transport{Proxy: http.ProxyURL(u), TLSClientConfig: &tls.Config{RootCAs: pool}}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 20 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

// accessLines returns the access-log lines so far.
func (p *picketUnderTest) accessLines() []map[string]any {
	var out []map[string]any
	for _, m := range p.stdout.Lines() {
		if m["log"] == "access" {
			out = append(out, m)
		}
	}
	return out
}

// waitAccess waits for an access-log line matching pred.
func (p *picketUnderTest) waitAccess(t *testing.T, pred func(map[string]any) bool) map[string]any {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		for _, l := range p.accessLines() {
			if pred(l) {
				return l
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("no matching access line in:\n%s", p.stdout.String())
	return nil
}

func pemOf(c *x509.Certificate) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
}
