package main

import (
	"fmt"
	"sync/atomic"
	"time"

	"github.com/picket-proxy/picket/config"
	"github.com/picket-proxy/picket/reputation"
	"github.com/picket-proxy/picket/reputation/db"
	"github.com/rs/zerolog"
)

// reputationClock is the reputation clients' clock (verdict TTLs, the
// circuit breaker's cooldown); nil means the wall clock. Only tests set it,
// before serve starts, to move past a TTL without sleeping.
var reputationClock func() time.Time

// newReputationClient maps [reputation] into a reputation.Client: ksn →
// the cloud server; kpsn → the private server, or the embedded database
// loaded from kpsn.database when no server is set, its URL sources
// downloaded as fetch says (one-shot commands pass Manual: they use the
// last good copies). The caller owns the client and must Close it (that
// stops the embedded database's watcher and downloads).
func newReputationClient(f *config.File, log zerolog.Logger, fetch db.FetchConfig) (*reputation.Client, error) {
	r := f.Reputation
	cfg := reputation.Config{
		Allow:           r.Allow,
		Block:           r.Block,
		Timeout:         r.Timeout.D(),
		CacheSize:       r.CacheSize,
		BreakerFailures: r.BreakerFailures,
		BreakerCooldown: r.BreakerCooldown.D(),
		Now:             reputationClock,
	}
	if r.Fail == "closed" {
		cfg.Fail = reputation.FailClosed
	}
	var client atomic.Pointer[reputation.Client] // for the embedded database's OnChange
	server, token := r.KPSN.Server, r.KPSN.Token
	if r.Mode == "ksn" {
		server, token = r.KSN.Server, r.KSN.Token
	}
	switch {
	case server != "":
		rem, err := reputation.NewRemote(reputation.RemoteConfig{Server: server, Token: token})
		if err != nil {
			return nil, err
		}
		cfg.Backend = rem
	default: // kpsn without a server: the embedded database
		poll := r.KPSN.Reload.D()
		if poll == 0 {
			poll = -1 // SIGHUP only
		}
		dir, created, err := feedDir(f)
		if err != nil {
			return nil, err
		}
		if created {
			log.Info().Str("dir", dir).Msg("created the feed directory with Picket's built-in demo feeds")
		}
		// New data (a feed downloaded or edited): verdicts cached from the
		// old database must not outlive it. (A lookup that read the old
		// database just before the swap may still cache its answer for
		// its TTL.)
		onChange := func(_, _ *db.DB) {
			if c := client.Load(); c != nil {
				c.Flush()
			}
		}
		compiled := r.KPSN.Compiled
		if compiled != "" && compiled != "-" {
			compiled = f.Resolve(compiled)
		}
		st, err := db.Open(db.Config{Dir: dir, Poll: poll, Fetch: fetch, OnChange: onChange, Compiled: compiled}, log)
		if err != nil {
			return nil, fmt.Errorf("embedded reputation database: %w", err)
		}
		cfg.Backend = st
	}
	c, err := reputation.New(cfg, log)
	if err != nil {
		if cl, ok := cfg.Backend.(*db.Store); ok {
			cl.Close()
		}
		return nil, err
	}
	client.Store(c)
	log.Info().Str(reputation.LogMode, r.Mode).Str(reputation.LogBackend, backendName(r.Mode, server)).Str(reputation.LogPolicy, r.Fail).
		Msg("reputation client ready")
	return c, nil
}

func backendName(mode, server string) string {
	switch {
	case server == "":
		return "embedded database"
	case mode == "ksn":
		return "cloud server"
	}
	return "private server"
}
