//go:build unix

package main

import (
	"crypto/sha256"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestReloadKeepsDownloads: a download in progress survives a SIGHUP
// reload that adds a blocking rule; new requests follow the new rules; an
// invalid config on reload changes nothing and is logged.
func TestReloadKeepsDownloads(t *testing.T) {
	const size = 8 << 20
	half := make(chan struct{})
	resume := make(chan struct{})
	payload := make([]byte, size)
	for i := range payload {
		payload[i] = byte(i * 7)
	}
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/big" {
			io.WriteString(w, "page "+r.URL.Path)
			return
		}
		w.Header().Set("Content-Length", "8388608")
		w.Write(payload[:size/2])
		w.(http.Flusher).Flush()
		close(half)
		<-resume
		w.Write(payload[size/2:])
	}))
	defer origin.Close()
	p := startPicket(t, "")
	path := p.dir + "/picket.toml"
	c := p.client(t)

	type result struct {
		sum [32]byte
		n   int
		err error
	}
	done := make(chan result, 1)
	go func() {
		resp, err := c.Get(origin.URL + "/big")
		if err != nil {
			done <- result{err: err}
			return
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		done <- result{sha256.Sum256(b), len(b), err}
	}()
	<-half

	// New rules: block /new/ on the origin.
	orig, _ := os.ReadFile(path)
	withRule := string(orig) + "\n[[rules]]\nname = \"block-new\"\naction = \"block\"\nurl_prefixes = [\"" + origin.URL + "/new/\"]\n"
	os.WriteFile(path, []byte(withRule), 0o644)
	hupAndWait(t, p, "configuration reloaded", 1)

	if resp, _ := fetch(t, c, origin.URL+"/new/x", nil); resp.StatusCode != 403 {
		t.Errorf("after reload, /new/: got %d, want 403", resp.StatusCode)
	}
	close(resume)
	r := <-done
	if r.err != nil || r.n != size || r.sum != sha256.Sum256(payload) {
		t.Fatalf("download across the reload: %d bytes, err %v, intact %v", r.n, r.err, r.sum == sha256.Sum256(payload))
	}

	// An invalid file is rejected; the rule stays in force.
	os.WriteFile(path, []byte(withRule+"\n[[rules]]\nname = \"broken\"\naction = \"explode\"\n"), 0o644)
	hupAndWait(t, p, "reload rejected", 1)
	if resp, _ := fetch(t, c, origin.URL+"/new/y", nil); resp.StatusCode != 403 {
		t.Errorf("after a rejected reload, /new/: got %d, want 403 (old rules kept)", resp.StatusCode)
	}
	if !strings.Contains(p.stderr.String(), "explode") {
		t.Errorf("the rejected reload's reason is not logged:\n%s", p.stderr.String())
	}
}

// TestReloadNamesRestartOnlySections: a reload that changes a section set
// up once at start (listeners, the PAC file, the parent proxies) says so
// by name, for each such section.
func TestReloadNamesRestartOnlySections(t *testing.T) {
	p := startPicket(t, "")
	path := p.dir + "/picket.toml"
	orig, _ := os.ReadFile(path)
	for i, tc := range []struct{ section, toml string }{
		{"transparent", "[transparent]\nhttp_listen = \"127.0.0.1:0\"\n"},
		{"pac", "[pac]\ndirect_hosts = [\"intranet.example\"]\n"},
		{"upstream", "[upstream]\ndirect_hosts = [\"intranet.example\"]\n"},
	} {
		t.Run(tc.section, func(t *testing.T) {
			os.WriteFile(path, append(slices.Clip(orig), "\n"+tc.toml...), 0o644)
			hupAndWait(t, p, "configuration reloaded", i+1)
			want := `"section":"` + tc.section + `"`
			if !strings.Contains(p.stderr.String(), want) {
				t.Errorf("no restart warning with %s in the log:\n%s", want, p.stderr.String())
			}
		})
	}
}

// hupAndWait sends SIGHUP to this process (serve listens for it) and waits
// until the application log shows msg n times in all.
func hupAndWait(t *testing.T, p *picketUnderTest, msg string, n int) {
	t.Helper()
	syscall.Kill(os.Getpid(), syscall.SIGHUP)
	deadline := time.Now().Add(10 * time.Second)
	for strings.Count(p.stderr.String(), msg) < n {
		if time.Now().After(deadline) {
			t.Fatalf("no %q in the log:\n%s", msg, p.stderr.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
}
