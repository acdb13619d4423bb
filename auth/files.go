package auth

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// table is one loaded version of the files. It is never modified once
// built.
type table struct {
	users  map[string][]byte   // user → bcrypt hash
	groups map[string][]string // user → sorted groups
	dummy  []byte              // compared against for unknown users
	cost   int                 // bcrypt cost of dummy
	stamps [2]stamp            // htpasswd, groups
}

// stamp identifies a version of a file on disk.
type stamp struct {
	modTime time.Time
	size    int64
	exists  bool
}

func sameStamps(a, b [2]stamp) bool {
	for i := range a {
		if !a[i].modTime.Equal(b[i].modTime) || a[i].size != b[i].size || a[i].exists != b[i].exists {
			return false
		}
	}
	return true
}

func statFile(path string) (stamp, error) {
	if path == "" {
		return stamp{}, nil
	}
	fi, err := os.Stat(path)
	if err != nil {
		return stamp{}, err
	}
	return stamp{modTime: fi.ModTime(), size: fi.Size(), exists: true}, nil
}

// FileError is a problem on one line of an htpasswd or groups file.
type FileError struct {
	File string
	Line int
	Msg  string
}

func (e *FileError) Error() string { return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg) }

// readFile reads the file at path and parses it with parse, which names
// path in its errors.
func readFile[T any](path string, parse func(path string, data []byte) (T, error)) (T, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		var zero T
		return zero, fmt.Errorf("auth: %w", err)
	}
	v, err := parse(path, data)
	if err != nil {
		return v, fmt.Errorf("auth: %w", err)
	}
	return v, nil
}

// parseHtpasswd reads "user:hash" lines; blank lines and lines starting
// with '#' are skipped. Every entry must be bcrypt; the error names each bad
// line.
func parseHtpasswd(path string, data []byte) (map[string][]byte, error) {
	users := make(map[string][]byte)
	var errs []error
	bad := func(n int, format string, args ...any) {
		errs = append(errs, &FileError{File: path, Line: n, Msg: fmt.Sprintf(format, args...)})
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		user, hash, ok := strings.Cut(line, ":")
		switch {
		case !ok:
			bad(n, "want user:hash")
			continue
		case user == "" || strings.ContainsFunc(user, isCTL):
			bad(n, "invalid user name")
			continue
		case users[user] != nil:
			bad(n, "user %q appears twice", user)
			continue
		}
		if kind := unsupported(hash); kind != "" {
			bad(n, "user %q: %s entries are not supported; recreate the entry with \"htpasswd -B\" (bcrypt)", user, kind)
			continue
		}
		if _, err := bcrypt.Cost([]byte(hash)); err != nil {
			bad(n, "user %q: invalid bcrypt hash: %v", user, err)
			continue
		}
		users[user] = []byte(hash)
	}
	if err := sc.Err(); err != nil {
		errs = append(errs, fmt.Errorf("%s: %w", path, err))
	}
	return users, errors.Join(errs...)
}

// unsupported names the scheme of a non-bcrypt htpasswd hash, "" for bcrypt.
func unsupported(hash string) string {
	switch {
	case strings.HasPrefix(hash, "$2a$"), strings.HasPrefix(hash, "$2b$"), strings.HasPrefix(hash, "$2y$"):
		return ""
	case strings.HasPrefix(hash, "$apr1$"):
		return "MD5 (apr1)"
	case strings.HasPrefix(hash, "{SHA}"):
		return "SHA-1 ({SHA})"
	case strings.HasPrefix(hash, "$1$"):
		return "MD5 crypt ($1$)"
	case strings.HasPrefix(hash, "$5$"), strings.HasPrefix(hash, "$6$"):
		return "SHA-crypt ($5$, $6$)"
	case strings.HasPrefix(hash, "$"):
		return "unknown ($...)"
	}
	return "crypt or plain-text"
}

// parseGroups reads "group: user1 user2" lines into user → sorted groups.
// A group may appear on several lines; blank lines and '#' comments are
// skipped.
func parseGroups(path string, data []byte) (map[string][]string, error) {
	groups := make(map[string][]string)
	var errs []error
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		group, members, ok := strings.Cut(line, ":")
		group = strings.TrimSpace(group)
		if !ok || group == "" || strings.ContainsFunc(group, isSpaceOrCTL) {
			errs = append(errs, &FileError{File: path, Line: n, Msg: "want \"group: user1 user2\""})
			continue
		}
		for _, u := range strings.Fields(members) {
			if !slices.Contains(groups[u], group) {
				groups[u] = append(groups[u], group)
			}
		}
	}
	if err := sc.Err(); err != nil {
		errs = append(errs, fmt.Errorf("%s: %w", path, err))
	}
	for _, g := range groups {
		slices.Sort(g)
	}
	return groups, errors.Join(errs...)
}

func isCTL(r rune) bool { return r < 0x20 || r == 0x7f }

func isSpaceOrCTL(r rune) bool { return r == ' ' || isCTL(r) }
