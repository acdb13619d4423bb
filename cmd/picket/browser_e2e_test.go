package main

import (
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// browserOnlyRules keep a real browser's own background traffic (update
// checks, sign-in pings) inside the test: anything that is not the test's
// loopback origin or a *.picket.test demo host is blocked at the access
// stage, before any name is resolved.
const browserOnlyRules = `
[[rules]]
name = "test-hosts"
action = "allow"
hosts = ["127.0.0.1", "picket.test", "*.picket.test"]

[[rules]]
name = "nothing-else"
action = "block"
url_regex = "."
`

// TestBrowserBlockPage drives headless Chromium through Picket with the
// Picket CA trusted: a phishing URL from the demo feeds shows the block
// page, a clean HTTPS origin shows its page, and the block page renders at
// phone and desktop widths (screenshots in test-artifacts/).
func TestBrowserBlockPage(t *testing.T) {
	origin := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		io.WriteString(w, `<!doctype html><title>Clean</title><p id="clean">clean origin content</p>`)
	}))
	defer origin.Close()
	originPEM := filepath.Join(t.TempDir(), "origin.pem")
	os.WriteFile(originPEM, pemOf(origin.Certificate()), 0o644)
	p := startPicket(t, `[tls]
extra_roots = ["`+originPEM+`"]
`+browserOnlyRules)
	b := newBrowser(t, p.addr, p.caFile)

	dom := b.dumpDOM(t, "https://phishing.picket.test/login?user=x")
	for _, want := range []string{"Access blocked", "phishing", "id=\"incident\""} {
		if !strings.Contains(dom, want) {
			t.Errorf("block page DOM lacks %q:\n%s", want, dom)
		}
	}
	if m := incidentRe.FindStringSubmatch(dom); m != nil {
		p.waitAccess(t, func(l map[string]any) bool { return l["incident"] == m[1] && l["action"] == "block" })
	} else {
		t.Errorf("no incident ID in the rendered page")
	}

	dom = b.dumpDOM(t, origin.URL+"/")
	if !strings.Contains(dom, "clean origin content") {
		t.Errorf("clean page DOM:\n%s", dom)
	}
	p.waitAccess(t, func(l map[string]any) bool {
		return l["action"] == "allow" && strings.HasPrefix(l["url"].(string), origin.URL)
	})

	b.screenshot(t, "https://phishing.picket.test/login", "block-page-375.png", "375,740")
	b.screenshot(t, "https://phishing.picket.test/login", "block-page-1280.png", "1280,800")
}
