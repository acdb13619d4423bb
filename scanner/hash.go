package scanner

import (
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"hash"
)

// Sums are a body's digests.
type Sums struct {
	SHA256 [sha256.Size]byte
	SHA1   [sha1.Size]byte
	MD5    [md5.Size]byte
}

// MarshalJSON writes the digests in hex.
func (s Sums) MarshalJSON() ([]byte, error) {
	return json.Marshal(map[string]string{
		"sha256": hex.EncodeToString(s.SHA256[:]),
		"sha1":   hex.EncodeToString(s.SHA1[:]),
		"md5":    hex.EncodeToString(s.MD5[:]),
	})
}

// Hasher computes SHA-256, SHA-1 and MD5 in one pass over the bytes written
// to it, and counts them.
type Hasher struct {
	sha256, sha1, md5 hash.Hash
	n                 int64
}

// NewHasher returns an empty Hasher.
func NewHasher() *Hasher {
	return &Hasher{sha256: sha256.New(), sha1: sha1.New(), md5: md5.New()}
}

// Write hashes p; it never fails.
func (h *Hasher) Write(p []byte) (int, error) {
	h.sha256.Write(p)
	h.sha1.Write(p)
	h.md5.Write(p)
	h.n += int64(len(p))
	return len(p), nil
}

// Size is the number of bytes hashed.
func (h *Hasher) Size() int64 { return h.n }

// Sums returns the digests of the bytes written so far.
func (h *Hasher) Sums() Sums {
	var s Sums
	h.sha256.Sum(s.SHA256[:0])
	h.sha1.Sum(s.SHA1[:0])
	h.md5.Sum(s.MD5[:0])
	return s
}

// Reset forgets everything written.
func (h *Hasher) Reset() {
	h.sha256.Reset()
	h.sha1.Reset()
	h.md5.Reset()
	h.n = 0
}
