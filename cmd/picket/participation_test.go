package main

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/picket-proxy/picket/config"
	"github.com/picket-proxy/picket/internal/testutil"
	"github.com/picket-proxy/picket/proxy"
	"github.com/picket-proxy/picket/reputation/server"
	"github.com/picket-proxy/picket/stats"
)

// statsCloud is a cloud repserver on loopback with the participation
// intake, recording every request body (decompressed) and header.
type statsCloud struct {
	url, dir string
	mu       sync.Mutex
	reqs     []string // path + headers + body
	stats    [][]byte
	samples  []recordedSample
}

// recordedSample is a sample the cloud received: its meta header and bytes.
type recordedSample struct {
	meta stats.SampleMeta
	body []byte
}

func startStatsCloud(t *testing.T) *statsCloud {
	t.Helper()
	c := &statsCloud{dir: t.TempDir()}
	intake, err := stats.NewIntake(stats.IntakeConfig{Dir: c.dir}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	srv, err := server.New(server.Config{Role: server.RoleCloud, Feeds: feedsDir(t), Poll: -1, Intake: intake}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	h := srv.Handler()
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		raw, _ := io.ReadAll(r.Body)
		body := raw
		if zr, err := gzip.NewReader(bytes.NewReader(raw)); err == nil && r.Header.Get("Content-Encoding") == "gzip" {
			body, _ = io.ReadAll(zr)
		}
		c.mu.Lock()
		c.reqs = append(c.reqs, fmt.Sprintf("%s %s\n%v\n%s", r.Method, r.URL, r.Header, body))
		switch r.URL.Path {
		case "/v1/stats":
			c.stats = append(c.stats, body)
		case "/v1/samples":
			var m stats.SampleMeta
			json.Unmarshal([]byte(r.Header.Get(stats.HeaderSample)), &m)
			c.samples = append(c.samples, recordedSample{m, body})
		}
		c.mu.Unlock()
		r.Body = io.NopCloser(bytes.NewReader(raw))
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(hs.Close)
	c.url = hs.URL
	return c
}

func (c *statsCloud) received() []recordedSample {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]recordedSample(nil), c.samples...)
}

func (c *statsCloud) batches() [][]byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([][]byte(nil), c.stats...)
}

// participationFile writes a ksn config with participation on against c.
func participationFile(t *testing.T, c *statsCloud) (string, *config.File) {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "config.toml")
	body := fmt.Sprintf("[reputation]\nmode = \"ksn\"\n[reputation.ksn]\nserver = %q\nparticipation = true\nmin_clients = 1\n", c.url)
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	return path, f
}

func startParticipation(t *testing.T, f *config.File, clk *testutil.Clock) *stats.Participation {
	t.Helper()
	cfg, err := participationConfig(f, nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Now = clk.Now
	p, err := stats.New(cfg, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// TestObserveEventSendsNoPersonalData pushes proxy events carrying
// distinctive client addresses, user names, cookies (session tokens in
// queries), query strings, rule names and incident numbers through the
// Observe hook and asserts none of them reaches the cloud.
func TestObserveEventSendsNoPersonalData(t *testing.T) {
	c := startStatsCloud(t)
	_, f := participationFile(t, c)
	clk := testutil.NewClock(time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC))
	p := startParticipation(t, f, clk)
	observe := observeEvent(p)
	secrets := []string{"198.51.100.23", "alice-user", "cookie-secret", "query-secret", "rule-secret", "incident-secret",
		"cleanhost-secret", "clean-path-secret", "body-secret"}
	exe := sha256.Sum256([]byte("unknown tool"))
	for i := 0; i < 20; i++ {
		observe(proxy.Event{Client: netip.MustParseAddr("198.51.100.23"), User: "alice-user", Method: "GET",
			URL:  "http://alice-user:pw@cleanhost-secret.example/clean-path-secret?session=cookie-secret&q=query-secret",
			Host: "cleanhost-secret.example", Status: 200, Action: "allow", Verdict: "clean", Source: "server",
			Rule: "rule-secret", Incident: "incident-secret", Category: "body-secret here"})
		observe(proxy.Event{Client: netip.MustParseAddr("198.51.100.23"), User: "alice-user", URL: "http://phishing.picket.test/login?user=alice-user",
			Host: "phishing.picket.test", Action: "block", Verdict: "phishing", Category: "phishing", Source: "server",
			Stage: "protection", Rule: "rule-secret", Incident: "incident-secret"})
		observe(proxy.Event{Client: netip.MustParseAddr("198.51.100.23"), User: "alice-user", URL: "http://dl.example/tool.exe?query-secret=1",
			Action: "allow", Verdict: "unknown", Source: "server",
			Scan: &proxy.ScanEvent{Type: "pe", Result: "unknown", SHA256: exe[:], Size: 10, Executable: true, Threat: "rule-secret"}})
	}
	clk.Add(time.Hour)
	if err := p.Tick(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := len(c.batches()); n != 1 {
		t.Fatalf("batches: got %d, want 1", n)
	}
	if !bytes.Contains(c.batches()[0], []byte(hex.EncodeToString(exe[:]))) {
		t.Errorf("the unknown executable's hash is missing: %s", c.batches()[0])
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, r := range c.reqs {
		for _, s := range secrets {
			if strings.Contains(r, s) {
				t.Errorf("sent %q:\n%s", s, r)
			}
		}
	}
}

// TestStatsPreviewEqualsSent runs "picket stats preview" against the
// running participation's files, then lets the batch go, and compares.
func TestStatsPreviewEqualsSent(t *testing.T) {
	c := startStatsCloud(t)
	path, f := participationFile(t, c)
	clk := testutil.NewClock(time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC))
	p := startParticipation(t, f, clk)
	observe := observeEvent(p)
	exe := sha256.Sum256([]byte("new dropper"))
	for i := 0; i < 3; i++ {
		observe(proxy.Event{Client: netip.MustParseAddr("10.0.0.9"), URL: "http://dl.example/x.exe", Action: "allow",
			Scan: &proxy.ScanEvent{Type: "pe", Result: "unknown", SHA256: exe[:], Size: 10, Executable: true}})
	}
	clk.Add(time.Minute)
	p.Tick(context.Background()) // checkpoint; the interval is not over
	var out, errb bytes.Buffer
	if code := run([]string{"stats", "preview", "-config", path}, &out, &errb); code != 0 {
		t.Fatalf("stats preview: exit %d: %s", code, errb.String())
	}
	if !strings.Contains(errb.String(), "participation is on") {
		t.Errorf("preview note: %s", errb.String())
	}
	clk.Add(time.Hour)
	if err := p.Tick(context.Background()); err != nil {
		t.Fatal(err)
	}
	got := c.batches()
	if len(got) != 1 || !bytes.Equal(got[0], out.Bytes()) {
		t.Fatalf("sent batch differs from the preview:\nsent    %q\npreview %s", got, out.String())
	}

	// The cloud side lists it.
	out.Reset()
	if code := run([]string{"repserver", "stats", "-data", c.dir}, &out, &errb); code != 0 {
		t.Fatalf("repserver stats: exit %d: %s", code, errb.String())
	}
	if !strings.Contains(out.String(), hex.EncodeToString(exe[:])) || !strings.Contains(out.String(), "1 installations") {
		t.Errorf("repserver stats: %s", out.String())
	}
}

func TestInit(t *testing.T) {
	for _, tc := range []struct {
		name     string
		args     []string
		terminal bool
		input    string
		want     string // participation line in config.toml
		wantOut  string
	}{
		{"script without flag means no", []string{"-mode=ksn"}, false, "", "participation = false", "participation stays off"},
		{"script yes", []string{"-mode=ksn", "-participate=yes"}, false, "", "participation = true", "participation on"},
		{"kpsn ignores yes", []string{"-mode=kpsn", "-participate=yes"}, false, "", "participation = false", "no effect in KPSN"},
		{"terminal enter means no", []string{"-mode=ksn"}, true, "\n", "participation = false", "Never: client IP addresses"},
		{"terminal yes", nil, true, "ksn\ny\n", "participation = true", "Participate"},
		{"terminal eof means no", nil, true, "ksn\n", "participation = false", "[y/N]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			oldIn, oldTerm := stdin, stdinIsTerminal
			defer func() { stdin, stdinIsTerminal = oldIn, oldTerm }()
			stdin = strings.NewReader(tc.input)
			stdinIsTerminal = func() bool { return tc.terminal }
			dir := t.TempDir()
			var out, errb bytes.Buffer
			if code := run(append([]string{"init", "-dir", dir}, tc.args...), &out, &errb); code != 0 {
				t.Fatalf("exit %d: %s", code, errb.String())
			}
			data, err := os.ReadFile(filepath.Join(dir, "config.toml"))
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(string(data), "\n"+tc.want+"\n") {
				t.Errorf("config.toml: want %q in\n%s", tc.want, data)
			}
			if all := out.String() + errb.String(); !strings.Contains(all, tc.wantOut) || !strings.Contains(all, "picket ca export") {
				t.Errorf("output: want %q and trust instructions in\n%s", tc.wantOut, all)
			}
			if _, err := os.Stat(filepath.Join(dir, "data", "ca", "picket-ca.key")); err != nil {
				t.Errorf("CA not generated: %v", err)
			}
			if code := run([]string{"init", "-dir", dir}, &out, &errb); code != 1 {
				t.Errorf("init over an existing config: exit %d, want 1", code)
			}
		})
	}
}

// TestInitConfigServes: the configuration `picket init` writes starts
// with the command it prints (picket serve -config DIR/config.toml) in a
// new directory, listen addresses aside (a test may not take 3128 and 9090).
func TestInitConfigServes(t *testing.T) {
	for _, mode := range []string{"kpsn", "ksn"} {
		t.Run(mode, func(t *testing.T) {
			oldTerm := stdinIsTerminal
			defer func() { stdinIsTerminal = oldTerm }()
			stdinIsTerminal = func() bool { return false }
			dir := t.TempDir()
			var out, errb bytes.Buffer
			if code := run([]string{"init", "-dir", dir, "-mode=" + mode, "-participate=no"}, &out, &errb); code != 0 {
				t.Fatalf("init: exit %d: %s", code, errb.String())
			}
			path := filepath.Join(dir, "config.toml")
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			moved := strings.NewReplacer(`"127.0.0.1:3128"`, `"127.0.0.1:0"`, `"127.0.0.1:9090"`, `"127.0.0.1:0"`).Replace(string(data))
			if err := os.WriteFile(path, []byte(moved), 0o640); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			ready := make(chan string, 1)
			done := make(chan error, 1)
			var stdout, stderr testutil.SyncBuffer
			go func() { done <- serve(ctx, path, &stdout, &stderr, ready) }()
			select {
			case <-ready:
			case err := <-done:
				t.Fatalf("serve on the configuration init wrote: %v", err)
			}
			cancel()
			if err := <-done; err != nil {
				t.Errorf("serve after cancel: %v", err)
			}
		})
	}
}

// TestObserveEventUploads: a blocked upload reaches statistics only as a
// block: not the URL it was sent to (hashed as a detection), not its
// verdict, not its hash; a blocked download beside it is listed.
func TestObserveEventUploads(t *testing.T) {
	c := startStatsCloud(t)
	_, f := participationFile(t, c)
	clk := testutil.NewClock(time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC))
	p := startParticipation(t, f, clk)
	observe := observeEvent(p)
	doc := sha256.Sum256([]byte("an infected document of a person"))
	dl := sha256.Sum256([]byte("a detected download"))
	for _, client := range []string{"10.0.0.1", "10.0.0.2"} {
		observe(proxy.Event{Client: netip.MustParseAddr(client), Method: "POST", URL: "https://drive.example/alice/upload",
			Action: "block", Verdict: "malware", Stage: "scan", Rule: "scanner.upload.clamd",
			Upload: &proxy.ScanEvent{Upload: true, Type: "ooxml", Result: "malicious", SHA256: doc[:], Threat: "Doc.Macro.Agent", Source: "engine"}})
		observe(proxy.Event{Client: netip.MustParseAddr(client), URL: "http://dl.example/tool.exe",
			Action: "block", Verdict: "malware", Source: "server", Stage: "scan", Rule: "scanner.clamd",
			Scan: &proxy.ScanEvent{Type: "pe", Result: "malicious", SHA256: dl[:], Threat: "Win.Trojan.X", Source: "engine"}})
	}
	clk.Add(time.Hour)
	if err := p.Tick(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := len(c.batches()); n != 1 {
		t.Fatalf("batches: got %d, want 1", n)
	}
	var b stats.Batch
	if err := json.Unmarshal(c.batches()[0], &b); err != nil {
		t.Fatal(err)
	}
	if len(b.Files) != 1 || b.Files[0].SHA256 != hex.EncodeToString(dl[:]) || len(b.URLs) != 1 {
		t.Errorf("batch files %+v and urls %+v, want the download's file and URL only", b.Files, b.URLs)
	}
	if bytes.Contains(c.batches()[0], []byte(hex.EncodeToString(doc[:]))) {
		t.Errorf("the upload's hash was sent: %s", c.batches()[0])
	}
	blocks := 0
	for _, bc := range b.Blocks {
		blocks += int(bc.Count)
	}
	if blocks != 4 {
		t.Errorf("blocks %+v, want 4 counted", b.Blocks)
	}
}
