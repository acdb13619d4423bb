package db

import (
	"os"
	"syscall"
)

// adviseRandom tells the kernel that the mapping m is read at random from
// byte from on: no read-ahead around the pages a lookup touches, so the
// verdicts, read only on a hit, stay out of resident memory.
func adviseRandom(m []byte, from int) {
	page := os.Getpagesize()
	from = (from + page - 1) &^ (page - 1)
	if from >= len(m) {
		return
	}
	_ = syscall.Madvise(m[from:], syscall.MADV_RANDOM)
}
