package certs

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"golang.org/x/sync/singleflight"
)

// Authority mints leaf certificates signed by the interception CA and
// caches them. It is safe for concurrent use.
type Authority struct {
	cfg         Config // with defaults applied
	ca          *x509.Certificate
	caKey       crypto.Signer
	chain       [][]byte // DER sent after each leaf: the CA, then the rest of the cert file
	certPEM     []byte
	fingerprint string

	// leafKey is the key of every leaf. It is generated in Load, so each
	// Authority (each start of Picket) has its own.
	leafKey *ecdsa.PrivateKey

	cache  *lru.Cache[string, *entry]
	flight singleflight.Group

	// tickets encrypts the session tickets of every intercepted connection
	// with its automatic keys (random, in memory only, a new one each day,
	// each accepted for a week), so that a client's next connection to the
	// same host — a new tunnel — resumes instead of a full handshake.
	tickets *tls.Config

	mints, hits, misses, evictions atomic.Uint64
}

// entry is a cached leaf with the window in which it is served.
type entry struct {
	cert      *tls.Certificate
	notBefore time.Time // the leaf's NotBefore
	renewAt   time.Time // RenewBefore ahead of the leaf's NotAfter
}

// fresh reports whether e may be served at time now.
func (e *entry) fresh(now time.Time) bool {
	return !now.Before(e.notBefore) && now.Before(e.renewAt)
}

// Stats are counters of an Authority since Load.
type Stats struct {
	Mints     uint64 // leaf certificates signed
	Hits      uint64 // Leaf calls answered from the cache
	Misses    uint64 // Leaf calls that found no fresh cached leaf (each waits for one mint)
	Evictions uint64 // leaves dropped from the cache to respect CacheSize
	Size      int    // leaves in the cache now
}

// Load loads the CA named by cfg.CertFile and cfg.KeyFile, or generates one
// when both files are absent, and returns an Authority that mints leaves
// with it. The boolean reports whether a new CA was generated, so that the
// caller can tell the operator to install it in clients.
//
// Load refuses a key file readable by group or others (ErrInsecureKey), a
// lone certificate or key file (ErrIncompleteCA), a certificate that may not
// sign certificates (ErrNotCA) and a key that is not the certificate's
// (ErrKeyMismatch).
func Load(cfg Config) (*Authority, bool, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, false, err
	}
	files, generated, err := loadOrGenerate(cfg)
	if err != nil {
		return nil, false, err
	}
	leafKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, false, fmt.Errorf("certs: generating leaf key: %w", err)
	}
	cache, err := lru.New[string, *entry](cfg.CacheSize)
	if err != nil {
		return nil, false, fmt.Errorf("certs: creating cache: %w", err)
	}
	sum := sha256.Sum256(files.cert.Raw)
	return &Authority{
		cfg:         cfg,
		ca:          files.cert,
		caKey:       files.key,
		chain:       files.chain,
		certPEM:     pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: files.cert.Raw}),
		fingerprint: colonHex(sum[:]),
		leafKey:     leafKey,
		cache:       cache,
		tickets:     &tls.Config{},
	}, generated, nil
}

// Leaf returns a certificate for host, signed by the CA, from the cache when
// a fresh one is there. Host may carry a port ("example.com:443",
// "[::1]:443"), which is ignored; it is read as every part of Picket reads
// hosts (internal/netaddr: names lower-cased, in punycode, without a
// trailing dot; "127.1" is 127.0.0.1). An IP address gets an IP SAN,
// anything else a DNS SAN. A host
// that is neither a valid IP address nor a valid DNS name gives an error
// matching ErrInvalidHost. Concurrent calls for the same uncached host mint
// once. The returned certificate is shared and must not be modified.
func (a *Authority) Leaf(host string) (*tls.Certificate, error) {
	name, ip, err := normalizeHost(host)
	if err != nil {
		return nil, err
	}
	if e, ok := a.cache.Get(name); ok && e.fresh(a.cfg.Now()) {
		a.hits.Add(1)
		return e.cert, nil
	}
	a.misses.Add(1)
	v, err, _ := a.flight.Do(name, func() (any, error) {
		// An earlier flight may have filled the cache since our Get.
		now := a.cfg.Now()
		if e, ok := a.cache.Peek(name); ok && e.fresh(now) {
			return e, nil
		}
		e, err := a.mint(name, ip, now)
		if err != nil {
			return nil, err
		}
		if a.cache.Add(name, e) {
			a.evictions.Add(1)
		}
		return e, nil
	})
	if err != nil {
		return nil, err
	}
	return v.(*entry).cert, nil
}

// certStorage is the shape of goproxy's CertStorage hook, which Fetch
// implements; it is repeated here so that this package does not import
// goproxy.
type certStorage interface {
	Fetch(hostname string, gen func() (*tls.Certificate, error)) (*tls.Certificate, error)
}

var _ certStorage = (*Authority)(nil)

// Fetch returns Leaf(hostname). It has the shape of goproxy's certificate
// storage hook (goproxy.CertStorage); gen, which would sign with goproxy's
// built-in CA, is never called.
func (a *Authority) Fetch(hostname string, gen func() (*tls.Certificate, error)) (*tls.Certificate, error) {
	return a.Leaf(hostname)
}

// GetCertificateFunc returns a function for tls.Config.GetCertificate that
// mints for the client's SNI name, or for fallbackHost when the client sent
// none (clients send no SNI for IP addresses). The SNI name is chosen by the
// client: callers that must check it against policy should wrap the
// function.
func (a *Authority) GetCertificateFunc(fallbackHost string) func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
		name := fallbackHost
		if hello != nil && hello.ServerName != "" {
			name = hello.ServerName
		}
		return a.Leaf(name)
	}
}

// TLSConfig returns a server-side TLS configuration for a connection the
// client opened to host: TLS 1.2 or later, HTTP/1.1 only, certificates from
// GetCertificateFunc(host), and session tickets that every configuration
// of a accepts — for the name they were issued for only.
func (a *Authority) TLSConfig(host string) *tls.Config {
	return &tls.Config{
		MinVersion:     tls.VersionTLS12,
		NextProtos:     []string{"http/1.1"},
		GetCertificate: a.GetCertificateFunc(host),
		WrapSession: func(cs tls.ConnectionState, ss *tls.SessionState) ([]byte, error) {
			ss.Extra = append(ss.Extra, []byte(ticketPrefix+servedName(cs, host)))
			return a.tickets.EncryptTicket(cs, ss)
		},
		UnwrapSession: func(ticket []byte, cs tls.ConnectionState) (*tls.SessionState, error) {
			ss, err := a.tickets.DecryptTicket(ticket, cs)
			if err != nil || ss == nil {
				return nil, err
			}
			// A ticket resumes only the name it was issued for: the
			// certificate the client checked then was for that name.
			want := ticketPrefix + servedName(cs, host)
			for _, e := range ss.Extra {
				if string(e) == want {
					return ss, nil
				}
			}
			return nil, nil // a full handshake instead
		},
	}
}

// ticketPrefix marks the name a session ticket was issued for in its Extra
// data.
const ticketPrefix = "picket-name:"

// servedName is the name a connection's certificate is minted for: the
// client's SNI, or host without one (as GetCertificateFunc).
func servedName(cs tls.ConnectionState, host string) string {
	if cs.ServerName != "" {
		return cs.ServerName
	}
	return host
}

// Certificate returns the CA certificate. It is shared and must not be
// modified.
func (a *Authority) Certificate() *x509.Certificate { return a.ca }

// CertPEM returns the CA certificate PEM-encoded, for clients to install.
func (a *Authority) CertPEM() []byte { return slices.Clone(a.certPEM) }

// CertDER returns the CA certificate DER-encoded.
func (a *Authority) CertDER() []byte { return slices.Clone(a.ca.Raw) }

// Fingerprint returns the SHA-256 fingerprint of the CA certificate as
// upper-case hex bytes separated by colons, as "openssl x509 -fingerprint
// -sha256" prints it.
func (a *Authority) Fingerprint() string { return a.fingerprint }

// Stats returns the counters of a.
func (a *Authority) Stats() Stats {
	return Stats{
		Mints:     a.mints.Load(),
		Hits:      a.hits.Load(),
		Misses:    a.misses.Load(),
		Evictions: a.evictions.Load(),
		Size:      a.cache.Len(),
	}
}

const hexDigits = "0123456789ABCDEF"

// colonHex formats b as "AB:CD:…".
func colonHex(b []byte) string {
	var sb strings.Builder
	sb.Grow(len(b) * 3)
	for i, c := range b {
		if i > 0 {
			sb.WriteByte(':')
		}
		sb.WriteByte(hexDigits[c>>4])
		sb.WriteByte(hexDigits[c&0x0f])
	}
	return sb.String()
}
