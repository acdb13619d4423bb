package main

import (
	"bufio"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/elazarl/goproxy"
	"github.com/picket-proxy/picket/internal/procstat"
)

// peer is a proxy measured beside Picket: a process on loopback whose CPU
// time loadbench reads from /proc.
type peer struct {
	name string
	url  *url.URL
	cmd  *exec.Cmd
}

func (p *peer) cpu() time.Duration { return procstat.CPU(p.cmd.Process.Pid) }

func (p *peer) stop() { stopProcess(p.cmd) }

// freePort returns a loopback address that was free a moment ago.
func freePort() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr, nil
}

// startPeer runs a command that listens on addr and waits until it does.
func startPeer(name, addr string, cmd *exec.Cmd) (*peer, error) {
	return startPeerWithin(name, addr, cmd, 15*time.Second)
}

// startPeerWithin is startPeer for a peer that may take up to limit to
// start listening.
func startPeerWithin(name, addr string, cmd *exec.Cmd, limit time.Duration) (*peer, error) {
	cmd.Stdout, cmd.Stderr = nil, nil
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	p := &peer{name: name, url: &url.URL{Scheme: "http", Host: addr}, cmd: cmd}
	if err := waitListening(name, addr, limit); err != nil {
		p.stop()
		return nil, err
	}
	return p, nil
}

// waitListening waits until something accepts connections on addr.
func waitListening(name, addr string, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s did not start listening on %s", name, addr)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// startSquid runs Debian's squid with no cache, access from localhost only,
// CONNECT to any port, logging to a file as Picket does.
func startSquid(dir string) (*peer, error) {
	bin, err := exec.LookPath("squid")
	if err != nil {
		return nil, errors.New("squid not installed (make loadtest PEERS=1 installs it)")
	}
	addr, err := freePort()
	if err != nil {
		return nil, err
	}
	// Squid drops to its own user: it must be able to reach its directory.
	os.Chmod(dir, 0o711)
	d := filepath.Join(dir, "squid")
	os.MkdirAll(d, 0o777)
	os.Chmod(d, 0o777)
	conf := fmt.Sprintf(`http_port %s
acl localnet src 127.0.0.0/8
acl SSL_ports port 1-65535
acl Safe_ports port 1-65535
acl CONNECT method CONNECT
http_access allow localnet
http_access deny all
cache deny all
cache_mem 0
access_log stdio:%s/access.log
cache_log %s/cache.log
pid_filename %s/squid.pid
coredump_dir %s
shutdown_lifetime 1 seconds
max_filedescriptors 8192
`, addr, d, d, d, d)
	path := filepath.Join(d, "squid.conf")
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		return nil, err
	}
	return startPeer("squid", addr, exec.Command(bin, "-N", "-f", path))
}

// startTinyproxy runs Debian's tinyproxy.
func startTinyproxy(dir string) (*peer, error) {
	bin, err := exec.LookPath("tinyproxy")
	if err != nil {
		return nil, errors.New("tinyproxy not installed (make loadtest PEERS=1 installs it)")
	}
	addr, err := freePort()
	if err != nil {
		return nil, err
	}
	_, port, _ := net.SplitHostPort(addr)
	os.Chmod(dir, 0o711)
	d := filepath.Join(dir, "tinyproxy")
	os.MkdirAll(d, 0o777)
	os.Chmod(d, 0o777)
	conf := fmt.Sprintf("Port %s\nListen 127.0.0.1\nAllow 127.0.0.1\nTimeout 60\nMaxClients 512\nLogLevel Error\nLogFile \"%s/tinyproxy.log\"\n", port, d)
	path := filepath.Join(d, "tinyproxy.conf")
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		return nil, err
	}
	return startPeer("tinyproxy", addr, exec.Command(bin, "-d", "-c", path))
}

// startMitmproxy runs Debian's mitmdump, intercepting every CONNECT with
// its own CA (written into its directory on first start) and speaking
// HTTP/2 on both sides where offered, as Picket does. It does not verify
// the loopback origin's self-signed certificate (--ssl-insecure); the load
// generator does not verify mitmproxy's.
func startMitmproxy(dir string) (*peer, error) {
	bin, err := exec.LookPath("mitmdump")
	if err != nil {
		return nil, errors.New("mitmdump not installed (make tools installs mitmproxy)")
	}
	addr, err := freePort()
	if err != nil {
		return nil, err
	}
	host, port, _ := net.SplitHostPort(addr)
	d := filepath.Join(dir, "mitmproxy")
	if err := os.MkdirAll(d, 0o700); err != nil {
		return nil, err
	}
	// Python starts slowly: about 10 s on a busy 2-core machine.
	return startPeerWithin("mitmproxy", addr, exec.Command(bin, "--quiet", "--listen-host", host, "-p", port,
		"--set", "confdir="+d, "--ssl-insecure", "--set", "stream_large_bodies=1m"), time.Minute)
}

// startGoproxy runs this program as a bare goproxy (the library Picket is
// built on, with a tuned pool and no filtering) in a child process.
func startGoproxy(mitm bool) (*peer, error) {
	if mitm {
		return startSelf("goproxy-mitm", "-serve-goproxy", "-goproxy-mitm")
	}
	return startSelf("goproxy", "-serve-goproxy")
}

// startSelf runs this program as a peer on a free loopback port: serve is
// the flag that takes the address, extra further arguments.
func startSelf(name, serve string, extra ...string) (*peer, error) {
	addr, err := freePort()
	if err != nil {
		return nil, err
	}
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	args := append([]string{serve, addr}, extra...)
	return startPeer(name, addr, exec.Command(self, args...))
}

// serveGoproxy is the child process of startGoproxy.
func serveGoproxy(addr string, mitm bool) error {
	gp := goproxy.NewProxyHttpServer()
	gp.Tr = &http.Transport{
		MaxIdleConns: 1024, MaxIdleConnsPerHost: 256, IdleConnTimeout: 90 * time.Second,
		// The loopback origin's certificate is self-signed.
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true},
	}
	if mitm {
		gp.OnRequest().HandleConnect(goproxy.AlwaysMitm) // goproxy's own CA: a benchmark peer only
	}
	return http.ListenAndServe(addr, gp)
}

// startGoTunnel runs this program as go-tunnel (serveGoTunnel) in a child
// process.
func startGoTunnel() (*peer, error) { return startSelf("go-tunnel", "-serve-gotunnel") }

// serveGoTunnel is go-tunnel, the child process of startGoTunnel: the least
// a Go CONNECT proxy does — accept, read the request, dial, answer 200, then
// io.Copy both ways (splice between the sockets) and half-close on EOF. No
// filtering, logging, limits or timeouts: not a proxy for use, a measure of
// what Go's runtime and net package cost per tunnel. It opens tunnels to
// loopback only.
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
	if host, _, err := net.SplitHostPort(req.Host); err != nil || !net.ParseIP(host).IsLoopback() {
		c.Write([]byte("HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n"))
		return
	}
	up, err := net.Dial("tcp", req.Host)
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

// proc is the peer as a column's process.
func (p *peer) proc() *proc { return &proc{p.url, p.cpu} }
