//go:build unix

package main

import (
	"os"
	"syscall"
)

// reopenSignal makes Picket reopen its log files (logrotate's postrotate).
var reopenSignal os.Signal = syscall.SIGUSR1
