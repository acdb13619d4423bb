package main

import (
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/picket-proxy/picket/internal/slapdtest"
)

// TestLDAPEndToEnd runs Picket against a real OpenLDAP (StartTLS, a test
// CA, a service account whose password is in a file): right and wrong
// passwords, an AD-style login name, an injection attempt in the user name,
// a groups rule matching a nested group with the block page naming the
// signed-in user (plain HTTP and inside an intercepted tunnel), user and
// groups in the access log, and the directory stopped mid-run (503 for
// credentials not verified recently, the cached ones still pass) and
// started again.
func TestLDAPEndToEnd(t *testing.T) {
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Proxy-Authorization") != "" {
			t.Errorf("the origin received Proxy-Authorization")
		}
		io.WriteString(w, "ok")
	}))
	defer origin.Close()
	tlsOrigin := httptest.NewTLSServer(origin.Config.Handler)
	defer tlsOrigin.Close()
	dir := t.TempDir()
	originPEM := filepath.Join(dir, "origin.pem")
	os.WriteFile(originPEM, pemOf(tlsOrigin.Certificate()), 0o644)
	pwFile := filepath.Join(dir, "ldap-password")
	os.WriteFile(pwFile, []byte("service-pw\n"), 0o600)

	s := slapdtest.Start(t, slapdtest.People)
	p := startPicket(t, fmt.Sprintf(`[auth]
cache_ttl = "10m"
[auth.ldap]
url = [%q]
ca_file = %q
bind_dn = "cn=picket,ou=services,dc=picket,dc=test"
bind_password_file = %q
user_base = "ou=people,dc=picket,dc=test"
group_base = "ou=groups,dc=picket,dc=test"
nested_groups = "search"
timeout = "10s"
[tls]
extra_roots = [%q]
[[rules]]
name = "no-games-for-gamers"
action = "block"
groups = ["gamers"]
url_prefixes = [%q, %q]
`, s.URL, s.CAFile, pwFile, originPEM, origin.URL+"/games/", tlsOrigin.URL+"/games/"))
	c := p.client(t)
	basic := func(user, pass string) map[string]string {
		return map[string]string{"Proxy-Authorization": "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass)),
			"Accept": "text/html"}
	}

	// 1. Passwords.
	if resp, _ := fetch(t, c, origin.URL+"/x", nil); resp.StatusCode != http.StatusProxyAuthRequired {
		t.Fatalf("without credentials: got %d, want 407", resp.StatusCode)
	}
	if resp, body := fetch(t, c, origin.URL+"/games/chess", basic("alice", "alice-pw")); resp.StatusCode != 200 || body != "ok" {
		t.Fatalf("alice: got %d %q, want the page (alice is not a gamer)", resp.StatusCode, body)
	}
	line := p.waitAccess(t, func(l map[string]any) bool { return l["user"] == "alice" })
	if got := strings.Fields(fmt.Sprint(line["groups"])); !slices.Equal(got, []string{"[staff]"}) {
		t.Errorf("alice's groups in the access log: got %v, want [staff]", line["groups"])
	}
	for _, tc := range []struct{ user, pass string }{
		{"alice", "wrong"},
		{"mallory", "alice-pw"},
		{"*)(uid=*", "alice-pw"},
		{"*", "carol-pw"},
	} {
		resp, _ := fetch(t, c, origin.URL+"/x", basic(tc.user, tc.pass))
		if resp.StatusCode != http.StatusProxyAuthRequired || resp.Header.Get("Proxy-Authenticate") == "" {
			t.Errorf("%q / %q: got %d, want 407 with a challenge", tc.user, tc.pass, resp.StatusCode)
		}
	}
	if resp, _ := fetch(t, c, origin.URL+"/upn", basic("alice@picket.test", "alice-pw")); resp.StatusCode != 200 {
		t.Errorf("alice by her userPrincipalName: got %d", resp.StatusCode)
	}
	p.waitAccess(t, func(l map[string]any) bool { return l["url"] == origin.URL+"/upn" && l["user"] == "alice" })

	// 2. A groups rule on a nested group: carol is a gamer through
	// students. The block page says who is signed in.
	resp, body := fetch(t, c, origin.URL+"/games/chess", basic("carol", "carol-pw"))
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "Signed in as") || !strings.Contains(body, `<dd id="user">carol</dd>`) {
		t.Fatalf("carol: got %d, want 403 naming carol:\n%s", resp.StatusCode, body)
	}
	line = p.waitAccess(t, func(l map[string]any) bool { return l["user"] == "carol" && l["action"] == "block" })
	if line["rule"] != "no-games-for-gamers" || fmt.Sprint(line["groups"]) != "[gamers students]" {
		t.Errorf("carol's access line: got rule %v groups %v", line["rule"], line["groups"])
	}
	// Inside an intercepted tunnel, with the CONNECT's credentials.
	tr := c.Transport.(*http.Transport).Clone()
	tr.ProxyConnectHeader = http.Header{"Proxy-Authorization": {basic("carol", "carol-pw")["Proxy-Authorization"]}}
	defer tr.CloseIdleConnections()
	resp, body = fetch(t, &http.Client{Transport: tr}, tlsOrigin.URL+"/games/go", map[string]string{"Accept": "text/html"})
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(body, `<dd id="user">carol</dd>`) {
		t.Fatalf("carol through a tunnel: got %d:\n%s", resp.StatusCode, body)
	}
	resp, body = fetch(t, &http.Client{Transport: tr}, tlsOrigin.URL+"/games/go", map[string]string{"Accept": "text/plain"})
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "Signed in as: carol") {
		t.Errorf("the text block page: got %d %q", resp.StatusCode, body)
	}

	// 3. The directory stops: credentials verified within cache_ttl pass,
	// others get 503 (fail closed) without a new prompt.
	s.Stop(t)
	if resp, _ := fetch(t, c, origin.URL+"/x", basic("alice", "alice-pw")); resp.StatusCode != 200 {
		t.Errorf("alice, cached, with the directory down: got %d, want 200", resp.StatusCode)
	}
	resp, body = fetch(t, c, origin.URL+"/x", basic("bob", "bob-pw"))
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Proxy-Authenticate") != "" || !strings.Contains(body, "cannot be reached") {
		t.Errorf("bob with the directory down: got %d %q, want 503 without a challenge", resp.StatusCode, resp.Header.Get("Proxy-Authenticate"))
	}
	if !strings.Contains(p.stdout.String()+p.stderr.String(), "the directory server cannot be reached") {
		t.Errorf("the outage is not logged")
	}
	metrics := "http://" + adminAddr(t, p) + "/metrics"
	_, body = fetch(t, http.DefaultClient, metrics, nil)
	for _, want := range []string{"picket_auth_directory_servers_down 1", `picket_auth_checks_total{result="unavailable"} 1`,
		`picket_auth_cache_hits_total{kind="fresh"}`} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	// ...and comes back: bob gets through once the server is retried.
	s.Restart(t)
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, _ := fetch(t, c, origin.URL+"/x", basic("bob", "bob-pw"))
		if resp.StatusCode == 200 {
			break
		}
		if resp.StatusCode != http.StatusServiceUnavailable || time.Now().After(deadline) {
			t.Fatalf("bob after the restart: got %d", resp.StatusCode)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if _, body := fetch(t, http.DefaultClient, metrics, nil); !strings.Contains(body, "picket_auth_directory_servers_down 0") {
		t.Errorf("the directory is still counted down after it answered")
	}
	p.stop() // every buffered access-log line written out
	for _, l := range p.accessLines() {
		if strings.Contains(fmt.Sprint(l), "-pw") {
			t.Errorf("a password in the access log: %v", l)
		}
	}
	if strings.Contains(p.stdout.String()+p.stderr.String(), "service-pw") {
		t.Errorf("the service password is in the logs")
	}
}
