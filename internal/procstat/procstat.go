// Package procstat reads a process's CPU time and memory, and the machine's
// CPU and TCP counters, for the load and soak tools that measure the picket
// binary from outside. It reads /proc through github.com/prometheus/procfs,
// which parses each file (and follows its format across kernels) better
// than a hand-written reader; procfs counts CPU time in USER_HZ = 100 ticks
// a second, the unit Linux reports to user space on every architecture Go
// supports. Off Linux, or for a process that is gone, every reading is zero.
package procstat

import (
	"math"
	"time"

	"github.com/prometheus/procfs"
)

// CPU returns the user+system CPU time of process pid (0 if unreadable).
func CPU(pid int) time.Duration {
	p, err := procfs.NewProc(pid)
	if err != nil {
		return 0
	}
	s, err := p.Stat()
	if err != nil {
		return 0
	}
	return seconds(s.CPUTime())
}

// Mem is a process's memory, in bytes (/proc/PID/status).
type Mem struct {
	RSS  int64 // resident set size (VmRSS)
	HWM  int64 // peak resident set size (VmHWM)
	Anon int64 // resident anonymous memory (RssAnon)
	File int64 // resident file mappings (RssFile)
}

// Memory returns the memory of process pid (zeros if unreadable).
func Memory(pid int) Mem {
	p, err := procfs.NewProc(pid)
	if err != nil {
		return Mem{}
	}
	s, err := p.NewStatus()
	if err != nil {
		return Mem{}
	}
	return Mem{RSS: int64(s.VmRSS), HWM: int64(s.VmHWM), Anon: int64(s.RssAnon), File: int64(s.RssFile)}
}

// RSS is the resident set size of pid in bytes.
func RSS(pid int) int64 { return Memory(pid).RSS }

// HWM is the peak resident set size of pid in bytes.
func HWM(pid int) int64 { return Memory(pid).HWM }

// Machine is a snapshot of the machine-wide counters a load run is read
// against: CPU time idle (idle and iowait) and in all, in seconds summed
// over the CPUs (/proc/stat), and TCP segments sent (/proc/net/snmp).
type Machine struct {
	Idle, Total float64
	TCPOutSegs  uint64
}

// ReadMachine reads the counters (zeros where unreadable).
func ReadMachine() Machine {
	var m Machine
	fs, err := procfs.NewDefaultFS()
	if err != nil {
		return m
	}
	if st, err := fs.Stat(); err == nil {
		c := st.CPUTotal // guest time is part of user time already
		m.Idle = c.Idle + c.Iowait
		m.Total = c.User + c.Nice + c.System + c.Idle + c.Iowait + c.IRQ + c.SoftIRQ + c.Steal
	}
	if self, err := fs.Self(); err == nil {
		if snmp, err := self.Snmp(); err == nil && snmp.OutSegs != nil {
			m.TCPOutSegs = uint64(*snmp.OutSegs)
		}
	}
	return m
}

// Since returns the share of CPU time the machine was idle and the TCP
// segments sent between m0 and m. The share is kept within [0, 1]: the
// counters are sums of seconds in floating point, so when every tick of the
// window was idle the two differences round apart (1.0000000004 was seen).
func (m Machine) Since(m0 Machine) (idle float64, segs uint64) {
	if t := m.Total - m0.Total; t > 0 {
		idle = min(max((m.Idle-m0.Idle)/t, 0), 1)
	}
	return idle, m.TCPOutSegs - m0.TCPOutSegs
}

// seconds converts procfs's float seconds to a Duration.
func seconds(s float64) time.Duration { return time.Duration(math.Round(s * float64(time.Second))) }
