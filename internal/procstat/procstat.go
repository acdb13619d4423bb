// Package procstat reads a process's CPU time and memory from /proc, for
// the load and soak tools that measure the picket binary from outside.
package procstat

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// CPU returns the user+system CPU time of process pid (0 if unreadable).
func CPU(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	if len(fields) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(fields[11], 10, 64)
	st, _ := strconv.ParseInt(fields[12], 10, 64)
	return time.Duration(ut+st) * time.Second / 100 // USER_HZ
}

// Status returns a size field of /proc/PID/status ("VmRSS:", "VmHWM:") in
// bytes (0 if unreadable).
func Status(pid int, key string) int64 {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), key) {
			kb, _ := strconv.ParseInt(strings.Fields(sc.Text())[1], 10, 64)
			return kb << 10
		}
	}
	return 0
}

// RSS is the resident set size of pid in bytes; HWM its peak.
func RSS(pid int) int64 { return Status(pid, "VmRSS:") }

// HWM is the peak resident set size of pid in bytes.
func HWM(pid int) int64 { return Status(pid, "VmHWM:") }
