package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/picket-proxy/picket/internal/testutil"
)

// browser is headless Chromium with its own HOME (so its NSS database can
// trust a test CA without touching the system) pointed at a proxy.
type browser struct {
	bin, home, proxy string
	// tmp is its TMPDIR: it keeps its profile's singleton socket in a
	// directory of its own there (org.chromium.Chromium.*), which a
	// headless run leaves behind; under /tmp they piled up, run after run.
	tmp string
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
	return &browser{bin: bin, home: home, proxy: proxy, tmp: testutil.ShortTempDir(t, "pk-chr-")}
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
	// Under a loaded sandbox Chromium now and then dies of a signal as it
	// starts (seen: SIGSEGV 0.2 s in, nothing printed). That is the browser
	// crashing, not an answer from Picket: start it again, twice at most.
	// Any other failure, and a third crash, fails the test.
	for attempt := 1; ; attempt++ {
		cmd := exec.CommandContext(ctx, b.bin, append(base, args...)...)
		cmd.Env = append(os.Environ(), "HOME="+b.home, "TMPDIR="+b.tmp)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err == nil {
			return string(out)
		}
		if crashed(err) && attempt < 3 && ctx.Err() == nil {
			t.Logf("chromium crashed (%v), starting it again; its stderr:\n%s", err, lastLines(stderr.String(), 5))
			continue
		}
		t.Fatalf("chromium %v: %v\n%s", args, err, lastLines(stderr.String(), 20))
	}
}

// crashed reports whether err is a process killed by a crash signal.
func crashed(err error) bool {
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		return false
	}
	ws, ok := ee.Sys().(syscall.WaitStatus)
	if !ok || !ws.Signaled() {
		return false
	}
	switch ws.Signal() {
	case syscall.SIGSEGV, syscall.SIGBUS, syscall.SIGILL, syscall.SIGTRAP, syscall.SIGABRT:
		return true
	}
	return false
}

// lastLines returns the last n lines of s.
func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
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

// crashed tells a process killed by a crash signal (retried) from any other
// failure (not retried).
func TestCrashedTellsSignalsFromExits(t *testing.T) {
	for _, tc := range []struct {
		script string
		want   bool
	}{
		{"kill -SEGV $$", true},
		{"kill -ABRT $$", true},
		{"kill -TERM $$", false},
		{"exit 3", false},
	} {
		err := exec.Command("sh", "-c", tc.script).Run()
		if got := crashed(err); got != tc.want {
			t.Errorf("%q: crashed(%v) = %v, want %v", tc.script, err, got, tc.want)
		}
	}
}
