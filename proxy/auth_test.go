package proxy

import (
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"strings"
	"testing"
)

// TestAuthIdentityAndUnavailable: the signed-in user is named on the block
// page (HTML-escaped) and in the text answer, the groups go into the access
// log line, and credentials that cannot be checked now get 503 without a
// challenge.
func TestAuthIdentityAndUnavailable(t *testing.T) {
	origin := echoOrigin(t)
	tp := startProxy(t, Config{
		Decider:       policyForTest,
		AuthChallenge: `Basic realm="picket"`,
		Authenticate: func(_ netip.Addr, header string) (string, []string, error) {
			switch header {
			case "Basic YWxpY2U6czNjcmV0": // alice:s3cret
				return "al<i>ce", []string{"finance", "staff"}, nil
			case "Basic Ym9iOnMzY3JldA==": // bob:s3cret
				return "", nil, fmt.Errorf("%w: ldaps://dc1: connection refused", ErrAuthUnavailable)
			}
			return "", nil, errors.New("bad credentials")
		},
	})
	c := tp.client(t)
	alice := map[string]string{"Proxy-Authorization": "Basic YWxpY2U6czNjcmV0", "Accept": "text/html"}
	resp, body := get(t, c, origin.URL+"/block/me", alice)
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(body, `<dt>Signed in as</dt><dd id="user">al&lt;i&gt;ce</dd>`) {
		t.Fatalf("got %d, want 403 naming the user:\n%s", resp.StatusCode, body)
	}
	alice["Accept"] = "text/plain"
	if resp, body := get(t, c, origin.URL+"/block/me", alice); resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "Signed in as: al<i>ce\n") {
		t.Errorf("text answer: got %d %q", resp.StatusCode, body)
	}
	line := tp.waitAccess(t, func(l map[string]any) bool { return l["user"] == "al<i>ce" })
	if got := fmt.Sprint(line["groups"]); got != "[finance staff]" {
		t.Errorf("groups in the access log: got %s, want [finance staff]", got)
	}

	resp, body = get(t, c, origin.URL+"/x", map[string]string{"Proxy-Authorization": "Basic Ym9iOnMzY3JldA=="})
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Proxy-Authenticate") != "" || !strings.Contains(body, "cannot be reached") {
		t.Errorf("unavailable: got %d %q %q", resp.StatusCode, resp.Header.Get("Proxy-Authenticate"), body)
	}
	if resp, _ := get(t, c, origin.URL+"/x", map[string]string{"Proxy-Authorization": "Basic eDp5"}); resp.StatusCode != http.StatusProxyAuthRequired {
		t.Errorf("bad credentials: got %d, want 407", resp.StatusCode)
	}
	// A request without authentication has no user on its page and no
	// groups in its line.
	plain := startProxy(t, Config{Decider: policyForTest})
	if _, body := get(t, plain.client(t), origin.URL+"/block/anon", map[string]string{"Accept": "text/html"}); strings.Contains(body, "Signed in as") {
		t.Errorf("an anonymous block page names a user")
	}
	if l := plain.waitAccess(t, func(l map[string]any) bool { return strings.HasSuffix(fmt.Sprint(l["url"]), "/block/anon") }); l["groups"] != nil {
		t.Errorf("an anonymous access line has groups: %v", l)
	}
}
