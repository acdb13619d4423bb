package main

import (
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"testing"
)

// gateway is a client host in a network namespace of its own, routed
// through this (the gateway's) namespace, whose traffic to chosen ports is
// redirected with iptables to a local port, as an administrator sets up a
// transparent proxy (docs/deployment.md, "Transparent gateway"). The
// namespace, the interface names and the 10.x.y.0/24 are random, so that
// tests running at the same time (other packages, other worktrees) do not
// collide; everything is undone in the test's cleanup.
type gateway struct {
	ns, hostIf  string
	gw, client  string // the gateway's and the client's address
	subnet      string // 10.x.y.0/24
	undo        [][]string
	cleanupDone bool
}

// newGateway builds the gateway, or returns "" and why it cannot here (not
// root). Missing tools fail the test: make tools installs them.
func newGateway(t *testing.T) (*gateway, string) {
	t.Helper()
	if runtime.GOOS != "linux" {
		return nil, "the transparent gateway is Linux's (network namespaces, iptables, SO_ORIGINAL_DST)"
	}
	if os.Geteuid() != 0 {
		return nil, "needs root for network namespaces and iptables (CI runs as root)"
	}
	for _, tool := range []string{"ip", "iptables", "curl"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is needed (make tools installs it): %v", tool, err)
		}
	}
	g := &gateway{}
	t.Cleanup(g.cleanup)
	addrs, _ := exec.Command("ip", "-o", "-4", "addr").Output()
	for attempt := 0; ; attempt++ {
		if attempt == 20 {
			t.Fatalf("no free network namespace name or subnet after %d attempts", attempt)
		}
		id := rand.Uint32()
		a, b := 78+int(id%48), int(id>>8%256)
		suffix := fmt.Sprintf("%06x", id>>8&0xffffff)
		prefix := fmt.Sprintf("10.%d.%d.", a, b)
		if strings.Contains(string(addrs), " "+prefix) {
			continue // another test's subnet
		}
		ns := "picket-gw-" + suffix
		if exec.Command("ip", "netns", "add", ns).Run() != nil {
			continue // taken
		}
		g.ns, g.hostIf = ns, "pkgh"+suffix
		g.gw, g.client, g.subnet = prefix+"1", prefix+"2", prefix+"0/24"
		g.undo = append(g.undo, []string{"ip", "netns", "del", ns})
		break
	}
	peer := "pkgc" + g.ns[len("picket-gw-"):]
	g.sh(t, "ip", "link", "add", g.hostIf, "type", "veth", "peer", "name", peer)
	g.undo = append(g.undo, []string{"ip", "link", "del", g.hostIf})
	g.sh(t, "ip", "link", "set", peer, "netns", g.ns)
	g.sh(t, "ip", "addr", "add", g.gw+"/24", "dev", g.hostIf)
	g.sh(t, "ip", "link", "set", g.hostIf, "up")
	g.sh(t, "ip", "netns", "exec", g.ns, "ip", "addr", "add", g.client+"/24", "dev", peer)
	g.sh(t, "ip", "netns", "exec", g.ns, "ip", "link", "set", peer, "up")
	g.sh(t, "ip", "netns", "exec", g.ns, "ip", "link", "set", "lo", "up")
	g.sh(t, "ip", "netns", "exec", g.ns, "ip", "route", "add", "default", "via", g.gw)
	return g, ""
}

func (g *gateway) sh(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
		t.Fatalf("%v: %v\n%s", args, err, out)
	}
}

// redirect sends the client's TCP traffic to port (on any address) to the
// gateway's local port to, until t ends.
func (g *gateway) redirect(t *testing.T, port, to int) {
	t.Helper()
	rule := []string{"PREROUTING", "-i", g.hostIf, "-p", "tcp", "--dport", strconv.Itoa(port), "-j", "REDIRECT", "--to-ports", strconv.Itoa(to)}
	g.sh(t, append([]string{"iptables", "-t", "nat", "-A"}, rule...)...)
	t.Cleanup(func() { exec.Command("iptables", append([]string{"-t", "nat", "-D"}, rule...)...).Run() })
}

// curl runs curl on the client host and returns the status and body.
func (g *gateway) curl(t *testing.T, args ...string) (int, string) {
	t.Helper()
	full := append([]string{"netns", "exec", g.ns, "curl", "-sS", "--max-time", "10", "-o", "-", "-w", "\n%{http_code}"}, args...)
	out, err := exec.Command("ip", full...).CombinedOutput()
	s := strings.TrimRight(string(out), "\n")
	i := strings.LastIndexByte(s, '\n')
	status, serr := strconv.Atoi(s[i+1:])
	if err != nil || serr != nil {
		t.Fatalf("curl %v: %v\n%s", args, err, out)
	}
	return status, s[:max(i, 0)]
}

func (g *gateway) cleanup() {
	if g.cleanupDone {
		return
	}
	g.cleanupDone = true
	for i := len(g.undo) - 1; i >= 0; i-- {
		exec.Command(g.undo[i][0], g.undo[i][1:]...).Run()
	}
}
