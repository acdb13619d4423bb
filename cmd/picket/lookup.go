package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"net/url"
	"os"
	"time"

	"github.com/picket-proxy/picket/config"
	"github.com/picket-proxy/picket/policy"
	"github.com/picket-proxy/picket/reputation"
	"github.com/picket-proxy/picket/reputation/db"
	"github.com/rs/zerolog"
)

// lookupResult is one line of "picket lookup -json".
type lookupResult struct {
	Query    string `json:"query"`
	Verdict  string `json:"verdict"`
	Category string `json:"category,omitempty"`
	Threat   string `json:"threat,omitempty"`
	Source   string `json:"source"`
	TTL      string `json:"ttl,omitempty"`
	// The decision the rules would make for a GET of the URL (not for
	// hashes): the administrator's dry run.
	Decision string `json:"decision,omitempty"`
	Rule     string `json:"rule,omitempty"`
	Stage    string `json:"stage,omitempty"`
	Reason   string `json:"reason,omitempty"`
	Error    string `json:"error,omitempty"`
}

// cmdLookup prints the verdict of each URL or hex file hash. It exits 1
// when a lookup fails, 2 on usage errors.
func cmdLookup(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("lookup", "lookup [-config FILE] [-json] URL|HASH ...", stderr)
	path := fs.String("config", "config.toml", "configuration file")
	asJSON := fs.Bool("json", false, "print one JSON object a line")
	verbose := fs.Bool("v", false, "log to stderr")
	client := fs.String("client", "127.0.0.1", "client address the rules see in the dry run")
	method := fs.String("method", "GET", "HTTP method the rules see in the dry run")
	if code, ok := parseFlags(fs, args, true); !ok {
		return code
	}
	clientAddr, perr := netip.ParseAddr(*client)
	if perr != nil {
		fmt.Fprintf(stderr, "picket lookup: -client: %v\n", perr)
		return 2
	}
	if fs.NArg() == 0 {
		fmt.Fprintln(stderr, "picket lookup: want at least one URL or hash")
		fs.Usage()
		return 2
	}
	f, err := loadConfigOrDefault(*path, fs)
	if err != nil {
		fmt.Fprintf(stderr, "picket lookup: %v\n", err)
		return 1
	}
	log := zerolog.Nop()
	if *verbose {
		log = zerolog.New(zerolog.ConsoleWriter{Out: stderr}).With().Timestamp().Logger()
	}
	c, err := newReputationClient(f, log, db.FetchConfig{Manual: true})
	if err != nil {
		fmt.Fprintf(stderr, "picket lookup: %v\n", err)
		return 1
	}
	defer c.Close()
	fl, err := buildFilter(f, c)
	if err != nil {
		fmt.Fprintf(stderr, "picket lookup: %v\n", err)
		return 1
	}

	code := 0
	enc := json.NewEncoder(stdout)
	for _, arg := range fs.Args() {
		q := reputation.Query{URL: arg}
		if reputation.IsFileHash(arg) {
			sum, _ := reputation.ParseFileHash(arg)
			q = reputation.Query{}
			switch len(sum) {
			case 16:
				q.MD5 = sum
			case 20:
				q.SHA1 = sum
			default:
				q.SHA256 = sum
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		v, err := c.Lookup(ctx, q)
		cancel()
		res := lookupResult{Query: arg, Verdict: v.Kind.String(), Category: v.Category, Threat: v.ThreatName, Source: v.Source.String()}
		if v.TTL > 0 {
			res.TTL = v.TTL.String()
		}
		if err != nil {
			res.Error, code = err.Error(), 1
		} else if q.URL != "" {
			res.Decision, res.Rule, res.Stage, res.Reason = dryRun(fl, clientAddr, *method, arg)
		}
		if *asJSON {
			enc.Encode(res)
			continue
		}
		if err != nil {
			fmt.Fprintf(stdout, "%s\terror: %v\n", arg, err)
			continue
		}
		line := fmt.Sprintf("%s\t%s", arg, res.Verdict)
		if res.Category != "" {
			line += "\tcategory=" + res.Category
		}
		if res.Threat != "" {
			line += "\tthreat=" + res.Threat
		}
		line += "\tsource=" + res.Source
		if res.Decision != "" {
			line += fmt.Sprintf("\tdecision=%s\trule=%s\tstage=%s", res.Decision, res.Rule, res.Stage)
		}
		fmt.Fprintln(stdout, line)
	}
	return code
}

// loadConfigOrDefault loads path; when -config was not given and the
// default file does not exist, it uses the built-in defaults (the embedded
// database in data/feeds of the working directory).
func loadConfigOrDefault(path string, fs *flag.FlagSet) (*config.File, error) {
	explicit := false
	fs.Visit(func(f *flag.Flag) {
		if f.Name == "config" {
			explicit = true
		}
	})
	if !explicit {
		if _, err := os.Stat(path); os.IsNotExist(err) {
			return config.Default(), nil
		}
	}
	return config.Load(path)
}

// dryRun asks the rules what they would do with a request for raw.
func dryRun(fl *filter, client netip.Addr, method, raw string) (decision, rule, stage, reason string) {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		if u, err = url.Parse("http://" + raw); err != nil {
			return "", "", "", ""
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	d, err := fl.engine.Decide(ctx, &policy.Input{Client: client, Method: method, URL: u})
	if err != nil {
		return "", "", "", ""
	}
	return d.Action.String(), d.Rule, d.Stage.String(), d.Reason
}
