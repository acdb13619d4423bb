package config

import "time"

// Participation is the part of [reputation.ksn] that says what Picket may
// tell the cloud (docs/ksn.md, docs/privacy.md): nothing unless the
// administrator opts in. It is
// embedded in ReputationKSN, so its keys sit in [reputation.ksn]. cmd/picket
// maps it into stats.Config. In kpsn mode nothing is ever sent, whatever
// these keys say.
type Participation struct {
	// Participation sends anonymized statistics to the cloud server every
	// Interval; default false.
	Participation bool `toml:"participation"`
	// Samples is "off" (the default), "full" (files up to SamplesMaxSize) or
	// "full-or-part" (larger files as their first SamplesMaxSize bytes,
	// marked partial). Samples are only sent when Participation is on too.
	Samples string `toml:"samples"`
	// SamplesMaxSize is the largest sample sent whole; default "8MiB".
	SamplesMaxSize Size `toml:"samples_max_size"`
	// SamplesMinClients is how many distinct clients must download a file
	// within SamplesWindow before its sample is taken; default 2 (1: the
	// first download).
	SamplesMinClients int `toml:"samples_min_clients"`
	// SamplesWindow is how long after a file's first download the
	// downloads of other clients count; default "24h", "1m" to "720h".
	SamplesWindow Duration `toml:"samples_window"`
	// Interval is how often a statistics batch is cut and sent; default
	// "1h", at least "1m".
	Interval Duration `toml:"interval"`
	// QueueDir holds batches and samples waiting to be sent, relative to
	// the config file; default "data/participation".
	QueueDir string `toml:"queue_dir"`
	// QueueMax is how many batches, and how many samples, may wait in
	// QueueDir; the oldest is dropped first. Default 48.
	QueueMax int `toml:"queue_max"`
	// StateFile keeps the runtime choice (switches changed through the
	// admin API) and the installation identifier across restarts, relative
	// to the config file; default "data/participation.json".
	StateFile string `toml:"state_file"`
	// MinClients withholds a file hash or URL hash seen by fewer distinct
	// clients in an interval; default 2 (1 withholds nothing).
	MinClients int `toml:"min_clients"`
}

func (c *Participation) defaults() {
	c.Samples = "off"
	c.SamplesMaxSize = 8 << 20
	c.SamplesMinClients = 2
	c.SamplesWindow = Duration(24 * time.Hour)
	c.Interval = Duration(time.Hour)
	c.QueueDir = "data/participation"
	c.QueueMax = 48
	c.StateFile = "data/participation.json"
	c.MinClients = 2
}

func (c *Participation) validate(p *problems) {
	p.oneOf("reputation.ksn.samples", "value", c.Samples, "off", "full", "full-or-part")
	if c.SamplesMaxSize < 1<<10 || c.SamplesMaxSize > 256<<20 {
		p.add("reputation.ksn.samples_max_size", "must be between 1KiB and 256MiB, got %d bytes", c.SamplesMaxSize)
	}
	if c.SamplesMinClients < 1 || c.SamplesMinClients > 1000 {
		p.add("reputation.ksn.samples_min_clients", "must be between 1 and 1000, got %d", c.SamplesMinClients)
	}
	if c.SamplesWindow.D() < time.Minute || c.SamplesWindow.D() > 720*time.Hour {
		p.add("reputation.ksn.samples_window", "must be between 1m and 720h, got %s", c.SamplesWindow.D())
	}
	if c.Interval.D() < time.Minute || c.Interval.D() > 7*24*time.Hour {
		p.add("reputation.ksn.interval", "must be between 1m and 168h, got %s", c.Interval.D())
	}
	if c.QueueDir == "" {
		p.add("reputation.ksn.queue_dir", "must not be empty")
	}
	if c.QueueMax < 1 || c.QueueMax > 100_000 {
		p.add("reputation.ksn.queue_max", "must be between 1 and 100000, got %d", c.QueueMax)
	}
	if c.StateFile == "" {
		p.add("reputation.ksn.state_file", "must not be empty")
	}
	if c.MinClients < 1 || c.MinClients > 1000 {
		p.add("reputation.ksn.min_clients", "must be between 1 and 1000, got %d", c.MinClients)
	}
}
