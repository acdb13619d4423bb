package main

import (
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"golang.org/x/crypto/bcrypt"
)

// TestProxyAuthentication: 407 without credentials, the page with them, a
// wrong password 407 and then 429 once rate-limited; the user is in the
// access log, and requests inside an intercepted tunnel inherit the
// CONNECT's user.
func TestProxyAuthentication(t *testing.T) {
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Proxy-Authorization") != "" {
			t.Errorf("the origin received Proxy-Authorization")
		}
		io.WriteString(w, "ok")
	}))
	defer origin.Close()
	tlsOrigin := httptest.NewTLSServer(origin.Config.Handler)
	defer tlsOrigin.Close()
	dir := t.TempDir()
	hash, _ := bcrypt.GenerateFromPassword([]byte("s3cret"), bcrypt.MinCost)
	htpasswd := filepath.Join(dir, "htpasswd")
	os.WriteFile(htpasswd, []byte("alice:"+string(hash)+"\n"), 0o600)
	originPEM := filepath.Join(dir, "origin.pem")
	os.WriteFile(originPEM, pemOf(tlsOrigin.Certificate()), 0o644)
	p := startPicket(t, fmt.Sprintf("[auth]\nhtpasswd = %q\nmax_failures = 3\nfailure_window = \"1m\"\n[tls]\nextra_roots = [%q]\n", htpasswd, originPEM))
	c := p.client(t)
	basic := func(user, pass string) map[string]string {
		return map[string]string{"Proxy-Authorization": "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass))}
	}

	resp, _ := fetch(t, c, origin.URL+"/x", nil)
	if resp.StatusCode != http.StatusProxyAuthRequired || !strings.HasPrefix(resp.Header.Get("Proxy-Authenticate"), "Basic realm=") {
		t.Fatalf("without credentials: got %d %q, want 407 with a Basic challenge", resp.StatusCode, resp.Header.Get("Proxy-Authenticate"))
	}
	if resp, body := fetch(t, c, origin.URL+"/x", basic("alice", "s3cret")); resp.StatusCode != 200 || body != "ok" {
		t.Fatalf("with credentials: got %d %q", resp.StatusCode, body)
	}
	p.waitAccess(t, func(l map[string]any) bool { return l["user"] == "alice" && l["method"] == "GET" })

	// CONNECT with credentials; the intercepted request inside carries none.
	tr := c.Transport.(*http.Transport).Clone()
	tr.ProxyConnectHeader = http.Header{"Proxy-Authorization": {basic("alice", "s3cret")["Proxy-Authorization"]}}
	defer tr.CloseIdleConnections()
	if resp, body := fetch(t, &http.Client{Transport: tr}, tlsOrigin.URL+"/inside", nil); resp.StatusCode != 200 || body != "ok" {
		t.Fatalf("intercepted with CONNECT credentials: got %d %q", resp.StatusCode, body)
	}
	p.waitAccess(t, func(l map[string]any) bool {
		u, _ := l["url"].(string)
		return strings.HasSuffix(u, "/inside") && l["user"] == "alice"
	})

	// Wrong passwords: 407, then 429 with Retry-After.
	var limited atomic.Bool
	for i := 0; i < 6 && !limited.Load(); i++ {
		resp, _ := fetch(t, c, origin.URL+"/x", basic("alice", "wrong"))
		switch resp.StatusCode {
		case http.StatusProxyAuthRequired:
		case http.StatusTooManyRequests:
			if resp.Header.Get("Retry-After") == "" {
				t.Errorf("429 without Retry-After")
			}
			limited.Store(true)
		default:
			t.Fatalf("wrong password: got %d", resp.StatusCode)
		}
	}
	if !limited.Load() {
		t.Errorf("never rate-limited after repeated wrong passwords")
	}
}

// TestPACThroughChromium: Picket serves its PAC file; Chromium configured
// with --proxy-pac-url sends a proxied host through Picket (the access log
// proves it) and the DIRECT host straight to the origin.
func TestPACThroughChromium(t *testing.T) {
	var direct atomic.Int32
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Via") == "" {
			direct.Add(1)
		}
		w.Header().Set("Content-Type", "text/html")
		io.WriteString(w, `<!doctype html><p id="direct">direct page</p>`)
	}))
	defer origin.Close()
	p := startPicket(t, "[pac]\ndirect_networks = []\ndirect_hosts = [\"127.0.0.1\"]\n"+browserOnlyRules)

	resp, body := fetch(t, http.DefaultClient, "http://"+p.addr+"/proxy.pac", nil)
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/x-ns-proxy-autoconfig" ||
		!strings.Contains(body, "FindProxyForURL") || !strings.Contains(body, "PROXY "+p.addr) {
		t.Fatalf("PAC: %d %q\n%s", resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}
	b := newBrowser(t, p.addr, p.caFile)
	pac := "--proxy-pac-url=http://" + p.addr + "/proxy.pac"
	dom := b.runNoProxy(t, pac, "--virtual-time-budget=5000", "--dump-dom", "http://phishing.picket.test/")
	if !strings.Contains(dom, "Access blocked") {
		t.Errorf("proxied host: want Picket's block page, got:\n%s", dom)
	}
	p.waitAccess(t, func(l map[string]any) bool { return l["url"] == "http://phishing.picket.test/" })
	dom = b.runNoProxy(t, pac, "--virtual-time-budget=5000", "--dump-dom", origin.URL+"/")
	if !strings.Contains(dom, "direct page") || direct.Load() == 0 {
		t.Errorf("DIRECT host: got %q (direct requests %d)", dom, direct.Load())
	}
}
