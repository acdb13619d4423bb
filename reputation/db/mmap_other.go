//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly)

package db

import (
	"io"
	"os"
)

// mapFile reads the first size bytes of f: this system has no mmap here.
func mapFile(f *os.File, size int) ([]byte, error) {
	b := make([]byte, size)
	_, err := io.ReadFull(io.NewSectionReader(f, 0, int64(size)), b)
	return b, err
}

func unmapFile([]byte) error { return nil }

const canMap = false
