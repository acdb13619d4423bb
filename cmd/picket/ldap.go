package main

import (
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"

	"github.com/rs/zerolog"

	"github.com/picket-proxy/picket/auth"
	"github.com/picket-proxy/picket/config"
)

// ldapConfig maps [auth.ldap] (c, which is f.Auth.LDAP) into the
// directory's Config: paths resolved against the config file, the service
// password read from its file or environment variable when asked for.
func ldapConfig(f *config.File, c config.LDAP, log zerolog.Logger) *auth.LDAPConfig {
	cfg := &auth.LDAPConfig{
		URLs:           slices.Clone(c.URL),
		AllowPlaintext: c.AllowPlaintext,
		CAFile:         f.Resolve(c.CAFile),
		BindDN:         c.BindDN,
		UserBase:       c.UserBase,
		UserFilter:     c.UserFilter,
		UserAttribute:  c.UserAttribute,
		Groups:         auth.GroupSource(c.Groups),
		GroupBase:      c.GroupBase,
		GroupFilter:    c.GroupFilter,
		Nested:         auth.Nesting(c.NestedGroups),
		NestedDepth:    c.NestedDepth,
		GroupName:      auth.GroupName(c.GroupName),
		Timeout:        c.Timeout.D(),
		PoolSize:       c.PoolSize,
		Fail:           auth.FailMode(c.Fail),
		StaleTTL:       c.StaleTTL.D(),
	}
	switch {
	case c.BindPasswordFile != "":
		path := f.Resolve(c.BindPasswordFile)
		var warn sync.Once
		cfg.BindPassword = func() (string, error) {
			if fi, err := os.Stat(path); err == nil && fi.Mode().Perm()&0o007 != 0 {
				warn.Do(func() {
					log.Warn().Str("file", path).Str("mode", fi.Mode().Perm().String()).
						Msg("auth.ldap.bind_password_file is open to every local user: chmod 0600 (or 0640 with the picket group)")
				})
			}
			return readSecret(path)
		}
	case c.BindPasswordEnv != "":
		name := c.BindPasswordEnv
		cfg.BindPassword = func() (string, error) {
			v, ok := os.LookupEnv(name)
			if !ok || v == "" {
				return "", fmt.Errorf("auth.ldap.bind_password_env: the environment variable %s is not set", name)
			}
			return v, nil
		}
	}
	return cfg
}

// readSecret reads a one-line secret file: the first line, without its line
// end.
func readSecret(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("auth.ldap.bind_password_file: %w", err)
	}
	line, _, _ := strings.Cut(string(b), "\n")
	line = strings.TrimSuffix(line, "\r")
	if line == "" {
		return "", fmt.Errorf("auth.ldap.bind_password_file: %s is empty", path)
	}
	return line, nil
}
