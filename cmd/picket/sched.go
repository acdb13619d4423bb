package main

import (
	"slices"
	"strconv"
	"strings"

	"github.com/picket-proxy/picket/config"
)

// withAwakeScheduler returns env with config.AwakeSchedtrace added to
// GODEBUG, and true; or env unchanged and false when GODEBUG already sets
// schedtrace (the administrator's setting wins, schedtrace=0 included).
// This is [proxy] scheduler_awake: it keeps Go's system monitor out of its
// deep sleep.
//
// The runtime's system monitor (sysmon) sleeps deeply whenever every P is
// idle, and the first goroutine that then enters a system call wakes it (a
// futex wake-up of another thread); it then polls every 20 µs until every P
// is idle again, and sleeps deeply once more. A proxy under load goes idle
// and busy again many times a millisecond, and every socket call of Go's net
// package (accept, read, close, the dial's) can be the one that wakes it: on
// a 2-vCPU KVM guest that cost 12-15 % of Picket's CPU per new tunnel
// (docs/benchmarks.md, "The scheduler kept awake").
//
// With schedtrace set, sysmon never sleeps deeply (runtime/proc.go: "sysmon
// should not enter deep sleep if schedtrace is enabled"); with nothing to do
// it backs off to one poll every 10 ms, about 0.2 % of one CPU when Picket is
// idle. The period is the largest the runtime accepts (an int32 of
// milliseconds, 24.8 days), so its summary line is printed only when the
// period has passed since the boot of the host and again every 24.8 days:
// on a host up for longer than that, one line starting "SCHED" on standard
// error at start.
func withAwakeScheduler(env []string) ([]string, bool) {
	for i, kv := range env {
		v, ok := strings.CutPrefix(kv, "GODEBUG=")
		if !ok {
			continue
		}
		if _, set := godebugValue(v, "schedtrace"); set {
			return env, false
		}
		out := slices.Clone(env)
		if v == "" {
			out[i] = "GODEBUG=" + config.AwakeSchedtrace
		} else {
			out[i] = kv + "," + config.AwakeSchedtrace
		}
		return out, true
	}
	return append(slices.Clone(env), "GODEBUG="+config.AwakeSchedtrace), true
}

// schedulerAwake reports whether the GODEBUG value godebug keeps sysmon out
// of its deep sleep (schedtrace above 0), for the start-up log line.
func schedulerAwake(godebug string) bool {
	v, ok := godebugValue(godebug, "schedtrace")
	if !ok {
		return false
	}
	n, err := strconv.Atoi(v)
	return err == nil && n > 0
}

// godebugValue returns the value GODEBUG's comma-separated list gives key,
// read as the runtime reads it (runtime1.go, parsegodebug): fields are not
// trimmed, and the last one wins when a key repeats.
func godebugValue(godebug, key string) (value string, ok bool) {
	for _, s := range strings.Split(godebug, ",") {
		if v, found := strings.CutPrefix(s, key+"="); found {
			value, ok = v, true
		}
	}
	return value, ok
}
