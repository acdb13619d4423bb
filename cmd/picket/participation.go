package main

import (
	"fmt"
	"net/netip"

	"github.com/picket-proxy/picket/config"
	"github.com/picket-proxy/picket/proxy"
	"github.com/picket-proxy/picket/reputation"
	"github.com/picket-proxy/picket/stats"
	"github.com/rs/zerolog"
)

// participationConfig maps [reputation] and [reputation.ksn] into
// stats.Config. rep, if not nil, gives the lookup counters.
func participationConfig(f *config.File, rep *reputation.Client) (stats.Config, error) {
	k := f.Reputation.KSN
	samples, err := stats.ParseSamples(k.Samples)
	if err != nil {
		return stats.Config{}, fmt.Errorf("%s: reputation.ksn.samples: %w", f.Path, err)
	}
	cfg := stats.Config{
		KSN:               f.Reputation.Mode == "ksn",
		Server:            k.Server,
		Token:             k.Token,
		File:              stats.Settings{Participation: k.Participation.Participation, Samples: samples},
		SamplesMaxSize:    int64(k.SamplesMaxSize),
		Interval:          k.Interval.D(),
		QueueDir:          f.Resolve(k.QueueDir),
		QueueMax:          k.QueueMax,
		StateFile:         f.Resolve(k.StateFile),
		MinClients:        k.MinClients,
		SamplesMinClients: k.SamplesMinClients,
		SamplesWindow:     k.SamplesWindow.D(),
		Version:           version,
	}
	if rep != nil {
		cfg.Lookups = rep.Stats
	}
	return cfg, nil
}

// newParticipation returns the participation of serve: it aggregates proxy
// events and, only in ksn mode with participation on, sends statistics (and
// samples) to the cloud. The caller runs it (go p.Run(ctx)) and Closes it.
func newParticipation(f *config.File, log zerolog.Logger, rep *reputation.Client) (*stats.Participation, error) {
	cfg, err := participationConfig(f, rep)
	if err != nil {
		return nil, err
	}
	p, err := stats.New(cfg, log)
	if err != nil {
		return nil, fmt.Errorf("%s: reputation.ksn: %w", f.Path, err)
	}
	return p, nil
}

// participationSettings are the switches of a (reloaded) configuration
// file, for Participation.Reload.
func participationSettings(f *config.File) stats.Settings {
	s, _ := stats.ParseSamples(f.Reputation.KSN.Samples) // validated by config
	return stats.Settings{Participation: f.Reputation.KSN.Participation.Participation, Samples: s}
}

// reloadParticipation applies a reloaded file to participation: first the
// mode, server and token (a reload into KPSN mode stops all sending), then
// the switches.
func reloadParticipation(p *stats.Participation, f *config.File) {
	const who = "configuration file (reload)"
	k := f.Reputation.KSN
	p.SetCloud(stats.Cloud{KSN: f.Reputation.Mode == "ksn", Server: k.Server, Token: k.Token}, who)
	_ = p.Reload(participationSettings(f), who)
}

// observeEvent is the proxy's Observe hook for participation: it passes on
// only what statistics need. User names, cookies, headers, bodies, status
// codes, byte counts, durations, rule names and incident numbers are not
// even handed over; the URL is hashed (without query) only for detections
// and the client address only counts distinct clients, in memory.
func observeEvent(p *stats.Participation) func(proxy.Event) {
	return func(e proxy.Event) {
		se := stats.Event{Action: e.Action, Verdict: e.Verdict, Category: e.Category, Source: e.Source,
			Stage: e.Stage, Tunnel: e.Tunnel, URL: e.URL, Client: e.Client}
		if e.Upload != nil {
			// Where a person sent a file of their own is not a malware
			// address, and the file's hash is theirs: statistics take
			// neither the URL nor anything of the upload's scan.
			se.URL = ""
			if e.Scan == nil && e.Stage == "scan" {
				se.Verdict, se.Category, se.Source = "", "", ""
			}
		}
		if s := e.Scan; s != nil {
			se.Scan = &stats.Scan{Type: s.Type, Result: s.Result, SHA256: s.SHA256, Size: s.Size, Executable: s.Executable,
				Threat: s.Threat, Source: s.Source}
		}
		p.Observe(se)
	}
}

// sampleOf describes a scanned download by client for the sample queue.
func sampleOf(client netip.Addr, e proxy.ScanEvent) stats.Sample {
	return stats.Sample{SHA256: e.SHA256, Size: e.Size, Type: e.Type, Result: e.Result, Active: e.Active, Client: client}
}
