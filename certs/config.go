package certs

import (
	"errors"
	"fmt"
	"time"
)

// Defaults applied to the zero values of Config.
const (
	DefaultCommonName   = "Picket Interception CA"
	DefaultOrganization = "Picket"
	DefaultLeafValidity = 7 * 24 * time.Hour
	DefaultCacheSize    = 10000

	// caValidity is the lifetime of a generated CA certificate.
	caValidity = 10 * 365 * 24 * time.Hour
	// backdate is how far NotBefore is moved into the past, for clients
	// whose clocks run behind ours.
	backdate = time.Hour
)

// Config holds the settings of an Authority. The zero value of each field is
// documented; CertFile and KeyFile are required.
type Config struct {
	// CertFile and KeyFile are the PEM files of the CA certificate and its
	// private key. When both are absent, a new CA is generated and written
	// there. When only one exists, Load fails.
	CertFile, KeyFile string

	// CommonName is the subject common name of a generated CA. It is not
	// used when the CA is loaded. Empty means DefaultCommonName.
	CommonName string

	// Organization is the subject organization of a generated CA and of the
	// leaf certificates. Empty means DefaultOrganization.
	Organization string

	// LeafValidity is how long a minted leaf certificate is valid, counted
	// from the moment it is minted (NotBefore is backdated a further hour).
	// Zero means DefaultLeafValidity.
	LeafValidity time.Duration

	// RenewBefore is how long before its NotAfter a cached leaf is treated
	// as expired and minted again. Zero means LeafValidity/3. It must be
	// shorter than LeafValidity.
	RenewBefore time.Duration

	// CacheSize is the largest number of leaf certificates kept in memory;
	// the least recently used one is evicted beyond it. Zero means
	// DefaultCacheSize.
	CacheSize int

	// Now returns the current time. Nil means time.Now.
	Now func() time.Time
}

// withDefaults returns a copy of c with its zero values replaced by defaults.
func (c Config) withDefaults() Config {
	if c.CommonName == "" {
		c.CommonName = DefaultCommonName
	}
	if c.Organization == "" {
		c.Organization = DefaultOrganization
	}
	if c.LeafValidity == 0 {
		c.LeafValidity = DefaultLeafValidity
	}
	if c.RenewBefore == 0 {
		c.RenewBefore = c.LeafValidity / 3
	}
	if c.CacheSize == 0 {
		c.CacheSize = DefaultCacheSize
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

// validate reports every problem of a defaulted Config at once.
func (c Config) validate() error {
	var errs []error
	if c.CertFile == "" {
		errs = append(errs, errors.New("certs: CertFile is required"))
	}
	if c.KeyFile == "" {
		errs = append(errs, errors.New("certs: KeyFile is required"))
	}
	if c.CertFile != "" && c.CertFile == c.KeyFile {
		errs = append(errs, fmt.Errorf("certs: CertFile and KeyFile are the same file %q", c.CertFile))
	}
	if c.LeafValidity < 0 {
		errs = append(errs, fmt.Errorf("certs: LeafValidity %v is negative", c.LeafValidity))
	}
	if c.RenewBefore < 0 || (c.LeafValidity > 0 && c.RenewBefore >= c.LeafValidity) {
		errs = append(errs, fmt.Errorf("certs: RenewBefore %v must be positive and shorter than LeafValidity %v",
			c.RenewBefore, c.LeafValidity))
	}
	if c.CacheSize < 0 {
		errs = append(errs, fmt.Errorf("certs: CacheSize %d is negative", c.CacheSize))
	}
	return errors.Join(errs...)
}
