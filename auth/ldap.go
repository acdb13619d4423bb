package auth

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/go-ldap/ldap/v3"
	"github.com/rs/zerolog"
)

// GroupSource says where a directory user's groups come from.
type GroupSource string

// The group sources.
const (
	// GroupsAuto reads memberOf when the user's entry carries it, and
	// searches the groups otherwise.
	GroupsAuto GroupSource = "auto"
	// GroupsMemberOf reads the memberOf attribute of the user's entry
	// (Active Directory; OpenLDAP with the memberof overlay).
	GroupsMemberOf GroupSource = "member_of"
	// GroupsSearch searches LDAPConfig.GroupBase with GroupFilter.
	GroupsSearch GroupSource = "search"
	// GroupsNone takes no groups from the directory.
	GroupsNone GroupSource = "none"
)

func (g GroupSource) String() string { return string(g) }

// Nesting says how groups within groups are followed.
type Nesting string

// The ways of following nested groups.
const (
	// NestedNone takes the user's direct groups only.
	NestedNone Nesting = "none"
	// NestedInChain asks Active Directory for every group the user is in,
	// directly or through other groups, in one search with the
	// LDAP_MATCHING_RULE_IN_CHAIN rule (1.2.840.113556.1.4.1941). Other
	// directories (OpenLDAP) do not implement the rule and find no
	// groups.
	NestedInChain Nesting = "in_chain"
	// NestedSearch follows groups that are members of groups by searching
	// again, level by level, up to LDAPConfig.NestedDepth levels: works on
	// every directory, one search per level.
	NestedSearch Nesting = "search"
)

func (n Nesting) String() string { return string(n) }

// GroupName says how a group is named to the rules.
type GroupName string

// The group namings.
const (
	// GroupCN names a group by the value of its DN's first RDN (its CN:
	// "staff" for "cn=staff,ou=groups,dc=example,dc=org").
	GroupCN GroupName = "cn"
	// GroupDN names a group by its full DN as the directory returns it.
	GroupDN GroupName = "dn"
)

func (g GroupName) String() string { return string(g) }

// FailMode says what happens when no directory server can be reached.
type FailMode string

// The fail modes.
const (
	// FailClosed refuses with ErrUnavailable (the proxy answers 503)
	// credentials that are not freshly verified.
	FailClosed FailMode = "closed"
	// FailCached accepts credentials verified within LDAPConfig.StaleTTL
	// and refuses the others with ErrUnavailable.
	FailCached FailMode = "cached"
)

func (f FailMode) String() string { return string(f) }

// Defaults for the zero values of LDAPConfig.
const (
	// DefaultUserFilter finds a user by OpenLDAP's uid or by Active
	// Directory's sAMAccountName or userPrincipalName; each directory
	// ignores the attributes it does not know.
	DefaultUserFilter = "(&(objectClass=person)(|(uid={user})(sAMAccountName={user})(userPrincipalName={user})))"
	// DefaultGroupFilter finds the groups that list the user by DN
	// (groupOfNames, Active Directory's group), by DN with an optional UID
	// (groupOfUniqueNames) or by user name (posixGroup).
	DefaultGroupFilter    = "(|(member={dn})(uniqueMember={dn})(memberUid={user}))"
	DefaultLDAPTimeout    = 5 * time.Second
	DefaultPoolSize       = 4
	DefaultNestedDepth    = 5
	DefaultStaleTTL       = time.Hour
	DefaultRetryInterval  = 5 * time.Second
	inChainRule           = "1.2.840.113556.1.4.1941"
	maxGroups             = 1000            // groups of one user, all levels
	nestedBatch           = 32              // groups asked about per nested search
	maxIdle               = 2 * time.Minute // a pooled connection unused longer is replaced
	defaultLDAPPort       = "389"
	defaultLDAPSPort      = "636"
	placeholderUser       = "{user}"
	placeholderDN         = "{dn}"
	attrMemberOf          = "memberOf"
	serviceRebindAttempts = 2
)

// LDAPConfig says which directory checks passwords and names groups, and
// how. The zero value of each field is its documented default.
type LDAPConfig struct {
	// URLs are the directory servers in failover order: ldaps://host[:636]
	// (TLS from the start) or ldap://host[:389] (StartTLS before anything
	// else); required.
	URLs []string
	// AllowPlaintext lets ldap:// URLs skip StartTLS: passwords then cross
	// the network in clear. Off by default.
	AllowPlaintext bool
	// CAFile is a PEM file of the CAs that sign the servers' certificates;
	// "" trusts the system's roots.
	CAFile string
	// BindDN is the service account that searches for users and groups;
	// "" searches anonymously.
	BindDN string
	// BindPassword returns the service account's password; it is asked
	// at start and again when the directory refuses the password it gave
	// (rotated). nil with BindDN set is an error.
	BindPassword func() (string, error)
	// UserBase is where users are searched (the whole subtree); required.
	UserBase string
	// UserFilter finds one user; {user} stands for the name as typed,
	// escaped (RFC 4515). "" means DefaultUserFilter.
	UserFilter string
	// UserAttribute names the attribute whose value is the user's name for
	// rules and logs; "" takes uid, else sAMAccountName, else the name as
	// typed.
	UserAttribute string
	// Groups is where groups come from; "" means GroupsAuto.
	Groups GroupSource
	// GroupBase is where groups are searched; "" means UserBase.
	GroupBase string
	// GroupFilter finds the groups that hold a member: {dn} stands for
	// the member's DN, {user} for the user's name, both escaped. "" means
	// DefaultGroupFilter.
	GroupFilter string
	// Nested is how nested groups are followed; "" means NestedNone.
	Nested Nesting
	// NestedDepth bounds NestedSearch, in levels above the direct groups;
	// 0 means DefaultNestedDepth.
	NestedDepth int
	// GroupName is how groups are named to the rules; "" means GroupCN.
	GroupName GroupName
	// Timeout bounds one server's whole answer to one sign-in (connect,
	// TLS, searches and binds); 0 means DefaultLDAPTimeout.
	Timeout time.Duration
	// PoolSize is the most connections open to one server (kept for reuse
	// while idle); 0 means DefaultPoolSize.
	PoolSize int
	// Fail is what happens when no server answers; "" means FailClosed.
	Fail FailMode
	// StaleTTL is how long after its verification a password still counts
	// when the directory cannot be reached, with FailCached; 0 means
	// DefaultStaleTTL.
	StaleTTL time.Duration
	// RetryInterval is how long a server that could not be reached is left
	// alone before one request tries it again; 0 means
	// DefaultRetryInterval.
	RetryInterval time.Duration
}

// withDefaults returns c with its zero values replaced.
func (c LDAPConfig) withDefaults() LDAPConfig {
	def := func(s *string, v string) {
		if *s == "" {
			*s = v
		}
	}
	def(&c.UserFilter, DefaultUserFilter)
	def(&c.GroupFilter, DefaultGroupFilter)
	def(&c.GroupBase, c.UserBase)
	if c.Groups == "" {
		c.Groups = GroupsAuto
	}
	if c.Nested == "" {
		c.Nested = NestedNone
	}
	if c.GroupName == "" {
		c.GroupName = GroupCN
	}
	if c.Fail == "" {
		c.Fail = FailClosed
	}
	for _, d := range []struct {
		p *time.Duration
		v time.Duration
	}{{&c.Timeout, DefaultLDAPTimeout}, {&c.StaleTTL, DefaultStaleTTL}, {&c.RetryInterval, DefaultRetryInterval}} {
		if *d.p <= 0 {
			*d.p = d.v
		}
	}
	if c.PoolSize <= 0 {
		c.PoolSize = DefaultPoolSize
	}
	if c.NestedDepth <= 0 {
		c.NestedDepth = DefaultNestedDepth
	}
	return c
}

// CheckFilter reports whether filter, with each placeholder replaced by a
// sample value, is a valid LDAP filter (RFC 4515) that uses every required
// placeholder.
func CheckFilter(filter string, required ...string) error {
	for _, p := range required {
		if !strings.Contains(filter, p) {
			return fmt.Errorf("filter %q does not use %s", filter, p)
		}
	}
	sample := strings.NewReplacer(placeholderUser, "alice", placeholderDN, "cn=alice,dc=example,dc=org").Replace(filter)
	if _, err := ldap.CompileFilter(sample); err != nil {
		return fmt.Errorf("filter %q: %w", filter, err)
	}
	return nil
}

// ParseServerURL checks an LDAP server URL: ldap:// or ldaps://, a host,
// an optional port, nothing else. It returns the host:port to dial and
// whether TLS starts at once (ldaps).
func ParseServerURL(raw string) (addr string, ldaps bool, err error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", false, err
	}
	switch u.Scheme {
	case "ldap", "ldaps":
	default:
		return "", false, fmt.Errorf("%q: the scheme must be ldap:// or ldaps://", raw)
	}
	if u.Hostname() == "" || u.User != nil || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
		return "", false, fmt.Errorf("%q: want ldap[s]://host[:port] and nothing more", raw)
	}
	port := u.Port()
	if port == "" {
		port = defaultLDAPPort
		if u.Scheme == "ldaps" {
			port = defaultLDAPSPort
		}
	}
	return net.JoinHostPort(u.Hostname(), port), u.Scheme == "ldaps", nil
}

// ErrUnavailable is returned when the credentials could not be checked: no
// directory server answered. The proxy answers 503 without a challenge.
var ErrUnavailable = errors.New("auth: the directory cannot be reached")

// identity is a user verified by the directory.
type identity struct {
	user   string
	groups []string // sorted, unique (case-insensitively)
}

// directory checks passwords with LDAP binds and names groups, asking its
// servers in order. It is safe for concurrent use.
type directory struct {
	cfg     LDAPConfig
	servers []*server
	log     zerolog.Logger
	now     func() time.Time

	pwMu     sync.Mutex
	password string // the service account's, as last read
}

// newDirectory checks cfg (defaults applied) and reads the CA file and the
// service password. It connects to nothing: servers are dialled on demand.
func newDirectory(cfg LDAPConfig, log zerolog.Logger, now func() time.Time) (*directory, error) {
	cfg = cfg.withDefaults()
	var errs []error
	if len(cfg.URLs) == 0 {
		errs = append(errs, errors.New("no directory server URL"))
	}
	if cfg.UserBase == "" {
		errs = append(errs, errors.New("no user search base"))
	}
	for _, f := range []struct {
		filter   string
		required []string
	}{{cfg.UserFilter, []string{placeholderUser}}, {cfg.GroupFilter, []string{placeholderDN}}} {
		if err := CheckFilter(f.filter, f.required...); err != nil {
			errs = append(errs, err)
		}
	}
	if !slices.Contains([]GroupSource{GroupsAuto, GroupsMemberOf, GroupsSearch, GroupsNone}, cfg.Groups) {
		errs = append(errs, fmt.Errorf("unknown group source %q", cfg.Groups))
	}
	if !slices.Contains([]Nesting{NestedNone, NestedInChain, NestedSearch}, cfg.Nested) {
		errs = append(errs, fmt.Errorf("unknown nesting %q", cfg.Nested))
	}
	if cfg.GroupName != GroupCN && cfg.GroupName != GroupDN {
		errs = append(errs, fmt.Errorf("unknown group naming %q", cfg.GroupName))
	}
	if cfg.Fail != FailClosed && cfg.Fail != FailCached {
		errs = append(errs, fmt.Errorf("unknown fail mode %q", cfg.Fail))
	}
	roots, err := loadRoots(cfg.CAFile)
	if err != nil {
		errs = append(errs, err)
	}
	d := &directory{cfg: cfg, log: log, now: now}
	if cfg.BindDN != "" {
		if cfg.BindPassword == nil {
			errs = append(errs, errors.New("a bind DN without a password"))
		} else if d.password, err = cfg.BindPassword(); err != nil {
			errs = append(errs, fmt.Errorf("the bind password: %w", err))
		}
	}
	for _, raw := range cfg.URLs {
		addr, ldaps, err := ParseServerURL(raw)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		host, _, _ := net.SplitHostPort(addr)
		s := &server{
			url: raw, addr: addr, ldaps: ldaps, startTLS: !ldaps && !cfg.AllowPlaintext,
			tls:   &tls.Config{RootCAs: roots, ServerName: host, MinVersion: tls.VersionTLS12},
			slots: make(chan struct{}, cfg.PoolSize),
			idle:  make(chan *conn, cfg.PoolSize),
		}
		if !ldaps && cfg.AllowPlaintext {
			log.Warn().Str(LogServer, raw).Msg("auth: plain LDAP without StartTLS: passwords cross the network in clear")
		}
		d.servers = append(d.servers, s)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("auth: ldap: %w", err)
	}
	return d, nil
}

func loadRoots(path string) (*x509.CertPool, error) {
	if path == "" {
		return nil, nil // the system's
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("the CA file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("the CA file %s holds no PEM certificate", path)
	}
	return pool, nil
}

// budget is the longest authenticate may take: every server's timeout.
func (d *directory) budget() time.Duration {
	return time.Duration(len(d.servers)) * d.cfg.Timeout
}

// authenticate checks user's password with the first server that answers
// and returns the user as rules see them with their groups. It returns an
// error wrapping ErrBadCredentials for an unknown user or a wrong password,
// and any other error when no server could tell.
func (d *directory) authenticate(ctx context.Context, user, password string) (identity, error) {
	// An empty password would make the user's bind an anonymous one that
	// every directory accepts (RFC 4513 section 5.1.2).
	if password == "" {
		return identity{}, fmt.Errorf("%w: empty password", ErrBadCredentials)
	}
	var errs []error
	for _, s := range d.servers {
		if !s.try(d.now()) {
			continue
		}
		id, err := d.tryServer(ctx, s, user, password)
		switch {
		case err == nil, errors.Is(err, ErrBadCredentials):
			s.answered(d.log)
			return id, err
		case errors.Is(err, errBusy):
			s.answered(d.log) // up, but saturated: try the next one
		case isNetwork(err):
			s.failed(d.log, d.now().Add(d.cfg.RetryInterval), err)
		default:
			s.answered(d.log) // it answered, with an error: not down
		}
		errs = append(errs, fmt.Errorf("%s: %w", s.url, err))
		if ctx.Err() != nil {
			break
		}
	}
	if len(errs) == 0 {
		return identity{}, fmt.Errorf("every directory server failed within the last %s", d.cfg.RetryInterval)
	}
	return identity{}, errors.Join(errs...)
}

// tryServer runs the check on a connection to s. A pooled connection that
// turns out dead (the server restarted, or dropped it while idle) is
// replaced by a new one once.
func (d *directory) tryServer(ctx context.Context, s *server, user, password string) (identity, error) {
	for attempt := 0; ; attempt++ {
		c, err := s.get(ctx, d)
		if err != nil {
			return identity{}, err
		}
		id, err := d.check(ctx, c, user, password)
		if err != nil && isNetwork(err) {
			s.discard(c)
			if c.reused && attempt == 0 && ctx.Err() == nil {
				continue
			}
			return identity{}, err
		}
		s.put(c)
		return id, err
	}
}

// check searches the user, binds as the user with the password and names
// the groups, on one connection, within the timeout.
func (d *directory) check(ctx context.Context, c *conn, typed, password string) (identity, error) {
	c.setDeadline(ctx, d.cfg.Timeout)
	// 1. Search as the service account.
	if err := d.bindService(c); err != nil {
		return identity{}, err
	}
	entry, err := d.findUser(c, typed)
	if err != nil {
		return identity{}, err
	}
	// 2. The password: a bind as the user.
	c.bound = boundOther
	if err := c.l.Bind(entry.DN, password); err != nil {
		if isCredentialError(err) {
			return identity{}, fmt.Errorf("%w: %s: %v", ErrBadCredentials, entry.DN, ldapMessage(err))
		}
		return identity{}, fmt.Errorf("binding as the user: %w", err)
	}
	// 3. The groups, as the service account again.
	name := d.userName(entry, typed)
	groups, err := d.groups(c, entry, name)
	if err != nil {
		return identity{}, fmt.Errorf("groups of %s: %w", entry.DN, err)
	}
	return identity{user: name, groups: groups}, nil
}

// bindService binds c as the service account (or anonymously without one)
// unless it is already. When the directory refuses the password, it is
// read again (it may have been rotated) and tried once more.
func (d *directory) bindService(c *conn) error {
	if c.bound == boundService {
		return nil
	}
	if d.cfg.BindDN == "" {
		if c.bound != boundAnonymous {
			// An anonymous bind (RFC 4513 section 5.1.1).
			if err := c.l.UnauthenticatedBind(""); err != nil {
				return fmt.Errorf("anonymous bind: %w", err)
			}
		}
		c.bound = boundService
		return nil
	}
	d.pwMu.Lock()
	pw := d.password
	d.pwMu.Unlock()
	for i := 0; ; i++ {
		err := c.l.Bind(d.cfg.BindDN, pw)
		if err == nil {
			c.bound = boundService
			return nil
		}
		c.bound = boundOther
		if !ldap.IsErrorWithCode(err, ldap.LDAPResultInvalidCredentials) || i+1 == serviceRebindAttempts {
			return fmt.Errorf("service bind as %s: %w", d.cfg.BindDN, err)
		}
		fresh, rerr := d.cfg.BindPassword()
		if rerr != nil || fresh == pw {
			return fmt.Errorf("service bind as %s: %w", d.cfg.BindDN, err)
		}
		d.pwMu.Lock()
		d.password = fresh
		d.pwMu.Unlock()
		pw = fresh
		d.log.Info().Str(LogDN, d.cfg.BindDN).Msg("auth: ldap: the bind password changed; using the new one")
	}
}

// findUser returns the one entry the user filter finds for the typed name.
func (d *directory) findUser(c *conn, typed string) (*ldap.Entry, error) {
	filter := d.userFilter(typed)
	attrs := []string{"uid", "sAMAccountName"}
	if d.cfg.UserAttribute != "" {
		attrs = []string{d.cfg.UserAttribute}
	}
	if d.cfg.Groups == GroupsAuto || d.cfg.Groups == GroupsMemberOf {
		attrs = append(attrs, attrMemberOf)
	}
	req := ldap.NewSearchRequest(d.cfg.UserBase, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases,
		2, d.timeLimit(), false, filter, attrs, nil)
	res, err := c.l.Search(req)
	if err != nil && !ldap.IsErrorWithCode(err, ldap.LDAPResultSizeLimitExceeded) {
		return nil, fmt.Errorf("searching the user: %w", err)
	}
	switch n := len(res.Entries); {
	case n == 0:
		return nil, fmt.Errorf("%w: no such user", ErrBadCredentials)
	case n > 1:
		d.log.Warn().Str(LogUser, typed).Str(LogFilter, filter).
			Msg("auth: ldap: the user filter finds several entries for one name: refused; make user_filter stricter")
		return nil, fmt.Errorf("%w: the user filter finds several entries", ErrBadCredentials)
	}
	return res.Entries[0], nil
}

// userFilter is the user filter for the name typed, escaped (RFC 4515):
// whatever the name, the filter keeps its structure.
func (d *directory) userFilter(typed string) string {
	return strings.ReplaceAll(d.cfg.UserFilter, placeholderUser, ldap.EscapeFilter(typed))
}

// timeLimit is the search time limit sent to the server, in whole seconds.
func (d *directory) timeLimit() int { return max(1, int(d.cfg.Timeout/time.Second)) }

// userName is the user as rules and logs see them.
func (d *directory) userName(e *ldap.Entry, typed string) string {
	attrs := []string{"uid", "sAMAccountName"}
	if d.cfg.UserAttribute != "" {
		attrs = []string{d.cfg.UserAttribute}
	}
	for _, a := range attrs {
		if v := e.GetEqualFoldAttributeValue(a); v != "" {
			return v
		}
	}
	return typed
}

// groups returns the names of the groups of the user entry e.
func (d *directory) groups(c *conn, e *ldap.Entry, name string) ([]string, error) {
	if d.cfg.Groups == GroupsNone {
		return nil, nil
	}
	var dns []string
	if d.cfg.Groups == GroupsAuto || d.cfg.Groups == GroupsMemberOf {
		dns = e.GetEqualFoldAttributeValues(attrMemberOf)
	}
	search := d.cfg.Groups == GroupsSearch || (d.cfg.Groups == GroupsAuto && len(dns) == 0)
	if search || d.cfg.Nested != NestedNone {
		if err := d.bindService(c); err != nil {
			return nil, err
		}
	}
	if search {
		found, err := d.searchGroups(c, d.groupFilter(e.DN, name))
		if err != nil {
			return nil, err
		}
		dns = append(dns, found...)
	}
	switch d.cfg.Nested {
	case NestedInChain:
		found, err := d.searchGroups(c, inChainFilter(e.DN))
		if err != nil {
			return nil, err
		}
		dns = append(dns, found...)
	case NestedSearch:
		var err error
		if dns, err = d.nested(c, dns, name); err != nil {
			return nil, err
		}
	}
	return d.names(dns), nil
}

// inChainFilter finds, in Active Directory, every group that holds dn
// directly or through other groups.
func inChainFilter(dn string) string {
	return "(member:" + inChainRule + ":=" + ldap.EscapeFilter(dn) + ")"
}

// groupFilter is the group filter for a member DN and the user's name.
func (d *directory) groupFilter(dn, name string) string {
	return strings.NewReplacer(placeholderDN, ldap.EscapeFilter(dn), placeholderUser, ldap.EscapeFilter(name)).Replace(d.cfg.GroupFilter)
}

// searchGroups returns the DNs of the groups filter finds under GroupBase.
// Past maxGroups the rest is left out, with a warning.
func (d *directory) searchGroups(c *conn, filter string) ([]string, error) {
	req := ldap.NewSearchRequest(d.cfg.GroupBase, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases,
		maxGroups, d.timeLimit(), false, filter, []string{"1.1"}, nil) // 1.1: no attributes (RFC 4511)
	res, err := c.l.Search(req)
	if err != nil {
		if !ldap.IsErrorWithCode(err, ldap.LDAPResultSizeLimitExceeded) {
			return nil, fmt.Errorf("searching groups: %w", err)
		}
		d.log.Warn().Str(LogFilter, filter).Int(LogGroups, len(res.Entries)).Msg("auth: ldap: too many groups; the rest are left out")
	}
	out := make([]string, 0, len(res.Entries))
	for _, e := range res.Entries {
		out = append(out, e.DN)
	}
	return out, nil
}

// nested adds to direct the groups that contain them, level by level, up to
// NestedDepth levels and maxGroups groups. A group seen before is not asked
// about again, so cycles end.
func (d *directory) nested(c *conn, direct []string, name string) ([]string, error) {
	all := slices.Clone(direct)
	seen := make(map[string]bool, len(direct))
	for _, dn := range direct {
		seen[foldDN(dn)] = true
	}
	frontier := direct
	for level := 0; level < d.cfg.NestedDepth && len(frontier) > 0 && len(all) < maxGroups; level++ {
		var next []string
		for batch := range slices.Chunk(frontier, nestedBatch) {
			var f strings.Builder
			f.WriteString("(|")
			for _, g := range batch {
				f.WriteString(d.groupFilter(g, name))
			}
			f.WriteString(")")
			found, err := d.searchGroups(c, f.String())
			if err != nil {
				return nil, err
			}
			for _, dn := range found {
				if k := foldDN(dn); !seen[k] && len(all) < maxGroups {
					seen[k] = true
					next = append(next, dn)
					all = append(all, dn)
				}
			}
		}
		frontier = next
	}
	return all, nil
}

// foldDN is a DN in a form for comparing: parsed and case-folded when it
// parses, else lower-cased.
func foldDN(dn string) string {
	if p, err := ldap.ParseDN(dn); err == nil {
		return strings.ToLower(p.String())
	}
	return strings.ToLower(dn)
}

// names turns group DNs into the names rules see, sorted, without
// duplicates (case-insensitively).
func (d *directory) names(dns []string) []string {
	if len(dns) == 0 {
		return nil
	}
	out := make([]string, 0, len(dns))
	seen := make(map[string]bool, len(dns))
	for _, dn := range dns {
		n := dn
		if d.cfg.GroupName == GroupCN {
			n = firstRDNValue(dn)
		}
		if k := strings.ToLower(n); n != "" && !seen[k] {
			seen[k] = true
			out = append(out, n)
		}
	}
	slices.Sort(out)
	return out
}

// firstRDNValue is the value of a DN's first RDN ("staff" for
// "cn=staff,ou=groups,dc=example,dc=org"); the DN itself if it does not
// parse.
func firstRDNValue(dn string) string {
	p, err := ldap.ParseDN(dn)
	if err != nil || len(p.RDNs) == 0 || len(p.RDNs[0].Attributes) == 0 {
		return dn
	}
	return p.RDNs[0].Attributes[0].Value
}

// isCredentialError reports whether a bind failed because of the
// credentials (or the account: disabled, expired, locked) rather than the
// server.
func isCredentialError(err error) bool {
	return ldap.IsErrorAnyOf(err, ldap.LDAPResultInvalidCredentials, ldap.LDAPResultInappropriateAuthentication,
		ldap.LDAPResultUnwillingToPerform, ldap.LDAPResultInsufficientAccessRights, ldap.ErrorEmptyPassword)
}

// isNetwork reports whether err means the server could not be reached or
// stopped answering (rather than answering with an error).
func isNetwork(err error) bool {
	var ne net.Error
	if errors.As(err, &ne) {
		return true
	}
	return ldap.IsErrorAnyOf(err, ldap.ErrorNetwork, ldap.LDAPResultBusy, ldap.LDAPResultUnavailable,
		ldap.LDAPResultServerDown, ldap.LDAPResultTimeout, ldap.LDAPResultConnectError)
}

// ldapMessage is an LDAP error's result text and diagnostic message, for the
// log (AD's "data 52e" and the like say why a bind failed).
func ldapMessage(err error) string {
	var le *ldap.Error
	if errors.As(err, &le) && le.Err != nil {
		return ldap.LDAPResultCodeMap[le.ResultCode] + ": " + le.Err.Error()
	}
	return err.Error()
}
