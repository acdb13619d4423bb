package main

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// adminAddr finds the admin listener's address in the application log.
func adminAddr(t *testing.T, p *picketUnderTest) string {
	t.Helper()
	m := regexp.MustCompile(`"listener":"admin","listen":"([^"]+)"`).FindStringSubmatch(p.stderr.String())
	if m == nil {
		t.Fatalf("no admin listener in the log:\n%s", p.stderr.String())
	}
	return m[1]
}

// TestAdminWiredIntoServe: the admin API of a running Picket shows the live
// parts, sees the proxy's requests, and reloads with the token.
func TestAdminWiredIntoServe(t *testing.T) {
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	defer origin.Close()
	p := startPicket(t, "")
	base := "http://" + adminAddr(t, p)
	fetch(t, p.client(t), origin.URL+"/seen", nil)
	fetch(t, p.client(t), "http://login.bank.picket.test/verify/", nil)

	resp, body := fetch(t, http.DefaultClient, base+"/api/v1/status", nil)
	var st map[string]any
	if resp.StatusCode != 200 || json.Unmarshal([]byte(body), &st) != nil {
		t.Fatalf("status: %d %s", resp.StatusCode, body)
	}
	if !strings.Contains(body, fingerprintOf(t, p)) {
		t.Errorf("status lacks the CA fingerprint: %s", body)
	}
	if !strings.Contains(body, `"embedded"`) || !strings.Contains(body, `"entries"`) {
		t.Errorf("status lacks the embedded database: %s", body)
	}
	p.waitAccess(t, func(l map[string]any) bool { return l["action"] == "block" })
	_, body = fetch(t, http.DefaultClient, base+"/api/v1/decisions?action=block", nil)
	if !strings.Contains(body, "login.bank.picket.test") {
		t.Errorf("recent blocks lack the blocked request: %s", body)
	}
	_, body = fetch(t, http.DefaultClient, base+"/metrics", nil)
	if !strings.Contains(body, "picket_") {
		t.Errorf("metrics: %.300s", body)
	}
	if !strings.Contains(body, "picket_added_duration_seconds_count") || strings.Contains(body, "picket_added_duration_seconds_count 0\n") {
		t.Errorf("the added-by-Picket latency histogram is missing or empty")
	}

	// The admin listener is never reachable through the proxy, even with
	// loopback destinations allowed (as in this test's config).
	// (Picket answers such a request itself, as a request for the proxy.)
	if resp, body := fetch(t, p.client(t), base+"/api/v1/status", nil); resp.StatusCode < 400 || strings.Contains(body, "fingerprint") {
		t.Errorf("admin API through the proxy: got %d %.100q, want a refusal", resp.StatusCode, body)
	}
	if resp, _ := fetch(t, p.client(t), "https://"+adminAddr(t, p)+"/", nil); resp != nil && resp.StatusCode < 400 {
		t.Errorf("CONNECT to the admin listener: got %d, want a refusal", resp.StatusCode)
	}

	// Reload: refused without the token, done with it.
	if resp, _ := post(t, base+"/api/v1/reload", ""); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("reload without token: got %d, want 401", resp.StatusCode)
	}
	tok, err := os.ReadFile(filepath.Join(p.dir, "data", "admin.token"))
	if err != nil {
		t.Fatal(err)
	}
	if resp, b := post(t, base+"/api/v1/reload", strings.TrimSpace(string(tok))); resp.StatusCode != 200 {
		t.Errorf("reload with token: got %d %s", resp.StatusCode, b)
	}
}

func post(t *testing.T, url, token string) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest("POST", url, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(b)
}

func fingerprintOf(t *testing.T, p *picketUnderTest) string {
	m := regexp.MustCompile(`"ca_fingerprint":"([0-9A-F:]+)"`).FindStringSubmatch(p.stderr.String())
	if m == nil {
		t.Fatal("no fingerprint in the log")
	}
	return m[1]
}

// TestAdminRotatesInstallation: the privacy statement promises that the
// administrator can rotate the installation identifier through the admin
// API, after which new batches cannot be linked to older ones. The
// participation endpoint of a running Picket does it, with the token.
func TestAdminRotatesInstallation(t *testing.T) {
	p := startPicket(t, "")
	stateFile := filepath.Join(p.dir, "data", "participation.json")
	installation := func() (id, key string) {
		t.Helper()
		b, err := os.ReadFile(stateFile)
		if err != nil {
			t.Fatal(err)
		}
		var st struct {
			Installation string `json:"installation"`
			ClientKey    string `json:"client_key"`
		}
		if err := json.Unmarshal(b, &st); err != nil || len(st.Installation) != 32 {
			t.Fatalf("state file: %v %s", err, b)
		}
		return st.Installation, st.ClientKey
	}
	oldID, oldKey := installation()
	tok, err := os.ReadFile(filepath.Join(p.dir, "data", "admin.token"))
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest("POST", "http://"+adminAddr(t, p)+"/api/v1/participation",
		strings.NewReader(`{"participation": false, "rotate_installation": true}`))
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(tok)))
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("rotate: got %d %s, want 200", resp.StatusCode, body)
	}
	if id, key := installation(); id == oldID || key == oldKey {
		t.Errorf("after the rotation: installation %s (was %s), client key changed %t; want both new", id, oldID, key != oldKey)
	}
}
