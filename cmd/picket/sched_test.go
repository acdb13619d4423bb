package main

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/picket-proxy/picket/config"
)

func TestWithAwakeScheduler(t *testing.T) {
	for _, c := range []struct {
		env     []string
		want    []string
		changed bool
	}{
		{[]string{"HOME=/root"}, []string{"HOME=/root", "GODEBUG=" + config.AwakeSchedtrace}, true},
		{[]string{"GODEBUG="}, []string{"GODEBUG=" + config.AwakeSchedtrace}, true},
		{[]string{"GODEBUG=madvdontneed=1", "A=b"}, []string{"GODEBUG=madvdontneed=1," + config.AwakeSchedtrace, "A=b"}, true},
		{[]string{"GODEBUG=schedtrace=0"}, []string{"GODEBUG=schedtrace=0"}, false},
		{[]string{"GODEBUG=gctrace=1,schedtrace=1000"}, []string{"GODEBUG=gctrace=1,schedtrace=1000"}, false},
		// The runtime does not trim fields: " schedtrace" is not schedtrace.
		{[]string{"GODEBUG=gctrace=1, schedtrace=0"}, []string{"GODEBUG=gctrace=1, schedtrace=0," + config.AwakeSchedtrace}, true},
		{[]string{"XGODEBUG=schedtrace=0"}, []string{"XGODEBUG=schedtrace=0", "GODEBUG=" + config.AwakeSchedtrace}, true},
	} {
		orig := slices.Clone(c.env)
		got, changed := withAwakeScheduler(c.env)
		if changed != c.changed || !slices.Equal(got, c.want) {
			t.Errorf("withAwakeScheduler(%q) = %q, %v; want %q, %v", orig, got, changed, c.want, c.changed)
		}
		if !slices.Equal(c.env, orig) {
			t.Errorf("withAwakeScheduler changed its argument: %q, was %q", c.env, orig)
		}
	}
	for v, want := range map[string]bool{
		config.AwakeSchedtrace:                true,
		"gctrace=1," + config.AwakeSchedtrace: true,
		"schedtrace=0":                        false,
		"schedtrace=5,schedtrace=0":           false, // the last one counts, as in the runtime
		"schedtrace=x":                        false,
		"gctrace=1, schedtrace=5":             false, // not trimmed, as in the runtime
		"":                                    false,
		"madvdontneed=1":                      false,
	} {
		if got := schedulerAwake(v); got != want {
			t.Errorf("schedulerAwake(%q) = %v, want %v", v, got, want)
		}
	}
}

// TestBinaryKeepsSchedulerAwake runs the real binary: by default it
// restarts itself, in the same process, with schedtrace added to GODEBUG
// (read back from /proc/PID/environ, which exec replaces); an administrator's
// schedtrace, and scheduler_awake = false, leave the environment alone.
func TestBinaryKeepsSchedulerAwake(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	if runtime.GOOS != "linux" {
		t.Skip("Picket restarts itself only on Linux")
	}
	bin := buildPicket(t)
	for _, c := range []struct {
		name, godebug, proxyKeys string
		want                     string // GODEBUG of the running process; "-" for none
		awake                    bool
	}{
		{"default", "", "", config.AwakeSchedtrace, true},
		{"added to the administrator's", "madvdontneed=1", "", "madvdontneed=1," + config.AwakeSchedtrace, true},
		{"administrator's schedtrace wins", "schedtrace=0", "", "schedtrace=0", false},
		{"turned off", "", "scheduler_awake = false\n", "-", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			path := writeConfigWith(t, c.proxyKeys, "[log]\nformat = \"json\"\n")
			cmd := exec.Command(bin, "serve", "-config", path)
			cmd.Env = slices.DeleteFunc(os.Environ(), func(kv string) bool { return strings.HasPrefix(kv, "GODEBUG=") })
			if c.godebug != "" {
				cmd.Env = append(cmd.Env, "GODEBUG="+c.godebug)
			}
			stderr := startServing(t, cmd)
			environ, err := os.ReadFile("/proc/" + strconv.Itoa(cmd.Process.Pid) + "/environ")
			if err != nil {
				t.Fatal(err)
			}
			got := "-"
			for _, kv := range bytes.Split(environ, []byte{0}) {
				if v, ok := bytes.CutPrefix(kv, []byte("GODEBUG=")); ok {
					got = string(v)
				}
			}
			if got != c.want {
				t.Errorf("GODEBUG of the running picket: %q, want %q", got, c.want)
			}
			if want := `"scheduler_awake":` + strconv.FormatBool(c.awake); !strings.Contains(stderr.String(), want) {
				t.Errorf("start-up log without %s:\n%s", want, stderr.String())
			}
		})
	}
}

// TestServeRestartsOnlyFromMain checks the wiring of the restart: serve
// asks for it when the configuration says so and GODEBUG does not set
// schedtrace yet, and nothing but main turns it on, so that run called
// in-process (as here) never replaces its caller.
func TestServeRestartsOnlyFromMain(t *testing.T) {
	if restartAwake != nil {
		t.Fatal("restartAwake is set outside main: an in-process serve would exec")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close() // serve fails on the taken port, after the restart point
	calls := 0
	restartAwake = func(io.Writer) { calls++ }
	defer func() { restartAwake = nil }()
	for _, c := range []struct {
		keys, godebug string
		want          int
	}{
		{"", "", 1},
		{"scheduler_awake = false\n", "", 0},
		{"", config.AwakeSchedtrace, 0}, // the restarted process: no second look at the file
	} {
		t.Setenv("GODEBUG", c.godebug)
		calls = 0
		path := filepath.Join(t.TempDir(), "picket.toml")
		os.WriteFile(path, []byte(fmt.Sprintf("[proxy]\nlisten = %q\n%s", ln.Addr(), c.keys)), 0o644)
		var out, errb bytes.Buffer
		if code := run([]string{"serve", "-config", path}, &out, &errb); code != 1 {
			t.Errorf("%q: exit code %d, want 1 (port taken): %s", c.keys, code, errb.String())
		}
		if calls != c.want {
			t.Errorf("%q: restart asked %d times, want %d", c.keys, calls, c.want)
		}
	}
}
