package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// browser is headless Chromium with its own HOME (so its NSS database can
// trust a test CA without touching the system) pointed at a proxy.
type browser struct {
	bin, home, proxy string
}

// newBrowser prepares Chromium to use proxy and to trust caPEM. The test
// fails when Chromium is missing: .ci/run and `make test` install it.
func newBrowser(t *testing.T, proxy, caPEM string) *browser {
	t.Helper()
	bin, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatal("chromium is needed (make test installs it): ", err)
	}
	home := t.TempDir()
	nss := filepath.Join(home, ".pki", "nssdb")
	if err := os.MkdirAll(nss, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"-d", "sql:" + nss, "-N", "--empty-password"},
		{"-d", "sql:" + nss, "-A", "-t", "C,,", "-n", "picket-test", "-i", caPEM},
	} {
		if out, err := exec.Command("certutil", args...).CombinedOutput(); err != nil {
			t.Fatalf("certutil %v: %v\n%s", args, err, out)
		}
	}
	return &browser{bin: bin, home: home, proxy: proxy}
}

// run starts Chromium, with the proxy, with extra arguments and returns its
// stdout.
func (b *browser) run(t *testing.T, args ...string) string {
	t.Helper()
	return b.exec(t, append([]string{"--proxy-server=http://" + b.proxy, "--proxy-bypass-list=<-loopback>"}, args...)...)
}

// runNoProxy starts Chromium without a fixed proxy (args choose, e.g. a PAC
// URL); loopback destinations still follow the proxy settings.
func (b *browser) runNoProxy(t *testing.T, args ...string) string {
	t.Helper()
	return b.exec(t, append([]string{"--proxy-bypass-list=<-loopback>"}, args...)...)
}

func (b *browser) exec(t *testing.T, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	base := []string{
		"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--disable-dev-shm-usage", "--hide-scrollbars",
		"--user-data-dir=" + filepath.Join(b.home, "profile"),
	}
	cmd := exec.CommandContext(ctx, b.bin, append(base, args...)...)
	cmd.Env = append(os.Environ(), "HOME="+b.home)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("chromium %v: %v", args, err)
	}
	return string(out)
}

// dumpDOM loads url and returns the rendered DOM.
func (b *browser) dumpDOM(t *testing.T, url string) string {
	return b.run(t, "--virtual-time-budget=5000", "--dump-dom", url)
}

// screenshot saves a PNG of url at the given window size into the test
// artifacts directory and returns its path.
func (b *browser) screenshot(t *testing.T, url, name, size string) string {
	t.Helper()
	dir := artifactsDir(t)
	path := filepath.Join(dir, name)
	b.run(t, "--virtual-time-budget=5000", "--window-size="+size, "--screenshot="+path, url)
	st, err := os.Stat(path)
	if err != nil || st.Size() < 1000 {
		t.Fatalf("screenshot %s missing or empty: %v", path, err)
	}
	return path
}

// artifactsDir is where tests leave files for people to look at:
// $PICKET_ARTIFACTS, or test-artifacts/ at the repository root.
func artifactsDir(t *testing.T) string {
	dir := os.Getenv("PICKET_ARTIFACTS")
	if dir == "" {
		dir = filepath.Join("..", "..", "test-artifacts")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}
