package data

import (
	"io/fs"
	"os"
	"slices"
	"strings"
	"testing"
)

// TestEmbedsTheDemoFilesOnly: the embedded files are exactly the regular
// files of feeds/ and signatures/ in the repository — a demo file of a new
// kind that the go:embed patterns miss fails here, and nothing below them
// (feeds/cache/, the compiled database) is ever embedded.
func TestEmbedsTheDemoFilesOnly(t *testing.T) {
	for _, dir := range []string{"feeds", "signatures"} {
		var want []string
		entries, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			if e.Type().IsRegular() && !strings.HasPrefix(e.Name(), ".") && !strings.HasSuffix(e.Name(), "_test.go") {
				want = append(want, dir+"/"+e.Name())
			}
		}
		var got []string
		err = fs.WalkDir(FS, dir, func(name string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() && name != dir {
				t.Errorf("embedded directory %s: only the demo files belong in the binary", name)
				return fs.SkipDir
			}
			if !d.IsDir() {
				got = append(got, name)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if len(want) == 0 || !slices.Equal(got, want) {
			t.Errorf("%s: embedded %q, the repository holds %q", dir, got, want)
		}
	}
}
