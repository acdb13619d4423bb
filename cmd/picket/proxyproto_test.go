package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/pires/go-proxyproto"
	"github.com/rs/zerolog"
)

// TestProxyProtocol: two Picket nodes behind a load balancer that speaks
// the PROXY protocol. The client address used by the ACL and the logs is
// the one in the header; a balancer's connection without one, a malformed
// header and a header from an untrusted address are refused, counted and
// logged.
func TestProxyProtocol(t *testing.T) {
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ok")
	}))
	defer origin.Close()
	cfg := `allow_clients = ["192.0.2.0/24"]
proxy_protocol_from = ["127.0.0.1/32"]
`
	nodes := []*picketUnderTest{startPicketProxySection(t, cfg), startPicketProxySection(t, cfg)}
	send := func(addr, header string) string {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		fmt.Fprintf(c, "%sGET %s/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", header, origin.URL)
		line, _ := bufio.NewReader(c).ReadString('\n')
		return strings.TrimSpace(line)
	}
	for i, p := range nodes {
		// Through the balancer: an allowed client address.
		if got := send(p.addr, "PROXY TCP4 192.0.2.10 127.0.0.1 40000 3128\r\n"); !strings.Contains(got, "200") {
			t.Errorf("node %d, allowed client via PROXY: got %q", i, got)
		}
		l := p.waitAccess(t, func(l map[string]any) bool { return l["method"] == "GET" })
		if l["client"] != "192.0.2.10" {
			t.Errorf("node %d logged client %v, want 192.0.2.10", i, l["client"])
		}
		// A client address outside allow_clients is refused by the ACL.
		if got := send(p.addr, "PROXY TCP4 198.51.100.7 127.0.0.1 40000 3128\r\n"); !strings.Contains(got, "403") {
			t.Errorf("node %d, disallowed client via PROXY: got %q, want 403", i, got)
		}
	}
	// The balancer's connection without a header is refused, not served as
	// coming from the balancer (a PROXY-protocol listener must not guess);
	// so is a malformed header. Both are counted and logged.
	n := nodes[0]
	if got := send(n.addr, ""); got != "" {
		t.Errorf("trusted balancer without a header: got %q, want the connection closed", got)
	}
	if l := n.waitApp(t, ppMessages[ppMissing]); l["peer"] == nil || l["level"] != "warn" {
		t.Errorf("log line %v: want a warning naming the peer", l)
	}
	if got := send(n.addr, "PROXY TCP4 192.0.2.10 127.0.0.1 40000\r\n"); got != "" {
		t.Errorf("malformed header: got %q, want the connection closed", got)
	}
	n.waitApp(t, ppMessages[ppInvalid])
	for kind, want := range map[string]float64{"missing": 1, "invalid": 1, "untrusted": 0} {
		if got := n.metric(t, `picket_proxy_protocol_errors_total{kind="`+kind+`"}`); got != want {
			t.Errorf("picket_proxy_protocol_errors_total{kind=%q} = %v, want %v", kind, got, want)
		}
	}

	// A node that trusts another balancer refuses the header from us, and
	// serves us as a direct client without one.
	p := startPicketProxySection(t, "allow_clients = [\"192.0.2.0/24\", \"127.0.0.0/8\"]\nproxy_protocol_from = [\"127.0.0.2/32\"]\n")
	if got := send(p.addr, "PROXY TCP4 192.0.2.10 127.0.0.1 40000 3128\r\n"); got != "" {
		t.Errorf("PROXY header from an untrusted address: got %q, want the connection closed", got)
	}
	p.waitApp(t, ppMessages[ppUntrusted])
	if got := p.metric(t, `picket_proxy_protocol_errors_total{kind="untrusted"}`); got != 1 {
		t.Errorf("untrusted headers counted %v, want 1", got)
	}
	if got := send(p.addr, ""); !strings.Contains(got, "200") {
		t.Errorf("direct client without a header: got %q, want 200", got)
	}
}

// startPicketProxySection starts Picket with extra [proxy] keys.
func startPicketProxySection(t *testing.T, proxyKeys string) *picketUnderTest {
	t.Helper()
	return startPicketWith(t, proxyKeys, "")
}

// TestPPFailuresLogged: every refused connection is counted, one line per
// kind is logged within logEvery, and a read error that is not the
// header's is neither.
func TestPPFailuresLogged(t *testing.T) {
	var buf bytes.Buffer
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	l, err := newPPListener(ln, []string{"127.0.0.1/32"}, time.Second, zerolog.New(&buf))
	if err != nil {
		t.Fatal(err)
	}
	peer := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1}
	for _, err := range []error{proxyproto.ErrNoProxyProtocol, proxyproto.ErrNoProxyProtocol,
		fmt.Errorf("wrapped: %w", proxyproto.ErrInvalidPortNumber), io.EOF, proxyproto.ErrNoProxyProtocol} {
		if kind := ppKind(err); kind != ppNone {
			l.failed(kind, peer, err)
		}
	}
	if got := l.Errors(); got["missing"] != 3 || got["invalid"] != 1 || got["untrusted"] != 0 {
		t.Errorf("counts %v, want missing 3, invalid 1, untrusted 0", got)
	}
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 2 || !strings.Contains(lines[0], ppMessages[ppMissing]) || !strings.Contains(lines[1], ppMessages[ppInvalid]) {
		t.Errorf("logged %q, want one line for missing, one for invalid", lines)
	}
	if ppKind(proxyproto.ErrSuperfluousProxyHeader) != ppUntrusted {
		t.Error("a header from an untrusted address is not counted as untrusted")
	}
}
