package server

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/picket-proxy/picket/internal/testutil"
	"github.com/picket-proxy/picket/reputation"
)

// selfSigned writes a certificate for 127.0.0.1 and its key; it returns
// their paths and a pool trusting the certificate.
func selfSigned(t *testing.T) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "repserver test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalECPrivateKey(key)
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600)
	cert, _ := x509.ParseCertificate(der)
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}

func TestServeTLSWithToken(t *testing.T) {
	certFile, keyFile, pool := selfSigned(t)
	s, err := New(Config{Role: RoleCloud, Feeds: testutil.CopyFeeds(t), Poll: -1, Token: "licence"}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, ln, certFile, keyFile, time.Second) }()
	defer func() {
		cancel()
		<-done
	}()
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	url := "https://" + ln.Addr().String()
	for _, tt := range []struct {
		token string
		want  reputation.Kind
		src   reputation.Source
	}{
		{"licence", reputation.KindMalware, reputation.SourceServer},
		{"wrong", reputation.KindUnknown, reputation.SourceFailure},
	} {
		r, err := reputation.NewRemote(reputation.RemoteConfig{Server: url, Token: tt.token, HTTPClient: hc})
		if err != nil {
			t.Fatal(err)
		}
		c := newClient(t, r)
		v, err := c.Lookup(context.Background(), reputation.Query{URL: "http://malware.picket.test/"})
		if err != nil || v.Kind != tt.want || v.Source != tt.src {
			t.Errorf("token %q over TLS: %+v, %v; want %v from %v", tt.token, v, err, tt.want, tt.src)
		}
	}
}
