package auth

import (
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/rs/zerolog"
	"golang.org/x/crypto/bcrypt"
)

// Defaults for the zero values of Config.
const (
	DefaultRealm          = "Picket"
	DefaultMaxFailures    = 10
	DefaultFailureWindow  = time.Minute
	DefaultReloadInterval = 5 * time.Second
)

// Bounds of the in-memory tables.
const (
	limiterSize = 16384 // client addresses tracked for failures
	cacheSize   = 4096  // verified credentials remembered
)

// Config says where the users are and how strict to be.
type Config struct {
	// Htpasswd is the htpasswd file of bcrypt entries ("htpasswd -B");
	// required.
	Htpasswd string
	// Groups is a file of "group: user1 user2" lines; "" means no user
	// is in any group.
	Groups string
	// Realm is shown by the browser when it asks for credentials; ""
	// means DefaultRealm.
	Realm string
	// MaxFailures is how many failed attempts a client address (an IPv6
	// client's /64) may make in a burst; it earns one back every
	// FailureWindow/MaxFailures. 0 means DefaultMaxFailures.
	MaxFailures int
	// FailureWindow is the period over which MaxFailures attempts are
	// earned back; 0 means DefaultFailureWindow.
	FailureWindow time.Duration
	// CacheTTL is how long a verified user and password skip bcrypt; 0
	// verifies every request with bcrypt.
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

// ErrRateLimited is returned when the client address has failed too often.
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
	// skipped bcrypt.
	Successes, CacheHits uint64
	// Failures counts malformed headers, unknown users and wrong passwords.
	Failures uint64
	// RateLimited counts requests refused for too many failures.
	RateLimited uint64
	// Reloads counts loads of the files after New; ReloadErrors those
	// that failed and kept the previous users.
	Reloads, ReloadErrors uint64
}

// Authenticator checks proxy credentials. It is safe for concurrent use.
type Authenticator struct {
	htpasswd, groups string
	challenge        string
	cacheTTL         time.Duration
	log              zerolog.Logger
	now              func() time.Time

	table   atomic.Pointer[table]
	reload  sync.Mutex // one load at a time
	limit   *limiter
	cache   *lru.Cache[[sha256.Size]byte, time.Time] // nil without CacheTTL
	stats   struct{ successes, cacheHits, failures, rateLimited, reloads, reloadErrors atomic.Uint64 }
	done    chan struct{}
	stopped sync.WaitGroup
	close   sync.Once
}

// New loads the files and, unless cfg.ReloadInterval is negative, starts
// watching them: a change is read once the files have looked the same for
// one interval. A file that does not load is an error naming its lines.
func New(cfg Config, log zerolog.Logger) (*Authenticator, error) {
	return newAuthenticator(cfg, log, time.Now)
}

func newAuthenticator(cfg Config, log zerolog.Logger, now func() time.Time) (*Authenticator, error) {
	if cfg.Htpasswd == "" {
		return nil, errors.New("auth: no htpasswd file")
	}
	realm := cfg.Realm
	if realm == "" {
		realm = DefaultRealm
	}
	maxFailures := cfg.MaxFailures
	if maxFailures <= 0 {
		maxFailures = DefaultMaxFailures
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
		limit:     newLimiter(maxFailures, window, limiterSize),
		done:      make(chan struct{}),
	}
	if cfg.CacheTTL > 0 {
		a.cache, _ = lru.New[[sha256.Size]byte, time.Time](cacheSize)
	}
	t, err := a.load(nil)
	if err != nil {
		return nil, err
	}
	a.table.Store(t)
	if len(t.users) == 0 {
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
// be modified), or ErrNoCredentials, ErrBadCredentials (possibly wrapped) or
// a *RateLimitedError (errors.Is ErrRateLimited).
func (a *Authenticator) Check(client netip.Addr, header string) (user string, groups []string, err error) {
	// 1. No credentials: the browser's first try, not a failure.
	if strings.TrimSpace(header) == "" {
		return "", nil, ErrNoCredentials
	}
	now := a.now()
	key := clientKey(client)
	// 2. A client over its budget is refused before any work, even with
	// the right password: otherwise it could go on guessing.
	if wait := a.limit.wait(key, now); wait > 0 {
		a.stats.rateLimited.Add(1)
		return "", nil, &RateLimitedError{RetryAfter: wait}
	}
	// 3. Parse.
	user, password, err := ParseBasic(header)
	if err != nil {
		a.failed(key, now)
		return "", nil, fmt.Errorf("%w: %v", ErrBadCredentials, err)
	}
	t := a.table.Load()
	hash, known := t.users[user]
	// 4. Remembered verification.
	var ck [sha256.Size]byte
	if known && a.cache != nil {
		ck = cacheKey(user, password, hash)
		if until, ok := a.cache.Get(ck); ok && now.Before(until) {
			a.stats.successes.Add(1)
			a.stats.cacheHits.Add(1)
			return user, t.groups[user], nil
		}
	}
	// 5. bcrypt, against a dummy hash of the same cost for unknown users
	// so that timing does not tell which users exist. bcrypt compares in
	// constant time.
	if !known {
		_ = bcrypt.CompareHashAndPassword(t.dummy, []byte(password))
		a.failed(key, now)
		return "", nil, ErrBadCredentials
	}
	if bcrypt.CompareHashAndPassword(hash, []byte(password)) != nil {
		a.failed(key, now)
		return "", nil, ErrBadCredentials
	}
	if a.cache != nil {
		a.cache.Add(ck, now.Add(a.cacheTTL))
	}
	a.stats.successes.Add(1)
	return user, t.groups[user], nil
}

func (a *Authenticator) failed(key netip.Addr, now time.Time) {
	a.stats.failures.Add(1)
	a.limit.fail(key, now)
}

// cacheKey is SHA-256 of the user, the password and the user's entry, with
// lengths so that no two triples collide by concatenation.
func cacheKey(user, password string, hash []byte) [sha256.Size]byte {
	h := sha256.New()
	for _, s := range [][]byte{[]byte(user), []byte(password), hash} {
		var n [4]byte
		n[0], n[1], n[2], n[3] = byte(len(s)>>24), byte(len(s)>>16), byte(len(s)>>8), byte(len(s))
		h.Write(n[:])
		h.Write(s)
	}
	var k [sha256.Size]byte
	h.Sum(k[:0])
	return k
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
	data, err := os.ReadFile(a.htpasswd)
	if err != nil {
		return nil, fmt.Errorf("auth: %w", err)
	}
	t := &table{stamps: stamps}
	if t.users, err = parseHtpasswd(a.htpasswd, data); err != nil {
		return nil, fmt.Errorf("auth: %w", err)
	}
	if a.groups != "" {
		data, err := os.ReadFile(a.groups)
		if err != nil {
			return nil, fmt.Errorf("auth: %w", err)
		}
		if t.groups, err = parseGroups(a.groups, data); err != nil {
			return nil, fmt.Errorf("auth: %w", err)
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
	return Stats{
		Users:        len(a.table.Load().users),
		Successes:    a.stats.successes.Load(),
		CacheHits:    a.stats.cacheHits.Load(),
		Failures:     a.stats.failures.Load(),
		RateLimited:  a.stats.rateLimited.Load(),
		Reloads:      a.stats.reloads.Load(),
		ReloadErrors: a.stats.reloadErrors.Load(),
	}
}

// Close stops watching the files. It is idempotent; Check keeps working
// with the users last loaded.
func (a *Authenticator) Close() error {
	a.close.Do(func() { close(a.done) })
	a.stopped.Wait()
	return nil
}
