//go:build !unix

package main

import "os"

// reopenSignal is nil: there is no SIGUSR1 here to reopen the log files
// with (they are reopened on a restart).
var reopenSignal os.Signal
