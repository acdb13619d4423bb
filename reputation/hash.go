package reputation

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
)

// Hash is a full SHA-256 lookup hash: of a URL expression (HashExpression)
// or a file key (FileKey).
type Hash [32]byte

// Prefix is the first 4 bytes of a Hash: all a lookup ever sends.
type Prefix uint32

// Prefix returns h's first 4 bytes.
func (h Hash) Prefix() Prefix { return Prefix(binary.BigEndian.Uint32(h[:4])) }

// String returns h in lower-case hex.
func (h Hash) String() string { return hex.EncodeToString(h[:]) }

// String returns p as 8 lower-case hex digits.
func (p Prefix) String() string { return fmt.Sprintf("%08x", uint32(p)) }

// ParseHash parses 64 hex digits.
func ParseHash(s string) (Hash, error) {
	var h Hash
	if len(s) != 64 {
		return h, fmt.Errorf("invalid hash %q: want 64 hex digits", s)
	}
	if _, err := hex.Decode(h[:], []byte(s)); err != nil {
		return h, fmt.Errorf("invalid hash %q: %v", s, err)
	}
	return h, nil
}

// ParsePrefix parses 8 hex digits.
func ParsePrefix(s string) (Prefix, error) {
	var b [4]byte
	if len(s) != 8 {
		return 0, fmt.Errorf("invalid prefix %q: want 8 hex digits", s)
	}
	if _, err := hex.Decode(b[:], []byte(s)); err != nil {
		return 0, fmt.Errorf("invalid prefix %q: %v", s, err)
	}
	return Prefix(binary.BigEndian.Uint32(b[:])), nil
}

// HashExpression returns the SHA-256 of a lookup expression.
func HashExpression(expr string) Hash { return sha256.Sum256([]byte(expr)) }

// ErrBadHash is returned (wrapped) for file hashes of the wrong length.
var ErrBadHash = errors.New("reputation: file hash must be MD5, SHA-1 or SHA-256")

// FileKey returns the lookup hash of a file hash: SHA-256 of the algorithm
// name, ":" and the raw digest ("sha256:" + 32 bytes). Deriving the key keeps
// file hashes apart from URL expression hashes (a file whose content is
// "evil.example/" would otherwise share the expression's hash). The
// algorithm follows from the length: 16 bytes MD5, 20 SHA-1, 32 SHA-256.
func FileKey(sum []byte) (Hash, error) {
	var algo string
	switch len(sum) {
	case 16:
		algo = "md5:"
	case 20:
		algo = "sha1:"
	case 32:
		algo = "sha256:"
	default:
		return Hash{}, fmt.Errorf("%w: got %d bytes", ErrBadHash, len(sum))
	}
	var buf [len("sha256:") + 32]byte
	n := copy(buf[:], algo)
	n += copy(buf[n:], sum)
	return sha256.Sum256(buf[:n]), nil
}

// ParseFileHash parses a hex MD5, SHA-1 or SHA-256 digest (32, 40 or 64
// hex digits) and returns the raw bytes.
func ParseFileHash(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	switch len(s) {
	case 32, 40, 64:
	default:
		return nil, fmt.Errorf("%w: %q has %d hex digits", ErrBadHash, s, len(s))
	}
	b, err := hex.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("%w: %q is not hex", ErrBadHash, s)
	}
	return b, nil
}

// IsFileHash reports whether s looks like a hex MD5, SHA-1 or SHA-256.
func IsFileHash(s string) bool {
	switch len(s) {
	case 32, 40, 64:
	default:
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
			return false
		}
	}
	return true
}
