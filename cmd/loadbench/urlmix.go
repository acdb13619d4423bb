package main

import (
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
)

// The URL mix: requests spread over many host names, all of which resolve
// to 127.0.0.1 through a hosts file that loadbench mounts over /etc/hosts
// in a mount namespace of its own (so every contestant, the load
// generators and the origin's clients read the same names, and nothing
// outside this process tree sees them). Paths within the mix are drawn
// from a Zipf distribution over mixURLs distinct URLs, so that a few URLs
// are frequent and many are rare, as in real browsing: the verdict cache
// has a realistic, measured hit ratio instead of one URL repeated.

// mixDomain is the parent of the mix's host names (RFC 2606: never on the
// Internet).
const mixDomain = "bench.test"

// mixURLs is how many distinct URLs the mix draws from, and mixZipf the
// Zipf exponent of their popularity.
const (
	mixURLs = 1 << 16
	mixZipf = 1.1
)

// nsEnv marks the child loadbench that runs inside the mount namespace.
const nsEnv = "LOADBENCH_HOSTS_NS"

// urlMix draws the requests' hosts and paths.
type urlMix struct {
	hosts []string // host names (without port)
}

// newMix returns the mix of n host names; n = 0 is the mix of one host,
// 127.0.0.1, for runs without a namespace.
func newMix(n int) *urlMix {
	if n == 0 {
		return &urlMix{hosts: []string{"127.0.0.1"}}
	}
	m := &urlMix{}
	for i := range n {
		m.hosts = append(m.hosts, fmt.Sprintf("site%d.%s", i, mixDomain))
	}
	return m
}

// source is one client's sequence of draws, reproducible from its seed.
type source struct {
	z *rand.Zipf
}

func (m *urlMix) source(seed uint64) *source {
	r := rand.New(rand.NewPCG(seed, 0x9e3779b97f4a7c15))
	return &source{z: rand.NewZipf(r, mixZipf, 1, mixURLs-1)}
}

// next returns the next URL's host index and path under prefix (the
// scenario's body size, "/1k" or "/10m"). With stick >= 0 the URL is the
// nearest one above the drawn one that is on host stick, so that a client
// that keeps one host still asks the mix's URLs, about as often.
func (s *source) next(m *urlMix, prefix string, stick int) (host int, path string) {
	u := s.z.Uint64()
	if stick >= 0 {
		for m.hostOf(u) != stick%len(m.hosts) {
			u++
		}
	}
	return m.hostOf(u), fmt.Sprintf("%s/%d", prefix, u)
}

// hostOf is the host of URL u: popular URLs are spread over the hosts, not
// all on the first.
func (m *urlMix) hostOf(u uint64) int { return int((u * 7919) % uint64(len(m.hosts))) }

// hostsFile is the content of the mounted /etc/hosts.
func (m *urlMix) hostsFile() string {
	var b strings.Builder
	b.WriteString("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n")
	for _, h := range m.hosts {
		fmt.Fprintf(&b, "127.0.0.1\t%s\n", h)
	}
	return b.String()
}

// inNamespace re-runs this program inside a new mount namespace
// (unshare -m) unless it already runs in one, and reports whether it did
// (then the caller exits with the child's status).
func inNamespace() (ran bool, status int) {
	if os.Getenv(nsEnv) != "" {
		return false, 0
	}
	self, err := os.Executable()
	if err != nil {
		return false, 0
	}
	unshare, err := exec.LookPath("unshare")
	if err != nil {
		return false, 0
	}
	cmd := exec.Command(unshare, append([]string{"-m", "--propagation", "private", self}, os.Args[1:]...)...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.Env = append(os.Environ(), nsEnv+"=1")
	if err := cmd.Start(); err != nil {
		fmt.Fprintln(os.Stderr, "loadbench: cannot make a mount namespace for the host names (needs root; -hosts 0 runs without them):", err)
		return true, 1
	}
	// A signal for this process is for the run in the namespace (unshare
	// execs it: same process).
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() {
		for s := range sigs {
			cmd.Process.Signal(s)
		}
	}()
	if err := cmd.Wait(); err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			return true, ee.ExitCode()
		}
		fmt.Fprintln(os.Stderr, "loadbench: cannot make a mount namespace for the host names (needs root):", err)
		return true, 1
	}
	return true, 0
}

// mountHosts writes the mix's hosts file into dir and mounts it over
// /etc/hosts; it works only inside the namespace inNamespace made.
func (m *urlMix) mountHosts(dir string) error {
	if os.Getenv(nsEnv) == "" {
		return fmt.Errorf("host names need loadbench's own mount namespace")
	}
	path := filepath.Join(dir, "hosts")
	if err := os.WriteFile(path, []byte(m.hostsFile()), 0o644); err != nil {
		return err
	}
	if err := bindMount(path, "/etc/hosts"); err != nil {
		return fmt.Errorf("mount the hosts file over /etc/hosts: %w", err)
	}
	return nil
}
