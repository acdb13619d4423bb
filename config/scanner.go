package config

import (
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// ScannerSection is the [scanner] section: download scanning
// (docs/scanning.md). It replaces the Scanner placeholder in sections.go.
type ScannerSection struct {
	// Enabled turns download scanning on; default true.
	Enabled bool `toml:"enabled"`
	// Mode is how scanned bodies are delivered: "buffer" (default) holds the
	// whole body until the verdict, then delivers it or the block page;
	// "trickle" streams all but TrickleHold while scanning and aborts the
	// transfer on a blocking verdict.
	Mode string `toml:"mode"`
	// MaxSize is the largest body scanned; default 32MiB.
	MaxSize Size `toml:"max_size"`
	// Oversize is what happens to bodies over MaxSize: "pass" (default,
	// unscanned, logged) or "block".
	Oversize string `toml:"oversize"`
	// MemoryThreshold is how much of one body is held in memory before it
	// spills to a temp file; default 4MiB.
	MemoryThreshold Size `toml:"memory_threshold"`
	// MemoryBudget bounds the memory of all buffered bodies together; over
	// it, bodies spill to disk; default 256MiB.
	MemoryBudget Size `toml:"memory_budget"`
	// TempDir is where bodies spill (files 0600, removed at once); "" means
	// the system's temp directory. Relative to the config file's directory.
	TempDir string `toml:"temp_dir"`
	// MaxConcurrent bounds the scans judged at once; 0 (default) means the
	// number of CPUs.
	MaxConcurrent int `toml:"max_concurrent"`
	// Signatures are globs of ClamAV hash databases (.hdb, .hsb, .hdu, .hsu,
	// .fp, .sfp), relative to the config file's directory.
	Signatures []string `toml:"signatures"`
	// BlockArchiveBombs blocks archives over the archive limits; default true.
	BlockArchiveBombs bool `toml:"block_archive_bombs"`
	// TrickleHold is how much trickle mode holds back until the verdict:
	// bytes ("64KiB", the default) or a percentage of the declared length
	// ("10%", at least 64KiB).
	TrickleHold TrickleHold `toml:"trickle_hold"`
	// Uploads is whether request bodies (uploads: POST, PUT, ...) are
	// scanned before they are forwarded: "auto" (default) scans them when
	// [scanner.icap] reqmod_url names a REQMOD service, "on" always (local
	// checks, clamd, and ICAP REQMOD if set), "off" never. Uploads are
	// held whole up to MaxSize; Oversize and the engines' Fail apply.
	Uploads string `toml:"uploads"`
	// Archive bounds archive inspection.
	Archive ScannerArchive `toml:"archive"`
	// Clamd and ICAP are the external anti-virus engines (engines.go),
	// asked after the local checks and before reputation.
	Clamd ScannerClamd `toml:"clamd"`
	ICAP  ScannerICAP  `toml:"icap"`
	// CacheTTL is how long an engine's verdict on a file (by SHA-256) is
	// reused; default 1h; "0s" turns the cache off. CacheSize bounds the
	// verdicts kept; default 10000.
	CacheTTL  Duration `toml:"cache_ttl"`
	CacheSize int      `toml:"cache_size"`
}

// ScannerArchive is [scanner.archive].
type ScannerArchive struct {
	// MaxDepth is how deep nested archives are opened; default 3.
	MaxDepth int `toml:"max_depth"`
	// MaxMembers bounds the members of one download, all archives
	// together; default 20000.
	MaxMembers int `toml:"max_members"`
	// MaxExpanded bounds what decompression may produce for one download;
	// default 512MiB.
	MaxExpanded Size `toml:"max_expanded"`
	// MaxRatio bounds a member's expanded over compressed size (members
	// under 1MiB expanded are exempt); default 200.
	MaxRatio int `toml:"max_ratio"`
}

// TrickleHold is a byte count ("64KiB", 65536) or a percentage ("10%").
type TrickleHold struct {
	Bytes   Size
	Percent int
}

// UnmarshalTOML accepts a size string, a byte count or "N%".
func (h *TrickleHold) UnmarshalTOML(v any) error {
	if s, ok := v.(string); ok && strings.HasSuffix(strings.TrimSpace(s), "%") {
		n, err := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(s), "%")))
		if err != nil {
			return fmt.Errorf("invalid percentage %q (want e.g. \"10%%\")", s)
		}
		*h = TrickleHold{Percent: n}
		return nil
	}
	var b Size
	if err := b.UnmarshalTOML(v); err != nil {
		return err
	}
	*h = TrickleHold{Bytes: b}
	return nil
}

// MarshalText writes "N%" or the byte count.
func (h TrickleHold) MarshalText() ([]byte, error) {
	if h.Percent > 0 {
		return []byte(strconv.Itoa(h.Percent) + "%"), nil
	}
	return h.Bytes.MarshalText()
}

// ScanUploads reports whether uploads are scanned: uploads = "on", or
// "auto" with a REQMOD service; never when scanning is off.
func (c *ScannerSection) ScanUploads() bool {
	return c.Enabled && (c.Uploads == "on" || c.Uploads == "auto" && c.ICAP.ReqmodURL != "")
}

// ScannerDefaults returns the [scanner] section when the file has none.
func ScannerDefaults() ScannerSection {
	var c ScannerSection
	c.defaults()
	return c
}

func (c *ScannerSection) defaults() {
	c.Enabled = true
	c.Mode = "buffer"
	c.Uploads = "auto"
	c.MaxSize = 32 << 20
	c.Oversize = "pass"
	c.MemoryThreshold = 4 << 20
	c.MemoryBudget = 256 << 20
	c.Signatures = []string{"data/signatures/*.hdb", "data/signatures/*.hsb", "data/signatures/*.fp"}
	c.BlockArchiveBombs = true
	c.TrickleHold = TrickleHold{Bytes: 64 << 10}
	c.Archive = ScannerArchive{MaxDepth: 3, MaxMembers: 20000, MaxExpanded: 512 << 20, MaxRatio: 200}
	c.Clamd.defaults()
	c.ICAP.defaults()
	c.CacheTTL = Duration(time.Hour)
	c.CacheSize = 10000
}

func (c *ScannerSection) validate(p *problems) {
	p.oneOf("scanner.mode", "mode", c.Mode, "buffer", "trickle")
	p.oneOf("scanner.uploads", "value", c.Uploads, "auto", "on", "off")
	if c.Uploads == "on" && !c.Enabled {
		p.add("scanner.uploads", "uploads = \"on\" needs the scanner: enabled = true")
	}
	p.oneOf("scanner.oversize", "action", c.Oversize, "pass", "block")
	if c.MaxSize < 1<<10 || c.MaxSize > 4<<30 {
		p.add("scanner.max_size", "must be between 1KiB and 4GiB, got %d bytes", c.MaxSize)
	}
	if c.MemoryThreshold < 64<<10 {
		p.add("scanner.memory_threshold", "must be at least 64KiB, got %d bytes", c.MemoryThreshold)
	}
	if c.MemoryBudget < c.MemoryThreshold {
		p.add("scanner.memory_budget", "must be at least memory_threshold (%d bytes), got %d bytes", c.MemoryThreshold, c.MemoryBudget)
	}
	if c.MaxConcurrent < 0 || c.MaxConcurrent > 4096 {
		p.add("scanner.max_concurrent", "must be between 0 (the number of CPUs) and 4096, got %d", c.MaxConcurrent)
	}
	validateSignatures(c.Signatures, p)
	c.TrickleHold.validate(c.MaxSize, p)
	c.Clamd.validate(p)
	c.ICAP.validate(p)
	if c.CacheSize < 1 || c.CacheSize > 10000000 {
		p.add("scanner.cache_size", "must be between 1 and 10000000, got %d", c.CacheSize)
	}
	c.Archive.validate(p)
}

// validateSignatures checks the signature database patterns.
func validateSignatures(patterns []string, p *problems) {
	for _, g := range patterns {
		if g == "" {
			p.add("scanner.signatures", "empty pattern")
			continue
		}
		if _, err := filepath.Match(g, ""); err != nil {
			p.add("scanner.signatures", "bad pattern %q: %v", g, err)
		}
		switch strings.ToLower(filepath.Ext(g)) {
		case ".hdb", ".hsb", ".hdu", ".hsu", ".fp", ".sfp":
		default:
			p.add("scanner.signatures", "%q: want ClamAV hash databases (.hdb, .hsb, .hdu, .hsu, .fp, .sfp)", g)
		}
	}
}

// validate checks the trickle hold against max_size.
func (h TrickleHold) validate(maxSize Size, p *problems) {
	switch {
	case h.Percent < 0 || h.Percent > 100:
		p.add("scanner.trickle_hold", "percentage must be between 1 and 100, got %d", h.Percent)
	case h.Percent == 0 && h.Bytes < 1:
		p.add("scanner.trickle_hold", "must hold back at least 1 byte")
	case h.Bytes > maxSize:
		p.add("scanner.trickle_hold", "must not exceed max_size (%d bytes), got %d", maxSize, h.Bytes)
	}
}

// validate checks the archive limits.
func (a ScannerArchive) validate(p *problems) {
	if a.MaxDepth < 1 || a.MaxDepth > 16 {
		p.add("scanner.archive.max_depth", "must be between 1 and 16, got %d", a.MaxDepth)
	}
	if a.MaxMembers < 1 || a.MaxMembers > 1000000 {
		p.add("scanner.archive.max_members", "must be between 1 and 1000000, got %d", a.MaxMembers)
	}
	if a.MaxExpanded < 1<<20 {
		p.add("scanner.archive.max_expanded", "must be at least 1MiB, got %d bytes", a.MaxExpanded)
	}
	if a.MaxRatio < 10 {
		p.add("scanner.archive.max_ratio", "must be at least 10, got %d", a.MaxRatio)
	}
}
