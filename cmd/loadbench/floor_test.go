package main

import (
	"crypto/tls"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"testing"
	"time"

	"github.com/picket-proxy/picket/config"
)

// TestGoForward checks the HTTP floor: a plain request forwarded, an
// intercepted one over HTTP/1.1 and over HTTP/2, each answered by the
// origin with its body.
func TestGoForward(t *testing.T) {
	addr, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	go serveGoForward(addr)
	if err := waitListening("go-forward", addr, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "origin "+r.URL.Path) })
	plain := httptest.NewServer(h)
	defer plain.Close()
	secure := httptest.NewUnstartedServer(h)
	secure.EnableHTTP2 = true
	secure.StartTLS()
	defer secure.Close()
	proxy := &url.URL{Scheme: "http", Host: addr}
	for _, tc := range []struct {
		name, url string
		h2        bool
	}{
		{"plain", plain.URL + "/a", false},
		{"intercepted", secure.URL + "/b", false},
		{"intercepted h2", secure.URL + "/c", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr := &http.Transport{Proxy: http.ProxyURL(proxy), TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, ForceAttemptHTTP2: tc.h2}
			defer tr.CloseIdleConnections()
			resp, err := (&http.Client{Transport: tr, Timeout: 5 * time.Second}).Get(tc.url)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			u, _ := url.Parse(tc.url)
			if want := "origin " + u.Path; string(body) != want {
				t.Errorf("got %q, want %q", body, want)
			}
			if tc.h2 != (resp.ProtoMajor == 2) {
				t.Errorf("got %s, want HTTP/2 %v", resp.Proto, tc.h2)
			}
			if tc.url != plain.URL+"/a" && (resp.TLS == nil || resp.TLS.PeerCertificates[0].Subject.CommonName != "127.0.0.1") {
				t.Errorf("got no leaf for 127.0.0.1 from the floor")
			}
		})
	}
}

// TestRuntimeEnv checks that the floors get Picket's runtime settings as
// cmd/picket applies them: the defaults, and a memory_limit of 0 (no
// limit, not GOMEMLIMIT=0) with the scheduler left as Go sets it.
func TestRuntimeEnv(t *testing.T) {
	want := []string{"GOGC=400", "GOMEMLIMIT=1073741824", "GODEBUG=" + config.AwakeSchedtrace}
	if got := floorEnv(); !slices.Equal(got, want) {
		t.Errorf("floorEnv() = %q, want %q", got, want)
	}
	p := config.Default().Proxy
	p.GCPercent, p.MemoryLimit, p.SchedulerAwake = 200, 0, false
	if got := runtimeEnv(p); !slices.Equal(got, []string{"GOGC=200"}) {
		t.Errorf("runtimeEnv(gc 200, no limit, scheduler as Go sets it) = %q, want [GOGC=200]", got)
	}
}
