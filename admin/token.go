package admin

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// ErrInsecureToken is returned by LoadToken for a token file that group or
// others may read.
var ErrInsecureToken = errors.New("admin: token file is readable by group or others (chmod 600 it)")

// tokenBytes is the entropy of a generated token: 32 random bytes, written
// as 64 hex digits.
const tokenBytes = 32

// LoadToken returns the bearer token kept in path, generating a new one and
// writing it there (mode 0600, atomically, creating the directory 0700) when
// the file does not exist. The boolean reports whether the token was
// generated, so that the caller can tell the operator where to find it.
// A file readable by group or others is refused with ErrInsecureToken; an
// empty or short file is an error too.
func LoadToken(path string) (string, bool, error) {
	fi, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		tok, err := writeToken(path)
		return tok, err == nil, err
	case err != nil:
		return "", false, fmt.Errorf("admin: token file: %w", err)
	case !fi.Mode().IsRegular():
		return "", false, fmt.Errorf("admin: token file %s is not a regular file", path)
	case fi.Mode().Perm()&0o077 != 0:
		return "", false, fmt.Errorf("%w: %s has mode %s", ErrInsecureToken, path, fi.Mode().Perm())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", false, fmt.Errorf("admin: token file: %w", err)
	}
	tok := strings.TrimSpace(string(b))
	if len(tok) < 16 || strings.ContainsAny(tok, " \t\r\n") {
		return "", false, fmt.Errorf("admin: token file %s must hold one token of at least 16 characters", path)
	}
	return tok, false, nil
}

// NewToken returns a new random token: 32 bytes as 64 hex digits.
func NewToken() string {
	b := make([]byte, tokenBytes)
	_, _ = rand.Read(b) // crypto/rand.Read never fails (Go 1.24+)
	return hex.EncodeToString(b)
}

// writeToken writes a new token to path through a temporary file in the
// same directory, so that a crash never leaves a half-written token.
func writeToken(path string) (string, error) {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("admin: token file: %w", err)
	}
	tmp, err := os.CreateTemp(dir, ".admin-token-*")
	if err != nil {
		return "", fmt.Errorf("admin: token file: %w", err)
	}
	defer os.Remove(tmp.Name()) // fails harmlessly after the rename
	tok := NewToken()
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return "", fmt.Errorf("admin: token file: %w", err)
	}
	if _, err := tmp.WriteString(tok + "\n"); err != nil {
		tmp.Close()
		return "", fmt.Errorf("admin: token file: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return "", fmt.Errorf("admin: token file: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return "", fmt.Errorf("admin: token file: %w", err)
	}
	// Link, unlike rename, refuses to replace a file another process wrote
	// meanwhile; then that file's token is the one to use.
	if err := os.Link(tmp.Name(), path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			tok, _, err := LoadToken(path)
			return tok, err
		}
		// File systems without hard links: rename is atomic too.
		if err := os.Rename(tmp.Name(), path); err != nil {
			return "", fmt.Errorf("admin: token file: %w", err)
		}
	}
	return tok, nil
}
