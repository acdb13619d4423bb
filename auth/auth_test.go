package auth

import (
	"encoding/base64"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/crypto/bcrypt"

	"github.com/picket-proxy/picket/internal/testutil"
)

// newClock is the tests' clock, stopped at a fixed time.
func newClock() *testutil.Clock {
	return testutil.NewClock(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC))
}

// entry is an htpasswd line for user and password at bcrypt's minimum cost.
func entry(t testing.TB, user, password string) string {
	t.Helper()
	return entryCost(t, user, password, bcrypt.MinCost)
}

func entryCost(t testing.TB, user, password string, cost int) string {
	t.Helper()
	h, err := bcrypt.GenerateFromPassword([]byte(password), cost)
	if err != nil {
		t.Fatal(err)
	}
	return user + ":" + string(h)
}

// writeFile writes lines to path and moves its modification time forward,
// so that a reload sees a change even within the file system's granularity.
func writeFile(t testing.TB, path string, lines ...string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	stampFile(t, path)
}

var stampSeq = time.Now()

func stampFile(t testing.TB, path string) {
	t.Helper()
	stampSeq = stampSeq.Add(time.Second)
	if err := os.Chtimes(path, stampSeq, stampSeq); err != nil {
		t.Fatal(err)
	}
}

func basic(user, password string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+password))
}

var (
	alice = netip.MustParseAddr("192.0.2.10")
	bob   = netip.MustParseAddr("192.0.2.11")
)

type fixture struct {
	a        *Authenticator
	clock    *testutil.Clock
	htpasswd string
	groups   string
}

func newFixture(t *testing.T, cfg Config) *fixture {
	t.Helper()
	dir := t.TempDir()
	f := &fixture{clock: newClock(), htpasswd: filepath.Join(dir, "htpasswd"), groups: filepath.Join(dir, "groups")}
	y := entry(t, "yves", "s3cret")
	writeFile(t, f.htpasswd,
		"# users of the proxy",
		entry(t, "alice", "correct horse"),
		"",
		entry(t, "bob", "pa:ss:word"),
		strings.Replace(y, "$2a$", "$2y$", 1), // what "htpasswd -B" writes
		entry(t, "émile", "mot de passe"),
	)
	writeFile(t, f.groups, "staff: alice bob", "admins: alice", "# comment", "staff: émile")
	cfg.Htpasswd, cfg.Groups = f.htpasswd, f.groups
	if cfg.ReloadInterval == 0 {
		cfg.ReloadInterval = -1
	}
	a, err := newAuthenticator(cfg, zerolog.Nop(), f.clock.Now)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	f.a = a
	return f
}

func TestCheck(t *testing.T) {
	f := newFixture(t, Config{MaxFailures: 1000})
	tests := []struct {
		name   string
		header string
		user   string
		groups []string
		err    error
	}{
		{"right password", basic("alice", "correct horse"), "alice", []string{"admins", "staff"}, nil},
		{"scheme in lower case", "basic " + base64.StdEncoding.EncodeToString([]byte("alice:correct horse")), "alice", []string{"admins", "staff"}, nil},
		{"scheme in upper case, extra spaces", "  BASIC   " + base64.StdEncoding.EncodeToString([]byte("alice:correct horse")) + " ", "alice", []string{"admins", "staff"}, nil},
		{"password with colons", basic("bob", "pa:ss:word"), "bob", []string{"staff"}, nil},
		{"$2y$ entry", basic("yves", "s3cret"), "yves", nil, nil},
		{"UTF-8 user", basic("émile", "mot de passe"), "émile", []string{"staff"}, nil},
		{"no padding", "Basic " + base64.RawStdEncoding.EncodeToString([]byte("alice:correct horse")), "alice", []string{"admins", "staff"}, nil},
		{"wrong password", basic("alice", "Correct horse"), "", nil, ErrBadCredentials},
		{"empty password", basic("alice", ""), "", nil, ErrBadCredentials},
		{"unknown user", basic("mallory", "correct horse"), "", nil, ErrBadCredentials},
		{"user in another case", basic("Alice", "correct horse"), "", nil, ErrBadCredentials},
		{"no header", "", "", nil, ErrNoCredentials},
		{"blank header", "   ", "", nil, ErrNoCredentials},
		{"other scheme", "Bearer abc", "", nil, ErrBadCredentials},
		{"scheme only", "Basic", "", nil, ErrBadCredentials},
		{"not base64", "Basic !!!", "", nil, ErrBadCredentials},
		{"no colon", "Basic " + base64.StdEncoding.EncodeToString([]byte("alice")), "", nil, ErrBadCredentials},
		{"empty user", basic("", "correct horse"), "", nil, ErrBadCredentials},
		{"control character", basic("alice\n", "correct horse"), "", nil, ErrBadCredentials},
		{"huge header", "Basic " + strings.Repeat("A", 8192), "", nil, ErrBadCredentials},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			user, groups, err := f.a.Check(alice, tt.header)
			if !errors.Is(err, tt.err) || (tt.err == nil && err != nil) {
				t.Fatalf("got error %v, want %v", err, tt.err)
			}
			if user != tt.user || !slices.Equal(groups, tt.groups) {
				t.Errorf("got %q %q, want %q %q", user, groups, tt.user, tt.groups)
			}
		})
	}
	if got := f.a.Challenge(); got != `Basic realm="Picket", charset="UTF-8"` {
		t.Errorf("got challenge %q, want the default realm", got)
	}
}

func TestLoadRefuses(t *testing.T) {
	good := entry(t, "alice", "x")
	tests := []struct {
		name, line, want string
	}{
		{"SHA-1", "bob:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=", "{SHA}"},
		{"apr1", "bob:$apr1$7yH3uNZ2$S9cNmwRXHd0IbHiaOxAV3/", "apr1"},
		{"crypt", "bob:rqXexS6ZhobKA", "crypt"},
		{"MD5 crypt", "bob:$1$abc$def", "$1$"},
		{"SHA-512 crypt", "bob:$6$salt$hash", "$6$"},
		{"plain text", "bob:password", "plain-text"},
		{"broken bcrypt", "bob:$2y$10$short", "invalid bcrypt"},
		{"no colon", "bob", "user:hash"},
		{"empty user", ":" + strings.SplitN(good, ":", 2)[1], "invalid user"},
		{"duplicate", good, "twice"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "htpasswd")
			writeFile(t, path, good, "# next", tt.line)
			_, err := New(Config{Htpasswd: path, ReloadInterval: -1}, zerolog.Nop())
			var fe *FileError
			if !errors.As(err, &fe) {
				t.Fatalf("got %v, want a *FileError", err)
			}
			if fe.File != path || fe.Line != 3 || !strings.Contains(fe.Msg, tt.want) {
				t.Errorf("got %v, want %s:3: ...%s...", err, path, tt.want)
			}
		})
	}
	t.Run("groups", func(t *testing.T) {
		dir := t.TempDir()
		writeFile(t, filepath.Join(dir, "htpasswd"), good)
		writeFile(t, filepath.Join(dir, "groups"), "staff: alice", "no colon here")
		_, err := New(Config{Htpasswd: filepath.Join(dir, "htpasswd"), Groups: filepath.Join(dir, "groups"), ReloadInterval: -1}, zerolog.Nop())
		var fe *FileError
		if !errors.As(err, &fe) || fe.Line != 2 {
			t.Errorf("got %v, want groups:2", err)
		}
	})
	t.Run("missing file", func(t *testing.T) {
		if _, err := New(Config{Htpasswd: filepath.Join(t.TempDir(), "none"), ReloadInterval: -1}, zerolog.Nop()); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("got %v, want a not-exist error", err)
		}
	})
	t.Run("no file", func(t *testing.T) {
		if _, err := New(Config{}, zerolog.Nop()); err == nil {
			t.Errorf("got no error, want one")
		}
	})
}

func TestReload(t *testing.T) {
	f := newFixture(t, Config{MaxFailures: 1000, CacheTTL: time.Minute})
	if _, _, err := f.a.Check(alice, basic("alice", "correct horse")); err != nil {
		t.Fatal(err)
	}
	// Nothing changed: the same table.
	before := f.a.table.Load()
	if err := f.a.Reload(); err != nil || f.a.table.Load() != before {
		t.Fatalf("got %v and a new table, want no reload", err)
	}

	writeFile(t, f.htpasswd, entry(t, "alice", "new password"), entry(t, "carol", "c"))
	writeFile(t, f.groups, "staff: carol")
	if err := f.a.Reload(); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, user, password string
		groups               []string
		err                  error
	}{
		{"old password, even cached", "alice", "correct horse", nil, ErrBadCredentials},
		{"new password", "alice", "new password", nil, nil},
		{"new user, new groups", "carol", "c", []string{"staff"}, nil},
		{"removed user", "bob", "pa:ss:word", nil, ErrBadCredentials},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, groups, err := f.a.Check(alice, basic(tt.user, tt.password))
			if !errors.Is(err, tt.err) || (tt.err == nil && err != nil) || !slices.Equal(groups, tt.groups) {
				t.Errorf("got %q, %v, want %q, %v", groups, err, tt.groups, tt.err)
			}
		})
	}

	// A broken file keeps the users in force.
	writeFile(t, f.htpasswd, entry(t, "alice", "x"), "dave:{SHA}abc")
	if err := f.a.Reload(); err == nil || !strings.Contains(err.Error(), f.htpasswd+":2") {
		t.Errorf("got %v, want an error naming %s:2", err, f.htpasswd)
	}
	if _, _, err := f.a.Check(alice, basic("carol", "c")); err != nil {
		t.Errorf("got %v after a failed reload, want the previous users", err)
	}
	if s := f.a.Stats(); s.Reloads != 1 || s.ReloadErrors != 1 || s.Users != 2 {
		t.Errorf("got %+v, want 1 reload, 1 reload error, 2 users", s)
	}
}

// TestWatch lets the watcher pick up a change on its own.
func TestWatch(t *testing.T) {
	f := newFixture(t, Config{ReloadInterval: 5 * time.Millisecond, MaxFailures: 10000})
	// Replace the file as careful tools do: write a copy, rename it over.
	tmp := f.htpasswd + ".tmp"
	writeFile(t, tmp, entry(t, "zoe", "z"))
	if err := os.Rename(tmp, f.htpasswd); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		user, _, err := f.a.Check(alice, basic("zoe", "z"))
		if err == nil && user == "zoe" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("got %q, %v after 10s, want zoe", user, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if s := f.a.Stats(); s.Reloads != 1 {
		t.Errorf("got %d reloads, want 1", s.Reloads)
	}
	f.a.Close()
	f.a.Close() // idempotent
}

func TestRateLimit(t *testing.T) {
	f := newFixture(t, Config{MaxFailures: 3, FailureWindow: 30 * time.Second})
	right, wrong := basic("alice", "correct horse"), basic("alice", "guess")
	check := func(client netip.Addr, header string, want error) *RateLimitedError {
		t.Helper()
		_, _, err := f.a.Check(client, header)
		if !errors.Is(err, want) || (want == nil && err != nil) {
			t.Fatalf("got %v, want %v", err, want)
		}
		var rl *RateLimitedError
		errors.As(err, &rl)
		return rl
	}
	// Requests without credentials are not failures.
	for range 10 {
		check(alice, "", ErrNoCredentials)
	}
	for range 3 {
		check(alice, wrong, ErrBadCredentials)
	}
	// Over the budget: refused even with the right password.
	rl := check(alice, right, ErrRateLimited)
	if !near(rl.RetryAfter, 10*time.Second) || rl.RetryAfterSeconds() != 10 {
		t.Errorf("got retry after %s (%d s), want 10s", rl.RetryAfter, rl.RetryAfterSeconds())
	}
	check(alice, "Basic garbage", ErrRateLimited)
	// Other clients are not affected.
	check(bob, right, nil)
	// One attempt is earned back every 10 s.
	f.clock.Add(4 * time.Second)
	if rl := check(alice, right, ErrRateLimited); !near(rl.RetryAfter, 6*time.Second) {
		t.Errorf("got retry after %s, want 6s", rl.RetryAfter)
	}
	f.clock.Add(6 * time.Second)
	check(alice, wrong, ErrBadCredentials)
	check(alice, right, ErrRateLimited)
	f.clock.Add(10 * time.Second)
	check(alice, right, nil)
	// A whole window restores the whole budget.
	f.clock.Add(time.Hour)
	for range 3 {
		check(alice, wrong, ErrBadCredentials)
	}
	check(alice, right, ErrRateLimited)

	// An IPv6 client is counted by its /64.
	a1, a2 := netip.MustParseAddr("2001:db8:1:2::1"), netip.MustParseAddr("2001:db8:1:2:ffff::9")
	other := netip.MustParseAddr("2001:db8:1:3::1")
	for range 3 {
		check(a1, wrong, ErrBadCredentials)
	}
	check(a2, right, ErrRateLimited)
	check(other, right, nil)
	// An IPv4-mapped address is the IPv4 client.
	check(netip.MustParseAddr("::ffff:192.0.2.10"), right, ErrRateLimited)

	if s := f.a.Stats(); s.RateLimited != 7 || s.Failures != 10 {
		t.Errorf("got %+v, want 7 rate limited, 10 failures", s)
	}
}

func near(got, want time.Duration) bool {
	return got > want-time.Millisecond && got < want+time.Millisecond
}

func TestCache(t *testing.T) {
	f := newFixture(t, Config{CacheTTL: time.Minute})
	right := basic("alice", "correct horse")
	hits := func() uint64 { return f.a.Stats().CacheHits }
	for i, want := range []uint64{0, 1, 2} {
		if _, _, err := f.a.Check(alice, right); err != nil {
			t.Fatal(err)
		}
		if hits() != want {
			t.Errorf("check %d: got %d cache hits, want %d", i, hits(), want)
		}
	}
	// A wrong password is never a hit.
	if _, _, err := f.a.Check(alice, basic("alice", "correct horse ")); !errors.Is(err, ErrBadCredentials) {
		t.Errorf("got %v, want ErrBadCredentials", err)
	}
	// Expired: bcrypt again, then remembered again.
	f.clock.Add(61 * time.Second)
	f.a.Check(alice, right)
	f.a.Check(alice, right)
	if hits() != 3 {
		t.Errorf("got %d cache hits, want 3", hits())
	}

	// Without a TTL nothing is remembered.
	g := newFixture(t, Config{})
	g.a.Check(alice, right)
	g.a.Check(alice, right)
	if s := g.a.Stats(); s.CacheHits != 0 || s.Successes != 2 {
		t.Errorf("got %+v, want 2 successes, no cache hits", s)
	}
}

// TestDummyCost checks unknown users pay for a bcrypt compare as dear as the
// dearest real entry.
func TestDummyCost(t *testing.T) {
	path := filepath.Join(t.TempDir(), "htpasswd")
	writeFile(t, path, entry(t, "a", "x"), entryCost(t, "b", "y", bcrypt.MinCost+1))
	a, err := New(Config{Htpasswd: path, ReloadInterval: -1}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if c, err := bcrypt.Cost(a.table.Load().dummy); err != nil || c != bcrypt.MinCost+1 {
		t.Errorf("got dummy cost %d, %v, want %d", c, err, bcrypt.MinCost+1)
	}
}

func TestRealm(t *testing.T) {
	path := filepath.Join(t.TempDir(), "htpasswd")
	writeFile(t, path, entry(t, "a", "x"))
	a, err := New(Config{Htpasswd: path, Realm: `Corp "proxy"`, ReloadInterval: -1}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if got, want := a.Challenge(), `Basic realm="Corp \"proxy\"", charset="UTF-8"`; got != want {
		t.Errorf("got %s, want %s", got, want)
	}
}

func TestConcurrentCheck(t *testing.T) {
	f := newFixture(t, Config{CacheTTL: time.Minute, ReloadInterval: time.Millisecond})
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			for j := range 20 {
				if _, _, err := f.a.Check(alice, basic("alice", "correct horse")); err != nil {
					t.Error(err)
				}
				if i == 0 && j%5 == 0 {
					later := time.Now().Add(time.Duration(j+1) * time.Hour)
					if err := os.Chtimes(f.groups, later, later); err != nil {
						t.Error(err)
					}
				}
			}
		})
	}
	wg.Wait()
}

func FuzzParseBasic(f *testing.F) {
	f.Add(basic("alice", "pw"))
	f.Add("basic YWxpY2U6")
	f.Add("Basic Og==")
	f.Add("Digest x")
	f.Fuzz(func(t *testing.T, header string) {
		user, password, err := ParseBasic(header)
		if err != nil {
			return
		}
		if user == "" || strings.Contains(user, ":") || strings.ContainsFunc(user+password, isCTL) {
			t.Errorf("got user %q password %q from %q", user, password, header)
		}
	})
}

func BenchmarkCheckCached(b *testing.B) {
	path := filepath.Join(b.TempDir(), "htpasswd")
	writeFile(b, path, entryCost(b, "alice", "pw", bcrypt.DefaultCost))
	a, err := New(Config{Htpasswd: path, CacheTTL: time.Minute, ReloadInterval: -1}, zerolog.Nop())
	if err != nil {
		b.Fatal(err)
	}
	defer a.Close()
	h := basic("alice", "pw")
	a.Check(alice, h)
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := a.Check(alice, h); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkCheckBcrypt(b *testing.B) {
	path := filepath.Join(b.TempDir(), "htpasswd")
	writeFile(b, path, entryCost(b, "alice", "pw", bcrypt.DefaultCost))
	a, err := New(Config{Htpasswd: path, ReloadInterval: -1}, zerolog.Nop())
	if err != nil {
		b.Fatal(err)
	}
	defer a.Close()
	h := basic("alice", "pw")
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := a.Check(alice, h); err != nil {
			b.Fatal(err)
		}
	}
}
