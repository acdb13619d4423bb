package main

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/picket-proxy/picket/admin"
	"github.com/picket-proxy/picket/config"
	"github.com/picket-proxy/picket/stats"
)

func TestNewAdmin(t *testing.T) {
	dir := t.TempDir()
	f := config.Default()
	f.Dir = dir
	extra := config.AdminDefaults()
	reloads := 0
	adm, err := newAdmin(f, extra, zerolog.Nop(), adminParts{
		Listeners: []admin.Listener{{Name: "proxy", Addr: "127.0.0.1:3128"}},
		Reload:    func(context.Context) error { reloads++; return nil },
	})
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, "data", "admin.token"))
	if err != nil {
		t.Fatalf("token file: %v", err)
	}
	token := strings.TrimSpace(string(b))

	ts := httptest.NewServer(adm) // 127.0.0.1
	defer ts.Close()
	resp, err := http.Get(ts.URL + "/api/v1/status")
	if err != nil {
		t.Fatal(err)
	}
	var st admin.Status
	err = json.NewDecoder(resp.Body).Decode(&st)
	resp.Body.Close()
	if err != nil || st.Mode != "kpsn (embedded database)" || len(st.Listeners) != 1 || st.Version != version {
		t.Errorf("status: got %+v, %v", st, err)
	}
	req, _ := http.NewRequest("POST", ts.URL+"/api/v1/reload", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || reloads != 1 {
		t.Errorf("reload with the file's token: got %d after %d reloads, want 200 after 1", resp.StatusCode, reloads)
	}

	// A configured token wins over the file; a readable token file is refused.
	extra.Token = "configured-token-0123456789"
	if _, err := newAdmin(f, extra, zerolog.Nop(), adminParts{}); err != nil {
		t.Errorf("configured token: %v", err)
	}
	extra.Token = ""
	if err := os.Chmod(filepath.Join(dir, "data", "admin.token"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := newAdmin(f, extra, zerolog.Nop(), adminParts{}); err == nil || !strings.Contains(err.Error(), "admin.token_file") {
		t.Errorf("readable token file: got %v, want an error naming admin.token_file", err)
	}
}

// TestAdminParticipation drives the participation switches through the admin
// API.
func TestAdminParticipation(t *testing.T) {
	dir := t.TempDir()
	p, err := stats.New(stats.Config{QueueDir: filepath.Join(dir, "queue"), StateFile: filepath.Join(dir, "state.json")}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	get, set, queue := adminParticipation(p)
	f := config.Default()
	f.Dir = dir
	adm, err := newAdmin(f, config.AdminDefaults(), zerolog.Nop(), adminParts{
		Participation: get, SetParticipation: set, ParticipationQueue: queue,
	})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(filepath.Join(dir, "data", "admin.token"))
	ts := httptest.NewServer(adm)
	defer ts.Close()
	post := func(body string) int {
		req, _ := http.NewRequest("POST", ts.URL+"/api/v1/participation", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(b)))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if got := post(`{"participation": true, "samples": "full-or-part"}`); got != 200 {
		t.Fatalf("POST: got %d, want 200", got)
	}
	st := p.Status()
	if !st.Participation || st.Samples != stats.SamplesFullOrPart || !strings.HasPrefix(st.ChangedBy, "admin API from 127.0.0.1") {
		t.Errorf("got %+v, want on, full-or-part, changed by the admin API from loopback", st)
	}
	if got, err := get(); err != nil || !got.Participation || got.Samples != "full-or-part" {
		t.Errorf("get: got %+v, %v", got, err)
	}
}
