// Command loadbench measures Picket against direct requests on loopback:
// it starts a local origin and the picket binary, drives the same load
// straight to the origin and through the proxy, and prints each scenario's
// throughput as a ratio to direct, with the proxy's CPU time per request and
// its memory. Every run is bounded in time and targets loopback only.
package main

import (
	"flag"
	"fmt"
	"os"
	"strings"
	"time"
)

func main() {
	bin := flag.String("bin", "bin/picket", "picket binary to measure")
	dur := flag.Duration("duration", 4*time.Second, "length of each measured run")
	only := flag.String("only", "", "run only scenarios whose name contains this (alternatives separated by |)")
	peers := flag.Bool("peers", false, "also measure squid, tinyproxy, a bare goproxy and (intercepted rows) mitmproxy")
	serveGP := flag.String("serve-goproxy", "", "internal: run as a bare goproxy on this address")
	gpMitm := flag.Bool("goproxy-mitm", false, "internal: with -serve-goproxy, intercept CONNECT")
	serveGT := flag.String("serve-gotunnel", "", "internal: run as the minimal Go CONNECT proxy on this address")
	serveGF := flag.String("serve-goforward", "", "internal: run as the minimal Go HTTP/1.1 forward (and intercepting) proxy on this address")
	flag.BoolVar(&withFloor, "floor", false, "also measure the floors, the least a Go proxy does: go-forward (HTTP rows), go-tunnel (tunnel rows), go-forward intercepting (intercepted rows)")
	flag.StringVar(&profileDir, "profile", "", "write each picket's CPU profile into this directory")
	flag.IntVar(&rounds, "rounds", 5, "rounds per scenario; each proxy's ratio is the median over them")
	flag.BoolVar(&verbose, "v", false, "print every round's ratios, and per contestant this process's CPU per request, the machine's idle share and TCP segments per request")
	flag.StringVar(&picketEnv, "picket-env", "", "extra environment for picket (e.g. \"GOGC=200\")")
	flag.StringVar(&bBin, "b-bin", "", "A/B: also measure this picket binary, as \"picket-b\", in the same rounds")
	flag.StringVar(&bEnv, "b-env", "", "A/B: also measure picket with this extra environment, as \"picket-b\"")
	flag.IntVar(&hostCount, "hosts", 64, "host names of the URL mix, all resolving to 127.0.0.1 through a hosts file mounted in loadbench's own mount namespace (root); 0: every request to 127.0.0.1")
	flag.IntVar(&dbEntries, "db-entries", 5000000, "entries of the reputation database Picket loads, generated (internal/feedgen) into the temporary directory; 0: the repository's demo feeds")
	flag.BoolVar(&showConfigs, "configs", true, "print every contestant's configuration before its table")
	flag.IntVar(&tunnelRounds, "tunnel-rounds", 9, "rounds of a tunnel row, if more than -rounds")
	flag.BoolVar(&secondGen, "gen2", true, "also drive each row with a second load generator where one fits: wrk (HTTP rows), hey (HTTPS rows but the resumed one)")
	logs := flag.String("logs", "off,on", "access-log settings to measure, each a table of its own: off, on or both")
	flag.Parse()
	for _, s := range strings.Split(*logs, ",") {
		switch s {
		case "off", "on":
			logSettings = append(logSettings, s == "on")
		default:
			fmt.Fprintln(os.Stderr, "loadbench: -logs takes off, on or off,on")
			os.Exit(2)
		}
	}
	if *serveGT != "" {
		if err := serveGoTunnel(*serveGT); err != nil {
			fmt.Fprintln(os.Stderr, "loadbench go-tunnel:", err)
			os.Exit(1)
		}
		return
	}
	if *serveGF != "" {
		if err := serveGoForward(*serveGF); err != nil {
			fmt.Fprintln(os.Stderr, "loadbench go-forward:", err)
			os.Exit(1)
		}
		return
	}
	if *serveGP != "" {
		if err := serveGoproxy(*serveGP, *gpMitm); err != nil {
			fmt.Fprintln(os.Stderr, "loadbench goproxy:", err)
			os.Exit(1)
		}
		return
	}
	if hostCount > 0 {
		if ran, status := inNamespace(); ran {
			os.Exit(status)
		}
	}
	withPeers = *peers
	if rounds < 1 {
		fmt.Fprintln(os.Stderr, "loadbench: -rounds must be at least 1")
		os.Exit(2)
	}
	if err := run(*bin, *dur, *only); err != nil {
		fmt.Fprintln(os.Stderr, "loadbench:", err)
		os.Exit(1)
	}
}

// profileDir, if set, receives picket's CPU profiles.
var profileDir string

// rounds is how many times each scenario is measured; verbose prints each.
var (
	rounds  int
	verbose bool
)

// picketEnv is extra environment for the picket processes.
var picketEnv string

// bBin and bEnv, when either is set, add a second picket ("picket-b": that
// binary, or the same one with that environment) to the same rounds, so that
// a change is compared with the code before it under the same load.
var bBin, bEnv string

// showConfigs prints the contestants' configurations.
var showConfigs bool

// tunnelRounds is the least number of rounds of a tunnel row.
var tunnelRounds int

// secondGen adds wrk and hey (extgen.go).
var secondGen bool

// hostCount is the number of host names in the URL mix (urlmix.go).
var hostCount int

// dbEntries is the size of the generated reputation database.
var dbEntries int

// logSettings are the access-log settings measured, in order (true: on).
var logSettings []bool

// withPeers adds squid, tinyproxy, bare goproxy and mitmproxy columns.
var withPeers bool

// withFloor adds the floor column (floor.go).
var withFloor bool

// scenario is one load shape.
type scenario struct {
	name      string
	conns     int
	https     bool
	fresh     bool   // a new connection per request
	resume    bool   // the client resumes TLS sessions (as browsers do)
	path      string // origin path
	intercept bool   // through the interception Picket (and peers that intercept)
	// h2: the client speaks HTTP/2 (inside the tunnel when proxied) over
	// conns connections, each carrying streams concurrent requests; a
	// response over anything else counts as an error.
	h2      bool
	streams int
	// shared: many short requests on kept connections to one host, where
	// hey's start races (heyShared).
	shared bool
}
