package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"runtime/debug"
	"runtime/pprof"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"github.com/picket-proxy/picket/admin"
	"github.com/picket-proxy/picket/auth"
	"github.com/picket-proxy/picket/certs"
	"github.com/picket-proxy/picket/config"
	"github.com/picket-proxy/picket/internal/netaddr"
	"github.com/picket-proxy/picket/proxy"
	"github.com/picket-proxy/picket/reputation"
	"github.com/picket-proxy/picket/reputation/db"
	"github.com/picket-proxy/picket/scanner"
	"github.com/picket-proxy/picket/stats"
)

func cmdServe(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("serve", "serve [-config FILE]", stderr)
	path := fs.String("config", "config.toml", "configuration file")
	cpuprofile := fs.String("cpuprofile", "", "write a CPU profile to this file until exit (diagnostics)")
	if code, ok := parseFlags(fs, args, false); !ok {
		return code
	}
	// Before anything else, since it may restart the process: an invalid
	// file is left for serve to report. The restarted process, which has
	// schedtrace in GODEBUG, skips this (no second read of the file).
	if _, set := godebugValue(os.Getenv("GODEBUG"), "schedtrace"); restartAwake != nil && !set {
		if f, err := config.Load(*path); err == nil && f.Proxy.SchedulerAwake {
			restartAwake(stderr)
		}
	}
	if *cpuprofile != "" {
		pf, err := os.Create(*cpuprofile)
		if err != nil {
			fmt.Fprintf(stderr, "picket: %v\n", err)
			return 1
		}
		defer pf.Close()
		if err := pprof.StartCPUProfile(pf); err != nil {
			fmt.Fprintf(stderr, "picket: %v\n", err)
			return 1
		}
		defer pprof.StopCPUProfile()
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := serve(ctx, *path, stdout, stderr, nil); err != nil {
		fmt.Fprintf(stderr, "picket: %v\n", err)
		return 1
	}
	return 0
}

// serve runs Picket with the configuration in path until ctx ends, then
// shuts down gracefully. ready, if not nil, receives the proxy's address
// once it listens (tests use it).
func serve(ctx context.Context, path string, stdout, stderr io.Writer, ready chan<- string) error {
	p := &instance{path: path}
	var err error

	// 0. The signals run answers, caught from now on: one that arrives
	// during the start-up (which a large feed directory or a slow engine
	// check makes seconds long) is kept for run, not left to its default
	// action, which ends the process.
	p.hup = make(chan os.Signal, 1)
	signal.Notify(p.hup, syscall.SIGHUP)
	defer signal.Stop(p.hup)
	p.reopen = make(chan os.Signal, 1)
	if reopenSignal != nil {
		signal.Notify(p.reopen, reopenSignal)
		defer signal.Stop(p.reopen)
	}

	// 1. Configuration and logs.
	if p.f, err = config.Load(path); err != nil {
		return err
	}
	if p.lg, err = openLogs(p.f.Log, p.f.Resolve, stdout, stderr); err != nil {
		return err
	}
	defer p.lg.Close()
	tuneCollector(p.f.Proxy)

	// 2. The listeners first: a taken port fails before any other work.
	if p.lns, err = listen(p.f, p.lg.app); err != nil {
		return err
	}
	defer p.lns.close()
	if limit, ok := openFileLimit(); ok {
		checkFileLimit(p.f.Proxy, limit, p.lg.app)
	}

	// 3. The interception CA, generated on first start.
	if p.ca, err = openCA(p.f, p.lg.app); err != nil {
		return err
	}

	// 4. Reputation (KPSN on the embedded database by default) and the
	// administrator's rules, swapped as one on reload. The embedded
	// database's URL sources download through the proxy's own way out
	// (one proxy.Upstream, shared with the proxy below): the destination
	// policy, the feeds' address lists and the parent proxies apply to
	// Picket's downloads as to user traffic.
	pcfg, err := proxyConfig(p.f)
	if err != nil {
		return err
	}
	lists := &addressLists{}
	pcfg.BlockAddresses = lists
	pcfg.Log = p.lg.app
	if pcfg.Upstream, err = proxy.NewUpstream(pcfg); err != nil {
		return fmt.Errorf("%s: %w", p.f.Path, err)
	}
	fetch := db.FetchConfig{HTTPClient: &http.Client{Transport: pcfg.Upstream}, UserAgent: "Picket/" + version}
	if p.fs, err = newFilters(p.f, p.lg.app, fetch); err != nil {
		return err
	}
	defer p.fs.close()
	lists.use(p.fs)

	// 5. Participation (KSN only, and only when the administrator said
	// yes): anonymized statistics and samples.
	if p.part, err = newParticipation(p.f, p.lg.app, p.fs.current().rep); err != nil {
		return err
	}
	defer p.part.Close()
	pctx, stopPart := context.WithCancel(context.Background())
	defer stopPart() // runs before part.Close
	go p.part.Run(pctx)
	p.fs.onReload = func(nf *config.File) {
		reloadParticipation(p.part, nf)
		if p.adm != nil {
			p.adm.SetMode(reputationMode(nf))
		}
	}

	// 6. Download scanning: local signatures, then the file's reputation
	// through whichever reputation client is in force. Proxy
	// authentication (htpasswd, directory), before the admin API that
	// reports it.
	var closeEngines func()
	if p.scan, closeEngines, err = newScanner(p.f, p.fs, p.lg.app); err != nil {
		return err
	}
	defer closeEngines()
	if p.authn, err = newAuthenticator(p.f, p.f.Auth, p.lg.app); err != nil {
		return err
	}
	if p.authn != nil {
		defer p.authn.Close()
	}

	// 7. The admin API and console, fed by every finished request.
	if p.lns.admin != nil {
		if p.adm, err = newAdmin(p.f, p.f.Admin.AdminExtra, p.lg.app, p.adminParts()); err != nil {
			return err
		}
		defer p.adm.Close()
	}

	// 8. The proxy.
	if err := p.configureProxy(&pcfg); err != nil {
		return err
	}
	if p.srv, err = proxy.New(pcfg); err != nil {
		return err
	}
	if p.lns.admin != nil {
		p.srv.Protect(p.lns.admin.Addr().String()) // never reachable through the proxy
	}

	// 9. Serve until SIGINT/SIGTERM; SIGHUP reloads.
	if err := p.run(ctx, ready); err != nil {
		return err
	}

	// 10. Graceful shutdown.
	p.shutdown()
	return nil
}

// instance is a running Picket: the parts serve builds, in its order.
type instance struct {
	path  string
	f     *config.File
	lg    *logs
	lns   *listeners
	ca    *certs.Authority
	fs    *filters // reputation and rules, swapped on reload
	part  *stats.Participation
	scan  *scanner.Scanner    // nil when scanning is off
	authn *auth.Authenticator // nil without proxy authentication
	adm   *admin.Server       // nil without an admin listener
	srv   *proxy.Server

	hup    chan os.Signal // SIGHUP: reload
	reopen chan os.Signal // reopenSignal: reopen the log files

	stopping atomic.Bool // shutdown began: not ready
}

// tuneCollector sets the garbage collector from [proxy]: a proxy's live
// heap is small and it allocates per request, so collecting less often
// saves CPU (measured: about 12 % less CPU per small request at 400 than
// at Go's default 100), under a soft memory limit. GOGC and GOMEMLIMIT from
// the environment win.
func tuneCollector(c config.Proxy) {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(c.GCPercent)
	}
	if os.Getenv("GOMEMLIMIT") == "" && c.MemoryLimit > 0 {
		debug.SetMemoryLimit(int64(c.MemoryLimit))
	}
}

// openCA loads the interception CA, generating it on first start (with a
// warning: clients must be told to trust it).
func openCA(f *config.File, log zerolog.Logger) (*certs.Authority, error) {
	ca, generated, err := loadCA(f)
	if err != nil {
		return nil, err
	}
	if generated {
		log.Warn().Str("file", f.Resolve(f.TLS.CACert)).Str("fingerprint", ca.Fingerprint()).
			Msg("generated a new interception CA: install it in clients (picket ca export, or http://<proxy>/ca)")
	}
	return ca, nil
}

// adminParts are the live parts the admin server reads and drives. The
// proxy's own are read through p.srv, set before the admin server serves.
func (p *instance) adminParts() adminParts {
	fs := p.fs
	parts := adminParts{
		Listeners:       p.lns.names(),
		CA:              p.ca,
		ReputationStats: func() reputation.Stats { return fs.current().rep.Stats() },
		AutoBypassed:    func() []string { return fs.current().engine.AutoBypassed() },
		OpenConns:       func() int { return p.srv.OpenConns() },
		Parents:         func() []proxy.ParentStatus { return p.srv.Parents() },
		HTTP2Errors:     func() map[string]int64 { return p.srv.HTTP2Errors() },
		Ready: func() error {
			if p.stopping.Load() {
				return errors.New("shutting down")
			}
			return nil
		},
		Reload:     func(context.Context) error { return fs.reload("admin API") },
		FlushCache: func() error { fs.current().rep.Flush(); return nil },
		Databases:  func() []admin.Database { return embeddedDatabases(fs) },
		Feeds:      func() []admin.Feed { return feedStatus(fs) },
	}
	if p.lns.pp != nil {
		parts.ProxyProtocol = p.lns.pp.Errors
	}
	parts.Participation, parts.SetParticipation, parts.ParticipationQueue = adminParticipation(p.part)
	if p.scan != nil {
		parts.ScannerStats = p.scan.Stats
	}
	if p.authn != nil {
		parts.AuthStats = p.authn.Stats
	}
	if p.lg.accessBuf != nil {
		parts.AccessLog = p.lg.AccessStats
	}
	return parts
}

// embeddedDatabases reports the embedded database in force, if any (a
// remote reputation server reports its own).
func embeddedDatabases(fs *filters) []admin.Database {
	st, ok := fs.current().rep.Backend().(*db.Store)
	if !ok {
		return nil
	}
	d := st.DB()
	if d == nil {
		return nil
	}
	return []admin.Database{{Name: "embedded", Version: d.Version(), Entries: d.Len(), Bytes: d.Bytes(),
		Networks: d.Networks().Len()}}
}

// configureProxy completes pcfg (proxyConfig's settings and the upstream)
// with the running parts: logs, CA, decider, scanner, observers of every
// finished request, PAC and proxy authentication.
func (p *instance) configureProxy(pcfg *proxy.Config) error {
	f := p.f
	pcfg.Log, pcfg.AccessLog = p.lg.app, p.lg.access
	if f.Log.AccessFormat == "squid" {
		pcfg.AccessFormat, pcfg.AccessWriter = proxy.AccessSquid, p.lg.accessOut
	}
	ca := p.ca
	pcfg.CACert = ca.Certificate()
	pcfg.Intercept = func(host string) (*tls.Config, error) { return ca.TLSConfig(host), nil }
	dec := decider{filters: p.fs, log: p.lg.app}
	pcfg.Decider = dec
	pcfg.HandshakeFailed = dec.noteHandshakeFailure
	pcfg.Scanner = p.scan
	if f.Scanner.Mode == "trickle" {
		pcfg.ScanMode = proxy.ScanTrickle
	}
	pcfg.ScanFailClosed = f.Reputation.Fail == "closed"
	pcfg.ScanUploads = p.scan != nil && f.Scanner.ScanUploads()
	part := p.part
	observePart := observeEvent(part)
	pcfg.Observe = observePart
	if adm := p.adm; adm != nil {
		pcfg.Observe = func(e proxy.Event) { adm.Observe(e); observePart(e) }
	}
	pcfg.WantSample = func(client netip.Addr, e proxy.ScanEvent) bool { return part.WantSample(sampleOf(client, e)) }
	pcfg.OfferSample = func(e proxy.ScanEvent, r io.Reader) { part.OfferSample(sampleOf(netip.Addr{}, e), r) }
	var err error
	if pcfg.PAC, err = newPAC(f, f.PAC, p.lg.app); err != nil {
		return err
	}
	if p.authn != nil {
		pcfg.AuthChallenge = p.authn.Challenge()
		pcfg.Authenticate = proxyAuthenticate(p.authn)
	}
	return nil
}

// proxyAuthenticate is the proxy's Authenticate over authn: its errors
// mapped to the proxy's (429 for a rate-limited client, 503 when the
// directory is down).
func proxyAuthenticate(authn *auth.Authenticator) func(client netip.Addr, header string) (string, []string, error) {
	return func(client netip.Addr, header string) (string, []string, error) {
		user, groups, err := authn.Check(client, header)
		var rl *auth.RateLimitedError
		switch {
		case errors.As(err, &rl):
			return "", nil, &proxy.RateLimited{RetryAfter: rl.RetryAfter}
		case errors.Is(err, auth.ErrUnavailable):
			return "", nil, fmt.Errorf("%w: %w", proxy.ErrAuthUnavailable, err)
		}
		return user, groups, err
	}
}

// run serves every listener until ctx ends (nil) or one fails (its error,
// the proxy closed). SIGHUP reloads the configuration, SIGUSR1 reopens the
// log files.
func (p *instance) run(ctx context.Context, ready chan<- string) error {
	errc := p.serveListeners()
	lg := p.lg
	lg.app.Info().Str("listen", p.lns.proxy.Addr().String()).Str("version", version).Str("config", p.path).
		Str("ca_fingerprint", p.ca.Fingerprint()).Bool("scheduler_awake", schedulerAwake(os.Getenv("GODEBUG"))).
		Msg("picket started")
	if ready != nil {
		ready <- p.lns.proxy.Addr().String()
	}
	for {
		select {
		case err := <-errc:
			_ = p.srv.Close()
			return fmt.Errorf("serving: %w", err)
		case <-p.hup:
			err := p.fs.reload("SIGHUP")
			if p.adm != nil {
				p.adm.Metrics().ObserveReload(err)
			}
		case <-p.reopen:
			if err := lg.Reopen(); err != nil {
				lg.app.Error().Err(err).Msg("reopening the log files")
			} else {
				lg.app.Info().Msg("log files reopened")
			}
		case <-ctx.Done():
			return nil
		}
	}
}

// serveListeners serves each listener on its own goroutine; the channel
// receives the error of each that stops.
func (p *instance) serveListeners() <-chan error {
	errc := make(chan error, 4)
	srv, lns := p.srv, p.lns
	go func() { errc <- srv.Serve(lns.proxy) }()
	if lns.http != nil {
		srv.Protect(lns.http.Addr().String())
		go func() { errc <- srv.ServeTransparentHTTP(lns.http) }()
	}
	if lns.https != nil {
		srv.Protect(lns.https.Addr().String())
		go func() { errc <- srv.ServeTransparentHTTPS(lns.https) }()
	}
	if p.adm != nil {
		go func() { errc <- p.adm.Serve(lns.admin) }()
	}
	for _, l := range lns.names() {
		p.lg.app.Info().Str("listener", l.Name).Str("listen", l.Addr).Msg("listening")
	}
	return errc
}

// shutdown stops gracefully: not ready at once; behind a load balancer,
// keep serving for drain_delay while its health check takes the node out
// of rotation (connections close after each response, so clients come back
// through the balancer); then stop accepting and let in-flight work
// finish.
func (p *instance) shutdown() {
	lg, f := p.lg, p.f
	p.stopping.Store(true)
	if d := f.Proxy.DrainDelay.D(); d > 0 {
		p.srv.Drain()
		lg.app.Info().Dur("drain_delay", d).Msg("draining: /readyz answers 503, connections close after each response, still accepting")
		time.Sleep(d)
	}
	lg.app.Info().Dur("grace", f.Proxy.ShutdownGrace.D()).Msg("shutting down: waiting for in-flight requests")
	sctx, cancel := context.WithTimeout(context.Background(), f.Proxy.ShutdownGrace.D())
	defer cancel()
	if err := p.srv.Shutdown(sctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		lg.app.Warn().Err(err).Msg("shutdown")
	}
	if p.adm != nil {
		_ = p.adm.Shutdown(sctx)
	}
	lg.app.Info().Msg("picket stopped")
}

// newScanner builds the download scanner from [scanner] (nil when off) and
// its engines; closeEngines stops them.
func newScanner(f *config.File, fs *filters, log zerolog.Logger) (s *scanner.Scanner, closeEngines func(), err error) {
	if !f.Scanner.Enabled {
		return nil, func() {}, nil
	}
	if dir, err := seedSignatures(f); err != nil {
		return nil, func() {}, err
	} else if dir != "" {
		log.Info().Str("dir", dir).Msg("created the signature directory with Picket's built-in demo signatures")
	}
	scfg, report, err := scannerConfig(f.Scanner, f.Resolve)
	if err != nil {
		return nil, func() {}, fmt.Errorf("%s: %w", f.Path, err)
	}
	for _, b := range report.Bad {
		log.Warn().Str("line", b.String()).Msg("skipped a bad signature line")
	}
	scfg.Reputation = reputationOf{fs}
	if scfg.Engines, closeEngines, err = newEngines(f.Scanner, log); err != nil {
		return nil, closeEngines, fmt.Errorf("%s: %w", f.Path, err)
	}
	if s, err = scanner.New(scfg); err != nil {
		closeEngines()
		return nil, func() {}, fmt.Errorf("%s: %w", f.Path, err)
	}
	return s, closeEngines, nil
}

// proxyConfig maps the file's [proxy] and [tls] sections into proxy.Config.
func proxyConfig(f *config.File) (proxy.Config, error) {
	p := f.Proxy
	c := proxy.Config{
		Via:                   p.Via,
		ForwardedFor:          p.ForwardedFor,
		LogQuery:              f.Log.AccessLogQuery,
		MaxHeaderBytes:        int(p.MaxHeaderBytes),
		ReadHeaderTimeout:     p.ReadHeaderTimeout.D(),
		IdleTimeout:           p.IdleTimeout.D(),
		TunnelIdleTimeout:     p.TunnelIdleTimeout.D(),
		DialTimeout:           p.DialTimeout.D(),
		TLSHandshakeTimeout:   p.TLSHandshakeTimeout.D(),
		ResponseHeaderTimeout: p.ResponseHeaderTimeout.D(),
		UpstreamIdleTimeout:   p.UpstreamIdleTimeout.D(),
		TCPKeepAlive:          p.TCPKeepalive.D(),
		MaxIdleConnsPerHost:   p.MaxIdleConnsPerHost,
		DisableHTTP2:          !p.HTTP2,
		HTTP2MaxStreams:       p.HTTP2MaxStreams,
		MaxConns:              p.MaxConns,
		MaxConnsPerClient:     p.MaxConnsPerClient,
	}
	var err error
	if c.Clients, err = prefixes(p.AllowClients); err != nil {
		return c, fmt.Errorf("proxy.allow_clients: %w", err)
	}
	if c.AllowDestinations, err = prefixes(p.AllowDestinations); err != nil {
		return c, fmt.Errorf("proxy.allow_destinations: %w", err)
	}
	if c.DenyDestinations, err = prefixes(p.DenyDestinations); err != nil {
		return c, fmt.Errorf("proxy.deny_destinations: %w", err)
	}
	c.DenyPrivateDestinations = !p.AllowPrivateDestinations
	if err := upstreamConfig(f.Upstream, &c); err != nil {
		return c, err
	}
	for _, r := range p.AllowPorts {
		pr, err := netaddr.ParsePortRange(r)
		if err != nil {
			return c, fmt.Errorf("proxy.allow_ports: %w", err)
		}
		c.ConnectPorts = append(c.ConnectPorts, pr)
	}
	if len(f.TLS.ExtraRoots) > 0 {
		pool, err := x509.SystemCertPool()
		if err != nil {
			pool = x509.NewCertPool()
		}
		for _, r := range f.TLS.ExtraRoots {
			pem, err := os.ReadFile(f.Resolve(r))
			if err != nil {
				return c, fmt.Errorf("%s: tls.extra_roots: %w", f.Path, err)
			}
			if !pool.AppendCertsFromPEM(pem) {
				return c, fmt.Errorf("%s: tls.extra_roots: %s holds no PEM certificate", f.Path, r)
			}
		}
		c.RootCAs = pool
	}
	return c, nil
}

// prefixes parses CIDRs and single addresses (validated by config already)
// with netaddr.ParsePrefix: an IPv4-mapped network is the IPv4 network it
// maps, or the proxy's checks (on unmapped addresses) would never match it.
func prefixes(list []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, n := range list {
		pfx, err := netaddr.ParsePrefix(n)
		if err != nil {
			return nil, err
		}
		out = append(out, pfx)
	}
	return out, nil
}
