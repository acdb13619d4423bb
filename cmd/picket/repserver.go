package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/picket-proxy/picket/reputation/server"
	"github.com/picket-proxy/picket/stats"
	"github.com/rs/zerolog"
)

// cmdRepserver runs a reputation server until SIGINT or SIGTERM; SIGHUP
// reloads a cloud server's feeds.
func cmdRepserver(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "stats" {
		return cmdRepserverStats(args[1:], stdout, stderr)
	}
	fs := newFlagSet("repserver", "repserver -role cloud|private -feeds DIR -listen ADDR [-upstream URL] [-token T] [-tls-cert FILE -tls-key FILE] [-data DIR] | repserver stats -data DIR", stderr)
	var o repserverFlags
	o.define(fs)
	if code, ok := parseFlags(fs, args, false); !ok {
		return code
	}
	r, err := server.ParseRole(o.role)
	if err == nil {
		err = o.check(r)
	}
	if err != nil {
		fmt.Fprintf(stderr, "picket repserver: %s\n", err)
		fs.Usage()
		return 2
	}
	if err := runRepserver(r, &o, stdout, stderr); err != nil {
		fmt.Fprintf(stderr, "picket repserver: %v\n", err)
		return 1
	}
	return 0
}

// repserverFlags are the flags of "picket repserver".
type repserverFlags struct {
	role, feeds, listen, upstream, token, upToken, certFile, keyFile, data string
	ttl, negTTL, syncEvery, minWait, poll                                  time.Duration
	history                                                                int
	verbose                                                                bool
}

func (o *repserverFlags) define(fs *flag.FlagSet) {
	fs.StringVar(&o.role, "role", "", "cloud (serves its feeds) or private (mirrors -upstream)")
	fs.StringVar(&o.feeds, "feeds", "", "cloud: feed directory with feeds.toml; private: directory for the mirror's snapshot")
	fs.StringVar(&o.listen, "listen", "127.0.0.1:8844", "listen address")
	fs.StringVar(&o.upstream, "upstream", "", "private: base URL of the cloud server to mirror")
	fs.StringVar(&o.token, "token", os.Getenv("PICKET_REPSERVER_TOKEN"), "bearer token clients must send (default $PICKET_REPSERVER_TOKEN; empty: none)")
	fs.StringVar(&o.upToken, "upstream-token", os.Getenv("PICKET_UPSTREAM_TOKEN"), "private: bearer token sent upstream (default $PICKET_UPSTREAM_TOKEN)")
	fs.StringVar(&o.certFile, "tls-cert", "", "serve HTTPS with this certificate (PEM)")
	fs.StringVar(&o.keyFile, "tls-key", "", "private key of -tls-cert (PEM)")
	fs.DurationVar(&o.ttl, "ttl", server.DefaultTTL, "positive cache duration given to clients")
	fs.DurationVar(&o.negTTL, "negative-ttl", server.DefaultNegativeTTL, "negative cache duration given to clients")
	fs.DurationVar(&o.syncEvery, "sync", server.DefaultSyncEvery, "private: how often to ask the upstream for updates (its minimum wait wins when longer)")
	fs.DurationVar(&o.minWait, "min-wait", server.DefaultMinWait, "cloud: the least time mirrors must wait between update requests")
	fs.IntVar(&o.history, "history", server.DefaultHistory, "cloud: updates kept for mirrors' incremental downloads")
	fs.DurationVar(&o.poll, "poll", 5*time.Second, "cloud: how often to check the feeds for changes (0: SIGHUP only)")
	fs.BoolVar(&o.verbose, "v", false, "log every request (debug level)")
	fs.StringVar(&o.data, "data", "", "cloud: directory where participating installations' statistics and samples are stored (see docs/privacy.md); empty: not accepted")
}

// check reports flags that do not go together with role r.
func (o *repserverFlags) check(r server.Role) error {
	switch {
	case r == server.RoleCloud && o.feeds == "":
		return errors.New("-role cloud needs -feeds DIR")
	case r == server.RolePrivate && o.upstream == "":
		return errors.New("-role private needs -upstream URL")
	case r == server.RoleCloud && o.upstream != "":
		return errors.New("-upstream is for -role private")
	case r == server.RolePrivate && o.data != "":
		return errors.New("-data is for -role cloud")
	case (o.certFile == "") != (o.keyFile == ""):
		return errors.New("-tls-cert and -tls-key go together")
	}
	return nil
}

// runRepserver serves as a reputation server with role r until SIGINT or
// SIGTERM.
func runRepserver(r server.Role, o *repserverFlags, stdout, stderr io.Writer) error {
	level := zerolog.InfoLevel
	if o.verbose {
		level = zerolog.DebugLevel
	}
	log := zerolog.New(stderr).Level(level).With().Timestamp().Logger()
	poll := o.poll
	if poll == 0 {
		poll = -1
	}
	scfg := server.Config{
		Role: r, Feeds: o.feeds, Upstream: o.upstream, UpstreamToken: o.upToken, Token: o.token,
		TTL: o.ttl, NegativeTTL: o.negTTL, SyncEvery: o.syncEvery, Poll: poll, MinWait: o.minWait, History: o.history,
	}
	if o.data != "" {
		intake, err := stats.NewIntake(stats.IntakeConfig{Dir: o.data}, log)
		if err != nil {
			return err
		}
		scfg.Intake = intake
	}
	srv, err := server.New(scfg, log)
	if err != nil {
		return err
	}
	defer srv.Close()
	ln, err := net.Listen("tcp", o.listen)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "picket repserver (%s) listening on %s\n", r, ln.Addr())

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP) // before serving: a SIGHUP never finds Go's default action
	defer signal.Stop(hup)
	go reloadOn(ctx, hup, srv, log)
	if err := srv.Serve(ctx, ln, o.certFile, o.keyFile, 10*time.Second); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	log.Info().Msg("repserver stopped")
	return nil
}

// reloadOn reloads srv's feeds on every signal from hup until ctx ends.
func reloadOn(ctx context.Context, hup <-chan os.Signal, srv *server.Server, log zerolog.Logger) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
			if err := srv.Reload(); err != nil {
				log.Error().Err(err).Msg("reload failed; keeping the current database")
			}
		}
	}
}

// cmdRepserverStats is "picket repserver stats -data DIR": what a cloud
// server's intake has learnt, top unknown hashes by prevalence first.
func cmdRepserverStats(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("repserver stats", "repserver stats -data DIR [-top N]", stderr)
	data := fs.String("data", "", "the cloud server's -data directory")
	top := fs.Int("top", 20, "hashes listed of each kind")
	if code, ok := parseFlags(fs, args, false); !ok {
		return code
	}
	if *data == "" {
		fmt.Fprintln(stderr, "picket repserver stats: -data DIR is required")
		fs.Usage()
		return 2
	}
	s, err := stats.Summarize(*data, *top)
	if err != nil {
		fmt.Fprintf(stderr, "picket repserver stats: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "batches %d from %d installations; requests %d, blocked %d; samples stored %d\n",
		s.Batches, s.Installations, s.Requests, s.Blocked, s.Samples)
	for _, l := range []struct {
		title string
		list  []stats.Prevalence
	}{{"unknown executables", s.Unknown}, {"detected files", s.Detected}} {
		fmt.Fprintf(stdout, "\ntop %s by prevalence:\n", l.title)
		if len(l.list) == 0 {
			fmt.Fprintln(stdout, "  (none)")
			continue
		}
		fmt.Fprintf(stdout, "  %-64s  %-10s %13s %8s  %s\n", "sha256", "type", "installations", "count", "sample")
		for _, p := range l.list {
			sample := "-"
			switch {
			case p.Sample && p.Partial:
				sample = "partial"
			case p.Sample:
				sample = "full"
			}
			fmt.Fprintf(stdout, "  %-64s  %-10s %13d %8d  %s\n", p.SHA256, p.Type, p.Installations, p.Count, sample)
		}
	}
	return 0
}
