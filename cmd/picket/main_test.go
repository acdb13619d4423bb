package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/picket-proxy/picket/internal/testutil"
)

func TestUsageAndExitCodes(t *testing.T) {
	for _, tc := range []struct {
		name     string
		args     []string
		wantCode int
		wantOut  string // substring of stdout+stderr
	}{
		{"no command", nil, 2, "Usage:"},
		{"help", []string{"-h"}, 0, "serve"},
		{"unknown command", []string{"frobnicate"}, 2, `unknown command "frobnicate"`},
		{"unknown flag", []string{"serve", "-bogus"}, 2, "flag provided but not defined"},
		{"serve help", []string{"serve", "-h"}, 0, "-config"},
		{"stray argument", []string{"serve", "extra"}, 2, "unexpected argument"},
		{"version", []string{"version"}, 0, "picket"},
		{"missing config", []string{"serve", "-config", "/nonexistent/picket.toml"}, 1, "/nonexistent/picket.toml"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			code := run(tc.args, &out, &errb)
			if code != tc.wantCode {
				t.Errorf("exit code: got %d, want %d (stderr %q)", code, tc.wantCode, errb.String())
			}
			if all := out.String() + errb.String(); !strings.Contains(all, tc.wantOut) {
				t.Errorf("output %q: want it to contain %q", all, tc.wantOut)
			}
		})
	}
}

// feedsDir is the repository's demo feed set, the embedded database of the
// tests' configs.
func feedsDir(t *testing.T) string { return testutil.FeedsDir(t) }

// writeConfig writes a config that listens on a free loopback port.
func writeConfig(t *testing.T, extra string) string {
	return writeConfigWith(t, "", extra)
}

// writeConfigWith also adds keys to [proxy].
func writeConfigWith(t *testing.T, proxyKeys, extra string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "picket.toml")
	extra += fmt.Sprintf("[reputation.kpsn]\ndatabase = %q\n", feedsDir(t))
	cfg := "[proxy]\nlisten = \"127.0.0.1:0\"\nshutdown_grace = \"2s\"\nallow_destinations = [\"127.0.0.0/8\"]\nallow_ports = [\"1-65535\"]\n" +
		proxyKeys + "[admin]\nlisten = \"127.0.0.1:0\"\n" + extra
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestServeForwardsAndStops(t *testing.T) {
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "hello from origin")
	}))
	defer origin.Close()

	path := writeConfig(t, "")
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan string, 1)
	done := make(chan error, 1)
	var stdout, stderr testutil.SyncBuffer
	go func() { done <- serve(ctx, path, &stdout, &stderr, ready) }()
	var addr string
	select {
	case addr = <-ready:
	case err := <-done:
		t.Fatalf("serve: %v", err)
	}
	proxyURL, _ := url.Parse("http://" + addr)
	c := &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(proxyURL)}}
	resp, err := c.Get(origin.URL + "/x?secret=1")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "hello from origin" {
		t.Errorf("body: got %q", b)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("serve after cancel: %v", err)
	}
	if s := stdout.String(); !strings.Contains(s, `"log":"access"`) || !strings.Contains(s, origin.URL+"/x\"") || strings.Contains(s, "secret") {
		t.Errorf("access log (stdout) missing or leaks the query: %s", s)
	}
	if s := stderr.String(); !strings.Contains(s, "picket started") || !strings.Contains(s, "picket stopped") {
		t.Errorf("application log: %s", s)
	}
}

func TestServePortTaken(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	path := filepath.Join(t.TempDir(), "picket.toml")
	os.WriteFile(path, []byte(fmt.Sprintf("[proxy]\nlisten = %q\n", ln.Addr().String())), 0o644)
	var out, errb bytes.Buffer
	if code := run([]string{"serve", "-config", path}, &out, &errb); code != 1 {
		t.Errorf("exit code: got %d, want 1", code)
	}
	if lines := strings.Split(strings.TrimSpace(errb.String()), "\n"); len(lines) != 1 ||
		!strings.Contains(lines[0], "proxy.listen") || !strings.Contains(lines[0], "address already in use") {
		t.Errorf("want one clear line naming proxy.listen, got %q", errb.String())
	}
}

func TestServeBadConfig(t *testing.T) {
	path := filepath.Join(t.TempDir(), "picket.toml")
	os.WriteFile(path, []byte("[proxy]\nlisten = \"127.0.0.1:0\"\n\n[log]\nlevel = \"chatty\"\n"), 0o644)
	var out, errb bytes.Buffer
	if code := run([]string{"serve", "-config", path}, &out, &errb); code != 1 {
		t.Errorf("exit code: got %d, want 1", code)
	}
	if want := path + ":5: log.level"; !strings.Contains(errb.String(), want) {
		t.Errorf("error %q: want it to contain %q", errb.String(), want)
	}
}

// TestBinarySIGTERM builds the real binary, runs it under load and stops it
// with SIGTERM while requests are in flight: it must exit 0, and its access
// log — buffered in memory (logbuf.go) — must hold one whole line for every
// request it answered.
func TestBinarySIGTERM(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := filepath.Join(t.TempDir(), "picket")
	build := exec.Command("go", "build", "-o", bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	// Pick a free port, then let the binary take it.
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close()
	dir := t.TempDir()
	logPath := filepath.Join(dir, "access.log")
	path := filepath.Join(dir, "picket.toml")
	os.WriteFile(path, []byte(fmt.Sprintf("[proxy]\nlisten = %q\nshutdown_grace = \"5s\"\nallow_destinations = [\"127.0.0.0/8\"]\nmax_conns_per_client = 0\n"+
		"[admin]\nlisten = \"127.0.0.1:0\"\n[log]\nformat = \"json\"\naccess_log = %q\n[reputation.kpsn]\ndatabase = %q\n", addr, logPath, feedsDir(t))), 0o644)
	cmd := exec.Command(bin, "serve", "-config", path)
	var stdout, stderr testutil.SyncBuffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(stderr.String(), "picket started") {
		if time.Now().After(deadline) {
			t.Fatalf("binary did not start: %s", stderr.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	// An origin slow enough that requests are in flight at the signal.
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(5 * time.Millisecond)
		io.WriteString(w, "ok")
	}))
	defer origin.Close()
	proxyURL, _ := url.Parse("http://" + addr)
	tr := &http.Transport{Proxy: http.ProxyURL(proxyURL), MaxIdleConnsPerHost: 8}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	var mu sync.Mutex
	answered := map[string]bool{}
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				p := fmt.Sprintf("/r/%d-%d", w, i)
				resp, err := client.Get(origin.URL + p)
				if err != nil {
					return // the proxy stopped taking requests
				}
				b, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err == nil && resp.StatusCode == 200 && string(b) == "ok" {
					mu.Lock()
					answered[p] = true
					mu.Unlock()
				}
				if resp.Close {
					return // shutting down: the proxy closes the connection
				}
			}
		}()
	}
	for {
		mu.Lock()
		n := len(answered)
		mu.Unlock()
		if n >= 200 {
			break
		}
		if time.Now().After(deadline.Add(20 * time.Second)) {
			t.Fatalf("only %d requests answered", n)
		}
		time.Sleep(time.Millisecond)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	errc := make(chan error, 1)
	go func() { errc <- cmd.Wait() }()
	select {
	case err := <-errc:
		if err != nil {
			t.Errorf("exit after SIGTERM: %v (want status 0)\n%s", err, stderr.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatal("binary did not exit after SIGTERM")
	}
	wg.Wait()

	data, err := os.ReadFile(logPath)
	if err != nil {
		t.Fatal(err)
	}
	logged := map[string]int{}
	for _, line := range strings.SplitAfter(string(data), "\n") {
		if line == "" {
			continue
		}
		var l struct {
			URL string `json:"url"`
		}
		if !strings.HasSuffix(line, "\n") || json.Unmarshal([]byte(line), &l) != nil {
			t.Fatalf("torn access-log line %q", line)
		}
		if u, err := url.Parse(l.URL); err == nil {
			logged[u.Path]++
		}
	}
	for p := range answered {
		if logged[p] != 1 {
			t.Errorf("%s was answered and logged %d times, want once", p, logged[p])
		}
	}
	t.Logf("%d requests answered, %d access-log lines", len(answered), len(logged))
}

// startServing starts cmd (picket serve), its stderr captured, and waits
// until it logs "picket started"; when the test ends it is stopped with
// SIGTERM and must exit cleanly.
func startServing(t *testing.T, cmd *exec.Cmd) *testutil.SyncBuffer {
	t.Helper()
	stderr := &testutil.SyncBuffer{}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		if err := cmd.Wait(); err != nil {
			t.Errorf("exit after SIGTERM: %v\n%s", err, stderr.String())
		}
	})
	for deadline := time.Now().Add(30 * time.Second); !strings.Contains(stderr.String(), "picket started"); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("binary did not start: %s", stderr.String())
		}
	}
	return stderr
}

// waitFor waits until log holds msg, failing if the process exits first.
func waitFor(t *testing.T, exited <-chan struct{}, log *testutil.SyncBuffer, msg string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(log.String(), msg) {
		select {
		case <-exited:
			t.Fatalf("exited before %q:\n%s", msg, log.String())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %q within 30s:\n%s", msg, log.String())
		}
	}
}
