package main

import (
	"os/exec"
	"runtime"
	"strings"
	"testing"
)

// TestBinaryWarnsOfLowFileLimit runs the real binary under an open-file
// limit of 4096 (the shell's ulimit, soft and hard): with the default
// max_conns (20000 connections, two descriptors each) it warns at
// start-up, naming the limit, max_conns and what they need; with
// max_conns = 1000 it does not. It starts either way.
func TestBinaryWarnsOfLowFileLimit(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	if runtime.GOOS != "linux" {
		t.Skip("sh's ulimit -n sets both limits on Linux")
	}
	bin := buildPicket(t)
	for _, c := range []struct {
		name, proxyKeys string
		warn            bool
	}{
		{"default max_conns", "", true},
		{"max_conns within the limit", "max_conns = 1000\n", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			path := writeConfigWith(t, c.proxyKeys, "[log]\nformat = \"json\"\n")
			cmd := exec.Command("sh", "-c", `ulimit -n 4096 && exec "$0" serve -config "$1"`, bin, path)
			stderr := startServing(t, cmd)
			log := stderr.String()
			warned := strings.Contains(log, "the open-file limit is below what [proxy] max_conns needs")
			if warned != c.warn {
				t.Fatalf("warned %t, want %t:\n%s", warned, c.warn, log)
			}
			if c.warn {
				for _, f := range []string{`"open_file_limit":4096`, `"max_conns":20000`, `"needs":41024`} {
					if !strings.Contains(log, f) {
						t.Errorf("warning without %s:\n%s", f, log)
					}
				}
			}
		})
	}
}
