package main

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"testing"
)

// TestConsoleCountsTheLastMinute is issue 20's point 6: right after a burst
// of 61 requests through Picket (11 of them blocked), the console, loaded
// in headless Chromium, reads 61 and 11 on its "last minute" tiles — the
// requests of the last 60 seconds, not those of the last full calendar
// minute (which read 0 right after a burst).
func TestConsoleCountsTheLastMinute(t *testing.T) {
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "page") }))
	defer origin.Close()
	p := startPicket(t, "")
	c := p.client(t)
	const requests, blocked = 61, 11
	for i := range requests {
		u := fmt.Sprintf("%s/page-%d", origin.URL, i)
		want := http.StatusOK
		if i < blocked {
			u, want = fmt.Sprintf("http://login.bank.picket.test/verify/account-%d", i), http.StatusForbidden
		}
		if resp, _ := fetch(t, c, u, nil); resp.StatusCode != want {
			t.Fatalf("%s: got %d, want %d", u, resp.StatusCode, want)
		}
	}
	p.nthAccess(t, requests, func(map[string]any) bool { return true }) // all observed

	b := newBrowser(t, p.addr, p.caFile)
	dom := b.runNoProxy(t, "--virtual-time-budget=5000", "--dump-dom", "http://"+adminAddr(t, p)+"/")
	for _, tile := range []struct{ id, want string }{{"t-rpm", fmt.Sprint(requests)}, {"t-bpm", fmt.Sprint(blocked)}} {
		m := regexp.MustCompile(`id="` + tile.id + `">([^<]*)<`).FindStringSubmatch(dom)
		if m == nil || m[1] != tile.want {
			t.Errorf("tile %s: got %q, want %s", tile.id, m, tile.want)
		}
	}
	if t.Failed() {
		t.Logf("console DOM:\n%.3000s", dom)
	}
}
