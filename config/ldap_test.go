package config

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestLDAPDefaults(t *testing.T) {
	c, err := parseAuth(t, "")
	if err != nil {
		t.Fatal(err)
	}
	l := c.LDAP
	if l.Enabled() || c.MaxUserFailures != 10 || l.Groups != "auto" || l.NestedGroups != "none" || l.GroupName != "cn" ||
		l.Fail != "closed" || l.Timeout.D() != 5*time.Second || l.PoolSize != 4 || l.NestedDepth != 5 ||
		l.StaleTTL.D() != time.Hour || !strings.Contains(l.UserFilter, "sAMAccountName={user}") {
		t.Errorf("got %+v", c)
	}
}

func TestLDAPKeys(t *testing.T) {
	for _, tt := range []struct {
		name, url string
		want      []string
	}{
		{"one server", `"ldaps://dc1.corp.example"`, []string{"ldaps://dc1.corp.example"}},
		{"failover list", `["ldaps://dc1.corp.example:636", "ldap://dc2.corp.example"]`,
			[]string{"ldaps://dc1.corp.example:636", "ldap://dc2.corp.example"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c, err := parseAuth(t, `[auth]
max_user_failures = 5
[auth.ldap]
url = `+tt.url+`
ca_file = "corp-ca.pem"
bind_dn = "CN=picket,OU=Service Accounts,DC=corp,DC=example"
bind_password_file = "ldap-password"
user_base = "DC=corp,DC=example"
user_filter = "(&(objectClass=user)(sAMAccountName={user}))"
user_attribute = "sAMAccountName"
groups = "member_of"
nested_groups = "in_chain"
group_name = "dn"
timeout = "3s"
pool_size = 8
fail = "cached"
stale_ttl = "30m"
`)
			if err != nil {
				t.Fatal(err)
			}
			l := c.LDAP
			if !c.Enabled() || !slices.Equal(l.URL, tt.want) || c.MaxUserFailures != 5 || l.BindPasswordFile != "ldap-password" ||
				l.Groups != "member_of" || l.NestedGroups != "in_chain" || l.GroupName != "dn" || l.PoolSize != 8 ||
				l.Fail != "cached" || l.StaleTTL.D() != 30*time.Minute || l.Timeout.D() != 3*time.Second {
				t.Errorf("got %+v", c)
			}
		})
	}
}

func TestLDAPInvalid(t *testing.T) {
	const ok = "url = \"ldaps://dc1\"\nuser_base = \"dc=x\"\n"
	tests := []struct {
		name, text, key string
	}{
		{"base without url", `user_base = "dc=x"`, "auth.ldap.url"},
		{"url not LDAP", "url = \"https://dc1\"\nuser_base = \"dc=x\"", "auth.ldap.url"},
		{"url with a search", "url = \"ldap://dc1/dc=x??sub\"\nuser_base = \"dc=x\"", "auth.ldap.url"},
		{"url of a number", "url = 389\nuser_base = \"dc=x\"", ""},
		{"no user base", `url = "ldaps://dc1"`, "auth.ldap.user_base"},
		{"filter without {user}", ok + `user_filter = "(uid=alice)"`, "auth.ldap.user_filter"},
		{"filter unbalanced", ok + `user_filter = "(uid={user}"`, "auth.ldap.user_filter"},
		{"group filter without {dn}", ok + `group_filter = "(memberUid={user})"`, "auth.ldap.group_filter"},
		{"bind DN without password", ok + `bind_dn = "cn=svc,dc=x"`, "auth.ldap.bind_dn"},
		{"two passwords", ok + "bind_dn = \"cn=svc\"\nbind_password_file = \"f\"\nbind_password_env = \"E\"", "auth.ldap.bind_password_env"},
		{"password without DN", ok + `bind_password_env = "E"`, "auth.ldap.bind_dn"},
		{"groups", ok + `groups = "all"`, "auth.ldap.groups"},
		{"nesting", ok + `nested_groups = "yes"`, "auth.ldap.nested_groups"},
		{"group name", ok + `group_name = "sAMAccountName"`, "auth.ldap.group_name"},
		{"fail open", ok + `fail = "open"`, "auth.ldap.fail"},
		{"depth", ok + `nested_depth = 0`, "auth.ldap.nested_depth"},
		{"timeout", ok + `timeout = "10ms"`, "auth.ldap.timeout"},
		{"pool", ok + `pool_size = 0`, "auth.ldap.pool_size"},
		{"stale", ok + `stale_ttl = "48h"`, "auth.ldap.stale_ttl"},
		{"unknown key", ok + `password = "x"`, "auth.ldap.password"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseAuth(t, "[auth.ldap]\n"+tt.text+"\n")
			if err == nil {
				t.Fatalf("got no error, want one naming %s", tt.key)
			}
			if tt.key == "" {
				return // refused by the decoder
			}
			var ce *Error
			if !errors.As(err, &ce) || ce.Key != tt.key || ce.Line < 1 {
				t.Errorf("got %v, want an error naming %s with its line", err, tt.key)
			}
		})
	}
	// Every problem at once.
	_, err := parseAuth(t, "[auth.ldap]\nurl = \"http://x\"\nfail = \"open\"\n")
	if n := strings.Count(err.Error(), "\n") + 1; n != 3 {
		t.Errorf("got %d problems, want 3 (url, user_base, fail): %v", n, err)
	}
	// A groups file with only a directory is fine.
	if _, err := parseAuth(t, "[auth]\ngroups = \"g\"\n[auth.ldap]\n"+ok); err != nil {
		t.Errorf("groups with ldap: %v", err)
	}
}
