package main

import (
	"context"
	"errors"
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
	role := fs.String("role", "", "cloud (serves its feeds) or private (mirrors -upstream)")
	feeds := fs.String("feeds", "", "cloud: feed directory with feeds.toml; private: directory for the mirror's snapshot")
	listen := fs.String("listen", "127.0.0.1:8844", "listen address")
	upstream := fs.String("upstream", "", "private: base URL of the cloud server to mirror")
	token := fs.String("token", os.Getenv("PICKET_REPSERVER_TOKEN"), "bearer token clients must send (default $PICKET_REPSERVER_TOKEN; empty: none)")
	upToken := fs.String("upstream-token", os.Getenv("PICKET_UPSTREAM_TOKEN"), "private: bearer token sent upstream (default $PICKET_UPSTREAM_TOKEN)")
	certFile := fs.String("tls-cert", "", "serve HTTPS with this certificate (PEM)")
	keyFile := fs.String("tls-key", "", "private key of -tls-cert (PEM)")
	ttl := fs.Duration("ttl", server.DefaultTTL, "positive cache duration given to clients")
	negTTL := fs.Duration("negative-ttl", server.DefaultNegativeTTL, "negative cache duration given to clients")
	syncEvery := fs.Duration("sync", server.DefaultSyncEvery, "private: how often to ask the upstream for updates (its minimum wait wins when longer)")
	minWait := fs.Duration("min-wait", server.DefaultMinWait, "cloud: the least time mirrors must wait between update requests")
	history := fs.Int("history", server.DefaultHistory, "cloud: updates kept for mirrors' incremental downloads")
	poll := fs.Duration("poll", 5*time.Second, "cloud: how often to check the feeds for changes (0: SIGHUP only)")
	verbose := fs.Bool("v", false, "log every request (debug level)")
	data := fs.String("data", "", "cloud: directory where participating installations' statistics and samples are stored (see docs/privacy.md); empty: not accepted")
	if code, ok := parseFlags(fs, args, false); !ok {
		return code
	}
	usage := func(msg string) int {
		fmt.Fprintf(stderr, "picket repserver: %s\n", msg)
		fs.Usage()
		return 2
	}
	r, err := server.ParseRole(*role)
	if err != nil {
		return usage(err.Error())
	}
	switch {
	case r == server.RoleCloud && *feeds == "":
		return usage("-role cloud needs -feeds DIR")
	case r == server.RolePrivate && *upstream == "":
		return usage("-role private needs -upstream URL")
	case r == server.RoleCloud && *upstream != "":
		return usage("-upstream is for -role private")
	case r == server.RolePrivate && *data != "":
		return usage("-data is for -role cloud")
	case (*certFile == "") != (*keyFile == ""):
		return usage("-tls-cert and -tls-key go together")
	}
	if *poll == 0 {
		*poll = -1
	}

	level := zerolog.InfoLevel
	if *verbose {
		level = zerolog.DebugLevel
	}
	log := zerolog.New(stderr).Level(level).With().Timestamp().Logger()
	scfg := server.Config{
		Role: r, Feeds: *feeds, Upstream: *upstream, UpstreamToken: *upToken, Token: *token,
		TTL: *ttl, NegativeTTL: *negTTL, SyncEvery: *syncEvery, Poll: *poll, MinWait: *minWait, History: *history,
	}
	if *data != "" {
		intake, err := stats.NewIntake(stats.IntakeConfig{Dir: *data}, log)
		if err != nil {
			fmt.Fprintf(stderr, "picket repserver: %v\n", err)
			return 1
		}
		scfg.Intake = intake
	}
	srv, err := server.New(scfg, log)
	if err != nil {
		fmt.Fprintf(stderr, "picket repserver: %v\n", err)
		return 1
	}
	defer srv.Close()
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		fmt.Fprintf(stderr, "picket repserver: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "picket repserver (%s) listening on %s\n", r, ln.Addr())

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go func() {
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
	}()
	if err := srv.Serve(ctx, ln, *certFile, *keyFile, 10*time.Second); err != nil && !errors.Is(err, http.ErrServerClosed) {
		fmt.Fprintf(stderr, "picket repserver: %v\n", err)
		return 1
	}
	log.Info().Msg("repserver stopped")
	return 0
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
