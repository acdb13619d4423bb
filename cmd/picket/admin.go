package main

import (
	"context"
	"fmt"

	"github.com/rs/zerolog"

	"github.com/picket-proxy/picket/admin"
	"github.com/picket-proxy/picket/auth"
	"github.com/picket-proxy/picket/certs"
	"github.com/picket-proxy/picket/config"
	"github.com/picket-proxy/picket/proxy"
	"github.com/picket-proxy/picket/reputation"
	"github.com/picket-proxy/picket/scanner"
	"github.com/picket-proxy/picket/stats"
)

// adminParts are the live parts the admin server reads and drives. Every
// field may be left nil (a nil interface, not a nil pointer in an
// interface): the status shows that part as absent and its endpoint
// answers 501.
type adminParts struct {
	// Listeners are the addresses Picket listens on (proxy, admin, ...).
	Listeners []admin.Listener
	// CA is the interception CA (*certs.Authority).
	CA interface {
		Fingerprint() string
		Stats() certs.Stats
	}
	// ReputationStats reads the reputation client in force (it is swapped
	// on reload, so pass a func that loads the current one).
	ReputationStats func() reputation.Stats
	// ScannerStats reads the download scanner (scanner.Scanner.Stats; leave
	// nil when scanning is off).
	ScannerStats func() scanner.Stats
	// AuthStats reads proxy authentication (auth.Authenticator.Stats;
	// leave nil when it is off).
	AuthStats func() auth.Stats
	// AutoBypassed lists the auto-bypassed hosts (policy.Engine.AutoBypassed).
	AutoBypassed func() []string
	// OpenConns counts the proxy's client connections (proxy.Server.OpenConns).
	OpenConns func() int
	// Databases reports the reputation databases' versions and sizes.
	Databases func() []admin.Database
	// Feeds reports the embedded database's sources and their freshness.
	Feeds func() []admin.Feed
	// Ready says why Picket is not ready (CA, database, listeners), nil when it is.
	Ready func() error
	// Reload re-reads config.toml and swaps it in, or keeps the old one.
	Reload func(context.Context) error
	// Participation and SetParticipation read and change the participation
	// switches (docs/ksn.md);
	// ParticipationQueue counts the reports waiting to be sent.
	Participation      func() (admin.Participation, error)
	SetParticipation   func(ctx context.Context, p admin.Participation, who string) error
	ParticipationQueue func() int
	// FlushCache empties the verdict and certificate caches.
	FlushCache func() error
	// Parents reports the parent proxies (proxy.Server.Parents).
	Parents func() []proxy.ParentStatus
	// HTTP2Errors counts HTTP/2 client errors (proxy.Server.HTTP2Errors).
	HTTP2Errors func() map[string]int64
	// ProxyProtocol counts connections refused for their PROXY protocol
	// header (ppListener.Errors); nil without the PROXY protocol.
	ProxyProtocol func() map[string]int64
	// AccessLog reads the access log's buffer (logs.AccessStats); nil
	// when the access log is off.
	AccessLog func() LogStats
}

// newAdmin builds the admin server from [admin] (listen in f.Admin, the
// other keys in extra — pass f.Admin.AdminExtra once config.Admin embeds
// it) and the live parts. It loads the token, generating it on first start.
// The caller listens on f.Admin.Listen, sets proxy.Config.Observe to the
// server's Observe, runs Serve and Shutdown.
func newAdmin(f *config.File, extra config.AdminExtra, log zerolog.Logger, parts adminParts) (*admin.Server, error) {
	token := extra.Token
	if token == "" {
		path := f.Resolve(extra.TokenFile)
		var generated bool
		var err error
		token, generated, err = admin.LoadToken(path)
		if err != nil {
			return nil, fmt.Errorf("admin.token_file: %w", err)
		}
		if generated {
			log.Warn().Str("file", path).Msg("generated the admin API token: send it as \"Authorization: Bearer <token>\"")
		}
	}
	allow, err := prefixes(extra.AllowClients)
	if err != nil {
		return nil, fmt.Errorf("admin.allow_clients: %w", err)
	}
	cfg := admin.Config{
		Token:            token,
		Version:          version,
		Mode:             reputationMode(f),
		AllowClients:     allow,
		Recent:           extra.Recent,
		History:          extra.History.D(),
		Databases:        parts.Databases,
		Ready:            parts.Ready,
		Reload:           parts.Reload,
		Participation:    parts.Participation,
		SetParticipation: parts.SetParticipation,
		FlushCache:       parts.FlushCache,
		Log:              log.With().Str("component", "admin").Logger(),
		Sources: admin.Sources{
			AutoBypassed:       parts.AutoBypassed,
			OpenConns:          parts.OpenConns,
			ParticipationQueue: parts.ParticipationQueue,
			Parents:            parts.Parents,
			Feeds:              parts.Feeds,
			HTTP2Errors:        parts.HTTP2Errors,
			ProxyProtocol:      parts.ProxyProtocol,
		},
	}
	if len(parts.Listeners) > 0 {
		ls := parts.Listeners
		cfg.Listeners = func() []admin.Listener { return ls }
	}
	if parts.CA != nil {
		cfg.Fingerprint = parts.CA.Fingerprint()
		cfg.Sources.Certs = parts.CA.Stats
	}
	cfg.Sources.Reputation = parts.ReputationStats
	cfg.Sources.Scanner = parts.ScannerStats
	cfg.Sources.Auth = parts.AuthStats
	if parts.AccessLog != nil {
		read := parts.AccessLog
		cfg.Sources.AccessLog = func() admin.AccessLogStats {
			s := read()
			return admin.AccessLogStats{Waits: uint64(s.Waits), WaitTime: s.WaitTime, Waiting: s.Waiting, Bytes: uint64(s.Bytes),
				Errors: uint64(s.Errors), Lost: uint64(s.Lost), Buffered: s.Buffered}
		}
	}
	return admin.New(cfg)
}

// adminParticipation adapts the participation switches to the admin API: the
// Participation, SetParticipation and ParticipationQueue fields of
// adminParts.
func adminParticipation(p *stats.Participation) (
	get func() (admin.Participation, error),
	set func(context.Context, admin.Participation, string) error,
	queue func() int,
) {
	get = func() (admin.Participation, error) {
		st := p.Status()
		return admin.Participation{
			Participation: st.Participation, Samples: st.Samples.String(), Sending: st.Sending,
			LastSend: st.LastSend, LastError: st.LastError, Queued: st.Queued, Changed: st.Changed, ChangedBy: st.ChangedBy,
			QueuedSamples: st.QueuedSamples, SamplesWaiting: st.SamplesWaiting, SamplesInFlight: st.SamplesInFlight,
			SamplesTaken: st.SamplesTaken, SamplesDropped: st.SamplesDropped,
		}, nil
	}
	set = func(_ context.Context, a admin.Participation, who string) error {
		samples, err := stats.ParseSamples(a.Samples)
		if err != nil {
			return fmt.Errorf("%w: %v", admin.ErrBadParticipation, err)
		}
		_, err = p.Set(stats.Change{Participation: &a.Participation, Samples: &samples, RotateInstallation: a.RotateInstallation, Who: who})
		return err
	}
	queue = func() int { return p.Status().Queued }
	return get, set, queue
}

// reputationMode describes the file's reputation mode and backend for the
// admin status, e.g. "kpsn (embedded database)".
func reputationMode(f *config.File) string {
	r := f.Reputation
	server := r.KPSN.Server
	if r.Mode == "ksn" {
		server = r.KSN.Server
	}
	return fmt.Sprintf("%s (%s)", r.Mode, backendName(r.Mode, server))
}
