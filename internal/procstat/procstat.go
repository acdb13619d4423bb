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

// Machine is a snapshot of the machine-wide counters a load run is read
// against: CPU ticks idle and in all (/proc/stat) and TCP segments sent
// (/proc/net/snmp).
type Machine struct {
	Idle, Total uint64
	TCPOutSegs  uint64
}

// ReadMachine reads the counters (zeros where unreadable).
func ReadMachine() Machine {
	var m Machine
	if b, err := os.ReadFile("/proc/stat"); err == nil {
		line, _, _ := strings.Cut(string(b), "\n")
		fields := strings.Fields(line) // "cpu" and the ticks per state
		for i, f := range fields[min(1, len(fields)):] {
			v, _ := strconv.ParseUint(f, 10, 64)
			m.Total += v
			if i == 3 || i == 4 { // idle, iowait
				m.Idle += v
			}
		}
	}
	if b, err := os.ReadFile("/proc/net/snmp"); err == nil {
		var names []string
		for _, line := range strings.Split(string(b), "\n") {
			if !strings.HasPrefix(line, "Tcp: ") {
				continue
			}
			if names == nil {
				names = strings.Fields(line)
				continue
			}
			for i, v := range strings.Fields(line) {
				if i < len(names) && names[i] == "OutSegs" {
					m.TCPOutSegs, _ = strconv.ParseUint(v, 10, 64)
				}
			}
		}
	}
	return m
}

// Since returns the share of CPU time the machine was idle and the TCP
// segments sent between m0 and m.
func (m Machine) Since(m0 Machine) (idle float64, segs uint64) {
	if t := m.Total - m0.Total; t > 0 {
		idle = float64(m.Idle-m0.Idle) / float64(t)
	}
	return idle, m.TCPOutSegs - m0.TCPOutSegs
}
