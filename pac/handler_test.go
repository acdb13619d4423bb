package pac

import (
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

func newHandler(t *testing.T, cfg Config) *Handler {
	t.Helper()
	h, err := NewHandler(cfg, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func serve(h http.Handler, method, path string, hdr ...string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(method, "http://picket.example:3128"+path, nil)
	for i := 0; i+1 < len(hdr); i += 2 {
		r.Header.Set(hdr[i], hdr[i+1])
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

func TestHandler(t *testing.T) {
	h := newHandler(t, Config{Enabled: true, Proxies: []string{"p1.example:3128", "p2.example:3128"}, FallbackDirect: true, DirectPlainHosts: true, MaxAge: 10 * time.Minute})
	for _, path := range Paths {
		t.Run(path, func(t *testing.T) {
			w := serve(h, http.MethodGet, path)
			if w.Code != http.StatusOK {
				t.Fatalf("got status %d, want 200", w.Code)
			}
			for k, want := range map[string]string{
				"Content-Type":  "application/x-ns-proxy-autoconfig",
				"Cache-Control": "max-age=600",
			} {
				if got := w.Header().Get(k); got != want {
					t.Errorf("got %s %q, want %q", k, got, want)
				}
			}
			etag := w.Header().Get("ETag")
			if !strings.HasPrefix(etag, `"`) || len(etag) < 10 {
				t.Errorf("got ETag %q, want a strong entity tag", etag)
			}
			if w.Header().Get("Vary") != "" {
				t.Errorf("got Vary %q, want none for fixed proxies", w.Header().Get("Vary"))
			}
			vm := newPACVM(t, w.Body.Bytes(), nil)
			if got, _ := vm.call(t, "https://www.example.com/", "www.example.com"); got != "PROXY p1.example:3128; PROXY p2.example:3128; DIRECT" {
				t.Errorf("got %q, want the proxies in order then DIRECT", got)
			}
		})
	}
}

func TestHandlerConditional(t *testing.T) {
	h := newHandler(t, Config{Enabled: true, Proxies: []string{"p:3128"}})
	etag := serve(h, http.MethodGet, "/proxy.pac").Header().Get("ETag")
	tests := []struct {
		name        string
		method      string
		ifNoneMatch string
		want        int
		body        bool
	}{
		{"same tag", http.MethodGet, etag, http.StatusNotModified, false},
		{"weak same tag", http.MethodGet, "W/" + etag, http.StatusNotModified, false},
		{"tag in a list", http.MethodGet, `"other", ` + etag, http.StatusNotModified, false},
		{"star", http.MethodGet, "*", http.StatusNotModified, false},
		{"other tag", http.MethodGet, `"other"`, http.StatusOK, true},
		{"HEAD", http.MethodHead, "", http.StatusOK, false},
		{"HEAD, same tag", http.MethodHead, etag, http.StatusNotModified, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var hdr []string
			if tt.ifNoneMatch != "" {
				hdr = []string{"If-None-Match", tt.ifNoneMatch}
			}
			w := serve(h, tt.method, "/wpad.dat", hdr...)
			if w.Code != tt.want {
				t.Errorf("got status %d, want %d", w.Code, tt.want)
			}
			if got := w.Body.Len() > 0; got != tt.body {
				t.Errorf("got a body: %v, want %v", got, tt.body)
			}
			if w.Header().Get("ETag") != etag {
				t.Errorf("got ETag %q, want %q", w.Header().Get("ETag"), etag)
			}
			if tt.method == http.MethodHead && w.Code == http.StatusOK && w.Header().Get("Content-Length") == "" {
				t.Errorf("got no Content-Length for HEAD, want the GET's")
			}
		})
	}
}

func TestHandlerRefuses(t *testing.T) {
	on := newHandler(t, Config{Enabled: true, Proxies: []string{"p:3128"}})
	off := newHandler(t, Config{Proxies: []string{"p:3128"}})
	tests := []struct {
		name   string
		h      http.Handler
		method string
		path   string
		want   int
	}{
		{"other path", on, http.MethodGet, "/proxy.pac.bak", http.StatusNotFound},
		{"root", on, http.MethodGet, "/", http.StatusNotFound},
		{"POST", on, http.MethodPost, "/proxy.pac", http.StatusMethodNotAllowed},
		{"disabled", off, http.MethodGet, "/proxy.pac", http.StatusNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := serve(tt.h, tt.method, tt.path)
			if w.Code != tt.want {
				t.Errorf("got status %d, want %d", w.Code, tt.want)
			}
			if tt.want == http.StatusMethodNotAllowed && w.Header().Get("Allow") != "GET, HEAD" {
				t.Errorf("got Allow %q, want \"GET, HEAD\"", w.Header().Get("Allow"))
			}
		})
	}
}

// TestHandlerHostProxy serves the file over a real loopback listener with no
// proxies configured: the file names the address the client used.
func TestHandlerHostProxy(t *testing.T) {
	h := newHandler(t, Config{Enabled: true, DirectNetworks: rfc1918})
	srv := httptest.NewServer(h)
	defer srv.Close()
	port := srv.URL[strings.LastIndexByte(srv.URL, ':')+1:]
	tests := []struct {
		name, host, want string
	}{
		{"as dialled", "", "PROXY " + strings.TrimPrefix(srv.URL, "http://")},
		{"name with port", "picket.corp.example:3128", "PROXY picket.corp.example:3128"},
		{"name without port", "wpad.corp.example", "PROXY wpad.corp.example:" + port},
		{"IPv6 without port", "[2001:db8::1]", "PROXY [2001:db8::1]:" + port},
		{"script injection", `x";alert(1);"`, "PROXY " + strings.TrimPrefix(srv.URL, "http://")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodGet, srv.URL+"/proxy.pac", nil)
			if tt.host != "" {
				req.Host = tt.host
			}
			resp, err := srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("got status %d, want 200", resp.StatusCode)
			}
			if resp.Header.Get("Vary") != "Host" {
				t.Errorf("got Vary %q, want Host", resp.Header.Get("Vary"))
			}
			vm := newPACVM(t, body, nil)
			if got, _ := vm.call(t, "http://93.184.215.14/", "93.184.215.14"); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestHandlerStaticFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "proxy.pac")
	v1 := `function FindProxyForURL(url, host) { return "PROXY one:3128"; }`
	if err := os.WriteFile(path, []byte(v1), 0o644); err != nil {
		t.Fatal(err)
	}
	h := newHandler(t, Config{Enabled: true, File: path, Proxies: []string{"ignored:1"}, MaxAge: time.Hour})
	w := serve(h, http.MethodGet, "/proxy.pac")
	if w.Body.String() != v1 || w.Header().Get("Cache-Control") != "max-age=3600" || w.Header().Get("Content-Type") != MIME {
		t.Fatalf("got %q with %v, want the file as it is", w.Body.String(), w.Header())
	}
	etag1 := w.Header().Get("ETag")

	v2 := `function FindProxyForURL(url, host) { return "PROXY two:3128; DIRECT"; }`
	if err := os.WriteFile(path, []byte(v2), 0o644); err != nil {
		t.Fatal(err)
	}
	later := time.Now().Add(time.Minute)
	if err := os.Chtimes(path, later, later); err != nil {
		t.Fatal(err)
	}
	w = serve(h, http.MethodGet, "/proxy.pac", "If-None-Match", etag1)
	if w.Code != http.StatusOK || w.Body.String() != v2 || w.Header().Get("ETag") == etag1 {
		t.Fatalf("got %d %q, want the changed file with a new ETag", w.Code, w.Body.String())
	}

	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if w = serve(h, http.MethodGet, "/proxy.pac"); w.Body.String() != v2 {
		t.Errorf("got %q after the file went away, want the last good version", w.Body.String())
	}
}

func TestNewHandlerErrors(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
	}{
		{"missing file", Config{Enabled: true, File: filepath.Join(t.TempDir(), "none.pac")}},
		{"bad proxy", Config{Enabled: true, Proxies: []string{"no-port"}}},
		{"bad pattern", Config{Enabled: true, DirectHosts: []string{"*"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := NewHandler(tt.cfg, zerolog.Nop()); err == nil {
				t.Errorf("got no error, want one")
			}
		})
	}
	if _, err := NewHandler(Config{File: "/nonexistent", Proxies: []string{"bad"}}, zerolog.Nop()); err != nil {
		t.Errorf("got %v for a disabled handler, want no error", err)
	}
}

func BenchmarkHandlerFixed(b *testing.B) {
	h, _ := NewHandler(Config{Enabled: true, Proxies: []string{"p:3128"}, DirectPlainHosts: true, DirectNetworks: rfc1918}, zerolog.Nop())
	r := httptest.NewRequest(http.MethodGet, "/proxy.pac", nil)
	b.ReportAllocs()
	for b.Loop() {
		h.ServeHTTP(httptest.NewRecorder(), r)
	}
}

func BenchmarkHandlerFromHost(b *testing.B) {
	h, _ := NewHandler(Config{Enabled: true, DirectPlainHosts: true, DirectHosts: []string{"*.corp.example"}, DirectNetworks: rfc1918}, zerolog.Nop())
	r := httptest.NewRequest(http.MethodGet, "http://picket.example:3128/proxy.pac", nil)
	b.ReportAllocs()
	for b.Loop() {
		h.ServeHTTP(httptest.NewRecorder(), r)
	}
}
