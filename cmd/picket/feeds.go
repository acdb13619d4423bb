package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/rs/zerolog"

	"github.com/picket-proxy/picket/admin"
	"github.com/picket-proxy/picket/config"
	"github.com/picket-proxy/picket/proxy"
	"github.com/picket-proxy/picket/reputation"
	"github.com/picket-proxy/picket/reputation/db"
)

// addressLists answers the proxy's address checks (proxy.AddressBlocker)
// from the feeds' address lists of the embedded database in force; with a
// remote reputation server there are none.
type addressLists struct{ fs atomic.Pointer[filters] }

var _ proxy.AddressBlocker = (*addressLists)(nil)

// use makes the lists follow fs (and its reloads).
func (a *addressLists) use(fs *filters) { a.fs.Store(fs) }

func (a *addressLists) db() *db.DB {
	fs := a.fs.Load()
	if fs == nil {
		return nil // still starting: the first downloads are not checked against lists not yet loaded
	}
	st, ok := fs.current().rep.Backend().(*db.Store)
	if !ok {
		return nil
	}
	return st.DB()
}

// Version changes with every database the embedded store loads.
func (a *addressLists) Version() uint64 {
	if d := a.db(); d != nil {
		return d.Version()
	}
	return 0
}

// Blocked finds ip in the address lists: a network listed with a blocking
// verdict (unwanted, phishing, malware) blocks, unless another lists it
// clean.
func (a *addressLists) Blocked(ip netip.Addr) (proxy.Decision, bool) {
	d := a.db()
	if d == nil {
		return proxy.Decision{}, false
	}
	m, ok := d.Networks().Lookup(ip)
	if !ok || !m.Verdict.Kind.Blocks() {
		return proxy.Decision{}, false
	}
	threat := m.Verdict.ThreatName
	if threat == "" {
		threat = "listed network " + m.Network.String()
	}
	return proxy.Decision{Action: proxy.Block, Verdict: m.Verdict.Kind.String(), VerdictSource: reputation.SourceDatabase.String(),
		Category: m.Verdict.Category, Threat: threat, Rule: "feeds." + m.Source, Stage: "protection"}, true
}

// feedStatus is the embedded database's sources for the admin API (none
// with a remote reputation server).
func feedStatus(fs *filters) []admin.Feed {
	st, ok := fs.current().rep.Backend().(*db.Store)
	if !ok {
		return nil
	}
	return adminFeeds(st.Sources())
}

func adminFeeds(ss []db.SourceStatus) []admin.Feed {
	out := make([]admin.Feed, 0, len(ss))
	for _, s := range ss {
		f := admin.Feed{Name: s.Name, Format: s.Format, URL: s.URL, Path: s.Path, Entries: s.Entries, BadLines: s.BadLines,
			Missing: s.Missing, LastSuccess: s.LastSuccess, LastChange: s.LastChange, LastAttempt: s.LastAttempt,
			NextAttempt: s.NextAttempt, LastError: s.LastError, LastErrorAt: s.LastErrorAt, Failures: s.Failures,
			Errors: s.Errors, StaleAfterSeconds: int64(s.StaleAfter / time.Second), Stale: s.Stale}
		if !s.LastSuccess.IsZero() {
			age := int64(s.Age / time.Second)
			f.AgeSeconds = &age
		}
		out = append(out, f)
	}
	return out
}

// cmdFeeds is "picket feeds list|update|check".
func cmdFeeds(args []string, stdout, stderr io.Writer) int {
	usage := func(w io.Writer) {
		fmt.Fprintf(w, `Usage: picket feeds <command> [flags]

Commands:
  list   [-config FILE] [-dir DIR] [-json]           the sources of the feed directory and their state
  update [-config FILE] [-dir DIR] [-force] [NAME…]  download URL sources now (all, or those named)
  check  [-strict] DIR                               validate a feed directory offline

The feed directory is [reputation.kpsn] database of the configuration unless -dir names one.
`)
	}
	if len(args) == 0 {
		usage(stderr)
		return 2
	}
	switch args[0] {
	case "list":
		return cmdFeedsList(args[1:], stdout, stderr)
	case "update":
		return cmdFeedsUpdate(args[1:], stdout, stderr)
	case "check":
		return cmdFeedsCheck(args[1:], stdout, stderr)
	case "-h", "-help", "--help", "help":
		usage(stdout)
		return 0
	}
	fmt.Fprintf(stderr, "picket feeds: unknown command %q\n\n", args[0])
	usage(stderr)
	return 2
}

// feedsSetup reads the configuration (defaults if config.toml is absent
// and -config was not given) and the feed directory's manifest.
func feedsSetup(name string, args []string, stderr io.Writer, extra func(*flag.FlagSet)) (*feedsEnv, int, bool) {
	fs := newFlagSet("feeds "+name, "feeds "+name+" [-config FILE] [-dir DIR] …", stderr)
	path := fs.String("config", "config.toml", "configuration file (feed directory, upstream settings)")
	dir := fs.String("dir", "", "feed directory (default: [reputation.kpsn] database)")
	if extra != nil {
		extra(fs)
	}
	if code, ok := parseFlags(fs, args, name == "update"); !ok {
		return nil, code, false
	}
	f, err := loadConfigOrDefault(*path, fs)
	if err != nil {
		fmt.Fprintf(stderr, "picket feeds %s: %v\n", name, err)
		return nil, 1, false
	}
	d := *dir
	if d == "" {
		d = f.Resolve(f.Reputation.KPSN.Database)
	}
	m, err := db.ReadManifest(d)
	if err != nil {
		fmt.Fprintf(stderr, "picket feeds %s: %v\n", name, err)
		return nil, 1, false
	}
	return &feedsEnv{dir: d, manifest: m, cfg: f, args: fs.Args()}, 0, true
}

// feedsEnv is what the feeds subcommands work on.
type feedsEnv struct {
	dir      string
	manifest *db.Manifest
	cfg      *config.File
	args     []string // source names
}

// cmdFeedsList prints each source with its state: local files are
// counted, downloads described from their cache.
func cmdFeedsList(args []string, stdout, stderr io.Writer) int {
	var asJSON *bool
	env, code, ok := feedsSetup("list", args, stderr, func(fs *flag.FlagSet) {
		asJSON = fs.Bool("json", false, "print the state as JSON (the admin API's \"feeds\")")
	})
	if !ok {
		return code
	}
	m := env.manifest
	f := db.NewFetcher(db.FetcherConfig{Dir: env.dir}, zerolog.Nop())
	rep := &db.Report{}
	for i := range m.Sources {
		s := &m.Sources[i]
		if s.Remote() {
			continue // described by its fetch state
		}
		r, err := m.Count(s)
		if err != nil {
			fmt.Fprintf(stderr, "picket feeds list: %v\n", err)
			return 1
		}
		rep.Sources = append(rep.Sources, r)
	}
	now := time.Now()
	feeds := adminFeeds(db.Statuses(m, rep, f, now))
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(feeds); err != nil {
			return 1
		}
		return 0
	}
	fmt.Fprintf(stdout, "Feed directory %s\n\n", env.dir)
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tFORMAT\tENTRIES\tBAD\tUPDATED\tNEXT\tSTATE\tFROM")
	for _, x := range feeds {
		from, next := x.Path, "-"
		if x.URL != "" {
			from = x.URL
			if !x.NextAttempt.IsZero() {
				next = until(now, x.NextAttempt)
			}
		}
		last := "never"
		if x.AgeSeconds != nil {
			last = shortDuration(time.Duration(*x.AgeSeconds)*time.Second) + " ago"
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%s\t%s\t%s\t%s\n", x.Name, x.Format, x.Entries, x.BadLines, last, next, feedState(x), from)
	}
	tw.Flush()
	if len(m.Disabled) > 0 {
		fmt.Fprintf(stdout, "\nDisabled (enabled = false in %s):\n", db.ManifestName)
		tw = tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		for _, d := range m.Disabled {
			from := d.Path
			if d.Remote() {
				from = d.DisplayURL()
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\n", d.Name, d.Format, from)
		}
		tw.Flush()
	}
	return 0
}

// feedState is one word (and the last error when failing).
func feedState(f admin.Feed) string {
	switch {
	case f.Missing && f.LastError != "":
		return "no copy: " + f.LastError
	case f.Missing:
		return "not downloaded yet"
	case f.Stale:
		return "STALE"
	case f.Failures > 0:
		return fmt.Sprintf("failing (%d×): %s", f.Failures, f.LastError)
	}
	return "ok"
}

// shortDuration is "45s", "29m", "3h12m" or "5d".
func shortDuration(d time.Duration) string {
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d/time.Second))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d/time.Minute))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh%02dm", int(d/time.Hour), int(d%time.Hour/time.Minute))
	}
	return fmt.Sprintf("%dd", int(d/(24*time.Hour)))
}

func until(now, t time.Time) string {
	if !t.After(now) {
		return "due"
	}
	return "in " + shortDuration(t.Sub(now))
}

// cmdFeedsUpdate downloads URL sources now, through the same destination
// policy as the proxy's traffic. A running Picket loads the new copies at
// its next check of the feeds (reputation.kpsn.reload) or on SIGHUP.
func cmdFeedsUpdate(args []string, stdout, stderr io.Writer) int {
	var force *bool
	env, code, ok := feedsSetup("update", args, stderr, func(fs *flag.FlagSet) {
		force = fs.Bool("force", false, "download in full, without conditional headers")
	})
	if !ok {
		return code
	}
	pcfg, err := proxyConfig(env.cfg)
	if err != nil {
		fmt.Fprintf(stderr, "picket feeds update: %v\n", err)
		return 1
	}
	names := env.args
	if len(names) == 0 {
		for _, s := range env.manifest.Sources {
			if s.Remote() {
				names = append(names, s.Name)
			}
		}
		if len(names) == 0 {
			fmt.Fprintf(stdout, "%s has no URL sources\n", env.dir)
			return 0
		}
	}
	up, err := proxy.NewUpstream(pcfg)
	if err != nil {
		fmt.Fprintf(stderr, "picket feeds update: %s: %v\n", env.cfg.Path, err)
		return 1
	}
	f := db.NewFetcher(db.FetcherConfig{Dir: env.dir, HTTPClient: &http.Client{Transport: up}, UserAgent: "Picket/" + version}, zerolog.Nop())
	code = 0
	for _, name := range names {
		r, err := f.Update(context.Background(), name, *force)
		switch {
		case errors.Is(err, db.ErrUnknownSource):
			fmt.Fprintf(stderr, "picket feeds update: %s: no such URL source in %s\n", name, env.dir)
			code = 1
		case err != nil:
			fmt.Fprintf(stderr, "picket feeds update: %v\n", err)
			return 1
		case r.Outcome == db.Failed:
			fmt.Fprintf(stdout, "%s: failed, keeping the last good copy (%d entries): %v\n", name, r.Entries, r.Err)
			code = 1
		default:
			fmt.Fprintf(stdout, "%s: %s, %d entries\n", name, r.Outcome, r.Entries)
		}
	}
	return code
}

// cmdFeedsCheck validates a feed directory offline: feeds.toml, then
// every source's file (a download's last good copy, if any).
func cmdFeedsCheck(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("feeds check", "feeds check [-strict] DIR", stderr)
	strict := fs.Bool("strict", false, "bad lines fail the check too")
	if code, ok := parseFlags(fs, args, true); !ok {
		return code
	}
	if fs.NArg() != 1 {
		fmt.Fprintln(stderr, "picket feeds check: want one feed directory")
		fs.Usage()
		return 2
	}
	dir := fs.Arg(0)
	m, err := db.ReadManifest(dir)
	if err != nil {
		fmt.Fprintf(stderr, "picket feeds check: %v\n", err)
		return 1
	}
	code := 0
	entries, bad := 0, 0
	for i := range m.Sources {
		s := &m.Sources[i]
		r, err := m.Count(s)
		switch {
		case err != nil:
			fmt.Fprintf(stdout, "%s: ERROR %v\n", s.Name, err)
			code = 1
			continue
		case r.Missing:
			fmt.Fprintf(stdout, "%s: %s, not downloaded yet (%s)\n", s.Name, s.Format, s.DisplayURL())
			continue
		}
		entries, bad = entries+r.Entries, bad+r.BadLines
		fmt.Fprintf(stdout, "%s: %s, %d entries, %d bad lines\n", s.Name, s.Format, r.Entries, r.BadLines)
		for j, b := range r.Bad {
			if j == 5 {
				fmt.Fprintf(stdout, "  … %d more\n", r.BadLines-5)
				break
			}
			fmt.Fprintf(stdout, "  %s\n", b)
		}
		if r.BadLines > 0 && *strict {
			code = 1
		}
	}
	for _, d := range m.Disabled {
		fmt.Fprintf(stdout, "%s: %s, disabled\n", d.Name, d.Format)
	}
	fmt.Fprintf(stdout, "%d sources, %d entries, %d bad lines: %s\n", len(m.Sources), entries, bad, map[bool]string{true: "ok", false: "FAILED"}[code == 0])
	return code
}
