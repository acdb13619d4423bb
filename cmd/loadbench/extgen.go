package main

import (
	"bufio"
	"context"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// The second load generators, so that no row depends on one client's
// quirks: wrk (Debian's, C, event loop) drives the HTTP rows, hey
// (Debian's, Go, its own proxy option) the HTTPS rows it can: tunnels and
// interception over HTTP/1.1 and HTTP/2, new connections or keep-alive.
// Neither resumes TLS sessions: the "resumed" row has the in-process
// generator only.

// generator drives one run of a scenario, direct (proxy nil) or through a
// proxy.
type generator struct {
	name string
	run  func(b *bench, sc scenario, origin string, proxy *url.URL) result
}

// inProcess is the load generator in this process (load.go).
var inProcess = generator{"go", func(b *bench, sc scenario, origin string, proxy *url.URL) result {
	return load(sc, newTargets(sc, origin, b.mix), proxy, b.dur)
}}

var (
	wrkGen = generator{"wrk", runWrk}
	heyGen = generator{"hey", runHey}
)

// generators are the generators of sc's row: the in-process one, and the
// second one that fits, if -gen2 and it is installed.
func generators(sc scenario) []generator {
	gens := []generator{inProcess}
	if !secondGen {
		return gens
	}
	switch k := sc.kind(); {
	case k == plainRow:
		if _, err := exec.LookPath("wrk"); err == nil {
			gens = append(gens, wrkGen)
		}
	case !sc.resume:
		if _, err := exec.LookPath("hey"); err == nil {
			gens = append(gens, heyGen)
		}
	}
	return gens
}

// wrkScript is a Lua script that has wrk send the mix's requests in turn
// (each thread from its own place in the list): absolute-form through a
// proxy, origin-form direct, each with its Host.
func wrkScript(b *bench, sc scenario, origin string, proxied bool) string {
	tg := newTargets(sc, origin, b.mix)
	next := tg.worker(0, -1)
	var s strings.Builder
	s.WriteString("local reqs = {\n")
	const n = 4096
	for range n {
		u, _ := url.Parse(next())
		target := u.RequestURI()
		if proxied {
			target = u.String()
		}
		fmt.Fprintf(&s, "%q,\n", "GET "+target+" HTTP/1.1\r\nHost: "+u.Host+"\r\n\r\n")
	}
	s.WriteString(`}
local count = 0
function setup(thread)
  thread:set("id", count)
  count = count + 1
end
local i = 0
function init(args)
  i = ((id or 0) * 1031) % #reqs
end
function request()
  i = (i % #reqs) + 1
  return reqs[i]
end
`)
	return s.String()
}

// runWrk runs wrk with sc.conns connections on two threads for the bench's
// duration.
func runWrk(b *bench, sc scenario, origin string, proxy *url.URL) result {
	u, _ := url.Parse(origin)
	addr := u.Host
	if proxy != nil {
		addr = proxy.Host
	}
	script := filepath.Join(b.dir, "wrk.lua")
	if err := os.WriteFile(script, []byte(wrkScript(b, sc, origin, proxy != nil)), 0o644); err != nil {
		return result{errs: 1, firstErr: err.Error()}
	}
	secs := strconv.Itoa(max(1, int(b.dur.Round(time.Second).Seconds())))
	out, err := external(b.dur, "wrk", "-t2", "-c", strconv.Itoa(sc.conns), "-d", secs+"s", "--timeout", "30s",
		"--latency", "-s", script, "http://"+addr+"/")
	if err != nil {
		return result{errs: 1, firstErr: err.Error()}
	}
	return parseWrk(out)
}

var (
	wrkDone   = regexp.MustCompile(`(\d+) requests in ([\d.]+\w+),`)
	wrkSocket = regexp.MustCompile(`Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)`)
	wrkNon2xx = regexp.MustCompile(`Non-2xx or 3xx responses: (\d+)`)
	wrkLat    = regexp.MustCompile(`^\s+(50|99)%\s+([\d.]+\w+)`)
)

// parseWrk reads wrk's summary. Read errors are not counted: wrk reports a
// server's close of a kept-alive connection (tinyproxy closes after each
// response) as one, then reconnects.
func parseWrk(out string) result {
	var r result
	m := wrkDone.FindStringSubmatch(out)
	if m == nil {
		return result{errs: 1, firstErr: "wrk: no summary in its output: " + firstLine(out)}
	}
	r.n, _ = strconv.ParseInt(m[1], 10, 64)
	r.d, _ = time.ParseDuration(m[2])
	if m := wrkSocket.FindStringSubmatch(out); m != nil {
		for _, i := range []int{1, 3, 4} {
			v, _ := strconv.ParseInt(m[i], 10, 64)
			r.errs += v
		}
	}
	if m := wrkNon2xx.FindStringSubmatch(out); m != nil {
		v, _ := strconv.ParseInt(m[1], 10, 64)
		r.errs += v
		r.n -= v
	}
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		if m := wrkLat.FindStringSubmatch(sc.Text()); m != nil {
			d, _ := time.ParseDuration(m[2])
			if m[1] == "50" {
				r.p50 = d
			} else {
				r.p99 = d
			}
		}
	}
	if r.errs > 0 {
		r.firstErr = "wrk: " + strings.Join(strings.Fields(oneOf(wrkSocket, wrkNon2xx, out)), " ")
	}
	return r
}

// runHey runs hey with sc.conns workers (HTTP/2: conns × streams workers
// sharing hey's connections) for the length heyArgs gives, on one URL of
// the mix (hey takes one).
func runHey(b *bench, sc scenario, origin string, proxy *url.URL) result {
	args, d := heyArgs(b.dur, sc, newTargets(sc, origin, b.mix).worker(0, -1)(), proxy)
	out, err := external(d, "hey", args...)
	if err != nil {
		return result{errs: 1, firstErr: err.Error()}
	}
	return parseHey(out)
}

// heyShared is the least length of hey's runs on the keep-alive rows
// (scenario.shared). hey sends every request to one URL, so all its workers
// share one host's connections, and at its start Go's transport dials again
// for each request that finds no idle connection while the first dials
// (CONNECT, then TLS) are under way; the surplus connections are handshaken
// and closed unused. In a 1 s run that race was the measurement: direct,
// hey opened 14 origin connections per 1000 requests for 64 workers, and
// Picket's and Squid's per-round ratios spread 0.54–1.08. In 5 s runs the
// race is a fifth of the part: about one connection per 1000 requests,
// ratios 0.68–0.90 (docs/benchmarks.md).
const heyShared = 5 * time.Second

// heyArgs are hey's arguments for a run of sc on target, and its length.
func heyArgs(dur time.Duration, sc scenario, target string, proxy *url.URL) ([]string, time.Duration) {
	if sc.shared {
		dur = max(dur, heyShared)
	}
	workers := sc.conns
	if sc.h2 {
		workers *= sc.streams
	}
	args := []string{"-z", dur.String(), "-c", strconv.Itoa(workers), "-t", "30", "-disable-compression"}
	if sc.fresh {
		args = append(args, "-disable-keepalive")
	}
	if sc.h2 {
		args = append(args, "-h2")
	}
	if proxy != nil {
		args = append(args, "-x", proxy.String())
	}
	return append(args, target), dur
}

var (
	heyTotal  = regexp.MustCompile(`Total:\s+([\d.]+) secs`)
	heyStatus = regexp.MustCompile(`^\s+\[(\d+)\]\s+(\d+) responses`)
	heyError  = regexp.MustCompile(`^\s+\[(\d+)\]\s+(.*)`)
	heyLat    = regexp.MustCompile(`^\s+(50|99)% in ([\d.]+) secs`)
)

// parseHey reads hey's summary. Requests cut by the end of the run
// (deadline exceeded, canceled) are not errors.
func parseHey(out string) result {
	var r result
	m := heyTotal.FindStringSubmatch(out)
	if m == nil {
		return result{errs: 1, firstErr: "hey: no summary in its output: " + firstLine(out)}
	}
	secs, _ := strconv.ParseFloat(m[1], 64)
	r.d = time.Duration(secs * float64(time.Second))
	inErrors := false
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "Error distribution:"):
			inErrors = true
		case heyLat.MatchString(line):
			m := heyLat.FindStringSubmatch(line)
			s, _ := strconv.ParseFloat(m[2], 64)
			if m[1] == "50" {
				r.p50 = time.Duration(s * float64(time.Second))
			} else {
				r.p99 = time.Duration(s * float64(time.Second))
			}
		case !inErrors && heyStatus.MatchString(line):
			m := heyStatus.FindStringSubmatch(line)
			v, _ := strconv.ParseInt(m[2], 10, 64)
			if m[1] == "200" {
				r.n += v
			} else {
				r.errs += v
				r.firstErr = "hey: status " + m[1]
			}
		case inErrors && heyError.MatchString(line):
			m := heyError.FindStringSubmatch(line)
			if strings.Contains(m[2], "deadline exceeded") || strings.Contains(m[2], "canceled") {
				continue
			}
			v, _ := strconv.ParseInt(m[1], 10, 64)
			r.errs += v
			if r.firstErr == "" {
				r.firstErr = "hey: " + m[2]
			}
		}
	}
	return r
}

// external runs a load generator expected to take about dur, killed if it
// takes more than a minute beyond.
func external(dur time.Duration, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), dur+time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("%s: %w: %s", name, err, firstLine(string(out)))
	}
	return string(out), nil
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(strings.TrimSpace(s), "\n")
	return line
}

// oneOf returns the first match of any of res in s.
func oneOf(s1, s2 *regexp.Regexp, s string) string {
	if m := s1.FindString(s); m != "" {
		return m
	}
	return s2.FindString(s)
}
