//go:build linux

package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/picket-proxy/picket/internal/testutil"
)

// debLock serialises the package tests of every checkout on this machine:
// the package is system-wide (/usr/bin/picket, the picket user).
const debLock = "/run/lock/picket-deb-install-test.lock"

// TestDebPackageInstallsSystemWide builds the Debian package (make deb),
// checks its layout and lintian, installs it on THIS machine with dpkg -i,
// runs `picket serve -config /etc/picket/config.toml` as the package's
// user without systemd, proxies requests, then removes (dpkg -r) and
// purges (dpkg -P) it. Root only (as CI runs); it holds a machine-wide lock
// file, refuses to start when anything of a picket installation is already
// there, and leaves the machine as it found it, also when it fails.
func TestDebPackageInstallsSystemWide(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and installs a package")
	}
	if os.Geteuid() != 0 {
		t.Skip("installs a Debian package system-wide: root only (CI runs as root)")
	}
	for _, tool := range []string{"dpkg", "dpkg-deb", "lintian", "make", "useradd", "userdel"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is needed (make test installs it): %v", tool, err)
		}
	}
	unlock := lockFile(t, debLock, 20*time.Minute)
	defer unlock()

	// 1. The machine as found: nothing of Picket, and whether the user
	// exists (then it is left alone).
	for _, p := range []string{"/usr/bin/picket", "/etc/picket", "/var/lib/picket", "/lib/systemd/system/picket.service"} {
		if _, err := os.Lstat(p); err == nil {
			t.Fatalf("%s exists: this test installs the picket package and would replace it", p)
		}
	}
	if out, err := exec.Command("dpkg-query", "-W", "-f=${db:Status-Status}", "picket").Output(); err == nil && len(out) > 0 && string(out) != "not-installed" {
		t.Fatalf("a picket package is on this machine (%s): this test would replace it", out)
	}
	_, userErr := user.Lookup("picket")
	userExisted := userErr == nil
	t.Cleanup(func() { restoreMachine(t, userExisted) })

	// 2. Build it, as a user would: make deb.
	out := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	mk := exec.CommandContext(ctx, "make", "-C", filepath.Join("..", ".."), "deb", "DEBOUT="+out, "DEBBUILD="+filepath.Join(out, "stage"))
	if b, err := mk.CombinedOutput(); err != nil {
		t.Fatalf("make deb: %v\n%s", err, b)
	}
	debs, _ := filepath.Glob(filepath.Join(out, "picket_*_amd64.deb"))
	if len(debs) != 1 {
		t.Fatalf("make deb made %v, want one picket_<version>_amd64.deb", debs)
	}
	deb := debs[0]
	version := strings.TrimSuffix(strings.TrimPrefix(filepath.Base(deb), "picket_"), "_amd64.deb")
	if v := runCmd(t, "dpkg-deb", "-f", deb, "Version"); strings.TrimSpace(v) != version || !regexp.MustCompile(`^[0-9]`).MatchString(version) {
		t.Errorf("package version %q, file name version %q: want the same, starting with a digit", v, version)
	}

	// 3. Its layout, conffile and lintian.
	listing := runCmd(t, "dpkg", "-c", deb)
	for _, want := range []string{
		"-rwxr-xr-x root/root .* ./usr/bin/picket\n",
		"-rw-r--r-- root/root .* ./etc/picket/config.toml\n",
		" ./etc/picket/data -> /var/lib/picket\n",
		"drwxr-xr-x root/root .* ./var/lib/picket/\n",
		" ./lib/systemd/system/picket.service\n",
		" ./usr/lib/sysusers.d/picket.conf\n",
		" ./usr/share/doc/picket/copyright\n",
	} {
		if !regexp.MustCompile(want).MatchString(listing) {
			t.Errorf("dpkg -c: no line matching %q in:\n%s", want, listing)
		}
	}
	if cf := runCmd(t, "sh", "-c", "dpkg-deb --ctrl-tarfile "+deb+" | tar -xOf - ./conffiles"); strings.TrimSpace(cf) != "/etc/picket/config.toml" {
		t.Errorf("conffiles: got %q, want /etc/picket/config.toml", cf)
	}
	lint := exec.CommandContext(ctx, "lintian", "--fail-on", "error", deb)
	lint.Env = append(os.Environ(), "TMPDIR="+t.TempDir()) // it leaves a cache file (mldbm-elf-*) in its TMPDIR
	if b, err := lint.CombinedOutput(); err != nil {
		t.Errorf("lintian reports errors: %v\n%s", err, b)
	}

	// 4. Install: the user, the owners and modes postinst sets.
	runCmd(t, "dpkg", "-i", deb)
	u, err := user.Lookup("picket")
	if err != nil {
		t.Fatalf("postinst made no picket user: %v", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	for path, want := range map[string]string{"/var/lib/picket": "drwxr-x--- picket:picket", "/etc/picket/config.toml": "-rw-r----- root:picket"} {
		if got := runCmd(t, "stat", "-c", "%A %U:%G", path); strings.TrimSpace(got) != want {
			t.Errorf("%s: got %s, want %s", path, strings.TrimSpace(got), want)
		}
	}
	unit, _ := os.ReadFile("/lib/systemd/system/picket.service")
	if !strings.Contains(string(unit), "ExecStart=/usr/bin/picket serve -config /etc/picket/config.toml") {
		t.Errorf("the installed unit does not start /usr/bin/picket:\n%s", unit)
	}

	// 5. Run the installed configuration as is — but for its two listen
	// addresses: a test may not take fixed ports (3128, 9090), so they are
	// moved to free ones in the installed file (a changed conffile, which
	// the purge below must still remove). Its relative paths must land in
	// /var/lib/picket whatever the current directory (here /).
	proxyAddr := freeAddr(t)
	conf, err := os.ReadFile("/etc/picket/config.toml")
	if err != nil {
		t.Fatal(err)
	}
	moved := strings.Replace(string(conf), `listen = "127.0.0.1:3128"`, fmt.Sprintf("listen = %q", proxyAddr), 1)
	moved = strings.Replace(moved, `listen = "127.0.0.1:9090"`, `listen = "127.0.0.1:0"`, 1)
	if strings.Count(moved, "127.0.0.1:3128")+strings.Count(moved, "127.0.0.1:9090") != 0 || moved == string(conf) {
		t.Fatalf("the shipped config.toml no longer has the listen lines this test moves:\n%s", conf)
	}
	if err := os.WriteFile("/etc/picket/config.toml", []byte(moved), 0o640); err != nil {
		t.Fatal(err)
	}
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "from the origin") }))
	defer origin.Close()
	serve := exec.Command("/usr/bin/picket", "serve", "-config", "/etc/picket/config.toml")
	serve.Dir = "/"
	serve.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}}
	var stdout, stderr testutil.SyncBuffer
	serve.Stdout, serve.Stderr = &stdout, &stderr
	if err := serve.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{}) // closed when it exited, with waitErr set
	var waitErr error
	go func() { waitErr = serve.Wait(); close(exited) }()
	defer func() {
		_ = serve.Process.Kill() // our own child, by its PID; nothing if it exited
		<-exited
	}()
	waitFor(t, exited, &stderr, "picket started")
	c := &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(mustURL("http://" + proxyAddr))}, Timeout: 20 * time.Second}
	if resp, body := fetch(t, c, origin.URL+"/", nil); resp.StatusCode != 200 || body != "from the origin" {
		t.Errorf("a request through the installed Picket: got %d %q", resp.StatusCode, body)
	}
	if resp, _ := fetch(t, c, "http://phishing.picket.test/", nil); resp.StatusCode != http.StatusForbidden {
		t.Errorf("the demo phishing host: got %d, want 403 from the built-in demo feeds", resp.StatusCode)
	}
	_ = serve.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
		if waitErr != nil {
			t.Errorf("picket after SIGTERM: %v\n%s", waitErr, stderr.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("picket did not stop after SIGTERM")
	}
	for path, want := range map[string]string{
		"/var/lib/picket/ca/picket-ca.key": "-rw------- picket:picket",
		"/var/lib/picket/admin.token":      "-rw------- picket:picket",
		"/var/lib/picket/feeds/feeds.toml": "-rw-r--r-- picket:picket",
	} {
		if got := runCmd(t, "stat", "-c", "%A %U:%G", path); strings.TrimSpace(got) != want {
			t.Errorf("%s: got %s, want %s", path, strings.TrimSpace(got), want)
		}
	}

	// 5b. An upgrade (the same package again: postinst's configure with
	// the old version) keeps the changed configuration, its owner and mode,
	// and the state.
	runCmd(t, "dpkg", "-i", deb)
	if got, _ := os.ReadFile("/etc/picket/config.toml"); string(got) != moved {
		t.Errorf("after an upgrade, the changed configuration was not kept:\n%s", got)
	}
	for path, want := range map[string]string{"/etc/picket/config.toml": "-rw-r----- root:picket",
		"/var/lib/picket/ca/picket-ca.key": "-rw------- picket:picket"} {
		if got := runCmd(t, "stat", "-c", "%A %U:%G", path); strings.TrimSpace(got) != want {
			t.Errorf("after an upgrade, %s: got %s, want %s", path, strings.TrimSpace(got), want)
		}
	}

	// 6. Remove keeps the configuration and the state; purge deletes both.
	runCmd(t, "dpkg", "-r", "picket")
	for path, want := range map[string]bool{"/usr/bin/picket": false, "/etc/picket/data": false,
		"/etc/picket/config.toml": true, "/var/lib/picket/ca/picket-ca.key": true} {
		if _, err := os.Lstat(path); (err == nil) != want {
			t.Errorf("after dpkg -r: %s exists: %v, want %v", path, err == nil, want)
		}
	}
	runCmd(t, "dpkg", "-P", "picket")
	for _, path := range []string{"/etc/picket", "/var/lib/picket"} {
		if _, err := os.Lstat(path); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("after dpkg -P: %s is still there (%v)", path, err)
		}
	}
	if so := runCmd(t, "dpkg-statoverride", "--list"); strings.Contains(so, "picket") {
		t.Errorf("after dpkg -P: statoverrides left: %s", so)
	}
}

// restoreMachine undoes what the package test may have left: the package
// (purged), its state, and the picket user when the test made it.
func restoreMachine(t *testing.T, userExisted bool) {
	if out, err := exec.Command("dpkg-query", "-W", "-f=${db:Status-Status}", "picket").Output(); err == nil && string(out) != "not-installed" {
		if b, err := exec.Command("dpkg", "-P", "picket").CombinedOutput(); err != nil {
			t.Errorf("cleanup: dpkg -P picket: %v\n%s", err, b)
		}
	}
	for _, p := range []string{"/var/lib/picket", "/etc/picket/config.toml"} {
		if exec.Command("dpkg-statoverride", "--list", p).Run() == nil {
			_ = exec.Command("dpkg-statoverride", "--remove", p).Run()
		}
	}
	_ = os.RemoveAll("/var/lib/picket")
	_ = os.RemoveAll("/etc/picket")
	if _, err := user.Lookup("picket"); err == nil && !userExisted {
		if b, err := exec.Command("userdel", "picket").CombinedOutput(); err != nil {
			t.Errorf("cleanup: userdel picket: %v\n%s", err, b)
		}
	}
}

// lockFile takes an exclusive lock on path, waiting up to wait for another
// holder, and returns its release.
func lockFile(t *testing.T, path string, wait time.Duration) func() {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(wait)
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() { _ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN); f.Close() }
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) || time.Now().After(deadline) {
			f.Close()
			t.Fatalf("lock %s (another package test runs?): %v", path, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// runCmd runs a command and returns its standard output; a failure fails the
// test with its output.
func runCmd(t *testing.T, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	var errb strings.Builder
	cmd.Stderr = &errb
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s%s", name, strings.Join(args, " "), err, out, errb.String())
	}
	return string(out)
}
