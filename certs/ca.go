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
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"
)

// Errors returned by Load, matched with errors.Is.
var (
	// ErrIncompleteCA means exactly one of the CA certificate and key files
	// exists; Picket generates a CA only when both are absent.
	ErrIncompleteCA = errors.New("certs: CA certificate and key must both exist or both be absent")
	// ErrInsecureKey means the CA key file can be read by its group or by
	// others.
	ErrInsecureKey = errors.New("certs: CA key file is readable by group or others")
	// ErrNotCA means the certificate is not allowed to sign certificates.
	ErrNotCA = errors.New("certs: certificate is not a CA")
	// ErrKeyMismatch means the private key is not the certificate's key.
	ErrKeyMismatch = errors.New("certs: CA private key does not match the CA certificate")
)

// authorityFiles is a CA as read from, or written to, its files.
type authorityFiles struct {
	cert  *x509.Certificate
	key   crypto.Signer
	chain [][]byte // DER: the CA certificate, then any further certificates of the cert file
}

// loadOrGenerate loads the CA named by cfg, or generates and writes one when
// both of its files are absent. It reports whether it generated the CA.
func loadOrGenerate(cfg Config) (*authorityFiles, bool, error) {
	certExists, err := fileExists(cfg.CertFile)
	if err != nil {
		return nil, false, err
	}
	keyExists, err := fileExists(cfg.KeyFile)
	if err != nil {
		return nil, false, err
	}
	switch {
	case !certExists && !keyExists:
		ca, err := generateCA(cfg)
		if err != nil {
			return nil, false, err
		}
		return ca, true, nil
	case !certExists:
		return nil, false, fmt.Errorf("%w: key file %s exists but certificate file %s does not",
			ErrIncompleteCA, cfg.KeyFile, cfg.CertFile)
	case !keyExists:
		return nil, false, fmt.Errorf("%w: certificate file %s exists but key file %s does not",
			ErrIncompleteCA, cfg.CertFile, cfg.KeyFile)
	}
	ca, err := loadCA(cfg.CertFile, cfg.KeyFile, cfg.Now())
	return ca, false, err
}

// fileExists reports whether path exists; errors other than "not exist"
// (a permission problem on the directory, say) are returned.
func fileExists(path string) (bool, error) {
	_, err := os.Stat(path)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, fs.ErrNotExist):
		return false, nil
	default:
		return false, fmt.Errorf("certs: %w", err)
	}
}

// loadCA reads and checks a CA certificate and its key.
func loadCA(certFile, keyFile string, now time.Time) (*authorityFiles, error) {
	if err := checkKeyMode(keyFile); err != nil {
		return nil, err
	}
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, fmt.Errorf("certs: reading CA key: %w", err)
	}
	key, err := parseKey(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("certs: CA key file %s: %w", keyFile, err)
	}
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		return nil, fmt.Errorf("certs: reading CA certificate: %w", err)
	}
	cert, chain, err := parseCerts(certPEM)
	if err != nil {
		return nil, fmt.Errorf("certs: CA certificate file %s: %w", certFile, err)
	}
	if err := checkCA(cert, now); err != nil {
		return nil, fmt.Errorf("certs: CA certificate file %s: %w", certFile, err)
	}
	pub, ok := cert.PublicKey.(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(key.Public()) {
		return nil, fmt.Errorf("%w: key file %s, certificate file %s", ErrKeyMismatch, keyFile, certFile)
	}
	return &authorityFiles{cert: cert, key: key, chain: chain}, nil
}

// checkKeyMode refuses a key file that its group or others may read or
// write. Windows reports no such permission bits, so it is not checked there.
func checkKeyMode(keyFile string) error {
	fi, err := os.Stat(keyFile)
	if err != nil {
		return fmt.Errorf("certs: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("certs: CA key file %s is not a regular file", keyFile)
	}
	if runtime.GOOS == "windows" {
		return nil
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return fmt.Errorf("%w: %s has mode %#o, want 0600 (run: chmod 600 %s)", ErrInsecureKey, keyFile, perm, keyFile)
	}
	return nil
}

// parseKey returns the first private key in a PEM file: PKCS#8 ("PRIVATE
// KEY"), PKCS#1 ("RSA PRIVATE KEY") or SEC 1 ("EC PRIVATE KEY"). Other
// blocks, such as OpenSSL's "EC PARAMETERS", are skipped.
func parseKey(data []byte) (crypto.Signer, error) {
	for rest := data; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			return nil, errors.New(`no private key found (want a PEM block "PRIVATE KEY", "RSA PRIVATE KEY" or "EC PRIVATE KEY")`)
		}
		if strings.Contains(block.Headers["Proc-Type"], "ENCRYPTED") || block.Type == "ENCRYPTED PRIVATE KEY" {
			return nil, errors.New("the private key is encrypted; store it unencrypted with mode 0600")
		}
		var (
			key any
			err error
		)
		switch block.Type {
		case "PRIVATE KEY":
			key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
		case "RSA PRIVATE KEY":
			key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
		case "EC PRIVATE KEY":
			key, err = x509.ParseECPrivateKey(block.Bytes)
		default:
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("parsing %q PEM block: %w", block.Type, err)
		}
		switch k := key.(type) {
		case *rsa.PrivateKey:
			return k, nil
		case *ecdsa.PrivateKey:
			return k, nil
		default:
			return nil, fmt.Errorf("unsupported key type %T (want RSA or ECDSA)", key)
		}
	}
}

// parseCerts returns the first certificate of a PEM file and the DER of all
// its certificates, in file order. Certificates after the first are sent
// with every leaf, so a file holding an intermediate CA followed by its own
// issuers gives clients the whole chain.
func parseCerts(data []byte) (*x509.Certificate, [][]byte, error) {
	var (
		first *x509.Certificate
		chain [][]byte
	)
	for rest := data; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, nil, fmt.Errorf("parsing certificate %d: %w", len(chain)+1, err)
		}
		if first == nil {
			first = cert
		}
		chain = append(chain, cert.Raw)
	}
	if first == nil {
		return nil, nil, errors.New(`no certificate found (want a PEM block "CERTIFICATE")`)
	}
	return first, chain, nil
}

// checkCA reports whether cert may sign leaf certificates at time now.
func checkCA(cert *x509.Certificate, now time.Time) error {
	if !cert.BasicConstraintsValid || !cert.IsCA {
		return fmt.Errorf("%w: basic constraints do not say CA:TRUE (subject %q)", ErrNotCA, cert.Subject)
	}
	if cert.KeyUsage&x509.KeyUsageCertSign == 0 {
		return fmt.Errorf("%w: key usage lacks keyCertSign (subject %q)", ErrNotCA, cert.Subject)
	}
	if now.After(cert.NotAfter) {
		return fmt.Errorf("certificate expired at %s", cert.NotAfter.Format(time.RFC3339))
	}
	if now.Before(cert.NotBefore) {
		return fmt.Errorf("certificate is not valid before %s", cert.NotBefore.Format(time.RFC3339))
	}
	return nil
}

// generateCA creates an ECDSA P-256 CA valid for ten years and writes it to
// cfg's files: the key with mode 0600, the certificate with mode 0644, in
// directories created with mode 0700. Existing files are never overwritten.
func generateCA(cfg Config) (*authorityFiles, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("certs: generating CA key: %w", err)
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, err
	}
	now := cfg.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject: pkix.Name{
			CommonName:   cfg.CommonName,
			Organization: []string{cfg.Organization},
		},
		NotBefore:             now.Add(-backdate),
		NotAfter:              now.Add(caValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true, // signs leaves only
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("certs: creating CA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("certs: parsing generated CA certificate: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("certs: encoding CA key: %w", err)
	}

	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	if err := writeNewFile(cfg.KeyFile, keyPEM, 0o600); err != nil {
		return nil, err
	}
	if err := writeNewFile(cfg.CertFile, certPEM, 0o644); err != nil {
		_ = os.Remove(cfg.KeyFile) // we created it a moment ago; do not leave half a CA
		return nil, err
	}
	return &authorityFiles{cert: cert, key: key, chain: [][]byte{der}}, nil
}

// writeNewFile creates path with exactly the given mode (whatever the umask)
// and writes data to it. It fails if path exists. Missing parent directories
// are created with mode 0700.
func writeNewFile(path string, data []byte, mode fs.FileMode) (err error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("certs: creating directory for %s: %w", path, err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return fmt.Errorf("certs: writing new CA: %w", err)
	}
	defer func() {
		if cerr := f.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("certs: writing %s: %w", path, cerr)
		}
		if err != nil {
			_ = os.Remove(path)
		}
	}()
	if err := f.Chmod(mode); err != nil {
		return fmt.Errorf("certs: setting mode of %s: %w", path, err)
	}
	if _, err := f.Write(data); err != nil {
		return fmt.Errorf("certs: writing %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("certs: writing %s: %w", path, err)
	}
	return nil
}

// serialLimit is 2^128; serial numbers are drawn from [1, 2^128).
var serialLimit = new(big.Int).Lsh(big.NewInt(1), 128)

// randomSerial returns a random positive 128-bit certificate serial number.
func randomSerial() (*big.Int, error) {
	n, err := rand.Int(rand.Reader, new(big.Int).Sub(serialLimit, big.NewInt(1)))
	if err != nil {
		return nil, fmt.Errorf("certs: generating serial number: %w", err)
	}
	return n.Add(n, big.NewInt(1)), nil
}
