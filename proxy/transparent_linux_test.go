package proxy

import (
	"context"
	"crypto/tls"
	"encoding/pem"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestTransparentGateway builds a client host in a network namespace whose
// port 80 and 443 traffic the gateway (this namespace) redirects to
// Picket's transparent listeners with iptables, as an administrator would.
func TestTransparentGateway(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root for network namespaces and iptables (CI runs as root)")
	}
	for _, tool := range []string{"ip", "iptables", "ip6tables", "curl"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is needed (make test installs it): %v", tool, err)
		}
	}
	var undo [][]string
	sh := func(args ...string) {
		t.Helper()
		if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%v: %v\n%s", args, err, out)
		}
	}
	t.Cleanup(func() {
		for i := len(undo) - 1; i >= 0; i-- {
			exec.Command(undo[i][0], undo[i][1:]...).Run()
		}
	})
	// Random names and /24, retried when taken: other test processes (other
	// packages, other worktrees) build namespaces at the same time, and a
	// PID modulo a small number collides between them.
	var ns, vh, vc, gw, cl, gw6, cl6 string
	addrs, _ := exec.Command("ip", "-o", "-4", "addr").Output()
	for attempt := 0; ; attempt++ {
		if attempt == 20 {
			t.Fatalf("no free network namespace name or subnet after %d attempts", attempt)
		}
		id := rand.Uint32()
		prefix := fmt.Sprintf("10.%d.%d.", 78+id%48, id>>8%256)
		if strings.Contains(string(addrs), " "+prefix) {
			continue
		}
		ns = fmt.Sprintf("picket-t%06x", id>>8)
		if exec.Command("ip", "netns", "add", ns).Run() != nil {
			continue
		}
		vh, vc, gw, cl = fmt.Sprintf("pkh%06x", id>>8), fmt.Sprintf("pkc%06x", id>>8), prefix+"1", prefix+"2"
		prefix6 := fmt.Sprintf("fd7c:%x:%x::", id>>16, id&0xffff) // a unique local /64 (RFC 4193)
		gw6, cl6 = prefix6+"1", prefix6+"2"
		break
	}
	undo = append(undo, []string{"ip", "netns", "del", ns})
	sh("ip", "link", "add", vh, "type", "veth", "peer", "name", vc)
	undo = append(undo, []string{"ip", "link", "del", vh})
	sh("ip", "link", "set", vc, "netns", ns)
	sh("ip", "addr", "add", gw+"/24", "dev", vh)
	sh("ip", "link", "set", vh, "up")
	sh("ip", "netns", "exec", ns, "ip", "addr", "add", cl+"/24", "dev", vc)
	sh("ip", "netns", "exec", ns, "ip", "link", "set", vc, "up")
	sh("ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up")
	sh("ip", "netns", "exec", ns, "ip", "route", "add", "default", "via", gw)
	// IPv6 too (nodad: usable at once), for IP6T_SO_ORIGINAL_DST.
	sh("ip", "-6", "addr", "add", gw6+"/64", "dev", vh, "nodad")
	sh("ip", "netns", "exec", ns, "ip", "-6", "addr", "add", cl6+"/64", "dev", vc, "nodad")

	// Origins on the gateway's address, ports 80 and 443.
	mux := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "origin saw %s %s", r.Host, r.URL.Path)
	})
	o80, err := net.Listen("tcp", gw+":80")
	if err != nil {
		t.Fatal(err)
	}
	origin := &httptest.Server{Listener: o80, Config: &http.Server{Handler: mux}}
	origin.Start()
	defer origin.Close()
	o6, err := net.Listen("tcp", "["+gw6+"]:80")
	if err != nil {
		t.Fatal(err)
	}
	origin6 := &httptest.Server{Listener: o6, Config: &http.Server{Handler: mux}}
	origin6.Start()
	defer origin6.Close()
	o443, err := net.Listen("tcp", gw+":443")
	if err != nil {
		t.Fatal(err)
	}
	tlsOrigin := &httptest.Server{Listener: o443, Config: &http.Server{Handler: mux}}
	tlsOrigin.StartTLS() // httptest's certificate names example.com and 127.0.0.1
	defer tlsOrigin.Close()

	ca := testCA(t)
	list := &listedNets{nets: []netip.Prefix{netip.MustParsePrefix(gw + "/32")}}
	tp := startProxy(t, Config{
		BlockAddresses: list,
		Decider: DeciderFunc(func(_ context.Context, r *Request) (Decision, error) {
			if strings.Contains(r.URL.Host, "phishing") || strings.Contains(r.URL.Path, "blocked") {
				return Decision{Action: Block, Verdict: "phishing", Intercept: true}, nil
			}
			return Decision{Action: Allow, Intercept: true}, nil
		}),
		Intercept: func(host string) (*tls.Config, error) { return ca.TLSConfig(host), nil },
		RootCAs:   poolOf(tlsOrigin.Certificate()),
		Clients:   []netip.Prefix{netip.MustParsePrefix(cl + "/32"), netip.MustParsePrefix(cl6 + "/128")},
		// The IPv6 origin's unique local address is an intranet one.
		AllowDestinations: []netip.Prefix{netip.MustParsePrefix(gw6 + "/128")},
	})
	l80, _ := net.Listen("tcp", gw+":0")
	l443, _ := net.Listen("tcp", gw+":0")
	go tp.ServeTransparentHTTP(l80)
	go tp.ServeTransparentHTTPS(l443)
	l6, _ := net.Listen("tcp", "["+gw6+"]:0")
	go tp.ServeTransparentHTTP(l6)
	for _, r := range []struct {
		tables, port string
		ln           net.Listener
	}{{"iptables", "80", l80}, {"iptables", "443", l443}, {"ip6tables", "80", l6}} {
		_, to, _ := net.SplitHostPort(r.ln.Addr().String())
		rule := []string{"PREROUTING", "-i", vh, "-p", "tcp", "--dport", r.port, "-j", "REDIRECT", "--to-ports", to}
		sh(append([]string{r.tables, "-t", "nat", "-A"}, rule...)...)
		undo = append(undo, append([]string{r.tables, "-t", "nat", "-D"}, rule...))
	}
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Certificate().Raw}), 0o644)

	curl := func(args ...string) (string, string) {
		t.Helper()
		full := append([]string{"netns", "exec", ns, "curl", "-sS", "--max-time", "10", "-o", "-", "-w", "\n%{http_code}"}, args...)
		out, _ := exec.Command("ip", full...).CombinedOutput()
		s := strings.TrimSpace(string(out))
		i := strings.LastIndexByte(s, '\n')
		if i < 0 {
			return "", s
		}
		return s[:i], s[i+1:]
	}
	for _, tc := range []struct {
		name       string
		args       []string
		wantStatus string
		wantBody   string
	}{
		{"http reaches the origin", []string{"http://" + gw + "/hello"}, "200", "origin saw " + gw + " /hello"},
		{"http over IPv6 reaches the origin", []string{"-6", "http://[" + gw6 + "]/hello6"}, "200", "origin saw [" + gw6 + "] /hello6"},
		{"https intercepted", []string{"--cacert", caFile, "--resolve", "example.com:443:" + gw, "https://example.com/hi"}, "200", "origin saw example.com /hi"},
		{"http blocked", []string{"http://" + gw + "/blocked"}, "403", "Access blocked"},
		{"https blocked host", []string{"--cacert", caFile, "--resolve", "phishing.example:443:" + gw, "https://phishing.example/"}, "403", "phishing"},
		{"forged Host refused", []string{"-H", "Host: 192.0.2.99", "http://" + gw + "/"}, "409", "does not name the server"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body, status := curl(tc.args...)
			if status != tc.wantStatus || !strings.Contains(body, tc.wantBody) {
				t.Errorf("got %s %q, want %s and %q", status, body, tc.wantStatus, tc.wantBody)
			}
		})
	}
	l := tp.waitAccess(t, func(l map[string]any) bool { return l[fURL] == "http://"+gw+"/hello" })
	if l[fClient] != cl {
		t.Errorf("logged client: got %v, want %s", l[fClient], cl)
	}
	// Through Picket, not past it: the original destination of the IPv6
	// connection came from IP6T_SO_ORIGINAL_DST.
	l = tp.waitAccess(t, func(l map[string]any) bool { return l[fURL] == "http://["+gw6+"]/hello6" })
	if l[fClient] != cl6 {
		t.Errorf("logged IPv6 client: got %v, want %s", l[fClient], cl6)
	}

	// A threat feed lists the origin's network: the address actually
	// dialled (the original destination) is refused, plain and intercepted.
	list.set(true)
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"http to a listed network", []string{"http://" + gw + "/hello"}},
		{"https to a listed network", []string{"--cacert", caFile, "--resolve", "example.com:443:" + gw, "https://example.com/hi"}},
	} {
		body, status := curl(tc.args...)
		if status != "403" || !strings.Contains(body, "spread malware") {
			t.Errorf("%s: got %s %q, want a 403 block", tc.name, status, body)
		}
	}
}
