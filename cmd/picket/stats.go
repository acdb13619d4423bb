package main

import (
	"fmt"
	"io"
	"text/tabwriter"

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
	f, code, ok := parseConfigFlags(fs, args[1:], path, stderr)
	if !ok {
		return code
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
	if err := previewSamples(p, st, stderr); err != nil {
		fmt.Fprintf(stderr, "picket: %v\n", err)
		return 1
	}
	_, _ = stdout.Write(data)
	return 0
}

// previewSamples lists the samples waiting to be sent: hash, type, size,
// whether only the first bytes go, and why the file could attack. Never
// their content. It goes to w (stderr), so stdout stays the batch, byte
// for byte.
func previewSamples(p *stats.Participation, st stats.Status, w io.Writer) error {
	queued, err := p.QueuedSamples()
	if err != nil {
		return err
	}
	if len(queued) == 0 {
		switch {
		case st.Samples == stats.SamplesOff:
			fmt.Fprintln(w, "picket: samples are off: none are taken.")
		case !st.SendingSamples:
			fmt.Fprintln(w, "picket: samples are on but not sent (participation is off, or KPSN mode): none are queued.")
		default:
			fmt.Fprintln(w, "picket: no samples are queued.")
		}
		return nil
	}
	fmt.Fprintf(w, "picket: %d samples queued, sent after the batch (file bytes, gzip; see docs/privacy.md):\n", len(queued))
	tw := tabwriter.NewWriter(w, 2, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "  SHA256\tTYPE\tSIZE\tSENT\tREASON")
	for _, m := range queued {
		sent := "whole"
		if m.Partial {
			sent = "first bytes"
		}
		fmt.Fprintf(tw, "  %s\t%s\t%d\t%s\t%s\n", m.SHA256, m.Type, m.Size, sent, m.Reason)
	}
	return tw.Flush()
}
