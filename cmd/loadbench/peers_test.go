package main

import (
	"os"
	"regexp"
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
