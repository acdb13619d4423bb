package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path"
	"regexp"
	"strings"
	"testing"
	"time"
)

var incidentRe = regexp.MustCompile(`id="incident">([0-9A-F]+)<`)

// TestPolicyEndToEnd runs Picket on its demo feeds: a phishing URL over
// HTTP and over intercepted HTTPS gets the block page whose incident ID is
// the access log's; a clean local origin passes; a warn rule's continue
// allows that host for that client.
func TestPolicyEndToEnd(t *testing.T) {
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "clean page")
	}))
	defer origin.Close()
	p := startPicket(t, `
[[rules]]
name = "confirm-downloads"
action = "warn"
url_prefixes = ["`+origin.URL+`/downloads/"]
`)
	c := p.client(t)
	html := map[string]string{"Accept": "text/html"}

	for _, tc := range []struct{ name, url string }{
		{"phishing over HTTP", "http://login.bank.picket.test/verify/account"},
		{"phishing host over intercepted HTTPS", "https://phishing.picket.test/login"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := fetch(t, c, tc.url, html)
			if resp.StatusCode != 403 {
				t.Fatalf("status: got %d, want 403\n%s", resp.StatusCode, body)
			}
			m := incidentRe.FindStringSubmatch(body)
			if m == nil || !strings.Contains(body, "phishing") {
				t.Fatalf("block page without incident or reason:\n%s", body)
			}
			l := p.waitAccess(t, func(l map[string]any) bool { return l["incident"] == m[1] })
			if l["action"] != "block" || l["verdict"] != "phishing" || l["stage"] != "protection" {
				t.Errorf("access line: %v", l)
			}
		})
	}

	t.Run("clean passes", func(t *testing.T) {
		resp, body := fetch(t, c, origin.URL+"/page", nil)
		if resp.StatusCode != 200 || body != "clean page" {
			t.Errorf("got %d %q", resp.StatusCode, body)
		}
	})

	t.Run("warn then continue", func(t *testing.T) {
		target := origin.URL + "/downloads/tool.zip"
		resp, body := fetch(t, c, target, html)
		cont := regexp.MustCompile(`id="continue" href="([^"]+)"`).FindStringSubmatch(body)
		if resp.StatusCode != 200 || cont == nil {
			t.Fatalf("warn page: got %d\n%s", resp.StatusCode, body)
		}
		resp, _ = fetch(t, c, strings.ReplaceAll(cont[1], "&amp;", "&"), nil)
		if resp.StatusCode != http.StatusSeeOther {
			t.Fatalf("continue: got %d, want 303", resp.StatusCode)
		}
		if resp, body := fetch(t, c, target, nil); resp.StatusCode != 200 || body != "clean page" {
			t.Errorf("after continue: got %d %q", resp.StatusCode, body)
		}
	})
}

// TestBlockedTunnel: with interception off, a blocked host's CONNECT gets
// 403 with a reason header; with block_page_intercept it is intercepted to
// show the block page.
func TestBlockedTunnel(t *testing.T) {
	for _, tc := range []struct {
		name      string
		tls       string
		wantPage  bool
		wantError bool
	}{
		{"403 without block_page_intercept", "[tls]\nintercept = false\nblock_page_intercept = false\n", false, true},
		{"block page with block_page_intercept", "[tls]\nintercept = false\nblock_page_intercept = true\n", true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := startPicket(t, tc.tls)
			resp, err := p.client(t).Get("https://phishing.picket.test/")
			if tc.wantError {
				if err == nil || !strings.Contains(err.Error(), "Forbidden") {
					t.Fatalf("got %v, want the CONNECT refused with 403", err)
				}
				l := p.waitAccess(t, func(l map[string]any) bool { return l["method"] == "CONNECT" })
				if l["status"] != float64(403) || l["action"] != "block" {
					t.Errorf("access line: %v", l)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 403 || !strings.Contains(string(b), "phishing") {
				t.Errorf("got %d %q, want the block page", resp.StatusCode, b)
			}
		})
	}
}

func fetch(t *testing.T, c *http.Client, u string, hdr map[string]string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest("GET", u, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(b)
}

// TestLookupDryRun: picket lookup prints the decision the rules would make
// and which rule made it.
func TestLookupDryRun(t *testing.T) {
	path := writeConfig(t, `
[[rules]]
name = "no-games"
action = "block"
hosts = ["*.games.example"]
`)
	for _, tc := range []struct{ url, want string }{
		{"http://www.games.example/play", "decision=block\trule=no-games\tstage=access"},
		{"http://login.bank.picket.test/verify/", "decision=block\trule=protection.phishing\tstage=protection"},
		{"http://www.example.org/", "decision=allow\trule=protection.unknown"},
	} {
		var out, errb strings.Builder
		if code := run([]string{"lookup", "-config", path, tc.url}, &out, &errb); code != 0 {
			t.Fatalf("lookup %s: exit %d: %s", tc.url, code, errb.String())
		}
		if !strings.Contains(out.String(), tc.want) {
			t.Errorf("lookup %s: got %q, want it to contain %q", tc.url, out.String(), tc.want)
		}
	}
}

// TestPathRulesSeeThePathTheOriginServes: a path is matched by the rules as
// the origin reads it. An escaped unreserved character ("%65" is "e") and
// dot segments ("/x/../admin/") name the same resource as their plain form
// (RFC 3986 §6.2.2), and origins serve it as such — Go's server unescapes
// the path, an escaped '/' included, nginx and Apache also remove dot
// segments and repeated slashes — so the plain form's rules apply. The raw request is sent on a socket: Go's client would
// tidy the path itself.
func TestPathRulesSeeThePathTheOriginServes(t *testing.T) {
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "origin served "+path.Clean(r.URL.Path)) // as nginx and Apache resolve it
	}))
	defer origin.Close()
	host := strings.TrimPrefix(origin.URL, "http://")
	p := startPicket(t, `
[[rules]]
name = "no-admin"
action = "block"
url_prefixes = ["`+host+`/admin/"]
[[rules]]
name = "no-exe"
action = "block"
url_regex = '(?i)\.exe$'
`)
	for _, tc := range []struct {
		target string
		rule   string // "" when the origin is reached
	}{
		{"/admin/users", "no-admin"},
		{"/%61dmin/users", "no-admin"},
		{"/%61%64%6D%69%6E/users", "no-admin"},
		{"/x/../admin/users", "no-admin"},
		{"/./admin/users", "no-admin"},
		{"/x/%2e%2E/admin/users", "no-admin"},
		{"/setup.exe", "no-exe"},
		{"/setup.%65xe", "no-exe"},
		{"/setup.%45%58%45", "no-exe"},
		{"/administrator/", ""},
		{"/x/..admin/", ""},
		{"/admin%2Fusers", "no-admin"}, // Go's server and nginx unescape '/' before they route
		{"//admin/users", "no-admin"},
		{"/page", ""},
	} {
		t.Run(tc.target, func(t *testing.T) {
			c, err := net.Dial("tcp", p.addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(10 * time.Second))
			fmt.Fprintf(c, "GET http://%s%s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", host, tc.target, host)
			status, reason, body := readAnswer(t, bufio.NewReader(c), http.MethodGet)
			switch {
			case tc.rule == "" && status != http.StatusOK:
				t.Errorf("got %d (reason %q), want 200 from the origin", status, reason)
			case tc.rule != "" && (status != http.StatusForbidden || !strings.Contains(reason, tc.rule)):
				t.Errorf("got %d (reason %q) %.60q, want 403 by rule %q", status, reason, body, tc.rule)
			}
		})
	}
}
