package main

import (
	"encoding/base64"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/picket-proxy/picket/config"
	"github.com/picket-proxy/picket/internal/slapdtest"
)

// deploymentExample returns the first TOML block after heading in
// docs/deployment.md.
func deploymentExample(t *testing.T, heading string) string {
	t.Helper()
	b, err := os.ReadFile("../../docs/deployment.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(b), "\n"+heading+"\n")
	if !ok {
		t.Fatalf("docs/deployment.md has no %q", heading)
	}
	_, rest, ok = strings.Cut(rest, "```toml\n")
	if !ok {
		t.Fatalf("no TOML block after %q", heading)
	}
	block, _, _ := strings.Cut(rest, "```")
	return block
}

// TestDeploymentLDAPExamples: the Active Directory and OpenLDAP examples of
// docs/deployment.md are valid configurations that build an authenticator;
// the OpenLDAP one, pointed at a real slapd (its names, URL, CA and password
// file replaced by the test's), signs users in with their nested groups.
func TestDeploymentLDAPExamples(t *testing.T) {
	dir := t.TempDir()
	write := func(name, data string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	build := func(t *testing.T, text string) func(user, password string) (string, []string, error) {
		t.Helper()
		f, err := config.Parse(write("picket.toml", text), []byte(text))
		if err != nil {
			t.Fatalf("the example does not parse: %v\n%s", err, text)
		}
		a, err := newAuthenticator(f, f.Auth, zerolog.Nop())
		if err != nil || a == nil {
			t.Fatalf("the example does not build: %v", err)
		}
		t.Cleanup(func() { a.Close() })
		return func(user, password string) (string, []string, error) {
			return a.Check(netip.MustParseAddr("192.0.2.1"), "Basic "+base64.StdEncoding.EncodeToString([]byte(user+":"+password)))
		}
	}

	t.Run("Active Directory", func(t *testing.T) {
		s := slapdtest.Start(t, "") // only for a CA certificate file
		ad := deploymentExample(t, "#### Active Directory")
		ad = strings.NewReplacer(`"/etc/picket/corp-root-ca.pem"`, `"`+s.CAFile+`"`,
			`"/etc/picket/htpasswd"`, `"`+write("htpasswd", "")+`"`).Replace(ad)
		t.Setenv("PICKET_LDAP_PASSWORD", "service-pw")
		build(t, ad)
	})

	t.Run("OpenLDAP", func(t *testing.T) {
		s := slapdtest.Start(t, slapdtest.People)
		text := deploymentExample(t, "#### OpenLDAP")
		text = regexp.MustCompile(`(?m)^url = .*$`).ReplaceAllString(text, `url = "`+s.URL+`"`)
		text = strings.NewReplacer("dc=example,dc=org", "dc=picket,dc=test",
			`"/etc/picket/ldap-ca.pem"`, `"`+s.CAFile+`"`,
			`"/etc/picket/ldap-password"`, `"`+write("ldap-password", "service-pw\n")+`"`).Replace(text)
		check := build(t, text)
		for _, tt := range []struct {
			user, password string
			groups         []string
		}{
			{"alice", "alice-pw", []string{"staff"}},
			{"carol", "carol-pw", []string{"gamers", "students"}},
		} {
			user, groups, err := check(tt.user, tt.password)
			if err != nil || user != tt.user || !slices.Equal(groups, tt.groups) {
				t.Errorf("got %q %q, %v, want %s %q", user, groups, err, tt.user, tt.groups)
			}
		}
		if _, _, err := check("alice", "bob-pw"); err == nil {
			t.Errorf("a wrong password signed in")
		}
	})
}
