package main

import (
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/picket-proxy/picket/internal/procstat"
)

// result counts completed requests of one run.
type result struct {
	n, errs  int64
	firstErr string // the first error's text, for -v
	// p50 and p99 are the latencies an external generator reports (it
	// gives no sample).
	p50, p99 time.Duration
	d        time.Duration
	lat      []time.Duration // a sample of request latencies, sorted
}

func (r result) rate() float64 { return float64(r.n) / r.d.Seconds() }

// p returns the q-th percentile latency, rounded for the table.
func (r result) p(q int) string {
	if len(r.lat) == 0 {
		return "-"
	}
	return roundLatency(r.lat[min(len(r.lat)-1, len(r.lat)*q/100)])
}

// roundLatency rounds a latency for the table.
func roundLatency(d time.Duration) string {
	switch {
	case d < time.Millisecond:
		return d.Round(10 * time.Microsecond).String()
	case d < time.Second:
		return d.Round(100 * time.Microsecond).String()
	}
	return d.Round(10 * time.Millisecond).String()
}

// selected reports whether the scenario or section name is chosen by
// -only: empty chooses all, else any |-separated alternative name contains.
func selected(only, name string) bool {
	if only == "" {
		return true
	}
	for _, alt := range strings.Split(only, "|") {
		if alt != "" && strings.Contains(name, alt) {
			return true
		}
	}
	return false
}

// tally gathers one contestant's rounds of a scenario.
type tally struct {
	ratios  []float64 // throughput / direct, per round
	n, errs int64
	cpu     time.Duration
	self    time.Duration // this process's (load generator and origin) CPU
	idle    []float64     // the machine's idle share, per round
	segs    uint64        // TCP segments sent on the machine
	conns   int64         // connections the origins accepted
	lat     []time.Duration
	// firstErr is the first error of the rounds, for -v.
	firstErr string
	// p50s and p99s are an external generator's latencies, per round.
	p50s, p99s []time.Duration
}

func (t *tally) add(r, direct result, cpu time.Duration) {
	ratio := 0.0
	if direct.rate() > 0 {
		ratio = r.rate() / direct.rate()
	}
	t.ratios = append(t.ratios, ratio)
	t.n += r.n
	t.errs += r.errs
	t.cpu += cpu
	t.lat = append(t.lat, r.lat...)
	if t.firstErr == "" {
		t.firstErr = r.firstErr
	}
	if r.p50 > 0 {
		t.p50s, t.p99s = append(t.p50s, r.p50), append(t.p99s, r.p99)
	}
}

// observe runs one load run and adds what the rest of the machine did
// meanwhile: this process's CPU, the machine's idle share, TCP segments.
func (t *tally) observe(run func() result) result {
	self0, m0, c0 := procstat.CPU(os.Getpid()), procstat.ReadMachine(), originConns.Load()
	r := run()
	t.conns += originConns.Load() - c0
	t.self += procstat.CPU(os.Getpid()) - self0
	idle, segs := procstat.ReadMachine().Since(m0)
	t.idle = append(t.idle, idle)
	t.segs += segs
	return r
}

func (t *tally) machineString() string {
	if t.n == 0 {
		return "-"
	}
	return fmt.Sprintf("machine idle %.0f%%, TCP segments/req %.1f, origin connections/1000 req %.2f",
		100*median(t.idle), float64(t.segs)/float64(t.n), 1000*float64(t.conns)/float64(t.n))
}

// ratio is the median of the rounds' ratios to direct.
func (t *tally) ratio() float64 { return median(t.ratios) }

// cpuPerReq is the CPU time per request over all rounds, in seconds.
func (t *tally) cpuPerReq() float64 { return t.cpu.Seconds() / float64(max(t.n, 1)) }

// perReq is the CPU time per request over all rounds.
func (t *tally) perReq() string { return perReq(t.cpu, t.n) }

func perReq(cpu time.Duration, n int64) string {
	if n == 0 {
		return "-"
	}
	return (cpu / time.Duration(n)).Round(time.Microsecond).String()
}

// latency returns the p50 and p99 latencies over all rounds.
// From an external generator, the medians of its rounds' figures.
func (t *tally) latency() (p50, p99 string) {
	if len(t.lat) == 0 && len(t.p50s) > 0 {
		return medianLatency(t.p50s), medianLatency(t.p99s)
	}
	slices.Sort(t.lat)
	r := result{lat: t.lat}
	return r.p(50), r.p(99)
}

// medianLatency is the median of an external generator's per-round
// latencies, leaving out the rounds where it printed none: hey prints its
// 99th percentile only when a run has at least a hundred requests
// (10 MiB rows may not), and a missing one is not a latency of 0s.
func medianLatency(v []time.Duration) string {
	s := slices.DeleteFunc(slices.Clone(v), func(d time.Duration) bool { return d == 0 })
	if len(s) == 0 {
		return "-"
	}
	slices.Sort(s)
	return roundLatency(s[len(s)/2])
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
