package auth

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"strings"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
)

// key is a salted hash (SHA-256 of a per-process random salt and the
// parts, each preceded by its length) of what it identifies: credentials for
// the cache, a user name for the limiter. Nothing outside this process can
// compute or test one, and no password is kept beside it.
type key [sha256.Size]byte

// What a key is of; the tag is hashed first, so keys of different kinds
// never collide.
const (
	keyLocal     byte = 'L' // user, password and the user's htpasswd entry
	keyDirectory byte = 'D' // user and password checked by the directory
	keyUser      byte = 'U' // a user name, folded to lower case
	keyAccount   byte = 'A' // a directory account: its DN, folded
)

// keyer makes keys under one salt.
type keyer struct {
	salt [32]byte
}

func newKeyer() *keyer {
	k := &keyer{}
	_, _ = rand.Read(k.salt[:]) // never fails (crypto/rand panics rather)
	return k
}

// credentials is the key of a user, a password and, for local users, the
// user's htpasswd entry (nil for the directory's). The buffer the password
// is copied into is cleared before returning.
func (k *keyer) credentials(tag byte, user, password string, entry []byte) key {
	var buf [256]byte // on the stack unless the parts are long
	b := append(buf[:0], k.salt[:]...)
	b = append(b, tag)
	b = appendPart(b, user)
	b = appendPart(b, password)
	b = appendPart(b, entry)
	out := key(sha256.Sum256(b))
	clear(b)
	return out
}

// user is the rate-limiting key of a user name as typed, case folded (the
// directories compare user names without case).
func (k *keyer) user(name string) key {
	var buf [128]byte
	b := append(buf[:0], k.salt[:]...)
	b = append(b, keyUser)
	b = appendPart(b, strings.ToLower(name))
	return key(sha256.Sum256(b))
}

// account is the rate-limiting key of a directory account, by its DN
// (foldDN).
func (k *keyer) account(dn string) key {
	var buf [256]byte
	b := append(buf[:0], k.salt[:]...)
	b = append(b, keyAccount)
	b = appendPart(b, foldDN(dn))
	return key(sha256.Sum256(b))
}

// appendPart appends the length of s (4 bytes, big-endian) and s.
func appendPart[T string | []byte](b []byte, s T) []byte {
	return append(binary.BigEndian.AppendUint32(b, uint32(len(s))), s...)
}

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
