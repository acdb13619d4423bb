package proxy

import (
	"context"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"
)

// policyForTest blocks paths with "block", warns on paths with "warn".
var policyForTest = DeciderFunc(func(_ context.Context, r *Request) (Decision, error) {
	switch {
	case r.Connect:
		return Decision{Action: Allow}, nil
	case strings.Contains(r.URL.Path, "block"):
		return Decision{Action: Block, Verdict: "phishing", Category: "phishing", Rule: "demo-feeds", Stage: "protection"}, nil
	case strings.Contains(r.URL.Host, "warn"), strings.Contains(r.URL.Path, "warn"):
		return Decision{Action: Warn, Verdict: "unwanted", Rule: "unwanted-warn", Stage: "protection"}, nil
	}
	return Decision{Action: Allow}, nil
})

func get(t *testing.T, c *http.Client, u string, hdr map[string]string) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", u, nil)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(b)
}

var incidentRe = regexp.MustCompile(`id="incident">([0-9A-F]+)<`)

func TestBlockPage(t *testing.T) {
	origin := echoOrigin(t)
	tp := startProxy(t, Config{Decider: policyForTest, Contact: "security@example.org"})
	c := tp.client(t)
	resp, body := get(t, c, origin.URL+"/block/me", map[string]string{"Accept": "text/html,*/*"})
	if resp.StatusCode != 403 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
		t.Fatalf("got %d %s, want 403 html", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	m := incidentRe.FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("no incident ID on the page:\n%s", body)
	}
	for _, want := range []string{"phishing site", "demo-feeds", "mailto:security@example.org?", "Picket%20incident%20" + m[1], origin.URL + "/block/me"} {
		if !strings.Contains(body, want) {
			t.Errorf("block page lacks %q", want)
		}
	}
	if strings.Contains(body, "src=") || strings.Contains(body, "<link") {
		t.Errorf("block page must be self-contained (no external resources)")
	}
	l := tp.waitAccess(t, func(l map[string]any) bool { return l[fAction] == "block" })
	if l[fIncident] != m[1] || l[fRule] != "demo-feeds" || l[fStage] != "protection" {
		t.Errorf("access line %v: want incident %s, rule and stage", l, m[1])
	}
}

func TestBlockPageForNonHTMLClients(t *testing.T) {
	origin := echoOrigin(t)
	tp := startProxy(t, Config{Decider: policyForTest})
	c := tp.client(t)
	for _, tc := range []struct {
		name   string
		method string
		hdr    map[string]string
	}{
		{"curl-like Accept", "GET", map[string]string{"Accept": "*/*"}},
		{"image", "GET", map[string]string{"Accept": "image/avif,image/webp"}},
		{"HEAD", "HEAD", nil},
		{"XHR POST", "POST", map[string]string{"X-Requested-With": "XMLHttpRequest", "Accept": "text/html"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(tc.method, origin.URL+"/block", nil)
			for k, v := range tc.hdr {
				req.Header.Set(k, v)
			}
			resp, err := c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 403 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") {
				t.Errorf("got %d %q, want 403 text/plain", resp.StatusCode, resp.Header.Get("Content-Type"))
			}
			if tc.method != "HEAD" && !strings.Contains(string(b), "Incident:") {
				t.Errorf("text body %q lacks the incident", b)
			}
		})
	}
}

func TestBlockPageEscapesURL(t *testing.T) {
	origin := echoOrigin(t)
	tp := startProxy(t, Config{Decider: policyForTest})
	raw := origin.URL + `/block/"><script>alert('x')</script>/ünïcødé`
	status, body := tp.rawRequest(t, "GET "+strings.ReplaceAll(raw, " ", "%20")+" HTTP/1.1\r\nHost: x\r\nAccept: text/html\r\nConnection: close\r\n\r\n")
	if !strings.Contains(status, "403") {
		t.Fatalf("status %q", status)
	}
	if strings.Contains(body, "<script>alert") || strings.Contains(body, `"><script`) {
		t.Errorf("URL not escaped on the block page:\n%s", body)
	}
	if !strings.Contains(body, "&lt;script&gt;") && !strings.Contains(body, "%3Cscript%3E") {
		t.Errorf("escaped URL not shown on the block page:\n%s", body)
	}
}

func TestWarnContinue(t *testing.T) {
	origin := echoOrigin(t)
	tp := startProxy(t, Config{Decider: policyForTest, WarnFor: 10 * time.Minute})
	now := time.Now()
	tp.pages.now = func() time.Time { return now }
	// A client that does not follow redirects, to see each step.
	c := tp.client(t)
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

	target := origin.URL + "/warn/page?x=1"
	resp, body := get(t, c, target, map[string]string{"Accept": "text/html"})
	if resp.StatusCode != 200 || !strings.Contains(body, `id="continue"`) {
		t.Fatalf("warn page: got %d\n%s", resp.StatusCode, body)
	}
	cont := regexp.MustCompile(`id="continue" href="([^"]+)"`).FindStringSubmatch(body)[1]
	cont = strings.ReplaceAll(cont, "&amp;", "&")
	cu, _ := url.Parse(cont)

	// Forged and misused tokens are refused.
	forged := *cu
	q := forged.Query()
	q.Set("t", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
	forged.RawQuery = q.Encode()
	if resp, _ := get(t, c, forged.String(), nil); resp.StatusCode != 403 {
		t.Errorf("forged token: got %d, want 403", resp.StatusCode)
	}
	otherHost := *cu
	otherHost.Host = strings.Replace(cu.Host, "127.0.0.1", "localhost", 1)
	if resp, _ := get(t, c, otherHost.String(), nil); resp.StatusCode != 403 {
		t.Errorf("token replayed for another host: got %d, want 403", resp.StatusCode)
	}
	openRedirect := *cu
	q = openRedirect.Query()
	q.Set("u", "//evil.example/")
	openRedirect.RawQuery = q.Encode()
	if resp, _ := get(t, c, openRedirect.String(), nil); resp.StatusCode != 403 {
		t.Errorf("open redirect: got %d, want 403", resp.StatusCode)
	}

	// The real link grants the allowance and sends the user back.
	resp, _ = get(t, c, cont, nil)
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != target {
		t.Fatalf("continue: got %d Location %q, want 303 %q", resp.StatusCode, resp.Header.Get("Location"), target)
	}
	if resp, body := get(t, c, target, nil); resp.StatusCode != 200 || strings.Contains(body, "continue") {
		t.Errorf("after continue: got %d %q, want the origin's page", resp.StatusCode, body)
	}
	// Another host still warns.
	if resp, body := get(t, c, strings.Replace(target, "127.0.0.1", "localhost", 1), map[string]string{"Accept": "text/html"}); !strings.Contains(body, `id="continue"`) {
		t.Errorf("other host after continue: got %d, want the warn page", resp.StatusCode)
	}
	// The allowance ends after WarnFor.
	now = now.Add(11 * time.Minute)
	if _, body := get(t, c, target, map[string]string{"Accept": "text/html"}); !strings.Contains(body, `id="continue"`) {
		t.Errorf("after expiry: want the warn page again")
	}
	// An expired token is refused.
	if resp, _ := get(t, c, cont, nil); resp.StatusCode != 403 {
		t.Errorf("expired token: got %d, want 403", resp.StatusCode)
	}
}
