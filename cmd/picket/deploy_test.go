package main

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/crypto/bcrypt"

	"github.com/picket-proxy/picket/auth"
	"github.com/picket-proxy/picket/config"
)

func TestPACConfig(t *testing.T) {
	f := config.Default()
	f.Dir = "/etc/picket"
	f.TLS.Bypass = []string{"*.bank.example"}
	c := config.PACDefaults()
	c.DirectHosts = []string{"*.corp.example"}
	c.File = "proxy.pac"

	got := pacConfig(f, c)
	if !got.Enabled || got.File != "/etc/picket/proxy.pac" || got.MaxAge != 10*time.Minute || !got.DirectPlainHosts {
		t.Errorf("got %+v, want enabled, file resolved, 10m", got)
	}
	if !slices.Equal(got.DirectHosts, []string{"*.corp.example"}) {
		t.Errorf("got direct hosts %q, want the [tls] bypass left out", got.DirectHosts)
	}
	c.BypassTLS = true
	if got := pacConfig(f, c); !slices.Equal(got.DirectHosts, []string{"*.corp.example", "*.bank.example"}) {
		t.Errorf("got direct hosts %q, want the [tls] bypass added", got.DirectHosts)
	}
	if _, err := newPAC(f, config.PACDefaults(), zerolog.Nop()); err != nil {
		t.Errorf("got %v for the defaults, want a handler", err)
	}
}

func TestNewAuthenticator(t *testing.T) {
	f := config.Default()
	f.Dir = t.TempDir()
	c := config.AuthDefaults()
	if a, err := newAuthenticator(f, c, zerolog.Nop()); a != nil || err != nil {
		t.Fatalf("got %v, %v, want nil, nil when [auth] is off", a, err)
	}
	h, err := bcrypt.GenerateFromPassword([]byte("pw"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(f.Dir, "htpasswd"), []byte("alice:"+string(h)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c.Htpasswd = "htpasswd"
	a, err := newAuthenticator(f, c, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	client := netip.MustParseAddr("127.0.0.1")
	if user, _, err := a.Check(client, "Basic YWxpY2U6cHc="); err != nil || user != "alice" {
		t.Errorf("got %q, %v, want alice", user, err)
	}
	if _, _, err := a.Check(client, ""); !errors.Is(err, auth.ErrNoCredentials) {
		t.Errorf("got %v, want ErrNoCredentials", err)
	}
	if a.Challenge() != `Basic realm="Picket", charset="UTF-8"` {
		t.Errorf("got challenge %q", a.Challenge())
	}
}
