package proxy

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/pem"
	"fmt"
	"io"
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
	"time"

	"github.com/picket-proxy/picket/internal/testutil"
	"github.com/picket-proxy/picket/scanner"
)

// gatewayNet is a client host in a network namespace whose default route
// is this namespace, the gateway, over a veth pair; IPv4 and IPv6.
type gatewayNet struct {
	ns, vh   string // the namespace, the gateway's end of the veth pair
	gw, cl   string // IPv4 addresses of the gateway and the client
	gw6, cl6 string // IPv6 addresses of the gateway and the client
	undo     [][]string
}

// newGatewayNet builds a gatewayNet, or skips the test when not root; the
// test's cleanup removes all of it, and every rule added by redirect.
func newGatewayNet(t *testing.T) *gatewayNet {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root for network namespaces and iptables (CI runs as root)")
	}
	for _, tool := range []string{"ip", "iptables", "ip6tables", "curl"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is needed (make test installs it): %v", tool, err)
		}
	}
	g := &gatewayNet{}
	t.Cleanup(func() {
		for i := len(g.undo) - 1; i >= 0; i-- {
			exec.Command(g.undo[i][0], g.undo[i][1:]...).Run()
		}
	})
	// Random names and /24, retried when taken: other test processes (other
	// packages, other worktrees) build namespaces at the same time, and a
	// PID modulo a small number collides between them.
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
		g.ns = fmt.Sprintf("picket-t%06x", id>>8)
		if exec.Command("ip", "netns", "add", g.ns).Run() != nil {
			continue
		}
		g.vh, g.gw, g.cl = fmt.Sprintf("pkh%06x", id>>8), prefix+"1", prefix+"2"
		prefix6 := fmt.Sprintf("fd7c:%x:%x::", id>>16, id&0xffff) // a unique local /64 (RFC 4193)
		g.gw6, g.cl6 = prefix6+"1", prefix6+"2"
		break
	}
	vc := "pkc" + strings.TrimPrefix(g.vh, "pkh")
	ns, vh := g.ns, g.vh
	g.undo = append(g.undo, []string{"ip", "netns", "del", ns})
	g.sh(t, "ip", "link", "add", vh, "type", "veth", "peer", "name", vc)
	g.undo = append(g.undo, []string{"ip", "link", "del", vh})
	g.sh(t, "ip", "link", "set", vc, "netns", ns)
	g.sh(t, "ip", "addr", "add", g.gw+"/24", "dev", vh)
	g.sh(t, "ip", "link", "set", vh, "up")
	g.sh(t, "ip", "netns", "exec", ns, "ip", "addr", "add", g.cl+"/24", "dev", vc)
	g.sh(t, "ip", "netns", "exec", ns, "ip", "link", "set", vc, "up")
	g.sh(t, "ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up")
	g.sh(t, "ip", "netns", "exec", ns, "ip", "route", "add", "default", "via", g.gw)
	// IPv6 too (nodad: usable at once), for IP6T_SO_ORIGINAL_DST.
	g.sh(t, "ip", "-6", "addr", "add", g.gw6+"/64", "dev", vh, "nodad")
	g.sh(t, "ip", "netns", "exec", ns, "ip", "-6", "addr", "add", g.cl6+"/64", "dev", vc, "nodad")
	return g
}

// sh runs a command and fails the test if it fails.
func (g *gatewayNet) sh(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
		t.Fatalf("%v: %v\n%s", args, err, out)
	}
}

// redirect sends the client's TCP traffic to port to ln (tables is
// iptables or ip6tables), as an administrator would.
func (g *gatewayNet) redirect(t *testing.T, tables, port string, ln net.Listener) {
	t.Helper()
	_, to, _ := net.SplitHostPort(ln.Addr().String())
	rule := []string{"PREROUTING", "-i", g.vh, "-p", "tcp", "--dport", port, "-j", "REDIRECT", "--to-ports", to}
	g.sh(t, append([]string{tables, "-t", "nat", "-A"}, rule...)...)
	g.undo = append(g.undo, append([]string{tables, "-t", "nat", "-D"}, rule...))
}

// curl runs curl with args on the client host and returns the body and the
// status code it printed (or curl's error as the status).
func (g *gatewayNet) curl(t *testing.T, args ...string) (string, string) {
	t.Helper()
	full := append([]string{"netns", "exec", g.ns, "curl", "-sS", "--max-time", "10", "-o", "-", "-w", "\n%{http_code}"}, args...)
	out, _ := exec.Command("ip", full...).CombinedOutput()
	s := strings.TrimSpace(string(out))
	i := strings.LastIndexByte(s, '\n')
	if i < 0 {
		return "", s
	}
	return s[:i], s[i+1:]
}

// TestTransparentGateway builds a client host in a network namespace whose
// port 80 and 443 traffic the gateway (this namespace) redirects to
// Picket's transparent listeners with iptables, as an administrator would.
func TestTransparentGateway(t *testing.T) {
	g := newGatewayNet(t)
	gw, cl, gw6, cl6 := g.gw, g.cl, g.gw6, g.cl6

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
	resolveTo(tp, gw, "example.com", "phishing.example")
	l80, _ := net.Listen("tcp", gw+":0")
	l443, _ := net.Listen("tcp", gw+":0")
	go tp.ServeTransparentHTTP(l80)
	go tp.ServeTransparentHTTPS(l443)
	l6, _ := net.Listen("tcp", "["+gw6+"]:0")
	go tp.ServeTransparentHTTP(l6)
	g.redirect(t, "iptables", "80", l80)
	g.redirect(t, "iptables", "443", l443)
	g.redirect(t, "ip6tables", "80", l6)
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Certificate().Raw}), 0o644)

	curl := func(args ...string) (string, string) {
		t.Helper()
		return g.curl(t, args...)
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

// TestTransparentUploadScanning: uploads redirected to the transparent
// listeners, plain HTTP and intercepted TLS, are scanned as the proxy
// listener's are (roundTrip's step 3): EICAR, as the body or a form's file,
// POST or PUT, with Content-Length or chunked, gets the block page and
// never reaches the origin; a clean upload of a few hundred KiB arrives
// byte for byte.
func TestTransparentUploadScanning(t *testing.T) {
	g := newGatewayNet(t)
	plain, tlsSink := testutil.NewSink(), testutil.NewSink()
	o80, err := net.Listen("tcp", g.gw+":80")
	if err != nil {
		t.Fatal(err)
	}
	origin := &httptest.Server{Listener: o80, Config: &http.Server{Handler: plain}}
	origin.Start()
	defer origin.Close()
	o443, err := net.Listen("tcp", g.gw+":443")
	if err != nil {
		t.Fatal(err)
	}
	tlsOrigin := &httptest.Server{Listener: o443, Config: &http.Server{Handler: tlsSink}}
	tlsOrigin.StartTLS() // httptest's certificate names example.com
	defer tlsOrigin.Close()

	sc, err := scanner.New(scanner.Config{TempDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	ca := testCA(t)
	tp := startProxy(t, Config{
		Scanner: sc, ScanUploads: true,
		Decider: DeciderFunc(func(context.Context, *Request) (Decision, error) {
			return Decision{Action: Allow, Intercept: true}, nil
		}),
		Intercept:         func(host string) (*tls.Config, error) { return ca.TLSConfig(host), nil },
		RootCAs:           poolOf(tlsOrigin.Certificate()),
		Clients:           []netip.Prefix{netip.MustParsePrefix(g.cl + "/32")},
		AllowDestinations: []netip.Prefix{netip.MustParsePrefix(g.gw + "/32")},
	})
	resolveTo(tp, g.gw, "example.com")
	l80, _ := net.Listen("tcp", g.gw+":0")
	l443, _ := net.Listen("tcp", g.gw+":0")
	go tp.ServeTransparentHTTP(l80)
	go tp.ServeTransparentHTTPS(l443)
	g.redirect(t, "iptables", "80", l80)
	g.redirect(t, "iptables", "443", l443)

	dir := t.TempDir()
	write := func(name string, data []byte) string {
		f := filepath.Join(dir, name)
		if err := os.WriteFile(f, data, 0o644); err != nil {
			t.Fatal(err)
		}
		return f
	}
	clean, _ := io.ReadAll(randReader(11, 300<<10+7))
	cleanFile, eicarPath := write("clean.bin", clean), write("eicar.com", []byte(eicarFile))
	caFile := write("ca.pem", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Certificate().Raw}))
	bodies := []struct {
		name    string
		args    []string // curl's method and body
		body    []byte   // what the origin must receive; nil: nothing
		chunked bool     // the client's framing, which the origin must see
		member  string   // the form's file, named on the block page
	}{
		{"clean POST", []string{"--data-binary", "@" + cleanFile, "-H", "Content-Type: application/octet-stream"}, clean, false, ""},
		{"clean PUT chunked", []string{"-T", cleanFile, "-H", "Transfer-Encoding: chunked"}, clean, true, ""},
		{"eicar POST", []string{"--data-binary", "@" + eicarPath, "-H", "Content-Type: application/octet-stream"}, nil, false, ""},
		{"eicar PUT chunked", []string{"-T", eicarPath, "-H", "Transfer-Encoding: chunked"}, nil, true, ""},
		{"eicar in a form", []string{"-F", "file=@" + eicarPath}, nil, false, "eicar.com"},
	}
	paths := []struct {
		name   string
		base   string
		args   []string
		origin *testutil.Sink
	}{
		{"http", "http://" + g.gw, nil, plain},
		{"https intercepted", "https://example.com", []string{"--cacert", caFile, "--resolve", "example.com:443:" + g.gw}, tlsSink},
	}
	for _, p := range paths {
		for i, b := range bodies {
			t.Run(p.name+"/"+b.name, func(t *testing.T) {
				path := fmt.Sprintf("/upload/%s/%d", strings.ReplaceAll(p.name, " ", "-"), i)
				args := append(append(append([]string{}, p.args...), b.args...), p.base+path)
				page, status := g.curl(t, args...)
				l := tp.waitAccess(t, func(l map[string]any) bool { return strings.HasSuffix(fmt.Sprint(l[fURL]), path) })
				got, reached := p.origin.Received(path)
				if b.body != nil {
					if status != "200" || !reached || !bytes.Equal(got.Body, b.body) {
						t.Fatalf("clean upload: got %s %.200q, origin reached %v with %d bytes (identical %v); want 200 and the %d bytes",
							status, page, reached, len(got.Body), bytes.Equal(got.Body, b.body), len(b.body))
					}
					if got.Chunked != b.chunked {
						t.Errorf("origin framing: chunked %v, want %v", got.Chunked, b.chunked)
					}
					if l[fClient] != g.cl || l["upload_result"] != "unknown" || l["bytes_in"] != float64(len(b.body)) {
						t.Errorf("access line %v, want client %s, upload_result unknown, bytes_in %d", l, g.cl, len(b.body))
					}
					return
				}
				if reached {
					t.Fatalf("the origin received the infected upload (%d bytes)", len(got.Body))
				}
				inc, _ := l["incident"].(string)
				if status != "403" || inc == "" || !strings.Contains(page, inc) || !strings.Contains(page, scanner.EICARName) ||
					!strings.Contains(page, "upload") || (b.member != "" && !strings.Contains(page, b.member)) {
					t.Errorf("want the block page naming the upload, %s and the incident %q; got %s %.800s", scanner.EICARName, inc, status, page)
				}
				if l["action"] != "block" || l["rule"] != "scanner.upload.eicar" || l["upload_result"] != "malicious" {
					t.Errorf("access line %v, want a block by rule scanner.upload.eicar", l)
				}
			})
		}
	}
}

// TestTransparentTLSNameMustBeTheDestination: redirected TLS is decided on
// its SNI name but always tunnelled to the original destination, so a name
// that does not lead there must not decide. A client of 127.0.0.77 connects
// to 127.0.0.78:443, an address a rule blocks, with the SNI of an allowed
// name: the connection is closed, as a Host that does not name the
// destination is refused on plain HTTP. The same client with the SNI of a
// name that resolves to 127.0.0.78 is judged by that name. Loopback only:
// the firewall's REDIRECT is in the nat table's OUTPUT chain, for this
// source and destination alone.
func TestTransparentTLSNameMustBeTheDestination(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root for iptables")
	}
	if _, err := exec.LookPath("iptables"); err != nil {
		t.Skip("needs iptables")
	}
	const client, dst = "127.0.0.77", "127.0.0.78"
	ln, err := net.Listen("tcp", dst+":443")
	if err != nil {
		t.Fatalf("listening on %s:443: %v", dst, err)
	}
	origin := &httptest.Server{Listener: ln, Config: &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "blocked origin")
	})}}
	origin.StartTLS()
	defer origin.Close()

	tp := startProxy(t, Config{
		Decider: DeciderFunc(func(_ context.Context, r *Request) (Decision, error) {
			if h := stripPort(r.URL.Host); h == dst || h == "blocked.test" {
				return Decision{Action: Block, Rule: "no-" + h}, nil
			}
			return Decision{Action: Allow}, nil
		}),
	})
	resolveTo(tp, dst, "blocked.test", "also.test")

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go tp.ServeTransparentHTTPS(l)
	_, to, _ := net.SplitHostPort(l.Addr().String())
	rule := []string{"OUTPUT", "-s", client, "-d", dst, "-p", "tcp", "--dport", "443", "-j", "REDIRECT", "--to-ports", to}
	if out, err := exec.Command("iptables", append([]string{"-t", "nat", "-A"}, rule...)...).CombinedOutput(); err != nil {
		t.Fatalf("iptables: %v\n%s", err, out)
	}
	t.Cleanup(func() { exec.Command("iptables", append([]string{"-t", "nat", "-D"}, rule...)...).Run() })

	for _, tc := range []struct {
		sni     string
		reached bool
	}{
		{"", false},             // judged by the address: blocked
		{"allowed.test", false}, // does not resolve to the destination
		{"blocked.test", false},
		{"also.test", true}, // resolves to the destination, allowed
	} {
		t.Run("sni "+tc.sni, func(t *testing.T) {
			d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(client)}, Timeout: 5 * time.Second}
			raw, err := d.Dial("tcp", dst+":443")
			if err != nil {
				t.Fatal(err)
			}
			defer raw.Close()
			raw.SetDeadline(time.Now().Add(10 * time.Second))
			c := tls.Client(raw, &tls.Config{ServerName: tc.sni, InsecureSkipVerify: true}) // the client knows whom it reaches
			var body string
			if err = c.Handshake(); err == nil {
				fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", tc.sni)
				b, _ := io.ReadAll(c)
				body = string(b)
			}
			if got := strings.Contains(body, "blocked origin"); got != tc.reached {
				t.Errorf("origin reached: %v (handshake: %v, %.80q), want %v", got, err, body, tc.reached)
			}
		})
	}
}

// resolveTo makes Picket's resolver answer addr for names, as the clients'
// --resolve does: a redirected TLS connection's SNI must resolve to its
// original destination.
func resolveTo(tp *testProxy, addr string, names ...string) {
	a := netip.MustParseAddr(addr)
	tp.Server.lookupIP = func(_ context.Context, host string) ([]netip.Addr, error) {
		for _, n := range names {
			if host == n {
				return []netip.Addr{a}, nil
			}
		}
		return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
	}
}
