package main

import (
	"os"
	"regexp"
	"runtime"
	"testing"
)

// TestGoproxyVersion: the goproxy peer's printed configuration names the
// version go.mod requires, so a bump of the library cannot leave the
// benchmark's table naming the old one.
func TestGoproxyVersion(t *testing.T) {
	mod, err := os.ReadFile("../../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^\s*github\.com/elazarl/goproxy (v\S+)`).FindSubmatch(mod)
	if m == nil {
		t.Fatal("go.mod requires no github.com/elazarl/goproxy")
	}
	if got, want := goproxyVersion(), string(m[1]); got != want {
		t.Fatalf("goproxyVersion() = %q, go.mod requires %q", got, want)
	}
}

// TestGoVersionOf: the Go a binary was built with, read from the binary
// (this test's own), and a clear "(unknown)" for a file that is not one.
func TestGoVersionOf(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	if got := goVersionOf(exe); got != runtime.Version() {
		t.Errorf("goVersionOf(test binary) = %q, want %q", got, runtime.Version())
	}
	if got := goVersionOf("../../go.mod"); got != "(unknown)" {
		t.Errorf("goVersionOf(go.mod) = %q, want (unknown)", got)
	}
}
