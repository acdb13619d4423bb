//go:build unix

package main

import (
	"os"
	"path/filepath"
	"syscall"
)

// giveToStateOwner gives files root has just generated, and the directory
// holding each, to the owner of the directory above that one when it is
// another user: the CA that `picket init` or `picket ca export` makes as
// root in data/ca belongs, like data/ itself (/var/lib/picket of the
// package), to the user the service runs as, who could not read it
// otherwise. Run by anyone else, or where root owns the directory above,
// it does nothing.
func giveToStateOwner(files ...string) error {
	if os.Geteuid() != 0 {
		return nil
	}
	for _, file := range files {
		dir := filepath.Dir(file)
		fi, err := os.Stat(filepath.Dir(dir))
		if err != nil {
			return err
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		if !ok || st.Uid == 0 {
			continue
		}
		for _, p := range []string{dir, file} {
			if err := os.Lchown(p, int(st.Uid), int(st.Gid)); err != nil {
				return err
			}
		}
	}
	return nil
}
