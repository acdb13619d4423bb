//go:build unix

package db

import (
	"os"
	"syscall"
)

// lockFile waits for an exclusive lock on f, which other processes share
// (flock).
func lockFile(f *os.File) error { return syscall.Flock(int(f.Fd()), syscall.LOCK_EX) }

func unlockFile(f *os.File) { _ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN) }
