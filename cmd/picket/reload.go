package main

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/picket-proxy/picket/config"
	"github.com/picket-proxy/picket/policy"
	"github.com/picket-proxy/picket/reputation"
	"github.com/picket-proxy/picket/reputation/db"
)

// filter is what a reload swaps as one piece: the reputation client and the
// rules engine that asks it, built from one version of the config file.
type filter struct {
	file   *config.File
	rep    *reputation.Client
	engine *policy.Engine
}

// filters holds the current filter. Requests load it once per decision, so
// a reload never changes the rules under a request in flight, and open
// tunnels and downloads are not touched.
type filters struct {
	cur  atomic.Pointer[filter]
	mu   sync.Mutex // one reload at a time
	path string
	log  zerolog.Logger
	// fetch is how the embedded database downloads its URL sources, for
	// every reputation client a reload builds.
	fetch db.FetchConfig

	// onReload, if set, is told each newly applied file (participation
	// settings follow the file).
	onReload func(*config.File)

	reloads, failures atomic.Uint64
	lastErr           atomic.Pointer[string]
}

// retireAfter is how long a replaced reputation client stays open for
// lookups that started before the reload.
const retireAfter = 30 * time.Second

// newFilters builds the first filter from f.
func newFilters(f *config.File, log zerolog.Logger, fetch db.FetchConfig) (*filters, error) {
	rep, err := newReputationClient(f, log, fetch)
	if err != nil {
		return nil, err
	}
	fl, err := buildFilter(f, rep)
	if err != nil {
		rep.Close()
		return nil, err
	}
	fs := &filters{path: f.Path, log: log, fetch: fetch}
	fs.cur.Store(fl)
	return fs, nil
}

func buildFilter(f *config.File, rep *reputation.Client) (*filter, error) {
	pol, err := config.PolicyConfig(f.Rules, &f.Policy, &f.TLS.TLSPolicy, true)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", f.Path, err)
	}
	engine, err := policy.New(pol, rep, nil)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", f.Path, err)
	}
	return &filter{file: f, rep: rep, engine: engine}, nil
}

// current returns the filter in force.
func (fs *filters) current() *filter { return fs.cur.Load() }

// reload re-reads the config file, validates it fully and swaps rules,
// lists, TLS policy, reputation settings and feeds at once. An invalid file
// changes nothing: the error is logged, counted and returned.
func (fs *filters) reload(who string) error {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	err := fs.swap()
	if err != nil {
		fs.failures.Add(1)
		msg := err.Error()
		fs.lastErr.Store(&msg)
		fs.log.Error().Err(err).Str("by", who).Msg("reload rejected: the running configuration stays in force")
		return err
	}
	fs.reloads.Add(1)
	fs.lastErr.Store(nil)
	fs.log.Info().Str("by", who).Msg("configuration reloaded")
	return nil
}

func (fs *filters) swap() error {
	f, err := config.Load(fs.path)
	if err != nil {
		return err
	}
	old := fs.current()
	rep := old.rep
	newRep := !reflect.DeepEqual(old.file.Reputation, f.Reputation)
	if newRep {
		if rep, err = newReputationClient(f, fs.log, fs.fetch); err != nil {
			return err
		}
	} else if err := rep.Reload(); err != nil { // feeds re-read, caches cleared
		return fmt.Errorf("reputation feeds: %w", err)
	}
	nf, err := buildFilter(f, rep)
	if err != nil {
		if newRep {
			rep.Close()
		}
		return err
	}
	fs.cur.Store(nf)
	if fs.onReload != nil {
		fs.onReload(f)
	}
	if newRep {
		time.AfterFunc(retireAfter, func() { old.rep.Close() })
	}
	for _, s := range restartOnly(old.file, f) {
		fs.log.Warn().Str("section", s).Msg("this part of the configuration changed but takes effect only after a restart")
	}
	return nil
}

// restartOnly names the sections a reload does not apply.
func restartOnly(a, b *config.File) []string {
	var out []string
	for name, pair := range map[string][2]any{
		"proxy":   {a.Proxy, b.Proxy},
		"admin":   {a.Admin, b.Admin},
		"log":     {a.Log, b.Log},
		"scanner": {a.Scanner, b.Scanner},
		"auth":    {a.Auth, b.Auth}, // the htpasswd and groups files reload themselves
		// Built once by serve: the transparent listeners, the PAC handler,
		// the parent proxies (proxy.Upstream, shared with the feeds).
		"transparent": {a.Transparent, b.Transparent},
		"pac":         {a.PAC, b.PAC},
		"upstream":    {a.Upstream, b.Upstream},
		"tls (certificate authority, roots)": {
			[]any{a.TLS.CACert, a.TLS.CAKey, a.TLS.CAName, a.TLS.LeafValidity, a.TLS.CertCacheSize, a.TLS.ExtraRoots},
			[]any{b.TLS.CACert, b.TLS.CAKey, b.TLS.CAName, b.TLS.LeafValidity, b.TLS.CertCacheSize, b.TLS.ExtraRoots},
		},
	} {
		if !reflect.DeepEqual(pair[0], pair[1]) {
			out = append(out, name)
		}
	}
	return out
}

// close closes the current reputation client.
func (fs *filters) close() error {
	if f := fs.current(); f != nil {
		return f.rep.Close()
	}
	return errors.New("no filter")
}

// reputationOf looks up file hashes with the reputation client in force,
// so that the scanner follows reloads too.
type reputationOf struct{ fs *filters }

func (r reputationOf) Lookup(ctx context.Context, q reputation.Query) (reputation.Verdict, error) {
	return r.fs.current().rep.Lookup(ctx, q)
}
