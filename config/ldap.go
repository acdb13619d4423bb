package config

import (
	"fmt"
	"time"

	"github.com/picket-proxy/picket/auth"
)

// LDAP is the [auth.ldap] section: users, passwords and groups from a
// directory (Active Directory, OpenLDAP, FreeIPA). Off unless url is set.
type LDAP struct {
	// URL is the directory server, or a list of them in failover order:
	// ldaps://host[:636], or ldap://host[:389] with StartTLS.
	URL StringList `toml:"url"`
	// AllowPlaintext lets ldap:// URLs go without StartTLS (passwords in
	// clear on the network); default false.
	AllowPlaintext bool `toml:"allow_plaintext"`
	// CAFile is the PEM file of the CA(s) of the servers' certificates,
	// relative to the config file; default empty: the system's roots.
	CAFile string `toml:"ca_file"`
	// BindDN is the service account that searches users and groups;
	// default empty: anonymous searches.
	BindDN string `toml:"bind_dn"`
	// BindPasswordFile is a file holding the service account's password
	// (one line), relative to the config file; re-read when the directory
	// refuses the password it held.
	BindPasswordFile string `toml:"bind_password_file"`
	// BindPasswordEnv names the environment variable holding the
	// password instead.
	BindPasswordEnv string `toml:"bind_password_env"`
	// UserBase is where users are searched (subtree); required.
	UserBase string `toml:"user_base"`
	// UserFilter finds a user by the name typed, {user} (escaped).
	UserFilter string `toml:"user_filter"`
	// UserAttribute is the attribute naming the user to rules and logs;
	// default empty: uid, else sAMAccountName, else the name as typed.
	UserAttribute string `toml:"user_attribute"`
	// Groups is where groups come from: "auto" (memberOf when present,
	// else a search), "member_of", "search" or "none".
	Groups string `toml:"groups"`
	// GroupBase is where groups are searched; default user_base.
	GroupBase string `toml:"group_base"`
	// GroupFilter finds the groups of a member, {dn} (and {user}).
	GroupFilter string `toml:"group_filter"`
	// NestedGroups follows groups in groups: "none", "in_chain" (Active
	// Directory) or "search" (any directory, nested_depth levels).
	NestedGroups string `toml:"nested_groups"`
	// NestedDepth bounds "search" nesting, in levels; default 5.
	NestedDepth int `toml:"nested_depth"`
	// GroupName names groups to rules: "cn" or "dn".
	GroupName string `toml:"group_name"`
	// Timeout bounds one server's answer to one sign-in; default "5s".
	Timeout Duration `toml:"timeout"`
	// PoolSize is the most connections open to each server; default 4.
	PoolSize int `toml:"pool_size"`
	// Fail is what an unreachable directory means: "closed" (503 for
	// credentials not verified within cache_ttl) or "cached" (a password
	// verified within stale_ttl still counts).
	Fail string `toml:"fail"`
	// StaleTTL is how long a verified password counts, with fail =
	// "cached", while the directory cannot be reached; default "1h".
	StaleTTL Duration `toml:"stale_ttl"`
}

// StringList is a TOML string or array of strings.
type StringList []string

// UnmarshalTOML accepts "a" and ["a", "b"].
func (l *StringList) UnmarshalTOML(v any) error {
	switch x := v.(type) {
	case string:
		*l = StringList{x}
		return nil
	case []any:
		out := make(StringList, 0, len(x))
		for _, e := range x {
			s, ok := e.(string)
			if !ok {
				return fmt.Errorf("want a string or a list of strings, got %v", v)
			}
			out = append(out, s)
		}
		*l = out
		return nil
	}
	return fmt.Errorf("want a string or a list of strings, got %v", v)
}

// The bounds of the [auth.ldap] keys.
const (
	maxLDAPServers     = 16
	maxLDAPNestedDepth = 20
	maxLDAPPoolSize    = 64
	minLDAPTimeout     = 100 * time.Millisecond
	maxLDAPTimeout     = time.Minute
	maxLDAPStaleTTL    = 24 * time.Hour
)

func (c *LDAP) defaults() {
	c.UserFilter = auth.DefaultUserFilter
	c.Groups = string(auth.GroupsAuto)
	c.GroupFilter = auth.DefaultGroupFilter
	c.NestedGroups = string(auth.NestedNone)
	c.NestedDepth = auth.DefaultNestedDepth
	c.GroupName = string(auth.GroupCN)
	c.Timeout = Duration(auth.DefaultLDAPTimeout)
	c.PoolSize = auth.DefaultPoolSize
	c.Fail = string(auth.FailClosed)
	c.StaleTTL = Duration(auth.DefaultStaleTTL)
}

// Enabled reports whether a directory is configured.
func (c *LDAP) Enabled() bool { return len(c.URL) > 0 }

func (c *LDAP) validate(p *problems) {
	if !c.Enabled() {
		if c.UserBase != "" || c.BindDN != "" || c.CAFile != "" {
			p.addMissing("auth.ldap.url", "auth.ldap", "is required with the other [auth.ldap] keys")
		}
		return
	}
	if len(c.URL) > maxLDAPServers {
		p.add("auth.ldap.url", "at most %d servers, got %d", maxLDAPServers, len(c.URL))
	}
	for _, u := range c.URL {
		if _, _, err := auth.ParseServerURL(u); err != nil {
			p.add("auth.ldap.url", "%v", err)
		}
	}
	if c.UserBase == "" {
		p.addMissing("auth.ldap.user_base", "auth.ldap", "is required: where the users are searched, e.g. \"ou=people,dc=example,dc=org\"")
	}
	p.check("auth.ldap.user_filter", auth.CheckFilter(c.UserFilter, "{user}"))
	p.check("auth.ldap.group_filter", auth.CheckFilter(c.GroupFilter, "{dn}"))
	c.validateBind(p)
	p.oneOf("auth.ldap.groups", "group source", c.Groups, "auto", "member_of", "search", "none")
	p.oneOf("auth.ldap.nested_groups", "nesting", c.NestedGroups, "none", "in_chain", "search")
	p.oneOf("auth.ldap.group_name", "group naming", c.GroupName, "cn", "dn")
	p.oneOf("auth.ldap.fail", "policy", c.Fail, "closed", "cached")
	c.validateLimits(p)
}

// validateBind checks the bind DN and where its password comes from.
func (c *LDAP) validateBind(p *problems) {
	switch {
	case c.BindDN != "" && c.BindPasswordFile == "" && c.BindPasswordEnv == "":
		p.add("auth.ldap.bind_dn", "needs bind_password_file or bind_password_env")
	case c.BindPasswordFile != "" && c.BindPasswordEnv != "":
		p.add("auth.ldap.bind_password_env", "set bind_password_file or bind_password_env, not both")
	case c.BindDN == "" && (c.BindPasswordFile != "" || c.BindPasswordEnv != ""):
		p.addMissing("auth.ldap.bind_dn", "auth.ldap", "is required with a bind password")
	}
}

// validateLimits checks the numbers: nesting depth, timeout, pool, stale
// entries' lifetime.
func (c *LDAP) validateLimits(p *problems) {
	if c.NestedDepth < 1 || c.NestedDepth > maxLDAPNestedDepth {
		p.add("auth.ldap.nested_depth", "must be between 1 and %d, got %d", maxLDAPNestedDepth, c.NestedDepth)
	}
	if c.Timeout.D() < minLDAPTimeout || c.Timeout.D() > maxLDAPTimeout {
		p.add("auth.ldap.timeout", "must be between %s and %s, got %s", minLDAPTimeout, maxLDAPTimeout, c.Timeout.D())
	}
	if c.PoolSize < 1 || c.PoolSize > maxLDAPPoolSize {
		p.add("auth.ldap.pool_size", "must be between 1 and %d, got %d", maxLDAPPoolSize, c.PoolSize)
	}
	if c.StaleTTL.D() <= 0 || c.StaleTTL.D() > maxLDAPStaleTTL {
		p.add("auth.ldap.stale_ttl", "must be between 1s and 24h, got %s", c.StaleTTL.D())
	}
}

// addMissing is add for a key that may be absent from the file: the
// problem then points at the line of its section's header.
func (p *problems) addMissing(key, section string, format string, args ...any) {
	line := p.lines[key]
	if line == 0 {
		line = p.lines[section]
	}
	p.errs = append(p.errs, &Error{File: p.file, Line: line, Key: key, Msg: fmt.Sprintf(format, args...)})
}
