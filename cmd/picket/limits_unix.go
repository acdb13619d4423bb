//go:build unix

package main

import "syscall"

// openFileLimit is the process's limit on open files (the soft limit,
// which Go raises to the hard one at start-up).
func openFileLimit() (uint64, bool) {
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		return 0, false
	}
	return uint64(l.Cur), true
}
