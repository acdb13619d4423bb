// Command picket is the Picket filtering proxy: one binary with subcommands.
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"time"

	"github.com/picket-proxy/picket/config"
	"github.com/rs/zerolog"
)

// command is one subcommand: run gets the arguments after the subcommand's
// name and returns the process exit code (2 for usage errors).
type command struct {
	summary string
	run     func(args []string, stdout, stderr io.Writer) int
}

// commands is the table of subcommands.
var commands = map[string]command{
	"serve":   {"run the proxy", cmdServe},
	"version": {"print the version", cmdVersion},

	"lookup":    {"look up the reputation of URLs and file hashes", cmdLookup},
	"repserver": {"run a reputation server (cloud or private)", cmdRepserver},
	"ca":        {"export or describe the interception CA", cmdCA},
	"scan":      {"scan files for malware as downloads are scanned", cmdScan},
	"stats":     {"print the next participation statistics batch (stats preview)", cmdStats},
	"init":      {"prepare a new installation: participation choice, config.toml, CA", cmdInit},
	"feeds":     {"list, download now or check the threat feeds (feeds list|update|check)", cmdFeeds},
	// more subcommands: add them here
}

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	// zerolog's time format is process-wide: set once, before any logger.
	zerolog.TimeFieldFormat = time.RFC3339Nano
	restartAwake = keepSchedulerAwake // the process is picket's own (not a test's)
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// restartAwake restarts picket serve with the scheduler kept awake
// (sched.go). Only main sets it: run called in-process, as tests do, must
// never replace the process that called it.
var restartAwake func(stderr io.Writer)

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return 2
	}
	name := args[0]
	switch name {
	case "-h", "-help", "--help", "help":
		usage(stdout)
		return 0
	}
	c, ok := commands[name]
	if !ok {
		fmt.Fprintf(stderr, "picket: unknown command %q\n\n", name)
		usage(stderr)
		return 2
	}
	return c.run(args[1:], stdout, stderr)
}

func usage(w io.Writer) {
	fmt.Fprintf(w, "Picket %s: a forward HTTP/HTTPS filtering proxy.\n\nUsage:\n  picket <command> [flags]\n\nCommands:\n", version)
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-10s %s\n", n, commands[n].summary)
	}
	fmt.Fprintf(w, "\nRun 'picket <command> -h' for a command's flags.\n")
}

// newFlagSet returns a flag set that prints its usage to stderr and reports
// errors instead of exiting, so every command returns 2 on bad flags.
func newFlagSet(name, synopsis string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: picket %s\n\nFlags:\n", synopsis)
		fs.PrintDefaults()
	}
	return fs
}

// parseFlags parses args; it returns (code, false) when the command must
// stop: 0 after -h, 2 after a bad flag or stray argument.
func parseFlags(fs *flag.FlagSet, args []string, allowArgs bool) (int, bool) {
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return 0, false
		}
		return 2, false
	}
	if !allowArgs && fs.NArg() > 0 {
		fmt.Fprintf(fs.Output(), "picket %s: unexpected argument %q\n", fs.Name(), fs.Arg(0))
		fs.Usage()
		return 2, false
	}
	return 0, true
}

// parseConfigFlags parses a subcommand's flags, then loads the
// configuration file its -config flag names (path, read after parsing). When
// ok is false, the problem was printed and code is the exit code.
func parseConfigFlags(fs *flag.FlagSet, args []string, path *string, stderr io.Writer) (f *config.File, code int, ok bool) {
	if code, ok := parseFlags(fs, args, false); !ok {
		return nil, code, false
	}
	f, err := config.Load(*path)
	if err != nil {
		fmt.Fprintf(stderr, "picket: %v\n", err)
		return nil, 1, false
	}
	return f, 0, true
}

func cmdVersion(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("version", "version", stderr)
	if code, ok := parseFlags(fs, args, false); !ok {
		return code
	}
	fmt.Fprintf(stdout, "picket %s\n", version)
	return 0
}
