package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/picket-proxy/picket/config"
	"github.com/picket-proxy/picket/reputation"
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
	Error    string `json:"error,omitempty"`
}

// cmdLookup prints the verdict of each URL or hex file hash. It exits 1
// when a lookup fails, 2 on usage errors.
func cmdLookup(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("lookup", "lookup [-config FILE] [-json] URL|HASH ...", stderr)
	path := fs.String("config", "config.toml", "configuration file")
	asJSON := fs.Bool("json", false, "print one JSON object a line")
	verbose := fs.Bool("v", false, "log to stderr")
	if code, ok := parseFlags(fs, args, true); !ok {
		return code
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
	c, err := newReputationClient(f, log)
	if err != nil {
		fmt.Fprintf(stderr, "picket lookup: %v\n", err)
		return 1
	}
	defer c.Close()

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
		fmt.Fprintf(stdout, "%s\tsource=%s\n", line, res.Source)
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
