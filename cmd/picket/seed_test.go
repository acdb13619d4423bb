package main

import (
	"context"
	"fmt"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/picket-proxy/picket/data"
	"github.com/picket-proxy/picket/internal/testutil"
)

// configElsewhere writes a configuration into a directory of its own, far
// from the checkout, that names no feed directory and no signatures: the
// defaults decide.
func configElsewhere(t *testing.T, extra string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "etc", "config.toml")
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	cfg := "[proxy]\nlisten = \"127.0.0.1:0\"\nshutdown_grace = \"2s\"\nallow_destinations = [\"127.0.0.0/8\"]\n[admin]\nlisten = \"127.0.0.1:0\"\n" + extra
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// serveOnce starts serve with path and returns the proxy address and a stop
// function that waits for it to end.
func serveOnce(t *testing.T, path string, stdout, stderr *testutil.SyncBuffer) (string, func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan string, 1)
	done := make(chan error, 1)
	go func() { done <- serve(ctx, path, stdout, stderr, ready) }()
	select {
	case addr := <-ready:
		stopped := false
		stop := func() {
			if !stopped {
				stopped = true
				cancel()
				if err := <-done; err != nil {
					t.Errorf("serve: %v", err)
				}
			}
		}
		t.Cleanup(stop)
		return addr, stop
	case err := <-done:
		cancel()
		t.Fatalf("serve: %v\n%s", err, stderr.String())
		return "", nil
	}
}

// TestConfigOutsideCheckout: a configuration file in a directory of its
// own, naming no feed directory, starts: the built-in demo feeds and
// signatures are written next to it on first start (as the CA is), they
// work (the demo phishing host is blocked), and a later start keeps the
// administrator's edits.
func TestConfigOutsideCheckout(t *testing.T) {
	path := configElsewhere(t, "")
	dir := filepath.Dir(path)
	var stdout, stderr testutil.SyncBuffer
	addr, stop := serveOnce(t, path, &stdout, &stderr)

	for _, sub := range []string{"feeds", "signatures"} {
		err := fs.WalkDir(data.FS, sub, func(name string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			want, _ := fs.ReadFile(data.FS, name)
			got, err := os.ReadFile(filepath.Join(dir, "data", filepath.FromSlash(name)))
			if err != nil || string(got) != string(want) {
				t.Errorf("%s: not written out as built in (%v)", name, err)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if repo, _ := os.ReadDir(filepath.Join("..", "..", "data", sub)); len(repo) == 0 {
			t.Fatalf("no repository copy of data/%s to compare with", sub)
		}
	}
	for _, msg := range []string{"created the feed directory with Picket's built-in demo feeds", "created the signature directory with Picket's built-in demo signatures"} {
		if !strings.Contains(stderr.String(), msg) {
			t.Errorf("log: no %q", msg)
		}
	}
	p := &picketUnderTest{addr: addr, dir: dir, stdout: &stdout, stderr: &stderr}
	c := &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(mustURL("http://" + addr))}}
	resp, body := fetch(t, c, "http://phishing.picket.test/", nil)
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "phishing") {
		t.Errorf("the demo phishing host: got %d, want blocked by the demo feeds", resp.StatusCode)
	}
	p.waitAccess(t, func(l map[string]any) bool { return l["verdict"] == "phishing" })
	stop()

	// The copy is the administrator's: a second start keeps an edit.
	edited := filepath.Join(dir, "data", "feeds", "phishing.txt")
	if err := os.WriteFile(edited, []byte("edited.picket.test\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var stdout2, stderr2 testutil.SyncBuffer
	addr, _ = serveOnce(t, path, &stdout2, &stderr2)
	if b, _ := os.ReadFile(edited); string(b) != "edited.picket.test\n" {
		t.Errorf("a second start rewrote the feeds: %q", b)
	}
	if strings.Contains(stderr2.String(), "created the feed directory") {
		t.Errorf("a second start created the feed directory again")
	}
	c = &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(mustURL("http://" + addr))}}
	if resp, _ := fetch(t, c, "http://edited.picket.test/", nil); resp.StatusCode != http.StatusForbidden {
		t.Errorf("a host of the edited feed: got %d, want 403", resp.StatusCode)
	}
}

// TestFeedDirectoryMissing: a feed directory the file names but that does
// not exist stops Picket with the file, line, key and the full path.
func TestFeedDirectoryMissing(t *testing.T) {
	path := configElsewhere(t, "[reputation.kpsn]\ndatabase = \"feeds-not-here\"\n")
	var stdout, stderr testutil.SyncBuffer
	err := serve(context.Background(), path, &stdout, &stderr, nil)
	want := fmt.Sprintf("%s:8: reputation.kpsn.database: no feed directory at %s", path, filepath.Join(filepath.Dir(path), "feeds-not-here"))
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("got %v, want %q", err, want)
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(path), "feeds-not-here")); err == nil {
		t.Errorf("a named feed directory was created")
	}
}

func mustURL(s string) *url.URL {
	u, err := url.Parse(s)
	if err != nil {
		panic(err)
	}
	return u
}
