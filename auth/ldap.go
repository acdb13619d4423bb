package auth

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/go-ldap/ldap/v3"
	"github.com/rs/zerolog"
)

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
	// accounts counts failed binds per account (its DN), whatever name
	// was typed: the directory finds one account under many spellings
	// (case, spaces, full-width letters, the userPrincipalName).
	accounts *limiter[key]
	keys     *keyer

	pwMu     sync.Mutex
	password string // the service account's, as last read
}

// newDirectory checks cfg (defaults applied) and reads the CA file and the
// service password. It connects to nothing: servers are dialled on demand.
// Failed binds are counted in accounts under keys' account keys.
func newDirectory(cfg LDAPConfig, log zerolog.Logger, now func() time.Time, accounts *limiter[key], keys *keyer) (*directory, error) {
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
	d := &directory{cfg: cfg, log: log, now: now, accounts: accounts, keys: keys}
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
// a *RateLimitedError for an account that failed too often, and any other
// error when no server could tell.
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
		case err == nil, errors.Is(err, ErrBadCredentials), errors.Is(err, ErrRateLimited):
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
	// 2. The password: a bind as the user, unless the account is over its
	// failure budget. The budget is the account's, not the typed name's,
	// which another spelling of the same name would start afresh.
	account := d.keys.account(entry.DN)
	if wait := d.accounts.wait(account, d.now()); wait > 0 {
		return identity{}, &RateLimitedError{RetryAfter: wait}
	}
	c.bound = boundOther
	if err := c.l.Bind(entry.DN, password); err != nil {
		if isCredentialError(err) {
			d.accounts.fail(account, d.now())
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
