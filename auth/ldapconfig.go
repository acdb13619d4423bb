package auth

import (
	"fmt"
	"net"
	"net/url"
	"strings"
	"time"

	"github.com/go-ldap/ldap/v3"
)

// The LDAP directory's settings (ldap.go): where groups come from, how
// nested groups are followed, what happens when no server answers, and
// the checks of filters and server URLs that config uses too.

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
