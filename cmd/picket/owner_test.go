//go:build unix

package main

import (
	"bytes"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// TestCAGeneratedByRootBelongsToStateOwner runs, as root, the commands that
// generate the CA when there is none (picket init, picket ca export, picket
// ca info) with a data directory that belongs to another user, as
// /var/lib/picket belongs to picket: the CA must be that user's, or the
// service, running as that user, cannot read it and does not start. Where
// root owns the data directory, root keeps the CA.
func TestCAGeneratedByRootBelongsToStateOwner(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("changes file owners: root only")
	}
	const nobody = 65534
	for _, c := range []struct {
		name  string
		args  func(dir string) []string
		owner int // of the data directory, and wanted of the CA
	}{
		{"init", func(dir string) []string { return []string{"init", "-dir", dir, "-mode=kpsn", "-participate=no"} }, nobody},
		{"ca export", func(dir string) []string { return []string{"ca", "export", "-config", writeCAConfig(t, dir)} }, nobody},
		{"ca info", func(dir string) []string { return []string{"ca", "info", "-config", writeCAConfig(t, dir)} }, nobody},
		{"root's data directory", func(dir string) []string { return []string{"ca", "export", "-config", writeCAConfig(t, dir)} }, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			oldTerm := stdinIsTerminal
			defer func() { stdinIsTerminal = oldTerm }()
			stdinIsTerminal = func() bool { return false }
			dir := t.TempDir()
			data := filepath.Join(dir, "data")
			if err := os.Mkdir(data, 0o750); err != nil {
				t.Fatal(err)
			}
			if err := os.Chown(data, c.owner, c.owner); err != nil {
				t.Fatal(err)
			}
			var out, errb bytes.Buffer
			if code := run(c.args(dir), &out, &errb); code != 0 {
				t.Fatalf("exit code %d: %s", code, errb.String())
			}
			for _, p := range []string{"ca", "ca/picket-ca.pem", "ca/picket-ca.key"} {
				fi, err := os.Lstat(filepath.Join(data, p))
				if err != nil {
					t.Fatal(err)
				}
				st := fi.Sys().(*syscall.Stat_t)
				if int(st.Uid) != c.owner || int(st.Gid) != c.owner {
					t.Errorf("data/%s: got owner %d:%d, want %d:%d", p, st.Uid, st.Gid, c.owner, c.owner)
				}
			}
		})
	}
}

// writeCAConfig writes dir/config.toml with the default CA files (data/ca).
func writeCAConfig(t *testing.T, dir string) string {
	t.Helper()
	path := filepath.Join(dir, "config.toml")
	if err := os.WriteFile(path, []byte("[tls]\nca_cert = \"data/ca/picket-ca.pem\"\nca_key = \"data/ca/picket-ca.key\"\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	return path
}
