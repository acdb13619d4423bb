package auth

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"hash"
	"strings"
	"sync"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
)

// key is a salted hash (HMAC-SHA-256 under a per-process random salt) of
// what it identifies: credentials for the cache, a user name for the
// limiter. Nothing outside this process can compute or test one, and no
// password is kept beside it.
type key [sha256.Size]byte

// What a key is of; the tag is hashed first, so keys of different kinds
// never collide.
const (
	keyLocal     byte = 'L' // user, password and the user's htpasswd entry
	keyDirectory byte = 'D' // user and password checked by the directory
	keyUser      byte = 'U' // a user name, folded to lower case
)

// keyer makes keys under one salt.
type keyer struct {
	pool sync.Pool // of hash.Hash (HMAC-SHA-256 under the salt)
}

func newKeyer() *keyer {
	var salt [32]byte
	_, _ = rand.Read(salt[:]) // never fails (crypto/rand panics rather)
	k := &keyer{}
	k.pool.New = func() any { return hmac.New(sha256.New, salt[:]) }
	return k
}

// of hashes the tag and the parts, each preceded by its length so that no
// two lists of parts collide by concatenation.
func (k *keyer) of(tag byte, parts ...string) key {
	h := k.pool.Get().(hash.Hash)
	h.Reset()
	var b [5]byte
	b[0] = tag
	h.Write(b[:1])
	for _, s := range parts {
		n := len(s)
		b[0], b[1], b[2], b[3] = byte(n>>24), byte(n>>16), byte(n>>8), byte(n)
		h.Write(b[:4])
		h.Write([]byte(s))
	}
	var out key
	h.Sum(out[:0])
	k.pool.Put(h)
	return out
}

// user is the rate-limiting key of a user name as typed, case folded (the
// directories compare user names without case).
func (k *keyer) user(name string) key { return k.of(keyUser, strings.ToLower(name)) }

// verified is one successful verification.
type verified struct {
	user   string   // the user as rules and logs see it
	groups []string // the directory's groups, sorted; nil for local users
	fresh  time.Time
	stale  time.Time
}

// credCache remembers successful verifications by credential key: fresh
// ones are used without asking again; stale ones (past fresh, before stale)
// only when the directory cannot be reached and the configuration says so.
type credCache struct {
	lru *lru.Cache[key, *verified]
}

func newCredCache(size int) *credCache {
	c, _ := lru.New[key, *verified](size) // size > 0
	return &credCache{lru: c}
}

func (c *credCache) get(k key) (*verified, bool) {
	if c == nil {
		return nil, false
	}
	return c.lru.Get(k)
}

func (c *credCache) add(k key, v *verified) {
	if c != nil {
		c.lru.Add(k, v)
	}
}

func (c *credCache) remove(k key) {
	if c != nil {
		c.lru.Remove(k)
	}
}
