package testutil

import (
	"os"
	"testing"
)

// ShortTempDir makes a directory directly under the system's temporary
// directory, removed when the test ends. Unlike t.TempDir its path is short
// (a Unix socket's path has at most 107 bytes: a server's socket in it, or
// Chromium's singleton socket when it is a TMPDIR) and its parent is not
// private to the test's user (a server that drops to its own user can
// reach it once the test opens its mode).
func ShortTempDir(t testing.TB, prefix string) string {
	t.Helper()
	dir, err := os.MkdirTemp("", prefix)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}
