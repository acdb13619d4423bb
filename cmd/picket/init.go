package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/mattn/go-isatty"
	"github.com/picket-proxy/picket/config"
)

// stdin and stdinIsTerminal are the terminal of "picket init"; tests
// replace them.
var (
	stdin           io.Reader = os.Stdin
	stdinIsTerminal           = func() bool { return isatty.IsTerminal(os.Stdin.Fd()) }
)

// statementSummary is shown before the participation question; the full
// statement is docs/privacy.md.
const statementSummary = `Participation (KSN mode only; off unless you say yes)
  If you participate, Picket sends the cloud reputation service, every hour:
    - counters: requests, verdicts by kind and category, blocks, scans by file type,
      cache hit ratio, lookup failures;
    - SHA-256 hashes of detected files and of unknown executables, with counts;
    - SHA-256 hashes of the URL expressions (host and path, no query) of detections;
    - the Picket version and a random installation identifier you can rotate.
  Never: client IP addresses, user names, cookies, headers, query strings, URLs of
  clean traffic, request or response bodies. A hash seen by fewer than 2 clients
  in an interval is withheld. File samples are a separate switch (off): only of
  unknown files that can attack (programs, scripts, documents with macros or
  active content), downloaded by 2 clients or more; never a plain document.
  In KPSN mode nothing is ever sent. You can change this at any time.
  Full statement: docs/privacy.md. See exactly what would be sent: picket stats preview
`

// cmdInit prepares a new installation: the participation choice, a
// commented config.toml and the interception CA.
func cmdInit(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("init", "init [-dir DIR] [-participate=yes|no] [-mode=ksn|kpsn] [-server URL] [-force]", stderr)
	dir := fs.String("dir", ".", "directory of the new installation (config.toml, data/)")
	participate := fs.String("participate", "", "yes or no: send anonymized statistics (KSN mode only); without it: ask on a terminal, else no")
	mode := fs.String("mode", "", "ksn (cloud) or kpsn (private server or embedded database); without it: ask on a terminal, else kpsn")
	server := fs.String("server", "https://ksn.picket.example", "ksn: the cloud reputation server's URL")
	force := fs.Bool("force", false, "overwrite an existing config.toml")
	if code, ok := parseFlags(fs, args, false); !ok {
		return code
	}
	fail := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "picket init: "+format+"\n", a...)
		return 2
	}
	switch *participate {
	case "", "yes", "no":
	default:
		return fail("-participate must be yes or no, got %q", *participate)
	}
	switch *mode {
	case "", "ksn", "kpsn":
	default:
		return fail("-mode must be ksn or kpsn, got %q", *mode)
	}
	path := filepath.Join(*dir, "config.toml")
	if _, err := os.Stat(path); err == nil && !*force {
		fmt.Fprintf(stderr, "picket init: %s exists; use -force to overwrite it\n", path)
		return 1
	}

	interactive := stdinIsTerminal()
	in := bufio.NewReader(stdin)
	if *mode == "" {
		*mode = "kpsn"
		if interactive {
			fmt.Fprint(stdout, "Reputation service: kpsn (a private server or the embedded database; nothing leaves your network)\nor ksn (the cloud)? [kpsn]: ")
			if a := answer(in); a == "ksn" {
				*mode = "ksn"
			}
		}
	}
	yes := false
	switch {
	case *mode == "kpsn":
		if *participate == "yes" {
			fmt.Fprintln(stderr, "picket init: warning: participation has no effect in KPSN mode: nothing is ever sent; writing participation = false")
		}
	case *participate != "":
		yes = *participate == "yes"
	case interactive:
		fmt.Fprint(stdout, "\n"+statementSummary+"\nParticipate (send anonymized statistics)? [y/N]: ")
		a := answer(in)
		yes = a == "y" || a == "yes"
	default:
		fmt.Fprintln(stderr, "picket init: not a terminal and no -participate flag: participation stays off")
	}

	if err := os.MkdirAll(*dir, 0o750); err != nil {
		fmt.Fprintf(stderr, "picket init: %v\n", err)
		return 1
	}
	if err := os.WriteFile(path, []byte(initConfig(*mode, *server, yes)), 0o640); err != nil {
		fmt.Fprintf(stderr, "picket init: %v\n", err)
		return 1
	}
	f, err := config.Load(path)
	if err != nil {
		fmt.Fprintf(stderr, "picket init: the written configuration does not load: %v\n", err)
		return 1
	}
	ca, generated, err := loadCA(f)
	if err != nil {
		fmt.Fprintf(stderr, "picket init: %v\n", err)
		return 1
	}
	verb := "kept the existing"
	if generated {
		verb = "generated a new"
	}
	state := "off"
	if yes {
		state = "on"
	}
	fmt.Fprintf(stdout, `
Wrote %s (mode %s, participation %s).
%s interception CA: %s
  fingerprint SHA256 %s

Trust the CA in every client that uses the proxy, for example:
  picket ca export -config %s > picket-ca.pem
  Debian/Ubuntu: sudo cp picket-ca.pem /usr/local/share/ca-certificates/picket-ca.crt && sudo update-ca-certificates
  Firefox: Settings > Privacy & Security > Certificates > Import (or policies.json Certificates.Install)
  or open http://<proxy>/ca through the proxy for the install page.
Keep %s secret: whoever has it can impersonate any site to your users.

Start the proxy:  picket serve -config %s
`, path, *mode, state, verb, f.Resolve(f.TLS.CACert), ca.Fingerprint(), path, f.Resolve(f.TLS.CAKey), path)
	if *mode == "ksn" {
		fmt.Fprintf(stdout, "Set [reputation.ksn] server and token in %s before starting. Change participation any time\n(config, or the admin API); see what would be sent: picket stats preview -config %s\n", path, path)
	}
	return 0
}

// answer reads one line, lower-cased and trimmed; "" at end of input.
func answer(r *bufio.Reader) string {
	line, err := r.ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return ""
	}
	return strings.ToLower(strings.TrimSpace(line))
}

// initConfig is the commented config.toml "picket init" writes, based on
// the repository's config.toml.
func initConfig(mode, server string, participate bool) string {
	return fmt.Sprintf(`# Picket configuration, written by "picket init". Every key is documented in
# docs/configuration.md; a key left out takes its default. Durations are
# strings such as "300ms" or "2m", sizes strings such as "64KiB" or "32MiB".

[proxy]
# Where browsers and PAC files point: host:port. Loopback by default; use
# "0.0.0.0:3128" to serve a network (and keep allow_clients tight).
listen = "127.0.0.1:3128"
# Networks allowed to use the proxy. Anyone else gets 403: never an open proxy.
allow_clients = ["127.0.0.0/8", "::1/128", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7", "fe80::/10"]
# Let users reach the intranet (RFC 1918, fc00::/7).
allow_private_destinations = true
# Ports CONNECT tunnels may reach.
allow_ports = ["80", "443", "8080", "8443"]
# Tell origins the client's address in X-Forwarded-For (off: privacy).
forwarded_for = false

[admin]
# Administration API and console: loopback only by default.
listen = "127.0.0.1:9090"

[log]
# debug, info, warn or error.
level = "info"
# Access log, one line per request or tunnel: stdout, stderr, a file path or "off".
access_log = "stdout"
# Keep query strings in logged URLs (off: they often carry personal data).
access_log_query = false

[tls]
# The interception CA, generated by "picket init" (keep the key secret).
ca_cert = "data/ca/picket-ca.pem"
ca_key = "data/ca/picket-ca.key"

[reputation]
# "kpsn": a private server, or the embedded database when [reputation.kpsn]
# server is empty; nothing leaves your network. "ksn": the cloud service.
mode = %q
# What a lookup gives when the service cannot answer in time: "open" or "closed".
fail = "open"

[reputation.ksn]
# The cloud reputation server and its token (ksn mode).
server = %q
token = ""
# Participation: send anonymized statistics to the cloud every interval
# (docs/privacy.md lists every field; "picket stats preview" prints the next
# batch). Voluntary and off by default; no effect in kpsn mode. It can be
# changed at any time here (reload) or through the admin API.
participation = %t
# File samples, only of unknown files that can attack: executables, scripts,
# archives holding one, and documents with active content (macros, embedded
# objects, external templates, PDF JavaScript or actions); never a plain
# document. "off", "full" (files up to samples_max_size) or "full-or-part"
# (larger executables as their first bytes, marked partial). Only with
# participation = true.
samples = "off"
samples_max_size = "8MiB"
# A sample is taken only once samples_min_clients distinct clients have
# downloaded the file within samples_window of its first download.
samples_min_clients = 2
samples_window = "24h"
# How often a batch is sent; the queue keeps up to queue_max batches while
# the cloud is unreachable (the oldest is dropped first).
interval = "1h"
queue_dir = "data/participation"
queue_max = 48
# The runtime choice and the random installation identifier.
state_file = "data/participation.json"
# A hash seen by fewer distinct clients in an interval is withheld.
min_clients = 2

[reputation.kpsn]
# A private reputation server (docs/kpsn.md); empty uses the embedded database.
server = ""
# Feed directory of the embedded database. Left out, it is data/feeds,
# written with Picket's built-in demo feeds on first start; a directory set
# here must exist (docs/feeds.md).
# database = "data/feeds"
`, mode, server, participate)
}
