package auth

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"
	"github.com/rs/zerolog"

	"github.com/picket-proxy/picket/internal/slapdtest"
	"github.com/picket-proxy/picket/internal/testutil"
)

// directoryLDIF is added to slapdtest.People: alice also in a group of
// unique names and a POSIX group; gamers in arcade, arcade in gamers again
// (a cycle) and in halls; a user whose uid holds filter metacharacters;
// dave, alone in the contractors unit.
const directoryLDIF = `dn: uid=star*(user),ou=people,dc=picket,dc=test
objectClass: inetOrgPerson
uid: star*(user)
cn: Star User
sn: User
userPassword: star-pw

dn: ou=contractors,ou=people,dc=picket,dc=test
objectClass: organizationalUnit
ou: contractors

dn: uid=dave,ou=contractors,ou=people,dc=picket,dc=test
objectClass: inetOrgPerson
uid: dave
cn: Dave Dunn
sn: Dunn
userPassword: dave-pw

dn: cn=finance,ou=groups,dc=picket,dc=test
objectClass: groupOfUniqueNames
cn: finance
uniqueMember: uid=alice,ou=people,dc=picket,dc=test

dn: cn=unixusers,ou=groups,dc=picket,dc=test
objectClass: posixGroup
cn: unixusers
gidNumber: 5000
memberUid: alice

dn: cn=arcade,ou=groups,dc=picket,dc=test
objectClass: groupOfNames
cn: arcade
member: cn=gamers,ou=groups,dc=picket,dc=test

dn: cn=halls,ou=groups,dc=picket,dc=test
objectClass: groupOfNames
cn: halls
member: cn=arcade,ou=groups,dc=picket,dc=test
`

// cycle makes gamers a member of arcade, which is a member of gamers.
const cycle = `dn: cn=gamers,ou=groups,dc=picket,dc=test
changetype: modify
add: member
member: cn=arcade,ou=groups,dc=picket,dc=test
`

const (
	peopleBase = "ou=people,dc=picket,dc=test"
	groupBase  = "ou=groups,dc=picket,dc=test"
	serviceDN  = slapdtest.ServiceDN
	aliceDN    = "uid=alice,ou=people,dc=picket,dc=test"
)

// startDirectory starts a slapd holding slapdtest.People and
// directoryLDIF, with the cycle.
func startDirectory(t *testing.T) *slapdtest.Server {
	t.Helper()
	s := slapdtest.Start(t, slapdtest.People+"\n"+directoryLDIF)
	s.Modify(t, cycle)
	return s
}

// ldapConfig is the configuration of a directory with a service account
// over StartTLS, with the test CA.
func ldapConfig(s *slapdtest.Server) *LDAPConfig {
	return &LDAPConfig{
		URLs:         []string{s.URL},
		CAFile:       s.CAFile,
		BindDN:       serviceDN,
		BindPassword: func() (string, error) { return "service-pw", nil },
		UserBase:     peopleBase,
		GroupBase:    groupBase,
		Timeout:      10 * time.Second, // a shared, loaded machine
	}
}

// newLDAPAuth is an Authenticator with the directory only, on a clock
// the test moves.
func newLDAPAuth(t *testing.T, cfg Config) (*Authenticator, *testutil.Clock) {
	t.Helper()
	clk := newClock()
	if cfg.ReloadInterval == 0 {
		cfg.ReloadInterval = -1
	}
	if cfg.MaxFailures == 0 {
		cfg.MaxFailures = 1000
	}
	if cfg.MaxUserFailures == 0 {
		cfg.MaxUserFailures = 1000
	}
	a, err := newAuthenticator(cfg, zerolog.Nop(), clk.Now)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	return a, clk
}

// TestLDAPCheck: passwords right and wrong, unknown users, the AD login
// names, and user names that try to inject filter syntax, against a real
// OpenLDAP over StartTLS with a service account.
func TestLDAPCheck(t *testing.T) {
	s := startDirectory(t)
	cfg := ldapConfig(s)
	cfg.Groups = GroupsSearch
	a, _ := newLDAPAuth(t, Config{LDAP: cfg})
	tests := []struct {
		name, user, password string
		wantUser             string
		wantGroups           []string
		wantErr              error
	}{
		{"right password", "alice", "alice-pw", "alice", []string{"finance", "staff", "unixusers"}, nil},
		{"wrong password", "alice", "bob-pw", "", nil, ErrBadCredentials},
		{"password with a trailing space", "alice", "alice-pw ", "", nil, ErrBadCredentials},
		{"empty password (an anonymous bind)", "alice", "", "", nil, ErrBadCredentials},
		{"unknown user", "mallory", "alice-pw", "", nil, ErrBadCredentials},
		{"user in no group", "bob", "bob-pw", "bob", nil, nil},
		{"name in another case", "ALICE", "alice-pw", "alice", []string{"finance", "staff", "unixusers"}, nil},
		{"AD userPrincipalName", "alice@picket.test", "alice-pw", "alice", []string{"finance", "staff", "unixusers"}, nil},
		{"AD sAMAccountName, wrong password", "alice@picket.test", "nope", "", nil, ErrBadCredentials},
		{"injection: or any uid", "*)(uid=*", "alice-pw", "", nil, ErrBadCredentials},
		{"injection: or any uid, closed", "*)(uid=*))(|(uid=*", "alice-pw", "", nil, ErrBadCredentials},
		{"injection: a user, or any", "alice)(|(uid=*", "alice-pw", "", nil, ErrBadCredentials},
		{"injection: wildcard", "*", "alice-pw", "", nil, ErrBadCredentials},
		{"injection: prefix wildcard", "ali*", "alice-pw", "", nil, ErrBadCredentials},
		{"injection: backslash escape", `ali\2a`, "alice-pw", "", nil, ErrBadCredentials},
		{"injection: NUL escape", `alice\00`, "alice-pw", "", nil, ErrBadCredentials},
		{"metacharacters in a real uid", "star*(user)", "star-pw", "star*(user)", nil, nil},
		{"metacharacters as a wildcard", "star*", "star-pw", "", nil, ErrBadCredentials},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Each from its own client address: the failures here must
			// not rate-limit the next cases.
			client := netip.AddrFrom4([4]byte{192, 0, 2, byte(100 + i)})
			user, groups, err := a.Check(client, basic(tt.user, tt.password))
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) || user != "" {
					t.Fatalf("got %q, %v, want %v", user, err, tt.wantErr)
				}
				return
			}
			if err != nil || user != tt.wantUser || !slices.Equal(groups, tt.wantGroups) {
				t.Fatalf("got %q %q, %v, want %q %q", user, groups, err, tt.wantUser, tt.wantGroups)
			}
		})
	}
	// Where the filter would find a single entry if the name were not
	// escaped, the injection would sign in as that entry.
	contractors := ldapConfig(s)
	contractors.UserBase = "ou=contractors,ou=people,dc=picket,dc=test"
	c, _ := newLDAPAuth(t, Config{LDAP: contractors})
	for _, name := range []string{"*)(uid=*", "*"} {
		if user, _, err := c.Check(alice, basic(name, "dave-pw")); !errors.Is(err, ErrBadCredentials) {
			t.Errorf("injection %q in a unit of one: got %q, %v, want ErrBadCredentials", name, user, err)
		}
	}
	if user, _, err := c.Check(alice, basic("dave", "dave-pw")); err != nil || user != "dave" {
		t.Errorf("dave: got %q, %v", user, err)
	}

	st := a.Stats()
	if st.Unavailable != 0 || st.ServersDown != 0 || st.DirectoryChecks == 0 {
		t.Errorf("got %+v, want directory checks and nothing unavailable", st)
	}
	if s := a.dir.servers[0]; s.dials.Load() != 1 {
		t.Errorf("got %d connections opened for %d sequential checks, want 1 (pooled)", s.dials.Load(), len(tests))
	}
}

// TestLDAPGroups: every group source, naming and nesting against the same
// directory.
func TestLDAPGroups(t *testing.T) {
	s := startDirectory(t)
	tests := []struct {
		name   string
		tweak  func(*LDAPConfig)
		user   string
		groups []string
	}{
		{"auto takes memberOf when present", func(c *LDAPConfig) {}, "alice", []string{"staff"}},
		{"member_of", func(c *LDAPConfig) { c.Groups = GroupsMemberOf }, "alice", []string{"staff"}},
		{"search: member, uniqueMember, memberUid", func(c *LDAPConfig) { c.Groups = GroupsSearch }, "alice", []string{"finance", "staff", "unixusers"}},
		{"search with a filter of one kind", func(c *LDAPConfig) {
			c.Groups, c.GroupFilter = GroupsSearch, "(&(objectClass=groupOfUniqueNames)(uniqueMember={dn}))"
		}, "alice", []string{"finance"}},
		{"none", func(c *LDAPConfig) { c.Groups = GroupsNone }, "alice", nil},
		{"named by DN", func(c *LDAPConfig) { c.GroupName = GroupDN }, "alice", []string{"cn=staff,ou=groups,dc=picket,dc=test"}},
		{"direct only", func(c *LDAPConfig) {}, "carol", []string{"students"}},
		{"nested by search, through a cycle", func(c *LDAPConfig) { c.Nested = NestedSearch }, "carol",
			[]string{"arcade", "gamers", "halls", "students"}},
		{"nested by search from memberOf", func(c *LDAPConfig) { c.Nested, c.Groups = NestedSearch, GroupsMemberOf }, "carol",
			[]string{"arcade", "gamers", "halls", "students"}},
		{"nested by search, one level", func(c *LDAPConfig) { c.Nested, c.NestedDepth = NestedSearch, 1 }, "carol",
			[]string{"gamers", "students"}},
		{"nested by search, two levels", func(c *LDAPConfig) { c.Nested, c.NestedDepth = NestedSearch, 2 }, "carol",
			[]string{"arcade", "gamers", "students"}},
		// OpenLDAP does not implement AD's in-chain rule: the search finds
		// nothing more (AD would return every enclosing group).
		{"in_chain on OpenLDAP adds nothing", func(c *LDAPConfig) { c.Nested = NestedInChain }, "carol", []string{"students"}},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := ldapConfig(s)
			tt.tweak(cfg)
			a, _ := newLDAPAuth(t, Config{LDAP: cfg})
			user, groups, err := a.Check(netip.AddrFrom4([4]byte{192, 0, 2, byte(i)}), basic(tt.user, tt.user+"-pw"))
			if err != nil || user != tt.user || !slices.Equal(groups, tt.groups) {
				t.Fatalf("got %q %q, %v, want %q %q", user, groups, err, tt.user, tt.groups)
			}
		})
	}
}

// TestInChainFilter: the AD nested-group search is the in-chain extensible
// match on the user's DN, escaped, and compiles as a filter.
func TestInChainFilter(t *testing.T) {
	dn := `cn=O\2C Brien (IT)*,ou=people,dc=corp,dc=example`
	got := inChainFilter(dn)
	want := `(member:1.2.840.113556.1.4.1941:=cn=O\5c2C Brien \28IT\29\2a,ou=people,dc=corp,dc=example)`
	if got != want {
		t.Fatalf("got %s, want %s", got, want)
	}
	if err := CheckFilter(got); err != nil {
		t.Fatal(err)
	}
}

// TestLDAPDirectoryDown: the directory stops mid-run. A fresh cached check
// still passes; anything else is refused with ErrUnavailable (fail closed)
// at once, without a wait per request; once the server is back and the
// retry interval has passed, checks pass again. With fail = "cached", a
// verification past the cache TTL stands in until the stale TTL.
func TestLDAPDirectoryDown(t *testing.T) {
	s := startDirectory(t)
	for _, fail := range []FailMode{FailClosed, FailCached} {
		t.Run(string(fail), func(t *testing.T) {
			cfg := ldapConfig(s)
			cfg.Fail, cfg.StaleTTL, cfg.RetryInterval = fail, 30*time.Minute, 10*time.Second
			a, clk := newLDAPAuth(t, Config{LDAP: cfg, CacheTTL: time.Minute})
			check := func(user string, want error) {
				t.Helper()
				got, _, err := a.Check(alice, basic(user, user+"-pw"))
				if (want == nil && (err != nil || got != user)) || (want != nil && !errors.Is(err, want)) {
					t.Fatalf("%s: got %q, %v, want %v", user, got, err, want)
				}
			}
			check("alice", nil)
			s.Stop(t)
			check("alice", nil)          // cached, within the TTL
			check("bob", ErrUnavailable) // never verified
			dials := a.dir.servers[0].dials.Load()
			check("bob", ErrUnavailable) // the server is left alone for the retry interval
			if got := a.dir.servers[0].dials.Load(); got != dials {
				t.Errorf("got %d dials to a server known down, want none", got-dials)
			}
			clk.Add(2 * time.Minute) // past the cache TTL
			if fail == FailClosed {
				check("alice", ErrUnavailable)
			} else {
				check("alice", nil) // the stale verification stands in
				clk.Add(30 * time.Minute)
				check("alice", ErrUnavailable) // ...until the stale TTL
			}
			if st := a.Stats(); st.ServersDown != 1 || st.Unavailable < 3 {
				t.Errorf("got %+v, want the server down and 3 refusals", st)
			}
			s.Restart(t)
			check("bob", ErrUnavailable) // within the retry interval
			clk.Add(11 * time.Second)
			check("bob", nil)
			check("alice", nil)
			if st := a.Stats(); st.ServersDown != 0 {
				t.Errorf("got %d servers down, want 0", st.ServersDown)
			}
		})
	}
}

// TestLDAPPasswordChange: a verified password is remembered for the cache
// TTL; once the TTL has passed, the directory is asked again and the old
// password, changed there meanwhile, is refused and forgotten: not even
// with fail = "cached" and the directory down does it count again.
func TestLDAPPasswordChange(t *testing.T) {
	s := startDirectory(t)
	cfg := ldapConfig(s)
	cfg.Fail = FailCached
	a, clk := newLDAPAuth(t, Config{LDAP: cfg, CacheTTL: 5 * time.Minute})
	check := func(password string, want error, wantHit bool) {
		t.Helper()
		before := a.Stats().CacheHits
		user, _, err := a.Check(alice, basic("alice", password))
		if (want == nil && (err != nil || user != "alice")) || (want != nil && !errors.Is(err, want)) {
			t.Fatalf("%s: got %q, %v, want %v", password, user, err, want)
		}
		if hit := a.Stats().CacheHits > before; hit != wantHit {
			t.Fatalf("%s: got cache hit %v, want %v", password, hit, wantHit)
		}
	}
	check("alice-pw", nil, false)
	check("alice-pw", nil, true)
	s.SetPassword(t, aliceDN, "alice-new-pw")
	check("alice-pw", nil, true) // within the TTL: remembered
	check("alice-new-pw", nil, false)
	clk.Add(5*time.Minute + time.Second)
	check("alice-pw", ErrBadCredentials, false)
	check("alice-pw", ErrBadCredentials, false) // forgotten, not remembered as right
	check("alice-new-pw", nil, false)
	check("alice-new-pw", nil, true)
	s.Stop(t)
	clk.Add(5*time.Minute + time.Second)
	check("alice-pw", ErrUnavailable, false)
	check("alice-new-pw", nil, false) // stale, standing in
	if st := a.Stats(); st.StaleHits != 1 {
		t.Errorf("got %d stale hits, want 1", st.StaleHits)
	}
}

// TestLDAPFailover: servers are asked in order; one that cannot be reached
// is skipped (and left alone for the retry interval), ldaps:// works as
// well as StartTLS.
func TestLDAPFailover(t *testing.T) {
	s := startDirectory(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := "ldap://" + l.Addr().String()
	l.Close() // nothing listens there now
	cfg := ldapConfig(s)
	cfg.URLs = []string{dead, s.LDAPS}
	a, _ := newLDAPAuth(t, Config{LDAP: cfg})
	for _, u := range []string{"alice", "bob", "carol"} {
		if user, _, err := a.Check(alice, basic(u, u+"-pw")); err != nil || user != u {
			t.Fatalf("got %q, %v, want %s", user, err, u)
		}
	}
	if d0, d1 := a.dir.servers[0].dials.Load(), a.dir.servers[1].dials.Load(); d0 != 1 || d1 != 1 {
		t.Errorf("got %d dials to the dead server and %d to the live one, want 1 and 1", d0, d1)
	}
	if st := a.Stats(); st.ServersDown != 1 {
		t.Errorf("got %d servers down, want 1", st.ServersDown)
	}
}

// TestLDAPTransportSecurity: the server requires TLS; a plaintext
// connection (allowed by configuration) is refused by it, and a server
// certificate from another CA is refused by Picket. Neither lets a
// password through, and both are "unavailable", not "wrong password".
func TestLDAPTransportSecurity(t *testing.T) {
	s := startDirectory(t)
	other := writeOtherCA(t)
	for _, tt := range []struct {
		name  string
		tweak func(*LDAPConfig)
	}{
		{"plaintext", func(c *LDAPConfig) { c.AllowPlaintext = true }},
		{"StartTLS with an unknown CA", func(c *LDAPConfig) { c.CAFile = other }},
		{"ldaps with an unknown CA", func(c *LDAPConfig) { c.CAFile, c.URLs = other, []string{s.LDAPS} }},
		{"system roots", func(c *LDAPConfig) { c.CAFile = "" }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg := ldapConfig(s)
			tt.tweak(cfg)
			a, _ := newLDAPAuth(t, Config{LDAP: cfg})
			if _, _, err := a.Check(alice, basic("alice", "alice-pw")); !errors.Is(err, ErrUnavailable) {
				t.Fatalf("got %v, want ErrUnavailable", err)
			}
		})
	}
}

// writeOtherCA writes a CA certificate that signed nothing here.
func writeOtherCA(t *testing.T) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "Other CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "other-ca.pem")
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestLDAPUserRateLimit: failures are counted per user name across client
// addresses; a user name over its budget is refused before the directory
// is asked, except for a password verified recently.
func TestLDAPUserRateLimit(t *testing.T) {
	s := startDirectory(t)
	a, clk := newLDAPAuth(t, Config{LDAP: ldapConfig(s), CacheTTL: time.Minute, MaxUserFailures: 3, FailureWindow: 30 * time.Second})
	if _, _, err := a.Check(alice, basic("alice", "alice-pw")); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		client := netip.AddrFrom4([4]byte{198, 51, 100, byte(i)})
		if _, _, err := a.Check(client, basic("Alice", "guess")); !errors.Is(err, ErrBadCredentials) {
			t.Fatalf("guess %d: got %v, want ErrBadCredentials", i, err)
		}
	}
	checks := a.Stats().DirectoryChecks
	var rl *RateLimitedError
	if _, _, err := a.Check(netip.MustParseAddr("198.51.100.9"), basic("alice", "guess")); !errors.As(err, &rl) || !near(rl.RetryAfter, 10*time.Second) {
		t.Fatalf("got %v, want rate-limited for 10s", err)
	}
	if user, _, err := a.Check(alice, basic("alice", "alice-pw")); err != nil || user != "alice" {
		t.Fatalf("the signed-in user: got %q, %v", user, err)
	}
	if _, _, err := a.Check(bob, basic("bob", "bob-pw")); err != nil {
		t.Fatalf("another user: %v", err)
	}
	if got := a.Stats().DirectoryChecks; got != checks+1 {
		t.Errorf("got %d directory checks, want %d (bob only)", got, checks+1)
	}
	clk.Add(10 * time.Second)
	if _, _, err := a.Check(bob, basic("alice", "guess")); !errors.Is(err, ErrBadCredentials) {
		t.Fatalf("after the wait: got %v, want ErrBadCredentials", err)
	}
}

// TestLDAPUserRateLimitSpellings: the directory finds one account under
// many spellings of its name (case, spaces around it, full-width letters,
// the userPrincipalName); a user's failure budget is the account's, so that
// another spelling does not start a new one.
func TestLDAPUserRateLimitSpellings(t *testing.T) {
	s := startDirectory(t)
	a, _ := newLDAPAuth(t, Config{LDAP: ldapConfig(s), MaxUserFailures: 3, FailureWindow: 30 * time.Second})
	for i := range 3 {
		client := netip.AddrFrom4([4]byte{198, 51, 100, byte(i)})
		if _, _, err := a.Check(client, basic("alice", "guess")); !errors.Is(err, ErrBadCredentials) {
			t.Fatalf("guess %d: got %v, want ErrBadCredentials", i, err)
		}
	}
	for i, name := range []string{"alice ", " alice", "alice  ", "ａｌｉｃｅ", "alice@picket.test", "alice\u00a0"} {
		client := netip.AddrFrom4([4]byte{203, 0, 113, byte(i)})
		if _, _, err := a.Check(client, basic(name, "guess")); !errors.Is(err, ErrRateLimited) {
			t.Errorf("%q from a new address: got %v, want ErrRateLimited (the account is over its budget)", name, err)
		}
	}
	if _, _, err := a.Check(bob, basic("bob", "bob-pw")); err != nil {
		t.Errorf("another user: %v", err)
	}
}

// TestLDAPWithHtpasswd: a local (htpasswd) account is checked first and is
// final for its name: the directory is not asked, even when the local
// password is wrong. Directory users get the groups file's groups beside
// the directory's.
func TestLDAPWithHtpasswd(t *testing.T) {
	s := startDirectory(t)
	dir := t.TempDir()
	htpasswd, groupsFile := filepath.Join(dir, "htpasswd"), filepath.Join(dir, "groups")
	writeFile(t, htpasswd, entry(t, "alice", "local-pw"), entry(t, "breakglass", "glass-pw"))
	writeFile(t, groupsFile, "admins: breakglass", "vip: bob alice", "staff: bob")
	a, _ := newLDAPAuth(t, Config{Htpasswd: htpasswd, Groups: groupsFile, LDAP: ldapConfig(s), CacheTTL: time.Minute})
	for _, tt := range []struct {
		user, password string
		groups         []string
		err            error
	}{
		{"breakglass", "glass-pw", []string{"admins"}, nil},
		{"alice", "local-pw", []string{"vip"}, nil},
		{"alice", "alice-pw", nil, ErrBadCredentials}, // the directory's password: not asked
		// Another spelling the directory finds its alice under: the name
		// is the local account's all the same.
		{"ALICE", "alice-pw", nil, ErrBadCredentials},
		{"alice ", "alice-pw", nil, ErrBadCredentials},
		{"ALICE", "alice-pw", nil, ErrBadCredentials}, // not remembered either
		{"bob", "bob-pw", []string{"staff", "vip"}, nil},
	} {
		user, groups, err := a.Check(alice, basic(tt.user, tt.password))
		if (tt.err != nil && !errors.Is(err, tt.err)) || (tt.err == nil && (err != nil || user != tt.user || !slices.Equal(groups, tt.groups))) {
			t.Errorf("%s/%s: got %q %q, %v, want %q, %v", tt.user, tt.password, user, groups, err, tt.groups, tt.err)
		}
	}
	if got := a.Stats().DirectoryChecks; got != 4 {
		t.Errorf("got %d directory checks, want 4 (ALICE twice, alice with a space, bob)", got)
	}
	// The directory is down: the break-glass account still works.
	s.Stop(t)
	if user, _, err := a.Check(bob, basic("breakglass", "glass-pw")); err != nil || user != "breakglass" {
		t.Errorf("break-glass with the directory down: got %q, %v", user, err)
	}
}

// TestLDAPConcurrent: many requests with the same new credentials at once
// ask the directory once; different users at once share the pool without
// opening more than PoolSize connections.
func TestLDAPConcurrent(t *testing.T) {
	s := startDirectory(t)
	cfg := ldapConfig(s)
	cfg.PoolSize = 2
	a, _ := newLDAPAuth(t, Config{LDAP: cfg, CacheTTL: time.Minute})
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			if user, _, err := a.Check(alice, basic("carol", "carol-pw")); err != nil || user != "carol" {
				t.Errorf("got %q, %v", user, err)
			}
		})
	}
	wg.Wait()
	if got := a.Stats().DirectoryChecks; got != 1 {
		t.Errorf("got %d directory checks for one user's 16 requests, want 1", got)
	}
	a2, _ := newLDAPAuth(t, Config{LDAP: cfg})
	for i := range 24 {
		u := []string{"alice", "bob", "carol"}[i%3]
		wg.Go(func() {
			if user, _, err := a2.Check(alice, basic(u, u+"-pw")); err != nil || user != u {
				t.Errorf("got %q, %v, want %s", user, err, u)
			}
			if _, _, err := a2.Check(alice, basic(u, "wrong")); !errors.Is(err, ErrBadCredentials) {
				t.Errorf("got %v, want ErrBadCredentials", err)
			}
		})
	}
	wg.Wait()
	if d := a2.dir.servers[0].dials.Load(); d > 2 {
		t.Errorf("got %d connections opened, want at most the pool size, 2", d)
	}
}

// TestLDAPServicePasswordRotation: when the directory refuses the service
// password, it is read again (from its file) and used.
func TestLDAPServicePasswordRotation(t *testing.T) {
	s := startDirectory(t)
	pwFile := filepath.Join(t.TempDir(), "bind-password")
	os.WriteFile(pwFile, []byte("service-pw\n"), 0o600)
	cfg := ldapConfig(s)
	cfg.BindPassword = func() (string, error) {
		b, err := os.ReadFile(pwFile)
		return strings.TrimRight(string(b), "\r\n"), err
	}
	a, _ := newLDAPAuth(t, Config{LDAP: cfg})
	if _, _, err := a.Check(alice, basic("alice", "alice-pw")); err != nil {
		t.Fatal(err)
	}
	s.SetPassword(t, serviceDN, "rotated-pw")
	os.WriteFile(pwFile, []byte("rotated-pw\n"), 0o600)
	// The pooled connection is bound as alice: the next check binds the
	// service account again, with the old password first.
	if _, _, err := a.Check(alice, basic("bob", "bob-pw")); err != nil {
		t.Fatalf("after the rotation: %v", err)
	}
	// A service password nobody knows: unavailable, not a wrong user
	// password. (alice's check leaves the connection bound as alice: her
	// groups come from memberOf, without another search.)
	if _, _, err := a.Check(alice, basic("alice", "alice-pw")); err != nil {
		t.Fatal(err)
	}
	s.SetPassword(t, serviceDN, "unknown-pw")
	if _, _, err := a.Check(alice, basic("carol", "carol-pw")); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("with a wrong service password: got %v, want ErrUnavailable", err)
	}
}

// TestLDAPConfigRefused: a directory configuration that cannot work is
// refused at start with every problem named.
func TestLDAPConfigRefused(t *testing.T) {
	for _, tt := range []struct {
		name string
		cfg  LDAPConfig
		want string
	}{
		{"nothing", LDAPConfig{}, "no directory server URL"},
		{"scheme", LDAPConfig{URLs: []string{"http://dc1"}, UserBase: "dc=x"}, "ldap:// or ldaps://"},
		{"path", LDAPConfig{URLs: []string{"ldap://dc1/dc=x?uid"}, UserBase: "dc=x"}, "nothing more"},
		{"no base", LDAPConfig{URLs: []string{"ldap://dc1"}}, "no user search base"},
		{"filter without user", LDAPConfig{URLs: []string{"ldap://dc1"}, UserBase: "dc=x", UserFilter: "(uid=alice)"}, "does not use {user}"},
		{"bad filter", LDAPConfig{URLs: []string{"ldap://dc1"}, UserBase: "dc=x", UserFilter: "(uid={user}"}, "filter"},
		{"group filter without dn", LDAPConfig{URLs: []string{"ldap://dc1"}, UserBase: "dc=x", GroupFilter: "(memberUid={user})"}, "does not use {dn}"},
		{"bind DN without password", LDAPConfig{URLs: []string{"ldap://dc1"}, UserBase: "dc=x", BindDN: "cn=svc"}, "without a password"},
		{"password unreadable", LDAPConfig{URLs: []string{"ldap://dc1"}, UserBase: "dc=x", BindDN: "cn=svc",
			BindPassword: func() (string, error) { return "", errors.New("no such file") }}, "no such file"},
		{"CA file", LDAPConfig{URLs: []string{"ldap://dc1"}, UserBase: "dc=x", CAFile: "/nonexistent/ca.pem"}, "CA file"},
		{"group source", LDAPConfig{URLs: []string{"ldap://dc1"}, UserBase: "dc=x", Groups: "all"}, "group source"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(Config{LDAP: &tt.cfg, ReloadInterval: -1}, zerolog.Nop())
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want an error with %q", err, tt.want)
			}
		})
	}
}

// TestLDAPNoSecretsInErrors: the errors and log lines of failed checks
// never hold the password.
func TestLDAPNoSecretsInErrors(t *testing.T) {
	s := startDirectory(t)
	var logBuf testutil.SyncBuffer
	log := zerolog.New(&logBuf).Level(zerolog.DebugLevel)
	cfg := ldapConfig(s)
	a, err := newAuthenticator(Config{LDAP: cfg, ReloadInterval: -1}, log, newClock().Now)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	const secret = "Secret-Guess-1234"
	var errs []string
	for _, u := range []string{"alice", "nobody"} {
		_, _, err := a.Check(alice, basic(u, secret))
		errs = append(errs, fmt.Sprint(err))
	}
	s.Stop(t)
	_, _, err = a.Check(alice, basic("bob", secret))
	errs = append(errs, fmt.Sprint(err))
	if all := strings.Join(errs, "\n") + logBuf.String(); strings.Contains(all, secret) || strings.Contains(all, "service-pw") {
		t.Errorf("a password leaked:\n%s", all)
	}
	if !strings.Contains(logBuf.String(), "cannot be reached") {
		t.Errorf("the server going down was not logged:\n%s", logBuf.String())
	}
}

// FuzzUserFilter: whatever the user name, the user filter compiles and keeps
// its structure: decompiled, it is the filter built, so the name stayed a
// value (RFC 4515 escaping) and added no filter component.
func FuzzUserFilter(f *testing.F) {
	for _, s := range []string{"alice", "*)(uid=*", "*", `\2a`, "a\x00b", "(|(uid=*))", "é", "\xff\xfe"} {
		f.Add(s)
	}
	d := &directory{cfg: LDAPConfig{}.withDefaults()}
	f.Fuzz(func(t *testing.T, user string) {
		filter := d.userFilter(user)
		p, err := ldap.CompileFilter(filter)
		if err != nil {
			t.Fatalf("%q: %v", user, err)
		}
		back, err := ldap.DecompileFilter(p)
		if err != nil || back != filter {
			t.Fatalf("%q: got %q, %v back from %q", user, back, err, filter)
		}
	})
}
