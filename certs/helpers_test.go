package certs

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/picket-proxy/picket/internal/testutil"
)

// newClock is the tests' clock for Config.Now, stopped at a fixed time.
func newClock() *testutil.Clock {
	return testutil.NewClock(time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC))
}

// rsaKey is one RSA-2048 key shared by the tests of a run; generating it
// costs up to a second under -race.
var rsaKey = sync.OnceValue(func() *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	return k
})

func newECKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// caTemplate returns a template for a CA certificate valid around now.
func caTemplate(cn string, now time.Time) *x509.Certificate {
	return &x509.Certificate{
		SerialNumber:          big.NewInt(now.UnixNano()),
		Subject:               pkix.Name{CommonName: cn},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
}

// signCert signs tmpl for pub with parent and parentKey (self-signed when
// parent is nil) and returns the parsed certificate.
func signCert(t testing.TB, tmpl, parent *x509.Certificate, pub crypto.PublicKey, parentKey crypto.Signer) *x509.Certificate {
	t.Helper()
	if parent == nil {
		parent = tmpl
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, parentKey)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

func certPEM(certs ...*x509.Certificate) []byte {
	var out []byte
	for _, c := range certs {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	return out
}

func pemBlock(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

func pkcs8PEM(t testing.TB, key crypto.Signer) []byte {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pemBlock("PRIVATE KEY", der)
}

// writePair writes certificate and key PEM into dir and returns a Config
// naming them, with the key mode 0600.
func writePair(t testing.TB, dir string, cert, key []byte) Config {
	t.Helper()
	cfg := Config{CertFile: filepath.Join(dir, "ca.pem"), KeyFile: filepath.Join(dir, "ca.key")}
	if err := os.WriteFile(cfg.CertFile, cert, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfg.KeyFile, key, 0o600); err != nil {
		t.Fatal(err)
	}
	return cfg
}

// mustLoad loads cfg or fails the test.
func mustLoad(t testing.TB, cfg Config) *Authority {
	t.Helper()
	a, _, err := Load(cfg)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	return a
}

// newAuthority generates a CA in a temporary directory and loads it.
func newAuthority(t testing.TB, cfg Config) *Authority {
	t.Helper()
	dir := t.TempDir()
	cfg.CertFile = filepath.Join(dir, "ca.pem")
	cfg.KeyFile = filepath.Join(dir, "ca.key")
	return mustLoad(t, cfg)
}

// rootPool returns a pool holding only a's CA certificate.
func rootPool(a *Authority) *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(a.Certificate())
	return p
}
