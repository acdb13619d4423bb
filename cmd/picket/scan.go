package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/picket-proxy/picket/config"
	"github.com/picket-proxy/picket/reputation/db"
	"github.com/picket-proxy/picket/scanner"
	"github.com/rs/zerolog"
)

// scanLine is one line of "picket scan -json".
type scanLine struct {
	File string `json:"file"`
	*scanner.Result
	Reputation string `json:"reputation,omitempty"`
	Error      string `json:"error,omitempty"`
}

// cmdScan runs the download scanning pipeline on local files. It exits 1
// when a file is blocked (malicious, or a bomb or oversize file that the
// configuration blocks) or cannot be scanned, 2 on usage errors.
func cmdScan(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("scan", "scan [-config FILE] [-json] [-local] [-encoding CODING] FILE...", stderr)
	path := fs.String("config", "config.toml", "configuration file")
	asJSON := fs.Bool("json", false, "print one JSON object a line")
	local := fs.Bool("local", false, "local signatures only: do not ask the anti-virus engines or the reputation service")
	encoding := fs.String("encoding", "", "the files' Content-Encoding (gzip, br, deflate, zstd), as a proxy would see it")
	verbose := fs.Bool("v", false, "log to stderr")
	if code, ok := parseFlags(fs, args, true); !ok {
		return code
	}
	if fs.NArg() == 0 {
		fmt.Fprintln(stderr, "picket scan: want at least one file")
		fs.Usage()
		return 2
	}
	f, err := loadConfigOrDefault(*path, fs)
	if err != nil {
		fmt.Fprintf(stderr, "picket scan: %v\n", err)
		return 1
	}
	log := zerolog.Nop()
	if *verbose {
		log = zerolog.New(zerolog.ConsoleWriter{Out: stderr}).With().Timestamp().Logger()
	}

	// 1. The scanner, as serve builds it.
	cfg, rep, err := scannerConfig(f.Scanner, f.Resolve)
	if err != nil {
		fmt.Fprintf(stderr, "picket scan: %v\n", err)
		return 1
	}
	for _, b := range rep.Bad {
		fmt.Fprintf(stderr, "picket scan: warning: skipped signature line %s\n", b)
	}
	if !*local {
		engines, closeEngines, err := newEngines(f.Scanner, log)
		if err != nil {
			fmt.Fprintf(stderr, "picket scan: %v (use -local to scan without the engines)\n", err)
			return 1
		}
		defer closeEngines()
		cfg.Engines = engines
		c, err := newReputationClient(f, log, db.FetchConfig{Manual: true})
		if err != nil {
			fmt.Fprintf(stderr, "picket scan: %v (use -local to scan without it)\n", err)
			return 1
		}
		defer c.Close()
		cfg.Reputation = c
	}
	s, err := scanner.New(cfg)
	if err != nil {
		fmt.Fprintf(stderr, "picket scan: %v\n", err)
		return 1
	}

	// 2. Each file.
	code := 0
	enc := json.NewEncoder(stdout)
	for _, name := range fs.Args() {
		res, err := scanFile(s, name, *encoding)
		line := scanLine{File: name, Result: &res}
		if res.Reputation.Source != 0 {
			line.Reputation = res.Reputation.String()
		}
		if err != nil {
			line.Error, line.Result = err.Error(), nil
		}
		if err != nil || res.Blocked {
			code = 1
		}
		if *asJSON {
			enc.Encode(line)
			continue
		}
		fmt.Fprintln(stdout, scanText(line))
	}
	return code
}

// scanFile scans one file as a download would be.
func scanFile(s *scanner.Scanner, name, encoding string) (scanner.Result, error) {
	fh, err := os.Open(name)
	if err != nil {
		return scanner.Result{}, err
	}
	defer fh.Close()
	size := int64(-1)
	if st, err := fh.Stat(); err == nil && st.Mode().IsRegular() {
		size = st.Size()
	}
	sc := s.NewScan(scanner.Meta{ContentEncoding: encoding, Size: size, Name: filepath.Base(name)})
	defer sc.Close()
	if _, err := sc.ReadFrom(fh); err != nil && !errors.Is(err, scanner.ErrTooLarge) {
		return scanner.Result{}, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	return sc.Finish(ctx)
}

func scanText(l scanLine) string {
	if l.Error != "" {
		return fmt.Sprintf("%s\terror: %s", l.File, l.Error)
	}
	r := l.Result
	var b strings.Builder
	fmt.Fprintf(&b, "%s\t%s", l.File, r.Verdict)
	if r.Blocked {
		b.WriteString(" (blocked)")
	}
	add := func(k, v string) {
		if v != "" {
			fmt.Fprintf(&b, "\t%s=%s", k, v)
		}
	}
	add("threat", r.Threat)
	add("member", r.Member)
	if r.Source != scanner.SourceNone {
		add("source", r.Source.String())
	}
	add("engine", r.Engine)
	if r.Partial {
		add("partial", "true")
	}
	if r.FalseAlarm {
		add("false_alarm", "true")
	}
	add("reason", r.Reason)
	add("active_content", r.Active.String())
	add("incomplete", r.Incomplete)
	add("reputation", l.Reputation)
	add("type", r.Type.String())
	if r.Verdict != scanner.VerdictOversize {
		add("sha256", fmt.Sprintf("%x", r.Sums.SHA256))
	}
	return b.String()
}

// scannerConfig maps [scanner] into a scanner.Config and loads the
// signature databases; paths are resolved against the config file's
// directory. The caller sets Reputation. Mode is the proxy's concern
// (scanner.Trickle serves "trickle").
func scannerConfig(c config.ScannerSection, resolve func(string) string) (scanner.Config, *scanner.SignatureReport, error) {
	globs := make([]string, len(c.Signatures))
	for i, g := range c.Signatures {
		globs[i] = resolve(g)
	}
	sigs, rep, err := scanner.LoadSignatures(globs)
	if err != nil {
		return scanner.Config{}, nil, fmt.Errorf("scanner.signatures: %w", err)
	}
	return scanner.Config{
		MaxSize:            int64(c.MaxSize),
		BlockOversize:      c.Oversize == "block",
		MemoryThreshold:    int64(c.MemoryThreshold),
		MemoryBudget:       int64(c.MemoryBudget),
		TempDir:            resolve(c.TempDir),
		MaxConcurrent:      c.MaxConcurrent,
		Signatures:         sigs,
		PassArchiveBombs:   !c.BlockArchiveBombs,
		TrickleHold:        int64(c.TrickleHold.Bytes),
		TrickleHoldPercent: c.TrickleHold.Percent,
		CacheTTL:           cacheTTL(c.CacheTTL.D()),
		CacheSize:          c.CacheSize,
		Archive: scanner.ArchiveLimits{
			MaxDepth:    c.Archive.MaxDepth,
			MaxMembers:  c.Archive.MaxMembers,
			MaxExpanded: int64(c.Archive.MaxExpanded),
			MaxRatio:    c.Archive.MaxRatio,
		},
	}, rep, nil
}

// cacheTTL maps cache_ttl to scanner.Config.CacheTTL: "0s" turns the cache
// off (negative there).
func cacheTTL(d time.Duration) time.Duration {
	if d == 0 {
		return -1
	}
	return d
}
