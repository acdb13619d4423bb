package main

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/picket-proxy/picket/config"
)

// The floors: the least a Go proxy does for each kind of row, built on Go's
// runtime, net and net/http as Picket is. A floor has no filtering, logging,
// limits or timeouts: it is not a proxy for use but a measure of what Go
// itself costs per request, against which Picket's CPU per request is a
// ratio. Floors reach loopback only.

// startGoTunnel runs this program as go-tunnel (serveGoTunnel) in a child
// process.
func startGoTunnel() (*peer, error) {
	return startSelfEnv("go-tunnel", floorEnv(), "-serve-gotunnel")
}

// serveGoTunnel is go-tunnel, the child process of startGoTunnel: the least
// a Go CONNECT proxy does — accept, read the request, dial, answer 200, then
// io.Copy both ways (splice between the sockets) and half-close on EOF.
func serveGoTunnel(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	for {
		c, err := ln.Accept()
		if err != nil {
			return err
		}
		go goTunnel(c.(*net.TCPConn))
	}
}

func goTunnel(c *net.TCPConn) {
	defer c.Close()
	req, err := http.ReadRequest(bufio.NewReader(c)) // the client waits for the 200: nothing is read ahead
	if err != nil || req.Method != http.MethodConnect {
		return
	}
	up, err := loopbackDial(context.Background(), "tcp", req.Host)
	if err != nil {
		c.Write([]byte("HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n"))
		return
	}
	defer up.Close()
	if _, err := c.Write([]byte("HTTP/1.1 200 Connection established\r\n\r\n")); err != nil {
		return
	}
	done := make(chan struct{})
	go func() {
		io.Copy(up, c)
		up.(*net.TCPConn).CloseWrite()
		close(done)
	}()
	io.Copy(c, up)
	c.CloseWrite()
	<-done
}

// floorEnv is the floors' environment: Go's runtime set as Picket sets it
// for itself by default ([proxy] gc_percent, memory_limit and
// scheduler_awake), so that Picket's CPU over its floor's is Picket's own
// work, not a runtime setting the floor lacks.
func floorEnv() []string { return runtimeEnv(config.Default().Proxy) }

// runtimeEnv is the environment that gives a Go program the runtime
// settings Picket applies for p (cmd/picket: tuneCollector, and the
// restart of scheduler_awake): a memory_limit of 0 is no limit, as there.
func runtimeEnv(p config.Proxy) []string {
	env := []string{"GOGC=" + strconv.Itoa(p.GCPercent)}
	if p.MemoryLimit > 0 {
		env = append(env, "GOMEMLIMIT="+strconv.FormatInt(int64(p.MemoryLimit), 10))
	}
	if p.SchedulerAwake {
		env = append(env, "GODEBUG="+config.AwakeSchedtrace)
	}
	return env
}

// errNotLoopback refuses a destination off loopback.
var errNotLoopback = errors.New("destination is not on loopback")

// loopbackDial dials addr (a name resolves through the system's hosts
// file) and keeps the connection only if its peer is a loopback address.
func loopbackDial(ctx context.Context, network, addr string) (net.Conn, error) {
	c, err := (&net.Dialer{Timeout: 5 * time.Second}).DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	if ap, ok := c.RemoteAddr().(*net.TCPAddr); !ok || !ap.IP.IsLoopback() {
		c.Close()
		return nil, errNotLoopback
	}
	return c, nil
}

// startGoForward runs this program as go-forward (serveGoForward) in a
// child process.
func startGoForward() (*peer, error) {
	return startSelfEnv("go-forward", floorEnv(), "-serve-goforward")
}

// serveGoForward is go-forward, the child process of startGoForward: the
// least a Go HTTP/1.1 forward proxy does — net/http reads a request head,
// the request goes out on a pooled upstream connection (the same
// 256-connection idle pool as the bare goproxy peer), the response is
// copied back. A CONNECT is intercepted the least way too (go-mitm): answer
// 200, terminate TLS with a leaf minted once per host name and kept, and
// serve what comes inside (HTTP/1.1, or HTTP/2 when the client offers it)
// with the same forwarding handler over https.
func serveGoForward(addr string) error {
	tr := &http.Transport{
		DialContext:  loopbackDial,
		MaxIdleConns: 1024, MaxIdleConnsPerHost: 256, IdleConnTimeout: 90 * time.Second,
		TLSClientConfig:    &tls.Config{InsecureSkipVerify: true}, // the loopback origin's certificate is self-signed
		DisableCompression: true,
	}
	leaves, err := newLeafCache()
	if err != nil {
		return err
	}
	quiet := log.New(io.Discard, "", 0) // clients cut at the end of a run are not news
	inner := &chanListener{conns: make(chan net.Conn), addr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)}}
	fw := &forwarder{tr: tr}
	go (&http.Server{Handler: fw, ErrorLog: quiet}).Serve(inner)
	fw.tlsConf = &tls.Config{GetCertificate: leaves.get, NextProtos: []string{"h2", "http/1.1"}}
	fw.inner = inner
	return (&http.Server{Addr: addr, Handler: fw, ErrorLog: quiet}).ListenAndServe()
}

// forwarder is go-forward's handler.
type forwarder struct {
	tr      *http.Transport
	tlsConf *tls.Config
	inner   *chanListener // where intercepted TLS connections go to be served
}

func (f *forwarder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodConnect {
		f.intercept(w, r)
		return
	}
	out := r.WithContext(r.Context())
	out.RequestURI = ""
	if r.ContentLength == 0 {
		// No body (over HTTP/2 net/http still gives one): sent on, the
		// upstream request's length would be unknown, and the Transport
		// would probe the body (a goroutine and a timer per request) over
		// the HTTP/1.1 this floor speaks upstream. As
		// httputil.ReverseProxy does, and Picket.
		out.Body = nil
	}
	if r.TLS != nil { // inside an intercepted tunnel: origin-form
		u := *r.URL
		u.Scheme, u.Host = "https", r.Host
		out.URL = &u
	}
	resp, err := f.tr.RoundTrip(out)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	for k, v := range resp.Header {
		w.Header()[k] = v
	}
	w.WriteHeader(resp.StatusCode)
	io.Copy(w, resp.Body)
}

// intercept answers a CONNECT with 200 and hands the client's TLS
// connection to the inner server.
func (f *forwarder) intercept(w http.ResponseWriter, r *http.Request) {
	c, brw, err := w.(http.Hijacker).Hijack()
	if err != nil {
		return
	}
	if _, err := c.Write([]byte("HTTP/1.1 200 Connection established\r\n\r\n")); err != nil || brw.Reader.Buffered() > 0 {
		c.Close() // a client that speaks before the 200 is not one of ours
		return
	}
	f.inner.conns <- tls.Server(c, f.tlsConf)
}

// chanListener is a net.Listener whose connections come from a channel.
type chanListener struct {
	conns chan net.Conn
	addr  net.Addr
}

func (l *chanListener) Accept() (net.Conn, error) { return <-l.conns, nil }
func (l *chanListener) Close() error              { return nil }
func (l *chanListener) Addr() net.Addr            { return l.addr }

// leafCache mints a leaf certificate per server name, signed by a CA made
// at start, and keeps it.
type leafCache struct {
	ca     *x509.Certificate
	caKey  *ecdsa.PrivateKey
	key    *ecdsa.PrivateKey // one key for every leaf
	mu     sync.Mutex
	leaves map[string]*tls.Certificate
}

func newLeafCache() (*leafCache, error) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "go-forward floor CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, err
	}
	ca, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &leafCache{ca: ca, caKey: caKey, key: key, leaves: map[string]*tls.Certificate{}}, nil
}

func (l *leafCache) get(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	name := hello.ServerName
	if name == "" {
		name = "127.0.0.1"
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if c := l.leaves[name]; c != nil {
		return c, nil
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(int64(len(l.leaves) + 2)), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	if ip := net.ParseIP(name); ip != nil {
		tmpl.IPAddresses = []net.IP{ip}
	} else {
		tmpl.DNSNames = []string{name}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, l.ca, &l.key.PublicKey, l.caKey)
	if err != nil {
		return nil, err
	}
	c := &tls.Certificate{Certificate: [][]byte{der, l.ca.Raw}, PrivateKey: l.key}
	l.leaves[name] = c
	return c, nil
}
