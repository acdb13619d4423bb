package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"syscall"

	"github.com/picket-proxy/picket/config"
	"github.com/picket-proxy/picket/proxy"
	"github.com/picket-proxy/picket/scanner"
)

func cmdServe(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("serve", "serve [-config FILE]", stderr)
	path := fs.String("config", "config.toml", "configuration file")
	if code, ok := parseFlags(fs, args, false); !ok {
		return code
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
	// 1. Configuration and logs.
	f, err := config.Load(path)
	if err != nil {
		return err
	}
	lg, err := openLogs(f.Log, f.Resolve, stdout, stderr)
	if err != nil {
		return err
	}
	defer lg.Close()

	// 2. The listener first: a taken port fails before any other work.
	ln, err := net.Listen("tcp", f.Proxy.Listen)
	if err != nil {
		return fmt.Errorf("proxy.listen: %w", err)
	}
	defer ln.Close()

	// 3. The interception CA, generated on first start.
	ca, generated, err := loadCA(f)
	if err != nil {
		return err
	}
	if generated {
		lg.app.Warn().Str("file", f.Resolve(f.TLS.CACert)).Str("fingerprint", ca.Fingerprint()).
			Msg("generated a new interception CA: install it in clients (picket ca export, or http://<proxy>/ca)")
	}

	// 4. Reputation (KPSN on the embedded database by default) and the
	// administrator's rules.
	fs, err := newFilters(f, lg.app)
	if err != nil {
		return err
	}
	defer fs.close()
	dec := decider{filters: fs, log: lg.app}

	// 5. Participation (KSN only, and only when the administrator said
	// yes): anonymized statistics and samples.
	part, err := newParticipation(f, lg.app, fs.current().rep)
	if err != nil {
		return err
	}
	defer part.Close()
	pctx, stopPart := context.WithCancel(context.Background())
	defer stopPart() // runs before part.Close
	go part.Run(pctx)
	fs.onReload = func(nf *config.File) {
		_ = part.Reload(participationSettings(nf), "configuration file (reload)")
	}

	// 6. Download scanning: local signatures, then the file's reputation
	// through whichever reputation client is in force.
	var scan *scanner.Scanner
	if f.Scanner.Enabled {
		scfg, report, err := scannerConfig(f.Scanner, f.Resolve)
		if err != nil {
			return fmt.Errorf("%s: %w", f.Path, err)
		}
		for _, b := range report.Bad {
			lg.app.Warn().Str("line", b.String()).Msg("skipped a bad signature line")
		}
		scfg.Reputation = reputationOf{fs}
		if scan, err = scanner.New(scfg); err != nil {
			return fmt.Errorf("%s: %w", f.Path, err)
		}
	}

	// 7. The proxy.
	pcfg, err := proxyConfig(f)
	if err != nil {
		return err
	}
	pcfg.Log, pcfg.AccessLog = lg.app, lg.access
	pcfg.CACert = ca.Certificate()
	pcfg.Intercept = func(host string) (*tls.Config, error) { return ca.TLSConfig(host), nil }
	pcfg.Decider = dec
	pcfg.HandshakeFailed = dec.noteHandshakeFailure
	pcfg.Scanner = scan
	if f.Scanner.Mode == "trickle" {
		pcfg.ScanMode = proxy.ScanTrickle
	}
	pcfg.ScanFailClosed = f.Reputation.Fail == "closed"
	pcfg.Observe = observeEvent(part)
	pcfg.WantSample = func(e proxy.ScanEvent) bool { return part.WantSample(sampleOf(e)) }
	pcfg.OfferSample = func(e proxy.ScanEvent, r io.Reader) { part.OfferSample(sampleOf(e), r) }
	srv, err := proxy.New(pcfg)
	if err != nil {
		return err
	}
	if f.Admin.Listen != "" {
		srv.Protect(f.Admin.Listen) // never reachable through the proxy
	}
	lg.app.Info().Str("listen", ln.Addr().String()).Str("version", version).Str("config", path).
		Str("ca_fingerprint", ca.Fingerprint()).Msg("picket started")
	if ready != nil {
		ready <- ln.Addr().String()
	}

	errc := make(chan error, 3)
	go func() { errc <- srv.Serve(ln) }()
	// The transparent gateway's listeners, when configured.
	for _, t := range []struct {
		key, addr string
		serve     func(net.Listener) error
	}{
		{"transparent.http_listen", f.Transparent.HTTPListen, srv.ServeTransparentHTTP},
		{"transparent.https_listen", f.Transparent.HTTPSListen, srv.ServeTransparentHTTPS},
	} {
		if t.addr == "" {
			continue
		}
		tl, err := net.Listen("tcp", t.addr)
		if err != nil {
			_ = srv.Close()
			return fmt.Errorf("%s: %w", t.key, err)
		}
		srv.Protect(tl.Addr().String())
		lg.app.Info().Str("listen", tl.Addr().String()).Str("kind", t.key).Msg("transparent listener started")
		go func() { errc <- t.serve(tl) }()
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
wait:
	for {
		select {
		case err := <-errc:
			return fmt.Errorf("proxy: %w", err)
		case <-hup:
			_ = fs.reload("SIGHUP")
		case <-ctx.Done():
			break wait
		}
	}
	lg.app.Info().Dur("grace", f.Proxy.ShutdownGrace.D()).Msg("shutting down: waiting for in-flight requests")
	sctx, cancel := context.WithTimeout(context.Background(), f.Proxy.ShutdownGrace.D())
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		lg.app.Warn().Err(err).Msg("shutdown")
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	lg.app.Info().Msg("picket stopped")
	return nil
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
		MaxIdleConnsPerHost:   p.MaxIdleConnsPerHost,
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
	for _, r := range p.AllowPorts {
		pr, err := proxy.ParsePortRange(r)
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

// prefixes parses CIDRs and single addresses (validated by config already).
func prefixes(list []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, n := range list {
		pfx, err := netip.ParsePrefix(n)
		if err != nil {
			a, aerr := netip.ParseAddr(n)
			if aerr != nil {
				return nil, fmt.Errorf("%q: %w", n, err)
			}
			pfx = netip.PrefixFrom(a, a.BitLen())
		}
		out = append(out, pfx.Masked())
	}
	return out, nil
}
