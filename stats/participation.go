package stats

import (
	"bufio"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/maphash"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/picket-proxy/picket/reputation"
	"github.com/rs/zerolog"
)

// Config configures a Participation. Zero values are documented per field.
type Config struct {
	// KSN is true in KSN mode (the cloud). False is KPSN: nothing is ever
	// sent, whatever the switches say.
	KSN bool
	// Server is the cloud reputation server's base URL (http or https).
	Server string
	// Token, if set, is sent as "Authorization: Bearer <token>".
	Token string
	// (A reload changes KSN, Server and Token with SetCloud.)
	// HTTPClient sends batches and samples; nil means one with timeouts
	// that never goes through a proxy.
	HTTPClient *http.Client
	// File are the switches in the configuration file.
	File Settings
	// SamplesMaxSize is the largest sample sent whole, in bytes; 0 means
	// 8 MiB.
	SamplesMaxSize int64
	// Interval is how often a batch is cut; 0 means one hour.
	Interval time.Duration
	// QueueDir holds the queues and the current interval's checkpoint;
	// required.
	QueueDir string
	// QueueMax bounds the batch queue and the sample queue (files each);
	// 0 means 48.
	QueueMax int
	// StateFile keeps the runtime switches and the installation
	// identifier; required.
	StateFile string
	// MinClients withholds hashes seen by fewer distinct clients in an
	// interval; 0 means 2.
	MinClients int
	// SamplesMinClients is how many distinct clients must download a file
	// within SamplesWindow before its sample is taken; 0 means 2.
	SamplesMinClients int
	// SamplesWindow is how long after a file's first download other
	// clients' downloads count towards SamplesMinClients; 0 means 24h.
	SamplesWindow time.Duration
	// Version is the product version sent in batches.
	Version string
	// Lookups returns the reputation client's counters (Client.Stats);
	// nil sends zero lookup counters.
	Lookups func() reputation.Stats
	// ReadOnly reads the state and the queues but writes nothing and
	// starts nothing: for "picket stats preview".
	ReadOnly bool
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Limits.
const (
	maxSampled = 100_000 // hashes remembered as sampled
	// Samples copied from downloads and not yet written to the queue hold
	// at most sampleMemory × SamplesMaxSize bytes, and are at most
	// sampleBacklog files.
	sampleMemory  = 2
	sampleBacklog = 64
	backoffFirst  = 10 * time.Second
	sendTimeout   = 30 * time.Second
)

// Participation aggregates proxy events into statistics and, only when the
// administrator opted in and the mode is KSN, sends them and samples to the
// cloud. Create it with New, call Run in a goroutine, and Close it. Its
// methods are safe for concurrent use.
type Participation struct {
	cfg     Config
	log     zerolog.Logger
	seed    maphash.Seed
	batches queue
	samples queue

	mu          sync.Mutex // guards the fields below; held only briefly, never for I/O
	cloud       Cloud      // the mode, server and token in force (SetCloud)
	agg         *aggregate
	st          state
	lastLookups reputation.Stats
	lastSend    time.Time
	lastErr     string
	failures    int
	nextTry     time.Time
	sampled     map[[32]byte]bool
	seen        *sightings // distinct clients of candidate samples (sightings.go)
	clientKey   []byte     // st.ClientKey, decoded

	saveMu         sync.Mutex // orders state file writes
	queueMu        sync.Mutex // orders queueing with purge: nothing is queued once switched off
	sendMu         sync.Mutex // one sender at a time
	sampleIn       chan pending
	inFlight       atomic.Int64 // bytes of samples copied, not yet written
	inFlightN      atomic.Int64 // how many
	samplesDropped atomic.Uint64
	samplesTaken   atomic.Uint64
	kick           chan struct{} // a sample was queued: send soon
	wg             sync.WaitGroup
	done           chan struct{}
	closeOnce      sync.Once
}

// pending is a sample copied from the proxy, on its way to the queue.
type pending struct {
	meta SampleMeta
	hash [32]byte
	data []byte
}

// New loads the state file (creating it, with a new installation
// identifier, on first start), reconciles it with the configuration file's
// switches and loads the current interval's checkpoint.
func New(cfg Config, log zerolog.Logger) (*Participation, error) {
	if cfg.QueueDir == "" || cfg.StateFile == "" {
		return nil, errors.New("stats: QueueDir and StateFile are required")
	}
	if cfg.SamplesMaxSize <= 0 {
		cfg.SamplesMaxSize = 8 << 20
	}
	if cfg.Interval <= 0 {
		cfg.Interval = time.Hour
	}
	if cfg.QueueMax <= 0 {
		cfg.QueueMax = 48
	}
	if cfg.MinClients <= 0 {
		cfg.MinClients = 2
	}
	if cfg.SamplesMinClients <= 0 {
		cfg.SamplesMinClients = 2
	}
	if cfg.SamplesWindow <= 0 {
		cfg.SamplesWindow = 24 * time.Hour
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: sendTimeout, Transport: &http.Transport{
			Proxy: nil, TLSHandshakeTimeout: 10 * time.Second, ResponseHeaderTimeout: sendTimeout,
			IdleConnTimeout: 90 * time.Second, ForceAttemptHTTP2: true,
		}}
	}
	p := &Participation{
		cfg:     cfg,
		log:     log.With().Str(LogComponent, "participation").Logger(),
		seed:    maphash.MakeSeed(),
		batches: queue{dir: filepath.Join(cfg.QueueDir, "batches"), prefix: "batch-", suffix: ".json", max: cfg.QueueMax},
		samples: queue{dir: filepath.Join(cfg.QueueDir, "samples"), prefix: "sample-", suffix: ".bin", max: cfg.QueueMax},
		sampled: make(map[[32]byte]bool),
		seen:    newSightings(cfg.SamplesWindow),
		kick:    make(chan struct{}, 1),
		done:    make(chan struct{}),
		cloud:   Cloud{KSN: cfg.KSN, Server: cfg.Server, Token: cfg.Token},
	}
	st, found, err := loadState(cfg.StateFile)
	if err != nil {
		return nil, fmt.Errorf("stats: state file: %w", err)
	}
	p.st = st
	if !found {
		p.st = state{Settings: cfg.File, File: cfg.File, Installation: newInstallation(), ClientKey: newClientKey(),
			Changed: cfg.Now().UTC(), ChangedBy: "configuration file (first start)"}
		p.logChange(Settings{}, "configuration file (first start)")
	} else if st.File != cfg.File {
		was := p.st.Settings
		p.st.Settings, p.st.File = cfg.File, cfg.File
		p.st.Changed, p.st.ChangedBy = cfg.Now().UTC(), "configuration file (changed since the last start)"
		p.logChange(was, p.st.ChangedBy)
	}
	p.clientKey, _ = hex.DecodeString(p.st.ClientKey)
	p.agg = newAggregate(cfg.Now())
	if data, err := os.ReadFile(p.checkpointPath()); err == nil {
		var c checkpoint
		if json.Unmarshal(data, &c) == nil && !c.Start.IsZero() {
			p.agg = restore(c)
		}
	}
	p.loadSampled()
	if cfg.Lookups != nil {
		p.lastLookups = cfg.Lookups()
	}
	if !cfg.KSN && p.st.Participation {
		p.log.Warn().Str(LogMode, "kpsn").Msg("participation has no effect in KPSN mode: nothing is ever sent")
	}
	if cfg.ReadOnly {
		return p, nil
	}
	if err := p.saveState(); err != nil {
		return nil, fmt.Errorf("stats: state file: %w", err)
	}
	switch {
	case !p.sending():
		p.purge(&p.batches, &p.samples)
	case !p.sendingSamples():
		p.purge(&p.samples)
	}
	p.sampleIn = make(chan pending, sampleBacklog)
	p.wg.Add(1)
	go p.writeSamples()
	return p, nil
}

func (p *Participation) checkpointPath() string { return filepath.Join(p.cfg.QueueDir, "current.json") }
func (p *Participation) sampledPath() string    { return filepath.Join(p.cfg.QueueDir, "sampled.txt") }

// mode is "ksn" or "kpsn". Callers hold mu or own p.
func (p *Participation) mode() string {
	if p.cloud.KSN {
		return "ksn"
	}
	return "kpsn"
}

// sending reports whether statistics are sent now. Callers hold mu or own p.
func (p *Participation) sending() bool { return p.cloud.KSN && p.st.Participation }

// sendingSamples reports whether samples are sent now.
func (p *Participation) sendingSamples() bool { return p.sending() && p.st.Samples != SamplesOff }

func (p *Participation) logChange(was Settings, by string) {
	p.mu.Lock()
	mode, st := p.mode(), p.st
	p.mu.Unlock()
	p.log.Info().Str(LogMode, mode).Bool(LogParticipation, st.Participation).Stringer(LogSamples, st.Samples).
		Str(LogWas, fmt.Sprintf("participation=%t samples=%s", was.Participation, was.Samples)).Str(LogBy, by).
		Msg("participation settings")
}

// Observe counts one finished request or tunnel. It is O(1), takes a mutex
// only for a few map updates and never does I/O: the proxy calls it on
// every request.
func (p *Participation) Observe(e Event) {
	var uh [32]byte
	if detection(e.Verdict, e.Source) && e.URL != "" {
		uh = urlHash(e.URL)
	}
	var client uint64
	if e.Client.IsValid() {
		client = clientKey(p.seed, e.Client)
	}
	p.mu.Lock()
	p.agg.add(&e, uh, client, p.cfg.MinClients)
	p.mu.Unlock()
}

// foldLookupsLocked adds the reputation client's counters since the last
// call to the aggregate.
func (p *Participation) foldLookupsLocked() {
	if p.cfg.Lookups == nil {
		return
	}
	cur := p.cfg.Lookups()
	last := p.lastLookups
	p.lastLookups = cur
	if cur.Lookups < last.Lookups { // the client was replaced
		last = reputation.Stats{}
	}
	p.agg.addLookups(reputation.Stats{Lookups: cur.Lookups - last.Lookups, CacheHits: cur.CacheHits - last.CacheHits,
		Failures: cur.Failures - last.Failures})
}

// batchLocked builds the next batch of the current aggregate.
func (p *Participation) batchLocked() Batch {
	b := p.agg.batch(p.cfg.MinClients, p.cfg.Interval)
	b.Installation, b.Version, b.Seq = p.st.Installation, p.cfg.Version, p.st.Seq+1
	b.Queue.Dropped = p.st.Dropped
	return b
}

// Preview returns exactly the next batch that would be sent, as sent
// (before gzip): the oldest queued batch, or else the current interval's
// batch as it stands. It goes through the same code as sending, minus the
// network, and changes nothing.
func (p *Participation) Preview() ([]byte, error) {
	names, err := p.batches.list()
	if err != nil {
		return nil, err
	}
	if len(names) > 0 {
		return os.ReadFile(names[0])
	}
	p.mu.Lock()
	p.foldLookupsLocked()
	b := p.batchLocked()
	p.mu.Unlock()
	return b.Encode()
}

// Tick does one round of the background work, at time Now: it cuts the
// batch when the interval is over (queueing it only when participation is
// on in KSN mode, otherwise discarding it), checkpoints the current
// interval, and sends what is queued unless backing off. Run calls it;
// tests call it with an injected clock.
func (p *Participation) Tick(ctx context.Context) error {
	now := p.cfg.Now()
	p.mu.Lock()
	p.foldLookupsLocked()
	var data []byte
	var seq uint64
	if !now.Before(p.agg.start.Add(p.cfg.Interval)) {
		b := p.batchLocked()
		if p.sending() {
			var err error
			if data, err = b.Encode(); err != nil {
				p.mu.Unlock()
				return err
			}
			seq = b.Seq
			p.st.Seq, p.st.Dropped = b.Seq, 0
		}
		p.agg = newAggregate(now)
	}
	cp := p.agg.checkpoint()
	p.mu.Unlock()

	var errs []error
	if data != nil {
		dropped, err := p.queue(&p.batches, p.sending, seq, data)
		switch {
		case errors.Is(err, errSwitchedOff):
			p.log.Debug().Uint64(LogSeq, seq).Msg("statistics batch discarded: participation was switched off")
		case err != nil:
			errs = append(errs, fmt.Errorf("stats: queue batch %d: %w", seq, err))
		default:
			p.log.Debug().Uint64(LogSeq, seq).Msg("statistics batch queued")
		}
		if dropped > 0 {
			p.log.Warn().Int(LogDropped, dropped).Msg("batch queue full: dropped the oldest")
		}
		p.mu.Lock()
		p.st.Dropped += uint64(dropped)
		p.mu.Unlock()
		errs = append(errs, p.saveState())
	}
	if cpData, err := json.Marshal(cp); err == nil {
		errs = append(errs, writeAtomic(p.checkpointPath(), cpData))
	}
	errs = append(errs, p.send(ctx))
	return errors.Join(errs...)
}

// Run calls Tick every minute (or every Interval, if shorter) until ctx
// ends, and sends a sample as soon as it is queued.
func (p *Participation) Run(ctx context.Context) {
	every := min(p.cfg.Interval, time.Minute)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		var err error
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			err = p.Tick(ctx)
		case <-p.kick:
			err = p.send(ctx)
		}
		if err != nil && ctx.Err() == nil {
			p.log.Debug().Err(err).Msg("participation round")
		}
	}
}

// Change is a change of the switches at runtime.
type Change struct {
	// Participation and Samples, when not nil, are the new values.
	Participation *bool
	Samples       *Samples
	// RotateInstallation replaces the installation identifier with a new
	// random one: later batches cannot be linked to earlier ones.
	RotateInstallation bool
	// Who says who asked and from where, for the log and the status:
	// e.g. "admin API: alice from 10.0.0.5".
	Who string
}

// Set applies a runtime change, persists it atomically in the state file
// (it survives restarts) and logs it with Change.Who. It takes effect for
// the next batch; turning participation off deletes what is queued.
func (p *Participation) Set(c Change) (Status, error) {
	if c.Who == "" {
		c.Who = "unknown"
	}
	p.mu.Lock()
	old := p.st
	if c.Participation != nil {
		p.st.Participation = *c.Participation
	}
	if c.Samples != nil {
		if *c.Samples > SamplesFullOrPart {
			p.st = old
			p.mu.Unlock()
			return p.Status(), fmt.Errorf("stats: invalid samples setting %d", *c.Samples)
		}
		p.st.Samples = *c.Samples
	}
	if c.RotateInstallation {
		p.st.Installation, p.st.ClientKey = newInstallation(), newClientKey()
	}
	p.st.Changed, p.st.ChangedBy = p.cfg.Now().UTC(), c.Who
	stopped := p.cloud.KSN && old.Participation && !p.st.Participation
	samplesStopped := p.cloud.KSN && old.Participation && old.Samples != SamplesOff && !p.sendingSamples()
	kpsn := !p.cloud.KSN && p.st.Participation && c.Participation != nil
	p.mu.Unlock()
	if err := p.saveState(); err != nil {
		p.mu.Lock()
		p.st = old
		p.mu.Unlock()
		return p.Status(), fmt.Errorf("stats: state file: %w", err)
	}
	p.mu.Lock()
	if c.RotateInstallation || !p.sendingSamples() {
		// A new key makes the old digests meaningless; with samples off
		// nothing needs counting.
		p.clientKey, _ = hex.DecodeString(p.st.ClientKey)
		p.seen.reset()
	}
	p.mu.Unlock()
	p.logChange(old.Settings, c.Who)
	if c.RotateInstallation {
		p.log.Info().Str(LogBy, c.Who).Msg("installation identifier rotated")
	}
	if kpsn {
		p.log.Warn().Str(LogMode, "kpsn").Msg("participation has no effect in KPSN mode: nothing is ever sent")
	}
	switch {
	case stopped:
		p.purge(&p.batches, &p.samples)
	case samplesStopped:
		p.purge(&p.samples)
	}
	return p.Status(), nil
}

// Cloud is where participation sends: Config's KSN, Server and Token at
// New, then what each configuration reload says.
type Cloud struct {
	KSN           bool
	Server, Token string
}

// SetCloud applies a reloaded configuration's mode, server and token. Out
// of KSN mode nothing is sent from then on: what is waiting in the queues
// is deleted and the counts of candidate samples are forgotten, as when
// participation is switched off. who is logged.
func (p *Participation) SetCloud(c Cloud, who string) {
	p.mu.Lock()
	if p.cloud == c {
		p.mu.Unlock()
		return
	}
	was := p.sending()
	p.cloud = c
	p.failures, p.nextTry = 0, time.Time{}
	if !p.sendingSamples() {
		p.seen.reset()
	}
	stopped, kpsn, mode := was && !p.sending(), !c.KSN && p.st.Participation, p.mode()
	p.mu.Unlock()
	p.log.Info().Str(LogMode, mode).Str(LogBy, who).Msg("participation: mode or cloud server changed")
	if kpsn {
		p.log.Warn().Str(LogMode, "kpsn").Msg("participation has no effect in KPSN mode: nothing is ever sent")
	}
	if stopped {
		p.purge(&p.batches, &p.samples)
	}
}

// Reload applies the configuration file's switches after a reload: if they
// differ from what the file said before, the file wins (and the change is
// logged as coming from the file); otherwise a runtime choice stands.
func (p *Participation) Reload(file Settings, who string) error {
	p.mu.Lock()
	if p.st.File == file {
		p.mu.Unlock()
		return nil
	}
	p.st.File = file
	p.mu.Unlock()
	if who == "" {
		who = "configuration file (reload)"
	}
	_, err := p.Set(Change{Participation: &file.Participation, Samples: &file.Samples, Who: who})
	return err
}

// Status is what the admin console shows.
type Status struct {
	Mode          string  `json:"mode"` // "ksn" or "kpsn"
	Participation bool    `json:"participation"`
	Samples       Samples `json:"samples"`
	// Sending is true when statistics are actually sent (KSN and
	// participation); SendingSamples likewise for samples.
	Sending        bool      `json:"sending"`
	SendingSamples bool      `json:"sending_samples"`
	Installation   string    `json:"installation"`
	Changed        time.Time `json:"changed"`
	ChangedBy      string    `json:"changed_by"`
	LastSend       time.Time `json:"last_send,omitzero"`
	LastError      string    `json:"last_error,omitempty"`
	Queued         int       `json:"queued"`         // batches waiting
	QueuedSamples  int       `json:"queued_samples"` // samples waiting
	Dropped        uint64    `json:"dropped"`        // batches dropped, not yet reported
	SamplesDropped uint64    `json:"samples_dropped"`
	// SamplesWaiting are files with active content downloaded by fewer
	// than samples_min_clients distinct clients so far in their window:
	// their samples are not taken (yet).
	SamplesWaiting int `json:"samples_waiting"`
	// SamplesInFlight are samples copied from downloads and not yet
	// written to the queue; SamplesTaken counts those written since the
	// start.
	SamplesInFlight int       `json:"samples_in_flight"`
	SamplesTaken    uint64    `json:"samples_taken"`
	NextBatch       time.Time `json:"next_batch"`
}

// Status returns the current state.
func (p *Participation) Status() Status {
	p.mu.Lock()
	s := Status{Mode: p.mode(), Participation: p.st.Participation, Samples: p.st.Samples, Sending: p.sending(),
		SendingSamples: p.sendingSamples(), Installation: p.st.Installation, Changed: p.st.Changed, ChangedBy: p.st.ChangedBy,
		LastSend: p.lastSend, LastError: p.lastErr, Dropped: p.st.Dropped, NextBatch: p.agg.start.Add(p.cfg.Interval),
		SamplesWaiting: p.seen.waiting(p.cfg.Now(), p.cfg.SamplesMinClients)}
	p.mu.Unlock()
	s.Queued, s.QueuedSamples = p.batches.len(), p.samples.len()
	s.SamplesDropped, s.SamplesTaken = p.samplesDropped.Load(), p.samplesTaken.Load()
	s.SamplesInFlight = int(p.inFlightN.Load())
	return s
}

func (p *Participation) saveState() error {
	if p.cfg.ReadOnly {
		return nil
	}
	p.saveMu.Lock()
	defer p.saveMu.Unlock()
	p.mu.Lock()
	st := p.st
	p.mu.Unlock()
	return st.save(p.cfg.StateFile)
}

// purge deletes what is queued in qs: participation (or samples) is off.
// Nothing switched off is queued after it (queue).
func (p *Participation) purge(qs ...*queue) {
	p.queueMu.Lock()
	defer p.queueMu.Unlock()
	for _, q := range qs {
		names, _ := q.list()
		for _, n := range names {
			os.Remove(n)
		}
		if len(names) > 0 {
			p.log.Info().Int(LogDropped, len(names)).Msg("participation off: deleted what was waiting to be sent")
		}
	}
}

// queue puts data into q as entry seq if ok still holds: a batch cut or a
// sample copied just before a switch was turned off is not queued after
// the purge that followed. It returns how many entries q dropped, and
// errSwitchedOff when nothing was queued.
func (p *Participation) queue(q *queue, ok func() bool, seq uint64, data []byte) (int, error) {
	p.queueMu.Lock()
	defer p.queueMu.Unlock()
	p.mu.Lock()
	on := ok()
	p.mu.Unlock()
	if !on {
		return 0, errSwitchedOff
	}
	return q.put(seq, data)
}

// errSwitchedOff: participation or samples were switched off meanwhile.
var errSwitchedOff = errors.New("switched off")

// Close stops the sample writer and checkpoints the current interval. It
// is idempotent. Cancel Run's context first.
func (p *Participation) Close() error {
	var err error
	p.closeOnce.Do(func() {
		if p.cfg.ReadOnly {
			return
		}
		close(p.done)
		p.wg.Wait()
		p.mu.Lock()
		p.foldLookupsLocked()
		cp := p.agg.checkpoint()
		p.mu.Unlock()
		var data []byte
		if data, err = json.Marshal(cp); err == nil {
			err = writeAtomic(p.checkpointPath(), data)
		}
	})
	return err
}

func (p *Participation) loadSampled() {
	f, err := os.Open(p.sampledPath())
	if err != nil {
		return
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() && len(p.sampled) < maxSampled {
		if b, err := hex.DecodeString(sc.Text()); err == nil && len(b) == 32 {
			p.sampled[[32]byte(b)] = true
		}
	}
}
