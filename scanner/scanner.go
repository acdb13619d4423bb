package scanner

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"sync/atomic"
	"time"

	"github.com/picket-proxy/picket/reputation"
)

// Reputation looks up the verdict of a file's hashes; *reputation.Client
// implements it. A nil Reputation means no lookups.
type Reputation interface {
	Lookup(ctx context.Context, q reputation.Query) (reputation.Verdict, error)
}

var _ Reputation = (*reputation.Client)(nil)

// Defaults of Config and ArchiveLimits, used for zero fields.
const (
	DefaultMaxSize         = 32 << 20
	DefaultMemoryThreshold = 4 << 20
	DefaultMemoryBudget    = 256 << 20
	DefaultTrickleHold     = 64 << 10
	DefaultMaxDepth        = 3
	DefaultMaxMembers      = 20000
	DefaultMaxExpanded     = 512 << 20
	DefaultMaxRatio        = 200
)

// ratioFloor is the expanded size in bytes below which no compression ratio
// counts as a bomb: small runs of zeros or spaces compress very well.
const ratioFloor = 1 << 20

// maxLookups bounds the reputation lookups of one scan: the file itself,
// archive members with a local detection, then executable members.
const maxLookups = 8

// ArchiveLimits bound archive inspection. Zero fields take the defaults.
type ArchiveLimits struct {
	// MaxDepth is how deep archives are opened: 1 opens the file's own
	// members, 2 also archives inside it, and so on. Deeper members are
	// hashed but not opened, and the result is marked Incomplete.
	MaxDepth int
	// MaxMembers bounds the members of all archives in one file, together.
	MaxMembers int
	// MaxExpanded bounds the bytes that decompression may produce for one
	// file, in all archives together.
	MaxExpanded int64
	// MaxRatio bounds a member's expanded size over its compressed size
	// (members expanding to less than 1 MiB are not held to it).
	MaxRatio int
}

// Config configures a Scanner. The zero value scans with the defaults above,
// no signatures and no reputation.
type Config struct {
	// MaxSize is the largest body scanned, in bytes (after Content-Encoding
	// decoding as well). Larger bodies get VerdictOversize.
	MaxSize int64
	// BlockOversize blocks bodies over MaxSize; by default they pass unscanned.
	BlockOversize bool
	// MemoryThreshold is how many bytes of one body are held in memory
	// before it spills to a temp file.
	MemoryThreshold int64
	// MemoryBudget bounds the bytes all scans hold in memory together; a
	// scan that would exceed it spills to disk instead.
	MemoryBudget int64
	// TempDir is where spilled bodies go; "" means os.TempDir().
	TempDir string
	// MaxConcurrent bounds the scans inside Finish at once; 0 means the
	// number of CPUs.
	MaxConcurrent int
	// Signatures are the local hash signatures; nil means none (EICAR is
	// always recognised).
	Signatures *Signatures
	// Reputation is asked for file hashes; nil means no lookups.
	Reputation Reputation
	// Archive bounds archive inspection.
	Archive ArchiveLimits
	// PassArchiveBombs lets archive bombs through (reported, not blocked).
	PassArchiveBombs bool
	// TrickleHold is how many bytes trickle mode holds back at least; 0
	// means DefaultTrickleHold.
	TrickleHold int64
	// TrickleHoldPercent, if positive, holds back that percentage of a body
	// of known size when it is more than TrickleHold.
	TrickleHoldPercent int
	// Engines are the external anti-virus engines (clamd, ICAP), asked in
	// this order after the local checks and before reputation; nil means
	// none (engines.go).
	Engines []EngineConfig
	// CacheTTL is how long an engine's verdict on a file (by SHA-256) is
	// reused; 0 means DefaultCacheTTL, negative turns the cache off.
	CacheTTL time.Duration
	// CacheSize bounds the cached verdicts; 0 means DefaultCacheSize.
	CacheSize int
}

// Stats are a Scanner's counters since it was created.
type Stats struct {
	Scans       uint64 // Finish calls that returned a Result
	Errors      uint64 // Finish calls that could not decide
	Malicious   uint64
	Bombs       uint64
	Oversize    uint64
	FalseAlarms uint64
	Spills      uint64 // bodies (and archive members) spilled to disk
	Bytes       uint64 // bytes inspected, archive expansion included
	MemoryInUse int64  // bytes of the memory budget in use now
	// Engines are the external engines' counters and health, in order.
	Engines []EngineStats
}

// Scanner judges bodies. It is safe for concurrent use; create one per
// process, since it owns the memory budget and the concurrency limit.
type Scanner struct {
	cfg     Config
	budget  budget
	sem     chan struct{}
	engines []*engineState
	cache   *resultCache // nil when off

	scans, errs, malicious, bombs, oversize, falseAlarms, spills, bytes atomic.Uint64
}

// New checks cfg, fills in defaults and returns a Scanner.
func New(cfg Config) (*Scanner, error) {
	var errs []error
	for i, e := range cfg.Engines {
		if e.Engine == nil {
			errs = append(errs, fmt.Errorf("scanner: engine %d is nil", i))
		}
	}
	if cfg.CacheSize < 0 {
		errs = append(errs, errors.New("scanner: negative cache size"))
	}
	if cfg.MaxSize < 0 || cfg.MemoryThreshold < 0 || cfg.MemoryBudget < 0 || cfg.MaxConcurrent < 0 ||
		cfg.TrickleHold < 0 || cfg.TrickleHoldPercent < 0 || cfg.TrickleHoldPercent > 100 {
		errs = append(errs, errors.New("scanner: negative size or count, or hold percentage over 100"))
	}
	a := &cfg.Archive
	if a.MaxDepth < 0 || a.MaxMembers < 0 || a.MaxExpanded < 0 || a.MaxRatio < 0 {
		errs = append(errs, errors.New("scanner: negative archive limit"))
	}
	setDefault(&cfg.MaxSize, DefaultMaxSize)
	setDefault(&cfg.MemoryThreshold, DefaultMemoryThreshold)
	setDefault(&cfg.MemoryBudget, DefaultMemoryBudget)
	setDefault(&cfg.TrickleHold, DefaultTrickleHold)
	setDefault(&cfg.MaxConcurrent, runtime.NumCPU())
	setDefault(&a.MaxDepth, DefaultMaxDepth)
	setDefault(&a.MaxMembers, DefaultMaxMembers)
	setDefault(&a.MaxExpanded, DefaultMaxExpanded)
	setDefault(&a.MaxRatio, DefaultMaxRatio)
	if cfg.TempDir == "" {
		cfg.TempDir = os.TempDir()
	}
	if fi, err := os.Stat(cfg.TempDir); err != nil {
		errs = append(errs, fmt.Errorf("scanner: temp dir: %w", err))
	} else if !fi.IsDir() {
		errs = append(errs, fmt.Errorf("scanner: temp dir %s is not a directory", cfg.TempDir))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	s := &Scanner{cfg: cfg, sem: make(chan struct{}, cfg.MaxConcurrent)}
	s.budget.limit = cfg.MemoryBudget
	for _, e := range cfg.Engines {
		s.engines = append(s.engines, newEngineState(e))
	}
	if len(s.engines) > 0 && cfg.CacheTTL >= 0 {
		s.cache = newResultCache(cmp.Or(cfg.CacheSize, DefaultCacheSize), cmp.Or(cfg.CacheTTL, DefaultCacheTTL), time.Now)
	}
	return s, nil
}

func setDefault[T int | int64](v *T, def T) {
	if *v == 0 {
		*v = def
	}
}

// MaxSize is the largest body scanned, in bytes.
func (s *Scanner) MaxSize() int64 { return s.cfg.MaxSize }

// TrickleHold returns how many bytes trickle mode holds back of a body of
// size bytes (-1 if unknown).
func (s *Scanner) TrickleHold(size int64) int64 {
	hold := s.cfg.TrickleHold
	if p := s.cfg.TrickleHoldPercent; p > 0 && size > 0 {
		hold = max(hold, size*int64(p)/100)
	}
	return hold
}

// Stats returns the counters.
func (s *Scanner) Stats() Stats {
	return Stats{
		Scans: s.scans.Load(), Errors: s.errs.Load(), Malicious: s.malicious.Load(), Bombs: s.bombs.Load(),
		Oversize: s.oversize.Load(), FalseAlarms: s.falseAlarms.Load(), Spills: s.spills.Load(),
		Bytes: s.bytes.Load(), MemoryInUse: s.budget.used.Load(), Engines: s.EngineStats(),
	}
}

// EngineStats returns the engines' counters and health, in order (nil
// without engines).
func (s *Scanner) EngineStats() []EngineStats {
	var out []EngineStats
	for _, e := range s.engines {
		out = append(out, e.stats())
	}
	return out
}

// acquire waits for a scan slot or for ctx to end.
func (s *Scanner) acquire(ctx context.Context) error {
	select {
	case s.sem <- struct{}{}:
		return nil
	default:
	}
	select {
	case s.sem <- struct{}{}:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("scanner: waiting for a scan slot: %w", ctx.Err())
	}
}

func (s *Scanner) release() { <-s.sem }

func (s *Scanner) newSpool() *spool {
	return &spool{budget: &s.budget, threshold: s.cfg.MemoryThreshold, dir: s.cfg.TempDir, spills: &s.spills}
}
