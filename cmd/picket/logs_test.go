//go:build unix

package main

import (
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestSquidLogAndReopen: with access_format = "squid" the access log file
// holds Squid-format lines; after logrotate moves it away, SIGUSR1 makes
// Picket write to a new file of the same name.
func TestSquidLogAndReopen(t *testing.T) {
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		io.WriteString(w, "hello")
	}))
	defer origin.Close()
	dir := t.TempDir()
	logPath := filepath.Join(dir, "access.log")
	p := startPicket(t, "[log]\naccess_format = \"squid\"\naccess_log = \""+logPath+"\"\n")
	c := p.client(t)
	fetch(t, c, origin.URL+"/one", nil)
	line := waitFile(t, logPath, "/one")
	squid := regexp.MustCompile(`^\d+\.\d{3} +\d+ 127\.0\.0\.1 TCP_MISS/200 5 GET http://127\.0\.0\.1:\d+/one - HIER_DIRECT/127\.0\.0\.1 text/plain$`)
	if !squid.MatchString(line) {
		t.Errorf("squid line: %q", line)
	}
	os.Rename(logPath, logPath+".1")
	syscall.Kill(os.Getpid(), syscall.SIGUSR1)
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(p.stderr.String(), "log files reopened") {
		if time.Now().After(deadline) {
			t.Fatal("no reopen in the log")
		}
		time.Sleep(5 * time.Millisecond)
	}
	fetch(t, c, origin.URL+"/two", nil)
	waitFile(t, logPath, "/two")
	if old, _ := os.ReadFile(logPath + ".1"); strings.Contains(string(old), "/two") {
		t.Errorf("a line went to the rotated file after SIGUSR1")
	}
}

// waitFile waits until a line containing s appears in path and returns it.
func waitFile(t *testing.T, path, s string) string {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		b, _ := os.ReadFile(path)
		for _, l := range strings.Split(string(b), "\n") {
			if strings.Contains(l, s) {
				return l
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("no line with %q in %s", s, path)
	return ""
}
