package certs

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestLoadGeneratesThenReuses(t *testing.T) {
	clk := newClock()
	dir := filepath.Join(t.TempDir(), "state", "ca")
	cfg := Config{
		CertFile:   filepath.Join(dir, "ca.pem"),
		KeyFile:    filepath.Join(dir, "ca.key"),
		CommonName: "Test Corp Interception",
		Now:        clk.Now,
	}
	a, generated, err := Load(cfg)
	if err != nil {
		t.Fatalf("first Load: %v", err)
	}
	if !generated {
		t.Errorf("first Load: got generated false, want true")
	}

	for _, tc := range []struct {
		name string
		path string
		want fs.FileMode
	}{
		{"key file", cfg.KeyFile, 0o600},
		{"cert file", cfg.CertFile, 0o644},
		{"directory", dir, 0o700 | fs.ModeDir},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fi, err := os.Stat(tc.path)
			if err != nil {
				t.Fatal(err)
			}
			if got := fi.Mode() & (fs.ModePerm | fs.ModeDir); got != tc.want {
				t.Errorf("mode of %s: got %v, want %v", tc.path, got, tc.want)
			}
		})
	}

	ca := a.Certificate()
	if got, want := ca.Subject.CommonName, "Test Corp Interception"; got != want {
		t.Errorf("CN: got %q, want %q", got, want)
	}
	if got, want := ca.Subject.Organization, []string{DefaultOrganization}; len(got) != 1 || got[0] != want[0] {
		t.Errorf("O: got %q, want %q", got, want)
	}
	pub, ok := ca.PublicKey.(*ecdsa.PublicKey)
	if !ok || pub.Curve != elliptic.P256() {
		t.Errorf("CA key: got %T, want ECDSA P-256", ca.PublicKey)
	}
	if !ca.IsCA || ca.KeyUsage&x509.KeyUsageCertSign == 0 {
		t.Errorf("CA: got IsCA %v, KeyUsage %b, want a CA with keyCertSign", ca.IsCA, ca.KeyUsage)
	}
	if got, want := ca.NotAfter, clk.Now().Add(10*365*24*time.Hour); !got.Equal(want) {
		t.Errorf("NotAfter: got %v, want %v", got, want)
	}

	again, generated, err := Load(cfg)
	if err != nil {
		t.Fatalf("second Load: %v", err)
	}
	if generated {
		t.Errorf("second Load: got generated true, want false")
	}
	if got, want := again.Fingerprint(), a.Fingerprint(); got != want {
		t.Errorf("fingerprint after reload: got %s, want %s", got, want)
	}
}

func TestLoadRefusesReadableKey(t *testing.T) {
	for _, mode := range []fs.FileMode{0o640, 0o604, 0o644, 0o660, 0o602} {
		t.Run(fmt.Sprintf("%#o", mode), func(t *testing.T) {
			a := newAuthority(t, Config{})
			cfg := Config{CertFile: a.cfg.CertFile, KeyFile: a.cfg.KeyFile}
			if err := os.Chmod(cfg.KeyFile, mode); err != nil {
				t.Fatal(err)
			}
			_, _, err := Load(cfg)
			if !errors.Is(err, ErrInsecureKey) {
				t.Fatalf("got error %v, want ErrInsecureKey", err)
			}
			for _, want := range []string{cfg.KeyFile, fmt.Sprintf("%#o", mode)} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("got error %q, want it to name %q", err, want)
				}
			}
		})
	}
	t.Run("0400 accepted", func(t *testing.T) {
		a := newAuthority(t, Config{})
		if err := os.Chmod(a.cfg.KeyFile, 0o400); err != nil {
			t.Fatal(err)
		}
		if _, _, err := Load(Config{CertFile: a.cfg.CertFile, KeyFile: a.cfg.KeyFile}); err != nil {
			t.Errorf("got error %v, want nil", err)
		}
	})
}

func TestLoadIncompleteCA(t *testing.T) {
	for _, remove := range []string{"cert", "key"} {
		t.Run("without "+remove, func(t *testing.T) {
			a := newAuthority(t, Config{})
			cfg := Config{CertFile: a.cfg.CertFile, KeyFile: a.cfg.KeyFile}
			gone := cfg.CertFile
			if remove == "key" {
				gone = cfg.KeyFile
			}
			if err := os.Remove(gone); err != nil {
				t.Fatal(err)
			}
			_, _, err := Load(cfg)
			if !errors.Is(err, ErrIncompleteCA) {
				t.Fatalf("got error %v, want ErrIncompleteCA", err)
			}
			if !strings.Contains(err.Error(), gone) {
				t.Errorf("got error %q, want it to name %s", err, gone)
			}
			if _, err := os.Stat(gone); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("after Load: got stat error %v, want %s still absent", err, gone)
			}
		})
	}
}

func TestLoadKeyFormats(t *testing.T) {
	now := time.Now()
	ecKey := newECKey(t)
	sec1, err := x509.MarshalECPrivateKey(ecKey)
	if err != nil {
		t.Fatal(err)
	}
	ecParams := pemBlock("EC PARAMETERS", []byte{0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07})
	ecCert := signCert(t, caTemplate("EC CA", now), nil, &ecKey.PublicKey, ecKey)
	rsaCert := signCert(t, caTemplate("RSA CA", now), nil, &rsaKey().PublicKey, rsaKey())

	tests := []struct {
		name string
		cert *x509.Certificate
		key  []byte
	}{
		{"RSA PKCS#1", rsaCert, pemBlock("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(rsaKey()))},
		{"RSA PKCS#8", rsaCert, pkcs8PEM(t, rsaKey())},
		{"ECDSA SEC 1", ecCert, pemBlock("EC PRIVATE KEY", sec1)},
		{"ECDSA SEC 1 after EC PARAMETERS", ecCert, append(ecParams, pemBlock("EC PRIVATE KEY", sec1)...)},
		{"ECDSA PKCS#8", ecCert, pkcs8PEM(t, ecKey)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := writePair(t, t.TempDir(), certPEM(tc.cert), tc.key)
			a, generated, err := Load(cfg)
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			if generated {
				t.Errorf("got generated true, want false")
			}
			if got, want := a.Certificate().Subject.CommonName, tc.cert.Subject.CommonName; got != want {
				t.Errorf("CA CN: got %q, want %q", got, want)
			}
			cert, err := a.Leaf("example.com")
			if err != nil {
				t.Fatalf("Leaf: %v", err)
			}
			if _, ok := cert.PrivateKey.(*ecdsa.PrivateKey); !ok {
				t.Errorf("leaf key: got %T, want *ecdsa.PrivateKey", cert.PrivateKey)
			}
			if _, err := cert.Leaf.Verify(x509.VerifyOptions{DNSName: "example.com", Roots: rootPool(a)}); err != nil {
				t.Errorf("Verify: got %v, want nil", err)
			}
		})
	}
}

func TestLoadRejects(t *testing.T) {
	now := time.Now()
	key := newECKey(t)
	other := newECKey(t)
	goodCA := signCert(t, caTemplate("CA", now), nil, &key.PublicKey, key)

	leafTmpl := caTemplate("not a CA", now)
	leafTmpl.IsCA = false
	leafTmpl.KeyUsage = x509.KeyUsageDigitalSignature
	notCA := signCert(t, leafTmpl, nil, &key.PublicKey, key)

	noSignTmpl := caTemplate("CA without keyCertSign", now)
	noSignTmpl.KeyUsage = x509.KeyUsageDigitalSignature
	noCertSign := signCert(t, noSignTmpl, nil, &key.PublicKey, key)

	expiredTmpl := caTemplate("expired CA", now)
	expiredTmpl.NotBefore, expiredTmpl.NotAfter = now.Add(-48*time.Hour), now.Add(-24*time.Hour)
	expired := signCert(t, expiredTmpl, nil, &key.PublicKey, key)

	_, edKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	encrypted := []byte("-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,00000000000000000000000000000000\n\nAAAA\n-----END RSA PRIVATE KEY-----\n")

	tests := []struct {
		name    string
		cert    []byte
		key     []byte
		wantIs  error
		wantMsg string // "cert" or "key" mean the file's path
	}{
		{"not a CA", certPEM(notCA), pkcs8PEM(t, key), ErrNotCA, "cert"},
		{"no keyCertSign", certPEM(noCertSign), pkcs8PEM(t, key), ErrNotCA, "keyCertSign"},
		{"mismatched key", certPEM(goodCA), pkcs8PEM(t, other), ErrKeyMismatch, "key"},
		{"expired", certPEM(expired), pkcs8PEM(t, key), nil, "expired"},
		{"garbage cert", []byte("not PEM at all\n"), pkcs8PEM(t, key), nil, "cert"},
		{"corrupt cert DER", pemBlock("CERTIFICATE", []byte{0x30, 0x03, 1, 2, 3}), pkcs8PEM(t, key), nil, "cert"},
		{"garbage key", certPEM(goodCA), []byte("-----BEGIN NOTHING-----\n-----END NOTHING-----\n"), nil, "key"},
		{"corrupt key DER", certPEM(goodCA), pemBlock("EC PRIVATE KEY", []byte{1, 2, 3}), nil, "key"},
		{"encrypted key", certPEM(goodCA), encrypted, nil, "encrypted"},
		{"ed25519 key", certPEM(goodCA), pkcs8PEM(t, edKey), nil, "unsupported key type"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := writePair(t, t.TempDir(), tc.cert, tc.key)
			a, _, err := Load(cfg)
			if err == nil {
				t.Fatalf("got Authority %s, want an error", a.Fingerprint())
			}
			if tc.wantIs != nil && !errors.Is(err, tc.wantIs) {
				t.Errorf("got error %v, want one matching %v", err, tc.wantIs)
			}
			want := map[string]string{"cert": cfg.CertFile, "key": cfg.KeyFile}[tc.wantMsg]
			if want == "" {
				want = tc.wantMsg
			}
			if !strings.Contains(err.Error(), want) {
				t.Errorf("got error %q, want it to contain %q", err, want)
			}
		})
	}
}

func TestLoadIntermediateChain(t *testing.T) {
	now := time.Now()
	rootKey, interKey := newECKey(t), newECKey(t)
	root := signCert(t, caTemplate("Corp Root", now), nil, &rootKey.PublicKey, rootKey)
	interTmpl := caTemplate("Corp Proxy Intermediate", now)
	interTmpl.SerialNumber = big.NewInt(2)
	inter := signCert(t, interTmpl, root, &interKey.PublicKey, rootKey)

	cfg := writePair(t, t.TempDir(), certPEM(inter, root), pkcs8PEM(t, interKey))
	a := mustLoad(t, cfg)
	if got, want := a.Certificate().Subject.CommonName, "Corp Proxy Intermediate"; got != want {
		t.Errorf("CA: got %q, want %q", got, want)
	}
	cert, err := a.Leaf("intranet.corp.example")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := len(cert.Certificate), 3; got != want {
		t.Fatalf("chain length: got %d, want %d", got, want)
	}
	inters := x509.NewCertPool()
	for _, der := range cert.Certificate[1:] {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			t.Fatal(err)
		}
		inters.AddCert(c)
	}
	roots := x509.NewCertPool()
	roots.AddCert(root)
	if _, err := cert.Leaf.Verify(x509.VerifyOptions{
		DNSName: "intranet.corp.example", Roots: roots, Intermediates: inters,
	}); err != nil {
		t.Errorf("Verify against the root only: got %v, want nil", err)
	}
}

func TestConfigValidation(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want []string // substrings of the joined error
	}{
		{"no files", Config{}, []string{"CertFile is required", "KeyFile is required"}},
		{"same file", Config{CertFile: "x", KeyFile: "x"}, []string{"same file"}},
		{"negatives", Config{CertFile: "c", KeyFile: "k", LeafValidity: -1, CacheSize: -1},
			[]string{"LeafValidity", "CacheSize"}},
		{"renew too late", Config{CertFile: "c", KeyFile: "k", LeafValidity: time.Hour, RenewBefore: time.Hour},
			[]string{"RenewBefore"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := Load(tc.cfg)
			if err == nil {
				t.Fatal("got nil error, want one")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("got error %q, want it to contain %q", err, w)
				}
			}
		})
	}
}

// TestGeneratedCAVerifiesItsLeaves also checks the CA as OpenSSL-style tools
// see it: its subject key ID is set so leaves carry an authority key ID.
func TestGeneratedCAVerifiesItsLeaves(t *testing.T) {
	a := newAuthority(t, Config{Organization: "Example Org"})
	if len(a.Certificate().SubjectKeyId) == 0 {
		t.Errorf("CA SubjectKeyId: got none, want one")
	}
	cert, err := a.Leaf("www.example.org")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := cert.Leaf.AuthorityKeyId, a.Certificate().SubjectKeyId; string(got) != string(want) {
		t.Errorf("leaf AuthorityKeyId: got %x, want %x", got, want)
	}
	if got := cert.Leaf.Subject.Organization; len(got) != 1 || got[0] != "Example Org" {
		t.Errorf("leaf O: got %q, want [Example Org]", got)
	}
}
