package main

import (
	"fmt"
	"io"

	"github.com/picket-proxy/picket/config"
	"github.com/picket-proxy/picket/stats"
	"github.com/rs/zerolog"
)

// cmdStats is "picket stats preview": it prints exactly the next statistics
// batch (the oldest queued one, or the current interval so far as the
// running proxy last checkpointed it), through the code that sends it,
// minus the network. It writes nothing.
func cmdStats(args []string, stdout, stderr io.Writer) int {
	const synopsis = "stats preview [-config FILE]"
	if len(args) == 0 || args[0] != "preview" {
		if len(args) > 0 && (args[0] == "-h" || args[0] == "-help" || args[0] == "--help") {
			fmt.Fprintf(stdout, "Usage: picket %s\n\n  preview  print the next statistics batch exactly as it would be sent (see docs/privacy.md)\n", synopsis)
			return 0
		}
		fmt.Fprintf(stderr, "Usage: picket %s\n", synopsis)
		return 2
	}
	fs := newFlagSet("stats preview", synopsis, stderr)
	path := fs.String("config", "config.toml", "configuration file")
	if code, ok := parseFlags(fs, args[1:], false); !ok {
		return code
	}
	f, err := config.Load(*path)
	if err != nil {
		fmt.Fprintf(stderr, "picket: %v\n", err)
		return 1
	}
	cfg, err := participationConfig(f, nil)
	if err != nil {
		fmt.Fprintf(stderr, "picket: %v\n", err)
		return 1
	}
	cfg.ReadOnly = true
	p, err := stats.New(cfg, zerolog.Nop())
	if err != nil {
		fmt.Fprintf(stderr, "picket: %v\n", err)
		return 1
	}
	data, err := p.Preview()
	if err != nil {
		fmt.Fprintf(stderr, "picket: %v\n", err)
		return 1
	}
	st := p.Status()
	switch {
	case st.Mode == "kpsn":
		fmt.Fprintf(stderr, "picket: KPSN mode: nothing is ever sent; this is what KSN participation would send.\n")
	case !st.Sending:
		fmt.Fprintf(stderr, "picket: participation is off: nothing is sent; this is what would be sent if it were on.\n")
	default:
		fmt.Fprintf(stderr, "picket: participation is on: this batch goes to %s (gzip) at %s or soon after.\n",
			f.Reputation.KSN.Server, st.NextBatch.Format("2006-01-02 15:04 MST"))
	}
	_, _ = stdout.Write(data)
	return 0
}
