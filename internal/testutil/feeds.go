package testutil

import (
	"os"
	"path/filepath"
	"testing"
)

// FeedsDir returns the absolute path of the repository's demo feed set
// (data/feeds), the embedded database of the tests' configs. Tests must not
// write there: CopyFeeds gives a copy they may change.
func FeedsDir(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd() // a test runs in its package's directory
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return filepath.Join(dir, "data", "feeds")
		}
		up := filepath.Dir(dir)
		if up == dir {
			t.Fatal("testutil: no go.mod above the test's directory")
		}
		dir = up
	}
}

// CopyFeeds copies the demo feed set to a new temporary directory and
// returns it.
func CopyFeeds(t testing.TB) string {
	t.Helper()
	src := FeedsDir(t)
	files, err := filepath.Glob(filepath.Join(src, "*"))
	if err != nil || len(files) == 0 {
		t.Fatalf("demo feeds: %v", err)
	}
	dir := t.TempDir()
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, filepath.Base(f)), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}
