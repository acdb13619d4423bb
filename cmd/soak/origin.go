package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"time"
)

// originMux serves /obj/SEED/SIZE (Content-Length), /chunked/SEED/SIZE
// (unknown length, flushed in pieces), /echo, /eicar.com and /clean.exe.
func originMux() *http.ServeMux {
	mux := http.NewServeMux()
	parse := func(r *http.Request) (uint32, int, bool) {
		seed, err1 := strconv.ParseUint(r.PathValue("seed"), 10, 32)
		size, err2 := strconv.Atoi(r.PathValue("size"))
		return uint32(seed), size, err1 == nil && err2 == nil && size >= 0 && size <= 64<<20
	}
	mux.HandleFunc("GET /obj/{seed}/{size}", func(w http.ResponseWriter, r *http.Request) {
		seed, size, ok := parse(r)
		if !ok {
			http.Error(w, "bad object", 400)
			return
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Content-Length", strconv.Itoa(size))
		_, _ = w.Write(object(seed, size))
	})
	mux.HandleFunc("GET /chunked/{seed}/{size}", func(w http.ResponseWriter, r *http.Request) {
		seed, size, ok := parse(r)
		if !ok {
			http.Error(w, "bad object", 400)
			return
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		b := object(seed, size)
		for len(b) > 0 {
			n := min(len(b), 32<<10)
			if _, err := w.Write(b[:n]); err != nil {
				return
			}
			w.(http.Flusher).Flush()
			b = b[n:]
		}
	})
	mux.HandleFunc("POST /echo", func(w http.ResponseWriter, r *http.Request) {
		// Read first: an HTTP/1 handler that writes before it has read the
		// body loses the rest of it (net/http discards it).
		b, err := io.ReadAll(r.Body)
		if err != nil {
			return
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		_, _ = w.Write(b)
	})
	mux.HandleFunc("GET /eicar.com", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/octet-stream")
		_, _ = io.WriteString(w, eicar)
	})
	mux.HandleFunc("GET /clean.exe", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/octet-stream")
		_, _ = w.Write(cleanPE)
	})
	return mux
}

func startOrigin(h http.Handler, ip string, cert *tls.Certificate) *httptest.Server {
	s := httptest.NewUnstartedServer(h)
	ln, err := net.Listen("tcp", ip+":0")
	if err != nil {
		log.Fatalf("soak: origin on %s: %v", ip, err)
	}
	s.Listener.Close()
	s.Listener = ln
	s.Config.ErrorLog = log.New(io.Discard, "", 0) // aborted clients are expected
	if cert == nil {
		s.Start()
		return s
	}
	s.TLS = &tls.Config{Certificates: []tls.Certificate{*cert}}
	s.StartTLS()
	return s
}

// originPKI makes a CA and a leaf for 127.0.0.1 and 127.0.0.2.
func originPKI() (*x509.Certificate, *tls.Certificate, error) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	now := time.Now()
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "soak origin CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, nil, err
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "soak origin"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1), net.IPv4(127, 0, 0, 2)},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, KeyUsage: x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return nil, nil, err
	}
	return ca, &tls.Certificate{Certificate: [][]byte{der, caDER}, PrivateKey: key}, nil
}

func readCert(path string) (*x509.Certificate, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, fmt.Errorf("%s: no PEM", path)
	}
	return x509.ParseCertificate(blk.Bytes)
}
