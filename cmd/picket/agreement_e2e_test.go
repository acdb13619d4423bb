package main

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestHostSpellingsAgree is the end-to-end test of one reading of hosts
// (internal/netaddr): Picket on loopback, with a rule blocking 127.0.0.2 and
// the name agree.picket.test, the reputation block list holding 127.0.0.3
// and listed.picket.test, and the destination 127.0.0.1 allowed only in its
// IPv4-mapped form (::ffff:127.0.0.1). Every spelling of each host — decimal,
// octal, hex and short IPv4, IPv4-mapped IPv6, a trailing dot, mixed case,
// full-width digits, percent-encoding (in a CONNECT, which carries its
// target as written) — gets the decision of the host it means: the
// destination policy, the rules and the reputation canonicalizer read it
// the same way. A blocked CONNECT is intercepted to show the page: the
// client verifies the certificate Picket minted for the canonical host.
func TestHostSpellingsAgree(t *testing.T) {
	var ports [4]string
	for n := 1; n <= 3; n++ {
		ports[n] = startOrigin(t, fmt.Sprintf("127.0.0.%d", n))
	}
	dir := t.TempDir()
	cfg := fmt.Sprintf(`[proxy]
listen = "127.0.0.1:0"
shutdown_grace = "2s"
allow_destinations = ["::ffff:127.0.0.1"]
allow_ports = ["1-65535"]
[admin]
listen = "127.0.0.1:0"
[reputation]
block = ["127.0.0.3", "listed.picket.test"]
[reputation.kpsn]
database = %q
[[rules]]
name = "agree"
action = "block"
hosts = ["127.0.0.2", "agree.picket.test"]
`, feedsDir(t))
	path := filepath.Join(dir, "picket.toml")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	p := startPicketAt(t, path)

	type want struct {
		status int
		reason string // in X-Picket-Reason; "" for an answer from the origin
	}
	reached := want{http.StatusOK, ""}
	byRule := want{http.StatusForbidden, "agree"}
	byVerdict := want{http.StatusForbidden, "block list"}
	for _, tc := range []struct {
		n     int    // the origin 127.0.0.n
		host  string // what the spellings mean
		w     want
		hosts []string
	}{
		{1, "127.0.0.1", reached, addrSpellings(1)},
		{2, "127.0.0.2", byRule, addrSpellings(2)},
		{3, "127.0.0.3", byVerdict, addrSpellings(3)},
		{2, "agree.picket.test", byRule, []string{"agree.picket.test", "AGREE.Picket.TEST.", "ａｇｒｅｅ.picket.test", "%61gree.picket.test"}},
		{3, "listed.picket.test", byVerdict, []string{"listed.picket.test", "Listed.PICKET.test.", "ｌｉｓｔｅｄ.picket.test", "list%65d.picket.test"}},
	} {
		for _, host := range tc.hosts {
			for _, method := range []string{"GET", "CONNECT"} {
				if method == "GET" && strings.Contains(host, "%") {
					continue // Go's URL parser refuses ASCII escapes in a host: 400
				}
				t.Run(method+" "+host, func(t *testing.T) {
					status, reason, body := spellingExchange(t, p, method, host+":"+ports[tc.n], tc.host)
					if status != tc.w.status || !strings.Contains(reason, tc.w.reason) {
						t.Fatalf("got %d (reason %q), want %d (reason with %q)", status, reason, tc.w.status, tc.w.reason)
					}
					if tc.w == reached && body != fmt.Sprintf("reached 127.0.0.%d", tc.n) {
						t.Errorf("body: got %q, want the origin on 127.0.0.%d", body, tc.n)
					}
				})
			}
		}
	}
}

// addrSpellings are ways to write 127.0.0.n that a browser, inet_aton and
// Picket read as that address.
func addrSpellings(n int) []string {
	v := 0x7f000000 + n
	return []string{
		fmt.Sprintf("127.0.0.%d", n),
		fmt.Sprint(v),
		fmt.Sprintf("0x%x", v),
		fmt.Sprintf("0X7F.0.0.%d", n),
		fmt.Sprintf("0x7f.%d", n),
		fmt.Sprintf("0177.0.0.0%o", n),
		fmt.Sprintf("127.%d", n),
		fmt.Sprintf("127.0.0.%d.", n),
		fmt.Sprintf("[::ffff:127.0.0.%d]", n),
		fmt.Sprintf("[::FFFF:7f00:%x]", n),
		fmt.Sprintf("１２７.０.０.%c", '０'+rune(n)),
		fmt.Sprintf("%%31%%32%%37.0.0.%d", n),
	}
}

// startOrigin serves "reached <addr>" on addr, a loopback address, until the
// test ends, and returns its port.
func startOrigin(t *testing.T, addr string) string {
	t.Helper()
	ln, err := net.Listen("tcp", addr+":0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "reached "+addr)
	}), ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	return port
}

// spellingExchange asks Picket for target (host:port, written as given) on
// a new connection: a GET with target in the request line, or a CONNECT
// followed by a GET inside the tunnel — over TLS verified for canonical
// (the host target means) when Picket intercepts to show a page. It returns
// the status, the X-Picket-Reason header and the body of the answer that
// decided.
func spellingExchange(t *testing.T, p *picketUnderTest, method, target, canonical string) (int, string, string) {
	t.Helper()
	c, err := net.Dial("tcp", p.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second)) // a regression fails, it does not hang
	if method == http.MethodGet {
		fmt.Fprintf(c, "GET http://%s/x HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", target, target)
		return readAnswer(t, bufio.NewReader(c), method)
	}
	fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", target, target)
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, &http.Request{Method: method})
	if err != nil {
		t.Fatalf("CONNECT %s: %v", target, err)
	}
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header.Get("X-Picket-Reason"), string(b)
	}
	inner, host := net.Conn(c), canonical // a tunnel to the plain-HTTP origin: its Host
	if canonical != "127.0.0.1" {         // the only host let through; the others intercepted
		pool := x509.NewCertPool()
		pool.AddCert(p.ca)
		tc := tls.Client(c, &tls.Config{ServerName: canonical, RootCAs: pool})
		if err := tc.Handshake(); err != nil {
			t.Fatalf("CONNECT %s: TLS inside the tunnel, verified for %s: %v", target, canonical, err)
		}
		inner, br, host = tc, bufio.NewReader(tc), target // Picket wants the CONNECT's authority as written
	}
	fmt.Fprintf(inner, "GET /x HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", host)
	return readAnswer(t, br, http.MethodGet)
}

// readAnswer reads a response and its body.
func readAnswer(t *testing.T, br *bufio.Reader, method string) (int, string, string) {
	t.Helper()
	resp, err := http.ReadResponse(br, &http.Request{Method: method})
	if err != nil {
		t.Fatalf("reading the answer: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header.Get("X-Picket-Reason"), string(b)
}

// TestUserInfoDoesNotHideTheHost: user information in an absolute-form URL
// names no host, whatever it holds. Picket dials the host after the '@';
// the reputation lookup must judge that host too, also when the user
// information carries an escaped '/' or '?' (which unescaped would end the
// authority early and make the user information look like the host).
func TestUserInfoDoesNotHideTheHost(t *testing.T) {
	port := startOrigin(t, "127.0.0.3")
	p := startPicket(t, "[reputation]\nblock = [\"127.0.0.3\"]\n")
	for _, userinfo := range []string{"", "allowed.test@", "allowed.test%2F@", "allowed.test%3F@", "allowed.test%252F@", "u:allowed.test%2Fx@"} {
		t.Run("userinfo "+userinfo, func(t *testing.T) {
			c, err := net.Dial("tcp", p.addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(10 * time.Second))
			fmt.Fprintf(c, "GET http://%s127.0.0.3:%s/x HTTP/1.1\r\nHost: 127.0.0.3:%s\r\nConnection: close\r\n\r\n", userinfo, port, port)
			status, reason, body := readAnswer(t, bufio.NewReader(c), http.MethodGet)
			if status != http.StatusForbidden || !strings.Contains(reason, "block list") {
				t.Errorf("got %d (reason %q) %.40q, want 403 by the block list", status, reason, body)
			}
		})
	}
}
