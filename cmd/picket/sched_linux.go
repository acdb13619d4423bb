package main

import (
	"fmt"
	"io"
	"os"
	"syscall"

	"github.com/picket-proxy/picket/config"
)

// keepSchedulerAwake re-executes this process (the same pid, arguments and
// open descriptors) with config.AwakeSchedtrace added to GODEBUG, which Go reads
// only at start. It returns when GODEBUG already sets schedtrace, or when
// exec fails: then Picket runs on, with sysmon as Go sets it, and says so.
func keepSchedulerAwake(stderr io.Writer) {
	env, ok := withAwakeScheduler(os.Environ())
	if !ok {
		return
	}
	err := syscall.Exec("/proc/self/exe", os.Args, env)
	fmt.Fprintf(stderr, "picket: [proxy] scheduler_awake: cannot restart with GODEBUG=%s, running without: %v\n", config.AwakeSchedtrace, err)
}
