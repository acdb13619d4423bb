// Package auth is who is asking: proxy authentication. It checks the
// Proxy-Authorization header (HTTP Basic, RFC 7617) against an htpasswd file
// of bcrypt entries, a directory over LDAP (Active Directory, OpenLDAP), or
// both — the file's users first, as local break-glass accounts — names the
// user's groups (from the directory and an optional groups file) and
// rate-limits failed attempts per client address and per user name.
//
// A Check reads like this:
//
//	header ──empty──▶ ErrNoCredentials (not a failure: the browser's first try)
//	   │
//	   ├─▶ client over its failure budget? ──▶ ErrRateLimited (before any work)
//	   ├─▶ parse "Basic base64(user:password)" ──bad──▶ ErrBadCredentials, counted
//	   ├─▶ whose account: in the htpasswd file, else the directory's
//	   ├─▶ verification cache (salted hash of the credentials) ──fresh hit──▶ user, groups
//	   ├─▶ user name over its failure budget? ──▶ ErrRateLimited
//	   ├─▶ local: bcrypt compare ──▶ user, groups or ErrBadCredentials, counted
//	   ├─▶ directory (ldap.go): search the user as the service account,
//	   │     account (by DN, however the name was spelt) over its failure
//	   │     budget? ──▶ ErrRateLimited; bind as the user, name the groups
//	   │     ──▶ user, groups
//	   │     or ErrBadCredentials, counted (and the cached entry forgotten)
//	   │     or no server answered ──▶ a verification within the stale TTL
//	   │     (FailCached) ──▶ user, groups; else ErrUnavailable
//	   └─▶ unknown (no directory): bcrypt against a dummy hash ──▶ ErrBadCredentials
//
// bcrypt is slow on purpose (about 50 ms at cost 10), a directory is a
// network round trip or four, and a browser sends credentials with every
// request, so a successful verification is remembered for Config.CacheTTL in
// a bounded LRU keyed by an HMAC-SHA-256, under a random per-process salt, of
// the user, the password and (for local users) the file's entry: changing a
// password in the file invalidates the entry at once, in the directory once
// the TTL has passed; the cache holds no password. Concurrent checks of the
// same new credentials ask the directory once (singleflight).
//
// The directory's servers are asked in failover order; each keeps a small
// pool of connections (TLS from the start with ldaps://, StartTLS with
// ldap://) bound as the service account, and one that cannot be reached is
// left alone for LDAPConfig.RetryInterval, then tried by one request. User
// names enter filters escaped (RFC 4515), so they cannot add filter syntax.
//
// The files are re-read when their modification time or size changes
// (polled every Config.ReloadInterval by a goroutine that Close stops, and
// read once the change has settled for one interval; or on demand with
// Reload); a file that does not load keeps the previous users.
//
// The proxy answers ErrNoCredentials and ErrBadCredentials with 407 Proxy
// Authentication Required and a Proxy-Authenticate header (Challenge),
// ErrRateLimited with 429 Too Many Requests and Retry-After (RateLimitedError)
// without a challenge, so that browsers stop prompting, and ErrUnavailable
// with 503 Service Unavailable, also without a challenge.
package auth
