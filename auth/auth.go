package auth

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/crypto/bcrypt"
	"golang.org/x/sync/singleflight"
)

// Defaults for the zero values of Config.
const (
	DefaultRealm           = "Picket"
	DefaultMaxFailures     = 10
	DefaultMaxUserFailures = 10
	DefaultFailureWindow   = time.Minute
	DefaultReloadInterval  = 5 * time.Second
)

// Bounds of the in-memory tables.
const (
	limiterSize = 16384 // client addresses, and user names, tracked for failures
	cacheSize   = 16384 // verified credentials remembered
)

// Config says where the users are and how strict to be.
type Config struct {
	// Htpasswd is the htpasswd file of bcrypt entries ("htpasswd -B"). Its
	// users are checked first (local break-glass accounts beside a
	// directory); "" means none, and then LDAP is required.
	Htpasswd string
	// Groups is a file of "group: user1 user2" lines, for local and
	// directory users alike; "" means no groups but the directory's.
	Groups string
	// LDAP is the directory that checks the users the htpasswd file does
	// not hold; nil means none.
	LDAP *LDAPConfig
	// Realm is shown by the browser when it asks for credentials; ""
	// means DefaultRealm.
	Realm string
	// MaxFailures is how many failed attempts a client address (an IPv6
	// client's /64) may make in a burst; it earns one back every
	// FailureWindow/MaxFailures. 0 means DefaultMaxFailures.
	MaxFailures int
	// MaxUserFailures is how many failed attempts may be made for one
	// user name (from any address) in a burst, and for one directory
	// account whatever spelling of its name was typed; it earns one back
	// every FailureWindow/MaxUserFailures. 0 means DefaultMaxUserFailures.
	MaxUserFailures int
	// FailureWindow is the period over which MaxFailures attempts are
	// earned back; 0 means DefaultFailureWindow.
	FailureWindow time.Duration
	// CacheTTL is how long a verified user and password skip bcrypt or
	// the directory; 0 verifies every request.
	CacheTTL time.Duration
	// ReloadInterval is how often the files' modification times are
	// checked; 0 means DefaultReloadInterval, negative never (call
	// Reload).
	ReloadInterval time.Duration
}

// ErrNoCredentials is returned when the request carries no
// Proxy-Authorization header. The proxy answers 407 with Challenge.
var ErrNoCredentials = errors.New("auth: no credentials")

// ErrBadCredentials is returned for a malformed header, an unknown user or
// a wrong password, alike. The proxy answers 407 with Challenge. The error's
// text is for the log, not for the client.
var ErrBadCredentials = errors.New("auth: bad credentials")

// ErrRateLimited is returned when the client address, the user name or
// the directory account has failed too often.
// The error is a *RateLimitedError; the proxy answers 429 with its
// Retry-After and no challenge.
var ErrRateLimited = errors.New("auth: too many failed attempts")

// RateLimitedError is ErrRateLimited with how long the client should wait.
type RateLimitedError struct {
	// RetryAfter is how long until the client may try again.
	RetryAfter time.Duration
}

func (e *RateLimitedError) Error() string {
	return fmt.Sprintf("%v, retry after %s", ErrRateLimited, e.RetryAfter.Round(time.Second))
}

// Is makes errors.Is(err, ErrRateLimited) true.
func (e *RateLimitedError) Is(target error) bool { return target == ErrRateLimited }

// RetryAfterSeconds is RetryAfter for the Retry-After header: whole
// seconds, at least 1.
func (e *RateLimitedError) RetryAfterSeconds() int {
	return max(1, int((e.RetryAfter+time.Second-1)/time.Second))
}

// Stats counts what Check has done since New.
type Stats struct {
	// Users is the number of users in the htpasswd file now.
	Users int
	// Successes counts verified requests; CacheHits those of them that
	// skipped bcrypt or the directory; StaleHits those that counted on a
	// verification past CacheTTL because the directory could not be
	// reached (FailCached).
	Successes, CacheHits, StaleHits uint64
	// Failures counts malformed headers, unknown users and wrong passwords.
	Failures uint64
	// RateLimited counts requests refused for too many failures of the
	// client, the user name or the directory account.
	RateLimited uint64
	// DirectoryChecks counts the checks the directory answered (either
	// way); Unavailable the requests refused with ErrUnavailable.
	DirectoryChecks, Unavailable uint64
	// ServersDown is how many directory servers are believed down now.
	ServersDown int
	// Reloads counts loads of the files after New; ReloadErrors those
	// that failed and kept the previous users.
	Reloads, ReloadErrors uint64
}

// Authenticator checks proxy credentials. It is safe for concurrent use.
type Authenticator struct {
	htpasswd, groups string
	challenge        string
	cacheTTL         time.Duration
	staleTTL         time.Duration // FailCached: how long a verification stands in for the directory; 0 never
	log              zerolog.Logger
	now              func() time.Time

	table     atomic.Pointer[table]
	reload    sync.Mutex // one load at a time
	limit     *limiter[netip.Addr]
	userLimit *limiter[key]
	keys      *keyer
	cache     *credCache // nil when nothing is remembered
	dir       *directory // nil without LDAP
	flight    singleflight.Group
	stats     struct {
		successes, cacheHits, staleHits, failures, rateLimited atomic.Uint64
		reloads, reloadErrors, dirChecks, unavailable          atomic.Uint64
	}
	done    chan struct{}
	stopped sync.WaitGroup
	close   sync.Once
}

// New loads the files and, unless cfg.ReloadInterval is negative, starts
// watching them: a change is read once the files have looked the same for
// one interval. A file that does not load is an error naming its lines. The
// directory, if any, is checked for sense but not contacted.
func New(cfg Config, log zerolog.Logger) (*Authenticator, error) {
	return newAuthenticator(cfg, log, time.Now)
}

func newAuthenticator(cfg Config, log zerolog.Logger, now func() time.Time) (*Authenticator, error) {
	if cfg.Htpasswd == "" && cfg.LDAP == nil {
		return nil, errors.New("auth: neither an htpasswd file nor a directory")
	}
	realm := cfg.Realm
	if realm == "" {
		realm = DefaultRealm
	}
	maxFailures := cfg.MaxFailures
	if maxFailures <= 0 {
		maxFailures = DefaultMaxFailures
	}
	maxUserFailures := cfg.MaxUserFailures
	if maxUserFailures <= 0 {
		maxUserFailures = DefaultMaxUserFailures
	}
	window := cfg.FailureWindow
	if window <= 0 {
		window = DefaultFailureWindow
	}
	a := &Authenticator{
		htpasswd:  cfg.Htpasswd,
		groups:    cfg.Groups,
		challenge: `Basic realm=` + quote(realm) + `, charset="UTF-8"`,
		cacheTTL:  cfg.CacheTTL,
		log:       log,
		now:       now,
		limit:     newLimiter[netip.Addr](maxFailures, window, limiterSize),
		userLimit: newLimiter[key](maxUserFailures, window, limiterSize),
		keys:      newKeyer(),
		done:      make(chan struct{}),
	}
	if cfg.LDAP != nil {
		d, err := newDirectory(*cfg.LDAP, log, now, a.userLimit, a.keys)
		if err != nil {
			return nil, err
		}
		a.dir = d
		if d.cfg.Fail == FailCached {
			a.staleTTL = max(d.cfg.StaleTTL, cfg.CacheTTL)
		}
	}
	if a.cacheTTL > 0 || a.staleTTL > 0 {
		a.cache = newCredCache(cacheSize)
	}
	t, err := a.load(nil)
	if err != nil {
		return nil, err
	}
	a.table.Store(t)
	if len(t.users) == 0 && a.dir == nil {
		log.Warn().Str(LogFile, a.htpasswd).Msg("auth: the htpasswd file has no users: nobody can use the proxy")
	}
	interval := cfg.ReloadInterval
	if interval == 0 {
		interval = DefaultReloadInterval
	}
	if interval > 0 {
		a.stopped.Add(1)
		go a.watch(interval)
	}
	return a, nil
}

// quote writes s as an HTTP quoted-string.
func quote(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
}

// Challenge is the Proxy-Authenticate header value sent with 407:
// `Basic realm="Picket", charset="UTF-8"`.
func (a *Authenticator) Challenge() string { return a.challenge }

// Check verifies the Proxy-Authorization header value of a request from
// client. It returns the user and the user's groups (sorted; shared, not to
// be modified), or ErrNoCredentials, ErrBadCredentials (possibly wrapped), a
// *RateLimitedError (errors.Is ErrRateLimited) or, when the directory could
// not tell, an error wrapping ErrUnavailable.
func (a *Authenticator) Check(client netip.Addr, header string) (user string, groups []string, err error) {
	// 1. No credentials: the browser's first try, not a failure.
	if strings.TrimSpace(header) == "" {
		return "", nil, ErrNoCredentials
	}
	now := a.now()
	ck := clientKey(client)
	// 2. A client over its budget is refused before any work, even with
	// the right password: otherwise it could go on guessing.
	if wait := a.limit.wait(ck, now); wait > 0 {
		a.stats.rateLimited.Add(1)
		return "", nil, &RateLimitedError{RetryAfter: wait}
	}
	// 3. Parse.
	user, password, err := ParseBasic(header)
	if err != nil {
		a.failed(ck, nil, now)
		return "", nil, fmt.Errorf("%w: %v", ErrBadCredentials, err)
	}
	// 4. Whose account: a local one (htpasswd) first, then the directory.
	t := a.table.Load()
	hash, local := t.users[user]
	var k key
	switch {
	case local:
		k = a.keys.credentials(keyLocal, user, password, hash)
	case a.dir != nil:
		k = a.keys.credentials(keyDirectory, user, password, nil)
	}
	// 5. Remembered verification.
	if local || a.dir != nil {
		if v, ok := a.cache.get(k); ok && now.Before(v.fresh) && (local || !t.shadows(v.user)) {
			a.stats.successes.Add(1)
			a.stats.cacheHits.Add(1)
			return a.result(t, user, v)
		}
	}
	// 6. A user name over its budget is refused before bcrypt or the
	// directory (which may lock the account out after a few failures of
	// its own). A password verified recently got through at step 5.
	uk := a.keys.user(user)
	if wait := a.userLimit.wait(uk, now); wait > 0 {
		a.stats.rateLimited.Add(1)
		return "", nil, &RateLimitedError{RetryAfter: wait}
	}
	// 7. Verify.
	switch {
	case local:
		return a.checkLocal(t, ck, uk, k, user, password, hash, now)
	case a.dir != nil:
		return a.checkDirectory(t, ck, uk, k, user, password, now)
	}
	// An unknown user costs a bcrypt compare against a dummy hash of the
	// same cost, so that timing does not tell which users exist.
	_ = bcrypt.CompareHashAndPassword(t.dummy, []byte(password))
	a.failed(ck, &uk, now)
	return "", nil, ErrBadCredentials
}

// checkLocal verifies a password against the user's htpasswd entry. bcrypt
// compares in constant time.
func (a *Authenticator) checkLocal(t *table, ck netip.Addr, uk, k key, user, password string, hash []byte, now time.Time) (string, []string, error) {
	if bcrypt.CompareHashAndPassword(hash, []byte(password)) != nil {
		a.failed(ck, &uk, now)
		return "", nil, ErrBadCredentials
	}
	v := &verified{user: user, fresh: now.Add(a.cacheTTL)}
	if a.cacheTTL > 0 {
		a.cache.add(k, v)
	}
	a.stats.successes.Add(1)
	return a.result(t, user, v)
}

// checkDirectory asks the directory. Concurrent checks of the same
// credentials (a browser opening several connections at once) share one
// question, and one that finds the answer remembered meanwhile asks none.
func (a *Authenticator) checkDirectory(t *table, ck netip.Addr, uk, k key, user, password string, now time.Time) (string, []string, error) {
	r, err, _ := a.flight.Do(string(k[:]), func() (any, error) {
		if v, ok := a.cache.get(k); ok && a.now().Before(v.fresh) && !t.shadows(v.user) {
			return v, nil
		}
		ctx, cancel := context.WithTimeout(context.Background(), a.dir.budget())
		defer cancel()
		id, err := a.dir.authenticate(ctx, user, password)
		switch {
		case err == nil && t.shadows(id.user):
			// The directory found its account under another spelling of
			// a local account's name ("ALICE", "alice "): the name is the
			// local account's, whose password this is not.
			a.stats.dirChecks.Add(1)
			return nil, fmt.Errorf("%w: %q is a local account's name", ErrBadCredentials, id.user)
		case err == nil:
			a.stats.dirChecks.Add(1)
			v := &verified{user: id.user, groups: id.groups, fresh: now.Add(a.cacheTTL), stale: now.Add(a.staleTTL)}
			a.cache.add(k, v)
			return v, nil
		case errors.Is(err, ErrBadCredentials):
			a.stats.dirChecks.Add(1)
			a.cache.remove(k) // the password changed, or the account went
		}
		return nil, err
	})
	var rl *RateLimitedError
	switch {
	case err == nil:
		a.stats.successes.Add(1)
		return a.result(t, user, r.(*verified))
	case errors.As(err, &rl): // the account, under another spelling of its name
		a.stats.rateLimited.Add(1)
		return "", nil, rl
	case errors.Is(err, ErrBadCredentials):
		a.failed(ck, &uk, now)
		a.log.Debug().Str(LogUser, user).Str(LogError, err.Error()).Msg("auth: the directory refused the credentials")
		return "", nil, ErrBadCredentials
	}
	// The directory could not tell: a recent verification may stand in.
	if v, ok := a.cache.get(k); ok && a.staleTTL > 0 && now.Before(v.stale) && !t.shadows(v.user) {
		a.stats.successes.Add(1)
		a.stats.staleHits.Add(1)
		return a.result(t, user, v)
	}
	a.stats.unavailable.Add(1)
	return "", nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
}

// shadows reports whether user, as the directory names an account, is a
// local account's name: a local account is final for its name, however the
// directory would spell it.
func (t *table) shadows(user string) bool {
	_, ok := t.users[user]
	return ok
}

// result is the user and groups of a verification: the directory's groups
// and those the groups file gives the user.
func (a *Authenticator) result(t *table, typed string, v *verified) (string, []string, error) {
	user := v.user
	if user == "" {
		user = typed
	}
	local := t.groups[user]
	switch {
	case len(v.groups) == 0:
		return user, local, nil
	case len(local) == 0:
		return user, v.groups, nil
	}
	merged := slices.Concat(v.groups, local)
	slices.Sort(merged)
	return user, slices.Compact(merged), nil
}

// failed counts a failed attempt against the client and, when known, the
// user name.
func (a *Authenticator) failed(ck netip.Addr, uk *key, now time.Time) {
	a.stats.failures.Add(1)
	a.limit.fail(ck, now)
	if uk != nil {
		a.userLimit.fail(*uk, now)
	}
}

// Reload re-reads the files if either changed on disk since the last load.
// On error the previous users stay in force.
func (a *Authenticator) Reload() error {
	a.reload.Lock()
	defer a.reload.Unlock()
	old := a.table.Load()
	t, err := a.load(old)
	switch {
	case err != nil:
		a.stats.reloadErrors.Add(1)
		return err
	case t == old:
		return nil
	}
	a.table.Store(t)
	a.stats.reloads.Add(1)
	a.log.Info().Str(LogFile, a.htpasswd).Int(LogUsers, len(t.users)).Msg("auth: reloaded the users")
	return nil
}

// load reads the files into a new table, or returns old when neither file
// changed since old was loaded.
func (a *Authenticator) load(old *table) (*table, error) {
	var stamps [2]stamp
	var err error
	for i, path := range []string{a.htpasswd, a.groups} {
		if stamps[i], err = statFile(path); err != nil {
			return nil, fmt.Errorf("auth: %w", err)
		}
	}
	if old != nil && sameStamps(stamps, old.stamps) {
		return old, nil
	}
	t := &table{stamps: stamps, users: map[string][]byte{}}
	if a.htpasswd != "" {
		if t.users, err = readFile(a.htpasswd, parseHtpasswd); err != nil {
			return nil, err
		}
	}
	if a.groups != "" {
		if t.groups, err = readFile(a.groups, parseGroups); err != nil {
			return nil, err
		}
	}
	// The dummy hash costs what the dearest real entry costs.
	t.cost = bcrypt.MinCost
	for _, h := range t.users {
		if c, _ := bcrypt.Cost(h); c > t.cost {
			t.cost = c
		}
	}
	if old != nil && old.cost == t.cost {
		t.dummy = old.dummy
	} else {
		secret := make([]byte, 32)
		_, _ = rand.Read(secret)
		if t.dummy, err = bcrypt.GenerateFromPassword(secret, t.cost); err != nil {
			return nil, fmt.Errorf("auth: %w", err)
		}
	}
	return t, nil
}

// watch reloads the files until Close, once a change has settled: when the
// files have looked the same for a whole interval, so that a file being
// written is not read half-way.
func (a *Authenticator) watch(interval time.Duration) {
	defer a.stopped.Done()
	tick := time.NewTicker(interval)
	defer tick.Stop()
	var pending [2]stamp
	havePending, failing := false, false
	for {
		select {
		case <-a.done:
			return
		case <-tick.C:
		}
		var now [2]stamp
		for i, path := range []string{a.htpasswd, a.groups} {
			now[i], _ = statFile(path) // a missing file is reported by Reload
		}
		switch {
		case sameStamps(now, a.table.Load().stamps):
			havePending = false
			continue
		case !havePending || !sameStamps(now, pending):
			pending, havePending = now, true
			continue
		}
		havePending = false
		err := a.Reload()
		if err != nil && !failing {
			a.log.Error().Str(LogFile, a.htpasswd).Str(LogError, err.Error()).Msg("auth: cannot reload the users, keeping the previous ones")
		}
		failing = err != nil
	}
}

// Stats returns the counters.
func (a *Authenticator) Stats() Stats {
	s := Stats{
		Users:           len(a.table.Load().users),
		Successes:       a.stats.successes.Load(),
		CacheHits:       a.stats.cacheHits.Load(),
		StaleHits:       a.stats.staleHits.Load(),
		Failures:        a.stats.failures.Load(),
		RateLimited:     a.stats.rateLimited.Load(),
		DirectoryChecks: a.stats.dirChecks.Load(),
		Unavailable:     a.stats.unavailable.Load(),
		Reloads:         a.stats.reloads.Load(),
		ReloadErrors:    a.stats.reloadErrors.Load(),
	}
	if a.dir != nil {
		for _, srv := range a.dir.servers {
			if srv.isDown() {
				s.ServersDown++
			}
		}
	}
	return s
}

// Close stops watching the files and closes the idle directory
// connections. It is idempotent; Check keeps working with the users last
// loaded (and opens directory connections it closes after use).
func (a *Authenticator) Close() error {
	a.close.Do(func() {
		close(a.done)
		if a.dir != nil {
			a.dir.close()
		}
	})
	a.stopped.Wait()
	return nil
}
