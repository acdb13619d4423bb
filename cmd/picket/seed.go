package main

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/picket-proxy/picket/config"
	"github.com/picket-proxy/picket/data"
)

// The demo data built into Picket (package data) is written out on first
// start where the defaults expect it — the feed directory of the embedded
// database and the scanner's demo signatures — as the CA and the admin
// token are generated: a configuration file anywhere starts as the
// repository's does, and the copy is the administrator's to edit. A
// directory the file names itself is never created: when it is missing,
// that is an error naming the key.

// feedDir returns the feed directory of the embedded database
// ([reputation.kpsn] database, relative to the configuration file), and
// whether it was created just now from the built-in demo feeds.
func feedDir(f *config.File) (dir string, created bool, err error) {
	const key = "reputation.kpsn.database"
	dir = f.Resolve(f.Reputation.KPSN.Database)
	fi, err := os.Stat(dir)
	switch {
	case err == nil && fi.IsDir():
		return dir, false, nil
	case err == nil:
		return "", false, f.Problem(key, "%s is not a directory", absPath(dir))
	case !errors.Is(err, fs.ErrNotExist):
		return "", false, f.Problem(key, "feed directory: %v", err)
	case f.IsSet(key):
		return "", false, f.Problem(key, "no feed directory at %s (a relative path is resolved against %s, the directory of the configuration file): create it with a feeds.toml, or leave the key out to start with Picket's built-in demo feeds",
			absPath(dir), absPath(f.Dir))
	}
	if err := writeTree(data.FS, "feeds", dir); err != nil {
		return "", false, f.Problem(key, "creating the default feed directory: %v", err)
	}
	return dir, true, nil
}

// seedSignatures writes the scanner's demo signatures to the directory of
// the default [scanner] signatures when the file does not set them and the
// directory does not exist. It returns the directory when it wrote it.
func seedSignatures(f *config.File) (string, error) {
	const key = "scanner.signatures"
	defaults := config.Default().Scanner.Signatures
	if !f.Scanner.Enabled || f.IsSet(key) || len(defaults) == 0 {
		return "", nil
	}
	dir := f.Resolve(filepath.Dir(defaults[0]))
	if _, err := os.Stat(dir); !errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	if err := writeTree(data.FS, "signatures", dir); err != nil {
		return "", f.Problem(key, "creating the default signature directory: %v", err)
	}
	return dir, nil
}

// writeTree copies the directory root of src to dst, which must not exist:
// into a temporary directory beside dst first, renamed into place, so that
// a start that fails half-way leaves no half-written dst behind.
func writeTree(src fs.FS, root, dst string) error {
	parent := filepath.Dir(dst)
	if err := os.MkdirAll(parent, 0o750); err != nil {
		return err
	}
	tmp, err := os.MkdirTemp(parent, "."+filepath.Base(dst)+"-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp) // gone after the rename; left-overs on failure
	err = fs.WalkDir(src, root, func(name string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel := filepath.FromSlash(name[len(root):])
		switch {
		case name == root:
			return nil
		case d.IsDir():
			return os.Mkdir(filepath.Join(tmp, rel), 0o755)
		}
		b, err := fs.ReadFile(src, name)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(tmp, rel), b, 0o644)
	})
	if err != nil {
		return err
	}
	if err := os.Chmod(tmp, 0o755); err != nil { // MkdirTemp makes it 0700
		return err
	}
	return os.Rename(tmp, dst)
}

// absPath is p made absolute for messages (p itself if that fails).
func absPath(p string) string {
	if a, err := filepath.Abs(p); err == nil {
		return a
	}
	return p
}
