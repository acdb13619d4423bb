// Package auth is who is asking: proxy authentication. It checks the
// Proxy-Authorization header (HTTP Basic, RFC 7617) against an htpasswd file
// of bcrypt entries, names the user's groups from an optional groups file and
// rate-limits failed attempts per client address.
//
// A Check reads like this:
//
//	header ──empty──▶ ErrNoCredentials (not a failure: the browser's first try)
//	   │
//	   ├─▶ client over its failure budget? ──▶ ErrRateLimited (before any bcrypt)
//	   ├─▶ parse "Basic base64(user:password)" ──bad──▶ ErrBadCredentials, counted
//	   ├─▶ verification cache (SHA-256 of user, password, entry) ──hit──▶ user, groups
//	   └─▶ bcrypt compare (a dummy one for unknown users) ──▶ user, groups
//	                                                     or ErrBadCredentials, counted
//
// bcrypt is slow on purpose (about 50 ms at cost 10) and a browser sends
// credentials with every request, so a successful verification is
// remembered for Config.CacheTTL in a bounded LRU keyed by a SHA-256 of the
// user, the password and the file's entry: changing a password in the file
// invalidates the entry, and the cache holds no password.
//
// The files are re-read when their modification time or size changes
// (polled every Config.ReloadInterval by a goroutine that Close stops, and
// read once the change has settled for one interval; or on demand with
// Reload); a file that does not load keeps the previous users.
//
// The proxy answers ErrNoCredentials and ErrBadCredentials with 407 Proxy
// Authentication Required and a Proxy-Authenticate header (Challenge), and
// ErrRateLimited with 429 Too Many Requests and Retry-After (RateLimitedError)
// without a challenge, so that browsers stop prompting.
package auth
