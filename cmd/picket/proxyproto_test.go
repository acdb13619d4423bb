package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// TestProxyProtocol: two Picket nodes behind a load balancer that speaks
// the PROXY protocol. The client address used by the ACL and the logs is
// the one in the header; a header from an untrusted address is refused.
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
	// A node that trusts another balancer refuses the header from us.
	p := startPicketProxySection(t, "allow_clients = [\"192.0.2.0/24\", \"127.0.0.0/8\"]\nproxy_protocol_from = [\"127.0.0.2/32\"]\n")
	if got := send(p.addr, "PROXY TCP4 192.0.2.10 127.0.0.1 40000 3128\r\n"); strings.Contains(got, "200") {
		t.Errorf("PROXY header from an untrusted address: got %q, want the connection refused", got)
	}
}

// startPicketProxySection starts Picket with extra [proxy] keys.
func startPicketProxySection(t *testing.T, proxyKeys string) *picketUnderTest {
	t.Helper()
	return startPicketWith(t, proxyKeys, "")
}
