package proxy

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
)

// TestSNIHost: only a DNS host name counts as the name a ClientHello asks
// for (RFC 6066 §3); an IP literal or a name with a port counts as none.
func TestSNIHost(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"example.test", "example.test"},
		{"Example.Test.", "Example.Test."},
		{"", ""},
		{"127.0.0.1", ""},
		{"::1", ""},
		{"[::1]", ""},
		{"example.test:443", ""},
		{"127.0.0.1:8443", ""},
		{"[::1]:443", ""},
		{"a/b", ""},
	} {
		if got := sniHost(tc.in); got != tc.want {
			t.Errorf("sniHost(%q): got %q, want %q", tc.in, got, tc.want)
		}
	}
}

// TestInterceptIgnoresServerNameThatIsNoHostName: a client whose TLS
// ServerName is host:port (as hey sends it) or another name with a port gets
// its requests answered through interception — 200, never 421 — on new and
// kept-alive connections, with a certificate minted for the CONNECT host.
func TestInterceptIgnoresServerNameThatIsNoHostName(t *testing.T) {
	origin := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "host=%s", r.Host)
	}))
	defer origin.Close()
	ca := testCA(t)
	tp, _ := startIntercepting(t, ca, origin.Certificate())
	u, _ := url.Parse(origin.URL)

	for _, serverName := range []string{u.Host, "example.test:" + u.Port()} {
		t.Run(serverName, func(t *testing.T) {
			var leaves []*x509.Certificate
			tr := &http.Transport{
				Proxy: http.ProxyURL(tp.url),
				TLSClientConfig: &tls.Config{
					ServerName: serverName,
					// The name is not one a certificate can match; check the
					// chain and the name Picket minted for instead.
					InsecureSkipVerify: true,
					VerifyConnection: func(cs tls.ConnectionState) error {
						leaf := cs.PeerCertificates[0]
						if _, err := leaf.Verify(x509.VerifyOptions{Roots: poolOf(ca.Certificate()), DNSName: u.Hostname()}); err != nil {
							return err
						}
						leaves = append(leaves, leaf)
						return nil
					},
				},
			}
			defer tr.CloseIdleConnections()
			c := &http.Client{Transport: tr}
			for i := range 4 {
				if i == 2 {
					tr.CloseIdleConnections() // and over a new tunnel
				}
				resp, err := c.Get(origin.URL + "/")
				if err != nil {
					t.Fatalf("request %d: %v", i, err)
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK || string(b) != "host="+u.Host {
					t.Fatalf("request %d: got %d %q, want 200 host=%s", i, resp.StatusCode, b, u.Host)
				}
			}
			if len(leaves) != 2 {
				t.Fatalf("got %d handshakes, want 2", len(leaves))
			}
			if l := leaves[0]; len(l.DNSNames) != 0 || len(l.IPAddresses) != 1 || !l.IPAddresses[0].Equal(net.ParseIP(u.Hostname())) {
				t.Errorf("leaf minted for DNS %v IP %v, want the CONNECT host %s only", l.DNSNames, l.IPAddresses, u.Hostname())
			}
		})
	}
}

// TestPeekSNIIgnoresNoHostName: on the transparent listener a ClientHello
// whose server_name is a name with a port or an IP literal counts as
// naming nothing (the original destination stands); bytes that are no host
// name at all are still refused.
func TestPeekSNIIgnoresNoHostName(t *testing.T) {
	ipLiteral := bytes.Replace(clientHello(t, "aaaa.example"), []byte("aaaa.example"), []byte("192.168.1.10"), 1)
	for name, hello := range map[string][]byte{
		"name with port":   clientHello(t, "example.test:443"),
		"IPv4 with port":   clientHello(t, "127.0.0.1:443"),
		"IPv4 literal":     ipLiteral,
		"bracketed v6:443": bytes.Replace(clientHello(t, "aaaaaaaaa.example"), []byte("aaaaaaaaa.example"), []byte("[2001:db8::1]:443"), 1),
	} {
		read, sni, err := peekSNI(&bytesConn{r: bytes.NewReader(hello)})
		if err != nil || sni != "" || !bytes.Equal(read, hello) {
			t.Errorf("%s: got name %q, %v (read %d of %d bytes); want no name, no error", name, sni, err, len(read), len(hello))
		}
	}
	if _, sni, err := peekSNI(&bytesConn{r: bytes.NewReader(clientHello(t, "example.test"))}); err != nil || sni != "example.test" {
		t.Errorf("a host name: got %q, %v", sni, err)
	}
	if _, _, err := peekSNI(&bytesConn{r: bytes.NewReader(helloWithBadSNI(t))}); err == nil || errors.Is(err, io.EOF) {
		t.Errorf("NUL and '/' in the name: got %v, want a refusal", err)
	}
}
