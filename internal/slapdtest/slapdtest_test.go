package slapdtest

import (
	"strings"
	"testing"
)

// TestServer: the directory starts, takes entries, refuses a wrong root
// password, stops and comes back with its data on the same ports.
func TestServer(t *testing.T) {
	s := Start(t, `dn: uid=alice,ou=people,dc=picket,dc=test
objectClass: inetOrgPerson
uid: alice
cn: Alice
sn: A
userPassword: alice-pw
`)
	if !strings.HasPrefix(s.URL, "ldap://127.0.0.1:") || !strings.HasPrefix(s.LDAPS, "ldaps://127.0.0.1:") {
		t.Fatalf("got %s and %s, want loopback URLs", s.URL, s.LDAPS)
	}
	if err := s.ping(); err != nil {
		t.Fatalf("ping: %v", err)
	}
	s.Stop(t)
	if err := s.ping(); err == nil {
		t.Fatal("a stopped server answered")
	}
	s.Restart(t)
	s.SetPassword(t, "uid=alice,ou=people,dc=picket,dc=test", "new-pw")
}
